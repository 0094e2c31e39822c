//! Classification losses and accuracy, for hard labels and for the soft targets of mixup.
//!
//! Targets are probability rows (B, K): one-hot for ordinary batches, two weights for a mixed
//! pair. Accuracy of a row is the target weight of the predicted class, so a plain batch counts
//! hits and a mixed pair counts `lambda` when the prediction is the first image's class and
//! `1 - lambda` when it is the partner's (the usual mixup convention).

use candle_core::{DType, Result, Tensor, D};
use candle_nn::ops::log_softmax;

/// Cross-entropy against soft `targets` (B, K) with label smoothing `eps`:
/// `(1 - eps) * sum_k -t_k log p_k + eps * mean_k -log p_k`, averaged over the batch. With
/// one-hot targets this is PyTorch's `CrossEntropyLoss(label_smoothing=eps)` and the notebook's
/// formula; with mixup targets it is the `lambda`-weighted sum of the two images' losses.
pub fn soft_target_cross_entropy(logits: &Tensor, targets: &Tensor, eps: f64) -> Result<Tensor> {
    let (b, k) = logits.dims2()?;
    if targets.dims() != [b, k] {
        candle_core::bail!("loss: logits of shape ({b}, {k}) but targets of shape {:?}", targets.dims());
    }
    if !(0.0..1.0).contains(&eps) {
        candle_core::bail!("loss: label smoothing must be in [0, 1), got {eps}");
    }
    let log_p = log_softmax(logits, D::Minus1)?;
    let targets = targets.to_dtype(log_p.dtype())?;
    let nll = (log_p.mul(&targets)?.sum_all()?.neg()? / b as f64)?;
    if eps == 0.0 {
        return Ok(nll);
    }
    let uniform = (log_p.sum_all()?.neg()? / (b * k) as f64)?;
    (nll * (1.0 - eps))? + (uniform * eps)?
}

/// [`soft_target_cross_entropy`] for hard `labels` (B,) u32.
pub fn label_smoothing_cross_entropy(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    let (_, k) = logits.dims2()?;
    soft_target_cross_entropy(logits, &one_hot(labels, k, logits.dtype())?, eps)
}

/// One-hot rows (B, `classes`) of `labels` (B,) u32.
pub fn one_hot(labels: &Tensor, classes: usize, dtype: DType) -> Result<Tensor> {
    let b = labels.dims1()?;
    let ones = Tensor::ones((b, 1), dtype, labels.device())?;
    Tensor::zeros((b, classes), dtype, labels.device())?.scatter_add(&labels.unsqueeze(1)?, &ones, 1)
}

/// Correct predictions in a batch: the sum over rows of the target weight at the largest
/// logit (a count of hits for one-hot targets).
pub fn correct_predictions(logits: &Tensor, targets: &Tensor) -> Result<f64> {
    let predicted = logits.argmax_keepdim(D::Minus1)?;
    let weights = targets.to_dtype(DType::F64)?.gather(&predicted, 1)?;
    weights.sum_all()?.to_scalar::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn reference(logits: &[[f64; 3]], targets: &[[f64; 3]], eps: f64) -> f64 {
        let mut total = 0.0;
        for (row, t) in logits.iter().zip(targets) {
            let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            let neg_log_p: Vec<f64> = row.iter().map(|v| lse - v).collect();
            let nll: f64 = neg_log_p.iter().zip(t).map(|(l, t)| l * t).sum();
            total += (1.0 - eps) * nll + eps * neg_log_p.iter().sum::<f64>() / 3.0;
        }
        total / logits.len() as f64
    }

    #[test]
    fn smoothing_matches_a_hand_computation_for_hard_and_soft_targets() {
        let logits = [[2.0f64, 0.5, -1.0], [0.0, 0.0, 3.0]];
        let t = |v: &[[f64; 3]; 2]| Tensor::new(v, &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        let got = label_smoothing_cross_entropy(&t(&logits), &labels, 0.1).unwrap().to_scalar::<f64>().unwrap();
        let want = reference(&logits, &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], 0.1);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        let soft = [[0.3, 0.0, 0.7], [0.0, 0.6, 0.4]];
        let got = soft_target_cross_entropy(&t(&logits), &t(&soft), 0.1).unwrap().to_scalar::<f64>().unwrap();
        let want = reference(&logits, &soft, 0.1);
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn accuracy_counts_target_weight_at_the_prediction() {
        let logits = Tensor::new(&[[2.0f32, 0.5], [0.0, 3.0], [1.0, 0.0]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32, 1, 1], &Device::Cpu).unwrap();
        let hard = one_hot(&labels, 2, DType::F32).unwrap();
        assert_eq!(correct_predictions(&logits, &hard).unwrap(), 2.0);
        let mixed = Tensor::new(&[[0.7f32, 0.3], [0.7, 0.3], [0.25, 0.75]], &Device::Cpu).unwrap();
        assert!((correct_predictions(&logits, &mixed).unwrap() - (0.7 + 0.3 + 0.25)).abs() < 1e-6);
    }
}
