/* `nanovl ask [--model DIR] FILE... "question"`: the main job. Streams the answer as it is
 * generated; several questions (-q) about the same files reuse the files' prefill; --per-page
 * answers the question for each page separately; --chat holds a conversation about the files, a
 * question per line of stdin; --json prints one object per answer. */
#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "base/alloc.h"
#include "cli_util.h"
#include "commands.h"
#include "media.h"
#include "wire.h"

static const char *k_usage_head =
    "usage: nanovl ask [--model DIR] FILE... \"question\" [options]\n"
    "       nanovl ask [--model DIR] FILE... -q \"question 1\" -q \"question 2\" [options]\n"
    "  the question is the last argument (it must not name a file) or -q; \"--\" ends the options,\n"
    "  so that a file or question may begin with '-'; the file \"-\" is read from stdin\n"
    "  (cat scan.pdf | nanovl ask - \"question\"; named \"-\" in the output)\n"
    "  --model DIR           checkpoint directory (default $NANOVL_MODEL)\n"
    "  -q, --question Q      a question (repeatable: later questions reuse the files' prefill);\n"
    "                        \"-\" reads it from stdin\n"
    "  --per-page            answer for each PDF page and image separately (long documents)\n"
    "  -i, --chat            a conversation about the files: a question per line of stdin, each\n"
    "                        answered seeing the earlier questions and answers (the files' vision\n"
    "                        runs once); every argument is a file, -q gives opening questions;\n"
    "                        /reset starts again, /help lists these, /exit, /quit or end of input\n"
    "                        ends; ^C stops an answer, at the prompt it ends (exit 130); exit 1 if\n"
    "                        a turn failed (a file that cannot be read ends the conversation)\n"
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
            r->t_wait, r->t_vision, r->t_prefill, r->t_generate, api_decode_tokens_per_s(r));
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

// ---------------------------------------------------------------------------
// --chat: a conversation about the files, a question per line of stdin

#define CHAT_MAX_LINE (1 << 20) /* bytes of one question (a stray binary on stdin is not a question) */

/* SIGINT during an answer stops it (api_callbacks.cancel) and the conversation goes on; SIGINT at
 * the prompt, or SIGTERM, ends it (exit 130); a second signal while an answer is being stopped
 * exits at once (a step nothing interrupts: cli_force_exit_on_second_signal). */
static volatile sig_atomic_t g_chat_answering, g_chat_quit;
/* api_callbacks.cancel is a volatile int *: sig_atomic_t is int here, so the handler may write it */
_Static_assert(_Generic((sig_atomic_t)0, int: 1, default: 0), "sig_atomic_t is int");
static volatile sig_atomic_t g_chat_cancel;
static void chat_on_signal(int sig) {
    if (g_chat_answering && g_chat_cancel) cli_force_exit_on_second_signal("ask");
    if (sig != SIGINT || !g_chat_answering) g_chat_quit = 1;
    if (g_chat_answering) g_chat_cancel = 1;
}

/* One line of stdin into *line (no newline; trailing blanks and CRs dropped). Returns 1 with a
 * line, 0 at the end of input, -1 when a signal ended the read (g_chat_quit) or a read failed, 2
 * for a line longer than CHAT_MAX_LINE bytes, 3 for one holding a NUL byte (each read to its end
 * and dropped: binary bytes are not a question; *line then holds its first CHAT_MAX_LINE bytes, or
 * its bytes up to the NUL, terminated). */
static int chat_read_line(char **line, size_t *cap) {
    size_t n = 0;
    int c, too_long = 0, nul = 0;
    for (;;) {
        errno = 0;
        c = getc(stdin);
        if (c == EOF) {
            if (ferror(stdin) || g_chat_quit) return -1;
            if (n == 0 && !too_long) return 0;
            break; /* a last line without a newline */
        }
        if (c == '\n') break;
        nul |= c == 0;
        if (too_long) continue;
        if (n == CHAT_MAX_LINE) {
            too_long = 1;
            continue;
        }
        if (n + 2 > *cap) { /* (room for the byte and the terminating NUL) */
            size_t nc = *cap ? *cap * 2 : 256;
            if (nc > CHAT_MAX_LINE + 1) nc = CHAT_MAX_LINE + 1;
            char *nl = nvl_realloc(*line, nc);
            if (!nl) return -1;
            *line = nl;
            *cap = nc;
        }
        (*line)[n++] = (char)c;
    }
    if ((too_long || nul) && *line) (*line)[n] = 0; /* (what was kept of it, for a --json record) */
    if (too_long) return 2;
    if (nul) return 3;
    if (!*line) { /* (an empty line: nothing was stored yet) */
        if (!(*line = nvl_malloc(256))) return -1;
        *cap = 256;
    }
    while (n && ((*line)[n - 1] == '\r' || (*line)[n - 1] == ' ' || (*line)[n - 1] == '\t')) n--;
    (*line)[n] = 0;
    return 1;
}

/* The conversation so far: turns[0] the first question, then answer, question, ... (n odd while a
 * question waits for its answer). */
typedef struct chat_hist {
    char **turns;
    size_t *lens; /* bytes of each (an answer may hold a NUL byte: it goes back whole) */
    int n, cap;
} chat_hist;

static int chat_push(chat_hist *h, const char *text, size_t len) {
    if (h->n == h->cap) {
        int nc = h->cap ? h->cap * 2 : 8;
        char **nt = nvl_realloc(h->turns, (size_t)nc * sizeof *nt);
        if (nt) h->turns = nt;
        size_t *nl = nt ? nvl_realloc(h->lens, (size_t)nc * sizeof *nl) : NULL;
        if (!nl) return -1;
        h->lens = nl;
        h->cap = nc;
    }
    char *d = nvl_malloc(len + 1);
    if (!d) return -1;
    memcpy(d, text, len);
    d[len] = 0;
    h->lens[h->n] = len;
    h->turns[h->n++] = d;
    return 0;
}

static void chat_clear(chat_hist *h) {
    for (int i = 0; i < h->n; i++) nvl_free(h->turns[i]);
    h->n = 0;
}

/* Asks h's last question (h->n odd) with the conversation before it: the system message (if any),
 * the files with the first question, then each answer and question in turn (api_message roles
 * "assistant" and "user": the chat template drops the earlier answers' reasoning, so only their
 * text is kept). On success the answer joins h; a failed or stopped answer leaves h without its
 * question. Returns 0 answered, 1 failed or stopped, 2 failed on the files themselves (a file that
 * cannot be read, decoded or opened, past a decoder's limit: every later turn would fail so). */
static int chat_turn(api_engine *e, ask_out *o, const api_callbacks *cb, const api_ask_params *p, api_part *files,
                     int n_files, const char *system, chat_hist *h, int turn, int verbose) {
    const int n_msgs = (system ? 1 : 0) + h->n;
    api_message *msgs = nvl_calloc((size_t)n_msgs, sizeof *msgs);
    api_part *texts = nvl_calloc((size_t)h->n + 1, sizeof *texts);
    api_part *first = nvl_calloc((size_t)n_files + 1, sizeof *first);
    const char *question = h->turns[h->n - 1];
    int rc = 1;
    if (!msgs || !texts || !first) {
        fprintf(stderr, "nanovl ask: out of memory\n");
        goto done;
    }
    int m = 0;
    if (system) {
        texts[h->n] = (api_part){.kind = API_PART_TEXT, .text = system};
        msgs[m++] = (api_message){"system", &texts[h->n], 1};
    }
    memcpy(first, files, (size_t)n_files * sizeof *first);
    first[n_files] = (api_part){.kind = API_PART_TEXT, .text = h->turns[0], .text_len = h->lens[0]};
    msgs[m++] = (api_message){"user", first, n_files + 1};
    for (int t = 1; t < h->n; t++) {
        texts[t] = (api_part){.kind = API_PART_TEXT, .text = h->turns[t], .text_len = h->lens[t]};
        msgs[m++] = (api_message){t % 2 ? "assistant" : "user", &texts[t], 1};
    }
    const int echo = !o->json && !isatty(STDIN_FILENO); /* questions from a pipe: a transcript */
    if (echo) {
        printf("%sQ: %s\n", turn > 1 ? "\n" : "", question);
        fflush(stdout);
        o->prefix = "A: ";
    }
    o->answer_started = 0;
    o->in_reasoning_shown = 0;
    api_ask_result r;
    nvl_err err = {0};
    g_chat_cancel = 0;
    g_chat_answering = 1;
    if (g_chat_quit) g_chat_cancel = 1; /* (a signal between the line's reading and here) */
    nvl_status st = api_engine_run(e, msgs, n_msgs, p, cb, &r, &err);
    g_chat_answering = 0;
    g_chat_cancel = 0; /* (a signal at the prompt now ends the conversation, as it should) */
    cli_progress_clear(&o->prog);
    const int stopped = st == NVL_OK && r.finish_reason && !strcmp(r.finish_reason, "cancelled");
    if (st != NVL_OK) {
        fprintf(stderr, "%snanovl ask: %s\n", (o->answer_started && !o->json) || (st == NVL_ERR_CANCELLED && isatty(STDIN_FILENO)) ? "\n" : "",
                st == NVL_ERR_CANCELLED ? "the answer was stopped" : err.msg);
        o->prog.midline = 0;
        o->prefix = NULL;
        if (o->json) {
            cJSON *jo = cJSON_CreateObject();
            if (jo) {
                cJSON_AddStringToObject(jo, "question", question);
                cJSON_AddNumberToObject(jo, "turn", turn);
            }
            cJSON *je = jo ? cJSON_AddObjectToObject(jo, "error") : NULL;
            if (je) {
                cJSON_AddStringToObject(je, "code", api_status_code(st));
                cJSON_AddStringToObject(je, "message", err.msg);
            }
            api_json_line(stdout, jo);
        }
        if (st == NVL_ERR_LIMIT && strstr(err.msg, "context budget") && h->n > 1) /* (with earlier turns to drop) */
            fprintf(stderr, "nanovl ask: /reset starts the conversation again (the files stay read)\n");
        const int budget = st == NVL_ERR_LIMIT && (strstr(err.msg, "context budget") || strstr(err.msg, "--seq-mem"));
        if (st == NVL_ERR_FORMAT || st == NVL_ERR_TRUNCATED || st == NVL_ERR_UNSUPPORTED || st == NVL_ERR_IO ||
            st == NVL_ERR_NOT_FOUND || st == NVL_ERR_ENCRYPTED || st == NVL_ERR_TIMEOUT || (st == NVL_ERR_LIMIT && !budget))
            rc = 2;
        api_ask_result_free(&r);
        goto done;
    }
    if (o->json) {
        cJSON *jo = api_result_to_json(&r);
        if (jo) {
            cJSON_AddStringToObject(jo, "question", question);
            cJSON_AddNumberToObject(jo, "turn", turn);
            api_json_line(stdout, jo);
        }
    } else {
        if (o->prefix) fputs(o->prefix, stdout); /* an empty answer */
        o->prefix = NULL;
        if (o->show_reasoning && o->in_reasoning_shown == 1) fputs("\n</think>\n", stdout);
        fputs("\n", stdout);
        fflush(stdout);
        cli_progress_wrote(&o->prog, stdout, "\n", 1);
    }
    if (stopped) fprintf(stderr, "nanovl ask: the answer was stopped; it is left out of the conversation\n");
    if (verbose) print_verbose(&r);
    if (!stopped && chat_push(h, r.answer ? r.answer : "", r.answer ? api_answer_len(&r) : 0) == 0) rc = 0;
    else if (!stopped) fprintf(stderr, "nanovl ask: out of memory\n");
    api_ask_result_free(&r);
done:
    if (rc) nvl_free(h->turns[--h->n]); /* the question leaves with its failed answer */
    if (rc == 2) fprintf(stderr, "nanovl ask: the conversation ends: its files cannot be read\n");
    nvl_free(msgs);
    nvl_free(texts);
    nvl_free(first);
    return rc;
}

typedef enum chat_cmd { CHAT_QUESTION, CHAT_EXIT, CHAT_RESET, CHAT_HELP, CHAT_UNKNOWN, CHAT_ARGS } chat_cmd;

/* What a line of the conversation is (its leading blanks dropped): a command when it begins with
 * '/' and a word of letters (any case: "/RESET") followed by a blank or the end (CHAT_ARGS: a
 * known one with more after it; CHAT_UNKNOWN: not one of ours, "/foo", rather than a question
 * sent by a typo). Anything else -- "/etc/hosts holds what?" -- is a question. */
static chat_cmd chat_command(const char *line) {
    if (line[0] != '/') return CHAT_QUESTION;
    size_t w = 1;
    while (isalpha((unsigned char)line[w])) w++;
    if (w == 1 || (line[w] && line[w] != ' ' && line[w] != '\t')) return CHAT_QUESTION;
    static const struct { const char *name; chat_cmd cmd; } k[] = {
        {"/exit", CHAT_EXIT}, {"/quit", CHAT_EXIT}, {"/reset", CHAT_RESET}, {"/help", CHAT_HELP}};
    chat_cmd cmd = CHAT_UNKNOWN;
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        if (strlen(k[i].name) == w && !strncasecmp(line, k[i].name, w)) cmd = k[i].cmd;
    const char *rest = line + w;
    while (*rest == ' ' || *rest == '\t') rest++;
    return *rest && cmd != CHAT_UNKNOWN ? CHAT_ARGS : cmd;
}

/* The conversation: the opening questions (qs), then a question per line of stdin until its end,
 * /exit or /quit, or a signal. Returns the exit status: 0 every question answered, 1 one failed
 * or was stopped, 130 ended by a signal. */
static int chat_run(api_engine *e, ask_out *o, const api_callbacks *cb0, const api_ask_params *p, api_part *files,
                    int n_files, const char *system, const char **qs, int n_q, int verbose) {
    api_callbacks cb = *cb0;
    cb.cancel = &g_chat_cancel;
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = chat_on_signal; /* no SA_RESTART: a signal at the prompt ends the read */
    sigemptyset(&sa.sa_mask);
    g_chat_quit = g_chat_answering = 0;
    g_chat_cancel = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    const int tty = isatty(STDIN_FILENO);
    chat_hist h = {0};
    char *line = NULL;
    size_t cap = 0;
    int rc = 0, turn = 0, qi = 0, gap = 0; /* gap: an answer since the last prompt (a blank line before it) */
    if (tty && !o->json)
        fprintf(stderr, "a conversation about %d file%s: a question per line; /reset starts again, /exit or ^D ends, "
                        "^C stops an answer\n", n_files, n_files == 1 ? "" : "s");
    while (!g_chat_quit) {
        const char *q;
        if (qi < n_q) {
            q = qs[qi++];
            if (tty && !o->json) fprintf(stderr, "%s> %s\n", gap ? "\n" : "", q); /* (as if typed) */
        } else {
            if (tty) {
                fputs(gap ? "\n> " : "> ", stderr);
                fflush(stderr);
            }
            gap = 0;
            const int got = chat_read_line(&line, &cap);
            if (got == 0 || got < 0) {
                if (tty) fputs("\n", stderr);
                if (got < 0 && !g_chat_quit) {
                    fprintf(stderr, "nanovl ask: reading the question: %s\n", strerror(errno ? errno : EIO));
                    rc = 1;
                }
                break;
            }
            if (got >= 2) {
                char msg[160];
                if (got == 2) snprintf(msg, sizeof msg, "a question of more than %d bytes was left out", CHAT_MAX_LINE);
                else snprintf(msg, sizeof msg, "a line holding a NUL byte was left out (binary data is not a question)");
                fprintf(stderr, "nanovl ask: %s\n", msg);
                if (o->json) { /* its record, as a failed question's: the line's start, its turn */
                    cJSON *jo = cJSON_CreateObject();
                    if (jo) {
                        char head[204];
                        snprintf(head, sizeof head, "%.200s", line ? line : "");
                        cJSON_AddStringToObject(jo, "question", head);
                        cJSON_AddNumberToObject(jo, "turn", ++turn);
                        cJSON *je = cJSON_AddObjectToObject(jo, "error");
                        if (je) {
                            cJSON_AddStringToObject(je, "code", api_status_code(got == 2 ? NVL_ERR_LIMIT : NVL_ERR_INVALID_ARG));
                            cJSON_AddStringToObject(je, "message", msg);
                        }
                    }
                    api_json_line(stdout, jo);
                }
                rc = 1;
                continue;
            }
            q = line;
            while (*q == ' ' || *q == '\t') q++;
            if (!*q) continue;
            const chat_cmd cmd = chat_command(q);
            if (cmd == CHAT_EXIT) break;
            if (cmd == CHAT_RESET) {
                chat_clear(&h);
                if (tty) fprintf(stderr, "(a new conversation about the same files)\n");
                continue;
            }
            if (cmd == CHAT_HELP) {
                fprintf(stderr, "a question per line; /reset starts the conversation again (the files stay read); "
                                "/exit, /quit or end of input ends; ^C stops an answer, at the prompt it ends (exit 130)\n");
                continue;
            }
            if (cmd == CHAT_UNKNOWN) {
                size_t w = strcspn(q, " \t");
                fprintf(stderr, "nanovl ask: %.*s is not a command (/help lists them; to ask a question that begins so, "
                                "put a word before it)\n", (int)(w > 64 ? 64 : w), q);
                continue;
            }
            if (cmd == CHAT_ARGS) {
                size_t w = strcspn(q, " \t");
                fprintf(stderr, "nanovl ask: %.*s takes nothing after it\n", (int)w, q);
                continue;
            }
        }
        if (chat_push(&h, q, strlen(q)) != 0) {
            fprintf(stderr, "nanovl ask: out of memory\n");
            rc = 1;
            break;
        }
        const int tr = chat_turn(e, o, &cb, p, files, n_files, system, &h, ++turn, verbose);
        if (tr != 0) rc = 1;
        if (tr == 2) break;
        gap = 1;
    }
    if (g_chat_quit) rc = 130;
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    chat_clear(&h);
    nvl_free(h.turns);
    nvl_free(h.lens);
    nvl_free(line);
    return rc;
}

int cmd_ask(int argc, char **argv) {
    const char *model = getenv("NANOVL_MODEL"), *system = NULL;
    api_ask_params p = api_ask_params_default();
    int verbose = 0, per_page = 0, chat = 0, force_progress = -1;
    ask_out o = {0};
    const char **pos = nvl_calloc((size_t)argc + 1, sizeof *pos), **qs = nvl_calloc((size_t)argc + 1, sizeof *qs);
    int n_pos = 0, n_q = 0, rc = 0;
    char *stdin_q = NULL; /* "-": the question is read from stdin */
    api_media *media = NULL; /* (n_pos) the files' media */
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
        else if (!strcmp(a, "-i") || !strcmp(a, "--chat")) chat = 1;
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
    if (chat) { /* every argument is a file; the questions come from stdin (opening ones with -q) */
        const char *why = per_page ? "--chat and --per-page cannot be used together" : NULL;
        for (int q = 0; q < n_q && !why; q++)
            if (!strcmp(qs[q], "-")) why = "with --chat the questions come from stdin: -q - cannot read one more";
        for (int f = 0; f < n_pos && !why; f++)
            if (!strcmp(pos[f], "-")) why = "stdin holds the questions with --chat, so it cannot also hold the file '-' (name the file)";
        if (why) fprintf(stderr, "nanovl ask: %s\n", why);
        for (int f = 0; f < n_pos && !why; f++) { /* (each turn would fail on it: said once, now) */
            nvl_err fe = {0};
            const nvl_status fst = media_check_file(pos[f], NULL, &fe);
            if (fst != NVL_OK) {
                fprintf(stderr, "nanovl ask: %s%s\n", fe.msg,
                        fst == NVL_ERR_NOT_FOUND ? " (with --chat every argument is a file; give an opening question with -q)" : "");
                why = "";
            }
        }
        if (why) {
            rc = EXIT_USAGE;
            goto out;
        }
    }
    if (n_q == 0 && n_pos > 0 && !chat) { /* the last positional is the question, unless it names a file */
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
        for (int f = 0; f < n_pos && !strcmp(qs[q], "-"); f++)
            if (!strcmp(pos[f], "-")) {
                fprintf(stderr, "nanovl ask: stdin holds the question ('-'), so it cannot also hold the file '-' (name the "
                                "file)\n");
                rc = EXIT_USAGE;
                goto out;
            }
    for (int q = 0; q < n_q; q++)
        if (!strcmp(qs[q], "-")) {
            if (!stdin_q) {
                size_t len = 0;
                stdin_q = cli_read_stdin("ask", &len);
                if (!stdin_q) {
                    rc = 1;
                    goto out;
                }
                while (len && (stdin_q[len - 1] == '\n' || stdin_q[len - 1] == '\r')) stdin_q[--len] = 0;
                if (!len) {
                    fprintf(stderr, "nanovl ask: the question on stdin is empty\n");
                    rc = EXIT_USAGE; /* (stdin_q is freed at out) */
                    goto out;
                }
                /* a file piped in with the question forgotten (cat scan.pdf | nanovl ask -): not a question */
                const int nul = memchr(stdin_q, 0, len) != NULL;
                if (nul || !api_utf8_valid(stdin_q, len)) {
                    fprintf(stderr, "nanovl ask: the question on stdin is not text (%s); to ask about a file on stdin, "
                                    "give the question after it: nanovl ask - \"question\"\n",
                            nul ? "it holds a NUL byte" : "it is not valid UTF-8");
                    rc = EXIT_USAGE;
                    goto out;
                }
            }
            qs[q] = stdin_q;
        }
    if (!(media = cli_media_args("ask", pos, n_pos))) { /* (the file "-": stdin's bytes, read now) */
        rc = 1;
        goto out;
    }
    cli_sampling_note("ask", &p.sampler);
    if (!model || (n_q < 1 && !chat) || (per_page && n_pos < 1)) {
        if (!model) fprintf(stderr, "nanovl ask: no model: pass --model DIR or set NANOVL_MODEL\n");
        else if (n_q < 1) fprintf(stderr, "nanovl ask: no question\n"); /* (the usage below names --chat) */
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
        goto close;
    }
    api_part *parts = nvl_calloc((size_t)n_pos + 1, sizeof *parts);
    if (!parts) { rc = 1; goto close; }
    for (int f = 0; f < n_pos; f++) {
        parts[f].kind = API_PART_MEDIA;
        parts[f].media = media[f];
    }
    if (chat) {
        rc = chat_run(e, &o, &cb, &p, parts, n_pos, system, qs, n_q, verbose);
        n_q = 0; /* (asked in the conversation) */
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
    nvl_free(media);
    nvl_free(stdin_q);
    nvl_free(pos);
    nvl_free(qs);
    return rc;
}
