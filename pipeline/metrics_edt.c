/*
 * Exact anisotropic Euclidean distance transform (squared), separable:
 * the first pass is the 1-D distance to the nearest feature on each line,
 * the next passes take the lower envelope of parabolas
 * (Felzenszwalb & Huttenlocher, "Distance Transforms of Sampled Functions",
 * Theory of Computing 8, 2012), each linear in the line length.
 *
 * Rounding: every pass adds (d * s)^2, computed as t = (double)d * s; t * t,
 * to the value of the previous passes; this file is compiled without
 * floating-point contraction so no fused multiply-add changes that rounding
 * (scipy's EDT sums the per-axis squares the same way, metrics.h).
 */
#pragma GCC optimize("fp-contract=off")

#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Large scratch: 2 MiB aligned and advised as huge pages, so a fresh
 * multi-megabyte buffer costs a handful of page faults instead of
 * thousands (they dominate on virtual machines). Freed with free(). */
static void *big_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes < 4 * huge)
        return malloc(bytes ? bytes : 1);
    size_t rounded = (bytes + huge - 1) / huge * huge;
    void *p = NULL;
    if (posix_memalign(&p, huge, rounded) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

#define TILE_W 16

static inline int bit_at(const uint64_t *row, int64_t i) { return (int)((row[i >> 6] >> (i & 63)) & 1); }

#define D_INF INT32_MAX

/* 1-D distance (in voxels) to the nearest set bit of a bitmap row of n bits,
 * D_INF if none; skips zero words. Returns 0 if the row has no bit set. */
static int row_dist(const uint64_t *row, int64_t n, int32_t *d)
{
    const int64_t W = (n + 63) / 64;
    int64_t last = -1;
    for (int64_t w = 0; w < W; w++) {
        uint64_t word = row[w];
        int64_t i0 = w * 64, i1 = i0 + 64 < n ? i0 + 64 : n;
        if (!word) {
            if (last < 0)
                for (int64_t i = i0; i < i1; i++)
                    d[i] = D_INF;
            else
                for (int64_t i = i0; i < i1; i++)
                    d[i] = (int32_t)(i - last);
            continue;
        }
        for (int64_t i = i0; i < i1; i++) {
            if ((word >> (i - i0)) & 1)
                last = i;
            d[i] = last >= 0 ? (int32_t)(i - last) : D_INF;
        }
    }
    if (last < 0)
        return 0;
    int64_t next = -1;
    for (int64_t w = W - 1; w >= 0; w--) {
        uint64_t word = row[w];
        int64_t i0 = w * 64, i1 = i0 + 64 < n ? i0 + 64 : n;
        if (!word) {
            if (next >= 0)
                for (int64_t i = i0; i < i1; i++) {
                    int32_t c = (int32_t)(next - i);
                    d[i] = c < d[i] ? c : d[i];
                }
            continue;
        }
        for (int64_t i = i1 - 1; i >= i0; i--) {
            if ((word >> (i - i0)) & 1)
                next = i;
            if (next >= 0 && (int32_t)(next - i) < d[i])
                d[i] = (int32_t)(next - i);
        }
    }
    return 1;
}

typedef struct {
    double *out;
    const uint8_t *feature;
    const uint8_t *need;
    int64_t len, stride, W, tiles_per_outer;
    double s;
    int first;
    /* per worker scratch */
    double *scratch_f, *scratch_d, *scratch_z, *scratch_inv;
    int32_t *scratch_v;
} edt_pass;

/*
 * Lower envelope of the parabolas w (q - p)^2 + f[p] over one column of a
 * tile (element q at f[q * W]); sites with f = inf are skipped. The
 * breakpoints only choose the candidate sites: each output takes the
 * smallest exactly computed value t*t + f[p] (t = (q - p) s) among the
 * chosen site and its envelope neighbours, so the rounding of a breakpoint
 * can never change the value.
 */
static void envelope(const double *f, double *d, int64_t n, int64_t W, double s, const double *inv,
                     double *z, int32_t *v)
{
    const double w = s * s;
    int64_t k = -1;
    for (int64_t q = 0; q < n; q++) {
        double fqv = f[q * W];
        if (!(fqv < INFINITY))
            continue;
        double fq = fqv + w * (double)q * (double)q;
        for (;;) {
            if (k < 0) {
                k = 0;
                v[0] = (int32_t)q;
                z[0] = -INFINITY;
                break;
            }
            int64_t p = v[k];
            double fp = f[p * W] + w * (double)p * (double)p;
            double x = (fq - fp) * inv[q - p];
            if (x <= z[k]) {
                k--;
                continue;
            }
            k++;
            v[k] = (int32_t)q;
            z[k] = x;
            break;
        }
    }
    if (k < 0) {
        for (int64_t q = 0; q < n; q++)
            d[q * W] = INFINITY;
        return;
    }
    const int64_t nk = k + 1;
    int64_t j = 0;
    z[nk] = INFINITY;
    for (int64_t q = 0; q < n; q++) {
        while (j + 1 < nk && z[j + 1] < (double)q)
            j++;
        int64_t j0 = j > 0 ? j - 1 : 0, j1 = j + 1 < nk ? j + 1 : j;
        double best = INFINITY;
        for (int64_t jj = j0; jj <= j1; jj++) {
            double t = (double)(q - v[jj]) * s;
            double val = t * t + f[(int64_t)v[jj] * W];
            if (val < best)
                best = val;
        }
        d[q * W] = best;
    }
}

static void edt_pass_range(void *arg, int64_t begin, int64_t end, int worker)
{
    edt_pass *P = arg;
    const int64_t n = P->len, st = P->stride, W = P->W;
    double *f = P->scratch_f + (size_t)worker * (size_t)(n * W);
    double *d = P->scratch_d + (size_t)worker * (size_t)(n * W);
    double *z = P->scratch_z + (size_t)worker * (size_t)(n + 1);
    int32_t *v = P->scratch_v + (size_t)worker * (size_t)n;
    for (int64_t t = begin; t < end; t++) {
        int64_t outer = t / P->tiles_per_outer, inner0 = (t % P->tiles_per_outer) * W;
        int64_t w = st - inner0 < W ? st - inner0 : W;
        int64_t base = outer * n * st + inner0;
        int need_col[TILE_W];
        int any = 1;
        if (P->need) {
            any = 0;
            for (int64_t c = 0; c < w; c++)
                need_col[c] = 0;
            for (int64_t q = 0; q < n; q++) {
                const uint8_t *nr = P->need + base + q * st;
                for (int64_t c = 0; c < w; c++)
                    need_col[c] |= nr[c] != 0;
            }
            for (int64_t c = 0; c < w; c++)
                any |= need_col[c];
        } else {
            for (int64_t c = 0; c < w; c++)
                need_col[c] = 1;
        }
        if (!any)
            continue;
        if (P->first) {
            /* 1-D distance (in voxels) to the nearest feature on the line, two sweeps */
            for (int64_t c = 0; c < w; c++) {
                if (!need_col[c])
                    continue;
                const uint8_t *ft = P->feature + base + c;
                int64_t last = -1;
                for (int64_t q = 0; q < n; q++) {
                    if (ft[q * st])
                        last = q;
                    f[q * W + c] = last >= 0 ? (double)(q - last) : INFINITY;
                }
                last = -1;
                for (int64_t q = n - 1; q >= 0; q--) {
                    if (ft[q * st])
                        last = q;
                    if (last >= 0 && (double)(last - q) < f[q * W + c])
                        f[q * W + c] = (double)(last - q);
                }
            }
            for (int64_t q = 0; q < n; q++) {
                double *o = P->out + base + q * st;
                for (int64_t c = 0; c < w; c++) {
                    if (!need_col[c])
                        continue;
                    double dv = f[q * W + c];
                    double tt = dv * P->s;
                    o[c] = dv < INFINITY ? tt * tt : INFINITY;
                }
            }
            continue;
        }
        for (int64_t q = 0; q < n; q++) {
            const double *src = P->out + base + q * st;
            for (int64_t c = 0; c < w; c++)
                f[q * W + c] = src[c];
        }
        for (int64_t c = 0; c < w; c++)
            if (need_col[c])
                envelope(f + c, d + c, n, W, P->s, P->scratch_inv, z, v);
        for (int64_t q = 0; q < n; q++) {
            double *o = P->out + base + q * st;
            for (int64_t c = 0; c < w; c++)
                if (need_col[c])
                    o[c] = d[q * W + c];
        }
    }
}

static int edt_run(sb_ctx *ctx, const uint8_t *feature, int ndim, const int64_t *dims,
                   const double *spacing, const int *order, int npasses, const uint8_t *need, double *out,
                   sb_error *err)
{
    if (ndim < 1 || ndim > 3)
        return sb_fail(err, SB_EINVAL, "distance transform: %d dimensions (1 to 3 supported)", ndim);
    int64_t total = 1, maxlen = 1;
    for (int a = 0; a < ndim; a++) {
        if (dims[a] < 1)
            return sb_fail(err, SB_EINVAL, "distance transform: dimension %d has size %lld", a,
                           (long long)dims[a]);
        if (!(spacing[a] > 0) || !isfinite(spacing[a]))
            return sb_fail(err, SB_EINVAL, "distance transform: spacing %g on axis %d", spacing[a], a);
        total *= dims[a];
        if (dims[a] > maxlen)
            maxlen = dims[a];
    }
    int ord[3] = {0, 1, 2};
    if (order) {
        int seen = 0;
        for (int a = 0; a < ndim; a++) {
            if (order[a] < 0 || order[a] >= ndim || (seen >> order[a]) & 1)
                return sb_fail(err, SB_EINVAL, "distance transform: bad axis order");
            seen |= 1 << order[a];
            ord[a] = order[a];
        }
    }
    int threads = ctx ? sb_ctx_threads(ctx) : 1;
    edt_pass P;
    memset(&P, 0, sizeof P);
    size_t T = (size_t)threads, L = (size_t)maxlen;
    P.scratch_f = malloc(sizeof(double) * T * L * TILE_W);
    P.scratch_d = malloc(sizeof(double) * T * L * TILE_W);
    P.scratch_z = malloc(sizeof(double) * T * (L + 1));
    P.scratch_v = malloc(sizeof(int32_t) * T * L);
    P.scratch_inv = malloc(sizeof(double) * L);
    if (!P.scratch_f || !P.scratch_d || !P.scratch_z || !P.scratch_v || !P.scratch_inv) {
        free(P.scratch_f);
        free(P.scratch_d);
        free(P.scratch_z);
        free(P.scratch_v);
        free(P.scratch_inv);
        return sb_fail(err, SB_ENOMEM, "distance transform: out of memory for line buffers");
    }
    P.out = out;
    P.feature = feature;
    for (int pass = 0; pass < npasses; pass++) {
        int a = ord[pass];
        int64_t st = 1;
        for (int b = a + 1; b < ndim; b++)
            st *= dims[b];
        P.len = dims[a];
        P.stride = st;
        P.W = st < TILE_W ? st : TILE_W;
        P.tiles_per_outer = (st + P.W - 1) / P.W;
        P.s = spacing[a];
        P.first = pass == 0;
        P.need = pass == npasses - 1 ? need : NULL;
        const double w = P.s * P.s;
        P.scratch_inv[0] = 0.0;
        for (int64_t i = 1; i < dims[a]; i++)
            P.scratch_inv[i] = 1.0 / (2.0 * w * (double)i);
        int64_t ntiles = total / dims[a] / st * P.tiles_per_outer;
        sb_parallel_for(ctx, ntiles, 16, edt_pass_range, &P);
    }
    free(P.scratch_f);
    free(P.scratch_d);
    free(P.scratch_z);
    free(P.scratch_v);
    free(P.scratch_inv);
    return SB_OK;
}

int sb_edt_sq(sb_ctx *ctx, const uint8_t *feature, int ndim, const int64_t *dims,
              const double *spacing, const int *order, const uint8_t *need, double *out,
              sb_error *err)
{
    return edt_run(ctx, feature, ndim, dims, spacing, order, ndim, need, out, err);
}

/* ---- distances at query voxels ----------------------------------------- */

/*
 * The last pass at single voxels: min over p of (t = (q - p) s)^2 + f[p]
 * along the line, searched outwards from q and stopped once (r s)^2 alone
 * reaches the best value (f >= 0): the same expression and the same minimum
 * as the lower envelope, in O(distance / s) per query instead of O(line).
 * f == NULL: the line is the feature line itself (1-D case, f = 0 or inf).
 */
static double line_search(const double *f, const uint8_t *feat, int64_t base, int64_t st, int64_t n,
                          int64_t q, double s)
{
    double best = INFINITY;
    for (int64_t r = 0; r < n; r++) {
        double t = (double)r * s, t2 = t * t;
        if (t2 >= best)
            break;
        int64_t ps[2] = {q - r, q + r};
        for (int side = 0; side < (r ? 2 : 1); side++) {
            int64_t pp = ps[side];
            if (pp < 0 || pp >= n)
                continue;
            double fv = f ? f[base + pp * st] : (feat[base + pp * st] ? 0.0 : INFINITY);
            double tt = (double)(q - pp) * s;
            double val = tt * tt + fv;
            if (val < best)
                best = val;
        }
        if (q - r < 0 && q + r >= n)
            break;
    }
    return best;
}

typedef struct {
    const double *map;
    const uint8_t *feature;
    const int64_t *query;
    double *out;
    int64_t st, n;
    double s;
    /* fused 3-D: columns */
    const int32_t *cidx;
    int64_t plane;
} search_job;

static void search_range(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    search_job *J = arg;
    for (int64_t i = begin; i < end; i++) {
        int64_t x = J->query[i];
        if (J->cidx) {
            int64_t base = (int64_t)J->cidx[x % J->plane];
            J->out[i] = line_search(J->map, NULL, base, J->st, J->n, x / J->plane, J->s);
        } else {
            int64_t q = (x / J->st) % J->n;
            int64_t base = x - q * J->st;
            J->out[i] = line_search(J->map, J->feature, base, J->st, J->n, q, J->s);
        }
    }
}

typedef struct {
    const uint64_t *bits;
    int64_t W;
    int64_t B0, B1, B2;
    double s0, s1, s2;
    const int32_t *cidx;   /* B1*B2 -> compact column or -1 */
    const uint8_t *ineed;  /* B2: some query column has this i */
    int64_t nq_cols;
    double *C;             /* B0 x nq_cols (plane-major) */
    double *planes;        /* per worker B1*B2 */
    double *tf, *td, *z, *inv1;
    int32_t *v, *di;
    int64_t maxlen;
} fused_job;

/* Passes along axes 2 and 1 of plane k, kept columns copied into C. */
static void fused_planes(void *arg, int64_t begin, int64_t end, int worker)
{
    fused_job *J = arg;
    const int64_t B1 = J->B1, B2 = J->B2, L = J->maxlen;
    double *plane = J->planes + (size_t)worker * (size_t)(B1 * B2);
    double *tf = J->tf + (size_t)worker * (size_t)(L * TILE_W);
    double *td = J->td + (size_t)worker * (size_t)(L * TILE_W);
    double *z = J->z + (size_t)worker * (size_t)(L + 1);
    int32_t *v = J->v + (size_t)worker * (size_t)L;
    for (int64_t k = begin; k < end; k++) {
        int any = 0;
        /* pass along axis 2 (contiguous rows) */
        int32_t *di = J->di + (size_t)worker * (size_t)B2;
        for (int64_t j = 0; j < B1; j++) {
            double *o = plane + j * B2;
            if (!row_dist(J->bits + (k * B1 + j) * J->W, B2, di)) {
                for (int64_t i = 0; i < B2; i++)
                    o[i] = INFINITY;
                continue;
            }
            any = 1;
            for (int64_t i = 0; i < B2; i++) {
                double t = (double)di[i] * J->s2;
                o[i] = di[i] != D_INF ? t * t : INFINITY;
            }
        }
        if (!any) {
            for (int64_t c = 0; c < J->nq_cols; c++)
                J->C[k * J->nq_cols + c] = INFINITY;
            continue;
        }
        /* pass along axis 1 in tiles of TILE_W columns */
        for (int64_t i0 = 0; i0 < B2; i0 += TILE_W) {
            int64_t w = B2 - i0 < TILE_W ? B2 - i0 : TILE_W;
            int needed = 0;
            for (int64_t c = 0; c < w; c++)
                needed |= J->ineed[i0 + c];
            if (!needed)
                continue;
            for (int64_t j = 0; j < B1; j++)
                for (int64_t c = 0; c < w; c++)
                    tf[j * TILE_W + c] = plane[j * B2 + i0 + c];
            for (int64_t c = 0; c < w; c++)
                if (J->ineed[i0 + c])
                    envelope(tf + c, td + c, B1, TILE_W, J->s1, J->inv1, z, v);
            for (int64_t j = 0; j < B1; j++)
                for (int64_t c = 0; c < w; c++) {
                    int32_t ci = J->cidx[j * B2 + i0 + c];
                    if (ci >= 0)
                        J->C[k * J->nq_cols + ci] = td[j * TILE_W + c];
                }
        }
    }
}

/*
 * 2-D: the first pass (along axis a0) reduces, on each line along a0, to
 * the nearest feature of that line; the features of every line are kept as
 * a sorted list (built from the bitmap in one scan, O(features)) and looked
 * up by binary search. The last pass is the outward search along a1 at each
 * query, stopped once (r s1)^2 reaches the best value. Values are
 * ((d0 s0)^2 + (d1 s1)^2), the same expression as the separable EDT.
 */
typedef struct {
    const int64_t *start; /* per line: offset into xs (n_lines + 1) */
    const int32_t *xs;    /* feature coordinates along a0, sorted per line */
    const int64_t *query;
    double *out;
    int64_t n_lines;      /* extent along a1 */
    int o0;               /* memory axis of a0 */
    int64_t n1mem;        /* memory row length (for decoding queries) */
    double s0, s1;
} search2d_job;

static void search2d_range(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    search2d_job *J = arg;
    for (int64_t i = begin; i < end; i++) {
        int64_t x = J->query[i], row = x / J->n1mem, col = x % J->n1mem;
        /* c0: coordinate along a0, c1: along a1 */
        int64_t c0 = J->o0 == 1 ? col : row, c1 = J->o0 == 1 ? row : col;
        double best = INFINITY;
        for (int64_t r = 0; r < J->n_lines; r++) {
            double t = (double)r * J->s1, t2 = t * t;
            if (t2 >= best)
                break;
            if (c1 - r < 0 && c1 + r >= J->n_lines)
                break;
            int64_t ls[2] = {c1 - r, c1 + r};
            for (int side = 0; side < (r ? 2 : 1); side++) {
                int64_t l = ls[side];
                if (l < 0 || l >= J->n_lines)
                    continue;
                const int32_t *xs = J->xs + J->start[l];
                int64_t m = J->start[l + 1] - J->start[l];
                if (m == 0)
                    continue;
                /* first feature >= c0 */
                int64_t lo = 0, hi = m;
                while (lo < hi) {
                    int64_t mid = (lo + hi) / 2;
                    if (xs[mid] < c0)
                        lo = mid + 1;
                    else
                        hi = mid;
                }
                int64_t d0 = INT64_MAX;
                if (lo < m)
                    d0 = xs[lo] - c0;
                if (lo > 0 && c0 - xs[lo - 1] < d0)
                    d0 = c0 - xs[lo - 1];
                double a = (double)d0 * J->s0;
                double tt = (double)(c1 - l) * J->s1;
                double val = a * a + tt * tt;
                if (val < best)
                    best = val;
            }
        }
        J->out[i] = best;
    }
}

static int edt_at_2d(sb_ctx *ctx, const uint64_t *bits, int64_t W, const int64_t *dims, const double *spacing,
                     const int *order, const int64_t *query, int64_t nq, double *out, sb_error *err)
{
    int o0 = order ? order[0] : 0, o1 = order ? order[1] : 1;
    if ((o0 != 0 && o0 != 1) || o1 != 1 - o0)
        return sb_fail(err, SB_EINVAL, "distance transform: bad axis order");
    for (int a = 0; a < 2; a++) {
        if (dims[a] < 1 || dims[a] >= INT32_MAX)
            return sb_fail(err, SB_EINVAL, "distance transform: dimension %d has size %lld", a,
                           (long long)dims[a]);
        if (!(spacing[a] > 0) || !isfinite(spacing[a]))
            return sb_fail(err, SB_EINVAL, "distance transform: spacing %g on axis %d", spacing[a], a);
    }
    const int64_t n0 = dims[0], n1 = dims[1];
    const int64_t nl = o0 == 1 ? n0 : n1; /* lines along a0, indexed by the a1 coordinate */
    int64_t *start = calloc((size_t)nl + 1, sizeof(int64_t));
    if (!start)
        return sb_fail(err, SB_ENOMEM, "distance transform: out of memory");
    int64_t nf = 0;
    for (int64_t j = 0; j < n0; j++)
        for (int64_t w = 0; w < W; w++) {
            uint64_t word = bits[j * W + w];
            while (word) {
                int64_t x = w * 64 + __builtin_ctzll(word);
                word &= word - 1;
                start[(o0 == 1 ? j : x) + 1]++;
                nf++;
            }
        }
    for (int64_t l = 0; l < nl; l++)
        start[l + 1] += start[l];
    int32_t *xs = malloc(sizeof(int32_t) * (size_t)(nf ? nf : 1));
    int64_t *fill = malloc(sizeof(int64_t) * (size_t)nl);
    if (!xs || !fill) {
        free(start);
        free(xs);
        free(fill);
        return sb_fail(err, SB_ENOMEM, "distance transform: out of memory for %lld features", (long long)nf);
    }
    memcpy(fill, start, sizeof(int64_t) * (size_t)nl);
    for (int64_t j = 0; j < n0; j++)
        for (int64_t w = 0; w < W; w++) {
            uint64_t word = bits[j * W + w];
            while (word) {
                int64_t x = w * 64 + __builtin_ctzll(word);
                word &= word - 1;
                if (o0 == 1)
                    xs[fill[j]++] = (int32_t)x;
                else
                    xs[fill[x]++] = (int32_t)j;
            }
        }
    search2d_job S = {start, xs, query, out, nl, o0, n1, spacing[o0], spacing[o1]};
    sb_parallel_for(ctx, nq, 1024, search2d_range, &S);
    free(start);
    free(xs);
    free(fill);
    return SB_OK;
}

int sb_edt_sq_at(sb_ctx *ctx, const uint8_t *feature, int ndim, const int64_t *dims,
                 const double *spacing, const int *order, const int64_t *query, int64_t nq,
                 double *out, sb_error *err)
{
    if (ndim < 1 || ndim > 3)
        return sb_fail(err, SB_EINVAL, "distance transform: %d dimensions (1 to 3 supported)", ndim);
    int64_t total = 1;
    for (int a = 0; a < ndim; a++) {
        if (dims[a] < 1)
            return sb_fail(err, SB_EINVAL, "distance transform: dimension %d has size %lld", a,
                           (long long)dims[a]);
        total *= dims[a];
    }
    const int64_t L = dims[ndim - 1], W = (L + 63) / 64, rows = total / L;
    uint64_t *bits = calloc((size_t)(rows * W), sizeof(uint64_t));
    if (!bits)
        return sb_fail(err, SB_ENOMEM, "distance transform: out of memory for %lld voxels", (long long)total);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t x = 0; x < L; x++)
            if (feature[r * L + x])
                bits[r * W + (x >> 6)] |= (uint64_t)1 << (x & 63);
    int rc = sb_edt_sq_at_bits(ctx, bits, W, ndim, dims, spacing, order, query, nq, out, err);
    free(bits);
    return rc;
}

int sb_edt_sq_at_bits(sb_ctx *ctx, const uint64_t *bits, int64_t W, int ndim, const int64_t *dims,
                      const double *spacing, const int *order, const int64_t *query, int64_t nq,
                      double *out, sb_error *err)
{
    int fused = ndim == 3 && order && order[0] == 2 && order[1] == 1 && order[2] == 0;
    if (ndim == 2)
        return edt_at_2d(ctx, bits, W, dims, spacing, order, query, nq, out, err);
    if (!fused) {
        int64_t total = 1;
        for (int a = 0; a < ndim; a++)
            total *= dims[a] > 0 ? dims[a] : 1;
        double *map = malloc(sizeof(double) * (size_t)total);
        uint8_t *feature = malloc((size_t)total);
        if (!map || !feature) {
            free(map);
            free(feature);
            return sb_fail(err, SB_ENOMEM, "distance transform: out of memory for %lld voxels",
                           (long long)total);
        }
        const int64_t L = dims[ndim - 1];
        for (int64_t x = 0; x < total; x++)
            feature[x] = (uint8_t)bit_at(bits + (x / L) * W, x % L);
        int rc = edt_run(ctx, feature, ndim, dims, spacing, order, ndim - 1, NULL, map, err);
        if (rc == SB_OK) {
            int last = order ? order[ndim - 1] : ndim - 1;
            int64_t st = 1;
            for (int b = last + 1; b < ndim; b++)
                st *= dims[b];
            search_job S = {ndim > 1 ? map : NULL, feature, query, out, st, dims[last], spacing[last], NULL, 0};
            sb_parallel_for(ctx, nq, 1024, search_range, &S);
        }
        free(map);
        free(feature);
        return rc;
    }
    for (int a = 0; a < 3; a++) {
        if (dims[a] < 1)
            return sb_fail(err, SB_EINVAL, "distance transform: dimension %d has size %lld", a,
                           (long long)dims[a]);
        if (!(spacing[a] > 0) || !isfinite(spacing[a]))
            return sb_fail(err, SB_EINVAL, "distance transform: spacing %g on axis %d", spacing[a], a);
    }
    fused_job J;
    memset(&J, 0, sizeof J);
    J.bits = bits;
    J.W = W;
    J.B0 = dims[0];
    J.B1 = dims[1];
    J.B2 = dims[2];
    J.s0 = spacing[0];
    J.s1 = spacing[1];
    J.s2 = spacing[2];
    const int64_t plane = J.B1 * J.B2;
    int threads = ctx ? sb_ctx_threads(ctx) : 1;
    J.maxlen = J.B0 > J.B1 ? J.B0 : J.B1;
    size_t T = (size_t)threads, L = (size_t)J.maxlen;
    int32_t *cidx = malloc(sizeof(int32_t) * (size_t)plane);
    uint8_t *ineed = calloc((size_t)J.B2, 1);
    J.planes = big_alloc(sizeof(double) * T * (size_t)plane);
    J.tf = malloc(sizeof(double) * T * L * TILE_W);
    J.td = malloc(sizeof(double) * T * L * TILE_W);
    J.z = malloc(sizeof(double) * T * (L + 1));
    J.v = malloc(sizeof(int32_t) * T * L);
    J.di = malloc(sizeof(int32_t) * T * (size_t)J.B2);
    J.inv1 = malloc(sizeof(double) * (size_t)J.B1);
    int rc = SB_OK;
    if (!cidx || !ineed || !J.planes || !J.tf || !J.td || !J.z || !J.v || !J.di || !J.inv1) {
        rc = sb_fail(err, SB_ENOMEM, "distance transform: out of memory for plane buffers");
        goto done;
    }
    for (int64_t x = 0; x < plane; x++)
        cidx[x] = -1;
    for (int64_t i = 0; i < nq; i++)
        cidx[query[i] % plane] = 0;
    int64_t ncols = 0;
    for (int64_t x = 0; x < plane; x++)
        if (cidx[x] >= 0) {
            cidx[x] = (int32_t)ncols++;
            ineed[x % J.B2] = 1;
        }
    J.cidx = cidx;
    J.ineed = ineed;
    J.nq_cols = ncols;
    J.C = big_alloc(sizeof(double) * (size_t)(ncols ? ncols : 1) * (size_t)J.B0);
    if (!J.C) {
        rc = sb_fail(err, SB_ENOMEM, "distance transform: out of memory for %lld columns", (long long)ncols);
        goto done;
    }
    J.inv1[0] = 0.0;
    for (int64_t i = 1; i < J.B1; i++)
        J.inv1[i] = 1.0 / (2.0 * J.s1 * J.s1 * (double)i);
    sb_parallel_for(ctx, J.B0, 1, fused_planes, &J);
    {
        search_job S = {J.C, NULL, query, out, ncols, J.B0, J.s0, cidx, plane};
        sb_parallel_for(ctx, nq, 1024, search_range, &S);
    }
done:
    free(cidx);
    free(ineed);
    free(J.planes);
    free(J.tf);
    free(J.td);
    free(J.z);
    free(J.v);
    free(J.di);
    free(J.inv1);
    free(J.C);
    return rc;
}
