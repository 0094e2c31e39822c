//! What the CPU kernels share: the strided GEMM call, per-thread scratch memory, the cache of
//! transformed weights, operand precision, and access to Candle's CPU storage.

pub(crate) mod gemm;
pub(crate) mod precision;
pub(crate) mod scratch;
pub(crate) mod storage;
pub(crate) mod weight_cache;

pub use precision::Precision;
