/*
 * Convolutions, pooling and window partition (MODEL.md 2.2.1, 2.2.4,
 * 2.2.5, 2.4, 2.7, 6.14).
 *
 * sb_conv2d picks one of three paths:
 *  - 1x1, stride 1, no padding: one GEMM per image and group straight on x
 *    (no scratch);
 *  - one input channel per group (depthwise, incl. Cin = 1): a direct loop
 *    over output planes, parallel over planes with sb_parallel_for (no
 *    scratch);
 *  - otherwise im2col + GEMM, tiled over output rows: the column matrix of
 *    one tile is [K = Cin/groups*kh*kw, rows*OW] and a tile holds as many
 *    output rows as fit in SB_CONV_TILE_BYTES (at least one row). Scratch is
 *    therefore bounded by max(SB_CONV_TILE_BYTES, K*OW*4) bytes whatever the
 *    image size; sb_conv2d_scratch_bytes gives the exact figure. im2col is
 *    parallel over the K rows (our pool), the GEMM runs on OpenBLAS's
 *    threads, never inside one of our parallel regions (sambench.h,
 *    threading model).
 * Scratch comes from the arena if one is given (released LIFO before
 * returning, so its peak records the use) and from malloc otherwise.
 */
#include "sambench.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Target size of one im2col / staging tile. */
#define SB_CONV_TILE_BYTES ((size_t)8 << 20)

int64_t sb_conv_out_size(int64_t in, int k, int stride, int pad)
{
    if (in <= 0 || k <= 0 || stride <= 0 || pad < 0 || in + 2 * (int64_t)pad < k)
        return 0;
    return (in + 2 * (int64_t)pad - k) / stride + 1;
}

/* ---- scratch ------------------------------------------------------------ */

typedef struct {
    sb_arena *arena;
    size_t mark;
    void *heap;
} scratch;

static float *scratch_get(scratch *s, sb_arena *arena, size_t bytes, const char *what,
                          sb_error *err)
{
    s->arena = arena;
    s->heap = NULL;
    if (bytes == 0)
        bytes = 64;
    if (arena) {
        s->mark = sb_arena_mark(arena);
        return sb_arena_alloc_checked(arena, bytes, what, err);
    }
    s->heap = malloc(bytes);
    if (!s->heap)
        sb_fail(err, SB_ENOMEM, "%s: cannot allocate %zu bytes of scratch", what, bytes);
    return s->heap;
}

static void scratch_put(scratch *s)
{
    if (s->arena)
        sb_arena_reset(s->arena, s->mark);
    free(s->heap);
    s->heap = NULL;
}

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

static int fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* ---- conv2d --------------------------------------------------------------- */

typedef struct {
    int64_t B, Cin, H, W, Cout, OH, OW;
    int kh, kw, stride, pad, groups;
} conv_shape;

static int conv_check(const conv_shape *s, const void *x, const void *w, const void *y,
                      sb_error *err)
{
    if (!x || !w || !y)
        return sb_fail(err, SB_EINVAL, "conv2d: NULL tensor pointer");
    if (s->B <= 0 || s->Cin <= 0 || s->H <= 0 || s->W <= 0 || s->Cout <= 0)
        return sb_fail(err, SB_EINVAL,
                       "conv2d: sizes must be positive (B %lld, Cin %lld, H %lld, W %lld, Cout %lld)",
                       (long long)s->B, (long long)s->Cin, (long long)s->H, (long long)s->W,
                       (long long)s->Cout);
    if (s->kh <= 0 || s->kw <= 0 || s->stride <= 0 || s->pad < 0 || s->groups <= 0)
        return sb_fail(err, SB_EINVAL, "conv2d: bad kernel %dx%d / stride %d / pad %d / groups %d",
                       s->kh, s->kw, s->stride, s->pad, s->groups);
    if (s->Cin % s->groups || s->Cout % s->groups)
        return sb_fail(err, SB_EINVAL, "conv2d: Cin %lld and Cout %lld must be multiples of groups %d",
                       (long long)s->Cin, (long long)s->Cout, s->groups);
    if (s->OH <= 0 || s->OW <= 0)
        return sb_fail(err, SB_ESHAPE,
                       "conv2d: input %lldx%lld (pad %d) smaller than the kernel %dx%d",
                       (long long)s->H, (long long)s->W, s->pad, s->kh, s->kw);
    int64_t K = s->Cin / s->groups * s->kh * s->kw;
    if (!fits_int(K) || !fits_int(s->Cout) || !fits_int(s->OH * s->OW) || !fits_int(s->H * s->W))
        return sb_fail(err, SB_EUNSUPPORTED, "conv2d: sizes exceed the BLAS int range");
    return SB_OK;
}

static int64_t conv_tile_rows(int64_t K, int64_t OW, int64_t OH)
{
    int64_t row_bytes = K * OW * (int64_t)sizeof(float);
    int64_t rows = (int64_t)SB_CONV_TILE_BYTES / row_bytes;
    if (rows < 1)
        rows = 1;
    return rows < OH ? rows : OH;
}

static int conv_path(const conv_shape *s)
{
    if (s->Cin / s->groups == 1)
        return 1; /* direct (depthwise or a single input channel) */
    if (s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad == 0)
        return 2; /* 1x1: plain GEMM */
    return 3;     /* im2col + GEMM */
}

size_t sb_conv2d_scratch_bytes(int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int kh,
                               int kw, int stride, int pad, int groups)
{
    (void)B;
    (void)Cout;
    if (groups <= 0 || Cin % groups)
        return 0;
    conv_shape s = {B, Cin, H, W, Cout, sb_conv_out_size(H, kh, stride, pad),
                    sb_conv_out_size(W, kw, stride, pad), kh, kw, stride, pad, groups};
    if (s.OH <= 0 || s.OW <= 0 || conv_path(&s) != 3)
        return 0;
    int64_t K = Cin / groups * kh * kw;
    return round64((size_t)(K * conv_tile_rows(K, s.OW, s.OH) * s.OW) * sizeof(float));
}

/* y[i] += a * x[i]. Written in blocks of 8 so that gcc -O2 (whose "very
 * cheap" vectoriser skips loops that need an epilogue) emits 8-wide FMAs. */
static inline void dw_axpy(float *restrict y, const float *restrict x, float a, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float *restrict yy = y + i;
        const float *restrict xx = x + i;
        for (int k = 0; k < 8; k++)
            yy[k] += a * xx[k];
    }
    for (; i < n; i++)
        y[i] += a * x[i];
}

/* direct path: one input channel per group */
typedef struct {
    const conv_shape *s;
    const float *x, *w, *b;
    float *y;
} direct_job;

static void direct_planes(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const direct_job *j = arg;
    const conv_shape *s = j->s;
    const int64_t mult = s->Cout / s->groups; /* outputs per input channel */
    const int st = s->stride, pd = s->pad;
    for (int64_t pl = begin; pl < end; pl++) {
        int64_t bi = pl / s->Cout, co = pl % s->Cout, ci = co / mult;
        const float *xp = j->x + (bi * s->Cin + ci) * s->H * s->W;
        const float *wk = j->w + co * s->kh * s->kw;
        float *yp = j->y + pl * s->OH * s->OW;
        float bias = j->b ? j->b[co] : 0.0f;
        for (int64_t oy = 0; oy < s->OH; oy++) {
            float *orow = yp + oy * s->OW;
            for (int64_t ox = 0; ox < s->OW; ox++)
                orow[ox] = bias;
            for (int ky = 0; ky < s->kh; ky++) {
                int64_t iy = oy * st - pd + ky;
                if (iy < 0 || iy >= s->H)
                    continue;
                const float *xrow = xp + iy * s->W;
                for (int kx = 0; kx < s->kw; kx++) {
                    float wv = wk[ky * s->kw + kx];
                    /* valid ox: 0 <= ox*st - pd + kx < W */
                    int64_t lo = pd - kx > 0 ? (pd - kx + st - 1) / st : 0;
                    int64_t hi = (s->W - 1 + pd - kx) >= 0 ? (s->W - 1 + pd - kx) / st + 1 : 0;
                    if (hi > s->OW)
                        hi = s->OW;
                    if (st == 1) {
                        dw_axpy(orow + lo, xrow + lo - pd + kx, wv, hi - lo);
                    } else {
                        for (int64_t ox = lo; ox < hi; ox++)
                            orow[ox] += wv * xrow[ox * st - pd + kx];
                    }
                }
            }
        }
    }
}

/* im2col of one tile: rows (ci, ky, kx) of group g, output rows [oy0, oy0+nrows) */
typedef struct {
    const conv_shape *s;
    const float *x; /* image b, first channel of the group */
    float *col;     /* [K, nrows*OW] */
    int64_t oy0, nrows;
} im2col_job;

static void im2col_rows(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const im2col_job *j = arg;
    const conv_shape *s = j->s;
    const int st = s->stride, pd = s->pad;
    const int64_t N = j->nrows * s->OW, kk = (int64_t)s->kh * s->kw;
    for (int64_t r = begin; r < end; r++) {
        int64_t ci = r / kk, ky = (r % kk) / s->kw, kx = r % s->kw;
        const float *xp = j->x + ci * s->H * s->W;
        int64_t lo = pd - kx > 0 ? (pd - kx + st - 1) / st : 0;
        int64_t hi = (s->W - 1 + pd - kx) >= 0 ? (s->W - 1 + pd - kx) / st + 1 : 0;
        if (hi > s->OW)
            hi = s->OW;
        if (lo > hi)
            lo = hi;
        for (int64_t t = 0; t < j->nrows; t++) {
            float *dst = j->col + r * N + t * s->OW;
            int64_t iy = (j->oy0 + t) * st - pd + ky;
            if (iy < 0 || iy >= s->H) {
                memset(dst, 0, (size_t)s->OW * sizeof(float));
                continue;
            }
            const float *xrow = xp + iy * s->W;
            for (int64_t ox = 0; ox < lo; ox++)
                dst[ox] = 0.0f;
            if (st == 1) {
                memcpy(dst + lo, xrow + lo - pd + kx, (size_t)(hi - lo) * sizeof(float));
            } else {
                const float *xs = xrow - pd + kx;
                for (int64_t ox = lo; ox < hi; ox++)
                    dst[ox] = xs[ox * st];
            }
            for (int64_t ox = hi; ox < s->OW; ox++)
                dst[ox] = 0.0f;
        }
    }
}

static void fill_bias_rows(float *c, int64_t rows, int64_t n, int64_t ldc, const float *b)
{
    for (int64_t r = 0; r < rows; r++) {
        float v = b[r];
        float *p = c + r * ldc;
        for (int64_t i = 0; i < n; i++)
            p[i] = v;
    }
}

int sb_conv2d(sb_ctx *ctx, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
              const float *w, const float *b, int64_t Cout, int kh, int kw, int stride, int pad,
              int groups, float *y, sb_arena *scratch_arena, sb_error *err)
{
    conv_shape s = {B, Cin, H, W, Cout, sb_conv_out_size(H, kh, stride, pad),
                    sb_conv_out_size(W, kw, stride, pad), kh, kw, stride, pad, groups};
    int rc = conv_check(&s, x, w, y, err);
    if (rc)
        return rc;
    const int64_t Cg = Cin / groups, Cog = Cout / groups, K = Cg * kh * kw;
    const int64_t OHW = s.OH * s.OW, HW = H * W;
    int path = conv_path(&s);

    if (path == 1) {
        direct_job j = {&s, x, w, b, y};
        int64_t grain = 4096 / (OHW * kh * kw) + 1;
        sb_parallel_for(ctx, B * Cout, grain, direct_planes, &j);
        return SB_OK;
    }

    if (path == 2) {
        for (int64_t bi = 0; bi < B; bi++)
            for (int g = 0; g < groups; g++) {
                float *C = y + (bi * Cout + g * Cog) * OHW;
                float beta = 0.0f;
                if (b) {
                    fill_bias_rows(C, Cog, OHW, OHW, b + g * Cog);
                    beta = 1.0f;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cog, (int)HW, (int)K,
                            1.0f, w + g * Cog * K, (int)K, x + (bi * Cin + g * Cg) * HW, (int)HW,
                            beta, C, (int)OHW);
            }
        return SB_OK;
    }

    const int64_t rows = conv_tile_rows(K, s.OW, s.OH);
    scratch sc;
    float *col = scratch_get(&sc, scratch_arena, (size_t)(K * rows * s.OW) * sizeof(float),
                             "conv2d im2col tile", err);
    if (!col)
        return err ? err->code : SB_ENOMEM;
    int64_t grain = 8192 / (rows * s.OW) + 1;
    for (int64_t bi = 0; bi < B; bi++)
        for (int g = 0; g < groups; g++)
            for (int64_t oy0 = 0; oy0 < s.OH; oy0 += rows) {
                int64_t nr = s.OH - oy0 < rows ? s.OH - oy0 : rows;
                int64_t N = nr * s.OW;
                im2col_job j = {&s, x + (bi * Cin + g * Cg) * HW, col, oy0, nr};
                sb_parallel_for(ctx, K, grain, im2col_rows, &j);
                float *C = y + (bi * Cout + g * Cog) * OHW + oy0 * s.OW;
                float beta = 0.0f;
                if (b) {
                    fill_bias_rows(C, Cog, N, OHW, b + g * Cog);
                    beta = 1.0f;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Cog, (int)N, (int)K,
                            1.0f, w + g * Cog * K, (int)K, col, (int)N, beta, C, (int)OHW);
            }
    scratch_put(&sc);
    return SB_OK;
}

/* ---- ConvTranspose2d k2 s2 -------------------------------------------------- */

/*
 * T[(o,dy,dx), p] = sum_i W[i, (o,dy,dx)] x[i, p] is one GEMM with the
 * weight viewed as [Cin, Cout*4] (MODEL.md 6.14: [in, out, kH, kW]) and
 * transposed; the scatter puts T into the 2x-upsampled grid and adds the
 * bias. Tiled over input rows like conv2d.
 */
typedef struct {
    const float *T, *b;
    float *y; /* image b */
    int64_t Cout, W, nrows, iy0, OW, OHW;
} scatter_job;

static void ct_scatter(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const scatter_job *j = arg;
    const int64_t N = j->nrows * j->W;
    for (int64_t r = begin; r < end; r++) { /* r = o * nrows + t */
        int64_t o = r / j->nrows, t = r % j->nrows;
        float bias = j->b ? j->b[o] : 0.0f;
        for (int dy = 0; dy < 2; dy++) {
            const float *t0 = j->T + (o * 4 + dy * 2 + 0) * N + t * j->W;
            const float *t1 = j->T + (o * 4 + dy * 2 + 1) * N + t * j->W;
            float *dst = j->y + o * j->OHW + (2 * (j->iy0 + t) + dy) * j->OW;
            for (int64_t ix = 0; ix < j->W; ix++) {
                dst[2 * ix] = t0[ix] + bias;
                dst[2 * ix + 1] = t1[ix] + bias;
            }
        }
    }
}

size_t sb_conv_transpose2x2_scratch_bytes(int64_t Cout, int64_t H, int64_t W)
{
    if (Cout <= 0 || H <= 0 || W <= 0)
        return 0;
    int64_t row = Cout * 4 * W * (int64_t)sizeof(float);
    int64_t rows = (int64_t)SB_CONV_TILE_BYTES / row;
    rows = rows < 1 ? 1 : (rows < H ? rows : H);
    return round64((size_t)(row * rows));
}

int sb_conv_transpose2x2(sb_ctx *ctx, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
                         const float *w, const float *b, int64_t Cout, float *y,
                         sb_arena *scratch_arena, sb_error *err)
{
    if (!x || !w || !y)
        return sb_fail(err, SB_EINVAL, "conv_transpose2x2: NULL tensor pointer");
    if (B <= 0 || Cin <= 0 || H <= 0 || W <= 0 || Cout <= 0)
        return sb_fail(err, SB_EINVAL,
                       "conv_transpose2x2: sizes must be positive (B %lld, Cin %lld, H %lld, W %lld, Cout %lld)",
                       (long long)B, (long long)Cin, (long long)H, (long long)W, (long long)Cout);
    if (!fits_int(Cin) || !fits_int(Cout * 4) || !fits_int(H * W))
        return sb_fail(err, SB_EUNSUPPORTED, "conv_transpose2x2: sizes exceed the BLAS int range");
    const int64_t row = Cout * 4 * W;
    int64_t rows = (int64_t)SB_CONV_TILE_BYTES / (row * (int64_t)sizeof(float));
    rows = rows < 1 ? 1 : (rows < H ? rows : H);
    scratch sc;
    float *T = scratch_get(&sc, scratch_arena, (size_t)(row * rows) * sizeof(float),
                           "conv_transpose2x2 tile", err);
    if (!T)
        return err ? err->code : SB_ENOMEM;
    const int64_t HW = H * W, OW = 2 * W, OHW = 4 * HW;
    for (int64_t bi = 0; bi < B; bi++)
        for (int64_t iy0 = 0; iy0 < H; iy0 += rows) {
            int64_t nr = H - iy0 < rows ? H - iy0 : rows;
            int64_t N = nr * W;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(Cout * 4), (int)N, (int)Cin,
                        1.0f, w, (int)(Cout * 4), x + bi * Cin * HW + iy0 * W, (int)HW, 0.0f, T,
                        (int)N);
            scatter_job j = {T, b, y + bi * Cout * OHW, Cout, W, nr, iy0, OW, OHW};
            sb_parallel_for(ctx, Cout * nr, 4096 / (4 * W) + 1, ct_scatter, &j);
        }
    scratch_put(&sc);
    return SB_OK;
}

/* ---- Conv3d 3x3x3, padding 1, channels-last -------------------------------- */

/*
 * For output frame t only the kernel time slices kt with 0 <= t+kt-1 < T
 * touch data (zero padding in time, MODEL.md 2.2.5: with T = 2 frame 0 uses
 * slices 1,2 and frame 1 slices 0,1), so the column matrix of frame t holds
 * just those slices: K_t = nk*9*Cin. Rows are output positions
 * (channels-last im2col: each entry is Cin contiguous values), the weight is
 * repacked once to Wp[Cout][kt][kh][kw][Cin] so a kt range is one
 * contiguous slab, and Y[P, Cout] = col[P, K_t] * slab^T. Tiles hold whole
 * frames of one t; results are staged and copied (with the bias) into y.
 */
typedef struct {
    const float *x;
    float *col;
    int64_t T, H, W, Cin, t, kt0, nk, n0;
} c3_im2col_job;

static void c3_im2col(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const c3_im2col_job *j = arg;
    const int64_t HW = j->H * j->W, K = j->nk * 9 * j->Cin;
    const size_t cb = (size_t)j->Cin * sizeof(float);
    for (int64_t p = begin; p < end; p++) {
        int64_t n = j->n0 + p / HW, yx = p % HW, h = yx / j->W, w = yx % j->W;
        float *dst = j->col + p * K;
        for (int64_t a = 0; a < j->nk; a++) {
            int64_t ti = j->t + j->kt0 + a - 1; /* valid by construction */
            const float *frame = j->x + (n * j->T + ti) * HW * j->Cin;
            for (int kh = 0; kh < 3; kh++) {
                int64_t ih = h + kh - 1;
                if (ih >= 0 && ih < j->H && w >= 1 && w + 1 < j->W) {
                    /* interior: the three kw taps are contiguous (channels-last) */
                    memcpy(dst, frame + (ih * j->W + w - 1) * j->Cin, 3 * cb);
                    dst += 3 * j->Cin;
                    continue;
                }
                for (int kw = 0; kw < 3; kw++, dst += j->Cin) {
                    int64_t iw = w + kw - 1;
                    if (ih < 0 || ih >= j->H || iw < 0 || iw >= j->W)
                        memset(dst, 0, cb);
                    else
                        memcpy(dst, frame + (ih * j->W + iw) * j->Cin, cb);
                }
            }
        }
    }
}

typedef struct {
    const float *stage, *b;
    float *y;
    int64_t T, HW, Cout, t, n0;
} c3_copy_job;

static void c3_copy(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const c3_copy_job *j = arg;
    for (int64_t p = begin; p < end; p++) {
        int64_t n = j->n0 + p / j->HW, yx = p % j->HW;
        const float *src = j->stage + p * j->Cout;
        float *dst = j->y + ((n * j->T + j->t) * j->HW + yx) * j->Cout;
        if (j->b)
            for (int64_t c = 0; c < j->Cout; c++)
                dst[c] = src[c] + j->b[c];
        else
            memcpy(dst, src, (size_t)j->Cout * sizeof(float));
    }
}

static int64_t c3_nk_max(int64_t T) { return T >= 3 ? 3 : T; }

static int64_t c3_tile_frames(int64_t N, int64_t T, int64_t HW, int64_t Cin, int64_t Cout)
{
    int64_t per_frame = HW * (c3_nk_max(T) * 9 * Cin + Cout) * (int64_t)sizeof(float);
    int64_t f = (int64_t)SB_CONV_TILE_BYTES / per_frame;
    f = f < 1 ? 1 : f;
    return f < N ? f : N;
}

size_t sb_conv3d_3x3x3_cl_scratch_bytes(int64_t N, int64_t T, int64_t H, int64_t W, int64_t Cin,
                                        int64_t Cout)
{
    if (N <= 0 || T <= 0 || H <= 0 || W <= 0 || Cin <= 0 || Cout <= 0)
        return 0;
    int64_t HW = H * W, f = c3_tile_frames(N, T, HW, Cin, Cout);
    size_t wp = round64((size_t)(Cout * 27 * Cin) * sizeof(float));
    size_t col = round64((size_t)(f * HW * c3_nk_max(T) * 9 * Cin) * sizeof(float));
    size_t st = round64((size_t)(f * HW * Cout) * sizeof(float));
    return wp + col + st;
}

int sb_conv3d_3x3x3_cl(sb_ctx *ctx, const float *x, int64_t N, int64_t T, int64_t H, int64_t W,
                       int64_t Cin, const float *w, const float *b, int64_t Cout, float *y,
                       sb_arena *scratch_arena, sb_error *err)
{
    if (!x || !w || !y)
        return sb_fail(err, SB_EINVAL, "conv3d: NULL tensor pointer");
    if (N <= 0 || T <= 0 || H <= 0 || W <= 0 || Cin <= 0 || Cout <= 0)
        return sb_fail(err, SB_EINVAL,
                       "conv3d: sizes must be positive (N %lld, T %lld, H %lld, W %lld, Cin %lld, Cout %lld)",
                       (long long)N, (long long)T, (long long)H, (long long)W, (long long)Cin,
                       (long long)Cout);
    const int64_t HW = H * W, f = c3_tile_frames(N, T, HW, Cin, Cout);
    if (!fits_int(27 * Cin) || !fits_int(Cout) || !fits_int(f * HW))
        return sb_fail(err, SB_EUNSUPPORTED, "conv3d: sizes exceed the BLAS int range");
    const size_t wp_b = round64((size_t)(Cout * 27 * Cin) * sizeof(float));
    const size_t col_b = round64((size_t)(f * HW * c3_nk_max(T) * 9 * Cin) * sizeof(float));
    const size_t st_b = round64((size_t)(f * HW * Cout) * sizeof(float));
    scratch sc;
    float *mem = scratch_get(&sc, scratch_arena, wp_b + col_b + st_b, "conv3d scratch", err);
    if (!mem)
        return err ? err->code : SB_ENOMEM;
    float *Wp = mem, *col = (float *)((char *)mem + wp_b), *stage = (float *)((char *)col + col_b);
    /* Wp[co][kt][kh][kw][ci] = w[co][ci][kt][kh][kw] */
    for (int64_t co = 0; co < Cout; co++)
        for (int64_t ci = 0; ci < Cin; ci++)
            for (int k = 0; k < 27; k++)
                Wp[(co * 27 + k) * Cin + ci] = w[(co * Cin + ci) * 27 + k];
    for (int64_t t = 0; t < T; t++) {
        int64_t kt0 = t >= 1 ? 0 : 1, kt1 = T + 1 - t < 3 ? T + 1 - t : 3;
        int64_t nk = kt1 - kt0, K = nk * 9 * Cin;
        for (int64_t n0 = 0; n0 < N; n0 += f) {
            int64_t nf = N - n0 < f ? N - n0 : f, P = nf * HW;
            c3_im2col_job ij = {x, col, T, H, W, Cin, t, kt0, nk, n0};
            sb_parallel_for(ctx, P, 64, c3_im2col, &ij);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)P, (int)Cout, (int)K, 1.0f,
                        col, (int)K, Wp + kt0 * 9 * Cin, (int)(27 * Cin), 0.0f, stage, (int)Cout);
            c3_copy_job cj = {stage, b, y, T, HW, Cout, t, n0};
            sb_parallel_for(ctx, P, 256, c3_copy, &cj);
        }
    }
    scratch_put(&sc);
    return SB_OK;
}

/* ---- max-pool 2x2 on NHWC --------------------------------------------------- */

typedef struct {
    const float *x;
    float *y;
    int64_t H, W, C, OH, OW;
} pool_job;

static inline float max_nan(float a, float b) { return (b > a || isnan(b)) ? b : a; }

static void pool_rows(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const pool_job *j = arg;
    for (int64_t r = begin; r < end; r++) { /* r = b * OH + oy */
        int64_t bi = r / j->OH, oy = r % j->OH;
        const float *r0 = j->x + ((bi * j->H + 2 * oy) * j->W) * j->C;
        const float *r1 = r0 + j->W * j->C;
        float *dst = j->y + r * j->OW * j->C;
        for (int64_t ox = 0; ox < j->OW; ox++) {
            const float *a = r0 + 2 * ox * j->C, *bb = a + j->C, *c = r1 + 2 * ox * j->C,
                        *d = c + j->C;
            float *o = dst + ox * j->C;
            for (int64_t k = 0; k < j->C; k++)
                o[k] = max_nan(max_nan(max_nan(a[k], bb[k]), c[k]), d[k]);
        }
    }
}

void sb_maxpool2x2_nhwc(sb_ctx *ctx, const float *x, int64_t B, int64_t H, int64_t W, int64_t C,
                        float *y)
{
    pool_job j = {x, y, H, W, C, H / 2, W / 2};
    if (B <= 0 || C <= 0 || j.OH <= 0 || j.OW <= 0)
        return;
    sb_parallel_for(ctx, B * j.OH, 16384 / (j.OW * C) + 1, pool_rows, &j);
}

/* ---- window partition ------------------------------------------------------- */

typedef struct {
    const float *x;
    float *y;
    int64_t H, W, C, ws, nWy, nWx;
} win_job;

static void win_part_rows(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const win_job *j = arg;
    for (int64_t r = begin; r < end; r++) { /* r = window * ws + row-in-window */
        int64_t win = r / j->ws, ry = r % j->ws;
        int64_t bi = win / (j->nWy * j->nWx), wy = (win / j->nWx) % j->nWy, wx = win % j->nWx;
        int64_t iy = wy * j->ws + ry, ix0 = wx * j->ws;
        float *dst = j->y + r * j->ws * j->C;
        int64_t cnt = (iy < j->H) ? (j->W - ix0 < j->ws ? j->W - ix0 : j->ws) : 0;
        if (cnt > 0)
            memcpy(dst, j->x + ((bi * j->H + iy) * j->W + ix0) * j->C,
                   (size_t)(cnt * j->C) * sizeof(float));
        if (cnt < j->ws)
            memset(dst + cnt * j->C, 0, (size_t)((j->ws - cnt) * j->C) * sizeof(float));
    }
}

static void win_unpart_rows(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const win_job *j = arg;
    for (int64_t r = begin; r < end; r++) { /* r = b * H + iy */
        int64_t bi = r / j->H, iy = r % j->H, wy = iy / j->ws, ry = iy % j->ws;
        for (int64_t wx = 0; wx < j->nWx; wx++) {
            int64_t ix0 = wx * j->ws, cnt = j->W - ix0 < j->ws ? j->W - ix0 : j->ws;
            const float *src =
                j->x + ((((bi * j->nWy + wy) * j->nWx + wx) * j->ws + ry) * j->ws) * j->C;
            memcpy(j->y + (r * j->W + ix0) * j->C, src, (size_t)(cnt * j->C) * sizeof(float));
        }
    }
}

void sb_window_partition(sb_ctx *ctx, const float *x, int64_t B, int64_t H, int64_t W, int64_t C,
                         int64_t ws, float *y)
{
    if (B <= 0 || H <= 0 || W <= 0 || C <= 0 || ws <= 0)
        return;
    win_job j = {x, y, H, W, C, ws, (H + ws - 1) / ws, (W + ws - 1) / ws};
    sb_parallel_for(ctx, B * j.nWy * j.nWx * ws, 8192 / (ws * C) + 1, win_part_rows, &j);
}

void sb_window_unpartition(sb_ctx *ctx, const float *x, int64_t B, int64_t H, int64_t W, int64_t C,
                           int64_t ws, float *y)
{
    if (B <= 0 || H <= 0 || W <= 0 || C <= 0 || ws <= 0)
        return;
    win_job j = {x, y, H, W, C, ws, (H + ws - 1) / ws, (W + ws - 1) / ws};
    sb_parallel_for(ctx, B * H, 8192 / (W * C) + 1, win_unpart_rows, &j);
}
