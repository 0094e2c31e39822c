//! A 2-D convolution layer on the im2col op of this crate.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use crate::init::pytorch_default;
use crate::ops::{conv2d, conv2d_max_pool2d, Conv2dParams, MaxPool2dParams};

/// `torch.nn.Conv2d` with a square kernel, with or without a bias, optionally followed by a
/// fused ReLU (`params.relu`): parameters `weight` (out, in, k, k) and `bias` (out).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    params: Conv2dParams,
}

impl Conv2d {
    /// Creates the layer's parameters under `vb` with PyTorch's default initialisation.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        params: Conv2dParams,
        vb: VarBuilder,
    ) -> Result<Self> {
        let init = pytorch_default(in_channels * kernel * kernel);
        let weight = vb.get_with_hints((out_channels, in_channels, kernel, kernel), "weight", init)?;
        let bias = vb.get_with_hints(out_channels, "bias", init)?;
        Ok(Self { weight, bias: Some(bias), params })
    }

    /// A layer without a bias (`bias=False`, as before a batch norm), its kernel drawn from
    /// `init`.
    pub fn without_bias(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        params: Conv2dParams,
        init: Init,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get_with_hints((out_channels, in_channels, kernel, kernel), "weight", init)?;
        Ok(Self { weight, bias: None, params })
    }

    /// The kernel, (out, in, k, k).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// `max_pool2d(self.forward(x), pool)` as one op (see [`conv2d_max_pool2d`]): the same
    /// values and gradients without the convolution's output in memory.
    pub fn forward_max_pooled(&self, x: &Tensor, pool: MaxPool2dParams) -> Result<Tensor> {
        conv2d_max_pool2d(x, &self.weight, self.bias.as_ref(), self.params, pool)
    }

    /// Values of the kernel and the bias.
    pub fn parameter_count(&self) -> usize {
        self.weight.elem_count() + self.bias.as_ref().map_or(0, Tensor::elem_count)
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, self.bias.as_ref(), self.params)
    }
}
