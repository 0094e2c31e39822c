//! Image transforms with torchvision's semantics (its tensor path on float images), composed like
//! `transforms.Compose`, and the notebook's two pipelines built from them.
//!
//! Images travel as [`Image`]: three f32 planes with values on the 0..=255 scale until
//! [`Normalize`]. Every random transform splits into a public `sample` (draws the parameters:
//! crop box, angle, factors) and `apply_with` (deterministic given them), and every transform
//! takes its parameters as a [`Drawn`] value too ([`Transform::apply_drawn`]), so each, and a
//! whole pipeline in its own order ([`Compose::apply_each_drawn`]), can be checked against
//! torchvision with the same parameters. Batch-level mixup lives in [`mixup`].

mod color;
mod geometry;
pub mod mixup;
mod resample;

use crate::dataset::{IMAGE_BYTES, IMAGE_SIDE};
use crate::Rng;

pub use color::{adjust_brightness, adjust_contrast, adjust_saturation, ColorJitter, JitterParams, JitterStep};
pub use geometry::{
    crop, horizontal_flip, pad, rotate, CropBox, RandomCrop, RandomHorizontalFlip, RandomResizedCrop, RandomRotation,
};
pub use resample::{resized_crop, Resize};

/// ImageNet channel means, as torchvision uses them.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Largest pixel value before normalisation: the float equivalent of torchvision's uint8 bound.
pub const PIXEL_MAX: f32 = 255.0;
/// Channel means of CIFAR-10's 50,000 training images, on the 0..1 scale.
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// Channel standard deviations of CIFAR-10's 50,000 training images (over all their pixels).
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

/// A 3-channel image, channel-major (C, H, W).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// 3 * height * width values, channel-major.
    pub data: Vec<f32>,
}

impl Image {
    /// A CIFAR-10 image from its 3,072 bytes (red, green, blue planes).
    pub fn from_cifar(bytes: &[u8]) -> Self {
        assert_eq!(bytes.len(), IMAGE_BYTES, "a CIFAR-10 image has {IMAGE_BYTES} bytes");
        Self { height: IMAGE_SIDE, width: IMAGE_SIDE, data: bytes.iter().map(|&b| b as f32).collect() }
    }

    /// Pixels per channel.
    pub fn area(&self) -> usize {
        self.height * self.width
    }

    /// Channel `c` (0 red, 1 green, 2 blue), row-major.
    pub fn plane(&self, c: usize) -> &[f32] {
        &self.data[c * self.area()..][..self.area()]
    }
}

/// The parameters one application of a transform draws.
#[derive(Debug, Clone, PartialEq)]
pub enum Drawn {
    /// A transform that draws nothing (resize, normalise).
    Nothing,
    /// The order and factors of a colour jitter.
    Jitter(JitterParams),
    /// The window of a (resized) crop.
    Crop(CropBox),
    /// Whether a random flip flips.
    Flip(bool),
    /// A rotation's angle in degrees.
    Rotation(f64),
}

/// One step of a pipeline; `rng` supplies its randomness, if any.
pub trait Transform: Send + Sync {
    /// Transforms `image`.
    fn apply(&self, image: Image, rng: &mut Rng) -> Image;

    /// Transforms `image` with the parameters `drawn` instead of drawing them; `None` when
    /// `drawn` is not the kind this transform draws.
    fn apply_drawn(&self, image: Image, drawn: &Drawn) -> Option<Image>;
}

/// Transforms applied in order.
pub struct Compose(pub Vec<Box<dyn Transform>>);

impl Compose {
    /// Applies each transform with its own entry of `drawn`, in order: the pipeline with fixed
    /// parameters, as a reference implementation would be run. Fails, naming the step, when
    /// `drawn` has another length or a step another kind of parameters (a pipeline whose order
    /// changed).
    pub fn apply_each_drawn(&self, image: Image, drawn: &[Drawn]) -> Result<Image, String> {
        if drawn.len() != self.0.len() {
            return Err(format!("{} parameter sets for a pipeline of {} transforms", drawn.len(), self.0.len()));
        }
        self.0.iter().zip(drawn).enumerate().try_fold(image, |img, (i, (t, d))| {
            t.apply_drawn(img, d).ok_or_else(|| format!("transform {} of {} does not take {d:?}", i + 1, drawn.len()))
        })
    }
}

impl Transform for Compose {
    fn apply(&self, image: Image, rng: &mut Rng) -> Image {
        self.0.iter().fold(image, |img, t| t.apply(img, rng))
    }

    /// A pipeline takes one parameter set per step: see [`Compose::apply_each_drawn`].
    fn apply_drawn(&self, _image: Image, _drawn: &Drawn) -> Option<Image> {
        None
    }
}

/// `ToTensor()` followed by `Normalize(mean, std)`: `(x / 255 - mean) / std` per channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalize {
    /// Channel means, on the 0..1 scale.
    pub mean: [f32; 3],
    /// Channel standard deviations, on the 0..1 scale.
    pub std: [f32; 3],
}

impl Normalize {
    /// The ImageNet statistics the notebook uses.
    pub fn imagenet() -> Self {
        Self { mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    /// CIFAR-10's own statistics ([`CIFAR10_MEAN`], [`CIFAR10_STD`]), as the CIFAR ResNets use.
    pub fn cifar10() -> Self {
        Self { mean: CIFAR10_MEAN, std: CIFAR10_STD }
    }

    /// Normalises in place.
    pub fn apply_in_place(&self, image: &mut Image) {
        let n = image.area();
        for (c, plane) in image.data.chunks_exact_mut(n).enumerate() {
            let (scale, shift) = (1.0 / (PIXEL_MAX * self.std[c]), self.mean[c] / self.std[c]);
            plane.iter_mut().for_each(|v| *v = *v * scale - shift);
        }
    }

    /// The inverse: normalised values back to the 0..=255 scale (for showing images).
    pub fn denormalize(&self, image: &mut Image) {
        let n = image.area();
        for (c, plane) in image.data.chunks_exact_mut(n).enumerate() {
            plane.iter_mut().for_each(|v| *v = (*v * self.std[c] + self.mean[c]) * PIXEL_MAX);
        }
    }
}

impl Transform for Normalize {
    fn apply(&self, mut image: Image, _rng: &mut Rng) -> Image {
        self.apply_in_place(&mut image);
        image
    }

    fn apply_drawn(&self, mut image: Image, drawn: &Drawn) -> Option<Image> {
        (drawn == &Drawn::Nothing).then(|| {
            self.apply_in_place(&mut image);
            image
        })
    }
}

/// The notebook's test pipeline: `Resize((size, size))`, `Normalize(ImageNet)`.
pub fn test_pipeline(size: usize) -> Compose {
    Compose(vec![Box::new(Resize { height: size, width: size }), Box::new(Normalize::imagenet())])
}

/// The notebook's training pipeline (before batch-level mixup): `Resize((size + 2, size + 2))`,
/// `ColorJitter(0.5, 0.5, 0.5)`, `RandomResizedCrop(size, scale=(0.4, 1))`,
/// `RandomHorizontalFlip(0.5)`, `RandomRotation(45)`, `Normalize(ImageNet)`.
pub fn notebook_train_pipeline(size: usize) -> Compose {
    Compose(vec![
        Box::new(Resize { height: size + 2, width: size + 2 }),
        Box::new(ColorJitter::new(0.5, 0.5, 0.5)),
        Box::new(RandomResizedCrop::new(size, (0.4, 1.0))),
        Box::new(RandomHorizontalFlip { p: 0.5 }),
        Box::new(RandomRotation { degrees: 45.0 }),
        Box::new(Normalize::imagenet()),
    ])
}

/// A light training pipeline for quick experiments: `Resize((size + 2, size + 2))`,
/// `RandomCrop(size)`, `RandomHorizontalFlip(0.5)`, `Normalize(ImageNet)`.
pub fn simple_train_pipeline(size: usize) -> Compose {
    Compose(vec![
        Box::new(Resize { height: size + 2, width: size + 2 }),
        Box::new(RandomCrop { size, padding: 0 }),
        Box::new(RandomHorizontalFlip { p: 0.5 }),
        Box::new(Normalize::imagenet()),
    ])
}

/// The CIFAR ResNets' training pipeline (He et al. 2016, section 4.2, as torchvision writes
/// it): `RandomCrop(32, padding=4)`, `RandomHorizontalFlip(0.5)`, `Normalize(CIFAR-10)`.
pub fn cifar_train_pipeline() -> Compose {
    Compose(vec![
        Box::new(RandomCrop { size: 32, padding: 4 }),
        Box::new(RandomHorizontalFlip { p: 0.5 }),
        Box::new(Normalize::cifar10()),
    ])
}

/// The CIFAR ResNets' evaluation pipeline: the 32x32 image, `Normalize(CIFAR-10)`.
pub fn cifar_test_pipeline() -> Compose {
    Compose(vec![Box::new(Normalize::cifar10())])
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::Image;
    use rand::SeedableRng;

    pub fn rng() -> crate::Rng {
        crate::Rng::seed_from_u64(0)
    }

    pub fn image(h: usize, w: usize, f: impl Fn(usize, usize, usize) -> f32) -> Image {
        let mut data = Vec::with_capacity(3 * h * w);
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    data.push(f(c, y, x));
                }
            }
        }
        Image { height: h, width: w, data }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{image, rng};
    use super::*;

    #[test]
    fn normalize_uses_imagenet_statistics_and_inverts() {
        let original = image(1, 1, |_, _, _| 255.0);
        let out = Normalize::imagenet().apply(original.clone(), &mut rng());
        for c in 0..3 {
            let want = (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            assert!((out.data[c] - want).abs() < 1e-6);
        }
        let mut back = out;
        Normalize::imagenet().denormalize(&mut back);
        assert!(back.data.iter().all(|v| (v - 255.0).abs() < 1e-3), "{:?}", back.data);
    }

    #[test]
    fn pipelines_produce_the_model_input_size() {
        let cifar = Image::from_cifar(&[7u8; IMAGE_BYTES]);
        for pipeline in [notebook_train_pipeline(128), simple_train_pipeline(128), test_pipeline(128)] {
            let out = pipeline.apply(cifar.clone(), &mut rng());
            assert_eq!((out.height, out.width, out.data.len()), (128, 128, 3 * 128 * 128));
            assert!(out.data.iter().all(|v| v.is_finite()));
        }
    }
}
