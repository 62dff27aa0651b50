/* Request parameters at their documented bounds (docs/api.md, "params"): each range is
 * inclusive, so the bound itself is accepted and the nearest value past it is refused with
 * NVL_ERR_INVALID_ARG naming the field. The bounds are the documentation's, not read from
 * api/wire.c. */
#include <stdio.h>
#include <string.h>

#include <cJSON.h>

#include "api.h"
#include "base/alloc.h"
#include "wire.h"
#include "test_util.h"

static nvl_status parse_param(const char *key, const char *value, api_request *rq, nvl_err *err) {
    char line[512];
    snprintf(line, sizeof line,
             "{\"v\":1,\"id\":\"p\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
             "\"params\":{\"%s\":%s}}",
             key, value);
    return api_request_parse(line, strlen(line), rq, err);
}

int main(void) {
    /* key, lowest accepted, highest accepted (NULL: unbounded above), just below, just above */
    static const struct {
        const char *key, *lo, *hi, *below, *above;
        double lo_v, hi_v;
    } rows[] = {
        {"max_tokens", "1", NULL, "0", NULL, 1, 0},
        {"temperature", "0", "100", "-1e-9", "100.000001", 0, 100},
        {"top_p", "0", "1", "-1e-9", "1.0000001", 0, 1},
        {"min_p", "0", "1", "-1e-9", "1.0000001", 0, 1},
        {"max_tiles", "1", "12", "0", "13", 1, 12},
        {"dpi", "1", "1200", "0.999999", "1200.000001", 1, 1200},
        {"long_side", "16", "16384", "15", "16385", 16, 16384},
        {"fps", "0.01", "240", "0.0099999", "240.000001", 0.01, 240},
        {"evs", "0", "0.99", "-1e-9", "0.990001", 0, 0.99},
        /* 2^53 - 1: above it JSON's doubles round (9007199254740993 read as ...992, which was
           accepted and answered as seed ...992; a review) */
        {"seed", "0", "9007199254740991", "-1", "9007199254740993", 0, 9007199254740991.0},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        api_request rq;
        nvl_err err = {0};
        const char *ok[2] = {rows[i].lo, rows[i].hi};
        const double ok_v[2] = {rows[i].lo_v, rows[i].hi_v};
        for (int j = 0; j < 2; j++) {
            if (!ok[j]) continue;
            nvl_status st = parse_param(rows[i].key, ok[j], &rq, &err);
            TEST_CHECK(st == NVL_OK, "%s = %s (a bound) accepted: %s", rows[i].key, ok[j], err.msg);
            if (st != NVL_OK) continue;
            const api_ask_params *p = &rq.params;
            double got = !strcmp(rows[i].key, "max_tokens")    ? (double)p->max_tokens
                         : !strcmp(rows[i].key, "temperature") ? p->sampler.temperature
                         : !strcmp(rows[i].key, "top_p")       ? p->sampler.top_p
                         : !strcmp(rows[i].key, "min_p")       ? p->sampler.min_p
                         : !strcmp(rows[i].key, "max_tiles")   ? p->max_tiles
                         : !strcmp(rows[i].key, "dpi")         ? p->dpi
                         : !strcmp(rows[i].key, "long_side")   ? p->long_side
                         : !strcmp(rows[i].key, "fps")         ? p->fps
                         : !strcmp(rows[i].key, "seed")        ? (double)p->sampler.seed
                                                               : p->evs;
            TEST_CHECK(got == ok_v[j] || (float)got == (float)ok_v[j], "%s = %s kept as %g", rows[i].key, ok[j], got);
            api_request_free(&rq);
        }
        const char *bad[2] = {rows[i].below, rows[i].above};
        for (int j = 0; j < 2; j++) {
            if (!bad[j]) continue;
            err.msg[0] = 0;
            nvl_status st = parse_param(rows[i].key, bad[j], &rq, &err);
            TEST_CHECK(st == NVL_ERR_INVALID_ARG && strstr(err.msg, rows[i].key),
                       "%s = %s (past the bound) refused naming it: %d %s", rows[i].key, bad[j], st, err.msg);
            if (st == NVL_OK) api_request_free(&rq);
        }
    }
    { /* skip_bad_pages: a boolean, off unless given */
        api_request rq;
        nvl_err err = {0};
        TEST_EQ_INT(parse_param("max_tokens", "3", &rq, &err), NVL_OK);
        TEST_EQ_INT(rq.params.skip_bad_pages, 0);
        api_request_free(&rq);
        TEST_EQ_INT(parse_param("skip_bad_pages", "true", &rq, &err), NVL_OK);
        TEST_EQ_INT(rq.params.skip_bad_pages, 1);
        api_request_free(&rq);
        TEST_EQ_INT(parse_param("skip_bad_pages", "1", &rq, &err), NVL_ERR_INVALID_ARG);
        TEST_CONTAINS(err.msg, "skip_bad_pages: expected true or false");
    }
    /* requests refused by name (field faults: an ocr request's question was read as one more
       input; \u0000 cut strings short, so two ids became one) */
    static const struct { const char *line, *want; } refused[] = {
        {"{\"id\":\"o\",\"type\":\"ocr\",\"files\":[\"/x.png\"],\"question\":\"x\"}", "request.question: an ocr request takes no question"},
        {"{\"id\":\"q\",\"files\":[\"/x.png\"],\"question\":\"q\\u0000zz\"}", "\\u0000"},
        {"{\"id\":\"a\\u0000b\",\"question\":\"q\"}", "\\u0000"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        api_request rq;
        nvl_err err = {0};
        nvl_status st = api_request_parse(refused[i].line, strlen(refused[i].line), &rq, &err);
        TEST_CHECK(st == NVL_ERR_INVALID_ARG && strstr(err.msg, refused[i].want), "%s refused with '%s': %d %s",
                   refused[i].line, refused[i].want, st, err.msg);
        if (st == NVL_OK) api_request_free(&rq);
    }
    { /* an escaped backslash before "u0000" is text, not a NUL: kept byte for byte */
        const char *line = "{\"id\":\"b\",\"question\":\"a\\\\u0000 b\"}";
        api_request rq;
        nvl_err err = {0};
        nvl_status st = api_request_parse(line, strlen(line), &rq, &err);
        TEST_CHECK(st == NVL_OK, "%s accepted: %s", line, err.msg);
        if (st == NVL_OK) {
            const char *q = rq.n_msgs == 1 && rq.msgs[0].n_parts == 1 ? rq.msgs[0].parts[0].text : NULL;
            TEST_CHECK(q && !strcmp(q, "a\\u0000 b"), "question kept: '%s'", q ? q : "(none)");
            api_request_free(&rq);
        }
    }
    { /* timings_s.tokens_per_s: the decode rate, tokens after the prefill's first over the decode time */
        static const struct { int64_t n; double t, want; } rate[] = {{5, 2.0, 2.0}, {2, 0.5, 2.0}, {1, 0.25, 0}, {0, 0, 0}, {3, 0, 0}};
        for (size_t i = 0; i < sizeof rate / sizeof rate[0]; i++) {
            api_ask_result r = {.n_ids = rate[i].n, .t_generate = rate[i].t, .finish_reason = "stop", .backend = "cpu"};
            cJSON *o = api_result_to_json(&r);
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "timings_s");
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, "tokens_per_s");
            TEST_CHECK(cJSON_IsNumber(v) && v->valuedouble == rate[i].want, "%lld tokens in %g s: tokens_per_s %g, want %g",
                       (long long)rate[i].n, rate[i].t, cJSON_IsNumber(v) ? v->valuedouble : -1, rate[i].want);
            TEST_CHECK(api_decode_tokens_per_s(&r) == rate[i].want, "api_decode_tokens_per_s %g", api_decode_tokens_per_s(&r));
            cJSON_Delete(o);
        }
    }
    { /* a NUL byte in the model's text: "\u0000" and the text after it, in the answer, the reasoning and
         a page record (the text was cut at the NUL); a result made by hand (answer_len 0) by strlen */
        char ans[] = "a\0b\"c", why[] = "x\0y";
        api_ask_result r = {.answer = ans, .answer_len = 5, .reasoning = why, .reasoning_len = 3, .finish_reason = "stop"};
        cJSON *o = api_result_to_json(&r), *pg = api_page_to_json("f.pdf", 2, &r, "text");
        char *js = o ? api_json_print(o, NULL) : NULL, *jp = pg ? api_json_print(pg, NULL) : NULL;
        TEST_CHECK(js && strstr(js, "\"answer\":\"a\\u0000b\\\"c\"") && strstr(js, "\"reasoning\":\"x\\u0000y\""),
                   "answer and reasoning with NUL: %s", js ? js : "(none)");
        TEST_CHECK(jp && strstr(jp, "\"text\":\"a\\u0000b\\\"c\""), "page record with NUL: %s", jp ? jp : "(none)");
        cJSON *back = js ? cJSON_Parse(js) : NULL; /* valid JSON, read back as another parser would */
        TEST_CHECK(back && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(back, "answer")), "printed JSON parses");
        cJSON_Delete(back);
        nvl_free(js);
        nvl_free(jp);
        cJSON_Delete(o);
        cJSON_Delete(pg);
        api_ask_result h = {.answer = ans + 2, .finish_reason = "stop"};
        TEST_CHECK(api_answer_len(&h) == 3 && api_reasoning_len(&h) == 0, "by hand: %zu %zu", api_answer_len(&h), api_reasoning_len(&h));
        o = api_result_to_json(&h);
        js = o ? api_json_print(o, NULL) : NULL;
        TEST_CHECK(js && strstr(js, "\"answer\":\"b\\\"c\""), "by hand: %s", js ? js : "(none)");
        nvl_free(js);
        cJSON_Delete(o);
    }
    /* base64 (a review): lines wrapped as base64(1) writes them decode as the unwrapped text; a
       character outside the alphabet is named (it was 'N characters cannot be base64' whenever the
       count was also off) */
    {
        static const char plain[] = "Hello, nanovl! 0123456789 abcdefghij";
        static const char flat[] = "SGVsbG8sIG5hbm92bCEgMDEyMzQ1Njc4OSBhYmNkZWZnaGlq";
        static const char wrapped[] = "SGVsbG8sIG5hbm92bCEg\nMDEyMzQ1Njc4OSBh\r\nYmNkZWZnaGlq\n";
        uint8_t *b = NULL;
        size_t bn = 0;
        nvl_err e = {0};
        TEST_EQ_INT(api_base64_decode(flat, strlen(flat), &b, &bn, &e), NVL_OK);
        TEST_CHECK(b && bn == strlen(plain) && !memcmp(b, plain, bn), "flat base64 decodes");
        nvl_free(b);
        b = NULL;
        TEST_EQ_INT(api_base64_decode(wrapped, strlen(wrapped), &b, &bn, &e), NVL_OK);
        TEST_CHECK(b && bn == strlen(plain) && !memcmp(b, plain, bn), "wrapped base64 decodes to the same bytes");
        nvl_free(b);
        b = NULL;
        TEST_EQ_INT(api_base64_decode("SGVs=bG8s", 9, &b, &bn, &e), NVL_ERR_FORMAT);
        TEST_CHECK(strstr(e.msg, "'=' at offset 4 is not a base64 character"), "padding within: %s", e.msg);
        TEST_EQ_INT(api_base64_decode("SGVsb*8", 7, &b, &bn, &e), NVL_ERR_FORMAT);
        TEST_CHECK(strstr(e.msg, "'*' at offset 5"), "a bad character named before the count: %s", e.msg);
        TEST_EQ_INT(api_base64_decode("SGVsb", 5, &b, &bn, &e), NVL_ERR_FORMAT);
        TEST_CHECK(strstr(e.msg, "5 characters cannot be base64"), "a count that cannot be: %s", e.msg);
    }
    /* JSON nested past cJSON's limit is said as such (it was 'invalid JSON near byte 1000') */
    {
        char deep[2100];
        size_t k = 0;
        for (int i = 0; i < 1001; i++) deep[k++] = '[';
        for (int i = 0; i < 1001; i++) deep[k++] = ']';
        api_request rq;
        nvl_err e = {0};
        TEST_EQ_INT(api_request_parse(deep, k, &rq, &e), NVL_ERR_FORMAT);
        TEST_CHECK(strstr(e.msg, "request: JSON nested deeper than 1000 levels"), "%s", e.msg);
        k = 0; /* 1000 levels are allowed: a syntax error there is one (a review) */
        for (int i = 0; i < 1000; i++) deep[k++] = '[';
        deep[k++] = 'x';
        for (int i = 0; i < 1000; i++) deep[k++] = ']';
        TEST_EQ_INT(api_request_parse(deep, k, &rq, &e), NVL_ERR_FORMAT);
        TEST_CHECK(strstr(e.msg, "request: invalid JSON near byte 1000"), "%s", e.msg);
        TEST_EQ_INT(api_request_parse("{\"v\":1,,}", 9, &rq, &e), NVL_ERR_FORMAT);
        TEST_CHECK(strstr(e.msg, "request: invalid JSON near byte"), "%s", e.msg);
    }
    /* an ocr request refuses skip_bad_pages: true (each page is read alone; it was taken and did
       nothing); batch's command-line default does not make its ocr jobs fail */
    {
        static const char ocr_skip[] = "{\"type\":\"ocr\",\"files\":[\"/x.pdf\"],\"params\":{\"skip_bad_pages\":true}}";
        static const char ocr_plain[] = "{\"type\":\"ocr\",\"files\":[\"/x.pdf\"]}";
        api_request rq;
        nvl_err e = {0};
        TEST_EQ_INT(api_request_parse(ocr_skip, strlen(ocr_skip), &rq, &e), NVL_ERR_INVALID_ARG);
        TEST_CHECK(strstr(e.msg, "request.params.skip_bad_pages: an ocr request reads each page alone"), "%s", e.msg);
        api_ask_params base = api_ask_params_default();
        base.skip_bad_pages = 1;
        TEST_EQ_INT(api_request_parse_with(ocr_plain, strlen(ocr_plain), &base, &rq, &e), NVL_OK);
        api_request_free(&rq);
        /* a media part's empty name is no name (errors said '": not an image ...'; now "bytes") */
        static const char noname[] = "{\"files\":[{\"type\":\"image\",\"data\":\"SGVsbG8=\",\"name\":\"\"}],\"question\":\"q\"}";
        TEST_EQ_INT(api_request_parse(noname, strlen(noname), &rq, &e), NVL_OK);
        TEST_CHECK(rq.n_msgs == 1 && rq.msgs[0].parts[0].kind == API_PART_MEDIA && rq.msgs[0].parts[0].media.name && !strcmp(rq.msgs[0].parts[0].media.name, "bytes"),
                   "an empty name is taken as none (bytes)");
        api_request_free(&rq);
    }
    return test_report();
}
