/* Sequence slots on the model's backend (llama.cpp's recurrent memory with sequence ids, in
 * llm.c's one-allocation style per tensor): for each Mamba layer conv states (S, Cc, Kc) and SSM
 * states (S, H, P, N) in f32, for each attention layer KV rows (S, L, Hkv*D) in the activation
 * dtype. A slot is a row of each; alloc/free/copy/reset work on rows in backend memory. */
#include <string.h>

#include "base/alloc.h"
#include "llm_impl.h"

static void free_tensor(kern_backend *be, nvl_tensor *t) {
    if (t->data) kern_buffer_free(be, t->data);
    t->data = NULL;
}

void llm_cache_free(llm_cache *c) {
    if (!c) return;
    for (int64_t i = 0; i < c->m->hp.n_layer; i++) { /* any of the arrays may be missing (init ran out of memory) */
        if (c->conv) free_tensor(c->be, &c->conv[i]);
        if (c->ssm) free_tensor(c->be, &c->ssm[i]);
        if (c->k) free_tensor(c->be, &c->k[i]);
        if (c->v) free_tensor(c->be, &c->v[i]);
    }
    nvl_free(c->conv);
    nvl_free(c->ssm);
    nvl_free(c->k);
    nvl_free(c->v);
    nvl_free(c->used);
    nvl_free(c->n_past);
    nvl_free(c->host_row);
    nvl_free(c);
}

/* A backend tensor. On the CPU its pages are left untouched (a slot's rows are zeroed when the
 * slot is handed out, KV rows are written before they are read), so unused slots cost address
 * space, not memory; a device tensor is zeroed. */
static nvl_status new_tensor(kern_backend *be, nvl_dtype dt, int nd, const int64_t *shape, nvl_tensor *t,
                             nvl_err *err) {
    *t = nvl_tensor_make(dt, nd, shape, NULL);
    const size_t bytes = nvl_tensor_nbytes(t);
    nvl_status st = kern_buffer_alloc(be, bytes, &t->data, err);
    if (st != NVL_OK) return st;
    t->device = kern_backend_kind_of(be) == KERN_BACKEND_KIND_CPU ? NVL_DEVICE_HOST : NVL_DEVICE_CUDA;
    return t->device == NVL_DEVICE_HOST ? NVL_OK : kern_set_zero(be, t->data, bytes, err);
}

static nvl_status kv_alloc(llm_cache *c, int64_t n_ctx, nvl_tensor *k, nvl_tensor *v, nvl_err *err) {
    const llm_hparams *hp = &c->m->hp;
    const int64_t shape[3] = {c->n_slots, n_ctx, hp->n_head_kv * hp->head_dim};
    nvl_status st = new_tensor(c->be, c->kv_dtype, 3, shape, k, err);
    if (st == NVL_OK) st = new_tensor(c->be, c->kv_dtype, 3, shape, v, err);
    return st;
}

nvl_status llm_cache_init(llm_cache **out, const llm_model *m, int n_slots, int64_t n_ctx, nvl_err *err) {
    *out = NULL;
    if (n_slots <= 0 || n_ctx <= 0)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: %d slots of %lld positions", __func__, n_slots,
                           (long long)n_ctx);
    llm_cache *c = nvl_calloc(1, sizeof *c);
    if (!c) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    const llm_hparams *hp = &m->hp;
    c->m = m;
    c->be = m->be;
    c->n_slots = n_slots;
    c->n_ctx = n_ctx;
    c->kv_dtype = m->act;
    const size_t L = (size_t)hp->n_layer;
    c->conv = nvl_calloc(L, sizeof *c->conv);
    c->ssm = nvl_calloc(L, sizeof *c->ssm);
    c->k = nvl_calloc(L, sizeof *c->k);
    c->v = nvl_calloc(L, sizeof *c->v);
    c->used = nvl_calloc((size_t)n_slots, 1);
    c->n_past = nvl_calloc((size_t)n_slots, sizeof *c->n_past);
    nvl_status st = NVL_OK;
    if (!c->conv || !c->ssm || !c->k || !c->v || !c->used || !c->n_past)
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    for (int64_t i = 0; st == NVL_OK && i < hp->n_layer; i++) {
        if (hp->pattern[i] == LLM_LAYER_KIND_MAMBA2) {
            st = new_tensor(c->be, NVL_DTYPE_F32, 3, (int64_t[]){n_slots, hp->conv_dim, hp->d_conv}, &c->conv[i], err);
            if (st == NVL_OK)
                st = new_tensor(c->be, NVL_DTYPE_F32, 4,
                                (int64_t[]){n_slots, hp->ssm_n_head, hp->ssm_head_dim, hp->d_state}, &c->ssm[i], err);
        } else if (hp->pattern[i] == LLM_LAYER_KIND_ATTN) {
            st = kv_alloc(c, n_ctx, &c->k[i], &c->v[i], err);
        }
    }
    if (st != NVL_OK) {
        llm_cache_free(c);
        return nvl_err_prefix(err, "cache of %d slots x %lld positions", n_slots, (long long)n_ctx), st;
    }
    *out = c;
    return NVL_OK;
}

int llm_cache_n_slots(const llm_cache *c) { return c->n_slots; }
int64_t llm_cache_n_ctx(const llm_cache *c) { return c->n_ctx; }

/* Positions [0, n) of slot ss of src into slot ds of dst (KV tensors of possibly different L). */
static nvl_status kv_rows_copy(kern_backend *be, nvl_tensor *dst, int ds, const nvl_tensor *src, int ss, int64_t n,
                               nvl_err *err) {
    const size_t row = (size_t)dst->shape[2] * nvl_tensor_elem_size(dst);
    return kern_copy_within(be, (unsigned char *)dst->data + (size_t)ds * (size_t)dst->shape[1] * row,
                            (const unsigned char *)src->data + (size_t)ss * (size_t)src->shape[1] * row,
                            n > 0 ? (size_t)n * row : 0, err);
}

nvl_status llm_cache_reserve(llm_cache *c, int64_t n_ctx, nvl_err *err) {
    if (n_ctx <= c->n_ctx) return NVL_OK;
    int64_t grow = c->n_ctx * 2 > n_ctx ? c->n_ctx * 2 : n_ctx; /* amortised growth */
    const llm_hparams *hp = &c->m->hp;
    for (int64_t i = 0; i < hp->n_layer; i++) {
        if (hp->pattern[i] != LLM_LAYER_KIND_ATTN) continue;
        nvl_tensor k, v;
        nvl_status st = kv_alloc(c, grow, &k, &v, err);
        if (st != NVL_OK && grow > n_ctx) { /* doubling was too much: exactly what was asked */
            free_tensor(c->be, &k);
            grow = n_ctx;
            st = kv_alloc(c, grow, &k, &v, err);
        }
        for (int s = 0; st == NVL_OK && s < c->n_slots; s++) {
            st = kv_rows_copy(c->be, &k, s, &c->k[i], s, c->n_past[s], err);
            if (st == NVL_OK) st = kv_rows_copy(c->be, &v, s, &c->v[i], s, c->n_past[s], err);
        }
        if (st != NVL_OK) {
            free_tensor(c->be, &k);
            free_tensor(c->be, &v);
            return nvl_err_prefix(err, "growing the KV cache to %lld positions", (long long)grow), st;
        }
        free_tensor(c->be, &c->k[i]);
        free_tensor(c->be, &c->v[i]);
        c->k[i] = k;
        c->v[i] = v;
        c->gen++; /* (even if a later layer fails to grow: this one's rows have moved) */
    }
    c->n_ctx = grow;
    return NVL_OK;
}

/* Zeroes one slot's row of a state tensor. */
static nvl_status zero_row(kern_backend *be, nvl_tensor *t, int slot, nvl_err *err) {
    if (!t->data) return NVL_OK;
    const size_t row = nvl_tensor_nbytes(t) / (size_t)t->shape[0];
    return kern_set_zero(be, (unsigned char *)t->data + (size_t)slot * row, row, err);
}

void llm_seq_reset(llm_cache *c, int slot) {
    if (slot < 0 || slot >= c->n_slots) return;
    for (int64_t i = 0; i < c->m->hp.n_layer; i++) {
        zero_row(c->be, &c->conv[i], slot, NULL);
        zero_row(c->be, &c->ssm[i], slot, NULL);
    }
    c->n_past[slot] = 0;
}

nvl_status llm_seq_alloc(llm_cache *c, int *slot, nvl_err *err) {
    for (int s = 0; s < c->n_slots; s++)
        if (!c->used[s]) {
            c->used[s] = 1;
            llm_seq_reset(c, s);
            *slot = s;
            return NVL_OK;
        }
    *slot = -1;
    return nvl_err_set(err, NVL_ERR_LIMIT, "all %d sequence slots are in use", c->n_slots);
}

void llm_seq_free(llm_cache *c, int slot) {
    if (slot >= 0 && slot < c->n_slots) {
        c->used[slot] = 0;
        c->n_past[slot] = 0;
    }
}

static nvl_status row_copy(kern_backend *be, nvl_tensor *t, int dst, int src, nvl_err *err) {
    if (!t->data) return NVL_OK;
    const size_t row = nvl_tensor_nbytes(t) / (size_t)t->shape[0];
    unsigned char *base = t->data;
    return kern_copy_within(be, base + (size_t)dst * row, base + (size_t)src * row, row, err);
}

nvl_status llm_seq_copy(llm_cache *c, int dst, int src, nvl_err *err) {
    if (dst < 0 || dst >= c->n_slots || src < 0 || src >= c->n_slots || !c->used[dst] || !c->used[src])
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: slots %d <- %d (of %d) must both be allocated", __func__, dst,
                           src, c->n_slots);
    if (dst == src) return NVL_OK;
    for (int64_t i = 0; i < c->m->hp.n_layer; i++) {
        nvl_status st = row_copy(c->be, &c->conv[i], dst, src, err);
        if (st == NVL_OK) st = row_copy(c->be, &c->ssm[i], dst, src, err);
        if (st == NVL_OK && c->k[i].data) st = kv_rows_copy(c->be, &c->k[i], dst, &c->k[i], src, c->n_past[src], err);
        if (st == NVL_OK && c->v[i].data) st = kv_rows_copy(c->be, &c->v[i], dst, &c->v[i], src, c->n_past[src], err);
        if (st != NVL_OK) return st;
    }
    c->n_past[dst] = c->n_past[src];
    return NVL_OK;
}

int64_t llm_seq_n_past(const llm_cache *c, int slot) {
    return slot >= 0 && slot < c->n_slots ? c->n_past[slot] : 0;
}

size_t llm_seq_bytes(const llm_cache *c, int slot) { return llm_cache_seq_bytes_at(c, llm_seq_n_past(c, slot)); }

size_t llm_cache_seq_bytes_at(const llm_cache *c, int64_t n_tokens) {
    size_t n = 0;
    const llm_hparams *hp = &c->m->hp;
    for (int64_t i = 0; i < hp->n_layer; i++) {
        if (c->conv[i].data) n += nvl_tensor_nbytes(&c->conv[i]) / (size_t)c->n_slots;
        if (c->ssm[i].data) n += nvl_tensor_nbytes(&c->ssm[i]) / (size_t)c->n_slots;
        if (c->k[i].data) n += 2 * (size_t)(n_tokens > 0 ? n_tokens : 0) * (size_t)c->k[i].shape[2] * nvl_tensor_elem_size(&c->k[i]);
    }
    return n;
}

/* Host view of a slot's state row: the CPU backend's own memory, or a copy from a device. */
static const float *state_row(llm_cache *c, nvl_tensor *t, int slot) {
    if (!t->data || slot < 0 || slot >= c->n_slots) return NULL;
    const size_t row = nvl_tensor_nbytes(t) / (size_t)t->shape[0];
    const unsigned char *p = (const unsigned char *)t->data + (size_t)slot * row;
    if (kern_backend_kind_of(c->be) == KERN_BACKEND_KIND_CPU) return (const float *)p;
    if (row > c->host_cap) {
        float *h = nvl_realloc(c->host_row, row);
        if (!h) return NULL;
        c->host_row = h;
        c->host_cap = row;
    }
    return kern_copy_to_host(c->be, c->host_row, p, row, NULL) == NVL_OK ? c->host_row : NULL;
}
const float *llm_seq_conv_state(llm_cache *c, int slot, int il) {
    return il >= 0 && il < c->m->hp.n_layer ? state_row(c, &c->conv[il], slot) : NULL;
}
const float *llm_seq_ssm_state(llm_cache *c, int slot, int il) {
    return il >= 0 && il < c->m->hp.n_layer ? state_row(c, &c->ssm[il], slot) : NULL;
}
