//! AlexNet with a channel gate on conv3: Bridge Attention (BA-AlexNet) or its ablation, the
//! same gate computed from conv3 alone (SE-AlexNet).

use ba_core::model::ImageClassifier;
use ba_core::nn::BridgeAttention;
use ba_core::summary::Trace;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::trunk::{Trunk, CONV12_CHANNELS, CONV3_CHANNELS};
use crate::ModelConfig;

/// Reduction ratio of the gate.
const REDUCTION: usize = 16;

/// What the gate on conv3 looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Bridge Attention: conv1 and conv2 (after ReLU) and conv3, under the name `ba`.
    Bridge,
    /// Squeeze-and-excitation: conv3 alone, under the name `se` (a [`BridgeAttention`] with no
    /// earlier feature maps: GAP, 1x1 conv, BN, ReLU, 1x1 conv, sigmoid).
    Squeeze,
}

impl Gate {
    /// The module's name in the PyTorch `state_dict`.
    fn module(self) -> &'static str {
        match self {
            Gate::Bridge => "ba",
            Gate::Squeeze => "se",
        }
    }
}

/// AlexNet whose conv3 output (AlexNet's fifth convolution) is multiplied channel-wise by a
/// gate before its ReLU and max-pool. conv1..conv3 are AlexNet's third to fifth convolutions.
///
/// - [`Gate::Bridge`] (`ba-alexnet`): the `ba` module bridges the conv1 and conv2 outputs into
///   the gate. 7,529,258 values (batch-norm running statistics included), 7,529,210 trainable.
///   The original notebook computed this gate and then pooled the ungated tensor
///   (`x = x3 * attn` followed by `x = self.maxpool(self.relu3(x3))`), so its BA-AlexNet trained
///   as a plain AlexNet with dead weights. Here the gate is applied.
/// - [`Gate::Squeeze`] (`se-alexnet`): the `se` module sees conv3 alone; the ablation that
///   separates "a gate" from "a bridge". 7,526,122 values, 7,526,106 trainable.
#[derive(Debug)]
pub struct GatedAlexNet {
    trunk: Trunk,
    gate: BridgeAttention,
    kind: Gate,
}

impl GatedAlexNet {
    /// Creates the model's variables under `vb`: the trunk first, so that every gate starts
    /// from the same trunk weights as AlexNet under one seed.
    pub fn new(kind: Gate, config: ModelConfig, vb: VarBuilder) -> Result<Self> {
        let trunk = Trunk::new(config, &vb)?;
        let earlier: &[usize] = match kind {
            Gate::Bridge => &[CONV12_CHANNELS, CONV12_CHANNELS],
            Gate::Squeeze => &[],
        };
        let gate = BridgeAttention::new(earlier, CONV3_CHANNELS, REDUCTION, vb.pp(kind.module()))?;
        Ok(Self { trunk, gate, kind })
    }

    fn run(&self, images: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let block = self.trunk.block(images, trace)?;
        let bridged = [&block.conv1, &block.conv2];
        let previous: &[&Tensor] = match self.kind {
            Gate::Bridge => &bridged,
            Gate::Squeeze => &[],
        };
        let gate = if train {
            self.gate.forward_t(previous, &block.conv3, true)?
        } else {
            trace.scoped(self.kind.module(), |t| self.gate.forward_traced(previous, &block.conv3, t))?
        };
        self.trunk.gated_head(&block.conv3, &gate, train, trace)
    }
}

impl ImageClassifier for GatedAlexNet {
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.run(images, train, &mut Trace::off())
    }

    fn forward_traced(&self, images: &Tensor, trace: &mut Trace) -> Result<Tensor> {
        self.run(images, false, trace)
    }

    fn name(&self) -> &str {
        match self.kind {
            Gate::Bridge => "ba-alexnet",
            Gate::Squeeze => "se-alexnet",
        }
    }

    fn rng_positions(&self) -> Vec<u128> {
        self.trunk.rng_positions()
    }

    fn set_rng_positions(&self, positions: &[u128]) -> Result<()> {
        self.trunk.set_rng_positions(positions)
    }
}
