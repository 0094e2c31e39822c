//! Convolutions with stride 1 by Winograd's minimal filtering (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", CVPR 2016): F(4x4, 3x3) or F(2x2, 3x3) for
//! 3x3 kernels and F(3x3, 5x5) or F(2x2, 5x5) for 5x5 ones, forward and backward, for one
//! group of images at a time (see [`super::groups`]).
//!
//! The output is cut into m x m tiles; each reads an a x a tile of the zero-padded input, a =
//! m + r - 1 for r x r kernels. With the input tile transformed to `V = B^T d B` and the kernel
//! to `U = G g G^T`, the output tile is `A^T (sum over input channels of U ⊙ V) A`: for each
//! of the a^2 transformed positions `xi` that sum is one GEMM, run transposed as `M_xi^T
//! (tiles x cout) = V_xi^T (tiles x c) * U_xi^T (c x cout)` so that a tile's channels are
//! contiguous (see [`transform_input`]). Multiplies per channel pair at AlexNet's maps, against
//! im2col + GEMM's:
//! - F(4x4, 3x3): 36 per 16 outputs against 144, 4x fewer; at the 7x7 maps, whose 2x2 grid
//!   of tiles covers 8x8 outputs, 144 against 441, 3.06x fewer.
//! - F(2x2, 3x3): 16 per 4 outputs, 2.25x fewer (1.72x at 7x7). Its transforms only add,
//!   subtract and halve, so that f32 keeps its accuracy; it runs where F(4x4, 3x3) would not
//!   multiply less (maps of 5x5 and smaller).
//! - F(3x3, 5x5): 49 per 9 outputs against 225, 4.6x fewer; at the 15x15 map, whose 5x5 grid
//!   of tiles covers it exactly, 1225 against 5625.
//! - F(2x2, 5x5): 36 per 4 outputs against 100, 2.78x fewer (2.44x at 15x15, an 8x8 grid of
//!   tiles covering 16x16); it runs where F(3x3, 5x5) would not multiply less (maps of 4x4
//!   outputs and some smaller). At features.3, F(3x3, 5x5) runs the forward pass in 20% less
//!   time than F(2x2, 5x5) and the backward pass in 30% less (batch 32 and 128, alternating).
//!
//! The six-point algorithms evaluate at 0, 1, -1, 1/2, -2 and infinity (see
//! [`SIX_POINT_BT`]), F(3x3, 5x5) at 0, 1, -1, -2, -1/2, 3/2 and infinity ([`F35`]); their
//! f32 error, relative to the output's scale, is 3.4e-6 (F(4x4, 3x3) at conv2's shape), 4.0e-6
//! (F(3x3, 5x5) at features.3's) and 1.6e-6 (F(2x2, 5x5) at features.3's channels), against
//! direct convolution's 4e-7 to 7e-7 (`conv2d`'s tests bound both). cuDNN and oneDNN use
//! F(4x4, 3x3) likewise.
//!
//! The backward pass is the exact adjoint of those steps:
//! - `dM = A dY A^T` per tile (outputs beyond the map have no gradient);
//! - the weight gradient `dU_xi += dM_xi * V_xi^T`, turned into `dW = G^T dU G` at the end;
//! - the input gradient `dV_xi = U_xi^T * dM_xi`, then `B dV B^T` added to each input tile.
//!
//! Written by hand: no Rust crate offers Winograd convolution, and Candle's CPU backend
//! convolves by im2col only.

use std::marker::PhantomData;

use candle_core::WithDType;
use rayon::prelude::*;

use super::geometry::ConvGeometry;
use super::space_to_depth::SpaceToDepth;
use crate::ops::cpu::gemm::{matmul, MatRef};
use crate::ops::cpu::scratch::scratch;
use crate::ops::pool::max_pool2d::{MaxPool2dParams, PooledGrad};

/// The Winograd algorithm a convolution runs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    /// F(2x2, 3x3), for 3x3 kernels.
    F2x3,
    /// F(4x4, 3x3), for 3x3 kernels.
    F4x3,
    /// F(2x2, 5x5), for 5x5 kernels.
    F2x5,
    /// F(3x3, 5x5), for 5x5 kernels.
    F3x5,
}

/// `$body` with the type `$w` standing for the [`Minimal`] algorithm `$algorithm` names.
macro_rules! by_algorithm {
    ($algorithm:expr, $w:ident => $body:expr) => {
        match $algorithm {
            Algorithm::F2x3 => {
                type $w = F23;
                $body
            }
            Algorithm::F4x3 => {
                type $w = F43;
                $body
            }
            Algorithm::F2x5 => {
                type $w = F25;
                $body
            }
            Algorithm::F3x5 => {
                type $w = F35;
                $body
            }
        }
    };
}

impl Algorithm {
    /// The algorithm the convolution `g` runs by, if any: 3x3 or 5x5 kernels with stride 1,
    /// any padding. Each kernel size runs by its larger tiles where they multiply less (3x3
    /// at 7x7: F(4x4, 3x3), 144 multiplies per channel pair against 256, 15-30% faster; 5x5
    /// at 15x15: F(3x3, 5x5), 1225 against 2304), else by the smaller, which are also the more
    /// accurate.
    pub(crate) fn of(g: &ConvGeometry) -> Option<Self> {
        match (g.kh, g.kw, g.stride) {
            (3, 3, (1, 1)) if multiplies::<F43>(g) < multiplies::<F23>(g) => Some(Self::F4x3),
            (3, 3, (1, 1)) => Some(Self::F2x3),
            (5, 5, (1, 1)) if multiplies::<F35>(g) < multiplies::<F25>(g) => Some(Self::F3x5),
            (5, 5, (1, 1)) => Some(Self::F2x5),
            _ => None,
        }
    }

    /// Tiles a group of images should reach at least: the rows of each of its GEMMs. 96
    /// makes groups of 24 images at 7x7 (4 tiles each) and of two at the first layer's
    /// 32x32 block images (64 each). F(3x3, 5x5) takes 48, groups of two images at 15x15
    /// (25 tiles each), whose transformed input and output (1.7 MB) fit a core's 2 MB L2
    /// cache: against groups of four, its forward pass ran 5-15% faster (eight pairs) and its
    /// backward pass faster in four pairs, slower in two (features.3, batch 32 and 128,
    /// alternating in one process). At 7x7, groups of 4 to 24 images ran equally fast, and
    /// groups cut to fit 2 MB made the forward passes 6-15% slower.
    pub(crate) fn group_tiles(self) -> usize {
        match self {
            Self::F3x5 => 48,
            Self::F2x3 | Self::F4x3 | Self::F2x5 => 96,
        }
    }

    /// Tiles of one image of `g`.
    pub(crate) fn tiles_per_image(self, g: &ConvGeometry) -> usize {
        by_algorithm!(self, W => tiles_per_image::<W>(g))
    }

    /// Values of the scratch buffer [`Self::forward_group`] and [`Self::backward_group`] need
    /// for a group of `images` images: the transformed input (or its gradient) and output (or
    /// its gradient).
    pub(crate) fn scratch_len(self, g: &ConvGeometry, images: usize) -> usize {
        by_algorithm!(self, W => {
            let tiles = images * tiles_per_image::<W>(g);
            W::XI * (slab(tiles * g.c) + slab(tiles * g.cout))
        })
    }

    /// Values of the transformed weight or its gradient, (a^2, cout, c).
    pub(crate) fn transformed_weight_len(self, g: &ConvGeometry) -> usize {
        by_algorithm!(self, W => W::XI * g.cout * g.c)
    }

    /// The transformed weight `U = G w G^T` (a^2 values per (output, input) channel pair),
    /// laid out (a^2, c, cout) when `transposed` (the right operand of the forward GEMM), else
    /// (a^2, cout, c) (the input gradient's). Computed for [`LANES`] channels at a time,
    /// compiled for the CPU's vector instructions: one pair at a time, the weight transforms
    /// cost the forward pass 30-40% at batch 32.
    /// The rows are spread over rayon's threads: on one, the weight transforms of the 7x7
    /// layers took 17% of their forward pass at batch 32.
    pub(crate) fn transform_weights<T: WithDType>(self, g: &ConvGeometry, w: &[T], transposed: bool) -> Vec<T> {
        by_algorithm!(self, W => transform_weights::<T, W>(g, w, transposed))
    }

    /// The gradient of the weight (cout, c, r, r) from `du_t`, the gradient of the transformed
    /// weight transposed (a^2, c, cout): `dW = G^T dU G` per channel pair, blocks of
    /// [`LANES`] output channels spread over rayon's threads.
    pub(crate) fn weight_grad<T: WithDType>(self, g: &ConvGeometry, du_t: &[T]) -> Vec<T> {
        by_algorithm!(self, W => weight_grad::<T, W>(g, du_t))
    }

    /// `relu?(conv(x, w) + bias)` of the group's `images` images `x` into `out` (see
    /// [`Output`]), given `u_t` = [`Self::transform_weights`] transposed and `scratch` of
    /// [`Self::scratch_len`].
    pub(crate) fn forward_group<T: WithDType>(
        self,
        g: &ConvGeometry,
        (x, u_t, bias): (Images<'_, T>, &[T], &[T]),
        (images, relu): (usize, bool),
        (scratch, parallel): (&mut [T], bool),
        out: Output<'_, T>,
    ) {
        by_algorithm!(self, W => forward_group::<T, W>(g, (x, u_t, bias), (images, relu), (scratch, parallel), out))
    }

    /// The backward pass of one group of `images` images from its output gradient `dy` (see
    /// [`OutputGrad`]): adds `dU^T` to `du_t` (a^2, c, cout) when given, and writes the
    /// input gradient to `dx` (images, c, h, w) when given, with `u` from
    /// [`Self::transform_weights`] (empty without `dx`) and `scratch` of [`Self::scratch_len`].
    pub(crate) fn backward_group<T: WithDType>(
        self,
        g: &ConvGeometry,
        (x, u, dy): (Images<'_, T>, &[T], OutputGrad<'_, T>),
        images: usize,
        (du_t, dx): (Option<&mut [T]>, Option<&mut [T]>),
        (scratch, parallel): (&mut [T], bool),
    ) {
        by_algorithm!(self, W => backward_group::<T, W>(g, (x, u, dy), images, (du_t, dx), (scratch, parallel)))
    }
}

/// The longest line of a transformed tile (F(3x3, 5x5)'s 7).
const MAX_ALPHA: usize = 7;

/// One line of a tile along either axis; a transform reads and writes only as many of its
/// values as its side has.
type Line<T> = [T; MAX_ALPHA];

/// Channels transformed side by side, one per lane of a [`Block`]: the same adds and
/// subtracts for every lane, which the compiler turns into vector instructions (one tile of
/// one channel at a time, the transforms took longer than the GEMMs).
const LANES: usize = 16;

/// Copies the first `len` of `src` into `lanes`, the rest left as they are.
///
/// A whole block is one fixed-size copy, which the compiler turns into a vector load. A
/// partial block (never at AlexNet's channel counts) is copied value by value under a
/// condition: written as a copy of `len` values, it was merged with the whole block's into one
/// call to `memcpy` of either length, 13% of the 5x5 layer's time.
#[inline(always)]
fn load_lanes<T: Copy>(src: &[T], len: usize, lanes: &mut [T; LANES]) {
    if len == LANES {
        lanes.copy_from_slice(&src[..LANES]);
    } else {
        for (l, (lane, &value)) in lanes.iter_mut().zip(src).enumerate() {
            if l < len {
                *lane = value;
            }
        }
    }
}

/// Writes the first `len` of `lanes` to `dst` (as [`load_lanes`] reads them).
#[inline(always)]
fn store_lanes<T: Copy>(lanes: &[T; LANES], len: usize, dst: &mut [T]) {
    if len == LANES {
        dst[..LANES].copy_from_slice(lanes);
    } else {
        for (l, (d, &value)) in dst.iter_mut().zip(lanes).enumerate() {
            if l < len {
                *d = value;
            }
        }
    }
}

/// A transform's coefficients: row i, column j at `[i][j]`, within the largest tile's sides.
type Matrix = [[f64; MAX_ALPHA]; MAX_ALPHA];

/// Winograd's F(m x m, r x r) (Toom-Cook): the matrices of its kernel, input and output
/// transforms, each applied along one axis of a tile, then the other (see
/// [`transform_block`]), or transposed for the backward pass.
trait Minimal {
    /// The side of an output tile, m.
    const M: usize;
    /// The side of the kernel, r.
    const R: usize;
    /// The side of a transformed tile, a = m + r - 1.
    const ALPHA: usize = Self::M + Self::R - 1;
    /// Values of a transformed tile: one GEMM each.
    const XI: usize = Self::ALPHA * Self::ALPHA;
    /// `G` (a x r): the kernel transform.
    const G: Matrix;
    /// `B^T` (a x a): the input transform.
    const BT: Matrix;
    /// `A^T` (m x a): the output transform.
    const AT: Matrix;
}

/// F(2x2, 3x3): evaluation at 0, 1, -1 and infinity. Its transforms only add, subtract and
/// halve.
struct F23;

impl Minimal for F23 {
    const M: usize = 2;
    const R: usize = 3;
    const G: Matrix = padded([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]]);
    const BT: Matrix =
        padded([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]]);
    const AT: Matrix = padded([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]]);
}

/// `B^T` of the algorithms with six points, 0, 1, -1, 1/2, -2 and infinity ([`F43`], [`F25`]).
/// Among the choices of two more points beside 0, 1, -1 (2 and -2 as in Lavin and Gray's
/// F(4x4, 3x3), 1/2 and -1/2, 2 and 1/2, 1/2 and -2), 1/2 and -2 gave the smallest f32 error, 2.5
/// times smaller than 2 and -2 for both algorithms (a simulation in numpy; Barabasz et al.,
/// "Error Analysis and Improving the Accuracy of Winograd Convolution", 2020, find the same).
/// Every entry is exact in binary floating point.
const SIX_POINT_BT: Matrix = padded([
    [1.0, -1.5, -2.0, 1.5, 1.0, 0.0],
    [0.0, -1.0, 0.5, 2.5, 1.0, 0.0],
    [0.0, 1.0, -2.5, 0.5, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 0.5, -1.0, -0.5, 1.0, 0.0],
    [0.0, 1.0, -1.5, -2.0, 1.5, 1.0],
]);

/// F(4x4, 3x3) at the six points of [`SIX_POINT_BT`].
struct F43;

impl Minimal for F43 {
    const M: usize = 4;
    const R: usize = 3;
    const G: Matrix = padded([
        [1.0, 0.0, 0.0],
        [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
        [-1.0 / 3.0, 1.0 / 3.0, -1.0 / 3.0],
        [-16.0 / 15.0, -8.0 / 15.0, -4.0 / 15.0],
        [1.0 / 15.0, -2.0 / 15.0, 4.0 / 15.0],
        [0.0, 0.0, 1.0],
    ]);
    const BT: Matrix = SIX_POINT_BT;
    const AT: Matrix = padded([
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 0.5, -2.0, 0.0],
        [0.0, 1.0, 1.0, 0.25, 4.0, 0.0],
        [0.0, 1.0, -1.0, 0.125, -8.0, 1.0],
    ]);
}

/// F(2x2, 5x5) at the six points of [`SIX_POINT_BT`].
struct F25;

impl Minimal for F25 {
    const M: usize = 2;
    const R: usize = 5;
    const G: Matrix = padded([
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
        [-1.0 / 3.0, 1.0 / 3.0, -1.0 / 3.0, 1.0 / 3.0, -1.0 / 3.0],
        [-16.0 / 15.0, -8.0 / 15.0, -4.0 / 15.0, -2.0 / 15.0, -1.0 / 15.0],
        [1.0 / 15.0, -2.0 / 15.0, 4.0 / 15.0, -8.0 / 15.0, 16.0 / 15.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ]);
    const BT: Matrix = SIX_POINT_BT;
    const AT: Matrix = padded([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 0.5, -2.0, 1.0]]);
}

/// F(3x3, 5x5) at 0, 1, -1, -2, -1/2, 3/2 and infinity: 49 multiplies per 9 outputs against
/// 225, 4.6x fewer; at the 15x15 map, a 5x5 grid of tiles covering it exactly, 1225 per
/// channel pair against F(2x2, 5x5)'s 2304, and a transformed input and output 47% smaller.
/// Of the sets of three points beside 0, 1 and -1 from +-2, +-1/2, +-1/4, +-4, +-3/2 and
/// +-2/3, this one gave the smallest f32 error (a simulation in numpy at features.3's shape:
/// 3.3e-6 of the output's scale, against 1.8e-6 for F(2x2, 5x5) and 2.7e-6 for F(4x4, 3x3)
/// at 7x7); every entry of `B^T` and `A^T` is exact in binary floating point. The matrices
/// are Toom-Cook's (`A^T` the powers of the points, `G` those over the products of the
/// points' differences, `B^T` solved from them), as for [`F25`].
struct F35;

impl Minimal for F35 {
    const M: usize = 3;
    const R: usize = 5;
    const G: Matrix = padded([
        [2.0 / 3.0, 0.0, 0.0, 0.0, 0.0],
        [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
        [2.0 / 5.0, -2.0 / 5.0, 2.0 / 5.0, -2.0 / 5.0, 2.0 / 5.0],
        [-2.0 / 63.0, 4.0 / 63.0, -8.0 / 63.0, 16.0 / 63.0, -32.0 / 63.0],
        [-8.0 / 9.0, 4.0 / 9.0, -2.0 / 9.0, 1.0 / 9.0, -1.0 / 18.0],
        [8.0 / 105.0, 4.0 / 35.0, 6.0 / 35.0, 9.0 / 35.0, 27.0 / 70.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ]);
    const BT: Matrix = [
        [1.5, 2.75, -2.5, -3.75, 1.0, 1.0, 0.0],
        [0.0, -1.5, -4.25, -1.75, 2.0, 1.0, 0.0],
        [0.0, 1.5, 1.25, -3.75, 0.0, 1.0, 0.0],
        [0.0, 0.75, 1.0, -1.75, -1.0, 1.0, 0.0],
        [0.0, 3.0, -0.5, -4.0, 0.5, 1.0, 0.0],
        [0.0, -1.0, -2.5, 0.0, 2.5, 1.0, 0.0],
        [0.0, 1.5, 2.75, -2.5, -3.75, 1.0, 1.0],
    ];
    const AT: Matrix = padded([
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, -2.0, -0.5, 1.5, 0.0],
        [0.0, 1.0, 1.0, 4.0, 0.25, 2.25, 1.0],
    ]);
}

/// A matrix of `ROWS` x `COLUMNS` values within a [`Matrix`], zeros around it.
const fn padded<const ROWS: usize, const COLUMNS: usize>(m: [[f64; COLUMNS]; ROWS]) -> Matrix {
    let mut full = [[0.0; MAX_ALPHA]; MAX_ALPHA];
    let mut i = 0;
    while i < ROWS {
        let mut j = 0;
        while j < COLUMNS {
            full[i][j] = m[i][j];
            j += 1;
        }
        i += 1;
    }
    full
}

/// `m * x` for the `rows` x `columns` matrix `m`, or `m^T * x` when `transposed`. The
/// coefficients are constants once inlined: zeros drop out, ones and minus ones are adds and
/// subtracts, so that the transforms cost what they would written out by hand.
#[inline(always)]
fn multiply<T: WithDType>(m: &Matrix, (rows, columns): (usize, usize), transposed: bool, x: Line<T>) -> Line<T> {
    let (outputs, inputs) = if transposed { (columns, rows) } else { (rows, columns) };
    let mut y = [T::zero(); MAX_ALPHA];
    for (i, y) in y.iter_mut().enumerate().take(outputs) {
        let mut sum: Option<T> = None;
        for (j, &x) in x.iter().enumerate().take(inputs) {
            let coefficient = if transposed { m[j][i] } else { m[i][j] };
            sum = match (sum, coefficient) {
                (_, 0.0) => sum,
                (None, 1.0) => Some(x),
                (Some(sum), 1.0) => Some(sum + x),
                (Some(sum), -1.0) => Some(sum - x),
                (None, c) => Some(x * T::from_f64(c)),
                (Some(sum), c) => Some(sum + x * T::from_f64(c)),
            };
        }
        *y = sum.unwrap_or(T::zero());
    }
    y
}

/// Values set aside for one of the a^2 matrices (a "slab") of the transformed input or output
/// of a group holding `values`: one [`LANES`] block more than a whole number of blocks, so
/// that consecutive slabs start one cache line apart in the cache's sets. Slabs of a power of
/// two times 4 KB (64 tiles of 128 channels: 32 KB) put a tile's 36 values in one set of the
/// L1 cache, which holds 12, so that every transform missed it.
fn slab(values: usize) -> usize {
    values.next_multiple_of(LANES) + LANES
}

/// The grid of output tiles of one image, (rows, columns).
fn tile_grid<W: Minimal>(g: &ConvGeometry) -> (usize, usize) {
    (g.oh.div_ceil(W::M), g.ow.div_ceil(W::M))
}

/// Multiplies per (input, output) channel pair of one image by `W`.
fn multiplies<W: Minimal>(g: &ConvGeometry) -> usize {
    tiles_per_image::<W>(g) * W::XI
}

/// Tiles of one image.
fn tiles_per_image<W: Minimal>(g: &ConvGeometry) -> usize {
    let (th, tw) = tile_grid::<W>(g);
    th * tw
}

/// The zero-padded input plane every tile reads from: the input at (ph, pw), zeros around it,
/// large enough for the last row and column of tiles.
fn padded_plane<W: Minimal>(g: &ConvGeometry) -> (usize, usize) {
    let (th, tw) = tile_grid::<W>(g);
    (W::M * th + W::R - 1, W::M * tw + W::R - 1)
}

/// One tile of up to 7x7 values in [`LANES`] channels: value (r, s) of channel l of a tile
/// with `columns` columns at `[r * columns + s][l]`.
type Block<T> = OnCacheLines<[[T; LANES]; MAX_ALPHA * MAX_ALPHA]>;

/// `A` starting on a 64-byte cache line, so that each of its [`LANES`] blocks of f32 is one
/// line. The transforms' blocks live on the stack, where an array of f32 is aligned to 4
/// bytes only: misaligned by 8 bytes, one such block made a tile's input transform 25-35%
/// slower (a throwaway benchmark of its loads, transform and stores at conv2's shape; whole
/// training steps and inference, aligned against not, were equal within the machine's noise).
#[repr(C, align(64))]
struct OnCacheLines<A>(A);

impl<A> std::ops::Deref for OnCacheLines<A> {
    type Target = A;

    #[inline(always)]
    fn deref(&self) -> &A {
        &self.0
    }
}

impl<A> std::ops::DerefMut for OnCacheLines<A> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut A {
        &mut self.0
    }
}

/// One of a [`Minimal`] algorithm's transforms, applied along both axes of a tile by
/// [`transform_block`].
#[derive(Debug, Clone, Copy)]
enum Step {
    Kernel,
    KernelAdjoint,
    Input,
    InputAdjoint,
    Output,
    OutputAdjoint,
}

impl Step {
    /// The side of the tile the step reads, and of the one it writes.
    #[inline(always)]
    fn sides<W: Minimal>(self) -> (usize, usize) {
        match self {
            Self::Kernel => (W::R, W::ALPHA),
            Self::KernelAdjoint => (W::ALPHA, W::R),
            Self::Input | Self::InputAdjoint => (W::ALPHA, W::ALPHA),
            Self::Output => (W::ALPHA, W::M),
            Self::OutputAdjoint => (W::M, W::ALPHA),
        }
    }

    /// The transform along one axis of `W`'s tile. A direct call, so that it is inlined:
    /// transforms passed as functions (`impl Fn`) were called out of line, compiled without
    /// the vector instructions of their caller.
    #[inline(always)]
    fn apply<W: Minimal, T: WithDType>(self, x: Line<T>) -> Line<T> {
        let ((a, m, r), bt) = ((W::ALPHA, W::M, W::R), (W::ALPHA, W::ALPHA));
        match self {
            Self::Kernel => multiply(&W::G, (a, r), false, x),
            Self::KernelAdjoint => multiply(&W::G, (a, r), true, x),
            Self::Input => multiply(&W::BT, bt, false, x),
            Self::InputAdjoint => multiply(&W::BT, bt, true, x),
            Self::Output => multiply(&W::AT, (m, a), false, x),
            Self::OutputAdjoint => multiply(&W::AT, (m, a), true, x),
        }
    }
}

/// Applies `step` of the algorithm `W` to each column of the square tile in `src` and then to
/// each row of the result, into `dst` (sides as [`Step::sides`] gives them).
#[inline(always)]
fn transform_block<T: WithDType, W: Minimal>(src: &Block<T>, step: Step, dst: &mut Block<T>) {
    let (from, to) = step.sides::<W>();
    let ((rows, cols), (rows2, cols2)) = ((from, from), (to, to));
    let mut columns = zero_block();
    for s in 0..cols {
        for l in 0..LANES {
            let mut x = [T::zero(); MAX_ALPHA];
            for (r, x) in x.iter_mut().enumerate().take(rows) {
                *x = src[r * cols + s][l];
            }
            let y = step.apply::<W, T>(x);
            for (i, &y) in y.iter().enumerate().take(rows2) {
                columns[i * cols + s][l] = y;
            }
        }
    }
    for i in 0..rows2 {
        for l in 0..LANES {
            let mut x = [T::zero(); MAX_ALPHA];
            for (s, x) in x.iter_mut().enumerate().take(cols) {
                *x = columns[i * cols + s][l];
            }
            let y = step.apply::<W, T>(x);
            for (k, &y) in y.iter().enumerate().take(cols2) {
                dst[i * cols2 + k][l] = y;
            }
        }
    }
}

/// [`Algorithm::transform_weights`] by the algorithm `W`.
fn transform_weights<T: WithDType, W: Minimal>(g: &ConvGeometry, w: &[T], transposed: bool) -> Vec<T> {
    // u is (a^2, rows, lanes): the lanes run along its contiguous axis.
    let (rows, lanes_len) = if transposed { (g.c, g.cout) } else { (g.cout, g.c) };
    let mut u = vec![T::zero(); W::XI * rows * lanes_len];
    let rows_per_piece = rows.div_ceil(rayon::current_num_threads()).max(1);
    // Piece i's rows in each of the a^2 matrices.
    let mut pieces: Vec<Vec<&mut [T]>> = Vec::new();
    for matrix in u.chunks_exact_mut(rows * lanes_len) {
        for (i, rows_of_piece) in matrix.chunks_mut(rows_per_piece * lanes_len).enumerate() {
            match pieces.get_mut(i) {
                Some(piece) => piece.push(rows_of_piece),
                None => pieces.push(vec![rows_of_piece]),
            }
        }
    }
    pieces.into_par_iter().enumerate().for_each(|(i, mut u)| {
        let first_row = i * rows_per_piece;
        let transform = WeightTransform::<T, W> { g, w, transposed, first_row, u: &mut u, algorithm: PhantomData };
        pulp::Arch::new().dispatch(transform)
    });
    u
}

/// The transformed weight's rows `first_row..` into `u`, one slice of rows per a^2 matrix.
struct WeightTransform<'a, T, W> {
    g: &'a ConvGeometry,
    w: &'a [T],
    transposed: bool,
    first_row: usize,
    u: &'a mut [&'a mut [T]],
    algorithm: PhantomData<W>,
}

impl<T: WithDType, W: Minimal> pulp::WithSimd for WeightTransform<'_, T, W> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (g, w) = (self.g, self.w);
        let (cout, c, taps) = (g.cout, g.c, W::R * W::R);
        let lanes_len = if self.transposed { cout } else { c };
        let rows = self.u[0].len() / lanes_len;
        let (mut block, mut transformed) = (zero_block(), zero_block());
        for (at_row, row) in (self.first_row..self.first_row + rows).enumerate() {
            for (first, len) in channel_blocks(lanes_len) {
                for (at, lanes) in block.iter_mut().take(taps).enumerate() {
                    for (l, value) in lanes.iter_mut().enumerate().take(len) {
                        let (o, ci) = if self.transposed { (first + l, row) } else { (row, first + l) };
                        *value = w[(o * c + ci) * taps + at];
                    }
                }
                transform_block::<T, W>(&block, Step::Kernel, &mut transformed);
                for (lanes, u) in transformed.iter().take(W::XI).zip(self.u.iter_mut()) {
                    store_lanes(lanes, len, &mut u[at_row * lanes_len + first..]);
                }
            }
        }
    }
}

/// [`Algorithm::weight_grad`] by the algorithm `W`.
fn weight_grad<T: WithDType, W: Minimal>(g: &ConvGeometry, du_t: &[T]) -> Vec<T> {
    let per_output = g.c * W::R * W::R;
    let mut dw = vec![T::zero(); g.cout * per_output];
    dw.par_chunks_mut(LANES * per_output).enumerate().for_each(|(i, dw)| {
        let adjoint = WeightGrad::<T, W> { g, du_t, first_output: i * LANES, dw, algorithm: PhantomData };
        pulp::Arch::new().dispatch(adjoint)
    });
    dw
}

/// The weight gradient of the [`LANES`] (or fewer) output channels from `first_output` on,
/// into their rows `dw`.
struct WeightGrad<'a, T, W> {
    g: &'a ConvGeometry,
    du_t: &'a [T],
    first_output: usize,
    dw: &'a mut [T],
    algorithm: PhantomData<W>,
}

impl<T: WithDType, W: Minimal> pulp::WithSimd for WeightGrad<'_, T, W> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (g, du_t, first) = (self.g, self.du_t, self.first_output);
        let (cout, c, taps) = (g.cout, g.c, W::R * W::R);
        let len = self.dw.len() / (c * taps);
        let (mut block, mut transformed) = (zero_block(), zero_block());
        for ci in 0..c {
            for (xi, lanes) in block.iter_mut().take(W::XI).enumerate() {
                load_lanes(&du_t[(xi * c + ci) * cout + first..], len, lanes);
            }
            transform_block::<T, W>(&block, Step::KernelAdjoint, &mut transformed);
            for (at, lanes) in transformed.iter().take(taps).enumerate() {
                for (l, &value) in lanes.iter().enumerate().take(len) {
                    self.dw[(l * c + ci) * taps + at] = value;
                }
            }
        }
    }
}

/// A block of zeros, the transforms' working storage.
#[inline(always)]
fn zero_block<T: WithDType>() -> Block<T> {
    OnCacheLines([[T::zero(); LANES]; MAX_ALPHA * MAX_ALPHA])
}

/// The blocks of at most [`LANES`] channels of `channels`: (first channel, channels).
#[inline(always)]
fn channel_blocks(channels: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..channels).step_by(LANES).map(move |first| (first, LANES.min(channels - first)))
}

/// The tiles of one image in order: (tile index, tile row, tile column).
#[inline(always)]
fn tiles_of<W: Minimal>(g: &ConvGeometry) -> impl Iterator<Item = (usize, usize, usize)> {
    let (th, tw) = tile_grid::<W>(g);
    (0..th * tw).map(move |q| (q, q / tw, q % tw))
}

/// Where an image's planes lie in a planar array (channel k's value (y, x) at `k * plane + y *
/// row + x`) and in a channels-last one (at `(y * last_row + x) * channels + k`), for copies
/// between the two. The copies run [`LANES`] channels at a time: one vector load or store on
/// the channels-last side, one contiguous stream per plane on the other. (A plane at a time
/// with a stride of `channels` values, they wrote or read each cache line of the
/// channels-last side once per channel: 30% of the transforms' time at the 5x5 layer.)
struct Planes {
    channels: usize,
    plane: usize,
    row: usize,
    /// Rows and columns copied.
    sides: (usize, usize),
    last_row: usize,
}

impl Planes {
    /// Every block of up to [`LANES`] channels by up to [`LANES`] consecutive positions of one
    /// row, as (planar index, channels-last index, (channels, positions)): the indices of its
    /// first channel's first position. One counter and an `#[inline(always)]` closure: with
    /// plain closures (`flat_map`, or a callback) the copies were called out of line, without
    /// the vector instructions of the transforms around them.
    #[inline(always)]
    fn blocks(&self) -> impl Iterator<Item = (usize, usize, (usize, usize))> + '_ {
        let (rows, cols) = self.sides;
        let (channel_blocks, column_blocks) = (self.channels.div_ceil(LANES), cols.div_ceil(LANES));
        (0..channel_blocks * rows * column_blocks).map(
            #[inline(always)]
            move |index| {
                let (first, y, x) = (
                    index / (rows * column_blocks) * LANES,
                    index / column_blocks % rows,
                    index % column_blocks * LANES,
                );
                let (len, positions) = (LANES.min(self.channels - first), LANES.min(cols - x));
                (
                    first * self.plane + y * self.row + x,
                    (y * self.last_row + x) * self.channels + first,
                    (len, positions),
                )
            },
        )
    }

    /// `last` = `planar`, channels-last: each block's rows of the planes are read whole into a
    /// square of [`LANES`] x [`LANES`] values, then written out one position at a time.
    #[inline(always)]
    fn copy_to_channels_last<T: WithDType>(&self, planar: &[T], last: &mut [T]) {
        let mut square = OnCacheLines([[T::zero(); LANES]; LANES]);
        for (from, to, (len, positions)) in self.blocks() {
            for l in 0..len {
                let row = &planar[from + l * self.plane..][..positions];
                for (i, &value) in row.iter().enumerate() {
                    square[i][l] = value;
                }
            }
            for (i, lanes) in square.iter().enumerate().take(positions) {
                store_lanes(lanes, len, &mut last[to + i * self.channels..]);
            }
        }
    }

    /// `planar` = `last`, planar: the transpose of [`Self::copy_to_channels_last`]. (One
    /// position at a time, 16 stores to 16 planes cost half the 11x11 layer's output transform.)
    #[inline(always)]
    fn copy_from_channels_last<T: WithDType>(&self, last: &[T], planar: &mut [T]) {
        let mut square = OnCacheLines([[T::zero(); LANES]; LANES]);
        for (to, from, (len, positions)) in self.blocks() {
            for (i, lanes) in square.iter_mut().enumerate().take(positions) {
                load_lanes(&last[from + i * self.channels..], len, lanes);
            }
            for l in 0..len {
                let row = &mut planar[to + l * self.plane..][..positions];
                for (i, value) in row.iter_mut().enumerate() {
                    *value = square[i][l];
                }
            }
        }
    }
}

/// Where value `at` (row-major in an a x a tile) of the input tile (ty, tx) lies in a padded
/// plane of `cols` columns.
#[inline(always)]
fn input_position<W: Minimal>((ty, tx): (usize, usize), at: usize, cols: usize) -> usize {
    (W::M * ty + at / W::ALPHA) * cols + W::M * tx + at % W::ALPHA
}

/// The images of a group as the convolution reads them.
#[derive(Clone, Copy)]
pub(crate) enum Images<'a, T> {
    /// The convolution's input itself, (images, c, h, w).
    Planes(&'a [T]),
    /// Outer images whose block images ([`SpaceToDepth`]) are the convolution's input.
    Blocks(&'a [T], &'a SpaceToDepth),
}

/// `V^T` (a^2, tiles, c) of the group's `images` images `x`: tile t = (image j, row ty,
/// column tx) is row `j * tiles_per_image + ty * tile columns + tx`. Each image is copied
/// channels-last into a zero-padded buffer first, so that a block of [`LANES`] channels at
/// any place of a tile is one contiguous load; block images are made channels-last directly.
#[inline(always)]
fn transform_input<T: WithDType, W: Minimal>(g: &ConvGeometry, x: Images<'_, T>, images: usize, v: &mut [T]) {
    let (tp, (rows, cols), c) = (tiles_per_image::<W>(g), padded_plane::<W>(g), g.c);
    let tiles = images * tp;
    let mut padded = scratch::<T>(rows * cols * c);
    padded.fill(T::zero());
    let (mut block, mut transformed) = (zero_block(), zero_block());
    for j in 0..images {
        let image = &mut padded[(g.padding.0 * cols + g.padding.1) * c..];
        match x {
            Images::Planes(x) => {
                let map = Planes { channels: c, plane: g.h * g.w, row: g.w, sides: (g.h, g.w), last_row: cols };
                map.copy_to_channels_last(&x[j * g.image()..][..g.image()], image);
            }
            Images::Blocks(x, blocks) => {
                let outer = blocks.outer_image();
                blocks.input_channels_last(&x[j * outer..][..outer], cols, image);
            }
        }
        for (q, ty, tx) in tiles_of::<W>(g) {
            let t = j * tp + q;
            for (first, len) in channel_blocks(c) {
                for (at, lanes) in block.iter_mut().take(W::XI).enumerate() {
                    load_lanes(&padded[input_position::<W>((ty, tx), at, cols) * c + first..], len, lanes);
                }
                transform_block::<T, W>(&block, Step::Input, &mut transformed);
                for (xi, lanes) in transformed.iter().take(W::XI).enumerate() {
                    store_lanes(lanes, len, &mut v[xi * slab(tiles * c) + t * c + first..]);
                }
            }
        }
    }
}

/// Writes the input gradient of the group's `images` images to `dx` (images, c, h, w) from
/// `dv_t` (a^2, tiles, c), the gradient of their transformed input: `B dV B^T` of each tile
/// added to the input tile it was read from (channels-last, then copied back).
#[inline(always)]
fn transform_input_grad<T: WithDType, W: Minimal>(g: &ConvGeometry, dv_t: &[T], images: usize, dx: &mut [T]) {
    let (tp, (rows, cols), c) = (tiles_per_image::<W>(g), padded_plane::<W>(g), g.c);
    let tiles = images * tp;
    let mut padded = scratch::<T>(rows * cols * c);
    let (mut block, mut transformed) = (zero_block(), zero_block());
    for (j, image) in dx.chunks_exact_mut(g.image()).take(images).enumerate() {
        padded.fill(T::zero());
        for (q, ty, tx) in tiles_of::<W>(g) {
            let t = j * tp + q;
            for (first, len) in channel_blocks(c) {
                for (xi, lanes) in block.iter_mut().take(W::XI).enumerate() {
                    load_lanes(&dv_t[xi * slab(tiles * c) + t * c + first..], len, lanes);
                }
                transform_block::<T, W>(&block, Step::InputAdjoint, &mut transformed);
                for (at, lanes) in transformed.iter().take(W::XI).enumerate() {
                    let dst = &mut padded[input_position::<W>((ty, tx), at, cols) * c + first..][..len];
                    for (d, &value) in dst.iter_mut().zip(lanes) {
                        *d += value;
                    }
                }
            }
        }
        let map = Planes { channels: c, plane: g.h * g.w, row: g.w, sides: (g.h, g.w), last_row: cols };
        map.copy_from_channels_last(&padded[(g.padding.0 * cols + g.padding.1) * c..], image);
    }
}

/// Where a group's convolution output goes.
pub(crate) enum Output<'a, T> {
    /// As it is: (cout, images * positions), image j's positions in columns j * p ...
    Planar(&'a mut [T]),
    /// Max-pooled by `pool` to `pooled` (rows, columns) in the convolution's channels-last
    /// copy, where 16 channels at one place are one load: values (images, cout, rows,
    /// columns) into `out`, and into `idx` each one's arg-max as a flat index inside its
    /// convolution plane, by the rules of [`crate::ops::pool::max_pool2d`] (the first maximum in
    /// row-major window order; a NaN is always taken). The planar output is never made.
    Pooled { pool: MaxPool2dParams, pooled: (usize, usize), out: &'a mut [T], idx: &'a mut [u32] },
}

/// `relu?(A^T M A + bias)` of every tile of `m_t` (a^2, tiles, cout) into `out`, by way of one
/// image's output channels-last.
#[inline(always)]
fn transform_output<T: WithDType, W: Minimal>(
    g: &ConvGeometry,
    m_t: &[T],
    (images, bias, relu): (usize, &[T], bool),
    mut out: Output<'_, T>,
) {
    let (tp, p, cout) = (tiles_per_image::<W>(g), g.positions(), g.cout);
    let (tiles, n) = (images * tp, images * p);
    let mut image_out = scratch::<T>(p * cout);
    let (mut block, mut transformed) = (zero_block(), zero_block());
    for j in 0..images {
        for (q, ty, tx) in tiles_of::<W>(g) {
            let t = j * tp + q;
            for (first, len) in channel_blocks(cout) {
                for (xi, lanes) in block.iter_mut().take(W::XI).enumerate() {
                    load_lanes(&m_t[xi * slab(tiles * cout) + t * cout + first..], len, lanes);
                }
                let mut bias_lanes = [T::zero(); LANES];
                load_lanes(&bias[first..], len, &mut bias_lanes);
                transform_block::<T, W>(&block, Step::Output, &mut transformed);
                for (at, lanes) in transformed.iter_mut().take(W::M * W::M).enumerate() {
                    let (oy, ox) = (W::M * ty + at / W::M, W::M * tx + at % W::M);
                    if oy < g.oh && ox < g.ow {
                        for (y, &b) in lanes.iter_mut().zip(&bias_lanes) {
                            *y += b;
                            if relu && *y < T::zero() {
                                *y = T::zero();
                            }
                        }
                        store_lanes(lanes, len, &mut image_out[(oy * g.ow + ox) * cout + first..]);
                    }
                }
            }
        }
        match &mut out {
            Output::Planar(out) => {
                let map = Planes { channels: cout, plane: n, row: g.ow, sides: (g.oh, g.ow), last_row: g.ow };
                map.copy_from_channels_last(&image_out, &mut out[j * p..]);
            }
            Output::Pooled { pool, pooled, out, idx } => {
                let image = cout * pooled.0 * pooled.1;
                let (out, idx) = (&mut out[j * image..][..image], &mut idx[j * image..][..image]);
                pool_channels_last(g, &image_out, (*pool, *pooled), out, idx);
            }
        }
    }
}

/// Max-pools one image's convolution output `image` (oh, ow, cout) channels-last into `out`
/// and `idx` (cout, pooled rows, pooled columns): see [`Output::Pooled`].
#[inline(always)]
fn pool_channels_last<T: WithDType>(
    g: &ConvGeometry,
    image: &[T],
    (pool, (ph, pw)): (MaxPool2dParams, (usize, usize)),
    out: &mut [T],
    idx: &mut [u32],
) {
    let ((kh, kw), (sh, sw), (pad_h, pad_w)) = (pool.kernel, pool.stride, pool.padding);
    let (cout, plane) = (g.cout, ph * pw);
    let mut lanes = [T::zero(); LANES];
    for (py, px) in (0..ph).flat_map(|py| (0..pw).map(move |px| (py, px))) {
        let (y0, y1) = ((py * sh).saturating_sub(pad_h), (py * sh + kh - pad_h).min(g.oh));
        let (x0, x1) = ((px * sw).saturating_sub(pad_w), (px * sw + kw - pad_w).min(g.ow));
        for (first, len) in channel_blocks(cout) {
            let mut best = [T::from_f64(f64::NEG_INFINITY); LANES];
            let mut at = [(y0 * g.ow + x0) as u32; LANES];
            for (y, x) in (y0..y1).flat_map(|y| (x0..x1).map(move |x| (y, x))) {
                let position = y * g.ow + x;
                load_lanes(&image[position * cout + first..], len, &mut lanes);
                for ((b, a), &v) in best.iter_mut().zip(&mut at).zip(&lanes) {
                    // `v != v` is true only for NaN, which is always taken; `|`, not `||`:
                    // no branch.
                    #[allow(clippy::eq_op)]
                    let take = (v > *b) | (v != v);
                    *b = if take { v } else { *b };
                    *a = if take { position as u32 } else { *a };
                }
            }
            let at_plane = py * pw + px;
            for l in 0..len {
                out[(first + l) * plane + at_plane] = best[l];
                idx[(first + l) * plane + at_plane] = at[l];
            }
        }
    }
}

/// A group's convolution-output gradient, as the backward pass receives it.
#[derive(Clone, Copy)]
pub(crate) enum OutputGrad<'a, T> {
    /// (cout, images * positions), image j's positions in columns j * p ...
    Planar(&'a [T]),
    /// The gradient of the pooled output that [`Output::Pooled`] made, scattered to each
    /// window's arg-max straight into the channels-last copy the tiles are read from: the
    /// backward mirror of [`Output::Pooled`], without the planar gradient.
    Pooled(PooledGrad<'a, T>),
}

/// `dm_t` (a^2, tiles, cout) = `A dY A^T` of every tile of the group's output gradient `dy`,
/// by way of one image's gradient channels-last in a grid of whole tiles; outputs beyond the
/// map count as zero.
#[inline(always)]
fn transform_output_grad<T: WithDType, W: Minimal>(
    g: &ConvGeometry,
    dy: OutputGrad<'_, T>,
    images: usize,
    dm_t: &mut [T],
) {
    let (tp, p, cout) = (tiles_per_image::<W>(g), g.positions(), g.cout);
    let (tiles, n) = (images * tp, images * p);
    let (th, tw) = tile_grid::<W>(g);
    let cols = W::M * tw;
    let mut image_grad = scratch::<T>(W::M * th * cols * cout);
    image_grad.fill(T::zero());
    // Where each output position lies in the grid, for the scatter: a table, not a division
    // per value.
    let in_grid: Vec<usize> = match dy {
        OutputGrad::Planar(_) => Vec::new(),
        OutputGrad::Pooled(_) => (0..p).map(|at| (at / g.ow * cols + at % g.ow) * cout).collect(),
    };
    let (mut block, mut transformed) = (zero_block(), zero_block());
    for j in 0..images {
        match dy {
            OutputGrad::Planar(dy) => {
                let map = Planes { channels: cout, plane: n, row: g.ow, sides: (g.oh, g.ow), last_row: cols };
                map.copy_to_channels_last(&dy[j * p..], &mut image_grad);
            }
            OutputGrad::Pooled(pooled) => {
                image_grad.fill(T::zero());
                for k in 0..cout {
                    pooled.for_each_passed(j * cout + k, |at, g| image_grad[in_grid[at] + k] += g);
                }
            }
        }
        for (q, ty, tx) in tiles_of::<W>(g) {
            let t = j * tp + q;
            for (first, len) in channel_blocks(cout) {
                for (at, lanes) in block.iter_mut().take(W::M * W::M).enumerate() {
                    let position = (W::M * ty + at / W::M) * cols + W::M * tx + at % W::M;
                    load_lanes(&image_grad[position * cout + first..], len, lanes);
                }
                transform_block::<T, W>(&block, Step::OutputAdjoint, &mut transformed);
                for (xi, lanes) in transformed.iter().take(W::XI).enumerate() {
                    store_lanes(lanes, len, &mut dm_t[xi * slab(tiles * cout) + t * cout + first..]);
                }
            }
        }
    }
}

/// One of the group's tile transforms, run by [`GroupTransform::run`].
enum Transform<'a, T> {
    Input { x: Images<'a, T>, v_t: &'a mut [T] },
    InputGrad { dv_t: &'a [T], dx: &'a mut [T] },
    Output { m_t: &'a [T], bias: &'a [T], relu: bool, out: Output<'a, T> },
    OutputGrad { dy: OutputGrad<'a, T>, dm_t: &'a mut [T] },
}

/// A [`Transform`] by the algorithm `W` of the group of `images` images of the convolution `g`.
struct GroupTransform<'a, T, W> {
    g: &'a ConvGeometry,
    images: usize,
    transform: Transform<'a, T>,
    algorithm: PhantomData<W>,
}

impl<T: WithDType, W: Minimal> GroupTransform<'_, T, W> {
    /// Runs the transform compiled for the vector instructions the CPU has (found at run time,
    /// like the `gemm` crate's kernels): the binaries target baseline x86-64, where the lane
    /// loops would run on 4-wide SSE at best.
    fn run(g: &ConvGeometry, images: usize, transform: Transform<'_, T>) {
        pulp::Arch::new().dispatch(GroupTransform::<T, W> { g, images, transform, algorithm: PhantomData })
    }
}

impl<T: WithDType, W: Minimal> pulp::WithSimd for GroupTransform<'_, T, W> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (g, images) = (self.g, self.images);
        match self.transform {
            Transform::Input { x, v_t } => transform_input::<T, W>(g, x, images, v_t),
            Transform::InputGrad { dv_t, dx } => transform_input_grad::<T, W>(g, dv_t, images, dx),
            Transform::Output { m_t, bias, relu, out } => transform_output::<T, W>(g, m_t, (images, bias, relu), out),
            Transform::OutputGrad { dy, dm_t } => transform_output_grad::<T, W>(g, dy, images, dm_t),
        }
    }
}

/// See [`Algorithm::forward_group`].
fn forward_group<T: WithDType, W: Minimal>(
    g: &ConvGeometry,
    (x, u_t, bias): (Images<'_, T>, &[T], &[T]),
    (images, relu): (usize, bool),
    (scratch, parallel): (&mut [T], bool),
    out: Output<'_, T>,
) {
    let tiles = images * tiles_per_image::<W>(g);
    let (v_slab, m_slab) = (slab(tiles * g.c), slab(tiles * g.cout));
    let (v_t, m_t) = scratch.split_at_mut(W::XI * v_slab);
    GroupTransform::<T, W>::run(g, images, Transform::Input { x, v_t });
    for xi in 0..W::XI {
        let lhs = MatRef { data: &v_t[xi * v_slab..][..tiles * g.c], row_stride: g.c, col_stride: 1 };
        let rhs = MatRef { data: &u_t[xi * g.c * g.cout..][..g.c * g.cout], row_stride: g.cout, col_stride: 1 };
        matmul((tiles, g.cout, g.c), &mut m_t[xi * m_slab..], false, (lhs, rhs), parallel);
    }
    GroupTransform::<T, W>::run(g, images, Transform::Output { m_t, bias, relu, out });
}

/// See [`Algorithm::backward_group`].
fn backward_group<T: WithDType, W: Minimal>(
    g: &ConvGeometry,
    (x, u, dy): (Images<'_, T>, &[T], OutputGrad<'_, T>),
    images: usize,
    (du_t, dx): (Option<&mut [T]>, Option<&mut [T]>),
    (scratch, parallel): (&mut [T], bool),
) {
    let tiles = images * tiles_per_image::<W>(g);
    let (v_slab, m_slab) = (slab(tiles * g.c), slab(tiles * g.cout));
    let (v_t, dm_t) = scratch.split_at_mut(W::XI * v_slab);
    GroupTransform::<T, W>::run(g, images, Transform::OutputGrad { dy, dm_t });
    let dm_of = |xi: usize| MatRef { data: &dm_t[xi * m_slab..][..tiles * g.cout], row_stride: g.cout, col_stride: 1 };
    if let Some(du_t) = du_t {
        GroupTransform::<T, W>::run(g, images, Transform::Input { x, v_t });
        for xi in 0..W::XI {
            let lhs = MatRef { data: &v_t[xi * v_slab..][..tiles * g.c], row_stride: 1, col_stride: g.c };
            matmul((g.c, g.cout, tiles), &mut du_t[xi * g.c * g.cout..], true, (lhs, dm_of(xi)), parallel);
        }
    }
    if let Some(dx) = dx {
        for xi in 0..W::XI {
            let rhs = MatRef { data: &u[xi * g.cout * g.c..][..g.cout * g.c], row_stride: g.c, col_stride: 1 };
            matmul((tiles, g.c, g.cout), &mut v_t[xi * v_slab..], false, (dm_of(xi), rhs), parallel);
        }
        GroupTransform::<T, W>::run(g, images, Transform::InputGrad { dv_t: v_t, dx });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: Line<f64>, b: Line<f64>) -> f64 {
        a.iter().zip(&b).map(|(x, y)| x * y).sum()
    }

    /// Values 0.3, -1.7, ... for the first `n` entries of a line, zeros after.
    fn sample(n: usize, seed: f64) -> Line<f64> {
        std::array::from_fn(|i| if i < n { ((i as f64 + 1.0) * seed).sin() * 2.0 } else { 0.0 })
    }

    /// One axis of `W` computes m outputs of an r-tap correlation of a inputs.
    fn computes_a_correlation<W: Minimal>() {
        let (d, k) = (sample(W::ALPHA, 0.7), sample(W::R, 1.3));
        let (u, v) = (Step::Kernel.apply::<W, f64>(k), Step::Input.apply::<W, f64>(d));
        let y = Step::Output.apply::<W, f64>(std::array::from_fn(|i| u[i] * v[i]));
        for (o, &y) in y.iter().enumerate().take(W::M) {
            let direct: f64 = (0..W::R).map(|t| d[o + t] * k[t]).sum();
            assert!((y - direct).abs() < 1e-12, "F({}, {}) output {o}: {y} against {direct}", W::M, W::R);
        }
        assert!(y[W::M..].iter().all(|&y| y == 0.0), "values past the output tile");
    }

    #[test]
    fn one_axis_computes_the_outputs_of_a_correlation() {
        computes_a_correlation::<F23>();
        computes_a_correlation::<F43>();
        computes_a_correlation::<F25>();
        computes_a_correlation::<F35>();
    }

    /// `<T x, y> = <x, T^T y>` for each transform of `W` and its adjoint, random x and y.
    fn adjoints_are_transposes<W: Minimal>() {
        let (r, a, m) = (W::R, W::ALPHA, W::M);
        let pairs = [
            (Step::Kernel, Step::KernelAdjoint, (r, a)),
            (Step::Input, Step::InputAdjoint, (a, a)),
            (Step::Output, Step::OutputAdjoint, (a, m)),
        ];
        for (forward, adjoint, (from, to)) in pairs {
            let (x, y) = (sample(from, 0.9), sample(to, 2.3));
            let (lhs, rhs) = (dot(forward.apply::<W, f64>(x), y), dot(x, adjoint.apply::<W, f64>(y)));
            assert!((lhs - rhs).abs() < 1e-12, "F({m}, {r}) {forward:?}: {lhs} against {rhs}");
        }
    }

    /// The convolution of `batch` images of `side` x `side` by `k` x `k` kernels, stride 1,
    /// padding keeping the side, as `Conv2dParams::geometry` builds it.
    fn same_size(batch: usize, side: usize, k: usize) -> ConvGeometry {
        let params = crate::ops::conv::conv2d::Conv2dParams::square(1, k / 2);
        params.geometry(&[batch, 8, side, side], &[8, 8, k, k]).unwrap()
    }

    #[test]
    fn each_layer_runs_by_the_algorithm_that_multiplies_least() {
        // AlexNet's 7x7 layers: F(4x4, 3x3), 144 multiplies per channel pair against 256.
        assert_eq!(Algorithm::of(&same_size(128, 7, 3)), Some(Algorithm::F4x3));
        // At 5x5 both multiply 144 times: the more accurate F(2x2, 3x3).
        assert_eq!(Algorithm::of(&same_size(128, 5, 3)), Some(Algorithm::F2x3));
        // features.3's 15x15: F(3x3, 5x5), 1225 multiplies against 2304; at 4x4, 196 against
        // 144, so F(2x2, 5x5).
        assert_eq!(Algorithm::of(&same_size(128, 15, 5)), Some(Algorithm::F3x5));
        assert_eq!(Algorithm::of(&same_size(128, 4, 5)), Some(Algorithm::F2x5));
        assert_eq!(Algorithm::of(&same_size(128, 15, 7)), None);
    }

    #[test]
    fn groups_split_the_batch_evenly_into_as_many_as_the_gemm_rows_want() {
        use crate::ops::conv::groups::images_per_group;
        for (side, k) in [(7, 3), (5, 3), (15, 5), (4, 5)] {
            for batch in 1..=130 {
                let g = same_size(batch, side, k);
                let algorithm = Algorithm::of(&g).unwrap();
                let (per_image, wanted) = (algorithm.tiles_per_image(&g), algorithm.group_tiles());
                let images = images_per_group(&g);
                let groups = batch.div_ceil(images);
                let last = batch - images * (groups - 1);
                let what = format!("{side}x{side}, k {k}, batch {batch}: {groups} groups of {images}, the last {last}");
                assert!((1..=batch).contains(&images), "{what}");
                // As many groups as groups of the rows the GEMMs want would make, evened out:
                // sizes that differ by less than their number (32 images where a group wants
                // 24 are two groups of 16, not 24 and 8).
                assert_eq!(groups, batch.div_ceil(wanted.div_ceil(per_image).min(batch)), "{what}");
                assert!(images - last < groups, "{what}");
            }
        }
    }

    #[test]
    fn each_adjoint_is_the_transpose_of_its_transform() {
        adjoints_are_transposes::<F23>();
        adjoints_are_transposes::<F43>();
        adjoints_are_transposes::<F25>();
        adjoints_are_transposes::<F35>();
    }
}
