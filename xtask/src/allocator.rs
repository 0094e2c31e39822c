//! glibc malloc settings: the binary's own, and the same for the PyTorch processes the
//! benchmarks start, so that both sides of a comparison keep freed memory alike.
//!
//! Candle allocates a fresh buffer for every tensor op, many of them tens of megabytes. By
//! default glibc's malloc gives such blocks back to the OS when they are freed (munmap, or
//! trimming the heap), so every training step faults in and zeroes the same memory again:
//! 10% of a step in `perf`. These settings keep freed memory for reuse: blocks up to 32 MiB
//! (glibc's ceiling for this setting) come from the heap, and the heap is never trimmed. An
//! AlexNet step at batch 128 runs about 8% faster than with mimalloc (which maps blocks this
//! large straight from the OS) and peaks 60 MiB lower (docs/benchmarks.md). PyTorch gains
//! as much from them: its Adam step took 21-25 ms with them and 38-42 without.

use std::process::Command;

/// Each setting: the `mallopt` parameter, the environment variable glibc reads for it at
/// start-up, and the value.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const SETTINGS: [(libc::c_int, &str, libc::c_int); 3] = [
    (libc::M_MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", 32 << 20),
    (libc::M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", libc::c_int::MAX),
    (libc::M_TOP_PAD, "MALLOC_TOP_PAD_", 64 << 20),
];

/// Applies the settings to this process. Call it first thing in `main`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory() {
    for (parameter, _, value) in SETTINGS {
        // SAFETY: `mallopt` only sets allocator parameters; it runs before any other thread
        // exists.
        unsafe {
            libc::mallopt(parameter, value);
        }
    }
}

/// Gives `command` the settings through glibc's environment variables, except those the
/// user has set.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_freed_memory_in(command: &mut Command) -> &mut Command {
    command.envs(variables_to_set(|variable| std::env::var_os(variable).is_some()))
}

/// The (variable, value) pairs of the settings whose variable `is_set` says is unset.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn variables_to_set(is_set: impl Fn(&str) -> bool) -> Vec<(&'static str, String)> {
    SETTINGS
        .iter()
        .filter(|(_, variable, _)| !is_set(variable))
        .map(|&(_, variable, value)| (variable, value.to_string()))
        .collect()
}

/// Other platforms keep their allocator's defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}

/// Other platforms keep their allocator's defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory_in(command: &mut Command) -> &mut Command {
    command
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn a_child_process_gets_the_settings_the_user_has_not_set() {
        let all = variables_to_set(|_| false);
        assert_eq!(
            all,
            [
                ("MALLOC_MMAP_THRESHOLD_", "33554432".to_string()),
                ("MALLOC_TRIM_THRESHOLD_", "2147483647".to_string()),
                ("MALLOC_TOP_PAD_", "67108864".to_string()),
            ]
        );
        let but_one = variables_to_set(|variable| variable == "MALLOC_TOP_PAD_");
        assert_eq!(but_one, all[..2]);
        let mut command = Command::new("true");
        let given: Vec<_> = keep_freed_memory_in(&mut command).get_envs().map(|(k, _)| k.to_owned()).collect();
        let unset = SETTINGS.iter().filter(|(_, v, _)| std::env::var_os(v).is_none()).count();
        assert_eq!(given.len(), unset, "{given:?}");
    }
}
