//! What every figure shares: the embedded font, the colours, and writing PNG and SVG files.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The error type of drawing code, generic over the backend.
pub type DrawResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Font family name every figure asks for.
pub const FONT: &str = "sans-serif";

/// Colour of a model in every figure: AlexNet blue, SE-AlexNet orange, BA-AlexNet red
/// (matplotlib's tab10).
pub fn model_colour(model: &str) -> RGBColor {
    match model {
        "alexnet" => RGBColor(31, 119, 180),
        "se-alexnet" => RGBColor(255, 127, 14),
        "ba-alexnet" => RGBColor(214, 39, 40),
        _ => RGBColor(44, 160, 44),
    }
}

/// Green for a correct prediction, red for a wrong one.
pub const RIGHT: RGBColor = RGBColor(0, 128, 0);
/// See [`RIGHT`].
pub const WRONG: RGBColor = RGBColor(200, 0, 0);

/// Registers DejaVu Sans (embedded by the `dejavu` crate) as [`FONT`], so figures render the
/// same on every machine: plotters' system-font lookup needs fontconfig and installed fonts.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let fonts = [(FontStyle::Normal, dejavu::sans::regular()), (FontStyle::Bold, dejavu::sans::bold())];
        for (style, bytes) in fonts {
            // The bytes are a valid TrueType font shipped with the crate.
            plotters::style::register_font(FONT, style, bytes).unwrap_or_else(|_| panic!("DejaVu Sans is a font"));
        }
    });
}

/// Draws a `width` x `height` figure with `draw` into a PNG at `path`.
pub fn save_png(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> DrawResult,
) -> Result<()> {
    register_font();
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root).map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
        root.present().map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    }
    let image = image::RgbImage::from_raw(width, height, pixels).context("a buffer of width * height pixels")?;
    image.save(path).with_context(|| format!("writing {}", path.display()))
}

/// Draws a `width` x `height` figure with `draw` into an SVG at `path`.
pub fn save_svg(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> DrawResult,
) -> Result<()> {
    register_font();
    let root = SVGBackend::new(path, size).into_drawing_area();
    draw(&root).map_err(|e| anyhow!("drawing {}: {e}", path.display()))?;
    root.present().map_err(|e| anyhow!("writing {}: {e}", path.display()))
}
