//! Adam over the trainable variables of a `VarMap`.

use ba_core::model::is_buffer;
use ba_core::ops::{adam_update, AdamMoments, AdamStep};
use candle_core::backprop::GradStore;
use candle_core::{Result, Var};
use candle_nn::VarMap;

/// Adam's hyper-parameters (PyTorch's defaults except the learning rate, which the schedule
/// sets each step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added outside the square root.
    pub eps: f64,
    /// Coupled L2 weight decay (added to the gradient, as `torch.optim.Adam` and Paddle do).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// Adam with coupled L2 weight decay. Variables that receive no gradient in a step (batch-norm
/// running statistics, or parameters outside the graph) are neither updated nor decayed.
pub struct Adam {
    params: Vec<(Var, AdamMoments)>,
    config: AdamConfig,
    step: u64,
}

impl Adam {
    /// An optimizer over the variables of `vars` that are not buffers, in name order.
    pub fn new(vars: &VarMap, config: AdamConfig) -> Self {
        let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
        let mut named: Vec<_> = data.iter().filter(|(n, _)| !is_buffer(n)).collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let params = named.into_iter().map(|(_, v)| (v.clone(), AdamMoments::default())).collect();
        Self { params, config, step: 0 }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Updates every parameter that has a gradient in `grads`, with learning rate `lr`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let hyper =
            AdamStep { lr, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weight_decay: c.weight_decay, step: self.step };
        for (var, moments) in &mut self.params {
            if let Some(grad) = grads.get(var.as_tensor()) {
                adam_update(var.as_tensor(), grad, moments, hyper)?;
            }
        }
        Ok(())
    }
}
