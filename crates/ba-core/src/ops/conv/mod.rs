//! Convolutions: their geometry and im2col lowering, Winograd's minimal filtering and the
//! plans that choose it, the per-group CPU kernels, the op itself and the op fused with the
//! max-pool after it.

pub(crate) mod conv2d;
pub(crate) mod geometry;
pub(crate) mod groups;
pub(crate) mod max_pool;
pub(crate) mod space_to_depth;
pub(crate) mod winograd;
pub(crate) mod winograd_plan;

pub use conv2d::{conv2d, Conv2dParams};
pub use max_pool::conv2d_max_pool2d;
