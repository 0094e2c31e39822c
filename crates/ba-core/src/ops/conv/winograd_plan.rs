//! Which convolutions run by Winograd's algorithm ([`super::winograd`]), and on what: the
//! images themselves (3x3 and 5x5 kernels with stride 1) or their block images
//! ([`super::space_to_depth`]: AlexNet's first layer).

use candle_core::WithDType;

use super::geometry::ConvGeometry;
use super::space_to_depth::SpaceToDepth;
use super::winograd::{Algorithm, Images, Output, OutputGrad};

/// A convolution run by Winograd's algorithm: `algorithm` on the convolution `inner`, which is
/// the convolution itself or, through `blocks`, its rewrite with stride 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WinogradPlan {
    algorithm: Algorithm,
    inner: ConvGeometry,
    blocks: Option<SpaceToDepth>,
}

impl WinogradPlan {
    /// The plan for `g`, if Winograd's algorithm runs it: on the images where it runs `g`
    /// itself, else on the block images where it runs their convolution (a strided `g` whose
    /// block kernel is 3x3 or 5x5).
    pub(crate) fn of(g: &ConvGeometry) -> Option<Self> {
        match Algorithm::of(g) {
            Some(algorithm) => Some(Self { algorithm, inner: *g, blocks: None }),
            None => SpaceToDepth::of(g).and_then(|blocks| {
                Algorithm::of(&blocks.inner).map(|algorithm| Self {
                    algorithm,
                    inner: blocks.inner,
                    blocks: Some(blocks),
                })
            }),
        }
    }

    /// The same plan for a batch of any size: what its weight transform depends on.
    pub(crate) fn for_any_batch(&self) -> Self {
        Self { inner: ConvGeometry { b: 0, ..self.inner }, blocks: self.blocks.map(|b| b.for_any_batch()), ..*self }
    }

    /// Tiles of one image.
    pub(crate) fn tiles_per_image(&self) -> usize {
        self.algorithm.tiles_per_image(&self.inner)
    }

    /// Tiles a group should reach at least ([`Algorithm::group_tiles`]).
    pub(crate) fn group_tiles(&self) -> usize {
        self.algorithm.group_tiles()
    }

    /// Values of one group's block images (none without the rewrite).
    fn block_images_len(&self, images: usize) -> usize {
        self.blocks.map_or(0, |_| images * self.inner.image())
    }

    /// Values of the scratch buffer [`Self::forward_group`] and [`Self::backward_group`] need
    /// for a group of `images` images: the algorithm's, and room for the gradient of the
    /// group's block images.
    pub(crate) fn scratch_len(&self, images: usize) -> usize {
        self.algorithm.scratch_len(&self.inner, images) + self.block_images_len(images)
    }

    /// Values of the transformed weight or its gradient.
    pub(crate) fn transformed_weight_len(&self) -> usize {
        self.algorithm.transformed_weight_len(&self.inner)
    }

    /// The transformed weight of `w` (see [`Algorithm::transform_weights`]).
    pub(crate) fn transform_weights<T: WithDType>(&self, w: &[T], transposed: bool) -> Vec<T> {
        match self.blocks {
            Some(blocks) => self.algorithm.transform_weights(&self.inner, &blocks.weight(w), transposed),
            None => self.algorithm.transform_weights(&self.inner, w, transposed),
        }
    }

    /// The weight's gradient from the transformed weight's (see [`Algorithm::weight_grad`]).
    pub(crate) fn weight_grad<T: WithDType>(&self, du_t: &[T]) -> Vec<T> {
        let dw = self.algorithm.weight_grad(&self.inner, du_t);
        match self.blocks {
            Some(blocks) => blocks.weight_grad(&dw),
            None => dw,
        }
    }

    /// The group's `images` images in `x` as the algorithm reads them.
    fn images<'a, T>(&'a self, x: &'a [T], images: usize) -> Images<'a, T> {
        let x = &x[..images * self.image()];
        match &self.blocks {
            Some(blocks) => Images::Blocks(x, blocks),
            None => Images::Planes(x),
        }
    }

    /// See [`Algorithm::forward_group`].
    pub(crate) fn forward_group<T: WithDType>(
        &self,
        (x, u_t, bias): (&[T], &[T], &[T]),
        (images, relu): (usize, bool),
        (scratch, parallel): (&mut [T], bool),
        out: Output<'_, T>,
    ) {
        let x = self.images(x, images);
        self.algorithm.forward_group(&self.inner, (x, u_t, bias), (images, relu), (scratch, parallel), out);
    }

    /// See [`Algorithm::backward_group`]; `dx`, zeros on entry, receives the input gradient.
    pub(crate) fn backward_group<T: WithDType>(
        &self,
        (x, u, dy): (&[T], &[T], OutputGrad<'_, T>),
        images: usize,
        (du_t, dx): (Option<&mut [T]>, Option<&mut [T]>),
        (scratch, parallel): (&mut [T], bool),
    ) {
        let x = self.images(x, images);
        let Some(blocks) = &self.blocks else {
            self.algorithm.backward_group(&self.inner, (x, u, dy), images, (du_t, dx), (scratch, parallel));
            return;
        };
        let (d_blocks, scratch) = scratch.split_at_mut(self.block_images_len(images));
        let want_dx = dx.is_some();
        let d_inner = want_dx.then_some(&mut d_blocks[..]);
        self.algorithm.backward_group(&self.inner, (x, u, dy), images, (du_t, d_inner), (scratch, parallel));
        if let Some(dx) = dx {
            let d_images = d_blocks.chunks_exact(self.inner.image());
            for (d_block, dx) in d_images.zip(dx.chunks_exact_mut(self.image())) {
                blocks.add_input_grad(d_block, dx);
            }
        }
    }

    /// Values of one outer image.
    fn image(&self) -> usize {
        self.blocks.map_or(self.inner.image(), |blocks| blocks.outer_image())
    }
}
