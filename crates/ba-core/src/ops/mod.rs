//! Candle custom ops that training AlexNet-style networks needs and Candle lacks or runs slowly:
//! max-pool with arg-max; convolution by Winograd's minimal filtering (3x3 and 5x5 kernels
//! with stride 1, and strided ones over block images) or im2col + GEMM, with a fused bias and
//! ReLU, also fused with the max-pool after it; a channel gate's multiply fused with the ReLU
//! and max-pool after it; a linear layer with a fused ReLU; and fused Adam/AdamW and SGD
//! updates.
//!
//! Each op lives in its own file with its forward, its backward and its tests; the CPU kernels
//! are Rust (`cpu_fwd`), the CUDA ones (`cuda_fwd`, with the `cuda` feature) launch the
//! kernels of `cuda/kernels.cu` and cuBLAS products through `cuda/`. The public functions are
//! the same on both devices; only f32 runs on CUDA.

/// Runs `$body` with `$t` bound to the element type of `$storage`, for f32 and f64.
macro_rules! dispatch {
    ($op:expr, $storage:expr, |$t:ident| $body:expr) => {
        match $storage.dtype() {
            candle_core::DType::F32 => {
                type $t = f32;
                candle_core::CpuStorage::F32($body)
            }
            candle_core::DType::F64 => {
                type $t = f64;
                candle_core::CpuStorage::F64($body)
            }
            dt => candle_core::bail!("{}: unsupported dtype {dt:?}", $op),
        }
    };
}

mod adam;
#[cfg(any(feature = "cuda", test))]
mod blas;
mod conv2d;
mod conv_groups;
mod conv_max_pool;
#[cfg(feature = "cuda")]
mod cuda;
mod gate_max_pool;
mod im2col;
#[cfg(any(feature = "cuda", test))]
mod kernel_args;
#[cfg(test)]
mod kernels_on_cpu;
mod linear;
mod max_pool2d;
mod precision;
mod scratch;
mod sgd;
mod space_to_depth;
mod state;
#[cfg(test)]
mod test_support;
mod weight_cache;
mod winograd;
mod winograd_plan;

pub use adam::{adam_update, AdamMoments, AdamStep};
pub use conv2d::{conv2d, Conv2dParams};
pub use conv_max_pool::conv2d_max_pool2d;
pub use gate_max_pool::gate_relu_max_pool2d;
pub use linear::linear;
pub use max_pool2d::{max_pool2d, MaxPool2dParams};
pub use precision::Precision;
pub use sgd::{sgd_update, SgdStep};
pub use state::StateVector;

use candle_core::{CpuStorage, Layout, Result, WithDType};

/// The contiguous slice of `storage` described by `layout`, or an error naming `op`.
fn contiguous_slice<'a, T: WithDType>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [T]> {
    let data = storage.as_slice::<T>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: the input must be contiguous, got strides {:?}", layout.stride()),
    }
}

/// The parameter and gradient of an in-place optimizer update as contiguous f32 slices, or an
/// error naming `op`.
fn f32_param_and_grad<'a>(
    op: &str,
    (param, param_layout): (&'a mut CpuStorage, &Layout),
    (grad, grad_layout): (&'a CpuStorage, &Layout),
) -> Result<(&'a mut [f32], &'a [f32])> {
    let (CpuStorage::F32(param), CpuStorage::F32(grad)) = (param, grad) else {
        candle_core::bail!("{op}: only f32 parameters are supported");
    };
    let (Some((p0, p1)), Some((g0, g1))) = (param_layout.contiguous_offsets(), grad_layout.contiguous_offsets()) else {
        candle_core::bail!("{op}: parameter and gradient must be contiguous");
    };
    Ok((&mut param[p0..p1], &grad[g0..g1]))
}

/// Which of an op's three inputs (input, weight, bias) take part in backpropagation, so that
/// its backward pass computes only their gradients.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    dx: bool,
    dw: bool,
    db: bool,
}

impl Wanted {
    fn of(x: &candle_core::Tensor, w: &candle_core::Tensor, b: &candle_core::Tensor) -> Self {
        Self { dx: x.track_op(), dw: w.track_op(), db: b.track_op() }
    }
}
