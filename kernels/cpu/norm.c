/* The RMSNorm oracle (double statistics) and the row softmax of the CPU backend.
 * PyTorch: y = w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)) */
#include <math.h>

#include "cpu_ops.h"

void kern_cpu_rmsnorm_ref(float *y, const float *x, const nvl_tensor *w, int64_t rows,
                          int64_t cols, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0.0;
        for (int64_t c = 0; c < cols; c++) ss += (double)x[r * cols + c] * x[r * cols + c];
        double inv = 1.0 / sqrt(ss / (double)cols + eps);
        for (int64_t c = 0; c < cols; c++)
            y[r * cols + c] = (float)((double)nvl_tensor_get_f32(w, c) * (x[r * cols + c] * inv));
    }
}

// ---------------------------------------------------------------------------
// Row softmax (attention scores of the ViT)

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* e^x for 16 lanes: Cephes' expf polynomial on x - n ln2 (|r| <= ln2 / 2), scaled by 2^n
 * (about 1 ulp; inputs below -87.3 give 0). */
__attribute__((target("avx512f"))) static inline __m512 exp16(__m512 x) {
    /* (the bounds first: where one operand is NaN vminps / vmaxps return the second, so a NaN x stays
       NaN instead of becoming a bound: a NaN score must not turn into a probability) */
    x = _mm512_max_ps(_mm512_set1_ps(-87.3365478515625f), _mm512_min_ps(_mm512_set1_ps(88.3762626647949f), x));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500E-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* x rounded to bf16 (round to nearest even; finite inputs), 16 lanes */
__attribute__((target("avx512f"))) static inline __m512 round_bf16_16(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    const __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), odd);
    return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32((int)0xffff0000u)));
}

/* One block of the bf16 form (kern_cpu_softmax_rows_bf16p): row[j] = bf16(exp(row[j] - mx)),
 * returns the f32 sum of the unrounded exps. */
__attribute__((target("avx512f"))) static float exp_block_bf16_avx512(float *row, int64_t n, float mx) {
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 vs = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + j), vmx));
        vs = _mm512_add_ps(vs, e);
        _mm512_storeu_ps(row + j, round_bf16_16(e));
    }
    float sum = _mm512_reduce_add_ps(vs);
    for (; j < n; j++) {
        const float e = expf(row[j] - mx);
        sum += e;
        row[j] = nvl_round_bf16(e);
    }
    return sum;
}

__attribute__((target("avx512f"))) static void softmax_row_avx512(float *row, int64_t n) {
    __m512 vm = _mm512_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(row + j));
    float mx = _mm512_reduce_max_ps(vm);
    for (; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 vs = _mm512_setzero_ps();
    for (j = 0; j + 16 <= n; j += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(row + j), vmx));
        _mm512_storeu_ps(row + j, e);
        vs = _mm512_add_ps(vs, e);
    }
    float sum = _mm512_reduce_add_ps(vs);
    for (; j < n; j++) sum += (row[j] = expf(row[j] - mx));
    const float inv = 1.0f / sum;
    const __m512 vi = _mm512_set1_ps(inv);
    for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(row + j, _mm512_mul_ps(_mm512_loadu_ps(row + j), vi));
    for (; j < n; j++) row[j] *= inv;
}
#endif

static int have_avx512f(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

void kern_cpu_softmax_rows(float *x, int64_t rows, int64_t cols) {
    const int v512 = have_avx512f();
#pragma omp parallel for schedule(static) if (rows * cols > 16384)
    for (int64_t i = 0; i < rows; i++) {
        float *row = x + i * cols;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (v512) {
            softmax_row_avx512(row, cols);
            continue;
        }
#endif
        float mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < cols; j++) mx = row[j] > mx ? row[j] : mx;
        for (int64_t j = 0; j < cols; j++) sum += (row[j] = expf(row[j] - mx));
        const float inv = 1.0f / sum;
        for (int64_t j = 0; j < cols; j++) row[j] *= inv;
    }
}

/* The bf16 form of torch's CPU flash attention (see kern_cpu_softmax_rows_bf16p in cpu_ops.h). */
void kern_cpu_softmax_rows_bf16p(float *x, float *run_max, float *inv_sum, int64_t rows, int64_t cols, int64_t block) {
    const int v512 = have_avx512f();
    const int64_t nb = (cols + block - 1) / block;
#pragma omp parallel for schedule(static) if (rows * cols > 16384)
    for (int64_t i = 0; i < rows; i++) {
        float *row = x + i * cols;
        float M = -INFINITY, l = 0.0f;
        for (int64_t j0 = 0, b = 0; j0 < cols; j0 += block, b++) {
            const int64_t n = cols - j0 < block ? cols - j0 : block;
            float bm = -INFINITY;
            for (int64_t j = j0; j < j0 + n; j++) bm = row[j] > bm ? row[j] : bm;
            const float Mn = bm > M ? bm : M;
            if (j0 > 0 && Mn > M) l *= expf(M - Mn); /* the running max moved: the sum rescales */
            float bs = 0.0f;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
            if (v512) bs = exp_block_bf16_avx512(row + j0, n, Mn);
            else
#endif
                for (int64_t j = j0; j < j0 + n; j++) {
                    const float e = expf(row[j] - Mn);
                    bs += e;
                    row[j] = nvl_round_bf16(e);
                }
            l += bs;
            M = Mn;
            run_max[i * nb + b] = M;
        }
        inv_sum[i] = 1.0f / l;
    }
}
