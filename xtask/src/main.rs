//! `cargo xtask`: the ba-net command line (the verbs are in the library, `lib.rs`).

fn main() -> anyhow::Result<()> {
    xtask::allocator::keep_freed_memory();
    xtask::main()
}
