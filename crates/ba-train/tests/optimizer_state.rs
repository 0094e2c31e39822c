//! An optimizer's state survives a round trip through a safetensors file: N steps straight equal
//! N/2 steps, save, restore into a fresh optimizer over fresh variables, N/2 steps, bit for bit.

use std::collections::HashMap;

use ba_train::{Adam, AdamConfig, Optimizer, Sgd, SgdConfig};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

const STEPS: usize = 6;

fn variables(values: &[Vec<f32>]) -> (VarMap, Vec<Var>) {
    let vars = VarMap::new();
    let params: Vec<Var> = ["a.weight", "b.bias"]
        .iter()
        .zip(values)
        .map(|(name, v)| {
            let var = Var::from_tensor(&Tensor::from_slice(v, v.len(), &Device::Cpu).unwrap()).unwrap();
            vars.data().lock().unwrap().insert(name.to_string(), var.clone());
            var
        })
        .collect();
    (vars, params)
}

fn make(kind: &str, vars: &VarMap) -> Box<dyn Optimizer> {
    match kind {
        "adam" => Box::new(Adam::new(vars, AdamConfig { weight_decay: 0.01, ..AdamConfig::default() })),
        "adamw" => Box::new(Adam::adamw(vars, AdamConfig { weight_decay: 0.05, ..AdamConfig::default() })),
        _ => Box::new(Sgd::new(vars, SgdConfig { momentum: 0.9, dampening: 0.1, ..SgdConfig::default() })),
    }
}

/// One step with gradients that depend on the step; `b.bias` gets none at step 1.
fn step(opt: &mut dyn Optimizer, params: &[Var], t: usize) {
    let probe = (params[0].as_tensor().sum_all().unwrap() + params[1].as_tensor().sum_all().unwrap()).unwrap();
    let mut grads = probe.backward().unwrap();
    for (i, p) in params.iter().enumerate() {
        let g: Vec<f32> = (0..p.elem_count()).map(|k| ((t * 7 + k * 3 + i) as f32 * 0.37).sin()).collect();
        grads.insert(p.as_tensor(), Tensor::from_vec(g, p.shape(), &Device::Cpu).unwrap());
    }
    if t == 1 {
        grads.remove(params[1].as_tensor());
    }
    opt.step(&grads, 0.05 / (1.0 + t as f64)).unwrap();
}

fn values(params: &[Var]) -> Vec<Vec<f32>> {
    params.iter().map(|p| p.as_tensor().to_vec1::<f32>().unwrap()).collect()
}

#[test]
fn a_saved_and_restored_optimizer_continues_exactly() {
    let start = vec![vec![0.5, -1.0, 2.0, 0.25], vec![0.1, -0.3, 0.7]];
    let dir = std::env::temp_dir().join(format!("ba-train-optim-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for kind in ["adam", "adamw", "sgd"] {
        let (vars, straight_params) = variables(&start);
        let mut straight = make(kind, &vars);
        (0..STEPS).for_each(|t| step(straight.as_mut(), &straight_params, t));

        let (vars, params) = variables(&start);
        let mut first = make(kind, &vars);
        (0..STEPS / 2).for_each(|t| step(first.as_mut(), &params, t));
        let file = dir.join(format!("{kind}.safetensors"));
        candle_core::safetensors::save(&first.state().unwrap(), &file).unwrap();
        let halfway = values(&params);

        let (vars, params) = variables(&halfway);
        let mut resumed = make(kind, &vars);
        resumed.load_state(&candle_core::safetensors::load(&file, &Device::Cpu).unwrap()).unwrap();
        assert_eq!(resumed.steps(), (STEPS / 2) as u64, "{kind}");
        (STEPS / 2..STEPS).for_each(|t| step(resumed.as_mut(), &params, t));
        assert_eq!(values(&params), values(&straight_params), "{kind}: resumed run differs");
        assert_eq!(resumed.steps(), straight.steps());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_state_of_the_wrong_shape_is_refused() {
    let (vars, params) = variables(&[vec![1.0, 2.0], vec![3.0]]);
    let mut adam = make("adam", &vars);
    step(adam.as_mut(), &params, 0);
    let mut state = adam.state().unwrap();
    state.insert("a.weight.exp_avg".into(), Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap());
    let err = make("adam", &vars).load_state(&state).unwrap_err().to_string();
    assert!(err.contains("a.weight.exp_avg has 5 values, the parameter 2"), "{err}");
    let err = make("sgd", &vars).load_state(&HashMap::new()).unwrap_err().to_string();
    assert!(err.contains("lacks step"), "{err}");
}
