//! 3x3 convolutions with stride 1 by Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", CVPR 2016), forward and backward, for
//! one group of images at a time (see [`super::conv_groups`]).
//!
//! The output is cut into 2x2 tiles; each reads a 4x4 tile of the zero-padded input. With the
//! input tile transformed to `V = B^T d B` and the kernel to `U = G g G^T`, the output tile is
//! `A^T (sum over input channels of U ⊙ V) A`: for each of the 16 transformed positions `xi`
//! that sum is one GEMM, run transposed as `M_xi^T (tiles x cout) = V_xi^T (tiles x c) *
//! U_xi^T (c x cout)` so that a tile's channels are contiguous (see [`transform_input`]). That is 16
//! multiplies per 4 outputs where im2col + GEMM does 36: 2.25x fewer, 1.72x fewer at AlexNet's
//! 7x7 maps, whose 4x4 grid of tiles covers 8x8 outputs. The transforms only add, subtract
//! and halve, so f32 keeps its accuracy (what cuDNN and oneDNN use for these layers).
//!
//! The backward pass is the exact adjoint of those steps:
//! - `dM = A dY A^T` per tile (outputs beyond the map have no gradient);
//! - the weight gradient `dU_xi += dM_xi * V_xi^T`, turned into `dW = G^T dU G` at the end;
//! - the input gradient `dV_xi = U_xi^T * dM_xi`, then `B dV B^T` added to each 4x4 input tile.
//!
//! Written by hand: no Rust crate offers Winograd convolution, and Candle's CPU backend
//! convolves by im2col only.

use candle_core::WithDType;

use super::im2col::{matmul, ConvGeometry, MatRef};

/// Values of a transformed tile (4x4), one GEMM each.
const XI: usize = 16;

/// Whether the convolution `g` runs by Winograd's F(2x2, 3x3): 3x3 kernels with stride 1, any
/// padding.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    (g.kh, g.kw, g.stride) == (3, 3, (1, 1))
}

/// The grid of 2x2 output tiles of one image, (rows, columns).
fn tile_grid(g: &ConvGeometry) -> (usize, usize) {
    (g.oh.div_ceil(2), g.ow.div_ceil(2))
}

/// Tiles of one image.
fn tiles_per_image(g: &ConvGeometry) -> usize {
    let (th, tw) = tile_grid(g);
    th * tw
}

/// The zero-padded input plane every tile reads from: the input at (ph, pw), zeros around it,
/// large enough for the last row and column of tiles.
fn padded_plane(g: &ConvGeometry) -> (usize, usize) {
    let (th, tw) = tile_grid(g);
    (2 * th + 2, 2 * tw + 2)
}

/// Values of the scratch buffer [`forward_group`] and [`backward_group`] need for a group of
/// `images` images: the transformed input (or its gradient) and output (or its gradient).
pub(crate) fn scratch_len(g: &ConvGeometry, images: usize) -> usize {
    XI * (g.c + g.cout) * images * tiles_per_image(g)
}

/// Values of the transformed weight or its gradient, (16, cout, c).
pub(crate) fn transformed_weight_len(g: &ConvGeometry) -> usize {
    XI * g.cout * g.c
}

/// `(g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2)`: one axis of `G g G^T`.
#[inline(always)]
fn kernel_transform<T: WithDType>([g0, g1, g2]: [T; 3]) -> [T; 4] {
    let half = T::from_f64(0.5);
    let (outer, middle) = ((g0 + g2) * half, g1 * half);
    [g0, outer + middle, outer - middle, g2]
}

/// The adjoint of [`kernel_transform`]: one axis of `G^T dU G`.
#[inline(always)]
fn kernel_transform_adjoint<T: WithDType>([u0, u1, u2, u3]: [T; 4]) -> [T; 3] {
    let half = T::from_f64(0.5);
    let (sum, difference) = ((u1 + u2) * half, (u1 - u2) * half);
    [u0 + sum, difference, sum + u3]
}

/// Channels transformed side by side, one per lane of a [`Block`]: the same adds and
/// subtracts for every lane, which the compiler turns into vector instructions (one tile of
/// one channel at a time, the transforms took longer than the GEMMs).
const LANES: usize = 16;

/// One tile of up to 4x4 values in [`LANES`] channels: value (r, s) of channel l at
/// `[r * columns + s][l]`.
type Block<T> = [[T; LANES]; XI];

/// Applies the one-axis transform `down` to each column of every lane's tile in `src` (R x C) and
/// then `along` to each row of the result, into `dst` (R2 x C2).
#[inline(always)]
fn transform_block<T: WithDType, const R: usize, const C: usize, const R2: usize, const C2: usize>(
    src: &Block<T>,
    (down, along): (impl Fn([T; R]) -> [T; R2], impl Fn([T; C]) -> [T; C2]),
    dst: &mut Block<T>,
) {
    let mut columns = [[T::zero(); LANES]; XI];
    for s in 0..C {
        for l in 0..LANES {
            let y = down(std::array::from_fn(|r| src[r * C + s][l]));
            for (i, y) in y.into_iter().enumerate() {
                columns[i * C + s][l] = y;
            }
        }
    }
    for i in 0..R2 {
        for l in 0..LANES {
            let y = along(std::array::from_fn(|s| columns[i * C + s][l]));
            for (k, y) in y.into_iter().enumerate() {
                dst[i * C2 + k][l] = y;
            }
        }
    }
}

/// `(d0 - d2, d1 + d2, d2 - d1, d1 - d3)`: one axis of `B^T d B`.
#[inline(always)]
fn input_transform<T: WithDType>([d0, d1, d2, d3]: [T; 4]) -> [T; 4] {
    [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
}

/// The adjoint of [`input_transform`]: one axis of `B dV B^T`.
#[inline(always)]
fn input_transform_adjoint<T: WithDType>([v0, v1, v2, v3]: [T; 4]) -> [T; 4] {
    [v0, v1 - v2 + v3, v1 + v2 - v0, T::zero() - v3]
}

/// `(m0 + m1 + m2, m1 - m2 - m3)`: one axis of `A^T m A`.
#[inline(always)]
fn output_transform<T: WithDType>([m0, m1, m2, m3]: [T; 4]) -> [T; 2] {
    [m0 + m1 + m2, m1 - m2 - m3]
}

/// The adjoint of [`output_transform`]: one axis of `A dY A^T`.
#[inline(always)]
fn output_transform_adjoint<T: WithDType>([y0, y1]: [T; 2]) -> [T; 4] {
    [y0, y0 + y1, y0 - y1, T::zero() - y1]
}

/// The transformed weight `U = G w G^T` (16 values per (output, input) channel pair), laid
/// out (16, c, cout) when `transposed` (the right operand of the forward GEMM), else (16,
/// cout, c) (the input gradient's). Computed for [`LANES`] channels at a time, compiled for
/// the CPU's vector instructions: one pair at a time, the weight transforms cost the forward
/// pass 30-40% at batch 32.
pub(crate) fn transform_weights<T: WithDType>(g: &ConvGeometry, w: &[T], transposed: bool) -> Vec<T> {
    pulp::Arch::new().dispatch(WeightTransform { g, w, transposed })
}

/// The gradient of the weight (cout, c, 3, 3) from `du_t`, the gradient of the transformed
/// weight transposed (16, c, cout): `dW = G^T dU G` per channel pair.
pub(crate) fn weight_grad<T: WithDType>(g: &ConvGeometry, du_t: &[T]) -> Vec<T> {
    pulp::Arch::new().dispatch(WeightGrad { g, du_t })
}

struct WeightTransform<'a, T> {
    g: &'a ConvGeometry,
    w: &'a [T],
    transposed: bool,
}

impl<T: WithDType> pulp::WithSimd for WeightTransform<'_, T> {
    type Output = Vec<T>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Vec<T> {
        let (g, w) = (self.g, self.w);
        let (cout, c) = (g.cout, g.c);
        // u is (16, rows, lanes): the lanes run along its contiguous axis.
        let (rows, lanes_len) = if self.transposed { (c, cout) } else { (cout, c) };
        let mut u = vec![T::zero(); transformed_weight_len(g)];
        let (mut block, mut transformed) = (zero_block(), zero_block());
        for row in 0..rows {
            for (first, len) in channel_blocks(lanes_len) {
                for (at, lanes) in block.iter_mut().take(9).enumerate() {
                    for (l, value) in lanes.iter_mut().enumerate().take(len) {
                        let (o, ci) = if self.transposed { (first + l, row) } else { (row, first + l) };
                        *value = w[(o * c + ci) * 9 + at];
                    }
                }
                transform_block(&block, (kernel_transform, kernel_transform), &mut transformed);
                for (xi, lanes) in transformed.iter().enumerate() {
                    copy_lanes(lanes, len, &mut u[(xi * rows + row) * lanes_len + first..]);
                }
            }
        }
        u
    }
}

struct WeightGrad<'a, T> {
    g: &'a ConvGeometry,
    du_t: &'a [T],
}

impl<T: WithDType> pulp::WithSimd for WeightGrad<'_, T> {
    type Output = Vec<T>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Vec<T> {
        let (g, du_t) = (self.g, self.du_t);
        let (cout, c) = (g.cout, g.c);
        let mut dw = vec![T::zero(); cout * c * 9];
        let (mut block, mut transformed) = (zero_block(), zero_block());
        for ci in 0..c {
            for (first, len) in channel_blocks(cout) {
                for (xi, lanes) in block.iter_mut().enumerate() {
                    copy_lanes(&du_t[(xi * c + ci) * cout + first..], len, lanes);
                }
                transform_block(&block, (kernel_transform_adjoint, kernel_transform_adjoint), &mut transformed);
                for (at, lanes) in transformed.iter().take(9).enumerate() {
                    for (l, &value) in lanes.iter().enumerate().take(len) {
                        dw[((first + l) * c + ci) * 9 + at] = value;
                    }
                }
            }
        }
        dw
    }
}

/// Copies the first `len` values of `src` to `dst`, a whole block of [`LANES`] by a fixed-size
/// copy, which the compiler inlines (a call to `memcpy` per 16 values cost 5% of the layer).
#[inline(always)]
fn copy_lanes<T: Copy>(src: &[T], len: usize, dst: &mut [T]) {
    if len == LANES {
        dst[..LANES].copy_from_slice(&src[..LANES]);
    } else {
        dst[..len].copy_from_slice(&src[..len]);
    }
}

/// A block of zeros, the transforms' working storage.
#[inline(always)]
fn zero_block<T: WithDType>() -> Block<T> {
    [[T::zero(); LANES]; XI]
}

/// The blocks of at most [`LANES`] channels of `channels`: (first channel, channels).
#[inline(always)]
fn channel_blocks(channels: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..channels).step_by(LANES).map(move |first| (first, LANES.min(channels - first)))
}

/// The tiles of one image in order: (tile index, tile row, tile column).
#[inline(always)]
fn tiles_of(g: &ConvGeometry) -> impl Iterator<Item = (usize, usize, usize)> {
    let (th, tw) = tile_grid(g);
    (0..th * tw).map(move |q| (q, q / tw, q % tw))
}

/// `V^T` (16, tiles, c) of the group's `images` images in `x`: tile t = (image j, row ty,
/// column tx) is row `j * tiles_per_image + ty * tile columns + tx`. Each image is copied
/// channels-last into a zero-padded buffer first, so that a block of [`LANES`] channels at
/// any place of a tile is one contiguous load.
#[inline(always)]
fn transform_input<T: WithDType>(g: &ConvGeometry, x: &[T], images: usize, v: &mut [T]) {
    let (tp, (rows, cols), c) = (tiles_per_image(g), padded_plane(g), g.c);
    let tiles = images * tp;
    let mut padded = vec![T::zero(); rows * cols * c];
    let (mut block, mut transformed) = (zero_block(), zero_block());
    for (j, image) in x.chunks_exact(g.image()).take(images).enumerate() {
        for (ci, plane) in image.chunks_exact(g.h * g.w).enumerate() {
            for (iy, row) in plane.chunks_exact(g.w).enumerate() {
                let dst = padded[((iy + g.padding.0) * cols + g.padding.1) * c + ci..].iter_mut().step_by(c);
                dst.zip(row).for_each(|(d, &value)| *d = value);
            }
        }
        for (q, ty, tx) in tiles_of(g) {
            let t = j * tp + q;
            for (first, len) in channel_blocks(c) {
                for (at, lanes) in block.iter_mut().enumerate() {
                    let position = (2 * ty + at / 4) * cols + 2 * tx + at % 4;
                    copy_lanes(&padded[position * c + first..], len, lanes);
                }
                transform_block(&block, (input_transform, input_transform), &mut transformed);
                for (xi, lanes) in transformed.iter().enumerate() {
                    copy_lanes(lanes, len, &mut v[(xi * tiles + t) * c + first..]);
                }
            }
        }
    }
}

/// Adds the input gradient of the group's `images` images to `dx` (images, c, h, w) from
/// `dv_t` (16, tiles, c), the gradient of their transformed input: `B dV B^T` of each tile
/// added to the 4x4 input tile it was read from (channels-last, then copied back).
#[inline(always)]
fn add_transformed_input_grad<T: WithDType>(g: &ConvGeometry, dv_t: &[T], images: usize, dx: &mut [T]) {
    let (tp, (rows, cols), c) = (tiles_per_image(g), padded_plane(g), g.c);
    let tiles = images * tp;
    let mut padded = vec![T::zero(); rows * cols * c];
    let (mut block, mut transformed) = (zero_block(), zero_block());
    for (j, image) in dx.chunks_exact_mut(g.image()).take(images).enumerate() {
        padded.fill(T::zero());
        for (q, ty, tx) in tiles_of(g) {
            let t = j * tp + q;
            for (first, len) in channel_blocks(c) {
                for (xi, lanes) in block.iter_mut().enumerate() {
                    copy_lanes(&dv_t[(xi * tiles + t) * c + first..], len, lanes);
                }
                transform_block(&block, (input_transform_adjoint, input_transform_adjoint), &mut transformed);
                for (at, lanes) in transformed.iter().enumerate() {
                    let position = (2 * ty + at / 4) * cols + 2 * tx + at % 4;
                    let dst = &mut padded[position * c + first..][..len];
                    dst.iter_mut().zip(lanes).for_each(|(d, &value)| *d += value);
                }
            }
        }
        for (ci, plane) in image.chunks_exact_mut(g.h * g.w).enumerate() {
            for (iy, row) in plane.chunks_exact_mut(g.w).enumerate() {
                let src = padded[((iy + g.padding.0) * cols + g.padding.1) * c + ci..].iter().step_by(c);
                row.iter_mut().zip(src).for_each(|(d, &value)| *d += value);
            }
        }
    }
}

/// `relu?(A^T M A + bias)` of every tile of `m_t` (16, tiles, cout) into the group's output
/// `out` (cout, images * positions), by way of one image's output channels-last.
#[inline(always)]
fn transform_output<T: WithDType>(
    g: &ConvGeometry,
    m_t: &[T],
    (images, bias, relu): (usize, &[T], bool),
    out: &mut [T],
) {
    let (tp, p, cout) = (tiles_per_image(g), g.positions(), g.cout);
    let (tiles, n) = (images * tp, images * p);
    let mut image_out = vec![T::zero(); p * cout];
    let (mut block, mut transformed) = (zero_block(), zero_block());
    let mut bias_lanes = [T::zero(); LANES];
    for j in 0..images {
        for (q, ty, tx) in tiles_of(g) {
            let t = j * tp + q;
            for (first, len) in channel_blocks(cout) {
                for (xi, lanes) in block.iter_mut().enumerate() {
                    copy_lanes(&m_t[(xi * tiles + t) * cout + first..], len, lanes);
                }
                copy_lanes(&bias[first..], len, &mut bias_lanes);
                transform_block(&block, (output_transform, output_transform), &mut transformed);
                for (at, lanes) in transformed.iter().take(4).enumerate() {
                    let (oy, ox) = (2 * ty + at / 2, 2 * tx + at % 2);
                    if oy < g.oh && ox < g.ow {
                        let values: [T; LANES] = std::array::from_fn(|l| {
                            let y = lanes[l] + bias_lanes[l];
                            if relu && y < T::zero() {
                                T::zero()
                            } else {
                                y
                            }
                        });
                        copy_lanes(&values, len, &mut image_out[(oy * g.ow + ox) * cout + first..]);
                    }
                }
            }
        }
        for (o, plane) in out.chunks_exact_mut(n).take(cout).enumerate() {
            let src = image_out[o..].iter().step_by(cout);
            plane[j * p..][..p].iter_mut().zip(src).for_each(|(d, &value)| *d = value);
        }
    }
}

/// `dm_t` (16, tiles, cout) = `A dY A^T` of every tile of the group's output gradient `dy`
/// (cout, images * positions), by way of one image's gradient channels-last; outputs beyond
/// the map count as zero.
#[inline(always)]
fn transform_output_grad<T: WithDType>(g: &ConvGeometry, dy: &[T], images: usize, dm_t: &mut [T]) {
    let (tp, p, cout) = (tiles_per_image(g), g.positions(), g.cout);
    let (tiles, n) = (images * tp, images * p);
    let (th, tw) = tile_grid(g);
    let cols = 2 * tw;
    let mut image_grad = vec![T::zero(); 2 * th * cols * cout];
    let (mut block, mut transformed) = (zero_block(), zero_block());
    for j in 0..images {
        for (o, plane) in dy.chunks_exact(n).take(cout).enumerate() {
            for (oy, row) in plane[j * p..][..p].chunks_exact(g.ow).enumerate() {
                let dst = image_grad[oy * cols * cout + o..].iter_mut().step_by(cout);
                dst.zip(row).for_each(|(d, &value)| *d = value);
            }
        }
        for (q, ty, tx) in tiles_of(g) {
            let t = j * tp + q;
            for (first, len) in channel_blocks(cout) {
                for (at, lanes) in block.iter_mut().take(4).enumerate() {
                    let position = (2 * ty + at / 2) * cols + 2 * tx + at % 2;
                    copy_lanes(&image_grad[position * cout + first..], len, lanes);
                }
                transform_block(&block, (output_transform_adjoint, output_transform_adjoint), &mut transformed);
                for (xi, lanes) in transformed.iter().enumerate() {
                    copy_lanes(lanes, len, &mut dm_t[(xi * tiles + t) * cout + first..]);
                }
            }
        }
    }
}

/// One of the group's tile transforms, run by [`GroupTransform::run`].
enum Transform<'a, T> {
    Input { x: &'a [T], v_t: &'a mut [T] },
    InputGrad { dv_t: &'a [T], dx: &'a mut [T] },
    Output { m_t: &'a [T], bias: &'a [T], relu: bool, out: &'a mut [T] },
    OutputGrad { dy: &'a [T], dm_t: &'a mut [T] },
}

/// A [`Transform`] of the group of `images` images of the convolution `g`.
struct GroupTransform<'a, T> {
    g: &'a ConvGeometry,
    images: usize,
    transform: Transform<'a, T>,
}

impl<T: WithDType> GroupTransform<'_, T> {
    /// Runs the transform compiled for the vector instructions the CPU has (found at run time,
    /// like the `gemm` crate's kernels): the binaries target baseline x86-64, where the lane
    /// loops would run on 4-wide SSE at best.
    fn run(self) {
        pulp::Arch::new().dispatch(self)
    }
}

impl<T: WithDType> pulp::WithSimd for GroupTransform<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (g, images) = (self.g, self.images);
        match self.transform {
            Transform::Input { x, v_t } => transform_input(g, x, images, v_t),
            Transform::InputGrad { dv_t, dx } => add_transformed_input_grad(g, dv_t, images, dx),
            Transform::Output { m_t, bias, relu, out } => transform_output(g, m_t, (images, bias, relu), out),
            Transform::OutputGrad { dy, dm_t } => transform_output_grad(g, dy, images, dm_t),
        }
    }
}

/// `relu?(conv(x, w) + bias)` of the `images` images in `x` into the group's output `out`
/// (cout, images * positions), given `u_t` = [`transform_weights`] transposed and `scratch` of [`scratch_len`].
pub(crate) fn forward_group<T: WithDType>(
    g: &ConvGeometry,
    (x, u_t, bias): (&[T], &[T], &[T]),
    (images, relu): (usize, bool),
    (scratch, parallel): (&mut [T], bool),
    out: &mut [T],
) {
    let tiles = images * tiles_per_image(g);
    let (v_t, m_t) = scratch[..scratch_len(g, images)].split_at_mut(XI * tiles * g.c);
    GroupTransform { g, images, transform: Transform::Input { x, v_t } }.run();
    for xi in 0..XI {
        let lhs = MatRef { data: &v_t[xi * tiles * g.c..][..tiles * g.c], row_stride: g.c, col_stride: 1 };
        let rhs = MatRef { data: &u_t[xi * g.c * g.cout..][..g.c * g.cout], row_stride: g.cout, col_stride: 1 };
        matmul((tiles, g.cout, g.c), &mut m_t[xi * tiles * g.cout..], false, (lhs, rhs), parallel);
    }
    GroupTransform { g, images, transform: Transform::Output { m_t, bias, relu, out } }.run();
}

/// The backward pass of one group of `images` images from its output gradient `dy` (cout,
/// images * positions): adds `dU^T` to `du_t` (16, c, cout) when given, and the input
/// gradient to `dx` (images, c, h, w) when given, with `u` from [`transform_weights`] (empty
/// without `dx`) and `scratch` of [`scratch_len`].
pub(crate) fn backward_group<T: WithDType>(
    g: &ConvGeometry,
    (x, u, dy): (&[T], &[T], &[T]),
    images: usize,
    (du_t, dx): (Option<&mut [T]>, Option<&mut [T]>),
    (scratch, parallel): (&mut [T], bool),
) {
    let tiles = images * tiles_per_image(g);
    let (v_t, dm_t) = scratch[..scratch_len(g, images)].split_at_mut(XI * tiles * g.c);
    GroupTransform { g, images, transform: Transform::OutputGrad { dy, dm_t } }.run();
    let dm_of =
        |xi: usize| MatRef { data: &dm_t[xi * tiles * g.cout..][..tiles * g.cout], row_stride: g.cout, col_stride: 1 };
    if let Some(du_t) = du_t {
        GroupTransform { g, images, transform: Transform::Input { x, v_t } }.run();
        for xi in 0..XI {
            let lhs = MatRef { data: &v_t[xi * tiles * g.c..][..tiles * g.c], row_stride: 1, col_stride: g.c };
            matmul((g.c, g.cout, tiles), &mut du_t[xi * g.c * g.cout..], true, (lhs, dm_of(xi)), parallel);
        }
    }
    if let Some(dx) = dx {
        for xi in 0..XI {
            let rhs = MatRef { data: &u[xi * g.cout * g.c..][..g.cout * g.c], row_stride: g.c, col_stride: 1 };
            matmul((tiles, g.c, g.cout), &mut v_t[xi * tiles * g.c..], false, (dm_of(xi), rhs), parallel);
        }
        GroupTransform { g, images, transform: Transform::InputGrad { dv_t: v_t, dx } }.run();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot<const N: usize>(a: [f64; N], b: [f64; N]) -> f64 {
        a.iter().zip(&b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn one_axis_computes_two_outputs_of_a_three_tap_correlation() {
        let (d, k) = ([0.3, -1.7, 2.9, 0.6], [1.1, -0.4, 2.3]);
        let (u, v) = (kernel_transform(k), input_transform(d));
        let y = output_transform(std::array::from_fn(|i| u[i] * v[i]));
        for (o, &y) in y.iter().enumerate() {
            let direct: f64 = (0..3).map(|t| d[o + t] * k[t]).sum();
            assert!((y - direct).abs() < 1e-12, "output {o}: {y} against {direct}");
        }
    }

    #[test]
    fn each_adjoint_is_the_transpose_of_its_transform() {
        // <T x, y> = <x, T^T y> for random x and y.
        let (x3, x4, x2) = ([0.7, -1.3, 2.1], [1.9, 0.2, -0.8, 1.4], [-0.6, 1.7]);
        let (y4, y2) = ([0.5, -2.2, 1.1, 0.9], [1.3, -0.4]);
        assert!((dot(kernel_transform(x3), y4) - dot(x3, kernel_transform_adjoint(y4))).abs() < 1e-12);
        assert!((dot(input_transform(x4), y4) - dot(x4, input_transform_adjoint(y4))).abs() < 1e-12);
        assert!((dot(output_transform(x4), y2) - dot(x4, output_transform_adjoint(y2))).abs() < 1e-12);
        assert!((dot(output_transform_adjoint(x2), y4) - dot(x2, output_transform(y4))).abs() < 1e-12);
    }
}
