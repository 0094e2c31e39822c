//! Arbitrary bytes as the tar inside a `.tar.gz`: the harness gzips them (mutating the
//! compressed stream would mostly test the CRC), then CIFAR-10 is read from the archive.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("ba-fuzz-{}.tar.gz", std::process::id()));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let _ = ba_data::Cifar10::open(path.as_path());
});
