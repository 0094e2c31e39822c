//! A folder whose python-version batch files (pickles) hold arbitrary bytes, read as CIFAR-10.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("ba-fuzz-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data_batch_1"), data).unwrap();
    std::fs::write(dir.join("test_batch"), data).unwrap();
    let _ = ba_data::Cifar10::open(dir.as_path());
});
