/* Internal header: included only by llm/ sources. Model weights bound from the checkpoint and
 * the per-sequence context layout. Shapes outermost-first; Linear weights (out, in). */
#ifndef LLM_LLM_IMPL_H
#define LLM_LLM_IMPL_H

#include "base/safetensors.h"
#include "llm.h"

typedef struct llm_layer {
    char kind;            /* 'M', '*', '-' */
    nvl_tensor norm;      /* (C) block RMSNorm */
    /* Mamba-2 */
    nvl_tensor in_proj;   /* (d_in_proj, C) */
    nvl_tensor out_proj;  /* (C, d_inner) */
    nvl_tensor ssm_norm;  /* (d_inner) gated RMSNorm weight */
    float *conv_w;        /* (conv_dim, d_conv) f32 copy (small) */
    float *conv_b;        /* (conv_dim) or NULL */
    float *dt_bias;       /* (H) */
    float *A;             /* (H) = -exp(A_log) */
    float *D;             /* (H) */
    /* attention */
    nvl_tensor wq, wk, wv, wo; /* (n_head*D, C), (n_kv*D, C) x2, (C, n_head*D) */
    /* MLP */
    nvl_tensor up, down;  /* (n_ff, C), (C, n_ff) */
} llm_layer;

struct llm_model {
    llm_hparams hp;
    nvl_checkpoint *ck;   /* owns the mappings every nvl_tensor points into */
    nvl_tensor emb;       /* (n_vocab, C) */
    nvl_tensor norm_f;    /* (C) */
    nvl_tensor lm_head;   /* (n_vocab, C) */
    llm_layer *layers;    /* n_layer */
    int act_bf16;         /* round activations to bf16 at the reference's points */
    int32_t stop_ids[16];
    int n_stop;
};

struct llm_context {
    const llm_model *m;
    llm_context_params p;
    int64_t n_past;
    float **k_cache, **v_cache; /* per layer (n_ctx, n_kv*D) for attention layers, else NULL */
    float **conv_state;         /* per layer (conv_dim, d_conv) for Mamba layers */
    float **ssm_state;          /* per layer (H, P, N) */
    float *logits;              /* (n_vocab) last position */
    float *logits_all;          /* (logits_all_cap, n_vocab) when p.logits_all */
    int64_t logits_all_n, logits_all_cap;
    /* scratch sized for n_chunk tokens at init */
    float *x, *h, *big, *conv_in, *conv_out, *dt, *Bm, *Cm, *y, *att;
};

#endif // LLM_LLM_IMPL_H
