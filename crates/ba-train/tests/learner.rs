//! The run lifecycle of the `Learner`: the same seed gives the same run, and a run stopped
//! after an epoch or in the middle of one, then resumed from its folder, ends exactly as the
//! uninterrupted run (metrics file, step records, final weights and checkpoint), on a tiny
//! slice of the committed sample (20 training and 10 test images, BA-AlexNet, mixup).

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use ba_core::init::SeededVarMap;
use ba_core::rng::{derive_seed, rng_for};
use ba_data::transforms::mixup::Mixup;
use ba_data::transforms::{notebook_train_pipeline, test_pipeline};
use ba_data::{Cifar10, Loader, LoaderConfig, Split};
use ba_models::{ModelConfig, ModelKind, INPUT_SIZE};
use ba_train::checkpoint::read_train_state;
use ba_train::metrics::{read_metrics, read_step_records};
use ba_train::{
    Adam, AdamConfig, Constant, CosineAnnealing, Fitted, Learner, LearnerConfig, CHECKPOINT, FINAL, METRICS,
};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

const SEED: u64 = 5;
const EPOCHS: usize = 2;

fn first_per_class(split: &Split, n: usize) -> Arc<Split> {
    let mut out = Split::default();
    for i in split.first_per_class(n) {
        out.push(split.label(i), split.image(i));
    }
    Arc::new(out)
}

/// Training and test loaders over 2 and 1 images per class, batch 8 (two batches an epoch).
fn loaders() -> (Loader, Loader) {
    let data = Cifar10::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/cifar-10-sample")).unwrap();
    let config = LoaderConfig {
        batch_size: 8,
        shuffle: true,
        drop_last: true,
        shuffle_seed: derive_seed(SEED, "shuffle"),
        augment_seed: derive_seed(SEED, "augment"),
        mixup: Mixup::new(1.5),
    };
    let pipeline = Arc::new(notebook_train_pipeline(INPUT_SIZE));
    let train = Loader::new(first_per_class(&data.train, 2), pipeline, config, Device::Cpu);
    let val_config = LoaderConfig { shuffle: false, drop_last: false, mixup: None, ..config };
    let val = Loader::new(first_per_class(&data.test, 1), Arc::new(test_pipeline(INPUT_SIZE)), val_config, Device::Cpu);
    (train, val)
}

/// How a call of [`run`] starts and stops.
#[derive(Clone, Copy, Default)]
struct Control {
    resume: bool,
    pause_after_epoch: Option<usize>,
    pause_after_step: Option<u64>,
    stop_now: bool,
}

/// BA-AlexNet trained into `dir` by a learner (Adam, cosine, label smoothing 0.1, a step
/// record every 3 steps so that a window spans a pause).
fn run(dir: &Path, control: Control) -> Fitted {
    let (train, val) = loaders();
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(SEED, "init"), DType::F32, &Device::Cpu);
    let model = ModelKind::BaAlexNet.build(ModelConfig::cifar10(derive_seed(SEED, "dropout")), vb).unwrap();
    let adam = Adam::new(&vars, AdamConfig { weight_decay: 1e-5, ..AdamConfig::default() });
    let cosine = CosineAnnealing { base_lr: 1e-3, eta_min: 0.0, total_steps: 4 };
    let config = LearnerConfig {
        model: "ba-alexnet".into(),
        epochs: EPOCHS,
        label_smoothing: 0.1,
        step_log_every: 3,
        description: serde_json::json!({ "seed": SEED }),
    };
    let stop = AtomicBool::new(control.stop_now);
    let mut learner = Learner::new(model.as_ref(), &vars, adam, cosine, config, dir)
        .unwrap()
        .stop_when(&stop)
        .pause_after_epoch(control.pause_after_epoch)
        .pause_after_step(control.pause_after_step);
    if control.resume {
        learner.resume().unwrap();
    }
    learner.fit(&train, &val).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ba-train-learner-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Every tensor of a safetensors file, by name, as f64 values.
fn tensors(path: &Path) -> Vec<(String, Vec<f64>)> {
    let map = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    let values = |t: &Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
    names.into_iter().map(|n| (n.clone(), values(&map[n]))).collect()
}

fn losses(fitted: &Fitted) -> Vec<(f64, f64, usize, f64)> {
    fitted.epochs.iter().map(|e| (e.train.loss, e.train.accuracy, e.train.images, e.val.loss)).collect()
}

#[test]
fn the_same_seed_gives_the_same_weights_and_metrics() {
    let (a, b) = (scratch("same-a"), scratch("same-b"));
    let (first, second) = (run(&a, Control::default()), run(&b, Control::default()));
    assert!(first.complete && second.complete);
    assert_eq!(losses(&first), losses(&second), "metrics differ between identical runs");
    assert!(tensors(&a.join(FINAL)) == tensors(&b.join(FINAL)), "weights differ between identical runs");
    for dir in [a, b] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_stopped_and_resumed_run_equals_an_uninterrupted_one() {
    let straight_dir = scratch("straight");
    let straight = run(&straight_dir, Control::default());
    assert_eq!(straight.epochs.len(), EPOCHS);
    let stops = [
        ("after epoch 1", Control { pause_after_epoch: Some(1), ..Control::default() }),
        ("mid-epoch 1", Control { pause_after_step: Some(1), ..Control::default() }),
        ("mid-epoch 2", Control { pause_after_step: Some(3), ..Control::default() }),
        ("stop flag", Control { stop_now: true, ..Control::default() }),
    ];
    for (what, stop) in stops {
        let dir = scratch(&what.replace(' ', "-"));
        let first = run(&dir, stop);
        assert!(!first.complete && first.epochs.len() < EPOCHS && !dir.join(FINAL).exists(), "{what}");
        let stored = read_train_state(&dir.join(CHECKPOINT)).unwrap();
        assert_eq!(stored.history, first.epochs, "{what}: the checkpoint holds the history");
        assert_eq!(stored.config, serde_json::json!({ "seed": SEED }), "{what}: and the description");
        if what == "after epoch 1" {
            // A lost metrics file is rebuilt from the checkpoint's history.
            std::fs::remove_file(dir.join(METRICS)).unwrap();
        }
        let resumed = run(&dir, Control { resume: true, ..Control::default() });
        assert!(resumed.complete, "{what}");
        assert_eq!(losses(&resumed), losses(&straight), "{what}: metrics of the resumed run");
        let epochs = |d: &Path| {
            read_metrics(&d.join(METRICS)).unwrap().iter().map(|e| (e.epoch, e.train.loss)).collect::<Vec<_>>()
        };
        assert_eq!(epochs(&dir), epochs(&straight_dir), "{what}: metrics file epochs");
        let steps = read_step_records(&dir.join(METRICS)).unwrap();
        assert_eq!(steps, read_step_records(&straight_dir.join(METRICS)).unwrap(), "{what}: step records");
        assert_eq!(steps.len(), 1, "one record, at step 3");
        for file in [FINAL, CHECKPOINT] {
            assert!(tensors(&straight_dir.join(file)) == tensors(&dir.join(file)), "{what}: {file} differs");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::remove_dir_all(&straight_dir).unwrap();
}

#[test]
fn a_checkpoint_of_another_model_is_refused() {
    let dir = scratch("other-model");
    run(&dir, Control { pause_after_epoch: Some(1), ..Control::default() });
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(SEED, "init"), DType::F32, &Device::Cpu);
    let model = ModelKind::BaAlexNet.build(ModelConfig::cifar10(0), vb).unwrap();
    let config = LearnerConfig {
        model: "se-alexnet".into(),
        epochs: EPOCHS,
        label_smoothing: 0.1,
        step_log_every: 0,
        description: serde_json::Value::Null,
    };
    let adam = Adam::new(&vars, AdamConfig::default());
    let mut learner = Learner::new(model.as_ref(), &vars, adam, Constant(1e-3), config, &dir).unwrap();
    let err = learner.resume().err().unwrap().to_string();
    assert!(err.contains(CHECKPOINT) && err.contains("a checkpoint of ba-alexnet, not se-alexnet"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
