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

#include "backend.h"
#include "ops.h"
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
    int64_t n_ctx_train;    /* max_position_embeddings; 0 when the config does not say */
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
    int field;      /* enum llm_field: which model field the tensor fills */
} llm_tensor_spec;

enum llm_field {
    LLM_FIELD_EMB, LLM_FIELD_NORM_F, LLM_FIELD_LM_HEAD, LLM_FIELD_NORM, LLM_FIELD_IN_PROJ, LLM_FIELD_CONV_W,
    LLM_FIELD_CONV_B, LLM_FIELD_DT_BIAS, LLM_FIELD_A_LOG, LLM_FIELD_D, LLM_FIELD_SSM_NORM, LLM_FIELD_OUT_PROJ,
    LLM_FIELD_WQ, LLM_FIELD_WK, LLM_FIELD_WV, LLM_FIELD_WO, LLM_FIELD_UP, LLM_FIELD_DOWN,
};

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

// ---------------------------------------------------------------------------
// Model, per-sequence context, generation
//
//   llm_model *m = NULL;
//   st = llm_model_init(&m, "ckpt/", NULL, &err);            // mmaps weights, binds the table
//   llm_context *ctx = NULL;
//   llm_context_params cp = llm_context_params_default();   // n_ctx, n_chunk
//   st = llm_context_init(&ctx, m, &cp, &err);
//   st = llm_prefill(ctx, ids, n, NULL, &err);               // chunked, state carried
//   const float *logits = llm_logits(ctx);                   // last position, n_vocab floats
//   st = llm_decode(ctx, next_id, &err);                     // one token, recurrent path
//   llm_context_free(ctx); llm_model_free(m);
//
// Thread-safety: an llm_model is immutable after init and may be shared by contexts in several
// threads; one llm_context is used by one thread at a time.

typedef struct llm_model llm_model;
typedef struct llm_context llm_context;
typedef struct llm_state llm_state;
typedef struct llm_cache llm_cache;
typedef struct llm_workspace llm_workspace;

typedef struct llm_model_params {
    /* Reproduce the bf16 rounding points of the PyTorch reference (activations rounded to bf16
     * where transformers keeps them in the model dtype). -1: when the embedding table is BF16;
     * 0: off (all activations f32); 1: on. */
    int emulate_bf16;
} llm_model_params;
llm_model_params llm_model_params_default(void);

/* dir: a bare NemotronH checkpoint or a VL checkpoint directory (config.json + safetensors).
 * Refuses missing tensors, wrong shapes, unsupported dtypes and inconsistent configs with a
 * message naming the tensor or key. */
nvl_status llm_model_init(llm_model **out, const char *dir, const llm_model_params *params,
                          nvl_err *err);
void llm_model_free(llm_model *m);
const llm_hparams *llm_model_hparams(const llm_model *m);
/* generation_config.json's eos_token_id (an integer or a list) in dir, each checked to be an id
 * of an n_vocab-token vocabulary: up to cap of them into ids (*n). An absent file gives none
 * (NVL_OK); NVL_ERR_CONFIG names the file and the bad value. llm_model_init reads it so; inspect
 * reports it. */
nvl_status llm_generation_config_eos(const char *dir, int64_t n_vocab, int32_t *ids, int cap, int *n, nvl_err *err);
/* Stop token ids from generation_config.json (eos_token_id, int or list) and config.json;
 * returns the count written (at most cap). */
int llm_model_stop_ids(const llm_model *m, int32_t *ids, int cap);
struct llm_tokenizer;
/* Stop ids for generation in the chat format: the checkpoint's (generation_config.json eos ids
 * and config eos) plus the tokenizer's <SPECIAL_12> (end of turn) and </s>, without duplicates.
 * Returns the count written (at most cap). Defined in generate.c (needs nvl_text's tokenizer). */
int llm_chat_stop_ids(const llm_model *m, const struct llm_tokenizer *tok, int32_t *ids, int cap);

enum llm_ssm_mode {
    LLM_SSM_MODE_AUTO = 0,      /* chunked SSD for prefill chunks of > 1 token, recurrence for 1 */
    LLM_SSM_MODE_RECURRENT = 1, /* always the token-by-token recurrence */
    LLM_SSM_MODE_CHUNKED = 2,   /* always chunked SSD */
};

typedef struct llm_context_params {
    int64_t n_ctx;      /* maximum tokens held (KV cache capacity) */
    int64_t n_chunk;    /* prefill processes at most this many tokens per forward pass */
    int logits_all;     /* keep logits of every position of the last llm_prefill call */
    enum llm_ssm_mode ssm_mode;
} llm_context_params;
llm_context_params llm_context_params_default(void);

nvl_status llm_context_init(llm_context **out, const llm_model *m, const llm_context_params *p,
                            nvl_err *err);
/* The same on a slot of a shared cache (an engine's; grown to p->n_ctx positions); the slot is
 * freed with the context. */
nvl_status llm_context_init_shared(llm_context **out, const llm_model *m, llm_cache *cache,
                                   const llm_context_params *p, nvl_err *err);
int llm_context_slot(const llm_context *ctx);
llm_cache *llm_context_cache(const llm_context *ctx);
/* After the slot was changed behind the context's back (llm_seq_copy into it): re-read its
 * position. The logits are the caller's to set (llm_logits_mut). */
void llm_context_sync(llm_context *ctx);
float *llm_logits_mut(llm_context *ctx);
void llm_context_free(llm_context *ctx);
void llm_context_reset(llm_context *ctx); /* empty sequence: zero states, no tokens */
int64_t llm_context_n_past(const llm_context *ctx);

/* Feeds n tokens. embd (n, n_embd) f32 may be NULL; where embd_mask[i] != 0 row i of embd
 * replaces the embedding of tokens[i] (the vision path's rows at <image> positions).
 * @return NVL_OK; NVL_ERR_LIMIT when the context is full; NVL_ERR_INVALID_ARG for a token id
 * outside the vocabulary. */
nvl_status llm_prefill(llm_context *ctx, const int32_t *tokens, int64_t n, const float *embd,
                       const uint8_t *embd_mask, nvl_err *err);
/* One token through the decode path (equal to llm_prefill of one token). */
nvl_status llm_decode(llm_context *ctx, int32_t token, nvl_err *err);
/* Logits (n_vocab) of the last position fed. Valid until the next prefill/decode/free. */
const float *llm_logits(const llm_context *ctx);
/* With logits_all: logits (n, n_vocab) of every position of the last llm_prefill call. */
const float *llm_logits_all(const llm_context *ctx, int64_t *n_rows);
/* Mamba state views for layer il (a Mamba layer): conv (conv_dim, d_conv) last inputs oldest
 * first; ssm (H, P, N). NULL for other layers. Valid while ctx lives. */
const float *llm_context_conv_state(const llm_context *ctx, int il);
const float *llm_context_ssm_state(const llm_context *ctx, int il);

/* Whole-sequence state (KV cache up to n_past, conv and SSM states, last logits) so many
 * questions about one document reuse its prefill. *out is freed with llm_state_free(). */
nvl_status llm_state_snapshot(const llm_context *ctx, llm_state **out, nvl_err *err);
nvl_status llm_state_restore(llm_context *ctx, const llm_state *s, nvl_err *err);
void llm_state_free(llm_state *s);
size_t llm_state_bytes(const llm_state *s);

// ---------------------------------------------------------------------------
// Sequences in slots and the batched step (what llm_context wraps)
//
//   llm_cache *c = NULL;  llm_workspace *ws = NULL;
//   llm_cache_init(&c, m, 4, 4096, &err);          // 4 slots of 4096 KV positions
//   llm_workspace_init(&ws, m, 256, LLM_SSM_MODE_AUTO, &err);   // up to 256 rows a step
//   int a, b;  llm_seq_alloc(c, &a, &err);  llm_seq_alloc(c, &b, &err);
//   llm_batch_seq bs[2] = {{.slot = a, .tokens = &tok, .n = 1, .logits = LLM_LOGITS_LAST, .out = la},
//                          {.slot = b, .tokens = prompt, .n = 100, .logits = LLM_LOGITS_LAST, .out = lb}};
//   llm_step(ws, c, bs, 2, &err);                 // one forward over 101 rows
//
// A cache lives on the model's backend. Slots hold nothing of each other: a step may carry
// any mix of decode rows (one token) and prefill chunks, each row sees only its own slot.
// Thread-safety: a cache and a workspace are used by one thread at a time.

/* n_slots slots of n_ctx KV positions each (grown by llm_cache_reserve). The KV cache is held
 * in the activation dtype (bf16 for a BF16 checkpoint: k and v are bf16 in the reference, so
 * this is exact and half the bytes of f32); conv and SSM states are f32 as in the reference. */
nvl_status llm_cache_init(llm_cache **out, const llm_model *m, int n_slots, int64_t n_ctx, nvl_err *err);
void llm_cache_free(llm_cache *c);
/* Grows every slot to at least n_ctx KV positions, keeping what they hold. */
nvl_status llm_cache_reserve(llm_cache *c, int64_t n_ctx, nvl_err *err);
int llm_cache_n_slots(const llm_cache *c);
int64_t llm_cache_n_ctx(const llm_cache *c);
/* A free slot, emptied (zero states, no tokens). NVL_ERR_LIMIT when all are taken. */
nvl_status llm_seq_alloc(llm_cache *c, int *slot, nvl_err *err);
void llm_seq_free(llm_cache *c, int slot);
void llm_seq_reset(llm_cache *c, int slot);
/* dst continues exactly as src would: states and KV rows [0, n_past) copied in backend memory. */
nvl_status llm_seq_copy(llm_cache *c, int dst, int src, nvl_err *err);
int64_t llm_seq_n_past(const llm_cache *c, int slot);
/* Bytes a slot's live state takes (states + KV rows held). */
size_t llm_seq_bytes(const llm_cache *c, int slot);
/* Bytes one sequence of n_tokens positions takes (its conv and SSM states and n_tokens KV rows):
 * what a scheduler counts against its memory budget. */
size_t llm_cache_seq_bytes_at(const llm_cache *c, int64_t n_tokens);
/* Host copies of one slot's states for layer il (NULL for other layer kinds): conv (Cc, Kc),
 * ssm (H, P, N). Valid until the next call on the cache. */
const float *llm_seq_conv_state(llm_cache *c, int slot, int il);
const float *llm_seq_ssm_state(llm_cache *c, int slot, int il);

/* Activations for steps of up to max_rows rows (one allocation on the model's backend). */
nvl_status llm_workspace_init(llm_workspace **out, const llm_model *m, int64_t max_rows, enum llm_ssm_mode mode,
                              nvl_err *err);
void llm_workspace_free(llm_workspace *ws);
int64_t llm_workspace_max_rows(const llm_workspace *ws);

/* Decode steps as graphs (design-gpu-batching.md §4.4, kernels.md §6). A step whose sequences
 * are all one-row decode sequences without vision rows runs in "graph form": its n sequences are
 * padded to the bucket llm_decode_bucket gives (padding rows: token 0, slot KERN_SLOT_NONE, which
 * the sequence ops skip), the step's tables go to the backend once (kern_step_tables), and the
 * forward, final norm and lm_head over all bucket rows run as one unit whose launches depend only
 * on the bucket. With LLM_GRAPHS_ON on a backend that can capture (CUDA), that unit is run
 * eagerly the first time a bucket is seen (so op scratch reaches its size), captured the second
 * time and replayed from then on; a graph is captured anew when the cache's KV rows moved
 * (llm_cache_reserve), another cache is used or the backend moved its memory; a bucket whose
 * capture fails runs eagerly from then on, with a warning. LLM_GRAPHS_PAD runs the graph form
 * eagerly (the CPU can check padding and the bucketed logits path without a device);
 * LLM_GRAPHS_OFF runs every step as given. Default: ON where the backend can capture, unless
 * NVL_CUDA_GRAPHS=0; OFF elsewhere. Results: the rows of real sequences are those of an
 * unpadded step wherever the matmul kernels give a row the same result whatever rows are beside
 * it (the CPU's decode kernels do; cuBLAS may pick another algorithm for another row count). */
enum llm_graphs { LLM_GRAPHS_OFF = 0, LLM_GRAPHS_PAD = 1, LLM_GRAPHS_ON = 2 };
#define LLM_GRAPH_MAX_ROWS 64 /* the largest bucket; bigger decode batches run as given */
/* Rows of the graph form for n decode sequences: 1, 2, 4, 8, then multiples of 8 (vLLM's capture
 * sizes), capped at cap (itself a bucket); 0 when n is 0 or above cap. cap <= LLM_GRAPH_MAX_ROWS. */
int llm_decode_bucket(int n, int cap);
/* Sets the mode (allocates the bucket's logits rows, (min(max_rows, 64), n_vocab), for PAD and ON;
 * frees captured graphs when leaving ON). ON on a backend that cannot capture behaves as PAD. */
nvl_status llm_workspace_set_graphs(llm_workspace *ws, enum llm_graphs mode, nvl_err *err);
typedef struct llm_graph_stats {
    int64_t graph_form_steps; /* steps run in graph form (padded to a bucket) */
    int64_t padded_rows;      /* padding rows those steps carried */
    int64_t eager_runs;       /* graph-form steps run eagerly (PAD, warm-up, failed capture) */
    int64_t captures;         /* graphs captured */
    int64_t replays;          /* graph-form steps run by launching a captured graph */
    int64_t capture_failures; /* captures that failed (that bucket then runs eagerly) */
} llm_graph_stats;
void llm_workspace_graph_stats(const llm_workspace *ws, llm_graph_stats *out);

enum llm_logits_want { LLM_LOGITS_NONE = 0, LLM_LOGITS_LAST = 1, LLM_LOGITS_ALL = 2 };

/* One sequence of a step: n rows at its slot's next positions. Row t is tokens[t], or, where
 * embd_mask[t] != 0, row t of embd (n, n_embd) host f32 (the projector's output for <image>),
 * or, with embd NULL, row t of embd_t: (n, n_embd) rows of any float dtype in the model
 * backend's memory (kern_act's layout), copied on the backend and rounded to the activation dtype
 * (on a device the vision rows never cross to the host).
 * out (host) receives n_vocab floats (LAST) or n x n_vocab (ALL). argmax (host, may be NULL)
 * receives the id of the largest logit of the last row (llm_sampler's greedy rule), found on the
 * backend (kern_argmax_rows): with LAST, out may then be NULL and no logits cross to the host (a
 * device returns 4 bytes instead of n_vocab floats). */
typedef struct llm_batch_seq {
    int slot;
    const int32_t *tokens;
    const float *embd;
    const nvl_tensor *embd_t;
    const uint8_t *embd_mask;
    int64_t n;
    enum llm_logits_want logits;
    float *out;
    int32_t *argmax;
} llm_batch_seq;

/* One forward over every sequence's rows together (decode rows and prefill chunks alike; the
 * matmuls take all rows at once), advancing each slot by its n. NVL_ERR_LIMIT when the rows
 * exceed the workspace or a slot's KV positions; NVL_ERR_INVALID_ARG for a token outside the
 * vocabulary, a free or repeated slot. On error the slots' contents are undefined. */
nvl_status llm_step(llm_workspace *ws, llm_cache *c, const llm_batch_seq *seqs, int n_seq, nvl_err *err);

/* The model on a checkpoint the caller opened (one handle per engine) and a backend (not NULL:
 * llm_model_init makes one, with the CPU fallback of kern_backend_fall_back_to_cpu). dir holds
 * config.json / generation_config.json. ck and be must outlive the model. */
nvl_status llm_model_load(llm_model **out, nvl_checkpoint *ck, kern_backend *be, const char *dir,
                          const llm_model_params *params, nvl_err *err);
kern_backend *llm_model_backend(const llm_model *m);

// ---------------------------------------------------------------------------
// ModelOpt FP8 / NVFP4 checkpoints (quant-formats.md; llm/quant.c)

/* One entry of a MIXED_PRECISION config's quantized_layers: module name -> its algorithm */
typedef struct llm_quant_layer {
    char *module;          /* e.g. "language_model.backbone.layers.0.mixer.in_proj" */
    char algo[32];         /* "FP8", "NVFP4", ... */
    int group_size;        /* 0 if absent */
} llm_quant_layer;

typedef struct llm_quant_config {
    int present;           /* a ModelOpt config was found */
    char source[64];       /* "hf_quant_config.json" or "config.json quantization_config" */
    char algo[32];         /* quant_algo: "FP8", "NVFP4", "MIXED_PRECISION", ... ("" if absent) */
    char kv_algo[16];      /* kv_cache_quant_algo ("" if none) */
    int group_size;        /* 16 for NVFP4, 0 if absent (config.json: the first config_groups
                              weights.group_size other than 16, else 16 if any) */
    char **exclude;        /* exclude_modules / ignore */
    int n_exclude;
    llm_quant_layer *layers; /* quantized_layers (MIXED_PRECISION); has_layers: the key was given */
    int n_layers, has_layers;
    char note[600];        /* where hf_quant_config.json and config.json's quantization_config
                              disagree (the first is the one read, as vLLM does); "" if not */
} llm_quant_config;
/* Reads dir/hf_quant_config.json, else config.json's quantization_config (quant_method must be
 * "modelopt"); neither: q->present = 0 and NVL_OK. A group_size that is not a positive whole
 * number, or a quantized_layers that is not an object of {quant_algo, group_size} objects, is
 * NVL_ERR_CONFIG naming the file and key. When both files carry a config, disagreements (method,
 * algorithm, exclude list) are described in q->note. */
nvl_status llm_quant_config_load(llm_quant_config *q, const char *dir, nvl_err *err);
void llm_quant_config_free(llm_quant_config *q);
/* 1 when the module (a weight name without ".weight") is excluded, by vLLM's rules: exact
 * match, an entry that is a substring (also of the name without "language_model."), an fnmatch
 * wildcard, "foo*" also matching "foo". */
int llm_quant_excluded(const llm_quant_config *q, const char *module);
/* Binds the Linear weight `name` (n_out x n_in logical) with what its dtype and companions say:
 * F32/BF16/F16 plain; F8_E4M3 -> FP8 with <module>.weight_scale and .input_scale; U8 -> NVFP4
 * with <module>.weight_scale (F8_E4M3, [n_out, n_in/16]), .weight_scale_2 and .input_scale.
 * Every scale is checked (present, shape, dtype, finite, > 0); errors name the tensor:
 * NVL_ERR_NOT_FOUND, NVL_ERR_SHAPE, NVL_ERR_DTYPE, NVL_ERR_FORMAT (a bad value),
 * NVL_ERR_CONFIG (quantized without a config, quantized although excluded, MIXED_PRECISION
 * without this module in quantized_layers or with another algorithm or group size there, or a
 * float weight with quantization scales beside it), NVL_ERR_UNSUPPORTED (pre_quant_scale: AWQ). */
nvl_status llm_bind_linear(const nvl_checkpoint *ck, const llm_quant_config *q, const char *name, int64_t n_out,
                           int64_t n_in, kern_weight *out, nvl_err *err);
const char *llm_quant_name(kern_quant q);
/* Per quantization kind, how many of the model's Linear layers use it (index kern_quant). */
void llm_model_quant_counts(const llm_model *m, int counts[3]);

// Sampling ------------------------------------------------------------------

typedef struct llm_sampler_params {
    float temperature; /* 0 = greedy */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off; 0: the most probable token only (the prefix always holds one, as
                          transformers' TopPLogitsWarper keeps min_tokens_to_keep = 1) */
    float min_p;       /* 0 = off: drop tokens with p < min_p * p_max */
    uint64_t seed;       /* 0 .. NVL_SEED_MAX where a user gives it (CLI, requests, jobs) */
} llm_sampler_params;
llm_sampler_params llm_sampler_params_default(void);

typedef struct llm_sampler llm_sampler;
nvl_status llm_sampler_init(llm_sampler **out, int64_t n_vocab, const llm_sampler_params *p,
                            nvl_err *err);
void llm_sampler_free(llm_sampler *s);
/* The largest seed a user can give: 2^53 - 1, so that every accepted seed is exact in JSON (a
 * double; 9007199254740993 reads as ...992) and the CLI, requests and jobs files take the same
 * range; a larger one is refused, not rounded. */
#define NVL_SEED_MAX 9007199254740991.0

/* Picks a token from logits (n_vocab). Deterministic for a given seed and call sequence. */
int32_t llm_sampler_sample(llm_sampler *s, const float *logits);

// Generation ----------------------------------------------------------------

/* Called for every generated token; return non-zero to stop (cancellation between steps). */
typedef int (*llm_token_fn)(int32_t token, const float *logits, void *user);

typedef struct llm_generate_params {
    int64_t max_tokens;
    const int32_t *stop_ids; /* generation stops after emitting one of these */
    int n_stop;
    llm_sampler_params sampler;
    llm_token_fn on_token;   /* may be NULL */
    void *user;
    volatile int *cancel;    /* may be NULL; checked between steps */
} llm_generate_params;
llm_generate_params llm_generate_params_default(void);

/* NVL_ERR_CONFIG naming how many of the n_vocab logits are NaN or infinite (a NaN weight, a
 * scale that overflows, a backend fault: they would sample id 0 and answer "<unk>" with
 * success), else NVL_OK. The generation loop and the engine check the logits after a prompt
 * and after each generated token. */
nvl_status llm_logits_check_finite(const float *logits, int64_t n_vocab, nvl_err *err);
/* The same after n_generated tokens of the answer (said so in the message); logits NULL: a
 * greedy step's id found on the backend was -1 (kern_argmax_rows: its row not finite). */
nvl_status llm_logits_check_finite_at(const float *logits, int64_t n_vocab, int64_t n_generated, nvl_err *err);
/* Prefills prompt (may be empty when the context already holds it) and generates up to
 * max_tokens tokens into out (capacity cap). *n_out gets the count. Stops at a stop id
 * (included in out), max_tokens, or cancellation (NVL_ERR_CANCELLED); non-finite logits after
 * the prompt, or after any token generated, are NVL_ERR_CONFIG (llm_logits_check_finite_at). */
nvl_status llm_generate(llm_context *ctx, const int32_t *prompt, int64_t n_prompt,
                        const llm_generate_params *p, int32_t *out, int64_t cap, int64_t *n_out,
                        nvl_err *err);

#ifdef __cplusplus
}
#endif

#endif // LLM_LLM_H
