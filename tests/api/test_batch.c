/* `nanovl batch` end to end (runs the nanovl binary on the tiny VL checkpoint and real files):
 * a result line per job, per-page records, failures recorded and the batch going on; a batch
 * killed mid-job and rerun resumes without redoing finished jobs and without a torn line; a
 * torn last line from an interrupted write is dropped and its job redone; --shard i/N splits
 * the manifest into disjoint parts that cover it; --parallel 4 gives each job the answer of
 * --parallel 1, one line per id, and resumes after a SIGKILL or a SIGTERM mid-run without a
 * duplicate or torn line; duplicate ids are refused; a second writer on the same out file is
 * refused. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "test_util.h"

static char g_dir[256];
static const char *g_model; /* the checkpoint (NULL: tests/data/vl_tiny) */
static const char *g_extra; /* one more argument after a1 a2 (NULL: none) */

static pid_t spawn(const char *jobs, const char *out, const char *a1, const char *a2) {
    pid_t pid = fork();
    if (pid == 0) {
        char log[320];
        snprintf(log, sizeof log, "%s/batch.log", g_dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) dup2(fd, 2);
        const char *argv[12] = {"nanovl", "batch", "--model", g_model ? g_model : test_data_path("vl_tiny"), jobs, "--out",
                                out, "--no-progress"};
        int n = 8;
        if (a1) argv[n++] = a1;
        if (a1 && a2) argv[n++] = a2;
        if (g_extra) argv[n++] = g_extra;
        execv(NANOVL_BIN, (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int run(const char *jobs, const char *out, const char *a1, const char *a2) {
    int st = 0;
    waitpid(spawn(jobs, out, a1, a2), &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Result lines of out: count, and each line must be JSON (no torn line). */
typedef struct results {
    int n;
    char ids[64][64];
    char status[64][16];
    int torn;
    cJSON *line[64];
} results;

static void load(const char *out, results *r) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(out, "r");
    if (!f) return;
    static char buf[1 << 20];
    while (fgets(buf, sizeof buf, f) && r->n < 64) {
        size_t n = strlen(buf);
        if (n == 0 || buf[n - 1] != '\n') {
            r->torn = 1;
            break;
        }
        cJSON *o = cJSON_Parse(buf);
        if (!o) {
            r->torn = 1;
            continue;
        }
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id"), *st = cJSON_GetObjectItemCaseSensitive(o, "status");
        snprintf(r->ids[r->n], sizeof r->ids[0], "%s", cJSON_IsString(id) ? id->valuestring : "?");
        snprintf(r->status[r->n], sizeof r->status[0], "%s", cJSON_IsString(st) ? st->valuestring : "?");
        r->line[r->n++] = o;
    }
    fclose(f);
}

static void unload(results *r) {
    for (int i = 0; i < r->n; i++) cJSON_Delete(r->line[i]);
}

static int count_id(const results *r, const char *id) {
    int c = 0;
    for (int i = 0; i < r->n; i++) c += !strcmp(r->ids[i], id);
    return c;
}

/* The id batch gives a job without one: "line-N-" and the FNV-1a of its (trimmed) text. */
static const char *line_id(int n, const char *text) {
    static char buf[4][48];
    static int k = 0;
    uint32_t h = 2166136261u;
    for (const char *s = text; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "line-%d-%08x", n, (unsigned)h);
    return buf[k];
}

static const cJSON *find(const results *r, const char *id) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->ids[i], id)) return r->line[i];
    return NULL;
}

/* Whether every byte of the file is valid UTF-8. */
static int utf8_file_valid(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static unsigned char b[1 << 20];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    for (size_t i = 0; i < n;) {
        const unsigned c = b[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (size_t k = 1; k < len; k++)
            if (b[i + k] < 0x80 || b[i + k] > 0xBF) return 0;
        i += len;
    }
    return 1;
}

/* A jobs file of n ask jobs about img: job k asks qs[k], with id ids[k] (ids NULL: none) and the
 * params object params (NULL: none). */
static void write_asks(const char *path, const char *img, const char *const *ids, const char *const *qs, int n,
                       const char *params) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    for (int k = 0; k < n; k++) {
        fprintf(f, "{");
        if (ids) fprintf(f, "\"id\":\"%s\",", ids[k]);
        fprintf(f, "\"files\":[\"%s\"],\"question\":\"%s\"", img, qs[k]);
        if (params) fprintf(f, ",\"params\":%s", params);
        fprintf(f, "}\n");
    }
    fclose(f);
}

static char *read_all(const char *p);

/* batch on jobs into out with a1 a2 is refused as a changed run (exit 2), its message holding
 * what (the count and the first job); batch.log holds that run's stderr alone. */
static void expect_changed(const char *jobs, const char *out, const char *a1, const char *a2, const char *what) {
    char logp[320];
    snprintf(logp, sizeof logp, "%s/batch.log", g_dir);
    unlink(logp);
    TEST_EQ_INT(run(jobs, out, a1, a2), 2);
    char *log = read_all(logp);
    TEST_CONTAINS(log ? log : "", what);
    free(log);
}

/* The whole file, malloc'ed (NULL when it cannot be read). */
static char *read_all(const char *p) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    char *b = NULL;
    size_t n = 0, cap = 0, r;
    char chunk[4096];
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (n + r + 1 > cap) {
            cap = (n + r + 1) * 2;
            char *nb = realloc(b, cap);
            if (!nb) break;
            b = nb;
        }
        memcpy(b + n, chunk, r);
        n += r;
    }
    fclose(f);
    if (b) b[n] = 0;
    return b;
}

static long file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

int main(void) {
    const char *pdf = test_shared_path("media/pdf/multi_page.pdf");
    const char *img = test_data_path("media/made/image.bmp");
    if (!pdf) test_skip("../shared/media is absent (multi_page.pdf)");
    snprintf(g_dir, sizeof g_dir, "%s", test_tmpdir());
    char jobs[320], out[320], line[2048];
    snprintf(jobs, sizeof jobs, "%s/jobs.jsonl", g_dir);
    snprintf(out, sizeof out, "%s/results.jsonl", g_dir);
    FILE *f = fopen(jobs, "w");
    /* job "long" reasons for 7608 tokens with this checkpoint (several seconds): the kill lands in it */
    fprintf(f, "{\"id\":\"img\",\"files\":[\"%s\"],\"question\":\"What is this?\",\"params\":{\"max_tokens\":5}}\n", img);
    fprintf(f, "{\"id\":\"long\",\"files\":[\"%s\"],\"question\":\"What is in this picture?\",\"params\":{\"max_tokens\":100000,"
               "\"max_context\":131072,\"think\":true}}\n", img);
    fprintf(f, "\n{\"id\":\"pdf\",\"files\":[\"%s\"],\"question\":\"Summarize.\",\"params\":{\"pages\":\"1-2\",\"max_tokens\":4}}\n", pdf);
    fprintf(f, "{\"id\":\"ocr\",\"type\":\"ocr\",\"files\":[\"%s\"],\"params\":{\"pages\":\"2-3\",\"max_tokens\":3}}\n", pdf);
    fprintf(f, "{\"id\":\"missing\",\"files\":[\"/nonexistent/a.png\"],\"question\":\"?\"}\n");
    fprintf(f, "{not json\n");
    /* issue 17: invalid UTF-8 in an id and a question; the result line is still valid UTF-8 */
    fprintf(f, "{\"id\":\"bad\xff\",\"files\":[\"%s\"],\"question\":\"Wh\xfe?\",\"params\":{\"max_tokens\":2}}\n", img);
    fclose(f);

    const cJSON *x0;
    /* killed while "long" runs: only "img" is recorded, whole */
    pid_t p = spawn(jobs, out, NULL, NULL);
    const double t0 = (double)time(NULL);
    while (file_size(out) <= 0 && (double)time(NULL) - t0 < 60) usleep(20000);
    usleep(300000); /* into "long" */
    kill(p, SIGKILL);
    int st = 0;
    waitpid(p, &st, 0);
    results r;
    load(out, &r);
    TEST_CHECK(!r.torn && r.n == 1 && !strcmp(r.ids[0], "img"), "after the kill: %d whole lines, first '%s'", r.n, r.ids[0]);
    unload(&r);

    /* rerun: resumes; every job once; failures recorded; exit 1 because some failed */
    TEST_EQ_INT(run(jobs, out, NULL, NULL), 1);
    load(out, &r);
    TEST_CHECK(!r.torn, "no torn line");
    TEST_EQ_INT(r.n, 7);
    const char *ids[] = {"img", "long", "pdf", "ocr", "missing", line_id(7, "{not json"), "bad\xef\xbf\xbd"};
    for (int i = 0; i < 7; i++) TEST_CHECK(count_id(&r, ids[i]) == 1, "job %s recorded once", ids[i]);
    TEST_CHECK(utf8_file_valid(out), "every result line is valid UTF-8");
    if ((x0 = find(&r, "bad\xef\xbf\xbd"))) TEST_EQ_STR(cJSON_GetObjectItemCaseSensitive(x0, "status")->valuestring, "ok");
    const cJSON *x;
    if ((x = find(&r, "pdf"))) {
        const cJSON *media = cJSON_GetObjectItemCaseSensitive(x, "media");
        TEST_EQ_INT(cJSON_GetArraySize(media), 2);
        TEST_EQ_INT((int64_t)cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(media, 1), "page")->valuedouble, 2);
        TEST_EQ_STR(cJSON_GetObjectItemCaseSensitive(x, "status")->valuestring, "ok");
    }
    if ((x = find(&r, "ocr"))) {
        const cJSON *pages = cJSON_GetObjectItemCaseSensitive(x, "pages");
        TEST_EQ_INT(cJSON_GetArraySize(pages), 2);
        TEST_EQ_INT((int64_t)cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(pages, 0), "page")->valuedouble, 2);
    }
    if ((x = find(&r, "missing"))) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(x, "error");
        TEST_EQ_STR(cJSON_GetObjectItemCaseSensitive(e, "code")->valuestring, "not_found");
    }
    if ((x = find(&r, line_id(7, "{not json")))) {
        TEST_EQ_STR(cJSON_GetObjectItemCaseSensitive(x, "status")->valuestring, "error");
        /* one vocabulary with serve: a line that is not JSON is bad_json */
        TEST_EQ_STR(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(x, "error"), "code")->valuestring, "bad_json");
    }
    unload(&r);

    /* a torn last line (an interrupted write) is dropped and its job redone */
    {
        long sz = file_size(out);
        FILE *a = fopen(out, "r+");
        char *all = malloc((size_t)sz + 1);
        size_t n = fread(all, 1, (size_t)sz, a);
        all[n] = 0;
        fclose(a);
        char *last = all + n - 1; /* start of the last line */
        while (last > all && last[-1] != '\n') last--;
        TEST_CHECK(truncate(out, (off_t)(last - all) + 10) == 0, "tore the last line");
        free(all);
        run(jobs, out, NULL, NULL);
        load(out, &r);
        TEST_CHECK(!r.torn && r.n == 7, "torn line dropped and its job redone (%d lines)", r.n);
        for (int i = 0; i < 7; i++) TEST_CHECK(count_id(&r, ids[i]) == 1, "job %s once after repair", ids[i]);
        unload(&r);
    }

    /* a last line that is complete JSON but lacks its newline (the write stopped just before
     * it): cut after the third line's JSON, so four jobs remain; the rerun must not glue the next
     * result onto that line: every id once, every line whole; and the line is kept as it was (its
     * newline added), not dropped as torn with its job run again */
    char third_line[8192] = "";
    {
        long sz = file_size(out);
        FILE *a = fopen(out, "r");
        char *all = malloc((size_t)sz + 1);
        size_t n = a ? fread(all, 1, (size_t)sz, a) : 0;
        all[n] = 0;
        if (a) fclose(a);
        char *cut = all;
        for (int k = 0; k < 3 && cut; k++) cut = strchr(cut, '\n') ? strchr(cut, '\n') + 1 : NULL;
        TEST_CHECK(cut != NULL, "results have more than three lines");
        if (cut) {
            cJSON *third = NULL;
            char *start = cut - 1;
            while (start > all && start[-1] != '\n') start--;
            third = cJSON_ParseWithLength(start, (size_t)(cut - 1 - start));
            TEST_CHECK(third != NULL, "the third line is complete JSON without its newline");
            if ((size_t)(cut - start) < sizeof third_line) memcpy(third_line, start, (size_t)(cut - start)); /* (with its \n) */
            cJSON_Delete(third);
            TEST_CHECK(truncate(out, (off_t)(cut - 1 - all)) == 0, "cut the newline of the third line");
        }
        free(all);
        run(jobs, out, NULL, NULL);
        load(out, &r);
        TEST_CHECK(!r.torn && r.n == 7, "after a last line without newline: %d whole lines, torn %d", r.n, r.torn);
        for (int i = 0; i < 7; i++) TEST_CHECK(count_id(&r, ids[i]) == 1, "job %s once after a last line without newline", ids[i]);
        unload(&r);
        FILE *a2 = fopen(out, "r");
        char *after = malloc((size_t)file_size(out) + 1);
        size_t n2 = a2 && after ? fread(after, 1, (size_t)file_size(out), a2) : 0;
        if (after) after[n2] = 0;
        if (a2) fclose(a2);
        TEST_CHECK(third_line[0] && after && strstr(after, third_line), "the whole line without its newline kept as it was: %.80s",
                   third_line);
        free(after);
    }

    /* --retry-failed redoes only the failures, and each id keeps one final line: the earlier
     * error lines are removed (the first, "img", stays the very same line) */
    {
        char first[4096] = "";
        FILE *a = fopen(out, "r");
        if (a && fgets(first, sizeof first, a)) {}
        if (a) fclose(a);
        TEST_EQ_INT(run(jobs, out, "--retry-failed", NULL), 1);
        load(out, &r);
        TEST_CHECK(!r.torn, "no torn line after --retry-failed");
        TEST_EQ_INT(r.n, 7);
        for (int i = 0; i < 7; i++) TEST_CHECK(count_id(&r, ids[i]) == 1, "job %s once after --retry-failed", ids[i]);
        TEST_EQ_STR(r.status[r.n - 1], "error"); /* the redone failures come last */
        char again[4096] = "";
        a = fopen(out, "r");
        if (a && fgets(again, sizeof again, a)) {}
        if (a) fclose(a);
        TEST_EQ_STR(again, first);
        struct stat sb;
        TEST_CHECK(stat(out, &sb) == 0 && (sb.st_mode & 0777) == 0644, "the rewritten file keeps its mode");
        unload(&r);
    }

    /* shards: disjoint, together the whole manifest */
    {
        char o0[320], o1[320];
        snprintf(o0, sizeof o0, "%s/s0.jsonl", g_dir);
        snprintf(o1, sizeof o1, "%s/s1.jsonl", g_dir);
        f = fopen(jobs, "w");
        for (int i = 0; i < 5; i++)
            fprintf(f, "{\"id\":\"j%d\",\"question\":\"Say %d.\",\"params\":{\"max_tokens\":2}}\n", i, i);
        fclose(f);
        TEST_EQ_INT(run(jobs, o0, "--shard", "0/2"), 0);
        TEST_EQ_INT(run(jobs, o1, "--shard", "1/2"), 0);
        results a, b;
        load(o0, &a);
        load(o1, &b);
        TEST_EQ_INT(a.n, 3);
        TEST_EQ_INT(b.n, 2);
        for (int i = 0; i < 5; i++) {
            snprintf(line, sizeof line, "j%d", i);
            TEST_CHECK(count_id(&a, line) + count_id(&b, line) == 1, "job %s in exactly one shard", line);
            TEST_EQ_INT(count_id(&a, line), i % 2 == 0);
        }
        unload(&a);
        unload(&b);
        TEST_EQ_INT(run(jobs, o0, "--shard", "2/2"), 2); /* usage error */
    }

    /* --parallel 4 (issue 14 item 4): ask and ocr jobs, failures among them; one line per id,
     * each answer (greedy) the one the same job gets with --parallel 1 */
    {
        char o1[320], o4[320];
        snprintf(o1, sizeof o1, "%s/par1.jsonl", g_dir);
        snprintf(o4, sizeof o4, "%s/par4.jsonl", g_dir);
        f = fopen(jobs, "w");
        fprintf(f, "{\"id\":\"p0\",\"files\":[\"%s\"],\"question\":\"What is this?\",\"params\":{\"max_tokens\":8,\"think\":false}}\n", img);
        fprintf(f, "{\"id\":\"p1\",\"files\":[\"%s\"],\"question\":\"Summarize.\",\"params\":{\"pages\":\"1-2\",\"max_tokens\":6,\"think\":false}}\n", pdf);
        fprintf(f, "{\"id\":\"p2\",\"question\":\"Say 1.\",\"params\":{\"max_tokens\":5,\"think\":false}}\n");
        fprintf(f, "{\"id\":\"p3\",\"type\":\"ocr\",\"files\":[\"%s\"],\"params\":{\"pages\":\"2-3\",\"max_tokens\":3}}\n", pdf);
        fprintf(f, "{\"id\":\"p4\",\"files\":[\"%s\"],\"question\":\"Describe it.\",\"params\":{\"max_tokens\":24,\"think\":true}}\n", img);
        fprintf(f, "{\"id\":\"p5\",\"files\":[\"/nonexistent/b.png\"],\"question\":\"?\"}\n");
        fprintf(f, "{\"id\":\"p6\",\"type\":\"ocr\",\"files\":[\"%s\"],\"params\":{\"max_tokens\":4}}\n", img);
        fprintf(f, "{\"id\":\"p7\",\"question\":\"Count to ten.\",\"params\":{\"max_tokens\":20,\"think\":false}}\n");
        fprintf(f, "{\"id\":\"p8\",\"files\":[\"%s\"],\"question\":\"What is this?\",\"params\":{\"max_tokens\":6,\"think\":false}}\n", img);
        fprintf(f, "{\"id\":\"p9\",\"type\":\"ocr\",\"files\":[\"%s\",\"/nonexistent/c.pdf\"],\"params\":{\"pages\":\"1\",\"max_tokens\":5}}\n", pdf);
        fprintf(f, "{not json\n");
        fclose(f);
        const char *pids[] = {"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", line_id(11, "{not json")};
        const int np = 11;
        TEST_EQ_INT(run(jobs, o1, "--parallel", "1"), 1); /* p5, p9 and line-11 fail */
        TEST_EQ_INT(run(jobs, o4, "--parallel", "4"), 1);
        results a, b;
        load(o1, &a);
        load(o4, &b);
        TEST_CHECK(!a.torn && !b.torn, "no torn line with --parallel");
        TEST_EQ_INT(a.n, np);
        TEST_EQ_INT(b.n, np);
        for (int i = 0; i < np; i++) {
            TEST_CHECK(count_id(&a, pids[i]) == 1 && count_id(&b, pids[i]) == 1, "job %s once with --parallel 1 and 4 (%d, %d)",
                       pids[i], count_id(&a, pids[i]), count_id(&b, pids[i]));
            const cJSON *x1 = find(&a, pids[i]), *x4 = find(&b, pids[i]);
            if (!x1 || !x4) continue;
            const cJSON *s1 = cJSON_GetObjectItemCaseSensitive(x1, "status"), *s4 = cJSON_GetObjectItemCaseSensitive(x4, "status");
            TEST_CHECK(cJSON_IsString(s1) && cJSON_IsString(s4) && !strcmp(s1->valuestring, s4->valuestring),
                       "job %s: the same status", pids[i]);
            for (int k = 0; k < 2; k++) { /* the answer, and the reasoning of p4 */
                const char *key = k ? "reasoning" : "answer";
                const cJSON *an1 = cJSON_GetObjectItemCaseSensitive(x1, key), *an4 = cJSON_GetObjectItemCaseSensitive(x4, key);
                TEST_CHECK(!an1 == !an4, "job %s: %s in both or neither", pids[i], key);
                if (cJSON_IsString(an1) && cJSON_IsString(an4))
                    TEST_CHECK(!strcmp(an1->valuestring, an4->valuestring), "job %s: %s '%s' with --parallel 4, '%s' with 1",
                               pids[i], key, an4->valuestring, an1->valuestring);
            }
            const cJSON *pg1 = cJSON_GetObjectItemCaseSensitive(x1, "pages"), *pg4 = cJSON_GetObjectItemCaseSensitive(x4, "pages");
            TEST_EQ_INT(cJSON_GetArraySize(pg1), cJSON_GetArraySize(pg4));
            for (int k = 0; k < cJSON_GetArraySize(pg1) && k < cJSON_GetArraySize(pg4); k++) {
                const cJSON *t1 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(pg1, k), "text");
                const cJSON *t4 = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(pg4, k), "text");
                TEST_CHECK(!t1 == !t4 && (!cJSON_IsString(t1) || !strcmp(t1->valuestring, t4->valuestring)),
                           "job %s page %d: the same text", pids[i], k);
            }
        }
        if ((x0 = find(&b, "p5")))
            TEST_EQ_STR(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(x0, "error"), "code")->valuestring,
                        "not_found");
        if ((x0 = find(&b, "p3"))) TEST_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(x0, "pages")), 2);
        unload(&a);
        unload(&b);
        TEST_EQ_INT(run(jobs, o4, "--parallel", "0"), 2);   /* usage errors */
        TEST_EQ_INT(run(jobs, o4, "--parallel", "257"), 2);
    }

    /* --parallel 4 killed (SIGKILL) after a few lines, then rerun: every job has exactly one
     * whole line; and interrupted (SIGTERM): exit 130, the jobs in flight cancelled without a
     * line, a rerun finishes the rest */
    {
        char ok[320];
        const int nk = 14;
        f = fopen(jobs, "w");
        for (int i = 0; i < nk; i++) {
            if (i % 3 == 0) fprintf(f, "{\"id\":\"k%d\",\"question\":\"Say %d.\",\"params\":{\"max_tokens\":2}}\n", i, i);
            else if (i % 5 == 4) fprintf(f, "{\"id\":\"k%d\",\"type\":\"ocr\",\"files\":[\"%s\"],\"params\":{\"pages\":\"1-3\",\"max_tokens\":200}}\n", i, pdf);
            else fprintf(f, "{\"id\":\"k%d\",\"files\":[\"%s\"],\"question\":\"What is in this picture %d?\",\"params\":{\"max_tokens\":600,\"think\":true}}\n", i, img, i);
        }
        fclose(f);
        for (int sig = 0; sig < 2; sig++) {
            snprintf(ok, sizeof ok, "%s/kill%d.jsonl", g_dir, sig);
            pid_t pk = spawn(jobs, ok, "--parallel", "4");
            const double tk = (double)time(NULL);
            results r2;
            for (;;) {
                load(ok, &r2);
                const int n = r2.n;
                unload(&r2);
                if (n >= 3 || (double)time(NULL) - tk > 120) break;
                usleep(10000);
            }
            kill(pk, sig == 0 ? SIGKILL : SIGTERM);
            int ws = 0;
            waitpid(pk, &ws, 0);
            if (sig == 1) TEST_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 130, "SIGTERM: exit 130 (status %d)", ws);
            load(ok, &r2);
            TEST_CHECK(r2.n >= 3 && r2.n < nk, "the %s landed mid-run: %d of %d lines", sig ? "SIGTERM" : "SIGKILL", r2.n, nk);
            TEST_CHECK(!r2.torn || sig == 0, "SIGTERM: every line whole");
            for (int i = 0; i < r2.n; i++) {
                TEST_CHECK(!strcmp(r2.status[i], "ok"), "line %d (%s) after the %s: status %s", i, r2.ids[i],
                           sig ? "SIGTERM" : "SIGKILL", r2.status[i]);
                TEST_CHECK(count_id(&r2, r2.ids[i]) == 1, "job %s at most once after the interrupt", r2.ids[i]);
            }
            unload(&r2);
            TEST_EQ_INT(run(jobs, ok, "--parallel", "4"), 0);
            load(ok, &r2);
            TEST_CHECK(!r2.torn, "no torn or invalid line after the rerun");
            TEST_EQ_INT(r2.n, nk);
            for (int i = 0; i < nk; i++) {
                snprintf(line, sizeof line, "k%d", i);
                TEST_CHECK(count_id(&r2, line) == 1, "job %s once after the rerun (%d)", line, count_id(&r2, line));
            }
            unload(&r2);
        }
    }

    /* duplicate ids are refused before anything runs */
    {
        char o2[320];
        snprintf(o2, sizeof o2, "%s/dup.jsonl", g_dir);
        f = fopen(jobs, "w");
        fprintf(f, "{\"id\":\"a\",\"question\":\"x\"}\n{\"id\":\"a\",\"question\":\"y\"}\n");
        fclose(f);
        TEST_EQ_INT(run(jobs, o2, NULL, NULL), 1);
        TEST_CHECK(file_size(o2) <= 0, "nothing written for a manifest with duplicate ids");
    }
    /* a second writer on the same out file is refused (the lock is held here) */
    {
        int fd = open(out, O_RDWR);
        TEST_CHECK(fd >= 0 && flock(fd, LOCK_EX) == 0, "took the lock");
        f = fopen(jobs, "w");
        fprintf(f, "{\"id\":\"z\",\"question\":\"x\",\"params\":{\"max_tokens\":1}}\n");
        fclose(f);
        TEST_EQ_INT(run(jobs, out, NULL, NULL), 1);
        close(fd);
    }
    /* OCR jobs: 4096 tokens a page unless --max-tokens is given, 1024 (the ask default) included
       (a review: an explicit 1024 was taken for the default); reasoning only where a job sets
       think, and then in the page record (it was forced off: serve and batch answered otherwise
       than ocr --think). testorig.jpg runs past 4096 greedy tokens with this checkpoint. */
    const char *jpg = test_shared_path("media/image/testorig.jpg");
    if (jpg) {
        char o3[320], o4[320];
        snprintf(o3, sizeof o3, "%s/ocr1024.jsonl", g_dir);
        snprintf(o4, sizeof o4, "%s/ocr4096.jsonl", g_dir);
        f = fopen(jobs, "w");
        fprintf(f, "{\"id\":\"o\",\"type\":\"ocr\",\"files\":[\"%s\"]}\n", jpg);
        fprintf(f, "{\"id\":\"t\",\"type\":\"ocr\",\"files\":[\"%s\"],\"params\":{\"think\":true,\"max_tokens\":30}}\n", img);
        /* a job refused as a bad request keeps its type in its line (a review: it had none) */
        fprintf(f, "{\"id\":\"b\",\"type\":\"ocr\",\"files\":[{\"type\":\"image\",\"data\":\"***\"}]}\n");
        fclose(f);
        TEST_EQ_INT(run(jobs, o3, "--max-tokens", "1024"), 1);
        TEST_EQ_INT(run(jobs, o4, NULL, NULL), 1);
        results a, b;
        load(o3, &a);
        load(o4, &b);
        const cJSON *pa = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(find(&a, "o"), "pages"), 0);
        const cJSON *pb = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(find(&b, "o"), "pages"), 0);
        const cJSON *pt = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(find(&b, "t"), "pages"), 0);
        const cJSON *ua = cJSON_GetObjectItemCaseSensitive(pa, "usage"), *ub = cJSON_GetObjectItemCaseSensitive(pb, "usage");
        const cJSON *ut = cJSON_GetObjectItemCaseSensitive(pt, "usage");
        TEST_CHECK(ua && ub && ut, "page records with usage");
        if (ua && ub && ut) {
            TEST_EQ_INT((int64_t)cJSON_GetObjectItemCaseSensitive(ua, "completion_tokens")->valuedouble, 1024);
            TEST_EQ_INT((int64_t)cJSON_GetObjectItemCaseSensitive(ub, "completion_tokens")->valuedouble, 4096);
            TEST_EQ_INT((int64_t)cJSON_GetObjectItemCaseSensitive(ut, "completion_tokens")->valuedouble, 30);
        }
        const cJSON *rt = cJSON_GetObjectItemCaseSensitive(pt, "reasoning");
        TEST_CHECK(cJSON_IsString(rt) && rt->valuestring[0], "an OCR job with think set: the page's reasoning");
        TEST_CHECK(!cJSON_GetObjectItemCaseSensitive(pb, "reasoning"), "an OCR job without think: no reasoning");
        const cJSON *jb = find(&b, "b"), *tb = jb ? cJSON_GetObjectItemCaseSensitive(jb, "type") : NULL;
        TEST_CHECK(cJSON_IsString(tb) && !strcmp(tb->valuestring, "ocr"), "a refused job's line keeps its type");
        unload(&a);
        unload(&b);
    }

    /* a rerun is the same run or is refused: each line's fingerprint (its job line, the checkpoint,
       the shared options) against the job's now (a review: a run resumed with --max-tokens 128 after
       32 jobs at 8 mixed both in one file, as did a job whose question was edited) */
    {
        char fj[320], fo[320], fo2[320], logp[320], copy[320], cmd[2000];
        snprintf(fj, sizeof fj, "%s/fp_jobs.jsonl", g_dir);
        snprintf(fo, sizeof fo, "%s/fp.jsonl", g_dir);
        snprintf(fo2, sizeof fo2, "%s/fp_alone.jsonl", g_dir);
        snprintf(logp, sizeof logp, "%s/batch.log", g_dir);
        snprintf(copy, sizeof copy, "%s/model copy", g_dir);
        static const char *const ab[] = {"a", "b"};
        write_asks(fj, img, ab, (const char *const[]){"What is this?", "What colour is it?"}, 2, NULL);
        TEST_EQ_INT(run(fj, fo, "--max-tokens", "3"), 0);
        results r0, r1;
        load(fo, &r0);
        TEST_EQ_INT(r0.n, 2);
        const cJSON *fa = cJSON_GetObjectItemCaseSensitive(find(&r0, "a"), "fingerprint");
        const cJSON *fb = cJSON_GetObjectItemCaseSensitive(find(&r0, "b"), "fingerprint");
        TEST_CHECK(cJSON_IsString(fa) && cJSON_IsString(fb) && strlen(fa->valuestring) == 16 &&
                       strcmp(fa->valuestring, fb->valuestring) != 0,
                   "each line has its job's fingerprint");
        const long sz = file_size(fo);
        TEST_EQ_INT(run(fj, fo, "--max-tokens", "3"), 0); /* the same run: both done, nothing redone */
        TEST_CHECK(file_size(fo) == sz, "the same run again: the file unchanged (%ld, was %ld)", file_size(fo), sz);
        /* the checkpoint copied to another path (another node's disk) is the same checkpoint */
        snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", test_data_path("vl_tiny"), copy);
        TEST_CHECK(system(cmd) == 0, "%s", cmd);
        g_model = copy;
        TEST_EQ_INT(run(fj, fo, "--max-tokens", "3"), 0);
        TEST_CHECK(file_size(fo) == sz, "the checkpoint at another path: nothing redone");
        /* other files in its folder (another shard's results, a log) are not the checkpoint */
        snprintf(cmd, sizeof cmd, "echo x > '%s/r1.out' && echo y > '%s/run.log' && echo z > '%s/other.json' && mkdir '%s/embed'",
                 copy, copy, copy, copy);
        TEST_CHECK(system(cmd) == 0, "%s", cmd);
        TEST_EQ_INT(run(fj, fo, "--max-tokens", "3"), 0);
        TEST_CHECK(file_size(fo) == sz, "stray files beside the checkpoint: nothing redone");
        /* ... but one file of it changed is another checkpoint */
        snprintf(cmd, sizeof cmd, "printf ' ' >> '%s/generation_config.json'", copy);
        TEST_CHECK(system(cmd) == 0, "%s", cmd);
        unlink(logp);
        TEST_EQ_INT(run(fj, fo, "--max-tokens", "3"), 2);
        TEST_CHECK(file_size(fo) == sz, "another checkpoint: refused, the file unchanged");
        g_model = NULL;
        /* other options: refused, the file unchanged, the message naming the first job */
        expect_changed(fj, fo, "--max-tokens", "5",
                       "2 of this run's jobs were answered there with another checkpoint, other options or another job "
                       "line (the first: 'a', line 1 there); rerun with the same ones, give another --out, or "
                       "--redo-changed to answer them again");
        TEST_CHECK(file_size(fo) == sz, "other options: the file unchanged");
        /* an edited job line: refused; --redo-changed redoes that job alone, as a run of it alone */
        write_asks(fj, img, ab, (const char *const[]){"What is this?", "What shape is it?"}, 2, NULL);
        TEST_EQ_INT(run(fj, fo, "--max-tokens", "3"), 2);
        TEST_CHECK(file_size(fo) == sz, "an edited job: the file unchanged");
        g_extra = "--redo-changed";
        TEST_EQ_INT(run(fj, fo, "--max-tokens", "3"), 0);
        g_extra = NULL;
        TEST_EQ_INT(run(fj, fo2, "--max-tokens", "3"), 0);
        load(fo, &r1);
        results r2;
        load(fo2, &r2);
        TEST_CHECK(r1.n == 2 && count_id(&r1, "a") == 1 && count_id(&r1, "b") == 1, "one line per id after --redo-changed (%d)",
                   r1.n);
        char *la = cJSON_PrintUnformatted(find(&r0, "a")), *la1 = cJSON_PrintUnformatted(find(&r1, "a"));
        TEST_CHECK(la && la1 && !strcmp(la, la1), "the unchanged job's line kept as it was");
        free(la), free(la1);
        const cJSON *b1 = find(&r1, "b"), *b2 = find(&r2, "b");
        const cJSON *ans1 = cJSON_GetObjectItemCaseSensitive(b1, "answer"), *ans2 = cJSON_GetObjectItemCaseSensitive(b2, "answer");
        TEST_CHECK(cJSON_IsString(ans1) && cJSON_IsString(ans2) && !strcmp(ans1->valuestring, ans2->valuestring),
                   "the redone job answered as the edited job alone");
        const cJSON *f1 = cJSON_GetObjectItemCaseSensitive(b1, "fingerprint"), *f2 = cJSON_GetObjectItemCaseSensitive(b2, "fingerprint");
        TEST_CHECK(cJSON_IsString(f1) && cJSON_IsString(f2) && !strcmp(f1->valuestring, f2->valuestring) &&
                       strcmp(f1->valuestring, fb->valuestring) != 0,
                   "the redone line has the edited job's fingerprint");
        unload(&r0);
        unload(&r1);
        unload(&r2);
        /* a line without a fingerprint (an earlier nanovl's) vouches for its job */
        snprintf(cmd, sizeof cmd, "sed -i 's/\"fingerprint\":\"[0-9a-f]*\",//' '%s'", fo);
        TEST_CHECK(system(cmd) == 0, "%s", cmd);
        const long sz2 = file_size(fo);
        TEST_EQ_INT(run(fj, fo, "--max-tokens", "5"), 0);
        TEST_CHECK(file_size(fo) == sz2, "lines without a fingerprint: taken as done");

        /* the page bounds shape answers only with --skip-bad-pages (which pages are left out) */
        char fo3[320];
        snprintf(fo3, sizeof fo3, "%s/fp_bounds.jsonl", g_dir);
        g_extra = "--skip-bad-pages";
        TEST_EQ_INT(run(fj, fo3, "--max-megapixels", "50"), 0);
        TEST_EQ_INT(run(fj, fo3, "--max-megapixels", "50"), 0);
        TEST_EQ_INT(run(fj, fo3, "--max-megapixels", "60"), 2);
        g_extra = NULL;
        snprintf(fo3, sizeof fo3, "%s/fp_bounds2.jsonl", g_dir);
        TEST_EQ_INT(run(fj, fo3, "--max-megapixels", "50"), 0);
        TEST_EQ_INT(run(fj, fo3, "--max-megapixels", "60"), 0); /* (without it they decide only failures) */

        /* a job without an id edited (its id, line-N-HASH, changes with its text): refused, and
           --redo-changed leaves one line for it (both answers were kept); moved, it runs again
           (cli_field_faults) */
        char nj[320], no[320];
        snprintf(nj, sizeof nj, "%s/fp_noid.jsonl", g_dir);
        snprintf(no, sizeof no, "%s/fp_noid.out", g_dir);
        write_asks(nj, img, NULL, (const char *const[]){"What is this?", "What colour is it?"}, 2, NULL);
        TEST_EQ_INT(run(nj, no, "--max-tokens", "2"), 0);
        write_asks(nj, img, NULL, (const char *const[]){"What is this?", "What shape is it?"}, 2, NULL);
        expect_changed(nj, no, "--max-tokens", "2", "1 of this run's jobs was answered there with another checkpoint, "
                                                    "other options or another job line (the first: 'line-2-");
        g_extra = "--redo-changed";
        unlink(logp);
        TEST_EQ_INT(run(nj, no, "--max-tokens", "2"), 0);
        g_extra = NULL;
        char *log = read_all(logp);
        TEST_CONTAINS(log ? log : "", "removed 1 earlier line of changed jobs to redo (--redo-changed)");
        TEST_CHECK(!log || !strstr(log, "--retry-failed"), "--redo-changed alone credits no --retry-failed: %s", log ? log : "");
        free(log);
        results rn;
        load(no, &rn);
        int line2 = 0;
        for (int k = 0; k < rn.n; k++)
            line2 += (int)cJSON_GetObjectItemCaseSensitive(rn.line[k], "line")->valuedouble == 2;
        TEST_CHECK(rn.n == 2 && line2 == 1, "the edited job without an id: one line for line 2 (%d lines, %d for line 2)",
                   rn.n, line2);
        unload(&rn);
        /* ... but one deleted, the next moved up into its line: the moved one runs again, nothing is
           refused or removed (it was refused, and --redo-changed removed the deleted job's answer) */
        write_asks(nj, img, NULL, (const char *const[]){"What shape is it?"}, 1, NULL);
        const long szn = file_size(no);
        TEST_EQ_INT(run(nj, no, "--max-tokens", "2"), 0);
        load(no, &rn);
        TEST_CHECK(rn.n == 3 && file_size(no) > szn, "a job without an id moved up a line: run again, the lines kept (%d)", rn.n);
        unload(&rn);
        /* ... and one edited to another job's text that job still holds its line with: an edit,
           refused (it was taken for a move, the old answer kept beside the new) */
        char nj2[320], no2[320];
        snprintf(nj2, sizeof nj2, "%s/fp_abc.jsonl", g_dir);
        snprintf(no2, sizeof no2, "%s/fp_abc.out", g_dir);
        const char *qs3[3][3] = {{"A?", "B?", "C?"}, {"C?", "B?", "C?"}};
        for (int round = 0; round < 2; round++) {
            write_asks(nj2, img, NULL, qs3[round], 3, "{\"max_tokens\":1}");
            TEST_EQ_INT(run(nj2, no2, NULL, NULL), round ? 2 : 0);
        }

        /* a job's own skip_bad_pages takes the page bounds into its fingerprint, as --skip-bad-pages
           does; a job's skip_bad_pages false leaves them out */
        f = fopen(nj, "w");
        fprintf(f, "{\"id\":\"s\",\"files\":[\"%s\"],\"question\":\"?\",\"params\":{\"skip_bad_pages\":true}}\n", img);
        fprintf(f, "{\"id\":\"n\",\"files\":[\"%s\"],\"question\":\"?\",\"params\":{\"skip_bad_pages\":false}}\n", img);
        fclose(f);
        snprintf(no, sizeof no, "%s/fp_skip.out", g_dir);
        TEST_EQ_INT(run(nj, no, "--max-megapixels", "50"), 0);
        expect_changed(nj, no, "--max-megapixels", "60", "1 of this run's jobs was answered there with another checkpoint, "
                                                          "other options or another job line (the first: 's'");
        g_extra = "--skip-bad-pages";
        TEST_EQ_INT(run(nj, no, "--max-megapixels", "50"), 0); /* ('n' still says false) */
        g_extra = NULL;
    }
    return test_report();
}
