/*
 * Data collections (data.h): opening from a manifest / MedBank root / shard
 * directory, and the MedBank PNG layout (the NIfTI layout is data_nifti.c,
 * shards data_shard.c, what all three share data_common.c).
 *
 * MedBank layout (docs/MEDBANK.md of the published code):
 *   ROOT/<ObjectofInterest>_<Modality>_<ID>/{image,mask}/<name>.png + train/val/test.txt
 * A split entry is resolved like the published loader (which drops the first
 * two characters, "./", and joins the rest to its data path): we drop a
 * leading "./" and try, in order, <folder>/<entry>, <data root>/<entry> and
 * <folder>/image/<entry>. The mask is the image path with its last "/image/"
 * replaced by "/mask/" (the loader replaces every "/image/"; the last one is
 * the same for every sane path and cannot hit a parent folder named image).
 * Entries are sorted lexicographically, as the loader does. Names
 * <case>_slice_<NNN>.png group into case <case> ordered by NNN; any other
 * name is a one-slice case named by its file stem.
 */
#include "data_internal.h"

#include "cli.h"
#include "png_io.h"

#include <ctype.h>
#include <dirent.h>
#include <glob.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int dir_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static dset *add_dataset(sb_data *d, const sb_dataset_spec *spec)
{
    if (d->n == d->cap) {
        int nc = d->cap ? 2 * d->cap : 16;
        dset *n = realloc(d->d, sizeof *n * (size_t)nc);
        if (!n)
            return NULL;
        d->d = n;
        d->cap = nc;
    }
    dset *s = &d->d[d->n++];
    memset(s, 0, sizeof *s);
    s->spec = *spec;
    s->shard = -1;
    return s;
}

void sb_data_free(sb_data *d)
{
    if (!d)
        return;
    for (int i = 0; i < d->n; i++) {
        for (int c = 0; c < d->d[i].ncases; c++)
            sb_data_case_free(&d->d[i].cases[c]);
        free(d->d[i].cases);
        if (d->d[i].shard >= 0)
            H5Fclose(d->d[i].shard);
    }
    free(d->d);
    free(d->p);
    free(d);
}

/* ---- MedBank listing ---------------------------------------------------- */

typedef struct {
    char *entry;  /* split line as written (after strip) */
    char *img;    /* resolved image path ("" if missing) */
    char *stem;   /* case id */
    int64_t sidx; /* slice number, or -1 for a one-slice case */
} mb_entry;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int cmp_entry(const void *a, const void *b)
{
    const mb_entry *x = a, *y = b;
    int c = strcmp(x->stem, y->stem);
    if (c)
        return c;
    if (x->sidx != y->sidx)
        return x->sidx < y->sidx ? -1 : 1;
    return strcmp(x->entry, y->entry);
}

/* "<case>_slice_<digits>.png" -> case, number; else stem, -1 */
static void parse_slice_name(const char *path, char *stem, size_t cap, int64_t *sidx)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(stem, cap, "%s", b);
    size_t len = strlen(stem);
    if (len > 4 && strcasecmp(stem + len - 4, ".png") == 0)
        stem[len -= 4] = '\0';
    *sidx = -1;
    char *u = NULL;
    for (char *p = strstr(stem, "_slice_"); p; p = strstr(p + 1, "_slice_"))
        u = p;
    if (u && u > stem && u[7]) {
        char *q = u + 7;
        int digits = 1;
        for (char *r = q; *r; r++)
            digits &= isdigit((unsigned char)*r) != 0;
        if (digits) {
            *sidx = strtoll(q, NULL, 10);
            *u = '\0';
        }
    }
}

static char *mask_path_of(const char *img)
{
    const char *hit = NULL;
    for (const char *p = strstr(img, "/image/"); p; p = strstr(p + 1, "/image/"))
        hit = p;
    if (!hit)
        return NULL;
    size_t pre = (size_t)(hit - img);
    size_t n = strlen(img) + 2;
    char *m = malloc(n);
    if (!m)
        return NULL;
    snprintf(m, n, "%.*s/mask/%s", (int)pre, img, hit + 7);
    return m;
}

/* Resolves a split entry to an image path. Rules: 0 absolute, 1 <folder>/e,
 * 2 <root>/e, 3 <folder>/image/e. *rule (-1 = unknown) is the rule that
 * worked for an earlier entry of the folder: it is tried first, and with
 * nostat it is applied without touching the file system. */
static char *resolve_entry(const char *folder, const char *root, const char *entry, int *rule, int nostat)
{
    const char *e = entry;
    if (e[0] == '.' && e[1] == '/')
        e += 2;
    char buf[4096];
    if (e[0] == '/') {
        snprintf(buf, sizeof buf, "%s", e);
        return nostat || file_exists(buf) ? strdup(buf) : NULL;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int r = 1; r <= 3; r++) {
            if ((pass == 0) != (r == *rule))
                continue;
            if (r == 2 && !root)
                continue;
            if (r == 1)
                snprintf(buf, sizeof buf, "%s/%s", folder, e);
            else if (r == 2)
                snprintf(buf, sizeof buf, "%s/%s", root, e);
            else
                snprintf(buf, sizeof buf, "%s/image/%s", folder, e);
            if ((nostat && r == *rule) || file_exists(buf)) {
                *rule = r;
                return strdup(buf);
            }
        }
    return NULL;
}

/* Lists one MedBank folder into dataset s. prefix_cases: qualify case ids
 * with the folder name (a task spanning several folders). */
static int list_medbank_folder(sb_data *d, dset *s, const char *folder, const char *root, int prefix_cases)
{
    const char *name = s->spec.name;
    char split[2048];
    snprintf(split, sizeof split, "%s/%s", folder, s->spec.split);
    FILE *f = fopen(split, "r");
    if (!f) {
        sb_data_note(d, name, "", split, "split file missing or unreadable", 1);
        return SB_OK;
    }
    mb_entry *e = NULL;
    int n = 0, cap = 0, rule = -1;
    const int nostat = (d->flags & SB_DATA_NO_STAT) != 0;
    char line[4096];
    char **lines = NULL;
    int nl = 0, lcap = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        while (isspace((unsigned char)*p))
            p++;
        size_t len = strlen(p);
        while (len && isspace((unsigned char)p[len - 1]))
            p[--len] = '\0';
        if (!len)
            continue;
        if (nl == lcap) {
            lcap = lcap ? 2 * lcap : 64;
            char **nlns = realloc(lines, sizeof *nlns * (size_t)lcap);
            if (!nlns)
                break;
            lines = nlns;
        }
        lines[nl++] = strdup(p);
    }
    fclose(f);
    if (nl > 0)
        qsort(lines, (size_t)nl, sizeof *lines, cmp_str); /* the published loader sorts */
    cap = nl > 0 ? nl : 1;
    e = calloc((size_t)cap, sizeof *e);
    for (int i = 0; e && i < nl; i++) {
        char stem[512];
        int64_t sidx;
        parse_slice_name(lines[i], stem, sizeof stem, &sidx);
        char id[600];
        if (prefix_cases) {
            const char *fb = strrchr(folder, '/');
            snprintf(id, sizeof id, "%s/%s", fb ? fb + 1 : folder, stem);
        } else {
            snprintf(id, sizeof id, "%s", stem);
        }
        e[n].entry = lines[i];
        e[n].stem = strdup(id);
        e[n].sidx = sidx;
        e[n].img = resolve_entry(folder, root, lines[i], &rule, nostat);
        n++;
    }
    free(lines);
    if (n == 0) {
        sb_data_note(d, name, "", split, "split file lists no images (empty dataset)", 1);
        free(e);
        return SB_OK;
    }
    qsort(e, (size_t)n, sizeof *e, cmp_entry);
    for (int i = 0; i < n;) {
        int j = i + 1;
        if (e[i].sidx >= 0)
            while (j < n && e[j].sidx >= 0 && strcmp(e[j].stem, e[i].stem) == 0)
                j++;
        /* validate every slice of the case */
        char bad_file[4096] = "", reason[256] = "";
        char **masks = calloc((size_t)(j - i), sizeof *masks);
        for (int k = i; k < j && !reason[0]; k++) {
            if (!e[k].img) {
                char tmp[4096];
                snprintf(tmp, sizeof tmp, "%s/%s", folder, e[k].entry);
                snprintf(bad_file, sizeof bad_file, "%s", tmp);
                snprintf(reason, sizeof reason, "split file %s names a missing file", s->spec.split);
                break;
            }
            char *m = mask_path_of(e[k].img);
            if (!m) {
                snprintf(bad_file, sizeof bad_file, "%s", e[k].img);
                snprintf(reason, sizeof reason, "cannot derive the mask path (no /image/ folder in the path)");
            } else if (!nostat && !file_exists(m)) {
                snprintf(bad_file, sizeof bad_file, "%s", m);
                snprintf(reason, sizeof reason, "missing mask for image %s", e[k].img);
            }
            masks[k - i] = m;
        }
        if (reason[0] || !masks) {
            sb_data_note(d, name, e[i].stem, bad_file, masks ? reason : "out of memory", 0);
            for (int k = 0; masks && k < j - i; k++)
                free(masks[k]);
        } else {
            dcase *c = sb_data_add_case(s, e[i].stem);
            if (c) {
                c->nslices = j - i;
                c->img = calloc((size_t)(j - i), sizeof(char *));
                c->msk = masks;
                masks = NULL;
                c->sidx = calloc((size_t)(j - i), sizeof(int64_t));
                snprintf(c->folder, sizeof c->folder, "%s", folder);
                for (int k = i; k < j; k++) {
                    if (c->img)
                        c->img[k - i] = strdup(e[k].img);
                    if (c->sidx)
                        c->sidx[k - i] = e[k].sidx < 0 ? 0 : e[k].sidx;
                }
            }
        }
        free(masks);
        i = j;
    }
    for (int i = 0; i < n; i++) {
        free(e[i].entry);
        free(e[i].img);
        free(e[i].stem);
    }
    free(e);
    return SB_OK;
}

static int list_medbank(sb_data *d, dset *s, const char *root)
{
    char pattern[2048];
    snprintf(pattern, sizeof pattern, "%s/%s", root, s->spec.path);
    glob_t g;
    memset(&g, 0, sizeof g);
    int grc = glob(pattern, GLOB_NOSORT, NULL, &g);
    char **dirs = NULL;
    int nd = 0;
    if (grc == 0) {
        dirs = calloc(g.gl_pathc ? g.gl_pathc : 1, sizeof *dirs);
        for (size_t i = 0; dirs && i < g.gl_pathc; i++)
            if (dir_exists(g.gl_pathv[i]))
                dirs[nd++] = g.gl_pathv[i];
        if (dirs && nd > 0)
            qsort(dirs, (size_t)nd, sizeof *dirs, cmp_str);
    }
    if (nd == 0)
        sb_data_note(d, s->spec.name, "", pattern, "no dataset folder matches (empty dataset)", 1);
    const int before = d->skipped_datasets;
    for (int i = 0; i < nd; i++)
        list_medbank_folder(d, s, dirs[i], root, nd > 1);
    if (nd > 0 && s->ncases == 0 && d->skipped_datasets == before)
        sb_data_note(d, s->spec.name, "", pattern, "no usable case (empty dataset)", 1);
    free(dirs);
    globfree(&g);
    return SB_OK;
}

static int list_dataset(sb_data *d, dset *s, const char *root, const char *shard_dir)
{
    if (shard_dir) {
        s->kind = SRC_SHARD;
        snprintf(s->where, sizeof s->where, "%s/%s.h5", shard_dir, s->spec.name);
        return sb_data_list_shard(d, s, s->where);
    }
    if (s->spec.layout == SB_LAYOUT_MSD) {
        s->kind = SRC_MSD;
        snprintf(s->where, sizeof s->where, "%s/%s", root, s->spec.path);
        return sb_data_list_msd(d, s, s->where);
    }
    s->kind = SRC_MEDBANK;
    snprintf(s->where, sizeof s->where, "%s/%s", root, s->spec.path);
    return list_medbank(d, s, root);
}

int sb_data_open_manifest(sb_data **out, const sb_manifest *m, const char *data_root, const char *shard_dir,
                          int flags, sb_error *err)
{
    *out = NULL;
    sb_data *d = calloc(1, sizeof *d);
    if (!d)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    d->flags = flags;
    if (shard_dir && !dir_exists(shard_dir)) {
        free(d);
        return sb_fail(err, SB_EIO, "%s: shard directory does not exist", shard_dir);
    }
    if (!shard_dir && data_root && !dir_exists(data_root)) {
        free(d);
        return sb_fail(err, SB_EIO, "%s: data root does not exist", data_root);
    }
    for (int i = 0; i < m->n; i++) {
        dset *s = add_dataset(d, &m->d[i]);
        if (!s) {
            sb_data_free(d);
            return sb_fail(err, SB_ENOMEM, "out of memory");
        }
        int rc = list_dataset(d, s, data_root ? data_root : ".", shard_dir);
        if (rc != SB_OK) {
            sb_data_free(d);
            return sb_fail(err, rc, "listing dataset %s failed", m->d[i].name);
        }
    }
    *out = d;
    return SB_OK;
}

int sb_data_open(sb_data **out, const char *manifest_path, const char *data_root, const char *shard_dir,
                 int flags, sb_error *err)
{
    *out = NULL;
    sb_manifest *m;
    int rc = sb_manifest_load(&m, manifest_path, err);
    if (rc != SB_OK)
        return rc;
    char dirbuf[4096];
    if (!data_root) {
        snprintf(dirbuf, sizeof dirbuf, "%s", manifest_path);
        data_root = dirname(dirbuf);
    }
    rc = sb_data_open_manifest(out, m, data_root, shard_dir, flags, err);
    sb_manifest_free(m);
    return rc;
}

int sb_data_open_medbank(sb_data **out, const char *root, const char *split, int flags, sb_error *err)
{
    *out = NULL;
    DIR *dir = opendir(root);
    if (!dir)
        return sb_fail(err, SB_EIO, "%s: cannot open the MedBank root", root);
    sb_data *d = calloc(1, sizeof *d);
    if (!d) {
        closedir(dir);
        return sb_fail(err, SB_ENOMEM, "out of memory");
    }
    d->flags = flags;
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (de->d_name[0] == '.')
            continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", root, de->d_name);
        if (!dir_exists(p))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            char **nn = realloc(names, sizeof *nn * (size_t)cap);
            if (!nn)
                break;
            names = nn;
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(dir);
    if (n > 0)
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        sb_dataset_spec spec;
        sb_dataset_spec_defaults(&spec);
        snprintf(spec.split, sizeof spec.split, "%s", split ? split : "test.txt");
        snprintf(spec.name, sizeof spec.name, "%s", names[i]);
        snprintf(spec.path, sizeof spec.path, "%s", names[i]);
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", names[i]);
        char *u1 = strchr(tmp, '_');
        char *u2 = u1 ? strchr(u1 + 1, '_') : NULL;
        if (u2)
            *u2 = '\0';
        const char *mod = u1 ? sb_modality_canonical(u1 + 1) : NULL;
        char folder[4096];
        snprintf(folder, sizeof folder, "%s/%s", root, names[i]);
        if (!u1 || !mod) {
            char reason[256];
            snprintf(reason, sizeof reason, "unknown modality '%s' (folder names are <ObjectofInterest>_<Modality>_<ID>)",
                     u1 ? u1 + 1 : "");
            sb_data_note(d, names[i], "", folder, reason, 1);
            free(names[i]);
            continue;
        }
        *u1 = '\0';
        snprintf(spec.task, sizeof spec.task, "%s", tmp);
        snprintf(spec.modality, sizeof spec.modality, "%s", mod);
        dset *s = add_dataset(d, &spec);
        if (s) {
            s->kind = SRC_MEDBANK;
            snprintf(s->where, sizeof s->where, "%s", folder);
            list_medbank_folder(d, s, folder, root, 0);
        }
        free(names[i]);
    }
    free(names);
    *out = d;
    return SB_OK;
}

int sb_data_ndatasets(const sb_data *d) { return d->n; }
const sb_dataset_spec *sb_data_dataset(const sb_data *d, int i) { return &d->d[i].spec; }
int sb_data_ncases(const sb_data *d, int i) { return d->d[i].ncases; }
const char *sb_data_case_id(const sb_data *d, int i, int c) { return d->d[i].cases[c].id; }
int sb_data_case_nslices(const sb_data *d, int i, int c) { return d->d[i].cases[c].nslices; }
const char *sb_data_source_kind(const sb_data *d, int i)
{
    static const char *k[] = {"medbank", "msd", "shard"};
    return k[d->d[i].kind];
}
int sb_data_nproblems(const sb_data *d) { return d->np; }
const sb_data_problem *sb_data_problem_at(const sb_data *d, int k) { return &d->p[k]; }
int sb_data_skipped_cases(const sb_data *d) { return d->skipped_cases; }
int sb_data_skipped_datasets(const sb_data *d) { return d->skipped_datasets; }

void sb_data_summary(const sb_data *d, FILE *out)
{
    int64_t cases = 0;
    for (int i = 0; i < d->n; i++)
        cases += d->d[i].ncases;
    fprintf(out, "data: %d datasets, %lld cases listed, %lld slices loaded; skipped %d cases, %d datasets\n", d->n,
            (long long)cases, (long long)d->slices_loaded, d->skipped_cases, d->skipped_datasets);
}

static int load_medbank(const dset *s, const dcase *c, sb_volume *v, sb_error *err)
{
    int rc = SB_OK;
    for (int z = 0; z < c->nslices; z++) {
        uint8_t *rgb = NULL, *l = NULL;
        int w, h, mw, mh;
        rc = sb_png_load_rgb(c->img[z], &rgb, &w, &h, err);
        if (rc != SB_OK)
            break;
        rc = sb_png_load_l(c->msk[z], &l, &mw, &mh, err);
        if (rc != SB_OK) {
            free(rgb);
            break;
        }
        if (mw != w || mh != h) {
            rc = sb_fail(err, SB_ESHAPE, "%s: mask is %dx%d but its image %s is %dx%d", c->msk[z], mw, mh, c->img[z],
                         w, h);
        } else if (z == 0) {
            rc = sb_volume_alloc(v, c->nslices, h, w, err);
        } else if (w != v->width || h != v->height) {
            rc = sb_fail(err, SB_ESHAPE, "%s: slice is %dx%d but the case's first slice %s is %dx%d", c->img[z], w, h,
                         c->img[0], v->width, v->height);
        }
        if (rc == SB_OK) {
            size_t px = (size_t)w * h;
            memcpy(v->rgb + px * 3 * z, rgb, px * 3);
            memcpy(v->mask + px * z, l, px);
            v->slice_index[z] = c->sidx[z];
            const char *b = strrchr(c->img[z], '/');
            v->slice_names[z] = strdup(b ? b + 1 : c->img[z]);
        }
        free(rgb);
        free(l);
        if (rc != SB_OK)
            break;
    }
    if (rc != SB_OK)
        return rc;
    snprintf(v->source, sizeof v->source, "%s", c->folder);
    (void)s;
    return SB_OK;
}

int sb_data_load(sb_data *d, int i, int c, sb_volume *v, sb_error *err)
{
    memset(v, 0, sizeof *v);
    if (i < 0 || i >= d->n || c < 0 || c >= d->d[i].ncases)
        return sb_fail(err, SB_EINVAL, "no case %d of dataset %d", c, i);
    const dset *s = &d->d[i];
    const dcase *cs = &s->cases[c];
    sb_error local;
    if (!err)
        err = &local;
    sb_error_clear(err);
    int rc;
    switch (s->kind) {
    case SRC_MSD: rc = sb_data_load_msd(s, cs, v, err); break;
    case SRC_SHARD: rc = sb_data_load_shard(s, cs, v, err); break;
    default: rc = load_medbank(s, cs, v, err);
    }
    if (rc == SB_OK && s->spec.nonempty_only && s->kind != SRC_SHARD) {
        if (sb_volume_keep_nonempty(v) == 0)
            rc = sb_fail(err, SB_EFORMAT, "%s: no slice with a non-empty label (nonempty_only)",
                         v->source[0] ? v->source : cs->id);
    }
    if (rc != SB_OK) {
        sb_volume_free(v);
        /* the message starts with the file name; split it for the record */
        char file[1024] = "";
        const char *colon = strstr(err->msg, ": ");
        if (colon && (size_t)(colon - err->msg) < sizeof file)
            snprintf(file, sizeof file, "%.*s", (int)(colon - err->msg), err->msg);
        sb_data_note(d, s->spec.name, cs->id, file, colon ? colon + 2 : err->msg, 0);
        return rc;
    }
    snprintf(v->dataset, sizeof v->dataset, "%s", s->spec.name);
    snprintf(v->task, sizeof v->task, "%s", s->spec.task);
    snprintf(v->modality, sizeof v->modality, "%s", s->spec.modality);
    snprintf(v->case_id, sizeof v->case_id, "%s", cs->id);
    d->slices_loaded += v->nslices;
    return SB_OK;
}
