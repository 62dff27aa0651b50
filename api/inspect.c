/* `nanovl inspect`: what a checkpoint is, and what is wrong with it. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api.h"
#include "backend.h"
#include "base/alloc.h"
#include "base/json_util.h"
#include "base/log.h"
#include "base/safetensors.h"
#include "llm.h"
#include "engine_impl.h"
#include "tokenizer.h"
#include "tokenreduce.h"
#include "vision.h"

typedef struct problems {
    FILE *out;
    int n;
} problems;

static void on_problem(void *user, nvl_status code, const char *msg) {
    problems *p = user;
    fprintf(p->out, "  problem: %s [%s]\n", msg, nvl_status_name(code));
    p->n++;
}

static char *config_path_for(const char *path) {
    struct stat s;
    char buf[4096];
    if (stat(path, &s) == 0 && S_ISDIR(s.st_mode))
        snprintf(buf, sizeof buf, "%s/config.json", path);
    else {
        const char *slash = strrchr(path, '/');
        if (slash)
            snprintf(buf, sizeof buf, "%.*s/config.json", (int)(slash - path), path);
        else
            snprintf(buf, sizeof buf, "config.json");
    }
    return nvl_strdup(buf);
}

/* The quantization config as the model reads it (hf_quant_config.json first, as vLLM does; the
 * headline once came from config.json alone: "none" for a checkpoint quantized by the other file) */
static void print_quant(FILE *out, const llm_quant_config *q, nvl_status qst, int any_quantized_dtype) {
    if (qst != NVL_OK) fprintf(out, "quantization: unreadable (below)\n");
    else if (!q->present) fprintf(out, "quantization: none\n");
    else fprintf(out, "quantization: ModelOpt %s (%s)%s\n", q->algo[0] ? q->algo : "(no quant_algo)", q->source,
                 any_quantized_dtype ? "" : ", but no tensor is stored as F8_E4M3 or packed U8: stale, the model runs unquantized");
    if (qst == NVL_OK && q->note[0]) fprintf(out, "  warning: %s\n", q->note);
}

static int counts_quantized(int counts[][3]) {
    int n = 0;
    for (int j = 0; j < 9; j++) n += counts[j][KERN_QUANT_FP8] + counts[j][KERN_QUANT_NVFP4];
    return n;
}

/* Per Linear kind, the scheme each layer's weight uses (decided per tensor, scales checked). */
static int inspect_linears(FILE *out, problems *pr, const nvl_checkpoint *ck, const llm_hparams *hp, const llm_quant_config *q,
                           nvl_status qst, const nvl_err *qerr) {
    if (qst != NVL_OK) {
        on_problem(pr, qerr->code, qerr->msg);
        return 0;
    }
    nvl_err e = {0};
    if (q->present)
        fprintf(out, "  quantization config: %s, quant_algo %s, %d excluded module pattern%s%s%s%s\n", q->source,
                q->algo[0] ? q->algo : "(none)", q->n_exclude, q->n_exclude == 1 ? "" : "s", q->kv_algo[0] ? ", KV cache " : "",
                q->kv_algo, q->kv_algo[0] ? " (not applied: nanovl keeps the KV cache in the activation dtype)" : "");
    const char *head = "";
    const char *prefix = llm_tensor_prefix(ck, &head);
    const int64_t n = prefix ? llm_tensor_table(hp, prefix, head, NULL, 0) : 0;
    llm_tensor_spec *specs = n ? nvl_malloc((size_t)n * sizeof *specs) : NULL;
    static const char *kinds[] = {"lm_head", "in_proj", "out_proj", "q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"};
    int counts[9][3] = {{0}}, ok = 1;
    if (specs) llm_tensor_table(hp, prefix, head, specs, n);
    for (int64_t i = 0; specs && i < n; i++) {
        int k = -1;
        for (int j = 0; j < 9; j++)
            if (strstr(specs[i].name, kinds[j])) k = j;
        if (k < 0 || specs[i].n_dims != 2 || !nvl_checkpoint_find(ck, specs[i].name)) continue;
        kern_weight w;
        if (llm_bind_linear(ck, q, specs[i].name, specs[i].shape[0], specs[i].shape[1], &w, &e) != NVL_OK) {
            on_problem(pr, e.code, e.msg);
            ok = 0;
            continue;
        }
        counts[k][w.quant]++;
    }
    /* tensors in the language model's namespace that nothing reads (an adapter's, a bias, a
       buffer of another variant): said, since the model runs without them */
    {
        int64_t n_unread = 0;
        char names[400] = "";
        size_t nl = 0;
        const size_t lp = prefix ? strlen(prefix) : 0, lh = strlen(head);
        static const char *const companions[] = {".weight_scale", ".weight_scale_2", ".input_scale", ".k_scale", ".v_scale"};
        for (int64_t i = 0; prefix && i < nvl_checkpoint_count(ck); i++) {
            const char *nm = nvl_checkpoint_entry(ck, i)->name;
            if (strncmp(nm, prefix, lp) && !(!strncmp(nm, head, lh) && !strncmp(nm + lh, "lm_head.", 8))) continue;
            int known = !strcmp(nm + lp, "embedding.weight");
            for (int64_t k = 0; !known && k < n; k++) known = !strcmp(nm, specs[k].name);
            const size_t l = strlen(nm);
            for (size_t c = 0; !known && c < sizeof companions / sizeof companions[0]; c++) {
                const size_t cl = strlen(companions[c]);
                known = l > cl && !strcmp(nm + l - cl, companions[c]);
            }
            if (known) continue;
            if (n_unread++ < 3 && nl < sizeof names)
                nl += (size_t)snprintf(names + nl, sizeof names - nl, "%s'%.100s'", nl ? ", " : "", nm);
        }
        if (n_unread)
            fprintf(out, "  warning: %lld tensor%s of the language model that nanovl does not read: %s%s\n", (long long)n_unread,
                    n_unread == 1 ? "" : "s", names, n_unread > 3 ? ", ..." : "");
    }
    if (q->present && ok && !counts_quantized(counts))
        fprintf(out, "  warning: %s says quant_algo %s but no linear layer is quantized: the config is stale (the model "
                "runs unquantized)\n", q->source, q->algo[0] ? q->algo : "(none)");
    fprintf(out, "  linear layers:");
    for (int j = 0; j < 9; j++)
        for (int t = 0; t < 3; t++)
            if (counts[j][t])
                fprintf(out, " %s %s x%d;", kinds[j], t == KERN_QUANT_FP8 ? "FP8" : t == KERN_QUANT_NVFP4 ? "NVFP4" : "unquantized",
                        counts[j][t]);
    fprintf(out, "\n");
    nvl_free(specs);
    return ok;
}

nvl_status api_inspect(const char *path, FILE *out, int *usable, nvl_err *err) {
    *usable = 0;
    nvl_checkpoint *ck = NULL;
    cJSON *root = NULL;
    llm_quant_config q = {0}; /* read once: the headline and the per-layer check */
    char *cfg_path = config_path_for(path);
    if (!cfg_path) return nvl_err_set(err, NVL_ERR_NOMEM, "out of memory");
    nvl_status st = nvl_checkpoint_open(&ck, path, err);
    if (st != NVL_OK) goto done;
    st = nvl_json_load_file(&root, cfg_path, NVL_JSON_MAX_BYTES, err);
    if (st != NVL_OK) goto done;

    problems pr = {out, 0};
    char dir[4096]; /* the folder of config.json: the tokenizer's and the vision config's */
    snprintf(dir, sizeof dir, "%s", cfg_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    const cJSON *arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const cJSON *a0 = cJSON_IsArray(arch) ? cJSON_GetArrayItem(arch, 0) : NULL;
    fprintf(out, "checkpoint: %s\n", path);
    fprintf(out, "architecture: %s (model_type %s)\n",
            cJSON_IsString(a0) ? a0->valuestring : "unknown",
            cJSON_IsString(mt) ? mt->valuestring : "unknown");
    /* bytes by dtype */
    uint64_t by_dtype[NVL_DTYPE_COUNT] = {0};
    int64_t count_dtype[NVL_DTYPE_COUNT] = {0};
    for (int64_t i = 0; i < nvl_checkpoint_count(ck); i++) {
        const nvl_st_entry *e = nvl_checkpoint_entry(ck, i);
        by_dtype[e->dtype] += e->end - e->begin;
        count_dtype[e->dtype]++;
    }
    char hb[64];
    nvl_human_bytes(hb, sizeof hb, (double)nvl_checkpoint_data_bytes(ck));
    fprintf(out, "files: %d safetensors shard%s, %lld tensors, %s of tensor data\n",
            nvl_checkpoint_n_shards(ck), nvl_checkpoint_n_shards(ck) == 1 ? "" : "s",
            (long long)nvl_checkpoint_count(ck), hb);
    fprintf(out, "bytes by dtype:");
    for (int t = 1; t < NVL_DTYPE_COUNT; t++)
        if (count_dtype[t]) {
            nvl_human_bytes(hb, sizeof hb, (double)by_dtype[t]);
            fprintf(out, " %s %s (%lld tensors);", nvl_dtype_name((nvl_dtype)t), hb,
                    (long long)count_dtype[t]);
        }
    fprintf(out, "\n");
    nvl_err qerr = {0};
    const nvl_status qst = llm_quant_config_load(&q, dir, &qerr);
    /* (a config beside weights that are all float: said in the headline, which named the scheme alone) */
    print_quant(out, &q, qst, count_dtype[NVL_DTYPE_F8_E4M3] + count_dtype[NVL_DTYPE_U8] > 0);

    /* Language model */
    llm_hparams hp;
    nvl_err e2 = {0};
    int lm_ok = 0;
    fprintf(out, "language model:\n");
    if (llm_hparams_from_json(&hp, root, cfg_path, &e2) != NVL_OK) {
        on_problem(&pr, e2.code, e2.msg);
    } else {
        fprintf(out, "  layers: %lld (%d Mamba-2, %d attention, %d MLP)\n", (long long)hp.n_layer,
                hp.n_mamba, hp.n_attn, hp.n_mlp);
        fprintf(out, "  pattern: %s\n", hp.pattern);
        fprintf(out, "  hidden %lld, vocab %lld, ffn %lld, eps %g, tied embeddings %s\n",
                (long long)hp.n_embd, (long long)hp.n_vocab, (long long)hp.n_ff, hp.eps,
                hp.tie_embeddings ? "yes" : "no");
        fprintf(out, "  attention: %lld heads, %lld kv heads, head_dim %lld, no positional encoding\n",
                (long long)hp.n_head, (long long)hp.n_head_kv, (long long)hp.head_dim);
        fprintf(out, "  mamba-2: %lld heads x %lld, state %lld, groups %lld, conv %lld, chunk %lld\n",
                (long long)hp.ssm_n_head, (long long)hp.ssm_head_dim, (long long)hp.d_state,
                (long long)hp.n_group, (long long)hp.d_conv, (long long)hp.chunk_size);
        int32_t eos[16];
        int n_eos = 0;
        nvl_err eg = {0};
        const int gen_ok = llm_generation_config_eos(dir, hp.n_vocab, eos, 16, &n_eos, &eg) == NVL_OK;
        if (!gen_ok) on_problem(&pr, eg.code, eg.msg); /* (the model would not load: unusable) */
        int64_t n_exp = 0, n_bound = 0;
        nvl_status cs = llm_check_tensors(ck, &hp, on_problem, &pr, &n_exp, &n_bound, NULL);
        fprintf(out, "  tensors: expected %lld, bound %lld\n", (long long)n_exp, (long long)n_bound);
        lm_ok = cs == NVL_OK;
        if (lm_ok) lm_ok = inspect_linears(out, &pr, ck, &hp, &q, qst, &qerr);
        lm_ok = lm_ok && gen_ok;
    }

    /* Vision tower: declared by a vision_config or by vision tensors */
    int has_vision = nvl_json_obj(root, "vision_config") != NULL;
    for (int64_t i = 0; !has_vision && i < nvl_checkpoint_count(ck); i++)
        has_vision = !strncmp(nvl_checkpoint_entry(ck, i)->name, "vision_model.", 13);
    int vis_ok = 1;
    if (has_vision) {
        vision_vl_config vc;
        fprintf(out, "vision:\n");
        nvl_err e3 = {0};
        if (vision_vl_config_from_json(&vc, root, cfg_path, &e3) != NVL_OK ||
            vision_vit_shape_from_checkpoint(&vc, ck, &e3) != NVL_OK) {
            on_problem(&pr, e3.code, e3.msg);
            vis_ok = 0;
        } else {
            /* every tensor the vision stage binds, and the projector's against the ViT and the LM
               (on a CPU backend of its own: only views of the checkpoint, nothing uploaded) */
            kern_backend *cpu = NULL;
            vision_model *vm = NULL;
            tokred_projector proj;
            if (kern_backend_init(&cpu, "cpu", &e3) != NVL_OK || vision_model_load(&vm, ck, cpu, dir, &e3) != NVL_OK ||
                tokred_projector_bind(&proj, ck, cpu, 4 * vc.vit_width, lm_ok ? hp.n_embd : 0, &e3) != NVL_OK) {
                on_problem(&pr, e3.code, e3.msg);
                vis_ok = 0;
            }
            vision_model_free(vm);
            kern_backend_free(cpu);
            fprintf(out, "  RADIO ViT: width %lld, depth %lld, %lld heads, mlp %lld, LayerNorm eps %g, %lld prefix tokens, "
                         "position grid %lldx%lld\n",
                    (long long)vc.vit_width, (long long)vc.vit_depth, (long long)vc.vit_heads, (long long)vc.vit_mlp_dim,
                    vc.vit_ln_eps,
                    (long long)vc.vit_num_prefix, (long long)vc.vit_pos_grid,
                    (long long)vc.vit_pos_grid);
            fprintf(out, "  tiles: %lldx%lld px, patch %lld, up to %lld tiles%s, pixel shuffle %s "
                         "(ratio %g), EVS rate %g\n",
                    (long long)vc.image_size, (long long)vc.image_size, (long long)vc.patch_size,
                    (long long)vc.max_num_tiles, vc.use_thumbnail ? " + thumbnail" : "",
                    vc.ps_version, vc.downsample_ratio, vc.video_pruning_rate);
        }
    } else {
        fprintf(out, "vision: none (text-only checkpoint)\n");
    }
    /* the tokenizer beside config.json, and for a VL checkpoint the prompt format's tokens, whole */
    {
        llm_tokenizer *tok = NULL;
        nvl_err e4 = {0};
        const nvl_status ts = llm_tokenizer_load(&tok, dir, &e4);
        if (ts == NVL_ERR_NOT_FOUND) { /* (generate takes ids without one) */
            fprintf(out, "tokenizer: none beside config.json (ask, ocr, batch and serve need one)\n");
        } else if (ts != NVL_OK || (has_vision && llm_tokenizer_check_vl(tok, &e4) != NVL_OK) ||
                   (lm_ok && llm_tokenizer_check_vocab(tok, hp.n_vocab, dir, &e4) != NVL_OK)) {
            fprintf(out, "tokenizer:\n");
            on_problem(&pr, e4.code, e4.msg);
            vis_ok = 0;
        } else {
            fprintf(out, "tokenizer: %lld ids%s\n", (long long)llm_tokenizer_vocab_size(tok),
                    has_vision ? ", the prompt format's special tokens whole" : "");
        }
        llm_tokenizer_free(tok);
    }
    /* the chat template (chat_template.jinja, else tokenizer_config.json's), loaded and probed as
       the engine does: ask, ocr, batch and serve refused a tokenizer_config.json inspect never read
       (a review), and set a template aside that inspect did not mention */
    {
        char *tmpl = NULL;
        cJSON *special = NULL;
        nvl_err e5 = {0};
        char why[NVL_ERR_MSG_MAX + 64] = "";
        nvl_status cs = llm_chat_template_load(dir, &tmpl, &special, &e5);
        if (cs == NVL_OK && tmpl) cs = api_chat_template_probe(tmpl, special, why, sizeof why, &e5);
        if (cs != NVL_OK) { /* (the engine refuses to open: unusable) */
            fprintf(out, "chat template:\n");
            on_problem(&pr, e5.code, e5.msg);
            vis_ok = 0;
        } else if (!tmpl) {
            fprintf(out, "chat template: none in the checkpoint (nanovl's built-in Nemotron Nano V2 format)\n");
        } else if (why[0]) {
            fprintf(out, "chat template: the checkpoint's is not used (%s); prompts use nanovl's built-in Nemotron "
                         "Nano V2 format\n", why);
        } else {
            fprintf(out, "chat template: the checkpoint's\n");
        }
        nvl_free(tmpl);
        cJSON_Delete(special);
    }
    /* where the models would run (NVL_BACKEND / --backend, else auto: the device when there is one
       and the tensors fit it, as kern_backend_init_models and the loaders choose), and whether they fit */
    {
        const char *bv = getenv("NVL_BACKEND");
        const int asked = bv && !strcmp(bv, "cuda"), cpu = bv && !strcmp(bv, "cpu");
        const size_t need = nvl_checkpoint_data_bytes(ck);
        if (asked || (!cpu && kern_cuda_device_count(NULL) > 0)) {
            kern_backend *cb = NULL;
            nvl_err cerr = {0};
            size_t fr = 0, tot = 0;
            if (kern_backend_init(&cb, "cuda", &cerr) == NVL_OK && kern_backend_mem_info(cb, &fr, &tot, NULL) == NVL_OK) {
                const int fits = fr >= need;
                char fb[32], nb[32];
                fprintf(out, "runs on: %s%s; %s free, the tensors take %s%s\n",
                        asked || fits ? kern_backend_description(cb) : "cpu", asked ? "" : fits ? " (auto)" : " (auto: they do not fit",
                        nvl_human_bytes(fb, sizeof fb, (double)fr), nvl_human_bytes(nb, sizeof nb, (double)need),
                        fits ? "" : asked ? " (they do not fit)" : ")");
            } else if (asked) {
                fprintf(out, "runs on: cuda was asked for, but: %s\n", cerr.msg[0] ? cerr.msg : "the device reports no memory");
            } else {
                fprintf(out, "runs on: cpu (auto: the CUDA device is unusable: %s)\n", cerr.msg[0] ? cerr.msg : "no memory reported");
            }
            kern_backend_free(cb);
        } else {
            fprintf(out, "runs on: cpu%s\n", cpu ? " (NVL_BACKEND / --backend)" : "");
        }
    }
    if (pr.n == 0) fprintf(out, "problems: none\n");
    else fprintf(out, "problems: %d\n", pr.n);
    *usable = lm_ok && vis_ok;
    st = NVL_OK;
done:
    llm_quant_config_free(&q);
    cJSON_Delete(root);
    nvl_checkpoint_close(ck);
    nvl_free(cfg_path);
    return st;
}
