//! `cargo xtask augment-preview`: a PNG grid of training images as the model sees them. Each
//! row is one image: first as the test pipeline shows it, then several draws of the training
//! augmentation (per-image transforms; batch-level mixup is not shown).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ba_core::rng::derive_seed;
use ba_data::transforms::{notebook_train_pipeline, test_pipeline, Image, Normalize, Transform};
use ba_data::{Cifar10, Split};
use ba_models::INPUT_SIZE;
use image::{Rgb, RgbImage};
use rand::SeedableRng;

/// Pixels between cells.
const GAP: u32 = 4;

/// Arguments of `augment-preview`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// CIFAR-10 source (folder, .tar.gz or hf://).
    #[arg(long, default_value = "data/cifar-10-sample")]
    data: PathBuf,
    /// Images (rows): the first training image of each class, then the next ones.
    #[arg(long, default_value_t = 10)]
    images: usize,
    /// Augmented draws per image (columns after the original).
    #[arg(long, default_value_t = 7)]
    draws: usize,
    /// Seed of the augmentation draws.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The PNG to write.
    #[arg(long, default_value = "runs/augment-preview.png")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    if args.images == 0 || args.draws == 0 {
        bail!("--images and --draws must be at least 1");
    }
    let data = Cifar10::open(&args.data)?;
    let grid = preview(&data.train, args.images, args.draws, args.seed);
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    grid.save(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({} images x {} draws of the notebook's training augmentation, first column: test transform)",
        args.out.display(),
        args.images,
        args.draws
    );
    Ok(())
}

/// The images shown: the first of each class, then the second of each, and so on.
fn rows(split: &Split, images: usize) -> Vec<usize> {
    let mut seen = [0usize; 10];
    let mut ranked: Vec<(usize, u8, usize)> = split
        .first_per_class(images.div_ceil(10))
        .into_iter()
        .map(|i| {
            let label = split.label(i);
            seen[label as usize] += 1;
            (seen[label as usize], label, i)
        })
        .collect();
    ranked.sort_unstable();
    ranked.into_iter().take(images).map(|(_, _, i)| i).collect()
}

/// The grid: `images` rows of 1 + `draws` cells of 128x128.
fn preview(split: &Split, images: usize, draws: usize, seed: u64) -> RgbImage {
    let side = INPUT_SIZE as u32;
    let (cols, picked) = (1 + draws as u32, rows(split, images));
    let mut grid =
        RgbImage::from_pixel(cols * (side + GAP) + GAP, picked.len() as u32 * (side + GAP) + GAP, Rgb([255; 3]));
    let (train, test) = (notebook_train_pipeline(INPUT_SIZE), test_pipeline(INPUT_SIZE));
    for (r, &i) in picked.iter().enumerate() {
        let original = Image::from_cifar(split.image(i));
        for c in 0..cols {
            let mut rng = ba_data::Rng::seed_from_u64(derive_seed(seed, &format!("preview-{i}-{c}")));
            let pipeline: &dyn Transform = if c == 0 { &test } else { &train };
            let shown = pipeline.apply(original.clone(), &mut rng);
            paint(&mut grid, &shown, GAP + c * (side + GAP), GAP + r as u32 * (side + GAP));
        }
    }
    grid
}

/// Draws a normalised image with its top-left corner at (`x0`, `y0`).
fn paint(grid: &mut RgbImage, image: &Image, x0: u32, y0: u32) {
    let mut pixels = image.clone();
    Normalize::imagenet().denormalize(&mut pixels);
    let area = pixels.area();
    for y in 0..pixels.height {
        for x in 0..pixels.width {
            let at = |c: usize| pixels.data[c * area + y * pixels.width + x].round().clamp(0.0, 255.0) as u8;
            grid.put_pixel(x0 + x as u32, y0 + y as u32, Rgb([at(0), at(1), at(2)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cifar10 {
        Cifar10::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/cifar-10-sample")).unwrap()
    }

    #[test]
    fn rows_cover_every_class_first() {
        let data = sample();
        let picked = rows(&data.train, 12);
        assert_eq!(picked.len(), 12);
        let classes: Vec<u8> = picked.iter().map(|&i| data.train.label(i)).collect();
        assert_eq!(&classes[..10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn the_grid_shows_the_test_view_then_different_draws() {
        let data = sample();
        let grid = preview(&data.train, 2, 3, 7);
        let side = INPUT_SIZE as u32;
        assert_eq!(grid.dimensions(), (4 * (side + GAP) + GAP, 2 * (side + GAP) + GAP));
        // First cell: the test transform of the first airplane, denormalised back to its pixels.
        let first = rows(&data.train, 2)[0];
        let want = test_pipeline(INPUT_SIZE)
            .apply(Image::from_cifar(data.train.image(first)), &mut ba_data::Rng::seed_from_u64(0));
        let mut want_pixels = want.clone();
        Normalize::imagenet().denormalize(&mut want_pixels);
        let got = grid.get_pixel(GAP + 5, GAP + 9)[0] as f32;
        assert!((got - want_pixels.data[9 * INPUT_SIZE + 5]).abs() <= 0.5 + 1e-3);
        let cell = |c: u32| -> Vec<u8> {
            (0..side)
                .flat_map(|y| (0..side).map(move |x| (x, y)))
                .map(|(x, y)| grid.get_pixel(GAP + c * (side + GAP) + x, GAP + y)[1])
                .collect()
        };
        assert_ne!(cell(1), cell(2), "each draw differs");
        assert_ne!(cell(0), cell(1), "augmentation changes the image");
    }
}
