/*
 * Convolutions, ConvTranspose 2x2, Conv3d 3x3x3, max-pool and window
 * partition (core/ops_conv.c) against naive double-precision references.
 *
 * Tolerance for the accumulating ops (conv2d, conv transpose, conv3d): every
 * output element must satisfy
 *     |got - ref| <= gamma_n * sum_i |w_i x_i| (+ |bias|),  gamma_n = 1.05 n u,
 * with n the number of terms summed (K + 1 with the bias) and u = 2^-24.
 * This is the classical worst-case bound of float summation in ANY order
 * (Higham, Accuracy and Stability, 3.1), so it holds for OpenBLAS's blocked
 * GEMM and FMA alike, while an indexing mistake (a missing, extra or wrong
 * term) gives an error of the size of one term, |w x| ~ sum/n, which is far
 * above the bound for n <= ~4000 (all shapes here). The maximum of
 * err/bound is printed. Data movement (pool, window partition) must be exact.
 */
#include "util_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U24 (1.0 / 16777216.0)

static float *rnd(size_t n, uint64_t seed)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    fill_uniform(p, n, seed, -1.0f, 1.0f);
    return p;
}

/* Checks got against (ref, absum) with the summation bound for n terms. */
static void check_bound(const char *label, const float *got, const double *ref, const double *absum,
                        size_t count, int64_t nterms)
{
    double worst = 0, max_abs = 0;
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < count; i++) {
        double e = fabs((double)got[i] - ref[i]);
        double bound = 1.05 * (double)nterms * U24 * absum[i] + 1e-30;
        if (!(e <= bound)) {
            if (!bad)
                first_bad = i;
            bad++;
        }
        if (e / bound > worst)
            worst = e / bound;
        if (e > max_abs)
            max_abs = e;
    }
    printf("  %-44s n=%-8zu terms=%-5lld max_abs=%.2e max err/bound=%.3f\n", label, count,
           (long long)nterms, max_abs, worst);
    if (bad)
        fail_msg("%s: %zu of %zu elements exceed the bound; first at %zu: got %.9g ref %.9g", label,
                 bad, count, first_bad, (double)got[first_bad], ref[first_bad]);
}

/* ---- conv2d ------------------------------------------------------------ */

typedef struct {
    int64_t B, Cin, H, W, Cout;
    int kh, kw, stride, pad, groups;
} cfg2d;

static void ref_conv2d(const cfg2d *c, const float *x, const float *w, const float *b, double *ref,
                       double *absum)
{
    int64_t OH = (c->H + 2 * c->pad - c->kh) / c->stride + 1;
    int64_t OW = (c->W + 2 * c->pad - c->kw) / c->stride + 1;
    int64_t Cg = c->Cin / c->groups, Cog = c->Cout / c->groups;
    for (int64_t n = 0; n < c->B; n++)
        for (int64_t co = 0; co < c->Cout; co++) {
            int64_t g = co / Cog;
            for (int64_t oy = 0; oy < OH; oy++)
                for (int64_t ox = 0; ox < OW; ox++) {
                    double s = b ? b[co] : 0.0, a = b ? fabs(b[co]) : 0.0;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int ky = 0; ky < c->kh; ky++)
                            for (int kx = 0; kx < c->kw; kx++) {
                                int64_t iy = oy * c->stride - c->pad + ky;
                                int64_t ix = ox * c->stride - c->pad + kx;
                                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W)
                                    continue;
                                double xv = x[((n * c->Cin + g * Cg + ci) * c->H + iy) * c->W + ix];
                                double wv = w[((co * Cg + ci) * c->kh + ky) * c->kw + kx];
                                s += xv * wv;
                                a += fabs(xv * wv);
                            }
                    size_t o = (size_t)(((n * c->Cout + co) * OH + oy) * OW + ox);
                    ref[o] = s;
                    absum[o] = a;
                }
        }
}

static void run_conv2d_case(sb_ctx *ctx, const cfg2d *c, int with_bias, int use_arena, uint64_t seed)
{
    int64_t OH = sb_conv_out_size(c->H, c->kh, c->stride, c->pad);
    int64_t OW = sb_conv_out_size(c->W, c->kw, c->stride, c->pad);
    assert_true(OH > 0 && OW > 0);
    size_t nx = (size_t)(c->B * c->Cin * c->H * c->W);
    size_t nw = (size_t)(c->Cout * (c->Cin / c->groups) * c->kh * c->kw);
    size_t ny = (size_t)(c->B * c->Cout * OH * OW);
    float *x = rnd(nx, seed), *w = rnd(nw, seed + 1), *b = with_bias ? rnd((size_t)c->Cout, seed + 2) : NULL;
    float *y = malloc(ny * sizeof(float));
    double *ref = malloc(ny * sizeof(double)), *absum = malloc(ny * sizeof(double));
    for (size_t i = 0; i < ny; i++)
        y[i] = NAN; /* every output must be written */
    ref_conv2d(c, x, w, b, ref, absum);

    sb_error err;
    sb_arena *arena = NULL;
    size_t need = sb_conv2d_scratch_bytes(c->B, c->Cin, c->H, c->W, c->Cout, c->kh, c->kw,
                                          c->stride, c->pad, c->groups);
    if (use_arena) {
        assert_sb_ok(err, sb_arena_create(&arena, need + 256, &err));
        (void)sb_arena_alloc(arena, 64); /* scratch must be released back to this mark */
    }
    assert_sb_ok(err, sb_conv2d(ctx, x, c->B, c->Cin, c->H, c->W, w, b, c->Cout, c->kh, c->kw,
                                c->stride, c->pad, c->groups, y, arena, &err));
    if (arena) {
        assert_int_equal(sb_arena_used(arena), 64);
        assert_int_equal(sb_arena_peak(arena), 64 + need); /* the planning figure is exact */
        sb_arena_free(arena);
    }
    char label[160];
    snprintf(label, sizeof label, "conv2d B%lld C%lld %lldx%lld->%lld k%dx%d s%d p%d g%d%s",
             (long long)c->B, (long long)c->Cin, (long long)c->H, (long long)c->W,
             (long long)c->Cout, c->kh, c->kw, c->stride, c->pad, c->groups, with_bias ? " +b" : "");
    check_bound(label, y, ref, absum, ny, (c->Cin / c->groups) * c->kh * c->kw + 1);
    free(x);
    free(w);
    free(b);
    free(y);
    free(ref);
    free(absum);
}

static const cfg2d conv_cases[] = {
    /* B  Cin  H   W  Cout kh kw s  p  g */
    {2, 3, 17, 19, 5, 7, 7, 4, 3, 1},    /* patch-embed-like: k7 s4 p3, odd sizes */
    {1, 3, 64, 48, 9, 16, 16, 16, 0, 1}, /* ViT patchify k16 s16 */
    {1, 4, 9, 9, 16, 3, 3, 2, 1, 1},     /* memory-encoder-like k3 s2 p1 */
    {2, 6, 13, 11, 4, 3, 3, 1, 1, 2},    /* grouped */
    {1, 8, 10, 7, 8, 7, 7, 1, 3, 8},     /* depthwise 7x7 pad 3 (CXBlock) */
    {2, 5, 9, 6, 10, 3, 3, 2, 1, 5},     /* depthwise, multiplier 2, stride 2 */
    {1, 4, 12, 29, 4, 7, 7, 1, 3, 4},    /* depthwise, rows of 8-blocks plus a tail */
    {2, 5, 8, 8, 7, 1, 1, 1, 0, 1},      /* 1x1: plain GEMM */
    {1, 6, 9, 9, 6, 1, 1, 2, 0, 1},      /* 1x1 with stride: im2col */
    {1, 1, 15, 15, 4, 3, 3, 2, 1, 1},    /* a single input channel: direct path */
    {1, 1, 1, 1, 3, 1, 1, 1, 0, 1},      /* 1-element image */
    {1, 2, 5, 5, 3, 5, 5, 1, 0, 1},      /* 1x1 output */
    {1, 3, 4, 6, 2, 3, 3, 3, 2, 1},      /* stride 3, pad 2 */
    {1, 17, 23, 29, 13, 3, 3, 1, 1, 1},  /* non-multiples of the SIMD width */
    {3, 4, 6, 5, 6, 2, 3, 1, 0, 2},      /* rectangular kernel, groups */
    {1, 3, 2, 2, 2, 5, 5, 1, 2, 1},      /* kernel larger than the image */
};

static void test_conv2d_shapes(void **state)
{
    (void)state;
    size_t n = sizeof conv_cases / sizeof conv_cases[0];
    for (size_t i = 0; i < n; i++) {
        run_conv2d_case(NULL, &conv_cases[i], 1, (int)(i % 2), 100 + i * 7);
        run_conv2d_case(NULL, &conv_cases[i], 0, (int)((i + 1) % 2), 200 + i * 7);
    }
}

static void test_conv2d_threads_and_tiles(void **state)
{
    (void)state;
    sb_error err;
    sb_ctx *ctx;
    assert_sb_ok(err, sb_ctx_create(&ctx, 2, &err));
    /* several row tiles: K = 64*9 = 576, OW = 256 -> 589 KB per output row,
     * so a 8 MiB tile holds 14 rows and OH = 40 needs three tiles */
    cfg2d big = {1, 64, 40, 256, 6, 3, 3, 1, 1, 1};
    size_t need = sb_conv2d_scratch_bytes(big.B, big.Cin, big.H, big.W, big.Cout, big.kh, big.kw,
                                          big.stride, big.pad, big.groups);
    size_t full = (size_t)576 * 40 * 256 * 4;
    printf("  tiled im2col: scratch %zu bytes vs %zu for the whole image\n", need, full);
    assert_true(need < full / 2 && need <= ((size_t)8 << 20) + 64);
    run_conv2d_case(ctx, &big, 1, 1, 31);
    run_conv2d_case(ctx, &conv_cases[0], 1, 0, 32);
    run_conv2d_case(ctx, &conv_cases[4], 1, 0, 33);
    run_conv2d_case(ctx, &conv_cases[12], 0, 1, 34);
    sb_ctx_free(ctx);
    /* the bound of the header: at most max(8 MiB, K*OW*4) */
    size_t vitb = sb_conv2d_scratch_bytes(1, 3, 1024, 1024, 768, 16, 16, 16, 0, 1);
    size_t hiera = sb_conv2d_scratch_bytes(1, 3, 1024, 1024, 96, 7, 7, 4, 3, 1);
    size_t menc = sb_conv2d_scratch_bytes(1, 64, 128, 128, 256, 3, 3, 2, 1, 1);
    printf("  scratch at 1024^2: ViT patch %zu, Hiera patch %zu, mask-downsampler k3 %zu bytes\n",
           vitb, hiera, menc);
    assert_true(vitb <= ((size_t)8 << 20) && hiera <= ((size_t)8 << 20) && menc <= ((size_t)8 << 20));
    assert_int_equal(sb_conv2d_scratch_bytes(1, 256, 64, 64, 256, 7, 7, 1, 3, 256), 0);
    assert_int_equal(sb_conv2d_scratch_bytes(1, 256, 64, 64, 64, 1, 1, 1, 0, 1), 0);
}

static void test_conv2d_errors(void **state)
{
    (void)state;
    float x[64] = {0}, w[64] = {0}, y[64];
    sb_error err;
    assert_int_equal(sb_conv2d(NULL, x, 1, 3, 4, 4, w, NULL, 2, 3, 3, 1, 1, 2, y, NULL, &err),
                     SB_EINVAL); /* Cin 3 not a multiple of groups 2 */
    assert_non_null(strstr(err.msg, "groups"));
    assert_int_equal(sb_conv2d(NULL, x, 1, 1, 2, 2, w, NULL, 1, 5, 5, 1, 0, 1, y, NULL, &err),
                     SB_ESHAPE); /* kernel larger than the padded input */
    assert_int_equal(sb_conv2d(NULL, x, 1, 1, 2, 2, w, NULL, 1, 1, 1, 0, 0, 1, y, NULL, &err),
                     SB_EINVAL); /* stride 0 */
    assert_int_equal(sb_conv2d(NULL, NULL, 1, 1, 2, 2, w, NULL, 1, 1, 1, 1, 0, 1, y, NULL, &err),
                     SB_EINVAL);
    assert_int_equal(sb_conv2d(NULL, x, 0, 1, 2, 2, w, NULL, 1, 1, 1, 1, 0, 1, y, NULL, &err),
                     SB_EINVAL);
    /* scratch exhausted: an arena too small for the im2col tile */
    sb_arena *a;
    assert_sb_ok(err, sb_arena_create(&a, 64, &err));
    float xb[2 * 8 * 8] = {0}, wb[3 * 2 * 9] = {0}, yb[3 * 8 * 8];
    assert_int_equal(sb_conv2d(NULL, xb, 1, 2, 8, 8, wb, NULL, 3, 3, 3, 1, 1, 1, yb, a, &err),
                     SB_ENOMEM);
    assert_non_null(strstr(err.msg, "conv2d"));
    assert_int_equal(sb_arena_used(a), 0);
    sb_arena_free(a);
    assert_int_equal(sb_conv_out_size(1024, 7, 4, 3), 256);
    assert_int_equal(sb_conv_out_size(1024, 16, 16, 0), 64);
    assert_int_equal(sb_conv_out_size(1024, 3, 2, 1), 512);
    assert_int_equal(sb_conv_out_size(2, 5, 1, 0), 0);
}

/* Patch embeddings of the golden files: PyTorch's Conv2d on input/image
 * with the checkpoint's weights (Hiera k7 s4 p3, ViT k16 s16), dumped NHWC.
 * Both results carry float summation error, so the bound is doubled:
 * |ours - torch| <= 2 gamma_(K+1) sum|w x|. */
static void check_patch_embed(const char *ckpt, const char *golden, const char *prefix,
                              const char *dset, int k, int stride, int pad)
{
    sb_error err;
    sb_weights *wt;
    assert_sb_ok(err, sb_weights_load(&wt, fixture_path(ckpt), &err));
    char kw[256], kb[256];
    snprintf(kw, sizeof kw, "%s.weight", prefix);
    snprintf(kb, sizeof kb, "%s.bias", prefix);
    int nd;
    int64_t sw[SB_MAX_DIMS], si[SB_MAX_DIMS], so[SB_MAX_DIMS];
    assert_sb_ok(err, sb_weights_shape(wt, kw, &nd, sw, &err));
    assert_int_equal(sw[2], k);
    const float *w = sb_weights_get(wt, kw, 4, sw, &err);
    int64_t sbias[1] = {sw[0]};
    const float *b = sb_weights_get(wt, kb, 1, sbias, &err);
    assert_non_null(w);
    assert_non_null(b);
    sb_h5 *f;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path(golden), SB_H5_READ, &err));
    float *img, *ref_nhwc;
    assert_sb_ok(err, sb_h5_read_f32(f, "input/image", &img, &nd, si, &err));
    assert_sb_ok(err, sb_h5_read_f32(f, dset, &ref_nhwc, &nd, so, &err));
    cfg2d c = {si[0], si[1], si[2], si[3], sw[0], k, k, stride, pad, 1};
    int64_t OH = sb_conv_out_size(c.H, k, stride, pad), OW = sb_conv_out_size(c.W, k, stride, pad);
    assert_int_equal(so[1], OH);
    assert_int_equal(so[2], OW);
    assert_int_equal(so[3], c.Cout);
    size_t ny = (size_t)(c.B * c.Cout * OH * OW);
    float *y = malloc(ny * sizeof(float)), *torch = malloc(ny * sizeof(float));
    double *dref = malloc(ny * sizeof(double)), *absum = malloc(ny * sizeof(double)), *tref = malloc(ny * sizeof(double));
    assert_sb_ok(err, sb_conv2d(NULL, img, c.B, c.Cin, c.H, c.W, w, b, c.Cout, k, k, stride, pad, 1, y,
                                NULL, &err));
    ref_conv2d(&c, img, w, b, dref, absum);
    for (int64_t n = 0; n < c.B; n++) /* NHWC golden -> NCHW */
        for (int64_t o = 0; o < c.Cout; o++)
            for (int64_t p = 0; p < OH * OW; p++) {
                torch[(n * c.Cout + o) * OH * OW + p] = ref_nhwc[(n * OH * OW + p) * c.Cout + o];
                tref[(n * c.Cout + o) * OH * OW + p] = y[(n * c.Cout + o) * OH * OW + p];
            }
    char label[160];
    snprintf(label, sizeof label, "%s %s vs PyTorch", golden, dset);
    /* bound 2 gamma: check ours against torch with twice the terms */
    check_bound(label, torch, tref, absum, ny, 2 * (c.Cin * k * k + 1));
    snprintf(label, sizeof label, "%s %s vs double", golden, dset);
    check_bound(label, y, dref, absum, ny, c.Cin * k * k + 1);
    free(y);
    free(torch);
    free(dref);
    free(absum);
    free(tref);
    free(img);
    free(ref_nhwc);
    sb_h5_close(f);
    sb_weights_free(wt);
}

static void test_conv2d_fixtures(void **state)
{
    (void)state;
    check_patch_embed("samed2_tiny.pth", "samed2_step0.h5", "image_encoder.trunk.patch_embed.proj",
                      "encoder/trunk/patch_embed", 7, 4, 3);
    check_patch_embed("sam2_tiny.pth", "sam2_step0.h5", "image_encoder.trunk.patch_embed.proj",
                      "encoder/trunk/patch_embed", 7, 4, 3);
    check_patch_embed("sam_vit_tiny.pth", "sam_step0.h5", "image_encoder.patch_embed.proj",
                      "encoder/patch_embed", 16, 16, 0);
}

/* ---- ConvTranspose2d k2 s2 ------------------------------------------------ */

static void run_convt_case(sb_ctx *ctx, int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout,
                           int with_bias, int use_arena, uint64_t seed)
{
    size_t nx = (size_t)(B * Cin * H * W), nw = (size_t)(Cin * Cout * 4);
    size_t ny = (size_t)(B * Cout * 4 * H * W);
    float *x = rnd(nx, seed), *w = rnd(nw, seed + 1), *b = with_bias ? rnd((size_t)Cout, seed + 2) : NULL;
    float *y = malloc(ny * sizeof(float));
    double *ref = malloc(ny * sizeof(double)), *absum = malloc(ny * sizeof(double));
    for (int64_t n = 0; n < B; n++)
        for (int64_t o = 0; o < Cout; o++)
            for (int64_t oy = 0; oy < 2 * H; oy++)
                for (int64_t ox = 0; ox < 2 * W; ox++) {
                    double s = b ? b[o] : 0, a = b ? fabs(b[o]) : 0;
                    for (int64_t i = 0; i < Cin; i++) {
                        /* out[o, 2y+dy, 2x+dx] = b[o] + sum_i in[i,y,x] W[i,o,dy,dx] (MODEL.md 2.4) */
                        double t = (double)x[((n * Cin + i) * H + oy / 2) * W + ox / 2] *
                                   w[((i * Cout + o) * 2 + oy % 2) * 2 + ox % 2];
                        s += t;
                        a += fabs(t);
                    }
                    size_t k = (size_t)(((n * Cout + o) * 2 * H + oy) * 2 * W + ox);
                    ref[k] = s;
                    absum[k] = a;
                }
    sb_error err;
    sb_arena *arena = NULL;
    size_t need = sb_conv_transpose2x2_scratch_bytes(Cout, H, W);
    if (use_arena)
        assert_sb_ok(err, sb_arena_create(&arena, need, &err));
    assert_sb_ok(err, sb_conv_transpose2x2(ctx, x, B, Cin, H, W, w, b, Cout, y, arena, &err));
    if (arena) {
        assert_int_equal(sb_arena_peak(arena), need);
        assert_int_equal(sb_arena_used(arena), 0);
        sb_arena_free(arena);
    }
    char label[128];
    snprintf(label, sizeof label, "convT2x2 B%lld %lld->%lld %lldx%lld%s", (long long)B,
             (long long)Cin, (long long)Cout, (long long)H, (long long)W, with_bias ? " +b" : "");
    check_bound(label, y, ref, absum, ny, Cin + 1);
    free(x);
    free(w);
    free(b);
    free(y);
    free(ref);
    free(absum);
}

static void test_conv_transpose(void **state)
{
    (void)state;
    run_convt_case(NULL, 2, 16, 5, 7, 8, 1, 1, 1);
    run_convt_case(NULL, 1, 1, 1, 1, 1, 1, 0, 2);
    run_convt_case(NULL, 1, 9, 3, 11, 3, 0, 1, 3);
    run_convt_case(NULL, 2, 32, 12, 12, 4, 1, 0, 4); /* the decoder's upscaling at the fixture size */
    /* many tiles: Cout*4*W*4 = 1 MiB per input row -> 8 rows per tile, H = 20 */
    run_convt_case(NULL, 1, 3, 20, 2048, 32, 1, 1, 5);
    sb_error err;
    sb_ctx *ctx;
    assert_sb_ok(err, sb_ctx_create(&ctx, 2, &err));
    run_convt_case(ctx, 2, 17, 9, 13, 5, 1, 0, 6);
    sb_ctx_free(ctx);
    float x[4] = {0}, w[4] = {0}, y[16];
    assert_int_equal(sb_conv_transpose2x2(NULL, x, 1, 0, 2, 2, w, NULL, 1, y, NULL, &err), SB_EINVAL);
    sb_arena *a;
    assert_sb_ok(err, sb_arena_create(&a, 64, &err));
    float xb[4 * 16] = {0}, wb[4 * 64] = {0}, yb[64 * 4 * 16];
    assert_int_equal(sb_conv_transpose2x2(NULL, xb, 1, 4, 4, 4, wb, NULL, 64, yb, a, &err), SB_ENOMEM);
    sb_arena_free(a);
}

/* ---- Conv3d 3x3x3 channels-last ---------------------------------------------- */

static void run_conv3d_case(sb_ctx *ctx, int64_t N, int64_t T, int64_t H, int64_t W, int64_t Cin,
                            int64_t Cout, int with_bias, int use_arena, uint64_t seed)
{
    size_t nx = (size_t)(N * T * H * W * Cin), nw = (size_t)(Cout * Cin * 27);
    size_t ny = (size_t)(N * T * H * W * Cout);
    float *x = rnd(nx, seed), *w = rnd(nw, seed + 1), *b = with_bias ? rnd((size_t)Cout, seed + 2) : NULL;
    float *y = malloc(ny * sizeof(float));
    double *ref = malloc(ny * sizeof(double)), *absum = malloc(ny * sizeof(double));
    /* PyTorch Conv3d on [N, C, T, H, W] with padding 1, written on channels-last buffers */
    for (int64_t n = 0; n < N; n++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t ww = 0; ww < W; ww++)
                    for (int64_t o = 0; o < Cout; o++) {
                        double s = b ? b[o] : 0, a = b ? fabs(b[o]) : 0;
                        for (int64_t i = 0; i < Cin; i++)
                            for (int kt = 0; kt < 3; kt++)
                                for (int kh = 0; kh < 3; kh++)
                                    for (int kw = 0; kw < 3; kw++) {
                                        int64_t ti = t + kt - 1, hi = h + kh - 1, wi = ww + kw - 1;
                                        if (ti < 0 || ti >= T || hi < 0 || hi >= H || wi < 0 || wi >= W)
                                            continue;
                                        double v = (double)x[(((n * T + ti) * H + hi) * W + wi) * Cin + i] *
                                                   w[(((o * Cin + i) * 3 + kt) * 3 + kh) * 3 + kw];
                                        s += v;
                                        a += fabs(v);
                                    }
                        size_t k = (size_t)((((n * T + t) * H + h) * W + ww) * Cout + o);
                        ref[k] = s;
                        absum[k] = a;
                    }
    sb_error err;
    sb_arena *arena = NULL;
    size_t need = sb_conv3d_3x3x3_cl_scratch_bytes(N, T, H, W, Cin, Cout);
    if (use_arena)
        assert_sb_ok(err, sb_arena_create(&arena, need, &err));
    assert_sb_ok(err, sb_conv3d_3x3x3_cl(ctx, x, N, T, H, W, Cin, w, b, Cout, y, arena, &err));
    if (arena) {
        assert_int_equal(sb_arena_peak(arena), need);
        sb_arena_free(arena);
    }
    char label[128];
    snprintf(label, sizeof label, "conv3d N%lld T%lld %lldx%lld %lld->%lld%s", (long long)N,
             (long long)T, (long long)H, (long long)W, (long long)Cin, (long long)Cout,
             with_bias ? " +b" : "");
    check_bound(label, y, ref, absum, ny, Cin * 27 + 1);
    free(x);
    free(w);
    free(b);
    free(y);
    free(ref);
    free(absum);
}

static void test_conv3d(void **state)
{
    (void)state;
    run_conv3d_case(NULL, 3, 2, 4, 4, 8, 8, 1, 1, 1);  /* adapter pairs, windowed 4x4 */
    run_conv3d_case(NULL, 1, 2, 5, 3, 7, 5, 0, 0, 2);  /* odd sizes, Cin not a multiple of 8 */
    run_conv3d_case(NULL, 2, 1, 3, 3, 4, 3, 1, 0, 3);  /* T = 1: only the centre time slice */
    run_conv3d_case(NULL, 1, 3, 3, 4, 5, 6, 1, 1, 4);  /* T = 3: a frame with all three slices */
    run_conv3d_case(NULL, 2, 2, 1, 1, 3, 2, 1, 0, 5);  /* 1x1 frames */
    sb_error err;
    sb_ctx *ctx;
    assert_sb_ok(err, sb_ctx_create(&ctx, 2, &err));
    run_conv3d_case(ctx, 4, 2, 6, 6, 32, 32, 1, 1, 6); /* the adapter's 32 -> 32 */
    sb_ctx_free(ctx);
    float x[8] = {0}, w[8] = {0}, y[8];
    assert_int_equal(sb_conv3d_3x3x3_cl(NULL, x, 1, 0, 1, 1, 1, w, NULL, 1, y, NULL, &err), SB_EINVAL);
    sb_arena *a;
    assert_sb_ok(err, sb_arena_create(&a, 128, &err));
    float xb[2 * 4 * 4] = {0}, wb[27 * 4] = {0}, yb[2 * 16 * 2];
    assert_int_equal(sb_conv3d_3x3x3_cl(NULL, xb, 1, 2, 4, 4, 1, wb, NULL, 2, yb, a, &err), SB_ENOMEM);
    assert_non_null(strstr(err.msg, "conv3d"));
    sb_arena_free(a);
}

/* ---- max-pool, window partition ----------------------------------------------- */

static void test_maxpool(void **state)
{
    (void)state;
    const int64_t B = 2, H = 7, W = 9, C = 5, OH = 3, OW = 4;
    float *x = rnd((size_t)(B * H * W * C), 11);
    float y[2 * 3 * 4 * 5];
    x[((0 * H + 2) * W + 3) * C + 1] = NAN; /* inside window (1,1) of image 0, channel 1 */
    x[((1 * H + 6) * W + 8) * C + 0] = NAN; /* last row/col: dropped by the floor */
    sb_maxpool2x2_nhwc(NULL, x, B, H, W, C, y);
    for (int64_t b = 0; b < B; b++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++)
                for (int64_t c = 0; c < C; c++) {
                    float m = -INFINITY;
                    int nan = 0;
                    for (int dy = 0; dy < 2; dy++)
                        for (int dx = 0; dx < 2; dx++) {
                            float v = x[((b * H + 2 * oy + dy) * W + 2 * ox + dx) * C + c];
                            nan |= isnan(v);
                            m = v > m ? v : m;
                        }
                    float got = y[((b * OH + oy) * OW + ox) * C + c];
                    if (nan)
                        assert_true(isnan(got)); /* PyTorch's max_pool2d propagates NaN */
                    else
                        assert_true(got == m);
                }
    assert_true(isnan(y[((0 * OH + 1) * OW + 1) * C + 1]));
    free(x);
}

static void test_window_partition(void **state)
{
    (void)state;
    const int64_t cases[][5] = {{2, 9, 11, 3, 4}, {1, 8, 8, 5, 8}, {1, 12, 12, 8, 14},
                                {3, 5, 7, 1, 2}, {1, 1, 1, 2, 3}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int64_t B = cases[ci][0], H = cases[ci][1], W = cases[ci][2], C = cases[ci][3],
                ws = cases[ci][4];
        int64_t nWy = (H + ws - 1) / ws, nWx = (W + ws - 1) / ws;
        size_t nx = (size_t)(B * H * W * C), nwin = (size_t)(B * nWy * nWx * ws * ws * C);
        float *x = rnd(nx, 40 + ci), *win = malloc(nwin * sizeof(float)), *back = malloc(nx * sizeof(float));
        for (size_t i = 0; i < nwin; i++)
            win[i] = NAN;
        sb_window_partition(NULL, x, B, H, W, C, ws, win);
        for (int64_t b = 0; b < B; b++)
            for (int64_t wy = 0; wy < nWy; wy++)
                for (int64_t wx = 0; wx < nWx; wx++)
                    for (int64_t ry = 0; ry < ws; ry++)
                        for (int64_t rx = 0; rx < ws; rx++)
                            for (int64_t c = 0; c < C; c++) {
                                /* window index b*nWy*nWx + wy*nWx + wx, row-major inside (MODEL.md 2.2.4) */
                                size_t k = (size_t)((((((b * nWy + wy) * nWx + wx) * ws + ry) * ws) + rx) * C + c);
                                int64_t iy = wy * ws + ry, ix = wx * ws + rx;
                                float want = (iy < H && ix < W) ? x[((b * H + iy) * W + ix) * C + c] : 0.0f;
                                assert_true(win[k] == want);
                            }
        for (size_t i = 0; i < nx; i++)
            back[i] = NAN;
        sb_window_unpartition(NULL, win, B, H, W, C, ws, back);
        assert_memory_equal(back, x, nx * sizeof(float));
        free(x);
        free(win);
        free(back);
    }
    /* threaded partition gives the same bytes */
    sb_error err;
    sb_ctx *ctx;
    assert_sb_ok(err, sb_ctx_create(&ctx, 2, &err));
    int64_t B = 2, H = 64, W = 64, C = 24, ws = 14, nW = 25;
    float *x = rnd((size_t)(B * H * W * C), 50);
    float *a = malloc((size_t)(B * nW * ws * ws * C) * sizeof(float));
    float *b2 = malloc((size_t)(B * nW * ws * ws * C) * sizeof(float));
    float *back = malloc((size_t)(B * H * W * C) * sizeof(float));
    sb_window_partition(NULL, x, B, H, W, C, ws, a);
    sb_window_partition(ctx, x, B, H, W, C, ws, b2);
    assert_memory_equal(a, b2, (size_t)(B * nW * ws * ws * C) * sizeof(float));
    sb_window_unpartition(ctx, b2, B, H, W, C, ws, back);
    assert_memory_equal(back, x, (size_t)(B * H * W * C) * sizeof(float));
    sb_ctx_free(ctx);
    free(x);
    free(a);
    free(b2);
    free(back);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_shapes),     cmocka_unit_test(test_conv2d_threads_and_tiles),
        cmocka_unit_test(test_conv2d_errors),     cmocka_unit_test(test_conv2d_fixtures),
        cmocka_unit_test(test_conv_transpose),
        cmocka_unit_test(test_conv3d),            cmocka_unit_test(test_maxpool),
        cmocka_unit_test(test_window_partition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
