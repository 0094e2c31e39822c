//! The Rust models against the same networks in PyTorch (`scripts/pytorch_reference.py`):
//! the exported state_dict loads with `strict=True`, and eval-mode logits agree.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ba_core::init::SeededVarMap;
use ba_core::model::ImageClassifier;
use ba_core::rng::rng_for;
use ba_models::{ModelConfig, ModelKind};
use ba_train::checkpoint::state_dict;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand_distr::{Distribution, StandardNormal};

/// A model with seeded weights and batch-norm running statistics away from their defaults, so
/// that the eval-mode batch norm is exercised.
fn reference_model(kind: ModelKind) -> (VarMap, Box<dyn ImageClassifier>) {
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(7, "init"), DType::F32, &Device::Cpu);
    let model = kind.build(ModelConfig::cifar10(7), vb).unwrap();
    for (name, var) in vars.data().lock().unwrap().iter() {
        let n = var.elem_count();
        let values: Option<Vec<f32>> = if name.ends_with("running_mean") {
            Some((0..n).map(|i| 0.05 * (i % 7) as f32 - 0.1).collect())
        } else if name.ends_with("running_var") {
            Some((0..n).map(|i| 0.5 + 0.1 * (i % 5) as f32).collect())
        } else if name.ends_with(".2.weight") && (name.starts_with("ba.") || name.starts_with("se.")) {
            Some((0..n).map(|i| 0.8 + 0.1 * (i % 4) as f32).collect())
        } else {
            None
        };
        if let Some(v) = values {
            var.set(&Tensor::from_vec(v, n, &Device::Cpu).unwrap()).unwrap();
        }
    }
    (vars, model)
}

fn reference_input() -> Tensor {
    let mut rng = rng_for(7, "input");
    let values: Vec<f32> = (0..2 * 3 * 128 * 128).map(|_| StandardNormal.sample(&mut rng)).collect();
    Tensor::from_vec(values, (2, 3, 128, 128), &Device::Cpu).unwrap()
}

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pytorch-compat")
}

/// Writes the weights and input for `scripts/pytorch_reference.py`.
#[test]
#[ignore = "run by scripts/pytorch_reference.sh"]
fn write_pytorch_inputs() {
    std::fs::create_dir_all(out_dir()).unwrap();
    for kind in ModelKind::ALL {
        let (vars, _) = reference_model(kind);
        candle_core::safetensors::save(&state_dict(&vars, 0).unwrap(), out_dir().join(format!("{kind}.safetensors")))
            .unwrap();
    }
    let input = HashMap::from([("images".to_string(), reference_input())]);
    candle_core::safetensors::save(&input, out_dir().join("input.safetensors")).unwrap();
}

#[test]
fn eval_logits_match_pytorch() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/pytorch_logits.json")).expect("fixture is JSON");
    let input = reference_input();
    for kind in ModelKind::ALL {
        let (_, model) = reference_model(kind);
        let ours = model.forward_t(&input, false).unwrap().to_vec2::<f32>().unwrap();
        let theirs: Vec<Vec<f64>> = serde_json::from_value(fixture[kind.name()].clone()).unwrap();
        let scale = theirs.iter().flatten().fold(0f64, |m, v| m.max(v.abs()));
        for (row_ours, row_theirs) in ours.iter().zip(&theirs) {
            for (a, b) in row_ours.iter().zip(row_theirs) {
                assert!((*a as f64 - b).abs() <= 1e-4 * scale, "{kind}: {ours:?} vs PyTorch {theirs:?}");
            }
        }
    }
}
