//! Layers built on the ops of this crate, created through a `VarBuilder` with PyTorch's
//! parameter names and default initialisation.

mod batch_norm;
mod bridge_attention;
mod conv;
mod dropout;
mod linear;

pub use batch_norm::BatchNorm2d;
pub use bridge_attention::BridgeAttention;
pub use conv::Conv2d;
pub use dropout::Dropout;
pub use linear::{linear, Linear};
