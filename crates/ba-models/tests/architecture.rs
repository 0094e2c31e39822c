//! The models' parameter names, shapes and counts, and where the BA gate acts.

use ba_core::init::SeededVarMap;
use ba_core::model::{ImageClassifier, ParameterCount};
use ba_core::rng::rng_for;
use ba_models::{ModelConfig, ModelKind};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

fn build(kind: ModelKind, vars: &VarMap) -> Box<dyn ImageClassifier> {
    let vb = SeededVarMap::builder(vars, rng_for(42, "init"), DType::F32, &Device::Cpu);
    kind.build(ModelConfig::cifar10(42), vb).unwrap()
}

fn shapes(vars: &VarMap) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<_> = vars.data().lock().unwrap().iter().map(|(n, t)| (n.clone(), t.dims().to_vec())).collect();
    v.sort();
    v
}

const ALEXNET: &[(&str, &[usize])] = &[
    ("classifier.0.bias", &[2048]),
    ("classifier.0.weight", &[2048, 1152]),
    ("classifier.3.bias", &[2048]),
    ("classifier.3.weight", &[2048, 2048]),
    ("classifier.6.bias", &[10]),
    ("classifier.6.weight", &[10, 2048]),
    ("conv1.bias", &[192]),
    ("conv1.weight", &[192, 128, 3, 3]),
    ("conv2.bias", &[192]),
    ("conv2.weight", &[192, 192, 3, 3]),
    ("conv3.bias", &[128]),
    ("conv3.weight", &[128, 192, 3, 3]),
    ("features.0.bias", &[48]),
    ("features.0.weight", &[48, 3, 11, 11]),
    ("features.3.bias", &[128]),
    ("features.3.weight", &[128, 48, 5, 5]),
];

/// The gate's variables under `module`, with a fusion branch for each of `branches`.
fn gate_names(module: &str, branches: &[(&str, usize)]) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![(format!("{module}.generation.1.weight"), vec![128, 8, 1, 1])];
    for (branch, inputs) in branches {
        let prefix = format!("{module}.{branch}");
        v.push((format!("{prefix}.1.weight"), vec![8, *inputs, 1, 1]));
        for stat in ["weight", "bias", "running_mean", "running_var"] {
            v.push((format!("{prefix}.2.{stat}"), vec![8]));
        }
    }
    v
}

#[test]
fn alexnet_has_the_pytorch_names_shapes_and_7524042_parameters() {
    let vars = VarMap::new();
    let model = build(ModelKind::AlexNet, &vars);
    assert_eq!(model.name(), "alexnet");
    let want: Vec<_> = ALEXNET.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect();
    assert_eq!(shapes(&vars), want);
    assert_eq!(ParameterCount::of(&vars), ParameterCount { total: 7_524_042, trainable: 7_524_042 });
}

/// `kind` is called `name`, its variables are AlexNet's plus `gate`'s (names and shapes), counted
/// as `count`.
fn assert_gated(kind: ModelKind, name: &str, gate: Vec<(String, Vec<usize>)>, count: ParameterCount) {
    let vars = VarMap::new();
    let model = build(kind, &vars);
    assert_eq!(model.name(), name);
    let mut want: Vec<_> = ALEXNET.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect();
    want.extend(gate);
    want.sort();
    assert_eq!(shapes(&vars), want);
    assert_eq!(ParameterCount::of(&vars), count);
}

#[test]
fn ba_alexnet_adds_the_ba_module_and_counts_like_paddle_and_pytorch() {
    let gate = gate_names("ba", &[("pre_fusions.0", 192), ("pre_fusions.1", 192), ("cur_fusion", 128)]);
    assert_gated(ModelKind::BaAlexNet, "ba-alexnet", gate, ParameterCount { total: 7_529_258, trainable: 7_529_210 });
}

#[test]
fn se_alexnet_adds_a_gate_on_conv3_alone() {
    // 128 * 8 (cur_fusion) + 8 * 128 (generation) + 16 BN affine; + 16 running statistics.
    let gate = gate_names("se", &[("cur_fusion", 128)]);
    assert_gated(ModelKind::SeAlexNet, "se-alexnet", gate, ParameterCount { total: 7_526_122, trainable: 7_526_106 });
}

#[test]
fn every_model_starts_from_the_same_trunk_weights() {
    let alexnet = VarMap::new();
    build(ModelKind::AlexNet, &alexnet);
    let alexnet = alexnet.data().lock().unwrap();
    for kind in [ModelKind::SeAlexNet, ModelKind::BaAlexNet] {
        let gated = VarMap::new();
        build(kind, &gated);
        let gated = gated.data().lock().unwrap();
        for (name, var) in alexnet.iter() {
            let (a, b) = (var.as_tensor().flatten_all().unwrap(), gated[name].as_tensor().flatten_all().unwrap());
            assert!(a.to_vec1::<f32>().unwrap() == b.to_vec1::<f32>().unwrap(), "{kind}: {name} differs");
        }
    }
}

fn images() -> Tensor {
    ba_core::rng::randn(1, (2, 3, 128, 128), &Device::Cpu).unwrap()
}

#[test]
fn forward_gives_logits_per_class_and_rejects_other_sizes() {
    let vars = VarMap::new();
    let model = build(ModelKind::BaAlexNet, &vars);
    assert_eq!(model.forward_t(&images(), true).unwrap().dims(), &[2, 10]);
    let small = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    let err = model.forward_t(&small, false).unwrap_err().to_string();
    assert!(err.contains("expected images (B, 3, 128, 128), got [2, 3, 32, 32]"), "{err}");
}

#[test]
fn the_gate_scales_conv3_output() {
    // With zero generation weights the gate is sigmoid(0) = 1/2 for every channel, so a gated
    // model must equal AlexNet with conv3's weight and bias halved. A model that computed the
    // gate and dropped it (as the original notebook did) would equal the unhalved AlexNet.
    for (kind, module) in [(ModelKind::BaAlexNet, "ba"), (ModelKind::SeAlexNet, "se")] {
        gate_of_one_half_halves_conv3(kind, module);
    }
}

fn gate_of_one_half_halves_conv3(kind: ModelKind, module: &str) {
    let ba_vars = VarMap::new();
    let ba = build(kind, &ba_vars);
    let plain_vars = VarMap::new();
    let plain = build(ModelKind::AlexNet, &plain_vars);
    let x = images();
    let unhalved = plain.forward_t(&x, false).unwrap();
    {
        let ba_data = ba_vars.data().lock().unwrap();
        let g = &ba_data[&format!("{module}.generation.1.weight")];
        g.set(&g.zeros_like().unwrap()).unwrap();
        let plain_data = plain_vars.data().lock().unwrap();
        for name in ["conv3.weight", "conv3.bias"] {
            let v = &plain_data[name];
            v.set(&(v.as_tensor() * 0.5).unwrap()).unwrap();
        }
    }
    let gated = ba.forward_t(&x, false).unwrap();
    let halved = plain.forward_t(&x, false).unwrap();
    let max_diff =
        |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let scale = halved.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(max_diff(&gated, &halved) < 1e-5 * scale.max(1.0), "{kind}: gated output differs from halved conv3");
    assert!(max_diff(&gated, &unhalved) > 1e-3 * scale, "{kind}: the gate had no effect");
}

#[test]
fn a_traced_pass_lists_every_layer_with_shapes_and_the_parameter_counts() {
    for kind in ModelKind::ALEXNETS {
        let vars = VarMap::new();
        let model = build(kind, &vars);
        let x = images();
        let mut trace = ba_core::summary::Trace::on();
        let traced = model.forward_traced(&x, &mut trace).unwrap();
        let rows = trace.into_rows();
        assert_eq!(traced.to_vec2::<f32>().unwrap(), model.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap());
        // Every variable belongs to exactly one row: the rows' sums are the model's counts.
        let count = ParameterCount::of(&vars);
        assert_eq!(rows.iter().map(|r| r.parameters()).sum::<usize>(), count.total, "{kind}");
        assert_eq!(rows.iter().map(|r| r.trainable).sum::<usize>(), count.trainable, "{kind}");
        // ... and each row's count is that of the variables under its name.
        for row in rows.iter().filter(|r| r.parameters() > 0) {
            let under: usize = vars
                .data()
                .lock()
                .unwrap()
                .iter()
                .filter(|(n, _)| n.strip_prefix(&row.name).is_some_and(|rest| rest.starts_with('.')))
                .map(|(_, v)| v.elem_count())
                .sum();
            assert_eq!(row.parameters(), under, "{kind}: {}", row.name);
        }
        let first = &rows[0];
        assert_eq!((first.name.as_str(), first.kind), ("features.0", "Conv2D"));
        assert_eq!((first.input.clone(), first.output.clone()), (vec![2, 3, 128, 128], vec![2, 48, 32, 32]));
        let last = rows.last().unwrap();
        assert_eq!((last.name.as_str(), last.output.clone()), ("classifier.6", vec![2, 10]));
        let kinds = |k: &str| rows.iter().filter(|r| r.kind == k).count();
        let branches = match kind {
            ModelKind::AlexNet => 0,
            ModelKind::SeAlexNet => 1,
            ModelKind::BaAlexNet => 3,
            ModelKind::ResNet { .. } => unreachable!("the AlexNets only"),
        };
        let gate_convs = if branches > 0 { branches + 1 } else { 0 };
        assert_eq!(kinds("Conv2D"), 5 + gate_convs, "{kind}");
        assert_eq!((kinds("Linear"), kinds("MaxPool2D"), kinds("BatchNorm2D")), (3, 3, branches), "{kind}");
        // Outside the gate's branches, each layer takes the previous one's output.
        let trunk: Vec<_> = rows.iter().filter(|r| !r.name.starts_with("ba.") && !r.name.starts_with("se.")).collect();
        for pair in trunk.windows(2) {
            assert_eq!(pair[0].output, pair[1].input, "{kind}: {} -> {}", pair[0].name, pair[1].name);
        }
    }
}

#[test]
fn an_architecture_is_recognised_from_its_weight_names() {
    for kind in ModelKind::ALL {
        let vars = VarMap::new();
        let vb = SeededVarMap::builder(&vars, rng_for(0, "init"), DType::F32, &Device::Cpu);
        kind.build(ModelConfig::cifar10(0), vb).unwrap();
        let names: Vec<String> = vars.data().lock().unwrap().keys().cloned().collect();
        assert_eq!(ModelKind::recognise(names.iter().map(String::as_str)), Ok(kind));
    }
    let err = ModelKind::recognise(["weight", "bias"]).unwrap_err();
    assert!(err.contains("neither features.0.weight nor conv1.weight"), "{err}");
    let err = ModelKind::recognise(["conv1.weight", "fc.weight", "layer1.0.conv1.weight"]).unwrap_err();
    assert!(err.contains("a ResNet of 1 blocks per stage (depth 8)"), "{err}");
    let err =
        ModelKind::recognise(["features.0.weight", "ba.generation.1.weight", "se.generation.1.weight"]).unwrap_err();
    assert!(err.contains("both a ba. and an se. gate"), "{err}");
}
