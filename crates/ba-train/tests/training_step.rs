//! A few optimisation steps on a fixed batch of real images lower the loss, for both models.

use ba_core::init::SeededVarMap;
use ba_core::model::ImageClassifier;
use ba_core::rng::rng_for;
use ba_data::transforms::{test_pipeline, Image, Transform};
use ba_data::Cifar10;
use ba_models::{ModelConfig, ModelKind, INPUT_SIZE};
use ba_train::loss::{label_smoothing_cross_entropy, one_hot};
use ba_train::{Adam, AdamConfig, CosineAnnealing, Schedule, Trainer};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;

fn fixed_batch(n: usize) -> (Tensor, Tensor) {
    let data = Cifar10::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/cifar-10-sample")).unwrap();
    let pipeline = test_pipeline(INPUT_SIZE);
    let mut rng = ba_data::Rng::seed_from_u64(0);
    let mut pixels = Vec::new();
    for i in 0..n {
        pixels.extend(pipeline.apply(Image::from_cifar(data.test.image(i)), &mut rng).data);
    }
    let labels: Vec<u32> = (0..n).map(|i| data.test.label(i) as u32).collect();
    (
        Tensor::from_vec(pixels, (n, 3, INPUT_SIZE, INPUT_SIZE), &Device::Cpu).unwrap(),
        Tensor::from_vec(labels, n, &Device::Cpu).unwrap(),
    )
}

/// A seeded model of `kind` with its variables.
fn model(kind: ModelKind) -> (VarMap, Box<dyn ImageClassifier>) {
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(3, "init"), DType::F32, &Device::Cpu);
    let model = kind.build(ModelConfig::cifar10(3), vb).unwrap();
    (vars, model)
}

/// The cosine schedule the tests train with.
const SCHEDULE: CosineAnnealing = CosineAnnealing { base_lr: 1e-3, eta_min: 0.0, total_steps: 10 };

#[test]
fn steps_on_a_fixed_batch_reduce_the_loss() {
    let (x, y) = fixed_batch(12);
    for kind in ModelKind::ALEXNETS {
        let (vars, model) = model(kind);
        let eval_loss = || {
            let logits = model.forward_t(&x, false).unwrap();
            label_smoothing_cross_entropy(&logits, &y, 0.1).unwrap().to_scalar::<f32>().unwrap()
        };
        let before = eval_loss();
        let schedule = CosineAnnealing { base_lr: 1e-3, eta_min: 0.0, total_steps: 100 };
        let adam = Adam::new(&vars, AdamConfig { weight_decay: 1e-5, ..AdamConfig::default() });
        let mut trainer = Trainer::new(model.as_ref(), adam, schedule, 0.1);
        for _ in 0..5 {
            let targets = one_hot(&y, 10, DType::F32).unwrap();
            let (loss, _) = trainer.step(&x, &targets).unwrap();
            assert!(loss.is_finite());
        }
        let after = eval_loss();
        eprintln!("{kind}: eval loss {before} -> {after}");
        assert!(after < before - 0.1, "{kind}: loss {before} -> {after}");
    }
}

#[test]
fn an_epoch_reports_the_time_spent_waiting_for_data() {
    let (x, y) = fixed_batch(4);
    let targets = one_hot(&y, 10, DType::F32).unwrap();
    let (vars, model) = model(ModelKind::AlexNet);
    let schedule = SCHEDULE;
    let mut trainer =
        Trainer::new(model.as_ref(), Adam::new(&vars, AdamConfig::default()), schedule, 0.1).with_step_log(1);
    // A slow loader: each batch takes 150 ms to arrive.
    let slow = (0..2).map(|_| {
        std::thread::sleep(std::time::Duration::from_millis(150));
        Ok::<_, std::io::Error>((x.clone(), targets.clone()))
    });
    let stats = trainer.train_epoch(slow).unwrap();
    assert_eq!(stats.images, 8);
    assert!(stats.data_wait_seconds >= 0.3, "waited {} s", stats.data_wait_seconds);
    assert!(stats.data_wait_seconds < stats.seconds);
    // One step record per step here: the loss of that step and the rate it used.
    let records = trainer.take_step_records();
    assert_eq!(records.iter().map(|r| (r.step, r.epoch)).collect::<Vec<_>>(), vec![(1, 1), (2, 1)]);
    assert_eq!((records[0].lr, records[1].lr), (schedule.lr(0), schedule.lr(1)));
    assert!((records.iter().map(|r| r.loss).sum::<f64>() / 2.0 - stats.loss).abs() < 1e-6);
    assert!(trainer.take_step_records().is_empty());
}

#[test]
fn a_non_finite_loss_stops_the_epoch_and_leaves_the_weights() {
    let (x, y) = fixed_batch(2);
    let targets = one_hot(&y, 10, DType::F32).unwrap();
    let (vars, model) = model(ModelKind::AlexNet);
    let schedule = SCHEDULE;
    let mut trainer = Trainer::new(model.as_ref(), Adam::new(&vars, AdamConfig::default()), schedule, 0.1);
    let weights = |vars: &VarMap| {
        vars.data().lock().unwrap()["features.0.weight"].as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let before = weights(&vars);
    // NaN targets give a NaN loss. (NaN images would not: Candle's ReLU maps NaN to 0, unlike
    // PyTorch's, so the standalone ReLUs of the trunk hide them.)
    let poisoned = (targets.clone() * f64::NAN).unwrap();
    let batches = vec![Ok::<_, std::io::Error>((x.clone(), poisoned)), Ok((x, targets))];
    let err = trainer.train_epoch(batches.into_iter()).unwrap_err().to_string();
    assert_eq!(err, "epoch 1, step 1: the loss is NaN; lower the learning rate or check the data");
    assert_eq!(weights(&vars), before, "no update from the poisoned step");
}
