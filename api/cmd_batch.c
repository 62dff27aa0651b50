/* `nanovl batch JOBS.jsonl --out RESULTS.jsonl`: one job per line (the request format of
 * docs/api.md: files + question, messages, or "type": "ocr"), one result line per job.
 *
 * - A job that fails gets a result line with its error; the batch goes on (exit 1 at the end,
 *   and on every rerun while a job of the shard has an error line: a restarted Kubernetes or
 *   Slurm task does not turn a failure into success).
 * - Each result line is written whole with one append and flushed to disk before the next line,
 *   so a kill leaves at most one torn last line; a rerun drops it, skips the jobs that already
 *   have a result (failed ones too, unless --retry-failed) and goes on.
 * - --shard i/N takes every job whose index (0-based, among the manifest's non-blank lines)
 *   is i modulo N: a Slurm array or a Kubernetes indexed Job runs one shard per task, each with
 *   its own --out file. A lock on the out file refuses a second writer.
 * - --retry-failed removes the earlier error lines of the jobs it redoes (the kept lines are
 *   written to a temporary file renamed over the results), so each id has one final line.
 * - Each result line carries the job's "fingerprint": a hash of its job line, the checkpoint and
 *   the shared options (batch_run_fp). A rerun whose job has another fingerprint than its recorded
 *   line (the checkpoint, --max-tokens or the job's question changed) is refused, naming the first
 *   such job, unless --redo-changed, which removes those lines as --retry-failed does and runs the
 *   jobs again (a review: a run resumed with --max-tokens 128 after 32 jobs at 8 kept both). A
 *   line without one (an earlier nanovl's) vouches for its job.
 * - The jobs file and --out must be regular files, and not the same file.
 * - --parallel N keeps up to N jobs in flight on one engine (max_batch N): jobs start in
 *   manifest order as slots free, each line is written when its job ends (so with N > 1 in the
 *   order they end). SIGINT / SIGTERM cancels every job in flight; those get no line (exit
 *   130). Before the model is loaded they end the process as usual (nothing is done yet).
 * - Progress with ETA on a terminal (N > 1: jobs done of the total, how many run); a one-line
 *   summary on stderr at the end. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "base/alloc.h"
#include "cli_util.h"
#include "commands.h"
#include "media.h"
#include "base/json_util.h"
#include "wire.h"
#include "base/clock.h"
#include "base/hash.h"

static const char *k_usage =
    "usage: nanovl batch [--model DIR] JOBS.jsonl --out RESULTS.jsonl [options]\n"
    "  --model DIR           checkpoint directory (default $NANOVL_MODEL)\n"
    "  --out FILE            results, one JSON line per job (appended; a rerun resumes)\n"
    "  --shard i/N           only jobs whose index (0-based, non-blank lines) mod N is i\n"
    "  --parallel N          jobs in flight at once on one engine (1..256, default 1); with N > 1\n"
    "                        result lines come in the order jobs end, not the manifest's\n"
    "  --retry-failed        redo jobs whose earlier result is an error (their error lines are\n"
    "                        removed first: one final line per id)\n"
    "  --redo-changed        redo jobs answered with another checkpoint, other options or another\n"
    "                        job line (their lines are removed first); without it such a rerun is\n"
    "                        refused, so that one results file holds one run's answers\n"
    "exit: 0 every job of the shard ok; 1 one failed (in this run or recorded earlier); 2 usage;\n"
    "      130 interrupted (SIGINT/SIGTERM once jobs run; rerun to resume; a second signal exits at once)\n"
    "  --progress | --no-progress   progress with ETA on stderr (default: when a terminal)\n"
    "job lines: {\"id\": \"a\", \"files\": [\"x.pdf\"], \"question\": \"...\", \"params\": {...}}\n"
    "           {\"id\": \"b\", \"type\": \"ocr\", \"files\": [\"scan.pdf\"]}   (docs/api.md)\n"
    "the options below are defaults that a job's params override:\n";

static volatile sig_atomic_t g_stop;
static volatile int g_cancel;
static void on_signal(int sig) {
    (void)sig;
    if (g_stop) cli_force_exit_on_second_signal("batch");
    g_stop = 1;
    g_cancel = 1;
}

typedef struct done_set {
    char **ids;
    int n, cap;
} done_set;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* after done_sort() */
static int done_has(const done_set *d, const char *id) {
    return d->n && bsearch(&id, d->ids, (size_t)d->n, sizeof *d->ids, cmp_str) != NULL;
}

static void done_sort(done_set *d) {
    if (d->n) qsort(d->ids, (size_t)d->n, sizeof *d->ids, cmp_str);
}

static void done_add(done_set *d, const char *id) {
    if (d->n == d->cap) {
        int nc = d->cap ? d->cap * 2 : 64;
        char **ni = nvl_realloc(d->ids, (size_t)nc * sizeof *ni);
        if (!ni) return;
        d->ids = ni;
        d->cap = nc;
    }
    size_t l = strlen(id) + 1;
    char *c = nvl_malloc(l);
    if (!c) return;
    memcpy(c, id, l);
    d->ids[d->n++] = c;
}

static void done_free(done_set *d) {
    for (int i = 0; i < d->n; i++) nvl_free(d->ids[i]);
    nvl_free(d->ids);
}

typedef struct batch_line {
    char *text;
    size_t len;
    int lineno;
    char fp[17]; /* the job's fingerprint (batch_run_fp and its line), 16 hex digits */
    int idless;  /* the line has no id: id is line-N-HASH */
    uint32_t hash; /* (idless) HASH: FNV-1a of the trimmed line */
    int skip;    /* the job skips bad pages (its params' skip_bad_pages, else --skip-bad-pages) */
    char id[3 * 256 + 1]; /* an id of up to 256 bytes, each invalid byte as U+FFFD (3 bytes) */
} batch_line;

/* This run's jobs of the shard: their ids (as the results file holds them) with their
 * fingerprints, sorted by id. */
typedef struct job_fp {
    const char *id;
    char fp[17]; /* 16 hex digits */
} job_fp;

static int cmp_u32(const void *a, const void *b) {
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_job_fp(const void *a, const void *b) { return strcmp(((const job_fp *)a)->id, ((const job_fp *)b)->id); }

/* The fingerprint of id among the n sorted jobs, or NULL when it is not one of them. */
static const char *job_fp_of(const job_fp *fps, int n, const char *id) {
    const job_fp key = {.id = id};
    const job_fp *f = n ? bsearch(&key, fps, (size_t)n, sizeof *fps, cmp_job_fp) : NULL;
    return f ? f->fp : NULL;
}

/* What load_results checks the results file against: this run's jobs of the shard by id, with
 * their fingerprints (sorted by id); the shard's jobs without an id by line number (NULL where a
 * line holds none); the texts (HASH) of every job without an id, sorted. */
typedef struct run_jobs {
    job_fp *mine;
    int n_mine;
    const batch_line **idless_at;
    unsigned char *id_at; /* (n_at) the line holds a job of the shard with an id */
    int n_at;
    uint32_t *hashes;
    int n_hashes;
} run_jobs;

static void run_jobs_free(run_jobs *rj) {
    nvl_free(rj->mine);
    nvl_free(rj->idless_at);
    nvl_free(rj->id_at);
    nvl_free(rj->hashes);
}

static uint64_t fp_field(uint64_t h, const char *s) { return nvl_fnv1a(nvl_fnv1a_str(h, s ? s : "\x01"), "", 1); }

/* What every job's answer depends on besides its own line: the checkpoint -- the name and size of
 * each of its files (the JSON files nanovl reads by name, *.safetensors, *.jinja), and the bytes of those
 * under 64 MiB (config, tokenizer, chat template); the weights by their sizes, so that a copy of
 * the checkpoint on another node or path is the same one (a different fine-tune of the same shapes
 * is not told apart); other files in its folder (another shard's results, a log: they changed the
 * checkpoint, a review) and the jobs and results files where they lie in it left out -- and the
 * shared options that shape an answer (not --parallel,
 * --no-cache or --password; the page bounds -- --page-timeout, --page-memory, --max-megapixels --
 * only for a job that skips bad pages, job_fp_make; otherwise they decide only whether a job
 * fails, and a failure is recorded as one). */
static uint64_t batch_run_fp(const char *model, const api_ask_params *p, int ocr_tokens_default, const struct stat *jobs,
                             const struct stat *out) {
    uint64_t files = 0;
    DIR *d = opendir(model);
    for (struct dirent *de; d && (de = readdir(d));) { /* in any order: a sum of per-file hashes */
        if (de->d_name[0] == '.') continue;
        static const char *const read_json[] = {"config.json", "generation_config.json", "tokenizer.json",
                                                "tokenizer_config.json", "hf_quant_config.json", NULL};
        const size_t nl = strlen(de->d_name);
        int ours = (nl > 12 && !strcmp(de->d_name + nl - 12, ".safetensors")) ||
                   (nl > 23 && !strcmp(de->d_name + nl - 23, ".safetensors.index.json")) ||
                   (nl > 6 && !strcmp(de->d_name + nl - 6, ".jinja")); /* (a shard "other.json" of results is not) */
        for (int r = 0; !ours && read_json[r]; r++) ours = !strcmp(de->d_name, read_json[r]);
        if (!ours) continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", model, de->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if ((sb.st_dev == jobs->st_dev && sb.st_ino == jobs->st_ino) || (sb.st_dev == out->st_dev && sb.st_ino == out->st_ino))
            continue; /* (the jobs and results files kept in the checkpoint's folder: --model .) */
        uint64_t h = fp_field(NVL_FNV1A_INIT, de->d_name);
        h = nvl_fnv1a(h, &(int64_t){(int64_t)sb.st_size}, sizeof(int64_t));
        FILE *f = sb.st_size < ((off_t)64 << 20) ? fopen(path, "rb") : NULL;
        char buf[1 << 16];
        for (size_t r; f && (r = fread(buf, 1, sizeof buf, f)) > 0;) h = nvl_fnv1a(h, buf, r);
        if (f) fclose(f);
        files += h;
    }
    if (d) closedir(d);
    uint64_t h = nvl_fnv1a(NVL_FNV1A_INIT, &files, sizeof files);
    char buf[512];
    snprintf(buf, sizeof buf, "%d %s %.17g %d %.17g %d %.17g %d %lld %lld %d", p->max_tiles, p->pages ? p->pages : "-",
             p->dpi, p->long_side, p->fps, p->max_frames, p->evs, p->think, (long long)p->max_tokens,
             (long long)p->max_context, ocr_tokens_default); /* (skip_bad_pages: per job, job_fp_make) */
    h = fp_field(h, buf);
    if (p->sampler.temperature > 0) { /* (greedy, the default, reads none of them) */
        snprintf(buf, sizeof buf, "%.9g %.9g %d %.9g %llu", (double)p->sampler.temperature, (double)p->sampler.top_p,
                 p->sampler.top_k, (double)p->sampler.min_p, (unsigned long long)p->sampler.seed);
        h = fp_field(h, buf);
    }
    return h;
}

/* A job's fingerprint: run (batch_run_fp), its line's bytes, and, when the job skips bad pages
 * (its params' skip_bad_pages, else the command line's), the page bounds, which then decide
 * which pages its answer saw (a review). */
static uint64_t job_fp_make(uint64_t run, const batch_line *L) {
    uint64_t h = nvl_fnv1a(run, L->text, L->len);
    char buf[128] = "skips no bad pages";
    if (L->skip) {
        const media_pdf_sandbox sb = media_pdf_get_sandbox();
        snprintf(buf, sizeof buf, "skips bad pages: %.17g %.17g %lld", sb.timeout_s, sb.max_mb,
                 (long long)media_limits_default().max_pixels);
    }
    h = fp_field(h, buf);
    return h;
}

/* Sets each line's fingerprint (run and job_fp_make) and fills rj for the shard's jobs. 0 when
 * out of memory. */
static int run_jobs_make(run_jobs *rj, batch_line *lines, int n_lines, int shard, int n_shards, uint64_t run) {
    rj->n_at = n_lines ? lines[n_lines - 1].lineno + 1 : 1;
    rj->mine = nvl_calloc((size_t)n_lines + 1, sizeof *rj->mine);
    rj->idless_at = nvl_calloc((size_t)rj->n_at, sizeof *rj->idless_at);
    rj->id_at = nvl_calloc((size_t)rj->n_at, sizeof *rj->id_at);
    rj->hashes = nvl_calloc((size_t)n_lines + 1, sizeof *rj->hashes);
    if (!rj->mine || !rj->idless_at || !rj->id_at || !rj->hashes) return 0;
    for (int i = 0; i < n_lines; i++) {
        batch_line *L = &lines[i];
        snprintf(L->fp, sizeof L->fp, "%016llx", (unsigned long long)job_fp_make(run, L));
        if (L->idless) rj->hashes[rj->n_hashes++] = L->hash;
        if (i % n_shards != shard) continue;
        rj->mine[rj->n_mine].id = L->id;
        memcpy(rj->mine[rj->n_mine++].fp, L->fp, sizeof L->fp);
        if (L->idless) rj->idless_at[L->lineno] = L;
        else rj->id_at[L->lineno] = 1;
    }
    qsort(rj->mine, (size_t)rj->n_mine, sizeof *rj->mine, cmp_job_fp);
    qsort(rj->hashes, (size_t)rj->n_hashes, sizeof *rj->hashes, cmp_u32);
    return 1;
}

/* Reads the results so far: drops a torn last line, collects finished ids (done; those whose
 * line says an error: failed, those that say ok: ok), warns about lines within that are not
 * result lines (their jobs, having no other, run again). A line of one of this run's jobs (rj)
 * whose fingerprint differs from the job's is changed: with redo_changed it is
 * removed, else the run is refused (-3, said). With retry_failed, the error lines of this run's
 * jobs are removed too, so that each id keeps one final line: the kept lines go to a temporary
 * file beside it (locked, synced; beside the file a symbolic link names) that is renamed over it,
 * and *fd becomes that file. Returns -1 with errno on a read or write failure, -2 after its own
 * message. */
static int load_results(int *fd, const char *path, int retry_failed, int redo_changed, const run_jobs *rj, done_set *done,
                        done_set *failed, done_set *ok_set) {
    struct stat sb;
    if (fstat(*fd, &sb) != 0) return -1;
    if (sb.st_size == 0) return 0;
    char *buf = nvl_malloc((size_t)sb.st_size + 2);
    if (!buf) return -1;
    ssize_t got = pread(*fd, buf, (size_t)sb.st_size, 0);
    if (got != sb.st_size) {
        nvl_free(buf);
        return -1;
    }
    buf[got] = 0;
    size_t keep = (size_t)got;
    while (keep > 0 && buf[keep - 1] != '\n') keep--;
    if (keep < (size_t)got) { /* a whole result line that only lacks its newline (cut just before it) is kept */
        cJSON *r = cJSON_ParseWithLength(buf + keep, (size_t)got - keep);
        const int whole = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "id")) &&
                          cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r, "status"));
        cJSON_Delete(r);
        if (whole && pwrite(*fd, "\n", 1, got) == 1) {
            buf[got++] = '\n';
            buf[got] = 0;
            keep = (size_t)got;
        }
    }
    if (keep < (size_t)got) {
        fprintf(stderr, "nanovl batch: %s: dropping a torn last line (%zu bytes) from an interrupted run\n", path,
                (size_t)got - keep);
        if (ftruncate(*fd, (off_t)keep) != 0) {
            nvl_free(buf);
            return -1;
        }
    }
    const int rewrite = retry_failed || redo_changed;
    char *kept = rewrite ? nvl_malloc(keep + 1) : NULL;
    size_t n_kept = 0;
    int n_dropped = 0, n_failed_dropped = 0, n_changed = 0, n_changed_failed = 0, changed_line = 0;
    char changed_id[3 * 256 + 1] = "";
    if (rewrite && !kept) {
        nvl_free(buf);
        return -1;
    }
    /* the texts of the jobs without an id answered at lines they are no longer at (the HASH of
       each line-N-HASH id that is no job now; the writer puts the id first): a job now at a line
       whose text was answered elsewhere before was moved there */
    uint32_t *old_h = NULL;
    int n_old = 0, cap_old = 0;
    for (char *line = buf; line < buf + keep;) {
        char *nl = memchr(line, '\n', (size_t)(buf + keep - line));
        int ln = 0;
        unsigned hsh = 0;
        char oid[64];
        if (sscanf(line, "{\"id\":\"line-%d-%8x\"", &ln, &hsh) == 2 &&
            (snprintf(oid, sizeof oid, "line-%d-%08x", ln, hsh), !job_fp_of(rj->mine, rj->n_mine, oid))) {
            /* (only a line that is no job now: one still a job's has not moved; a review) */
            if (n_old == cap_old) {
                cap_old = cap_old ? 2 * cap_old : 64;
                uint32_t *no = nvl_realloc(old_h, (size_t)cap_old * sizeof *no);
                if (!no) {
                    nvl_free(old_h);
                    nvl_free(kept);
                    nvl_free(buf);
                    return -1;
                }
                old_h = no;
            }
            old_h[n_old++] = hsh;
        }
        line = nl + 1;
    }
    if (n_old) qsort(old_h, (size_t)n_old, sizeof *old_h, cmp_u32);
    int lineno = 0;
    for (char *line = buf; line < buf + keep;) {
        char *nl = memchr(line, '\n', (size_t)(buf + keep - line));
        cJSON *r = cJSON_ParseWithLength(line, (size_t)(nl - line));
        const cJSON *id = r ? cJSON_GetObjectItemCaseSensitive(r, "id") : NULL;
        const cJSON *status = r ? cJSON_GetObjectItemCaseSensitive(r, "status") : NULL;
        const int ok = cJSON_IsString(status) && !strcmp(status->valuestring, "ok");
        lineno++;
        if (!cJSON_IsString(id) || !cJSON_IsString(status))
            fprintf(stderr, "nanovl batch: %s: line %d is not a result line (left as it is; a job without another line "
                            "runs again)\n", path, lineno);
        const int result = cJSON_IsString(id) && cJSON_IsString(status);
        const char *now = result ? job_fp_of(rj->mine, rj->n_mine, id->valuestring) : NULL;
        const cJSON *was = r ? cJSON_GetObjectItemCaseSensitive(r, "fingerprint") : NULL;
        int changed = now && cJSON_IsString(was) && strcmp(was->valuestring, now) != 0;
        if (result && !now) { /* a job without an id edited: its line's old id (line-N-HASH) is no job now, no
                                 job without an id has its text (else it was moved, and runs again under its
                                 new line, as docs/api.md says), and line N holds a job without an id whose
                                 text was never answered (else that one was moved there, and this one
                                 deleted); a review: both answers were kept */
            int ln = 0, used = 0;
            unsigned hsh = 0;
            if (sscanf(id->valuestring, "line-%d-%8x%n", &ln, &hsh, &used) == 2 && !id->valuestring[used] && ln > 0 &&
                ln < rj->n_at &&
                !(rj->n_hashes && bsearch(&(uint32_t){hsh}, rj->hashes, (size_t)rj->n_hashes, sizeof *rj->hashes, cmp_u32))) {
                if (rj->idless_at[ln] && !(n_old && bsearch(&rj->idless_at[ln]->hash, old_h, (size_t)n_old, sizeof *old_h, cmp_u32)))
                    changed = 1;
                /* a line that could not be read (no id could be taken from it: bad JSON, nested too
                   deep) fixed since into a job with an id: its error line is that job's, answered
                   now under its id (kept, the results held two lines for it; a review) */
                else if (!ok && rj->id_at[ln])
                    changed = 1;
            }
        }
        const int redo = (now && retry_failed && !ok) || (redo_changed && changed) || (retry_failed && changed && !ok);
        if (changed && !redo && n_changed++ == 0) { /* (a failed one --retry-failed redoes anyway is not) */
            snprintf(changed_id, sizeof changed_id, "%s", id->valuestring);
            changed_line = lineno;
        }
        if (changed && !redo && !ok) n_changed_failed++;
        if (result && !redo) done_add(done, id->valuestring);
        if (result) done_add(ok ? ok_set : failed, id->valuestring);
        if (rewrite) {
            if (redo) { /* redone below */
                n_dropped++;
                n_failed_dropped += retry_failed && !ok;
            } else {
                memcpy(kept + n_kept, line, (size_t)(nl - line) + 1);
                n_kept += (size_t)(nl - line) + 1;
            }
        }
        cJSON_Delete(r);
        line = nl + 1;
    }
    nvl_free(buf);
    nvl_free(old_h);
    if (n_changed) {
        fprintf(stderr, "nanovl batch: %s: %d of this run's jobs %s answered there with another checkpoint, other "
                        "options or another job line (the first: '%s', line %d there); rerun with the same ones, give "
                        "another --out, or %s to answer them again\n", path, n_changed,
                n_changed == 1 ? "was" : "were", changed_id, changed_line,
                n_changed_failed == n_changed ? "--retry-failed (each of them failed) or --redo-changed" : "--redo-changed");
        nvl_free(kept);
        return -3;
    }
    int rc = 0;
    if (n_dropped && sb.st_nlink > 1) { /* a rename would leave the other names on the old lines */
        fprintf(stderr, "nanovl batch: %s has %lu hard links; %s rewrites it under one name (give it a file "
                        "of its own)\n", path, (unsigned long)sb.st_nlink,
                n_failed_dropped == n_dropped ? "--retry-failed" : n_failed_dropped ? "--retry-failed with --redo-changed"
                                                                                     : "--redo-changed");
        n_dropped = 0;
        rc = -2;
    }
    if (n_dropped) {
        char *real = realpath(path, NULL); /* a link's target is what gets rewritten */
        const char *target = real ? real : path;
        const size_t l = strlen(target) + 16;
        char *tmp = nvl_malloc(l);
        int nfd = -1;
        if (tmp) {
            snprintf(tmp, l, "%s.tmp-XXXXXX", target);
            nfd = mkostemp(tmp, O_CLOEXEC); /* (a child must not hold the lock: a helper outlived the run) */
        }
        rc = -1;
        int werr = nfd >= 0 ? 0 : errno;
        if (nfd >= 0) {
            size_t off = 0;
            while (off < n_kept) {
                ssize_t w = write(nfd, kept + off, n_kept - off);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) break;
                off += (size_t)w;
            }
            const int fl = fcntl(nfd, F_GETFL);
            if (off == n_kept && fchmod(nfd, sb.st_mode & 07777) == 0 && fsync(nfd) == 0 &&
                flock(nfd, LOCK_EX | LOCK_NB) == 0 && fl >= 0 && fcntl(nfd, F_SETFL, fl | O_APPEND) == 0 &&
                rename(tmp, target) == 0) {
                close(*fd);
                *fd = nfd;
                rc = 0;
                if (n_failed_dropped)
                    fprintf(stderr, "nanovl batch: %s: removed %d earlier error line%s to redo (--retry-failed)\n", path,
                            n_failed_dropped, n_failed_dropped == 1 ? "" : "s");
                if (n_dropped > n_failed_dropped)
                    fprintf(stderr, "nanovl batch: %s: removed %d earlier line%s of changed jobs to redo (--redo-changed)\n",
                            path, n_dropped - n_failed_dropped, n_dropped - n_failed_dropped == 1 ? "" : "s");
            } else {
                werr = errno ? errno : EIO;
                close(nfd);
                unlink(tmp);
            }
        }
        if (rc) { /* (it said "cannot read the earlier results", which had been read; a review) */
            fprintf(stderr, "nanovl batch: %s: cannot rewrite it without the lines to redo (through a temporary file "
                            "beside %s): %s\n", path, target, strerror(werr ? werr : EIO));
            rc = -2;
        }
        nvl_free(tmp);
        free(real); /* (realpath's malloc) */
    }
    nvl_free(kept);
    return rc;
}

static int write_line(int fd, cJSON *o) {
    size_t n = 0;
    char *s = api_json_print(o, &n); /* valid UTF-8 whatever the job line held */
    if (!s) return -1;
    s[n] = '\n'; /* replaces the terminator: write n + 1 bytes in one append */
    size_t off = 0;
    int rc = 0;
    while (off < n + 1) {
        ssize_t w = write(fd, s + off, n + 1 - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            rc = -1;
            break;
        }
        off += (size_t)w;
    }
    s[n] = 0;
    nvl_free(s);
    if (rc == 0 && fdatasync(fd) != 0 && errno != EINVAL) rc = -1;
    return rc;
}

/* parse_failed: the job line could not be read as a request; its code is then the socket's
 * protocol code (bad_json, bad_request, ...), one vocabulary with serve */
static void set_error(cJSON *o, nvl_status st, int parse_failed, const char *msg) {
    cJSON_AddStringToObject(o, "status", "error");
    cJSON *e = cJSON_AddObjectToObject(o, "error");
    if (e) {
        cJSON_AddStringToObject(e, "code", parse_failed ? api_request_error_code(st) : api_status_code(st));
        cJSON_AddStringToObject(e, "message", msg);
    }
}

/* One job in flight: its request (whose strings the engine reads until it ends), its result
 * object, and how it ended (set from the engine's callbacks on this, the stepping thread). */
typedef struct job {
    int live, ended;
    const batch_line *L;
    struct batch_run *b;
    api_request rq;
    int have_rq, parse_failed, is_ocr;
    cJSON *o;
    cJSON *pages; /* ocr: the page records */
    api_media *media;
    api_ask_params ocr_p;
    api_pages *pg;
    api_pages_planner *planner; /* ocr, --parallel > 1: its pages being listed off the stepping loop */
    api_ask_result res;
    uint64_t id;
    nvl_status st;
    int n_failed;
    nvl_status page_st; /* ocr: the first failed page's or file's status (the job's error code) */
    char page_msg[NVL_ERR_MSG_MAX / 2]; /* ...and its message (in the job's) */
    char msg[NVL_ERR_MSG_MAX];
    double tj;
} job;

/* What the progress line of --parallel N > 1 reads. */
typedef struct batch_run {
    cli_progress *prog;
    int parallel, todo, n_run, n_live;
    double t0;
} batch_run;

static void fmt_dur(char *b, size_t n, double s) {
    if (s > 359999) s = 359999;
    if (s < 0) snprintf(b, n, "?");
    else if (s < 60) snprintf(b, n, "%.0fs", s);
    else if (s < 3600) snprintf(b, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else snprintf(b, n, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
}

/* --parallel N > 1: jobs done of the total with ETA, how many run, and the stage of the job
 * that reported last (redrawn at most ten times a second). */
static void par_show(batch_run *b, int always, const char *id, const char *what) {
    const double el = nvl_now() - b->t0;
    char eta[16];
    fmt_dur(eta, sizeof eta, b->n_run ? el / b->n_run * (b->todo - b->n_run) : -1);
    snprintf(b->prog->prefix, sizeof b->prog->prefix, "[%d/%d done %d%% ETA %s, %d running] ", b->n_run, b->todo,
             b->todo ? 100 * b->n_run / b->todo : 100, eta, b->n_live);
    if (id) cli_progress_show(b->prog, always, "%.20s: %s", id, what);
    else cli_progress_show(b->prog, always, "%s", what);
}

static void par_on_progress(const api_progress *p, void *user) {
    job *j = user;
    char what[64];
    if (p->total) snprintf(what, sizeof what, "%s %lld/%lld", api_stage_name(p->stage), (long long)p->done, (long long)p->total);
    else snprintf(what, sizeof what, "%s %lld", api_stage_name(p->stage), (long long)p->done);
    par_show(j->b, 0, j->L->id, what);
}

static int ocr_page(int index, int n_total, const char *name, int page, const api_ask_result *r, void *user) {
    (void)index;
    (void)n_total;
    job *j = user;
    cJSON *p = api_page_to_json(name, page, r, "text");
    if (p) cJSON_AddItemToArray(j->pages, p);
    return g_stop;
}

static int ocr_page_error(int index, int n_total, const char *name, int page, nvl_status st, const char *msg, void *user) {
    (void)index;
    (void)n_total;
    job *j = user;
    cJSON *p = api_page_error_to_json(name, page, st, msg);
    if (p) cJSON_AddItemToArray(j->pages, p);
    if (j->page_st == NVL_OK) {
        j->page_st = st;
        snprintf(j->page_msg, sizeof j->page_msg, "%s", msg ? msg : "");
    }
    return g_stop;
}

static void job_end(job *j, nvl_status st, int n_failed, const char *msg) {
    j->ended = 1;
    j->st = st;
    j->n_failed = n_failed;
    snprintf(j->msg, sizeof j->msg, "%s", msg ? msg : "");
}

static void job_on_done(nvl_status st, const char *msg, void *user) { job_end(user, st, 0, msg); }

static void job_on_finish(nvl_status st, int n_failed, const char *msg, void *user) { job_end(user, st, n_failed, msg); }

/* Hands one job to the engine (or ends it at once: a line that is not a request, an argument
 * error, inputs that cannot be read). */
static void start_job(api_engine *e, job *j, const api_ask_params *base, int ocr_tokens_default, cli_progress *prog) {
    nvl_err err = {0};
    nvl_status st = api_request_parse_with(j->L->text, j->L->len, base, &j->rq, &err);
    j->tj = nvl_now();
    j->have_rq = st == NVL_OK;
    j->parse_failed = st != NVL_OK;
    if (st == NVL_OK && (j->rq.type == API_REQ_CANCEL || j->rq.type == API_REQ_STATUS)) {
        st = nvl_err_set(&err, NVL_ERR_INVALID_ARG, "a batch job is an ask or an ocr request, not '%s'",
                         api_request_type_name(j->rq.type));
        j->parse_failed = 1;
    }
    if (st != NVL_OK) { /* its type as the line says it, where it says one batch runs (every line has one) */
        cJSON *root = j->rq.type == API_REQ_CANCEL || j->rq.type == API_REQ_STATUS ? NULL
                                                                                   : cJSON_ParseWithLength(j->L->text, j->L->len);
        const cJSON *t = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "type") : NULL;
        if (cJSON_IsObject(root) && (!t || (cJSON_IsString(t) && (!strcmp(t->valuestring, "ask") || !strcmp(t->valuestring, "ocr")))))
            cJSON_AddStringToObject(j->o, "type", t ? t->valuestring : "ask");
        cJSON_Delete(root);
        job_end(j, st, 0, err.msg);
        return;
    }
    api_callbacks cb = {.cancel = &g_cancel};
    if (j->b->parallel > 1) {
        cb.on_progress = par_on_progress;
        cb.user = j;
    } else {
        cb.on_progress = cli_on_progress;
        cb.user = prog;
    }
    cJSON_AddStringToObject(j->o, "type", api_request_type_name(j->rq.type));
    if (j->rq.type == API_REQ_OCR) {
        j->is_ocr = 1;
        const int tokens_default =
            ocr_tokens_default &&
            !cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j->rq.root, "params"), "max_tokens");
        j->ocr_p = api_ocr_params(&j->rq.params, !tokens_default);
        const int n_media = j->rq.msgs[0].n_parts;
        j->media = nvl_calloc((size_t)n_media + 1, sizeof *j->media);
        if (!j->media) {
            job_end(j, NVL_ERR_NOMEM, 0, "out of memory");
            return;
        }
        for (int i = 0; i < n_media; i++) j->media[i] = j->rq.msgs[0].parts[i].media;
        j->pages = cJSON_CreateArray();
        api_pages_hooks h = {.on_page = ocr_page, .on_page_error = ocr_page_error, .on_finish = job_on_finish,
                             .cb = &cb, .user = j};
        /* with other jobs in flight, its files are opened off the loop that steps them (a PDF's
           opening held every job's steps: tens of ms a file, seconds for a large damaged one) */
        if (j->b->parallel > 1 && api_pages_plan_async(e, j->media, n_media, j->rq.prompt, &j->ocr_p, &h, NULL, NULL,
                                                       &j->planner, &err) == NVL_OK)
            return;
        st = api_pages_start(e, j->media, n_media, j->rq.prompt, &j->ocr_p, &h, &j->pg, &err);
        if (st != NVL_OK) job_end(j, st, 0, err.msg);
        return;
    }
    cb.on_done = job_on_done;
    cb.done_user = j;
    st = api_engine_submit(e, j->rq.msgs, j->rq.n_msgs, &j->rq.params, &cb, &j->res, &j->id, &err);
    if (st != NVL_OK) job_end(j, st, 0, err.msg);
}

static void job_free(job *j) {
    api_pages_free(j->pg);
    nvl_free(j->media);
    cJSON_Delete(j->pages);
    cJSON_Delete(j->o);
    api_ask_result_free(&j->res);
    if (j->have_rq) api_request_free(&j->rq);
    memset(j, 0, sizeof *j);
}

/* Stops a job that runs (its end comes through its callbacks at a later step). */
static void job_cancel(api_engine *e, job *j) {
    if (!j->live || j->ended) return;
    if (j->pg) api_pages_cancel(j->pg);
    else if (j->id) api_engine_cancel(e, j->id);
}

/* A job ended: fills its result object (the same fields, in the same order, as one job at a
 * time always wrote). Returns its status. */
static nvl_status job_result(job *j) {
    nvl_status st = j->st;
    cJSON *o = j->o;
    if (j->is_ocr) {
        if (st == NVL_OK && j->n_failed)
            snprintf(j->msg, sizeof j->msg, "%d of %d pages or files failed (see pages); the first: %s", j->n_failed,
                     cJSON_GetArraySize(j->pages), j->page_msg);
        /* the job's code: its first failed page's (not_found, unsupported, ...), so that filtering
           results by code finds it */
        if (st == NVL_OK && j->n_failed) st = j->page_st != NVL_OK ? j->page_st : NVL_ERR_FORMAT;
        if (j->pages) cJSON_AddItemToObject(o, "pages", j->pages);
        j->pages = NULL;
        if (st == NVL_OK) cJSON_AddStringToObject(o, "status", "ok");
    } else if (st == NVL_OK && j->have_rq) {
        cJSON_AddStringToObject(o, "status", "ok");
        api_json_merge(o, api_result_to_json(&j->res));
    }
    if (st != NVL_OK) {
        cJSON_DeleteItemFromObject(o, "status");
        set_error(o, st, j->parse_failed, j->msg);
    }
    cJSON_AddNumberToObject(o, "elapsed_s", (double)(long)((nvl_now() - j->tj) * 1000) / 1000);
    return st;
}

int cmd_batch(int argc, char **argv) {
    const char *model = getenv("NANOVL_MODEL"), *jobs_path = NULL, *out_path = NULL;
    api_ask_params base = api_ask_params_default();
    int shard = 0, n_shards = 1, retry_failed = 0, redo_changed = 0, force_progress = -1, parallel = 1, rc = 0, max_tokens_given = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int k = cli_ask_option(argc, argv, &i, &base, &model, "batch", k_usage);
        if (k == 2) return 0;
        if (k < 0) return EXIT_USAGE;
        if (k > 0) {
            if (!strcmp(a, "--max-tokens")) max_tokens_given = 1; /* (OCR jobs: 4096 a page unless given) */
            continue;
        }
        if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && v) out_path = argv[++i];
        else if (!strcmp(a, "--shard") && v) {
            /* (strtol with its range checked: sscanf's %d wraps 4294967297 to 1) */
            char *e1 = NULL, *e2 = NULL;
            errno = 0;
            const long si = strtol(v, &e1, 10);
            const long sn = e1 != v && *e1 == '/' ? strtol(e1 + 1, &e2, 10) : -1;
            if (errno || e1 == v || !e2 || e2 == e1 + 1 || *e2 || sn < 1 || sn > 1000000 || si < 0 || si >= sn) {
                fprintf(stderr, "nanovl batch: --shard wants i/N with 0 <= i < N <= 1000000, got '%s'\n", v);
                return EXIT_USAGE;
            }
            shard = (int)si;
            n_shards = (int)sn;
            i++;
        } else if (!strcmp(a, "--parallel") && v) {
            char *e1 = NULL;
            errno = 0;
            const long pv = strtol(v, &e1, 10);
            parallel = pv >= 1 && pv <= 256 ? (int)pv : 0;
            if (errno || e1 == v || *e1 || parallel == 0) {
                fprintf(stderr, "nanovl batch: --parallel wants a number of jobs from 1 to 256, got '%s'\n", v);
                return EXIT_USAGE;
            }
            i++;
        } else if (!strcmp(a, "--retry-failed")) retry_failed = 1;
        else if (!strcmp(a, "--redo-changed")) redo_changed = 1;
        else if (!strcmp(a, "--progress")) force_progress = 1;
        else if (!strcmp(a, "--no-progress")) force_progress = 0;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "nanovl batch: unknown or incomplete option '%s'\n", a);
            fputs(k_usage, stderr);
            fputs(cli_ask_options_help, stderr);
            return EXIT_USAGE;
        } else if (!jobs_path) jobs_path = a;
        else {
            fprintf(stderr, "nanovl batch: one manifest only ('%s' and '%s')\n", jobs_path, a);
            return EXIT_USAGE;
        }
    }
    if (!model || !jobs_path || !out_path) {
        if (!model) fprintf(stderr, "nanovl batch: no model: pass --model DIR or set NANOVL_MODEL\n");
        fputs(k_usage, stderr);
        fputs(cli_ask_options_help, stderr);
        return EXIT_USAGE;
    }
    const int ocr_tokens_default = !max_tokens_given;
    /* the manifest: jobs of this shard, ids unique across the whole manifest */
    size_t jl = 0;
    char *jobs = NULL;
    struct stat jobs_sb;
    { /* regular files only: a FIFO or device would block or never end */
        struct stat out_sb;
        if (stat(jobs_path, &jobs_sb) != 0) {
            fprintf(stderr, "nanovl batch: %s: %s\n", jobs_path, strerror(errno));
            return 1;
        }
        if (!S_ISREG(jobs_sb.st_mode)) {
            fprintf(stderr, "nanovl batch: %s: the jobs file is not a regular file\n", jobs_path);
            return EXIT_USAGE; /* (as ocr -o with --resume: what was named cannot be used this way) */
        }
        if (stat(out_path, &out_sb) == 0) {
            if (!S_ISREG(out_sb.st_mode)) {
                fprintf(stderr, "nanovl batch: %s: --out is not a regular file\n", out_path);
                return EXIT_USAGE;
            }
            if (out_sb.st_dev == jobs_sb.st_dev && out_sb.st_ino == jobs_sb.st_ino) {
                fprintf(stderr, "nanovl batch: --out %s is the jobs file %s; results need their own file\n", out_path,
                        jobs_path);
                return EXIT_USAGE;
            }
        }
    }
    {
        FILE *f = fopen(jobs_path, "rb");
        if (!f) {
            fprintf(stderr, "nanovl batch: %s: %s\n", jobs_path, strerror(errno));
            return 1;
        }
        size_t cap = 1 << 16;
        jobs = nvl_malloc(cap);
        size_t r;
        while (jobs && (r = fread(jobs + jl, 1, cap - jl - 1, f)) > 0) {
            jl += r;
            if (jl + 1 == cap) {
                char *nj = nvl_realloc(jobs, cap *= 2);
                if (!nj) {
                    nvl_free(jobs);
                    jobs = NULL;
                }
                jobs = nj;
            }
        }
        fclose(f);
        if (!jobs) {
            fprintf(stderr, "nanovl batch: %s: out of memory\n", jobs_path);
            return 1;
        }
        jobs[jl] = 0;
    }
    int n_lines = 0, cap_lines = 0;
    batch_line *lines = NULL;
    int lineno = 0;
    for (char *p = jobs; p < jobs + jl;) {
        char *nl = memchr(p, '\n', (size_t)(jobs + jl - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(jobs + jl - p);
        lineno++;
        size_t t = n;
        while (t && (p[t - 1] == '\r' || p[t - 1] == ' ' || p[t - 1] == '\t')) t--;
        size_t h = 0;
        while (h < t && (p[h] == ' ' || p[h] == '\t')) h++;
        if (h < t) {
            if (n_lines == cap_lines) {
                cap_lines = cap_lines ? cap_lines * 2 : 256;
                batch_line *nl2 = nvl_realloc(lines, (size_t)cap_lines * sizeof *nl2);
                if (!nl2) {
                    fprintf(stderr, "nanovl batch: out of memory\n");
                    nvl_free(lines);
                    nvl_free(jobs);
                    return 1;
                }
                lines = nl2;
            }
            batch_line *L = &lines[n_lines++];
            L->text = p + h;
            L->len = t - h;
            L->lineno = lineno;
            /* the id as the request parser reads it (one JSON value, no NUL in it: else the job fails
               with bad_json / bad_request under its line id, and no two ids collide by a cut) */
            cJSON *r = NULL;
            nvl_err ie = {0};
            if (api_json_has_nul(L->text, L->len) || nvl_json_parse(&r, L->text, L->len, "job", &ie) != NVL_OK) r = NULL;
            const cJSON *id = r ? cJSON_GetObjectItemCaseSensitive(r, "id") : NULL;
            if (id && cJSON_IsString(id) && strlen(id->valuestring) > 256) id = NULL; /* (refused by the parser too) */
            const cJSON *sk = r ? cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "params"),
                                                                   "skip_bad_pages")
                                : NULL;
            L->skip = cJSON_IsBool(sk) ? cJSON_IsTrue(sk) : base.skip_bad_pages;
            /* the id as the results file will hold it (invalid UTF-8 bytes as U+FFFD), so that a
             * rerun finds it there */
            char *fixed = cJSON_IsString(id) ? api_utf8_fix(id->valuestring, strlen(id->valuestring), NULL) : NULL;
            L->idless = 0;
            if (fixed && strlen(fixed) < sizeof L->id) snprintf(L->id, sizeof L->id, "%s", fixed);
            else {
                L->idless = 1; /* no id: its line and its text (FNV-1a of the trimmed line), so that a job moved
                      or edited between runs is a new job, never one that takes another's result */
                uint32_t hsh = 2166136261u;
                for (size_t i = 0; i < L->len; i++) hsh = (hsh ^ (uint8_t)L->text[i]) * 16777619u;
                snprintf(L->id, sizeof L->id, "line-%d-%08x", lineno, (unsigned)hsh);
                L->hash = hsh;
            }
            nvl_free(fixed);
            cJSON_Delete(r);
        }
        p += n + (nl ? 1 : 0);
    }
    { /* ids unique: sort pointers to them, compare neighbours */
        char **ids = nvl_malloc((size_t)(n_lines + 1) * sizeof *ids);
        if (!ids) {
            nvl_free(lines);
            nvl_free(jobs);
            return 1;
        }
        for (int i = 0; i < n_lines; i++) ids[i] = lines[i].id;
        qsort(ids, (size_t)n_lines, sizeof *ids, cmp_str);
        for (int i = 1; i < n_lines; i++)
            if (!strcmp(ids[i - 1], ids[i])) {
                int a = -1, b = -1;
                for (int j = 0; j < n_lines; j++)
                    if (!strcmp(lines[j].id, ids[i])) {
                        if (a < 0) a = lines[j].lineno;
                        else if (b < 0) b = lines[j].lineno;
                    }
                fprintf(stderr, "nanovl batch: %s: lines %d and %d have the same id '%s'; ids must be unique\n", jobs_path,
                        a, b, ids[i]);
                nvl_free(ids);
                nvl_free(lines);
                nvl_free(jobs);
                return 1;
            }
        nvl_free(ids);
    }
    /* made here (not there before): removed again if the run ends without a line in it (a bad
       --model left an empty results file; a review) */
    int fd = open(out_path, O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
    const int made_out = fd >= 0;
    if (fd < 0 && errno == EEXIST) fd = open(out_path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "nanovl batch: %s: %s\n", out_path, strerror(errno));
        nvl_free(lines);
        nvl_free(jobs);
        return 1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "nanovl batch: %s: in use by another nanovl batch (give each shard its own --out)\n", out_path);
        close(fd);
        nvl_free(lines);
        nvl_free(jobs);
        return 1;
    }
    { /* the same file under another name (a link made between the checks) */
        struct stat out_sb;
        if (fstat(fd, &out_sb) == 0 && out_sb.st_dev == jobs_sb.st_dev && out_sb.st_ino == jobs_sb.st_ino) {
            fprintf(stderr, "nanovl batch: --out %s is the jobs file %s; results need their own file\n", out_path, jobs_path);
            close(fd);
            nvl_free(lines);
            nvl_free(jobs);
            return EXIT_USAGE;
        }
    }
    done_set done = {0}, failed = {0}, ok_set = {0};
    struct stat out_now = {0};
    fstat(fd, &out_now);
    const uint64_t run_fp = batch_run_fp(model, &base, !max_tokens_given, &jobs_sb, &out_now);
    run_jobs rj = {0};
    const int lr = run_jobs_make(&rj, lines, n_lines, shard, n_shards, run_fp)
                       ? load_results(&fd, out_path, retry_failed, redo_changed, &rj, &done, &failed, &ok_set)
                       : (errno = ENOMEM, -1);
    run_jobs_free(&rj);
    if (lr != 0) {
        if (lr == -1) fprintf(stderr, "nanovl batch: %s: cannot read the earlier results: %s\n", out_path, strerror(errno));
        close(fd);
        done_free(&done);
        done_free(&failed);
        done_free(&ok_set);
        nvl_free(lines);
        nvl_free(jobs);
        return lr == -3 ? EXIT_USAGE : 1;
    }
    done_sort(&done);
    done_sort(&failed);
    done_sort(&ok_set);
    int n_mine = 0, n_skip = 0, n_prev_fail = 0; /* the last: jobs skipped whose recorded result is an error */
    for (int i = 0; i < n_lines; i++)
        if (i % n_shards == shard) {
            n_mine++;
            const int d = done_has(&done, lines[i].id);
            n_skip += d;
            n_prev_fail += d && done_has(&failed, lines[i].id) && !done_has(&ok_set, lines[i].id);
        }
    done_free(&failed);
    done_free(&ok_set);
    cli_progress prog;
    cli_progress_init(&prog, force_progress);
    nvl_err err = {0};
    api_engine *e = NULL;
    int n_ok = 0, n_fail = 0, n_run = 0, n_unwritten = 0;
    double t0 = nvl_now();
    if (n_mine - n_skip > 0) {
        cli_progress_show(&prog, 1, "loading %s", model);
        api_engine_opts eo = api_engine_opts_default();
        eo.max_batch = parallel;
        if (api_engine_open_with(&e, model, &eo, &err) != NVL_OK) {
            cli_progress_clear(&prog);
            fprintf(stderr, "nanovl batch: %s: %s\n", model, err.msg);
            rc = 1;
            goto out;
        }
    }
    struct sigaction sa, old_term, old_int;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    t0 = nvl_now();
    batch_run b = {.prog = &prog, .parallel = parallel, .todo = n_mine - n_skip, .t0 = t0};
    job *slots = nvl_calloc((size_t)parallel, sizeof *slots);
    if (!slots) {
        fprintf(stderr, "nanovl batch: out of memory\n");
        rc = 1;
    }
    /* Up to `parallel` jobs in flight: start jobs into free slots (manifest order), step the
     * engine, write the line of each job that ended. An interrupt (or a failed write) starts no
     * more jobs and cancels those in flight; a job that ends cancelled then gets no line (a rerun
     * redoes it); the loop ends when no job is left in flight. */
    int next = 0, halt = !slots, cancelled_all = 0;
    for (;;) {
        for (int s = 0; s < parallel && !halt && !g_stop && next < n_lines; s++) {
            if (slots[s].live) continue;
            while (next < n_lines && (next % n_shards != shard || done_has(&done, lines[next].id))) next++;
            if (next == n_lines) break;
            job *j = &slots[s];
            memset(j, 0, sizeof *j);
            j->live = 1;
            j->L = &lines[next++];
            j->b = &b;
            if (parallel == 1) {
                const double el = nvl_now() - t0;
                char eta[16];
                fmt_dur(eta, sizeof eta, n_run ? el / n_run * (b.todo - n_run) : -1);
                snprintf(prog.prefix, sizeof prog.prefix, "[%d/%d %d%% ETA %s] %.20s: ", n_run + 1, b.todo,
                         b.todo ? 100 * n_run / b.todo : 100, eta, j->L->id);
                cli_progress_show(&prog, 1, "starting");
            }
            if (!(j->o = cJSON_CreateObject())) {
                j->live = 0;
                rc = 1;
                halt = 1;
                break;
            }
            cJSON_AddStringToObject(j->o, "id", j->L->id);
            cJSON_AddNumberToObject(j->o, "line", j->L->lineno);
            cJSON_AddStringToObject(j->o, "fingerprint", j->L->fp);
            b.n_live++;
            start_job(e, j, &base, ocr_tokens_default, &prog);
            if (parallel > 1) par_show(&b, 1, j->L->id, "starting");
        }
        /* ocr jobs whose pages are listed begin (stopped at once when the batch is stopping) */
        int n_planning = 0;
        for (int s = 0; slots && s < parallel; s++) {
            job *j = &slots[s];
            if (!j->live || !j->planner) continue;
            if (!api_pages_planned(j->planner)) {
                n_planning++;
                continue;
            }
            nvl_err e2 = {0};
            const nvl_status st = api_pages_plan_finish(j->planner, &j->pg, &e2);
            j->planner = NULL;
            if (st != NVL_OK) job_end(j, st, 0, e2.msg);
            else if (halt || g_stop) job_cancel(e, j);
        }
        /* the jobs that ended: their lines, one whole append each */
        for (int s = 0; slots && s < parallel; s++) {
            job *j = &slots[s];
            if (!j->live || !j->ended) continue;
            const int discard = halt || (j->st == NVL_ERR_CANCELLED && g_stop); /* no record: a rerun redoes it */
            b.n_live--;
            if (discard) {
                job_free(j);
                continue;
            }
            const nvl_status st = job_result(j);
            if (write_line(fd, j->o) != 0) {
                cli_progress_clear(&prog);
                fprintf(stderr, "nanovl batch: %s: write failed: %s\n", out_path, strerror(errno));
                n_unwritten++; /* (counted nowhere in the summary before: a review) */
                job_free(j);
                rc = 1;
                halt = 1;
                continue;
            }
            n_run++;
            b.n_run = n_run;
            if (st == NVL_OK) n_ok++;
            else {
                n_fail++;
                cli_progress_clear(&prog);
                fprintf(stderr, "nanovl batch: %s (line %d): %s\n", j->L->id, j->L->lineno, j->msg);
            }
            job_free(j);
            if (parallel > 1) par_show(&b, 1, NULL, "");
        }
        if ((g_stop || halt) && !cancelled_all) {
            g_cancel = 1; /* (ends the listings under way, which have no run to cancel yet) */
            for (int s = 0; slots && s < parallel; s++) job_cancel(e, &slots[s]);
            cancelled_all = 1;
        }
        if (b.n_live == 0) {
            if (halt || g_stop || next >= n_lines) break;
            continue;
        }
        if (n_planning && api_engine_pending(e) == 0) { /* only listings under way: wait for them */
            const struct timespec ts = {0, 2 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        api_engine_step(e);
        if (api_engine_pending(e) == 0) {
            /* nothing is left in the engine: every job in flight has ended (its callbacks ran), but
               those still listing their pages */
            for (int s = 0; s < parallel; s++)
                if (slots[s].live && !slots[s].ended && !slots[s].planner)
                    job_end(&slots[s], NVL_ERR_INTERNAL, 0, "the engine dropped the job");
        }
    }
    nvl_free(slots);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    cli_progress_clear(&prog);
    {
        char el[32];
        fmt_dur(el, sizeof el, nvl_now() - t0);
        char prev[96] = "";
        if (n_prev_fail)
            snprintf(prev, sizeof prev, " (%d of them failed: --retry-failed redoes them)", n_prev_fail);
        char lost[80] = "";
        if (n_unwritten)
            snprintf(lost, sizeof lost, ", %d answered but not written (a rerun redoes %s)", n_unwritten,
                     n_unwritten == 1 ? "it" : "them");
        fprintf(stderr, "nanovl batch: shard %d/%d: %d job%s, %d already done%s, %d ok, %d failed%s%s in %s -> %s\n", shard,
                n_shards, n_mine, n_mine == 1 ? "" : "s", n_skip, prev, n_ok, n_fail, lost,
                g_stop ? ", interrupted (rerun to resume)" : "", el, out_path);
    }
    if (n_fail || n_prev_fail) rc = 1; /* every failure of the shard's jobs, this run's or recorded */
    if (g_stop) rc = 130;
out:
    api_engine_close(e);
    done_free(&done);
    struct stat end_sb;
    if (made_out && rc != 0 && fstat(fd, &end_sb) == 0 && end_sb.st_size == 0) unlink(out_path);
    close(fd);
    nvl_free(lines);
    nvl_free(jobs);
    return rc;
}

// ---------------------------------------------------------------------------
// `nanovl jobs`: a jobs file for batch from files

static const char *k_jobs_usage =
    "usage: nanovl jobs (-q QUESTION | --ocr) [--pages R] [--] FILE... > JOBS.jsonl\n"
    "  one batch job line per file: {\"id\": FILE as given, \"files\": [its absolute path],\n"
    "  \"question\": QUESTION} (or \"type\": \"ocr\"), --pages R as the job's params; for\n"
    "  `nanovl batch JOBS.jsonl --out RESULTS.jsonl`, whose options are the jobs' defaults.\n"
    "  Every FILE must be a readable, non-empty regular file (exit 1 naming those that are\n"
    "  not, no line written: such a job could only fail); a FILE given twice is refused (ids\n"
    "  must be unique). Files whose contents are bad (a damaged image) get their lines, and\n"
    "  fail in batch, each on its own\n";

int cmd_jobs(int argc, char **argv) {
    const char *question = NULL, *pages = NULL;
    int ocr = 0, opts_done = 0, n = 0, rc = 0;
    const char **files = nvl_calloc((size_t)argc + 1, sizeof *files);
    char **abs = nvl_calloc((size_t)argc + 1, sizeof *abs);
    if (!files || !abs) {
        fprintf(stderr, "nanovl jobs: out of memory\n");
        rc = 1;
        goto out;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (opts_done) files[n++] = a;
        else if (!strcmp(a, "--")) opts_done = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_jobs_usage, stdout);
            goto out;
        } else if ((!strcmp(a, "-q") || !strcmp(a, "--question")) && v) {
            if (question) { /* (ids are the files' names: two questions would give each id twice) */
                fprintf(stderr, "nanovl jobs: -q is given twice: a jobs file asks one question of each file (write a "
                                "jobs file per question)\n");
                rc = EXIT_USAGE;
                goto out;
            }
            question = argv[++i];
        }
        else if (!strcmp(a, "--pages") && v) pages = argv[++i];
        else if (!strcmp(a, "--ocr")) ocr = 1;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "nanovl jobs: unknown or incomplete option '%s'\n%s", a, k_jobs_usage);
            rc = EXIT_USAGE;
            goto out;
        } else files[n++] = a;
    }
    if (!!question == ocr || n == 0) {
        fprintf(stderr, "nanovl jobs: %s\n%s",
                n == 0 ? "no files" : ocr ? "--ocr jobs ask no question: give -q or --ocr" : "give -q QUESTION or --ocr",
                k_jobs_usage);
        rc = EXIT_USAGE;
        goto out;
    }
    if (question) { /* a question batch would ask as given: empty (an unset shell variable) or not UTF-8 refused */
        const char *q = question;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
        const char *bad = !*q ? "is empty" : !api_utf8_valid(question, strlen(question)) ? "is not valid UTF-8 (a jobs line holds UTF-8)" : NULL;
        if (bad) {
            fprintf(stderr, "nanovl jobs: the question %s\n", bad);
            rc = EXIT_USAGE;
            goto out;
        }
    }
    if (pages && !cli_check_pages("jobs", pages, 1)) { /* (every job would fail) */
        rc = EXIT_USAGE;
        goto out;
    }
    struct stat out_sb; /* stdout, when it is a file: `nanovl jobs --ocr * > jobs.jsonl` lists it */
    const int out_file = fstat(STDOUT_FILENO, &out_sb) == 0 && S_ISREG(out_sb.st_mode);
    for (int f = 0; f < n; f++) { /* every file readable, non-empty, not stdout, each once; a usage error (2) wins */
        nvl_err fe = {0};
        struct stat sb;
        const int fail = rc == EXIT_USAGE ? EXIT_USAGE : 1;
        if (media_check_file(files[f], NULL, &fe) != NVL_OK) {
            fprintf(stderr, "nanovl jobs: %s\n", fe.msg);
            rc = fail;
            continue;
        }
        if (stat(files[f], &sb) == 0 && out_file && sb.st_dev == out_sb.st_dev && sb.st_ino == out_sb.st_ino) {
            fprintf(stderr, "nanovl jobs: '%s' is the jobs file being written (stdout): leave it out\n", files[f]);
            rc = EXIT_USAGE;
            continue;
        }
        if (stat(files[f], &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == 0) { /* (as batch would find it) */
            fprintf(stderr, "nanovl jobs: %s: the file is empty\n", files[f]);
            rc = fail;
            continue;
        }
        if (!(abs[f] = realpath(files[f], NULL))) {
            fprintf(stderr, "nanovl jobs: %s: %s\n", files[f], strerror(errno));
            rc = fail;
            continue;
        }
        if (!api_utf8_valid(abs[f], strlen(abs[f]))) { /* (a JSON line holds UTF-8: the path could not be named) */
            fprintf(stderr, "nanovl jobs: %s: the path is not valid UTF-8, which a jobs line cannot hold (rename it)\n",
                    files[f]);
            rc = fail;
        }
        for (int g = 0; g < f; g++)
            if (abs[g] && !strcmp(files[g], files[f])) {
                fprintf(stderr, "nanovl jobs: '%s' is given twice (a job's id is its name: ids must be unique)\n", files[f]);
                rc = EXIT_USAGE;
                break;
            } else if (abs[g] && !strcmp(abs[g], abs[f])) { /* (two names of one file: its job ran twice; a review) */
                fprintf(stderr, "nanovl jobs: '%s' and '%s' are the same file (%s): it is given twice\n", files[g], files[f],
                        abs[f]);
                rc = EXIT_USAGE;
                break;
            }
    }
    if (rc) goto out;
    for (int f = 0; f < n; f++) {
        cJSON *o = cJSON_CreateObject(), *fl = NULL, *s = NULL;
        if (!o || !cJSON_AddStringToObject(o, "id", files[f]) ||
            (ocr ? !cJSON_AddStringToObject(o, "type", "ocr") : !cJSON_AddStringToObject(o, "question", question)) ||
            !(fl = cJSON_AddArrayToObject(o, "files")) || !(s = cJSON_CreateString(abs[f])) || !cJSON_AddItemToArray(fl, s)) {
            cJSON_Delete(s);
            cJSON_Delete(o);
            fprintf(stderr, "nanovl jobs: out of memory\n");
            rc = 1;
            goto out;
        }
        cJSON *pp = pages ? cJSON_AddObjectToObject(o, "params") : NULL;
        if (pp) cJSON_AddStringToObject(pp, "pages", pages);
        api_json_line(stdout, o); /* (frees o; invalid UTF-8 in a name becomes U+FFFD, as every line we write) */
    }
out:
    for (int f = 0; abs && f < n; f++) free(abs[f]);
    nvl_free(abs);
    nvl_free(files);
    return rc;
}
