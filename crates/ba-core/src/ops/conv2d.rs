//! 2-D convolution with bias and an optional fused ReLU, lowered to im2col + GEMM per group of
//! images (one image for the large layers; see [`super::conv_groups`]), forward and backward.
//!
//! Candle's CPU backward for `conv2d` runs a direct-loop `conv_transpose2d` for the input
//! gradient, also for inputs that need none (the image entering the first layer), and a bias
//! and a ReLU after it each cost Candle several full passes and allocations. Here every group
//! of images is its own small problem, as in Caffe and PyTorch's native path: its column
//! matrix (patch x positions, a megabyte or two, so it stays in cache) is multiplied by the
//! weight `(cout x patch)`, which for one image gives the output in (cout, oh, ow) order
//! directly; bias and ReLU are applied in the same place. Groups are spread over rayon's
//! threads, each GEMM on one thread; fewer groups than threads go one at a time with parallel
//! GEMMs. The backward pass
//! 1. masks the output gradient by the ReLU (one pass; none without ReLU),
//! 2. sums it per channel for the bias gradient,
//! 3. accumulates the weight gradient group by group (dY_g * col_g^T), one partial sum per
//!    thread,
//! 4. computes the input gradient group by group as col2im(W^T * dY_g),
//!
//! skipping every gradient whose tensor does not take part in backpropagation.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::contiguous_slice;
use super::conv_groups::{
    add_input_grad, add_weight_grad, conv_group, conv_scratch_len, finish_weight_grad, for_each_group,
    from_group_layout, im2col_group, images_per_group, in_group_layout, spread_groups, transpose,
};
#[cfg(feature = "cuda")]
use super::cuda::{conv2d as cuda, f32_view};
use super::im2col::ConvGeometry;
#[cfg(feature = "cuda")]
use candle_core::CudaStorage;

/// Stride, zero padding and activation of a convolution, in (height, width) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between kernel placements.
    pub stride: (usize, usize),
    /// Zero padding added on each side.
    pub padding: (usize, usize),
    /// Whether a ReLU follows the bias.
    pub relu: bool,
}

impl Conv2dParams {
    /// The same stride and padding along both axes, no activation.
    pub fn square(stride: usize, padding: usize) -> Self {
        Self { stride: (stride, stride), padding: (padding, padding), relu: false }
    }

    /// The same parameters followed by a ReLU.
    pub fn with_relu(self) -> Self {
        Self { relu: true, ..self }
    }

    pub(crate) fn geometry(&self, x: &[usize], w: &[usize]) -> Result<ConvGeometry> {
        let (&[b, c, h, wd], &[cout, cw, kh, kw]) = (x, w) else {
            candle_core::bail!("conv2d: expected input (b, c, h, w) and weight (cout, c, kh, kw), got {x:?} and {w:?}");
        };
        if c != cw {
            candle_core::bail!(
                "conv2d: input has {c} channels but the weight expects {cw} (input {x:?}, weight {w:?})"
            );
        }
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        if sh == 0 || sw == 0 || kh == 0 || kw == 0 {
            candle_core::bail!("conv2d: stride and kernel must be positive ({self:?}, weight {w:?})");
        }
        if c == 0 || cout == 0 || h == 0 || wd == 0 {
            candle_core::bail!("conv2d: channels and image sides must be positive, got input {x:?} and weight {w:?}");
        }
        if h + 2 * ph < kh || wd + 2 * pw < kw {
            candle_core::bail!(
                "conv2d: padded input {}x{} is smaller than the kernel {kh}x{kw}",
                h + 2 * ph,
                wd + 2 * pw
            );
        }
        let (oh, ow) = ((h + 2 * ph - kh) / sh + 1, (wd + 2 * pw - kw) / sw + 1);
        Ok(ConvGeometry { b, c, h, w: wd, cout, kh, kw, stride: self.stride, padding: self.padding, oh, ow })
    }
}

/// `relu?(conv(x, weight) + bias)` for `x` (b, c, h, w), `weight` (cout, c, kh, kw) and
/// `bias` (cout) or none; differentiable in all three.
pub fn conv2d(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, params: Conv2dParams) -> Result<Tensor> {
    let g = params.geometry(x.dims(), weight.dims())?;
    let bias = bias_or_zeros(bias, &g, x)?;
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias, Conv2dForward(params))
}

/// `bias` checked against the convolution's output channels and made contiguous, or zeros
/// like `x` when there is none.
pub(crate) fn bias_or_zeros(bias: Option<&Tensor>, g: &ConvGeometry, x: &Tensor) -> Result<Tensor> {
    match bias {
        Some(b) if b.dims() == [g.cout] => b.contiguous(),
        Some(b) => candle_core::bail!("conv2d: bias of shape {:?} for {} output channels", b.dims(), g.cout),
        None => Tensor::zeros(g.cout, x.dtype(), x.device()),
    }
}

/// Runs `$body` with `$t` bound to the element type of `$storage`, for f32 and f64.
macro_rules! dispatch {
    ($op:expr, $storage:expr, |$t:ident| $body:expr) => {
        match $storage.dtype() {
            DType::F32 => {
                type $t = f32;
                CpuStorage::F32($body)
            }
            DType::F64 => {
                type $t = f64;
                CpuStorage::F64($body)
            }
            dt => candle_core::bail!("{}: unsupported dtype {dt:?}", $op),
        }
    };
}

struct Conv2dForward(Conv2dParams);

impl Conv2dForward {
    fn run<T: WithDType + Default>(&self, g: &ConvGeometry, x: &[T], w: &[T], bias: &[T]) -> Vec<T> {
        let (p, group) = (g.positions(), images_per_group(g));
        let mut out = vec![T::zero(); g.b * g.cout * p];
        let scratch = conv_scratch_len(g, group) + g.cout * group * p;
        for_each_group(&mut out, (g.cout * p, group), scratch, |first, images, out, scratch, parallel| {
            let (col, grouped) = scratch.split_at_mut(conv_scratch_len(g, group));
            let x = &x[first * g.image()..][..images * g.image()];
            let (inputs, how) = ((x, w, bias), (images, self.0.relu));
            if images == 1 {
                conv_group(g, inputs, how, col, out, parallel);
            } else {
                conv_group(g, inputs, how, col, grouped, parallel);
                from_group_layout(grouped, (images, g.cout, p), out);
            }
        });
        out
    }
}

impl CustomOp3 for Conv2dForward {
    fn name(&self) -> &'static str {
        "conv2d-im2col"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.0.geometry(xl.dims(), wl.dims())?;
        let name = self.name();
        let out = dispatch!(name, xs, |T| self.run::<T>(
            &g,
            contiguous_slice(name, xs, xl)?,
            contiguous_slice(name, ws, wl)?,
            contiguous_slice(name, bs, bl)?
        ));
        Ok((out, Shape::from((g.b, g.cout, g.oh, g.ow))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &CudaStorage,
        xl: &Layout,
        ws: &CudaStorage,
        wl: &Layout,
        bs: &CudaStorage,
        bl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let g = self.0.geometry(xl.dims(), wl.dims())?;
        let (name, dev) = (self.name(), xs.device());
        let inputs = (f32_view(name, xs, xl)?, f32_view(name, ws, wl)?, f32_view(name, bs, bl)?);
        let out = cuda::forward(dev, &g, self.0.relu, inputs)?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from((g.b, g.cout, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.0.geometry(x.dims(), w.dims())?;
        let grad = grad.contiguous()?;
        let dy = if self.0.relu { grad.apply_op2_no_bwd(res, &ReluMask)? } else { grad };
        let db = if b.track_op() { Some(dy.apply_op1_no_bwd(&ChannelSums)?) } else { None };
        let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(w, &Conv2dInputGrad(g))?) } else { None };
        let dw = if w.track_op() { Some(dy.apply_op2_no_bwd(x, &Conv2dWeightGrad(g))?) } else { None };
        Ok((dx, dw, db))
    }
}

/// The output gradient where the ReLU let the value through, zero elsewhere; applied to
/// (gradient, forward result).
struct ReluMask;

impl ReluMask {
    fn run<T: WithDType>(grad: &[T], res: &[T]) -> Vec<T> {
        // One pass: each value is written once, masked.
        grad.par_iter()
            .zip(res)
            .with_min_len(1 << 14)
            .map(|(&g, &r)| if r > T::zero() { g } else { T::zero() })
            .collect()
    }
}

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "conv2d-relu-mask"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, rs: &CpuStorage, rl: &Layout) -> Result<(CpuStorage, Shape)> {
        if rl.dims() != gl.dims() {
            candle_core::bail!("conv2d backward: gradient {:?} and output {:?} differ", gl.dims(), rl.dims());
        }
        let out = dispatch!(self.name(), gs, |T| Self::run::<T>(
            contiguous_slice(self.name(), gs, gl)?,
            contiguous_slice(self.name(), rs, rl)?
        ));
        Ok((out, gl.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, gs: &CudaStorage, gl: &Layout, rs: &CudaStorage, rl: &Layout) -> Result<(CudaStorage, Shape)> {
        if rl.dims() != gl.dims() {
            candle_core::bail!("conv2d backward: gradient {:?} and output {:?} differ", gl.dims(), rl.dims());
        }
        let (name, dev) = (self.name(), gs.device());
        let out = cuda::relu_mask(dev, f32_view(name, gs, gl)?, f32_view(name, rs, rl)?)?;
        Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), gl.shape().clone()))
    }
}

/// The bias gradient: the output gradient (b, c, h, w) summed per channel (Candle's generic
/// `sum((0, 2, 3))` divides three times per element, on one thread).
struct ChannelSums;

impl ChannelSums {
    fn run<T: WithDType>(dy: &[T], dims: &[usize]) -> Vec<T> {
        let (c, plane) = (dims[1], dims[2] * dims[3]);
        (0..c)
            .into_par_iter()
            .map(|ch| {
                let planes = dy.chunks_exact(plane).skip(ch).step_by(c);
                planes.map(|p| p.iter().fold(T::zero(), |a, &v| a + v)).fold(T::zero(), |a, v| a + v)
            })
            .collect()
    }
}

impl CustomOp1 for ChannelSums {
    fn name(&self) -> &'static str {
        "conv2d-bias-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l.dims();
        if dims.len() != 4 {
            candle_core::bail!("conv2d backward: expected a (b, c, h, w) gradient, got {dims:?}");
        }
        let out = dispatch!(self.name(), s, |T| Self::run::<T>(contiguous_slice(self.name(), s, l)?, dims));
        Ok((out, Shape::from(dims[1])))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
        let &[b, c, h, w] = l.dims() else {
            candle_core::bail!("conv2d backward: expected a (b, c, h, w) gradient, got {:?}", l.dims());
        };
        let dev = s.device();
        let sums = cuda::channel_sums(dev, f32_view(self.name(), s, l)?, [b, c, h, w])?;
        Ok((CudaStorage::wrap_cuda_slice(sums, dev.clone()), Shape::from(c)))
    }
}

/// dX_i = col2im(W^T * dY_i) image by image, applied to (output gradient, weight).
struct Conv2dInputGrad(ConvGeometry);

impl Conv2dInputGrad {
    fn run<T: WithDType + Default>(g: &ConvGeometry, dy: &[T], w: &[T]) -> Vec<T> {
        let (p, patch, group) = (g.positions(), g.patch(), images_per_group(g));
        // W^T stored once: the GEMM packs a contiguous left operand 10-30% faster than a
        // transposed view, and packs it again for every group.
        let w_t = transpose(w, g.cout, patch);
        let mut dx = vec![T::zero(); g.b * g.image()];
        let scratch = (patch + g.cout) * group * p;
        for_each_group(&mut dx, (g.image(), group), scratch, |first, images, dx, scratch, parallel| {
            let (col, grouped) = scratch.split_at_mut(patch * group * p);
            let dy = in_group_layout(&dy[first * g.cout * p..], (images, g.cout, p), grouped);
            add_input_grad(g, (&w_t, dy), images, col, dx, parallel);
        });
        dx
    }
}

impl CustomOp2 for Conv2dInputGrad {
    fn name(&self) -> &'static str {
        "conv2d-im2col-input-grad"
    }

    fn cpu_fwd(&self, ds: &CpuStorage, dl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = dispatch!(self.name(), ds, |T| Self::run::<T>(
            g,
            contiguous_slice(self.name(), ds, dl)?,
            contiguous_slice(self.name(), ws, wl)?
        ));
        Ok((out, Shape::from((g.b, g.c, g.h, g.w))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, ds: &CudaStorage, dl: &Layout, ws: &CudaStorage, wl: &Layout) -> Result<(CudaStorage, Shape)> {
        let (g, name, dev) = (&self.0, self.name(), ds.device());
        let dx = cuda::input_grad(dev, g, f32_view(name, ds, dl)?, f32_view(name, ws, wl)?)?;
        Ok((CudaStorage::wrap_cuda_slice(dx, dev.clone()), Shape::from((g.b, g.c, g.h, g.w))))
    }
}

/// dW = sum over images of dY_i * col_i^T, one partial sum per thread; applied to (output
/// gradient, input).
struct Conv2dWeightGrad(ConvGeometry);

impl Conv2dWeightGrad {
    fn run<T: WithDType + Default>(g: &ConvGeometry, dy: &[T], x: &[T]) -> Vec<T> {
        let (p, patch, group) = (g.positions(), g.patch(), images_per_group(g));
        let groups = g.b.div_ceil(group);
        // One running sum per thread, with its two scratch matrices.
        let start = || (vec![T::zero(); patch * g.cout], vec![T::zero(); (patch + g.cout) * group * p]);
        let add = |(mut dw, mut scratch): (Vec<T>, Vec<T>), index: usize, parallel: bool| {
            let (first, images) = (index * group, group.min(g.b - index * group));
            let (col, grouped) = scratch.split_at_mut(patch * group * p);
            im2col_group(g, &x[first * g.image()..], images, col);
            let dy = in_group_layout(&dy[first * g.cout * p..], (images, g.cout, p), grouped);
            add_weight_grad(g, (col, dy), images * p, &mut dw, parallel);
            (dw, scratch)
        };
        let (dw, _) = if spread_groups(groups) {
            let per_thread = groups.div_ceil(rayon::current_num_threads());
            (0..groups)
                .into_par_iter()
                .with_min_len(per_thread)
                .fold(start, |acc, index| add(acc, index, false))
                .reduce_with(|(mut a, scratch), (b, _)| {
                    a.iter_mut().zip(&b).for_each(|(a, &b)| *a += b);
                    (a, scratch)
                })
                .unwrap_or_else(start)
        } else {
            (0..groups).fold(start(), |acc, index| add(acc, index, true))
        };
        finish_weight_grad(g, dw)
    }
}

impl CustomOp2 for Conv2dWeightGrad {
    fn name(&self) -> &'static str {
        "conv2d-im2col-weight-grad"
    }

    fn cpu_fwd(&self, ds: &CpuStorage, dl: &Layout, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = dispatch!(self.name(), ds, |T| Self::run::<T>(
            g,
            contiguous_slice(self.name(), ds, dl)?,
            contiguous_slice(self.name(), xs, xl)?
        ));
        Ok((out, Shape::from((g.cout, g.c, g.kh, g.kw))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, ds: &CudaStorage, dl: &Layout, xs: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
        let (g, name, dev) = (&self.0, self.name(), ds.device());
        let dw = cuda::weight_grad(dev, g, f32_view(name, ds, dl)?, f32_view(name, xs, xl)?)?;
        Ok((CudaStorage::wrap_cuda_slice(dw, dev.clone()), Shape::from((g.cout, g.c, g.kh, g.kw))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::{assert_batch_equals_images_one_at_a_time, max_abs_diff, randn};
    use candle_core::{Device, Var};

    /// Forward and all three gradients against Candle's conv2d + bias (+ relu) on f64 data.
    fn check_against_candle(
        x_dims: (usize, usize, usize, usize),
        w_dims: (usize, usize, usize, usize),
        params: Conv2dParams,
    ) {
        let x = randn(&[x_dims.0, x_dims.1, x_dims.2, x_dims.3], 1.0, 1);
        let w = randn(&[w_dims.0, w_dims.1, w_dims.2, w_dims.3], 1.0, 2);
        let b = randn(&[w_dims.0], 1.0, 3);
        let ours = conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), params).unwrap();
        let (stride, padding) = (params.stride.0, params.padding.0);
        let reference = x.as_tensor().conv2d(w.as_tensor(), padding, stride, 1, 1).unwrap();
        let reference = reference.broadcast_add(&b.as_tensor().reshape((1, (), 1, 1)).unwrap()).unwrap();
        let reference = if params.relu { reference.relu().unwrap() } else { reference };
        assert_eq!(ours.dims(), reference.dims());
        assert!(max_abs_diff(&ours, &reference) < 1e-10, "forward differs for {x_dims:?} {w_dims:?}");
        let probe = randn(ours.dims(), 1.0, 4).as_tensor().clone();
        let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("input", &x), ("weight", &w), ("bias", &b)] {
            let a = g_ours.get(v.as_tensor()).unwrap();
            let r = g_ref.get(v.as_tensor()).unwrap();
            assert!(max_abs_diff(a, r) < 1e-9, "{name} gradient differs for {x_dims:?} {w_dims:?} {params:?}");
        }
    }

    #[test]
    fn matches_candle_on_alexnet_shapes_and_odd_ones() {
        let p = Conv2dParams::square;
        // features.0 with a 17x17 output: the position-major path, in two blocks of rows.
        check_against_candle((2, 3, 68, 68), (4, 3, 11, 11), p(4, 5).with_relu());
        check_against_candle((1, 3, 68, 68), (4, 3, 11, 11), p(4, 5));
        check_against_candle((2, 3, 35, 35), (4, 3, 11, 11), p(4, 5).with_relu()); // features.0, scaled down
        check_against_candle((2, 5, 15, 15), (6, 5, 5, 5), p(1, 2).with_relu()); // features.3
        check_against_candle((1, 4, 7, 7), (3, 4, 3, 3), p(1, 1)); // conv3, batch 1
        check_against_candle((3, 2, 9, 6), (5, 2, 3, 2), p(2, 0).with_relu()); // odd sizes, rectangular kernel
        check_against_candle((2, 3, 4, 4), (2, 3, 1, 1), p(1, 0)); // 1x1

        // 49 positions: groups of six images side by side, the last one of two.
        check_against_candle((20, 4, 7, 7), (5, 4, 3, 3), p(1, 1).with_relu());
    }

    #[test]
    fn images_spread_over_threads_equal_images_one_at_a_time() {
        // In f64, so that no output lies close enough to zero for rounding to flip its ReLU.
        let params = Conv2dParams::square(1, 1).with_relu();
        assert_batch_equals_images_one_at_a_time(|x, w, b| conv2d(x, w, Some(b), params).unwrap());
    }

    #[test]
    fn no_gradient_for_an_input_outside_the_graph() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 8, 8), &dev).unwrap();
        let w = Var::randn(0f32, 1., (4, 3, 3, 3), &dev).unwrap();
        let y = conv2d(&x, w.as_tensor(), None, Conv2dParams::square(1, 1)).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(w.as_tensor()).is_some());
    }

    #[test]
    fn mismatched_shapes_are_clear_errors() {
        let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((4, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let err = conv2d(&x, &w, None, Conv2dParams::square(1, 1)).unwrap_err().to_string();
        assert!(err.contains("input has 3 channels but the weight expects 2"), "{err}");
        let w = Tensor::zeros((4, 3, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap();
        let err = conv2d(&x, &w, Some(&b), Conv2dParams::square(1, 1)).unwrap_err().to_string();
        assert!(err.contains("bias of shape [5] for 4 output channels"), "{err}");
        let empty = Tensor::zeros((4, 3, 0, 8), DType::F32, &Device::Cpu).unwrap();
        let err = conv2d(&empty, &w, None, Conv2dParams::square(1, 1)).unwrap_err().to_string();
        assert!(err.contains("channels and image sides must be positive"), "{err}");
    }

    #[test]
    fn an_empty_batch_gives_an_empty_output_and_gradients() {
        let x = Var::from_tensor(&Tensor::zeros((0, 3, 8, 8), DType::F32, &Device::Cpu).unwrap()).unwrap();
        let w = Var::randn(0f32, 1., (4, 3, 3, 3), &Device::Cpu).unwrap();
        let y = conv2d(x.as_tensor(), w.as_tensor(), None, Conv2dParams::square(1, 1).with_relu()).unwrap();
        assert_eq!(y.dims(), [0, 4, 8, 8]);
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(x.as_tensor()).unwrap().dims(), [0, 3, 8, 8]);
        let dw = grads.get(w.as_tensor()).unwrap();
        assert_eq!(dw.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }
}
