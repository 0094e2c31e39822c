//! # ba-models
//!
//! AlexNet, BA-AlexNet and its ablation SE-AlexNet for 3x128x128 images, as in the BA-Net
//! CIFAR-10 notebook, built on [`ba_core`] layers through a `VarBuilder`. Weight names follow the PyTorch `state_dict` of
//! the same module tree (`features.0.weight`, `conv1.bias`, `ba.cur_fusion.2.running_var`,
//! `classifier.6.weight`, ...), so checkpoints move between the two frameworks.
//!
//! ```no_run
//! use ba_models::{ModelKind, ModelConfig};
//! use candle_core::{DType, Device};
//! use candle_nn::VarMap;
//!
//! let vars = VarMap::new();
//! let vb = ba_core::init::SeededVarMap::builder(&vars, ba_core::rng::rng_for(42, "init"), DType::F32, &Device::Cpu);
//! let model = ModelKind::BaAlexNet.build(ModelConfig::cifar10(42), vb)?;
//! # Ok::<(), candle_core::Error>(())
//! ```

#![warn(clippy::unwrap_used, clippy::expect_used)]

mod alexnet;
mod trunk;

pub use alexnet::{AlexNet, Gate};

use std::fmt;
use std::str::FromStr;

use ba_core::model::ImageClassifier;
use ba_core::ops::Precision;
use candle_core::Result;
use candle_nn::VarBuilder;

/// Side of the square input images the models are built for.
pub const INPUT_SIZE: usize = 128;

/// What varies between instances of one architecture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelConfig {
    /// Number of output classes.
    pub num_classes: usize,
    /// Drop probability of the two classifier dropouts.
    pub dropout: f32,
    /// Seed of the dropout masks.
    pub dropout_seed: u64,
    /// The operands of the convolutions' and linear layers' products: f32, or bf16 for mixed
    /// precision (f32 weights, sums and everything else; see [`Precision`]).
    pub precision: Precision,
}

impl ModelConfig {
    /// The notebook's setting: 10 classes, dropout 0.5, f32.
    pub fn cifar10(dropout_seed: u64) -> Self {
        Self { num_classes: 10, dropout: 0.5, dropout_seed, precision: Precision::F32 }
    }
}

/// The architectures of this crate, by their command-line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// Plain AlexNet (`alexnet`).
    AlexNet,
    /// AlexNet with a squeeze-and-excitation gate on conv3, computed from conv3 alone
    /// (`se-alexnet`): BA-AlexNet without the bridge.
    SeAlexNet,
    /// AlexNet with a Bridge Attention gate on conv3 (AlexNet's fifth convolution), bridged
    /// from conv1 and conv2 (`ba-alexnet`).
    BaAlexNet,
}

impl ModelKind {
    /// Every architecture, baseline first.
    pub const ALL: [ModelKind; 3] = [ModelKind::AlexNet, ModelKind::SeAlexNet, ModelKind::BaAlexNet];
    /// The notebook's comparison: AlexNet and BA-AlexNet.
    pub const NOTEBOOK: [ModelKind; 2] = [ModelKind::AlexNet, ModelKind::BaAlexNet];

    /// The command-line and file name of the architecture.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::AlexNet => "alexnet",
            ModelKind::SeAlexNet => "se-alexnet",
            ModelKind::BaAlexNet => "ba-alexnet",
        }
    }

    /// The name in prose and tables: `AlexNet`, `SE-AlexNet`, `BA-AlexNet`.
    pub fn title(self) -> &'static str {
        match self {
            ModelKind::AlexNet => "AlexNet",
            ModelKind::SeAlexNet => "SE-AlexNet",
            ModelKind::BaAlexNet => "BA-AlexNet",
        }
    }

    /// Builds the model, creating its variables under `vb`.
    pub fn build(self, config: ModelConfig, vb: VarBuilder) -> Result<Box<dyn ImageClassifier>> {
        Ok(match self {
            ModelKind::AlexNet => Box::new(AlexNet::new(config, vb)?),
            ModelKind::SeAlexNet => Box::new(AlexNet::gated(Gate::Squeeze, config, vb)?),
            ModelKind::BaAlexNet => Box::new(AlexNet::gated(Gate::Bridge, config, vb)?),
        })
    }

    /// The architecture whose `state_dict` holds tensors named `names`, or why none does.
    pub fn recognise<'a>(names: impl IntoIterator<Item = &'a str>) -> std::result::Result<Self, String> {
        let names: Vec<&str> = names.into_iter().collect();
        if !names.contains(&"features.0.weight") {
            return Err("no features.0.weight, so not the weights of AlexNet, SE-AlexNet or BA-AlexNet".into());
        }
        let has = |module: &str| names.iter().any(|n| n.starts_with(module));
        match (has("ba."), has("se.")) {
            (true, true) => Err("holds both a ba. and an se. gate, which no model has".into()),
            (true, false) => Ok(ModelKind::BaAlexNet),
            (false, true) => Ok(ModelKind::SeAlexNet),
            (false, false) => Ok(ModelKind::AlexNet),
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown model {s:?}: expected one of alexnet, se-alexnet, ba-alexnet"))
    }
}
