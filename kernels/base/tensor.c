/* dtype table lookups, tensor size helpers and element conversions. */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
    int is_float;
} g_dtypes[NVL_DTYPE_COUNT] = {
    [NVL_DTYPE_INVALID] = {"INVALID", 0, 0},
#define NVL_DTYPE_ROW_(e, name, size, isf) [NVL_DTYPE_##e] = {name, size, isf},
    NVL_DTYPE_TABLE(NVL_DTYPE_ROW_)
#undef NVL_DTYPE_ROW_
};

const char *nvl_dtype_name(nvl_dtype t) {
    return (t > 0 && t < NVL_DTYPE_COUNT) ? g_dtypes[t].name : "INVALID";
}
size_t nvl_dtype_size(nvl_dtype t) { return (t > 0 && t < NVL_DTYPE_COUNT) ? g_dtypes[t].size : 0; }
int nvl_dtype_is_float(nvl_dtype t) {
    return (t > 0 && t < NVL_DTYPE_COUNT) ? g_dtypes[t].is_float : 0;
}

nvl_dtype nvl_dtype_from_name(const char *name) {
    if (!name) return NVL_DTYPE_INVALID;
    for (int t = 1; t < NVL_DTYPE_COUNT; t++)
        if (!strcmp(name, g_dtypes[t].name)) return (nvl_dtype)t;
    return NVL_DTYPE_INVALID;
}

nvl_tensor nvl_tensor_make(nvl_dtype dtype, int n_dims, const int64_t *shape, void *data) {
    nvl_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.n_dims = n_dims < 0 ? 0 : (n_dims > NVL_MAX_DIMS ? NVL_MAX_DIMS : n_dims);
    int64_t s = 1;
    for (int i = t.n_dims - 1; i >= 0; i--) {
        t.shape[i] = shape[i];
        t.stride[i] = s;
        s *= shape[i];
    }
    t.data = data;
    t.device = NVL_DEVICE_HOST;
    return t;
}

int64_t nvl_tensor_numel(const nvl_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

size_t nvl_tensor_nbytes(const nvl_tensor *t) {
    return (size_t)nvl_tensor_numel(t) * nvl_tensor_elem_size(t);
}

size_t nvl_tensor_elem_size(const nvl_tensor *t) {
    return t->widened ? sizeof(float) : nvl_dtype_size(t->dtype);
}

int nvl_tensor_is_contiguous(const nvl_tensor *t) {
    int64_t s = 1;
    for (int i = t->n_dims - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

char *nvl_shape_str(char *buf, size_t cap, int n_dims, const int64_t *shape) {
    if (!cap) return buf;
    size_t o = 0;
    buf[0] = '\0';
    o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "[");
    for (int i = 0; i < n_dims && o < cap; i++)
        o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%s%lld", i ? ", " : "",
                              (long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
    buf[cap - 1] = '\0';
    return buf;
}

nvl_status nvl_tensor_check_shape(const nvl_tensor *t, int n_dims, const int64_t *want,
                                  const char *what, nvl_err *err) {
    int ok = t->n_dims == n_dims;
    for (int i = 0; ok && i < n_dims; i++) ok = t->shape[i] == want[i];
    if (ok) return NVL_OK;
    char got_s[128], want_s[128];
    nvl_shape_str(got_s, sizeof got_s, t->n_dims, t->shape);
    nvl_shape_str(want_s, sizeof want_s, n_dims, want);
    return nvl_err_set(err, NVL_ERR_SHAPE, "%s has shape %s, expected %s", what, got_s, want_s);
}

float nvl_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000U) << 16;
    uint32_t exp = (h >> 10) & 0x1fU;
    uint32_t man = h & 0x3ffU;
    union { uint32_t u; float f; } v;
    if (exp == 0) {
        /* zero or subnormal: value = man * 2^-24 */
        float f = (float)man * 5.9604644775390625e-08f;
        return sign ? -f : f;
    } else if (exp == 31) {
        v.u = sign | 0x7f800000U | (man << 13);
    } else {
        v.u = sign | ((exp + 112U) << 23) | (man << 13);
    }
    return v.f;
}

uint16_t nvl_f32_to_f16(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    uint32_t sign = (v.u >> 16) & 0x8000U;
    uint32_t a = v.u & 0x7fffffffU;
    if (a > 0x7f800000U) return (uint16_t)(sign | 0x7e00U); /* NaN */
    if (a >= 0x477ff000U) return (uint16_t)(sign | 0x7c00U); /* overflow -> inf (>= 65520) */
    if (a < 0x38800000U) {                                   /* subnormal or zero in f16 */
        /* round(|f| * 2^24) with ties to even */
        float m = fabsf(f) * 16777216.0f;
        float r = nearbyintf(m);
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t exp = (a >> 23) - 112U;
    uint32_t man = a & 0x7fffffU;
    uint32_t out = (exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffU;
    if (rem > 0x1000U || (rem == 0x1000U && (out & 1U))) out++;
    return (uint16_t)(sign | out);
}

float nvl_f8e4m3_to_f32(uint8_t v) {
    /* E4M3 "fn": bias 7, no infinities, S.1111.111 is NaN. */
    uint32_t sign = v >> 7;
    uint32_t exp = (v >> 3) & 0xfU;
    uint32_t man = v & 0x7U;
    float f;
    if (exp == 0xf && man == 0x7) return NAN;
    if (exp == 0)
        f = ldexpf((float)man, -9); /* subnormal: man/8 * 2^-6 */
    else
        f = ldexpf(1.0f + (float)man / 8.0f, (int)exp - 7);
    return sign ? -f : f;
}

uint8_t nvl_f32_to_e4m3_sat(float f) {
    if (isnan(f)) return 0x7f;
    const uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e; /* clamp to the largest finite value first, as torch does */
    if (a < 0.015625f) {                  /* below 2^-6: subnormal steps of 2^-9 */
        const int q = (int)nearbyintf(a * 512.0f); /* ties to even */
        return sign | (uint8_t)(q >= 8 ? 0x08 : q);
    }
    int e;
    const float m = frexpf(a, &e); /* a = m 2^e, m in [0.5, 1) */
    int exp = e - 1;               /* a = (2m) 2^exp, 2m in [1, 2) */
    int mq = (int)nearbyintf((2.0f * m - 1.0f) * 8.0f);
    if (mq == 8) {
        mq = 0;
        exp++;
    }
    const int code = ((exp + 7) << 3) | mq;
    return sign | (uint8_t)(code > 0x7e ? 0x7e : code);
}

float nvl_e2m1_quantize(float a) {
    const float s = a < 0 ? -1.0f : 1.0f;
    a = fabsf(a);
    float q;
    if (a <= 0.25f) q = 0.0f;
    else if (a < 0.75f) q = 0.5f;
    else if (a <= 1.25f) q = 1.0f;
    else if (a < 1.75f) q = 1.5f;
    else if (a <= 2.5f) q = 2.0f;
    else if (a < 3.5f) q = 3.0f;
    else if (a <= 5.0f) q = 4.0f;
    else q = 6.0f;
    return s * q;
}

void nvl_convert_to_f32(float *dst, const void *src, nvl_dtype dtype, size_t n) {
    switch (dtype) {
    case NVL_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
    case NVL_DTYPE_BF16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = nvl_bf16_to_f32(s[i]);
        break;
    }
    case NVL_DTYPE_F16: {
        const uint16_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = nvl_f16_to_f32(s[i]);
        break;
    }
    case NVL_DTYPE_F8_E4M3: {
        const uint8_t *s = src;
        for (size_t i = 0; i < n; i++) dst[i] = nvl_f8e4m3_to_f32(s[i]);
        break;
    }
    default:
        for (size_t i = 0; i < n; i++) dst[i] = NAN;
        break;
    }
}

float nvl_tensor_get_f32(const nvl_tensor *t, int64_t i) {
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case NVL_DTYPE_F32: { float f; memcpy(&f, p + 4 * i, 4); return f; }
    case NVL_DTYPE_BF16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return nvl_bf16_to_f32(h); }
    case NVL_DTYPE_F16: { uint16_t h; memcpy(&h, p + 2 * i, 2); return nvl_f16_to_f32(h); }
    case NVL_DTYPE_F8_E4M3: return nvl_f8e4m3_to_f32(p[i]);
    case NVL_DTYPE_U8: return (float)p[i];
    case NVL_DTYPE_BOOL: return p[i] ? 1.0f : 0.0f;
    case NVL_DTYPE_I8: return (float)(int8_t)p[i];
    case NVL_DTYPE_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return (float)v; }
    case NVL_DTYPE_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (float)v; }
    case NVL_DTYPE_F64: { double v; memcpy(&v, p + 8 * i, 8); return (float)v; }
    default: return NAN;
    }
}
