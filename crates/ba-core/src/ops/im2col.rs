//! The lowering of a convolution to one matrix product per image (im2col), its adjoint
//! (col2im) and a strided GEMM call.
//!
//! Written by hand because Candle keeps its im2col private and has no col2im; the GEMM itself
//! is the `gemm` crate that Candle's CPU backend already uses.

use gemm::Parallelism;

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

    /// Input values under one kernel placement: the rows of an image's column matrix.
    pub fn patch(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Values of one input image.
    pub fn image(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// The output indices `o` in `0..out` whose input index `o * stride + k - pad` lies in
/// `0..size`, as a range `lo..hi` (empty when none does).
fn valid_outputs(out: usize, stride: usize, k: usize, pad: usize, size: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(k).div_ceil(stride).min(out);
    let hi = (size + pad).saturating_sub(k).div_ceil(stride).min(out);
    (lo, hi.max(lo))
}

/// Visits every (column-matrix row, output row) pair of one image whose input row exists:
/// `f(row, oy, input offset of (channel, iy, 0), ox range, kx)`, with the column matrix's row
/// `row` = (channel, ky, kx) and the ox range those that read inside the input.
#[inline]
fn for_each_window_row(g: &ConvGeometry, mut f: impl FnMut(usize, usize, usize, (usize, usize), usize)) {
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    for ci in 0..g.c {
        for ky in 0..g.kh {
            let (oy_lo, oy_hi) = valid_outputs(g.oh, sh, ky, ph, g.h);
            for kx in 0..g.kw {
                let row = (ci * g.kh + ky) * g.kw + kx;
                let ox = valid_outputs(g.ow, sw, kx, pw, g.w);
                for oy in oy_lo..oy_hi {
                    let iy = oy * sh + ky - ph;
                    f(row, oy, (ci * g.h + iy) * g.w, ox, kx);
                }
            }
        }
    }
}

/// Fills `col` (patch x positions, row-major: row (channel, ky, kx), column (oy, ox)) from one
/// image `x` (c, h, w): the layout in which `W (cout x patch) * col` is the output image in
/// (cout, oh, ow) order, with no transpose.
pub(crate) fn im2col<T: Copy + Default>(g: &ConvGeometry, x: &[T], col: &mut [T]) {
    let (p, sw, pw) = (g.positions(), g.stride.1, g.padding.1);
    col[..g.patch() * p].fill(T::default());
    for_each_window_row(g, |row, oy, src, (lo, hi), kx| {
        let dst = &mut col[row * p + oy * g.ow..][..g.ow];
        let src = &x[src..][..g.w];
        if sw == 1 {
            let first = lo + kx - pw;
            dst[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
        } else if lo < hi {
            let taps = src[lo * sw + kx - pw..].iter().step_by(sw);
            for (d, &s) in dst[lo..hi].iter_mut().zip(taps) {
                *d = s;
            }
        }
    });
}

/// The adjoint of [`im2col`]: adds every entry of `col` to the input position it was read
/// from in `dx` (c, h, w), which the caller zeroes.
pub(crate) fn col2im<T: Copy + std::ops::AddAssign>(g: &ConvGeometry, col: &[T], dx: &mut [T]) {
    let (p, sw, pw) = (g.positions(), g.stride.1, g.padding.1);
    for_each_window_row(g, |row, oy, dst, (lo, hi), kx| {
        let src = &col[row * p + oy * g.ow..][..g.ow];
        let dst = &mut dx[dst..][..g.w];
        if sw == 1 {
            let first = lo + kx - pw;
            for (d, &s) in dst[first..first + hi - lo].iter_mut().zip(&src[lo..hi]) {
                *d += s;
            }
        } else if lo < hi {
            let taps = dst[lo * sw + kx - pw..].iter_mut().step_by(sw);
            for (d, &s) in taps.zip(&src[lo..hi]) {
                *d += s;
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

/// `dst (m x n, row-major) = lhs (m x k) * rhs (k x n)`, or `dst += ...` when `accumulate`;
/// on all of rayon's threads when `parallel`, on the calling thread otherwise.
pub(crate) fn matmul<T: candle_core::WithDType>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    (lhs, rhs): (MatRef<'_, T>, MatRef<'_, T>),
    parallel: bool,
) {
    assert!(dst.len() >= m * n, "matmul: destination too small");
    assert!(m == 0 || k == 0 || lhs.data.len() > (m - 1) * lhs.row_stride + (k - 1) * lhs.col_stride);
    assert!(n == 0 || k == 0 || rhs.data.len() > (k - 1) * rhs.row_stride + (n - 1) * rhs.col_stride);
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
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
