/* libFuzzer harness: safetensors header validation over arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "base/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nvl_safetensors *f = NULL;
    if (nvl_safetensors_open_memory(&f, data, size, "fuzz", NULL) == NVL_OK) {
        for (int64_t i = 0; i < nvl_safetensors_count(f); i++) {
            const nvl_st_entry *e = nvl_safetensors_entry(f, i);
            volatile uint8_t sink = 0;
            if (e->end > e->begin) sink = e->data[e->end - e->begin - 1]; /* in bounds by validation */
            (void)sink;
        }
        nvl_safetensors_close(f);
    }
    return 0;
}
