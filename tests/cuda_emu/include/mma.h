/* CUDA emulator (tests/cuda_emu): nvcuda::wmma, the warp matrix functions (CUDA C++ Programming
 * Guide, "Warp Matrix Functions"), for the shapes and types the backend uses (m16n16k16, bf16 and
 * f16 inputs, f32 accumulators).
 *
 * The guide leaves the mapping of a fragment's elements to lanes unspecified, so code may not
 * depend on it; here every lane holds the whole tile (num_elements = 256) and computes the whole
 * product, which is a valid mapping. What a device would check or leave undefined stops the run:
 * a pointer that is not 256-bit aligned, an ldm that is not a multiple of 16 bytes.
 *
 * store_matrix_sync writes only the lane's share of the tile (elements i with i % 32 == lane), so
 * a lane that reads another lane's elements back without a __syncwarp in between sees what was
 * there before, as it may on a device. load_matrix_sync reads the whole tile from each lane, so a
 * tile written by several lanes and loaded without a __syncwarp gives the first lane stale data.
 * mma_sync accumulates in f32, the products in order of k (a device's order and its rounding of
 * the sums differ: the tests' bounds allow for both). */
#ifndef TESTS_CUDA_EMU_MMA_H
#define TESTS_CUDA_EMU_MMA_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "cuda_bf16.h"
#include "cuda_fp16.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
inline float to_f(float v) { return v; }
inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float to_f(__half v) { return __half2float(v); }
inline void check(const char *fn, const void *p, unsigned ldm, size_t es) {
    if (((uintptr_t)p & 31u) || (ldm * es) % 16u) {
        fprintf(stderr, "cuda_emu: %s: pointer %p (must be 256-bit aligned) or ldm %u (must be a multiple of %zu "
                "elements)\n", fn, p, ldm, 16 / es);
        abort();
    }
}
inline int lane() { return (int)((threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32); }
} // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void> struct fragment {
    static_assert(M == 16 && N == 16 && K == 16, "cuda_emu: only m16n16k16 fragments");
    enum { num_elements = 256 };
    T x[256]; /* the whole tile, row-major (r, c) at x[r * 16 + c] */
};

template <typename Use, typename T, typename L>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, L> &f, T v) {
    for (int i = 0; i < 256; i++) f.x[i] = v;
}

/* a matrix_a / matrix_b tile: row_major (r, c) at p[r * ldm + c], col_major at p[c * ldm + r] */
template <typename Use, typename T, typename L>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L> &f, const T *p, unsigned ldm) {
    static_assert(!std::is_same<Use, accumulator>::value, "an accumulator load names its layout");
    detail::check("load_matrix_sync", p, ldm, sizeof(T));
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) f.x[r * 16 + c] = std::is_same<L, col_major>::value ? p[c * ldm + r] : p[r * ldm + c];
}

template <typename T>
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, T> &f, const T *p, unsigned ldm, layout_t l) {
    detail::check("load_matrix_sync", p, ldm, sizeof(T));
    for (int r = 0; r < 16; r++)
        for (int c = 0; c < 16; c++) f.x[r * 16 + c] = l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c];
}

template <typename T>
inline void store_matrix_sync(T *p, const fragment<accumulator, 16, 16, 16, T> &f, unsigned ldm, layout_t l) {
    detail::check("store_matrix_sync", p, ldm, sizeof(T));
    for (int i = detail::lane(); i < 256; i += 32) {
        const int r = i / 16, c = i % 16;
        (l == mem_col_major ? p[c * ldm + r] : p[r * ldm + c]) = f.x[i];
    }
}

namespace detail {
/* NVL_CUDA_EMU_MMA=rz: every add of the accumulation rounded toward zero instead of to nearest, a
 * pessimistic stand-in for a tensor core's adder (which need not round to nearest; NVIDIA does
 * not document it): the GPU tests' bounds must hold for both */
/* NVL_CUDA_EMU_MMA: 0 (unset) f32 adds to nearest; 1 "rz": every add rounded toward zero; 2
 * "align": the tensor-core model of Fasi, Higham, Mikaitis and Pranesh ("Numerical behavior of
 * NVIDIA tensor cores", PeerJ CS 2021) for A100-class bf16/f16 MMA with f32 output, which later
 * measurements carry to Hopper: the 16 exact products and the accumulator aligned to the largest
 * of them and cut (toward zero) to 3 bits below its f32 ulp, summed, the sum cut to f32. */
inline int mma_rz() {
    static const int rz = [] {
        const char *e = getenv("NVL_CUDA_EMU_MMA");
        return !e ? 0 : !strcmp(e, "rz") ? 1 : !strcmp(e, "align") ? 2 : 0;
    }();
    return rz;
}
/* "align": c + sum of p[0..15] as the model above computes it */
inline float sum_align(float c, const double *p) {
    double big = fabs((double)c);
    for (int k = 0; k < 16; k++) big = fabs(p[k]) > big ? fabs(p[k]) : big;
    if (big == 0.0) return c;
    int e2;
    frexp(big, &e2); /* big = 1.f x 2^(e2 - 1) */
    const double q = ldexp(1.0, e2 - 1 - 23 - 3);
    double s = trunc((double)c / q) * q; /* (every term a multiple of q: the sum is exact in double) */
    for (int k = 0; k < 16; k++) s += trunc(p[k] / q) * q;
    float f = (float)s;
    if (fabs((double)f) > fabs(s)) f = nextafterf(f, 0.0f);
    return f;
}
inline float add_rz(float x, float y) {
    const double s = (double)x + (double)y; /* exact: a bf16 product has 16 significant bits */
    float f = (float)s;
    if (fabs((double)f) > fabs(s)) f = nextafterf(f, 0.0f);
    return f;
}
} // namespace detail

/* d = a b + c, f32 sums in order of k (each product exact) */
template <typename TA, typename LA, typename TB, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, float> &d, const fragment<matrix_a, 16, 16, 16, TA, LA> &a,
                     const fragment<matrix_b, 16, 16, 16, TB, LB> &b, const fragment<accumulator, 16, 16, 16, float> &c) {
    float out[256];
    const int rz = detail::mma_rz();
    for (int r = 0; r < 16; r++)
        for (int n = 0; n < 16; n++) {
            float s = c.x[r * 16 + n];
            if (rz == 2) {
                double p[16];
                for (int k = 0; k < 16; k++) p[k] = (double)detail::to_f(a.x[r * 16 + k]) * detail::to_f(b.x[k * 16 + n]);
                out[r * 16 + n] = detail::sum_align(s, p);
                continue;
            }
            for (int k = 0; k < 16; k++) {
                const float p = detail::to_f(a.x[r * 16 + k]) * detail::to_f(b.x[k * 16 + n]);
                s = rz ? detail::add_rz(s, p) : s + p;
            }
            out[r * 16 + n] = s;
        }
    for (int i = 0; i < 256; i++) d.x[i] = out[i];
}

} // namespace wmma
} // namespace nvcuda

/* mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 (and .bf16.bf16 where bf16; PTX ISA,
 * "Matrix Fragments for mma.m16n8k16 with floating point type"), d = a b + d for the warp: lane l (group g = l / 4, t = l % 4) holds
 * A (16 x 16, f16 pairs, the lower half the lower column) a[0] = (g, 2t .. 2t+1), a[1] = (g + 8,
 * 2t ..), a[2] = (g, 2t + 8 ..), a[3] = (g + 8, 2t + 8 ..); B (16 x 8) b[0] = (k 2t .. 2t+1, n g),
 * b[1] = (k 2t + 8 .., n g); C and D (16 x 8, f32) d[i] = (g + 8 (i / 2), 2t + i % 2). The lanes'
 * registers are gathered (emu::warp_gather) and each lane computes its four sums, the products
 * in order of k with the accumulation NVL_CUDA_EMU_MMA chooses (as mma_sync above). */
namespace emu {
inline void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], bool bf16) {
    uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]}, all[32][6];
    warp_gather(mine, sizeof mine, all);
    auto h = [bf16](uint32_t reg, int hi) {
        const uint16_t bits = (uint16_t)(hi ? reg >> 16 : reg & 0xffffu);
        if (bf16) {
            __nv_bfloat16 v;
            v.x = bits;
            return __bfloat162float(v);
        }
        __half v;
        v.x = bits;
        return __half2float(v);
    };
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        const int g = l / 4, t = l % 4;
        for (int e = 0; e < 2; e++) {
            A[g][2 * t + e] = h(all[l][0], e);
            A[g + 8][2 * t + e] = h(all[l][1], e);
            A[g][2 * t + 8 + e] = h(all[l][2], e);
            A[g + 8][2 * t + 8 + e] = h(all[l][3], e);
            B[2 * t + e][g] = h(all[l][4], e);
            B[2 * t + 8 + e][g] = h(all[l][5], e);
        }
    }
    const int lane = nvcuda::wmma::detail::lane(), g = lane / 4, t = lane % 4;
    const int rz = nvcuda::wmma::detail::mma_rz();
    float out[4];
    for (int i = 0; i < 4; i++) {
        const int r = g + 8 * (i / 2), c = 2 * t + i % 2;
        float s = d[i];
        if (rz == 2) {
            double p[16];
            for (int k = 0; k < 16; k++) p[k] = (double)A[r][k] * B[k][c];
            out[i] = nvcuda::wmma::detail::sum_align(s, p);
            continue;
        }
        for (int k = 0; k < 16; k++) {
            const float p = A[r][k] * B[k][c]; /* (exact: 11- or 8-bit significands) */
            s = rz ? nvcuda::wmma::detail::add_rz(s, p) : s + p;
        }
        out[i] = s;
    }
    for (int i = 0; i < 4; i++) d[i] = out[i];
}
} // namespace emu

#endif
