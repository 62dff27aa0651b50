/* Internal header: included only by llm/ sources. Model weights bound from the checkpoint and
 * the per-sequence context layout. Shapes outermost-first; Linear weights (out, in). */
#ifndef LLM_LLM_IMPL_H
#define LLM_LLM_IMPL_H

#include "base/safetensors.h"
#include "llm.h"
#include "ops.h"

typedef struct llm_layer {
    char kind;            /* enum llm_layer_kind */
    nvl_tensor norm;      /* (C) block RMSNorm */
    /* Mamba-2 */
    kern_weight in_proj;  /* (d_in_proj, C) */
    kern_weight out_proj; /* (C, d_inner) */
    nvl_tensor ssm_norm;  /* (d_inner) gated RMSNorm weight */
    nvl_tensor conv_w;    /* (conv_dim, d_conv) f32 copy (small) */
    nvl_tensor conv_b;    /* (conv_dim) f32 copy, or data NULL */
    nvl_tensor dt_bias;   /* (H) f32 */
    nvl_tensor A;         /* (H) f32 = -exp(A_log) */
    nvl_tensor D;         /* (H) f32 */
    /* attention */
    kern_weight wq, wk, wv, wo; /* (n_head*D, C), (n_kv*D, C) x2, (C, n_head*D) */
    /* MLP */
    kern_weight up, down; /* (n_ff, C), (C, n_ff) */
} llm_layer;

struct llm_model {
    llm_hparams hp;
    nvl_checkpoint *ck;   /* the mappings every stored tensor points into */
    int owns_ck;          /* opened by llm_model_init (closed with the model) */
    kern_backend *be;     /* where the weights are placed and the ops run */
    int owns_be;
    nvl_tensor emb;       /* (n_vocab, C) */
    nvl_tensor norm_f;    /* (C) */
    kern_weight lm_head;  /* (n_vocab, C) */
    llm_layer *layers;    /* n_layer */
    float *small;         /* the f32 copies of the small Mamba tensors, one block */
    nvl_dtype act;        /* activation dtype: BF16 where the reference keeps bf16, else F32 */
    llm_quant_config quant; /* the ModelOpt config (present = 0 for an unquantized checkpoint) */
    int32_t stop_ids[16];
    int n_stop;
};

/* Sequence slots: per Mamba layer conv and SSM state rows, per attention layer KV rows. */
struct llm_cache {
    const llm_model *m;
    kern_backend *be;
    int n_slots;
    int64_t n_ctx;         /* KV positions per slot */
    nvl_dtype kv_dtype;
    nvl_tensor *conv;      /* [n_layer] (S, Cc, Kc) f32 for Mamba layers */
    nvl_tensor *ssm;       /* [n_layer] (S, H, P, N) f32 for Mamba layers */
    nvl_tensor *k, *v;     /* [n_layer] (S, n_ctx, Hkv*D) for attention layers */
    uint8_t *used;         /* [n_slots] */
    int64_t *n_past;       /* [n_slots] */
    uint64_t gen;          /* bumped when the KV rows move (llm_cache_reserve): captured graphs refer to them */
    float *host_row;       /* staging for llm_seq_*_state on a device backend */
    size_t host_cap;
};

/* The step's activations, one backend allocation carved by llm_workspace_init. */
struct llm_workspace {
    const llm_model *m;
    kern_backend *be;
    int64_t max_rows;
    enum llm_ssm_mode ssm_mode;
    void *buf;
    nvl_tensor x, h;       /* (T, C) residual stream, normed / mixer output */
    nvl_tensor big;        /* (T, max(d_in_proj, QD + 2 KD, n_ff)) projections */
    nvl_tensor conv;       /* (T, conv_dim) conv output */
    nvl_tensor dt;         /* (T, H) */
    nvl_tensor ys;         /* (T, d_inner) F32 scan output */
    nvl_tensor yn;         /* (T, max(d_inner, QD)) gated-norm / attention output */
    nvl_tensor embd;       /* (T, C) vision rows */
    nvl_tensor lrows;      /* (LLM_LOGIT_BLOCK, C) rows whose logits are wanted */
    nvl_tensor logits;     /* (LLM_LOGIT_BLOCK, V) */
    kern_seq *seqs;        /* [max_rows] */
    int64_t *lrow;         /* [max_rows] rows whose logits are wanted */
    float **ldst;          /* [max_rows] where each of those goes (host), or NULL */
    int32_t **lam;         /* [max_rows] where each of those rows' argmax goes, or NULL */
    int32_t *ids;          /* [max_rows] */
    uint8_t *mask;         /* [max_rows] */
    /* decode steps in graph form (llm.h, llm_workspace_set_graphs) */
    enum llm_graphs graph_mode;
    int graph_cap;                               /* largest bucket: min(max_rows, LLM_GRAPH_MAX_ROWS) */
    void *gbuf;                                  /* backend allocation of glogits */
    nvl_tensor glogits;                          /* (graph_cap, V) logits of the bucket's rows */
    float *ghost;                                /* (graph_cap, V) host staging: one copy from a device a step */
    int32_t gids[LLM_GRAPH_MAX_ROWS];            /* the bucket rows' argmax */
    kern_graph *graph[LLM_GRAPH_MAX_ROWS + 1];   /* by bucket rows */
    int warm[LLM_GRAPH_MAX_ROWS + 1];            /* eager runs of each bucket */
    uint8_t gfail[LLM_GRAPH_MAX_ROWS + 1];       /* capture failed: eager from then on */
    const llm_cache *graph_cache;                /* the cache (and its gen) the graphs were captured with */
    uint64_t graph_gen;
    llm_graph_stats gstats;
};

/* One sequence: a slot of a cache (its own, or a shared one) stepped through llm_step. */
struct llm_context {
    const llm_model *m;
    llm_context_params p;
    llm_cache *cache;
    int owns_cache;
    llm_workspace *ws;
    int slot;
    int64_t n_past;             /* mirrors the slot's */
    float *logits;              /* (n_vocab) last position */
    float *logits_all;          /* (logits_all_cap, n_vocab) when p.logits_all */
    int64_t logits_all_n, logits_all_cap;
};

#define LLM_LOGIT_BLOCK 16 /* logits rows per lm_head pass: the register-tile matmul path */

#endif // LLM_LLM_IMPL_H
