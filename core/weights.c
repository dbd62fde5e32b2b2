/*
 * sb_weights: a name -> float32 tensor table loaded from a torch checkpoint
 * (zip or legacy torch.save) or from sambench-h5, picked by the file's
 * content; validation against the variants' key/shape tables.
 */
#include "weights_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[SB_MAX_DIMS];
    int64_t numel;
    float *data;
    int owned; /* data is its own allocation (else inside w->block) */
} wtensor;

struct sb_weights {
    char path[4096];
    int fmt;
    wtensor *t;
    size_t n, cap;
    size_t *hash; /* open addressing: index+1, 0 = empty */
    size_t hcap;
    char *initialised;
    void *block; /* one mapping holding the loaded tensors */
    size_t block_bytes;
};

/* One anonymous mapping for all tensors of a file: page faults dominate a
 * load from the page cache, and transparent huge pages (where the system
 * offers them on request) cut their number by 512. Tensors start on 64-byte
 * boundaries. */
static void *block_alloc(size_t bytes)
{
    if (bytes < (4u << 20))
        return malloc(bytes ? bytes : 1);
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

static void block_free(void *p, size_t bytes)
{
    if (!p)
        return;
    if (bytes < (4u << 20))
        free(p);
    else
        munmap(p, bytes);
}

float *weights_block(sb_weights *w, size_t bytes)
{
    w->block = block_alloc(bytes);
    w->block_bytes = bytes;
    return w->block;
}

/* ---- table ------------------------------------------------------------ */
static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static long find(const sb_weights *w, const char *key)
{
    if (!w || !w->hcap)
        return -1;
    size_t m = w->hcap - 1;
    for (size_t i = hash_str(key) & m;; i = (i + 1) & m) {
        size_t v = w->hash[i];
        if (!v)
            return -1;
        if (strcmp(w->t[v - 1].name, key) == 0)
            return (long)(v - 1);
    }
}

static int rehash(sb_weights *w)
{
    size_t cap = 16;
    while (cap < 2 * w->n + 2)
        cap *= 2;
    size_t *h = calloc(cap, sizeof *h);
    if (!h)
        return -1;
    free(w->hash);
    w->hash = h;
    w->hcap = cap;
    for (size_t k = 0; k < w->n; k++) {
        size_t i = hash_str(w->t[k].name) & (cap - 1);
        while (h[i])
            i = (i + 1) & (cap - 1);
        h[i] = k + 1;
    }
    return 0;
}

sb_weights *weights_new(const char *path, int fmt)
{
    sb_weights *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    snprintf(w->path, sizeof w->path, "%s", path);
    w->fmt = fmt;
    return w;
}

/* Takes ownership of data (freed on failure too). */
static int in_block(const sb_weights *w, const void *p)
{
    return w->block && (const char *)p >= (const char *)w->block &&
           (const char *)p < (const char *)w->block + w->block_bytes;
}

static void drop(const sb_weights *w, float *data)
{
    if (!in_block(w, data))
        free(data);
}

int weights_add(sb_weights *w, const char *name, int dtype, int ndim, const int64_t *shape, float *data,
                sb_error *err)
{
    if (find(w, name) >= 0) {
        drop(w, data);
        return sb_fail(err, SB_EFORMAT, "%s: key '%s' appears twice", w->path, name);
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t) {
            drop(w, data);
            return sb_fail(err, SB_ENOMEM, "%s: out of memory", w->path);
        }
        w->t = t;
        w->cap = cap;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name))) {
        drop(w, data);
        return sb_fail(err, SB_ENOMEM, "%s: out of memory", w->path);
    }
    t->dtype = dtype;
    t->ndim = ndim;
    t->numel = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->numel *= shape[d];
    }
    t->data = data;
    t->owned = !in_block(w, data);
    w->n++;
    if (2 * w->n + 2 > w->hcap && rehash(w))
        return sb_fail(err, SB_ENOMEM, "%s: out of memory", w->path);
    if (w->hcap >= 2 * w->n + 2) { /* insert the new one */
        size_t i = hash_str(name) & (w->hcap - 1);
        while (w->hash[i] && w->hash[i] != w->n)
            i = (i + 1) & (w->hcap - 1);
        w->hash[i] = w->n;
    }
    return SB_OK;
}

void sb_weights_free(sb_weights *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        if (w->t[i].owned)
            free(w->t[i].data);
    }
    block_free(w->block, w->block_bytes);
    free(w->t);
    free(w->hash);
    free(w->initialised);
    free(w);
}

/* ---- formats ------------------------------------------------------------ */
const char *sb_file_format_name(int fmt)
{
    switch (fmt) {
    case SB_FMT_TORCH_ZIP: return "torch-zip";
    case SB_FMT_TORCH_LEGACY: return "torch-legacy";
    case SB_FMT_PICKLE: return "pickle";
    case SB_FMT_H5: return "hdf5";
    default: return "unknown";
    }
}

int sb_file_format(const char *path, int *fmt, sb_error *err)
{
    *fmt = SB_FMT_UNKNOWN;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sb_fail(err, SB_EIO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        return sb_fail(err, SB_EIO, "%s: is a directory", path);
    }
    uint8_t head[16];
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    if (n <= 0)
        return sb_fail(err, SB_EFORMAT, "%s: empty file", path);
    *fmt = sb_detect_format(head, (size_t)n);
    if (*fmt == SB_FMT_UNKNOWN)
        return sb_fail(err, SB_EFORMAT,
                       "%s: unknown format (not a torch zip checkpoint, torch.save stream, pickle or HDF5 file)",
                       path);
    return SB_OK;
}

/* ---- from a torch file -------------------------------------------------- */
static int pick_state_dict(torchfile *tf, const sb_weights_opts *o, pv **out, sb_error *err)
{
    pv *root = tf->root;
    if (root->kind != PV_DICT)
        return sb_fail(err, SB_EFORMAT, "%s: the checkpoint holds a %s, not a dict of tensors", tf->path,
                       pv_kind_name(root->kind));
    pv *sd = root;
    if (o && o->unwrap && o->unwrap[0]) {
        sd = pv_dict_get(root, o->unwrap);
        if (!sd)
            return sb_fail(err, SB_EKEY, "%s: no top-level key '%s' to unwrap", tf->path, o->unwrap);
    } else {
        pv *m = pv_dict_get(root, "model");
        if (m && m->kind == PV_DICT)
            sd = m;
    }
    if (sd->kind != PV_DICT)
        return sb_fail(err, SB_EFORMAT, "%s: the state dict is a %s, not a dict", tf->path, pv_kind_name(sd->kind));
    for (size_t i = 0; i + 1 < sd->n; i += 2) {
        pv *k = sd->items[i], *v = sd->items[i + 1];
        if (k->kind != PV_STR)
            return sb_fail(err, SB_EFORMAT, "%s: state dict key %zu is a %s, not a string", tf->path, i / 2,
                           pv_kind_name(k->kind));
        if (v->kind != PV_TENSOR) {
            const char *hint = pv_dict_get(sd, "state_dict") ? " (use --unwrap state_dict)" : "";
            return sb_fail(err, SB_EFORMAT, "%s: key '%s' holds a %s, not a tensor%s", tf->path, k->s,
                           pv_kind_name(v->kind), hint);
        }
    }
    *out = sd;
    return SB_OK;
}

/* Reads the state dict's tensors into one block. threads > 1 (a zip
 * checkpoint): the tensors that can be read independently
 * (torchfile_tensor_parallel_ok: each the whole of a stored entry of its
 * own, float32) are read first on that many threads; then every tensor is
 * taken in file order as in a serial load (the others read then), so the
 * first failing tensor in file order gives the message, whatever the thread
 * count. threads <= 1: the serial load alone. */
static int load_torch(sb_weights *w, torchfile *tf, const sb_weights_opts *o, int threads, sb_error *err)
{
    sb_error spare;
    if (!err)
        err = &spare;
    pv *sd = NULL;
    int rc = pick_state_dict(tf, o, &sd, err);
    if (rc)
        return rc;
    uint64_t budget = 16 * tf->file_size + (1u << 20), used = 0;
    const char *strip = o && o->strip_prefix ? o->strip_prefix : "";
    size_t sl = strlen(strip);
    /* sizes first (checked against the file), then one block for all */
    for (size_t i = 0; i + 1 < sd->n; i += 2) {
        pv *t = sd->items[i + 1];
        int64_t count, lo, hi;
        if ((rc = tensor_check(t, &count, &lo, &hi, err)))
            return sb_error_prefix(err, "%s: tensor '%s'", tf->path, sd->items[i]->s);
        used += ((uint64_t)count * 4 + 63) / 64 * 64;
        if (used > budget)
            return sb_fail(err, SB_EFORMAT, "%s: tensors reference far more data than the file holds", tf->path);
    }
    char *block = (char *)weights_block(w, (size_t)used);
    if (!block && used)
        return sb_fail(err, SB_ENOMEM, "%s: out of memory (%llu bytes for the tensors)", tf->path,
                       (unsigned long long)used);
    size_t nt = sd->n / 2, njobs = 0, first = 0;
    tf_read_job *jobs = NULL;
    size_t *job_of = NULL; /* tensor -> its job + 1, 0: read in the file-order pass */
    int *status = NULL;
    sb_error perr;
    int prc = SB_OK;
    if (threads > 1 && tf->fmt == SB_FMT_TORCH_ZIP && nt > 1) {
        jobs = malloc(nt * sizeof *jobs);
        job_of = calloc(nt, sizeof *job_of);
        status = malloc(nt * sizeof *status);
        if (jobs && job_of && status) { /* (else: the serial load) */
            for (size_t k = 0; k < nt; k++)
                sd->items[2 * k + 1]->storage->refs = 0;
            for (size_t k = 0; k < nt; k++)
                sd->items[2 * k + 1]->storage->refs++;
            size_t off = 0;
            for (size_t k = 0; k < nt; k++) {
                pv *t = sd->items[2 * k + 1];
                int64_t count, lo, hi;
                tensor_check(t, &count, &lo, &hi, NULL);
                if (torchfile_tensor_parallel_ok(t)) {
                    jobs[njobs].t = t;
                    jobs[njobs].dst = (float *)(block + off);
                    job_of[k] = ++njobs;
                }
                off += ((size_t)count * 4 + 63) / 64 * 64;
            }
            if (njobs > 1)
                prc = torchfile_read_parallel(tf, jobs, njobs, threads, status, &first, &perr);
            else
                njobs = 0; /* one tensor is no work to share: the file-order pass reads it */
        }
    }
    size_t at = 0;
    for (size_t i = 0; i + 1 < sd->n; i += 2) {
        const char *name = sd->items[i]->s;
        pv *t = sd->items[i + 1];
        if (sl && strncmp(name, strip, sl) == 0)
            name += sl;
        int64_t count, lo, hi;
        tensor_check(t, &count, &lo, &hi, err);
        float *data = (float *)(block + at);
        at += ((size_t)count * 4 + 63) / 64 * 64;
        size_t j = njobs ? job_of[i / 2] : 0;
        if (j && status[j - 1] != SB_OK) {
            /* the lowest failed job: every job before it was read (the others stop after a failure only) */
            if (prc != SB_OK && first == j - 1)
                *err = perr;
            else
                sb_fail(err, SB_EFORMAT, "storage '%s' was not read", t->storage->key);
            rc = err->code;
        } else if (!j)
            rc = torchfile_tensor_f32(tf, t, data, err);
        if (rc) {
            rc = sb_error_prefix(err, "%s: tensor '%s'", tf->path, name);
            break;
        }
        if ((rc = weights_add(w, name, t->dtype, t->ndim, t->shape, data, err)))
            break;
    }
    free(jobs);
    free(job_of);
    free(status);
    return rc;
}

int weights_load_h5(sb_weights *w, const char *path, sb_error *err); /* weights_h5.c */
int weights_fill_missing(sb_weights *w, const char *variant, uint64_t seed, sb_error *err);

int sb_weights_load_ex(sb_weights **out, const char *path, const sb_weights_opts *o, sb_error *err)
{
    *out = NULL;
    int fmt;
    int rc = sb_file_format(path, &fmt, err);
    if (rc)
        return rc;
    if (fmt == SB_FMT_PICKLE)
        return sb_fail(err, SB_EFORMAT, "%s: a plain pickle (memory bank?), not a checkpoint", path);
    sb_weights *w = weights_new(path, fmt);
    if (!w)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    if (fmt == SB_FMT_H5)
        rc = weights_load_h5(w, path, err);
    else {
        torchfile tf;
        rc = torchfile_open(&tf, path, NULL, 0, fmt, err);
        if (rc == SB_OK)
            rc = load_torch(w, &tf, o, o && o->threads > 0 ? o->threads : sb_default_threads(1), err);
        torchfile_close(&tf);
    }
    if (rc == SB_OK && o && o->variant && o->variant[0]) {
        if (o->allow_missing)
            rc = weights_fill_missing(w, o->variant, o->init_seed, err);
        if (rc == SB_OK)
            rc = sb_weights_validate(w, o->variant, SB_VALIDATE_FULL, err);
    }
    if (rc) {
        sb_weights_free(w);
        return rc;
    }
    *out = w;
    return SB_OK;
}

int sb_weights_load(sb_weights **out, const char *path, sb_error *err)
{
    return sb_weights_load_ex(out, path, NULL, err);
}

/* Loads from a memory image (fuzzing, tests). */
int weights_load_mem(sb_weights **out, const char *name, const void *data, size_t len, sb_error *err)
{
    *out = NULL;
    int fmt = sb_detect_format(data, len);
    if (fmt != SB_FMT_TORCH_ZIP && fmt != SB_FMT_TORCH_LEGACY)
        return sb_fail(err, SB_EFORMAT, "%s: not a torch checkpoint", name);
    sb_weights *w = weights_new(name, fmt);
    if (!w)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    torchfile tf;
    int rc = torchfile_open(&tf, name, data, len, fmt, err);
    if (rc == SB_OK)
        rc = load_torch(w, &tf, NULL, 1, err); /* one thread: fuzz targets and tests */
    torchfile_close(&tf);
    if (rc) {
        sb_weights_free(w);
        return rc;
    }
    *out = w;
    return SB_OK;
}

/* ---- queries ------------------------------------------------------------ */
int sb_weights_has(const sb_weights *w, const char *key) { return find(w, key) >= 0; }

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

int sb_weights_shape(const sb_weights *w, const char *key, int *ndim, int64_t shape[SB_MAX_DIMS], sb_error *err)
{
    long i = find(w, key);
    if (i < 0)
        return sb_fail(err, SB_EKEY, "%s: missing key '%s'", w ? w->path : "?", key);
    *ndim = w->t[i].ndim;
    memcpy(shape, w->t[i].shape, sizeof(int64_t) * SB_MAX_DIMS);
    return SB_OK;
}

const float *sb_weights_get(const sb_weights *w, const char *key, int ndim, const int64_t *shape, sb_error *err)
{
    long i = find(w, key);
    if (i < 0) {
        sb_fail(err, SB_EKEY, "%s: missing key '%s'", w ? w->path : "?", key);
        return NULL;
    }
    const wtensor *t = &w->t[i];
    if (ndim >= 0) {
        int ok = ndim == t->ndim;
        for (int d = 0; ok && d < ndim; d++)
            ok = shape[d] == t->shape[d];
        if (!ok) {
            char e[256], f[256];
            fmt_shape(e, sizeof e, ndim, shape);
            fmt_shape(f, sizeof f, t->ndim, t->shape);
            sb_fail(err, SB_ESHAPE, "%s: key '%s': expected shape %s, found %s", w->path, key, e, f);
            return NULL;
        }
    }
    return t->data;
}

size_t sb_weights_count(const sb_weights *w) { return w ? w->n : 0; }

int sb_weights_info(const sb_weights *w, size_t i, sb_tensor_info *o)
{
    if (!w || i >= w->n)
        return SB_EINVAL;
    const wtensor *t = &w->t[i];
    memset(o, 0, sizeof *o);
    o->name = t->name;
    o->dtype = t->dtype;
    o->ndim = t->ndim;
    memcpy(o->shape, t->shape, sizeof o->shape);
    o->numel = t->numel;
    o->file_bytes = (uint64_t)t->numel * (uint64_t)sb_dtype_size(t->dtype);
    o->data = t->data;
    return SB_OK;
}

int64_t sb_weights_parameters(const sb_weights *w)
{
    int64_t s = 0;
    for (size_t i = 0; w && i < w->n; i++)
        s += w->t[i].numel;
    return s;
}

int sb_weights_file_format(const sb_weights *w) { return w ? w->fmt : SB_FMT_UNKNOWN; }
const char *sb_weights_path(const sb_weights *w) { return w ? w->path : ""; }
const char *sb_weights_initialised(const sb_weights *w) { return w && w->initialised ? w->initialised : ""; }

/* ---- validation --------------------------------------------------------- */
static const char *variant_names = "samed2|sam2_hiera_s|sam2_hiera_t|sam_vit_b";
const char *sb_variant_names(void) { return variant_names; }
int sb_variant_known(const char *v)
{
    size_t n;
    return v && sb_variant_table(v, &n) != NULL;
}
int64_t sb_variant_tensor_count(const char *v)
{
    size_t n = 0;
    return sb_variant_table(v, &n) ? (int64_t)n : -1;
}

/* "a.blocks.12.b" -> "a.blocks.#.b" */
static void key_pattern(const char *k, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; k[i] && j + 2 < cap;) {
        /* only repeated-layer containers: "...blocks.N." and "...layers.N." */
        int start = i >= 7 && k[i - 1] == '.' &&
                    ((i >= 7 && strncmp(k + i - 7, "blocks.", 7) == 0) ||
                     (i >= 7 && strncmp(k + i - 7, "layers.", 7) == 0));
        if (start && k[i] >= '0' && k[i] <= '9') {
            size_t e = i;
            while (k[e] >= '0' && k[e] <= '9')
                e++;
            if (k[e] == '.' || k[e] == '\0') {
                out[j++] = '#';
                i = e;
                continue;
            }
        }
        out[j++] = k[i++];
    }
    out[j] = '\0';
}

/* The first component of a key ("image_encoder" of "image_encoder.trunk...") */
static size_t top_len(const char *k)
{
    const char *d = strchr(k, '.');
    return d ? (size_t)(d - k) : strlen(k);
}

int sb_weights_validate(const sb_weights *w, const char *variant, int mode, sb_error *err)
{
    size_t n;
    const sb_key_shape *tab = sb_variant_table(variant, &n);
    if (!tab)
        return sb_fail(err, SB_EINVAL, "unknown variant '%s' (known: %s)", variant ? variant : "(null)",
                       variant_names);
    return weights_validate_table(w, tab, n, variant, mode, err);
}

int sb_weights_validate_config(const sb_weights *w, const char *variant, const char *config, sb_error *err)
{
    sb_key_shape *tab;
    size_t n;
    int rc = sb_key_table_from_config(variant, config, &tab, &n, err);
    if (rc)
        return rc;
    char label[512];
    snprintf(label, sizeof label, "%s with config %s", variant, config ? config : "(official)");
    rc = weights_validate_table(w, tab, n, label, SB_VALIDATE_FULL, err);
    sb_key_table_free(tab, n);
    return rc;
}

int weights_validate_table(const sb_weights *w, const sb_key_shape *tab, size_t n, const char *variant, int mode,
                           sb_error *err)
{
    char e[256], f[256];
    if (mode == SB_VALIDATE_FULL) {
        for (size_t i = 0; i < n; i++) {
            long k = find(w, tab[i].key);
            if (k < 0)
                return sb_fail(err, SB_EKEY, "%s: missing key '%s' (expected shape %s) for variant %s", w->path,
                               tab[i].key, (fmt_shape(e, sizeof e, tab[i].ndim, tab[i].shape), e), variant);
            const wtensor *t = &w->t[k];
            int ok = t->ndim == tab[i].ndim;
            for (int d = 0; ok && d < t->ndim; d++)
                ok = t->shape[d] == tab[i].shape[d];
            if (!ok) {
                fmt_shape(e, sizeof e, tab[i].ndim, tab[i].shape);
                fmt_shape(f, sizeof f, t->ndim, t->shape);
                return sb_fail(err, SB_ESHAPE, "%s: key '%s': expected shape %s, found %s (variant %s)", w->path,
                               tab[i].key, e, f, variant);
            }
        }
    }
    /* unexpected keys under a module the model has; with STRUCTURE mode, patterns */
    for (size_t k = 0; k < w->n; k++) {
        const char *key = w->t[k].name;
        char pk[512], pt[512];
        key_pattern(key, pk, sizeof pk);
        int found = 0, top = 0, nd = -1;
        for (size_t i = 0; i < n && !found; i++) {
            if (mode == SB_VALIDATE_FULL) {
                if (strcmp(tab[i].key, key) == 0)
                    found = 1;
            } else {
                key_pattern(tab[i].key, pt, sizeof pt);
                if (strcmp(pt, pk) == 0) {
                    found = 1;
                    nd = tab[i].ndim;
                }
            }
            if (top_len(tab[i].key) == top_len(key) && strncmp(tab[i].key, key, top_len(key)) == 0)
                top = 1;
        }
        if (!found && top)
            return sb_fail(err, SB_EKEY, "%s: unexpected key '%s' (shape %s) for variant %s", w->path, key,
                           (fmt_shape(f, sizeof f, w->t[k].ndim, w->t[k].shape), f), variant);
        if (found && mode == SB_VALIDATE_STRUCTURE && nd != w->t[k].ndim)
            return sb_fail(err, SB_ESHAPE, "%s: key '%s': expected %d dimensions, found shape %s (variant %s)",
                           w->path, key, nd, (fmt_shape(f, sizeof f, w->t[k].ndim, w->t[k].shape), f), variant);
    }
    if (mode == SB_VALIDATE_STRUCTURE) { /* every pattern of the table occurs */
        for (size_t i = 0; i < n; i++) {
            char pt[512], pk[512];
            key_pattern(tab[i].key, pt, sizeof pt);
            int found = 0;
            for (size_t k = 0; k < w->n && !found; k++) {
                key_pattern(w->t[k].name, pk, sizeof pk);
                found = strcmp(pk, pt) == 0;
            }
            if (!found)
                return sb_fail(err, SB_EKEY, "%s: missing key '%s' (no key of the form '%s') for variant %s",
                               w->path, tab[i].key, pt, variant);
        }
    }
    return SB_OK;
}

int weights_fill_missing(sb_weights *w, const char *variant, uint64_t seed, sb_error *err)
{
    size_t n;
    const sb_key_shape *tab = sb_variant_table(variant, &n);
    if (!tab)
        return sb_fail(err, SB_EINVAL, "unknown variant '%s' (known: %s)", variant, variant_names);
    size_t len = 0, cap = 0;
    for (size_t i = 0; i < n; i++) {
        if (find(w, tab[i].key) >= 0)
            continue;
        int64_t numel = 1;
        for (int d = 0; d < tab[i].ndim; d++)
            numel *= tab[i].shape[d];
        float *data = malloc((size_t)(numel ? numel : 1) * sizeof(float));
        if (!data)
            return sb_fail(err, SB_ENOMEM, "out of memory");
        sb_weights_random_values(tab[i].key, tab[i].ndim, tab[i].shape, seed, data);
        int rc = weights_add(w, tab[i].key, SB_DT_F32, tab[i].ndim, tab[i].shape, data, err);
        if (rc)
            return rc;
        size_t kl = strlen(tab[i].key);
        if (len + kl + 2 > cap) {
            cap = (len + kl + 2) * 2;
            char *p = realloc(w->initialised, cap);
            if (!p)
                return sb_fail(err, SB_ENOMEM, "out of memory");
            w->initialised = p;
        }
        memcpy(w->initialised + len, tab[i].key, kl);
        len += kl;
        w->initialised[len++] = '\n';
        w->initialised[len] = '\0';
    }
    return SB_OK;
}
