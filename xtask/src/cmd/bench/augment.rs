//! `cargo xtask bench augment`: images per second of the notebook's training augmentation,
//! ours on one thread and on all, beside torchvision's PIL and tensor paths run by
//! `bench/torchvision_augment.py` in the same invocation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ba_data::transforms::{notebook_train_pipeline, Image, Transform};
use ba_data::{Cifar10, Loader, LoaderConfig};
use ba_models::INPUT_SIZE;
use candle_core::Device;
use rand::SeedableRng;
use rayon::prelude::*;

use super::{best_of, reference_lines, REPEATS};

/// Arguments of `bench augment`.
#[derive(Debug, clap::Args)]
pub struct AugmentArgs {
    /// Images to augment per measurement.
    #[arg(long, default_value_t = 2000)]
    images: usize,
    /// Python with torch and torchvision for the reference (skipped when it has neither).
    #[arg(long, env = "PYTHON", default_value = "python3")]
    python: PathBuf,
    /// The sample's training file, augmented by both sides.
    #[arg(long, default_value = "data/cifar-10-sample/data_batch_1.bin.gz")]
    file: PathBuf,
}

/// One measured configuration.
struct Row {
    name: String,
    threads: usize,
    images_per_s: f64,
}

pub fn run(args: AugmentArgs) -> Result<()> {
    let folder = args.file.parent().context("--file has no folder")?;
    let data = Cifar10::open(folder)?;
    let n = args.images.min(data.train.len());
    if n == 0 {
        bail!("--images must be at least 1");
    }
    let pipeline = notebook_train_pipeline(INPUT_SIZE);
    let run_once = || {
        (0..n).into_par_iter().for_each(|i| {
            let mut rng = ba_data::Rng::seed_from_u64(i as u64);
            std::hint::black_box(pipeline.apply(Image::from_cifar(data.train.image(i)), &mut rng));
        })
    };
    let cores = rayon::current_num_threads();
    let mut rows = Vec::new();
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
        pool.install(run_once); // warm-up
        let seconds = best_of(REPEATS, || pool.install(run_once));
        rows.push(Row { name: "ba-data pipeline".into(), threads, images_per_s: n as f64 / seconds });
    }
    // The loader as training uses it: batches of 128 with mixup, next batch prepared ahead.
    let config = LoaderConfig {
        batch_size: 128,
        shuffle: true,
        drop_last: true,
        shuffle_seed: 1,
        augment_seed: 2,
        mixup: ba_data::transforms::mixup::Mixup::new(1.5),
    };
    let loader =
        Loader::new(Arc::new(data.train.clone()), Arc::new(notebook_train_pipeline(INPUT_SIZE)), config, Device::Cpu);
    let batches = (n / 128).max(1);
    let start = Instant::now();
    for batch in loader.epoch(0).take(batches) {
        std::hint::black_box(batch?);
    }
    rows.push(Row {
        name: "ba-data loader (batch 128, mixup)".into(),
        threads: cores,
        images_per_s: (batches * 128) as f64 / start.elapsed().as_secs_f64(),
    });
    rows.extend(torchvision(&args, n));

    let reference = rows.iter().find(|r| r.name.contains("PIL")).map(|r| r.images_per_s);
    println!("augmenting {n} CIFAR-10 images (resize 130, colour jitter, random resized crop 128, flip, rotation, normalise)\n");
    println!("| implementation | threads | images/s | images/s per thread | per thread vs torchvision PIL |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        let per = r.images_per_s / r.threads as f64;
        let ratio = reference.map(|p| format!("{:.2}x", per / p)).unwrap_or_else(|| "-".into());
        println!("| {} | {} | {:.0} | {:.0} | {} |", r.name, r.threads, r.images_per_s, per, ratio);
    }
    Ok(())
}

/// torchvision's figures, or none (with a note) when the Python lacks it.
fn torchvision(args: &AugmentArgs, n: usize) -> Vec<Row> {
    let script_args = [args.file.display().to_string(), n.to_string()];
    let lines = reference_lines(&args.python, "bench/torchvision_augment.py", &script_args).unwrap_or_default();
    lines
        .iter()
        .map(|v| Row {
            name: format!("torchvision {} path", if v["path"] == "pil" { "PIL" } else { "tensor" }),
            threads: v["threads"].as_u64().unwrap_or(1) as usize,
            images_per_s: v["images_per_s"].as_f64().unwrap_or(0.0),
        })
        .collect()
}
