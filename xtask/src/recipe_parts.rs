//! What a recipe builds besides the model and the data: its optimizer, its learning-rate
//! schedule and its training augmentation.

use std::sync::Arc;

use ba_data::transforms::{notebook_train_pipeline, simple_train_pipeline, Transform};
use ba_models::INPUT_SIZE;
use ba_train::{Adam, AdamConfig, CosineAnnealing, Linear, Optimizer, Schedule, Sequential, Sgd, SgdConfig};
use candle_nn::VarMap;

use crate::preset::{Augment, OptimizerKind, Recipe};

/// The recipe's training augmentation.
pub fn train_pipeline(recipe: &Recipe) -> Arc<dyn Transform> {
    match recipe.augment {
        Augment::Notebook => Arc::new(notebook_train_pipeline(INPUT_SIZE)),
        Augment::Simple => Arc::new(simple_train_pipeline(INPUT_SIZE)),
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

/// The recipe's schedule over `steps` optimizer steps: cosine annealing to 0, after a linear
/// warm-up from 1% of the rate when asked.
pub fn schedule(recipe: &Recipe, steps: usize) -> Box<dyn Schedule> {
    let warmup = steps * recipe.warmup_epochs / recipe.epochs;
    let cosine = CosineAnnealing { base_lr: recipe.lr, eta_min: 0.0, total_steps: steps - warmup };
    if warmup == 0 {
        return Box::new(cosine);
    }
    let ramp = Linear { base_lr: recipe.lr, start_factor: 0.01, end_factor: 1.0, total_steps: warmup };
    #[allow(clippy::expect_used)] // one milestone for two phases: always consistent
    let schedule = Sequential::new(vec![Box::new(ramp), Box::new(cosine)], vec![warmup]).expect("one milestone");
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
}
