//! The reader on the real CIFAR-10 archive and on the committed sample. The tests that read the
//! archive (`../shared/data/cifar-10-binary.tar.gz`, beside the repository) are ignored where it
//! is absent (`cfg(full_cifar10)`, set by the build script); CI has it and runs them.

use std::path::{Path, PathBuf};

use ba_data::{Cifar10, DataError};
use md5::{Digest, Md5};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The full CIFAR-10 beside the repository.
fn full_archive() -> Cifar10 {
    let archive = repo_root().join("../shared/data/cifar-10-binary.tar.gz");
    Cifar10::open(&archive).unwrap_or_else(|e| panic!("this test needs the full CIFAR-10: {e}"))
}

#[test]
#[cfg_attr(not(full_cifar10), ignore = "needs ../shared/data/cifar-10-binary.tar.gz beside the repository")]
fn full_archive_reads_50000_plus_10000_records_with_known_first_labels() {
    let data = full_archive();
    assert_eq!((data.train.len(), data.test.len()), (50_000, 10_000));
    assert_eq!(data.train.class_counts(), [5000; 10]);
    assert_eq!(data.test.class_counts(), [1000; 10]);
    assert_eq!(data.classes[data.train.label(0) as usize], "frog");
    assert_eq!(data.classes[data.test.label(0) as usize], "cat");
}

/// The channel statistics the ResNets normalise with are those of the 50,000 training images
/// (every pixel, on the 0..1 scale), to the four decimals they are written with.
#[test]
#[cfg_attr(not(full_cifar10), ignore = "needs ../shared/data/cifar-10-binary.tar.gz beside the repository")]
fn the_cifar_statistics_are_those_of_the_training_set() {
    let data = full_archive();
    let plane = 32 * 32;
    let (mut sum, mut squares) = ([0f64; 3], [0f64; 3]);
    for i in 0..data.train.len() {
        for (c, channel) in data.train.image(i).chunks_exact(plane).enumerate() {
            for &v in channel {
                let x = v as f64 / 255.0;
                sum[c] += x;
                squares[c] += x * x;
            }
        }
    }
    let n = (data.train.len() * plane) as f64;
    for c in 0..3 {
        let mean = sum[c] / n;
        let std = (squares[c] / n - mean * mean).sqrt();
        let (want_mean, want_std) =
            (ba_data::transforms::CIFAR10_MEAN[c] as f64, ba_data::transforms::CIFAR10_STD[c] as f64);
        assert!((mean - want_mean).abs() < 5e-5, "channel {c}: mean {mean:.5} vs {want_mean}");
        assert!((std - want_std).abs() < 5e-5, "channel {c}: std {std:.5} vs {want_std}");
    }
}

/// md5 of each committed sample file, as `data/README.md` lists them.
const SAMPLE_MD5: [(&str, &str); 2] = [
    ("data/cifar-10-sample/data_batch_1.bin.gz", "3d520645c3483c3ad5aa80d73f7bb1e7"),
    ("data/cifar-10-sample/test_batch.bin.gz", "0dd298a95bc87d4314235bd5f669a774"),
];

#[test]
fn sample_files_have_the_documented_checksums() {
    let readme = std::fs::read_to_string(repo_root().join("data/README.md")).unwrap();
    for (file, md5) in SAMPLE_MD5 {
        let actual = format!("{:x}", Md5::digest(std::fs::read(repo_root().join(file)).unwrap()));
        assert_eq!(actual, md5, "{file}");
        assert!(readme.contains(md5), "data/README.md must list {md5} for {file}");
    }
}

#[test]
fn sample_holds_500_train_and_100_test_images_per_class() {
    let data = Cifar10::open(repo_root().join("data/cifar-10-sample")).unwrap();
    assert_eq!(data.train.class_counts(), [500; 10]);
    assert_eq!(data.test.class_counts(), [100; 10]);
    assert_eq!(data.classes[data.train.label(0) as usize], "frog");
    assert_eq!(data.classes[data.test.label(0) as usize], "cat");
}

#[test]
#[cfg_attr(not(full_cifar10), ignore = "needs ../shared/data/cifar-10-binary.tar.gz beside the repository")]
fn sample_equals_the_first_images_of_each_class_in_the_archive() {
    let full = full_archive();
    let sample = Cifar10::open(repo_root().join("data/cifar-10-sample")).unwrap();
    for (whole, part, per_class) in [(&full.train, &sample.train, 500), (&full.test, &sample.test, 100)] {
        let picked = whole.first_per_class(per_class);
        assert_eq!(picked.len(), part.len());
        for (k, &i) in picked.iter().enumerate() {
            assert_eq!((whole.label(i), whole.image(i)), (part.label(k), part.image(k)), "image {k}");
        }
    }
}

#[test]
fn bad_inputs_name_the_file_and_the_problem() {
    let dir = std::env::temp_dir().join(format!("ba-data-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("nope");
    let err = Cifar10::open(&missing).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }) && err.to_string().contains("nope"), "{err}");

    let err = Cifar10::open(&dir).unwrap_err().to_string();
    assert!(err.contains("no training batches (data_batch_*) found"), "{err}");

    std::fs::write(dir.join("data_batch_1.bin"), vec![0u8; 3073 + 5]).unwrap();
    let err = Cifar10::open(&dir).unwrap_err().to_string();
    assert!(err.contains("data_batch_1.bin: 3078 bytes is not a whole number"), "{err}");

    let not_gzip = dir.join("archive.tar.gz");
    std::fs::write(&not_gzip, b"definitely not gzip").unwrap();
    let err = Cifar10::open(&not_gzip).unwrap_err().to_string();
    assert!(err.contains("archive.tar.gz: not a gzipped tar archive"), "{err}");

    // A gzip whose content is not a tar, and a valid but empty .tar.gz.
    let gzip = |bytes: &[u8]| {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    };
    let not_tar = dir.join("not-tar.tar.gz");
    std::fs::write(&not_tar, gzip(&[7u8; 3000])).unwrap();
    let err = Cifar10::open(&not_tar).unwrap_err().to_string();
    assert!(err.contains("not-tar.tar.gz: not a gzipped tar archive"), "{err}");
    let empty = dir.join("empty.tar.gz");
    std::fs::write(&empty, gzip(&tar::Builder::new(Vec::new()).into_inner().unwrap())).unwrap();
    let err = Cifar10::open(&empty).unwrap_err().to_string();
    assert!(err.contains("empty.tar.gz") && err.contains("no training batches"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
