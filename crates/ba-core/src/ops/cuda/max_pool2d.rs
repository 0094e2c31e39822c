//! Max-pool with arg-max on CUDA: one thread per output for the forward pass, one per input
//! value for the backward pass (a gather over the windows that cover it, so no atomics).

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr};
use candle_core::cuda_backend::CudaDevice;
use candle_core::Result;

use super::{alloc_f32, elementwise, launch};
use crate::ops::MaxPool2dParams;

/// The window geometry as `cuda/kernels.cu` declares it (`PoolGeometry`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct KernelGeometry {
    h: i32,
    w: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
    oh: i32,
    ow: i32,
}

// SAFETY: a `#[repr(C)]` struct of i32s, laid out as the kernels' `PoolGeometry`.
unsafe impl DeviceRepr for KernelGeometry {}

impl KernelGeometry {
    fn of(p: &MaxPool2dParams, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Result<Self> {
        let int =
            |v: usize| i32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("max_pool2d: {v} exceeds i32")));
        Ok(Self {
            h: int(h)?,
            w: int(w)?,
            kh: int(p.kernel.0)?,
            kw: int(p.kernel.1)?,
            sh: int(p.stride.0)?,
            sw: int(p.stride.1)?,
            ph: int(p.padding.0)?,
            pw: int(p.padding.1)?,
            oh: int(oh)?,
            ow: int(ow)?,
        })
    }
}

/// The pooled (b, c, oh, ow) values of a contiguous (b, c, h, w) input and each one's arg-max.
pub(crate) fn forward(
    dev: &CudaDevice,
    x: CudaView<'_, f32>,
    params: &MaxPool2dParams,
    [b, c, h, w]: [usize; 4],
    (oh, ow): (usize, usize),
) -> Result<(CudaSlice<f32>, CudaSlice<u32>)> {
    let (g, planes, n) = (KernelGeometry::of(params, (h, w), (oh, ow))?, b * c, b * c * oh * ow);
    let mut out = alloc_f32(dev, n)?;
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
    let (g, planes) = (KernelGeometry::of(params, (h, w), (oh, ow))?, b * c);
    let mut dx = alloc_f32(dev, planes * h * w)?;
    launch!(dev, "max_pool_backward_f32", elementwise(planes * h * w), &grad, argmax, &mut dx, &g, &planes)?;
    Ok(dx)
}
