//! The Rust models against the same networks in PyTorch (`scripts/pytorch_reference.py`):
//! the exported state_dict loads with `strict=True`, eval-mode logits agree, and one training
//! step in train mode (soft targets, label smoothing, batch statistics, Adam with coupled L2)
//! gives the same loss, gradients, batch-norm running statistics and updated weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ba_core::init::SeededVarMap;
use ba_core::model::ImageClassifier;
use ba_core::rng::rng_for;
use ba_models::{ModelConfig, ModelKind};
use ba_train::checkpoint::state_dict;
use ba_train::loss::soft_target_cross_entropy;
use ba_train::{Adam, AdamConfig, Optimizer};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand_distr::{Distribution, StandardNormal};

/// A model with seeded weights and batch-norm running statistics away from their defaults, so
/// that the eval-mode batch norm is exercised; `dropout` is the classifier's drop probability.
fn reference_model(kind: ModelKind, dropout: f32) -> (VarMap, Box<dyn ImageClassifier>) {
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(7, "init"), DType::F32, &Device::Cpu);
    let model = kind.build(ModelConfig { dropout, ..ModelConfig::cifar10(7) }, vb).unwrap();
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
    for kind in ModelKind::ALEXNETS {
        let (vars, _) = reference_model(kind, 0.5);
        candle_core::safetensors::save(&state_dict(&vars, 0).unwrap(), out_dir().join(format!("{kind}.safetensors")))
            .unwrap();
    }
    let (step_images, step_targets) = step_batch();
    let input = HashMap::from([
        ("images".to_string(), reference_input()),
        ("step_images".to_string(), step_images),
        ("step_targets".to_string(), step_targets),
    ]);
    candle_core::safetensors::save(&input, out_dir().join("input.safetensors")).unwrap();
}

#[test]
fn eval_logits_match_pytorch() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/pytorch_logits.json")).expect("fixture is JSON");
    let input = reference_input();
    for kind in ModelKind::ALEXNETS {
        let (_, model) = reference_model(kind, 0.5);
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

/// The training step of the fixture: four images, soft targets (two classes mixed 0.7 / 0.3, as
/// mixup makes them), label smoothing 0.1, Adam lr 1e-3 with coupled L2 1e-5, dropout off (its
/// masks are not shared with PyTorch).
const STEP_SMOOTHING: f64 = 0.1;
const STEP_LR: f64 = 1e-3;
const STEP_DECAY: f64 = 1e-5;

fn step_batch() -> (Tensor, Tensor) {
    let mut rng = rng_for(7, "step-input");
    let n = 4;
    let values: Vec<f32> = (0..n * 3 * 128 * 128).map(|_| StandardNormal.sample(&mut rng)).collect();
    let mut targets = vec![0f32; n * 10];
    for i in 0..n {
        targets[i * 10 + (3 * i) % 10] += 0.7;
        targets[i * 10 + (7 * i + 1) % 10] += 0.3;
    }
    (
        Tensor::from_vec(values, (n, 3, 128, 128), &Device::Cpu).unwrap(),
        Tensor::from_vec(targets, (n, 10), &Device::Cpu).unwrap(),
    )
}

/// The values of `t`, flattened, as f64.
fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

/// A tensor as the fixture summarises it: every value of a small tensor, or for a large one its
/// sum and the values at some indices; `max_abs` is the scale the tolerances are relative to.
struct Summary {
    max_abs: f64,
    sum: f64,
    /// (flat index, value).
    entries: Vec<(usize, f64)>,
}

impl Summary {
    fn read(v: &serde_json::Value) -> Self {
        let number = |x: &serde_json::Value| x.as_f64().expect("a number");
        match v.get("values") {
            Some(all) => {
                let all: Vec<f64> = all.as_array().unwrap().iter().map(number).collect();
                Self {
                    max_abs: all.iter().fold(0.0, |m, x| m.max(x.abs())),
                    sum: all.iter().sum(),
                    entries: all.into_iter().enumerate().collect(),
                }
            }
            None => Self {
                max_abs: number(&v["max_abs"]),
                sum: number(&v["sum"]),
                entries: v["samples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p[0].as_u64().unwrap() as usize, number(&p[1])))
                    .collect(),
            },
        }
    }
}

#[test]
fn a_training_step_matches_pytorch() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/pytorch_step.json")).expect("fixture is JSON");
    let (images, targets) = step_batch();
    for kind in ModelKind::ALEXNETS {
        let expected = &fixture[kind.name()];
        assert!(expected.is_object(), "{kind}: no fixture; run scripts/pytorch_reference.sh");
        let (vars, model) = reference_model(kind, 0.0);
        let before: HashMap<String, Vec<f64>> =
            vars.data().lock().unwrap().iter().map(|(n, v)| (n.clone(), values(v.as_tensor()))).collect();
        let logits = model.forward_t(&images, true).unwrap();
        let loss = soft_target_cross_entropy(&logits, &targets, STEP_SMOOTHING).unwrap();
        let (ours, theirs) = (loss.to_scalar::<f32>().unwrap() as f64, expected["loss"].as_f64().unwrap());
        assert!((ours - theirs).abs() <= 1e-5 * theirs.abs(), "{kind}: loss {ours} vs PyTorch {theirs}");
        let grads = loss.backward().unwrap();
        let mut adam = Adam::new(&vars, AdamConfig { weight_decay: STEP_DECAY, ..AdamConfig::default() });
        adam.step(&grads, STEP_LR).unwrap();
        let data = vars.data().lock().unwrap();
        let grad_fixture = expected["grads"].as_object().unwrap();
        assert_eq!(grad_fixture.len(), data.keys().filter(|n| !n.contains("running_")).count(), "{kind}: parameters");
        for (name, fixture_grad) in grad_fixture {
            let var = &data[name];
            let grad = values(grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{kind}: {name} has no gradient")));
            let want = Summary::read(fixture_grad);
            let tolerance = 2e-4 * want.max_abs + 1e-12;
            for &(i, w) in &want.entries {
                assert!((grad[i] - w).abs() <= tolerance, "{kind}: d {name}[{i}] = {} vs PyTorch {w}", grad[i]);
            }
            let sum: f64 = grad.iter().sum();
            let sum_tolerance = 2e-4 * want.max_abs * (grad.len() as f64).sqrt() + 1e-12;
            assert!((sum - want.sum).abs() <= sum_tolerance, "{kind}: sum of d {name}: {sum} vs PyTorch {}", want.sum);
            // Adam's first step moves each value by about lr * sign(gradient + decay): compared,
            // in units of the learning rate, where the gradient is clearly away from zero or
            // exactly zero (a unit the ReLU cut off, on both sides).
            let updated = Summary::read(&expected["updated"][name]);
            let after = values(var.as_tensor());
            let mut compared = 0;
            for (&(i, w), &(j, g)) in updated.entries.iter().zip(&want.entries) {
                assert_eq!(i, j, "{kind}: {name}: the fixture's indices");
                if g == 0.0 || g.abs() >= 1e-3 * want.max_abs {
                    let (step_ours, step_theirs) =
                        ((before[name][i] - after[i]) / STEP_LR, (before[name][i] - w) / STEP_LR);
                    assert!(
                        (step_ours - step_theirs).abs() <= 1e-3,
                        "{kind}: Adam step of {name}[{i}]: {step_ours} vs PyTorch {step_theirs} (x lr)"
                    );
                    compared += 1;
                }
            }
            assert!(2 * compared >= want.entries.len(), "{kind}: {name}: only {compared} updates compared");
        }
        // Batch statistics: momentum 0.1, unbiased variance, as PyTorch's BatchNorm2d.
        let buffers = expected["buffers"].as_object().unwrap();
        assert_eq!(buffers.len(), data.keys().filter(|n| n.contains("running_")).count(), "{kind}: buffers");
        for (name, want) in buffers {
            let ours = values(data[name].as_tensor());
            let want: Vec<f64> = serde_json::from_value(want.clone()).unwrap();
            let scale = want.iter().fold(0f64, |m, x| m.max(x.abs()));
            for (i, (a, b)) in ours.iter().zip(&want).enumerate() {
                assert!((a - b).abs() <= 1e-5 * scale, "{kind}: {name}[{i}] after the step: {a} vs PyTorch {b}");
            }
        }
    }
}
