//! Model weights on disk, written atomically.

use std::fs::File;
use std::path::Path;

use candle_nn::VarMap;

use crate::error::{Result, TrainError};

/// Saves `vars` as safetensors at `path` (PyTorch state_dict names) through a temporary file
/// that is synced and then renamed, so a crash leaves either the old file or the new one whole.
pub fn save_weights(vars: &VarMap, path: &Path) -> Result<()> {
    let io = |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("safetensors.tmp");
    vars.save(&tmp)?;
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
        let t = vars
            .get(
                (2, 3),
                "layer.weight",
                candle_nn::Init::Const(1.5),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        let path = dir.join("final.safetensors");
        save_weights(&vars, &path).unwrap();
        assert!(!dir.join("final.safetensors.tmp").exists());
        let mut loaded = VarMap::new();
        loaded
            .get(
                (2, 3),
                "layer.weight",
                candle_nn::Init::Const(0.),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        loaded.load(&path).unwrap();
        let back = loaded.data().lock().unwrap()["layer.weight"]
            .as_tensor()
            .to_vec2::<f32>()
            .unwrap();
        assert_eq!(back, t.to_vec2::<f32>().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
