/* Internal header: included only by the kernels sources (backend.c, cpu/, cuda/).
 *
 * The vtable every backend fills. Entries marked (optional) may be NULL; kernels/backend.c then
 * runs the CPU twin on host memory (only valid for the CPU backend itself, or when the caller
 * passes host pointers), and kern_backend_supports() reports 0 for them.
 */
#ifndef KERNELS_BACKEND_IMPL_H
#define KERNELS_BACKEND_IMPL_H

#include "backend.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One entry per op of kernels/ops.h, same arguments; kernels/ops.c validates shapes and dtypes
 * before calling, so an entry only checks what is particular to its backend. NULL: the backend
 * lacks the op (NVL_ERR_UNSUPPORTED). */
struct kern_ops_i {
    nvl_status (*matmul)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const kern_weight *w, nvl_err *err);
    nvl_status (*rmsnorm)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w, float eps,
                          nvl_err *err);
    nvl_status (*rmsnorm_gated)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *z,
                                const nvl_tensor *w, int64_t n_group, float eps, const kern_seq *seqs, int n_seq,
                                nvl_err *err);
    nvl_status (*layernorm)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w,
                            const nvl_tensor *b, float eps, nvl_err *err);
    nvl_status (*add)(kern_backend *be, nvl_tensor *y, const nvl_tensor *a, const nvl_tensor *b, nvl_err *err);
    nvl_status (*bias_act)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *bias,
                           kern_act_fn act, nvl_err *err);
    nvl_status (*copy)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, nvl_err *err);
    nvl_status (*argmax_rows)(kern_backend *be, int32_t *ids, const nvl_tensor *x, nvl_err *err);
    nvl_status (*dt_softplus)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *bias,
                              float dt_min, float dt_max, nvl_err *err);
    nvl_status (*get_rows)(kern_backend *be, nvl_tensor *y, const nvl_tensor *table, const int32_t *ids,
                           const nvl_tensor *rows, const uint8_t *mask, nvl_err *err);
    nvl_status (*conv1d_causal)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *w,
                                const nvl_tensor *bias, nvl_tensor *state, const kern_seq *seqs, int n_seq,
                                nvl_err *err);
    nvl_status (*ssm_scan)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const nvl_tensor *dt,
                           const nvl_tensor *A, const nvl_tensor *B, const nvl_tensor *C, const nvl_tensor *D,
                           nvl_tensor *state, int64_t n_group, int64_t chunk, kern_scan_mode mode,
                           const kern_seq *seqs, int n_seq, nvl_err *err);
    nvl_status (*kv_write)(kern_backend *be, nvl_tensor *k_cache, nvl_tensor *v_cache, const nvl_tensor *k,
                           const nvl_tensor *v, const kern_seq *seqs, int n_seq, nvl_err *err);
    nvl_status (*attention_causal)(kern_backend *be, nvl_tensor *o, const nvl_tensor *q,
                                   const nvl_tensor *k_cache, const nvl_tensor *v_cache, int64_t n_head,
                                   int64_t n_head_kv, const kern_seq *seqs, int n_seq, nvl_err *err);
    nvl_status (*attention_full)(kern_backend *be, nvl_tensor *o, const nvl_tensor *qkv, int64_t n_img,
                                 int64_t n_head, nvl_err *err);
    nvl_status (*patchify)(kern_backend *be, nvl_tensor *y, const nvl_tensor *tiles, int64_t patch, nvl_err *err);
    nvl_status (*pixel_shuffle)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, nvl_err *err);
    nvl_status (*evs_scores)(kern_backend *be, nvl_tensor *dis, const nvl_tensor *E, int round_bf16, nvl_err *err);
    nvl_status (*normalize_rgb8)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const float mean[3],
                                 const float std[3], nvl_err *err);
    /* (optional) the step's tables into device buffers (kern_step_tables); NULL: nothing to do */
    nvl_status (*step_tables)(kern_backend *be, const kern_seq *seqs, int n_seq, const int32_t *ids,
                              const uint8_t *mask, int64_t n_rows, nvl_err *err);
    /* (optional) place one weight tensor in backend memory, updating t; NULL: left in place */
    nvl_status (*place_weight)(kern_backend *be, nvl_tensor *t, nvl_err *err);
    /* (optional) kern_matmul_invariant_rows; NULL: 0 (no bound: the step does not split its rows) */
    int64_t (*matmul_invariant_rows)(kern_backend *be, const kern_weight *w, nvl_dtype x_dtype);
    /* (optional) kern_matmul_bias where matmul_bias_fused says yes (both or neither); NULL: the
       two ops (kernels/ops.c) */
    nvl_status (*matmul_bias)(kern_backend *be, nvl_tensor *y, const nvl_tensor *x, const kern_weight *w,
                              const nvl_tensor *bias, nvl_err *err);
    int (*matmul_bias_fused)(kern_backend *be, const nvl_tensor *y, const nvl_tensor *x, const kern_weight *w,
                             const nvl_tensor *bias);
};

struct kern_backend_i {
    const char *name;
    enum kern_backend_kind kind;
    void (*free)(kern_backend *be);
    int (*supports)(const kern_backend *be, enum kern_op op, nvl_dtype weight_dtype);

    nvl_status (*buffer_alloc)(kern_backend *be, size_t bytes, void **out, nvl_err *err);
    void (*buffer_free)(kern_backend *be, void *p);
    nvl_status (*copy_to_backend)(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err);
    nvl_status (*copy_to_host)(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err);
    nvl_status (*copy_within)(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err); /* may overlap */
    nvl_status (*set_zero)(kern_backend *be, void *dst, size_t n, nvl_err *err);
    nvl_status (*synchronize)(kern_backend *be, nvl_err *err);
    nvl_status (*mem_info)(kern_backend *be, size_t *free_bytes, size_t *total_bytes); /* (optional) */
    nvl_status (*measure)(kern_backend *be, kern_device_rates *out, nvl_err *err); /* (optional) */
    /* (optional, all or none) graphs: kernels/backend.h */
    nvl_status (*capture_begin)(kern_backend *be, nvl_err *err);
    nvl_status (*capture_end)(kern_backend *be, kern_graph **out, nvl_err *err);
    nvl_status (*graph_launch)(kern_backend *be, kern_graph *g, nvl_err *err);
    int (*graph_current)(const kern_backend *be, const kern_graph *g);
    void (*graph_free)(kern_backend *be, kern_graph *g);

    const struct kern_ops_i *ops; /* the op table (kernels/ops.h); entries NULL where missing */

    /* (optional, all or none) the profile's timing marks, in the backend's stream order: a mark
       recorded now (NULL when none can be: while capturing), the milliseconds from a to b
       (waiting for b; < 0 on an error), a mark's release. NULL: the host clock around each op
       (a backend whose ops are done when they return) */
    void *(*mark)(kern_backend *be);
    double (*mark_elapsed_ms)(kern_backend *be, void *a, void *b);
    void (*mark_free)(kern_backend *be, void *m);
};

struct kern_prof;
struct kern_backend {
    const struct kern_backend_i *iface;
    void *context;       /* backend-private */
    char description[256];
    struct kern_prof *prof; /* the per-op profile (kern_backend_profile); NULL: off */
    int auto_device;        /* a device chosen by auto (kern_backend_init_models) */
};

/* kernels/ops.c around every op while profiling (kernels/backend.c): a token, then the op's
 * end under its name and key (matmul: the weight's name; NULL: none). */
void *kern_prof_begin(kern_backend *be);
void kern_prof_end(kern_backend *be, void *token, const char *op, const char *key);

/* NVL_THREADS read and checked (*n = 0 when unset): kernels/cpu/backend_cpu.c. */
nvl_status kern_cpu_threads_env(int *n, nvl_err *err);

/* Constructors of the concrete backends. */
nvl_status kern_cpu_backend_init(kern_backend **out, nvl_err *err);
#ifdef NVL_HAVE_CUDA
/* defined in the module libnvl_cuda.so (cuda/backend_cuda.cu), reached by backend.c through dlopen */
nvl_status kern_cuda_backend_init(kern_backend **out, nvl_err *err);
int kern_cuda_probe_devices(const char **why);
#endif
/* The CPU op table (kernels/cpu/), and per-op scratch of the CPU backend: at least `bytes`,
 * 64-byte aligned, valid until the next call on this backend (one thread per backend). */
extern const struct kern_ops_i kern_cpu_ops;
void *kern_cpu_scratch(kern_backend *be, size_t bytes, nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BACKEND_IMPL_H
