//! What the ops' `cuda_fwd` share: loading and launching the kernels of `cuda/kernels.cu`
//! (compiled to PTX by `build.rs`), views of f32 storage, and row-major matrix products on
//! cuBLAS.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::cublas::{sys::cublasOperation_t, Gemm, GemmConfig, StridedBatchedConfig};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, CudaViewMut, DevicePtrMut, LaunchConfig};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result};

use super::blas::Product;
use super::kernel_args::int;

mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

pub(crate) mod conv2d;
pub(crate) mod max_pool2d;

/// The PTX of `cuda/kernels.cu`.
pub(crate) const PTX: &str = ptx::KERNELS;

/// The name Candle caches our PTX module under.
pub(crate) const MODULE: &str = "ba-core-ops";

/// Threads per block of the elementwise kernels.
const BLOCK: u32 = 256;

/// Largest grid: enough blocks to fill any current GPU; the kernels loop over the rest.
const MAX_BLOCKS: usize = 65_535;

/// The launch shape of an elementwise kernel over `n` values (one grid-stride loop).
pub(crate) fn elementwise(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (BLOCK, 1, 1), shared_mem_bytes: 0 }
}

/// Launches the kernel `$name` of `cuda/kernels.cu` on `$dev` with `$config` and the
/// arguments in the order of its C signature.
macro_rules! launch {
    ($dev:expr, $name:expr, $config:expr, $($arg:expr),+ $(,)?) => {{
        use candle_core::cuda_backend::cudarc::driver::PushKernelArg as _;
        use candle_core::cuda_backend::WrapErr as _;
        let function = $dev.get_or_load_custom_func($name, $crate::ops::cuda::MODULE, $crate::ops::cuda::PTX)?;
        let mut args = function.builder();
        $( args.arg($arg); )+
        // SAFETY: every call site passes the arguments in the order and types of the kernel's
        // C signature, with buffers at least as long as the sizes it passes.
        unsafe { args.launch($config) }.w().map(|_| ())
    }};
}
pub(crate) use launch;

/// The contiguous f32 values of `storage` under `layout`, or an error naming `op`.
pub(crate) fn f32_view<'a>(op: &str, storage: &'a CudaStorage, layout: &Layout) -> Result<CudaView<'a, f32>> {
    if storage.dtype() != DType::F32 {
        candle_core::bail!("{op}: on CUDA only f32 is supported, got {:?}", storage.dtype());
    }
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(storage.as_cuda_slice::<f32>()?.slice(start..end)),
        None => candle_core::bail!("{op}: the input must be contiguous, got strides {:?}", layout.stride()),
    }
}

/// The contiguous f32 values of `storage` under `layout`, writable, or an error naming `op`.
pub(crate) fn f32_view_mut<'a>(
    op: &str,
    storage: &'a mut CudaStorage,
    layout: &Layout,
) -> Result<CudaViewMut<'a, f32>> {
    if storage.dtype() != DType::F32 {
        candle_core::bail!("{op}: on CUDA only f32 is supported, got {:?}", storage.dtype());
    }
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(storage.as_cuda_slice_mut::<f32>()?.slice_mut(start..end)),
        None => candle_core::bail!("{op}: the input must be contiguous, got strides {:?}", layout.stride()),
    }
}

/// A new f32 buffer of `n` values on `dev`, every value written by the kernel that fills it.
pub(crate) fn alloc_f32(dev: &CudaDevice, n: usize) -> Result<CudaSlice<f32>> {
    // SAFETY: callers launch a kernel or product that writes every element before any read.
    unsafe { dev.alloc::<f32>(n) }
}

/// Runs `product` (`ops/blas.rs`) for `batch` entries on cuBLAS: `out_i = op(left_i) *
/// op(right_i)`, each `out_i` overwritten.
pub(crate) fn matmul<C: DevicePtrMut<f32>>(
    dev: &CudaDevice,
    product: &Product,
    (left, right): (&CudaView<'_, f32>, &CudaView<'_, f32>),
    out: &mut C,
    batch: usize,
) -> Result<()> {
    let call = product.call();
    let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
    let int = |v| int("matmul", v);
    let gemm = GemmConfig {
        transa: op(call.transpose_a),
        transb: op(call.transpose_b),
        m: int(call.m)?,
        n: int(call.n)?,
        k: int(call.k)?,
        alpha: 1.0f32,
        lda: int(call.lda)?,
        ldb: int(call.ldb)?,
        beta: 0.0,
        ldc: int(call.ldc)?,
    };
    let config = StridedBatchedConfig {
        gemm,
        batch_size: int(batch)?,
        stride_a: call.stride_a as i64,
        stride_b: call.stride_b as i64,
        stride_c: call.stride_c as i64,
    };
    // SAFETY: the callers pass buffers holding `batch` entries of the product's shapes at its
    // strides (`cuda/conv2d.rs` sizes them from the same geometry).
    unsafe { dev.cublas_handle().gemm_strided_batched(config, right, left, out) }.w()?;
    Ok(())
}
