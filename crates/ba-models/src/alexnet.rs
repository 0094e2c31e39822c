//! AlexNet as the BA-Net CIFAR-10 notebook defines it for 128x128 input, plain or with a
//! channel gate on conv3: Bridge Attention (BA-AlexNet) or its ablation, the same gate computed
//! from conv3 alone (SE-AlexNet).

use ba_core::model::ImageClassifier;
use ba_core::nn::BridgeAttention;
use ba_core::summary::Trace;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::trunk::{Trunk, CONV12_CHANNELS, CONV3_CHANNELS};
use crate::{Gate, ModelConfig};

/// Reduction ratio of the gate.
const REDUCTION: usize = 16;

/// AlexNet: conv 3->48 k11 s4 p5, conv 48->128 k5 p2 (each with ReLU and max-pool 3/2),
/// conv1 128->192, conv2 192->192, conv3 192->128 (k3 p1), ReLU, max-pool, and a
/// 1152-2048-2048-N classifier with dropout. 7,524,042 parameters for 10 classes.
///
/// With a gate, conv3's output (AlexNet's fifth convolution) is multiplied channel-wise by it
/// before its ReLU and max-pool:
///
/// - [`Gate::Bridge`] (`ba-alexnet`): the `ba` module bridges the conv1 and conv2 outputs into
///   the gate. 7,529,258 values (batch-norm running statistics included), 7,529,210 trainable.
///   The original notebook computed this gate and then pooled the ungated tensor
///   (`x = x3 * attn` followed by `x = self.maxpool(self.relu3(x3))`), so its BA-AlexNet trained
///   as a plain AlexNet with dead weights. Here the gate is applied.
/// - [`Gate::Squeeze`] (`se-alexnet`): the `se` module sees conv3 alone; the ablation that
///   separates "a gate" from "a bridge". 7,526,122 values, 7,526,106 trainable.
#[derive(Debug)]
pub struct AlexNet {
    trunk: Trunk,
    gate: Option<(Gate, BridgeAttention)>,
}

impl AlexNet {
    /// Plain AlexNet, its variables created under `vb`.
    pub fn new(config: ModelConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self { trunk: Trunk::new(config, &vb)?, gate: None })
    }

    /// AlexNet with `gate` on conv3, its variables created under `vb`: the trunk first, so
    /// that every gate starts from the same trunk weights as AlexNet under one seed.
    pub fn gated(gate: Gate, config: ModelConfig, vb: VarBuilder) -> Result<Self> {
        let trunk = Trunk::new(config, &vb)?;
        let earlier: &[usize] = match gate {
            Gate::Bridge => &[CONV12_CHANNELS, CONV12_CHANNELS],
            Gate::Squeeze => &[],
        };
        let module = BridgeAttention::new(earlier, CONV3_CHANNELS, REDUCTION, vb.pp(gate.module()))?;
        Ok(Self { trunk, gate: Some((gate, module)) })
    }

    fn run(&self, images: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let block = self.trunk.block(images, trace)?;
        let Some((kind, module)) = &self.gate else {
            return self.trunk.head(&block.conv3, train, trace);
        };
        let bridged = [&block.conv1, &block.conv2];
        let previous: &[&Tensor] = match kind {
            Gate::Bridge => &bridged,
            Gate::Squeeze => &[],
        };
        let gate = if train {
            module.forward_t(previous, &block.conv3, true)?
        } else {
            trace.scoped(kind.module(), |t| module.forward_traced(previous, &block.conv3, t))?
        };
        self.trunk.gated_head(&block.conv3, &gate, train, trace)
    }
}

impl ImageClassifier for AlexNet {
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.run(images, train, &mut Trace::off())
    }

    fn forward_traced(&self, images: &Tensor, trace: &mut Trace) -> Result<Tensor> {
        self.run(images, false, trace)
    }

    fn name(&self) -> &str {
        match self.gate {
            None => "alexnet",
            Some((Gate::Bridge, _)) => "ba-alexnet",
            Some((Gate::Squeeze, _)) => "se-alexnet",
        }
    }

    fn rng_positions(&self) -> Vec<u128> {
        self.trunk.rng_positions()
    }

    fn set_rng_positions(&self, positions: &[u128]) -> Result<()> {
        self.trunk.set_rng_positions(positions)
    }
}
