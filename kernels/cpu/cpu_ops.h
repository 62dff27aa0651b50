/* CPU twins of every backend op, callable directly (tests, the CPU backend, fallbacks).
 * All take host pointers. Shapes outermost-first; see kernels/backend.h for each op's contract.
 *
 *   kern_cpu_matmul(y, x, &w, M, &err);          // fast path (OpenMP, vectorised)
 *   kern_cpu_matmul_ref(y, x, &w, M);            // naive oracle, double accumulation
 */
#ifndef KERNELS_CPU_CPU_OPS_H
#define KERNELS_CPU_CPU_OPS_H

#include <stdint.h>

#include "../base/status.h"
#include "../base/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of OpenMP threads the CPU ops use (NVL_THREADS env or all cores). */
int kern_cpu_n_threads(void);
/* "avx512_bf16 avx512f avx2 fma" style list of the features the dispatch found. */
const char *kern_cpu_features(void);
/* Which matmul kernel the dispatch picked: "avx512f", "avx2+fma" or "scalar". */
const char *kern_cpu_matmul_kernel(void);
int kern_cpu_has_avx512_bf16(void);
int kern_cpu_has_avx2(void);

/* y[M,N] = x[M,K] @ w[N,K]^T, f32 accumulate. w dtype F32, BF16 or F16. */
nvl_status kern_cpu_matmul(float *y, const float *x, const nvl_tensor *w, int64_t M, nvl_err *err);
/* The rows up to which kern_cpu_matmul is batch-invariant (kernels/ops.h
 * kern_matmul_invariant_rows): MM_PACKED_MIN_ROWS - 1 where the packed GEMM takes over, else
 * INT64_MAX (one path for every row count). kern_cpu_quant_invariant_rows: the same for
 * kern_cpu_matmul_quant: 4 (up to 4 rows the fused rows with AVX-512, else the widened rows; from 5
 * the exact bf16 factors through the GEMMs, quant.c). */
int64_t kern_cpu_matmul_invariant_rows(void);
int64_t kern_cpu_quant_invariant_rows(void);
/* BF16 weights x bf16-valued x (BF16 activations): exact bf16 products, f32 sums (matmul_bf16.c).
 * x (M, K) with row stride ldx floats, y (M, N) dense. 1 when it ran, 0 when this CPU cannot (or
 * NVL_CPU_KERNEL asks for a kernel without BF16 dot products, or memory ran out) and the caller
 * must use kern_cpu_matmul. The path (kern_cpu_bf16_path): from KERN_DNNL_MIN_ROWS rows oneDNN
 * (AMX or AVX512-BF16, as oneDNN finds the CPU) when the build has it, else and below that the own
 * AVX512-BF16 kernel, which is batch-invariant: a row's result does not depend on M. So steps of
 * fewer than 32 rows (decode) are bit-identical alone and together, as on the f32 path, whose
 * packed GEMM also starts at 32 rows. NVL_CPU_KERNEL=dnnl / avx512bf16 forces one path for every
 * M. */
#define KERN_DNNL_MIN_ROWS 32
typedef enum { KERN_BF16_NONE, KERN_BF16_OWN, KERN_BF16_DNNL } kern_bf16_path;
int kern_cpu_matmul_bf16(float *y, const float *x, const nvl_tensor *w, int64_t M);
int kern_cpu_matmul_bf16_ld(float *y, const float *x, int64_t ldx, const nvl_tensor *w, int64_t M);
kern_bf16_path kern_cpu_bf16_path(int64_t M);
/* The two paths alone (tests, benchmarks): the own AVX512-BF16 kernel; oneDNN's matmul primitive
 * (matmul_dnnl.c). Same contract as kern_cpu_matmul_bf16_ld. */
int kern_cpu_matmul_bf16_own(float *y, const float *x, int64_t ldx, const nvl_tensor *w, int64_t M);
int kern_cpu_matmul_dnnl(float *y, const float *x, int64_t ldx, const nvl_tensor *w, int64_t M);
/* The CPU has AVX512-BF16 and NVL_CPU_KERNEL allows the own kernel (unset, avx512bf16, dnnl). */
int kern_cpu_has_bf16dp(void);
/* The build has oneDNN and it starts (an engine); kern_cpu_dnnl_info: "oneDNN 2.6.3
 * brg:avx512_core_bf16" (the implementation of the last primitive made), NULL without oneDNN. */
int kern_cpu_has_dnnl(void);
const char *kern_cpu_dnnl_info(void);
/* "oneDNN 2.6.3" (the library found at run time), NULL without oneDNN in the build. */
const char *kern_cpu_dnnl_version(void);
/* Quantized weights (kernels/ops.h kern_weight with quant FP8 or NVFP4): ModelOpt's forward,
 * activation quantize-dequantize included (quant.c). x (M, K), y (M, N) contiguous f32. */
struct kern_weight;
nvl_status kern_cpu_matmul_quant(float *y, const float *x, const struct kern_weight *w, int64_t M, nvl_err *err);
/* The activation quantize-dequantize alone, n elements (NVFP4: n a multiple of 16). */
/* One tile of RGB8 pixels (S rows of S pixels, x_stride bytes apart) to the ViT's input
 * y (3, S, S): (x / 255 - mean[c]) / std[c] in f32 (kern_normalize_rgb8's formula; also what
 * vision/preprocess.c uses on the host, so the two are the same bits). */
void kern_cpu_normalize_rgb8_tile(float *y, const uint8_t *x, size_t x_stride, int64_t S, const float mean[3],
                                  const float std[3]);
void kern_cpu_quant_fp8_act(float *xq, const float *x, int64_t n, float input_scale);
void kern_cpu_quant_nvfp4_act(float *xq, const float *x, int64_t n, float input_scale);
/* Oracle: double accumulation, single thread. */
void kern_cpu_matmul_ref(float *y, const float *x, const nvl_tensor *w, int64_t M);
/* Softmax of each row of x (rows x cols) in place; AVX-512 with a polynomial exp (about 1 ulp),
 * else expf. */
void kern_cpu_softmax_rows(float *x, int64_t rows, int64_t cols);
/* The probabilities of torch's CPU flash attention on bf16 tensors (aten FlashAttentionKernel,
 * reduced-precision path): keys in blocks of `block` (its kvSplitSize, 512) with a running max M;
 * each exp(s - M_b) is rounded to bf16 for the product with v while the row sum l adds the
 * unrounded f32 exps; when M grows, the sum is rescaled by exp(M_old - M_new). Writes the bf16
 * weights of each block (relative to that block's running max) into x, the running max after
 * each block into run_max (rows x ceil(cols / block)) and 1 / l per row into inv_sum. The caller
 * forms o = acc * inv_sum with acc = acc * exp(M_{b-1} - M_b) + P_b v_b block by block, as torch
 * does. Not reproduced: torch's vectorised exp approximation (here the ~1 ulp polynomial or expf)
 * and its f32 summation orders, so a weight near a bf16 boundary can round the other way. */
void kern_cpu_softmax_rows_bf16p(float *x, float *run_max, float *inv_sum, int64_t rows, int64_t cols, int64_t block);
/* The packed many-row GEMM (AVX-512; gemm_packed.c): 1 when it ran, 0 when this CPU cannot
 * (or memory for its panels ran out) and the caller must use another path. */
int kern_cpu_gemm_packed(float *y, const float *x, const nvl_tensor *w, int64_t M, int allow_avx512);

/* The RMSNorm oracle (double statistics); the op is kern_rmsnorm (ops_cpu.c). */
void kern_cpu_rmsnorm_ref(float *y, const float *x, const nvl_tensor *w, int64_t rows,
                          int64_t cols, float eps);

// ---------------------------------------------------------------------------
// LLM ops: Mamba-2 selective scan (two references that must agree), causal depthwise conv.
// Dimension letters: T tokens, H heads, P head_dim, N d_state, G groups (head h reads group
// h / (H/G)), K conv kernel, Cc conv channels.

/* Recurrence, token by token (the definition; also the decode path):
 *   dA = exp(dt[t,h] * A[h]);  S[h] = dA * S[h] + dt[t,h] * x[t,h,:] (outer) B[t,g,:]
 *   y[t,h,p] = sum_n S[h,p,n] * C[t,g,n] + D[h] * x[t,h,p]
 * x, y (T,H,P); dt (T,H) after softplus; A, D (H); B, C (T,G,N); state (H,P,N) f32 in/out.
 * round_bf16 != 0 reproduces the bf16 rounding points of transformers' decode step
 * (selective_state_update on bf16 tensors): dt*B, (dt*B)*x, the S.C product, x*D and the sum
 * are rounded to bf16; the state stays f32. */
void kern_cpu_ssm_scan_recurrent(float *y, float *state, const float *x, const float *dt,
                                 const float *A, const float *B, const float *C, const float *D,
                                 int64_t T, int64_t H, int64_t P, int64_t N, int64_t G,
                                 int round_bf16);
/* Chunked SSD form (prefill): the same result as the recurrence up to f32 rounding, computed
 * per chunk of `chunk` tokens with intra-chunk (C.B) decay-weighted sums and an inter-chunk
 * state pass (model.md §2.5). Same arguments; state in/out. */
void kern_cpu_ssm_scan_chunked(float *y, float *state, const float *x, const float *dt,
                               const float *A, const float *B, const float *C, const float *D,
                               int64_t T, int64_t H, int64_t P, int64_t N, int64_t G,
                               int64_t chunk);
/* Causal depthwise conv1d over time with carried state, then SiLU:
 *   u[t,c] = bias[c] + sum_k w[c,k] * in[t-(K-1)+k, c];  out = silu(u)
 * in/out (T, Cc) (out may not alias in); w (Cc, K) f32; bias (Cc) or NULL;
 * state (Cc, K): the last K inputs, oldest first (transformers' conv_state layout); updated.
 * round_bf16 rounds u and silu(u) to bf16. */
void kern_cpu_conv1d_causal_silu(float *out, float *state, const float *in, const float *w,
                                 const float *bias, int64_t T, int64_t Cc, int64_t K,
                                 int round_bf16);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_CPU_CPU_OPS_H
