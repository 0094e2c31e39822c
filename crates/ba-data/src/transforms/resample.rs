//! Bilinear resampling with torchvision's `antialias=True` semantics (PyTorch's
//! `_upsample_bilinear2d_aa`, the same filter as PIL): a triangle filter widened by the scale
//! factor when shrinking, plain half-pixel bilinear (`align_corners=False`) when enlarging.
//!
//! Written by hand because the image crates resample u8 images (and round between passes),
//! while this pipeline stays in f32 as torchvision's tensor path does.

use super::{Drawn, Image, Transform};
use crate::Rng;

/// The source pixels and normalised weights of each output coordinate along one axis.
struct Taps {
    /// First source index of each output coordinate (crop offset included).
    start: Vec<usize>,
    /// Taps per output coordinate (the widest; narrower ones are padded with zero weights).
    width: usize,
    /// `width` weights per output coordinate.
    weights: Vec<f32>,
}

impl Taps {
    /// Taps resampling source indices `offset..offset + input` onto `output` coordinates.
    /// Zero weights at either end are dropped (adding `0 * p` changes no sum), so enlarging
    /// reads two taps per output instead of three.
    fn new(offset: usize, input: usize, output: usize) -> Self {
        let scale = input as f64 / output as f64;
        let (support, inv_scale) = if scale >= 1.0 { (scale, 1.0 / scale) } else { (1.0, 1.0) };
        let per_output: Vec<(usize, Vec<f32>)> = (0..output)
            .map(|o| {
                let center = scale * (o as f64 + 0.5);
                // `as i64` truncates toward zero, as PyTorch's int64 cast does.
                let lo = ((center - support + 0.5) as i64).max(0) as usize;
                let hi = ((center + support + 0.5) as i64).min(input as i64) as usize;
                let triangle = |j: usize| {
                    let x = ((j as f64 - center + 0.5) * inv_scale).abs();
                    if x < 1.0 {
                        1.0 - x
                    } else {
                        0.0
                    }
                };
                let total: f64 = (lo..hi).map(triangle).sum();
                let mut w: Vec<f32> =
                    (lo..hi).map(|j| if total != 0.0 { (triangle(j) / total) as f32 } else { 0.0 }).collect();
                let first = w.iter().position(|&v| v != 0.0).unwrap_or(0);
                let last = w.iter().rposition(|&v| v != 0.0).map_or(first, |l| l + 1);
                w.truncate(last);
                w.drain(..first);
                (offset + lo + first, w)
            })
            .collect();
        let width = per_output.iter().map(|(_, w)| w.len()).max().unwrap_or(1).max(1);
        let mut start = Vec::with_capacity(output);
        let mut weights = vec![0.0f32; output * width];
        for ((s, w), packed) in per_output.into_iter().zip(weights.chunks_exact_mut(width)) {
            start.push(s);
            packed[..w.len()].copy_from_slice(&w);
        }
        Self { start, width, weights }
    }
}

/// Resamples the window (`top`, `left`, `height`, `width`) of `image` to `out_h` x `out_w`:
/// torchvision's `resized_crop(img, top, left, height, width, [out_h, out_w], BILINEAR,
/// antialias=True)`. The window must lie inside the image.
pub fn resized_crop(
    image: &Image,
    (top, left, height, width): (usize, usize, usize, usize),
    (out_h, out_w): (usize, usize),
) -> Image {
    assert!(top + height <= image.height && left + width <= image.width, "crop window outside the image");
    assert!(height > 0 && width > 0 && out_h > 0 && out_w > 0, "empty crop or output");
    let (ys, xs) = (Taps::new(top, height, out_h), Taps::new(left, width, out_w));
    let src_w = image.width;
    let mut rows = vec![0.0f32; height * out_w];
    let mut data = vec![0.0f32; 3 * out_h * out_w];
    // A source row followed by zeros, so every output reads a full `xs.width` taps.
    let mut padded = vec![0.0f32; src_w + xs.width];
    for (c, out_plane) in data.chunks_exact_mut(out_h * out_w).enumerate() {
        let plane = image.plane(c);
        // Horizontal pass over the window's rows.
        for (r, row_out) in rows.chunks_exact_mut(out_w).enumerate() {
            padded[..src_w].copy_from_slice(&plane[(top + r) * src_w..][..src_w]);
            match xs.width {
                2 => horizontal::<2>(&padded, &xs, row_out),
                3 => horizontal::<3>(&padded, &xs, row_out),
                4 => horizontal::<4>(&padded, &xs, row_out),
                _ => horizontal_any(&padded, &xs, row_out),
            }
        }
        // Vertical pass: each output row is a weighted sum of whole intermediate rows.
        for (o, row_out) in out_plane.chunks_exact_mut(out_w).enumerate() {
            let w = &ys.weights[o * ys.width..][..ys.width];
            let s = ys.start[o] - top;
            for (k, &wk) in w.iter().enumerate().take(height - s) {
                if wk == 0.0 {
                    continue;
                }
                let src = &rows[(s + k) * out_w..][..out_w];
                row_out.iter_mut().zip(src).for_each(|(v, p)| *v += wk * p);
            }
        }
    }
    Image { height: out_h, width: out_w, data }
}

/// One row through the horizontal taps, for a tap count known at compile time (2 when
/// enlarging, 3 or 4 when shrinking a little): a fixed-length loop the compiler unrolls.
fn horizontal<const K: usize>(padded: &[f32], xs: &Taps, out: &mut [f32]) {
    for ((v, &s), w) in out.iter_mut().zip(&xs.start).zip(xs.weights.chunks_exact(K)) {
        // Invariant, not input: the taps were built for this padded row.
        #[allow(clippy::expect_used)]
        let src: &[f32; K] = padded[s..s + K].try_into().expect("padded row holds every tap");
        let mut acc = 0.0;
        for k in 0..K {
            acc += src[k] * w[k];
        }
        *v = acc;
    }
}

/// [`horizontal`] for any tap count.
fn horizontal_any(padded: &[f32], xs: &Taps, out: &mut [f32]) {
    for ((v, &s), w) in out.iter_mut().zip(&xs.start).zip(xs.weights.chunks_exact(xs.width)) {
        *v = padded[s..s + xs.width].iter().zip(w).fold(0.0, |acc, (p, w)| acc + p * w);
    }
}

/// `Resize((height, width))`, bilinear, `antialias=True`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resize {
    /// Output height.
    pub height: usize,
    /// Output width.
    pub width: usize,
}

impl Resize {
    fn resize(&self, image: Image) -> Image {
        if (image.height, image.width) == (self.height, self.width) {
            return image;
        }
        resized_crop(&image, (0, 0, image.height, image.width), (self.height, self.width))
    }
}

impl Transform for Resize {
    fn apply(&self, image: Image, _rng: &mut Rng) -> Image {
        self.resize(image)
    }

    fn apply_drawn(&self, image: Image, drawn: &Drawn) -> Option<Image> {
        (drawn == &Drawn::Nothing).then(|| self.resize(image))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{image, rng};
    use super::*;

    #[test]
    fn enlarging_matches_pytorch_bilinear_on_a_known_case() {
        // torch.nn.functional.interpolate(torch.tensor([[[[0., 10.], [20., 30.]]]]), size=(4, 4),
        // mode="bilinear", align_corners=False) gives these rows.
        let img = image(2, 2, |_, y, x| (y * 20 + x * 10) as f32);
        let out = Resize { height: 4, width: 4 }.apply(img, &mut rng());
        let want = [[0.0, 2.5, 7.5, 10.0], [5.0, 7.5, 12.5, 15.0], [15.0, 17.5, 22.5, 25.0], [20.0, 22.5, 27.5, 30.0]];
        assert_eq!(&out.data[..16], want.concat().as_slice());
    }

    #[test]
    fn shrinking_by_two_averages_with_a_widened_triangle() {
        // Halving a row 0, 4, 8, 12: the antialiased filter spans four inputs with weights
        // 1/8, 3/8, 3/8, 1/8 (clipped and renormalised at the borders).
        let img = image(1, 4, |_, _, x| (4 * x) as f32);
        let out = resized_crop(&img, (0, 0, 1, 4), (1, 2));
        let first = (0.0 * 3.0 + 4.0 * 3.0 + 8.0) / 7.0;
        let second = (4.0 + 8.0 * 3.0 + 12.0 * 3.0) / 7.0;
        assert!((out.data[0] - first).abs() < 1e-5 && (out.data[1] - second).abs() < 1e-5, "{:?}", &out.data[..2]);
    }

    #[test]
    fn constant_images_stay_constant_and_identity_is_exact() {
        let out = Resize { height: 130, width: 97 }.apply(image(32, 32, |c, _, _| c as f32 * 50.0), &mut rng());
        assert!(out.plane(0).iter().all(|&v| v == 0.0));
        assert!(out.plane(2).iter().all(|&v| (v - 100.0).abs() < 1e-4));
        let img = image(9, 7, |c, y, x| (c * 100 + y * 10 + x) as f32);
        let same = resized_crop(&img, (2, 1, 5, 4), (5, 4));
        assert_eq!(same.data[0], img.data[2 * 7 + 1]);
        assert_eq!(same.plane(2)[19], img.plane(2)[6 * 7 + 4]);
    }
}
