/*
 * One pair of masks -> the raw metrics record (metrics.h), and the values
 * under the empty-mask policies.
 *
 * Steps:
 *  1. one pass over both masks: tp/fp/fn and, per voxel row (a line along
 *     the contiguous axis), the first and last foreground voxel;
 *  2. the corner grid ("shifted by half a voxel") restricted to the bounding
 *     box of both masks plus one corner (plus a margin for the NSD ball):
 *     per corner row, the codes from the four (3-D) or two (2-D) voxel rows
 *     around it (vectorised), giving per mask the list of surfels (box
 *     position, code) and a bitmap of the surfel corners;
 *  3. distances of each direction:
 *     - NSD only, small tolerance ball: each surfel looks for a surfel of the
 *       other mask at the offsets within the tolerance (the offsets tested
 *       with the same expression and <= as the distance transform);
 *     - otherwise the exact EDT of the other mask's surfels (metrics_edt.c,
 *       sb_edt_sq_at_bits) over the box of both surfaces (HD), or over the
 *       surfels' box grown by the tolerance (NSD only), at the surfels;
 *  4. per direction, surfels sorted by (distance, area) and the sums and
 *     percentile computed in the order and with the summation numpy uses.
 *
 * Compiled without FP contraction (see metrics_edt.c) so the distances
 * round like scipy's.
 */
#pragma GCC optimize("fp-contract=off", "tree-vectorize", "vect-cost-model=dynamic")

#include "metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BALL_OFFSETS 4096

typedef struct {
    int n;                /* 2 or 3 */
    int64_t md[3];        /* memory-order dims; md[n-1] contiguous */
    double ms[3];         /* spacing per memory axis */
    int dm_of_mem[3];     /* DeepMind axis of each memory axis */
    int mem_of_dm[3];
    int64_t rows, rowlen; /* voxel rows along the contiguous axis */
} geom;

/* ---- numpy's summation (so sums round like DeepMind's np.sum) ---------- */

/* numpy's pairwise summation of doubles (pairwise_sum in loops_utils.h). */
static double np_pairwise_sum(const double *a, int64_t n)
{
    if (n < 8) {
        double res = 0.0;
        for (int64_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return np_pairwise_sum(a, n2) + np_pairwise_sum(a + n2, n - n2);
}

/* ---- step 1: counts and row extents ----------------------------------- */

typedef struct {
    const uint8_t *gt, *pred;
    int64_t rowlen;
    int32_t *gfirst, *glast, *pfirst, *plast;
    int64_t (*acc)[4]; /* per worker: tp, n_gt, n_pred, spare */
} count_job;

/* Index of the first / last non-zero byte of a row known to hold one. */
static int32_t first_nonzero(const uint8_t *p, int64_t L)
{
    int64_t i = 0;
    for (; i + 8 <= L; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w)
            break;
    }
    while (!p[i])
        i++;
    return (int32_t)i;
}

static int32_t last_nonzero(const uint8_t *p, int64_t L)
{
    int64_t i = L;
    for (; i >= 8; i -= 8) {
        uint64_t w;
        memcpy(&w, p + i - 8, 8);
        if (w)
            break;
    }
    i--;
    while (!p[i])
        i--;
    return (int32_t)i;
}

static void count_rows(void *arg, int64_t begin, int64_t end, int worker)
{
    count_job *J = arg;
    int64_t tp = 0, ng = 0, np = 0;
    const int64_t L = J->rowlen;
    for (int64_t r = begin; r < end; r++) {
        const uint8_t *g = J->gt + r * L, *p = J->pred + r * L;
        int32_t a = 0, b = 0, c = 0;
        for (int64_t x = 0; x < L; x++) {
            uint8_t gg = g[x] != 0, pp = p[x] != 0;
            a += gg;
            b += pp;
            c += gg & pp;
        }
        ng += a;
        np += b;
        tp += c;
        int32_t f = -1, l = -1;
        if (a) {
            f = first_nonzero(g, L);
            l = last_nonzero(g, L);
        }
        J->gfirst[r] = f;
        J->glast[r] = l;
        f = l = -1;
        if (b) {
            f = first_nonzero(p, L);
            l = last_nonzero(p, L);
        }
        J->pfirst[r] = f;
        J->plast[r] = l;
    }
    J->acc[worker][0] += tp;
    J->acc[worker][1] += ng;
    J->acc[worker][2] += np;
}

/* ---- step 2: code maps and surfels ------------------------------------ */

typedef struct {
    const geom *G;
    const uint8_t *mask;
    const int32_t *first, *last;
    int64_t lo[3], B[3];   /* box origin (corner coords) and size */
    int64_t nrows, nchunks;
    int64_t W;             /* bitmap words per corner row */
    uint64_t *bits;        /* surfel presence, row-strided bitmap */
    const uint8_t *zero;   /* rowlen + 2 zero bytes */
    /* per chunk outputs */
    int64_t **cpos;
    uint8_t **ccode;
    int64_t *cn;
    int failed;
} surf_job;

/* Border code of the corner between voxels x-1 and x of the rows (internal
 * numbering: row k of the block, voxel x-1 -> bit 2*nr-1-2k, voxel x -> bit
 * 2*nr-2-2k); 0 for the codes that are not border (none or all set). */
static inline uint8_t code3(const uint8_t *r0, const uint8_t *r1, const uint8_t *r2, const uint8_t *r3, int64_t x)
{
    uint8_t c = (uint8_t)(((r0[x - 1] != 0) << 7) | ((r0[x] != 0) << 6) | ((r1[x - 1] != 0) << 5) |
                          ((r1[x] != 0) << 4) | ((r2[x - 1] != 0) << 3) | ((r2[x] != 0) << 2) |
                          ((r3[x - 1] != 0) << 1) | (r3[x] != 0));
    return (uint8_t)(c + 1) > 1 ? c : 0;
}

static inline uint8_t code2(const uint8_t *r0, const uint8_t *r1, int64_t x)
{
    uint8_t c = (uint8_t)(((r0[x - 1] != 0) << 3) | ((r0[x] != 0) << 2) | ((r1[x - 1] != 0) << 1) | (r1[x] != 0));
    return (uint8_t)(c - 1) < 14 ? c : 0;
}

/* Codes of one corner row into buf[xmin .. xmax+1] (absolute corner coords);
 * returns 0 if the row has no foreground around it. */
static int row_codes(const surf_job *J, int64_t r, uint8_t *buf, int64_t *xlo, int64_t *xhi)
{
    const geom *G = J->G;
    const int n = G->n, nr = n == 3 ? 4 : 2;
    const int64_t L = G->rowlen;
    const uint8_t *zero = J->zero + 1;
    int64_t c0, c1 = 0;
    if (n == 3) {
        c0 = J->lo[0] + r / J->B[1];
        c1 = J->lo[1] + r % J->B[1];
    } else {
        c0 = J->lo[0] + r;
    }
    const uint8_t *rowp[4] = {zero, zero, zero, zero};
    int64_t xmin = INT64_MAX, xmax = INT64_MIN;
    for (int k = 0; k < nr; k++) {
        int64_t v0, v1 = 0, vr;
        if (n == 3) {
            v0 = c0 - 1 + (k >> 1);
            v1 = c1 - 1 + (k & 1);
            if (v0 < 0 || v0 >= G->md[0] || v1 < 0 || v1 >= G->md[1])
                continue;
            vr = v0 * G->md[1] + v1;
        } else {
            v0 = c0 - 1 + k;
            if (v0 < 0 || v0 >= G->md[0])
                continue;
            vr = v0;
        }
        if (J->first[vr] < 0)
            continue;
        rowp[k] = J->mask + vr * L;
        if (J->first[vr] < xmin)
            xmin = J->first[vr];
        if (J->last[vr] > xmax)
            xmax = J->last[vr];
    }
    if (xmin > xmax)
        return 0;
    /* corners xmin .. xmax+1; voxels xmin-1 and xmax+1 are 0 in every row */
    const uint8_t *r0 = rowp[0], *r1 = rowp[1], *r2 = rowp[2], *r3 = rowp[3];
    uint8_t c = 0;
    for (int k = 0; k < nr; k++)
        c |= (uint8_t)((rowp[k][xmin] != 0) << (2 * nr - 2 - 2 * k));
    buf[xmin] = c;
    if (n == 3)
        for (int64_t x = xmin + 1; x <= xmax; x++)
            buf[x] = code3(r0, r1, r2, r3, x);
    else
        for (int64_t x = xmin + 1; x <= xmax; x++)
            buf[x] = code2(r0, r1, x);
    c = 0;
    for (int k = 0; k < nr; k++)
        c |= (uint8_t)((rowp[k][xmax] != 0) << (2 * nr - 1 - 2 * k));
    buf[xmax + 1] = c;
    *xlo = xmin;
    *xhi = xmax + 1;
    return 1;
}

static void surf_chunks(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    surf_job *J = arg;
    const int n = J->G->n;
    const int64_t Bf = J->B[n - 1], lo2 = J->lo[n - 1];
    uint8_t *buf = malloc((size_t)J->G->rowlen + 2);
    for (int64_t ch = begin; ch < end; ch++) {
        int64_t r0 = ch * J->nrows / J->nchunks, r1 = (ch + 1) * J->nrows / J->nchunks;
        int64_t cap = 0, cnt = 0;
        int64_t *pos = NULL;
        uint8_t *code = NULL;
        if (!buf) {
            J->failed = 1;
            break;
        }
        for (int64_t r = r0; r < r1; r++) {
            int64_t xlo, xhi;
            if (!row_codes(J, r, buf, &xlo, &xhi))
                continue;
            uint64_t *brow = J->bits + r * J->W;
            for (int64_t x = xlo; x <= xhi; x++) {
                if (x + 8 <= xhi + 1) {
                    uint64_t w8;
                    memcpy(&w8, buf + x, 8);
                    if (!w8) {
                        x += 7;
                        continue;
                    }
                }
                if (!buf[x])
                    continue;
                if (cnt == cap) {
                    cap = cap ? 2 * cap : 1024;
                    int64_t *np = realloc(pos, sizeof(int64_t) * (size_t)cap);
                    uint8_t *nc = realloc(code, (size_t)cap);
                    if (np)
                        pos = np;
                    if (nc)
                        code = nc;
                    if (!np || !nc) {
                        J->failed = 1;
                        cap = cnt; /* stop growing */
                        break;
                    }
                }
                int64_t bx = x - lo2;
                pos[cnt] = r * Bf + bx;
                code[cnt] = buf[x];
                cnt++;
                brow[bx >> 6] |= (uint64_t)1 << (bx & 63);
            }
        }
        J->cpos[ch] = pos;
        J->ccode[ch] = code;
        J->cn[ch] = cnt;
    }
    free(buf);
}

typedef struct {
    uint64_t *bits;  /* row-strided bitmap: row r starts at bits + r * W */
    int64_t W;
    int64_t n;
    int64_t *pos;    /* box linear index (row * B[n-1] + x) */
    uint8_t *code;
} surfels;

static void surfels_free(surfels *s)
{
    free(s->bits);
    free(s->pos);
    free(s->code);
    memset(s, 0, sizeof *s);
}

static int extract_surfels(sb_ctx *ctx, const geom *G, const uint8_t *mask, const int32_t *first,
                           const int32_t *last, const int64_t lo[3], const int64_t B[3], surfels *S,
                           sb_error *err)
{
    memset(S, 0, sizeof *S);
    int64_t nrows = 1;
    for (int a = 0; a < G->n - 1; a++)
        nrows *= B[a];
    surf_job J;
    memset(&J, 0, sizeof J);
    J.G = G;
    J.mask = mask;
    J.first = first;
    J.last = last;
    memcpy(J.lo, lo, sizeof J.lo);
    memcpy(J.B, B, sizeof J.B);
    J.nrows = nrows;
    int threads = ctx ? sb_ctx_threads(ctx) : 1;
    J.nchunks = threads > 1 ? (nrows < 8 * threads ? nrows : 8 * threads) : 1;
    J.W = (B[G->n - 1] + 63) / 64;
    uint8_t *zero = calloc((size_t)G->rowlen + 2, 1);
    J.zero = zero;
    J.bits = calloc((size_t)(nrows * J.W), sizeof(uint64_t));
    J.cpos = calloc((size_t)J.nchunks, sizeof *J.cpos);
    J.ccode = calloc((size_t)J.nchunks, sizeof *J.ccode);
    J.cn = calloc((size_t)J.nchunks, sizeof *J.cn);
    int rc = SB_OK;
    if (!zero || !J.bits || !J.cpos || !J.ccode || !J.cn) {
        rc = sb_fail(err, SB_ENOMEM, "metrics: out of memory for a %lld-row surface box", (long long)nrows);
        goto done;
    }
    sb_parallel_for(ctx, J.nchunks, 1, surf_chunks, &J);
    int64_t ns = 0;
    for (int64_t c = 0; c < J.nchunks; c++)
        ns += J.cn[c];
    S->pos = malloc(sizeof(int64_t) * (size_t)(ns ? ns : 1));
    S->code = malloc((size_t)(ns ? ns : 1));
    if (J.failed || !S->pos || !S->code) {
        rc = sb_fail(err, SB_ENOMEM, "metrics: out of memory for the surfel lists");
        goto done;
    }
    int64_t o = 0;
    for (int64_t c = 0; c < J.nchunks; c++) {
        if (J.cn[c]) {
            memcpy(S->pos + o, J.cpos[c], sizeof(int64_t) * (size_t)J.cn[c]);
            memcpy(S->code + o, J.ccode[c], (size_t)J.cn[c]);
        }
        o += J.cn[c];
    }
    S->n = ns;
    S->bits = J.bits;
    S->W = J.W;
    J.bits = NULL;
done:
    if (J.cpos)
        for (int64_t c = 0; c < J.nchunks; c++) {
            free(J.cpos[c]);
            free(J.ccode[c]);
        }
    free(J.cpos);
    free(J.ccode);
    free(J.cn);
    free(J.bits);
    free(zero);
    if (rc != SB_OK)
        surfels_free(S);
    return rc;
}

/* ---- step 3: distances ------------------------------------------------- */

/* Distance of an offset given per DeepMind axis, summed in DeepMind's axis
 * order exactly as scipy's EDT does. */
static double dm_dist(int n, const int64_t *d, const double *s)
{
    double acc = 0.0;
    for (int k = 0; k < n; k++) {
        double t = (double)d[k] * s[k];
        double t2 = t * t;
        acc = k == 0 ? t2 : acc + t2;
    }
    return sqrt(acc);
}

typedef struct {
    int64_t drow, dx; /* corner-row and in-row offsets */
    double d;
} ball_off;

static int cmp_ball(const void *a, const void *b)
{
    double x = ((const ball_off *)a)->d, y = ((const ball_off *)b)->d;
    return (x > y) - (x < y);
}

typedef struct {
    const surfels *A, *Bs;
    const ball_off *offs;
    int64_t noffs;
    uint8_t *within;
    int64_t Bf;
} ball_job;

static void ball_range(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    ball_job *J = arg;
    const uint64_t *bits = J->Bs->bits;
    const int64_t W = J->Bs->W, Bf = J->Bf;
    for (int64_t i = begin; i < end; i++) {
        int64_t q = J->A->pos[i], row = q / Bf, x = q % Bf;
        uint8_t w = 0;
        for (int64_t o = 0; o < J->noffs; o++) {
            int64_t xx = x + J->offs[o].dx;
            if ((bits[(row + J->offs[o].drow) * W + (xx >> 6)] >> (xx & 63)) & 1) {
                w = 1;
                break;
            }
        }
        J->within[i] = w;
    }
}

typedef struct {
    double d, a;
} dist_area;

static int cmp_dist_area(const void *x, const void *y)
{
    const dist_area *p = x, *q = y;
    if (p->d < q->d)
        return -1;
    if (p->d > q->d)
        return 1;
    return (p->a > q->a) - (p->a < q->a);
}

/* DeepMind's robust Hausdorff for one direction over sorted (d, a). */
static double np_percentile_distance(const dist_area *da, const double *areas, int64_t n, double total,
                                     double percent)
{
    if (n == 0)
        return INFINITY;
    const double thr = percent / 100.0;
    double c = 0.0;
    int64_t idx = n;
    for (int64_t i = 0; i < n; i++) {
        c += areas[i];
        if (c / total >= thr) {
            idx = i;
            break;
        }
    }
    if (idx > n - 1)
        idx = n - 1;
    (void)areas;
    return da[idx].d;
}

/* Sorted statistics of one direction: sets *within (if tol >= 0), *hdp, *hd100, *asd. */
static int direction_stats(dist_area *da, int64_t n, double tol, double percent, double *total_out,
                           double *within, double *hdp, double *hd100, double *asd, sb_error *err)
{
    if (n == 0) {
        *total_out = 0.0;
        *within = 0.0;
        *hdp = *hd100 = INFINITY;
        *asd = NAN;
        return SB_OK;
    }
    qsort(da, (size_t)n, sizeof *da, cmp_dist_area);
    double *buf = malloc(sizeof(double) * (size_t)n);
    if (!buf)
        return sb_fail(err, SB_ENOMEM, "metrics: out of memory sorting %lld surfels", (long long)n);
    for (int64_t i = 0; i < n; i++)
        buf[i] = da[i].a;
    double total = np_pairwise_sum(buf, n);
    *total_out = total;
    int64_t k = 0;
    while (k < n && da[k].d <= tol)
        k++;
    *within = np_pairwise_sum(buf, k);
    *hdp = np_percentile_distance(da, buf, n, total, percent);
    *hd100 = np_percentile_distance(da, buf, n, total, 100.0);
    for (int64_t i = 0; i < n; i++)
        buf[i] = da[i].d * da[i].a;
    *asd = np_pairwise_sum(buf, n) / total;
    free(buf);
    return SB_OK;
}

/* Distances of A's surfels to B's surface via the EDT of B's surfels, over
 * the whole box (HD) or, in band mode (grow != NULL, NSD only), over A's
 * surfel bounding box grown by `grow` corners per axis: every B surfel within
 * the tolerance of an A surfel lies in that box, so distances <= tolerance
 * are exact and the others stay > tolerance. */
static int edt_direction(sb_ctx *ctx, const geom *G, const int64_t B[3], const surfels *A,
                         const surfels *Bs, const int64_t *grow, const double *table, dist_area *out,
                         sb_error *err)
{
    const int n = G->n;
    int order[3];
    for (int k = 0; k < n; k++)
        order[k] = G->mem_of_dm[k];
    if (A->n == 0)
        return SB_OK;
    if (Bs->n == 0) {
        for (int64_t i = 0; i < A->n; i++) {
            out[i].d = INFINITY;
            out[i].a = table[A->code[i]];
        }
        return SB_OK;
    }
    double *sq = malloc(sizeof(double) * (size_t)A->n);
    if (!sq)
        return sb_fail(err, SB_ENOMEM, "metrics: out of memory for %lld distances", (long long)A->n);
    int rc;
    if (!grow) {
        rc = sb_edt_sq_at_bits(ctx, Bs->bits, Bs->W, n, B, G->ms, order, A->pos, A->n, sq, err);
    } else {
        int64_t lo[3] = {INT64_MAX, INT64_MAX, INT64_MAX}, hi[3] = {-1, -1, -1};
        for (int64_t i = 0; i < A->n; i++) {
            int64_t rem = A->pos[i];
            for (int a = n - 1; a >= 0; a--) {
                int64_t c = rem % B[a];
                rem /= B[a];
                if (c < lo[a])
                    lo[a] = c;
                if (c > hi[a])
                    hi[a] = c;
            }
        }
        int64_t sB[3] = {1, 1, 1}, sn = 1;
        for (int a = 0; a < n; a++) {
            lo[a] = lo[a] - grow[a] < 0 ? 0 : lo[a] - grow[a];
            hi[a] = hi[a] + grow[a] >= B[a] ? B[a] - 1 : hi[a] + grow[a];
            sB[a] = hi[a] - lo[a] + 1;
            sn *= sB[a];
        }
        int64_t sW = (sB[n - 1] + 63) / 64, srows = sn / sB[n - 1];
        uint64_t *feat = calloc((size_t)(srows * sW), sizeof(uint64_t));
        int64_t *q = malloc(sizeof(int64_t) * (size_t)A->n);
        if (!feat || !q) {
            free(feat);
            free(q);
            free(sq);
            return sb_fail(err, SB_ENOMEM, "metrics: out of memory for a %lld-voxel band", (long long)sn);
        }
        for (int64_t r = 0; r < srows; r++) {
            int64_t c[3] = {0, 0, 0}, rem = r;
            for (int a = n - 2; a >= 0; a--) {
                c[a] = rem % sB[a] + lo[a];
                rem /= sB[a];
            }
            int64_t srow = 0;
            for (int a = 0; a < n - 1; a++)
                srow = srow * B[a] + c[a];
            const uint64_t *from = Bs->bits + srow * Bs->W;
            uint64_t *to = feat + r * sW;
            for (int64_t x = 0; x < sB[n - 1]; x++) {
                int64_t xs = x + lo[n - 1];
                if ((from[xs >> 6] >> (xs & 63)) & 1)
                    to[x >> 6] |= (uint64_t)1 << (x & 63);
            }
        }
        for (int64_t i = 0; i < A->n; i++) {
            int64_t c[3], rem = A->pos[i], idx = 0;
            for (int a = n - 1; a >= 0; a--) {
                c[a] = rem % B[a];
                rem /= B[a];
            }
            for (int a = 0; a < n; a++)
                idx = idx * sB[a] + (c[a] - lo[a]);
            q[i] = idx;
        }
        rc = sb_edt_sq_at_bits(ctx, feat, sW, n, sB, G->ms, order, q, A->n, sq, err);
        free(feat);
        free(q);
    }
    if (rc == SB_OK)
        for (int64_t i = 0; i < A->n; i++) {
            out[i].d = sqrt(sq[i]);
            out[i].a = table[A->code[i]];
        }
    free(sq);
    return rc;
}

/* ---- the pair ---------------------------------------------------------- */

static void record_init(sb_metrics_record *rec, int ndim, const double *spacing_dm, double tol)
{
    memset(rec, 0, sizeof *rec);
    rec->ndim = ndim;
    for (int k = 0; k < 3; k++)
        rec->spacing[k] = k < ndim ? spacing_dm[k] : 0.0;
    rec->tolerance = tol;
    rec->hdp_gt = rec->hdp_pred = rec->hd100_gt = rec->hd100_pred = NAN;
    rec->asd_gt = rec->asd_pred = NAN;
    rec->gt_within = rec->pred_within = NAN;
}

int sb_metrics_pair(const uint8_t *gt, const uint8_t *pred, int ndim, const int64_t *dims,
                    const double *spacing, int layout, const sb_metrics_opts *opts,
                    sb_metrics_record *rec, sb_error *err)
{
    sb_metrics_opts defaults = {2.0, SB_METRICS_ALL, 95.0, NULL};
    if (!opts)
        opts = &defaults;
    if (ndim != 2 && ndim != 3)
        return sb_fail(err, SB_EINVAL, "metrics: %d-D masks (2-D or 3-D supported)", ndim);
    if (!gt || !pred || !dims || !rec)
        return sb_fail(err, SB_EINVAL, "metrics: NULL argument");
    if (layout != SB_LAYOUT_C && layout != SB_LAYOUT_F)
        return sb_fail(err, SB_EINVAL, "metrics: unknown layout %d", layout);
    double sp[3] = {1, 1, 1};
    int64_t total = 1;
    for (int k = 0; k < ndim; k++) {
        if (spacing)
            sp[k] = spacing[k];
        if (!(sp[k] > 0) || !isfinite(sp[k]))
            return sb_fail(err, SB_EINVAL, "metrics: spacing %g on axis %d (must be finite and > 0)",
                           sp[k], k);
        if (dims[k] < 1 || dims[k] > ((int64_t)1 << 31) - 4)
            return sb_fail(err, SB_EINVAL, "metrics: size %lld on axis %d", (long long)dims[k], k);
        if (total > ((int64_t)1 << 40) / dims[k])
            return sb_fail(err, SB_EINVAL, "metrics: mask too large");
        total *= dims[k];
    }
    double tol = opts->tolerance;
    if (!(tol >= 0) || !isfinite(tol))
        return sb_fail(err, SB_EINVAL, "metrics: tolerance %g (must be finite and >= 0)", tol);
    double percent = opts->percent > 0 ? opts->percent : 95.0;
    if (!(percent <= 100.0))
        return sb_fail(err, SB_EINVAL, "metrics: percentile %g", percent);
    const int want_nsd = (opts->what & SB_METRICS_NSD) != 0;
    const int want_dist = (opts->what & SB_METRICS_DISTANCES) != 0;

    record_init(rec, ndim, sp, tol);
    geom G;
    memset(&G, 0, sizeof G);
    G.n = ndim;
    for (int a = 0; a < ndim; a++) {
        int k = layout == SB_LAYOUT_C ? a : ndim - 1 - a;
        G.dm_of_mem[a] = k;
        G.mem_of_dm[k] = a;
        G.md[a] = dims[k];
        G.ms[a] = sp[k];
    }
    G.rowlen = G.md[ndim - 1];
    G.rows = total / G.rowlen;

    int threads = opts->ctx ? sb_ctx_threads(opts->ctx) : 1;
    int32_t *ext = malloc(sizeof(int32_t) * 4 * (size_t)G.rows);
    int64_t(*acc)[4] = calloc((size_t)threads, sizeof *acc);
    if (!ext || !acc) {
        free(ext);
        free(acc);
        return sb_fail(err, SB_ENOMEM, "metrics: out of memory for %lld row extents", (long long)G.rows);
    }
    count_job CJ = {gt, pred, G.rowlen, ext, ext + G.rows, ext + 2 * G.rows, ext + 3 * G.rows, acc};
    sb_parallel_for(opts->ctx, G.rows, 64, count_rows, &CJ);
    for (int t = 0; t < threads; t++) {
        rec->tp += acc[t][0];
        rec->gt_voxels += acc[t][1];
        rec->pred_voxels += acc[t][2];
    }
    free(acc);
    rec->fn = rec->gt_voxels - rec->tp;
    rec->fp = rec->pred_voxels - rec->tp;
    int32_t *gfirst = ext, *glast = ext + G.rows, *pfirst = ext + 2 * G.rows, *plast = ext + 3 * G.rows;

    if (rec->gt_voxels == 0 && rec->pred_voxels == 0) {
        free(ext);
        rec->gt_surface = rec->pred_surface = 0.0;
        if (want_nsd) {
            rec->has_nsd = 1;
            rec->gt_within = rec->pred_within = 0.0;
        }
        if (want_dist) {
            rec->has_distances = 1;
            rec->hd_percent = percent;
            rec->hdp_gt = rec->hdp_pred = rec->hd100_gt = rec->hd100_pred = INFINITY;
        }
        return SB_OK;
    }

    /* bounding box of both masks, memory axes */
    int64_t bmin[3] = {INT64_MAX, INT64_MAX, INT64_MAX}, bmax[3] = {-1, -1, -1};
    for (int64_t r = 0; r < G.rows; r++) {
        int32_t f = -1, l = -1;
        if (gfirst[r] >= 0) {
            f = gfirst[r];
            l = glast[r];
        }
        if (pfirst[r] >= 0) {
            if (f < 0 || pfirst[r] < f)
                f = pfirst[r];
            if (plast[r] > l)
                l = plast[r];
        }
        if (f < 0)
            continue;
        int64_t c[2] = {ndim == 3 ? r / G.md[1] : r, ndim == 3 ? r % G.md[1] : 0};
        for (int a = 0; a < ndim - 1; a++) {
            if (c[a] < bmin[a])
                bmin[a] = c[a];
            if (c[a] > bmax[a])
                bmax[a] = c[a];
        }
        if (f < bmin[ndim - 1])
            bmin[ndim - 1] = f;
        if (l > bmax[ndim - 1])
            bmax[ndim - 1] = l;
    }

    /* tolerance ball (NSD without distances) */
    int use_ball = 0;
    int64_t R[3] = {0, 0, 0}; /* per memory axis */
    if (want_nsd && !want_dist) {
        double cnt = 1;
        for (int a = 0; a < ndim; a++) {
            double r = floor(tol / G.ms[a]);
            if (r > 1e6)
                r = 1e6;
            R[a] = (int64_t)r;
            cnt *= 2 * r + 1;
        }
        use_ball = cnt <= MAX_BALL_OFFSETS;
    }
    int64_t lo[3] = {0, 0, 0}, B[3] = {1, 1, 1};
    for (int a = 0; a < ndim; a++) {
        int64_t m = use_ball ? R[a] : 0;
        lo[a] = bmin[a] - m;
        B[a] = bmax[a] + 1 + m - lo[a] + 1;
    }

    /* surface tables in internal code numbering */
    double tab_dm[256], tab[256];
    if (ndim == 3)
        sb_metrics_table_3d(sp, tab_dm);
    else
        sb_metrics_table_2d(sp, tab_dm);
    const int ncorner = 1 << ndim;
    for (int code = 0; code < (1 << ncorner); code++) {
        int dmcode = 0;
        for (int c = 0; c < ncorner; c++) {
            if (!((code >> (ncorner - 1 - c)) & 1))
                continue;
            int o_dm[3] = {0, 0, 0};
            for (int a = 0; a < ndim; a++)
                o_dm[G.dm_of_mem[a]] = (c >> (ndim - 1 - a)) & 1;
            int cd = 0;
            for (int k = 0; k < ndim; k++)
                cd = (cd << 1) | o_dm[k];
            dmcode |= 1 << (ncorner - 1 - cd);
        }
        tab[code] = tab_dm[dmcode];
    }

    surfels SG, SP;
    int rc = extract_surfels(opts->ctx, &G, gt, gfirst, glast, lo, B, &SG, err);
    if (rc == SB_OK) {
        rc = extract_surfels(opts->ctx, &G, pred, pfirst, plast, lo, B, &SP, err);
        if (rc != SB_OK)
            surfels_free(&SG);
    }
    free(ext);
    if (rc != SB_OK)
        return rc;
    rec->gt_surfels = SG.n;
    rec->pred_surfels = SP.n;

    if (use_ball || (!want_nsd && !want_dist)) {
        /* areas in list order (numpy pairwise sum of the list) */
        surfels *S[2] = {&SG, &SP};
        double *areas = malloc(sizeof(double) * (size_t)(SG.n > SP.n ? SG.n : SP.n) + 8);
        uint8_t *within = want_nsd ? malloc((size_t)(SG.n > SP.n ? SG.n : SP.n) + 1) : NULL;
        ball_off *offs = NULL;
        int64_t noffs = 0;
        if (use_ball) {
            int64_t cap = 1;
            for (int a = 0; a < ndim; a++)
                cap *= 2 * R[a] + 1;
            offs = malloc(sizeof(ball_off) * (size_t)cap);
            if (offs) {
                int64_t d[3];
                for (d[0] = -R[0]; d[0] <= R[0]; d[0]++)
                    for (d[1] = ndim > 1 ? -R[1] : 0; d[1] <= (ndim > 1 ? R[1] : 0); d[1]++)
                        for (d[2] = ndim > 2 ? -R[2] : 0; d[2] <= (ndim > 2 ? R[2] : 0); d[2]++) {
                            int64_t ddm[3] = {0, 0, 0};
                            for (int a = 0; a < ndim; a++)
                                ddm[G.dm_of_mem[a]] = d[a];
                            double dist = dm_dist(ndim, ddm, sp);
                            if (!(dist <= tol))
                                continue;
                            int64_t drow = 0;
                            for (int a = 0; a < ndim - 1; a++)
                                drow = drow * B[a] + d[a];
                            offs[noffs].drow = drow;
                            offs[noffs].dx = d[ndim - 1];
                            offs[noffs].d = dist;
                            noffs++;
                        }
                qsort(offs, (size_t)noffs, sizeof *offs, cmp_ball);
            }
        }
        if (!areas || (want_nsd && !within) || (use_ball && !offs)) {
            free(areas);
            free(within);
            free(offs);
            surfels_free(&SG);
            surfels_free(&SP);
            return sb_fail(err, SB_ENOMEM, "metrics: out of memory for surfel areas");
        }
        for (int s = 0; s < 2; s++) {
            const surfels *A = S[s], *O = S[1 - s];
            for (int64_t i = 0; i < A->n; i++)
                areas[i] = tab[A->code[i]];
            double tot = np_pairwise_sum(areas, A->n);
            double w = 0.0;
            if (want_nsd && O->n > 0) {
                ball_job BJ = {A, O, offs, noffs, within, B[ndim - 1]};
                sb_parallel_for(opts->ctx, A->n, 1024, ball_range, &BJ);
                for (int64_t i = 0; i < A->n; i++)
                    if (!within[i])
                        areas[i] = 0.0;
                w = np_pairwise_sum(areas, A->n);
            }
            if (s == 0) {
                rec->gt_surface = tot;
                rec->gt_within = w;
            } else {
                rec->pred_surface = tot;
                rec->pred_within = w;
            }
        }
        rec->has_nsd = want_nsd;
        if (!want_nsd)
            rec->gt_within = rec->pred_within = NAN;
        free(areas);
        free(within);
        free(offs);
        surfels_free(&SG);
        surfels_free(&SP);
        return SB_OK;
    }

    /* EDT path: per direction */
    int64_t grow[3] = {0, 0, 0};
    for (int a = 0; a < ndim; a++)
        grow[a] = (int64_t)fmin(floor(tol / G.ms[a]) + 1, 1e9);
    dist_area *da = malloc(sizeof(dist_area) * (size_t)((SG.n > SP.n ? SG.n : SP.n) + 1));
    if (!da) {
        surfels_free(&SG);
        surfels_free(&SP);
        return sb_fail(err, SB_ENOMEM, "metrics: out of memory for %lld surfel distances",
                       (long long)(SG.n > SP.n ? SG.n : SP.n));
    }
    for (int s = 0; s < 2 && rc == SB_OK; s++) {
        const surfels *A = s == 0 ? &SG : &SP, *O = s == 0 ? &SP : &SG;
        rc = edt_direction(opts->ctx, &G, B, A, O, want_dist ? NULL : grow, tab, da, err);
        if (rc != SB_OK)
            break;
        double tot = 0, w = 0, hdp = NAN, hd100 = NAN, asd = NAN;
        rc = direction_stats(da, A->n, tol, percent, &tot, &w, &hdp, &hd100, &asd, err);
        if (s == 0) {
            rec->gt_surface = tot;
            rec->gt_within = w;
            rec->hdp_gt = hdp;
            rec->hd100_gt = hd100;
            rec->asd_gt = asd;
        } else {
            rec->pred_surface = tot;
            rec->pred_within = w;
            rec->hdp_pred = hdp;
            rec->hd100_pred = hd100;
            rec->asd_pred = asd;
        }
    }
    free(da);
    surfels_free(&SG);
    surfels_free(&SP);
    if (rc != SB_OK)
        return rc;
    rec->has_nsd = want_nsd;
    if (!want_nsd)
        rec->gt_within = rec->pred_within = NAN;
    if (want_dist) {
        rec->has_distances = 1;
        rec->hd_percent = percent;
    } else {
        rec->hdp_gt = rec->hdp_pred = rec->hd100_gt = rec->hd100_pred = NAN;
        rec->asd_gt = rec->asd_pred = NAN;
    }
    return SB_OK;
}

/* ---- policies ---------------------------------------------------------- */

void sb_metrics_from_record(const sb_metrics_record *rec, int empty_policy, int nsd_policy,
                            sb_metrics_values *v)
{
    const int gt_empty = rec->gt_voxels == 0, pred_empty = rec->pred_voxels == 0;
    if (gt_empty && pred_empty) {
        double x = empty_policy == SB_EMPTY_ONE ? 1.0 : empty_policy == SB_EMPTY_ZERO ? 0.0 : NAN;
        v->dice = v->iou = x;
        v->nsd = rec->has_nsd ? x : NAN;
        double h = empty_policy == SB_EMPTY_ONE ? 0.0 : NAN;
        v->hd95 = v->hd100 = v->assd = rec->has_distances ? h : NAN;
        return;
    }
    v->dice = 2.0 * (double)rec->tp / (double)(rec->gt_voxels + rec->pred_voxels);
    v->iou = (double)rec->tp / (double)(rec->tp + rec->fp + rec->fn);
    if (gt_empty || pred_empty) {
        v->nsd = rec->has_nsd ? 0.0 : NAN;
        v->hd95 = v->hd100 = rec->has_distances ? INFINITY : NAN;
        /* DeepMind: the mean of an infinite and an undefined (0/0) average */
        v->assd = NAN;
        return;
    }
    v->nsd = rec->has_nsd
                 ? (rec->gt_within + rec->pred_within) / (rec->gt_surface + rec->pred_surface)
                 : NAN;
    if (nsd_policy == SB_NSD_MEDSAM && rec->has_nsd && v->dice <= 0.2)
        v->nsd = 0.0;
    if (rec->has_distances) {
        v->hd95 = fmax(rec->hdp_gt, rec->hdp_pred);
        v->hd100 = fmax(rec->hd100_gt, rec->hd100_pred);
        v->assd = (rec->asd_gt + rec->asd_pred) / 2.0;
    } else {
        v->hd95 = v->hd100 = v->assd = NAN;
    }
}

int sb_parse_empty_policy(const char *s, int *policy, sb_error *err)
{
    if (s && strcmp(s, "nan") == 0)
        *policy = SB_EMPTY_NAN;
    else if (s && strcmp(s, "one") == 0)
        *policy = SB_EMPTY_ONE;
    else if (s && strcmp(s, "zero") == 0)
        *policy = SB_EMPTY_ZERO;
    else
        return sb_fail(err, SB_EINVAL, "unknown empty-mask policy '%s' (nan, one or zero)", s ? s : "");
    return SB_OK;
}

int sb_parse_nsd_policy(const char *s, int *policy, sb_error *err)
{
    if (s && (strcmp(s, "plain") == 0 || strcmp(s, "deepmind") == 0))
        *policy = SB_NSD_PLAIN;
    else if (s && strcmp(s, "medsam") == 0)
        *policy = SB_NSD_MEDSAM;
    else
        return sb_fail(err, SB_EINVAL, "unknown NSD policy '%s' (plain or medsam)", s ? s : "");
    return SB_OK;
}
