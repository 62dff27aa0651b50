/* Loading the NemotronH language model: config, checkpoint, tensor binding through the one
 * tensor table (llm/weights.c), small Mamba vectors upcast to f32; large weights stay as
 * stored in the mapping (never an f32 copy of the model). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "base/log.h"
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

nvl_status llm_generation_config_eos(const char *dir, int64_t n_vocab, int32_t *ids, int cap, int *n, nvl_err *err) {
    *n = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    cJSON *g = NULL;
    nvl_err e2 = {0};
    nvl_status st = nvl_json_load_file(&g, path, NVL_JSON_MAX_BYTES, &e2);
    if (st == NVL_ERR_NOT_FOUND) return NVL_OK;
    if (st != NVL_OK) return nvl_err_set(err, st, "%s", e2.msg);
    if (!cJSON_IsObject(g)) {
        cJSON_Delete(g);
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: expected a JSON object", path);
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(g, "eos_token_id");
    if (e && !cJSON_IsNull(e) && !cJSON_IsNumber(e) && !cJSON_IsArray(e)) {
        cJSON_Delete(g);
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: eos_token_id is neither an integer nor a list", path);
    }
    /* each id an integer of the vocabulary (one past it never stops a generation; 1e308 or NaN
       cast to an integer is undefined) */
    const cJSON *it = cJSON_IsArray(e) ? e->child : e;
    for (; it && !cJSON_IsNull(it); it = cJSON_IsArray(e) ? it->next : NULL) {
        const double v = cJSON_IsNumber(it) ? it->valuedouble : -1.0;
        if (!cJSON_IsNumber(it) || !(v >= 0 && v < (double)n_vocab) || v != floor(v)) {
            char buf[64];
            if (cJSON_IsNumber(it)) snprintf(buf, sizeof buf, "%.17g", v); /* (99999999, not 1e+08) */
            else snprintf(buf, sizeof buf, "a %s", cJSON_IsString(it) ? "string" : "non-number");
            cJSON_Delete(g);
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: eos_token_id %s is not a token id of the %lld-token vocabulary",
                               path, buf, (long long)n_vocab);
        }
        if (*n < cap) ids[(*n)++] = (int32_t)v;
    }
    cJSON_Delete(g);
    return NVL_OK;
}

/* generation_config.json eos_token_id: an int or a list; absent file is fine. */
static nvl_status read_generation_config(llm_model *m, const char *dir, nvl_err *err) {
    int32_t ids[16];
    int n = 0;
    const nvl_status st = llm_generation_config_eos(dir, m->hp.n_vocab, ids, 16, &n, err);
    for (int i = 0; st == NVL_OK && i < n; i++) add_stop(m, ids[i]);
    return st;
}

static nvl_status bind(const llm_model *m, const char *name, nvl_tensor *out, nvl_err *err) {
    const nvl_st_entry *e = nvl_checkpoint_find(m->ck, name);
    if (e && (e->dtype == NVL_DTYPE_F8_E4M3 || e->dtype == NVL_DTYPE_U8))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                           "tensor '%s' has dtype %s: quantized (FP8/NVFP4) weights are not "
                           "supported by the CPU model yet",
                           name, nvl_dtype_name(e->dtype));
    return nvl_checkpoint_bind(m->ck, "language-model", name, -1, NULL, NVL_BIND_FLOAT, out, err);
}

void llm_model_free(llm_model *m) {
    if (!m) return;
    nvl_free(m->layers);
    nvl_free(m->small);
    llm_quant_config_free(&m->quant);
    if (m->owns_ck) nvl_checkpoint_close(m->ck);
    if (m->owns_be) kern_backend_free(m->be);
    nvl_free(m);
}

kern_backend *llm_model_backend(const llm_model *m) { return m->be; }

void llm_model_quant_counts(const llm_model *m, int counts[3]) {
    counts[0] = counts[1] = counts[2] = 0;
    counts[m->lm_head.quant]++;
    for (int64_t i = 0; i < m->hp.n_layer; i++) {
        const llm_layer *L = &m->layers[i];
        const kern_weight *all[] = {&L->in_proj, &L->out_proj, &L->wq, &L->wk, &L->wv, &L->wo, &L->up, &L->down};
        for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
            if (all[k]->w.data) counts[all[k]->quant]++;
    }
}

nvl_status llm_model_init(llm_model **out, const char *dir, const llm_model_params *params,
                          nvl_err *err) {
    *out = NULL;
    nvl_checkpoint *ck = NULL;
    nvl_status st = nvl_checkpoint_open(&ck, dir, err);
    if (st != NVL_OK) {
        /* the config names the problem better when the directory is not a model at all */
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", dir);
        cJSON *cfg = NULL;
        nvl_err e2 = {0};
        nvl_status cst = nvl_json_load_file(&cfg, path, NVL_JSON_MAX_BYTES, &e2);
        if (cst != NVL_OK) st = nvl_err_set(err, cst, "%s", e2.msg);
        cJSON_Delete(cfg);
        return st;
    }
    /* the backend made here, so that a model too large for the device auto chose is loaded again
       on the CPU (kern_backend_auto_device), with a warning that says why */
    kern_backend *be = NULL;
    if ((st = kern_backend_init_models(&be, err)) == NVL_OK) st = llm_model_load(out, ck, be, dir, params, err);
    if (kern_backend_fall_back_to_cpu(kern_backend_auto_device(be), st, dir, err)) {
        kern_backend_free(be);
        be = NULL;
        if ((st = kern_backend_init(&be, "cpu", err)) == NVL_OK) st = llm_model_load(out, ck, be, dir, params, err);
    }
    if (st != NVL_OK) {
        kern_backend_free(be);
        nvl_checkpoint_close(ck);
        return st;
    }
    (*out)->owns_be = 1;
    (*out)->owns_ck = 1;
    return NVL_OK;
}

nvl_status llm_model_load(llm_model **out, nvl_checkpoint *ck, kern_backend *be, const char *dir,
                          const llm_model_params *params, nvl_err *err) {
    *out = NULL;
    if (!be) return nvl_err_set(err, NVL_ERR_INVALID_ARG, "%s: no backend", __func__);
    llm_model_params p = params ? *params : llm_model_params_default();
    llm_model *m = nvl_calloc(1, sizeof *m);
    if (!m) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
    m->ck = ck;
    m->be = be;
    cJSON *cfg = NULL;
    llm_tensor_spec *specs = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    nvl_status st = nvl_json_load_file(&cfg, path, NVL_JSON_MAX_BYTES, err);
    if (st != NVL_OK) goto fail;
    if ((st = llm_hparams_from_json(&m->hp, cfg, path, err)) != NVL_OK) goto fail;
    if ((st = llm_quant_config_load(&m->quant, dir, err)) != NVL_OK) goto fail;
    if (m->quant.kv_algo[0])
        NVL_LOG_WARN("%s: kv_cache_quant_algo %s is not reproduced: the KV cache is kept in the activation dtype\n", dir,
                     m->quant.kv_algo);
    if (m->quant.note[0]) NVL_LOG_WARN("%s: %s\n", dir, m->quant.note);
    int64_t n_exp = 0, n_bound = 0;
    if ((st = llm_check_tensors(m->ck, &m->hp, NULL, NULL, &n_exp, &n_bound, err)) != NVL_OK)
        goto fail; /* (its callers name dir, as for every other error here: it was said twice) */
    const llm_hparams *hp = &m->hp;
    const char *head = "";
    const char *prefix = llm_tensor_prefix(m->ck, &head);
    int64_t n = llm_tensor_table(hp, prefix, head, NULL, 0);
    specs = nvl_malloc((size_t)n * sizeof *specs);
    m->layers = nvl_calloc((size_t)hp->n_layer, sizeof *m->layers);
    /* the small Mamba tensors as f32, one block: conv weight and bias, dt_bias, A, D per layer */
    const int64_t per_layer = hp->conv_dim * hp->d_conv + hp->conv_dim + 3 * hp->ssm_n_head;
    m->small = nvl_calloc((size_t)(per_layer * hp->n_mamba + 1), sizeof(float));
    if (!specs || !m->layers || !m->small) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", __func__);
        goto fail;
    }
    llm_tensor_table(hp, prefix, head, specs, n);
    float *next_small = m->small;
    for (int64_t i = 0; i < hp->n_layer; i++) m->layers[i].kind = hp->pattern[i];
    for (int64_t i = 0; i < n; i++) {
        const llm_tensor_spec *s = &specs[i];
        const nvl_st_entry *e = nvl_checkpoint_find(m->ck, s->name);
        char alt[200];
        if (!e && s->field == LLM_FIELD_EMB) { /* transformers spells it "embedding" in some versions */
            snprintf(alt, sizeof alt, "%sembedding.weight", prefix);
            e = nvl_checkpoint_find(m->ck, alt);
        }
        if (!e) continue; /* optional (conv bias) */
        nvl_tensor t;
        kern_weight lw;
        const int linear = s->field == LLM_FIELD_LM_HEAD || s->field == LLM_FIELD_IN_PROJ ||
                           s->field == LLM_FIELD_OUT_PROJ || s->field == LLM_FIELD_WQ || s->field == LLM_FIELD_WK ||
                           s->field == LLM_FIELD_WV || s->field == LLM_FIELD_WO || s->field == LLM_FIELD_UP ||
                           s->field == LLM_FIELD_DOWN;
        if (linear) {
            if ((st = llm_bind_linear(m->ck, &m->quant, e->name, s->shape[0], s->shape[1], &lw, err)) != NVL_OK) goto fail;
            t = lw.w;
        } else if ((st = bind(m, e->name, &t, err)) != NVL_OK) {
            goto fail;
        }
        llm_layer *L = s->layer >= 0 ? &m->layers[s->layer] : NULL;
        nvl_tensor *small = NULL;
        switch ((enum llm_field)s->field) {
        case LLM_FIELD_EMB: m->emb = t; break;
        case LLM_FIELD_NORM_F: m->norm_f = t; break;
        case LLM_FIELD_LM_HEAD: m->lm_head = lw; break;
        case LLM_FIELD_NORM: L->norm = t; break;
        case LLM_FIELD_IN_PROJ: L->in_proj = lw; break;
        case LLM_FIELD_OUT_PROJ: L->out_proj = lw; break;
        case LLM_FIELD_SSM_NORM: L->ssm_norm = t; break;
        case LLM_FIELD_WQ: L->wq = lw; break;
        case LLM_FIELD_WK: L->wk = lw; break;
        case LLM_FIELD_WV: L->wv = lw; break;
        case LLM_FIELD_WO: L->wo = lw; break;
        case LLM_FIELD_UP: L->up = lw; break;
        case LLM_FIELD_DOWN: L->down = lw; break;
        case LLM_FIELD_CONV_W: small = &L->conv_w; break;
        case LLM_FIELD_CONV_B: small = &L->conv_b; break;
        case LLM_FIELD_DT_BIAS: small = &L->dt_bias; break;
        case LLM_FIELD_A_LOG: small = &L->A; break;
        case LLM_FIELD_D: small = &L->D; break;
        }
        if (small) {
            const int64_t cnt = nvl_tensor_numel(&t);
            nvl_convert_to_f32(next_small, t.data, t.dtype, (size_t)cnt);
            if (s->field == LLM_FIELD_A_LOG)
                for (int64_t h = 0; h < cnt; h++) next_small[h] = -expf(next_small[h]);
            if (s->field == LLM_FIELD_CONV_W)
                *small = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){hp->conv_dim, hp->d_conv}, next_small);
            else
                *small = nvl_tensor_make(NVL_DTYPE_F32, 1, (int64_t[]){cnt}, next_small);
            next_small += cnt;
        }
    }
    if (hp->tie_embeddings) m->lm_head = kern_weight_plain(&m->emb, m->emb.data ? "embeddings (tied)" : NULL);
    if (m->quant.present) { /* a config left beside weights that are all float (dequantized, or copied over) */
        int qc[3];
        llm_model_quant_counts(m, qc);
        if (!qc[KERN_QUANT_FP8] && !qc[KERN_QUANT_NVFP4])
            NVL_LOG_WARN("%s: %s says quant_algo %s but no linear layer is quantized (every Linear weight is a float "
                         "dtype): the config is stale; the model runs unquantized\n", dir, m->quant.source,
                         m->quant.algo[0] ? m->quant.algo : "(none)");
    }
    const int bf16 = p.emulate_bf16 < 0 ? (m->emb.dtype == NVL_DTYPE_BF16) : p.emulate_bf16;
    m->act = bf16 ? NVL_DTYPE_BF16 : NVL_DTYPE_F32;
    /* place every weight on the backend (the CPU keeps the mmap views) */
    {
        nvl_tensor *place[16 + 24 * LLM_MAX_LAYERS];
        int64_t np = 0;
        place[np++] = &m->emb;
        place[np++] = &m->norm_f;
        if (!hp->tie_embeddings) place[np++] = &m->lm_head.w;
        for (int64_t i = 0; i < hp->n_layer; i++) {
            llm_layer *L = &m->layers[i];
            nvl_tensor *all[] = {&L->norm, &L->in_proj.w, &L->out_proj.w, &L->ssm_norm, &L->conv_w, &L->conv_b,
                                 &L->dt_bias, &L->A, &L->D, &L->wq.w, &L->wk.w, &L->wv.w, &L->wo.w, &L->up.w, &L->down.w,
                                 &L->in_proj.block_scale, &L->out_proj.block_scale, &L->wq.block_scale,
                                 &L->wk.block_scale, &L->wv.block_scale, &L->wo.block_scale, &L->up.block_scale,
                                 &L->down.block_scale};
            for (size_t k = 0; k < sizeof all / sizeof all[0]; k++)
                if (all[k]->data) place[np++] = all[k];
        }
        if ((st = kern_weights_place(m->be, place, np, err)) != NVL_OK) goto fail;
        if (hp->tie_embeddings) m->lm_head.w = m->emb;
    }
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
