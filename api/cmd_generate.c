/* `nanovl generate`: text-only generation with the language model of a checkpoint, from token
 * ids, with the sampling flags; prints generated ids and can dump logits for diffing against
 * another implementation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "commands.h"
#include "llm.h"

static const char *k_usage =
    "usage: nanovl generate --model DIR (--ids \"1 2 3\" | --ids -) [options]\n"
    "  --ids LIST|-        prompt token ids, space or comma separated; - reads them from stdin\n"
    "  --max-tokens N      tokens to generate (default 64)\n"
    "  --temperature T     0 = greedy (default 0)\n"
    "  --top-k K --top-p P --min-p P --seed S\n"
    "  --print-ids         print generated ids (default when no tokenizer is available)\n"
    "  --dump-logits FILE  write the logits of the prefill's last position and of every\n"
    "                      generated step as little-endian float32 rows of n_vocab\n"
    "  --ctx N             context capacity in tokens (default prompt + max-tokens)\n"
    "Text prompts need the tokenizer, which this build does not have yet: pass --ids.\n";

typedef struct dump_ctx {
    FILE *f;
    int64_t n_vocab;
    int failed;
} dump_ctx;

static int on_token(int32_t tok, const float *logits, void *user) {
    dump_ctx *d = user;
    (void)tok;
    if (d->f && fwrite(logits, sizeof(float), (size_t)d->n_vocab, d->f) != (size_t)d->n_vocab) d->failed = 1;
    return 0;
}

/* Parses "1 2, 3" into a growing array. */
static int parse_ids(const char *s, int32_t **ids, int64_t *n) {
    int64_t cap = 64;
    *n = 0;
    *ids = nvl_malloc((size_t)cap * sizeof **ids);
    if (!*ids) return 0;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\n' || *s == '\t' || *s == '\r') s++;
        if (!*s) break;
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX) return 0;
        if (*n == cap) {
            cap *= 2;
            int32_t *nb = nvl_realloc(*ids, (size_t)cap * sizeof **ids);
            if (!nb) return 0;
            *ids = nb;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return *n > 0;
}

static char *read_stdin(void) {
    size_t cap = 4096, n = 0;
    char *b = nvl_malloc(cap);
    if (!b) return NULL;
    size_t r;
    while ((r = fread(b + n, 1, cap - n - 1, stdin)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = nvl_realloc(b, cap * 2);
            if (!nb) {
                nvl_free(b);
                return NULL;
            }
            b = nb;
            cap *= 2;
        }
    }
    b[n] = 0;
    return b;
}

int cmd_generate(int argc, char **argv) {
    const char *model = getenv("NANOVL_MODEL"), *ids_arg = NULL, *dump = NULL;
    llm_generate_params gp = llm_generate_params_default();
    gp.max_tokens = 64;
    int64_t n_ctx = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                    \
    do {                                                                \
        if (!v) {                                                       \
            fprintf(stderr, "nanovl generate: %s needs a value\n", a);  \
            return EXIT_USAGE;                                          \
        }                                                               \
        i++;                                                            \
    } while (0)
        if (!strcmp(a, "--model")) { NEED_VALUE(); model = v; }
        else if (!strcmp(a, "--ids")) { NEED_VALUE(); ids_arg = v; }
        else if (!strcmp(a, "--max-tokens")) { NEED_VALUE(); gp.max_tokens = atoll(v); }
        else if (!strcmp(a, "--temperature")) { NEED_VALUE(); gp.sampler.temperature = strtof(v, NULL); }
        else if (!strcmp(a, "--top-k")) { NEED_VALUE(); gp.sampler.top_k = atoi(v); }
        else if (!strcmp(a, "--top-p")) { NEED_VALUE(); gp.sampler.top_p = strtof(v, NULL); }
        else if (!strcmp(a, "--min-p")) { NEED_VALUE(); gp.sampler.min_p = strtof(v, NULL); }
        else if (!strcmp(a, "--seed")) { NEED_VALUE(); gp.sampler.seed = strtoull(v, NULL, 10); }
        else if (!strcmp(a, "--dump-logits")) { NEED_VALUE(); dump = v; }
        else if (!strcmp(a, "--ctx")) { NEED_VALUE(); n_ctx = atoll(v); }
        else if (!strcmp(a, "--print-ids")) { /* the only output form for now */ }
        else {
            fprintf(stderr, "nanovl generate: unknown or unsupported argument '%s'\n%s", a, k_usage);
            return EXIT_USAGE;
        }
#undef NEED_VALUE
    }
    if (!model || !ids_arg || gp.max_tokens <= 0) {
        fputs(k_usage, stderr);
        return EXIT_USAGE;
    }
    char *text = NULL;
    if (!strcmp(ids_arg, "-")) {
        text = read_stdin();
        ids_arg = text ? text : "";
    }
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    int ok = parse_ids(ids_arg, &ids, &n_ids);
    nvl_free(text);
    if (!ok) {
        fprintf(stderr, "nanovl generate: --ids must be non-negative integers separated by spaces or commas\n");
        nvl_free(ids);
        return EXIT_USAGE;
    }
    int rc = 1;
    nvl_err err = {0};
    llm_model *m = NULL;
    llm_context *ctx = NULL;
    int32_t *out = NULL;
    dump_ctx dc = {0};
    if (llm_model_init(&m, model, NULL, &err) != NVL_OK) {
        fprintf(stderr, "nanovl generate: %s: %s\n", model, err.msg);
        goto done;
    }
    llm_context_params cp = llm_context_params_default();
    cp.n_ctx = n_ctx > 0 ? n_ctx : n_ids + gp.max_tokens + 1;
    if (llm_context_init(&ctx, m, &cp, &err) != NVL_OK) {
        fprintf(stderr, "nanovl generate: %s\n", err.msg);
        goto done;
    }
    int32_t stop[16];
    gp.n_stop = llm_model_stop_ids(m, stop, 16);
    gp.stop_ids = stop;
    dc.n_vocab = llm_model_hparams(m)->n_vocab;
    if (dump && !(dc.f = fopen(dump, "wb"))) {
        fprintf(stderr, "nanovl generate: cannot write '%s': %s\n", dump, strerror(errno));
        goto done;
    }
    gp.on_token = on_token;
    gp.user = &dc;
    out = nvl_malloc((size_t)gp.max_tokens * sizeof *out);
    int64_t n_out = 0;
    if (!out) goto done;
    nvl_status st = llm_generate(ctx, ids, n_ids, &gp, out, gp.max_tokens, &n_out, &err);
    for (int64_t i = 0; i < n_out; i++) printf("%s%d", i ? " " : "", out[i]);
    printf("\n");
    if (st != NVL_OK) {
        fprintf(stderr, "nanovl generate: %s\n", err.msg);
        goto done;
    }
    if (dc.failed) {
        fprintf(stderr, "nanovl generate: writing '%s' failed\n", dump);
        goto done;
    }
    rc = 0;
done:
    if (dc.f && fclose(dc.f) != 0) rc = 1;
    nvl_free(out);
    nvl_free(ids);
    llm_context_free(ctx);
    llm_model_free(m);
    return rc;
}
