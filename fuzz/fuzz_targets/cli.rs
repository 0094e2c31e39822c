//! The command line: arbitrary bytes split at NUL into arguments, parsed as `cargo xtask` parses
//! them, then put through the checks `train` and `compare` make before any work. A recipe that
//! passes must survive being stored as `recipe.json` and read back on resume.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use xtask::{Cli, Recipe};

fuzz_target!(|data: &[u8]| {
    let args = std::iter::once(OsString::from("cargo xtask"))
        .chain(data.split(|&b| b == 0).map(|a| OsString::from_vec(a.to_vec())));
    let Ok(cli) = Cli::try_parse_from(args) else { return };
    if let Ok(Some(recipe)) = cli.check() {
        let stored = serde_json::to_string_pretty(&recipe).unwrap();
        let read = Recipe::from_json(&stored, Path::new("recipe.json"))
            .unwrap_or_else(|e| panic!("a recipe the command line accepts is refused on resume: {e:#}\n{stored}"));
        assert_eq!(serde_json::to_string_pretty(&read).unwrap(), stored);
    }
});
