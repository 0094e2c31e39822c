//! The CUDA kernels' source run on the CPU, against the CPU ops, so that their index
//! arithmetic is tested on every machine, GPU or not.
//!
//! `cuda/kernels.cu` is compiled as plain C++ with a few definitions standing in for CUDA's
//! (`__global__` is nothing, `blockIdx`/`threadIdx` are per-thread globals, `__syncthreads` a
//! barrier) and loaded as a shared library. Every grid-stride kernel runs as one "thread" in a
//! grid of one block, which visits every index; the per-channel reduction runs block by block,
//! each block as a team of real threads that meet at `__syncthreads`, so that its shared-memory
//! tree runs as on a GPU.
//! The matrix products around the kernels are cuBLAS calls, checked in `blas.rs`; the kernels on
//! a real GPU, in `tests/cuda_ops.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{Device, Tensor, Var};
use half::bf16;
use libloading::{Library, Symbol};
use rand::Rng;

use super::kernel_args::{ConvArgs, PoolArgs};
use crate::ops::conv::conv2d::{conv2d, Conv2dParams};
use crate::ops::conv::geometry::{col2im, im2col, ConvGeometry};
use crate::ops::optim::adam::{adam_update, AdamMoments, AdamStep, Coefficients as AdamCoefficients};
use crate::ops::optim::sgd::{sgd_update, SgdCoefficients, SgdStep};
use crate::ops::optim::state::StateVector;
use crate::ops::pool::max_pool2d::{max_pool2d, MaxPool2dParams};
use crate::rng::rng_for;

/// What stands in for CUDA's built-ins, then the kernels' source.
const SHIM: &str = r#"
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <algorithm>
#include <mutex>
#include <thread>
#include <vector>
#include <pthread.h>
struct uint3 { unsigned x, y, z; };
// cuda_bf16.h's type and conversions: round to nearest even, NaN kept quiet.
struct __nv_bfloat16 { uint16_t bits; };
static inline __nv_bfloat16 __float2bfloat16_rn(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40u)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return {(uint16_t)(u >> 16)};
}
static inline float __bfloat162float(__nv_bfloat16 h) {
    uint32_t u = (uint32_t)h.bits << 16;
    float v;
    memcpy(&v, &u, 4);
    return v;
}
// Per thread: the tests run in parallel, and a block's threads are threads of their own.
static thread_local uint3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
// The barrier of the block this thread belongs to (none outside `run_block`).
static thread_local pthread_barrier_t* block_barrier = nullptr;
#define __global__
#define __device__
#define __shared__ static
#define __syncthreads() do { if (block_barrier) pthread_barrier_wait(block_barrier); } while (0)
using std::max;
using std::min;
#include "kernels.cu"

// Runs `kernel` as block `block` of `threads` threads, each a thread of its own with its
// threadIdx, meeting at __syncthreads; one block at a time, since __shared__ arrays are static.
template <typename F>
static void run_block(unsigned block, unsigned threads, F kernel) {
    static std::mutex one_block_at_a_time;
    std::lock_guard<std::mutex> lock(one_block_at_a_time);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, nullptr, threads);
    std::vector<std::thread> team;
    for (unsigned t = 0; t < threads; t++) {
        team.emplace_back([&, t] {
            blockIdx.x = block;
            blockDim.x = threads;
            threadIdx.x = t;
            block_barrier = &barrier;
            kernel();
        });
    }
    for (auto& thread : team) thread.join();
    pthread_barrier_destroy(&barrier);
}

extern "C" void channel_sums_f32_block(unsigned block, unsigned threads, const float* dy, float* sums, int images,
                                       int channels, int plane) {
    run_block(block, threads, [&] { channel_sums_f32(dy, sums, images, channels, plane); });
}

extern "C" void channel_sums_bf16_block(unsigned block, unsigned threads, const __nv_bfloat16* dy, float* sums,
                                        int images, int channels, int plane) {
    run_block(block, threads, [&] { channel_sums_bf16(dy, sums, images, channels, plane); });
}
"#;

/// Block sizes the per-channel reduction is run with: one thread, fewer threads than values
/// (each thread sums several), and more (some threads sum none).
const BLOCK_SIZES: [u32; 3] = [1, 8, 64];

/// The kernels compiled for the host, once per test process.
fn kernels() -> &'static Library {
    static LIBRARY: std::sync::OnceLock<Library> = std::sync::OnceLock::new();
    LIBRARY.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops/cuda");
        let dir = std::env::temp_dir().join(format!("ba-core-kernels-on-cpu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (shim, library): (PathBuf, PathBuf) = (dir.join("shim.cpp"), dir.join("libkernels.so"));
        std::fs::write(&shim, SHIM).unwrap();
        let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
        let status = Command::new(&compiler)
            .args(["-O1", "-shared", "-fPIC", "-std=c++17", "-pthread", "-I"])
            .arg(&source)
            .arg(&shim)
            .arg("-o")
            .arg(&library)
            .status()
            .unwrap_or_else(|e| panic!("cannot run the C++ compiler {compiler:?} (set CXX): {e}"));
        assert!(status.success(), "{compiler} could not compile the CUDA kernels as C++");
        // SAFETY: the library is our own kernels file; its initialisers do nothing.
        let loaded = unsafe { Library::new(&library) }.unwrap();
        // Loaded, the library stays mapped without its file: leave nothing behind in the temp
        // directory (where removing a loaded library fails, as on Windows, the files stay).
        let _ = std::fs::remove_dir_all(&dir);
        loaded
    })
}

/// The kernel `name` with the C signature `F`.
fn kernel<F>(name: &str) -> Symbol<'static, F> {
    // SAFETY: every caller names `F` as the kernel's C signature in kernels.cu.
    unsafe { kernels().get(name.as_bytes()) }.unwrap_or_else(|e| panic!("kernel {name}: {e}"))
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rng_for(seed, "kernels-on-cpu");
    (0..n).map(|_| rng.random_range(-2.0..2.0)).collect()
}

fn geometry(
    b: usize,
    c: usize,
    (h, w): (usize, usize),
    cout: usize,
    k: (usize, usize),
    params: Conv2dParams,
) -> ConvGeometry {
    let (oh, ow) = (
        (h + 2 * params.padding.0 - k.0) / params.stride.0 + 1,
        (w + 2 * params.padding.1 - k.1) / params.stride.1 + 1,
    );
    ConvGeometry { b, c, h, w, cout, kh: k.0, kw: k.1, stride: params.stride, padding: params.padding, oh, ow }
}

/// AlexNet's first layer scaled down, and shapes with every stride and padding unequal.
fn geometries() -> Vec<ConvGeometry> {
    let p = |stride, padding| Conv2dParams { stride, padding, relu: false, precision: Default::default() };
    vec![
        geometry(2, 3, (23, 23), 4, (11, 11), p((4, 4), (2, 2))),
        geometry(3, 2, (9, 7), 3, (3, 2), p((2, 1), (0, 1))),
        geometry(1, 1, (5, 6), 2, (5, 6), p((3, 3), (2, 1))),
        geometry(2, 4, (7, 7), 5, (3, 3), p((1, 1), (1, 1))),
    ]
}

/// The column matrices of every image of `x`, one after another, by the CPU lowering.
fn batch_columns(g: &ConvGeometry, x: &[f32]) -> Vec<f32> {
    let per_image = g.patch() * g.positions();
    let mut cols = vec![0.0; g.b * per_image];
    for (i, col) in cols.chunks_mut(per_image).enumerate() {
        im2col(g, &x[i * g.image()..][..g.image()], col);
    }
    cols
}

type Im2col = unsafe extern "C" fn(*const f32, *mut f32, ConvArgs, i32);

#[test]
#[cfg_attr(not(host_cxx), ignore = "needs a C++ compiler: c++ on PATH, or the one CXX names")]
fn im2col_and_col2im_kernels_match_the_cpu_lowering() {
    let (to_cols, from_cols) = (kernel::<Im2col>("im2col_f32"), kernel::<Im2col>("col2im_f32"));
    for g in geometries() {
        let x = random(g.b * g.image(), 1);
        let want = batch_columns(&g, &x);
        let per_image = g.patch() * g.positions();
        let mut got = vec![f32::NAN; want.len()];
        // SAFETY: buffers of the sizes the kernel reads and writes for g.b images.
        unsafe { to_cols(x.as_ptr(), got.as_mut_ptr(), ConvArgs::of(&g).unwrap(), g.b as i32) };
        assert_eq!(got, want, "im2col {g:?}");

        let cols = random(g.b * per_image, 2);
        let mut want = vec![0.0; g.b * g.image()];
        // col2im may zero the entries that read the padding; the kernel gets them as they are.
        let mut scratch = cols.clone();
        for (i, dx) in want.chunks_mut(g.image()).enumerate() {
            col2im(&g, &mut scratch[i * per_image..][..per_image], g.positions(), dx);
        }
        let mut got = vec![f32::NAN; want.len()];
        // SAFETY: as above, the other way round.
        unsafe { from_cols(cols.as_ptr(), got.as_mut_ptr(), ConvArgs::of(&g).unwrap(), g.b as i32) };
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() < 1e-5, "col2im {g:?}: element {i} is {a}, want {b}");
        }
    }
}

#[test]
#[cfg_attr(not(host_cxx), ignore = "needs a C++ compiler: c++ on PATH, or the one CXX names")]
fn bf16_operand_kernels_round_to_nearest_even_as_the_cpu_emulation() {
    // Ties (1 + 2^-8 rounds down to even, 1 + 3 * 2^-8 up), the largest finite values, the
    // smallest normal and subnormal ones, infinities, then ordinary values.
    let special = [1.0 + 2f32.powi(-8), 1.0 + 3.0 * 2f32.powi(-8), -2.5, f32::MAX, f32::MIN, f32::MIN_POSITIVE];
    let mut values = special.to_vec();
    values.extend([1e-40, -1e-45, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0]);
    values.extend(random(1000, 50));
    let mut got = vec![bf16::ZERO; values.len()];
    let to_bf16 = kernel::<unsafe extern "C" fn(*const f32, *mut bf16, usize)>("to_bf16");
    // SAFETY: two buffers of `values.len()` elements.
    unsafe { to_bf16(values.as_ptr(), got.as_mut_ptr(), values.len()) };
    for (v, g) in values.iter().zip(&got) {
        assert_eq!(g.to_bits(), bf16::from_f32(*v).to_bits(), "to_bf16({v:e})");
    }
    let mut nan = [bf16::ZERO];
    // SAFETY: one value in, one out.
    unsafe { to_bf16([f32::NAN].as_ptr(), nan.as_mut_ptr(), 1) };
    assert!(nan[0].is_nan(), "to_bf16(NaN) is {:?}", nan[0]);

    let im2col_bf16 = kernel::<unsafe extern "C" fn(*const f32, *mut bf16, ConvArgs, i32)>("im2col_bf16");
    for g in geometries() {
        let x = random(g.b * g.image(), 51);
        let want = batch_columns(&g, &x);
        let mut got = vec![bf16::NAN; want.len()];
        // SAFETY: buffers of the sizes the kernel reads and writes for g.b images.
        unsafe { im2col_bf16(x.as_ptr(), got.as_mut_ptr(), ConvArgs::of(&g).unwrap(), g.b as i32) };
        assert!(got.iter().zip(&want).all(|(a, w)| *a == bf16::from_f32(*w)), "im2col_bf16 {g:?}");
    }

    // The bias gradient of mixed precision: f32 sums of the bf16 output gradient.
    let (b, c, plane) = (3, 4, 10);
    let dy: Vec<bf16> = random(b * c * plane, 52).into_iter().map(bf16::from_f32).collect();
    let channel_sums =
        kernel::<unsafe extern "C" fn(u32, u32, *const bf16, *mut f32, i32, i32, i32)>("channel_sums_bf16_block");
    for (threads, ch) in BLOCK_SIZES.into_iter().flat_map(|t| (0..c).map(move |ch| (t, ch))) {
        let mut sums = vec![f32::NAN; c];
        // SAFETY: one block per channel, as the GPU launch; `sums` has c values.
        unsafe { channel_sums(ch as u32, threads, dy.as_ptr(), sums.as_mut_ptr(), b as i32, c as i32, plane as i32) };
        let want: f32 = (0..b).flat_map(|i| &dy[(i * c + ch) * plane..][..plane]).map(|v| v.to_f32()).sum();
        assert!((sums[ch] - want).abs() < 1e-5, "channel {ch}, {threads} threads: {}, want {want}", sums[ch]);
    }
}

#[test]
#[cfg_attr(not(host_cxx), ignore = "needs a C++ compiler: c++ on PATH, or the one CXX names")]
fn bias_relu_mask_channel_sum_and_row_sum_kernels_match_the_cpu_op() {
    // A 1x1 convolution from 3 to c channels, with bias and ReLU.
    let (b, c, h, w) = (3, 5, 4, 3);
    let x = Tensor::from_vec(random(b * 3 * h * w, 3), (b, 3, h, w), &Device::Cpu).unwrap();
    let weight = Var::from_vec(random(c * 3, 4), (c, 3, 1, 1), &Device::Cpu).unwrap();
    let bias = Var::from_vec(random(c, 5), c, &Device::Cpu).unwrap();
    let no_bias = conv2d(&x, weight.as_tensor(), None, Conv2dParams::square(1, 0)).unwrap();
    let mut out = no_bias.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let bias_values = bias.as_tensor().to_vec1::<f32>().unwrap();
    let bias_relu = kernel::<unsafe extern "C" fn(*mut f32, *const f32, usize, i32, i32, i32)>("bias_relu_f32");
    // SAFETY: `out` holds b * c planes of h * w, `bias` c values.
    unsafe { bias_relu(out.as_mut_ptr(), bias_values.as_ptr(), out.len(), c as i32, (h * w) as i32, 1) };
    let params = Conv2dParams::square(1, 0).with_relu();
    let forward = conv2d(&x, weight.as_tensor(), Some(bias.as_tensor()), params).unwrap();
    assert_eq!(out, forward.flatten_all().unwrap().to_vec1::<f32>().unwrap(), "bias + ReLU");

    // The ReLU mask and the bias gradient: the CPU op's backward gives both.
    let probe = random(forward.elem_count(), 6);
    let probe_t = Tensor::from_vec(probe.clone(), forward.shape(), &Device::Cpu).unwrap();
    let grads = (&forward * &probe_t).unwrap().sum_all().unwrap().backward().unwrap();
    let mut masked = vec![f32::NAN; probe.len()];
    let relu_mask = kernel::<unsafe extern "C" fn(*const f32, *const f32, *mut f32, usize)>("relu_mask_f32");
    // SAFETY: three buffers of `probe.len()` values.
    unsafe { relu_mask(probe.as_ptr(), out.as_ptr(), masked.as_mut_ptr(), probe.len()) };
    let channel_sums =
        kernel::<unsafe extern "C" fn(u32, u32, *const f32, *mut f32, i32, i32, i32)>("channel_sums_f32_block");
    let want = grads.get(bias.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    for threads in BLOCK_SIZES {
        let mut sums = vec![f32::NAN; c];
        for ch in 0..c {
            // SAFETY: one block per channel, as the GPU launch; `sums` has c values.
            unsafe {
                channel_sums(ch as u32, threads, masked.as_ptr(), sums.as_mut_ptr(), b as i32, c as i32, (h * w) as i32)
            };
        }
        for (ch, (a, w)) in sums.iter().zip(&want).enumerate() {
            assert!((a - w).abs() < 1e-4, "bias gradient of channel {ch}, {threads} threads: {a}, want {w}");
        }
    }

    let rows = random(4 * 7, 7);
    let mut total = random(7, 8);
    let want: Vec<f32> = (0..7).map(|j| total[j] + (0..4).map(|k| rows[k * 7 + j]).sum::<f32>()).collect();
    let add_rows = kernel::<unsafe extern "C" fn(*mut f32, *const f32, usize, i32)>("add_rows_f32");
    // SAFETY: `total` has 7 values, `rows` 4 rows of 7.
    unsafe { add_rows(total.as_mut_ptr(), rows.as_ptr(), 7, 4) };
    for (a, w) in total.iter().zip(&want) {
        assert!((a - w).abs() < 1e-5, "add_rows: {a}, want {w}");
    }
}

type PoolForward = unsafe extern "C" fn(*const f32, *mut f32, *mut u32, PoolArgs, usize);
type PoolBackward = unsafe extern "C" fn(*const f32, *const u32, *mut f32, PoolArgs, usize);

#[test]
#[cfg_attr(not(host_cxx), ignore = "needs a C++ compiler: c++ on PATH, or the one CXX names")]
fn max_pool_kernels_match_the_cpu_op_with_ties_nan_and_padding() {
    let (forward, backward) = (kernel::<PoolForward>("max_pool_f32"), kernel::<PoolBackward>("max_pool_backward_f32"));
    let cases = [
        (MaxPool2dParams::square(3, 2), [2, 3, 13, 11], false),
        (MaxPool2dParams::square(3, 2), [1, 2, 9, 9], true),
        (MaxPool2dParams { kernel: (3, 2), stride: (1, 2), padding: (1, 1) }, [2, 2, 6, 5], false),
        (MaxPool2dParams { kernel: (2, 2), stride: (2, 2), padding: (0, 0) }, [1, 1, 4, 4], false),
    ];
    for (i, (params, [b, c, h, w], ties)) in cases.into_iter().enumerate() {
        let mut values = random(b * c * h * w, 10 + i as u64);
        if ties {
            values.iter_mut().for_each(|v| *v = v.round());
        }
        if i == 3 {
            values[5] = f32::NAN;
        }
        let x = Var::from_vec(values.clone(), (b, c, h, w), &Device::Cpu).unwrap();
        let y = max_pool2d(x.as_tensor(), params).unwrap();
        let probe = random(y.elem_count(), 20 + i as u64);
        let probe_t = Tensor::from_vec(probe.clone(), y.shape(), &Device::Cpu).unwrap();
        let grads = (&y * &probe_t).unwrap().sum_all().unwrap().backward().unwrap();

        let (oh, ow) = params.output_size(h, w).unwrap();
        let args = PoolArgs::of(&params, (h, w), (oh, ow)).unwrap();
        let (mut out, mut argmax) = (vec![0f32; b * c * oh * ow], vec![0u32; b * c * oh * ow]);
        let mut dx = vec![f32::NAN; b * c * h * w];
        // SAFETY: buffers of b * c output planes and b * c input planes.
        unsafe {
            forward(values.as_ptr(), out.as_mut_ptr(), argmax.as_mut_ptr(), args, b * c);
            backward(probe.as_ptr(), argmax.as_ptr(), dx.as_mut_ptr(), args, b * c);
        }
        let want = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for (j, (a, e)) in out.iter().zip(&want).enumerate() {
            assert!(a == e || (a.is_nan() && e.is_nan()), "case {i} output {j}: {a}, want {e}");
        }
        let want = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(dx, want, "case {i}: input gradient");
    }
}

#[test]
#[cfg_attr(not(host_cxx), ignore = "needs a C++ compiler: c++ on PATH, or the one CXX names")]
fn optimizer_kernels_match_the_cpu_updates() {
    let n = 1_001;
    let adam =
        kernel::<unsafe extern "C" fn(*mut f32, *const f32, *mut f32, *mut f32, AdamCoefficients, usize)>("adam_f32");
    for decoupled in [false, true] {
        let start = random(n, 30);
        let param = Var::from_vec(start.clone(), n, &Device::Cpu).unwrap();
        let (mut moments, mut p, mut m, mut v) = (AdamMoments::default(), start, vec![0f32; n], vec![0f32; n]);
        for step in 1..=3 {
            let grad = random(n, 30 + step);
            let hyper = AdamStep { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1, decoupled, step };
            adam_update(param.as_tensor(), &Tensor::new(grad.as_slice(), &Device::Cpu).unwrap(), &mut moments, hyper)
                .unwrap();
            // SAFETY: four buffers of n values.
            unsafe {
                adam(p.as_mut_ptr(), grad.as_ptr(), m.as_mut_ptr(), v.as_mut_ptr(), AdamCoefficients::of(&hyper), n)
            };
        }
        let want = param.as_tensor().to_vec1::<f32>().unwrap();
        for (i, (a, e)) in p.iter().zip(&want).enumerate() {
            assert!((a - e).abs() <= 1e-6 * e.abs().max(1.0), "adam (decoupled {decoupled}) {i}: {a}, want {e}");
        }
        assert_eq!(m, moments.m.to_host().unwrap(), "adam first moment");
    }

    let sgd = kernel::<unsafe extern "C" fn(*mut f32, *const f32, *mut f32, SgdCoefficients, usize)>("sgd_f32");
    let plain = SgdStep { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.01 };
    for hyper in
        [plain, SgdStep { momentum: 0.9, dampening: 0.2, ..plain }, SgdStep { momentum: 0.8, nesterov: true, ..plain }]
    {
        let start = random(n, 40);
        let param = Var::from_vec(start.clone(), n, &Device::Cpu).unwrap();
        let (mut buffer, mut p, mut b) = (StateVector::default(), start, vec![0f32; n]);
        for step in 0..3 {
            let grad = random(n, 41 + step);
            let first = buffer.is_empty();
            sgd_update(param.as_tensor(), &Tensor::new(grad.as_slice(), &Device::Cpu).unwrap(), &mut buffer, hyper)
                .unwrap();
            // SAFETY: three buffers of n values.
            unsafe { sgd(p.as_mut_ptr(), grad.as_ptr(), b.as_mut_ptr(), SgdCoefficients::of(&hyper, first), n) };
        }
        let want = param.as_tensor().to_vec1::<f32>().unwrap();
        for (i, (a, e)) in p.iter().zip(&want).enumerate() {
            assert!((a - e).abs() <= 1e-6 * e.abs().max(1.0), "sgd {hyper:?} {i}: {a}, want {e}");
        }
    }
}
