//! A channel gate's multiply, the ReLU after it and the max-pool after that, as one op on the
//! CPU.
//!
//! BA-AlexNet multiplies conv3's output (B, C, H, W) by the BA gate (B, C, 1, 1) before its
//! ReLU and max-pool. Composed of Candle's ops that is a broadcast multiply, a ReLU and the
//! pool, and in the backward pass the pool's scatter into a zeroed gradient, the ReLU's mask,
//! the multiply's two gradients (the gate's a sum over each plane after a full-size product)
//! and Candle's gradient sums between them: each a pass over the (B, C, H, W) tensor with an
//! allocation of its own. Here the forward pass gates and rectifies each plane into a buffer
//! that stays in cache and pools it there; the backward pass sends each pooled gradient that
//! passed the ReLU straight to its window's arg-max, `gate * grad` into the input's gradient
//! and `x * grad` into the gate's. The values and gradients are those of
//! `max_pool2d(relu(x * gate))`, which other devices run.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor, WithDType};
use rayon::prelude::*;

use super::max_pool2d::{max_pool2d, MaxPool2dParams};
use super::max_pool2d::{PlaneWindows, PooledGrad};
use crate::ops::cpu::storage::{contiguous_slice, dispatch};

/// `max_pool2d(relu(x * gate), pool)` for `x` (B, C, H, W) and a channel gate (B, C, 1, 1), in
/// one op on the CPU (see the module documentation); differentiable in both.
pub fn gate_relu_max_pool2d(x: &Tensor, gate: &Tensor, pool: MaxPool2dParams) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if gate.dims() != [b, c, 1, 1] {
        candle_core::bail!(
            "gate_relu_max_pool2d: gate of shape {:?} for input {:?}, expected ({b}, {c}, 1, 1)",
            gate.dims(),
            x.dims()
        );
    }
    pool.output_size(h, w)?;
    if !x.device().is_cpu() {
        return max_pool2d(&x.broadcast_mul(gate)?.relu()?, pool);
    }
    let op = GateReluMaxPool { pool, argmax: Arc::new(Mutex::new(None)) };
    x.contiguous()?.apply_op2(&gate.contiguous()?, op)
}

struct GateReluMaxPool {
    pool: MaxPool2dParams,
    /// Flat index, inside its input plane, of each pooled value's maximum: written by the
    /// forward pass, read by the backward pass.
    argmax: Arc<Mutex<Option<Vec<u32>>>>,
}

/// The shapes of one call: input planes, their size, and the pooled size.
struct Planes {
    planes: usize,
    input: (usize, usize),
    pooled: (usize, usize),
}

impl Planes {
    fn of(dims: &[usize], pool: MaxPool2dParams) -> Result<Self> {
        let &[b, c, h, w] = dims else {
            candle_core::bail!("gate_relu_max_pool2d: expected a (B, C, H, W) input, got {dims:?}");
        };
        Ok(Self { planes: b * c, input: (h, w), pooled: pool.output_size(h, w)? })
    }

    fn input_plane(&self) -> usize {
        self.input.0 * self.input.1
    }

    fn pooled_plane(&self) -> usize {
        self.pooled.0 * self.pooled.1
    }
}

impl GateReluMaxPool {
    fn forward<T: WithDType>(&self, s: &Planes, x: &[T], gate: &[T]) -> (Vec<T>, Vec<u32>) {
        let window = PlaneWindows::new(self.pool, s.input, s.pooled);
        let mut out = vec![T::zero(); s.planes * s.pooled_plane()];
        let mut idx = vec![0u32; out.len()];
        let scratch = || (vec![T::zero(); s.input_plane()], vec![T::zero(); window.phases_len()]);
        let planes = out.par_chunks_mut(s.pooled_plane()).zip(idx.par_chunks_mut(s.pooled_plane())).enumerate();
        planes.for_each_init(scratch, |(gated, phases), (plane, (out, idx))| {
            let g = gate[plane];
            let x = &x[plane * s.input_plane()..][..s.input_plane()];
            for (y, &v) in gated.iter_mut().zip(x) {
                let product = v * g;
                // Candle's ReLU: `max(v, 0)`, which also takes a NaN to 0.
                *y = if product > T::zero() { product } else { T::zero() };
            }
            window.pool_dispatched(gated, out, idx, phases);
        });
        (out, idx)
    }

    /// The input's and the gate's gradients: each pooled gradient whose value passed the ReLU
    /// goes to its arg-max, times the gate into the input's and times the input into the
    /// gate's.
    fn backward<T: WithDType>(
        &self,
        s: &Planes,
        (x, gate): (&[T], &[T]),
        (grad, res, argmax): (&[T], &[T], &[u32]),
    ) -> (Vec<T>, Vec<T>) {
        let (input, pooled) = (s.input_plane(), s.pooled_plane());
        let mut dx = vec![T::zero(); s.planes * input];
        let mut dgate = vec![T::zero(); s.planes];
        let planes = dx.par_chunks_mut(input).zip(dgate.par_iter_mut()).enumerate();
        let passed = PooledGrad { grad, res, argmax, plane: pooled, relu: true };
        planes.for_each(|(plane, (dx, dgate))| {
            let (g, x) = (gate[plane], &x[plane * input..][..input]);
            passed.for_each_passed(plane, |at, grad| {
                dx[at] += grad * g;
                *dgate += grad * x[at];
            });
        });
        (dx, dgate)
    }
}

impl CustomOp2 for GateReluMaxPool {
    fn name(&self) -> &'static str {
        "gate-relu-max-pool2d"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let s = Planes::of(xl.dims(), self.pool)?;
        let name = self.name();
        let idx;
        let out = dispatch!(name, xs, |T| {
            let (out, argmax) = self.forward::<T>(&s, contiguous_slice(name, xs, xl)?, contiguous_slice(name, gs, gl)?);
            idx = argmax;
            out
        });
        *lock(&self.argmax)? = Some(idx);
        let (b, c) = (xl.dims()[0], xl.dims()[1]);
        Ok((out, Shape::from((b, c, s.pooled.0, s.pooled.1))))
    }

    fn bwd(&self, x: &Tensor, gate: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let s = Planes::of(x.dims(), self.pool)?;
        let guard = lock(&self.argmax)?;
        let Some(argmax) = guard.as_ref() else {
            candle_core::bail!("{}: backward without a forward pass", self.name());
        };
        let grad = grad.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (gs, gl) = gate.storage_and_layout();
        let (ds, dl) = grad.storage_and_layout();
        let (rs, rl) = res.storage_and_layout();
        let (Storage::Cpu(xs), Storage::Cpu(gs), Storage::Cpu(ds), Storage::Cpu(rs)) = (&*xs, &*gs, &*ds, &*rs) else {
            candle_core::bail!("{}: this backward pass runs on the CPU", self.name());
        };
        let storages = [(xs, xl), (gs, gl), (ds, dl), (rs, rl)];
        let (dx, dgate) = match xs.dtype() {
            DType::F32 => self.gradients::<f32>(&s, storages, argmax, (x, gate))?,
            DType::F64 => self.gradients::<f64>(&s, storages, argmax, (x, gate))?,
            dt => candle_core::bail!("{}: unsupported dtype {dt:?}", self.name()),
        };
        Ok((Some(dx), Some(dgate)))
    }
}

impl GateReluMaxPool {
    /// [`Self::backward`] on the values of (x, gate, grad, res), as tensors shaped like
    /// (x, gate).
    fn gradients<T: WithDType>(
        &self,
        s: &Planes,
        [(xs, xl), (gs, gl), (ds, dl), (rs, rl)]: [(&CpuStorage, &Layout); 4],
        argmax: &[u32],
        (x, gate): (&Tensor, &Tensor),
    ) -> Result<(Tensor, Tensor)> {
        let name = self.name();
        let inputs = (contiguous_slice::<T>(name, xs, xl)?, contiguous_slice::<T>(name, gs, gl)?);
        let pooled = (contiguous_slice::<T>(name, ds, dl)?, contiguous_slice::<T>(name, rs, rl)?, argmax);
        let (dx, dgate) = self.backward(s, inputs, pooled);
        Ok((Tensor::from_vec(dx, x.dims(), x.device())?, Tensor::from_vec(dgate, gate.dims(), gate.device())?))
    }
}

fn lock(m: &Mutex<Option<Vec<u32>>>) -> Result<std::sync::MutexGuard<'_, Option<Vec<u32>>>> {
    m.lock().map_err(|_| candle_core::Error::Msg("gate-relu-max-pool2d: arg-max lock poisoned".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::{max_abs_diff, randn};
    use candle_core::{Device, Var};

    /// Values and both gradients against Candle's broadcast multiply and ReLU, then
    /// [`max_pool2d`], on f64 data.
    fn check_against_the_composition(dims: &[usize], pool: MaxPool2dParams, gate_mean: f64) {
        let x = randn(dims, 1.0, 21);
        let gate = randn(&[dims[0], dims[1], 1, 1], 1.0, 22);
        let gate = Var::from_tensor(&(gate.as_tensor() + gate_mean).unwrap()).unwrap();
        let fused = gate_relu_max_pool2d(x.as_tensor(), gate.as_tensor(), pool).unwrap();
        let gated = x.as_tensor().broadcast_mul(gate.as_tensor()).unwrap();
        let composed = max_pool2d(&gated.relu().unwrap(), pool).unwrap();
        assert_eq!(fused.dims(), composed.dims());
        assert!(max_abs_diff(&fused, &composed) == 0.0, "values, {dims:?} {pool:?}");
        let probe = randn(fused.dims(), 1.0, 23).as_tensor().clone();
        let g_fused = (&fused * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g_composed = (&composed * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (t, what) in [(x.as_tensor(), "input"), (gate.as_tensor(), "gate")] {
            let (a, r) = (g_fused.get(t).unwrap(), g_composed.get(t).unwrap());
            assert!(max_abs_diff(a, r) < 1e-12, "{what} gradient, {dims:?} {pool:?}");
        }
    }

    #[test]
    fn equals_multiply_relu_then_max_pool2d() {
        let m = MaxPool2dParams::square;
        // BA-AlexNet's conv3 scaled down, then a positive gate as a sigmoid makes it, odd
        // planes, overlapping and padded windows, batch 1.
        check_against_the_composition(&[4, 6, 7, 7], m(3, 2), 0.0);
        check_against_the_composition(&[3, 5, 9, 8], m(3, 2), 2.0);
        check_against_the_composition(&[1, 3, 6, 6], m(2, 2), 0.0);
        let padded = MaxPool2dParams { kernel: (3, 2), stride: (1, 2), padding: (1, 1) };
        check_against_the_composition(&[2, 4, 7, 5], padded, 0.5);
    }

    #[test]
    fn a_gate_of_zero_passes_no_gradient_to_the_input() {
        let x = randn(&[2, 3, 7, 7], 1.0, 24);
        let gate = Var::from_tensor(&Tensor::zeros((2, 3, 1, 1), DType::F64, &Device::Cpu).unwrap()).unwrap();
        let y = gate_relu_max_pool2d(x.as_tensor(), gate.as_tensor(), MaxPool2dParams::square(3, 2)).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let zero = |t: &Tensor| t.abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap() == 0.0;
        assert!(zero(&y) && zero(grads.get(x.as_tensor()).unwrap()) && zero(grads.get(gate.as_tensor()).unwrap()));
    }

    #[test]
    fn bad_shapes_are_clear_errors() {
        let x = Tensor::zeros((2, 3, 7, 7), DType::F32, &Device::Cpu).unwrap();
        let gate = Tensor::zeros((2, 4, 1, 1), DType::F32, &Device::Cpu).unwrap();
        let err = gate_relu_max_pool2d(&x, &gate, MaxPool2dParams::square(3, 2)).unwrap_err().to_string();
        assert!(err.contains("gate of shape [2, 4, 1, 1] for input [2, 3, 7, 7], expected (2, 3, 1, 1)"), "{err}");
        let gate = Tensor::zeros((2, 3, 1, 1), DType::F32, &Device::Cpu).unwrap();
        let err = gate_relu_max_pool2d(&x, &gate, MaxPool2dParams::square(8, 1)).unwrap_err().to_string();
        assert!(err.contains("input 7x7 is smaller than the window 8x8"), "{err}");
    }
}
