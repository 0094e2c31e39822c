//! `torch.nn.BatchNorm2d` on the fused op of this crate, with an optional fused ReLU.

use candle_core::{DType, Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use crate::ops::{batch_norm_train, channel_affine};

/// `BatchNorm2d(channels)` (eps 1e-5, momentum 0.1, affine): parameters `weight` and `bias`,
/// buffers `running_mean` and `running_var`, updated in training mode with the batch mean and
/// the unbiased batch variance as PyTorch does. Optionally followed by a fused ReLU.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    relu: bool,
}

/// PyTorch's defaults.
const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

impl BatchNorm2d {
    /// A layer over `channels` channels, its variables under `vb` (weight 1, bias 0, running
    /// mean 0, running variance 1).
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean = Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?;
        let running_var = Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?;
        Ok(Self { weight, bias, running_mean, running_var, relu: false })
    }

    /// The same layer followed by a ReLU, run as one op.
    pub fn with_relu(self) -> Self {
        Self { relu: true, ..self }
    }

    /// Values of the weight and the bias, and of the two running statistics.
    pub fn parameter_counts(&self) -> (usize, usize) {
        (2 * self.weight.elem_count(), 2 * self.running_mean.elem_count())
    }

    /// Normalises `x` (B, C, H, W): with the batch's statistics (updating the running ones)
    /// when `train`, with the running ones otherwise.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train {
            let scale = (&self.weight / (self.running_var.as_tensor() + EPS)?.sqrt()?)?;
            let shift = (&self.bias - (self.running_mean.as_tensor() * &scale)?)?;
            return channel_affine(x, &scale, &shift, self.relu);
        }
        let (y, statistics) = batch_norm_train(x, &self.weight, &self.bias, EPS, self.relu)?;
        let n = statistics.count as f64;
        let update = |running: &Var, batch: Vec<f64>| -> Result<()> {
            let old: Vec<f64> = running.as_tensor().to_dtype(DType::F64)?.to_vec1()?;
            let new: Vec<f64> = old.iter().zip(batch).map(|(r, b)| (1.0 - MOMENTUM) * r + MOMENTUM * b).collect();
            running.set(&Tensor::new(new, running.device())?.to_dtype(running.dtype())?)
        };
        update(&self.running_mean, statistics.mean)?;
        update(&self.running_var, statistics.variance.iter().map(|v| v * n / (n - 1.0)).collect())?;
        Ok(y)
    }
}
