//! Normalisation: batch norm in training mode with an optional fused ReLU, and the per-channel
//! affine map (with an optional ReLU) that a batch norm is in evaluation mode.

pub(crate) mod batch_norm;
pub(crate) mod channel_affine;

pub use batch_norm::{batch_norm_train, BatchStatistics};
pub use channel_affine::channel_affine;
