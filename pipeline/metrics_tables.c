/*
 * Lookup tables: contour length (2-D, marching squares) and surface area
 * (3-D, marching cubes) of each 2x2 / 2x2x2 neighbour code, scaled by the
 * spacing. Derived here from the geometry (see the comments); they reproduce
 * the tables of DeepMind's surface-distance library (checked against its
 * values in tests/test_metrics_tables.c).
 */
#pragma GCC optimize("fp-contract=off")

#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

/*
 * 2-D. Code bits: 8 = (0,0), 4 = (0,1), 2 = (1,0), 1 = (1,1) in (x0, x1);
 * x0 runs "down", x1 "right". The contour through a 2x2 block joins the
 * midpoints of the block's sides whose two pixels differ:
 *  - one pixel set or one unset: a segment between two adjacent side
 *    midpoints, half the diagonal of the (s0 x s1) cell;
 *  - two pixels on one row (code 0011 / 1100): a segment parallel to x1,
 *    length s1 ("horizontal"); two in one column (0101 / 1010): length s0;
 *  - the two diagonals (1001 / 0110): two separate corner segments, twice
 *    the half diagonal.
 */
void sb_metrics_table_2d(const double spacing[2], double table[16])
{
    const double vertical = spacing[0], horizontal = spacing[1];
    const double diag = 0.5 * sqrt(spacing[0] * spacing[0] + spacing[1] * spacing[1]);
    for (int code = 0; code < 16; code++) {
        int n = __builtin_popcount((unsigned)code);
        double v;
        if (n == 0 || n == 4)
            v = 0.0;
        else if (n == 1 || n == 3)
            v = diag;
        else if (code == 0x3 || code == 0xC)
            v = horizontal;
        else if (code == 0x5 || code == 0xA)
            v = vertical;
        else
            v = 2.0 * diag; /* 0x6, 0x9 */
        table[code] = v;
    }
}

/*
 * 3-D. Corner c = 4*i + 2*j + k of the 2x2x2 block (i along x0) has code bit
 * 1 << (7 - c), as DeepMind's kernel [[[128,64],[32,16]],[[8,4],[2,1]]].
 *
 * Surface of a code (binary marching cubes, vertices at edge midpoints):
 *  1. A code with more than 4 corners set is replaced by its complement (the
 *     surface of a set and of its complement is the same).
 *  2. On each face, the midpoints of the edges whose corners differ are
 *     joined by segments: 2 such edges -> one segment; 4 (the face's set
 *     corners are diagonal) -> each set corner is cut off on its own (the
 *     set corners are kept apart, the classic convention).
 *  3. The segments form closed polygons (3 to 6 vertices). Each polygon is
 *     triangulated with the triangulation of largest total area (for
 *     non-planar pentagons and "chair" hexagons the choice matters once the
 *     spacing is anisotropic; this is the choice of DeepMind's table).
 *  4. A triangle's area vector is half the cross product of two edges, in
 *     voxel units (n0, n1, n2); with spacing s its area is
 *     |(n0 s1 s2, n1 s0 s2, n2 s0 s1)|. The code's area is the sum over its
 *     triangles.
 */
typedef struct {
    double n[3];
} tri_normal;

static int corner_of(int c, int axis) { return (c >> (2 - axis)) & 1; }
static int corner_set(int code, int c) { return (code >> (7 - c)) & 1; }

/* Edge id of the cube edge between corners a < b (adjacent): index in a 8x8 map. */
static void edge_mid(int a, int b, double p[3])
{
    for (int ax = 0; ax < 3; ax++)
        p[ax] = 0.5 * (corner_of(a, ax) + corner_of(b, ax));
}

static void cross_half(const double *o, const double *a, const double *b, double n[3])
{
    double u[3] = {a[0] - o[0], a[1] - o[1], a[2] - o[2]};
    double v[3] = {b[0] - o[0], b[1] - o[1], b[2] - o[2]};
    n[0] = 0.5 * (u[1] * v[2] - u[2] * v[1]);
    n[1] = 0.5 * (u[2] * v[0] - u[0] * v[2]);
    n[2] = 0.5 * (u[0] * v[1] - u[1] * v[0]);
}

static double norm3(const double n[3]) { return sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]); }

/* Best (max-area) triangulation of the polygon P[idx[0..m-1]] (convex-position
 * recursion over the edge (idx[0], idx[m-1])): returns its area and writes its
 * triangles' normals. */
static double best_triangulation(double P[][3], const int *idx, int m, tri_normal *out, int *nout)
{
    *nout = 0;
    if (m < 3)
        return 0.0;
    double best = -1.0;
    tri_normal bt[8], lt[8], rt[8];
    int bn = 0;
    for (int k = 1; k < m - 1; k++) {
        int nl = 0, nr = 0;
        double al = best_triangulation(P, idx, k + 1, lt, &nl);
        double ar = best_triangulation(P, idx + k, m - k, rt, &nr);
        tri_normal t;
        cross_half(P[idx[0]], P[idx[k]], P[idx[m - 1]], t.n);
        double a = al + ar + norm3(t.n);
        if (a > best + 1e-12) {
            best = a;
            bn = 0;
            for (int q = 0; q < nl; q++)
                bt[bn++] = lt[q];
            for (int q = 0; q < nr; q++)
                bt[bn++] = rt[q];
            bt[bn++] = t;
        }
    }
    for (int q = 0; q < bn; q++)
        out[q] = bt[q];
    *nout = bn;
    return best;
}

/* Triangle normals (voxel units) of one code; returns their number. */
static int code_triangles(int code, tri_normal *tris)
{
    if (__builtin_popcount((unsigned)code) > 4)
        code = 255 - code;
    /* vertices: edges (a,b) with a<b adjacent and differing; adjacency lists */
    int vid[8][8];
    memset(vid, -1, sizeof vid);
    double P[12][3];
    int nv = 0;
    for (int a = 0; a < 8; a++)
        for (int ax = 0; ax < 3; ax++) {
            int b = a | (1 << (2 - ax));
            if (b == a)
                continue;
            if (corner_set(code, a) != corner_set(code, b)) {
                edge_mid(a, b, P[nv]);
                vid[a][b] = vid[b][a] = nv++;
            }
        }
    int adj[12][2], deg[12] = {0};
    for (int ax = 0; ax < 3; ax++)
        for (int side = 0; side < 2; side++) {
            /* face corners in cyclic order */
            int o0 = ax == 0 ? 1 : 0, o1 = ax == 2 ? 1 : 2;
            int cyc[4], uv[4][2] = {{0, 0}, {0, 1}, {1, 1}, {1, 0}};
            for (int t = 0; t < 4; t++) {
                int c = side << (2 - ax);
                c |= uv[t][0] << (2 - o0);
                c |= uv[t][1] << (2 - o1);
                cyc[t] = c;
            }
            int crossing = 0;
            for (int t = 0; t < 4; t++)
                crossing += corner_set(code, cyc[t]) != corner_set(code, cyc[(t + 1) & 3]);
            int seg[2][2], ns = 0;
            if (crossing == 2) {
                int e[2], ne = 0;
                for (int t = 0; t < 4; t++)
                    if (corner_set(code, cyc[t]) != corner_set(code, cyc[(t + 1) & 3]))
                        e[ne++] = vid[cyc[t]][cyc[(t + 1) & 3]];
                seg[ns][0] = e[0];
                seg[ns++][1] = e[1];
            } else if (crossing == 4) {
                for (int t = 0; t < 4; t++)
                    if (corner_set(code, cyc[t])) {
                        seg[ns][0] = vid[cyc[(t + 3) & 3]][cyc[t]];
                        seg[ns++][1] = vid[cyc[t]][cyc[(t + 1) & 3]];
                    }
            }
            for (int s = 0; s < ns; s++) {
                int a = seg[s][0], b = seg[s][1];
                adj[a][deg[a]++] = b;
                adj[b][deg[b]++] = a;
            }
        }
    int seen[12] = {0}, ntri = 0;
    for (int s = 0; s < nv; s++) {
        if (seen[s])
            continue;
        int loop[12], m = 0, prev = -1, cur = s;
        for (;;) {
            loop[m++] = cur;
            seen[cur] = 1;
            int nx = adj[cur][0] != prev && !seen[adj[cur][0]] ? adj[cur][0]
                     : (!seen[adj[cur][1]] ? adj[cur][1] : -1);
            if (nx < 0)
                break;
            prev = cur;
            cur = nx;
        }
        int nt = 0;
        best_triangulation(P, loop, m, tris + ntri, &nt);
        ntri += nt;
    }
    return ntri;
}

/* The triangulation depends on the code only: derived once per process
 * (immutable afterwards), then only scaled per spacing. */
static tri_normal g_tris[256][16];
static int g_ntris[256];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_triangles(void)
{
    for (int code = 0; code < 256; code++)
        g_ntris[code] = code == 0 || code == 255 ? 0 : code_triangles(code, g_tris[code]);
}

void sb_metrics_table_3d(const double spacing[3], double table[256])
{
    pthread_once(&g_once, build_triangles);
    for (int code = 0; code < 256; code++) {
        double sum = 0.0;
        for (int t = 0; t < g_ntris[code]; t++) {
            const double *m = g_tris[code][t].n;
            double n[3] = {m[0] * spacing[1] * spacing[2], m[1] * spacing[0] * spacing[2], m[2] * spacing[0] * spacing[1]};
            sum += norm3(n);
        }
        table[code] = sum;
    }
}
