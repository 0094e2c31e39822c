//! A Hub parquet file with arbitrary bytes (parquet metadata, then PNG images inside).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("ba-fuzz-{}.parquet", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = ba_data::hub::read_parquet(&path);
});
