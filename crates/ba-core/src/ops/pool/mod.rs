//! Max-pooling with arg-max, and a channel gate's multiply fused with the ReLU and max-pool
//! after it.

pub(crate) mod gate_max_pool;
pub(crate) mod max_pool2d;

pub use gate_max_pool::gate_relu_max_pool2d;
pub use max_pool2d::{max_pool2d, MaxPool2dParams};
