//! The binary and python versions, in folders and archives, decode to the same images; broken
//! python batches fail with an error naming the file and the problem. Fixtures come from
//! `scripts/data_fixtures.py` (Python's pickle and numpy on real CIFAR-10 records).

use std::path::{Path, PathBuf};

use ba_data::Cifar10;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh temporary folder holding a valid `data_batch_1` and `test_batch` from `test_batch`.
fn python_folder(tag: &str, test_batch: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ba-data-sources-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixtures().join("cifar-10-batches-py/data_batch_1"), dir.join("data_batch_1")).unwrap();
    std::fs::copy(test_batch, dir.join("test_batch")).unwrap();
    dir
}

#[test]
fn binary_and_python_versions_hold_the_same_images() {
    let binary = Cifar10::open(fixtures().join("cifar-10-batches-bin")).unwrap();
    assert_eq!((binary.train.len(), binary.test.len()), (12, 8));
    let sample = Cifar10::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/cifar-10-sample")).unwrap();
    assert_eq!(binary.test.image(7), sample.test.image(7), "fixtures are the sample's first records");
    for source in [fixtures().join("cifar-10-batches-py"), fixtures().join("cifar-10-python.tar.gz")] {
        let python = Cifar10::open(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert_eq!(python.train, binary.train, "{}", source.display());
        assert_eq!(python.test, binary.test, "{}", source.display());
    }
}

#[test]
fn every_pickle_protocol_decodes_alike() {
    let reference = Cifar10::open(fixtures().join("cifar-10-batches-py")).unwrap();
    for protocol in [2, 4, 5] {
        let dir = python_folder(
            &format!("p{protocol}"),
            &fixtures().join(format!("pickle-protocols/test_batch.p{protocol}")),
        );
        let data = Cifar10::open(&dir).unwrap_or_else(|e| panic!("protocol {protocol}: {e}"));
        assert_eq!(data.test, reference.test, "protocol {protocol}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn broken_python_batches_name_the_file_and_the_problem() {
    let bad = fixtures().join("bad");
    let err = Cifar10::open(bad.join("label11")).unwrap_err().to_string();
    assert!(err.contains("label11/test_batch: image 3 has label 11, outside 0..10"), "{err}");
    for (file, problem) in [
        ("cifar100.pickle", "it is CIFAR-100, not CIFAR-10"),
        ("narrow.pickle", "data is a u1 array of shape [8, 3000]; CIFAR-10 stores uint8 rows of 3072"),
        ("evil.pickle", "refusing to call posix.system"),
        ("truncated.pickle", "truncated"),
    ] {
        let dir = python_folder(file, &bad.join(file));
        let err = Cifar10::open(&dir).unwrap_err().to_string();
        let path = dir.join("test_batch");
        assert!(err.starts_with(&format!("{}: ", path.display())), "{file}: {err}");
        assert!(err.contains(problem), "{file}: {err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_folder_with_both_versions_is_ambiguous() {
    let dir = python_folder("both", &fixtures().join("cifar-10-batches-py/test_batch"));
    std::fs::copy(fixtures().join("cifar-10-batches-bin/test_batch.bin"), dir.join("test_batch.bin")).unwrap();
    let err = Cifar10::open(&dir).unwrap_err().to_string();
    assert!(err.contains("holds both the binary and the python version"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_truncated_archive_says_so() {
    let whole = std::fs::read(fixtures().join("cifar-10-python.tar.gz")).unwrap();
    let cut = std::env::temp_dir().join(format!("ba-data-cut-{}.tar.gz", std::process::id()));
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let err = Cifar10::open(&cut).unwrap_err().to_string();
    std::fs::remove_file(&cut).unwrap();
    assert!(err.contains(&cut.display().to_string()), "{err}");
    assert!(err.contains("truncated or corrupt") || err.contains("not a gzipped tar archive"), "{err}");
}

#[test]
fn corrupted_pickles_never_panic() {
    use rand::{Rng, SeedableRng};
    let valid = std::fs::read(fixtures().join("cifar-10-batches-py/test_batch")).unwrap();
    let mut rng = ba_data::Rng::seed_from_u64(11);
    let mut failures = 0;
    for _ in 0..3000 {
        let mut bytes = valid.clone();
        // Corrupt the structure (the first few hundred bytes hold every opcode but the pixels).
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..400.min(bytes.len()));
            bytes[at] = rng.random();
        }
        if rng.random_bool(0.3) {
            bytes.truncate(rng.random_range(0..bytes.len()));
        }
        failures += usize::from(ba_data::pickle::parse(&bytes).is_err());
    }
    assert!(failures > 1000, "most corruptions are detected ({failures} of 3000)");
}
