/*
 * Evaluation of one work unit (PROTOCOL.md section 1):
 *  - volume: the slices of one case in slice order, batches of --batch that
 *    never straddle cases (a short last batch is padded by repeating its last
 *    slice; padded outputs are discarded), a fresh memory-bank scope per case,
 *    metrics on the native grid (logits resized bilinearly to H x W);
 *  - reference: a whole dataset's sorted split list, consecutive batches that
 *    may straddle cases, drop_last, one bank scope for the dataset, metrics on
 *    the S x S model grid and the published batch-pooled Dice.
 */
#include "run.h"
#include "data.h"
#include "png_io.h"
#include "preprocess.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void sb_resize_bilinear_f32(const float *x, int h, int w, float *y, int oh, int ow)
{
    if (h == oh && w == ow) {
        memcpy(y, x, sizeof(float) * (size_t)h * w);
        return;
    }
    /* PyTorch upsample_bilinear2d, align_corners=False: src = (dst + 0.5) * in/out - 0.5, clamped at 0 */
    float sh = (float)h / oh, sw = (float)w / ow;
    for (int oy = 0; oy < oh; oy++) {
        float fy = ((float)oy + 0.5f) * sh - 0.5f;
        if (fy < 0)
            fy = 0;
        int y0 = (int)fy;
        int y1 = y0 + (y0 < h - 1);
        float ly = fy - y0, hy = 1.0f - ly;
        for (int ox = 0; ox < ow; ox++) {
            float fx = ((float)ox + 0.5f) * sw - 0.5f;
            if (fx < 0)
                fx = 0;
            int x0 = (int)fx;
            int x1 = x0 + (x0 < w - 1);
            float lx = fx - x0, hx = 1.0f - lx;
            y[(size_t)oy * ow + ox] = hy * (hx * x[(size_t)y0 * w + x0] + lx * x[(size_t)y0 * w + x1]) +
                                      ly * (hx * x[(size_t)y1 * w + x0] + lx * x[(size_t)y1 * w + x1]);
        }
    }
}

/* One loaded slice. */
typedef struct {
    uint8_t *gt_native; /* H x W, 0/1 */
    int h, w;
    uint8_t *gt_model; /* S x S, 0/1 */
    uint8_t *img;      /* S x S x 3 or NULL */
    float box[4];
} slice_in;

static void slice_free(slice_in *s)
{
    free(s->gt_native);
    free(s->gt_model);
    free(s->img);
    memset(s, 0, sizeof *s);
}

/* From PIL 'L' mask values and (if the model needs it) PIL 'RGB' pixels:
 * the bit-exact resize of pipeline/preprocess.h, mask >= 128 (ToTensor >= 0.5,
 * MODEL.md 1.1 step 5), the tight box on the model grid and the keyed jitter. */
static int prepare_slice(const sb_unit *u, const sb_item *it, const sb_run_model *m, const sb_eval_opts *o,
                         const uint8_t *mask_l, const uint8_t *rgb, int w, int h, slice_in *s, sb_error *err)
{
    int S = m->image_size;
    s->w = w;
    s->h = h;
    s->gt_native = malloc((size_t)w * h);
    s->gt_model = malloc((size_t)S * S);
    if (!s->gt_native || !s->gt_model)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    int rc = sb_pil_resize_u8(mask_l, w, h, 1, s->gt_model, S, S, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < (size_t)S * S; i++)
        s->gt_model[i] = s->gt_model[i] >= 128;
    for (size_t i = 0; i < (size_t)w * h; i++)
        s->gt_native[i] = mask_l[i] >= 128;
    int box[4];
    if (sb_mask_box(s->gt_model, S, box))
        sb_box_jitter(box, S, o->box_jitter, sb_jitter_key(o->seed, u->dataset, it->case_id, it->slice));
    for (int k = 0; k < 4; k++)
        s->box[k] = (float)box[k];
    if (m->needs_image) {
        if (!rgb)
            return sb_fail(err, SB_EINVAL, "%s: no image pixels", it->entry);
        s->img = malloc((size_t)S * S * 3);
        if (!s->img)
            return sb_fail(err, SB_ENOMEM, "out of memory");
        rc = sb_pil_resize_u8(rgb, w, h, 3, s->img, S, S, err);
        if (rc)
            return rc;
    }
    return SB_OK;
}

static int load_slice(const sb_unit *u, const sb_item *it, const sb_run_model *m, const sb_eval_opts *o,
                      const sb_volume *vol, int k, slice_in *s, sb_error *err)
{
    memset(s, 0, sizeof *s);
    if (vol) {
        size_t px = (size_t)vol->height * vol->width;
        return prepare_slice(u, it, m, o, vol->mask + (size_t)k * px, vol->rgb ? vol->rgb + (size_t)k * px * 3 : NULL,
                             vol->width, vol->height, s, err);
    }
    uint8_t *mk = NULL, *rgb = NULL;
    int w = 0, h = 0, wi = 0, hi = 0;
    int rc = sb_png_load_l(it->mask_path, &mk, &w, &h, err);
    if (rc == SB_OK && m->needs_image) {
        rc = sb_png_load_rgb(it->image_path, &rgb, &wi, &hi, err);
        if (rc == SB_OK && (wi != w || hi != h))
            rc = sb_fail(err, SB_ESHAPE, "%s: image is %dx%d but its mask %s is %dx%d", it->image_path, wi, hi,
                         it->mask_path, w, h);
    }
    if (rc == SB_OK)
        rc = prepare_slice(u, it, m, o, mk, rgb, w, h, s, err);
    free(mk);
    free(rgb);
    return rc;
}

/* Counts, surfaces and areas within tolerance (pipeline/metrics.h, DeepMind's
 * surface-distance semantics on the 2-D grid, spacing 1 pixel). */
static int fill_counts(sb_rec *r, const uint8_t *gt, const uint8_t *pred, int h, int w, double tol, sb_error *err)
{
    int64_t dims[2] = {h, w};
    sb_metrics_opts mo = {tol, SB_METRICS_NSD, 0, NULL};
    sb_metrics_record m;
    int rc = sb_metrics_pair(gt, pred, 2, dims, NULL, SB_LAYOUT_C, &mo, &m, err);
    if (rc)
        return rc;
    r->gt = m.gt_voxels;
    r->pred = m.pred_voxels;
    r->tp = m.tp;
    r->fp = m.fp;
    r->fn = m.fn;
    r->surf_gt = m.gt_surface;
    r->surf_pred = m.pred_surface;
    r->surf_gt_in = m.has_nsd ? m.gt_within : NAN;
    r->surf_pred_in = m.has_nsd ? m.pred_within : NAN;
    return SB_OK;
}

static void rec_init(sb_rec *r, const sb_unit *u, const char *case_id, int32_t slice)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dataset, sizeof r->dataset, "%s", u->dataset);
    snprintf(r->task, sizeof r->task, "%s", u->task);
    snprintf(r->modality, sizeof r->modality, "%s", u->modality);
    snprintf(r->case_id, sizeof r->case_id, "%s", case_id);
    r->slice = slice;
    r->batch = -1;
    r->surf_gt = r->surf_pred = r->surf_gt_in = r->surf_pred_in = NAN;
}

static int has_nan(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(x[i]))
            return 1;
    return 0;
}

/* Failure of the whole unit: drop its records, keep one failed case record. */
static void unit_failed(const sb_unit *u, sb_recs *recs, size_t first, const char *why)
{
    recs->n = first;
    sb_rec *r = sb_recs_push(recs);
    if (!r)
        return;
    rec_init(r, u, u->case_id[0] ? u->case_id : "*", -1);
    r->status = SB_REC_FAILED;
    r->nslices = u->nitems;
    snprintf(r->reason, sizeof r->reason, "%s", why);
}

/* Seconds this process spent inside the model's predict (the rest of a
 * unit's time is data, pre-processing, metrics: the pipeline's overhead). */
static double g_inference_seconds;
double sb_eval_inference_seconds(void) { return g_inference_seconds; }

int sb_eval_unit(const sb_unit *u, sb_run_model *m, const sb_eval_opts *o, sb_recs *recs,
                 sb_batches *batches, sb_error *err)
{
    const int B = o->batch > 0 ? o->batch : 1;
    const int S = m->image_size, L = m->logits_size;
    const size_t first = recs->n, first_b = batches ? batches->n : 0;
    const int ref = o->protocol == SB_PROTO_REFERENCE;
    const sb_item *items = u->items;
    int nitems = u->nitems;
    sb_volume vol;
    memset(&vol, 0, sizeof vol);
    int have_vol = 0;
    sb_item *vitems = NULL;
    uint8_t *stack_gt = NULL, *stack_pred = NULL; /* 3-D case metrics when the spacing is known */
    slice_in *in = calloc((size_t)B, sizeof(slice_in));
    float *logits = malloc(sizeof(float) * (size_t)B * L * L);
    float *boxes = malloc(sizeof(float) * 4 * (size_t)B);
    uint8_t *imgs = m->needs_image ? malloc((size_t)B * S * S * 3) : NULL;
    float *up = NULL;
    uint8_t *pred = NULL;
    size_t upcap = 0;
    int rc = SB_OK;
    if (!in || !logits || !boxes || (m->needs_image && !imgs)) {
        rc = sb_fail(err, SB_ENOMEM, "out of memory");
        goto done;
    }
    sb_error e2;
    sb_error_clear(&e2);
    if (u->data) {
        if (sb_data_load((sb_data *)u->data, u->data_ds, u->data_case, &vol, &e2) != SB_OK) {
            unit_failed(u, recs, first, e2.msg);
            goto done;
        }
        have_vol = 1;
        nitems = vol.nslices;
        vitems = calloc((size_t)(nitems > 0 ? nitems : 1), sizeof(sb_item));
        if (!vitems) {
            rc = sb_fail(err, SB_ENOMEM, "out of memory");
            goto done;
        }
        for (int k = 0; k < nitems; k++) {
            snprintf(vitems[k].entry, sizeof vitems[k].entry, "%s", vol.slice_names ? vol.slice_names[k] : "");
            snprintf(vitems[k].case_id, sizeof vitems[k].case_id, "%s", u->case_id);
            vitems[k].slice = (int32_t)vol.slice_index[k];
        }
        items = vitems;
        if (vol.spacing[0] > 0 && vol.spacing[1] > 0 && vol.spacing[2] > 0 && nitems > 0) {
            size_t n3 = (size_t)nitems * vol.height * vol.width;
            stack_gt = malloc(n3);
            stack_pred = malloc(n3);
            if (!stack_gt || !stack_pred) {
                rc = sb_fail(err, SB_ENOMEM, "out of memory");
                goto done;
            }
        }
    }
    if ((rc = m->begin_scope(m, &e2)) != SB_OK) {
        unit_failed(u, recs, first, e2.msg);
        rc = SB_OK;
        goto done;
    }
    int nbatches = ref ? nitems / B : (nitems + B - 1) / B;
    int64_t case_tp = 0, case_fp = 0, case_fn = 0, case_gt = 0, case_pred = 0;
    double case_secs = 0;
    for (int bi = 0; bi < nbatches; bi++) {
        if (o->stop && *o->stop) {
            recs->n = first;
            if (batches)
                batches->n = first_b;
            rc = sb_fail(err, SB_EUNSUPPORTED, "stopped by a signal");
            goto done;
        }
        double t0 = sb_clock_seconds();
        int real = nitems - bi * B < B ? nitems - bi * B : B;
        for (int k = 0; k < B; k++) {
            slice_free(&in[k]);
            if (k >= real)
                continue;
            const sb_item *it = &items[bi * B + k];
            if (load_slice(u, it, m, o, have_vol ? &vol : NULL, bi * B + k, &in[k], &e2) != SB_OK) {
                unit_failed(u, recs, first, e2.msg);
                if (batches)
                    batches->n = first_b;
                goto done;
            }
        }
        for (int k = 0; k < B; k++) {
            int src = k < real ? k : real - 1; /* pad by repeating the last slice */
            memcpy(boxes + 4 * k, in[src].box, sizeof(float) * 4);
            if (imgs)
                memcpy(imgs + (size_t)k * S * S * 3, in[src].img, (size_t)S * S * 3);
        }
        double tp = sb_clock_seconds();
        int prc = m->predict(m, imgs, boxes, B, logits, &e2);
        g_inference_seconds += sb_clock_seconds() - tp;
        if (prc != SB_OK) {
            unit_failed(u, recs, first, e2.msg);
            if (batches)
                batches->n = first_b;
            goto done;
        }
        if (has_nan(logits, (size_t)real * L * L)) {
            char why[SB_REASON_MAX];
            snprintf(why, sizeof why, "NaN logits in batch %d (%s)", bi, items[bi * B].entry);
            unit_failed(u, recs, first, why);
            if (batches)
                batches->n = first_b;
            goto done;
        }
        double per = (sb_clock_seconds() - t0) / real;
        int64_t bI = 0, bU = 0;
        for (int k = 0; k < real; k++) {
            const sb_item *it = &items[bi * B + k];
            int gh = ref ? S : in[k].h, gw = ref ? S : in[k].w;
            size_t np = (size_t)gh * gw;
            if (np > upcap) {
                free(up);
                free(pred);
                up = malloc(sizeof(float) * np);
                pred = malloc(np);
                upcap = np;
                if (!up || !pred) {
                    rc = sb_fail(err, SB_ENOMEM, "out of memory");
                    goto done;
                }
            }
            sb_resize_bilinear_f32(logits + (size_t)k * L * L, L, L, up, gh, gw);
            double thr = ref ? 0.5 : o->threshold;
            for (size_t i = 0; i < np; i++)
                pred[i] = up[i] > thr;
            sb_rec *r = sb_recs_push(recs);
            if (!r) {
                rc = sb_fail(err, SB_ENOMEM, "out of memory");
                goto done;
            }
            rec_init(r, u, ref ? it->entry : it->case_id, it->slice);
            r->height = gh;
            r->width = gw;
            memcpy(r->box, in[k].box, sizeof r->box);
            if (fill_counts(r, ref ? in[k].gt_model : in[k].gt_native, pred, gh, gw, o->tolerance_2d, &e2) != SB_OK) {
                unit_failed(u, recs, first, e2.msg);
                if (batches)
                    batches->n = first_b;
                goto done;
            }
            r->seconds = per;
            if (stack_gt) {
                memcpy(stack_gt + (size_t)(bi * B + k) * np, in[k].gt_native, np);
                memcpy(stack_pred + (size_t)(bi * B + k) * np, pred, np);
            }
            if (ref) {
                r->batch = bi;
                bI += r->tp;
                bU += r->gt + r->pred - r->tp;
            }
            case_tp += r->tp;
            case_fp += r->fp;
            case_fn += r->fn;
            case_gt += r->gt;
            case_pred += r->pred;
            case_secs += per;
        }
        if (ref && batches) {
            sb_batch_rec *b = sb_batches_push(batches);
            if (!b) {
                rc = sb_fail(err, SB_ENOMEM, "out of memory");
                goto done;
            }
            memset(b, 0, sizeof *b);
            snprintf(b->dataset, sizeof b->dataset, "%s", u->dataset);
            b->batch = bi;
            size_t len = 0;
            for (int k = 0; k < B; k++) {
                const char *e = items[bi * B + k].entry;
                int w = snprintf(b->cases + len, sizeof b->cases - len, "%s%s", k ? ";" : "", e);
                if (w < 0 || (size_t)w >= sizeof b->cases - len)
                    break;
                len += (size_t)w;
            }
            b->inter = bI;
            b->uni = bU;
            /* sam2/util.py iou(): SMOOTH = 1e-5, in float64 as numpy/Python do */
            b->iou = ((double)bI + 1e-5) / ((double)bU + 1e-5);
            b->dice = 2.0 * b->iou / (b->iou + 1.0);
        }
    }
    if (ref) {
        /* entries drop_last leaves out: recorded as not scored (batch -1, no counts) */
        for (int i = nbatches * B; i < nitems; i++) {
            sb_rec *r = sb_recs_push(recs);
            if (!r) {
                rc = sb_fail(err, SB_ENOMEM, "out of memory");
                goto done;
            }
            rec_init(r, u, items[i].entry, items[i].slice);
            r->batch = -1;
        }
    } else {
        sb_rec *r = sb_recs_push(recs);
        if (!r) {
            rc = sb_fail(err, SB_ENOMEM, "out of memory");
            goto done;
        }
        rec_init(r, u, u->case_id, -1);
        r->nslices = nitems;
        r->tp = case_tp;
        r->fp = case_fp;
        r->fn = case_fn;
        r->gt = case_gt;
        r->pred = case_pred;
        r->seconds = case_secs;
        r->surf_gt = r->surf_pred = r->surf_gt_in = r->surf_pred_in = NAN;
        if (stack_gt) {
            /* 3-D per-case metrics with the true spacing, tolerance in mm (PROTOCOL.md 3);
             * array [slice][row][col] with spacing (between slices, row, column) */
            int64_t dims[3] = {nitems, vol.height, vol.width};
            double sp[3] = {vol.spacing[2], vol.spacing[1], vol.spacing[0]};
            sb_metrics_opts mo = {u->tolerance_mm > 0 ? u->tolerance_mm : 2.0, SB_METRICS_NSD, 0, NULL};
            sb_metrics_record mr;
            if (sb_metrics_pair(stack_gt, stack_pred, 3, dims, sp, SB_LAYOUT_C, &mo, &mr, &e2) == SB_OK) {
                r->surf_gt = mr.gt_surface;
                r->surf_pred = mr.pred_surface;
                r->surf_gt_in = mr.has_nsd ? mr.gt_within : NAN;
                r->surf_pred_in = mr.has_nsd ? mr.pred_within : NAN;
                r->height = vol.height;
                r->width = vol.width;
            } else {
                unit_failed(u, recs, first, e2.msg);
                goto done;
            }
        }
    }
done:
    if (have_vol)
        sb_volume_free(&vol);
    free(vitems);
    free(stack_gt);
    free(stack_pred);
    if (in)
        for (int k = 0; k < B; k++)
            slice_free(&in[k]);
    free(in);
    free(logits);
    free(boxes);
    free(imgs);
    free(up);
    free(pred);
    return rc;
}
