//! `cargo xtask make-sample`: cuts the committed CIFAR-10 sample from the full binary archive.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ba_data::binary::encode_records;
use ba_data::Cifar10;
use flate2::write::GzEncoder;
use flate2::Compression;
use md5::{Digest, Md5};

/// Arguments of `make-sample`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The full CIFAR-10 binary archive or folder.
    #[arg(long, default_value = "../shared/data/cifar-10-binary.tar.gz")]
    source: PathBuf,
    /// Where to write the sample.
    #[arg(long, default_value = "data/cifar-10-sample")]
    out: PathBuf,
    /// Training images kept per class (the first ones, in file order).
    #[arg(long, default_value_t = 500)]
    train_per_class: usize,
    /// Test images kept per class (the first ones, in file order).
    #[arg(long, default_value_t = 100)]
    test_per_class: usize,
}

pub fn run(args: Args) -> Result<()> {
    let full = Cifar10::open(&args.source)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    for (split, per_class, name) in [
        (&full.train, args.train_per_class, "data_batch_1.bin.gz"),
        (&full.test, args.test_per_class, "test_batch.bin.gz"),
    ] {
        let picked = split.first_per_class(per_class);
        let path = args.out.join(name);
        let records = encode_records(split, &picked);
        write_gzip(&path, &records)?;
        let md5 = format!("{:x}", Md5::digest(std::fs::read(&path)?));
        println!("{md5}  {}  ({} images, {} raw bytes)", path.display(), picked.len(), records.len());
    }
    Ok(())
}

/// Writes `bytes` gzipped, with a fixed header (no name, mtime 0) so the output is reproducible.
fn write_gzip(path: &Path, bytes: &[u8]) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut gz = GzEncoder::new(file, Compression::best());
    gz.write_all(bytes)?;
    gz.finish()?.sync_all()?;
    Ok(())
}
