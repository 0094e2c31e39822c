//! `cargo xtask`: the ba-net command line. Each verb lives in `cmd/`.

mod cmd;
mod machine;
mod plot;
mod preset;
mod progress;
mod report;
mod run;
mod table;
mod trained;

use std::path::Path;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

/// Candle allocates a fresh buffer for every tensor op; with the system allocator each large
/// buffer is a new mapping whose pages fault on first touch. mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "BA-Net on CIFAR-10: train, compare, make the data sample")]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Train one model and write its run folder.
    Train(cmd::train::Args),
    /// Train AlexNet and BA-AlexNet under identical conditions and print the comparison.
    Compare(cmd::compare::Args),
    /// Rebuild the report of a comparison folder (tables, curves, prediction grids).
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

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_target(false)
        .init();
    match Cli::parse().verb {
        Verb::Train(args) => cmd::train::run(args),
        Verb::Compare(args) => cmd::compare::run(args),
        Verb::Report(args) => cmd::report::run(args),
        Verb::Eval(args) => cmd::eval::run(args),
        Verb::Predict(args) => cmd::predict::run(args),
        Verb::Summary(args) => cmd::summary::run(args),
        Verb::MakeSample(args) => cmd::make_sample::run(args),
        Verb::Bench(args) => cmd::bench::run(args),
        Verb::AugmentPreview(args) => cmd::augment_preview::run(args),
    }
}

/// Writes `value` as pretty JSON at `path`.
fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?).with_context(|| format!("writing {}", path.display()))
}
