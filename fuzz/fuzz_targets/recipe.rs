//! A run folder's `recipe.json` with arbitrary content, read as `--resume` reads it: either a
//! clear error or a recipe that validates and round-trips.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use xtask::Recipe;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(recipe) = Recipe::from_json(text, Path::new("recipe.json")) {
        recipe.validate().unwrap();
        let stored = serde_json::to_string(&recipe).unwrap();
        let again = Recipe::from_json(&stored, Path::new("recipe.json")).unwrap();
        assert_eq!(serde_json::to_string(&again).unwrap(), stored);
    }
});
