// The CUDA twins of the ops of kernels/ops.h: kernels that mirror the CPU twins' formulas
// (kernels/cpu/ops_cpu.c) so tests/test_ops.c --backend cuda can check them, written to be
// correct before fast. scripts/gpu-check.sh runs the op table test on a device (it passed on an
// H200 on 2026-12-04); kernels written since a session without a device ran only on the CUDA
// emulator (tests/cuda_emu) until the next device run: the README's CUDA section and the session
// notes name them.
//
// Activations on the device are held in their dtype (BF16 as 2-byte bf16, nvl_tensor.widened = 0);
// every kernel computes in f32 and rounds what it stores to the output dtype (round to nearest
// even), exactly where the CPU twin rounds. Matmuls go to cuBLAS (GemmEx, f32 compute) when x
// and W share a dtype, else to a tiled kernel that widens both; FP8 / NVFP4 weights to two simple
// kernels (activation quantize-dequantize, then a direct dot with the weight widened on the fly).
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#if defined(__CUDACC__)
#include <cuda_fp8.h>
#endif
#include <mma.h>

#include "../backend_impl.h"
#include "../base/alloc.h"
#include "common.cuh"
#include "quant_round.cuh"

#include "cuda_ops.h"

namespace {

enum { DT_F32 = 0, DT_BF16 = 1, DT_F16 = 2 };

int dcode(nvl_dtype d) { return d == NVL_DTYPE_F32 ? DT_F32 : d == NVL_DTYPE_BF16 ? DT_BF16 : d == NVL_DTYPE_F16 ? DT_F16 : -1; }

// A 2-D view: rows x cols, row stride ld (elements), dtype code.
struct V2 {
    void *p;
    int64_t rows, cols, ld;
    int dt;
};

nvl_status view(const char *op, const char *what, const nvl_tensor *t, V2 *v, nvl_err *err) {
    if (t->widened)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: %s is a widened (CPU) tensor on the CUDA backend", op, what);
    v->dt = dcode(t->dtype);
    if (v->dt < 0) return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: %s dtype %s on CUDA", op, what, nvl_dtype_name(t->dtype));
    v->p = t->data;
    EMU_CHECK_DEVICE_PTR(op, what, t->data);
    v->rows = t->n_dims >= 2 ? t->shape[0] : 1;
    v->cols = t->n_dims >= 2 ? t->shape[1] : t->shape[0];
    v->ld = t->n_dims >= 2 ? t->stride[0] : v->cols;
    return NVL_OK;
}

__device__ __forceinline__ float ld(const void *p, int64_t i, int dt) {
    if (dt == DT_BF16) return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    if (dt == DT_F16) return __half2float(((const __half *)p)[i]);
    return ((const float *)p)[i];
}
__device__ __forceinline__ void st(void *p, int64_t i, float v, int dt) {
    if (dt == DT_BF16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
    else if (dt == DT_F16) ((__half *)p)[i] = __float2half_rn(v);
    else ((float *)p)[i] = v;
}
__device__ __forceinline__ float rnd(float v, int dt) {
    if (dt == DT_BF16) return __bfloat162float(__float2bfloat16_rn(v));
    if (dt == DT_F16) return __half2float(__float2half_rn(v));
    return v;
}
__device__ __forceinline__ float rb(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }
__host__ __device__ __forceinline__ size_t dsize(int dt) { return dt == DT_F32 ? 4 : 2; }

// Block-wide sum (blockDim.x a multiple of 32, at most 1024).
__device__ float block_sum(float v) {
    __shared__ float part[32];
    v = warp_reduce_sum(v);
    const int w = threadIdx.x / WARP_SIZE, l = threadIdx.x % WARP_SIZE;
    __syncthreads();
    if (l == 0) part[w] = v;
    __syncthreads();
    v = threadIdx.x < blockDim.x / WARP_SIZE ? part[threadIdx.x] : 0.f;
    if (w == 0) v = warp_reduce_sum(v);
    if (threadIdx.x == 0) part[0] = v;
    __syncthreads();
    return part[0];
}

constexpr int ROW_BLOCK = 256;
constexpr int EW_BLOCK = 256;
unsigned grid_for(int64_t n) { return (unsigned)((n + EW_BLOCK - 1) / EW_BLOCK > 65535 * 8 ? 65535 * 8 : (n + EW_BLOCK - 1) / EW_BLOCK); }
// Element-wise kernels over a (rows, cols) view: thread (blockIdx.x EW_BLOCK + threadIdx.x) takes
// a column, blockIdx.y rows blockIdx.y, + gridDim.y, ...: no 64-bit division per element (a
// flat index's i / cols and i % cols cost more instructions than the element's own work).
dim3 grid_rc(int64_t rows, int64_t cols) {
    return dim3((unsigned)((cols + EW_BLOCK - 1) / EW_BLOCK), (unsigned)(rows < 65535 ? rows : 65535));
}
#define FOR_RC(rows, cols, r, c)                                                                           \
    const int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;                                       \
    if (c >= (cols)) return;                                                                                \
    for (int64_t r = blockIdx.y; r < (rows); r += gridDim.y)

// Programmatic dependent launch (Hopper; kernels.md §6.6), NVL_CUDA_PDL=1 (default 0): the
// decode step's kernels are launched with programmatic stream serialization, so a kernel's blocks
// may start while the kernel before it finishes. Each such kernel first calls pdl_enter(): it
// waits there until the grid before it has completed and its writes are visible
// (griddepcontrol.wait), then lets the next grid launch (griddepcontrol.launch_dependents: that
// one waits in turn). Nothing before pdl_enter() may touch memory another kernel writes; the BF16
// GEMV issues its first weight loads there (weights are constant). On a device without it, or on
// the emulator, both are no-ops and launch_pdl a plain launch.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_enter() {
    pdl_wait();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
int pdl_on(void) {
    static const int on = [] {
        const char *e = getenv("NVL_CUDA_PDL");
        return e && !strcmp(e, "1");
    }();
    return on;
}
/* launches k on (grid, block, smem, stream) with args, with programmatic stream serialization
   when NVL_CUDA_PDL=1 (k must begin with pdl_enter(), or with pdl_wait() after loads of
   constants); a launch error is left for cudaGetLastError (DONE / kern_cuda_after_launch), as a
   plain launch's is. (No triple angle brackets in comments here: tests/cuda_emu/cu2cpp rewrites
   them wherever they stand.) */
template <typename... P, typename... A>
void launch_pdl(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, A... args) {
#ifndef TESTS_CUDA_EMU_H
    if (pdl_on()) {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = grid;
        cfg.blockDim = block;
        cfg.dynamicSmemBytes = smem;
        cfg.stream = stream;
        cudaLaunchAttribute at[1];
        at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = at;
        cfg.numAttrs = 1;
        (void)cudaLaunchKernelEx(&cfg, k, (P)args...);
        return;
    }
#endif
    k<<<grid, block, smem, stream>>>((P)args...);
}

// ---------------------------------------------------------------------------
// Row-wise kernels

__global__ void k_rmsnorm(V2 y, V2 x, const void *w, int wdt, float eps) {
    pdl_enter();
    const int64_t r = blockIdx.x;
    float ss = 0.f;
    for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x) {
        const float v = ld(x.p, r * x.ld + c, x.dt);
        ss += v * v;
    }
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)x.cols + eps);
    for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x)
        st(y.p, r * y.ld + c, ld(w, c, wdt) * (ld(x.p, r * x.ld + c, x.dt) * inv), y.dt);
}

// grid (rows, groups): t = x silu(z); t *= rsqrt(mean_group(t^2) + eps); y = w * t (t rounded to
// bf16 first on rows flagged decode)
__global__ void k_rmsnorm_gated(V2 y, V2 x, V2 z, const void *w, int wdt, int64_t gs, float eps, const uint8_t *dec) {
    pdl_enter();
    const int64_t r = blockIdx.x, g = blockIdx.y;
    float ss = 0.f;
    for (int64_t c = threadIdx.x; c < gs; c += blockDim.x) {
        const int64_t cc = g * gs + c;
        const float zv = ld(z.p, r * z.ld + cc, z.dt);
        const float t = ld(x.p, r * x.ld + cc, x.dt) * (zv / (1.0f + expf(-zv)));
        ss += t * t;
    }
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)gs + eps);
    const int bf = dec && dec[r];
    for (int64_t c = threadIdx.x; c < gs; c += blockDim.x) {
        const int64_t cc = g * gs + c;
        const float zv = ld(z.p, r * z.ld + cc, z.dt);
        float t = ld(x.p, r * x.ld + cc, x.dt) * (zv / (1.0f + expf(-zv))) * inv;
        if (bf) t = rb(t);
        st(y.p, r * y.ld + cc, ld(w, cc, wdt) * t, y.dt);
    }
}

__global__ void k_layernorm(V2 y, V2 x, const void *w, int wdt, const void *b, int bdt, float eps) {
    const int64_t r = blockIdx.x;
    // double statistics as the CPU twin, reduced in two float passes per thread then block
    double s = 0;
    for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x) s += ld(x.p, r * x.ld + c, x.dt);
    __shared__ double part[ROW_BLOCK];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) part[threadIdx.x] += part[threadIdx.x + o];
        __syncthreads();
    }
    const double mean = part[0] / (double)x.cols;
    __syncthreads();
    double v = 0;
    for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x) {
        const double d = (double)ld(x.p, r * x.ld + c, x.dt) - mean;
        v += d * d;
    }
    part[threadIdx.x] = v;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) part[threadIdx.x] += part[threadIdx.x + o];
        __syncthreads();
    }
    const float inv = (float)(1.0 / sqrt(part[0] / (double)x.cols + eps));
    for (int64_t c = threadIdx.x; c < x.cols; c += blockDim.x)
        st(y.p, r * y.ld + c, ((float)(ld(x.p, r * x.ld + c, x.dt) - mean) * inv) * ld(w, c, wdt) + ld(b, c, bdt), y.dt);
}

__global__ void k_add(V2 y, V2 a, V2 b) {
    pdl_enter();
    FOR_RC(a.rows, a.cols, r, c) st(y.p, r * y.ld + c, ld(a.p, r * a.ld + c, a.dt) + ld(b.p, (r % b.rows) * b.ld + c, b.dt), y.dt);
}

__global__ void k_bias_act(V2 y, V2 x, const void *bias, int bdt, int act) {
    pdl_enter();
    FOR_RC(x.rows, x.cols, r, c) {
        float v = ld(x.p, r * x.ld + c, x.dt);
        if (bias) v += ld(bias, c, bdt);
        if (act == KERN_ACT_GELU_ERF) v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        else if (act == KERN_ACT_RELU2) v = v < 0.f ? 0.f : v * v; /* (a NaN stays NaN, as torch.relu) */
        else if (act == KERN_ACT_SILU) v = v / (1.0f + expf(-v));
        st(y.p, r * y.ld + c, v, y.dt);
    }
}

__global__ void k_copy(V2 y, V2 x) {
    pdl_enter();
    FOR_RC(x.rows, x.cols, r, c) st(y.p, r * y.ld + c, ld(x.p, r * x.ld + c, x.dt), y.dt);
}

__global__ void k_dt_softplus(V2 y, V2 x, const void *bias, int bdt, float lo, float hi) {
    pdl_enter();
    FOR_RC(x.rows, x.cols, r, h) {
        float v = rnd(ld(x.p, r * x.ld + h, x.dt) + rnd(ld(bias, h, bdt), y.dt), y.dt);
        v = v > 20.0f ? v : log1pf(expf(v));
        v = rnd(v, y.dt);
        if (v < lo) v = lo; /* as the CPU: a NaN stays NaN (fminf/fmaxf would hide it) */
        if (v > hi) v = hi;
        st(y.p, r * y.ld + h, v, y.dt);
    }
}

__global__ void k_get_rows(V2 y, V2 table, const int32_t *ids, V2 rows, const uint8_t *mask) {
    pdl_enter();
    const int64_t t = blockIdx.x;
    const int masked = mask && mask[t];
    for (int64_t c = threadIdx.x; c < y.cols; c += blockDim.x) {
        const float v = masked ? ld(rows.p, t * rows.ld + c, rows.dt) : ld(table.p, (int64_t)ids[t] * table.ld + c, table.dt);
        st(y.p, t * y.ld + c, v, y.dt);
    }
}

// ---------------------------------------------------------------------------
// Sequence kernels

// one thread per (sequence, channel)
__global__ void k_conv1d(V2 y, V2 x, const float *w, const void *bias, int bdt, float *state, int64_t Kc,
                         const kern_seq *seqs, int n_seq) {
    pdl_enter();
    const int64_t Cc = x.cols, i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= (int64_t)n_seq * Cc) return;
    const kern_seq s = seqs[i / Cc];
    const int64_t c = i % Cc;
    if (s.slot < 0) { /* a padding sequence: zero output, no state */
        for (int64_t t = 0; t < s.n_rows; t++) st(y.p, (s.row0 + t) * y.ld + c, 0.f, y.dt);
        return;
    }
    float *stt = state + ((int64_t)s.slot * Cc + c) * Kc;
    const int bf = y.dt == DT_BF16;
    for (int64_t t = 0; t < s.n_rows; t++) {
        for (int64_t k = 0; k + 1 < Kc; k++) stt[k] = stt[k + 1];
        stt[Kc - 1] = ld(x.p, (s.row0 + t) * x.ld + c, x.dt);
        float u = bias ? ld(bias, c, bdt) : 0.f;
        for (int64_t k = 0; k < Kc; k++) u = __fadd_rn(u, __fmul_rn(w[c * Kc + k], stt[k])); /* unfused, as the CPU */
        if (bf) u = rb(u);
        float sv = u / (1.0f + expf(-u));
        st(y.p, (s.row0 + t) * y.ld + c, sv, y.dt);
    }
}

// The same conv, parallel over rows (prefill: one sequential thread per channel read and wrote
// the state through memory at every row). Thread (channel c, group of CONV_RG rows) computes
// each row's output from the step's inputs and, for the first Kc - 1 rows of a sequence, the
// slot's state as it was before the step (in(t) = x row t for t >= 0, state[Kc + t] for t < 0),
// its weights and window of the last Kc inputs in registers (one new input a row while the rows
// follow each other in one sequence); the same sums in the same order as k_conv1d, so the same
// bits. k_conv1d_state then moves each slot's state to its last Kc inputs (after every output
// has read the old one: a second launch). Rows of no sequence are left alone; a padding
// sequence's rows are zeros and its state is not touched.
constexpr int CONV_MAX_K = 8, CONV_RG = 16;
__global__ void k_conv1d_rows(V2 y, V2 x, const float *w, const void *bias, int bdt, const float *state, int64_t Kc,
                              const kern_seq *seqs, const int32_t *row_seq) {
    pdl_enter();
    const int64_t Cc = x.cols, c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (c >= Cc) return;
    float wk[CONV_MAX_K], win[CONV_MAX_K];
#pragma unroll
    for (int k = 0; k < CONV_MAX_K; k++) {
        wk[k] = k < Kc ? w[c * Kc + k] : 0.f;
        win[k] = 0.f;
    }
    const float b0 = bias ? ld(bias, c, bdt) : 0.f;
    int32_t prev = -1;  /* the sequence of the row before, whose window win holds (-1: none) */
    int64_t prev_t = 0; /* and that row's index in it */
    const int64_t r0 = (int64_t)blockIdx.y * CONV_RG;
    for (int i = 0; i < CONV_RG; i++) {
        const int64_t r = r0 + i;
        if (r >= x.rows) break;
        const int32_t si = row_seq[r];
        if (si < 0) {
            prev = -1;
            continue;
        }
        const kern_seq s = seqs[si];
        if (s.slot < 0) {
            st(y.p, r * y.ld + c, 0.f, y.dt);
            prev = -1;
            continue;
        }
        const int64_t t = r - s.row0;
        if (si == prev && t == prev_t + 1) { /* slide the window by one input */
            const float in = ld(x.p, r * x.ld + c, x.dt);
#pragma unroll
            for (int k = 0; k + 1 < CONV_MAX_K; k++)
                if (k + 1 < Kc) win[k] = win[k + 1];
#pragma unroll
            for (int k = 0; k < CONV_MAX_K; k++)
                if (k == Kc - 1) win[k] = in;
        } else { /* a window of its own: the step's rows, the slot's state before them */
            const float *old = state + ((int64_t)s.slot * Cc + c) * Kc;
#pragma unroll
            for (int k = 0; k < CONV_MAX_K; k++) {
                const int64_t tau = t - (Kc - 1) + k;
                if (k < Kc) win[k] = tau >= 0 ? ld(x.p, (s.row0 + tau) * x.ld + c, x.dt) : old[Kc + tau];
            }
        }
        prev = si;
        prev_t = t;
        float u = b0;
#pragma unroll
        for (int k = 0; k < CONV_MAX_K; k++)
            if (k < Kc) u = __fadd_rn(u, __fmul_rn(wk[k], win[k])); /* unfused, as the CPU */
        if (y.dt == DT_BF16) u = rb(u);
        st(y.p, r * y.ld + c, u / (1.0f + expf(-u)), y.dt);
    }
}
__global__ void k_conv1d_state(V2 x, float *state, int64_t Kc, const kern_seq *seqs, int n_seq) {
    pdl_enter();
    const int64_t Cc = x.cols, i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= (int64_t)n_seq * Cc) return;
    const kern_seq s = seqs[i / Cc];
    const int64_t c = i % Cc;
    if (s.slot < 0 || s.n_rows == 0) return;
    float *stt = state + ((int64_t)s.slot * Cc + c) * Kc, nw[CONV_MAX_K];
#pragma unroll
    for (int k = 0; k < CONV_MAX_K; k++) { /* the last Kc inputs: in(n_rows - Kc + k) (registers: fixed indices) */
        const int64_t tau = s.n_rows - Kc + k;
        if (k < Kc) nw[k] = tau >= 0 ? ld(x.p, (s.row0 + tau) * x.ld + c, x.dt) : stt[Kc + tau];
    }
#pragma unroll
    for (int k = 0; k < CONV_MAX_K; k++)
        if (k < Kc) stt[k] = nw[k];
}

// x ~ hi + lo in bf16 (8 significand bits each, round to nearest): |x - hi - lo| < 2^-16 |x|
// (a review measured at most 2^-17 over 5e7 samples)
__device__ __forceinline__ void split_bf16(float v, __nv_bfloat16 *hi, __nv_bfloat16 *lo) {
    const __nv_bfloat16 h = __float2bfloat16_rn(v);
    *hi = h;
    *lo = __float2bfloat16_rn(v - __bfloat162float(h));
}

// x ~ hi + mid + lo in bf16: exact for normal f32 values (24 significand bits in three parts of 8;
// the differences are exact in f32); parts below bf16's normal range round
__device__ __forceinline__ void split3_bf16(float v, __nv_bfloat16 *hi, __nv_bfloat16 *mid, __nv_bfloat16 *lo) {
    const __nv_bfloat16 h = __float2bfloat16_rn(v);
    const float r = v - __bfloat162float(h);
    const __nv_bfloat16 m = __float2bfloat16_rn(r);
    *hi = h;
    *mid = m;
    *lo = __float2bfloat16_rn(r - __bfloat162float(m));
}

// The recurrence (both modes; the chunked SSD form of the CPU twin is the same sums in another
// order): a group of SCAN_LANES lanes per (sequence, head, p), lane sub holding the state elements
// n = sub, sub + SCAN_LANES, ... in registers for the whole sequence (read once, written once),
// the y sum reduced across the group by shuffles. N <= SCAN_LANES * SCAN_NPL.
constexpr int SCAN_LANES = 8, SCAN_NPL = 32;
__global__ void k_ssm_scan(V2 y, V2 x, V2 dt, const float *A, V2 B, V2 C, const float *D, float *state, int64_t H,
                           int64_t P, int64_t N, int64_t G, const kern_seq *seqs, int n_seq, int mode, int64_t chunk_rows) {
    pdl_enter();
    const int64_t gi = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / SCAN_LANES;
    const int sub = threadIdx.x % SCAN_LANES;
    if (gi >= (int64_t)n_seq * H * P) return; // whole groups leave together (the total is a multiple of the group)
    const unsigned gmask = 0xffu << ((threadIdx.x % WARP_SIZE) & ~(SCAN_LANES - 1));
    const kern_seq s = seqs[gi / (H * P)];
    if (chunk_rows > 0 && s.n_rows >= chunk_rows && s.slot >= 0) return; /* k_ssm_chunked's sequence */
    const int64_t h = (gi / P) % H, p = gi % P, g = h / (H / G);
    if (s.slot < 0) { /* a padding sequence */
        if (sub == 0)
            for (int64_t t = 0; t < s.n_rows; t++) st(y.p, (s.row0 + t) * y.ld + h * P + p, 0.f, y.dt);
        return;
    }
    float *Sg = state + (((int64_t)s.slot * H + h) * P + p) * N;
    float S[SCAN_NPL];
#pragma unroll
    for (int i = 0; i < SCAN_NPL; i++) {
        const int64_t n = sub + SCAN_LANES * i;
        S[i] = n < N ? Sg[n] : 0.f;
    }
    /* bf16 roundings (selective_state_update on bf16) where the CPU twin takes its recurrent path
       with them: a decode sequence, recurrent forced or one row in auto (kern_ssm_scan) */
    const int recurrent = mode == KERN_SCAN_RECURRENT || (mode == KERN_SCAN_AUTO && s.n_rows == 1);
    const int r = s.decode && x.dt == DT_BF16 && recurrent;
    for (int64_t t = 0; t < s.n_rows; t++) {
        const int64_t row = s.row0 + t;
        const float d = ld(dt.p, row * dt.ld + h, dt.dt), dA = expf(d * A[h]);
        const float xv = ld(x.p, row * x.ld + h * P + p, x.dt);
        float acc = 0.f;
#pragma unroll
        for (int i = 0; i < SCAN_NPL; i++) {
            const int64_t n = sub + SCAN_LANES * i;
            if (n >= N) continue;
            const float Bn = ld(B.p, row * B.ld + g * N + n, B.dt), Cn = ld(C.p, row * C.ld + g * N + n, C.dt);
            const float dBx = r ? rb(rb(d * Bn) * xv) : d * Bn * xv;
            S[i] = __fadd_rn(__fmul_rn(S[i], dA), dBx); /* unfused, as the CPU (a bf16 rounding of S follows) */
            acc = __fadd_rn(acc, __fmul_rn(r ? rb(S[i]) : S[i], Cn));
        }
        for (int o = SCAN_LANES / 2; o > 0; o >>= 1) acc += __shfl_xor_sync(gmask, acc, o, SCAN_LANES);
        if (sub == 0) {
            const float out = r ? rb(rb(acc) + rb(xv * D[h])) : acc + D[h] * xv;
            st(y.p, row * y.ld + h * P + p, out, y.dt);
        }
    }
#pragma unroll
    for (int i = 0; i < SCAN_NPL; i++) {
        const int64_t n = sub + SCAN_LANES * i;
        if (n < N) Sg[n] = S[i];
    }
}

// acc += A B where one factor is held as `parts` bf16 parts (split_bf16 / split3_bf16) at a
// fixed distance from each other: a_step (elements) between the parts of A, or b_step between
// those of B (the other step 0: that factor is loaded once). A tile at a (ldm lda), B at b (ldb).
template <typename LA, typename LB>
__device__ __forceinline__ void mma_parts(nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> &acc,
                                          const __nv_bfloat16 *a, unsigned lda, size_t a_step, const __nv_bfloat16 *b,
                                          unsigned ldb, size_t b_step, int parts) {
    namespace wm = nvcuda::wmma;
    wm::fragment<wm::matrix_a, 16, 16, 16, __nv_bfloat16, LA> fa;
    wm::fragment<wm::matrix_b, 16, 16, 16, __nv_bfloat16, LB> fb;
    wm::load_matrix_sync(fa, a, lda);
    wm::load_matrix_sync(fb, b, ldb);
    wm::mma_sync(acc, fa, fb, acc);
    for (int k = 1; k < parts; k++) {
        if (a_step) wm::load_matrix_sync(fa, a + k * a_step, lda);
        if (b_step) wm::load_matrix_sync(fb, b + k * b_step, ldb);
        wm::mma_sync(acc, fa, fb, acc);
    }
}

// The chunked SSD form (kernels.md §1.3, design A of §1.4 fused into one kernel) for the
// sequences of a step with many rows: block (sequence, head, slice of pb head columns) walks the
// sequence's chunks of SSD_Q rows in order with its rows of the running state H (pb x N, f32) in
// shared memory (the host takes pb < P when sequences x heads alone would not fill the device
// twice: the 12B model's one prefill is 128 heads on 132 SMs). Per chunk, with
// a_t = dt_t A_h and L_t = a_0 + ... + a_t (chunk-local, f32):
//   G = C B^T                                                    (Q x Q, tensor cores)
//   M[t,s] = G[t,s] e^(L_t - L_s) dt_s for s <= t, else 0
//   y_t = sum_s M[t,s] x_s + e^(L_t) (C_t . H) + D_h x_t         (M X and C H^T on tensor cores)
//   H = e^(L_last) H + sum_s e^(L_last - L_s) dt_s x_s B_s^T     (W^T B on tensor cores)
// which is the recurrence S = e^(a_t) S + dt_t x_t B_t^T, y_t = S C_t + D x_t summed in another
// order. x, B and C must be bf16 (the BF16 model's activations): exact tensor-core operands. The
// f32 operands (M, H, W) are split into three bf16 parts (split3_bf16), each product done three
// times, which loses nothing: the result is f32 math up to the order of the sums (and a device's
// tensor cores add their f32 sums with their own rounding, not round-to-nearest at each add), as
// the CPU twin's (kern_ssm_scan: prefill output is f32, the state f32). With two parts the 12B
// head's y was off by up to 2e-5 on values near 1 on the emulator (NMSE 4e-12, against 7e-14 for
// the CPU's chunked form); with three, as the CPU. Shared memory: 227 KiB at P 80, N 128 (Hopper's limit:
// larger heads take the recurrence). That is 231,936 of the H200's 232,448 opt-in bytes: 512 to spare,
// so k_ssm_chunked must keep no static __shared__ (any would send the 12B's full head to the pb 16
// split, or to the recurrence, without a word: a review). Rows past the sequence's end in the last chunk are zeros
// (dt 0: they add nothing and do not decay the state).
constexpr int SSD_Q = 64, SSD_WARPS = 8;
constexpr int64_t SSD_MIN_ROWS = 32; /* shorter sequences: the recurrence */
struct ssd_layout {
    size_t hf, hh, hm, hl, xb, bb, cb, mh, mm, ml, wh, wm, wl, scr, dtl, total; /* byte offsets */
    int ldhf, ldn, ldp, ldq;
    size_t part_h, part_m, part_w; /* elements from one bf16 part of H / M / W to the next */
};
__host__ __device__ inline size_t ssd_take(size_t *o, size_t bytes) {
    const size_t r = *o;
    *o += (bytes + 127) & ~(size_t)127;
    return r;
}
__host__ __device__ inline ssd_layout ssd_plan(int64_t P, int64_t N) {
    ssd_layout l;
    size_t o = 0;
    l.ldhf = (int)N + 4; /* f32 strides: multiples of 4 elements; bf16: of 8 (WMMA's 16 bytes) */
    l.ldn = (int)N + 8;
    l.ldp = (int)P + 8;
    l.ldq = SSD_Q + 8;
    l.hf = ssd_take(&o, (size_t)P * l.ldhf * 4);
    l.hh = ssd_take(&o, (size_t)P * l.ldn * 2);
    l.hm = ssd_take(&o, (size_t)P * l.ldn * 2);
    l.hl = ssd_take(&o, (size_t)P * l.ldn * 2);
    l.xb = ssd_take(&o, (size_t)SSD_Q * l.ldp * 2);
    l.bb = ssd_take(&o, (size_t)SSD_Q * l.ldn * 2);
    l.cb = ssd_take(&o, (size_t)SSD_Q * l.ldn * 2);
    l.mh = ssd_take(&o, (size_t)SSD_Q * l.ldq * 2);
    l.mm = ssd_take(&o, (size_t)SSD_Q * l.ldq * 2);
    l.ml = ssd_take(&o, (size_t)SSD_Q * l.ldq * 2);
    l.wh = ssd_take(&o, (size_t)SSD_Q * l.ldp * 2);
    l.wm = ssd_take(&o, (size_t)SSD_Q * l.ldp * 2);
    l.wl = ssd_take(&o, (size_t)SSD_Q * l.ldp * 2);
    l.scr = ssd_take(&o, (size_t)SSD_WARPS * 512 * 4);
    l.dtl = ssd_take(&o, (size_t)2 * SSD_Q * 4);
    l.total = o;
    l.part_h = (l.hm - l.hh) / 2; /* (the three parts of each: consecutive regions of one size) */
    l.part_m = (l.mm - l.mh) / 2;
    l.part_w = (l.wm - l.wh) / 2;
    return l;
}

__global__ void __launch_bounds__(SSD_WARPS * WARP_SIZE)
    k_ssm_chunked(V2 y, V2 x, V2 dt, const float *A, V2 B, V2 C, const float *Dv, float *state, int64_t H, int64_t P,
                  int64_t N, int64_t G, const kern_seq *seqs, int n_seq, int64_t min_rows, int64_t pb) {
    namespace wm = nvcuda::wmma;
    typedef wm::fragment<wm::accumulator, 16, 16, 16, float> facc;
    extern __shared__ __align__(128) float ssd_smem[];
    char *sm = (char *)ssd_smem;
    const ssd_layout Ly = ssd_plan(pb, N);
    float *Hf = (float *)(sm + Ly.hf), *dts = (float *)(sm + Ly.dtl), *lam = dts + SSD_Q;
    __nv_bfloat16 *Hh = (__nv_bfloat16 *)(sm + Ly.hh), *Hm = Hh + Ly.part_h, *Hl = Hm + Ly.part_h,
                  *Xb = (__nv_bfloat16 *)(sm + Ly.xb), *Bb = (__nv_bfloat16 *)(sm + Ly.bb),
                  *Cb = (__nv_bfloat16 *)(sm + Ly.cb), *Mh = (__nv_bfloat16 *)(sm + Ly.mh), *Mm = Mh + Ly.part_m,
                  *Ml = Mm + Ly.part_m, *Wh = (__nv_bfloat16 *)(sm + Ly.wh), *Wm = Wh + Ly.part_w, *Wl = Wm + Ly.part_w;
    const int tid = threadIdx.x, nth = blockDim.x, lane = tid % WARP_SIZE, w = tid / WARP_SIZE, r = lane >> 1,
              half = lane & 1;
    float *scr = (float *)(sm + Ly.scr) + w * 512;
    const int ldhf = Ly.ldhf, ldn = Ly.ldn, ldp = Ly.ldp, ldq = Ly.ldq;

    /* this block's sequence: the blockIdx.x-th with min_rows rows or more and a slot */
    int64_t k = blockIdx.x;
    kern_seq sq = {};
    int found = 0;
    for (int i = 0; i < n_seq && !found; i++) {
        sq = seqs[i];
        if (sq.n_rows < min_rows || sq.slot < 0) continue;
        if (k-- == 0) found = 1;
    }
    if (!found) return; /* (the grid is exact: not reached) */
    /* head h, its state rows (head columns) p0 .. p0 + pb - 1: rows evolve apart, only M = C B^T
       is common to them (each block of a head computes it) */
    const int64_t h = blockIdx.y, g = h / (H / G), p0 = (int64_t)blockIdx.z * pb, np = pb / 16, nn = N / 16;
    const float Ah = A[h], Dh = Dv[h];
    float *Sg = state + (((int64_t)sq.slot * H + h) * P + p0) * N;
    for (int64_t i = tid; i < pb * N; i += nth) {
        const int64_t p = i / N, n = i % N;
        const float v = Sg[i];
        Hf[p * ldhf + n] = v;
        split3_bf16(v, &Hh[p * ldn + n], &Hm[p * ldn + n], &Hl[p * ldn + n]);
    }
    const int64_t n_chunks = (sq.n_rows + SSD_Q - 1) / SSD_Q;
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t t0 = c * SSD_Q, nv = sq.n_rows - t0 < SSD_Q ? sq.n_rows - t0 : SSD_Q, row0 = sq.row0 + t0;
        __syncthreads(); /* the state's writes (the previous chunk or the load); the reads of the chunk's tiles */
        for (int64_t i = tid; i < SSD_Q * pb; i += nth) {
            const int64_t t = i / pb, p = i % pb;
            Xb[t * ldp + p] = __float2bfloat16_rn(t < nv ? ld(x.p, (row0 + t) * x.ld + h * P + p0 + p, x.dt) : 0.f);
        }
        for (int64_t i = tid; i < SSD_Q * N; i += nth) {
            const int64_t t = i / N, n = i % N;
            Bb[t * ldn + n] = __float2bfloat16_rn(t < nv ? ld(B.p, (row0 + t) * B.ld + g * N + n, B.dt) : 0.f);
            Cb[t * ldn + n] = __float2bfloat16_rn(t < nv ? ld(C.p, (row0 + t) * C.ld + g * N + n, C.dt) : 0.f);
        }
        if (tid < SSD_Q) dts[tid] = tid < nv ? ld(dt.p, (row0 + tid) * dt.ld + h, dt.dt) : 0.f;
        __syncthreads();
        if (tid == 0) { /* the chunk-local cumsum, in order */
            float a = 0.f;
            for (int t = 0; t < SSD_Q; t++) lam[t] = a = __fadd_rn(a, __fmul_rn(dts[t], Ah));
        }
        __syncthreads();
        /* M = (C B^T) masked, decayed and times dt_s, split: a 16 x 16 tile per warp turn, zeros
           above the diagonal */
        const float lam_last = lam[SSD_Q - 1];
        for (int tile = w; tile < (SSD_Q / 16) * (SSD_Q / 16); tile += SSD_WARPS) {
            const int ti = tile / (SSD_Q / 16), tj = tile % (SSD_Q / 16);
            if (tj <= ti) {
                facc acc;
                wm::fill_fragment(acc, 0.f);
                for (int64_t kn = 0; kn < nn; kn++)
                    mma_parts<wm::row_major, wm::col_major>(acc, Cb + ti * 16 * ldn + kn * 16, ldn, 0,
                                                            Bb + tj * 16 * ldn + kn * 16, ldn, 0, 1);
                wm::store_matrix_sync(scr, acc, 16, wm::mem_row_major);
                __syncwarp();
            }
            const int t = ti * 16 + r;
            for (int i = 0; i < 8; i++) {
                const int s2 = tj * 16 + 8 * half + i;
                const float mv = s2 <= t ? scr[r * 16 + 8 * half + i] * expf(fminf(lam[t] - lam[s2], 0.f)) * dts[s2] : 0.f;
                split3_bf16(mv, &Mh[t * ldq + s2], &Mm[t * ldq + s2], &Ml[t * ldq + s2]);
            }
            __syncwarp(); /* (read before the next tile's store) */
        }
        /* W = e^(L_last - L_s) dt_s x_s, split */
        for (int64_t i = tid; i < SSD_Q * pb; i += nth) {
            const int64_t s2 = i / pb, p = i % pb;
            const float wv = expf(fminf(lam_last - lam[s2], 0.f)) * dts[s2] * __bfloat162float(Xb[s2 * ldp + p]);
            split3_bf16(wv, &Wh[s2 * ldp + p], &Wm[s2 * ldp + p], &Wl[s2 * ldp + p]);
        }
        __syncthreads();
        /* y: a 16 x 16 tile (rows ti, head columns pj) per warp turn */
        for (int64_t tile = w; tile < (SSD_Q / 16) * np; tile += SSD_WARPS) {
            const int64_t ti = tile / np, pj = tile % np;
            facc a1, a2;
            wm::fill_fragment(a1, 0.f);
            wm::fill_fragment(a2, 0.f);
            for (int64_t kk = 0; kk <= ti; kk++) /* M is zero above the diagonal */
                mma_parts<wm::row_major, wm::row_major>(a1, Mh + ti * 16 * ldq + kk * 16, ldq, Ly.part_m, Xb + kk * 16 * ldp + pj * 16,
                                                        ldp, 0, 3);
            for (int64_t kn = 0; kn < nn; kn++) /* C H^T: H^T (n, p) is H[p][n], column-major */
                mma_parts<wm::row_major, wm::col_major>(a2, Cb + ti * 16 * ldn + kn * 16, ldn, 0, Hh + pj * 16 * ldn + kn * 16,
                                                        ldn, Ly.part_h, 3);
            wm::store_matrix_sync(scr, a1, 16, wm::mem_row_major);
            wm::store_matrix_sync(scr + 256, a2, 16, wm::mem_row_major);
            __syncwarp();
            const int64_t t = ti * 16 + r;
            if (t < nv) {
                const float e = expf(lam[t]);
                for (int i = 0; i < 8; i++) {
                    const int64_t p = pj * 16 + 8 * half + i;
                    const float v = scr[r * 16 + 8 * half + i] + e * scr[256 + r * 16 + 8 * half + i] +
                                    Dh * __bfloat162float(Xb[t * ldp + p]);
                    st(y.p, (row0 + t) * y.ld + h * P + p0 + p, v, y.dt);
                }
            }
            __syncwarp(); /* (read before the next tile's stores) */
        }
        __syncthreads();
        /* H = e^(L_last) H + W^T B: a 16 x 16 tile (rows pi, state columns nj) per warp turn */
        const float dl = expf(lam_last);
        for (int64_t tile = w; tile < np * nn; tile += SSD_WARPS) {
            const int64_t pi = tile / nn, nj = tile % nn;
            facc acc;
            wm::fill_fragment(acc, 0.f);
            for (int ks = 0; ks < SSD_Q / 16; ks++) /* W^T (p, s) is W[s][p], column-major */
                mma_parts<wm::col_major, wm::row_major>(acc, Wh + ks * 16 * ldp + pi * 16, ldp, Ly.part_w, Bb + ks * 16 * ldn + nj * 16,
                                                        ldn, 0, 3);
            wm::store_matrix_sync(scr, acc, 16, wm::mem_row_major);
            __syncwarp();
            const int64_t p = pi * 16 + r;
            for (int i = 0; i < 8; i++) {
                const int64_t n = nj * 16 + 8 * half + i;
                const float v = dl * Hf[p * ldhf + n] + scr[r * 16 + 8 * half + i];
                Hf[p * ldhf + n] = v;
                split3_bf16(v, &Hh[p * ldn + n], &Hm[p * ldn + n], &Hl[p * ldn + n]);
            }
            __syncwarp();
        }
    }
    __syncthreads();
    for (int64_t i = tid; i < pb * N; i += nth) Sg[i] = Hf[(i / N) * ldhf + i % N];
}


// The chunked SSD form again, with the chunks apart (kernels.md §1.4, design B: mamba_ssm's
// chunk_state / state_passing / chunk_scan order): k_ssm_chunked's block walks its head's chunks in
// order, so a 3,400-row prefill keeps 128 heads x 5 slices of blocks busy for 54 chunks in turn
// (Nsight Compute: 21 % of the SM, waiting on each chunk's loads). Here three kernels take a window
// of at most `nw` chunks of the step's long sequences (numbered f0, f0 + 1, ... over the sequences
// in order, ssd_find_chunk) at once:
//   1. k_ssd_chunk_state, block (chunk, head): S_c = sum_s e^(L_last - L_s) dt_s x_s B_s^T (P x N,
//      the W^T B of k_ssm_chunked, W split in three bf16 parts), to `states` [nw][H][P][N] f32, and
//      e^(L_last) to `decay` [nw][H];
//   2. k_ssd_state_pass, a thread per (sequence, head, p, n): H = state; for each chunk in order:
//      states[c] = H (the state the chunk starts from); H = decay_c H + S_c; state = H;
//   3. k_ssd_chunk_scan, block (chunk, head, slice of pb head columns): y_t = M X + e^(L_t) C_t H^T
//      + D x_t with H = states[c] in three bf16 parts, one part in shared memory at a time.
// Every quantity is k_ssm_chunked's, computed the same way (the same cumsum, the same split
// products, H = decay H + S_c as its state update), so the outputs are its outputs up to the order of
// the tensor cores' sums (C H^T's parts outer here, inner there). The state of a window's last chunk
// goes back to the slot, where the next window's pass starts. Memory: nw H P N 4 bytes of op
// scratch (the 12B model: 5.2 MB a chunk; c_ssm_scan's window keeps it under SSD_WINDOW_BYTES).
constexpr int SSD_TPW = 4;                                   /* y tiles a warp holds in k_ssd_chunk_scan */
constexpr size_t SSD_WINDOW_BYTES = (size_t)256 << 20;       /* op scratch for the chunk states */
/* The f-th chunk (0-based over the chunked sequences: min_rows rows or more and a slot, in the
   table's order): its sequence and its index there; 0 past the last. */
__device__ inline int ssd_find_chunk(const kern_seq *seqs, int n_seq, int64_t min_rows, int64_t f, kern_seq *sq,
                                     int64_t *c) {
    for (int i = 0; i < n_seq; i++) {
        const kern_seq s = seqs[i];
        if (s.n_rows < min_rows || s.slot < 0) continue;
        const int64_t nc = (s.n_rows + SSD_Q - 1) / SSD_Q;
        if (f < nc) {
            *sq = s;
            *c = f;
            return 1;
        }
        f -= nc;
    }
    return 0;
}
/* A chunk's rows into shared memory: dt (0 past the sequence's end) and the chunk-local cumsum
   L_t = a_0 + ... + a_t, a_t = dt_t A_h, in order (k_ssm_chunked's). Ends with a barrier. */
__device__ inline void ssd_chunk_dt(float *dts, float *lam, V2 dt, int64_t row0, int64_t nv, int64_t h, float Ah) {
    if (threadIdx.x < SSD_Q) dts[threadIdx.x] = threadIdx.x < nv ? ld(dt.p, (row0 + threadIdx.x) * dt.ld + h, dt.dt) : 0.f;
    __syncthreads();
    if (threadIdx.x == 0) {
        float a = 0.f;
        for (int t = 0; t < SSD_Q; t++) lam[t] = a = __fadd_rn(a, __fmul_rn(dts[t], Ah));
    }
    __syncthreads();
}
struct ssd_state_layout {
    size_t wh, bb, dtl, total;
    int ldp, ldn;
    size_t part_w;
};
__host__ __device__ inline ssd_state_layout ssd_state_plan(int64_t P, int64_t N) {
    ssd_state_layout l;
    size_t o = 0;
    l.ldp = (int)P + 8;
    l.ldn = (int)N + 8;
    l.wh = ssd_take(&o, (size_t)3 * SSD_Q * l.ldp * 2);
    l.bb = ssd_take(&o, (size_t)SSD_Q * l.ldn * 2);
    l.dtl = ssd_take(&o, (size_t)2 * SSD_Q * 4);
    l.total = o;
    l.part_w = (size_t)SSD_Q * l.ldp;
    return l;
}
__global__ void __launch_bounds__(SSD_WARPS * WARP_SIZE)
    k_ssd_chunk_state(float *states, float *decay, V2 x, V2 dt, const float *A, V2 B, int64_t H, int64_t P, int64_t N,
                      int64_t G, const kern_seq *seqs, int n_seq, int64_t min_rows, int64_t f0) {
    namespace wm = nvcuda::wmma;
    extern __shared__ __align__(128) float ssd_smem[];
    char *sm = (char *)ssd_smem;
    const ssd_state_layout Ly = ssd_state_plan(P, N);
    __nv_bfloat16 *Wh = (__nv_bfloat16 *)(sm + Ly.wh), *Bb = (__nv_bfloat16 *)(sm + Ly.bb);
    float *dts = (float *)(sm + Ly.dtl), *lam = dts + SSD_Q;
    const int tid = threadIdx.x, nth = blockDim.x, w = tid / WARP_SIZE;
    const int ldp = Ly.ldp, ldn = Ly.ldn;
    kern_seq sq;
    int64_t c;
    if (!ssd_find_chunk(seqs, n_seq, min_rows, f0 + blockIdx.x, &sq, &c)) return; /* (the grid is exact) */
    const int64_t h = blockIdx.y, g = h / (H / G), t0 = c * SSD_Q, nv = sq.n_rows - t0 < SSD_Q ? sq.n_rows - t0 : SSD_Q,
                  row0 = sq.row0 + t0;
    for (int64_t i = tid; i < SSD_Q * N; i += nth) {
        const int64_t t = i / N, n = i % N;
        Bb[t * ldn + n] = __float2bfloat16_rn(t < nv ? ld(B.p, (row0 + t) * B.ld + g * N + n, B.dt) : 0.f);
    }
    ssd_chunk_dt(dts, lam, dt, row0, nv, h, A[h]);
    const float lam_last = lam[SSD_Q - 1];
    /* W = e^(L_last - L_s) dt_s x_s (x rounded to bf16, as k_ssm_chunked's Xb), split */
    for (int64_t i = tid; i < SSD_Q * P; i += nth) {
        const int64_t s2 = i / P, p = i % P;
        const float xv = __bfloat162float(__float2bfloat16_rn(s2 < nv ? ld(x.p, (row0 + s2) * x.ld + h * P + p, x.dt) : 0.f));
        const float wv = expf(fminf(lam_last - lam[s2], 0.f)) * dts[s2] * xv;
        split3_bf16(wv, &Wh[s2 * ldp + p], &Wh[Ly.part_w + s2 * ldp + p], &Wh[2 * Ly.part_w + s2 * ldp + p]);
    }
    if (tid == 0) decay[blockIdx.x * H + h] = expf(lam_last);
    __syncthreads();
    /* S = W^T B: a 16 x 16 tile (rows pi, state columns nj) per warp turn, straight to the states */
    float *S = states + ((int64_t)blockIdx.x * H + h) * P * N;
    const int64_t np = P / 16, nn = N / 16;
    for (int64_t tile = w; tile < np * nn; tile += SSD_WARPS) {
        const int64_t pi = tile / nn, nj = tile % nn;
        wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
        wm::fill_fragment(acc, 0.f);
        for (int ks = 0; ks < SSD_Q / 16; ks++) /* W^T (p, s) is W[s][p], column-major */
            mma_parts<wm::col_major, wm::row_major>(acc, Wh + ks * 16 * ldp + pi * 16, ldp, Ly.part_w,
                                                    Bb + ks * 16 * ldn + nj * 16, ldn, 0, 3);
        wm::store_matrix_sync(S + pi * 16 * N + nj * 16, acc, (unsigned)N, wm::mem_row_major);
    }
}
__global__ void k_ssd_state_pass(float *state, float *states, const float *decay, int64_t H, int64_t P, int64_t N,
                                 const kern_seq *seqs, int n_seq, int64_t min_rows, int64_t f0, int64_t nw, int64_t n_long) {
    const int64_t HPN = H * P * N, total = n_long * HPN;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t j = i / HPN, e = i % HPN, h = e / (P * N);
        /* the j-th chunked sequence and the number of its first chunk */
        int64_t fs = 0, k = j;
        kern_seq sq = {};
        for (int q = 0; q < n_seq; q++) {
            const kern_seq s = seqs[q];
            if (s.n_rows < min_rows || s.slot < 0) continue;
            if (k-- == 0) {
                sq = s;
                break;
            }
            fs += (s.n_rows + SSD_Q - 1) / SSD_Q;
        }
        const int64_t fe = fs + (sq.n_rows + SSD_Q - 1) / SSD_Q, a = fs > f0 ? fs : f0, b = fe < f0 + nw ? fe : f0 + nw;
        if (a >= b) continue; /* none of its chunks in this window */
        float *Sg = state + (int64_t)sq.slot * HPN + e, H0 = *Sg;
        for (int64_t f = a; f < b; f++) {
            float *Sc = states + (f - f0) * HPN + e;
            const float s = *Sc;
            *Sc = H0;
            H0 = decay[(f - f0) * H + h] * H0 + s; /* (k_ssm_chunked's dl * Hf + scr) */
        }
        *Sg = H0;
    }
}
struct ssd_scan_layout {
    size_t xb, bb, cb, mh, hp, scr, dtl, total;
    int ldp, ldn, ldq;
    size_t part_m;
};
__host__ __device__ inline ssd_scan_layout ssd_scan_plan(int64_t pb, int64_t N) {
    ssd_scan_layout l;
    size_t o = 0;
    l.ldp = (int)pb + 8;
    l.ldn = (int)N + 8;
    l.ldq = SSD_Q + 8;
    l.xb = ssd_take(&o, (size_t)SSD_Q * l.ldp * 2);
    l.bb = ssd_take(&o, (size_t)SSD_Q * l.ldn * 2);
    l.cb = ssd_take(&o, (size_t)SSD_Q * l.ldn * 2);
    l.mh = ssd_take(&o, (size_t)3 * SSD_Q * l.ldq * 2);
    l.hp = ssd_take(&o, (size_t)pb * l.ldn * 2);
    l.scr = ssd_take(&o, (size_t)SSD_WARPS * 512 * 4);
    l.dtl = ssd_take(&o, (size_t)2 * SSD_Q * 4);
    l.total = o;
    l.part_m = (size_t)SSD_Q * l.ldq;
    return l;
}
__global__ void __launch_bounds__(SSD_WARPS * WARP_SIZE, 2) /* (two blocks an SM: their shared memory fits Hopper's) */
    k_ssd_chunk_scan(V2 y, V2 x, V2 dt, const float *A, V2 B, V2 C, const float *Dv, const float *states, int64_t H,
                     int64_t P, int64_t N, int64_t G, const kern_seq *seqs, int n_seq, int64_t min_rows, int64_t f0,
                     int64_t pb) {
    namespace wm = nvcuda::wmma;
    typedef wm::fragment<wm::accumulator, 16, 16, 16, float> facc;
    extern __shared__ __align__(128) float ssd_smem[];
    char *sm = (char *)ssd_smem;
    const ssd_scan_layout Ly = ssd_scan_plan(pb, N);
    __nv_bfloat16 *Xb = (__nv_bfloat16 *)(sm + Ly.xb), *Bb = (__nv_bfloat16 *)(sm + Ly.bb),
                  *Cb = (__nv_bfloat16 *)(sm + Ly.cb), *Mh = (__nv_bfloat16 *)(sm + Ly.mh), *Hp = (__nv_bfloat16 *)(sm + Ly.hp);
    float *dts = (float *)(sm + Ly.dtl), *lam = dts + SSD_Q;
    const int tid = threadIdx.x, nth = blockDim.x, lane = tid % WARP_SIZE, w = tid / WARP_SIZE, r = lane >> 1,
              half = lane & 1;
    float *scr = (float *)(sm + Ly.scr) + w * 512;
    const int ldn = Ly.ldn, ldp = Ly.ldp, ldq = Ly.ldq;
    kern_seq sq;
    int64_t c;
    if (!ssd_find_chunk(seqs, n_seq, min_rows, f0 + blockIdx.x, &sq, &c)) return; /* (the grid is exact) */
    const int64_t h = blockIdx.y, g = h / (H / G), p0 = (int64_t)blockIdx.z * pb, np = pb / 16, nn = N / 16,
                  t0 = c * SSD_Q, nv = sq.n_rows - t0 < SSD_Q ? sq.n_rows - t0 : SSD_Q, row0 = sq.row0 + t0;
    const float Dh = Dv[h];
    for (int64_t i = tid; i < SSD_Q * pb; i += nth) {
        const int64_t t = i / pb, p = i % pb;
        Xb[t * ldp + p] = __float2bfloat16_rn(t < nv ? ld(x.p, (row0 + t) * x.ld + h * P + p0 + p, x.dt) : 0.f);
    }
    for (int64_t i = tid; i < SSD_Q * N; i += nth) {
        const int64_t t = i / N, n = i % N;
        Bb[t * ldn + n] = __float2bfloat16_rn(t < nv ? ld(B.p, (row0 + t) * B.ld + g * N + n, B.dt) : 0.f);
        Cb[t * ldn + n] = __float2bfloat16_rn(t < nv ? ld(C.p, (row0 + t) * C.ld + g * N + n, C.dt) : 0.f);
    }
    ssd_chunk_dt(dts, lam, dt, row0, nv, h, A[h]);
    /* M = (C B^T) masked, decayed and times dt_s, split (k_ssm_chunked's) */
    for (int tile = w; tile < (SSD_Q / 16) * (SSD_Q / 16); tile += SSD_WARPS) {
        const int ti = tile / (SSD_Q / 16), tj = tile % (SSD_Q / 16);
        if (tj <= ti) {
            facc acc;
            wm::fill_fragment(acc, 0.f);
            for (int64_t kn = 0; kn < nn; kn++)
                mma_parts<wm::row_major, wm::col_major>(acc, Cb + ti * 16 * ldn + kn * 16, ldn, 0,
                                                        Bb + tj * 16 * ldn + kn * 16, ldn, 0, 1);
            wm::store_matrix_sync(scr, acc, 16, wm::mem_row_major);
            __syncwarp();
        }
        const int t = ti * 16 + r;
        for (int i = 0; i < 8; i++) {
            const int s2 = tj * 16 + 8 * half + i;
            const float mv = s2 <= t ? scr[r * 16 + 8 * half + i] * expf(fminf(lam[t] - lam[s2], 0.f)) * dts[s2] : 0.f;
            split3_bf16(mv, &Mh[t * ldq + s2], &Mh[Ly.part_m + t * ldq + s2], &Mh[2 * Ly.part_m + t * ldq + s2]);
        }
        __syncwarp(); /* (read before the next tile's store) */
    }
    /* C H^T with H the state the chunk starts from: its bf16 parts one at a time in Hp; this warp's
       y tiles (rows ti, head columns pj) w, w + SSD_WARPS, ... accumulate across the parts */
    const float *Hs = states + ((int64_t)blockIdx.x * H + h) * P * N + p0 * N;
    const int64_t n_tiles = (SSD_Q / 16) * np;
    facc a2[SSD_TPW];
#pragma unroll
    for (int j = 0; j < SSD_TPW; j++) wm::fill_fragment(a2[j], 0.f);
    for (int part = 0; part < 3; part++) {
        __syncthreads(); /* the previous part's reads (and, at the first, M's and the tiles' writes) */
        for (int64_t i = tid; i < pb * N; i += nth) {
            const int64_t p = i / N, n = i % N;
            __nv_bfloat16 hh, hm, hl;
            split3_bf16(Hs[p * N + n], &hh, &hm, &hl);
            Hp[p * ldn + n] = part == 0 ? hh : part == 1 ? hm : hl;
        }
        __syncthreads();
#pragma unroll
        for (int j = 0; j < SSD_TPW; j++) {
            const int64_t tile = w + (int64_t)j * SSD_WARPS;
            if (tile >= n_tiles) break;
            const int64_t ti = tile / np, pj = tile % np;
            for (int64_t kn = 0; kn < nn; kn++) /* H^T (n, p) is H[p][n], column-major */
                mma_parts<wm::row_major, wm::col_major>(a2[j], Cb + ti * 16 * ldn + kn * 16, ldn, 0,
                                                        Hp + pj * 16 * ldn + kn * 16, ldn, 0, 1);
        }
    }
#pragma unroll
    for (int j = 0; j < SSD_TPW; j++) {
        const int64_t tile = w + (int64_t)j * SSD_WARPS;
        if (tile >= n_tiles) break;
        const int64_t ti = tile / np, pj = tile % np;
        facc a1;
        wm::fill_fragment(a1, 0.f);
        for (int64_t kk = 0; kk <= ti; kk++) /* M is zero above the diagonal */
            mma_parts<wm::row_major, wm::row_major>(a1, Mh + ti * 16 * ldq + kk * 16, ldq, Ly.part_m,
                                                    Xb + kk * 16 * ldp + pj * 16, ldp, 0, 3);
        wm::store_matrix_sync(scr, a1, 16, wm::mem_row_major);
        wm::store_matrix_sync(scr + 256, a2[j], 16, wm::mem_row_major);
        __syncwarp();
        const int64_t t = ti * 16 + r;
        if (t < nv) {
            const float e = expf(lam[t]);
            for (int i = 0; i < 8; i++) {
                const int64_t p = pj * 16 + 8 * half + i;
                const float v = scr[r * 16 + 8 * half + i] + e * scr[256 + r * 16 + 8 * half + i] +
                                Dh * __bfloat162float(Xb[t * ldp + p]);
                st(y.p, (row0 + t) * y.ld + h * P + p0 + p, v, y.dt);
            }
        }
        __syncwarp(); /* (read before the next tile's stores) */
    }
}

__global__ void k_kv_write(void *kc, void *vc, int cdt, int64_t L, V2 k, V2 v, const kern_seq *seqs, int n_seq,
                           int64_t max_rows) {
    pdl_enter();
    const int64_t KD = k.cols, i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= (int64_t)n_seq * max_rows * KD) return;
    const kern_seq s = seqs[i / (max_rows * KD)];
    const int64_t t = (i / KD) % max_rows, d = i % KD;
    if (t >= s.n_rows || s.slot < 0) return;
    const int64_t dst = ((int64_t)s.slot * L + s.pos0 + t) * KD + d;
    st(kc, dst, ld(k.p, (s.row0 + t) * k.ld + d, k.dt), cdt);
    st(vc, dst, ld(v.p, (s.row0 + t) * v.ld + d, v.dt), cdt);
}

constexpr int MAX_D = 128;                   // largest head dim (the LM's is 128, the ViT's 80)
constexpr int ATT_WARPS = 4;                 // warps of an attention block
constexpr int ATT_DPL = MAX_D / WARP_SIZE;   // head-dim elements per lane
constexpr int ATT_SPLITS = 16;               // key splits for steps of few rows (decode: flash-decoding)
constexpr int64_t ATT_SPLIT_MAX_ROWS = 64;   // steps of more rows run one split per (row, head)

// A query row's head into registers, lane l holding elements l, l + 32, ... (0 past D), times scale.
__device__ __forceinline__ void load_q(float (&qv)[ATT_DPL], const void *p, int64_t off, int64_t D, int dt, float scale) {
    const int lane = threadIdx.x % WARP_SIZE;
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) {
        const int64_t d = lane + WARP_SIZE * i;
        qv[i] = d < D ? ld(p, off + d, dt) * scale : 0.f;
    }
}

// One block of ATT_WARPS warps per (query row, head, key split) over keys [k0, k1): lane l holds
// elements l, l + 32, ... of q (scaled) and of the accumulator (registers, indices fixed at
// compile time); warp w takes keys k0 + w, k0 + w + ATT_WARPS, ...: the score is a warp sum
// (every lane active: the loop bound is the warp's), then an online softmax (running max m,
// sum l, acc rescaled by exp(m_old - m_new)); the warps merge through shared memory. K/V element
// d of key j is at base + j * kld + d. Output: part == NULL: o = acc / l rounded to odt; else the
// split's (m, l, acc[0..D)) to part, combined by k_attention_combine.
__device__ void attend_block(const float (&q)[ATT_DPL], int64_t D, const void *kbase, const void *vbase, int kdt,
                             int64_t kld, int64_t k0, int64_t k1, void *o_out, int odt, float *part) {
    __shared__ float sm[ATT_WARPS], sl[ATT_WARPS], sacc[ATT_WARPS][MAX_D];
    const int lane = threadIdx.x % WARP_SIZE, w = threadIdx.x / WARP_SIZE;
    float m = -INFINITY, l = 0.f, acc[ATT_DPL];
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) acc[i] = 0.f;
    for (int64_t j = k0 + w; j < k1; j += ATT_WARPS) {
        float sc = 0.f;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            const int64_t d = lane + WARP_SIZE * i;
            if (d < D) sc += q[i] * ld(kbase, j * kld + d, kdt);
        }
        sc = warp_reduce_sum(sc);
        const float mn = fmaxf(m, sc), corr = expf(m - mn), e = expf(sc - mn);
        l = l * corr + e;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            const int64_t d = lane + WARP_SIZE * i;
            if (d < D) acc[i] = acc[i] * corr + e * ld(vbase, j * kld + d, kdt);
        }
        m = mn;
    }
    if (lane == 0) {
        sm[w] = m;
        sl[w] = l;
    }
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) {
        const int64_t d = lane + WARP_SIZE * i;
        if (d < D) sacc[w][d] = acc[i];
    }
    __syncthreads();
    if (w != 0) return;
    float M = -INFINITY;
    for (int v = 0; v < ATT_WARPS; v++) M = fmaxf(M, sm[v]);
    float L = 0.f, A[ATT_DPL];
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) A[i] = 0.f;
    for (int v = 0; v < ATT_WARPS; v++) {
        const float f = sm[v] == -INFINITY ? 0.f : expf(sm[v] - M); // a warp without keys adds nothing
        L += sl[v] * f;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            const int64_t d = lane + WARP_SIZE * i;
            if (d < D) A[i] += sacc[v][d] * f;
        }
    }
    if (part) {
        if (lane == 0) {
            part[0] = M;
            part[1] = L;
        }
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            const int64_t d = lane + WARP_SIZE * i;
            if (d < D) part[2 + d] = A[i];
        }
        return;
    }
#pragma unroll
    for (int i = 0; i < ATT_DPL; i++) {
        const int64_t d = lane + WARP_SIZE * i;
        if (d < D) st(o_out, d, L != 0.f ? A[i] / L : 0.f /* (no keys: 0; a NaN stays NaN) */, odt);
    }
}

// The LM's causal GQA attention over the KV cache: block (row r, head hh, split s) of the step's
// rows; row r of sequence row_seq[r] attends to keys [0, pos0 + t] of its slot, split s to the
// s-th of n_split equal pieces of them (lengths read from the device tables, so a graph serves
// every step of its shape). Rows of no sequence or of a padding sequence (slot < 0) give zeros.
__global__ void k_attention_causal(V2 o, V2 q, const void *kc, const void *vc, int cdt, int64_t L, int64_t NH, int64_t NKV,
                                   const kern_seq *seqs, const int32_t *row_seq, int64_t T, int n_split, float *part,
                                   int64_t flash_rows) {
    pdl_enter();
    const int64_t b = blockIdx.x, r = b / (NH * n_split), hh = (b / n_split) % NH;
    const int s = (int)(b % n_split);
    const int64_t D = q.cols / NH, KD = NKV * D, kvh = hh / (NH / NKV);
    const int lane = threadIdx.x % WARP_SIZE;
    char *orow = (char *)o.p + (size_t)(r * o.ld + hh * D) * dsize(o.dt);
    float *pp = part ? part + ((size_t)(r * NH + hh) * n_split + s) * (size_t)(D + 2) : NULL;
    if (r >= T) return;
    if (row_seq[r] < 0 || seqs[row_seq[r]].slot < 0) { /* no keys: zeros (a split writes an empty part) */
        if (pp) {
            if (threadIdx.x == 0) pp[0] = -INFINITY, pp[1] = 0.f;
        } else if (threadIdx.x < WARP_SIZE) {
            for (int64_t d = lane; d < D; d += WARP_SIZE) st(orow, d, 0.f, o.dt);
        }
        return;
    }
    const kern_seq sq = seqs[row_seq[r]];
    if (flash_rows > 0 && sq.n_rows >= flash_rows) return; /* k_attention_flash's row */
    const int64_t t = r - sq.row0, n_keys = sq.pos0 + t + 1;
    const int64_t chunk = (n_keys + n_split - 1) / n_split, k0 = s * chunk < n_keys ? s * chunk : n_keys,
                  k1 = k0 + chunk < n_keys ? k0 + chunk : n_keys;
    float qv[ATT_DPL];
    load_q(qv, q.p, r * q.ld + hh * D, D, q.dt, 1.0f / sqrtf((float)D));
    const int64_t base = ((int64_t)sq.slot * L) * KD + kvh * D;
    const size_t es = dsize(cdt);
    attend_block(qv, D, (const char *)kc + base * es, (const char *)vc + base * es, cdt, KD, k0, k1, orow, o.dt, pp);
}

// The splits of a (row, head) merged: o = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M). Rows
// of sequences k_attention_flash takes (flash_rows > 0) are its, not this step's splits'.
__global__ void k_attention_combine(V2 o, const float *part, int64_t NH, int64_t D, int n_split, int64_t T,
                                    const kern_seq *seqs, const int32_t *row_seq, int64_t flash_rows) {
    pdl_enter();
    const int64_t b = blockIdx.x, r = b / NH, hh = b % NH;
    if (r >= T) return;
    if (flash_rows > 0 && row_seq[r] >= 0 && seqs[row_seq[r]].n_rows >= flash_rows) return;
    const float *pp = part + (size_t)b * n_split * (size_t)(D + 2);
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, pp[(size_t)s * (D + 2)]);
    float L = 0.f;
    for (int s = 0; s < n_split; s++) {
        const float m = pp[(size_t)s * (D + 2)];
        L += m == -INFINITY ? 0.f : pp[(size_t)s * (D + 2) + 1] * expf(m - M);
    }
    char *orow = (char *)o.p + (size_t)(r * o.ld + hh * D) * dsize(o.dt);
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
        float a = 0.f;
        for (int s = 0; s < n_split; s++) {
            const float m = pp[(size_t)s * (D + 2)];
            if (m != -INFINITY) a += pp[(size_t)s * (D + 2) + 2 + d] * expf(m - M);
        }
        st(orow, d, L != 0.f ? a / L : 0.f, o.dt);
    }
}

// The LM's causal attention for the sequences of a step with many rows (prefill chunks),
// FlashAttention-2's loop (kernels.md §2.2) on tensor cores through the WMMA API: a block takes
// FA_BR query rows of one sequence and one head (warp w rows 16w .. 16w + 15) and walks the key
// tiles of FA_BC keys that any of its rows sees, K and V tiles staged in shared memory by the
// whole block. Per tile and warp: S = Q K^T (16 x FA_BC, f32 accumulators) to shared memory,
// then two lanes per row take the online softmax in f32 (scale after the dot, as the CPU twin;
// running max m, sum l of the unrounded exps, O rescaled by exp(m_old - m_new)), and O += P V.
//
// Numerics: the cache is bf16, so K and V are exact tensor-core operands. q (f32 or bf16) and P
// (f32) are split into bf16 hi + lo (lo = bf16(x - hi)), each product done twice, which leaves
// less than 2^-16 |x| (split_bf16): the result is an f32 computation to about 1e-5 relative (the
// sums in another order, the tensor cores' own f32 accumulation), not a bf16 one (no rounding of
// P that the CPU twin does not do: test_ops holds it to TOL_F32 and one bf16 ulp; with P in bf16
// alone it fails). A bf16 q has lo = 0 and skips its second product.
//
// O lives in accumulator fragments (no trip through shared memory per tile); each tile's P V is
// summed from zero and added as O = O corr + P V, element by element in f32 (fa_pv with factors:
// the arithmetic of the form before, O in registers), each element's factor its row's, the row
// read off a fragment of row numbers (fa_rows_of: the accumulator's layout is unspecified). Rows of sequences with fewer than flash_rows rows are
// left to k_attention_causal; block x enumerates the tiles of the others in sequence order.
// Requires D % 16 == 0, D <= MAX_D, a bf16 cache.
constexpr int FA_BR = 64, FA_BC = 64, FA_WARPS = FA_BR / 16;
constexpr int FA_LDB = MAX_D + 8; // bf16 row stride of the Q, K, V tiles (16-byte multiple, staggers banks)
constexpr int FA_LDS = FA_BC + 4; // f32 row stride of a warp's score tile
constexpr int FA_LDP = FA_BC + 8; // bf16 row stride of a warp's P tiles
constexpr int64_t FA_MIN_ROWS = 16;
constexpr size_t FA_Q_BYTES = (size_t)FA_BR * FA_LDB * 2, FA_KV_BYTES = (size_t)FA_BC * FA_LDB * 2,
                 FA_S_BYTES = (size_t)FA_WARPS * 16 * FA_LDS * 4, FA_P_BYTES = (size_t)FA_WARPS * 16 * FA_LDP * 2,
                 FA_O_BYTES = (size_t)FA_WARPS * 16 * 16 * 4;
constexpr size_t FA_SMEM = 2 * FA_Q_BYTES + 2 * FA_KV_BYTES + FA_S_BYTES + 2 * FA_P_BYTES + FA_O_BYTES;
static_assert(FA_Q_BYTES % 128 == 0 && FA_KV_BYTES % 128 == 0 && FA_S_BYTES % 128 == 0 && FA_P_BYTES % 128 == 0,
              "shared regions keep the 256-bit alignment WMMA needs");

// The two flash kernels' tile steps (warp level; Ks / Vs: the block's key tile, FA_LDB stride).
// S (16 x FA_BC, row stride FA_LDS) = Q K^T for the warp's 16 query rows at q (parts of Q q_step
// apart) over head dims of nd * 16.
__device__ __forceinline__ void fa_scores(float *S, const __nv_bfloat16 *q, size_t q_step, int parts,
                                          const __nv_bfloat16 *Ks, int64_t nd) {
    namespace wm = nvcuda::wmma;
    for (int jn = 0; jn < FA_BC / 16; jn++) {
        wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
        wm::fill_fragment(acc, 0.f);
        for (int64_t kd = 0; kd < nd; kd++)
            mma_parts<wm::row_major, wm::col_major>(acc, q + kd * 16, FA_LDB, q_step, Ks + jn * 16 * FA_LDB + kd * 16, FA_LDB,
                                                    0, parts);
        wm::store_matrix_sync(S + jn * 16, acc, FA_LDS, wm::mem_row_major);
    }
    __syncwarp();
}
// acc[sl] += P V's columns 16 sl .. 16 sl + 15 for the warp's 16 rows, sl < nd: P (16 x FA_BC
// bf16, stride FA_LDP) in PARTS parts p_step apart (their products summed in order), held as
// fragments across the slabs; V's tile at Vs, row stride LDV. With cf (the factor of each
// fragment element, as rows_of maps them): acc = acc * cf + (this tile's P V, summed from zero),
// each element rounded to nearest in f32, so the tensor cores' adder (which truncates: Fasi et
// al. 2021; its error has one sign) carries a sum over one tile's products only, not over a
// whole sequence; without, acc is their accumulator across tiles (its one-sided error grows with
// the keys summed: fine for the ViT's 1,032, not for a long prefill).
typedef nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> fa_acc;
template <int PARTS, int NS, int LDV>
__device__ __forceinline__ void fa_pv(fa_acc (&acc)[NS], const __nv_bfloat16 *P, size_t p_step, const __nv_bfloat16 *Vs,
                                      int64_t nd, const float *cf = nullptr) {
    namespace wm = nvcuda::wmma;
    wm::fragment<wm::matrix_a, 16, 16, 16, __nv_bfloat16, wm::row_major> pa[PARTS][FA_BC / 16];
#pragma unroll
    for (int k = 0; k < PARTS; k++)
#pragma unroll
        for (int kk = 0; kk < FA_BC / 16; kk++) wm::load_matrix_sync(pa[k][kk], P + k * p_step + kk * 16, FA_LDP);
#pragma unroll
    for (int sl = 0; sl < NS; sl++) {
        if (sl >= nd) break;
        fa_acc t;
        if (cf) wm::fill_fragment(t, 0.f);
        fa_acc &d = cf ? t : acc[sl];
#pragma unroll
        for (int kk = 0; kk < FA_BC / 16; kk++) {
            wm::fragment<wm::matrix_b, 16, 16, 16, __nv_bfloat16, wm::row_major> b;
            wm::load_matrix_sync(b, Vs + kk * 16 * LDV + sl * 16, LDV);
#pragma unroll
            for (int k = 0; k < PARTS; k++) wm::mma_sync(d, pa[k][kk], b, d);
        }
        if (cf)
#pragma unroll
            for (int i = 0; i < t.num_elements; i++) acc[sl].x[i] = __fadd_rn(__fmul_rn(acc[sl].x[i], cf[i]), t.x[i]);
    }
}
// The row (0 .. 15) of each element of an accumulator fragment, as a fragment: the guide leaves
// the layout unspecified, so it is read off a tile of row numbers (Ow: the warp's 16 x 16 f32
// scratch, free again on return).
__device__ __forceinline__ void fa_rows_of(fa_acc &rows, float *Ow, int lane) {
    for (int i = lane; i < 256; i += WARP_SIZE) Ow[i] = (float)(i / 16);
    __syncwarp();
    nvcuda::wmma::load_matrix_sync(rows, Ow, 16, nvcuda::wmma::mem_row_major);
    __syncwarp();
}

__global__ void __launch_bounds__(FA_WARPS * WARP_SIZE)
    k_attention_flash(V2 o, V2 q, const __nv_bfloat16 *kc, const __nv_bfloat16 *vc, int64_t L, int64_t NH, int64_t NKV,
                      const kern_seq *seqs, int n_seq, int64_t flash_rows) {
    namespace wm = nvcuda::wmma;
    extern __shared__ __align__(128) float fa_smem[];
    __nv_bfloat16 *Qh = (__nv_bfloat16 *)fa_smem, *Ql = Qh + FA_BR * FA_LDB, *Ks = Ql + FA_BR * FA_LDB,
                  *Vs = Ks + FA_BC * FA_LDB;
    const int tid = threadIdx.x, lane = tid % WARP_SIZE, w = tid / WARP_SIZE, r = lane >> 1, half = lane & 1;
    float *Sw = (float *)(Vs + FA_BC * FA_LDB) + w * 16 * FA_LDS;
    __nv_bfloat16 *Ph = (__nv_bfloat16 *)((char *)fa_smem + 2 * FA_Q_BYTES + 2 * FA_KV_BYTES + FA_S_BYTES) + w * 16 * FA_LDP;
    __nv_bfloat16 *Pl = Ph + FA_WARPS * 16 * FA_LDP;
    float *Ow = (float *)((char *)fa_smem + 2 * FA_Q_BYTES + 2 * FA_KV_BYTES + FA_S_BYTES + 2 * FA_P_BYTES) + w * 256;

    /* this block's (sequence, first row) */
    int64_t tile = blockIdx.x, t0 = -1;
    kern_seq sq = {};
    for (int i = 0; i < n_seq; i++) {
        sq = seqs[i];
        if (sq.n_rows < flash_rows) continue;
        const int64_t nt = (sq.n_rows + FA_BR - 1) / FA_BR;
        if (tile < nt) {
            t0 = tile * FA_BR;
            break;
        }
        tile -= nt;
    }
    if (t0 < 0) return; /* (the grid is exact: not reached) */
    const int64_t hh = blockIdx.y, D = q.cols / NH, KD = NKV * D, kvh = hh / (NH / NKV), nd = D / 16;
    const int64_t nr = sq.n_rows - t0 < FA_BR ? sq.n_rows - t0 : FA_BR; /* valid rows of the tile */
    const int64_t row = 16 * w + r;                                  /* this lane's row of the tile */
    if (sq.slot < 0) { /* a padding sequence: zeros */
        for (int64_t i = tid; i < nr * D; i += blockDim.x)
            st(o.p, (sq.row0 + t0 + i / D) * o.ld + hh * D + i % D, 0.f, o.dt);
        return;
    }
    const int lo_q = q.dt != DT_BF16; /* a bf16 q is exact in hi */
    for (int64_t i = tid; i < FA_BR * D; i += blockDim.x) {
        const int64_t rr = i / D, d = i % D;
        const float v = rr < nr ? ld(q.p, (sq.row0 + t0 + rr) * q.ld + hh * D + d, q.dt) : 0.f;
        split_bf16(v, &Qh[rr * FA_LDB + d], &Ql[rr * FA_LDB + d]);
    }
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t kmax = row < nr ? sq.pos0 + t0 + row : -1;                           /* last key of this lane's row */
    const int64_t wmax = sq.pos0 + t0 + (16 * w + 15 < nr - 1 ? 16 * w + 15 : nr - 1); /* of the warp's rows */
    const int64_t bmax = sq.pos0 + t0 + nr - 1;                                      /* of the block's */
    const int64_t n_kt = bmax / FA_BC + 1;
    const size_t cbase = (size_t)sq.slot * (size_t)L * (size_t)KD + (size_t)(kvh * D);
    float m = -INFINITY, l = 0.f;
    fa_acc O[MAX_D / 16], rows_of; /* O: the warp's 16 rows x D, in the tensor cores' accumulators */
#pragma unroll
    for (int sl = 0; sl < MAX_D / 16; sl++) wm::fill_fragment(O[sl], 0.f);
    fa_rows_of(rows_of, Ow, lane);

    for (int64_t kt = 0; kt < n_kt; kt++) {
        const int64_t k0 = kt * FA_BC;
        __syncthreads(); /* (the Q tile's writes; the last tile's reads of K and V) */
        const int64_t vec = D / 8; /* 16-byte pieces of a key's row */
        for (int64_t i = tid; i < FA_BC * vec; i += blockDim.x) {
            const int64_t j = i / vec, c = (i % vec) * 8;
            uint4 kv = make_uint4(0, 0, 0, 0), vv = kv;
            if (k0 + j <= bmax) {
                kv = *(const uint4 *)(kc + cbase + (size_t)(k0 + j) * KD + c);
                vv = *(const uint4 *)(vc + cbase + (size_t)(k0 + j) * KD + c);
            }
            *(uint4 *)(Ks + j * FA_LDB + c) = kv;
            *(uint4 *)(Vs + j * FA_LDB + c) = vv;
        }
        __syncthreads();
        if (k0 > wmax) continue; /* no key of this tile for the warp's rows (warp-uniform) */
        fa_scores(Sw, Qh + 16 * w * FA_LDB, (size_t)(Ql - Qh), lo_q ? 2 : 1, Ks, nd); /* S = Q K^T */
        /* the online softmax: lanes 2r and 2r + 1 take row r, columns 32 half .. 32 half + 31 */
        float s[FA_BC / 2], mx = -INFINITY;
#pragma unroll
        for (int c = 0; c < FA_BC / 2; c++) {
            const int64_t j = k0 + FA_BC / 2 * half + c;
            s[c] = j <= kmax ? Sw[r * FA_LDS + FA_BC / 2 * half + c] * scale : -INFINITY;
            mx = fmaxf(mx, s[c]);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        const float mn = fmaxf(m, mx);
        const float corr = mn == -INFINITY ? 1.f : expf(m - mn); /* (a row with no key yet keeps its zeros) */
        float ps = 0.f;
#pragma unroll
        for (int c = 0; c < FA_BC / 2; c++) {
            const float p = s[c] == -INFINITY ? 0.f : expf(s[c] - mn);
            ps += p;
            split_bf16(p, &Ph[r * FA_LDP + FA_BC / 2 * half + c], &Pl[r * FA_LDP + FA_BC / 2 * half + c]);
        }
        ps += __shfl_xor_sync(0xffffffffu, ps, 1);
        l = l * corr + ps;
        m = mn;
        if (half == 0) Ow[r] = corr; /* O's rows rescaled where they lie: each element by its row's corr */
        __syncwarp();
        float cf[rows_of.num_elements];
#pragma unroll
        for (int i = 0; i < rows_of.num_elements; i++) cf[i] = Ow[(int)rows_of.x[i]];
        fa_pv<2, MAX_D / 16, FA_LDB>(O, Ph, (size_t)(Pl - Ph), Vs, nd, cf); /* O = O corr + P V */
        __syncwarp(); /* (Ow and P read before the next tile writes them) */
    }
    const int64_t orow = sq.row0 + t0 + row;
#pragma unroll
    for (int sl = 0; sl < MAX_D / 16; sl++) {
        if (sl >= nd) break;
        wm::store_matrix_sync(Ow, O[sl], 16, wm::mem_row_major);
        __syncwarp();
        if (row < nr)
#pragma unroll
            for (int i = 0; i < 8; i++) st(o.p, orow * o.ld + hh * D + sl * 16 + 8 * half + i, Ow[r * 16 + 8 * half + i] / l, o.dt);
        __syncwarp(); /* (read before the next slab's store) */
    }
}

// ViT: rows of n_img images of Ti tokens, qkv rows q | k | v head-major; block (row, head)
__global__ void k_attention_full(V2 o, V2 qkv, int64_t Ti, int64_t H) {
    const int64_t W = o.cols, D = W / H, b = blockIdx.x, r = b / H, hh = b % H, img = r / Ti;
    if (r >= qkv.rows) return;
    float qv[ATT_DPL];
    load_q(qv, qkv.p, r * qkv.ld + hh * D, D, qkv.dt, 1.0f / sqrtf((float)D));
    const size_t es = dsize(qkv.dt);
    const char *kb = (const char *)qkv.p + (size_t)(img * Ti * qkv.ld + W + hh * D) * es;
    const char *vb = (const char *)qkv.p + (size_t)(img * Ti * qkv.ld + 2 * W + hh * D) * es;
    attend_block(qv, D, kb, vb, qkv.dt, qkv.ld, 0, Ti, (char *)o.p + (size_t)(r * o.ld + hh * D) * dsize(o.dt), o.dt, NULL);
}

// The BF16 ViT form (kernels/ops.h kern_attention_full; the CPU twin's attention_bf16 and
// kern_cpu_softmax_rows_bf16p, step for step): block (row, head), the row's scores
// s_j = (q . k_j) * scale (q unscaled) in shared memory, then keys in blocks of FA_KV_BLOCK: the
// block's max M_b = max(M, max s), the running sum l rescaled by exp(M - M_b) when the max moved,
// l += sum exp(s_j - M_b) (unrounded), p_j = bf16(exp(s_j - M_b)), acc = acc * exp(M - M_b) +
// sum p_j v_j (unfused, as the CPU), and o = bf16(acc * (1 / l)). Thread d < D owns output d.
constexpr int FA_KV_BLOCK = 512; /* torch's kvSplitSize on the CPU, the CPU twin's ATTN_KV_BLOCK */
__device__ float block_max(float v) {
    __shared__ float part[32];
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int w = threadIdx.x / WARP_SIZE, l = threadIdx.x % WARP_SIZE;
    __syncthreads();
    if (l == 0) part[w] = v;
    __syncthreads();
    v = threadIdx.x < blockDim.x / WARP_SIZE ? part[threadIdx.x] : -INFINITY;
    if (w == 0)
        for (int o = WARP_SIZE / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) part[0] = v;
    __syncthreads();
    return part[0];
}
__global__ void k_attention_full_bf16p(V2 o, V2 qkv, int64_t Ti, int64_t H) {
    extern __shared__ float sc[]; /* Ti scores, then the block's bf16 probabilities in place */
    const int64_t W = o.cols, D = W / H, b = blockIdx.x, r = b / H, hh = b % H, img = r / Ti, base = img * Ti;
    if (r >= qkv.rows) return; /* uniform over the block */
    const int lane = threadIdx.x % WARP_SIZE, w = threadIdx.x / WARP_SIZE, nw = blockDim.x / WARP_SIZE;
    const float scale = 1.0f / sqrtf((float)D);
    float qv[ATT_DPL];
    load_q(qv, qkv.p, r * qkv.ld + hh * D, D, qkv.dt, 1.0f); /* unscaled: the scale multiplies the score */
    for (int64_t j = w; j < Ti; j += nw) {
        float a = 0.f;
#pragma unroll
        for (int i = 0; i < ATT_DPL; i++) {
            const int64_t d = lane + WARP_SIZE * i;
            if (d < D) a += qv[i] * ld(qkv.p, (base + j) * qkv.ld + W + hh * D + d, qkv.dt);
        }
        a = warp_reduce_sum(a);
        if (lane == 0) sc[j] = __fmul_rn(a, scale);
    }
    __syncthreads();
    const int64_t d = threadIdx.x;
    float M = -INFINITY, l = 0.f, acc = 0.f;
    for (int64_t j0 = 0; j0 < Ti; j0 += FA_KV_BLOCK) {
        const int64_t n = Ti - j0 < FA_KV_BLOCK ? Ti - j0 : FA_KV_BLOCK;
        float bm = -INFINITY;
        for (int64_t j = j0 + threadIdx.x; j < j0 + n; j += blockDim.x) bm = fmaxf(bm, sc[j]);
        bm = block_max(bm);
        const float Mn = bm > M ? bm : M;
        if (j0 > 0 && Mn > M) l = __fmul_rn(l, expf(M - Mn));
        float bs = 0.f;
        for (int64_t j = j0 + threadIdx.x; j < j0 + n; j += blockDim.x) {
            const float e = expf(sc[j] - Mn);
            bs += e;
            sc[j] = rb(e);
        }
        bs = block_sum(bs); /* (its barriers also publish the probabilities) */
        float pv = 0.f;
        if (d < D)
            for (int64_t j = j0; j < j0 + n; j++)
                pv = __fadd_rn(pv, __fmul_rn(sc[j], ld(qkv.p, (base + j) * qkv.ld + 2 * W + hh * D + d, qkv.dt)));
        acc = j0 == 0 ? pv : __fadd_rn(__fmul_rn(acc, expf(M - Mn)), pv);
        l += bs;
        M = Mn;
    }
    if (d < D) st((char *)o.p + (size_t)(r * o.ld + hh * D) * 2, d, __fmul_rn(acc, 1.0f / l), o.dt);
}

/* The ViT kernels' key tiles: for each 16-byte piece (key j of the tile at k0, head columns c ..
   c + 7) of K (and V when with_v), read from qkv (bf16, ld elements a row, K at W, V at 2 W; zeros
   for keys past the image), put(j, c, kv, vv) stores it; the block's threads share the pieces */
template <int VEC, typename Put>
__device__ __forceinline__ void vit_stage_kv(const __nv_bfloat16 *qb, int64_t ld, int64_t base, int64_t k0, int64_t Ti,
                                             int64_t col0, int64_t W, int with_v, Put put) {
    for (int i = threadIdx.x; i < FA_BC * VEC; i += blockDim.x) {
        const int j = i / VEC, c = (i % VEC) * 8;
        uint4 kv = make_uint4(0, 0, 0, 0), vv = kv;
        if (k0 + j < Ti) {
            const __nv_bfloat16 *src = qb + (base + k0 + j) * ld + col0 + c;
            kv = *(const uint4 *)(src + W);
            if (with_v) vv = *(const uint4 *)(src + 2 * W);
        }
        put(j, c, kv, vv);
    }
}
// The same BF16 form on tensor cores (WMMA), for bf16 qkv and head dims that are multiples of
// 16 (RADIO-H's 80), a kernel per head dim (ND = D / 16: registers and shared memory sized for
// it): block (image, tile of FA_BR query rows, head), warp w rows 16w .. 16w + 15, its Q tile held
// as ND fragments, K and V tiles of FA_BC keys staged by the whole block. Per block of
// FA_KV_BLOCK keys two passes: the first computes S = Q K^T tile by tile and keeps each row's
// max of s = S * scale (the block's M_b); the second computes S again (the same products, the
// same s), e = exp(s - M_b) summed unrounded, p = bf16(e) (the form's rounding, so P is an exact
// tensor-core operand) and acc += P V, after acc and l were rescaled as the form says. The
// scores are the CPU's exact bf16 products summed in f32 in another order (on a device by the
// tensor cores' own adder, which need not round to nearest at each add: a few f32 ulps, so a
// probability near a bf16 tie may round the other way; test_ops allows for that); everything
// else is the form's arithmetic, the P V sums in another order (acc stays in the tensor cores'
// accumulators over all key tiles, Ti / 16 chained products of 16: 65 for RADIO-H's 1,032
// tokens, whose truncating adds leave about 1e-5 of the sums' magnitude, far below o's bf16
// rounding; the CPU sums each 512-key block's P V apart and adds it to the rescaled acc). Both
// passes run the same products, so they see the same scores. o = bf16(acc * (1 / l)).
// Shared memory (RADIO-H: 52 KiB, four blocks an SM): the K and V tiles, then the warps' S, P
// and O scratch, whose space first holds the Q tile until its fragments are loaded.
template <int ND> struct Fv {
    static constexpr int D = ND * 16, LDB = D + 8; /* bf16 row stride (16-byte multiple, staggers banks) */
    static constexpr size_t KV = (size_t)FA_BC * LDB * 2, Q = (size_t)FA_BR * LDB * 2,
                            SCRATCH = FA_S_BYTES + FA_P_BYTES + FA_O_BYTES;
    static constexpr size_t SMEM = 2 * KV + (Q > SCRATCH ? Q : SCRATCH);
    static_assert(KV % 128 == 0 && Q % 128 == 0, "shared regions keep the 256-bit alignment WMMA needs");
};
template <int ND>
__global__ void __launch_bounds__(FA_WARPS * WARP_SIZE, ND <= 5 ? 4 : 3) /* (the blocks an SM their shared memory allows) */
    k_attention_full_flash(V2 o, V2 qkv, int64_t Ti, int64_t H, int64_t n_qt) {
    namespace wm = nvcuda::wmma;
    constexpr int D = Fv<ND>::D, LDB = Fv<ND>::LDB;
    extern __shared__ __align__(128) float fv_smem[];
    __nv_bfloat16 *Ks = (__nv_bfloat16 *)fv_smem, *Vs = Ks + FA_BC * LDB;
    char *scratch = (char *)fv_smem + 2 * Fv<ND>::KV;
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)scratch;
    const int tid = threadIdx.x, lane = tid % WARP_SIZE, w = tid / WARP_SIZE, r = lane >> 1, half = lane & 1;
    float *Sw = (float *)scratch + w * 16 * FA_LDS;
    __nv_bfloat16 *Pw = (__nv_bfloat16 *)(scratch + FA_S_BYTES) + w * 16 * FA_LDP;
    float *Ow = (float *)(scratch + FA_S_BYTES + FA_P_BYTES) + w * 256;
    const int64_t img = blockIdx.x / n_qt, t0 = (blockIdx.x % n_qt) * FA_BR, hh = blockIdx.y;
    const int64_t W = o.cols, base = img * Ti;
    const int64_t nr = Ti - t0 < FA_BR ? Ti - t0 : FA_BR, row = 16 * w + r;
    const __nv_bfloat16 *qb = (const __nv_bfloat16 *)qkv.p;
    constexpr int VEC = D / 8; /* 16-byte pieces of a head's row */
    for (int i = tid; i < FA_BR * VEC; i += blockDim.x) {
        const int rr = i / VEC, c = (i % VEC) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (rr < nr) v = *(const uint4 *)(qb + (base + t0 + rr) * qkv.ld + hh * D + c);
        *(uint4 *)(Qs + rr * LDB + c) = v;
    }
    __syncthreads();
    wm::fragment<wm::matrix_a, 16, 16, 16, __nv_bfloat16, wm::row_major> qa[ND];
#pragma unroll
    for (int kd = 0; kd < ND; kd++) wm::load_matrix_sync(qa[kd], Qs + 16 * w * LDB + kd * 16, LDB);
    /* (stage's first barrier: every warp holds its Q before the scratch is written) */
    const float scale = 1.0f / sqrtf((float)D);
    float M = -INFINITY, l = 0.f;
    /* acc (the warp's 16 rows x D) in tensor-core accumulators across all key tiles; its rows
       are rescaled (and finally read) through Ow, a 16 x 16 slab at a time, once per 512-key
       block: the accumulator's layout is unspecified */
    fa_acc acc[ND];
#pragma unroll
    for (int sl = 0; sl < ND; sl++) wm::fill_fragment(acc[sl], 0.f);
    /* a key tile into shared memory (K, and V when asked), zeros past the image */
    auto stage = [&](int64_t k0, int with_v) {
        __syncthreads(); /* (the last tile's readers) */
        vit_stage_kv<VEC>(qb, qkv.ld, base, k0, Ti, hh * D, W, with_v, [&](int j, int c, uint4 kv, uint4 vv) {
            *(uint4 *)(Ks + j * LDB + c) = kv;
            if (with_v) *(uint4 *)(Vs + j * LDB + c) = vv;
        });
        __syncthreads();
    };
    /* S (the warp's 16 rows x FA_BC keys, stride FA_LDS) = Q K^T, each sum over the head dims in
       order (fa_scores' products), two 16-key slabs at a time (registers: RADIO-H's kernel keeps
       four blocks an SM) */
    auto scores = [&]() {
        constexpr int G = 2;
#pragma unroll
        for (int j0 = 0; j0 < FA_BC / 16; j0 += G) {
            wm::fragment<wm::accumulator, 16, 16, 16, float> sc[G];
#pragma unroll
            for (int g = 0; g < G; g++) wm::fill_fragment(sc[g], 0.f);
#pragma unroll
            for (int kd = 0; kd < ND; kd++)
#pragma unroll
                for (int g = 0; g < G; g++) {
                    wm::fragment<wm::matrix_b, 16, 16, 16, __nv_bfloat16, wm::col_major> kb;
                    wm::load_matrix_sync(kb, Ks + (j0 + g) * 16 * LDB + kd * 16, LDB);
                    wm::mma_sync(sc[g], qa[kd], kb, sc[g]);
                }
#pragma unroll
            for (int g = 0; g < G; g++) wm::store_matrix_sync(Sw + (j0 + g) * 16, sc[g], FA_LDS, wm::mem_row_major);
        }
        __syncwarp();
    };
    /* lane (r, half) reads and writes keys 32 half .. 32 half + 31 of row r of S and P, 16 bytes at a time */
    const float4 *Sr = (const float4 *)(Sw + r * FA_LDS + FA_BC / 2 * half);
    uint4 *Pr = (uint4 *)(Pw + r * FA_LDP + FA_BC / 2 * half);
    for (int64_t j0 = 0; j0 < Ti; j0 += FA_KV_BLOCK) {
        const int64_t j1 = j0 + FA_KV_BLOCK < Ti ? j0 + FA_KV_BLOCK : Ti;
        float bm = -INFINITY;
        for (int64_t k0 = j0; k0 < j1; k0 += FA_BC) { /* pass 1: the block's max */
            stage(k0, 0);
            scores();
            const int nk = (int)(j1 - k0 - FA_BC / 2 * half); /* keys of this lane's half in the block */
#pragma unroll
            for (int c4 = 0; c4 < FA_BC / 8; c4++) {
                const float4 v = Sr[c4];
                const float e[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                for (int i = 0; i < 4; i++)
                    if (4 * c4 + i < nk) bm = fmaxf(bm, __fmul_rn(e[i], scale));
            }
            __syncwarp(); /* (read before the next tile's store) */
        }
        bm = fmaxf(bm, __shfl_xor_sync(0xffffffffu, bm, 1));
        const float Mn = bm > M ? bm : M;
        if (j0 > 0 && Mn > M) l = __fmul_rn(l, expf(M - Mn));
        if (j0 > 0) {
            const float c = expf(M - Mn);
#pragma unroll
            for (int sl = 0; sl < ND; sl++) {
                wm::store_matrix_sync(Ow, acc[sl], 16, wm::mem_row_major);
                __syncwarp();
#pragma unroll
                for (int i = 0; i < 8; i++) Ow[r * 16 + 8 * half + i] = __fmul_rn(Ow[r * 16 + 8 * half + i], c);
                __syncwarp();
                wm::load_matrix_sync(acc[sl], Ow, 16, wm::mem_row_major);
                __syncwarp(); /* (read before the next slab's store) */
            }
        }
        float bs = 0.f;
        for (int64_t k0 = j0; k0 < j1; k0 += FA_BC) { /* pass 2: p = bf16(e), acc += P V */
            stage(k0, 1);
            scores();
            const int nk = (int)(j1 - k0 - FA_BC / 2 * half);
#pragma unroll
            for (int c8 = 0; c8 < FA_BC / 16; c8++) {
                const float4 a = Sr[2 * c8], b = Sr[2 * c8 + 1];
                const float sv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
                uint32_t pw[4]; /* (packed in registers: element 2q in the lower half of word q) */
#pragma unroll
                for (int i = 0; i < 8; i++) {
                    const float e = 8 * c8 + i < nk ? expf(__fmul_rn(sv[i], scale) - Mn) : 0.f;
                    bs += e;
                    const uint32_t b16 = __bfloat16_as_ushort(__float2bfloat16_rn(e));
                    pw[i / 2] = i % 2 ? pw[i / 2] | b16 << 16 : b16;
                }
                Pr[c8] = make_uint4(pw[0], pw[1], pw[2], pw[3]);
            }
            __syncwarp();
            fa_pv<1, ND, LDB>(acc, Pw, 0, Vs, ND); /* acc += P V */
            __syncwarp(); /* (P read before the next tile's store) */
        }
        l += bs + __shfl_xor_sync(0xffffffffu, bs, 1);
        M = Mn;
    }
    const float inv = 1.0f / l;
    const int64_t orow = base + t0 + row;
#pragma unroll
    for (int sl = 0; sl < ND; sl++) {
        wm::store_matrix_sync(Ow, acc[sl], 16, wm::mem_row_major);
        __syncwarp();
        if (row < nr)
#pragma unroll
            for (int i = 0; i < 8; i++)
                st(o.p, orow * o.ld + hh * D + sl * 16 + 8 * half + i, __fmul_rn(Ow[r * 16 + 8 * half + i], inv), o.dt);
        __syncwarp();
    }
}
/* the kernel and its shared memory for a head dim of 16 nd (1 <= nd <= MAX_D / 16) */
typedef void (*fv_kernel)(V2, V2, int64_t, int64_t, int64_t);
static fv_kernel fv_pick(int64_t nd, size_t *smem) {
    switch (nd) {
#define FV_CASE(N) \
    case N: *smem = Fv<N>::SMEM; return k_attention_full_flash<N>;
        FV_CASE(1) FV_CASE(2) FV_CASE(3) FV_CASE(4) FV_CASE(5) FV_CASE(6) FV_CASE(7) FV_CASE(8)
#undef FV_CASE
    default: *smem = 0; return NULL;
    }
}
static_assert(MAX_D / 16 == 8, "fv_pick has a kernel for every head dim of 16 nd up to MAX_D");

/* d += a b over a warp: mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32 (fragments
   as the PTX ISA lays them out; tests/cuda_emu/include/mma.h spells the layout out and emulates it) */
template <int BF16>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(TESTS_CUDA_EMU_H)
    emu::mma_m16n8k16(d, a, b, BF16 != 0);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if (BF16)
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
    __trap(); /* (built for sm_90: never here) */
#endif
}
// The same BF16 form on mma.sync (NVL_CUDA_ATTN_MMA=1, the default for head dims 16 nd, nd <= 5:
// RADIO-H's 80; 0: k_attention_full_flash above). The WMMA kernel moves every score tile and every
// P tile through shared memory (store_matrix_sync, then the lanes read their rows): with mma.sync
// the fragments' layout is the PTX ISA's, so each lane's scores stay in its registers, the row
// max and sum are taken across the 4 lanes that hold a row (shuffles), and P's bf16 pairs are
// packed straight into the A fragments of P V (an m16n8 score tile's pairs are an m16n8k16 A
// fragment's halves: keys 8j + 2t, 8j + 2t + 1 of rows g and g + 8). The arithmetic is the form's
// and k_attention_full_flash's: s = fl(S scale) with S's sums over the head dims in order of 16, the
// 512-key block's max from a first pass, l and acc rescaled by exp(M - M_b), e = exp(s - M_b)
// summed unrounded, p = bf16(e), acc += P V in the tensor cores' accumulators across the key
// tiles (in order of 16 keys), o = bf16(acc (1 / l)). Block (image, tile of FA_BR query rows,
// head), warp w rows 16 w .. 16 w + 15 (lane l: g = l / 4 rows g, g + 8; t = l % 4); Q's A
// fragments read once from memory; per tile of FA_BC keys the block stages K (rows, for Q K^T's B
// fragments: k = head dim, n = key) and for the second pass V transposed (Vt[d][key], so P V's B
// fragments are 32-bit reads too). Shared memory: 22.5 KiB at 80.
template <int ND> struct Fm {
    static constexpr int D = ND * 16, LDK = D + 8, LDV = FA_BC + 8; /* bf16 strides (4-byte pairs, banks staggered) */
    static constexpr size_t SMEM = (size_t)FA_BC * LDK * 2 + (size_t)D * LDV * 2;
};
template <int ND>
__global__ void __launch_bounds__(FA_WARPS * WARP_SIZE) k_attention_full_mma(V2 o, V2 qkv, int64_t Ti, int64_t H,
                                                                             int64_t n_qt) {
    constexpr int D = Fm<ND>::D, LDK = Fm<ND>::LDK, LDV = Fm<ND>::LDV, NJ = FA_BC / 8, NT = D / 8;
    extern __shared__ __align__(128) float fm_smem[];
    __nv_bfloat16 *Ks = (__nv_bfloat16 *)fm_smem, *Vt = Ks + FA_BC * LDK;
    const int tid = threadIdx.x, lane = tid % WARP_SIZE, w = tid / WARP_SIZE, g = lane >> 2, t = lane & 3;
    const int64_t img = blockIdx.x / n_qt, t0 = (blockIdx.x % n_qt) * FA_BR, hh = blockIdx.y;
    const int64_t W = o.cols, base = img * Ti, nr = Ti - t0 < FA_BR ? Ti - t0 : FA_BR;
    const __nv_bfloat16 *qb = (const __nv_bfloat16 *)qkv.p;
    const int r0 = 16 * w + g, r1 = r0 + 8; /* the lane's two rows in the tile */
    /* Q's A fragments: (row g, d 16 kd + 2t ..), (row g + 8, ..), (row g, d 16 kd + 8 + 2t ..), (row g + 8, ..) */
    uint32_t qa[ND][4];
    {
        const uint32_t *q0 = (const uint32_t *)(qb + (base + t0 + (r0 < nr ? r0 : 0)) * qkv.ld + hh * D),
                       *q1 = (const uint32_t *)(qb + (base + t0 + (r1 < nr ? r1 : 0)) * qkv.ld + hh * D);
#pragma unroll
        for (int kd = 0; kd < ND; kd++) {
            qa[kd][0] = r0 < nr ? q0[8 * kd + t] : 0u;
            qa[kd][1] = r1 < nr ? q1[8 * kd + t] : 0u;
            qa[kd][2] = r0 < nr ? q0[8 * kd + 4 + t] : 0u;
            qa[kd][3] = r1 < nr ? q1[8 * kd + 4 + t] : 0u;
        }
    }
    const float scale = 1.0f / sqrtf((float)D);
    float M[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
    constexpr int VEC = D / 8;
    auto stage = [&](int64_t k0, int with_v) {
        __syncthreads(); /* (the last tile's readers) */
        vit_stage_kv<VEC>(qb, qkv.ld, base, k0, Ti, hh * D, W, with_v, [&](int j, int c, uint4 kv, uint4 vv) {
            *(uint4 *)(Ks + j * LDK + c) = kv;
            if (!with_v) return;
            const uint32_t vw[4] = {vv.x, vv.y, vv.z, vv.w};
#pragma unroll
            for (int e = 0; e < 8; e++) { /* (V transposed: Vt[d][key]) */
                __nv_bfloat16 b;
                const uint16_t bits = (uint16_t)(vw[e / 2] >> (16 * (e % 2)));
                memcpy(&b, &bits, 2);
                Vt[(c + e) * LDV + j] = b;
            }
        });
        __syncthreads();
    };
    /* S = Q K^T for the staged tile: S[j] the m16n8 tile of keys 8j .. 8j + 7 */
    auto scores = [&](float (&S)[NJ][4]) {
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            S[j][0] = S[j][1] = S[j][2] = S[j][3] = 0.f;
            const uint32_t *kr = (const uint32_t *)(Ks + (8 * j + g) * LDK);
#pragma unroll
            for (int kd = 0; kd < ND; kd++) {
                const uint32_t b[2] = {kr[8 * kd + t], kr[8 * kd + 4 + t]};
                mma_16816<1>(S[j], qa[kd], b);
            }
        }
    };
    for (int64_t j0 = 0; j0 < Ti; j0 += FA_KV_BLOCK) {
        const int64_t j1 = j0 + FA_KV_BLOCK < Ti ? j0 + FA_KV_BLOCK : Ti;
        float bm[2] = {-INFINITY, -INFINITY};
        for (int64_t k0 = j0; k0 < j1; k0 += FA_BC) { /* pass 1: the block's max */
            stage(k0, 0);
            float S[NJ][4];
            scores(S);
#pragma unroll
            for (int j = 0; j < NJ; j++)
#pragma unroll
                for (int i = 0; i < 4; i++)
                    if (k0 + 8 * j + 2 * t + (i & 1) < j1) bm[i / 2] = fmaxf(bm[i / 2], __fmul_rn(S[j][i], scale));
        }
        float Mn[2], c[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            bm[h] = fmaxf(bm[h], __shfl_xor_sync(0xffffffffu, bm[h], 1));
            bm[h] = fmaxf(bm[h], __shfl_xor_sync(0xffffffffu, bm[h], 2));
            Mn[h] = bm[h] > M[h] ? bm[h] : M[h];
            if (j0 > 0 && Mn[h] > M[h]) l[h] = __fmul_rn(l[h], expf(M[h] - Mn[h]));
            c[h] = j0 > 0 ? expf(M[h] - Mn[h]) : 1.f;
        }
        if (j0 > 0)
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int i = 0; i < 4; i++) acc[nt][i] = __fmul_rn(acc[nt][i], c[i / 2]);
        float bs[2] = {0.f, 0.f};
        for (int64_t k0 = j0; k0 < j1; k0 += FA_BC) { /* pass 2: p = bf16(e), acc += P V */
            stage(k0, 1);
            float S[NJ][4];
            scores(S);
            uint32_t pp[NJ][2]; /* tile j's bf16 pairs: rows g ([0]) and g + 8 ([1]) */
#pragma unroll
            for (int j = 0; j < NJ; j++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    uint32_t pr = 0;
#pragma unroll
                    for (int e2 = 0; e2 < 2; e2++) {
                        const float e = k0 + 8 * j + 2 * t + e2 < j1 ? expf(__fmul_rn(S[j][2 * h + e2], scale) - Mn[h]) : 0.f;
                        bs[h] += e;
                        pr |= (uint32_t)__bfloat16_as_ushort(__float2bfloat16_rn(e)) << (16 * e2);
                    }
                    pp[j][h] = pr;
                }
#pragma unroll
            for (int i = 0; i < FA_BC / 16; i++) { /* keys 16 i ..: A = tiles 2i (slots 2t ..) and 2i + 1 (2t + 8 ..) */
                const uint32_t a[4] = {pp[2 * i][0], pp[2 * i][1], pp[2 * i + 1][0], pp[2 * i + 1][1]};
#pragma unroll
                for (int nt = 0; nt < NT; nt++) { /* B: (keys 16 i + 2t .., d 8 nt + g) from Vt's row */
                    const uint32_t *vr = (const uint32_t *)(Vt + (8 * nt + g) * LDV + 16 * i);
                    const uint32_t b[2] = {vr[t], vr[4 + t]};
                    mma_16816<1>(acc[nt], a, b);
                }
            }
        }
#pragma unroll
        for (int h = 0; h < 2; h++) {
            bs[h] += __shfl_xor_sync(0xffffffffu, bs[h], 1);
            bs[h] += __shfl_xor_sync(0xffffffffu, bs[h], 2);
            l[h] += bs[h];
            M[h] = Mn[h];
        }
    }
    const float inv[2] = {1.0f / l[0], 1.0f / l[1]};
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int rr = i < 2 ? r0 : r1;
            if (rr < nr) st(o.p, (base + t0 + rr) * o.ld + hh * D + 8 * nt + 2 * t + (i & 1), __fmul_rn(acc[nt][i], inv[i / 2]), o.dt);
        }
}
static fv_kernel fm_pick(int64_t nd, size_t *smem) {
    switch (nd) {
#define FM_CASE(N) \
    case N: *smem = Fm<N>::SMEM; return k_attention_full_mma<N>;
        FM_CASE(1) FM_CASE(2) FM_CASE(3) FM_CASE(4) FM_CASE(5)
#undef FM_CASE
    default: *smem = 0; return NULL;
    }
}

// ---------------------------------------------------------------------------
// Matmul: a shared-memory tiled kernel for mixed dtypes (cuBLAS when x and W share a dtype)

constexpr int TILE = 16;
__global__ void k_matmul_tiled(V2 y, V2 x, const void *w, int wdt, int64_t K) {
    __shared__ float xs[TILE][TILE + 1], ws[TILE][TILE + 1];
    const int64_t m = blockIdx.y * TILE + threadIdx.y, n = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.f;
    for (int64_t k0 = 0; k0 < K; k0 += TILE) {
        const int64_t kx = k0 + threadIdx.x, kw = k0 + threadIdx.y;
        xs[threadIdx.y][threadIdx.x] = m < x.rows && kx < K ? ld(x.p, m * x.ld + kx, x.dt) : 0.f;
        const int64_t wn = blockIdx.x * TILE + threadIdx.x;
        ws[threadIdx.y][threadIdx.x] = wn < y.cols && kw < K ? ld(w, wn * K + kw, wdt) : 0.f;
        __syncthreads();
        for (int k = 0; k < TILE; k++) acc += xs[threadIdx.y][k] * ws[k][threadIdx.x];
        __syncthreads();
    }
    if (m < y.rows && n < y.cols) st(y.p, m * y.ld + n, acc, y.dt);
}

// ---------------------------------------------------------------------------
// Quantized matmul (FP8 W8A8, NVFP4 W4A4), first version: the CPU twin's semantics
// (kernels/cpu/quant.c, quant-formats.md §1, §2, §5) in two SIMPLE kernels, correct before fast.
// NEVER RUN ON A GPU YET: k_quant_act and k_matmul_quant compile only (their roundings, quant_round.cuh,
// have run on the host only).
//
//   1. k_quant_act: x (M, K) in its dtype -> xq (M, K) f32 in op scratch, the quantize-dequantized
//      activations: FP8 per element e4m3_sat(x / input_scale) * input_scale; NVFP4 per 16-block
//      of a row, s = e4m3(min(amax16 / (6 input_scale), 448)) * input_scale (1 when s < 1e-5),
//      xq = e2m1(x / s) * s. The roundings are the CPU's own functions (kernels/base/tensor.c
//      nvl_f32_to_e4m3_sat, nvl_e2m1_quantize) ported line by line (quant_round.cuh, checked
//      against the CPU's on the host by tests/test_cuda_round.cu), so xq equals the CPU's bit for bit.
//   2. k_gemv_quant (its header: four outputs per warp, 16-byte weight loads, the scales applied
//      once per sum; where K % 32 == 0 and the weight is 16-byte aligned) or else
//      k_matmul_quant: one warp per output column n and up to QM rows, y[m, n] = sum_k xq[m, k] * wdeq[n, k] (each weight byte read once for QM rows), the weight widened on
//      the fly from its stored bytes (FP8: e4m3(code) * weight_scale; NVFP4: (e2m1(nibble) *
//      e4m3(block_scale)) * weight_scale_2, the even k in the low nibble), f32 accumulation, y
//      rounded to its dtype. Only the order of the f32 sums differs from the CPU twin.
//
// With more rows (prefill chunks; FP8 decode buckets of 16 and more) the products go to
// tensor-core GEMMs instead, keeping the same semantics (NEVER RUN ON A GPU YET either):
//   3. FP8 with NVL_CUDA_FP8_LT=1 (5. otherwise): k_quant_fp8_codes writes the E4M3 codes of x / input_scale (the same rounding, no
//      dequantize); cuBLASLt multiplies them with the stored codes, TN (A = W as K x N column-major,
//      B = the codes K x M), f32 accumulation without FAST_ACCUM, alpha = weight_scale * input_scale
//      applied once to each sum (the CPU scales each factor: the same up to f32 rounding), D in y's
//      dtype (kernels.md §3.3; NVIDIA/CUDALibrarySamples LtFp8Matmul). Needs K and N multiples of
//      16 and a 16-byte aligned y; otherwise, or when cuBLASLt offers no algorithm, the kernels of 1-2.
//   4. NVFP4 on Hopper (no FP4 MMA; a W4A4-exact path at BF16 GEMM speed): both factors are written
//      as bf16 with the global scales taken out, which is exact: an E2M1 value has at most 2
//      significant bits and an E4M3 scale 4, so e2m1 * e4m3 fits bf16's 8. k_quant_nvfp4_bf16 writes
//      x' = e2m1(x / s) * e4m3_blk (s = e4m3_blk * input_scale, the CPU's s), k_dequant_nvfp4_w the
//      weight rows e2m1 * e4m3(block scale) in chunks of N (bounded scratch), and cublasGemmEx
//      (bf16 x bf16, f32 compute) multiplies them with alpha = input_scale * weight_scale_2. The one
//      inexact case: a block whose s falls below 1e-5 takes scale 1 on the CPU (x' = e2m1(x)); it
//      is written as bf16(e2m1(x) / input_scale) here (nonzero only when |x| > 0.25 in a block whose
//      amax is below ~2.2e-6 of the tensor's calibrated amax).
//   5. FP8 as exact bf16 factors, the same way (k_quant_fp8_vals<__nv_bfloat16>: the E4M3 values of x /
//      input_scale; k_dequant_fp8_w: the weight rows' E4M3 values; alpha = input_scale *
//      weight_scale): the default, and where cuBLASLt declines the FP8 shape. Its sums are f32's;
//      Hopper's FP8 tensor cores (3., NVL_CUDA_FP8_LT=1) keep only ~14 bits within each k-block
//      (DeepSeek-V3 report §3.3.2) before cuBLASLt promotes the partial sums to f32: twice the
//      GEMM rate, the logits measurably off the quantizer's forward.
// 4 and 5 from QUANT_DEQ_GEMM_MIN_ROWS rows (prefill chunks); between, the GEMV of 2. (decode
// buckets of 16 to 48 rows read the stored bytes fewer times than a dequantization writes them).
//
// Next (not written; see /work/shared/spec/kernels.md):
//   - decode (M <= ~16): a GEMV streaming the stored bytes once, codes widened in registers
//     (§3.4, §4.5: CUDA-core fp32 FMA for batch 1-4, Marlin-like mma.sync beyond), the activation
//     quantization fused into it or into the producer of x.
//   - the roundings through the hardware conversions (__nv_cvt_float_to_fp8 with __NV_SATFINITE,
//     __NV_E4M3 rounds to nearest even) once checked against these on a device.

constexpr int QBLK = 16; // NVFP4 block length along K

// The roundings: quant_round.cuh (qr_*), ports of the CPU's, checked on the host by
// tests/test_cuda_round.cu.

// NVFP4 activations: the scale s of row r's 16-block at k0, as the CPU computes it
// (kern_cpu_quant_nvfp4_act): e4m3(min(amax / (6 input_scale), 448)) * input_scale, 1 below 1e-5
__device__ float nvfp4_act_block_scale(V2 x, int64_t r, int64_t k0, float input_scale) {
    float amax = 0.0f;
    for (int t = 0; t < QBLK; t++) amax = fmaxf(amax, fabsf(ld(x.p, r * x.ld + k0 + t, x.dt)));
    const float six_gs = 6.0f * input_scale; // as the CPU: one f32 product, then a division
    float rr = amax / six_gs;
    if (rr > 448.0f) rr = 448.0f;
    const float s = qr_e4m3_to_f32(qr_e4m3_sat(rr)) * input_scale;
    return s < 1e-5f ? 1.0f : s;
}

// FP8: one thread per element; NVFP4: one thread per 16-block. xq is (M, K) contiguous f32.
__global__ void k_quant_act(float *xq, V2 x, int nvfp4, float input_scale) {
    pdl_enter();
    const int64_t K = x.cols, per_row = nvfp4 ? K / QBLK : K;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < x.rows * per_row;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / per_row, j = i % per_row;
        if (!nvfp4) {
            xq[r * K + j] = qr_e4m3_to_f32(qr_e4m3_sat(ld(x.p, r * x.ld + j, x.dt) / input_scale)) * input_scale;
            continue;
        }
        const int64_t k0 = j * QBLK;
        const float s = nvfp4_act_block_scale(x, r, k0, input_scale);
        for (int t = 0; t < QBLK; t++) {
            const float v = ld(x.p, r * x.ld + k0 + t, x.dt);
            // __fmul_rn: keep q * s a plain rounded product (nothing to contract here, but explicit)
            xq[r * K + k0 + t] = __fmul_rn(qr_e2m1_quantize(v / s), s);
        }
    }
}

// FP8 codes of x / input_scale, (M, K) contiguous (the CPU's rounding: saturate at 448, ties to even)
__global__ void k_quant_fp8_codes(uint8_t *xq, V2 x, float input_scale) {
    const int64_t K = x.cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < x.rows * K; i += (int64_t)gridDim.x * blockDim.x)
        xq[i] = qr_e4m3_sat(ld(x.p, (i / K) * x.ld + i % K, x.dt) / input_scale);
}

// NVFP4 activations as bf16 without the global scale: per 16-block, e2m1(x / s) * e4m3_blk with
// s = e4m3_blk * input_scale as k_quant_act computes it (exact in bf16; see 4. above)
__global__ void k_quant_nvfp4_bf16(__nv_bfloat16 *xq, V2 x, float input_scale) {
    const int64_t K = x.cols, per_row = K / QBLK;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < x.rows * per_row;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / per_row, k0 = (i % per_row) * QBLK;
        float v[QBLK], q[QBLK];
        for (int t = 0; t < QBLK; t++) v[t] = ld(x.p, r * x.ld + k0 + t, x.dt);
        qr_nvfp4_block_factors(q, v, input_scale); // checked on the host: tests/test_cuda_round.cu
        for (int t = 0; t < QBLK; t++) xq[r * K + k0 + t] = __float2bfloat16_rn(q[t]);
    }
}

// NVFP4 weight rows [n0, n0 + nc) as bf16 e2m1 * e4m3(block scale) (exact), (nc, K) contiguous
// FP8 as exact bf16 factors (5. below): the E4M3 values of x / input_scale (4 significant bits
// fit bf16's 8; the range too), and the weight rows' E4M3 values n0 .. n0 + nc, (nc, K)
// (T = __nv_bfloat16; for k_gemv_mma T = __half: E4M3 values are exact in f16 too)
__device__ __forceinline__ void to_half_t(__nv_bfloat16 &d, float v) { d = __float2bfloat16_rn(v); }
__device__ __forceinline__ void to_half_t(__half &d, float v) { d = __float2half_rn(v); }
template <typename T> __global__ void k_quant_fp8_vals(T *xq, V2 x, float input_scale) {
    pdl_enter();
    const int64_t K = x.cols;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < x.rows * K; i += (int64_t)gridDim.x * blockDim.x)
        to_half_t(xq[i], qr_e4m3_to_f32(qr_e4m3_sat(ld(x.p, (i / K) * x.ld + i % K, x.dt) / input_scale)));
}
__global__ void k_dequant_fp8_w(__nv_bfloat16 *wd, const uint8_t *w, int64_t n0, int64_t nc, int64_t K) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < nc * K; i += (int64_t)gridDim.x * blockDim.x)
        wd[i] = __float2bfloat16_rn(qr_e4m3_to_f32(w[n0 * K + i]));
}

__global__ void k_dequant_nvfp4_w(__nv_bfloat16 *wd, const uint8_t *w, const uint8_t *bs, int64_t n0, int64_t nc,
                                  int64_t K) {
    const int64_t half = K / 2;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < nc * half; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t n = i / half, b = i % half, k = 2 * b;
        const uint8_t byte = w[(n0 + n) * half + b];
        const float sc = qr_e4m3_to_f32(bs[(n0 + n) * (K / QBLK) + k / QBLK]);
        wd[n * K + k] = __float2bfloat16_rn(qr_e2m1_value(byte & 15u) * sc);
        wd[n * K + k + 1] = __float2bfloat16_rn(qr_e2m1_value(byte >> 4) * sc);
    }
}

// One warp per output column n and QM activation rows (grid y: the row groups), so each weight
// byte is read once for QM rows (decode batches: the weight stream is what a step costs); lanes
// take 4 bytes at a time (4 FP8 codes, or 8 NVFP4 codes = half a 16-block), consecutive lanes
// consecutive words. w: the stored bytes (N, K) or (N, K/2); bs: (N, K/16) E4M3; xq (M, K) f32.
constexpr int QM = 8;
__global__ void k_matmul_quant(V2 y, const float *xq, const uint8_t *w, const uint8_t *bs, int nvfp4, float wscale,
                               int64_t K, int64_t M) {
    const int64_t n = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) / WARP_SIZE;
    const int lane = threadIdx.x % WARP_SIZE;
    const int64_t m0 = (int64_t)blockIdx.y * QM;
    if (n >= y.cols || m0 >= M) return; // whole warps leave together
    const int mn = M - m0 < QM ? (int)(M - m0) : QM;
    const float *x0 = xq + m0 * K;
    float acc[QM];
#pragma unroll
    for (int m = 0; m < QM; m++) acc[m] = 0.0f;
    if (!nvfp4 && K % 4 == 0) {
        const uint32_t *wr = (const uint32_t *)(w + n * K);
        for (int64_t k4 = lane; k4 < K / 4; k4 += WARP_SIZE) {
            const uint32_t c4 = wr[k4];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int64_t k = 4 * k4 + j;
                const float wv = qr_e4m3_to_f32((uint8_t)(c4 >> (8 * j))) * wscale;
#pragma unroll
                for (int m = 0; m < QM; m++)
                    if (m < mn) acc[m] += x0[m * K + k] * wv;
            }
        }
    } else if (!nvfp4) {
        const uint8_t *wr = w + n * K;
        for (int64_t k = lane; k < K; k += WARP_SIZE) {
            const float wv = qr_e4m3_to_f32(wr[k]) * wscale;
#pragma unroll
            for (int m = 0; m < QM; m++)
                if (m < mn) acc[m] += x0[m * K + k] * wv;
        }
    } else { /* K % 16 == 0 (kern_matmul checks it): rows of K/2 bytes are whole words */
        const uint32_t *wr = (const uint32_t *)(w + n * (K / 2));
        const uint8_t *br = bs + n * (K / QBLK);
        for (int64_t b4 = lane; b4 < K / 8; b4 += WARP_SIZE) {
            const uint32_t c8 = wr[b4];
            const float bscale = qr_e4m3_to_f32(br[(8 * b4) / QBLK]);
#pragma unroll
            for (int j = 0; j < 8; j++) { /* nibble j: byte j/2, low nibble first = element 8 b4 + j */
                const int64_t k = 8 * b4 + j;
                const float wv = (qr_e2m1_value((c8 >> (4 * j)) & 15u) * bscale) * wscale;
#pragma unroll
                for (int m = 0; m < QM; m++)
                    if (m < mn) acc[m] += x0[m * K + k] * wv;
            }
        }
    }
#pragma unroll
    for (int m = 0; m < QM; m++)
        if (m < mn) {
            const float a = warp_reduce_sum(acc[m]);
            if (lane == 0) st(y.p, (m0 + m) * y.ld + n, a, y.dt);
        }
}

// Two E4M3 codes (the low byte first) as f32: one cvt.rn.f16x2.e4m3x2 on sm_89 and later (f16 holds
// every E4M3 value), else from the bits: the magnitude's exponent and mantissa placed under an f32
// exponent of 2^-127 and scaled by 2^120 (exact; the E4M3 subnormals become f32 subnormals first),
// NaN for S.1111.111 as qr_e4m3_to_f32.
// (The bit path needs f32 subnormals kept: -ftz=true or --use_fast_math would zero the E4M3
// subnormals. sm_89 and later convert in hardware, which has no such dependence.)
__device__ __forceinline__ float e4m3_bits_f32(uint32_t b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    return __half2float(__half(__nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)(b & 0xffu), __NV_E4M3)));
#else
    const float f = __int_as_float((int)(((b & 0x7fu) << 20) | ((b & 0x80u) << 24))) * 0x1p120f;
    return (b & 0x7fu) == 0x7fu ? __int_as_float(0x7fc00000) : f;
#endif
}
__device__ __forceinline__ void e4m3x2_f32(uint32_t two, float &lo, float &hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(two & 0xffffu), __NV_E4M3);
    const float2 f = __half22float2(__half2(h));
    lo = f.x;
    hi = f.y;
#else
    lo = e4m3_bits_f32(two & 0xffu);
    hi = e4m3_bits_f32((two >> 8) & 0xffu);
#endif
}

// The decode GEMV for FP8 / NVFP4 weights (few rows, the weight stream is the cost): warp w of a
// block takes GV_ROWS consecutive outputs and up to QM activation rows (grid y), so each x value
// read serves GV_ROWS weight rows; each lane reads 16 bytes of each of its rows at a time
// (consecutive lanes consecutive 16 bytes: 512 bytes per row and warp, GV_ROWS * 16 bytes in flight
// per lane). FP8: 16 codes a chunk, two per conversion (e4m3x2_f32), y = weight_scale *
// sum_k xq[k] e4m3(w[k]). NVFP4: 32 codes a chunk = two 16-blocks, the E2M1 values from a table
// in shared memory (16 entries: no bank conflicts), y = weight_scale_2 * sum_blocks e4m3(bs) *
// sum_k xq[k] e2m1(w[k]). xq: k_quant_act's f32 activations (the CPU twin's, bit for bit), read as
// float4. The sums are the CPU twin's products in another order, the scales applied once per sum
// (a product of the same factors). Needs K % 32 == 0 and 16-byte aligned rows (the host checks),
// else k_matmul_quant.
// 16 floats from a 16-byte aligned address, as four float4 loads
__device__ __forceinline__ void load16(float (&xf)[16], const float *p) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const float4 v = ((const float4 *)p)[q];
        xf[4 * q] = v.x, xf[4 * q + 1] = v.y, xf[4 * q + 2] = v.z, xf[4 * q + 3] = v.w;
    }
}
constexpr int GV_ROWS = 4;
/* activation rows per warp: NVFP4 keeps 4 (with 8 it spilled 164 bytes at 2 blocks per SM; with
   4, 60 bytes, which L1 holds: to measure against 1 block per SM and no spills) */
__host__ __device__ constexpr int gv_qm(int nvfp4) { return nvfp4 ? 4 : QM; }
/* A GEMV warp's end: each of its first mn activation rows' R per-lane sums reduced across the
 * warp, scaled, and stored by lane 0 at y[m0 + m, n0 + r] (outputs past N skipped) */
template <int MM, int R>
__device__ __forceinline__ void gemv_store(V2 y, const float (&acc)[MM][R], int mn, int64_t m0, int64_t n0, int64_t N,
                                           float scale, int lane) {
#pragma unroll
    for (int m = 0; m < MM; m++) {
        if (m >= mn) break;
#pragma unroll
        for (int r = 0; r < R; r++) {
            const float a = warp_reduce_sum(acc[m][r]);
            if (lane == 0 && n0 + r < N) st(y.p, (m0 + m) * y.ld + n0 + r, a * scale, y.dt);
        }
    }
}
template <int NVFP4>
__global__ void __launch_bounds__(EW_BLOCK, 2) k_gemv_quant(V2 y, const float *xq, const uint8_t *w, const uint8_t *bs,
                                                         float wscale, int64_t K, int64_t M) {
    pdl_enter();
    __shared__ float lut[16];
    if (NVFP4 && threadIdx.x < 16) lut[threadIdx.x] = qr_e2m1_value(threadIdx.x);
    if (NVFP4) __syncthreads();
    const int lane = threadIdx.x % WARP_SIZE;
    const int64_t n0 = ((int64_t)blockIdx.x * (EW_BLOCK / WARP_SIZE) + threadIdx.x / WARP_SIZE) * GV_ROWS,
                  m0 = (int64_t)blockIdx.y * gv_qm(NVFP4), N = y.cols;
    if (n0 >= N) return; /* whole warps */
    constexpr int QMV = gv_qm(NVFP4);
    const int mn = M - m0 < QMV ? (int)(M - m0) : QMV;
    const int64_t rb = NVFP4 ? K / 2 : K; /* bytes of a weight row */
    float acc[QMV][GV_ROWS];
#pragma unroll
    for (int m = 0; m < QMV; m++)
#pragma unroll
        for (int r = 0; r < GV_ROWS; r++) acc[m][r] = 0.f;
    for (int64_t c = lane; c < rb / 16; c += WARP_SIZE) {
        uint4 wv[GV_ROWS];
#pragma unroll
        for (int r = 0; r < GV_ROWS; r++)
            wv[r] = n0 + r < N ? *(const uint4 *)(w + (n0 + r) * rb + 16 * c) : make_uint4(0, 0, 0, 0);
        if (!NVFP4) {
            float wf[GV_ROWS][16];
#pragma unroll
            for (int r = 0; r < GV_ROWS; r++) {
                const uint32_t u[4] = {wv[r].x, wv[r].y, wv[r].z, wv[r].w};
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    e4m3x2_f32(u[q], wf[r][4 * q], wf[r][4 * q + 1]);
                    e4m3x2_f32(u[q] >> 16, wf[r][4 * q + 2], wf[r][4 * q + 3]);
                }
            }
#pragma unroll
            for (int m = 0; m < QMV; m++) { /* (compile-time indices keep acc in registers) */
                if (m >= mn) break;
                float xf[16];
                load16(xf, xq + (m0 + m) * K + 16 * c);
#pragma unroll
                for (int r = 0; r < GV_ROWS; r++)
#pragma unroll
                    for (int i = 0; i < 16; i++) acc[m][r] += xf[i] * wf[r][i];
            }
        } else {
#pragma unroll 1
            for (int hb = 0; hb < 2; hb++) { /* 16-block 2c + hb: bytes 8 hb .. 8 hb + 7 of the chunk */
                const int64_t blk = 2 * c + hb;
                float sc[GV_ROWS];
#pragma unroll
                for (int r = 0; r < GV_ROWS; r++) sc[r] = n0 + r < N ? e4m3_bits_f32(bs[(n0 + r) * (K / QBLK) + blk]) : 0.f;
#pragma unroll
                for (int m = 0; m < QMV; m++) {
                    if (m >= mn) break;
                    float xf[16];
                    load16(xf, xq + (m0 + m) * K + QBLK * blk);
#pragma unroll
                    for (int r = 0; r < GV_ROWS; r++) { /* (the codes decoded per activation row: one for decode) */
                        const uint32_t u0 = hb ? wv[r].z : wv[r].x, u1 = hb ? wv[r].w : wv[r].y;
                        float s = 0.f;
#pragma unroll
                        for (int j = 0; j < 8; j++) /* low nibble first: element 2 b, then 2 b + 1 */
                            s += xf[j] * lut[(u0 >> (4 * j)) & 15u];
#pragma unroll
                        for (int j = 0; j < 8; j++) s += xf[8 + j] * lut[(u1 >> (4 * j)) & 15u];
                        acc[m][r] += s * sc[r];
                    }
                }
            }
        }
    }
    gemv_store(y, acc, mn, m0, n0, N, wscale, lane);
}

// NVFP4 with one activation row (a lone decode row) in integers: W4A4's products are small
// integers. The activation of 16-block b is e2m1(x / s_b) * s_b with s_b k_quant_act's block scale
// (e2m1 values: 0, 0.5, ..., 6), so sum_k xq[k] e2m1(w[k]) = s_b / 4 * sum_k (2 a_k)(2 w_k), the
// doubled values integers in -12..12 and their sum over a block exact in int32 (dp4a: four signed
// byte products a time). k_quant_nvfp4_i8 writes the doubled activation codes (K int8) and s_b
// (K / 16 f32); k_gemv_nvfp4_i8 turns 8 weight nibbles into two words of four doubled values with
// byte permutes (a table of the 8 magnitudes, one of their negations, a mask from the sign bits)
// and sums each block with four dp4a: y = weight_scale_2 * sum_b e4m3(bs_b) * (s_b * isum_b / 4).
// Against the direct kernel (f32 products of xq = fl(e2m1 * s_b)), each block's sum is exact and
// rounded once: the results agree to f32 rounding. No table in shared memory, about two integer
// instructions a weight where the direct kernel spends four and a shared-memory load
// (bench/RESULTS.md 2026-12-04: 0.84 TB/s for NVFP4 against 3.3 for BF16). NVL_CUDA_GEMV_I8=0:
// the direct kernel (k_gemv_quant).
__global__ void k_quant_nvfp4_i8(int8_t *codes, float *scales, V2 x, float input_scale) {
    pdl_enter();
    const int64_t K = x.cols, nb = K / QBLK;
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < nb; j += (int64_t)gridDim.x * blockDim.x) {
        const int64_t k0 = j * QBLK;
        const float s = nvfp4_act_block_scale(x, 0, k0, input_scale);
        scales[j] = s;
        for (int t = 0; t < QBLK; t++) codes[k0 + t] = (int8_t)(2.0f * qr_e2m1_quantize(ld(x.p, k0 + t, x.dt) / s));
    }
}
/* four weight nibbles (the low 16 bits of sel, the first element lowest) as four doubled E2M1
 * values in signed bytes */
__device__ __forceinline__ int e2m1x4_i8(uint32_t sel) {
    const uint32_t m = sel & 0x7777u;
    const uint32_t pos = __byte_perm(0x03020100u, 0x0C080604u, m);  /* 0 1 2 3 | 4 6 8 12 */
    const uint32_t neg = __byte_perm(0xFDFEFF00u, 0xF4F8FAFCu, m);  /* their negations */
    const uint32_t msk = __byte_perm(0u, 0xFFu, (sel >> 1) & 0x4444u); /* 0xff where the sign bit is set */
    return (int)((pos & ~msk) | (neg & msk));
}
__global__ void __launch_bounds__(EW_BLOCK) k_gemv_nvfp4_i8(V2 y, const int8_t *codes, const float *scales, const uint8_t *w,
                                                          const uint8_t *bs, float wscale, int64_t K) {
    pdl_enter();
    const int lane = threadIdx.x % WARP_SIZE;
    const int64_t n0 = ((int64_t)blockIdx.x * (EW_BLOCK / WARP_SIZE) + threadIdx.x / WARP_SIZE) * GV_ROWS, N = y.cols;
    if (n0 >= N) return; /* whole warps */
    const int64_t rb = K / 2, nblk = K / QBLK; /* bytes of a weight row; its blocks */
    float acc[1][GV_ROWS];
#pragma unroll
    for (int r = 0; r < GV_ROWS; r++) acc[0][r] = 0.f;
    for (int64_t c = lane; c < rb / 16; c += WARP_SIZE) { /* 16 bytes: 32 weights, blocks 2c and 2c + 1 */
        uint4 wv[GV_ROWS];
        uint32_t sv[GV_ROWS];
#pragma unroll
        for (int r = 0; r < GV_ROWS; r++) {
            const bool in = n0 + r < N;
            wv[r] = in ? *(const uint4 *)(w + (n0 + r) * rb + 16 * c) : make_uint4(0, 0, 0, 0);
            const uint8_t *sp = bs + (n0 + r) * nblk + 2 * c;
            sv[r] = in ? (uint32_t)sp[0] | (uint32_t)sp[1] << 8 : 0u;
        }
        const uint4 a0 = *(const uint4 *)(codes + 32 * c), a1 = *(const uint4 *)(codes + 32 * c + 16);
        const float s0 = scales[2 * c] * 0.25f, s1 = scales[2 * c + 1] * 0.25f; /* (x 0.25: exact) */
#pragma unroll
        for (int r = 0; r < GV_ROWS; r++) {
            int i0 = __dp4a(e2m1x4_i8(wv[r].x), (int)a0.x, 0);
            i0 = __dp4a(e2m1x4_i8(wv[r].x >> 16), (int)a0.y, i0);
            i0 = __dp4a(e2m1x4_i8(wv[r].y), (int)a0.z, i0);
            i0 = __dp4a(e2m1x4_i8(wv[r].y >> 16), (int)a0.w, i0);
            int i1 = __dp4a(e2m1x4_i8(wv[r].z), (int)a1.x, 0);
            i1 = __dp4a(e2m1x4_i8(wv[r].z >> 16), (int)a1.y, i1);
            i1 = __dp4a(e2m1x4_i8(wv[r].w), (int)a1.z, i1);
            i1 = __dp4a(e2m1x4_i8(wv[r].w >> 16), (int)a1.w, i1);
            acc[0][r] += (float)i0 * s0 * e4m3_bits_f32(sv[r] & 0xffu);
            acc[0][r] += (float)i1 * s1 * e4m3_bits_f32(sv[r] >> 8);
        }
    }
    gemv_store(y, acc, 1, 0, n0, N, wscale, lane);
}

// Decode rows on the tensor cores (NVL_CUDA_GEMV_MMA=1, the default; 0: the CUDA-core GEMVs):
// FP8 up to 8 rows, BF16 from 2 to 8 (one row stays on k_gemv_bf16, measured near the copy rate).
// FP8: the CUDA-core GEMV spends about three instructions a weight (two conversions and the FMA
// of each activation row): at 5120 -> 20480 it read 3.1 TB/s of the H200's 4.8, waiting on its
// loads with 128 registers (bench/RESULTS.md, run 6). W8A8's products are products of two E4M3
// values, and every E4M3 value is an f16: k_quant_fp8_vals<__half> writes the activations' E4M3
// values a_k = e4m3(x_k / input_scale) as f16 (M x K, exact) and mma.sync m16n8k16 (f16 in, f32 sums)
// multiplies 16 weight rows (A) by up to 8 activation rows (B's 8 columns) 16 k at a time, the
// weight codes widened by cvt (two a conversion); y = (sum_k a_k w_k) input_scale weight_scale.
// The products are exact (4 significant bits each); the CPU twin sums fl(a_k input_scale) w_k in f32 instead: the same
// sum to f32 rounding, as the NVFP4 integer GEMV's. BF16: the stored pairs are the fragments (bf16
// in, f32 sums), no conversion; k_gemv_bf16's FMAs grow with the rows (8 rows: 8 a weight), these
// do not. Each 64-byte step's products (4 MMAs FP8, 2 BF16) chain through the accumulator (the
// tensor cores' own adder, emulated by NVL_CUDA_EMU_MMA), the step's sum then added to the lane's
// f32 total.
// Layout: a block of GVM_WARPS warps takes 16 output rows; its warps split each weight row in
// steps of 64 bytes (warp w: steps w, w + GVM_WARPS, ..); lane l (g = l / 4, t = l % 4) loads the
// 16 bytes at 64 s + 16 t of weight rows g and g + 8 and the same k of activation row g (16 bytes
// of BF16, 32 of FP8's f16 values). The fragment's k order is free as long as A and B follow the same one: for each MMA the lane's A
// pairs (rows g, g + 8; k slots 2t, 2t + 1 and 2t + 8, 2t + 9) take two of its pairs of elements
// and its B pairs (column g) the same two of the activation row, so each weight meets its own
// activation. The warps' totals meet in shared memory, summed in the order of the warps. Needs
// weight rows of a multiple of 64 bytes, 16-byte aligned weights and activation rows (the host
// checks).
constexpr int GVM_WARPS = 8, GVM_M = 8, GVM_U = 2; /* warps a block; activation rows; steps in flight a lane */
/* two E4M3 codes (the low 16 bits, the first in the lower byte) as an f16 pair (the first in the
   lower half): exact, every E4M3 value is an f16 */
__device__ __forceinline__ uint32_t e4m3x2_h2(uint32_t two) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(two & 0xffffu), __NV_E4M3);
    return (uint32_t)h.x | (uint32_t)h.y << 16;
#else
    const __half lo = __float2half_rn(qr_e4m3_to_f32((uint8_t)(two & 0xffu))),
                 hi = __float2half_rn(qr_e4m3_to_f32((uint8_t)((two >> 8) & 0xffu)));
    uint16_t l, h;
    memcpy(&l, &lo, 2);
    memcpy(&h, &hi, 2);
    return (uint32_t)l | (uint32_t)h << 16;
#endif
}
/* BF16 = 0: w FP8 codes, xa0 the activations' f16 values (M x K, xrow = 2K bytes), y = sum scale1
   scale2; BF16 = 1: w and xa0 bf16 (xrow: an activation row's bytes), y = sum. rb: a weight row's
   bytes. */
template <int BF16>
__global__ void __launch_bounds__(GVM_WARPS * WARP_SIZE) k_gemv_mma(V2 y, const uint8_t *xa0, int64_t xrow, const uint8_t *w,
                                                                   float scale1, float scale2, int64_t rb, int M) {
    constexpr int XB = BF16 ? 16 : 32; /* activation bytes a lane and step */
    __shared__ float4 red[GVM_WARPS - 1][WARP_SIZE];
    pdl_enter();
    const int lane = threadIdx.x % WARP_SIZE, wp = threadIdx.x / WARP_SIZE, g = lane >> 2, t = lane & 3;
    const int64_t N = y.cols, n0 = (int64_t)blockIdx.x * 16, steps = rb / 64;
    const bool ra = n0 + g < N, rbv = n0 + g + 8 < N, ca = g < M; /* (rows past N, columns past M: zeros) */
    const uint8_t *wa = w + (ra ? n0 + g : 0) * rb + 16 * t, *wb = w + (rbv ? n0 + g + 8 : 0) * rb + 16 * t,
                  *xa = xa0 + (ca ? g : 0) * xrow + XB * t;
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int64_t s0 = wp; s0 < steps; s0 += GVM_WARPS * GVM_U) {
        uint4 va[GVM_U], vb[GVM_U], vx[GVM_U][2];
#pragma unroll
        for (int u = 0; u < GVM_U; u++) {
            const int64_t s = s0 + (int64_t)u * GVM_WARPS, o = 64 * s;
            const bool in = s < steps;
            va[u] = in && ra ? *(const uint4 *)(wa + o) : make_uint4(0, 0, 0, 0);
            vb[u] = in && rbv ? *(const uint4 *)(wb + o) : make_uint4(0, 0, 0, 0);
            vx[u][0] = in && ca ? *(const uint4 *)(xa + 4 * XB * s) : make_uint4(0, 0, 0, 0);
            if (!BF16) vx[u][1] = in && ca ? *(const uint4 *)(xa + 4 * XB * s + 16) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < GVM_U; u++) {
            if (s0 + (int64_t)u * GVM_WARPS >= steps) break; /* (the same for the whole warp) */
            const uint32_t wA[4] = {va[u].x, va[u].y, va[u].z, va[u].w}, wB[4] = {vb[u].x, vb[u].y, vb[u].z, vb[u].w},
                           xX[8] = {vx[u][0].x, vx[u][0].y, vx[u][0].z, vx[u][0].w,
                                    BF16 ? 0u : vx[u][1].x, BF16 ? 0u : vx[u][1].y, BF16 ? 0u : vx[u][1].z, BF16 ? 0u : vx[u][1].w};
            float d[4] = {0.f, 0.f, 0.f, 0.f};
            if (BF16) {
#pragma unroll
                for (int j = 0; j < 2; j++) { /* elements 4j, 4j + 1 -> slots 2t, 2t + 1; 4j + 2, 4j + 3 -> 2t + 8, 2t + 9 */
                    const uint32_t a[4] = {wA[2 * j], wB[2 * j], wA[2 * j + 1], wB[2 * j + 1]}, b[2] = {xX[2 * j], xX[2 * j + 1]};
                    mma_16816<1>(d, a, b);
                }
            } else {
#pragma unroll
                for (int j = 0; j < 4; j++) { /* bytes 4j, 4j + 1 -> slots 2t, 2t + 1; 4j + 2, 4j + 3 -> 2t + 8, 2t + 9 */
                    const uint32_t a[4] = {e4m3x2_h2(wA[j]), e4m3x2_h2(wB[j]), e4m3x2_h2(wA[j] >> 16), e4m3x2_h2(wB[j] >> 16)};
                    const uint32_t b[2] = {xX[2 * j], xX[2 * j + 1]}; /* (f16 values 4j, 4j + 1 | 4j + 2, 4j + 3) */
                    mma_16816<0>(d, a, b);
                }
            }
#pragma unroll
            for (int i = 0; i < 4; i++) acc[i] += d[i];
        }
    }
    if (wp > 0) red[wp - 1][lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    __syncthreads();
    if (wp != 0) return;
    for (int q = 0; q < GVM_WARPS - 1; q++) {
        const float4 o = red[q][lane];
        acc[0] += o.x, acc[1] += o.y, acc[2] += o.z, acc[3] += o.w;
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t r = n0 + g + 8 * (i / 2);
        const int m = 2 * t + i % 2; /* (D's element i: row g + 8 (i / 2), column 2t + i % 2) */
        if (r < N && m < M) st(y.p, m * y.ld + r, BF16 ? acc[i] : acc[i] * scale1 * scale2, y.dt);
    }
}

/* A kernel switch (NVL_CUDA_FLASH and the like): "0" off, "1" on, else def (kern_env_check has
 * refused any other value before a command runs); each op reads it once (a function-local static). */
static int kernel_switch(const char *name, int def) {
    const char *e = getenv(name);
    return e && (e[0] == '0' || e[0] == '1') && !e[1] ? e[0] == '1' : def;
}

/* NVL_CUDA_GEMV_MMA: "0" 0 (the CUDA-core GEMVs), "all" 2 (BF16's one row on the tensor cores
   too), else 1 (the default: FP8 rows and 2 to 8 BF16 rows there) */
static int gemv_mma_mode(void) {
    static const int m = [] {
        const char *e = getenv("NVL_CUDA_GEMV_MMA");
        return e && !strcmp(e, "0") ? 0 : e && !strcmp(e, "all") ? 2 : 1;
    }();
    return m;
}

cudaDataType cuda_type(int dt) { return dt == DT_BF16 ? CUDA_R_16BF : dt == DT_F16 ? CUDA_R_16F : CUDA_R_32F; }

// ---------------------------------------------------------------------------
// Host side

#define VIEW(t, v, what) CHECK_ST(view(__func__, what, t, &v, err))
#define CHECK_ST(x)                                                                                   \
    do {                                                                                              \
        nvl_status st_ = (x);                                                                         \
        if (st_ != NVL_OK) return st_;                                                                \
    } while (0)
#define DONE() return kern_cuda_after_launch(be, __func__, err)

/* The device tables an op needs: the step's (kern_step_tables) when it is handed the same
 * sequences / ids, else built here and copied into op scratch on the stream (in stream order, so
 * never under a kernel still reading the scratch; pageable copies return once the host data is
 * staged). During a capture only the step's tables will do: an upload would be recorded with
 * this step's values. Rows: the step's rows (row_seq and dec are built for them). */
nvl_status seq_tables(kern_backend *be, const char *op, const kern_seq *seqs, int n_seq, int64_t rows,
                      kern_cuda_tables *tb, nvl_err *err, size_t extra = 0, void **extra_out = NULL) {
    if (kern_cuda_step_seqs(be, seqs, n_seq, tb) && tb->n_rows >= rows) {
        if (extra_out && !(*extra_out = kern_cuda_scratch(be, extra, err))) return NVL_ERR_NOMEM;
        return NVL_OK;
    }
    if (kern_cuda_capturing(be))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: sequence table not set by kern_step_tables during a graph capture",
                           op);
    const size_t sb = ((size_t)n_seq * sizeof(kern_seq) + 255) & ~(size_t)255, rb4 = ((size_t)rows * 4 + 255) & ~(size_t)255;
    const size_t tabs = (sb + rb4 + (size_t)rows + 16 + 255) & ~(size_t)255, total = tabs + extra;
    char *h = (char *)nvl_malloc(tabs);
    if (!h) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", op);
    if (n_seq) memcpy(h, seqs, (size_t)n_seq * sizeof(kern_seq));
    kern_cuda_row_tables((int32_t *)(h + sb), (uint8_t *)(h + sb + rb4), rows, seqs, n_seq);
    char *d = (char *)kern_cuda_scratch(be, total, err);
    nvl_status st = d ? NVL_OK : NVL_ERR_NOMEM;
    if (d && extra_out) *extra_out = d + tabs;
    if (d && cudaMemcpyAsync(d, h, sb + rb4 + (size_t)rows, cudaMemcpyHostToDevice, kern_cuda_stream(be)) != cudaSuccess)
        st = nvl_err_set(err, NVL_ERR_DEVICE, "%s: copying the sequence table", op);
    nvl_free(h);
    if (st != NVL_OK) return st;
    tb->seqs = (const kern_seq *)d;
    tb->row_seq = (const int32_t *)(d + sb);
    tb->dec = (const uint8_t *)(d + sb + rb4);
    tb->n_rows = rows;
    return NVL_OK;
}

constexpr int64_t QUANT_GEMM_MIN_ROWS = 16;     // from here FP8 through cuBLASLt (3. above, when chosen)
constexpr int64_t QUANT_DEQ_GEMM_MIN_ROWS = 64; // from here the dequantized bf16 GEMMs (4, 5 above): below,
                                                // the GEMV reads the stored weight M / 8 times, less than the
                                                // dequantization's ~4.5 (NVFP4) to 5 (FP8) weight sizes
constexpr size_t QUANT_W_CHUNK_BYTES = (size_t)64 << 20; // bf16 weight rows dequantized at a time

/* Weight rows dequantized per chunk by the quantized GEMM: QUANT_W_CHUNK_BYTES of bf16, a multiple
 * of 128 rows, so that each chunk's output columns start 256-byte aligned (6553 rows at K 5120 left
 * the later chunks' outputs 2-byte aligned, off cuBLAS's fast kernels: a review). Tests set
 * NVL_TEST_QUANT_CHUNK_ROWS to run several chunks at small shapes. */
static int64_t quant_chunk_rows(int64_t K) {
    static int64_t test_rows = -1; /* (read once; every thread reads the same value) */
    if (test_rows < 0) {
        const char *e = getenv("NVL_TEST_QUANT_CHUNK_ROWS");
        const long long v = e ? atoll(e) : 0;
        test_rows = v > 0 ? (int64_t)v : 0;
    }
    if (test_rows > 0) return test_rows;
    const int64_t nc = (int64_t)(QUANT_W_CHUNK_BYTES / ((size_t)K * 2)) / 128 * 128;
    return nc < 128 ? 128 : nc;
}

/* The largest power of two (at most 256) that divides a device address. */
uint32_t align_upto256(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a)) a >>= 1;
    return a;
}

/* cuBLASLt plans (FP8 GEMMs; BF16 GEMMs with the bias epilogue: descriptors, layouts and the
 * heuristic's algorithm) kept per shape: making
 * them and asking the heuristic costs tens of microseconds on the host, once per GEMM call
 * otherwise (about 250 GEMMs in a prefill step of the 12B model). Keyed by everything the plan
 * depends on; LT_PLANS of them, replaced round robin; a shape cuBLASLt has no algorithm for is
 * kept too (ok = 0: straight to the direct kernel). The lock is held from the lookup to the
 * enqueue, so a plan is never replaced while a call uses it. */
struct lt_plan {
    int used, ok;
    int dev; /* the device the plan's algorithm was chosen for (two backends may run on two GPUs) */
    int64_t M, N, K, ldb, ldc;
    cudaDataType_t at, yt; /* A's and B's type; C's and D's */
    int bias;              /* the bias epilogue (a bias of D's type, set per call) */
    uint32_t al_a, al_b, al_c, al_bias;
    uint64_t wsb;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
};
constexpr int LT_PLANS = 64;
lt_plan g_lt_plans[LT_PLANS];
int g_lt_next;
pthread_mutex_t g_lt_mu = PTHREAD_MUTEX_INITIALIZER;

void lt_plan_release(lt_plan *p) {
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    memset(p, 0, sizeof *p);
}

/* The plan for y (M x N, row stride ldc, type yt) = x (M x K, row stride ldb) W^T (W: N x K
 * contiguous), x and W of type at, with the bias epilogue when bias (a pointer of the alignment
 * al_bias: the heuristic reads it), made on a miss, under g_lt_mu; NULL when one cannot be made. */
lt_plan *lt_plan_get(cublasLtHandle_t lt, int64_t M, int64_t N, int64_t K, int64_t ldb, int64_t ldc, cudaDataType_t at,
                     cudaDataType_t yt, const void *bias, uint32_t al_a, uint32_t al_b, uint32_t al_c, uint64_t wsb) {
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess) return NULL;
    const uint32_t al_bias = bias ? align_upto256(bias) : 0;
    for (int i = 0; i < LT_PLANS; i++) {
        lt_plan *p = &g_lt_plans[i];
        if (p->used && p->dev == dev && p->M == M && p->N == N && p->K == K && p->ldb == ldb && p->ldc == ldc && p->at == at &&
            p->yt == yt && p->bias == !!bias && p->al_bias == al_bias && p->al_a == al_a && p->al_b == al_b && p->al_c == al_c &&
            p->wsb == wsb)
            return p;
    }
    lt_plan *p = &g_lt_plans[g_lt_next];
    g_lt_next = (g_lt_next + 1) % LT_PLANS;
    lt_plan_release(p);
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    int n_heur = 0;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasStatus_t cs = cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (cs == CUBLAS_STATUS_SUCCESS) cs = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta);
    if (cs == CUBLAS_STATUS_SUCCESS) cs = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb);
    if (cs == CUBLAS_STATUS_SUCCESS && bias) {
        const uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
        cs = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
        if (cs == CUBLAS_STATUS_SUCCESS) cs = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias);
    }
    if (cs == CUBLAS_STATUS_SUCCESS) cs = cublasLtMatrixLayoutCreate(&p->la, at, (uint64_t)K, (uint64_t)N, K);
    if (cs == CUBLAS_STATUS_SUCCESS) cs = cublasLtMatrixLayoutCreate(&p->lb, at, (uint64_t)K, (uint64_t)M, ldb);
    if (cs == CUBLAS_STATUS_SUCCESS) cs = cublasLtMatrixLayoutCreate(&p->lc, yt, (uint64_t)N, (uint64_t)M, ldc);
    if (cs == CUBLAS_STATUS_SUCCESS) cs = cublasLtMatmulPreferenceCreate(&pref);
    if (cs == CUBLAS_STATUS_SUCCESS)
        cs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    /* the pointers' real alignment (cuBLASLt assumes 256 bytes unless told): y is often a row view */
    if (cs == CUBLAS_STATUS_SUCCESS)
        cs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a);
    if (cs == CUBLAS_STATUS_SUCCESS)
        cs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b);
    if (cs == CUBLAS_STATUS_SUCCESS)
        cs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c);
    if (cs == CUBLAS_STATUS_SUCCESS)
        cs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c);
    /* no split-K reduction in the output type (BF16/F16): partial sums stay f32, as in c_matmul */
    const uint32_t red = CUBLASLT_REDUCTION_SCHEME_MASK & ~(uint32_t)CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
    if (cs == CUBLAS_STATUS_SUCCESS)
        cs = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &red, sizeof red);
    if (cs == CUBLAS_STATUS_SUCCESS)
        cs = cublasLtMatmulAlgoGetHeuristic(lt, p->op, p->la, p->lb, p->lc, p->lc, pref, 1, &heur, &n_heur);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (cs != CUBLAS_STATUS_SUCCESS && cs != CUBLAS_STATUS_NOT_SUPPORTED) { /* not a verdict on the shape: ask again */
        lt_plan_release(p);
        return NULL;
    }
    p->used = 1;
    p->ok = cs == CUBLAS_STATUS_SUCCESS && n_heur > 0;
    if (p->ok) p->algo = heur.algo;
    p->dev = dev, p->M = M, p->N = N, p->K = K, p->ldb = ldb, p->ldc = ldc, p->at = at, p->yt = yt, p->bias = !!bias;
    p->al_bias = al_bias, p->al_a = al_a, p->al_b = al_b, p->al_c = al_c, p->wsb = wsb;
    return p;
}

/* FP8 through cuBLASLt (3. above): *done = 0 (nothing run) where the shape or cuBLASLt declines. */
nvl_status matmul_fp8_lt(kern_backend *be, V2 *yv, V2 *xv, const kern_weight *w, int *done, nvl_err *err) {
    *done = 0;
    const int64_t M = xv->rows, N = w->n_out, K = w->n_in;
    const size_t es = dsize(yv->dt);
    if (K % 16 || N % 16 || ((uintptr_t)yv->p % 16) || ((size_t)yv->ld * es) % 16 || ((uintptr_t)w->w.data % 16))
        return NVL_OK;
    uint8_t *xq = (uint8_t *)kern_cuda_scratch(be, (size_t)(M * K), err);
    if (!xq) return NVL_ERR_NOMEM;
    void *ws = NULL;
    size_t wsb = 0;
    cublasLtHandle_t lt = kern_cuda_cublaslt(be, &ws, &wsb);
    nvl_status st = NVL_OK;
    pthread_mutex_lock(&g_lt_mu);
    lt_plan *p = lt_plan_get(lt, M, N, K, K, yv->ld, CUDA_R_8F_E4M3, cuda_type(yv->dt), NULL, align_upto256(w->w.data),
                             align_upto256(xq), align_upto256(yv->p), (uint64_t)wsb);
    if (p && p->ok) {
        k_quant_fp8_codes<<<grid_for(M * K), EW_BLOCK, 0, kern_cuda_stream(be)>>>(xq, *xv, w->input_scale);
        st = kern_cuda_after_launch(be, "c_matmul (FP8 activation codes)", err);
        const float alpha = w->weight_scale * w->input_scale, beta = 0.0f;
        if (st == NVL_OK) {
            const cublasStatus_t cs = cublasLtMatmul(lt, p->op, &alpha, w->w.data, p->la, xq, p->lb, &beta, yv->p, p->lc,
                                                     yv->p, p->lc, &p->algo, ws, wsb, kern_cuda_stream(be));
            if (cs != CUBLAS_STATUS_SUCCESS)
                st = nvl_err_set(err, NVL_ERR_DEVICE, "c_matmul: weight %s: cuBLASLt FP8 matmul status %d", w->name ? w->name : "",
                                 (int)cs);
            else *done = 1;
        }
    }
    pthread_mutex_unlock(&g_lt_mu);
    return st;
}

/* NVFP4 (4. above), or FP8 (5.), through bf16 tensor-core GEMMs. */
nvl_status matmul_quant_gemm(kern_backend *be, V2 *yv, V2 *xv, const kern_weight *w, nvl_err *err) {
    const int nvfp4 = w->quant == KERN_QUANT_NVFP4;
    const int64_t M = xv->rows, N = w->n_out, K = w->n_in;
    int64_t nc = quant_chunk_rows(K);
    if (nc > N) nc = N;
    const size_t xb = ((size_t)(M * K) * 2 + 255) & ~(size_t)255;
    char *sc = (char *)kern_cuda_scratch(be, xb + (size_t)(nc * K) * 2, err);
    if (!sc) return NVL_ERR_NOMEM;
    __nv_bfloat16 *xq = (__nv_bfloat16 *)sc, *wd = (__nv_bfloat16 *)(sc + xb);
    cudaStream_t s = kern_cuda_stream(be);
    if (nvfp4) k_quant_nvfp4_bf16<<<grid_for(M * (K / QBLK)), EW_BLOCK, 0, s>>>(xq, *xv, w->input_scale);
    else k_quant_fp8_vals<__nv_bfloat16><<<grid_for(M * K), EW_BLOCK, 0, s>>>(xq, *xv, w->input_scale);
    CHECK_ST(kern_cuda_after_launch(be, nvfp4 ? "c_matmul (NVFP4 activations)" : "c_matmul (FP8 activations)", err));
    const float alpha = w->input_scale * w->weight_scale, zero = 0.0f;
    const size_t es = dsize(yv->dt);
    for (int64_t n0 = 0; n0 < N; n0 += nc) {
        const int64_t nn = N - n0 < nc ? N - n0 : nc;
        if (nvfp4)
            k_dequant_nvfp4_w<<<grid_for(nn * K / 2), EW_BLOCK, 0, s>>>(wd, (const uint8_t *)w->w.data,
                                                                        (const uint8_t *)w->block_scale.data, n0, nn, K);
        else
            k_dequant_fp8_w<<<grid_for(nn * K), EW_BLOCK, 0, s>>>(wd, (const uint8_t *)w->w.data, n0, nn, K);
        CHECK_ST(kern_cuda_after_launch(be, "c_matmul (dequantized weight rows)", err));
        CUBLAS_CHECK(cublasGemmEx(kern_cuda_cublas(be), CUBLAS_OP_T, CUBLAS_OP_N, (int)nn, (int)M, (int)K, &alpha, wd,
                                  CUDA_R_16BF, (int)K, xq, CUDA_R_16BF, (int)K, &zero, (char *)yv->p + (size_t)n0 * es,
                                  cuda_type(yv->dt), (int)yv->ld, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
    return kern_cuda_after_launch(be, nvfp4 ? "c_matmul (NVFP4 GEMM)" : "c_matmul (FP8 GEMM)", err);
}

/* FP8 / NVFP4 weights (kern_matmul has checked shapes, dtypes and positive scales): the
 * activations quantize-dequantized into scratch, then the direct kernel. The stored bytes and
 * NVFP4 block scales are on the device (kern_weights_place uploads them as stored); the two f32
 * scales travel as kernel arguments. */
nvl_status matmul_quant(kern_backend *be, V2 *yv, V2 *xv, const kern_weight *w, nvl_err *err) {
    const int nvfp4 = w->quant == KERN_QUANT_NVFP4;
    const char *wn = w->name ? w->name : "";
    if (w->quant != KERN_QUANT_FP8 && !nvfp4)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "c_matmul: weight %s: quantization %d on CUDA", wn, (int)w->quant);
    if (w->w.device != NVL_DEVICE_CUDA || (nvfp4 && w->block_scale.device != NVL_DEVICE_CUDA))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "c_matmul: quantized weight %s (or its block scales) is not placed on "
                           "the device (kern_weights_place)", wn);
    const int64_t M = xv->rows, K = w->n_in;
    if (M == 0) return NVL_OK;
    /* FP8 through cuBLASLt's FP8 tensor cores only with NVL_CUDA_FP8_LT=1: their sums keep ~14
       bits within each k-block (3. above), which moves the tiny VL checkpoint's logits NMSE 7e-4
       from modelopt's forward (7 % of what dropping the activation quantization moves them; the
       emulator's model of it), where the bf16 factors (5.) stay at 1e-13 */
    static const int fp8_lt_on = kernel_switch("NVL_CUDA_FP8_LT", 0);
    if (!nvfp4 && fp8_lt_on && M >= QUANT_GEMM_MIN_ROWS) {
        int done = 0;
        CHECK_ST(matmul_fp8_lt(be, yv, xv, w, &done, err));
        if (done) return NVL_OK;
    }
    /* (cublasGemmEx has bf16 x bf16 -> bf16 / f32, not -> f16: an F16 y takes the direct kernel) */
    if (M >= QUANT_DEQ_GEMM_MIN_ROWS && yv->dt != DT_F16) return matmul_quant_gemm(be, yv, xv, w, err);
    /* the GEMV where its loads fit (NVL_CUDA_GEMV=0: never, for comparisons) */
    static const int gemv_on = kernel_switch("NVL_CUDA_GEMV", 1), gemv_i8_on = kernel_switch("NVL_CUDA_GEMV_I8", 1);
    const int64_t per_block = EW_BLOCK / WARP_SIZE, by = (M + QM - 1) / QM;
    const int64_t gx = (w->n_out + per_block * GV_ROWS - 1) / (per_block * GV_ROWS);
    const int64_t gy = (M + gv_qm(nvfp4) - 1) / gv_qm(nvfp4);
    const int gemv_fits = gemv_on && K % 32 == 0 && ((uintptr_t)w->w.data & 15) == 0 && gx <= 0x7fffffffLL;
    if (nvfp4 && M == 1 && gemv_fits && gemv_i8_on) { /* one NVFP4 row: in integers (k_gemv_nvfp4_i8) */
        int8_t *codes = (int8_t *)kern_cuda_scratch(be, (size_t)K + (size_t)(K / QBLK) * sizeof(float), err);
        if (!codes) return NVL_ERR_NOMEM;
        float *scales = (float *)(codes + K); /* (K % 32 == 0: 16-byte aligned) */
        launch_pdl(k_quant_nvfp4_i8, grid_for(K / QBLK), EW_BLOCK, 0, kern_cuda_stream(be), codes, scales, *xv,
            w->input_scale);
        CHECK_ST(kern_cuda_after_launch(be, "c_matmul (NVFP4 activation codes)", err));
        launch_pdl(k_gemv_nvfp4_i8, dim3((unsigned)gx), EW_BLOCK, 0, kern_cuda_stream(be), *yv, codes, scales,
            (const uint8_t *)w->w.data, (const uint8_t *)w->block_scale.data, w->weight_scale, K);
        return kern_cuda_after_launch(be, "c_matmul (NVFP4 GEMV in integers)", err);
    }
    /* FP8 rows on the tensor cores (k_gemv_mma; NVL_CUDA_GEMV_MMA=0: the CUDA-core GEMV below) */
    if (!nvfp4 && M <= GVM_M && gemv_on && gemv_mma_mode() && K % 64 == 0 && ((uintptr_t)w->w.data & 15) == 0 &&
        (w->n_out + 15) / 16 <= 0x7fffffffLL) {
        __half *xh = (__half *)kern_cuda_scratch(be, (size_t)(M * K) * sizeof(__half), err);
        if (!xh) return NVL_ERR_NOMEM;
        launch_pdl(k_quant_fp8_vals<__half>, grid_for(M * K), EW_BLOCK, 0, kern_cuda_stream(be), xh, *xv, w->input_scale);
        CHECK_ST(kern_cuda_after_launch(be, "c_matmul (FP8 activations as f16)", err));
        launch_pdl(k_gemv_mma<0>, dim3((unsigned)((w->n_out + 15) / 16)), GVM_WARPS * WARP_SIZE, 0, kern_cuda_stream(be), *yv,
            (const uint8_t *)xh, 2 * K, (const uint8_t *)w->w.data, w->input_scale, w->weight_scale, K, (int)M);
        return kern_cuda_after_launch(be, "c_matmul (FP8 GEMV on the tensor cores)", err);
    }
    float *xq = (float *)kern_cuda_scratch(be, (size_t)(M * K) * sizeof(float), err);
    if (!xq) return NVL_ERR_NOMEM;
    const int64_t n_act = nvfp4 ? M * (K / QBLK) : M * K;
    launch_pdl(k_quant_act, grid_for(n_act), EW_BLOCK, 0, kern_cuda_stream(be), xq, *xv, nvfp4, w->input_scale);
    CHECK_ST(kern_cuda_after_launch(be, "c_matmul (activation quantization)", err));
    if (gemv_fits && gy <= 65535) {
        if (nvfp4)
            launch_pdl(k_gemv_quant<1>, dim3((unsigned)gx, (unsigned)gy), EW_BLOCK, 0, kern_cuda_stream(be), *yv, xq,
                (const uint8_t *)w->w.data, (const uint8_t *)w->block_scale.data, w->weight_scale, K, M);
        else
            launch_pdl(k_gemv_quant<0>, dim3((unsigned)gx, (unsigned)gy), EW_BLOCK, 0, kern_cuda_stream(be), *yv, xq,
                (const uint8_t *)w->w.data, (const uint8_t *)nullptr, w->weight_scale, K, M);
        return kern_cuda_after_launch(be, "c_matmul (quantized GEMV)", err);
    }
    const int64_t bx = (w->n_out + per_block - 1) / per_block;
    if (bx > 0x7fffffffLL || by > 65535)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "c_matmul: %lld x %lld outputs are too many for the direct quantized "
                           "kernel", (long long)M, (long long)w->n_out);
    k_matmul_quant<<<dim3((unsigned)bx, (unsigned)by), EW_BLOCK, 0, kern_cuda_stream(be)>>>(
        *yv, xq, (const uint8_t *)w->w.data, nvfp4 ? (const uint8_t *)w->block_scale.data : NULL, nvfp4, w->weight_scale, K, M);
    return kern_cuda_after_launch(be, "c_matmul (quantized)", err);
}

// The BF16 decode GEMV: y[m, n] = sum_k x[m, k] W[n, k] for up to GVB_M activation rows, W and x
// bf16 (16-byte aligned rows). A warp takes R output rows (R = 1 up to N = 16384, else 2, so
// even k and v's 1024 outputs make 128 blocks for 132 SMs), its lanes 16-byte chunks (8 weights)
// of each row, consecutive lanes consecutive chunks; the weight is read once for all M rows, the
// products (exact in f32) summed in f32 per lane, then across the warp. cuBLAS chooses its own
// kernel per shape at one row (bench_ops compares them: NVL_CUDA_GEMV=0 keeps cuBLAS).
constexpr int GVB_M = 8;
__device__ __forceinline__ void bf16x8_f32(uint4 v, float (&f)[8]) {
    const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int q = 0; q < 4; q++) { /* little-endian: the lower half is the element first in memory */
        f[2 * q] = __uint_as_float(u[q] << 16);
        f[2 * q + 1] = __uint_as_float(u[q] & 0xffff0000u);
    }
}
// U: a lane's weight loads issued together before their products (U per row: the latency of
// one round trip to memory is paid K / (256 U) times a warp; ncu found the kernel waiting on its
// loads, 85 % of its stalls, with two in flight). The products and their order are the same
// for every U: each lane sums its chunks in order of k.
template <int U, int R>
__device__ __forceinline__ void gemv_bf16_load(uint4 (&v)[U][R], const __nv_bfloat16 *w, int64_t n0, int64_t N, int64_t K,
                                               int64_t c0, int64_t chunks) {
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int r = 0; r < R; r++) {
            const int64_t c = c0 + u * WARP_SIZE;
            v[u][r] = c < chunks && n0 + r < N ? *(const uint4 *)(w + (n0 + r) * K + 8 * c) : make_uint4(0, 0, 0, 0);
        }
}
template <int R, int U>
__global__ void __launch_bounds__(EW_BLOCK) k_gemv_bf16(V2 y, V2 x, const __nv_bfloat16 *w, int64_t K) {
    const int lane = threadIdx.x % WARP_SIZE;
    const int64_t n0 = ((int64_t)blockIdx.x * (EW_BLOCK / WARP_SIZE) + threadIdx.x / WARP_SIZE) * R, N = y.cols;
    if (n0 >= N) return; /* whole warps */
    const int M = (int)x.rows;
    float acc[GVB_M][R];
#pragma unroll
    for (int m = 0; m < GVB_M; m++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[m][r] = 0.f;
    const int64_t chunks = K / 8;
    uint4 v[U][R];
    gemv_bf16_load(v, w, n0, N, K, lane, chunks); /* the weights are constant: their first loads go
                                                     out before the grid before ends */
    pdl_enter();
    for (int64_t c0 = lane; c0 < chunks; c0 += U * WARP_SIZE) {
        if (c0 != lane) gemv_bf16_load(v, w, n0, N, K, c0, chunks);
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int64_t c = c0 + u * WARP_SIZE;
            if (c >= chunks) continue; /* (a lane past K's end) */
            float wf[R][8];
#pragma unroll
            for (int r = 0; r < R; r++) bf16x8_f32(v[u][r], wf[r]);
#pragma unroll
            for (int m = 0; m < GVB_M; m++) { /* (compile-time indices keep acc in registers) */
                if (m >= M) break;
                float xf[8];
                bf16x8_f32(*(const uint4 *)((const __nv_bfloat16 *)x.p + m * x.ld + 8 * c), xf);
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[m][r] = fmaf(xf[i], wf[r][i], acc[m][r]);
            }
        }
    }
    gemv_store(y, acc, M, 0, n0, N, 1.0f, lane); /* (x 1.0f: exact) */
}
/* the loads in flight a lane keeps per weight row (NVL_CUDA_GEMV_DEPTH: 2, 4 or 8; default 4) */
static int gemv_depth(void) {
    const char *v = getenv("NVL_CUDA_GEMV_DEPTH");
    return v && !strcmp(v, "2") ? 2 : v && !strcmp(v, "8") ? 8 : 4;
}
template <int R>
static void gemv_bf16_launch(int depth, unsigned blocks, cudaStream_t s, V2 y, V2 x, const __nv_bfloat16 *w, int64_t K) {
    if (depth == 2) launch_pdl(k_gemv_bf16<R, 2>, blocks, EW_BLOCK, 0, s, y, x, w, K);
    else if (depth == 8) launch_pdl(k_gemv_bf16<R, 8>, blocks, EW_BLOCK, 0, s, y, x, w, K);
    else launch_pdl(k_gemv_bf16<R, 4>, blocks, EW_BLOCK, 0, s, y, x, w, K);
}

nvl_status c_matmul(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const kern_weight *w, nvl_err *err) {
    V2 yv, xv;
    VIEW(y, yv, "y");
    VIEW(x, xv, "x");
    if (w->quant != KERN_QUANT_NONE) return matmul_quant(be, &yv, &xv, w, err);
    const int wdt = dcode(w->w.dtype);
    if (wdt < 0) return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: weight dtype %s", __func__, nvl_dtype_name(w->w.dtype));
    const int64_t M = xv.rows, N = w->n_out, K = w->n_in;
    if (M == 0) return NVL_OK;
    static const int gemv_on = kernel_switch("NVL_CUDA_GEMV", 1), gemv_mma = gemv_mma_mode();
    /* 2 to 8 rows on the tensor cores (k_gemv_mma; one row: k_gemv_bf16 below, or here too with
       NVL_CUDA_GEMV_MMA=all, to compare them) */
    if (gemv_on && gemv_mma && wdt == DT_BF16 && xv.dt == DT_BF16 && M >= (gemv_mma == 2 ? 1 : 2) && M <= GVM_M && K % 32 == 0 &&
        xv.ld % 8 == 0 && ((uintptr_t)xv.p & 15) == 0 && ((uintptr_t)w->w.data & 15) == 0 && (N + 15) / 16 <= 0x7fffffffLL) {
        launch_pdl(k_gemv_mma<1>, dim3((unsigned)((N + 15) / 16)), GVM_WARPS * WARP_SIZE, 0, kern_cuda_stream(be), yv,
            (const uint8_t *)xv.p, xv.ld * 2, (const uint8_t *)w->w.data, 1.0f, 1.0f, 2 * K, (int)M);
        DONE();
    }
    if (gemv_on && wdt == DT_BF16 && xv.dt == DT_BF16 && M <= GVB_M && K % 8 == 0 && xv.ld % 8 == 0 &&
        ((uintptr_t)xv.p & 15) == 0 && ((uintptr_t)w->w.data & 15) == 0) {
        const int R = N < 16384 ? 1 : 2; /* output rows per warp */
        const unsigned blocks = (unsigned)((N + R * (EW_BLOCK / WARP_SIZE) - 1) / (R * (EW_BLOCK / WARP_SIZE)));
        const __nv_bfloat16 *wb = (const __nv_bfloat16 *)w->w.data;
        static const int depth = gemv_depth();
        if (R == 1) gemv_bf16_launch<1>(depth, blocks, kern_cuda_stream(be), yv, xv, wb, K);
        else gemv_bf16_launch<2>(depth, blocks, kern_cuda_stream(be), yv, xv, wb, K);
        DONE();
    }
    /* cublasGemmEx with f32 compute takes bf16 x bf16 -> bf16 / f32, f16 x f16 -> f16 / f32, f32 x f32
       -> f32; any other combination goes to the tiled kernel */
    if (wdt == xv.dt && (yv.dt == xv.dt || yv.dt == DT_F32)) {
        // row-major y[M,N] = x[M,K] W[N,K]^T as column-major y^T (N x M) = W (N x K) . x^T (K x M)
        const float one = 1.f, zero = 0.f;
        /* (the handle's stream and workspace are set once at init: cublasSetStream would reset the
           workspace, and a captured GEMM must not allocate one) */
        CUBLAS_CHECK(cublasGemmEx(kern_cuda_cublas(be), CUBLAS_OP_T, CUBLAS_OP_N, (int)N, (int)M, (int)K, &one, w->w.data,
                                  cuda_type(wdt), (int)K, xv.p, cuda_type(xv.dt), (int)xv.ld, &zero, yv.p, cuda_type(yv.dt),
                                  (int)yv.ld, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        DONE();
    }
    if ((M + TILE - 1) / TILE > 65535 || (N + TILE - 1) / TILE > 0x7fffffffLL) /* (grid y's limit) */
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: %lld rows of %s x %s weights: more than the tiled kernel's %d",
                           __func__, (long long)M, nvl_dtype_name(x->dtype), nvl_dtype_name(w->w.dtype), 65535 * TILE);
    dim3 grid((unsigned)((N + TILE - 1) / TILE), (unsigned)((M + TILE - 1) / TILE)), block(TILE, TILE);
    k_matmul_tiled<<<grid, block, 0, kern_cuda_stream(be)>>>(yv, xv, w->w.data, wdt, K);
    DONE();
}

/* kern_matmul_bias on cuBLASLt's bias epilogue: BF16 x, W, y and bias on the device, 16-byte
 * aligned rows; D = x W^T + bias in f32, converted to bf16 once (the epilogue adds the bias
 * before the conversion: the CPU's matmul into f32, then kern_bias_act). Where it fuses, *p is
 * its plan (under g_lt_mu, held on return: the caller unlocks); 0 otherwise, unlocked. */
int matmul_bias_plan(kern_backend *be, const nvl_tensor *y, const nvl_tensor *x, const kern_weight *w, const nvl_tensor *bias,
                     lt_plan **p) {
    *p = NULL;
    const nvl_tensor *ts[3] = {y, x, bias};
    for (int i = 0; i < 3; i++)
        if (ts[i]->widened || ts[i]->dtype != NVL_DTYPE_BF16 || ((uintptr_t)ts[i]->data & 15)) return 0;
    if (w->quant != KERN_QUANT_NONE || w->w.dtype != NVL_DTYPE_BF16 || w->w.device != NVL_DEVICE_CUDA ||
        bias->device != NVL_DEVICE_CUDA || ((uintptr_t)w->w.data & 15) || x->n_dims != 2 || y->n_dims != 2 ||
        x->stride[0] % 8 || y->stride[0] % 8 || w->n_in % 8 || x->shape[0] < 1)
        return 0;
    void *ws = NULL;
    size_t wsb = 0;
    cublasLtHandle_t lt = kern_cuda_cublaslt(be, &ws, &wsb);
    pthread_mutex_lock(&g_lt_mu);
    lt_plan *pl = lt_plan_get(lt, x->shape[0], w->n_out, w->n_in, x->stride[0], y->stride[0], CUDA_R_16BF, CUDA_R_16BF,
                              bias->data, align_upto256(w->w.data), align_upto256(x->data), align_upto256(y->data), (uint64_t)wsb);
    if (!pl || !pl->ok) {
        pthread_mutex_unlock(&g_lt_mu);
        return 0;
    }
    *p = pl;
    return 1;
}

int c_matmul_bias_fused(kern_backend *be, const nvl_tensor *y, const nvl_tensor *x, const kern_weight *w, const nvl_tensor *bias) {
    static const int on = kernel_switch("NVL_CUDA_LT_BIAS", 1); /* 0: the GEMM into f32, then the bias kernel */
    if (!on) return 0;
    lt_plan *p;
    if (!matmul_bias_plan(be, y, x, w, bias, &p)) return 0;
    pthread_mutex_unlock(&g_lt_mu);
    return 1;
}

nvl_status c_matmul_bias(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const kern_weight *w, const nvl_tensor *bias,
                         nvl_err *err) {
    lt_plan *p;
    if (!matmul_bias_plan(be, y, x, w, bias, &p))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: weight %s: %s x %s -> %s with a %s bias: no fused GEMM on CUDA", __func__,
                           w->name ? w->name : "", nvl_dtype_name(x->dtype), nvl_dtype_name(w->w.dtype), nvl_dtype_name(y->dtype),
                           nvl_dtype_name(bias->dtype));
    EMU_CHECK_DEVICE_PTR(__func__, "x", x->data);
    EMU_CHECK_DEVICE_PTR(__func__, "y", y->data);
    void *ws = NULL;
    size_t wsb = 0;
    cublasLtHandle_t lt = kern_cuda_cublaslt(be, &ws, &wsb);
    const float one = 1.0f, zero = 0.0f;
    const void *bp = bias->data;
    cublasStatus_t cs = cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp);
    if (cs == CUBLAS_STATUS_SUCCESS)
        cs = cublasLtMatmul(lt, p->op, &one, w->w.data, p->la, x->data, p->lb, &zero, y->data, p->lc, y->data, p->lc, &p->algo,
                            ws, wsb, kern_cuda_stream(be));
    pthread_mutex_unlock(&g_lt_mu);
    if (cs != CUBLAS_STATUS_SUCCESS)
        return nvl_err_set(err, NVL_ERR_DEVICE, "%s: weight %s: cuBLASLt matmul with the bias epilogue: status %d", __func__,
                           w->name ? w->name : "", (int)cs);
    DONE();
}

nvl_status c_rmsnorm(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w, float eps, nvl_err *err) {
    V2 yv, xv;
    VIEW(y, yv, "y");
    VIEW(x, xv, "x");
    if (xv.rows) launch_pdl(k_rmsnorm, (unsigned)xv.rows, ROW_BLOCK, 0, kern_cuda_stream(be), yv, xv, w->data,
        dcode(w->dtype), eps);
    DONE();
}

nvl_status c_rmsnorm_gated(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *z, const nvl_tensor *w,
                           int64_t n_group, float eps, const kern_seq *seqs, int n_seq, nvl_err *err) {
    V2 yv, xv, zv;
    VIEW(y, yv, "y");
    VIEW(x, xv, "x");
    VIEW(z, zv, "z");
    const uint8_t *ddec = NULL;
    if (zv.dt == DT_BF16 && n_seq > 0) {
        kern_cuda_tables tb;
        CHECK_ST(seq_tables(be, __func__, seqs, n_seq, xv.rows, &tb, err));
        ddec = tb.dec;
    }
    if (xv.rows)
        launch_pdl(k_rmsnorm_gated, dim3((unsigned)xv.rows, (unsigned)n_group), ROW_BLOCK, 0, kern_cuda_stream(be), yv,
            xv, zv, w->data, dcode(w->dtype), xv.cols / n_group, eps, ddec);
    DONE();
}

nvl_status c_layernorm(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w, const nvl_tensor *b,
                       float eps, nvl_err *err) {
    V2 yv, xv;
    VIEW(y, yv, "y");
    VIEW(x, xv, "x");
    if (xv.rows)
        k_layernorm<<<(unsigned)xv.rows, ROW_BLOCK, 0, kern_cuda_stream(be)>>>(yv, xv, w->data, dcode(w->dtype), b->data,
                                                                                dcode(b->dtype), eps);
    DONE();
}

nvl_status c_add(kern_backend *be, nvl_tensor *y, const nvl_tensor *a, const nvl_tensor *b, nvl_err *err) {
    V2 yv, av, bv;
    VIEW(y, yv, "y");
    VIEW(a, av, "a");
    VIEW(b, bv, "b");
    const int64_t n = av.rows * av.cols;
    if (n) launch_pdl(k_add, grid_rc(av.rows, av.cols), EW_BLOCK, 0, kern_cuda_stream(be), yv, av, bv);
    DONE();
}

nvl_status c_bias_act(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *bias, kern_act_fn act,
                      nvl_err *err) {
    V2 yv, xv;
    VIEW(y, yv, "y");
    VIEW(x, xv, "x");
    const int64_t n = xv.rows * xv.cols;
    if (n)
        launch_pdl(k_bias_act, grid_rc(xv.rows, xv.cols), EW_BLOCK, 0, kern_cuda_stream(be), yv, xv,
            bias ? bias->data : NULL, bias ? dcode(bias->dtype) : 0, (int)act);
    DONE();
}

nvl_status c_copy(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, nvl_err *err) {
    V2 yv, xv;
    VIEW(y, yv, "y");
    VIEW(x, xv, "x");
    const int64_t n = xv.rows * xv.cols;
    if (n) launch_pdl(k_copy, grid_rc(xv.rows, xv.cols), EW_BLOCK, 0, kern_cuda_stream(be), yv, xv);
    DONE();
}

/* greedy: one block per row; (value, index) pairs where a candidate wins on a larger value or an
   equal value at a lower index (so the first index of the maximum), NaN never (x > v and x == v
   are both false); a NaN at index 0 (which the sequential loop would pick), a row of NaN or a
   maximum that is infinite answers -1 (kern_argmax_rows) */
__device__ __forceinline__ void am_take(float &v, int &i, float x, int j) {
    if (x > v || (x == v && j < i)) v = x, i = j;
}
__global__ void k_argmax_rows(int32_t *ids, V2 x) {
    pdl_enter();
    __shared__ float sv[32];
    __shared__ int si[32];
    const int64_t r = blockIdx.x;
    float v = -INFINITY;
    int i = 0x7fffffff;
    for (int64_t j = threadIdx.x; j < x.cols; j += blockDim.x) am_take(v, i, ld(x.p, r * x.ld + j, x.dt), (int)j);
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        am_take(v, i, ov, oi);
    }
    const int w = threadIdx.x / WARP_SIZE, l = threadIdx.x % WARP_SIZE;
    if (l == 0) sv[w] = v, si[w] = i;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int k = 1; k < (int)(blockDim.x / WARP_SIZE); k++) am_take(v, i, sv[k], si[k]);
        const float x0 = x.cols > 0 ? ld(x.p, r * x.ld, x.dt) : 0.f;
        ids[r] = (x0 != x0 || i == 0x7fffffff || !isfinite(v)) ? -1 : i;
    }
}

nvl_status c_argmax_rows(kern_backend *be, int32_t *ids, const nvl_tensor *x, nvl_err *err) {
    V2 xv;
    VIEW(x, xv, "x");
    if (!xv.rows) return NVL_OK;
    if (kern_cuda_capturing(be))
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: copies ids to the host, which a graph capture cannot", __func__);
    int32_t *d = (int32_t *)kern_cuda_scratch(be, (size_t)xv.rows * sizeof(int32_t), err);
    if (!d) return NVL_ERR_NOMEM;
    launch_pdl(k_argmax_rows, (unsigned)xv.rows, ROW_BLOCK, 0, kern_cuda_stream(be), d, xv);
    CHECK_ST(kern_cuda_after_launch(be, __func__, err));
    CUDA_CHECK(cudaMemcpyAsync(ids, d, (size_t)xv.rows * sizeof(int32_t), cudaMemcpyDeviceToHost, kern_cuda_stream(be)));
    CUDA_CHECK(cudaStreamSynchronize(kern_cuda_stream(be)));
    return NVL_OK;
}

nvl_status c_dt_softplus(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *bias, float lo, float hi,
                         nvl_err *err) {
    V2 yv, xv;
    VIEW(y, yv, "y");
    VIEW(x, xv, "x");
    const int64_t n = xv.rows * xv.cols;
    if (n) launch_pdl(k_dt_softplus, grid_rc(xv.rows, xv.cols), EW_BLOCK, 0, kern_cuda_stream(be), yv, xv, bias->data,
        dcode(bias->dtype), lo, hi);
    DONE();
}

nvl_status c_get_rows(kern_backend *be, nvl_tensor *y, const nvl_tensor *table, const int32_t *ids, const nvl_tensor *rows,
                      const uint8_t *mask, nvl_err *err) {
    V2 yv, tv, rv = {};
    VIEW(y, yv, "y");
    VIEW(table, tv, "table");
    if (rows) VIEW(rows, rv, "rows");
    const int64_t T = yv.rows;
    for (int64_t t = 0; t < T; t++)
        if (!(mask && mask[t]) && (ids[t] < 0 || ids[t] >= tv.rows))
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "token id %d at row %lld is outside the vocabulary of %lld", ids[t],
                               (long long)t, (long long)tv.rows);
    kern_cuda_tables tb;
    const int32_t *dids;
    const uint8_t *dmask;
    if (kern_cuda_step_ids(be, ids, mask, T, &tb)) {
        dids = tb.ids;
        dmask = tb.mask;
    } else {
        if (kern_cuda_capturing(be))
            return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: token ids not set by kern_step_tables during a graph capture",
                               __func__);
        char *d = (char *)kern_cuda_scratch(be, (size_t)T * 5 + 16, err);
        if (!d) return NVL_ERR_NOMEM;
        CUDA_CHECK(cudaMemcpyAsync(d, ids, (size_t)T * 4, cudaMemcpyHostToDevice, kern_cuda_stream(be)));
        if (mask) CUDA_CHECK(cudaMemcpyAsync(d + (size_t)T * 4, mask, (size_t)T, cudaMemcpyHostToDevice, kern_cuda_stream(be)));
        dids = (const int32_t *)d;
        dmask = mask ? (const uint8_t *)(d + (size_t)T * 4) : NULL;
    }
    if (T) launch_pdl(k_get_rows, (unsigned)T, ROW_BLOCK, 0, kern_cuda_stream(be), yv, tv, dids, rv, dmask);
    DONE();
}

nvl_status c_conv1d(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w, const nvl_tensor *bias,
                    nvl_tensor *state, const kern_seq *seqs, int n_seq, nvl_err *err) {
    V2 yv, xv;
    VIEW(y, yv, "y");
    VIEW(x, xv, "x");
    kern_cuda_tables tb;
    CHECK_ST(seq_tables(be, __func__, seqs, n_seq, xv.rows, &tb, err));
    const kern_seq *ds = tb.seqs;
    const int64_t n = (int64_t)n_seq * xv.cols, Kc = w->shape[1], nr = xv.rows * xv.cols;
    /* (y over x in place: an output row would be written while later rows still read it as input;
       the sequential kernel reads each row before writing it) */
    const char *x0 = (const char *)xv.p, *x1 = x0 + (size_t)(xv.rows ? (xv.rows - 1) * xv.ld + xv.cols : 0) * dsize(xv.dt),
               *y0 = (const char *)yv.p, *y1 = y0 + (size_t)(yv.rows ? (yv.rows - 1) * yv.ld + yv.cols : 0) * dsize(yv.dt);
    const int overlap = x0 < y1 && y0 < x1;
    const int64_t row_groups = (xv.rows + CONV_RG - 1) / CONV_RG;
    if (Kc <= CONV_MAX_K && !overlap && row_groups <= 65535) { /* parallel over rows, then the state */
        if (nr)
            launch_pdl(k_conv1d_rows, dim3((unsigned)((xv.cols + EW_BLOCK - 1) / EW_BLOCK), (unsigned)row_groups),
                EW_BLOCK, 0, kern_cuda_stream(be), yv, xv, (const float *)w->data, bias ? bias->data : NULL,
                bias ? dcode(bias->dtype) : 0, (const float *)state->data, Kc, ds, tb.row_seq);
        if (n) {
            CHECK_ST(kern_cuda_after_launch(be, __func__, err));
            launch_pdl(k_conv1d_state, (unsigned)((n + EW_BLOCK - 1) / EW_BLOCK), EW_BLOCK, 0, kern_cuda_stream(be), xv,
                (float *)state->data, Kc, ds, n_seq);
        }
        DONE();
    }
    if (n)
        launch_pdl(k_conv1d, (unsigned)((n + EW_BLOCK - 1) / EW_BLOCK), EW_BLOCK, 0, kern_cuda_stream(be), yv, xv,
            (const float *)w->data, bias ? bias->data : NULL, bias ? dcode(bias->dtype) : 0, (float *)state->data, Kc,
            ds, n_seq);
    DONE();
}

/* NVL_CUDA_SSD: 0 the recurrence for every sequence, 1 (the default) the chunked form in windows
   of chunks (k_ssd_chunk_state / k_ssd_state_pass / k_ssd_chunk_scan), seq the chunked form one
   block per head walking its chunks (k_ssm_chunked), to compare them (bench_ops). */
enum { SSD_OFF, SSD_WINDOWS, SSD_SEQUENTIAL };
static int ssd_choice(void) {
    const char *e = getenv("NVL_CUDA_SSD");
    if (e && !strcmp(e, "0")) return SSD_OFF;
    if (e && !strcmp(e, "seq")) return SSD_SEQUENTIAL;
    return SSD_WINDOWS; /* (kern_backend_check_env refuses other values) */
}
/* Chunks per window: what SSD_WINDOW_BYTES of chunk states hold (at least one), or
   NVL_CUDA_SSD_WINDOW's count (tests: windows that split a sequence). */
static int64_t ssd_window_chunks(int64_t H, int64_t P, int64_t N) {
    const char *e = getenv("NVL_CUDA_SSD_WINDOW");
    if (e && atoll(e) > 0) return atoll(e);
    const int64_t per = H * P * N * 4, n = (int64_t)(SSD_WINDOW_BYTES / (size_t)per);
    return n > 0 ? n : 1;
}

nvl_status c_ssm_scan(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *dt, const nvl_tensor *A,
                      const nvl_tensor *B, const nvl_tensor *C, const nvl_tensor *D, nvl_tensor *state, int64_t n_group,
                      int64_t chunk, kern_scan_mode mode, const kern_seq *seqs, int n_seq, nvl_err *err) {
    (void)chunk; /* chunks of SSD_Q rows; mode decides the bf16 roundings of decode rows */
    V2 yv, xv, dv, bv, cv;
    VIEW(y, yv, "y");
    VIEW(x, xv, "x");
    VIEW(dt, dv, "dt");
    VIEW(B, bv, "B");
    VIEW(C, cv, "C");
    const int64_t H = state->shape[1], P = state->shape[2], N = state->shape[3], n = (int64_t)n_seq * H * P * SCAN_LANES;
    if (N > (int64_t)SCAN_LANES * SCAN_NPL)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: state size %lld > %d", __func__, (long long)N, SCAN_LANES * SCAN_NPL);
    /* sequences of SSD_MIN_ROWS rows or more to the chunked form unless the recurrence is asked
       for, when x, B and C are bf16 and P, N multiples of 16 whose tiles fit the shared memory; the
       rest to the recurrence */
    static const int ssd = ssd_choice();
    const size_t optin = kern_cuda_smem_optin(be);
    int64_t n_long = 0, n_chunks = 0;
    for (int i = 0; i < n_seq; i++)
        if (seqs[i].n_rows >= SSD_MIN_ROWS && seqs[i].slot >= 0) {
            n_long++;
            n_chunks += (seqs[i].n_rows + SSD_Q - 1) / SSD_Q;
        }
    /* head columns per block: k_ssm_chunked's all, or fewer (multiples of 16 dividing P) while its
       blocks would not fill the device's SMs twice; the windows' scan: all (up to SSD_TPW tiles
       a warp) unless they do not fit the shared memory, then 16 */
    int64_t pb = P;
    size_t smem = 0, smem_state = 0;
    if (ssd == SSD_SEQUENTIAL) {
        for (int64_t q = P - 16; q >= 16 && n_long * H * (P / pb) < 2 * (int64_t)kern_cuda_sm_count(be); q -= 16)
            if (P % q == 0) pb = q;
        smem = ssd_plan(pb, N).total;
    } else {
        if ((SSD_Q / 16) * (P / 16) > SSD_WARPS * SSD_TPW) pb = 16;
        smem = ssd_scan_plan(pb, N).total;
        smem_state = ssd_state_plan(P, N).total;
    }
    if (smem > optin && P % 16 == 0) { /* a smaller slice may fit where the whole head does not */
        pb = 16;
        smem = ssd == SSD_SEQUENTIAL ? ssd_plan(pb, N).total : ssd_scan_plan(pb, N).total;
    }
    const int chunked = ssd != SSD_OFF && n_long && mode != KERN_SCAN_RECURRENT && xv.dt == DT_BF16 &&
                        bv.dt == DT_BF16 && cv.dt == DT_BF16 && P % 16 == 0 && N % 16 == 0 && smem <= optin &&
                        smem_state <= optin && H <= 65535 && P / pb <= 65535 &&
                        (ssd == SSD_SEQUENTIAL || (SSD_Q / 16) * (pb / 16) <= SSD_WARPS * SSD_TPW); /* (the
                        y tiles k_ssd_chunk_scan's warps hold) */
    const int64_t chunk_rows = chunked ? SSD_MIN_ROWS : 0;
    const int64_t win = chunked && ssd == SSD_WINDOWS ? ssd_window_chunks(H, P, N) : 0,
                  nw_max = n_chunks < win ? n_chunks : win;
    const size_t per_chunk = (size_t)(H * P * N) * 4, states_bytes = (size_t)nw_max * per_chunk,
                 decay_off = (states_bytes + 255) & ~(size_t)255, extra = win ? decay_off + (size_t)(nw_max * H) * 4 : 0;
    kern_cuda_tables tb;
    void *ws = NULL;
    CHECK_ST(seq_tables(be, __func__, seqs, n_seq, xv.rows, &tb, err, extra, extra ? &ws : NULL));
    const kern_seq *ds = tb.seqs;
    cudaStream_t stream = kern_cuda_stream(be);
    if (chunked && ssd == SSD_SEQUENTIAL) {
        k_ssm_chunked<<<dim3((unsigned)n_long, (unsigned)H, (unsigned)(P / pb)), SSD_WARPS * WARP_SIZE, smem, stream>>>(
            yv, xv, dv, (const float *)A->data, bv, cv, (const float *)D->data, (float *)state->data, H, P, N, n_group, ds,
            n_seq, chunk_rows, pb);
        CHECK_ST(kern_cuda_after_launch(be, __func__, err));
    } else if (chunked) {
        float *states = (float *)ws, *decay = (float *)((char *)ws + decay_off);
        for (int64_t f0 = 0; f0 < n_chunks; f0 += win) {
            const int64_t nw = n_chunks - f0 < win ? n_chunks - f0 : win;
            k_ssd_chunk_state<<<dim3((unsigned)nw, (unsigned)H), SSD_WARPS * WARP_SIZE, smem_state, stream>>>(
                states, decay, xv, dv, (const float *)A->data, bv, H, P, N, n_group, ds, n_seq, chunk_rows, f0);
            CHECK_ST(kern_cuda_after_launch(be, __func__, err));
            const int64_t n_pass = n_long * H * P * N;
            k_ssd_state_pass<<<grid_for(n_pass), EW_BLOCK, 0, stream>>>((float *)state->data, states, decay, H, P, N, ds,
                                                                        n_seq, chunk_rows, f0, nw, n_long);
            CHECK_ST(kern_cuda_after_launch(be, __func__, err));
            k_ssd_chunk_scan<<<dim3((unsigned)nw, (unsigned)H, (unsigned)(P / pb)), SSD_WARPS * WARP_SIZE, smem, stream>>>(
                yv, xv, dv, (const float *)A->data, bv, cv, (const float *)D->data, states, H, P, N, n_group, ds, n_seq,
                chunk_rows, f0, pb);
            CHECK_ST(kern_cuda_after_launch(be, __func__, err));
        }
    }
    if (n)
        launch_pdl(k_ssm_scan, (unsigned)((n + 127) / 128), 128, 0, stream, yv, xv, dv, (const float *)A->data, bv, cv,
            (const float *)D->data, (float *)state->data, H, P, N, n_group, ds, n_seq, (int)mode, chunk_rows);
    DONE();
}

nvl_status c_kv_write(kern_backend *be, nvl_tensor *kc, nvl_tensor *vc, const nvl_tensor *k, const nvl_tensor *v,
                      const kern_seq *seqs, int n_seq, nvl_err *err) {
    V2 kv, vv;
    VIEW(k, kv, "k");
    VIEW(v, vv, "v");
    kern_cuda_tables tb;
    CHECK_ST(seq_tables(be, __func__, seqs, n_seq, kv.rows, &tb, err));
    const kern_seq *ds = tb.seqs;
    int64_t max_rows = 0;
    for (int i = 0; i < n_seq; i++) max_rows = seqs[i].n_rows > max_rows ? seqs[i].n_rows : max_rows;
    const int64_t n = (int64_t)n_seq * max_rows * kv.cols;
    if (n)
        launch_pdl(k_kv_write, (unsigned)((n + EW_BLOCK - 1) / EW_BLOCK), EW_BLOCK, 0, kern_cuda_stream(be), kc->data,
            vc->data, dcode(kc->dtype), kc->shape[1], kv, vv, ds, n_seq, max_rows);
    DONE();
}

nvl_status c_attention_causal(kern_backend *be, nvl_tensor *o, const nvl_tensor *q, const nvl_tensor *kc,
                              const nvl_tensor *vc, int64_t n_head, int64_t n_head_kv, const kern_seq *seqs, int n_seq,
                              nvl_err *err) {
    V2 ov, qv;
    VIEW(o, ov, "o");
    VIEW(q, qv, "q");
    if (qv.cols / n_head > MAX_D)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: head dim %lld > %d", __func__, (long long)(qv.cols / n_head), MAX_D);
    const int64_t T = qv.rows, D = qv.cols / n_head;
    /* sequences of FA_MIN_ROWS rows or more (prefill chunks) to k_attention_flash when the cache
       is bf16 and D a multiple of 16 (NVL_CUDA_FLASH=0: never, for comparisons); the other rows to
       k_attention_causal: few rows (decode) with ATT_SPLITS key splits per (row, head) and a
       combine, many with one */
    static const int flash_on = kernel_switch("NVL_CUDA_FLASH", 1);
    int64_t flash_rows = flash_on && kc->dtype == NVL_DTYPE_BF16 && D % 16 == 0 && n_head <= 65535 &&
                                 FA_SMEM <= kern_cuda_smem_optin(be)
                             ? FA_MIN_ROWS
                             : 0,
            fa_tiles = 0, fa_cover = 0;
    for (int i = 0; flash_rows && i < n_seq; i++)
        if (seqs[i].n_rows >= flash_rows) {
            fa_tiles += (seqs[i].n_rows + FA_BR - 1) / FA_BR;
            fa_cover += seqs[i].n_rows;
        }
    if (!fa_tiles) flash_rows = 0;
    const int n_split = T <= ATT_SPLIT_MAX_ROWS ? ATT_SPLITS : 1;
    const size_t part_bytes = n_split > 1 ? (size_t)(T * n_head) * n_split * (size_t)(D + 2) * sizeof(float) : 0;
    kern_cuda_tables tb;
    void *part = NULL;
    CHECK_ST(seq_tables(be, __func__, seqs, n_seq, T, &tb, err, part_bytes, n_split > 1 ? &part : NULL));
    const int64_t blocks = fa_cover < T ? T * n_head * n_split : 0;
    if (blocks > 0x7fffffffLL || fa_tiles > 0x7fffffffLL)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: %lld rows x %lld heads", __func__, (long long)T, (long long)n_head);
    if (fa_tiles) {
        k_attention_flash<<<dim3((unsigned)fa_tiles, (unsigned)n_head), FA_WARPS * WARP_SIZE, FA_SMEM,
                            kern_cuda_stream(be)>>>(ov, qv, (const __nv_bfloat16 *)kc->data, (const __nv_bfloat16 *)vc->data,
                                                    kc->shape[1], n_head, n_head_kv, tb.seqs, n_seq, flash_rows);
        if (blocks) CHECK_ST(kern_cuda_after_launch(be, __func__, err));
    }
    if (blocks) {
        launch_pdl(k_attention_causal, (unsigned)blocks, ATT_WARPS * WARP_SIZE, 0, kern_cuda_stream(be), ov, qv,
            kc->data, vc->data, dcode(kc->dtype), kc->shape[1], n_head, n_head_kv, tb.seqs, tb.row_seq, T, n_split,
            (float *)part, flash_rows);
        if (n_split > 1) {
            CHECK_ST(kern_cuda_after_launch(be, __func__, err));
            launch_pdl(k_attention_combine, (unsigned)(T * n_head), WARP_SIZE * 4, 0, kern_cuda_stream(be), ov,
                (const float *)part, n_head, D, n_split, T, tb.seqs, tb.row_seq, flash_rows);
        }
    }
    DONE();
}

nvl_status c_attention_full(kern_backend *be, nvl_tensor *o, const nvl_tensor *qkv, int64_t n_img, int64_t n_head,
                            nvl_err *err) {
    V2 ov, qv;
    VIEW(o, ov, "o");
    VIEW(qkv, qv, "qkv");
    if (ov.cols / n_head > MAX_D)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: head dim %lld > %d", __func__, (long long)(ov.cols / n_head), MAX_D);
    const int64_t blocks = qv.rows * n_head;
    if (blocks > 0x7fffffffLL)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: %lld rows x %lld heads", __func__, (long long)qv.rows, (long long)n_head);
    const int64_t Ti = qv.rows / n_img, D = ov.cols / n_head, n_qt = (Ti + FA_BR - 1) / FA_BR;
    static const int flash_on = kernel_switch("NVL_CUDA_FLASH", 1);
    size_t fv_smem = 0;
    static const int attn_mma_on = kernel_switch("NVL_CUDA_ATTN_MMA", 1);
    fv_kernel fv = D % 16 == 0 && attn_mma_on ? fm_pick(D / 16, &fv_smem) : NULL; /* (mma.sync, else WMMA) */
    if (!fv && D % 16 == 0) fv = fv_pick(D / 16, &fv_smem);
    if (blocks && Ti > 0 && ov.dt == DT_BF16 && qv.dt == DT_BF16 && fv && qv.ld % 8 == 0 && ((uintptr_t)qv.p & 15) == 0 &&
        flash_on && n_img * n_qt <= 0x7fffffffLL && n_head <= 65535 && fv_smem <= kern_cuda_smem_optin(be)) {
        /* the bf16 form on tensor cores (16-byte rows, the shared memory it needs) */
        fv<<<dim3((unsigned)(n_img * n_qt), (unsigned)n_head), FA_WARPS * WARP_SIZE, fv_smem, kern_cuda_stream(be)>>>(
            ov, qv, Ti, n_head, n_qt);
        DONE();
    }
    if (blocks && ov.dt == DT_BF16) { /* the CPU twin's bf16 form (rounded probabilities per 512-key block) */
        const size_t smem = (size_t)Ti * sizeof(float);
        if (smem + 1024u > 48u * 1024u) /* with the kernel's static shared memory (block_sum/block_max: 256 B):
                                            both count against the 48 KiB a launch gets without the opt-in */
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: %lld tokens per image need %zu bytes of shared memory", __func__,
                               (long long)Ti, smem);
        k_attention_full_bf16p<<<(unsigned)blocks, ATT_WARPS * WARP_SIZE, smem, kern_cuda_stream(be)>>>(ov, qv, Ti, n_head);
        DONE();
    }
    if (blocks)
        k_attention_full<<<(unsigned)blocks, ATT_WARPS * WARP_SIZE, 0, kern_cuda_stream(be)>>>(ov, qv, qv.rows / n_img,
                                                                                                        n_head);
    DONE();
}

__global__ void k_patchify(V2 y, const float *tiles, int64_t n, int64_t S, int64_t p) {
    const int64_t G = S / p, pp = 3 * p * p, total = n * G * G * pp;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = i / pp, f = i % pp, t = row / (G * G), py = (row / G) % G, px = row % G;
        const int64_t c = f / (p * p), yy = (f / p) % p, xx = f % p;
        st(y.p, row * y.ld + f, tiles[((t * 3 + c) * S + py * p + yy) * S + px * p + xx], y.dt);
    }
}

nvl_status c_patchify(kern_backend *be, nvl_tensor *y, const nvl_tensor *tiles, int64_t patch, nvl_err *err) {
    V2 yv;
    VIEW(y, yv, "y");
    if (tiles->dtype != NVL_DTYPE_F32 || tiles->widened)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: tiles must be f32 on the device", __func__);
    const int64_t n = yv.rows * yv.cols;
    if (n) k_patchify<<<grid_for(n), EW_BLOCK, 0, kern_cuda_stream(be)>>>(yv, (const float *)tiles->data, tiles->shape[0],
                                                                         tiles->shape[2], patch);
    DONE();
}

__global__ void k_pixel_shuffle(void *y, const void *x, int dt, int64_t n, int64_t g, int64_t c) {
    const int64_t h = g / 2, total = n * g * g * c;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / (h * h * 4 * c), rest = i % (h * h * 4 * c), k = rest / (h * 4 * c), j = (rest / (4 * c)) % h;
        const int64_t q = (rest % (4 * c)) / c, cc = rest % c;
        const int64_t sy = 2 * k + q / 2, sx = 2 * j + q % 2;
        st(y, i, ld(x, ((t * g + sy) * g + sx) * c + cc, dt), dt);
    }
}

nvl_status c_pixel_shuffle(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, nvl_err *err) {
    const int dt = dcode(x->dtype);
    if (dt < 0 || y->dtype != x->dtype || x->widened)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: x and y must share a float dtype", __func__);
    const int64_t total = nvl_tensor_numel(x);
    if (total)
        k_pixel_shuffle<<<grid_for(total), EW_BLOCK, 0, kern_cuda_stream(be)>>>(y->data, x->data, dt, x->shape[0], x->shape[1],
                                                                                 x->shape[3]);
    DONE();
}

// one thread per output element: y[t, c, i, j] = (x[t, i, j, c] / 255 - mean[c]) / std[c], IEEE f32
// division and subtraction in the CPU's order (no contraction possible: a division, then a
// subtraction, then a division), so the same bits as kern_cpu_normalize_rgb8_tile
__global__ void k_normalize_rgb8(float *y, const uint8_t *x, int64_t n, int64_t S, float m0, float m1, float m2, float s0,
                                 float s1, float s2) {
    const int64_t total = n * 3 * S * S;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t j = i % S, r = (i / S) % S, c = (i / (S * S)) % 3, t = i / (3 * S * S);
        const float mean = c == 0 ? m0 : c == 1 ? m1 : m2, sd = c == 0 ? s0 : c == 1 ? s1 : s2;
        y[i] = __fdiv_rn(__fsub_rn(__fdiv_rn((float)x[((t * S + r) * S + j) * 3 + c], 255.0f), mean), sd);
    }
}

nvl_status c_normalize_rgb8(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const float mean[3], const float std[3],
                            nvl_err *err) {
    const int64_t n = x->shape[0], S = x->shape[1];
    if (n > 0 && S > 0)
        k_normalize_rgb8<<<grid_for(n * 3 * S * S), EW_BLOCK, 0, kern_cuda_stream(be)>>>(
            (float *)y->data, (const uint8_t *)x->data, n, S, mean[0], mean[1], mean[2], std[0], std[1], std[2]);
    DONE();
}

__global__ void k_evs(float *dis, const void *E, int dt, int64_t F, int64_t T, int64_t D, int round_bf16) {
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= F * T) return;
    const int64_t f = i / T, t = i % T;
    if (f == 0) {
        dis[i] = 255.0f;
        return;
    }
    double dot = 0, na = 0, nb = 0;
    for (int64_t d = 0; d < D; d++) {
        const double a = ld(E, (f * T + t) * D + d, dt), b = ld(E, ((f - 1) * T + t) * D + d, dt);
        dot += a * b;
        na += a * a;
        nb += b * b;
    }
    double den = sqrt(na) * sqrt(nb);
    if (den < 1e-8) den = 1e-8;
    const float sim = (float)(dot / den);
    dis[i] = round_bf16 ? rb(1.0f - rb(sim)) : 1.0f - sim;
}

nvl_status c_evs_scores(kern_backend *be, nvl_tensor *dis, const nvl_tensor *E, int round_bf16, nvl_err *err) {
    const int dt = dcode(E->dtype);
    if (dt < 0 || E->widened) return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: E dtype %s", __func__, nvl_dtype_name(E->dtype));
    const int64_t n = E->shape[0] * E->shape[1];
    if (n)
        k_evs<<<(unsigned)((n + EW_BLOCK - 1) / EW_BLOCK), EW_BLOCK, 0, kern_cuda_stream(be)>>>(
            (float *)dis->data, E->data, dt, E->shape[0], E->shape[1], E->shape[2], round_bf16);
    DONE();
}

} // namespace

/* Once per backend, on its device: the kernels that take more than 48 KiB of dynamic shared
 * memory may take up to the device's opt-in limit (each launch checks its own need against it). */
extern "C" cudaError_t kern_cuda_ops_init(size_t smem_optin) {
    const int v = (int)smem_optin;
    cudaError_t e = cudaFuncSetAttribute(k_attention_flash, cudaFuncAttributeMaxDynamicSharedMemorySize, v);
    for (int nd = 1; nd <= MAX_D / 16 && e == cudaSuccess; nd++) {
        size_t need = 0;
        const fv_kernel fv = fv_pick(nd, &need);
        e = cudaFuncSetAttribute(fv, cudaFuncAttributeMaxDynamicSharedMemorySize, v);
    }
    if (e == cudaSuccess) e = cudaFuncSetAttribute(k_ssm_chunked, cudaFuncAttributeMaxDynamicSharedMemorySize, v);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(k_ssd_chunk_state, cudaFuncAttributeMaxDynamicSharedMemorySize, v);
    if (e == cudaSuccess) e = cudaFuncSetAttribute(k_ssd_chunk_scan, cudaFuncAttributeMaxDynamicSharedMemorySize, v);
    return e;
}

extern "C" const struct kern_ops_i kern_cuda_ops = {
    c_matmul,  c_rmsnorm,  c_rmsnorm_gated, c_layernorm, c_add,     c_bias_act,         c_copy, c_argmax_rows,
    c_dt_softplus, c_get_rows, c_conv1d, c_ssm_scan, c_kv_write, c_attention_causal, c_attention_full,
    c_patchify, c_pixel_shuffle, c_evs_scores, c_normalize_rgb8, kern_cuda_step_tables, kern_cuda_place_weight,
    NULL /* matmul_invariant_rows */, c_matmul_bias, c_matmul_bias_fused,
};
