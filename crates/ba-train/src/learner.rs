//! The run of one model, from its first step to its final weights, in a run folder:
//! `metrics.jsonl` as it goes, `checkpoint.safetensors` after every epoch and on every stop,
//! `best.safetensors` at each new best validation accuracy and `final.safetensors` at the end.
//! A stopped run resumes from its folder, mid-epoch included, and ends as it would have
//! without the stop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use ba_core::model::ImageClassifier;
use candle_nn::VarMap;

use crate::checkpoint::{load_checkpoint, save_checkpoint, save_weights, TrainState};
use crate::error::{Result, TrainError};
use crate::evaluation::evaluate;
use crate::metrics::{read_lines, MetricsLine, MetricsWriter};
use crate::optim::Optimizer;
use crate::schedule::Schedule;
use crate::source::EpochSource;
use crate::trainer::{EpochOutcome, EpochProgress, EpochRecord, StepProgress, Trainer};

/// The training checkpoint in a run folder: weights, optimizer state and [`TrainState`].
pub const CHECKPOINT: &str = "checkpoint.safetensors";
/// The metrics file of a run folder (see [`crate::metrics`]).
pub const METRICS: &str = "metrics.jsonl";
/// The weights of the epoch with the best validation accuracy so far.
pub const BEST: &str = "best.safetensors";
/// The weights after the last epoch, written once the run is complete.
pub const FINAL: &str = "final.safetensors";

/// What a run is, besides its model, optimizer, schedule and data.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnerConfig {
    /// The model's name, stored in checkpoints and checked when resuming.
    pub model: String,
    /// Epochs of the whole run.
    pub epochs: usize,
    /// Label smoothing of the training and evaluation loss.
    pub label_smoothing: f64,
    /// Steps per training-loss record in the metrics file (0: none).
    pub step_log_every: u64,
    /// The caller's description of the run (its recipe, say), stored in every checkpoint.
    pub description: serde_json::Value,
}

/// What [`Learner::fit`] leaves: the run's epochs so far and whether it is complete.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// Every epoch of the run, resumed ones included.
    pub epochs: Vec<EpochRecord>,
    /// The epoch (from 1) with the best validation accuracy; 0 before the first epoch ends.
    pub best_epoch: usize,
    /// Wall-clock seconds of this call.
    pub seconds: f64,
    /// All epochs are done and `final.safetensors` is written.
    pub complete: bool,
}

impl Fitted {
    /// The last and the best epoch; none when the run stopped during its first epoch.
    pub fn last_and_best(&self) -> Option<(&EpochRecord, &EpochRecord)> {
        Some((self.epochs.last()?, self.epochs.get(self.best_epoch.checked_sub(1)?)?))
    }
}

type EpochFn<'a> = Box<dyn FnMut(&EpochRecord) + 'a>;

/// Runs the training of one model into a run folder. Build it, optionally [`Learner::resume`]
/// it, then [`Learner::fit`] it.
pub struct Learner<'a> {
    model: &'a dyn ImageClassifier,
    vars: &'a VarMap,
    trainer: Trainer<'a>,
    config: LearnerConfig,
    dir: PathBuf,
    stop: Option<&'a AtomicBool>,
    pause_after_epoch: Option<usize>,
    pause_after_step: Option<u64>,
    on_epoch: Option<EpochFn<'a>>,
    resumed: Option<TrainState>,
}

impl<'a> Learner<'a> {
    /// A learner of `model`, whose variables `vars` holds and `optimizer` updates under
    /// `schedule`, writing into the folder `dir` (created when missing).
    pub fn new(
        model: &'a dyn ImageClassifier,
        vars: &'a VarMap,
        optimizer: impl Optimizer + 'static,
        schedule: impl Schedule + 'static,
        config: LearnerConfig,
        dir: impl Into<PathBuf>,
    ) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|reason| TrainError::Io { path: dir.clone(), reason })?;
        let trainer =
            Trainer::new(model, optimizer, schedule, config.label_smoothing).with_step_log(config.step_log_every);
        Ok(Self {
            model,
            vars,
            trainer,
            config,
            dir,
            stop: None,
            pause_after_epoch: None,
            pause_after_step: None,
            on_epoch: None,
            resumed: None,
        })
    }

    /// Calls `report` after every training step (a progress bar, say).
    pub fn with_progress(mut self, report: impl FnMut(&StepProgress) + 'a) -> Self {
        self.trainer = self.trainer.with_progress(report);
        self
    }

    /// Calls `report` after every epoch with its record (a log line, say).
    pub fn on_epoch(mut self, report: impl FnMut(&EpochRecord) + 'a) -> Self {
        self.on_epoch = Some(Box::new(report));
        self
    }

    /// Stops after the step during which `flag` becomes true (a Ctrl-C handler sets it),
    /// writing a checkpoint to resume from.
    pub fn stop_when(mut self, flag: &'a AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Stops after epoch `epoch` (from 1), with a checkpoint, instead of after the last.
    pub fn pause_after_epoch(mut self, epoch: Option<usize>) -> Self {
        self.pause_after_epoch = epoch;
        self
    }

    /// Stops mid-epoch once `steps` optimizer steps are taken, with a checkpoint.
    pub fn pause_after_step(mut self, steps: Option<u64>) -> Self {
        self.pause_after_step = steps;
        self
    }

    /// The run folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.trainer.steps()
    }

    /// Continues from the folder's checkpoint: weights, optimizer state, the model's
    /// generators, epochs and steps done, and the epoch in progress. Refuses a checkpoint of
    /// another model. Returns where the run stands.
    pub fn resume(&mut self) -> Result<&TrainState> {
        let path = self.dir.join(CHECKPOINT);
        let state = load_checkpoint(&path, self.vars, self.trainer.optimizer_mut())?;
        let invalid = |message: String| TrainError::Io {
            path: path.clone(),
            reason: std::io::Error::new(std::io::ErrorKind::InvalidData, message),
        };
        if state.model != self.config.model {
            return Err(invalid(format!("a checkpoint of {}, not {}", state.model, self.config.model)));
        }
        let positions = state
            .rng_positions
            .iter()
            .map(|p| p.parse::<u128>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("generator position unreadable: {e}")))?;
        self.model.set_rng_positions(&positions)?;
        self.trainer.set_epochs_done(state.epochs_done);
        self.trainer.set_step_window(state.step_window);
        Ok(self.resumed.insert(state))
    }

    /// Trains on `train` and evaluates on `val` after every epoch, until the last epoch, a
    /// pause or a stop. The metrics file keeps what a resumed run had recorded up to its
    /// checkpoint (rebuilt from the checkpoint's history when the file is gone).
    pub fn fit(&mut self, train: &impl EpochSource, val: &impl EpochSource) -> Result<Fitted> {
        let start = Instant::now();
        let metrics_path = self.dir.join(METRICS);
        let resumed = self.resumed.take();
        let kept = match &resumed {
            None => Vec::new(),
            Some(state) if metrics_path.is_file() => read_lines(&metrics_path)?
                .into_iter()
                .filter(|line| match line {
                    MetricsLine::Epoch(e) => e.epoch <= state.epochs_done,
                    MetricsLine::Step(s) => s.step <= state.steps,
                })
                .collect(),
            Some(state) => state.history.iter().copied().map(MetricsLine::Epoch).collect(),
        };
        let mut metrics = MetricsWriter::create(&metrics_path)?;
        let mut epochs = Vec::new();
        for line in kept {
            match line {
                MetricsLine::Epoch(e) => {
                    metrics.append(&e)?;
                    epochs.push(e);
                }
                MetricsLine::Step(s) => metrics.append_step(&s)?,
            }
        }
        let mut best_epoch = best(&epochs);
        let mut partial = resumed.and_then(|state| state.partial);
        let last = self.pause_after_epoch.map_or(self.config.epochs, |p| p.min(self.config.epochs));
        let (flag, pause_step) = (self.stop, self.pause_after_step);
        let stop =
            move |steps: u64| flag.is_some_and(|f| f.load(Ordering::SeqCst)) || pause_step.is_some_and(|s| steps >= s);
        for epoch in self.trainer.epochs_done() + 1..=last {
            let from = partial.take().unwrap_or_default();
            let outcome = self.trainer.train_epoch_from(train.batches(epoch - 1, from.batches_done), from, &stop)?;
            for record in self.trainer.take_step_records() {
                metrics.append_step(&record)?;
            }
            let train_stats = match outcome {
                EpochOutcome::Finished(stats) => stats,
                EpochOutcome::Paused(progress) => {
                    self.checkpoint(&epochs, Some(progress))?;
                    tracing::info!(model = %self.config.model, epoch, batch = progress.batches_done, "paused mid-epoch");
                    break;
                }
            };
            let val_stats = evaluate(self.model, self.config.label_smoothing, val.batches(0, 0))?;
            let record = EpochRecord { epoch, lr: self.trainer.current_lr(), train: train_stats, val: val_stats };
            metrics.append(&record)?;
            if let Some(report) = self.on_epoch.as_mut() {
                report(&record);
            }
            if best_epoch == 0 || val_stats.accuracy > epochs[best_epoch - 1].val.accuracy {
                best_epoch = epoch;
                save_weights(self.vars, self.trainer.steps(), &self.dir.join(BEST))?;
            }
            epochs.push(record);
            self.checkpoint(&epochs, None)?;
            if stop(self.trainer.steps()) {
                break;
            }
        }
        let complete = self.trainer.epochs_done() == self.config.epochs;
        if complete {
            save_weights(self.vars, self.trainer.steps(), &self.dir.join(FINAL))?;
        }
        Ok(Fitted { epochs, best_epoch, seconds: start.elapsed().as_secs_f64(), complete })
    }

    /// Writes the checkpoint of where the run stands: after `history`, `partial` into the next
    /// epoch when stopped in the middle of it.
    fn checkpoint(&self, history: &[EpochRecord], partial: Option<EpochProgress>) -> Result<()> {
        let state = TrainState {
            model: self.config.model.clone(),
            epochs_done: self.trainer.epochs_done(),
            steps: self.trainer.steps(),
            rng_positions: self.model.rng_positions().iter().map(|p| p.to_string()).collect(),
            step_window: self.trainer.step_window(),
            partial,
            history: history.to_vec(),
            config: self.config.description.clone(),
        };
        save_checkpoint(&self.dir.join(CHECKPOINT), self.vars, self.trainer.optimizer(), &state)
    }
}

/// The epoch (from 1) with the highest validation accuracy, the earliest among ties; 0 for none.
fn best(epochs: &[EpochRecord]) -> usize {
    (1..=epochs.len()).fold(0, |best, e| {
        if best == 0 || epochs[e - 1].val.accuracy > epochs[best - 1].val.accuracy {
            e
        } else {
            best
        }
    })
}
