/*
 * GEMM, linear layers, elementwise ops, softmax, LayerNorm(2d) and layout
 * changes (core/ops_linear.c) against naive double-precision references, on
 * awkward shapes (1-element dims, odd sizes, non-multiples of the 8-float
 * SIMD width) and with 1, 2 and 3 threads. Each comparison prints its max
 * abs / rel error; every tolerance is justified where it is asserted.
 * Small enough to run under valgrind.
 */
#include "util_test.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* element (i, j) of op(X) for a row-major X with leading dimension ld */
static double at(const float *X, int64_t ld, int trans, int64_t i, int64_t j)
{
    return trans ? X[j * ld + i] : X[i * ld + j];
}

/* GEMM tolerance: the float dot products of length K accumulate rounding
 * errors of about sqrt(K) * 2^-24 * |terms| (blocked FMA summation in
 * OpenBLAS); with inputs in [-1, 1] and K <= 4096 the max error relative to
 * max|C| stays well below 1e-5 (observed ~1e-7). */
#define GEMM_REL_TOL 1e-5

static void test_gemm(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{1, 1, 1}, {1, 9, 1}, {7, 1, 5}, {13, 17, 19}, {64, 33, 8},
                                 {31, 1, 257}, {100, 4096, 3}};
    int cnt = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                /* padded leading dimensions: strided views must work */
                int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;
                int64_t ra = ta ? K : M, rb = tb ? N : K;
                float *A = fmalloc((size_t)(ra * lda)), *B = fmalloc((size_t)(rb * ldb));
                float *C = fmalloc((size_t)(M * ldc)), *ref = fmalloc((size_t)(M * N));
                float *got = fmalloc((size_t)(M * N));
                fill_uniform(A, (size_t)(ra * lda), 11 + cnt, -1, 1);
                fill_uniform(B, (size_t)(rb * ldb), 12 + cnt, -1, 1);
                fill_uniform(C, (size_t)(M * ldc), 13 + cnt, -1, 1);
                const float alpha = 0.75f, beta = (cnt % 3 == 0) ? 0.0f : -0.5f;
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double acc = 0;
                        for (int64_t k = 0; k < K; k++)
                            acc += at(A, lda, ta, i, k) * at(B, ldb, tb, k, j);
                        ref[i * N + j] = (float)(alpha * acc + (beta != 0 ? beta * (double)C[i * ldc + j] : 0));
                    }
                /* beta = 0 must ignore C entirely, even NaN */
                if (beta == 0.0f)
                    for (int64_t i = 0; i < M; i++)
                        C[i * ldc] = NAN;
                sb_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
                for (int64_t i = 0; i < M; i++)
                    memcpy(got + i * N, C + i * ldc, (size_t)N * sizeof(float));
                char label[96];
                snprintf(label, sizeof label, "gemm %lldx%lldx%lld ta=%d tb=%d", (long long)M,
                         (long long)N, (long long)K, ta, tb);
                cmp_stats st = compare_f32(label, got, ref, (size_t)(M * N));
                assert_true(st.max_rel <= GEMM_REL_TOL);
                free(A), free(B), free(C), free(ref), free(got);
                cnt++;
            }
    }
}

static void linear_ref(const float *x, int64_t M, int64_t K, const float *W, const float *b,
                       int64_t N, float *y)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t n = 0; n < N; n++) {
            double acc = b ? b[n] : 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)x[i * K + k] * W[n * K + k];
            y[i * N + n] = (float)acc;
        }
}

static void test_linear(void **state)
{
    (void)state;
    /* {M, K, N}: the last two take the row-chunked path (K <= 256 and M at
     * least two chunks of max(256, 512 KiB / (4 N)) rows, the last partial);
     * the others one sgemm. */
    const int64_t shapes[][3] = {{1, 1, 1}, {5, 3, 1}, {1, 64, 9}, {37, 96, 41},
                                 {300, 300, 7}, {8001, 17, 33}, {600, 8, 520}};
    sb_ctx *ctx[3];
    for (int t = 0; t < 3; t++)
        ctx[t] = make_ctx(t + 1);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float *x = fmalloc((size_t)(M * K)), *W = fmalloc((size_t)(N * K));
        float *b = fmalloc((size_t)N), *y = fmalloc((size_t)(M * N)), *ref = fmalloc((size_t)(M * N));
        fill_uniform(x, (size_t)(M * K), 21 + s, -1, 1);
        fill_uniform(W, (size_t)(N * K), 22 + s, -0.5f, 0.5f);
        fill_uniform(b, (size_t)N, 23 + s, -2, 2);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            linear_ref(x, M, K, W, with_bias ? b : NULL, N, ref);
            for (int t = 0; t < 3; t++) {
                fill_uniform(y, (size_t)(M * N), 99, 5, 6); /* garbage: must be overwritten */
                const int blas_before = openblas_get_num_threads();
                sb_linear(ctx[t], x, M, K, W, with_bias ? b : NULL, N, y);
                char label[96];
                snprintf(label, sizeof label, "linear %lldx%lldx%lld bias=%d thr=%d", (long long)M,
                         (long long)K, (long long)N, with_bias, t + 1);
                assert_true(compare_f32(label, y, ref, (size_t)(M * N)).max_rel <= GEMM_REL_TOL);
                /* the chunked path drops OpenBLAS to 1 thread inside its
                 * parallel region and must restore the setting */
                assert_int_equal(openblas_get_num_threads(), blas_before);
            }
        }
        free(x), free(W), free(b), free(y), free(ref);
    }
    for (int t = 0; t < 3; t++)
        sb_ctx_free(ctx[t]);
}

static void test_linear_cm(void **state)
{
    (void)state;
    const int64_t cases[][4] = {{1, 1, 1, 1}, {2, 5, 37, 7}, {3, 64, 100, 9}, {1, 3, 1, 4}};
    sb_ctx *ctx = make_ctx(2);
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const int64_t B = cases[s][0], K = cases[s][1], P = cases[s][2], N = cases[s][3];
        float *x = fmalloc((size_t)(B * K * P)), *W = fmalloc((size_t)(N * K)), *b = fmalloc((size_t)N);
        float *y = fmalloc((size_t)(B * N * P)), *ref = fmalloc((size_t)(B * N * P));
        fill_uniform(x, (size_t)(B * K * P), 31 + s, -1, 1);
        fill_uniform(W, (size_t)(N * K), 32 + s, -1, 1);
        fill_uniform(b, (size_t)N, 33 + s, -1, 1);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            for (int64_t i = 0; i < B; i++)
                for (int64_t n = 0; n < N; n++)
                    for (int64_t p = 0; p < P; p++) {
                        double acc = with_bias ? b[n] : 0.0;
                        for (int64_t k = 0; k < K; k++)
                            acc += (double)W[n * K + k] * x[(i * K + k) * P + p];
                        ref[(i * N + n) * P + p] = (float)acc;
                    }
            fill_uniform(y, (size_t)(B * N * P), 98, 5, 6);
            sb_linear_cm(ctx, x, B, K, P, W, with_bias ? b : NULL, N, y);
            char label[96];
            snprintf(label, sizeof label, "linear_cm B%lld K%lld P%lld N%lld bias=%d", (long long)B,
                     (long long)K, (long long)P, (long long)N, with_bias);
            assert_true(compare_f32(label, y, ref, (size_t)(B * N * P)).max_rel <= GEMM_REL_TOL);
        }
        free(x), free(W), free(b), free(y), free(ref);
    }
    sb_ctx_free(ctx);
}

/* Per-element check: |got - ref| <= (rel + rel_x2 * x^2) * |ref| + abs_tol;
 * returns the worst ratio err / allowed (<= 1 passes) and prints it. */
static double elementwise_check(const char *label, const float *x, const float *got,
                                const double *ref, size_t n, double rel, double rel_x2,
                                double abs_tol)
{
    double worst = 0, worst_rel = 0;
    size_t at_i = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - ref[i]);
        if (isnan(got[i]) != isnan(ref[i]))
            err = INFINITY;
        if (isnan(got[i]) && isnan(ref[i]))
            err = 0;
        double xi = x[i];
        double r = err / ((rel + rel_x2 * xi * xi) * fabs(ref[i]) + abs_tol);
        if (r > worst) {
            worst = r;
            at_i = i;
        }
        if (ref[i] != 0 && err / fabs(ref[i]) > worst_rel)
            worst_rel = err / fabs(ref[i]);
    }
    printf("  %-40s n=%-7zu max elementwise rel=%.3e worst/allowed=%.3f (x=%g)\n", label, n,
           worst_rel, worst, n ? (double)x[at_i] : 0.0);
    return worst;
}

static void test_gelu(void **state)
{
    (void)state;
    const size_t n = 20011; /* odd: exercises the scalar tail */
    float *x = fmalloc(n), *y = fmalloc(n);
    double *ref = malloc(n * sizeof *ref);
    assert_non_null(ref);
    fill_uniform(x, n - 9, 41, -12, 12);
    const float special[9] = {0.0f, -0.0f, 1e-30f, -1e-30f, 40.0f, -40.0f, INFINITY, 3.0f, NAN};
    memcpy(x + n - 9, special, sizeof special);
    memcpy(y, x, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        ref[i] = 0.5 * (double)x[i] * erfc(-(double)x[i] / sqrt(2.0)); /* = 1 + erf, no cancellation */
    sb_ctx *ctx = make_ctx(2);
    sb_gelu(ctx, y, (int64_t)n);
    /* Tolerance, derived: the erfc fit (1.2e-7 relative) + exp (1.2e-7) +
     * a few float roundings (< 2.5e-7) give 5e-7; on the negative tail
     * gelu = 0.5 x erfc(z) with erfc(z) = t exp(P(t) - z^2), z^2 = x^2/2,
     * and the float rounding of z^2 and of P - z^2 (half an ulp of z^2
     * each) perturbs the exponent by up to 6e-8 * x^2 absolute, i.e. that
     * much relative error: 5e-7 + 6e-8 x^2 (7.5e-8 with margin). This is
     * far tighter than PyTorch's float gelu itself, which forms 1 + erf(z)
     * with cancellation (absolute error ~|x| 3e-8 on the tail). */
    assert_true(elementwise_check("gelu (exact erf)", x, y, ref, n, 5e-7, 7.5e-8, 1e-37) <= 1.0);
    assert_true(isinf(y[n - 3]) && y[n - 3] > 0);
    assert_true(isnan(y[n - 1]));
    assert_true(y[n - 9] == 0.0f && y[n - 5] == 40.0f && y[n - 4] == 0.0f); /* gelu(0), gelu(+-40) */
    sb_ctx_free(ctx);
    free(x), free(y), free(ref);
}

static void test_sigmoid_relu_add(void **state)
{
    (void)state;
    const size_t n = 70001;
    float *x = fmalloc(n), *y = fmalloc(n), *z = fmalloc(n);
    double *ref = malloc(n * sizeof *ref);
    assert_non_null(ref);
    /* [-85, 85]: sigmoid(x < 0) = e^x / (1 + e^x), so this measures the
     * relative error of exp itself over its whole useful range. */
    fill_uniform(x, n, 51, -85, 85);
    x[0] = 0.0f;
    x[1] = -200.0f; /* exp underflows: 0 */
    x[2] = 200.0f;
    sb_ctx *ctx = make_ctx(3);
    memcpy(y, x, n * sizeof(float));
    sb_sigmoid(ctx, y, (int64_t)n);
    for (size_t i = 0; i < n; i++)
        ref[i] = 1.0 / (1.0 + exp(-(double)x[i]));
    /* exp is within 7.9e-8 relative (measured over every float, see
     * core/vecmath.h; 2e-7 is the budget the models' 1e-4 parity allows);
     * one division and one addition add 1.2e-7: 4e-7 relative for all x
     * whose result is a normal float; the absolute term covers e^-200 -> 0. */
    assert_true(elementwise_check("sigmoid", x, y, ref, n, 4e-7, 0, 1e-37) <= 1.0);
    assert_true(y[1] == 0.0f && y[2] == 1.0f && y[0] == 0.5f);

    memcpy(y, x, n * sizeof(float));
    y[5] = NAN;
    sb_relu(ctx, y, (int64_t)n);
    for (size_t i = 0; i < n; i++)
        if (i != 5)
            assert_true(y[i] == (x[i] > 0 ? x[i] : 0.0f));
    assert_true(isnan(y[5]));

    fill_uniform(z, n, 52, -1, 1);
    memcpy(y, x, n * sizeof(float));
    sb_add(ctx, y, z, (int64_t)n);
    for (size_t i = 0; i < n; i++)
        assert_true(y[i] == x[i] + z[i]); /* one rounding, exactly as a + b */
    sb_ctx_free(ctx);
    free(x), free(y), free(z), free(ref);
}

static void test_softmax(void **state)
{
    (void)state;
    const int64_t shapes[][2] = {{1, 1}, {3, 1}, {1, 7}, {5, 8}, {17, 33}, {64, 1000}, {2, 4097}};
    for (int threads = 1; threads <= 2; threads++) {
        sb_ctx *ctx = make_ctx(threads);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t R = shapes[s][0], C = shapes[s][1];
            float *x = fmalloc((size_t)(R * C)), *ref = fmalloc((size_t)(R * C));
            fill_uniform(x, (size_t)(R * C), 61 + s, -30, 30);
            /* large offsets in some rows: needs the max subtraction */
            for (int64_t c = 0; c < C; c++)
                x[c] += 1000.0f;
            if (R > 2)
                for (int64_t c = 0; c < C; c++)
                    x[2 * C + c] = -5000.0f + 0.5f * (float)(c % 7);
            for (int64_t r = 0; r < R; r++) {
                double m = -INFINITY, sum = 0;
                for (int64_t c = 0; c < C; c++)
                    m = fmax(m, x[r * C + c]);
                for (int64_t c = 0; c < C; c++)
                    sum += exp((double)x[r * C + c] - m);
                for (int64_t c = 0; c < C; c++)
                    ref[r * C + c] = (float)(exp((double)x[r * C + c] - m) / sum);
            }
            sb_softmax_rows(ctx, x, R, C);
            char label[64];
            snprintf(label, sizeof label, "softmax %lldx%lld thr=%d", (long long)R, (long long)C, threads);
            /* exp 2e-7 relative per term, the float row sum ~sqrt(C) ulp and
             * one multiply: 2e-6 relative to the row maximum (rows are
             * compared on the whole tensor, whose max is <= 1). */
            assert_true(compare_f32(label, x, ref, (size_t)(R * C)).max_abs <= 2e-6);
            free(x), free(ref);
        }
        sb_ctx_free(ctx);
    }
}

static void ln_ref(const float *x, int64_t n, int64_t stride, const float *w, const float *b,
                   float eps, float *y)
{
    double mean = 0, var = 0;
    for (int64_t c = 0; c < n; c++)
        mean += x[c * stride];
    mean /= (double)n;
    for (int64_t c = 0; c < n; c++)
        var += (x[c * stride] - mean) * (x[c * stride] - mean);
    var /= (double)n; /* biased */
    for (int64_t c = 0; c < n; c++)
        y[c * stride] = (float)((x[c * stride] - mean) / sqrt(var + eps) * (w ? w[c] : 1.0) + (b ? b[c] : 0.0));
}

/* LayerNorm tolerance: two-pass float statistics over C <= 1000 (mean error
 * ~sqrt(C) ulp of |x|, a relative error of the normalised values of a few
 * 1e-7 even with a mean 50x the spread), then 3 float ops per element:
 * 1e-5 relative to the largest output with margin. */
#define LN_REL_TOL 1e-5

static void test_layernorm(void **state)
{
    (void)state;
    const int64_t shapes[][2] = {{1, 1}, {4, 1}, {1, 7}, {9, 96}, {33, 257}, {300, 768}};
    for (int threads = 1; threads <= 3; threads += 2) {
        sb_ctx *ctx = make_ctx(threads);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t R = shapes[s][0], C = shapes[s][1];
            float *x = fmalloc((size_t)(R * C)), *y = fmalloc((size_t)(R * C));
            float *ref = fmalloc((size_t)(R * C)), *w = fmalloc((size_t)C), *b = fmalloc((size_t)C);
            fill_uniform(x, (size_t)(R * C), 71 + s, -1, 1);
            for (int64_t i = 0; i < R * C; i++)
                x[i] += 50.0f; /* large mean: the naive E[x^2]-E[x]^2 would lose digits */
            fill_uniform(w, (size_t)C, 72 + s, 0.5f, 1.5f);
            fill_uniform(b, (size_t)C, 73 + s, -1, 1);
            for (int affine = 0; affine < 4; affine++) {
                const float *wp = (affine & 1) ? w : NULL, *bp = (affine & 2) ? b : NULL;
                for (int64_t r = 0; r < R; r++)
                    ln_ref(x + r * C, C, 1, wp, bp, 1e-6f, ref + r * C);
                char label[80];
                snprintf(label, sizeof label, "layernorm %lldx%lld w=%d b=%d thr=%d", (long long)R,
                         (long long)C, affine & 1, (affine >> 1) & 1, threads);
                if (affine == 3) { /* in place */
                    memcpy(y, x, (size_t)(R * C) * sizeof(float));
                    sb_layernorm(ctx, y, R, C, wp, bp, 1e-6f, y);
                } else {
                    sb_layernorm(ctx, x, R, C, wp, bp, 1e-6f, y);
                }
                cmp_stats st = compare_f32(label, y, ref, (size_t)(R * C));
                if (C == 1 && !bp) /* var = 0: (x - mean) = 0 exactly */
                    assert_true(st.max_abs == 0.0);
                else
                    assert_true(st.max_rel <= LN_REL_TOL);
            }
            free(x), free(y), free(ref), free(w), free(b);
        }
        sb_ctx_free(ctx);
    }
}

static void test_layernorm2d(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{1, 1, 1}, {2, 3, 1}, {1, 17, 13}, {2, 256, 300}, {3, 5, 513}};
    sb_ctx *ctx = make_ctx(2);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t B = shapes[s][0], C = shapes[s][1], HW = shapes[s][2];
        const size_t n = (size_t)(B * C * HW);
        float *x = fmalloc(n), *y = fmalloc(n), *ref = fmalloc(n), *w = fmalloc((size_t)C),
              *b = fmalloc((size_t)C);
        fill_uniform(x, n, 81 + s, -3, 5);
        if (s % 2) /* a large mean in some cases (conv outputs can have one) */
            for (size_t i = 0; i < n; i++)
                x[i] += 40.0f;
        fill_uniform(w, (size_t)C, 82 + s, -1, 1);
        fill_uniform(b, (size_t)C, 83 + s, -1, 1);
        for (int64_t i = 0; i < B; i++)
            for (int64_t p = 0; p < HW; p++)
                ln_ref(x + i * C * HW + p, C, HW, w, b, 1e-6f, ref + i * C * HW + p);
        sb_layernorm2d(ctx, x, B, C, HW, w, b, 1e-6f, y);
        char label[80];
        snprintf(label, sizeof label, "layernorm2d B%lld C%lld HW%lld", (long long)B, (long long)C,
                 (long long)HW);
        assert_true(compare_f32(label, y, ref, n).max_rel <= LN_REL_TOL);
        /* in place, no affine */
        for (int64_t i = 0; i < B; i++)
            for (int64_t p = 0; p < HW; p++)
                ln_ref(x + i * C * HW + p, C, HW, NULL, NULL, 1e-5f, ref + i * C * HW + p);
        memcpy(y, x, n * sizeof(float));
        sb_layernorm2d(ctx, y, B, C, HW, NULL, NULL, 1e-5f, y);
        strcat(label, " in place");
        cmp_stats st = compare_f32(label, y, ref, n);
        assert_true(C == 1 ? st.max_abs == 0.0 : st.max_rel <= LN_REL_TOL);
        free(x), free(y), free(ref), free(w), free(b);
    }
    sb_ctx_free(ctx);
}

static void test_layout(void **state)
{
    (void)state;
    const int64_t shapes[][4] = {{1, 1, 1, 1}, {2, 3, 1, 5}, {1, 33, 35, 17}, {3, 64, 7, 40}};
    for (int threads = 1; threads <= 2; threads++) {
        sb_ctx *ctx = make_ctx(threads);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t B = shapes[s][0], C = shapes[s][1], H = shapes[s][2], W = shapes[s][3];
            const size_t n = (size_t)(B * C * H * W);
            float *x = fmalloc(n), *y = fmalloc(n), *z = fmalloc(n);
            fill_uniform(x, n, 91 + s, -1, 1);
            sb_nchw_to_nhwc(ctx, x, B, C, H, W, y);
            for (int64_t b = 0; b < B; b++)
                for (int64_t c = 0; c < C; c++)
                    for (int64_t h = 0; h < H; h++)
                        for (int64_t w = 0; w < W; w++)
                            assert_true(y[((b * H + h) * W + w) * C + c] ==
                                        x[((b * C + c) * H + h) * W + w]);
            sb_nhwc_to_nchw(ctx, y, B, H, W, C, z);
            assert_memory_equal(x, z, n * sizeof(float));
            free(x), free(y), free(z);
        }
        sb_ctx_free(ctx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),       cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_cm),  cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_sigmoid_relu_add), cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_layernorm),  cmocka_unit_test(test_layernorm2d),
        cmocka_unit_test(test_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
