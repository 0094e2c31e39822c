//! The CIFAR-10 python version (`cifar-10-batches-py/`): each batch file is a pickled dict with
//! `data`, a 10000x3072 uint8 array (rows are images as red, green, blue 32x32 planes), and
//! `labels`, a list of ints. Decoded by the strict reader in [`crate::pickle`].

use crate::dataset::{Split, IMAGE_BYTES, NUM_CLASSES};
use crate::pickle::{self, Value};

/// Published md5 sums of the official python-version files (as torchvision.datasets.CIFAR10 lists them).
pub(crate) const OFFICIAL_MD5: [(&str, &str); 6] = [
    ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    ("data_batch_4", "634d18415352ddfa80567beed471001a"),
    ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ("test_batch", "40351d587109b95175f43aff81a1287e"),
];

/// Appends the images and labels of one pickled batch to `split`; the error says what is wrong.
pub(crate) fn decode_batch(bytes: &[u8], split: &mut Split) -> Result<usize, String> {
    let batch = pickle::parse(bytes).map_err(|e| format!("not a readable CIFAR-10 python batch: {e}"))?;
    if !matches!(batch, Value::Dict(_)) {
        return Err("the pickle is not a dict: not a CIFAR-10 python batch".into());
    }
    if batch.get("fine_labels").is_some() {
        return Err("this batch has fine_labels: it is CIFAR-100, not CIFAR-10".into());
    }
    let Some(Value::Array(data)) = batch.get("data") else {
        return Err("no numpy array under b'data': not a CIFAR-10 python batch".into());
    };
    let Some(Value::List(labels)) = batch.get("labels") else {
        return Err("no list under b'labels': not a CIFAR-10 python batch".into());
    };
    if data.dtype != "u1" || data.shape.len() != 2 || data.shape[1] != IMAGE_BYTES {
        return Err(format!(
            "data is a {} array of shape {:?}; CIFAR-10 stores uint8 rows of {IMAGE_BYTES}",
            data.dtype, data.shape
        ));
    }
    if data.shape[0] != labels.len() {
        return Err(format!("{} images but {} labels", data.shape[0], labels.len()));
    }
    for (i, (image, label)) in data.data.chunks_exact(IMAGE_BYTES).zip(labels).enumerate() {
        let label = match label {
            Value::Int(l) if (0..NUM_CLASSES as i64).contains(l) => *l as u8,
            Value::Int(l) => return Err(format!("image {i} has label {l}, outside 0..{NUM_CLASSES}")),
            other => return Err(format!("label {i} is {other:?}, not an int")),
        };
        split.push(label, image);
    }
    Ok(labels.len())
}
