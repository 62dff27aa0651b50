/* The engine end to end on the tiny complete VL checkpoint (tests/reference/gen_tiny_vl.py):
 * an image question's prompt ids (media expanded) equal the reference's, the logits after the
 * prompt match the composed reference (RadioModel -> Omni pixel shuffle + projector -> rows at
 * the <image> positions of NemotronHForCausalLM's inputs_embeds), and the greedy answer matches.
 * Tolerance: f32 throughout on both sides; errors from the vision path (~1e-5) feed the LM:
 * atol 1e-4, rtol 1e-3, NMSE <= 1e-8 (observed: NMSE 5e-13, max 2e-6). Missing media is a clear
 * error. */
#include "api.h"
#include "base/alloc.h"
#include "base/safetensors.h"
#include "test_util.h"

int main(void) {
    nvl_err err = {0};
    nvl_checkpoint *g = NULL;
    if (nvl_checkpoint_open(&g, test_data_path("vl_tiny_golden.safetensors"), &err) != NVL_OK) test_skip("%s", err.msg);
    int64_t live0 = nvl_alloc_count();
    api_engine *e = NULL;
    TEST_EQ_INT(api_engine_open(&e, test_data_path("vl_tiny"), &err), NVL_OK);
    if (!e) {
        fprintf(stderr, "%s\n", err.msg);
        return test_report();
    }
    const char *files[] = {test_data_path("media/made/image.bmp")};
    api_ask_params p = api_ask_params_default();
    p.max_tokens = 8;
    api_ask_result r;
    TEST_EQ_INT(api_engine_ask(e, files, 1, "What is in this picture?", &p, NULL, NULL, &r, &err), NVL_OK);
    nvl_tensor pid, fl, gi;
    nvl_checkpoint_get(g, "prompt_ids", &pid, &err);
    nvl_checkpoint_get(g, "first_logits", &fl, &err);
    nvl_checkpoint_get(g, "greedy_ids", &gi, &err);
    TEST_EQ_INT(r.n_prompt, nvl_tensor_numel(&pid));
    int same = r.n_prompt == nvl_tensor_numel(&pid);
    for (int64_t i = 0; same && i < r.n_prompt; i++) same = r.prompt_ids[i] == ((const int64_t *)pid.data)[i];
    TEST_CHECK(same, "prompt ids differ from the reference");
    TEST_EQ_INT(r.n_image_tokens, 7 * 4); /* 3x2 grid + thumbnail, 4 tokens per 64 px tile */
    if (r.first_logits)
        test_compare_f32("first-token logits vs composed reference", r.first_logits, fl.data,
                         (size_t)api_engine_n_vocab(e), 1e-4, 1e-3, 1e-8);
    TEST_EQ_INT(r.n_ids, 8);
    int gsame = r.n_ids == 8;
    for (int64_t i = 0; gsame && i < 8; i++) gsame = r.ids[i] == ((const int64_t *)gi.data)[i];
    TEST_CHECK(gsame, "greedy answer differs from the reference");
    api_ask_result_free(&r);
    const char *missing[] = {"/nonexistent/photo.jpg"};
    TEST_EQ_INT(api_engine_ask(e, missing, 1, "?", &p, NULL, NULL, &r, &err), NVL_ERR_NOT_FOUND);
    TEST_CONTAINS(err.msg, "/nonexistent/photo.jpg");
    api_engine_close(e);
    TEST_EQ_INT(nvl_alloc_count(), live0);
    nvl_checkpoint_close(g);
    return test_report();
}
