//! Classify an image file with a trained model: a run's `final.safetensors` loaded into the
//! model it was trained as, the image resized to 128x128 and normalised as the test pipeline
//! does, and the three most likely classes printed.
//!
//!     cargo run --release -p ba-train --example classify_image -- WEIGHTS IMAGE [MODEL]
//!     (e.g. runs/compare-1/seed-42/ba-alexnet/final.safetensors cat.png ba-alexnet)
//!
//! Without arguments it makes its own: a freshly initialised BA-AlexNet saved the way a run
//! saves it (so the classes it prints are an untrained net's guesses) and the first test image
//! of the committed sample written as a PNG.

use std::error::Error;
use std::path::{Path, PathBuf};

use ba_data::transforms::{test_pipeline, Image, Transform};
use ba_data::{Cifar10, CLASS_NAMES};
use ba_models::{ModelConfig, ModelKind, INPUT_SIZE};
use ba_train::checkpoint::{load_weights, save_weights};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind: ModelKind = args.get(2).map_or("ba-alexnet", String::as_str).parse()?;
    let device = Device::Cpu;
    let vars = VarMap::new();
    let model = kind.build(ModelConfig::cifar10(0), VarBuilder::from_varmap(&vars, DType::F32, &device))?;
    let (weights, picture) = match (args.first(), args.get(1)) {
        (Some(weights), Some(picture)) => (PathBuf::from(weights), PathBuf::from(picture)),
        _ => own_inputs(&vars)?,
    };
    // Every weight and batch-norm statistic by its PyTorch name; a file of another model fails.
    load_weights(&weights, &vars)?;

    let image = read_image(&picture)?;
    // The test pipeline is deterministic: the generator it is handed is never drawn from.
    let input = test_pipeline(INPUT_SIZE).apply(image, &mut ba_core::rng::rng_for(0, "unused"));
    let x = Tensor::from_vec(input.data, (1, 3, INPUT_SIZE, INPUT_SIZE), &device)?;
    let logits = model.forward_t(&x, false)?;
    let probabilities = candle_nn::ops::softmax(&logits, D::Minus1)?.squeeze(0)?.to_vec1::<f32>()?;
    let mut ranked: Vec<(usize, f32)> = probabilities.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<String> = ranked[..3].iter().map(|(c, p)| format!("{} {:.1}%", CLASS_NAMES[*c], p * 100.0)).collect();
    println!("{} by {kind} ({}): {}", picture.display(), weights.display(), top.join(", "));
    Ok(())
}

/// A PNG or JPEG file as a 0..255 channel-major image, the form the transforms take.
fn read_image(path: &Path) -> Result<Image, Box<dyn Error>> {
    let rgb = image::ImageReader::open(path)?.with_guessed_format()?.decode()?.to_rgb8();
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let mut data = vec![0.0f32; 3 * width * height];
    for (i, pixel) in rgb.pixels().enumerate() {
        for c in 0..3 {
            data[c * width * height + i] = pixel[c] as f32;
        }
    }
    Ok(Image { height, width, data })
}

/// Weights of the freshly built model in `vars`, saved as a run saves them, and the sample's
/// first test image as a PNG, both in a temporary folder.
fn own_inputs(vars: &VarMap) -> Result<(PathBuf, PathBuf), Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("ba-train-classify-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let weights = dir.join("final.safetensors");
    save_weights(vars, 0, &weights)?;
    let sample = Cifar10::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/cifar-10-sample"))?;
    let planes = sample.test.image(0); // three 32x32 planes: red, green, blue
    let picture = dir.join("test-0.png");
    image::RgbImage::from_fn(32, 32, |x, y| {
        let at = (y * 32 + x) as usize;
        image::Rgb([planes[at], planes[1024 + at], planes[2048 + at]])
    })
    .save(&picture)?;
    println!(
        "(no arguments: an untrained BA-AlexNet, and test image 0, a {})",
        CLASS_NAMES[sample.test.label(0) as usize]
    );
    Ok((weights, picture))
}
