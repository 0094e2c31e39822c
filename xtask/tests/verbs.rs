//! The report verbs end to end, as a user runs them: `compare --models --seeds` writes the
//! whole report folder, `report` merges folders of single seeds into the same statistics,
//! `eval`, `predict` and `summary` read what it wrote. Uses the 12-image fixture, so each
//! command takes seconds.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/ba-data/tests/fixtures/cifar-10-batches-bin")
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).env("RUST_LOG", "warn").output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `--version` names the crate's version and the commit built; a usage error exits 2, an
/// error 1 (Ctrl-C's 130 is in `interrupted_runs.rs`).
#[test]
fn version_and_exit_statuses() {
    let printed = stdout(&xtask(&["--version"]));
    assert!(printed.starts_with(&format!("cargo xtask {} (commit ", env!("CARGO_PKG_VERSION"))), "{printed}");
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok();
    if let Some(head) = head.filter(|h| h.status.success()) {
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert!(printed.contains(&format!("(commit {head})")), "{printed} is not built from {head}");
    }
    assert_eq!(xtask(&["train", "--no-such-option"]).status.code(), Some(2));
    assert_eq!(xtask(&["eval", "--checkpoint", "/nonexistent/final.safetensors"]).status.code(), Some(1));
}

/// `train --config <run>/recipe.json` reruns that run: the same recipe file and metrics.
#[test]
fn a_run_folders_recipe_reruns_the_run() {
    let out = std::env::temp_dir().join(format!("xtask-config-rerun-{}", std::process::id()));
    let (data, out_arg) = (fixture().display().to_string(), out.display().to_string());
    let first = ["train", "--data", &data, "--out", &out_arg, "--epochs", "2", "--batch-size", "4", "--seed", "5"];
    stdout(&xtask(&first));
    let recipe = out.join("train-ba-alexnet-1/recipe.json");
    stdout(&xtask(&["train", "--config", &recipe.display().to_string(), "--out", &out_arg]));
    let read = |run: &str| std::fs::read_to_string(out.join(run)).unwrap();
    assert_eq!(read("train-ba-alexnet-2/recipe.json"), read("train-ba-alexnet-1/recipe.json"));
    let epochs = |run: &str| -> Vec<(usize, f64, f64, f64)> {
        ba_train::metrics::read_metrics(&out.join(run).join("metrics.jsonl"))
            .unwrap()
            .iter()
            .map(|e| (e.epoch, e.train.loss, e.val.loss, e.val.accuracy))
            .collect()
    };
    assert_eq!(epochs("train-ba-alexnet-2"), epochs("train-ba-alexnet-1"));
    std::fs::remove_dir_all(&out).unwrap();
}

/// Redirected, `compare` writes its results to stdout and nothing else: the log lines (at
/// `info`, the default) and the status lines go to stderr, without colour codes.
#[test]
fn stdout_holds_the_results_alone_and_stderr_the_log_without_colour() {
    let out = std::env::temp_dir().join(format!("xtask-streams-{}", std::process::id()));
    let (data, out_arg) = (fixture().display().to_string(), out.display().to_string());
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["compare", "--data", &data, "--out", &out_arg, "--epochs", "1", "--batch-size", "4"])
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let (printed, logged) = (stdout(&output), String::from_utf8_lossy(&output.stderr).into_owned());
    assert!(logged.contains("epoch done") && logged.contains("estimated time here"), "{logged}");
    assert!(!printed.contains("epoch done") && !printed.contains("INFO"), "log lines on stdout: {printed}");
    assert!(!printed.contains("estimated time") && !printed.contains("training alexnet"), "{printed}");
    assert!(printed.contains("| ba-alexnet | 42 |"), "{printed}");
    for (name, text) in [("stdout", &printed), ("stderr", &logged)] {
        assert!(!text.contains('\u{1b}'), "escape sequences on {name} although it is not a terminal: {text}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn compare_with_two_seeds_then_eval_predict_and_summary() {
    let out = std::env::temp_dir().join(format!("xtask-verbs-{}", std::process::id()));
    let (data, out_arg) = (fixture().display().to_string(), out.display().to_string());
    let common = ["--data", &data, "--out", &out_arg, "--epochs", "2", "--batch-size", "4"];
    let models = ["--models", "alexnet,se-alexnet,ba-alexnet"];
    let printed = stdout(&xtask(&[&["compare", "--seeds", "42,43"], &models[..], &common[..]].concat()));
    let dir = out.join("compare-1");
    assert!(printed.contains("| se-alexnet | 43 |") && printed.contains("over 2 seeds"), "{printed}");
    for pair in ["SE-AlexNet - AlexNet", "BA-AlexNet - AlexNet", "BA-AlexNet - SE-AlexNet"] {
        assert!(printed.contains(&format!("interval of the mean difference {pair} in final val")), "{printed}");
    }
    for file in [
        "report.md",
        "report.json",
        "curves.png",
        "curves.svg",
        "differences.png",
        "differences.svg",
        "predictions-alexnet.png",
        "predictions-se-alexnet.png",
        "predictions-ba-alexnet.png",
        "models.json",
        "seeds.json",
        "recipe.json",
        "seed-43/se-alexnet/metrics.jsonl",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let read =
        |path: PathBuf| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap() };
    let report = read(dir.join("report.json"));
    assert_eq!(report["seeds"], serde_json::json!([42, 43]));
    assert_eq!(report["pairs"].as_array().unwrap().len(), 3);

    // The same two seeds run one per invocation and merged give the same rows and statistics.
    for seed in ["42", "43"] {
        stdout(&xtask(&[&["compare", "--seed", seed], &models[..], &common[..]].concat()));
    }
    let (single_42, single_43) = (out.join("compare-2"), out.join("compare-3"));
    let (a, b) = (single_42.display().to_string(), single_43.display().to_string());
    let printed = stdout(&xtask(&["report", &a, &b, "--out", &out_arg]));
    assert!(printed.contains("merged seeds [42, 43] from 2 folders"), "{printed}");
    let merged = read(out.join("merged-1/report.json"));
    let without_timing = |runs: &serde_json::Value| -> Vec<serde_json::Value> {
        let mut runs = runs.as_array().unwrap().clone();
        for run in &mut runs {
            let run = run.as_object_mut().unwrap();
            for timing in ["seconds", "train_images_per_second", "test_pass_images_per_second"] {
                assert!(run.remove(timing).is_some(), "{timing}");
            }
        }
        runs
    };
    assert_eq!(without_timing(&merged["runs"]), without_timing(&report["runs"]));
    assert_eq!(merged["pairs"], report["pairs"]);
    for (m, r) in merged["models"].as_array().unwrap().iter().zip(report["models"].as_array().unwrap()) {
        assert_eq!((&m["val_accuracy"], &m["train_accuracy"]), (&r["val_accuracy"], &r["train_accuracy"]));
    }
    // Rebuilt in place, the merged folder gives the same report; another recipe is refused.
    stdout(&xtask(&["report", &out.join("merged-1").display().to_string()]));
    assert_eq!(read(out.join("merged-1/report.json"))["pairs"], report["pairs"]);
    stdout(&xtask(&[&["compare", "--seed", "44", "--lr", "0.001"], &models[..], &common[..]].concat()));
    let other = out.join("compare-4").display().to_string();
    let err = stderr(&xtask(&["report", &a, &other, "--out", &out_arg]));
    assert!(err.contains("`lr` is 0.0001 in one and 0.001 in the other"), "{err}");
    let run =
        report["runs"].as_array().unwrap().iter().find(|r| r["model"] == "ba-alexnet" && r["seed"] == 42).unwrap();

    // eval of that run's final weights reproduces its last val accuracy.
    let weights = dir.join("seed-42/ba-alexnet/final.safetensors");
    let weights_arg = weights.display().to_string();
    let printed = stdout(&xtask(&["eval", "--checkpoint", &weights_arg, "--data", &data]));
    let accuracy: f64 = printed.split("accuracy ").nth(1).unwrap().split(',').next().unwrap().parse().unwrap();
    assert!((accuracy - run["val_accuracy"].as_f64().unwrap()).abs() < 5e-5, "{printed}");
    assert!(printed.contains("| true \\ predicted |") && printed.contains("images/s"), "{printed}");
    assert!(dir.join("seed-42/ba-alexnet/final-confusion.png").is_file());

    // predict: an image file of another size and a test index, three classes each.
    let picture = out.join("picture.png");
    image::RgbImage::from_fn(40, 25, |x, y| image::Rgb([x as u8 * 6, y as u8 * 9, 128])).save(&picture).unwrap();
    let picture_arg = picture.display().to_string();
    let printed =
        stdout(&xtask(&["predict", "--checkpoint", &weights_arg, &picture_arg, "--index", "0,7", "--data", &data]));
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 3, "{printed}");
    assert!(lines[0].starts_with(&picture_arg) && lines[1].starts_with("test image 0 (true: "), "{printed}");
    assert!(lines.iter().all(|l| l.matches('%').count() == 3), "{printed}");

    let printed = stdout(&xtask(&["summary", "--model", "alexnet"]));
    assert!(printed.contains("Total params: 7,524,042") && !printed.contains("ba."), "{printed}");

    // Mistakes are named before any work.
    let err = stderr(&xtask(&[&["compare", "--seeds", "42,42"], &common[..]].concat()));
    assert!(err.contains("repeats a seed"), "{err}");
    let err = stderr(&xtask(&["predict", "--checkpoint", &weights_arg]));
    assert!(err.contains("nothing to predict"), "{err}");
    let err = stderr(&xtask(&["predict", "--checkpoint", &weights_arg, "--index", "8", "--data", &data]));
    assert!(err.contains("--index 8") && err.contains("8 test images"), "{err}");
    let err = stderr(&xtask(&["eval", "--checkpoint", "no/such.safetensors", "--data", &data]));
    assert!(err.contains("no/such.safetensors"), "{err}");
    let huge = ["train", "--data", &data, "--out", &out_arg, "--batch-size", "10000000"];
    let err = stderr(&xtask(&huge));
    assert!(
        err.contains("batch size 10000000 needs about") && err.contains("the largest batch size that fits"),
        "{err}"
    );
    assert!(!out.join("train-ba-alexnet-1").exists(), "refused before creating the run folder");
    let err = stderr(&xtask(&["train", "--data", &data, "--out", &out_arg, "--batch-size", "13"]));
    assert!(err.contains("--batch-size 13 is larger than the 12 training images"), "{err}");
    let err = stderr(&xtask(&[&["compare", "--runs", "18446744073709551615"], &common[..]].concat()));
    assert!(err.contains("--runs must be at most 1000"), "{err}");
    // A recipe.json edited by hand is checked as strictly as the command line.
    let recipe_path = dir.join("recipe.json");
    let text = std::fs::read_to_string(&recipe_path).unwrap();
    let edited = text.replace("\"batch_size\": 4", "\"batch_size\": 0");
    assert_ne!(text, edited);
    std::fs::write(&recipe_path, edited).unwrap();
    let err = stderr(&xtask(&["compare", "--resume", &dir.display().to_string()]));
    assert!(err.contains("recipe.json: invalid recipe") && err.contains("--batch-size must be at least 2"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}
