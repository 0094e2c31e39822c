//! Classification losses.

use candle_core::{Result, Tensor, D};
use candle_nn::ops::log_softmax;

/// Cross-entropy with label smoothing `eps`, as PyTorch's `CrossEntropyLoss(label_smoothing)`
/// and the notebook define it: `(1 - eps) * NLL + eps * mean over classes of -log p`,
/// averaged over the batch. `logits` (B, K), `labels` (B,) u32.
pub fn label_smoothing_cross_entropy(logits: &Tensor, labels: &Tensor, eps: f64) -> Result<Tensor> {
    let (b, k) = logits.dims2()?;
    if labels.dims() != [b] {
        candle_core::bail!("loss: {b} logits rows but labels of shape {:?}", labels.dims());
    }
    if !(0.0..1.0).contains(&eps) {
        candle_core::bail!("loss: label smoothing must be in [0, 1), got {eps}");
    }
    let log_p = log_softmax(logits, D::Minus1)?;
    let nll = log_p.gather(&labels.unsqueeze(1)?, 1)?.neg()?.mean_all()?;
    if eps == 0.0 {
        return Ok(nll);
    }
    let uniform = (log_p.sum_all()?.neg()? / (b * k) as f64)?;
    (nll * (1.0 - eps))? + (uniform * eps)?
}

/// Number of rows whose largest logit is at the label.
pub fn correct_predictions(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let predicted = logits.argmax(D::Minus1)?;
    Ok(predicted.eq(labels)?.to_dtype(candle_core::DType::U32)?.sum_all()?.to_scalar::<u32>()? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn smoothing_matches_a_hand_computation() {
        let logits = [[2.0f64, 0.5, -1.0], [0.0, 0.0, 3.0]];
        let labels = [0u32, 1];
        let eps = 0.1;
        let mut want = 0.0;
        for (row, &y) in logits.iter().zip(&labels) {
            let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
            let neg_log_p: Vec<f64> = row.iter().map(|v| lse - v).collect();
            want += (1.0 - eps) * neg_log_p[y as usize] + eps * neg_log_p.iter().sum::<f64>() / 3.0;
        }
        want /= 2.0;
        let got = label_smoothing_cross_entropy(
            &Tensor::new(&logits, &Device::Cpu).unwrap(),
            &Tensor::new(&labels, &Device::Cpu).unwrap(),
            eps,
        )
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn accuracy_counts_argmax_hits() {
        let logits = Tensor::new(&[[2.0f32, 0.5], [0.0, 3.0], [1.0, 0.0]], &Device::Cpu).unwrap();
        let labels = Tensor::new(&[0u32, 1, 1], &Device::Cpu).unwrap();
        assert_eq!(correct_predictions(&logits, &labels).unwrap(), 2);
    }
}
