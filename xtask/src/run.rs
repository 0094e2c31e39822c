//! Training one model under a recipe into a run folder: the recipe's model, optimizer,
//! schedule and data handed to ba-train's [`Learner`], with a progress bar and Ctrl-C.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use ba_core::init::SeededVarMap;
use ba_core::model::ParameterCount;
use ba_core::ops::Precision;
use ba_core::rng::{derive_seed, rng_for};
use ba_models::{ModelConfig, ModelKind};
use ba_train::{EpochRecord, Learner, LearnerConfig};
use candle_core::{DType, Device};
use candle_nn::VarMap;
use serde::Serialize;

use crate::preset::Recipe;
use crate::recipe_parts::{optimizer, schedule};
use crate::setup::Loaders;

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub model: String,
    pub parameters: usize,
    pub trainable_parameters: usize,
    pub epochs: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub seconds: f64,
}

impl RunSummary {
    /// The last and the best epoch; none when the run stopped during its first epoch.
    pub fn last_and_best(&self) -> Option<(&EpochRecord, &EpochRecord)> {
        Some((self.epochs.last()?, self.epochs.get(self.best_epoch.checked_sub(1)?)?))
    }
}

/// How a call of [`train_model`] starts and ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// Continue from the run folder's checkpoint.
    pub resume: bool,
    /// Stop after this epoch (the checkpoint allows resuming), instead of after the last.
    pub pause_after: Option<usize>,
    /// Stop, mid-epoch, once this many optimizer steps are taken (as Ctrl-C does).
    pub pause_after_step: Option<u64>,
    /// Steps per training-loss record in the metrics file.
    pub step_log_every: u64,
}

impl Default for Control {
    fn default() -> Self {
        Self { resume: false, pause_after: None, pause_after_step: None, step_log_every: 10 }
    }
}

/// Set by the Ctrl-C handler of the training verbs: the current step finishes, a checkpoint
/// is written, and the run stops.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler: the first press sets [`INTERRUPTED`], a second quits at once.
pub fn stop_on_ctrl_c() -> Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this step and writing a checkpoint (Ctrl-C again to quit now)");
    })?;
    Ok(())
}

/// What to tell a user whose run in `dir` failed: whether a checkpoint survives, and the
/// command (`resume`) that continues from it once the cause is fixed.
pub fn resume_hint(dir: &Path, checkpoint: &Path, resume: &str) -> String {
    if checkpoint.is_file() {
        format!(
            "training stopped; the last checkpoint ({}) is whole: fix the cause below, then continue with: {resume} {}",
            checkpoint.display(),
            dir.display()
        )
    } else {
        format!("training stopped before its first checkpoint in {}", dir.display())
    }
}

/// Trains `kind` under `recipe` into `dir` (see [`Learner`] for the files it holds). With
/// `control.resume`, continues from `dir`'s checkpoint, and the rest of the run is what it
/// would have been. With `control.pause_after`, stops after that epoch (no `final.safetensors`).
pub fn train_model(
    kind: ModelKind,
    loaders: &Loaders,
    recipe: &Recipe,
    device: &Device,
    dir: &Path,
    control: Control,
) -> Result<RunSummary> {
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(recipe.seed, "init"), DType::F32, device);
    if recipe.precision == Precision::Bf16 && device.is_cpu() {
        tracing::warn!(
            model = kind.name(),
            "bf16 on the CPU is an emulation for checking accuracy (operands rounded, f32 products): slower than f32"
        );
    }
    let config =
        ModelConfig { precision: recipe.precision, ..ModelConfig::cifar10(derive_seed(recipe.seed, "dropout")) };
    let model = kind.build(config, vb)?;
    let count = ParameterCount::of(&vars);
    let steps = recipe.epochs * loaders.train.batches_per_epoch();
    let bar = crate::progress::bar(kind.name(), steps);
    let config = LearnerConfig {
        model: kind.name().to_string(),
        epochs: recipe.epochs,
        label_smoothing: recipe.label_smoothing,
        step_log_every: control.step_log_every,
        description: serde_json::to_value(recipe)?,
    };
    let mut learner =
        Learner::new(model.as_ref(), &vars, optimizer(recipe, &vars), schedule(recipe, steps), config, dir)?
            .with_progress(|p| crate::progress::show(&bar, p))
            .on_epoch(|record| bar.suspend(|| log_epoch(kind, record)))
            .stop_when(&INTERRUPTED)
            .pause_after_epoch(control.pause_after)
            .pause_after_step(control.pause_after_step);
    if control.resume {
        learner.resume()?;
        bar.set_position(learner.steps());
    }
    let fitted = learner.fit(&loaders.train, &loaders.val)?;
    drop(learner);
    bar.finish_and_clear();
    Ok(RunSummary {
        model: kind.name().to_string(),
        parameters: count.total,
        trainable_parameters: count.trainable,
        epochs: fitted.epochs,
        best_epoch: fitted.best_epoch,
        seconds: fitted.seconds,
    })
}

fn log_epoch(kind: ModelKind, record: &EpochRecord) {
    let (train, val) = (record.train, record.val);
    tracing::info!(
        model = kind.name(),
        epoch = record.epoch,
        train_loss = format!("{:.4}", train.loss),
        train_acc = format!("{:.4}", train.accuracy),
        val_loss = format!("{:.4}", val.loss),
        val_acc = format!("{:.4}", val.accuracy),
        images_per_s = format!("{:.1}", train.images_per_second()),
        data_wait_s = format!("{:.2}", train.data_wait_seconds),
        "epoch done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::test_util::tiny_setup;
    use ba_train::metrics::read_metrics;

    #[test]
    fn a_run_writes_metrics_and_loadable_checkpoints() {
        let (data, recipe) = tiny_setup();
        let dir = std::env::temp_dir().join(format!("xtask-run-{}", std::process::id()));
        let loaders = Loaders::new(&data, &recipe, &Device::Cpu);
        assert_eq!(loaders.train.batches_per_epoch(), 2, "20 images, batch 8, last batch dropped");
        let summary =
            train_model(ModelKind::BaAlexNet, &loaders, &recipe, &Device::Cpu, &dir, Control::default()).unwrap();
        assert_eq!((summary.parameters, summary.trainable_parameters), (7_529_258, 7_529_210));
        let metrics = read_metrics(&dir.join("metrics.jsonl")).unwrap();
        assert_eq!(metrics, summary.epochs);
        assert_eq!(metrics.iter().map(|r| r.train.images).collect::<Vec<_>>(), vec![16, 16]);
        assert_eq!(metrics[1].val.images, 10);
        for file in ["best.safetensors", "final.safetensors"] {
            let tensors = candle_core::safetensors::load(dir.join(file), &Device::Cpu).unwrap();
            assert_eq!(tensors["ba.generation.1.weight"].dims(), &[128, 8, 1, 1]);
            assert_eq!(tensors.len(), 16 + 16 + 3, "AlexNet, BA module, num_batches_tracked");
            let steps = tensors["ba.cur_fusion.2.num_batches_tracked"].to_scalar::<i64>().unwrap();
            assert_eq!(steps, if file == "final.safetensors" { 4 } else { 2 * summary.best_epoch as i64 });
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
