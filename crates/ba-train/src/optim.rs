//! Optimizers over the trainable variables of a `VarMap`, with PyTorch's semantics: Adam
//! (coupled L2 weight decay, as `torch.optim.Adam` and Paddle), AdamW (decoupled) and SGD
//! (momentum, dampening, Nesterov, coupled weight decay). Each update is one fused in-place
//! pass per parameter (`ba_core::ops`).
//!
//! Variables that receive no gradient in a step (batch-norm running statistics, or parameters
//! outside the graph) are neither updated nor decayed, as PyTorch skips `grad is None`.

use ba_core::model::is_buffer;
use ba_core::ops::{adam_update, sgd_update, AdamMoments, AdamStep, SgdStep};
use candle_core::backprop::GradStore;
use candle_core::{Result, Var};
use candle_nn::VarMap;

/// An optimizer: one update of every parameter that has a gradient, at a given learning rate.
pub trait Optimizer {
    /// Updates the parameters from `grads` with learning rate `lr`.
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()>;
    /// Steps taken so far.
    fn steps(&self) -> u64;
}

/// Which parameters weight decay applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecayFilter {
    /// Every parameter (PyTorch's default, and the notebook's).
    #[default]
    All,
    /// Only parameters of rank 2 or more: biases and normalisation weights are not decayed.
    SkipBiasAndNorm,
}

impl DecayFilter {
    fn decays(self, var: &Var) -> bool {
        match self {
            DecayFilter::All => true,
            DecayFilter::SkipBiasAndNorm => var.rank() >= 2,
        }
    }
}

/// The trainable variables of `vars` (not buffers), in name order.
fn trainable(vars: &VarMap) -> Vec<(String, Var)> {
    let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut named: Vec<(String, Var)> =
        data.iter().filter(|(n, _)| !is_buffer(n)).map(|(n, v)| (n.clone(), v.clone())).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// Adam's hyper-parameters (PyTorch's defaults; the learning rate comes from the schedule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added outside the square root.
    pub eps: f64,
    /// Weight decay: coupled L2 for [`Adam`], decoupled for [`AdamW`].
    pub weight_decay: f64,
    /// Which parameters are decayed.
    pub decay_filter: DecayFilter,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decay_filter: DecayFilter::All }
    }
}

/// One Adam parameter: the variable, its moments, its own step count (PyTorch counts steps
/// per parameter, so a parameter skipped in a step keeps its bias correction), and whether
/// it is decayed.
struct AdamParam {
    var: Var,
    moments: AdamMoments,
    steps: u64,
    decays: bool,
}

/// Adam with coupled L2 weight decay (`torch.optim.Adam`), or AdamW (`torch.optim.AdamW`)
/// when built with [`Adam::adamw`].
pub struct Adam {
    params: Vec<AdamParam>,
    config: AdamConfig,
    decoupled: bool,
    step: u64,
}

impl Adam {
    /// Adam over the trainable variables of `vars`, in name order.
    pub fn new(vars: &VarMap, config: AdamConfig) -> Self {
        Self::build(vars, config, false)
    }

    /// AdamW (decoupled weight decay, `param *= 1 - lr * weight_decay` each step) over the
    /// trainable variables of `vars`. Note PyTorch's and Candle's AdamW default to a decay of
    /// 0.01; here it is `config.weight_decay`.
    pub fn adamw(vars: &VarMap, config: AdamConfig) -> Self {
        Self::build(vars, config, true)
    }

    fn build(vars: &VarMap, config: AdamConfig, decoupled: bool) -> Self {
        let params = trainable(vars)
            .into_iter()
            .map(|(_, var)| AdamParam {
                decays: config.decay_filter.decays(&var),
                var,
                moments: AdamMoments::default(),
                steps: 0,
            })
            .collect();
        Self { params, config, decoupled, step: 0 }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        for p in &mut self.params {
            if let Some(grad) = grads.get(p.var.as_tensor()) {
                p.steps += 1;
                let hyper = AdamStep {
                    lr,
                    beta1: c.beta1,
                    beta2: c.beta2,
                    eps: c.eps,
                    weight_decay: if p.decays { c.weight_decay } else { 0.0 },
                    decoupled: self.decoupled,
                    step: p.steps,
                };
                adam_update(p.var.as_tensor(), grad, &mut p.moments, hyper)?;
            }
        }
        Ok(())
    }

    fn steps(&self) -> u64 {
        self.step
    }
}

/// SGD's hyper-parameters (`torch.optim.SGD`'s; the learning rate comes from the schedule).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SgdConfig {
    /// Momentum factor (0: plain SGD).
    pub momentum: f64,
    /// Dampening of the gradient in the momentum buffer.
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0 and dampening 0).
    pub nesterov: bool,
    /// Coupled L2 weight decay.
    pub weight_decay: f64,
    /// Which parameters are decayed.
    pub decay_filter: DecayFilter,
}

/// SGD with momentum (`torch.optim.SGD`).
pub struct Sgd {
    params: Vec<(Var, Vec<f32>, bool)>,
    config: SgdConfig,
    step: u64,
}

impl Sgd {
    /// SGD over the trainable variables of `vars`, in name order.
    pub fn new(vars: &VarMap, config: SgdConfig) -> Self {
        let params =
            trainable(vars).into_iter().map(|(_, v)| (v.clone(), Vec::new(), config.decay_filter.decays(&v))).collect();
        Self { params, config, step: 0 }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        for (var, buffer, decays) in &mut self.params {
            if let Some(grad) = grads.get(var.as_tensor()) {
                let hyper = SgdStep {
                    lr,
                    momentum: c.momentum,
                    dampening: c.dampening,
                    nesterov: c.nesterov,
                    weight_decay: if *decays { c.weight_decay } else { 0.0 },
                };
                sgd_update(var.as_tensor(), grad, buffer, hyper)?;
            }
        }
        Ok(())
    }

    fn steps(&self) -> u64 {
        self.step
    }
}
