//! Learning-rate schedules, evaluated per optimizer step.

/// PyTorch's `CosineAnnealingLR(T_max = total_steps, eta_min)` stepped once per batch:
/// `eta_min + (base - eta_min) * (1 + cos(pi * step / total_steps)) / 2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineAnnealing {
    /// Learning rate at step 0.
    pub base_lr: f64,
    /// Learning rate at the last step.
    pub eta_min: f64,
    /// Steps over which the rate falls from `base_lr` to `eta_min`.
    pub total_steps: usize,
}

impl CosineAnnealing {
    /// The learning rate for the optimizer step numbered `step` (from 0).
    pub fn lr(&self, step: usize) -> f64 {
        let progress = step.min(self.total_steps) as f64 / self.total_steps.max(1) as f64;
        self.eta_min + (self.base_lr - self.eta_min) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_base_halves_midway_and_ends_at_eta_min() {
        let s = CosineAnnealing { base_lr: 1e-4, eta_min: 0.0, total_steps: 100 };
        assert_eq!(s.lr(0), 1e-4);
        assert!((s.lr(50) - 5e-5).abs() < 1e-18);
        assert!(s.lr(100).abs() < 1e-20);
        assert!((s.lr(25) - 1e-4 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0).abs() < 1e-18);
        assert!(s.lr(10) > s.lr(11));
    }
}
