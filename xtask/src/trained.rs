//! Trained models read back from weight files, and what they say about images.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ba_core::init::SeededVarMap;
use ba_core::model::ImageClassifier;
use ba_core::rng::rng_for;
use ba_data::transforms::Image;
use ba_data::Split;
use ba_models::{Family, ModelConfig, ModelKind};

use crate::recipe_parts::test_transform;
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarMap;
use rand::SeedableRng;
use serde::Serialize;

/// Where trained weights come from: the options `eval` and `predict` share.
#[derive(Debug, clap::Args)]
pub struct WeightsArgs {
    /// Weights: best.safetensors, final.safetensors or checkpoint.safetensors of a run.
    #[arg(long, value_name = "PATH")]
    pub checkpoint: PathBuf,
    /// Architecture [default: recognised from the weights].
    #[arg(long)]
    pub model: Option<ModelKind>,
}

impl WeightsArgs {
    /// The model with these weights.
    pub fn load(&self, device: &Device) -> Result<Trained> {
        Trained::load(&self.checkpoint, self.model, device)
    }
}

/// A model with weights from a file, in evaluation mode.
pub struct Trained {
    pub kind: ModelKind,
    pub model: Box<dyn ImageClassifier>,
    /// Where the weights live.
    pub device: Device,
    /// Owns the model's variables.
    _vars: VarMap,
}

impl Trained {
    /// Reads `path` (`best.safetensors`, `final.safetensors` or a training checkpoint). The
    /// architecture is `kind`, or, without it, recognised from the tensor names.
    pub fn load(path: &Path, kind: Option<ModelKind>, device: &Device) -> Result<Self> {
        let kind = match kind {
            Some(kind) => kind,
            None => recognise(path)?,
        };
        let (vars, model) = fresh(kind, device)?;
        ba_train::checkpoint::load_weights(path, &vars)?;
        Ok(Self { kind, model, device: device.clone(), _vars: vars })
    }

    /// Class probabilities (B, 10) of a batch of normalised images, in evaluation mode.
    pub fn probabilities(&self, images: &Tensor) -> Result<Vec<Vec<f32>>> {
        let logits = self.model.forward_t(images, false)?;
        Ok(candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?)
    }
}

/// A model of `kind` with freshly initialised variables (the seed does not matter here).
pub fn fresh(kind: ModelKind, device: &Device) -> Result<(VarMap, Box<dyn ImageClassifier>)> {
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(0, "init"), DType::F32, device);
    let model = kind.build(ModelConfig::cifar10(0), vb)?;
    Ok((vars, model))
}

/// The architecture whose weights `path` holds, from the tensor names.
fn recognise(path: &Path) -> Result<ModelKind> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a safetensors file ({e})", path.display()))?;
    let names = meta.tensors().into_keys().collect::<Vec<_>>();
    ModelKind::recognise(names.iter().map(String::as_str)).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))
}

/// Images through `family`'s test transform, stacked into one batch.
pub fn test_batch(images: impl IntoIterator<Item = Image>, family: Family, device: &Device) -> Result<Tensor> {
    let transform = test_transform(family);
    let side = family.input_size();
    // The test transform draws nothing from its generator.
    let mut rng = ba_data::Rng::seed_from_u64(0);
    let mut data = Vec::new();
    let mut n = 0;
    for image in images {
        data.extend(transform.apply(image, &mut rng).data);
        n += 1;
    }
    Ok(Tensor::from_vec(data, (n, 3, side, side), device)?)
}

/// Images `indices` of `split` through `family`'s test transform, as one batch.
pub fn split_batch(
    split: &Split,
    indices: impl IntoIterator<Item = usize>,
    family: Family,
    device: &Device,
) -> Result<Tensor> {
    test_batch(indices.into_iter().map(|i| Image::from_cifar(split.image(i))), family, device)
}

/// The `k` most likely classes of one probability row, most likely first.
pub fn top_k(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

/// Inference speed measured as a benchmark should: `warmup` untimed forward passes of one
/// batch, then the median of `repeats` timed ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub batch_size: usize,
    pub warmup: usize,
    pub repeats: usize,
    /// Images per second of the median pass.
    pub median_images_per_second: f64,
    /// Images per second of the fastest and slowest timed passes.
    pub best_images_per_second: f64,
    pub worst_images_per_second: f64,
}

impl Throughput {
    /// Times `model` in evaluation mode on `batch`.
    pub fn measure(model: &dyn ImageClassifier, batch: &Tensor, warmup: usize, repeats: usize) -> Result<Self> {
        if repeats == 0 {
            bail!("a throughput measurement needs at least one timed pass");
        }
        let batch_size = batch.dim(0)?;
        for _ in 0..warmup {
            model.forward_t(batch, false)?;
        }
        let mut seconds = Vec::with_capacity(repeats);
        for _ in 0..repeats {
            let start = Instant::now();
            // Reading the logits back makes sure the pass is complete on any device.
            model.forward_t(batch, false)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
            seconds.push(start.elapsed().as_secs_f64());
        }
        seconds.sort_by(f64::total_cmp);
        let rate = |s: f64| batch_size as f64 / s.max(1e-12);
        Ok(Self {
            batch_size,
            warmup,
            repeats,
            median_images_per_second: rate(seconds[repeats / 2]),
            best_images_per_second: rate(seconds[0]),
            worst_images_per_second: rate(seconds[repeats - 1]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ba_core::model::ParameterCount;

    #[test]
    fn top_k_ranks_by_probability_and_breaks_ties_by_class() {
        let p = [0.1, 0.3, 0.05, 0.3, 0.25];
        assert_eq!(top_k(&p, 3), vec![(1, 0.3), (3, 0.3), (4, 0.25)]);
        assert_eq!(top_k(&p, 9).len(), 5);
    }

    #[test]
    fn weights_are_recognised_and_a_wrong_file_is_named() {
        let dir = std::env::temp_dir().join(format!("xtask-trained-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for kind in ModelKind::ALL {
            let (vars, _) = fresh(kind, &Device::Cpu).unwrap();
            let path = dir.join(format!("{kind}.safetensors"));
            ba_train::checkpoint::save_weights(&vars, 0, &path).unwrap();
            assert_eq!(recognise(&path).unwrap(), kind);
            let trained = Trained::load(&path, None, &Device::Cpu).unwrap();
            assert_eq!((trained.kind, ParameterCount::of(&trained._vars)), (kind, ParameterCount::of(&vars)));
        }
        // BA-AlexNet's weights hold AlexNet's, so loading them as AlexNet works; the reverse
        // names what is missing.
        let err = Trained::load(&dir.join("alexnet.safetensors"), Some(ModelKind::BaAlexNet), &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("alexnet.safetensors") && err.contains("lacks ba."), "{err}");
        let junk = dir.join("junk.safetensors");
        std::fs::write(&junk, b"not a tensor file").unwrap();
        let err = Trained::load(&junk, None, &Device::Cpu).err().unwrap().to_string();
        assert!(err.contains("junk.safetensors") && err.contains("not a safetensors file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
