//! A convolution (with bias and optional ReLU) and the max-pool after it as one op, on the CPU.
//!
//! Composed of two ops, the convolution's output is the largest tensor of the step (25 MB per
//! batch of 128 after AlexNet's first layer), and Candle makes six full passes over it or its
//! gradient: the convolution writes it and the pool reads it; in the backward pass the pool
//! writes a zeroed gradient and scatters into it, Candle's autograd adds that to a zeroed
//! accumulator (a clearing pass and an add, which no op can avoid), and the convolution masks
//! it by the ReLU. Here the convolution output of each group of images (see
//! [`super::groups`]) lives in a per-thread buffer that stays in cache: it is pooled where
//! it was computed (for the layers Winograd's algorithm runs, straight from the channels-last
//! copy its output transform makes, 16 channels per load, so the planar output never exists;
//! 12-20% off those layers' forward pass), and in the backward pass the group's output
//! gradient is scattered from the pooled gradient (only where the pooled value passed the
//! ReLU, the same mask) right before that group's weight, bias and input gradients use it
//! (for Winograd's layers straight into the channels-last copy its tiles are read from, so
//! the planar gradient is never made either: [`super::winograd::OutputGrad::Pooled`]).
//! The results are those of [`conv2d`] followed by [`max_pool2d`], which other devices run.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::conv2d::bias_or_zeros;
use super::conv2d::{conv2d, Conv2dParams};
use super::geometry::ConvGeometry;
use super::groups::{
    conv_group, conv_scratch_len, cpu_backward, groups_per_thread, images_per_group, spread_groups, ConvWeights,
    DyOrder, GroupOutputGrad,
};
use super::winograd::Output;
use crate::ops::cpu::scratch::{scratch, Scratch};
use crate::ops::cpu::storage::contiguous_slice;
use crate::ops::pool::max_pool2d::{max_pool2d, MaxPool2dParams, PlaneWindows, PooledGrad};

/// `max_pool2d(conv2d(x, weight, bias, conv), pool)` in one op: the same values and gradients,
/// without materialising the convolution's output on the CPU (see the module documentation).
/// On other devices it runs the two ops.
pub fn conv2d_max_pool2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    conv: Conv2dParams,
    pool: MaxPool2dParams,
) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return max_pool2d(&conv2d(x, weight, bias, conv)?, pool);
    }
    let g = conv.geometry(x.dims(), weight.dims())?;
    pool.output_size(g.oh, g.ow)?;
    let bias = bias_or_zeros(bias, &g, x)?;
    conv.precision.on_cpu(x, weight, |x, w| {
        let op = ConvMaxPool { conv, pool, argmax: Arc::new(Mutex::new(None)) };
        x.contiguous()?.apply_op3(&w.contiguous()?, &bias, op)
    })
}

struct ConvMaxPool {
    conv: Conv2dParams,
    pool: MaxPool2dParams,
    /// Flat index, inside its convolution-output plane, of each pooled value's maximum:
    /// written by the forward pass, read by the backward pass.
    argmax: Arc<Mutex<Option<Vec<u32>>>>,
}

/// The shapes of one call: the convolution's, and its output's pooled size.
struct Shapes {
    conv: ConvGeometry,
    pooled: (usize, usize),
}

impl Shapes {
    fn pooled_plane(&self) -> usize {
        self.pooled.0 * self.pooled.1
    }

    fn pooled_image(&self) -> usize {
        self.conv.cout * self.pooled_plane()
    }
}

impl ConvMaxPool {
    fn shapes(&self, x: &[usize], w: &[usize]) -> Result<Shapes> {
        let conv = self.conv.geometry(x, w)?;
        let pooled = self.pool.output_size(conv.oh, conv.ow)?;
        Ok(Shapes { conv, pooled })
    }

    fn forward<T: WithDType + Default>(&self, s: &Shapes, (x, w, bias): (&[T], &[T], &[T])) -> (Vec<T>, Vec<u32>) {
        let g = &s.conv;
        let (p, group) = (g.positions(), images_per_group(g));
        let mut out = vec![T::zero(); g.b * s.pooled_image()];
        let mut idx = vec![0u32; out.len()];
        let window = PlaneWindows::new(self.pool, (g.oh, g.ow), s.pooled);
        let w = ConvWeights::new(g, w);
        // Winograd's algorithm pools its channels-last output itself; im2col's output is
        // pooled plane by plane.
        let planar = !matches!(w, ConvWeights::Winograd(..));
        let buffers = || {
            let zeros = |n| vec![T::zero(); n];
            let (conv, phases) = if planar { (g.cout * group * p, window.phases_len()) } else { (0, 0) };
            (scratch(conv_scratch_len(g, group)), zeros(conv), zeros(phases))
        };
        let run =
            |index: usize, (out, idx): (&mut [T], &mut [u32]), buffers: &mut (Scratch<T>, Vec<T>, Vec<T>), parallel| {
                let (col, conv, phases) = buffers;
                let (first, images) = (index * group, out.len() / s.pooled_image());
                let x = &x[first * g.image()..][..images * g.image()];
                if let ConvWeights::Winograd(plan, u) = &w {
                    let pooled = Output::Pooled { pool: self.pool, pooled: s.pooled, out, idx };
                    plan.forward_group((x, u, bias), (images, self.conv.relu), (col, parallel), pooled);
                    return;
                }
                conv_group(g, (x, &w, bias), (images, self.conv.relu), col, conv, parallel);
                // Plane o of image j is columns j * p .. of row o of the group's output.
                let n = images * p;
                let outs = out.chunks_exact_mut(s.pooled_plane()).zip(idx.chunks_exact_mut(s.pooled_plane()));
                for (plane, (out, idx)) in outs.enumerate() {
                    let (j, o) = (plane / g.cout, plane % g.cout);
                    window.pool_dispatched(&conv[o * n + j * p..][..p], out, idx, phases);
                }
            };
        let chunk = group * s.pooled_image();
        let groups = g.b.div_ceil(group);
        if spread_groups(groups) {
            let pieces = out.par_chunks_mut(chunk).zip(idx.par_chunks_mut(chunk)).enumerate();
            let pieces = pieces.with_min_len(groups_per_thread(groups));
            pieces.for_each_init(buffers, |buffers, (index, chunks)| run(index, chunks, buffers, false));
        } else {
            let mut buffers = buffers();
            for (index, chunks) in out.chunks_mut(chunk).zip(idx.chunks_mut(chunk)).enumerate() {
                run(index, chunks, &mut buffers, true);
            }
        }
        (out, idx)
    }
}

impl CustomOp3 for ConvMaxPool {
    fn name(&self) -> &'static str {
        "conv2d-max-pool2d"
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
        let s = self.shapes(xl.dims(), wl.dims())?;
        let name = self.name();
        let (out, idx) = match xs.dtype() {
            DType::F32 => {
                let inputs =
                    (contiguous_slice(name, xs, xl)?, contiguous_slice(name, ws, wl)?, contiguous_slice(name, bs, bl)?);
                let (out, idx) = self.forward::<f32>(&s, inputs);
                (CpuStorage::F32(out), idx)
            }
            DType::F64 => {
                let inputs =
                    (contiguous_slice(name, xs, xl)?, contiguous_slice(name, ws, wl)?, contiguous_slice(name, bs, bl)?);
                let (out, idx) = self.forward::<f64>(&s, inputs);
                (CpuStorage::F64(out), idx)
            }
            dt => candle_core::bail!("{name}: unsupported dtype {dt:?}"),
        };
        *lock(&self.argmax)? = Some(idx);
        Ok((out, Shape::from((s.conv.b, s.conv.cout, s.pooled.0, s.pooled.1))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let s = self.shapes(x.dims(), w.dims())?;
        let guard = lock(&self.argmax)?;
        let Some(argmax) = guard.as_ref() else {
            candle_core::bail!("{}: backward without a forward pass", self.name());
        };
        let scatter = Scatter { shapes: &s, relu: self.conv.relu, argmax };
        cpu_backward(self.name(), &s.conv, (x, w, b), (grad, res), &scatter)
    }
}

/// The backward's output gradient of a group: the pooled gradient scattered to each window's
/// arg-max (see [`cpu_backward`]).
struct Scatter<'a> {
    shapes: &'a Shapes,
    relu: bool,
    argmax: &'a [u32],
}

impl GroupOutputGrad for Scatter<'_> {
    fn fill<T: WithDType>(
        &self,
        grad_and_result: (&[T], &[T]),
        (first, images): (usize, usize),
        order: DyOrder,
        dy: &mut [T],
    ) {
        let pooled = self.group(grad_and_result, (first, images));
        let cout = self.shapes.conv.cout;
        dy.fill(T::zero());
        for (j, k) in (0..images).flat_map(|j| (0..cout).map(move |k| (j, k))) {
            let (start, step) = order.plane(&self.shapes.conv, images, (j, k));
            pooled.for_each_passed(j * cout + k, |at, g| dy[start + at * step] += g);
        }
    }

    fn pooled<'a, T: WithDType>(
        &'a self,
        grad_and_result: (&'a [T], &'a [T]),
        group: (usize, usize),
    ) -> Option<PooledGrad<'a, T>> {
        Some(self.group(grad_and_result, group))
    }
}

impl Scatter<'_> {
    /// The pooled gradient of the group (first image, images).
    fn group<'a, T>(&'a self, (grad, res): (&'a [T], &'a [T]), (first, images): (usize, usize)) -> PooledGrad<'a, T> {
        let image = self.shapes.pooled_image();
        let span = first * image..(first + images) * image;
        PooledGrad {
            grad: &grad[span.clone()],
            res: &res[span.clone()],
            argmax: &self.argmax[span],
            plane: self.shapes.pooled_plane(),
            relu: self.relu,
        }
    }
}

fn lock(m: &Mutex<Option<Vec<u32>>>) -> Result<std::sync::MutexGuard<'_, Option<Vec<u32>>>> {
    m.lock().map_err(|_| candle_core::Error::Msg("conv2d-max-pool2d: arg-max lock poisoned".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::{assert_batch_equals_images_one_at_a_time, max_abs_diff, randn};
    use candle_core::Device;

    /// Values and the gradients of input, weight and bias against `conv2d` then `max_pool2d`.
    fn check_against_the_two_ops(x_dims: &[usize], w_dims: &[usize], conv: Conv2dParams, pool: MaxPool2dParams) {
        let x = randn(x_dims, 1.0, 1);
        let w = randn(w_dims, 0.5, 2);
        let b = randn(&w_dims[..1], 0.5, 3);
        let fused = conv2d_max_pool2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), conv, pool).unwrap();
        let composed =
            max_pool2d(&conv2d(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), conv).unwrap(), pool).unwrap();
        assert_eq!(fused.dims(), composed.dims());
        assert_eq!(max_abs_diff(&fused, &composed), 0.0, "values for {x_dims:?} {w_dims:?} {conv:?} {pool:?}");
        let probe = randn(fused.dims(), 1.0, 4).as_tensor().clone();
        let g_fused = (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_composed = (composed * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (name, v) in [("input", &x), ("weight", &w), ("bias", &b)] {
            let (a, r) = (g_fused.get(v.as_tensor()).unwrap(), g_composed.get(v.as_tensor()).unwrap());
            let scale = r.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap();
            assert!(scale > 0.0, "{name}: no gradient");
            let diff = max_abs_diff(a, r);
            assert!(diff <= 1e-12 * scale, "{name} gradient differs by {diff:e} for {x_dims:?} {w_dims:?} {conv:?}");
        }
    }

    #[test]
    fn equals_conv2d_then_max_pool2d() {
        let (c, m) = (Conv2dParams::square, MaxPool2dParams::square);
        // AlexNet's two pooled layers scaled down, then odd ones: no ReLU, a pool with stride
        // 1 and padding, rectangular kernels, batch 1 (the path with parallel GEMMs).
        check_against_the_two_ops(&[4, 3, 35, 35], &[5, 3, 11, 11], c(4, 5).with_relu(), m(3, 2));
        check_against_the_two_ops(&[2, 3, 68, 68], &[5, 3, 11, 11], c(4, 5).with_relu(), m(3, 2));
        check_against_the_two_ops(&[2, 3, 40, 40], &[5, 3, 11, 11], c(2, 5).with_relu(), m(3, 2)); // position-major
        check_against_the_two_ops(&[3, 4, 15, 15], &[6, 4, 5, 5], c(1, 2).with_relu(), m(3, 2));
        check_against_the_two_ops(&[2, 3, 9, 8], &[4, 3, 3, 3], c(1, 1), m(3, 2));
        let padded = MaxPool2dParams { kernel: (3, 2), stride: (1, 2), padding: (1, 1) };
        check_against_the_two_ops(&[3, 2, 9, 6], &[5, 2, 3, 2], c(2, 0).with_relu(), padded);
        check_against_the_two_ops(&[1, 3, 12, 12], &[4, 3, 3, 3], c(1, 1).with_relu(), m(2, 2));
        // 81 positions: groups of four images side by side, the last one of two.
        check_against_the_two_ops(&[18, 3, 9, 9], &[4, 3, 3, 3], c(1, 1).with_relu(), m(3, 2));
        // Winograd's channels-last pooling with padded and rectangular windows, 37 channels
        // (two blocks of 16 and a partial one).
        let padded_square = MaxPool2dParams { kernel: (3, 3), stride: (2, 2), padding: (1, 1) };
        check_against_the_two_ops(&[2, 4, 10, 10], &[37, 4, 3, 3], c(1, 1), padded_square);
        check_against_the_two_ops(&[2, 4, 9, 7], &[6, 4, 5, 5], c(1, 2).with_relu(), padded);
    }

    /// Values and weight gradient of the fused op against the two ops when every convolution
    /// output is `value`: zero weights, so each window is all ties.
    fn check_constant_output(conv: Conv2dParams, value: f64) {
        let (x, w) = (randn(&[2, 3, 15, 15], 1.0, 11), randn(&[20, 3, 5, 5], 0.0, 12));
        let b = Tensor::full(value, 20, &Device::Cpu).unwrap();
        let pool = MaxPool2dParams::square(3, 2);
        let fused = conv2d_max_pool2d(x.as_tensor(), w.as_tensor(), Some(&b), conv, pool).unwrap();
        let composed = max_pool2d(&conv2d(x.as_tensor(), w.as_tensor(), Some(&b), conv).unwrap(), pool).unwrap();
        assert!(fused.flatten_all().unwrap().to_vec1::<f64>().unwrap().iter().all(|&v| v == value));
        let probe = randn(fused.dims(), 1.0, 13).as_tensor().clone();
        let g_fused = (fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_composed = (composed * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, r) = (g_fused.get(w.as_tensor()).unwrap(), g_composed.get(w.as_tensor()).unwrap());
        assert!(max_abs_diff(a, r) <= 1e-12, "weight gradient with every output {value}");
    }

    #[test]
    fn ties_and_negative_infinity_take_the_first_place_of_the_window() {
        // The weight gradient sums the input patches at the arg-maxes, so it tells places
        // apart; the two ops' rules are PyTorch's (see `max_pool2d`).
        check_constant_output(Conv2dParams::square(1, 2), 0.5);
        check_constant_output(Conv2dParams::square(1, 2), f64::NEG_INFINITY);
    }

    #[test]
    fn images_spread_over_threads_equal_images_one_at_a_time() {
        let pool = MaxPool2dParams::square(3, 2);
        let op = |x: &Tensor, w: &Tensor, b: &Tensor, conv| conv2d_max_pool2d(x, w, Some(b), conv, pool).unwrap();
        assert_batch_equals_images_one_at_a_time(op);
    }

    #[test]
    fn no_gradient_for_an_input_outside_the_graph() {
        let x = randn(&[2, 3, 8, 8], 1.0, 9).as_tensor().detach();
        let w = randn(&[4, 3, 3, 3], 1.0, 10);
        let y = conv2d_max_pool2d(&x, w.as_tensor(), None, Conv2dParams::square(1, 1), MaxPool2dParams::square(2, 2));
        let grads = y.unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(w.as_tensor()).is_some());
    }

    #[test]
    fn bad_shapes_are_clear_errors() {
        let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((4, 3, 3, 3), DType::F32, &Device::Cpu).unwrap();
        let (conv, pool) = (Conv2dParams::square(1, 0), MaxPool2dParams::square(7, 1));
        let err = conv2d_max_pool2d(&x, &w, None, conv, pool).unwrap_err().to_string();
        assert!(err.contains("input 6x6 is smaller than the window 7x7"), "{err}");
        let b = Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap();
        let err = conv2d_max_pool2d(&x, &w, Some(&b), conv, MaxPool2dParams::square(2, 2)).unwrap_err().to_string();
        assert!(err.contains("bias of shape [5] for 4 output channels"), "{err}");
    }

    #[test]
    fn an_empty_batch_gives_an_empty_output_and_gradients() {
        let x = randn(&[0, 3, 8, 8], 1.0, 11);
        let w = randn(&[4, 3, 3, 3], 1.0, 12);
        let (conv, pool) = (Conv2dParams::square(1, 1).with_relu(), MaxPool2dParams::square(2, 2));
        let y = conv2d_max_pool2d(x.as_tensor(), w.as_tensor(), None, conv, pool).unwrap();
        assert_eq!(y.dims(), [0, 4, 4, 4]);
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert_eq!(grads.get(x.as_tensor()).unwrap().dims(), [0, 3, 8, 8]);
        assert_eq!(max_abs_diff(grads.get(w.as_tensor()).unwrap(), &w.zeros_like().unwrap()), 0.0);
    }
}
