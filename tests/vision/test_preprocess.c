/* Image preprocessing against references (tests/reference/gen_preprocess_goldens.py): the tile
 * grid equals the InternVL/vLLM selection for 320 (size, max_tiles) cases; the antialiased
 * bicubic resize equals torch.nn.functional.interpolate(uint8, antialias=True) exactly (same
 * fixed-point weights and pass order; the issue allows 1 LSB); tiling layout, thumbnail and
 * normalisation. */
#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/json_util.h"
#include "base/safetensors.h"
#include "vision.h"
#include "test_util.h"

static void test_grid(void) {
    cJSON *root = NULL;
    nvl_err err = {0};
    if (nvl_json_load_file(&root, test_data_path("vision/preprocess_goldens.json"), 1 << 22, &err) != NVL_OK) {
        TEST_CHECK(0, "%s", err.msg);
        return;
    }
    int n = 0, bad = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(root, "grid")) {
        int w = cJSON_GetObjectItemCaseSensitive(c, "w")->valueint, h = cJSON_GetObjectItemCaseSensitive(c, "h")->valueint;
        int m = cJSON_GetObjectItemCaseSensitive(c, "max_tiles")->valueint;
        int ec = cJSON_GetObjectItemCaseSensitive(c, "cols")->valueint, er = cJSON_GetObjectItemCaseSensitive(c, "rows")->valueint;
        int cols = 0, rows = 0;
        vision_tile_grid(w, h, m, 512, &cols, &rows);
        if (cols != ec || rows != er) {
            bad++;
            fprintf(stderr, "grid %dx%d max %d: got %dx%d, expected %dx%d\n", w, h, m, cols, rows, ec, er);
        }
        n++;
    }
    TEST_CHECK(n >= 200 && bad == 0, "%d of %d grid cases differ", bad, n);
    /* the spec's worked examples (model.md §5.2) */
    int cols, rows;
    vision_tile_grid(1920, 1080, 12, 512, &cols, &rows);
    TEST_CHECK(cols == 4 && rows == 2, "1920x1080 -> %dx%d", cols, rows);
    vision_tile_grid(2480, 3508, 12, 512, &cols, &rows);
    TEST_CHECK(cols == 2 && rows == 3, "A4 300 dpi -> %dx%d", cols, rows);
    vision_tile_grid(1700, 2200, 12, 512, &cols, &rows);
    TEST_CHECK(cols == 3 && rows == 4, "1700x2200 -> %dx%d", cols, rows);
    cJSON_Delete(root);
}

static void test_resize(void) {
    nvl_err err = {0};
    nvl_checkpoint *g = NULL;
    if (nvl_checkpoint_open(&g, test_data_path("vision/resize_golden.safetensors"), &err) != NVL_OK) {
        TEST_CHECK(0, "%s", err.msg);
        return;
    }
    nvl_tensor src;
    nvl_checkpoint_get(g, "src", &src, &err);
    const char *names[] = {"down", "up", "mixed", "same"};
    for (int i = 0; i < 4; i++) {
        nvl_tensor ref;
        nvl_checkpoint_get(g, names[i], &ref, &err);
        const int oh = (int)ref.shape[0], ow = (int)ref.shape[1];
        uint8_t *out = malloc((size_t)oh * ow * 3);
        TEST_EQ_INT(vision_resize_bicubic_aa(src.data, 53, 37, 53 * 3, out, ow, oh, &err), NVL_OK);
        int worst = 0, n_diff = 0;
        for (size_t k = 0; k < (size_t)oh * ow * 3; k++) {
            int d = abs((int)out[k] - (int)((const uint8_t *)ref.data)[k]);
            if (d > worst) worst = d;
            n_diff += d > 0;
        }
        printf("resize %s %dx%d: max |diff| %d, %d of %d values differ\n", names[i], ow, oh, worst, n_diff, oh * ow * 3);
        TEST_CHECK(worst == 0, "resize %s: max |diff| %d, expected bit-exact", names[i], worst);
        free(out);
    }
    nvl_checkpoint_close(g);
}

static void test_tiles(void) {
    nvl_err err = {0};
    vision_vl_config vc;
    cJSON *root = cJSON_Parse("{\"force_image_size\": 32, \"max_num_tiles\": 12}");
    TEST_EQ_INT(vision_vl_config_from_json(&vc, root, "cfg", &err), NVL_OK);
    cJSON_Delete(root);
    /* an odd patch grid (the pixel shuffle pairs patches; it failed deep in the vision stage) and
       a tile no ViT takes are refused by the config */
    static const char *const bad_sizes[] = {"{\"force_image_size\": 48}", "{\"force_image_size\": 1000000000}"};
    for (int i = 0; i < 2; i++) {
        vision_vl_config bc;
        cJSON *br = cJSON_Parse(bad_sizes[i]);
        TEST_EQ_INT(vision_vl_config_from_json(&bc, br, "cfg", &err), NVL_ERR_CONFIG);
        TEST_CONTAINS(err.msg, "patches a side: expected an even number");
        cJSON_Delete(br);
    }
    /* a gray 96x64 gradient: grid 3x2 (6 tiles) + thumbnail */
    const int W = 96, H = 64;
    uint8_t *img = malloc((size_t)W * H * 3);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) img[((size_t)y * W + x) * 3 + c] = (uint8_t)(x + y);
    float *tiles = NULL;
    int n = 0, cols = 0, rows = 0;
    TEST_EQ_INT(vision_make_tiles(img, W, H, (size_t)W * 3, &vc, 12, &tiles, &n, &cols, &rows, &err), NVL_OK);
    TEST_CHECK(cols == 3 && rows == 2 && n == 7, "grid %dx%d, %d tiles", cols, rows, n);
    if (tiles) {
        /* 96x64 is exactly 3x2 tiles of 32: no resampling, tile k = region (k % 3, k / 3) */
        const int k = 4, tx = k % 3, ty = k / 3, y = 5, x = 7;
        float v = tiles[(size_t)k * 3 * 32 * 32 + (size_t)(0 * 32 + y) * 32 + x];
        float want = ((float)(uint8_t)(tx * 32 + x + ty * 32 + y) / 255.0f - vc.norm_mean[0]) / vc.norm_std[0];
        TEST_CHECK(fabsf(v - want) < 1e-6f, "tile 4 pixel: %g vs %g", v, want);
        /* gray input: the three channels agree before normalisation */
        float r = tiles[(size_t)6 * 3 * 1024 + 100], b = tiles[(size_t)6 * 3 * 1024 + 2 * 1024 + 100];
        TEST_CHECK(fabsf((r * vc.norm_std[0] + vc.norm_mean[0]) - (b * vc.norm_std[2] + vc.norm_mean[2])) < 1e-5f,
                   "thumbnail channels of a gray image differ");
    }
    nvl_free(tiles);
    /* one tile: no thumbnail */
    TEST_EQ_INT(vision_make_tiles(img, W, H, (size_t)W * 3, &vc, 1, &tiles, &n, &cols, &rows, &err), NVL_OK);
    TEST_EQ_INT(n, 1);
    nvl_free(tiles);
    TEST_EQ_INT(vision_make_tiles(img, W, H, (size_t)W * 3, &vc, 13, &tiles, &n, &cols, &rows, &err), NVL_ERR_INVALID_ARG);
    free(img);
}

int main(void) {
    test_grid();
    test_resize();
    test_tiles();
    return test_report();
}
