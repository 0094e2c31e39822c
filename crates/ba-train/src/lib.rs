//! # ba-train
//!
//! What training a Candle image classifier needs and Candle lacks: optimizers with PyTorch's
//! semantics (Adam with coupled L2 weight decay, AdamW, SGD with momentum; one fused pass per
//! parameter), per-step schedules (cosine, linear warm-up, step decay, their sequence),
//! label-smoothing cross-entropy on hard or soft (mixup) targets, and a [`Trainer`] that runs
//! epochs and reports loss, accuracy and speed. It is generic over the model
//! ([`ba_core::model::ImageClassifier`]) and takes batches as `(images, targets)` tensors from
//! any source; it never parses arguments and never draws.

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod checkpoint;
mod error;
pub mod loss;
pub mod memory;
pub mod metrics;
pub mod optim;
pub mod schedule;
mod trainer;

pub use error::{Result, TrainError};
pub use optim::{Adam, AdamConfig, DecayFilter, Optimizer, Sgd, SgdConfig};
pub use schedule::{CosineAnnealing, Linear, Schedule, Sequential, StepDecay};
pub use trainer::{
    evaluate, BatchResult, EpochOutcome, EpochProgress, EpochRecord, PassStats, StepProgress, StepRecord, Trainer,
};
