/*
 * sambench metrics --gt GT --pred PRED [--spacing a,b[,c]] [--tolerance T]
 *                  [--label L] [--format json|text]
 *                  [--empty-policy nan|one|zero] [--nsd-policy plain|medsam]
 *
 * Dice, IoU, NSD, HD95, HD100 and ASSD of one pair of masks with DeepMind's
 * surface-distance semantics (pipeline/metrics.h). GT and PRED are NIfTI-1/2
 * (.nii, .nii.gz; axes i, j, k as stored, spacing from pixdim) or PNG (2-D,
 * rows x columns, spacing 1). Choices where the issue is silent:
 *  - default tolerance 2 (PROTOCOL.md: 2 px for 2-D, 2 mm for 3-D);
 *  - default format json;
 *  - without --label a mask must have at most one non-zero value (0/1,
 *    0/255 ...); foreground = value != 0 (after scl_slope / scl_inter);
 *  - NIfTI axes of size 1 beyond the third are dropped (x, y, z, 1 -> 3-D);
 *    1-D images and 4-D/5-D images with more than one volume are errors.
 */
#include "cli.h"
#include "metrics.h"
#include "nifti.h"
#include "png_io.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sambench metrics --gt GT --pred PRED [--spacing a,b[,c]] [--tolerance T] [--label L]\n"
            "                        [--format json|text] [--empty-policy nan|one|zero] [--nsd-policy plain|medsam]\n\n"
            "Dice, IoU, NSD (surface Dice at tolerance T), HD95, HD100 and ASSD of a ground-truth and a predicted\n"
            "mask, with exactly the semantics of DeepMind's surface-distance library.\n\n"
            "  --gt GT, --pred PRED  NIfTI-1/2 (.nii, .nii.gz; spacing from pixdim, axes i, j, k) or PNG (2-D, spacing 1)\n"
            "  --spacing a,b[,c]     voxel spacing per axis (overrides the files')\n"
            "  --tolerance T         NSD tolerance in spacing units, distance <= T counts (default 2)\n"
            "  --label L             foreground = voxels equal to L (default: the one non-zero value)\n"
            "  --format json|text    output format (default json; NaN -> null, infinity -> \"inf\")\n"
            "  --empty-policy P      both masks empty: nan (default), one or zero\n"
            "  --nsd-policy P        plain (default) or medsam (NSD = 0 when Dice <= 0.2)\n");
}

typedef struct {
    int ndim;
    int64_t dims[3];
    double spacing[3];
    int layout;
    uint8_t *mask;
} mask_image;

/* Foreground from values: with a label, v == label; without, v != 0 and at
 * most one distinct non-zero value allowed. */
typedef struct {
    int has_label;
    double label;
    double seen[2];
    int nseen;
} fg_rule;

static int fg_value(fg_rule *r, double v, const char *path, sb_error *err, uint8_t *out)
{
    if (isnan(v))
        return sb_fail(err, SB_EFORMAT, "%s: NaN voxel value in a mask", path);
    if (r->has_label) {
        *out = v == r->label;
        return SB_OK;
    }
    if (v == 0) {
        *out = 0;
        return SB_OK;
    }
    if (r->nseen == 0) {
        r->seen[r->nseen++] = v;
    } else if (v != r->seen[0]) {
        return sb_fail(err, SB_EFORMAT,
                       "%s: non-binary labels (values 0, %g, %g, ...): pass --label L to choose the foreground",
                       path, r->seen[0], v);
    }
    *out = 1;
    return SB_OK;
}

static int load_png(const char *path, const char *label, mask_image *m, sb_error *err)
{
    sb_png_image img;
    int rc = sb_png_read_file(path, &img, err);
    if (rc)
        return rc;
    size_t n = (size_t)img.width * (size_t)img.height;
    m->ndim = 2;
    m->dims[0] = img.height;
    m->dims[1] = img.width;
    m->spacing[0] = m->spacing[1] = 1.0;
    m->layout = SB_LAYOUT_C;
    m->mask = malloc(n ? n : 1);
    uint8_t *l = NULL;
    if (!m->mask) {
        sb_png_image_free(&img);
        return sb_fail(err, SB_ENOMEM, "%s: out of memory", path);
    }
    if (img.mode == SB_PIL_RGB || img.mode == SB_PIL_RGBA || img.mode == SB_PIL_LA) {
        l = malloc(n ? n : 1);
        if (!l) {
            sb_png_image_free(&img);
            return sb_fail(err, SB_ENOMEM, "%s: out of memory", path);
        }
        sb_png_to_l(&img, l);
    }
    fg_rule r = {label != NULL, label ? strtod(label, NULL) : 0, {0, 0}, 0};
    for (size_t i = 0; i < n && rc == SB_OK; i++) {
        double v = img.mode == SB_PIL_I ? (double)img.idata[i] : (double)(l ? l[i] : img.data[i]);
        rc = fg_value(&r, v, path, err, &m->mask[i]);
    }
    free(l);
    sb_png_image_free(&img);
    return rc;
}

static int load_nifti(const char *path, const char *label, mask_image *m, sb_error *err)
{
    sb_nifti img;
    int rc = sb_nifti_read(&img, path, err);
    if (rc)
        return rc;
    int nd = img.ndim;
    while (nd > 3 && img.dim[nd] == 1)
        nd--;
    if (nd < 2 || nd > 3) {
        sb_nifti_free(&img);
        return sb_fail(err, SB_ESHAPE, "%s: %d-D image (dim[0] = %d): metrics need a 2-D or 3-D mask", path, nd,
                       img.ndim);
    }
    m->ndim = nd;
    m->layout = SB_LAYOUT_F;
    for (int a = 0; a < nd; a++) {
        m->dims[a] = img.dim[a + 1];
        m->spacing[a] = img.pixdim[a + 1];
    }
    fg_rule r = {label != NULL, label ? strtod(label, NULL) : 0, {0, 0}, 0};
    int scaled = img.scl_slope != 0.0 && isfinite(img.scl_slope) && isfinite(img.scl_inter) &&
                 !(img.scl_slope == 1.0 && img.scl_inter == 0.0);
    if (img.datatype == SB_NIFTI_UINT8 && !scaled) {
        /* fast path: values 0..255, mapped in place (the image buffer becomes the mask) */
        int64_t hist[256] = {0};
        uint8_t *d = img.data;
        for (int64_t i = 0; i < img.nvox; i++)
            hist[d[i]]++;
        uint8_t lut[256];
        for (int v = 0; v < 256 && rc == SB_OK; v++)
            if (hist[v] || v == 0)
                rc = fg_value(&r, v, path, err, &lut[v]);
        for (int64_t i = 0; i < img.nvox && rc == SB_OK; i++)
            d[i] = lut[d[i]];
        m->mask = d;
        img.data = NULL;
    } else {
        m->mask = malloc((size_t)img.nvox);
        if (!m->mask) {
            sb_nifti_free(&img);
            return sb_fail(err, SB_ENOMEM, "%s: out of memory for %lld voxels", path, (long long)img.nvox);
        }
        for (int64_t i = 0; i < img.nvox && rc == SB_OK; i++) {
            double v = sb_nifti_get(&img, i);
            if (scaled)
                v = v * img.scl_slope + img.scl_inter;
            rc = fg_value(&r, v, path, err, &m->mask[i]);
        }
    }
    sb_nifti_free(&img);
    return rc;
}

static int load_mask(const char *path, const char *label, mask_image *m, sb_error *err)
{
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot open (%s)", path, strerror(errno));
    uint8_t sig[8] = {0};
    size_t got = fread(sig, 1, 8, f);
    fclose(f);
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    int rc = got == 8 && memcmp(sig, png_sig, 8) == 0 ? load_png(path, label, m, err)
                                                      : load_nifti(path, label, m, err);
    if (rc) {
        free(m->mask);
        m->mask = NULL;
    }
    return rc;
}

static void json_num(FILE *o, const char *key, double v, int last)
{
    if (isnan(v))
        fprintf(o, "  \"%s\": null", key);
    else if (isinf(v))
        fprintf(o, "  \"%s\": \"%sinf\"", key, v < 0 ? "-" : "");
    else
        fprintf(o, "  \"%s\": %.17g", key, v);
    fputs(last ? "\n" : ",\n", o);
}

static void text_num(FILE *o, const char *key, double v)
{
    if (isnan(v))
        fprintf(o, "%-14s nan\n", key);
    else if (isinf(v))
        fprintf(o, "%-14s %sinf\n", key, v < 0 ? "-" : "");
    else
        fprintf(o, "%-14s %.10g\n", key, v);
}

static int parse_spacing(const char *s, double *sp, int *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        if (*n == 3)
            return -1;
        char *e;
        errno = 0;
        double v = strtod(p, &e);
        if (e == p || errno || !(v > 0) || !isfinite(v))
            return -1;
        sp[(*n)++] = v;
        if (*e == ',')
            e++;
        else if (*e)
            return -1;
        p = e;
    }
    return *n >= 2 ? 0 : -1;
}

/* --label: a number, kept as written (it selects a label value by exact match) */
static int parse_label(const char *v, void *dst)
{
    double x;
    if (sb_parse_double(v, &x))
        return -1;
    *(const char **)dst = v;
    return 0;
}

static int parse_empty(const char *v, void *dst)
{
    sb_error e;
    return sb_parse_empty_policy(v, (int *)dst, &e) ? -1 : 0;
}

static int parse_nsd(const char *v, void *dst)
{
    sb_error e;
    return sb_parse_nsd_policy(v, (int *)dst, &e) ? -1 : 0;
}

int cmd_metrics(int argc, char **argv)
{
    const char *gt_path = NULL, *pred_path = NULL, *spacing_s = NULL, *label = NULL, *format = "json";
    double tol = 2.0;
    int empty_policy = SB_EMPTY_NAN, nsd_policy = SB_NSD_PLAIN;
    sb_error err;
    sb_error_clear(&err);
    const sb_opt opts[] = {
        {"--gt", SB_OPT_STR, &gt_path, 0, 0, NULL, NULL},
        {"--pred", SB_OPT_STR, &pred_path, 0, 0, NULL, NULL},
        {"--spacing", SB_OPT_STR, &spacing_s, 0, 0, NULL, NULL},
        {"--tolerance", SB_OPT_DOUBLE, &tol, 0, HUGE_VAL, "a finite number >= 0", NULL},
        {"--label", SB_OPT_FN, &label, 0, 0, "a number", parse_label},
        {"--format", SB_OPT_STR, &format, 0, 0, NULL, NULL},
        {"--empty-policy", SB_OPT_FN, &empty_policy, 0, 0, "nan, one or zero", parse_empty},
        {"--nsd-policy", SB_OPT_FN, &nsd_policy, 0, 0, "plain or medsam", parse_nsd},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int prc = sb_opts_parse("metrics", argc, argv, opts, NULL, usage);
    if (prc)
        return prc == 1 ? SB_EXIT_OK : prc;
    if (!gt_path || !pred_path) {
        fprintf(stderr, "sambench metrics: --gt and --pred are required\n\n");
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    if (strcmp(format, "json") != 0 && strcmp(format, "text") != 0) {
        fprintf(stderr, "sambench metrics: --format '%s' (json or text)\n", format);
        return SB_EXIT_USAGE;
    }
    double user_sp[3];
    int n_sp = 0;
    if (spacing_s && parse_spacing(spacing_s, user_sp, &n_sp)) {
        fprintf(stderr, "sambench metrics: --spacing '%s' must be 2 or 3 positive numbers a,b[,c]\n", spacing_s);
        return SB_EXIT_USAGE;
    }

    mask_image g, p;
    if (load_mask(gt_path, label, &g, &err))
        return sb_report_error("metrics", &err);
    if (load_mask(pred_path, label, &p, &err)) {
        free(g.mask);
        return sb_report_error("metrics", &err);
    }
    int rc = SB_EXIT_OK;
    int same = g.ndim == p.ndim && g.layout == p.layout;
    for (int a = 0; same && a < g.ndim; a++)
        same = g.dims[a] == p.dims[a];
    char shape_g[64], shape_p[64];
    snprintf(shape_g, sizeof shape_g, g.ndim == 3 ? "%lldx%lldx%lld" : "%lldx%lld", (long long)g.dims[0],
             (long long)g.dims[1], (long long)g.dims[2]);
    snprintf(shape_p, sizeof shape_p, p.ndim == 3 ? "%lldx%lldx%lld" : "%lldx%lld", (long long)p.dims[0],
             (long long)p.dims[1], (long long)p.dims[2]);
    double sp[3] = {g.spacing[0], g.spacing[1], g.spacing[2]};
    if (!same) {
        sb_fail(&err, SB_ESHAPE, "%s: shape %s%s does not match %s: shape %s%s", pred_path, shape_p,
                p.layout != g.layout ? " (different file type)" : "", gt_path, shape_g,
                p.layout != g.layout ? "" : "");
        rc = sb_report_error("metrics", &err);
        goto done;
    }
    if (n_sp) {
        if (n_sp != g.ndim) {
            fprintf(stderr, "sambench metrics: --spacing has %d values but %s is %d-D\n", n_sp, gt_path, g.ndim);
            rc = SB_EXIT_USAGE;
            goto done;
        }
        memcpy(sp, user_sp, sizeof sp);
    } else {
        for (int a = 0; a < g.ndim; a++)
            if (!(sp[a] > 0) || !isfinite(sp[a])) {
                sb_fail(&err, SB_EFORMAT, "%s: pixdim[%d] = %g is not a usable spacing (pass --spacing)", gt_path,
                        a + 1, sp[a]);
                rc = sb_report_error("metrics", &err);
                goto done;
            }
    }
    {
        sb_ctx *ctx = NULL;
        if (sb_ctx_create(&ctx, sb_default_threads(1), &err)) {
            rc = sb_report_error("metrics", &err);
            goto done;
        }
        sb_metrics_opts o = {tol, SB_METRICS_ALL, 95.0, ctx};
        sb_metrics_record r;
        int mrc = sb_metrics_pair(g.mask, p.mask, g.ndim, g.dims, sp, g.layout, &o, &r, &err);
        sb_ctx_free(ctx);
        if (mrc) {
            sb_error_prefix(&err, "%s vs %s", gt_path, pred_path);
            rc = sb_report_error("metrics", &err);
            goto done;
        }
        sb_metrics_values v;
        sb_metrics_from_record(&r, empty_policy, nsd_policy, &v);
        FILE *o_ = stdout;
        if (strcmp(format, "json") == 0) {
            fputs("{\n", o_);
            json_num(o_, "dice", v.dice, 0);
            json_num(o_, "iou", v.iou, 0);
            json_num(o_, "nsd", v.nsd, 0);
            json_num(o_, "hd95", v.hd95, 0);
            json_num(o_, "hd100", v.hd100, 0);
            json_num(o_, "assd", v.assd, 0);
            fprintf(o_, "  \"tp\": %lld,\n  \"fp\": %lld,\n  \"fn\": %lld,\n", (long long)r.tp, (long long)r.fp,
                    (long long)r.fn);
            fprintf(o_, "  \"gt_voxels\": %lld,\n  \"pred_voxels\": %lld,\n", (long long)r.gt_voxels,
                    (long long)r.pred_voxels);
            json_num(o_, "gt_surface", r.gt_surface, 0);
            json_num(o_, "pred_surface", r.pred_surface, 0);
            json_num(o_, "gt_surface_within", r.gt_within, 0);
            json_num(o_, "pred_surface_within", r.pred_within, 0);
            json_num(o_, "tolerance", tol, 0);
            fprintf(o_, "  \"spacing\": [");
            for (int a = 0; a < g.ndim; a++)
                fprintf(o_, "%s%.17g", a ? ", " : "", sp[a]);
            fprintf(o_, "]\n}\n");
        } else {
            text_num(o_, "dice", v.dice);
            text_num(o_, "iou", v.iou);
            text_num(o_, "nsd", v.nsd);
            text_num(o_, "hd95", v.hd95);
            text_num(o_, "hd100", v.hd100);
            text_num(o_, "assd", v.assd);
            fprintf(o_, "%-14s %lld\n%-14s %lld\n%-14s %lld\n", "tp", (long long)r.tp, "fp", (long long)r.fp, "fn",
                    (long long)r.fn);
            fprintf(o_, "%-14s %lld\n%-14s %lld\n", "gt_voxels", (long long)r.gt_voxels, "pred_voxels",
                    (long long)r.pred_voxels);
            text_num(o_, "gt_surface", r.gt_surface);
            text_num(o_, "pred_surface", r.pred_surface);
            text_num(o_, "tolerance", tol);
        }
        if (fflush(o_) != 0) {
            fprintf(stderr, "sambench metrics: cannot write the output (%s)\n", strerror(errno));
            rc = SB_EXIT_USAGE;
        }
    }
done:
    free(g.mask);
    free(p.mask);
    return rc;
}
