//! Max-pool with arg-max on CUDA: one thread per output for the forward pass, one per input
//! value for the backward pass (a gather over the windows that cover it, so no atomics).

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
use candle_core::cuda_backend::CudaDevice;
use candle_core::Result;

use super::kernel_args::PoolArgs;
use super::launch::{alloc, elementwise, launch};
use crate::ops::pool::max_pool2d::MaxPool2dParams;

/// The pooled (b, c, oh, ow) values of a contiguous (b, c, h, w) input and each one's arg-max.
pub(crate) fn forward(
    dev: &CudaDevice,
    x: CudaView<'_, f32>,
    params: &MaxPool2dParams,
    [b, c, h, w]: [usize; 4],
    (oh, ow): (usize, usize),
) -> Result<(CudaSlice<f32>, CudaSlice<u32>)> {
    let (g, planes, n) = (PoolArgs::of(params, (h, w), (oh, ow))?, b * c, b * c * oh * ow);
    let mut out = alloc::<f32>(dev, n)?;
    // SAFETY: the kernel writes every index before any read.
    let mut argmax = unsafe { dev.alloc::<u32>(n) }?;
    launch!(dev, "max_pool_f32", elementwise(n), &x, &mut out, &mut argmax, &g, &planes)?;
    Ok((out, argmax))
}

/// The input gradient: each output gradient sent to its window's arg-max, summed where
/// windows overlap.
pub(crate) fn backward(
    dev: &CudaDevice,
    grad: CudaView<'_, f32>,
    argmax: &CudaSlice<u32>,
    params: &MaxPool2dParams,
    [b, c, h, w]: [usize; 4],
    (oh, ow): (usize, usize),
) -> Result<CudaSlice<f32>> {
    let (g, planes) = (PoolArgs::of(params, (h, w), (oh, ow))?, b * c);
    let mut dx = alloc::<f32>(dev, planes * h * w)?;
    launch!(dev, "max_pool_backward_f32", elementwise(planes * h * w), &grad, argmax, &mut dx, &g, &planes)?;
    Ok(dx)
}
