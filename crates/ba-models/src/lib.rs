//! # ba-models
//!
//! AlexNet, BA-AlexNet and its ablation SE-AlexNet for 3x128x128 images, as in the BA-Net
//! CIFAR-10 notebook, and the CIFAR ResNets of He et al. (depths 20, 32, 56, 110) plain, with
//! squeeze-and-excitation or with Bridge Attention in every block, for 3x32x32 images, built on
//! [`ba_core`] layers through a `VarBuilder`. Weight names follow the PyTorch `state_dict` of
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
mod resnet;
mod trunk;

pub use alexnet::AlexNet;
pub use resnet::ResNet;

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

/// What the channel gate of a gated model looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gate {
    /// Bridge Attention: the block's earlier feature maps and the gated one, under the name
    /// `ba`.
    Bridge,
    /// Squeeze-and-excitation: the gated feature map alone, under the name `se`.
    Squeeze,
}

impl Gate {
    /// The module's name in the PyTorch `state_dict`.
    pub(crate) fn module(self) -> &'static str {
        match self {
            Gate::Bridge => "ba",
            Gate::Squeeze => "se",
        }
    }
}

/// The depths of the CIFAR ResNets this crate names (He et al. 2016, Table 6).
pub const RESNET_DEPTHS: [usize; 4] = [20, 32, 56, 110];

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
    /// A CIFAR ResNet of one of [`RESNET_DEPTHS`], plain (`resnet20`), with
    /// squeeze-and-excitation (`se-resnet20`) or with Bridge Attention (`ba-resnet20`) in every
    /// block.
    ResNet {
        /// 20, 32, 56 or 110.
        depth: usize,
        /// The blocks' gate.
        gate: Option<Gate>,
    },
}

/// The families of architectures: each trains on its own image size and recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// AlexNet, SE-AlexNet, BA-AlexNet: 128x128 images, the notebook's recipe.
    AlexNet,
    /// The CIFAR ResNets: 32x32 images, He et al.'s recipe.
    ResNet,
}

impl Family {
    /// Side of the square images the family is built and trained for.
    pub fn input_size(self) -> usize {
        match self {
            Family::AlexNet => INPUT_SIZE,
            Family::ResNet => 32,
        }
    }
}

/// Command-line names of the ResNets, by depth and gate (none, SE, BA).
const RESNET_NAMES: [[&str; 3]; 4] = [
    ["resnet20", "se-resnet20", "ba-resnet20"],
    ["resnet32", "se-resnet32", "ba-resnet32"],
    ["resnet56", "se-resnet56", "ba-resnet56"],
    ["resnet110", "se-resnet110", "ba-resnet110"],
];
/// Their titles.
const RESNET_TITLES: [[&str; 3]; 4] = [
    ["ResNet-20", "SE-ResNet-20", "BA-ResNet-20"],
    ["ResNet-32", "SE-ResNet-32", "BA-ResNet-32"],
    ["ResNet-56", "SE-ResNet-56", "BA-ResNet-56"],
    ["ResNet-110", "SE-ResNet-110", "BA-ResNet-110"],
];

const fn resnet(depth: usize, gate: Option<Gate>) -> ModelKind {
    ModelKind::ResNet { depth, gate }
}

impl ModelKind {
    /// The AlexNets, baseline first.
    pub const ALEXNETS: [ModelKind; 3] = [ModelKind::AlexNet, ModelKind::SeAlexNet, ModelKind::BaAlexNet];
    /// Every architecture: the AlexNets, then the ResNets by depth, each plain, SE, BA.
    pub const ALL: [ModelKind; 15] = [
        ModelKind::AlexNet,
        ModelKind::SeAlexNet,
        ModelKind::BaAlexNet,
        resnet(20, None),
        resnet(20, Some(Gate::Squeeze)),
        resnet(20, Some(Gate::Bridge)),
        resnet(32, None),
        resnet(32, Some(Gate::Squeeze)),
        resnet(32, Some(Gate::Bridge)),
        resnet(56, None),
        resnet(56, Some(Gate::Squeeze)),
        resnet(56, Some(Gate::Bridge)),
        resnet(110, None),
        resnet(110, Some(Gate::Squeeze)),
        resnet(110, Some(Gate::Bridge)),
    ];
    /// The notebook's comparison: AlexNet and BA-AlexNet.
    pub const NOTEBOOK: [ModelKind; 2] = [ModelKind::AlexNet, ModelKind::BaAlexNet];

    /// The family, which fixes the image size and the recipe.
    pub fn family(self) -> Family {
        match self {
            ModelKind::AlexNet | ModelKind::SeAlexNet | ModelKind::BaAlexNet => Family::AlexNet,
            ModelKind::ResNet { .. } => Family::ResNet,
        }
    }

    /// Position in the name tables of a ResNet: (depth index, gate index).
    fn resnet_index(depth: usize, gate: Option<Gate>) -> (usize, usize) {
        #[allow(clippy::expect_used)] // ResNet kinds are made only from RESNET_DEPTHS (ALL, from_str)
        let d = RESNET_DEPTHS.iter().position(|&x| x == depth).expect("a depth of RESNET_DEPTHS");
        let g = match gate {
            None => 0,
            Some(Gate::Squeeze) => 1,
            Some(Gate::Bridge) => 2,
        };
        (d, g)
    }

    /// The command-line and file name of the architecture.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::AlexNet => "alexnet",
            ModelKind::SeAlexNet => "se-alexnet",
            ModelKind::BaAlexNet => "ba-alexnet",
            ModelKind::ResNet { depth, gate } => {
                let (d, g) = Self::resnet_index(depth, gate);
                RESNET_NAMES[d][g]
            }
        }
    }

    /// The name in prose and tables: `AlexNet`, `SE-AlexNet`, `BA-AlexNet`, `BA-ResNet-20`.
    pub fn title(self) -> &'static str {
        match self {
            ModelKind::AlexNet => "AlexNet",
            ModelKind::SeAlexNet => "SE-AlexNet",
            ModelKind::BaAlexNet => "BA-AlexNet",
            ModelKind::ResNet { depth, gate } => {
                let (d, g) = Self::resnet_index(depth, gate);
                RESNET_TITLES[d][g]
            }
        }
    }

    /// Builds the model, creating its variables under `vb`.
    pub fn build(self, config: ModelConfig, vb: VarBuilder) -> Result<Box<dyn ImageClassifier>> {
        Ok(match self {
            ModelKind::AlexNet => Box::new(AlexNet::new(config, vb)?),
            ModelKind::SeAlexNet => Box::new(AlexNet::gated(Gate::Squeeze, config, vb)?),
            ModelKind::BaAlexNet => Box::new(AlexNet::gated(Gate::Bridge, config, vb)?),
            ModelKind::ResNet { depth, gate } => Box::new(ResNet::new(self.name(), depth, gate, config, vb)?),
        })
    }

    /// The architecture whose `state_dict` holds tensors named `names`, or why none does.
    pub fn recognise<'a>(names: impl IntoIterator<Item = &'a str>) -> std::result::Result<Self, String> {
        let names: Vec<&str> = names.into_iter().collect();
        let has = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
        let gate = match (
            has("ba.") || names.iter().any(|n| n.contains(".ba.")),
            has("se.") || names.iter().any(|n| n.contains(".se.")),
        ) {
            (true, true) => return Err("holds both a ba. and an se. gate, which no model has".into()),
            (true, false) => Some(Gate::Bridge),
            (false, true) => Some(Gate::Squeeze),
            (false, false) => None,
        };
        if names.contains(&"features.0.weight") {
            return Ok(match gate {
                None => ModelKind::AlexNet,
                Some(Gate::Squeeze) => ModelKind::SeAlexNet,
                Some(Gate::Bridge) => ModelKind::BaAlexNet,
            });
        }
        if names.contains(&"conv1.weight") && names.contains(&"fc.weight") {
            let blocks =
                (1..).take_while(|b| names.contains(&format!("layer1.{}.conv1.weight", b - 1).as_str())).count();
            let depth = 6 * blocks + 2;
            if !RESNET_DEPTHS.contains(&depth) {
                return Err(format!(
                    "a ResNet of {blocks} blocks per stage (depth {depth}), which is none of {RESNET_DEPTHS:?}"
                ));
            }
            return Ok(resnet(depth, gate));
        }
        Err("neither features.0.weight nor conv1.weight and fc.weight, so the weights of none of AlexNet, SE-AlexNet, BA-AlexNet or the ResNets".into())
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
        ModelKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = ModelKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown model {s:?}: expected one of {}", names.join(", "))
        })
    }
}
