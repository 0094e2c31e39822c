//! Seeded random number generators, one per purpose.
//!
//! A run has one seed. Each consumer of randomness (initialisation, shuffling, augmentation,
//! dropout, mixup) gets its own generator derived from that seed and the purpose's name, so
//! drawing more numbers for one purpose never shifts the numbers of another.

use candle_core::{Device, Shape, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

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

/// An f32 tensor of `shape` on `device` holding standard normal draws from
/// `rng_for(seed, "randn")`: `Tensor::randn` with a seed (Candle's CPU generator has none), so
/// that a test or an example that fails fails again.
pub fn randn(seed: u64, shape: impl Into<Shape>, device: &Device) -> candle_core::Result<Tensor> {
    let shape = shape.into();
    let mut rng = rng_for(seed, "randn");
    let values: Vec<f32> = (0..shape.elem_count()).map(|_| StandardNormal.sample(&mut rng)).collect();
    Tensor::from_vec(values, shape, device)
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

    #[test]
    fn randn_is_seeded_and_standard_normal() {
        let a = randn(7, (100, 100), &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = randn(7, (100, 100), &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let c = randn(8, (100, 100), &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        let var = a.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / a.len() as f32;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, variance {var}");
    }
}
