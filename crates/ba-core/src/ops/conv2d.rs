//! 2-D convolution lowered to im2col + GEMM, forward and backward.
//!
//! Candle's CPU backward for `conv2d` runs a direct-loop `conv_transpose2d` for the input
//! gradient, also for inputs that need none (the image entering the first layer). This op
//! computes the input gradient as `W^T * dY` followed by col2im, the weight gradient as one
//! GEMM over the whole batch, and skips any gradient whose tensor does not take part in
//! backpropagation. The bias is not part of the op: add it with `broadcast_add`.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor, WithDType};

use super::contiguous_slice;
use super::im2col::{channels_last, col2im, im2col, matmul, ConvGeometry, MatRef};

/// Largest im2col matrix built at once, in elements; larger batches are processed in chunks.
const COL_BUDGET: usize = 1 << 24;

/// Stride and zero padding of a convolution, in (height, width) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dParams {
    /// Step between kernel placements.
    pub stride: (usize, usize),
    /// Zero padding added on each side.
    pub padding: (usize, usize),
}

impl Conv2dParams {
    /// The same stride and padding along both axes.
    pub fn square(stride: usize, padding: usize) -> Self {
        Self {
            stride: (stride, stride),
            padding: (padding, padding),
        }
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
        Ok(ConvGeometry {
            b,
            c,
            h,
            w: wd,
            cout,
            kh,
            kw,
            stride: self.stride,
            padding: self.padding,
            oh,
            ow,
        })
    }
}

/// Convolves `x` (b, c, h, w) with `weight` (cout, c, kh, kw); differentiable in both.
pub fn conv2d(x: &Tensor, weight: &Tensor, params: Conv2dParams) -> Result<Tensor> {
    params.geometry(x.dims(), weight.dims())?;
    x.contiguous()?.apply_op2(&weight.contiguous()?, Conv2dForward(params))
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
    fn run<T: WithDType + Default>(g: &ConvGeometry, x: &[T], w: &[T]) -> Vec<T> {
        let (p, patch, chunk) = (g.positions(), g.patch(), g.images_per_chunk(COL_BUDGET));
        let mut out = vec![T::zero(); g.b * g.cout * p];
        let mut col = vec![T::zero(); chunk * p * patch];
        let mut rows = vec![T::zero(); chunk * p * g.cout];
        for first in (0..g.b).step_by(chunk) {
            let n = chunk.min(g.b - first);
            let g_chunk = ConvGeometry { b: n, ..*g };
            im2col(
                &g_chunk,
                &x[first * g.c * g.h * g.w..][..n * g.c * g.h * g.w],
                &mut col[..n * p * patch],
            );
            // rows (n*p, cout) = col (n*p, patch) * W^T (patch, cout)
            let lhs = MatRef {
                data: &col[..n * p * patch],
                row_stride: patch,
                col_stride: 1,
            };
            let rhs = MatRef {
                data: w,
                row_stride: 1,
                col_stride: patch,
            };
            matmul((n * p, g.cout, patch), &mut rows, false, lhs, rhs);
            let out = &mut out[first * g.cout * p..][..n * g.cout * p];
            from_channels_last(&rows[..n * p * g.cout], g.cout, p, out);
        }
        out
    }
}

/// Rewrites `rows` (images * positions, channels) as `out` (images, channels, positions).
fn from_channels_last<T: Copy + Send + Sync>(rows: &[T], channels: usize, positions: usize, out: &mut [T]) {
    use rayon::prelude::*;
    out.par_chunks_mut(positions).enumerate().for_each(|(plane, dst)| {
        let (image, ch) = (plane / channels, plane % channels);
        let src = &rows[image * positions * channels..];
        for (pos, v) in dst.iter_mut().enumerate() {
            *v = src[pos * channels + ch];
        }
    });
}

impl CustomOp2 for Conv2dForward {
    fn name(&self) -> &'static str {
        "conv2d-im2col"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0.geometry(xl.dims(), wl.dims())?;
        let out = dispatch!(self.name(), xs, |T| Self::run::<T>(
            &g,
            contiguous_slice(self.name(), xs, xl)?,
            contiguous_slice(self.name(), ws, wl)?
        ));
        Ok((out, Shape::from((g.b, g.cout, g.oh, g.ow))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.0.geometry(x.dims(), w.dims())?;
        let grad = grad.contiguous()?;
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(w, &Conv2dInputGrad(g))?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(grad.apply_op2_no_bwd(x, &Conv2dWeightGrad(g))?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

/// dX = col2im(dY^T * W), applied to (grad, weight).
struct Conv2dInputGrad(ConvGeometry);

impl Conv2dInputGrad {
    fn run<T: WithDType + Default>(g: &ConvGeometry, grad: &[T], w: &[T]) -> Vec<T> {
        let (p, patch, chunk) = (g.positions(), g.patch(), g.images_per_chunk(COL_BUDGET));
        let image = g.c * g.h * g.w;
        let mut dx = vec![T::zero(); g.b * image];
        let mut col = vec![T::zero(); chunk * p * patch];
        for first in (0..g.b).step_by(chunk) {
            let n = chunk.min(g.b - first);
            let rows = channels_last(&grad[first * g.cout * p..][..n * g.cout * p], g.cout, p);
            // col (n*p, patch) = rows (n*p, cout) * W (cout, patch)
            let lhs = MatRef {
                data: &rows,
                row_stride: g.cout,
                col_stride: 1,
            };
            let rhs = MatRef {
                data: w,
                row_stride: patch,
                col_stride: 1,
            };
            matmul((n * p, patch, g.cout), &mut col, false, lhs, rhs);
            col2im(
                &ConvGeometry { b: n, ..*g },
                &col[..n * p * patch],
                &mut dx[first * image..][..n * image],
            );
        }
        dx
    }
}

impl CustomOp2 for Conv2dInputGrad {
    fn name(&self) -> &'static str {
        "conv2d-im2col-input-grad"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, ws: &CpuStorage, wl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = dispatch!(self.name(), gs, |T| Self::run::<T>(
            g,
            contiguous_slice(self.name(), gs, gl)?,
            contiguous_slice(self.name(), ws, wl)?
        ));
        Ok((out, Shape::from((g.b, g.c, g.h, g.w))))
    }
}

/// dW = dY * im2col(X) summed over the batch, applied to (grad, input).
struct Conv2dWeightGrad(ConvGeometry);

impl Conv2dWeightGrad {
    fn run<T: WithDType + Default>(g: &ConvGeometry, grad: &[T], x: &[T]) -> Vec<T> {
        let (p, patch, chunk) = (g.positions(), g.patch(), g.images_per_chunk(COL_BUDGET));
        let image = g.c * g.h * g.w;
        let mut dw = vec![T::zero(); g.cout * patch];
        let mut col = vec![T::zero(); chunk * p * patch];
        for (i, first) in (0..g.b).step_by(chunk).enumerate() {
            let n = chunk.min(g.b - first);
            im2col(
                &ConvGeometry { b: n, ..*g },
                &x[first * image..][..n * image],
                &mut col[..n * p * patch],
            );
            let rows = channels_last(&grad[first * g.cout * p..][..n * g.cout * p], g.cout, p);
            // dW (cout, patch) += rows^T (cout, n*p) * col (n*p, patch)
            let lhs = MatRef {
                data: &rows,
                row_stride: 1,
                col_stride: g.cout,
            };
            let rhs = MatRef {
                data: &col[..n * p * patch],
                row_stride: patch,
                col_stride: 1,
            };
            matmul((g.cout, patch, n * p), &mut dw, i > 0, lhs, rhs);
        }
        dw
    }
}

impl CustomOp2 for Conv2dWeightGrad {
    fn name(&self) -> &'static str {
        "conv2d-im2col-weight-grad"
    }

    fn cpu_fwd(&self, gs: &CpuStorage, gl: &Layout, xs: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let out = dispatch!(self.name(), gs, |T| Self::run::<T>(
            g,
            contiguous_slice(self.name(), gs, gl)?,
            contiguous_slice(self.name(), xs, xl)?
        ));
        Ok((out, Shape::from((g.cout, g.c, g.kh, g.kw))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

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

    /// Forward and both gradients against Candle's own conv2d on the same f64 data.
    fn check_against_candle(
        x_dims: (usize, usize, usize, usize),
        w_dims: (usize, usize, usize, usize),
        stride: usize,
        padding: usize,
    ) {
        let dev = Device::Cpu;
        let x = Var::randn(0f64, 1., x_dims, &dev).unwrap();
        let w = Var::randn(0f64, 1., w_dims, &dev).unwrap();
        let ours = conv2d(x.as_tensor(), w.as_tensor(), Conv2dParams::square(stride, padding)).unwrap();
        let reference = x.as_tensor().conv2d(w.as_tensor(), padding, stride, 1, 1).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        assert!(
            max_abs_diff(&ours, &reference) < 1e-10,
            "forward differs for {x_dims:?} {w_dims:?}"
        );
        let probe = Tensor::randn(0f64, 1., ours.dims(), &dev).unwrap();
        let g_ours = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_ref = (reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("input", &x), ("weight", &w)] {
            let a = g_ours.get(v.as_tensor()).unwrap();
            let b = g_ref.get(v.as_tensor()).unwrap();
            assert!(
                max_abs_diff(a, b) < 1e-9,
                "{name} gradient differs for {x_dims:?} {w_dims:?} s{stride} p{padding}"
            );
        }
    }

    #[test]
    fn matches_candle_on_alexnet_shapes_and_odd_ones() {
        check_against_candle((2, 3, 35, 35), (4, 3, 11, 11), 4, 5); // features.0, scaled down
        check_against_candle((2, 5, 15, 15), (6, 5, 5, 5), 1, 2); // features.3
        check_against_candle((1, 4, 7, 7), (3, 4, 3, 3), 1, 1); // conv1..conv3, batch 1
        check_against_candle((3, 2, 9, 6), (5, 2, 3, 2), 2, 0); // odd sizes, rectangular kernel
        check_against_candle((2, 3, 4, 4), (2, 3, 1, 1), 1, 0); // 1x1
    }

    #[test]
    fn chunked_batches_equal_unchunked() {
        // A batch whose im2col exceeds the budget runs in several chunks.
        let dev = Device::Cpu;
        let (b, c, hw) = (30, 16, 64);
        let g = Conv2dParams::square(1, 1)
            .geometry(&[b, c, hw, hw], &[8, c, 3, 3])
            .unwrap();
        assert!(g.images_per_chunk(COL_BUDGET) < b, "test must exercise chunking");
        let x = Var::randn(0f32, 1., (b, c, hw, hw), &dev).unwrap();
        let w = Var::randn(0f32, 0.1, (8, c, 3, 3), &dev).unwrap();
        let ours = conv2d(x.as_tensor(), w.as_tensor(), Conv2dParams::square(1, 1)).unwrap();
        let reference = x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap();
        assert!(max_abs_diff(&ours, &reference) < 1e-4);
        let gw_ours = ours.sum_all().unwrap().backward().unwrap();
        let gw_ref = reference.sum_all().unwrap().backward().unwrap();
        let rel = max_abs_diff(gw_ours.get(&w).unwrap(), gw_ref.get(&w).unwrap())
            / gw_ref
                .get(&w)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
        assert!(rel < 1e-5, "relative weight-gradient error {rel}");
    }

    #[test]
    fn no_gradient_for_an_input_outside_the_graph() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 3, 8, 8), &dev).unwrap();
        let w = Var::randn(0f32, 1., (4, 3, 3, 3), &dev).unwrap();
        let y = conv2d(&x, w.as_tensor(), Conv2dParams::square(1, 1)).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(w.as_tensor()).is_some());
    }

    #[test]
    fn channel_mismatch_is_a_clear_error() {
        let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((4, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let err = conv2d(&x, &w, Conv2dParams::square(1, 1)).unwrap_err().to_string();
        assert!(err.contains("input has 3 channels but the weight expects 2"), "{err}");
    }
}
