//! `cargo xtask bench epoch`: one epoch of a training recipe, data loading and augmentation
//! included, for each model on the chosen device, beside the same epoch of the PyTorch
//! reference (`bench/torch_reference.py epoch`: torchvision transforms, a DataLoader, the same
//! network, loss, mixup and Adam) on the same device. The GPU check (`scripts/gpu-check.sh`)
//! runs it with `--device cuda --images 50000`: a full CIFAR-10 epoch's worth of images, drawn
//! by cycling the training set it is given (the committed sample when the full set is absent;
//! the time per image does not depend on which images they are).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ba_data::Split;
use ba_models::ModelKind;
use candle_core::Device;

use super::reference_lines;
use crate::preset::RecipeArgs;
use crate::run::{train_model, Control, Data, Loaders};

/// Arguments of `bench epoch`.
#[derive(Debug, clap::Args)]
pub struct EpochArgs {
    /// Training images in the epoch: the data's training set, cycled or cut to this many.
    #[arg(long, default_value_t = 50_000)]
    images: usize,
    /// Models to measure.
    #[arg(long, value_delimiter = ',', default_values = ["alexnet", "ba-alexnet"])]
    models: Vec<ModelKind>,
    /// Python with torch and torchvision for the reference (skipped, with a note, without them).
    #[arg(long, env = "PYTHON", default_value = "python3")]
    python: PathBuf,
    /// DataLoader workers of the PyTorch reference [default: one per core, as our loader uses].
    #[arg(long)]
    workers: Option<usize>,
    /// The recipe (its epochs are ignored: one epoch is measured).
    #[command(flatten)]
    recipe: RecipeArgs,
}

/// One side's epoch: seconds of the training pass and of the validation pass.
#[derive(Debug, Clone, Copy)]
struct EpochTimes {
    train: f64,
    val: f64,
}

pub fn run(args: EpochArgs, device: &Device) -> Result<()> {
    if args.images == 0 {
        bail!("--images must be at least 1");
    }
    let recipe = crate::preset::Recipe { epochs: 1, ..args.recipe.recipe()? };
    let data: Data = ba_data::Cifar10::open(&recipe.data)?.into();
    if data.train.is_empty() {
        bail!("{}: no training images", recipe.data.display());
    }
    let data = Data { train: Arc::new(cycled(&data.train, args.images)), ..data };
    if recipe.batch_size > args.images {
        bail!("--batch-size {} is larger than --images {}", recipe.batch_size, args.images);
    }
    let scratch = tempdir()?;
    let workers = args.workers.unwrap_or_else(rayon::current_num_threads);
    let device_name = if device.is_cuda() { "cuda" } else { "cpu" };
    println!(
        "One epoch: {} training images ({} cycled), batch {}, augmentation {:?}, mixup {}, {} products, on {device_name}\n",
        args.images,
        recipe.data.display(),
        recipe.batch_size,
        recipe.augment,
        recipe.mixup_alpha.map_or("off".into(), |a| format!("alpha {a}")),
        recipe.precision,
    );
    let mut rows = Vec::new();
    for &kind in &args.models {
        eprintln!("ours: {kind}");
        let loaders = Loaders::new(&data, &recipe, device);
        let folder = scratch.join(kind.name());
        let summary = train_model(kind, &loaders, &recipe, device, &folder, Control::default())?;
        let epoch = summary.epochs.first().context("the epoch did not finish")?;
        let ours = EpochTimes { train: epoch.train.seconds, val: epoch.val.seconds };
        eprintln!("PyTorch: {kind}");
        let reference = [
            "epoch".to_string(),
            "--model".into(),
            kind.name().into(),
            "--data".into(),
            recipe.data.display().to_string(),
            "--images".into(),
            args.images.to_string(),
            "--batch".into(),
            recipe.batch_size.to_string(),
            "--mixup-alpha".into(),
            recipe.mixup_alpha.unwrap_or(0.0).to_string(),
            "--workers".into(),
            workers.to_string(),
            "--device".into(),
            device_name.into(),
            "--precision".into(),
            recipe.precision.name().into(),
        ];
        let torch = reference_lines(&args.python, "bench/torch_reference.py", &reference)
            .and_then(|mut lines| lines.pop())
            .and_then(|v| Some(EpochTimes { train: v["train_seconds"].as_f64()?, val: v["val_seconds"].as_f64()? }));
        rows.push((kind, ours, torch));
    }
    std::fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
    println!("{}", table(&rows, args.images));
    Ok(())
}

/// `count` images of `split`, cycling through it in order.
fn cycled(split: &Split, count: usize) -> Split {
    let mut out = Split::default();
    for i in (0..split.len()).cycle().take(count) {
        out.push(split.label(i), split.image(i));
    }
    out
}

/// A fresh folder for the runs' checkpoints, removed at the end.
fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ba-net-bench-epoch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn table(rows: &[(ModelKind, EpochTimes, Option<EpochTimes>)], images: usize) -> String {
    let mut out = String::from(
        "| model | train pass ours (s) | train pass torch (s) | ours / torch | ours img/s | torch img/s | val pass ours / torch (s) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (kind, ours, torch) in rows {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        out += &format!(
            "| {kind} | {:.1} | {} | {} | {:.0} | {} | {:.2} / {} |\n",
            ours.train,
            or_dash(torch.map(|t| format!("{:.1}", t.train))),
            or_dash(torch.map(|t| format!("{:.2}", ours.train / t.train))),
            images as f64 / ours.train,
            or_dash(torch.map(|t| format!("{:.0}", images as f64 / t.train))),
            ours.val,
            or_dash(torch.map(|t| format!("{:.2}", t.val))),
        );
    }
    out + "\n(train pass: every step of the epoch with data loading and augmentation; below 1 is faster)\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycling_repeats_the_split_in_order_and_cuts_it() {
        let mut split = Split::default();
        for label in 0..3u8 {
            split.push(label, &[label; ba_data::IMAGE_BYTES]);
        }
        let seven = cycled(&split, 7);
        assert_eq!(seven.labels(), &[0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(seven.image(4), split.image(1));
        assert_eq!(cycled(&split, 2).labels(), &[0, 1]);
    }
}
