//! What the ops' `cuda_fwd` share: loading and launching the kernels of `cuda/kernels.cu`
//! (compiled to PTX by `build.rs`), views of f32 storage, and row-major matrix products on
//! cuBLAS with f32 or bf16 operands.

use candle_core::backend::BackendStorage;
use std::ffi::c_void;

use candle_core::cuda_backend::cudarc::cublas::result::gemm_strided_batched_ex;
use candle_core::cuda_backend::cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType_t,
};
use candle_core::cuda_backend::cudarc::driver::{
    CudaSlice, CudaView, CudaViewMut, DevicePtr, DevicePtrMut, DeviceRepr, LaunchConfig,
};
use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result};

use super::blas::Product;
use super::kernel_args::int;
use half::bf16;

mod ptx {
    include!(concat!(env!("OUT_DIR"), "/ptx.rs"));
}

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
        let function = $dev.get_or_load_custom_func($name, $crate::ops::cuda::launch::MODULE, $crate::ops::cuda::launch::PTX)?;
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
    operand_view(op, storage, layout)
}

/// The contiguous values of `storage` under `layout` as operands of type `T`, or an error
/// naming `op`.
pub(crate) fn operand_view<'a, T: Operand>(
    op: &str,
    storage: &'a CudaStorage,
    layout: &Layout,
) -> Result<CudaView<'a, T>> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(storage.as_cuda_slice::<T>()?.slice(start..end)),
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

/// A new buffer of `n` values on `dev`, every value written by the kernel that fills it.
pub(crate) fn alloc<T: DeviceRepr>(dev: &CudaDevice, n: usize) -> Result<CudaSlice<T>> {
    // SAFETY: callers launch a kernel or product that writes every element before any read.
    unsafe { dev.alloc::<T>(n) }
}

/// An element type of matrix-product operands; results are always f32 (f32 sums).
pub(crate) trait Operand: DeviceRepr + CudaDType {
    /// cuBLAS's name for the type.
    const DATA_TYPE: cudaDataType_t;
    /// The suffix of the kernels that write or read operands of this type (`im2col_bf16`).
    const KERNELS: &'static str;
}

impl Operand for f32 {
    const DATA_TYPE: cudaDataType_t = cudaDataType_t::CUDA_R_32F;
    const KERNELS: &'static str = "f32";
}

/// Mixed precision's operands (`ops::Precision::Bf16`): tensor-core products.
impl Operand for bf16 {
    const DATA_TYPE: cudaDataType_t = cudaDataType_t::CUDA_R_16BF;
    const KERNELS: &'static str = "bf16";
}

/// `values` rounded to bf16 (nearest even), a product operand of mixed precision.
pub(crate) fn to_bf16(dev: &CudaDevice, values: &CudaView<'_, f32>) -> Result<CudaSlice<bf16>> {
    let n = values.len();
    let mut out = alloc::<bf16>(dev, n)?;
    launch!(dev, "to_bf16", elementwise(n), values, &mut out, &n)?;
    Ok(out)
}

/// Runs `product` (`ops/cuda/blas.rs`) for `batch` entries on cuBLAS: `out_i = op(left_i) *
/// op(right_i)`, each `out_i` overwritten, with f32 sums and results whatever the operands'
/// type `T`.
pub(crate) fn matmul<T: Operand, C: DevicePtrMut<f32>>(
    dev: &CudaDevice,
    product: &Product,
    (left, right): (&CudaView<'_, T>, &CudaView<'_, T>),
    out: &mut C,
    batch: usize,
) -> Result<()> {
    let call = product.call();
    let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
    let int = |v| int("matmul", v);
    let (alpha, beta) = (1.0f32, 0.0f32);
    let (blas, stream) = (dev.cublas_handle(), dev.cuda_stream());
    // cuBLAS is column-major: the row-major product `left * right` is `right^T * left^T` there,
    // which `Product::call` has already arranged.
    let (a, _a_read) = right.device_ptr(&stream);
    let (b, _b_read) = left.device_ptr(&stream);
    let (c, _c_written) = out.device_ptr_mut(&stream);
    // SAFETY: the callers pass buffers holding `batch` entries of the product's shapes at its
    // strides (`cuda/conv2d.rs` sizes them from the same geometry); the scalars are f32 as
    // the compute type requires.
    unsafe {
        gemm_strided_batched_ex(
            *blas.handle(),
            op(call.transpose_a),
            op(call.transpose_b),
            int(call.m)?,
            int(call.n)?,
            int(call.k)?,
            (&alpha as *const f32).cast(),
            a as *const c_void,
            T::DATA_TYPE,
            int(call.lda)?,
            call.stride_a as i64,
            b as *const c_void,
            T::DATA_TYPE,
            int(call.ldb)?,
            call.stride_b as i64,
            (&beta as *const f32).cast(),
            c as *mut c_void,
            cudaDataType_t::CUDA_R_32F,
            int(call.ldc)?,
            call.stride_c as i64,
            int(batch)?,
            cublasComputeType_t::CUBLAS_COMPUTE_32F,
            cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .w()?;
    Ok(())
}
