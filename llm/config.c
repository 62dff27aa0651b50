/* NemotronH language-model configuration: read config.json (bare or the VL `llm_config`),
 * accept the three spellings of the layer pattern, validate, derive sizes.
 *
 * Pattern spellings (model.md §2.1): `hybrid_override_pattern` string of M / * / - / E;
 * `layers_block_type` list with "mamba" | "linear_attention", "attention" | "full_attention",
 * "mlp", "moe". Legacy `mamba_*` keys are accepted where transformers accepts them.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/json_util.h"
#include "llm.h"

static nvl_status read_pattern(llm_hparams *hp, const cJSON *c, const char *what, nvl_err *err) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(c, "hybrid_override_pattern");
    if (p && cJSON_IsString(p)) {
        size_t n = strlen(p->valuestring);
        if (n == 0 || n > LLM_MAX_LAYERS)
            return nvl_err_set(err, NVL_ERR_CONFIG,
                               "%s: hybrid_override_pattern has %zu layers, expected 1..%d", what,
                               n, LLM_MAX_LAYERS);
        for (size_t i = 0; i < n; i++) {
            char ch = p->valuestring[i];
            if (ch != 'M' && ch != '*' && ch != '-' && ch != 'E')
                return nvl_err_set(err, NVL_ERR_CONFIG,
                                   "%s: hybrid_override_pattern[%zu] is '%c', expected one of M * - E",
                                   what, i, ch);
        }
        memcpy(hp->pattern, p->valuestring, n + 1);
        return NVL_OK;
    }
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(c, "layers_block_type");
    if (l && cJSON_IsArray(l)) {
        int n = cJSON_GetArraySize(l);
        if (n <= 0 || n > LLM_MAX_LAYERS)
            return nvl_err_set(err, NVL_ERR_CONFIG,
                               "%s: layers_block_type has %d layers, expected 1..%d", what, n,
                               LLM_MAX_LAYERS);
        int i = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, l) {
            const char *s = cJSON_IsString(e) ? e->valuestring : "";
            char ch = 0;
            if (!strcmp(s, "mamba") || !strcmp(s, "linear_attention")) ch = 'M';
            else if (!strcmp(s, "attention") || !strcmp(s, "full_attention")) ch = '*';
            else if (!strcmp(s, "mlp")) ch = '-';
            else if (!strcmp(s, "moe")) ch = 'E';
            else
                return nvl_err_set(err, NVL_ERR_CONFIG,
                                   "%s: layers_block_type[%d] is '%s', expected mamba, "
                                   "linear_attention, attention, full_attention, mlp or moe",
                                   what, i, s);
            hp->pattern[i++] = ch;
        }
        hp->pattern[i] = '\0';
        return NVL_OK;
    }
    return nvl_err_set(err, NVL_ERR_CONFIG,
                       "%s: no layer pattern (expected 'hybrid_override_pattern' or "
                       "'layers_block_type')",
                       what);
}

/* int key with an optional legacy alias */
static nvl_status get_int2(const cJSON *c, const char *key, const char *alias, int64_t def,
                           int required, int64_t *out, const char *what, nvl_err *err) {
    if (cJSON_GetObjectItemCaseSensitive(c, key) || !alias ||
        !cJSON_GetObjectItemCaseSensitive(c, alias)) {
        if (required) return nvl_json_get_int(c, key, out, what, err);
        return nvl_json_opt_int(c, key, def, out, what, err);
    }
    return nvl_json_get_int(c, alias, out, what, err);
}

#define CHECK(expr)                          \
    do {                                     \
        nvl_status st_ = (expr);             \
        if (st_ != NVL_OK) return st_;       \
    } while (0)

static nvl_status positive(int64_t v, const char *key, const char *what, nvl_err *err) {
    if (v <= 0)
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s is %lld, expected a positive integer",
                           what, key, (long long)v);
    return NVL_OK;
}

nvl_status llm_hparams_from_json(llm_hparams *hp, const cJSON *root, const char *what_file,
                                 nvl_err *err) {
    memset(hp, 0, sizeof *hp);
    char what[256];
    const cJSON *c = nvl_json_obj(root, "llm_config");
    if (!c) c = nvl_json_obj(root, "text_config");
    if (c)
        snprintf(what, sizeof what, "%s llm_config", what_file);
    else {
        c = root;
        snprintf(what, sizeof what, "%s", what_file);
    }
    if (!cJSON_IsObject(c)) return nvl_err_set(err, NVL_ERR_CONFIG, "%s: not a JSON object", what);

    const char *mt = NULL;
    CHECK(nvl_json_opt_string(c, "model_type", NULL, &mt, what, err));
    if (mt && strcmp(mt, "nemotron_h") != 0)
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: model_type is '%s', expected 'nemotron_h'",
                           what, mt);

    CHECK(read_pattern(hp, c, what, err));
    hp->n_layer = (int64_t)strlen(hp->pattern);
    int64_t nl = hp->n_layer;
    CHECK(nvl_json_opt_int(c, "num_hidden_layers", hp->n_layer, &nl, what, err));
    if (nl != hp->n_layer)
        return nvl_err_set(err, NVL_ERR_CONFIG,
                           "%s: num_hidden_layers is %lld but the layer pattern has %lld layers",
                           what, (long long)nl, (long long)hp->n_layer);

    CHECK(nvl_json_get_int(c, "vocab_size", &hp->n_vocab, what, err));
    CHECK(nvl_json_get_int(c, "hidden_size", &hp->n_embd, what, err));
    CHECK(nvl_json_get_int(c, "num_attention_heads", &hp->n_head, what, err));
    CHECK(nvl_json_get_int(c, "num_key_value_heads", &hp->n_head_kv, what, err));
    CHECK(nvl_json_opt_int(c, "head_dim", hp->n_head ? hp->n_embd / hp->n_head : 0, &hp->head_dim,
                           what, err));
    CHECK(nvl_json_get_int(c, "intermediate_size", &hp->n_ff, what, err));
    CHECK(nvl_json_get_int(c, "mamba_num_heads", &hp->ssm_n_head, what, err));
    CHECK(nvl_json_get_int(c, "mamba_head_dim", &hp->ssm_head_dim, what, err));
    CHECK(nvl_json_get_int(c, "ssm_state_size", &hp->d_state, what, err));
    CHECK(get_int2(c, "n_groups", "mamba_n_groups", 1, 1, &hp->n_group, what, err));
    CHECK(get_int2(c, "conv_kernel", "mamba_d_conv", 4, 0, &hp->d_conv, what, err));
    CHECK(get_int2(c, "chunk_size", "mamba_chunk_size", 128, 0, &hp->chunk_size, what, err));
    if (cJSON_GetObjectItemCaseSensitive(c, "use_conv_bias") ||
        !cJSON_GetObjectItemCaseSensitive(c, "mamba_conv_bias"))
        CHECK(nvl_json_opt_bool(c, "use_conv_bias", 1, &hp->conv_bias, what, err));
    else
        CHECK(nvl_json_get_bool(c, "mamba_conv_bias", &hp->conv_bias, what, err));
    /* NemotronH's Linear layers have no biases (hf-nh defaults; mlm-sft --disable-bias-linear):
       a config that says otherwise is another model, whose biases would be left out quietly */
    static const char *const bias_keys[] = {"attention_bias", "mlp_bias", "use_bias"};
    for (size_t i = 0; i < sizeof bias_keys / sizeof bias_keys[0]; i++) {
        int b = 0;
        CHECK(nvl_json_opt_bool(c, bias_keys[i], 0, &b, what, err));
        if (b)
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: %s is true: NemotronH's Linear layers have no biases and "
                               "nanovl runs none", what, bias_keys[i]);
    }
    CHECK(nvl_json_opt_double(c, "layer_norm_epsilon", 1e-5, &hp->eps, what, err));
    CHECK(nvl_json_opt_bool(c, "tie_word_embeddings", 0, &hp->tie_embeddings, what, err));
    CHECK(nvl_json_opt_bool(c, "residual_in_fp32", 0, &hp->residual_in_fp32, what, err));
    CHECK(nvl_json_opt_int(c, "bos_token_id", -1, &hp->bos_id, what, err));
    CHECK(nvl_json_opt_int(c, "max_position_embeddings", 0, &hp->n_ctx_train, what, err));
    CHECK(nvl_json_opt_int(c, "eos_token_id", -1, &hp->eos_id, what, err));
    CHECK(nvl_json_opt_int(c, "pad_token_id", -1, &hp->pad_id, what, err));

    const char *act = NULL;
    CHECK(nvl_json_opt_string(c, "mlp_hidden_act", "relu2", &act, what, err));
    if (strcmp(act, "relu2"))
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: mlp_hidden_act is '%s', expected 'relu2'",
                           what, act);
    const char *mact = NULL;
    CHECK(nvl_json_opt_string(c, "mamba_hidden_act", "silu", &mact, what, err));
    if (strcmp(mact, "silu"))
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: mamba_hidden_act is '%s', expected 'silu'",
                           what, mact);

    hp->dt_min = 0.0;
    hp->dt_max = INFINITY;
    const char *tsl_key = cJSON_GetObjectItemCaseSensitive(c, "time_step_limit") ? "time_step_limit"
                          : cJSON_GetObjectItemCaseSensitive(c, "mamba_dt_limit") ? "mamba_dt_limit"
                                                                                  : NULL;
    if (tsl_key) {
        double v[2];
        int n = 0;
        CHECK(nvl_json_get_double_array(c, tsl_key, v, 2, &n, what, err));
        if (n != 2)
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s has %d values, expected 2", what,
                               tsl_key, n);
        hp->dt_min = v[0];
        hp->dt_max = isnan(v[1]) ? INFINITY : v[1];
        if (!(hp->dt_min >= 0) || !(hp->dt_min <= hp->dt_max)) /* (NaN or reversed: accepted, a review) */
            return nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s is [%g, %g], expected [min, max] with 0 <= min <= max",
                               what, tsl_key, v[0], v[1]);
    }

    CHECK(positive(hp->n_vocab, "vocab_size", what, err));
    { /* special ids: -1 (none) or a token of the vocabulary (eos_token_id -7 was taken: a review) */
        static const char *const keys[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
        const int64_t ids[] = {hp->bos_id, hp->eos_id, hp->pad_id};
        for (int i = 0; i < 3; i++)
            if (ids[i] < -1 || ids[i] >= hp->n_vocab)
                return nvl_err_set(err, NVL_ERR_CONFIG, "%s: %s is %lld, expected a token id of the %lld-token vocabulary",
                                   what, keys[i], (long long)ids[i], (long long)hp->n_vocab);
    }
    CHECK(positive(hp->n_embd, "hidden_size", what, err));
    CHECK(positive(hp->d_conv, "conv_kernel", what, err));
    CHECK(positive(hp->chunk_size, "chunk_size", what, err));
    if (!(hp->eps > 0 && hp->eps < 1))
        return nvl_err_set(err, NVL_ERR_CONFIG, "%s: layer_norm_epsilon is %g, expected in (0, 1)",
                           what, hp->eps);
    for (int64_t i = 0; i < hp->n_layer; i++) {
        switch (hp->pattern[i]) {
        case 'M': hp->n_mamba++; break;
        case '*': hp->n_attn++; break;
        case '-': hp->n_mlp++; break;
        default:
            return nvl_err_set(err, NVL_ERR_UNSUPPORTED,
                               "%s: layer %lld is a mixture-of-experts layer ('E'), which this "
                               "model (Nemotron Nano V2) does not have and nanovl does not run",
                               what, (long long)i);
        }
    }
    if (hp->n_attn) {
        CHECK(positive(hp->n_head, "num_attention_heads", what, err));
        CHECK(positive(hp->n_head_kv, "num_key_value_heads", what, err));
        CHECK(positive(hp->head_dim, "head_dim", what, err));
        if (hp->n_head % hp->n_head_kv)
            return nvl_err_set(err, NVL_ERR_CONFIG,
                               "%s: num_attention_heads %lld is not a multiple of "
                               "num_key_value_heads %lld",
                               what, (long long)hp->n_head, (long long)hp->n_head_kv);
    }
    if (hp->n_mlp) CHECK(positive(hp->n_ff, "intermediate_size", what, err));
    if (hp->n_mamba) {
        CHECK(positive(hp->ssm_n_head, "mamba_num_heads", what, err));
        CHECK(positive(hp->ssm_head_dim, "mamba_head_dim", what, err));
        CHECK(positive(hp->d_state, "ssm_state_size", what, err));
        CHECK(positive(hp->n_group, "n_groups", what, err));
        if (hp->ssm_n_head % hp->n_group)
            return nvl_err_set(err, NVL_ERR_CONFIG,
                               "%s: n_groups %lld does not divide mamba_num_heads %lld", what,
                               (long long)hp->n_group, (long long)hp->ssm_n_head);
    }
    hp->d_inner = hp->ssm_n_head * hp->ssm_head_dim;
    hp->conv_dim = hp->d_inner + 2 * hp->n_group * hp->d_state;
    hp->d_in_proj = hp->d_inner + hp->conv_dim + hp->ssm_n_head;
    if (hp->n_mamba && hp->d_inner % hp->n_group)
        return nvl_err_set(err, NVL_ERR_CONFIG,
                           "%s: n_groups %lld does not divide the Mamba inner size %lld", what,
                           (long long)hp->n_group, (long long)hp->d_inner);
    return NVL_OK;
}
