//! How long a training verb will take on this machine, said before it starts: a training step
//! and an evaluation pass of each model are timed on a batch of the recipe's size, and the
//! training augmentation on a few images, then scaled by the recipe's steps, epochs and seeds.
//! The augmentation is counted in full: it runs beside the steps, but on the same cores.

use std::time::Instant;

use anyhow::Result;
use ba_data::transforms::Image;
use ba_models::ModelKind;
use ba_train::loss::one_hot;
use ba_train::{Constant, Trainer};
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;

use crate::preset::Recipe;
use crate::recipe_parts::{optimizer, train_pipeline};
use crate::report::duration;
use crate::setup::Data;
use crate::trained::fresh;

/// Timed training steps per model, after one untimed.
const TIMED_STEPS: usize = 2;
/// Training images timed through the augmentation.
const AUGMENTED_IMAGES: usize = 16;

/// The time a run of each of `models` under `recipe`, `seeds` times, will take here.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// Seconds in all.
    pub seconds: f64,
    /// Per model: seconds of one training step and of one evaluation batch.
    pub per_model: Vec<(ModelKind, f64, f64)>,
    /// Seconds of the augmentation of one training batch, spread over all threads.
    pub augment: f64,
    batch_size: usize,
}

impl Estimate {
    /// Times each model on `device` (a second or two per model at batch 128 on two cores).
    pub fn measure(models: &[ModelKind], seeds: usize, recipe: &Recipe, data: &Data, device: &Device) -> Result<Self> {
        let batch = recipe.batch_size.min(data.train.len()).max(2);
        let side = recipe.family().input_size();
        let images = Tensor::zeros((batch, 3, side, side), DType::F32, device)?;
        let targets = one_hot(&Tensor::zeros(batch, DType::U32, device)?, ba_data::NUM_CLASSES, DType::F32)?;
        let steps = data.train.len() / recipe.batch_size;
        let eval_batches = data.test.len().div_ceil(batch);
        let augment = augment_seconds(recipe, data) * batch as f64 / rayon::current_num_threads() as f64;
        let mut per_model = Vec::new();
        let mut seconds = 0.0;
        for &kind in models {
            let (vars, model) = fresh(kind, device)?;
            let mut trainer = Trainer::new(model.as_ref(), optimizer(recipe, &vars), Constant(0.0), 0.0);
            let mut step = f64::INFINITY;
            for i in 0..=TIMED_STEPS {
                trainer.step(&images, &targets)?;
                if i > 0 {
                    step = step.min(trainer.last_step_timing().total());
                }
            }
            let start = Instant::now();
            model.forward_t(&images, false)?.sum_all()?.to_scalar::<f32>()?;
            let eval = start.elapsed().as_secs_f64();
            seconds += (seeds * recipe.epochs) as f64 * (steps as f64 * (step + augment) + eval_batches as f64 * eval);
            per_model.push((kind, step, eval));
        }
        Ok(Self { seconds, per_model, augment, batch_size: batch })
    }

    /// `estimated time here: about 2 h 05 min (a training step of 128 images takes 0.31 s for
    /// alexnet, ...)`.
    pub fn describe(&self) -> String {
        let steps: Vec<String> =
            self.per_model.iter().map(|(kind, step, _)| format!("{step:.2} s for {}", kind.name())).collect();
        format!(
            "estimated time here: about {} (a training step of {} images takes {}, and its augmentation {:.2} s, \
             measured just now)",
            duration(self.seconds),
            self.batch_size,
            steps.join(", "),
            self.augment
        )
    }
}

/// Seconds of the recipe's training augmentation per image, on one thread.
fn augment_seconds(recipe: &Recipe, data: &Data) -> f64 {
    let pipeline = train_pipeline(recipe);
    let mut rng = ba_data::Rng::seed_from_u64(0);
    let n = AUGMENTED_IMAGES.min(data.train.len());
    let start = Instant::now();
    for i in 0..n {
        pipeline.apply(Image::from_cifar(data.train.image(i)), &mut rng);
    }
    start.elapsed().as_secs_f64() / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::test_util::tiny_setup;

    #[test]
    fn the_estimate_scales_with_epochs_seeds_and_models() {
        let (data, recipe) = tiny_setup();
        let one = Estimate::measure(&[ModelKind::AlexNet], 1, &recipe, &data, &Device::Cpu).unwrap();
        let (_, step, eval) = one.per_model[0];
        assert!(step > 0.0 && eval > 0.0 && step.is_finite() && one.augment > 0.0);
        // 20 training images at batch 8: 2 steps an epoch; 10 test images: 2 batches.
        let want = recipe.epochs as f64 * (2.0 * (step + one.augment) + 2.0 * eval);
        assert!((one.seconds - want).abs() < 1e-9 * want, "{} vs {want}", one.seconds);
        let more = Estimate::measure(&ModelKind::ALEXNETS, 3, &recipe, &data, &Device::Cpu).unwrap();
        assert_eq!(more.per_model.iter().map(|m| m.0).collect::<Vec<_>>(), ModelKind::ALEXNETS);
        let want: f64 = more
            .per_model
            .iter()
            .map(|(_, s, e)| 3.0 * recipe.epochs as f64 * (2.0 * (s + more.augment) + 2.0 * e))
            .sum();
        assert!((more.seconds - want).abs() < 1e-9 * want);
        let text = more.describe();
        assert!(text.starts_with("estimated time here: about ") && text.contains("s for se-alexnet"), "{text}");
        assert!(text.contains("and its augmentation"), "{text}");
    }
}
