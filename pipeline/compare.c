/*
 * The release gate: sambench compare BASE CAND.
 *
 * Cases are paired by (dataset, case). A case's value is the mean of its
 * slices' metric (NaN slices excluded). Per task (dataset): the mean of the
 * paired differences cand - base, its paired percentile-bootstrap CI at level
 * 1 - alpha (1000 resamples, seeded) and the two-sided Wilcoxon signed-rank
 * p-value. Regression (exit 1): a task whose mean drops by more than
 * --max-drop with the CI entirely below zero, or a case the candidate failed
 * and the base did not. Cases present on one side only are listed, never
 * guessed.
 */
#include "run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char dataset[SB_NAME_MAX], task[SB_NAME_MAX], modality[SB_NAME_MAX], case_id[SB_CASE_MAX];
    double v;
    int failed;
} cval;

static int metric_of(const sb_rec *r, const char *metric, int policy, double *out)
{
    if (strcmp(metric, "dice") == 0)
        *out = sb_rec_dice(r, policy);
    else if (strcmp(metric, "nsd") == 0)
        *out = sb_rec_nsd(r, policy);
    else if (strcmp(metric, "iou") == 0)
        *out = sb_rec_iou(r, policy);
    else
        return -1;
    return 0;
}

/* recs sorted by (dataset, case, slice) -> one value per case */
static int case_values(const sb_recs *recs, const char *metric, int policy, cval **out, int *n)
{
    cval *v = calloc(recs->n + 1, sizeof(cval));
    if (!v)
        return -1;
    int k = 0;
    for (size_t i = 0; i < recs->n;) {
        size_t j = i;
        double s = 0;
        int c = 0, failed = 0, any = 0;
        while (j < recs->n && strcmp(recs->v[j].dataset, recs->v[i].dataset) == 0 &&
               strcmp(recs->v[j].case_id, recs->v[i].case_id) == 0) {
            const sb_rec *r = &recs->v[j];
            if (r->slice < 0) {
                if (r->status != SB_REC_OK)
                    failed = 1;
            } else if (r->batch >= 0 || r->height > 0) {
                double x;
                metric_of(r, metric, policy, &x);
                any = 1;
                if (!isnan(x)) {
                    s += x;
                    c++;
                }
            }
            j++;
        }
        if (any || failed) {
            cval *x = &v[k++];
            snprintf(x->dataset, sizeof x->dataset, "%s", recs->v[i].dataset);
            snprintf(x->task, sizeof x->task, "%s", recs->v[i].task);
            snprintf(x->modality, sizeof x->modality, "%s", recs->v[i].modality);
            snprintf(x->case_id, sizeof x->case_id, "%s", recs->v[i].case_id);
            x->v = c ? s / c : NAN;
            x->failed = failed;
        }
        i = j;
    }
    *out = v;
    *n = k;
    return 0;
}

static int cmp_key(const cval *a, const cval *b)
{
    int c = strcmp(a->dataset, b->dataset);
    return c ? c : strcmp(a->case_id, b->case_id);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int sb_compare(const char *base, const char *cand, const sb_compare_opts *o, sb_error *err)
{
    double probe;
    sb_rec dummy;
    memset(&dummy, 0, sizeof dummy);
    if (metric_of(&dummy, o->metric, o->empty_policy, &probe) != 0)
        return sb_fail(err, SB_EINVAL, "--metric %s: expected dice, nsd or iou", o->metric), -1;
    sb_recs rb, rc_;
    sb_batches bb, bc;
    sb_prov pb, pc;
    char path[4096];
    snprintf(path, sizeof path, "%s/results.h5", base);
    if (sb_results_read(path, &rb, &bb, &pb, err))
        return -1;
    snprintf(path, sizeof path, "%s/results.h5", cand);
    if (sb_results_read(path, &rc_, &bc, &pc, err)) {
        sb_recs_free(&rb);
        sb_batches_free(&bb);
        return -1;
    }
    cval *vb = NULL, *vc = NULL;
    int nb = 0, nc = 0, result = -1;
    FILE *md = NULL;
    double *d = NULL, *means = NULL;
    if (case_values(&rb, o->metric, o->empty_policy, &vb, &nb) || case_values(&rc_, o->metric, o->empty_policy, &vc, &nc)) {
        sb_fail(err, SB_ENOMEM, "out of memory");
        goto out;
    }
    char mdpath[4096];
    if (o->out)
        snprintf(mdpath, sizeof mdpath, "%s", o->out);
    else
        snprintf(mdpath, sizeof mdpath, "%s/compare.md", cand);
    md = fopen(mdpath, "w");
    if (!md) {
        sb_fail(err, SB_EIO, "%s: cannot write the report", mdpath);
        goto out;
    }
    d = malloc(sizeof(double) * (size_t)(nb + nc + 1));
    means = malloc(sizeof(double) * 1000);
    if (!d || !means) {
        sb_fail(err, SB_ENOMEM, "out of memory");
        goto out;
    }
    FILE *outs[2] = {stdout, md};
    for (int w = 0; w < 2; w++) {
        fprintf(outs[w], "# sambench compare: `%s` (%s) -> `%s` (%s)\n\n", base, pb.model, cand, pc.model);
        fprintf(outs[w], "Metric `%s`, paired by (dataset, case); gate: a task's mean drops by more than %.4g "
                         "with the %.0f %% paired bootstrap CI below zero, or the candidate fails a case the base did not.\n\n",
                o->metric, o->max_drop, 100 * (1 - o->alpha));
        fprintf(outs[w], "| task | modality | dataset | pairs | base mean | cand mean | mean diff | %.0f %% CI | Wilcoxon p | verdict |\n",
                100 * (1 - o->alpha));
        fprintf(outs[w], "|---|---|---|---:|---:|---:|---:|---|---:|---|\n");
    }
    int regress = 0, only_b = 0, only_c = 0, new_fail = 0;
    /* merge walk over the two sorted case lists, task by task */
    int i = 0, j = 0;
    while (i < nb || j < nc) {
        const char *ds = i < nb && (j >= nc || strcmp(vb[i].dataset, vc[j].dataset) <= 0) ? vb[i].dataset : vc[j].dataset;
        const cval *info = i < nb && strcmp(vb[i].dataset, ds) == 0 ? &vb[i] : &vc[j];
        int np = 0;
        double sb = 0, sc = 0;
        while ((i < nb && strcmp(vb[i].dataset, ds) == 0) || (j < nc && strcmp(vc[j].dataset, ds) == 0)) {
            int c;
            if (i >= nb || strcmp(vb[i].dataset, ds) != 0)
                c = 1;
            else if (j >= nc || strcmp(vc[j].dataset, ds) != 0)
                c = -1;
            else
                c = cmp_key(&vb[i], &vc[j]);
            if (c < 0) {
                only_b++;
                for (int w = 0; w < 2; w++)
                    if (only_b <= 20 || w == 1)
                        fprintf(w ? md : stderr, "%sonly in base: %s / %s\n", w ? "- " : "compare: ", vb[i].dataset, vb[i].case_id);
                i++;
            } else if (c > 0) {
                only_c++;
                for (int w = 0; w < 2; w++)
                    if (only_c <= 20 || w == 1)
                        fprintf(w ? md : stderr, "%sonly in candidate: %s / %s\n", w ? "- " : "compare: ", vc[j].dataset, vc[j].case_id);
                j++;
            } else {
                if (vc[j].failed && !vb[i].failed) {
                    new_fail++;
                    fprintf(md, "- candidate failed a case the base did not: %s / %s\n", vc[j].dataset, vc[j].case_id);
                    fprintf(stderr, "compare: candidate failed %s / %s (base did not)\n", vc[j].dataset, vc[j].case_id);
                }
                if (!isnan(vb[i].v) && !isnan(vc[j].v) && !vb[i].failed && !vc[j].failed) {
                    d[np++] = vc[j].v - vb[i].v;
                    sb += vb[i].v;
                    sc += vc[j].v;
                }
                i++;
                j++;
            }
        }
        char a[6][40];
        double mean = NAN, lo = NAN, hi = NAN, p = NAN;
        const char *verdict = "no pairs";
        if (np > 0) {
            double s = 0;
            for (int k = 0; k < np; k++)
                s += d[k];
            mean = s / np;
            uint64_t st = o->seed ^ sb_hash_str(ds);
            for (int r = 0; r < 1000; r++) {
                double acc = 0;
                for (int k = 0; k < np; k++) {
                    uint64_t u = sb_splitmix64(&st);
                    acc += d[((u >> 32) * (uint64_t)np) >> 32];
                }
                means[r] = acc / np;
            }
            qsort(means, 1000, sizeof(double), cmp_double);
            lo = sb_quantile_sorted(means, 1000, o->alpha / 2);
            hi = sb_quantile_sorted(means, 1000, 1 - o->alpha / 2);
            p = sb_wilcoxon_p(d, np);
            if (mean < -o->max_drop && hi < 0) {
                verdict = "**REGRESSION**";
                regress++;
            } else if (lo > 0)
                verdict = "improved";
            else
                verdict = "ok";
        }
        for (int w = 0; w < 2; w++)
            fprintf(outs[w], "| %s | %s | %s | %d | %s | %s | %s | [%s, %s] | %s | %s |\n", info->task, info->modality, ds, np,
                    np ? (snprintf(a[0], 40, "%.4f", sb / np), a[0]) : "n/a",
                    np ? (snprintf(a[1], 40, "%.4f", sc / np), a[1]) : "n/a",
                    isnan(mean) ? "n/a" : (snprintf(a[2], 40, "%+.4f", mean), a[2]),
                    isnan(lo) ? "n/a" : (snprintf(a[3], 40, "%+.4f", lo), a[3]),
                    isnan(hi) ? "n/a" : (snprintf(a[4], 40, "%+.4f", hi), a[4]),
                    isnan(p) ? "n/a" : (snprintf(a[5], 40, "%.3g", p), a[5]), verdict);
    }
    for (int w = 0; w < 2; w++) {
        fprintf(outs[w], "\nCases only in base: %d; only in candidate: %d; failed in candidate only: %d.\n", only_b,
                only_c, new_fail);
        fprintf(outs[w], "Verdict: %s\n", regress || new_fail ? "REGRESSION (exit 1)" : "no regression (exit 0)");
    }
    result = regress || new_fail ? 1 : 0;
out:
    if (md)
        fclose(md);
    free(d);
    free(means);
    free(vb);
    free(vc);
    sb_recs_free(&rb);
    sb_recs_free(&rc_);
    sb_batches_free(&bb);
    sb_batches_free(&bc);
    return result;
}
