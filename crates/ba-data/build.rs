//! Sets `cfg(full_cifar10)` when the full CIFAR-10 archive lies beside the checkout
//! (`../shared/data/cifar-10-binary.tar.gz`), so that the tests which read it are ignored, with
//! the reason, on a clone without it. The library itself does not depend on it.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(full_cifar10)");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let archive = Path::new(&manifest).join("../../../shared/data/cifar-10-binary.tar.gz");
    // Watch the archive, or its folder where only that exists. A path that does not exist would
    // rerun this script (and rebuild the crate) on every build, and a folder is scanned whole,
    // so with no `../shared/data` only this file is watched: after adding the archive there,
    // `touch crates/ba-data/build.rs`.
    let folder = archive.parent().expect("the archive's path has a folder");
    let watched = match (archive.exists(), folder.is_dir()) {
        (true, _) => archive.as_path(),
        (false, true) => folder,
        (false, false) => Path::new("build.rs"),
    };
    println!("cargo::rerun-if-changed={}", watched.display());
    if archive.is_file() {
        println!("cargo::rustc-cfg=full_cifar10");
    }
}
