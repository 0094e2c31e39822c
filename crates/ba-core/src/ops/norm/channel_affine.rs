//! `relu?(x * scale[c] + shift[c])` per channel of (B, C, H, W): a batch norm in evaluation
//! mode (scale and shift from the running statistics) as one pass, where Candle's broadcast
//! multiply, add and ReLU make three.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, WithDType};
use rayon::prelude::*;

use crate::ops::cpu::storage::{contiguous_slice, dispatch};

/// `relu?(x * scale + shift)` with `scale` and `shift` (C) broadcast over (B, ., H, W).
/// Gradients flow to all three inputs.
pub fn channel_affine(x: &Tensor, scale: &Tensor, shift: &Tensor, relu: bool) -> Result<Tensor> {
    let (_, c, _, _) = x.dims4()?;
    if scale.dims() != [c] || shift.dims() != [c] {
        candle_core::bail!(
            "channel_affine: scale {:?} and shift {:?} must be ({c}) for input {:?}",
            scale.dims(),
            shift.dims(),
            x.dims()
        );
    }
    if !x.device().is_cpu() {
        let y = x.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?.broadcast_add(&shift.reshape((1, c, 1, 1))?)?;
        return if relu { y.relu() } else { Ok(y) };
    }
    x.contiguous()?.apply_op3(&scale.contiguous()?, &shift.contiguous()?, ChannelAffine { relu })
}

struct ChannelAffine {
    relu: bool,
}

impl ChannelAffine {
    fn forward<T: WithDType>(&self, x: &[T], scale: &[T], shift: &[T], (c, plane): (usize, usize)) -> Vec<T> {
        let zero = T::zero();
        let mut y = vec![zero; x.len()];
        y.par_chunks_mut(plane).zip(x.par_chunks(plane)).enumerate().for_each(|(i, (out, input))| {
            let (a, s) = (scale[i % c], shift[i % c]);
            for (o, &v) in out.iter_mut().zip(input) {
                let value = v * a + s;
                *o = if self.relu && value < zero { zero } else { value };
            }
        });
        y
    }

    /// (dx, dscale, dshift).
    fn backward<T: WithDType>(
        &self,
        (x, y, dy, scale): (&[T], &[T], &[T], &[T]),
        (c, plane): (usize, usize),
    ) -> (Vec<T>, Vec<T>, Vec<T>) {
        let zero = T::zero();
        let masked = |d: T, out: T| if self.relu && out <= zero { zero } else { d };
        let mut dx = vec![zero; x.len()];
        dx.par_chunks_mut(plane).zip(y.par_chunks(plane).zip(dy.par_chunks(plane))).enumerate().for_each(
            |(i, (out, (yp, dp)))| {
                let a = scale[i % c];
                for ((o, &value), &d) in out.iter_mut().zip(yp).zip(dp) {
                    *o = masked(d, value) * a;
                }
            },
        );
        let (mut dscale, mut dshift) = (vec![0f64; c], vec![0f64; c]);
        for (i, ((xp, yp), dp)) in x.chunks(plane).zip(y.chunks(plane)).zip(dy.chunks(plane)).enumerate() {
            for ((&v, &out), &d) in xp.iter().zip(yp).zip(dp) {
                let g = masked(d, out).to_f64();
                dscale[i % c] += g * v.to_f64();
                dshift[i % c] += g;
            }
        }
        let narrow = |v: Vec<f64>| v.into_iter().map(T::from_f64).collect();
        (dx, narrow(dscale), narrow(dshift))
    }
}

impl CustomOp3 for ChannelAffine {
    fn name(&self) -> &'static str {
        "channel-affine"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
        hs: &CpuStorage,
        hl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, c, h, w) = xl.shape().dims4()?;
        let name = self.name();
        let out = dispatch!(name, xs, |T| {
            let slices =
                (contiguous_slice(name, xs, xl)?, contiguous_slice(name, ss, sl)?, contiguous_slice(name, hs, hl)?);
            self.forward::<T>(slices.0, slices.1, slices.2, (c, h * w))
        });
        Ok((out, xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        scale: &Tensor,
        _shift: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, c, h, w) = x.dims4()?;
        let grad = grad.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ys, yl) = res.storage_and_layout();
        let (ds, dl) = grad.storage_and_layout();
        let (ss, sl) = scale.storage_and_layout();
        let (Storage::Cpu(xs), Storage::Cpu(ys), Storage::Cpu(ds), Storage::Cpu(ss)) = (&*xs, &*ys, &*ds, &*ss) else {
            candle_core::bail!("{}: this backward pass runs on the CPU", self.name());
        };
        let name = self.name();
        let device = x.device();
        macro_rules! gradients {
            ($t:ty) => {{
                let slices = (
                    contiguous_slice::<$t>(name, xs, xl)?,
                    contiguous_slice(name, ys, yl)?,
                    contiguous_slice(name, ds, dl)?,
                    contiguous_slice(name, ss, sl)?,
                );
                let (dx, dscale, dshift) = self.backward(slices, (c, h * w));
                (
                    Tensor::from_vec(dx, x.shape(), device)?,
                    Tensor::from_vec(dscale, c, device)?,
                    Tensor::from_vec(dshift, c, device)?,
                )
            }};
        }
        let (dx, dscale, dshift) = match xs.dtype() {
            DType::F32 => gradients!(f32),
            DType::F64 => gradients!(f64),
            dt => candle_core::bail!("{name}: unsupported dtype {dt:?}"),
        };
        Ok((Some(dx), Some(dscale), Some(dshift)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::{max_abs_diff, randn};

    #[test]
    fn values_and_gradients_equal_candles_broadcast_ops() {
        for (shape, relu) in [([2, 16, 8, 8], true), ([3, 5, 7, 1], false), ([1, 4, 33, 33], true)] {
            let c = shape[1];
            let (x, scale, shift) = (randn(&shape, 1.0, 1), randn(&[c], 1.0, 2), randn(&[c], 0.5, 3));
            let weights = randn(&shape, 1.0, 4);
            let ours = channel_affine(x.as_tensor(), scale.as_tensor(), shift.as_tensor(), relu).unwrap();
            let theirs = x
                .as_tensor()
                .broadcast_mul(&scale.as_tensor().reshape((1, c, 1, 1)).unwrap())
                .unwrap()
                .broadcast_add(&shift.as_tensor().reshape((1, c, 1, 1)).unwrap())
                .unwrap();
            let theirs = if relu { theirs.relu().unwrap() } else { theirs };
            assert!(max_abs_diff(&ours, &theirs) < 1e-15, "{shape:?}");
            let g1 = (ours * weights.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * weights.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("scale", &scale), ("shift", &shift)] {
                let diff = max_abs_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(diff < 1e-12, "{shape:?} relu {relu}: d {name} off by {diff}");
            }
        }
        let x = randn(&[2, 3, 4, 4], 1.0, 1);
        let err =
            channel_affine(x.as_tensor(), randn(&[2], 1.0, 2).as_tensor(), randn(&[3], 1.0, 3).as_tensor(), false);
        assert!(err.unwrap_err().to_string().contains("must be (3)"));
    }
}
