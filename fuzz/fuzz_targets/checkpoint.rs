//! A training checkpoint with arbitrary bytes: its state is read, then it is loaded into a
//! small model and an Adam optimizer (the same code paths as a real resume, on two tensors).
#![no_main]

use ba_train::checkpoint::{load_checkpoint, read_train_state};
use ba_train::{Adam, AdamConfig};
use candle_core::{DType, Device};
use candle_nn::{Init, VarMap};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("ba-fuzz-{}.safetensors", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = read_train_state(&path);
    let vars = VarMap::new();
    vars.get((2, 3), "layer.weight", Init::Const(0.5), DType::F32, &Device::Cpu).unwrap();
    vars.get(3, "bn.running_mean", Init::Const(0.0), DType::F32, &Device::Cpu).unwrap();
    let mut adam = Adam::new(&vars, AdamConfig::default());
    let _ = load_checkpoint(&path, &vars, &mut adam);
});
