//! `cargo xtask`: the ba-net command line. Each verb lives in `cmd/`; `main.rs` only parses
//! and runs. A library as well as a binary so that the fuzz targets reach the argument and
//! recipe parsing ([`Cli`], [`Recipe`]).

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod allocator;
mod cmd;
mod comparison;
mod device;
mod estimate;
mod machine;
mod plot;
mod preset;
mod progress;
mod recipe_parts;
mod report;
mod run;
mod run_lock;
mod setup;
mod table;
mod trained;

use std::path::Path;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

pub use device::DeviceArg;
pub use preset::Recipe;

/// `--version`: the crate's version and the commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("BA_NET_COMMIT"), ")");

/// Whether Ctrl-C stopped a training verb (it then exits 130 after writing its checkpoint).
pub fn interrupted() -> bool {
    run::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// The command line: one verb and its options.
#[derive(Parser)]
#[command(name = "cargo xtask", about = "BA-Net on CIFAR-10: train, compare, make the data sample", version = VERSION)]
pub struct Cli {
    #[command(subcommand)]
    verb: Verb,
    /// Where tensors live: cpu, cuda, cuda:N, or auto (the first GPU when built with
    /// `--features cuda` and one is present, else the CPU). Verbs without model work ignore it.
    #[arg(long, global = true, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
}

#[derive(Subcommand)]
enum Verb {
    /// Train one model and write its run folder.
    Train(cmd::train::Args),
    /// Train several models (AlexNet and BA-AlexNet by default) under identical conditions and
    /// print the comparison.
    Compare(cmd::compare::Args),
    /// Rebuild the report of a comparison folder, or merge several comparison folders of the
    /// same recipe and models (other seeds) into one report.
    Report(cmd::report::Args),
    /// Accuracy, loss, per-class accuracy and confusion matrix of weights on the test set.
    Eval(cmd::eval::Args),
    /// Top classes of image files or test images by trained weights.
    Predict(cmd::predict::Args),
    /// The layer table of paddle.summary: layers, input and output shapes, parameters.
    Summary(cmd::summary::Args),
    /// Cut the committed CIFAR-10 sample from the full binary archive.
    MakeSample(cmd::make_sample::Args),
    /// Measure speed (`bench augment`: the data pipeline beside torchvision).
    Bench(cmd::bench::Args),
    /// Write a PNG grid of training images through the augmentation, as the model sees them.
    AugmentPreview(cmd::augment_preview::Args),
}

impl Cli {
    /// The checks `train` and `compare` make on their options before any work: their
    /// validated recipe, or none for the other verbs and for `--resume` (whose recipe is in
    /// the run folder).
    pub fn check(&self) -> Result<Option<Recipe>> {
        match &self.verb {
            Verb::Train(args) if args.resume.is_none() => Ok(Some(args.recipe.recipe()?)),
            Verb::Compare(args) if args.resume.is_none() => Ok(Some(cmd::compare::comparison(args)?.recipe)),
            _ => Ok(None),
        }
    }

    /// Runs the verb.
    pub fn run(self) -> Result<()> {
        run(self.verb, self.device)
    }
}

/// Parses the process's arguments, sets up logging (`RUST_LOG`, default `info`) and runs the verb.
/// Log lines go to stderr, coloured only on a terminal and never under `NO_COLOR`, so that
/// stdout holds the results alone.
pub fn main() -> Result<()> {
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    Cli::parse().run()
}

fn run(verb: Verb, device: DeviceArg) -> Result<()> {
    match verb {
        Verb::Train(args) => cmd::train::run(args, &device.open()?),
        Verb::Compare(args) => cmd::compare::run(args, &device.open()?),
        Verb::Report(args) => cmd::report::run(args, &device.open()?),
        Verb::Eval(args) => cmd::eval::run(args, &device.open()?),
        Verb::Predict(args) => cmd::predict::run(args, &device.open()?),
        Verb::Summary(args) => cmd::summary::run(args, &device.open()?),
        Verb::MakeSample(args) => cmd::make_sample::run(args),
        Verb::Bench(args) => cmd::bench::run(args, device),
        Verb::AugmentPreview(args) => cmd::augment_preview::run(args),
    }
}

/// Writes `value` as pretty JSON at `path`.
fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).with_context(|| format!("writing {}", path.display()))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
