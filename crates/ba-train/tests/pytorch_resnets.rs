//! The CIFAR ResNets (plain, SE, BA at depths 20, 32, 56 and 110) against their PyTorch twins
//! (`scripts/torch_models.py`, run by `scripts/resnet_reference.py`): the exported state_dict
//! loads with `strict=True`, the parameter and buffer counts are PyTorch's, the eval-mode
//! logits agree, and a train-mode pass (batch statistics) gives the same loss, gradients and
//! running statistics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ba_core::init::SeededVarMap;
use ba_core::model::{ImageClassifier, ParameterCount};
use ba_core::rng::rng_for;
use ba_models::{Family, ModelConfig, ModelKind};
use ba_train::checkpoint::state_dict;
use ba_train::loss::soft_target_cross_entropy;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand_distr::{Distribution, StandardNormal};

const IMAGES: usize = 4;

fn resnets() -> impl Iterator<Item = ModelKind> {
    ModelKind::ALL.into_iter().filter(|k| k.family() == Family::ResNet)
}

/// A model with seeded weights, and batch norms whose affine parameters and running statistics
/// are away from their defaults, so that both modes of every batch norm are exercised.
/// In f64, the same f32 values widened (those the PyTorch side loads).
fn reference_model(kind: ModelKind, dtype: DType) -> (VarMap, Box<dyn ImageClassifier>) {
    let (f32_vars, f32_model) = f32_reference_model(kind);
    if dtype == DType::F32 {
        return (f32_vars, f32_model);
    }
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(11, "init"), dtype, &Device::Cpu);
    let model = kind.build(ModelConfig::cifar10(11), vb).unwrap();
    let narrow = f32_vars.data().lock().unwrap();
    for (name, var) in vars.data().lock().unwrap().iter() {
        var.set(&narrow[name].as_tensor().to_dtype(dtype).unwrap()).unwrap();
    }
    drop(narrow);
    (vars, model)
}

fn f32_reference_model(kind: ModelKind) -> (VarMap, Box<dyn ImageClassifier>) {
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(11, "init"), DType::F32, &Device::Cpu);
    let model = kind.build(ModelConfig::cifar10(11), vb).unwrap();
    let data = vars.data().lock().unwrap();
    let norms: Vec<String> = data.keys().filter_map(|n| n.strip_suffix(".running_mean")).map(str::to_string).collect();
    for (name, var) in data.iter() {
        let n = var.elem_count();
        let prefix = name.rsplit_once('.').map_or("", |(p, _)| p);
        let values: Option<Vec<f32>> = match name.rsplit('.').next() {
            Some("running_mean") => Some((0..n).map(|i| 0.05 * (i % 7) as f32 - 0.1).collect()),
            Some("running_var") => Some((0..n).map(|i| 0.5 + 0.1 * (i % 5) as f32).collect()),
            Some("weight") if norms.iter().any(|p| p == prefix) => {
                Some((0..n).map(|i| 0.8 + 0.1 * (i % 4) as f32).collect())
            }
            Some("bias") if norms.iter().any(|p| p == prefix) => {
                Some((0..n).map(|i| 0.05 * (i % 3) as f32 - 0.05).collect())
            }
            _ => None,
        };
        if let Some(v) = values {
            var.set(&Tensor::from_vec(v, n, &Device::Cpu).unwrap()).unwrap();
        }
    }
    drop(data);
    (vars, model)
}

/// Four standard-normal 3x32x32 images and soft targets (two classes mixed 0.7 / 0.3).
fn batch() -> (Tensor, Tensor) {
    let mut rng = rng_for(11, "resnet-input");
    let values: Vec<f32> = (0..IMAGES * 3 * 32 * 32).map(|_| StandardNormal.sample(&mut rng)).collect();
    let mut targets = vec![0f32; IMAGES * 10];
    for i in 0..IMAGES {
        targets[i * 10 + (3 * i) % 10] += 0.7;
        targets[i * 10 + (7 * i + 1) % 10] += 0.3;
    }
    (
        Tensor::from_vec(values, (IMAGES, 3, 32, 32), &Device::Cpu).unwrap(),
        Tensor::from_vec(targets, (IMAGES, 10), &Device::Cpu).unwrap(),
    )
}

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pytorch-compat")
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

/// Writes the weights and the batch for `scripts/resnet_reference.py`.
#[test]
#[ignore = "run by scripts/pytorch_reference.sh"]
fn write_resnet_inputs() {
    std::fs::create_dir_all(out_dir()).unwrap();
    for kind in resnets() {
        let (vars, _) = reference_model(kind, DType::F32);
        candle_core::safetensors::save(&state_dict(&vars, 0).unwrap(), out_dir().join(format!("{kind}.safetensors")))
            .unwrap();
    }
    let (images, targets) = batch();
    let input = HashMap::from([("images".to_string(), images), ("targets".to_string(), targets)]);
    candle_core::safetensors::save(&input, out_dir().join("resnet-input.safetensors")).unwrap();
}

fn fixture() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/pytorch_resnets.json")).expect("fixture is JSON")
}

fn close(ours: &[f64], theirs: &[f64], tolerance: f64) -> bool {
    ours.len() == theirs.len() && ours.iter().zip(theirs).all(|(a, b)| (a - b).abs() <= tolerance)
}

#[test]
fn parameter_counts_and_eval_logits_match_pytorch() {
    let fixture = fixture();
    let (images, _) = batch();
    for kind in resnets() {
        let expected = &fixture[kind.name()];
        assert!(expected.is_object(), "{kind}: no fixture; run scripts/pytorch_reference.sh");
        let (vars, model) = reference_model(kind, DType::F32);
        let count = ParameterCount::of(&vars);
        let trainable = expected["parameters"].as_u64().unwrap() as usize;
        let buffers = expected["running_statistics"].as_u64().unwrap() as usize;
        assert_eq!((count.trainable, count.total), (trainable, trainable + buffers), "{kind}: parameters");
        let ours = values(&model.forward_t(&images, false).unwrap());
        let theirs: Vec<f64> = serde_json::from_value(expected["eval_logits"].clone()).unwrap();
        let scale = theirs.iter().fold(1f64, |m, v| m.max(v.abs()));
        assert!(close(&ours, &theirs, 1e-4 * scale), "{kind}: eval logits {ours:?} vs PyTorch {theirs:?}");
    }
}

/// In f64 on both sides: through up to 110 layers of batch norms and ReLUs, f32 rounding alone
/// flips ReLU masks and moves the first layers' gradients by tenths of a percent.
#[test]
fn a_train_mode_pass_matches_pytorch() {
    let fixture = fixture();
    let (images, targets) = batch();
    let (images, targets) = (images.to_dtype(DType::F64).unwrap(), targets.to_dtype(DType::F64).unwrap());
    for kind in resnets() {
        let expected = &fixture[kind.name()];
        let (vars, model) = reference_model(kind, DType::F64);
        let logits = model.forward_t(&images, true).unwrap();
        let theirs: Vec<f64> = serde_json::from_value(expected["train_logits"].clone()).unwrap();
        let scale = theirs.iter().fold(1f64, |m, v| m.max(v.abs()));
        assert!(close(&values(&logits), &theirs, 1e-8 * scale), "{kind}: train-mode logits");
        let loss = soft_target_cross_entropy(&logits, &targets, 0.0).unwrap();
        let (ours, theirs) = (loss.to_scalar::<f64>().unwrap(), expected["loss"].as_f64().unwrap());
        assert!((ours - theirs).abs() <= 1e-9 * theirs.abs(), "{kind}: loss {ours} vs PyTorch {theirs}");
        let grads = loss.backward().unwrap();
        let data = vars.data().lock().unwrap();
        // Per parameter: the sum of |gradient| and the gradient's first value.
        for (name, want) in expected["grads"].as_object().unwrap() {
            let grad = values(grads.get(data[name].as_tensor()).unwrap_or_else(|| panic!("{kind}: no d {name}")));
            let (abs_sum, first) = (want[0].as_f64().unwrap(), want[1].as_f64().unwrap());
            let ours_abs: f64 = grad.iter().map(|g| g.abs()).sum();
            assert!(
                (ours_abs - abs_sum).abs() <= 1e-7 * abs_sum + 1e-12,
                "{kind}: sum |d {name}|: {ours_abs} vs {abs_sum}"
            );
            let tolerance = 1e-7 * abs_sum + 1e-12;
            assert!((grad[0] - first).abs() <= tolerance, "{kind}: d {name}[0]: {} vs {first}", grad[0]);
        }
        // Running statistics after the pass: momentum 0.1, unbiased variance.
        for (name, want) in expected["buffers"].as_object().unwrap() {
            let want: Vec<f64> = serde_json::from_value(want.clone()).unwrap();
            let ours = values(data[name].as_tensor());
            let scale = want.iter().fold(1f64, |m, x| m.max(x.abs()));
            assert!(close(&ours, &want, 1e-8 * scale), "{kind}: {name} after the pass");
        }
    }
}
