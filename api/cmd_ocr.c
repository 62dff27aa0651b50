/* `nanovl ocr FILE...`: Markdown of every page (and image), page by page, with a marker before
 * each page. Reasoning is off; each page is a separate pass, so long documents never exceed the
 * context. A page that fails is reported (stderr and a marker comment) and the rest goes on.
 * With --parallel N, N pages are read together (one engine, their decode steps batched); each
 * page is then written whole when it ends, still in page order (no streaming within a page).
 * With --out-dir DIR each input gets its own file, DIR/NAME.md, written aside and renamed into
 * place when its last page is done (one model load for a folder of documents). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "base/alloc.h"
#include "base/hash.h"
#include "cli_util.h"
#include "commands.h"
#include "media.h"
#include "wire.h"

static const char *k_usage =
    "usage: nanovl ocr [--model DIR] FILE... [-o OUT.md] [options]\n"
    "  --model DIR           checkpoint directory (default $NANOVL_MODEL)\n"
    "  -o, --out FILE        write the Markdown there (default stdout); emptied when the first page\n"
    "                        begins (a run that begins none leaves it as it was)\n"
    "  --out-dir DIR         a file per input instead: DIR/NAME.md (NAME: the input's name without\n"
    "                        its extension; .jsonl with --json), each written whole when its last\n"
    "                        page is done (DIR is made if missing, and not kept when no file is\n"
    "                        written); an input none of whose pages could be read gets no file\n"
    "  --json                one JSON object per page: file, page, text (the markdown), usage, timings\n"
    "  --prompt TEXT         the instruction given with each page\n"
    "  --parallel N          pages read together (default 1, 1..64): faster on long documents;\n"
    "                        each page is written whole, in order, when it ends\n"
    "  --resume              with -o: a run that can be resumed (its progress kept in OUT.progress):\n"
    "                        the same command again after an interruption (^C, kill, reboot) keeps\n"
    "                        the pages done and goes on from the one cut short; the same files,\n"
    "                        model and options are required, and the files of the pages kept\n"
    "                        unchanged (one not read yet may change); a finished run is left\n"
    "                        as it is.\n"
    "                        With --out-dir: the inputs whose file is in DIR, newer than the input,\n"
    "                        are not read again (the same model and options are required)\n"
    "  --retry-failed        --resume, and what failed is read again (say with a longer\n"
    "                        --page-timeout: the limits may differ from the first run's): with -o\n"
    "                        the run goes on from the first page that failed (the pages after it\n"
    "                        are read again too, from their files as they are now: a damaged input\n"
    "                        may have been replaced; those of the pages kept must be unchanged);\n"
    "                        with --out-dir the inputs whose files hold pages that failed are read\n"
    "                        again whole (a changed input is read again by --resume already)\n"
    "  --progress | --no-progress   progress on stderr (default: when stderr is a terminal)\n"
    "  reasoning is off for ocr (--think turns it on: --json's page records hold it, the Markdown\n"
    "  does not); max tokens per page default 4096;\n"
    "  \"--\" ends the options; the file \"-\" is read from stdin (cat scan.pdf | nanovl ocr -)\n"
    "exit: 0 every page done; 1 a page or file failed; 2 usage; 130 interrupted (SIGINT/SIGTERM:\n"
    "      Markdown written as it comes marks the page being written incomplete; with --parallel or\n"
    "      --json only whole pages are written, in order, so the pages after one still running are\n"
    "      left out (--resume reads them again); with --out-dir the input's file is left out; a\n"
    "      second signal exits at once)\n"
    "of the shared options below, --skip-bad-pages and the video ones (--fps, --max-frames, --evs)\n"
    "are for questions (refused here): ocr reads images and PDF pages, each page alone\n";

/* The option a resumed run was asked with ("--resume" or "--retry-failed"), for its messages. */
static const char *g_resume_opt = "--resume";

/* "nanovl ocr: --resume: " (or --retry-failed) and fmt's message on stderr */
static void resume_say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "nanovl ocr: %s: ", g_resume_opt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

/* SIGINT / SIGTERM while pages run: the run is cancelled (api_callbacks.cancel), a page cut
 * short is marked so in the output, exit 130. */
static volatile int g_ocr_cancel;
/* --out-dir: the part being written, for the second signal's exit to remove (g_part_ok: the path
 * is whole) */
static char g_part[4400];
static volatile sig_atomic_t g_part_ok;
static void on_signal(int sig) {
    (void)sig;
    if (g_ocr_cancel) {
        if (g_part_ok) unlink(g_part); /* (--out-dir: the unfinished file never stays; unlink is async-signal-safe) */
        cli_force_exit_on_second_signal("ocr");
    }
    g_ocr_cancel = 1;
}

typedef struct ocr_ctx {
    FILE *out;
    int json;
    int whole;  /* pages written whole at their end (--parallel > 1), not streamed */
    int n_started; /* pages begun */
    int text_started;
    int page_open; /* a page's marker is written and its end not yet (streaming) */
    int write_errno; /* a write to the output failed (errno; then every hook stops the run) */
    int progress_errno; /* a write to OUT.progress failed (the run goes on; it cannot be resumed) */
    FILE *progress;  /* --resume: OUT.progress, a line after each page written (or NULL) */
    struct ocr_resume *rs; /* what an earlier run recorded (--resume) */
    struct ocr_dir *dir;   /* --out-dir (or NULL) */
    unsigned char *started; /* (n_started_cap) units whose on_page_start ran: an image's error gets
                               its marker in whole mode as when streaming */
    int n_started_cap;
    cli_progress prog;
    /* -o without --resume: OUT is emptied only when the run's first page begins. Until then the
       output (errors of inputs that failed as a whole) waits in memory (out = a memstream); a run
       that begins no page (a bad --pages range, an encrypted PDF, interrupted early) leaves OUT as
       it was, as one none of whose inputs opens does. */
    FILE *held_out;         /* OUT, opened (not emptied) while out is the memstream; else NULL */
    char *early;            /* the memstream's bytes */
    size_t early_len;
    int out_made;           /* OUT did not exist before the run (removed if no page begins) */
    const char *out_path;
    const char *stale_record; /* OUT.progress of an earlier run: no longer holds once OUT is emptied */
    char made_target[PATH_MAX + 256]; /* OUT a link the run made its file through: that file (else "") */
} ocr_ctx;

// ---------------------------------------------------------------------------
// --out-dir: a file per input. Pages come in order, so an input's pages are written one after
// another: the first write of a page of another input ends the file being written and starts its
// own. A file is written under a temporary name in DIR (mkstemp: always a new file, never through
// a link planted there, and short whatever the input's name), synced, then renamed to DIR/NAME.md:
// a file in DIR is always whole. An input none of whose pages could be read gets no file (its
// errors are on stderr), so that --resume reads it again. DIR/.nanovl-ocr records, for each file,
// the fingerprint of the model and options it was written with, the input it was read from (a
// hash of its real path) and how many of its pages failed: a line "FP:IN NAME", or "FP:IN/FAILED
// NAME" with pages that failed (NAME with "\\" and newlines escaped as "\\\\" and "\\n"), appended
// before the file is renamed into place. --resume refuses a file written with other options or
// from another input (one of the same name in another folder), and --retry-failed reads again the
// inputs whose files hold failed pages. (A line without ":IN", from an earlier nanovl, vouches for
// any input.)

#define DIR_RECORD ".nanovl-ocr"
#define DIR_TEMP ".nanovl-ocr-part-"

typedef struct ocr_dir {
    const char *path;   /* DIR */
    const char **in;    /* (n) the inputs, as given */
    char **out;         /* (n) DIR/NAME.md or .jsonl */
    int *failed, *read; /* (n) pages of the input that failed, that were read */
    int n;
    int cur;            /* the input being written, or -1 */
    char part[4400];    /* its file until it is whole (DIR/.nanovl-ocr-part-XXXXXX) */
    const char *bad;    /* the file a write failed on (for the message) */
    mode_t mode;        /* the files' mode: 0666 less the umask (mkstemp makes 0600) */
    char record[4400];  /* DIR/.nanovl-ocr */
    uint64_t fp;        /* the run's fingerprint (model and options) */
    uint64_t *in_id;    /* (n) input_id of each input */
    int n_written;      /* files made whole */
    int kept_failed;    /* --resume: files kept (not read again) that hold failed pages */
    unsigned char *had_file; /* (n) the input's file was in DIR before the run (kept if none of its pages is read) */
    char **made;        /* (n_made) the folders of DIR's path this run made, as spelled, outermost first:
                           removed if no file is written */
    int n_made;
    int removed;        /* rmdir_made ran */
} ocr_dir;

/* Which input a file was read from: a hash of its real path (the path as given if it cannot be
 * resolved). */
static uint64_t input_id(const char *path) {
    char *rp = realpath(path, NULL);
    const uint64_t h = nvl_fnv1a_str(NVL_FNV1A_INIT, rp ? rp : path);
    free(rp);
    return h;
}

/* name with '\\' and '\n' escaped into out (size >= 2 * strlen(name) + 1), as DIR's record holds it */
static void record_name(char *out, const char *name) {
    for (; *name; name++) {
        if (*name == '\\' || *name == '\n') *out++ = '\\';
        *out++ = *name == '\n' ? 'n' : *name;
    }
    *out = 0;
}

/* DIR/NAME.EXT for input path: its last component (trailing slashes dropped) without the extension
 * (".hidden" keeps its name). */
static char *dir_out_name(const char *dir, const char *path, const char *ext) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    const char *b = path;
    for (size_t k = 0; k < len; k++)
        if (path[k] == '/' && k + 1 < len) b = path + k + 1;
    const size_t blen = len - (size_t)(b - path);
    const char *dot = NULL;
    for (size_t k = 1; k < blen; k++)
        if (b[k] == '.') dot = b + k;
    const size_t stem = dot ? (size_t)(dot - b) : blen;
    const size_t n = strlen(dir) + stem + strlen(ext) + 3;
    char *o = nvl_malloc(n);
    if (o) snprintf(o, n, "%s/%.*s%s", dir, (int)stem, b, ext);
    return o;
}

/* Ends the file being written: synced and renamed into place, or removed when none of its
 * input's pages could be read. Non-zero on a write error (c->write_errno; d->bad names the file);
 * the part is removed then. */
static int dir_finish(ocr_ctx *c) {
    ocr_dir *d = c->dir;
    if (d->cur < 0) return 0;
    errno = 0;
    int bad = fflush(c->out) != 0 || ferror(c->out) || (fsync(fileno(c->out)) != 0 && errno != EINVAL && errno != EROFS);
    if (fclose(c->out) != 0) bad = 1;
    c->out = NULL;
    if (bad) d->bad = d->in[d->cur];
    const int keep = !bad && d->read[d->cur] > 0;
    if (keep) { /* its record line first (a crash between the two leaves a line without its file) */
        const char *slash = strrchr(d->out[d->cur], '/');
        char line[9000], esc[8800];
        char nf[16] = "";
        if (d->failed[d->cur]) snprintf(nf, sizeof nf, "/%d", d->failed[d->cur]);
        record_name(esc, slash ? slash + 1 : d->out[d->cur]);
        const int ll = snprintf(line, sizeof line, "%016llx:%016llx%s %s\n", (unsigned long long)d->fp,
                                (unsigned long long)d->in_id[d->cur], nf, esc);
        const int rf = open(d->record, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, d->mode);
        if (rf < 0 || write(rf, line, (size_t)ll) != ll || fsync(rf) != 0) {
            bad = 1;
            d->bad = d->record;
        }
        if (rf >= 0) close(rf);
    }
    if (keep && !bad && rename(d->part, d->out[d->cur]) != 0) {
        bad = 1;
        d->bad = d->out[d->cur];
    }
    if (bad && !c->write_errno) c->write_errno = errno ? errno : EIO;
    g_part_ok = 0;
    if (!keep || bad) unlink(d->part);
    d->n_written += keep && !bad;
    d->cur = -1;
    return bad;
}

/* Before a page of input name is written: its file is the one open (ending another's). Non-zero
 * on a write error. */
static int dir_switch(ocr_ctx *c, const char *name) {
    ocr_dir *d = c->dir;
    if (!d || c->write_errno) return c->write_errno != 0;
    int f = 0;
    while (f < d->n && strcmp(d->in[f], name)) f++;
    if (f == d->n) f = d->cur >= 0 ? d->cur : 0; /* (not one of ours: cannot happen) */
    if (f == d->cur && c->out) return 0;
    if (dir_finish(c)) return 1;
    snprintf(d->part, sizeof d->part, "%s/" DIR_TEMP "XXXXXX", d->path);
    g_part_ok = 0;
    const int fd = mkostemp(d->part, O_CLOEXEC);
    if (fd >= 0) {
        memcpy(g_part, d->part, sizeof g_part);
        g_part_ok = 1;
    }
    if (fd < 0 || fchmod(fd, d->mode) != 0 || !(c->out = fdopen(fd, "w"))) {
        c->write_errno = errno ? errno : EIO;
        d->bad = d->path;
        if (fd >= 0) {
            close(fd);
            unlink(d->part);
            g_part_ok = 0;
        }
        return 1;
    }
    d->cur = f;
    return 0;
}

/* DIR's record, read once: a line per file written (see above). */
typedef struct record_entry {
    uint64_t fp, in, name_hash;
    int has_in, failed;
    char *name; /* escaped, as in the record */
} record_entry;
typedef struct dir_record {
    record_entry *e;
    int n;
} dir_record;

static void record_free(dir_record *r) {
    for (int i = 0; i < r->n; i++) nvl_free(r->e[i].name);
    nvl_free(r->e);
    *r = (dir_record){0};
}

/* 16 lowercase or uppercase hex digits at s into *v: 1, or 0 */
static int hex16(const char *s, unsigned long long *v) {
    *v = 0;
    for (int i = 0; i < 16; i++) {
        const char c = s[i];
        const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return 0;
        *v = *v << 4 | (unsigned)d;
    }
    return 1;
}

/* path's lines into r (none when it does not exist; a torn or malformed line is skipped): 0, or -1
 * with errno (it cannot be read: a folder, no permission; out of memory). */
static int record_read(const char *path, dir_record *r) {
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? 0 : -1;
    char line[9000];
    int cap = 0;
    errno = 0;
    while (fgets(line, sizeof line, f)) {
        char *sp = strchr(line, ' '), *nl = strchr(line, '\n');
        if (!sp || !nl) continue;
        *nl = 0;
        /* "FP[:IN][/FAILED]": 16 hex digits each, FAILED decimal; anything else is not a record line */
        unsigned long long fp = 0, in = 0;
        int k = 0, failed = 0;
        const char *t = line;
        if (!hex16(t, &fp)) continue;
        t += 16, k = 1;
        if (*t == ':') {
            if (!hex16(t + 1, &in)) continue;
            t += 17, k = 2;
        }
        if (*t == '/') {
            char *end = NULL;
            const long v = strtol(t + 1, &end, 10);
            if (end == t + 1 || v < 0 || v > INT_MAX || !(t[1] >= '0' && t[1] <= '9')) continue;
            failed = (int)v, t = end;
        }
        if (t != sp) continue;
        if (r->n == cap) {
            record_entry *ne = nvl_realloc(r->e, (size_t)(cap = cap ? cap * 2 : 64) * sizeof *ne);
            if (!ne) goto fail;
            r->e = ne;
        }
        record_entry *e = &r->e[r->n];
        *e = (record_entry){.fp = fp, .in = in, .has_in = k == 2, .failed = failed,
                            .name = nvl_strdup(sp + 1), .name_hash = nvl_fnv1a_str(NVL_FNV1A_INIT, sp + 1)};
        if (!e->name) goto fail;
        r->n++;
    }
    if (ferror(f)) goto fail;
    fclose(f);
    return 0;
fail:;
    const int e = errno ? errno : EIO;
    fclose(f);
    record_free(r);
    errno = e;
    return -1;
}

/* mkdir -p path (0777 less the umask): 0, or -1 with errno; the folders it made are added to
 * d->made as spelled (each a prefix of path: "a/n1/../keep" made "a/n1", not "a/keep"). */
static int mkdir_parents(const char *path, ocr_dir *d) {
    char p[4400];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) return errno = ENAMETOOLONG, -1;
    const size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (i < n && (p[i] != '/' || p[i - 1] == '/')) continue;
        const char c = p[i];
        p[i] = 0;
        if (mkdir(p, 0777) == 0) {
            char **nm = nvl_realloc(d->made, (size_t)(d->n_made + 1) * sizeof *nm);
            if (nm) d->made = nm;
            if (nm && (nm[d->n_made] = nvl_strdup(p))) d->n_made++;
        } else if (errno != EEXIST) {
            return -1;
        }
        p[i] = c;
    }
    return 0;
}

/* The folders mkdir_parents made, innermost first, DIR emptied of an empty record first: a run
 * that wrote no file leaves no folder (as -o OUT is not made when no page begins). A folder not
 * empty now (something else put there) stays, and those outside it. */
static void rmdir_made(ocr_dir *d) {
    struct stat sb;
    if (d->n_made > 0 && d->record[0] && stat(d->record, &sb) == 0 && sb.st_size == 0) unlink(d->record);
    for (int i = d->n_made - 1; i >= 0; i--)
        if (rmdir(d->made[i]) != 0) break;
}

/* Sets d up for the inputs files (*n_files) written with fingerprint fp: DIR made if missing and
 * checked writable, an output name per input (two inputs with one name, or an output that is an
 * input, refused); parts a killed run left removed (lock_fd: DIR, locked here, for the caller to
 * close). With resume the inputs whose file is in DIR already, not older than the input, are taken
 * out of files (*n_files lowered; 0: nothing to do, said), but with retry not those whose record
 * says pages failed; DIR's record must hold fp. Returns 0, 1 (DIR cannot be made or written,
 * another run holds it; or, nothing left to do, pages failed in the files kept) or EXIT_USAGE,
 * having said why. */
static int dir_plan(ocr_dir *d, const char **files, int *n_files, int json, int resume, int retry, uint64_t fp,
                    int *lock_fd) {
    struct stat sb;
    if (!*d->path) {
        fprintf(stderr, "nanovl ocr: --out-dir needs a folder's name\n");
        return EXIT_USAGE;
    }
    if (stat(d->path, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "nanovl ocr: --out-dir '%s' is not a directory\n", d->path);
        return EXIT_USAGE;
    }
    if (stat(d->path, &sb) != 0 && mkdir_parents(d->path, d) != 0) {
        const int e = errno; /* (before lstat) */
        const int dangling = lstat(d->path, &sb) == 0 && S_ISLNK(sb.st_mode);
        fprintf(stderr, "nanovl ocr: cannot make the folder '%s': %s%s\n", d->path, strerror(e),
                dangling ? " (it is a symbolic link to nothing)" : "");
        return 1;
    }
    /* one run on DIR at a time (two would remove each other's parts); held until the process ends */
    if ((*lock_fd = open(d->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || flock(*lock_fd, LOCK_EX | LOCK_NB) != 0) {
        if (*lock_fd >= 0) fprintf(stderr, "nanovl ocr: another nanovl ocr is writing to %s\n", d->path);
        else fprintf(stderr, "nanovl ocr: cannot open the folder '%s': %s\n", d->path, strerror(errno));
        return 1;
    }
    DIR *dd = opendir(d->path); /* parts a killed run left (no other run writes here now) */
    for (struct dirent *de; dd && (de = readdir(dd));)
        if (!strncmp(de->d_name, DIR_TEMP, strlen(DIR_TEMP)) && strlen(de->d_name) == strlen(DIR_TEMP) + 6) {
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", d->path, de->d_name);
            unlink(p);
        }
    if (dd) closedir(dd);
    const mode_t um = umask(0);
    umask(um);
    d->mode = 0666 & ~um;
    snprintf(d->record, sizeof d->record, "%s/" DIR_RECORD, d->path);
    d->fp = fp;
    const int n = *n_files;
    d->in = files;
    d->out = nvl_calloc((size_t)n + 1, sizeof *d->out);
    d->failed = nvl_calloc((size_t)n + 1, sizeof *d->failed);
    d->read = nvl_calloc((size_t)n + 1, sizeof *d->read);
    d->in_id = nvl_calloc((size_t)n + 1, sizeof *d->in_id);
    d->had_file = nvl_calloc((size_t)n + 1, 1);
    if (!d->out || !d->failed || !d->read || !d->in_id || !d->had_file) return 1;
    for (int f = 0; f < n; f++) d->in_id[f] = input_id(files[f]);
    d->n = n;
    for (int f = 0; f < n; f++) {
        if (!(d->out[f] = dir_out_name(d->path, files[f], json ? ".jsonl" : ".md"))) return 1;
        d->had_file[f] = stat(d->out[f], &sb) == 0 && S_ISREG(sb.st_mode);
    }
    for (int f = 0; f < n; f++)
        for (int g = 0; g < n; g++) {
            if (g > f && !strcmp(d->out[f], d->out[g])) {
                fprintf(stderr, "nanovl ocr: --out-dir: '%s' and '%s' would both be written to %s (rename one, or read "
                                "them in two runs)\n", files[f], files[g], d->out[f]);
                return EXIT_USAGE;
            }
            if (cli_same_file(d->out[f], files[g])) {
                fprintf(stderr, "nanovl ocr: --out-dir: the output %s is the input '%s'\n", d->out[f], files[g]);
                return EXIT_USAGE;
            }
        }
    int k = n, n_kept_failed = 0, n_retried = 0;
    if (resume) { /* a file in DIR must have been written from its input with this run's model and options */
        dir_record rec = {0};
        if (record_read(d->record, &rec) != 0) {
            resume_say("cannot read %s: %s\n", d->record, strerror(errno ? errno : EIO));
            return 1;
        }
        for (int f = 0; f < n; f++) {
            d->failed[f] = 0;
            if (!d->had_file[f]) continue;
            char base[8800];
            const char *raw = strrchr(d->out[f], '/') + 1; /* (as a line without ":IN", from an earlier nanovl, has it) */
            record_name(base, raw);
            const uint64_t bh = nvl_fnv1a_str(NVL_FNV1A_INIT, base), rh = nvl_fnv1a_str(NVL_FNV1A_INIT, raw);
            const record_entry *r = NULL; /* the last line for the name wins */
            for (int j = rec.n - 1; j >= 0 && !r; j--)
                if (rec.e[j].has_in ? rec.e[j].name_hash == bh && !strcmp(rec.e[j].name, base)
                                    : rec.e[j].name_hash == rh && !strcmp(rec.e[j].name, raw))
                    r = &rec.e[j];
            const char *why = !r                                 ? "by another program (it is not in " DIR_RECORD ")"
                              : r->fp != fp                      ? "with another model or other options"
                              : r->has_in && r->in != d->in_id[f] ? "from another input"
                                                                  : NULL;
            if (r) d->failed[f] = r->failed; /* (pages that failed in it; kept for below) */
            if (why) {
                resume_say("%s was written %s%s%s%s; run without %s to write it again (or remove it)\n", d->out[f], why,
                           r && r->fp == fp ? " than '" : "", r && r->fp == fp ? files[f] : "", r && r->fp == fp ? "'" : "",
                           g_resume_opt);
                record_free(&rec);
                return EXIT_USAGE;
            }
        }
        record_free(&rec);
        k = 0;
        for (int f = 0; f < n; f++) {
            struct stat si;
            /* done: a whole file (only those are renamed into DIR), not older than its input */
            if (d->had_file[f] && stat(d->out[f], &sb) == 0 && stat(files[f], &si) == 0 &&
                (sb.st_mtim.tv_sec > si.st_mtim.tv_sec ||
                 (sb.st_mtim.tv_sec == si.st_mtim.tv_sec && sb.st_mtim.tv_nsec >= si.st_mtim.tv_nsec))) {
                if (!(retry && d->failed[f] > 0)) {
                    n_kept_failed += d->failed[f] > 0;
                    nvl_free(d->out[f]);
                    continue;
                }
                n_retried++;
            }
            files[k] = files[f];
            d->had_file[k] = d->had_file[f];
            d->in_id[k] = d->in_id[f];
            d->out[k++] = d->out[f];
        }
        for (int f = 0; f < n; f++) d->failed[f] = 0; /* (counts of this run from here) */
        if (k < n) {
            char kept[160] = "";
            if (n_kept_failed)
                snprintf(kept, sizeof kept, " (pages failed in %d of them: --retry-failed reads %s again)", n_kept_failed,
                         n_kept_failed == 1 ? "it" : "them");
            resume_say("%d of %d input%s %s in %s already%s%s\n", n - k, n, n == 1 ? "" : "s",
                    n - k == 1 ? "is" : "are", d->path, kept, k ? "; reading the others" : ": nothing to do");
        }
        if (n_retried)
            fprintf(stderr, "nanovl ocr: --retry-failed: reading %d input%s again whose file%s pages that failed\n",
                    n_retried, n_retried == 1 ? "" : "s", n_retried == 1 ? " holds" : "s hold");
    }
    d->kept_failed = n_kept_failed; /* (the exit status is 1 then: as a finished -o run with failures) */
    if (k == 0 && n_kept_failed) {
        d->n = *n_files = 0;
        return 1;
    }
    d->n = *n_files = k;
    if (k == 0) return 0;
    /* DIR writable, before the model loads: a part made and removed, the record opened */
    char tmp[4500];
    snprintf(tmp, sizeof tmp, "%s/" DIR_TEMP "XXXXXX", d->path);
    const int fd = mkostemp(tmp, O_CLOEXEC);
    const int rf = fd >= 0 ? open(d->record, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, d->mode) : -1;
    if (fd < 0 || rf < 0) {
        fprintf(stderr, "nanovl ocr: cannot write %s: %s\n", fd < 0 ? d->path : d->record, strerror(errno ? errno : EIO));
        if (fd >= 0) close(fd), unlink(tmp);
        return 1;
    }
    close(rf);
    close(fd);
    unlink(tmp);
    return 0;
}

/* After the run: the files written, the inputs that got none, those whose pages failed in part. */
static void dir_report(const ocr_dir *d) {
    if (d->n_written == 0 && d->removed) { /* (the folder this run made is gone again) */
        struct stat sb;
        fprintf(stderr, "nanovl ocr: no file written%s", stat(d->path, &sb) != 0 ? "; the folder was not kept" : "");
    } else {
        fprintf(stderr, "nanovl ocr: %d file%s written to %s", d->n_written, d->n_written == 1 ? "" : "s", d->path);
    }
    for (int pass = 0; pass < 2; pass++) { /* unread inputs (no file), then files with failed pages */
        int said = 0;
        for (int f = 0; f < d->n; f++) {
            if (!d->failed[f] || (pass == 0) != (d->read[f] == 0)) continue;
            if (said == 5) {
                fputs(", ...", stderr);
                break;
            }
            if (!said++) fputs(pass ? "; pages failed in " : "; could not be read (no file): ", stderr);
            else fputs(", ", stderr);
            if (pass) fprintf(stderr, "%s (%d of %d)", d->in[f], d->failed[f], d->failed[f] + d->read[f]);
            else fprintf(stderr, "%s%s", d->in[f], d->had_file[f] ? " (its earlier file kept)" : "");
        }
        if (said && pass) fputs(" (their errors are in their files)", stderr);
    }
    fputs("\n", stderr);
}

// ---------------------------------------------------------------------------
// Resuming (--resume). The run keeps OUT.progress: a first line "nanovl ocr progress 3 FP" with
// the fingerprint of what the text depends on (the model's files, the options, the inputs' real
// paths), then for each page (unit) written whole "U index offset ok page name-hash stamp": its
// index, OUT's size after it (once synced), whether it was read or failed, which page of which
// file it was, and that file's stamp when it was read (a hash of its real path, size and
// modification time); "END failed" when the run ended. A resumed run checks that its inputs give
// the same pages first (an input that opened then and fails now, or the reverse, gives other
// pages) and that the file of each page kept is unchanged, then truncates OUT to the last recorded
// page (a page cut short, its "interrupted" mark, a torn line go) and goes on from the next; the
// failed pages recorded count in its exit status. With --retry-failed the record is cut back
// before its first failed page first (to the end of the page before it), so an input fixed since
// (a damaged PDF replaced) is read again as it is now. Written only with --resume (a run that may
// be resumed is started so). A record of another version (an earlier nanovl's) is refused as such.

typedef struct ocr_unit {
    int page;         /* 1-based; 0: an image, or an input that failed whole */
    int bad;          /* it failed (its error is in OUT) */
    long end;         /* OUT's size after it (0: not known, a record an older nanovl cut back) */
    uint64_t name;    /* name_hash of its file's name */
    uint64_t stamp;   /* input_stamp of its file when it was read */
} ocr_unit;

typedef struct ocr_resume {
    char path[4200];  /* OUT.progress */
    uint64_t fp;
    int n_done;       /* units recorded */
    int n_failed;     /* of them, failed */
    long size;        /* OUT's size after them */
    int ended;        /* "END" read: the run that wrote it ended */
    ocr_unit *unit;   /* (n_done) */
    int mismatch;     /* the unit where the inputs now differ, + 1 (0: none) */
    int changed;      /* the unit whose file changed since it was read, + 1 (0: none) */
    const char *changed_name; /* that file, as given */
    int renamed;      /* at mismatch a file starts that is named otherwise than the recorded one */
    int version;      /* the record's version (an earlier nanovl wrote 2) */
    const char *const *files; /* (n_files) the inputs, as given */
    uint64_t *stamp;  /* (n_files) input_stamp of each, taken before any is read */
    int n_files;
} ocr_resume;

/* h continued over s and its terminating NUL (a separator: "ab","c" differs from "a","bc") */
static uint64_t hash_field(uint64_t h, const char *s) {
    if (!s) s = "";
    return nvl_fnv1a(h, s, strlen(s) + 1);
}

static uint64_t name_hash(const char *name) { return nvl_fnv1a_str(NVL_FNV1A_INIT, name); }

/* path's real path, size and modification time into h (the path as given when it cannot be
 * resolved) */
static uint64_t hash_file(uint64_t h, const char *path) {
    char buf[96];
    struct stat sb;
    char *rp = realpath(path, NULL);
    h = hash_field(h, rp ? rp : path);
    free(rp);
    if (stat(path, &sb) == 0)
        snprintf(buf, sizeof buf, "%lld %lld.%09ld", (long long)sb.st_size, (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
    else
        snprintf(buf, sizeof buf, "?");
    return hash_field(h, buf);
}

/* An input's stamp: its real path, size and modification time (0 is never one). */
static uint64_t input_stamp(const char *path) {
    const uint64_t h = hash_file(NVL_FNV1A_INIT, path);
    return h ? h : 1;
}

/* The stamp r took of the input named name (a file argument, as given); 0 when none is. */
static uint64_t stamp_of(const ocr_resume *r, const char *name) {
    for (int f = 0; f < r->n_files; f++)
        if (!strcmp(r->files[f], name)) return r->stamp[f];
    return 0;
}

/* Where an input is: its folder's real path and its own name (a symlink as itself, not what it
 * points to), so "a.pdf" and "/dir/a.pdf" are one input, and a link may be repointed */
static uint64_t input_where(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4200];
    snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + (slash == path) : 1, slash ? path : ".");
    char *rp = realpath(dir, NULL);
    uint64_t h = hash_field(NVL_FNV1A_INIT, rp ? rp : dir);
    free(rp);
    return hash_field(h, slash ? slash + 1 : path);
}

/* The run's fingerprint: what the text of a page read depends on (the inputs by where they are:
 * the files they are now, with their sizes and times, are in the stamps of the pages read from
 * them, so a symlink may point elsewhere before it is read). */
static uint64_t run_fingerprint(const char *model, const char *prompt, const api_ask_params *p, int json,
                                const char *const *files, int n_files) {
    char buf[512];
    uint64_t h = hash_file(NVL_FNV1A_INIT, model), files_sum = 0;
    DIR *d = opendir(model); /* the checkpoint's files (weights replaced in place count), in any order */
    for (struct dirent *de; d && (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        char fpth[4200];
        snprintf(fpth, sizeof fpth, "%s/%s", model, de->d_name);
        files_sum += hash_file(NVL_FNV1A_INIT, fpth);
    }
    if (d) closedir(d);
    h = nvl_fnv1a(h, &files_sum, sizeof files_sum);
    h = hash_field(h, prompt);
    h = hash_field(h, p->pages);
    snprintf(buf, sizeof buf, "%d %.17g %d %d %lld %d %lld", json, p->dpi, p->long_side, p->max_tiles, (long long)p->max_tokens,
             p->think, (long long)p->max_context);
    h = hash_field(h, buf);
    if (p->sampler.temperature > 0) { /* (greedy, the default, reads none of them) */
        snprintf(buf, sizeof buf, "%.9g %.9g %d %.9g %llu", (double)p->sampler.temperature, (double)p->sampler.top_p,
                 p->sampler.top_k, (double)p->sampler.min_p, (unsigned long long)p->sampler.seed);
        h = hash_field(h, buf);
    }
    /* (the limits -- --page-timeout, --page-memory, --image-timeout, --max-megapixels -- are not in
       it: they decide which pages fail, never a page's text, and a failed page is recorded as
       such; a resumed run whose inputs now give other pages is refused by its page check) */
    for (int f = 0; f < n_files; f++) h = nvl_fnv1a(h, (uint64_t[]){input_where(files[f])}, 8);
    return h;
}

/* OUT.progress read into r: 1 when read; 0 when absent; -1 when it names another run (its
 * fingerprint differs), is of another version (r->version) or is malformed. A torn last line is
 * ignored. */
static int progress_read(ocr_resume *r) {
    FILE *f = fopen(r->path, "r");
    if (!f) return 0;
    char line[256];
    unsigned long long got = 0;
    int ok = fgets(line, sizeof line, f) && sscanf(line, "nanovl ocr progress %d %llx", &r->version, &got) == 2 &&
             r->version == 3 && got == r->fp;
    int cap = 0;
    while (ok && fgets(line, sizeof line, f)) {
        if (!strchr(line, '\n')) break; /* (a torn last line) */
        int idx = 0, good = 0, page = 0, failed = 0;
        long off = 0;
        unsigned long long nh = 0, stamp = 0;
        if (sscanf(line, "END %d", &failed) == 1) {
            r->ended = 1;
            break;
        }
        if (sscanf(line, "U %d %ld %d %d %llx %llx", &idx, &off, &good, &page, &nh, &stamp) != 6 || !stamp ||
            idx != r->n_done || off < r->size) {
            ok = 0;
            break;
        }
        if (r->n_done == cap) {
            ocr_unit *nu = nvl_realloc(r->unit, (size_t)(cap = cap ? cap * 2 : 64) * sizeof *nu);
            if (!nu) {
                ok = 0;
                break;
            }
            r->unit = nu;
        }
        r->unit[r->n_done] = (ocr_unit){.page = page, .bad = !good, .end = off, .name = nh, .stamp = stamp};
        r->n_failed += !good;
        r->n_done++;
        r->size = off;
    }
    fclose(f);
    return ok ? 1 : -1;
}

/* A fresh OUT.progress holding r's fingerprint and, when keep, the units r read from the old one
 * (written aside, then renamed over it). NULL on failure (errno). */
static FILE *progress_start(const ocr_resume *r, int keep) {
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", r->path);
    FILE *f = fopen(tmp, "w");
    if (!f) return NULL;
    fprintf(f, "nanovl ocr progress 3 %016llx\n", (unsigned long long)r->fp);
    /* (their offsets kept: --retry-failed cuts OUT back to the page before the first that failed) */
    for (int i = 0; keep && i < r->n_done; i++)
        fprintf(f, "U %d %ld %d %d %016llx %016llx\n", i, i + 1 == r->n_done ? r->size : r->unit[i].end, !r->unit[i].bad,
                r->unit[i].page, (unsigned long long)r->unit[i].name, (unsigned long long)r->unit[i].stamp);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || rename(tmp, r->path) != 0) {
        const int e = errno;
        fclose(f);
        unlink(tmp);
        errno = e;
        return NULL;
    }
    return f;
}

/* api_pages_hooks.skip_check: the run's unit index is the one recorded; at the last recorded one
 * OUT is cut back to the pages done and the record started again (without a torn line). */
static int ocr_skip_check(int index, const char *name, int page, void *user) {
    ocr_ctx *c = user;
    ocr_resume *r = c->rs;
    if (r->unit[index].page != page || r->unit[index].name != name_hash(name)) {
        r->mismatch = index + 1;
        r->renamed = r->unit[index].page == page && r->unit[index].name != name_hash(name) &&
                     (index == 0 || r->unit[index - 1].name != r->unit[index].name); /* (a file's first page) */
        return 1;
    }
    if (r->unit[index].stamp != stamp_of(r, name)) { /* its text is the old file's */
        r->changed = index + 1;
        r->changed_name = name;
        return 1;
    }
    if (index + 1 < r->n_done) return 0;
    if (fflush(c->out) != 0 || ftruncate(fileno(c->out), r->size) != 0 || fseek(c->out, 0, SEEK_END) != 0) {
        c->write_errno = errno ? errno : EIO;
        return 1;
    }
    if (!(c->progress = progress_start(r, 1))) {
        c->write_errno = errno ? errno : EIO;
        return 1;
    }
    return 0;
}

/* After page index (of file name, 1-based page, 0 for an image) was written whole: its end
 * recorded, once it is on disk (after a power cut the record never claims text that was lost;
 * the record itself may lag: pages done again). A failed sync is the output's write error. */
static void progress_note(ocr_ctx *c, int index, int good, const char *name, int page) {
    if (!c->progress || c->write_errno) return;
    if (fsync(fileno(c->out)) != 0 && errno != EINVAL && errno != EROFS) { /* (out_failed flushed it) */
        c->write_errno = errno;
        return;
    }
    const uint64_t st = stamp_of(c->rs, name);
    if (fprintf(c->progress, "U %d %ld %d %d %016llx %016llx\n", index, ftell(c->out), good, page,
                (unsigned long long)name_hash(name), (unsigned long long)(st ? st : 1)) < 0 ||
        fflush(c->progress) != 0)
        c->progress_errno = errno ? errno : EIO;
}

/* Flushes the output; non-zero once a write to it has failed (a full disk, a closed pipe). */
static int out_failed(ocr_ctx *c) {
    if (!c->out) return c->write_errno != 0; /* (--out-dir before its first file) */
    if (!c->write_errno && (fflush(c->out) != 0 || ferror(c->out))) c->write_errno = errno ? errno : EIO;
    return c->write_errno != 0;
}

/* -o: the run's first page begins: OUT is emptied and takes what waited in memory. */
static void out_commit(ocr_ctx *c) {
    if (!c->held_out) return;
    FILE *out = c->held_out;
    c->held_out = NULL;
    const int early_bad = fflush(c->out) != 0 || ferror(c->out);
    struct stat st;
    int e = 0;
    if (early_bad) e = ENOMEM;
    else if (fstat(fileno(out), &st) == 0 && S_ISREG(st.st_mode) && ftruncate(fileno(out), 0) != 0) e = errno;
    else if (c->early_len && fwrite(c->early, 1, c->early_len, out) != c->early_len) e = errno ? errno : EIO;
    fclose(c->out);
    free(c->early); /* (open_memstream's buffer: the C library's) */
    c->early = NULL;
    c->out = out;
    c->prog.text_tty = -1; /* (asked again of OUT itself) */
    if (c->stale_record) unlink(c->stale_record);
    if (e && !c->write_errno) c->write_errno = e;
}

/* -o: the file the run made for OUT removed (nothing when OUT was there before). */
static void out_unmake(const ocr_ctx *c) {
    if (c->out_made) unlink(c->made_target[0] ? c->made_target : c->out_path);
}

/* -o: the run ends without a page begun: OUT is left as it was (removed if the run made it). */
static void out_discard(ocr_ctx *c) {
    if (!c->held_out) return;
    fclose(c->out);
    free(c->early);
    c->early = NULL;
    fclose(c->held_out);
    c->held_out = NULL;
    c->out = NULL;
    out_unmake(c);
    if (!c->write_errno)
        fprintf(stderr, "nanovl ocr: no page was read: '%s' %s\n", c->out_path,
                c->out_made ? "was not made" : "is left as it was");
}

static int on_text(const char *s, size_t n, int reasoning, void *user) {
    ocr_ctx *c = user;
    if (c->json || c->whole || reasoning) return 0;
    if (!c->out) return 1; /* (--out-dir: its file could not be made; the run stops) */
    if (!c->text_started) {
        while (n && (*s == '\n' || *s == ' ')) {
            s++;
            n--;
        }
        if (!n) return 0;
        c->text_started = 1;
    }
    cli_progress_clear(&c->prog);
    fwrite(s, 1, n, c->out);
    cli_progress_wrote(&c->prog, c->out, s, n);
    return out_failed(c);
}

static void on_progress(const api_progress *pr, void *user) {
    ocr_ctx *c = user;
    cli_on_progress(pr, &c->prog);
}

/* text inside an HTML comment: it may not hold "-->", "--!>" or "<!--" (HTML's comment rule; a
 * plain "--", as in a flag's name, may stay) */
static void comment_text(FILE *f, const char *t) {
    for (const char *m = t; *m; m++) {
        const size_t k = (size_t)(m - t);
        const int ends = *m == '>' && ((k >= 2 && !strncmp(m - 2, "--", 2)) || (k >= 3 && !strncmp(m - 3, "--!", 3)));
        if (ends) fputs("&gt;", f);
        else if (*m == '<' && !strncmp(m, "<!--", 4)) fputs("&lt;", f);
        else fputc(*m, f);
    }
}

static void marker(ocr_ctx *c, const char *name, int page) {
    if (page) fprintf(c->out, "<!-- page %d: ", page);
    else fputs("<!-- image: ", c->out);
    comment_text(c->out, name);
    fputs(" -->\n\n", c->out);
}

static void on_page_start(int index, int n_total, const char *name, int page, void *user) {
    ocr_ctx *c = user;
    out_commit(c);
    c->text_started = 0;
    c->n_started++;
    snprintf(c->prog.prefix, sizeof c->prog.prefix, "[%d/%d] ", index + 1, n_total);
    if (!c->started && n_total > 0 && (c->started = nvl_calloc((size_t)n_total, 1))) c->n_started_cap = n_total;
    if (index >= 0 && index < c->n_started_cap) c->started[index] = 1;
    if (c->json || c->whole) return;
    cli_progress_clear(&c->prog); /* (the inputs' listing may be on the line) */
    if (dir_switch(c, name)) return; /* (the page's first text stops the run) */
    marker(c, name, page);
    c->page_open = 1;
    (void)out_failed(c); /* (the page's first text stops the run) */
}

static int on_page(int index, int n_total, const char *name, int page, const api_ask_result *r, void *user) {
    ocr_ctx *c = user;
    (void)n_total;
    out_commit(c); /* (after on_page_start: done there) */
    c->page_open = 0;
    if (dir_switch(c, name)) return 1;
    if (c->dir) c->dir->read[c->dir->cur]++;
    if (!c->json) {
        if (c->whole) { /* the page as streaming would have written it */
            cli_progress_clear(&c->prog);
            marker(c, name, page);
            if (r->answer) fwrite(r->answer, 1, api_answer_len(r), c->out); /* (NUL bytes too, as streamed) */
        }
        fputs("\n\n", c->out);
        cli_progress_wrote(&c->prog, c->out, "\n", 1);
    } else {
        api_json_line(c->out, api_page_to_json(name, page, r, "text") /* serve and batch say "text" */);
    }
    const int failed = out_failed(c);
    progress_note(c, index, 1, name, page);
    return failed;
}

static int on_page_error(int index, int n_total, const char *name, int page, nvl_status st, const char *msg, void *user) {
    (void)n_total;
    ocr_ctx *c = user;
    c->page_open = 0;
    cli_progress_clear(&c->prog);
    fprintf(stderr, "nanovl ocr: %s\n", msg);
    if (dir_switch(c, name)) return 1;
    if (c->dir) c->dir->failed[c->dir->cur]++;
    if (c->json) {
        api_json_line(c->out, api_page_error_to_json(name, page, st, msg));
    } else {
        /* a page's error under its marker, as streaming writes it (an input that failed as a whole,
           never started, has none there: its error names it) */
        if (c->whole && (page > 0 || (index >= 0 && index < c->n_started_cap && c->started[index]))) marker(c, name, page);
        fprintf(c->out, "<!-- error: %s: ", api_status_code(st));
        comment_text(c->out, msg);
        fputs(" -->\n\n", c->out);
        cli_progress_wrote(&c->prog, c->out, "\n", 1);
    }
    const int failed = out_failed(c);
    progress_note(c, index, 0, name, page);
    return failed;
}

/* api_pages_hooks.on_input_done (--out-dir): the input's last page is written: its file is made
 * whole now (an interrupt after this keeps it). Non-zero on a write error. */
static int on_input_done(const char *name, void *user) {
    ocr_ctx *c = user;
    if (!c->dir || c->dir->cur < 0 || strcmp(c->dir->in[c->dir->cur], name)) return c->write_errno != 0;
    return dir_finish(c);
}

int cmd_ocr(int argc, char **argv) {
    const char *model = getenv("NANOVL_MODEL"), *out_path = NULL, *prompt = API_OCR_PROMPT;
    api_ask_params p = api_ocr_params(NULL, 0); /* options below override */
    int force_progress = -1, rc = 0, parallel = 1, resume = 0, retry = 0, skip = 0, lock_fd = -1;
    g_resume_opt = "--resume";
    ocr_resume rs = {0};
    ocr_dir dir = {.cur = -1};
    ocr_ctx c = {.out = stdout};
    api_media *media = NULL; /* (n_files) the inputs' media */
    const char **files = nvl_calloc((size_t)argc + 1, sizeof *files);
    int n_files = 0;
    if (!files) return 1;
    int opts_done = 0; /* after "--" every argument is a file */
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (opts_done || !strcmp(a, "--")) {
            if (opts_done) files[n_files++] = a;
            opts_done = 1;
            continue;
        }
        int k = cli_ask_option(argc, argv, &i, &p, &model, "ocr", k_usage);
        if (k == 2) goto out;
        if (k < 0) { rc = EXIT_USAGE; goto out; }
        if (k > 0 && p.skip_bad_pages) { /* (taken, it would do nothing) */
            fprintf(stderr, "nanovl ocr: --skip-bad-pages is for questions: ocr reads each page alone (a page that "
                            "cannot be read fails alone, marked in the output, and the others go on)\n");
            rc = EXIT_USAGE;
            goto out;
        }
        if (k > 0 && (!strcmp(a, "--fps") || !strcmp(a, "--max-frames") || !strcmp(a, "--evs"))) { /* (likewise) */
            fprintf(stderr, "nanovl ocr: %s samples videos, which ocr does not read (it reads images and PDF pages)\n", a);
            rc = EXIT_USAGE;
            goto out;
        }
        if (k > 0) continue;
        if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && v) out_path = argv[++i];
        else if (!strcmp(a, "--out-dir") && v) dir.path = argv[++i];
        else if (!strcmp(a, "--prompt") && v) prompt = argv[++i];
        else if (!strcmp(a, "--json")) c.json = 1;
        else if (!strcmp(a, "--parallel") && v) {
            double d;
            if (!cli_num_option("ocr", a, v, 1, 64, 1, &d)) {
                rc = EXIT_USAGE;
                goto out;
            }
            parallel = (int)d;
            i++;
        }
        else if (!strcmp(a, "--resume")) resume = 1;
        else if (!strcmp(a, "--retry-failed")) {
            resume = retry = 1;
            g_resume_opt = "--retry-failed";
        }
        else if (!strcmp(a, "--progress")) force_progress = 1;
        else if (!strcmp(a, "--no-progress")) force_progress = 0;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "nanovl ocr: unknown or incomplete option '%s'\n%s%s", a, k_usage, cli_ask_options_help);
            rc = EXIT_USAGE;
            goto out;
        } else files[n_files++] = a;
    }
    cli_sampling_note("ocr", &p.sampler);
    if (!model || n_files < 1) {
        fprintf(stderr, "%s%s%s", !model ? "nanovl ocr: no model: pass --model DIR or set NANOVL_MODEL\n" : "", k_usage,
                cli_ask_options_help);
        rc = EXIT_USAGE;
        goto out;
    }
    if (out_path && !*out_path) { /* (as --out-dir "" is) */
        fprintf(stderr, "nanovl ocr: -o needs a file's name\n");
        rc = EXIT_USAGE;
        goto out;
    }
    if (dir.path && out_path) {
        fprintf(stderr, "nanovl ocr: -o writes one file, --out-dir a file per input: give one of them\n");
        rc = EXIT_USAGE;
        goto out;
    }
    if (resume && !out_path && !dir.path) {
        fprintf(stderr, "nanovl ocr: %s needs -o FILE (the output to go on writing) or --out-dir DIR\n", g_resume_opt);
        rc = EXIT_USAGE;
        goto out;
    }
    for (int f = 0; f < n_files && (dir.path || resume); f++)
        if (!strcmp(files[f], "-")) {
            fprintf(stderr, "nanovl ocr: '-' (stdin) cannot be %s (name the file)\n",
                    dir.path ? "given a file of its own in --out-dir" : "read again by a resumed run");
            rc = EXIT_USAGE;
            goto out;
        }
    if (dir.path) {
        rc = dir_plan(&dir, files, &n_files, c.json, resume, retry, run_fingerprint(model, prompt, &p, c.json, NULL, 0),
                      &lock_fd);
        if (rc != 0 || n_files == 0) goto out; /* (nothing left to read: said) */
        c.dir = &dir;
        c.out = NULL;
        resume = 0; /* (the files in DIR are the record) */
    }
    if (out_path) snprintf(rs.path, sizeof rs.path, "%s.progress", out_path);
    if (resume) {
        /* one run on OUT at a time (another cutting it back under a running one would tear it); the
           lock is held until this process ends */
        struct stat sb0;
        const int existed = lstat(out_path, &sb0) == 0; /* (before the lock's open may make it) */
        lock_fd = open(out_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (lock_fd >= 0 && flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
            resume_say("another nanovl ocr is writing %s\n", out_path);
            rc = 1;
            goto out;
        }
        rs.fp = run_fingerprint(model, prompt, &p, c.json, files, n_files);
        rs.files = files;
        rs.n_files = n_files;
        if (!(rs.stamp = nvl_calloc((size_t)n_files + 1, sizeof *rs.stamp))) {
            fprintf(stderr, "nanovl ocr: out of memory\n");
            rc = 1;
            goto out;
        }
        for (int f = 0; f < n_files; f++) rs.stamp[f] = input_stamp(files[f]); /* (before any is read) */
        struct stat sb;
        const int exists = stat(out_path, &sb) == 0, have_out = exists && sb.st_size > 0;
        if (exists && !S_ISREG(sb.st_mode)) {
            fprintf(stderr, "nanovl ocr: %s needs -o to name a regular file ('%s' is not one)\n", g_resume_opt, out_path);
            rc = EXIT_USAGE;
            goto out;
        }
        const int r = progress_read(&rs);
        if (r < 0 && rs.version != 3 && rs.version > 0) {
            resume_say("%s's progress record %s is of another version (%d; this nanovl writes 3): it was "
                       "written by another nanovl; run without %s to start again\n", out_path, rs.path, rs.version,
                       g_resume_opt);
            rc = EXIT_USAGE;
            goto out;
        }
        if (r < 0) {
            resume_say("%s was written for other files, model or options (or %s is damaged); "
                            "run without it to start again\n", out_path, rs.path);
            rc = EXIT_USAGE;
            goto out;
        }
        if (r == 0 && have_out) {
            resume_say("%s has no progress record (%s): it was not written by nanovl ocr "
                            "--resume; run without it to write it again\n", out_path, rs.path);
            rc = 1;
            goto out;
        }
        if (r > 0 && !existed && rs.size > 0) { /* removed since (the lock's open made an empty one: gone again) */
            struct stat sl;
            if (lock_fd >= 0 && fstat(lock_fd, &sl) == 0 && sl.st_size == 0) unlink(out_path);
            resume_say("%s is missing, and its progress record %s says %ld bytes of it were written; run without "
                       "%s to start again (or remove %s)\n", out_path, rs.path, rs.size, g_resume_opt, rs.path);
            rc = 1;
            goto out;
        }
        if (r > 0 && (!have_out ? rs.size > 0 : (long)sb.st_size < rs.size)) {
            resume_say("%s is shorter than its progress record says (%lld < %ld bytes): it was "
                            "changed; run without it to start again\n", out_path, have_out ? (long long)sb.st_size : 0LL,
                    rs.size);
            rc = 1;
            goto out;
        }
        if (r > 0 && retry && rs.n_failed) { /* cut back to the last page with a known end before the first failed */
            int k = 0;
            while (!rs.unit[k].bad) k++;
            while (k > 0 && rs.unit[k - 1].end <= 0) k--;
            fprintf(stderr, "nanovl ocr: --retry-failed: %d page%s in %s failed; reading again from the run's page %d "
                            "of %d\n", rs.n_failed, rs.n_failed == 1 ? "" : "s", out_path, k + 1, rs.n_done);
            rs.n_done = k;
            rs.size = k ? rs.unit[k - 1].end : 0;
            rs.n_failed = rs.ended = 0;
        }
        if (r > 0 && rs.ended) {
            fprintf(stderr, "nanovl ocr: %s is complete (%d page%s, %d failed): nothing to do%s\n", out_path, rs.n_done,
                    rs.n_done == 1 ? "" : "s", rs.n_failed, rs.n_failed ? " (--retry-failed reads them again)" : "");
            rc = rs.n_failed ? 1 : 0;
            goto out;
        }
        skip = rs.n_done;
        c.rs = &rs;
    }
    /* (the file "-": stdin's bytes, read before the model loads; after dir_plan, which drops done inputs) */
    if (!(media = cli_media_args("ocr", files, n_files))) {
        rc = 1;
        goto out;
    }
    cli_progress_init(&c.prog, force_progress);
    nvl_err err = {0};
    api_engine *e = NULL;
    api_engine_opts eo = api_engine_opts_default();
    eo.max_batch = parallel;
    c.whole = parallel > 1;
    if (api_engine_open_with(&e, model, &eo, &err) != NVL_OK) {
        fprintf(stderr, "nanovl ocr: %s: %s\n", model, err.msg);
        rc = 1;
        goto out;
    }
    for (int f = 0; out_path && f < n_files; f++)
        if (cli_same_file(out_path, files[f])) { /* "w" would empty the input before it is read */
            fprintf(stderr, "nanovl ocr: --out '%s' is the input file '%s'\n", out_path, files[f]);
            api_engine_close(e);
            rc = EXIT_USAGE;
            goto out;
        }
    if (out_path && skip > 0) { /* resumed: cut back to the pages done once they match (ocr_skip_check) */
        c.out = fopen(out_path, "r+e");
    } else if (out_path && resume) {
        c.out = fopen(out_path, "we");
    } else if (out_path) { /* opened now (a path that cannot be written stops the run before it reads), emptied
                              at the first page (out_commit) */
        int fd = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        c.out_made = fd >= 0;
        if (fd < 0 && errno == EEXIST) fd = open(out_path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) { /* a link to a file not there yet (O_EXCL refuses any link): made
                                            through it, as "w" does; the file it names is removed if unused */
            char to[PATH_MAX];
            const ssize_t n = readlink(out_path, to, sizeof to - 1);
            if (n > 0 && (fd = open(out_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666)) >= 0) {
                to[n] = 0;
                const char *slash = strrchr(out_path, '/');
                if (to[0] == '/' || !slash) snprintf(c.made_target, sizeof c.made_target, "%s", to);
                else snprintf(c.made_target, sizeof c.made_target, "%.*s/%s", (int)(slash - out_path), out_path, to);
                c.out_made = 1;
            }
        }
        c.out_path = out_path;
        c.stale_record = rs.path; /* (a record of another run of this OUT no longer holds once it is emptied) */
        if (fd >= 0 && !(c.held_out = fdopen(fd, "w"))) close(fd);
        if (c.held_out && !(c.out = open_memstream(&c.early, &c.early_len))) {
            fclose(c.held_out);
            c.held_out = NULL;
            out_unmake(&c);
        }
        if (!c.held_out) c.out = NULL;
    }
    if (out_path && !c.out) {
        fprintf(stderr, "nanovl ocr: cannot write '%s': %s\n", out_path, strerror(errno));
        api_engine_close(e);
        rc = 1;
        goto out;
    }
    if (resume && skip == 0 && !(c.progress = progress_start(&rs, 0))) {
        resume_say("cannot keep the progress record %s: %s\n", rs.path, strerror(errno));
        fclose(c.out);
        api_engine_close(e);
        rc = 1;
        goto out;
    }
    if (skip > 0) fprintf(stderr, "nanovl ocr: resuming %s after %d page%s done\n", out_path, skip, skip == 1 ? "" : "s");
    int api_stopped = 0; /* the run ended before its last page (cancelled, a write error, out of memory) */
    struct sigaction sa, old_term, old_int;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    g_ocr_cancel = 0;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    {
        api_callbacks cb = {.on_text = on_text, .on_progress = on_progress, .user = &c, .cancel = &g_ocr_cancel};
        api_pages_hooks h = {.on_page_start = on_page_start, .on_page = on_page, .on_page_error = on_page_error,
                             .cb = &cb, .user = &c, .window = parallel, .skip = skip,
                             .skip_check = skip > 0 ? ocr_skip_check : NULL, .on_input_done = c.dir ? on_input_done : NULL};
        int n_failed = 0;
        if (api_pages_run(e, media, n_files, prompt, &p, &h, &n_failed, &err) != NVL_OK) {
            api_stopped = 1;
            if (rs.changed) {
                const ocr_unit *u = &rs.unit[rs.changed - 1];
                char pg[32] = "";
                if (u->page) snprintf(pg, sizeof pg, "page %d of ", u->page);
                resume_say("%s%s changed since it was read into %s (the run's page %d: its size or time differ); "
                           "run without %s to start again\n", pg, rs.changed_name, out_path, rs.changed, g_resume_opt);
                rc = EXIT_USAGE;
            } else if (rs.renamed) {
                resume_say("the run that wrote %s read its page %d from a file named otherwise (the names are "
                           "written into %s: give the files as that run did, or run without %s to start again)\n",
                           out_path, rs.mismatch, out_path, g_resume_opt);
                rc = EXIT_USAGE;
            } else if (rs.mismatch || (skip > 0 && err.code == NVL_ERR_INVALID_ARG && !c.write_errno)) {
                if (!rs.mismatch) rs.mismatch = 1; /* (fewer pages than were done) */
                resume_say("the inputs now give other pages than the run that wrote %s (its page "
                                "%d differs: a file that opened then fails now, or the reverse); run without it to "
                                "start again\n", out_path, rs.mismatch);
                rc = EXIT_USAGE;
            } else {
                if (!c.write_errno && !g_ocr_cancel) fprintf(stderr, "nanovl ocr: %s\n", err.msg); /* (else: said below) */
                rc = 1;
            }
        } else if (c.progress && !c.write_errno && !g_ocr_cancel) { /* every page written: the run ended */
            if (fprintf(c.progress, "END %d\n", n_failed + rs.n_failed) < 0 || fflush(c.progress) != 0)
                c.progress_errno = errno ? errno : EIO;
        }
        if (n_failed || rs.n_failed) rc = rc ? rc : 1; /* (pages that failed before count too) */
        cli_progress_clear(&c.prog);
    }
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    if (c.dir) { /* the last file made whole if its input was read to the end; else left out */
        if (!g_ocr_cancel && !c.write_errno && rc != EXIT_USAGE && dir.cur >= 0 && !api_stopped) {
            if (dir_finish(&c)) rc = 1;
        } else if (dir.cur >= 0) {
            if (c.out) fclose(c.out);
            c.out = NULL;
            g_part_ok = 0;
            unlink(dir.part);
            if (!c.write_errno)
                fprintf(stderr, "nanovl ocr: %s was not finished: left out of %s\n", dir.in[dir.cur], dir.path);
            dir.cur = -1;
        }
        if (dir.n_written == 0 && dir.n_made) rmdir_made(&dir), dir.removed = 1;
        dir_report(&dir);
        if (dir.kept_failed && rc == 0) rc = 1; /* (files kept that hold failed pages: not all was read) */
    }
    if (g_ocr_cancel) { /* the page being streamed is cut short: said where it is, not left to look whole */
        if (c.page_open && !c.write_errno && c.out) fputs("\n\n<!-- interrupted: this page is incomplete -->\n", c.out);
        fprintf(stderr, "nanovl ocr: interrupted with %d page%s begun%s\n", c.n_started, c.n_started == 1 ? "" : "s",
                c.dir ? "" : c.page_open ? "; the last is incomplete (marked so in the output)" : "");
        rc = 130;
    }
    if (c.progress && fclose(c.progress) != 0 && !c.progress_errno) c.progress_errno = errno ? errno : EIO;
    if (c.progress_errno)
        fprintf(stderr, "nanovl ocr: warning: cannot write %s: %s (a --resume may do pages again, or refuse)\n", rs.path,
                strerror(c.progress_errno));
    out_discard(&c); /* (no page begun: OUT as it was) */
    (void)out_failed(&c);
    if (c.out && c.out != stdout && fclose(c.out) != 0 && !c.write_errno) c.write_errno = errno ? errno : EIO;
    if (c.write_errno) {
        fprintf(stderr, "nanovl ocr: cannot write %s: %s (the run stopped there)\n",
                out_path ? out_path : c.dir ? (dir.bad ? dir.bad : dir.path) : "the output", strerror(c.write_errno));
        rc = 1;
    }
    api_engine_close(e);
out:
    if (dir.path && dir.n_written == 0 && dir.n_made && !dir.removed) rmdir_made(&dir);
    for (int i = 0; i < dir.n_made; i++) nvl_free(dir.made[i]);
    nvl_free(dir.made);
    if (lock_fd >= 0) close(lock_fd);
    nvl_free(rs.unit);
    nvl_free(rs.stamp);
    for (int f = 0; dir.out && f < dir.n; f++) nvl_free(dir.out[f]);
    nvl_free(dir.out);
    nvl_free(dir.failed);
    nvl_free(dir.read);
    nvl_free(dir.in_id);
    nvl_free(dir.had_file);
    nvl_free(c.started);
    nvl_free(media);
    nvl_free(files);
    return rc;
}
