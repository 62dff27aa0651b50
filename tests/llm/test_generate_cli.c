/* `nanovl generate` end to end: the prompt of the cfgA golden through the CLI prints the
 * reference's greedy ids, and --dump-logits writes the prefill's last row followed by every
 * generated step's logits, equal to the reference within the cfgA tolerance (test_llm.c).
 * The same for the FP8 and NVFP4 checkpoints made by nvidia-modelopt (tests/data/quant), against
 * its fake-quant forward, within test_quant.c's bounds. */
#include "base/safetensors.h"
#include "test_util.h"

#include <sys/wait.h>

static void run(const char *name, double atol, double rtol, double nmse) {
    const char *dir = test_data_path(name);
    char gpath[600];
    snprintf(gpath, sizeof gpath, "%s/golden.safetensors", dir);
    nvl_checkpoint *g = NULL;
    nvl_err err = {0};
    if (nvl_checkpoint_open(&g, gpath, &err) != NVL_OK) {
        TEST_CHECK(0, "no %s golden: %s", name, err.msg);
        return;
    }
    nvl_tensor pt, gt, pl, dl;
    nvl_checkpoint_get(g, "prompt_ids", &pt, &err);
    nvl_checkpoint_get(g, "greedy_ids", &gt, &err);
    nvl_checkpoint_get(g, "prefill_logits", &pl, &err);
    nvl_checkpoint_get(g, "decode_logits", &dl, &err);
    const int64_t T = nvl_tensor_numel(&pt), S = nvl_tensor_numel(&gt), V = pl.shape[1];
    char ids[4096] = "", expect[4096] = "";
    size_t o = 0, e = 0;
    for (int64_t i = 0; i < T; i++)
        o += (size_t)snprintf(ids + o, sizeof ids - o, "%s%lld", i ? " " : "", (long long)((int64_t *)pt.data)[i]);
    for (int64_t i = 0; i < S; i++)
        e += (size_t)snprintf(expect + e, sizeof expect - e, "%s%lld", i ? " " : "", (long long)((int64_t *)gt.data)[i]);
    char dump[600], cmd[8192];
    snprintf(dump, sizeof dump, "%s/logits.bin", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s/api/nanovl generate --model %s --ids \"%s\" --max-tokens %lld --dump-logits %s",
             NVL_BINARY_DIR, dir, ids, (long long)S, dump);
    FILE *p = popen(cmd, "r");
    char line[8192] = "";
    if (!p || !fgets(line, sizeof line, p)) line[0] = 0;
    int rc = p ? pclose(p) : -1;
    TEST_EQ_INT(rc, 0);
    line[strcspn(line, "\n")] = 0;
    TEST_EQ_STR(line, expect);
    /* dump: row 0 = last prefill row, rows 1..S-1 = decode steps 0..S-2 */
    float *d = malloc((size_t)(S * V) * sizeof(float));
    FILE *f = fopen(dump, "rb");
    size_t got = f ? fread(d, sizeof(float), (size_t)(S * V), f) : 0;
    if (f) fclose(f);
    TEST_EQ_INT(got, S * V);
    char what[160];
    snprintf(what, sizeof what, "%s dump row 0 (prefill)", name);
    test_compare_f32(what, d, (const float *)pl.data + (T - 1) * V, (size_t)V, atol, rtol, nmse);
    snprintf(what, sizeof what, "%s dump rows 1.. (decode)", name);
    test_compare_f32(what, d + V, dl.data, (size_t)((S - 1) * V), atol, rtol, nmse);
    /* usage errors */
    snprintf(cmd, sizeof cmd, "%s/api/nanovl generate --model %s --ids \"1 x\" >/dev/null 2>&1", NVL_BINARY_DIR, dir);
    TEST_CHECK(WEXITSTATUS(system(cmd)) == 2, "bad ids not a usage error");
    snprintf(cmd, sizeof cmd, "%s/api/nanovl generate --model /nonexistent --ids 1 >/dev/null 2>&1", NVL_BINARY_DIR);
    TEST_CHECK(WEXITSTATUS(system(cmd)) == 1, "missing model not a failure");
    free(d);
    unlink(dump);
    nvl_checkpoint_close(g);
}

int main(void) {
    run("llm/cfgA", 2e-4, 1e-3, 1e-8);
    run("quant/fp8", 1e-4, 1e-4, 1e-11);
    run("quant/nvfp4", 1e-4, 1e-4, 1e-11);
    return test_report();
}
