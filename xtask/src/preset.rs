//! The training recipe and the command-line options that override it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ba_core::ops::Precision;
use ba_models::{Family, ModelKind};
use serde::{Deserialize, Serialize};

/// Options shared by `train` and `compare`. Each recipe option left out comes from `--config`
/// when one is given, else from the notebook's recipe (the defaults shown).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RecipeArgs {
    /// A recipe file, TOML or JSON (by its extension: `.toml`, else JSON), with any of the
    /// fields of a run folder's `recipe.json`; options given on the command line override it.
    /// `--config runs/compare-1/recipe.json` reruns that run's recipe.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// CIFAR-10: a folder or .tar.gz of the binary or python version, or `hf://` (the Hugging
    /// Face Hub's uoft-cs/cifar10, downloaded once into the HF cache; honours HF_ENDPOINT,
    /// HF_HOME) [default: the sample committed in data/cifar-10-sample].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Epochs [default: 8 on the sample (five minutes for the default comparison on two cores),
    /// 100 otherwise, as the notebook].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Images per batch [default: 128].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate [default: 0.0001].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Optimizer: `adam` (coupled L2 decay, the notebook's), `adamw` (decoupled) or `sgd`
    /// [default: adam].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Momentum of SGD [default: 0.9].
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Nesterov momentum for SGD.
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay (coupled L2 for adam and sgd, decoupled for adamw) [default: 0.00001].
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f64>,
    /// Epochs of linear warm-up (from 1% of the rate) before the schedule [default: 0].
    #[arg(long)]
    pub warmup_epochs: Option<usize>,
    /// Learning-rate schedule after the warm-up, per step: `cosine` (to 0, the notebook's) or
    /// `steps` (divided by 10 at 50% and 75% of training, He et al.'s) [default: cosine].
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Label smoothing of the cross-entropy [default: 0.1].
    #[arg(long, allow_negative_numbers = true)]
    pub label_smoothing: Option<f64>,
    /// Training augmentation: `notebook` (resize 130, colour jitter, random resized crop 128,
    /// flip, rotation +-45, ImageNet statistics) or `simple` (resize 130, random crop 128, flip),
    /// both for the AlexNets; `cifar` (4-pixel zero padding, random crop 32, flip, CIFAR-10
    /// statistics) for the ResNets [default: notebook].
    #[arg(long, value_enum)]
    pub augment: Option<Augment>,
    /// Batch-level mixup with Beta(alpha, alpha) weights (the notebook's MixupImage)
    /// [default: 1.5].
    #[arg(long, allow_negative_numbers = true)]
    pub mixup_alpha: Option<f64>,
    /// Trains without mixup.
    #[arg(long)]
    pub no_mixup: bool,
    /// Operands of the convolutions' and linear layers' products: `f32`, or `bf16` for mixed
    /// precision (f32 weights, sums and everything else). A GPU multiplies bf16 on its tensor
    /// cores; the CPU only emulates it (operands rounded to bf16), more slowly than f32
    /// [default: f32].
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Run seed: fixes initialisation, data order, augmentation and dropout [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Folder that receives the run folder.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
}

/// A recipe file (`--config`): any of [`Recipe`]'s fields, none required, no others.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    data: Option<PathBuf>,
    /// Derived from `data`; accepted so that a run folder's `recipe.json` reads as it is.
    #[serde(rename = "sample")]
    _sample: Option<bool>,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    lr: Option<f64>,
    optimizer: Option<OptimizerKind>,
    momentum: Option<f64>,
    nesterov: Option<bool>,
    weight_decay: Option<f64>,
    warmup_epochs: Option<usize>,
    schedule: Option<ScheduleKind>,
    label_smoothing: Option<f64>,
    augment: Option<Augment>,
    /// `null` (JSON; TOML has none: `mixup = false`) for no mixup.
    #[serde(default, deserialize_with = "present")]
    mixup_alpha: Option<Option<f64>>,
    mixup: Option<bool>,
    #[serde(default, deserialize_with = "precision_named")]
    precision: Option<Precision>,
    seed: Option<u64>,
}

/// A field that is present, null or not: `Some(None)` for null (absent is the default, `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<f64>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// A precision by its command-line name.
fn precision_named<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Precision>, D::Error> {
    use serde::de::Error;
    Option::<String>::deserialize(d)?.map(|name| name.parse().map_err(D::Error::custom)).transpose()
}

impl RecipeFile {
    /// Reads `path`: TOML when its name ends in `.toml`, JSON otherwise. Errors name the file
    /// and, for an unknown field, the field.
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let is_toml = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let parsed: std::result::Result<Self, String> = if is_toml {
            toml::from_str(&text).map_err(|e| e.message().to_string())
        } else {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|e| anyhow::anyhow!("{}: not a recipe: {e}", path.display()))
    }
}

/// Epochs of the default run on the committed sample: as many as fit the default comparison
/// (two models) in five minutes on two cores in a slow hour (docs/results.md).
pub const SAMPLE_EPOCHS: usize = 8;
/// Epochs of the notebook's recipe.
pub const NOTEBOOK_EPOCHS: usize = 100;

/// Optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with coupled L2 weight decay (torch.optim.Adam, Paddle's Adam).
    Adam,
    /// Adam with decoupled weight decay (torch.optim.AdamW).
    AdamW,
    /// SGD with momentum (torch.optim.SGD).
    Sgd,
}

/// Training augmentations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Augment {
    /// The notebook's pipeline (128x128, the AlexNets).
    Notebook,
    /// A light pipeline for quick experiments (128x128, the AlexNets).
    Simple,
    /// He et al.'s CIFAR pipeline (32x32, the ResNets).
    Cifar,
}

impl Augment {
    /// The family of models whose images this pipeline makes.
    pub fn family(self) -> Family {
        match self {
            Augment::Notebook | Augment::Simple => Family::AlexNet,
            Augment::Cifar => Family::ResNet,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Augment::Notebook => "notebook",
            Augment::Simple => "simple",
            Augment::Cifar => "cifar",
        }
    }
}

/// Learning-rate schedules (after the warm-up), per optimizer step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Cosine annealing to 0.
    #[default]
    Cosine,
    /// The rate divided by 10 at 50% and 75% of training.
    Steps,
}

/// A complete, validated recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recipe {
    /// Where the images come from.
    pub data: PathBuf,
    /// Whether `data` is the committed sample (which selects the shorter default schedule).
    pub sample: bool,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    /// SGD's momentum and Nesterov flag (unused by the Adams).
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub warmup_epochs: usize,
    /// The schedule after the warm-up (cosine in recipes written before the option existed).
    #[serde(default)]
    pub schedule: ScheduleKind,
    pub label_smoothing: f64,
    pub augment: Augment,
    /// Mixup's alpha, or `None` without mixup.
    pub mixup_alpha: Option<f64>,
    /// The products' operands (`f32` in recipes written before the option existed).
    #[serde(default, with = "precision_by_name")]
    pub precision: Precision,
    pub seed: u64,
}

/// [`Precision`] in JSON by its command-line name (`"bf16"`).
mod precision_by_name {
    use ba_core::ops::Precision;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(precision: &Precision, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(precision.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Precision, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

impl Recipe {
    /// The recipe in one line, run with each of `seeds` (a comparison's; `[self.seed]` for one run).
    pub fn describe_with_seeds(&self, seeds: &[u64]) -> String {
        let mixup = self.mixup_alpha.map_or("no mixup".to_string(), |a| format!("mixup alpha {a}"));
        let augment = self.augment.name();
        let schedule = match self.schedule {
            ScheduleKind::Cosine => "cosine per step",
            ScheduleKind::Steps => "lr / 10 at 50% and 75%",
        };
        let optimizer = match self.optimizer {
            OptimizerKind::Adam => "adam".to_string(),
            OptimizerKind::AdamW => "adamw".to_string(),
            OptimizerKind::Sgd => {
                format!("sgd (momentum {}{})", self.momentum, if self.nesterov { ", nesterov" } else { "" })
            }
        };
        let warmup =
            if self.warmup_epochs > 0 { format!("{} warm-up epochs, ", self.warmup_epochs) } else { String::new() };
        let precision = match self.precision {
            Precision::F32 => "",
            Precision::Bf16 => ", mixed precision (bf16 products)",
        };
        let decay = match (self.weight_decay, self.optimizer) {
            (0.0, _) => String::new(),
            (d, OptimizerKind::AdamW) => format!(" (decoupled decay {d})"),
            (d, _) => format!(" (coupled L2 {d})"),
        };
        format!(
            "{} epochs, batch {}, {optimizer} lr {}{decay}, {warmup}{schedule}, label smoothing {}, {}, \
             {augment} augmentation, {mixup}{precision}",
            self.epochs,
            self.batch_size,
            self.lr,
            self.label_smoothing,
            match seeds {
                [one] => format!("seed {one}"),
                many => format!("seeds {}", many.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")),
            }
        )
    }
}

impl RecipeArgs {
    /// The recipe: the notebook's (over fewer epochs on the sample), then `--config`'s fields,
    /// then every option given on the command line. Invalid values are rejected before any work.
    pub fn recipe(&self) -> Result<Recipe> {
        let file = match &self.config {
            Some(path) => RecipeFile::read(path)?,
            None => RecipeFile::default(),
        };
        let data = self.data.clone().or(file.data).unwrap_or_else(|| PathBuf::from("data/cifar-10-sample"));
        let sample = data.ends_with("data/cifar-10-sample");
        let mixup_alpha = match (self.no_mixup, self.mixup_alpha, file.mixup, file.mixup_alpha) {
            (true, _, _, _) => None,
            (false, Some(alpha), _, _) => Some(alpha),
            (false, None, Some(false), _) => None,
            (false, None, _, Some(alpha)) => alpha,
            (false, None, _, None) => Some(1.5),
        };
        let recipe = Recipe {
            epochs: self.epochs.or(file.epochs).unwrap_or(if sample { SAMPLE_EPOCHS } else { NOTEBOOK_EPOCHS }),
            batch_size: self.batch_size.or(file.batch_size).unwrap_or(128),
            lr: self.lr.or(file.lr).unwrap_or(1e-4),
            optimizer: self.optimizer.or(file.optimizer).unwrap_or(OptimizerKind::Adam),
            momentum: self.momentum.or(file.momentum).unwrap_or(0.9),
            nesterov: self.nesterov || file.nesterov.unwrap_or(false),
            weight_decay: self.weight_decay.or(file.weight_decay).unwrap_or(1e-5),
            warmup_epochs: self.warmup_epochs.or(file.warmup_epochs).unwrap_or(0),
            schedule: self.schedule.or(file.schedule).unwrap_or_default(),
            label_smoothing: self.label_smoothing.or(file.label_smoothing).unwrap_or(0.1),
            augment: self.augment.or(file.augment).unwrap_or(Augment::Notebook),
            mixup_alpha,
            precision: self.precision.or(file.precision).unwrap_or(Precision::F32),
            seed: self.seed.or(file.seed).unwrap_or(42),
            data,
            sample,
        };
        match &self.config {
            Some(path) => recipe.validate().with_context(|| format!("{}: invalid recipe", path.display()))?,
            None => recipe.validate()?,
        }
        Ok(recipe)
    }
}

impl Recipe {
    /// Reads a recipe stored as JSON (a run folder's `recipe.json`) and validates it; errors
    /// name `origin`.
    pub fn from_json(text: &str, origin: &Path) -> Result<Self> {
        let recipe: Recipe =
            serde_json::from_str(text).with_context(|| format!("{}: not a recipe", origin.display()))?;
        recipe.validate().with_context(|| format!("{}: invalid recipe", origin.display()))?;
        Ok(recipe)
    }

    /// Rejects values no training run can use, naming the option that sets each.
    pub fn validate(&self) -> Result<()> {
        if self.data.to_str().is_none() {
            bail!("--data {}: the path is not valid UTF-8, so self.json cannot record it", self.data.display());
        }
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if self.batch_size < 2 {
            bail!("--batch-size must be at least 2 (batch norm needs two images), got {}", self.batch_size);
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            bail!("--weight-decay must be zero or positive, got {}", self.weight_decay);
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("--momentum must be in [0, 1), got {}", self.momentum);
        }
        if self.nesterov && (self.optimizer != OptimizerKind::Sgd || self.momentum == 0.0) {
            bail!("--nesterov needs --optimizer sgd and a positive --momentum");
        }
        if self.warmup_epochs >= self.epochs {
            bail!("--warmup-epochs ({}) must be fewer than --epochs ({})", self.warmup_epochs, self.epochs);
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            bail!("--label-smoothing must be in [0, 1), got {}", self.label_smoothing);
        }
        if let Some(alpha) = self.mixup_alpha.filter(|a| !(*a > 0.0 && a.is_finite())) {
            bail!("--mixup-alpha must be a positive number, got {alpha}");
        }
        Ok(())
    }

    /// The family of models this recipe's images are for.
    pub fn family(&self) -> Family {
        self.augment.family()
    }

    /// Refuses a model that does not take this recipe's images.
    pub fn check_model(&self, kind: ModelKind) -> Result<()> {
        if kind.family() != self.family() {
            let (want, size) = match kind.family() {
                Family::AlexNet => ("--augment notebook or simple", 128),
                Family::ResNet => ("--augment cifar (docs/recipes/cifar-resnet.toml)", 32),
            };
            bail!(
                "{kind} trains on {size}x{size} images, under {want}; this recipe's {} augmentation makes {}x{} \
                 images for other models",
                self.augment.name(),
                self.family().input_size(),
                self.family().input_size()
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        recipe: RecipeArgs,
    }

    fn recipe(args: &[&str]) -> Result<Recipe> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))?.recipe.recipe()
    }

    #[test]
    fn sample_and_full_data_get_their_defaults() {
        let quick = recipe(&[]).unwrap();
        assert!(quick.sample);
        assert_eq!((quick.epochs, quick.lr, quick.batch_size, quick.seed), (SAMPLE_EPOCHS, 1e-4, 128, 42));
        assert_eq!((quick.weight_decay, quick.label_smoothing, quick.optimizer), (1e-5, 0.1, OptimizerKind::Adam));
        assert_eq!((quick.augment, quick.mixup_alpha, quick.warmup_epochs), (Augment::Notebook, Some(1.5), 0));
        assert_eq!(recipe(&["--mixup-alpha", "0.4"]).unwrap().mixup_alpha, Some(0.4));
        let full = recipe(&["--data", "/data/cifar-10-binary.tar.gz"]).unwrap();
        assert!(!full.sample);
        assert_eq!((full.epochs, full.lr, full.weight_decay, full.label_smoothing), (100, 1e-4, 1e-5, 0.1));
        assert_eq!((full.augment, full.mixup_alpha), (Augment::Notebook, Some(1.5)));
        // The sample's recipe is the notebook's but for the number of epochs.
        let without_schedule = |r: &Recipe| {
            let mut v = serde_json::to_value(r).unwrap();
            for field in ["data", "sample", "epochs"] {
                v.as_object_mut().unwrap().remove(field);
            }
            v
        };
        assert_eq!(without_schedule(&quick), without_schedule(&full));
        let plain = recipe(&["--no-mixup", "--augment", "simple"]).unwrap();
        assert_eq!((plain.augment, plain.mixup_alpha), (Augment::Simple, None));
        let custom = recipe(&["--epochs", "7", "--lr", "0.01", "--seed", "3", "--batch-size", "64"]).unwrap();
        assert_eq!((custom.epochs, custom.lr, custom.seed, custom.batch_size), (7, 0.01, 3, 64));
        assert_eq!(quick.precision, Precision::F32);
        let mixed = recipe(&["--precision", "bf16"]).unwrap();
        assert_eq!(mixed.precision, Precision::Bf16);
        assert!(mixed.describe_with_seeds(&[1]).ends_with("mixed precision (bf16 products)"));
        let err = recipe(&["--precision", "fp16"]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("expected f32 or bf16"), "{err}");
    }

    #[test]
    fn invalid_values_are_rejected_before_any_work() {
        for (args, message) in [
            (&["--epochs", "0"][..], "--epochs must be at least 1"),
            (&["--batch-size", "1"][..], "--batch-size must be at least 2"),
            (&["--lr", "-0.1"][..], "--lr must be a positive number"),
            (&["--lr", "NaN"][..], "--lr must be a positive number"),
            (&["--label-smoothing", "1"][..], "--label-smoothing must be in [0, 1)"),
            (&["--mixup-alpha", "0"][..], "--mixup-alpha must be a positive number"),
            (&["--nesterov"][..], "--nesterov needs --optimizer sgd"),
            (&["--warmup-epochs", "8"][..], "--warmup-epochs (8) must be fewer than --epochs (8)"),
            (&["--optimizer", "sgd", "--momentum", "1.5"][..], "--momentum must be in [0, 1)"),
        ] {
            let err = recipe(args).unwrap_err().to_string();
            assert!(err.contains(message), "{args:?}: {err}");
        }
        // Found by the `cli` fuzz target: a path that recipe.json cannot hold.
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let data = std::ffi::OsStr::from_bytes(b"data/\xb3\xb3");
            let cli = Cli::try_parse_from([std::ffi::OsStr::new("x"), std::ffi::OsStr::new("--data"), data]).unwrap();
            let err = cli.recipe.recipe().unwrap_err().to_string();
            assert!(err.contains("the path is not valid UTF-8"), "{err}");
        }
    }

    /// `recipe(args)` with `--config` a file holding `text`, named `name`.
    fn with_config(name: &str, text: &str, args: &[&str]) -> Result<Recipe> {
        let dir = std::env::temp_dir().join(format!("xtask-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        let recipe = recipe(&[&["--config", &path][..], args].concat());
        std::fs::remove_dir_all(&dir).unwrap();
        recipe
    }

    #[test]
    fn a_config_file_sets_the_recipe_and_the_command_line_overrides_it() {
        // A run folder's recipe.json, read back as a config, is the same recipe.
        let stored = recipe(&["--epochs", "3", "--lr", "0.002", "--no-mixup", "--seed", "7"]).unwrap();
        let json = serde_json::to_string_pretty(&stored).unwrap();
        let again = with_config("recipe.json", &json, &[]).unwrap();
        assert_eq!(serde_json::to_value(&again).unwrap(), serde_json::to_value(&stored).unwrap());
        // TOML with some fields; the rest are the notebook's; flags win over the file.
        let toml =
            "data = \"/data/cifar-10-binary.tar.gz\"\nepochs = 10\nseed = 43\noptimizer = \"sgd\"\nmixup = false\n";
        let r = with_config("evidence.toml", toml, &[]).unwrap();
        assert_eq!((r.epochs, r.seed, r.optimizer, r.mixup_alpha, r.lr), (10, 43, OptimizerKind::Sgd, None, 1e-4));
        assert!(!r.sample);
        let r = with_config("evidence.toml", toml, &["--seed", "44", "--mixup-alpha", "0.4"]).unwrap();
        assert_eq!((r.epochs, r.seed, r.mixup_alpha), (10, 44, Some(0.4)));
        // JSON's null is no mixup; a precision by name.
        let r = with_config("r.json", r#"{"mixup_alpha": null, "precision": "bf16"}"#, &[]).unwrap();
        assert_eq!((r.mixup_alpha, r.precision, r.epochs), (None, Precision::Bf16, SAMPLE_EPOCHS));
    }

    #[test]
    fn the_example_recipes_are_the_runs_they_name() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/recipes");
        let read = |name: &str| {
            let path = docs.join(name).display().to_string();
            serde_json::to_value(recipe(&["--config", &path]).unwrap()).unwrap()
        };
        let full = "../shared/data/cifar-10-binary.tar.gz";
        assert_eq!(read("default-sample.toml"), serde_json::to_value(recipe(&[]).unwrap()).unwrap());
        assert_eq!(read("notebook-100-epochs.toml"), serde_json::to_value(recipe(&["--data", full]).unwrap()).unwrap());
        let evidence = recipe(&["--data", full, "--epochs", "10"]).unwrap();
        assert_eq!(read("full-evidence.toml"), serde_json::to_value(evidence).unwrap());
    }

    #[test]
    fn the_cifar_resnet_recipe_is_he_et_al_and_takes_only_resnets() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/recipes/cifar-resnet.toml");
        let r = recipe(&["--config", &path.display().to_string()]).unwrap();
        assert_eq!((r.augment, r.schedule, r.optimizer), (Augment::Cifar, ScheduleKind::Steps, OptimizerKind::Sgd));
        assert_eq!((r.lr, r.momentum, r.weight_decay, r.epochs, r.batch_size), (0.1, 0.9, 1e-4, 164, 128));
        assert_eq!((r.label_smoothing, r.mixup_alpha, r.warmup_epochs), (0.0, None, 0));
        assert!(r.describe_with_seeds(&[42]).contains("lr / 10 at 50% and 75%"));
        let resnet = ModelKind::ResNet { depth: 20, gate: None };
        r.check_model(resnet).unwrap();
        let err = r.check_model(ModelKind::BaAlexNet).unwrap_err().to_string();
        assert!(err.contains("ba-alexnet trains on 128x128 images") && err.contains("cifar augmentation"), "{err}");
        let err = recipe(&[]).unwrap().check_model(resnet).unwrap_err().to_string();
        assert!(err.contains("resnet20 trains on 32x32 images, under --augment cifar"), "{err}");
        // A stored recipe from before the schedule option reads as cosine.
        let text = serde_json::to_string(&recipe(&[]).unwrap()).unwrap();
        let old = text.replace(",\"schedule\":\"cosine\"", "");
        assert_ne!(old, text);
        assert_eq!(Recipe::from_json(&old, Path::new("r.json")).unwrap().schedule, ScheduleKind::Cosine);
    }

    #[test]
    fn a_config_file_with_an_unknown_field_or_a_bad_value_is_refused_naming_it() {
        let err = format!("{:#}", with_config("typo.toml", "epochs = 3\nlearning_rate = 0.1\n", &[]).unwrap_err());
        assert!(err.contains("typo.toml: not a recipe") && err.contains("learning_rate"), "{err}");
        let err = format!("{:#}", with_config("typo.json", r#"{"epoch": 3}"#, &[]).unwrap_err());
        assert!(err.contains("typo.json: not a recipe") && err.contains("epoch"), "{err}");
        let err = format!("{:#}", with_config("bad.toml", "epochs = 0\n", &[]).unwrap_err());
        assert!(err.contains("bad.toml: invalid recipe: --epochs must be at least 1"), "{err}");
        let err = format!("{:#}", recipe(&["--config", "/nonexistent/recipe.toml"]).unwrap_err());
        assert!(err.contains("reading /nonexistent/recipe.toml"), "{err}");
    }

    #[test]
    fn a_stored_recipe_round_trips_and_is_validated() {
        let good = recipe(&["--epochs", "5", "--warmup-epochs", "1"]).unwrap();
        let text = serde_json::to_string(&good).unwrap();
        let read = Recipe::from_json(&text, Path::new("run/recipe.json")).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), text);
        let bad = text.replace("\"warmup_epochs\":1", "\"warmup_epochs\":5");
        assert_ne!(bad, text);
        let err = format!("{:#}", Recipe::from_json(&bad, Path::new("run/recipe.json")).unwrap_err());
        assert!(err.contains("run/recipe.json: invalid recipe: --warmup-epochs (5) must be fewer"), "{err}");
        let err = format!("{:#}", Recipe::from_json("{\"epochs\": 3}", Path::new("run/recipe.json")).unwrap_err());
        assert!(err.contains("run/recipe.json: not a recipe"), "{err}");

        // The precision is stored by name; recipes from before the option read as f32.
        let mixed = recipe(&["--precision", "bf16"]).unwrap();
        let text = serde_json::to_string(&mixed).unwrap();
        assert!(text.contains("\"precision\":\"bf16\""), "{text}");
        assert_eq!(Recipe::from_json(&text, Path::new("r.json")).unwrap().precision, Precision::Bf16);
        let old = text.replace(",\"precision\":\"bf16\"", "");
        assert_ne!(old, text);
        assert_eq!(Recipe::from_json(&old, Path::new("r.json")).unwrap().precision, Precision::F32);
        let err = format!("{:#}", Recipe::from_json(&text.replace("bf16", "f8"), Path::new("r.json")).unwrap_err());
        assert!(err.contains("unknown precision \"f8\""), "{err}");
    }
}
