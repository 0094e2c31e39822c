//! Checkpoints that do not fit: another model's, or one with NaN weights. Each is refused with
//! a message naming the file and what is wrong, and the model is left as it was.

use ba_core::init::SeededVarMap;
use ba_core::rng::rng_for;
use ba_models::{ModelConfig, ModelKind};
use ba_train::checkpoint::{load_checkpoint, load_weights, save_checkpoint, save_weights, TrainState};
use ba_train::{Adam, AdamConfig};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

fn model_vars(kind: ModelKind, seed: u64) -> VarMap {
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(seed, "init"), DType::F32, &Device::Cpu);
    kind.build(ModelConfig::cifar10(seed), vb).unwrap();
    vars
}

fn value(vars: &VarMap, name: &str) -> Vec<f32> {
    vars.data().lock().unwrap()[name].as_tensor().flatten_all().unwrap().to_vec1().unwrap()
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ba-train-bad-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn another_models_checkpoint_is_refused_with_the_first_mismatches() {
    let dir = temp_dir("other");
    let alexnet = model_vars(ModelKind::AlexNet, 1);
    let path = dir.join("checkpoint.safetensors");
    let state = TrainState {
        model: "alexnet".into(),
        epochs_done: 1,
        steps: 0,
        rng_positions: Vec::new(),
        step_window: (0.0, 0),
        partial: None,
        history: Vec::new(),
        config: serde_json::json!({}),
    };
    save_checkpoint(&path, &alexnet, &Adam::new(&alexnet, AdamConfig::default()), &state).unwrap();
    let ba = model_vars(ModelKind::BaAlexNet, 2);
    let before = value(&ba, "conv1.weight");
    let mut adam = Adam::new(&ba, AdamConfig::default());
    let err = load_checkpoint(&path, &ba, &mut adam).unwrap_err().to_string();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    assert!(err.contains("lacks ba.cur_fusion.1.weight") && err.contains("and 13 more"), "{err}");
    assert!(err.contains("weights of another model?"), "{err}");
    assert_eq!(value(&ba, "conv1.weight"), before, "nothing was loaded");
    // Same names, other shapes: a classifier for 100 classes.
    let wide = VarMap::new();
    let vb = SeededVarMap::builder(&wide, rng_for(3, "init"), DType::F32, &Device::Cpu);
    ModelKind::AlexNet.build(ModelConfig { num_classes: 100, ..ModelConfig::cifar10(3) }, vb).unwrap();
    let err = load_weights(&path, &wide).unwrap_err().to_string();
    assert!(err.contains("classifier.6.bias has shape [10], the model [100]"), "{err}");
    assert!(err.contains("classifier.6.weight has shape [10, 2048], the model [100, 2048]"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weights_with_nan_are_refused_and_named() {
    let dir = temp_dir("nan");
    let vars = model_vars(ModelKind::AlexNet, 4);
    {
        let data = vars.data().lock().unwrap();
        let var = &data["features.3.bias"];
        let mut values: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        values[5] = f32::NAN;
        values[9] = f32::INFINITY;
        var.set(&Tensor::new(values, &Device::Cpu).unwrap()).unwrap();
    }
    let path = dir.join("final.safetensors");
    save_weights(&vars, 0, &path).unwrap();
    let fresh = model_vars(ModelKind::AlexNet, 5);
    let before = value(&fresh, "features.3.bias");
    let err = load_weights(&path, &fresh).unwrap_err().to_string();
    assert!(
        err.contains("final.safetensors") && err.contains("features.3.bias holds 2 NaN or infinite values"),
        "{err}"
    );
    assert_eq!(value(&fresh, "features.3.bias"), before, "nothing was loaded");
    std::fs::remove_dir_all(&dir).unwrap();
}
