//! Batch normalisation in training mode (statistics of the batch over (B, H, W) per channel),
//! with an optional fused ReLU, as one op: two passes forward (the statistics, then the
//! normalised and scaled output) and two backward (the two channel sums, then the input
//! gradient), where Candle's `BatchNorm` runs about ten elementwise ops and reductions over a
//! transposed copy, each with its own backward. Written by hand because Candle has no fused
//! batch norm on the CPU.
//!
//! The forward pass leaves the batch mean and biased variance for the caller's running
//! statistics. Other devices run the same arithmetic as Candle ops.

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, WithDType, D};
use rayon::prelude::*;

use crate::ops::cpu::storage::{contiguous_slice, dispatch};

/// What the forward pass measured: per channel, the batch mean and the biased variance.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStatistics {
    /// Mean over (B, H, W).
    pub mean: Vec<f64>,
    /// Biased variance over (B, H, W) (the one the output is normalised with).
    pub variance: Vec<f64>,
    /// Values per channel, B x H x W (for the unbiased variance of running statistics).
    pub count: usize,
}

/// `relu?(weight * (x - mean) / sqrt(var + eps) + bias)` per channel of `x` (B, C, H, W), with
/// the batch's statistics; `weight` and `bias` are (C). Returns the output and the statistics.
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, BatchStatistics)> {
    let (b, c, h, w) = x.dims4()?;
    if weight.dims() != [c] || bias.dims() != [c] {
        candle_core::bail!(
            "batch_norm: weight {:?} and bias {:?} must be ({c}) for input {:?}",
            weight.dims(),
            bias.dims(),
            x.dims()
        );
    }
    if b * h * w < 2 {
        candle_core::bail!("batch_norm: training needs more than one value per channel, got input {:?}", x.dims());
    }
    if !x.device().is_cpu() {
        return by_candle_ops(x, weight, bias, eps, relu);
    }
    let op = BatchNormTrain { eps, relu, stash: Arc::new(Mutex::new(None)) };
    let stash = op.stash.clone();
    let y = x.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    let statistics = lock(&stash)?.as_ref().map(|s| s.statistics.clone());
    let statistics = statistics.ok_or_else(|| candle_core::Error::Msg("batch_norm: no statistics".into()))?;
    Ok((y, statistics))
}

/// The same function as Candle ops (for devices without the fused op).
fn by_candle_ops(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, BatchStatistics)> {
    let (b, c, h, w) = x.dims4()?;
    let per_channel = x.transpose(0, 1)?.reshape((c, b * h * w))?;
    let mean = per_channel.mean_keepdim(D::Minus1)?;
    let centred = per_channel.broadcast_sub(&mean)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = centred.broadcast_div(&(variance.clone() + eps)?.sqrt()?)?;
    let y = normed.broadcast_mul(&weight.reshape((c, 1))?)?.broadcast_add(&bias.reshape((c, 1))?)?;
    let y = y.reshape((c, b, h, w))?.transpose(0, 1)?.contiguous()?;
    let y = if relu { y.relu()? } else { y };
    let values = |t: &Tensor| -> Result<Vec<f64>> { t.flatten_all()?.to_dtype(DType::F64)?.to_vec1() };
    let statistics = BatchStatistics { mean: values(&mean)?, variance: values(&variance)?, count: b * h * w };
    Ok((y, statistics))
}

/// The forward's statistics and the inverse standard deviations the backward pass reuses.
#[derive(Debug)]
struct Stash {
    statistics: BatchStatistics,
    inv_std: Vec<f64>,
}

struct BatchNormTrain {
    eps: f64,
    relu: bool,
    stash: Arc<Mutex<Option<Stash>>>,
}

fn lock(m: &Mutex<Option<Stash>>) -> Result<std::sync::MutexGuard<'_, Option<Stash>>> {
    m.lock().map_err(|_| candle_core::Error::Msg("batch_norm: statistics lock poisoned".into()))
}

/// Per channel, the (B x H x W) values of `data` (B, C, H x W): `b` planes of `plane` values.
fn planes<T>(data: &[T], (b, c, plane): (usize, usize, usize), channel: usize) -> impl Iterator<Item = &[T]> {
    (0..b).map(move |i| &data[(i * c + channel) * plane..][..plane])
}

impl BatchNormTrain {
    fn forward<T: WithDType>(&self, x: &[T], gamma: &[T], beta: &[T], dims: (usize, usize, usize)) -> (Vec<T>, Stash) {
        let (b, c, plane) = dims;
        let n = (b * plane) as f64;
        let moments: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let sum: f64 = planes(x, dims, ch).flat_map(|p| p.iter()).map(|v| v.to_f64()).sum();
                let mean = sum / n;
                let squares: f64 =
                    planes(x, dims, ch).flat_map(|p| p.iter()).map(|v| (v.to_f64() - mean).powi(2)).sum();
                (mean, squares / n)
            })
            .collect();
        let inv_std: Vec<f64> = moments.iter().map(|&(_, var)| 1.0 / (var + self.eps).sqrt()).collect();
        let scale: Vec<T> = (0..c).map(|ch| T::from_f64(gamma[ch].to_f64() * inv_std[ch])).collect();
        let shift: Vec<T> = (0..c)
            .map(|ch| T::from_f64(beta[ch].to_f64() - moments[ch].0 * gamma[ch].to_f64() * inv_std[ch]))
            .collect();
        let zero = T::zero();
        let mut y = vec![zero; x.len()];
        y.par_chunks_mut(plane).zip(x.par_chunks(plane)).enumerate().for_each(|(i, (out, input))| {
            let (a, s) = (scale[i % c], shift[i % c]);
            for (o, &v) in out.iter_mut().zip(input) {
                let value = v * a + s;
                *o = if self.relu && value < zero { zero } else { value };
            }
        });
        let statistics = BatchStatistics {
            mean: moments.iter().map(|m| m.0).collect(),
            variance: moments.iter().map(|m| m.1).collect(),
            count: b * plane,
        };
        (y, Stash { statistics, inv_std })
    }

    /// (dx, dgamma, dbeta) from the input, the output (for the ReLU's mask) and its gradient.
    fn backward<T: WithDType>(
        &self,
        (x, y, dy, gamma): (&[T], &[T], &[T], &[T]),
        dims: (usize, usize, usize),
        stash: &Stash,
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (b, c, plane) = dims;
        let n = (b * plane) as f64;
        let zero = T::zero();
        let masked = |g: T, out: T| if self.relu && out <= zero { 0.0 } else { g.to_f64() };
        // Per channel: sum of dy (dbeta) and of dy * xhat (dgamma), dy masked by the ReLU.
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mean, inv_std) = (stash.statistics.mean[ch], stash.inv_std[ch]);
                let mut sums = (0.0, 0.0);
                for ((xp, yp), gp) in planes(x, dims, ch).zip(planes(y, dims, ch)).zip(planes(dy, dims, ch)) {
                    for ((&v, &out), &g) in xp.iter().zip(yp).zip(gp) {
                        let g = masked(g, out);
                        sums.0 += g;
                        sums.1 += g * (v.to_f64() - mean) * inv_std;
                    }
                }
                sums
            })
            .collect();
        let mut dx = vec![T::zero(); x.len()];
        dx.par_chunks_mut(plane).enumerate().for_each(|(i, out)| {
            let ch = i % c;
            let (mean, inv_std) = (stash.statistics.mean[ch], stash.inv_std[ch]);
            let (dbeta, dgamma) = sums[ch];
            let a = gamma[ch].to_f64() * inv_std;
            let range = i * plane..(i + 1) * plane;
            for (((o, &v), &out), &g) in out.iter_mut().zip(&x[range.clone()]).zip(&y[range.clone()]).zip(&dy[range]) {
                let xhat = (v.to_f64() - mean) * inv_std;
                *o = T::from_f64(a * (masked(g, out) - dbeta / n - xhat * dgamma / n));
            }
        });
        let dgamma = sums.iter().map(|s| T::from_f64(s.1)).collect();
        let dbeta = sums.iter().map(|s| T::from_f64(s.0)).collect();
        (dx, dgamma, dbeta)
    }
}

impl BatchNormTrain {
    /// The gradients as tensors shaped like `x` and its (C) parameters, from the CPU storages
    /// of the input, the output, its gradient and the weight.
    fn gradients<T: WithDType>(
        &self,
        [(xs, xl), (ys, yl), (ds, dl), (gs, gl)]: [(&CpuStorage, &Layout); 4],
        dims: (usize, usize, usize),
        stash: &Stash,
        x: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let name = self.name();
        let slices = (
            contiguous_slice::<T>(name, xs, xl)?,
            contiguous_slice(name, ys, yl)?,
            contiguous_slice(name, ds, dl)?,
            contiguous_slice(name, gs, gl)?,
        );
        let (dx, dgamma, dbeta) = self.backward(slices, dims, stash);
        let device = x.device();
        Ok((
            Tensor::from_vec(dx, x.shape(), device)?,
            Tensor::from_vec(dgamma, dims.1, device)?,
            Tensor::from_vec(dbeta, dims.1, device)?,
        ))
    }
}

impl CustomOp3 for BatchNormTrain {
    fn name(&self) -> &'static str {
        "batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, c, h, w) = xl.shape().dims4()?;
        let dims = (b, c, h * w);
        let name = self.name();
        let out = dispatch!(name, xs, |T| {
            let slices =
                (contiguous_slice(name, xs, xl)?, contiguous_slice(name, gs, gl)?, contiguous_slice(name, bs, bl)?);
            let (y, stash) = self.forward::<T>(slices.0, slices.1, slices.2, dims);
            *lock(&self.stash)? = Some(stash);
            y
        });
        Ok((out, xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let guard = lock(&self.stash)?;
        let Some(stash) = guard.as_ref() else {
            candle_core::bail!("{}: backward without a forward pass", self.name());
        };
        let (b, c, h, w) = x.dims4()?;
        let dims = (b, c, h * w);
        let grad = grad.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ys, yl) = res.storage_and_layout();
        let (ds, dl) = grad.storage_and_layout();
        let (gs, gl) = gamma.storage_and_layout();
        let (Storage::Cpu(xs), Storage::Cpu(ys), Storage::Cpu(ds), Storage::Cpu(gs)) = (&*xs, &*ys, &*ds, &*gs) else {
            candle_core::bail!("{}: this backward pass runs on the CPU", self.name());
        };
        let storages = [(xs, xl), (ys, yl), (ds, dl), (gs, gl)];
        let (dx, dgamma, dbeta) = match xs.dtype() {
            DType::F32 => self.gradients::<f32>(storages, dims, stash, x)?,
            DType::F64 => self.gradients::<f64>(storages, dims, stash, x)?,
            dt => candle_core::bail!("{}: unsupported dtype {dt:?}", self.name()),
        };
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::max_abs_diff;
    use candle_core::{Device, Var};

    /// Input (B, C, H, W), weight and bias in f64 from a seeded generator.
    fn inputs(dims: (usize, usize, usize, usize), seed: u64) -> (Tensor, Tensor, Tensor) {
        let c = dims.1;
        let x = crate::rng::randn(seed, dims, &Device::Cpu).unwrap().affine(2.0, 0.5).unwrap();
        let w = crate::rng::randn(seed + 1, c, &Device::Cpu).unwrap().affine(0.5, 1.0).unwrap();
        let b = crate::rng::randn(seed + 2, c, &Device::Cpu).unwrap().affine(0.3, 0.0).unwrap();
        let f64 = |t: Tensor| t.to_dtype(DType::F64).unwrap();
        (f64(x), f64(w), f64(b))
    }

    #[test]
    fn values_gradients_and_statistics_equal_candles_ops() {
        for (dims, relu) in [((4, 3, 5, 7), false), ((4, 3, 5, 7), true), ((2, 16, 8, 8), true), ((9, 5, 1, 1), false)]
        {
            let (x, w, b) = inputs(dims, 7);
            let (xv, wv, bv) =
                (Var::from_tensor(&x).unwrap(), Var::from_tensor(&w).unwrap(), Var::from_tensor(&b).unwrap());
            let (ours, stats) = batch_norm_train(xv.as_tensor(), wv.as_tensor(), bv.as_tensor(), 1e-5, relu).unwrap();
            let (reference, ref_stats) =
                by_candle_ops(xv.as_tensor(), wv.as_tensor(), bv.as_tensor(), 1e-5, relu).unwrap();
            assert!(max_abs_diff(&ours, &reference) < 1e-12, "{dims:?} relu {relu}: values");
            assert_eq!(stats.count, dims.0 * dims.2 * dims.3);
            for (a, b) in stats.mean.iter().chain(&stats.variance).zip(ref_stats.mean.iter().chain(&ref_stats.variance))
            {
                assert!((a - b).abs() < 1e-12, "{dims:?}: statistics {a} vs {b}");
            }
            // A loss that weighs every output differently, so that no gradient term cancels.
            let weights = crate::rng::randn(3, dims, &Device::Cpu).unwrap().to_dtype(DType::F64).unwrap();
            let grads = (ours * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let ref_grads = (reference * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &xv), ("weight", &wv), ("bias", &bv)] {
                let (g, r) = (grads.get(v.as_tensor()).unwrap(), ref_grads.get(v.as_tensor()).unwrap());
                assert!(max_abs_diff(g, r) < 1e-10, "{dims:?} relu {relu}: d {name}");
            }
        }
    }

    #[test]
    fn f32_matches_f64_and_bad_shapes_are_named() {
        let (x, w, b) = inputs((8, 4, 6, 6), 11);
        let (wide, _) = batch_norm_train(&x, &w, &b, 1e-5, true).unwrap();
        let narrow = |t: &Tensor| t.to_dtype(DType::F32).unwrap();
        let (ours, _) = batch_norm_train(&narrow(&x), &narrow(&w), &narrow(&b), 1e-5, true).unwrap();
        assert!(max_abs_diff(&ours.to_dtype(DType::F64).unwrap(), &wide) < 1e-5);
        let err = batch_norm_train(&x, &w.narrow(0, 0, 3).unwrap(), &b, 1e-5, false).unwrap_err().to_string();
        assert!(err.contains("must be (4)"), "{err}");
        let one = x.narrow(0, 0, 1).unwrap().narrow(2, 0, 1).unwrap().narrow(3, 0, 1).unwrap();
        let err = batch_norm_train(&one, &w, &b, 1e-5, false).unwrap_err().to_string();
        assert!(err.contains("more than one value per channel"), "{err}");
    }
}
