/* Tensor descriptor and element types.
 *
 * Shapes are written outermost-first everywhere (PyTorch / safetensors order): a Linear weight
 * is (out, in) row-major and y = x @ W^T. Strides are in elements; a contiguous tensor has
 * stride[n_dims-1] = 1. A descriptor never owns its data: it points into a mapped checkpoint,
 * an arena or a backend buffer whose owner states the lifetime.
 *
 *   nvl_tensor t = nvl_tensor_make(NVL_DTYPE_BF16, 2, (int64_t[]){22656, 5120}, ptr);
 *   float x = nvl_tensor_get_f32(&t, i);   // flat index, any float dtype
 */
#ifndef KERNELS_BASE_TENSOR_H
#define KERNELS_BASE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NVL_MAX_DIMS 8

/* X(enum suffix, safetensors name, size in bytes, is float). F64, F8_E5M2 and the wider
 * integers are known so that a file holding them opens (and each such tensor is refused by name
 * where it is bound); "is float" marks the dtypes nanovl computes with. */
#define NVL_DTYPE_TABLE(X)      \
    X(F32, "F32", 4, 1)         \
    X(F16, "F16", 2, 1)         \
    X(BF16, "BF16", 2, 1)       \
    X(F8_E4M3, "F8_E4M3", 1, 1) \
    X(U8, "U8", 1, 0)           \
    X(I8, "I8", 1, 0)           \
    X(I32, "I32", 4, 0)         \
    X(I64, "I64", 8, 0)         \
    X(BOOL, "BOOL", 1, 0)       \
    X(F64, "F64", 8, 0)         \
    X(F8_E5M2, "F8_E5M2", 1, 0) \
    X(I16, "I16", 2, 0)         \
    X(U16, "U16", 2, 0)         \
    X(U32, "U32", 4, 0)         \
    X(U64, "U64", 8, 0)

typedef enum nvl_dtype {
    NVL_DTYPE_INVALID = 0,
#define NVL_DTYPE_ENUM_(e, name, size, isf) NVL_DTYPE_##e,
    NVL_DTYPE_TABLE(NVL_DTYPE_ENUM_)
#undef NVL_DTYPE_ENUM_
    NVL_DTYPE_COUNT
} nvl_dtype;

enum nvl_device { NVL_DEVICE_HOST = 0, NVL_DEVICE_CUDA = 1 };

typedef struct nvl_tensor {
    nvl_dtype dtype;
    int n_dims;
    int64_t shape[NVL_MAX_DIMS];  /* outermost first */
    int64_t stride[NVL_MAX_DIMS]; /* in elements */
    void *data;                   /* not owned */
    enum nvl_device device;
    /* 1: the elements of a narrower float dtype (BF16, F16) are held widened to f32, each value
     * exactly representable in dtype. The CPU backend holds BF16 activations this way, so its
     * kernels run f32 code while rounding stays where the dtype puts it (kernels/ops.h). */
    int widened;
} nvl_tensor;

const char *nvl_dtype_name(nvl_dtype t);  /* safetensors spelling, "INVALID" otherwise */
size_t nvl_dtype_size(nvl_dtype t);       /* bytes per element, 0 for INVALID */
int nvl_dtype_is_float(nvl_dtype t);
nvl_dtype nvl_dtype_from_name(const char *name); /* NVL_DTYPE_INVALID when unknown */

/* Contiguous host tensor over data (not copied). n_dims in [0, NVL_MAX_DIMS]. */
nvl_tensor nvl_tensor_make(nvl_dtype dtype, int n_dims, const int64_t *shape, void *data);
int64_t nvl_tensor_numel(const nvl_tensor *t);
/* Bytes one element takes in memory: 4 for a widened tensor, else nvl_dtype_size(dtype). */
size_t nvl_tensor_elem_size(const nvl_tensor *t);
size_t nvl_tensor_nbytes(const nvl_tensor *t);
int nvl_tensor_is_contiguous(const nvl_tensor *t);
/* Writes "[22656, 5120]" into buf (always NUL-terminated); returns buf. */
char *nvl_shape_str(char *buf, size_t cap, int n_dims, const int64_t *shape);
/* Checks dims against want (n_dims and every extent); on mismatch fills err with
 * "<what> has shape [..], expected [..]" and returns NVL_ERR_SHAPE. */
nvl_status nvl_tensor_check_shape(const nvl_tensor *t, int n_dims, const int64_t *want,
                                  const char *what, nvl_err *err);

/* Element conversions. f32 -> bf16/f16 round to nearest even; NaN stays NaN. */
static inline float nvl_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}
static inline uint16_t nvl_f32_to_bf16(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    if ((v.u & 0x7fffffffU) > 0x7f800000U) return (uint16_t)((v.u >> 16) | 0x40); /* quiet NaN */
    uint32_t rounding = 0x7fffU + ((v.u >> 16) & 1U);
    return (uint16_t)((v.u + rounding) >> 16);
}
/* Rounds f to the nearest bf16 value and returns it as float. */
static inline float nvl_round_bf16(float f) { return nvl_bf16_to_f32(nvl_f32_to_bf16(f)); }
float nvl_f16_to_f32(uint16_t h);
uint16_t nvl_f32_to_f16(float f);
float nvl_f8e4m3_to_f32(uint8_t v);
/* f32 -> E4M3 "fn" code: clamped to +-448 first, then rounded to nearest even (torch's
 * clamp + .to(float8_e4m3fn)); NaN -> 0x7f. */
uint8_t nvl_f32_to_e4m3_sat(float f);
/* Rounds to the nearest E2M1 value {0, 0.5, 1, 1.5, 2, 3, 4, 6} (sign kept), ties to the even
 * mantissa as ModelOpt's NVFP4 kernels (thresholds <=0.25, <0.75, <=1.25, <1.75, <=2.5, <3.5,
 * <=5); above 6 saturates to 6. quant-formats.md §2. */
float nvl_e2m1_quantize(float a);

/* Converts n elements of a float dtype (F32, F16, BF16, F8_E4M3) to f32. */
void nvl_convert_to_f32(float *dst, const void *src, nvl_dtype dtype, size_t n);
/* Reads flat element i of a contiguous tensor of any float or integer dtype as float. */
float nvl_tensor_get_f32(const nvl_tensor *t, int64_t i);

#ifdef __cplusplus
}
#endif

#endif // KERNELS_BASE_TENSOR_H
