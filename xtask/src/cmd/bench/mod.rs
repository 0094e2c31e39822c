//! `cargo xtask bench`: speed measured side by side with the PyTorch ecosystem in one
//! invocation, reported as ratios (docs/benchmarks.md).

mod augment;
mod epoch;
mod train;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::allocator::keep_freed_memory_in;
use crate::DeviceArg;

/// Arguments of `bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// The training augmentation pipeline (and the loader that runs it) beside torchvision.
    Augment(augment::AugmentArgs),
    /// A training step (forward, backward, optimizer) and inference of both models on the
    /// CPU beside the same models in PyTorch, with peak memory and GFLOP/s against the GEMM peak.
    Train(train::TrainArgs),
    /// One epoch of a recipe (data loading and augmentation included) for both models on
    /// --device, beside the same epoch of the PyTorch reference on the same device.
    Epoch(Box<epoch::EpochArgs>),
}

pub fn run(args: Args, device: DeviceArg) -> Result<()> {
    match args.what {
        What::Augment(a) => augment::run(a),
        What::Train(_) if matches!(device, DeviceArg::Cuda(_)) => {
            bail!("bench train measures the CPU; `bench epoch --device {device}` measures a GPU")
        }
        What::Train(a) => train::run(a),
        What::Epoch(a) => epoch::run(*a, &device.open()?),
    }
}

/// Timed repetitions of each throughput measurement; the fastest counts (this VM's neighbours
/// steal time, which only ever slows a run down).
const REPEATS: usize = 3;

/// Seconds of the fastest of `repeats` runs of `f`.
fn best_of(repeats: usize, mut f: impl FnMut()) -> f64 {
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// The JSON lines a reference script prints, or none with a note on stderr when it cannot run
/// (no such Python, or one without torch). The script runs with our allocator settings.
fn reference_lines(python: &Path, script: &str, args: &[String]) -> Option<Vec<serde_json::Value>> {
    let mut command = Command::new(python);
    let output = match keep_freed_memory_in(&mut command).arg(script).args(args).output() {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").to_string();
            eprintln!("PyTorch reference skipped: {script} failed: {why}");
            return None;
        }
        Err(e) => {
            eprintln!("PyTorch reference skipped: cannot run {}: {e}", python.display());
            return None;
        }
    };
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .collect(),
    )
}
