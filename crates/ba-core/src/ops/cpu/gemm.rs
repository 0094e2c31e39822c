//! A strided matrix product on the CPU: the `gemm` crate (which Candle's CPU backend uses) over
//! operands given by their strides, so that transposes and column matrices need no copy.

use gemm::Parallelism;

/// A strided matrix operand: element (i, j) is at `data[i * row_stride + j * col_stride]`.
pub(crate) struct MatRef<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

/// `dst (m x n, row-major) = lhs (m x k) * rhs (k x n)`, or `dst += ...` when `accumulate`;
/// on all of rayon's threads when `parallel`, on the calling thread otherwise.
pub(crate) fn matmul<T: candle_core::WithDType>(
    shape: (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    operands: (MatRef<'_, T>, MatRef<'_, T>),
    parallel: bool,
) {
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    matmul_on(threads, shape, dst, accumulate, operands)
}

/// [`matmul`] on `threads` of rayon's threads (the calling thread alone when 1).
pub(crate) fn matmul_on<T: candle_core::WithDType>(
    threads: usize,
    shape: (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    operands: (MatRef<'_, T>, MatRef<'_, T>),
) {
    assert!(dst.len() >= shape.0 * shape.1, "matmul: destination too small");
    // SAFETY: `dst` holds the m x n values and is borrowed mutably, so it aliases neither
    // operand.
    unsafe { gemm_into(threads, shape, dst.as_mut_ptr(), accumulate, operands) }
}

/// `lhs (m x k) * rhs (k x n)` as a new row-major (m x n) vector, on `threads` threads. The
/// product writes every value, so the vector is not zeroed first: for the classifier's weight
/// gradients that saved clearing 26 MB per step.
pub(crate) fn matmul_new<T: candle_core::WithDType>(
    threads: usize,
    (m, n, k): (usize, usize, usize),
    operands: (MatRef<'_, T>, MatRef<'_, T>),
) -> Vec<T> {
    if k == 0 {
        return vec![T::zero(); m * n];
    }
    let mut dst = Vec::with_capacity(m * n);
    // SAFETY: the allocation holds m x n values and aliases nothing. With `accumulate` false
    // and k > 0, `gemm` writes every one of them (never reading them) before `set_len`.
    unsafe {
        gemm_into(threads, (m, n, k), dst.as_mut_ptr(), false, operands);
        dst.set_len(m * n);
    }
    dst
}

/// `dst (m x n, row-major) = lhs * rhs`, or `dst += ...` when `accumulate`, by the `gemm` crate.
///
/// # Safety
/// `dst` must be valid for writes (and, when `accumulate`, reads) of m x n values, and alias
/// neither operand.
unsafe fn gemm_into<T: candle_core::WithDType>(
    threads: usize,
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    accumulate: bool,
    (lhs, rhs): (MatRef<'_, T>, MatRef<'_, T>),
) {
    assert!(m == 0 || k == 0 || lhs.data.len() > (m - 1) * lhs.row_stride + (k - 1) * lhs.col_stride);
    assert!(n == 0 || k == 0 || rhs.data.len() > (k - 1) * rhs.row_stride + (n - 1) * rhs.col_stride);
    let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: the asserts above keep every strided access of `gemm` inside the operands; the
    // caller vouches for `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            T::from_f64(1.0),
            T::from_f64(1.0),
            false,
            false,
            false,
            parallelism,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;
    use rand::Rng as _;

    #[test]
    fn a_new_product_writes_every_value() {
        let mut rng = rng_for(3, "matmul-new");
        for (m, n, k) in [(37, 29, 13), (64, 48, 1), (5, 300, 70)] {
            let lhs: Vec<f64> = (0..m * k).map(|_| rng.random::<f64>() - 0.5).collect();
            let rhs: Vec<f64> = (0..k * n).map(|_| rng.random::<f64>() - 0.5).collect();
            let operands = || {
                let lhs = MatRef { data: &lhs[..], row_stride: 1, col_stride: m };
                (lhs, MatRef { data: &rhs[..], row_stride: n, col_stride: 1 })
            };
            let mut want = vec![0.0; m * n];
            matmul_on(1, (m, n, k), &mut want, false, operands());
            for threads in [1, 2] {
                // Freed NaNs of the same size, which the allocator tends to hand out again.
                drop(vec![f64::NAN; m * n]);
                assert_eq!(matmul_new(threads, (m, n, k), operands()), want, "{m}x{n}x{k} on {threads} threads");
            }
        }
        let empty: [f64; 0] = [];
        let none = || MatRef { data: &empty[..], row_stride: 0, col_stride: 0 };
        assert_eq!(matmul_new(1, (3, 2, 0), (none(), none())), vec![0.0; 6]);
    }
}
