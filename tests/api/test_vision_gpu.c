/* The vision path on the CUDA backend against the CPU path (issue 15), on the tiny f32 VL
 * checkpoint and the committed media; exits 77 without a device (label gpu, scripts/gpu-check.sh).
 *   1. tiles of tests/data/media/made/image.bmp (12 + thumbnail at most) through RADIO, pixel
 *      shuffle and mlp1 on each backend: the LM-space rows;
 *   2. EVS over a video's frame rows (clip_2s.mp4, q = 0.5): the same tokens kept, frame by frame;
 *   3. the engine end to end with NVL_BACKEND=cpu and NVL_BACKEND=cuda: an image, the two-page
 *      PDF, the video with EVS off and at 0.5: the same prompt (media layout, kept tokens per
 *      frame), the logits after the prompt within the bound, the same greedy ids.
 * Bounds: the checkpoint is f32 and the CUDA backend runs f32 GEMMs with TF32 off (kernels.md
 * §3), so both sides compute in f32 and differ by summation order only: the vision rows within
 * atol 1e-4, rtol 1e-3, NMSE <= 1e-8 (test_engine_e2e's bound for the CPU against PyTorch, where
 * the same f32 reordering is the only difference); the logits likewise; ids and kept tokens
 * exactly (a flip would need two candidates within ~1e-5 of each other).
 * This test has not run on a GPU yet (written without a device). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "backend.h"
#include "base/alloc.h"
#include "base/safetensors.h"
#include "media.h"
#include "test_util.h"
#include "tokenreduce.h"
#include "vision.h"

typedef struct side {
    kern_backend *be;
    nvl_checkpoint *ck;
    vision_model *vm;
    tokred_projector pr;
} side;

static nvl_status side_open(side *s, const char *backend, const char *dir, nvl_err *err) {
    memset(s, 0, sizeof *s);
    nvl_status st = kern_backend_init(&s->be, backend, err);
    if (st == NVL_OK) st = nvl_checkpoint_open(&s->ck, dir, err);
    if (st == NVL_OK) st = vision_model_load(&s->vm, s->ck, s->be, dir, err);
    if (st == NVL_OK) st = tokred_projector_bind(&s->pr, s->ck, s->be, 4 * vision_model_width(s->vm), 0, err);
    return st;
}

static void side_close(side *s) {
    vision_model_free(s->vm);
    nvl_checkpoint_close(s->ck);
    kern_backend_free(s->be);
}

static api_ask_result ask(api_engine *e, const char *file, const char *pages, double evs, const char *q) {
    api_part parts[2] = {{.kind = API_PART_MEDIA, .media = {.path = file, .pages = pages}}, {.kind = API_PART_TEXT, .text = q}};
    api_message msg = {"user", parts, 2};
    api_ask_params p = api_ask_params_default();
    p.max_tokens = 12;
    p.think = 0;
    p.evs = evs;
    p.no_cache = 1;
    api_ask_result r;
    nvl_err err = {0};
    nvl_status st = api_engine_run(e, &msg, 1, &p, NULL, &r, &err);
    TEST_CHECK(st == NVL_OK, "%s: %s", file, err.msg);
    if (st != NVL_OK) memset(&r, 0, sizeof r);
    return r;
}

int main(void) {
    nvl_err err = {0};
    kern_backend *probe = NULL;
    nvl_status st = kern_backend_init(&probe, "cuda", &err);
    if (st != NVL_OK) test_skip("no CUDA backend: %s", err.msg); /* exit 77 */
    kern_backend_free(probe);
    char dir[1024], img[1024], pdf[1024], vid[1024];
    snprintf(dir, sizeof dir, "%s", test_data_path("vl_tiny"));
    snprintf(img, sizeof img, "%s", test_data_path("media/made/image.bmp"));
    snprintf(pdf, sizeof pdf, "%s", test_data_path("media/made/two_pages.pdf"));
    snprintf(vid, sizeof vid, "%s", test_data_path("media/made/clip_2s.mp4"));

    /* 1 + 2: the vision path and EVS on each backend */
    side cpu, gpu;
    TEST_EQ_INT(side_open(&cpu, "cpu", dir, &err), NVL_OK);
    TEST_EQ_INT(side_open(&gpu, "cuda", dir, &err), NVL_OK);
    if (cpu.vm && gpu.vm) {
        const vision_vl_config *vc = vision_model_config(cpu.vm);
        const int64_t G = vision_model_grid(cpu.vm), Q = (G / 2) * (G / 2), C = cpu.pr.out;
        media_image *im = NULL;
        TEST_EQ_INT(media_decode_image_file(img, NULL, &im, &err), NVL_OK);
        float *tiles = NULL;
        int n = 0;
        if (im) TEST_EQ_INT(vision_make_tiles(im->rgb, im->width, im->height, im->stride, vc, 12, &tiles, &n, NULL, NULL, &err), NVL_OK);
        if (tiles && n > 0) {
            float *a = nvl_malloc((size_t)(n * Q * C) * sizeof(float)), *b = nvl_malloc((size_t)(n * Q * C) * sizeof(float));
            TEST_EQ_INT(tokred_embed_tiles(cpu.vm, &cpu.pr, tiles, n, a, &err), NVL_OK);
            TEST_EQ_INT(tokred_embed_tiles(gpu.vm, &gpu.pr, tiles, n, b, &err), NVL_OK);
            char what[96];
            snprintf(what, sizeof what, "image: %d tiles' LM rows, CUDA vs CPU", n);
            test_compare_f32(what, b, a, (size_t)(n * Q * C), 1e-4, 1e-3, 1e-8);
            nvl_free(a);
            nvl_free(b);
        }
        nvl_free(tiles);
        media_image_free(im);
        media_frames *f = NULL;
        TEST_EQ_INT(media_video_sample(vid, NULL, NULL, &f, &err), NVL_OK);
        if (f && f->n > 1) {
            const int F = f->n;
            const size_t tile = (size_t)(3 * vc->image_size * vc->image_size);
            float *ft = nvl_malloc((size_t)F * tile * sizeof(float)), *rows = nvl_malloc((size_t)(F * Q * C) * sizeof(float));
            for (int i = 0; i < F; i++) {
                float *t = NULL;
                int nt = 0;
                const media_image *fr = f->frames[i];
                if (vision_make_tiles(fr->rgb, fr->width, fr->height, fr->stride, vc, 1, &t, &nt, NULL, NULL, &err) == NVL_OK)
                    memcpy(ft + (size_t)i * tile, t, tile * sizeof(float));
                nvl_free(t);
            }
            TEST_EQ_INT(tokred_embed_tiles(cpu.vm, &cpu.pr, ft, F, rows, &err), NVL_OK);
            uint8_t *ka = nvl_malloc((size_t)(F * Q)), *kb = nvl_malloc((size_t)(F * Q));
            int *pa = nvl_malloc((size_t)F * sizeof(int)), *pb = nvl_malloc((size_t)F * sizeof(int));
            TEST_EQ_INT(tokred_evs_mask(cpu.be, rows, F, Q, C, 0.5, 0, ka, pa, &err), NVL_OK);
            TEST_EQ_INT(tokred_evs_mask(gpu.be, rows, F, Q, C, 0.5, 0, kb, pb, &err), NVL_OK);
            TEST_CHECK(!memcmp(ka, kb, (size_t)(F * Q)) && !memcmp(pa, pb, (size_t)F * sizeof(int)),
                       "EVS q=0.5 over %d frames keeps the same tokens on both backends", F);
            nvl_free(ft), nvl_free(rows), nvl_free(ka), nvl_free(kb), nvl_free(pa), nvl_free(pb);
        }
        media_frames_free(f);
    }
    side_close(&cpu);
    side_close(&gpu);

    /* 3. the engine end to end on each backend */
    api_engine *ec = NULL, *eg = NULL;
    setenv("NVL_BACKEND", "cpu", 1);
    TEST_EQ_INT(api_engine_open(&ec, dir, &err), NVL_OK);
    setenv("NVL_BACKEND", "cuda", 1);
    TEST_EQ_INT(api_engine_open(&eg, dir, &err), NVL_OK);
    unsetenv("NVL_BACKEND");
    if (ec && eg) {
        struct {
            const char *file, *pages;
            double evs;
            const char *what;
        } cases[] = {{img, NULL, -1, "image"}, {pdf, NULL, -1, "two-page PDF"}, {vid, NULL, 0.0, "video, EVS off"},
                     {vid, NULL, 0.5, "video, EVS 0.5"}};
        const int64_t V = api_engine_n_vocab(ec);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            api_ask_result a = ask(ec, cases[c].file, cases[c].pages, cases[c].evs, "What is shown?");
            api_ask_result b = ask(eg, cases[c].file, cases[c].pages, cases[c].evs, "What is shown?");
            if (a.first_logits && b.first_logits) {
                TEST_CHECK(a.n_prompt == b.n_prompt && !memcmp(a.prompt_ids, b.prompt_ids, (size_t)a.n_prompt * sizeof(int32_t)),
                           "%s: the same prompt (%lld vs %lld tokens)", cases[c].what, (long long)a.n_prompt, (long long)b.n_prompt);
                for (int m = 0; m < a.n_media && m < b.n_media; m++)
                    if (a.media[m].n_frames && a.media[m].n_frames == b.media[m].n_frames)
                        TEST_CHECK(!memcmp(a.media[m].frame_tokens, b.media[m].frame_tokens, (size_t)a.media[m].n_frames * sizeof(int)),
                                   "%s: the same tokens kept per frame", cases[c].what);
                char what[96];
                snprintf(what, sizeof what, "%s: logits after the prompt, CUDA vs CPU", cases[c].what);
                test_compare_f32(what, b.first_logits, a.first_logits, (size_t)V, 1e-4, 1e-3, 1e-8);
                TEST_CHECK(a.n_ids == b.n_ids && !memcmp(a.ids, b.ids, (size_t)a.n_ids * sizeof(int32_t)),
                           "%s: the same greedy ids", cases[c].what);
            }
            api_ask_result_free(&a);
            api_ask_result_free(&b);
        }
    }
    api_engine_close(ec);
    api_engine_close(eg);
    return test_report();
}
