//! The matrix products of a convolution, per image, as calls of a column-major strided-batched
//! GEMM (cuBLAS's `gemmStridedBatched`). Device-neutral, so that the mapping is tested on the
//! CPU against the products written out; the CUDA path (`cuda/conv2d.rs`) only hands these
//! calls their buffers.

use crate::ops::conv::geometry::ConvGeometry;

/// How one operand of a batched row-major product is stored: whether the product uses its
/// transpose, the distance between stored rows, and between consecutive batch entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowMajor {
    pub transposed: bool,
    pub row_stride: usize,
    pub batch_stride: usize,
}

/// `C_i = op(L_i) * op(R_i)` for each batch entry, with `C_i` a row-major (m x n) block, rows
/// `n` apart, entries `out_batch_stride` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Product {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub left: RowMajor,
    pub right: RowMajor,
    pub out_batch_stride: usize,
}

/// The arguments of a column-major `C' = op(A') * op(B')` call (alpha 1, beta 0), batched:
/// `A'` is the product's right operand and `B'` its left one (see [`Product::call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ColumnMajorCall {
    pub transpose_a: bool,
    pub transpose_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub lda: usize,
    pub ldb: usize,
    pub ldc: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl Product {
    /// out_i (cout x p) = W (cout x patch) * col_i (patch x p): the forward pass.
    pub fn conv_forward(g: &ConvGeometry) -> Self {
        let (p, patch) = (g.positions(), g.patch());
        Self {
            m: g.cout,
            n: p,
            k: patch,
            left: RowMajor { transposed: false, row_stride: patch, batch_stride: 0 },
            right: RowMajor { transposed: false, row_stride: p, batch_stride: patch * p },
            out_batch_stride: g.cout * p,
        }
    }

    /// col_i (patch x p) = W^T (patch x cout) * dY_i (cout x p): before col2im, the input
    /// gradient.
    pub fn conv_input_grad(g: &ConvGeometry) -> Self {
        let (p, patch) = (g.positions(), g.patch());
        Self {
            m: patch,
            n: p,
            k: g.cout,
            left: RowMajor { transposed: true, row_stride: patch, batch_stride: 0 },
            right: RowMajor { transposed: false, row_stride: p, batch_stride: g.cout * p },
            out_batch_stride: patch * p,
        }
    }

    /// dW_i (cout x patch) = dY_i (cout x p) * col_i^T (p x patch): one image's share of the
    /// weight gradient.
    pub fn conv_weight_grad(g: &ConvGeometry) -> Self {
        let (p, patch) = (g.positions(), g.patch());
        Self {
            m: g.cout,
            n: patch,
            k: p,
            left: RowMajor { transposed: false, row_stride: p, batch_stride: g.cout * p },
            right: RowMajor { transposed: true, row_stride: p, batch_stride: patch * p },
            out_batch_stride: g.cout * patch,
        }
    }

    /// The column-major call that computes this product. A column-major library reads a
    /// row-major matrix as its transpose, so it computes `C^T = op(R)^T * op(L)^T`: the right
    /// operand comes first, the left second, each keeping its transpose flag and row stride.
    pub fn call(&self) -> ColumnMajorCall {
        ColumnMajorCall {
            transpose_a: self.right.transposed,
            transpose_b: self.left.transposed,
            m: self.n,
            n: self.m,
            k: self.k,
            lda: self.right.row_stride,
            ldb: self.left.row_stride,
            ldc: self.n,
            stride_a: self.right.batch_stride,
            stride_b: self.left.batch_stride,
            stride_c: self.out_batch_stride,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_for;
    use rand::Rng;

    /// A strided-batched column-major GEMM with alpha 1 and beta 0, as the BLAS reference
    /// defines it: `C[i + j ldc] = sum_l op(A)(i, l) op(B)(l, j)`.
    fn column_major_gemm(call: &ColumnMajorCall, a: &[f32], b: &[f32], c: &mut [f32], batch: usize) {
        for e in 0..batch {
            let (a, b) = (&a[e * call.stride_a..], &b[e * call.stride_b..]);
            for j in 0..call.n {
                for i in 0..call.m {
                    let mut sum = 0.0;
                    for l in 0..call.k {
                        let x = if call.transpose_a { a[l + i * call.lda] } else { a[i + l * call.lda] };
                        let y = if call.transpose_b { b[j + l * call.ldb] } else { b[l + j * call.ldb] };
                        sum += x * y;
                    }
                    c[e * call.stride_c + i + j * call.ldc] = sum;
                }
            }
        }
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rng_for(seed, "blas-test");
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn assert_close(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-4, "{what}: element {i} is {g}, want {w}");
        }
    }

    /// Geometries with every dimension different, so that a swapped stride shows.
    fn geometries() -> [ConvGeometry; 2] {
        let g = |c, h, w, cout, kh, kw, oh, ow| ConvGeometry {
            b: 3,
            c,
            h,
            w,
            cout,
            kh,
            kw,
            stride: (1, 1),
            padding: (0, 0),
            oh,
            ow,
        };
        [g(2, 5, 6, 3, 2, 3, 4, 4), g(3, 7, 4, 5, 3, 1, 5, 4)]
    }

    #[test]
    fn the_three_convolution_products_map_onto_column_major_calls() {
        for g in geometries() {
            let (b, p, patch, cout) = (g.b, g.positions(), g.patch(), g.cout);
            let w = random(cout * patch, 1); // (cout x patch)
            let cols = random(b * patch * p, 2); // per image (patch x p)
            let dy = random(b * cout * p, 3); // per image (cout x p)

            let mut out = vec![f32::NAN; b * cout * p];
            column_major_gemm(&Product::conv_forward(&g).call(), &cols, &w, &mut out, b);
            let mut want = vec![0.0; out.len()];
            for e in 0..b {
                for o in 0..cout {
                    for r in 0..p {
                        want[e * cout * p + o * p + r] =
                            (0..patch).map(|q| w[o * patch + q] * cols[e * patch * p + q * p + r]).sum();
                    }
                }
            }
            assert_close(&format!("forward {g:?}"), &out, &want);

            let mut col = vec![f32::NAN; b * patch * p];
            column_major_gemm(&Product::conv_input_grad(&g).call(), &dy, &w, &mut col, b);
            let mut want = vec![0.0; col.len()];
            for e in 0..b {
                for q in 0..patch {
                    for r in 0..p {
                        want[e * patch * p + q * p + r] =
                            (0..cout).map(|o| w[o * patch + q] * dy[e * cout * p + o * p + r]).sum();
                    }
                }
            }
            assert_close(&format!("input gradient {g:?}"), &col, &want);

            let mut dw = vec![f32::NAN; b * cout * patch];
            column_major_gemm(&Product::conv_weight_grad(&g).call(), &cols, &dy, &mut dw, b);
            let mut want = vec![0.0; dw.len()];
            for e in 0..b {
                for o in 0..cout {
                    for q in 0..patch {
                        want[e * cout * patch + o * patch + q] =
                            (0..p).map(|r| dy[e * cout * p + o * p + r] * cols[e * patch * p + q * p + r]).sum();
                    }
                }
            }
            assert_close(&format!("weight gradient {g:?}"), &dw, &want);
        }
    }

    #[test]
    fn leading_dimensions_are_large_enough_for_cublas() {
        // cuBLAS refuses lda < rows of op(A') as stored, ldb likewise, ldc < m.
        for g in geometries() {
            for product in [Product::conv_forward(&g), Product::conv_input_grad(&g), Product::conv_weight_grad(&g)] {
                let c = product.call();
                assert!(c.lda >= if c.transpose_a { c.k } else { c.m }, "{product:?}");
                assert!(c.ldb >= if c.transpose_b { c.n } else { c.k }, "{product:?}");
                assert!(c.ldc >= c.m, "{product:?}");
            }
        }
    }
}
