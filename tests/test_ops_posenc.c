/*
 * Positional encodings (core/ops_posenc.c; MODEL.md 2.2.7, 2.3, 2.6,
 * pitfalls 11-13) against double-precision formulas written here, and the
 * sine encoding against the PyTorch fixtures (it is a pure function of the
 * shape: encoder/vision_pos_enc_i with F = 32 and memory_encoder/
 * vision_pos_enc with F = 16, 12x12 .. 48x48 maps).
 *
 * Tolerances: sin/cos of a float argument are within 1 ulp; the error comes
 * from rounding the argument to float, about 3 ulp of its magnitude |a|
 * (a product, a quotient and a power, each rounded once). Hence per element
 * |got - ref| <= 1e-6 + 4 * 2^-24 * |a|: for the sine PE |a| <= 2 pi
 * (~2.5e-6), for RoPE angles up to 63 rad (~1.6e-5). A wrong channel,
 * frequency or pairing errs by O(0.1..1).
 */
#include "util_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U24 (1.0 / 16777216.0)

static double arg_tol(double a) { return 1e-6 + 4.0 * U24 * fabs(a); }

/* ---- sine ---------------------------------------------------------------- */

/* Channel c of the sine PE at (y, x) and its argument, in double. */
static double ref_sine(int64_t F, int64_t H, int64_t W, int64_t c, int64_t y, int64_t x, double *arg)
{
    int64_t npf = F / 2, j = c < npf ? c : c - npf;
    double e = c < npf ? (double)(y + 1) / ((double)H + 1e-6) * 2 * M_PI
                       : (double)(x + 1) / ((double)W + 1e-6) * 2 * M_PI;
    double a = e / pow(10000.0, 2.0 * (double)(j / 2) / (double)npf);
    *arg = a;
    return j % 2 == 0 ? sin(a) : cos(a);
}

static void test_sine_formula(void **state)
{
    (void)state;
    const int64_t cases[][3] = {{256, 64, 64}, {64, 64, 64}, {32, 12, 12}, {16, 5, 9}, {2, 1, 1}, {8, 3, 1}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t F = cases[k][0], H = cases[k][1], W = cases[k][2];
        float *pe = malloc((size_t)(F * H * W) * sizeof(float));
        sb_pe_sine(pe, F, H, W);
        double worst = 0;
        for (int64_t c = 0; c < F; c++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++) {
                    double a, r = ref_sine(F, H, W, c, y, x, &a);
                    double e = fabs(pe[(c * H + y) * W + x] - r);
                    if (e > arg_tol(a))
                        fail_msg("sine F%lld %lldx%lld c%lld y%lld x%lld: got %.9g want %.9g", (long long)F,
                                 (long long)H, (long long)W, (long long)c, (long long)y, (long long)x,
                                 (double)pe[(c * H + y) * W + x], r);
                    worst = e > worst ? e : worst;
                }
        printf("  sine F=%-4lld %3lldx%-3lld max_abs=%.3e\n", (long long)F, (long long)H, (long long)W, worst);
        free(pe);
    }
    /* layout spelled out for F = 4 (npf 2, dim_t = 1, 1) on 2 x 3:
     * ch0 = sin(ey), ch1 = cos(ey), ch2 = sin(ex), ch3 = cos(ex),
     * ey = (y+1)/(2+1e-6) * 2pi, ex = (x+1)/(3+1e-6) * 2pi (the 1e-6 matters:
     * sin(ey) at y = 1 is -3.1e-6, not 0) */
    float p[4 * 6];
    sb_pe_sine(p, 4, 2, 3);
    assert_true(p[0 * 6 + 1 * 3] < -2e-6); /* the +1e-6 of the normalisation is kept */
    for (int y = 0; y < 2; y++)
        for (int x = 0; x < 3; x++) {
            double ey = (y + 1) / (2.0 + 1e-6) * 2 * M_PI, ex = (x + 1) / (3.0 + 1e-6) * 2 * M_PI;
            assert_float_equal(p[0 * 6 + y * 3 + x], sin(ey), 1e-6);
            assert_float_equal(p[1 * 6 + y * 3 + x], cos(ey), 2e-6);
            assert_float_equal(p[2 * 6 + y * 3 + x], sin(ex), 2e-6);
            assert_float_equal(p[3 * 6 + y * 3 + x], cos(ex), 2e-6);
        }
}

static void check_sine_fixture(const char *file, const char *name)
{
    sb_error err;
    sb_h5 *f;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path(file), SB_H5_READ, &err));
    float *ref;
    int nd;
    int64_t s[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, name, &ref, &nd, s, &err));
    assert_int_equal(nd, 4);
    int64_t F = s[1], H = s[2], W = s[3], n = F * H * W;
    float *pe = malloc((size_t)n * sizeof(float));
    sb_pe_sine(pe, F, H, W);
    for (int64_t b = 0; b < s[0]; b++) { /* the same map for every batch element */
        char label[128];
        snprintf(label, sizeof label, "%s %s[%lld]", file, name, (long long)b);
        cmp_stats st = compare_f32(label, pe, ref + b * n, (size_t)n);
        assert_true(st.max_abs <= 2e-6);
    }
    free(pe);
    free(ref);
    sb_h5_close(f);
}

static void test_sine_fixtures(void **state)
{
    (void)state;
    check_sine_fixture("sam2_step0.h5", "encoder/vision_pos_enc_0");
    check_sine_fixture("sam2_step0.h5", "encoder/vision_pos_enc_1");
    check_sine_fixture("sam2_step0.h5", "encoder/vision_pos_enc_2");
    check_sine_fixture("samed2_step0.h5", "encoder/vision_pos_enc_2");
    check_sine_fixture("samed2_step0.h5", "memory_encoder/vision_pos_enc");
    check_sine_fixture("medsam2_step0.h5", "memory_encoder/vision_pos_enc");
}

/* ---- random Fourier ---------------------------------------------------------- */

static void test_random_fourier(void **state)
{
    (void)state;
    const int64_t npf = 37, n = 11;
    float G[2 * 37], uv[2 * 11], out[11 * 74];
    fill_uniform(G, 2 * npf, 3, -3.0f, 3.0f); /* the buffer is N(0,1): |G| <= 3 covers it */
    fill_uniform(uv, 2 * n, 4, 0.0f, 1.0f);
    uv[0] = 0.0f; /* corners of the range */
    uv[1] = 1.0f;
    sb_pe_random_fourier(G, npf, uv, n, out);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < npf; j++) {
            /* c = 2 pi ((2u-1) G[0,j] + (2v-1) G[1,j]); [sin(c) | cos(c)] (MODEL.md 2.3) */
            double c = 2 * M_PI * ((2.0 * uv[2 * i] - 1) * G[j] + (2.0 * uv[2 * i + 1] - 1) * G[npf + j]);
            double tol = arg_tol(2 * M_PI * (fabs(G[j]) + fabs(G[npf + j])));
            assert_float_equal(out[i * 2 * npf + j], sin(c), tol);
            assert_float_equal(out[i * 2 * npf + npf + j], cos(c), tol);
        }
}

static void test_dense_grid(void **state)
{
    (void)state;
    const int64_t npf = 16, H = 5, W = 7;
    float G[32], *pe = malloc((size_t)(2 * npf * H * W) * sizeof(float)), pt[32];
    fill_uniform(G, 32, 8, -2.5f, 2.5f);
    sb_pe_dense_grid(G, npf, H, W, pe);
    for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
            /* pixel centres: u = (x + 0.5)/W, v = (y + 0.5)/H; channel-first output */
            float uv[2] = {(float)((x + 0.5) / W), (float)((y + 0.5) / H)};
            sb_pe_random_fourier(G, npf, uv, 1, pt);
            for (int64_t c = 0; c < 2 * npf; c++) {
                int64_t j = c % npf;
                double a = 2 * M_PI * ((2 * uv[0] - 1) * G[j] + (2 * uv[1] - 1) * G[npf + j]);
                double r = c < npf ? sin(a) : cos(a);
                double tol = arg_tol(2 * M_PI * (fabs(G[j]) + fabs(G[npf + j])));
                assert_float_equal(pe[(c * H + y) * W + x], r, tol);
                assert_float_equal(pe[(c * H + y) * W + x], pt[c], tol); /* same as the point path */
            }
        }
    free(pe);
}

/* The prompt encoder's dense PE and box embedding in the golden files
 * (MODEL.md 2.3, pitfall 13) from the checkpoint's gaussian matrix:
 * prompt_encoder/dense_pe (1,C,h,w) and prompt_encoder/sparse (B,2,C) =
 * PE((x+0.5)/S, (y+0.5)/S) of both box corners + point_embeddings.2/.3.
 * Same tolerance model as above with |a| <= 2 pi (|G0|+|G1|). */
static void check_prompt_pe(const char *ckpt, const char *golden)
{
    sb_error err;
    sb_weights *w;
    assert_sb_ok(err, sb_weights_load(&w, fixture_path(ckpt), &err));
    const char *gk = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix";
    int nd;
    int64_t sg[SB_MAX_DIMS];
    assert_sb_ok(err, sb_weights_shape(w, gk, &nd, sg, &err));
    assert_int_equal(nd, 2);
    assert_int_equal(sg[0], 2);
    const float *G = sb_weights_get(w, gk, 2, sg, &err);
    assert_non_null(G);
    int64_t npf = sg[1], C = 2 * npf;
    double gmax = 0;
    for (int64_t j = 0; j < npf; j++)
        gmax = fmax(gmax, fabs(G[j]) + fabs(G[npf + j]));
    double tol = arg_tol(2 * M_PI * gmax);

    sb_h5 *f;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path(golden), SB_H5_READ, &err));
    float *dense, *sparse, *boxes;
    int64_t sd[SB_MAX_DIMS], ss[SB_MAX_DIMS], sb[SB_MAX_DIMS], si[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "prompt_encoder/dense_pe", &dense, &nd, sd, &err));
    assert_int_equal(sd[1], C);
    float *pe = malloc((size_t)(C * sd[2] * sd[3]) * sizeof(float));
    sb_pe_dense_grid(G, npf, sd[2], sd[3], pe);
    char label[128];
    snprintf(label, sizeof label, "%s dense_pe %lldx%lld", golden, (long long)sd[2], (long long)sd[3]);
    cmp_stats st = compare_f32(label, pe, dense, (size_t)(C * sd[2] * sd[3]));
    assert_true(st.max_abs <= tol);

    assert_sb_ok(err, sb_h5_read_f32(f, "prompt_encoder/sparse", &sparse, &nd, ss, &err));
    assert_sb_ok(err, sb_h5_read_f32(f, "prompt_encoder/boxes", &boxes, &nd, sb, &err));
    assert_sb_ok(err, sb_h5_shape(f, "input/image", &nd, si, &err));
    int64_t B = ss[0], S_h = si[2], S_w = si[3];
    int64_t se[2] = {1, C};
    const float *pt2 = sb_weights_get(w, "sam_prompt_encoder.point_embeddings.2.weight", 2, se, &err);
    const float *pt3 = sb_weights_get(w, "sam_prompt_encoder.point_embeddings.3.weight", 2, se, &err);
    assert_non_null(pt2);
    assert_non_null(pt3);
    float *emb = malloc((size_t)(B * 2 * C) * sizeof(float));
    for (int64_t b = 0; b < B; b++) {
        const float *bx = boxes + b * 4;
        /* corners (x0,y0), (x1,y1), +0.5 pixel centre, x / width, y / height */
        float uv[4] = {(bx[0] + 0.5f) / (float)S_w, (bx[1] + 0.5f) / (float)S_h,
                       (bx[2] + 0.5f) / (float)S_w, (bx[3] + 0.5f) / (float)S_h};
        sb_pe_random_fourier(G, npf, uv, 2, emb + b * 2 * C);
        for (int64_t c = 0; c < C; c++) {
            emb[(b * 2 + 0) * C + c] += pt2[c];
            emb[(b * 2 + 1) * C + c] += pt3[c];
        }
    }
    snprintf(label, sizeof label, "%s sparse (box corners)", golden);
    st = compare_f32(label, emb, sparse, (size_t)(B * 2 * C));
    assert_true(st.max_abs <= tol + 1e-6);
    free(pe);
    free(emb);
    free(dense);
    free(sparse);
    free(boxes);
    sb_h5_close(f);
    sb_weights_free(w);
}

static void test_prompt_pe_fixtures(void **state)
{
    (void)state;
    check_prompt_pe("samed2_tiny.pth", "samed2_step0.h5");
    check_prompt_pe("sam2_tiny.pth", "sam2_step0.h5");
}

/* ---- axial RoPE ---------------------------------------------------------------- */

static void test_rope_table(void **state)
{
    (void)state;
    /* dim 256 on 64x64 (memory attention, MODEL.md 2.6): f_j = 10000^(-j/64) */
    const int64_t dim = 256, ex = 64, ey = 64, half = 128, n = ex * ey;
    float *ct = malloc((size_t)(n * half) * sizeof(float)), *st = malloc((size_t)(n * half) * sizeof(float));
    sb_rope_axial_table(dim, ex, ey, 10000.0f, ct, st);
    double worst = 0;
    for (int64_t pos = 0; pos < n; pos++)
        for (int64_t m = 0; m < half; m++) {
            double tx = (double)(pos % ex), ty = (double)(pos / ex);
            double f = pow(10000.0, -(double)(m % 64) / 64.0);
            double a = (m < 64 ? tx : ty) * f;
            double ec = fabs(ct[pos * half + m] - cos(a)), es = fabs(st[pos * half + m] - sin(a));
            if (ec > arg_tol(a) || es > arg_tol(a))
                fail_msg("rope pos %lld pair %lld: cos %.9g/%.9g sin %.9g/%.9g", (long long)pos,
                         (long long)m, (double)ct[pos * half + m], cos(a), (double)st[pos * half + m], sin(a));
            worst = ec > worst ? ec : worst;
            worst = es > worst ? es : worst;
        }
    printf("  rope 256 on 64x64: max_abs=%.3e\n", worst);
    /* spot values: position n = 64*1 + 3 (x = 3, y = 1) */
    int64_t p = 64 + 3;
    assert_float_equal(ct[p * half + 0], cos(3.0), 1e-6);          /* x pair 0: f = 1 */
    assert_float_equal(st[p * half + 64], sin(1.0), 1e-6);         /* y pair 0 */
    assert_float_equal(st[p * half + 64 + 32], sin(0.01), 1e-7);   /* y, f_32 = 10000^-0.5 */
    assert_float_equal(ct[0], 1.0f, 0);                            /* position 0: identity */
    free(ct);
    free(st);
    /* a non-square grid, pos = y*end_x + x; dim 16: f_j = 100^(-4j/16), j < 4,
     * pairs 0..3 carry x, 4..7 carry y */
    float c3[6 * 8], s3[6 * 8];
    sb_rope_axial_table(16, 3, 2, 100.0f, c3, s3);
    for (int64_t pos = 0; pos < 6; pos++)
        for (int64_t m = 0; m < 8; m++) {
            double a = (m < 4 ? (double)(pos % 3) : (double)(pos / 3)) * pow(100.0, -4.0 * (m % 4) / 16.0);
            assert_float_equal(c3[pos * 8 + m], cos(a), 2e-6);
            assert_float_equal(s3[pos * 8 + m], sin(a), 2e-6);
        }
}

static void test_rope_apply(void **state)
{
    (void)state;
    const int64_t dim = 16, half = 8, ex = 3, ey = 2, T = ex * ey, L = 15, ld = 19;
    float ct[6 * 8], st[6 * 8];
    sb_rope_axial_table(dim, ex, ey, 10000.0f, ct, st);
    float *x = malloc((size_t)(L * ld) * sizeof(float)), *orig = malloc((size_t)(L * ld) * sizeof(float));
    fill_uniform(x, (size_t)(L * ld), 12, -1.0f, 1.0f);
    memcpy(orig, x, (size_t)(L * ld) * sizeof(float));
    /* keys longer than the table: row l uses position l mod T (rope_k_repeat, MODEL.md 2.6) */
    sb_rope_apply(x, L, dim, ld, ct, st, T);
    for (int64_t l = 0; l < L; l++) {
        int64_t pos = l % T;
        for (int64_t m = 0; m < half; m++) {
            double a = (m < 4 ? (double)(pos % ex) : (double)(pos / ex)) * pow(10000.0, -4.0 * (m % 4) / 16.0);
            double re = orig[l * ld + 2 * m], im = orig[l * ld + 2 * m + 1];
            /* (re + i im) * (cos a + i sin a), adjacent channels (2m, 2m+1) */
            assert_float_equal(x[l * ld + 2 * m], re * cos(a) - im * sin(a), 4e-6);
            assert_float_equal(x[l * ld + 2 * m + 1], re * sin(a) + im * cos(a), 4e-6);
        }
        for (int64_t c = dim; c < ld; c++) /* the rest of the row is untouched */
            assert_true(x[l * ld + c] == orig[l * ld + c]);
    }
    /* norm of every pair is preserved */
    for (int64_t l = 0; l < L; l++)
        for (int64_t m = 0; m < half; m++) {
            double n0 = hypot(orig[l * ld + 2 * m], orig[l * ld + 2 * m + 1]);
            double n1 = hypot(x[l * ld + 2 * m], x[l * ld + 2 * m + 1]);
            assert_float_equal(n0, n1, 2e-6);
        }
    free(x);
    free(orig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sine_formula), cmocka_unit_test(test_sine_fixtures),
        cmocka_unit_test(test_random_fourier), cmocka_unit_test(test_dense_grid),
        cmocka_unit_test(test_prompt_pe_fixtures),
        cmocka_unit_test(test_rope_table),   cmocka_unit_test(test_rope_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
