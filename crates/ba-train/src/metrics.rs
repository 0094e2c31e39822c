//! The metrics file: JSON Lines, appended as training goes: one [`EpochRecord`] per epoch and,
//! before it, that epoch's [`StepRecord`]s (mean training loss every N steps). Each line is
//! one JSON object; step lines are those with a `step` field.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};
use serde::Deserialize;

use crate::trainer::{EpochRecord, StepRecord};

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

    /// Writes one epoch record as one line.
    pub fn append(&mut self, record: &EpochRecord) -> Result<()> {
        self.write(record)
    }

    /// Writes one step record as one line.
    pub fn append_step(&mut self, record: &StepRecord) -> Result<()> {
        self.write(record)
    }

    fn write(&mut self, record: &impl serde::Serialize) -> Result<()> {
        let line = serde_json::to_string(record).map_err(|e| io(&self.path, e.into()))?;
        writeln!(self.file, "{line}").and_then(|_| self.file.flush()).map_err(|e| io(&self.path, e))
    }
}

/// One line of the metrics file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum MetricsLine {
    /// The end of an epoch.
    Epoch(EpochRecord),
    /// A window of training steps.
    Step(StepRecord),
}

/// Reads the epoch records of a metrics file.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRecord>> {
    Ok(read_lines(path)?
        .into_iter()
        .filter_map(|l| match l {
            MetricsLine::Epoch(e) => Some(e),
            MetricsLine::Step(_) => None,
        })
        .collect())
}

/// Reads the step records of a metrics file.
pub fn read_step_records(path: &Path) -> Result<Vec<StepRecord>> {
    Ok(read_lines(path)?
        .into_iter()
        .filter_map(|l| match l {
            MetricsLine::Step(s) => Some(s),
            MetricsLine::Epoch(_) => None,
        })
        .collect())
}

/// Reads every line of a metrics file; an error names the file and the line.
///
/// A last line without its newline that does not parse is a write cut short (the process was
/// killed while appending); it is skipped with a warning, and the run's checkpoint, not the
/// metrics file, says where training resumes. Any other bad line is an error naming it.
pub fn read_lines(path: &Path) -> Result<Vec<MetricsLine>> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    let torn = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(_) if torn && i + 1 == lines.len() => {
                tracing::warn!(path = %path.display(), line = i + 1, "skipping a last line cut short");
            }
            Err(e) => {
                let reason = std::io::Error::new(std::io::ErrorKind::InvalidData, format!("line {}: {e}", i + 1));
                return Err(io(path, reason));
            }
        }
    }
    Ok(records)
}

fn io(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io { path: path.to_path_buf(), reason: source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::PassStats;

    #[test]
    fn a_last_line_cut_short_is_skipped_and_any_other_bad_line_named() {
        let path = std::env::temp_dir().join(format!("ba-train-torn-{}.jsonl", std::process::id()));
        let step = StepRecord { step: 10, epoch: 1, loss: 2.25, lr: 1e-3 };
        let mut writer = MetricsWriter::create(&path).unwrap();
        writer.append_step(&step).unwrap();
        writer.append_step(&StepRecord { step: 20, ..step }).unwrap();
        drop(writer);
        let whole = std::fs::read_to_string(&path).unwrap();
        // Killed while appending the second line: every cut of it reads back as the first.
        let first_end = whole.find('\n').unwrap() + 1;
        for cut in first_end..whole.len() - 1 {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert_eq!(read_step_records(&path).unwrap(), vec![step], "cut at byte {cut}");
        }
        // A bad line with its newline is not a torn write: an error naming file and line.
        std::fs::write(&path, format!("{}{{\"step\": oops}}\n{}", &whole[..first_end], &whole[first_end..])).unwrap();
        let err = read_lines(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains("line 2"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn epoch_and_step_lines_read_back_apart_and_exactly() {
        let path = std::env::temp_dir().join(format!("ba-train-metrics-{}.jsonl", std::process::id()));
        let pass =
            PassStats { loss: 2.302716159820557, accuracy: 0.1, images: 10, seconds: 0.5, data_wait_seconds: 0.01 };
        let epoch = EpochRecord { epoch: 1, lr: 5e-4, train: pass, val: PassStats { data_wait_seconds: 0.0, ..pass } };
        let step = StepRecord { step: 10, epoch: 1, loss: 2.2951, lr: 1e-3 / 3.0 };
        let mut writer = MetricsWriter::create(&path).unwrap();
        writer.append_step(&step).unwrap();
        writer.append(&epoch).unwrap();
        assert_eq!(read_metrics(&path).unwrap(), vec![epoch]);
        assert_eq!(read_step_records(&path).unwrap(), vec![step]);
        std::fs::write(&path, "{\"epoch\": 1}\n").unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
