//! Helpers the convolution ops' tests share.

use candle_core::{DType, Device, Tensor, Var};
use rand_distr::{Distribution, StandardNormal};

use crate::ops::conv::conv2d::Conv2dParams;
use crate::ops::conv::groups::{images_per_group, spread_groups};
use crate::ops::conv::winograd_plan::WinogradPlan;
use crate::rng::rng_for;

/// A seeded f64 normal tensor, so that failures reproduce.
pub(crate) fn randn(shape: &[usize], std: f64, seed: u64) -> Var {
    let mut rng = rng_for(seed, "ops-test");
    let n = shape.iter().product();
    let values: Vec<f64> = (0..n).map(|_| std * Distribution::<f64>::sample(&StandardNormal, &mut rng)).collect();
    Var::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// The largest absolute difference of two tensors, as f64.
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    diff.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

/// Runs `op(x, w, b, conv)` on six images (seeded, 4 channels, weight (5, 4, 3, 3)) in a pool
/// of three threads, where the six groups are spread over the threads, and on each image
/// alone, where the GEMMs run in parallel: outputs and input gradients agree image by image,
/// and the weight and bias gradients of the batch are the sums of the images'. It does so
/// for a convolution by Winograd's algorithm (stride 1 at 40x40: 100 tiles, one image per
/// group) and one by im2col (stride 2 at 24x24: 144 positions, one image per group).
pub(crate) fn assert_batch_equals_images_one_at_a_time(
    op: impl Fn(&Tensor, &Tensor, &Tensor, Conv2dParams) -> Tensor + Sync,
) {
    for (stride, side, by_winograd) in [(1, 40, true), (2, 24, false)] {
        let conv = Conv2dParams::square(stride, 1).with_relu();
        let g = conv.geometry(&[6, 4, side, side], &[5, 4, 3, 3]).unwrap();
        assert_eq!(WinogradPlan::of(&g).is_some(), by_winograd, "{g:?}");
        assert_eq!(images_per_group(&g), 1, "{g:?}");
        assert_batch_equals_images_one_at_a_time_in(side, |x, w, b| op(x, w, b, conv));
    }
}

fn assert_batch_equals_images_one_at_a_time_in(side: usize, op: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor + Sync) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    assert!(pool.install(|| spread_groups(6) && !spread_groups(1)), "the test must take both paths");
    let x = randn(&[6, 4, side, side], 1.0, 5);
    let (w, b) = (randn(&[5, 4, 3, 3], 0.3, 6), randn(&[5], 0.3, 7));
    let run = |x: &Var, probe: Option<&Tensor>| {
        pool.install(|| {
            let y = op(x.as_tensor(), w.as_tensor(), b.as_tensor());
            let probe = probe.cloned().unwrap_or_else(|| randn(y.dims(), 1.0, 8).as_tensor().clone());
            let grads = (&y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            (y, probe, grads)
        })
    };
    let (y, probe, grads) = run(&x, None);
    let (mut dw, mut db) = (Tensor::zeros_like(w.as_tensor()).unwrap(), Tensor::zeros_like(b.as_tensor()).unwrap());
    for i in 0..6 {
        let xi = Var::from_tensor(&x.as_tensor().narrow(0, i, 1).unwrap()).unwrap();
        let (yi, _, gi) = run(&xi, Some(&probe.narrow(0, i, 1).unwrap()));
        assert!(max_abs_diff(&yi, &y.narrow(0, i, 1).unwrap()) < 1e-12, "image {i}");
        let dxi = grads.get(x.as_tensor()).unwrap().narrow(0, i, 1).unwrap();
        assert!(max_abs_diff(gi.get(xi.as_tensor()).unwrap(), &dxi) < 1e-12, "input gradient of image {i}");
        dw = (dw + gi.get(w.as_tensor()).unwrap()).unwrap();
        db = (db + gi.get(b.as_tensor()).unwrap()).unwrap();
    }
    assert!(max_abs_diff(&dw, grads.get(w.as_tensor()).unwrap()) < 1e-10, "weight gradient");
    assert!(max_abs_diff(&db, grads.get(b.as_tensor()).unwrap()) < 1e-10, "bias gradient");
}
