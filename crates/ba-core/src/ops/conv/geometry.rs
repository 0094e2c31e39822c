//! The geometry of a convolution and its lowering to one matrix product per image: im2col,
//! im2row, their adjoint col2im, and the phase split of strided rows.
//!
//! Written by hand because Candle keeps its im2col private and has no col2im.

use std::ops::Range;

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
/// (cout, oh, ow) order, with no transpose. Every entry is written once (no clearing pass).
#[cfg(test)]
pub(crate) fn im2col<T: Copy + Default>(g: &ConvGeometry, x: &[T], col: &mut [T]) {
    im2col_strided(g, x, col, g.positions());
}

/// [`im2col`] into the first `positions` columns of a matrix whose rows are `ld` apart: one
/// image's block of a column matrix that holds several images side by side.
pub(crate) fn im2col_strided<T: Copy + Default>(g: &ConvGeometry, x: &[T], col: &mut [T], ld: usize) {
    assert!(
        ld >= g.positions() && col.len() >= (g.patch() - 1) * ld + g.positions(),
        "im2col: column matrix too small"
    );
    if g.stride == (1, 1) && g.ow == g.w {
        im2col_same_width(g, x, col, ld);
    } else {
        im2col_rows(g, x, col, ld);
    }
}

/// [`im2col`] one input row at a time, for any stride and padding.
///
/// Output (oy, ox) of kernel column kx reads padded input column `ox * sw + kx`, which is
/// `(ox + kx / sw) * sw + kx % sw`: entry `ox + kx / sw` of the row's phase `kx % sw` (every
/// sw-th value of the zero-padded row, starting at `kx % sw`). So each input row is split once
/// into its sw phases, all rows of a channel up front (a row is read by up to kh / sh output
/// rows; splitting it for each cost 5% of the first layer's backward pass), and every (kx, oy)
/// segment of the column matrix is a contiguous copy of ow values from one phase. A strided
/// gather per segment (the obvious loop) stores one value at a time, and for the first layer
/// (stride 4) that made im2col cost about as much as its GEMM.
fn im2col_rows<T: Copy + Default>(g: &ConvGeometry, x: &[T], col: &mut [T], ld: usize) {
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    let (p, zero) = (g.positions(), T::default());
    // Every padded column an output reads, rounded up to whole phases.
    let phase_len = (g.w + 2 * pw).div_ceil(sw);
    let split_len = sw * phase_len;
    // The phases of every row of one channel: each row is read by up to kh / sh output rows.
    let mut split_rows = vec![zero; g.h * split_len];
    for ci in 0..g.c {
        let plane = &x[ci * g.h * g.w..][..g.h * g.w];
        for (row, phases) in plane.chunks_exact(g.w).zip(split_rows.chunks_exact_mut(split_len)) {
            split_phases(row, (sw, pw), zero, phases);
        }
        for ky in 0..g.kh {
            // The kw column-matrix rows of (ci, ky): the first p values of every ld.
            let rows = &mut col[(ci * g.kh + ky) * g.kw * ld..][..(g.kw - 1) * ld + p];
            let (oy_lo, oy_hi) = valid_outputs(g.oh, sh, ky, ph, g.h);
            for oy in 0..g.oh {
                if !(oy_lo..oy_hi).contains(&oy) {
                    rows.chunks_mut(ld).for_each(|row| row[oy * g.ow..][..g.ow].fill(zero));
                    continue;
                }
                let phases = &split_rows[(oy * sh + ky - ph) * split_len..][..split_len];
                for (kx, row) in rows.chunks_mut(ld).enumerate() {
                    let phase = &phases[kx % sw * phase_len..][..phase_len];
                    row[oy * g.ow..][..g.ow].copy_from_slice(&phase[kx / sw..][..g.ow]);
                }
            }
        }
    }
}

/// Splits `row`, padded with `pad` values of `fill` on the left, into `stride` phases of
/// `phases.len() / stride` values: entry t of phase r is the padded row's column
/// `t * stride + r`, `fill` where that is padding or past the row's end.
#[inline(always)]
pub(crate) fn split_phases<T: Copy>(row: &[T], (stride, pad): (usize, usize), fill: T, phases: &mut [T]) {
    let phase_len = phases.len() / stride;
    for (r, phase) in phases.chunks_exact_mut(phase_len).enumerate() {
        let (lo, hi) = valid_outputs(phase_len, stride, r, pad, row.len());
        phase[..lo].fill(fill);
        phase[hi..].fill(fill);
        if lo < hi {
            let taps = row[lo * stride + r - pad..].iter().step_by(stride);
            phase[lo..hi].iter_mut().zip(taps).for_each(|(slot, &v)| *slot = v);
        }
    }
}

/// [`im2col`] for stride 1 with padding that keeps the width (k = 2 * padding + 1 along the
/// width: AlexNet's 5x5 and 3x3 layers). Then each column-matrix row is the input plane shifted
/// by (ky - ph, kx - pw): one contiguous copy of all its valid output rows, after which the
/// columns that wrapped around from the neighbouring input row are zeroed. That is one long
/// copy per row instead of one per output row (7 to 15 values at AlexNet's sizes).
fn im2col_same_width<T: Copy + Default>(g: &ConvGeometry, x: &[T], col: &mut [T], ld: usize) {
    let zero = T::default();
    for row in 0..g.patch() {
        let dst = &mut col[row * ld..][..g.positions()];
        let Some(span) = SameWidthSpan::of(g, row) else {
            dst.fill(zero);
            continue;
        };
        let (start, end) = (span.positions.start, span.positions.end);
        dst[..start].fill(zero);
        dst[start..end].copy_from_slice(&x[span.input_start..][..end - start]);
        dst[end..].fill(zero);
        span.zero_wrapped(g, dst);
    }
}

/// One column-matrix row of a stride-1 convolution that keeps the width (see
/// [`im2col_same_width`]): output (oy, ox) of row (ci, ky, kx) reads input (oy + ky - ph, ox +
/// kx - pw) of channel ci, so from the first valid output position to the last one the offset
/// between the two flat indices is constant.
struct SameWidthSpan {
    /// Flat output positions from the first valid one to the last (end exclusive).
    positions: Range<usize>,
    /// Flat input index (channel included) that the first of them reads.
    input_start: usize,
    /// Output rows that read inside the input.
    rows: Range<usize>,
    /// Output columns that read inside the input; the others wrap around to the neighbouring
    /// input row.
    cols: Range<usize>,
}

impl SameWidthSpan {
    /// The span of column-matrix row `row`, or `None` when it reads only padding.
    fn of(g: &ConvGeometry, row: usize) -> Option<Self> {
        let (ph, pw) = g.padding;
        let (ci, ky, kx) = (row / (g.kh * g.kw), row / g.kw % g.kh, row % g.kw);
        let (oy_lo, oy_hi) = valid_outputs(g.oh, 1, ky, ph, g.h);
        let (lo, hi) = valid_outputs(g.ow, 1, kx, pw, g.w);
        (oy_lo < oy_hi && lo < hi).then(|| Self {
            positions: oy_lo * g.w + lo..(oy_hi - 1) * g.w + hi,
            input_start: (ci * g.h + oy_lo + ky - ph) * g.w + lo + kx - pw,
            rows: oy_lo..oy_hi,
            cols: lo..hi,
        })
    }

    /// Zeroes the entries of the row `values` (one image's positions) whose column wraps
    /// around.
    fn zero_wrapped<T: Copy + Default>(&self, g: &ConvGeometry, values: &mut [T]) {
        let w = g.w;
        for out_row in values[self.rows.start * w..self.rows.end * w].chunks_exact_mut(w) {
            out_row[..self.cols.start].fill(T::default());
            out_row[self.cols.end..].fill(T::default());
        }
    }
}

/// The transpose of [`im2col`], for the output positions `positions` only: `rows` (positions
/// x patch, row-major: row (oy, ox), column (channel, ky, kx)) from one image `x` (c, h, w).
/// Each (channel, ky) run of a row is kw consecutive input values, so for wide kernels (the
/// first layer's 11) this is one short copy per run, where [`im2col`] needs a phase split per
/// input row. Every entry is written once.
pub(crate) fn im2row<T: Copy + Default>(g: &ConvGeometry, x: &[T], positions: Range<usize>, rows: &mut [T]) {
    let (sh, sw) = g.stride;
    let (ph, pw) = g.padding;
    let (patch, zero) = (g.patch(), T::default());
    assert!(positions.end <= g.positions() && rows.len() >= positions.len() * patch, "im2row: row matrix too small");
    for (position, row) in positions.zip(rows.chunks_exact_mut(patch)) {
        let (oy, ox) = (position / g.ow, position % g.ow);
        // Kernel columns that read inside the input here: kx in lo..hi, from input column x0.
        let lo = pw.saturating_sub(ox * sw).min(g.kw);
        let hi = (g.w + pw).saturating_sub(ox * sw).clamp(lo, g.kw);
        let x0 = (ox * sw + lo).saturating_sub(pw);
        for (run, dst) in row.chunks_exact_mut(g.kw).enumerate() {
            let (ci, ky) = (run / g.kh, run % g.kh);
            let iy = (oy * sh + ky).checked_sub(ph).filter(|&iy| iy < g.h && lo < hi);
            let Some(iy) = iy else {
                dst.fill(zero);
                continue;
            };
            let src = &x[(ci * g.h + iy) * g.w + x0..][..hi - lo];
            if lo == 0 && hi == g.kw {
                copy_run(src, dst);
            } else {
                dst[..lo].fill(zero);
                copy_run(src, &mut dst[lo..hi]);
                dst[hi..].fill(zero);
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for runs of 8 to 16 values as two overlapping fixed-size copies
/// of 8 (a few vector moves), elsewhere through `memcpy`, whose call cost as much as the rest
/// of [`im2row`] for the first layer's runs of 11.
#[inline(always)]
fn copy_run<T: Copy>(src: &[T], dst: &mut [T]) {
    const HALF: usize = 8;
    let len = src.len();
    let halves = ((HALF..=2 * HALF).contains(&len) && dst.len() == len)
        .then(|| (<[T; HALF]>::try_from(&src[..HALF]), <[T; HALF]>::try_from(&src[len - HALF..])));
    match halves {
        Some((Ok(head), Ok(tail))) => {
            dst[..HALF].copy_from_slice(&head);
            dst[len - HALF..].copy_from_slice(&tail);
        }
        _ => dst.copy_from_slice(src),
    }
}

/// The adjoint of [`im2col_strided`]: adds every entry of the first `positions` columns of
/// `col` (rows `ld` apart) to the input position it was read from in `dx` (c, h, w), which the
/// caller zeroes. `col` is the caller's scratch: entries that were read from the padding may
/// be set to zero on the way.
pub(crate) fn col2im<T: Copy + Default + std::ops::AddAssign>(
    g: &ConvGeometry,
    col: &mut [T],
    ld: usize,
    dx: &mut [T],
) {
    if g.stride == (1, 1) && g.ow == g.w {
        col2im_same_width(g, col, ld, dx);
    } else {
        col2im_rows(g, col, ld, dx);
    }
}

/// [`col2im`] one output row at a time, for any stride and padding.
fn col2im_rows<T: Copy + std::ops::AddAssign>(g: &ConvGeometry, col: &[T], ld: usize, dx: &mut [T]) {
    let (sw, pw) = (g.stride.1, g.padding.1);
    for_each_window_row(g, |row, oy, dst, (lo, hi), kx| {
        let src = &col[row * ld + oy * g.ow..][..g.ow];
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

/// [`col2im`] for the layers [`im2col_same_width`] serves, as its mirror image: the entries
/// of a column-matrix row that read the padding (the columns that wrap around to the
/// neighbouring input row) are zeroed, then the row's valid span is added to the input plane
/// in one contiguous pass. Adding zero leaves a sum unchanged, and the values are added in the
/// same order as one output row at a time, so the result is the same to the last bit; the
/// per-row loop added runs of 7 values at the 7x7 layers, mostly in scalar code.
fn col2im_same_width<T: Copy + Default + std::ops::AddAssign>(
    g: &ConvGeometry,
    col: &mut [T],
    ld: usize,
    dx: &mut [T],
) {
    for row in 0..g.patch() {
        let Some(span) = SameWidthSpan::of(g, row) else {
            continue;
        };
        let src = &mut col[row * ld..][..g.positions()];
        span.zero_wrapped(g, src);
        let dst = &mut dx[span.input_start..][..span.positions.len()];
        for (d, &s) in dst.iter_mut().zip(&src[span.positions]) {
            *d += s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;
    use rand::Rng as _;

    /// The column matrix by its definition: entry (c, ky, kx; oy, ox) is the input at
    /// (c, oy * sh + ky - ph, ox * sw + kx - pw), zero outside the input.
    fn im2col_by_definition(g: &ConvGeometry, x: &[f64]) -> Vec<f64> {
        let mut col = Vec::with_capacity(g.patch() * g.positions());
        for c in 0..g.c {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let iy = (oy * g.stride.0 + ky).checked_sub(g.padding.0).filter(|&iy| iy < g.h);
                            let ix = (ox * g.stride.1 + kx).checked_sub(g.padding.1).filter(|&ix| ix < g.w);
                            col.push(match (iy, ix) {
                                (Some(iy), Some(ix)) => x[(c * g.h + iy) * g.w + ix],
                                _ => 0.0,
                            });
                        }
                    }
                }
            }
        }
        col
    }

    fn geometry(
        c: usize,
        (h, w): (usize, usize),
        (kh, kw): (usize, usize),
        stride: usize,
        pad: (usize, usize),
    ) -> ConvGeometry {
        let (oh, ow) = ((h + 2 * pad.0 - kh) / stride + 1, (w + 2 * pad.1 - kw) / stride + 1);
        ConvGeometry { b: 1, c, h, w, cout: 1, kh, kw, stride: (stride, stride), padding: pad, oh, ow }
    }

    /// Shapes of both paths: stride 1 keeping the width (AlexNet's 5x5 and 3x3, a 1x1, a
    /// 5-wide kernel whose padding is more than its reach in height), and the general one
    /// (AlexNet's 11x11 stride 4 with its padding 5 and with 2, stride 1 without padding, stride 2
    /// with).
    fn shapes() -> Vec<ConvGeometry> {
        vec![
            geometry(3, (15, 15), (5, 5), 1, (2, 2)),
            geometry(2, (7, 7), (3, 3), 1, (1, 1)),
            geometry(2, (5, 6), (1, 1), 1, (0, 0)),
            geometry(2, (3, 9), (1, 5), 1, (1, 2)),
            geometry(3, (35, 35), (11, 11), 4, (2, 2)),
            geometry(3, (21, 19), (11, 11), 4, (5, 5)),
            geometry(2, (8, 6), (3, 3), 1, (0, 0)),
            geometry(2, (9, 7), (3, 2), 2, (1, 1)),
        ]
    }

    #[test]
    fn im2col_matches_its_definition() {
        let mut rng = rng_for(7, "im2col");
        for g in shapes() {
            let x: Vec<f64> = (0..g.image()).map(|_| rng.random_range(-1.0..1.0)).collect();
            // Stale values in the buffer must all be overwritten.
            let mut col = vec![f64::NAN; g.patch() * g.positions()];
            im2col(&g, &x, &mut col);
            assert_eq!(col, im2col_by_definition(&g, &x), "{g:?}");
        }
    }

    #[test]
    fn im2row_is_the_transpose_of_im2col() {
        let mut rng = rng_for(10, "im2row");
        for g in shapes() {
            let x: Vec<f64> = (0..g.image()).map(|_| rng.random_range(-1.0..1.0)).collect();
            let col = im2col_by_definition(&g, &x);
            // All positions, then the positions from the second on (a block that starts
            // mid-row), each written in full into a buffer of stale values.
            for first in [0, 1.min(g.positions() - 1)] {
                let mut rows = vec![f64::NAN; g.patch() * g.positions()];
                im2row(&g, &x, first..g.positions(), &mut rows);
                for (i, row) in rows.chunks_exact(g.patch()).take(g.positions() - first).enumerate() {
                    let want: Vec<f64> = (0..g.patch()).map(|r| col[r * g.positions() + first + i]).collect();
                    assert_eq!(row, &want[..], "{g:?} position {}", first + i);
                }
            }
        }
    }

    #[test]
    fn strided_im2col_and_col2im_touch_only_their_block() {
        // One image's block, columns 3..3 + p of a matrix with rows p + 7 apart: written in
        // full, nothing else changed; col2im reads the same block back.
        let mut rng = rng_for(9, "im2col-strided");
        for g in shapes() {
            let (p, ld) = (g.positions(), g.positions() + 7);
            let x: Vec<f64> = (0..g.image()).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut col = vec![f64::NAN; g.patch() * ld];
            im2col_strided(&g, &x, &mut col[3..], ld);
            let want = im2col_by_definition(&g, &x);
            for (row, values) in col.chunks_exact(ld).enumerate() {
                assert_eq!(&values[3..3 + p], &want[row * p..][..p], "{g:?} row {row}");
                assert!(values[..3].iter().chain(&values[3 + p..]).all(|v| v.is_nan()), "{g:?} row {row}");
            }
            let (mut strided, mut packed) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            col2im(&g, &mut col[3..], ld, &mut strided);
            col2im(&g, &mut want.clone(), p, &mut packed);
            assert_eq!(strided, packed, "{g:?}");
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> = <x, col2im(c)> for every x and c.
        let mut rng = rng_for(8, "col2im");
        for g in shapes() {
            let x: Vec<f64> = (0..g.image()).map(|_| rng.random_range(-1.0..1.0)).collect();
            let c: Vec<f64> = (0..g.patch() * g.positions()).map(|_| rng.random_range(-1.0..1.0)).collect();
            let mut col = vec![0.0; c.len()];
            im2col(&g, &x, &mut col);
            let mut dx = vec![0.0; x.len()];
            col2im(&g, &mut c.clone(), g.positions(), &mut dx);
            let lhs: f64 = col.iter().zip(&c).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0), "{g:?}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn col2im_of_same_width_layers_equals_the_row_by_row_loop_to_the_bit() {
        // Onto a random input gradient (col2im adds), from a column matrix with values in the
        // entries that read the padding too (they must not be added anywhere).
        let mut rng = rng_for(11, "col2im-same-width");
        for g in shapes().into_iter().filter(|g| g.stride == (1, 1) && g.ow == g.w) {
            let c: Vec<f64> = (0..g.patch() * g.positions()).map(|_| rng.random_range(-1.0..1.0)).collect();
            let dx: Vec<f64> = (0..g.image()).map(|_| rng.random_range(-1.0..1.0)).collect();
            let (mut fast, mut by_rows) = (dx.clone(), dx);
            col2im(&g, &mut c.clone(), g.positions(), &mut fast);
            col2im_rows(&g, &c, g.positions(), &mut by_rows);
            assert_eq!(fast, by_rows, "{g:?}");
        }
    }
}
