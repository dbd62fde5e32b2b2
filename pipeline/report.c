/*
 * The reducer and the tables (PROTOCOL.md section 4).
 *
 * Task = one dataset folder (MedBank `Object_Modality_ID`). Per task, over
 * its scored slices (2-D): n, mean, std, median, IQR, a seeded 95 % bootstrap
 * CI (1000 resamples) and the NaN count, for Dice and NSD, and `dice_pooled`
 * (2 sum tp / (2 sum tp + sum fp + sum fn) over the task, the published
 * convention). Per modality and overall: the macro mean over tasks and the
 * pooled (slice-weighted) mean. All sums run in the sorted record order, so
 * the tables are identical for any number of ranks.
 */
#include "run.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- published Dice (PROTOCOL.md section 5) -------------------------------------- */
typedef struct {
    const char *task, *modality;
    int external;
    double d[6]; /* samed2, medsam2, sam2, medsam, sam, unet */
} pub;
static const pub published[] = {
    {"Thyroid", "US", 1, {.8663, .6756, .4967, .8863, .8655, .8052}},
    {"OpticCup", "Fundus", 1, {.8936, .3820, .5589, .8823, .6064, .8833}},
    {"Melanoma", "Dermoscopy", 1, {.9167, .6601, .6158, .9364, .8322, .8884}},
    {"Hippocampus", "MR", 1, {.8010, .5650, .5237, .7410, .7196, .8097}},
    {"Prostate", "MR", 1, {.8601, .7188, .6534, .8546, .8302, .8406}},
    {"BrainTumor", "MR", 1, {.6726, .5852, .4317, .5925, .5618, .6589}},
    {"Liver", "CT", 1, {.7738, .6996, .4457, .7636, .6771, .7501}},
    {"LiverTumor", "CT", 1, {.4295, .3996, .2047, .4192, .3914, .4914}},
    {"Spleen", "CT", 1, {.8813, .7732, .7006, .8789, .8650, .8937}},
    {"ColonTumor", "CT", 1, {.7005, .6306, .2464, .6955, .6432, .6901}},
    {"OpticCup", "Fundus", 0, {.8971, .4040, .6209, .8643, .6230, .8073}},
    {"Melanoma", "Dermoscopy", 0, {.9119, .6877, .5293, .9106, .8398, .8169}},
    {"Lung", "X-Ray", 0, {.9007, .6110, .6668, .9001, .6840, .9700}},
    {"Spleen", "CT", 0, {.8566, .8260, .4441, .8755, .8402, .5239}},
    {"Esophagus", "CT", 0, {.6881, .5670, .1139, .6672, .6879, .3464}},
    {"Liver", "CT", 0, {.8332, .8159, .6752, .8330, .7935, .8730}},
    {"Stomach", "CT", 0, {.8347, .7131, .4604, .8325, .8039, .4383}},
    {"InferiorVenaCava", "CT", 0, {.7800, .6821, .1738, .7799, .7497, .5471}},
    {"Pancreas", "CT", 0, {.5785, .5537, .1343, .5775, .5542, .2569}},
    {"AdrenalGland", "CT", 0, {.2886, .2838, .0194, .2853, .1976, .1869}},
    {"Liver", "MR", 0, {.8779, .7627, .6895, .8773, .8313, .8748}},
    {"Aorta", "MR", 0, {.9033, .7016, .5158, .9029, .9012, .9315}},
    {"InferiorVenaCava", "MR", 0, {.8007, .6454, .3014, .8007, .8006, .6742}},
    {"Gallbladder", "MR", 0, {.8256, .6684, .3602, .8436, .8450, .6879}},
    {"Esophagus", "MR", 0, {.6402, .5075, .2865, .6401, .6395, .6453}},
    {"Stomach", "MR", 0, {.7845, .7287, .5386, .7843, .7540, .7139}},
    {"KidneyTumor", "CT", 0, {.8212, .7211, .4182, .8210, .8122, .6486}},
    {"LiverTumor", "CT", 0, {.4443, .4101, .2102, .4440, .3837, .4528}},
    {"LungTumor", "CT", 0, {.6709, .5225, .3204, .6707, .6618, .5492}},
    {"Polyp", "Colonoscopy", 0, {.8183, .6966, .3535, .8181, .7416, .2391}},
    {"LVepi", "Echocardiography", 0, {.5733, .4983, .4404, .3412, .1667, .7914}},
};

static void norm_modality(const char *in, char *out, size_t cap)
{
    size_t k = 0;
    for (; *in && k + 1 < cap; in++)
        if (isalnum((unsigned char)*in))
            out[k++] = (char)tolower((unsigned char)*in);
    out[k] = '\0';
    if (strcmp(out, "mri") == 0)
        snprintf(out, cap, "mr");
    else if (strcmp(out, "echo") == 0)
        snprintf(out, cap, "echocardiography");
    else if (strcmp(out, "ultrasound") == 0)
        snprintf(out, cap, "us");
}

double sb_published_dice(const char *task, const char *modality, const char *model, int external)
{
    static const char *models[] = {"samed2", "medsam2", "sam2", "medsam", "sam", "unet"};
    int mi = -1;
    for (int i = 0; i < 6; i++)
        if (strcasecmp(model, models[i]) == 0)
            mi = i;
    if (mi < 0)
        return NAN;
    const char *t = strcasecmp(task, "IVC") == 0 ? "InferiorVenaCava" : task;
    char m1[64], m2[64];
    norm_modality(modality, m1, sizeof m1);
    for (size_t i = 0; i < sizeof published / sizeof *published; i++) {
        norm_modality(published[i].modality, m2, sizeof m2);
        if (published[i].external == external && strcasecmp(published[i].task, t) == 0 && strcmp(m1, m2) == 0)
            return published[i].d[mi];
    }
    return NAN;
}

/* ---- aggregation -------------------------------------------------------------- */
typedef struct {
    char dataset[SB_NAME_MAX], task[SB_NAME_MAX], modality[SB_NAME_MAX];
    int slices, cases, failed, not_scored;
    sb_summary dice, nsd;
    double dice_pooled;
    int64_t tp, fp, fn;
    double *dv, *nv; /* per-slice values in record order */
    int nvals;
    /* reference protocol */
    int batches;
    double ref_dice, ref_iou;
    int is3d; /* volumes with spacing: statistics over cases (3-D metrics), PROTOCOL.md 4 */
} task_agg;

typedef struct {
    char modality[SB_NAME_MAX];
    int tasks;
    double dice_macro, dice_pooled, nsd_macro, nsd_pooled;
    int slices;
} group_agg;

typedef struct {
    task_agg *t;
    int nt;
    group_agg *m;
    int nm;
    group_agg all;
} reduced;

static void reduced_free(reduced *r)
{
    for (int i = 0; i < r->nt; i++) {
        free(r->t[i].dv);
        free(r->t[i].nv);
    }
    free(r->t);
    free(r->m);
    memset(r, 0, sizeof *r);
}

static int find_task(reduced *r, const char *ds)
{
    for (int i = r->nt - 1; i >= 0; i--)
        if (strcmp(r->t[i].dataset, ds) == 0)
            return i;
    return -1;
}

static void mean_of(const double *x, int n, double *mean)
{
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) {
            s += x[i];
            k++;
        }
    *mean = k ? s / k : NAN;
}

static int reduce(const sb_recs *recs, const sb_batches *b, const sb_report_opts *o, int ref, reduced *r)
{
    memset(r, 0, sizeof *r);
    r->t = calloc(recs->n + 1, sizeof(task_agg));
    if (!r->t)
        return -1;
    for (size_t i = 0; i < recs->n; i++) {
        const sb_rec *x = &recs->v[i];
        int k = find_task(r, x->dataset);
        if (k < 0) {
            k = r->nt++;
            task_agg *t = &r->t[k];
            snprintf(t->dataset, sizeof t->dataset, "%s", x->dataset);
            snprintf(t->task, sizeof t->task, "%s", x->task);
            snprintf(t->modality, sizeof t->modality, "%s", x->modality);
            t->ref_dice = t->ref_iou = NAN;
            /* 3-D task: its case records carry surfaces (computed with the true spacing) */
            for (size_t j = i; j < recs->n && strcmp(recs->v[j].dataset, x->dataset) == 0; j++)
                if (recs->v[j].slice < 0 && recs->v[j].status == SB_REC_OK && !isnan(recs->v[j].surf_gt))
                    t->is3d = 1;
        }
        task_agg *t = &r->t[k];
        if (x->slice < 0) {
            t->cases++;
            if (x->status != SB_REC_OK)
                t->failed++;
            if (!t->is3d)
                continue;
        } else {
            if (ref && x->batch < 0) { /* reference: left out by drop_last */
                t->not_scored++;
                continue;
            }
            if (x->status == SB_REC_OK)
                t->slices++;
            if (t->is3d) /* statistics over cases: the slices only add to the counts */
                continue;
        }
        if (x->status != SB_REC_OK)
            continue;
        double *nd = realloc(t->dv, sizeof(double) * (size_t)(t->nvals + 1));
        if (!nd)
            return -1;
        t->dv = nd;
        double *nn = realloc(t->nv, sizeof(double) * (size_t)(t->nvals + 1));
        if (!nn)
            return -1;
        t->nv = nn;
        t->dv[t->nvals] = sb_rec_dice(x, o->empty_policy);
        t->nv[t->nvals] = sb_rec_nsd(x, o->empty_policy);
        t->nvals++;
        t->tp += x->tp;
        t->fp += x->fp;
        t->fn += x->fn;
    }
    for (int k = 0; k < r->nt; k++) {
        task_agg *t = &r->t[k];
        uint64_t s0 = o->seed ^ sb_hash_str(t->dataset);
        sb_summarize(t->dv, t->nvals, o->resamples, s0 ^ 0x11, &t->dice);
        sb_summarize(t->nv, t->nvals, o->resamples, s0 ^ 0x22, &t->nsd);
        int64_t den = 2 * t->tp + t->fp + t->fn;
        t->dice_pooled = den ? 2.0 * (double)t->tp / (double)den : NAN;
        if (b)
            for (size_t i = 0; i < b->n; i++)
                if (strcmp(b->v[i].dataset, t->dataset) == 0) {
                    if (t->batches == 0)
                        t->ref_dice = t->ref_iou = 0;
                    /* main.py: total += per-batch value, in batch order; then / n_val */
                    t->ref_dice += b->v[i].dice;
                    t->ref_iou += b->v[i].iou;
                    t->batches++;
                }
        if (t->batches > 0) {
            t->ref_dice /= t->batches;
            t->ref_iou /= t->batches;
        }
    }
    /* modalities, in first-seen (sorted dataset) order, then overall */
    r->m = calloc((size_t)r->nt + 1, sizeof(group_agg));
    if (!r->m)
        return -1;
    for (int pass = 0; pass <= 1; pass++) {
        int ng = pass ? 1 : 0;
        if (!pass)
            for (int k = 0; k < r->nt; k++) {
                int found = 0;
                for (int g = 0; g < r->nm; g++)
                    if (strcmp(r->m[g].modality, r->t[k].modality) == 0)
                        found = 1;
                if (!found)
                    snprintf(r->m[r->nm++].modality, SB_NAME_MAX, "%s", r->t[k].modality);
            }
        ng = pass ? 1 : r->nm;
        for (int g = 0; g < ng; g++) {
            group_agg *G = pass ? &r->all : &r->m[g];
            if (pass)
                snprintf(G->modality, sizeof G->modality, "overall");
            double dm = 0, nm = 0, dp = 0, np = 0;
            int kd = 0, kn = 0, cd = 0, cn = 0;
            for (int k = 0; k < r->nt; k++) {
                task_agg *t = &r->t[k];
                if (!pass && strcmp(t->modality, G->modality) != 0)
                    continue;
                G->tasks++;
                G->slices += t->slices;
                if (!isnan(t->dice.mean)) {
                    dm += t->dice.mean;
                    kd++;
                }
                if (!isnan(t->nsd.mean)) {
                    nm += t->nsd.mean;
                    kn++;
                }
                for (int i = 0; i < t->nvals; i++) {
                    if (!isnan(t->dv[i])) {
                        dp += t->dv[i];
                        cd++;
                    }
                    if (!isnan(t->nv[i])) {
                        np += t->nv[i];
                        cn++;
                    }
                }
            }
            G->dice_macro = kd ? dm / kd : NAN;
            G->nsd_macro = kn ? nm / kn : NAN;
            G->dice_pooled = cd ? dp / cd : NAN;
            G->nsd_pooled = cn ? np / cn : NAN;
        }
    }
    (void)mean_of;
    return 0;
}

/* ---- formatting ----------------------------------------------------------------- */
static const char *fmt4(double v, char *b, size_t cap)
{
    if (isnan(v))
        snprintf(b, cap, "n/a");
    else
        snprintf(b, cap, "%.4f", v);
    return b;
}
static const char *fmtj(double v, char *b, size_t cap)
{
    if (isnan(v) || isinf(v))
        snprintf(b, cap, "null");
    else
        snprintf(b, cap, "%.17g", v);
    return b;
}
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}
static void tex_str(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (strchr("_&%$#{}", *s))
            fprintf(f, "\\%c", *s);
        else
            fputc(*s, f);
    }
}

static FILE *open_out(const char *dir, const char *name, sb_error *err)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f)
        sb_fail(err, SB_EIO, "%s: cannot write", p);
    return f;
}

static void summary_json_block(FILE *f, const char *name, const sb_summary *s)
{
    char a[8][40];
    fprintf(f, "\"%s\": {\"n\": %d, \"mean\": %s, \"std\": %s, \"median\": %s, \"q1\": %s, \"q3\": %s, "
               "\"iqr\": %s, \"ci95\": [%s, %s], \"nan\": %d}",
            name, s->n, fmtj(s->mean, a[0], 40), fmtj(s->std, a[1], 40), fmtj(s->median, a[2], 40),
            fmtj(s->q1, a[3], 40), fmtj(s->q3, a[4], 40), fmtj(s->iqr, a[5], 40), fmtj(s->ci_lo, a[6], 40),
            fmtj(s->ci_hi, a[7], 40), s->nan_count);
}

static int write_per_case(const char *dir, const sb_recs *recs, int ref, int policy, sb_error *err)
{
    FILE *f = open_out(dir, "per_case.csv", err);
    if (!f)
        return err->code;
    char c1[600], c2[600], c3[600], c4[600], c5[600];
    char a[6][40];
    if (ref) {
        fprintf(f, "dataset,case,batch,box_x0,box_y0,box_x1,box_y1,gt_pixels,pred_pixels,tp,dice,iou\n");
        for (size_t i = 0; i < recs->n; i++) {
            const sb_rec *x = &recs->v[i];
            if (x->slice < 0 || x->batch < 0)
                continue;
            fprintf(f, "%s,%s,%d,%.0f,%.0f,%.0f,%.0f,%lld,%lld,%lld,%s,%s\n",
                    sb_csv_field(x->dataset, c1, sizeof c1), sb_csv_field(x->case_id, c2, sizeof c2),
                    x->batch, x->box[0], x->box[1], x->box[2], x->box[3], (long long)x->gt,
                    (long long)x->pred, (long long)x->tp, fmtj(sb_rec_dice(x, policy), a[0], 40),
                    fmtj(sb_rec_iou(x, policy), a[1], 40));
        }
    } else {
        fprintf(f, "dataset,task,modality,case,slices,status,gt_pixels,pred_pixels,tp,fp,fn,dice,iou,"
                   "dice_slice_mean,nsd_slice_mean,reason\n");
        /* recs are sorted: a case record precedes its slices */
        for (size_t i = 0; i < recs->n; i++) {
            const sb_rec *x = &recs->v[i];
            if (x->slice >= 0)
                continue;
            double sd = 0, sn = 0;
            int kd = 0, kn = 0;
            for (size_t j = i + 1; j < recs->n && recs->v[j].slice >= 0 &&
                                   strcmp(recs->v[j].dataset, x->dataset) == 0 &&
                                   strcmp(recs->v[j].case_id, x->case_id) == 0;
                 j++) {
                double d = sb_rec_dice(&recs->v[j], policy), n = sb_rec_nsd(&recs->v[j], policy);
                if (!isnan(d)) {
                    sd += d;
                    kd++;
                }
                if (!isnan(n)) {
                    sn += n;
                    kn++;
                }
            }
            fprintf(f, "%s,%s,%s,%s,%d,%s,%lld,%lld,%lld,%lld,%lld,%s,%s,%s,%s,%s\n",
                    sb_csv_field(x->dataset, c1, sizeof c1), sb_csv_field(x->task, c2, sizeof c2),
                    sb_csv_field(x->modality, c3, sizeof c3), sb_csv_field(x->case_id, c4, sizeof c4),
                    x->nslices, x->status == SB_REC_OK ? "ok" : "failed", (long long)x->gt,
                    (long long)x->pred, (long long)x->tp, (long long)x->fp, (long long)x->fn,
                    fmtj(sb_rec_dice(x, policy), a[0], 40), fmtj(sb_rec_iou(x, policy), a[1], 40),
                    fmtj(kd ? sd / kd : NAN, a[2], 40), fmtj(kn ? sn / kn : NAN, a[3], 40),
                    sb_csv_field(x->reason, c5, sizeof c5));
        }
    }
    fclose(f);
    return SB_OK;
}

/* The published Dice beside a task: from the manifest (recorded in the provenance at run time),
 * else, for MedBank folders, the paper's internal table (PROTOCOL.md section 5). */
static double published_for(const sb_prov *p, const task_agg *t)
{
    size_t n = strlen(t->dataset);
    for (const char *q = p->published; q && *q;) {
        if (strncmp(q, t->dataset, n) == 0 && q[n] == '=')
            return atof(q + n + 1);
        q = strchr(q, ';');
        if (q)
            q++;
    }
    if (strncmp(p->source, "medbank:", 8) == 0)
        return sb_published_dice(t->task, t->modality, p->model, 0);
    return NAN;
}

int sb_report_write(const char *dir, const sb_recs *recs, const sb_batches *b, const sb_prov *p,
                    const sb_report_opts *o, sb_error *err)
{
    reduced r;
    int ref = strcmp(p->protocol, "reference") == 0;
    if (reduce(recs, b, o, ref, &r) != 0) {
        reduced_free(&r);
        return sb_fail(err, SB_ENOMEM, "out of memory in the reducer");
    }
    int rc = write_per_case(dir, recs, ref, o->empty_policy, err);
    char a[12][40];
    FILE *f;
    if (rc == SB_OK && o->md && (f = open_out(dir, "summary.md", err))) {
        fprintf(f, "# sambench results: model `%s`, protocol `%s`, empty policy `%s`\n\n", p->model,
                p->protocol, sb_empty_policy_name(o->empty_policy));
        fprintf(f, "## Per task (over slices)\n\n");
        fprintf(f, "| task | modality | dataset | n | Dice mean | std | median | IQR | 95%% CI | NaN | "
                   "dice_pooled | NSD mean | NSD 95%% CI | NSD NaN | failed cases | published Dice |\n");
        fprintf(f, "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|---:|\n");
        for (int k = 0; k < r.nt; k++) {
            task_agg *t = &r.t[k];
            fprintf(f, "| %s | %s | %s | %d | %s | %s | %s | %s | [%s, %s] | %d | %s | %s | [%s, %s] | %d | %d | %s |\n",
                    t->task, t->modality, t->dataset, t->dice.n, fmt4(t->dice.mean, a[0], 40),
                    fmt4(t->dice.std, a[1], 40), fmt4(t->dice.median, a[2], 40), fmt4(t->dice.iqr, a[3], 40),
                    fmt4(t->dice.ci_lo, a[4], 40), fmt4(t->dice.ci_hi, a[5], 40), t->dice.nan_count,
                    fmt4(t->dice_pooled, a[6], 40), fmt4(t->nsd.mean, a[7], 40), fmt4(t->nsd.ci_lo, a[8], 40),
                    fmt4(t->nsd.ci_hi, a[9], 40), t->nsd.nan_count, t->failed,
                    fmt4(published_for(p, t), a[10], 40));
        }
        fprintf(f, "\n## Per modality\n\n| modality | tasks | slices | Dice macro | Dice pooled | NSD macro | NSD pooled |\n");
        fprintf(f, "|---|---:|---:|---:|---:|---:|---:|\n");
        for (int g = 0; g <= r.nm; g++) {
            group_agg *G = g < r.nm ? &r.m[g] : &r.all;
            fprintf(f, "| %s%s%s | %d | %d | %s | %s | %s | %s |\n", g < r.nm ? "" : "**", G->modality,
                    g < r.nm ? "" : "**", G->tasks, G->slices, fmt4(G->dice_macro, a[0], 40),
                    fmt4(G->dice_pooled, a[1], 40), fmt4(G->nsd_macro, a[2], 40), fmt4(G->nsd_pooled, a[3], 40));
        }
        if (ref) {
            fprintf(f, "\n## Reference protocol (as main.py prints it)\n\n| dataset | batches | mean Dice | mean IoU | not scored |\n|---|---:|---:|---:|---:|\n");
            for (int k = 0; k < r.nt; k++)
                fprintf(f, "| %s | %d | %s | %s | %d |\n", r.t[k].dataset, r.t[k].batches,
                        fmt4(r.t[k].ref_dice, a[0], 40), fmt4(r.t[k].ref_iou, a[1], 40), r.t[k].not_scored);
        }
        fclose(f);
    } else if (o->md && rc == SB_OK)
        rc = err->code;
    if (rc == SB_OK && o->csv && (f = open_out(dir, "summary.csv", err))) {
        fprintf(f, "level,name,modality,dataset,metric,n,mean,std,median,q1,q3,iqr,ci_lo,ci_hi,nan,pooled,published\n");
        for (int k = 0; k < r.nt; k++) {
            task_agg *t = &r.t[k];
            for (int mtr = 0; mtr < 2; mtr++) {
                sb_summary *s = mtr ? &t->nsd : &t->dice;
                fprintf(f, "task,%s,%s,%s,%s,%d,%s,%s,%s,%s,%s,%s,%s,%s,%d,%s,%s\n", t->task, t->modality,
                        t->dataset, mtr ? "nsd" : "dice", s->n, fmtj(s->mean, a[0], 40), fmtj(s->std, a[1], 40),
                        fmtj(s->median, a[2], 40), fmtj(s->q1, a[3], 40), fmtj(s->q3, a[4], 40),
                        fmtj(s->iqr, a[5], 40), fmtj(s->ci_lo, a[6], 40), fmtj(s->ci_hi, a[7], 40), s->nan_count,
                        mtr ? "" : fmtj(t->dice_pooled, a[8], 40),
                        mtr ? "" : fmtj(published_for(p, t), a[9], 40));
            }
        }
        for (int g = 0; g <= r.nm; g++) {
            group_agg *G = g < r.nm ? &r.m[g] : &r.all;
            const char *lvl = g < r.nm ? "modality" : "overall";
            fprintf(f, "%s,%s,,,dice_macro,%d,%s,,,,,,,,,,\n", lvl, G->modality, G->tasks, fmtj(G->dice_macro, a[0], 40));
            fprintf(f, "%s,%s,,,dice_pooled,%d,%s,,,,,,,,,,\n", lvl, G->modality, G->slices, fmtj(G->dice_pooled, a[0], 40));
            fprintf(f, "%s,%s,,,nsd_macro,%d,%s,,,,,,,,,,\n", lvl, G->modality, G->tasks, fmtj(G->nsd_macro, a[0], 40));
            fprintf(f, "%s,%s,,,nsd_pooled,%d,%s,,,,,,,,,,\n", lvl, G->modality, G->slices, fmtj(G->nsd_pooled, a[0], 40));
        }
        fclose(f);
    } else if (o->csv && rc == SB_OK)
        rc = err->code;
    if (rc == SB_OK && o->tex && (f = open_out(dir, "summary.tex", err))) {
        fprintf(f, "%% sambench: model %s, protocol %s (requires \\usepackage{booktabs})\n", p->model, p->protocol);
        fprintf(f, "\\begin{tabular}{llrrrrr}\n\\toprule\nTask & Modality & $n$ & Dice & 95\\%% CI & NSD & Published \\\\\n\\midrule\n");
        for (int k = 0; k < r.nt; k++) {
            task_agg *t = &r.t[k];
            tex_str(f, t->task);
            fputs(" & ", f);
            tex_str(f, t->modality);
            fprintf(f, " & %d & %s & [%s, %s] & %s & %s \\\\\n", t->dice.n, fmt4(t->dice.mean, a[0], 40),
                    fmt4(t->dice.ci_lo, a[1], 40), fmt4(t->dice.ci_hi, a[2], 40), fmt4(t->nsd.mean, a[3], 40),
                    fmt4(published_for(p, t), a[4], 40));
        }
        fprintf(f, "\\midrule\n");
        for (int g = 0; g <= r.nm; g++) {
            group_agg *G = g < r.nm ? &r.m[g] : &r.all;
            tex_str(f, g < r.nm ? G->modality : "Average");
            fprintf(f, " (macro / pooled) & & %d & %s / %s & & %s / %s & \\\\\n", G->slices,
                    fmt4(G->dice_macro, a[0], 40), fmt4(G->dice_pooled, a[1], 40), fmt4(G->nsd_macro, a[2], 40),
                    fmt4(G->nsd_pooled, a[3], 40));
        }
        fprintf(f, "\\bottomrule\n\\end{tabular}\n");
        fclose(f);
    } else if (o->tex && rc == SB_OK)
        rc = err->code;
    if (rc == SB_OK && o->json && (f = open_out(dir, "summary.json", err))) {
        fprintf(f, "{\n  \"sambench_version\": ");
        json_str(f, p->version);
        fprintf(f, ",\n  \"model\": ");
        json_str(f, p->model);
        fprintf(f, ",\n  \"protocol\": ");
        json_str(f, p->protocol);
        fprintf(f, ",\n  \"empty_policy\": \"%s\",\n  \"bootstrap\": {\"resamples\": %d, \"seed\": %llu},\n",
                sb_empty_policy_name(o->empty_policy), o->resamples, (unsigned long long)o->seed);
        /* everything that depends on how the run was executed, on one line */
        fprintf(f, "  \"run\": {\"ranks\": %d, \"threads\": %d, \"wall_seconds\": %.3f, \"hosts\": ", p->ranks,
                p->threads, p->wall_seconds);
        json_str(f, p->hosts);
        fprintf(f, "},\n  \"tasks\": [\n");
        for (int k = 0; k < r.nt; k++) {
            task_agg *t = &r.t[k];
            fprintf(f, "    {\"dataset\": ");
            json_str(f, t->dataset);
            fprintf(f, ", \"task\": ");
            json_str(f, t->task);
            fprintf(f, ", \"modality\": ");
            json_str(f, t->modality);
            fprintf(f, ", \"slices\": %d, \"cases\": %d, \"failed\": %d, ", t->slices, t->cases, t->failed);
            summary_json_block(f, "dice", &t->dice);
            fprintf(f, ", ");
            summary_json_block(f, "nsd", &t->nsd);
            fprintf(f, ", \"dice_pooled\": %s, \"published_dice\": %s}%s\n", fmtj(t->dice_pooled, a[0], 40),
                    fmtj(published_for(p, t), a[1], 40),
                    k + 1 < r.nt ? "," : "");
        }
        fprintf(f, "  ],\n  \"modalities\": [\n");
        for (int g = 0; g < r.nm; g++) {
            group_agg *G = &r.m[g];
            fprintf(f, "    {\"modality\": ");
            json_str(f, G->modality);
            fprintf(f, ", \"tasks\": %d, \"slices\": %d, \"dice_macro\": %s, \"dice_pooled\": %s, \"nsd_macro\": %s, "
                       "\"nsd_pooled\": %s}%s\n",
                    G->tasks, G->slices, fmtj(G->dice_macro, a[0], 40), fmtj(G->dice_pooled, a[1], 40),
                    fmtj(G->nsd_macro, a[2], 40), fmtj(G->nsd_pooled, a[3], 40), g + 1 < r.nm ? "," : "");
        }
        fprintf(f, "  ],\n  \"overall\": {\"tasks\": %d, \"slices\": %d, \"dice_macro\": %s, \"dice_pooled\": %s, "
                   "\"nsd_macro\": %s, \"nsd_pooled\": %s}",
                r.all.tasks, r.all.slices, fmtj(r.all.dice_macro, a[0], 40), fmtj(r.all.dice_pooled, a[1], 40),
                fmtj(r.all.nsd_macro, a[2], 40), fmtj(r.all.nsd_pooled, a[3], 40));
        if (ref) {
            fprintf(f, ",\n  \"datasets\": {\n");
            for (int k = 0; k < r.nt; k++) {
                task_agg *t = &r.t[k];
                fprintf(f, "    ");
                json_str(f, t->dataset);
                fprintf(f, ": {\"batches\": %d, \"reference_mean_dice\": %s, \"reference_mean_iou\": %s, \"not_scored\": [",
                        t->batches, fmtj(t->ref_dice, a[0], 40), fmtj(t->ref_iou, a[1], 40));
                int first = 1;
                for (size_t i = 0; i < recs->n; i++) {
                    const sb_rec *x = &recs->v[i];
                    if (x->slice >= 0 && x->batch < 0 && strcmp(x->dataset, t->dataset) == 0) {
                        fprintf(f, "%s", first ? "" : ", ");
                        json_str(f, x->case_id);
                        first = 0;
                    }
                }
                fprintf(f, "]}%s\n", k + 1 < r.nt ? "," : "");
            }
            fprintf(f, "  }");
        }
        fprintf(f, "\n}\n");
        fclose(f);
    } else if (o->json && rc == SB_OK)
        rc = err->code;
    if (rc == SB_OK && ref && b && (f = open_out(dir, "reference_batches.csv", err))) {
        char c1[600], c2[2200];
        fprintf(f, "dataset,batch,cases,intersection,union,iou,dice\n");
        for (size_t i = 0; i < b->n; i++)
            fprintf(f, "%s,%d,%s,%lld,%lld,%s,%s\n", sb_csv_field(b->v[i].dataset, c1, sizeof c1), b->v[i].batch,
                    sb_csv_field(b->v[i].cases, c2, sizeof c2), (long long)b->v[i].inter, (long long)b->v[i].uni,
                    fmtj(b->v[i].iou, a[0], 40), fmtj(b->v[i].dice, a[1], 40));
        fclose(f);
    } else if (ref && b && rc == SB_OK)
        rc = err->code;
    reduced_free(&r);
    return rc;
}

/* ---- several result folders -> one table ------------------------------------------ */
int sb_report_multi(const char **dirs, int n, const char *outdir, const sb_report_opts *o, sb_error *err)
{
    reduced *rs = calloc((size_t)n, sizeof(reduced));
    sb_prov *ps = calloc((size_t)n, sizeof(sb_prov));
    char (*names)[80] = calloc((size_t)n, sizeof *names);
    int rc = rs && ps && names ? SB_OK : sb_fail(err, SB_ENOMEM, "out of memory");
    for (int i = 0; i < n && rc == SB_OK; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/results.h5", dirs[i]);
        sb_recs recs;
        sb_batches b;
        rc = sb_results_read(path, &recs, &b, &ps[i], err);
        if (rc)
            break;
        if (reduce(&recs, &b, o, strcmp(ps[i].protocol, "reference") == 0, &rs[i]) != 0)
            rc = sb_fail(err, SB_ENOMEM, "out of memory in the reducer");
        sb_recs_free(&recs);
        sb_batches_free(&b);
        snprintf(names[i], sizeof names[i], "%s", ps[i].model);
        for (int j = 0; j < i; j++)
            if (strcmp(names[j], names[i]) == 0) {
                const char *base = strrchr(dirs[i], '/');
                snprintf(names[i], sizeof names[i], "%s", base && base[1] ? base + 1 : dirs[i]);
            }
    }
    /* rows: the union of datasets, sorted */
    char (*rows)[3][SB_NAME_MAX] = NULL;
    int nrows = 0;
    if (rc == SB_OK) {
        int cap = 0;
        for (int i = 0; i < n; i++)
            cap += rs[i].nt;
        rows = calloc((size_t)cap + 1, sizeof *rows);
        if (!rows)
            rc = sb_fail(err, SB_ENOMEM, "out of memory");
        for (int i = 0; rows && i < n; i++)
            for (int k = 0; k < rs[i].nt; k++) {
                int found = 0;
                for (int j = 0; j < nrows; j++)
                    if (strcmp(rows[j][0], rs[i].t[k].dataset) == 0)
                        found = 1;
                if (!found) {
                    snprintf(rows[nrows][0], SB_NAME_MAX, "%s", rs[i].t[k].dataset);
                    snprintf(rows[nrows][1], SB_NAME_MAX, "%s", rs[i].t[k].task);
                    snprintf(rows[nrows][2], SB_NAME_MAX, "%s", rs[i].t[k].modality);
                    nrows++;
                }
            }
        for (int a1 = 1; a1 < nrows; a1++) /* insertion sort by dataset */
            for (int b1 = a1; b1 > 0 && strcmp(rows[b1 - 1][0], rows[b1][0]) > 0; b1--) {
                char t[3][SB_NAME_MAX];
                memcpy(t, rows[b1], sizeof t);
                memcpy(rows[b1], rows[b1 - 1], sizeof t);
                memcpy(rows[b1 - 1], t, sizeof t);
            }
    }
    const char *ext[4] = {"md", "csv", "tex", "json"};
    int want[4] = {o->md, o->csv, o->tex, o->json};
    char a[40];
    for (int e = 0; e < 4 && rc == SB_OK; e++) {
        if (!want[e])
            continue;
        char fn[64];
        snprintf(fn, sizeof fn, "models.%s", ext[e]);
        FILE *f = open_out(outdir, fn, err);
        if (!f) {
            rc = err->code;
            break;
        }
        for (int metric = 0; metric < 2; metric++) {
            const char *mn = metric ? "NSD" : "Dice";
            if (e == 0) {
                fprintf(f, "%s## Mean %s per task\n\n| task | modality | dataset |", metric ? "\n" : "", mn);
                for (int i = 0; i < n; i++)
                    fprintf(f, " %s |", names[i]);
                fprintf(f, "\n|---|---|---|");
                for (int i = 0; i < n; i++)
                    fprintf(f, "---:|");
                fprintf(f, "\n");
            } else if (e == 1 && metric == 0) {
                fprintf(f, "metric,task,modality,dataset");
                for (int i = 0; i < n; i++)
                    fprintf(f, ",%s", names[i]);
                fprintf(f, "\n");
            } else if (e == 2) {
                fprintf(f, "%% mean %s per task (booktabs)\n\\begin{tabular}{ll", mn);
                for (int i = 0; i < n; i++)
                    fprintf(f, "r");
                fprintf(f, "}\n\\toprule\nTask & Modality");
                for (int i = 0; i < n; i++) {
                    fputs(" & ", f);
                    tex_str(f, names[i]);
                }
                fprintf(f, " \\\\\n\\midrule\n");
            } else if (e == 3) {
                fprintf(f, "%s\"%s\": {\"models\": [", metric ? ",\n " : "{", metric ? "nsd" : "dice");
                for (int i = 0; i < n; i++) {
                    fprintf(f, "%s", i ? ", " : "");
                    json_str(f, names[i]);
                }
                fprintf(f, "], \"rows\": [");
            }
            for (int j = 0; j <= nrows; j++) {
                int avg = j == nrows;
                if (e == 0)
                    fprintf(f, "| %s | %s | %s |", avg ? "**Average (pooled)**" : rows[j][1], avg ? "" : rows[j][2],
                            avg ? "" : rows[j][0]);
                else if (e == 1)
                    fprintf(f, "%s,%s,%s,%s", metric ? "nsd" : "dice", avg ? "average_pooled" : rows[j][1],
                            avg ? "" : rows[j][2], avg ? "" : rows[j][0]);
                else if (e == 2) {
                    if (avg)
                        fprintf(f, "\\midrule\nAverage & ");
                    else {
                        tex_str(f, rows[j][1]);
                        fputs(" & ", f);
                        tex_str(f, rows[j][2]);
                    }
                } else {
                    fprintf(f, "%s{\"dataset\": ", j ? ", " : "");
                    json_str(f, avg ? "average_pooled" : rows[j][0]);
                    fprintf(f, ", \"values\": [");
                }
                for (int i = 0; i < n; i++) {
                    double v = NAN;
                    if (avg)
                        v = metric ? rs[i].all.nsd_pooled : rs[i].all.dice_pooled;
                    else
                        for (int k = 0; k < rs[i].nt; k++)
                            if (strcmp(rs[i].t[k].dataset, rows[j][0]) == 0)
                                v = metric ? rs[i].t[k].nsd.mean : rs[i].t[k].dice.mean;
                    if (e == 0)
                        fprintf(f, " %s |", fmt4(v, a, 40));
                    else if (e == 1)
                        fprintf(f, ",%s", fmtj(v, a, 40));
                    else if (e == 2)
                        fprintf(f, " & %s", fmt4(v, a, 40));
                    else
                        fprintf(f, "%s%s", i ? ", " : "", fmtj(v, a, 40));
                }
                if (e == 3)
                    fprintf(f, "]}");
                else
                    fprintf(f, e == 2 ? " \\\\\n" : "\n");
            }
            if (e == 2)
                fprintf(f, "\\bottomrule\n\\end{tabular}\n");
            if (e == 3)
                fprintf(f, "]}%s", metric ? "}\n" : "");
        }
        fclose(f);
    }
    if (rs)
        for (int i = 0; i < n; i++)
            reduced_free(&rs[i]);
    free(rs);
    free(ps);
    free(names);
    free(rows);
    return rc;
}
