//! Access to Candle's CPU storage for the kernels: the element-type dispatch, contiguous
//! slices, and which gradients an op's backward pass must compute.

use candle_core::{CpuStorage, Layout, Result, WithDType};

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
pub(crate) use dispatch;

/// The contiguous slice of `storage` described by `layout`, or an error naming `op`.
pub(crate) fn contiguous_slice<'a, T: WithDType>(
    op: &str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> Result<&'a [T]> {
    let data = storage.as_slice::<T>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: the input must be contiguous, got strides {:?}", layout.stride()),
    }
}

/// The parameter and gradient of an in-place optimizer update as contiguous f32 slices, or an
/// error naming `op`.
pub(crate) fn f32_param_and_grad<'a>(
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
pub(crate) struct Wanted {
    pub dx: bool,
    pub dw: bool,
    pub db: bool,
}

impl Wanted {
    pub fn of(x: &candle_core::Tensor, w: &candle_core::Tensor, b: &candle_core::Tensor) -> Self {
        Self { dx: x.track_op(), dw: w.track_op(), db: b.track_op() }
    }
}
