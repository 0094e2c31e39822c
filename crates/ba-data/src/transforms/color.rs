//! `ColorJitter` and the three adjustments it applies, as torchvision computes them on float
//! images: each is a blend `factor * image + (1 - factor) * other`, clamped to `0..=PIXEL_MAX`.

use rand::seq::SliceRandom;
use rand::Rng as _;

use super::{Drawn, Image, Transform, PIXEL_MAX};
use crate::Rng;

/// ITU-R 601-2 luma weights, as `rgb_to_grayscale` uses them.
const LUMA: [f32; 3] = [0.2989, 0.587, 0.114];

/// One adjustment of a colour jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum JitterStep {
    /// Blend with black.
    Brightness(f32),
    /// Blend with the image's mean grey level.
    Contrast(f32),
    /// Blend with the image's own grey version.
    Saturation(f32),
}

/// The parameters of one colour jitter: the adjustments in the order they apply.
#[derive(Debug, Clone, PartialEq)]
pub struct JitterParams(pub Vec<JitterStep>);

/// `ColorJitter(brightness, contrast, saturation)` (hue is not jittered): each factor is drawn
/// uniformly from `[max(0, 1 - v), 1 + v]` and the adjustments apply in a random order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColorJitter {
    /// Brightness range `v` (0 disables it).
    pub brightness: f32,
    /// Contrast range `v` (0 disables it).
    pub contrast: f32,
    /// Saturation range `v` (0 disables it).
    pub saturation: f32,
}

impl ColorJitter {
    /// A jitter with the three ranges.
    pub fn new(brightness: f32, contrast: f32, saturation: f32) -> Self {
        Self { brightness, contrast, saturation }
    }

    /// Draws the order (a random permutation, as `torch.randperm`) and the factors.
    pub fn sample(&self, rng: &mut Rng) -> JitterParams {
        let mut order = [0usize, 1, 2];
        order.shuffle(rng);
        let mut factor = |v: f32| (v > 0.0).then(|| rng.random_range((1.0 - v).max(0.0)..=1.0 + v));
        let (b, c, s) = (factor(self.brightness), factor(self.contrast), factor(self.saturation));
        let steps = order
            .iter()
            .filter_map(|&i| match i {
                0 => b.map(JitterStep::Brightness),
                1 => c.map(JitterStep::Contrast),
                _ => s.map(JitterStep::Saturation),
            })
            .collect();
        JitterParams(steps)
    }

    /// Applies given parameters.
    pub fn apply_with(params: &JitterParams, mut image: Image) -> Image {
        for step in &params.0 {
            match *step {
                JitterStep::Brightness(f) => adjust_brightness(&mut image, f),
                JitterStep::Contrast(f) => adjust_contrast(&mut image, f),
                JitterStep::Saturation(f) => adjust_saturation(&mut image, f),
            }
        }
        image
    }
}

impl Transform for ColorJitter {
    fn apply(&self, image: Image, rng: &mut Rng) -> Image {
        let params = self.sample(rng);
        Self::apply_with(&params, image)
    }

    fn apply_drawn(&self, image: Image, drawn: &Drawn) -> Option<Image> {
        match drawn {
            Drawn::Jitter(params) => Some(Self::apply_with(params, image)),
            _ => None,
        }
    }
}

fn clamp_pixel(v: f32) -> f32 {
    v.clamp(0.0, PIXEL_MAX)
}

/// `F.adjust_brightness`: `clamp(factor * x)`.
pub fn adjust_brightness(image: &mut Image, factor: f32) {
    image.data.iter_mut().for_each(|v| *v = clamp_pixel(factor * *v));
}

/// `F.adjust_contrast`: blend with the mean of the grey image.
pub fn adjust_contrast(image: &mut Image, factor: f32) {
    let n = image.area();
    let (r, rest) = image.data.split_at(n);
    let (g, b) = rest.split_at(n);
    // Eight f32 partial sums (the loop vectorises), added up in f64: as exact as torch's own
    // float reduction, well inside the fixture tolerance.
    const LANES: usize = 8;
    let mut lanes = [0.0f32; LANES];
    let chunks = r.chunks_exact(LANES).zip(g.chunks_exact(LANES)).zip(b.chunks_exact(LANES));
    for ((r, g), b) in chunks {
        for k in 0..LANES {
            lanes[k] += grey(r[k], g[k], b[k]);
        }
    }
    let tail = n - n % LANES;
    let rest: f64 = (tail..n).map(|i| grey(r[i], g[i], b[i]) as f64).sum();
    let sum = lanes.iter().map(|&v| v as f64).sum::<f64>() + rest;
    let other = (1.0 - factor) * (sum / n as f64) as f32;
    image.data.iter_mut().for_each(|v| *v = clamp_pixel(factor * *v + other));
}

/// `F.adjust_saturation`: blend each pixel with its own grey level.
pub fn adjust_saturation(image: &mut Image, factor: f32) {
    let n = image.area();
    let (r, rest) = image.data.split_at_mut(n);
    let (g, b) = rest.split_at_mut(n);
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let other = (1.0 - factor) * grey(*r, *g, *b);
        *r = clamp_pixel(factor * *r + other);
        *g = clamp_pixel(factor * *g + other);
        *b = clamp_pixel(factor * *b + other);
    }
}

fn grey(r: f32, g: f32, b: f32) -> f32 {
    LUMA[0] * r + LUMA[1] * g + LUMA[2] * b
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{image, rng};
    use super::*;

    #[test]
    fn adjustments_blend_and_clamp() {
        let mut img = image(1, 2, |c, _, x| (c * 60 + x * 100) as f32);
        adjust_brightness(&mut img, 2.0);
        assert_eq!(img.data, vec![0.0, 200.0, 120.0, 255.0, 240.0, 255.0]);

        let mut img = image(1, 1, |c, _, _| [100.0, 50.0, 0.0][c]);
        adjust_saturation(&mut img, 0.0);
        let g = 0.2989 * 100.0 + 0.587 * 50.0;
        assert!(img.data.iter().all(|v| (v - g).abs() < 1e-4), "{:?}", img.data);

        let mut img = image(1, 2, |_, _, x| [0.0, 200.0][x]);
        adjust_contrast(&mut img, 0.5);
        // Grey mean is 0.9999 * 100 (the luma weights sum to 0.9999): 0.5 * x + 0.5 * 99.99.
        let want = [49.995, 149.995];
        assert!(img.data.iter().enumerate().all(|(i, v)| (v - want[i % 2]).abs() < 1e-3), "{:?}", img.data);
    }

    #[test]
    fn factors_stay_in_range_and_orders_vary() {
        let jitter = ColorJitter::new(0.5, 0.5, 0.5);
        let mut rng = rng();
        let mut firsts = std::collections::HashSet::new();
        for _ in 0..300 {
            let JitterParams(steps) = jitter.sample(&mut rng);
            assert_eq!(steps.len(), 3);
            for s in &steps {
                let (JitterStep::Brightness(f) | JitterStep::Contrast(f) | JitterStep::Saturation(f)) = *s;
                assert!((0.5..=1.5).contains(&f), "{f}");
            }
            firsts.insert(format!("{:?}", std::mem::discriminant(&steps[0])));
        }
        assert_eq!(firsts.len(), 3, "every adjustment comes first sometimes");
        let only_brightness = ColorJitter::new(0.5, 0.0, 0.0).sample(&mut rng);
        assert!(matches!(only_brightness.0[..], [JitterStep::Brightness(_)]));
    }
}
