//! `cargo xtask train`: trains one model and writes its run folder, or continues one.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ba_models::ModelKind;
use ba_train::checkpoint::read_train_state;
use ba_train::CHECKPOINT;
use candle_core::Device;

use crate::estimate::Estimate;
use crate::preset::RecipeArgs;
use crate::run::{resume_hint, stop_on_ctrl_c, train_model, Control};
use crate::setup::Setup;
use crate::table::comparison_table;

/// Arguments of `train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Architecture: alexnet, se-alexnet, ba-alexnet, or a ResNet (resnet20, se-resnet20,
    /// ba-resnet20, ... at depths 20, 32, 56, 110; with `--config docs/recipes/cifar-resnet.toml`).
    #[arg(long, default_value = "ba-alexnet")]
    model: ModelKind,
    /// Continue the run in this folder from its last checkpoint (its recipe and model; other
    /// options are ignored).
    #[arg(long, value_name = "RUN_DIR")]
    pub(crate) resume: Option<PathBuf>,
    /// Stop after this epoch, keeping the checkpoint (continue later with --resume).
    #[arg(long, value_name = "EPOCH")]
    pause_after: Option<usize>,
    #[command(flatten)]
    pub(crate) recipe: RecipeArgs,
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    let (setup, model) = match &args.resume {
        Some(dir) => {
            let state = read_train_state(&dir.join(CHECKPOINT))?;
            eprintln!("resuming {} after epoch {} (step {})", dir.display(), state.epochs_done, state.steps);
            (Setup::resume(dir, device)?, state.model.parse().map_err(anyhow::Error::msg)?)
        }
        None => {
            args.recipe.recipe()?.check_model(args.model)?;
            (Setup::new(&args.recipe, &format!("train-{}", args.model), device)?, args.model)
        }
    };
    if args.resume.is_none() {
        let estimate = Estimate::measure(&[model], 1, &setup.recipe, &setup.data, &setup.device)?;
        eprintln!("{}", estimate.describe());
    }
    stop_on_ctrl_c()?;
    let control = Control { resume: args.resume.is_some(), pause_after: args.pause_after, ..Control::default() };
    let summary =
        train_model(model, &setup.loaders(setup.recipe.seed), &setup.recipe, &setup.device, &setup.dir, control)
            .with_context(|| resume_hint(&setup.dir, &setup.dir.join(CHECKPOINT), "cargo xtask train --resume"))?;
    if summary.epochs.len() < setup.recipe.epochs {
        println!(
            "stopped with {} of {} epochs done (checkpoint written); continue with: cargo xtask train --resume {}",
            summary.epochs.len(),
            setup.recipe.epochs,
            setup.dir.display()
        );
    }
    crate::write_json(&setup.dir.join("summary.json"), &summary)?;
    // Stopped during the first epoch: there is no epoch to show yet.
    if !summary.epochs.is_empty() {
        println!("{}", comparison_table(std::slice::from_ref(&summary)));
    }
    println!("run folder: {}", setup.dir.display());
    Ok(())
}
