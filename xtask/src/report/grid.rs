//! The prediction grid: test images, denormalised, each titled with the predicted and the
//! true class; wrong predictions framed in red.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use ba_data::transforms::{Image, Resize, Transform};
use ba_data::Split;
use ba_models::INPUT_SIZE;
use ba_train::EpochSource;
use candle_core::Device;
use plotters::coord::Shift;
use plotters::prelude::*;
use rand::SeedableRng;

use crate::plot::{save_png, DrawResult, FONT, RIGHT, WRONG};
use crate::recipe_parts::{normalisation, test_transform};
use crate::setup::test_loader;
use crate::trained::Trained;

/// Images per row of the grid.
const COLUMNS: usize = 6;
/// Cell width and the space above each image for its two lines of text, in pixels.
const CELL_WIDTH: u32 = 180;
const TEXT_HEIGHT: u32 = 40;
/// Height of the figure's title.
const TITLE_HEIGHT: u32 = 40;
/// Width of the frame around a wrongly classified image.
const FRAME: u32 = 4;

/// One image of the grid and what the model said.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// The image as the model saw it, denormalised back to 0..255.
    pub image: Image,
    pub predicted: usize,
    /// The predicted class's probability.
    pub confidence: f32,
    pub truth: usize,
}

impl Prediction {
    pub fn correct(&self) -> bool {
        self.predicted == self.truth
    }

    /// The two lines above the image: prediction (with probability and a mark) and truth.
    pub fn titles(&self, classes: &[String]) -> (String, String) {
        let mark = if self.correct() { "\u{2713}" } else { "\u{2717}" };
        (
            format!("{mark} {} {:.0}%", classes[self.predicted], self.confidence * 100.0),
            format!("true: {}", classes[self.truth]),
        )
    }
}

/// The model's predictions for the first `count` images of `split`.
pub fn predict_first(trained: &Trained, split: &Split, count: usize, device: &Device) -> Result<Vec<Prediction>> {
    let mut first = Split::default();
    for i in 0..count.min(split.len()) {
        first.push(split.label(i), split.image(i));
    }
    let first = Arc::new(first);
    let mut said = Vec::new();
    let loader = test_loader(first.clone(), first.len().max(1), trained.kind.family(), device);
    ba_train::evaluate_with(trained.model.as_ref(), 0.0, loader.batches(0, 0), |p| {
        said.push((p.predicted, p.confidence(), p.label))
    })?;
    let family = trained.kind.family();
    let transform = test_transform(family);
    // Shown at 128x128 whatever the model's input: a 32x32 image upscaled for display.
    let display = Resize { height: INPUT_SIZE, width: INPUT_SIZE };
    let mut rng = ba_data::Rng::seed_from_u64(0);
    Ok(said
        .into_iter()
        .enumerate()
        .map(|(i, (predicted, confidence, truth))| {
            let mut image = transform.apply(Image::from_cifar(first.image(i)), &mut rng);
            normalisation(family).denormalize(&mut image);
            let image = display.apply(image, &mut rng);
            Prediction { image, predicted, confidence, truth }
        })
        .collect())
}

/// Height of a row of the grid: text, framed image, a margin.
const ROW_HEIGHT: u32 = TEXT_HEIGHT + INPUT_SIZE as u32 + 2 * FRAME + 8;

/// Pixel size of the grid of `n` predictions.
pub fn grid_size(n: usize) -> (u32, u32) {
    (COLUMNS as u32 * CELL_WIDTH, TITLE_HEIGHT + n.div_ceil(COLUMNS) as u32 * ROW_HEIGHT)
}

/// Top-left corner of prediction `i`'s image.
pub fn image_origin(i: usize) -> (u32, u32) {
    let (row, col) = ((i / COLUMNS) as u32, (i % COLUMNS) as u32);
    let x = col * CELL_WIDTH + (CELL_WIDTH - INPUT_SIZE as u32) / 2;
    (x, TITLE_HEIGHT + row * ROW_HEIGHT + TEXT_HEIGHT + FRAME)
}

/// Writes the grid of `predictions` by `model` as a PNG at `path`.
pub fn write(path: &Path, model: &str, predictions: &[Prediction], classes: &[String]) -> Result<()> {
    save_png(path, grid_size(predictions.len()), |root| draw(root, model, predictions, classes))
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    model: &str,
    predictions: &[Prediction],
    classes: &[String],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let right = predictions.iter().filter(|p| p.correct()).count();
    let title = format!("{model}: the first {} test images, {right} right", predictions.len());
    root.draw(&Text::new(title, (12, 10), (FONT, 20).into_font().style(FontStyle::Bold).color(&BLACK)))?;
    let side = INPUT_SIZE as u32;
    for (i, p) in predictions.iter().enumerate() {
        let (x, y) = image_origin(i);
        let (x, y) = (x as i32, y as i32);
        let colour = if p.correct() { RIGHT } else { WRONG };
        let (predicted, truth) = p.titles(classes);
        let left = x - 20;
        root.draw(&Text::new(predicted, (left, y - TEXT_HEIGHT as i32), (FONT, 15).into_font().color(&colour)))?;
        root.draw(&Text::new(truth, (left, y - TEXT_HEIGHT as i32 / 2), (FONT, 15).into_font().color(&BLACK)))?;
        if !p.correct() {
            let f = FRAME as i32;
            let corners = [(x - f, y - f), (x + side as i32 + f - 1, y + side as i32 + f - 1)];
            root.draw(&Rectangle::new(corners, WRONG.filled()))?;
        }
        root.draw(&BitMapElement::with_owned_buffer((x, y), (side, side), rgb_bytes(&p.image)).ok_or("image size")?)?;
    }
    Ok(())
}

/// The interleaved RGB bytes of a 0..255 image.
fn rgb_bytes(image: &Image) -> Vec<u8> {
    let area = image.area();
    (0..area).flat_map(|i| (0..3).map(move |c| image.data[c * area + i].round().clamp(0.0, 255.0) as u8)).collect()
}
