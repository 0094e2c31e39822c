//! The structs `cuda/kernels.cu` takes by value, laid out as its C declarations field by
//! field (`#[repr(C)]`). Device-neutral, so that the kernels' CPU test
//! (`kernels_on_cpu.rs`) passes the same values the CUDA path does.

use candle_core::Result;

use crate::ops::conv::geometry::ConvGeometry;
use crate::ops::pool::max_pool2d::MaxPool2dParams;

/// `ConvGeometry` of the kernels: input planes, kernel, stride, padding, output size.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvArgs {
    c: i32,
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

/// `PoolGeometry` of the kernels: input plane, window, stride, padding, output size.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolArgs {
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

/// A size as the kernels' `int`, or an error naming `op` when it does not fit.
pub(crate) fn int(op: &str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("{op}: {v} exceeds the CUDA kernels' int")))
}

impl ConvArgs {
    pub fn of(g: &ConvGeometry) -> Result<Self> {
        let int = |v| int("conv2d", v);
        Ok(Self {
            c: int(g.c)?,
            h: int(g.h)?,
            w: int(g.w)?,
            kh: int(g.kh)?,
            kw: int(g.kw)?,
            sh: int(g.stride.0)?,
            sw: int(g.stride.1)?,
            ph: int(g.padding.0)?,
            pw: int(g.padding.1)?,
            oh: int(g.oh)?,
            ow: int(g.ow)?,
        })
    }
}

impl PoolArgs {
    pub fn of(p: &MaxPool2dParams, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Result<Self> {
        let int = |v| int("max_pool2d", v);
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

#[cfg(feature = "cuda")]
mod device_repr {
    use candle_core::cuda_backend::cudarc::driver::DeviceRepr;

    // SAFETY: `#[repr(C)]` structs of i32s, laid out as the kernels' structs.
    unsafe impl DeviceRepr for super::ConvArgs {}
    unsafe impl DeviceRepr for super::PoolArgs {}
}
