/*
 * torch.save formats, read without Python:
 *  - the zip format (torch >= 1.6): <archive>/data.pkl is a protocol-2
 *    pickle whose persistent ids ('storage', StorageType|dtype, key,
 *    location, numel) name raw little-endian storages <archive>/data/<key>
 *    (stored entries, all that torch writes, read straight from the file
 *    with the zip directory checked here; compressed ones through libzip);
 *  - the legacy stream (torch.save(..., _use_new_zipfile_serialization=
 *    False), also what torch.storage._load_from_bytes reads): pickled magic
 *    number, protocol 1001, sys info, the object with persistent ids
 *    ('storage', type, key, location, numel, view_metadata), the sorted list
 *    of storage keys, then per key an int64 element count and the raw data;
 *  - a plain pickle (the memory bank) whose tensors embed legacy blobs.
 * Storages are never read at parse time: a tensor is read on request from
 * its storage's place in the file (zip entry, file offset or memory), with
 * every size checked against the bytes really present first.
 */
#include "weights_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zip.h>
#include <zlib.h>

#define MAX_ELEMS (INT64_C(1) << 40) /* 4 TiB of float32: more than any real tensor */
#define CRC_SLICE ((size_t)1 << 20) /* read-and-check slice of a zip entry (stays in the L2 cache) */

int sb_detect_format(const uint8_t *h, size_t n)
{
    if (n >= 4 && h[0] == 'P' && h[1] == 'K' && ((h[2] == 3 && h[3] == 4) || (h[2] == 5 && h[3] == 6)))
        return SB_FMT_TORCH_ZIP;
    if (n >= 8 && memcmp(h, "\x89HDF\r\n\x1a\n", 8) == 0)
        return SB_FMT_H5;
    if (n >= 2 && h[0] == 0x80 && h[1] >= 2 && h[1] <= 5) {
        /* legacy torch.save starts with the pickled magic number (LONG1 of 10 bytes) */
        if (n >= 4 && h[2] == 0x8a && h[3] == 10)
            return SB_FMT_TORCH_LEGACY;
        return SB_FMT_PICKLE;
    }
    return SB_FMT_UNKNOWN;
}

/* ===================================================================== */
/* tensor geometry                                                       */
/* ===================================================================== */
int tensor_check(const pv *t, int64_t *count, int64_t *lo, int64_t *hi, sb_error *err)
{
    int64_t n = 1, span = 0;
    if (t->offset < 0 || t->offset > MAX_ELEMS)
        return sb_fail(err, SB_EFORMAT, "tensor storage offset %lld is out of range", (long long)t->offset);
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0 || t->shape[d] > MAX_ELEMS || t->stride[d] < 0 || t->stride[d] > MAX_ELEMS)
            return sb_fail(err, SB_EFORMAT, "tensor size/stride out of range (dim %d: %lld / %lld)", d,
                           (long long)t->shape[d], (long long)t->stride[d]);
        if (t->shape[d] == 0)
            n = 0;
        else if (n > 0) {
            if (n > MAX_ELEMS / t->shape[d])
                return sb_fail(err, SB_EFORMAT, "tensor element count overflows");
            n *= t->shape[d];
        }
    }
    if (n > MAX_ELEMS)
        return sb_fail(err, SB_EFORMAT, "tensor has too many elements");
    if (n > 0)
        for (int d = 0; d < t->ndim; d++) {
            /* (shape-1)*stride <= 2^80 would overflow: both are < 2^40 */
            __int128 add = (__int128)(t->shape[d] - 1) * t->stride[d];
            if (add > MAX_ELEMS || span + add > MAX_ELEMS)
                return sb_fail(err, SB_EFORMAT, "tensor view spans too many elements");
            span += (int64_t)add;
        }
    *count = n;
    *lo = t->offset;
    *hi = n > 0 ? t->offset + span : t->offset - 1;
    if (n > 0 && *hi >= t->storage->numel)
        return sb_fail(err, SB_EFORMAT,
                       "tensor view (offset %lld, last element %lld) exceeds its storage '%s' of %lld elements",
                       (long long)t->offset, (long long)*hi, t->storage->key ? t->storage->key : "?",
                       (long long)t->storage->numel);
    return SB_OK;
}

int tensor_is_contiguous(const pv *t)
{
    int64_t expect = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect)
            return 0;
        expect *= t->shape[d];
    }
    return 1;
}

void tensor_gather(const pv *t, const uint8_t *span, int64_t lo, uint8_t *dst)
{
    int es = sb_dtype_size(t->dtype);
    int nd = t->ndim;
    if (nd == 0) {
        memcpy(dst, span + (t->offset - lo) * es, (size_t)es);
        return;
    }
    int64_t idx[SB_MAX_DIMS] = {0};
    int64_t inner = t->shape[nd - 1], istride = t->stride[nd - 1];
    for (int d = 0; d < nd; d++)
        if (t->shape[d] == 0)
            return;
    for (;;) {
        int64_t base = t->offset - lo;
        for (int d = 0; d < nd - 1; d++)
            base += idx[d] * t->stride[d];
        if (istride == 1) {
            memcpy(dst, span + base * es, (size_t)(inner * es));
            dst += inner * es;
        } else
            for (int64_t k = 0; k < inner; k++, dst += es)
                memcpy(dst, span + (base + k * istride) * es, (size_t)es);
        int d = nd - 2;
        while (d >= 0 && ++idx[d] == t->shape[d])
            idx[d--] = 0;
        if (d < 0)
            return;
    }
}

/* ===================================================================== */
/* persistent ids                                                        */
/* ===================================================================== */
static uint64_t fnv1a(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static uint64_t key_hash(const char *s) { return fnv1a(s, strlen(s)); }

/* Storage keys are looked up once per persistent id (a few per tensor):
 * a hash index, not a scan of every storage seen so far. */
static int add_store(torchfile *tf, pv *st)
{
    if (tf->nstores == tf->stores_cap) {
        size_t cap = tf->stores_cap ? tf->stores_cap * 2 : 64;
        pv **s = realloc(tf->stores, cap * sizeof *s);
        if (!s)
            return -1;
        tf->stores = s;
        tf->stores_cap = cap;
    }
    tf->stores[tf->nstores++] = st;
    if (2 * tf->nstores > tf->store_hcap) {
        size_t cap = tf->store_hcap ? tf->store_hcap * 2 : 128;
        while (cap < 2 * tf->nstores)
            cap *= 2;
        size_t *h = calloc(cap, sizeof *h);
        if (!h)
            return -1;
        free(tf->store_hash);
        tf->store_hash = h;
        tf->store_hcap = cap;
        for (size_t k = 0; k < tf->nstores; k++) {
            size_t i = key_hash(tf->stores[k]->key) & (cap - 1);
            while (h[i])
                i = (i + 1) & (cap - 1);
            h[i] = k + 1;
        }
        return 0;
    }
    size_t i = key_hash(st->key) & (tf->store_hcap - 1);
    while (tf->store_hash[i])
        i = (i + 1) & (tf->store_hcap - 1);
    tf->store_hash[i] = tf->nstores;
    return 0;
}

static pv *find_store(torchfile *tf, const char *key)
{
    if (!tf->store_hcap)
        return NULL;
    for (size_t i = key_hash(key) & (tf->store_hcap - 1);; i = (i + 1) & (tf->store_hcap - 1)) {
        size_t v = tf->store_hash[i];
        if (!v)
            return NULL;
        if (strcmp(tf->stores[v - 1]->key, key) == 0)
            return tf->stores[v - 1];
    }
}

/* Common part of both pid forms: ('storage', type, key, location, numel, ...) */
static int parse_pid(pvm *vm, pv *pid, size_t want_n, pv **st_out, sb_error *err)
{
    if (pid->kind != PV_TUPLE || pid->n != want_n)
        return sb_fail(err, SB_EFORMAT, "pickle: persistent id is not a %zu-tuple", want_n);
    pv **it = pid->items;
    if (it[0]->kind != PV_STR || strcmp(it[0]->s, "storage") != 0)
        return sb_fail(err, SB_EFORMAT, "pickle: persistent id of an unknown kind");
    if (it[1]->kind != PV_GLOBAL || (it[1]->gid != G_STORAGE_TYPE && it[1]->gid != G_DTYPE) || it[1]->dtype < 0)
        return sb_fail(err, SB_EFORMAT, "pickle: unknown dtype or storage type '%s'",
                       it[1]->kind == PV_GLOBAL && it[1]->s ? it[1]->s : pv_kind_name(it[1]->kind));
    if (it[2]->kind != PV_STR || it[2]->slen == 0 || it[2]->slen > 256)
        return sb_fail(err, SB_EFORMAT, "pickle: storage key is not a short string");
    if (it[3]->kind != PV_STR && it[3]->kind != PV_DEVICE)
        return sb_fail(err, SB_EFORMAT, "pickle: storage location is not a string");
    if (it[4]->kind != PV_INT || it[4]->i < 0 || it[4]->i > MAX_ELEMS)
        return sb_fail(err, SB_EFORMAT, "pickle: storage '%s' declares %lld elements (out of range)", it[2]->s,
                       it[4]->kind == PV_INT ? (long long)it[4]->i : -1LL);
    pv *st = pvm_new(vm, PV_STORAGE);
    if (!st || !(st->key = strdup(it[2]->s)) || !(st->location = strdup(it[3]->s)))
        return sb_fail(err, SB_ENOMEM, "out of memory");
    st->dtype = it[1]->dtype;
    st->numel = it[4]->i;
    *st_out = st;
    return SB_OK;
}

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const uint8_t *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* ---- the zip container ------------------------------------------------
 * The central directory is read and checked here, and stored entries (all
 * that torch.save writes) are read straight from the file at the offset
 * their local header gives, every local header checked against the
 * directory (signature, name, method, sizes, CRC) and every entry's CRC-32
 * checked as it is read. libzip is opened only for compressed entries (to
 * inflate them): opening it costs thousands of system calls on a
 * 740-entry checkpoint (a stat per entry, a seek and read per local
 * header), ~8 ms of a ~60 ms full-size load. */
static long zip_find(const torchfile *tf, const char *name)
{
    size_t n = strlen(name);
    if (!tf->zhcap)
        return -1;
    for (size_t i = fnv1a(name, n) & (tf->zhcap - 1);; i = (i + 1) & (tf->zhcap - 1)) {
        size_t v = tf->zhash[i];
        if (!v)
            return -1;
        const zdirent *z = &tf->zent[v - 1];
        if (z->name_len == n && memcmp(tf->zcd + z->name_off, name, n) == 0)
            return (long)(v - 1);
    }
}

/* The entry's name for messages (truncated to cap). */
static const char *zname(const torchfile *tf, const zdirent *z, char *buf, size_t cap)
{
    size_t n = z->name_len < cap - 1 ? z->name_len : cap - 1;
    memcpy(buf, tf->zcd + z->name_off, n);
    buf[n] = '\0';
    return buf;
}

/* End of central directory (zip64 aware), then every directory entry, each
 * size and offset checked against the file. */
static int zip_read_directory(torchfile *tf, sb_error *err)
{
    uint64_t fs = tf->file_size;
    if (fs < 22)
        return sb_fail(err, SB_EFORMAT, "%s: truncated or corrupt zip archive (%llu bytes)", tf->path,
                       (unsigned long long)fs);
    size_t tail = fs < 65557 ? (size_t)fs : 65557;
    uint8_t *t = malloc(tail);
    if (!t)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    if (wsrc_pread(&tf->src, t, tail, fs - tail) != 0) {
        free(t);
        return sb_fail(err, SB_EIO, "%s: cannot read the zip directory", tf->path);
    }
    long e = -1;
    for (long i = (long)tail - 22; i >= 0; i--)
        if (rd32(t + i) == 0x06054b50u && (uint64_t)i + 22 + rd16(t + i + 20) <= tail) {
            e = i;
            break;
        }
    if (e < 0) {
        free(t);
        return sb_fail(err, SB_EFORMAT, "%s: truncated or corrupt zip archive (no end of central directory)",
                       tf->path);
    }
    uint64_t end = fs - tail + (uint64_t)e; /* where the directory must end */
    uint64_t n = rd16(t + e + 10), cd_size = rd32(t + e + 12), cd_off = rd32(t + e + 16);
    int multi = rd16(t + e + 4) != 0 || rd16(t + e + 6) != 0 || rd16(t + e + 8) != n;
    if (e >= 20 && rd32(t + e - 20) == 0x07064b50u) { /* zip64 locator */
        uint64_t z64 = rd64(t + e - 20 + 8);
        uint8_t r[56];
        if (fs < 56 || z64 > fs - 56 || wsrc_pread(&tf->src, r, 56, z64) != 0 || rd32(r) != 0x06064b50u) {
            free(t);
            return sb_fail(err, SB_EFORMAT, "%s: bad zip64 end of central directory (truncated or corrupt zip)",
                           tf->path);
        }
        n = rd64(r + 32);
        cd_size = rd64(r + 40);
        cd_off = rd64(r + 48);
        multi = rd32(r + 16) != 0 || rd32(r + 20) != 0 || rd64(r + 24) != n;
        end = z64;
    }
    free(t);
    if (multi)
        return sb_fail(err, SB_EUNSUPPORTED, "%s: multi-disk zip archives are not supported", tf->path);
    if (cd_off > end || cd_size > end - cd_off || n > cd_size / 46)
        return sb_fail(err, SB_EFORMAT, "%s: corrupt zip central directory (truncated or corrupt zip)", tf->path);
    tf->zcd = malloc(cd_size ? (size_t)cd_size : 1);
    tf->zent = calloc(n ? (size_t)n : 1, sizeof *tf->zent);
    size_t hcap = 16;
    while (hcap < 2 * n + 2)
        hcap *= 2;
    tf->zhash = calloc(hcap, sizeof *tf->zhash);
    if (!tf->zcd || !tf->zent || !tf->zhash)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    tf->zhcap = hcap;
    tf->zcd_off = cd_off;
    if (wsrc_pread(&tf->src, tf->zcd, (size_t)cd_size, cd_off) != 0)
        return sb_fail(err, SB_EIO, "%s: cannot read the zip central directory", tf->path);
    const uint8_t *cd = tf->zcd;
    uint64_t p = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (p + 46 > cd_size || rd32(cd + p) != 0x02014b50u)
            return sb_fail(err, SB_EFORMAT, "%s: corrupt zip central directory (entry %llu)", tf->path,
                           (unsigned long long)i);
        uint64_t nl = rd16(cd + p + 28), xl = rd16(cd + p + 30), cl = rd16(cd + p + 32);
        if (p + 46 + nl + xl + cl > cd_size)
            return sb_fail(err, SB_EFORMAT, "%s: corrupt zip central directory (entry %llu)", tf->path,
                           (unsigned long long)i);
        zdirent *z = &tf->zent[i];
        z->flags = (uint16_t)rd16(cd + p + 8);
        z->method = (uint16_t)rd16(cd + p + 10);
        z->crc = rd32(cd + p + 16);
        z->csize = rd32(cd + p + 20);
        z->usize = rd32(cd + p + 24);
        z->lho = rd32(cd + p + 42);
        z->name_off = p + 46;
        z->name_len = (uint32_t)nl;
        if (z->usize == 0xffffffffu || z->csize == 0xffffffffu || z->lho == 0xffffffffu) {
            /* zip64 extra field: the sizes and offset that overflowed, in this order */
            const uint8_t *x = cd + p + 46 + nl, *xe = x + xl;
            while (x + 4 <= xe) {
                uint32_t id = rd16(x), len = rd16(x + 2);
                if (x + 4 + len > xe)
                    break;
                if (id == 1) {
                    const uint8_t *q = x + 4, *qe = x + 4 + len;
                    if (z->usize == 0xffffffffu && q + 8 <= qe) {
                        z->usize = rd64(q);
                        q += 8;
                    }
                    if (z->csize == 0xffffffffu && q + 8 <= qe) {
                        z->csize = rd64(q);
                        q += 8;
                    }
                    if (z->lho == 0xffffffffu && q + 8 <= qe)
                        z->lho = rd64(q);
                    break;
                }
                x += 4 + len;
            }
        }
        char nm[256];
        if (z->lho >= cd_off || z->csize > cd_off - z->lho)
            return sb_fail(err, SB_EFORMAT, "%s: zip entry '%s' lies outside the archive's data (truncated or corrupt zip)",
                           tf->path, zname(tf, z, nm, sizeof nm));
        if (z->flags & 1)
            return sb_fail(err, SB_EUNSUPPORTED, "%s: zip entry '%s' is encrypted", tf->path,
                           zname(tf, z, nm, sizeof nm));
        if (z->method != ZIP_CM_STORE && z->method != ZIP_CM_DEFLATE)
            return sb_fail(err, SB_EUNSUPPORTED, "%s: zip entry '%s' uses compression method %d", tf->path,
                           zname(tf, z, nm, sizeof nm), z->method);
        /* inflated sizes are bounded by deflate's maximum ratio: no size is taken on trust */
        if ((z->method == ZIP_CM_STORE && z->usize != z->csize) || z->usize / 1032 > z->csize + 1)
            return sb_fail(err, SB_EFORMAT, "%s: zip entry '%s' declares an impossible size", tf->path,
                           zname(tf, z, nm, sizeof nm));
        size_t h = fnv1a(cd + z->name_off, (size_t)nl) & (hcap - 1);
        while (tf->zhash[h])
            h = (h + 1) & (hcap - 1);
        tf->zhash[h] = (size_t)i + 1;
        p += 46 + nl + xl + cl;
    }
    tf->zip_n = (size_t)n;
    return SB_OK;
}

/* Checks a stored entry's local header (its first `have` bytes in lh)
 * against the central directory and gives the offset of its data. *more = 1
 * (and nothing else is done) if the name goes past the bytes given. */
static int zip_check_local(torchfile *tf, const zdirent *z, const uint8_t *lh, size_t have, uint64_t *at, int *more,
                           sb_error *err)
{
    char nm[1024];
    *more = 0;
    if (have < 30 || rd32(lh) != 0x04034b50u)
        return sb_fail(err, SB_EFORMAT, "zip entry '%s': bad local header (corrupt zip)", zname(tf, z, nm, sizeof nm));
    uint32_t lnl = rd16(lh + 26), lxl = rd16(lh + 28), lflags = rd16(lh + 6);
    int same = lnl == z->name_len && z->lho + 30 + lnl <= tf->file_size && rd16(lh + 8) == z->method &&
               (lflags & 8) == (z->flags & 8);
    if (same && lnl <= 1024) {
        if (30 + (size_t)lnl > have) {
            *more = 1;
            return SB_OK;
        }
        same = memcmp(lh + 30, tf->zcd + z->name_off, lnl) == 0;
    }
    if (same && !(lflags & 8)) { /* sizes and CRC are in the local header too (0xffffffff: in its zip64 extra) */
        uint32_t lcrc = rd32(lh + 14), lcs = rd32(lh + 18), lus = rd32(lh + 22);
        same = lcrc == z->crc && (lcs == 0xffffffffu || lcs == z->csize) && (lus == 0xffffffffu || lus == z->usize);
    }
    if (!same)
        return sb_fail(err, SB_EFORMAT, "zip entry '%s': local header disagrees with the central directory (corrupt zip)",
                       zname(tf, z, nm, sizeof nm));
    uint64_t d = z->lho + 30 + lnl + lxl;
    if (d > tf->zcd_off || z->csize > tf->zcd_off - d)
        return sb_fail(err, SB_EFORMAT, "zip entry '%s' extends past the end of the file (truncated zip)",
                       zname(tf, z, nm, sizeof nm));
    *at = d;
    return SB_OK;
}

/* The offset of a stored entry's data, from its local header. */
static int zip_local_data(torchfile *tf, const zdirent *z, uint64_t *at, sb_error *err)
{
    uint8_t lh[30 + 1024];
    size_t want = 30 + (z->name_len < 1024 ? z->name_len : 1024);
    int more = 0;
    if (tf->file_size >= 30 && z->lho <= tf->file_size - 30) {
        if (want > tf->file_size - z->lho)
            want = (size_t)(tf->file_size - z->lho);
        if (wsrc_pread(&tf->src, lh, want, z->lho) == 0) {
            int rc = zip_check_local(tf, z, lh, want, at, &more, err);
            if (rc || !more)
                return rc;
        }
    }
    char nm[1024];
    return sb_fail(err, SB_EFORMAT, "zip entry '%s': bad local header (corrupt zip)", zname(tf, z, nm, sizeof nm));
}

/* libzip over the same file or memory, opened on first need (a compressed entry). */
static int zip_libzip(torchfile *tf, sb_error *err)
{
    if (tf->zip)
        return SB_OK;
    zip_error_t ze;
    zip_error_init(&ze);
    if (tf->src.mem) {
        zip_source_t *src = zip_source_buffer_create(tf->src.mem, (zip_uint64_t)tf->src.size, 0, &ze);
        if (src) {
            tf->zip = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
            if (!tf->zip)
                zip_source_free(src);
        }
    } else {
        int zerr = 0;
        tf->zip = zip_open(tf->path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
        if (!tf->zip)
            zip_error_init_with_code(&ze, zerr);
    }
    int rc = tf->zip ? SB_OK
                     : sb_fail(err, SB_EFORMAT, "%s: truncated or corrupt zip archive (%s)", tf->path,
                               zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return rc;
}

/* libzip's index of a named entry (for compressed entries). */
static int zip_libzip_index(torchfile *tf, const char *name, int64_t *idx, sb_error *err)
{
    int rc = zip_libzip(tf, err);
    if (rc)
        return rc;
    zip_int64_t i = zip_name_locate(tf->zip, name, 0);
    if (i < 0)
        return sb_fail(err, SB_EFORMAT, "%s: zip entry '%s' not found by libzip (corrupt zip)", tf->path, name);
    *idx = i;
    return SB_OK;
}

static int zip_persid(pvm *vm, void *arg, pv *pid, pv **out, sb_error *err)
{
    torchfile *tf = arg;
    pv *st;
    int rc = parse_pid(vm, pid, 5, &st, err);
    if (rc)
        return rc;
    pv *old = find_store(tf, st->key);
    if (old) {
        if (old->dtype != st->dtype || old->numel != st->numel)
            return sb_fail(err, SB_EFORMAT, "storage '%s' is declared twice with different types", st->key);
        *out = old;
        return SB_OK;
    }
    char name[1024];
    snprintf(name, sizeof name, "%s/data/%s", tf->prefix, st->key);
    long idx = zip_find(tf, name);
    if (idx < 0)
        return sb_fail(err, SB_EFORMAT, "zip entry '%s' is missing (storage of %lld %s elements)", name,
                       (long long)st->numel, sb_dtype_name(st->dtype));
    const zdirent *z = &tf->zent[idx];
    uint64_t want = (uint64_t)st->numel * (uint64_t)sb_dtype_size(st->dtype);
    if (z->usize != want)
        return sb_fail(err, SB_EFORMAT,
                       "zip entry '%s' has %llu bytes but its storage claims %lld %s elements (%llu bytes)", name,
                       (unsigned long long)z->usize, (long long)st->numel, sb_dtype_name(st->dtype),
                       (unsigned long long)want);
    if (z->method == ZIP_CM_STORE) { /* read straight from the file; its local header is read with its data */
        st->backing = ST_ZIPSTORED;
        st->zip_index = idx;
        st->has_crc = 1;
        st->crc = z->crc;
    } else {
        st->backing = ST_ZIP;
        if ((rc = zip_libzip_index(tf, name, &st->zip_index, err)))
            return rc;
    }
    if (add_store(tf, st))
        return sb_fail(err, SB_ENOMEM, "out of memory");
    *out = st;
    return SB_OK;
}

typedef struct {
    torchfile *tf;
    pv **local; /* storages of this legacy stream */
    size_t n, cap;
} legacy_ctx;

static int legacy_persid(pvm *vm, void *arg, pv *pid, pv **out, sb_error *err)
{
    legacy_ctx *lc = arg;
    pv *st;
    int rc = parse_pid(vm, pid, 6, &st, err);
    if (rc)
        return rc;
    if (pid->items[5]->kind != PV_NONE)
        return sb_fail(err, SB_EUNSUPPORTED, "pickle: storage views (view_metadata) are not supported");
    for (size_t i = 0; i < lc->n; i++)
        if (strcmp(lc->local[i]->key, st->key) == 0) {
            if (lc->local[i]->dtype != st->dtype || lc->local[i]->numel != st->numel)
                return sb_fail(err, SB_EFORMAT, "storage '%s' is declared twice with different types", st->key);
            *out = lc->local[i];
            return SB_OK;
        }
    if (lc->n == lc->cap) {
        size_t cap = lc->cap ? lc->cap * 2 : 8;
        pv **l = realloc(lc->local, cap * sizeof *l);
        if (!l)
            return sb_fail(err, SB_ENOMEM, "out of memory");
        lc->local = l;
        lc->cap = cap;
    }
    lc->local[lc->n++] = st;
    *out = st;
    return SB_OK;
}

static const uint8_t legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

int legacy_load(pvm *vm, wsrc *s, pv **out, sb_error *err)
{
    legacy_ctx lc = {0};
    pvm_persid_fn save_fn = vm->persistent_load;
    void *save_arg = vm->persid_arg;
    pv *v = NULL;
    int rc = pvm_run(vm, s, &v, err);
    if (rc)
        goto done;
    if (v->kind != PV_BIGINT || v->slen != 10 || memcmp(v->s, legacy_magic, 10) != 0) {
        rc = sb_fail(err, SB_EFORMAT, "not a legacy torch.save stream (bad magic number)");
        goto done;
    }
    if ((rc = pvm_run(vm, s, &v, err)))
        goto done;
    if (v->kind != PV_INT || v->i != 1001) {
        rc = sb_fail(err, SB_EFORMAT, "legacy torch.save stream: protocol %lld, expected 1001",
                     v->kind == PV_INT ? (long long)v->i : -1LL);
        goto done;
    }
    if ((rc = pvm_run(vm, s, &v, err)))
        goto done;
    if (v->kind != PV_DICT) {
        rc = sb_fail(err, SB_EFORMAT, "legacy torch.save stream: sys info is a %s", pv_kind_name(v->kind));
        goto done;
    }
    pv *le = pv_dict_get(v, "little_endian");
    if (le && le->kind == PV_BOOL && !le->i) {
        rc = sb_fail(err, SB_EUNSUPPORTED, "legacy torch.save stream written on a big-endian machine");
        goto done;
    }
    vm->persistent_load = legacy_persid;
    vm->persid_arg = &lc;
    pv *obj = NULL;
    if ((rc = pvm_run(vm, s, &obj, err)))
        goto done;
    vm->persistent_load = NULL;
    pv *keys = NULL;
    if ((rc = pvm_run(vm, s, &keys, err)))
        goto done;
    if (keys->kind != PV_LIST) {
        rc = sb_fail(err, SB_EFORMAT, "legacy torch.save stream: storage key list is a %s", pv_kind_name(keys->kind));
        goto done;
    }
    for (size_t i = 0; i < keys->n; i++) {
        pv *k = keys->items[i];
        pv *st = NULL;
        if (k->kind == PV_STR)
            for (size_t j = 0; j < lc.n; j++)
                if (strcmp(lc.local[j]->key, k->s) == 0)
                    st = lc.local[j];
        if (!st) {
            rc = sb_fail(err, SB_EFORMAT, "legacy torch.save stream: storage key %zu is unknown", i);
            goto done;
        }
        int64_t cnt;
        if (wsrc_read(s, &cnt, 8) != 0) {
            rc = sb_fail(err, SB_EFORMAT, "legacy torch.save stream ends early (storage '%s' header)", st->key);
            goto done;
        }
        if (cnt != st->numel) {
            rc = sb_fail(err, SB_EFORMAT,
                         "legacy torch.save stream: storage '%s' holds %lld elements but its id declares %lld",
                         st->key, (long long)cnt, (long long)st->numel);
            goto done;
        }
        uint64_t bytes = (uint64_t)cnt * (uint64_t)sb_dtype_size(st->dtype);
        if (bytes > wsrc_left(s)) {
            rc = sb_fail(err, SB_EFORMAT,
                         "legacy torch.save stream ends early: storage '%s' declares %lld %s elements "
                         "(%llu bytes), %llu bytes left",
                         st->key, (long long)cnt, sb_dtype_name(st->dtype), (unsigned long long)bytes,
                         (unsigned long long)wsrc_left(s));
            goto done;
        }
        st->backing = ST_SRC;
        st->data_off = s->pos;
        wsrc_skip(s, bytes);
    }
    for (size_t j = 0; j < lc.n; j++)
        if (lc.local[j]->backing == ST_NONE) {
            rc = sb_fail(err, SB_EFORMAT, "legacy torch.save stream: storage '%s' has no data", lc.local[j]->key);
            goto done;
        }
    *out = obj;
done:
    vm->persistent_load = save_fn;
    vm->persid_arg = save_arg;
    free(lc.local);
    return rc;
}

/* ===================================================================== */
/* opening                                                               */
/* ===================================================================== */
static int open_zip(torchfile *tf, sb_error *err)
{
    int rc = zip_read_directory(tf, err);
    if (rc)
        return rc;
    /* <archive>/data.pkl: the archive folder is whatever torch named it */
    long pkl = -1;
    for (size_t i = 0; i < tf->zip_n && pkl < 0; i++) {
        const zdirent *z = &tf->zent[i];
        const char *nm = (const char *)tf->zcd + z->name_off;
        const char *slash = memchr(nm, '/', z->name_len);
        if (slash && (size_t)(slash - nm) < sizeof tf->prefix && z->name_len - (size_t)(slash - nm) == 9 &&
            memcmp(slash, "/data.pkl", 9) == 0) {
            memcpy(tf->prefix, nm, (size_t)(slash - nm));
            tf->prefix[slash - nm] = '\0';
            pkl = (long)i;
        }
    }
    if (pkl < 0)
        return sb_fail(err, SB_EFORMAT, "%s: zip archive without <archive>/data.pkl: not a torch.save checkpoint",
                       tf->path);
    const zdirent *z = &tf->zent[pkl];
    if (z->usize > (UINT64_C(1) << 31))
        return sb_fail(err, SB_EFORMAT, "%s: data.pkl of %llu bytes", tf->path, (unsigned long long)z->usize);
    size_t n = (size_t)z->usize;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return sb_fail(err, SB_ENOMEM, "%s: out of memory", tf->path);
    int ok = 0;
    if (z->method == ZIP_CM_STORE) {
        uint64_t at;
        if ((rc = zip_local_data(tf, z, &at, err))) {
            free(buf);
            return sb_error_prefix(err, "%s", tf->path);
        }
        ok = wsrc_pread(&tf->src, buf, n, at) == 0 && sb_crc32_update(0, buf, n) == z->crc;
    } else {
        char name[1024];
        int64_t idx;
        snprintf(name, sizeof name, "%s/data.pkl", tf->prefix);
        if ((rc = zip_libzip_index(tf, name, &idx, err))) {
            free(buf);
            return rc;
        }
        zip_file_t *zf = zip_fopen_index(tf->zip, (zip_uint64_t)idx, 0);
        zip_int64_t got = zf ? zip_fread(zf, buf, n) : -1;
        uint8_t extra;
        zip_int64_t more = zf && got == (zip_int64_t)n ? zip_fread(zf, &extra, 1) : 0; /* EOF: CRC check */
        if (zf)
            zip_fclose(zf);
        ok = got == (zip_int64_t)n && more == 0;
    }
    if (!ok) {
        free(buf);
        return sb_fail(err, SB_EFORMAT, "%s: cannot read %s/data.pkl (truncated or corrupt zip entry)", tf->path,
                       tf->prefix);
    }
    tf->scratch = buf; /* keep the pickle bytes alive during the run */
    tf->scratch_cap = n;
    wsrc ps;
    wsrc_init_mem(&ps, buf, n);
    tf->vm.persistent_load = zip_persid;
    tf->vm.persid_arg = tf;
    rc = pvm_run(&tf->vm, &ps, &tf->root, err);
    tf->vm.persistent_load = NULL;
    free(tf->scratch);
    tf->scratch = NULL;
    tf->scratch_cap = 0;
    if (rc)
        return sb_error_prefix(err, "%s: %s/data.pkl", tf->path, tf->prefix);
    return SB_OK;
}

int torchfile_open(torchfile *tf, const char *name, const void *mem, size_t len, int fmt, sb_error *err)
{
    memset(tf, 0, sizeof *tf);
    tf->fd = -1;
    pvm_init(&tf->vm);
    snprintf(tf->path, sizeof tf->path, "%s", name);
    tf->fmt = fmt;
    if (mem)
        tf->file_size = len;
    else {
        struct stat sbuf;
        if (stat(name, &sbuf) != 0)
            return sb_fail(err, SB_EIO, "%s: %s", name, strerror(errno));
        tf->file_size = (uint64_t)sbuf.st_size;
    }
    if (fmt == SB_FMT_TORCH_ZIP) {
        if (mem)
            wsrc_init_mem(&tf->src, mem, len);
        else {
            tf->fd = open(name, O_RDONLY | O_CLOEXEC);
            if (tf->fd < 0)
                return sb_fail(err, SB_EIO, "%s: %s", name, strerror(errno));
            if (wsrc_init_fd(&tf->src, tf->fd, 0, tf->file_size, 4096))
                return sb_fail(err, SB_ENOMEM, "%s: out of memory", name);
        }
        return open_zip(tf, err);
    }
    if (fmt != SB_FMT_TORCH_LEGACY && fmt != SB_FMT_PICKLE)
        return sb_fail(err, SB_EFORMAT, "%s: not a torch file", name);
    if (mem)
        wsrc_init_mem(&tf->src, mem, len);
    else {
        tf->fd = open(name, O_RDONLY | O_CLOEXEC);
        if (tf->fd < 0)
            return sb_fail(err, SB_EIO, "%s: %s", name, strerror(errno));
        if (wsrc_init_fd(&tf->src, tf->fd, 0, tf->file_size, 1 << 20))
            return sb_fail(err, SB_ENOMEM, "%s: out of memory", name);
        tf->vm.lazy_bytes_min = 4096; /* blobs stay in the file */
    }
    int rc;
    if (fmt == SB_FMT_TORCH_LEGACY)
        rc = legacy_load(&tf->vm, &tf->src, &tf->root, err);
    else
        rc = pvm_run(&tf->vm, &tf->src, &tf->root, err);
    if (rc)
        return sb_error_prefix(err, "%s", name);
    return SB_OK;
}

void torchfile_close(torchfile *tf)
{
    if (!tf)
        return;
    if (tf->zip)
        zip_discard(tf->zip);
    wsrc_free(&tf->src);
    if (tf->fd >= 0)
        close(tf->fd);
    pvm_free(&tf->vm);
    free(tf->stores);
    free(tf->store_hash);
    free(tf->scratch);
    free(tf->zcd);
    free(tf->zent);
    free(tf->zhash);
    memset(tf, 0, sizeof *tf);
    tf->fd = -1;
}

/* ===================================================================== */
/* reading storages                                                      */
/* ===================================================================== */
/* Reads [off, off+n) of a raw storage at data_off of the source from byte
 * `done` on (the bytes before are in dst already, their CRC-32 in crc). A
 * whole zip entry is read in slices that stay in the L2 cache, each checked
 * right after its read: the CRC pass costs no second trip through memory. */
static int read_src(torchfile *tf, const pv *st, uint64_t off, uint64_t n, uint8_t *dst, uint64_t done, uint32_t crc,
                    sb_error *err)
{
    uint64_t total = (uint64_t)st->numel * (uint64_t)sb_dtype_size(st->dtype);
    int whole = st->has_crc && off == 0 && n == total;
    size_t slice = whole ? CRC_SLICE : (size_t)n;
    while (done < n) {
        size_t k = n - done < slice ? (size_t)(n - done) : slice;
        int r = wsrc_pread(&tf->src, dst + done, k, st->data_off + off + done);
        if (r == -2)
            return sb_fail(err, SB_EIO, "read error: %s", strerror(errno));
        if (r)
            return sb_fail(err, SB_EFORMAT, "storage '%s' is truncated", st->key);
        if (whole)
            crc = sb_crc32_update(crc, dst + done, k);
        done += k;
    }
    if (whole && crc != st->crc)
        return sb_fail(err, SB_EFORMAT, "zip entry %s/data/%s is corrupt (CRC-32 mismatch)", tf->prefix, st->key);
    return SB_OK;
}

/* A stored zip entry's first read: its local header and its first slice in
 * one system call where the data starts where torch.save puts it (the next
 * 64-byte boundary after the header and a 4-byte extra field), the header
 * checked; otherwise the header alone first. Then it is an ST_SRC storage. */
static int read_zipstored(torchfile *tf, pv *st, uint64_t off, uint64_t n, uint8_t *dst, sb_error *err)
{
    const zdirent *z = &tf->zent[st->zip_index];
    uint64_t total = (uint64_t)st->numel * (uint64_t)sb_dtype_size(st->dtype);
    uint64_t guess = (z->lho + 30 + z->name_len + 4 + 63) & ~(uint64_t)63;
    uint8_t hdr[2048];
    size_t hl = (size_t)(guess - z->lho);
    int rc;
    if (!tf->src.mem && off == 0 && n == total && n > 0 && hl <= sizeof hdr && guess <= tf->zcd_off &&
        n <= tf->zcd_off - guess) {
        size_t k = n < CRC_SLICE ? (size_t)n : CRC_SLICE;
        struct iovec iov[2] = {{hdr, hl}, {dst, k}};
        ssize_t r = preadv(tf->src.fd, iov, 2, (off_t)(tf->src.base + z->lho));
        if (r == (ssize_t)(hl + k)) {
            uint64_t at;
            int more;
            if ((rc = zip_check_local(tf, z, hdr, hl, &at, &more, err)))
                return rc;
            if (!more) {
                st->data_off = at;
                st->backing = ST_SRC;
                if (at == guess) /* the first slice is in place */
                    return read_src(tf, st, off, n, dst, k, sb_crc32_update(0, dst, k), err);
                return read_src(tf, st, off, n, dst, 0, 0, err);
            }
        }
    }
    if ((rc = zip_local_data(tf, z, &st->data_off, err)))
        return rc;
    st->backing = ST_SRC;
    return read_src(tf, st, off, n, dst, 0, 0, err);
}

static int read_storage(torchfile *tf, pv *st, uint64_t off, uint64_t n, void *dst, sb_error *err)
{
    uint64_t total = (uint64_t)st->numel * (uint64_t)sb_dtype_size(st->dtype);
    if (off > total || n > total - off)
        return sb_fail(err, SB_EFORMAT, "read outside storage '%s'", st->key);
    if (st->backing == ST_MEM) {
        memcpy(dst, st->mem + off, (size_t)n);
        return SB_OK;
    }
    if (st->backing == ST_ZIPSTORED)
        return read_zipstored(tf, st, off, n, dst, err);
    if (st->backing == ST_SRC)
        return read_src(tf, st, off, n, dst, 0, 0, err);
    if (st->backing != ST_ZIP)
        return sb_fail(err, SB_EFORMAT, "storage '%s' has no data", st->key);
    zip_file_t *zf = zip_fopen_index(tf->zip, (zip_uint64_t)st->zip_index, 0);
    if (!zf)
        return sb_fail(err, SB_EFORMAT, "cannot open zip entry %s/data/%s (%s)", tf->prefix, st->key,
                       zip_strerror(tf->zip));
    int rc = SB_OK;
    if (off > 0 && zip_fseek(zf, (zip_int64_t)off, SEEK_SET) != 0) {
        /* compressed entry: read and drop */
        uint8_t tmp[65536];
        uint64_t left = off;
        while (left > 0) {
            zip_int64_t r = zip_fread(zf, tmp, left < sizeof tmp ? left : sizeof tmp);
            if (r <= 0) {
                rc = sb_fail(err, SB_EFORMAT, "zip entry %s/data/%s is truncated or corrupt", tf->prefix,
                             st->key);
                goto out;
            }
            left -= (uint64_t)r;
        }
    }
    uint8_t *p = dst;
    uint64_t left = n;
    while (left > 0) {
        zip_int64_t r = zip_fread(zf, p, left);
        if (r <= 0) {
            rc = sb_fail(err, SB_EFORMAT, "zip entry %s/data/%s is truncated or corrupt (%s)", tf->prefix,
                         st->key, r < 0 ? zip_file_strerror(zf) : "short read");
            goto out;
        }
        p += r;
        left -= (uint64_t)r;
    }
    if (off == 0 && n == total) { /* whole entry: read to EOF so libzip checks the CRC */
        uint8_t extra;
        zip_int64_t r = zip_fread(zf, &extra, 1);
        if (r != 0)
            rc = sb_fail(err, SB_EFORMAT, "zip entry %s/data/%s is corrupt (%s)", tf->prefix, st->key,
                         r < 0 ? zip_file_strerror(zf) : "longer than declared");
    }
out:
    zip_fclose(zf);
    return rc;
}

static int grow_scratch(torchfile *tf, size_t n, sb_error *err)
{
    if (n <= tf->scratch_cap)
        return SB_OK;
    uint8_t *p = realloc(tf->scratch, n);
    if (!p)
        return sb_fail(err, SB_ENOMEM, "out of memory (%zu bytes)", n);
    tf->scratch = p;
    tf->scratch_cap = n;
    return SB_OK;
}

int torchfile_tensor_raw(torchfile *tf, const pv *t, void *dst, sb_error *err)
{
    int64_t count, lo, hi;
    int rc = tensor_check(t, &count, &lo, &hi, err);
    if (rc)
        return rc;
    if (count == 0)
        return SB_OK;
    uint64_t es = (uint64_t)sb_dtype_size(t->dtype);
    if (tensor_is_contiguous(t))
        return read_storage(tf, t->storage, (uint64_t)t->offset * es, (uint64_t)count * es, dst, err);
    uint64_t span = (uint64_t)(hi - lo + 1) * es; /* bounded by the storage, checked against the file */
    if ((rc = grow_scratch(tf, (size_t)span, err)))
        return rc;
    if ((rc = read_storage(tf, t->storage, (uint64_t)lo * es, span, tf->scratch, err)))
        return rc;
    tensor_gather(t, tf->scratch, lo, dst);
    return SB_OK;
}

int torchfile_tensor_f32(torchfile *tf, const pv *t, float *dst, sb_error *err)
{
    if (t->dtype == SB_DT_F32)
        return torchfile_tensor_raw(tf, t, dst, err);
    int64_t count, lo, hi;
    int rc = tensor_check(t, &count, &lo, &hi, err);
    if (rc)
        return rc;
    size_t bytes = (size_t)count * (size_t)sb_dtype_size(t->dtype);
    uint8_t *raw = malloc(bytes ? bytes : 1);
    if (!raw)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    rc = torchfile_tensor_raw(tf, t, raw, err);
    if (rc == SB_OK)
        sb_convert_to_f32(t->dtype, raw, dst, (size_t)count);
    free(raw);
    return rc;
}

/* ===================================================================== */
/* parallel reads                                                        */
/* ===================================================================== */
/* A load's stored entries are read on several threads, each taking whole
 * tensors in file order (so a big entry is one thread's page faults, copy
 * and CRC slices in a row, and the file is read roughly front to back).
 * Only tensors whose read touches nothing shared qualify: the whole of a
 * stored zip entry used by this one tensor (its storage is then changed by
 * that thread only), float32 (no conversion buffer), contiguous (no
 * scratch). The read is torchfile_tensor_f32 itself: the bytes, the CRC
 * check and the message are those of a serial load. */
int torchfile_tensor_parallel_ok(const pv *t)
{
    const pv *st = t ? t->storage : NULL;
    int64_t count, lo, hi;
    if (!st || t->kind != PV_TENSOR || t->dtype != SB_DT_F32 || st->dtype != SB_DT_F32 ||
        st->backing != ST_ZIPSTORED || st->refs != 1 || t->offset != 0 || !tensor_is_contiguous(t))
        return 0;
    if (tensor_check(t, &count, &lo, &hi, NULL) != SB_OK)
        return 0;
    return count > 0 && count == st->numel;
}

typedef struct {
    torchfile *tf;
    const tf_read_job *jobs;
    size_t n;
    int *status;
    atomic_size_t next; /* the next job to take */
    atomic_size_t stop; /* the lowest failed job so far (n: none): later ones are not started */
    pthread_mutex_t mu; /* guards first and err (when several threads run) */
    int locked;
    size_t first;
    sb_error err;
} par_state;

static void *par_worker(void *arg)
{
    par_state *ps = arg;
    sb_error err;
    for (;;) {
        size_t i = atomic_fetch_add(&ps->next, 1);
        if (i >= ps->n || i > atomic_load(&ps->stop))
            break; /* jobs are taken in order: every later one is past the stop too */
        int rc = torchfile_tensor_f32(ps->tf, ps->jobs[i].t, ps->jobs[i].dst, &err);
        ps->status[i] = rc;
        if (rc) {
            if (ps->locked)
                pthread_mutex_lock(&ps->mu);
            if (i < ps->first) {
                ps->first = i;
                ps->err = err;
                atomic_store(&ps->stop, i);
            }
            if (ps->locked)
                pthread_mutex_unlock(&ps->mu);
        }
    }
    return NULL;
}

#define MAX_LOAD_THREADS 256

int torchfile_read_parallel(torchfile *tf, const tf_read_job *jobs, size_t n, int threads, int *status,
                            size_t *first, sb_error *err)
{
    for (size_t i = 0; i < n; i++)
        status[i] = -1;
    *first = n;
    if (n == 0)
        return SB_OK;
    if (threads < 1)
        threads = 1;
    if (threads > MAX_LOAD_THREADS)
        threads = MAX_LOAD_THREADS;
    if ((size_t)threads > n)
        threads = (int)n;
    par_state ps;
    memset(&ps, 0, sizeof ps);
    ps.tf = tf;
    ps.jobs = jobs;
    ps.n = n;
    ps.status = status;
    atomic_init(&ps.next, 0);
    atomic_init(&ps.stop, n);
    ps.first = n;
    ps.locked = threads > 1 && pthread_mutex_init(&ps.mu, NULL) == 0;
    if (!ps.locked)
        threads = 1; /* no lock, no helpers: the caller's thread reads them all */
    pthread_t tid[MAX_LOAD_THREADS];
    int started = 0;
    /* a helper that cannot be created leaves its share to the others */
    for (int k = 1; k < threads; k++)
        if (pthread_create(&tid[started], NULL, par_worker, &ps) == 0)
            started++;
    par_worker(&ps);
    for (int k = 0; k < started; k++)
        pthread_join(tid[k], NULL);
    if (ps.locked)
        pthread_mutex_destroy(&ps.mu);
    if (ps.first == n)
        return SB_OK;
    *first = ps.first;
    if (err)
        *err = ps.err;
    return ps.err.code ? ps.err.code : SB_EFORMAT;
}
