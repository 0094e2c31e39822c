//! The CIFAR-10 binary version (`cifar-10-batches-bin/`): 3,073-byte records (a label byte,
//! then the red, green and blue 32x32 planes), in `data_batch_{1..5}.bin` and `test_batch.bin`.

use std::path::Path;

use crate::dataset::{Split, IMAGE_BYTES, NUM_CLASSES};
use crate::error::{DataError, Result};

/// Bytes of one record: the label and the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;

/// Published md5 sums of the official files.
pub(crate) const OFFICIAL_MD5: [(&str, &str); 6] = [
    ("data_batch_1.bin", "5dd7e06a14cb22eb9f671a540d1b7c25"),
    ("data_batch_2.bin", "5ea93a67294ea407fff1d09f752e9692"),
    ("data_batch_3.bin", "942cd6a4bcdd0dd3c604fbe906cb4421"),
    ("data_batch_4.bin", "ae636b3ba5c66a11e91e8cb52e771fcb"),
    ("data_batch_5.bin", "53f37980c15c3d472c316c40844f3f0d"),
    ("test_batch.bin", "803d5f7f4d78ea53de84dbe85f74fb6d"),
];

/// Appends the records of `bytes` to `split`.
pub(crate) fn decode_records(path: &Path, bytes: &[u8], split: &mut Split) -> Result<()> {
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
}
