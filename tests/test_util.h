/* Test helpers shared by every ctest executable (header-only).
 *
 *   TEST_CHECK(x == 3, "x is %d", x);           // counts a pass or a fail, prints the failure
 *   test_compare_f32("logits", got, ref, n, atol, rtol, max_nmse);  // NMSE + atol/rtol
 *   return test_report();                        // prints "N passed, N failed", exit code
 *
 * Paths: test_data_path("llm/cfgA/golden.safetensors") under tests/data;
 * test_shared_path("media/image/tokyo.jpg") under ../shared, or NULL when ../shared is absent
 * (callers then skip with a reason). test_skip("why") prints the reason and exits 77.
 */
#ifndef TESTS_TEST_UTIL_H
#define TESTS_TEST_UTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_test_pass = 0, g_test_fail = 0;

#define TEST_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (cond) {                                                            \
            g_test_pass++;                                                     \
        } else {                                                               \
            g_test_fail++;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
        }                                                                      \
    } while (0)

#define TEST_EQ_INT(a, b)                                                                   \
    TEST_CHECK((long long)(a) == (long long)(b), "%s = %lld, expected %s = %lld", #a,       \
               (long long)(a), #b, (long long)(b))

#define TEST_EQ_STR(a, b)                                                                   \
    TEST_CHECK(strcmp((a), (b)) == 0, "%s = \"%s\", expected \"%s\"", #a, (a), (b))

/* Message contains a substring. */
#define TEST_CONTAINS(hay, needle)                                                          \
    TEST_CHECK(strstr((hay), (needle)) != NULL, "\"%s\" does not contain \"%s\"", (hay), (needle))

static inline int test_report(void) {
    printf("%d passed, %d failed\n", g_test_pass, g_test_fail);
    return g_test_fail ? 1 : 0;
}

static inline void test_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("SKIP: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    exit(77);
}

static inline const char *test_data_path(const char *rel) {
    static char buf[8][4096];
    static int k = 0;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", NVL_TEST_DATA, rel);
    return b;
}

/* NULL when ../shared (or the file in it) is absent. */
static inline const char *test_shared_path(const char *rel) {
    static char buf[8][4096];
    static int k = 0;
    const char *root = getenv("NVL_SHARED_DIR");
    if (!root) root = NVL_SHARED_DIR;
    char *b = buf[k++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", root, rel);
    struct stat s;
    return stat(b, &s) == 0 ? b : NULL;
}

/* test_tmpdir's directory and the process that made it (a forked child's exit leaves it alone) */
static char g_test_tmpdir[256];
static pid_t g_test_tmpdir_pid;
static inline int test_tmpdir_open_up(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)f;
    if (flag == FTW_D || flag == FTW_DNR) chmod(p, (st->st_mode & 07777) | 0700); /* (a test's chmod 000) */
    return 0;
}
static inline int test_tmpdir_rm(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)f;
    if (flag == FTW_DP) rmdir(p);
    else unlink(p);
    return 0;
}
/* At exit: the directory removed when every check passed and NVL_TEST_KEEP_TMP is unset; else
 * kept, and its path said, for a look at what the failing test wrote. */
static inline void test_tmpdir_cleanup(void) {
    if (!g_test_tmpdir[0] || getpid() != g_test_tmpdir_pid) return;
    const char *keep = getenv("NVL_TEST_KEEP_TMP");
    if (g_test_fail || (keep && *keep && strcmp(keep, "0"))) {
        fprintf(stderr, "test files kept in %s\n", g_test_tmpdir);
        return;
    }
    nftw(g_test_tmpdir, test_tmpdir_open_up, 16, FTW_PHYS);
    nftw(g_test_tmpdir, test_tmpdir_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh temporary directory, removed with what is in it when the test exits having passed (kept
 * after a failure, or with NVL_TEST_KEEP_TMP=1: test_tmpdir_cleanup). */
static inline const char *test_tmpdir(void) {
    if (!g_test_tmpdir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(g_test_tmpdir, sizeof g_test_tmpdir, "%s/nvltest.XXXXXX", t ? t : "/tmp");
        if (!mkdtemp(g_test_tmpdir)) {
            perror("mkdtemp");
            exit(1);
        }
        g_test_tmpdir_pid = getpid();
        atexit(test_tmpdir_cleanup);
    }
    return g_test_tmpdir;
}

static inline int test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(data, 1, n, f);
    fclose(f);
    return w == n;
}

/* Compares got against ref with both metrics (architecture rule 37):
 *   NMSE = sum((a-b)^2) / sum(b^2) <= max_nmse   and   |a-b| <= atol + rtol*|b| for every element.
 * Prints the first 5 violations, the worst element and the NMSE; checks NaN/inf. Counts one
 * pass or fail. Returns 1 when both hold. */
/* test_compare_f32 with a bound per element of atol + rtol |ref| + gamma mag[i] (mag NULL: none):
 * mag[i] the sum of the magnitudes of the terms of element i (the computation on absolute
 * values), gamma the floating-point error per unit of it, e.g. n u for sums of n terms in f32 (u =
 * 2^-24; Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., 3.1): for values that
 * are small differences of large terms, whose error scales with the terms, not with the value. */
static inline int test_compare_f32_mag(const char *what, const float *got, const float *ref, const double *mag,
                                       size_t n, double atol, double rtol, double gamma, double max_nmse) {
    double num = 0, den = 0, worst = -1;
    size_t worst_i = 0, n_bad = 0, n_nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        double a = got[i], b = ref[i];
        if (!isfinite(a) && isfinite(b)) {
            n_nonfinite++;
            continue;
        }
        double d = fabs(a - b);
        num += d * d;
        den += b * b;
        const double bound = atol + rtol * fabs(b) + (mag ? gamma * mag[i] : 0.0);
        if (d - bound > 0) {
            if (n_bad < 5)
                fprintf(stderr, "  %s[%zu]: got %.9g, expected %.9g (|diff| %.3g > %.3g)\n", what,
                        i, a, b, d, bound);
            n_bad++;
        }
        if (d > worst) {
            worst = d;
            worst_i = i;
        }
    }
    double nmse = den > 0 ? num / den : num;
    int ok = n_bad == 0 && n_nonfinite == 0 && nmse <= max_nmse;
    if (!ok || getenv("NVL_TEST_VERBOSE"))
        fprintf(stderr,
                "%s %s: n=%zu nmse=%.3g (max %.3g) worst |diff| %.3g at [%zu] (got %.9g ref %.9g), "
                "%zu outside atol %.3g + rtol %.3g%s, %zu non-finite\n",
                ok ? "ok" : "FAIL", what, n, nmse, max_nmse, worst < 0 ? 0 : worst, worst_i,
                n ? got[worst_i] : 0.0, n ? ref[worst_i] : 0.0, n_bad, atol, rtol, mag ? " + gamma mag" : "",
                n_nonfinite);
    if (ok)
        g_test_pass++;
    else
        g_test_fail++;
    return ok;
}
static inline int test_compare_f32(const char *what, const float *got, const float *ref, size_t n,
                                   double atol, double rtol, double max_nmse) {
    return test_compare_f32_mag(what, got, ref, NULL, n, atol, rtol, 0.0, max_nmse);
}

/* Deterministic xorshift RNG for test inputs. */
static inline uint64_t test_rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}
static inline float test_rng_uniform(uint64_t *s) { /* [-1, 1) */
    return (float)((double)(test_rng_next(s) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

#endif // TESTS_TEST_UTIL_H
