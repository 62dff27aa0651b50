/* y[M,N] = x[M,K] @ w[N,K]^T for BF16 weights and bf16-valued x through oneDNN's matmul primitive
 * (Debian's libdnnl-dev; issue 18: a maintained library that runs the many-row BF16 matmuls on the
 * CPU's matrix units -- AMX tiles where the CPU has them, AVX512-BF16 dot products otherwise --
 * chosen by oneDNN at run time from the CPU's flags).
 *
 * Semantics: the same as matmul_bf16.c's own kernel and as transformers' bf16 Linear: x is exactly
 * bf16 (held widened to f32, so packing it loses nothing), products of two bf16 values are exact,
 * sums in f32. Only the order of the f32 sums differs from the own kernel (bounded by the tests).
 *
 * Batch invariance: one oneDNN call over all M rows is not invariant (measured: a tile's ViT
 * features changed with the number of tiles beside it), because oneDNN picks its blocking and
 * threading from M. So the rows go in blocks of DNNL_MB (the last one padded with zero rows) and
 * the weight rows in blocks of DNNL_NB, each block product one single-threaded primitive of a
 * shape that does not depend on M (into a dense per-thread tile, then copied out), run by our
 * OpenMP loop: a row's result depends only on its own values, N and K -- whatever M is and
 * wherever the row falls (test_kernels checks it). The padding costs up to DNNL_MB - 1 rows of
 * work, which is why steps below KERN_DNNL_MIN_ROWS stay on the own kernel.
 *
 * Layout: the weights are used where they lie (the checkpoint's mmap, row-major [N, K]) as
 * oneDNN's [K, N] weights in "ba" order (a block of weight rows is a pointer offset); measured on
 * a 2-core Zen 4 plain weights ran within 5 % of a repacked copy, so no second copy is made.
 * x is packed to bf16 per call.
 *
 * Primitives: creating one JIT-compiles a kernel (0.2-8 ms); created ones are kept for the life of
 * the process in a table keyed by (rows, cols, K); a full table makes a temporary one. The
 * scratchpad is the caller's (user mode), one per thread, so concurrent executions share nothing. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/alloc.h"
#include "cpu_ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef NVL_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>

#define DNNL_CACHE 128
#define DNNL_MB 128 /* rows of x per block product (64: 270, 128: 340-370, 256: 370-410 GF/s a thread) */
#define DNNL_NB 256 /* weight rows per block product */

typedef struct prim_entry {
    int64_t rows, cols, K;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t src, wei, dst;
    size_t scratch; /* bytes of user scratchpad */
} prim_entry;

static struct {
    pthread_once_t once;
    int ok;
    dnnl_engine_t engine;
    pthread_mutex_t mu;
    prim_entry e[DNNL_CACHE];
    int n;
    char impl[96];
} g_dnnl = {.once = PTHREAD_ONCE_INIT, .mu = PTHREAD_MUTEX_INITIALIZER};

static int make_prim(prim_entry *ne, int64_t rows, int64_t cols, int64_t K);

/* An engine, and two checks that turn the path off for the process: oneDNN must run BF16 natively
 * (its effective ISA has AVX512-BF16 or AMX): on AVX-512F alone it emulates BF16 and measured 2.5x
 * slower than nanovl's f32 kernels (bench/RESULTS.md, ONEDNN_MAX_CPU_ISA=AVX512_CORE), and below
 * AVX-512 oneDNN 2.6 makes no BF16 matmul at all (the probe). */
static void dnnl_init(void) {
    const unsigned isa = (unsigned)dnnl_get_effective_cpu_isa(), bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    if ((isa & bf16) != bf16) return;
    if (dnnl_engine_create(&g_dnnl.engine, dnnl_cpu, 0) != dnnl_success) return;
    prim_entry probe;
    if (make_prim(&probe, 1, 16, 32)) {
        dnnl_primitive_destroy(probe.prim);
        g_dnnl.ok = 1;
    }
}

/* Makes the single-threaded block primitive (rows x cols outputs over K into a dense tile: with a
 * strided destination oneDNN 2.6 takes its older gemm:jit kernel, measured 10-25 % slower, and
 * never its brgemm kernels, which are the ones that use AMX). */
static int make_prim(prim_entry *ne, int64_t rows, int64_t cols, int64_t K) {
    memset(ne, 0, sizeof *ne);
    ne->rows = rows;
    ne->cols = cols;
    ne->K = K;
    dnnl_dims_t sd = {rows, K}, wd = {K, cols}, dd = {rows, cols}, ws = {1, K};
    if (dnnl_memory_desc_init_by_tag(&ne->src, 2, sd, dnnl_bf16, dnnl_ab) != dnnl_success ||
        dnnl_memory_desc_init_by_strides(&ne->wei, 2, wd, dnnl_bf16, ws) != dnnl_success ||
        dnnl_memory_desc_init_by_tag(&ne->dst, 2, dd, dnnl_f32, dnnl_ab) != dnnl_success)
        return 0;
    dnnl_matmul_desc_t md;
    if (dnnl_matmul_desc_init(&md, &ne->src, &ne->wei, NULL, &ne->dst) != dnnl_success) return 0;
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return 0;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    /* planned for the one thread that will run it (inside our parallel loop), so the plan, and
     * with it the order of the sums, does not depend on NVL_THREADS */
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    if (st == dnnl_success) st = dnnl_primitive_desc_create(&pd, &md, attr, g_dnnl.engine, NULL);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    dnnl_primitive_attr_destroy(attr);
    if (st != dnnl_success) return 0;
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
        snprintf(g_dnnl.impl, sizeof g_dnnl.impl, "%s", impl);
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    ne->scratch = smd ? dnnl_memory_desc_get_size(smd) : 0;
    st = dnnl_primitive_create(&ne->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    return st == dnnl_success;
}

/* The cached primitive for this block shape, or a temporary one in *tmp when the table is full
 * (the caller destroys tmp->prim). NULL when oneDNN cannot make it (e.g. a CPU without AVX-512,
 * where oneDNN 2.6 has no BF16 matmul). Entries are never evicted, so a pointer stays valid. */
static const prim_entry *get_prim(int64_t rows, int64_t cols, int64_t K, prim_entry *tmp) {
    const prim_entry *found = NULL;
    pthread_mutex_lock(&g_dnnl.mu);
    for (int i = 0; i < g_dnnl.n && !found; i++) {
        const prim_entry *p = &g_dnnl.e[i];
        if (p->rows == rows && p->cols == cols && p->K == K) found = p;
    }
    if (!found && g_dnnl.n < DNNL_CACHE && make_prim(&g_dnnl.e[g_dnnl.n], rows, cols, K))
        found = &g_dnnl.e[g_dnnl.n++];
    else if (!found && g_dnnl.n == DNNL_CACHE && make_prim(tmp, rows, cols, K))
        found = tmp;
    pthread_mutex_unlock(&g_dnnl.mu);
    return found;
}

/* A thread's objects for the block products of one call: a stream and, per primitive (full
 * weight block, tail), memory objects whose data pointers move from block to block (made once
 * per call and thread: making them per block cost as much as a small block's product). */
typedef struct blk_ctx {
    dnnl_stream_t stream;
    dnnl_memory_t ms[2], mw[2], md[2], mscr;
    int made[2], bad;
} blk_ctx;

static void blk_ctx_free(blk_ctx *c) {
    for (int i = 0; i < 2; i++) {
        if (c->ms[i]) dnnl_memory_destroy(c->ms[i]);
        if (c->mw[i]) dnnl_memory_destroy(c->mw[i]);
        if (c->md[i]) dnnl_memory_destroy(c->md[i]);
    }
    if (c->mscr) dnnl_memory_destroy(c->mscr);
    if (c->stream) dnnl_stream_destroy(c->stream);
}

/* One block product with primitive k of pr: the dense tile y (rows x cols) = xb block @ w
 * block^T; scratch (scratch_bytes) is the thread's scratchpad. */
static int run_block(blk_ctx *c, const prim_entry *const pr[2], int k, float *y, const uint16_t *xb, const void *w,
                     void *scratch, size_t scratch_bytes) {
    const prim_entry *p = pr[k];
    if (c->bad) return 0;
    if (!c->stream && dnnl_stream_create(&c->stream, g_dnnl.engine, dnnl_stream_default_flags) != dnnl_success)
        return c->bad = 1, 0;
    if (!c->mscr && scratch_bytes) {
        dnnl_memory_desc_t smd;
        dnnl_dims_t sdim = {(int64_t)scratch_bytes};
        if (dnnl_memory_desc_init_by_tag(&smd, 1, sdim, dnnl_u8, dnnl_a) != dnnl_success ||
            dnnl_memory_create(&c->mscr, &smd, g_dnnl.engine, scratch) != dnnl_success)
            return c->bad = 1, 0;
    }
    if (!c->made[k]) {
        c->made[k] = 1;
        if (dnnl_memory_create(&c->ms[k], &p->src, g_dnnl.engine, (void *)xb) != dnnl_success ||
            dnnl_memory_create(&c->mw[k], &p->wei, g_dnnl.engine, (void *)w) != dnnl_success ||
            dnnl_memory_create(&c->md[k], &p->dst, g_dnnl.engine, y) != dnnl_success)
            return c->bad = 1, 0;
    } else if (dnnl_memory_set_data_handle(c->ms[k], (void *)xb) != dnnl_success ||
               dnnl_memory_set_data_handle(c->mw[k], (void *)w) != dnnl_success ||
               dnnl_memory_set_data_handle(c->md[k], y) != dnnl_success)
        return c->bad = 1, 0;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, c->ms[k]}, {DNNL_ARG_WEIGHTS, c->mw[k]}, {DNNL_ARG_DST, c->md[k]},
                               {DNNL_ARG_SCRATCHPAD, c->mscr}};
    if (dnnl_primitive_execute(p->prim, c->stream, p->scratch ? 4 : 3, args) != dnnl_success ||
        dnnl_stream_wait(c->stream) != dnnl_success)
        return c->bad = 1, 0;
    return 1;
}
#endif

int kern_cpu_matmul_dnnl(float *y, const float *x, int64_t ldx, const nvl_tensor *w, int64_t M) {
#ifdef NVL_HAVE_DNNL
    if (w->dtype != NVL_DTYPE_BF16 || w->n_dims != 2 || M < 1 || ldx < w->shape[1]) return 0;
    pthread_once(&g_dnnl.once, dnnl_init);
    if (!g_dnnl.ok) return 0;
    const int64_t N = w->shape[0], K = w->shape[1];
    const int64_t nmb = (M + DNNL_MB - 1) / DNNL_MB, Mp = nmb * DNNL_MB;
    const int64_t nnb = (N + DNNL_NB - 1) / DNNL_NB, ntail = N - (nnb - 1) * DNNL_NB;
    prim_entry tmp[2] = {{0}};
    /* the same two primitives for every row block: a full weight block, the tail weight block */
    const prim_entry *pr[2] = {NULL, get_prim(DNNL_MB, ntail, K, &tmp[1])};
    pr[0] = nnb > 1 ? get_prim(DNNL_MB, DNNL_NB, K, &tmp[0]) : pr[1]; /* N <= DNNL_NB: the tail alone */
    int ok = pr[0] && pr[1];
    const size_t scratch = ok ? ((pr[0]->scratch > pr[1]->scratch ? pr[0]->scratch : pr[1]->scratch) + 63) & ~(size_t)63 : 0;
    const size_t tile = (size_t)DNNL_MB * DNNL_NB * sizeof(float); /* one dense output tile per thread */
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    uint16_t *xb = ok ? nvl_aligned_alloc(64, (size_t)(Mp * K) * sizeof(uint16_t) + 64) : NULL;
    unsigned char *per = ok ? nvl_aligned_alloc(64, (tile + scratch) * (size_t)nt + 64) : NULL;
    blk_ctx *ctx = ok ? nvl_calloc((size_t)nt, sizeof *ctx) : NULL;
    if (!xb || !per || !ctx) ok = 0;
    if (ok) {
#pragma omp parallel for schedule(static) if (Mp * K > 65536)
        for (int64_t m = 0; m < Mp; m++) /* exact: the values are bf16 already; pad rows are zero */
            for (int64_t k = 0; k < K; k++) xb[m * K + k] = m < M ? nvl_f32_to_bf16(x[m * ldx + k]) : 0;
        /* weight block major: a thread's consecutive blocks share a weight block (kept in L2) */
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < nmb * nnb; i++) {
            const int64_t nbk = i / nmb, mbk = i % nmb, n0 = nbk * DNNL_NB, m0 = mbk * DNNL_MB;
            const int tail_n = nbk == nnb - 1;
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            float *yt = (float *)(per + (size_t)t * (tile + scratch));
            const unsigned char *wb = (const unsigned char *)w->data + (size_t)n0 * (size_t)K * 2;
            if (!run_block(&ctx[t], pr, tail_n, yt, xb + m0 * K, wb, scratch ? (unsigned char *)yt + tile : NULL, scratch))
                continue;
            const int64_t rows = M - m0 < DNNL_MB ? M - m0 : DNNL_MB, cols = pr[tail_n]->cols;
            for (int64_t r = 0; r < rows; r++) memcpy(y + (m0 + r) * N + n0, yt + r * cols, (size_t)cols * sizeof(float));
        }
        for (int t = 0; t < nt; t++) ok &= !ctx[t].bad;
    }
    if (ctx)
        for (int t = 0; t < nt; t++) blk_ctx_free(&ctx[t]);
    nvl_free(ctx);
    for (int i = 0; i < 2; i++)
        if (tmp[i].prim) dnnl_primitive_destroy(tmp[i].prim);
    nvl_free(xb);
    nvl_free(per);
    return ok;
#else
    (void)y;
    (void)x;
    (void)ldx;
    (void)w;
    (void)M;
    return 0;
#endif
}

int kern_cpu_has_dnnl(void) {
#ifdef NVL_HAVE_DNNL
    pthread_once(&g_dnnl.once, dnnl_init);
    return g_dnnl.ok;
#else
    return 0;
#endif
}

const char *kern_cpu_dnnl_info(void) {
#ifdef NVL_HAVE_DNNL
    static char buf[160];
    pthread_mutex_lock(&g_dnnl.mu);
    snprintf(buf, sizeof buf, "%s%s%s", kern_cpu_dnnl_version(), g_dnnl.impl[0] ? " " : "", g_dnnl.impl);
    pthread_mutex_unlock(&g_dnnl.mu);
    return buf;
#else
    return NULL;
#endif
}

const char *kern_cpu_dnnl_version(void) {
#ifdef NVL_HAVE_DNNL
    static char buf[48];
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
    return buf;
#else
    return NULL;
#endif
}
