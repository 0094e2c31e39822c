//! `cargo xtask predict`: the most likely classes of image files (PNG or JPEG, any size) or of
//! test-set images, by a trained model.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ba_data::transforms::Image;
use ba_data::Cifar10;
use candle_core::Device;

use crate::trained::{split_batch, test_batch, top_k, WeightsArgs};

/// Arguments of `predict`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: WeightsArgs,
    /// PNG or JPEG files; resized to 128x128 and normalised as the test transform does.
    #[arg(value_name = "IMAGE")]
    images: Vec<PathBuf>,
    /// Test-set images by index (0-based), e.g. --index 0,7,42.
    #[arg(long, value_delimiter = ',')]
    index: Vec<usize>,
    /// CIFAR-10 source of --index.
    #[arg(long, default_value = "data/cifar-10-sample")]
    data: PathBuf,
    /// Classes shown per image.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10))]
    top: u64,
}

/// Reads a PNG or JPEG file as a 0..255 channel-major image.
pub fn read_image(path: &std::path::Path) -> Result<Image> {
    let decoded = image::ImageReader::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("reading {}", path.display()))?
        .decode()
        .with_context(|| format!("{}: not a PNG or JPEG image this build can decode", path.display()))?
        .to_rgb8();
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let area = width * height;
    let mut data = vec![0.0f32; 3 * area];
    for (i, pixel) in decoded.pixels().enumerate() {
        for c in 0..3 {
            data[c * area + i] = pixel[c] as f32;
        }
    }
    Ok(Image { height, width, data })
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    if args.images.is_empty() && args.index.is_empty() {
        bail!("nothing to predict: give image files, or --index for test-set images");
    }
    let trained = args.weights.load(device)?;
    let classes: Vec<String> = ba_data::CLASS_NAMES.iter().map(|s| s.to_string()).collect();
    let show = |name: String, probabilities: &[f32]| {
        let ranked: Vec<String> = top_k(probabilities, args.top as usize)
            .into_iter()
            .map(|(c, p)| format!("{} {:.1}%", classes[c], p * 100.0))
            .collect();
        println!("{name}: {}", ranked.join(", "));
    };
    if !args.images.is_empty() {
        let images = args.images.iter().map(|p| read_image(p)).collect::<Result<Vec<_>>>()?;
        let probabilities = trained.probabilities(&test_batch(images, trained.kind.family(), device)?)?;
        for (path, p) in args.images.iter().zip(&probabilities) {
            show(path.display().to_string(), p);
        }
    }
    if !args.index.is_empty() {
        let data = Cifar10::open(&args.data)?;
        if let Some(&bad) = args.index.iter().find(|&&i| i >= data.test.len()) {
            bail!(
                "--index {bad}: {} has {} test images (0 to {})",
                args.data.display(),
                data.test.len(),
                data.test.len() - 1
            );
        }
        let probabilities = trained.probabilities(&split_batch(
            &data.test,
            args.index.iter().copied(),
            trained.kind.family(),
            device,
        )?)?;
        for (&i, p) in args.index.iter().zip(&probabilities) {
            show(format!("test image {i} (true: {})", classes[data.test.label(i) as usize]), p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_and_jpeg_files_read_as_planes_and_junk_is_named() {
        let dir = std::env::temp_dir().join(format!("xtask-predict-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let picture = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 50, y as u8 * 100, 7]));
        let png = dir.join("a.png");
        picture.save(&png).unwrap();
        let read = read_image(&png).unwrap();
        assert_eq!((read.height, read.width), (3, 5));
        assert_eq!((read.plane(0)[4], read.plane(1)[5 * 2], read.plane(2)[0]), (200.0, 200.0, 7.0));
        let jpeg = dir.join("b.jpg");
        image::RgbImage::from_pixel(16, 8, image::Rgb([200, 100, 50])).save(&jpeg).unwrap();
        let read = read_image(&jpeg).unwrap();
        assert_eq!((read.height, read.width), (8, 16));
        assert!((read.plane(0)[0] - 200.0).abs() <= 3.0, "JPEG is lossy, but not by much on a flat colour");
        let junk = dir.join("c.png");
        std::fs::write(&junk, b"definitely not an image").unwrap();
        let err = format!("{:#}", read_image(&junk).err().unwrap());
        assert!(err.contains("c.png") && err.contains("not a PNG or JPEG"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
