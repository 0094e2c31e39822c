//! One writer per run folder: a process that trains into a folder holds an exclusive OS lock on
//! its `.lock` file for as long as it writes there. The OS drops the lock when the process
//! ends, however it ends, so a killed run leaves nothing stuck; a second process that would
//! write the same folder (two terminals resuming one run) is refused, naming the holder.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The lock file inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// The held lock of one run folder, released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock of the run folder `dir`, or fails naming the folder and the process that
    /// holds it.
    pub fn take(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder =
                    if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
                bail!(
                    "{} is being written by {holder}: one process at a time may write a run folder \
                     (wait for it to end or stop it, then resume)",
                    dir.display()
                );
            }
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        // Ours now: say who holds it, for the message above.
        file.set_len(0).and_then(|()| file.rewind()).with_context(|| format!("writing {}", path.display()))?;
        write!(file, "{}", std::process::id()).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_has_one_writer_at_a_time() {
        let dir = std::env::temp_dir().join(format!("xtask-run-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = RunLock::take(&dir).unwrap();
        let err = RunLock::take(&dir).unwrap_err().to_string();
        let holder = format!("is being written by process {}", std::process::id());
        assert!(err.contains(&dir.display().to_string()) && err.contains(&holder), "{err}");
        drop(first);
        let again = RunLock::take(&dir);
        assert!(again.is_ok(), "the lock was not released: {:?}", again.err());
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
