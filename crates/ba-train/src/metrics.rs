//! The metrics file: JSON Lines, one [`EpochRecord`] per line, appended as epochs end.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};
use crate::trainer::EpochRecord;

/// Appends epoch records to a JSON Lines file, flushing each line.
pub struct MetricsWriter {
    path: PathBuf,
    file: File,
}

impl MetricsWriter {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new().create(true).write(true).truncate(true).open(path).map_err(|e| io(path, e))?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    /// Writes one record as one line.
    pub fn append(&mut self, record: &EpochRecord) -> Result<()> {
        let line = serde_json::to_string(record).map_err(|e| io(&self.path, e.into()))?;
        writeln!(self.file, "{line}").and_then(|_| self.file.flush()).map_err(|e| io(&self.path, e))
    }
}

/// Reads every record of a metrics file.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                io(path, std::io::Error::new(std::io::ErrorKind::InvalidData, format!("line {}: {e}", i + 1)))
            })
        })
        .collect()
}

fn io(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io { path: path.to_path_buf(), reason: source }
}
