/*
 * Segmentation metrics with exactly the semantics of DeepMind's
 * `surface-distance` library (PROTOCOL.md section 3), in 2-D and 3-D.
 * pipeline/metrics_*.c; usable without MPI.
 *
 * Definitions (what the numbers mean):
 *  - Masks are binary: a voxel is foreground when its byte is != 0.
 *  - Dice = 2tp / (2tp + fp + fn), IoU = tp / (tp + fp + fn).
 *  - Surface elements ("surfels") live on the grid shifted by half a voxel:
 *    every 2x2 (2-D) or 2x2x2 (3-D) block of voxels, with the mask
 *    zero-padded outside the array, gets a neighbour code; blocks whose code
 *    is neither 0 nor "all set" are surfels. A surfel's size is the contour
 *    length (marching squares, 16 codes) or the marching-cubes surface area
 *    (256 codes) of its code, scaled by the spacing.
 *  - The distance of a surfel of A to the surface of B is the exact
 *    Euclidean distance (anisotropic spacing) from the surfel's block to the
 *    nearest surfel block of B (infinite if B has none).
 *  - NSD at tolerance tau = (area of GT surfels within tau of the prediction
 *    surface + area of prediction surfels within tau of the GT surface) /
 *    (GT surface area + prediction surface area); "within" is distance <= tau.
 *  - HD_p per direction: surfels sorted by (distance, area), cumulative area
 *    fraction, the first surfel whose fraction >= p/100 (numpy searchsorted),
 *    exactly as DeepMind computes it; HD95/HD100 = max of the two directions.
 *  - ASSD = mean of the two area-weighted average surface distances.
 *
 * Axis order and memory layout: dims[] and spacing[] are given in the axis
 * order x0, x1 (, x2) of DeepMind's arrays (for NIfTI: i, j, k; for a PNG
 * loaded as rows x columns: row, column). `layout` says how the bytes are
 * laid out: SB_LAYOUT_C = last axis contiguous (numpy C order, PNG rows),
 * SB_LAYOUT_F = first axis contiguous (NIfTI's storage order). The result
 * does not depend on the layout, only on the axis order (the marching-cubes
 * triangulation is not symmetric under axis permutations).
 */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include "../core/sambench.h"

#include <stdint.h>

enum sb_layout { SB_LAYOUT_C = 0, SB_LAYOUT_F = 1 };

/* What to compute beyond the counts and surface areas. */
enum {
    SB_METRICS_NSD = 1,       /* areas within tolerance (EDT restricted to the tolerance band) */
    SB_METRICS_DISTANCES = 2, /* HD95, HD100, ASSD (EDT over the full box, per-surfel sort) */
    SB_METRICS_ALL = 3
};

typedef struct sb_metrics_opts {
    double tolerance; /* NSD tolerance in spacing units (mm); default 2 */
    int what;         /* SB_METRICS_* flags; 0 = counts and surface areas only */
    double percent;   /* robust Hausdorff percentile; 0 = 95 */
    sb_ctx *ctx;      /* threads; NULL = serial */
} sb_metrics_opts;

/*
 * The raw per-pair record: everything the reducer stores so Dice, IoU and NSD
 * can be recomputed under any empty-mask policy without re-running, plus the
 * per-direction distance statistics (not recomputable from areas).
 * Directions: "gt" fields are about the GT surface measured against the
 * prediction (gt -> pred), "pred" fields the reverse.
 */
typedef struct sb_metrics_record {
    int ndim;
    double spacing[3];
    double tolerance;
    int64_t tp, fp, fn;
    int64_t gt_voxels, pred_voxels;
    int64_t gt_surfels, pred_surfels;      /* number of border blocks */
    double gt_surface, pred_surface;       /* total surfel area (3-D, mm^2) or length (2-D, mm) */
    int has_nsd;                           /* the *_within fields are valid */
    double gt_within, pred_within;         /* surface area within tolerance of the other surface */
    int has_distances;                     /* the fields below are valid */
    double hd_percent;                     /* the percentile of hd_*_gt / hd_*_pred (95) */
    double hdp_gt, hdp_pred;               /* percentile distance per direction (inf if other empty) */
    double hd100_gt, hd100_pred;           /* max distance per direction */
    double asd_gt, asd_pred;               /* area-weighted mean distance per direction */
} sb_metrics_record;

/*
 * Computes the record of one pair. gt and pred: ndim (2 or 3) arrays of
 * dims[0] x dims[1] (x dims[2]) bytes, != 0 = foreground; spacing > 0 and
 * finite per axis (NULL = 1). Errors: bad dims / spacing / tolerance.
 */
int sb_metrics_pair(const uint8_t *gt, const uint8_t *pred, int ndim, const int64_t *dims,
                    const double *spacing, int layout, const sb_metrics_opts *opts,
                    sb_metrics_record *rec, sb_error *err);

/* Empty-mask policies (PROTOCOL.md section 3). */
enum sb_empty_policy {
    SB_EMPTY_NAN = 0,  /* both empty -> NaN (default) */
    SB_EMPTY_ONE = 1,  /* both empty -> 1 */
    SB_EMPTY_ZERO = 2  /* both empty -> 0 */
};
enum sb_nsd_policy {
    SB_NSD_PLAIN = 0,
    SB_NSD_MEDSAM = 1 /* NSD = 0 when Dice <= 0.2 (MedSAM challenge scripts) */
};

typedef struct sb_metrics_values {
    double dice, iou, nsd;   /* NaN if not computable under the policy */
    double hd95, hd100, assd; /* hd95 = HD at rec->hd_percent; NaN if !has_distances */
} sb_metrics_values;

/*
 * Values from a record under a policy.
 *  - Exactly one mask empty: dice = iou = nsd = 0, hd95 = hd100 = +inf, assd =
 *    NaN (as DeepMind: mean of an infinite and an undefined 0/0 average).
 *  - Both empty: dice, iou, nsd = NaN / 1 / 0 by policy; hd95, hd100, assd =
 *    0 under SB_EMPTY_ONE, NaN otherwise.
 *  - nsd_policy SB_NSD_MEDSAM: nsd = 0 when dice <= 0.2.
 * NSD is NaN when !rec->has_nsd.
 */
void sb_metrics_from_record(const sb_metrics_record *rec, int empty_policy, int nsd_policy,
                            sb_metrics_values *v);

/* "nan" / "one" / "zero" and "plain"(or "deepmind") / "medsam"; SB_EINVAL otherwise. */
int sb_parse_empty_policy(const char *s, int *policy, sb_error *err);
int sb_parse_nsd_policy(const char *s, int *policy, sb_error *err);

/* ---- building blocks (exposed for tests and benchmarks) ---------------- */

/* Contour length (2-D, 16 entries) of each neighbour code for a spacing;
 * code bits: 8 = (0,0), 4 = (0,1), 2 = (1,0), 1 = (1,1) in (x0, x1). */
void sb_metrics_table_2d(const double spacing[2], double table[16]);
/* Marching-cubes surface area (3-D, 256 entries); code bits: 128 = (0,0,0),
 * 64 = (0,0,1), 32 = (0,1,0), 16 = (0,1,1), 8 = (1,0,0), 4 = (1,0,1),
 * 2 = (1,1,0), 1 = (1,1,1) in (x0, x1, x2). */
void sb_metrics_table_3d(const double spacing[3], double table[256]);

/*
 * Exact squared Euclidean distance transform: out[v] = squared distance
 * (with spacing) from voxel v to the nearest voxel with feature[v] != 0, or
 * +inf if there is none. C layout (last axis contiguous), ndim 1..3,
 * dims/spacing in array order. Separable lower envelope of parabolas
 * (Felzenszwalb-Huttenlocher), linear time. Passes run along the axes in
 * `order` (NULL = 0, 1, 2): the value for the winning feature is then
 * ((d_a s_a)^2 + (d_b s_b)^2) + (d_c s_c)^2 summed in that order, which
 * rounds exactly like scipy's distance_transform_edt when `order` is the
 * axis order of scipy's array. need (optional, may be NULL): the last pass
 * only computes lines holding a voxel with need[v] != 0 (other outputs are
 * then partial). Returns SB_ENOMEM / SB_EINVAL with a message.
 */
int sb_edt_sq(sb_ctx *ctx, const uint8_t *feature, int ndim, const int64_t *dims,
              const double *spacing, const int *order, const uint8_t *need, double *out,
              sb_error *err);

/*
 * The same squared distances, but only at nq query voxels (linear C-layout
 * indices): out[i] = squared distance at query[i]; the same values (same
 * expression, same minimum) as sb_edt_sq. The last pass is an outward
 * search from each query along the last axis, stopped once the axis term
 * alone reaches the best value. 3-D with order (2, 1, 0) (a NIfTI volume in
 * DeepMind's axis order): the first two passes run plane by plane and keep
 * only the columns holding queries (a few planes plus query columns x
 * dims[0] values instead of the whole box). 2-D: the first pass is a binary
 * search in per-line sorted feature lists (no box-sized array). Other
 * cases: sb_edt_sq's passes on a temporary map.
 */
int sb_edt_sq_at(sb_ctx *ctx, const uint8_t *feature, int ndim, const int64_t *dims,
                 const double *spacing, const int *order, const int64_t *query, int64_t nq,
                 double *out, sb_error *err);
/* The same with the features as a bitmap: line r of the last axis (r =
 * linear index of the other axes) is bits[r * words_per_row ...], voxel x of
 * the line is bit (x & 63) of word x >> 6. */
int sb_edt_sq_at_bits(sb_ctx *ctx, const uint64_t *bits, int64_t words_per_row, int ndim,
                      const int64_t *dims, const double *spacing, const int *order,
                      const int64_t *query, int64_t nq, double *out, sb_error *err);

#endif
