/*
 * Records and RESULTS/results.h5.
 *
 * Layout (columns, one dataset per field, row i of every column = record i):
 *   /slices/<field>   one row per scored image, sorted by (dataset, case, slice)
 *   /cases/<field>    one row per case (volume protocol) or failed unit
 *   /batches/<field>  reference protocol: one row per scored batch, in order
 * string fields are fixed-length UTF-8, counts int64, surfaces/metrics/seconds
 * float64, box float32 [n,4]. Metrics (dice, iou, nsd) are written for the
 * policy of the run and recomputed from the counts by `sambench report`.
 * Provenance: string attributes of the root group (model, checkpoint,
 * checkpoint_sha256, memory_bank, memory_bank_sha256, source, protocol,
 * options, version, ranks, threads, hosts, wall_seconds, start_time, seed,
 * empty_policy).
 */
#include "run.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

sb_rec *sb_recs_push(sb_recs *r)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? 2 * r->cap : 64;
        sb_rec *nv = realloc(r->v, sizeof(sb_rec) * nc);
        if (!nv)
            return NULL;
        r->v = nv;
        r->cap = nc;
    }
    sb_rec *x = &r->v[r->n++];
    memset(x, 0, sizeof *x);
    return x;
}
void sb_recs_free(sb_recs *r)
{
    free(r->v);
    memset(r, 0, sizeof *r);
}
sb_batch_rec *sb_batches_push(sb_batches *b)
{
    if (b->n == b->cap) {
        size_t nc = b->cap ? 2 * b->cap : 16;
        sb_batch_rec *nv = realloc(b->v, sizeof(sb_batch_rec) * nc);
        if (!nv)
            return NULL;
        b->v = nv;
        b->cap = nc;
    }
    sb_batch_rec *x = &b->v[b->n++];
    memset(x, 0, sizeof *x);
    return x;
}
void sb_batches_free(sb_batches *b)
{
    free(b->v);
    memset(b, 0, sizeof *b);
}

static int cmp_rec(const void *a, const void *b)
{
    const sb_rec *x = a, *y = b;
    int c = strcmp(x->dataset, y->dataset);
    if (c)
        return c;
    c = strcmp(x->case_id, y->case_id);
    if (c)
        return c;
    return (x->slice > y->slice) - (x->slice < y->slice);
}
void sb_recs_sort(sb_recs *r)
{
    if (r->n > 1)
        qsort(r->v, r->n, sizeof(sb_rec), cmp_rec);
}

static int cmp_batch(const void *a, const void *b)
{
    const sb_batch_rec *x = a, *y = b;
    int c = strcmp(x->dataset, y->dataset);
    return c ? c : (x->batch > y->batch) - (x->batch < y->batch);
}
void sb_batches_sort(sb_batches *b)
{
    if (b->n > 1)
        qsort(b->v, b->n, sizeof(sb_batch_rec), cmp_batch);
}

static double empty_value(int p) { return p == SB_EMPTY_ONE ? 1.0 : p == SB_EMPTY_ZERO ? 0.0 : NAN; }

double sb_rec_dice(const sb_rec *r, int p)
{
    if (r->status != SB_REC_OK)
        return NAN;
    int64_t den = 2 * r->tp + r->fp + r->fn;
    if (den == 0)
        return empty_value(p);
    return 2.0 * (double)r->tp / (double)den;
}
double sb_rec_iou(const sb_rec *r, int p)
{
    if (r->status != SB_REC_OK)
        return NAN;
    int64_t den = r->tp + r->fp + r->fn;
    if (den == 0)
        return empty_value(p);
    return (double)r->tp / (double)den;
}
double sb_rec_nsd(const sb_rec *r, int p)
{
    if (r->status != SB_REC_OK)
        return NAN;
    if (r->gt == 0 && r->pred == 0)
        return empty_value(p);
    if (r->gt == 0 || r->pred == 0)
        return 0.0;
    double den = r->surf_gt + r->surf_pred;
    if (isnan(den) || den <= 0)
        return NAN;
    return (r->surf_gt_in + r->surf_pred_in) / den;
}
int sb_run_parse_empty_policy(const char *s, void *out)
{
    int p;
    if (strcmp(s, "nan") == 0)
        p = SB_EMPTY_NAN;
    else if (strcmp(s, "one") == 0)
        p = SB_EMPTY_ONE;
    else if (strcmp(s, "zero") == 0)
        p = SB_EMPTY_ZERO;
    else
        return -1;
    *(int *)out = p;
    return 0;
}
const char *sb_empty_policy_name(int p) { return p == SB_EMPTY_ONE ? "one" : p == SB_EMPTY_ZERO ? "zero" : "nan"; }

/* ---- HDF5 columns ---------------------------------------------------------- */
#define OFF(f) offsetof(sb_rec, f)

typedef struct {
    const char *name;
    char kind; /* s string, i int32, l int64, d double, b box */
    size_t off, size;
} col;

static const col rec_cols[] = {
    {"dataset", 's', OFF(dataset), SB_NAME_MAX},   {"task", 's', OFF(task), SB_NAME_MAX},
    {"modality", 's', OFF(modality), SB_NAME_MAX}, {"case", 's', OFF(case_id), SB_CASE_MAX},
    {"slice", 'i', OFF(slice), 4},                 {"status", 'i', OFF(status), 4},
    {"height", 'i', OFF(height), 4},               {"width", 'i', OFF(width), 4},
    {"batch", 'i', OFF(batch), 4},                 {"nslices", 'i', OFF(nslices), 4},
    {"box", 'b', OFF(box), 16},                    {"gt_pixels", 'l', OFF(gt), 8},
    {"pred_pixels", 'l', OFF(pred), 8},            {"tp", 'l', OFF(tp), 8},
    {"fp", 'l', OFF(fp), 8},                       {"fn", 'l', OFF(fn), 8},
    {"surface_gt", 'd', OFF(surf_gt), 8},          {"surface_pred", 'd', OFF(surf_pred), 8},
    {"surface_gt_within", 'd', OFF(surf_gt_in), 8}, {"surface_pred_within", 'd', OFF(surf_pred_in), 8},
    {"seconds", 'd', OFF(seconds), 8},             {"reason", 's', OFF(reason), SB_REASON_MAX},
};
#define NCOLS (sizeof rec_cols / sizeof *rec_cols)

static hid_t str_type(size_t len)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len < 1 ? 1 : len);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static int write_col(hid_t g, const char *name, hid_t mtype, int rank, const hsize_t *dims, const void *buf)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(g, name, mtype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int ok = ds >= 0 && (dims[0] == 0 || H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(sp);
    return ok ? 0 : -1;
}

static int write_recs(hid_t file, const char *group, const sb_rec *const *rows, size_t n, int policy)
{
    hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return -1;
    int rc = 0;
    size_t nn = n ? n : 1;
    for (size_t c = 0; c < NCOLS && rc == 0; c++) {
        const col *cl = &rec_cols[c];
        hsize_t dims[2] = {n, 4};
        if (cl->kind == 's') {
            size_t maxl = 1;
            for (size_t i = 0; i < n; i++) {
                size_t l = strlen((const char *)rows[i] + cl->off) + 1;
                if (l > maxl)
                    maxl = l;
            }
            char *buf = calloc(nn, maxl);
            if (!buf) {
                rc = -1;
                break;
            }
            for (size_t i = 0; i < n; i++)
                memcpy(buf + i * maxl, (const char *)rows[i] + cl->off,
                       strlen((const char *)rows[i] + cl->off));
            hid_t t = str_type(maxl);
            rc = write_col(g, cl->name, t, 1, dims, buf);
            H5Tclose(t);
            free(buf);
        } else {
            size_t es = cl->kind == 'b' ? 16 : cl->size;
            char *buf = calloc(nn, es);
            if (!buf) {
                rc = -1;
                break;
            }
            for (size_t i = 0; i < n; i++)
                memcpy(buf + i * es, (const char *)rows[i] + cl->off, es);
            hid_t t = cl->kind == 'i' ? H5T_NATIVE_INT32
                      : cl->kind == 'l' ? H5T_NATIVE_INT64
                      : cl->kind == 'd' ? H5T_NATIVE_DOUBLE
                                        : H5T_NATIVE_FLOAT;
            rc = write_col(g, cl->name, t, cl->kind == 'b' ? 2 : 1, dims, buf);
            free(buf);
        }
    }
    /* metrics under the run's policy, for readers that do not recompute */
    const char *mn[3] = {"dice", "iou", "nsd"};
    double *m = malloc(sizeof(double) * nn);
    for (int k = 0; k < 3 && m && rc == 0; k++) {
        for (size_t i = 0; i < n; i++)
            m[i] = k == 0 ? sb_rec_dice(rows[i], policy) : k == 1 ? sb_rec_iou(rows[i], policy)
                                                                  : sb_rec_nsd(rows[i], policy);
        hsize_t d1[1] = {n};
        rc = write_col(g, mn[k], H5T_NATIVE_DOUBLE, 1, d1, m);
    }
    free(m);
    H5Gclose(g);
    return rc;
}

static int set_attr(hid_t obj, const char *name, const char *value)
{
    hid_t t = str_type(strlen(value) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, t, value) >= 0;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return ok ? 0 : -1;
}

static int get_attr(hid_t obj, const char *name, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t ft = H5Aget_type(a);
    size_t sz = H5Tget_size(ft);
    char *tmp = calloc(1, sz + 1);
    hid_t t = str_type(sz);
    int ok = tmp && H5Aread(a, t, tmp) >= 0;
    if (ok)
        snprintf(buf, cap, "%s", tmp);
    free(tmp);
    H5Tclose(t);
    H5Tclose(ft);
    H5Aclose(a);
    return ok ? 0 : -1;
}

int sb_results_write(const char *path, const sb_recs *recs, const sb_batches *b, const sb_prov *p,
                     sb_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        return sb_fail(err, SB_EIO, "%s: cannot create", tmp);
    size_t ns = 0, nc = 0;
    const sb_rec **sl = malloc(sizeof(sb_rec *) * (recs->n + 1));
    const sb_rec **cs = malloc(sizeof(sb_rec *) * (recs->n + 1));
    int rc = sl && cs ? 0 : -1;
    for (size_t i = 0; i < recs->n && rc == 0; i++) {
        if (recs->v[i].slice < 0)
            cs[nc++] = &recs->v[i];
        else
            sl[ns++] = &recs->v[i];
    }
    if (rc == 0)
        rc = write_recs(f, "slices", sl, ns, p->empty_policy);
    if (rc == 0)
        rc = write_recs(f, "cases", cs, nc, p->empty_policy);
    free(sl);
    free(cs);
    if (rc == 0) {
        hid_t g = H5Gcreate2(f, "batches", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        size_t n = b ? b->n : 0, nn = n ? n : 1;
        hsize_t d[1] = {n};
        char *s1 = calloc(nn, SB_NAME_MAX), *s2 = calloc(nn, SB_CASES_MAX);
        int32_t *bi = calloc(nn, 4);
        int64_t *I = calloc(nn, 8), *U = calloc(nn, 8);
        double *io = calloc(nn, 8), *di = calloc(nn, 8);
        if (g < 0 || !s1 || !s2 || !bi || !I || !U || !io || !di)
            rc = -1;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            memcpy(s1 + i * SB_NAME_MAX, b->v[i].dataset, SB_NAME_MAX);
            memcpy(s2 + i * SB_CASES_MAX, b->v[i].cases, SB_CASES_MAX);
            bi[i] = b->v[i].batch;
            I[i] = b->v[i].inter;
            U[i] = b->v[i].uni;
            io[i] = b->v[i].iou;
            di[i] = b->v[i].dice;
        }
        if (rc == 0) {
            hid_t t1 = str_type(SB_NAME_MAX), t2 = str_type(SB_CASES_MAX);
            rc |= write_col(g, "dataset", t1, 1, d, s1);
            rc |= write_col(g, "cases", t2, 1, d, s2);
            rc |= write_col(g, "batch", H5T_NATIVE_INT32, 1, d, bi);
            rc |= write_col(g, "intersection", H5T_NATIVE_INT64, 1, d, I);
            rc |= write_col(g, "union", H5T_NATIVE_INT64, 1, d, U);
            rc |= write_col(g, "iou", H5T_NATIVE_DOUBLE, 1, d, io);
            rc |= write_col(g, "dice", H5T_NATIVE_DOUBLE, 1, d, di);
            H5Tclose(t1);
            H5Tclose(t2);
        }
        free(s1);
        free(s2);
        free(bi);
        free(I);
        free(U);
        free(io);
        free(di);
        if (g >= 0)
            H5Gclose(g);
    }
    if (rc == 0) {
        char num[64];
        rc |= set_attr(f, "model", p->model);
        rc |= set_attr(f, "checkpoint", p->checkpoint);
        rc |= set_attr(f, "checkpoint_sha256", p->checkpoint_sha256);
        rc |= set_attr(f, "memory_bank", p->bank);
        rc |= set_attr(f, "memory_bank_sha256", p->bank_sha256);
        rc |= set_attr(f, "source", p->source);
        rc |= set_attr(f, "protocol", p->protocol);
        rc |= set_attr(f, "options", p->options);
        rc |= set_attr(f, "version", p->version);
        rc |= set_attr(f, "hosts", p->hosts);
        rc |= set_attr(f, "published_dice", p->published);
        snprintf(num, sizeof num, "%d", p->ranks);
        rc |= set_attr(f, "ranks", num);
        snprintf(num, sizeof num, "%d", p->threads);
        rc |= set_attr(f, "threads", num);
        snprintf(num, sizeof num, "%.3f", p->wall_seconds);
        rc |= set_attr(f, "wall_seconds", num);
        snprintf(num, sizeof num, "%.0f", p->start_time);
        rc |= set_attr(f, "start_time", num);
        snprintf(num, sizeof num, "%.0f", p->seed);
        rc |= set_attr(f, "seed", num);
        rc |= set_attr(f, "empty_policy", sb_empty_policy_name(p->empty_policy));
    }
    if (H5Fclose(f) < 0)
        rc = -1;
    if (rc != 0) {
        remove(tmp);
        return sb_fail(err, SB_EIO, "%s: writing results failed", path);
    }
    if (rename(tmp, path) != 0)
        return sb_fail(err, SB_EIO, "%s: cannot rename %s into place", path, tmp);
    return SB_OK;
}

/* ---- read back -------------------------------------------------------------- */
static int read_col(hid_t g, const char *name, hid_t mtype, void *buf)
{
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    hid_t sp = H5Dget_space(ds);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    int ok = n == 0 || H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
    H5Sclose(sp);
    H5Dclose(ds);
    return ok ? 0 : -1;
}

static long col_len(hid_t g, const char *name)
{
    hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    hid_t sp = H5Dget_space(ds);
    hsize_t d[2] = {0, 0};
    int r = H5Sget_simple_extent_dims(sp, d, NULL);
    H5Sclose(sp);
    H5Dclose(ds);
    return r < 1 ? -1 : (long)d[0];
}

static int read_recs(hid_t f, const char *group, sb_recs *recs, const char *path, sb_error *err)
{
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    if (g < 0)
        return sb_fail(err, SB_EKEY, "%s: no group /%s (not a sambench results file?)", path, group);
    long n = col_len(g, "dataset");
    if (n < 0) {
        H5Gclose(g);
        return sb_fail(err, SB_EFORMAT, "%s: /%s/dataset missing", path, group);
    }
    size_t first = recs->n;
    for (long i = 0; i < n; i++)
        if (!sb_recs_push(recs)) {
            H5Gclose(g);
            return sb_fail(err, SB_ENOMEM, "out of memory");
        }
    size_t nn = n ? (size_t)n : 1;
    int rc = SB_OK;
    for (size_t c = 0; c < NCOLS && rc == SB_OK; c++) {
        const col *cl = &rec_cols[c];
        if (col_len(g, cl->name) != n) {
            rc = sb_fail(err, SB_EFORMAT, "%s: /%s/%s missing or of the wrong length", path, group, cl->name);
            break;
        }
        size_t es = cl->kind == 's' ? cl->size : cl->kind == 'b' ? 16 : cl->size;
        char *buf = calloc(nn, es);
        if (!buf) {
            rc = sb_fail(err, SB_ENOMEM, "out of memory");
            break;
        }
        hid_t t = cl->kind == 's' ? str_type(cl->size)
                  : cl->kind == 'i' ? H5T_NATIVE_INT32
                  : cl->kind == 'l' ? H5T_NATIVE_INT64
                  : cl->kind == 'd' ? H5T_NATIVE_DOUBLE
                                    : H5T_NATIVE_FLOAT;
        if (read_col(g, cl->name, t, buf) != 0)
            rc = sb_fail(err, SB_EFORMAT, "%s: cannot read /%s/%s", path, group, cl->name);
        else
            for (long i = 0; i < n; i++) {
                memcpy((char *)&recs->v[first + (size_t)i] + cl->off, buf + (size_t)i * es, es);
                if (cl->kind == 's')
                    ((char *)&recs->v[first + (size_t)i])[cl->off + cl->size - 1] = '\0';
            }
        if (cl->kind == 's')
            H5Tclose(t);
        free(buf);
    }
    H5Gclose(g);
    return rc;
}

int sb_results_read(const char *path, sb_recs *recs, sb_batches *b, sb_prov *p, sb_error *err)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    memset(recs, 0, sizeof *recs);
    if (b)
        memset(b, 0, sizeof *b);
    memset(p, 0, sizeof *p);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return sb_fail(err, SB_EIO, "%s: cannot open as HDF5 (missing or not a results file)", path);
    int rc = read_recs(f, "cases", recs, path, err);
    if (rc == SB_OK)
        rc = read_recs(f, "slices", recs, path, err);
    if (rc == SB_OK && b) {
        hid_t g = H5Gopen2(f, "batches", H5P_DEFAULT);
        long n = g >= 0 ? col_len(g, "dataset") : -1;
        if (n < 0)
            rc = sb_fail(err, SB_EFORMAT, "%s: /batches missing", path);
        size_t nn = n > 0 ? (size_t)n : 1;
        char *s1 = calloc(nn, SB_NAME_MAX), *s2 = calloc(nn, SB_CASES_MAX);
        int32_t *bi = calloc(nn, 4);
        int64_t *I = calloc(nn, 8), *U = calloc(nn, 8);
        double *io = calloc(nn, 8), *di = calloc(nn, 8);
        if (rc == SB_OK) {
            hid_t t1 = str_type(SB_NAME_MAX), t2 = str_type(SB_CASES_MAX);
            int bad = !s1 || !s2 || !bi || !I || !U || !io || !di;
            bad = bad || read_col(g, "dataset", t1, s1) || read_col(g, "cases", t2, s2) ||
                  read_col(g, "batch", H5T_NATIVE_INT32, bi) ||
                  read_col(g, "intersection", H5T_NATIVE_INT64, I) ||
                  read_col(g, "union", H5T_NATIVE_INT64, U) || read_col(g, "iou", H5T_NATIVE_DOUBLE, io) ||
                  read_col(g, "dice", H5T_NATIVE_DOUBLE, di);
            H5Tclose(t1);
            H5Tclose(t2);
            if (bad)
                rc = sb_fail(err, SB_EFORMAT, "%s: cannot read /batches", path);
            for (long i = 0; rc == SB_OK && i < n; i++) {
                sb_batch_rec *x = sb_batches_push(b);
                if (!x) {
                    rc = sb_fail(err, SB_ENOMEM, "out of memory");
                    break;
                }
                memcpy(x->dataset, s1 + (size_t)i * SB_NAME_MAX, SB_NAME_MAX);
                x->dataset[SB_NAME_MAX - 1] = '\0';
                memcpy(x->cases, s2 + (size_t)i * SB_CASES_MAX, SB_CASES_MAX);
                x->cases[SB_CASES_MAX - 1] = '\0';
                x->batch = bi[i];
                x->inter = I[i];
                x->uni = U[i];
                x->iou = io[i];
                x->dice = di[i];
            }
        }
        free(s1);
        free(s2);
        free(bi);
        free(I);
        free(U);
        free(io);
        free(di);
        if (g >= 0)
            H5Gclose(g);
    }
    if (rc == SB_OK) {
        char num[64];
        get_attr(f, "model", p->model, sizeof p->model);
        get_attr(f, "checkpoint", p->checkpoint, sizeof p->checkpoint);
        get_attr(f, "checkpoint_sha256", p->checkpoint_sha256, sizeof p->checkpoint_sha256);
        get_attr(f, "memory_bank", p->bank, sizeof p->bank);
        get_attr(f, "memory_bank_sha256", p->bank_sha256, sizeof p->bank_sha256);
        get_attr(f, "source", p->source, sizeof p->source);
        get_attr(f, "protocol", p->protocol, sizeof p->protocol);
        get_attr(f, "options", p->options, sizeof p->options);
        get_attr(f, "version", p->version, sizeof p->version);
        get_attr(f, "hosts", p->hosts, sizeof p->hosts);
        get_attr(f, "published_dice", p->published, sizeof p->published);
        if (get_attr(f, "ranks", num, sizeof num) == 0)
            p->ranks = atoi(num);
        if (get_attr(f, "threads", num, sizeof num) == 0)
            p->threads = atoi(num);
        if (get_attr(f, "wall_seconds", num, sizeof num) == 0)
            p->wall_seconds = atof(num);
        if (get_attr(f, "start_time", num, sizeof num) == 0)
            p->start_time = atof(num);
        if (get_attr(f, "seed", num, sizeof num) == 0)
            p->seed = atof(num);
        if (get_attr(f, "empty_policy", num, sizeof num) == 0)
            sb_run_parse_empty_policy(num, &p->empty_policy);
        if (!p->model[0])
            rc = sb_fail(err, SB_EFORMAT, "%s: no provenance (attribute 'model' missing)", path);
    }
    H5Fclose(f);
    if (rc != SB_OK) {
        sb_recs_free(recs);
        if (b)
            sb_batches_free(b);
        return rc;
    }
    sb_recs_sort(recs);
    return SB_OK;
}
