//! The machine a run happened on, for reports.

use serde::{Deserialize, Serialize};

/// CPU, cores, memory, operating system and compute device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    /// Logical cores the process may use.
    pub cores: usize,
    /// Threads of the rayon pool the kernels run on.
    pub threads: usize,
    pub memory_gib: f64,
    pub os: String,
    /// The compute device (`cpu`, or a GPU).
    pub device: String,
}

impl Machine {
    /// This machine, computing on `device`.
    pub fn this(device: &candle_core::Device) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or(std::env::consts::ARCH)
            .to_string();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads: rayon::current_num_threads(),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            os: format!("{} {} {}", std::env::consts::OS, kernel.trim(), std::env::consts::ARCH).trim().to_string(),
            device: match device {
                candle_core::Device::Cpu => "cpu".to_string(),
                other => format!("{other:?}"),
            },
        }
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        format!(
            "{}, {} logical cores ({} threads), {:.0} GiB, {}; device: {}",
            self.cpu, self.cores, self.threads, self.memory_gib, self.os, self.device
        )
    }
}
