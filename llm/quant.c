/* ModelOpt quantized checkpoints (quant-formats.md): the quantization config (hf_quant_config.json,
 * else config.json's quantization_config), vLLM's exclude-list rules, and binding one Linear with
 * its scales. Which modules are quantized is decided per tensor (weight dtype, the scale tensors
 * present, the exclude list), never assumed; every scale is validated with a message naming it. */
#include <cjson/cJSON.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "llm_impl.h"

void llm_quant_config_free(llm_quant_config *q) {
    if (!q) return;
    for (int i = 0; i < q->n_exclude; i++) nvl_free(q->exclude[i]);
    nvl_free(q->exclude);
    for (int i = 0; i < q->n_layers; i++) nvl_free(q->layers[i].module);
    nvl_free(q->layers);
    memset(q, 0, sizeof *q);
}

static nvl_status read_list(llm_quant_config *q, const cJSON *arr, const char *path, const char *key, nvl_err *err) {
    if (!arr || cJSON_IsNull(arr)) return NVL_OK;
    if (!cJSON_IsArray(arr)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s is not a list", path, key);
    const int n = cJSON_GetArraySize(arr);
    q->exclude = nvl_calloc((size_t)n + 1, sizeof *q->exclude);
    if (!q->exclude) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        if (!cJSON_IsString(it)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: an entry of %s is not a string", path, key);
        if (!(q->exclude[q->n_exclude] = nvl_strdup(it->valuestring))) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
        q->n_exclude++;
    }
    return NVL_OK;
}

/* A string field into dst: absent or null leaves it; any other type is refused, named (a number
 * read as '' said "quant_algo ''" far from the cause) */
static nvl_status read_str(char *dst, size_t cap, const cJSON *v, const char *path, const char *key, nvl_err *err) {
    if (!v || cJSON_IsNull(v)) return NVL_OK;
    if (!cJSON_IsString(v))
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s is %s, expected a string", path, key,
                           cJSON_IsNumber(v) ? "a number" : cJSON_IsBool(v) ? "a boolean" : cJSON_IsArray(v) ? "an array" : "an object");
    snprintf(dst, cap, "%s", v->valuestring);
    return NVL_OK;
}

/* group_size: absent or null leaves *out; else a positive whole number ("32" as a string, 0 or
 * 16.5 were taken as absent and the blocks run as 16) */
static nvl_status read_group_size(const cJSON *gs, const char *path, const char *key, int *out, nvl_err *err) {
    if (!gs || cJSON_IsNull(gs)) return NVL_OK;
    if (!cJSON_IsNumber(gs) || !(gs->valuedouble >= 1 && gs->valuedouble <= 65536) || gs->valuedouble != floor(gs->valuedouble)) {
        char *txt = cJSON_PrintUnformatted(gs);
        nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s is %.40s, expected a positive whole number (16 for NVFP4)", path, key,
                    txt ? txt : "?");
        cJSON_free(txt);
        return NVL_ERR_CONFIG;
    }
    *out = (int)gs->valuedouble;
    return NVL_OK;
}

/* One more entry of q->layers (room made by the caller) */
static nvl_status add_layer(llm_quant_config *q, const char *module, const char *algo, int group_size, const char *path,
                            nvl_err *err) {
    llm_quant_layer *l = &q->layers[q->n_layers];
    snprintf(l->algo, sizeof l->algo, "%s", algo);
    l->group_size = group_size;
    if (!(l->module = nvl_strdup(module))) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    q->n_layers++;
    q->has_layers = 1;
    return NVL_OK;
}

/* The format a config.json scheme object ({num_bits: 8 | 4, type: "float"}) names */
static const char *bits_algo(const cJSON *scheme) {
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(scheme, "num_bits");
    return cJSON_IsNumber(b) && b->valuedouble == 8 ? "FP8" : cJSON_IsNumber(b) && b->valuedouble == 4 ? "NVFP4" : "?";
}

/* quantized_layers (MIXED_PRECISION): {"<module>": {"quant_algo": "FP8"|"NVFP4", "group_size": 16}} */
static nvl_status read_layers(llm_quant_config *q, const cJSON *obj, const char *path, nvl_err *err) {
    if (!obj || cJSON_IsNull(obj)) return NVL_OK;
    if (!cJSON_IsObject(obj)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: quantized_layers is not an object", path);
    q->has_layers = 1;
    const int n = cJSON_GetArraySize(obj);
    if (!(q->layers = nvl_calloc((size_t)n + 1, sizeof *q->layers))) return nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path);
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(it, "quant_algo");
        if (!cJSON_IsObject(it) || !cJSON_IsString(a))
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: quantized_layers entry '%.200s' has no quant_algo string", path,
                               it->string ? it->string : "");
        char key[300];
        int gs = 0;
        snprintf(key, sizeof key, "quantized_layers '%.200s' group_size", it->string ? it->string : "");
        nvl_status st = read_group_size(cJSON_GetObjectItemCaseSensitive(it, "group_size"), path, key, &gs, err);
        if (st == NVL_OK) st = add_layer(q, it->string ? it->string : "", a->valuestring, gs, path, err);
        if (st != NVL_OK) return st;
    }
    return NVL_OK;
}

/* Older ModelOpt exports name a MIXED_PRECISION config.json's layers only as the targets of its
 * config_groups (one group per layer format: weights.num_bits 8 = FP8, 4 = NVFP4, and their
 * group_size); the module names (with a dot: not a class name like "Linear") become layers. */
static nvl_status layers_from_groups(llm_quant_config *q, const cJSON *groups, const char *path, nvl_err *err) {
    int n = 0;
    const cJSON *g, *t;
    cJSON_ArrayForEach(g, groups) {
        const cJSON *tg = cJSON_GetObjectItemCaseSensitive(g, "targets");
        n += cJSON_IsArray(tg) ? cJSON_GetArraySize(tg) : 0;
    }
    if (!n || !(q->layers = nvl_calloc((size_t)n, sizeof *q->layers))) return n ? nvl_err_set(err, NVL_ERR_NOMEM, "%s: out of memory", path) : NVL_OK;
    cJSON_ArrayForEach(g, groups) {
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(g, "weights"), *tg = cJSON_GetObjectItemCaseSensitive(g, "targets");
        int gs = 0;
        char key[160];
        snprintf(key, sizeof key, "config_groups.%.64s.weights.group_size", g->string ? g->string : "");
        nvl_status st = read_group_size(cJSON_GetObjectItemCaseSensitive(w, "group_size"), path, key, &gs, err);
        if (st != NVL_OK) return st;
        if (!cJSON_IsArray(tg)) continue;
        cJSON_ArrayForEach(t, tg) {
            if (cJSON_IsString(t) && strchr(t->valuestring, '.') && (st = add_layer(q, t->valuestring, bits_algo(w), gs, path, err)) != NVL_OK)
                return st;
        }
    }
    return NVL_OK;
}

/* config.json's quantization_config into q (quant_method must be modelopt). group sizes come
 * from config_groups.*.weights / input_activations. */
static nvl_status read_config_json(llm_quant_config *q, const cJSON *qc, const char *path, nvl_err *err) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    q->present = 1;
    snprintf(q->source, sizeof q->source, "config.json quantization_config");
    if (cJSON_IsString(m) && strcmp(m->valuestring, "modelopt"))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: quantization method '%s' (nanovl reads ModelOpt checkpoints: "
                           "quant_method \"modelopt\")", path, m->valuestring);
    nvl_status rs = read_str(q->algo, sizeof q->algo, cJSON_GetObjectItemCaseSensitive(qc, "quant_algo"), path,
                             "quantization_config.quant_algo", err);
    if (rs != NVL_OK) return rs;
    /* the KV cache's scheme, spelled kv_cache_scheme {num_bits, type} here (so that it is said
       not to be applied, as hf_quant_config.json's kv_cache_quant_algo is) */
    rs = read_str(q->kv_algo, sizeof q->kv_algo, cJSON_GetObjectItemCaseSensitive(qc, "kv_cache_quant_algo"), path,
                  "quantization_config.kv_cache_quant_algo", err);
    if (rs != NVL_OK) return rs;
    const cJSON *kv = cJSON_GetObjectItemCaseSensitive(qc, "kv_cache_scheme");
    if (!q->kv_algo[0] && cJSON_IsObject(kv)) snprintf(q->kv_algo, sizeof q->kv_algo, "%s", bits_algo(kv));
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups"), *g;
    if (!cJSON_IsObject(groups)) groups = NULL;
    cJSON_ArrayForEach(g, groups) {
        static const char *const parts[2] = {"weights", "input_activations"};
        for (int k = 0; k < 2; k++) {
            char key[200];
            int gs = 0;
            snprintf(key, sizeof key, "config_groups.%.64s.%s.group_size", g->string ? g->string : "", parts[k]);
            nvl_status st = read_group_size(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(g, parts[k]),
                                                                             "group_size"), path, key, &gs, err);
            if (st != NVL_OK) return st;
            if (gs && (q->group_size == 0 || q->group_size == 16)) q->group_size = gs;
        }
    }
    nvl_status st = read_list(q, cJSON_GetObjectItemCaseSensitive(qc, "ignore"), path, "ignore", err);
    if (st == NVL_OK) st = read_layers(q, cJSON_GetObjectItemCaseSensitive(qc, "quantized_layers"), path, err);
    if (st == NVL_OK && !q->has_layers && !strcmp(q->algo, "MIXED_PRECISION") && groups)
        st = layers_from_groups(q, groups, path, err);
    return st;
}

/* hf_quant_config.json was read into q; config.json's quantization_config (if any) should say
 * the same. What differs goes into q->note (vLLM too reads the first and ignores the second). */
static void compare_with_config_json(llm_quant_config *q, const cJSON *qc) {
    if (!qc) return;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(qc, "quant_method");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(qc, "quant_algo");
    const cJSON *ig = cJSON_GetObjectItemCaseSensitive(qc, "ignore");
    size_t o = 0;
    if (cJSON_IsString(m) && strcmp(m->valuestring, "modelopt"))
        o += (size_t)snprintf(q->note + o, sizeof q->note - o, "quant_method '%.40s'", m->valuestring);
    if (cJSON_IsString(a) && strcmp(a->valuestring, q->algo) && o < sizeof q->note)
        o += (size_t)snprintf(q->note + o, sizeof q->note - o, "%squant_algo '%.40s' (hf_quant_config.json: '%s')",
                              o ? ", " : "", a->valuestring, q->algo);
    if (cJSON_IsArray(ig) && o < sizeof q->note) {
        int same = cJSON_GetArraySize(ig) == q->n_exclude, i = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, ig) {
            if (!same) break;
            same = cJSON_IsString(it) && !strcmp(it->valuestring, q->exclude[i++]);
        }
        if (!same)
            o += (size_t)snprintf(q->note + o, sizeof q->note - o, "%san ignore list other than exclude_modules", o ? ", " : "");
    }
    if (o && o < sizeof q->note)
        snprintf(q->note + o, sizeof q->note - o, " in config.json's quantization_config; hf_quant_config.json's is used");
}

nvl_status llm_quant_config_load(llm_quant_config *q, const char *dir, nvl_err *err) {
    memset(q, 0, sizeof *q);
    char path[4096], cpath[4096];
    cJSON *root = NULL, *croot = NULL;
    nvl_err e2 = {0};
    snprintf(path, sizeof path, "%s/hf_quant_config.json", dir);
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    nvl_status st = nvl_json_load_file(&root, path, NVL_JSON_MAX_BYTES, &e2);
    if (st != NVL_OK && st != NVL_ERR_NOT_FOUND) return nvl_err_set(err, st, "%s", e2.msg);
    /* config.json: the config if there is no hf_quant_config.json, else only compared with it */
    const nvl_status cs = nvl_json_load_file(&croot, cpath, NVL_JSON_MAX_BYTES, root ? &e2 : err);
    if (cs != NVL_OK && !root) return cs;
    const cJSON *qc = nvl_json_obj(croot, "quantization_config");
    if (root) {
        const cJSON *qq = nvl_json_obj(root, "quantization");
        if (!qq) {
            st = nvl_err_set(err, NVL_ERR_CONFIG, "%s: no \"quantization\" object", path);
        } else {
            q->present = 1;
            snprintf(q->source, sizeof q->source, "hf_quant_config.json");
            st = read_str(q->algo, sizeof q->algo, cJSON_GetObjectItemCaseSensitive(qq, "quant_algo"), path,
                          "quantization.quant_algo", err);
            if (st == NVL_OK)
                st = read_str(q->kv_algo, sizeof q->kv_algo, cJSON_GetObjectItemCaseSensitive(qq, "kv_cache_quant_algo"), path,
                              "quantization.kv_cache_quant_algo", err);
            if (st == NVL_OK)
                st = read_group_size(cJSON_GetObjectItemCaseSensitive(qq, "group_size"), path, "group_size", &q->group_size, err);
            if (st == NVL_OK) st = read_list(q, cJSON_GetObjectItemCaseSensitive(qq, "exclude_modules"), path, "exclude_modules", err);
            if (st == NVL_OK) st = read_layers(q, cJSON_GetObjectItemCaseSensitive(qq, "quantized_layers"), path, err);
            if (st == NVL_OK) compare_with_config_json(q, qc);
        }
    } else if (qc) {
        st = read_config_json(q, qc, cpath, err);
    } else {
        st = NVL_OK;
    }
    cJSON_Delete(root);
    cJSON_Delete(croot);
    if (st != NVL_OK) llm_quant_config_free(q);
    return st;
}

/* A module name without the VL checkpoint's "language_model." */
static const char *lm_name(const char *m) { return strncmp(m, "language_model.", 15) ? m : m + 15; }

/* The quantized_layers entry of a module (matched with or without "language_model."), or NULL */
static const llm_quant_layer *find_layer(const llm_quant_config *q, const char *module) {
    for (int i = 0; i < q->n_layers; i++)
        if (!strcmp(lm_name(q->layers[i].module), lm_name(module))) return &q->layers[i];
    return NULL;
}

/* vLLM's is_layer_excluded: exact, substring (also without "language_model."), fnmatch; a
 * trailing "foo*" also matches "foo" and "foo.*". */
int llm_quant_excluded(const llm_quant_config *q, const char *module) {
    const char *alt = strncmp(module, "language_model.", 15) ? NULL : module + 15;
    for (int i = 0; i < q->n_exclude; i++) {
        const char *e = q->exclude[i];
        if (!strcmp(e, module) || strstr(module, e) || (alt && strstr(alt, e))) return 1;
        if (!fnmatch(e, module, 0) || (alt && !fnmatch(e, alt, 0))) return 1;
        const size_t l = strlen(e);
        if (l > 1 && e[l - 1] == '*') {
            char base[256];
            snprintf(base, sizeof base, "%.*s", (int)(l - 1), e);
            const size_t bl = strlen(base);
            if (bl && base[bl - 1] == '.') base[bl - 1] = '\0';
            if (!strcmp(base, module) || (alt && !strcmp(base, alt))) return 1;
        }
    }
    return 0;
}

/* A 0-d (or one-element) f32 scale, finite and > 0, and finite times max_code (the largest
 * magnitude it scales: 448 for E4M3 codes, 448 x 6 for an E2M1 code under an E4M3 block scale),
 * else the dequantized values are infinite and every output NaN. */
static nvl_status scalar_scale(const nvl_checkpoint *ck, const char *name, double max_code, float *out, nvl_err *err) {
    const nvl_st_entry *e = nvl_checkpoint_find(ck, name);
    if (!e) return nvl_err_set(err, NVL_ERR_NOT_FOUND, "missing scale tensor '%s'", name);
    nvl_tensor t = nvl_st_entry_tensor(e);
    if (nvl_tensor_numel(&t) != 1)
        return nvl_err_set(err, NVL_ERR_SHAPE, "scale tensor '%s' has %lld elements, expected one", name,
                           (long long)nvl_tensor_numel(&t));
    if (t.dtype != NVL_DTYPE_F32 && t.dtype != NVL_DTYPE_BF16 && t.dtype != NVL_DTYPE_F16)
        return nvl_err_set(err, NVL_ERR_DTYPE, "scale tensor '%s' has dtype %s, expected F32", name, nvl_dtype_name(t.dtype));
    const float v = nvl_tensor_get_f32(&t, 0);
    if (!isfinite(v) || v <= 0.0f)
        return nvl_err_set(err, NVL_ERR_FORMAT, "scale tensor '%s' is %g, expected a finite value > 0", name, (double)v);
    if ((double)v * max_code > 3.4028234663852886e38)
        return nvl_err_set(err, NVL_ERR_FORMAT, "scale tensor '%s' is %g: times the largest code it scales (%g) it "
                           "overflows f32", name, (double)v, max_code);
    *out = v;
    return NVL_OK;
}

nvl_status llm_bind_linear(const nvl_checkpoint *ck, const llm_quant_config *q, const char *name, int64_t n_out,
                           int64_t n_in, kern_weight *out, nvl_err *err) {
    memset(out, 0, sizeof *out);
    const nvl_st_entry *e = nvl_checkpoint_find(ck, name);
    if (!e) return nvl_err_set(err, NVL_ERR_NOT_FOUND, "missing tensor '%s'", name);
    nvl_tensor t = nvl_st_entry_tensor(e);
    char module[200], sname[240];
    const size_t nl = strlen(e->name);
    snprintf(module, sizeof module, "%.*s", (int)(nl > 7 && !strcmp(e->name + nl - 7, ".weight") ? nl - 7 : nl), e->name);
    /* a bias beside a Linear (NemotronH has none; the config's *_bias keys are checked too) */
    snprintf(sname, sizeof sname, "%s.bias", module);
    if (nvl_checkpoint_find(ck, sname))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "tensor '%s': NemotronH's Linear layers have no biases and nanovl "
                           "runs none (it would be left out)", sname);
    /* AWQ's per-channel pre_quant_scale multiplies the activations first: ignoring it answered
       with another model, quietly */
    snprintf(sname, sizeof sname, "%s.pre_quant_scale", module);
    if (nvl_checkpoint_find(ck, sname))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "tensor '%s': pre-quantization (AWQ / SmoothQuant) scales are not "
                           "supported; nanovl runs ModelOpt FP8 and NVFP4 without them", sname);
    if (t.dtype == NVL_DTYPE_F32 || t.dtype == NVL_DTYPE_BF16 || t.dtype == NVL_DTYPE_F16) {
        /* a float weight with a quantized module's scales beside it: the codes cast to float by a
           conversion that left the scales (they would be ignored: another model), or scales of
           weights dequantized already. Either way nanovl cannot tell which; refused by name */
        static const char *const companions[] = {"weight_scale", "weight_scale_2", "input_scale"};
        for (size_t i = 0; i < sizeof companions / sizeof companions[0]; i++) {
            snprintf(sname, sizeof sname, "%s.%s", module, companions[i]);
            if (nvl_checkpoint_find(ck, sname))
                return nvl_err_set(err, NVL_ERR_CONFIG, "tensor '%s' is %s but the quantization scale '%s' is beside it: "
                                   "quantized codes cast to a float dtype would run as another model (if the weights were "
                                   "dequantized, remove their scale tensors)", e->name, nvl_dtype_name(t.dtype), sname);
        }
        snprintf(sname, sizeof sname, "tensor '%s'", e->name);
        nvl_status st = nvl_tensor_check_shape(&t, 2, (int64_t[]){n_out, n_in}, sname, err);
        if (st != NVL_OK) return st;
        /* (unquantized by its dtype, excluded or not: which modules are quantized is decided per
           tensor, quant-formats.md) */
        *out = kern_weight_plain(&t, e->name);
        return NVL_OK;
    }
    const int fp8 = t.dtype == NVL_DTYPE_F8_E4M3, fp4 = t.dtype == NVL_DTYPE_U8;
    if (!fp8 && !fp4)
        return nvl_err_set(err, NVL_ERR_DTYPE, "tensor '%s' has dtype %s, expected F32, BF16, F16, F8_E4M3 (FP8) or U8 (NVFP4)",
                           e->name, nvl_dtype_name(t.dtype));
    if (!q->present)
        return nvl_err_set(err, NVL_ERR_CONFIG, "tensor '%s' is %s but the checkpoint has no ModelOpt quantization config "
                           "(hf_quant_config.json or config.json quantization_config)", e->name, fp8 ? "FP8" : "NVFP4 (U8)");
    if (llm_quant_excluded(q, module))
        return nvl_err_set(err, NVL_ERR_CONFIG, "tensor '%s' is quantized but its module '%s' is in the exclude list of %s",
                           e->name, module, q->source);
    /* the weights must be what the config says they are (MIXED_PRECISION names each layer's
       algorithm in quantized_layers: either kind) */
    const int mixed = !strcmp(q->algo, "MIXED_PRECISION");
    int group_size = q->group_size;
    if (mixed) {
        const llm_quant_layer *l = find_layer(q, module);
        if (!l)
            return nvl_err_set(err, NVL_ERR_CONFIG, "tensor '%s' is %s but %s (quant_algo MIXED_PRECISION) %s module '%s'",
                               e->name, fp8 ? "FP8" : "NVFP4", q->source,
                               q->has_layers ? "does not list in quantized_layers the" : "has no quantized_layers for its",
                               module);
        if (strcmp(l->algo, fp8 ? "FP8" : "NVFP4"))
            return nvl_err_set(err, NVL_ERR_CONFIG, "tensor '%s' is %s but %s quantized_layers says '%s' for module '%s'%s",
                               e->name, fp8 ? "FP8 (F8_E4M3)" : "NVFP4 (U8 with E4M3 block scales)", q->source, l->algo, module,
                               strcmp(l->algo, "FP8") && strcmp(l->algo, "NVFP4") ? " (nanovl reads FP8 and NVFP4 layers)" : "");
        if (l->group_size) group_size = l->group_size;
    }
    if (!mixed && strcmp(q->algo, "FP8") && strcmp(q->algo, "NVFP4"))
        return nvl_err_set(err, NVL_ERR_CONFIG, "tensor '%s' is %s but %s has quant_algo '%s' (nanovl reads FP8, NVFP4 and "
                           "MIXED_PRECISION)", e->name, fp8 ? "FP8 (F8_E4M3)" : "NVFP4 (U8)", q->source, q->algo);
    if (!mixed && strcmp(q->algo, fp8 ? "FP8" : "NVFP4"))
        return nvl_err_set(err, NVL_ERR_CONFIG, "tensor '%s' is %s but %s says quant_algo '%s'", e->name,
                           fp8 ? "FP8 (F8_E4M3)" : "NVFP4 (U8 with E4M3 block scales)", q->source, q->algo);
    if (fp4 && group_size && group_size != 16)
        return nvl_err_set(err, NVL_ERR_CONFIG, "tensor '%s' is NVFP4, whose blocks are 16 along the input, but %s says "
                           "group_size %d", e->name, q->source, group_size);
    if (fp4 && n_in % 16)
        return nvl_err_set(err, NVL_ERR_SHAPE, "NVFP4 weight '%s': the layer has %lld inputs, not a multiple of the 16-element "
                           "blocks NVFP4 needs", e->name, (long long)n_in);
    const int64_t want_in = fp8 ? n_in : n_in / 2;
    if (t.n_dims != 2 || t.shape[0] != n_out || t.shape[1] != want_in)
        return nvl_err_set(err, NVL_ERR_SHAPE, "%s weight '%s' has shape [%lld, %lld], expected [%lld, %lld]%s", fp8 ? "FP8" : "NVFP4",
                           e->name, (long long)t.shape[0], (long long)(t.n_dims > 1 ? t.shape[1] : 0), (long long)n_out,
                           (long long)want_in, fp4 ? " (two E2M1 codes a byte)" : "");
    kern_weight w = kern_weight_plain(&t, e->name);
    w.n_out = n_out;
    w.n_in = n_in;
    w.quant = fp8 ? KERN_QUANT_FP8 : KERN_QUANT_NVFP4;
    nvl_status st;
    snprintf(sname, sizeof sname, "%s.input_scale", module);
    if ((st = scalar_scale(ck, sname, fp8 ? 448.0 : 448.0 * 6.0, &w.input_scale, err)) != NVL_OK) {
        if (st == NVL_ERR_NOT_FOUND)
            nvl_err_set(err, st, "missing scale tensor '%s': %s weights without a static input scale (weight-only or "
                        "dynamic per-token schemes) are not supported", sname, fp8 ? "FP8" : "NVFP4");
        return st;
    }
    if (fp8) {
        snprintf(sname, sizeof sname, "%s.weight_scale", module);
        if ((st = scalar_scale(ck, sname, 448.0, &w.weight_scale, err)) != NVL_OK) return st;
        /* E4M3 has NaN codes (S.1111.111) and no infinities: a NaN weight gave answers that differed
           between backends, with success. The first one found, by row (one pass over the bytes:
           a decode step reads them all anyway) */
        const uint8_t *c = t.data;
        const int64_t n = n_out * n_in;
        int64_t bad = INT64_MAX;
#pragma omp parallel for schedule(static) reduction(min : bad) if (n > (1 << 22))
        for (int64_t r = 0; r < n_out; r++) {
            const uint8_t *row = c + r * n_in;
            int found = 0;
            for (int64_t k = 0; k < n_in; k++) found |= (row[k] & 0x7f) == 0x7f;
            if (found && r < bad) bad = r;
        }
        if (bad != INT64_MAX) {
            int64_t col = 0;
            while (col < n_in && (c[bad * n_in + col] & 0x7f) != 0x7f) col++;
            return nvl_err_set(err, NVL_ERR_FORMAT, "FP8 weight '%s' holds a NaN code (0x%02x) at row %lld, column %lld",
                               e->name, (unsigned)c[bad * n_in + col], (long long)bad, (long long)col);
        }
    } else {
        snprintf(sname, sizeof sname, "%s.weight_scale_2", module);
        if ((st = scalar_scale(ck, sname, 448.0 * 6.0, &w.weight_scale, err)) != NVL_OK) return st;
        snprintf(sname, sizeof sname, "%s.weight_scale", module);
        const nvl_st_entry *be = nvl_checkpoint_find(ck, sname);
        if (!be) return nvl_err_set(err, NVL_ERR_NOT_FOUND, "missing block-scale tensor '%s'", sname);
        nvl_tensor bs = nvl_st_entry_tensor(be);
        if (bs.dtype != NVL_DTYPE_F8_E4M3)
            return nvl_err_set(err, NVL_ERR_DTYPE, "block-scale tensor '%s' has dtype %s, expected F8_E4M3", sname,
                               nvl_dtype_name(bs.dtype));
        if (bs.n_dims != 2 || bs.shape[0] != n_out || bs.shape[1] != n_in / 16) {
            char got[128]; /* (as it is: a 1-D tensor was shown with a second dimension of 0) */
            nvl_shape_str(got, sizeof got, bs.n_dims, bs.shape);
            return nvl_err_set(err, NVL_ERR_SHAPE, "block-scale tensor '%s' has shape %s, expected [%lld, %lld] (one scale "
                               "per 16 inputs)", sname, got, (long long)n_out, (long long)(n_in / 16));
        }
        const uint8_t *b = bs.data;
        for (int64_t i = 0; i < n_out * (n_in / 16); i++)
            if ((b[i] & 0x7f) == 0x7f || (b[i] & 0x7f) == 0 || (b[i] & 0x80))
                return nvl_err_set(err, NVL_ERR_FORMAT, "block-scale tensor '%s' element %lld (row %lld) is %s, expected a "
                                   "finite E4M3 value > 0", sname, (long long)i, (long long)(i / (n_in / 16)),
                                   (b[i] & 0x7f) == 0x7f ? "NaN" : (b[i] & 0x80) ? "negative" : "zero");
        w.block_scale = bs;
    }
    *out = w;
    return NVL_OK;
}

const char *llm_quant_name(kern_quant q) {
    return q == KERN_QUANT_FP8 ? "FP8 (W8A8 E4M3, static per-tensor input scale)"
           : q == KERN_QUANT_NVFP4 ? "NVFP4 (W4A4 E2M1, E4M3 16-blocks, dynamic activation blocks)"
                                   : "unquantized";
}
