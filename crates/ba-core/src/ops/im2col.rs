//! The lowering of a convolution to one matrix product (im2col), its adjoint (col2im) and
//! a strided GEMM call.
//!
//! Written by hand because Candle keeps its im2col private and has no col2im; the GEMM itself
//! is the `gemm` crate that Candle's CPU backend already uses.

use gemm::Parallelism;
use rayon::prelude::*;

/// Shapes of one convolution: input (b, c, h, w), weight (cout, c, kh, kw), no dilation or groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvGeometry {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeometry {
    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Length of one im2col row: input values under one kernel placement.
    pub fn patch(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Images per im2col chunk, so that a chunk's matrix stays near `budget` elements.
    pub fn images_per_chunk(&self, budget: usize) -> usize {
        (budget / (self.positions() * self.patch()).max(1)).clamp(1, self.b)
    }

    /// For output position (oy, ox) and kernel row `ky`: the input row, the first and one past
    /// the last kernel column that fall inside the input, and the input column of the first.
    /// Consecutive kernel columns read consecutive input columns whatever the stride.
    #[inline]
    fn window_row(&self, oy: usize, ox: usize, ky: usize) -> Option<(usize, usize, usize, usize)> {
        let iy = (oy * self.stride.0 + ky).checked_sub(self.padding.0)?;
        if iy >= self.h {
            return None;
        }
        let x0 = ox * self.stride.1; // input column of kernel column 0, plus the padding
        let kx_lo = self.padding.1.saturating_sub(x0);
        let kx_hi = (self.w + self.padding.1).saturating_sub(x0).min(self.kw);
        (kx_lo < kx_hi).then(|| (iy, kx_lo, kx_hi, x0 + kx_lo - self.padding.1))
    }
}

/// Fills `col` ((images * positions) x patch, row-major) from `x` (images, c, h, w).
pub(crate) fn im2col<T: Copy + Send + Sync + Default>(g: &ConvGeometry, x: &[T], col: &mut [T]) {
    let (p, patch, plane) = (g.positions(), g.patch(), g.h * g.w);
    col.par_chunks_mut(patch).enumerate().for_each(|(row, dst)| {
        let image = &x[(row / p) * g.c * plane..][..g.c * plane];
        let (oy, ox) = ((row % p) / g.ow, (row % p) % g.ow);
        for (ci, taps) in dst.chunks_exact_mut(g.kh * g.kw).enumerate() {
            let src = &image[ci * plane..][..plane];
            for (ky, out) in taps.chunks_exact_mut(g.kw).enumerate() {
                match g.window_row(oy, ox, ky) {
                    Some((iy, lo, hi, ix)) => {
                        out[..lo].fill(T::default());
                        out[lo..hi].copy_from_slice(&src[iy * g.w + ix..][..hi - lo]);
                        out[hi..].fill(T::default());
                    }
                    None => out.fill(T::default()),
                }
            }
        }
    });
}

/// Adds every entry of `col` back to the input position it was read from: dx (images, c, h, w).
pub(crate) fn col2im<T: Copy + Send + Sync + std::ops::AddAssign>(g: &ConvGeometry, col: &[T], dx: &mut [T]) {
    let (p, patch, taps) = (g.positions(), g.patch(), g.kh * g.kw);
    dx.par_chunks_mut(g.h * g.w).enumerate().for_each(|(plane_index, dst)| {
        let (image, ci) = (plane_index / g.c, plane_index % g.c);
        for pos in 0..p {
            let (oy, ox) = (pos / g.ow, pos % g.ow);
            let src = &col[(image * p + pos) * patch + ci * taps..][..taps];
            for ky in 0..g.kh {
                if let Some((iy, lo, hi, ix)) = g.window_row(oy, ox, ky) {
                    let d = &mut dst[iy * g.w + ix..][..hi - lo];
                    for (d, &s) in d.iter_mut().zip(&src[ky * g.kw + lo..ky * g.kw + hi]) {
                        *d += s;
                    }
                }
            }
        }
    });
}

/// A strided matrix operand: element (i, j) is at `data[i * row_stride + j * col_stride]`.
pub(crate) struct MatRef<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

/// `dst (m x n, row-major) = lhs (m x k) * rhs (k x n)`, or `dst += ...` when `accumulate`.
pub(crate) fn matmul<T: candle_core::WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
) {
    assert!(dst.len() >= m * n, "matmul: destination too small");
    assert!(m == 0 || k == 0 || lhs.data.len() > (m - 1) * lhs.row_stride + (k - 1) * lhs.col_stride);
    assert!(n == 0 || k == 0 || rhs.data.len() > (k - 1) * rhs.row_stride + (n - 1) * rhs.col_stride);
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: the asserts above keep every strided access of `gemm` inside the three slices,
    // and `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
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
