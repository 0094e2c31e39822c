//! Every transform against torchvision's output for the same parameters, on real CIFAR-10
//! images. The fixture comes from `scripts/torchvision_fixtures.py` (torchvision's tensor path on
//! float images in [0, 1]; ours works on the 0..=255 scale, hence the factor 255).

use ba_data::transforms::{
    adjust_brightness, cifar_test_pipeline, cifar_train_pipeline, horizontal_flip, notebook_train_pipeline,
    resized_crop, rotate, test_pipeline, ColorJitter, Compose, CropBox, Drawn, Image, JitterParams, JitterStep,
    Normalize, RandomHorizontalFlip, RandomResizedCrop, RandomRotation, Resize, Transform,
};
use rand::SeedableRng;
use safetensors::SafeTensors;
use serde_json::Value;

const FIXTURE: &[u8] = include_bytes!("fixtures/torchvision.safetensors");

/// Largest difference allowed on the [0, 1] scale for the interpolating transforms: f32
/// rounding in a different order of operations (measured: at most 6e-7).
const TOLERANCE: f32 = 1e-6;

struct Fixture {
    tensors: SafeTensors<'static>,
    cases: Vec<Value>,
    stats: Value,
}

fn fixture() -> Fixture {
    let (_, meta) = SafeTensors::read_metadata(FIXTURE).unwrap();
    let meta = meta.metadata().clone().unwrap();
    Fixture {
        tensors: SafeTensors::deserialize(FIXTURE).unwrap(),
        cases: serde_json::from_str(&meta["cases"]).unwrap(),
        stats: serde_json::from_str(&meta["stats"]).unwrap(),
    }
}

impl Fixture {
    /// Tensor `name` (3, H, W) as an image on the 0..=255 scale.
    fn image(&self, name: &str) -> Image {
        let t = self.tensors.tensor(name).unwrap();
        let shape = t.shape();
        let data = t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) * 255.0).collect();
        Image { height: shape[1], width: shape[2], data }
    }
}

fn steps(case: &Value) -> JitterParams {
    JitterParams(
        case["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let f = s[1].as_f64().unwrap() as f32;
                match s[0].as_str().unwrap() {
                    "brightness" => JitterStep::Brightness(f),
                    "contrast" => JitterStep::Contrast(f),
                    _ => JitterStep::Saturation(f),
                }
            })
            .collect(),
    )
}

fn window(case: &Value) -> (usize, usize, usize, usize) {
    let b: Vec<usize> = case["box"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    (b[0], b[1], b[2], b[3])
}

/// Our output for a case, on the fixture's scale.
fn ours(fx: &Fixture, case: &Value) -> Image {
    let input = fx.image(case["input"].as_str().unwrap());
    let mut rng = ba_data::Rng::seed_from_u64(0);
    let mut out = match case["op"].as_str().unwrap() {
        "resize" => {
            let size = &case["size"];
            let (h, w) = (size[0].as_u64().unwrap() as usize, size[1].as_u64().unwrap() as usize);
            Resize { height: h, width: w }.apply(input, &mut rng)
        }
        "jitter" => ColorJitter::apply_with(&steps(case), input),
        "resized_crop" => {
            let size = case["size"].as_u64().unwrap() as usize;
            resized_crop(&input, window(case), (size, size))
        }
        "hflip" => {
            let mut img = input;
            horizontal_flip(&mut img);
            img
        }
        "rotate" => rotate(&input, case["angle"].as_f64().unwrap()),
        "normalize" => return Normalize::imagenet().apply(input, &mut rng),
        // The production pipelines with the fixture's draws, against torchvision's Compose of
        // the notebook with the same draws: a change of order, size or normalisation fails.
        "pipeline" => {
            let (top, left, height, width) = window(case);
            let drawn = [
                Drawn::Nothing,
                Drawn::Jitter(steps(case)),
                Drawn::Crop(CropBox { top, left, height, width }),
                Drawn::Flip(case["flip"].as_bool().unwrap()),
                Drawn::Rotation(case["angle"].as_f64().unwrap()),
                Drawn::Nothing,
            ];
            return notebook_train_pipeline(128).apply_each_drawn(input, &drawn).unwrap();
        }
        "test_pipeline" => {
            return test_pipeline(128).apply_each_drawn(input, &[Drawn::Nothing, Drawn::Nothing]).unwrap()
        }
        // The CIFAR ResNets' pipeline: a 32x32 window of the image framed by 4 zero pixels.
        "cifar_pipeline" => {
            let at = |key: &str| case[key].as_u64().unwrap() as usize;
            let drawn = [
                Drawn::Crop(CropBox { top: at("top"), left: at("left"), height: 32, width: 32 }),
                Drawn::Flip(case["flip"].as_bool().unwrap()),
                Drawn::Nothing,
            ];
            return cifar_train_pipeline().apply_each_drawn(input, &drawn).unwrap();
        }
        "cifar_test_pipeline" => return cifar_test_pipeline().apply_each_drawn(input, &[Drawn::Nothing]).unwrap(),
        op => panic!("unknown op {op}"),
    };
    out.data.iter_mut().for_each(|v| *v /= 255.0);
    out
}

fn reference(fx: &Fixture, name: &str) -> Image {
    let mut img = fx.image(name);
    img.data.iter_mut().for_each(|v| *v /= 255.0);
    img
}

#[test]
fn every_transform_matches_torchvision() {
    let fx = fixture();
    assert!(fx.cases.len() >= 20);
    for case in &fx.cases {
        let name = case["name"].as_str().unwrap();
        let (got, want) = (ours(&fx, case), reference(&fx, name));
        assert_eq!((got.height, got.width), (want.height, want.width), "{name}");
        let diffs: Vec<f32> = got.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs()).collect();
        let max = diffs.iter().cloned().fold(0.0, f32::max);
        let tolerance = match case["op"].as_str().unwrap() {
            // Nearest-neighbour sampling with the same f32 grid arithmetic: identical pixels.
            "rotate" | "hflip" => 0.0,
            // Normalised values (up to about 2.6 in size).
            "normalize" | "pipeline" | "test_pipeline" | "cifar_pipeline" | "cifar_test_pipeline" => 10.0 * TOLERANCE,
            _ => TOLERANCE,
        };
        assert!(max <= tolerance, "{name}: max difference {max} > {tolerance}");
        eprintln!("{name}: max difference {max:.2e}");
    }
}

#[test]
fn a_changed_transform_is_caught() {
    // The comparison must be able to fail: brightness 1.41 instead of 1.4 is far outside it.
    let fx = fixture();
    let case = fx.cases.iter().find(|c| c["name"].as_str().unwrap().ends_with("jitter_brightness1.4")).unwrap();
    let mut got = fx.image(case["input"].as_str().unwrap());
    adjust_brightness(&mut got, 1.41);
    let want = fx.image(case["name"].as_str().unwrap());
    let max = got.data.iter().zip(&want.data).map(|(a, b)| (a - b).abs() / 255.0).fold(0.0, f32::max);
    assert!(max > 10.0 * TOLERANCE, "{max}");
}

#[test]
fn a_pipeline_in_another_order_is_refused() {
    // The fixture's draws fit the notebook's order only: jitter and crop swapped, or flip and
    // rotation, make a step receive another transform's parameters.
    let drawn = [
        Drawn::Nothing,
        Drawn::Jitter(JitterParams(vec![JitterStep::Contrast(0.8)])),
        Drawn::Crop(CropBox { top: 1, left: 2, height: 100, width: 90 }),
        Drawn::Flip(true),
        Drawn::Rotation(10.0),
        Drawn::Nothing,
    ];
    let image = || Image { height: 32, width: 32, data: vec![100.0; 3 * 32 * 32] };
    assert_eq!(notebook_train_pipeline(128).apply_each_drawn(image(), &drawn).map(|i| i.width), Ok(128));
    let swapped_crop = Compose(vec![
        Box::new(Resize { height: 130, width: 130 }),
        Box::new(RandomResizedCrop::new(128, (0.4, 1.0))),
        Box::new(ColorJitter::new(0.5, 0.5, 0.5)),
        Box::new(RandomHorizontalFlip { p: 0.5 }),
        Box::new(RandomRotation { degrees: 45.0 }),
        Box::new(Normalize::imagenet()),
    ]);
    let err = swapped_crop.apply_each_drawn(image(), &drawn).unwrap_err();
    assert!(err.starts_with("transform 2 of 6 does not take Jitter"), "{err}");
    let swapped_flip = Compose(vec![
        Box::new(Resize { height: 130, width: 130 }),
        Box::new(ColorJitter::new(0.5, 0.5, 0.5)),
        Box::new(RandomResizedCrop::new(128, (0.4, 1.0))),
        Box::new(RandomRotation { degrees: 45.0 }),
        Box::new(RandomHorizontalFlip { p: 0.5 }),
        Box::new(Normalize::imagenet()),
    ]);
    let err = swapped_flip.apply_each_drawn(image(), &drawn).unwrap_err();
    assert!(err.starts_with("transform 4 of 6 does not take Flip(true)"), "{err}");
    let err = notebook_train_pipeline(128).apply_each_drawn(image(), &drawn[..5]).unwrap_err();
    assert_eq!(err, "5 parameter sets for a pipeline of 6 transforms");
}

#[test]
fn crop_area_distribution_matches_torchvision() {
    let fx = fixture();
    let crop = RandomResizedCrop::new(128, (0.4, 1.0));
    let mut rng = ba_data::Rng::seed_from_u64(5);
    let n = 50_000;
    let areas: Vec<f64> = (0..n)
        .map(|_| {
            let b = crop.sample(130, 130, &mut rng);
            assert!(b.top + b.height <= 130 && b.left + b.width <= 130 && b.height > 0 && b.width > 0);
            let ratio = b.width as f64 / b.height as f64;
            assert!((0.74..=1.36).contains(&ratio), "ratio {ratio}");
            (b.height * b.width) as f64 / (130.0 * 130.0)
        })
        .collect();
    let mean = areas.iter().sum::<f64>() / n as f64;
    let below = areas.iter().filter(|&&a| a < 0.55).count() as f64 / n as f64;
    let (want_mean, want_below) =
        (fx.stats["rrc_area_mean"].as_f64().unwrap(), fx.stats["rrc_area_below_055"].as_f64().unwrap());
    // Five standard errors of 50,000 draws (area sd 0.147; proportion sd 0.46).
    assert!((mean - want_mean).abs() < 5.0 * 0.147 / (n as f64).sqrt(), "mean area {mean} vs torchvision {want_mean}");
    assert!((below - want_below).abs() < 5.0 * 0.465 / (n as f64).sqrt(), "P(area < 0.55) {below} vs {want_below}");
}
