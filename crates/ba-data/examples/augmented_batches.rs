//! CIFAR-10 from a folder (or `.tar.gz`) through the notebook's augmentation into batches:
//! reads the data, builds a seeded loader with mixup, and prints what the first batches hold.
//!
//!     cargo run --release -p ba-data --example augmented_batches [-- PATH]
//!
//! PATH defaults to the sample committed in `data/cifar-10-sample`.

use std::sync::Arc;

use ba_data::transforms::mixup::Mixup;
use ba_data::transforms::notebook_train_pipeline;
use ba_data::{Cifar10, Loader, LoaderConfig, CLASS_NAMES};
use candle_core::Device;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/cifar-10-sample").into());
    // Binary or python version, folder or .tar.gz: the format is recognised from the files.
    let data = Cifar10::open(path.as_str())?;
    println!("{path}: {} training and {} test images", data.train.len(), data.test.len());

    let config = LoaderConfig {
        batch_size: 64,
        shuffle: true,
        drop_last: true,
        shuffle_seed: 1,
        augment_seed: 2,
        mixup: Mixup::new(1.5), // Beta(1.5, 1.5) weights, as the notebook
    };
    // Resize 130, colour jitter, random resized crop 128, flip, rotation, ImageNet normalisation.
    let pipeline = Arc::new(notebook_train_pipeline(128));
    let loader = Loader::new(Arc::new(data.train), pipeline, config, Device::Cpu);

    // Batches are prepared on a background thread while the caller uses the previous one.
    for (i, batch) in loader.epoch(0).take(3).enumerate() {
        let batch = batch?;
        let first = batch.labels.get(0)?.to_scalar::<u32>()? as usize;
        // Under mixup the targets are soft: each row mixes two one-hot labels.
        let target = batch.targets.get(0)?.to_vec1::<f32>()?;
        let mixed: Vec<String> = target
            .iter()
            .enumerate()
            .filter(|(_, &w)| w > 0.0)
            .map(|(c, w)| format!("{} {w:.2}", CLASS_NAMES[c]))
            .collect();
        println!(
            "batch {i}: images {:?}, first label {} (target: {})",
            batch.images.dims(),
            CLASS_NAMES[first],
            mixed.join(" + ")
        );
    }
    Ok(())
}
