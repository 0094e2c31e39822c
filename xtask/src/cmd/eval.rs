//! `cargo xtask eval`: accuracy, loss, per-class accuracy, confusion matrix and inference speed
//! of a weights file on the CIFAR-10 test set.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use ba_data::{Cifar10, Split};
use ba_train::EpochSource;
use candle_core::Device;
use serde::Serialize;

use crate::report::confusion::ConfusionMatrix;
use crate::setup::test_loader;
use crate::trained::{split_batch, Throughput, Trained, WeightsArgs};

/// Arguments of `eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    weights: WeightsArgs,
    /// CIFAR-10 source (folder, .tar.gz or hf://); its test split is evaluated.
    #[arg(long, default_value = "data/cifar-10-sample")]
    data: PathBuf,
    /// Images per batch.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    batch_size: u64,
    /// Label smoothing of the reported loss (training's, so it compares with val loss).
    #[arg(long, default_value_t = 0.1)]
    label_smoothing: f64,
    /// The confusion-matrix PNG [default: <checkpoint>-confusion.png beside the weights].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The result of evaluating a model on a labelled split.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub images: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub confusion: ConfusionMatrix,
    /// Images per second of the whole pass, data loading included (the notebook's measure).
    pub pass_images_per_second: f64,
}

/// Evaluates `trained` on `split` in evaluation mode, through the test transform.
pub fn evaluate(trained: &Trained, split: &Arc<Split>, batch_size: usize, smoothing: f64) -> Result<Evaluation> {
    let loader = test_loader(split.clone(), batch_size, trained.kind.family(), &trained.device);
    let mut confusion = ConfusionMatrix::new(ba_data::NUM_CLASSES);
    let pass = ba_train::evaluate_with(trained.model.as_ref(), smoothing, loader.batches(0, 0), |p| {
        confusion.add(p.label, p.predicted)
    })?;
    Ok(Evaluation {
        images: pass.images,
        loss: pass.loss,
        accuracy: confusion.accuracy(),
        confusion,
        pass_images_per_second: pass.images_per_second(),
    })
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    let trained = args.weights.load(device)?;
    let data = Cifar10::open(&args.data)?;
    let test = Arc::new(data.test);
    let result = evaluate(&trained, &test, args.batch_size as usize, args.label_smoothing)?;
    let bench = split_batch(&test, 0..(args.batch_size as usize).min(test.len()), trained.kind.family(), device)?;
    let speed = Throughput::measure(trained.model.as_ref(), &bench, 3, 11)?;
    println!(
        "{} ({}) on {} test images of {}\n\naccuracy {:.4}, loss {:.4} (label smoothing {})\n",
        trained.kind,
        args.weights.checkpoint.display(),
        result.images,
        args.data.display(),
        result.accuracy,
        result.loss,
        args.label_smoothing
    );
    println!("{}", result.confusion.table(&data.classes));
    println!(
        "inference: {:.1} images/s over the whole test set with data loading; {:.1} images/s median of {} \
         batches of {} after {} warm-up",
        result.pass_images_per_second, speed.median_images_per_second, speed.repeats, speed.batch_size, speed.warmup
    );
    let out = args.out.clone().unwrap_or_else(|| beside(&args.weights.checkpoint, "confusion.png"));
    let title = format!("{}: {} (accuracy {:.4})", trained.kind, file_name(&args.weights.checkpoint), result.accuracy);
    result.confusion.write_png(&out, &title, &data.classes)?;
    println!("confusion matrix: {}", out.display());
    Ok(())
}

/// `dir/name.safetensors` -> `dir/name-<suffix>`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().map_or("weights".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}-{suffix}"))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ba_models::ModelKind;

    #[test]
    fn the_png_goes_beside_the_weights() {
        assert_eq!(
            beside(Path::new("runs/c/final.safetensors"), "confusion.png"),
            Path::new("runs/c/final-confusion.png")
        );
    }

    #[test]
    fn evaluating_the_final_weights_gives_the_last_epochs_val_metrics() {
        use crate::preset::{Augment, OptimizerKind, ScheduleKind};
        use crate::run::{train_model, Control};
        use crate::setup::test_util::tiny_setup;
        use crate::setup::Loaders;
        use ba_models::Gate;
        let (data, notebook) = tiny_setup();
        let cifar = crate::preset::Recipe {
            augment: Augment::Cifar,
            optimizer: OptimizerKind::Sgd,
            schedule: ScheduleKind::Steps,
            lr: 0.1,
            mixup_alpha: None,
            ..notebook.clone()
        };
        let resnet = ModelKind::ResNet { depth: 20, gate: Some(Gate::Bridge) };
        for (kind, recipe) in [(ModelKind::BaAlexNet, notebook), (resnet, cifar)] {
            let dir = std::env::temp_dir().join(format!("xtask-eval-{kind}-{}", std::process::id()));
            let loaders = Loaders::new(&data, &recipe, &Device::Cpu);
            let run = train_model(kind, &loaders, &recipe, &Device::Cpu, &dir, Control::default()).unwrap();
            let trained = Trained::load(&dir.join("final.safetensors"), None, &Device::Cpu).unwrap();
            assert_eq!(trained.kind, kind);
            let result = evaluate(&trained, &data.test, recipe.batch_size, recipe.label_smoothing).unwrap();
            let last = run.epochs.last().unwrap().val;
            assert_eq!((result.images, result.accuracy), (last.images, last.accuracy), "{kind}");
            assert!((result.loss - last.loss).abs() < 1e-6, "{kind}: {} vs {}", result.loss, last.loss);
            assert_eq!(result.confusion.total(), last.images);
            let per_class = result.confusion.per_class_accuracy();
            assert!((per_class.iter().sum::<f64>() / 10.0 - result.accuracy).abs() < 1e-12, "one test image per class");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn an_unreadable_checkpoint_is_named() {
        let err = Trained::load(Path::new("no/such/weights.safetensors"), None, &Device::Cpu).err().unwrap();
        assert!(format!("{err:#}").contains("no/such/weights.safetensors"), "{err:#}");
    }
}
