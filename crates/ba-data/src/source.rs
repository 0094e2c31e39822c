//! Finding CIFAR-10 on disk: a folder or a `.tar.gz` holding the binary version
//! (`data_batch_1.bin`, ...) or the python version (`data_batch_1`, ...), read straight from
//! the archive without unpacking it, each file checked against its published md5 when it is
//! a full-size official file.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use md5::{Digest, Md5};

use crate::dataset::{Cifar10, Split, CLASS_NAMES, IMAGE_BYTES};
use crate::error::{DataError, Result};
use crate::hub::HubSource;

/// Where `Cifar10::open` reads from: a local folder or archive, or the Hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A folder or `.tar.gz` of the binary or python version.
    Path(PathBuf),
    /// A Hub data set (`hf://owner/name[@revision]`).
    Hub(HubSource),
}

impl From<&Path> for Source {
    fn from(path: &Path) -> Self {
        match path.to_str().and_then(HubSource::parse) {
            Some(hub) => Source::Hub(hub),
            None => Source::Path(path.to_path_buf()),
        }
    }
}

impl From<&str> for Source {
    fn from(s: &str) -> Self {
        Path::new(s).into()
    }
}

impl From<PathBuf> for Source {
    fn from(path: PathBuf) -> Self {
        path.as_path().into()
    }
}

impl From<&PathBuf> for Source {
    fn from(path: &PathBuf) -> Self {
        path.as_path().into()
    }
}

impl From<HubSource> for Source {
    fn from(hub: HubSource) -> Self {
        Source::Hub(hub)
    }
}

impl Cifar10 {
    /// Reads CIFAR-10 from `source`: a folder or `.tar.gz` of the binary or python version
    /// (see [`crate::source`]), or `hf://owner/name[@revision]` for the Hub (see [`crate::hub`];
    /// needs the `hub` feature).
    pub fn open(source: impl Into<Source>) -> Result<Self> {
        match source.into() {
            Source::Path(path) => read(&path),
            #[cfg(feature = "hub")]
            Source::Hub(hub) => hub.load(),
            #[cfg(not(feature = "hub"))]
            Source::Hub(hub) => Err(DataError::format(
                hub.address(),
                "reading from the Hugging Face Hub needs ba-data's `hub` feature (on by default)",
            )),
        }
    }
}

/// Images in each official batch file.
const OFFICIAL_IMAGES: usize = 10_000;

/// The two on-disk layouts of CIFAR-10.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `cifar-10-batches-bin/`: raw records.
    Binary,
    /// `cifar-10-batches-py/`: pickled dicts.
    Python,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SplitKind {
    Train,
    Test,
}

/// Which format, split and position a file holds, from its name (`.gz` allowed), or `None`
/// for other files.
fn classify(file_name: &str) -> Option<(Format, SplitKind, u32)> {
    let stem = file_name.strip_suffix(".gz").unwrap_or(file_name);
    let (format, stem) = match stem.strip_suffix(".bin") {
        Some(s) => (Format::Binary, s),
        None => (Format::Python, stem),
    };
    if stem == "test_batch" {
        return Some((format, SplitKind::Test, 0));
    }
    let n = stem.strip_prefix("data_batch_")?.parse().ok()?;
    Some((format, SplitKind::Train, n))
}

/// One batch file's decompressed bytes and where they came from.
struct BatchFile {
    path: PathBuf,
    name: String,
    format: Format,
    split: SplitKind,
    order: u32,
    bytes: Vec<u8>,
}

/// Reads CIFAR-10 (binary or python version) from a folder or a `.tar.gz`.
pub fn read(path: &Path) -> Result<Cifar10> {
    let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let mut files = if meta.is_dir() { read_folder(path)? } else { read_archive(path)? };
    let format =
        match (files.iter().any(|f| f.format == Format::Binary), files.iter().any(|f| f.format == Format::Python)) {
            (true, true) => {
                return Err(DataError::format(
                    path,
                    "holds both the binary and the python version; point at one of them",
                ))
            }
            (false, true) => Format::Python,
            _ => Format::Binary,
        };
    files.sort_by_key(|f| (f.split, f.order));
    let (mut train, mut test) = (Split::default(), Split::default());
    for file in &files {
        verify_official(file)?;
        let split = if file.split == SplitKind::Train { &mut train } else { &mut test };
        match file.format {
            Format::Binary => crate::binary::decode_records(&file.path, &file.bytes, split)?,
            Format::Python => {
                crate::python::decode_batch(&file.bytes, split).map_err(|e| DataError::format(&file.path, e))?;
            }
        }
    }
    for (split, what) in [(&train, "training batches (data_batch_*)"), (&test, "test batch (test_batch)")] {
        if split.is_empty() {
            return Err(DataError::format(
                path,
                format!("no {what} found: not a CIFAR-10 folder or archive (expected cifar-10-batches-bin/ or cifar-10-batches-py/ with data_batch_1..5 and test_batch)"),
            ));
        }
    }
    tracing::info!(path = %path.display(), ?format, train = train.len(), test = test.len(), "read CIFAR-10");
    Ok(Cifar10 { train, test, classes: CLASS_NAMES.iter().map(|s| s.to_string()).collect() })
}

fn read_folder(dir: &Path) -> Result<Vec<BatchFile>> {
    let dir = ["cifar-10-batches-bin", "cifar-10-batches-py"]
        .iter()
        .map(|n| dir.join(n))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| dir.to_path_buf());
    let mut files = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
        let entry = entry.map_err(|e| DataError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((format, split, order)) = classify(&name) else {
            continue;
        };
        let path = entry.path();
        let raw = fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        let bytes = if name.ends_with(".gz") { gunzip(&path, &raw)? } else { raw };
        files.push(BatchFile { path, name, format, split, order, bytes });
    }
    Ok(files)
}

fn read_archive(archive: &Path) -> Result<Vec<BatchFile>> {
    let file = fs::File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(file));
    let not_tar = |e: std::io::Error| {
        DataError::format(
            archive,
            format!(
                "not a gzipped tar archive ({e}); pass the CIFAR-10 .tar.gz (binary or python version) or a folder"
            ),
        )
    };
    let mut files = Vec::new();
    for entry in tar.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        let inner = entry.path().map_err(not_tar)?.into_owned();
        let Some(name) = inner.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some((format, split, order)) = classify(&name) else {
            continue;
        };
        let path = archive.join(&inner);
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::format(&path, format!("archive is truncated or corrupt: {e}")))?;
        let bytes = if name.ends_with(".gz") { gunzip(&path, &bytes)? } else { bytes };
        files.push(BatchFile { path, name, format, split, order, bytes });
    }
    Ok(files)
}

fn gunzip(path: &Path, raw: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    GzDecoder::new(raw)
        .read_to_end(&mut out)
        .map_err(|e| DataError::format(path, format!("not a valid gzip file: {e}")))?;
    Ok(out)
}

/// Checks a full-size official file (10,000 images or more of content) against its published md5.
fn verify_official(file: &BatchFile) -> Result<()> {
    let table: &[(&str, &str)] = match file.format {
        Format::Binary => &crate::binary::OFFICIAL_MD5,
        Format::Python => &crate::python::OFFICIAL_MD5,
    };
    let name = file.name.strip_suffix(".gz").unwrap_or(&file.name);
    let Some((_, expected)) = table.iter().find(|(n, _)| *n == name) else {
        return Ok(());
    };
    if file.bytes.len() < OFFICIAL_IMAGES * IMAGE_BYTES {
        return Ok(()); // a sample or a fixture: the record-level checks still apply
    }
    let actual = format!("{:x}", Md5::digest(&file.bytes));
    if actual != *expected {
        return Err(DataError::Checksum { path: file.path.clone(), expected: expected.to_string(), actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(feature = "hub"))]
    fn without_the_hub_feature_a_hub_address_says_what_it_needs() {
        let err = Cifar10::open("hf://uoft-cs/cifar10").unwrap_err().to_string();
        assert!(
            err.starts_with("hf://uoft-cs/cifar10@main: ") && err.contains("needs ba-data's `hub` feature"),
            "{err}"
        );
    }

    #[test]
    fn names_map_to_formats_and_splits() {
        assert_eq!(classify("data_batch_3.bin"), Some((Format::Binary, SplitKind::Train, 3)));
        assert_eq!(classify("data_batch_1.bin.gz"), Some((Format::Binary, SplitKind::Train, 1)));
        assert_eq!(classify("test_batch.bin"), Some((Format::Binary, SplitKind::Test, 0)));
        assert_eq!(classify("data_batch_5"), Some((Format::Python, SplitKind::Train, 5)));
        assert_eq!(classify("test_batch"), Some((Format::Python, SplitKind::Test, 0)));
        assert_eq!(classify("batches.meta.txt"), None);
        assert_eq!(classify("batches.meta"), None);
        assert_eq!(classify("data_batch_x.bin"), None);
    }

    #[test]
    fn official_files_must_match_their_checksum() {
        for (name, format) in [("test_batch.bin", Format::Binary), ("test_batch", Format::Python)] {
            let file = BatchFile {
                path: PathBuf::from("x").join(name),
                name: name.into(),
                format,
                split: SplitKind::Test,
                order: 0,
                bytes: vec![0; OFFICIAL_IMAGES * (IMAGE_BYTES + 1)],
            };
            let err = verify_official(&file).unwrap_err().to_string();
            assert!(err.contains(&format!("x/{name}: md5")) && err.contains("differs from the published"), "{err}");
        }
    }
}
