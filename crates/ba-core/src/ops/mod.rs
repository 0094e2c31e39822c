//! Candle custom ops that training AlexNet-style networks needs and Candle lacks or runs slowly:
//! max-pool with arg-max, convolution by im2col + GEMM, and fused Adam/AdamW and SGD updates.
//!
//! Each op lives in its own file with its forward, its backward and its tests. Kernels are
//! written for the CPU now; every op keeps the state its backward needs in a device-neutral
//! place so that a CUDA kernel can be added next to the CPU one (`cuda_fwd`) without changing
//! the public functions.

mod adam;
mod conv2d;
mod im2col;
mod max_pool2d;
mod sgd;

pub use adam::{adam_update, AdamMoments, AdamStep};
pub use conv2d::{conv2d, Conv2dParams};
pub use max_pool2d::{max_pool2d, MaxPool2dParams};
pub use sgd::{sgd_update, SgdStep};

use candle_core::{CpuStorage, Layout, Result, WithDType};

/// The contiguous slice of `storage` described by `layout`, or an error naming `op`.
fn contiguous_slice<'a, T: WithDType>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    let data = storage.as_slice::<T>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: the input must be contiguous, got strides {:?}", layout.stride()),
    }
}
