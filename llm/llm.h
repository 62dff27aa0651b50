/* The hybrid Mamba-2 / Transformer language model of Nemotron Nano V2 VL (`nemotron_h`).
 *
 * This header grows with the model; so far it holds the configuration (read from config.json,
 * either a bare NemotronH config or the `llm_config` inside the VL config) and the tensor table
 * check used by the loader and by `nanovl inspect`.
 *
 *   llm_hparams hp;
 *   st = llm_hparams_from_json(&hp, cfg_root, "config.json", &err);    // cfg_root: cJSON *
 *   st = llm_check_tensors(ck, &hp, report_fn, user, &n_expected, &n_bound, &err);
 *
 * Dimension letters: T = tokens, C = n_embd, H = mamba heads, P = mamba head_dim,
 * N = d_state, G = n_group, D = attention head_dim.
 */
#ifndef LLM_LLM_H
#define LLM_LLM_H

#include <stdint.h>

#include "base/safetensors.h"
#include "base/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cJSON;

#define LLM_MAX_LAYERS 256

enum llm_layer_kind {
    LLM_LAYER_KIND_MAMBA2 = 'M', /* Mamba-2 mixer */
    LLM_LAYER_KIND_ATTN = '*',   /* GQA attention, no positional encoding */
    LLM_LAYER_KIND_MLP = '-',    /* squared-ReLU MLP */
    LLM_LAYER_KIND_MOE = 'E',    /* mixture of experts: recognised, not supported */
};

typedef struct llm_hparams {
    int64_t n_vocab;        /* vocab_size */
    int64_t n_embd;         /* hidden_size (C) */
    int64_t n_layer;        /* = strlen(pattern) */
    char pattern[LLM_MAX_LAYERS + 1]; /* one char per layer: M, *, - (E) */
    int64_t n_head;         /* num_attention_heads */
    int64_t n_head_kv;      /* num_key_value_heads */
    int64_t head_dim;       /* attention head_dim (D) */
    int64_t n_ff;           /* intermediate_size */
    int64_t ssm_n_head;     /* mamba_num_heads (H) */
    int64_t ssm_head_dim;   /* mamba_head_dim (P) */
    int64_t d_state;        /* ssm_state_size (N) */
    int64_t n_group;        /* n_groups (G) */
    int64_t d_conv;         /* conv_kernel */
    int64_t chunk_size;     /* SSD chunk length */
    int conv_bias;          /* use_conv_bias */
    double eps;             /* layer_norm_epsilon */
    double dt_min, dt_max;  /* time_step_limit (0, inf) = no clamp */
    int tie_embeddings;     /* tie_word_embeddings */
    int residual_in_fp32;
    int64_t bos_id, eos_id, pad_id; /* from the config; -1 when absent (tokenizer decides) */
    /* Derived: */
    int64_t d_inner;        /* H * P */
    int64_t conv_dim;       /* d_inner + 2 * G * N */
    int64_t d_in_proj;      /* d_inner + conv_dim + H */
    int n_mamba, n_attn, n_mlp;
} llm_hparams;

/* Reads the LM config from a parsed config.json: the `llm_config` (or `text_config`) object when
 * present, else the root. what names the file in messages. Validates ranges and consistency
 * (pattern length vs num_hidden_layers, heads divisible, groups dividing heads).
 * @return NVL_OK or NVL_ERR_CONFIG naming the field, with got/expected. */
nvl_status llm_hparams_from_json(llm_hparams *hp, const struct cJSON *root, const char *what,
                                 nvl_err *err);

/* Prefix of LM tensor names in ck: "language_model.backbone." (VL), "backbone." (published
 * NemotronH) or "model." (transformers 5 save_pretrained); NULL when no embedding table is found.
 * *head_prefix gets the matching prefix of lm_head ("language_model." or ""). */
const char *llm_tensor_prefix(const nvl_checkpoint *ck, const char **head_prefix);

/* Expected tensor: full name, shape, and whether it must be present. */
typedef struct llm_tensor_spec {
    char name[160];
    int n_dims;
    int64_t shape[3];
    int required;
    int layer;      /* -1 for global tensors */
} llm_tensor_spec;

/* Called once per problem found (message is complete, e.g. "missing tensor '...'"). */
typedef void (*llm_problem_fn)(void *user, nvl_status code, const char *message);

/* Checks every tensor the config implies against ck: presence, shape (FP8 weights may be
 * F8_E4M3; NVFP4 weights U8 with the input dimension halved), float dtype for unquantized
 * tensors. Reports each problem through fn (may be NULL) and counts expected/bound.
 * @return NVL_OK when all required tensors are present and well-shaped; otherwise the code of
 * the first problem, with err naming it. */
nvl_status llm_check_tensors(const nvl_checkpoint *ck, const llm_hparams *hp, llm_problem_fn fn,
                             void *user, int64_t *n_expected, int64_t *n_bound, nvl_err *err);

/* Fills specs (cap entries) with the tensor table of the model; returns the count (which may
 * exceed cap: call with cap 0 first to size). */
int64_t llm_tensor_table(const llm_hparams *hp, const char *prefix, const char *head_prefix,
                         llm_tensor_spec *specs, int64_t cap);

#ifdef __cplusplus
}
#endif

#endif // LLM_LLM_H
