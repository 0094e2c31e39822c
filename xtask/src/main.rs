//! `cargo xtask`: the ba-net command line (the verbs are in the library, `lib.rs`).

fn main() -> anyhow::Result<()> {
    keep_freed_memory();
    xtask::main()
}

/// Candle allocates a fresh buffer for every tensor op, many of them tens of megabytes. By
/// default glibc's malloc gives such blocks back to the OS when they are freed (munmap, or
/// trimming the heap), so every training step faults in and zeroes the same memory again:
/// 10% of a step in `perf`. These settings keep freed memory for reuse: blocks up to 32 MiB
/// (glibc's ceiling for this setting) come from the heap, and the heap is never trimmed. An
/// AlexNet step at batch 128 runs about 8% faster than with mimalloc (which maps blocks this
/// large straight from the OS) and peaks 60 MiB lower (docs/benchmarks.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: `mallopt` only sets allocator parameters; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Other platforms keep their allocator's defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
