//! Image transforms with torchvision's semantics, composed like `transforms.Compose`.
//!
//! Images travel as [`Image`]: three f32 planes with values in 0..=255 until [`Normalize`].

use rand::Rng as _;

use crate::dataset::{IMAGE_BYTES, IMAGE_SIDE};
use crate::Rng;

/// ImageNet channel means, as torchvision uses them.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

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
    /// A CIFAR-10 image from its 3,072 bytes.
    pub fn from_cifar(bytes: &[u8]) -> Self {
        assert_eq!(bytes.len(), IMAGE_BYTES);
        Self { height: IMAGE_SIDE, width: IMAGE_SIDE, data: bytes.iter().map(|&b| b as f32).collect() }
    }

    fn plane(&self, c: usize) -> &[f32] {
        &self.data[c * self.height * self.width..][..self.height * self.width]
    }
}

/// One step of a pipeline; `rng` supplies its randomness, if any.
pub trait Transform: Send + Sync {
    /// Transforms `image`.
    fn apply(&self, image: Image, rng: &mut Rng) -> Image;
}

/// Transforms applied in order.
pub struct Compose(pub Vec<Box<dyn Transform>>);

impl Transform for Compose {
    fn apply(&self, image: Image, rng: &mut Rng) -> Image {
        self.0.iter().fold(image, |img, t| t.apply(img, rng))
    }
}

/// `Resize((height, width))` with bilinear interpolation and half-pixel centres
/// (`align_corners=False`). Used here for upscaling, where antialiasing changes nothing.
pub struct Resize {
    /// Output height.
    pub height: usize,
    /// Output width.
    pub width: usize,
}

/// For each output coordinate: the two source indices and the weight of the second.
fn bilinear_taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

impl Transform for Resize {
    fn apply(&self, image: Image, _rng: &mut Rng) -> Image {
        let (h, w) = (image.height, image.width);
        if (h, w) == (self.height, self.width) {
            return image;
        }
        let ys = bilinear_taps(h, self.height);
        let xs = bilinear_taps(w, self.width);
        let mut data = Vec::with_capacity(3 * self.height * self.width);
        for c in 0..3 {
            let p = image.plane(c);
            for &(y0, y1, ly) in &ys {
                for &(x0, x1, lx) in &xs {
                    let top = p[y0 * w + x0] * (1.0 - lx) + p[y0 * w + x1] * lx;
                    let bottom = p[y1 * w + x0] * (1.0 - lx) + p[y1 * w + x1] * lx;
                    data.push(top * (1.0 - ly) + bottom * ly);
                }
            }
        }
        Image { height: self.height, width: self.width, data }
    }
}

/// `RandomCrop(size)`: a uniformly placed `size` x `size` window (no padding).
pub struct RandomCrop {
    /// Side of the crop.
    pub size: usize,
}

impl Transform for RandomCrop {
    fn apply(&self, image: Image, rng: &mut Rng) -> Image {
        let (h, w, s) = (image.height, image.width, self.size);
        assert!(s <= h && s <= w, "RandomCrop({s}) of a {h}x{w} image");
        let top = rng.random_range(0..=h - s);
        let left = rng.random_range(0..=w - s);
        let mut data = Vec::with_capacity(3 * s * s);
        for c in 0..3 {
            let p = image.plane(c);
            for y in top..top + s {
                data.extend_from_slice(&p[y * w + left..y * w + left + s]);
            }
        }
        Image { height: s, width: s, data }
    }
}

/// `RandomHorizontalFlip(p)`.
pub struct RandomHorizontalFlip {
    /// Probability of flipping.
    pub p: f64,
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, mut image: Image, rng: &mut Rng) -> Image {
        if rng.random::<f64>() < self.p {
            let w = image.width;
            image.data.chunks_exact_mut(w).for_each(|row| row.reverse());
        }
        image
    }
}

/// `ToTensor()` followed by `Normalize(mean, std)`: `(x / 255 - mean) / std` per channel.
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
}

impl Transform for Normalize {
    fn apply(&self, mut image: Image, _rng: &mut Rng) -> Image {
        let n = image.height * image.width;
        for (c, plane) in image.data.chunks_exact_mut(n).enumerate() {
            let (scale, shift) = (1.0 / (255.0 * self.std[c]), self.mean[c] / self.std[c]);
            plane.iter_mut().for_each(|v| *v = *v * scale - shift);
        }
        image
    }
}

/// The notebook's test pipeline: `Resize(128, 128)`, `Normalize(ImageNet)`.
pub fn test_pipeline(size: usize) -> Compose {
    Compose(vec![Box::new(Resize { height: size, width: size }), Box::new(Normalize::imagenet())])
}

/// A light training pipeline: `Resize(size + 2)`, `RandomCrop(size)`, `RandomHorizontalFlip(0.5)`,
/// `Normalize(ImageNet)`. The notebook's full augmentation (colour jitter, random resized crop,
/// rotation, mixup) is not implemented yet.
pub fn simple_train_pipeline(size: usize) -> Compose {
    Compose(vec![
        Box::new(Resize { height: size + 2, width: size + 2 }),
        Box::new(RandomCrop { size }),
        Box::new(RandomHorizontalFlip { p: 0.5 }),
        Box::new(Normalize::imagenet()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> Rng {
        Rng::seed_from_u64(0)
    }

    fn image(h: usize, w: usize, f: impl Fn(usize, usize, usize) -> f32) -> Image {
        let mut data = Vec::new();
        for c in 0..3 {
            for y in 0..h {
                for x in 0..w {
                    data.push(f(c, y, x));
                }
            }
        }
        Image { height: h, width: w, data }
    }

    #[test]
    fn resize_matches_pytorch_bilinear_on_a_known_case() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 10.], [20., 30.]]]]), size=(4, 4),
        // mode="bilinear", align_corners=False) gives these rows.
        let img = image(2, 2, |_, y, x| (y * 20 + x * 10) as f32);
        let out = Resize { height: 4, width: 4 }.apply(img, &mut rng());
        let want = [[0.0, 2.5, 7.5, 10.0], [5.0, 7.5, 12.5, 15.0], [15.0, 17.5, 22.5, 25.0], [20.0, 22.5, 27.5, 30.0]];
        assert_eq!(&out.data[..16], want.concat().as_slice());
    }

    #[test]
    fn resize_keeps_constant_images_constant() {
        let out = Resize { height: 130, width: 130 }.apply(image(32, 32, |c, _, _| c as f32 * 50.0), &mut rng());
        assert!(out.data[..130 * 130].iter().all(|&v| v == 0.0));
        assert!(out.data[2 * 130 * 130..].iter().all(|&v| v == 100.0));
    }

    #[test]
    fn crop_takes_a_window_and_flip_mirrors_rows() {
        let img = image(5, 5, |c, y, x| (c * 100 + y * 10 + x) as f32);
        let crop = RandomCrop { size: 3 }.apply(img, &mut rng());
        let (y0, x0) = ((crop.data[0] as usize / 10) % 10, crop.data[0] as usize % 10);
        assert!(y0 <= 2 && x0 <= 2);
        assert_eq!(crop.data[4], ((y0 + 1) * 10 + x0 + 1) as f32);
        assert_eq!(crop.data[9], (100 + y0 * 10 + x0) as f32);
        let flipped = RandomHorizontalFlip { p: 1.0 }.apply(crop.clone(), &mut rng());
        assert_eq!(flipped.data[0], crop.data[2]);
        let kept = RandomHorizontalFlip { p: 0.0 }.apply(crop.clone(), &mut rng());
        assert_eq!(kept, crop);
    }

    #[test]
    fn normalize_uses_imagenet_statistics() {
        let out = Normalize::imagenet().apply(image(1, 1, |_, _, _| 255.0), &mut rng());
        for c in 0..3 {
            let want = (1.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
            assert!((out.data[c] - want).abs() < 1e-6);
        }
    }
}
