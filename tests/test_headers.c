/* Every public header compiles on its own in C11 (each include below is first in a fresh
 * translation unit's view because the headers are self-contained; compiling this file with
 * -std=c11 -Wall is the test). The checks assert a few compile-time facts. */
#include "api.h"
#include "backend.h"
#include "base/alloc.h"
#include "base/arena.h"
#include "base/assert.h"
#include "base/json_util.h"
#include "base/log.h"
#include "base/mapped_file.h"
#include "base/safetensors.h"
#include "base/status.h"
#include "base/tensor.h"
#include "chat.h"
#include "cpu/cpu_ops.h"
#include "jinja.h"
#include "llm.h"
#include "media.h"
#include "tokenizer.h"
#include "tokenreduce.h"
#include "vision.h"
#ifdef NVL_HAVE_CUDA
#include "cuda/cuda_ops.h"
#endif
#include "test_util.h"

_Static_assert(NVL_OK == 0, "NVL_OK must be 0");
_Static_assert(NVL_ERR_NOMEM < 0, "errors are negative");
_Static_assert(sizeof(int64_t) == 8, "64-bit sizes");

int main(void) {
    TEST_EQ_INT(nvl_dtype_size(NVL_DTYPE_BF16), 2);
    TEST_EQ_STR(media_kind_name(MEDIA_KIND_PDF), "pdf");
    TEST_EQ_INT(media_sniff((const uint8_t *)"%PDF-1.7", 8), MEDIA_KIND_PDF);
    TEST_EQ_INT(media_sniff((const uint8_t *)"\x89PNG\r\n\x1a\n", 8), MEDIA_KIND_PNG);
    TEST_EQ_INT(media_sniff((const uint8_t *)"\xff\xd8\xff\xe0", 4), MEDIA_KIND_JPEG);
    TEST_EQ_INT(media_sniff((const uint8_t *)"\0\0\0\x18" "ftypmp42", 12), MEDIA_KIND_VIDEO);
    TEST_EQ_INT(media_sniff((const uint8_t *)"hello", 5), MEDIA_KIND_UNKNOWN);
    return test_report();
}
