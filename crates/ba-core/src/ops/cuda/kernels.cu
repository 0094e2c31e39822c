// CUDA kernels of ba-core's custom ops, f32 (and bf16 product operands for mixed precision:
// the `_bf16` kernels read f32 and write the operands cuBLAS multiplies). Each kernel is the device twin of a CPU loop in
// `src/ops/*.rs` and follows the same memory layouts:
//   images (b, c, h, w) row-major; column matrices per image (c*kh*kw rows, oh*ow columns).
// Matrix products are cuBLAS calls made from Rust (`src/ops/cuda/*.rs`, `src/ops/blas.rs`); these
// kernels are the memory-bound steps around them. Every kernel uses a grid-stride loop over
// 64-bit indices, so any launch size covers any problem size. nvcc contracts a * b + c into one
// fused multiply-add (its default, `--fmad=true`), which the CPU loops do not: results agree with
// the CPU's to rounding, not bit for bit.

#include <stdint.h>
#ifdef __CUDACC__
#include <cuda_bf16.h>
#endif

// A value as the element type of a product operand: f32 as is, bf16 rounded to nearest even.
__device__ inline float to_operand(float v, float*) { return v; }
__device__ inline __nv_bfloat16 to_operand(float v, __nv_bfloat16*) { return __float2bfloat16_rn(v); }
__device__ inline float from_operand(float v) { return v; }
__device__ inline float from_operand(__nv_bfloat16 v) { return __bfloat162float(v); }

#define GRID_STRIDE_LOOP(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)blockDim.x * gridDim.x)

struct ConvGeometry {
    int c, h, w, kh, kw, sh, sw, ph, pw, oh, ow;
};

// col[img][(ci*kh + ky)*kw + kx][oy*ow + ox] = x[img][ci][oy*sh + ky - ph][ox*sw + kx - pw],
// zero outside the image, for `images` consecutive images.
template <typename T>
__device__ void im2col(const float* x, T* col, ConvGeometry g, int images) {
    const size_t positions = (size_t)g.oh * g.ow;
    const size_t patch = (size_t)g.c * g.kh * g.kw;
    const size_t n = (size_t)images * patch * positions;
    GRID_STRIDE_LOOP(i, n) {
        const size_t pos = i % positions;
        const size_t row = (i / positions) % patch;
        const size_t img = i / (positions * patch);
        const int ox = pos % g.ow, oy = pos / g.ow;
        const int kx = row % g.kw, ky = (row / g.kw) % g.kh, ci = row / (g.kw * g.kh);
        const int y = oy * g.sh + ky - g.ph, xx = ox * g.sw + kx - g.pw;
        float v = 0.0f;
        if (y >= 0 && y < g.h && xx >= 0 && xx < g.w) {
            v = x[((img * g.c + ci) * g.h + y) * g.w + xx];
        }
        col[i] = to_operand(v, col);
    }
}

extern "C" __global__ void im2col_f32(const float* x, float* col, ConvGeometry g, int images) {
    im2col(x, col, g, images);
}

extern "C" __global__ void im2col_bf16(const float* x, __nv_bfloat16* col, ConvGeometry g, int images) {
    im2col(x, col, g, images);
}

// out[i] = in[i] rounded to bf16 (nearest even): a product operand for mixed precision.
extern "C" __global__ void to_bf16(const float* in, __nv_bfloat16* out, size_t n) {
    GRID_STRIDE_LOOP(i, n) {
        out[i] = __float2bfloat16_rn(in[i]);
    }
}

// The adjoint of im2col, as a gather (no atomics, deterministic): each input value sums the
// column entries of every window position that read it.
extern "C" __global__ void col2im_f32(const float* col, float* dx, ConvGeometry g, int images) {
    const size_t positions = (size_t)g.oh * g.ow;
    const size_t patch = (size_t)g.c * g.kh * g.kw;
    const size_t n = (size_t)images * g.c * g.h * g.w;
    GRID_STRIDE_LOOP(i, n) {
        const int xx = i % g.w, y = (i / g.w) % g.h, ci = (i / ((size_t)g.w * g.h)) % g.c;
        const size_t img = i / ((size_t)g.w * g.h * g.c);
        const float* image_col = col + img * patch * positions;
        float sum = 0.0f;
        for (int ky = 0; ky < g.kh; ++ky) {
            const int ty = y + g.ph - ky;
            if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.oh) continue;
            const int oy = ty / g.sh;
            for (int kx = 0; kx < g.kw; ++kx) {
                const int tx = xx + g.pw - kx;
                if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.ow) continue;
                const int ox = tx / g.sw;
                const size_t row = ((size_t)ci * g.kh + ky) * g.kw + kx;
                sum += image_col[row * positions + (size_t)oy * g.ow + ox];
            }
        }
        dx[i] = sum;
    }
}

// out (b, cout, plane) += bias[channel], then ReLU when `relu` is set; in place.
extern "C" __global__ void bias_relu_f32(float* out, const float* bias, size_t n, int channels, int plane, int relu) {
    GRID_STRIDE_LOOP(i, n) {
        float v = out[i] + bias[(i / plane) % channels];
        out[i] = (relu && v < 0.0f) ? 0.0f : v;
    }
}

// The gradient where the forward ReLU let the value through (result > 0), zero elsewhere.
extern "C" __global__ void relu_mask_f32(const float* grad, const float* result, float* out, size_t n) {
    GRID_STRIDE_LOOP(i, n) {
        out[i] = result[i] > 0.0f ? grad[i] : 0.0f;
    }
}

// sums[ch] = sum of dy[img][ch][*] over images and the plane; one block per channel, a tree
// reduction in shared memory (blockDim.x must be a power of two, at most 1024).
template <typename T>
__device__ void channel_sums(const T* dy, float* sums, int images, int channels, int plane) {
    __shared__ float partial[1024];
    const int ch = blockIdx.x;
    float acc = 0.0f;
    const size_t per_channel = (size_t)images * plane;
    for (size_t j = threadIdx.x; j < per_channel; j += blockDim.x) {
        const size_t img = j / plane, k = j % plane;
        acc += from_operand(dy[(img * channels + ch) * plane + k]);
    }
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) sums[ch] = partial[0];
}

extern "C" __global__ void channel_sums_f32(const float* dy, float* sums, int images, int channels, int plane) {
    channel_sums(dy, sums, images, channels, plane);
}

// The sums of a gradient already rounded to bf16, the operand of mixed precision's products.
extern "C" __global__ void channel_sums_bf16(const __nv_bfloat16* dy, float* sums, int images, int channels, int plane) {
    channel_sums(dy, sums, images, channels, plane);
}

// total[j] += rows[k][j] for k < count, where rows are `count` consecutive vectors of n.
extern "C" __global__ void add_rows_f32(float* total, const float* rows, size_t n, int count) {
    GRID_STRIDE_LOOP(i, n) {
        float acc = total[i];
        for (int k = 0; k < count; ++k) acc += rows[(size_t)k * n + i];
        total[i] = acc;
    }
}

struct PoolGeometry {
    int h, w, kh, kw, sh, sw, ph, pw, oh, ow;
};

// Max over each window of a (planes, h, w) input, and the flat in-plane index of the first
// maximum in row-major window order; a NaN is always taken (PyTorch's rules).
extern "C" __global__ void max_pool_f32(const float* x, float* out, uint32_t* argmax, PoolGeometry g, size_t planes) {
    const size_t n = planes * g.oh * g.ow;
    GRID_STRIDE_LOOP(i, n) {
        const int ox = i % g.ow, oy = (i / g.ow) % g.oh;
        const size_t plane = i / ((size_t)g.ow * g.oh);
        const float* p = x + plane * g.h * g.w;
        const int y0 = max(oy * g.sh - g.ph, 0), y1 = min(oy * g.sh + g.kh - g.ph, g.h);
        const int x0 = max(ox * g.sw - g.pw, 0), x1 = min(ox * g.sw + g.kw - g.pw, g.w);
        float best = -INFINITY;
        int best_at = y0 * g.w + x0;
        for (int y = y0; y < y1; ++y) {
            for (int xx = x0; xx < x1; ++xx) {
                const float v = p[y * g.w + xx];
                if (v > best || v != v) {
                    best = v;
                    best_at = y * g.w + xx;
                }
            }
        }
        out[i] = best;
        argmax[i] = (uint32_t)best_at;
    }
}

// ceil(a / b) for b > 0, or 0 when a <= 0.
__device__ int ceil_div_or_zero(int a, int b) {
    return a <= 0 ? 0 : (a + b - 1) / b;
}

// The max-pool backward as a gather: each input value sums the gradients of the windows that
// cover it and chose it (deterministic, no atomics).
extern "C" __global__ void max_pool_backward_f32(const float* grad, const uint32_t* argmax, float* dx, PoolGeometry g, size_t planes) {
    const size_t n = planes * g.h * g.w;
    GRID_STRIDE_LOOP(i, n) {
        const int xx = i % g.w, y = (i / g.w) % g.h;
        const size_t plane = i / ((size_t)g.w * g.h);
        const uint32_t here = (uint32_t)(y * g.w + xx);
        // Windows oy with oy*sh - ph <= y < oy*sh - ph + kh, clamped to the output.
        const int oy_lo = ceil_div_or_zero(y + g.ph - g.kh + 1, g.sh), oy_hi = min((y + g.ph) / g.sh, g.oh - 1);
        const int ox_lo = ceil_div_or_zero(xx + g.pw - g.kw + 1, g.sw), ox_hi = min((xx + g.pw) / g.sw, g.ow - 1);
        float sum = 0.0f;
        for (int oy = oy_lo; oy <= oy_hi; ++oy) {
            for (int ox = ox_lo; ox <= ox_hi; ++ox) {
                const size_t o = (plane * g.oh + oy) * g.ow + ox;
                if (argmax[o] == here) sum += grad[o];
            }
        }
        dx[i] = sum;
    }
}

struct AdamHyper {
    float beta1, beta2, one_minus_beta1, one_minus_beta2, eps, l2, shrink, step_size, inv_bc2_sqrt;
};

// One Adam/AdamW step in place: the operations of `ops/adam.rs` in the same order (up to FMA
// contraction, above).
extern "C" __global__ void adam_f32(float* param, const float* grad, float* m, float* v, AdamHyper h, size_t n) {
    GRID_STRIDE_LOOP(i, n) {
        float p = param[i] * h.shrink;
        const float g = grad[i] + h.l2 * p;
        const float mi = h.beta1 * m[i] + h.one_minus_beta1 * g;
        const float vi = h.beta2 * v[i] + h.one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] = p - h.step_size * mi / (sqrtf(vi) * h.inv_bc2_sqrt + h.eps);
    }
}

struct SgdHyper {
    float lr, weight_decay, momentum, keep;
    int first, nesterov, use_momentum;
};

// One SGD step in place (momentum, dampening, Nesterov, coupled decay), as `ops/sgd.rs`.
extern "C" __global__ void sgd_f32(float* param, const float* grad, float* buffer, SgdHyper h, size_t n) {
    GRID_STRIDE_LOOP(i, n) {
        const float g = grad[i] + h.weight_decay * param[i];
        if (!h.use_momentum) {
            param[i] -= h.lr * g;
            continue;
        }
        const float b = h.first ? g : h.momentum * buffer[i] + h.keep * g;
        buffer[i] = b;
        param[i] -= h.lr * (h.nesterov ? g + h.momentum * b : b);
    }
}
