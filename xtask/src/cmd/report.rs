//! `cargo xtask report`: rebuilds the report of a finished comparison folder (tables, curves,
//! paired differences, prediction grids; inference is measured again on this machine), or
//! merges several comparison folders of the same recipe and models, run with different seeds,
//! into a new folder with one report over all their seeds.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_core::Device;

use crate::comparison::Comparison;
use crate::report;
use crate::setup::{new_run_dir, Setup};

/// Arguments of `report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folders written by `cargo xtask compare` (or by an earlier merge). One folder: its
    /// report is rebuilt in place. Several: their seeds are merged into a new folder.
    #[arg(value_name = "RUN_DIR", required = true)]
    dirs: Vec<PathBuf>,
    /// Folder that receives the merged folder `merged-N` (several RUN_DIRs only).
    #[arg(long, default_value = "runs")]
    out: PathBuf,
}

pub fn run(args: Args, device: &Device) -> Result<()> {
    let dir = match args.dirs.as_slice() {
        [] => bail!("no comparison folder given"),
        [one] => one.clone(),
        many => {
            let parts = many.iter().map(|d| Ok((d.clone(), Comparison::read(d)?))).collect::<Result<Vec<_>>>()?;
            let merged = Comparison::merge(&parts)?;
            let dir = new_run_dir(&args.out, "merged")?;
            merged.write_merged(&parts, &dir)?;
            println!("merged seeds {:?} from {} folders into {}", merged.seeds, parts.len(), dir.display());
            dir
        }
    };
    let comparison = Comparison::read(&dir)?;
    let setup = Setup::resume(&dir, device)?;
    let report = report::write(&dir, &comparison, &setup.data, &setup.device)?;
    report::print(&report, &dir);
    Ok(())
}
