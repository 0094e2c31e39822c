//! Model weights and whole training states on disk, written atomically (temporary file,
//! fsync, rename, fsync of the folder), so a crash or kill at any instant leaves the previous
//! file whole.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::optim::Optimizer;
use crate::trainer::{EpochProgress, EpochRecord};

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

/// Saves the [`state_dict`] of `vars` as safetensors at `path`, atomically.
pub fn save_weights(vars: &VarMap, batches_tracked: u64, path: &Path) -> Result<()> {
    write_atomically(path, |tmp| Ok(candle_core::safetensors::save(&state_dict(vars, batches_tracked)?, tmp)?))
}

/// Writes `path` through `path.tmp`: `write` fills the temporary file, which is synced, renamed
/// over `path`, and the folder synced.
fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let io = |source| TrainError::Io { path: path.to_path_buf(), reason: source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    write(&tmp)?;
    File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

/// Where a run stands at a checkpoint (stored as JSON in the file's metadata).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// The model's name (`alexnet`, `ba-alexnet`).
    pub model: String,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub steps: u64,
    /// The model's generator positions ([`ba_core::model::ImageClassifier::rng_positions`]),
    /// as decimal strings (JSON numbers cannot hold 128 bits).
    pub rng_positions: Vec<String>,
    /// The trainer's unfinished step-record window ([`crate::Trainer::step_window`]).
    pub step_window: (f64, u64),
    /// How far the next epoch got, when the checkpoint was taken in the middle of it.
    pub partial: Option<EpochProgress>,
    /// The epoch records so far, so that the checkpoint alone holds the run's history.
    #[serde(default)]
    pub history: Vec<EpochRecord>,
    /// The run's configuration, as the caller describes it (opaque JSON here).
    #[serde(default)]
    pub config: serde_json::Value,
}

/// Metadata key of the [`TrainState`].
const STATE_KEY: &str = "ba-net.train-state";
/// Prefix of the optimizer's tensors.
const OPTIMIZER_PREFIX: &str = "optimizer.";

/// Saves a training checkpoint at `path`, atomically: the model's `state_dict` under its
/// PyTorch names, the optimizer's state under `optimizer.`, and `state` in the metadata.
pub fn save_checkpoint(path: &Path, vars: &VarMap, optimizer: &dyn Optimizer, state: &TrainState) -> Result<()> {
    let mut tensors = state_dict(vars, state.steps)?;
    for (key, tensor) in optimizer.state()? {
        tensors.insert(format!("{OPTIMIZER_PREFIX}{key}"), tensor);
    }
    let json =
        serde_json::to_string(state).map_err(|e| TrainError::Io { path: path.to_path_buf(), reason: e.into() })?;
    let metadata = Some(HashMap::from([(STATE_KEY.to_string(), json)]));
    write_atomically(path, |tmp| {
        safetensors::serialize_to_file(&tensors, metadata.clone(), tmp)
            .map_err(|e| TrainError::Io { path: tmp.to_path_buf(), reason: std::io::Error::other(e.to_string()) })
    })
}

/// The [`TrainState`] of the checkpoint in `bytes` (read from `path`).
fn train_state(path: &Path, bytes: &[u8]) -> Result<TrainState> {
    let (_, header) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| invalid(path, format!("not a checkpoint: {e}")))?;
    let json = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| invalid(path, "no training state: a weights file, not a checkpoint".into()))?;
    serde_json::from_str(json).map_err(|e| invalid(path, format!("training state unreadable: {e}")))
}

fn invalid(path: &Path, message: String) -> TrainError {
    TrainError::Io { path: path.to_path_buf(), reason: std::io::Error::new(std::io::ErrorKind::InvalidData, message) }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| TrainError::Io { path: path.to_path_buf(), reason: e })
}

/// Reads only the [`TrainState`] of a checkpoint (which model, how far).
pub fn read_train_state(path: &Path) -> Result<TrainState> {
    train_state(path, &read(path)?)
}

/// Loads model weights (a file of [`save_weights`], or a whole checkpoint) into `vars`:
/// every variable must be in the file with its shape; other tensors in it are ignored.
pub fn load_weights(path: &Path, vars: &VarMap) -> Result<()> {
    let tensors = candle_core::safetensors::load_buffer(&read(path)?, &Device::Cpu)
        .map_err(|e| invalid(path, format!("not a safetensors file ({e})")))?;
    set_variables(path, &tensors, vars)
}

/// Copies the tensors named as the variables of `vars` into them; a missing name or a shape
/// that differs is an error naming `path` and the first few mismatches.
fn set_variables(path: &Path, tensors: &HashMap<String, Tensor>, vars: &VarMap) -> Result<()> {
    let data = vars.data().lock().unwrap_or_else(|p| p.into_inner());
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mismatches: Vec<String> = names
        .iter()
        .filter_map(|&name| match tensors.get(name) {
            None => Some(format!("lacks {name}")),
            Some(t) if t.shape() != data[name].shape() => {
                Some(format!("{name} has shape {:?}, the model {:?}", t.dims(), data[name].dims()))
            }
            Some(_) => None,
        })
        .collect();
    if !mismatches.is_empty() {
        let shown = mismatches.iter().take(3).cloned().collect::<Vec<_>>().join("; ");
        let more = mismatches.len().saturating_sub(3);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        return Err(invalid(path, format!("does not fit the model: {shown}{more} (weights of another model?)")));
    }
    for name in names {
        let bad = non_finite(&tensors[name])?;
        if bad > 0 {
            let message =
                format!("{name} holds {bad} NaN or infinite values (a run that diverged?); use an earlier checkpoint");
            return Err(invalid(path, message));
        }
    }
    for (name, var) in data.iter() {
        var.set(&tensors[name].to_device(var.device())?)?;
    }
    Ok(())
}

/// How many values of a float tensor are NaN or infinite (0 for integer tensors).
fn non_finite(t: &Tensor) -> Result<usize> {
    if !t.dtype().is_float() {
        return Ok(0);
    }
    let values = t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
    Ok(values.iter().filter(|v| !v.is_finite()).count())
}

/// Loads a checkpoint written by [`save_checkpoint`] into `vars` (every variable must be in
/// it with its shape) and `optimizer`, and returns its [`TrainState`].
pub fn load_checkpoint(path: &Path, vars: &VarMap, optimizer: &mut dyn Optimizer) -> Result<TrainState> {
    let bad = |message: String| invalid(path, message);
    let bytes = read(path)?;
    let state = train_state(path, &bytes)?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
    set_variables(path, &tensors, vars)?;
    let optimizer_state: HashMap<String, Tensor> =
        tensors.into_iter().filter_map(|(k, v)| k.strip_prefix(OPTIMIZER_PREFIX).map(|k| (k.to_string(), v))).collect();
    optimizer.load_state(&optimizer_state).map_err(|e| bad(format!("optimizer state: {e}")))?;
    Ok(state)
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

    #[test]
    fn a_checkpoint_survives_an_interrupted_rewrite_and_bad_files_are_named() {
        use crate::optim::{Adam, AdamConfig};
        let dir = std::env::temp_dir().join(format!("ba-train-ckpt2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let vars = VarMap::new();
        vars.get((2, 2), "w", candle_nn::Init::Const(0.5), DType::F32, &Device::Cpu).unwrap();
        let w = vars.data().lock().unwrap()["w"].clone();
        let mut adam = Adam::new(&vars, AdamConfig::default());
        let grads = w.as_tensor().sum_all().unwrap().backward().unwrap();
        adam.step(&grads, 0.1).unwrap();
        let state = TrainState {
            model: "m".into(),
            epochs_done: 3,
            steps: 1,
            rng_positions: vec!["340282366920938463463374607431768211455".into()],
            step_window: (4.5, 2),
            partial: Some(EpochProgress { batches_done: 2, loss_sum: 9.25, images: 16, ..EpochProgress::default() }),
            history: Vec::new(),
            config: serde_json::json!({"epochs": 3, "lr": 1e-4}),
        };
        let path = dir.join("checkpoint.safetensors");
        save_checkpoint(&path, &vars, &adam, &state).unwrap();
        // A process killed while rewriting it leaves a partial temporary file beside it.
        std::fs::write(dir.join("checkpoint.safetensors.tmp"), b"partial").unwrap();
        let fresh = VarMap::new();
        fresh.get((2, 2), "w", candle_nn::Init::Const(0.0), DType::F32, &Device::Cpu).unwrap();
        let mut restored = Adam::new(&fresh, AdamConfig::default());
        assert_eq!(load_checkpoint(&path, &fresh, &mut restored).unwrap(), state);
        assert_eq!(restored.steps(), 1);
        assert_eq!(
            fresh.data().lock().unwrap()["w"].as_tensor().to_vec2::<f32>().unwrap(),
            w.as_tensor().to_vec2::<f32>().unwrap()
        );
        // The next save replaces the stale temporary file.
        save_checkpoint(&path, &vars, &adam, &state).unwrap();
        assert!(!dir.join("checkpoint.safetensors.tmp").exists());

        let truncated = dir.join("truncated.safetensors");
        std::fs::write(&truncated, &std::fs::read(&path).unwrap()[..40]).unwrap();
        let err = load_checkpoint(&truncated, &fresh, &mut restored).unwrap_err().to_string();
        assert!(err.contains("truncated.safetensors") && err.contains("not a checkpoint"), "{err}");
        save_weights(&vars, 0, &dir.join("weights.safetensors")).unwrap();
        let err = read_train_state(&dir.join("weights.safetensors")).unwrap_err().to_string();
        assert!(err.contains("a weights file, not a checkpoint"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
