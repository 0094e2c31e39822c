//! # ba-train
//!
//! What training a Candle image classifier needs and Candle lacks: optimizers with PyTorch's
//! semantics (Adam with coupled L2 weight decay, AdamW, SGD with momentum; one fused pass per
//! parameter), per-step schedules (cosine, linear warm-up, step decay, their sequence),
//! label-smoothing cross-entropy on hard or soft (mixup) targets, a [`Trainer`] that runs
//! epochs and reports loss, accuracy and speed, the one evaluation loop ([`evaluate`],
//! [`evaluate_with`] for every prediction), and a [`Learner`] that owns a run folder:
//! metrics file, checkpoints after every epoch and on stop, resume (mid-epoch included), best
//! and final weights. It is generic over the model ([`ba_core::model::ImageClassifier`]) and
//! takes batches as `(images, targets)` tensors from any [`EpochSource`] (ba-data's loader is
//! one, with the default `ba-data` feature); it never parses arguments and never draws.

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod checkpoint;
mod error;
mod evaluation;
mod learner;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod optim;
pub mod schedule;
mod source;
mod trainer;

pub use error::{Result, TrainError};
pub use evaluation::{evaluate, evaluate_with, Prediction};
pub use learner::{Fitted, Learner, LearnerConfig, BEST, CHECKPOINT, FINAL, METRICS};
pub use optim::{Adam, AdamConfig, DecayFilter, Optimizer, Sgd, SgdConfig};
pub use schedule::{Constant, CosineAnnealing, Linear, MultiStep, Schedule, Sequential, StepDecay};
pub use source::EpochSource;
pub use trainer::{
    BatchResult, EpochOutcome, EpochProgress, EpochRecord, PassStats, StepProgress, StepRecord, StepTiming, Trainer,
};
