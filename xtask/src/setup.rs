//! What every training verb starts from: the validated recipe, the data, the device, the
//! loaders and a run folder of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ba_core::model::ParameterCount;
use ba_core::rng::derive_seed;
use ba_data::transforms::mixup::Mixup;
use ba_data::{Cifar10, Loader, LoaderConfig, Split, PREFETCHED_BATCHES};
use ba_models::{Family, ModelKind};
use ba_train::checkpoint::read_train_state;
use ba_train::memory::{available_memory, StepMemory};
use ba_train::CHECKPOINT;
use candle_core::Device;

use crate::preset::{Recipe, RecipeArgs};
use crate::recipe_parts::{test_transform, train_pipeline};
use crate::run_lock::RunLock;

/// The images of a run, shared by every loader over them.
#[derive(Clone)]
pub struct Data {
    pub train: Arc<Split>,
    pub test: Arc<Split>,
    /// Class names, by label.
    pub classes: Vec<String>,
}

impl From<Cifar10> for Data {
    fn from(data: Cifar10) -> Self {
        Self { train: Arc::new(data.train), test: Arc::new(data.test), classes: data.classes }
    }
}

/// What every training verb starts from: the validated recipe, the data, the device and a
/// new run folder holding `recipe.json`.
pub struct Setup {
    pub recipe: Recipe,
    pub data: Data,
    pub device: Device,
    pub dir: PathBuf,
    /// This process's claim to write `dir`, held as long as the setup lives.
    _lock: RunLock,
}

impl Setup {
    /// Validates `args`, reads the data and creates `<out>/<name>-N`, to train on `device`.
    pub fn new(args: &RecipeArgs, name: &str, device: &Device) -> Result<Self> {
        let recipe = args.recipe()?;
        let data = Cifar10::open(&recipe.data)?.into();
        check_batch_size((recipe.batch_size, recipe.family()), &data, device)?;
        let dir = new_run_dir(&args.out, name)?;
        let _lock = RunLock::take(&dir)?;
        crate::write_json(&dir.join("recipe.json"), &recipe)?;
        Ok(Self { recipe, data, device: device.clone(), dir, _lock })
    }

    /// The setup of the existing run folder `dir`, from its `recipe.json` or, without it, from
    /// the recipe stored in a checkpoint (its own or a model's in a comparison).
    pub fn resume(dir: &Path, device: &Device) -> Result<Self> {
        let path = dir.join("recipe.json");
        let recipe: Recipe = if path.is_file() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            Recipe::from_json(&text, &path)?
        } else {
            let checkpoint = find_checkpoint(dir)
                .with_context(|| format!("{}: no recipe.json and no checkpoint to resume from", dir.display()))?;
            let state = read_train_state(&checkpoint)?;
            Recipe::from_json(&state.config.to_string(), &checkpoint)?
        };
        let _lock = RunLock::take(dir)?;
        crate::write_json(&path, &recipe)?;
        let data = Cifar10::open(&recipe.data)?.into();
        check_batch_size((recipe.batch_size, recipe.family()), &data, device)?;
        Ok(Self { recipe, data, device: device.clone(), dir: dir.to_path_buf(), _lock })
    }

    /// Loaders over the data for the recipe with `seed`.
    pub fn loaders(&self, seed: u64) -> Loaders {
        Loaders::new(&self.data, &Recipe { seed, ..self.recipe.clone() }, &self.device)
    }
}

/// Refuses, before any training, a batch size larger than the training set (every batch is
/// whole, so an epoch would have no step) or, on the CPU, whose training step would not fit in
/// the memory this machine has left (with the data already loaded), for any model of the
/// recipe's family. (On a
/// GPU an allocation that fails stops the run with CUDA's out-of-memory error.)
fn check_batch_size((batch_size, family): (usize, Family), data: &Data, device: &Device) -> Result<()> {
    if let (true, Some(available)) = (device.is_cpu(), available_memory()) {
        for kind in ModelKind::ALL.into_iter().filter(|k| k.family() == family) {
            let (vars, model) = crate::trained::fresh(kind, &Device::Cpu)?;
            let side = family.input_size();
            let image = (3, side, side);
            let step = StepMemory::of(model.as_ref(), image, ParameterCount::of(&vars).total, PREFETCHED_BATCHES)?;
            step.check(kind.name(), batch_size, available)?;
        }
    }
    if batch_size > data.train.len() {
        bail!(
            "--batch-size {batch_size} is larger than the {} training images: an epoch would have no step",
            data.train.len()
        );
    }
    Ok(())
}

/// A checkpoint in `dir` or in a run folder below it (a comparison's models).
fn find_checkpoint(dir: &Path) -> Option<PathBuf> {
    let direct = dir.join(CHECKPOINT);
    if direct.is_file() {
        return Some(direct);
    }
    let below = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d).map(|r| r.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default()
    };
    below(dir)
        .iter()
        .flat_map(|d| std::iter::once(d.clone()).chain(below(d)))
        .map(|d| d.join(CHECKPOINT))
        .find(|p| p.is_file())
}

/// A new run folder `<out>/<prefix>-<n>`, numbered past the existing ones so no run is overwritten.
pub fn new_run_dir(out: &Path, prefix: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for n in 1.. {
        let dir = out.join(format!("{prefix}-{n}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    unreachable!("an unbounded range always yields")
}

/// The loaders of a recipe. Both models of a comparison get loaders with the same seeds, so
/// they see the same images in the same order with the same augmentation.
pub struct Loaders {
    pub train: Loader,
    pub val: Loader,
}

impl Loaders {
    /// Loaders over `data` (shared, not copied).
    pub fn new(data: &Data, recipe: &Recipe, device: &Device) -> Self {
        let config = LoaderConfig {
            batch_size: recipe.batch_size,
            shuffle: true,
            drop_last: true,
            shuffle_seed: derive_seed(recipe.seed, "shuffle"),
            augment_seed: derive_seed(recipe.seed, "augment"),
            mixup: recipe.mixup_alpha.and_then(Mixup::new),
        };
        let train = Loader::new(data.train.clone(), train_pipeline(recipe), config, device.clone());
        let val = test_loader(data.test.clone(), recipe.batch_size, recipe.family(), device);
        Self { train, val }
    }
}

/// Every image of `split` once, in order, through `family`'s test transform (nothing random).
pub fn test_loader(split: Arc<Split>, batch_size: usize, family: Family, device: &Device) -> Loader {
    let config =
        LoaderConfig { batch_size, shuffle: false, drop_last: false, shuffle_seed: 0, augment_seed: 0, mixup: None };
    Loader::new(split, test_transform(family), config, device.clone())
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;
    use crate::preset::{Augment, OptimizerKind};

    pub fn subset(split: &Split, per_class: usize) -> Split {
        let mut out = Split::default();
        for i in split.first_per_class(per_class) {
            out.push(split.label(i), split.image(i));
        }
        out
    }

    pub fn tiny_setup() -> (Data, Recipe) {
        let full = Cifar10::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/cifar-10-sample")).unwrap();
        let data: Data =
            Cifar10 { train: subset(&full.train, 2), test: subset(&full.test, 1), classes: full.classes.clone() }
                .into();
        let recipe = Recipe {
            data: "unused".into(),
            sample: true,
            epochs: 2,
            batch_size: 8,
            lr: 1e-3,
            weight_decay: 1e-5,
            label_smoothing: 0.1,
            optimizer: OptimizerKind::Adam,
            momentum: 0.9,
            nesterov: false,
            warmup_epochs: 0,
            schedule: Default::default(),
            augment: Augment::Notebook,
            mixup_alpha: Some(1.5),
            precision: Default::default(),
            seed: 5,
        };
        (data, recipe)
    }
}
