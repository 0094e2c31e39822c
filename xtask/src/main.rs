//! `cargo xtask`: the ba-net command line (the verbs are in the library, `lib.rs`). Exits 0
//! when the verb finished, 130 when Ctrl-C stopped a run (its checkpoint written), 1 on an
//! error and 2 on a usage error (clap's).

use std::process::ExitCode;

fn main() -> ExitCode {
    xtask::allocator::keep_freed_memory();
    match xtask::main() {
        Ok(()) if xtask::interrupted() => ExitCode::from(130),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            ExitCode::FAILURE
        }
    }
}
