/*
 * Work units from a MedBank-layout root, PNG reading, the PIL-style resize of
 * masks and the keyed box prompt, as `sambench run` needs them.
 *
 * MedBank layout (docs/MEDBANK.md of the published code): ROOT/<Object>_<Modality>_<ID>/
 * {image,mask}/<name>.png and split files train.txt/val.txt/test.txt listing
 * the images. The published loader strips two characters ("./") from an entry
 * and joins it to the data path; the mask path replaces "/image/" by "/mask/".
 * We accept an entry with or without the "./" prefix and with or without the
 * "image/" folder.
 */
#include "run.h"
#include "data.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int sb_mkdir_p(const char *path, sb_error *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0775) != 0 && errno != EEXIST)
                return sb_fail(err, SB_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = '/';
        }
    }
    if (mkdir(buf, 0775) != 0 && errno != EEXIST)
        return sb_fail(err, SB_EIO, "%s: cannot create directory: %s", buf, strerror(errno));
    return SB_OK;
}

const char *sb_csv_field(const char *s, char *buf, size_t cap)
{
    if (!strpbrk(s, ",\"\n\r")) {
        snprintf(buf, cap, "%s", s);
        return buf;
    }
    size_t k = 0;
    if (k + 1 < cap)
        buf[k++] = '"';
    for (; *s && k + 3 < cap; s++) {
        if (*s == '"')
            buf[k++] = '"';
        buf[k++] = *s;
    }
    if (k + 1 < cap)
        buf[k++] = '"';
    buf[k] = '\0';
    return buf;
}

int sb_medbank_name(const char *folder, char *task, size_t tcap, char *modality, size_t mcap)
{
    const char *last = strrchr(folder, '_');
    if (!last || last == folder || !last[1])
        return 0;
    const char *prev = last - 1;
    while (prev > folder && *prev != '_')
        prev--;
    if (*prev != '_' || prev == folder || prev + 1 == last)
        return 0;
    size_t tl = (size_t)(prev - folder), ml = (size_t)(last - prev - 1);
    if (tl + 1 > tcap || ml + 1 > mcap)
        return 0;
    memcpy(task, folder, tl);
    task[tl] = '\0';
    memcpy(modality, prev + 1, ml);
    modality[ml] = '\0';
    return 1;
}

void sb_entry_case(const char *entry, char *case_id, size_t cap, int32_t *slice)
{
    const char *base = strrchr(entry, '/');
    base = base ? base + 1 : entry;
    char b[SB_CASE_MAX];
    snprintf(b, sizeof b, "%s", base);
    char *dot = strrchr(b, '.');
    if (dot && dot != b)
        *dot = '\0';
    *slice = 0;
    size_t n = strlen(b);
    size_t k = n;
    while (k > 0 && isdigit((unsigned char)b[k - 1]))
        k--;
    if (k < n && k > 1 && b[k - 1] == '_' && n - k <= 9) {
        *slice = (int32_t)atol(b + k);
        b[k - 1] = '\0';
        size_t m = strlen(b);
        if (m > 6 && strcmp(b + m - 6, "_slice") == 0)
            b[m - 6] = '\0';
    }
    snprintf(case_id, cap, "%s", b);
}

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* image and mask paths of an entry */
static int resolve_entry(const char *dir, const char *entry, char **img, char **msk, sb_error *err)
{
    const char *e = entry;
    if (strncmp(e, "./", 2) == 0)
        e += 2;
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, e);
    if (!file_exists(p) || !strstr(p, "/image/"))
        snprintf(p, sizeof p, "%s/image/%s", dir, e);
    char m[4096];
    const char *at = strstr(p, "/image/");
    if (!at)
        return sb_fail(err, SB_EFORMAT, "%s: entry '%s' has no /image/ path", dir, entry);
    snprintf(m, sizeof m, "%.*s/mask/%s", (int)(at - p), p, at + 7);
    *img = xstrdup(p);
    *msk = xstrdup(m);
    if (!*img || !*msk)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    return SB_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    char **v;
    int n, cap;
} strlist;
static int strlist_push(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        int nc = l->cap ? 2 * l->cap : 16;
        char **nv = realloc(l->v, sizeof(char *) * (size_t)nc);
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n] = xstrdup(s);
    return l->v[l->n++] ? 0 : -1;
}
static void strlist_free(strlist *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

static int read_split(const char *path, strlist *out, sb_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot open split file: %s", path, strerror(errno));
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        /* Python's str.strip(): leading and trailing whitespace */
        char *s = line;
        while (*s && isspace((unsigned char)*s))
            s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
            s[--n] = '\0';
        if (n == 0)
            continue;
        if (n >= SB_CASE_MAX) {
            fclose(f);
            return sb_fail(err, SB_EFORMAT, "%s: entry longer than %d characters", path, SB_CASE_MAX - 1);
        }
        if (strlist_push(out, s)) {
            fclose(f);
            return sb_fail(err, SB_ENOMEM, "out of memory");
        }
    }
    fclose(f);
    /* sorted lexicographically, as the published loader does (byte order = code points for UTF-8) */
    if (out->n > 1)
        qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return SB_OK;
}

static sb_unit *units_push(sb_units *u, int *cap)
{
    if (u->n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        sb_unit *nv = realloc(u->v, sizeof(sb_unit) * (size_t)nc);
        if (!nv)
            return NULL;
        u->v = nv;
        *cap = nc;
    }
    sb_unit *x = &u->v[u->n++];
    memset(x, 0, sizeof *x);
    return x;
}

typedef struct {
    sb_item it;
} item_sort;
static int cmp_item_case(const void *a, const void *b)
{
    const sb_item *x = a, *y = b;
    int c = strcmp(x->case_id, y->case_id);
    if (c)
        return c;
    if (x->slice != y->slice)
        return (x->slice > y->slice) - (x->slice < y->slice);
    return strcmp(x->entry, y->entry);
}

/* The split entries of one dataset folder (sorted as the published loader
 * sorts them) with their case, slice and file paths. *n = 0 for an empty split. */
static int folder_items(const char *dir, const char *split_path, sb_item **out, int *nout, sb_error *err)
{
    *out = NULL;
    *nout = 0;
    strlist entries = {0};
    int rc = read_split(split_path, &entries, err);
    if (rc != SB_OK || entries.n == 0) {
        strlist_free(&entries);
        return rc;
    }
    sb_item *items = calloc((size_t)entries.n, sizeof(sb_item));
    if (!items) {
        strlist_free(&entries);
        return sb_fail(err, SB_ENOMEM, "out of memory");
    }
    for (int i = 0; i < entries.n && rc == SB_OK; i++) {
        snprintf(items[i].entry, sizeof items[i].entry, "%s", entries.v[i]);
        sb_entry_case(entries.v[i], items[i].case_id, sizeof items[i].case_id, &items[i].slice);
        rc = resolve_entry(dir, entries.v[i], &items[i].image_path, &items[i].mask_path, err);
    }
    int n = entries.n;
    strlist_free(&entries);
    if (rc != SB_OK) {
        for (int i = 0; i < n; i++) {
            free(items[i].image_path);
            free(items[i].mask_path);
        }
        free(items);
        return rc;
    }
    *out = items;
    *nout = n;
    return SB_OK;
}

int sb_units_medbank(sb_units *out, const char *root, const char *split, int protocol, sb_error *err)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(root);
    if (!d)
        return sb_fail(err, SB_EIO, "%s: cannot open MedBank root: %s", root, strerror(errno));
    strlist folders = {0};
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char t[SB_NAME_MAX], m[SB_NAME_MAX], sp[4096];
        if (!sb_medbank_name(de->d_name, t, sizeof t, m, sizeof m))
            continue;
        snprintf(sp, sizeof sp, "%s/%s/%s.txt", root, de->d_name, split);
        if (!file_exists(sp))
            continue;
        if (strlist_push(&folders, de->d_name)) {
            closedir(d);
            strlist_free(&folders);
            return sb_fail(err, SB_ENOMEM, "out of memory");
        }
    }
    closedir(d);
    if (folders.n == 0) {
        strlist_free(&folders);
        return sb_fail(err, SB_EFORMAT, "%s: no <Object>_<Modality>_<ID> folder with a %s.txt split file",
                       root, split);
    }
    qsort(folders.v, (size_t)folders.n, sizeof(char *), cmp_str);
    int cap = 0, rc = SB_OK;
    for (int fi = 0; fi < folders.n && rc == SB_OK; fi++) {
        const char *name = folders.v[fi];
        if (strlen(name) >= SB_NAME_MAX) {
            rc = sb_fail(err, SB_EFORMAT, "%s/%s: folder name too long", root, name);
            break;
        }
        char dir[4096], sp[4096], task[SB_NAME_MAX], mod[SB_NAME_MAX];
        snprintf(dir, sizeof dir, "%s/%s", root, name);
        snprintf(sp, sizeof sp, "%s/%s.txt", dir, split);
        sb_medbank_name(name, task, sizeof task, mod, sizeof mod);
        sb_item *items = NULL;
        int n = 0;
        rc = folder_items(dir, sp, &items, &n, err);
        if (rc != SB_OK)
            break;
        if (n == 0)
            continue; /* an empty split is not an error */
        if (protocol == SB_PROTO_REFERENCE) {
            sb_unit *u = units_push(out, &cap);
            if (!u) {
                rc = sb_fail(err, SB_ENOMEM, "out of memory");
                break;
            }
            snprintf(u->dataset, sizeof u->dataset, "%s", name);
            snprintf(u->task, sizeof u->task, "%s", task);
            snprintf(u->modality, sizeof u->modality, "%s", mod);
            u->items = items;
            u->nitems = n;
            continue;
        }
        /* volume protocol: group by case, slices in slice order */
        qsort(items, (size_t)n, sizeof(sb_item), cmp_item_case);
        for (int i = 0; i < n && rc == SB_OK;) {
            int j = i;
            while (j < n && strcmp(items[j].case_id, items[i].case_id) == 0)
                j++;
            sb_unit *u = units_push(out, &cap);
            sb_item *cp = u ? malloc(sizeof(sb_item) * (size_t)(j - i)) : NULL;
            if (!cp) {
                rc = sb_fail(err, SB_ENOMEM, "out of memory");
                break;
            }
            memcpy(cp, items + i, sizeof(sb_item) * (size_t)(j - i));
            snprintf(u->dataset, sizeof u->dataset, "%s", name);
            snprintf(u->task, sizeof u->task, "%s", task);
            snprintf(u->modality, sizeof u->modality, "%s", mod);
            snprintf(u->case_id, sizeof u->case_id, "%s", items[i].case_id);
            u->items = cp;
            u->nitems = j - i;
            i = j;
        }
        free(items); /* the paths moved into the units */
    }
    strlist_free(&folders);
    for (int i = 0; i < out->n; i++)
        out->v[i].index = i;
    if (rc != SB_OK)
        sb_units_free(out);
    return rc;
}

void sb_units_free(sb_units *u)
{
    for (int i = 0; i < u->n; i++) {
        for (int k = 0; u->v[i].items && k < u->v[i].nitems; k++) {
            free(u->v[i].items[k].image_path);
            free(u->v[i].items[k].mask_path);
        }
        free(u->v[i].items);
    }
    free(u->v);
    memset(u, 0, sizeof *u);
}

/* ---- manifests through the data module ------------------------------------------ */
/* Volume protocol: one unit per case the data module listed. */
static int manifest_volume_units(sb_units *out, int *cap, sb_data *d, int i, sb_error *err)
{
    const sb_dataset_spec *spec = sb_data_dataset(d, i);
    for (int c = 0; c < sb_data_ncases(d, i); c++) {
        sb_unit *x = units_push(out, cap);
        if (!x)
            return sb_fail(err, SB_ENOMEM, "out of memory");
        snprintf(x->dataset, sizeof x->dataset, "%s", spec->name);
        snprintf(x->task, sizeof x->task, "%s", spec->task);
        snprintf(x->modality, sizeof x->modality, "%s", spec->modality);
        snprintf(x->case_id, sizeof x->case_id, "%s", sb_data_case_id(d, i, c));
        int ns = sb_data_case_nslices(d, i, c);
        x->nitems = ns > 0 ? ns : 64; /* NIfTI: not known before decoding; an estimate for the schedule */
        x->data = d;
        x->data_ds = i;
        x->data_case = c;
        x->tolerance_mm = spec->nsd_tolerance;
    }
    return SB_OK;
}

/* Reference protocol: one unit per dataset folder, as the published main.py
 * runs once per folder, over the folder's split list as written. Only
 * MedBank-layout datasets have the split lists that protocol reproduces; an
 * msd-layout dataset is an error that names it. The unit takes the
 * manifest's dataset name when the path matches one folder, else the
 * folder's own name. */
static int manifest_reference_units(sb_units *out, int *cap, const sb_dataset_spec *spec, const char *manifest,
                                    const char *data_root, sb_error *err)
{
    if (spec->layout != SB_LAYOUT_MEDBANK)
        return sb_fail(err, SB_EUNSUPPORTED,
                       "%s: dataset '%s': --protocol reference reproduces the published loop over a MedBank "
                       "folder's split list; layout msd has none (use --protocol volume)",
                       manifest, spec->name);
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s/%s", data_root, spec->path);
    glob_t g;
    memset(&g, 0, sizeof g);
    strlist dirs = {0};
    int rc = SB_OK;
    if (glob(pattern, 0, NULL, &g) == 0) /* glob sorts the matches */
        for (size_t k = 0; k < g.gl_pathc && rc == SB_OK; k++) {
            struct stat st;
            if (stat(g.gl_pathv[k], &st) == 0 && S_ISDIR(st.st_mode) && strlist_push(&dirs, g.gl_pathv[k]))
                rc = sb_fail(err, SB_ENOMEM, "out of memory");
        }
    globfree(&g);
    for (int k = 0; k < dirs.n && rc == SB_OK; k++) {
        char sp[4096];
        snprintf(sp, sizeof sp, "%s/%s", dirs.v[k], spec->split);
        if (!file_exists(sp))
            continue; /* the data module has noted the folder without a split file */
        sb_item *items = NULL;
        int ni = 0;
        rc = folder_items(dirs.v[k], sp, &items, &ni, err);
        if (rc != SB_OK || ni == 0)
            continue;
        sb_unit *x = units_push(out, cap);
        if (!x) {
            for (int q = 0; q < ni; q++) {
                free(items[q].image_path);
                free(items[q].mask_path);
            }
            free(items);
            rc = sb_fail(err, SB_ENOMEM, "out of memory");
            break;
        }
        const char *base = strrchr(dirs.v[k], '/');
        base = base ? base + 1 : dirs.v[k];
        snprintf(x->dataset, sizeof x->dataset, "%s", dirs.n == 1 ? spec->name : base);
        snprintf(x->task, sizeof x->task, "%s", spec->task);
        snprintf(x->modality, sizeof x->modality, "%s", spec->modality);
        x->items = items;
        x->nitems = ni;
        x->tolerance_mm = spec->nsd_tolerance;
    }
    strlist_free(&dirs);
    return rc;
}

static int cmp_unit_key(const void *a, const void *b)
{
    const sb_unit *x = *(const sb_unit *const *)a, *y = *(const sb_unit *const *)b;
    int c = strcmp(x->dataset, y->dataset);
    return c ? c : strcmp(x->case_id, y->case_id);
}

int sb_units_manifests(sb_units *out, const char *const *manifests, int n, const char *data_root, int protocol,
                       void ***datas, sb_error *err)
{
    memset(out, 0, sizeof *out);
    *datas = calloc((size_t)(n > 0 ? n : 1), sizeof(void *));
    if (!*datas)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    int cap = 0, rc = SB_OK;
    for (int mi = 0; mi < n && rc == SB_OK; mi++) {
        sb_data *d = NULL;
        rc = sb_data_open(&d, manifests[mi], data_root, NULL, 0, err);
        if (rc)
            break;
        (*datas)[mi] = d;
        for (int i = 0; i < sb_data_ndatasets(d) && rc == SB_OK; i++)
            rc = protocol == SB_PROTO_REFERENCE
                     ? manifest_reference_units(out, &cap, sb_data_dataset(d, i), manifests[mi], data_root, err)
                     : manifest_volume_units(out, &cap, d, i, err);
    }
    for (int i = 0; i < out->n; i++)
        out->v[i].index = i;
    if (rc == SB_OK && out->n == 0)
        rc = sb_fail(err, SB_EFORMAT, "%s: no %s to evaluate", n ? manifests[0] : "(no manifest)",
                     protocol == SB_PROTO_REFERENCE ? "dataset folder with a split list" : "case");
    /* (dataset, case) keys the journal and the tables: it must name one unit */
    if (rc == SB_OK && out->n > 1) {
        const sb_unit **byname = malloc(sizeof *byname * (size_t)out->n);
        if (!byname)
            rc = sb_fail(err, SB_ENOMEM, "out of memory");
        for (int i = 0; byname && i < out->n; i++)
            byname[i] = &out->v[i];
        if (byname)
            qsort(byname, (size_t)out->n, sizeof *byname, cmp_unit_key);
        for (int i = 1; byname && i < out->n && rc == SB_OK; i++)
            if (cmp_unit_key(&byname[i - 1], &byname[i]) == 0)
                rc = sb_fail(err, SB_EINVAL, "dataset '%s' appears twice across the manifests", byname[i]->dataset);
        free(byname);
    }
    if (rc != SB_OK) {
        sb_units_free(out);
        sb_units_free_data(*datas, n);
        *datas = NULL;
    }
    return rc;
}

void sb_units_free_data(void **datas, int n)
{
    if (!datas)
        return;
    for (int i = 0; i < n; i++)
        sb_data_free(datas[i]);
    free(datas);
}
