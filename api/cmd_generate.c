/* `nanovl generate`: text-only generation with the language model of a checkpoint, from token
 * ids, with the sampling flags; prints generated ids and can dump logits for diffing against
 * another implementation. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "chat.h"
#include "cli_util.h"
#include "commands.h"
#include "llm.h"
#include "tokenizer.h"

static const char *k_usage =
    "usage: nanovl generate --model DIR [--prompt TEXT | --ids \"1 2 3\" | --ids -] [options]\n"
    "  --prompt TEXT       the user's text; without --prompt and --ids the text is read from stdin\n"
    "  --raw               feed the text as is (default: through the chat template as a user turn)\n"
    "  --system TEXT       a system message; --think / --no-think force reasoning on or off\n"
    "  --tokenizer PATH    tokenizer.json (default: the one in the model directory)\n"
    "  --ids LIST|-        prompt token ids, space or comma separated; - reads them from stdin\n"
    "  --max-tokens N      tokens to generate (default 64)\n"
    "  --temperature T     0 = greedy (default 0)\n"
    "  --top-k K --top-p P --min-p P --seed S\n"
    "  --print-ids         print generated ids instead of the streamed text (the default\n"
    "                      with --ids when the checkpoint has no tokenizer.json)\n"
    "  --dump-logits FILE  write the logits of the prefill's last position and of every\n"
    "                      generated step as little-endian float32 rows of n_vocab\n"
    "  --ctx N             context capacity in tokens (default prompt + max-tokens)\n"
    "Text is streamed as it is generated; generation stops at the checkpoint's stop tokens\n"
    "(generation_config.json eos ids, <SPECIAL_12> and </s>) or --max-tokens.\n";

typedef struct dump_ctx {
    FILE *f;
    int64_t n_vocab;
    int failed;
    llm_detok *detok; /* streams text when set */
} dump_ctx;

static int on_token(int32_t tok, const float *logits, void *user) {
    dump_ctx *d = user;
    if (d->f && fwrite(logits, sizeof(float), (size_t)d->n_vocab, d->f) != (size_t)d->n_vocab) d->failed = 1;
    if (d->detok) {
        char buf[4096];
        size_t n = llm_detok_feed(d->detok, tok, buf, sizeof buf);
        fwrite(buf, 1, n, stdout);
        fflush(stdout);
    }
    return 0;
}

int cmd_generate(int argc, char **argv) {
    const char *model = getenv("NANOVL_MODEL"), *ids_arg = NULL, *dump = NULL, *prompt = NULL;
    const char *system = NULL, *tok_path = NULL;
    int raw = 0, print_ids = 0;
    llm_chat_options co = llm_chat_options_default();
    llm_generate_params gp = llm_generate_params_default();
    gp.max_tokens = 64;
    int64_t n_ctx = 0;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(k_usage, stdout);
            return 0;
        }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double d = 0;
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
        else if (!strcmp(a, "--max-tokens")) { NEED_VALUE(); if (!cli_num_option("generate", a, v, 1, 1e9, 1, &d)) return EXIT_USAGE; gp.max_tokens = (int64_t)d; }
        else if (!strcmp(a, "--temperature")) { NEED_VALUE(); if (!cli_num_option("generate", a, v, 0, 100, 0, &d)) return EXIT_USAGE; gp.sampler.temperature = (float)d; }
        else if (!strcmp(a, "--top-k")) { NEED_VALUE(); if (!cli_num_option("generate", a, v, 0, 1e9, 1, &d)) return EXIT_USAGE; gp.sampler.top_k = (int)d; }
        else if (!strcmp(a, "--top-p")) { NEED_VALUE(); if (!cli_num_option("generate", a, v, 0, 1, 0, &d)) return EXIT_USAGE; gp.sampler.top_p = (float)d; }
        else if (!strcmp(a, "--min-p")) { NEED_VALUE(); if (!cli_num_option("generate", a, v, 0, 1, 0, &d)) return EXIT_USAGE; gp.sampler.min_p = (float)d; }
        else if (!strcmp(a, "--seed")) { NEED_VALUE(); if (!cli_num_option("generate", a, v, 0, NVL_SEED_MAX, 1, &d)) return EXIT_USAGE; gp.sampler.seed = (uint64_t)d; }
        else if (!strcmp(a, "--dump-logits")) { NEED_VALUE(); dump = v; }
        else if (!strcmp(a, "--ctx")) { NEED_VALUE(); if (!cli_num_option("generate", a, v, 1, 1e9, 1, &d)) return EXIT_USAGE; n_ctx = (int64_t)d; }
        else if (!strcmp(a, "--print-ids")) print_ids = 1;
        else if (!strcmp(a, "--prompt")) { NEED_VALUE(); prompt = v; }
        else if (!strcmp(a, "--system")) { NEED_VALUE(); system = v; }
        else if (!strcmp(a, "--tokenizer")) { NEED_VALUE(); tok_path = v; }
        else if (!strcmp(a, "--raw")) raw = 1;
        else if (!strcmp(a, "--think")) co.think = 1;
        else if (!strcmp(a, "--no-think")) co.think = 0;
        else {
            fprintf(stderr, "nanovl generate: unknown or unsupported argument '%s'\n%s", a, k_usage);
            return EXIT_USAGE;
        }
#undef NEED_VALUE
    }
    cli_sampling_note("generate", &gp.sampler);
    if (!model || gp.max_tokens <= 0 || (ids_arg && prompt)) {
        fputs(k_usage, stderr);
        return EXIT_USAGE;
    }
    if ((raw || ids_arg) && (system || co.think >= 0)) { /* (the text goes in as is: no template to put them in) */
        fprintf(stderr, "nanovl generate: --system, --think and --no-think shape the chat template, which %s skips\n",
                raw ? "--raw" : "--ids");
        return EXIT_USAGE;
    }
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    llm_tokenizer *tok = NULL;
    nvl_err err = {0};
    if (ids_arg) {
        char *text = NULL;
        size_t tl = 0;
        if (!strcmp(ids_arg, "-")) {
            if (!(text = cli_read_stdin("generate", &tl))) return 1;
            if (memchr(text, 0, tl)) {
                fprintf(stderr, "nanovl generate: --ids -: stdin holds a NUL byte (ids are text: 1 2 3)\n");
                nvl_free(text);
                return EXIT_USAGE;
            }
            ids_arg = text;
        }
        const char *bad = NULL;
        const int parsed = cli_parse_ids(ids_arg, &ids, &n_ids, &bad);
        if (!parsed) cli_say_bad_id("generate", "--ids", bad);
        else if (n_ids == 0) fprintf(stderr, "nanovl generate: --ids holds no ids\n");
        nvl_free(text);
        if (!parsed || n_ids == 0) {
            nvl_free(ids);
            return EXIT_USAGE;
        }
    }
    if (!ids_arg || !print_ids) {
        nvl_status ts = llm_tokenizer_load(&tok, tok_path ? tok_path : model, &err);
        if (ts == NVL_ERR_NOT_FOUND && ids_arg && !tok_path) {
            print_ids = 1; /* ids in, no tokenizer in the checkpoint: ids out */
        } else if (ts != NVL_OK) {
            fprintf(stderr, "nanovl generate: %s\n", err.msg);
            nvl_free(ids);
            return 1;
        }
    }
    if (!ids_arg) {
        size_t len = 0;
        char *in = prompt ? NULL : cli_read_stdin("generate", &len);
        if (!prompt && !in) {
            llm_tokenizer_free(tok);
            return 1;
        }
        const char *user_text = prompt ? prompt : (in ? in : "");
        if (!*user_text) { /* (the chat template would wrap nothing: a mistake, not a question) */
            fprintf(stderr, "nanovl generate: the prompt is empty (%s; give --prompt TEXT, --ids, or text on stdin)\n",
                    prompt ? "--prompt \"\"" : "stdin was empty");
            nvl_free(in);
            llm_tokenizer_free(tok);
            return EXIT_USAGE;
        }
        char *rendered = NULL;
        size_t rl = 0;
        nvl_status st;
        if (raw) {
            st = llm_tokenizer_encode(tok, user_text, strlen(user_text), &ids, &n_ids, &err);
        } else {
            llm_chat_part sp = {LLM_PART_TEXT, system, 0}, up = {LLM_PART_TEXT, user_text, 0};
            llm_chat_message msgs[2] = {{"system", &sp, 1}, {"user", &up, 1}};
            st = llm_chat_render(system ? msgs : msgs + 1, system ? 2 : 1, &co, &rendered, &rl, &err);
            if (st == NVL_OK) st = llm_tokenizer_encode(tok, rendered, rl, &ids, &n_ids, &err);
        }
        nvl_free(rendered);
        nvl_free(in);
        if (st != NVL_OK || n_ids == 0) {
            fprintf(stderr, "nanovl generate: %s\n", st != NVL_OK ? err.msg : "empty prompt");
            nvl_free(ids);
            llm_tokenizer_free(tok);
            return st != NVL_OK ? 1 : EXIT_USAGE;
        }
    }
    int rc = 1;
    llm_model *m = NULL;
    llm_detok detok;
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
    int32_t stop[18];
    gp.n_stop = llm_chat_stop_ids(m, tok, stop, 18);
    if (tok && !print_ids) {
        llm_detok_init(&detok, tok);
        dc.detok = &detok;
    }
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
    if (dc.detok) {
        char tail[16];
        fwrite(tail, 1, llm_detok_flush(dc.detok, tail, sizeof tail), stdout);
    } else {
        for (int64_t i = 0; i < n_out; i++) printf("%s%d", i ? " " : "", out[i]);
    }
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
    llm_tokenizer_free(tok);
    return rc;
}
