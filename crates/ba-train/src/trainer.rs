//! The training loop: epochs of training then evaluation, with per-epoch metrics.

use std::time::Instant;

use ba_core::model::ImageClassifier;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::evaluation::evaluate;
use crate::loss::{correct_predictions, soft_target_cross_entropy};
use crate::optim::Optimizer;
use crate::schedule::Schedule;

/// A batch of (images (B, 3, H, W), targets (B, K) class probabilities) as the loop consumes
/// it, or the loader's error. Targets are one-hot for plain batches, mixed for mixup.
pub type BatchResult<E> = std::result::Result<(Tensor, Tensor), E>;

/// Loss, accuracy and speed over one pass of a data set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PassStats {
    /// Mean loss per image.
    pub loss: f64,
    /// Fraction of images whose top prediction is the label (target-weighted under mixup).
    pub accuracy: f64,
    /// Images seen.
    pub images: usize,
    /// Wall-clock seconds of the pass.
    pub seconds: f64,
    /// Seconds the training loop waited for the loader's next batch (0 for evaluation).
    #[serde(default)]
    pub data_wait_seconds: f64,
}

impl PassStats {
    /// Images per second.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }
}

/// One line of the metrics file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
    /// The training pass (with dropout and augmentation).
    pub train: PassStats,
    /// The evaluation pass.
    pub val: PassStats,
}

/// The mean training loss of the last `every` steps (see [`Trainer::with_step_log`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimizer steps taken, from 1.
    pub step: u64,
    /// Epoch of the step, from 1.
    pub epoch: usize,
    /// Mean loss over the steps since the previous record.
    pub loss: f64,
    /// Learning rate of the step.
    pub lr: f64,
}

/// Where an epoch stands after a training step, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepProgress {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Steps taken in this epoch, from 1.
    pub step_in_epoch: usize,
    /// Mean loss of the epoch so far.
    pub loss: f64,
    /// Accuracy of the epoch so far.
    pub accuracy: f64,
    /// Training images per second of the epoch so far.
    pub images_per_second: f64,
    /// Learning rate of the step.
    pub lr: f64,
}

/// How far a training pass got into its epoch: what a checkpoint needs to continue it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochProgress {
    /// Batches trained.
    pub batches_done: usize,
    /// Sum over those batches of loss times batch size.
    pub loss_sum: f64,
    /// Correct predictions (target-weighted).
    pub correct: f64,
    /// Images trained.
    pub images: usize,
    /// Wall-clock seconds spent.
    pub seconds: f64,
    /// Seconds spent waiting for data.
    pub data_wait_seconds: f64,
}

impl EpochProgress {
    /// The pass's statistics from its sums.
    pub fn stats(&self) -> PassStats {
        let n = self.images.max(1) as f64;
        PassStats {
            loss: self.loss_sum / n,
            accuracy: self.correct / n,
            images: self.images,
            seconds: self.seconds,
            data_wait_seconds: self.data_wait_seconds,
        }
    }
}

/// How a training pass ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EpochOutcome {
    /// The epoch is complete.
    Finished(PassStats),
    /// Stopped early on request; the epoch continues from here.
    Paused(EpochProgress),
}

/// Wall-clock seconds of the phases of one training step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepTiming {
    /// The forward pass with the loss, read back to the host.
    pub forward: f64,
    /// The backward pass.
    pub backward: f64,
    /// The optimizer's update.
    pub optimizer: f64,
}

impl StepTiming {
    /// The whole step.
    pub fn total(&self) -> f64 {
        self.forward + self.backward + self.optimizer
    }
}

/// A callback shown each [`StepProgress`].
type ProgressFn<'a> = Box<dyn FnMut(&StepProgress) + 'a>;

/// Trains one model with an optimizer, a per-step schedule and label-smoothing cross-entropy.
pub struct Trainer<'a> {
    model: &'a dyn ImageClassifier,
    optimizer: Box<dyn Optimizer>,
    schedule: Box<dyn Schedule>,
    label_smoothing: f64,
    epoch: usize,
    /// Steps per [`StepRecord`] (0: none), the loss summed since the last one, and the records.
    log_every: u64,
    window: (f64, u64),
    step_records: Vec<StepRecord>,
    progress: Option<ProgressFn<'a>>,
    timing: StepTiming,
}

impl<'a> Trainer<'a> {
    /// A trainer for `model`, whose variables `optimizer` updates.
    pub fn new(
        model: &'a dyn ImageClassifier,
        optimizer: impl Optimizer + 'static,
        schedule: impl Schedule + 'static,
        label_smoothing: f64,
    ) -> Self {
        Self {
            model,
            optimizer: Box::new(optimizer),
            schedule: Box::new(schedule),
            label_smoothing,
            epoch: 0,
            log_every: 0,
            window: (0.0, 0),
            step_records: Vec::new(),
            progress: None,
            timing: StepTiming::default(),
        }
    }

    /// Calls `report` after every training step (a progress bar, say).
    pub fn with_progress(mut self, report: impl FnMut(&StepProgress) + 'a) -> Self {
        self.progress = Some(Box::new(report));
        self
    }

    /// Records the mean training loss every `every` steps (0: never); see
    /// [`Trainer::take_step_records`].
    pub fn with_step_log(mut self, every: u64) -> Self {
        self.log_every = every;
        self
    }

    /// The optimizer, for checkpoints.
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.optimizer.as_ref()
    }

    /// The optimizer, for restoring a checkpoint.
    pub fn optimizer_mut(&mut self) -> &mut dyn Optimizer {
        self.optimizer.as_mut()
    }

    /// Epochs trained so far.
    pub fn epochs_done(&self) -> usize {
        self.epoch
    }

    /// Continues after `epochs` completed epochs (when resuming from a checkpoint).
    pub fn set_epochs_done(&mut self, epochs: usize) {
        self.epoch = epochs;
    }

    /// The step records made since the last call.
    pub fn take_step_records(&mut self) -> Vec<StepRecord> {
        std::mem::take(&mut self.step_records)
    }

    fn record_step(&mut self, loss: f32, lr: f64) {
        if self.log_every == 0 {
            return;
        }
        self.window = (self.window.0 + loss as f64, self.window.1 + 1);
        let step = self.optimizer.steps();
        if step.is_multiple_of(self.log_every) {
            let (sum, n) = std::mem::take(&mut self.window);
            self.step_records.push(StepRecord { step, epoch: self.epoch, loss: sum / n as f64, lr });
        }
    }

    /// One optimisation step on a batch: returns the loss and the (target-weighted) number of
    /// correct predictions. A loss that is not finite leaves the parameters untouched.
    pub fn step(&mut self, images: &Tensor, targets: &Tensor) -> Result<(f32, f64)> {
        let start = Instant::now();
        let logits = self.model.forward_t(images, true)?;
        let loss = soft_target_cross_entropy(&logits, targets, self.label_smoothing)?;
        let value = loss.to_scalar::<f32>()?;
        let forward = Instant::now();
        let mut backward = forward;
        if value.is_finite() {
            let grads = loss.backward()?;
            backward = Instant::now();
            let lr = self.schedule.lr(self.optimizer.steps() as usize);
            self.optimizer.step(&grads, lr)?;
        }
        let end = Instant::now();
        self.timing = StepTiming {
            forward: (forward - start).as_secs_f64(),
            backward: (backward - forward).as_secs_f64(),
            optimizer: (end - backward).as_secs_f64(),
        };
        Ok((value, correct_predictions(&logits, targets)?))
    }

    /// How long the phases of the last [`Trainer::step`] took.
    pub fn last_step_timing(&self) -> StepTiming {
        self.timing
    }

    /// Trains on every batch of `batches` once.
    pub fn train_epoch<E>(&mut self, batches: impl Iterator<Item = BatchResult<E>>) -> Result<PassStats>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        match self.train_epoch_from(batches, EpochProgress::default(), &|_| false)? {
            EpochOutcome::Finished(stats) => Ok(stats),
            EpochOutcome::Paused(_) => unreachable!("a pass that is never asked to stop finishes"),
        }
    }

    /// Trains on `batches`, the rest of an epoch of which `from` is done (the default for a
    /// whole epoch). After each step `stop(steps taken)` may end the pass early: the outcome
    /// then holds what a checkpoint needs to continue it exactly.
    pub fn train_epoch_from<E>(
        &mut self,
        batches: impl Iterator<Item = BatchResult<E>>,
        from: EpochProgress,
        stop: &dyn Fn(u64) -> bool,
    ) -> Result<EpochOutcome>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.epoch += 1;
        let start = Instant::now();
        let mut done = from;
        // Time from the end of one step to the start of the next: the wait for the loader.
        let mut waiting = Instant::now();
        for batch in batches {
            done.data_wait_seconds += waiting.elapsed().as_secs_f64();
            let (x, y) = batch.map_err(|e| TrainError::Data(Box::new(e)))?;
            let lr = self.current_lr();
            let (loss, hits) = self.step(&x, &y)?;
            done.batches_done += 1;
            if !loss.is_finite() {
                return Err(TrainError::NonFinite { epoch: self.epoch, step: done.batches_done, loss });
            }
            self.record_step(loss, lr);
            let n = y.dim(0)?;
            done.loss_sum += loss as f64 * n as f64;
            done.correct += hits;
            done.images += n;
            let seconds = done.seconds + start.elapsed().as_secs_f64();
            if let Some(report) = self.progress.as_mut() {
                report(&StepProgress {
                    epoch: self.epoch,
                    step_in_epoch: done.batches_done,
                    loss: done.loss_sum / done.images as f64,
                    accuracy: done.correct / done.images as f64,
                    images_per_second: done.images as f64 / seconds.max(1e-9),
                    lr,
                });
            }
            tracing::debug!(epoch = self.epoch, step = done.batches_done, loss, "train step");
            if stop(self.steps()) {
                self.epoch -= 1;
                done.seconds = seconds;
                return Ok(EpochOutcome::Paused(done));
            }
            waiting = Instant::now();
        }
        done.seconds += start.elapsed().as_secs_f64();
        Ok(EpochOutcome::Finished(done.stats()))
    }

    /// The training loss summed since the last step record, and its step count (for
    /// checkpoints, so that a resumed run records the same means).
    pub fn step_window(&self) -> (f64, u64) {
        self.window
    }

    /// Restores [`Trainer::step_window`].
    pub fn set_step_window(&mut self, window: (f64, u64)) {
        self.window = window;
    }

    /// Evaluates the model (no dropout, running batch-norm statistics) on `batches`.
    pub fn evaluate<E>(&self, batches: impl Iterator<Item = BatchResult<E>>) -> Result<PassStats>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        evaluate(self.model, self.label_smoothing, batches)
    }

    /// Optimisation steps taken so far.
    pub fn steps(&self) -> u64 {
        self.optimizer.steps()
    }

    /// The learning rate the next step will use.
    pub fn current_lr(&self) -> f64 {
        self.schedule.lr(self.optimizer.steps() as usize)
    }
}
