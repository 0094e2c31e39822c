//! Seeded parameter initialisation behind Candle's `VarBuilder`.
//!
//! Candle initialises variables from the device generator, which cannot be seeded on the CPU.
//! [`SeededVarMap`] is a `VarMap` whose missing variables are drawn from our own seeded
//! generator instead, so the same seed gives the same weights on every machine.

use std::sync::Mutex;

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::Rng as _;
use rand_distr::{Distribution, StandardNormal};

use crate::rng::Rng;

/// PyTorch's default for conv and linear layers: `kaiming_uniform_(a = sqrt(5))` for weights
/// and `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` for biases, which are the same distribution.
pub fn pytorch_default(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

/// torchvision's ResNet convolutions: `kaiming_normal_(mode="fan_out", nonlinearity="relu")`,
/// a normal with standard deviation `sqrt(2 / fan_out)` (fan-out = out channels x kernel area).
pub fn kaiming_normal_fan_out(fan_out: usize) -> Init {
    Init::Randn { mean: 0.0, stdev: (2.0 / fan_out.max(1) as f64).sqrt() }
}

/// A `VarMap` that initialises new variables from a seeded generator.
pub struct SeededVarMap {
    vars: VarMap,
    rng: Mutex<Rng>,
}

impl SeededVarMap {
    /// A `VarBuilder` that creates variables in `vars`, initialised from `rng`.
    pub fn builder(vars: &VarMap, rng: Rng, dtype: DType, device: &Device) -> VarBuilder<'static> {
        let backend = Self { vars: vars.clone(), rng: Mutex::new(rng) };
        VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
    }

    fn sample(&self, shape: &Shape, init: Init, dtype: DType, device: &Device) -> Result<Tensor> {
        let n = shape.elem_count();
        let mut rng = self.rng.lock().map_err(|_| candle_core::Error::Msg("init: generator lock poisoned".into()))?;
        let values: Vec<f64> = match init {
            Init::Const(v) => vec![v; n],
            Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(lo..up)).collect(),
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| {
                    let z: f64 = StandardNormal.sample(&mut *rng);
                    mean + stdev * z
                })
                .collect(),
            Init::Kaiming { .. } => {
                candle_core::bail!("init: use an explicit Uniform or Randn init (see `pytorch_default`), not Kaiming")
            }
        };
        Tensor::from_vec(values, shape, device)?.to_dtype(dtype)
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, device: &Device) -> Result<Tensor> {
        if let Some(var) = self
            .vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("init: var map lock poisoned".into()))?
            .get(name)
        {
            if var.shape() != &shape {
                candle_core::bail!("init: {name} exists with shape {:?}, asked for {shape:?}", var.shape());
            }
            return Ok(var.as_tensor().clone());
        }
        let tensor = self.sample(&shape, init, dtype, device)?;
        let var = Var::from_tensor(&tensor)?;
        let tensor = var.as_tensor().clone();
        self.vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("init: var map lock poisoned".into()))?
            .insert(name.to_string(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        candle_core::bail!("init: {name} has no shape to be created with; use `get`")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.data().lock().map(|d| d.contains_key(name)).unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;

    fn weights(seed: u64) -> Vec<f32> {
        let vars = VarMap::new();
        let vb = SeededVarMap::builder(&vars, rng_for(seed, "init"), DType::F32, &Device::Cpu);
        vb.get_with_hints((64, 9), "w", pytorch_default(9)).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn same_seed_same_weights_and_pytorch_bounds() {
        let a = weights(1);
        assert_eq!(a, weights(1));
        assert_ne!(a, weights(2));
        let bound = 1.0 / 3.0;
        assert!(a.iter().all(|v| v.abs() <= bound));
        // 576 draws of U(-1/3, 1/3): the extremes come close to the bounds and the mean is near 0.
        assert!(a.iter().cloned().fold(f32::MIN, f32::max) > 0.3);
        assert!((a.iter().sum::<f32>() / a.len() as f32).abs() < 0.03);
    }

    #[test]
    fn existing_variables_are_reused_and_shape_checked() {
        let vars = VarMap::new();
        let vb = SeededVarMap::builder(&vars, rng_for(0, "init"), DType::F32, &Device::Cpu);
        let a = vb.get_with_hints(3, "x", Init::Const(2.)).unwrap();
        let b = vb.get_with_hints(3, "x", Init::Const(5.)).unwrap();
        assert_eq!(b.to_vec1::<f32>().unwrap(), a.to_vec1::<f32>().unwrap());
        assert!(vb.get_with_hints(4, "x", Init::Const(0.)).is_err());
        assert_eq!(vars.all_vars().len(), 1);
    }
}
