//! The strict pickle reader on arbitrary bytes: it returns a value or an error, never panics,
//! never runs away with memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ba_data::pickle::parse(data);
});
