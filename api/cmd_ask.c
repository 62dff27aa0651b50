/* `nanovl ask [--model DIR] FILE... "question"`: the main job. Streams the answer as it is
 * generated; several questions (-q) about the same files reuse the files' prefill; --per-page
 * answers the question for each page separately; --json prints one object per answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "base/alloc.h"
#include "cli_util.h"
#include "commands.h"
#include "wire.h"

static const char *k_usage_head =
    "usage: nanovl ask [--model DIR] FILE... \"question\" [options]\n"
    "       nanovl ask [--model DIR] FILE... -q \"question 1\" -q \"question 2\" [options]\n"
    "  the question is the last argument (it must not name a file) or -q; \"--\" ends the options,\n"
    "  so that a file or question may begin with '-'\n"
    "  --model DIR           checkpoint directory (default $NANOVL_MODEL)\n"
    "  -q, --question Q      a question (repeatable: later questions reuse the files' prefill);\n"
    "                        \"-\" reads it from stdin\n"
    "  --per-page            answer for each PDF page and image separately (long documents)\n"
    "  --system TEXT         a system message\n"
    "  --show-reasoning      print the <think> part too (default: the answer only)\n"
    "  --json                one JSON object per answer: answer, reasoning, usage, media, timings\n"
    "  --progress | --no-progress   progress on stderr (default: when stderr is a terminal)\n"
    "  --verbose             stage timings and usage on stderr\n";

typedef struct ask_out {
    int json, show_reasoning;
    int in_reasoning_shown; /* "<think>" printed */
    int answer_started;
    const char *prefix; /* written before the first text (NULL: none) */
    cli_progress prog;
} ask_out;

static int on_text(const char *s, size_t n, int reasoning, void *user) {
    ask_out *o = user;
    if (o->json) return 0;
    if (reasoning && !o->show_reasoning) {
        return 0;
    }
    cli_progress_clear(&o->prog);
    if (o->prefix) { /* "A: " once the answer (or its shown reasoning) comes: drawn earlier, progress would wipe it */
        fputs(o->prefix, stdout);
        o->prefix = NULL;
    }
    if (reasoning && !o->in_reasoning_shown) {
        fputs("<think>\n", stdout);
        o->in_reasoning_shown = 1;
    }
    if (!reasoning && o->in_reasoning_shown == 1) {
        fputs("\n</think>\n", stdout);
        o->in_reasoning_shown = 2;
    }
    if (!reasoning && !o->answer_started) { /* the model writes "</think>\n\n" before the answer */
        while (n && (*s == '\n' || *s == ' ')) {
            s++;
            n--;
        }
        if (!n) return 0;
        o->answer_started = 1;
    }
    fwrite(s, 1, n, stdout);
    fflush(stdout);
    cli_progress_wrote(&o->prog, stdout, s, n);
    return 0;
}

static void on_notice(const char *msg, void *user) {
    ask_out *o = user;
    cli_progress_clear(&o->prog);
    fprintf(stderr, "nanovl ask: note: %s\n", msg);
}

static void on_progress(const api_progress *pr, void *user) {
    ask_out *o = user;
    cli_on_progress(pr, &o->prog);
}

static void print_json(const api_ask_result *r, const char *question, const char *name, int page) {
    cJSON *o = api_result_to_json(r);
    if (!o) return;
    if (question) cJSON_AddStringToObject(o, "question", question);
    if (name) cJSON_AddStringToObject(o, "file", name);
    if (page) cJSON_AddNumberToObject(o, "page", page);
    char *s = api_json_print(o, NULL);
    if (s) {
        puts(s);
        nvl_free(s);
    }
    fflush(stdout);
    cJSON_Delete(o);
}

static void print_verbose(const api_ask_result *r) {
    fprintf(stderr, "prompt %lld tokens (%lld image, %lld reused), %lld generated; media %.3f s, prefix wait %.3f s, "
                    "vision %.3f s, prefill %.3f s, generation %.3f s (%.1f tokens/s)\n",
            (long long)r->n_prompt, (long long)r->n_image_tokens, (long long)r->n_cached, (long long)r->n_ids, r->t_media,
            r->t_wait, r->t_vision, r->t_prefill, r->t_generate, r->t_generate > 0 ? (double)r->n_ids / r->t_generate : 0.0);
}

typedef struct page_ctx {
    ask_out *o;
    const char *const *qs; /* the questions, each page asked each in turn */
    int n_q, qi;           /* qi: the running unit's question */
    const char *last_name; /* the previous unit's page (a new one starts at question 0) */
    int last_page;
    int started; /* index of the last unit begun (on_page_start) */
    int verbose;
} page_ctx;

static int on_page(int index, int n_total, const char *name, int page, const api_ask_result *r, void *user) {
    page_ctx *pc = user;
    (void)index;
    (void)n_total;
    cli_progress_clear(&pc->o->prog);
    if (pc->o->json) print_json(r, pc->qs[pc->qi], name, page);
    else {
        fputs(pc->o->in_reasoning_shown == 1 ? "\n</think>\n\n" : "\n\n", stdout); /* reasoning cut short */
        cli_progress_wrote(&pc->o->prog, stdout, "\n", 1);
    }
    if (pc->verbose) print_verbose(r);
    pc->o->answer_started = 0;
    pc->o->in_reasoning_shown = 0;
    return 0;
}

static void on_page_start(int index, int n_total, const char *name, int page, void *user) {
    page_ctx *pc = user;
    cli_progress_clear(&pc->o->prog);
    const int same = pc->last_name && name == pc->last_name && page == pc->last_page;
    pc->qi = same && pc->qi + 1 < pc->n_q ? pc->qi + 1 : 0;
    pc->last_name = name;
    pc->last_page = page;
    pc->started = index;
    if (!pc->o->json) {
        if (pc->qi == 0) {
            if (page) printf("--- %s, page %d ---\n", name, page);
            else printf("--- %s ---\n", name);
        }
        if (pc->n_q > 1) printf("Q: %s\n", pc->qs[pc->qi]);
        fflush(stdout);
    }
    snprintf(pc->o->prog.prefix, sizeof pc->o->prog.prefix, "[%d/%d] ", index + 1, n_total);
}

static int on_page_error(int index, int n_total, const char *name, int page, nvl_status st, const char *msg, void *user) {
    (void)n_total;
    page_ctx *pc = user;
    (void)index;
    cli_progress_clear(&pc->o->prog);
    if (pc->o->json) { /* with several questions, which one (an input that failed as a whole: none) */
        cJSON *jo = api_page_error_to_json(name, page, st, msg);
        if (jo && pc->n_q > 1 && index == pc->started) cJSON_AddStringToObject(jo, "question", pc->qs[pc->qi]);
        api_json_line(stdout, jo);
    }
    fprintf(stderr, "%snanovl ask: %s\n", pc->o->prog.midline ? "\n" : "", msg); /* (below an answer cut short) */
    pc->o->prog.midline = 0;
    return 0;
}

int cmd_ask(int argc, char **argv) {
    const char *model = getenv("NANOVL_MODEL"), *system = NULL;
    api_ask_params p = api_ask_params_default();
    int verbose = 0, per_page = 0, force_progress = -1;
    ask_out o = {0};
    const char **pos = nvl_calloc((size_t)argc + 1, sizeof *pos), **qs = nvl_calloc((size_t)argc + 1, sizeof *qs);
    int n_pos = 0, n_q = 0, rc = 0;
    char *stdin_q = NULL; /* "-": the question is read from stdin */
    if (!pos || !qs) return 1;
    int opts_done = 0; /* after "--" every argument is a file or the question */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (opts_done) {
            pos[n_pos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            opts_done = 1;
            continue;
        }
        int k = cli_ask_option(argc, argv, &i, &p, &model, "ask", k_usage_head);
        if (k == 2) goto out;
        if (k < 0) { rc = EXIT_USAGE; goto out; }
        if (k > 0) continue;
        if ((!strcmp(a, "-q") || !strcmp(a, "--question")) && v) qs[n_q++] = argv[++i];
        else if (!strcmp(a, "--system") && v) system = argv[++i];
        else if (!strcmp(a, "--per-page")) per_page = 1;
        else if (!strcmp(a, "--show-reasoning")) o.show_reasoning = 1;
        else if (!strcmp(a, "--json")) o.json = 1;
        else if (!strcmp(a, "--verbose")) verbose = 1;
        else if (!strcmp(a, "--progress")) force_progress = 1;
        else if (!strcmp(a, "--no-progress")) force_progress = 0;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "nanovl ask: unknown or incomplete option '%s'\n%s%s", a, k_usage_head, cli_ask_options_help);
            rc = EXIT_USAGE;
            goto out;
        } else pos[n_pos++] = a;
    }
    if (n_q == 0 && n_pos > 0) { /* the last positional is the question, unless it names a file */
        struct stat sb;
        if (stat(pos[n_pos - 1], &sb) == 0) {
            fprintf(stderr,
                    "nanovl ask: no question: '%s' is a file; give the question after the files (or with -q \"...\")\n",
                    pos[n_pos - 1]);
            rc = EXIT_USAGE;
            goto out;
        }
        qs[n_q++] = pos[--n_pos];
    }
    for (int q = 0; q < n_q; q++)
        if (!strcmp(qs[q], "-")) {
            if (!stdin_q) {
                size_t len = 0;
                stdin_q = cli_read_stdin(&len);
                while (stdin_q && len && (stdin_q[len - 1] == '\n' || stdin_q[len - 1] == '\r')) stdin_q[--len] = 0;
                if (!stdin_q || !len) {
                    fprintf(stderr, "nanovl ask: the question on stdin is empty\n");
                    rc = EXIT_USAGE; /* (stdin_q is freed at out) */
                    goto out;
                }
            }
            qs[q] = stdin_q;
        }
    if (!model || n_q < 1 || (per_page && n_pos < 1)) {
        if (!model) fprintf(stderr, "nanovl ask: no model: pass --model DIR or set NANOVL_MODEL\n");
        else if (n_q < 1) fprintf(stderr, "nanovl ask: no question\n");
        else fprintf(stderr, "nanovl ask: --per-page needs files\n");
        fprintf(stderr, "%s%s", k_usage_head, cli_ask_options_help);
        rc = EXIT_USAGE;
        goto out;
    }
    cli_progress_init(&o.prog, force_progress);
    nvl_err err = {0};
    api_engine *e = NULL;
    cli_progress_show(&o.prog, 1, "loading %s", model);
    if (api_engine_open(&e, model, &err) != NVL_OK) {
        cli_progress_clear(&o.prog);
        fprintf(stderr, "nanovl ask: %s: %s\n", model, err.msg);
        rc = 1;
        goto out;
    }
    cli_progress_clear(&o.prog);
    api_callbacks cb = {.on_text = on_text, .on_progress = on_progress, .on_notice = on_notice, .user = &o};
    if (per_page) {
        api_media *media = nvl_calloc((size_t)n_pos, sizeof *media);
        if (!media) { rc = 1; goto close; }
        for (int f = 0; f < n_pos; f++) media[f].path = pos[f];
        /* each page asked every question in turn, its prefill kept between them */
        page_ctx pc = {.o = &o, .qs = qs, .n_q = n_q, .verbose = verbose, .started = -1};
        api_pages_hooks h = {.on_page_start = on_page_start, .on_page = on_page, .on_page_error = on_page_error,
                             .cb = &cb, .user = &pc, .prompts = qs, .n_prompts = n_q};
        int n_failed = 0;
        nvl_status st = api_pages_run(e, media, n_pos, qs[0], &p, &h, &n_failed, &err);
        if (st != NVL_OK) {
            fprintf(stderr, "nanovl ask: %s\n", err.msg);
            rc = 1;
        }
        if (n_failed) rc = 1;
        nvl_free(media);
        goto close;
    }
    api_part *parts = nvl_calloc((size_t)n_pos + 1, sizeof *parts);
    if (!parts) { rc = 1; goto close; }
    for (int f = 0; f < n_pos; f++) {
        parts[f].kind = API_PART_MEDIA;
        parts[f].media.path = pos[f];
    }
    for (int q = 0; q < n_q; q++) {
        parts[n_pos] = (api_part){.kind = API_PART_TEXT, .text = qs[q]};
        api_part sys_part = {.kind = API_PART_TEXT, .text = system};
        api_message msgs[2] = {{"system", &sys_part, 1}, {"user", parts, n_pos + 1}};
        if (!o.json && n_q > 1) {
            printf("%sQ: %s\n", q ? "\n" : "", qs[q]);
            fflush(stdout);
            o.prefix = "A: ";
        }
        o.answer_started = 0;
        o.in_reasoning_shown = 0;
        api_ask_result r;
        nvl_status st = api_engine_run(e, system ? msgs : msgs + 1, system ? 2 : 1, &p, &cb, &r, &err);
        cli_progress_clear(&o.prog);
        if (st != NVL_OK) {
            fprintf(stderr, "%snanovl ask: %s\n", o.answer_started && !o.json ? "\n" : "", err.msg);
            o.prog.midline = 0; /* (that line ended the answer's on a terminal) */
            o.prefix = NULL;
            if (o.json) { /* a line per question, failed ones too: {"question", "error": {code, message}} (as --per-page) */
                cJSON *jo = cJSON_CreateObject();
                if (jo) cJSON_AddStringToObject(jo, "question", qs[q]);
                cJSON *je = jo ? cJSON_AddObjectToObject(jo, "error") : NULL;
                if (je) {
                    cJSON_AddStringToObject(je, "code", api_status_code(st));
                    cJSON_AddStringToObject(je, "message", err.msg);
                }
                api_json_line(stdout, jo);
            }
            api_ask_result_free(&r);
            rc = 1;
            if (st == NVL_ERR_CANCELLED) break;
            continue;
        }
        if (o.json) print_json(&r, qs[q], NULL, 0); /* "question" in single- and multi-question output alike */
        else {
            if (o.prefix) fputs(o.prefix, stdout); /* an empty answer */
            o.prefix = NULL;
            if (o.show_reasoning && o.in_reasoning_shown == 1) fputs("\n</think>\n", stdout);
            fputs("\n", stdout);
            fflush(stdout);
            cli_progress_wrote(&o.prog, stdout, "\n", 1);
        }
        if (verbose) print_verbose(&r);
        api_ask_result_free(&r);
    }
    nvl_free(parts);
close:
    api_engine_close(e);
out:
    nvl_free(stdin_q);
    nvl_free(pos);
    nvl_free(qs);
    return rc;
}
