//! The CPU convolution's unit of work: a group of consecutive images whose column matrices
//! stand side by side in one matrix, so that each product of the forward and backward passes
//! is one GEMM per group.
//!
//! For layers with many output positions a group is one image. The 7x7 layers of AlexNet have
//! 49 positions per image, and the GEMM tiles the positions 16 at a time: one image's product
//! runs three full tiles and a fourth for the one position left over, at 64-73 GFLOP/s on one
//! core; six images side by side (294 columns) run at 86-89 (`gemm` crate, the three 7x7
//! shapes, forward, measured in one process).
//!
//! The 3x3 and 5x5 layers with stride 1 run each group by Winograd's minimal filtering
//! instead of im2col ([`super::winograd`]): a^2 GEMMs of (tiles x c) by (c x cout), 3.06x fewer
//! multiplies at 7x7 (F(4x4, 3x3)) and 4.6x fewer at 15x15 (F(3x3, 5x5)). Measured in one
//! process, alternating, batch 128, on the AVX-512 VM: the 5x5 layer's forward and backward
//! 25-35% faster by F(2x2, 5x5) than by im2col, and by F(3x3, 5x5) 20% and 30% faster again;
//! the 7x7 layers 15-30% faster by F(4x4, 3x3) than by F(2x2, 3x3), itself 10-30% faster
//! than im2col.

use std::sync::Arc;

use rayon::iter::Either;
use rayon::prelude::*;

use super::geometry::{col2im, im2col_strided, im2row, ConvGeometry};
use super::winograd::{Output, OutputGrad};
use super::winograd_plan::WinogradPlan;
use crate::ops::cpu::gemm::{matmul, MatRef};
use crate::ops::pool::max_pool2d::PooledGrad;
use candle_core::backend::BackendStorage;
use candle_core::{DType, Result, Storage, Tensor, WithDType};

use crate::ops::cpu::scratch::{scratch, Scratch};
use crate::ops::cpu::storage::{contiguous_slice, Wanted};
use crate::ops::cpu::weight_cache;

/// Columns a group's column matrix should reach at least.
const GROUP_COLUMNS: usize = 256;

/// Images per group for the convolution `g`, at most the batch: for Winograd's algorithm
/// enough for [`WinogradPlan::group_tiles`] tiles; else one where an image has 128 positions
/// or more, or enough for [`GROUP_COLUMNS`] columns (six at 7x7). The batch is then cut into
/// groups of equal size as near as may be: 32 images in groups of 24 would leave one thread
/// 24 images and the other 8, so they make two groups of 16.
pub(crate) fn images_per_group(g: &ConvGeometry) -> usize {
    let (per_image, wanted) = match WinogradPlan::of(g) {
        Some(plan) => (plan.tiles_per_image(), plan.group_tiles()),
        None if g.positions() >= 128 => return 1,
        None => (g.positions(), GROUP_COLUMNS),
    };
    let batch = g.b.max(1);
    let images = wanted.div_ceil(per_image.max(1)).clamp(1, batch);
    batch.div_ceil(batch.div_ceil(images))
}

/// Whether `groups` groups are spread over rayon's threads (each GEMM on one thread) rather
/// than run one after another with parallel GEMMs.
pub(crate) fn spread_groups(groups: usize) -> bool {
    let threads = rayon::current_num_threads();
    threads > 1 && groups >= threads
}

/// The groups each thread takes when `groups` groups are spread over rayon's threads: the
/// parallel loops are given it as their least piece, so that each thread allocates and zeroes
/// its scratch buffers once (rayon calls a loop's `init` once per piece it splits off; the
/// Winograd layers' scratch is megabytes: zeroed once per group, `memset` took 9.1% of a
/// profile of the batch-32 training step, once per thread 7.6%).
pub(crate) fn groups_per_thread(groups: usize) -> usize {
    groups.div_ceil(rayon::current_num_threads())
}

/// Calls `f(first image, images, the group's chunk of out, a scratch buffer of scratch_len,
/// parallel GEMM?)` for every group of `group` images (the last may be smaller), where each
/// image owns `per_image` consecutive values of `out`.
pub(crate) fn for_each_group<T: WithDType + Default>(
    out: &mut [T],
    (per_image, group): (usize, usize),
    scratch_len: usize,
    f: impl Fn(usize, usize, &mut [T], &mut [T], bool) + Sync,
) {
    let chunk = per_image * group;
    let call = |(index, out): (usize, &mut [T]), scratch: &mut Scratch<T>, parallel| {
        f(index * group, out.len() / per_image, out, scratch, parallel)
    };
    let groups = out.len().div_ceil(chunk);
    if spread_groups(groups) {
        out.par_chunks_mut(chunk)
            .enumerate()
            .with_min_len(groups_per_thread(groups))
            .for_each_init(|| scratch(scratch_len), |buffer, item| call(item, buffer, false));
    } else {
        let mut buffer = scratch(scratch_len);
        out.chunks_mut(chunk).enumerate().for_each(|item| call(item, &mut buffer, true));
    }
}

/// The column matrices of the `images` images in `x`, side by side in `col` (patch x images *
/// positions: image j's in columns j * p ..).
pub(crate) fn im2col_group<T: Copy + Default>(g: &ConvGeometry, x: &[T], images: usize, col: &mut [T]) {
    let (p, n) = (g.positions(), images * g.positions());
    for (j, image) in x.chunks_exact(g.image()).take(images).enumerate() {
        im2col_strided(g, image, &mut col[j * p..], n);
    }
}

/// Whether [`conv_group`] multiplies the transposed column matrices ([`im2row`], positions
/// x patch) into a position-major output, which it then transposes, rather than `W * col`.
///
/// Measured on one core with the `gemm` crate, AlexNet's first layer (48 x 1024 positions x
/// 363) runs at 38-52 GFLOP/s as `W * col` into a (cout x positions) output and at 84-97 as
/// rows x W^T into (positions x cout); its 11-wide kernel makes the row matrix as cheap to
/// build as the column matrix. For the 5x5 layer the GEMM gains 10% but gathering runs of five
/// values costs more than that, and the 7x7 layers have runs of three. AlexNet's first layer
/// runs by Winograd's algorithm on its block images ([`WinogradPlan`]); this path is for
/// large kernels that no plan covers, such as 11x11 with stride 2.
fn forward_is_position_major(g: &ConvGeometry) -> bool {
    g.positions() >= 128 && g.kw >= 7 && WinogradPlan::of(g).is_none()
}

/// The order of a group's output gradient `dy` in the backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DyOrder {
    /// (cout, images * positions): image j's positions of channel o start at
    /// `o * images * p + j * p`.
    ChannelMajor,
    /// (images * positions, cout), for the layers whose forward is position-major:
    /// there the weight gradient's `col * dY^T` reads dY^T in stored order, 109-113 against
    /// 92-94 GFLOP/s on one core at AlexNet's first layer's shape (`gemm` crate, AVX-512
    /// kernels).
    PositionMajor,
}

impl DyOrder {
    /// The order for the convolution `g`.
    pub(crate) fn of(g: &ConvGeometry) -> Self {
        if forward_is_position_major(g) {
            Self::PositionMajor
        } else {
            Self::ChannelMajor
        }
    }

    /// Where image j's (of `images`) positions of channel o start in `dy`, and the step
    /// between consecutive positions.
    pub(crate) fn plane(self, g: &ConvGeometry, images: usize, (j, o): (usize, usize)) -> (usize, usize) {
        let p = g.positions();
        match self {
            Self::ChannelMajor => (o * images * p + j * p, 1),
            Self::PositionMajor => (j * p * g.cout + o, g.cout),
        }
    }

    /// dY (cout x n) as a matrix operand.
    fn dy<T>(self, dy: &[T], (cout, n): (usize, usize)) -> MatRef<'_, T> {
        match self {
            Self::ChannelMajor => MatRef { data: dy, row_stride: n, col_stride: 1 },
            Self::PositionMajor => MatRef { data: dy, row_stride: 1, col_stride: cout },
        }
    }

    /// dY^T (n x cout) as a matrix operand.
    fn dy_t<T>(self, dy: &[T], (cout, n): (usize, usize)) -> MatRef<'_, T> {
        let MatRef { data, row_stride, col_stride } = self.dy(dy, (cout, n));
        MatRef { data, row_stride: col_stride, col_stride: row_stride }
    }

    /// Adds the sum of each channel's values in `dy` (cout x n) to `sums`, each channel's
    /// values summed from zero in position order first.
    fn add_channel_sums<T: WithDType>(self, dy: &[T], n: usize, sums: &mut [T]) {
        match self {
            Self::ChannelMajor => {
                for (sum, row) in sums.iter_mut().zip(dy.chunks_exact(n)) {
                    *sum += row.iter().fold(T::zero(), |a, &v| a + v);
                }
            }
            Self::PositionMajor => {
                let mut group = vec![T::zero(); sums.len()];
                for position in dy.chunks_exact(sums.len()).take(n) {
                    group.iter_mut().zip(position).for_each(|(a, &v)| *a += v);
                }
                sums.iter_mut().zip(&group).for_each(|(s, &v)| *s += v);
            }
        }
    }
}

/// A convolution's weight as the products of its groups use it.
pub(crate) enum ConvWeights<'a, T> {
    /// The weight (cout, c, kh, kw) as given, for im2col + GEMM.
    Direct(&'a [T]),
    /// The weight transformed for Winograd's algorithm, transposed (see
    /// [`WinogradPlan::transform_weights`]).
    Winograd(Box<WinogradPlan>, Arc<Vec<T>>),
}

impl<'a, T: WithDType> ConvWeights<'a, T> {
    /// The weight `w` of the convolution `g`, transformed where its groups run by Winograd's
    /// algorithm: once per call, or taken from the previous call while `w` is unchanged
    /// ([`weight_cache`]).
    pub(crate) fn new(g: &ConvGeometry, w: &'a [T]) -> Self {
        match WinogradPlan::of(g) {
            Some(plan) => {
                let u_t = weight_cache::transformed(plan.for_any_batch(), w, |w| plan.transform_weights(w, true));
                Self::Winograd(Box::new(plan), u_t)
            }
            None => Self::Direct(w),
        }
    }
}

/// Values of the scratch buffer [`conv_group`] needs for a group of `images` images.
pub(crate) fn conv_scratch_len(g: &ConvGeometry, images: usize) -> usize {
    let n = images * g.positions();
    if let Some(plan) = WinogradPlan::of(g) {
        plan.scratch_len(images)
    } else if forward_is_position_major(g) {
        g.patch() * ROW_BLOCK + g.cout * n
    } else {
        g.patch() * n
    }
}

/// Output positions whose rows [`conv_group`] builds and multiplies at a time on the
/// position-major path: 256 rows of the first layer (363 values each) take 372 KB, so the
/// GEMM reads them from the L2 cache they were just written to, where the whole image's 1.5 MB
/// made a round trip through L3.
const ROW_BLOCK: usize = 256;

/// `relu?(W * [im2col(x_0) .. im2col(x_n-1)] + bias)` of the `images` images in `x` into
/// `out` (cout x images * positions: image j's positions in columns j * p ..), with `scratch`
/// of [`conv_scratch_len`] values.
pub(crate) fn conv_group<T: WithDType + Default>(
    g: &ConvGeometry,
    (x, weights, bias): (&[T], &ConvWeights<'_, T>, &[T]),
    (images, relu): (usize, bool),
    scratch: &mut [T],
    out: &mut [T],
    parallel: bool,
) {
    let (p, patch) = (g.positions(), g.patch());
    let n = images * p;
    let out = &mut out[..g.cout * n];
    let w = match weights {
        ConvWeights::Direct(w) => *w,
        ConvWeights::Winograd(plan, u) => {
            plan.forward_group((x, u, bias), (images, relu), (scratch, parallel), Output::Planar(out));
            return;
        }
    };
    if forward_is_position_major(g) {
        let (rows, by_position) = scratch.split_at_mut(patch * ROW_BLOCK);
        let rhs = || MatRef { data: w, row_stride: 1, col_stride: patch };
        for (j, image) in x.chunks_exact(g.image()).take(images).enumerate() {
            for first in (0..p).step_by(ROW_BLOCK) {
                let block = first..(first + ROW_BLOCK).min(p);
                let m = block.len();
                im2row(g, image, block, rows);
                let lhs = MatRef { data: &*rows, row_stride: patch, col_stride: 1 };
                let dst = &mut by_position[(j * p + first) * g.cout..];
                matmul((m, g.cout, patch), dst, false, (lhs, rhs()), parallel);
            }
        }
        activate_transposed(&by_position[..n * g.cout], bias, relu, out);
    } else {
        let col = &mut scratch[..patch * n];
        im2col_group(g, x, images, col);
        let lhs = MatRef { data: w, row_stride: patch, col_stride: 1 };
        let rhs = MatRef { data: &*col, row_stride: n, col_stride: 1 };
        matmul((g.cout, n, patch), out, false, (lhs, rhs), parallel);
        for (row, &b) in out.chunks_exact_mut(n).zip(bias) {
            row.iter_mut().for_each(|v| *v = activate(*v + b, relu));
        }
    }
}

/// `y`, or 0 where a ReLU follows and `y` is negative.
#[inline(always)]
fn activate<T: WithDType>(y: T, relu: bool) -> T {
    if relu && y < T::zero() {
        T::zero()
    } else {
        y
    }
}

/// `out` (cout x n) = relu?(`by_position`^T + bias) for `by_position` (n x cout), 16
/// positions at a time so that the strided reads of a tile stay in the L1 cache.
fn activate_transposed<T: WithDType>(by_position: &[T], bias: &[T], relu: bool, out: &mut [T]) {
    const TILE: usize = 16;
    let (cout, n) = (bias.len(), out.len() / bias.len());
    for (t, tile) in by_position.chunks(TILE * cout).enumerate() {
        for (o, &b) in bias.iter().enumerate() {
            let dst = &mut out[o * n + t * TILE..][..tile.len() / cout];
            for (d, position) in dst.iter_mut().zip(tile.chunks_exact(cout)) {
                *d = activate(position[o] + b, relu);
            }
        }
    }
}

/// Copies the group layout (cout, images * p) of `src` into `images` images' (cout, p) blocks
/// of `dst` (images, cout, p).
pub(crate) fn from_group_layout<T: Copy>(src: &[T], (images, cout, p): (usize, usize, usize), dst: &mut [T]) {
    for (j, image) in dst.chunks_exact_mut(cout * p).take(images).enumerate() {
        for (o, plane) in image.chunks_exact_mut(p).enumerate() {
            plane.copy_from_slice(&src[o * images * p + j * p..][..p]);
        }
    }
}

/// Adds the input gradients col2im(W^T * dY) of a group of `images` images to `dx` (images, c,
/// h, w), given `w_t` = W^T (patch x cout) and `dy` (cout x images * p) in `order`, with
/// `col` (patch x images * p) as scratch.
pub(crate) fn add_input_grad<T: WithDType + Default>(
    g: &ConvGeometry,
    (w_t, dy, order): (&[T], &[T], DyOrder),
    images: usize,
    col: &mut [T],
    dx: &mut [T],
    parallel: bool,
) {
    let (p, patch) = (g.positions(), g.patch());
    let n = images * p;
    let lhs = MatRef { data: w_t, row_stride: g.cout, col_stride: 1 };
    matmul((patch, n, g.cout), col, false, (lhs, order.dy(dy, (g.cout, n))), parallel);
    for (j, dx) in dx.chunks_exact_mut(g.image()).take(images).enumerate() {
        col2im(g, &mut col[j * p..], n, dx);
    }
}

/// Adds a group's share of the weight gradient, `dy` (cout x n) times the group's column
/// matrix `col` (patch x n) transposed, to `dw_t`, the weight gradient transposed (patch x
/// cout): dW^T += col * dY^T, so that the GEMM packs the large column matrix in its stored
/// order and only the small dY transposed. [`finish_weight_grad`] turns the sum into (cout, c,
/// kh, kw) order.
///
/// 10-25% faster than dW += dY * col^T for the 11x11 and 5x5 layers' backward with AVX2
/// kernels; with AVX-512 kernels 2-8% faster for the 7x7 layers too, which with AVX2 showed no
/// difference (side-by-side timings, docs/benchmarks.md).
pub(crate) fn add_weight_grad<T: WithDType>(
    g: &ConvGeometry,
    (col, dy, order): (&[T], &[T], DyOrder),
    n: usize,
    dw_t: &mut [T],
    parallel: bool,
) {
    let lhs = MatRef { data: col, row_stride: n, col_stride: 1 };
    matmul((g.patch(), g.cout, n), dw_t, true, (lhs, order.dy_t(dy, (g.cout, n))), parallel);
}

/// The weight gradient in (cout, c, kh, kw) order from the transposed sum [`add_weight_grad`]
/// built.
pub(crate) fn finish_weight_grad<T: WithDType + Default>(g: &ConvGeometry, dw_t: Vec<T>) -> Vec<T> {
    transpose(&dw_t, g.patch(), g.cout)
}

/// The (cols x rows) transpose of a row-major (rows x cols) matrix.
pub(crate) fn transpose<T: Copy + Default>(m: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = vec![T::default(); m.len()];
    for (r, row) in m.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

/// A convolution's input, weight and bias gradients, each `None` when not wanted.
type Gradients<T> = (Option<Vec<T>>, Option<Vec<T>>, Option<Vec<T>>);

/// One thread's running sums of the weight and bias gradients, and its scratch buffers.
struct Partial<T> {
    dw: Vec<T>,
    db: Vec<T>,
    dy: Vec<T>,
    col: Scratch<T>,
}

impl<T: WithDType> Partial<T> {
    fn merge(mut self, other: Self) -> Self {
        self.dw.iter_mut().zip(&other.dw).for_each(|(a, &b)| *a += b);
        self.db.iter_mut().zip(&other.db).for_each(|(a, &b)| *a += b);
        self
    }
}

/// The wanted gradients of the convolution `g` of `x` by `w`, group by group: `output_grad`
/// makes each group's output gradient from the op's (gradient, result) over the batch (for
/// Winograd's algorithm a pooled gradient goes to the output transform as it is, else it is
/// written into `dy`, cout x images * positions, in the [`DyOrder`] of `g`); from it, while it
/// is in cache, the group's bias and weight gradients are added to one running sum per thread
/// and its input gradient is computed (`W^T * dY`, then col2im). Groups are spread over
/// rayon's threads as in the forward pass.
fn backward_by_groups<T: WithDType + Default>(
    g: &ConvGeometry,
    (x, w): (&[T], &[T]),
    wanted: Wanted,
    (grad_and_result, output_grad): ((&[T], &[T]), &impl GroupOutputGrad),
) -> Gradients<T> {
    let (p, patch, group) = (g.positions(), g.patch(), images_per_group(g));
    let order = DyOrder::of(g);
    let by_winograd = WinogradPlan::of(g);
    // W^T (or U) stored once: the GEMM packs a contiguous left operand 10-30% faster than a
    // transposed view, and packs it again for every group.
    let w_t = match (wanted.dx, by_winograd) {
        (false, _) => Vec::new(),
        (true, None) => transpose(w, g.cout, patch),
        (true, Some(plan)) => plan.transform_weights(w, false),
    };
    let zeros = |n| vec![T::zero(); n];
    let weight_len = match (wanted.dw, by_winograd) {
        (false, _) => 0,
        (true, None) => patch * g.cout,
        (true, Some(plan)) => plan.transformed_weight_len(),
    };
    let scratch_len = by_winograd.map_or(patch * group * p, |plan| plan.scratch_len(group));
    // `dy` is sized on first use: a pooled gradient that Winograd's transform scatters itself
    // needs none.
    let partial = || Partial { dw: zeros(weight_len), db: zeros(g.cout), dy: Vec::new(), col: scratch(scratch_len) };
    let run = |mut acc: Partial<T>, index: usize, dx: Option<&mut [T]>, parallel: bool| {
        let (first, images) = (index * group, group.min(g.b - index * group));
        let n = images * p;
        let Partial { dw, db, dy, col } = &mut acc;
        let pooled = by_winograd.and_then(|_| output_grad.pooled(grad_and_result, (first, images)));
        if let Some(pooled) = &pooled {
            pooled.add_channel_sums(g.cout, db);
        } else {
            dy.resize(g.cout * group * p, T::zero());
            output_grad.fill(grad_and_result, (first, images), order, &mut dy[..g.cout * n]);
            order.add_channel_sums(&dy[..g.cout * n], n, db);
        }
        let x = &x[first * g.image()..];
        if let Some(plan) = by_winograd {
            debug_assert_eq!(order, DyOrder::ChannelMajor, "Winograd's tiles read the group channel by channel");
            let dy = pooled.map_or_else(|| OutputGrad::Planar(&dy[..g.cout * n]), OutputGrad::Pooled);
            let du = wanted.dw.then_some(&mut dw[..]);
            plan.backward_group((x, &w_t, dy), images, (du, dx), (col, parallel));
            return acc;
        }
        let dy = &dy[..g.cout * n];
        if wanted.dw {
            im2col_group(g, x, images, col);
            add_weight_grad(g, (col, dy, order), n, dw, parallel);
        }
        if let Some(dx) = dx {
            add_input_grad(g, (&w_t, dy, order), images, col, dx, parallel);
        }
        acc
    };
    let groups = g.b.div_ceil(group);
    let mut dx = wanted.dx.then(|| zeros(g.b * g.image()));
    let sums = if spread_groups(groups) {
        let chunks = match dx.as_mut() {
            Some(dx) => Either::Left(dx.par_chunks_mut(group * g.image()).map(Some)),
            None => Either::Right((0..groups).into_par_iter().map(|_| None)),
        };
        chunks
            .enumerate()
            .with_min_len(groups_per_thread(groups))
            .fold(partial, |acc, (index, dx)| run(acc, index, dx, false))
            .reduce_with(Partial::merge)
            .unwrap_or_else(partial)
    } else {
        let mut acc = partial();
        let mut chunks = dx.as_mut().map(|dx| dx.chunks_mut(group * g.image()));
        for index in 0..groups {
            acc = run(acc, index, chunks.as_mut().and_then(|c| c.next()), true);
        }
        acc
    };
    let dw = match (wanted.dw, by_winograd) {
        (false, _) => None,
        (true, None) => Some(finish_weight_grad(g, sums.dw)),
        (true, Some(plan)) => Some(plan.weight_grad(&sums.dw)),
    };
    (dx, dw, wanted.db.then_some(sums.db))
}

/// How a CPU convolution op turns its own output gradient and forward result into a group's
/// convolution-output gradient (for [`cpu_backward`]).
pub(crate) trait GroupOutputGrad: Sync {
    /// Writes the output gradient of the group (first image, images) into `dy` (cout x images *
    /// positions, in `order`: see [`DyOrder::plane`]), from the op's (gradient, result) over
    /// the batch.
    fn fill<T: WithDType>(&self, grad_and_result: (&[T], &[T]), group: (usize, usize), order: DyOrder, dy: &mut [T]);

    /// The group's output gradient as a max-pool's, which Winograd's output transform scatters
    /// itself ([`OutputGrad::Pooled`]), with no [`Self::fill`]; `None` (the default) for an op
    /// without a pool.
    fn pooled<'a, T: WithDType>(
        &'a self,
        _grad_and_result: (&'a [T], &'a [T]),
        _group: (usize, usize),
    ) -> Option<PooledGrad<'a, T>> {
        None
    }
}

/// The backward pass on the CPU of an op that ends in the convolution `g` of `x` by `w` with
/// bias `b`: from the op's output gradient `grad` and result `res`, the gradients of (x, w,
/// b), each `None` when its tensor does not take part in backpropagation.
#[allow(clippy::type_complexity)]
pub(crate) fn cpu_backward(
    name: &str,
    g: &ConvGeometry,
    (x, w, b): (&Tensor, &Tensor, &Tensor),
    (grad, res): (&Tensor, &Tensor),
    output_grad: &impl GroupOutputGrad,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let wanted = Wanted::of(x, w, b);
    let grad = grad.contiguous()?;
    let (gs, gl) = grad.storage_and_layout();
    let (rs, rl) = res.storage_and_layout();
    let (xs, xl) = x.storage_and_layout();
    let (ws, wl) = w.storage_and_layout();
    let (Storage::Cpu(gs), Storage::Cpu(rs), Storage::Cpu(xs), Storage::Cpu(ws)) = (&*gs, &*rs, &*xs, &*ws) else {
        candle_core::bail!("{name}: this backward pass runs on the CPU");
    };
    let like = (x, w, b);
    match gs.dtype() {
        DType::F32 => tensor_gradients::<f32>(
            g,
            (contiguous_slice(name, gs, gl)?, contiguous_slice(name, rs, rl)?),
            (contiguous_slice(name, xs, xl)?, contiguous_slice(name, ws, wl)?),
            (wanted, output_grad),
            like,
        ),
        DType::F64 => tensor_gradients::<f64>(
            g,
            (contiguous_slice(name, gs, gl)?, contiguous_slice(name, rs, rl)?),
            (contiguous_slice(name, xs, xl)?, contiguous_slice(name, ws, wl)?),
            (wanted, output_grad),
            like,
        ),
        dt => candle_core::bail!("{name}: unsupported dtype {dt:?}"),
    }
}

/// [`backward_by_groups`] on the values of the op's output gradient and result and of x and
/// w, as tensors shaped like `like` = (x, w, b).
#[allow(clippy::type_complexity)]
fn tensor_gradients<T: WithDType + Default>(
    g: &ConvGeometry,
    (grad, res): (&[T], &[T]),
    (x, w): (&[T], &[T]),
    (wanted, output_grad): (Wanted, &impl GroupOutputGrad),
    like: (&Tensor, &Tensor, &Tensor),
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (dx, dw, db) = backward_by_groups(g, (x, w), wanted, ((grad, res), output_grad));
    let tensor =
        |v: Option<Vec<T>>, like: &Tensor| v.map(|v| Tensor::from_vec(v, like.dims(), like.device())).transpose();
    Ok((tensor(dx, like.0)?, tensor(dw, like.1)?, tensor(db, like.2)?))
}
