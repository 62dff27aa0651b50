/* `nanovl bench --model DIR [FILE]`: end-to-end speed of a checkpoint on this machine: load
 * time, then a question about FILE (default: a synthetic 1536x2048 page, 12 tiles + thumbnail)
 * timed per stage (media, vision tiles/s, prefill tokens/s, decode tokens/s) over --runs runs
 * without the kept prefix, one run that reuses it, and peak RSS. --json for machines.
 *
 * `--concurrency 1,4,16`: the scheduler under load instead. For each count C, C different
 * questions (about FILE when given, else text only) are submitted together to one engine
 * (max_batch = the largest count) and stepped until all end: total generated tokens per second
 * of wall time, and per request the time to its first token and to its whole answer (median and
 * worst), side by side in one run; speed-up against the first count. Greedy, reasoning off, no
 * kept prefix. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "api.h"
#include "base/alloc.h"
#include "cli_util.h"
#include "commands.h"
#include "media.h"
#include "wire.h"
#include "base/clock.h"

static const char *k_usage =
    "usage: nanovl bench [--model DIR] [FILE] [--runs N] [--max-tokens N] [--json] [options]\n"
    "  FILE                  an image, PDF or video (default: a synthetic 1536x2048 page)\n"
    "  --runs N              timed runs without the kept prefix (default 2); one more reuses it\n"
    "  --json                one JSON object\n"
    "  --concurrency LIST    requests answered together, e.g. 1,4,16: tokens/s and latency per count\n"
    "                        (greedy, reasoning off, nothing kept: --think / sampling options do not apply)\n";

static double peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Peak RSS of the largest media helper (media.h: the PDF renderers, the video and image decoders,
 * which read PDFs and decode videos and images in processes of their own), each read before it
 * was stopped; 0 when none ran. The spare image decoder is ended here first. (getrusage's
 * RUSAGE_CHILDREN gave this process's own peak: posix_spawn credits a child with its parent's
 * peak at the start; a review.) */
static double helper_peak_rss_mb(void) {
    media_image_sandbox_end_spare();
    return (double)media_helpers_peak_rss() / (1024.0 * 1024.0);
}

typedef struct stats {
    double media, vision, prefill, gen;
    double first_token, total; /* wall clock from the call: the stages overlap (a video's frames are
                                  decoded while RADIO embeds the earlier ones), so they do not add up */
    int64_t tiles, prompt, cached, gen_tokens, decode_steps; /* decode_steps: tokens after each run's first */
} stats;

static void add(stats *s, const api_ask_result *r) {
    s->media += r->t_media;
    s->vision += r->t_vision;
    s->prefill += r->t_prefill;
    s->gen += r->t_generate;
    for (int i = 0; i < r->n_media; i++) s->tiles += r->media[i].is_video ? r->media[i].n_frames : r->media[i].n_tiles;
    s->prompt += r->n_prompt;
    s->cached += r->n_cached;
    s->gen_tokens += r->n_ids;
    s->decode_steps += r->n_ids > 1 ? r->n_ids - 1 : 0; /* (the first token comes from the prefill) */
}

/* on_token: the time of the first token into *(double *)user. */
static int first_token_at(int32_t tok, const float *logits, void *user) {
    (void)tok, (void)logits;
    double *t = user;
    if (*t == 0) *t = nvl_now();
    return 0;
}

// ---------------------------------------------------------------------------
// --concurrency

typedef struct conc_req {
    double t_submit, t_first, t_done;
    int64_t n_tok;
    nvl_status st;
    char msg[NVL_ERR_MSG_MAX];
    api_part parts[2];
    api_message msg_;
    char question[128];
    api_ask_result res;
} conc_req;

static int conc_on_token(int32_t tok, const float *logits, void *user) {
    (void)tok, (void)logits;
    conc_req *r = user;
    if (!r->n_tok++) r->t_first = nvl_now();
    return 0;
}

static void conc_on_done(nvl_status st, const char *msg, void *user) {
    conc_req *r = user;
    r->t_done = nvl_now();
    r->st = st;
    snprintf(r->msg, sizeof r->msg, "%s", msg ? msg : "");
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int bench_concurrency(const char *model, const char *file, const char *list, const api_ask_params *p0, int json) {
    int counts[16], n_counts = 0, max_c = 0;
    for (const char *c = list; *c || n_counts == 0;) {
        char *end = NULL;
        const long v = strtol(c, &end, 10);
        if (end == c || v < 1 || v > 256 || (*end && *end != ',') || (*end == ',' && !end[1])) {
            fprintf(stderr, "nanovl bench: --concurrency needs counts 1..256 separated by commas, got '%s'\n", list);
            return EXIT_USAGE;
        }
        if (n_counts == 16) {
            fprintf(stderr, "nanovl bench: --concurrency takes at most 16 counts, got '%s'\n", list);
            return EXIT_USAGE;
        }
        counts[n_counts++] = (int)v;
        if (v > max_c) max_c = (int)v;
        c = *end ? end + 1 : end;
    }
    nvl_err err = {0};
    api_engine_opts o = api_engine_opts_default();
    o.max_batch = max_c;
    api_engine *e = NULL;
    const double t0 = nvl_now();
    if (api_engine_open_with(&e, model, &o, &err) != NVL_OK) {
        fprintf(stderr, "nanovl bench: %s: %s\n", model, err.msg);
        return 1;
    }
    const double t_load = nvl_now() - t0;
    api_ask_params p = *p0;
    p.no_cache = 1;
    p.think = 0;
    p.sampler.temperature = 0;
    cJSON *rows = json ? cJSON_CreateArray() : NULL;
    if (!json) {
        printf("model %s (loaded in %.2f s), %s, %lld tokens per answer at most\n", model, t_load,
               file ? file : "text-only questions", (long long)p.max_tokens);
        printf("%-11s %10s %9s %12s %12s %12s %12s %9s\n", "concurrent", "tokens", "tok/s", "first med s", "first max s",
               "answer med s", "answer max s", "speed-up");
    }
    double base = 0;
    int rc = 0;
    for (int k = 0; k < n_counts && rc == 0; k++) {
        const int C = counts[k];
        conc_req *rq = calloc((size_t)C, sizeof *rq);
        double *first = calloc((size_t)C, sizeof *first), *whole = calloc((size_t)C, sizeof *whole);
        if (!rq || !first || !whole) {
            free(rq), free(first), free(whole);
            rc = 1;
            break;
        }
        const double ts = nvl_now();
        for (int i = 0; i < C && rc == 0; i++) {
            conc_req *r = &rq[i];
            snprintf(r->question, sizeof r->question, "Question %d: describe %s in detail.", i + 1,
                     file ? "this document" : (const char *[]){"the sea", "a city", "a forest", "the night sky"}[i % 4]);
            int np = 0;
            if (file) r->parts[np++] = (api_part){.kind = API_PART_MEDIA, .media = {.path = file}};
            r->parts[np++] = (api_part){.kind = API_PART_TEXT, .text = r->question};
            r->msg_ = (api_message){"user", r->parts, np};
            api_callbacks cb = {.on_token = conc_on_token, .on_done = conc_on_done, .user = r};
            r->t_submit = nvl_now();
            if (api_engine_submit(e, &r->msg_, 1, &p, &cb, &r->res, NULL, &err) != NVL_OK) {
                fprintf(stderr, "nanovl bench: %s\n", err.msg);
                rc = 1;
            }
        }
        while (api_engine_step(e) > 0) {
        }
        const double wall = nvl_now() - ts;
        int64_t tokens = 0;
        for (int i = 0; i < C; i++) {
            if (rq[i].st != NVL_OK && rc == 0) {
                fprintf(stderr, "nanovl bench: request %d: %s\n", i + 1, rq[i].msg);
                rc = 1;
            }
            tokens += rq[i].res.n_ids;
            first[i] = rq[i].t_first - rq[i].t_submit;
            whole[i] = rq[i].t_done - rq[i].t_submit;
            api_ask_result_free(&rq[i].res);
        }
        const double tps = wall > 0 ? (double)tokens / wall : 0;
        if (k == 0) base = tps;
        double fmax = 0, wmax = 0;
        for (int i = 0; i < C; i++) {
            fmax = first[i] > fmax ? first[i] : fmax;
            wmax = whole[i] > wmax ? whole[i] : wmax;
        }
        const double fmed = median(first, C), wmed = median(whole, C);
        if (rc == 0) {
            if (json) {
                cJSON *row = cJSON_CreateObject();
                cJSON_AddNumberToObject(row, "concurrent", C);
                cJSON_AddNumberToObject(row, "tokens", (double)tokens);
                cJSON_AddNumberToObject(row, "wall_s", wall);
                cJSON_AddNumberToObject(row, "tokens_per_s", tps);
                cJSON_AddNumberToObject(row, "first_token_median_s", fmed);
                cJSON_AddNumberToObject(row, "first_token_max_s", fmax);
                cJSON_AddNumberToObject(row, "answer_median_s", wmed);
                cJSON_AddNumberToObject(row, "answer_max_s", wmax);
                cJSON_AddNumberToObject(row, "speedup", base > 0 ? tps / base : 0);
                cJSON_AddItemToArray(rows, row);
            } else {
                printf("%-11d %10lld %9.1f %12.3f %12.3f %12.3f %12.3f %8.2fx\n", C, (long long)tokens, tps, fmed, fmax, wmed,
                       wmax, base > 0 ? tps / base : 0);
                fflush(stdout);
            }
        }
        free(rq), free(first), free(whole);
    }
    if (json && rc == 0) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "model", model);
        cJSON_AddStringToObject(out, "input", file ? file : "text-only questions");
        cJSON_AddNumberToObject(out, "load_s", t_load);
        cJSON_AddNumberToObject(out, "max_tokens", (double)p.max_tokens);
        cJSON_AddItemToObject(out, "concurrency", rows);
        cJSON_AddNumberToObject(out, "peak_rss_mb", peak_rss_mb());
        cJSON_AddNumberToObject(out, "media_helper_peak_rss_mb", helper_peak_rss_mb());
        api_json_line(stdout, out);
    } else {
        cJSON_Delete(rows);
        if (rc == 0) printf("peak RSS %.0f MiB (PDF renderer / video or image decoder %.0f MiB)\n", peak_rss_mb(), helper_peak_rss_mb());
    }
    api_engine_close(e);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *model = getenv("NANOVL_MODEL"), *file = NULL;
    api_ask_params p = api_ask_params_default();
    p.max_tokens = 64;
    p.think = 0;
    int runs = 2, json = 0, opts_done = 0;
    const char *concurrency = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!opts_done && !strcmp(a, "-")) {
            fprintf(stderr, "nanovl bench: FILE is a path (bench does not read stdin; '-- -' names a file '-')\n");
            return EXIT_USAGE;
        }
        if (opts_done || a[0] != '-') {
            if (file) {
                fprintf(stderr, "nanovl bench: one file at a time ('%s' is a second)\n%s", a, k_usage);
                return EXIT_USAGE;
            }
            file = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            opts_done = 1;
            continue;
        }
        int k = cli_ask_option(argc, argv, &i, &p, &model, "bench", k_usage);
        if (k == 2) return 0;
        if (k < 0) return EXIT_USAGE;
        if (k > 0) continue;
        double d;
        if (!strcmp(a, "--runs")) {
            if (!cli_num_option("bench", a, v, 1, 1e6, 1, &d)) return EXIT_USAGE;
            runs = (int)d;
            i++;
        }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--concurrency") && v) concurrency = argv[++i];
        else {
            fprintf(stderr, "nanovl bench: unknown or incomplete option '%s'\n%s", a, k_usage);
            return EXIT_USAGE;
        }
    }
    if (!model || runs < 1) {
        fprintf(stderr, "%s%s", !model ? "nanovl bench: no model: pass --model DIR or set NANOVL_MODEL\n" : "", k_usage);
        return EXIT_USAGE;
    }
    if (concurrency) return bench_concurrency(model, file, concurrency, &p, json);
    nvl_err err = {0};
    char tmp[4096] = "", tmp_proc[API_FD_PATH_MAX] = "";
    int tmp_fd = -1;
    if (!file) { /* a synthetic portrait page: gradients and dark "text" bars */
        media_image *img = NULL;
        if (media_image_new(&img, 1536, 2048, &err) != NVL_OK) {
            fprintf(stderr, "nanovl bench: %s\n", err.msg);
            return 1;
        }
        for (int y = 0; y < img->height; y++)
            for (int x = 0; x < img->width; x++) {
                uint8_t *px = img->rgb + (size_t)y * img->stride + 3 * (size_t)x;
                const int bar = (y / 24) % 3 == 0 && (x / 9) % 11 != 0 && x > 120 && x < 1416;
                px[0] = bar ? 20 : (uint8_t)(235 + (x * 20) / img->width);
                px[1] = bar ? 20 : (uint8_t)(235 + (y * 20) / img->height);
                px[2] = bar ? 30 : 240;
            }
        /* a new file of its own (mkstemps: never through a name planted in a shared TMPDIR),
           unlinked at once where /proc gives it a path (nothing left behind by a signal) */
        const char *td = getenv("TMPDIR");
        snprintf(tmp, sizeof tmp, "%s/nanovl-bench-XXXXXX.png", td && *td ? td : "/tmp");
        tmp_fd = mkostemps(tmp, 4, O_CLOEXEC);
        if (tmp_fd < 0) {
            fprintf(stderr, "nanovl bench: cannot make the synthetic page's file %s: %s\n", tmp, strerror(errno));
            media_image_free(img);
            return 1;
        }
        if (api_fd_path(tmp_fd, tmp_proc, sizeof tmp_proc)) {
            unlink(tmp);
            tmp[0] = 0;
        }
        nvl_status st = media_image_write_png(img, tmp_proc[0] ? tmp_proc : tmp, &err);
        media_image_free(img);
        if (st != NVL_OK) {
            fprintf(stderr, "nanovl bench: %s\n", err.msg);
            if (tmp[0]) unlink(tmp);
            close(tmp_fd);
            return 1;
        }
        file = tmp_proc[0] ? tmp_proc : tmp;
    }
    const double t0 = nvl_now();
    api_engine *e = NULL;
    if (api_engine_open(&e, model, &err) != NVL_OK) {
        fprintf(stderr, "nanovl bench: %s: %s\n", model, err.msg);
        if (tmp[0]) unlink(tmp);
        if (tmp_fd >= 0) close(tmp_fd);
        return 1;
    }
    const double t_load = nvl_now() - t0;
    const char *files[] = {file};
    double t_first = 0;
    const char *backend = "cpu";
    stats cold = {0}, warm = {0};
    int rc = 0;
    for (int r = 0; r <= runs && rc == 0; r++) {
        api_ask_params q = p;
        q.no_cache = r < runs - 1; /* the last cold run keeps its prefix; the extra run reuses it */
        api_ask_result res;
        t_first = 0;
        const double tc = nvl_now();
        if (api_engine_ask(e, files, 1, "Describe this document in detail.", &q, first_token_at, &t_first, &res, &err) != NVL_OK) {
            fprintf(stderr, "nanovl bench: %s\n", err.msg);
            rc = 1;
            break;
        }
        stats *sr = r < runs ? &cold : &warm;
        add(sr, &res);
        sr->first_token += t_first - tc;
        sr->total += nvl_now() - tc;
        if (res.backend) backend = res.backend;
        if (!json)
            fprintf(stderr, "run %d%s: vision %.3f s, prefill %.3f s (%lld tokens, %lld reused), %lld tokens in %.3f s\n", r + 1,
                    r == runs ? " (kept prefix)" : "", res.t_vision, res.t_prefill, (long long)res.n_prompt,
                    (long long)res.n_cached, (long long)res.n_ids, res.t_generate);
        api_ask_result_free(&res);
    }
    if (rc == 0) {
        const double n = runs;
        const double vis_tps = cold.vision > 0 ? (double)cold.tiles / cold.vision : 0;
        const double pre_tps = cold.prefill > 0 ? (double)(cold.prompt - cold.cached) / cold.prefill : 0;
        const double dec_tps = cold.gen > 0 ? (double)cold.decode_steps / cold.gen : 0;
        size_t dused = 0, dtotal = 0; /* a device's memory in use (the CPU backend has none to report) */
        const int on_device = api_engine_device_memory(e, &dused, &dtotal, NULL) == NVL_OK;
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "model", model);
            cJSON_AddStringToObject(o, "file", tmp_fd >= 0 ? "synthetic 1536x2048 page" : file);
            cJSON_AddStringToObject(o, "backend", backend);
            cJSON_AddNumberToObject(o, "load_s", t_load);
            cJSON_AddNumberToObject(o, "runs", runs);
            cJSON_AddNumberToObject(o, "tiles_per_run", (double)cold.tiles / n);
            cJSON_AddNumberToObject(o, "prompt_tokens", (double)cold.prompt / n);
            cJSON_AddNumberToObject(o, "media_s", cold.media / n);
            cJSON_AddNumberToObject(o, "vision_s", cold.vision / n);
            cJSON_AddNumberToObject(o, "vision_tiles_per_s", vis_tps);
            cJSON_AddNumberToObject(o, "prefill_s", cold.prefill / n);
            cJSON_AddNumberToObject(o, "prefill_tokens_per_s", pre_tps);
            cJSON_AddNumberToObject(o, "decode_tokens_per_s", dec_tps);
            /* wall clock from the call to the first token (file reading, vision, prefill) and to the end */
            cJSON_AddNumberToObject(o, "first_token_s", cold.first_token / n);
            cJSON_AddNumberToObject(o, "kept_prefix_total_s", warm.total);
            cJSON_AddNumberToObject(o, "cold_total_s", cold.total / n);
            cJSON_AddNumberToObject(o, "peak_rss_mb", peak_rss_mb());
            cJSON_AddNumberToObject(o, "media_helper_peak_rss_mb", helper_peak_rss_mb());
            if (on_device) cJSON_AddNumberToObject(o, "device_used_mb", (double)dused / (1024.0 * 1024.0));
            api_json_line(stdout, o); /* valid UTF-8 whatever the file name */
        } else {
            printf("model          %s (loaded in %.2f s, backend %s)\n", model, t_load, backend);
            printf("input          %s: %.0f tiles/frames, %.0f prompt tokens\n", tmp_fd >= 0 ? "synthetic 1536x2048 page" : file,
                   (double)cold.tiles / n, (double)cold.prompt / n);
            printf("media          %.3f s\n", cold.media / n);
            printf("vision         %.3f s  (%.2f tiles/s)\n", cold.vision / n, vis_tps);
            printf("prefill        %.3f s  (%.1f tokens/s)\n", cold.prefill / n, pre_tps);
            printf("first token    %.3f s  (from the call: media, vision and prefill, which may overlap)\n", cold.first_token / n);
            printf("decode         %.1f tokens/s (%lld tokens over %d runs: %lld decode steps)\n", dec_tps, (long long)cold.gen_tokens,
                   runs, (long long)cold.decode_steps);
            printf("question again %.3f s with the kept prefix, %.3f s without\n", warm.total, cold.total / n);
            printf("peak RSS       %.0f MiB", peak_rss_mb());
            const double rr = helper_peak_rss_mb();
            if (rr > 0) printf(" (the largest PDF renderer, video or image decoder process: %.0f MiB)", rr);
            printf("\n");
            if (on_device)
                printf("device memory  %.0f MiB in use of %.0f\n", (double)dused / (1024.0 * 1024.0),
                       (double)dtotal / (1024.0 * 1024.0));
        }
    }
    api_engine_close(e);
    if (tmp[0]) unlink(tmp);
    if (tmp_fd >= 0) close(tmp_fd);
    return rc;
}
