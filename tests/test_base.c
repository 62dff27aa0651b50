/* kernels/base: status table, errors, logging, allocation accounting and failure injection,
 * arena, dtypes and conversions, JSON getters, mapped files. */
#include <cjson/cJSON.h>
#include <math.h>

#include "base/alloc.h"
#include "base/arena.h"
#include "base/json_util.h"
#include "base/log.h"
#include "base/mapped_file.h"
#include "base/status.h"
#include "base/tensor.h"
#include "test_util.h"

static void test_status(void) {
    /* every code has a distinct non-empty description and name */
    const nvl_status codes[] = {
#define X_(name, value, desc) name,
        NVL_STATUS_TABLE(X_)
#undef X_
    };
    size_t n = sizeof codes / sizeof codes[0];
    TEST_CHECK(n >= 19, "only %zu codes", n);
    for (size_t i = 0; i < n; i++) {
        TEST_CHECK(strlen(nvl_status_str(codes[i])) > 0, "empty description for %d", codes[i]);
        TEST_CHECK(strcmp(nvl_status_str(codes[i]), "unknown status") != 0, "code %d not in table",
                   codes[i]);
        for (size_t j = 0; j < i; j++)
            TEST_CHECK(strcmp(nvl_status_name(codes[i]), nvl_status_name(codes[j])) != 0,
                       "duplicate name %s", nvl_status_name(codes[i]));
    }
    TEST_EQ_STR(nvl_status_str(NVL_OK), "ok");
    TEST_EQ_STR(nvl_status_str(NVL_ERR_NOMEM), "out of memory");
    TEST_EQ_STR(nvl_status_name(NVL_ERR_ENCRYPTED), "NVL_ERR_ENCRYPTED");
    TEST_EQ_STR(nvl_status_str((nvl_status)-999), "unknown status");

    nvl_err err = {0};
    nvl_status st = nvl_err_set(&err, NVL_ERR_SHAPE, "%s: tensor '%s' has %d dims", "f", "w", 3);
    TEST_EQ_INT(st, NVL_ERR_SHAPE);
    TEST_EQ_INT(err.code, NVL_ERR_SHAPE);
    TEST_EQ_STR(err.msg, "f: tensor 'w' has 3 dims");
    nvl_err_prefix(&err, "model.safetensors");
    TEST_EQ_STR(err.msg, "model.safetensors: f: tensor 'w' has 3 dims");
    TEST_EQ_INT(nvl_err_set(NULL, NVL_ERR_IO, "ignored %d", 1), NVL_ERR_IO); /* NULL allowed */
    nvl_err_prefix(NULL, "x");
    /* long messages are truncated, never overflow */
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    nvl_err_set(&err, NVL_ERR_FORMAT, "%s", big);
    TEST_EQ_INT(strlen(err.msg), NVL_ERR_MSG_MAX - 1);
    nvl_err_prefix(&err, "%s", big);
    TEST_EQ_INT(strlen(err.msg), NVL_ERR_MSG_MAX - 1);
    /* a long path loses its middle, not the cause at the end (a 1140-byte path cut the message
       before "No such file or directory"); UTF-8 is not cut inside a character */
    char path[1200];
    size_t pl = 0;
    for (int c = 0; pl + 2 < sizeof path; c++) /* "/éééé.../éééé..." */
        if (c % 50 == 0) path[pl++] = '/';
        else {
            path[pl++] = (char)0xC3;
            path[pl++] = (char)0xA9;
        }
    path[pl] = 0;
    nvl_err_set(&err, NVL_ERR_NOT_FOUND, "report.pdf: cannot open '%s': %s", path, "No such file or directory");
    TEST_CHECK(strlen(err.msg) <= NVL_ERR_MSG_MAX - 1, "cut to the buffer (%zu)", strlen(err.msg));
    TEST_CHECK(!strncmp(err.msg, "report.pdf: cannot open '", 25), "the head is kept: %.40s", err.msg);
    const size_t ml = strlen(err.msg);
    const char *cause = "': No such file or directory";
    TEST_CHECK(ml > strlen(cause) && !strcmp(err.msg + ml - strlen(cause), cause), "the cause is kept: %s",
               err.msg + (ml > 40 ? ml - 40 : 0));
    TEST_CHECK(strstr(err.msg, "...") != NULL, "the cut is marked");
    int bad_utf8 = 0; /* every lead byte 0xC3 followed by its continuation 0xA9 */
    for (size_t i = 0; i + 1 < ml; i++) bad_utf8 |= (unsigned char)err.msg[i] == 0xC3 && (unsigned char)err.msg[i + 1] != 0xA9;
    for (size_t i = 1; i < ml; i++) bad_utf8 |= (unsigned char)err.msg[i] == 0xA9 && (unsigned char)err.msg[i - 1] != 0xC3;
    TEST_CHECK(!bad_utf8, "no character cut in two");
    nvl_err_set(&err, NVL_ERR_NOT_FOUND, "%s: No such file or directory", path);
    nvl_err_prefix(&err, "batch job 7");
    TEST_CHECK(!strncmp(err.msg, "batch job 7: ", 13) && strstr(err.msg, ": No such file or directory") != NULL,
               "a prefix keeps the cause too: %.30s ... %s", err.msg, err.msg + strlen(err.msg) - 30);
    nvl_err_clear(&err);
    TEST_EQ_INT(err.code, NVL_OK);
    TEST_EQ_STR(err.msg, "");
}

static char g_logged[256];
static int g_log_level = -1;
static void capture(enum nvl_log_level level, const char *msg, void *user) {
    (void)user;
    g_log_level = (int)level;
    snprintf(g_logged, sizeof g_logged, "%s", msg);
}

static void test_log(void) {
    nvl_log_set(capture, NULL);
    NVL_LOG_WARN("falling back for %s\n", "matmul");
    TEST_EQ_STR(g_logged, "falling back for matmul\n");
    TEST_EQ_INT(g_log_level, NVL_LOG_LEVEL_WARN);
    nvl_log_set(NULL, NULL);
    nvl_log_set_level(NVL_LOG_LEVEL_ERROR);
    TEST_EQ_INT(nvl_log_get_level(), NVL_LOG_LEVEL_ERROR);
    NVL_LOG_INFO("this goes nowhere\n"); /* filtered by the default sink */
    nvl_log_set_level(NVL_LOG_LEVEL_WARN);
}

static void test_alloc(void) {
    int64_t b0 = nvl_alloc_bytes(), c0 = nvl_alloc_count();
    char *p = nvl_malloc(1000);
    TEST_CHECK(p != NULL, "malloc failed");
    TEST_EQ_INT(nvl_alloc_bytes() - b0, 1000);
    TEST_EQ_INT(nvl_alloc_count() - c0, 1);
    TEST_CHECK(nvl_alloc_peak_bytes() >= b0 + 1000, "peak not updated");
    p = nvl_realloc(p, 5000);
    TEST_CHECK(p != NULL, "realloc failed");
    TEST_EQ_INT(nvl_alloc_bytes() - b0, 5000);
    /* a shrink (in place where the C library can): the content kept, the bytes accounted */
    for (int i = 0; i < 5000; i++) p[i] = (char)(i * 7);
    p = nvl_realloc(p, 3000);
    int kept = p != NULL;
    for (int i = 0; kept && i < 3000; i++) kept = p[i] == (char)(i * 7);
    TEST_CHECK(kept, "shrink kept the first 3000 bytes");
    TEST_EQ_INT(nvl_alloc_bytes() - b0, 3000);
    TEST_EQ_INT(nvl_alloc_count() - c0, 1);
    TEST_CHECK(((uintptr_t)p % 16) == 0, "shrunk block 16-byte aligned");
    char *z = nvl_malloc(64);
    z = nvl_realloc(z, 0); /* to nothing: still one block */
    TEST_EQ_INT(nvl_alloc_count() - c0, 2);
    nvl_free(z);
    char *big = nvl_malloc((size_t)64 << 20); /* an mmap'd block shrunk: no copy, content kept */
    TEST_CHECK(big != NULL, "64 MiB");
    if (big) {
        big[0] = 1, big[(1 << 20) - 1] = 2;
        big = nvl_realloc(big, 1 << 20);
        TEST_CHECK(big && big[0] == 1 && big[(1 << 20) - 1] == 2, "64 MiB shrunk to 1 MiB, content kept");
        TEST_EQ_INT(nvl_alloc_bytes() - b0, 3000 + (1 << 20));
        nvl_free(big);
    }
    char *al = nvl_aligned_alloc(4096, 8192); /* an aligned block: by copy, aligned still */
    al = nvl_realloc(al, 100);
    TEST_CHECK(al != NULL && ((uintptr_t)al % 4096) == 0, "aligned shrink keeps the alignment: %p", (void *)al);
    al = nvl_realloc(al, 20000);
    TEST_CHECK(al != NULL && ((uintptr_t)al % 4096) == 0, "aligned growth keeps the alignment: %p", (void *)al);
    nvl_free(al);
    void *a = nvl_aligned_alloc(4096, 100);
    TEST_CHECK(a && ((uintptr_t)a % 4096) == 0, "aligned_alloc not aligned: %p", a);
    TEST_CHECK(nvl_aligned_alloc(3, 10) == NULL, "alignment 3 accepted");
    TEST_CHECK(nvl_calloc(SIZE_MAX / 2, 4) == NULL, "calloc overflow not caught");
    char *s = nvl_strndup("abcdef", 3);
    TEST_EQ_STR(s, "abc");
    nvl_free(s);
    nvl_free(a);
    nvl_freep(&p);
    TEST_CHECK(p == NULL, "freep did not clear");
    nvl_free(NULL);
    TEST_EQ_INT(nvl_alloc_bytes(), b0);
    TEST_EQ_INT(nvl_alloc_count(), c0);

    /* failure injection: 2 more succeed, then all fail */
    nvl_alloc_fail_after(2);
    void *x1 = nvl_malloc(8), *x2 = nvl_malloc(8), *x3 = nvl_malloc(8), *x4 = nvl_calloc(1, 8);
    nvl_alloc_fail_after(-1);
    TEST_CHECK(x1 && x2, "first two allocations should succeed");
    TEST_CHECK(!x3 && !x4, "allocations after the budget should fail");
    nvl_free(x1);
    nvl_free(x2);
    void *x5 = nvl_malloc(8);
    TEST_CHECK(x5 != NULL, "injection not disabled");
    nvl_free(x5);
}

static void test_arena(void) {
    nvl_arena a;
    nvl_err err = {0};
    TEST_EQ_INT(nvl_arena_init(&a, 1024, 64, &err), NVL_OK);
    void *p1 = nvl_arena_alloc(&a, 10);
    void *p2 = nvl_arena_alloc(&a, 10);
    TEST_CHECK(p1 && p2 && ((uintptr_t)p1 % 64) == 0 && ((uintptr_t)p2 % 64) == 0, "alignment");
    TEST_EQ_INT((char *)p2 - (char *)p1, 64);
    size_t m = nvl_arena_mark(&a);
    TEST_CHECK(nvl_arena_alloc(&a, 2000) == NULL, "over-capacity alloc succeeded");
    void *p3 = nvl_arena_alloc(&a, 100);
    nvl_arena_rewind(&a, m);
    void *p4 = nvl_arena_alloc(&a, 100);
    TEST_CHECK(p3 == p4, "rewind did not reuse memory");
    nvl_arena_reset(&a);
    TEST_CHECK(nvl_arena_alloc(&a, 10) == p1, "reset did not restart");
    unsigned char *z = nvl_arena_calloc(&a, 64);
    int zero = 1;
    for (int i = 0; i < 64; i++) zero &= z[i] == 0;
    TEST_CHECK(zero, "calloc not zeroed");
    nvl_arena_free(&a);
    nvl_arena_free(&a); /* second free is a no-op */

    nvl_arena meas;
    nvl_arena_init_measure(&meas, 32);
    TEST_CHECK(nvl_arena_alloc(&meas, 10) == NULL, "measure mode returns NULL");
    nvl_arena_alloc(&meas, 10);
    TEST_EQ_INT(meas.high, 42); /* 10 -> pad to 32 -> +10 */
    TEST_EQ_INT(nvl_arena_init(&a, 16, 3, &err), NVL_ERR_INVALID_ARG);
}

static void test_tensor(void) {
    /* every safetensors dtype but the sub-byte ones, so a file holding any of them opens (an F64
       scale made inspect stop with no report) */
    const char *names[] = {"F32", "F16", "BF16", "F8_E4M3", "U8", "I8", "I32", "I64", "BOOL", "F64", "F8_E5M2", "I16", "U16", "U32", "U64"};
    const size_t sizes[] = {4, 2, 2, 1, 1, 1, 4, 8, 1, 8, 1, 2, 2, 4, 8};
    for (int i = 0; i < 15; i++) {
        nvl_dtype t = nvl_dtype_from_name(names[i]);
        TEST_CHECK(t != NVL_DTYPE_INVALID, "%s unknown", names[i]);
        TEST_EQ_STR(nvl_dtype_name(t), names[i]);
        TEST_EQ_INT(nvl_dtype_size(t), sizes[i]);
    }
    TEST_EQ_INT(nvl_dtype_from_name("F4"), NVL_DTYPE_INVALID);
    TEST_CHECK(!nvl_dtype_is_float(NVL_DTYPE_F64), "F64 is known but nothing computes in it");
    {
        const double d = -0.375;
        nvl_tensor t = nvl_tensor_make(NVL_DTYPE_F64, 1, (int64_t[]){1}, (void *)&d);
        TEST_CHECK(nvl_tensor_get_f32(&t, 0) == -0.375f, "F64 element read as %g", (double)nvl_tensor_get_f32(&t, 0));
    }
    TEST_EQ_INT(nvl_dtype_from_name("bf16"), NVL_DTYPE_INVALID); /* case matters */

    /* bf16: round to nearest even */
    TEST_EQ_INT(nvl_f32_to_bf16(1.0f), 0x3f80);
    union { uint32_t u; float f; } v;
    v.u = 0x3f808000u; /* halfway between 0x3f80 and 0x3f81: ties to even (0x3f80) */
    TEST_EQ_INT(nvl_f32_to_bf16(v.f), 0x3f80);
    v.u = 0x3f818000u; /* halfway, odd below: rounds up to 0x3f82 */
    TEST_EQ_INT(nvl_f32_to_bf16(v.f), 0x3f82);
    v.u = 0x3f808001u;
    TEST_EQ_INT(nvl_f32_to_bf16(v.f), 0x3f81);
    TEST_CHECK(isnan(nvl_bf16_to_f32(nvl_f32_to_bf16(NAN))), "NaN lost");
    TEST_CHECK(nvl_bf16_to_f32(0xc040) == -3.0f, "bf16 -3");

    /* f16: every finite value round-trips exactly */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        if (nvl_f32_to_f16(nvl_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    TEST_EQ_INT(bad, 0);
    TEST_CHECK(nvl_f16_to_f32(0x3c00) == 1.0f && nvl_f16_to_f32(0x0001) == 5.9604644775390625e-08f,
               "f16 values");
    TEST_EQ_INT(nvl_f32_to_f16(1e6f), 0x7c00);
    /* f8 e4m3fn */
    TEST_CHECK(nvl_f8e4m3_to_f32(0x38) == 1.0f, "e4m3 1.0");
    TEST_CHECK(nvl_f8e4m3_to_f32(0x7e) == 448.0f, "e4m3 448");
    TEST_CHECK(nvl_f8e4m3_to_f32(0x01) == 0.001953125f, "e4m3 min subnormal");
    TEST_CHECK(nvl_f8e4m3_to_f32(0xb8) == -1.0f, "e4m3 -1");
    TEST_CHECK(isnan(nvl_f8e4m3_to_f32(0x7f)), "e4m3 NaN");

    float data[6] = {1, 2, 3, 4, 5, 6};
    nvl_tensor t = nvl_tensor_make(NVL_DTYPE_F32, 2, (int64_t[]){2, 3}, data);
    TEST_EQ_INT(nvl_tensor_numel(&t), 6);
    TEST_EQ_INT(nvl_tensor_nbytes(&t), 24);
    TEST_EQ_INT(t.stride[0], 3);
    TEST_CHECK(nvl_tensor_is_contiguous(&t), "contiguous");
    TEST_CHECK(nvl_tensor_get_f32(&t, 4) == 5.0f, "get");
    nvl_err err = {0};
    TEST_EQ_INT(nvl_tensor_check_shape(&t, 2, (int64_t[]){2, 3}, "w", &err), NVL_OK);
    TEST_EQ_INT(nvl_tensor_check_shape(&t, 2, (int64_t[]){3, 2}, "w", &err), NVL_ERR_SHAPE);
    TEST_EQ_STR(err.msg, "w has shape [2, 3], expected [3, 2]");
}

static void test_json(void) {
    nvl_err err = {0};
    cJSON *j = NULL;
    const char *txt = "{\"a\": 3, \"b\": 2.5, \"s\": \"x\", \"t\": true, "
                      "\"lim\": [0.0, Infinity], \"neg\": -Infinity, \"n\": NaN, "
                      "\"str\": \"Infinity NaN\", \"o\": {\"k\": 1}, "
                      "\"tf\": [0.0, {\"__float__\": \"Infinity\"}], \"bad\": [{\"x\": 1}]}";
    TEST_EQ_INT(nvl_json_parse(&j, txt, strlen(txt), "cfg", &err), NVL_OK);
    int64_t i = 0;
    double d = 0;
    int b = 0;
    const char *s = NULL;
    TEST_EQ_INT(nvl_json_get_int(j, "a", &i, "cfg", &err), NVL_OK);
    TEST_EQ_INT(i, 3);
    TEST_EQ_INT(nvl_json_get_int(j, "b", &i, "cfg", &err), NVL_ERR_CONFIG);
    TEST_EQ_STR(err.msg, "cfg: key 'b' is 2.5, expected an integer");
    TEST_EQ_INT(nvl_json_get_int(j, "zz", &i, "cfg", &err), NVL_ERR_CONFIG);
    TEST_EQ_STR(err.msg, "cfg: missing key 'zz' (expected an integer)");
    TEST_EQ_INT(nvl_json_get_string(j, "a", &s, "cfg", &err), NVL_ERR_CONFIG);
    TEST_EQ_STR(err.msg, "cfg: key 'a' is a number, expected a string");
    TEST_EQ_INT(nvl_json_get_double(j, "neg", &d, "cfg", &err), NVL_OK);
    TEST_CHECK(isinf(d) && d < 0, "-Infinity parsed as %g", d);
    TEST_EQ_INT(nvl_json_get_bool(j, "t", &b, "cfg", &err), NVL_OK);
    TEST_EQ_INT(b, 1);
    TEST_EQ_INT(nvl_json_get_string(j, "str", &s, "cfg", &err), NVL_OK);
    TEST_EQ_STR(s, "Infinity NaN"); /* literals inside strings untouched */
    double lim[2];
    int n = 0;
    TEST_EQ_INT(nvl_json_get_double_array(j, "lim", lim, 2, &n, "cfg", &err), NVL_OK);
    TEST_CHECK(n == 2 && lim[0] == 0.0 && isinf(lim[1]), "time_step_limit parse");
    TEST_EQ_INT(nvl_json_get_double_array(j, "tf", lim, 2, &n, "cfg", &err), NVL_OK);
    TEST_CHECK(n == 2 && lim[0] == 0.0 && isinf(lim[1]) && lim[1] > 0, "__float__ Infinity");
    TEST_EQ_INT(nvl_json_get_double_array(j, "bad", lim, 2, &n, "cfg", &err), NVL_ERR_CONFIG);
    TEST_EQ_STR(err.msg, "cfg: key 'bad'[0] is an object, expected a number");
    TEST_EQ_INT(nvl_json_opt_int(j, "missing", 7, &i, "cfg", &err), NVL_OK);
    TEST_EQ_INT(i, 7);
    /* a bare NaN is NaN, not absent (read as null it took the default: a NaN epsilon or ratio in a
       config passed every range check) */
    d = 1.0;
    TEST_EQ_INT(nvl_json_opt_double(j, "n", 1.0, &d, "cfg", &err), NVL_OK);
    TEST_CHECK(isnan(d), "NaN read as %g", d);
    {   /* an escape inside a string beside a bare NaN: the rewrite's sizing pass must skip the
           escaped character as its writing pass does (it did not: a heap overflow the fuzzer found) */
        cJSON *k = NULL;
        /* (an escaped quote taken as a closing one puts the bare NaNs after it inside a "string":
           8 x 16 bytes short, an overflow ASan sees) */
        const char *esc = "{\"q\": \"\\\"NaN\", \"a\": [NaN, NaN, NaN, NaN, NaN, NaN, NaN, NaN]}";
        TEST_EQ_INT(nvl_json_parse(&k, esc, strlen(esc), "esc", &err), NVL_OK);
        TEST_EQ_INT(nvl_json_get_string(k, "q", &s, "esc", &err), NVL_OK);
        TEST_EQ_STR(s, "\"NaN");
        double a8[8];
        int n8 = 0;
        TEST_EQ_INT(nvl_json_get_double_array(k, "a", a8, 8, &n8, "esc", &err), NVL_OK);
        TEST_CHECK(n8 == 8 && isnan(a8[0]) && isnan(a8[7]), "8 NaNs read (%d)", n8);
        cJSON_Delete(k);
    }
    TEST_EQ_INT(nvl_json_opt_int(j, "s", 7, &i, "cfg", &err), NVL_ERR_CONFIG);
    TEST_CHECK(nvl_json_obj(j, "o") != NULL && nvl_json_obj(j, "a") == NULL, "obj getter");
    cJSON_Delete(j);
    const char *bad = "{\"a\": [1, 2}";
    TEST_EQ_INT(nvl_json_parse(&j, bad, strlen(bad), "bad.json", &err), NVL_ERR_FORMAT);
    TEST_CONTAINS(err.msg, "bad.json: invalid JSON near byte");
    /* one value per text: a second object or anything but white space after it is refused (a
       request line holding two objects lost the second); white space and CRLF are fine */
    const char *two = "{\"a\":1}{\"b\":2}", *junk = "{\"a\":1} x", *ws = "{\"a\":1} \r\n\t";
    TEST_EQ_INT(nvl_json_parse(&j, two, strlen(two), "line", &err), NVL_ERR_FORMAT);
    TEST_CONTAINS(err.msg, "line: content after the JSON value at byte 7");
    TEST_EQ_INT(nvl_json_parse(&j, junk, strlen(junk), "line", &err), NVL_ERR_FORMAT);
    const char *nan_two = "{\"a\":NaN}{\"b\":2}"; /* (the Python-literal path) */
    TEST_EQ_INT(nvl_json_parse(&j, nan_two, strlen(nan_two), "line", &err), NVL_ERR_FORMAT);
    TEST_EQ_INT(nvl_json_parse(&j, ws, strlen(ws), "line", &err), NVL_OK);
    cJSON_Delete(j);
    /* numbers Python's json refuses and cJSON read ("max_tokens": 01 was 1), and half surrogate
       pairs (cJSON: "invalid JSON near byte N"): refused naming what and where; the grammar's
       edges and a whole pair (an emoji) still read, as do digits inside strings and keys */
    {
        static const char *const cases[][2] = {
            {"{\"n\": 01}", "byte 6: the number '01' has a leading zero"},
            {"[1, -00]", "byte 4: the number '-00' has a leading zero"},
            {"{\"t\": 1.}", "byte 6: the number '1.' has no digit after its decimal point"},
            {"[1.e5]", "byte 1: the number '1.e5' has no digit after its decimal point"},
            {"[2E+]", "byte 1: the number '2E+' has an exponent without digits"},
            {"{\"q\": \"a\\ud800b\"}", "byte 8: the escape '\\ud800' is the first half of a UTF-16 surrogate pair"},
            {"{\"q\": \"\\udc00\"}", "byte 7: the escape '\\udc00' is the second half"},
            {"[NaN, 01]", "byte 6: the number '01' has a leading zero"}, /* (the Python-literal path) */
            {"[0, -0, 0.5, -0.0e-0, 10, 1E9, 9e+1, -Infinity]", NULL},
            {"{\"k01\": \"01 1. \\\"02\", \"e\": \"\\ud83d\\ude00\"}", NULL},
        };
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            cJSON *k = NULL;
            const nvl_status want = cases[c][1] ? NVL_ERR_FORMAT : NVL_OK;
            TEST_CHECK(nvl_json_parse(&k, cases[c][0], strlen(cases[c][0]), "line", &err) == want, "%s: %s", cases[c][0],
                       want ? "refused" : err.msg);
            if (cases[c][1]) TEST_CONTAINS(err.msg, cases[c][1]);
            cJSON_Delete(k);
        }
    }
    /* a file with a key twice in one object is refused naming it (cJSON found the first, Python's
       json keeps the last): nested, in an array, among 17 keys; the same key in two objects is fine */
    char path[512];
    snprintf(path, sizeof path, "%s/dup.json", test_tmpdir());
    const char *files[][2] = {
        {"{\"a\": 1, \"o\": {\"k\": 1}, \"p\": {\"k\": 2}}", ""},
        {"{\"x\\u0000a\": 1, \"x\\u0000b\": 2}", ""}, /* (distinct keys cJSON cuts at the NUL alike) */
        {"{\"a\": 1, \"b\": 2, \"a\": 3}", "'a'"},
        {"{\"x\": {\"y\": [{\"z\": 1, \"z\": NaN}]}}", "'z'"},
        {"{\"k00\":0,\"k01\":0,\"k02\":0,\"k03\":0,\"k04\":0,\"k05\":0,\"k06\":0,\"k07\":0,\"k08\":0,\"k09\":0,"
         "\"k10\":0,\"k11\":0,\"k12\":0,\"k13\":0,\"k14\":0,\"k15\":0,\"k16\":0,\"k07\":1}", "'k07'"},
    };
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        test_write_file(path, files[f][0], strlen(files[f][0]));
        const nvl_status st = nvl_json_load_file(&j, path, 1 << 20, &err);
        if (!*files[f][1]) {
            TEST_CHECK(st == NVL_OK && j, "file %zu: %s", f, err.msg);
        } else {
            TEST_CHECK(st == NVL_ERR_CONFIG && !j && strstr(err.msg, files[f][1]) && strstr(err.msg, "appears twice") &&
                           strstr(err.msg, "dup.json"), "file %zu: %d %s", f, st, err.msg);
        }
        cJSON_Delete(j);
        j = NULL;
    }
}

static void test_mapped_file(void) {
    nvl_err err = {0};
    nvl_mapped_file *f = NULL;
    TEST_EQ_INT(nvl_mapped_file_open(&f, "/nonexistent/nanovl/file", &err), NVL_ERR_NOT_FOUND);
    TEST_CONTAINS(err.msg, "/nonexistent/nanovl/file");
    char path[512];
    snprintf(path, sizeof path, "%s/empty", test_tmpdir());
    test_write_file(path, "", 0);
    TEST_EQ_INT(nvl_mapped_file_open(&f, path, &err), NVL_OK);
    TEST_EQ_INT(nvl_mapped_file_size(f), 0);
    nvl_mapped_file_close(f);
    snprintf(path, sizeof path, "%s/hello", test_tmpdir());
    test_write_file(path, "hello world", 11);
    TEST_EQ_INT(nvl_mapped_file_open(&f, path, &err), NVL_OK);
    TEST_CHECK(nvl_mapped_file_size(f) == 11 && !memcmp(nvl_mapped_file_data(f), "hello world", 11),
               "mapped content");
    nvl_mapped_file_close(f);
    TEST_EQ_INT(nvl_mapped_file_open(&f, test_tmpdir(), &err), NVL_ERR_IO); /* a directory */
    char *txt = NULL;
    size_t len = 0;
    TEST_EQ_INT(nvl_read_file(path, 5, &txt, &len, &err), NVL_ERR_LIMIT);
    TEST_EQ_INT(nvl_read_file(path, 100, &txt, &len, &err), NVL_OK);
    TEST_CHECK(len == 11 && !strcmp(txt, "hello world"), "read_file content");
    nvl_free(txt);
    nvl_mapped_file_close(NULL);
}

int main(void) {
    int64_t live0 = nvl_alloc_count();
    test_status();
    test_log();
    test_alloc();
    test_arena();
    test_tensor();
    test_json();
    test_mapped_file();
    TEST_EQ_INT(nvl_alloc_count(), live0); /* nothing leaked through nvl_malloc */
    return test_report();
}
