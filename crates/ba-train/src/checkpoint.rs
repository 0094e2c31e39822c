//! Model weights on disk, written atomically.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::error::{Result, TrainError};

/// The tensors of a PyTorch `state_dict` for `vars`: every variable under its name, plus the
/// `num_batches_tracked` counter (int64, 0-dim) PyTorch keeps beside each batch norm's running
/// statistics, set to `batches_tracked`. `load_state_dict(strict=True)` accepts the result.
pub fn state_dict(vars: &VarMap, batches_tracked: u64) -> Result<HashMap<String, Tensor>> {
    let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut tensors = HashMap::new();
    for (name, var) in data.iter() {
        if let Some(prefix) = name.strip_suffix(".running_mean") {
            let counter = Tensor::new(batches_tracked as i64, &Device::Cpu)?;
            tensors.insert(format!("{prefix}.num_batches_tracked"), counter);
        }
        tensors.insert(name.clone(), var.as_tensor().to_device(&Device::Cpu)?);
    }
    Ok(tensors)
}

/// Saves the [`state_dict`] of `vars` as safetensors at `path` through a temporary file that
/// is synced and then renamed, so a crash leaves either the old file or the new one whole.
pub fn save_weights(vars: &VarMap, batches_tracked: u64, path: &Path) -> Result<()> {
    let io = |source| TrainError::Io { path: path.to_path_buf(), reason: source };
    let tmp = path.with_extension("safetensors.tmp");
    candle_core::safetensors::save(&state_dict(vars, batches_tracked)?, &tmp)?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn saved_weights_load_back_and_no_temporary_remains() {
        let dir = std::env::temp_dir().join(format!("ba-train-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vars = VarMap::new();
        let t = vars.get((2, 3), "layer.weight", candle_nn::Init::Const(1.5), DType::F32, &Device::Cpu).unwrap();
        vars.get(4, "bn.running_mean", candle_nn::Init::Const(0.), DType::F32, &Device::Cpu).unwrap();
        let path = dir.join("final.safetensors");
        save_weights(&vars, 17, &path).unwrap();
        assert!(!dir.join("final.safetensors.tmp").exists());
        let mut loaded = VarMap::new();
        loaded.get((2, 3), "layer.weight", candle_nn::Init::Const(0.), DType::F32, &Device::Cpu).unwrap();
        loaded.load(&path).unwrap();
        let back = loaded.data().lock().unwrap()["layer.weight"].as_tensor().to_vec2::<f32>().unwrap();
        assert_eq!(back, t.to_vec2::<f32>().unwrap());
        let raw = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let counter = &raw["bn.num_batches_tracked"];
        assert_eq!((counter.dtype(), counter.dims(), counter.to_scalar::<i64>().unwrap()), (DType::I64, &[][..], 17));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
