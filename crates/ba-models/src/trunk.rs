//! The layers AlexNet, SE-AlexNet and BA-AlexNet share: everything but the gate.

use ba_core::nn::{linear, Conv2d, Dropout, Linear};
use ba_core::ops::{gate_relu_max_pool2d, max_pool2d, Conv2dParams, MaxPool2dParams};
use ba_core::rng::rng_for;
use ba_core::summary::Trace;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::{ModelConfig, INPUT_SIZE};

/// Channels of conv3's output, the tensor the gates multiply.
pub(crate) const CONV3_CHANNELS: usize = 128;
/// Channels of conv1's and conv2's outputs, the feature maps the BA gate bridges.
pub(crate) const CONV12_CHANNELS: usize = 192;
/// Side of the feature map after the last max-pool for a 128x128 input.
const FINAL_SIDE: usize = 3;

fn pool() -> MaxPool2dParams {
    MaxPool2dParams::square(3, 2)
}

/// `features` (conv 11/4 and conv 5 with ReLU and max-pool), conv1..conv3 (AlexNet's third to fifth
/// convolutions), `classifier`.
#[derive(Debug)]
pub(crate) struct Trunk {
    features_0: Conv2d,
    features_3: Conv2d,
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    classifier_0: Linear,
    classifier_2: Dropout,
    classifier_3: Linear,
    classifier_5: Dropout,
    classifier_6: Linear,
}

/// The three outputs of the conv1..conv3 block.
pub(crate) struct BlockOutputs {
    /// conv1 after ReLU, (B, 192, 7, 7).
    pub conv1: Tensor,
    /// conv2 after ReLU, (B, 192, 7, 7).
    pub conv2: Tensor,
    /// conv3 before ReLU, (B, 128, 7, 7).
    pub conv3: Tensor,
}

impl Trunk {
    pub fn new(config: ModelConfig, vb: &VarBuilder) -> Result<Self> {
        if config.num_classes == 0 {
            candle_core::bail!("model: num_classes must be positive");
        }
        let f = vb.pp("features");
        let c = vb.pp("classifier");
        let flat = CONV3_CHANNELS * FINAL_SIDE * FINAL_SIDE;
        let precision = config.precision;
        let conv = |stride, padding| Conv2dParams::square(stride, padding).with_precision(precision);
        let dense = |inputs, outputs, vb| linear(inputs, outputs, vb).map(|l| l.with_precision(precision));
        Ok(Self {
            features_0: Conv2d::new(3, 48, 11, conv(4, 5).with_relu(), f.pp("0"))?,
            features_3: Conv2d::new(48, 128, 5, conv(1, 2).with_relu(), f.pp("3"))?,
            conv1: Conv2d::new(128, CONV12_CHANNELS, 3, conv(1, 1).with_relu(), vb.pp("conv1"))?,
            conv2: Conv2d::new(CONV12_CHANNELS, CONV12_CHANNELS, 3, conv(1, 1).with_relu(), vb.pp("conv2"))?,
            // No fused ReLU: BA-AlexNet gates conv3's output before its ReLU.
            conv3: Conv2d::new(CONV12_CHANNELS, CONV3_CHANNELS, 3, conv(1, 1), vb.pp("conv3"))?,
            classifier_0: dense(flat, 2048, c.pp("0"))?,
            classifier_2: Dropout::new(config.dropout, rng_for(config.dropout_seed, "classifier.2"))?,
            classifier_3: dense(2048, 2048, c.pp("3"))?,
            classifier_5: Dropout::new(config.dropout, rng_for(config.dropout_seed, "classifier.5"))?,
            classifier_6: dense(2048, config.num_classes, c.pp("6"))?,
        })
    }

    /// `features` and the conv1..conv3 block.
    pub fn block(&self, images: &Tensor, trace: &mut Trace) -> Result<BlockOutputs> {
        match images.dims() {
            &[_, 3, INPUT_SIZE, INPUT_SIZE] => {}
            dims => candle_core::bail!("model: expected images (B, 3, {INPUT_SIZE}, {INPUT_SIZE}), got {dims:?}"),
        }
        let x = conv_relu_pool(&self.features_0, images, ["features.0", "features.1", "features.2"], trace)?;
        let x = conv_relu_pool(&self.features_3, &x, ["features.3", "features.4", "features.5"], trace)?;
        let conv1 = conv_relu(&self.conv1, &x, ("conv1", "relu1"), trace)?;
        let conv2 = conv_relu(&self.conv2, &conv1, ("conv2", "relu2"), trace)?;
        let conv3 = self.conv3.forward(&conv2)?;
        trace.layer("conv3", "Conv2D", (&conv2, &conv3), (self.conv3.parameter_count(), 0));
        Ok(BlockOutputs { conv1, conv2, conv3 })
    }

    /// Positions of the two dropout generators.
    pub fn rng_positions(&self) -> Vec<u128> {
        vec![self.classifier_2.position(), self.classifier_5.position()]
    }

    /// Restores [`Trunk::rng_positions`].
    pub fn set_rng_positions(&self, positions: &[u128]) -> Result<()> {
        let [a, b] = positions else {
            candle_core::bail!("AlexNet has two dropout generators, got {} positions", positions.len());
        };
        self.classifier_2.set_position(*a);
        self.classifier_5.set_position(*b);
        Ok(())
    }

    /// ReLU and max-pool of conv3's output, flatten, `classifier`.
    pub fn head(&self, conv3: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let x = conv3.relu()?;
        trace.layer("relu3", "ReLU", (conv3, &x), (0, 0));
        let pooled = traced_pool(&x, "maxpool3", trace)?;
        self.classify(&pooled, train, trace)
    }

    /// [`Trunk::head`] of conv3's output multiplied channel-wise by `gate` (B, C, 1, 1): the
    /// multiply, the ReLU and the max-pool as one op ([`gate_relu_max_pool2d`]), or for a trace
    /// that records layers the three ops, reported as three layers. Both give the same values
    /// and gradients.
    pub fn gated_head(&self, conv3: &Tensor, gate: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        if trace.is_on() {
            let gated = conv3.broadcast_mul(gate)?;
            trace.layer("gate", "Multiply", (conv3, &gated), (0, 0));
            return self.head(&gated, train, trace);
        }
        self.classify(&gate_relu_max_pool2d(conv3, gate, pool())?, train, trace)
    }

    /// Flatten the pooled conv3 features, `classifier`.
    fn classify(&self, pooled: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let x = pooled.flatten_from(1)?;
        trace.layer("flatten", "Flatten", (pooled, &x), (0, 0));
        let x = linear_relu(&self.classifier_0, &x, ("classifier.0", "classifier.1"), trace)?;
        let x = dropout(&self.classifier_2, &x, train, "classifier.2", trace)?;
        let x = linear_relu(&self.classifier_3, &x, ("classifier.3", "classifier.4"), trace)?;
        let x = dropout(&self.classifier_5, &x, train, "classifier.5", trace)?;
        let logits = self.classifier_6.forward(&x)?;
        trace.layer("classifier.6", "Linear", (&x, &logits), (self.classifier_6.parameter_count(), 0));
        Ok(logits)
    }
}

/// A convolution with its fused ReLU, reported as the two layers of the PyTorch module tree.
fn conv_relu(conv: &Conv2d, x: &Tensor, (conv_name, relu_name): (&str, &str), trace: &mut Trace) -> Result<Tensor> {
    let y = conv.forward(x)?;
    trace.layer(conv_name, "Conv2D", (x, &y), (conv.parameter_count(), 0));
    trace.layer(relu_name, "ReLU", (&y, &y), (0, 0));
    Ok(y)
}

/// A convolution, its fused ReLU and the max-pool after it: one op (which never stores the
/// convolution's output), or for a trace that records layers the two ops, reported as three
/// layers. Both give the same values and gradients.
fn conv_relu_pool(conv: &Conv2d, x: &Tensor, [c, r, p]: [&str; 3], trace: &mut Trace) -> Result<Tensor> {
    if trace.is_on() {
        traced_pool(&conv_relu(conv, x, (c, r), trace)?, p, trace)
    } else {
        conv.forward_max_pooled(x, pool())
    }
}

fn traced_pool(x: &Tensor, name: &str, trace: &mut Trace) -> Result<Tensor> {
    let y = max_pool2d(x, pool())?;
    trace.layer(name, "MaxPool2D", (x, &y), (0, 0));
    Ok(y)
}

/// A linear layer and its ReLU: one op, or for a trace that records layers the two ops,
/// reported as two layers. Both give the same values and gradients.
fn linear_relu(layer: &Linear, x: &Tensor, names: (&str, &str), trace: &mut Trace) -> Result<Tensor> {
    if !trace.is_on() {
        return layer.forward_relu(x);
    }
    let y = layer.forward(x)?;
    trace.layer(names.0, "Linear", (x, &y), (layer.parameter_count(), 0));
    let z = y.relu()?;
    trace.layer(names.1, "ReLU", (&y, &z), (0, 0));
    Ok(z)
}

fn dropout(layer: &Dropout, x: &Tensor, train: bool, name: &str, trace: &mut Trace) -> Result<Tensor> {
    let y = layer.forward_t(x, train)?;
    trace.layer(name, "Dropout", (x, &y), (0, 0));
    Ok(y)
}
