//! 2-D convolution with bias and an optional fused ReLU, lowered to im2col + GEMM per group of
//! images (one image for the large layers; see [`super::groups`]), forward and backward.
//!
//! Candle's CPU backward for `conv2d` runs a direct-loop `conv_transpose2d` for the input
//! gradient, also for inputs that need none (the image entering the first layer), and a bias
//! and a ReLU after it each cost Candle several full passes and allocations. Here every group
//! of images is its own small problem, as in Caffe and PyTorch's native path: its column
//! matrix (patch x positions, a megabyte or two, so it stays in cache) is multiplied by the
//! weight `(cout x patch)`, which for one image gives the output in (cout, oh, ow) order
//! directly; bias and ReLU are applied in the same place. Groups are spread over rayon's
//! threads, each GEMM on one thread; fewer groups than threads go one at a time with parallel
//! GEMMs. The backward pass runs over the same groups; for each it
//! 1. copies the group's output gradient into the group's layout, masked by the ReLU,
//! 2. adds its per-channel sums to the bias gradient,
//! 3. adds dY_g * col_g^T to the weight gradient (one partial sum per thread),
//! 4. computes the group's input gradient as col2im(W^T * dY_g),
//!
//! while dY_g is in cache, skipping every gradient whose tensor does not take part in
//! backpropagation. On CUDA each step is one kernel or cuBLAS call over the batch.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};

use super::geometry::ConvGeometry;
use super::groups::{
    conv_group, conv_scratch_len, cpu_backward, for_each_group, from_group_layout, images_per_group, ConvWeights,
    DyOrder, GroupOutputGrad,
};
use crate::ops::cpu::precision::Precision;
use crate::ops::cpu::storage::{contiguous_slice, dispatch};
#[cfg(feature = "cuda")]
use crate::ops::cuda::conv2d as cuda;
#[cfg(feature = "cuda")]
use crate::ops::cuda::launch::{f32_view, to_bf16};
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
    /// The number format of the products' operands (f32, or bf16 for mixed precision).
    pub precision: Precision,
}

impl Conv2dParams {
    /// The same stride and padding along both axes, no activation.
    pub fn square(stride: usize, padding: usize) -> Self {
        Self { stride: (stride, stride), padding: (padding, padding), relu: false, precision: Precision::F32 }
    }

    /// The same parameters followed by a ReLU.
    pub fn with_relu(self) -> Self {
        Self { relu: true, ..self }
    }

    /// The same parameters with the products' operands in `precision`.
    pub fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
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
    let op = |x: &Tensor, w: &Tensor| x.contiguous()?.apply_op3(&w.contiguous()?, &bias, Conv2dForward(params));
    if x.device().is_cpu() {
        params.precision.on_cpu(x, weight, op)
    } else {
        op(x, weight)
    }
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

struct Conv2dForward(Conv2dParams);

impl Conv2dForward {
    fn run<T: WithDType + Default>(&self, g: &ConvGeometry, x: &[T], w: &[T], bias: &[T]) -> Vec<T> {
        let (p, group) = (g.positions(), images_per_group(g));
        let mut out = vec![T::zero(); g.b * g.cout * p];
        let w = ConvWeights::new(g, w);
        let scratch = conv_scratch_len(g, group) + g.cout * group * p;
        for_each_group(&mut out, (g.cout * p, group), scratch, |first, images, out, scratch, parallel| {
            let (col, grouped) = scratch.split_at_mut(conv_scratch_len(g, group));
            let x = &x[first * g.image()..][..images * g.image()];
            let (inputs, how) = ((x, &w, bias), (images, self.0.relu));
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
        let (x, w, bias) = (f32_view(name, xs, xl)?, f32_view(name, ws, wl)?, f32_view(name, bs, bl)?);
        let out = match self.0.precision {
            Precision::F32 => cuda::forward(dev, &g, self.0.relu, (x, w, bias))?,
            Precision::Bf16 => cuda::forward(dev, &g, self.0.relu, (x, to_bf16(dev, &w)?.slice(..), bias))?,
        };
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
        #[cfg(feature = "cuda")]
        if x.device().is_cuda() {
            return cuda_backward(&g, self.0, (x, w, b), res, grad.contiguous()?);
        }
        cpu_backward(self.name(), &g, (x, w, b), (grad, res), &MaskedOutputGrad { g, relu: self.0.relu })
    }
}

/// The CPU backward's output gradient of a group: the op's own, laid out for the group's
/// products and masked by the ReLU in the same pass (see [`cpu_backward`]), so that the mask,
/// the bias sums and both products read it while it is in cache.
struct MaskedOutputGrad {
    g: ConvGeometry,
    relu: bool,
}

impl GroupOutputGrad for MaskedOutputGrad {
    fn fill<T: WithDType>(
        &self,
        (grad, res): (&[T], &[T]),
        (first, images): (usize, usize),
        order: DyOrder,
        dy: &mut [T],
    ) {
        let (cout, p) = (self.g.cout, self.g.positions());
        let span = first * cout * p..(first + images) * cout * p;
        let planes = grad[span.clone()].chunks_exact(p).zip(res[span].chunks_exact(p));
        for (index, (grad, res)) in planes.enumerate() {
            let (start, step) = order.plane(&self.g, images, (index / cout, index % cout));
            let masked = grad.iter().zip(res).map(|(&g, &r)| if !self.relu || r > T::zero() { g } else { T::zero() });
            if step == 1 {
                dy[start..][..p].iter_mut().zip(masked).for_each(|(d, v)| *d = v);
            } else {
                dy[start..].iter_mut().step_by(step).zip(masked).for_each(|(d, v)| *d = v);
            }
        }
    }
}

/// The backward pass on CUDA: the ReLU mask, the bias gradient and the input and weight
/// gradients as one kernel or cuBLAS call each. Under mixed precision the output gradient is
/// rounded to bf16 once, the operand of both products and what the bias gradient sums (as
/// the CPU's emulation rounds it, `ops/cpu/precision.rs`).
#[cfg(feature = "cuda")]
fn cuda_backward(
    g: &ConvGeometry,
    params: Conv2dParams,
    (x, w, b): (&Tensor, &Tensor, &Tensor),
    res: &Tensor,
    grad: Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    use cuda_ops::{ChannelSums, Of, ProductGrad, ReluMask};
    let dy = if params.relu { grad.apply_op2_no_bwd(res, &ReluMask)? } else { grad };
    let dy = match params.precision {
        Precision::F32 => dy,
        Precision::Bf16 => dy.to_dtype(candle_core::DType::BF16)?,
    };
    let db = if b.track_op() { Some(dy.apply_op1_no_bwd(&ChannelSums)?) } else { None };
    let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(w, &ProductGrad(*g, Of::Input))?) } else { None };
    let dw = if w.track_op() { Some(dy.apply_op2_no_bwd(x, &ProductGrad(*g, Of::Weight))?) } else { None };
    Ok((dx, dw, db))
}

/// The backward pass's ops on CUDA, one kernel or cuBLAS call each. On the CPU the backward is
/// one pass over groups of images ([`CpuBackward`]), so their CPU sides refuse to run.
#[cfg(feature = "cuda")]
mod cuda_ops {
    use candle_core::backend::BackendStorage;
    use candle_core::{CpuStorage, CudaStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape};
    use half::bf16;

    use super::ConvGeometry;
    use crate::ops::cuda::conv2d as cuda;
    use crate::ops::cuda::launch::{f32_view, operand_view, to_bf16};

    fn cpu_refused(name: &str) -> Result<(CpuStorage, Shape)> {
        candle_core::bail!("{name}: CUDA only (conv2d's CPU backward pass runs its own groups)")
    }

    /// The output gradient where the ReLU let the value through, zero elsewhere; applied to
    /// (gradient, forward result).
    pub(super) struct ReluMask;

    impl CustomOp2 for ReluMask {
        fn name(&self) -> &'static str {
            "conv2d-relu-mask"
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
            cpu_refused(self.name())
        }

        fn cuda_fwd(
            &self,
            gs: &CudaStorage,
            gl: &Layout,
            rs: &CudaStorage,
            rl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            if rl.dims() != gl.dims() {
                candle_core::bail!("conv2d backward: gradient {:?} and output {:?} differ", gl.dims(), rl.dims());
            }
            let (name, dev) = (self.name(), gs.device());
            let out = cuda::relu_mask(dev, f32_view(name, gs, gl)?, f32_view(name, rs, rl)?)?;
            Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), gl.shape().clone()))
        }
    }

    /// The bias gradient: the output gradient (b, c, h, w) summed per channel.
    pub(super) struct ChannelSums;

    impl CustomOp1 for ChannelSums {
        fn name(&self) -> &'static str {
            "conv2d-bias-grad"
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
            cpu_refused(self.name())
        }

        fn cuda_fwd(&self, s: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
            let &[b, c, h, w] = l.dims() else {
                candle_core::bail!("conv2d backward: expected a (b, c, h, w) gradient, got {:?}", l.dims());
            };
            let (name, dev) = (self.name(), s.device());
            let sums = match s.dtype() {
                DType::BF16 => cuda::channel_sums::<bf16>(dev, operand_view(name, s, l)?, [b, c, h, w])?,
                _ => cuda::channel_sums::<f32>(dev, f32_view(name, s, l)?, [b, c, h, w])?,
            };
            Ok((CudaStorage::wrap_cuda_slice(sums, dev.clone()), Shape::from(c)))
        }
    }

    /// Which gradient a [`ProductGrad`] computes.
    #[derive(Clone, Copy)]
    pub(super) enum Of {
        /// dX_i = col2im(W^T * dY_i); applied to (output gradient, weight).
        Input,
        /// dW = sum over images of dY_i * col_i^T; applied to (output gradient, input).
        Weight,
    }

    /// The input or the weight gradient, by cuBLAS products over the batch.
    pub(super) struct ProductGrad(pub ConvGeometry, pub Of);

    impl CustomOp2 for ProductGrad {
        fn name(&self) -> &'static str {
            match self.1 {
                Of::Input => "conv2d-im2col-input-grad",
                Of::Weight => "conv2d-im2col-weight-grad",
            }
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
            cpu_refused(self.name())
        }

        fn cuda_fwd(
            &self,
            ds: &CudaStorage,
            dl: &Layout,
            os: &CudaStorage,
            ol: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (g, name, dev) = (&self.0, self.name(), ds.device());
            let other = f32_view(name, os, ol)?;
            // The output gradient is f32, or bf16 under mixed precision; the weight is then
            // rounded to bf16 too, the input is by the column kernel.
            let grad = match (self.1, ds.dtype()) {
                (Of::Input, DType::BF16) => {
                    cuda::input_grad::<bf16>(dev, g, operand_view(name, ds, dl)?, to_bf16(dev, &other)?.slice(..))?
                }
                (Of::Input, _) => cuda::input_grad::<f32>(dev, g, f32_view(name, ds, dl)?, other)?,
                (Of::Weight, DType::BF16) => cuda::weight_grad::<bf16>(dev, g, operand_view(name, ds, dl)?, other)?,
                (Of::Weight, _) => cuda::weight_grad::<f32>(dev, g, f32_view(name, ds, dl)?, other)?,
            };
            let shape = match self.1 {
                Of::Input => Shape::from((g.b, g.c, g.h, g.w)),
                Of::Weight => Shape::from((g.cout, g.c, g.kh, g.kw)),
            };
            Ok((CudaStorage::wrap_cuda_slice(grad, dev.clone()), shape))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::{assert_batch_equals_images_one_at_a_time, max_abs_diff, randn};
    use candle_core::{DType, Device, Var};

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
        // features.0 scaled down (17x17 and 8x8 outputs): by Winograd on the block images.
        check_against_candle((2, 3, 68, 68), (4, 3, 11, 11), p(4, 5).with_relu());
        check_against_candle((1, 3, 68, 68), (4, 3, 11, 11), p(4, 5));
        check_against_candle((2, 3, 35, 35), (4, 3, 11, 11), p(4, 5).with_relu());
        // Block images of other strides and kernels: 7x7 by 3 (a 3x3 block kernel, padding
        // that is not a whole block), 5x5 by 2 on a rectangular image.
        check_against_candle((2, 2, 20, 17), (3, 2, 7, 7), p(3, 2).with_relu());
        check_against_candle((2, 3, 15, 17), (4, 3, 5, 5), p(2, 1));
        // 11x11 by 2: a 6x6 block kernel, which Winograd's algorithm does not run; 20x20
        // outputs, the position-major im2row path, in two blocks of rows.
        check_against_candle((2, 3, 40, 40), (4, 3, 11, 11), p(2, 5).with_relu());
        check_against_candle((2, 5, 15, 15), (6, 5, 5, 5), p(1, 2).with_relu()); // features.3
        check_against_candle((1, 4, 7, 7), (3, 4, 3, 3), p(1, 1)); // conv3, batch 1
        check_against_candle((3, 2, 9, 6), (5, 2, 3, 2), p(2, 0).with_relu()); // odd sizes, rectangular kernel
        check_against_candle((2, 3, 4, 4), (2, 3, 1, 1), p(1, 0)); // 1x1

        // 49 positions: groups of six images side by side, the last one of two.
        check_against_candle((20, 4, 7, 7), (5, 4, 3, 3), p(1, 1).with_relu());
    }

    #[test]
    fn winograd_layers_match_candle() {
        // 3x3 and 5x5 kernels with stride 1 run by Winograd's F(2x2, 3x3), F(4x4, 3x3), F(2x2,
        // 5x5) and F(3x3, 5x5), whichever multiplies least: odd and even maps (tiles past the
        // edge), rectangular ones, padding 0 to 2, a map of one row, channel counts that fill
        // one vector block, then more than one with a partial last block. Of the 5x5 cases
        // below, the 4x7 output runs by F(2x2, 5x5), the others by F(3x3, 5x5).
        let p = Conv2dParams::square;
        for k in [3, 5] {
            check_against_candle((2, 3, 5, 5), (4, 3, k, k), p(1, 1).with_relu());
            check_against_candle((1, 2, 6, 9), (3, 2, k, k), p(1, 1));
            check_against_candle((2, 3, 8, 7), (2, 3, k, k), p(1, 0).with_relu());
            check_against_candle((1, 2, 4, 5), (3, 2, k, k), p(1, 2));
            check_against_candle((2, 2, 1, 6), (2, 2, k, k), p(1, 2));
            check_against_candle((3, 16, 7, 7), (16, 16, k, k), p(1, 1).with_relu());
            check_against_candle((2, 37, 7, 7), (21, 37, k, k), p(1, 1).with_relu());
        }
        // 4x4 outputs run by F(2x2, 5x5) (144 multiplies per channel pair against 196), with
        // one vector block of channels and with a partial second one.
        check_against_candle((2, 3, 4, 4), (4, 3, 5, 5), p(1, 2).with_relu());
        check_against_candle((2, 37, 4, 4), (21, 37, 5, 5), p(1, 2));
        // features.3's map, in groups of images side by side with a smaller last group.
        check_against_candle((5, 3, 15, 15), (4, 3, 5, 5), p(1, 2).with_relu());
    }

    #[test]
    fn a_weight_updated_in_place_is_transformed_again() {
        // The forward pass reuses Winograd's transformed weight while the weight is unchanged
        // (`weight_cache.rs`); an optimizer step changes it in place, at the same address.
        use crate::ops::optim::sgd::{sgd_update, SgdStep};
        use crate::ops::optim::state::StateVector;
        let x = crate::rng::randn(1, (2, 8, 7, 7), &Device::Cpu).unwrap();
        let w = Var::from_tensor(&(crate::rng::randn(2, (6, 8, 3, 3), &Device::Cpu).unwrap() * 0.3).unwrap()).unwrap();
        let params = Conv2dParams::square(1, 1);
        let run = |w: &Tensor| conv2d(&x, w, None, params).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let before = run(w.as_tensor());
        assert_eq!(run(w.as_tensor()), before, "an unchanged weight gives the same output");
        let step = SgdStep { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 };
        let grad = Tensor::ones((6, 8, 3, 3), DType::F32, &Device::Cpu).unwrap();
        sgd_update(w.as_tensor(), &grad, &mut StateVector::default(), step).unwrap();
        let after = run(w.as_tensor());
        assert_ne!(after, before);
        // A copy of the updated weight lives elsewhere and was never seen: computed afresh.
        assert_eq!(after, run(&w.as_tensor().copy().unwrap()));
    }

    /// The error of the f32 convolution of `x` by `w` (given in f64) against the f64 one,
    /// relative to the output's scale: ours and Candle's direct convolution's.
    fn f32_errors(x: &Var, w: &Var, padding: usize) -> (f64, f64) {
        let params = Conv2dParams::square(1, padding);
        let exact = conv2d(x.as_tensor(), w.as_tensor(), None, params).unwrap();
        let (x32, w32) = (x.to_dtype(DType::F32).unwrap(), w.to_dtype(DType::F32).unwrap());
        let ours = conv2d(&x32, &w32, None, params).unwrap().to_dtype(DType::F64).unwrap();
        let direct = x32.conv2d(&w32, padding, 1, 1, 1).unwrap().to_dtype(DType::F64).unwrap();
        let scale = exact.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
        (max_abs_diff(&ours, &exact) / scale, max_abs_diff(&direct, &exact) / scale)
    }

    #[test]
    fn winograd_in_f32_keeps_the_accuracy_of_direct_convolution() {
        // The f32 error of each algorithm at an AlexNet shape, against Candle's direct
        // convolution's: F(2x2, 3x3) (which runs 3x3 kernels on 5x5 maps) only adds, subtracts
        // and halves, as close as direct convolution gets; F(4x4, 3x3) (conv2: 192 -> 192
        // channels at 7x7) and F(2x2, 5x5) (features.3's channels, 48 -> 128, at a 4x4 map)
        // evaluate at 1/2 and -2 as well, and F(3x3, 5x5) (features.3: 15x15) at -1/2, -2 and
        // 3/2, which costs some accuracy, bounded here.
        let cases = [
            ("F(2x2, 3x3)", [2, 192, 5, 5], [192, 192, 3, 3], 1, 4.0),
            ("F(4x4, 3x3)", [2, 192, 7, 7], [192, 192, 3, 3], 1, 10.0),
            ("F(2x2, 5x5)", [8, 48, 4, 4], [128, 48, 5, 5], 2, 5.0),
            ("F(3x3, 5x5)", [2, 48, 15, 15], [128, 48, 5, 5], 2, 10.0),
        ];
        for (seed, (name, x_dims, w_dims, padding, bound)) in (11..).step_by(2).zip(cases) {
            let (ours, direct) = f32_errors(&randn(&x_dims, 1.0, seed), &randn(&w_dims, 0.03, seed + 1), padding);
            assert!(
                ours < bound * direct.max(1e-7) && ours < 1e-5,
                "{name} f32 error {ours:e}, Candle's direct convolution's {direct:e}"
            );
        }
    }

    #[test]
    fn images_spread_over_threads_equal_images_one_at_a_time() {
        // In f64, so that no output lies close enough to zero for rounding to flip its ReLU.
        assert_batch_equals_images_one_at_a_time(|x, w, b, conv| conv2d(x, w, Some(b), conv).unwrap());
    }

    #[test]
    fn no_gradient_for_an_input_outside_the_graph() {
        let dev = Device::Cpu;
        let x = crate::rng::randn(3, (2, 3, 8, 8), &dev).unwrap();
        let w = Var::from_tensor(&crate::rng::randn(4, (4, 3, 3, 3), &dev).unwrap()).unwrap();
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
        let w = Var::from_tensor(&crate::rng::randn(5, (4, 3, 3, 3), &Device::Cpu).unwrap()).unwrap();
        let y = conv2d(x.as_tensor(), w.as_tensor(), None, Conv2dParams::square(1, 1).with_relu()).unwrap();
        assert_eq!(y.dims(), [0, 4, 8, 8]);
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(x.as_tensor()).unwrap().dims(), [0, 3, 8, 8]);
        let dw = grads.get(w.as_tensor()).unwrap();
        assert_eq!(dw.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
    }
}
