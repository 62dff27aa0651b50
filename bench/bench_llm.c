/* bench_llm: language-model speed on the models' backend (NVL_BACKEND) with a synthetic
 * checkpoint of any shape.
 *
 *   bench_llm [--shape tiny|mid|12b] [--prompt N] [--decode N] [--dir DIR] [--keep]
 *             [--seqs 1,4,16] [--quant bf16|fp8|nvfp4] [--chunk N] [--context N] [--sparse]
 *
 * --chunk: prefill chunk (tokens per forward pass, default 128); the timed prefill is the
 * prompt. --context N: after it, the context is filled (untimed) to N tokens before the timed
 * decode (the "decode at 4K of context"). --sparse: the large Linear weights are left as
 * holes in model.safetensors (zeros, no disk written, seconds for the 12B shape); decode speed
 * does not depend on the values, GEMMs on zeros may run a little faster than on real weights
 * (less power), so prefill fractions from a sparse file are upper bounds.
 *
 * On a device backend (NVL_BACKEND=cuda) the line also carries the device's own rates measured
 * in the same run (kern_backend_measure: device copy bandwidth, BF16 GEMM rate), decode GB/s
 * (weights + KV rows + Mamba states read and written per token) as a fraction of the copy
 * bandwidth, prefill TFLOP/s (2 x the matmul weights per token, plus the attention's products;
 * the SSD scan left out) as a fraction of the GEMM rate, load time (upload included) and device
 * memory in use. Decode steps run as CUDA graphs unless NVL_CUDA_GRAPHS=0.
 *
 * --quant writes the synthetic checkpoint with every Linear but lm_head in FP8 or NVFP4 as
 * ModelOpt exports it (hf_quant_config.json, scales), so the three formats of one shape compare.
 *
 * With --seqs, for each count S: S sequences in S slots of one cache, each prefilled with its
 * own prompt (one llm_step per sequence chunk), then decoded together, one llm_step of S rows
 * per token. Prints one line per count: "seqs=S prefill_tok_s=X decode_tok_s=Y step_ms=Z",
 * decode_tok_s being the total over the S sequences (S / median step time).
 *
 * With --vl FROM (a VL checkpoint, e.g. tests/data/vl_tiny): also writes DIR-vl, a whole VL
 * checkpoint `nanovl` can serve: this language model (model.safetensors linked), FROM's vision
 * tower, tokenizer and generation config, and FROM's projector with its last layer (mlp1.3)
 * redrawn for this hidden size; prints its path and exits. For engine-level benchmarks (the
 * scheduler: `nanovl bench --model DIR-vl --concurrency 1,4,16`). With --radio-h the vision tower is
 * not FROM's but a synthetic C-RADIOv2-H (width 1280, 32 blocks, 16 heads, 512-pixel tiles) with
 * the real projector (5120 -> 20480 -> hidden), random BF16: with --shape 12b the published
 * model's shape end to end, for time-to-first-token figures (`nanovl bench --model DIR-vl`).
 *
 * Writes config.json + model.safetensors with random BF16 weights (streamed to disk, so even
 * the real 12B shape needs no RAM for writing), loads it through the normal loader (mmap),
 * measures memory read bandwidth (multi-threaded sum over 1 GiB), then prefill tokens/s and
 * decode tokens/s, and reports decode GB/s (weight bytes read per token / time per token) as a
 * fraction of the measured bandwidth, plus peak RSS. Excluded: tokenization, sampling (greedy
 * argmax only), file writing. Random weights run exactly as fast as real ones (dense model).
 */
#include "bench_util.h"
#include "backend.h"
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "../tests/st_writer.h"
#include "base/alloc.h"
#include "base/json_util.h"
#include "base/safetensors.h"
#include "cpu/cpu_ops.h"
#include "llm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct shape {
    const char *name, *pattern;
    int64_t vocab, hidden, heads, kv, head_dim, ffn, m_heads, m_head_dim, state, groups;
} shape;

static const shape k_shapes[] = {
    {"tiny", "M-*-M", 512, 128, 4, 2, 32, 256, 4, 32, 16, 2},
    /* ~1.1 B parameters: 5120->2560 wide, 12 layers with the real mix of kinds */
    {"mid", "M-M-M*-M-M-", 32768, 2560, 20, 4, 128, 10240, 64, 80, 128, 8},
    {"12b", "M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-", 131072, 5120, 40, 8,
     128, 20480, 128, 80, 128, 8},
};


/* ---- synthetic checkpoint ---------------------------------------------------------------- */

typedef struct tensor_out {
    char name[160];
    int n_dims;
    int64_t shape[3];
} tensor_out;

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static uint16_t rand_bf16(float scale) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    float u = (float)((double)(g_rng >> 40) / 16777216.0 * 2.0 - 1.0);
    return nvl_f32_to_bf16(u * scale);
}

/* 0: BF16; 1: FP8; 2: NVFP4 (--quant): every Linear but lm_head quantized as ModelOpt exports it,
 * random codes with valid scales (a dense model runs the same speed on any values). */
static int g_quant;
static int g_sparse; /* --sparse */
static int g_radio_h; /* --radio-h (with --vl) */

static int is_quant_linear(const llm_tensor_spec *sp) {
    return g_quant && sp->n_dims == 2 && !strstr(sp->name, "embeddings") && !strstr(sp->name, "lm_head");
}

static int write_checkpoint(const char *dir, const shape *s) {
    char path[4096];
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fprintf(f,
            "{\"model_type\": \"nemotron_h\", \"architectures\": [\"NemotronHForCausalLM\"], "
            "\"vocab_size\": %lld, \"hidden_size\": %lld, \"hybrid_override_pattern\": \"%s\", "
            "\"num_attention_heads\": %lld, \"num_key_value_heads\": %lld, \"head_dim\": %lld, "
            "\"intermediate_size\": %lld, \"mamba_num_heads\": %lld, \"mamba_head_dim\": %lld, "
            "\"ssm_state_size\": %lld, \"n_groups\": %lld, \"conv_kernel\": 4, "
            "\"use_conv_bias\": true, \"chunk_size\": 128, \"layer_norm_epsilon\": 1e-5, "
            "\"tie_word_embeddings\": false}\n",
            (long long)s->vocab, (long long)s->hidden, s->pattern, (long long)s->heads,
            (long long)s->kv, (long long)s->head_dim, (long long)s->ffn, (long long)s->m_heads,
            (long long)s->m_head_dim, (long long)s->state, (long long)s->groups);
    fclose(f);
    /* tensor list from the model's own table */
    char cfgpath[4096];
    snprintf(cfgpath, sizeof cfgpath, "%s/config.json", dir);
    llm_hparams hp;
    {
        cJSON *root = NULL;
        nvl_err err = {0};
        if (nvl_json_load_file(&root, cfgpath, 1 << 20, &err) != NVL_OK ||
            llm_hparams_from_json(&hp, root, cfgpath, &err) != NVL_OK) {
            fprintf(stderr, "config: %s\n", err.msg);
            return 0;
        }
        cJSON_Delete(root);
    }
    int64_t n = llm_tensor_table(&hp, "backbone.", "", NULL, 0);
    llm_tensor_spec *specs = malloc((size_t)n * sizeof *specs);
    llm_tensor_table(&hp, "backbone.", "", specs, n);
    /* header */
    size_t cap = (size_t)n * 1024 + 64, o = 0;
    char *h = malloc(cap);
    uint64_t off = 0;
    o += (size_t)snprintf(h + o, cap - o, "{");
    for (int64_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < specs[i].n_dims; d++) numel *= (uint64_t)specs[i].shape[d];
        const int q = is_quant_linear(&specs[i]);
        const int64_t N = specs[i].shape[0], K = specs[i].shape[1];
        const char *dt = !q ? "BF16" : g_quant == 1 ? "F8_E4M3" : "U8";
        const uint64_t bytes = !q ? numel * 2 : g_quant == 1 ? numel : numel / 2;
        o += (size_t)snprintf(h + o, cap - o, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", specs[i].name, dt);
        for (int d = 0; d < specs[i].n_dims; d++)
            o += (size_t)snprintf(h + o, cap - o, "%s%lld", d ? "," : "",
                                  (long long)(q && g_quant == 2 && d == 1 ? specs[i].shape[d] / 2 : specs[i].shape[d]));
        o += (size_t)snprintf(h + o, cap - o, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                              (unsigned long long)(off + bytes));
        off += bytes;
        if (q) { /* the scales follow their weight in the data section */
            char mod[160];
            snprintf(mod, sizeof mod, "%.*s", (int)(strlen(specs[i].name) - 7), specs[i].name);
            const char *sc[3] = {"input_scale", g_quant == 1 ? "weight_scale" : "weight_scale_2", NULL};
            for (int k = 0; k < 2; k++) {
                o += (size_t)snprintf(h + o, cap - o, ",\"%s.%s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[%llu,%llu]}",
                                      mod, sc[k], (unsigned long long)off, (unsigned long long)(off + 4));
                off += 4;
            }
            if (g_quant == 2) {
                o += (size_t)snprintf(h + o, cap - o, ",\"%s.weight_scale\":{\"dtype\":\"F8_E4M3\",\"shape\":[%lld,%lld],"
                                      "\"data_offsets\":[%llu,%llu]}", mod, (long long)N, (long long)(K / 16),
                                      (unsigned long long)off, (unsigned long long)(off + (uint64_t)(N * (K / 16))));
                off += (uint64_t)(N * (K / 16));
            }
        }
    }
    o += (size_t)snprintf(h + o, cap - o, "}");
    while (o % 8) h[o++] = ' ';
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    if (!f) return 0;
    uint64_t hl = o;
    fwrite(&hl, 8, 1, f);
    fwrite(h, 1, o, f);
    enum { BUF = 1 << 20 };
    uint16_t *buf = malloc(BUF * sizeof *buf);
    for (int64_t i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < specs[i].n_dims; d++) numel *= (uint64_t)specs[i].shape[d];
        const char *nm = specs[i].name;
        if (is_quant_linear(&specs[i])) {
            const int64_t N = specs[i].shape[0], K = specs[i].shape[1];
            uint64_t bytes = g_quant == 1 ? numel : numel / 2;
            uint8_t *b8 = (uint8_t *)buf;
            if (g_sparse) { /* a hole: zero codes */
                if (fseeko(f, (off_t)bytes, SEEK_CUR) != 0) return 0;
                bytes = 0;
            }
            while (bytes) {
                size_t c = bytes < BUF ? (size_t)bytes : BUF;
                for (size_t j = 0; j < c; j++) { /* finite codes only (0x7f/0xff are E4M3 NaN) */
                    uint8_t v = (uint8_t)(rand_bf16(1.0f) >> 3);
                    b8[j] = g_quant == 1 && (v & 0x7f) == 0x7f ? 0x38 : v;
                }
                fwrite(b8, 1, c, f);
                bytes -= c;
            }
            const float is = g_quant == 1 ? 8.0f / 448.0f : 8.0f / 2688.0f, ws = g_quant == 1 ? 0.02f / 448.0f : 0.02f / 2688.0f;
            fwrite(&is, 4, 1, f);
            fwrite(&ws, 4, 1, f);
            if (g_quant == 2) {
                uint64_t nb = (uint64_t)(N * (K / 16));
                memset(b8, 0x38, BUF); /* block scale 1.0 */
                while (nb) {
                    size_t c = nb < BUF ? (size_t)nb : BUF;
                    fwrite(b8, 1, c, f);
                    nb -= c;
                }
            }
            continue;
        }
        int is_norm = strstr(nm, "norm") != NULL, is_alog = strstr(nm, "A_log") != NULL;
        float scale = specs[i].n_dims >= 2 ? 0.02f : 0.5f;
        if (g_sparse && specs[i].n_dims >= 2 && numel >= ((uint64_t)1 << 20)) { /* a hole: zeros */
            if (fseeko(f, (off_t)(numel * 2), SEEK_CUR) != 0) return 0;
            numel = 0;
        }
        while (numel) {
            size_t c = numel < BUF ? (size_t)numel : BUF;
            for (size_t j = 0; j < c; j++)
                buf[j] = is_norm ? nvl_f32_to_bf16(1.0f) : is_alog ? nvl_f32_to_bf16(0.5f) : rand_bf16(scale);
            fwrite(buf, 2, c, f);
            numel -= c;
        }
    }
    free(buf);
    free(h);
    free(specs);
    /* a hole at the end is not part of the file until it is sized */
    if (g_sparse && (fflush(f) != 0 || ftruncate(fileno(f), (off_t)(8 + o + off)) != 0)) return 0;
    if (fclose(f) != 0) return 0;
    if (g_quant) {
        snprintf(path, sizeof path, "%s/hf_quant_config.json", dir);
        FILE *qf = fopen(path, "w");
        if (!qf) return 0;
        fprintf(qf, "{\"producer\": {\"name\": \"modelopt\"}, \"quantization\": {\"quant_algo\": \"%s\", "
                    "\"exclude_modules\": [\"lm_head\", \"backbone.embeddings\"]}}\n", g_quant == 1 ? "FP8" : "NVFP4");
        return fclose(qf) == 0;
    }
    return 1;
}

/* ---- a VL checkpoint around the synthetic LM (--vl) -------------------------------------- */

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb");
    if (!a) return 0;
    FILE *b = fopen(to, "wb");
    if (!b) {
        fclose(a);
        return 0;
    }
    char buf[65536];
    size_t n;
    int ok = 1;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0) ok &= fwrite(buf, 1, n, b) == n;
    fclose(a);
    return fclose(b) == 0 && ok;
}

static int write_vl(const char *dir, const char *from, char *out, size_t out_n) {
    char p1[4200], p2[4200];
    snprintf(out, out_n, g_radio_h ? "%s-vl-radio-h" : "%s-vl", dir);
    mkdir(out, 0755);
    nvl_err err = {0};
    /* config: FROM's with this model's llm_config */
    cJSON *vl = NULL, *lm = NULL;
    snprintf(p1, sizeof p1, "%s/config.json", from);
    snprintf(p2, sizeof p2, "%s/config.json", dir);
    if (nvl_json_load_file(&vl, p1, 1 << 20, &err) != NVL_OK || nvl_json_load_file(&lm, p2, 1 << 20, &err) != NVL_OK) {
        fprintf(stderr, "--vl: %s\n", err.msg);
        cJSON_Delete(vl);
        return 0;
    }
    const cJSON *hs = cJSON_GetObjectItemCaseSensitive(lm, "hidden_size");
    const int64_t hidden = cJSON_IsNumber(hs) ? (int64_t)hs->valuedouble : 0;
    cJSON_ReplaceItemInObjectCaseSensitive(vl, "llm_config", lm);
    /* RADIO-H: the real tower's config (model.md §3) */
    const int64_t RW = 1280, RL = 32, RH = 16, RS = 512, RP = 16, RT = 128, PH = 20480;
    if (g_radio_h) {
        cJSON *vcfg = cJSON_CreateObject(), *args = cJSON_CreateObject();
        cJSON_AddStringToObject(args, "model", "vit_huge_patch16_224");
        cJSON_AddItemToObject(vcfg, "args", args);
        cJSON_AddNumberToObject(vcfg, "hidden_size", (double)RW);
        cJSON_AddNumberToObject(vcfg, "num_attention_heads", (double)RH);
        cJSON_AddNumberToObject(vcfg, "num_hidden_layers", (double)RL);
        cJSON_AddNumberToObject(vcfg, "patch_size", (double)RP);
        cJSON_AddNumberToObject(vcfg, "layer_norm_eps", 1e-6);
        cJSON_ReplaceItemInObjectCaseSensitive(vl, "vision_config", vcfg);
        cJSON_ReplaceItemInObjectCaseSensitive(vl, "force_image_size", cJSON_CreateNumber((double)RS));
        cJSON_ReplaceItemInObjectCaseSensitive(vl, "vit_hidden_size", cJSON_CreateNumber((double)RW));
        cJSON_ReplaceItemInObjectCaseSensitive(vl, "projector_hidden_size", cJSON_CreateNumber((double)PH));
    }
    snprintf(p1, sizeof p1, "%s/config.json", out);
    char *txt = cJSON_Print(vl);
    FILE *f = fopen(p1, "w");
    int ok = f && txt && fputs(txt, f) >= 0;
    if (f) ok &= fclose(f) == 0;
    free(txt);
    cJSON_Delete(vl);
    /* the LM's weights, linked */
    char absdir[PATH_MAX];
    if (!realpath(dir, absdir)) return 0;
    snprintf(p1, sizeof p1, "%s/model.safetensors", absdir);
    snprintf(p2, sizeof p2, "%s/model.safetensors", out);
    unlink(p2);
    ok &= symlink(p1, p2) == 0;
    /* FROM's vision tower and projector (mlp1.3 redrawn: proj_hidden -> this hidden size) */
    nvl_checkpoint *ck = NULL;
    if (!ok || nvl_checkpoint_open(&ck, from, &err) != NVL_OK) {
        fprintf(stderr, "--vl: %s\n", err.msg[0] ? err.msg : "cannot write the config");
        return 0;
    }
    st_writer w;
    st_writer_init(&w);
    cJSON *map = cJSON_CreateObject();
    float *drawn = NULL;
    uint16_t *radio = NULL; /* --radio-h: every synthetic tensor, back to back */
    if (g_radio_h) {
        struct {
            char name[128];
            int nd;
            int64_t s[3];
        } rs[16 + 12 * 32];
        int n = 0;
#define RADD(NM, ND, A, B, C)                                                                          \
    do {                                                                                              \
        snprintf(rs[n].name, sizeof rs[n].name, "%s", NM);                                             \
        rs[n].nd = ND, rs[n].s[0] = A, rs[n].s[1] = B, rs[n].s[2] = C;                                 \
        n++;                                                                                          \
    } while (0)
        RADD("vision_model.radio_model.model.patch_generator.embedder.weight", 2, RW, 3 * RP * RP, 0);
        RADD("vision_model.radio_model.model.patch_generator.pos_embed", 3, 1, RT * RT, RW);
        RADD("vision_model.radio_model.model.patch_generator.cls_token.token", 2, 8, RW, 0);
        static const char *bn[] = {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "attn.qkv.weight",
                                   "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "mlp.fc1.weight",
                                   "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};
        const int64_t bs[12][2] = {{RW, 0}, {RW, 0}, {RW, 0}, {RW, 0}, {3 * RW, RW}, {3 * RW, 0},
                                   {RW, RW}, {RW, 0}, {4 * RW, RW}, {4 * RW, 0}, {RW, 4 * RW}, {RW, 0}};
        for (int64_t l = 0; l < RL; l++)
            for (int k = 0; k < 12; k++) {
                char nm[128];
                snprintf(nm, sizeof nm, "vision_model.radio_model.model.blocks.%lld.%s", (long long)l, bn[k]);
                RADD(nm, bs[k][1] ? 2 : 1, bs[k][0], bs[k][1], 0);
            }
        RADD("mlp1.0.weight", 1, 4 * RW, 0, 0);
        RADD("mlp1.1.weight", 2, PH, 4 * RW, 0);
        RADD("mlp1.3.weight", 2, hidden, PH, 0);
#undef RADD
        size_t total = 0;
        for (int i = 0; i < n; i++) {
            size_t e = 1;
            for (int d = 0; d < rs[i].nd; d++) e *= (size_t)rs[i].s[d];
            total += e;
        }
        radio = malloc(total * 2);
        if (!radio) {
            fprintf(stderr, "--radio-h: no memory for %zu bytes\n", total * 2);
            nvl_checkpoint_close(ck);
            return 0;
        }
        size_t o = 0;
        for (int i = 0; i < n; i++) {
            size_t e = 1;
            for (int d = 0; d < rs[i].nd; d++) e *= (size_t)rs[i].s[d];
            const int is_norm_w = strstr(rs[i].name, "norm") && strstr(rs[i].name, ".weight") && rs[i].nd == 1;
            const int is_mlp_norm = !strcmp(rs[i].name, "mlp1.0.weight");
            const float scale = rs[i].nd >= 2 ? 0.02f : 0.1f;
            for (size_t j = 0; j < e; j++) radio[o + j] = is_norm_w || is_mlp_norm ? nvl_f32_to_bf16(1.0f) : rand_bf16(scale);
            st_writer_add(&w, rs[i].name, "BF16", rs[i].nd, rs[i].s, radio + o, e * 2);
            cJSON_AddStringToObject(map, rs[i].name, "vision.safetensors");
            o += e;
        }
    }
    for (int64_t i = 0; i < nvl_checkpoint_count(ck); i++) {
        const nvl_st_entry *t = nvl_checkpoint_entry(ck, i);
        if (!strncmp(t->name, "language_model.", 15)) continue;
        if (g_radio_h && (!strncmp(t->name, "vision_model.radio_model.model.", 31) || !strncmp(t->name, "mlp1.", 5))) continue;
        if (!strcmp(t->name, "mlp1.3.weight") && t->n_dims == 2) {
            const int64_t K = t->shape[1];
            drawn = malloc((size_t)(hidden * K) * sizeof(float));
            for (int64_t j = 0; j < hidden * K; j++) drawn[j] = nvl_bf16_to_f32(rand_bf16(0.05f));
            st_writer_add(&w, t->name, "F32", 2, (int64_t[]){hidden, K}, drawn, (size_t)(hidden * K) * sizeof(float));
        } else {
            st_writer_add(&w, t->name, nvl_dtype_name(t->dtype), t->n_dims, t->shape, (void *)t->data, (size_t)(t->end - t->begin));
        }
        cJSON_AddStringToObject(map, t->name, "vision.safetensors");
    }
    snprintf(p1, sizeof p1, "%s/vision.safetensors", out);
    ok = st_writer_save(&w, p1, NULL);
    st_writer_free(&w);
    free(drawn);
    free(radio);
    nvl_checkpoint_close(ck);
    /* the index over both files */
    nvl_checkpoint *lmck = NULL;
    if (!ok || nvl_checkpoint_open(&lmck, p2, &err) != NVL_OK) {
        cJSON_Delete(map);
        return 0;
    }
    for (int64_t i = 0; i < nvl_checkpoint_count(lmck); i++)
        cJSON_AddStringToObject(map, nvl_checkpoint_entry(lmck, i)->name, "model.safetensors");
    nvl_checkpoint_close(lmck);
    cJSON *idx = cJSON_CreateObject();
    cJSON_AddItemToObject(idx, "metadata", cJSON_CreateObject());
    cJSON_AddItemToObject(idx, "weight_map", map);
    txt = cJSON_Print(idx);
    cJSON_Delete(idx);
    snprintf(p1, sizeof p1, "%s/model.safetensors.index.json", out);
    f = fopen(p1, "w");
    ok = f && txt && fputs(txt, f) >= 0;
    if (f) ok &= fclose(f) == 0;
    free(txt);
    static const char *copy[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    for (int i = 0; i < 3 && ok; i++) {
        snprintf(p1, sizeof p1, "%s/%s", from, copy[i]);
        snprintf(p2, sizeof p2, "%s/%s", out, copy[i]);
        struct stat sb;
        if (stat(p1, &sb) == 0) ok = copy_file(p1, p2);
    }
    return ok;
}

/* ---- measurements ------------------------------------------------------------------------ */

static double read_bandwidth_gbs(void) {
    const size_t n = (size_t)1 << 28; /* 1 GiB of floats */
    float *a = malloc(n * sizeof *a);
    if (!a) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 7);
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t0 = nvl_now(), sum = 0;
        /* 16 independent accumulators per thread so the loop vectorises and is bound by memory,
         * not by the latency of one add chain */
#pragma omp parallel for reduction(+ : sum) schedule(static)
        for (size_t b = 0; b < n / 4096; b++) {
            float acc[16] = {0};
            const float *p = a + b * 4096;
            for (size_t i = 0; i < 4096; i += 16)
                for (int j = 0; j < 16; j++) acc[j] += p[i + j];
            for (int j = 0; j < 16; j++) sum += acc[j];
        }
        double dt = nvl_now() - t0;
        if (sum < 0) printf("impossible\n");
        double gbs = (double)(n * sizeof *a) / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    free(a);
    return best;
}

static int argmax(const float *x, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int)b;
}

static void sort_doubles(double *v, int n) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (v[j] < v[i]) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
            }
}

/* S sequences stepped together (see the header). Returns 0 on success. */
static int bench_seqs(const llm_model *m, int S, int n_prompt, int n_decode) {
    const llm_hparams *hp = llm_model_hparams(m);
    const int64_t V = hp->n_vocab, chunk = 128;
    nvl_err err = {0};
    llm_cache *c = NULL;
    llm_workspace *ws = NULL;
    if (llm_cache_init(&c, m, S, n_prompt + n_decode + 1, &err) != NVL_OK ||
        llm_workspace_init(&ws, m, S > chunk ? S : chunk, LLM_SSM_MODE_AUTO, &err) != NVL_OK) {
        fprintf(stderr, "seqs=%d: %s\n", S, err.msg);
        llm_cache_free(c);
        return 1;
    }
    int *slot = malloc((size_t)S * sizeof *slot);
    int32_t *tok = malloc((size_t)S * sizeof *tok), *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    float *logits = malloc((size_t)(S * V) * sizeof(float));
    llm_batch_seq *bs = malloc((size_t)S * sizeof *bs);
    double *step = malloc((size_t)n_decode * sizeof *step);
    int rc = 0;
    for (int i = 0; i < S; i++) llm_seq_alloc(c, &slot[i], &err);
    double t0 = nvl_now();
    for (int i = 0; i < S && !rc; i++) {
        for (int k = 0; k < n_prompt; k++) prompt[k] = (int32_t)(((k + 31 * i) * 7919) % V);
        for (int64_t k = 0; k < n_prompt && !rc; k += chunk) {
            const int64_t n = n_prompt - k < chunk ? n_prompt - k : chunk;
            llm_batch_seq one = {.slot = slot[i], .tokens = prompt + k, .n = n,
                                 .logits = k + n == n_prompt ? LLM_LOGITS_LAST : LLM_LOGITS_NONE, .out = logits + i * V};
            rc = llm_step(ws, c, &one, 1, &err) != NVL_OK;
        }
        tok[i] = argmax(logits + i * V, V);
    }
    const double t_prefill = nvl_now() - t0;
    for (int r = 0; r < n_decode && !rc; r++) {
        for (int i = 0; i < S; i++)
            bs[i] = (llm_batch_seq){.slot = slot[i], .tokens = &tok[i], .n = 1, .logits = LLM_LOGITS_LAST, .out = logits + i * V};
        double a = nvl_now();
        rc = llm_step(ws, c, bs, S, &err) != NVL_OK;
        step[r] = nvl_now() - a;
        for (int i = 0; i < S; i++) tok[i] = argmax(logits + i * V, V);
    }
    if (rc) fprintf(stderr, "seqs=%d: %s\n", S, err.msg);
    else {
        sort_doubles(step, n_decode);
        const double med = step[n_decode / 2];
        printf("seqs=%d prefill_tok_s=%.1f decode_tok_s=%.2f step_ms=%.1f\n", S, (double)S * n_prompt / t_prefill,
               S / med, 1e3 * med);
        fflush(stdout);
    }
    free(slot);
    free(tok);
    free(prompt);
    free(logits);
    free(bs);
    free(step);
    llm_workspace_free(ws);
    llm_cache_free(c);
    return rc;
}

int main(int argc, char **argv) {
    const char *shape_name = "mid", *dir = NULL, *seqs = NULL, *vl_from = NULL;
    int n_prompt = 128, n_decode = 32, keep = 0, n_chunk = 128, n_context = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--shape") && i + 1 < argc) shape_name = argv[++i];
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) n_prompt = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--decode") && i + 1 < argc) n_decode = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--keep")) keep = 1;
        else if (!strcmp(argv[i], "--sparse")) g_sparse = 1;
        else if (!strcmp(argv[i], "--radio-h")) g_radio_h = 1;
        else if (!strcmp(argv[i], "--chunk") && i + 1 < argc) n_chunk = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--context") && i + 1 < argc) n_context = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seqs") && i + 1 < argc) seqs = argv[++i];
        else if (!strcmp(argv[i], "--vl") && i + 1 < argc) vl_from = argv[++i];
        else if (!strcmp(argv[i], "--quant") && i + 1 < argc) {
            const char *q = argv[++i];
            g_quant = !strcmp(q, "fp8") ? 1 : !strcmp(q, "nvfp4") ? 2 : !strcmp(q, "bf16") ? 0 : -1;
            if (g_quant < 0) {
                fprintf(stderr, "bench_llm: --quant bf16|fp8|nvfp4\n");
                return 2;
            }
        }
        else {
            fprintf(stderr, "usage: bench_llm [--shape tiny|mid|12b] [--prompt N] [--decode N] [--dir DIR] [--keep] [--seqs 1,4,16] "
                            "[--quant bf16|fp8|nvfp4] [--vl FROM] [--radio-h] [--chunk N] [--context N] [--sparse]\n");
            return 2;
        }
    }
    const shape *s = NULL;
    for (size_t i = 0; i < sizeof k_shapes / sizeof k_shapes[0]; i++)
        if (!strcmp(k_shapes[i].name, shape_name)) s = &k_shapes[i];
    if (!s || n_prompt < 1 || n_decode < 1 || n_chunk < 1 || (n_context && n_context < n_prompt)) {
        fprintf(stderr, "bench_llm: unknown shape '%s' or bad counts\n", shape_name);
        return 2;
    }
    char tmpdir[512];
    if (!dir) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/nanovl-bench-%s%s%s", s->name, g_quant == 1 ? "-fp8" : g_quant == 2 ? "-nvfp4" : "",
                 g_sparse ? "-sparse" : "");
        dir = tmpdir;
    }
    char probe[600];
    snprintf(probe, sizeof probe, "%s/model.safetensors", dir);
    struct stat st_;
    if (stat(probe, &st_) != 0) {
        fprintf(stderr, "writing synthetic %s checkpoint to %s ...\n", s->name, dir);
        if (!write_checkpoint(dir, s)) {
            fprintf(stderr, "cannot write %s: %s\n", dir, strerror(errno));
            return 1;
        }
    }
    if (vl_from) {
        char out[4200];
        if (!write_vl(dir, vl_from, out, sizeof out)) {
            fprintf(stderr, "bench_llm: cannot write the VL checkpoint next to %s\n", dir);
            return 1;
        }
        printf("%s\n", out);
        return 0;
    }
    nvl_err err = {0};
    llm_model *m = NULL;
    const double t_load0 = nvl_now();
    if (llm_model_init(&m, dir, NULL, &err) != NVL_OK) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    const double t_load = nvl_now() - t_load0;
    const llm_hparams *hp = llm_model_hparams(m);
    kern_backend *be = llm_model_backend(m);
    const int device = kern_backend_kind_of(be) != KERN_BACKEND_KIND_CPU;
    /* bytes one decode step reads: every weight except the embedding table (one row); the
     * matmul weights a prefill token multiplies (lm_head left out: one row a chunk) */
    double weight_bytes = 0, prefill_params = 0;
    {
        int64_t n = llm_tensor_table(hp, "backbone.", "", NULL, 0);
        llm_tensor_spec *specs = malloc((size_t)n * sizeof *specs);
        llm_tensor_table(hp, "backbone.", "", specs, n);
        for (int64_t i = 0; i < n; i++) {
            if (strstr(specs[i].name, "embeddings")) continue;
            /* bytes per weight as stored: bf16 2, FP8 1, NVFP4 0.5 + one E4M3 scale per 16 */
            double e = !is_quant_linear(&specs[i]) ? 2 : g_quant == 1 ? 1 : 0.5 + 1.0 / 16, numel = 1;
            for (int d = 0; d < specs[i].n_dims; d++) numel *= (double)specs[i].shape[d];
            weight_bytes += e * numel;
            if (specs[i].n_dims == 2 && !strstr(specs[i].name, "lm_head")) prefill_params += numel;
        }
        free(specs);
    }
    if (seqs) {
        int rc = 0;
        printf("shape=%s threads=%d matmul=%s prompt=%d decode=%d\n", s->name, kern_cpu_n_threads(), kern_cpu_kernels(),
               n_prompt, n_decode);
        for (const char *q = seqs; *q && !rc;) {
            const int S = atoi(q);
            if (S <= 0) {
                fprintf(stderr, "bench_llm: bad --seqs '%s'\n", seqs);
                rc = 2;
                break;
            }
            rc = bench_seqs(m, S, n_prompt, n_decode);
            q = strchr(q, ',');
            if (!q) break;
            q++;
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("peak_rss_mib=%.0f\n", (double)ru.ru_maxrss / 1024.0);
        llm_model_free(m);
        return rc;
    }
    llm_context_params cp = llm_context_params_default();
    const int n_fill = n_context > n_prompt ? n_context - n_prompt : 0;
    cp.n_ctx = n_prompt + n_fill + n_decode + 1;
    cp.n_chunk = n_chunk;
    llm_context *ctx = NULL;
    if (llm_context_init(&ctx, m, &cp, &err) != NVL_OK) {
        fprintf(stderr, "context: %s\n", err.msg);
        return 1;
    }
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)((i * 7919) % hp->n_vocab);
    /* warm the page cache / mapping with one token, and (on a device) the prefill once: its first
       run loads cuBLAS's kernels for the shape and makes the first launches of the prefill
       kernels (CUDA loads modules lazily), tens of ms on a ~150 ms chunk; then measure */
    llm_decode(ctx, 1, &err);
    llm_context_reset(ctx);
    if (strcmp(kern_backend_name(be), "cpu")) {
        if (llm_prefill(ctx, prompt, n_prompt, NULL, NULL, &err) != NVL_OK) {
            fprintf(stderr, "prefill (warm-up): %s\n", err.msg);
            return 1;
        }
        llm_context_reset(ctx);
    }
    if (kern_backend_profiling(be)) { /* the warm-up's ops are not the measured ones */
        kern_backend_profile(be, 0);
        kern_backend_profile(be, 1);
    }
    double t0 = nvl_now();
    if (llm_prefill(ctx, prompt, n_prompt, NULL, NULL, &err) != NVL_OK) {
        fprintf(stderr, "prefill: %s\n", err.msg);
        return 1;
    }
    double t_prefill = nvl_now() - t0;
    char plabel[96];
    snprintf(plabel, sizeof plabel, "prefill of %d tokens in chunks of %d", n_prompt, n_chunk);
    kern_backend_profile_report(be, stderr, plabel); /* (NVL_PROFILE_OPS=1: the ops' times, on stderr) */
    if (n_fill) { /* untimed: the context the decode runs at */
        int32_t *more = malloc((size_t)n_fill * sizeof *more);
        for (int i = 0; i < n_fill; i++) more[i] = (int32_t)(((i + n_prompt) * 7919) % hp->n_vocab);
        nvl_status fst = llm_prefill(ctx, more, n_fill, NULL, NULL, &err);
        free(more);
        if (fst != NVL_OK) {
            fprintf(stderr, "filling the context: %s\n", err.msg);
            return 1;
        }
    }
    if (n_fill && kern_backend_profiling(be)) { /* the fill's ops are not the decode's */
        kern_backend_profile(be, 0);
        kern_backend_profile(be, 1);
    }
    int tok = argmax(llm_logits(ctx), hp->n_vocab);
    double *step = malloc((size_t)n_decode * sizeof *step);
    for (int i = 0; i < n_decode; i++) {
        double a = nvl_now();
        llm_decode(ctx, tok, &err);
        step[i] = nvl_now() - a;
        tok = argmax(llm_logits(ctx), hp->n_vocab);
    }
    snprintf(plabel, sizeof plabel, "%d decode steps at a context of %d", n_decode, n_prompt + n_fill);
    kern_backend_profile_report(be, stderr, plabel);
    sort_doubles(step, n_decode); /* median step time */
    double med = step[n_decode / 2];
    if (device) {
        kern_device_rates rates;
        if (kern_backend_measure(be, &rates, &err) != NVL_OK) {
            fprintf(stderr, "device rates: %s\n", err.msg);
            return 1;
        }
        size_t dfree = 0, dtotal = 0;
        kern_backend_mem_info(be, &dfree, &dtotal, &err);
        const double ctx_len = (double)(n_prompt + n_fill) + n_decode / 2.0;
        const double kv = (double)hp->n_attn * 2.0 * (double)(hp->n_head_kv * hp->head_dim) * ctx_len * 2.0;
        const double states = (double)hp->n_mamba * 4.0 *
                              (double)(hp->ssm_n_head * hp->ssm_head_dim * hp->d_state + hp->conv_dim * hp->d_conv);
        const double dec_bytes = weight_bytes + kv + 2.0 * states, dec_gbs = dec_bytes / med / 1e9;
        const double attn_flops = (double)hp->n_attn * 4.0 * ((n_prompt + 1) / 2.0) * (double)(hp->n_head * hp->head_dim);
        const double pf_tok_s = n_prompt / t_prefill, pf_tflops = pf_tok_s * (2.0 * prefill_params + attn_flops) / 1e12;
        const char *g = getenv("NVL_CUDA_GRAPHS");
        printf("| shape | device | weights | GB read/token | prefill tok/s (%d, chunk %d) | prefill TFLOP/s | GEMM TFLOP/s | "
               "fraction | decode tok/s (ctx %d, median of %d) | decode GB/s | copy GB/s | fraction | load s | device GiB used | graphs |\n",
               n_prompt, n_chunk, n_prompt + n_fill, n_decode);
        printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        printf("| %s (%lld layers) | %s | %s%s | %.2f | %.0f | %.1f | %.1f | %.0f %% | %.1f | %.0f | %.0f | %.0f %% | %.1f | %.1f | %s |\n",
               s->name, (long long)hp->n_layer, kern_backend_description(be),
               g_quant == 1 ? "fp8" : g_quant == 2 ? "nvfp4" : "bf16", g_sparse ? " (sparse: zeros)" : "", dec_bytes / 1e9,
               pf_tok_s, pf_tflops, rates.gemm_bf16_tflops, 100.0 * pf_tflops / rates.gemm_bf16_tflops, 1.0 / med, dec_gbs,
               rates.copy_gbs, 100.0 * dec_gbs / rates.copy_gbs, t_load, (double)(dtotal - dfree) / 1073741824.0,
               g && !strcmp(g, "0") ? "off" : "on");
    } else {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru); /* before the 1 GiB bandwidth buffer */
        double bw = read_bandwidth_gbs();
        int threads = 1;
#ifdef _OPENMP
        threads = omp_get_max_threads();
#endif
        double dec_gbs = weight_bytes / med / 1e9;
        printf("| shape | params (GB bf16 read/token) | threads | matmul kernel | prefill tok/s (%d) | decode tok/s (median of %d) | decode GB/s | read bandwidth GB/s | fraction | peak RSS MiB |\n",
               n_prompt, n_decode);
        printf("|---|---|---|---|---|---|---|---|---|---|\n");
        printf("| %s (%s, hidden %lld, %lld layers) | %.2f | %d | %s | %.1f | %.2f | %.2f | %.2f | %.0f %% | %.0f |\n",
               s->name, hp->pattern, (long long)hp->n_embd, (long long)hp->n_layer, weight_bytes / 1e9,
               threads, kern_cpu_kernels(), n_prompt / t_prefill, 1.0 / med, dec_gbs, bw,
               100.0 * dec_gbs / bw, (double)ru.ru_maxrss / 1024.0);
    }
    free(step);
    free(prompt);
    llm_context_free(ctx);
    llm_model_free(m);
    if (!keep && dir == tmpdir) {
        char p2[700];
        static const char *files[] = {"model.safetensors", "config.json", "hf_quant_config.json"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            snprintf(p2, sizeof p2, "%s/%s", dir, files[i]);
            unlink(p2);
        }
        rmdir(dir);
    }
    return 0;
}
