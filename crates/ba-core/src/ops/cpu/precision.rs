//! Mixed precision: matrix products with bf16 operands and f32 sums, as PyTorch's autocast runs
//! convolutions and linear layers on a GPU. Master weights, outputs, gradients and everything
//! between the products (bias, ReLU, pooling, batch norm, the loss, the optimizer) stay f32.
//!
//! A product of two bf16 numbers (8-bit significands) is exact in f32, so a product with bf16
//! operands and f32 sums equals the f32 product of the operands rounded to bf16, up to the order
//! of the sums. That is how the CPU runs [`Precision::Bf16`] ([`Precision::on_cpu`]): the input
//! and the weight are rounded to bf16 on their way into the product, and the output gradient,
//! the operand of both backward products, on its way back. It is an emulation for checking
//! accuracy, slower than f32 (three more passes per layer; the CPU products stay f32). On CUDA
//! the convolution's kernels write the same operands as bf16 and cuBLAS multiplies them on
//! tensor cores with f32 sums (`cuda/conv2d.rs`); linear layers run Candle's bf16 matmul there.

use std::fmt;
use std::str::FromStr;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use half::bf16;

use super::storage::contiguous_slice;

/// The number format of a layer's matrix-product operands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 operands and sums (`f32`).
    #[default]
    F32,
    /// bf16 operands, f32 sums and results (`bf16`): mixed precision.
    Bf16,
}

impl Precision {
    /// Both formats, by their command-line names.
    pub const ALL: [Precision; 2] = [Precision::F32, Precision::Bf16];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// `product(x, w)` (a convolution or linear layer, differentiable in both) with this
    /// precision's operands, for the CPU ops, which compute in the inputs' own type: for bf16,
    /// `x` and `w` rounded to bf16 on the way in and the output gradient on the way back
    /// (see the module documentation). The gradients reaching `x` and `w` are those of the
    /// product of the rounded values, as for bf16 operands on a GPU.
    pub(crate) fn on_cpu(
        self,
        x: &Tensor,
        w: &Tensor,
        product: impl FnOnce(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        match self {
            Precision::F32 => product(x, w),
            Precision::Bf16 => {
                let round = |t: &Tensor| t.contiguous()?.apply_op1(RoundValues);
                let y = product(&round(x)?, &round(w)?)?;
                y.contiguous()?.apply_op1(RoundGradient)
            }
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision {s:?}: expected f32 or bf16"))
    }
}

/// `storage` with every value rounded to the nearest bf16 (ties to even), kept in its type.
fn rounded(op: &str, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
    let out = match storage {
        CpuStorage::F32(_) => {
            let v = contiguous_slice::<f32>(op, storage, layout)?;
            CpuStorage::F32(v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect())
        }
        CpuStorage::F64(_) => {
            let v = contiguous_slice::<f64>(op, storage, layout)?;
            CpuStorage::F64(v.iter().map(|&x| bf16::from_f64(x).to_f64()).collect())
        }
        other => candle_core::bail!("{op}: unsupported dtype {:?}", other.dtype()),
    };
    Ok((out, layout.shape().clone()))
}

/// Values rounded to bf16; the gradient passes unchanged (to the f32 master copy).
struct RoundValues;

impl CustomOp1 for RoundValues {
    fn name(&self) -> &'static str {
        "round-to-bf16"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        rounded(self.name(), storage, layout)
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.clone()))
    }
}

/// Values unchanged; the gradient rounded to bf16 on its way back.
struct RoundGradient;

impl CustomOp1 for RoundGradient {
    fn name(&self) -> &'static str {
        "round-gradient-to-bf16"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(contiguous_slice::<f32>(self.name(), storage, layout)?.to_vec()),
            CpuStorage::F64(_) => CpuStorage::F64(contiguous_slice::<f64>(self.name(), storage, layout)?.to_vec()),
            other => candle_core::bail!("{}: unsupported dtype {:?}", self.name(), other.dtype()),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&RoundValues)?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Module, Var};

    use super::*;
    use crate::ops::conv::conv2d::{conv2d, Conv2dParams};
    use crate::ops::conv::max_pool::conv2d_max_pool2d;
    use crate::ops::linear::linear;
    use crate::ops::pool::max_pool2d::{max_pool2d, MaxPool2dParams};
    use crate::ops::test_support::max_abs_diff;
    use crate::rng::rng_for;

    #[test]
    fn names_parse_and_print() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert!("fp16".parse::<Precision>().unwrap_err().contains("expected f32 or bf16"));
    }

    /// Seeded f32 normal values as a variable.
    fn randn(shape: &[usize], seed: u64) -> Var {
        let mut rng = rng_for(seed, "precision-test");
        let n = shape.iter().product();
        let values: Vec<f32> =
            (0..n).map(|_| rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng)).collect();
        Var::from_vec(values, shape, &Device::Cpu).unwrap()
    }

    /// `t` rounded to bf16 (by `half`, independently of the ops here), as f64.
    fn rounded_f64(t: &Tensor) -> Tensor {
        let values: Vec<f64> =
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|&v| bf16::from_f32(v).to_f64()).collect();
        Tensor::from_vec(values, t.shape(), &Device::Cpu).unwrap()
    }

    /// `ours(x, w, b)` in bf16 against `reference` (Candle's f64 ops) on the operands and the
    /// output gradient rounded to bf16: the output and the three gradients agree to f32
    /// accuracy, and the weight gradient of the f32 op (`ours_f32`) does not.
    fn check(
        (x_dims, w_dims): (&[usize], &[usize]),
        ours: impl Fn(&Tensor, &Tensor, &Tensor, Precision) -> Result<Tensor>,
        reference: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    ) {
        let (x, w, b) = (randn(x_dims, 1), randn(w_dims, 2), randn(&[w_dims[0]], 3));
        let run = |precision| {
            let y = ours(x.as_tensor(), w.as_tensor(), b.as_tensor(), precision).unwrap();
            let probe = randn(y.dims(), 4);
            let grads = (&y * probe.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let grad = |v: &Var| grads.get(v.as_tensor()).unwrap().to_dtype(DType::F64).unwrap();
            (y.to_dtype(DType::F64).unwrap(), [grad(&x), grad(&w), grad(&b)], probe)
        };
        let (y, grads, probe) = run(Precision::Bf16);
        let (xr, wr) = (
            Var::from_tensor(&rounded_f64(x.as_tensor())).unwrap(),
            Var::from_tensor(&rounded_f64(w.as_tensor())).unwrap(),
        );
        let b64 = Var::from_tensor(&b.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
        let y_ref = reference(xr.as_tensor(), wr.as_tensor(), b64.as_tensor()).unwrap();
        let ref_grads = (&y_ref * rounded_f64(probe.as_tensor())).unwrap().sum_all().unwrap().backward().unwrap();
        let scale = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f64>().unwrap().max(1.0);
        assert!(max_abs_diff(&y, &y_ref) < 1e-5 * scale(&y_ref), "output");
        for (name, ours, theirs) in [("input", &grads[0], &xr), ("weight", &grads[1], &wr), ("bias", &grads[2], &b64)] {
            let want = ref_grads.get(theirs.as_tensor()).unwrap();
            assert!(
                max_abs_diff(ours, want) < 1e-5 * scale(want),
                "{name} gradient: off by {}",
                max_abs_diff(ours, want)
            );
        }
        let (_, f32_grads, _) = run(Precision::F32);
        let want = ref_grads.get(wr.as_tensor()).unwrap();
        assert!(max_abs_diff(&f32_grads[1], want) > 1e-4 * scale(want), "f32 and bf16 weight gradients must differ");
    }

    #[test]
    fn bf16_convolutions_are_the_products_of_bf16_operands() {
        // By Winograd's algorithm (3x3, stride 1) and by im2col (11x11, stride 4), with ReLU.
        for (x_dims, w_dims, stride, padding) in
            [([2, 8, 12, 12], [6, 8, 3, 3], 1, 1), ([2, 3, 31, 31], [5, 3, 11, 11], 4, 2)]
        {
            let params = Conv2dParams::square(stride, padding).with_relu();
            check(
                (&x_dims, &w_dims),
                |x, w, b, p| conv2d(x, w, Some(b), params.with_precision(p)),
                |x, w, b| x.conv2d(w, padding, stride, 1, 1)?.broadcast_add(&b.reshape((w.dim(0)?, 1, 1))?)?.relu(),
            );
        }
    }

    #[test]
    fn bf16_convolution_fused_with_max_pool_is_the_product_of_bf16_operands() {
        let (params, pool) = (Conv2dParams::square(1, 2).with_relu(), MaxPool2dParams::square(3, 2));
        check(
            (&[2, 4, 13, 13], &[5, 4, 5, 5]),
            |x, w, b, p| conv2d_max_pool2d(x, w, Some(b), params.with_precision(p), pool),
            |x, w, b| {
                x.conv2d(w, 2, 1, 1, 1)?
                    .broadcast_add(&b.reshape((w.dim(0)?, 1, 1))?)?
                    .relu()?
                    .apply(&|y: &Tensor| max_pool2d(y, pool))
            },
        );
    }

    #[test]
    fn bf16_linear_layer_is_the_product_of_bf16_operands() {
        check(
            (&[5, 40], &[7, 40]),
            |x, w, b, p| linear(x, w, b, true, p),
            |x, w, b| candle_nn::Linear::new(w.clone(), Some(b.clone())).forward(x)?.relu(),
        );
    }

    #[test]
    fn rounding_passes_the_gradient_to_the_f32_master_copy() {
        let x = randn(&[64], 5);
        let y = x.as_tensor().apply_op1(RoundValues).unwrap();
        assert_eq!(
            y.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap(),
            rounded_f64(x.as_tensor()).to_vec1::<f64>().unwrap()
        );
        let probe = randn(&[64], 6);
        let grads = (&y * probe.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(
            grads.get(x.as_tensor()).unwrap().to_vec1::<f32>().unwrap(),
            probe.as_tensor().to_vec1::<f32>().unwrap()
        );
    }
}
