/*
 * Positional encodings (MODEL.md 2.2.7, 2.3, 2.6; pitfalls 11-13), computed
 * in float32 with the same operation order as the reference PyTorch code
 * (sam2/modeling/position_encoding.py, segment_anything's
 * PositionEmbeddingRandom), so the results agree to a few ulp:
 *
 *  - sine: e = (i+1) / (N + 1e-6) * 2pi, each step rounded to float (the
 *    1e-6 is added in float, so it vanishes for N >= 16);
 *    dim_t[j] = 10000^(2 floor(j/2) / npf) in float; channel j of a part is
 *    sin(e / dim_t[j]) for even j, cos for odd j; y part first, then x.
 *  - random Fourier: c = ((2u-1) G[0,j] + (2v-1) G[1,j]) * float(2pi);
 *    [sin(c_0..), cos(c_0..)].
 *  - axial RoPE: f_j = 1 / theta^(4j/dim), j < dim/4; angle = t * f_j in
 *    float with t = x (pairs [0, dim/4)) or y (pairs [dim/4, dim/2)).
 */
#include "sambench.h"

#include <math.h>

#define TWO_PI_F 6.28318530717958647692f /* float(2*pi), as torch casts the scalar */

void sb_pe_sine(float *out, int64_t F, int64_t H, int64_t W)
{
    if (F <= 0 || H <= 0 || W <= 0)
        return;
    const int64_t npf = F / 2;
    const float ey_den = (float)H + 1e-6f, ex_den = (float)W + 1e-6f;
    for (int64_t j = 0; j < npf; j++) {
        float expo = (2.0f * floorf((float)j / 2.0f)) / (float)npf;
        float dim_t = powf(10000.0f, expo);
        float *py = out + j * H * W;         /* y part: channels [0, npf) */
        float *px = out + (npf + j) * H * W; /* x part: channels [npf, F) */
        for (int64_t y = 0; y < H; y++) {
            float ey = (float)(y + 1) / ey_den * TWO_PI_F;
            float vy = ey / dim_t;
            vy = (j % 2 == 0) ? sinf(vy) : cosf(vy);
            for (int64_t x = 0; x < W; x++)
                py[y * W + x] = vy;
        }
        for (int64_t x = 0; x < W; x++) {
            float ex = (float)(x + 1) / ex_den * TWO_PI_F;
            float vx = ex / dim_t;
            px[x] = (j % 2 == 0) ? sinf(vx) : cosf(vx);
        }
        for (int64_t y = 1; y < H; y++)
            for (int64_t x = 0; x < W; x++)
                px[y * W + x] = px[x];
    }
}

static void fourier_one(const float *G, int64_t npf, float u, float v, float *s_out,
                        float *c_out, int64_t stride)
{
    float a = 2.0f * u - 1.0f, b = 2.0f * v - 1.0f;
    for (int64_t j = 0; j < npf; j++) {
        float c = a * G[j] + b * G[npf + j];
        c = TWO_PI_F * c;
        s_out[j * stride] = sinf(c);
        c_out[j * stride] = cosf(c);
    }
}

void sb_pe_random_fourier(const float *G, int64_t npf, const float *uv, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++)
        fourier_one(G, npf, uv[2 * i], uv[2 * i + 1], out + i * 2 * npf, out + i * 2 * npf + npf,
                    1);
}

void sb_pe_dense_grid(const float *G, int64_t npf, int64_t H, int64_t W, float *out)
{
    const int64_t HW = H * W;
    for (int64_t y = 0; y < H; y++) {
        float v = ((float)(y + 1) - 0.5f) / (float)H; /* cumsum - 0.5, / h */
        for (int64_t x = 0; x < W; x++) {
            float u = ((float)(x + 1) - 0.5f) / (float)W;
            int64_t p = y * W + x;
            fourier_one(G, npf, u, v, out + p, out + npf * HW + p, HW);
        }
    }
}

void sb_rope_axial_table(int64_t dim, int64_t end_x, int64_t end_y, float theta, float *cos_t,
                         float *sin_t)
{
    const int64_t q = dim / 4, half = dim / 2, n = end_x * end_y;
    for (int64_t j = 0; j < q; j++) {
        float f = 1.0f / powf(theta, (float)(4 * j) / (float)dim);
        for (int64_t pos = 0; pos < n; pos++) {
            float ax = (float)(pos % end_x) * f, ay = (float)(pos / end_x) * f;
            cos_t[pos * half + j] = cosf(ax);
            sin_t[pos * half + j] = sinf(ax);
            cos_t[pos * half + q + j] = cosf(ay);
            sin_t[pos * half + q + j] = sinf(ay);
        }
    }
    /* dim not a multiple of 4: the reference has no such pairs; identity */
    for (int64_t pos = 0; pos < n; pos++)
        for (int64_t m = 2 * q; m < half; m++) {
            cos_t[pos * half + m] = 1.0f;
            sin_t[pos * half + m] = 0.0f;
        }
}

void sb_rope_apply(float *x, int64_t L, int64_t dim, int64_t ld, const float *cos_t,
                   const float *sin_t, int64_t table_len)
{
    const int64_t half = dim / 2;
    if (table_len <= 0)
        return;
    for (int64_t l = 0; l < L; l++) {
        int64_t t = l % table_len;
        const float *c = cos_t + t * half, *s = sin_t + t * half;
        float *row = x + l * ld;
        for (int64_t m = 0; m < half; m++) {
            float a = row[2 * m], b = row[2 * m + 1];
            row[2 * m] = a * c[m] - b * s[m];
            row[2 * m + 1] = a * s[m] + b * c[m];
        }
    }
}
