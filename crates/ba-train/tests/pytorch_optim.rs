//! Optimizers and schedules against PyTorch: `scripts/optim_fixtures.py` records, for fixed
//! starting values, gradients and per-step learning rates, the parameters after every step of
//! `torch.optim.Adam`, `AdamW` and `SGD` (momentum + dampening, Nesterov, plain), and the
//! learning rate at every step of `CosineAnnealingLR`, `LinearLR`, `StepLR` and `SequentialLR`.

use ba_train::{Adam, AdamConfig, CosineAnnealing, Linear, Optimizer, Schedule, Sequential, Sgd, SgdConfig, StepDecay};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use serde_json::Value;

const FIXTURE: &str = include_str!("fixtures/pytorch_optim.json");

fn fixture() -> Value {
    serde_json::from_str(FIXTURE).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn optimizer(name: &str, vars: &VarMap) -> Box<dyn Optimizer> {
    match name {
        "adam" => Box::new(Adam::new(vars, AdamConfig { weight_decay: 0.01, ..AdamConfig::default() })),
        "adamw" => Box::new(Adam::adamw(
            vars,
            AdamConfig { beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.05, ..AdamConfig::default() },
        )),
        "sgd" => Box::new(Sgd::new(
            vars,
            SgdConfig { momentum: 0.9, dampening: 0.1, weight_decay: 1e-3, ..SgdConfig::default() },
        )),
        "sgd_nesterov" => Box::new(Sgd::new(
            vars,
            SgdConfig { momentum: 0.9, nesterov: true, weight_decay: 1e-3, ..SgdConfig::default() },
        )),
        "sgd_plain" => Box::new(Sgd::new(vars, SgdConfig::default())),
        other => panic!("no optimizer {other}"),
    }
}

#[test]
fn optimizers_follow_pytorch_step_by_step() {
    let fx = fixture();
    let cases = fx["optimizers"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let shapes: Vec<Vec<usize>> = case["shapes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect())
            .collect();
        let vars = VarMap::new();
        let params: Vec<Var> = ["a.weight", "b.bias"]
            .iter()
            .zip(&shapes)
            .zip(case["starts"].as_array().unwrap())
            .map(|((n, shape), start)| {
                let var = Var::from_tensor(&Tensor::from_vec(floats(start), shape.as_slice(), &Device::Cpu).unwrap())
                    .unwrap();
                vars.data().lock().unwrap().insert(n.to_string(), var.clone());
                var
            })
            .collect();
        let mut opt = optimizer(name, &vars);
        let missing = (case["missing"][0].as_u64().unwrap() as usize, case["missing"][1].as_u64().unwrap() as usize);
        let mut worst = 0.0f64;
        for (t, (grads, lr)) in
            case["grads"].as_array().unwrap().iter().zip(case["lrs"].as_array().unwrap()).enumerate()
        {
            // A GradStore holding exactly the fixture's gradients.
            let probe =
                params.iter().map(|p| p.as_tensor().sum_all().unwrap()).reduce(|a, b| (a + b).unwrap()).unwrap();
            let mut store = probe.backward().unwrap();
            for (i, (p, g)) in params.iter().zip(grads.as_array().unwrap()).enumerate() {
                if (t, i) == missing {
                    store.remove(p.as_tensor());
                } else {
                    store.insert(p.as_tensor(), Tensor::from_vec(floats(g), p.shape(), &Device::Cpu).unwrap());
                }
            }
            opt.step(&store, lr.as_f64().unwrap()).unwrap();
            for (p, want) in params.iter().zip(case["params"][t].as_array().unwrap()) {
                let got = p.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for (g, w) in got.iter().zip(floats(want)) {
                    // Relative, with a floor of 0.01 for values that pass near zero (the
                    // parameters start at about 1 in size; f32 rounding is absolute there).
                    let err = (*g as f64 - w as f64).abs() / (w.abs() as f64).max(1e-2);
                    worst = worst.max(err);
                    assert!(err < 1e-6, "{name} step {}: {g} vs PyTorch {w} (relative {err:.2e})", t + 1);
                }
            }
        }
        assert_eq!(opt.steps(), 8);
        eprintln!("{name}: worst relative difference {worst:.2e}");
    }
}

fn check(name: &str, schedule: &dyn Schedule) {
    let fx = fixture();
    let want = fx["schedules"][name].as_array().unwrap();
    for (t, w) in want.iter().enumerate() {
        let (got, w) = (schedule.lr(t), w.as_f64().unwrap());
        assert!((got - w).abs() <= 1e-12 * w.abs().max(1e-12), "{name} step {t}: {got} vs PyTorch {w}");
    }
}

#[test]
fn schedules_equal_pytorch_at_every_step() {
    check("cosine", &CosineAnnealing { base_lr: 0.1, eta_min: 1e-4, total_steps: 20 });
    check("linear_warmup", &Linear { base_lr: 0.1, start_factor: 0.1, end_factor: 1.0, total_steps: 5 });
    check("step", &StepDecay { base_lr: 0.1, step_size: 7, gamma: 0.5 });
    let warm = Linear { base_lr: 0.1, start_factor: 0.01, end_factor: 1.0, total_steps: 5 };
    let cosine = CosineAnnealing { base_lr: 0.1, eta_min: 0.0, total_steps: 15 };
    check("warmup_then_cosine", &Sequential::new(vec![Box::new(warm), Box::new(cosine)], vec![5]).unwrap());
}

#[test]
fn buffers_are_neither_updated_nor_decayed() {
    let vars = VarMap::new();
    let w = Var::ones((2, 2), DType::F32, &Device::Cpu).unwrap();
    let stat = Var::ones(2, DType::F32, &Device::Cpu).unwrap();
    vars.data().lock().unwrap().insert("bn.weight".into(), w.clone());
    vars.data().lock().unwrap().insert("bn.running_mean".into(), stat.clone());
    let mut adam = Adam::new(&vars, AdamConfig { weight_decay: 0.5, ..AdamConfig::default() });
    let grads = (w.as_tensor().sum_all().unwrap() + stat.as_tensor().sum_all().unwrap()).unwrap().backward().unwrap();
    adam.step(&grads, 0.1).unwrap();
    assert_eq!(stat.as_tensor().to_vec1::<f32>().unwrap(), vec![1.0, 1.0], "running statistics untouched");
    assert!(w.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|&v| v < 1.0));
}
