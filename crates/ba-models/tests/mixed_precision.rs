//! Both models built for mixed precision (`Precision::Bf16`, emulated on the CPU) against the
//! same models in f32: the same parameters, a loss that moves by about a bf16 rounding, and
//! gradients for every parameter. The layers' own bf16 arithmetic is checked op by op in
//! ba-core (`ops/precision.rs`).

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

#[test]
fn mixed_precision_moves_the_loss_by_about_a_bf16_rounding_and_trains_every_parameter() {
    let images = Tensor::randn(0f32, 1.0, (4, 3, 128, 128), &Device::Cpu).unwrap();
    let labels = Tensor::new(&[1u32, 4, 4, 9], &Device::Cpu).unwrap();
    for kind in ModelKind::ALL {
        let mut losses = Vec::new();
        for precision in Precision::ALL {
            let (vars, model) = build(kind, precision);
            let loss = cross_entropy(&model.forward_t(&images, true).unwrap(), &labels).unwrap();
            let grads = loss.backward().unwrap();
            for (name, var) in vars.data().lock().unwrap().iter() {
                let is_statistic = name.ends_with("running_mean") || name.ends_with("running_var");
                assert!(is_statistic || grads.get(var).is_some(), "{kind} {precision}: no gradient for {name}");
            }
            losses.push(loss.to_scalar::<f32>().unwrap());
        }
        let relative = (losses[1] - losses[0]).abs() / losses[0];
        assert!(relative > 1e-6 && relative < 1e-2, "{kind}: losses {losses:?} differ by {relative:e} relative");
    }
}
