//! The convolution on CUDA: the same per-image lowering as the CPU path (`ops/conv/conv2d.rs`),
//! with the column matrices of a chunk of images built by one kernel and multiplied by one
//! strided-batched cuBLAS product. The products' operands are f32, or bf16 for mixed precision
//! (`T` = `half::bf16`: the column kernel writes bf16, the weight is rounded by `to_bf16` and
//! the output gradient by the backward pass's caller); their sums and results are f32 either
//! way.

use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView};
use candle_core::cuda_backend::CudaDevice;
use candle_core::Result;

use super::blas::Product;
use super::kernel_args::ConvArgs;
use super::launch::{alloc, elementwise, launch, matmul, Operand};
use crate::ops::conv::geometry::ConvGeometry;

/// The column matrices of one chunk take at most this many bytes (more for a single image).
const CHUNK_BYTES: usize = 256 << 20;

/// Images whose column matrices (`T` values) and weight-gradient partial sums (`extra` f32
/// values per image) are built at once.
fn images_per_chunk<T>(g: &ConvGeometry, extra: usize) -> usize {
    let per_image = std::mem::size_of::<T>() * g.patch() * g.positions() + 4 * extra;
    (CHUNK_BYTES / per_image.max(1)).clamp(1, g.b.max(1))
}

/// The chunks of images: (first image, image count).
fn chunks(images: usize, chunk: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..images).step_by(chunk.max(1)).map(move |start| (start, chunk.min(images - start)))
}

/// Fills `col` with the column matrices of `images` images of `x`, as operands of type `T`.
fn im2col<T: Operand>(
    dev: &CudaDevice,
    g: &ConvGeometry,
    x: &CudaView<'_, f32>,
    col: &mut CudaSlice<T>,
    images: usize,
) -> Result<()> {
    let (kg, count) = (ConvArgs::of(g)?, images as i32);
    let kernel = format!("im2col_{}", T::KERNELS);
    launch!(dev, &kernel, elementwise(images * g.patch() * g.positions()), x, col, &kg, &count)
}

/// `relu?(conv(x, w) + bias)` of contiguous f32 (b, c, h, w) input and bias, and a (cout, c,
/// kh, kw) weight already in the operands' type `T`.
pub(crate) fn forward<T: Operand>(
    dev: &CudaDevice,
    g: &ConvGeometry,
    relu: bool,
    (x, w, bias): (CudaView<'_, f32>, CudaView<'_, T>, CudaView<'_, f32>),
) -> Result<CudaSlice<f32>> {
    let (p, patch) = (g.positions(), g.patch());
    let mut out = alloc::<f32>(dev, g.b * g.cout * p)?;
    let chunk = images_per_chunk::<T>(g, 0);
    let mut col = alloc::<T>(dev, chunk * patch * p)?;
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
    let mut out = alloc::<f32>(dev, n)?;
    launch!(dev, "relu_mask_f32", elementwise(n), &grad, &result, &mut out, &n)?;
    Ok(out)
}

/// Per-channel f32 sums of a (b, c, h, w) gradient (f32, or the bf16 operand of mixed
/// precision's products): the bias gradient.
pub(crate) fn channel_sums<T: Operand>(
    dev: &CudaDevice,
    dy: CudaView<'_, T>,
    dims: [usize; 4],
) -> Result<CudaSlice<f32>> {
    let [b, c, h, w] = dims;
    let mut sums = alloc::<f32>(dev, c)?;
    let config = candle_core::cuda_backend::cudarc::driver::LaunchConfig {
        grid_dim: (c as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (b, c, plane) = (b as i32, c as i32, (h * w) as i32);
    let kernel = format!("channel_sums_{}", T::KERNELS);
    launch!(dev, &kernel, config, &dy, &mut sums, &b, &c, &plane)?;
    Ok(sums)
}

/// dX_i = col2im(W^T * dY_i), a chunk of images at a time, from operands of type `T`.
pub(crate) fn input_grad<T: Operand>(
    dev: &CudaDevice,
    g: &ConvGeometry,
    dy: CudaView<'_, T>,
    w: CudaView<'_, T>,
) -> Result<CudaSlice<f32>> {
    let (p, patch) = (g.positions(), g.patch());
    let kg = ConvArgs::of(g)?;
    let mut dx = alloc::<f32>(dev, g.b * g.image())?;
    // The product's result, the columns of the input gradient, is f32.
    let chunk = images_per_chunk::<f32>(g, 0);
    let mut col = alloc::<f32>(dev, chunk * patch * p)?;
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
/// run). `dy` is in the operands' type `T`; the columns of the f32 input `x` are made in it.
pub(crate) fn weight_grad<T: Operand>(
    dev: &CudaDevice,
    g: &ConvGeometry,
    dy: CudaView<'_, T>,
    x: CudaView<'_, f32>,
) -> Result<CudaSlice<f32>> {
    let (p, patch, weights) = (g.positions(), g.patch(), g.cout * g.patch());
    let chunk = images_per_chunk::<T>(g, weights);
    let mut col = alloc::<T>(dev, chunk * patch * p)?;
    let mut partials = alloc::<f32>(dev, chunk * weights)?;
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
