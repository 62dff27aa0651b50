/* Pixel shuffle (v2), the mlp1 projector and EVS against transformers' Nemotron Omni code
 * (tests/reference/gen_tokenreduce_goldens.py).
 * Tolerances: pixel shuffle is a permutation (exact); the projector runs in f32 on both sides
 * with different summation orders over 64 and 96 terms: atol 1e-5, rtol 1e-4, NMSE <= 1e-10;
 * EVS masks exactly equal. */
#include "base/alloc.h"
#include "base/safetensors.h"
#include "tokenreduce.h"
#include "test_util.h"

int main(void) {
    nvl_err err = {0};
    nvl_checkpoint *g = NULL, *ck = NULL;
    kern_backend *be = NULL;
    TEST_EQ_INT(kern_backend_init(&be, "cpu", &err), NVL_OK);
    char p[600];
    snprintf(p, sizeof p, "%s", test_data_path("tokenreduce/golden.safetensors"));
    if (nvl_checkpoint_open(&g, p, &err) != NVL_OK) test_skip("%s", err.msg);
    snprintf(p, sizeof p, "%s", test_data_path("tokenreduce/mlp1.safetensors"));
    TEST_EQ_INT(nvl_checkpoint_open(&ck, p, &err), NVL_OK);
    int64_t live0 = nvl_alloc_count();
    nvl_tensor vit, shuf, proj, video;
    nvl_checkpoint_get(g, "vit", &vit, &err);
    nvl_checkpoint_get(g, "shuffled", &shuf, &err);
    nvl_checkpoint_get(g, "projected", &proj, &err);
    nvl_checkpoint_get(g, "video_embeds", &video, &err);

    float *out = malloc(3 * 16 * 64 * sizeof(float));
    TEST_EQ_INT(tokred_pixel_shuffle_f32(be, out, vit.data, 3, 8, 16, &err), NVL_OK);
    test_compare_f32("pixel shuffle v2", out, shuf.data, 3 * 16 * 64, 0, 0, 0);
    TEST_EQ_INT(tokred_pixel_shuffle_f32(be, out, vit.data, 3, 7, 16, &err), NVL_ERR_INVALID_ARG);

    tokred_projector pr;
    TEST_EQ_INT(tokred_projector_bind(&pr, ck, be, 64, 48, &err), NVL_OK);
    float *y = malloc(3 * 16 * 48 * sizeof(float));
    TEST_EQ_INT(tokred_projector_run(&pr, y, shuf.data, 48, &err), NVL_OK);
    test_compare_f32("mlp1 projector", y, proj.data, 3 * 16 * 48, 1e-5, 1e-4, 1e-10);
    TEST_EQ_INT(tokred_projector_bind(&pr, ck, be, 64, 5120, &err), NVL_ERR_SHAPE);
    TEST_CONTAINS(err.msg, "projector tensor 'mlp1.3.weight' has shape [48, 96], expected [5120, 96]");
    TEST_EQ_INT(tokred_projector_bind(&pr, ck, be, 1280 * 4, 48, &err), NVL_ERR_SHAPE);
    TEST_CONTAINS(err.msg, "projector tensor 'mlp1.0.weight' has shape [64], expected [5120]");
    TEST_EQ_INT(tokred_projector_bind(&pr, g, be, 0, 0, &err), NVL_ERR_NOT_FOUND);
    TEST_CONTAINS(err.msg, "missing projector tensor 'mlp1.0.weight'");

    const char *names[] = {"evs_f32_q0", "evs_f32_q50", "evs_f32_q75", "evs_bf16_q0", "evs_bf16_q50", "evs_bf16_q75"};
    const double qs[] = {0, 0.5, 0.75, 0, 0.5, 0.75};
    for (int i = 0; i < 6; i++) {
        nvl_tensor m;
        TEST_EQ_INT(nvl_checkpoint_get(g, names[i], &m, &err), NVL_OK);
        uint8_t keep[96];
        int per[6];
        TEST_EQ_INT(tokred_evs_mask(be, video.data, 6, 16, 48, qs[i], i >= 3, keep, per, &err), NVL_OK);
        int same = 1, total = 0, ref_total = 0;
        for (int k = 0; k < 96; k++) {
            same &= keep[k] == ((const uint8_t *)m.data)[k];
            ref_total += ((const uint8_t *)m.data)[k];
        }
        for (int f = 0; f < 6; f++) total += per[f];
        TEST_CHECK(same, "%s: EVS selection differs from compute_retention_mask", names[i]);
        TEST_EQ_INT(total, ref_total);
        TEST_EQ_INT(per[0], 16); /* the first frame is always kept whole */
    }
    TEST_EQ_INT(tokred_evs_mask(be, video.data, 6, 16, 48, 1.0, 0, NULL, NULL, &err), NVL_ERR_INVALID_ARG);
    free(out);
    free(y);
    TEST_EQ_INT(nvl_alloc_count(), live0);
    nvl_checkpoint_close(g);
    nvl_checkpoint_close(ck);
    kern_backend_free(be);
    return test_report();
}
