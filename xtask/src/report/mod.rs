//! The comparison report of a `compare` folder: `report.md`, `report.json`, the learning
//! curves, the paired differences and the prediction grids, all computed from the run folders'
//! files (metrics, and the first seed's final weights for the grids), so `cargo xtask report`
//! can rebuild them at any time, also for folders merged from several comparisons.

pub mod confusion;
pub mod curves;
pub mod differences;
pub mod grid;
pub mod stats;

use std::path::Path;

use anyhow::{bail, Result};
use ba_core::model::ParameterCount;
use ba_models::ModelKind;
use ba_train::metrics::{read_metrics, read_step_records};
use ba_train::EpochRecord;
use candle_core::Device;
use serde::Serialize;

use crate::comparison::{run_folder, Comparison};
use crate::machine::Machine;
use crate::preset::Recipe;
use crate::setup::Data;
use crate::table::thousands;
use crate::trained::{fresh, split_batch, Throughput, Trained};
use stats::{MeanStd, PairedDifference};

/// Test images shown in each prediction grid.
pub const GRID_IMAGES: usize = 18;
/// Confidence level of the paired intervals.
pub const CONFIDENCE: f64 = 0.95;
/// Untimed and timed forward passes of the inference benchmark.
const BENCH_WARMUP: usize = 3;
const BENCH_REPEATS: usize = 11;

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
    /// Seconds of training and evaluation, summed over epochs.
    pub seconds: f64,
}

/// One model's results over seeds, and its inference speed on the machine that drew the report.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStats {
    pub model: String,
    pub parameters: usize,
    pub trainable_parameters: usize,
    pub train_accuracy: MeanStd,
    pub val_accuracy: MeanStd,
    pub best_val_accuracy: MeanStd,
    /// Inference as a benchmark measures it: warm-up, then the median of repeated batches
    /// (the architecture's speed, measured once when the report is drawn).
    pub inference: Throughput,
}

/// One model minus another, paired by seed.
#[derive(Debug, Clone, Serialize)]
pub struct PairReport {
    /// The model subtracted from (the later of the two in [`ModelKind::ALL`]).
    pub model: String,
    /// The model subtracted (the baseline of the pair).
    pub baseline: String,
    /// `BA-AlexNet - AlexNet`.
    pub label: String,
    /// Per seed, in the comparison's order: final val accuracy of `model` minus `baseline`'s.
    pub val_accuracy_by_seed: Vec<f64>,
    /// The mean of those differences and its interval.
    pub val_accuracy: PairedDifference,
    /// The same for the final train accuracy.
    pub train_accuracy: PairedDifference,
    /// Whether the val accuracy interval excludes zero, in words.
    pub verdict: String,
}

/// Everything `report.md` shows, as `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub recipe: Recipe,
    pub seeds: Vec<u64>,
    pub train_images_per_epoch: usize,
    pub test_images: usize,
    pub machine: Machine,
    /// Every model under every seed, in the order of the models per seed.
    pub runs: Vec<RunReport>,
    /// Per model, baseline first.
    pub models: Vec<ModelStats>,
    /// Every pair of models, later minus earlier: for the three models SE - AlexNet,
    /// BA - AlexNet, BA - SE.
    pub pairs: Vec<PairReport>,
}

/// Reads the finished runs of the comparison in `dir` (`seed-N/<model>/metrics.jsonl`),
/// measures each model's inference, draws the figures and writes `report.md` and
/// `report.json`. The prediction grids need the first seed's `final.safetensors`; without
/// them (a folder of metrics alone) the report has no grids.
pub fn write(dir: &Path, comparison: &Comparison, data: &Data, device: &Device) -> Result<Report> {
    let Comparison { recipe, seeds, models } = comparison;
    let bench_batch = split_batch(&data.test, 0..recipe.batch_size.min(data.test.len()), recipe.family(), device)?;
    // Counts and inference speed belong to the architecture: measured once per model.
    let mut measured = Vec::new();
    for &kind in models {
        let (vars, model) = fresh(kind, device)?;
        let inference = Throughput::measure(model.as_ref(), &bench_batch, BENCH_WARMUP, BENCH_REPEATS)?;
        measured.push((kind, ParameterCount::of(&vars), inference));
    }
    let mut runs = Vec::new();
    let mut histories = Vec::new();
    for &seed in seeds {
        for &(kind, count, _) in &measured {
            let folder = run_folder(dir, seed, kind);
            let metrics_path = folder.join("metrics.jsonl");
            let epochs = read_metrics(&metrics_path)?;
            if epochs.len() < recipe.epochs {
                bail!(
                    "{}: {} of {} epochs recorded, so the run has not finished (continue it with --resume)",
                    metrics_path.display(),
                    epochs.len(),
                    recipe.epochs
                );
            }
            let steps = read_step_records(&metrics_path)?;
            runs.push(run_report(&metrics_path, (kind, count), seed, &epochs)?);
            histories.push((kind, seed, steps, epochs));
        }
    }
    let stats: Vec<ModelStats> =
        measured.into_iter().map(|(kind, count, inference)| model_stats(kind, count, inference, &runs)).collect();
    let grids = seeds[0];
    let with_grids = models.iter().all(|&k| run_folder(dir, grids, k).join("final.safetensors").is_file());
    if with_grids {
        for &kind in models {
            let trained = Trained::load(&run_folder(dir, grids, kind).join("final.safetensors"), Some(kind), device)?;
            let predictions = grid::predict_first(&trained, &data.test, GRID_IMAGES, device)?;
            let path = dir.join(format!("predictions-{}.png", kind.name()));
            grid::write(&path, kind.name(), &predictions, &data.classes)?;
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
    let report = Report {
        recipe: recipe.clone(),
        seeds: seeds.clone(),
        // The loader drops the last partial batch.
        train_images_per_epoch: data.train.len() / recipe.batch_size * recipe.batch_size,
        test_images: data.test.len(),
        machine: Machine::this(device),
        pairs: pairs(models, &runs),
        models: stats,
        runs,
    };
    differences::write(dir, "differences", &report)?;
    std::fs::write(dir.join("report.md"), markdown(&report, with_grids))
        .map_err(|e| anyhow::anyhow!("writing {}/report.md: {e}", dir.display()))?;
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
    (kind, count): (ModelKind, ParameterCount),
    seed: u64,
    epochs: &[EpochRecord],
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
        parameters: count.total,
        trainable_parameters: count.trainable,
        epochs: epochs.len(),
        train_loss: last.train.loss,
        train_accuracy: last.train.accuracy,
        val_loss: last.val.loss,
        val_accuracy: last.val.accuracy,
        best_val_accuracy: best.val.accuracy,
        best_epoch: best.epoch,
        train_images_per_second: train_images as f64 / train_seconds.max(1e-9),
        test_pass_images_per_second: last.val.images_per_second(),
        seconds: epochs.iter().map(|e| e.train.seconds + e.val.seconds).sum(),
    })
}

fn model_stats(kind: ModelKind, count: ParameterCount, inference: Throughput, runs: &[RunReport]) -> ModelStats {
    let of = |field: fn(&RunReport) -> f64| {
        MeanStd::of(&runs.iter().filter(|r| r.model == kind.name()).map(field).collect::<Vec<_>>())
    };
    ModelStats {
        model: kind.name().to_string(),
        parameters: count.total,
        trainable_parameters: count.trainable,
        train_accuracy: of(|r| r.train_accuracy),
        val_accuracy: of(|r| r.val_accuracy),
        best_val_accuracy: of(|r| r.best_val_accuracy),
        inference,
    }
}

/// Every pair of `models`, later minus earlier, ordered by the later model then the earlier
/// (SE - AlexNet, BA - AlexNet, BA - SE), paired by seed.
fn pairs(models: &[ModelKind], runs: &[RunReport]) -> Vec<PairReport> {
    let values = |kind: ModelKind, field: fn(&RunReport) -> f64| -> Vec<f64> {
        runs.iter().filter(|r| r.model == kind.name()).map(field).collect()
    };
    let mut out = Vec::new();
    for (j, &model) in models.iter().enumerate() {
        for &baseline in &models[..j] {
            let paired = |field: fn(&RunReport) -> f64| (values(baseline, field), values(model, field));
            let label = format!("{} - {}", model.title(), baseline.title());
            let (a, b) = paired(|r| r.val_accuracy);
            let val_accuracy = PairedDifference::of(&a, &b, CONFIDENCE);
            let (train_a, train_b) = paired(|r| r.train_accuracy);
            out.push(PairReport {
                model: model.name().to_string(),
                baseline: baseline.name().to_string(),
                verdict: val_accuracy.verdict(&format!("{label} in final val accuracy")),
                val_accuracy_by_seed: a.iter().zip(&b).map(|(a, b)| b - a).collect(),
                val_accuracy,
                train_accuracy: PairedDifference::of(&train_a, &train_b, CONFIDENCE),
                label,
            });
        }
    }
    out
}

/// Prints the tables and the verdicts to the terminal.
pub fn print(report: &Report, dir: &Path) {
    println!("\n{}", results_table(report));
    println!("{}", seeds_table(report));
    for pair in &report.pairs {
        println!("{}.", capitalise(&pair.verdict));
    }
    println!("\nreport: {}", dir.join("report.md").display());
}

/// The results table: one row per model and seed, then each pair's difference per seed.
pub fn results_table(report: &Report) -> String {
    let mut out = String::from(
        "| model | seed | train acc | val acc | parameters | trainable | best val acc (epoch) | final val loss \
         | train img/s | inference img/s, test pass | time |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in &report.runs {
        out += &format!(
            "| {} | {} | {:.4} | {:.4} | {} | {} | {:.4} ({}) | {:.4} | {:.1} | {:.1} | {} |\n",
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
            duration(r.seconds),
        );
    }
    let find = |seed: u64, model: &str| report.runs.iter().find(|r| r.seed == seed && r.model == model);
    for pair in &report.pairs {
        for &seed in &report.seeds {
            if let (Some(a), Some(b)) = (find(seed, &pair.baseline), find(seed, &pair.model)) {
                out += &format!(
                    "| **{}** | {seed} | {:+.4} | {:+.4} | {} | {} | {:+.4} | {:+.4} | | | |\n",
                    pair.label,
                    b.train_accuracy - a.train_accuracy,
                    b.val_accuracy - a.val_accuracy,
                    signed_thousands(b.parameters as i64 - a.parameters as i64),
                    signed_thousands(b.trainable_parameters as i64 - a.trainable_parameters as i64),
                    b.best_val_accuracy - a.best_val_accuracy,
                    b.val_loss - a.val_loss,
                );
            }
        }
    }
    out
}

/// Per model mean ± std over seeds and inference speed; per pair the mean paired difference
/// with its interval.
pub fn seeds_table(report: &Report) -> String {
    let n = report.seeds.len();
    let ms = |m: &MeanStd| if n > 1 { format!("{:.4} ± {:.4}", m.mean, m.std) } else { format!("{:.4}", m.mean) };
    let mut out = format!(
        "| over {n} seed{} (mean ± std) | parameters (trainable) | train acc | val acc | best val acc \
         | inference img/s, median |\n|---|---:|---:|---:|---:|---:|\n",
        if n == 1 { "" } else { "s" }
    );
    for m in &report.models {
        out += &format!(
            "| {} | {} ({}) | {} | {} | {} | {:.1} |\n",
            m.model,
            thousands(m.parameters),
            thousands(m.trainable_parameters),
            ms(&m.train_accuracy),
            ms(&m.val_accuracy),
            ms(&m.best_val_accuracy),
            m.inference.median_images_per_second,
        );
    }
    let interval = |d: &PairedDifference| match d.interval {
        Some((lo, hi)) => format!("{:+.4} [{lo:+.4}, {hi:+.4}]", d.difference.mean),
        None => format!("{:+.4} (one seed: no interval)", d.difference.mean),
    };
    for pair in &report.pairs {
        out += &format!(
            "| **{}**, paired, {:.0}% t-interval | | {} | {} | | |\n",
            pair.label,
            pair.val_accuracy.confidence * 100.0,
            interval(&pair.train_accuracy),
            interval(&pair.val_accuracy)
        );
    }
    out
}

/// The title of `report.md`: the models compared.
fn title(report: &Report) -> String {
    let titles: Vec<&str> =
        report.models.iter().filter_map(|m| m.model.parse::<ModelKind>().ok()).map(|k| k.title()).collect();
    titles.join(" vs ")
}

/// `report.md`; `with_grids` when the prediction grids were drawn.
pub fn markdown(report: &Report, with_grids: bool) -> String {
    let recipe = &report.recipe;
    let verdicts: String = report.pairs.iter().map(|p| format!("- {}.\n", capitalise(&p.verdict))).collect();
    let mut out = format!(
        "# {} on CIFAR-10\n\n\
         {} training images an epoch and {} test images from `{}`; {}.\n\n\
         Machine: {}.\n\n## Results\n\n{}\n{}\n{verdicts}\n\
         ![paired differences](differences.png)\n\n([SVG](differences.svg): each dot one seed's \
         difference in final val accuracy; the bar the mean and its {:.0}% t-interval.)\n\n",
        title(report),
        thousands(report.train_images_per_epoch),
        thousands(report.test_images),
        recipe.data.display(),
        recipe.describe_with_seeds(&report.seeds),
        report.machine.describe(),
        seeds_table(report),
        results_table(report),
        CONFIDENCE * 100.0,
    );
    out += "Accuracies are fractions of the test set at the last epoch (best: the epoch kept as \
            `best.safetensors`). The intervals cover seed-to-seed variation (initialisation, data \
            order, augmentation, mixup and dropout draws, all fixed by the seed and shared by the \
            models under one seed), not the sampling noise of the test set itself. Inference, test \
            pass: the whole test set in evaluation mode with data loading, as the notebook timed \
            it; median: a batch of ";
    out += &format!(
        "{} test images, {} warm-up passes, then the median of {} timed passes, on the machine \
         that drew this report. The gated models multiply conv3's output (AlexNet's fifth \
         convolution) before its ReLU and max-pool; the notebook's BA-AlexNet computed the gate \
         and discarded it (docs/notebook.md).\n\n",
        report.models.first().map_or(0, |m| m.inference.batch_size),
        BENCH_WARMUP,
        BENCH_REPEATS
    );
    out += "## Learning curves\n\n![learning curves](curves.png)\n\n([SVG](curves.svg))\n\n";
    if with_grids {
        out += &format!("## Predictions on the first {GRID_IMAGES} test images (seed {})\n\n", report.seeds[0]);
        for m in &report.models {
            out += &format!("![{0}](predictions-{0}.png)\n\n", m.model);
        }
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
    use crate::run::{train_model, Control};
    use crate::setup::test_util::{subset, tiny_setup};
    use crate::setup::Loaders;

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
    fn a_two_seed_three_model_report_matches_the_metrics_files() {
        let (data, recipe) = data_and_recipe();
        let dir = std::env::temp_dir().join(format!("xtask-report-{}", std::process::id()));
        let comparison = Comparison::new(&recipe, vec![5, 6], &ModelKind::ALEXNETS).unwrap();
        for &seed in &comparison.seeds {
            let seeded = Recipe { seed, ..recipe.clone() };
            let loaders = Loaders::new(&data, &seeded, &Device::Cpu);
            for kind in ModelKind::ALEXNETS {
                let folder = run_folder(&dir, seed, kind);
                train_model(kind, &loaders, &seeded, &Device::Cpu, &folder, Control::default()).unwrap();
            }
        }
        write(&dir, &comparison, &data, &Device::Cpu).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
        let runs = json["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 6);
        let mut val = std::collections::HashMap::<String, Vec<f64>>::new();
        let mut train = std::collections::HashMap::<String, Vec<f64>>::new();
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
            let parameters = match kind {
                ModelKind::AlexNet => 7_524_042,
                ModelKind::SeAlexNet => 7_526_122,
                ModelKind::BaAlexNet => 7_529_258,
                ModelKind::ResNet { .. } => unreachable!("the AlexNets only"),
            };
            assert_eq!(run["parameters"].as_u64().unwrap(), parameters);
            val.entry(model.to_string()).or_default().push(last.val.accuracy);
            train.entry(model.to_string()).or_default().push(last.train.accuracy);
        }
        for model in json["models"].as_array().unwrap() {
            let values = &val[model["model"].as_str().unwrap()];
            assert_eq!(model["val_accuracy"]["mean"].as_f64().unwrap(), (values[0] + values[1]) / 2.0);
            assert!(model["inference"]["median_images_per_second"].as_f64().unwrap() > 0.0);
        }
        // Every pair, later minus earlier, each against the per-seed differences of the files.
        let pairs = json["pairs"].as_array().unwrap();
        let labels: Vec<&str> = pairs.iter().map(|p| p["label"].as_str().unwrap()).collect();
        assert_eq!(labels, ["SE-AlexNet - AlexNet", "BA-AlexNet - AlexNet", "BA-AlexNet - SE-AlexNet"]);
        for pair in pairs {
            let (model, baseline) = (pair["model"].as_str().unwrap(), pair["baseline"].as_str().unwrap());
            let diffs: Vec<f64> = (0..2).map(|i| val[model][i] - val[baseline][i]).collect();
            let by_seed: Vec<f64> = serde_json::from_value(pair["val_accuracy_by_seed"].clone()).unwrap();
            assert_eq!(by_seed, diffs, "{model} - {baseline}");
            let own = PairedDifference::of(&val[baseline], &val[model], CONFIDENCE);
            let mean = pair["val_accuracy"]["difference"]["mean"].as_f64().unwrap();
            assert!((mean - (diffs[0] + diffs[1]) / 2.0).abs() < 1e-12);
            let interval: (f64, f64) = serde_json::from_value(pair["val_accuracy"]["interval"].clone()).unwrap();
            assert_eq!(Some(interval), own.interval, "two seeds give the t-interval of the differences");
            let half = 12.706204736174694 * (diffs[0] - diffs[1]).abs() / 2f64.sqrt() / 2f64.sqrt();
            assert!((interval.1 - interval.0 - 2.0 * half).abs() < 1e-9, "{interval:?}");
            let train_mean = pair["train_accuracy"]["difference"]["mean"].as_f64().unwrap();
            let train_diffs: Vec<f64> = (0..2).map(|i| train[model][i] - train[baseline][i]).collect();
            assert!((train_mean - (train_diffs[0] + train_diffs[1]) / 2.0).abs() < 1e-12);
        }
        for (file, size) in [
            ("curves.png", (1400, 900)),
            ("differences.png", differences::size(3)),
            ("predictions-alexnet.png", grid::grid_size(GRID_IMAGES)),
            ("predictions-se-alexnet.png", grid::grid_size(GRID_IMAGES)),
            ("predictions-ba-alexnet.png", grid::grid_size(GRID_IMAGES)),
        ] {
            let image = image::open(dir.join(file)).unwrap();
            assert_eq!((image.width(), image.height()), size, "{file}");
        }
        let svg = std::fs::read_to_string(dir.join("curves.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("se-alexnet train"), "the SVG has the legend");
        assert!(svg.contains("one line per seed"));
        let svg = std::fs::read_to_string(dir.join("differences.svg")).unwrap();
        for label in labels {
            assert!(svg.contains(label), "the difference figure names {label}");
        }
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.contains("# AlexNet vs SE-AlexNet vs BA-AlexNet on CIFAR-10"), "{md}");
        assert!(md.contains("| se-alexnet | 5 |") && md.contains("over 2 seeds") && md.contains("![learning curves]"));
        assert!(md.contains("**BA-AlexNet - SE-AlexNet**, paired") && md.contains("![paired differences]"));
        assert!(md.contains("![se-alexnet](predictions-se-alexnet.png)"));

        // Without weights (a folder of metrics, as committed under docs/results) the report is
        // the same but for the grids; an unfinished run is named.
        for seed in [5, 6] {
            for kind in ModelKind::ALEXNETS {
                for file in ["final.safetensors", "best.safetensors", "checkpoint.safetensors"] {
                    let _ = std::fs::remove_file(run_folder(&dir, seed, kind).join(file));
                }
            }
        }
        let again = write(&dir, &comparison, &data, &Device::Cpu).unwrap();
        assert_eq!(serde_json::to_value(&again.runs).unwrap(), json["runs"]);
        assert_eq!(serde_json::to_value(&again.pairs).unwrap(), json["pairs"]);
        assert!(!std::fs::read_to_string(dir.join("report.md")).unwrap().contains("## Predictions"));
        let longer = Comparison { recipe: Recipe { epochs: 3, ..comparison.recipe.clone() }, ..comparison.clone() };
        let err = write(&dir, &longer, &data, &Device::Cpu).unwrap_err().to_string();
        assert!(err.contains("seed-5/alexnet/metrics.jsonl: 2 of 3 epochs recorded"), "{err}");
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
