//! Learning-rate schedules, evaluated per optimizer step, with the values of PyTorch's
//! `CosineAnnealingLR`, `LinearLR`, `StepLR` and `SequentialLR` stepped once per batch.

/// A learning-rate schedule: the rate for optimizer step `step` (from 0).
pub trait Schedule: Send + Sync {
    /// The learning rate of step `step`.
    fn lr(&self, step: usize) -> f64;
}

impl<T: Schedule + ?Sized> Schedule for Box<T> {
    fn lr(&self, step: usize) -> f64 {
        (**self).lr(step)
    }
}

/// The same rate at every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant(pub f64);

impl Schedule for Constant {
    fn lr(&self, _step: usize) -> f64 {
        self.0
    }
}

/// `CosineAnnealingLR(T_max = total_steps, eta_min)`:
/// `eta_min + (base - eta_min) * (1 + cos(pi * step / total_steps)) / 2` (periodic past
/// `total_steps`, as PyTorch's is).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineAnnealing {
    /// Learning rate at step 0.
    pub base_lr: f64,
    /// Learning rate at step `total_steps`.
    pub eta_min: f64,
    /// Steps over which the rate falls from `base_lr` to `eta_min`.
    pub total_steps: usize,
}

impl Schedule for CosineAnnealing {
    fn lr(&self, step: usize) -> f64 {
        let progress = step as f64 / self.total_steps.max(1) as f64;
        self.eta_min + (self.base_lr - self.eta_min) * (1.0 + (std::f64::consts::PI * progress).cos()) / 2.0
    }
}

/// `LinearLR(start_factor, end_factor, total_iters = total_steps)`: the factor moves linearly
/// from `start_factor` to `end_factor` over `total_steps`, then stays (a linear warm-up when
/// `start_factor < 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Linear {
    /// The rate the factors multiply.
    pub base_lr: f64,
    /// Factor at step 0.
    pub start_factor: f64,
    /// Factor from step `total_steps` on.
    pub end_factor: f64,
    /// Steps of the ramp.
    pub total_steps: usize,
}

impl Schedule for Linear {
    fn lr(&self, step: usize) -> f64 {
        let t = step.min(self.total_steps) as f64 / self.total_steps.max(1) as f64;
        self.base_lr * (self.start_factor + (self.end_factor - self.start_factor) * t)
    }
}

/// `StepLR(step_size, gamma)`: the rate is multiplied by `gamma` every `step_size` steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepDecay {
    /// Rate of the first `step_size` steps.
    pub base_lr: f64,
    /// Steps between decays.
    pub step_size: usize,
    /// Factor of each decay.
    pub gamma: f64,
}

impl Schedule for StepDecay {
    fn lr(&self, step: usize) -> f64 {
        self.base_lr * self.gamma.powi((step / self.step_size.max(1)) as i32)
    }
}

/// `MultiStepLR(milestones, gamma)`: the rate is multiplied by `gamma` at each milestone step,
/// e.g. He et al.'s CIFAR ResNets: divided by 10 at 50% and 75% of training.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiStep {
    /// Rate before the first milestone.
    pub base_lr: f64,
    /// Steps at which the rate decays, increasing.
    pub milestones: Vec<usize>,
    /// Factor of each decay.
    pub gamma: f64,
}

impl Schedule for MultiStep {
    fn lr(&self, step: usize) -> f64 {
        let passed = self.milestones.iter().take_while(|&&m| m <= step).count();
        self.base_lr * self.gamma.powi(passed as i32)
    }
}

/// `SequentialLR(schedulers, milestones)`: schedule `i` runs from milestone `i - 1` (or 0), and
/// restarts its own count there, e.g. a linear warm-up followed by cosine annealing.
pub struct Sequential {
    schedules: Vec<Box<dyn Schedule>>,
    milestones: Vec<usize>,
}

impl Sequential {
    /// `schedules` with one fewer strictly increasing `milestones`; `None` otherwise.
    pub fn new(schedules: Vec<Box<dyn Schedule>>, milestones: Vec<usize>) -> Option<Self> {
        let ordered = milestones.windows(2).all(|w| w[0] < w[1]);
        (schedules.len() == milestones.len() + 1 && ordered).then_some(Self { schedules, milestones })
    }
}

impl Schedule for Sequential {
    fn lr(&self, step: usize) -> f64 {
        let phase = self.milestones.iter().take_while(|&&m| m <= step).count();
        let start = if phase == 0 { 0 } else { self.milestones[phase - 1] };
        self.schedules[phase].lr(step - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_step_decays_at_each_milestone_as_pytorch() {
        // torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[5, 8], gamma=0.1), stepped
        // once per step: 0.1 for steps 0-4, 0.01 for 5-7, 0.001 from 8 on.
        let s = MultiStep { base_lr: 0.1, milestones: vec![5, 8], gamma: 0.1 };
        let got: Vec<f64> = (0..10).map(|t| s.lr(t)).collect();
        let want = [0.1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001];
        for (t, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-15, "step {t}: {g} vs {w}");
        }
    }

    #[test]
    fn cosine_starts_at_base_halves_midway_and_ends_at_eta_min() {
        let s = CosineAnnealing { base_lr: 1e-4, eta_min: 0.0, total_steps: 100 };
        assert_eq!(s.lr(0), 1e-4);
        assert!((s.lr(50) - 5e-5).abs() < 1e-18);
        assert!(s.lr(100).abs() < 1e-20);
        assert!((s.lr(25) - 1e-4 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0).abs() < 1e-18);
        assert!(s.lr(10) > s.lr(11));
    }

    #[test]
    fn warm_up_then_decay_switches_at_the_milestone() {
        let warm = Linear { base_lr: 1.0, start_factor: 0.25, end_factor: 1.0, total_steps: 3 };
        let decay = StepDecay { base_lr: 1.0, step_size: 2, gamma: 0.5 };
        let s = Sequential::new(vec![Box::new(warm), Box::new(decay)], vec![3]).unwrap();
        let lrs: Vec<f64> = (0..8).map(|t| s.lr(t)).collect();
        assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0, 1.0, 0.5, 0.5, 0.25]);
        assert!(Sequential::new(vec![Box::new(warm)], vec![3]).is_none());
    }
}
