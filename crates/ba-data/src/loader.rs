//! Seeded, parallel, prefetching batches of transformed images as Candle tensors.
//!
//! The order of an epoch is a shuffle drawn from `(shuffle_seed, epoch)`; each image's
//! augmentation draws from its own generator at `(augment_seed, epoch, position)`. Batches are
//! therefore the same whatever the number of threads, and two runs with the same seeds (one per
//! model, say) see the same images in the same order with the same augmentation. Mixup, when
//! on, draws each batch's weight from `(augment_seed, epoch, batch)` on a stream of its own.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use crate::dataset::Split;
use crate::dataset::NUM_CLASSES;
use crate::error::Result;
use crate::transforms::mixup::{one_hot, Mixup};
use crate::transforms::{Image, Transform};
use crate::Rng;

/// Batches a loader holds ready ahead of the one being consumed.
pub const PREFETCHED_BATCHES: usize = 2;

/// How a loader cuts and orders an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Whether each epoch visits the images in a fresh random order.
    pub shuffle: bool,
    /// Whether a last, smaller batch is dropped.
    pub drop_last: bool,
    /// Seed of the epoch orders.
    pub shuffle_seed: u64,
    /// Seed of the per-image augmentation draws and of mixup.
    pub augment_seed: u64,
    /// Batch-level mixup, or `None`.
    pub mixup: Option<Mixup>,
}

/// One batch: normalised images (B, 3, H, W) f32, labels (B,) u32 and targets (B, 10) f32.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The images (mixed, under mixup).
    pub images: Tensor,
    /// The class of each image (of the first image of each mixed pair).
    pub labels: Tensor,
    /// Class probabilities to train on: one-hot, or the pair's weights under mixup.
    pub targets: Tensor,
}

/// Produces the batches of a split through a transform.
pub struct Loader {
    split: Arc<Split>,
    transform: Arc<dyn Transform>,
    config: LoaderConfig,
    device: Device,
}

impl Loader {
    /// A loader over `split`; `batch_size` must be positive.
    pub fn new(split: Arc<Split>, transform: Arc<dyn Transform>, config: LoaderConfig, device: Device) -> Self {
        assert!(config.batch_size > 0, "batch size must be positive");
        Self { split, transform, config, device }
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.split.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Images seen in one epoch.
    pub fn images_per_epoch(&self) -> usize {
        if self.config.drop_last {
            self.batches_per_epoch() * self.config.batch_size
        } else {
            self.split.len()
        }
    }

    /// The image indices of `epoch`, in visiting order.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.split.len()).collect();
        if self.config.shuffle {
            order.shuffle(&mut epoch_rng(self.config.shuffle_seed, epoch, 0));
        }
        order.truncate(self.images_per_epoch());
        order
    }

    /// The batches of `epoch`, prepared on a background thread while the caller consumes them.
    pub fn epoch(&self, epoch: usize) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// The batches of `epoch` from batch `first` on (to continue an interrupted epoch): the
    /// same batches [`Loader::epoch`] yields there, without preparing the earlier ones.
    pub fn epoch_from(&self, epoch: usize, first: usize) -> EpochIter {
        let (tx, rx) = sync_channel(PREFETCHED_BATCHES);
        let order = self.order(epoch);
        let (split, transform, device) = (self.split.clone(), self.transform.clone(), self.device.clone());
        let config = self.config;
        let worker = std::thread::spawn(move || {
            for (b, chunk) in order.chunks(config.batch_size).enumerate().skip(first) {
                let batch = make_batch(&split, transform.as_ref(), chunk, (epoch, b), &config, &device);
                if tx.send(batch).is_err() {
                    return; // the consumer stopped early
                }
            }
        });
        EpochIter { rx, worker: Some(worker) }
    }
}

/// The generator for `position` of `epoch` under `seed`: a ChaCha stream per epoch and 2^16
/// words per position, so no two positions share numbers.
fn epoch_rng(seed: u64, epoch: usize, position: usize) -> Rng {
    let mut rng = Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    rng.set_word_pos((position as u128) << 16);
    rng
}

/// Salt of the mixup generators, so they never share numbers with an image's.
const MIXUP_STREAM_SALT: u64 = 0x6d69_7875_7000_0000;

/// Batch `batch` of `epoch`, made of the images at `indices`.
fn make_batch(
    split: &Split,
    transform: &dyn Transform,
    indices: &[usize],
    (epoch, batch): (usize, usize),
    config: &LoaderConfig,
    device: &Device,
) -> Result<Batch> {
    let first_position = batch * config.batch_size;
    let images: Vec<Image> = indices
        .par_iter()
        .enumerate()
        .map(|(k, &i)| {
            let mut rng = epoch_rng(config.augment_seed, epoch, first_position + k);
            transform.apply(Image::from_cifar(split.image(i)), &mut rng)
        })
        .collect();
    let (h, w) = (images[0].height, images[0].width);
    let mut data = Vec::with_capacity(images.len() * 3 * h * w);
    for img in &images {
        data.extend_from_slice(&img.data);
    }
    let labels: Vec<u32> = indices.iter().map(|&i| split.label(i) as u32).collect();
    let targets = match config.mixup {
        Some(mixup) => {
            let lambda = mixup.sample(&mut epoch_rng(config.augment_seed ^ MIXUP_STREAM_SALT, epoch, batch));
            Mixup::apply_with(lambda, &mut data, 3 * h * w, &labels, NUM_CLASSES)
        }
        None => one_hot(&labels, NUM_CLASSES),
    };
    let n = indices.len();
    let batch = Batch {
        images: Tensor::from_vec(data, (n, 3, h, w), device)?,
        labels: Tensor::from_vec(labels, n, device)?,
        targets: Tensor::from_vec(targets, (n, NUM_CLASSES), device)?,
    };
    // On CUDA, Candle queues the uploads on this thread's own default stream, which is not
    // ordered with the training thread's: wait for them before the batch leaves this thread.
    device.synchronize()?;
    Ok(batch)
}

/// Iterator over the batches of one epoch.
pub struct EpochIter {
    rx: Receiver<Result<Batch>>,
    worker: Option<JoinHandle<()>>,
}

impl Iterator for EpochIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.rx.recv() {
            Ok(batch) => Some(batch),
            Err(_) => {
                if let Some(worker) = self.worker.take() {
                    if let Err(panic) = worker.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::{simple_train_pipeline, test_pipeline};

    fn split(n: usize) -> Arc<Split> {
        let mut s = Split::default();
        for i in 0..n {
            s.push((i % 10) as u8, &vec![(i * 3 % 256) as u8; crate::dataset::IMAGE_BYTES]);
        }
        Arc::new(s)
    }

    fn config(batch_size: usize, drop_last: bool) -> LoaderConfig {
        LoaderConfig { batch_size, shuffle: true, drop_last, shuffle_seed: 1, augment_seed: 2, mixup: None }
    }

    #[test]
    fn epochs_are_permutations_with_or_without_the_last_batch() {
        let loader = Loader::new(split(25), Arc::new(test_pipeline(32)), config(10, true), Device::Cpu);
        assert_eq!((loader.batches_per_epoch(), loader.images_per_epoch()), (2, 20));
        let order = loader.order(0);
        let mut sorted = order.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 20);
        assert_ne!(order, loader.order(1), "each epoch reshuffles");
        let batches: Vec<_> = loader.epoch(0).map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[0].images.dims(), &[10, 3, 32, 32]);
        let keep = Loader::new(split(25), Arc::new(test_pipeline(32)), config(10, false), Device::Cpu);
        let sizes: Vec<_> = keep.epoch(0).map(|b| b.unwrap().labels.dims()[0]).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
    }

    #[test]
    fn the_same_seeds_give_the_same_batches_whatever_the_thread_count() {
        let data = split(12);
        let run = |threads: usize| {
            let loader = Loader::new(data.clone(), Arc::new(simple_train_pipeline(28)), config(4, true), Device::Cpu);
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                loader
                    .epoch(3)
                    .map(|b| b.unwrap().images.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn mixup_mixes_images_and_targets_alike() {
        let data = split(8);
        let plain = Loader::new(data.clone(), Arc::new(test_pipeline(32)), config(8, true), Device::Cpu);
        let mixup = Some(Mixup::new(1.5).unwrap());
        let mixed =
            Loader::new(data, Arc::new(test_pipeline(32)), LoaderConfig { mixup, ..config(8, true) }, Device::Cpu);
        let (p, m) = (plain.epoch(0).next().unwrap().unwrap(), mixed.epoch(0).next().unwrap().unwrap());
        let labels = p.labels.to_vec1::<u32>().unwrap();
        assert_eq!(labels, m.labels.to_vec1::<u32>().unwrap());
        let (hard, soft) = (p.targets.to_vec2::<f32>().unwrap(), m.targets.to_vec2::<f32>().unwrap());
        for (i, row) in hard.iter().enumerate() {
            assert_eq!((row[labels[i] as usize], row.iter().sum::<f32>()), (1.0, 1.0));
        }
        assert!(soft.iter().all(|r| (r.iter().sum::<f32>() - 1.0).abs() < 1e-6));
        // The split's labels are i % 10 in file order, so the first and last images of the
        // batch differ in class unless the shuffle put the same class at both ends.
        let (first, last) = (labels[0] as usize, labels[7] as usize);
        assert_ne!(first, last, "pick a seed whose batch ends differ");
        let lambda = soft[0][first];
        assert!((soft[0][last] - (1.0 - lambda)).abs() < 1e-6 && (soft[7][first] - (1.0 - lambda)).abs() < 1e-6);
        let flat = |t: &Tensor| t.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
        let (pi, mi) = (flat(&p.images), flat(&m.images));
        let want = lambda * pi[0][1091] + (1.0 - lambda) * pi[7][1091];
        assert!((mi[0][1091] - want).abs() < 1e-5, "{} vs {want}", mi[0][1091]);
    }

    #[test]
    fn an_epoch_continues_from_any_batch() {
        let loader = Loader::new(split(40), Arc::new(simple_train_pipeline(28)), config(8, true), Device::Cpu);
        let flat = |b: Batch| b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let whole: Vec<_> = loader.epoch(2).map(|b| flat(b.unwrap())).collect();
        let rest: Vec<_> = loader.epoch_from(2, 3).map(|b| flat(b.unwrap())).collect();
        assert_eq!(rest, whole[3..]);
    }
}
