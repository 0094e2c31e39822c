//! Puts the checkout's commit into `--version` (`BA_NET_COMMIT`: `git rev-parse --short=12
//! HEAD`, or `unknown` outside a git checkout or without git).

use std::path::Path;
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=BA_NET_COMMIT={commit}");
    println!("cargo::rerun-if-changed=build.rs");
    // A new commit moves HEAD or the branch it names (a loose ref, or packed-refs).
    let git = Path::new("../.git");
    let head = std::fs::read_to_string(git.join("HEAD")).unwrap_or_default();
    let branch = head.strip_prefix("ref: ").map(|r| git.join(r.trim()));
    for watched in [Some(git.join("HEAD")), branch, Some(git.join("packed-refs"))].into_iter().flatten() {
        if watched.exists() {
            println!("cargo::rerun-if-changed={}", watched.display());
        }
    }
}
