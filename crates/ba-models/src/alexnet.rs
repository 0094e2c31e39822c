//! AlexNet as the BA-Net CIFAR-10 notebook defines it for 128x128 input.

use ba_core::model::ImageClassifier;
use ba_core::summary::Trace;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use crate::trunk::Trunk;
use crate::ModelConfig;

/// AlexNet: conv 3->48 k11 s4 p5, conv 48->128 k5 p2 (each with ReLU and max-pool 3/2),
/// conv1 128->192, conv2 192->192, conv3 192->128 (k3 p1), ReLU, max-pool, and a
/// 1152-2048-2048-N classifier with dropout. 7,524,042 parameters for 10 classes.
#[derive(Debug)]
pub struct AlexNet {
    trunk: Trunk,
}

impl AlexNet {
    /// Creates the model's variables under `vb`.
    pub fn new(config: ModelConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self { trunk: Trunk::new(config, &vb)? })
    }

    fn run(&self, images: &Tensor, train: bool, trace: &mut Trace) -> Result<Tensor> {
        let block = self.trunk.block(images, trace)?;
        self.trunk.head(&block.conv3, train, trace)
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
        "alexnet"
    }

    fn rng_positions(&self) -> Vec<u128> {
        self.trunk.rng_positions()
    }

    fn set_rng_positions(&self, positions: &[u128]) -> Result<()> {
        self.trunk.set_rng_positions(positions)
    }
}
