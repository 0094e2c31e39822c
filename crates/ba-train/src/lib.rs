//! # ba-train
//!
//! What training a Candle image classifier needs and Candle lacks: Adam with PyTorch's coupled
//! L2 weight decay (one fused pass per parameter), a per-step cosine schedule, label-smoothing
//! cross-entropy, and a [`Trainer`] that runs epochs and reports loss, accuracy and speed.
//! It is generic over the model ([`ba_core::model::ImageClassifier`]) and takes batches as
//! `(images, labels)` tensors from any source; it never parses arguments and never draws.

pub mod checkpoint;
mod error;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod schedule;
mod trainer;

pub use error::{Result, TrainError};
pub use optim::{Adam, AdamConfig};
pub use schedule::CosineAnnealing;
pub use trainer::{evaluate, BatchResult, EpochRecord, PassStats, Trainer};
