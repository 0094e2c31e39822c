//! Geometric transforms: crops, flips and rotation, with torchvision's parameter sampling.

use rand::Rng as _;

use super::resample::resized_crop;
use super::{Drawn, Image, Transform};
use crate::Rng;

/// A crop window in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropBox {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
}

/// `RandomResizedCrop(size, scale, ratio=(3/4, 4/3))`, bilinear with antialiasing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomResizedCrop {
    /// Side of the (square) output.
    pub size: usize,
    /// Range of the crop's area as a fraction of the image's.
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio (width / height).
    pub ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// A crop to `size` x `size` with area fraction in `scale` and the default ratio range.
    pub fn new(size: usize, scale: (f64, f64)) -> Self {
        Self { size, scale, ratio: (3.0 / 4.0, 4.0 / 3.0) }
    }

    /// torchvision's `get_params`: ten tries of a random area and log-uniform aspect ratio,
    /// then the largest centred window whose ratio lies in range.
    pub fn sample(&self, height: usize, width: usize, rng: &mut Rng) -> CropBox {
        let area = (height * width) as f64;
        let log_ratio = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target_area = area * rng.random_range(self.scale.0..=self.scale.1);
            let aspect = rng.random_range(log_ratio.0..=log_ratio.1).exp();
            let w = (target_area * aspect).sqrt().round() as usize;
            let h = (target_area / aspect).sqrt().round() as usize;
            if 0 < w && w <= width && 0 < h && h <= height {
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                return CropBox { top, left, height: h, width: w };
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (w, h) = if in_ratio < self.ratio.0 {
            (width, ((width as f64 / self.ratio.0).round() as usize).min(height))
        } else if in_ratio > self.ratio.1 {
            (((height as f64 * self.ratio.1).round() as usize).min(width), height)
        } else {
            (width, height)
        };
        CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
    }

    /// Crops `window` and resizes it to the output size.
    pub fn apply_with(&self, window: CropBox, image: &Image) -> Image {
        resized_crop(image, (window.top, window.left, window.height, window.width), (self.size, self.size))
    }
}

impl Transform for RandomResizedCrop {
    fn apply(&self, image: Image, rng: &mut Rng) -> Image {
        let window = self.sample(image.height, image.width, rng);
        self.apply_with(window, &image)
    }

    fn apply_drawn(&self, image: Image, drawn: &Drawn) -> Option<Image> {
        match drawn {
            Drawn::Crop(window) => Some(self.apply_with(*window, &image)),
            _ => None,
        }
    }
}

/// `RandomCrop(size, padding)`: the image framed by `padding` zero pixels on every side (black
/// before normalisation, as torchvision's default `fill=0`), then a uniformly placed `size` x
/// `size` window of the framed image. A drawn window is in the framed image's coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomCrop {
    /// Side of the crop.
    pub size: usize,
    /// Zero pixels added on each side before cropping.
    pub padding: usize,
}

impl Transform for RandomCrop {
    fn apply(&self, image: Image, rng: &mut Rng) -> Image {
        let image = pad(&image, self.padding);
        let (h, w, s) = (image.height, image.width, self.size);
        assert!(s <= h && s <= w, "RandomCrop({s}) of a {h}x{w} image");
        let top = rng.random_range(0..=h - s);
        let left = rng.random_range(0..=w - s);
        crop(&image, CropBox { top, left, height: s, width: s })
    }

    fn apply_drawn(&self, image: Image, drawn: &Drawn) -> Option<Image> {
        match drawn {
            Drawn::Crop(window) if (window.height, window.width) == (self.size, self.size) => {
                Some(crop(&pad(&image, self.padding), *window))
            }
            _ => None,
        }
    }
}

/// The image framed by `padding` zero pixels on every side (`F.pad(img, padding)`).
pub fn pad(image: &Image, padding: usize) -> Image {
    if padding == 0 {
        return image.clone();
    }
    let (height, width) = (image.height + 2 * padding, image.width + 2 * padding);
    let mut data = vec![0.0; 3 * height * width];
    for c in 0..3 {
        let plane = image.plane(c);
        for (y, row) in plane.chunks_exact(image.width).enumerate() {
            let start = (c * height + y + padding) * width + padding;
            data[start..start + image.width].copy_from_slice(row);
        }
    }
    Image { height, width, data }
}

/// The pixels of `window` (`F.crop`); the window must lie inside the image.
pub fn crop(image: &Image, window: CropBox) -> Image {
    let CropBox { top, left, height, width } = window;
    assert!(
        top + height <= image.height && left + width <= image.width,
        "{window:?} of a {}x{} image",
        image.height,
        image.width
    );
    let mut data = Vec::with_capacity(3 * height * width);
    for c in 0..3 {
        let p = image.plane(c);
        for y in top..top + height {
            data.extend_from_slice(&p[y * image.width + left..y * image.width + left + width]);
        }
    }
    Image { height, width, data }
}

/// Mirrors every row in place (`F.hflip`).
pub fn horizontal_flip(image: &mut Image) {
    let w = image.width;
    image.data.chunks_exact_mut(w).for_each(|row| row.reverse());
}

/// `RandomHorizontalFlip(p)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomHorizontalFlip {
    /// Probability of flipping.
    pub p: f64,
}

impl Transform for RandomHorizontalFlip {
    fn apply(&self, mut image: Image, rng: &mut Rng) -> Image {
        if rng.random::<f64>() < self.p {
            horizontal_flip(&mut image);
        }
        image
    }

    fn apply_drawn(&self, mut image: Image, drawn: &Drawn) -> Option<Image> {
        match drawn {
            Drawn::Flip(flip) => {
                if *flip {
                    horizontal_flip(&mut image);
                }
                Some(image)
            }
            _ => None,
        }
    }
}

/// `RandomRotation(degrees)`: an angle uniform in `[-degrees, degrees]`, counter-clockwise about
/// the centre, nearest neighbour, same size, fill 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomRotation {
    /// Largest rotation in degrees.
    pub degrees: f64,
}

impl RandomRotation {
    /// Draws the angle in degrees.
    pub fn sample(&self, rng: &mut Rng) -> f64 {
        rng.random_range(-self.degrees..=self.degrees)
    }
}

impl Transform for RandomRotation {
    fn apply(&self, image: Image, rng: &mut Rng) -> Image {
        let angle = self.sample(rng);
        rotate(&image, angle)
    }

    fn apply_drawn(&self, image: Image, drawn: &Drawn) -> Option<Image> {
        match drawn {
            Drawn::Rotation(angle) => Some(rotate(&image, *angle)),
            _ => None,
        }
    }
}

/// `F.rotate(img, angle, NEAREST, expand=False, center=None, fill=0)` on a tensor: each output
/// pixel takes the source pixel its centre maps to under the inverse rotation (rounded half to
/// even, as `grid_sample` does), or 0 outside the image. The arithmetic follows torchvision's
/// affine grid in f32 so that ties round the same way.
pub fn rotate(image: &Image, angle_degrees: f64) -> Image {
    let (h, w) = (image.height, image.width);
    // The inverse affine matrix torchvision builds for rotate (angle negated, no shear/scale).
    let rot = (-angle_degrees).to_radians();
    let inverse = [rot.cos() as f32, rot.sin() as f32, -(rot.sin() as f32), rot.cos() as f32];
    let (half_w, half_h) = (0.5 * w as f32, 0.5 * h as f32);
    let (ax, bx) = (inverse[0] / half_w, inverse[1] / half_w);
    let (ay, by) = (inverse[2] / half_h, inverse[3] / half_h);
    let (wf, hf) = (w as f32, h as f32);
    let area = h * w;
    // Source index of each output pixel within a plane, or `area` (a zero appended to each
    // plane) outside the image. Row by row and branch-free so the loop vectorises; the
    // arithmetic is torchvision's (x * a + y * b per grid point), only hoisted.
    let mut source = vec![0u32; area];
    for (yi, row) in source.chunks_exact_mut(w).enumerate() {
        let y = yi as f32 - half_h + 0.5;
        let (y_bx, y_by) = (y * bx, y * by);
        for (xi, s) in row.iter_mut().enumerate() {
            let x = xi as f32 - half_w + 0.5;
            let gx = x * ax + y_bx;
            let gy = x * ay + y_by;
            // grid_sample's unnormalisation (align_corners=False), then nearest. Clamping to
            // just outside the image first changes no inside/outside decision.
            let sx = round_ties_even((((gx + 1.0) * wf - 1.0) / 2.0).clamp(-2.0, wf + 2.0));
            let sy = round_ties_even((((gy + 1.0) * hf - 1.0) / 2.0).clamp(-2.0, hf + 2.0));
            let inside = sx >= 0.0 && sx < wf && sy >= 0.0 && sy < hf;
            // Exact in f32: indices stay far below 2^24.
            *s = if inside { (sy * wf + sx) as u32 } else { area as u32 };
        }
    }
    let mut padded = vec![0.0f32; area + 1];
    let mut data = vec![0.0f32; 3 * area];
    for (c, out) in data.chunks_exact_mut(area).enumerate() {
        padded[..area].copy_from_slice(image.plane(c));
        for (v, &s) in out.iter_mut().zip(&source) {
            *v = padded[s as usize];
        }
    }
    Image { height: h, width: w, data }
}

/// `x` rounded to the nearest integer, ties to even, for `|x| < 2^22`: adding and removing
/// 1.5 * 2^23 leaves no fraction bits, and the FPU rounds ties to even. (`f32::round_ties_even`
/// is a libm call on x86-64 without SSE4.1, and this runs for every output pixel.)
fn round_ties_even(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    debug_assert!(x.is_nan() || x.abs() < 4_194_304.0, "{x} is too large for the rounding trick");
    (x + MAGIC) - MAGIC
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{image, rng};
    use super::*;

    #[test]
    fn crop_takes_a_window_and_flip_mirrors_rows() {
        let img = image(5, 5, |c, y, x| (c * 100 + y * 10 + x) as f32);
        let crop = RandomCrop { size: 3, padding: 0 }.apply(img, &mut rng());
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
    fn a_padded_crop_frames_the_image_in_zeros() {
        let img = image(2, 3, |c, y, x| (1 + c * 100 + y * 10 + x) as f32);
        let framed = pad(&img, 1);
        assert_eq!((framed.height, framed.width), (4, 5));
        let plane = framed.plane(1);
        assert_eq!(&plane[..5], &[0.0; 5], "top row");
        assert_eq!(&plane[5..10], &[0.0, 101.0, 102.0, 103.0, 0.0]);
        assert_eq!(&plane[15..], &[0.0; 5], "bottom row");
        // Every window of a padded crop lies inside the frame; the whole frame is reachable.
        let crop = RandomCrop { size: 3, padding: 1 };
        let mut corners = std::collections::HashSet::new();
        let mut rng = rng();
        for _ in 0..200 {
            let out = crop.apply(img.clone(), &mut rng);
            assert_eq!((out.height, out.width), (3, 3));
            corners.insert(out.data[0] as usize);
        }
        assert!(corners.contains(&0) && corners.contains(&1), "windows at the frame and at the image");
        let window = CropBox { top: 0, left: 2, height: 3, width: 3 };
        let drawn = crop.apply_drawn(img.clone(), &Drawn::Crop(window)).unwrap();
        assert_eq!(drawn, self::crop(&framed, window));
    }

    #[test]
    fn drawn_parameters_replay_the_random_transforms() {
        let img = image(5, 5, |c, y, x| (c * 100 + y * 10 + x) as f32);
        let window = CropBox { top: 1, left: 2, height: 3, width: 3 };
        let cropped = RandomCrop { size: 3, padding: 0 }.apply_drawn(img.clone(), &Drawn::Crop(window)).unwrap();
        assert_eq!((cropped.data[0], cropped.data[8], cropped.data[9]), (12.0, 34.0, 112.0));
        assert_eq!(cropped, crop(&img, window));
        let wide = CropBox { width: 4, ..window };
        assert_eq!(
            RandomCrop { size: 3, padding: 0 }.apply_drawn(img.clone(), &Drawn::Crop(wide)),
            None,
            "another size"
        );
        assert_eq!(RandomCrop { size: 3, padding: 0 }.apply_drawn(img.clone(), &Drawn::Flip(true)), None);
        let flip = RandomHorizontalFlip { p: 0.5 };
        assert_eq!(flip.apply_drawn(img.clone(), &Drawn::Flip(false)).unwrap(), img);
        assert_eq!(flip.apply_drawn(img.clone(), &Drawn::Flip(true)).unwrap().data[0], 4.0);
        let rotation = RandomRotation { degrees: 45.0 };
        assert_eq!(rotation.apply_drawn(img.clone(), &Drawn::Rotation(30.0)).unwrap(), rotate(&img, 30.0));
        assert_eq!(rotation.apply_drawn(img, &Drawn::Nothing), None);
    }

    #[test]
    fn fast_rounding_agrees_with_the_standard_library() {
        let mut x = -300.0f32;
        while x < 300.0 {
            assert_eq!(round_ties_even(x), x.round_ties_even(), "{x}");
            x += 0.125;
        }
        for x in [0.5f32, 1.5, 2.5, -0.5, -2.5, 4e6, -4e6, 0.49999997] {
            assert_eq!(round_ties_even(x), x.round_ties_even(), "{x}");
        }
    }

    #[test]
    fn quarter_turns_move_pixels_exactly() {
        let img = image(4, 4, |c, y, x| (c * 100 + y * 4 + x) as f32);
        let turned = rotate(&img, 90.0);
        // Counter-clockwise: the top-right pixel moves to the top-left.
        for y in 0..4 {
            for x in 0..4 {
                assert_eq!(turned.data[y * 4 + x], img.data[x * 4 + (3 - y)], "at ({y}, {x})");
            }
        }
        assert_eq!(rotate(&img, 0.0), img);
    }

    #[test]
    fn rotation_fills_the_corners_with_zero() {
        let img = image(16, 16, |_, _, _| 9.0);
        let out = rotate(&img, 45.0);
        assert_eq!(out.data[0], 0.0);
        assert_eq!(out.data[8 * 16 + 8], 9.0);
    }

    #[test]
    fn fallback_is_the_centred_crop_in_ratio() {
        // No draw of area fraction >= 0.99 fits a 10x100 image: the fallback keeps the height
        // and takes the widest window of ratio 4/3.
        let crop = RandomResizedCrop { size: 8, scale: (0.99, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0) };
        let b = crop.sample(10, 100, &mut rng());
        assert_eq!(b, CropBox { top: 0, left: 43, height: 10, width: 13 });
    }

    #[test]
    fn flip_and_rotation_rates_match_their_parameters() {
        let mut rng = rng();
        let n = 20_000;
        let img = image(1, 2, |_, _, x| x as f32);
        let flips =
            (0..n).filter(|_| RandomHorizontalFlip { p: 0.5 }.apply(img.clone(), &mut rng).data[0] == 1.0).count();
        let rate = flips as f64 / n as f64;
        assert!((rate - 0.5).abs() < 0.015, "flip rate {rate}");
        let angles: Vec<f64> = (0..n).map(|_| RandomRotation { degrees: 45.0 }.sample(&mut rng)).collect();
        assert!(angles.iter().all(|a| a.abs() <= 45.0));
        let mean = angles.iter().sum::<f64>() / n as f64;
        let var = angles.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.6 && (var - 90.0 * 90.0 / 12.0).abs() < 25.0, "mean {mean}, var {var}");
    }
}
