//! The SGD update of one parameter (momentum, dampening, Nesterov, coupled weight decay) in a
//! single in-place pass, with `torch.optim.SGD`'s semantics.

use std::cell::RefCell;

#[cfg(feature = "cuda")]
use candle_core::{backend::BackendStorage, CudaStorage};
use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Tensor};

use crate::ops::optim::state::StateVector;
use rayon::prelude::*;

/// Hyper-parameters of one SGD step. With `g = grad + weight_decay * param`: the momentum
/// buffer is `g` on the first step and `momentum * buf + (1 - dampening) * g` after; the update
/// direction is `g + momentum * buf` (Nesterov) or `buf`, or `g` itself without momentum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdStep {
    /// Learning rate of this step.
    pub lr: f64,
    /// Momentum factor (0 for plain SGD).
    pub momentum: f64,
    /// Dampening of the gradient's contribution to the momentum buffer.
    pub dampening: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Coupled L2 penalty.
    pub weight_decay: f64,
}

/// Applies one SGD step to `param` (contiguous f32) from `grad`; `buffer` is the momentum
/// buffer, empty before the parameter's first step.
pub fn sgd_update(param: &Tensor, grad: &Tensor, buffer: &mut StateVector, hyper: SgdStep) -> Result<()> {
    if param.shape() != grad.shape() {
        candle_core::bail!("sgd: parameter {:?} and gradient {:?} differ in shape", param.shape(), grad.shape());
    }
    if hyper.nesterov && (hyper.momentum <= 0.0 || hyper.dampening != 0.0) {
        candle_core::bail!("sgd: Nesterov momentum needs a positive momentum and zero dampening");
    }
    let first = buffer.is_empty();
    let grad = grad.contiguous()?;
    param.inplace_op2(&grad, &SgdKernel { hyper, first, buffer: RefCell::new(buffer) })
}

struct SgdKernel<'a> {
    hyper: SgdStep,
    first: bool,
    buffer: RefCell<&'a mut StateVector>,
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

impl InplaceOp2 for SgdKernel<'_> {
    fn name(&self) -> &'static str {
        "sgd-update"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let (param, grad) = crate::ops::cpu::storage::f32_param_and_grad("sgd", (s1, l1), (s2, l2))?;
        let h = self.hyper;
        let (lr, wd, mu, keep) = (h.lr as f32, h.weight_decay as f32, h.momentum as f32, (1.0 - h.dampening) as f32);
        if h.momentum == 0.0 {
            param.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)).for_each(|(p, g)| {
                for i in 0..p.len() {
                    p[i] -= lr * (g[i] + wd * p[i]);
                }
            });
            return Ok(());
        }
        let (first, nesterov) = (self.first, h.nesterov);
        let mut buffer = self.buffer.borrow_mut();
        let buffer = buffer.host_mut("sgd", param.len())?;
        param.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)).zip(buffer.par_chunks_mut(CHUNK)).for_each(
            |((p, g), b)| {
                for i in 0..p.len() {
                    let g = g[i] + wd * p[i];
                    b[i] = if first { g } else { mu * b[i] + keep * g };
                    let direction = if nesterov { g + mu * b[i] } else { b[i] };
                    p[i] -= lr * direction;
                }
            },
        );
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s1: &mut CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<()> {
        let dev = s1.device().clone();
        let grad = crate::ops::cuda::launch::f32_view("sgd", s2, l2)?;
        let mut param = crate::ops::cuda::launch::f32_view_mut("sgd", s1, l1)?;
        let n = param.len();
        let h = self.hyper;
        let coefficients = SgdCoefficients::of(&h, self.first);
        let config = crate::ops::cuda::launch::elementwise(n);
        if h.momentum == 0.0 {
            // The kernel never touches the buffer without momentum; the gradient stands in.
            crate::ops::cuda::launch::launch!(dev, "sgd_f32", config, &mut param, &grad, &grad, &coefficients, &n)?;
        } else {
            let mut buffer = self.buffer.borrow_mut();
            let buffer = buffer.cuda_mut("sgd", &dev, n)?;
            crate::ops::cuda::launch::launch!(dev, "sgd_f32", config, &mut param, &grad, buffer, &coefficients, &n)?;
        }
        Ok(())
    }
}

/// One SGD step's coefficients as the CUDA kernel declares them (`SgdHyper`).
#[cfg(any(feature = "cuda", test))]
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct SgdCoefficients {
    lr: f32,
    weight_decay: f32,
    momentum: f32,
    keep: f32,
    first: i32,
    nesterov: i32,
    use_momentum: i32,
}

#[cfg(any(feature = "cuda", test))]
impl SgdCoefficients {
    /// The coefficients of `h`; `first` on the parameter's first step with momentum.
    pub(crate) fn of(h: &SgdStep, first: bool) -> Self {
        Self {
            lr: h.lr as f32,
            weight_decay: h.weight_decay as f32,
            momentum: h.momentum as f32,
            keep: (1.0 - h.dampening) as f32,
            first: i32::from(first),
            nesterov: i32::from(h.nesterov),
            use_momentum: i32::from(h.momentum != 0.0),
        }
    }
}

// SAFETY: a `#[repr(C)]` struct of 4-byte numbers, laid out as the kernel's `SgdHyper`.
#[cfg(feature = "cuda")]
unsafe impl candle_core::cuda_backend::cudarc::driver::DeviceRepr for SgdCoefficients {}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// `torch.optim.SGD`'s documented algorithm for one scalar, in f64.
    fn reference(p0: f64, grads: &[f64], h: SgdStep) -> f64 {
        let (mut p, mut b) = (p0, None::<f64>);
        for &g in grads {
            let mut g = g + h.weight_decay * p;
            if h.momentum != 0.0 {
                let buf = match b {
                    None => g,
                    Some(b) => h.momentum * b + (1.0 - h.dampening) * g,
                };
                b = Some(buf);
                g = if h.nesterov { g + h.momentum * buf } else { buf };
            }
            p -= h.lr * g;
        }
        p
    }

    #[test]
    fn matches_the_documented_algorithm() {
        let starts = [0.5f32, -1.5, 2.0];
        let grads = [[0.1f32, -0.2, 0.3], [0.05, 0.4, -0.1], [-0.3, 0.1, 0.2], [0.2, 0.2, -0.4]];
        let plain = SgdStep { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.01 };
        for h in [
            plain,
            SgdStep { momentum: 0.9, dampening: 0.2, ..plain },
            SgdStep { momentum: 0.8, nesterov: true, ..plain },
        ] {
            let p = Var::new(&starts, &Device::Cpu).unwrap();
            let mut buffer = StateVector::default();
            for g in &grads {
                sgd_update(p.as_tensor(), &Tensor::new(g, &Device::Cpu).unwrap(), &mut buffer, h).unwrap();
            }
            let got = p.as_tensor().to_vec1::<f32>().unwrap();
            for i in 0..3 {
                let g: Vec<f64> = grads.iter().map(|g| g[i] as f64).collect();
                let want = reference(starts[i] as f64, &g, h);
                assert!((got[i] as f64 - want).abs() < 1e-6, "{h:?} element {i}: {} vs {want}", got[i]);
            }
        }
    }

    #[test]
    fn nesterov_needs_momentum_without_dampening() {
        let p = Var::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        let g = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        let h = SgdStep { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: true, weight_decay: 0.0 };
        assert!(sgd_update(p.as_tensor(), &g, &mut StateVector::default(), h).is_err());
        assert!(sgd_update(
            p.as_tensor(),
            &g,
            &mut StateVector::default(),
            SgdStep { momentum: 0.9, dampening: 0.1, ..h }
        )
        .is_err());
    }
}
