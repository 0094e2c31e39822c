//! A convolution with stride s > 1 rewritten as one with stride 1, so that Winograd's algorithm
//! ([`super::winograd`]) can run it: each s x s block of the zero-padded input becomes s^2
//! channels of one position ("space to depth"), and the kernel likewise, padded with zeros to
//! a whole number of blocks.
//!
//! Output (oy, ox) of the strided convolution reads padded input rows `oy * s + ky`, `ky <
//! k`; with `ky = ky' * s + dy` that is block row `oy + ky'` at offset `dy`, so the output is
//! the stride-1 convolution of the block image (c s^2 channels) by the block kernel (`ceil(k /
//! s)` on a side), with no padding. AlexNet's first layer (11x11 kernels, stride 4, 3
//! channels, 31x31 output) becomes a 3x3 convolution of 48 channels at 33x33, which F(4x4, 3x3)
//! runs with 3.1x fewer multiplies than im2col, though the block kernel (12x12) is 19% larger.
//! With 48 channels in and out the transforms weigh as much as the GEMMs, so the layer gains
//! less: at batch 128 its forward 20% and backward 7% faster than im2row + GEMM (best of 15,
//! alternating), the training step about 4%.
//!
//! Written by hand: Candle has no space-to-depth op, and this one is fused into the
//! channels-last copy that Winograd's input transform makes of each image (the gradient's way
//! back still goes through a planar block image).

use candle_core::WithDType;

use super::geometry::ConvGeometry;

/// A strided convolution `outer` as the stride-1 convolution `inner` of its block images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpaceToDepth {
    outer: ConvGeometry,
    /// The stride-1 convolution of the block images, with the same batch and output.
    pub(crate) inner: ConvGeometry,
    /// The side of a block: the stride.
    s: usize,
}

impl SpaceToDepth {
    /// The rewrite of `g`, for equal strides above 1.
    pub(crate) fn of(g: &ConvGeometry) -> Option<Self> {
        let s = g.stride.0;
        if s < 2 || g.stride.1 != s {
            return None;
        }
        let (kh, kw) = (g.kh.div_ceil(s), g.kw.div_ceil(s));
        let (h, w) = (g.oh + kh - 1, g.ow + kw - 1);
        let inner = ConvGeometry { c: g.c * s * s, h, w, kh, kw, stride: (1, 1), padding: (0, 0), ..*g };
        Some(Self { outer: *g, inner, s })
    }

    /// The outer channel and the offset in its blocks, (rows, columns), that block channel
    /// `channel` holds: channel `(ci * s + dy) * s + dx`.
    fn block_channel(&self, channel: usize) -> (usize, (usize, usize)) {
        let s = self.s;
        (channel / (s * s), (channel / s % s, channel % s))
    }

    /// The same rewrite for a batch of any size.
    pub(crate) fn for_any_batch(self) -> Self {
        let unbatched = |g: ConvGeometry| ConvGeometry { b: 0, ..g };
        Self { outer: unbatched(self.outer), inner: unbatched(self.inner), ..self }
    }

    /// Values of one outer image.
    pub(crate) fn outer_image(&self) -> usize {
        self.outer.image()
    }

    /// Calls `f(block row, outer row, columns, offset)` for every row of one block image: `block
    /// row` is its start in the block image, `outer row` that of the outer image's row it reads
    /// (`None` in the padding), `columns` the block columns x that read inside the input and
    /// `offset` the column offset, so that block column x reads outer column `x * s + offset -
    /// pw`.
    #[inline]
    fn for_each_row(&self, mut f: impl FnMut(usize, Option<usize>, (usize, usize), usize)) {
        let (g, s, inner) = (&self.outer, self.s, &self.inner);
        for channel in 0..inner.c {
            let (ci, (dy, dx)) = self.block_channel(channel);
            let lo = g.padding.1.saturating_sub(dx).div_ceil(s).min(inner.w);
            let hi = (g.w + g.padding.1).saturating_sub(dx).div_ceil(s).clamp(lo, inner.w);
            for y in 0..inner.h {
                let iy = (y * s + dy).checked_sub(g.padding.0).filter(|&iy| iy < g.h);
                f((channel * inner.h + y) * inner.w, iy.map(|iy| (ci * g.h + iy) * g.w), (lo, hi), dx);
            }
        }
    }

    /// The block image of the outer image `x` (c, h, w), into `blocks` (c s^2, h', w'): the
    /// planar form of [`Self::input_channels_last`], which the tests check it against.
    #[cfg(test)]
    fn input<T: WithDType>(&self, x: &[T], blocks: &mut [T]) {
        let (s, pw) = (self.s, self.outer.padding.1);
        self.for_each_row(|block_row, outer_row, (lo, hi), offset| {
            let row = &mut blocks[block_row..][..self.inner.w];
            row.fill(T::zero());
            if let Some(outer_row) = outer_row {
                for (column, value) in row.iter_mut().enumerate().take(hi).skip(lo) {
                    *value = x[outer_row + column * s + offset - pw];
                }
            }
        });
    }

    /// The block image of the outer image `x` (c, h, w) channels-last: the c s^2 values of
    /// block position (y, x) go to `dst[(y * cols + x) * c s^2..]` (rows of `cols`
    /// positions), every position of the block image written, nothing else. Channels
    /// `(ci * s + dy) * s ..+ s` of a position are `s` consecutive values of one input row,
    /// so this is one pass of short copies over `x` where the planar block image and its
    /// channels-last copy were two passes of single values.
    pub(crate) fn input_channels_last<T: WithDType>(&self, x: &[T], cols: usize, dst: &mut [T]) {
        // A run of a known length is a move or two; of a length known only at run time, a call
        // to `memcpy` (however it is written), which took 2.8% of a training step.
        match self.s {
            2 => self.copy_runs::<T, 2>(x, cols, dst),
            3 => self.copy_runs::<T, 3>(x, cols, dst),
            4 => self.copy_runs::<T, 4>(x, cols, dst),
            _ => self.copy_runs::<T, 0>(x, cols, dst),
        }
    }

    /// [`Self::input_channels_last`] for blocks of side `S`, or of any side when `S` is 0.
    fn copy_runs<T: WithDType, const S: usize>(&self, x: &[T], cols: usize, dst: &mut [T]) {
        let (g, depth) = (&self.outer, self.inner.c);
        let s = if S > 0 { S } else { self.s };
        let (ph, pw) = g.padding;
        for y in 0..self.inner.h {
            let positions = &mut dst[y * cols * depth..][..self.inner.w * depth];
            for (ci, dy) in (0..g.c).flat_map(|ci| (0..s).map(move |dy| (ci, dy))) {
                let first = (ci * s + dy) * s;
                let input_row = (y * s + dy).checked_sub(ph).filter(|&iy| iy < g.h);
                let row = input_row.map(|iy| &x[(ci * g.h + iy) * g.w..][..g.w]);
                for (bx, position) in positions.chunks_exact_mut(depth).enumerate() {
                    let to = &mut position[first..][..s];
                    match row {
                        // The whole run inside the row: the common case.
                        Some(row) if bx * s >= pw && bx * s + s <= g.w + pw => {
                            to.copy_from_slice(&row[bx * s - pw..][..s]);
                        }
                        Some(row) => {
                            for (dx, value) in to.iter_mut().enumerate() {
                                let column = (bx * s + dx).checked_sub(pw);
                                *value = column.and_then(|c| row.get(c)).copied().unwrap_or(T::zero());
                            }
                        }
                        None => to.fill(T::zero()),
                    }
                }
            }
        }
    }

    /// The adjoint of [`Self::input_channels_last`] (of the planar block image): adds the
    /// gradient of a block image to the outer image's, `dx` (c, h, w).
    pub(crate) fn add_input_grad<T: WithDType>(&self, d_blocks: &[T], dx: &mut [T]) {
        let (s, pw) = (self.s, self.outer.padding.1);
        self.for_each_row(|block_row, outer_row, (lo, hi), offset| {
            if let Some(outer_row) = outer_row {
                for (column, &value) in d_blocks[block_row..][..self.inner.w].iter().enumerate().take(hi).skip(lo) {
                    dx[outer_row + column * s + offset - pw] += value;
                }
            }
        });
    }

    /// For each value (o, block channel, ky', kx') of the block kernel: its index, and the
    /// outer kernel's index of the value it holds (`None` past the kernel, a zero).
    fn weight_places(&self) -> impl Iterator<Item = (usize, Option<usize>)> + '_ {
        let (g, s, inner) = (&self.outer, self.s, &self.inner);
        let taps = inner.kh * inner.kw;
        (0..g.cout * inner.c * taps).map(move |at| {
            let (o, channel, ky, kx) =
                (at / (inner.c * taps), at / taps % inner.c, at / inner.kw % inner.kh, at % inner.kw);
            let (ci, (dy, dx)) = self.block_channel(channel);
            let (y, x) = (ky * s + dy, kx * s + dx);
            (at, (y < g.kh && x < g.kw).then(|| ((o * g.c + ci) * g.kh + y) * g.kw + x))
        })
    }

    /// The block kernel (cout, c s^2, kh', kw') of the outer weight `w` (cout, c, kh, kw).
    pub(crate) fn weight<T: WithDType>(&self, w: &[T]) -> Vec<T> {
        self.weight_places().map(|(_, from)| from.map_or(T::zero(), |from| w[from])).collect()
    }

    /// The outer weight's gradient from the block kernel's, `dw_blocks`: the entries past
    /// the kernel are dropped.
    pub(crate) fn weight_grad<T: WithDType>(&self, dw_blocks: &[T]) -> Vec<T> {
        let mut dw = vec![T::zero(); self.outer.cout * self.outer.c * self.outer.kh * self.outer.kw];
        for (at, to) in self.weight_places() {
            if let Some(to) = to {
                dw[to] = dw_blocks[at];
            }
        }
        dw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A strided convolution's geometry with input (c, h, w), k x k kernels, stride s and
    /// padding p.
    fn geometry((c, h, w): (usize, usize, usize), k: usize, s: usize, p: usize) -> ConvGeometry {
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        ConvGeometry { b: 1, c, h, w, cout: 2, kh: k, kw: k, stride: (s, s), padding: (p, p), oh, ow }
    }

    #[test]
    fn the_channels_last_block_image_is_the_planar_one_transposed() {
        // AlexNet's first layer, and odd sizes where blocks run past the input on each side.
        for (input, k, s, p) in [((3, 128, 128), 11, 4, 2), ((2, 17, 13), 7, 3, 3), ((3, 9, 10), 5, 2, 1)] {
            let g = geometry(input, k, s, p);
            let blocks = SpaceToDepth::of(&g).expect("a strided convolution");
            let inner = blocks.inner;
            let x: Vec<f64> = (0..g.image()).map(|i| (i as f64 * 0.37).sin() + 2.0).collect();
            let mut planar = vec![f64::NAN; inner.image()];
            blocks.input(&x, &mut planar);
            let cols = inner.w + 3;
            let mut last = vec![f64::NAN; inner.h * cols * inner.c];
            blocks.input_channels_last(&x, cols, &mut last);
            for (y, row) in last.chunks_exact(cols * inner.c).enumerate() {
                for (bx, position) in row.chunks_exact(inner.c).enumerate() {
                    for (channel, &value) in position.iter().enumerate() {
                        if bx < inner.w {
                            let want = planar[(channel * inner.h + y) * inner.w + bx];
                            assert_eq!(value, want, "{g:?}: channel {channel} at ({y}, {bx})");
                        } else {
                            assert!(value.is_nan(), "{g:?}: wrote past the block image at ({y}, {bx})");
                        }
                    }
                }
            }
            assert!(last.contains(&0.0), "{g:?}: the case must read padding");
        }
    }
}
