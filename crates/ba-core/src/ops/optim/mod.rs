//! Fused optimizer updates: Adam/AdamW and SGD with momentum, each one pass over a parameter,
//! and the per-parameter state they keep.

pub(crate) mod adam;
pub(crate) mod sgd;
pub(crate) mod state;

pub use adam::{adam_update, AdamMoments, AdamStep};
pub use sgd::{sgd_update, SgdStep};
pub use state::StateVector;
