/* libFuzzer harness: chat templates (llm_jinja_render) with a fixed conversation. */
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static cJSON *ctx;
    if (!ctx)
        ctx = cJSON_Parse("{\"messages\":[{\"role\":\"system\",\"content\":\"s /no_think\"},{\"role\":\"user\",\"content\":"
                          "[{\"type\":\"image\"},{\"type\":\"text\",\"text\":\"q\"}]},{\"role\":\"assistant\",\"content\":"
                          "\"<think>r</think>a\"}],\"add_generation_prompt\":true,\"tools\":null,\"bos_token\":\"<s>\"}");
    char *out = NULL;
    nvl_err err = {0};
    if (llm_jinja_render((const char *)data, size, ctx, &out, NULL, &err) == NVL_OK) nvl_free(out);
    return 0;
}
