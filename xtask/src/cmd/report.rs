//! `cargo xtask report`: rebuilds the report of a finished comparison folder (tables, curves,
//! prediction grids; inference is measured again on this machine).

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;

use crate::report;
use crate::run::Setup;

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A folder written by `cargo xtask compare`.
    #[arg(value_name = "RUN_DIR")]
    dir: PathBuf,
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    let setup = Setup::resume(&args.dir, device)?;
    let seeds = crate::cmd::compare::read_seeds(&args.dir)?;
    let report = report::write(&args.dir, &setup.recipe, &seeds, &setup.data, &setup.device)?;
    report::print(&report, &args.dir);
    Ok(())
}
