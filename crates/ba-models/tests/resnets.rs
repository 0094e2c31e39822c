//! The CIFAR ResNets' names, shapes, counts and layers (the PyTorch twins' counts and logits
//! are checked in crates/ba-train/tests/pytorch_resnets.rs).

use ba_core::init::SeededVarMap;
use ba_core::model::{ImageClassifier, ParameterCount};
use ba_core::rng::rng_for;
use ba_models::{Family, Gate, ModelConfig, ModelKind, RESNET_DEPTHS};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

fn build(kind: ModelKind, vars: &VarMap) -> Box<dyn ImageClassifier> {
    let vb = SeededVarMap::builder(vars, rng_for(42, "init"), DType::F32, &Device::Cpu);
    kind.build(ModelConfig::cifar10(42), vb).unwrap()
}

/// Trainable values of a CIFAR ResNet written out from He et al.'s description: a 3x3 stem,
/// n blocks per stage of two 3x3 convolutions with batch norms, 1x1 + BN shortcuts into the
/// second and third stages, the classifier; plus each block's gate.
fn trainable(depth: usize, gate: Option<Gate>) -> usize {
    let n = (depth - 2) / 6;
    let bn = |c: usize| 2 * c;
    let mut total = 3 * 16 * 9 + bn(16) + 64 * 10 + 10;
    let mut inputs = 16;
    for c in [16, 32, 64] {
        for b in 0..n {
            let from = if b == 0 { inputs } else { c };
            total += from * c * 9 + bn(c) + c * c * 9 + bn(c);
            if from != c {
                total += from * c + bn(c);
            }
            let h = c / 16;
            total += match gate {
                None => 0,
                Some(Gate::Squeeze) => (c * h + h) + (h * c + c),
                Some(Gate::Bridge) => 2 * (c * h + bn(h)) + h * c,
            };
        }
        inputs = c;
    }
    total
}

fn resnets() -> impl Iterator<Item = ModelKind> {
    ModelKind::ALL.into_iter().filter(|k| k.family() == Family::ResNet)
}

#[test]
fn the_twelve_resnets_count_as_written_out_and_resnet20_has_272474() {
    assert_eq!(trainable(20, None), 272_474, "He et al.'s 0.27 M, with 1x1 shortcuts");
    for kind in resnets() {
        let ModelKind::ResNet { depth, gate } = kind else { unreachable!() };
        assert!(RESNET_DEPTHS.contains(&depth));
        let vars = VarMap::new();
        let model = build(kind, &vars);
        assert_eq!(model.name(), kind.name());
        let count = ParameterCount::of(&vars);
        assert_eq!(count.trainable, trainable(depth, gate), "{kind}");
        let statistics: usize = vars
            .data()
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n.contains("running_"))
            .map(|(_, v)| v.elem_count())
            .sum();
        assert_eq!(count.total, count.trainable + statistics, "{kind}");
    }
}

#[test]
fn names_are_torchvisions_with_the_gate_inside_each_block() {
    let vars = VarMap::new();
    build(ModelKind::ResNet { depth: 20, gate: Some(Gate::Bridge) }, &vars);
    let data = vars.data().lock().unwrap();
    let dims = |n: &str| data.get(n).unwrap_or_else(|| panic!("no {n}")).dims().to_vec();
    assert_eq!(dims("conv1.weight"), [16, 3, 3, 3]);
    assert_eq!(dims("layer1.0.conv1.weight"), [16, 16, 3, 3]);
    assert_eq!(dims("layer2.0.conv1.weight"), [32, 16, 3, 3]);
    assert_eq!(dims("layer2.0.downsample.0.weight"), [32, 16, 1, 1]);
    assert_eq!(dims("layer2.0.downsample.1.running_var"), [32]);
    assert_eq!(dims("layer3.2.bn2.weight"), [64]);
    assert_eq!(dims("layer3.2.ba.pre_fusions.0.1.weight"), [4, 64, 1, 1]);
    assert_eq!(dims("layer3.2.ba.generation.1.weight"), [64, 4, 1, 1]);
    assert_eq!(dims("fc.weight"), [10, 64]);
    assert!(!data.contains_key("layer1.0.downsample.0.weight"), "no shortcut where the shape stays");
    assert!(!data.contains_key("conv1.bias"), "convolutions have no bias");
    drop(data);
    let vars = VarMap::new();
    build(ModelKind::ResNet { depth: 20, gate: Some(Gate::Squeeze) }, &vars);
    let data = vars.data().lock().unwrap();
    assert_eq!(data["layer1.0.se.fc.0.weight"].dims(), [1, 16]);
    assert_eq!(data["layer3.0.se.fc.2.bias"].dims(), [64]);
}

#[test]
fn a_traced_pass_lists_every_layer_and_counts_every_parameter() {
    for kind in [20, 56].into_iter().flat_map(|d| [None, Some(Gate::Squeeze), Some(Gate::Bridge)].map(|g| (d, g))) {
        let (depth, gate) = kind;
        let kind = ModelKind::ResNet { depth, gate };
        let vars = VarMap::new();
        let model = build(kind, &vars);
        let x = ba_core::rng::randn(3, (2, 3, 32, 32), &Device::Cpu).unwrap();
        let mut trace = ba_core::summary::Trace::on();
        let traced = model.forward_traced(&x, &mut trace).unwrap();
        assert_eq!(traced.to_vec2::<f32>().unwrap(), model.forward_t(&x, false).unwrap().to_vec2::<f32>().unwrap());
        let rows = trace.into_rows();
        let count = ParameterCount::of(&vars);
        assert_eq!(rows.iter().map(|r| r.parameters()).sum::<usize>(), count.total, "{kind}");
        assert_eq!(rows.iter().map(|r| r.trainable).sum::<usize>(), count.trainable, "{kind}");
        let first = &rows[0];
        assert_eq!(
            (first.name.as_str(), first.input.clone(), first.output.clone()),
            ("conv1", vec![2, 3, 32, 32], vec![2, 16, 32, 32])
        );
        let last = rows.last().unwrap();
        assert_eq!((last.name.as_str(), last.output.clone()), ("fc", vec![2, 10]));
        let kinds = |k: &str| rows.iter().filter(|r| r.kind == k).count();
        let blocks = 3 * (depth - 2) / 6;
        let (gate_convs, gate_norms, gate_linears) = match gate {
            None => (0, 0, 0),
            Some(Gate::Squeeze) => (0, 0, 2 * blocks),
            Some(Gate::Bridge) => (3 * blocks, 2 * blocks, 0),
        };
        // depth - 1 weighted 3x3 layers, 2 shortcuts, the gates; one BN after each convolution.
        assert_eq!(kinds("Conv2D"), depth - 1 + 2 + gate_convs, "{kind}");
        assert_eq!(kinds("BatchNorm2D"), depth - 1 + 2 + gate_norms, "{kind}");
        assert_eq!(kinds("Linear"), 1 + gate_linears, "{kind}");
        assert_eq!(rows.iter().find(|r| r.name == "layer3.0.conv1").unwrap().output, vec![2, 64, 8, 8]);
    }
}

#[test]
fn the_gate_multiplies_the_second_batch_norm_before_the_residual_addition() {
    // With every gate's generation weights zero, the gate is sigmoid(0) = 0.5 everywhere: the
    // gated net equals the plain net whose bn2 weights and biases are halved.
    let (gated_vars, plain_vars) = (VarMap::new(), VarMap::new());
    let gated = build(ModelKind::ResNet { depth: 20, gate: Some(Gate::Bridge) }, &gated_vars);
    let plain = build(ModelKind::ResNet { depth: 20, gate: None }, &plain_vars);
    let gated_data = gated_vars.data().lock().unwrap();
    for (name, var) in plain_vars.data().lock().unwrap().iter() {
        let value = gated_data[name].as_tensor().clone();
        let value =
            if name.contains(".bn2.weight") || name.contains(".bn2.bias") { (value * 0.5).unwrap() } else { value };
        var.set(&value).unwrap();
    }
    for (name, var) in gated_data.iter().filter(|(n, _)| n.contains(".ba.generation.1.weight")) {
        var.set(&var.as_tensor().zeros_like().unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    drop(gated_data);
    let x = ba_core::rng::randn(4, (2, 3, 32, 32), &Device::Cpu).unwrap();
    let diff = |a: &Tensor, b: &Tensor| (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let (g, p) = (gated.forward_t(&x, false).unwrap(), plain.forward_t(&x, false).unwrap());
    assert!(diff(&g, &p) < 1e-4, "gated {g} vs plain with halved bn2 {p}");
}
