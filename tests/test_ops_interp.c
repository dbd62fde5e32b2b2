/*
 * Interpolation as PyTorch computes it (core/ops_interp.c, MODEL.md 2.2.2,
 * 6.3): hand-computed cases, independent double-precision references, and
 * the golden fixtures written by PyTorch (logits/final is
 * F.interpolate(low_res_masks) in the fixtures: bilinear for samed2/sam2,
 * nearest for medsam2).
 *
 * Tolerances:
 *  - hand cases whose weights are dyadic (0.25, 0.125, ...): the float result
 *    is exact, so equality within 1e-6 of values <= 16 (i.e. a few ulp);
 *  - bilinear/bicubic against the double references: 1e-5 * max|x|. The
 *    implementation rounds the scale, the source coordinate and the weights
 *    to float (relative error ~6e-8 each, times |src| <= in for the
 *    coordinate) and sums 2 or 4 (x 2 or 4) products; for the sizes here
 *    (in <= 256) that is < 3e-6 * max|x|; a wrong tap or weight is O(0.1);
 *  - nearest: exact (it copies values);
 *  - the PyTorch fixtures: bilinear within 4 ulp of the largest value
 *    (different summation/FMA order than ATen), nearest bit-exact.
 */
#include "util_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- bilinear ------------------------------------------------------------ */

static void test_bilinear_2x2_to_4x4(void **state)
{
    (void)state;
    const float x[4] = {1, 2, 3, 4};
    /* scale 0.5: src = 0.5*(d+0.5)-0.5 = -0.25 (clamped to 0), 0.25, 0.75, 1.25
     * (-> pixel 1 only), so the 1-D weights on (x0, x1) are (1,0), (.75,.25),
     * (.25,.75), (0,1) along both axes */
    const float want[16] = {1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                            2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
    float y[16];
    sb_interp_bilinear(NULL, x, 1, 2, 2, y, 4, 4);
    for (int i = 0; i < 16; i++)
        assert_float_equal(y[i], want[i], 1e-6);
    /* downsampling 4x4 -> 2x2: src = 2*(d+0.5)-0.5 = 0.5, 2.5: averages of pairs */
    float z[4];
    sb_interp_bilinear(NULL, want, 1, 4, 4, z, 2, 2);
    const float wz[4] = {(1.0f + 1.25f + 1.5f + 1.75f) / 4, (1.75f + 2.0f + 2.25f + 2.5f) / 4,
                         (2.5f + 2.75f + 3.0f + 3.25f) / 4, (3.25f + 3.5f + 3.75f + 4.0f) / 4};
    for (int i = 0; i < 4; i++)
        assert_float_equal(z[i], wz[i], 1e-6);
    /* same size: a copy */
    float same[16];
    sb_interp_bilinear(NULL, want, 1, 4, 4, same, 4, 4);
    assert_memory_equal(same, want, sizeof same);
}

/* 256 -> 1024 (the final mask upsample, MODEL.md 6.3): the weights of an
 * input pixel k on the outputs around 4k follow the 0.125/0.375/0.625/0.875
 * pattern. Checked on impulses, along W (H = 1, copied) and along H (W = 1). */
static void test_bilinear_256_to_1024_pattern(void **state)
{
    (void)state;
    float *x = calloc(256, sizeof(float)), *y = malloc(1024 * sizeof(float));
    const float pattern[8] = {0.125f, 0.375f, 0.625f, 0.875f, 0.875f, 0.625f, 0.375f, 0.125f};
    const int ks[3] = {1, 100, 254};
    for (int axis = 0; axis < 2; axis++)
        for (int ki = 0; ki < 3; ki++) {
            int k = ks[ki];
            memset(x, 0, 256 * sizeof(float));
            x[k] = 1.0f;
            if (axis == 0)
                sb_interp_bilinear(NULL, x, 1, 1, 256, y, 1, 1024);
            else
                sb_interp_bilinear(NULL, x, 1, 256, 1, y, 1024, 1);
            for (int d = 0; d < 1024; d++) {
                float want = (d >= 4 * k - 2 && d <= 4 * k + 5) ? pattern[d - (4 * k - 2)] : 0.0f;
                if (y[d] != want)
                    fail_msg("axis %d impulse at %d: out[%d] = %.9g, want %.9g", axis, k, d,
                             (double)y[d], (double)want);
            }
        }
    /* borders: outputs 0,1 see only pixel 0 (src clamped at 0), 1022,1023 only pixel 255 */
    fill_uniform(x, 256, 9, -3.0f, 3.0f);
    sb_interp_bilinear(NULL, x, 1, 1, 256, y, 1, 1024);
    assert_true(y[0] == x[0] && y[1] == x[0]);
    assert_float_equal(y[1022], x[255], 1e-6);
    assert_float_equal(y[1023], x[255], 1e-6);
    /* interior: out[4k+2] = 0.875 x[k] + 0.125 x[k+1] */
    assert_float_equal(y[4 * 37 + 2], 0.875f * x[37] + 0.125f * x[38], 1e-6);
    free(x);
    free(y);
}

/* PyTorch's area_pixel_compute_scale returns 0 for an output size of 1 (so
 * that output samples at src = -0.5, not at the centre); the references
 * reproduce that rule, everything else is exact arithmetic. */
static double ref_scale(int64_t in, int64_t out) { return out > 1 ? (double)in / (double)out : 0.0; }

/* Independent reference: real-valued source coordinate in double. */
static double ref_lin_1d(const float *row, int64_t stride, int64_t in, int64_t out, int64_t d)
{
    if (in == out)
        return row[d * stride];
    double src = ((double)d + 0.5) * ref_scale(in, out) - 0.5;
    if (src < 0)
        src = 0;
    int64_t i0 = (int64_t)floor(src);
    if (i0 > in - 1)
        i0 = in - 1;
    int64_t i1 = i0 + 1 < in ? i0 + 1 : in - 1;
    double l = src - (double)i0;
    return (1 - l) * row[i0 * stride] + l * row[i1 * stride];
}

static void test_bilinear_random(void **state)
{
    (void)state;
    const int64_t cases[][5] = {{2, 5, 7, 13, 3}, {1, 48, 48, 192, 192}, {3, 1, 6, 5, 1},
                                {1, 9, 17, 4, 8},  {2, 7, 7, 7, 7},      {1, 33, 1, 100, 3}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t P = cases[c][0], H = cases[c][1], W = cases[c][2], OH = cases[c][3], OW = cases[c][4];
        float *x = malloc((size_t)(P * H * W) * sizeof(float));
        float *y = malloc((size_t)(P * OH * OW) * sizeof(float));
        float *ref = malloc((size_t)(P * OH * OW) * sizeof(float));
        fill_uniform(x, (size_t)(P * H * W), 60 + c, -2.0f, 2.0f);
        sb_interp_bilinear(NULL, x, P, H, W, y, OH, OW);
        /* separable in double: along W for every input row, then along H */
        double *tmp = malloc((size_t)(H * OW) * sizeof(double));
        for (int64_t p = 0; p < P; p++) {
            for (int64_t iy = 0; iy < H; iy++)
                for (int64_t ox = 0; ox < OW; ox++)
                    tmp[iy * OW + ox] = ref_lin_1d(x + (p * H + iy) * W, 1, W, OW, ox);
            for (int64_t oy = 0; oy < OH; oy++)
                for (int64_t ox = 0; ox < OW; ox++) {
                    double v;
                    if (H == OH) {
                        v = tmp[oy * OW + ox];
                    } else {
                        double src = ((double)oy + 0.5) * ref_scale(H, OH) - 0.5;
                        src = src < 0 ? 0 : src;
                        int64_t i0 = (int64_t)floor(src), i1 = i0 + 1 < H ? i0 + 1 : H - 1;
                        double l = src - (double)i0;
                        v = (1 - l) * tmp[i0 * OW + ox] + l * tmp[i1 * OW + ox];
                    }
                    ref[(p * OH + oy) * OW + ox] = (float)v;
                }
        }
        char label[96];
        snprintf(label, sizeof label, "bilinear %lldx%lld -> %lldx%lld", (long long)H, (long long)W,
                 (long long)OH, (long long)OW);
        cmp_stats s = compare_f32(label, y, ref, (size_t)(P * OH * OW));
        assert_true(s.max_abs <= 1e-5 * 2.0);
        free(tmp);
        free(x);
        free(y);
        free(ref);
    }
}

/* Golden: the fixtures' logits/final = bilinear(low_res_masks -> S x S). */
static void check_fixture_upsample(const char *file, int nearest)
{
    sb_error err;
    sb_h5 *f;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path(file), SB_H5_READ, &err));
    float *lo, *hi;
    int nd1, nd2;
    int64_t s1[SB_MAX_DIMS], s2[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "mask_decoder/low_res_masks", &lo, &nd1, s1, &err));
    assert_sb_ok(err, sb_h5_read_f32(f, "logits/final", &hi, &nd2, s2, &err));
    assert_int_equal(nd1, 4);
    assert_int_equal(nd2, 4);
    int64_t planes = s1[0] * s1[1], n = planes * s2[2] * s2[3];
    float *y = malloc((size_t)n * sizeof(float));
    if (nearest)
        sb_interp_nearest(NULL, lo, planes, s1[2], s1[3], y, s2[2], s2[3]);
    else
        sb_interp_bilinear(NULL, lo, planes, s1[2], s1[3], y, s2[2], s2[3]);
    char label[128];
    snprintf(label, sizeof label, "%s %s %lld->%lld", file, nearest ? "nearest" : "bilinear",
             (long long)s1[2], (long long)s2[2]);
    cmp_stats s = compare_f32(label, y, hi, (size_t)n);
    if (nearest)
        assert_memory_equal(y, hi, (size_t)n * sizeof(float));
    else
        assert_true(s.max_abs <= 4.0 * s.max_ref * 0x1p-23);
    free(lo);
    free(hi);
    free(y);
    sb_h5_close(f);
}

static void test_bilinear_fixtures(void **state)
{
    (void)state;
    check_fixture_upsample("samed2_step0.h5", 0);
    check_fixture_upsample("samed2_step1.h5", 0);
    check_fixture_upsample("sam2_step0.h5", 0);
}

/* ---- nearest --------------------------------------------------------------- */

static void test_nearest(void **state)
{
    (void)state;
    /* 256 -> 1024: src = floor(d/4) */
    float *x = malloc(256 * sizeof(float)), *y = malloc(1024 * sizeof(float));
    for (int i = 0; i < 256; i++)
        x[i] = (float)i;
    sb_interp_nearest(NULL, x, 1, 1, 256, y, 1, 1024);
    for (int d = 0; d < 1024; d++)
        assert_true(y[d] == (float)(d / 4));
    sb_interp_nearest(NULL, x, 1, 256, 1, y, 1024, 1);
    for (int d = 0; d < 1024; d++)
        assert_true(y[d] == (float)(d / 4));
    /* non-integer ratio 5 -> 7: scale 5/7, floor(d*0.714..) = 0,0,1,2,2,3,4 */
    const int want57[7] = {0, 0, 1, 2, 2, 3, 4};
    sb_interp_nearest(NULL, x, 1, 1, 5, y, 1, 7);
    for (int d = 0; d < 7; d++)
        assert_true(y[d] == (float)want57[d]);
    /* downsampling 7 -> 3: scale 7/3 = 2.333..: floor 0, 2.33, 4.67 = 0, 2, 4 */
    sb_interp_nearest(NULL, x, 1, 1, 7, y, 1, 3);
    assert_true(y[0] == 0.0f && y[1] == 2.0f && y[2] == 4.0f);
    /* PyTorch's float arithmetic, not exact rationals: in 2 -> out 82, the
     * float scale 2/82 rounds down and 41 * scale = 0.99999994 floors to 0,
     * where floor(41*2/82) = 1 */
    sb_interp_nearest(NULL, x, 1, 1, 2, y, 1, 82);
    assert_true(y[40] == 0.0f && y[41] == 0.0f && y[42] == 1.0f);
    /* 2D: rows and columns independently */
    float img[6] = {1, 2, 3, 4, 5, 6}; /* 2 x 3 */
    float out[5 * 4];
    sb_interp_nearest(NULL, img, 1, 2, 3, out, 5, 4);
    for (int oy = 0; oy < 5; oy++)
        for (int ox = 0; ox < 4; ox++) {
            int iy = (int)floorf((float)oy * (2.0f / 5.0f)), ix = (int)floorf((float)ox * (3.0f / 4.0f));
            assert_true(out[oy * 4 + ox] == img[iy * 3 + ix]);
        }
    free(x);
    free(y);
    check_fixture_upsample("medsam2_step0.h5", 1);
}

/* ---- bicubic ---------------------------------------------------------------- */

/* Keys' cubic convolution kernel with A = -0.75, as a function of distance. */
static double keys(double s)
{
    const double A = -0.75;
    s = fabs(s);
    if (s <= 1)
        return (A + 2) * s * s * s - (A + 3) * s * s + 1;
    if (s < 2)
        return A * s * s * s - 5 * A * s * s + 8 * A * s - 4 * A;
    return 0;
}

/* Independent 1-D bicubic: weights from the distance of each tap to the
 * (unclamped) source coordinate; taps clamped to the border. */
static double ref_cubic_1d(const double *row, int64_t stride, int64_t in, int64_t out, int64_t d)
{
    double src = ((double)d + 0.5) * ref_scale(in, out) - 0.5;
    int64_t i = (int64_t)floor(src);
    double v = 0;
    for (int64_t k = i - 1; k <= i + 2; k++) {
        int64_t kc = k < 0 ? 0 : (k > in - 1 ? in - 1 : k);
        v += keys(src - (double)k) * row[kc * stride];
    }
    return v;
}

static void ref_bicubic(const float *x, int64_t P, int64_t H, int64_t W, float *y, int64_t OH,
                        int64_t OW)
{
    double *xd = malloc((size_t)(H * W) * sizeof(double));
    double *tmp = malloc((size_t)(H * OW) * sizeof(double));
    for (int64_t p = 0; p < P; p++) {
        for (int64_t i = 0; i < H * W; i++)
            xd[i] = x[p * H * W + i];
        for (int64_t iy = 0; iy < H; iy++)
            for (int64_t ox = 0; ox < OW; ox++)
                tmp[iy * OW + ox] = ref_cubic_1d(xd + iy * W, 1, W, OW, ox);
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++)
                y[(p * OH + oy) * OW + ox] = (float)ref_cubic_1d(tmp + ox, OW, H, OH, oy);
    }
    free(xd);
    free(tmp);
}

static void test_bicubic_hand(void **state)
{
    (void)state;
    /* 8 -> 4 along W: src = 2d + 0.5, t = 0.5, weights W(1.5), W(0.5), W(0.5),
     * W(1.5) = -0.09375, 0.59375, 0.59375, -0.09375 (exact dyadics). On x = i^2:
     * d = 1 (taps 1..4): -0.09375*(1+16) + 0.59375*(4+9) = 6.125;
     * d = 0 (taps -1..2 clamped to 0,0,1,2): 0.59375*1 - 0.09375*4 = 0.21875. */
    float x[8], y[4];
    for (int i = 0; i < 8; i++)
        x[i] = (float)(i * i);
    sb_interp_bicubic(NULL, x, 1, 1, 8, y, 1, 4);
    assert_float_equal(y[0], 0.21875f, 1e-6);
    assert_float_equal(y[1], 6.125f, 1e-6);
    /* d = 3: taps 5,6,7,8->7: -0.09375*(25+49) + 0.59375*(36+49) = 43.53125 */
    assert_float_equal(y[3], 43.53125f, 1e-5);
    /* same size: identity (t = 0 -> weights 0,1,0,0) */
    float z[8];
    sb_interp_bicubic(NULL, x, 1, 1, 8, z, 1, 8);
    assert_memory_equal(z, x, sizeof x);
    /* a constant stays constant (weights sum to 1) */
    float c[7 * 7], cu[30 * 20];
    for (int i = 0; i < 49; i++)
        c[i] = 0.75f;
    sb_interp_bicubic(NULL, c, 1, 7, 7, cu, 30, 20);
    for (int i = 0; i < 600; i++)
        assert_float_equal(cu[i], 0.75f, 1e-6);
}

/* 7 -> 256 (the Hiera window-background pos embed, MODEL.md 2.2.2), against
 * weights derived independently in double from the kernel formula. */
static void test_bicubic_7_to_256(void **state)
{
    (void)state;
    const int64_t P = 3, H = 7, W = 7, OH = 256, OW = 256;
    float *x = malloc((size_t)(P * H * W) * sizeof(float));
    float *y = malloc((size_t)(P * OH * OW) * sizeof(float)), *ref = malloc((size_t)(P * OH * OW) * sizeof(float));
    fill_uniform(x, (size_t)(P * H * W), 77, -1.0f, 1.0f);
    sb_interp_bicubic(NULL, x, P, H, W, y, OH, OW);
    ref_bicubic(x, P, H, W, ref, OH, OW);
    cmp_stats s = compare_f32("bicubic 7x7 -> 256x256", y, ref, (size_t)(P * OH * OW));
    assert_true(s.max_abs <= 1e-5);
    /* one output spelled out: d = 100 -> src = 100.5*7/256 - 0.5 = 2.248046875,
     * taps 1..4 at distances 1.248046875, 0.248046875, 0.751953125, 1.751953125 */
    double src = 100.5 * 7.0 / 256.0 - 0.5;
    assert_true(src == 2.248046875);
    double w1 = keys(1.248046875), w2 = keys(0.248046875), w3 = keys(0.751953125), w4 = keys(1.751953125);
    assert_float_equal(w1 + w2 + w3 + w4, 1.0, 1e-12);
    float row[7] = {0, 0, 0, 0, 0, 0, 0}, out[256];
    row[1] = 1.0f; /* impulse at tap 1 */
    sb_interp_bicubic(NULL, row, 1, 1, 7, out, 1, 256);
    assert_float_equal(out[100], w1, 1e-6);
    row[1] = 0.0f;
    row[3] = 1.0f;
    sb_interp_bicubic(NULL, row, 1, 1, 7, out, 1, 256);
    assert_float_equal(out[100], w3, 1e-6);
    /* other sizes: up, down, odd, 1-element */
    const int64_t cases[][5] = {{2, 5, 9, 13, 4}, {1, 1, 1, 3, 5}, {1, 12, 7, 5, 21}, {2, 4, 4, 1, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t p = cases[c][0], h = cases[c][1], w = cases[c][2], oh = cases[c][3], ow = cases[c][4];
        float *a = malloc((size_t)(p * h * w) * sizeof(float));
        float *b = malloc((size_t)(p * oh * ow) * sizeof(float)), *r = malloc((size_t)(p * oh * ow) * sizeof(float));
        fill_uniform(a, (size_t)(p * h * w), 90 + c, -1.0f, 1.0f);
        sb_interp_bicubic(NULL, a, p, h, w, b, oh, ow);
        ref_bicubic(a, p, h, w, r, oh, ow);
        char label[96];
        snprintf(label, sizeof label, "bicubic %lldx%lld -> %lldx%lld", (long long)h, (long long)w,
                 (long long)oh, (long long)ow);
        cmp_stats st = compare_f32(label, b, r, (size_t)(p * oh * ow));
        assert_true(st.max_abs <= 1e-5);
        free(a);
        free(b);
        free(r);
    }
    free(x);
    free(y);
    free(ref);
}

/* The Hiera positional embedding of the golden files (MODEL.md 2.2.2):
 * encoder/trunk/pos_embed (1,H0,W0,C) NHWC = bicubic(pos_embed [1,C,7,7] ->
 * H0 x W0) + pos_embed_window [1,C,ws,ws] tiled, from the checkpoint's raw
 * parameters. Tolerance: 16 ulp of the largest value. Each side rounds
 * about 9 times (4 horizontal products summed, 4 vertical, the window add)
 * at intermediates up to 1.4 max|x| (the negative cubic weights let partial
 * sums exceed the result), <= 0.5 ulp each, in a different order than
 * ATen's (FMA, evaluation order): ~6.3 ulp per side. Measured: ~8 ulp. */
static void check_pos_embed(const char *ckpt, const char *golden)
{
    sb_error err;
    sb_weights *w;
    assert_sb_ok(err, sb_weights_load(&w, fixture_path(ckpt), &err));
    int nd;
    int64_t sp[SB_MAX_DIMS], sw[SB_MAX_DIMS];
    assert_sb_ok(err, sb_weights_shape(w, "image_encoder.trunk.pos_embed", &nd, sp, &err));
    assert_int_equal(nd, 4);
    assert_sb_ok(err, sb_weights_shape(w, "image_encoder.trunk.pos_embed_window", &nd, sw, &err));
    const float *pe = sb_weights_get(w, "image_encoder.trunk.pos_embed", 4, sp, &err);
    const float *win = sb_weights_get(w, "image_encoder.trunk.pos_embed_window", 4, sw, &err);
    assert_non_null(pe);
    assert_non_null(win);
    sb_h5 *f;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path(golden), SB_H5_READ, &err));
    float *ref;
    int64_t sr[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "encoder/trunk/pos_embed", &ref, &nd, sr, &err));
    int64_t C = sp[1], H0 = sr[1], W0 = sr[2], ws = sw[2];
    assert_int_equal(sr[3], C);
    float *P = malloc((size_t)(C * H0 * W0) * sizeof(float)), *nhwc = malloc((size_t)(C * H0 * W0) * sizeof(float));
    sb_interp_bicubic(NULL, pe, C, sp[2], sp[3], P, H0, W0);
    for (int64_t c = 0; c < C; c++)
        for (int64_t y = 0; y < H0; y++)
            for (int64_t x = 0; x < W0; x++)
                nhwc[(y * W0 + x) * C + c] =
                    P[(c * H0 + y) * W0 + x] + win[(c * ws + y % ws) * sw[3] + x % sw[3]];
    char label[128];
    snprintf(label, sizeof label, "%s pos_embed %lldx%lld -> %lldx%lld", golden, (long long)sp[2],
             (long long)sp[3], (long long)H0, (long long)W0);
    cmp_stats st = compare_f32(label, nhwc, ref, (size_t)(C * H0 * W0));
    assert_true(st.max_abs <= 16.0 * 0x1p-24 * st.max_ref);
    free(P);
    free(nhwc);
    free(ref);
    sb_h5_close(f);
    sb_weights_free(w);
}

static void test_pos_embed_fixtures(void **state)
{
    (void)state;
    check_pos_embed("samed2_tiny.pth", "samed2_step0.h5");
    check_pos_embed("sam2_tiny.pth", "sam2_step0.h5");
}

/* Threaded runs give the same bytes as serial ones. */
static void test_interp_threads(void **state)
{
    (void)state;
    sb_error err;
    sb_ctx *ctx;
    assert_sb_ok(err, sb_ctx_create(&ctx, 2, &err));
    const int64_t P = 2, H = 37, W = 300, OH = 150, OW = 601;
    float *x = malloc((size_t)(P * H * W) * sizeof(float));
    float *a = malloc((size_t)(P * OH * OW) * sizeof(float)), *b = malloc((size_t)(P * OH * OW) * sizeof(float));
    fill_uniform(x, (size_t)(P * H * W), 5, -1.0f, 1.0f);
    void (*fns[3])(sb_ctx *, const float *, int64_t, int64_t, int64_t, float *, int64_t, int64_t) = {
        sb_interp_bilinear, sb_interp_nearest, sb_interp_bicubic};
    for (int k = 0; k < 3; k++) {
        fns[k](NULL, x, P, H, W, a, OH, OW);
        fns[k](ctx, x, P, H, W, b, OH, OW);
        assert_memory_equal(a, b, (size_t)(P * OH * OW) * sizeof(float));
    }
    sb_ctx_free(ctx);
    free(x);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bilinear_2x2_to_4x4), cmocka_unit_test(test_bilinear_256_to_1024_pattern),
        cmocka_unit_test(test_bilinear_random),     cmocka_unit_test(test_bilinear_fixtures),
        cmocka_unit_test(test_nearest),             cmocka_unit_test(test_bicubic_hand),
        cmocka_unit_test(test_bicubic_7_to_256),    cmocka_unit_test(test_pos_embed_fixtures),
        cmocka_unit_test(test_interp_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
