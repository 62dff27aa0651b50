/* Normalisations on the CPU: RMSNorm with f32 statistics.
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

nvl_status kern_cpu_rmsnorm(float *y, const float *x, const nvl_tensor *w, int64_t rows,
                            int64_t cols, float eps, nvl_err *err) {
    if (!nvl_dtype_is_float(w->dtype))
        return nvl_err_set(err, NVL_ERR_UNSUPPORTED, "%s: weight dtype %s is not a float type",
                           __func__, nvl_dtype_name(w->dtype));
#pragma omp parallel for schedule(static) if (rows > 4)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float ss = 0.0f;
        for (int64_t c = 0; c < cols; c++) ss += xr[c] * xr[c];
        float inv = 1.0f / sqrtf(ss / (float)cols + eps);
        for (int64_t c = 0; c < cols; c++) yr[c] = nvl_tensor_get_f32(w, c) * (xr[c] * inv);
    }
    return NVL_OK;
}
