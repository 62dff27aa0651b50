// The FP8 (E4M3 "fn") and E2M1 conversions of the CUDA quantized matmul, line-by-line ports of
// the CPU's (kernels/base/tensor.c nvl_f8e4m3_to_f32, nvl_f32_to_e4m3_sat, nvl_e2m1_quantize;
// quant-formats.md §1, §2): clamp to +-448 then round to nearest even; E2M1 thresholds <=0.25,
// <0.75, <=1.25, <1.75, <=2.5, <3.5, <=5, saturating at 6. __host__ __device__ so that
// tests/test_cuda_round.cu checks them against the CPU's on the host (no device needed); on the
// device they use the same IEEE operations (frexpf, rintf, ldexpf and f32 division are exact or
// correctly rounded there without --use_fast_math).
#ifndef KERNELS_CUDA_QUANT_ROUND_CUH
#define KERNELS_CUDA_QUANT_ROUND_CUH

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

// E4M3 "fn" code -> f32 (NaN for S.1111.111)
__host__ __device__ inline float qr_e4m3_to_f32(uint8_t v) {
    const uint32_t sign = v >> 7, exp = (v >> 3) & 0xfU, man = v & 0x7U;
    if (exp == 0xf && man == 0x7) {
        const uint32_t nan_bits = 0x7fc00000U;
        float f;
        memcpy(&f, &nan_bits, sizeof f);
        return f;
    }
    const float f = exp == 0 ? ldexpf((float)man, -9) : ldexpf(1.0f + (float)man / 8.0f, (int)exp - 7);
    return sign ? -f : f;
}

// f32 -> E4M3 code: clamped to +-448 first, then round to nearest even; NaN -> 0x7f
__host__ __device__ inline uint8_t qr_e4m3_sat(float f) {
    if (isnan(f)) return 0x7f;
    const uint8_t sign = signbit(f) ? 0x80 : 0;
    const float a = fabsf(f);
    if (a >= 448.0f) return sign | 0x7e;
    if (a < 0.015625f) { // below 2^-6: subnormal steps of 2^-9
        const int q = (int)rintf(a * 512.0f); // ties to even
        return sign | (uint8_t)(q >= 8 ? 0x08 : q);
    }
    int e;
    const float m = frexpf(a, &e); // a = m 2^e, m in [0.5, 1)
    int exp = e - 1;
    int mq = (int)rintf((2.0f * m - 1.0f) * 8.0f);
    if (mq == 8) {
        mq = 0;
        exp++;
    }
    const int code = ((exp + 7) << 3) | mq;
    return sign | (uint8_t)(code > 0x7e ? 0x7e : code);
}

// nearest E2M1 value (sign kept), ties to the even mantissa, saturating at 6
__host__ __device__ inline float qr_e2m1_quantize(float a) {
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

// E2M1 code 0..15 -> value; bit 3 is the sign (8 is -0)
__host__ __device__ inline float qr_e2m1_value(uint32_t code) {
    const uint32_t m = code & 7u;
    const float v = m < 4 ? 0.5f * (float)m : m == 4 ? 2.0f : m == 5 ? 3.0f : m == 6 ? 4.0f : 6.0f;
    return code & 8u ? -v : v;
}

// NVFP4 activations, one 16-block, as the factors of the tensor-core path (ops_cuda.cu, 4.):
// out[t] = e2m1(v[t] / s) * e with e = e4m3(min(amax / (6 is), 448)) and s = e * is, the CPU's
// block scale (kern_cpu_quant_nvfp4_act). out[t] is exact in bf16 (an E2M1 value has <= 2
// significant bits, an E4M3 value <= 4), and out[t] * is equals the CPU's e2m1(v / s) * s up to
// the rounding of s. Where s < 1e-5 the CPU takes scale 1 (x = e2m1(v)): out[t] = e2m1(v) / is,
// not bf16-exact (nonzero only for |v| > 0.25 in a block whose amax is < ~2.2e-6 of the tensor's
// calibrated amax).
__host__ __device__ inline void qr_nvfp4_block_factors(float *out, const float *v, float is) {
    float amax = 0.0f;
    for (int t = 0; t < 16; t++) amax = fmaxf(amax, fabsf(v[t]));
    const float six_gs = 6.0f * is; // as the CPU: one f32 product, then a division
    float rr = amax / six_gs;
    if (rr > 448.0f) rr = 448.0f;
    const float e = qr_e4m3_to_f32(qr_e4m3_sat(rr)), s = e * is;
    for (int t = 0; t < 16; t++) out[t] = s < 1e-5f ? qr_e2m1_quantize(v[t]) / is : qr_e2m1_quantize(v[t] / s) * e;
}

#endif // KERNELS_CUDA_QUANT_ROUND_CUH
