/* `nanovl ask [--model DIR] FILE... "question"`: the main job. Streams the answer as it is
 * generated; stage timings and usage go to stderr with --verbose, or into the JSON object with
 * --json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "base/alloc.h"
#include "commands.h"
#include "tokenizer.h"

static const char *k_usage =
    "usage: nanovl ask [--model DIR] FILE... \"question\" [options]\n"
    "  --model DIR           checkpoint directory (default $NANOVL_MODEL)\n"
    "  --pages 1-3,7         PDF pages (default all)     --dpi D | --long-side N   PDF render size\n"
    "  --max-tiles N         tiles per image, 1..12      --fps F --max-frames N     video sampling\n"
    "  --evs Q               video token pruning rate 0..1 (default: the checkpoint's)\n"
    "  --think | --no-think  reasoning on (default) or off\n"
    "  --max-tokens N        (default 1024)              --temperature T --top-p P --top-k K --seed S\n"
    "  --json                one JSON object: answer, reasoning, usage, timings\n"
    "  --verbose             stage timings and usage on stderr\n";

typedef struct stream_ctx {
    llm_detok detok;
    int quiet; /* --json: collect, do not print */
    char *buf;
    size_t n, cap;
} stream_ctx;

/* Prints (unless quiet) and collects n bytes of answer text; non-zero on OOM. */
static int emit(stream_ctx *s, const char *out, size_t n) {
    if (!s->quiet) {
        fwrite(out, 1, n, stdout);
        fflush(stdout);
    }
    if (s->n + n + 1 > s->cap) {
        size_t nc = (s->cap ? s->cap * 2 : 4096) + n;
        char *nb = nvl_realloc(s->buf, nc);
        if (!nb) return 1;
        s->buf = nb;
        s->cap = nc;
    }
    memcpy(s->buf + s->n, out, n);
    s->n += n;
    s->buf[s->n] = 0;
    return 0;
}

static int on_token(int32_t tok, const float *logits, void *user) {
    (void)logits;
    stream_ctx *s = user;
    char out[4096];
    size_t n = llm_detok_feed(&s->detok, tok, out, sizeof out);
    return n ? emit(s, out, n) : 0;
}

static void json_str(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') printf("\\n");
        else if (c == '\t') printf("\\t");
        else if (c == '\r') printf("\\r");
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

int cmd_ask(int argc, char **argv) {
    const char *model = getenv("NANOVL_MODEL");
    api_ask_params p = api_ask_params_default();
    int json = 0, verbose = 0;
    const char **pos = nvl_calloc((size_t)argc + 1, sizeof *pos);
    int n_pos = 0;
    if (!pos) return 1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define VAL() (i++, v)
        if (!strcmp(a, "--model") && v) model = VAL();
        else if (!strcmp(a, "--pages") && v) p.pages = VAL();
        else if (!strcmp(a, "--dpi") && v) p.dpi = atof(VAL());
        else if (!strcmp(a, "--long-side") && v) p.long_side = atoi(VAL());
        else if (!strcmp(a, "--max-tiles") && v) p.max_tiles = atoi(VAL());
        else if (!strcmp(a, "--fps") && v) p.fps = atof(VAL());
        else if (!strcmp(a, "--max-frames") && v) p.max_frames = atoi(VAL());
        else if (!strcmp(a, "--evs") && v) p.evs = atof(VAL());
        else if (!strcmp(a, "--max-tokens") && v) p.max_tokens = atoll(VAL());
        else if (!strcmp(a, "--temperature") && v) p.sampler.temperature = strtof(VAL(), NULL);
        else if (!strcmp(a, "--top-p") && v) p.sampler.top_p = strtof(VAL(), NULL);
        else if (!strcmp(a, "--top-k") && v) p.sampler.top_k = atoi(VAL());
        else if (!strcmp(a, "--seed") && v) p.sampler.seed = strtoull(VAL(), NULL, 10);
        else if (!strcmp(a, "--think")) p.think = 1;
        else if (!strcmp(a, "--no-think")) p.think = 0;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--verbose")) verbose = 1;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "nanovl ask: unknown or incomplete option '%s'\n%s", a, k_usage);
            nvl_free(pos);
            return EXIT_USAGE;
        } else pos[n_pos++] = a;
#undef VAL
    }
    if (!model || n_pos < 1 || p.max_tokens <= 0 || (p.max_tiles && (p.max_tiles < 1 || p.max_tiles > 12))) {
        fputs(k_usage, stderr);
        nvl_free(pos);
        return EXIT_USAGE;
    }
    const char *question = pos[n_pos - 1];
    nvl_err err = {0};
    api_engine *e = NULL;
    if (api_engine_open(&e, model, &err) != NVL_OK) {
        fprintf(stderr, "nanovl ask: %s: %s\n", model, err.msg);
        nvl_free(pos);
        return 1;
    }
    stream_ctx sc = {0};
    llm_detok_init(&sc.detok, api_engine_tokenizer(e));
    sc.quiet = json;
    api_ask_result r;
    nvl_status st = api_engine_ask(e, pos, n_pos - 1, question, &p, on_token, &sc, &r, &err);
    int rc = 0;
    if (st != NVL_OK) {
        fprintf(stderr, "%snanovl ask: %s\n", sc.n && !json ? "\n" : "", err.msg);
        rc = 1;
    } else {
        char tail[16];
        size_t tn = llm_detok_flush(&sc.detok, tail, sizeof tail);
        if (tn) emit(&sc, tail, tn);
        if (!json) printf("\n");
        /* the visible answer follows the reasoning's </think> when there is one */
        const char *ans = sc.buf ? sc.buf : "";
        const char *end_think = strstr(ans, "</think>");
        if (json) {
            printf("{\"answer\": ");
            const char *a2 = end_think ? end_think + 8 : ans;
            while (*a2 == '\n' || *a2 == ' ') a2++;
            json_str(a2, strlen(a2));
            printf(", \"reasoning\": ");
            if (end_think) json_str(ans, (size_t)(end_think - ans));
            else printf("null");
            printf(", \"usage\": {\"prompt_tokens\": %lld, \"image_tokens\": %lld, \"completion_tokens\": %lld}",
                   (long long)r.n_prompt, (long long)r.n_image_tokens, (long long)r.n_ids);
            printf(", \"timings_s\": {\"media\": %.4f, \"vision\": %.4f, \"prefill\": %.4f, \"generation\": %.4f}}\n",
                   r.t_media, r.t_vision, r.t_prefill, r.t_generate);
        }
        if (verbose)
            fprintf(stderr, "prompt %lld tokens (%lld image), %lld generated; media %.3f s, vision %.3f s, prefill %.3f s, "
                            "generation %.3f s (%.1f tokens/s)\n",
                    (long long)r.n_prompt, (long long)r.n_image_tokens, (long long)r.n_ids, r.t_media, r.t_vision,
                    r.t_prefill, r.t_generate, r.t_generate > 0 ? (double)r.n_ids / r.t_generate : 0.0);
        api_ask_result_free(&r);
    }
    nvl_free(sc.buf);
    nvl_free(pos);
    api_engine_close(e);
    return rc;
}
