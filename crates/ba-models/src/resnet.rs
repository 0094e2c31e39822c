//! The CIFAR ResNets of He et al. 2016 (section 4.2): a 3x3 stem of 16 channels, three stages
//! of `n` basic blocks with 16, 32 and 64 channels (the first block of the second and third
//! stages halves the resolution), global average pooling and a linear layer; depth `6n + 2`.
//! Plain, or with a channel gate in every block:
//!
//! - squeeze-and-excitation (Hu et al. 2018) on the block's second batch-norm output: global
//!   average pool, linear C -> C/16 with bias, ReLU, linear C/16 -> C with bias, sigmoid;
//! - Bridge Attention, as the official BA-Net code's basic block: the block's first
//!   convolution's output (after BN and ReLU) bridged into the gate of its second (after BN).
//!
//! Either gate multiplies the second BN's output before the residual addition. A shortcut that
//! changes shape is a strided 1x1 convolution with a batch norm (He et al.'s option B).
//! Convolutions have no bias and start from torchvision's Kaiming normal (fan-out); batch norms
//! from weight 1 and bias 0; the linear layers from PyTorch's default. Weight names are
//! torchvision's (`conv1`, `bn1`, `layer1.0.conv1`, `layer2.0.downsample.0`, `fc`) with `se.fc.0`
//! and `se.fc.2`, or `ba.*` as [`BridgeAttention`] names its parts, inside the blocks.

use ba_core::init::kaiming_normal_fan_out;
use ba_core::model::ImageClassifier;
use ba_core::nn::{linear, BatchNorm2d, BridgeAttention, Conv2d, Linear};
use ba_core::ops::{add_relu, Conv2dParams, Precision};
use ba_core::summary::Trace;
use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::{Gate, ModelConfig};

/// Reduction ratio of both gates.
const REDUCTION: usize = 16;
/// Channels of the stem and the three stages.
const STAGE_CHANNELS: [usize; 3] = [16, 32, 64];

/// A CIFAR ResNet of depth `6n + 2`, plain or gated (see the module documentation).
#[derive(Debug)]
pub struct ResNet {
    name: &'static str,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    /// `layer1`..`layer3`.
    stages: Vec<Vec<BasicBlock>>,
    fc: Linear,
}

impl ResNet {
    /// A ResNet of `depth` (20, 32, 44, 56, 110, ...: `6n + 2`) with `gate` in every block,
    /// called `name`, its variables created under `vb`.
    pub fn new(
        name: &'static str,
        depth: usize,
        gate: Option<Gate>,
        config: ModelConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        if depth < 8 || !(depth - 2).is_multiple_of(6) {
            candle_core::bail!("resnet: depth must be 6n + 2 with n >= 1, got {depth}");
        }
        if config.num_classes == 0 {
            candle_core::bail!("model: num_classes must be positive");
        }
        let blocks = (depth - 2) / 6;
        let precision = config.precision;
        let conv1 = conv(3, STAGE_CHANNELS[0], 3, square(1, 1, precision), vb.pp("conv1"))?;
        let bn1 = bn(STAGE_CHANNELS[0], vb.pp("bn1"))?.with_relu();
        let mut stages = Vec::new();
        let mut in_channels = STAGE_CHANNELS[0];
        for (s, &channels) in STAGE_CHANNELS.iter().enumerate() {
            let layer = vb.pp(format!("layer{}", s + 1));
            let stage = (0..blocks)
                .map(|b| {
                    let stride = if s > 0 && b == 0 { 2 } else { 1 };
                    let from = if b == 0 { in_channels } else { channels };
                    BasicBlock::new((from, channels), stride, gate, precision, layer.pp(b))
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(stage);
            in_channels = channels;
        }
        let fc = linear(in_channels, config.num_classes, vb.pp("fc"))?.with_precision(precision);
        Ok(Self { name, conv1, bn1, stages, fc })
    }

    fn run(&self, images: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        match images.dims() {
            &[_, 3, h, w] if h >= 4 && w >= 4 => {}
            dims => candle_core::bail!("{}: expected images (B, 3, H, W) of at least 4x4, got {dims:?}", self.name),
        }
        let mut x = conv_bn(&self.conv1, &self.bn1, images, train, ("conv1", "bn1"), trace)?;
        for (s, stage) in self.stages.iter().enumerate() {
            for (b, block) in stage.iter().enumerate() {
                x = trace.scoped(&format!("layer{}.{b}", s + 1), |t| block.forward(&x, train, t))?;
            }
        }
        let pooled = x.mean((2, 3))?;
        trace.layer("avgpool", "AdaptiveAvgPool2D", (&x, &pooled), (0, 0));
        let logits = self.fc.forward(&pooled)?;
        trace.layer("fc", "Linear", (&pooled, &logits), (self.fc.parameter_count(), 0));
        Ok(logits)
    }
}

impl ImageClassifier for ResNet {
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.run(images, train, &mut Trace::off())
    }

    fn forward_traced(&self, images: &Tensor, trace: &mut Trace) -> Result<Tensor> {
        self.run(images, false, trace)
    }

    fn name(&self) -> &str {
        self.name
    }
}

/// Two 3x3 convolutions with batch norms, an optional gate on the second, and the shortcut.
#[derive(Debug)]
struct BasicBlock {
    conv1: Conv2d,
    /// With the ReLU after it fused.
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    gate: Option<BlockGate>,
    /// `downsample.0` and `.1`, where the block changes the shape.
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

/// The gate of a block.
#[derive(Debug)]
enum BlockGate {
    Squeeze(SqueezeExcitation),
    Bridge(BridgeAttention),
}

impl BasicBlock {
    fn new(
        (in_channels, channels): (usize, usize),
        stride: usize,
        gate: Option<Gate>,
        precision: Precision,
        vb: VarBuilder,
    ) -> Result<Self> {
        let conv1 = conv(in_channels, channels, 3, square(stride, 1, precision), vb.pp("conv1"))?;
        let conv2 = conv(channels, channels, 3, square(1, 1, precision), vb.pp("conv2"))?;
        let (bn1, bn2) = (bn(channels, vb.pp("bn1"))?.with_relu(), bn(channels, vb.pp("bn2"))?);
        let gate = match gate {
            None => None,
            Some(Gate::Squeeze) => Some(BlockGate::Squeeze(SqueezeExcitation::new(channels, vb.pp("se"))?)),
            Some(Gate::Bridge) => {
                Some(BlockGate::Bridge(BridgeAttention::new(&[channels], channels, REDUCTION, vb.pp("ba"))?))
            }
        };
        let downsample = if stride != 1 || in_channels != channels {
            let d = vb.pp("downsample");
            Some((conv(in_channels, channels, 1, square(stride, 0, precision), d.pp("0"))?, bn(channels, d.pp("1"))?))
        } else {
            None
        };
        Ok(Self { conv1, bn1, conv2, bn2, gate, downsample })
    }

    fn forward(&self, x: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let first = conv_bn(&self.conv1, &self.bn1, x, train, ("conv1", "bn1"), trace)?;
        let mut out = conv_bn(&self.conv2, &self.bn2, &first, train, ("conv2", "bn2"), trace)?;
        if let Some(gate) = &self.gate {
            let (module, weights) = match gate {
                BlockGate::Squeeze(se) => ("se", trace.scoped("se", |t| se.forward(&out, t))?),
                BlockGate::Bridge(ba) => (
                    "ba",
                    if train {
                        ba.forward_t(&[&first], &out, true)?
                    } else {
                        trace.scoped("ba", |t| ba.forward_traced(&[&first], &out, t))?
                    },
                ),
            };
            let gated = out.broadcast_mul(&weights)?;
            trace.layer(&format!("{module}.gate"), "Multiply", (&out, &gated), (0, 0));
            out = gated;
        }
        let shortcut = match &self.downsample {
            Some((conv, norm)) => trace.scoped("downsample", |t| conv_bn(conv, norm, x, train, ("0", "1"), t))?,
            None => x.clone(),
        };
        let y = add_relu(&out, &shortcut)?;
        trace.layer("add_relu", "AddReLU", (&out, &y), (0, 0));
        Ok(y)
    }
}

/// Squeeze-and-excitation (Hu et al.): the gate (B, C, 1, 1) of a (B, C, H, W) map from its
/// channel means through `fc.0` (C -> C/r, bias), ReLU, `fc.2` (C/r -> C, bias), sigmoid.
#[derive(Debug)]
struct SqueezeExcitation {
    reduce: Linear,
    expand: Linear,
}

impl SqueezeExcitation {
    fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let hidden = channels / REDUCTION;
        if hidden == 0 {
            candle_core::bail!(
                "squeeze-and-excitation: reduction {REDUCTION} leaves no hidden channels for {channels}"
            );
        }
        let fc = vb.pp("fc");
        Ok(Self { reduce: linear(channels, hidden, fc.pp("0"))?, expand: linear(hidden, channels, fc.pp("2"))? })
    }

    fn forward(&self, x: &Tensor, trace: &mut Trace) -> Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        let squeezed = x.mean((2, 3))?;
        trace.layer("avg_pool", "AdaptiveAvgPool2D", (x, &squeezed), (0, 0));
        let hidden = self.reduce.forward_relu(&squeezed)?;
        trace.layer("fc.0", "Linear", (&squeezed, &hidden), (self.reduce.parameter_count(), 0));
        trace.layer("fc.1", "ReLU", (&hidden, &hidden), (0, 0));
        let expanded = self.expand.forward(&hidden)?;
        trace.layer("fc.2", "Linear", (&hidden, &expanded), (self.expand.parameter_count(), 0));
        let gate = candle_nn::ops::sigmoid(&expanded)?.reshape((b, c, 1, 1))?;
        trace.layer("fc.3", "Sigmoid", (&expanded, &gate), (0, 0));
        Ok(gate)
    }
}

/// A square kernel's stride and padding, with the model's operand precision.
fn square(stride: usize, padding: usize, precision: Precision) -> Conv2dParams {
    Conv2dParams::square(stride, padding).with_precision(precision)
}

/// A convolution without bias, Kaiming-normal (fan-out) as torchvision's ResNet.
fn conv(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    params: Conv2dParams,
    vb: VarBuilder,
) -> Result<Conv2d> {
    let init = kaiming_normal_fan_out(out_channels * kernel * kernel);
    Conv2d::without_bias(in_channels, out_channels, kernel, params, init, vb)
}

/// `BatchNorm2d(channels)`: eps 1e-5, momentum 0.1, weight 1, bias 0.
fn bn(channels: usize, vb: VarBuilder) -> Result<BatchNorm2d> {
    BatchNorm2d::new(channels, vb)
}

fn conv_bn(
    conv: &Conv2d,
    norm: &BatchNorm2d,
    x: &Tensor,
    train: bool,
    (conv_name, norm_name): (&str, &str),
    trace: &mut Trace,
) -> Result<Tensor> {
    let y = conv.forward(x)?;
    trace.layer(conv_name, "Conv2D", (x, &y), (conv.parameter_count(), 0));
    let z = norm.forward_t(&y, train)?;
    trace.layer(norm_name, "BatchNorm2D", (&y, &z), norm.parameter_counts());
    Ok(z)
}
