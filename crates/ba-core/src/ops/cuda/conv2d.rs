//! The convolution on CUDA: the same per-image lowering as the CPU path (`ops/conv2d.rs`),
//! with the column matrices of a chunk of images built by one kernel and multiplied by one
//! strided-batched cuBLAS product.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
use candle_core::cuda_backend::CudaDevice;
use candle_core::Result;

use super::{alloc_f32, elementwise, launch, matmul};
use crate::ops::blas::Product;
use crate::ops::im2col::ConvGeometry;
use crate::ops::kernel_args::ConvArgs;

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
    let (kg, count) = (ConvArgs::of(g)?, images as i32);
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
        let mut out_chunk = out.slice_mut(start * g.cout * p..(start + images) * g.cout * p);
        matmul(dev, &Product::conv_forward(g), (&w, &col.slice(..)), &mut out_chunk, images)?;
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
    let kg = ConvArgs::of(g)?;
    let mut dx = alloc_f32(dev, g.b * g.image())?;
    let chunk = images_per_chunk(g, 0);
    let mut col = alloc_f32(dev, chunk * patch * p)?;
    for (start, images) in chunks(g.b, chunk) {
        let grads = dy.slice(start * g.cout * p..(start + images) * g.cout * p);
        matmul(dev, &Product::conv_input_grad(g), (&w, &grads), &mut col, images)?;
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
        let grads = dy.slice(start * g.cout * p..(start + images) * g.cout * p);
        matmul(dev, &Product::conv_weight_grad(g), (&grads, &col.slice(..)), &mut partials, images)?;
        let count = images as i32;
        launch!(dev, "add_rows_f32", elementwise(weights), &mut dw, &partials, &weights, &count)?;
    }
    Ok(dw)
}
