use ba_core::init::SeededVarMap;
use ba_core::rng::rng_for;
use ba_models::{ModelConfig, ModelKind};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use std::time::Instant;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let dev = Device::Cpu;
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(1, "init"), DType::F32, &dev);
    let model = ModelKind::AlexNet.build(ModelConfig::cifar10(1), vb).unwrap();
    let x = Tensor::randn(0f32, 1., (128, 3, 128, 128), &dev).unwrap();
    let y = Tensor::zeros(128, DType::U32, &dev).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let logits = model.forward_t(&x, true).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        let f = t.elapsed();
        let g = loss.backward().unwrap();
        let b = t.elapsed() - f;
        drop(g);
        println!("fwd {:?} bwd {:?}", f, b);
    }
}
