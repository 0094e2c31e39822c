//! Normalisation: batch norm in training mode with an optional fused ReLU.

pub(crate) mod batch_norm;

pub use batch_norm::{batch_norm_train, BatchStatistics};
