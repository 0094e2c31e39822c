//! Train BA-AlexNet from Rust with the `Learner`: the committed CIFAR-10 sample, the notebook's
//! augmentation and mixup, Adam under a cosine schedule, and a run folder with the metrics
//! file, checkpoints and best and final weights.
//!
//!     cargo run --release -p ba-train --example train_on_sample -- [EPOCHS] [IMAGES_PER_CLASS]
//!
//! Defaults: 1 epoch on all 5,000 training images (about two minutes on two cores).

use std::error::Error;
use std::sync::Arc;

use ba_core::init::SeededVarMap;
use ba_core::rng::{derive_seed, rng_for};
use ba_data::transforms::{mixup::Mixup, notebook_train_pipeline, test_pipeline};
use ba_data::{Cifar10, Loader, LoaderConfig, Split};
use ba_models::{ModelConfig, ModelKind, INPUT_SIZE};
use ba_train::{Adam, AdamConfig, CosineAnnealing, Learner, LearnerConfig};
use candle_core::{DType, Device};
use candle_nn::VarMap;

fn main() -> Result<(), Box<dyn Error>> {
    let arg = |i: usize, default: usize| std::env::args().nth(i).map_or(Ok(default), |a| a.parse());
    let (epochs, per_class) = (arg(1, 1)?, arg(2, usize::MAX)?);
    let data = Cifar10::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/cifar-10-sample"))?;
    let first = |split: &Split| {
        let mut out = Split::default();
        split.first_per_class(per_class).into_iter().for_each(|i| out.push(split.label(i), split.image(i)));
        Arc::new(out)
    };
    let (shuffle_seed, augment_seed) = (derive_seed(42, "shuffle"), derive_seed(42, "augment"));
    let mixup = Mixup::new(1.5);
    let (train_split, test_split) = (first(&data.train), first(&data.test));
    let batch_size = 64.min(train_split.len());
    let config = LoaderConfig { batch_size, shuffle: true, drop_last: true, shuffle_seed, augment_seed, mixup };
    let train = Loader::new(train_split, Arc::new(notebook_train_pipeline(INPUT_SIZE)), config, Device::Cpu);
    let eval = LoaderConfig { shuffle: false, drop_last: false, mixup: None, ..config };
    let val = Loader::new(test_split, Arc::new(test_pipeline(INPUT_SIZE)), eval, Device::Cpu);

    let vars = VarMap::new();
    let init = SeededVarMap::builder(&vars, rng_for(42, "init"), DType::F32, &Device::Cpu);
    let model = ModelKind::BaAlexNet.build(ModelConfig::cifar10(derive_seed(42, "dropout")), init)?;
    let adam = Adam::new(&vars, AdamConfig { weight_decay: 1e-5, ..AdamConfig::default() });
    let steps = epochs * train.batches_per_epoch();
    let cosine = CosineAnnealing { base_lr: 1e-4, eta_min: 0.0, total_steps: steps };
    let run = LearnerConfig {
        model: "ba-alexnet".into(),
        epochs,
        label_smoothing: 0.1,
        step_log_every: 10,
        description: serde_json::json!({ "example": "train_on_sample" }),
    };
    let dir = std::env::temp_dir().join("ba-train-example-run");
    let mut learner = Learner::new(model.as_ref(), &vars, adam, cosine, run, &dir)?
        .on_epoch(|e| println!("epoch {}: train loss {:.4}, val acc {:.4}", e.epoch, e.train.loss, e.val.accuracy));
    let fitted = learner.fit(&train, &val)?;
    println!(
        "{} epochs in {:.0} s; best epoch {}; run folder {}",
        fitted.epochs.len(),
        fitted.seconds,
        fitted.best_epoch,
        dir.display()
    );
    Ok(())
}
