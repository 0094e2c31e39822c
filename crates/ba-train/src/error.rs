//! Errors of the training layer.

use std::path::PathBuf;

/// A failure while training or saving.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The data source failed to produce a batch.
    #[error("loading a batch: {0}")]
    Data(Box<dyn std::error::Error + Send + Sync>),
    /// The loss stopped being a finite number.
    #[error("epoch {epoch}, step {step}: the loss is {loss}; lower the learning rate or check the data")]
    NonFinite {
        /// Epoch, from 1.
        epoch: usize,
        /// Step within the epoch, from 1.
        step: usize,
        /// The offending value.
        loss: f32,
    },
    /// A training step would not fit in the memory available.
    #[error("{0}")]
    OutOfMemory(String),
    /// A file could not be written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason (not a `source`, so that chains print it once).
        reason: std::io::Error,
    },
}

/// Result of the training layer.
pub type Result<T> = std::result::Result<T, TrainError>;
