//! AlexNet with a Bridge Attention gate on conv3.

use ba_core::model::ImageClassifier;
use ba_core::nn::BridgeAttention;
use ba_core::summary::Trace;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::trunk::{Trunk, CONV12_CHANNELS, CONV3_CHANNELS};
use crate::ModelConfig;

/// Reduction ratio of the BA gate.
const REDUCTION: usize = 16;

/// AlexNet whose `ba` module bridges the conv1 and conv2 outputs (after ReLU) into a channel
/// gate for conv3; the gate multiplies conv3's output before its ReLU and max-pool.
/// 7,529,258 values (batch-norm running statistics included), 7,529,210 trainable.
///
/// The original notebook computed this gate and then pooled the ungated tensor
/// (`x = x3 * attn` followed by `x = self.maxpool(self.relu3(x3))`), so its BA-AlexNet trained
/// as a plain AlexNet with dead weights. Here the gate is applied.
#[derive(Debug)]
pub struct BaAlexNet {
    trunk: Trunk,
    ba: BridgeAttention,
}

impl BaAlexNet {
    /// Creates the model's variables under `vb`.
    pub fn new(config: ModelConfig, vb: VarBuilder) -> Result<Self> {
        let trunk = Trunk::new(config, &vb)?;
        let ba = BridgeAttention::new(&[CONV12_CHANNELS, CONV12_CHANNELS], CONV3_CHANNELS, REDUCTION, vb.pp("ba"))?;
        Ok(Self { trunk, ba })
    }

    fn run(&self, images: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let block = self.trunk.block(images, trace)?;
        let previous = [&block.conv1, &block.conv2];
        let gate = if train {
            self.ba.forward_t(&previous, &block.conv3, true)?
        } else {
            trace.scoped("ba", |t| self.ba.forward_traced(&previous, &block.conv3, t))?
        };
        self.trunk.gated_head(&block.conv3, &gate, train, trace)
    }
}

impl ImageClassifier for BaAlexNet {
    fn forward_t(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.run(images, train, &mut Trace::off())
    }

    fn forward_traced(&self, images: &Tensor, trace: &mut Trace) -> Result<Tensor> {
        self.run(images, false, trace)
    }

    fn name(&self) -> &str {
        "ba-alexnet"
    }

    fn rng_positions(&self) -> Vec<u128> {
        self.trunk.rng_positions()
    }

    fn set_rng_positions(&self, positions: &[u128]) -> Result<()> {
        self.trunk.set_rng_positions(positions)
    }
}
