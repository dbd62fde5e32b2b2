/*
 * Interpolation exactly as PyTorch's CPU kernels compute it (F.interpolate
 * with `size=` given, no scale_factor, no antialias), MODEL.md 2.2.2 and
 * 6.3. The index/weight arithmetic below follows PyTorch's float32 rules
 * (aten UpSample.h: area_pixel_compute_scale, area_pixel_compute_source_index,
 * the nearest and cubic index helpers):
 *
 *  - scale = (float)in / out, computed in float32 (a float divided by an
 *    int64 in C++ is a float division);
 *  - bilinear / bicubic (align_corners=False): src = scale * (dst + 0.5) - 0.5
 *    where `dst + 0.5` is a double, so the expression is evaluated in double
 *    and rounded to float once; bilinear clamps src at 0, bicubic does not;
 *  - bilinear: i0 = (int)src, i1 = i0 + (i0 < in-1), l1 = src - i0, l0 = 1-l1;
 *    when in == out the axis is copied (l0 = 1, l1 = 0);
 *  - nearest (legacy 'nearest'): src = min(floor(dst * scale), in-1) with
 *    the product in float (so e.g. in=2, out=82, dst=41 gives 0, not the
 *    exact-rational 1; tests/test_ops_interp.c checks this case);
 *  - bicubic: i = floor(src), t = src - i, weights from the cubic
 *    convolution kernel with A = -0.75 in float, taps i-1..i+2 clamped to
 *    [0, in-1].
 * The 2D result is separable: the horizontal taps are combined first, then
 * the vertical ones, in tap order (PyTorch's Interpolate<2> order).
 */
#include "sambench.h"

#include <math.h>
#include <stdlib.h>

/* ---- per-axis index / weight entries ---------------------------------- */

static float pt_scale(int64_t in, int64_t out)
{
    /* area_pixel_compute_scale, align_corners=False, no user scale */
    return out > 1 ? (float)in / (float)out : 0.0f;
}

static float pt_src_index(float scale, int64_t dst, int cubic)
{
    /* scale * (dst + 0.5) - 0.5 evaluated in double, stored as float */
    float s = (float)((double)scale * ((double)dst + 0.5) - 0.5);
    return (!cubic && s < 0.0f) ? 0.0f : s;
}

static void lin_entry(float scale, int64_t in, int64_t out, int64_t d, int64_t *i0, int64_t *i1,
                      float *l0, float *l1)
{
    if (in == out) { /* scale factor 1: copy */
        *i0 = *i1 = d;
        *l0 = 1.0f;
        *l1 = 0.0f;
        return;
    }
    float src = pt_src_index(scale, d, 0);
    int64_t a = (int64_t)src;
    float l = src - (float)a;
    l = l < 0.0f ? 0.0f : (l > 1.0f ? 1.0f : l);
    *i0 = a;
    *i1 = a + (a < in - 1 ? 1 : 0);
    *l1 = l;
    *l0 = 1.0f - l;
}

static int64_t nearest_entry(float scale, int64_t in, int64_t out, int64_t d)
{
    if (out == in)
        return d;
    if (out == 2 * in)
        return d >> 1;
    float p = scale * (float)d; /* float product, as PyTorch */
    int64_t s = (int64_t)floorf(p);
    return s < in - 1 ? s : in - 1;
}

/* cubic convolution kernel pieces (A = -0.75), in float as PyTorch */
static float cc1(float x, float A) { return ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f; }
static float cc2(float x, float A) { return ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A; }

static void cubic_entry(float scale, int64_t in, int64_t d, int64_t idx[4], float wt[4])
{
    const float A = -0.75f;
    float src = pt_src_index(scale, d, 1);
    int64_t i = (int64_t)floorf(src);
    if (i > in - 1)
        i = in - 1;
    float t = src - (float)i;
    t = t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
    wt[0] = cc2(t + 1.0f, A);
    wt[1] = cc1(t, A);
    wt[2] = cc1(1.0f - t, A);
    wt[3] = cc2(2.0f - t, A);
    for (int j = 0; j < 4; j++) {
        int64_t k = i - 1 + j;
        idx[j] = k < 0 ? 0 : (k > in - 1 ? in - 1 : k);
    }
}

/*
 * Workers handle a contiguous range of output rows r = plane*OH + oy. The
 * column tables are built per block of CB output columns on the stack (no
 * allocation, so the functions cannot fail) and reused across the rows.
 */
#define CB 256

typedef struct {
    const float *x;
    float *y;
    int64_t H, W, OH, OW;
    float sy, sx;
} interp_job;

static int64_t row_grain(int64_t OW)
{
    int64_t g = 16384 / (OW > 0 ? OW : 1);
    return g < 1 ? 1 : g;
}

static void bilin_rows(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const interp_job *j = arg;
    int64_t xi0[CB], xi1[CB];
    float xl0[CB], xl1[CB];
    for (int64_t c0 = 0; c0 < j->OW; c0 += CB) {
        int64_t nc = j->OW - c0 < CB ? j->OW - c0 : CB;
        for (int64_t c = 0; c < nc; c++)
            lin_entry(j->sx, j->W, j->OW, c0 + c, &xi0[c], &xi1[c], &xl0[c], &xl1[c]);
        for (int64_t r = begin; r < end; r++) {
            int64_t p = r / j->OH, oy = r % j->OH, y0, y1;
            float wy0, wy1;
            lin_entry(j->sy, j->H, j->OH, oy, &y0, &y1, &wy0, &wy1);
            const float *r0 = j->x + (p * j->H + y0) * j->W;
            const float *r1 = j->x + (p * j->H + y1) * j->W;
            float *out = j->y + r * j->OW + c0;
            for (int64_t c = 0; c < nc; c++) {
                float t0 = r0[xi0[c]] * xl0[c] + r0[xi1[c]] * xl1[c];
                float t1 = r1[xi0[c]] * xl0[c] + r1[xi1[c]] * xl1[c];
                out[c] = t0 * wy0 + t1 * wy1;
            }
        }
    }
}

void sb_interp_bilinear(sb_ctx *ctx, const float *x, int64_t planes, int64_t H, int64_t W, float *y,
                        int64_t OH, int64_t OW)
{
    if (planes <= 0 || H <= 0 || W <= 0 || OH <= 0 || OW <= 0)
        return;
    interp_job j = {x, y, H, W, OH, OW, pt_scale(H, OH), pt_scale(W, OW)};
    sb_parallel_for(ctx, planes * OH, row_grain(OW), bilin_rows, &j);
}

static void nearest_rows(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const interp_job *j = arg;
    int64_t xi[CB];
    for (int64_t c0 = 0; c0 < j->OW; c0 += CB) {
        int64_t nc = j->OW - c0 < CB ? j->OW - c0 : CB;
        for (int64_t c = 0; c < nc; c++)
            xi[c] = nearest_entry(j->sx, j->W, j->OW, c0 + c);
        for (int64_t r = begin; r < end; r++) {
            int64_t p = r / j->OH, oy = r % j->OH;
            const float *row = j->x + (p * j->H + nearest_entry(j->sy, j->H, j->OH, oy)) * j->W;
            float *out = j->y + r * j->OW + c0;
            for (int64_t c = 0; c < nc; c++)
                out[c] = row[xi[c]];
        }
    }
}

void sb_interp_nearest(sb_ctx *ctx, const float *x, int64_t planes, int64_t H, int64_t W, float *y,
                       int64_t OH, int64_t OW)
{
    if (planes <= 0 || H <= 0 || W <= 0 || OH <= 0 || OW <= 0)
        return;
    /* nearest's scale is the same (float)in/out (compute_scales_value) */
    interp_job j = {x, y, H, W, OH, OW, (float)H / (float)OH, (float)W / (float)OW};
    sb_parallel_for(ctx, planes * OH, row_grain(OW), nearest_rows, &j);
}

static void bicubic_rows(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const interp_job *j = arg;
    int64_t xi[CB][4];
    float xw[CB][4];
    for (int64_t c0 = 0; c0 < j->OW; c0 += CB) {
        int64_t nc = j->OW - c0 < CB ? j->OW - c0 : CB;
        for (int64_t c = 0; c < nc; c++)
            cubic_entry(j->sx, j->W, c0 + c, xi[c], xw[c]);
        for (int64_t r = begin; r < end; r++) {
            int64_t p = r / j->OH, oy = r % j->OH, yi[4];
            float yw[4];
            cubic_entry(j->sy, j->H, oy, yi, yw);
            const float *rows[4];
            for (int k = 0; k < 4; k++)
                rows[k] = j->x + (p * j->H + yi[k]) * j->W;
            float *out = j->y + r * j->OW + c0;
            for (int64_t c = 0; c < nc; c++) {
                float acc = 0.0f;
                for (int k = 0; k < 4; k++) {
                    const float *s = rows[k];
                    float t = s[xi[c][0]] * xw[c][0];
                    t += s[xi[c][1]] * xw[c][1];
                    t += s[xi[c][2]] * xw[c][2];
                    t += s[xi[c][3]] * xw[c][3];
                    acc = k == 0 ? t * yw[0] : acc + t * yw[k];
                }
                out[c] = acc;
            }
        }
    }
}

void sb_interp_bicubic(sb_ctx *ctx, const float *x, int64_t planes, int64_t H, int64_t W, float *y,
                       int64_t OH, int64_t OW)
{
    if (planes <= 0 || H <= 0 || W <= 0 || OH <= 0 || OW <= 0)
        return;
    interp_job j = {x, y, H, W, OH, OW, pt_scale(H, OH), pt_scale(W, OW)};
    sb_parallel_for(ctx, planes * OH, row_grain(OW), bicubic_rows, &j);
}
