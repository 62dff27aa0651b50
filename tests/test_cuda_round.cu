/* The CUDA quantized matmul's roundings (kernels/cuda/quant_round.cuh: E4M3 decode, E4M3
 * saturating round-to-nearest-even, E2M1 quantize and decode) against the CPU's
 * (kernels/base/tensor.c), run ON THE HOST: the same source compiled by nvcc for the host. This
 * checks the port, not the device's math library (frexpf, rintf, ldexpf and IEEE division are
 * exact or correctly rounded on the device too, without --use_fast_math); test_ops --backend cuda
 * checks the kernels on a device. Bit-exact: every E4M3 code; f32 inputs on a stride over all
 * 2^32 bit patterns, every E4M3 midpoint and its two neighbours, every E2M1 threshold and its
 * neighbours. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/tensor.h"
#include "cuda/quant_round.cuh"

static int g_fail, g_pass;

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static void check(int ok, const char *what, float in, double got, double want) {
    if (ok) {
        g_pass++;
        return;
    }
    if (g_fail < 10) fprintf(stderr, "FAIL %s(%.9g = 0x%08x): got %.9g, expected %.9g\n", what, in, bits(in), got, want);
    g_fail++;
}
static void one(float f) {
    const uint8_t a = qr_e4m3_sat(f), b = nvl_f32_to_e4m3_sat(f);
    check(a == b, "e4m3_sat", f, a, b);
    const float p = qr_e2m1_quantize(f), q = nvl_e2m1_quantize(f);
    check(bits(p) == bits(q) || (isnan(p) && isnan(q)), "e2m1_quantize", f, p, q);
}

int main(void) {
    for (int c = 0; c < 256; c++) {
        const float a = qr_e4m3_to_f32((uint8_t)c), b = nvl_f8e4m3_to_f32((uint8_t)c);
        check(bits(a) == bits(b) || (isnan(a) && isnan(b)), "e4m3_to_f32", (float)c, a, b);
    }
    static const float k_e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
    for (uint32_t c = 0; c < 16; c++) check(bits(qr_e2m1_value(c)) == bits(k_e2m1[c]), "e2m1_value", (float)c, qr_e2m1_value(c), k_e2m1[c]);
    uint64_t n = 0;
    for (uint64_t u = 0; u < (1ull << 32); u += 4099, n++) one(from_bits((uint32_t)u));
    /* midpoints of consecutive E4M3 values (ties), their neighbours, and past 448 */
    for (int c = 0; c < 0x7e; c++) {
        const float lo = nvl_f8e4m3_to_f32((uint8_t)c), hi = nvl_f8e4m3_to_f32((uint8_t)(c + 1));
        const float mid = 0.5f * (lo + hi);
        const float probe[] = {mid, nextafterf(mid, 0.0f), nextafterf(mid, 1e9f), lo, hi};
        for (int i = 0; i < 5; i++) {
            one(probe[i]);
            one(-probe[i]);
        }
        n += 10;
    }
    const float e2m1_edges[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f, 448.0f, 464.0f, 480.0f, 1e30f, INFINITY, NAN};
    for (size_t i = 0; i < sizeof e2m1_edges / sizeof e2m1_edges[0]; i++) {
        const float e = e2m1_edges[i];
        const float probe[] = {e, nextafterf(e, 0.0f), nextafterf(e, INFINITY)};
        for (int j = 0; j < 3; j++) {
            one(probe[j]);
            one(-probe[j]);
        }
        n += 6;
    }
    printf("%llu inputs compared\n%d passed, %d failed\n", (unsigned long long)n, g_pass, g_fail);
    return g_fail ? 1 : 0;
}
