/* Helpers shared by the subcommands: stdin, id lists. */
#include "cli_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "media.h"

char *cli_read_stdin(const char *cmd, size_t *len) {
    size_t cap = 4096, n = 0;
    char *b = nvl_malloc(cap);
    if (!b) {
        fprintf(stderr, "nanovl %s: stdin: out of memory\n", cmd);
        return NULL;
    }
    size_t r;
    while ((r = fread(b + n, 1, cap - n - 1, stdin)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *nb = nvl_realloc(b, cap * 2);
            if (!nb) {
                nvl_free(b);
                fprintf(stderr, "nanovl %s: stdin: out of memory after %zu bytes\n", cmd, n);
                return NULL;
            }
            b = nb;
            cap *= 2;
        }
    }
    if (ferror(stdin)) { /* (a directory, a closed descriptor: not an empty input) */
        fprintf(stderr, "nanovl %s: stdin cannot be read: %s\n", cmd, strerror(errno));
        nvl_free(b);
        return NULL;
    }
    b[n] = 0;
    if (len) *len = n;
    return b;
}

/* stdin as a file for cli_media_args: 1 with *path (stdin itself when it is a file read from its
 * start, else an unlinked copy of what it holds from here), or 0 having said why. The engine opens
 * it through /proc/self/fd (its descriptor is kept open): nothing is copied again, and errors name
 * the media '-' (its name). Without /proc the bytes are mapped instead (*data, *size; *path NULL),
 * and the engine copies a PDF or video to a file of its own. */
static int stdin_media(const char *cmd, const char **path, const uint8_t **data, size_t *size) {
    static char g_path[API_FD_PATH_MAX];
    static const uint8_t *g_data;
    static size_t g_size;
    if (g_path[0] || g_data) {
        *path = g_path[0] ? g_path : NULL, *data = g_data, *size = g_size;
        return 1;
    }
    if (isatty(STDIN_FILENO)) {
        fprintf(stderr, "nanovl %s: '-' reads the file from stdin, which is a terminal (pipe a file into it: "
                        "cat scan.pdf | nanovl %s ... -)\n", cmd, cmd);
        return 0;
    }
    struct stat sb;
    int fd = STDIN_FILENO, own = 0;
    if (fstat(fd, &sb) != 0) {
        fprintf(stderr, "nanovl %s: cannot read stdin: %s\n", cmd, strerror(errno));
        return 0;
    }
    const off_t at = S_ISREG(sb.st_mode) ? lseek(fd, 0, SEEK_CUR) : 0;
    if (!S_ISREG(sb.st_mode) || at != 0) { /* a pipe or socket (or a file read part way): copied from here */
        const char *dir = getenv("TMPDIR");
        if (!dir || !*dir) dir = "/tmp";
        char tpl[4200];
        snprintf(tpl, sizeof tpl, "%s/nanovl-stdin-XXXXXX", dir);
        fd = mkostemp(tpl, O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "nanovl %s: cannot copy stdin: cannot create a temporary file in %s: %s\n", cmd, dir,
                    strerror(errno));
            return 0;
        }
        unlink(tpl); /* (gone with the process, however it ends) */
        own = 1;
        char buf[1 << 16];
        const size_t cap = media_limits_default().max_file_bytes; /* (what the media would refuse: stop there,
                                                                     not fill the disk with a stream first) */
        size_t copied = 0;
        for (;;) {
            ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                fprintf(stderr, "nanovl %s: cannot read stdin: %s\n", cmd, strerror(errno));
                close(fd);
                return 0;
            }
            if (r == 0) break;
            if ((copied += (size_t)r) > cap) {
                fprintf(stderr, "nanovl %s: '-': stdin holds more than the limit of %zu bytes for one file; stopped "
                                "reading it\n", cmd, cap);
                close(fd);
                return 0;
            }
            for (ssize_t o = 0; o < r;) {
                ssize_t w = write(fd, buf + o, (size_t)(r - o));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) {
                    fprintf(stderr, "nanovl %s: cannot copy stdin to %s: %s\n", cmd, dir, strerror(w < 0 ? errno : ENOSPC));
                    close(fd);
                    return 0;
                }
                o += w;
            }
        }
        if (fstat(fd, &sb) != 0) {
            fprintf(stderr, "nanovl %s: cannot copy stdin: %s\n", cmd, strerror(errno));
            close(fd);
            return 0;
        }
    }
    if (sb.st_size == 0) {
        fprintf(stderr, "nanovl %s: '-': stdin is empty (no file was piped into it)\n", cmd);
        if (own) close(fd);
        return 0;
    }
    if (api_fd_path(fd, g_path, sizeof g_path)) {
        *path = g_path, *data = NULL, *size = 0; /* (fd stays open: the file the path opens) */
        return 1;
    }
    /* (no /proc: the bytes, mapped; g_path is "") */
    void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (own) close(fd); /* (the mapping keeps the file) */
    if (m == MAP_FAILED) {
        fprintf(stderr, "nanovl %s: cannot map stdin: %s\n", cmd, strerror(errno));
        return 0;
    }
    g_data = m, g_size = (size_t)sb.st_size;
    *path = NULL, *data = g_data, *size = g_size;
    return 1;
}

api_media *cli_media_args(const char *cmd, const char *const *args, int n) {
    api_media *m = nvl_calloc((size_t)n + 1, sizeof *m);
    if (!m) {
        fprintf(stderr, "nanovl %s: out of memory\n", cmd);
        return NULL;
    }
    for (int f = 0; f < n; f++) {
        if (strcmp(args[f], "-")) {
            m[f] = (api_media){.path = args[f]};
            continue;
        }
        const char *path = NULL;
        const uint8_t *data = NULL;
        size_t size = 0;
        if (!stdin_media(cmd, &path, &data, &size)) {
            nvl_free(m);
            return NULL;
        }
        m[f] = (api_media){.path = path, .data = path ? NULL : data, .size = size, .name = "-"};
    }
    return m;
}

int cli_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int id_sep(char c) { return c == ' ' || c == ',' || c == '\n' || c == '\t' || c == '\r'; }

int cli_check_pages(const char *cmd, const char *pages, int cap) {
    int *sel = NULL, n_sel = 0;
    nvl_err pe = {0};
    /* each number past 1000000 refused (cap: a jobs file, no document to name its page count), or
       else read as 1000000 (the document, once open, names its own count) */
    char *clamped = nvl_malloc(strlen(pages) + 1), *o = clamped;
    for (const char *c = pages; clamped && *c;) {
        if (*c < '0' || *c > '9') {
            *o++ = *c++;
            continue;
        }
        const char *e = c;
        while (*e >= '0' && *e <= '9') e++;
        errno = 0;
        const long pn = strtol(c, NULL, 10);
        if (errno || pn > 1000000) {
            if (cap && !pe.msg[0])
                snprintf(pe.msg, sizeof pe.msg, "page numbers go up to 1000000 (%.*s is past it)",
                         (int)(e - c > 24 ? 24 : e - c), c);
            memcpy(o, "1000000", 7), o += 7;
        } else {
            memcpy(o, c, (size_t)(e - c)), o += e - c;
        }
        c = e;
    }
    if (!clamped) {
        fprintf(stderr, "nanovl %s: out of memory\n", cmd);
        return 0;
    }
    *o = 0;
    const int ok = *pages && !pe.msg[0] && media_parse_page_range(clamped, 1000000, &sel, &n_sel, &pe) == NVL_OK;
    nvl_free(sel);
    nvl_free(clamped);
    if (!ok) fprintf(stderr, "nanovl %s: --pages '%s': %s\n", cmd, pages, *pages ? pe.msg : "empty");
    return ok;
}

int cli_parse_ids(const char *s, int32_t **ids, int64_t *n, const char **bad) {
    int64_t cap = 64;
    *n = 0;
    *bad = NULL;
    *ids = nvl_malloc((size_t)cap * sizeof **ids);
    if (!*ids) return 0;
    while (*s) {
        while (id_sep(*s)) s++;
        if (!*s) break;
        char *end = NULL;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > INT32_MAX || (*end && !id_sep(*end))) {
            *bad = s;
            return 0;
        }
        if (*n == cap) {
            cap *= 2;
            int32_t *nb = nvl_realloc(*ids, (size_t)cap * sizeof **ids);
            if (!nb) return 0;
            *ids = nb;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return 1;
}

void cli_say_bad_id(const char *cmd, const char *what, const char *bad) {
    if (!bad) {
        fprintf(stderr, "nanovl %s: out of memory for the ids\n", cmd);
        return;
    }
    int n = 0;
    while (bad[n] && !id_sep(bad[n]) && n < 40) n++;
    fprintf(stderr, "nanovl %s: %s: '%.*s%s' is not a token id (whole numbers 0 to 2147483647, separated by spaces or commas)\n",
            cmd, what, n, bad, bad[n] && !id_sep(bad[n]) ? "..." : "");
}

// ---------------------------------------------------------------------------
// Shared model options

const char *const cli_ask_options_help =
    "  --pages 1-3,7         PDF pages (default all)     --dpi D | --long-side N   PDF render size\n"
    "  --password PW         opens encrypted PDFs\n"
    "  --page-timeout S --page-memory MIB   bounds on rendering one PDF page (default 120 s, 2048 MiB\n"
    "                        besides its pixels; 0 = none): past either that page fails with its error\n"
    "                        (ask fails unless --skip-bad-pages; with --per-page, ocr and batch the\n"
    "                        other pages and jobs go on)\n"
    "  --skip-bad-pages      a PDF page that cannot be read (damaged, or past --page-timeout or\n"
    "                        --page-memory) is left out of the question, with a note, instead of\n"
    "                        failing it; still an error when no page of a document can be read\n"
    "                        (questions only: ocr reads each page alone, and batch's ocr jobs too)\n"
    "  --max-tiles N         tiles per image, 1..12      --fps F --max-frames N     video sampling\n"
    "  --evs Q               video token pruning rate 0..0.99 (default: the checkpoint's)\n"
    "  --think | --no-think  reasoning on or off (default: on for ask and batch, off for ocr and bench);\n"
    "                        the flag wins over /think or /no_think typed in a question\n"
    "  --max-tokens N        per answer (default 1024; ocr 4096 per page; bench 64 per run)\n"
    "  --temperature T --top-p P --top-k K --min-p P --seed S   sampling (default greedy)\n"
    "  --max-context N       token budget for prompt + answer (default: the checkpoint's)\n"
    "  --no-cache            neither reuse nor keep the state after the media (each run computes all)\n"
    "  --backend, --max-megapixels, --page-timeout, --page-memory, --image-timeout, --image-memory,\n"
    "  --video-timeout, --video-memory: every command's (nanovl --help)\n";

int cli_num(const char *v, double lo, double hi, int integer, double *out) {
    if (!v) return 0;
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    /* !(lo <= d <= hi) also refuses NaN, which fails every comparison; infinities are refused
     * explicitly (a range may be open-ended); integers must be whole */
    if (!end || end == v || *end || !isfinite(d) || !(d >= lo && d <= hi) || (integer && d != floor(d))) return 0;
    *out = d;
    return 1;
}

int cli_num_option(const char *cmd, const char *opt, const char *v, double lo, double hi, int integer, double *out) {
    if (cli_num(v, lo, hi, integer, out)) return 1;
    fprintf(stderr, "nanovl %s: %s needs %s in %.16g..%.16g%s%s\n", cmd, opt, integer ? "an integer" : "a number", lo, hi,
            v ? ", got " : "", v ? v : "");
    return 0;
}

void cli_sampling_note(const char *cmd, const llm_sampler_params *s) {
    if (s->temperature > 0) return;
    char opts[64] = "";
    if (s->top_k > 0) strcat(opts, ", --top-k");
    if (s->top_p < 1) strcat(opts, ", --top-p");
    if (s->min_p > 0) strcat(opts, ", --min-p");
    if (s->seed != 0) strcat(opts, ", --seed");
    if (opts[0])
        fprintf(stderr, "nanovl %s: note: %s only shape%s sampling, which --temperature above 0 turns on; at "
                "temperature 0 (the default) decoding is greedy\n", cmd, opts + 2, strchr(opts + 2, ',') ? "" : "s");
}

int cli_ask_option(int argc, char **argv, int *i, api_ask_params *p, const char **model, const char *cmd,
                   const char *usage) {
    const char *a = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
        fputs(usage, stdout);
        fputs(cli_ask_options_help, stdout);
        return 2;
    }
    if (!strcmp(a, "--model") && v) {
        *model = v;
        (*i)++;
        return 1;
    }
    static const struct { const char *name; double lo, hi; int integer; } k[] = {
        {"--dpi", 1, 1200, 0}, {"--long-side", 16, 16384, 1}, {"--max-tiles", 1, 12, 1}, {"--fps", 0.01, 240, 0},
        {"--max-frames", 1, 100000, 1}, {"--evs", 0, 0.99, 0}, {"--max-tokens", 1, 1e9, 1}, {"--temperature", 0, 100, 0},
        {"--top-p", 0, 1, 0}, {"--top-k", 0, 1e9, 1}, {"--seed", 0, NVL_SEED_MAX, 1}, {"--max-context", 16, 1e9, 1},
        {"--min-p", 0, 1, 0}};
    if (!strcmp(a, "--think")) { p->think = 1; return 1; }
    if (!strcmp(a, "--no-think")) { p->think = 0; return 1; }
    if (!strcmp(a, "--no-cache")) { p->no_cache = 1; return 1; }
    if (!strcmp(a, "--skip-bad-pages")) { p->skip_bad_pages = 1; return 1; }
    if (!strcmp(a, "--password")) {
        if (!v) { fprintf(stderr, "nanovl %s: --password needs a value\n", cmd); return -1; }
        p->password = v;
        (*i)++;
        return 1;
    }
    if (!strcmp(a, "--pages")) {
        if (!v) { fprintf(stderr, "nanovl %s: --pages needs a value like 1-3,7\n", cmd); return -1; }
        if (!cli_check_pages(cmd, v, 0)) return -1;
        p->pages = v;
        (*i)++;
        return 1;
    }
    for (size_t j = 0; j < sizeof k / sizeof k[0]; j++) {
        if (strcmp(a, k[j].name)) continue;
        double d;
        if (!cli_num_option(cmd, a, v, k[j].lo, k[j].hi, k[j].integer, &d)) return -1;
        (*i)++;
        switch (j) {
        case 0:
        case 1:
            if (j == 0 ? p->long_side > 0 : p->dpi > 0) { /* (as render says; dpi would win) */
                fprintf(stderr, "nanovl %s: --dpi and --long-side both size the pages: give one\n", cmd);
                return -1;
            }
            if (j == 0) p->dpi = d;
            else p->long_side = (int)d;
            break;
        case 2: p->max_tiles = (int)d; break;
        case 3: p->fps = d; break;
        case 4: p->max_frames = (int)d; break;
        case 5: p->evs = d; break;
        case 6: p->max_tokens = (int64_t)d; break;
        case 7: p->sampler.temperature = (float)d; break;
        case 8: p->sampler.top_p = (float)d; break;
        case 9: p->sampler.top_k = (int)d; break;
        case 10: p->sampler.seed = (uint64_t)d; break; /* (exact below 2^53; '1e3' is 1000) */
        case 11: p->max_context = (int64_t)d; break;
        case 12: p->sampler.min_p = (float)d; break;
        }
        return 1;
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Progress

void cli_progress_init(cli_progress *p, int force) {
    memset(p, 0, sizeof *p);
    p->on = force >= 0 ? force : isatty(STDERR_FILENO);
    p->text_tty = -1;
}

void cli_progress_wrote(cli_progress *p, FILE *f, const char *s, size_t n) {
    if (!n) return;
    if (p->text_tty < 0) p->text_tty = isatty(fileno(f));
    p->midline = p->text_tty && s[n - 1] != '\n';
}

void cli_progress_show(cli_progress *p, int always, const char *fmt, ...) {
    if (!p->on || p->midline) return;
    const double t = nvl_now();
    if (!always && t - p->last < 0.1) return;
    p->last = t;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\r\033[K%s%s", p->prefix, line);
    fflush(stderr);
    p->shown = 1;
}

void cli_progress_clear(cli_progress *p) {
    if (!p->on || !p->shown) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->shown = 0;
}

void cli_on_progress(const api_progress *pr, void *user) {
    cli_progress *p = user;
    const char *what = pr->item ? pr->item : "";
    const int always = (int)pr->stage + 1 != p->last_stage;
    p->last_stage = (int)pr->stage + 1;
    switch (pr->stage) {
    case API_STAGE_MEDIA: /* (a total: page by page work listing its inputs' pages) */
        if (pr->total > 0) cli_progress_show(p, always, "listing pages: %s (%lld/%lld)", what, (long long)pr->done + 1,
                                             (long long)pr->total);
        else cli_progress_show(p, always, "reading %s", what);
        break;
    case API_STAGE_VISION:
        cli_progress_show(p, always, "vision: %s (%lld/%lld) %.1f s", what, (long long)pr->done, (long long)pr->total, pr->elapsed_s);
        break;
    case API_STAGE_PREFILL:
        cli_progress_show(p, always, "prefill: %lld/%lld tokens, %.0f tokens/s", (long long)pr->done, (long long)pr->total,
                          pr->elapsed_s > 0 ? (double)pr->done / pr->elapsed_s : 0.0);
        break;
    case API_STAGE_GENERATE:
        cli_progress_show(p, always, "generating: %lld tokens, %.1f tokens/s", (long long)pr->done,
                          pr->elapsed_s > 0 ? (double)pr->done / pr->elapsed_s : 0.0);
        break;
    }
}

void cli_force_exit_on_second_signal(const char *cmd) {
    static const char a[] = "\nnanovl ", b[] = ": interrupted again: exiting now (the work in progress is left unfinished)\n";
    ssize_t r = write(2, a, sizeof a - 1);
    r = write(2, cmd, strlen(cmd));
    r = write(2, b, sizeof b - 1);
    (void)r;
    _exit(130);
}
