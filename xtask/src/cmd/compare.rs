//! `cargo xtask compare`: trains several models (AlexNet and BA-AlexNet by default) under
//! identical conditions, for one seed or several, and writes the report; `--resume` continues
//! an interrupted comparison.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ba_models::ModelKind;
use candle_core::Device;

use crate::comparison::{run_folder, Comparison};
use crate::estimate::Estimate;
use crate::preset::RecipeArgs;
use crate::report;
use crate::run::{resume_hint, stop_on_ctrl_c, train_model, Control};
use crate::setup::Setup;
use ba_train::CHECKPOINT;

/// Arguments of `compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Continue the comparison in this folder: each model from its checkpoint, or from the
    /// start if it had not begun (its recipe, seeds and models; other options are ignored).
    #[arg(long, value_name = "RUN_DIR")]
    pub(crate) resume: Option<PathBuf>,
    /// Models to compare: alexnet, se-alexnet (the gate on conv3 alone), ba-alexnet (the
    /// bridge); or ResNets of one recipe (resnet20, se-resnet20, ba-resnet20, ... at depths 20,
    /// 32, 56, 110, with `--config docs/recipes/cifar-resnet.toml`); every pair's paired
    /// difference is reported.
    #[arg(long, value_delimiter = ',', default_values = ["alexnet", "ba-alexnet"])]
    models: Vec<ModelKind>,
    /// Seeds to repeat the comparison with, e.g. 42,43,44 (paired: both models per seed)
    /// [default: --seed].
    #[arg(long, value_delimiter = ',', conflicts_with = "runs")]
    seeds: Vec<u64>,
    /// Repeat with this many seeds: --seed, --seed + 1, ...
    #[arg(long)]
    runs: Option<u64>,
    #[command(flatten)]
    pub(crate) recipe: RecipeArgs,
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    let (setup, comparison) = match &args.resume {
        Some(dir) => {
            let setup = Setup::resume(dir, device)?;
            let comparison = Comparison::read(dir)?;
            (setup, comparison)
        }
        None => {
            let comparison = comparison(&args)?;
            // recipe.json holds the first seed; each model's checkpoint its own.
            let setup = Setup::new(
                &RecipeArgs { seed: Some(comparison.recipe.seed), ..args.recipe.clone() },
                "compare",
                device,
            )?;
            comparison.write_lists(&setup.dir)?;
            (setup, comparison)
        }
    };
    let (recipe, dir, seeds) = (&setup.recipe, &setup.dir, &comparison.seeds);
    eprintln!(
        "training {} on {} images an epoch from {}: {}",
        comparison.models.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "),
        setup.data.train.len() / recipe.batch_size * recipe.batch_size,
        recipe.data.display(),
        recipe.describe_with_seeds(seeds)
    );
    if args.resume.is_none() {
        let estimate = Estimate::measure(&comparison.models, seeds.len(), recipe, &setup.data, &setup.device)?;
        eprintln!("{}", estimate.describe());
    }
    stop_on_ctrl_c()?;
    for &seed in seeds {
        // One set of loaders per seed: every model sees the same images, order, augmentation
        // and mixup draws.
        let loaders = setup.loaders(seed);
        let seed_recipe = crate::preset::Recipe { seed, ..recipe.clone() };
        for &kind in &comparison.models {
            let model_dir = run_folder(dir, seed, kind);
            if model_dir.join("final.safetensors").is_file() {
                continue;
            }
            let control = Control { resume: model_dir.join(CHECKPOINT).is_file(), ..Control::default() };
            let run = train_model(kind, &loaders, &seed_recipe, &setup.device, &model_dir, control)
                .with_context(|| resume_hint(dir, &model_dir.join(CHECKPOINT), "cargo xtask compare --resume"))?;
            if run.epochs.len() < recipe.epochs {
                println!(
                    "stopped during {kind}, seed {seed} (checkpoint written); continue with: cargo xtask compare --resume {}",
                    dir.display()
                );
                return Ok(());
            }
        }
    }
    eprintln!("measuring inference and drawing the report");
    let report = report::write(dir, &comparison, &setup.data, &setup.device)?;
    report::print(&report, dir);
    Ok(())
}

/// The comparison the options ask for, checked before any work.
pub(crate) fn comparison(args: &Args) -> Result<Comparison> {
    let recipe = args.recipe.recipe()?;
    let seeds = seeds(args, recipe.seed)?;
    Comparison::new(&recipe, seeds, &args.models)
}

/// Most seeds one comparison may ask for (each costs a training run per model).
const MAX_SEEDS: usize = 1000;

/// The seeds asked for: `--seeds`, or `--runs` from the recipe's seed (`first`), or that seed
/// alone.
pub(crate) fn seeds(args: &Args, first: u64) -> Result<Vec<u64>> {
    let seeds = match args.runs {
        Some(0) => bail!("--runs must be at least 1"),
        Some(n) if n > MAX_SEEDS as u64 => bail!("--runs must be at most {MAX_SEEDS}, got {n}"),
        Some(n) => (0..n)
            .map(|i| first.checked_add(i))
            .collect::<Option<_>>()
            .with_context(|| format!("--seed {first} plus --runs {n} passes the largest seed"))?,
        None if args.seeds.is_empty() => vec![first],
        None => args.seeds.clone(),
    };
    if seeds.len() > MAX_SEEDS {
        bail!("--seeds lists {} seeds; at most {MAX_SEEDS}", seeds.len());
    }
    let mut unique = seeds.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != seeds.len() {
        bail!("--seeds repeats a seed: {seeds:?}");
    }
    Ok(seeds)
}
