// The CUDA backend: device discovery, stream, cuBLAS handle, device buffers, op scratch and
// weight placement, the step tables and graph capture. The op table is kernels/cuda/ops_cuda.cu.
// None of this has run on a GPU yet.
//
// Device discovery treats any CUDA error (no driver, no device, driver too old) as "no device",
// so a machine without a GPU gets a clean message, never a crash.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend_impl.h"
#include "../base/alloc.h"
#include <cuda_bf16.h>

#include <cublasLt.h>

#include "common.cuh"
#include "cuda_ops.h"

// Built as the module libnvl_cuda.so (kernels/CMakeLists.txt), loaded by kernels/backend.c with
// dlopen: only its two entry points are visible.
#define NVL_CUDA_EXPORT extern "C" __attribute__((visibility("default")))

extern "C" const struct kern_ops_i kern_cuda_ops;

struct placed { /* a weight uploaded by place_weight, freed with the backend */
    void *p;
    struct placed *next;
};

/* The step's tables (kern_step_tables): one layout on the host (pinned staging, which also
 * serves as the copy the ops compare against) and on the device, offsets 256-aligned:
 *   seqs[S] kern_seq | row_seq[R] int32 | ids[R] int32 | mask[R] u8 | dec[R] u8  */
struct step_tables {
    char *host, *dev;     /* pinned staging, device buffer */
    size_t cap;           /* bytes of each */
    cudaEvent_t copied;   /* recorded after the last copy: staging may be rewritten once it passed */
    int n_seq, has_mask, valid;
    int64_t n_rows;
    size_t off_rowseq, off_ids, off_mask, off_dec;
};

struct kern_graph {
    cudaGraphExec_t exec;
    unsigned epoch; /* the backend's memory epoch at capture */
};

struct cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;
    void *cublas_ws; /* cuBLAS's workspace, set once so that captured GEMMs never allocate (kernels.md §3.6) */
    cublasLtHandle_t lt; /* cuBLASLt (FP8 GEMMs) and its own workspace */
    void *lt_ws;
    int sync_each; /* NVL_CUDA_SYNC=1: synchronize after every launch so faults surface there */
    int capturing; /* between capture_begin and capture_end */
    unsigned epoch; /* bumped whenever memory a graph may have recorded moves (scratch, step tables) */
    void *scratch; /* op scratch (quantized activations; sequence tables of ops called without step tables) */
    size_t scratch_cap;
    step_tables tab;
    placed *weights;
    char *stage[2];          /* pinned staging for weight uploads (mmap -> pinned -> device, double-buffered) */
    cudaEvent_t stage_ev[2]; /* recorded after each buffer's copy: the buffer may be refilled once it passed */
    int stage_next;
    size_t smem_optin; /* the device's largest dynamic shared memory per block (opt-in) */
    int sm_count;      /* its multiprocessors */
};

constexpr size_t STAGE_BYTES = (size_t)32 << 20;

constexpr size_t CUBLAS_WS_BYTES = (size_t)32 << 20;

NVL_CUDA_EXPORT int kern_cuda_probe_devices(const char **why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why) *why = cudaGetErrorString(e);
        cudaGetLastError(); // clear the sticky error state
        return 0;
    }
    if (n == 0 && why) *why = "the driver reports 0 devices";
    return n;
}

// ---------------------------------------------------------------------------
// vtable

/* The backend's context, with its device made the calling thread's current one: the current
 * device is per thread, and the ops may run on another thread than the one that made the
 * backend (serve steps on a worker thread); with NVL_CUDA_DEVICE=1 an allocation on that thread
 * would otherwise land on device 0. Every entry point goes through here; the check is a
 * thread-local compare. */
static thread_local int t_device = -1; /* the device made current on this thread by ctx_of / init */
static cuda_ctx *ctx_of(const kern_backend *be) {
    cuda_ctx *c = (cuda_ctx *)be->context;
    if (c && c->device != t_device) {
        if (cudaSetDevice(c->device) == cudaSuccess) t_device = c->device;
        else (void)cudaGetLastError(); /* (init reports a bad device itself) */
    }
    return c;
}

static void cuda_free_be(kern_backend *be) {
    cuda_ctx *c = ctx_of(be);
    if (c) {
        if (c->capturing && c->stream) { /* (a capture left open: ended and dropped before its stream goes) */
            cudaGraph_t g = NULL;
            if (cudaStreamEndCapture(c->stream, &g) == cudaSuccess && g) cudaGraphDestroy(g);
            (void)cudaGetLastError();
            c->capturing = 0;
        }
        if (c->stream) cudaStreamSynchronize(c->stream);
        if (c->cublas) cublasDestroy(c->cublas);
        if (c->cublas_ws) cudaFree(c->cublas_ws);
        if (c->lt) cublasLtDestroy(c->lt);
        if (c->lt_ws) cudaFree(c->lt_ws);
        if (c->tab.copied) cudaEventDestroy(c->tab.copied);
        if (c->tab.host) cudaFreeHost(c->tab.host);
        if (c->tab.dev) cudaFree(c->tab.dev);
        for (int b = 0; b < 2; b++) {
            if (c->stage_ev[b]) cudaEventDestroy(c->stage_ev[b]);
            if (c->stage[b]) cudaFreeHost(c->stage[b]);
        }
        if (c->stream) cudaStreamDestroy(c->stream);
        if (c->scratch) cudaFree(c->scratch);
        for (placed *w = c->weights; w;) {
            placed *nx = w->next;
            cudaFree(w->p);
            nvl_free(w);
            w = nx;
        }
        nvl_free(c);
    }
    nvl_free(be);
}

static int cuda_supports(const kern_backend *, enum kern_op op, nvl_dtype dt) {
    return (op == KERN_OP_RMSNORM || op == KERN_OP_MATMUL) &&
           (dt == NVL_DTYPE_BF16 || dt == NVL_DTYPE_F32 || dt == NVL_DTYPE_F16);
}

/* An allocation the device refused, said in bytes asked and free (the runtime's error cleared). */
static nvl_status device_oom(nvl_err *err, const char *what, size_t n, cudaError_t e) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
    if (e != cudaErrorMemoryAllocation)
        return nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: %s (%zu bytes): %s", what, n, cudaGetErrorString(e));
    return nvl_err_set(err, NVL_ERR_NOMEM, "cuda backend: out of device memory for %s: %.1f MiB asked, %.1f of %.1f MiB free",
                       what, (double)n / 1048576.0, (double)free_b / 1048576.0, (double)total_b / 1048576.0);
}

static nvl_status cuda_alloc(kern_backend *be, size_t n, void **out, nvl_err *err) {
    (void)ctx_of(be); /* (on the backend's device, whichever thread asks) */
    *out = NULL;
    const cudaError_t e = cudaMalloc(out, n ? n : 1);
    if (e != cudaSuccess) {
        *out = NULL;
        return device_oom(err, "a buffer", n, e);
    }
    return NVL_OK;
}
static void cuda_buf_free(kern_backend *be, void *p) {
    (void)ctx_of(be);
    CUDA_CHECK_LOG(cudaFree(p));
}

static nvl_status cuda_h2d(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, ctx_of(be)->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx_of(be)->stream));
    return NVL_OK;
}
static nvl_status cuda_d2h(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, ctx_of(be)->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx_of(be)->stream));
    return NVL_OK;
}
static nvl_status cuda_d2d(kern_backend *be, void *dst, const void *src, size_t n, nvl_err *err) {
    const char *d = (const char *)dst, *s = (const char *)src;
    if (d == s) return NVL_OK;
    if (d < s + n && s < d + n) { /* overlapping ranges (cudaMemcpy's result is undefined): through the scratch */
        void *tmp = kern_cuda_scratch(be, n, err);
        if (!tmp) {
            nvl_err_prefix(err, "an overlapping copy of %zu bytes", n);
            return err && err->code != NVL_OK ? err->code : NVL_ERR_DEVICE;
        }
        CUDA_CHECK(cudaMemcpyAsync(tmp, src, n, cudaMemcpyDeviceToDevice, ctx_of(be)->stream));
        src = tmp;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, ctx_of(be)->stream));
    return NVL_OK;
}
static nvl_status cuda_zero(kern_backend *be, void *dst, size_t n, nvl_err *err) {
    CUDA_CHECK(cudaMemsetAsync(dst, 0, n, ctx_of(be)->stream));
    return NVL_OK;
}
static nvl_status cuda_sync(kern_backend *be, nvl_err *err) {
    CUDA_CHECK(cudaStreamSynchronize(ctx_of(be)->stream));
    return NVL_OK;
}

extern "C" cudaStream_t kern_cuda_stream(kern_backend *be) { return ctx_of(be)->stream; }
extern "C" cublasHandle_t kern_cuda_cublas(kern_backend *be) { return ctx_of(be)->cublas; }
extern "C" cublasLtHandle_t kern_cuda_cublaslt(kern_backend *be, void **workspace, size_t *bytes) {
    *workspace = ctx_of(be)->lt_ws;
    *bytes = CUBLAS_WS_BYTES;
    return ctx_of(be)->lt;
}

extern "C" void *kern_cuda_scratch(kern_backend *be, size_t bytes, nvl_err *err) {
    cuda_ctx *c = ctx_of(be);
    if (bytes > c->scratch_cap && c->capturing) { /* growing would free memory the capture may have recorded */
        nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: an op needs %zu bytes of scratch during a graph capture (%zu "
                    "held): run the same step eagerly once before capturing it", bytes, c->scratch_cap);
        return NULL;
    }
    if (bytes > c->scratch_cap) {
        size_t cap = c->scratch_cap ? c->scratch_cap : (size_t)1 << 20;
        while (cap < bytes) cap *= 2;
        void *p = NULL;
        /* the old block may still be read by queued work */
        cudaError_t e = cudaStreamSynchronize(c->stream);
        if (e != cudaSuccess) { /* an earlier launch failed: say so, not "out of memory" */
            (void)cudaGetLastError();
            nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: growing the op scratch: %s", cudaGetErrorString(e));
            return NULL;
        }
        if ((e = cudaMalloc(&p, cap)) != cudaSuccess) {
            device_oom(err, "the op scratch", cap, e);
            return NULL;
        }
        if (c->scratch) cudaFree(c->scratch);
        c->scratch = p;
        c->scratch_cap = cap;
        c->epoch++;
    }
    return c->scratch;
}

extern "C" int kern_cuda_capturing(kern_backend *be) { return ctx_of(be)->capturing; }
extern "C" size_t kern_cuda_smem_optin(kern_backend *be) { return ctx_of(be)->smem_optin; }
extern "C" int kern_cuda_sm_count(kern_backend *be) { return ctx_of(be)->sm_count; }

static size_t al256(size_t n) { return (n + 255) & ~(size_t)255; }

extern "C" void kern_cuda_row_tables(int32_t *row_seq, uint8_t *dec, int64_t rows, const kern_seq *seqs, int n_seq) {
    for (int64_t r = 0; r < rows; r++) row_seq[r] = -1, dec[r] = 0;
    for (int i = 0; i < n_seq; i++) /* bounded by rows whatever the caller checked */
        for (int64_t t = 0; t < seqs[i].n_rows && seqs[i].row0 + t < rows; t++) {
            row_seq[seqs[i].row0 + t] = i;
            dec[seqs[i].row0 + t] = (uint8_t)(seqs[i].decode != 0);
        }
}

extern "C" nvl_status kern_cuda_step_tables(kern_backend *be, const kern_seq *seqs, int n_seq, const int32_t *ids,
                                           const uint8_t *mask, int64_t n_rows, nvl_err *err) {
    cuda_ctx *c = ctx_of(be);
    step_tables *tb = &c->tab;
    const size_t R = (size_t)n_rows, off_rowseq = al256((size_t)n_seq * sizeof(kern_seq)),
                 off_ids = off_rowseq + al256(R * 4), off_mask = off_ids + al256(R * 4), off_dec = off_mask + al256(R),
                 total = off_dec + al256(R) + 256;
    if (c->capturing) /* (before the tables are marked unset: the capture's ops still read the valid ones, so the
                         error is this one, not every later op's) */
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "kern_step_tables: called during a graph capture (set the tables "
                           "before capture_begin)");
    tb->valid = 0;
    if (total > tb->cap) {
        size_t cap = tb->cap ? tb->cap : (size_t)64 << 10;
        while (cap < total) cap *= 2;
        CUDA_CHECK(cudaStreamSynchronize(c->stream)); /* queued work may still read the old tables */
        if (tb->host) cudaFreeHost(tb->host);
        if (tb->dev) cudaFree(tb->dev);
        tb->host = tb->dev = NULL;
        tb->cap = 0;
        c->epoch++;
        CUDA_CHECK(cudaMallocHost((void **)&tb->host, cap));
        CUDA_CHECK(cudaMalloc((void **)&tb->dev, cap));
        tb->cap = cap;
    }
    if (!tb->copied) CUDA_CHECK(cudaEventCreateWithFlags(&tb->copied, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventSynchronize(tb->copied)); /* the last copy has left the staging */
    char *h = tb->host;
    memcpy(h, seqs, (size_t)n_seq * sizeof(kern_seq));
    kern_cuda_row_tables((int32_t *)(h + off_rowseq), (uint8_t *)(h + off_dec), n_rows, seqs, n_seq);
    if (R) memcpy(h + off_ids, ids, R * 4);
    if (mask) memcpy(h + off_mask, mask, R);
    else memset(h + off_mask, 0, R);
    CUDA_CHECK(cudaMemcpyAsync(tb->dev, h, off_dec + R, cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(cudaEventRecord(tb->copied, c->stream));
    tb->n_seq = n_seq;
    tb->n_rows = n_rows;
    tb->has_mask = mask != NULL;
    tb->off_rowseq = off_rowseq;
    tb->off_ids = off_ids;
    tb->off_mask = off_mask;
    tb->off_dec = off_dec;
    tb->valid = 1;
    return NVL_OK;
}

extern "C" int kern_cuda_step_seqs(kern_backend *be, const kern_seq *seqs, int n_seq, kern_cuda_tables *out) {
    const step_tables *tb = &ctx_of(be)->tab;
    memset(out, 0, sizeof *out);
    if (!tb->valid || n_seq != tb->n_seq || (n_seq && memcmp(seqs, tb->host, (size_t)n_seq * sizeof(kern_seq))))
        return 0;
    out->seqs = (const kern_seq *)tb->dev;
    out->row_seq = (const int32_t *)(tb->dev + tb->off_rowseq);
    out->dec = (const uint8_t *)(tb->dev + tb->off_dec);
    out->n_rows = tb->n_rows;
    return 1;
}

extern "C" int kern_cuda_step_ids(kern_backend *be, const int32_t *ids, const uint8_t *mask, int64_t n_rows,
                                  kern_cuda_tables *out) {
    const step_tables *tb = &ctx_of(be)->tab;
    memset(out, 0, sizeof *out);
    if (!tb->valid || n_rows != tb->n_rows || (n_rows && memcmp(ids, tb->host + tb->off_ids, (size_t)n_rows * 4)))
        return 0;
    if (mask && (!tb->has_mask || memcmp(mask, tb->host + tb->off_mask, (size_t)n_rows))) return 0;
    out->ids = (const int32_t *)(tb->dev + tb->off_ids);
    out->mask = mask ? (const uint8_t *)(tb->dev + tb->off_mask) : NULL;
    out->n_rows = n_rows;
    return 1;
}

// ---------------------------------------------------------------------------
// Graphs: stream capture of the ops, replayed with cudaGraphLaunch

static nvl_status cuda_capture_begin(kern_backend *be, nvl_err *err) {
    cuda_ctx *c = ctx_of(be);
    if (c->capturing) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "cuda backend: a capture is already running");
    /* thread-local: other threads (another backend's work) may allocate meanwhile */
    CUDA_CHECK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    c->capturing = 1;
    return NVL_OK;
}

static nvl_status cuda_capture_end(kern_backend *be, kern_graph **out, nvl_err *err) {
    cuda_ctx *c = ctx_of(be);
    *out = NULL;
    if (!c->capturing) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "cuda backend: no capture is running");
    c->capturing = 0;
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
    cudaGraphExec_t exec = NULL;
    if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* an invalidated capture leaves its error behind */
        return nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: graph capture failed: %s", cudaGetErrorString(e));
    }
    kern_graph *g = (kern_graph *)nvl_calloc(1, sizeof *g);
    if (!g) {
        cudaGraphExecDestroy(exec);
        return nvl_err_set(err, NVL_ERR_NOMEM, "cuda backend: out of memory");
    }
    g->exec = exec;
    g->epoch = c->epoch;
    *out = g;
    return NVL_OK;
}

static nvl_status cuda_graph_launch(kern_backend *be, kern_graph *g, nvl_err *err) {
    cuda_ctx *c = ctx_of(be);
    if (g->epoch != c->epoch)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "cuda backend: the graph refers to memory the backend has moved "
                           "since it was captured (capture it anew)");
    CUDA_CHECK(cudaGraphLaunch(g->exec, c->stream));
    if (c->sync_each) CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return NVL_OK;
}

static int cuda_graph_current(const kern_backend *be, const kern_graph *g) { return g->epoch == ctx_of(be)->epoch; }

static void cuda_graph_free(kern_backend *, kern_graph *g) {
    if (g->exec) CUDA_CHECK_LOG(cudaGraphExecDestroy(g->exec));
    nvl_free(g);
}

extern "C" nvl_status kern_cuda_after_launch(kern_backend *be, const char *op, nvl_err *err) {
    cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess && ctx_of(be)->sync_each && !ctx_of(be)->capturing) e = cudaStreamSynchronize(ctx_of(be)->stream);
    if (e != cudaSuccess) return nvl_err_set(err, NVL_ERR_DEVICE, "%s: %s", op, cudaGetErrorString(e));
    return NVL_OK;
}

/* Uploads a host tensor (a view into the mapped checkpoint) once; t then points at the copy. */
extern "C" nvl_status kern_cuda_place_weight(kern_backend *be, nvl_tensor *t, nvl_err *err) {
    if (!t->data || t->device == NVL_DEVICE_CUDA) return NVL_OK;
    cuda_ctx *c = ctx_of(be);
    const size_t n = nvl_tensor_nbytes(t);
    placed *w = (placed *)nvl_calloc(1, sizeof *w);
    if (!w) return nvl_err_set(err, NVL_ERR_NOMEM, "cuda backend: out of memory");
    const cudaError_t e0 = cudaMalloc(&w->p, n ? n : 1);
    if (e0 != cudaSuccess) {
        nvl_free(w);
        return device_oom(err, "a weight", n, e0);
    }
    nvl_status st = NVL_OK;
    if (!c->stage[0]) { /* pinned staging once; without it (pinned memory refused) a plain copy */
        for (int b = 0; b < 2; b++)
            if (cudaMallocHost((void **)&c->stage[b], STAGE_BYTES) != cudaSuccess ||
                cudaEventCreateWithFlags(&c->stage_ev[b], cudaEventDisableTiming) != cudaSuccess) {
                cudaGetLastError();
                break;
            }
    }
    if (c->stage[0] && c->stage[1] && c->stage_ev[0] && c->stage_ev[1]) {
        /* chunks alternate between the two buffers: the CPU fills one while the other is copied */
        for (size_t o = 0; o < n && st == NVL_OK; o += STAGE_BYTES) {
            const size_t k = n - o < STAGE_BYTES ? n - o : STAGE_BYTES;
            const int b = c->stage_next;
            c->stage_next ^= 1;
            cudaError_t e = cudaEventSynchronize(c->stage_ev[b]);
            if (e == cudaSuccess) {
                memcpy(c->stage[b], (const char *)t->data + o, k);
                e = cudaMemcpyAsync((char *)w->p + o, c->stage[b], k, cudaMemcpyHostToDevice, c->stream);
            }
            if (e == cudaSuccess) e = cudaEventRecord(c->stage_ev[b], c->stream);
            if (e != cudaSuccess) st = nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: uploading a weight: %s", cudaGetErrorString(e));
        }
    } else if (cudaMemcpyAsync(w->p, t->data, n, cudaMemcpyHostToDevice, c->stream) != cudaSuccess ||
               cudaStreamSynchronize(c->stream) != cudaSuccess) { /* on the stream the ops run on */
        st = nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: uploading a weight of %zu bytes: %s", n,
                         cudaGetErrorString(cudaGetLastError()));
    }
    if (st != NVL_OK) {
        cudaFree(w->p);
        nvl_free(w);
        return st;
    }
    w->next = c->weights;
    c->weights = w;
    t->data = w->p;
    t->device = NVL_DEVICE_CUDA;
    return NVL_OK;
}

static nvl_status cuda_mem_info(kern_backend *be, size_t *free_b, size_t *total_b) {
    (void)ctx_of(be);
    if (cudaMemGetInfo(free_b, total_b) == cudaSuccess) return NVL_OK;
    (void)cudaGetLastError();
    return NVL_ERR_DEVICE;
}

/* kern_backend_measure: 1 GiB device-to-device copies and 8192^3 BF16 GEMMs, timed with events
 * after a warm-up, the best of a few runs. */
static nvl_status cuda_measure(kern_backend *be, kern_device_rates *out, nvl_err *err) {
    cuda_ctx *c = ctx_of(be);
    const size_t copy_bytes = (size_t)1 << 30;
    const int n = 8192;
    const size_t gemm_bytes = (size_t)n * n * 2;
    char *buf = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    nvl_status st = NVL_OK;
    float best = 1e30f, ms = 0;
    const float one = 1.0f, zero = 0.0f;
    if (cudaMalloc((void **)&buf, 2 * copy_bytes) != cudaSuccess) {
        cudaGetLastError();
        return nvl_err_set(err, NVL_ERR_NOMEM, "cuda backend: no 2 GiB of device memory to measure rates in");
    }
    cudaError_t e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    if (e == cudaSuccess) e = cudaMemsetAsync(buf, 0x3c, 2 * copy_bytes, c->stream); /* bf16 0x3c3c = 0.0115 */
    for (int r = 0; e == cudaSuccess && r < 6; r++) {
        e = cudaEventRecord(e0, c->stream);
        if (e == cudaSuccess) e = cudaMemcpyAsync(buf + copy_bytes, buf, copy_bytes, cudaMemcpyDeviceToDevice, c->stream);
        if (e == cudaSuccess) e = cudaEventRecord(e1, c->stream);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
        if (e == cudaSuccess && r > 0 && ms < best) best = ms; /* run 0 warms up */
    }
    if (e == cudaSuccess) out->copy_gbs = 2.0 * (double)copy_bytes / (best * 1e-3) / 1e9;
    best = 1e30f;
    for (int r = 0; e == cudaSuccess && st == NVL_OK && r < 6; r++) {
        e = cudaEventRecord(e0, c->stream);
        if (e == cudaSuccess &&
            cublasGemmEx(c->cublas, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, buf, CUDA_R_16BF, n, buf + gemm_bytes,
                         CUDA_R_16BF, n, &zero, buf + 2 * gemm_bytes, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                         CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS)
            st = nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: the BF16 GEMM to measure failed");
        if (e == cudaSuccess && st == NVL_OK) e = cudaEventRecord(e1, c->stream);
        if (e == cudaSuccess && st == NVL_OK) e = cudaEventSynchronize(e1);
        if (e == cudaSuccess && st == NVL_OK) e = cudaEventElapsedTime(&ms, e0, e1);
        if (e == cudaSuccess && r > 0 && ms < best) best = ms;
    }
    if (e == cudaSuccess && st == NVL_OK) out->gemm_bf16_tflops = 2.0 * n * (double)n * n / (best * 1e-3) / 1e12;
    if (e != cudaSuccess && st == NVL_OK) st = nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: measuring: %s", cudaGetErrorString(e));
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(buf);
    return st;
}

/* The per-op profile's marks (backend_impl.h): an event recorded on the backend's stream; none
 * while capturing (a record there would become a graph node, timed by no one). */
static void *cuda_mark(kern_backend *be) {
    cuda_ctx *c = ctx_of(be);
    cudaEvent_t e = NULL;
    if (c->capturing || cudaEventCreate(&e) != cudaSuccess) return NULL;
    if (cudaEventRecord(e, c->stream) != cudaSuccess) {
        cudaEventDestroy(e);
        return NULL;
    }
    return (void *)e;
}
static double cuda_mark_elapsed_ms(kern_backend *be, void *a, void *b) {
    (void)be;
    float ms = 0.f;
    if (cudaEventSynchronize((cudaEvent_t)b) != cudaSuccess || cudaEventElapsedTime(&ms, (cudaEvent_t)a, (cudaEvent_t)b) != cudaSuccess)
        return -1.0;
    return (double)ms;
}
static void cuda_mark_free(kern_backend *be, void *m) {
    (void)be;
    if (m) cudaEventDestroy((cudaEvent_t)m);
}

static struct kern_backend_i make_iface(void) {
    struct kern_backend_i i;
    memset(&i, 0, sizeof i);
    i.name = "cuda";
    i.kind = KERN_BACKEND_KIND_CUDA;
    i.free = cuda_free_be;
    i.supports = cuda_supports;
    i.buffer_alloc = cuda_alloc;
    i.buffer_free = cuda_buf_free;
    i.copy_to_backend = cuda_h2d;
    i.copy_to_host = cuda_d2h;
    i.copy_within = cuda_d2d;
    i.set_zero = cuda_zero;
    i.synchronize = cuda_sync;
    i.ops = &kern_cuda_ops;
    i.mem_info = cuda_mem_info;
    i.measure = cuda_measure;
    i.capture_begin = cuda_capture_begin;
    i.capture_end = cuda_capture_end;
    i.graph_launch = cuda_graph_launch;
    i.graph_current = cuda_graph_current;
    i.graph_free = cuda_graph_free;
    i.mark = cuda_mark;
    i.mark_elapsed_ms = cuda_mark_elapsed_ms;
    i.mark_free = cuda_mark_free;
    return i;
}
static const struct kern_backend_i g_cuda_iface = make_iface();

NVL_CUDA_EXPORT nvl_status kern_cuda_backend_init(kern_backend **out, nvl_err *err) {
    *out = NULL;
    const char *why = NULL;
    if (kern_cuda_probe_devices(&why) <= 0)
        return nvl_err_set(err, NVL_ERR_NO_DEVICE, "no CUDA device (%s)", why ? why : "none found");
    kern_backend *be = (kern_backend *)nvl_calloc(1, sizeof *be);
    cuda_ctx *c = (cuda_ctx *)nvl_calloc(1, sizeof *c);
    if (!be || !c) {
        nvl_free(be);
        nvl_free(c);
        return nvl_err_set(err, NVL_ERR_NOMEM, "cuda backend: out of memory");
    }
    be->iface = &g_cuda_iface;
    be->context = c;
    const char *dev_env = getenv("NVL_CUDA_DEVICE");
    char *end = NULL;
    const long dev = dev_env && *dev_env ? strtol(dev_env, &end, 10) : 0;
    const int n_dev = kern_cuda_probe_devices(NULL);
    if (dev_env && *dev_env && (*end || dev < 0 || dev >= n_dev)) {
        nvl_free(be);
        nvl_free(c);
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "NVL_CUDA_DEVICE=%.40s: expected a device index from 0 to %d", dev_env,
                           n_dev - 1);
    }
    c->device = (int)dev;
    const char *sync_env = getenv("NVL_CUDA_SYNC");
    c->sync_each = sync_env && atoi(sync_env) != 0;
    nvl_status st = NVL_OK;
    cudaDeviceProp prop;
    cudaError_t e = cudaSetDevice(c->device);
    if (e == cudaSuccess) t_device = c->device;
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, c->device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        st = nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: device %d: %s", c->device,
                         cudaGetErrorString(e));
        goto fail;
    }
    /* cuBLAS's and cuBLASLt's workspaces (fixed, so that captured GEMMs never allocate) */
    if ((e = cudaMalloc(&c->cublas_ws, CUBLAS_WS_BYTES)) != cudaSuccess ||
        (e = cudaMalloc(&c->lt_ws, CUBLAS_WS_BYTES)) != cudaSuccess) {
        st = device_oom(err, "cuBLAS's workspaces", 2 * CUBLAS_WS_BYTES, e);
        goto fail;
    }
    /* the stream first: cublasSetStream resets the workspace to cuBLAS's own pool */
    if (cublasCreate(&c->cublas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(c->cublas, c->stream) != CUBLAS_STATUS_SUCCESS ||
        cublasSetWorkspace(c->cublas, c->cublas_ws, CUBLAS_WS_BYTES) != CUBLAS_STATUS_SUCCESS ||
        /* split-K partial sums in f32, never in a BF16/F16 output type: the ops' contract (f32
           accumulation) and their CPU twins (one f32 sum) */
        cublasSetMathMode(c->cublas, (cublasMath_t)(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)) !=
            CUBLAS_STATUS_SUCCESS ||
        cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS) {
        st = nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: cuBLAS initialisation failed");
        goto fail;
    }
    c->smem_optin = prop.sharedMemPerBlockOptin;
    c->sm_count = prop.multiProcessorCount;
    if ((e = kern_cuda_ops_init(c->smem_optin)) != cudaSuccess) {
        st = nvl_err_set(err, NVL_ERR_DEVICE, "cuda backend: device %d: kernel attributes: %s", c->device, cudaGetErrorString(e));
        goto fail;
    }
    snprintf(be->description, sizeof be->description, "CUDA: %.200s, sm_%d%d, %.0f GiB", prop.name,
             prop.major, prop.minor, (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    *out = be;
    return NVL_OK;
fail:
    cuda_free_be(be);
    return st;
}
