//! `cargo xtask train`: trains one model and writes its run folder.

use anyhow::Result;
use ba_data::Cifar10;
use ba_models::ModelKind;
use candle_core::Device;

use crate::preset::RecipeArgs;
use crate::run::{train_model, Loaders};
use crate::table::comparison_table;

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture: alexnet or ba-alexnet.
    #[arg(long, default_value = "ba-alexnet")]
    model: ModelKind,
    #[command(flatten)]
    recipe: RecipeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let recipe = args.recipe.recipe()?;
    let data = Cifar10::open(&recipe.data)?;
    let device = Device::Cpu;
    let dir = crate::run_dir(&args.recipe.out, &format!("train-{}", args.model))?;
    crate::write_json(&dir.join("recipe.json"), &recipe)?;
    let loaders = Loaders::new(&data, &recipe, &device);
    let summary = train_model(args.model, &loaders, &recipe, &device, &dir)?;
    crate::write_json(&dir.join("summary.json"), &summary)?;
    println!("{}", comparison_table(std::slice::from_ref(&summary)));
    println!("run folder: {}", dir.display());
    Ok(())
}
