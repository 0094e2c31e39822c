//! CIFAR-10 from the Hugging Face Hub: the `uoft-cs/cifar10` data set's parquet files
//! (`plain_text/{train,test}-00000-of-00001.parquet`, columns `img` = {bytes: PNG, path} and
//! `label`), downloaded once through `hf-hub` into the standard cache (`HF_HOME`, default
//! `~/.cache/huggingface`) from `HF_ENDPOINT` (default `https://huggingface.co`), and decoded
//! here: rows of PNGs become (3, 32, 32) planes. (candle-datasets' parquet loader transposes
//! the images, so it is not used.) The address ([`HubSource`]) is always here; downloading and
//! decoding need the `hub` feature (on by default).

#[cfg(feature = "hub")]
use std::{fs::File, path::Path};

#[cfg(feature = "hub")]
use hf_hub::api::sync::ApiBuilder;
#[cfg(feature = "hub")]
use hf_hub::{Repo, RepoType};
#[cfg(feature = "hub")]
use parquet::file::reader::{FileReader, SerializedFileReader};
#[cfg(feature = "hub")]
use parquet::record::Field;
#[cfg(feature = "hub")]
use rayon::prelude::*;

#[cfg(feature = "hub")]
use crate::dataset::{Cifar10, Split, CLASS_NAMES, IMAGE_BYTES, IMAGE_SIDE, NUM_CLASSES};
#[cfg(feature = "hub")]
use crate::error::{DataError, Result};

/// The official CIFAR-10 data set on the Hub.
pub const CIFAR10_REPO: &str = "uoft-cs/cifar10";
/// Its training file.
pub const TRAIN_FILE: &str = "plain_text/train-00000-of-00001.parquet";
/// Its test file.
pub const TEST_FILE: &str = "plain_text/test-00000-of-00001.parquet";

/// A data set repository on the Hub holding CIFAR-10 in `uoft-cs/cifar10`'s layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSource {
    /// `owner/name` of the data set.
    pub repo: String,
    /// Branch, tag or commit.
    pub revision: String,
    /// Whether to draw a download progress bar.
    pub progress: bool,
}

impl Default for HubSource {
    fn default() -> Self {
        Self { repo: CIFAR10_REPO.into(), revision: "main".into(), progress: true }
    }
}

impl HubSource {
    /// Parses `hf://owner/name[@revision]`; `None` when `spec` is not a Hub address.
    pub fn parse(spec: &str) -> Option<Self> {
        let rest = spec.strip_prefix("hf://")?;
        let (repo, revision) = rest.split_once('@').unwrap_or((rest, "main"));
        let repo = if repo.is_empty() { CIFAR10_REPO } else { repo.trim_end_matches('/') };
        Some(Self { repo: repo.into(), revision: revision.into(), progress: true })
    }

    /// The `hf://` address of this source.
    pub fn address(&self) -> String {
        format!("hf://{}@{}", self.repo, self.revision)
    }

    /// Downloads (or finds in the cache) both files and decodes them.
    #[cfg(feature = "hub")]
    pub fn load(&self) -> Result<Cifar10> {
        let api = ApiBuilder::from_env()
            .with_progress(self.progress)
            .build()
            .map_err(|e| DataError::format(self.address(), format!("cannot set up the Hub client: {e}")))?;
        let repo = api.repo(Repo::with_revision(self.repo.clone(), RepoType::Dataset, self.revision.clone()));
        let fetch = |file: &str| {
            repo.get(file).map_err(|e| {
                DataError::format(
                    format!("{}/{file}", self.address()),
                    format!("download failed ({e}); check the network, HF_ENDPOINT and HF_TOKEN, or pass a local CIFAR-10 with --data"),
                )
            })
        };
        let (train_path, test_path) = (fetch(TRAIN_FILE)?, fetch(TEST_FILE)?);
        let data = Cifar10 {
            train: read_parquet(&train_path)?,
            test: read_parquet(&test_path)?,
            classes: CLASS_NAMES.iter().map(|s| s.to_string()).collect(),
        };
        if self.repo == CIFAR10_REPO {
            for (split, path, want) in [(&data.train, &train_path, 50_000), (&data.test, &test_path, 10_000)] {
                if split.len() != want {
                    return Err(DataError::format(
                        path,
                        format!("{} images where CIFAR-10 has {want}: the download is incomplete, delete it from the cache and retry", split.len()),
                    ));
                }
            }
        }
        tracing::info!(source = %self.address(), train = data.train.len(), test = data.test.len(), "read CIFAR-10");
        Ok(data)
    }
}

/// Reads one parquet file of `uoft-cs/cifar10`'s layout.
#[cfg(feature = "hub")]
pub fn read_parquet(path: &Path) -> Result<Split> {
    let bad = |message: String| DataError::format(path, message);
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| bad(format!("not a readable parquet file ({e}); delete it and download again")))?;
    let rows = reader.get_row_iter(None).map_err(|e| bad(format!("cannot read rows: {e}")))?;
    let mut records: Vec<(Vec<u8>, i64)> = Vec::new();
    for (i, row) in rows.enumerate() {
        let row = row.map_err(|e| bad(format!("row {i}: {e}")))?;
        let (mut png, mut label) = (None, None);
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("img", Field::Group(img)) => {
                    png = img.get_column_iter().find_map(|(n, f)| match (n.as_str(), f) {
                        ("bytes", Field::Bytes(b)) => Some(b.data().to_vec()),
                        _ => None,
                    })
                }
                ("label", Field::Long(l)) => label = Some(*l),
                ("label", Field::Int(l)) => label = Some(*l as i64),
                _ => {}
            }
        }
        let (Some(png), Some(label)) = (png, label) else {
            return Err(bad(format!("row {i} lacks img.bytes or label: not the uoft-cs/cifar10 layout")));
        };
        if !(0..NUM_CLASSES as i64).contains(&label) {
            return Err(bad(format!("row {i} has label {label}, outside 0..{NUM_CLASSES}")));
        }
        records.push((png, label));
    }
    let images: Vec<Vec<u8>> = records
        .par_iter()
        .enumerate()
        .map(|(i, (png, _))| decode_png(png).map_err(|e| bad(format!("row {i}: {e}"))))
        .collect::<Result<_>>()?;
    let mut split = Split::default();
    for (image, (_, label)) in images.iter().zip(&records) {
        split.push(*label as u8, image);
    }
    if split.is_empty() {
        return Err(bad("no rows".into()));
    }
    Ok(split)
}

/// A 32x32 RGB PNG as red, green and blue planes.
#[cfg(feature = "hub")]
fn decode_png(bytes: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| format!("not a valid PNG ({e})"))?;
    // Check the size the header claims before allocating for it (a hostile header can claim
    // gigapixels; found by fuzzing).
    let (width, height) = reader.info().size();
    if (width, height) != (IMAGE_SIDE as u32, IMAGE_SIDE as u32) {
        return Err(format!("image is {width}x{height}, CIFAR-10 images are 32x32"));
    }
    let size = reader.output_buffer_size().ok_or("PNG too large")?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| format!("PNG data is corrupt ({e})"))?;
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => return Err(format!("image is {other:?}, expected RGB")),
    };
    let area = IMAGE_SIDE * IMAGE_SIDE;
    let mut planes = vec![0u8; IMAGE_BYTES];
    for (p, px) in buf[..area * channels].chunks_exact(channels).enumerate() {
        for c in 0..3 {
            planes[c * area + p] = px[c];
        }
    }
    Ok(planes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;

    #[test]
    fn hub_addresses_parse() {
        assert_eq!(HubSource::parse("hf://"), Some(HubSource::default()));
        let pinned = HubSource::parse("hf://me/cifar@v1").unwrap();
        assert_eq!((pinned.repo.as_str(), pinned.revision.as_str()), ("me/cifar", "v1"));
        assert_eq!(HubSource::parse("data/cifar-10-sample"), None);
        assert!(matches!(Source::from("hf://uoft-cs/cifar10"), Source::Hub(_)));
        assert!(matches!(Source::from("cifar.tar.gz"), Source::Path(_)));
    }

    #[test]
    #[cfg(feature = "hub")]
    fn png_decoding_checks_size_and_colour() {
        let mut png_bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut png_bytes, 2, 1);
            enc.set_color(png::ColorType::Rgb);
            enc.write_header().unwrap().write_image_data(&[1, 2, 3, 4, 5, 6]).unwrap();
        }
        assert_eq!(decode_png(&png_bytes).unwrap_err(), "image is 2x1, CIFAR-10 images are 32x32");
        assert!(decode_png(b"garbage").unwrap_err().starts_with("not a valid PNG"));
    }

    #[test]
    #[cfg(feature = "hub")]
    fn a_header_claiming_gigapixels_is_refused_before_allocating() {
        // Found by fuzzing (fuzz/, target parquet): the decoder allocated the output buffer
        // the header asked for (412 GB there) before the size was checked.
        fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            [&(data.len() as u32).to_be_bytes()[..], kind, data, &crc.sum().to_be_bytes()].concat()
        }
        let side = 100_000u32.to_be_bytes();
        let ihdr = [&side[..], &side[..], &[8, 2, 0, 0, 0]].concat();
        let empty_zlib = [0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01];
        let png =
            [&b"\x89PNG\r\n\x1a\n"[..], &chunk(b"IHDR", &ihdr), &chunk(b"IDAT", &empty_zlib), &chunk(b"IEND", &[])]
                .concat();
        assert_eq!(decode_png(&png).unwrap_err(), "image is 100000x100000, CIFAR-10 images are 32x32");
    }
}
