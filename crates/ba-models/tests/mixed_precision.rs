//! Both models built for mixed precision (`Precision::Bf16`, emulated on the CPU) against the
//! same models in f32: logits that move by about a bf16 rounding, and gradients for every
//! parameter. The layers' own bf16 arithmetic is checked op by op in
//! ba-core (`ops/cpu/precision.rs`).

use ba_core::init::SeededVarMap;
use ba_core::model::ImageClassifier;
use ba_core::ops::Precision;
use ba_core::rng::rng_for;
use ba_models::{ModelConfig, ModelKind};
use candle_core::{DType, Device, Tensor};
use candle_nn::loss::cross_entropy;
use candle_nn::VarMap;

fn build(kind: ModelKind, precision: Precision) -> (VarMap, Box<dyn ImageClassifier>) {
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(5, "init"), DType::F32, &Device::Cpu);
    let model = kind.build(ModelConfig { precision, ..ModelConfig::cifar10(5) }, vb).unwrap();
    (vars, model)
}

/// Fixed images with values spread over [-1, 1) (a sine hash), so that a failure reproduces.
fn images(n: usize) -> Tensor {
    let values: Vec<f32> = (0..n * 3 * 128 * 128).map(|i| ((i as f32 * 12.9898).sin() * 43_758.547).fract()).collect();
    Tensor::from_vec(values, (n, 3, 128, 128), &Device::Cpu).unwrap()
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn mixed_precision_moves_the_logits_by_about_a_bf16_rounding_and_trains_every_parameter() {
    let images = images(4);
    let labels = Tensor::new(&[1u32, 4, 4, 9], &Device::Cpu).unwrap();
    for kind in ModelKind::ALEXNETS {
        let mut logits = Vec::new();
        for precision in Precision::ALL {
            let (vars, model) = build(kind, precision);
            logits.push(model.forward_t(&images, false).unwrap());
            let loss = cross_entropy(&model.forward_t(&images, true).unwrap(), &labels).unwrap();
            let grads = loss.backward().unwrap();
            for (name, var) in vars.data().lock().unwrap().iter() {
                let is_statistic = name.ends_with("running_mean") || name.ends_with("running_var");
                assert!(is_statistic || grads.get(var).is_some(), "{kind} {precision}: no gradient for {name}");
            }
        }
        // One bf16 rounding is 2^-9 (2e-3) relative; eight layers of them stay well under 5%.
        let relative = max_abs(&(&logits[1] - &logits[0]).unwrap()) / max_abs(&logits[0]);
        assert!(relative > 1e-4 && relative < 5e-2, "{kind}: bf16 logits differ from f32 by {relative:e} relative");
    }
}
