//! What a recipe builds besides the model and the data: its optimizer, its learning-rate
//! schedule, its training augmentation, and the evaluation transform of each model family.

use std::sync::Arc;

use ba_data::transforms::{
    cifar_test_pipeline, cifar_train_pipeline, notebook_train_pipeline, simple_train_pipeline, test_pipeline,
    Normalize, Transform,
};
use ba_models::{Family, INPUT_SIZE};
use ba_train::{Adam, AdamConfig, CosineAnnealing, Linear, MultiStep, Optimizer, Schedule, Sequential, Sgd, SgdConfig};
use candle_nn::VarMap;

use crate::preset::{Augment, OptimizerKind, Recipe, ScheduleKind};

/// The recipe's training augmentation.
pub fn train_pipeline(recipe: &Recipe) -> Arc<dyn Transform> {
    match recipe.augment {
        Augment::Notebook => Arc::new(notebook_train_pipeline(INPUT_SIZE)),
        Augment::Simple => Arc::new(simple_train_pipeline(INPUT_SIZE)),
        Augment::Cifar => Arc::new(cifar_train_pipeline()),
    }
}

/// The evaluation transform of a family: resize to 128 and ImageNet statistics for the
/// AlexNets, CIFAR-10 statistics at 32x32 for the ResNets.
pub fn test_transform(family: Family) -> Arc<dyn Transform> {
    match family {
        Family::AlexNet => Arc::new(test_pipeline(INPUT_SIZE)),
        Family::ResNet => Arc::new(cifar_test_pipeline()),
    }
}

/// The normalisation inside [`test_transform`], to undo it for display.
pub fn normalisation(family: Family) -> Normalize {
    match family {
        Family::AlexNet => Normalize::imagenet(),
        Family::ResNet => Normalize::cifar10(),
    }
}

/// The recipe's optimizer over `vars`.
pub fn optimizer(recipe: &Recipe, vars: &VarMap) -> Box<dyn Optimizer> {
    let adam = AdamConfig { weight_decay: recipe.weight_decay, ..AdamConfig::default() };
    match recipe.optimizer {
        OptimizerKind::Adam => Box::new(Adam::new(vars, adam)),
        OptimizerKind::AdamW => Box::new(Adam::adamw(vars, adam)),
        OptimizerKind::Sgd => Box::new(Sgd::new(
            vars,
            SgdConfig {
                momentum: recipe.momentum,
                nesterov: recipe.nesterov,
                weight_decay: recipe.weight_decay,
                ..SgdConfig::default()
            },
        )),
    }
}

/// The recipe's schedule over `steps` optimizer steps: cosine annealing to 0, or the rate
/// divided by 10 at 50% and 75% of the steps, after a linear warm-up from 1% of the rate when
/// asked.
pub fn schedule(recipe: &Recipe, steps: usize) -> Box<dyn Schedule> {
    let warmup = steps * recipe.warmup_epochs / recipe.epochs;
    let rest = steps - warmup;
    let main: Box<dyn Schedule> = match recipe.schedule {
        ScheduleKind::Cosine => Box::new(CosineAnnealing { base_lr: recipe.lr, eta_min: 0.0, total_steps: rest }),
        ScheduleKind::Steps => {
            Box::new(MultiStep { base_lr: recipe.lr, milestones: vec![rest / 2, rest * 3 / 4], gamma: 0.1 })
        }
    };
    if warmup == 0 {
        return main;
    }
    let ramp = Linear { base_lr: recipe.lr, start_factor: 0.01, end_factor: 1.0, total_steps: warmup };
    #[allow(clippy::expect_used)] // one milestone for two phases: always consistent
    let schedule = Sequential::new(vec![Box::new(ramp), main], vec![warmup]).expect("one milestone");
    Box::new(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::test_util::tiny_setup;

    #[test]
    fn warm_up_ramps_to_the_rate_then_cosine_decays() {
        let (_, mut recipe) = tiny_setup();
        recipe.epochs = 3;
        recipe.warmup_epochs = 1;
        let s = schedule(&recipe, 30);
        assert!((s.lr(0) - 0.01 * recipe.lr).abs() < 1e-15);
        assert!(s.lr(5) < s.lr(9) && s.lr(9) < recipe.lr);
        assert_eq!(s.lr(10), recipe.lr);
        assert!((s.lr(20) - recipe.lr / 2.0).abs() < 1e-12, "half-way through the cosine");
        recipe.warmup_epochs = 0;
        assert_eq!(schedule(&recipe, 30).lr(0), recipe.lr);
    }

    #[test]
    fn the_step_schedule_divides_by_ten_at_half_and_three_quarters() {
        let (_, mut recipe) = tiny_setup();
        recipe.schedule = ScheduleKind::Steps;
        let s = schedule(&recipe, 40);
        assert_eq!((s.lr(0), s.lr(19)), (recipe.lr, recipe.lr));
        assert!((s.lr(20) - recipe.lr / 10.0).abs() < 1e-18 && (s.lr(29) - recipe.lr / 10.0).abs() < 1e-18);
        assert!((s.lr(30) - recipe.lr / 100.0).abs() < 1e-18 && (s.lr(39) - recipe.lr / 100.0).abs() < 1e-18);
    }
}
