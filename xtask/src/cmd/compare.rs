//! `cargo xtask compare`: trains AlexNet and BA-AlexNet under identical conditions and prints
//! the comparison table.

use anyhow::Result;
use ba_models::ModelKind;

use crate::preset::RecipeArgs;
use crate::run::{train_model, Control, Setup};
use crate::table::comparison_table;

/// Arguments of `compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    recipe: RecipeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let setup = Setup::new(&args.recipe, "compare")?;
    let (recipe, loaders, dir) = (&setup.recipe, &setup.loaders, &setup.dir);
    println!(
        "training alexnet and ba-alexnet on {} images an epoch from {}: {}",
        loaders.train.images_per_epoch(),
        recipe.data.display(),
        recipe.describe()
    );
    // One set of loaders: both models see the same images, order and augmentation draws.
    let mut runs = Vec::new();
    for kind in ModelKind::ALL {
        runs.push(train_model(kind, loaders, recipe, &setup.device, &dir.join(kind.name()), Control::default())?);
    }
    let table = comparison_table(&runs);
    let diff = runs[1].last().val.accuracy - runs[0].last().val.accuracy;
    let report = format!(
        "# AlexNet vs BA-AlexNet\n\nRecipe: `{}`\n\n{table}\nBA - AlexNet, final val acc: {diff:+.4} (one seed: not evidence of a difference by itself)\n",
        serde_json::to_string(recipe)?
    );
    std::fs::write(dir.join("report.md"), &report)?;
    crate::write_json(&dir.join("summary.json"), &runs)?;
    println!("\n{table}\nBA - AlexNet, final val acc: {diff:+.4}\nrun folder: {}", dir.display());
    Ok(())
}
