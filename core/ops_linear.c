/*
 * GEMM, linear layers, elementwise ops, normalisations and layout changes
 * (see the "GEMM, linear layers, elementwise" part of core/sambench.h).
 *
 * Threading: GEMMs go to OpenBLAS from the calling thread (OpenBLAS runs
 * them on the ctx's thread count, set in sb_ctx_create); everything else is
 * split over rows/elements with sb_parallel_for and never calls BLAS, so the
 * two never run at once.
 */
#include "sambench.h"
#include "vecmath.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* Work per parallel chunk: below this an op is not worth waking the pool. */
#define ELEM_GRAIN 32768

void sb_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) { /* op(A) op(B) is the zero matrix: C = beta C */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta, C,
                (blasint)ldc);
}

/* ---- bias fill: y[r, :] = b (row-broadcast) or y[r, :] = b[r] ---------- */

typedef struct {
    float *y;
    const float *b;
    int64_t cols;
    int per_row; /* 1: y[r, :] = b[r]; 0: y[r, :] = b[:] */
} bias_job;

static void bias_fill_range(void *arg, int64_t r0, int64_t r1, int worker)
{
    (void)worker;
    const bias_job *j = arg;
    for (int64_t r = r0; r < r1; r++) {
        float *yr = j->y + r * j->cols;
        if (j->per_row) {
            float v = j->b[r];
            for (int64_t c = 0; c < j->cols; c++)
                yr[c] = v;
        } else {
            /* rows are short (96..3072): inline stores beat a memcpy call
             * per row (+1-3 % on the chunked linears, measured) */
            int64_t c = 0;
#if SB_HAVE_AVX2
            for (; c + 8 <= j->cols; c += 8)
                _mm256_storeu_ps(yr + c, _mm256_loadu_ps(j->b + c));
#endif
            for (; c < j->cols; c++)
                yr[c] = j->b[c];
        }
    }
}

static int64_t row_grain(int64_t cols)
{
    int64_t g = ELEM_GRAIN / (cols > 0 ? cols : 1);
    return g < 1 ? 1 : g;
}

/*
 * The bias is written into y first and the GEMM accumulates with beta = 1:
 * OpenBLAS makes a pass over C for any beta != 1 anyway (zeroing it for
 * beta = 0), so the bias costs no extra pass over y.
 *
 * With a short inner dimension (K <= LIN_CHUNK_MAX_K, e.g. Hiera stage 1:
 * 65536 x 96 -> 288) the GEMM is bound by the traffic on y (OpenBLAS reads and
 * writes all of C after its beta pass), so y is produced in row chunks of about
 * LIN_CHUNK_BYTES: the bias fill and the GEMM's C updates then hit L2, and y
 * goes to memory once. Measured on the Haswell kernel at 1 thread:
 * 65536x96x288 went from ~80 to ~87 GFLOP/s (square peak ~104 in that run).
 * The chunks are independent, so with several threads they are spread over
 * the pool, each worker calling sgemm with OpenBLAS at one thread (no BLAS
 * fork/join per chunk; see the threading rule in core/sambench.h).
 *
 * The same pays up to K = 768 while the weight stays small (N K <= 768^2,
 * ~2.3 MiB: re-packing it per chunk is cheap), measured side by side in one
 * process (best of 6, CPU time, Haswell kernel, 1 thread), unchunked ->
 * chunked: 65536x384->96 68 -> 73 GFLOP/s, 16384x768->192 86 -> 91,
 * 4096x384->1152 83 -> 88, 4096x384->1536 83 -> 90, 4900x768->768 86 -> 88;
 * larger weights lose 1-4 % (4900x768->2304 103 -> 100, ->3072 100 -> 97,
 * 4096x1536->384 94 -> 93), so they stay one GEMM.
 */
#define LIN_CHUNK_MAX_K 768
#define LIN_CHUNK_MAX_KN (768 * 768)
#define LIN_CHUNK_BYTES (512 * 1024)
#define LIN_CHUNK_MIN_ROWS 256

typedef struct {
    const float *x, *W, *b;
    float *y;
    int64_t M, K, N, mc;
    int gelu; /* apply GELU to each chunk right after its GEMM (still in L2) */
} lin_job;

static void gelu_span(float *x, int64_t n);

static void linear_chunk_range(void *arg, int64_t c0, int64_t c1, int worker)
{
    (void)worker;
    const lin_job *j = arg;
    for (int64_t c = c0; c < c1; c++) {
        int64_t m0 = c * j->mc;
        int64_t mc = j->M - m0 < j->mc ? j->M - m0 : j->mc;
        float *y = j->y + m0 * j->N;
        if (j->b) {
            bias_job bj = {y, j->b, j->N, 0};
            bias_fill_range(&bj, 0, mc, 0);
        }
        sb_gemm(0, 1, mc, j->N, j->K, 1.0f, j->x + m0 * j->K, j->K, j->W, j->K, j->b ? 1.0f : 0.0f,
                y, j->N);
        if (j->gelu)
            gelu_span(y, mc * j->N);
    }
}

static void linear_impl(sb_ctx *ctx, const float *x, int64_t M, int64_t K, const float *W,
                        const float *b, int64_t N, float *y, int gelu)
{
    if (M <= 0 || N <= 0)
        return;
    int64_t mc = LIN_CHUNK_BYTES / (N * (int64_t)sizeof(float));
    if (mc < LIN_CHUNK_MIN_ROWS)
        mc = LIN_CHUNK_MIN_ROWS;
    if (K <= LIN_CHUNK_MAX_K && K * N <= LIN_CHUNK_MAX_KN && M >= 2 * mc) {
        lin_job j = {x, W, b, y, M, K, N, mc, gelu};
        int64_t nchunks = (M + mc - 1) / mc;
        if (sb_ctx_threads(ctx) > 1) {
            int blas_threads = openblas_get_num_threads();
            openblas_set_num_threads(1);
            sb_parallel_for(ctx, nchunks, 1, linear_chunk_range, &j);
            openblas_set_num_threads(blas_threads);
        } else {
            linear_chunk_range(&j, 0, nchunks, 0);
        }
        return;
    }
    float beta = 0.0f;
    if (b) {
        bias_job j = {y, b, N, 0};
        sb_parallel_for(ctx, M, row_grain(N), bias_fill_range, &j);
        beta = 1.0f;
    }
    sb_gemm(0, 1, M, N, K, 1.0f, x, K, W, K, beta, y, N);
    if (gelu)
        sb_gelu(ctx, y, M * N);
}

void sb_linear(sb_ctx *ctx, const float *x, int64_t M, int64_t K, const float *W, const float *b,
               int64_t N, float *y)
{
    linear_impl(ctx, x, M, K, W, b, N, y, 0);
}

void sb_linear_gelu(sb_ctx *ctx, const float *x, int64_t M, int64_t K, const float *W,
                    const float *b, int64_t N, float *y)
{
    linear_impl(ctx, x, M, K, W, b, N, y, 1);
}

void sb_linear_cm(sb_ctx *ctx, const float *x, int64_t B, int64_t K, int64_t P, const float *W,
                  const float *b, int64_t N, float *y)
{
    if (B <= 0 || N <= 0 || P <= 0)
        return;
    float beta = 0.0f;
    if (b) {
        for (int64_t i = 0; i < B; i++) {
            bias_job j = {y + i * N * P, b, P, 1};
            sb_parallel_for(ctx, N, row_grain(P), bias_fill_range, &j);
        }
        beta = 1.0f;
    }
    for (int64_t i = 0; i < B; i++)
        sb_gemm(0, 0, N, P, K, 1.0f, W, K, x + i * K * P, P, beta, y + i * N * P, P);
}

/* ---- elementwise ----------------------------------------------------- */

typedef struct {
    float *y;
    const float *x;
} ew_job;

static void gelu_range(void *arg, int64_t i0, int64_t i1, int worker)
{
    (void)worker;
    float *x = ((ew_job *)arg)->y;
    int64_t i = i0;
#if SB_HAVE_AVX2
    for (; i + 8 <= i1; i += 8)
        _mm256_storeu_ps(x + i, sb_gelu8(_mm256_loadu_ps(x + i)));
#endif
    for (; i < i1; i++)
        x[i] = sb_gelu1(x[i]);
}

static void gelu_span(float *x, int64_t n)
{
    ew_job j = {x, NULL};
    gelu_range(&j, 0, n, 0);
}

static void relu_range(void *arg, int64_t i0, int64_t i1, int worker)
{
    (void)worker;
    float *x = ((ew_job *)arg)->y;
    int64_t i = i0;
#if SB_HAVE_AVX2
    /* the scalar rule below, 8 at a time: keep x where x > 0 or x is NaN, else +0 */
    for (; i + 8 <= i1; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 keep = _mm256_or_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ),
                                   _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        _mm256_storeu_ps(x + i, _mm256_and_ps(v, keep));
    }
#endif
    for (; i < i1; i++)
        x[i] = x[i] > 0.0f ? x[i] : (x[i] == x[i] ? 0.0f : x[i]); /* NaN stays NaN as in torch */
}

static void sigmoid_range(void *arg, int64_t i0, int64_t i1, int worker)
{
    (void)worker;
    float *x = ((ew_job *)arg)->y;
    int64_t i = i0;
#if SB_HAVE_AVX2
    for (; i + 8 <= i1; i += 8)
        _mm256_storeu_ps(x + i, sb_sigmoid8(_mm256_loadu_ps(x + i)));
#endif
    for (; i < i1; i++)
        x[i] = sb_sigmoid1(x[i]);
}

static void add_range(void *arg, int64_t i0, int64_t i1, int worker)
{
    (void)worker;
    ew_job *j = arg;
    float *restrict y = j->y;
    const float *restrict x = j->x;
    int64_t i = i0;
#if SB_HAVE_AVX2
    for (; i + 8 <= i1; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
#endif
    for (; i < i1; i++)
        y[i] += x[i];
}

void sb_gelu(sb_ctx *ctx, float *x, int64_t n)
{
    ew_job j = {x, NULL};
    sb_parallel_for(ctx, n, ELEM_GRAIN / 4, gelu_range, &j);
}

void sb_relu(sb_ctx *ctx, float *x, int64_t n)
{
    ew_job j = {x, NULL};
    sb_parallel_for(ctx, n, ELEM_GRAIN, relu_range, &j);
}

void sb_sigmoid(sb_ctx *ctx, float *x, int64_t n)
{
    ew_job j = {x, NULL};
    sb_parallel_for(ctx, n, ELEM_GRAIN / 4, sigmoid_range, &j);
}

void sb_add(sb_ctx *ctx, float *y, const float *x, int64_t n)
{
    ew_job j = {y, x};
    sb_parallel_for(ctx, n, ELEM_GRAIN, add_range, &j);
}

/* ---- softmax ----------------------------------------------------------- */

/* Max-subtracted softmax of one row in place (also used by nothing else:
 * attention has its own online version in core/ops_attention.c). */
static void softmax_row(float *x, int64_t n)
{
    float m = -INFINITY;
    int64_t i = 0;
#if SB_HAVE_AVX2
    if (n >= 8) {
        __m256 vm = _mm256_set1_ps(-INFINITY);
        for (; i + 8 <= n; i += 8)
            vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
        m = sb_hmax8(vm);
    }
#endif
    for (; i < n; i++)
        m = x[i] > m ? x[i] : m;
    float s = 0.0f;
    i = 0;
#if SB_HAVE_AVX2
    {
        __m256 vm = _mm256_set1_ps(m), vs = _mm256_setzero_ps();
        for (; i + 8 <= n; i += 8) {
            __m256 e = sb_exp8_nonpos(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
            _mm256_storeu_ps(x + i, e);
            vs = _mm256_add_ps(vs, e);
        }
        s = sb_hsum8(vs);
    }
#endif
    for (; i < n; i++) {
        x[i] = sb_expf(x[i] - m);
        s += x[i];
    }
    float inv = 1.0f / s;
    for (i = 0; i < n; i++)
        x[i] *= inv;
}

typedef struct {
    float *x;
    int64_t cols;
} rows_job;

static void softmax_range(void *arg, int64_t r0, int64_t r1, int worker)
{
    (void)worker;
    rows_job *j = arg;
    for (int64_t r = r0; r < r1; r++)
        softmax_row(j->x + r * j->cols, j->cols);
}

void sb_softmax_rows(sb_ctx *ctx, float *x, int64_t rows, int64_t cols)
{
    if (rows <= 0 || cols <= 0)
        return;
    rows_job j = {x, cols};
    sb_parallel_for(ctx, rows, row_grain(cols) / 4 + 1, softmax_range, &j);
}

/* ---- LayerNorm over the last dim ------------------------------------- */
/*
 * Two passes over each row (mean, then the mean of squared deviations:
 * biased variance, stable for rows with a large mean), 8 partial sums per
 * pass so the compiler vectorises them; the partials are combined in double.
 */
typedef struct {
    const float *x;
    float *y;
    const float *w, *b;
    int64_t C;
    float eps;
} ln_job;

static void ln_range(void *arg, int64_t r0, int64_t r1, int worker)
{
    (void)worker;
    const ln_job *j = arg;
    const int64_t C = j->C;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = j->x + r * C;
        float *y = j->y + r * C;
        /* sum of x - x[0]: values near the spread, not the mean, so the
         * float partial sums keep their digits when |mean| >> std */
        const float x0 = x[0];
        float acc[8] = {0};
        int64_t c = 0;
        for (; c + 8 <= C; c += 8)
            for (int k = 0; k < 8; k++)
                acc[k] += x[c + k] - x0;
        double sum = 0.0;
        for (int k = 0; k < 8; k++)
            sum += acc[k];
        for (; c < C; c++)
            sum += x[c] - x0;
        /* mean = meanf + dm: x - meanf is exact-ish (Sterbenz) and the
         * float rounding of the mean (dm) is subtracted afterwards, so rows
         * with a large mean lose no digits */
        const double mean_d = (double)x0 + sum / (double)C;
        const float meanf = (float)mean_d, dm = (float)(mean_d - (double)meanf);
        float acc2[8] = {0};
        c = 0;
        for (; c + 8 <= C; c += 8)
            for (int k = 0; k < 8; k++) {
                float d = (x[c + k] - meanf) - dm;
                acc2[k] += d * d;
            }
        double ss = 0.0;
        for (int k = 0; k < 8; k++)
            ss += acc2[k];
        for (; c < C; c++) {
            float d = (x[c] - meanf) - dm;
            ss += (double)d * d;
        }
        const float rstd = (float)(1.0 / sqrt(ss / (double)C + (double)j->eps));
        c = 0;
#if SB_HAVE_AVX2
        /* the same operations as the scalar loops below, 8 channels at a
         * time (GCC's cheap -O2 vectoriser leaves them scalar) */
        {
            const __m256 vm = _mm256_set1_ps(meanf), vdm = _mm256_set1_ps(dm), vr = _mm256_set1_ps(rstd);
            for (; c + 8 <= C; c += 8) {
                __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(x + c), vm), vdm), vr);
                if (j->w && j->b)
                    t = _mm256_fmadd_ps(t, _mm256_loadu_ps(j->w + c), _mm256_loadu_ps(j->b + c));
                else if (j->w)
                    t = _mm256_mul_ps(t, _mm256_loadu_ps(j->w + c));
                else if (j->b)
                    t = _mm256_add_ps(t, _mm256_loadu_ps(j->b + c));
                _mm256_storeu_ps(y + c, t);
            }
        }
#endif
        if (j->w && j->b) {
            for (; c < C; c++)
                y[c] = ((x[c] - meanf) - dm) * rstd * j->w[c] + j->b[c];
        } else if (j->w) {
            for (; c < C; c++)
                y[c] = ((x[c] - meanf) - dm) * rstd * j->w[c];
        } else if (j->b) {
            for (; c < C; c++)
                y[c] = ((x[c] - meanf) - dm) * rstd + j->b[c];
        } else {
            for (; c < C; c++)
                y[c] = ((x[c] - meanf) - dm) * rstd;
        }
    }
}

void sb_layernorm(sb_ctx *ctx, const float *x, int64_t rows, int64_t C, const float *w,
                  const float *b, float eps, float *y)
{
    if (rows <= 0 || C <= 0)
        return;
    ln_job j = {x, y, w, b, C, eps};
    sb_parallel_for(ctx, rows, row_grain(C) / 2 + 1, ln_range, &j);
}

/* ---- LayerNorm2d on NCHW --------------------------------------------- */
/*
 * Statistics over C at each pixel. Pixels are processed in blocks of PB so
 * the inner loops run over contiguous pixels (vectorised) and the per-pixel
 * accumulators stay in L1; the work items are (image, pixel block).
 */
#define LN2D_PB 256

typedef struct {
    const float *x;
    float *y;
    const float *w, *b;
    int64_t C, HW, nblk;
    float eps;
} ln2d_job;

static void ln2d_range(void *arg, int64_t t0, int64_t t1, int worker)
{
    (void)worker;
    const ln2d_job *j = arg;
    const int64_t C = j->C, HW = j->HW;
    float mean[LN2D_PB], rstd[LN2D_PB], acc[LN2D_PB];
    for (int64_t t = t0; t < t1; t++) {
        int64_t img = t / j->nblk;
        int64_t p0 = (t % j->nblk) * LN2D_PB;
        int64_t np = HW - p0 < LN2D_PB ? HW - p0 : LN2D_PB;
        const float *x = j->x + img * C * HW + p0;
        float *y = j->y + img * C * HW + p0;
        /* pivot-shifted sums (x - x[channel 0]) as in sb_layernorm, so a
         * large mean costs no digits */
        for (int64_t p = 0; p < np; p++)
            acc[p] = 0.0f;
        for (int64_t c = 1; c < C; c++)
            for (int64_t p = 0; p < np; p++)
                acc[p] += x[c * HW + p] - x[p];
        for (int64_t p = 0; p < np; p++) {
            mean[p] = x[p] + acc[p] / (float)C;
            acc[p] = 0.0f;
        }
        for (int64_t c = 0; c < C; c++)
            for (int64_t p = 0; p < np; p++) {
                float d = x[c * HW + p] - mean[p];
                acc[p] += d * d;
            }
        for (int64_t p = 0; p < np; p++)
            rstd[p] = 1.0f / sqrtf(acc[p] / (float)C + j->eps);
        for (int64_t c = 0; c < C; c++) {
            float wc = j->w ? j->w[c] : 1.0f, bc = j->b ? j->b[c] : 0.0f;
            for (int64_t p = 0; p < np; p++)
                y[c * HW + p] = (x[c * HW + p] - mean[p]) * rstd[p] * wc + bc;
        }
    }
}

void sb_layernorm2d(sb_ctx *ctx, const float *x, int64_t B, int64_t C, int64_t HW, const float *w,
                    const float *b, float eps, float *y)
{
    if (B <= 0 || C <= 0 || HW <= 0)
        return;
    int64_t nblk = (HW + LN2D_PB - 1) / LN2D_PB;
    ln2d_job j = {x, y, w, b, C, HW, nblk, eps};
    int64_t grain = ELEM_GRAIN / (C * LN2D_PB) + 1;
    sb_parallel_for(ctx, B * nblk, grain, ln2d_range, &j);
}

/* ---- layout changes ------------------------------------------------------ */
/*
 * Both directions are a batch of [R, S] -> [S, R] transposes, done in 32x32
 * tiles so reads and writes both stay within a few cache lines; work items
 * are (image, tile row). Inside a tile, whole 8x8 blocks are transposed in
 * AVX2 registers (pure data movement: results are bit-identical).
 */
#define TR_T 32

typedef struct {
    const float *x;
    float *y;
    int64_t R, S; /* per image: x is [R, S], y is [S, R] */
    int64_t ntr;  /* tile rows per image */
} tr_job;

#if SB_HAVE_AVX2
/* y[j][i] = x[i][j] for an 8x8 block (row strides lx, ly) in registers. */
static inline void transpose8x8(const float *x, int64_t lx, float *y, int64_t ly)
{
    __m256 r0 = _mm256_loadu_ps(x), r1 = _mm256_loadu_ps(x + lx), r2 = _mm256_loadu_ps(x + 2 * lx),
           r3 = _mm256_loadu_ps(x + 3 * lx), r4 = _mm256_loadu_ps(x + 4 * lx),
           r5 = _mm256_loadu_ps(x + 5 * lx), r6 = _mm256_loadu_ps(x + 6 * lx),
           r7 = _mm256_loadu_ps(x + 7 * lx);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(y, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(y + ly, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(y + 2 * ly, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(y + 3 * ly, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(y + 4 * ly, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(y + 5 * ly, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(y + 6 * ly, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(y + 7 * ly, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

static void transpose_range(void *arg, int64_t t0, int64_t t1, int worker)
{
    (void)worker;
    const tr_job *j = arg;
    const int64_t R = j->R, S = j->S;
    for (int64_t t = t0; t < t1; t++) {
        int64_t img = t / j->ntr;
        int64_t r0 = (t % j->ntr) * TR_T;
        int64_t r1 = r0 + TR_T < R ? r0 + TR_T : R;
        const float *x = j->x + img * R * S;
        float *y = j->y + img * R * S;
        for (int64_t s0 = 0; s0 < S; s0 += TR_T) {
            int64_t s1 = s0 + TR_T < S ? s0 + TR_T : S;
            int64_t r8 = r0, s8 = s0; /* end of the 8x8-block part */
#if SB_HAVE_AVX2
            r8 = r0 + (r1 - r0) / 8 * 8;
            s8 = s0 + (s1 - s0) / 8 * 8;
            /* r inner: each output row gets its 32 floats of the tile in
             * consecutive steps (whole cache lines while R is a large
             * power-of-two stride) */
            for (int64_t s = s0; s < s8; s += 8)
                for (int64_t r = r0; r < r8; r += 8)
                    transpose8x8(x + r * S + s, S, y + s * R + r, R);
#endif
            /* the rest: columns s8..s1 of every row, rows r8..r1 of s0..s8 */
            for (int64_t s = s8; s < s1; s++)
                for (int64_t r = r0; r < r1; r++)
                    y[s * R + r] = x[r * S + s];
            for (int64_t s = s0; s < s8; s++)
                for (int64_t r = r8; r < r1; r++)
                    y[s * R + r] = x[r * S + s];
        }
    }
}

static void batched_transpose(sb_ctx *ctx, const float *x, int64_t B, int64_t R, int64_t S, float *y)
{
    if (B <= 0 || R <= 0 || S <= 0)
        return;
    int64_t ntr = (R + TR_T - 1) / TR_T;
    tr_job j = {x, y, R, S, ntr};
    sb_parallel_for(ctx, B * ntr, ELEM_GRAIN / (TR_T * S) + 1, transpose_range, &j);
}

void sb_nchw_to_nhwc(sb_ctx *ctx, const float *x, int64_t B, int64_t C, int64_t H, int64_t W, float *y)
{
    batched_transpose(ctx, x, B, C, H * W, y);
}

void sb_nhwc_to_nchw(sb_ctx *ctx, const float *x, int64_t B, int64_t H, int64_t W, int64_t C, float *y)
{
    batched_transpose(ctx, x, B, H * W, C, y);
}
