//! Candle custom ops that training AlexNet-style networks needs and Candle lacks or runs slowly:
//! max-pool with arg-max; convolution by Winograd's minimal filtering (3x3 and 5x5 kernels
//! with stride 1, and strided ones over block images) or im2col + GEMM, with a fused bias and
//! ReLU, also fused with the max-pool after it; a channel gate's multiply fused with the ReLU
//! and max-pool after it; a linear layer with a fused ReLU; and fused Adam/AdamW and SGD
//! updates.
//!
//! Each op lives in its own file with its forward, its backward and its tests, grouped by kind:
//! `conv/` (geometry, im2col, Winograd and its plans, the convolution, the fused conv +
//! max-pool), `pool/` (max-pool, the fused gate + max-pool), `linear.rs`, `optim/` (Adam, SGD,
//! their state), `cpu/` (GEMM wrapper, scratch memory, weight cache, precision, storage access)
//! and `cuda/` (kernels, their launch glue, cuBLAS, kernel arguments and the harness that runs
//! the kernels' source on the CPU). The CPU kernels are Rust (`cpu_fwd`), the CUDA ones
//! (`cuda_fwd`, with the `cuda` feature) launch the kernels of `cuda/kernels.cu` and cuBLAS
//! products through `cuda/`. The public functions are the same on both devices; only f32 runs
//! on CUDA.

mod conv;
mod cpu;
#[cfg(any(feature = "cuda", test))]
mod cuda;
mod linear;
mod norm;
mod optim;
mod pool;
mod residual;
#[cfg(test)]
mod test_support;

pub use conv::{conv2d, conv2d_max_pool2d, Conv2dParams};
pub use cpu::Precision;
pub use linear::linear;
pub use norm::{batch_norm_train, channel_affine, BatchStatistics};
pub use optim::{adam_update, sgd_update, AdamMoments, AdamStep, SgdStep, StateVector};
pub use pool::{gate_relu_max_pool2d, max_pool2d, MaxPool2dParams};
pub use residual::add_relu;
