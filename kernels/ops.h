/* The op interface: every operation the three model parts (llm/, vision/, tokenreduce/) run,
 * on tensor descriptors, dispatched through the backend. The model files call these and nothing
 * else; each op's CPU implementation (kernels/cpu/) is the reference its other twins are tested
 * against (tests/test_kernels.c).
 *
 *   nvl_tensor x = kern_act(be, NVL_DTYPE_BF16, 2, (int64_t[]){T, C}, buf);
 *   kern_rmsnorm(be, &h, &x, &w_norm, 1e-5f, &err);
 *   kern_matmul(be, &y, &h, &w_in_proj, &err);          // y[T,N] = h[T,K] @ W[N,K]^T
 *
 * Activations. An activation is an nvl_tensor in the backend's memory: rows outermost, the last
 * dimension contiguous, the row stride free (so the Mamba in_proj output splits into views
 * without copies). Its dtype is the dtype the reference (transformers) keeps it in, and that
 * dtype alone decides rounding: an op whose output is BF16 rounds every value it stores to bf16
 * (round to nearest even), exactly where PyTorch's bf16 tensors round. On the CPU a BF16
 * activation is held widened to f32 (nvl_tensor.widened; kern_act does this), so the CPU kernels
 * run f32 code; a device backend holds it as 2-byte bf16. Computation inside an op is f32.
 * Where the reference rounds inside one of its kernels, the op says so below.
 *
 * Sequences. Ops that carry state across calls (conv, scan, attention over the KV cache) take a
 * list of kern_seq: for each sequence in the step its rows of the activations, its slot (the
 * state row / KV row it owns) and its position. Rows of different sequences never mix in them;
 * every other op is row-wise and runs over all rows of the step at once.
 *
 * Contract for backend authors (decode steps are captured as CUDA graphs: kernels/backend.h,
 * llm/forward.c): no host synchronisation and no allocation visible to the caller inside an op (a
 * backend may keep scratch of its own, grown only outside a capture); what changes from step to
 * step (sequence tables, token ids) is read from the step's device tables (kern_step_tables),
 * never baked into launch arguments; a launch's shape may depend only on the rows and sequences
 * of the step, not on their positions. Exceptions, never called inside a capture: the ops that
 * return values to the host (kern_to_host_f32, kern_argmax_rows).
 * Errors: NVL_ERR_SHAPE / NVL_ERR_DTYPE / NVL_ERR_INVALID_ARG naming the op and the operand;
 * NVL_ERR_UNSUPPORTED when this backend lacks the op for these dtypes.
 * Dimension letters: T rows (tokens) of the step, K input features, N output features,
 * H heads, P head dim (Mamba), Nst state size, G groups, Cc conv channels, Kc conv width,
 * S slots, L positions per slot, D attention head dim.
 */
#ifndef KERNELS_OPS_H
#define KERNELS_OPS_H

#include <stdint.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---------------------------------------------------------------------------
// Descriptors

/* An activation descriptor for this backend: contiguous, dtype as the reference keeps it; on
 * the CPU a BF16/F16 activation is widened (4 bytes an element). data may be NULL (fill later).
 * kern_act_bytes gives the bytes such a tensor needs on this backend. */
nvl_tensor kern_act(const kern_backend *be, nvl_dtype dtype, int n_dims, const int64_t *shape, void *data);
size_t kern_act_bytes(const kern_backend *be, nvl_dtype dtype, int64_t numel);
/* Rows [r0, r0+n) of a tensor (first dimension), same strides. A range outside the tensor gives
 * a view without data, which every op refuses with an error ("... is missing"): never memory past
 * the tensor. */
nvl_tensor kern_rows(const nvl_tensor *t, int64_t r0, int64_t n);
/* Columns [c0, c0+n) of a 2-D tensor (a strided view), same row stride; outside it, as kern_rows. */
nvl_tensor kern_cols(const nvl_tensor *t, int64_t c0, int64_t n);

/* How a Linear weight is stored. */
typedef enum kern_quant {
    KERN_QUANT_NONE = 0, /* F32 / BF16 / F16 as stored */
    KERN_QUANT_FP8,      /* F8_E4M3 (N, K), per-tensor weight_scale, static input_scale */
    KERN_QUANT_NVFP4,    /* U8 (N, K/2) two E2M1 per byte (low nibble first), F8_E4M3 block scales
                            (N, K/16), weight_scale_2 (global) and input_scale */
} kern_quant;

/* A Linear weight y = x @ W^T: the stored tensor and, when quantized, its scales
 * (quant-formats.md). n_out x n_in is the logical shape. A placed weight (kern_weights_place)
 * points into the backend's memory. */
typedef struct kern_weight {
    nvl_tensor w;           /* as stored: (N, K), or (N, K/2) bytes for NVFP4 */
    kern_quant quant;
    nvl_tensor block_scale; /* NVFP4: (N, K/16) F8_E4M3; else empty */
    float weight_scale;     /* FP8: weight_scale; NVFP4: weight_scale_2; else 1 */
    float input_scale;      /* FP8 / NVFP4 static activation scale; else 1 */
    int64_t n_out, n_in;
    const char *name;       /* checkpoint name, for messages (not owned) */
} kern_weight;

/* Host f32 rows <-> a backend tensor of any float dtype (contiguous last dimension, any row
 * stride): converting (rounding to dst's dtype) on the way. On the CPU these are copies. */
nvl_status kern_from_host_f32(kern_backend *be, nvl_tensor *dst, const float *src, nvl_err *err);
nvl_status kern_to_host_f32(kern_backend *be, float *dst, const nvl_tensor *src, nvl_err *err);

/* A plain (unquantized) weight over a stored 2-D tensor. */
kern_weight kern_weight_plain(const nvl_tensor *w, const char *name);

/* Makes a set of weights usable by the backend: on the CPU nothing moves (the mmap views stay);
 * a device backend uploads each once (and may repack). On failure nothing is half-placed.
 * The tensors are updated in place to point at their placed copies. */
nvl_status kern_weights_place(kern_backend *be, nvl_tensor *const *tensors, int64_t n, nvl_err *err);

/* A padding sequence (a graph's bucket filled up, design-gpu-batching.md §4.4): the sequence ops
 * skip it (no state read or written, no KV row; its rows of conv, scan and attention outputs are
 * zero); the row-wise ops run over its rows as over any. */
#define KERN_SLOT_NONE (-1)

/* One sequence's part of a step. A step's sequences come in row order, their rows not overlapping
 * (the ops check it: NVL_ERR_INVALID_ARG), and name each slot at most once (the caller's duty:
 * llm_step checks it; two sequences on one slot would race on its state). */
typedef struct kern_seq {
    int32_t slot;   /* state row / KV row in the cache (0 .. S-1), or KERN_SLOT_NONE */
    int32_t decode; /* 1: a one-token decode step (the reference's single-token path) */
    int64_t row0;   /* first row of the step's activations */
    int64_t n_rows; /* rows (tokens) of this sequence in the step */
    int64_t pos0;   /* position of the first row = tokens this slot held before the step */
} kern_seq;

/* The step's tables, once per step before its ops: the sequence table, the token ids (n_rows)
 * and the vision mask (n_rows, or NULL). A device backend copies them into fixed device buffers
 * (one asynchronous copy), where the ops of the step read them when they are handed the same
 * values (the ops compare contents, not pointers), and where a captured graph reads them on each
 * launch (kernels/backend.h). Ops handed other tables upload them themselves, except during a
 * capture, where that is an error. The CPU needs nothing (NVL_OK). */
nvl_status kern_step_tables(kern_backend *be, const kern_seq *seqs, int n_seq, const int32_t *ids, const uint8_t *mask,
                            int64_t n_rows, nvl_err *err);

// ---------------------------------------------------------------------------
// Linear algebra and row-wise ops (all rows of the step at once)

/* y (T, N) = x (T, K) @ W^T, f32 accumulation; y rounded to its dtype. y must not alias x. */
nvl_status kern_matmul(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const kern_weight *w, nvl_err *err);
/* y (T, N) = x (T, K) @ W^T + bias (N): the sum in f32, rounded once to y's dtype, as kern_matmul
 * into an f32 y followed by kern_bias_act (KERN_ACT_NONE) into y (torch's F.linear with a bias;
 * on CUDA it runs as cuBLASLt's bias epilogue, as torch's addmm does there). Where the backend
 * fuses the two (kern_matmul_bias_fused: CUDA for BF16 x, W, y and bias) one pass, which saves
 * the f32 product's round trip through memory; elsewhere the two ops, for which y must be f32
 * (NVL_ERR_UNSUPPORTED otherwise: a rounded y would round the product before the bias). y must
 * not alias x. */
nvl_status kern_matmul_bias(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const kern_weight *w,
                            const nvl_tensor *bias, nvl_err *err);
/* 1 when kern_matmul_bias runs fused for these operands on this backend, else 0. */
int kern_matmul_bias_fused(kern_backend *be, const nvl_tensor *y, const nvl_tensor *x, const kern_weight *w,
                           const nvl_tensor *bias);
/* Batch invariance of kern_matmul for x of dtype x_dtype by w: R >= 1 when any row's result is the
 * same bit for bit in every call of at most R rows (and a call of more rows gives a row what the
 * same call gives it: deterministic for a given row count); INT64_MAX: any number of rows. So a
 * step that runs its short sequences together in calls of at most R rows, and each longer one in
 * a call of its own, gives every sequence what it gets alone (llm_step does: sampled answers then
 * do not depend on the company, docs/api.md). 0: no such bound (a device backend, whose GEMM
 * library picks its algorithm per shape; the step then runs all its rows in one call). The CPU:
 * 31 for f32 and BF16 weights on the register tiles (AVX-512 or AVX2; the packed GEMM and
 * oneDNN from 32 rows), 4 for FP8 / NVFP4 (the fused or widened rows; from 5 the GEMMs), INT64_MAX where one
 * path serves every row count (the scalar loop; the own AVX512-BF16 kernel without oneDNN). */
int64_t kern_matmul_invariant_rows(kern_backend *be, const kern_weight *w, nvl_dtype x_dtype);

/* RMSNorm (NemotronHRMSNorm / the projector's): y = (w * (x * rsqrt(mean(x^2) + eps))), the
 * statistics in f32, then rounded to y's dtype. x, y (T, C); w (C). In place allowed. */
nvl_status kern_rmsnorm(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w, float eps,
                        nvl_err *err);

/* Grouped gated RMSNorm (MambaRMSNormGated, norm_before_gate=False), groups of C/G channels:
 *   t = x * silu(z); t = t * rsqrt(mean_group(t^2) + eps); y = w * t.to(x's reference dtype)
 * x (T, C) the scan output (f32), z (T, C) the gate, w (C), y (T, C). For rows of decode
 * sequences on BF16 activations (z BF16) the scan output is bf16 in the reference, so the
 * normalised t is rounded to bf16 before the weight multiply; seqs may be NULL (no decode rows). */
nvl_status kern_rmsnorm_gated(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *z,
                              const nvl_tensor *w, int64_t n_group, float eps, const kern_seq *seqs, int n_seq,
                              nvl_err *err);

/* LayerNorm with bias: y = (x - mean) / sqrt(var + eps) * w + b, statistics in double. */
nvl_status kern_layernorm(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w,
                          const nvl_tensor *b, float eps, nvl_err *err);

/* y = a + b, rounded to y's dtype. b may have fewer rows than a: row r of a adds row r % rows(b)
 * (a position table over tiles). In place (y == a) allowed. */
nvl_status kern_add(kern_backend *be, nvl_tensor *y, const nvl_tensor *a, const nvl_tensor *b, nvl_err *err);

typedef enum kern_act_fn {
    KERN_ACT_NONE = 0,
    KERN_ACT_GELU_ERF, /* 0.5 x (1 + erf(x / sqrt 2)) */
    KERN_ACT_RELU2,    /* relu(x)^2 */
    KERN_ACT_SILU,     /* x sigmoid(x) */
} kern_act_fn;
/* y = act(x + bias) with bias (N) broadcast over rows (NULL: none); y rounded to its dtype.
 * In place allowed. */
nvl_status kern_bias_act(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *bias,
                         kern_act_fn act, nvl_err *err);

/* Greedy decoding on the backend: ids[r] (host) = the index of the largest value of row r of
 * x (R, V), exactly llm_sampler's greedy rule: the first index of the maximum; NaN values never
 * win. -1 where that rule's pick is not finite: a NaN at index 0 (the sequential loop's pick), a
 * row of NaN, an infinite maximum (logits a NaN or an overflow reached: the caller stops, as
 * llm_logits_check_finite has it stop after the prompt). Copies R ids to the host instead of
 * R x V values (a device: one small copy, one synchronisation). */
nvl_status kern_argmax_rows(kern_backend *be, int32_t *ids, const nvl_tensor *x, nvl_err *err);

/* Copies x into y converting dtype (rounded to y's), same shape; views allowed. */
nvl_status kern_copy(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, nvl_err *err);

/* Mamba dt: y = clamp(softplus(x + bias), dt_min, dt_max), x (T, H) (a view of in_proj's
 * output), bias (H), y (T, H). In y's dtype the add and the softplus each round (torch applies
 * them to bf16 tensors); softplus(v) = v for v > 20, else log1p(exp(v)); a value clamped to a bound
 * is the bound in y's dtype (torch.clamp on a bf16 tensor). */
nvl_status kern_dt_softplus(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *bias,
                            float dt_min, float dt_max, nvl_err *err);

/* Embedding rows with the vision splice: row t of y is the embedding of ids[t] (table (V, C)),
 * or, where mask[t] != 0, row t of rows (T, C) (the projector's output for an <image> token),
 * rounded to y's dtype. ids, mask are host arrays; rows may be NULL when no mask is set.
 * NVL_ERR_INVALID_ARG names an id outside the vocabulary. */
nvl_status kern_get_rows(kern_backend *be, nvl_tensor *y, const nvl_tensor *table, const int32_t *ids,
                         const nvl_tensor *rows, const uint8_t *mask, nvl_err *err);

// ---------------------------------------------------------------------------
// Sequence ops: state picked by slot

/* Causal depthwise conv1d over each sequence's rows with the slot's carried state, then SiLU:
 *   u[t,c] = bias[c] + sum_k w[c,k] * in[t-(Kc-1)+k, c];  y = silu(u)
 * x (T, Cc) (a view), w (Cc, Kc) f32, bias (Cc) or NULL, state (S, Cc, Kc) f32: the slot's last
 * Kc inputs, oldest first (transformers' conv_state); updated. For a BF16 y, u and silu(u) are
 * each rounded (torch's conv1d and silu on bf16). */
nvl_status kern_conv1d_causal(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w,
                              const nvl_tensor *bias, nvl_tensor *state, const kern_seq *seqs, int n_seq,
                              nvl_err *err);

typedef enum kern_scan_mode {
    KERN_SCAN_AUTO = 0, /* recurrent for one-row sequences, chunked SSD otherwise */
    KERN_SCAN_RECURRENT,
    KERN_SCAN_CHUNKED,
} kern_scan_mode;
/* Mamba-2 selective scan per sequence with the slot's state (model.md §2.5):
 *   dA = exp(dt[t,h] A[h]);  S = dA S + dt[t,h] x[t,h,:] (outer) B[t,g,:]
 *   y[t,h,:] = S C[t,g,:] + D[h] x[t,h,:]          (head h reads group h / (H/G))
 * x (T, H*P), B and C (T, G*Nst) (views of the conv output), dt (T, H), A, D (H) f32,
 * state (S, H, P, Nst) f32 updated, y (T, H*P) F32. Decode sequences with BF16 inputs reproduce
 * selective_state_update on bf16 tensors (intermediate products and y rounded to bf16, state
 * f32); prefill (chunked SSD) output is f32. chunk: the SSD chunk length. */
nvl_status kern_ssm_scan(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *dt,
                         const nvl_tensor *A, const nvl_tensor *B, const nvl_tensor *C, const nvl_tensor *D,
                         nvl_tensor *state, int64_t n_group, int64_t chunk, kern_scan_mode mode,
                         const kern_seq *seqs, int n_seq, nvl_err *err);

/* Stores each sequence's k and v rows (T, Hkv*D) into its slot's KV rows [pos0, pos0+n_rows):
 * k_cache, v_cache (S, L, Hkv*D) in the cache dtype (values converted; BF16 k/v into a BF16
 * cache are exact). NVL_ERR_LIMIT when a sequence would pass L. */
nvl_status kern_kv_write(kern_backend *be, nvl_tensor *k_cache, nvl_tensor *v_cache, const nvl_tensor *k,
                         const nvl_tensor *v, const kern_seq *seqs, int n_seq, nvl_err *err);

/* Causal GQA attention without positions over each sequence's KV rows (written first by
 * kern_kv_write): row t of a sequence attends to keys [0, pos0 + t]; query head h reads KV head
 * h / (Hq/Hkv); softmax(q k^T / sqrt(D)) v in f32, o rounded to its dtype.
 * q, o (T, Hq*D); k_cache, v_cache (S, L, Hkv*D). */
nvl_status kern_attention_causal(kern_backend *be, nvl_tensor *o, const nvl_tensor *q, const nvl_tensor *k_cache,
                                 const nvl_tensor *v_cache, int64_t n_head, int64_t n_head_kv,
                                 const kern_seq *seqs, int n_seq, nvl_err *err);

// ---------------------------------------------------------------------------
// Vision ops

/* Full (unmasked) attention inside each of n_img images of Ti tokens, from the fused qkv rows
 * (n_img*Ti, 3W) laid q | k | v, each head-major (H heads of W/H): o (n_img*Ti, W).
 * F32: softmax(q k^T / sqrt(D)) v in f32. BF16 o: the reference (PyTorch RADIO in bf16) calls
 * scaled_dot_product_attention on bf16 tensors, a fused flash kernel (ATen's on the CPU; flash
 * attention on GPUs does the same) that rounds the unnormalised probabilities exp(s - M) to bf16
 * for the product with v while the row sum adds them unrounded, M a running max over key blocks
 * (512 on the CPU), and rounds o = acc / sum once. The CPU backend reproduces that form, except
 * torch's vectorised exp approximation and its summation orders (a probability at a bf16
 * boundary may round the other way: ~3 % of outputs one ulp apart on the tiny ViT). The CUDA
 * backend computes the same form step for step (blocks of 512 keys; its expf and summation
 * orders differ from the CPU's in the same way). */
nvl_status kern_attention_full(kern_backend *be, nvl_tensor *o, const nvl_tensor *qkv, int64_t n_img,
                               int64_t n_head, nvl_err *err);

/* Patchify CHW tiles (n, 3, S, S) f32 into (n * (S/p)^2, 3*p*p): token py*G+px, feature
 * c*p*p + yy*p + xx (the Conv2d-as-Linear layout of RADIO's embedder). */
nvl_status kern_patchify(kern_backend *be, nvl_tensor *y, const nvl_tensor *tiles, int64_t patch, nvl_err *err);

/* Pixel shuffle v2, ratio 0.5 (model.md §4.1): x (n, g, g, c) -> y (n, g/2, g/2, 4c),
 *   y[t][k][j] = concat(x[t][2k][2j], x[t][2k][2j+1], x[t][2k+1][2j], x[t][2k+1][2j+1]). */
nvl_status kern_pixel_shuffle(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, nvl_err *err);

/* Pixels to the ViT's input: x (n, S, S, 3) U8, RGB tiles as resized, -> y (n, 3, S, S) F32,
 *   y[t, c, i, j] = (x[t, i, j, c] / 255 - mean[c]) / std[c]
 * in f32, in that order (vision/preprocess.c's host formula): bit-equal on every backend (IEEE
 * division and subtraction). A device receives a quarter of the bytes f32 tiles would take. */
nvl_status kern_normalize_rgb8(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const float mean[3],
                               const float std[3], nvl_err *err);

/* EVS dissimilarity (model.md §6.4): E (F, Tf, D); dis (F, Tf) f32 with dis[0, :] = 255 and
 * dis[f, t] = 1 - cos(E[f,t], E[f-1,t]); with round_bf16 the cosine and 1 - cos are rounded to
 * bf16 as torch does for bf16 embeddings. */
nvl_status kern_evs_scores(kern_backend *be, nvl_tensor *dis, const nvl_tensor *E, int round_bf16, nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_OPS_H
