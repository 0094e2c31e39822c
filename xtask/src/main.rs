//! `cargo xtask`: the ba-net command line (the verbs are in the library, `lib.rs`).

/// Candle allocates a fresh buffer for every tensor op; with the system allocator each large
/// buffer is a new mapping whose pages fault on first touch. mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    xtask::main()
}
