//! The evaluation loop: loss and accuracy of a model in evaluation mode over a pass of
//! batches, and optionally every single prediction (for confusion matrices and prediction
//! grids).

use std::time::Instant;

use ba_core::model::ImageClassifier;
use candle_core::{DType, D};

use crate::error::{Result, TrainError};
use crate::loss::{correct_predictions, soft_target_cross_entropy};
use crate::trainer::{BatchResult, EpochProgress, PassStats};

/// What the model said about one image of an evaluation pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction<'a> {
    /// Position of the image in the pass, from 0.
    pub index: usize,
    /// The true class: the target's most probable one (the label, for one-hot targets).
    pub label: usize,
    /// The class with the highest logit (the one accuracy counts).
    pub predicted: usize,
    /// The model's class probabilities (softmax of its logits).
    pub probabilities: &'a [f32],
}

impl Prediction<'_> {
    /// The probability of the predicted class.
    pub fn confidence(&self) -> f32 {
        self.probabilities[self.predicted]
    }

    /// Whether the prediction is the true class.
    pub fn correct(&self) -> bool {
        self.predicted == self.label
    }
}

/// Loss (label smoothing `label_smoothing`) and accuracy of `model` in evaluation mode (no
/// dropout, running batch-norm statistics) over `batches`.
pub fn evaluate<E>(
    model: &dyn ImageClassifier,
    label_smoothing: f64,
    batches: impl Iterator<Item = BatchResult<E>>,
) -> Result<PassStats>
where
    E: std::error::Error + Send + Sync + 'static,
{
    pass(model, label_smoothing, batches, None)
}

/// [`evaluate`], calling `on_prediction` for every image in the order of `batches`.
pub fn evaluate_with<E>(
    model: &dyn ImageClassifier,
    label_smoothing: f64,
    batches: impl Iterator<Item = BatchResult<E>>,
    mut on_prediction: impl FnMut(&Prediction),
) -> Result<PassStats>
where
    E: std::error::Error + Send + Sync + 'static,
{
    pass(model, label_smoothing, batches, Some(&mut on_prediction))
}

fn pass<E>(
    model: &dyn ImageClassifier,
    label_smoothing: f64,
    batches: impl Iterator<Item = BatchResult<E>>,
    mut on_prediction: Option<&mut dyn FnMut(&Prediction)>,
) -> Result<PassStats>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let start = Instant::now();
    let mut done = EpochProgress::default();
    for batch in batches {
        let (x, y) = batch.map_err(|e| TrainError::Data(Box::new(e)))?;
        let logits = model.forward_t(&x, false)?.detach();
        let n = y.dim(0)?;
        done.loss_sum += soft_target_cross_entropy(&logits, &y, label_smoothing)?.to_scalar::<f32>()? as f64 * n as f64;
        done.correct += correct_predictions(&logits, &y)?;
        if let Some(report) = on_prediction.as_mut() {
            let probabilities = candle_nn::ops::softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?.to_vec2::<f32>()?;
            let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let labels = y.argmax(D::Minus1)?.to_vec1::<u32>()?;
            for (i, row) in probabilities.iter().enumerate() {
                let (label, predicted) = (labels[i] as usize, predicted[i] as usize);
                report(&Prediction { index: done.images + i, label, predicted, probabilities: row });
            }
        }
        done.images += n;
        done.batches_done += 1;
    }
    done.seconds = start.elapsed().as_secs_f64();
    Ok(done.stats())
}
