//! A residual block's end, `relu(a + b)`, as one op: one pass forward and one backward (the
//! masked gradient, which both inputs receive), where Candle's add and ReLU take two passes
//! forward and four backward (the add's two gradients, the ReLU's mask and its product).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Storage, Tensor, WithDType};
use rayon::prelude::*;

use crate::ops::cpu::storage::{contiguous_slice, dispatch};

/// Values per parallel task.
const CHUNK: usize = 16 * 1024;

/// `relu(a + b)` for tensors of one shape. Gradients: `dy` where the output is positive, 0
/// elsewhere, to both inputs (PyTorch's ReLU gradient at 0 is 0, as here).
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        candle_core::bail!("add_relu: shapes {:?} and {:?} differ", a.dims(), b.dims());
    }
    if !a.device().is_cpu() {
        return (a + b)?.relu();
    }
    a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
}

struct AddRelu;

fn forward<T: WithDType>(a: &[T], b: &[T]) -> Vec<T> {
    let zero = T::zero();
    let mut y = Vec::with_capacity(a.len());
    y.par_extend(a.par_iter().zip(b).with_min_len(CHUNK).map(|(&x, &z)| {
        let s = x + z;
        if s > zero {
            s
        } else {
            zero
        }
    }));
    y
}

fn backward<T: WithDType>(y: &[T], dy: &[T]) -> Vec<T> {
    let zero = T::zero();
    let mut g = Vec::with_capacity(y.len());
    g.par_extend(y.par_iter().zip(dy).with_min_len(CHUNK).map(|(&out, &d)| if out > zero { d } else { zero }));
    g
}

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "add-relu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let name = self.name();
        let out =
            dispatch!(name, s1, |T| forward::<T>(contiguous_slice(name, s1, l1)?, contiguous_slice(name, s2, l2)?));
        Ok((out, l1.shape().clone()))
    }

    fn bwd(&self, a: &Tensor, _b: &Tensor, res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (ys, yl) = res.storage_and_layout();
        let (ds, dl) = grad.storage_and_layout();
        let (Storage::Cpu(ys), Storage::Cpu(ds)) = (&*ys, &*ds) else {
            candle_core::bail!("{}: this backward pass runs on the CPU", self.name());
        };
        let name = self.name();
        let g = match ys.dtype() {
            DType::F32 => Tensor::from_vec(
                backward::<f32>(contiguous_slice(name, ys, yl)?, contiguous_slice(name, ds, dl)?),
                a.shape(),
                a.device(),
            )?,
            DType::F64 => Tensor::from_vec(
                backward::<f64>(contiguous_slice(name, ys, yl)?, contiguous_slice(name, ds, dl)?),
                a.shape(),
                a.device(),
            )?,
            dt => candle_core::bail!("{name}: unsupported dtype {dt:?}"),
        };
        Ok((Some(g.clone()), Some(g)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::{max_abs_diff, randn};

    #[test]
    fn values_and_gradients_equal_candles_add_then_relu() {
        for shape in [&[2, 16, 8, 8][..], &[3, 5, 7, 1], &[40_000]] {
            let (a, b) = (randn(shape, 1.0, 1), randn(shape, 1.0, 2));
            let weights = randn(shape, 1.0, 3);
            let ours = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
            let theirs = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
            assert_eq!(max_abs_diff(&ours, &theirs), 0.0, "{shape:?}");
            let g1 = (ours * weights.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * weights.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&a, &b] {
                assert_eq!(max_abs_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap()), 0.0);
            }
        }
        let err = add_relu(randn(&[2, 3], 1.0, 1).as_tensor(), randn(&[3, 2], 1.0, 1).as_tensor()).unwrap_err();
        assert!(err.to_string().contains("shapes [2, 3] and [3, 2] differ"), "{err}");
    }
}
