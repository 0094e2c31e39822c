//! `torch.nn.Linear` with PyTorch's default initialisation.

use candle_core::Result;
use candle_nn::{Linear, VarBuilder};

use crate::init::pytorch_default;

/// A fully connected layer with parameters `weight` (out, in) and `bias` (out).
pub fn linear(in_features: usize, out_features: usize, vb: VarBuilder) -> Result<Linear> {
    let init = pytorch_default(in_features);
    let weight = vb.get_with_hints((out_features, in_features), "weight", init)?;
    let bias = vb.get_with_hints(out_features, "bias", init)?;
    Ok(Linear::new(weight, Some(bias)))
}
