//! `cargo xtask bench epoch`: one epoch of a training recipe, data loading and augmentation
//! included, for each model on the chosen device, beside the same epoch of the PyTorch
//! reference (`bench/torch_reference.py epoch`: torchvision transforms, a DataLoader, the same
//! network, loss, mixup and Adam) on the same device. The GPU check (`scripts/gpu-check.sh`)
//! runs it with `--device cuda --images 50000`: a full CIFAR-10 epoch's worth of images, drawn
//! by cycling the training set it is given (the committed sample when the full set is absent;
//! the time per image does not depend on which images they are). Each side's training loss and
//! validation accuracy stand beside its times, so a fast but wrong epoch shows; on a GPU,
//! PyTorch's f32 epoch runs with TF32 off (like for like with ours) and again with it on,
//! labelled, and `--against-cpu` trains our epoch on the CPU too, from the same seed on the same
//! batches, and compares the two.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ba_core::ops::Precision;
use ba_data::Split;
use ba_models::ModelKind;
use candle_core::Device;

use super::reference_lines;
use crate::preset::RecipeArgs;
use crate::run::{train_model, Control};
use crate::setup::{Data, Loaders};

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
    /// Skip the PyTorch reference.
    #[arg(long)]
    no_torch: bool,
    /// Also train our epoch on the CPU (same seed, same batches, same dropout masks) and compare
    /// its loss and accuracy with the device's.
    #[arg(long)]
    against_cpu: bool,
    /// The recipe (its epochs are ignored: one epoch is measured).
    #[command(flatten)]
    recipe: RecipeArgs,
}

/// One side's epoch: seconds of the training pass and of the validation pass, the training
/// pass's mean loss per image and the validation accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Epoch {
    train: f64,
    val: f64,
    loss: f64,
    accuracy: f64,
}

impl Epoch {
    fn from_json(v: &serde_json::Value) -> Option<Self> {
        Some(Self {
            train: v["train_seconds"].as_f64()?,
            val: v["val_seconds"].as_f64()?,
            loss: v["train_loss"].as_f64()?,
            accuracy: v["val_accuracy"].as_f64()?,
        })
    }
}

/// A model's epoch by each side: ours on the device, PyTorch's (each run named), ours on the CPU.
struct Row {
    kind: ModelKind,
    ours: Epoch,
    references: Vec<(&'static str, Epoch)>,
    cpu: Option<Epoch>,
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
        let ours = |device: &Device, side: &str| -> Result<Epoch> {
            eprintln!("ours on {side}: {kind}");
            let loaders = Loaders::new(&data, &recipe, device);
            let folder = scratch.join(format!("{}-{side}", kind.name()));
            let summary = train_model(kind, &loaders, &recipe, device, &folder, Control::default())?;
            let e = summary.epochs.first().context("the epoch did not finish")?;
            Ok(Epoch { train: e.train.seconds, val: e.val.seconds, loss: e.train.loss, accuracy: e.val.accuracy })
        };
        let on_device = ours(device, device_name)?;
        let cpu = match args.against_cpu && device.is_cuda() {
            true => Some(ours(&Device::Cpu, "cpu")?),
            false => None,
        };
        let mut references = Vec::new();
        if !args.no_torch {
            // TF32 is PyTorch's default for cuDNN convolutions; ours compute in true f32.
            let tf32_too = device.is_cuda() && recipe.precision == Precision::F32;
            let runs: &[(&'static str, &str)] =
                if tf32_too { &[("PyTorch", "off"), ("PyTorch, TF32", "on")] } else { &[("PyTorch", "off")] };
            for &(label, tf32) in runs {
                eprintln!("{label}: {kind}");
                let reference = [
                    "epoch",
                    "--model",
                    kind.name(),
                    "--data",
                    &recipe.data.display().to_string(),
                    "--images",
                    &args.images.to_string(),
                    "--batch",
                    &recipe.batch_size.to_string(),
                    "--mixup-alpha",
                    &recipe.mixup_alpha.unwrap_or(0.0).to_string(),
                    "--workers",
                    &workers.to_string(),
                    "--device",
                    device_name,
                    "--precision",
                    recipe.precision.name(),
                    "--tf32",
                    tf32,
                ]
                .map(String::from);
                let torch = reference_lines(&args.python, "bench/torch_reference.py", &reference)
                    .and_then(|mut lines| lines.pop())
                    .and_then(|v| Epoch::from_json(&v));
                references.extend(torch.map(|t| (label, t)));
            }
        }
        rows.push(Row { kind, ours: on_device, references, cpu });
    }
    std::fs::remove_dir_all(&scratch).with_context(|| format!("removing {}", scratch.display()))?;
    println!("{}", table(&rows, args.images, device_name));
    if rows.iter().any(|r| r.cpu.is_some()) {
        println!("{}", against_cpu(&rows, device_name));
        // The step test bounds one step's loss at 1e-4 (f32) and 5e-3 (bf16); ten steps of Adam
        // let rounding grow, and a wrong kernel moves the loss by far more than either bound.
        let tolerance = if recipe.precision == Precision::F32 { 1e-2 } else { 5e-2 };
        for row in &rows {
            let Some(cpu) = row.cpu else { continue };
            let difference = loss_difference(row.ours, cpu);
            if difference > tolerance {
                bail!(
                    "{}: the training loss on {device_name} ({:.5}) and on the CPU ({:.5}) differ by {difference:.1e} \
                     relative, more than {tolerance:.0e}",
                    row.kind,
                    row.ours.loss,
                    cpu.loss
                );
            }
        }
    }
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

/// Each model's epoch by each side: times, throughput, ratio to ours, loss and accuracy.
fn table(rows: &[Row], images: usize, device_name: &str) -> String {
    let mut out = String::from(
        "| model | side | train pass (s) | img/s | ours / this | train loss | val pass (s) | val acc |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let ours_label = format!("ours ({device_name})");
        let sides =
            std::iter::once((ours_label.as_str(), row.ours)).chain(row.references.iter().map(|&(label, e)| (label, e)));
        for (label, e) in sides {
            out += &format!(
                "| {} | {label} | {:.1} | {:.0} | {:.2} | {:.4} | {:.2} | {:.4} |\n",
                row.kind,
                e.train,
                images as f64 / e.train,
                row.ours.train / e.train,
                e.loss,
                e.val,
                e.accuracy,
            );
        }
    }
    out + "\n(train pass: every step of the epoch with data loading and augmentation; ours / this \
           below 1: ours is faster)\n"
}

/// The relative difference of the device's training loss from the CPU's.
fn loss_difference(device: Epoch, cpu: Epoch) -> f64 {
    (device.loss - cpu.loss).abs() / cpu.loss.abs().max(f64::MIN_POSITIVE)
}

/// Ours on the device against ours on the CPU, the same epoch from the same seed: they differ
/// only by the order of floating-point sums.
fn against_cpu(rows: &[Row], device_name: &str) -> String {
    let mut out = format!(
        "| model | train loss {device_name} / cpu | relative difference | val acc {device_name} / cpu |\n\
         |---|---|---|---|\n"
    );
    for row in rows {
        if let Some(cpu) = row.cpu {
            out += &format!(
                "| {} | {:.5} / {:.5} | {:.1e} | {:.4} / {:.4} |\n",
                row.kind,
                row.ours.loss,
                cpu.loss,
                loss_difference(row.ours, cpu),
                row.ours.accuracy,
                cpu.accuracy,
            );
        }
    }
    out
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

    fn epoch(train: f64, loss: f64, accuracy: f64) -> Epoch {
        Epoch { train, val: 1.0, loss, accuracy }
    }

    #[test]
    fn the_reference_line_needs_every_field() {
        let line =
            serde_json::json!({"train_seconds": 2.0, "val_seconds": 0.5, "train_loss": 2.1, "val_accuracy": 0.3});
        assert_eq!(Epoch::from_json(&line), Some(Epoch { train: 2.0, val: 0.5, loss: 2.1, accuracy: 0.3 }));
        let older = serde_json::json!({"train_seconds": 2.0, "val_seconds": 0.5});
        assert_eq!(Epoch::from_json(&older), None);
    }

    #[test]
    fn the_tables_show_each_side_with_its_ratio_loss_and_accuracy() {
        let rows = [Row {
            kind: ModelKind::BaAlexNet,
            ours: epoch(10.0, 2.2, 0.25),
            references: vec![("PyTorch", epoch(20.0, 2.3, 0.2)), ("PyTorch, TF32", epoch(8.0, 2.3, 0.2))],
            cpu: Some(epoch(100.0, 2.0, 0.25)),
        }];
        let t = table(&rows, 1000, "cuda");
        assert!(t.contains("| ba-alexnet | ours (cuda) | 10.0 | 100 | 1.00 | 2.2000 |"), "{t}");
        assert!(t.contains("| ba-alexnet | PyTorch | 20.0 | 50 | 0.50 | 2.3000 |"), "{t}");
        assert!(t.contains("| ba-alexnet | PyTorch, TF32 | 8.0 | 125 | 1.25 |"), "{t}");
        let c = against_cpu(&rows, "cuda");
        assert!(c.contains("| ba-alexnet | 2.20000 / 2.00000 | 1.0e-1 | 0.2500 / 0.2500 |"), "{c}");
    }
}
