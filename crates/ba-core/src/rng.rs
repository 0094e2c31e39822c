//! Seeded random number generators, one per purpose.
//!
//! A run has one seed. Each consumer of randomness (initialisation, shuffling, augmentation,
//! dropout, mixup) gets its own generator derived from that seed and the purpose's name, so
//! drawing more numbers for one purpose never shifts the numbers of another.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator type used throughout ba-net: fast, portable and reproducible across platforms.
pub type Rng = ChaCha8Rng;

/// A seed for `purpose` derived from the run seed (SplitMix64 over the seed and an FNV-1a
/// hash of the purpose name).
pub fn derive_seed(run_seed: u64, purpose: &str) -> u64 {
    let name_hash = purpose.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut z = run_seed ^ name_hash;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A generator for `purpose` under the run seed `run_seed`.
pub fn rng_for(run_seed: u64, purpose: &str) -> Rng {
    Rng::seed_from_u64(derive_seed(run_seed, purpose))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng as _;

    #[test]
    fn purposes_are_independent_and_reproducible() {
        let a: u64 = rng_for(42, "init").random();
        let b: u64 = rng_for(42, "init").random();
        let c: u64 = rng_for(42, "dropout").random();
        let d: u64 = rng_for(43, "init").random();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
