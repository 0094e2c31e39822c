//! 2-D max pooling that remembers where each maximum came from.
//!
//! Candle's own `max_pool2d` has no backward pass when the kernel differs from the stride
//! (huggingface/candle#1593), and AlexNet pools with kernel 3, stride 2. This op records the
//! arg-max of every window in the forward pass and its backward sends each output gradient to
//! that position, summing where windows overlap: PyTorch's rule, including its tie-break (the
//! first maximum in row-major window order wins) and its NaN rule (a NaN is always taken).

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use crate::ops::conv::geometry::split_phases;
use crate::ops::cpu::storage::contiguous_slice;
#[cfg(feature = "cuda")]
use crate::ops::cuda;
#[cfg(feature = "cuda")]
use candle_core::cuda_backend::cudarc::driver::CudaSlice;
#[cfg(feature = "cuda")]
use candle_core::CudaStorage;

/// Window geometry of a 2-D max pool, in (height, width) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2dParams {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Implicit negative-infinity padding on each side.
    pub padding: (usize, usize),
}

impl MaxPool2dParams {
    /// A square window of side `kernel` moved by `stride`, without padding.
    pub fn square(kernel: usize, stride: usize) -> Self {
        Self { kernel: (kernel, kernel), stride: (stride, stride), padding: (0, 0) }
    }

    /// Output (height, width) for an input of `(h, w)`, or an error if the window does not fit.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (kh, kw) = self.kernel;
        let (sh, sw) = self.stride;
        let (ph, pw) = self.padding;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            candle_core::bail!("max_pool2d: kernel and stride must be positive, got {self:?}");
        }
        if ph * 2 > kh || pw * 2 > kw {
            candle_core::bail!("max_pool2d: padding must be at most half the kernel, got {self:?}");
        }
        if h + 2 * ph < kh || w + 2 * pw < kw {
            candle_core::bail!("max_pool2d: input {h}x{w} is smaller than the window {kh}x{kw}");
        }
        Ok(((h + 2 * ph - kh) / sh + 1, (w + 2 * pw - kw) / sw + 1))
    }
}

/// Max-pools a (batch, channels, height, width) tensor; differentiable.
pub fn max_pool2d(x: &Tensor, params: MaxPool2dParams) -> Result<Tensor> {
    let x = x.contiguous()?;
    x.apply_op1(MaxPool2d { params, argmax: Arc::new(Mutex::new(None)) })
}

/// Flat index, inside its input plane, of each output element's maximum, on the device the
/// forward pass ran on.
enum Indices {
    Host(Vec<u32>),
    #[cfg(feature = "cuda")]
    Cuda(CudaSlice<u32>),
}

/// The arg-max the forward pass records for its backward pass.
type ArgMax = Arc<Mutex<Option<Indices>>>;

struct MaxPool2d {
    params: MaxPool2dParams,
    /// Filled by the forward pass, read by the backward pass.
    argmax: ArgMax,
}

impl MaxPool2d {
    fn forward<T: WithDType>(&self, x: &[T], dims: &[usize]) -> Result<(Vec<T>, Vec<u32>, Shape)> {
        let [b, c, h, w] = dims4(dims)?;
        if h * w > u32::MAX as usize {
            candle_core::bail!("max_pool2d: a plane of {h}x{w} is too large");
        }
        let (oh, ow) = self.params.output_size(h, w)?;
        let mut out = vec![T::zero(); b * c * oh * ow];
        let mut idx = vec![0u32; out.len()];
        let window = PlaneWindows::new(self.params, (h, w), (oh, ow));
        out.par_chunks_mut(oh * ow).zip(idx.par_chunks_mut(oh * ow)).zip(x.par_chunks(h * w)).for_each_init(
            || vec![T::zero(); window.phases_len()],
            |phases, ((out, idx), plane)| window.pool_dispatched(plane, out, idx, phases),
        );
        Ok((out, idx, Shape::from((b, c, oh, ow))))
    }
}

/// Output columns pooled together by [`PlaneWindows::pool`]: one AVX register of f32 (with 16,
/// two registers, the compiler assembles the comparison masks lane by lane, at half the speed).
const LANES: usize = 8;

/// The windows of one (h, w) input plane pooled to (oh, ow).
pub(crate) struct PlaneWindows {
    params: MaxPool2dParams,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    /// Length of one phase of a padded input row (see [`PlaneWindows::split_rows`]).
    phase_len: usize,
}

impl PlaneWindows {
    pub(crate) fn new(params: MaxPool2dParams, (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Self {
        let (kw, sw) = (params.kernel.1, params.stride.1);
        // Room for a whole block of lanes read at the last block's start plus the farthest tap.
        let phase_len = ow.div_ceil(LANES) * LANES + (kw - 1) / sw;
        Self { params, h, w, oh, ow, phase_len }
    }

    /// Values of the phase buffer [`PlaneWindows::pool`] needs.
    pub(crate) fn phases_len(&self) -> usize {
        self.h * self.params.stride.1 * self.phase_len
    }

    /// [`PlaneWindows::pool`] compiled for the CPU features found at run time.
    pub(crate) fn pool_dispatched<T: WithDType>(&self, plane: &[T], out: &mut [T], idx: &mut [u32], phases: &mut [T]) {
        pulp::Arch::new().dispatch(PoolPlane { window: self, plane, out, idx, phases })
    }

    /// Splits every row of `plane`, padded with negative infinity, into its `sw` phases:
    /// entry t of phase r of row y is the padded row's column `t * sw + r`. Window column kx
    /// of output column ox is then entry `ox + kx / sw` of phase `kx % sw`: the taps of
    /// consecutive outputs are consecutive values.
    #[inline(always)]
    fn split_rows<T: WithDType>(&self, plane: &[T], phases: &mut [T]) {
        let (sw, pw) = (self.params.stride.1, self.params.padding.1);
        let neg_inf = T::from_f64(f64::NEG_INFINITY);
        for (row, phases) in plane.chunks_exact(self.w).zip(phases.chunks_exact_mut(sw * self.phase_len)) {
            split_phases(row, (sw, pw), neg_inf, phases);
        }
    }

    /// Max-pools `plane` into `out` and records each maximum's flat index in `idx`;
    /// `phases` is scratch space of [`PlaneWindows::phases_len`] values.
    ///
    /// [`LANES`] output columns at a time, kept in fixed-size blocks: their windows' taps are
    /// visited in row-major window order, each tap a contiguous run of the row's phases, then
    /// compared and selected for all lanes at once. The compiler turns that into vector loads,
    /// compares and blends; a per-window loop, or any loop with a remainder, gets branches on
    /// which value is larger, and they mispredict on real activations. Strict `>` keeps the
    /// first maximum on ties.
    #[inline(always)]
    fn pool<T: WithDType>(&self, plane: &[T], out: &mut [T], idx: &mut [u32], phases: &mut [T]) {
        let Self { params, h, w, oh, ow, phase_len } = *self;
        let ((kh, kw), (sh, sw), (ph, pw)) = (params.kernel, params.stride, params.padding);
        self.split_rows(plane, phases);
        for ((oy, out), idx) in (0..oh).zip(out.chunks_exact_mut(ow)).zip(idx.chunks_exact_mut(ow)) {
            let (y0, y1) = ((oy * sh).saturating_sub(ph), (oy * sh + kh - ph).min(h));
            for (block, (out, idx)) in out.chunks_mut(LANES).zip(idx.chunks_mut(LANES)).enumerate() {
                let (first, n) = (block * LANES, out.len());
                let mut best = [T::from_f64(f64::NEG_INFINITY); LANES];
                let mut at = [0u32; LANES];
                for (j, a) in at[..n].iter_mut().enumerate() {
                    *a = (y0 * w + ((first + j) * sw).saturating_sub(pw)) as u32;
                }
                for y in y0..y1 {
                    for kx in 0..kw {
                        let start = (y * sw + kx % sw) * phase_len + first + kx / sw;
                        let taps = &phases[start..start + LANES];
                        // The flat index of lane j's tap; wraps (and is never taken) in the padding.
                        let base = (y * w + first * sw + kx) as u32;
                        for (j, ((b, a), &v)) in best.iter_mut().zip(&mut at).zip(taps).enumerate() {
                            // `v != v` is true only for NaN: PyTorch always takes a NaN. `|`,
                            // not `||`: both sides computed, no branch.
                            #[allow(clippy::eq_op)]
                            let take = (v > *b) | (v != v);
                            *b = if take { v } else { *b };
                            let tap_index = base.wrapping_add((j * sw) as u32).wrapping_sub(pw as u32);
                            *a = if take { tap_index } else { *a };
                        }
                    }
                }
                out.copy_from_slice(&best[..n]);
                idx.copy_from_slice(&at[..n]);
            }
        }
    }
}

/// [`PlaneWindows::pool`] of one plane, compiled for the CPU features found at run time.
struct PoolPlane<'a, T> {
    window: &'a PlaneWindows,
    plane: &'a [T],
    out: &'a mut [T],
    idx: &'a mut [u32],
    phases: &'a mut [T],
}

impl<T: WithDType> pulp::WithSimd for PoolPlane<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.window.pool(self.plane, self.out, self.idx, self.phases);
    }
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "max-pool2d-argmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = layout.dims();
        let (out, idx, shape) = match storage.dtype() {
            DType::F32 => {
                let (o, i, s) = self.forward::<f32>(contiguous_slice(self.name(), storage, layout)?, dims)?;
                (CpuStorage::F32(o), i, s)
            }
            DType::F64 => {
                let (o, i, s) = self.forward::<f64>(contiguous_slice(self.name(), storage, layout)?, dims)?;
                (CpuStorage::F64(o), i, s)
            }
            dt => candle_core::bail!("max_pool2d: unsupported dtype {dt:?}"),
        };
        *lock(&self.argmax)? = Some(Indices::Host(idx));
        Ok((out, shape))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        let dims = dims4(layout.dims())?;
        let (oh, ow) = self.params.output_size(dims[2], dims[3])?;
        let dev = storage.device();
        let x = cuda::launch::f32_view(self.name(), storage, layout)?;
        let (out, idx) = cuda::max_pool2d::forward(dev, x, &self.params, dims, (oh, ow))?;
        *lock(&self.argmax)? = Some(Indices::Cuda(idx));
        Ok((CudaStorage::wrap_cuda_slice(out, dev.clone()), Shape::from((dims[0], dims[1], oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let backward =
            MaxPool2dBackward { params: self.params, input_dims: dims4(arg.dims())?, argmax: self.argmax.clone() };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&backward)?))
    }
}

/// The gradient of max-pooled planes whose values came through a ReLU (or not, see `relu`),
/// as the fused ops hand it to their backward pass ([`crate::ops::conv2d_max_pool2d`],
/// [`crate::ops::gate_relu_max_pool2d`]): each pooled value's gradient goes to its window's arg-max
/// where the pooled value passed the ReLU (the pooled value is the ReLU's output there, so this
/// is the ReLU's mask).
#[derive(Clone, Copy)]
pub(crate) struct PooledGrad<'a, T> {
    /// The op's output gradient, one pooled plane after another.
    pub grad: &'a [T],
    /// The op's output, shaped like `grad`.
    pub res: &'a [T],
    /// Each pooled value's arg-max, a flat index in its input plane.
    pub argmax: &'a [u32],
    /// Values per pooled plane.
    pub plane: usize,
    /// Whether a ReLU came before the pool.
    pub relu: bool,
}

impl<T: WithDType> PooledGrad<'_, T> {
    /// Calls `send(at, gradient)` for each pooled gradient of plane `index` that passed the
    /// ReLU, `at` its arg-max in the input plane.
    #[inline(always)]
    pub(crate) fn for_each_passed(&self, index: usize, mut send: impl FnMut(usize, T)) {
        let span = index * self.plane..(index + 1) * self.plane;
        let values = self.grad[span.clone()].iter().zip(&self.res[span.clone()]).zip(&self.argmax[span]);
        for ((&g, &r), &at) in values {
            if !self.relu || r > T::zero() {
                send(at as usize, g);
            }
        }
    }

    /// Adds the sum of each of the `channels` channels' gradients that pass the ReLU, plane by
    /// plane, to `sums`: the group's share of the bias gradient.
    pub(crate) fn add_channel_sums(&self, channels: usize, sums: &mut [T]) {
        let planes = self.grad.chunks_exact(self.plane).zip(self.res.chunks_exact(self.plane));
        for (index, (grad, res)) in planes.enumerate() {
            let passed = grad.iter().zip(res).filter(|&(_, &r)| !self.relu || r > T::zero());
            sums[index % channels] += passed.fold(T::zero(), |a, (&g, _)| a + g);
        }
    }
}

/// Scatters output gradients back to the recorded arg-max positions.
struct MaxPool2dBackward {
    params: MaxPool2dParams,
    input_dims: [usize; 4],
    argmax: ArgMax,
}

impl MaxPool2dBackward {
    fn backward<T: WithDType>(&self, grad: &[T], argmax: &[u32]) -> Result<Vec<T>> {
        let [b, c, h, w] = self.input_dims;
        if grad.len() != argmax.len() || !grad.len().is_multiple_of(b * c) {
            candle_core::bail!(
                "max_pool2d backward: gradient of {} elements for {} recorded maxima",
                grad.len(),
                argmax.len()
            );
        }
        let plane_out = grad.len() / (b * c);
        let mut dx = vec![T::zero(); b * c * h * w];
        dx.par_chunks_mut(h * w).zip(grad.par_chunks(plane_out)).zip(argmax.par_chunks(plane_out)).for_each(
            |((dx, g), idx)| {
                for (&g, &i) in g.iter().zip(idx) {
                    dx[i as usize] += g;
                }
            },
        );
        Ok(dx)
    }
}

impl CustomOp1 for MaxPool2dBackward {
    fn name(&self) -> &'static str {
        "max-pool2d-argmax-backward"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let guard = lock(&self.argmax)?;
        let Some(Indices::Host(argmax)) = guard.as_ref() else {
            candle_core::bail!("max_pool2d backward: the forward pass recorded no arg-max on the CPU");
        };
        self.check_gradient(layout.dims())?;
        let out = match storage.dtype() {
            DType::F32 => {
                CpuStorage::F32(self.backward::<f32>(contiguous_slice(self.name(), storage, layout)?, argmax)?)
            }
            DType::F64 => {
                CpuStorage::F64(self.backward::<f64>(contiguous_slice(self.name(), storage, layout)?, argmax)?)
            }
            dt => candle_core::bail!("max_pool2d backward: unsupported dtype {dt:?}"),
        };
        Ok((out, Shape::from(self.input_dims.to_vec())))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, storage: &CudaStorage, layout: &Layout) -> Result<(CudaStorage, Shape)> {
        let guard = lock(&self.argmax)?;
        let Some(Indices::Cuda(argmax)) = guard.as_ref() else {
            candle_core::bail!("max_pool2d backward: the forward pass recorded no arg-max on CUDA");
        };
        let output = self.check_gradient(layout.dims())?;
        let dev = storage.device();
        let grad = cuda::launch::f32_view(self.name(), storage, layout)?;
        let dx = cuda::max_pool2d::backward(dev, grad, argmax, &self.params, self.input_dims, output)?;
        Ok((CudaStorage::wrap_cuda_slice(dx, dev.clone()), Shape::from(self.input_dims.to_vec())))
    }
}

impl MaxPool2dBackward {
    /// The forward output's (height, width), or an error if the gradient has another shape.
    fn check_gradient(&self, dims: &[usize]) -> Result<(usize, usize)> {
        let [b, c, h, w] = self.input_dims;
        let (oh, ow) = self.params.output_size(h, w)?;
        if dims != [b, c, oh, ow] {
            candle_core::bail!("max_pool2d backward: gradient {dims:?} for an output of {:?}", [b, c, oh, ow]);
        }
        Ok((oh, ow))
    }
}

fn lock(m: &Mutex<Option<Indices>>) -> Result<std::sync::MutexGuard<'_, Option<Indices>>> {
    m.lock().map_err(|_| candle_core::Error::Msg("max_pool2d: arg-max lock poisoned".into()))
}

fn dims4(dims: &[usize]) -> Result<[usize; 4]> {
    match dims {
        &[b, c, h, w] => Ok([b, c, h, w]),
        _ => candle_core::bail!("max_pool2d: expected a (batch, channels, height, width) tensor, got shape {dims:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn pool(x: &Tensor, k: usize, s: usize) -> Tensor {
        max_pool2d(x, MaxPool2dParams::square(k, s)).unwrap()
    }

    #[test]
    fn forward_matches_candle_when_kernel_equals_stride() {
        let x = crate::rng::randn(1, (2, 3, 8, 6), &Device::Cpu).unwrap();
        let ours = pool(&x, 2, 2);
        let theirs = x.max_pool2d(2).unwrap();
        let diff = (ours - theirs).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
    }

    /// Maxima and their flat indices by the definition: each window scanned in row-major
    /// order, the first maximum kept, any NaN taken.
    fn pool_by_definition(plane: &[f32], (h, w): (usize, usize), p: MaxPool2dParams) -> (Vec<f32>, Vec<u32>) {
        let (oh, ow) = p.output_size(h, w).unwrap();
        let (mut vals, mut idx) = (vec![], vec![]);
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut best, mut at) = (f32::NEG_INFINITY, None);
                for ky in 0..p.kernel.0 {
                    for kx in 0..p.kernel.1 {
                        let iy = (oy * p.stride.0 + ky).checked_sub(p.padding.0).filter(|&y| y < h);
                        let ix = (ox * p.stride.1 + kx).checked_sub(p.padding.1).filter(|&x| x < w);
                        if let (Some(iy), Some(ix)) = (iy, ix) {
                            let v = plane[iy * w + ix];
                            if v > best || v.is_nan() || at.is_none() && v == best {
                                (best, at) = (v, Some(iy * w + ix));
                            }
                        }
                    }
                }
                vals.push(best);
                idx.push(at.unwrap_or(0) as u32);
            }
        }
        (vals, idx)
    }

    #[test]
    fn forward_matches_the_definition_on_random_shapes() {
        // Rows wider than one block of lanes, padding, strides 1-3, rectangular windows, ties
        // (values rounded to a few levels), NaNs and negative infinities.
        let shapes = [
            (32, 32, (3, 3), (2, 2), (0, 0)),
            (15, 15, (3, 3), (2, 2), (1, 1)),
            (7, 19, (2, 3), (1, 3), (1, 1)),
            (9, 40, (3, 5), (3, 1), (1, 2)),
            // Rows narrower than one block of lanes.
            (7, 7, (3, 3), (2, 2), (0, 0)),
            (6, 5, (3, 2), (1, 2), (1, 1)),
        ];
        let mut rng = crate::rng::rng_for(3, "max-pool");
        for (h, w, kernel, stride, padding) in shapes {
            let p = MaxPool2dParams { kernel, stride, padding };
            let plane: Vec<f32> = (0..h * w)
                .map(|_| match rand::Rng::random_range(&mut rng, 0..40) {
                    0 => f32::NAN,
                    1 => f32::NEG_INFINITY,
                    v => (v % 5) as f32,
                })
                .collect();
            let x = Tensor::from_vec(plane.clone(), (1, 1, h, w), &Device::Cpu).unwrap();
            let op = MaxPool2d { params: p, argmax: Arc::new(Mutex::new(None)) };
            let (vals, idx, _) = op.forward::<f32>(&plane, x.dims()).unwrap();
            let (want_vals, want_idx) = pool_by_definition(&plane, (h, w), p);
            assert_eq!(idx, want_idx, "{p:?} on {h}x{w}");
            let same = |a: &f32, b: &f32| a == b || a.is_nan() && b.is_nan();
            assert!(vals.iter().zip(&want_vals).all(|(a, b)| same(a, b)), "{p:?} on {h}x{w}");
        }
    }

    #[test]
    fn overlapping_windows_forward_by_hand() {
        // 1x1x3x5 input, kernel 3 stride 2 -> 1x2 output.
        let x = Tensor::new(&[[[[1f32, 2., 9., 0., 0.], [0., 5., 0., 3., 8.], [4., 0., 0., 7., 1.]]]], &Device::Cpu)
            .unwrap();
        let y = pool(&x, 3, 2);
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), vec![9., 9.]);
    }

    #[test]
    fn backward_sums_overlaps_and_breaks_ties_on_first_maximum() {
        // The 9 at column 2 is shared by both windows: it gets both gradients.
        // In the second row every value is 5: the first one (column 0) takes the gradient.
        let x = Var::new(
            &[[[
                [1f64, 2., 9., 0., 0.],
                [0., 0., 0., 0., 0.],
                [0., 0., 0., 0., 0.],
                [5., 5., 5., 5., 5.],
                [5., 5., 5., 5., 5.],
            ]]],
            &Device::Cpu,
        )
        .unwrap();
        let y = pool(x.as_tensor(), 3, 2);
        assert_eq!(y.dims(), &[1, 1, 2, 2]);
        let w = Tensor::new(&[[[[1f64, 10.], [100., 1000.]]]], &Device::Cpu).unwrap();
        let grads = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let mut expected = vec![0f64; 25];
        expected[2] = 11.; // both top windows pick the 9
        expected[3 * 5] = 100.; // bottom-left window (rows 2..5, cols 0..3): first 5 at (3, 0)
        expected[3 * 5 + 2] = 1000.; // bottom-right window (cols 2..5): first 5 at (3, 2)
        assert_eq!(g, expected);
    }

    #[test]
    fn nan_is_propagated_like_pytorch() {
        let x = Tensor::new(&[[[[1f32, f32::NAN], [3., 2.]]]], &Device::Cpu).unwrap();
        let y = pool(&x, 2, 2).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(y[0].is_nan());
    }

    #[test]
    fn padding_pads_with_negative_infinity() {
        let x = Tensor::new(&[[[[-1f32, -2.], [-3., -4.]]]], &Device::Cpu).unwrap();
        let p = MaxPool2dParams { kernel: (3, 3), stride: (2, 2), padding: (1, 1) };
        let y = max_pool2d(&x, p).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y, vec![-1.]);
    }

    #[test]
    fn backward_matches_finite_differences() {
        // Distinct values keep the arg-max stable under a small perturbation.
        let (b, c, h, w) = (2, 3, 9, 7);
        let n = b * c * h * w;
        let vals: Vec<f64> = (0..n).map(|i| ((i * 7919) % n) as f64 * 0.01).collect();
        let x = Var::from_vec(vals.clone(), (b, c, h, w), &Device::Cpu).unwrap();
        let wts = crate::rng::randn(2, (b, c, 4, 3), &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
        let loss = |t: &Tensor| (pool(t, 3, 2) * &wts).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        let grads = (pool(x.as_tensor(), 3, 2) * &wts).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let eps = 1e-4;
        for i in (0..n).step_by(5) {
            let mut plus = vals.clone();
            plus[i] += eps;
            let mut minus = vals.clone();
            minus[i] -= eps;
            let fp = loss(&Tensor::from_vec(plus, (b, c, h, w), &Device::Cpu).unwrap());
            let fm = loss(&Tensor::from_vec(minus, (b, c, h, w), &Device::Cpu).unwrap());
            let numeric = (fp - fm) / (2. * eps);
            assert!((numeric - g[i]).abs() < 1e-6, "element {i}: numeric {numeric}, analytic {}", g[i]);
        }
    }

    #[test]
    fn rejects_bad_shapes() {
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let err = max_pool2d(&x, MaxPool2dParams::square(3, 2)).unwrap_err().to_string();
        assert!(err.contains("smaller than the window"), "{err}");
        let x = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(max_pool2d(&x, MaxPool2dParams::square(1, 1)).is_err());
    }
}
