//! Will a training step at a given batch size fit in memory? An estimate from the model's
//! traced forward pass, compared with what the system can still give, so that a run refuses a
//! batch size up front rather than being killed by the OS an hour in.
//!
//! Per image the estimate counts, in f32, the input image once for the batch being trained
//! and once for each batch the loader holds ready, plus every layer output twice (the forward
//! value kept for backward and its gradient: `paddle.summary`'s "forward/backward pass size").
//! Fixed costs are seven copies of the parameters: weights, gradients, two optimizer moments,
//! and the serialized weights and moments while a checkpoint is written. Measured on
//! BA-AlexNet (`docs/reliability.md`): peak RSS grows by 2.13 MiB per image between batches 64
//! and 256; the estimate says 2.38 MiB, about 10% above.

use ba_core::model::ImageClassifier;
use ba_core::summary::Trace;
use candle_core::{DType, Device, Tensor};

use crate::{Result, TrainError};

/// Bytes of one f32.
const F32: u64 = 4;

/// Copies of the parameters training holds: weights, gradients, two optimizer moments, and
/// the three serialized while a checkpoint is written.
const PARAMETER_COPIES: u64 = 7;

/// The memory estimate of one model's training step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepMemory {
    /// Bytes that grow with each image of a batch.
    pub per_image: u64,
    /// Bytes whatever the batch size: parameters, gradients, optimizer state and a checkpoint
    /// being written.
    pub fixed: u64,
}

impl StepMemory {
    /// The estimate for `model` on images of shape `(channels, height, width)` with
    /// `parameters` values, fed by a loader that holds `prefetched_batches` batches ready.
    pub fn of(
        model: &dyn ImageClassifier,
        (channels, height, width): (usize, usize, usize),
        parameters: usize,
        prefetched_batches: usize,
    ) -> Result<Self> {
        let image = Tensor::zeros((1, channels, height, width), DType::F32, &Device::Cpu)?;
        let mut trace = Trace::on();
        model.forward_traced(&image, &mut trace)?;
        let outputs: usize = trace.into_rows().iter().map(|r| r.output.iter().product::<usize>()).sum();
        let input = (channels * height * width) as u64;
        Ok(Self {
            per_image: F32 * (input * (1 + prefetched_batches as u64) + 2 * outputs as u64),
            fixed: F32 * PARAMETER_COPIES * parameters as u64,
        })
    }

    /// Bytes a step at `batch_size` needs.
    pub fn bytes(&self, batch_size: usize) -> u64 {
        self.fixed.saturating_add(self.per_image.saturating_mul(batch_size as u64))
    }

    /// The largest batch whose step fits in `available` bytes (0 if not even the fixed part does).
    pub fn largest_batch(&self, available: u64) -> u64 {
        available.saturating_sub(self.fixed) / self.per_image.max(1)
    }

    /// An error when a step at `batch_size` needs more than `available` bytes.
    pub fn check(&self, model: &str, batch_size: usize, available: u64) -> Result<()> {
        let needed = self.bytes(batch_size);
        if needed <= available {
            return Ok(());
        }
        Err(TrainError::OutOfMemory(format!(
            "batch size {batch_size} needs about {} for a training step of {model} ({:.2} MiB per image and {} \
             of weights, gradients, optimizer state and checkpoint), but only {} is available; the largest batch \
             size that fits is about {}",
            gib(needed),
            self.per_image as f64 / MIB,
            gib(self.fixed),
            gib(available),
            self.largest_batch(available)
        )))
    }
}

const MIB: f64 = 1024.0 * 1024.0;

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1024.0 * MIB))
}

/// Bytes this process can still allocate without the OS reclaiming or killing: the system's
/// `MemAvailable`, capped by the room left under a cgroup memory limit (containers). None where
/// neither can be read (not Linux).
pub fn available_memory() -> Option<u64> {
    let system = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| mem_available(&text));
    let cgroup = cgroup_room();
    match (system, cgroup) {
        (Some(s), Some(c)) => Some(s.min(c)),
        (s, c) => s.or(c),
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    let kib = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.split_whitespace().next()?;
    kib.parse::<u64>().ok()?.checked_mul(1024)
}

/// Room under this process's cgroup memory limit (v2, then v1), if it has one.
fn cgroup_room() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok()?.trim().parse::<u64>().ok();
    [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ]
    .iter()
    .find_map(|(limit, usage)| Some(read(limit)?.saturating_sub(read(usage)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:       24000000 kB\nMemFree:          100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(text), Some(20_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    fn a_batch_that_does_not_fit_is_refused_with_the_largest_that_does() {
        let step = StepMemory { per_image: 2 << 20, fixed: 100 << 20 };
        let available = 1 << 30; // 1 GiB: (1024 - 100) / 2 = 462 images
        assert_eq!(step.largest_batch(available), 462);
        assert!(step.check("m", 462, available).is_ok());
        let err = step.check("m", 463, available).unwrap_err().to_string();
        assert!(err.contains("batch size 463 needs about 1.00 GiB for a training step of m"), "{err}");
        assert!(err.contains("2.00 MiB per image") && err.contains("only 1.00 GiB is available"), "{err}");
        assert!(err.contains("the largest batch size that fits is about 462"), "{err}");
        assert_eq!(step.bytes(usize::MAX), u64::MAX, "saturates instead of wrapping");
    }
}
