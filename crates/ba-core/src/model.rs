//! What a training loop needs to know of an image classifier, and how its parameters count.

use candle_core::{Result, Tensor};
use candle_nn::VarMap;

use crate::summary::Trace;

/// An image classifier: images in, logits out.
pub trait ImageClassifier: Send + Sync {
    /// Logits (B, classes) for normalised images (B, 3, H, W); `train` enables dropout and
    /// batch statistics.
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor>;

    /// The logits in evaluation mode, reporting every layer the pass runs to `trace` (the
    /// same computation as `forward_t(images, false)`).
    fn forward_traced(&self, images: &Tensor, trace: &mut Trace) -> Result<Tensor>;

    /// A short name for tables and file names, e.g. `alexnet`.
    fn name(&self) -> &str;

    /// Positions of the model's own random generators (dropout masks), for checkpoints.
    fn rng_positions(&self) -> Vec<u128> {
        Vec::new()
    }

    /// Restores [`ImageClassifier::rng_positions`] of a model built with the same seeds.
    fn set_rng_positions(&self, positions: &[u128]) -> Result<()> {
        if !positions.is_empty() {
            candle_core::bail!("{} has no random generators, got {} positions", self.name(), positions.len());
        }
        Ok(())
    }
}

/// Names of the variables that hold statistics rather than learned parameters.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

/// Parameter counts of a model's variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterCount {
    /// Every value in the map, batch-norm running statistics included (Paddle's `summary`).
    pub total: usize,
    /// Values updated by the optimizer (PyTorch's `requires_grad` count).
    pub trainable: usize,
}

impl ParameterCount {
    /// Counts the variables of `vars`.
    pub fn of(vars: &VarMap) -> Self {
        let data = vars.data().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (mut total, mut trainable) = (0, 0);
        for (name, var) in data.iter() {
            let n = var.elem_count();
            total += n;
            if !is_buffer(name) {
                trainable += n;
            }
        }
        Self { total, trainable }
    }
}
