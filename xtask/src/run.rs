//! Training one model under a recipe, into a run folder.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ba_core::init::SeededVarMap;
use ba_core::model::{ImageClassifier, ParameterCount};
use ba_core::ops::Precision;
use ba_core::rng::{derive_seed, rng_for};
use ba_data::transforms::mixup::Mixup;
use ba_data::transforms::{notebook_train_pipeline, simple_train_pipeline, test_pipeline, Transform};
use ba_data::{Batch, Cifar10, Loader, LoaderConfig, Split, PREFETCHED_BATCHES};
use ba_models::{ModelConfig, ModelKind, INPUT_SIZE};
use ba_train::checkpoint::{load_checkpoint, read_train_state, save_checkpoint, save_weights, TrainState};
use ba_train::memory::{available_memory, StepMemory};
use ba_train::metrics::{read_lines, MetricsLine, MetricsWriter};
use ba_train::{
    Adam, AdamConfig, CosineAnnealing, EpochOutcome, EpochProgress, EpochRecord, Linear, Optimizer, Schedule,
    Sequential, Sgd, SgdConfig, Trainer,
};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde::Serialize;

use crate::preset::{Augment, OptimizerKind, Recipe, RecipeArgs};
use crate::run_lock::RunLock;

/// The images of a run, shared by every loader over them.
#[derive(Clone)]
pub struct Data {
    pub train: Arc<Split>,
    pub test: Arc<Split>,
    /// Class names, by label.
    pub classes: Vec<String>,
}

impl From<Cifar10> for Data {
    fn from(data: Cifar10) -> Self {
        Self { train: Arc::new(data.train), test: Arc::new(data.test), classes: data.classes }
    }
}

/// What every training verb starts from: the validated recipe, the data, the device and a
/// new run folder holding `recipe.json`.
pub struct Setup {
    pub recipe: Recipe,
    pub data: Data,
    pub device: Device,
    pub dir: PathBuf,
    /// This process's claim to write `dir`, held as long as the setup lives.
    _lock: RunLock,
}

impl Setup {
    /// Validates `args`, reads the data and creates `<out>/<name>-N`, to train on `device`.
    pub fn new(args: &RecipeArgs, name: &str, device: &Device) -> Result<Self> {
        let recipe = args.recipe()?;
        let data = Cifar10::open(&recipe.data)?.into();
        check_batch_size(recipe.batch_size, &data, device)?;
        let dir = new_run_dir(&args.out, name)?;
        let _lock = RunLock::take(&dir)?;
        crate::write_json(&dir.join("recipe.json"), &recipe)?;
        Ok(Self { recipe, data, device: device.clone(), dir, _lock })
    }

    /// The setup of the existing run folder `dir`, from its `recipe.json` or, without it, from
    /// the recipe stored in a checkpoint (its own or a model's in a comparison).
    pub fn resume(dir: &Path, device: &Device) -> Result<Self> {
        let path = dir.join("recipe.json");
        let recipe: Recipe = if path.is_file() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            Recipe::from_json(&text, &path)?
        } else {
            let checkpoint = find_checkpoint(dir)
                .with_context(|| format!("{}: no recipe.json and no checkpoint to resume from", dir.display()))?;
            let state = read_train_state(&checkpoint)?;
            Recipe::from_json(&state.config.to_string(), &checkpoint)?
        };
        let _lock = RunLock::take(dir)?;
        crate::write_json(&path, &recipe)?;
        let data = Cifar10::open(&recipe.data)?.into();
        check_batch_size(recipe.batch_size, &data, device)?;
        Ok(Self { recipe, data, device: device.clone(), dir: dir.to_path_buf(), _lock })
    }

    /// Loaders over the data for the recipe with `seed`.
    pub fn loaders(&self, seed: u64) -> Loaders {
        Loaders::new(&self.data, &Recipe { seed, ..self.recipe.clone() }, &self.device)
    }
}

/// Refuses, before any training, a batch size larger than the training set (every batch is
/// whole, so an epoch would have no step) or, on the CPU, whose training step would not fit in
/// the memory this machine has left (with the data already loaded), for either model. (On a
/// GPU an allocation that fails stops the run with CUDA's out-of-memory error.)
fn check_batch_size(batch_size: usize, data: &Data, device: &Device) -> Result<()> {
    if let (true, Some(available)) = (device.is_cpu(), available_memory()) {
        for kind in ModelKind::ALL {
            let (vars, model) = crate::trained::fresh(kind, &Device::Cpu)?;
            let image = (3, INPUT_SIZE, INPUT_SIZE);
            let step = StepMemory::of(model.as_ref(), image, ParameterCount::of(&vars).total, PREFETCHED_BATCHES)?;
            step.check(kind.name(), batch_size, available)?;
        }
    }
    if batch_size > data.train.len() {
        bail!(
            "--batch-size {batch_size} is larger than the {} training images: an epoch would have no step",
            data.train.len()
        );
    }
    Ok(())
}

/// A checkpoint in `dir` or in a run folder below it (a comparison's models).
fn find_checkpoint(dir: &Path) -> Option<PathBuf> {
    let direct = dir.join(CHECKPOINT);
    if direct.is_file() {
        return Some(direct);
    }
    let below = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d).map(|r| r.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default()
    };
    below(dir)
        .iter()
        .flat_map(|d| std::iter::once(d.clone()).chain(below(d)))
        .map(|d| d.join(CHECKPOINT))
        .find(|p| p.is_file())
}

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

/// A new run folder `<out>/<prefix>-<n>`, numbered past the existing ones so no run is overwritten.
pub fn new_run_dir(out: &Path, prefix: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for n in 1.. {
        let dir = out.join(format!("{prefix}-{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    unreachable!("an unbounded range always yields")
}

/// The loaders of a recipe. Both models of a comparison get loaders with the same seeds, so
/// they see the same images in the same order with the same augmentation.
pub struct Loaders {
    pub train: Loader,
    pub val: Loader,
}

impl Loaders {
    /// Loaders over `data` (shared, not copied).
    pub fn new(data: &Data, recipe: &Recipe, device: &Device) -> Self {
        let config = LoaderConfig {
            batch_size: recipe.batch_size,
            shuffle: true,
            drop_last: true,
            shuffle_seed: derive_seed(recipe.seed, "shuffle"),
            augment_seed: derive_seed(recipe.seed, "augment"),
            mixup: recipe.mixup_alpha.and_then(Mixup::new),
        };
        let train = Loader::new(data.train.clone(), train_pipeline(recipe), config, device.clone());
        let val_config = LoaderConfig { shuffle: false, drop_last: false, mixup: None, ..config };
        let val = Loader::new(data.test.clone(), Arc::new(test_pipeline(INPUT_SIZE)), val_config, device.clone());
        Self { train, val }
    }
}

/// The recipe's training augmentation.
pub fn train_pipeline(recipe: &Recipe) -> Arc<dyn Transform> {
    match recipe.augment {
        Augment::Notebook => Arc::new(notebook_train_pipeline(INPUT_SIZE)),
        Augment::Simple => Arc::new(simple_train_pipeline(INPUT_SIZE)),
    }
}

fn pairs(batch: ba_data::Result<Batch>) -> ba_data::Result<(Tensor, Tensor)> {
    batch.map(|b| (b.images, b.targets))
}

/// The recipe's optimizer over `vars`.
fn optimizer(recipe: &Recipe, vars: &VarMap) -> Box<dyn Optimizer> {
    let adam = AdamConfig { weight_decay: recipe.weight_decay, ..AdamConfig::default() };
    match recipe.optimizer {
        OptimizerKind::Adam => Box::new(Adam::new(vars, adam)),
        OptimizerKind::AdamW => Box::new(Adam::adamw(vars, adam)),
        OptimizerKind::Sgd => Box::new(Sgd::new(
            vars,
            SgdConfig {
                momentum: recipe.momentum,
                nesterov: recipe.nesterov,
                weight_decay: recipe.weight_decay,
                ..SgdConfig::default()
            },
        )),
    }
}

/// The recipe's schedule over `steps` optimizer steps: cosine annealing to 0, after a linear
/// warm-up from 1% of the rate when asked.
fn schedule(recipe: &Recipe, steps: usize) -> Box<dyn Schedule> {
    let warmup = steps * recipe.warmup_epochs / recipe.epochs;
    let cosine = CosineAnnealing { base_lr: recipe.lr, eta_min: 0.0, total_steps: steps - warmup };
    if warmup == 0 {
        return Box::new(cosine);
    }
    let ramp = Linear { base_lr: recipe.lr, start_factor: 0.01, end_factor: 1.0, total_steps: warmup };
    #[allow(clippy::expect_used)] // one milestone for two phases: always consistent
    let schedule = Sequential::new(vec![Box::new(ramp), Box::new(cosine)], vec![warmup]).expect("one milestone");
    Box::new(schedule)
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

/// The checkpoint's description of where `trainer` stands.
fn train_state(
    (kind, recipe): (ModelKind, &Recipe),
    trainer: &Trainer,
    model: &dyn ImageClassifier,
    history: &[EpochRecord],
    partial: Option<EpochProgress>,
) -> Result<TrainState> {
    Ok(TrainState {
        model: kind.name().to_string(),
        epochs_done: trainer.epochs_done(),
        steps: trainer.steps(),
        rng_positions: model.rng_positions().iter().map(|p| p.to_string()).collect(),
        step_window: trainer.step_window(),
        partial,
        history: history.to_vec(),
        config: serde_json::to_value(recipe)?,
    })
}

/// The training checkpoint in a model's run folder, rewritten after every epoch.
pub const CHECKPOINT: &str = "checkpoint.safetensors";

/// Trains `kind` under `recipe`, writing `metrics.jsonl`, `best.safetensors`,
/// `final.safetensors` and, after every epoch, `checkpoint.safetensors` into `dir`. With
/// `control.resume`, continues from `dir`'s checkpoint: weights, optimizer state, dropout
/// generators, epoch count and metrics so far, and the rest of the run is what it would have
/// been. With `control.pause_after`, stops after that epoch (no `final.safetensors`).
pub fn train_model(
    kind: ModelKind,
    loaders: &Loaders,
    recipe: &Recipe,
    device: &Device,
    dir: &Path,
    control: Control,
) -> Result<RunSummary> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
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
    let mut trainer =
        Trainer::new(model.as_ref(), optimizer(recipe, &vars), schedule(recipe, steps), recipe.label_smoothing)
            .with_step_log(control.step_log_every)
            .with_progress(|p| crate::progress::show(&bar, p));
    let metrics_path = dir.join("metrics.jsonl");
    let mut kept = Vec::new();
    let mut partial = None;
    if control.resume {
        let state = load_checkpoint(&dir.join(CHECKPOINT), &vars, trainer.optimizer_mut())?;
        if state.model != kind.name() {
            bail!("{}: a checkpoint of {}, not {}", dir.join(CHECKPOINT).display(), state.model, kind.name());
        }
        let positions: Vec<u128> = state.rng_positions.iter().map(|p| p.parse()).collect::<Result<_, _>>()?;
        model.set_rng_positions(&positions)?;
        trainer.set_epochs_done(state.epochs_done);
        trainer.set_step_window(state.step_window);
        partial = state.partial;
        bar.set_position(trainer.steps());
        // What the metrics file said up to the checkpoint (anything later is redone); without
        // the file, the checkpoint's own epoch history.
        kept = if metrics_path.is_file() {
            read_lines(&metrics_path)?
                .into_iter()
                .filter(|l| match l {
                    MetricsLine::Epoch(e) => e.epoch <= state.epochs_done,
                    MetricsLine::Step(s) => s.step <= state.steps,
                })
                .collect()
        } else {
            state.history.iter().copied().map(MetricsLine::Epoch).collect()
        };
    }
    let mut metrics = MetricsWriter::create(&metrics_path)?;
    let mut epochs: Vec<EpochRecord> = Vec::new();
    for line in kept {
        match line {
            MetricsLine::Epoch(e) => {
                metrics.append(&e)?;
                epochs.push(e);
            }
            MetricsLine::Step(s) => metrics.append_step(&s)?,
        }
    }
    let start = Instant::now();
    let mut best_epoch = (1..=epochs.len()).fold(0, |best, e| {
        if best == 0 || epochs[e - 1].val.accuracy > epochs[best - 1].val.accuracy {
            e
        } else {
            best
        }
    });
    let last = control.pause_after.map_or(recipe.epochs, |p| p.min(recipe.epochs));
    let stop = |steps: u64| INTERRUPTED.load(Ordering::SeqCst) || control.pause_after_step.is_some_and(|s| steps >= s);
    for epoch in trainer.epochs_done() + 1..=last {
        let from: EpochProgress = partial.take().unwrap_or_default();
        let batches = loaders.train.epoch_from(epoch - 1, from.batches_done).map(pairs);
        let outcome = trainer.train_epoch_from(batches, from, &stop)?;
        for record in trainer.take_step_records() {
            metrics.append_step(&record)?;
        }
        let train = match outcome {
            EpochOutcome::Finished(stats) => stats,
            EpochOutcome::Paused(progress) => {
                let state = train_state((kind, recipe), &trainer, model.as_ref(), &epochs, Some(progress))?;
                save_checkpoint(&dir.join(CHECKPOINT), &vars, trainer.optimizer(), &state)?;
                bar.suspend(|| {
                    tracing::info!(model = kind.name(), epoch, batch = progress.batches_done, "paused mid-epoch")
                });
                break;
            }
        };
        let val = trainer.evaluate(loaders.val.epoch(0).map(pairs))?;
        let record = EpochRecord { epoch, lr: trainer.current_lr(), train, val };
        metrics.append(&record)?;
        bar.suspend(|| {
            tracing::info!(
                model = kind.name(),
                epoch,
                train_loss = format!("{:.4}", train.loss),
                train_acc = format!("{:.4}", train.accuracy),
                val_loss = format!("{:.4}", val.loss),
                val_acc = format!("{:.4}", val.accuracy),
                images_per_s = format!("{:.1}", train.images_per_second()),
                data_wait_s = format!("{:.2}", train.data_wait_seconds),
                "epoch done"
            )
        });
        if best_epoch == 0 || val.accuracy > epochs[best_epoch - 1].val.accuracy {
            best_epoch = epoch;
            save_weights(&vars, trainer.steps(), &dir.join("best.safetensors"))?;
        }
        epochs.push(record);
        let state = train_state((kind, recipe), &trainer, model.as_ref(), &epochs, None)?;
        save_checkpoint(&dir.join(CHECKPOINT), &vars, trainer.optimizer(), &state)?;
        if stop(trainer.steps()) {
            break;
        }
    }
    if trainer.epochs_done() == recipe.epochs {
        save_weights(&vars, trainer.steps(), &dir.join("final.safetensors"))?;
    }
    drop(trainer);
    bar.finish_and_clear();
    Ok(RunSummary {
        model: kind.name().to_string(),
        parameters: count.total,
        trainable_parameters: count.trainable,
        epochs,
        best_epoch,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub fn subset(split: &Split, per_class: usize) -> Split {
        let mut out = Split::default();
        for i in split.first_per_class(per_class) {
            out.push(split.label(i), split.image(i));
        }
        out
    }

    pub fn tiny_setup() -> (Data, Recipe) {
        let full = Cifar10::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/cifar-10-sample")).unwrap();
        let data: Data =
            Cifar10 { train: subset(&full.train, 2), test: subset(&full.test, 1), classes: full.classes.clone() }
                .into();
        let recipe = Recipe {
            data: "unused".into(),
            sample: true,
            epochs: 2,
            batch_size: 8,
            lr: 1e-3,
            weight_decay: 1e-5,
            label_smoothing: 0.1,
            optimizer: OptimizerKind::Adam,
            momentum: 0.9,
            nesterov: false,
            warmup_epochs: 0,
            augment: Augment::Notebook,
            mixup_alpha: Some(1.5),
            precision: Default::default(),
            seed: 5,
        };
        (data, recipe)
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::tiny_setup;
    use super::*;
    use ba_train::metrics::{read_metrics, read_step_records};

    #[test]
    fn warm_up_ramps_to_the_rate_then_cosine_decays() {
        let (_, mut recipe) = tiny_setup();
        recipe.epochs = 3;
        recipe.warmup_epochs = 1;
        let s = schedule(&recipe, 30);
        assert!((s.lr(0) - 0.01 * recipe.lr).abs() < 1e-15);
        assert!(s.lr(5) < s.lr(9) && s.lr(9) < recipe.lr);
        assert_eq!(s.lr(10), recipe.lr);
        assert!((s.lr(20) - recipe.lr / 2.0).abs() < 1e-12, "half-way through the cosine");
        recipe.warmup_epochs = 0;
        assert_eq!(schedule(&recipe, 30).lr(0), recipe.lr);
    }

    #[test]
    fn the_same_seed_gives_the_same_weights_and_metrics() {
        let (data, recipe) = tiny_setup();
        let run = |tag: &str| {
            let dir = std::env::temp_dir().join(format!("xtask-det-{tag}-{}", std::process::id()));
            let loaders = Loaders::new(&data, &recipe, &Device::Cpu);
            let summary =
                train_model(ModelKind::BaAlexNet, &loaders, &recipe, &Device::Cpu, &dir, Control::default()).unwrap();
            let weights = candle_core::safetensors::load(dir.join("final.safetensors"), &Device::Cpu).unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
            let flat: Vec<(String, Vec<f32>)> = {
                let mut names: Vec<_> = weights.keys().filter(|n| !n.ends_with("num_batches_tracked")).collect();
                names.sort();
                names.into_iter().map(|n| (n.clone(), weights[n].flatten_all().unwrap().to_vec1().unwrap())).collect()
            };
            (summary.epochs.iter().map(|e| (e.train.loss, e.val.loss)).collect::<Vec<_>>(), flat)
        };
        let (a, b) = (run("a"), run("b"));
        assert_eq!(a.0, b.0, "metrics differ between identical runs");
        assert!(a.1 == b.1, "weights differ between identical runs");
    }

    #[test]
    fn a_paused_and_resumed_run_equals_an_uninterrupted_one() {
        let (data, recipe) = tiny_setup();
        let loaders = Loaders::new(&data, &recipe, &Device::Cpu);
        assert_eq!(loaders.train.batches_per_epoch(), 2);
        let base = std::env::temp_dir().join(format!("xtask-resume-{}", std::process::id()));
        let kind = ModelKind::BaAlexNet;
        // Step records every 3 steps, so a window spans a pause.
        let plain = Control { step_log_every: 3, ..Control::default() };
        let straight_dir = base.join("straight");
        let straight = train_model(kind, &loaders, &recipe, &Device::Cpu, &straight_dir, plain).unwrap();
        let pauses = [
            ("after epoch 1", Control { pause_after: Some(1), ..plain }),
            ("mid-epoch 1", Control { pause_after_step: Some(1), ..plain }),
            ("mid-epoch 2", Control { pause_after_step: Some(3), ..plain }),
        ];
        for (what, pause) in pauses {
            let dir = base.join(what.replace(' ', "-"));
            let first = train_model(kind, &loaders, &recipe, &Device::Cpu, &dir, pause).unwrap();
            assert!(first.epochs.len() < 2 && !dir.join("final.safetensors").exists(), "{what}");
            let stored = read_train_state(&dir.join(CHECKPOINT)).unwrap();
            assert_eq!(stored.history, first.epochs, "{what}: the checkpoint holds the history");
            assert_eq!(stored.config, serde_json::to_value(&recipe).unwrap(), "{what}: and the recipe");
            if what == "after epoch 1" {
                // A lost metrics file is rebuilt from the checkpoint's history.
                std::fs::remove_file(dir.join("metrics.jsonl")).unwrap();
            }
            let resumed =
                train_model(kind, &loaders, &recipe, &Device::Cpu, &dir, Control { resume: true, ..plain }).unwrap();
            let losses = |s: &RunSummary| {
                s.epochs
                    .iter()
                    .map(|e| (e.train.loss, e.train.accuracy, e.train.images, e.val.loss))
                    .collect::<Vec<_>>()
            };
            assert_eq!(losses(&resumed), losses(&straight), "{what}: metrics of the resumed run");
            let path = |d: &Path| d.join("metrics.jsonl");
            let epochs =
                |d: &Path| read_metrics(&path(d)).unwrap().iter().map(|e| (e.epoch, e.train.loss)).collect::<Vec<_>>();
            assert_eq!(epochs(&dir), epochs(&straight_dir), "{what}: metrics file epochs");
            let steps = read_step_records(&path(&dir)).unwrap();
            assert_eq!(steps, read_step_records(&path(&straight_dir)).unwrap(), "{what}: step records");
            assert_eq!(steps.len(), 1, "one record, at step 3");
            for file in ["final.safetensors", "checkpoint.safetensors"] {
                let a = candle_core::safetensors::load(straight_dir.join(file), &Device::Cpu).unwrap();
                let b = candle_core::safetensors::load(dir.join(file), &Device::Cpu).unwrap();
                assert_eq!(a.len(), b.len());
                for (name, t) in &a {
                    let values =
                        |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
                    assert!(values(t) == values(&b[name]), "{what}: {file}: {name} differs after resuming");
                }
            }
        }
        std::fs::remove_dir_all(&base).unwrap();
    }

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
