//! A whole training step of AlexNet through ba-core's ops (im2col convolution with fused bias
//! and ReLU, arg-max max-pool) against the same network written with stock Candle ops only
//! (`conv2d`, `broadcast_add`, `relu`, a max-pool of strided slices and `maximum`), on the
//! same weights: the loss and every parameter's gradient agree within 1e-10 relative (the issue
//! asks for 1e-4; in f64 they agree to 1e-15).
//!
//! In f64. A max-pool's gradient jumps where two values of a window tie, and two correct f32
//! convolutions that sum in different orders differ in the last bit: in about one random input
//! in twenty some window's two largest values are that close, each network sends that window's
//! gradient to a different position, and a few gradients differ by percents (seen as a CI
//! failure). In f64 the rounding is 1e-16 and such a near-tie does not happen in practice; the
//! f32 kernels are compared op by op in ba-core's tests.

use std::collections::HashMap;

use ba_core::init::SeededVarMap;
use ba_core::rng::rng_for;
use ba_models::{ModelConfig, ModelKind};
use candle_core::{DType, Device, Result, Tensor, Var};
use candle_nn::loss::cross_entropy;
use candle_nn::VarMap;

/// Every other row and column of `x` starting at (dy, dx), `out` of each: the strided slice
/// `x[:, :, dy::2, dx::2][:out, :out]` from reshapes Candle can differentiate.
fn stride_two(x: &Tensor, (dy, dx): (usize, usize), out: usize) -> Result<Tensor> {
    let (b, c, _, w) = x.dims4()?;
    let rows = x.narrow(2, dy, 2 * out - 1)?.pad_with_zeros(2, 0, 1)?;
    let rows = rows.reshape((b, c, out, 2, w))?.narrow(3, 0, 1)?.squeeze(3)?;
    let cols = rows.narrow(3, dx, 2 * out - 1)?.pad_with_zeros(3, 0, 1)?;
    cols.reshape((b, c, out, out, 2))?.narrow(4, 0, 1)?.squeeze(4)
}

/// 3x3 max-pool with stride 2: the maximum of the nine strided slices.
fn stock_max_pool(x: &Tensor) -> Result<Tensor> {
    let out = (x.dim(2)? - 3) / 2 + 1;
    let mut best = stride_two(x, (0, 0), out)?;
    for dy in 0..3 {
        for dx in 0..3 {
            if (dy, dx) != (0, 0) {
                best = best.maximum(&stride_two(x, (dy, dx), out)?)?;
            }
        }
    }
    Ok(best)
}

fn stock_conv(x: &Tensor, vars: &HashMap<String, Var>, name: &str, stride: usize, padding: usize) -> Result<Tensor> {
    let y = x.conv2d(vars[&format!("{name}.weight")].as_tensor(), padding, stride, 1, 1)?;
    y.broadcast_add(&vars[&format!("{name}.bias")].as_tensor().reshape((1, (), 1, 1))?)
}

fn stock_linear(x: &Tensor, vars: &HashMap<String, Var>, name: &str) -> Result<Tensor> {
    let y = x.matmul(&vars[&format!("{name}.weight")].as_tensor().t()?)?;
    y.broadcast_add(vars[&format!("{name}.bias")].as_tensor())
}

/// AlexNet of ba-models in evaluation mode (no dropout), stock Candle only.
fn stock_alexnet(images: &Tensor, vars: &HashMap<String, Var>) -> Result<Tensor> {
    let x = stock_max_pool(&stock_conv(images, vars, "features.0", 4, 5)?.relu()?)?;
    let x = stock_max_pool(&stock_conv(&x, vars, "features.3", 1, 2)?.relu()?)?;
    let x = stock_conv(&x, vars, "conv1", 1, 1)?.relu()?;
    let x = stock_conv(&x, vars, "conv2", 1, 1)?.relu()?;
    let x = stock_max_pool(&stock_conv(&x, vars, "conv3", 1, 1)?.relu()?)?.flatten_from(1)?;
    let x = stock_linear(&x, vars, "classifier.0")?.relu()?;
    let x = stock_linear(&x, vars, "classifier.3")?.relu()?;
    stock_linear(&x, vars, "classifier.6")
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f64>().unwrap()
}

#[test]
fn a_training_step_matches_stock_candle() {
    let device = Device::Cpu;
    let vars = VarMap::new();
    let vb = SeededVarMap::builder(&vars, rng_for(7, "init"), DType::F64, &device);
    let model = ModelKind::AlexNet.build(ModelConfig::cifar10(7), vb).unwrap();
    let images = ba_core::rng::randn(1, (3, 3, 128, 128), &device).unwrap().to_dtype(DType::F64).unwrap();
    let labels = Tensor::new(&[3u32, 0, 9], &device).unwrap();

    let ours = cross_entropy(&model.forward_t(&images, false).unwrap(), &labels).unwrap();
    let named: HashMap<String, Var> = vars.data().lock().unwrap().clone();
    let stock = cross_entropy(&stock_alexnet(&images, &named).unwrap(), &labels).unwrap();
    let (a, b) = (ours.to_scalar::<f64>().unwrap(), stock.to_scalar::<f64>().unwrap());
    assert!((a - b).abs() <= 1e-10 * b.abs(), "loss {a} vs {b}");

    let (g_ours, g_stock) = (ours.backward().unwrap(), stock.backward().unwrap());
    assert_eq!(named.len(), 16);
    for (name, var) in &named {
        let (o, s) = (g_ours.get(var).unwrap(), g_stock.get(var).unwrap());
        let relative = max_abs(&(o - s).unwrap()) / max_abs(s);
        assert!(relative < 1e-10, "{name}: gradient differs by {relative:e} relative");
        assert!(max_abs(s) > 0.0, "{name}: no gradient reached it");
    }
}
