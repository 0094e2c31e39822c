//! The comparison report of a `compare` folder: `report.md`, `report.json`, the learning
//! curves and the prediction grids, all computed from the run folders' files (metrics and
//! final weights), so `cargo xtask report` can rebuild them at any time.

pub mod confusion;
pub mod curves;
pub mod grid;
pub mod stats;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ba_models::ModelKind;
use ba_train::metrics::{read_metrics, read_step_records};
use ba_train::EpochRecord;
use candle_core::Device;
use serde::Serialize;

use crate::machine::Machine;
use crate::preset::Recipe;
use crate::run::Data;
use crate::table::thousands;
use crate::trained::{split_batch, Throughput, Trained};
use stats::{MeanStd, PairedDifference};

/// Test images shown in each prediction grid.
pub const GRID_IMAGES: usize = 18;
/// Confidence level of the paired interval.
pub const CONFIDENCE: f64 = 0.95;
/// Untimed and timed forward passes of the inference benchmark.
const BENCH_WARMUP: usize = 3;
const BENCH_REPEATS: usize = 11;

/// The run folder of `kind` under `seed` in the comparison folder `dir`.
pub fn run_folder(dir: &Path, seed: u64, kind: ModelKind) -> PathBuf {
    dir.join(format!("seed-{seed}")).join(kind.name())
}

/// One trained model of the comparison. Every number but the inference benchmark and the
/// parameter counts is read from its `metrics.jsonl`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub model: String,
    pub seed: u64,
    pub parameters: usize,
    pub trainable_parameters: usize,
    pub epochs: usize,
    /// The last epoch's training pass.
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// The last epoch's evaluation on the test set.
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub best_val_accuracy: f64,
    pub best_epoch: usize,
    /// Training images per second over all epochs.
    pub train_images_per_second: f64,
    /// Inference as the notebook measured it: the whole test set in evaluation mode, data
    /// loading included (the last epoch's evaluation pass).
    pub test_pass_images_per_second: f64,
    /// Inference as a benchmark measures it: warm-up, then the median of repeated batches.
    pub inference: Throughput,
    /// Seconds of training and evaluation, summed over epochs.
    pub seconds: f64,
}

/// Mean and standard deviation over seeds of one model's results.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStats {
    pub model: String,
    pub train_accuracy: MeanStd,
    pub val_accuracy: MeanStd,
    pub best_val_accuracy: MeanStd,
}

/// Everything `report.md` shows, as `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub recipe: Recipe,
    pub seeds: Vec<u64>,
    pub train_images_per_epoch: usize,
    pub test_images: usize,
    pub machine: Machine,
    /// Every model under every seed, AlexNet then BA-AlexNet per seed.
    pub runs: Vec<RunReport>,
    pub models: Vec<ModelStats>,
    /// BA-AlexNet minus AlexNet in final val accuracy, paired by seed.
    pub val_accuracy_difference: PairedDifference,
    /// The same for the final train accuracy.
    pub train_accuracy_difference: PairedDifference,
    /// Whether the val accuracy interval excludes zero, in words.
    pub verdict: String,
}

/// Reads the runs of the comparison in `dir`, measures inference, draws the figures and
/// writes `report.md` and `report.json`.
pub fn write(dir: &Path, recipe: &Recipe, seeds: &[u64], data: &Data, device: &Device) -> Result<Report> {
    if seeds.is_empty() {
        bail!("{}: a comparison needs at least one seed", dir.display());
    }
    let bench_batch = split_batch(&data.test, 0..recipe.batch_size.min(data.test.len()), device)?;
    let mut runs = Vec::new();
    let mut histories = Vec::new();
    for &seed in seeds {
        for kind in ModelKind::ALL {
            let folder = run_folder(dir, seed, kind);
            let metrics_path = folder.join("metrics.jsonl");
            let epochs = read_metrics(&metrics_path)?;
            let steps = read_step_records(&metrics_path)?;
            let trained = Trained::load(&folder.join("final.safetensors"), Some(kind), device)
                .with_context(|| format!("{}: the run has no final weights (not finished?)", folder.display()))?;
            let inference = Throughput::measure(trained.model.as_ref(), &bench_batch, BENCH_WARMUP, BENCH_REPEATS)?;
            runs.push(run_report(&metrics_path, kind, seed, &epochs, &trained, inference)?);
            if seed == seeds[0] {
                let predictions = grid::predict_first(&trained, &data.test, GRID_IMAGES, device)?;
                let path = dir.join(format!("predictions-{}.png", kind.name()));
                grid::write(&path, kind.name(), &predictions, &data.classes)?;
            }
            histories.push((kind, seed, steps, epochs));
        }
    }
    let steps_per_epoch = recipe_steps_per_epoch(recipe, &histories[0].3);
    let curves: Vec<curves::Curves> = histories
        .iter()
        .map(|(kind, seed, steps, epochs)| curves::Curves {
            model: kind.name(),
            seed: *seed,
            steps_per_epoch,
            steps,
            epochs,
        })
        .collect();
    curves::write(dir, "curves", &curves)?;
    let report = summarise(recipe, seeds, data, device, runs);
    std::fs::write(dir.join("report.md"), markdown(&report))
        .with_context(|| format!("writing {}/report.md", dir.display()))?;
    crate::write_json(&dir.join("report.json"), &report)?;
    Ok(report)
}

/// Optimizer steps per epoch: the first epoch's training images over the batch size (the
/// loader drops the last partial batch).
fn recipe_steps_per_epoch(recipe: &Recipe, epochs: &[EpochRecord]) -> usize {
    epochs.first().map_or(1, |e| (e.train.images / recipe.batch_size).max(1))
}

fn run_report(
    metrics_path: &Path,
    kind: ModelKind,
    seed: u64,
    epochs: &[EpochRecord],
    trained: &Trained,
    inference: Throughput,
) -> Result<RunReport> {
    let Some(last) = epochs.last() else { bail!("{}: no epoch recorded", metrics_path.display()) };
    // The first epoch with the best accuracy, as training keeps it (only a strictly better
    // epoch replaces it).
    let best = epochs.iter().fold(&epochs[0], |best, e| if e.val.accuracy > best.val.accuracy { e } else { best });
    let train_images: usize = epochs.iter().map(|e| e.train.images).sum();
    let train_seconds: f64 = epochs.iter().map(|e| e.train.seconds).sum();
    Ok(RunReport {
        model: kind.name().to_string(),
        seed,
        parameters: trained.count.total,
        trainable_parameters: trained.count.trainable,
        epochs: epochs.len(),
        train_loss: last.train.loss,
        train_accuracy: last.train.accuracy,
        val_loss: last.val.loss,
        val_accuracy: last.val.accuracy,
        best_val_accuracy: best.val.accuracy,
        best_epoch: best.epoch,
        train_images_per_second: train_images as f64 / train_seconds.max(1e-9),
        test_pass_images_per_second: last.val.images_per_second(),
        inference,
        seconds: epochs.iter().map(|e| e.train.seconds + e.val.seconds).sum(),
    })
}

/// The statistics over seeds of finished runs (AlexNet, BA-AlexNet per seed).
fn summarise(recipe: &Recipe, seeds: &[u64], data: &Data, device: &Device, runs: Vec<RunReport>) -> Report {
    let of = |kind: ModelKind| runs.iter().filter(move |r| r.model == kind.name());
    let models = ModelKind::ALL
        .iter()
        .map(|&kind| ModelStats {
            model: kind.name().to_string(),
            train_accuracy: MeanStd::of(&of(kind).map(|r| r.train_accuracy).collect::<Vec<_>>()),
            val_accuracy: MeanStd::of(&of(kind).map(|r| r.val_accuracy).collect::<Vec<_>>()),
            best_val_accuracy: MeanStd::of(&of(kind).map(|r| r.best_val_accuracy).collect::<Vec<_>>()),
        })
        .collect();
    let paired = |field: fn(&RunReport) -> f64| {
        let a: Vec<f64> = of(ModelKind::AlexNet).map(field).collect();
        let b: Vec<f64> = of(ModelKind::BaAlexNet).map(field).collect();
        PairedDifference::of(&a, &b, CONFIDENCE)
    };
    let val_accuracy_difference = paired(|r| r.val_accuracy);
    Report {
        recipe: recipe.clone(),
        seeds: seeds.to_vec(),
        // The loader drops the last partial batch.
        train_images_per_epoch: data.train.len() / recipe.batch_size * recipe.batch_size,
        test_images: data.test.len(),
        machine: Machine::this(device),
        verdict: val_accuracy_difference.verdict("BA-AlexNet - AlexNet in final val accuracy"),
        train_accuracy_difference: paired(|r| r.train_accuracy),
        val_accuracy_difference,
        models,
        runs,
    }
}

/// Prints the tables and the verdict to the terminal.
pub fn print(report: &Report, dir: &Path) {
    println!("\n{}", results_table(report));
    if report.seeds.len() > 1 {
        println!("{}", seeds_table(report));
    }
    println!("{}\n\nreport: {}", capitalise(&report.verdict), dir.join("report.md").display());
}

/// The results table: one row per model and seed, then the differences.
pub fn results_table(report: &Report) -> String {
    let mut out = String::from(
        "| model | seed | train acc | val acc | parameters | trainable | best val acc (epoch) | final val loss \
         | train img/s | inference img/s, test pass | inference img/s, median | time |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &report.runs {
        out += &format!(
            "| {} | {} | {:.4} | {:.4} | {} | {} | {:.4} ({}) | {:.4} | {:.1} | {:.1} | {:.1} | {} |\n",
            r.model,
            r.seed,
            r.train_accuracy,
            r.val_accuracy,
            thousands(r.parameters),
            thousands(r.trainable_parameters),
            r.best_val_accuracy,
            r.best_epoch,
            r.val_loss,
            r.train_images_per_second,
            r.test_pass_images_per_second,
            r.inference.median_images_per_second,
            duration(r.seconds),
        );
    }
    let by_seed = |seed: u64| {
        let find = |m: ModelKind| report.runs.iter().find(|r| r.seed == seed && r.model == m.name());
        find(ModelKind::AlexNet).zip(find(ModelKind::BaAlexNet))
    };
    for &seed in &report.seeds {
        if let Some((a, b)) = by_seed(seed) {
            out += &format!(
                "| **BA - AlexNet** | {seed} | {:+.4} | {:+.4} | {} | {} | {:+.4} | {:+.4} | | | | |\n",
                b.train_accuracy - a.train_accuracy,
                b.val_accuracy - a.val_accuracy,
                signed_thousands(b.parameters as i64 - a.parameters as i64),
                signed_thousands(b.trainable_parameters as i64 - a.trainable_parameters as i64),
                b.best_val_accuracy - a.best_val_accuracy,
                b.val_loss - a.val_loss,
            );
        }
    }
    out
}

/// Mean ± std over seeds, and the paired difference with its interval.
pub fn seeds_table(report: &Report) -> String {
    let ms = |m: &MeanStd| format!("{:.4} ± {:.4}", m.mean, m.std);
    let mut out = format!(
        "| over {} seeds (mean ± std) | train acc | val acc | best val acc |\n|---|---:|---:|---:|\n",
        report.seeds.len()
    );
    for m in &report.models {
        out += &format!(
            "| {} | {} | {} | {} |\n",
            m.model,
            ms(&m.train_accuracy),
            ms(&m.val_accuracy),
            ms(&m.best_val_accuracy)
        );
    }
    let interval = |d: &PairedDifference| match d.interval {
        Some((lo, hi)) => format!("{:+.4} [{lo:+.4}, {hi:+.4}]", d.difference.mean),
        None => format!("{:+.4} (one seed: no interval)", d.difference.mean),
    };
    out += &format!(
        "| **BA - AlexNet**, paired, {:.0}% t-interval | {} | {} | |\n",
        report.val_accuracy_difference.confidence * 100.0,
        interval(&report.train_accuracy_difference),
        interval(&report.val_accuracy_difference)
    );
    out
}

/// `report.md`.
pub fn markdown(report: &Report) -> String {
    let recipe = &report.recipe;
    let over_seeds = if report.seeds.len() > 1 { format!("{}\n", seeds_table(report)) } else { String::new() };
    let mut out = format!(
        "# AlexNet vs BA-AlexNet on CIFAR-10\n\n\
         {} training images an epoch and {} test images from `{}`; {}.\n\n\
         Machine: {}.\n\n## Results\n\n{}\n{over_seeds}{}.\n\n",
        thousands(report.train_images_per_epoch),
        thousands(report.test_images),
        recipe.data.display(),
        recipe.describe_with_seeds(&report.seeds),
        report.machine.describe(),
        results_table(report),
        capitalise(&report.verdict),
    );
    out += "Accuracies are fractions of the test set at the last epoch (best: the epoch kept as \
            `best.safetensors`). Inference, test pass: the whole test set in evaluation mode with \
            data loading, as the notebook timed it; median: a batch of ";
    out += &format!(
        "{} test images, {} warm-up passes, then the median of {} timed passes. BA-AlexNet applies \
         its gate to conv3's output; the notebook's computed the gate and discarded it \
         (docs/notebook.md).\n\n",
        report.runs.first().map_or(0, |r| r.inference.batch_size),
        BENCH_WARMUP,
        BENCH_REPEATS
    );
    out += "## Learning curves\n\n![learning curves](curves.png)\n\n([SVG](curves.svg))\n\n";
    out += &format!("## Predictions on the first {GRID_IMAGES} test images (seed {})\n\n", report.seeds[0]);
    for kind in ModelKind::ALL {
        out += &format!("![{0}](predictions-{0}.png)\n\n", kind.name());
    }
    out += "## Recipe\n\n| option | value |\n|---|---|\n";
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(recipe) {
        for (name, value) in fields {
            match name.as_str() {
                "seed" => out += &format!("| seeds | {:?} |\n", report.seeds),
                _ => out += &format!("| {name} | {value} |\n"),
            }
        }
    }
    out
}

/// `5216` as `+5,216`.
fn signed_thousands(n: i64) -> String {
    format!("{}{}", if n < 0 { "-" } else { "+" }, thousands(n.unsigned_abs() as usize))
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or(String::new(), |c| c.to_uppercase().chain(chars).collect())
}

/// Seconds as `1 h 02 min`, `5 min 31 s` or `42 s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::run::test_util::{subset, tiny_setup};
    use crate::run::{train_model, Control, Loaders};
    use crate::trained::fresh;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(331.0), "5 min 31 s");
        assert_eq!(duration(3725.0), "1 h 02 min");
        assert_eq!(
            (signed_thousands(5216), signed_thousands(-1200), signed_thousands(0)),
            ("+5,216".into(), "-1,200".into(), "+0".into())
        );
    }

    /// The tiny data set with 20 test images, so that a grid is full.
    fn data_and_recipe() -> (Data, Recipe) {
        let (mut data, recipe) = tiny_setup();
        let full = ba_data::Cifar10::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/cifar-10-sample")).unwrap();
        data.test = Arc::new(subset(&full.test, 2));
        (data, recipe)
    }

    #[test]
    fn a_two_seed_report_matches_the_metrics_files() {
        let (data, recipe) = data_and_recipe();
        let dir = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
        let seeds = [5, 6];
        for seed in seeds {
            let seeded = Recipe { seed, ..recipe.clone() };
            let loaders = Loaders::new(&data, &seeded, &Device::Cpu);
            for kind in ModelKind::ALL {
                let folder = run_folder(&dir, seed, kind);
                train_model(kind, &loaders, &seeded, &Device::Cpu, &folder, Control::default()).unwrap();
            }
        }
        write(&dir, &recipe, &seeds, &data, &Device::Cpu).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        let runs = json["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 4);
        let mut val = std::collections::HashMap::<String, Vec<f64>>::new();
        for run in runs {
            let (model, seed) = (run["model"].as_str().unwrap(), run["seed"].as_u64().unwrap());
            let kind: ModelKind = model.parse().unwrap();
            let epochs = read_metrics(&run_folder(&dir, seed, kind).join("metrics.jsonl")).unwrap();
            let last = epochs.last().unwrap();
            let number = |key: &str| run[key].as_f64().unwrap();
            assert_eq!(number("train_accuracy"), last.train.accuracy, "{model} {seed}");
            assert_eq!(number("val_accuracy"), last.val.accuracy, "{model} {seed}");
            assert_eq!(number("val_loss"), last.val.loss, "{model} {seed}");
            assert_eq!(number("test_pass_images_per_second"), last.val.images_per_second());
            let best = epochs.iter().map(|e| e.val.accuracy).fold(f64::MIN, f64::max);
            assert_eq!(number("best_val_accuracy"), best);
            let seconds: f64 = epochs.iter().map(|e| e.train.seconds + e.val.seconds).sum();
            assert_eq!(number("seconds"), seconds);
            let parameters = if kind == ModelKind::AlexNet { 7_524_042 } else { 7_529_258 };
            assert_eq!(run["parameters"].as_u64().unwrap(), parameters);
            assert!(run["inference"]["median_images_per_second"].as_f64().unwrap() > 0.0);
            val.entry(model.to_string()).or_default().push(last.val.accuracy);
        }
        for model in json["models"].as_array().unwrap() {
            let values = &val[model["model"].as_str().unwrap()];
            assert_eq!(model["val_accuracy"]["mean"].as_f64().unwrap(), (values[0] + values[1]) / 2.0);
        }
        let diffs: Vec<f64> = (0..2).map(|i| val["ba-alexnet"][i] - val["alexnet"][i]).collect();
        let mean = json["val_accuracy_difference"]["difference"]["mean"].as_f64().unwrap();
        assert!((mean - (diffs[0] + diffs[1]) / 2.0).abs() < 1e-12);
        assert!(json["val_accuracy_difference"]["interval"].is_array(), "two seeds give an interval");
        for (file, size) in [
            ("curves.png", (1400, 900)),
            ("predictions-alexnet.png", grid::grid_size(GRID_IMAGES)),
            ("predictions-ba-alexnet.png", grid::grid_size(GRID_IMAGES)),
        ] {
            let image = image::open(dir.join(file)).unwrap();
            assert_eq!((image.width(), image.height()), size, "{file}");
        }
        let svg = std::fs::read_to_string(dir.join("curves.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("ba-alexnet train"), "the SVG has the legend");
        assert!(svg.contains("one line per seed"));
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.contains("| alexnet | 5 |") && md.contains("over 2 seeds") && md.contains("![learning curves]"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn grid_labels_are_the_models_predictions() {
        let (data, recipe) = data_and_recipe();
        let dir = std::env::temp_dir().join(format!("xtask-grid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (vars, _) = fresh(ModelKind::BaAlexNet, &Device::Cpu).unwrap();
        let weights = dir.join("w.safetensors");
        ba_train::checkpoint::save_weights(&vars, 0, &weights).unwrap();
        let trained = Trained::load(&weights, None, &Device::Cpu).unwrap();
        let predictions = grid::predict_first(&trained, &data.test, GRID_IMAGES, &Device::Cpu).unwrap();
        assert_eq!(predictions.len(), GRID_IMAGES);
        // The same images through the evaluation loader and the model's logits.
        let (mut argmax, mut labels) = (Vec::new(), Vec::new());
        for batch in Loaders::new(&data, &recipe, &Device::Cpu).val.epoch(0) {
            let batch = batch.unwrap();
            let logits = trained.model.forward_t(&batch.images, false).unwrap();
            argmax.extend(logits.argmax(candle_core::D::Minus1).unwrap().to_vec1::<u32>().unwrap());
            labels.extend(batch.labels.to_vec1::<u32>().unwrap());
        }
        for (i, p) in predictions.iter().enumerate() {
            assert_eq!((p.predicted, p.truth), (argmax[i] as usize, labels[i] as usize), "image {i}");
            let (said, truth) = p.titles(&data.classes);
            assert!(said.contains(&data.classes[p.predicted]) && truth.ends_with(&data.classes[p.truth]));
        }
        let path = dir.join("grid.png");
        grid::write(&path, "ba-alexnet", &predictions, &data.classes).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        for (i, p) in predictions.iter().enumerate() {
            let (x, y) = grid::image_origin(i);
            let frame = image.get_pixel(x - 2, y - 2).0;
            let want = if p.correct() { [255, 255, 255] } else { [200, 0, 0] };
            assert_eq!(frame, want, "image {i}: a red frame exactly when wrong");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
