//! Per-parameter optimizer state (Adam's moments, SGD's momentum buffer) kept on the device of
//! the parameter it belongs to, so an update reads and writes it where the parameter lives.

#[cfg(feature = "cuda")]
use candle_core::cuda_backend::{cudarc::driver::CudaSlice, CudaDevice};
use candle_core::Result;

/// An f32 vector of optimizer state: empty until the parameter's first update, then on the
/// parameter's device (the host, or a CUDA device).
#[derive(Debug, Default)]
pub struct StateVector(Values);

#[derive(Debug, Default)]
enum Values {
    #[default]
    Empty,
    Host(Vec<f32>),
    #[cfg(feature = "cuda")]
    Cuda(CudaSlice<f32>),
}

impl StateVector {
    /// State restored from `values` (a checkpoint); it moves to the parameter's device at the
    /// next update. An empty vector means no state.
    pub fn from_host(values: Vec<f32>) -> Self {
        Self(if values.is_empty() { Values::Empty } else { Values::Host(values) })
    }

    /// Whether the parameter has not been updated yet.
    pub fn is_empty(&self) -> bool {
        matches!(self.0, Values::Empty)
    }

    /// The values, copied to the host (empty before the first update).
    pub fn to_host(&self) -> Result<Vec<f32>> {
        match &self.0 {
            Values::Empty => Ok(Vec::new()),
            Values::Host(v) => Ok(v.clone()),
            #[cfg(feature = "cuda")]
            Values::Cuda(v) => Ok(v.stream().clone_dtoh(v).map_err(candle_core::Error::wrap)?),
        }
    }

    /// The `len` values on the host, zeros when empty; an error if they live on a GPU or have
    /// another length.
    pub(crate) fn host_mut(&mut self, op: &str, len: usize) -> Result<&mut [f32]> {
        if self.is_empty() {
            self.0 = Values::Host(vec![0.0; len]);
        }
        match &mut self.0 {
            Values::Host(v) => check_len(op, v.len(), len).map(|()| v.as_mut_slice()),
            _ => candle_core::bail!("{op}: the state is on a GPU but the parameter on the CPU"),
        }
    }

    /// The `len` values on `dev`, zeros when empty, copied there from the host after a restore;
    /// an error if they have another length.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda_mut(&mut self, op: &str, dev: &CudaDevice, len: usize) -> Result<&mut CudaSlice<f32>> {
        self.0 = match std::mem::take(&mut self.0) {
            Values::Empty => Values::Cuda(dev.alloc_zeros::<f32>(len)?),
            Values::Host(v) => {
                check_len(op, v.len(), len)?;
                Values::Cuda(dev.clone_htod(&v)?)
            }
            on_device => on_device,
        };
        match &mut self.0 {
            Values::Cuda(v) => check_len(op, v.len(), len).map(|()| v),
            _ => candle_core::bail!("{op}: optimizer state could not be placed on the GPU"),
        }
    }
}

/// An error unless the state's length equals the parameter's.
fn check_len(op: &str, state: usize, param: usize) -> Result<()> {
    if state != param {
        candle_core::bail!("{op}: state of {state} values for a parameter of {param}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_until_first_use_then_zeros_of_the_parameter_length() {
        let mut state = StateVector::default();
        assert!(state.is_empty());
        assert!(state.to_host().unwrap().is_empty());
        assert_eq!(state.host_mut("test", 3).unwrap(), &[0.0, 0.0, 0.0]);
        assert!(!state.is_empty());
        state.host_mut("test", 3).unwrap()[1] = 2.5;
        assert_eq!(state.to_host().unwrap(), vec![0.0, 2.5, 0.0]);
    }

    #[test]
    fn restored_values_are_kept_and_checked_against_the_parameter() {
        assert!(StateVector::from_host(Vec::new()).is_empty());
        let mut state = StateVector::from_host(vec![1.0, 2.0]);
        assert_eq!(state.host_mut("adam", 2).unwrap(), &[1.0, 2.0]);
        let err = state.host_mut("adam", 5).unwrap_err().to_string();
        assert!(err.contains("adam") && err.contains("2 values") && err.contains("5"), "{err}");
    }
}
