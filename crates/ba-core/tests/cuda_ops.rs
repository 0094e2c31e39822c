//! Every ba-core op on a CUDA GPU against the same op on the CPU (whose own tests check it
//! against Candle's reference ops and finite differences): outputs, all gradients, optimizer
//! updates and their state.
//!
//! Compiled only with `--features cuda`, and meant for a machine with an NVIDIA GPU
//! (`scripts/gpu-check.sh` runs them there); without one they fail at the first line.

#![cfg(feature = "cuda")]

use ba_core::ops::{
    adam_update, conv2d, gate_relu_max_pool2d, max_pool2d, sgd_update, AdamMoments, AdamStep, Conv2dParams,
    MaxPool2dParams, Precision, SgdStep, StateVector,
};
use ba_core::rng::rng_for;
use candle_core::{DType, Device, Tensor, Var};
use rand_distr::{Distribution, StandardNormal};

fn gpu() -> Device {
    Device::new_cuda(0).expect("these tests need an NVIDIA GPU with a working driver")
}

/// Seeded normal values, so that a failure reproduces.
fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rng_for(seed, "cuda-test");
    (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
}

/// The same values as a variable on the CPU and on the GPU.
fn pair(values: Vec<f32>, shape: &[usize]) -> (Var, Var) {
    let cpu = Var::from_vec(values.clone(), shape, &Device::Cpu).unwrap();
    let gpu = Var::from_vec(values, shape, &gpu()).unwrap();
    (cpu, gpu)
}

/// Fails unless `gpu` equals `cpu` within `tol` times the largest magnitude in `cpu` (at least 1).
fn assert_close(what: &str, cpu: &Tensor, gpu: &Tensor, tol: f32) {
    assert_eq!(cpu.dims(), gpu.dims(), "{what}: shapes differ");
    let a = cpu.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = gpu.to_device(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let same_nan = x.is_nan() && y.is_nan();
        assert!(same_nan || (x - y).abs() <= tol * scale, "{what}: element {i} is {y} on the GPU, {x} on the CPU");
    }
}

/// Output and the gradients of input, weight and bias of one convolution, on both devices, in
/// f32 and in mixed precision (bf16 operands: rounded by the CPU's emulation, converted by the
/// GPU's kernels and multiplied on tensor cores, f32 sums on both).
fn check_conv(x_dims: [usize; 4], w_dims: [usize; 4], params: Conv2dParams) {
    for precision in Precision::ALL {
        check_conv_in(x_dims, w_dims, params.with_precision(precision));
    }
}

fn check_conv_in(x_dims: [usize; 4], w_dims: [usize; 4], params: Conv2dParams) {
    let what = format!("conv2d {x_dims:?} * {w_dims:?} {params:?}");
    let (x_cpu, x_gpu) = pair(randn(x_dims.iter().product(), 1), &x_dims);
    let (w_cpu, w_gpu) = pair(randn(w_dims.iter().product(), 2), &w_dims);
    let (b_cpu, b_gpu) = pair(randn(w_dims[0], 3), &[w_dims[0]]);
    let y_cpu = conv2d(x_cpu.as_tensor(), w_cpu.as_tensor(), Some(b_cpu.as_tensor()), params).unwrap();
    let y_gpu = conv2d(x_gpu.as_tensor(), w_gpu.as_tensor(), Some(b_gpu.as_tensor()), params).unwrap();
    assert_close(&format!("{what} output"), &y_cpu, &y_gpu, 1e-4);
    let (probe_cpu, probe_gpu) = pair(randn(y_cpu.elem_count(), 4), y_cpu.dims());
    let g_cpu = (y_cpu * probe_cpu.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    let g_gpu = (y_gpu * probe_gpu.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, c, g) in [("input", &x_cpu, &x_gpu), ("weight", &w_cpu, &w_gpu), ("bias", &b_cpu, &b_gpu)] {
        let (c, g) = (g_cpu.get(c.as_tensor()).unwrap(), g_gpu.get(g.as_tensor()).unwrap());
        assert_close(&format!("{what} {name} gradient"), c, g, 1e-4);
    }
}

#[test]
fn conv2d_matches_the_cpu_on_alexnet_shapes_and_odd_ones() {
    let p = Conv2dParams::square;
    check_conv([4, 3, 128, 128], [48, 3, 11, 11], p(4, 2).with_relu()); // features.0
    check_conv([4, 48, 15, 15], [128, 48, 5, 5], p(1, 2).with_relu()); // features.3
    check_conv([4, 128, 7, 7], [192, 128, 3, 3], p(1, 1).with_relu()); // features.6
    check_conv([4, 192, 7, 7], [128, 192, 3, 3], p(1, 1)); // features.10 (BA gate before ReLU)
    check_conv(
        [1, 2, 9, 7],
        [3, 2, 3, 2],
        Conv2dParams { stride: (2, 1), padding: (0, 1), relu: false, precision: Precision::F32 },
    );
    check_conv(
        [3, 1, 5, 6],
        [2, 1, 5, 6],
        Conv2dParams { stride: (3, 3), padding: (2, 1), relu: true, precision: Precision::F32 },
    );
}

#[test]
fn conv2d_batches_larger_than_one_chunk_match_the_cpu() {
    // 1.4 MB of f32 columns per image (0.7 MB in bf16) against chunks of 256 MB: 400 images
    // take three chunks in f32 and two in mixed precision.
    check_conv([400, 3, 128, 128], [8, 3, 11, 11], Conv2dParams::square(4, 2).with_relu());
}

#[test]
fn conv2d_and_max_pool_read_views_that_start_inside_their_storage() {
    // Images 2..6 of a batch of 6: a view whose data starts 2 images into its buffer.
    let dims = [6, 5, 9, 9];
    let (x_cpu, x_gpu) = pair(randn(dims.iter().product(), 40), &dims);
    let (view_cpu, view_gpu) = (x_cpu.narrow(0, 2, 4).unwrap(), x_gpu.narrow(0, 2, 4).unwrap());
    let (w_cpu, w_gpu) = pair(randn(7 * 5 * 3 * 3, 41), &[7, 5, 3, 3]);
    let params = Conv2dParams::square(1, 1);
    let y_cpu = conv2d(&view_cpu, w_cpu.as_tensor(), None, params).unwrap();
    let y_gpu = conv2d(&view_gpu, w_gpu.as_tensor(), None, params).unwrap();
    assert_close("conv2d of a view", &y_cpu, &y_gpu, 1e-4);
    let pool = MaxPool2dParams::square(3, 2);
    let p_cpu = max_pool2d(&view_cpu, pool).unwrap();
    let p_gpu = max_pool2d(&view_gpu, pool).unwrap();
    assert_close("max_pool2d of a view", &p_cpu, &p_gpu, 0.0);
    // Gradients reach the right images of the whole batch (none reach images 0 and 1).
    let (probe_cpu, probe_gpu) = pair(randn(y_cpu.elem_count(), 42), y_cpu.dims());
    let g_cpu = ((y_cpu * probe_cpu.as_tensor()).unwrap().sum_all().unwrap() + p_cpu.sum_all().unwrap())
        .unwrap()
        .backward()
        .unwrap();
    let g_gpu = ((y_gpu * probe_gpu.as_tensor()).unwrap().sum_all().unwrap() + p_gpu.sum_all().unwrap())
        .unwrap()
        .backward()
        .unwrap();
    let (c, g) = (g_cpu.get(x_cpu.as_tensor()).unwrap(), g_gpu.get(x_gpu.as_tensor()).unwrap());
    assert_close("gradient of the batch under the view", c, g, 1e-4);
}

#[test]
fn bias_gradients_reduce_over_every_thread_of_many_blocks() {
    // One block of threads per channel: 300 blocks, each summing 3 images of 40x40 (4,800
    // values, many per thread), then 2 images of 1x1 (two values: most threads sum none).
    for (x_dims, w_dims) in [([3, 4, 40, 40], [300, 4, 1, 1]), ([2, 4, 1, 1], [300, 4, 1, 1])] {
        check_conv(x_dims, w_dims, Conv2dParams::square(1, 0));
    }
}

/// Output and input gradient of one max-pool, on both devices.
fn check_pool(values: Vec<f32>, dims: [usize; 4], params: MaxPool2dParams) {
    let what = format!("max_pool2d {dims:?} {params:?}");
    let (x_cpu, x_gpu) = pair(values, &dims);
    let y_cpu = max_pool2d(x_cpu.as_tensor(), params).unwrap();
    let y_gpu = max_pool2d(x_gpu.as_tensor(), params).unwrap();
    assert_close(&format!("{what} output"), &y_cpu, &y_gpu, 0.0);
    let (probe_cpu, probe_gpu) = pair(randn(y_cpu.elem_count(), 5), y_cpu.dims());
    let g_cpu = (y_cpu * probe_cpu.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    let g_gpu = (y_gpu * probe_gpu.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    let (c, g) = (g_cpu.get(x_cpu.as_tensor()).unwrap(), g_gpu.get(x_gpu.as_tensor()).unwrap());
    assert_close(&format!("{what} input gradient"), c, g, 1e-6);
}

#[test]
fn max_pool_matches_the_cpu_including_ties_and_nan() {
    let k3s2 = MaxPool2dParams::square(3, 2);
    let dims = [4, 48, 31, 31]; // features.2
    check_pool(randn(dims.iter().product(), 6), dims, k3s2);
    // Small integers: many ties, which both devices must break on the first maximum.
    let ties = randn(2 * 3 * 9 * 11, 7).iter().map(|v| (v * 1.5).round()).collect();
    check_pool(ties, [2, 3, 9, 11], k3s2);
    let odd = MaxPool2dParams { kernel: (3, 2), stride: (1, 2), padding: (1, 1) };
    check_pool(randn(2 * 2 * 6 * 5, 8), [2, 2, 6, 5], odd);
    let mut with_nan = randn(16, 9);
    with_nan[5] = f32::NAN;
    check_pool(with_nan, [1, 1, 4, 4], MaxPool2dParams::square(2, 2));
}

#[test]
fn gate_relu_max_pool_matches_the_cpu() {
    // BA-AlexNet's head: conv3's output, a gate in (0, 1) as the sigmoid makes it, pooled 3/2.
    let dims = [4, 128, 7, 7];
    let (x_cpu, x_gpu) = pair(randn(dims.iter().product(), 10), &dims);
    let gate: Vec<f32> = randn(4 * 128, 11).iter().map(|v| 1.0 / (1.0 + (-v).exp())).collect();
    let (g_cpu, g_gpu) = pair(gate, &[4, 128, 1, 1]);
    let pool = MaxPool2dParams::square(3, 2);
    let y_cpu = gate_relu_max_pool2d(x_cpu.as_tensor(), g_cpu.as_tensor(), pool).unwrap();
    let y_gpu = gate_relu_max_pool2d(x_gpu.as_tensor(), g_gpu.as_tensor(), pool).unwrap();
    assert_close("gate_relu_max_pool2d output", &y_cpu, &y_gpu, 0.0);
    let (probe_cpu, probe_gpu) = pair(randn(y_cpu.elem_count(), 12), y_cpu.dims());
    let grads_cpu = (y_cpu * probe_cpu.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    let grads_gpu = (y_gpu * probe_gpu.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, c, g) in [("input", &x_cpu, &x_gpu), ("gate", &g_cpu, &g_gpu)] {
        let (c, g) = (grads_cpu.get(c.as_tensor()).unwrap(), grads_gpu.get(g.as_tensor()).unwrap());
        assert_close(&format!("gate_relu_max_pool2d {name} gradient"), c, g, 1e-5);
    }
}

#[test]
fn adam_and_adamw_updates_match_the_cpu() {
    let n = 10_007;
    for decoupled in [false, true] {
        let (p_cpu, p_gpu) = pair(randn(n, 10), &[n]);
        let (mut m_cpu, mut m_gpu) = (AdamMoments::default(), AdamMoments::default());
        for step in 1..=3 {
            let grad = randn(n, 10 + step);
            let hyper = AdamStep { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1, decoupled, step };
            let g_cpu = Tensor::from_vec(grad.clone(), n, &Device::Cpu).unwrap();
            let g_gpu = Tensor::from_vec(grad, n, &gpu()).unwrap();
            adam_update(p_cpu.as_tensor(), &g_cpu, &mut m_cpu, hyper).unwrap();
            adam_update(p_gpu.as_tensor(), &g_gpu, &mut m_gpu, hyper).unwrap();
        }
        assert_close(&format!("adam (decoupled {decoupled}) parameter"), p_cpu.as_tensor(), p_gpu.as_tensor(), 1e-6);
        for (name, c, g) in [("m", &m_cpu.m, &m_gpu.m), ("v", &m_cpu.v, &m_gpu.v)] {
            let c = Tensor::new(c.to_host().unwrap(), &Device::Cpu).unwrap();
            let g = Tensor::new(g.to_host().unwrap(), &Device::Cpu).unwrap();
            assert_close(&format!("adam moment {name}"), &c, &g, 1e-6);
        }
    }
}

#[test]
fn sgd_updates_match_the_cpu() {
    let n = 4_099;
    let plain = SgdStep { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.01 };
    for hyper in
        [plain, SgdStep { momentum: 0.9, dampening: 0.2, ..plain }, SgdStep { momentum: 0.8, nesterov: true, ..plain }]
    {
        let (p_cpu, p_gpu) = pair(randn(n, 20), &[n]);
        let (mut b_cpu, mut b_gpu) = (StateVector::default(), StateVector::default());
        for step in 0..3 {
            let grad = randn(n, 21 + step);
            let g_cpu = Tensor::from_vec(grad.clone(), n, &Device::Cpu).unwrap();
            let g_gpu = Tensor::from_vec(grad, n, &gpu()).unwrap();
            sgd_update(p_cpu.as_tensor(), &g_cpu, &mut b_cpu, hyper).unwrap();
            sgd_update(p_gpu.as_tensor(), &g_gpu, &mut b_gpu, hyper).unwrap();
        }
        assert_close(&format!("sgd {hyper:?} parameter"), p_cpu.as_tensor(), p_gpu.as_tensor(), 1e-6);
        let (b_cpu, b_gpu) = (b_cpu.to_host().unwrap(), b_gpu.to_host().unwrap());
        assert_eq!(b_cpu.len(), b_gpu.len(), "{hyper:?}: momentum buffer length");
        let (b_cpu, b_gpu) = (Tensor::new(b_cpu, &Device::Cpu).unwrap(), Tensor::new(b_gpu, &Device::Cpu).unwrap());
        assert_close(&format!("sgd {hyper:?} momentum buffer"), &b_cpu, &b_gpu, 1e-6);
    }
}

#[test]
fn optimizer_state_restored_from_a_checkpoint_continues_on_the_gpu() {
    let n = 513;
    let (m, v) = (randn(n, 30), randn(n, 31).iter().map(|x| x * x).collect::<Vec<f32>>());
    let (p_cpu, p_gpu) = pair(randn(n, 32), &[n]);
    let grad = randn(n, 33);
    let hyper =
        AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false, step: 7 };
    let restore = || AdamMoments { m: StateVector::from_host(m.clone()), v: StateVector::from_host(v.clone()) };
    let (mut m_cpu, mut m_gpu) = (restore(), restore());
    adam_update(p_cpu.as_tensor(), &Tensor::from_vec(grad.clone(), n, &Device::Cpu).unwrap(), &mut m_cpu, hyper)
        .unwrap();
    adam_update(p_gpu.as_tensor(), &Tensor::from_vec(grad, n, &gpu()).unwrap(), &mut m_gpu, hyper).unwrap();
    assert_close("restored adam parameter", p_cpu.as_tensor(), p_gpu.as_tensor(), 1e-6);
}

#[test]
fn only_f32_runs_on_the_gpu_and_says_so() {
    let x = Tensor::zeros((1, 1, 4, 4), DType::F64, &gpu()).unwrap();
    let w = Tensor::zeros((1, 1, 3, 3), DType::F64, &gpu()).unwrap();
    let err = conv2d(&x, &w, None, Conv2dParams::square(1, 0)).unwrap_err().to_string();
    assert!(err.contains("f32"), "{err}");
}
