//! The CIFAR-10 binary format: 3,073-byte records (a label byte, then the red, green and blue
//! 32x32 planes), in `data_batch_{1..5}.bin` and `test_batch.bin`, optionally gzipped, in a
//! folder or in the official `.tar.gz`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use md5::{Digest, Md5};

use crate::dataset::{Cifar10, Split, CLASS_NAMES, IMAGE_BYTES, NUM_CLASSES};
use crate::error::{DataError, Result};

/// Bytes of one record: the label and the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// Records in each official file.
const OFFICIAL_RECORDS: usize = 10_000;

/// Published md5 sums of the official files.
const OFFICIAL_MD5: [(&str, &str); 6] = [
    ("data_batch_1.bin", "5dd7e06a14cb22eb9f671a540d1b7c25"),
    ("data_batch_2.bin", "5ea93a67294ea407fff1d09f752e9692"),
    ("data_batch_3.bin", "942cd6a4bcdd0dd3c604fbe906cb4421"),
    ("data_batch_4.bin", "ae636b3ba5c66a11e91e8cb52e771fcb"),
    ("data_batch_5.bin", "53f37980c15c3d472c316c40844f3f0d"),
    ("test_batch.bin", "803d5f7f4d78ea53de84dbe85f74fb6d"),
];

/// Which split a file belongs to, from its name (`.gz` allowed), or `None` for other files.
fn split_of(file_name: &str) -> Option<(SplitKind, u32)> {
    let stem = file_name.strip_suffix(".gz").unwrap_or(file_name);
    if stem == "test_batch.bin" {
        return Some((SplitKind::Test, 0));
    }
    let n = stem.strip_prefix("data_batch_")?.strip_suffix(".bin")?.parse().ok()?;
    Some((SplitKind::Train, n))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitKind {
    Train,
    Test,
}

/// One batch file's decompressed bytes and where they came from.
struct BatchFile {
    path: PathBuf,
    split: SplitKind,
    order: u32,
    bytes: Vec<u8>,
}

/// Reads the binary CIFAR-10 from a folder (holding the batch files directly or in
/// `cifar-10-batches-bin/`) or from a `.tar.gz` archive.
pub fn read_binary(path: &Path) -> Result<Cifar10> {
    let meta = fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let mut files = if meta.is_dir() { read_folder(path)? } else { read_archive(path)? };
    files.sort_by_key(|f| (f.split == SplitKind::Test, f.order));
    let mut train = Split::default();
    let mut test = Split::default();
    for file in &files {
        verify_official(file)?;
        let split = if file.split == SplitKind::Train { &mut train } else { &mut test };
        decode_records(&file.path, &file.bytes, split)?;
    }
    for (split, what) in [(&train, "data_batch_*.bin"), (&test, "test_batch.bin")] {
        if split.is_empty() {
            return Err(DataError::format(
                path,
                format!("no {what} found: not a CIFAR-10 binary folder or archive (expected cifar-10-batches-bin/ with data_batch_1..5.bin and test_batch.bin)"),
            ));
        }
    }
    tracing::info!(path = %path.display(), train = train.len(), test = test.len(), "read CIFAR-10");
    Ok(Cifar10 { train, test, classes: CLASS_NAMES.iter().map(|s| s.to_string()).collect() })
}

fn read_folder(dir: &Path) -> Result<Vec<BatchFile>> {
    let nested = dir.join("cifar-10-batches-bin");
    let dir = if nested.is_dir() { nested } else { dir.to_path_buf() };
    let mut files = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
        let entry = entry.map_err(|e| DataError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((split, order)) = split_of(&name) else {
            continue;
        };
        let path = entry.path();
        let raw = fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        let bytes = if name.ends_with(".gz") { gunzip(&path, &raw)? } else { raw };
        files.push(BatchFile { path, split, order, bytes });
    }
    Ok(files)
}

fn read_archive(archive: &Path) -> Result<Vec<BatchFile>> {
    let file = fs::File::open(archive).map_err(|e| DataError::io(archive, e))?;
    let mut tar = tar::Archive::new(GzDecoder::new(file));
    let not_tar = |e: std::io::Error| {
        DataError::format(
            archive,
            format!("not a gzipped tar archive ({e}); pass the CIFAR-10 binary .tar.gz or a folder"),
        )
    };
    let mut files = Vec::new();
    for entry in tar.entries().map_err(not_tar)? {
        let mut entry = entry.map_err(not_tar)?;
        let inner = entry.path().map_err(not_tar)?.into_owned();
        let Some(name) = inner.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        let Some((split, order)) = split_of(&name) else {
            continue;
        };
        let path = archive.join(&inner);
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| DataError::format(&path, format!("archive is truncated or corrupt: {e}")))?;
        let bytes = if name.ends_with(".gz") { gunzip(&path, &bytes)? } else { bytes };
        files.push(BatchFile { path, split, order, bytes });
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

/// Checks an official-size file against its published md5.
fn verify_official(file: &BatchFile) -> Result<()> {
    let name = file.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let Some((_, expected)) = OFFICIAL_MD5.iter().find(|(n, _)| *n == name) else {
        return Ok(());
    };
    if file.bytes.len() != OFFICIAL_RECORDS * RECORD_BYTES {
        return Ok(()); // not a full official file: record-level checks still apply
    }
    let actual = format!("{:x}", Md5::digest(&file.bytes));
    if actual != *expected {
        return Err(DataError::Checksum { path: file.path.clone(), expected: expected.to_string(), actual });
    }
    Ok(())
}

/// Appends the records of `bytes` to `split`.
fn decode_records(path: &Path, bytes: &[u8], split: &mut Split) -> Result<()> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(DataError::format(
            path,
            format!(
                "{} bytes is not a whole number of {RECORD_BYTES}-byte records (the file is truncated or not CIFAR-10 binary)",
                bytes.len()
            ),
        ));
    }
    for (i, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = record[0];
        if label as usize >= NUM_CLASSES {
            return Err(DataError::format(path, format!("record {i} has label {label}, outside 0..{NUM_CLASSES}")));
        }
        split.push(label, &record[1..]);
    }
    Ok(())
}

/// Encodes `split`'s records in the binary format.
pub fn encode_records(split: &Split, indices: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(indices.len() * RECORD_BYTES);
    for &i in indices {
        out.push(split.label(i));
        out.extend_from_slice(split.image(i));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![fill; RECORD_BYTES];
        r[0] = label;
        r
    }

    #[test]
    fn names_map_to_splits() {
        assert_eq!(split_of("data_batch_3.bin"), Some((SplitKind::Train, 3)));
        assert_eq!(split_of("data_batch_1.bin.gz"), Some((SplitKind::Train, 1)));
        assert_eq!(split_of("test_batch.bin"), Some((SplitKind::Test, 0)));
        assert_eq!(split_of("batches.meta.txt"), None);
        assert_eq!(split_of("data_batch_x.bin"), None);
    }

    #[test]
    fn decodes_records_and_rejects_bad_ones() {
        let mut split = Split::default();
        let bytes = [record(3, 7), record(9, 1)].concat();
        decode_records(Path::new("f.bin"), &bytes, &mut split).unwrap();
        assert_eq!((split.len(), split.label(1), split.image(0)[5]), (2, 9, 7));
        let err = decode_records(Path::new("f.bin"), &bytes[..RECORD_BYTES + 10], &mut split).unwrap_err().to_string();
        assert!(err.starts_with("f.bin: 3083 bytes is not a whole number of 3073-byte records"), "{err}");
        let err = decode_records(Path::new("g.bin"), &record(11, 0), &mut split).unwrap_err().to_string();
        assert_eq!(err, "g.bin: record 0 has label 11, outside 0..10");
    }

    #[test]
    fn official_files_must_match_their_checksum() {
        let file = BatchFile {
            path: PathBuf::from("x/test_batch.bin"),
            split: SplitKind::Test,
            order: 0,
            bytes: vec![0; OFFICIAL_RECORDS * RECORD_BYTES],
        };
        let err = verify_official(&file).unwrap_err().to_string();
        assert!(err.contains("x/test_batch.bin: md5") && err.contains("differs from the published 803d5f7f"), "{err}");
    }
}
