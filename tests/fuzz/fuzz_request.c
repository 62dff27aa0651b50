/* libFuzzer harness: socket/batch request lines (api_request_parse: JSON, fields, base64). */
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    api_request rq;
    nvl_err err = {0};
    if (api_request_parse((const char *)data, size, &rq, &err) == NVL_OK) api_request_free(&rq);
    return 0;
}
