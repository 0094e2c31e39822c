//! Optimizers over the trainable variables of a `VarMap`, with PyTorch's semantics: Adam
//! (coupled L2 weight decay, as `torch.optim.Adam` and Paddle), AdamW (decoupled) and SGD
//! (momentum, dampening, Nesterov, coupled weight decay). Each update is one fused in-place
//! pass per parameter (`ba_core::ops`).
//!
//! Variables that receive no gradient in a step (batch-norm running statistics, or parameters
//! outside the graph) are neither updated nor decayed, as PyTorch skips `grad is None`.

use ba_core::model::is_buffer;
use ba_core::ops::{adam_update, sgd_update, AdamMoments, AdamStep, SgdStep, StateVector};
use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};
use candle_nn::VarMap;

/// An optimizer: one update of every parameter that has a gradient, at a given learning rate.
pub trait Optimizer {
    /// Updates the parameters from `grads` with learning rate `lr`.
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()>;
    /// Steps taken so far.
    fn steps(&self) -> u64;
    /// Everything the next steps depend on, as named CPU tensors: per parameter (under its
    /// variable name) the moments or momentum buffer and its own step count, and `step`.
    fn state(&self) -> Result<HashMap<String, Tensor>>;
    /// Restores a [`Optimizer::state`] of an optimizer over the same variables; an error names
    /// what is missing or mis-shaped.
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
}

impl<T: Optimizer + ?Sized> Optimizer for Box<T> {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        (**self).step(grads, lr)
    }
    fn steps(&self) -> u64 {
        (**self).steps()
    }
    fn state(&self) -> Result<HashMap<String, Tensor>> {
        (**self).state()
    }
    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        (**self).load_state(state)
    }
}

/// The global step count's entry in a state.
const STEP_KEY: &str = "step";

fn step_tensor(step: u64) -> Result<Tensor> {
    Tensor::new(step as i64, &Device::Cpu)
}

fn read_step(state: &HashMap<String, Tensor>, key: &str) -> Result<u64> {
    let t = state.get(key).ok_or_else(|| candle_core::Error::Msg(format!("optimizer state lacks {key}")))?;
    Ok(t.to_dtype(candle_core::DType::I64)?.to_scalar::<i64>()?.max(0) as u64)
}

/// A per-parameter vector of `state[key]`: empty when absent (the parameter has not stepped),
/// an error when its length differs from the parameter's.
fn read_vector(state: &HashMap<String, Tensor>, key: &str, len: usize) -> Result<Vec<f32>> {
    match state.get(key) {
        None => Ok(Vec::new()),
        Some(t) if t.elem_count() == len => t.flatten_all()?.to_vec1::<f32>(),
        Some(t) => candle_core::bail!("optimizer state {key} has {} values, the parameter {len}", t.elem_count()),
    }
}

/// A state vector as a CPU tensor of the parameter's shape (copied from the GPU if there).
fn vector_tensor(values: &StateVector, like: &Var) -> Result<Tensor> {
    Tensor::from_vec(values.to_host()?, like.shape(), &Device::Cpu)
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

/// One Adam parameter: its name and variable, its moments, its own step count (PyTorch
/// counts steps per parameter, so a parameter skipped in a step keeps its bias correction),
/// and whether it is decayed.
struct AdamParam {
    name: String,
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
            .map(|(name, var)| AdamParam {
                decays: config.decay_filter.decays(&var),
                name,
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

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut state = HashMap::from([(STEP_KEY.to_string(), step_tensor(self.step)?)]);
        for p in self.params.iter().filter(|p| p.steps > 0) {
            state.insert(format!("{}.exp_avg", p.name), vector_tensor(&p.moments.m, &p.var)?);
            state.insert(format!("{}.exp_avg_sq", p.name), vector_tensor(&p.moments.v, &p.var)?);
            state.insert(format!("{}.step", p.name), step_tensor(p.steps)?);
        }
        Ok(state)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.step = read_step(state, STEP_KEY)?;
        for p in &mut self.params {
            let n = p.var.elem_count();
            let m = read_vector(state, &format!("{}.exp_avg", p.name), n)?;
            let v = read_vector(state, &format!("{}.exp_avg_sq", p.name), n)?;
            p.steps = if m.is_empty() { 0 } else { read_step(state, &format!("{}.step", p.name))? };
            if m.is_empty() != v.is_empty() {
                candle_core::bail!("optimizer state holds only one of the moments of {}", p.name);
            }
            p.moments = AdamMoments { m: StateVector::from_host(m), v: StateVector::from_host(v) };
        }
        Ok(())
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
    /// Name, variable, momentum buffer (empty before its first step), whether decayed.
    params: Vec<(String, Var, StateVector, bool)>,
    config: SgdConfig,
    step: u64,
}

impl Sgd {
    /// SGD over the trainable variables of `vars`, in name order.
    pub fn new(vars: &VarMap, config: SgdConfig) -> Self {
        let params = trainable(vars)
            .into_iter()
            .map(|(n, v)| {
                let decays = config.decay_filter.decays(&v);
                (n, v, StateVector::default(), decays)
            })
            .collect();
        Self { params, config, step: 0 }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        for (_, var, buffer, decays) in &mut self.params {
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

    fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut state = HashMap::from([(STEP_KEY.to_string(), step_tensor(self.step)?)]);
        for (name, var, buffer, _) in self.params.iter().filter(|p| !p.2.is_empty()) {
            state.insert(format!("{name}.momentum_buffer"), vector_tensor(buffer, var)?);
        }
        Ok(state)
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        self.step = read_step(state, STEP_KEY)?;
        for (name, var, buffer, _) in &mut self.params {
            *buffer = StateVector::from_host(read_vector(state, &format!("{name}.momentum_buffer"), var.elem_count())?);
        }
        Ok(())
    }
}
