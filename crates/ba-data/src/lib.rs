//! # ba-data
//!
//! CIFAR-10 from bytes to batches: the binary format (a folder or the official `.tar.gz`,
//! checked against the published md5 sums), torchvision-style transforms, and a seeded loader
//! that augments in parallel and prepares the next batch while the current one trains.
//! It knows nothing of models.
//!
//! ```no_run
//! let data = ba_data::Cifar10::open("data/cifar-10-sample")?;
//! assert_eq!(data.classes[6], "frog");
//! # Ok::<(), ba_data::DataError>(())
//! ```

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod binary;
mod dataset;
mod error;
pub mod hub;
pub mod loader;
pub mod pickle;
mod python;
pub mod source;
pub mod transforms;

pub use dataset::{Cifar10, Split, CLASS_NAMES, IMAGE_BYTES, IMAGE_SIDE, NUM_CLASSES};
pub use error::{DataError, Result};
pub use hub::HubSource;
pub use loader::{Batch, Loader, LoaderConfig, PREFETCHED_BATCHES};
pub use source::Source;

/// The generator behind every random choice of this crate.
pub type Rng = rand_chacha::ChaCha8Rng;
