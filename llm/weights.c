/* The NemotronH tensor table: the only place that knows Hugging Face spellings of LM tensors
 * (model.md §2.6, §12.2). Shapes outermost-first, Linear weights (out, in). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "llm.h"

const char *llm_tensor_prefix(const nvl_checkpoint *ck, const char **head_prefix) {
    static const struct {
        const char *body, *head;
    } cands[] = {
        {"language_model.backbone.", "language_model."},
        {"backbone.", ""},
        {"model.", ""},
        {"language_model.model.", "language_model."},
    };
    char name[200];
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        const char *emb[] = {"embeddings.weight", "embedding.weight"};
        for (int j = 0; j < 2; j++) {
            snprintf(name, sizeof name, "%s%s", cands[i].body, emb[j]);
            if (nvl_checkpoint_find(ck, name)) {
                if (head_prefix) *head_prefix = cands[i].head;
                return cands[i].body;
            }
        }
    }
    return NULL;
}

static void add(llm_tensor_spec *specs, int64_t cap, int64_t *n, int field, int layer, int required,
                int n_dims, int64_t d0, int64_t d1, int64_t d2, const char *fmt, const char *a,
                int li, const char *suffix) {
    if (*n < cap) {
        llm_tensor_spec *s = &specs[*n];
        memset(s, 0, sizeof *s);
        if (li >= 0)
            snprintf(s->name, sizeof s->name, fmt, a, li, suffix);
        else
            snprintf(s->name, sizeof s->name, fmt, a, suffix);
        s->n_dims = n_dims;
        s->shape[0] = d0;
        s->shape[1] = d1;
        s->shape[2] = d2;
        s->required = required;
        s->layer = layer;
        s->field = field;
    }
    (*n)++;
}

int64_t llm_tensor_table(const llm_hparams *hp, const char *p, const char *hp_head,
                         llm_tensor_spec *s, int64_t cap) {
    int64_t n = 0;
    const int64_t C = hp->n_embd;
    add(s, cap, &n, LLM_FIELD_EMB, -1, 1, 2, hp->n_vocab, C, 0, "%s%s", p, -1, "embeddings.weight");
    for (int i = 0; i < hp->n_layer; i++) {
        const char *L = "%slayers.%d.%s";
        add(s, cap, &n, LLM_FIELD_NORM, i, 1, 1, C, 0, 0, L, p, i, "norm.weight");
        switch (hp->pattern[i]) {
        case 'M':
            add(s, cap, &n, LLM_FIELD_IN_PROJ, i, 1, 2, hp->d_in_proj, C, 0, L, p, i, "mixer.in_proj.weight");
            add(s, cap, &n, LLM_FIELD_CONV_W, i, 1, 3, hp->conv_dim, 1, hp->d_conv, L, p, i, "mixer.conv1d.weight");
            add(s, cap, &n, LLM_FIELD_CONV_B, i, hp->conv_bias, 1, hp->conv_dim, 0, 0, L, p, i, "mixer.conv1d.bias");
            add(s, cap, &n, LLM_FIELD_DT_BIAS, i, 1, 1, hp->ssm_n_head, 0, 0, L, p, i, "mixer.dt_bias");
            add(s, cap, &n, LLM_FIELD_A_LOG, i, 1, 1, hp->ssm_n_head, 0, 0, L, p, i, "mixer.A_log");
            add(s, cap, &n, LLM_FIELD_D, i, 1, 1, hp->ssm_n_head, 0, 0, L, p, i, "mixer.D");
            add(s, cap, &n, LLM_FIELD_SSM_NORM, i, 1, 1, hp->d_inner, 0, 0, L, p, i, "mixer.norm.weight");
            add(s, cap, &n, LLM_FIELD_OUT_PROJ, i, 1, 2, C, hp->d_inner, 0, L, p, i, "mixer.out_proj.weight");
            break;
        case '*':
            add(s, cap, &n, LLM_FIELD_WQ, i, 1, 2, hp->n_head * hp->head_dim, C, 0, L, p, i, "mixer.q_proj.weight");
            add(s, cap, &n, LLM_FIELD_WK, i, 1, 2, hp->n_head_kv * hp->head_dim, C, 0, L, p, i, "mixer.k_proj.weight");
            add(s, cap, &n, LLM_FIELD_WV, i, 1, 2, hp->n_head_kv * hp->head_dim, C, 0, L, p, i, "mixer.v_proj.weight");
            add(s, cap, &n, LLM_FIELD_WO, i, 1, 2, C, hp->n_head * hp->head_dim, 0, L, p, i, "mixer.o_proj.weight");
            break;
        case '-':
            add(s, cap, &n, LLM_FIELD_UP, i, 1, 2, hp->n_ff, C, 0, L, p, i, "mixer.up_proj.weight");
            add(s, cap, &n, LLM_FIELD_DOWN, i, 1, 2, C, hp->n_ff, 0, L, p, i, "mixer.down_proj.weight");
            break;
        default: break;
        }
    }
    add(s, cap, &n, LLM_FIELD_NORM_F, -1, 1, 1, C, 0, 0, "%s%s", p, -1, "norm_f.weight");
    if (!hp->tie_embeddings) add(s, cap, &n, LLM_FIELD_LM_HEAD, -1, 1, 2, hp->n_vocab, C, 0, "%s%s", hp_head, -1, "lm_head.weight");
    return n;
}

/* Shape matches, allowing the packed forms of quantized Linear weights. */
static int shape_ok(const nvl_st_entry *e, const llm_tensor_spec *s) {
    if (e->n_dims != s->n_dims) return 0;
    for (int d = 0; d < s->n_dims; d++) {
        if (e->shape[d] == s->shape[d]) continue;
        /* NVFP4: uint8 (out, in/2) */
        if (d == 1 && s->n_dims == 2 && e->dtype == NVL_DTYPE_U8 && e->shape[1] * 2 == s->shape[1])
            continue;
        return 0;
    }
    return 1;
}

static int dtype_ok(const nvl_st_entry *e, const llm_tensor_spec *s) {
    if (e->dtype == NVL_DTYPE_F32 || e->dtype == NVL_DTYPE_BF16 || e->dtype == NVL_DTYPE_F16)
        return 1;
    /* quantized Linear weights only (2-D, not the embedding table) */
    return s->n_dims == 2 && strstr(s->name, "embedding") == NULL &&
           (e->dtype == NVL_DTYPE_F8_E4M3 || e->dtype == NVL_DTYPE_U8);
}

nvl_status llm_check_tensors(const nvl_checkpoint *ck, const llm_hparams *hp, llm_problem_fn fn,
                             void *user, int64_t *n_expected, int64_t *n_bound, nvl_err *err) {
    const char *head = "";
    const char *prefix = llm_tensor_prefix(ck, &head);
    *n_expected = 0;
    *n_bound = 0;
    if (!prefix) {
        nvl_status st = nvl_err_set(err, NVL_ERR_NOT_FOUND,
                                    "no language-model embedding table (looked for "
                                    "'language_model.backbone.embeddings.weight', "
                                    "'backbone.embeddings.weight', 'model.embeddings.weight')");
        if (fn) fn(user, st, err ? err->msg : "no language-model embedding table");
        return st;
    }
    int64_t n = llm_tensor_table(hp, prefix, head, NULL, 0);
    llm_tensor_spec *specs = nvl_malloc((size_t)n * sizeof *specs);
    if (!specs) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    llm_tensor_table(hp, prefix, head, specs, n);
    nvl_status first = NVL_OK;
    char msg[512];
    for (int64_t i = 0; i < n; i++) {
        const llm_tensor_spec *s = &specs[i];
        const nvl_st_entry *e = nvl_checkpoint_find(ck, s->name);
        /* transformers spells the table "embedding" in some versions */
        if (!e && strstr(s->name, "embeddings.weight")) {
            char alt[200];
            snprintf(alt, sizeof alt, "%sembedding.weight", prefix);
            e = nvl_checkpoint_find(ck, alt);
        }
        if (s->required) (*n_expected)++;
        nvl_status code = NVL_OK;
        if (!e) {
            if (!s->required) continue;
            code = NVL_ERR_NOT_FOUND;
            snprintf(msg, sizeof msg, "missing tensor '%s'", s->name);
        } else if (!dtype_ok(e, s)) { /* (before the shape: an I8 NVFP4 weight was said to have the wrong shape) */
            code = NVL_ERR_DTYPE;
            snprintf(msg, sizeof msg, "tensor '%s' has dtype %s, expected F32, BF16 or F16%s",
                     s->name, nvl_dtype_name(e->dtype),
                     s->n_dims == 2 && !strstr(s->name, "embedding") ? " (or F8_E4M3 / U8 when quantized)" : "");
        } else if (!shape_ok(e, s)) {
            char got[128], want[128];
            nvl_shape_str(got, sizeof got, e->n_dims, e->shape);
            nvl_shape_str(want, sizeof want, s->n_dims, s->shape);
            code = NVL_ERR_SHAPE;
            if (e->dtype == NVL_DTYPE_U8 && s->n_dims == 2) /* NVFP4 packs two codes a byte along the input */
                snprintf(msg, sizeof msg, "tensor '%s' (NVFP4, U8) has shape %s, expected [%lld, %lld] (the layer's %s "
                         "packed two E2M1 codes a byte)", s->name, got, (long long)s->shape[0], (long long)(s->shape[1] / 2),
                         want);
            else
                snprintf(msg, sizeof msg, "tensor '%s' has shape %s, expected %s", s->name, got, want);
        } else {
            if (s->required) (*n_bound)++;
            continue;
        }
        if (fn) fn(user, code, msg);
        if (first == NVL_OK) {
            first = code;
            nvl_err_set(err, code, "%s", msg);
        }
    }
    nvl_free(specs);
    /* tensors of a layer past the config's last: a layer pattern cut short (2 of a checkpoint's 8
       layers) ran a shorter model with no error, its answers changed (a review) */
    const size_t lp = strlen(prefix);
    long past = -1;
    const char *past_name = NULL;
    for (int64_t i = 0; i < nvl_checkpoint_count(ck); i++) {
        const char *nm = nvl_checkpoint_entry(ck, i)->name;
        if (strncmp(nm, prefix, lp) || strncmp(nm + lp, "layers.", 7)) continue;
        char *end = NULL;
        const long l = strtol(nm + lp + 7, &end, 10);
        if (end && *end == '.' && l >= hp->n_layer && l > past) past = l, past_name = nm;
    }
    if (past >= 0) {
        snprintf(msg, sizeof msg, "the checkpoint has tensors of layer %ld ('%.200s') but config.json's layer pattern "
                 "has %lld layers: the config does not describe these weights", past, past_name, (long long)hp->n_layer);
        if (fn) fn(user, NVL_ERR_CONFIG, msg);
        if (first == NVL_OK) {
            first = NVL_ERR_CONFIG;
            nvl_err_set(err, NVL_ERR_CONFIG, "%s", msg);
        }
    }
    if (first != NVL_OK && first != NVL_ERR_CONFIG && err) {
        char tail[128];
        snprintf(tail, sizeof tail, " (%lld of the %lld tensors the config asks for are as expected)", (long long)*n_bound,
                 (long long)*n_expected);
        size_t l = strlen(err->msg);
        snprintf(err->msg + l, sizeof err->msg - l, "%s", tail);
    }
    return first;
}
