//! 2-D convolution with bias and an optional fused ReLU, lowered to im2col + GEMM, forward
//! and backward.
//!
//! Candle's CPU backward for `conv2d` runs a direct-loop `conv_transpose2d` for the input
//! gradient, also for inputs that need none (the image entering the first layer), and a bias
//! and a ReLU after it each cost Candle several full passes and allocations. This op adds the
//! bias and applies the ReLU while it lays out the GEMM result, and its backward
//! 1. masks and transposes the output gradient in one pass into "gradient rows"
//!    (images * positions, out channels),
//! 2. sums those rows for the bias gradient,
//! 3. computes the weight gradient as one GEMM over the whole batch (rows^T * im2col(X)),
//! 4. computes the input gradient as rows * W followed by col2im,
//!
//! skipping every gradient whose tensor does not take part in backpropagation.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::contiguous_slice;
use super::im2col::{col2im, im2col, matmul, ConvGeometry, MatRef};

/// Largest im2col matrix built at once, in elements; larger batches are processed in chunks.
const COL_BUDGET: usize = 1 << 24;

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

    fn geometry(&self, x: &[usize], w: &[usize]) -> Result<ConvGeometry> {
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
    let bias = match bias {
        Some(b) if b.dims() == [g.cout] => b.contiguous()?,
        Some(b) => candle_core::bail!("conv2d: bias of shape {:?} for {} output channels", b.dims(), g.cout),
        None => Tensor::zeros(g.cout, x.dtype(), x.device())?,
    };
    x.contiguous()?.apply_op3(&weight.contiguous()?, &bias, Conv2dForward(params))
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
        let (p, patch, chunk) = (g.positions(), g.patch(), g.images_per_chunk(COL_BUDGET));
        let mut out = vec![T::zero(); g.b * g.cout * p];
        let mut col = vec![T::zero(); chunk * p * patch];
        let mut rows = vec![T::zero(); chunk * p * g.cout];
        for first in (0..g.b).step_by(chunk) {
            let n = chunk.min(g.b - first);
            let g_chunk = ConvGeometry { b: n, ..*g };
            im2col(&g_chunk, &x[first * g.c * g.h * g.w..][..n * g.c * g.h * g.w], &mut col[..n * p * patch]);
            // rows (n*p, cout) = col (n*p, patch) * W^T (patch, cout)
            let lhs = MatRef { data: &col[..n * p * patch], row_stride: patch, col_stride: 1 };
            let rhs = MatRef { data: w, row_stride: 1, col_stride: patch };
            matmul((n * p, g.cout, patch), &mut rows, false, lhs, rhs);
            let out = &mut out[first * g.cout * p..][..n * g.cout * p];
            self.lay_out(&rows[..n * p * g.cout], bias, p, out);
        }
        out
    }

    /// Rewrites `rows` (images * positions, cout) as `out` (images, cout, positions), adding the
    /// bias and applying the ReLU.
    fn lay_out<T: WithDType>(&self, rows: &[T], bias: &[T], positions: usize, out: &mut [T]) {
        let cout = bias.len();
        out.par_chunks_mut(positions).enumerate().for_each(|(plane, dst)| {
            let (image, ch) = (plane / cout, plane % cout);
            let src = &rows[image * positions * cout..];
            for (pos, v) in dst.iter_mut().enumerate() {
                let y = src[pos * cout + ch] + bias[ch];
                *v = if self.0.relu && y < T::zero() { T::zero() } else { y };
            }
        });
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

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = self.0.geometry(x.dims(), w.dims())?;
        let rows = grad.contiguous()?.apply_op2_no_bwd(res, &GradRows { relu: self.0.relu })?;
        let db = if b.track_op() { Some(rows.sum(0)?) } else { None };
        let dx = if x.track_op() { Some(rows.apply_op2_no_bwd(w, &Conv2dInputGrad(g))?) } else { None };
        let dw = if w.track_op() { Some(rows.apply_op2_no_bwd(x, &Conv2dWeightGrad(g))?) } else { None };
        Ok((dx, dw, db))
    }
}

/// The output gradient (b, cout, oh, ow), masked by the ReLU if there is one, as rows
/// (b * oh * ow, cout); applied to (grad, forward result).
struct GradRows {
    relu: bool,
}

impl GradRows {
    fn run<T: WithDType + Default>(&self, grad: &[T], res: &[T], dims: &[usize]) -> Vec<T> {
        let (cout, positions) = (dims[1], dims[2] * dims[3]);
        let mut rows = vec![T::default(); grad.len()];
        rows.par_chunks_mut(cout).enumerate().for_each(|(row, dst)| {
            let base = (row / positions) * cout * positions + row % positions;
            for (ch, v) in dst.iter_mut().enumerate() {
                let i = base + ch * positions;
                *v = if self.relu && res[i] <= T::zero() { T::zero() } else { grad[i] };
            }
        });
        rows
    }
}

impl CustomOp2 for GradRows {
    fn name(&self) -> &'static str {
        "conv2d-im2col-grad-rows"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, rs: &CpuStorage, rl: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = gl.dims();
        if dims.len() != 4 || rl.dims() != dims {
            candle_core::bail!("conv2d backward: gradient {dims:?} and output {:?} differ", rl.dims());
        }
        let rows = dispatch!(self.name(), gs, |T| self.run::<T>(
            contiguous_slice(self.name(), gs, gl)?,
            contiguous_slice(self.name(), rs, rl)?,
            dims
        ));
        Ok((rows, Shape::from((dims[0] * dims[2] * dims[3], dims[1]))))
    }
}

/// dX = col2im(rows * W), applied to (gradient rows, weight).
struct Conv2dInputGrad(ConvGeometry);

impl Conv2dInputGrad {
    fn run<T: WithDType + Default>(g: &ConvGeometry, rows: &[T], w: &[T]) -> Vec<T> {
        let (p, patch, chunk) = (g.positions(), g.patch(), g.images_per_chunk(COL_BUDGET));
        let image = g.c * g.h * g.w;
        let mut dx = vec![T::zero(); g.b * image];
        let mut col = vec![T::zero(); chunk * p * patch];
        for first in (0..g.b).step_by(chunk) {
            let n = chunk.min(g.b - first);
            // col (n*p, patch) = rows (n*p, cout) * W (cout, patch)
            let lhs = MatRef { data: &rows[first * p * g.cout..][..n * p * g.cout], row_stride: g.cout, col_stride: 1 };
            let rhs = MatRef { data: w, row_stride: patch, col_stride: 1 };
            matmul((n * p, patch, g.cout), &mut col, false, lhs, rhs);
            col2im(&ConvGeometry { b: n, ..*g }, &col[..n * p * patch], &mut dx[first * image..][..n * image]);
        }
        dx
    }
}

impl CustomOp2 for Conv2dInputGrad {
    fn name(&self) -> &'static str {
        "conv2d-im2col-input-grad"
    }

    fn cpu_fwd(&self, rs: &CpuStorage, rl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = dispatch!(self.name(), rs, |T| Self::run::<T>(
            g,
            contiguous_slice(self.name(), rs, rl)?,
            contiguous_slice(self.name(), ws, wl)?
        ));
        Ok((out, Shape::from((g.b, g.c, g.h, g.w))))
    }
}

/// dW = rows^T * im2col(X) over the whole batch, applied to (gradient rows, input).
struct Conv2dWeightGrad(ConvGeometry);

impl Conv2dWeightGrad {
    fn run<T: WithDType + Default>(g: &ConvGeometry, rows: &[T], x: &[T]) -> Vec<T> {
        let (p, patch, chunk) = (g.positions(), g.patch(), g.images_per_chunk(COL_BUDGET));
        let image = g.c * g.h * g.w;
        let mut dw = vec![T::zero(); g.cout * patch];
        let mut col = vec![T::zero(); chunk * p * patch];
        for (i, first) in (0..g.b).step_by(chunk).enumerate() {
            let n = chunk.min(g.b - first);
            im2col(&ConvGeometry { b: n, ..*g }, &x[first * image..][..n * image], &mut col[..n * p * patch]);
            // dW (cout, patch) += rows^T (cout, n*p) * col (n*p, patch)
            let lhs = MatRef { data: &rows[first * p * g.cout..][..n * p * g.cout], row_stride: 1, col_stride: g.cout };
            let rhs = MatRef { data: &col[..n * p * patch], row_stride: patch, col_stride: 1 };
            matmul((g.cout, patch, n * p), &mut dw, i > 0, lhs, rhs);
        }
        dw
    }
}

impl CustomOp2 for Conv2dWeightGrad {
    fn name(&self) -> &'static str {
        "conv2d-im2col-weight-grad"
    }

    fn cpu_fwd(&self, rs: &CpuStorage, rl: &Layout, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = dispatch!(self.name(), rs, |T| Self::run::<T>(
            g,
            contiguous_slice(self.name(), rs, rl)?,
            contiguous_slice(self.name(), xs, xl)?
        ));
        Ok((out, Shape::from((g.cout, g.c, g.kh, g.kw))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;
    use candle_core::{Device, Var};
    use rand_distr::{Distribution, StandardNormal};

    /// A seeded normal tensor, so that failures reproduce.
    fn randn(shape: &[usize], std: f64, seed: u64) -> Var {
        let mut rng = rng_for(seed, "test");
        let n = shape.iter().product();
        let values: Vec<f64> = (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                std * z
            })
            .collect();
        Var::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

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
        check_against_candle((2, 3, 35, 35), (4, 3, 11, 11), p(4, 5).with_relu()); // features.0, scaled down
        check_against_candle((2, 5, 15, 15), (6, 5, 5, 5), p(1, 2).with_relu()); // features.3
        check_against_candle((1, 4, 7, 7), (3, 4, 3, 3), p(1, 1)); // conv3, batch 1
        check_against_candle((3, 2, 9, 6), (5, 2, 3, 2), p(2, 0).with_relu()); // odd sizes, rectangular kernel
        check_against_candle((2, 3, 4, 4), (2, 3, 1, 1), p(1, 0)); // 1x1
    }

    #[test]
    fn chunked_batches_equal_unchunked() {
        // A batch whose im2col exceeds the budget runs in several chunks. In f64, so that no
        // output lies close enough to zero for rounding to flip its ReLU mask.
        let (b, c, hw) = (30, 16, 64);
        let params = Conv2dParams::square(1, 1).with_relu();
        let g = params.geometry(&[b, c, hw, hw], &[8, c, 3, 3]).unwrap();
        assert!(g.images_per_chunk(COL_BUDGET) < b, "test must exercise chunking");
        let x = randn(&[b, c, hw, hw], 1.0, 5);
        let w = randn(&[8, c, 3, 3], 0.1, 6);
        let ours = conv2d(x.as_tensor(), w.as_tensor(), None, params).unwrap();
        let reference = x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap().relu().unwrap();
        assert!(max_abs_diff(&ours, &reference) < 1e-12);
        let g_ours = ours.sum_all().unwrap().backward().unwrap();
        let g_ref = reference.sum_all().unwrap().backward().unwrap();
        for v in [&x, &w] {
            let r = g_ref.get(v).unwrap();
            let scale = r.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
            let rel = max_abs_diff(g_ours.get(v).unwrap(), r) / scale;
            assert!(rel < 1e-12, "relative gradient error {rel} for {:?}", v.dims());
        }
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
    }
}
