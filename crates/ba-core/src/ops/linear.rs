//! A fully connected layer, `relu?(x W^T + b)`, as one op with its own CPU backward pass.
//!
//! Candle runs a linear layer and its ReLU as five graph nodes (two transposes, the product,
//! the bias and the ReLU), each with its own output, its own backward op and its own
//! zero-initialised gradient sum, and its backward products run with layouts that the `gemm`
//! crate handles at half speed when one side is only a batch wide (measured in
//! `docs/benchmarks.md`). On the CPU this op
//! - computes `y^T = W x^T` (W row-major, `x^T` read in place: the fast layouts for a
//!   batch-wide `n`) and adds the bias and the ReLU while transposing `y^T` into `y`;
//! - in its backward pass masks the output gradient by the ReLU, sums it into the bias
//!   gradient, and runs the weight gradient `dW = dY^T x` as one product, then the input
//!   gradient `dX = dY W` a block of the weight's rows at a time (see [`input_grad`]), each on
//!   all of rayon's threads.
//!
//! On other devices it is Candle's own ops, arranged so that no parameter-sized matrix is
//! transposed (see [`linear`]).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, WithDType};

use rayon::prelude::*;

use crate::ops::cpu::gemm::{matmul, matmul_new, MatRef};
use crate::ops::cpu::precision::Precision;
use crate::ops::cpu::storage::{contiguous_slice, dispatch, Wanted};

/// The sizes of a linear layer's product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinearShape {
    batch: usize,
    inputs: usize,
    outputs: usize,
}

impl LinearShape {
    /// The sizes for input `x` (batch, in), `weight` (out, in) and `bias` (out), or an error
    /// that names the mismatch.
    fn of(x: &[usize], weight: &[usize], bias: &[usize]) -> Result<Self> {
        let (&[batch, inputs], &[outputs, weight_inputs], &[bias_outputs]) = (x, weight, bias) else {
            candle_core::bail!(
                "linear: expected input (batch, in), weight (out, in) and bias (out), got {x:?}, {weight:?} and {bias:?}"
            );
        };
        if inputs != weight_inputs {
            candle_core::bail!("linear: expected input (batch, {weight_inputs}), got {x:?}");
        }
        if bias_outputs != outputs {
            candle_core::bail!("linear: bias of shape {bias:?} for {outputs} outputs");
        }
        Ok(Self { batch, inputs, outputs })
    }
}

/// `relu?(x weight^T + bias)` for `x` (batch, in), `weight` (out, in) and `bias` (out), as
/// `torch.nn.functional.linear` followed by an optional ReLU, with the product's operands in
/// `precision`; differentiable in all three.
pub fn linear(x: &Tensor, weight: &Tensor, bias: &Tensor, relu: bool, precision: Precision) -> Result<Tensor> {
    LinearShape::of(x.dims(), weight.dims(), bias.dims())?;
    if x.device().is_cpu() {
        let op =
            |x: &Tensor, w: &Tensor| x.contiguous()?.apply_op3(&w.contiguous()?, &bias.contiguous()?, Linear { relu });
        return precision.on_cpu(x, weight, op);
    }
    // `W x^T` rather than `x W^T`: the same products, but Candle's autograd then transposes
    // only batch-sized matrices, and the weight gradient comes out in the weight's own layout.
    let y = match precision {
        Precision::F32 => weight.matmul(&x.t()?)?,
        // cuBLAS's bf16 product (f32 sums, bf16 result); its gradients come back through the
        // casts, as under PyTorch's autocast.
        Precision::Bf16 => weight.to_dtype(DType::BF16)?.matmul(&x.to_dtype(DType::BF16)?.t()?)?.to_dtype(x.dtype())?,
    };
    let y = y.t()?.broadcast_add(bias)?;
    if relu {
        y.relu()
    } else {
        Ok(y)
    }
}

/// The op on the CPU.
struct Linear {
    relu: bool,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let s = LinearShape::of(xl.dims(), wl.dims(), bl.dims())?;
        let name = self.name();
        let out = dispatch!(name, xs, |T| forward::<T>(
            s,
            (contiguous_slice(name, xs, xl)?, contiguous_slice(name, ws, wl)?, contiguous_slice(name, bs, bl)?),
            self.relu
        ));
        Ok((out, Shape::from((s.batch, s.outputs))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let s = LinearShape::of(x.dims(), w.dims(), b.dims())?;
        let grad = grad.contiguous()?;
        let (gs, gl) = grad.storage_and_layout();
        let (rs, rl) = res.storage_and_layout();
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (Storage::Cpu(gs), Storage::Cpu(rs), Storage::Cpu(xs), Storage::Cpu(ws)) = (&*gs, &*rs, &*xs, &*ws) else {
            candle_core::bail!("{name}: this backward pass runs on the CPU");
        };
        let wanted = Wanted::of(x, w, b);
        macro_rules! gradients {
            ($t:ty) => {{
                let (dx, dw, db) = backward::<$t>(
                    s,
                    (contiguous_slice(name, gs, gl)?, contiguous_slice(name, rs, rl)?),
                    (contiguous_slice(name, xs, xl)?, contiguous_slice(name, ws, wl)?),
                    (self.relu, wanted),
                );
                let tensor = |v: Option<Vec<$t>>, like: &Tensor| {
                    v.map(|v| Tensor::from_vec(v, like.dims(), like.device())).transpose()
                };
                Ok((tensor(dx, x)?, tensor(dw, w)?, tensor(db, b)?))
            }};
        }
        match gs.dtype() {
            DType::F32 => gradients!(f32),
            DType::F64 => gradients!(f64),
            dt => candle_core::bail!("{name}: unsupported dtype {dt:?}"),
        }
    }
}

/// `y = relu?(x w^T + bias)`, (batch, out).
fn forward<T: WithDType>(s: LinearShape, (x, w, bias): (&[T], &[T], &[T]), relu: bool) -> Vec<T> {
    let LinearShape { batch, inputs, outputs } = s;
    let w_rows = MatRef { data: w, row_stride: inputs, col_stride: 1 };
    let x_t = MatRef { data: x, row_stride: 1, col_stride: inputs };
    let y_t = matmul_new(rayon::current_num_threads(), (outputs, batch, inputs), (w_rows, x_t));
    transpose_map(&y_t, batch, |output, v| {
        let v = v + bias[output];
        if relu && v < T::zero() {
            T::zero()
        } else {
            v
        }
    })
}

/// The transpose of `src` (rows x `cols`, row-major) with `f(row, value)` applied to each
/// value.
fn transpose_map<T: WithDType>(src: &[T], cols: usize, f: impl Fn(usize, T) -> T) -> Vec<T> {
    if src.is_empty() {
        return Vec::new();
    }
    let rows = src.len() / cols;
    // A block of rows at a time: one row at a time writes `cols` values a power of two apart
    // (for the classifier), which all fall into one L1 set.
    const BLOCK: usize = 16;
    let mut dst = vec![T::zero(); src.len()];
    for (block, block_rows) in src.chunks(BLOCK * cols).enumerate() {
        let first = block * BLOCK;
        for (j, dst_row) in dst.chunks_exact_mut(rows).enumerate() {
            for (r, d) in dst_row[first..][..block_rows.len() / cols].iter_mut().enumerate() {
                *d = f(first + r, block_rows[r * cols + j]);
            }
        }
    }
    dst
}

/// The input, weight and bias gradients that are `wanted`, from the output gradient and the
/// forward result (for the ReLU's mask).
#[allow(clippy::type_complexity)]
fn backward<T: WithDType>(
    s: LinearShape,
    (grad, res): (&[T], &[T]),
    (x, w): (&[T], &[T]),
    (relu, wanted): (bool, Wanted),
) -> (Option<Vec<T>>, Option<Vec<T>>, Option<Vec<T>>) {
    let LinearShape { batch, inputs, outputs } = s;
    let dy: Vec<T> = grad.iter().zip(res).map(|(&g, &r)| if !relu || r > T::zero() { g } else { T::zero() }).collect();
    let db = wanted.db.then(|| {
        let mut db = vec![T::zero(); outputs];
        for row in dy.chunks_exact(outputs.max(1)) {
            db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
        }
        db
    });
    let weight_grad = wanted.dw.then(|| {
        let dy_t = MatRef { data: &dy[..], row_stride: 1, col_stride: outputs };
        let x_rows = MatRef { data: x, row_stride: inputs, col_stride: 1 };
        matmul_new(rayon::current_num_threads(), (outputs, inputs, batch), (dy_t, x_rows))
    });
    let input_grad = wanted.dx.then(|| input_grad(s, &dy, w));
    (input_grad, weight_grad, db)
}

/// `dX = dY W` (batch, in), computed as `dX^T = W^T dY^T` over blocks of the weight's rows:
/// rayon's threads take ranges of inputs, and each sums the products of
/// [`WEIGHT_ROWS_PER_PRODUCT`] weight rows at a time.
///
/// As one product, `gemm` reads `W^T` a column at a time, `in` values apart; at the
/// classifier's 2048 inputs (8 KiB, a power of two) those reads collide in the caches and
/// the TLB, and the product ran at half the forward pass's speed at batch 32
/// (`docs/benchmarks.md`). A block of rows is one contiguous stretch of the weight.
fn input_grad<T: WithDType>(s: LinearShape, dy: &[T], w: &[T]) -> Vec<T> {
    let LinearShape { batch, inputs, outputs } = s;
    let inputs_per_task = inputs.div_ceil(rayon::current_num_threads()).next_multiple_of(16);
    let mut dx_t = vec![T::zero(); inputs * batch];
    dx_t.par_chunks_mut((inputs_per_task * batch).max(1)).enumerate().for_each(|(task, dst)| {
        let (first_input, rows) = (task * inputs_per_task, dst.len() / batch);
        for (block, first_output) in (0..outputs).step_by(WEIGHT_ROWS_PER_PRODUCT).enumerate() {
            let depth = WEIGHT_ROWS_PER_PRODUCT.min(outputs - first_output);
            let w_t = MatRef { data: &w[first_output * inputs + first_input..], row_stride: 1, col_stride: inputs };
            let dy_t = MatRef { data: &dy[first_output..], row_stride: 1, col_stride: outputs };
            matmul((rows, batch, depth), dst, block > 0, (w_t, dy_t), false);
        }
    });
    transpose_map(&dx_t, batch, |_, v| v)
}

/// Weight rows per product in [`input_grad`]: 64 rows of 2048 inputs are 512 KiB, a
/// quarter of a core's L2.
const WEIGHT_ROWS_PER_PRODUCT: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_support::{max_abs_diff, randn};
    use candle_core::{Device, Var};

    /// The layer by Candle's own ops, `x W^T + b` then the ReLU.
    fn by_candle_ops(x: &Tensor, w: &Tensor, b: &Tensor, relu: bool) -> Tensor {
        let y = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(b).unwrap();
        if relu {
            y.relu().unwrap()
        } else {
            y
        }
    }

    /// Output and all three gradients of `op` for a seeded probe.
    fn run(op: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor, (x, w, b): (&Var, &Var, &Var)) -> (Tensor, [Tensor; 3]) {
        let y = op(x.as_tensor(), w.as_tensor(), b.as_tensor());
        let probe = randn(y.dims(), 1.0, 9);
        let grads = (&y * probe.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
        let grad = |v: &Var| grads.get(v.as_tensor()).cloned().expect("a gradient is missing");
        (y, [grad(x), grad(w), grad(b)])
    }

    #[test]
    fn values_and_gradients_match_candle_ops() {
        // Odd sizes, batch 1, a batch wider than the layer, and more outputs than the input
        // gradient's block of weight rows (two full blocks and a partial one).
        for (case, &(batch, inputs, outputs)) in
            [(4, 7, 5), (1, 33, 17), (37, 8, 3), (16, 64, 96), (5, 50, 2 * WEIGHT_ROWS_PER_PRODUCT + 22)]
                .iter()
                .enumerate()
        {
            let seed = 10 * case as u64;
            let x = randn(&[batch, inputs], 1.0, seed);
            let (w, b) = (randn(&[outputs, inputs], 0.5, seed + 1), randn(&[outputs], 0.5, seed + 2));
            for relu in [false, true] {
                let (y, grads) = run(|x, w, b| linear(x, w, b, relu, Precision::F32).unwrap(), (&x, &w, &b));
                let (y_ref, grads_ref) = run(|x, w, b| by_candle_ops(x, w, b, relu), (&x, &w, &b));
                assert_eq!(y.dims(), [batch, outputs]);
                assert!(max_abs_diff(&y, &y_ref) < 1e-12, "output of {batch}x{inputs}->{outputs}, relu {relu}");
                for (name, (g, g_ref)) in ["input", "weight", "bias"].iter().zip(grads.iter().zip(&grads_ref)) {
                    assert_eq!(g.dims(), g_ref.dims());
                    assert!(
                        max_abs_diff(g, g_ref) < 1e-12,
                        "{name} gradient of {batch}x{inputs}->{outputs}, relu {relu}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_relu_zeroes_negative_outputs_and_their_gradients() {
        let x = randn(&[6, 9], 1.0, 40);
        let (w, b) = (randn(&[11, 9], 0.5, 41), randn(&[11], 0.5, 42));
        let (y, [dx, ..]) = run(|x, w, b| linear(x, w, b, true, Precision::F32).unwrap(), (&x, &w, &b));
        let (plain, _) = run(|x, w, b| linear(x, w, b, false, Precision::F32).unwrap(), (&x, &w, &b));
        let negatives = plain.lt(0.0).unwrap().to_dtype(DType::F64).unwrap().sum_all().unwrap();
        assert!(negatives.to_scalar::<f64>().unwrap() > 10.0, "the case must have negative outputs");
        assert!(max_abs_diff(&y, &plain.relu().unwrap()) < 1e-15);
        let dx_masked =
            run(|x, w, b| linear(x, w, b, false, Precision::F32).unwrap().relu().unwrap(), (&x, &w, &b)).1[0].clone();
        assert!(max_abs_diff(&dx, &dx_masked) < 1e-12);
    }

    #[test]
    fn gradients_agree_on_one_thread_and_several() {
        // Three threads take 16, 16 and 8 of the 40 inputs; the outputs make two blocks.
        let x = randn(&[9, 40], 1.0, 50);
        let (w, b) =
            (randn(&[WEIGHT_ROWS_PER_PRODUCT + 30, 40], 0.5, 51), randn(&[WEIGHT_ROWS_PER_PRODUCT + 30], 0.5, 52));
        let on = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| run(|x, w, b| linear(x, w, b, true, Precision::F32).unwrap(), (&x, &w, &b)))
        };
        let ((y1, g1), (y3, g3)) = (on(1), on(3));
        assert!(max_abs_diff(&y1, &y3) < 1e-12);
        for (a, b) in g1.iter().zip(&g3) {
            assert!(max_abs_diff(a, b) < 1e-12);
        }
    }

    #[test]
    fn an_input_without_gradient_gets_none() {
        let x = randn(&[3, 4], 1.0, 60).as_tensor().detach();
        let (w, b) = (randn(&[2, 4], 0.5, 61), randn(&[2], 0.5, 62));
        let grads = linear(&x, w.as_tensor(), b.as_tensor(), false, Precision::F32)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(grads.get(&x).is_none());
        let dw = grads.get(w.as_tensor()).expect("weight gradient");
        // d(sum y)/dW[o, i] = sum over the batch of x[., i].
        let expected = x.sum_keepdim(0).unwrap().broadcast_as((2, 4)).unwrap();
        assert!(max_abs_diff(dw, &expected) < 1e-12);
    }

    #[test]
    fn empty_batches_and_layers_give_empty_results() {
        for (batch, inputs, outputs) in [(0, 4, 3), (2, 0, 3), (2, 4, 0)] {
            let x = randn(&[batch, inputs], 1.0, 70);
            let (w, b) = (randn(&[outputs, inputs], 0.5, 71), randn(&[outputs], 0.5, 72));
            let y = linear(x.as_tensor(), w.as_tensor(), b.as_tensor(), true, Precision::F32).unwrap();
            assert_eq!(y.dims(), [batch, outputs]);
            if inputs == 0 {
                // Every output is relu(bias).
                let expected = b.as_tensor().relu().unwrap().broadcast_as((batch, outputs)).unwrap();
                assert!(max_abs_diff(&y, &expected) < 1e-15);
            }
            let grads = y.sum_all().unwrap().backward().unwrap();
            for v in [&x, &w, &b] {
                if let Some(g) = grads.get(v.as_tensor()) {
                    assert_eq!(g.dims(), v.dims());
                }
            }
        }
    }

    #[test]
    fn mismatched_shapes_are_clear_errors() {
        let t = |dims: &[usize]| Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap();
        let err = |x: &[usize], w: &[usize], b: &[usize]| {
            linear(&t(x), &t(w), &t(b), false, Precision::F32).unwrap_err().to_string()
        };
        assert!(err(&[2, 4], &[3, 5], &[3]).contains("expected input (batch, 5), got [2, 4]"));
        assert!(err(&[2, 5], &[3, 5], &[4]).contains("bias of shape [4] for 3 outputs"));
        assert!(err(&[2, 5, 1], &[3, 5], &[3]).contains("expected input (batch, in)"));
    }
}
