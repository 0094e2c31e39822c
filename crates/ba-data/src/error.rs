//! Errors of the data layer: each names the file and what is wrong with it.

use std::path::PathBuf;

/// A failure to find, read or decode CIFAR-10.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file or folder could not be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// The operating system's reason (not a `source`, so that chains print it once).
        reason: std::io::Error,
    },
    /// The content is not what CIFAR-10 holds.
    #[error("{path}: {message}")]
    Format {
        /// The file that failed.
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
    /// An official file whose content differs from the published one.
    #[error("{path}: md5 {actual} differs from the published {expected}; the file is corrupt, download it again")]
    Checksum {
        /// The file that failed.
        path: PathBuf,
        /// The published md5.
        expected: String,
        /// The md5 of the file read.
        actual: String,
    },
    /// A batch could not be turned into tensors.
    #[error("building a batch: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl DataError {
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Format { path: path.into(), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io { path: path.into(), reason: source }
    }
}

/// Result of the data layer.
pub type Result<T> = std::result::Result<T, DataError>;
