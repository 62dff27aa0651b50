/* The CUDA quantized matmul's roundings (kernels/cuda/quant_round.cuh: E4M3 decode, E4M3
 * saturating round-to-nearest-even, E2M1 quantize and decode) against the CPU's
 * (kernels/base/tensor.c), run ON THE HOST: the same source compiled by nvcc for the host. This
 * checks the port, not the device's math library (frexpf, rintf, ldexpf and IEEE division are
 * exact or correctly rounded on the device too, without --use_fast_math); test_ops --backend cuda
 * checks the kernels on a device. Bit-exact: every E4M3 code; f32 inputs on a stride over all
 * 2^32 bit patterns, every E4M3 midpoint and its two neighbours, every E2M1 threshold and its
 * neighbours. Also the NVFP4 tensor-core path's bf16 factors (qr_nvfp4_block_factors) against the
 * CPU's activation quantization. */
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
    /* the NVFP4 tensor-core path's factors (qr_nvfp4_block_factors): every E2M1 value times every
     * finite E4M3 value is exact in bf16; random blocks (scales 2^-12 .. 2^4, values spread over
     * 2^-8 .. 2^8 of them) give out * is equal to the CPU's e2m1(v / s) * s within 2 f32 ulps
     * (one rounding of s on each side), out bf16-exact, and the CPU's scale-1 case as documented */
    for (uint32_t a = 0; a < 16; a++)
        for (int c = 0; c < 0x7f; c++) {
            const float p = qr_e2m1_value(a) * nvl_f8e4m3_to_f32((uint8_t)c);
            check(bits(nvl_round_bf16(p)) == bits(p), "e2m1 * e4m3 exact in bf16", p, nvl_round_bf16(p), p);
            n++;
        }
    uint64_t rng = 0x243F6A8885A308D3ull;
    int n_scale1 = 0;
    for (int blk = 0; blk < 200000; blk++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        const float is = ldexpf(1.0f + (float)(rng >> 40) / (float)(1 << 24), (int)((rng >> 8) % 17) - 12);
        const float mag = ldexpf(is, (int)((rng >> 16) % 17) - 8);
        float v[16], out[16];
        for (int t = 0; t < 16; t++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            v[t] = mag * ((float)(rng >> 40) / (float)(1 << 23) - 1.0f) * 6.0f;
        }
        qr_nvfp4_block_factors(out, v, is);
        /* the CPU's (kern_cpu_quant_nvfp4_act, kernels/cpu/quant.c) */
        float amax = 0.0f;
        for (int t = 0; t < 16; t++) amax = fmaxf(amax, fabsf(v[t]));
        float r = amax / (6.0f * is);
        if (r > 448.0f) r = 448.0f;
        float sc = nvl_f8e4m3_to_f32(nvl_f32_to_e4m3_sat(r)) * is;
        const int scale1 = sc < 1e-5f;
        if (scale1) sc = 1.0f, n_scale1++;
        for (int t = 0; t < 16; t++, n++) {
            const float cpu = nvl_e2m1_quantize(v[t] / sc) * sc, got = out[t] * is;
            const int ok = fabsf(got - cpu) <= 2.0f * ldexpf(1.0f, -23) * fabsf(cpu) &&
                           (scale1 || bits(nvl_round_bf16(out[t])) == bits(out[t]));
            check(ok, "nvfp4 block factors", v[t], got, cpu);
        }
    }
    printf("%d NVFP4 blocks took the CPU's scale 1\n", n_scale1);
    printf("%llu inputs compared\n%d passed, %d failed\n", (unsigned long long)n, g_pass, g_fail);
    return g_fail ? 1 : 0;
}
