//! `cargo xtask train`: trains one model and writes its run folder.

use anyhow::Result;
use ba_models::ModelKind;

use crate::preset::RecipeArgs;
use crate::run::{train_model, Setup};
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
    let setup = Setup::new(&args.recipe, &format!("train-{}", args.model))?;
    let summary = train_model(args.model, &setup.loaders, &setup.recipe, &setup.device, &setup.dir)?;
    crate::write_json(&setup.dir.join("summary.json"), &summary)?;
    println!("{}", comparison_table(std::slice::from_ref(&summary)));
    println!("run folder: {}", setup.dir.display());
    Ok(())
}
