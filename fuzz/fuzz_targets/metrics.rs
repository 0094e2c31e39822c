//! A run folder's `metrics.jsonl` with arbitrary content, read as `--resume` and `report` read
//! it: lines or an error naming the file and line, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("ba-fuzz-{}.jsonl", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = ba_train::metrics::read_lines(&path);
    let _ = ba_train::metrics::read_metrics(&path);
});
