//! The convolution on CUDA: the same per-image lowering as the CPU path (`ops/conv2d.rs`),
//! with the column matrices of a chunk of images built by one kernel and multiplied by one
//! strided-batched cuBLAS product.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr};
use candle_core::cuda_backend::CudaDevice;
use candle_core::Result;

use super::{alloc_f32, elementwise, launch, matmul, Operand};
use crate::ops::im2col::ConvGeometry;

/// `ConvGeometry` as `cuda/kernels.cu` declares it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct KernelGeometry {
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

// SAFETY: a `#[repr(C)]` struct of i32s, laid out as the kernels' `ConvGeometry`.
unsafe impl DeviceRepr for KernelGeometry {}

impl KernelGeometry {
    fn of(g: &ConvGeometry) -> Result<Self> {
        let int = |v: usize| i32::try_from(v).map_err(|_| candle_core::Error::Msg(format!("conv2d: {v} exceeds i32")));
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

/// The column matrices of one chunk take at most this many bytes (more for a single image).
const CHUNK_BYTES: usize = 256 << 20;

/// Images whose column matrices (or weight-gradient partial sums, `extra` values per image)
/// are built at once.
fn images_per_chunk(g: &ConvGeometry, extra: usize) -> usize {
    let per_image = 4 * (g.patch() * g.positions() + extra);
    (CHUNK_BYTES / per_image.max(1)).clamp(1, g.b.max(1))
}

/// The chunks of images: (first image, image count).
fn chunks(images: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..images).step_by(chunk.max(1)).map(move |start| (start, chunk.min(images - start)))
}

/// Fills `col` with the column matrices of `images` images of `x`.
fn im2col(
    dev: &CudaDevice,
    g: &ConvGeometry,
    x: &CudaView<'_, f32>,
    col: &mut CudaSlice<f32>,
    images: usize,
) -> Result<()> {
    let (kg, count) = (KernelGeometry::of(g)?, images as i32);
    launch!(dev, "im2col_f32", elementwise(images * g.patch() * g.positions()), x, col, &kg, &count)
}

/// `relu?(conv(x, w) + bias)` of contiguous f32 (b, c, h, w) input, (cout, c, kh, kw) weight.
pub(crate) fn forward(
    dev: &CudaDevice,
    g: &ConvGeometry,
    relu: bool,
    (x, w, bias): (CudaView<'_, f32>, CudaView<'_, f32>, CudaView<'_, f32>),
) -> Result<CudaSlice<f32>> {
    let (p, patch) = (g.positions(), g.patch());
    let mut out = alloc_f32(dev, g.b * g.cout * p)?;
    let chunk = images_per_chunk(g, 0);
    let mut col = alloc_f32(dev, chunk * patch * p)?;
    for (start, images) in chunks(g.b, chunk) {
        im2col(dev, g, &x.slice(start * g.image()..(start + images) * g.image()), &mut col, images)?;
        // out_i (cout x p) = W (cout x patch) * col_i (patch x p)
        let weight = Operand { data: w.slice(..), transposed: false, row_stride: patch, batch_stride: 0 };
        let cols = Operand { data: col.slice(..), transposed: false, row_stride: p, batch_stride: patch * p };
        let mut out_chunk = out.slice_mut(start * g.cout * p..(start + images) * g.cout * p);
        matmul(dev, (g.cout, p, patch), (weight, cols), 0.0, &mut out_chunk, g.cout * p, images)?;
    }
    let (n, channels, plane, relu) = (out.len(), g.cout as i32, p as i32, i32::from(relu));
    launch!(dev, "bias_relu_f32", elementwise(n), &mut out, &bias, &n, &channels, &plane, &relu)?;
    Ok(out)
}

/// The output gradient where the forward result is positive, zero elsewhere.
pub(crate) fn relu_mask(
    dev: &CudaDevice,
    grad: CudaView<'_, f32>,
    result: CudaView<'_, f32>,
) -> Result<CudaSlice<f32>> {
    let n = grad.len();
    let mut out = alloc_f32(dev, n)?;
    launch!(dev, "relu_mask_f32", elementwise(n), &grad, &result, &mut out, &n)?;
    Ok(out)
}

/// Per-channel sums of a (b, c, h, w) gradient: the bias gradient.
pub(crate) fn channel_sums(dev: &CudaDevice, dy: CudaView<'_, f32>, dims: [usize; 4]) -> Result<CudaSlice<f32>> {
    let [b, c, h, w] = dims;
    let mut sums = alloc_f32(dev, c)?;
    let config = candle_core::cuda_backend::cudarc::driver::LaunchConfig {
        grid_dim: (c as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (b, c, plane) = (b as i32, c as i32, (h * w) as i32);
    launch!(dev, "channel_sums_f32", config, &dy, &mut sums, &b, &c, &plane)?;
    Ok(sums)
}

/// dX_i = col2im(W^T * dY_i), a chunk of images at a time.
pub(crate) fn input_grad(
    dev: &CudaDevice,
    g: &ConvGeometry,
    dy: CudaView<'_, f32>,
    w: CudaView<'_, f32>,
) -> Result<CudaSlice<f32>> {
    let (p, patch) = (g.positions(), g.patch());
    let kg = KernelGeometry::of(g)?;
    let mut dx = alloc_f32(dev, g.b * g.image())?;
    let chunk = images_per_chunk(g, 0);
    let mut col = alloc_f32(dev, chunk * patch * p)?;
    for (start, images) in chunks(g.b, chunk) {
        // col_i (patch x p) = W^T (patch x cout) * dY_i (cout x p)
        let weight = Operand { data: w.slice(..), transposed: true, row_stride: patch, batch_stride: 0 };
        let grads = Operand {
            data: dy.slice(start * g.cout * p..(start + images) * g.cout * p),
            transposed: false,
            row_stride: p,
            batch_stride: g.cout * p,
        };
        matmul(dev, (patch, p, g.cout), (weight, grads), 0.0, &mut col, patch * p, images)?;
        let mut dx_chunk = dx.slice_mut(start * g.image()..(start + images) * g.image());
        let count = images as i32;
        launch!(dev, "col2im_f32", elementwise(images * g.image()), &col, &mut dx_chunk, &kg, &count)?;
    }
    Ok(dx)
}

/// dW = sum over images of dY_i * col_i^T: per chunk, one product per image into its own
/// partial sum, then the partial sums added to the total (no atomics: the same result every
/// run).
pub(crate) fn weight_grad(
    dev: &CudaDevice,
    g: &ConvGeometry,
    dy: CudaView<'_, f32>,
    x: CudaView<'_, f32>,
) -> Result<CudaSlice<f32>> {
    let (p, patch, weights) = (g.positions(), g.patch(), g.cout * g.patch());
    let chunk = images_per_chunk(g, weights);
    let mut col = alloc_f32(dev, chunk * patch * p)?;
    let mut partials = alloc_f32(dev, chunk * weights)?;
    let mut dw = dev.alloc_zeros::<f32>(weights)?;
    for (start, images) in chunks(g.b, chunk) {
        im2col(dev, g, &x.slice(start * g.image()..(start + images) * g.image()), &mut col, images)?;
        // dW_i (cout x patch) = dY_i (cout x p) * col_i^T (p x patch)
        let grads = Operand {
            data: dy.slice(start * g.cout * p..(start + images) * g.cout * p),
            transposed: false,
            row_stride: p,
            batch_stride: g.cout * p,
        };
        let cols = Operand { data: col.slice(..), transposed: true, row_stride: p, batch_stride: patch * p };
        matmul(dev, (g.cout, patch, p), (grads, cols), 0.0, &mut partials, weights, images)?;
        let count = images as i32;
        launch!(dev, "add_rows_f32", elementwise(weights), &mut dw, &partials, &weights, &count)?;
    }
    Ok(dw)
}
