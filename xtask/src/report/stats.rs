//! The statistics of a multi-seed comparison: mean, sample standard deviation, and the mean
//! paired difference with its Student-t confidence interval.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Mean and sample standard deviation (n - 1 in the denominator; 0 for one value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanStd {
    pub n: usize,
    pub mean: f64,
    pub std: f64,
}

impl MeanStd {
    /// The mean and standard deviation of `values` (at least one).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        assert!(n > 0, "the mean of no values");
        let mean = values.iter().sum::<f64>() / n as f64;
        let squares: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
        let std = if n > 1 { (squares / (n - 1) as f64).sqrt() } else { 0.0 };
        Self { n, mean, std }
    }
}

/// The mean of the paired differences `b[i] - a[i]` and, from two pairs on, its two-sided
/// Student-t confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedDifference {
    /// Mean and standard deviation of the differences.
    pub difference: MeanStd,
    /// Confidence level of the interval, e.g. 0.95.
    pub confidence: f64,
    /// The t quantile used (n - 1 degrees of freedom); `None` with one pair.
    pub t_quantile: Option<f64>,
    /// The interval's bounds; `None` with one pair.
    pub interval: Option<(f64, f64)>,
}

impl PairedDifference {
    /// The differences `b[i] - a[i]` of paired observations (same seed), at `confidence`.
    pub fn of(a: &[f64], b: &[f64], confidence: f64) -> Self {
        assert_eq!(a.len(), b.len(), "paired observations");
        let diffs: Vec<f64> = a.iter().zip(b).map(|(a, b)| b - a).collect();
        let difference = MeanStd::of(&diffs);
        let t_quantile = (difference.n > 1).then(|| t_quantile(difference.n - 1, confidence));
        let interval = t_quantile.map(|t| {
            let half = t * difference.std / (difference.n as f64).sqrt();
            (difference.mean - half, difference.mean + half)
        });
        Self { difference, confidence, t_quantile, interval }
    }

    /// The result in words: whether the interval excludes zero. `what` names the difference,
    /// e.g. `"B - A in accuracy"`.
    pub fn verdict(&self, what: &str) -> String {
        let level = format!("{:.0}%", self.confidence * 100.0);
        match self.interval {
            None => format!(
                "one seed: the difference {what} ({:+.4}) comes with no estimate of seed-to-seed noise, \
                 so it is not evidence either way; run several seeds (--seeds 42,43,44)",
                self.difference.mean
            ),
            Some((low, high)) if low > 0.0 || high < 0.0 => format!(
                "the {level} interval of the mean difference {what}, [{low:+.4}, {high:+.4}], excludes zero: \
                 over these {} seeds the difference is larger than the seed-to-seed noise",
                self.difference.n
            ),
            Some((low, high)) => format!(
                "the {level} interval of the mean difference {what}, [{low:+.4}, {high:+.4}], contains zero: \
                 over these {} seeds the difference is not distinguishable from seed-to-seed noise",
                self.difference.n
            ),
        }
    }
}

/// The two-sided `confidence` quantile of Student's t with `dof` degrees of freedom.
fn t_quantile(dof: usize, confidence: f64) -> f64 {
    #[allow(clippy::expect_used)] // callers pass dof >= 1
    let t = StudentsT::new(0.0, 1.0, dof as f64).expect("positive degrees of freedom");
    t.inverse_cdf(0.5 + confidence / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std_match_hand_computed_values() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, squared deviations sum to 32, 32 / 7.
        let s = MeanStd::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!((s.n, s.mean), (8, 5.0));
        assert!((s.std - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(MeanStd::of(&[0.7]).std, 0.0);
    }

    #[test]
    fn t_quantiles_match_the_tables() {
        // Two-sided 95% critical values (scipy.stats.t.ppf(0.975, dof)).
        for (dof, want) in
            [(1, 12.706204736174694), (2, 4.302652729749462), (4, 2.7764451051977934), (30, 2.0422724563012378)]
        {
            assert!((t_quantile(dof, 0.95) - want).abs() < 1e-8, "dof {dof}: {}", t_quantile(dof, 0.95));
        }
        assert!((t_quantile(9, 0.99) - 3.249835541592126).abs() < 1e-8);
    }

    #[test]
    fn the_paired_interval_is_mean_plus_minus_t_times_standard_error() {
        // Differences 0.01, 0.02, 0.03: mean 0.02, std 0.01, se 0.01 / sqrt(3).
        let a = [0.70, 0.71, 0.72];
        let b = [0.71, 0.73, 0.75];
        let d = PairedDifference::of(&a, &b, 0.95);
        assert!((d.difference.mean - 0.02).abs() < 1e-12 && (d.difference.std - 0.01).abs() < 1e-12);
        let half = 4.302652729749462 * 0.01 / 3f64.sqrt();
        let (low, high) = d.interval.unwrap();
        assert!((low - (0.02 - half)).abs() < 1e-9 && (high - (0.02 + half)).abs() < 1e-9);
        // Half-width 0.0248 > 0.02: three seeds this noisy cannot tell the models apart.
        assert!(d.verdict("B - A in val acc").contains("contains zero"), "{}", d.verdict("B - A in val acc"));
        // The same mean with a tenth of the spread can.
        let steady = PairedDifference::of(&a, &[0.719, 0.73, 0.741], 0.95);
        assert!(steady.interval.unwrap().0 > 0.0);
        assert!(steady.verdict("B - A in val acc").contains("excludes zero"), "{}", steady.verdict("B - A in val acc"));
        // One pair: no interval, and the words say so.
        let one = PairedDifference::of(&[0.70], &[0.72], 0.95);
        assert_eq!(one.interval, None);
        assert!(one.verdict("B - A in val acc").contains("one seed"));
    }
}
