/*
 * Writers: the torch.save zip format (as torch 1.13 writes it, so that
 * torch.load accepts it), random-weight checkpoints of the variants, and a
 * small pickle emitter shared with the memory bank writer.
 *
 * Zip layout (PyTorchStreamWriter + miniz): every entry stored (method 0),
 * general purpose flags 0x0808 (UTF-8 names, sizes in a data descriptor
 * after the data), data aligned to 64 bytes by an extra field of id "FB"
 * filled with 'Z', then a central directory and the end record. Entries:
 * <archive>/data/<i> (raw little-endian storages), <archive>/data.pkl,
 * <archive>/version ("3\n") and <archive>/byteorder ("little").
 */
#include "weights_internal.h"
#include "weights_pickle_emit.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ===================================================================== */
/* growable byte buffer + pickle opcodes                                 */
/* ===================================================================== */
int pbuf_put(pbuf *b, const void *p, size_t n)
{
    if (b->failed)
        return -1;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->data, cap);
        if (!q) {
            b->failed = 1;
            return -1;
        }
        b->data = q;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int pbuf_byte(pbuf *b, uint8_t c) { return pbuf_put(b, &c, 1); }

void pk_int(pbuf *b, int64_t v)
{
    if (v >= 0 && v < 256) {
        uint8_t o[2] = {'K', (uint8_t)v};
        pbuf_put(b, o, 2);
    } else if (v >= 0 && v < 65536) {
        uint8_t o[3] = {'M', (uint8_t)(v & 255), (uint8_t)(v >> 8)};
        pbuf_put(b, o, 3);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        int32_t x = (int32_t)v;
        pbuf_byte(b, 'J');
        pbuf_put(b, &x, 4);
    } else { /* LONG1, minimal two's complement */
        uint8_t bytes[8];
        uint64_t u = (uint64_t)v;
        for (int i = 0; i < 8; i++)
            bytes[i] = (uint8_t)(u >> (8 * i));
        int n = 8;
        while (n > 1 && ((bytes[n - 1] == 0 && !(bytes[n - 2] & 0x80)) ||
                         (bytes[n - 1] == 0xff && (bytes[n - 2] & 0x80))))
            n--;
        uint8_t o[2] = {0x8a, (uint8_t)n};
        pbuf_put(b, o, 2);
        pbuf_put(b, bytes, (size_t)n);
    }
}

void pk_str(pbuf *b, const char *s)
{
    uint32_t n = (uint32_t)strlen(s);
    pbuf_byte(b, 'X');
    pbuf_put(b, &n, 4);
    pbuf_put(b, s, n);
}

void pk_global(pbuf *b, const char *mod, const char *name)
{
    pbuf_byte(b, 'c');
    pbuf_put(b, mod, strlen(mod));
    pbuf_byte(b, '\n');
    pbuf_put(b, name, strlen(name));
    pbuf_byte(b, '\n');
}

void pk_put(pbuf *b, uint8_t idx)
{
    uint8_t o[2] = {'q', idx};
    pbuf_put(b, o, 2);
}

void pk_get(pbuf *b, uint8_t idx)
{
    uint8_t o[2] = {'h', idx};
    pbuf_put(b, o, 2);
}

/* (v0, v1, ...) of ints */
void pk_int_tuple(pbuf *b, int n, const int64_t *v)
{
    if (n == 0) {
        pbuf_byte(b, ')');
        return;
    }
    if (n > 3)
        pbuf_byte(b, '(');
    for (int i = 0; i < n; i++)
        pk_int(b, v[i]);
    pbuf_byte(b, n == 1 ? 0x85 : n == 2 ? 0x86 : n == 3 ? 0x87 : 't');
}

/* _rebuild_tensor_v2(<pid>, 0, shape, contiguous stride, False, OrderedDict())
 * with memo slots: m_rebuild (the function), m_stype (storage type global),
 * m_odict (collections.OrderedDict); a slot < 0 means "not yet stored": the
 * global is written and memoised in -slot-1 (the caller flips the sign). */
void pk_tensor(pbuf *b, int *m_rebuild, int *m_stype, int m_odict, const char *stype, const char *key,
               const char *location, int64_t numel, int64_t offset, int ndim, const int64_t *shape,
               const int64_t *stride)
{
    if (*m_rebuild < 0) {
        pk_global(b, "torch._utils", "_rebuild_tensor_v2");
        *m_rebuild = -*m_rebuild - 1;
        pk_put(b, (uint8_t)*m_rebuild);
    } else
        pk_get(b, (uint8_t)*m_rebuild);
    pbuf_byte(b, '(');
    pbuf_byte(b, '(');
    pk_str(b, "storage");
    if (*m_stype < 0) {
        pk_global(b, "torch", stype);
        *m_stype = -*m_stype - 1;
        pk_put(b, (uint8_t)*m_stype);
    } else
        pk_get(b, (uint8_t)*m_stype);
    pk_str(b, key);
    pk_str(b, location);
    pk_int(b, numel);
    pbuf_byte(b, 't');
    pbuf_byte(b, 'Q'); /* BINPERSID */
    pk_int(b, offset);
    pk_int_tuple(b, ndim, shape);
    pk_int_tuple(b, ndim, stride);
    pbuf_byte(b, 0x89); /* requires_grad False */
    pk_get(b, (uint8_t)m_odict);
    pbuf_byte(b, ')');
    pbuf_byte(b, 'R'); /* OrderedDict() = backward hooks */
    pbuf_byte(b, 't');
    pbuf_byte(b, 'R');
}

/* ===================================================================== */
/* zip writer                                                            */
/* ===================================================================== */
typedef struct {
    char *name;
    uint32_t crc, size, offset;
} zentry;

struct sb_torch_writer {
    FILE *f;
    char path[4096];
    char archive[64];
    uint64_t pos;
    zentry *e;
    size_t ne, cap;
    pbuf pkl;
    int wrap;
    int m_rebuild, m_stype;
    int64_t count;
    int items_in_batch;
    int failed;
};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static int zw_write(sb_torch_writer *z, const void *p, size_t n)
{
    if (z->failed)
        return -1;
    if (n && fwrite(p, 1, n, z->f) != n) {
        z->failed = 1;
        return -1;
    }
    z->pos += n;
    return 0;
}

/* Local header with alignment padding; returns 0 and records the entry. */
static int zw_begin(sb_torch_writer *z, const char *name)
{
    if (z->pos > 0xffffffffu) {
        z->failed = 2;
        return -1;
    }
    if (z->ne == z->cap) {
        size_t cap = z->cap ? z->cap * 2 : 64;
        zentry *e = realloc(z->e, cap * sizeof *e);
        if (!e) {
            z->failed = 1;
            return -1;
        }
        z->e = e;
        z->cap = cap;
    }
    zentry *e = &z->e[z->ne];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) {
        z->failed = 1;
        return -1;
    }
    z->ne++;
    e->offset = (uint32_t)z->pos;
    size_t nl = strlen(name);
    uint64_t data_at = z->pos + 30 + nl + 4; /* minimal extra field: header only */
    size_t pad = (size_t)((64 - data_at % 64) % 64);
    uint8_t h[30];
    put32(h, 0x04034b50);
    put16(h + 4, 0);      /* version needed (as torch writes) */
    put16(h + 6, 0x0808); /* data descriptor + UTF-8 */
    put16(h + 8, 0);      /* stored */
    put16(h + 10, 0);
    put16(h + 12, 0);
    put32(h + 14, 0);
    put32(h + 18, 0);
    put32(h + 22, 0);
    put16(h + 26, (uint16_t)nl);
    put16(h + 28, (uint16_t)(4 + pad));
    uint8_t ex[4 + 64];
    ex[0] = 'F';
    ex[1] = 'B';
    put16(ex + 2, (uint16_t)pad);
    memset(ex + 4, 'Z', pad);
    zw_write(z, h, 30);
    zw_write(z, name, nl);
    return zw_write(z, ex, 4 + pad);
}

static int zw_data(sb_torch_writer *z, const void *p, size_t n)
{
    zentry *e = &z->e[z->ne - 1];
    const uint8_t *q = p;
    size_t left = n;
    uLong crc = e->crc;
    while (left > 0) { /* zlib's crc32 takes uInt lengths */
        uInt k = left > (1u << 30) ? (1u << 30) : (uInt)left;
        crc = crc32(crc, q, k);
        q += k;
        left -= k;
    }
    e->crc = (uint32_t)crc;
    if ((uint64_t)e->size + n > 0xffffffffu) {
        z->failed = 2;
        return -1;
    }
    e->size += (uint32_t)n;
    return zw_write(z, p, n);
}

static int zw_end(sb_torch_writer *z)
{
    zentry *e = &z->e[z->ne - 1];
    uint8_t d[16];
    put32(d, 0x08074b50);
    put32(d + 4, e->crc);
    put32(d + 8, e->size);
    put32(d + 12, e->size);
    return zw_write(z, d, 16);
}

static int zw_entry(sb_torch_writer *z, const char *name, const void *p, size_t n)
{
    zw_begin(z, name);
    zw_data(z, p, n);
    return zw_end(z);
}

static int zw_finish(sb_torch_writer *z)
{
    uint64_t cd_start = z->pos;
    for (size_t i = 0; i < z->ne; i++) {
        zentry *e = &z->e[i];
        uint8_t h[46];
        size_t nl = strlen(e->name);
        put32(h, 0x02014b50);
        put16(h + 4, 0);
        put16(h + 6, 0);
        put16(h + 8, 0x0808);
        put16(h + 10, 0);
        put16(h + 12, 0);
        put16(h + 14, 0);
        put32(h + 16, e->crc);
        put32(h + 20, e->size);
        put32(h + 24, e->size);
        put16(h + 28, (uint16_t)nl);
        put16(h + 30, 0);
        put16(h + 32, 0);
        put16(h + 34, 0);
        put16(h + 36, 0);
        put32(h + 38, 0);
        put32(h + 42, e->offset);
        zw_write(z, h, 46);
        zw_write(z, e->name, nl);
    }
    uint64_t cd_size = z->pos - cd_start;
    if (z->pos > 0xffffffffu || z->ne > 0xffff) {
        z->failed = 2;
        return -1;
    }
    uint8_t r[22];
    put32(r, 0x06054b50);
    put16(r + 4, 0);
    put16(r + 6, 0);
    put16(r + 8, (uint16_t)z->ne);
    put16(r + 10, (uint16_t)z->ne);
    put32(r + 12, (uint32_t)cd_size);
    put32(r + 16, (uint32_t)cd_start);
    put16(r + 20, 0);
    return zw_write(z, r, 22);
}

/* memo slots of the data.pkl we write */
enum { M_TOP = 0, M_MODEL = 1, M_ODICT = 2, M_SD = 3, M_REBUILD = 4, M_STYPE = 5 };

int sb_torch_writer_open(sb_torch_writer **out, const char *path, int wrap_model, sb_error *err)
{
    *out = NULL;
    sb_torch_writer *z = calloc(1, sizeof *z);
    if (!z)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    snprintf(z->path, sizeof z->path, "%s", path);
    snprintf(z->archive, sizeof z->archive, "archive");
    z->f = fopen(path, "wb");
    if (!z->f) {
        int rc = sb_fail(err, SB_EIO, "%s: cannot create: %s", path, strerror(errno));
        free(z);
        return rc;
    }
    z->wrap = wrap_model;
    z->m_rebuild = -M_REBUILD - 1;
    z->m_stype = -M_STYPE - 1;
    pbuf *b = &z->pkl;
    uint8_t proto[2] = {0x80, 2};
    pbuf_put(b, proto, 2);
    if (wrap_model) { /* {'model': OrderedDict(...)} */
        pbuf_byte(b, '}');
        pk_put(b, M_TOP);
        pk_str(b, "model");
        pk_put(b, M_MODEL);
    }
    pk_global(b, "collections", "OrderedDict");
    pk_put(b, M_ODICT);
    pbuf_byte(b, ')');
    pbuf_byte(b, 'R');
    pk_put(b, M_SD);
    *out = z;
    return SB_OK;
}

int sb_torch_writer_add(sb_torch_writer *z, const char *name, int ndim, const int64_t *shape, const float *data,
                        sb_error *err)
{
    if (ndim < 0 || ndim > SB_MAX_DIMS)
        return sb_fail(err, SB_EINVAL, "%s: tensor '%s' with %d dimensions", z->path, name, ndim);
    int64_t numel = 1, stride[SB_MAX_DIMS];
    for (int d = ndim - 1; d >= 0; d--) {
        stride[d] = numel;
        numel *= shape[d];
    }
    char key[32], ename[128];
    snprintf(key, sizeof key, "%lld", (long long)z->count);
    snprintf(ename, sizeof ename, "%s/data/%s", z->archive, key);
    zw_begin(z, ename);
    zw_data(z, data, (size_t)numel * 4);
    zw_end(z);
    pbuf *b = &z->pkl;
    if (z->items_in_batch == 0)
        pbuf_byte(b, '(');
    pk_str(b, name);
    pk_tensor(b, &z->m_rebuild, &z->m_stype, M_ODICT, "FloatStorage", key, "cpu", numel, 0, ndim, shape, stride);
    if (++z->items_in_batch == 1000) { /* pickle batches SETITEMS by 1000 */
        pbuf_byte(b, 'u');
        z->items_in_batch = 0;
    }
    z->count++;
    if (z->failed || b->failed)
        return sb_fail(err, z->failed == 2 ? SB_EUNSUPPORTED : SB_EIO, "%s: %s", z->path,
                       z->failed == 2 ? "checkpoint larger than 4 GiB (zip64 not written)" : "write error");
    return SB_OK;
}

static void writer_free(sb_torch_writer *z)
{
    for (size_t i = 0; i < z->ne; i++)
        free(z->e[i].name);
    free(z->e);
    free(z->pkl.data);
    free(z);
}

int sb_torch_writer_close(sb_torch_writer *z, sb_error *err)
{
    if (!z)
        return SB_OK;
    pbuf *b = &z->pkl;
    if (z->items_in_batch)
        pbuf_byte(b, 'u');
    if (z->wrap)
        pbuf_byte(b, 's');
    pbuf_byte(b, '.');
    char name[128];
    snprintf(name, sizeof name, "%s/data.pkl", z->archive);
    zw_entry(z, name, b->data, b->len);
    snprintf(name, sizeof name, "%s/byteorder", z->archive);
    zw_entry(z, name, "little", 6);
    snprintf(name, sizeof name, "%s/version", z->archive);
    zw_entry(z, name, "3\n", 2);
    zw_finish(z);
    int failed = z->failed || b->failed;
    int big = z->failed == 2;
    if (fclose(z->f) != 0)
        failed = 1;
    int rc = SB_OK;
    if (failed) {
        rc = sb_fail(err, big ? SB_EUNSUPPORTED : SB_EIO, "%s: %s", z->path,
                     big ? "checkpoint larger than 4 GiB (zip64 not written)" : "write error");
        remove(z->path);
    }
    writer_free(z);
    return rc;
}

void sb_torch_writer_abort(sb_torch_writer *z)
{
    if (!z)
        return;
    fclose(z->f);
    remove(z->path);
    writer_free(z);
}

/* ===================================================================== */
/* random weights                                                        */
/* ===================================================================== */
static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void sb_weights_random_values(const char *key, int ndim, const int64_t *shape, uint64_t seed, float *out)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = key; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    uint64_t s = seed * 0x9e3779b97f4a7c15ull ^ h;
    int64_t n = 1, fan_in = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    for (int d = 1; d < ndim; d++)
        fan_in *= shape[d];
    size_t kl = strlen(key);
    int is_weight = kl >= 6 && strcmp(key + kl - 6, "weight") == 0;
    /* PyTorch-like scales: weights U(-1/sqrt(fan_in), +), norm/scale vectors
     * around 1, biases and other vectors small */
    float lo, hi;
    if (ndim >= 2) {
        float b = 1.0f / sqrtf((float)(fan_in > 0 ? fan_in : 1));
        lo = -b, hi = b;
    } else if (ndim == 1 && is_weight)
        lo = 0.9f, hi = 1.1f;
    else
        lo = -0.05f, hi = 0.05f;
    for (int64_t i = 0; i < n; i++) {
        uint64_t r = splitmix(&s);
        float u = (float)(r >> 40) * (1.0f / 16777216.0f);
        out[i] = lo + (hi - lo) * u;
    }
}

int weights_write_random(const char *path, const sb_key_shape *tab, size_t n, int wrap_model, uint64_t seed,
                         sb_error *err)
{
    int64_t maxn = 1;
    for (size_t i = 0; i < n; i++) {
        int64_t k = 1;
        for (int d = 0; d < tab[i].ndim; d++)
            k *= tab[i].shape[d];
        if (k > maxn)
            maxn = k;
    }
    float *buf = malloc((size_t)maxn * sizeof(float));
    if (!buf)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    sb_torch_writer *z;
    int rc = sb_torch_writer_open(&z, path, wrap_model, err);
    for (size_t i = 0; rc == SB_OK && i < n; i++) {
        sb_weights_random_values(tab[i].key, tab[i].ndim, tab[i].shape, seed, buf);
        rc = sb_torch_writer_add(z, tab[i].key, tab[i].ndim, tab[i].shape, buf, err);
    }
    if (rc == SB_OK)
        rc = sb_torch_writer_close(z, err);
    else
        sb_torch_writer_abort(z);
    free(buf);
    return rc;
}

int sb_weights_init_random(const char *path, const char *variant, uint64_t seed, sb_error *err)
{
    size_t n;
    const sb_key_shape *tab = sb_variant_table(variant, &n);
    if (!tab)
        return sb_fail(err, SB_EINVAL, "unknown variant '%s' (known: %s)", variant ? variant : "(null)",
                       sb_variant_names());
    return weights_write_random(path, tab, n, strcmp(variant, "sam_vit_b") != 0, seed, err);
}

int sb_weights_init_random_config(const char *path, const char *variant, const char *config, uint64_t seed,
                                  sb_error *err)
{
    if (!config)
        return sb_weights_init_random(path, variant, seed, err);
    sb_key_shape *tab;
    size_t n;
    int rc = sb_key_table_from_config(variant, config, &tab, &n, err);
    if (rc)
        return rc;
    rc = weights_write_random(path, tab, n, strcmp(variant, "sam_vit_b") != 0, seed, err);
    sb_key_table_free(tab, n);
    return rc;
}
