/* Loading the NemotronH language model: config, checkpoint, tensor binding through the one
 * tensor table (llm/weights.c), small Mamba vectors upcast to f32; large weights stay as
 * stored in the mapping (never an f32 copy of the model). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "llm_impl.h"

llm_model_params llm_model_params_default(void) {
    llm_model_params p = {.emulate_bf16 = -1};
    return p;
}

const llm_hparams *llm_model_hparams(const llm_model *m) { return &m->hp; }

int llm_model_stop_ids(const llm_model *m, int32_t *ids, int cap) {
    int n = m->n_stop < cap ? m->n_stop : cap;
    memcpy(ids, m->stop_ids, (size_t)n * sizeof *ids);
    return n;
}

static void add_stop(llm_model *m, int64_t id) {
    if (id < 0 || id >= m->hp.n_vocab) return;
    for (int i = 0; i < m->n_stop; i++)
        if (m->stop_ids[i] == id) return;
    if (m->n_stop < (int)(sizeof m->stop_ids / sizeof m->stop_ids[0])) m->stop_ids[m->n_stop++] = (int32_t)id;
}

/* generation_config.json eos_token_id: an int or a list; absent file is fine. */
static nvl_status read_generation_config(llm_model *m, const char *dir, nvl_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    cJSON *g = NULL;
    nvl_err e2 = {0};
    nvl_status st = nvl_json_load_file(&g, path, NVL_JSON_MAX_BYTES, &e2);
    if (st == NVL_ERR_NOT_FOUND) return NVL_OK;
    if (st != NVL_OK) return nvl_err_set(err, st, "%s", e2.msg);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(g, "eos_token_id");
    if (cJSON_IsNumber(e)) add_stop(m, (int64_t)e->valuedouble);
    else if (cJSON_IsArray(e)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, e) if (cJSON_IsNumber(it)) add_stop(m, (int64_t)it->valuedouble);
    } else if (e && !cJSON_IsNull(e)) {
        cJSON_Delete(g);
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: eos_token_id is neither an integer nor a list",
                           path);
    }
    cJSON_Delete(g);
    return NVL_OK;
}

/* Copies a 1-D or small tensor into a new f32 array. */
static float *to_f32(const nvl_tensor *t) {
    size_t n = (size_t)nvl_tensor_numel(t);
    float *f = nvl_malloc(n * sizeof(float) + 1);
    if (f) nvl_convert_to_f32(f, t->data, t->dtype, n);
    return f;
}

static nvl_status bind(const llm_model *m, const char *name, nvl_tensor *out, nvl_err *err) {
    const nvl_st_entry *e = nvl_checkpoint_find(m->ck, name);
    if (!e) return nvl_err_set(err, NVL_ERR_NOT_FOUND, "missing tensor '%s'", name);
    if (e->dtype != NVL_DTYPE_F32 && e->dtype != NVL_DTYPE_BF16 && e->dtype != NVL_DTYPE_F16)
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                           "tensor '%s' has dtype %s: quantized (FP8/NVFP4) weights are not "
                           "supported by the CPU model yet",
                           name, nvl_dtype_name(e->dtype));
    *out = nvl_st_entry_tensor(e);
    return NVL_OK;
}

void llm_model_free(llm_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int64_t i = 0; i < m->hp.n_layer; i++) {
            llm_layer *L = &m->layers[i];
            nvl_free(L->conv_w);
            nvl_free(L->conv_b);
            nvl_free(L->dt_bias);
            nvl_free(L->A);
            nvl_free(L->D);
        }
        nvl_free(m->layers);
    }
    nvl_checkpoint_close(m->ck);
    nvl_free(m);
}

nvl_status llm_model_init(llm_model **out, const char *dir, const llm_model_params *params,
                          nvl_err *err) {
    *out = NULL;
    llm_model_params p = params ? *params : llm_model_params_default();
    llm_model *m = nvl_calloc(1, sizeof *m);
    if (!m) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    cJSON *cfg = NULL;
    llm_tensor_spec *specs = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    nvl_status st = nvl_json_load_file(&cfg, path, NVL_JSON_MAX_BYTES, err);
    if (st != NVL_OK) goto fail;
    if ((st = llm_hparams_from_json(&m->hp, cfg, path, err)) != NVL_OK) goto fail;
    if ((st = nvl_checkpoint_open(&m->ck, dir, err)) != NVL_OK) goto fail;
    int64_t n_exp = 0, n_bound = 0;
    if ((st = llm_check_tensors(m->ck, &m->hp, NULL, NULL, &n_exp, &n_bound, err)) != NVL_OK) {
        nvl_err_prefix(err, "%s", dir);
        goto fail;
    }
    const llm_hparams *hp = &m->hp;
    const char *head = "";
    const char *prefix = llm_tensor_prefix(m->ck, &head);
    int64_t n = llm_tensor_table(hp, prefix, head, NULL, 0);
    specs = nvl_malloc((size_t)n * sizeof *specs);
    m->layers = nvl_calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!specs || !m->layers) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
        goto fail;
    }
    llm_tensor_table(hp, prefix, head, specs, n);
    for (int64_t i = 0; i < n; i++) {
        const llm_tensor_spec *s = &specs[i];
        const nvl_st_entry *e = nvl_checkpoint_find(m->ck, s->name);
        char alt[200];
        if (!e && strstr(s->name, "embeddings.weight")) {
            snprintf(alt, sizeof alt, "%sembedding.weight", prefix);
            e = nvl_checkpoint_find(m->ck, alt);
        }
        if (!e) continue; /* optional (conv bias) */
        const char *nm = e->name;
        nvl_tensor t;
        if ((st = bind(m, nm, &t, err)) != NVL_OK) goto fail;
        if (s->layer < 0) {
            if (strstr(nm, "embedding")) m->emb = t;
            else if (strstr(nm, "norm_f")) m->norm_f = t;
            else m->lm_head = t;
            continue;
        }
        llm_layer *L = &m->layers[s->layer];
        L->kind = hp->pattern[s->layer];
        const char *mix = strstr(nm, "mixer.");
        if (!mix) { L->norm = t; continue; }
        mix += 6;
        if (!strcmp(mix, "in_proj.weight")) L->in_proj = t;
        else if (!strcmp(mix, "out_proj.weight")) L->out_proj = t;
        else if (!strcmp(mix, "norm.weight")) L->ssm_norm = t;
        else if (!strcmp(mix, "q_proj.weight")) L->wq = t;
        else if (!strcmp(mix, "k_proj.weight")) L->wk = t;
        else if (!strcmp(mix, "v_proj.weight")) L->wv = t;
        else if (!strcmp(mix, "o_proj.weight")) L->wo = t;
        else if (!strcmp(mix, "up_proj.weight")) L->up = t;
        else if (!strcmp(mix, "down_proj.weight")) L->down = t;
        else {
            float **dst = !strcmp(mix, "conv1d.weight") ? &L->conv_w
                          : !strcmp(mix, "conv1d.bias") ? &L->conv_b
                          : !strcmp(mix, "dt_bias")     ? &L->dt_bias
                          : !strcmp(mix, "A_log")       ? &L->A
                          : !strcmp(mix, "D")           ? &L->D
                                                        : NULL;
            if (!dst) continue;
            if (!(*dst = to_f32(&t))) {
                st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
                goto fail;
            }
            if (dst == &L->A)
                for (int64_t h = 0; h < hp->ssm_n_head; h++) L->A[h] = -expf(L->A[h]);
        }
    }
    for (int64_t i = 0; i < hp->n_layer; i++) m->layers[i].kind = hp->pattern[i];
    if (hp->tie_embeddings) m->lm_head = m->emb;
    m->act_bf16 = p.emulate_bf16 < 0 ? (m->emb.dtype == NVL_DTYPE_BF16) : p.emulate_bf16;
    add_stop(m, hp->eos_id);
    if ((st = read_generation_config(m, dir, err)) != NVL_OK) goto fail;
    nvl_free(specs);
    cJSON_Delete(cfg);
    *out = m;
    return NVL_OK;
fail:
    nvl_free(specs);
    cJSON_Delete(cfg);
    llm_model_free(m);
    return st;
}
