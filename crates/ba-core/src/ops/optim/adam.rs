//! The Adam update of one parameter in a single in-place pass.
//!
//! A chain of Candle tensor ops allocates a temporary per arithmetic step (seven or more per
//! parameter per step); this op reads the gradient once, updates the moments and writes the
//! parameter in place, in parallel chunks.

use std::cell::RefCell;

#[cfg(feature = "cuda")]
use candle_core::{backend::BackendStorage, CudaStorage};
use candle_core::{CpuStorage, InplaceOp2, Layout, Result, Tensor};

use crate::ops::optim::state::StateVector;
use rayon::prelude::*;

/// Hyper-parameters of one Adam step, with PyTorch's semantics: both moments are
/// bias-corrected and `eps` is added outside the square root. Weight decay is coupled L2
/// (`torch.optim.Adam`: `weight_decay * param` joins the gradient before the moments) or,
/// with `decoupled`, AdamW's (`param *= 1 - lr * weight_decay` before the update).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// Learning rate of this step.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// AdamW's decoupled decay instead of coupled L2.
    pub decoupled: bool,
    /// 1 for the first step.
    pub step: u64,
}

/// First and second moments of one parameter, on the parameter's device.
#[derive(Debug, Default)]
pub struct AdamMoments {
    /// Exponential average of the gradient.
    pub m: StateVector,
    /// Exponential average of the squared gradient.
    pub v: StateVector,
}

/// Applies one Adam step to `param` (contiguous f32) from `grad`, updating `moments`.
pub fn adam_update(param: &Tensor, grad: &Tensor, moments: &mut AdamMoments, hyper: AdamStep) -> Result<()> {
    if param.shape() != grad.shape() {
        candle_core::bail!("adam: parameter {:?} and gradient {:?} differ in shape", param.shape(), grad.shape());
    }
    if hyper.step == 0 {
        candle_core::bail!("adam: steps count from 1");
    }
    let grad = grad.contiguous()?;
    param.inplace_op2(&grad, &AdamKernel { hyper, moments: RefCell::new(moments) })
}

struct AdamKernel<'a> {
    hyper: AdamStep,
    moments: RefCell<&'a mut AdamMoments>,
}

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

impl InplaceOp2 for AdamKernel<'_> {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let (param, grad) = crate::ops::cpu::storage::f32_param_and_grad("adam", (s1, l1), (s2, l2))?;
        let c = Coefficients::of(&self.hyper);
        let mut moments = self.moments.borrow_mut();
        let AdamMoments { m, v } = &mut **moments;
        let (m, v) = (m.host_mut("adam", param.len())?, v.host_mut("adam", param.len())?);
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((p, g), (m, v))| {
                for i in 0..p.len() {
                    p[i] *= c.shrink;
                    let g = g[i] + c.l2 * p[i];
                    m[i] = c.beta1 * m[i] + c.one_minus_beta1 * g;
                    v[i] = c.beta2 * v[i] + c.one_minus_beta2 * g * g;
                    p[i] -= c.step_size * m[i] / (v[i].sqrt() * c.inv_bc2_sqrt + c.eps);
                }
            });
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s1: &mut CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> Result<()> {
        let dev = s1.device().clone();
        let grad = crate::ops::cuda::launch::f32_view("adam", s2, l2)?;
        let mut param = crate::ops::cuda::launch::f32_view_mut("adam", s1, l1)?;
        let mut moments = self.moments.borrow_mut();
        let AdamMoments { m, v } = &mut **moments;
        let n = param.len();
        let (m, v) = (m.cuda_mut("adam", &dev, n)?, v.cuda_mut("adam", &dev, n)?);
        let c = Coefficients::of(&self.hyper);
        crate::ops::cuda::launch::launch!(
            dev,
            "adam_f32",
            crate::ops::cuda::launch::elementwise(n),
            &mut param,
            &grad,
            m,
            v,
            &c,
            &n
        )?;
        Ok(())
    }
}

/// The f32 coefficients of one Adam step, as the CPU loop and the CUDA kernel (`AdamHyper` in
/// `cuda/kernels.cu`, field by field) use them.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Coefficients {
    beta1: f32,
    beta2: f32,
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    eps: f32,
    l2: f32,
    shrink: f32,
    step_size: f32,
    inv_bc2_sqrt: f32,
}

// SAFETY: a `#[repr(C)]` struct of f32s, laid out as the kernel's `AdamHyper`.
#[cfg(feature = "cuda")]
unsafe impl candle_core::cuda_backend::cudarc::driver::DeviceRepr for Coefficients {}

impl Coefficients {
    /// The coefficients of step `h`.
    pub(crate) fn of(h: &AdamStep) -> Self {
        let bc1 = 1.0 - h.beta1.powi(h.step as i32);
        let bc2_sqrt = (1.0 - h.beta2.powi(h.step as i32)).sqrt();
        // Exactly one of the two decays is non-zero.
        let (l2, shrink) =
            if h.decoupled { (0.0, (1.0 - h.lr * h.weight_decay) as f32) } else { (h.weight_decay as f32, 1.0) };
        Self {
            beta1: h.beta1 as f32,
            beta2: h.beta2 as f32,
            // 1 - beta in f64 before rounding, as PyTorch does: `1.0 - 0.999f32` is off by 5e-5
            // relative, which the f64 bias correction would not match.
            one_minus_beta1: (1.0 - h.beta1) as f32,
            one_minus_beta2: (1.0 - h.beta2) as f32,
            eps: h.eps as f32,
            l2,
            shrink,
            step_size: (h.lr / bc1) as f32,
            inv_bc2_sqrt: (1.0 / bc2_sqrt) as f32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Scalar Adam written out from the PyTorch documentation's pseudo-code, in f64.
    fn reference(p0: f64, grads: &[f64], lr: f64, wd: f64) -> f64 {
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
        for (t, &g) in grads.iter().enumerate() {
            let t = (t + 1) as i32;
            let g = g + wd * p;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let m_hat = m / (1.0 - b1.powi(t));
            let v_hat = v / (1.0 - b2.powi(t));
            p -= lr * m_hat / (v_hat.sqrt() + eps);
        }
        p
    }

    #[test]
    fn matches_the_pytorch_algorithm_with_coupled_weight_decay() {
        let starts = [0.5f32, -1.5, 2.0, 0.0];
        let grads = [[0.1f32, -0.2, 0.3, 0.0], [0.05, 0.4, -0.1, 1.0], [-0.3, 0.1, 0.2, -0.5]];
        let p = Var::new(&starts, &Device::Cpu).unwrap();
        let mut moments = AdamMoments::default();
        for (t, g) in grads.iter().enumerate() {
            let g = Tensor::new(g, &Device::Cpu).unwrap();
            let hyper = AdamStep {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.1,
                decoupled: false,
                step: t as u64 + 1,
            };
            adam_update(p.as_tensor(), &g, &mut moments, hyper).unwrap();
        }
        let got = p.as_tensor().to_vec1::<f32>().unwrap();
        for i in 0..4 {
            let g: Vec<f64> = grads.iter().map(|g| g[i] as f64).collect();
            let want = reference(starts[i] as f64, &g, 0.01, 0.1);
            assert!((got[i] as f64 - want).abs() < 1e-6 * want.abs().max(1.0), "element {i}: {} vs {want}", got[i]);
        }
    }

    #[test]
    fn rejects_mismatched_shapes_and_step_zero() {
        let p = Var::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        let g = Tensor::zeros(4, candle_core::DType::F32, &Device::Cpu).unwrap();
        let h = AdamStep { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false, step: 1 };
        assert!(adam_update(p.as_tensor(), &g, &mut AdamMoments::default(), h).is_err());
        let g = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(adam_update(p.as_tensor(), &g, &mut AdamMoments::default(), AdamStep { step: 0, ..h }).is_err());
    }
}
