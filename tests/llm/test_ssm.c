/* Mamba-2 scan: the chunked SSD form equals the token-by-token recurrence (several chunk
 * sizes, a length that is not a multiple of any, a non-zero incoming state), and state carried
 * across split calls equals one call. Tolerance: both accumulate in f32 in different orders over
 * at most 45 tokens with |dt*A| <= 2; rtol 1e-4 / atol 1e-5, NMSE <= 1e-10 covers that (observed
 * max error ~1e-6). */
#include "base/alloc.h"
#include "cpu/cpu_ops.h"
#include "test_util.h"

#define T 45
#define H 6
#define P 5
#define N 7
#define G 3

int main(void) {
    uint64_t rng = 99;
    static float x[T * H * P], dt[T * H], A[H], B[T * G * N], C[T * G * N], D[H];
    for (int i = 0; i < T * H * P; i++) x[i] = test_rng_uniform(&rng);
    for (int i = 0; i < T * H; i++) dt[i] = 0.05f + 0.5f * (test_rng_uniform(&rng) + 1.0f);
    for (int i = 0; i < H; i++) A[i] = -(0.2f + 1.5f * (test_rng_uniform(&rng) + 1.0f));
    for (int i = 0; i < T * G * N; i++) B[i] = test_rng_uniform(&rng), C[i] = test_rng_uniform(&rng);
    for (int i = 0; i < H; i++) D[i] = test_rng_uniform(&rng);
    static float s0[H * P * N];
    for (int i = 0; i < H * P * N; i++) s0[i] = 0.3f * test_rng_uniform(&rng);

    static float y_ref[T * H * P], s_ref[H * P * N];
    memcpy(s_ref, s0, sizeof s0);
    kern_cpu_ssm_scan_recurrent(y_ref, s_ref, x, dt, A, B, C, D, T, H, P, N, G, 0);

    const int chunks[] = {1, 4, 8, 16, 64, 300};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        static float y[T * H * P], s[H * P * N];
        memcpy(s, s0, sizeof s0);
        kern_cpu_ssm_scan_chunked(y, s, x, dt, A, B, C, D, T, H, P, N, G, chunks[c]);
        char what[64];
        snprintf(what, sizeof what, "ssd chunk %d: y", chunks[c]);
        test_compare_f32(what, y, y_ref, T * H * P, 1e-5, 1e-4, 1e-10);
        snprintf(what, sizeof what, "ssd chunk %d: state", chunks[c]);
        test_compare_f32(what, s, s_ref, H * P * N, 1e-5, 1e-4, 1e-10);
    }
    /* state carried across calls: 17 tokens, then 28 (recurrent, then chunked) */
    static float y2[T * H * P], s2[H * P * N];
    memcpy(s2, s0, sizeof s0);
    kern_cpu_ssm_scan_recurrent(y2, s2, x, dt, A, B, C, D, 17, H, P, N, G, 0);
    kern_cpu_ssm_scan_chunked(y2 + 17 * H * P, s2, x + 17 * H * P, dt + 17 * H, A, B + 17 * G * N,
                              C + 17 * G * N, D, T - 17, H, P, N, G, 8);
    test_compare_f32("split recurrent+chunked: y", y2, y_ref, T * H * P, 1e-5, 1e-4, 1e-10);
    test_compare_f32("split recurrent+chunked: state", s2, s_ref, H * P * N, 1e-5, 1e-4, 1e-10);

    /* causal conv with carried state: one call of 10 equals 3 + 7 */
    enum { CT = 10, CC = 5, CK = 4 };
    static float in[CT * CC], w[CC * CK], bias[CC], o1[CT * CC], o2[CT * CC], st1[CC * CK], st2[CC * CK];
    for (int i = 0; i < CT * CC; i++) in[i] = test_rng_uniform(&rng);
    for (int i = 0; i < CC * CK; i++) w[i] = test_rng_uniform(&rng);
    for (int i = 0; i < CC; i++) bias[i] = test_rng_uniform(&rng);
    kern_cpu_conv1d_causal_silu(o1, st1, in, w, bias, CT, CC, CK, 0);
    kern_cpu_conv1d_causal_silu(o2, st2, in, w, bias, 3, CC, CK, 0);
    kern_cpu_conv1d_causal_silu(o2 + 3 * CC, st2, in + 3 * CC, w, bias, CT - 3, CC, CK, 0);
    test_compare_f32("conv split", o2, o1, CT * CC, 0, 0, 0);
    test_compare_f32("conv state", st2, st1, CC * CK, 0, 0, 0);
    /* first output: only the newest tap sees input (zero history) */
    float u = bias[0] + w[CK - 1] * in[0];
    TEST_CHECK(fabsf(o1[0] - u / (1.0f + expf(-u))) < 1e-6f, "conv t=0: %g vs %g", o1[0],
               u / (1.0f + expf(-u)));
    /* state holds the last K inputs, oldest first */
    TEST_CHECK(st1[0 * CK + CK - 1] == in[(CT - 1) * CC + 0] && st1[0] == in[(CT - CK) * CC],
               "conv state layout");
    return test_report();
}
