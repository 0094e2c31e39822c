//! Batch-level mixup (Zhang et al., 2018) with soft targets.
//!
//! Rule: one `lambda ~ Beta(alpha, alpha)` per batch; sample `i` is mixed with sample
//! `B - 1 - i` (the batch reversed, as timm pairs them; batch order is already a random
//! shuffle, so the pairs are random): `x_i = lambda * x_i + (1 - lambda) * x_{B-1-i}`, and its
//! target is `lambda * onehot(y_i) + (1 - lambda) * onehot(y_{B-1-i})`. Mixing after
//! normalisation equals mixing before it, since normalisation is affine and the weights sum to 1.

use rand_distr::{Beta, Distribution};

use crate::Rng;

/// Mixup with `Beta(alpha, alpha)` weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mixup {
    /// Concentration of the Beta distribution (the notebook's MixupImage uses 1.5).
    pub alpha: f64,
}

impl Mixup {
    /// A mixup; `alpha` must be positive and finite.
    pub fn new(alpha: f64) -> Option<Self> {
        (alpha.is_finite() && alpha > 0.0).then_some(Self { alpha })
    }

    /// Draws the batch's lambda.
    pub fn sample(&self, rng: &mut Rng) -> f32 {
        #[allow(clippy::expect_used)] // `new` admits only positive, finite alphas
        let beta = Beta::new(self.alpha, self.alpha).expect("alpha is positive and finite");
        beta.sample(rng) as f32
    }

    /// Mixes `images` (B images of `image_len` values, back to back) in place with weight
    /// `lambda`, and returns the soft targets (B x `classes`, row-major) for `labels`.
    pub fn apply_with(lambda: f32, images: &mut [f32], image_len: usize, labels: &[u32], classes: usize) -> Vec<f32> {
        let b = labels.len();
        assert_eq!(images.len(), b * image_len, "images and labels disagree on the batch size");
        // Pairs (i, B-1-i) mix each other: update both in place, no copy of the batch.
        for i in 0..b / 2 {
            let (head, tail) = images.split_at_mut((b - 1 - i) * image_len);
            let first = &mut head[i * image_len..][..image_len];
            let second = &mut tail[..image_len];
            for (x, y) in first.iter_mut().zip(second.iter_mut()) {
                let (a, c) = (*x, *y);
                *x = lambda * a + (1.0 - lambda) * c;
                *y = lambda * c + (1.0 - lambda) * a;
            }
        }
        let mut targets = vec![0.0f32; b * classes];
        for (i, row) in targets.chunks_exact_mut(classes).enumerate() {
            row[labels[i] as usize] += lambda;
            row[labels[b - 1 - i] as usize] += 1.0 - lambda;
        }
        targets
    }
}

/// One-hot targets (B x `classes`) for `labels`: what a batch without mixup trains on.
pub fn one_hot(labels: &[u32], classes: usize) -> Vec<f32> {
    let mut targets = vec![0.0f32; labels.len() * classes];
    for (row, &l) in targets.chunks_exact_mut(classes).zip(labels) {
        row[l as usize] = 1.0;
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mixes_each_sample_with_its_mirror_and_targets_sum_to_one() {
        let mut images = vec![0.0, 0.0, 10.0, 10.0, 20.0, 20.0];
        let targets = Mixup::apply_with(0.25, &mut images, 2, &[0, 1, 2], 3);
        assert_eq!(images, vec![15.0, 15.0, 10.0, 10.0, 5.0, 5.0]);
        assert_eq!(targets, vec![0.25, 0.0, 0.75, 0.0, 1.0, 0.0, 0.75, 0.0, 0.25]);
        assert_eq!(one_hot(&[2, 0], 3), vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn lambda_follows_beta_alpha_alpha() {
        let mixup = Mixup::new(1.5).unwrap();
        let mut rng = Rng::seed_from_u64(3);
        let n = 20_000;
        let draws: Vec<f64> = (0..n).map(|_| mixup.sample(&mut rng) as f64).collect();
        assert!(draws.iter().all(|l| (0.0..=1.0).contains(l)));
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / n as f64;
        // Beta(1.5, 1.5): mean 1/2, variance 1/16.
        assert!((mean - 0.5).abs() < 0.01 && (var - 0.0625).abs() < 0.003, "mean {mean}, var {var}");
        assert!(Mixup::new(0.0).is_none() && Mixup::new(f64::NAN).is_none());
    }
}
