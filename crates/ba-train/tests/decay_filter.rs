//! `DecayFilter::SkipBiasAndNorm` decays weights of rank 2 or more and leaves biases and
//! normalisation weights alone, in all three optimizers; `DecayFilter::All` decays everything.

use ba_train::{Adam, AdamConfig, DecayFilter, Optimizer, Sgd, SgdConfig};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

/// A convolution's weight and bias and a batch norm's weight, all 0.5.
fn variables() -> (VarMap, Vec<(&'static str, Var)>) {
    let vars = VarMap::new();
    let named: Vec<(&str, Var)> = [("conv.weight", vec![2, 1, 1, 2]), ("conv.bias", vec![2]), ("bn.weight", vec![2])]
        .into_iter()
        .map(|(name, shape)| {
            let var = Var::from_tensor(&Tensor::full(0.5f32, shape, &Device::Cpu).unwrap()).unwrap();
            vars.data().lock().unwrap().insert(name.to_string(), var.clone());
            (name, var)
        })
        .collect();
    (vars, named)
}

/// The names of the variables that one step with zero gradients moved: with no gradient, only
/// weight decay can move a parameter.
fn moved_by_decay(make: impl Fn(&VarMap) -> Box<dyn Optimizer>) -> Vec<&'static str> {
    let (vars, named) = variables();
    let mut optimizer = make(&vars);
    let all = named.iter().map(|(_, v)| v.as_tensor().sum_all().unwrap()).reduce(|a, b| (a + b).unwrap()).unwrap();
    let mut zero_gradients = all.backward().unwrap();
    for (_, var) in &named {
        zero_gradients.insert(var.as_tensor(), var.as_tensor().zeros_like().unwrap());
    }
    optimizer.step(&zero_gradients, 0.1).unwrap();
    named
        .iter()
        .filter(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().any(|&x| x != 0.5))
        .map(|&(name, _)| name)
        .collect()
}

#[test]
fn skip_bias_and_norm_decays_only_weights_of_rank_two_or_more() {
    for filter in [DecayFilter::SkipBiasAndNorm, DecayFilter::All] {
        let want: &[&str] = match filter {
            DecayFilter::SkipBiasAndNorm => &["conv.weight"],
            DecayFilter::All => &["conv.weight", "conv.bias", "bn.weight"],
        };
        let adam = AdamConfig { weight_decay: 0.1, decay_filter: filter, ..AdamConfig::default() };
        let sgd = SgdConfig { weight_decay: 0.1, momentum: 0.9, decay_filter: filter, ..SgdConfig::default() };
        assert_eq!(moved_by_decay(|v| Box::new(Adam::new(v, adam))), want, "adam, {filter:?}");
        assert_eq!(moved_by_decay(|v| Box::new(Adam::adamw(v, adam))), want, "adamw, {filter:?}");
        assert_eq!(moved_by_decay(|v| Box::new(Sgd::new(v, sgd))), want, "sgd, {filter:?}");
    }
}
