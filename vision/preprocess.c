/* Image preprocessing: tile-grid choice, antialiased bicubic resampling, tiling, thumbnail,
 * normalisation (model.md §5.2-§5.3; vLLM's InternVL-style processor). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cpu/cpu_ops.h"
#include "vision.h"

void vision_tile_grid(int width, int height, int max_tiles, int tile_size, int *cols, int *rows) {
    /* candidates by ascending area; within an area, ascending i (the reference iterates a
     * Python set; equal-area candidates only matter on exact ties, covered by the sweep test) */
    const double ar = (double)width / (double)height;
    const double area = (double)width * (double)height;
    double best = INFINITY;
    int bi = 1, bj = 1;
    for (int a = 1; a <= max_tiles; a++)
        for (int i = 1; i <= a; i++) {
            if (a % i) continue;
            const int j = a / i;
            const double d = fabs(ar - (double)i / (double)j);
            if (d < best) {
                best = d;
                bi = i, bj = j;
            } else if (d == best && area > 0.5 * tile_size * tile_size * i * j) {
                bi = i, bj = j;
            }
        }
    *cols = bi;
    *rows = bj;
}

/* Keys cubic, a = -0.5 (PIL / torch antialias bicubic). */
static double cubic(double x) {
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Weights of one axis: for each output i, [*start, start + *size) input taps. */
static nvl_status axis_weights(int in, int out, int **start, int **size, double **w, int *ksize) {
    const double scale = (double)in / (double)out;
    const double fs = scale > 1.0 ? scale : 1.0;
    const double support = 2.0 * fs;
    const int k = (int)ceil(support) * 2 + 1;
    *start = nvl_malloc((size_t)out * sizeof(int));
    *size = nvl_malloc((size_t)out * sizeof(int));
    *w = nvl_calloc((size_t)out * (size_t)k, sizeof(double));
    if (!*start || !*size || !*w) return NVL_ERR_NOMEM;
    for (int o = 0; o < out; o++) {
        const double center = ((double)o + 0.5) * scale;
        int x0 = (int)(center - support + 0.5);
        if (x0 < 0) x0 = 0;
        int x1 = (int)(center + support + 0.5);
        if (x1 > in) x1 = in;
        double total = 0;
        double *wo = *w + (size_t)o * (size_t)k;
        for (int x = x0; x < x1 && x - x0 < k; x++) {
            wo[x - x0] = cubic(((double)x - center + 0.5) / fs);
            total += wo[x - x0];
        }
        if (total != 0)
            for (int x = 0; x < x1 - x0 && x < k; x++) wo[x] /= total;
        (*start)[o] = x0;
        (*size)[o] = x1 - x0 < k ? x1 - x0 : k;
    }
    *ksize = k;
    return NVL_OK;
}

/* Fixed-point weights as torch's uint8 antialias path (and Pillow) use them: the largest
 * precision that keeps the biggest weight below 2^15, each weight rounded half away from zero;
 * a pass accumulates in int32 from 2^(p-1) and shifts right by p. */
static int quantize(const double *w, int n_out, int k, int32_t *wi) {
    double mx = 0;
    for (int i = 0; i < n_out * k; i++)
        if (w[i] > mx) mx = w[i];
    int p = 0;
    for (p = 0; p < 22; p++) {
        const int next = (int)(0.5 + mx * (double)(1 << (p + 1)));
        if (next >= (1 << 15)) break;
    }
    for (int i = 0; i < n_out * k; i++) {
        const double v = w[i] * (double)(1 << p);
        wi[i] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
    }
    return p;
}

static uint8_t clamp_fixed(int32_t acc, int p) {
    acc >>= p;
    return (uint8_t)(acc < 0 ? 0 : acc > 255 ? 255 : acc);
}

nvl_status vision_resize_bicubic_aa(const uint8_t *src, int sw, int sh, size_t sstride, uint8_t *dst,
                                    int dw, int dh, nvl_err *err) {
    if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "resize %dx%d -> %dx%d", sw, sh, dw, dh);
    int *hs = NULL, *hn = NULL, *vs = NULL, *vn = NULL, hk = 0, vk = 0;
    double *hw = NULL, *vw = NULL;
    int32_t *hq = NULL, *vq = NULL;
    uint8_t *mid = nvl_malloc((size_t)dw * (size_t)sh * 3);
    nvl_status st = NVL_OK;
    if (!mid || axis_weights(sw, dw, &hs, &hn, &hw, &hk) != NVL_OK || axis_weights(sh, dh, &vs, &vn, &vw, &vk) != NVL_OK ||
        !(hq = nvl_malloc((size_t)dw * (size_t)hk * sizeof *hq)) || !(vq = nvl_malloc((size_t)dh * (size_t)vk * sizeof *vq))) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "resize: out of memory");
        goto done;
    }
    const int hp = quantize(hw, dw, hk, hq), vp = quantize(vw, dh, vk, vq);
    const size_t row = (size_t)dw * 3;
    /* Rows are independent in both passes: split over OpenMP's threads (a dense page or a video
     * frame is ~1e7 multiply-adds; nothing below 2^16 output values is worth a team). The sums
     * are exact int32 arithmetic, so neither the split nor the order of the taps changes a bit. */
    const int par = (int64_t)dw * (dh > sh ? dh : sh) >= 65536;
    /* horizontal: (sh, sw) -> (sh, dw), the three channels of a pixel together; a pass whose size
     * does not change is a copy */
#pragma omp parallel for schedule(static) if (par)
    for (int y = 0; y < sh; y++) {
        const uint8_t *s = src + (size_t)y * sstride;
        uint8_t *m = mid + (size_t)y * row;
        if (sw == dw) {
            memcpy(m, s, row);
            continue;
        }
        for (int o = 0; o < dw; o++) {
            int32_t a0 = 1 << (hp - 1), a1 = a0, a2 = a0;
            const int32_t *w = hq + (size_t)o * (size_t)hk;
            const uint8_t *p = s + (size_t)hs[o] * 3;
            for (int t = 0; t < hn[o]; t++, p += 3) {
                a0 += w[t] * p[0];
                a1 += w[t] * p[1];
                a2 += w[t] * p[2];
            }
            m[(size_t)o * 3 + 0] = clamp_fixed(a0, hp);
            m[(size_t)o * 3 + 1] = clamp_fixed(a1, hp);
            m[(size_t)o * 3 + 2] = clamp_fixed(a2, hp);
        }
    }
    /* vertical: (sh, dw) -> (dh, dw), a whole output row at a time (contiguous, vectorised) */
    if (sh == dh) {
        memcpy(dst, mid, row * (size_t)dh);
    } else {
        int ok = 1;
#pragma omp parallel if (par) reduction(&& : ok)
        {
            int32_t *acc = nvl_malloc(row * sizeof *acc);
            ok = acc != NULL;
#pragma omp for schedule(static)
            for (int o = 0; o < dh; o++) {
                if (!acc) continue;
                const int32_t *w = vq + (size_t)o * (size_t)vk;
                for (size_t i = 0; i < row; i++) acc[i] = 1 << (vp - 1);
                for (int t = 0; t < vn[o]; t++) {
                    const int32_t wt = w[t];
                    const uint8_t *m = mid + (size_t)(vs[o] + t) * row;
                    for (size_t i = 0; i < row; i++) acc[i] += wt * m[i];
                }
                uint8_t *d = dst + (size_t)o * row;
                for (size_t i = 0; i < row; i++) d[i] = clamp_fixed(acc[i], vp);
            }
            nvl_free(acc);
        }
        if (!ok) st = nvl_err_set(err, NVL_ERR_NOMEM, "resize: out of memory");
    }
done:
    nvl_free(hq);
    nvl_free(vq);
    nvl_free(mid);
    nvl_free(hs);
    nvl_free(hn);
    nvl_free(hw);
    nvl_free(vs);
    nvl_free(vn);
    nvl_free(vw);
    return st;
}

/* the formula of kern_normalize_rgb8, so host and device tiles are the same bits */
static void normalise_tile(float *out, const uint8_t *rgb, size_t stride, int S, const vision_vl_config *vc) {
    kern_cpu_normalize_rgb8_tile(out, rgb, stride, S, vc->norm_mean, vc->norm_std);
}

nvl_status vision_make_tiles_rgb8(const uint8_t *rgb, int width, int height, size_t stride,
                                  const vision_vl_config *vc, int max_tiles, uint8_t **tiles, int *n_tiles,
                                  int *cols_out, int *rows_out, nvl_err *err) {
    *tiles = NULL;
    *n_tiles = 0;
    if (max_tiles < 1 || max_tiles > vc->max_num_tiles)
        return nvl_err_set(err, NVL_ERR_INVALID_ARG, "max_tiles %d outside 1..%lld", max_tiles, (long long)vc->max_num_tiles);
    const int S = (int)vc->image_size;
    int cols, rows;
    vision_tile_grid(width, height, max_tiles, S, &cols, &rows);
    const int n_grid = cols * rows, thumb = vc->use_thumbnail && n_grid > 1, n = n_grid + thumb;
    const size_t tile_bytes = (size_t)3 * S * S, row_bytes = (size_t)S * 3;
    uint8_t *t = nvl_malloc((size_t)n * tile_bytes);
    /* one tile (no thumbnail): resized straight into place */
    uint8_t *big = n_grid == 1 ? t : nvl_malloc((size_t)S * cols * (size_t)S * rows * 3);
    nvl_status st = NVL_OK;
    if (!t || !big) {
        st = nvl_err_set(err, NVL_ERR_NOMEM, "tiles: out of memory for %d tiles", n);
        goto fail;
    }
    if ((st = vision_resize_bicubic_aa(rgb, width, height, stride, big, S * cols, S * rows, err)) != NVL_OK) goto fail;
    if (big != t)
        for (int k = 0; k < n_grid; k++) {
            const int tx = k % cols, ty = k / cols;
            const size_t bstride = (size_t)S * cols * 3;
            for (int y = 0; y < S; y++)
                memcpy(t + (size_t)k * tile_bytes + (size_t)y * row_bytes,
                       big + ((size_t)ty * S + (size_t)y) * bstride + (size_t)tx * row_bytes, row_bytes);
        }
    if (thumb && (st = vision_resize_bicubic_aa(rgb, width, height, stride, t + (size_t)n_grid * tile_bytes, S, S, err)) !=
                     NVL_OK)
        goto fail;
    if (big != t) nvl_free(big);
    *tiles = t;
    *n_tiles = n;
    if (cols_out) *cols_out = cols;
    if (rows_out) *rows_out = rows;
    return NVL_OK;
fail:
    if (big != t) nvl_free(big);
    nvl_free(t);
    return st;
}

void vision_normalize_tiles(float *out, const uint8_t *tiles, int n, const vision_vl_config *vc) {
    const int S = (int)vc->image_size;
    const size_t tile = (size_t)3 * S * S;
    for (int k = 0; k < n; k++) normalise_tile(out + (size_t)k * tile, tiles + (size_t)k * tile, (size_t)S * 3, S, vc);
}

nvl_status vision_make_tiles(const uint8_t *rgb, int width, int height, size_t stride,
                             const vision_vl_config *vc, int max_tiles, float **tiles, int *n_tiles,
                             int *cols_out, int *rows_out, nvl_err *err) {
    *tiles = NULL;
    *n_tiles = 0;
    uint8_t *t8 = NULL;
    int n = 0;
    nvl_status st = vision_make_tiles_rgb8(rgb, width, height, stride, vc, max_tiles, &t8, &n, cols_out, rows_out, err);
    if (st != NVL_OK) return st;
    float *t = nvl_malloc((size_t)n * 3 * (size_t)(vc->image_size * vc->image_size) * sizeof(float));
    if (!t) {
        nvl_free(t8);
        return nvl_err_set(err, NVL_ERR_NOMEM, "tiles: out of memory for %d tiles", n);
    }
    vision_normalize_tiles(t, t8, n, vc);
    nvl_free(t8);
    *tiles = t;
    *n_tiles = n;
    return NVL_OK;
}
