/* `nanovl inspect` through api_inspect: synthetic NemotronH checkpoints written here from the
 * model's own tensor table (bare and VL layouts), and damaged variants (missing tensor, wrong
 * shape, wrong dtype, inconsistent pattern), each reported with a message that names it; plus
 * the committed tiny transformers checkpoint. */
#include "api.h"
#include "base/alloc.h"
#include "base/json_util.h"
#include "llm.h"
#include "st_writer.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *k_cfg_fmt =
    "{%s\"model_type\": \"nemotron_h\", \"architectures\": [\"NemotronHForCausalLM\"], "
    "\"vocab_size\": 64, \"hidden_size\": 16, \"num_hidden_layers\": %d, "
    "\"hybrid_override_pattern\": \"%s\", \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
    "\"head_dim\": 4, \"intermediate_size\": 32, \"mamba_num_heads\": 4, \"mamba_head_dim\": 8, "
    "\"ssm_state_size\": 8, \"n_groups\": 2, \"conv_kernel\": 4, \"use_conv_bias\": true, "
    "\"chunk_size\": 8, \"layer_norm_epsilon\": 1e-5, \"time_step_limit\": [0.0, Infinity], "
    "\"tie_word_embeddings\": false%s}";

enum damage { DMG_NONE, DMG_MISSING, DMG_SHAPE, DMG_DTYPE, DMG_EXTRA /* damaged_name added, [4] BF16 */ };
static const char *g_cfg_extra = ""; /* appended to the LM config's fields */

/* Writes config.json + model.safetensors for pattern; vl wraps the LM in a VL config. */
static void write_ckpt(const char *dir, const char *pattern, int n_layers_cfg, int vl,
                       enum damage dmg, const char *damaged_name) {
    mkdir(dir, 0755);
    char cfg[4096], inner[2048], path[1024];
    if (vl) {
        snprintf(inner, sizeof inner, k_cfg_fmt, "", n_layers_cfg, pattern, "");
        snprintf(cfg, sizeof cfg,
                 "{\"architectures\": [\"NemotronH_Nano_VL_V2\"], \"model_type\": "
                 "\"NemotronH_Nano_VL_V2\", \"llm_config\": %s}",
                 inner);
    } else {
        snprintf(cfg, sizeof cfg, k_cfg_fmt, "", n_layers_cfg, pattern, g_cfg_extra);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    test_write_file(path, cfg, strlen(cfg));

    /* tensors from the table of a consistent config with the same pattern */
    char good[4096];
    snprintf(good, sizeof good, k_cfg_fmt, "", (int)strlen(pattern), pattern, "");
    cJSON *root = NULL;
    llm_hparams hp;
    nvl_err err = {0};
    if (nvl_json_parse(&root, good, strlen(good), "cfg", &err) != NVL_OK ||
        llm_hparams_from_json(&hp, root, "cfg", &err) != NVL_OK) {
        fprintf(stderr, "config: %s\n", err.msg);
        exit(1);
    }
    cJSON_Delete(root);
    const char *prefix = vl ? "language_model.backbone." : "backbone.";
    const char *head = vl ? "language_model." : "";
    int64_t n = llm_tensor_table(&hp, prefix, head, NULL, 0);
    llm_tensor_spec *specs = malloc((size_t)n * sizeof *specs);
    llm_tensor_table(&hp, prefix, head, specs, n);
    st_writer w;
    st_writer_init(&w);
    for (int64_t i = 0; i < n; i++) {
        llm_tensor_spec s = specs[i];
        int hit = damaged_name && !strcmp(s.name, damaged_name);
        if (hit && dmg == DMG_MISSING) continue;
        if (hit && dmg == DMG_SHAPE) s.shape[0] += 1;
        int64_t numel = 1;
        for (int d = 0; d < s.n_dims; d++) numel *= s.shape[d];
        const char *dt = (hit && dmg == DMG_DTYPE) ? "I32" : "BF16";
        size_t bytes = (size_t)numel * (strcmp(dt, "I32") ? 2 : 4);
        void *buf = calloc(1, bytes);
        st_writer_add(&w, s.name, dt, s.n_dims, s.shape, buf, bytes);
        free(buf);
    }
    if (dmg == DMG_EXTRA) {
        uint16_t z[4] = {0};
        st_writer_add(&w, damaged_name, "BF16", 1, (int64_t[]){4}, z, sizeof z);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st_writer_save(&w, path, NULL);
    st_writer_free(&w);
    free(specs);
}

/* Runs api_inspect and returns its text (malloc'ed). */
/* dir/name as a symbolic link to from_dir/name (an earlier run's replaced) */
static void link_in(const char *dir, const char *from_dir, const char *name) {
    char from[1200], path[1200];
    snprintf(from, sizeof from, "%s/%s", from_dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    TEST_CHECK(symlink(from, path) == 0, "link %s", path);
}

static char *inspect(const char *dir, int *usable, nvl_status *st) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    nvl_err err = {0};
    *st = api_inspect(dir, f, usable, &err);
    fclose(f);
    if (*st != NVL_OK) fprintf(stderr, "inspect %s: %s\n", dir, err.msg);
    return buf;
}

static void test_synthetic(void) {
    char dir[600];
    int usable = 0;
    nvl_status st;
    snprintf(dir, sizeof dir, "%s/ok", test_tmpdir());
    write_ckpt(dir, "M-*-M", 5, 0, DMG_NONE, NULL);
    char *out = inspect(dir, &usable, &st);
    TEST_EQ_INT(st, NVL_OK);
    TEST_EQ_INT(usable, 1);
    TEST_CONTAINS(out, "layers: 5 (2 Mamba-2, 1 attention, 2 MLP)");
    TEST_CONTAINS(out, "pattern: M-*-M");
    TEST_CONTAINS(out, "hidden 16, vocab 64, ffn 32");
    TEST_CONTAINS(out, "mamba-2: 4 heads x 8, state 8, groups 2, conv 4, chunk 8");
    TEST_CONTAINS(out, "tensors: expected 32, bound 32");
    TEST_CONTAINS(out, "bytes by dtype: BF16");
    TEST_CONTAINS(out, "quantization: none");
    TEST_CONTAINS(out, "problems: none");
    free(out);

    snprintf(dir, sizeof dir, "%s/vl", test_tmpdir());
    write_ckpt(dir, "M*-", 3, 1, DMG_NONE, NULL);
    out = inspect(dir, &usable, &st);
    TEST_EQ_INT(usable, 1);
    TEST_CONTAINS(out, "architecture: NemotronH_Nano_VL_V2");
    TEST_CONTAINS(out, "layers: 3 (1 Mamba-2, 1 attention, 1 MLP)");
    free(out);

    /* what nanovl would leave out is said: a tensor nothing reads (a warning), a Linear's bias
     * and a config asking for biases (refused: NemotronH has none) */
    static const struct {
        const char *extra_tensor, *cfg_extra, *want;
        int usable;
    } leftout[] = {
        {"backbone.layers.0.mixer.lora_A.weight", "",
         "warning: 1 tensor of the language model that nanovl does not read: 'backbone.layers.0.mixer.lora_A.weight'", 1},
        {"backbone.layers.2.mixer.q_proj.bias", "",
         "problem: tensor 'backbone.layers.2.mixer.q_proj.bias': NemotronH's Linear layers have no biases", 0},
        {NULL, ", \"mlp_bias\": true", "mlp_bias is true: NemotronH's Linear layers have no biases", 0},
    };
    for (size_t i = 0; i < sizeof leftout / sizeof leftout[0]; i++) {
        snprintf(dir, sizeof dir, "%s/leftout%zu", test_tmpdir(), i);
        g_cfg_extra = leftout[i].cfg_extra;
        write_ckpt(dir, "M-*-M", 5, 0, leftout[i].extra_tensor ? DMG_EXTRA : DMG_NONE, leftout[i].extra_tensor);
        g_cfg_extra = "";
        out = inspect(dir, &usable, &st);
        TEST_EQ_INT(usable, leftout[i].usable);
        TEST_CONTAINS(out, leftout[i].want);
        free(out);
    }

    snprintf(dir, sizeof dir, "%s/missing", test_tmpdir());
    write_ckpt(dir, "M-*-M", 5, 0, DMG_MISSING, "backbone.layers.2.mixer.q_proj.weight");
    out = inspect(dir, &usable, &st);
    TEST_EQ_INT(st, NVL_OK);
    TEST_EQ_INT(usable, 0);
    TEST_CONTAINS(out, "problem: missing tensor 'backbone.layers.2.mixer.q_proj.weight' [NVL_ERR_NOT_FOUND]");
    TEST_CONTAINS(out, "tensors: expected 32, bound 31");
    free(out);

    snprintf(dir, sizeof dir, "%s/shape", test_tmpdir());
    write_ckpt(dir, "M-*-M", 5, 0, DMG_SHAPE, "backbone.layers.0.mixer.in_proj.weight");
    out = inspect(dir, &usable, &st);
    TEST_EQ_INT(usable, 0);
    /* d_in_proj = 2*32 + 2*2*8 + 4 = 100 (here 101) */
    TEST_CONTAINS(out, "tensor 'backbone.layers.0.mixer.in_proj.weight' has shape [101, 16], expected [100, 16]");
    free(out);

    snprintf(dir, sizeof dir, "%s/dtype", test_tmpdir());
    write_ckpt(dir, "M-*-M", 5, 0, DMG_DTYPE, "backbone.norm_f.weight");
    out = inspect(dir, &usable, &st);
    TEST_EQ_INT(usable, 0);
    TEST_CONTAINS(out, "tensor 'backbone.norm_f.weight' has dtype I32");
    free(out);

    snprintf(dir, sizeof dir, "%s/pattern", test_tmpdir());
    write_ckpt(dir, "M-*-M", 4, 0, DMG_NONE, NULL);
    out = inspect(dir, &usable, &st);
    TEST_EQ_INT(usable, 0);
    TEST_CONTAINS(out, "num_hidden_layers is 4 but the layer pattern has 5 layers");
    free(out);

    /* damaged safetensors: inspect itself fails with the file's error */
    snprintf(dir, sizeof dir, "%s/trunc", test_tmpdir());
    mkdir(dir, 0755);
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    test_write_file(p, "\x01\x00", 2);
    out = inspect(dir, &usable, &st);
    TEST_EQ_INT(st, NVL_ERR_TRUNCATED);
    free(out);
}

static void test_tiny_transformers(void) {
    const char *dir = test_data_path("tiny_nemotron_h");
    struct stat s;
    if (stat(dir, &s) != 0) {
        printf("tiny_nemotron_h not present in tests/data: case skipped\n");
        return;
    }
    int usable = 0;
    nvl_status st;
    char *out = inspect(dir, &usable, &st);
    TEST_EQ_INT(st, NVL_OK);
    TEST_EQ_INT(usable, 1);
    TEST_CONTAINS(out, "architecture: NemotronHForCausalLM");
    TEST_CONTAINS(out, "problems: none");
    TEST_CONTAINS(out, "10 safetensors shards, 49 tensors"); /* save_pretrained, 100KB shards */
    TEST_CONTAINS(out, "layers: 8 (3 Mamba-2, 2 attention, 3 MLP)");
    TEST_CONTAINS(out, "pattern: M-M*-M*-");
    TEST_CONTAINS(out, "mamba-2: 8 heads x 16, state 16, groups 2, conv 4, chunk 8");
    TEST_CONTAINS(out, "tensors: expected 49, bound 49");
    fputs(out, stdout);
    free(out);
}

/* The ModelOpt exports of tests/data/quant: the scheme of every Linear, decided per tensor. */
static void test_quantized(void) {
    const char *fmts[] = {"quant/fp8", "quant/nvfp4"};
    const char *want[] = {"in_proj FP8 x4; out_proj FP8 x4; q_proj FP8 x3;", "in_proj NVFP4 x4; out_proj NVFP4 x4; q_proj NVFP4 x3;"};
    for (int i = 0; i < 2; i++) {
        int usable = 0;
        nvl_status st;
        char *out = inspect(test_data_path(fmts[i]), &usable, &st);
        TEST_EQ_INT(st, NVL_OK);
        TEST_EQ_INT(usable, 1);
        TEST_CONTAINS(out, "quantization config: hf_quant_config.json");
        TEST_CONTAINS(out, i ? "quantization: ModelOpt NVFP4 (hf_quant_config.json)\n" : "quantization: ModelOpt FP8 (hf_quant_config.json)\n");
        TEST_CHECK(!strstr(out, "warning:"), "the tool's two config files agree: no warning");
        TEST_CONTAINS(out, "lm_head unquantized x1;");
        TEST_CONTAINS(out, want[i]);
        TEST_CONTAINS(out, "problems: none");
        free(out);
    }
    /* quant/fp8 with config.json's quantization_config removed (the headline read config.json
     * alone: "quantization: none" for an FP8 checkpoint), then saying NVFP4 (hf_quant_config.json
     * is read, as vLLM does; the disagreement is said) */
    nvl_err err = {0};
    cJSON *cfg = NULL;
    char src[1024], dir[700], path[1200];
    snprintf(src, sizeof src, "%s", test_data_path("quant/fp8"));
    snprintf(path, sizeof path, "%s/config.json", src);
    TEST_EQ_INT(nvl_json_load_file(&cfg, path, 1 << 20, &err), NVL_OK);
    for (int k = 0; cfg && k < 3; k++) {
        snprintf(dir, sizeof dir, "%s/inspect_hfq%d", test_tmpdir(), k);
        mkdir(dir, 0755);
        static const char *const files[] = {"model.safetensors", "hf_quant_config.json"};
        for (int f = 0; f < (k == 2 ? 1 : 2); f++) link_in(dir, src, files[f]); /* k = 2: config.json alone */
        if (k == 0) cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
        else if (k == 2) { /* its KV-cache scheme is said not to be applied, as hf_quant_config.json's is */
            cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
            cJSON *qc = cJSON_AddObjectToObject(cfg, "quantization_config");
            cJSON_AddStringToObject(qc, "quant_method", "modelopt");
            cJSON_AddStringToObject(qc, "quant_algo", "FP8");
            cJSON *kv = cJSON_AddObjectToObject(qc, "kv_cache_scheme");
            cJSON_AddNumberToObject(kv, "num_bits", 8);
            cJSON_AddStringToObject(kv, "type", "float");
        } else {
            cJSON *qc = cJSON_AddObjectToObject(cfg, "quantization_config");
            cJSON_AddStringToObject(qc, "quant_method", "modelopt");
            cJSON_AddStringToObject(qc, "quant_algo", "NVFP4");
        }
        char *txt = cJSON_Print(cfg);
        snprintf(path, sizeof path, "%s/config.json", dir);
        test_write_file(path, txt, strlen(txt));
        cJSON_free(txt);
        int usable = 0;
        nvl_status st;
        char *out = inspect(dir, &usable, &st);
        TEST_EQ_INT(usable, 1);
        TEST_CONTAINS(out, k == 2 ? "quantization: ModelOpt FP8 (config.json quantization_config)"
                                  : "quantization: ModelOpt FP8 (hf_quant_config.json)");
        if (k == 1) TEST_CONTAINS(out, "warning: quant_algo 'NVFP4' (hf_quant_config.json: 'FP8') in config.json's quantization_config");
        else if (k == 2) TEST_CONTAINS(out, "KV cache FP8 (not applied");
        else TEST_CHECK(!strstr(out, "warning:"), "config.json without a quantization config: no warning");
        free(out);
    }
    cJSON_Delete(cfg);
    /* an unquantized checkpoint with a stale hf_quant_config.json beside it: the headline said
     * "ModelOpt FP8" while every Linear was listed unquantized, without a word */
    const char *plain = test_data_path("tiny_nemotron_h");
    struct stat sb;
    if (stat(plain, &sb) != 0) {
        printf("tiny_nemotron_h not present in tests/data: stale-config case skipped\n");
        return;
    }
    snprintf(dir, sizeof dir, "%s/inspect_stale_quant", test_tmpdir());
    mkdir(dir, 0755);
    DIR *d = opendir(plain);
    TEST_CHECK(d != NULL, "open %s", plain);
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] != '.') link_in(dir, plain, de->d_name);
    }
    if (d) closedir(d);
    link_in(dir, src, "hf_quant_config.json");
    int usable = 0;
    nvl_status st;
    char *out = inspect(dir, &usable, &st);
    TEST_EQ_INT(usable, 1);
    TEST_CONTAINS(out, "quantization: ModelOpt FP8 (hf_quant_config.json), but no tensor is stored as F8_E4M3 or packed U8: stale, "
                       "the model runs unquantized\n");
    TEST_CONTAINS(out, "warning: hf_quant_config.json says quant_algo FP8 but no linear layer is quantized: the config is stale");
    free(out);
}

/* inspect binds the vision tower and the projector as ask does: vl_tiny with mlp1.3.weight one
 * output row short (its shard rewritten, the rest linked) said "problems: none" where ask refused
 * it. */
static void test_projector_shape(void) {
    nvl_err err = {0};
    nvl_checkpoint *ck = NULL;
    const char *src = test_data_path("vl_tiny");
    char srcdir[1024];
    snprintf(srcdir, sizeof srcdir, "%s", src);
    if (nvl_checkpoint_open(&ck, srcdir, &err) != NVL_OK) {
        TEST_CHECK(0, "vl_tiny: %s", err.msg);
        return;
    }
    const nvl_st_entry *p = nvl_checkpoint_find(ck, "mlp1.3.weight");
    TEST_CHECK(p != NULL, "vl_tiny has mlp1.3.weight");
    if (!p) {
        nvl_checkpoint_close(ck);
        return;
    }
    char dir[700], path[1200];
    snprintf(dir, sizeof dir, "%s/inspect_proj", test_tmpdir());
    mkdir(dir, 0755);
    const char *shard_path = nvl_checkpoint_shard_path(ck, p->shard);
    char shard_name[256]; /* (a copy: the path goes with the checkpoint) */
    snprintf(shard_name, sizeof shard_name, "%s", strrchr(shard_path, '/') ? strrchr(shard_path, '/') + 1 : shard_path);
    st_writer wr;
    st_writer_init(&wr);
    for (int64_t i = 0; i < nvl_checkpoint_count(ck); i++) {
        const nvl_st_entry *e = nvl_checkpoint_entry(ck, i);
        if (e->shard != p->shard) continue;
        int64_t shape[8];
        for (int d = 0; d < e->n_dims; d++) shape[d] = e->shape[d];
        size_t nb = e->end - e->begin;
        if (e == p) {
            nb -= nb / (size_t)shape[0];
            shape[0]--;
        }
        st_writer_add(&wr, e->name, nvl_dtype_name(e->dtype), e->n_dims, shape, e->data, nb);
    }
    snprintf(path, sizeof path, "%s/%s", dir, shard_name);
    unlink(path);
    TEST_CHECK(st_writer_save(&wr, path, NULL) == 1, "wrote %s", path);
    st_writer_free(&wr);
    nvl_checkpoint_close(ck);
    static const char *const files[] = {"config.json", "generation_config.json", "model.safetensors.index.json",
                                        "tokenizer.json", "tokenizer_config.json", "model-00001-of-00002.safetensors",
                                        "model-00002-of-00002.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        if (strcmp(files[i], shard_name)) link_in(dir, srcdir, files[i]);
    }
    int usable = 1;
    nvl_status st;
    char *out = inspect(dir, &usable, &st);
    TEST_EQ_INT(usable, 0);
    TEST_CONTAINS(out, "projector tensor 'mlp1.3.weight' has shape");
    free(out);
}

int main(void) {
    test_projector_shape();
    int64_t live0 = nvl_alloc_count();
    test_quantized();
    test_synthetic();
    test_tiny_transformers();
    TEST_EQ_INT(nvl_alloc_count(), live0);
    return test_report();
}
