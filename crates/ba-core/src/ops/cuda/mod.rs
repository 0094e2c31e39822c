//! The CUDA side of the ops: the kernels of `kernels.cu` and their launch glue, the cuBLAS
//! products, the kernels' argument structs, and (in tests) the harness that compiles
//! `kernels.cu` as C++ and runs it on the CPU against the Rust kernels. The product geometry
//! and the argument structs build without the `cuda` feature, for that harness.

pub(crate) mod blas;
#[cfg(feature = "cuda")]
pub(crate) mod conv2d;
pub(crate) mod kernel_args;
#[cfg(test)]
mod kernels_on_cpu;
#[cfg(feature = "cuda")]
pub(crate) mod launch;
#[cfg(feature = "cuda")]
pub(crate) mod max_pool2d;
