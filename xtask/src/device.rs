//! `--device`: where the verbs put their tensors.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use candle_core::Device;

/// `cpu`, `cuda` / `cuda:N`, or `auto`: the first CUDA GPU when the binary was built with the
/// `cuda` feature and one answers, the CPU otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceArg {
    /// CUDA when built with it and a GPU is present, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA GPU with this ordinal.
    Cuda(usize),
}

impl FromStr for DeviceArg {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(ordinal)) => Ok(Self::Cuda(ordinal)),
                _ => Err(format!("unknown device {s:?}: expected cpu, cuda, cuda:N or auto")),
            },
        }
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => write!(f, "auto"),
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceArg {
    /// The device, or an error saying why a CUDA device cannot be used.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto if cfg!(feature = "cuda") => Ok(Device::new_cuda(0).unwrap_or(Device::Cpu)),
            Self::Auto => Ok(Device::Cpu),
            Self::Cuda(_) if !cfg!(feature = "cuda") => {
                bail!("--device {self}: this binary was built without CUDA; build it with `--features cuda` (docs/gpu.md)")
            }
            Self::Cuda(n) => {
                Device::new_cuda(n).with_context(|| format!("--device {self}: CUDA device {n} cannot be used"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_spelling_and_names_a_bad_one() {
        assert_eq!("cpu".parse(), Ok(DeviceArg::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceArg::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceArg::Cuda(3)));
        assert_eq!("auto".parse(), Ok(DeviceArg::Auto));
        for bad in ["gpu", "cuda:", "cuda:x", "CUDA", ""] {
            let err = bad.parse::<DeviceArg>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        for arg in [DeviceArg::Cpu, DeviceArg::Cuda(2), DeviceArg::Auto] {
            assert_eq!(arg.to_string().parse(), Ok(arg));
        }
    }

    #[test]
    fn cpu_and_auto_always_open() {
        assert!(DeviceArg::Cpu.open().unwrap().is_cpu());
        // Auto is the GPU exactly when the build has the cuda feature and a GPU answers.
        let auto = DeviceArg::Auto.open().unwrap();
        let gpu_answers = cfg!(feature = "cuda") && candle_core::Device::new_cuda(0).is_ok();
        assert_eq!(auto.is_cuda(), gpu_answers, "auto opened {auto:?}");
        assert_eq!(auto.is_cpu(), !gpu_answers, "auto opened {auto:?}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_get_it() {
        let err = DeviceArg::Cuda(0).open().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
