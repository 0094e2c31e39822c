//! `torch.nn.Linear` with PyTorch's default initialisation and parameter layout.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::init::pytorch_default;
use crate::ops::{self, Precision};

/// A fully connected layer with parameters `weight` (out, in) and `bias` (out), for inputs
/// (batch, in); it runs as one op, [`ops::linear`], with or without the ReLU after it, in f32
/// unless [`Linear::with_precision`] says otherwise.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Tensor,
    precision: Precision,
}

impl Linear {
    /// The (out, in) weight.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The (out) bias.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The same layer with its product's operands in `precision` (mixed precision for bf16).
    pub fn with_precision(self, precision: Precision) -> Self {
        Self { precision, ..self }
    }

    /// Weights and biases.
    pub fn parameter_count(&self) -> usize {
        self.weight.elem_count() + self.bias.elem_count()
    }

    /// `relu(x W^T + b)`: the layer and the ReLU after it, as one op.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        ops::linear(x, &self.weight, &self.bias, true, self.precision)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::linear(x, &self.weight, &self.bias, false, self.precision)
    }
}

/// A fully connected layer `in_features -> out_features`, parameters `weight` and `bias`
/// initialised as PyTorch does.
pub fn linear(in_features: usize, out_features: usize, vb: VarBuilder) -> Result<Linear> {
    let init = pytorch_default(in_features);
    let weight = vb.get_with_hints((out_features, in_features), "weight", init)?;
    let bias = vb.get_with_hints(out_features, "bias", init)?;
    Ok(Linear { weight, bias, precision: Precision::F32 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use candle_nn::VarMap;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        a.sub(b).and_then(|d| d.abs()?.max_all()?.to_scalar::<f32>()).unwrap_or(f32::INFINITY)
    }

    #[test]
    fn values_and_gradients_match_candle_linear() -> Result<()> {
        let dev = Device::Cpu;
        let map = VarMap::new();
        let ours = linear(5, 3, VarBuilder::from_varmap(&map, DType::F32, &dev))?;
        let stock = candle_nn::Linear::new(ours.weight().clone(), Some(ours.bias().clone()));
        let x = Var::from_tensor(&crate::rng::randn(1, (4, 5), &dev)?)?;
        let probe = crate::rng::randn(2, (4, 3), &dev)?;
        let (y, y_stock) = (ours.forward(&x)?, stock.forward(&x)?);
        assert!(max_abs_diff(&y, &y_stock) < 1e-6);
        let grads = y.mul(&probe)?.sum_all()?.backward()?;
        let stock_grads = y_stock.mul(&probe)?.sum_all()?.backward()?;
        for t in [x.as_tensor(), ours.weight(), ours.bias()] {
            let (Some(g), Some(s)) = (grads.get(t), stock_grads.get(t)) else {
                panic!("a gradient is missing");
            };
            assert_eq!(g.dims(), t.dims());
            assert!(max_abs_diff(g, s) < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn wrong_input_width_is_a_clear_error() -> Result<()> {
        let map = VarMap::new();
        let layer = linear(5, 3, VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu))?;
        let err = layer.forward(&Tensor::zeros((2, 4), DType::F32, &Device::Cpu)?).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("expected input (batch, 5)")));
        Ok(())
    }
}
