/*
 * Medical Segmentation Decathlon layout (data.h):
 *   FOLDER/dataset.json   {"training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, ...]}
 *   FOLDER/imagesTr/, FOLDER/labelsTr/
 * Without dataset.json, the .nii[.gz] files of imagesTr/ (hidden "._" files skipped) pair
 * with labelsTr/ files of the same name. A manifest `split` names a file of
 * case ids (one per line) restricting the cases.
 *
 * A case: the image (3-D, or 4-D with the manifest's channel) and its label
 * volume (same i,j,k size), read with pipeline/nifti.h; the intensity rule
 * maps the channel volume to uint8 (MedSAM's pre-processing convention):
 *   ct_window:  clip to [level - width/2, level + width/2], then
 *               (x - min) / (max - min) * 255 over the clipped volume, truncated;
 *   percentile: lo, hi = the pct_lo / pct_hi percentiles (numpy's linear
 *               interpolation) of the voxels > 0, clip, (x - min)/(max - min)
 *               * 255, truncated; voxels that were 0 stay 0;
 *   none:       clamp to 0..255, truncated.
 * (scl_slope/scl_inter applied first; a constant volume gives zeros.)
 * Slices along slice_axis (0, 1, 2 = NIfTI i, j, k): for axis 2 a slice has
 * rows j and columns i (the (z, y, x) array order SimpleITK and MedSAM use);
 * axis 1: rows k, columns i; axis 0: rows k, columns j. The label becomes a
 * binary target: 255 where the value is one of label_ids, else 0.
 */
#include "data_internal.h"

#include "nifti.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- a minimal JSON reader: enough for dataset.json's "training" list ---- */

typedef struct {
    const char *s, *end;
    int depth;
} js;

static void ws(js *j)
{
    while (j->s < j->end && isspace((unsigned char)*j->s))
        j->s++;
}

/* Parses a string into buf (escapes \" \\ \/ kept literally simple). */
static int jstr(js *j, char *buf, size_t cap)
{
    ws(j);
    if (j->s >= j->end || *j->s != '"')
        return -1;
    j->s++;
    size_t k = 0;
    while (j->s < j->end && *j->s != '"') {
        char ch = *j->s++;
        if (ch == '\\' && j->s < j->end) {
            ch = *j->s++;
            if (ch == 'n')
                ch = '\n';
            else if (ch == 't')
                ch = '\t';
            else if (ch == 'u') { /* keep \uXXXX out of paths: replace by '?' */
                for (int q = 0; q < 4 && j->s < j->end; q++)
                    j->s++;
                ch = '?';
            }
        }
        if (buf && k + 1 < cap)
            buf[k++] = ch;
    }
    if (j->s >= j->end)
        return -1;
    j->s++;
    if (buf)
        buf[k] = '\0';
    return 0;
}

static int jskip(js *j);

static int jskip_container(js *j, char open, char close)
{
    if (++j->depth > 64)
        return -1;
    j->s++; /* open */
    ws(j);
    if (j->s < j->end && *j->s == close) {
        j->s++;
        j->depth--;
        return 0;
    }
    for (;;) {
        if (open == '{') {
            if (jstr(j, NULL, 0))
                return -1;
            ws(j);
            if (j->s >= j->end || *j->s != ':')
                return -1;
            j->s++;
        }
        if (jskip(j))
            return -1;
        ws(j);
        if (j->s < j->end && *j->s == ',') {
            j->s++;
            continue;
        }
        if (j->s < j->end && *j->s == close) {
            j->s++;
            j->depth--;
            return 0;
        }
        return -1;
    }
}

static int jskip(js *j)
{
    ws(j);
    if (j->s >= j->end)
        return -1;
    if (*j->s == '"')
        return jstr(j, NULL, 0);
    if (*j->s == '{')
        return jskip_container(j, '{', '}');
    if (*j->s == '[')
        return jskip_container(j, '[', ']');
    while (j->s < j->end && *j->s != ',' && *j->s != '}' && *j->s != ']' && !isspace((unsigned char)*j->s))
        j->s++;
    return 0;
}

typedef struct {
    char image[1024], label[1024];
} msd_pair;

/* Reads dataset.json's "training" entries. Returns count, -1 on a parse error. */
static int read_training(const char *text, size_t len, msd_pair **out)
{
    js j = {text, text + len, 0};
    *out = NULL;
    ws(&j);
    if (j.s >= j.end || *j.s != '{')
        return -1;
    j.s++;
    for (;;) {
        char key[256];
        ws(&j);
        if (j.s < j.end && *j.s == '}')
            return 0;
        if (jstr(&j, key, sizeof key))
            return -1;
        ws(&j);
        if (j.s >= j.end || *j.s != ':')
            return -1;
        j.s++;
        ws(&j);
        if (strcmp(key, "training") == 0 && j.s < j.end && *j.s == '[') {
            j.s++;
            msd_pair *v = NULL;
            int n = 0, cap = 0;
            for (;;) {
                ws(&j);
                if (j.s < j.end && *j.s == ']') {
                    *out = v;
                    return n;
                }
                if (j.s >= j.end || *j.s != '{')
                    break;
                j.s++;
                if (n == cap) {
                    cap = cap ? 2 * cap : 64;
                    msd_pair *nv = realloc(v, sizeof *nv * (size_t)cap);
                    if (!nv)
                        break;
                    v = nv;
                }
                msd_pair *p = &v[n];
                memset(p, 0, sizeof *p);
                int bad = 0;
                for (;;) {
                    char k2[64];
                    ws(&j);
                    if (j.s < j.end && *j.s == '}') {
                        j.s++;
                        break;
                    }
                    if (jstr(&j, k2, sizeof k2)) {
                        bad = 1;
                        break;
                    }
                    ws(&j);
                    if (j.s >= j.end || *j.s != ':') {
                        bad = 1;
                        break;
                    }
                    j.s++;
                    ws(&j);
                    if (!strcmp(k2, "image") && j.s < j.end && *j.s == '"')
                        bad = jstr(&j, p->image, sizeof p->image);
                    else if (!strcmp(k2, "label") && j.s < j.end && *j.s == '"')
                        bad = jstr(&j, p->label, sizeof p->label);
                    else
                        bad = jskip(&j);
                    if (bad)
                        break;
                    ws(&j);
                    if (j.s < j.end && *j.s == ',')
                        j.s++;
                }
                if (bad)
                    break;
                n++;
                ws(&j);
                if (j.s < j.end && *j.s == ',')
                    j.s++;
            }
            free(v);
            return -1;
        }
        if (jskip(&j))
            return -1;
        ws(&j);
        if (j.s < j.end && *j.s == ',')
            j.s++;
    }
}

static void case_id_of(const char *path, char *id, size_t cap)
{
    const char *b = strrchr(path, '/');
    snprintf(id, cap, "%s", b ? b + 1 : path);
    size_t n = strlen(id);
    if (n > 7 && !strcmp(id + n - 7, ".nii.gz"))
        id[n - 7] = '\0';
    else if (n > 4 && !strcmp(id + n - 4, ".nii"))
        id[n - 4] = '\0';
}

static int cmp_pair(const void *a, const void *b)
{
    const msd_pair *x = a, *y = b;
    char i1[512], i2[512];
    case_id_of(x->image, i1, sizeof i1);
    case_id_of(y->image, i2, sizeof i2);
    return strcmp(i1, i2);
}

static void join(char *dst, size_t cap, const char *folder, const char *rel)
{
    if (rel[0] == '/')
        snprintf(dst, cap, "%s", rel);
    else
        snprintf(dst, cap, "%s/%s", folder, rel[0] == '.' && rel[1] == '/' ? rel + 2 : rel);
}

int sb_data_list_msd(sb_data *d, dset *s, const char *folder)
{
    const char *name = s->spec.name;
    char path[2048];
    snprintf(path, sizeof path, "%s/dataset.json", folder);
    msd_pair *pairs = NULL;
    int n = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *text = len > 0 && len < (64L << 20) ? malloc((size_t)len) : NULL;
        size_t got = text ? fread(text, 1, (size_t)len, f) : 0;
        fclose(f);
        n = text && got == (size_t)len ? read_training(text, (size_t)len, &pairs) : -1;
        free(text);
        if (n < 0) {
            sb_data_note(d, name, "", path, "corrupt dataset.json (no readable \"training\" list)", 1);
            return SB_OK;
        }
    } else {
        char dir[2048];
        snprintf(dir, sizeof dir, "%s/imagesTr", folder);
        DIR *dd = opendir(dir);
        if (!dd) {
            sb_data_note(d, name, "", folder, "neither dataset.json nor imagesTr/ found (empty dataset)", 1);
            return SB_OK;
        }
        int cap = 0;
        struct dirent *de;
        while ((de = readdir(dd))) {
            size_t l = strlen(de->d_name);
            if (de->d_name[0] == '.' || !((l > 7 && !strcmp(de->d_name + l - 7, ".nii.gz")) ||
                                          (l > 4 && !strcmp(de->d_name + l - 4, ".nii"))))
                continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                msd_pair *np = realloc(pairs, sizeof *np * (size_t)cap);
                if (!np)
                    break;
                pairs = np;
            }
            snprintf(pairs[n].image, sizeof pairs[n].image, "imagesTr/%s", de->d_name);
            snprintf(pairs[n].label, sizeof pairs[n].label, "labelsTr/%s", de->d_name);
            n++;
        }
        closedir(dd);
    }
    if (n > 0)
        qsort(pairs, (size_t)n, sizeof *pairs, cmp_pair);
    /* optional split file of case ids */
    char **want = NULL;
    int nw = 0;
    if (s->spec.split[0]) {
        char sp[2048];
        snprintf(sp, sizeof sp, "%s/%s", folder, s->spec.split);
        FILE *sf = fopen(sp, "r");
        if (!sf) {
            sb_data_note(d, name, "", sp, "split file missing or unreadable", 1);
            free(pairs);
            return SB_OK;
        }
        char line[1024];
        int cap = 0;
        while (fgets(line, sizeof line, sf)) {
            char *p = line;
            while (isspace((unsigned char)*p))
                p++;
            size_t l = strlen(p);
            while (l && isspace((unsigned char)p[l - 1]))
                p[--l] = '\0';
            if (!l)
                continue;
            char id[512];
            case_id_of(p, id, sizeof id);
            if (nw == cap) {
                cap = cap ? 2 * cap : 64;
                char **nw2 = realloc(want, sizeof *nw2 * (size_t)cap);
                if (!nw2)
                    break;
                want = nw2;
            }
            want[nw++] = strdup(id);
        }
        fclose(sf);
        for (int w = 0; w < nw; w++) {
            int found = 0;
            for (int i = 0; i < n && !found; i++) {
                char id[512];
                case_id_of(pairs[i].image, id, sizeof id);
                found = !strcmp(id, want[w]);
            }
            if (!found) {
                char fp[2048];
                snprintf(fp, sizeof fp, "%s/imagesTr/%s.nii.gz", folder, want[w]);
                sb_data_note(d, name, want[w], fp, "split file names a case that does not exist", 0);
            }
        }
    }
    const int before = s->ncases;
    for (int i = 0; i < n; i++) {
        char id[512];
        case_id_of(pairs[i].image, id, sizeof id);
        if (want) {
            int keep = 0;
            for (int w = 0; w < nw && !keep; w++)
                keep = !strcmp(want[w], id);
            if (!keep)
                continue;
        }
        char ip[2048], lp[2048];
        join(ip, sizeof ip, folder, pairs[i].image);
        join(lp, sizeof lp, folder, pairs[i].label);
        if (!file_exists(ip)) {
            sb_data_note(d, name, id, ip, "dataset.json names a missing image file", 0);
            continue;
        }
        if (!pairs[i].label[0] || !file_exists(lp)) {
            sb_data_note(d, name, id, lp, "missing label volume for the image", 0);
            continue;
        }
        dcase *c = sb_data_add_case(s, id);
        if (!c)
            break;
        c->img = calloc(1, sizeof(char *));
        c->msk = calloc(1, sizeof(char *));
        if (c->img)
            c->img[0] = strdup(ip);
        if (c->msk)
            c->msk[0] = strdup(lp);
        c->nslices = -1;
        snprintf(c->folder, sizeof c->folder, "%s", folder);
    }
    if (s->ncases == before)
        sb_data_note(d, name, "", folder, "no usable case (empty dataset)", 1);
    for (int w = 0; w < nw; w++)
        free(want[w]);
    free(want);
    free(pairs);
    return SB_OK;
}

/* ---- intensity ---------------------------------------------------------- */
/*
 * Compiled without FMA contraction: the reference (numpy) rounds every
 * multiply and add separately.
 */
#pragma GCC push_options
#pragma GCC target("no-fma")
#pragma GCC optimize("fp-contract=off")

/* Voxel values: an array, or a NIfTI channel with scl_slope/scl_inter. */
typedef struct {
    const double *arr;
    const sb_nifti *im;
    int64_t off;
    double slope, inter;
    int scale;
} vsrc;

static inline double vget(const vsrc *s, int64_t i)
{
    if (s->arr)
        return s->arr[i];
    double r = sb_nifti_get(s->im, s->off + i);
    return s->scale ? r * s->slope + s->inter : r;
}

static void swap_d(double *a, double *b)
{
    double t = *a;
    *a = *b;
    *b = t;
}

/* k-th smallest of v[0..n) (reorders v; afterwards every v[i > k] >= v[k]). */
static double select_kth(double *v, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot)
                i++;
            while (v[j] > pivot)
                j--;
            if (i <= j) {
                swap_d(&v[i], &v[j]);
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return v[k];
    }
    return v[k];
}

/* numpy.percentile(..., method='linear') of v[0..n) (reorders v). */
static double percentile(double *v, int64_t n, double q)
{
    double pos = q / 100.0 * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos);
    if (lo < 0)
        lo = 0;
    if (lo > n - 1)
        lo = n - 1;
    double t = pos - (double)lo;
    double a = select_kth(v, n, lo);
    if (lo + 1 >= n || t == 0.0)
        return a;
    double b = v[lo + 1]; /* the right part holds values >= a: its minimum is the next order statistic */
    for (int64_t i = lo + 1; i < n; i++)
        if (v[i] < b)
            b = v[i];
    double diff = b - a;
    return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t; /* numpy's _lerp */
}

typedef struct {
    int rule;
    double lo, hi, mn, range;
} iplan;

/* The rule's constants for the n voxels of src; -1 when out of memory, -2
 * when a voxel is NaN or infinite (bad input, reported by the caller). */
static int plan_make(const sb_dataset_spec *spec, const vsrc *src, int64_t n, iplan *p)
{
    p->rule = spec->intensity;
    p->lo = p->hi = p->mn = p->range = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(vget(src, i)))
            return -2;
    if (p->rule == SB_INTENSITY_NONE)
        return 0;
    if (p->rule == SB_INTENSITY_CT_WINDOW) {
        p->lo = spec->window_level - spec->window_width / 2.0;
        p->hi = spec->window_level + spec->window_width / 2.0;
    } else {
        int64_t m = 0;
        for (int64_t i = 0; i < n; i++)
            m += vget(src, i) > 0;
        if (m == 0)
            return 0; /* nothing positive: all zeros */
        double *pos = malloc(sizeof(double) * (size_t)m);
        if (!pos)
            return -1;
        int64_t k = 0;
        for (int64_t i = 0; i < n; i++) {
            double x = vget(src, i);
            if (x > 0)
                pos[k++] = x;
        }
        p->lo = percentile(pos, m, spec->pct_lo);
        p->hi = percentile(pos, m, spec->pct_hi);
        free(pos);
    }
    /* min and max of the clipped volume (clipping is monotonic: clip the raw extremes) */
    double mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double x = vget(src, i);
        if (isnan(x))
            x = p->lo;
        mn = x < mn ? x : mn;
        mx = x > mx ? x : mx;
    }
    mn = mn < p->lo ? p->lo : mn > p->hi ? p->hi : mn;
    mx = mx < p->lo ? p->lo : mx > p->hi ? p->hi : mx;
    p->mn = mn;
    p->range = mx - mn;
    return 0;
}

static inline uint8_t plan_map(const iplan *p, double x)
{
    if (p->rule == SB_INTENSITY_NONE)
        return !(x > 0) ? 0 : x >= 255 ? 255 : (uint8_t)x;
    if (p->rule == SB_INTENSITY_PERCENTILE && (x == 0 || p->range == 0))
        return 0;
    double v = isnan(x) ? p->lo : x < p->lo ? p->lo : x > p->hi ? p->hi : x;
    double y = p->range > 0 ? (v - p->mn) / p->range * 255.0 : 0.0;
    return y <= 0 ? 0 : y >= 255 ? 255 : (uint8_t)y;
}

void sb_intensity_to_u8(const sb_dataset_spec *spec, const double *x, int64_t n, uint8_t *out)
{
    vsrc src = {.arr = x};
    iplan p;
    if (plan_make(spec, &src, n, &p) != 0) {
        memset(out, 0, (size_t)n);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        out[i] = plan_map(&p, x[i]);
}

/* ---- loading ------------------------------------------------------------ */

int sb_data_load_msd(const dset *s, const dcase *c, sb_volume *v, sb_error *err)
{
    const sb_dataset_spec *sp = &s->spec;
    sb_nifti im, lb;
    memset(&im, 0, sizeof im);
    memset(&lb, 0, sizeof lb);
    int rc = sb_nifti_read(&im, c->img[0], err);
    if (rc != SB_OK)
        return rc;
    rc = sb_nifti_read(&lb, c->msk[0], err);
    if (rc != SB_OK) {
        sb_nifti_free(&im);
        return rc;
    }
    uint8_t *keep = NULL;
    const int64_t n0 = im.dim[1], n1 = im.ndim >= 2 ? im.dim[2] : 1, n2 = im.ndim >= 3 ? im.dim[3] : 1;
    const int64_t nch = im.ndim >= 4 ? im.dim[4] : 1;
    const int64_t nvox3 = n0 * n1 * n2;
    if (im.nvox != nvox3 * nch) {
        rc = sb_fail(err, SB_EUNSUPPORTED, "%s: %d-D image with more than one channel axis", c->img[0], im.ndim);
        goto done;
    }
    if (sp->channel < 0 || sp->channel >= nch) {
        rc = sb_fail(err, SB_ESHAPE, "%s: channel %d requested but the image has %lld", c->img[0], sp->channel,
                     (long long)nch);
        goto done;
    }
    if (lb.dim[1] != n0 || (lb.ndim >= 2 ? lb.dim[2] : 1) != n1 || (lb.ndim >= 3 ? lb.dim[3] : 1) != n2 ||
        lb.nvox != nvox3) {
        rc = sb_fail(err, SB_ESHAPE, "%s: label is %lldx%lldx%lld (%lld voxels) but the image %s is %lldx%lldx%lld",
                     c->msk[0], (long long)lb.dim[1], (long long)lb.dim[2], (long long)lb.dim[3],
                     (long long)lb.nvox, c->img[0], (long long)n0, (long long)n1, (long long)n2);
        goto done;
    }
    vsrc src = {.im = &im, .off = nvox3 * sp->channel, .slope = im.scl_slope, .inter = im.scl_inter};
    src.scale = isfinite(src.slope) && src.slope != 0.0; /* slope 0 or non-finite: no scaling (NIfTI standard) */
    if (!isfinite(src.inter))
        src.inter = 0;
    iplan plan;
    int prc = plan_make(sp, &src, nvox3, &plan);
    if (prc == -2) {
        rc = sb_fail(err, SB_ENUMERIC, "%s: NaN or infinite voxel values in channel %d", c->img[0], sp->channel);
        goto done;
    }
    if (prc != 0) {
        rc = sb_fail(err, SB_ENOMEM, "%s: out of memory for the intensity percentiles", c->img[0]);
        goto done;
    }
    int64_t Z, H, W, sz, sy, sx; /* strides of slice, row and column in the i,j,k volume */
    double px, py, pz;
    if (sp->slice_axis == 2) {
        Z = n2; H = n1; W = n0; sz = n0 * n1; sy = n0; sx = 1;
        px = im.pixdim[1]; py = im.pixdim[2]; pz = im.pixdim[3];
    } else if (sp->slice_axis == 1) {
        Z = n1; H = n2; W = n0; sz = n0; sy = n0 * n1; sx = 1;
        px = im.pixdim[1]; py = im.pixdim[3]; pz = im.pixdim[2];
    } else {
        Z = n0; H = n2; W = n1; sz = 1; sy = n0 * n1; sx = n0;
        px = im.pixdim[2]; py = im.pixdim[3]; pz = im.pixdim[1];
    }
    if (H > SB_MAX_SIDE_DATA || W > SB_MAX_SIDE_DATA || Z > 1000000) {
        rc = sb_fail(err, SB_EUNSUPPORTED, "%s: %lld slices of %lldx%lld are too large", c->img[0], (long long)Z,
                     (long long)W, (long long)H);
        goto done;
    }
    /* which slices to keep: only those with a target voxel when nonempty_only (decided before
     * allocating, so a 500-slice CT with a small organ costs only its labelled slices) */
    keep = malloc((size_t)Z + 1);
    if (!keep) {
        rc = sb_fail(err, SB_ENOMEM, "%s: out of memory", c->img[0]);
        goto done;
    }
    int64_t nkeep = 0;
    for (int64_t z = 0; z < Z; z++) {
        int any = !sp->nonempty_only;
        for (int64_t y = 0; y < H && !any; y++)
            for (int64_t x = 0; x < W && !any; x++) {
                double lv = sb_nifti_get(&lb, z * sz + y * sy + x * sx);
                for (int k = 0; k < sp->nlabels && !any; k++)
                    any = lv == (double)sp->label_ids[k];
            }
        keep[z] = (uint8_t)any;
        nkeep += any;
    }
    if (nkeep == 0) {
        rc = sb_fail(err, SB_EFORMAT, "%s: no slice with a non-empty label (nonempty_only; label ids in %s)", c->msk[0],
                     c->msk[0]);
        goto done;
    }
    rc = sb_volume_alloc(v, (int)nkeep, (int)H, (int)W, err);
    if (rc != SB_OK)
        goto done;
    {
        const char *base = strrchr(c->img[0], '/');
        base = base ? base + 1 : c->img[0];
        int out = 0;
        for (int64_t z = 0; z < Z; z++) {
            if (!keep[z])
                continue;
            uint8_t *rgb = v->rgb + (size_t)out * H * W * 3;
            uint8_t *m = v->mask + (size_t)out * H * W;
            for (int64_t y = 0; y < H; y++)
                for (int64_t xx = 0; xx < W; xx++) {
                    const int64_t idx = z * sz + y * sy + xx * sx;
                    const uint8_t g = plan_map(&plan, vget(&src, idx));
                    uint8_t *p = rgb + (y * W + xx) * 3;
                    p[0] = p[1] = p[2] = g;
                    const double lv = sb_nifti_get(&lb, idx);
                    int hit = 0;
                    for (int k = 0; k < sp->nlabels && !hit; k++)
                        hit = lv == (double)sp->label_ids[k];
                    m[y * W + xx] = hit ? 255 : 0;
                }
            v->slice_index[out] = z;
            char nm[1200];
            snprintf(nm, sizeof nm, "%s#%c=%lld", base, "ijk"[sp->slice_axis], (long long)z);
            v->slice_names[out] = strdup(nm);
            out++;
        }
    }
    v->spacing[0] = fabs(px);
    v->spacing[1] = fabs(py);
    v->spacing[2] = fabs(pz);
    snprintf(v->source, sizeof v->source, "%s", c->img[0]);
done:
    free(keep);
    sb_nifti_free(&im);
    sb_nifti_free(&lb);
    return rc;
}

#pragma GCC pop_options
