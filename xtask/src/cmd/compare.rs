//! `cargo xtask compare`: trains AlexNet and BA-AlexNet under identical conditions and prints
//! the comparison table; `--resume` continues an interrupted comparison.

use std::path::PathBuf;

use anyhow::Result;
use ba_models::ModelKind;

use crate::preset::RecipeArgs;
use crate::run::{stop_on_ctrl_c, train_model, Control, Setup, CHECKPOINT};
use crate::table::comparison_table;

/// Arguments of `compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Continue the comparison in this folder: each model from its checkpoint, or from the
    /// start if it had not begun (its recipe; other options are ignored).
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    #[command(flatten)]
    recipe: RecipeArgs,
}

pub fn run(args: Args) -> Result<()> {
    let setup = match &args.resume {
        Some(dir) => Setup::resume(dir)?,
        None => Setup::new(&args.recipe, "compare")?,
    };
    let (recipe, loaders, dir) = (&setup.recipe, &setup.loaders, &setup.dir);
    println!(
        "training alexnet and ba-alexnet on {} images an epoch from {}: {}",
        loaders.train.images_per_epoch(),
        recipe.data.display(),
        recipe.describe()
    );
    stop_on_ctrl_c()?;
    // One set of loaders: both models see the same images, order and augmentation draws.
    let mut runs = Vec::new();
    for kind in ModelKind::ALL {
        let model_dir = dir.join(kind.name());
        let control = Control { resume: model_dir.join(CHECKPOINT).is_file(), ..Control::default() };
        let run = train_model(kind, loaders, recipe, &setup.device, &model_dir, control)?;
        if run.epochs.len() < recipe.epochs {
            println!(
                "stopped during {kind} (checkpoint written); continue with: cargo xtask compare --resume {}",
                dir.display()
            );
            return Ok(());
        }
        runs.push(run);
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
