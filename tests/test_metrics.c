/*
 * Metrics (pipeline/metrics*.c): surface tables, EDT, NSD / HD95 / HD100 /
 * ASSD against DeepMind's test vectors, analytic shapes, and a brute-force
 * double-precision reference written here (its own neighbour codes, O(n^2)
 * distances, its own sort and sums); empty-mask policies; the anchor pairs
 * against DeepMind's values (tests/fixtures/metrics_anchor).
 */
#include "util_test.h"

#include "../pipeline/metrics.h"
#include "../pipeline/nifti.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double rnd01(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

static void assert_close(double got, double want, double rel, const char *what)
{
    if (isnan(want)) {
        if (!isnan(got))
            fail_msg("%s: got %.17g, want NaN", what, got);
        return;
    }
    if (isinf(want)) {
        if (got != want)
            fail_msg("%s: got %.17g, want %g", what, got, want);
        return;
    }
    double tol = rel * fmax(1.0, fabs(want));
    if (!(fabs(got - want) <= tol))
        fail_msg("%s: got %.17g, want %.17g (diff %.3g)", what, got, want, fabs(got - want));
}

static sb_metrics_record run_pair(const uint8_t *gt, const uint8_t *pred, int ndim, const int64_t *dims,
                                  const double *sp, double tol, int what, sb_ctx *ctx, int layout)
{
    sb_metrics_opts o = {tol, what, 95.0, ctx};
    sb_metrics_record r;
    sb_error err;
    assert_sb_ok(err, sb_metrics_pair(gt, pred, ndim, dims, sp, layout, &o, &r, &err));
    return r;
}

/* ===================================================================== */
/* Tables                                                                */
/* ===================================================================== */

static void test_table_2d(void **state)
{
    (void)state;
    double t[16], sp[2] = {2.0, 1.0};
    sb_metrics_table_2d(sp, t);
    double diag = 0.5 * sqrt(5.0);
    assert_true(t[0] == 0 && t[15] == 0);
    for (int c = 1; c < 15; c++) {
        int n = __builtin_popcount((unsigned)c);
        if (n == 1 || n == 3)
            assert_true(t[c] == diag);
    }
    assert_true(t[0x3] == 1.0 && t[0xC] == 1.0); /* bottom / top row: horizontal edge, s1 */
    assert_true(t[0x5] == 2.0 && t[0xA] == 2.0); /* right / left column: vertical edge, s0 */
    assert_true(t[0x6] == 2 * diag && t[0x9] == 2 * diag);
}

/* DeepMind's table (lookup_tables.py) evaluated at spacing (1.3, 0.4, 2.7):
 * covers every polygon kind (triangle, quad, non-planar pentagon, planar and
 * "chair" hexagons, separated pieces, complements). */
static const struct {
    int code;
    double area;
} dm_ref_aniso[] = {
    {1, 0.46362869033311566},  {3, 1.8361985186792849},   {7, 1.9308860709993472},
    {15, 1.0800000000000001},  {23, 2.7817721419986938},  {24, 0.92725738066623131},
    {27, 3.0412586067650484},  {30, 2.3945147613324624},  {60, 3.6723970373585697},
    {90, 1.1986659251017358},  {105, 1.8545147613324626}, {126, 0.92725738066623131},
    {146, 1.3908860709993469}, {150, 1.8545147613324626}, {195, 3.6723970373585697},
    {232, 2.7817721419986938},
};

static void test_table_3d(void **state)
{
    (void)state;
    double t[256], one[3] = {1, 1, 1};
    sb_metrics_table_3d(one, t);
    assert_true(t[0] == 0 && t[255] == 0);
    assert_close(t[1], sqrt(3.0) / 8, 1e-15, "corner triangle");
    assert_close(t[3], sqrt(2.0) / 2, 1e-15, "edge quad");
    assert_close(t[15], 1.0, 1e-15, "face");
    assert_close(t[23], 3 * sqrt(3.0) / 4, 1e-15, "planar hexagon");
    for (int c = 0; c < 256; c++) {
        assert_close(t[c], t[255 - c], 1e-15, "complement symmetry");
        if (c && c != 255)
            assert_true(t[c] > 0);
    }
    double an[3] = {1.3, 0.4, 2.7};
    sb_metrics_table_3d(an, t);
    for (size_t i = 0; i < sizeof dm_ref_aniso / sizeof dm_ref_aniso[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "code %d at (1.3,0.4,2.7)", dm_ref_aniso[i].code);
        assert_close(t[dm_ref_aniso[i].code], dm_ref_aniso[i].area, 1e-14, what);
    }
}

/* Analytic surfaces: cube of k^3 voxels = 6(k-1)^2 faces + 12(k-1) edge
 * strips of sqrt(2)/2 + 8 corner triangles of sqrt(3)/8; a single voxel
 * with spacing s = 8 corner triangles of the scaled code-1 area. */
static void test_cube_and_voxel_area(void **state)
{
    (void)state;
    for (int k = 1; k <= 6; k++) {
        int64_t d[3] = {k + 4, k + 3, k + 5};
        uint8_t *m = calloc((size_t)(d[0] * d[1] * d[2]), 1);
        for (int i = 0; i < k; i++)
            for (int j = 0; j < k; j++)
                for (int l = 0; l < k; l++)
                    m[((i + 2) * d[1] + (j + 1)) * d[2] + (l + 2)] = 1;
        double one[3] = {1, 1, 1};
        sb_metrics_record r = run_pair(m, m, 3, d, one, 1.0, SB_METRICS_ALL, NULL, SB_LAYOUT_C);
        double want = 6.0 * (k - 1) * (k - 1) + 12.0 * (k - 1) * sqrt(2.0) / 2 + sqrt(3.0);
        assert_close(r.gt_surface, want, 1e-12, "cube area");
        assert_close(r.pred_surface, want, 1e-12, "cube area (pred)");
        assert_int_equal(r.gt_voxels, k * k * k);
        sb_metrics_values v;
        sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v);
        assert_true(v.dice == 1.0 && v.iou == 1.0 && v.nsd == 1.0);
        assert_true(v.hd95 == 0.0 && v.hd100 == 0.0 && v.assd == 0.0);
        free(m);
    }
    /* single voxel, anisotropic */
    int64_t d[3] = {3, 3, 3};
    uint8_t m[27] = {0};
    m[13] = 1;
    double sp[3] = {1.3, 0.4, 2.7};
    sb_metrics_record r = run_pair(m, m, 3, d, sp, 1.0, 0, NULL, SB_LAYOUT_C);
    double t[256];
    sb_metrics_table_3d(sp, t);
    assert_close(r.gt_surface, 8 * t[1], 1e-14, "voxel area");
    assert_int_equal(r.gt_surfels, 8);
}

/* Digitised disc: the marching-squares contour uses 0/45/90-degree segments,
 * so its length tends to 8 (sqrt 2 - 1) / pi times 2 pi r (the mean of
 * cos t + (sqrt 2 - 1) sin t over the octant); digitised sphere: the
 * marching-cubes area approaches a constant multiple of 4 pi r^2. */
static void test_disc_and_sphere_converge(void **state)
{
    (void)state;
    const double limit = 8 * (sqrt(2.0) - 1) / M_PI;
    double prev_err = 1;
    int radii[] = {10, 40, 160};
    for (int t = 0; t < 3; t++) {
        int R = radii[t];
        int64_t n = 2 * R + 5, d[2] = {n, n};
        uint8_t *m = calloc((size_t)(n * n), 1);
        double c = n / 2 + 0.3;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                m[i * n + j] = (i - c) * (i - c) + (j - c + 0.1) * (j - c + 0.1) <= (double)R * R;
        sb_metrics_record r = run_pair(m, m, 2, d, NULL, 1.0, 0, NULL, SB_LAYOUT_C);
        double ratio = r.gt_surface / (2 * M_PI * R);
        double e = fabs(ratio - limit);
        print_message("disc r=%d: perimeter / 2 pi r = %.5f (limit %.5f)\n", R, ratio, limit);
        assert_true(e < 0.02);
        assert_true(e <= prev_err + 0.002);
        prev_err = e;
        free(m);
    }
    double ratios[2];
    int sr[2] = {12, 24};
    for (int t = 0; t < 2; t++) {
        int R = sr[t];
        int64_t n = 2 * R + 4, d[3] = {n, n, n};
        uint8_t *m = calloc((size_t)(n * n * n), 1);
        double c = n / 2 + 0.2;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++)
                for (int64_t k = 0; k < n; k++)
                    m[(i * n + j) * n + k] =
                        (i - c) * (i - c) + (j - c) * (j - c) + (k - c + 0.1) * (k - c + 0.1) <= (double)R * R;
        sb_metrics_record r = run_pair(m, m, 3, d, NULL, 1.0, 0, NULL, SB_LAYOUT_C);
        ratios[t] = r.gt_surface / (4 * M_PI * R * R);
        print_message("sphere r=%d: area / 4 pi r^2 = %.5f\n", R, ratios[t]);
        free(m);
    }
    assert_true(ratios[0] > 1.0 && ratios[0] < 1.12);
    assert_true(fabs(ratios[1] - ratios[0]) < 0.01);
}

/* ===================================================================== */
/* EDT against brute force                                               */
/* ===================================================================== */

static double brute_sq(const uint8_t *f, int ndim, const int64_t *dims, const double *sp, const int *order,
                       const int64_t *c)
{
    double best = INFINITY;
    int64_t total = 1;
    for (int a = 0; a < ndim; a++)
        total *= dims[a];
    for (int64_t x = 0; x < total; x++) {
        if (!f[x])
            continue;
        int64_t p[3], rem = x;
        for (int a = ndim - 1; a >= 0; a--) {
            p[a] = rem % dims[a];
            rem /= dims[a];
        }
        double acc = 0;
        for (int k = 0; k < ndim; k++) {
            int a = order[k];
            double t = (double)(c[a] - p[a]) * sp[a];
            double t2 = t * t;
            acc = k == 0 ? t2 : acc + t2;
        }
        if (acc < best)
            best = acc;
    }
    return best;
}

static void test_edt_bruteforce(void **state)
{
    (void)state;
    rng_state = 7;
    sb_ctx *ctx2 = NULL;
    sb_error err;
    assert_sb_ok(err, sb_ctx_create(&ctx2, 2, &err));
    for (int trial = 0; trial < 24; trial++) {
        int ndim = 1 + trial % 3;
        int64_t dims[3] = {1, 1, 1}, total = 1;
        double sp[3];
        for (int a = 0; a < ndim; a++) {
            dims[a] = 1 + (int64_t)(rnd() % (ndim == 3 ? 11 : 23));
            sp[a] = trial % 4 == 0 ? 1.0 : 0.3 + 2.5 * rnd01();
            total *= dims[a];
        }
        double density = trial % 5 == 0 ? 0.0 : 0.02 + 0.3 * rnd01();
        uint8_t *f = malloc((size_t)total);
        for (int64_t x = 0; x < total; x++)
            f[x] = rnd01() < density;
        int order[3] = {0, 1, 2};
        if (trial % 2) /* reversed pass order (NIfTI layout) */
            for (int a = 0; a < ndim; a++)
                order[a] = ndim - 1 - a;
        double *out = malloc(sizeof(double) * (size_t)total);
        double *at = malloc(sizeof(double) * (size_t)total);
        int64_t *q = malloc(sizeof(int64_t) * (size_t)total);
        for (int64_t x = 0; x < total; x++)
            q[x] = x;
        assert_sb_ok(err, sb_edt_sq(trial % 3 ? ctx2 : NULL, f, ndim, dims, sp, order, NULL, out, &err));
        assert_sb_ok(err, sb_edt_sq_at(ctx2, f, ndim, dims, sp, order, q, total, at, &err));
        for (int64_t x = 0; x < total; x++) {
            int64_t c[3], rem = x;
            for (int a = ndim - 1; a >= 0; a--) {
                c[a] = rem % dims[a];
                rem /= dims[a];
            }
            double want = brute_sq(f, ndim, dims, sp, order, c);
            if (!(out[x] == want) || !(at[x] == want))
                fail_msg("trial %d voxel %lld: edt %.17g, at %.17g, brute force %.17g", trial, (long long)x,
                         out[x], at[x], want);
        }
        free(f);
        free(out);
        free(at);
        free(q);
    }
    sb_ctx_free(ctx2);
}

/* ===================================================================== */
/* Reference implementation (brute force, written from the definition)   */
/* ===================================================================== */

typedef struct {
    double d, a;
} ref_da;

static int ref_cmp(const void *x, const void *y)
{
    const ref_da *p = x, *q = y;
    if (p->d != q->d)
        return p->d < q->d ? -1 : 1;
    return (p->a > q->a) - (p->a < q->a);
}

typedef struct {
    int64_t tp, n_gt, n_pred, s_gt, s_pred;
    double area_gt, area_pred, within_gt, within_pred, hd95, hd100, asd_gt, asd_pred;
} ref_result;

/* Surfels of a C-layout mask (DeepMind axis order): positions (corner
 * coords) and areas. Returns the count; pos has room for ndim*count. */
static int64_t ref_surfels(const uint8_t *m, int ndim, const int64_t *dims, const double *table, int64_t **pos,
                           double **area)
{
    int64_t cd[3] = {1, 1, 1}, ncorner = 1;
    for (int a = 0; a < ndim; a++) {
        cd[a] = dims[a] + 1;
        ncorner *= cd[a];
    }
    *pos = malloc(sizeof(int64_t) * 3 * (size_t)ncorner);
    *area = malloc(sizeof(double) * (size_t)ncorner);
    int64_t n = 0;
    const int nb = 1 << ndim;
    for (int64_t x = 0; x < ncorner; x++) {
        int64_t p[3] = {0, 0, 0}, rem = x;
        for (int a = ndim - 1; a >= 0; a--) {
            p[a] = rem % cd[a];
            rem /= cd[a];
        }
        int code = 0;
        for (int b = 0; b < nb; b++) {
            /* corner b: offsets o_a = bit (ndim-1-a) of b; DeepMind weight 2^(nb-1-b) */
            int64_t v = 0, inside = 1;
            for (int a = 0; a < ndim; a++) {
                int64_t c = p[a] - 1 + ((b >> (ndim - 1 - a)) & 1);
                if (c < 0 || c >= dims[a])
                    inside = 0;
                v = v * dims[a] + c;
            }
            if (inside && m[v])
                code += 1 << (nb - 1 - b);
        }
        if (code == 0 || code == (1 << nb) - 1)
            continue;
        for (int a = 0; a < 3; a++)
            (*pos)[3 * n + a] = p[a];
        (*area)[n] = table[code];
        n++;
    }
    return n;
}

static void ref_direction(int ndim, const double *sp, const int64_t *pa, const double *aa, int64_t na,
                          const int64_t *pb, int64_t nb, double tol, double *total, double *within, double *hd95,
                          double *hd100, double *asd)
{
    ref_da *v = malloc(sizeof(ref_da) * (size_t)(na + 1));
    for (int64_t i = 0; i < na; i++) {
        double best = INFINITY;
        for (int64_t j = 0; j < nb; j++) {
            double acc = 0;
            for (int a = 0; a < ndim; a++) {
                double t = (double)(pa[3 * i + a] - pb[3 * j + a]) * sp[a];
                acc += t * t;
            }
            double d = sqrt(acc);
            if (d < best)
                best = d;
        }
        v[i].d = best;
        v[i].a = aa[i];
    }
    qsort(v, (size_t)na, sizeof *v, ref_cmp);
    double tot = 0, w = 0, da = 0;
    for (int64_t i = 0; i < na; i++) {
        tot += v[i].a;
        if (v[i].d <= tol)
            w += v[i].a;
        da += v[i].d * v[i].a;
    }
    *total = tot;
    *within = w;
    *asd = da / tot;
    double perc[2] = {0.95, 1.0}, *outp[2] = {hd95, hd100};
    for (int k = 0; k < 2; k++) {
        if (na == 0) {
            *outp[k] = INFINITY;
            continue;
        }
        double c = 0;
        int64_t idx = na - 1;
        for (int64_t i = 0; i < na; i++) {
            c += v[i].a;
            if (c / tot >= perc[k]) {
                idx = i;
                break;
            }
        }
        *outp[k] = v[idx].d;
    }
    free(v);
}

static ref_result reference(const uint8_t *gt, const uint8_t *pred, int ndim, const int64_t *dims,
                            const double *sp, double tol)
{
    ref_result r;
    memset(&r, 0, sizeof r);
    int64_t total = 1;
    for (int a = 0; a < ndim; a++)
        total *= dims[a];
    for (int64_t x = 0; x < total; x++) {
        r.n_gt += gt[x] != 0;
        r.n_pred += pred[x] != 0;
        r.tp += gt[x] && pred[x];
    }
    double table[256];
    if (ndim == 2)
        sb_metrics_table_2d(sp, table);
    else
        sb_metrics_table_3d(sp, table);
    int64_t *pg, *pp;
    double *ag, *ap;
    r.s_gt = ref_surfels(gt, ndim, dims, table, &pg, &ag);
    r.s_pred = ref_surfels(pred, ndim, dims, table, &pp, &ap);
    double h95[2], h100[2];
    ref_direction(ndim, sp, pg, ag, r.s_gt, pp, r.s_pred, tol, &r.area_gt, &r.within_gt, &h95[0], &h100[0],
                  &r.asd_gt);
    ref_direction(ndim, sp, pp, ap, r.s_pred, pg, r.s_gt, tol, &r.area_pred, &r.within_pred, &h95[1],
                  &h100[1], &r.asd_pred);
    r.hd95 = fmax(h95[0], h95[1]);
    r.hd100 = fmax(h100[0], h100[1]);
    free(pg);
    free(pp);
    free(ag);
    free(ap);
    return r;
}

/* C-layout array of DeepMind axes -> the same array stored first-axis-fastest. */
static uint8_t *to_f_layout(const uint8_t *m, int ndim, const int64_t *dims)
{
    int64_t total = 1;
    for (int a = 0; a < ndim; a++)
        total *= dims[a];
    uint8_t *o = malloc((size_t)total);
    for (int64_t x = 0; x < total; x++) {
        int64_t p[3], rem = x;
        for (int a = ndim - 1; a >= 0; a--) {
            p[a] = rem % dims[a];
            rem /= dims[a];
        }
        int64_t y = 0;
        for (int a = ndim - 1; a >= 0; a--)
            y = y * dims[a] + p[a];
        o[y] = m[x];
    }
    return o;
}

static void check_against_reference(const uint8_t *gt, const uint8_t *pred, int ndim, const int64_t *dims,
                                     const double *sp, double tol, sb_ctx *ctx, const char *label)
{
    ref_result R = reference(gt, pred, ndim, dims, sp, tol);
    uint8_t *gf = to_f_layout(gt, ndim, dims), *pf = to_f_layout(pred, ndim, dims);
    char what[160];
    for (int variant = 0; variant < 4; variant++) {
        int layout = variant & 1 ? SB_LAYOUT_F : SB_LAYOUT_C;
        int wantd = variant < 2;
        sb_metrics_record r = run_pair(layout == SB_LAYOUT_F ? gf : gt, layout == SB_LAYOUT_F ? pf : pred,
                                       ndim, dims, sp, tol, wantd ? SB_METRICS_ALL : SB_METRICS_NSD, ctx, layout);
#define CHK(got, want, name)                                                                           \
    do {                                                                                               \
        snprintf(what, sizeof what, "%s variant %d: %s", label, variant, name);                        \
        assert_close((got), (want), 1e-9, what);                                                       \
    } while (0)
        CHK((double)r.tp, (double)R.tp, "tp");
        CHK((double)r.gt_voxels, (double)R.n_gt, "gt voxels");
        CHK((double)r.pred_voxels, (double)R.n_pred, "pred voxels");
        CHK((double)r.gt_surfels, (double)R.s_gt, "gt surfels");
        CHK((double)r.pred_surfels, (double)R.s_pred, "pred surfels");
        CHK(r.gt_surface, R.area_gt, "gt surface");
        CHK(r.pred_surface, R.area_pred, "pred surface");
        if (R.s_gt && R.s_pred) {
            CHK(r.gt_within, R.within_gt, "gt within");
            CHK(r.pred_within, R.within_pred, "pred within");
        }
        if (wantd && R.s_gt && R.s_pred) {
            CHK(fmax(r.hdp_gt, r.hdp_pred), R.hd95, "hd95");
            CHK(fmax(r.hd100_gt, r.hd100_pred), R.hd100, "hd100");
            CHK(r.asd_gt, R.asd_gt, "asd gt->pred");
            CHK(r.asd_pred, R.asd_pred, "asd pred->gt");
        }
#undef CHK
        if (ctx) { /* threads do not change a single bit */
            sb_metrics_record r1 = run_pair(layout == SB_LAYOUT_F ? gf : gt, layout == SB_LAYOUT_F ? pf : pred, ndim,
                                            dims, sp, tol, wantd ? SB_METRICS_ALL : SB_METRICS_NSD, NULL, layout);
            assert_true(r1.gt_surface == r.gt_surface && r1.pred_surface == r.pred_surface);
            assert_true(r1.gt_within == r.gt_within && r1.pred_within == r.pred_within);
            if (wantd)
                assert_true(r1.hdp_gt == r.hdp_gt && r1.hd100_pred == r.hd100_pred &&
                            (r1.asd_gt == r.asd_gt || (isnan(r1.asd_gt) && isnan(r.asd_gt))));
        }
    }
    free(gf);
    free(pf);
}

/* Random blobs (and noise) touching the border, iso- and anisotropic. */
static void random_masks(uint8_t *gt, uint8_t *pred, int ndim, const int64_t *dims, int style)
{
    int64_t total = 1;
    for (int a = 0; a < ndim; a++)
        total *= dims[a];
    for (int m = 0; m < 2; m++) {
        uint8_t *x = m ? pred : gt;
        if (style == 0) { /* noise */
            double p = 0.1 + 0.4 * rnd01();
            for (int64_t v = 0; v < total; v++)
                x[v] = rnd01() < p;
            continue;
        }
        memset(x, 0, (size_t)total);
        int nb = 1 + (int)(rnd() % 3);
        for (int b = 0; b < nb; b++) {
            double c[3], r = 1 + rnd01() * (double)dims[0] / 2.5;
            for (int a = 0; a < ndim; a++)
                c[a] = rnd01() * (double)dims[a];
            for (int64_t v = 0; v < total; v++) {
                int64_t rem = v;
                double d2 = 0;
                for (int a = ndim - 1; a >= 0; a--) {
                    double t = (double)(rem % dims[a]) - c[a];
                    rem /= dims[a];
                    d2 += t * t;
                }
                if (d2 <= r * r && rnd01() < 0.93)
                    x[v] = 1;
            }
        }
    }
}

static void test_random_vs_reference_2d(void **state)
{
    (void)state;
    rng_state = 2024;
    sb_ctx *ctx = NULL;
    sb_error err;
    assert_sb_ok(err, sb_ctx_create(&ctx, 2, &err));
    for (int t = 0; t < 24; t++) {
        int64_t dims[2] = {1 + (int64_t)(rnd() % 32), 1 + (int64_t)(rnd() % 32)};
        double sp[2] = {1, 1};
        if (t % 2)
            for (int a = 0; a < 2; a++)
                sp[a] = 0.4 + 2 * rnd01();
        double tol = t % 3 == 0 ? 1.0 : (t % 3 == 1 ? 2.0 : 0.5 + 4 * rnd01());
        if (t == 23) { /* tolerance ball too large for the offset list -> band EDT path */
            tol = 100.0;
            sp[0] = sp[1] = 0.5;
        }
        uint8_t *g = malloc((size_t)(dims[0] * dims[1])), *p = malloc((size_t)(dims[0] * dims[1]));
        random_masks(g, p, 2, dims, t % 4 == 0 ? 0 : 1);
        char label[64];
        snprintf(label, sizeof label, "2-D trial %d", t);
        check_against_reference(g, p, 2, dims, sp, tol, t % 2 ? ctx : NULL, label);
        free(g);
        free(p);
    }
    sb_ctx_free(ctx);
}

static void test_random_vs_reference_3d(void **state)
{
    (void)state;
    rng_state = 99;
    sb_ctx *ctx = NULL;
    sb_error err;
    assert_sb_ok(err, sb_ctx_create(&ctx, 2, &err));
    for (int t = 0; t < 18; t++) {
        /* sizes from 1 (single-voxel-thick volumes) up */
        int64_t dims[3] = {1 + (int64_t)(rnd() % 12), 1 + (int64_t)(rnd() % 12), 1 + (int64_t)(rnd() % 12)};
        double sp[3] = {1, 1, 1};
        if (t % 2)
            for (int a = 0; a < 3; a++)
                sp[a] = 0.4 + 2 * rnd01();
        /* t == 13: a tolerance ball too large for the offset list -> band EDT path */
        double tol = t == 13 ? 60.0 : (t % 3 == 0 ? 1.0 : 0.5 + 3 * rnd01());
        if (t == 13)
            sp[0] = sp[1] = sp[2] = 0.3;
        int64_t total = dims[0] * dims[1] * dims[2];
        uint8_t *g = malloc((size_t)total), *p = malloc((size_t)total);
        random_masks(g, p, 3, dims, t % 4 == 0 ? 0 : 1);
        char label[64];
        snprintf(label, sizeof label, "3-D trial %d", t);
        check_against_reference(g, p, 3, dims, sp, tol, t % 2 ? ctx : NULL, label);
        free(g);
        free(p);
    }
    sb_ctx_free(ctx);
}

/* ===================================================================== */
/* DeepMind's test vectors                                               */
/* ===================================================================== */

static void test_deepmind_vectors_2d(void **state)
{
    (void)state;
    int64_t d[2] = {128, 128};
    uint8_t *g = calloc(128 * 128, 1), *p = calloc(128 * 128, 1);
    /* single pixels two columns apart, spacing (2, 1) */
    g[50 * 128 + 70] = 1;
    p[50 * 128 + 72] = 1;
    double sp[2] = {2, 1};
    sb_metrics_record r = run_pair(g, p, 2, d, sp, 1.0, SB_METRICS_ALL, NULL, SB_LAYOUT_C);
    sb_metrics_values v;
    sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v);
    assert_int_equal(r.gt_surfels, 4);
    assert_close(r.gt_surface, 4 * 0.5 * sqrt(5.0), 1e-15, "surface");
    assert_close(r.asd_gt, 1.5, 1e-15, "asd gt");
    assert_close(r.asd_pred, 1.5, 1e-15, "asd pred");
    assert_close(v.hd100, 2.0, 0, "hd100");
    assert_close(v.hd95, 2.0, 0, "hd95");
    assert_close(r.gt_within / r.gt_surface, 0.5, 1e-15, "overlap gt");
    assert_close(v.nsd, 0.5, 1e-15, "nsd@1");
    assert_close(v.dice, 0.0, 0, "dice");
    /* NSD-only path gives the same */
    r = run_pair(g, p, 2, d, sp, 1.0, SB_METRICS_NSD, NULL, SB_LAYOUT_C);
    sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v);
    assert_close(v.nsd, 0.5, 1e-15, "nsd@1 (ball)");

    /* two squares shifted by one pixel, spacing (2, 1) */
    static const char *G[6] = {"000000", "011000", "011000", "000000", "000000", "000000"};
    static const char *P[6] = {"000000", "011000", "011000", "011000", "000000", "000000"};
    uint8_t g6[36], p6[36];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++) {
            g6[i * 6 + j] = G[i][j] == '1';
            p6[i * 6 + j] = P[i][j] == '1';
        }
    int64_t d6[2] = {6, 6};
    r = run_pair(g6, p6, 2, d6, sp, 1.0, SB_METRICS_ALL, NULL, SB_LAYOUT_C);
    double diag = 0.5 * sqrt(5.0);
    assert_int_equal(r.gt_surfels, 8);
    assert_int_equal(r.pred_surfels, 10);
    assert_close(r.gt_surface, 4 * diag + 2 * 1 + 2 * 2, 1e-15, "gt contour");
    assert_close(r.pred_surface, 4 * diag + 2 * 1 + 4 * 2, 1e-15, "pred contour");
    /* gt: one horizontal element (length 1) at distance 1 (= s1) -> within 1 */
    assert_close(r.gt_within, r.gt_surface, 1e-15, "gt within 1");
    /* pred: three elements (diag, horizontal, diag) at distance 2 = vertical */
    assert_close(r.pred_within, r.pred_surface - (2 * diag + 1), 1e-15, "pred within 1");
    assert_close(r.hd100_pred, 2.0, 0, "hd100 pred");
    assert_close(r.asd_gt, 1.0 / r.gt_surface, 1e-15, "asd gt");
    assert_close(r.asd_pred, 2.0 * (2 * diag + 1) / r.pred_surface, 1e-15, "asd pred");

    /* empty prediction, empty GT, both empty; spacing (3, 2) */
    double sp2[2] = {3, 2};
    memset(p, 0, 128 * 128);
    memset(g, 0, 128 * 128);
    g[50 * 128 + 60] = 1;
    r = run_pair(g, p, 2, d, sp2, 1.0, SB_METRICS_ALL, NULL, SB_LAYOUT_C);
    assert_true(isinf(r.asd_gt) && isnan(r.asd_pred));
    assert_true(isinf(r.hdp_gt) && isinf(r.hd100_gt));
    assert_true(r.gt_within == 0.0);
    sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v);
    assert_true(v.nsd == 0.0 && v.dice == 0.0 && v.iou == 0.0 && isinf(v.hd95) && isinf(v.hd100));
    r = run_pair(p, g, 2, d, sp2, 1.0, SB_METRICS_ALL, NULL, SB_LAYOUT_C);
    assert_true(isnan(r.asd_gt) && isinf(r.asd_pred));
    sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v);
    assert_true(v.nsd == 0.0 && v.dice == 0.0 && isinf(v.hd95));
    r = run_pair(p, p, 2, d, sp2, 1.0, SB_METRICS_ALL, NULL, SB_LAYOUT_C);
    sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v);
    assert_true(isnan(v.nsd) && isnan(v.dice) && isnan(v.iou) && isnan(v.hd95));
    free(g);
    free(p);
}

static void test_deepmind_vectors_3d(void **state)
{
    (void)state;
    int64_t d[3] = {128, 128, 128};
    size_t n = 128 * 128 * 128;
    uint8_t *g = calloc(n, 1), *p = calloc(n, 1);
    g[(50 * 128 + 60) * 128 + 70] = 1;
    p[(50 * 128 + 60) * 128 + 72] = 1;
    double sp[3] = {3, 2, 1};
    sb_metrics_record r = run_pair(g, p, 3, d, sp, 1.0, SB_METRICS_ALL, NULL, SB_LAYOUT_C);
    sb_metrics_values v;
    sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v);
    assert_close(r.asd_gt, 1.5, 1e-12, "asd gt");
    assert_close(r.asd_pred, 1.5, 1e-12, "asd pred");
    assert_close(v.hd100, 2.0, 0, "hd100");
    assert_close(v.hd95, 2.0, 0, "hd95");
    assert_close(v.nsd, 0.5, 1e-12, "nsd@1");
    assert_true(v.dice == 0.0);
    free(g);
    free(p);

    /* two slabs [0:50) and [0:51) along x0 of a 100^3 volume (touching the
     * borders), spacing (2, 1, 1): DeepMind's expected values (3 places) */
    int64_t d1[3] = {100, 100, 100};
    g = calloc(1000000, 1);
    p = calloc(1000000, 1);
    memset(g, 1, 50 * 10000);
    memset(p, 1, 51 * 10000);
    double sp1[3] = {2, 1, 1};
    for (int layout = 0; layout < 2; layout++) {
        uint8_t *gg = g, *pp = p;
        if (layout == SB_LAYOUT_F) {
            gg = to_f_layout(g, 3, d1);
            pp = to_f_layout(p, 3, d1);
        }
        r = run_pair(gg, pp, 3, d1, sp1, 1.0, SB_METRICS_ALL, NULL, layout);
        sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v);
        assert_close(r.asd_gt, 0.322, 5e-4, "asd gt");
        assert_close(r.asd_pred, 0.339, 5e-4, "asd pred");
        assert_close(v.hd100, 2.0, 0, "hd100");
        assert_close(v.hd95, 2.0, 0, "hd95");
        assert_close(r.gt_within / r.gt_surface, 0.842, 5e-4, "overlap gt");
        assert_close(r.pred_within / r.pred_surface, 0.830, 5e-4, "overlap pred");
        assert_close(v.nsd, 0.836, 5e-4, "nsd@1");
        assert_close(v.dice, 0.990, 5e-4, "dice");
        r = run_pair(gg, pp, 3, d1, sp1, 1.0, SB_METRICS_NSD, NULL, layout);
        sb_metrics_values v2;
        sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v2);
        assert_close(v2.nsd, v.nsd, 1e-12, "nsd (ball) = nsd (edt)");
        if (layout == SB_LAYOUT_F) {
            free(gg);
            free(pp);
        }
    }
    free(g);
    free(p);
}

/* ===================================================================== */
/* Policies                                                              */
/* ===================================================================== */

static void test_policies(void **state)
{
    (void)state;
    sb_metrics_record r;
    memset(&r, 0, sizeof r);
    r.has_nsd = r.has_distances = 1;
    sb_metrics_values v;
    /* both empty */
    sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v);
    assert_true(isnan(v.dice) && isnan(v.iou) && isnan(v.nsd) && isnan(v.hd95) && isnan(v.assd));
    sb_metrics_from_record(&r, SB_EMPTY_ONE, SB_NSD_PLAIN, &v);
    assert_true(v.dice == 1 && v.iou == 1 && v.nsd == 1 && v.hd95 == 0 && v.hd100 == 0 && v.assd == 0);
    sb_metrics_from_record(&r, SB_EMPTY_ZERO, SB_NSD_MEDSAM, &v);
    assert_true(v.dice == 0 && v.iou == 0 && v.nsd == 0);
    /* one empty: 0 whatever the policy */
    r.gt_voxels = 5;
    r.fn = 5;
    r.gt_surface = 3;
    for (int pol = 0; pol < 3; pol++) {
        sb_metrics_from_record(&r, pol, SB_NSD_PLAIN, &v);
        assert_true(v.dice == 0 && v.iou == 0 && v.nsd == 0 && isinf(v.hd95) && isnan(v.assd));
    }
    /* medsam: NSD zeroed when Dice <= 0.2 */
    memset(&r, 0, sizeof r);
    r.has_nsd = 1;
    r.tp = 1;
    r.fp = 4;
    r.fn = 4;
    r.gt_voxels = 5;
    r.pred_voxels = 5;
    r.gt_surface = r.pred_surface = 10;
    r.gt_within = r.pred_within = 7;
    sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_PLAIN, &v);
    assert_close(v.dice, 0.2, 1e-15, "dice");
    assert_close(v.iou, 1.0 / 9.0, 1e-15, "iou");
    assert_close(v.nsd, 0.7, 1e-15, "nsd");
    assert_true(isnan(v.hd95));
    sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_MEDSAM, &v);
    assert_true(v.nsd == 0.0);
    r.tp = 2;
    r.fp = r.fn = 3;
    sb_metrics_from_record(&r, SB_EMPTY_NAN, SB_NSD_MEDSAM, &v);
    assert_close(v.nsd, 0.7, 1e-15, "nsd kept above 0.2");
    int pol;
    sb_error err;
    assert_int_equal(sb_parse_empty_policy("one", &pol, &err), SB_OK);
    assert_int_equal(pol, SB_EMPTY_ONE);
    assert_int_equal(sb_parse_empty_policy("maybe", &pol, &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "maybe"));
    assert_int_equal(sb_parse_nsd_policy("medsam", &pol, &err), SB_OK);
    assert_int_equal(pol, SB_NSD_MEDSAM);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    uint8_t m[4] = {0, 1, 0, 0};
    int64_t d[2] = {2, 2};
    sb_metrics_record r;
    sb_error err;
    double bad[2] = {1, 0};
    sb_metrics_opts o = {1.0, SB_METRICS_ALL, 95, NULL};
    assert_int_equal(sb_metrics_pair(m, m, 2, d, bad, SB_LAYOUT_C, &o, &r, &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "spacing"));
    assert_int_equal(sb_metrics_pair(m, m, 4, d, NULL, SB_LAYOUT_C, &o, &r, &err), SB_EINVAL);
    o.tolerance = NAN;
    assert_int_equal(sb_metrics_pair(m, m, 2, d, NULL, SB_LAYOUT_C, &o, &r, &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "tolerance"));
    int64_t d0[2] = {0, 2};
    o.tolerance = 1;
    assert_int_equal(sb_metrics_pair(m, m, 2, d0, NULL, SB_LAYOUT_C, &o, &r, &err), SB_EINVAL);
}

/* ===================================================================== */
/* Anchors (DeepMind's values in the JSON next to the NIfTI pairs)        */
/* ===================================================================== */

/* Number after "key": (searching from `from`, if given). */
static double json_num(const char *s, const char *from_key, const char *key)
{
    if (from_key) {
        char fk[64];
        snprintf(fk, sizeof fk, "\"%s\"", from_key);
        const char *p = strstr(s, fk);
        assert_non_null(p);
        s = p;
    }
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(s, k);
    if (!p)
        fail_msg("oracle JSON has no key %s", key);
    p += strlen(k);
    while (*p == ' ' || *p == '\n')
        p++;
    if (*p == '"')
        return strncmp(p + 1, "inf", 3) == 0 ? INFINITY : NAN;
    return strtod(p, NULL);
}

static void check_anchor(const char *name, int crop)
{
    char path[256];
    sb_error err;
    sb_nifti g, p;
    snprintf(path, sizeof path, "metrics_anchor/%s_gt.nii.gz", name);
    assert_sb_ok(err, sb_nifti_read(&g, fixture_path(path), &err));
    snprintf(path, sizeof path, "metrics_anchor/%s_pred.nii.gz", name);
    assert_sb_ok(err, sb_nifti_read(&p, fixture_path(path), &err));
    snprintf(path, sizeof path, "metrics_anchor/%s.json", name);
    char *js = slurp(fixture_path(path));
    assert_non_null(js);
    assert_int_equal(g.datatype, SB_NIFTI_UINT8);
    int nd = g.ndim;
    int64_t dims[3];
    double sp[3];
    for (int a = 0; a < nd; a++) {
        dims[a] = g.dim[a + 1];
        sp[a] = g.pixdim[a + 1];
        assert_int_equal(dims[a], p.dim[a + 1]);
    }
    {
        /* spacing = header pixdim (float32) as float64, exactly the oracle's */
        const char *q = strstr(js, "\"spacing\"");
        assert_non_null(q);
        q = strchr(q, '[') + 1;
        for (int a = 0; a < nd; a++) {
            char *e;
            double want = strtod(q, &e);
            assert_close(sp[a], want, 0, "spacing");
            q = e + 1;
        }
    }
    sb_ctx *ctx = NULL;
    assert_sb_ok(err, sb_ctx_create(&ctx, 1, &err));
    if (!crop) {
        sb_metrics_record r1, r2, rd;
        sb_metrics_opts o1 = {1.0, SB_METRICS_NSD, 95, ctx}, o2 = {2.0, SB_METRICS_NSD, 95, ctx},
                        od = {2.0, SB_METRICS_ALL, 95, ctx};
        assert_sb_ok(err, sb_metrics_pair(g.data, p.data, nd, dims, sp, SB_LAYOUT_F, &o1, &r1, &err));
        assert_sb_ok(err, sb_metrics_pair(g.data, p.data, nd, dims, sp, SB_LAYOUT_F, &o2, &r2, &err));
        assert_sb_ok(err, sb_metrics_pair(g.data, p.data, nd, dims, sp, SB_LAYOUT_F, &od, &rd, &err));
        sb_metrics_values v1, v2, vd;
        sb_metrics_from_record(&r1, 0, 0, &v1);
        sb_metrics_from_record(&r2, 0, 0, &v2);
        sb_metrics_from_record(&rd, 0, 0, &vd);
        const double tol = 1e-12;
        assert_int_equal(rd.gt_voxels, (int64_t)json_num(js, NULL, "n_voxels_gt"));
        assert_int_equal(rd.pred_voxels, (int64_t)json_num(js, NULL, "n_voxels_pred"));
        assert_int_equal(rd.gt_surfels, (int64_t)json_num(js, NULL, "n_surfels_gt"));
        assert_int_equal(rd.pred_surfels, (int64_t)json_num(js, NULL, "n_surfels_pred"));
        assert_close(vd.dice, json_num(js, NULL, "dice"), tol, "dice");
        assert_close(v1.nsd, json_num(js, "nsd", "1.0"), tol, "nsd@1");
        assert_close(v2.nsd, json_num(js, "nsd", "2.0"), tol, "nsd@2");
        assert_close(vd.nsd, json_num(js, "nsd", "2.0"), tol, "nsd@2 (edt)");
        assert_close(vd.hd95, json_num(js, NULL, "hd95"), tol, "hd95");
        assert_close(vd.hd100, json_num(js, NULL, "hd100"), tol, "hd100");
        assert_close(vd.assd, json_num(js, NULL, "assd"), tol, "assd");
        assert_close(rd.asd_gt, json_num(js, NULL, "asd_gt_to_pred"), tol, "asd gt->pred");
        assert_close(rd.asd_pred, json_num(js, NULL, "asd_pred_to_gt"), tol, "asd pred->gt");
        assert_close(rd.gt_surface, json_num(js, NULL, "surfel_area_gt"), tol, "gt surface");
        assert_close(rd.pred_surface, json_num(js, NULL, "surfel_area_pred"), tol, "pred surface");
    } else {
        /* sanitizer builds: a crop of the 3-D anchor (every 4th slice range
         * around the object) against the brute-force reference would be too
         * slow; compare the fast paths with each other on a crop instead */
        int64_t c0[3] = {dims[0] / 2 - 40, dims[1] / 2 - 40, dims[2] / 2 - 12}, cd[3] = {80, 80, 24};
        size_t cn = (size_t)(cd[0] * cd[1] * cd[2]);
        uint8_t *cg = malloc(cn), *cp = malloc(cn);
        for (int64_t k = 0; k < cd[2]; k++)
            for (int64_t j = 0; j < cd[1]; j++)
                for (int64_t i = 0; i < cd[0]; i++) {
                    int64_t src = ((k + c0[2]) * dims[1] + (j + c0[1])) * dims[0] + (i + c0[0]);
                    cg[(k * cd[1] + j) * cd[0] + i] = ((uint8_t *)g.data)[src];
                    cp[(k * cd[1] + j) * cd[0] + i] = ((uint8_t *)p.data)[src];
                }
        sb_metrics_record ra = run_pair(cg, cp, 3, cd, sp, 2.0, SB_METRICS_ALL, ctx, SB_LAYOUT_F);
        sb_metrics_record rb = run_pair(cg, cp, 3, cd, sp, 2.0, SB_METRICS_NSD, ctx, SB_LAYOUT_F);
        assert_true(ra.gt_surfels > 100);
        assert_close(ra.gt_within, rb.gt_within, 1e-9, "crop gt within");
        assert_close(ra.pred_within, rb.pred_within, 1e-9, "crop pred within");
        free(cg);
        free(cp);
    }
    sb_ctx_free(ctx);
    free(js);
    sb_nifti_free(&g);
    sb_nifti_free(&p);
}

static void test_anchor_2d(void **state)
{
    (void)state;
    check_anchor("anchor2d", 0);
}

static void test_anchor_3d(void **state)
{
    (void)state;
    check_anchor("anchor3d", UNDER_ASAN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_2d),
        cmocka_unit_test(test_table_3d),
        cmocka_unit_test(test_cube_and_voxel_area),
        cmocka_unit_test(test_disc_and_sphere_converge),
        cmocka_unit_test(test_edt_bruteforce),
        cmocka_unit_test(test_random_vs_reference_2d),
        cmocka_unit_test(test_random_vs_reference_3d),
        cmocka_unit_test(test_deepmind_vectors_2d),
        cmocka_unit_test(test_deepmind_vectors_3d),
        cmocka_unit_test(test_policies),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_anchor_2d),
        cmocka_unit_test(test_anchor_3d),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
