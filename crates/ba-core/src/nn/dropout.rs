//! Dropout with its own seeded generator.
//!
//! `candle_nn::Dropout` draws its mask from the device generator, which cannot be seeded on the
//! CPU; this one draws from a [`Rng`](crate::rng::Rng) so a run seed fixes every mask.

use std::sync::Mutex;

use candle_core::{Result, Tensor};
use rand::Rng as _;

use crate::rng::Rng;

/// Zeroes each element with probability `p` in training and scales the rest by `1 / (1 - p)`.
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    rng: Mutex<Rng>,
}

impl Dropout {
    /// A dropout layer with drop probability `p` in [0, 1), drawing masks from `rng`.
    pub fn new(p: f32, rng: Rng) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            candle_core::bail!("dropout: probability must be in [0, 1), got {p}");
        }
        Ok(Self { p, rng: Mutex::new(rng) })
    }

    /// How far the mask generator has advanced (its ChaCha word position): with the seed it
    /// was built from, all a checkpoint needs to continue the same masks.
    pub fn position(&self) -> u128 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).get_word_pos()
    }

    /// Moves the mask generator to `position` (from [`Dropout::position`]).
    pub fn set_position(&self, position: u128) {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).set_word_pos(position);
    }

    /// Applies the layer; the identity when `train` is false.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        let scale = 1.0 / (1.0 - self.p);
        let mut rng =
            self.rng.lock().map_err(|_| candle_core::Error::Msg("dropout: generator lock poisoned".into()))?;
        let mask: Vec<f32> =
            (0..x.elem_count()).map(|_| if rng.random::<f32>() < self.p { 0.0 } else { scale }).collect();
        drop(rng);
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?;
        x.mul(&mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;
    use candle_core::Device;

    #[test]
    fn drops_at_rate_p_scales_survivors_and_is_seeded() {
        let x = Tensor::ones(20_000, candle_core::DType::F32, &Device::Cpu).unwrap();
        let run = |seed| {
            Dropout::new(0.5, rng_for(seed, "dropout")).unwrap().forward_t(&x, true).unwrap().to_vec1::<f32>().unwrap()
        };
        let y = run(7);
        assert_eq!(y, run(7));
        assert_ne!(y, run(8));
        let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
        assert!((zeros - 0.5).abs() < 0.02, "drop rate {zeros}");
        assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
        let eval = Dropout::new(0.5, rng_for(7, "dropout")).unwrap().forward_t(&x, false).unwrap();
        assert_eq!(eval.to_vec1::<f32>().unwrap(), vec![1.0; 20_000]);
    }

    #[test]
    fn rejects_probability_one() {
        assert!(Dropout::new(1.0, rng_for(0, "dropout")).is_err());
    }

    #[test]
    fn a_restored_position_repeats_the_masks() {
        let x = Tensor::ones(64, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let layer = Dropout::new(0.5, crate::rng::rng_for(3, "test")).unwrap();
        layer.forward_t(&x, true).unwrap();
        let at = layer.position();
        let first = layer.forward_t(&x, true).unwrap().to_vec1::<f32>().unwrap();
        let other = Dropout::new(0.5, crate::rng::rng_for(3, "test")).unwrap();
        other.set_position(at);
        assert_eq!(other.forward_t(&x, true).unwrap().to_vec1::<f32>().unwrap(), first);
    }
}
