/*
 * torch.save formats, read without Python:
 *  - the zip format (torch >= 1.6): <archive>/data.pkl is a protocol-2
 *    pickle whose persistent ids ('storage', StorageType|dtype, key,
 *    location, numel) name raw little-endian storages <archive>/data/<key>
 *    (read with libzip);
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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>
#include <zlib.h>

#define MAX_ELEMS (INT64_C(1) << 40) /* 4 TiB of float32: more than any real tensor */

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
    return 0;
}

static pv *find_store(torchfile *tf, const char *key)
{
    for (size_t i = tf->nstores; i-- > 0;) /* recent first: pids repeat the latest storage */
        if (strcmp(tf->stores[i]->key, key) == 0)
            return tf->stores[i];
    return NULL;
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

/* Local header offsets from the central directory (libzip does not expose
 * them); zip64 aware. Every offset is checked against the file size. */
static int zip_local_offsets(torchfile *tf, sb_error *err)
{
    uint64_t fs = tf->file_size;
    if (fs < 22)
        return sb_fail(err, SB_EFORMAT, "%s: truncated zip archive", tf->path);
    size_t tail = fs < 65557 ? (size_t)fs : 65557;
    uint8_t *t = malloc(tail);
    if (!t)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    int rc = SB_OK;
    if (wsrc_pread(&tf->src, t, tail, fs - tail) != 0) {
        free(t);
        return sb_fail(err, SB_EFORMAT, "%s: cannot read the zip directory", tf->path);
    }
    long e = -1;
    for (long i = (long)tail - 22; i >= 0; i--)
        if (rd32(t + i) == 0x06054b50u) {
            e = i;
            break;
        }
    if (e < 0) {
        free(t);
        return sb_fail(err, SB_EFORMAT, "%s: no end of central directory (truncated or corrupt zip)", tf->path);
    }
    uint64_t n = rd16(t + e + 10), cd_size = rd32(t + e + 12), cd_off = rd32(t + e + 16);
    if (e >= 20 && rd32(t + e - 20) == 0x07064b50u) { /* zip64 locator */
        uint64_t z64 = rd64(t + e - 20 + 8);
        uint8_t r[56];
        if (z64 > fs - 56 || wsrc_pread(&tf->src, r, 56, z64) != 0 || rd32(r) != 0x06064b50u) {
            free(t);
            return sb_fail(err, SB_EFORMAT, "%s: bad zip64 end of central directory", tf->path);
        }
        n = rd64(r + 32);
        cd_size = rd64(r + 40);
        cd_off = rd64(r + 48);
    }
    free(t);
    if (cd_off > fs || cd_size > fs - cd_off || n > cd_size / 46)
        return sb_fail(err, SB_EFORMAT, "%s: corrupt zip central directory", tf->path);
    uint8_t *cd = malloc(cd_size ? (size_t)cd_size : 1);
    tf->zip_lho = calloc(n ? (size_t)n : 1, sizeof *tf->zip_lho);
    if (!cd || !tf->zip_lho) {
        free(cd);
        return sb_fail(err, SB_ENOMEM, "out of memory");
    }
    if (wsrc_pread(&tf->src, cd, (size_t)cd_size, cd_off) != 0) {
        free(cd);
        return sb_fail(err, SB_EFORMAT, "%s: cannot read the zip central directory", tf->path);
    }
    uint64_t p = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (p + 46 > cd_size || rd32(cd + p) != 0x02014b50u) {
            rc = sb_fail(err, SB_EFORMAT, "%s: corrupt zip central directory (entry %llu)", tf->path,
                         (unsigned long long)i);
            break;
        }
        uint64_t nl = rd16(cd + p + 28), xl = rd16(cd + p + 30), cl = rd16(cd + p + 32);
        uint64_t lho = rd32(cd + p + 42);
        uint32_t usz = rd32(cd + p + 24), csz = rd32(cd + p + 20);
        if (p + 46 + nl + xl + cl > cd_size) {
            rc = sb_fail(err, SB_EFORMAT, "%s: corrupt zip central directory (entry %llu)", tf->path,
                         (unsigned long long)i);
            break;
        }
        if (lho == 0xffffffffu) { /* zip64 extra: usize, csize, offset as present */
            const uint8_t *x = cd + p + 46 + nl, *xe = x + xl;
            while (x + 4 <= xe) {
                uint32_t id = rd16(x), len = rd16(x + 2);
                if (x + 4 + len > xe)
                    break;
                if (id == 1) {
                    const uint8_t *q = x + 4;
                    if (usz == 0xffffffffu)
                        q += 8;
                    if (csz == 0xffffffffu)
                        q += 8;
                    if (q + 8 <= x + 4 + len)
                        lho = rd64(q);
                }
                x += 4 + len;
            }
        }
        if (lho > fs) {
            rc = sb_fail(err, SB_EFORMAT, "%s: zip entry %llu starts past the end of the file (truncated zip)", tf->path,
                         (unsigned long long)i);
            break;
        }
        tf->zip_lho[i] = lho;
        p += 46 + nl + xl + cl;
    }
    free(cd);
    tf->zip_n = (size_t)n;
    return rc;
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
    zip_int64_t idx = zip_name_locate(tf->zip, name, 0);
    if (idx < 0)
        return sb_fail(err, SB_EFORMAT, "zip entry '%s' is missing (storage of %lld %s elements)", name,
                       (long long)st->numel, sb_dtype_name(st->dtype));
    zip_stat_t zs;
    if (zip_stat_index(tf->zip, (zip_uint64_t)idx, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE))
        return sb_fail(err, SB_EFORMAT, "zip entry '%s': no size", name);
    uint64_t want = (uint64_t)st->numel * (uint64_t)sb_dtype_size(st->dtype);
    if (zs.size != want)
        return sb_fail(err, SB_EFORMAT,
                       "zip entry '%s' has %llu bytes but its storage claims %lld %s elements (%llu bytes)", name,
                       (unsigned long long)zs.size, (long long)st->numel, sb_dtype_name(st->dtype),
                       (unsigned long long)want);
    st->backing = ST_ZIP;
    st->zip_index = idx;
    if ((zs.valid & ZIP_STAT_COMP_METHOD) && zs.comp_method == ZIP_CM_STORE && (size_t)idx < tf->zip_n) {
        /* stored: read straight from the file at the data offset given by the local header */
        uint8_t lh[30];
        uint64_t lho = tf->zip_lho[idx];
        if (wsrc_pread(&tf->src, lh, 30, lho) != 0 || rd32(lh) != 0x04034b50u)
            return sb_fail(err, SB_EFORMAT, "zip entry '%s': bad local header (corrupt zip)", name);
        uint64_t at = lho + 30 + rd16(lh + 26) + rd16(lh + 28);
        if (at > tf->file_size || zs.comp_size > tf->file_size - at)
            return sb_fail(err, SB_EFORMAT, "zip entry '%s' extends past the end of the file (truncated zip)", name);
        st->backing = ST_SRC;
        st->data_off = at;
        st->has_crc = (zs.valid & ZIP_STAT_CRC) != 0;
        st->crc = zs.crc;
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
static int zip_fail(sb_error *err, const char *name, const char *what, zip_error_t *ze)
{
    return sb_fail(err, SB_EFORMAT, "%s: %s (%s)", name, what, ze ? zip_error_strerror(ze) : "corrupt zip");
}

static int open_zip(torchfile *tf, const void *mem, size_t len, sb_error *err)
{
    zip_error_t ze;
    zip_error_init(&ze);
    if (mem) {
        zip_source_t *src = zip_source_buffer_create(mem, len, 0, &ze);
        if (!src) {
            int rc = zip_fail(err, tf->path, "cannot read the zip archive", &ze);
            zip_error_fini(&ze);
            return rc;
        }
        tf->zip = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
        if (!tf->zip)
            zip_source_free(src);
    } else {
        int zerr = 0;
        tf->zip = zip_open(tf->path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
        if (!tf->zip)
            zip_error_init_with_code(&ze, zerr);
    }
    if (!tf->zip) {
        int rc = zip_fail(err, tf->path, "truncated or corrupt zip archive", &ze);
        zip_error_fini(&ze);
        return rc;
    }
    zip_error_fini(&ze);
    /* <archive>/data.pkl: the archive folder is whatever torch named it */
    zip_int64_t n = zip_get_num_entries(tf->zip, 0), pkl = -1;
    for (zip_int64_t i = 0; i < n && pkl < 0; i++) {
        const char *nm = zip_get_name(tf->zip, (zip_uint64_t)i, 0);
        if (!nm)
            continue;
        const char *slash = strchr(nm, '/');
        if (slash && strcmp(slash, "/data.pkl") == 0 && (size_t)(slash - nm) < sizeof tf->prefix) {
            memcpy(tf->prefix, nm, (size_t)(slash - nm));
            tf->prefix[slash - nm] = '\0';
            pkl = i;
        }
    }
    if (pkl < 0)
        return sb_fail(err, SB_EFORMAT, "%s: zip archive without <archive>/data.pkl: not a torch.save checkpoint",
                       tf->path);
    /* every entry's compressed size must fit in the file; inflated sizes are
     * bounded by deflate's maximum ratio, so no size is taken on trust */
    for (zip_int64_t i = 0; i < n; i++) {
        zip_stat_t zs;
        if (zip_stat_index(tf->zip, (zip_uint64_t)i, 0, &zs) != 0)
            return sb_fail(err, SB_EFORMAT, "%s: corrupt zip directory (entry %lld)", tf->path, (long long)i);
        if ((zs.valid & ZIP_STAT_COMP_SIZE) && zs.comp_size > tf->file_size)
            return sb_fail(err, SB_EFORMAT, "%s: zip entry '%s' is larger than the file (truncated?)", tf->path,
                           zs.name ? zs.name : "?");
        if ((zs.valid & ZIP_STAT_SIZE) && (zs.valid & ZIP_STAT_COMP_SIZE) &&
            zs.size / 1032 > zs.comp_size + 1)
            return sb_fail(err, SB_EFORMAT, "%s: zip entry '%s' declares an impossible size", tf->path,
                           zs.name ? zs.name : "?");
        if ((zs.valid & ZIP_STAT_COMP_METHOD) && zs.comp_method != ZIP_CM_STORE &&
            zs.comp_method != ZIP_CM_DEFLATE)
            return sb_fail(err, SB_EUNSUPPORTED, "%s: zip entry '%s' uses compression method %d", tf->path,
                           zs.name ? zs.name : "?", zs.comp_method);
    }
    int orc = zip_local_offsets(tf, err);
    if (orc)
        return orc;
    if ((zip_int64_t)tf->zip_n != n)
        return sb_fail(err, SB_EFORMAT, "%s: corrupt zip directory (%zu entries, libzip sees %lld)", tf->path,
                       tf->zip_n, (long long)n);
    zip_stat_t zs;
    zip_stat_index(tf->zip, (zip_uint64_t)pkl, 0, &zs);
    if (zs.size > (UINT64_C(1) << 31))
        return sb_fail(err, SB_EFORMAT, "%s: data.pkl of %llu bytes", tf->path, (unsigned long long)zs.size);
    uint8_t *buf = malloc(zs.size ? (size_t)zs.size : 1);
    if (!buf)
        return sb_fail(err, SB_ENOMEM, "%s: out of memory", tf->path);
    zip_file_t *zf = zip_fopen_index(tf->zip, (zip_uint64_t)pkl, 0);
    zip_int64_t got = zf ? zip_fread(zf, buf, zs.size) : -1;
    uint8_t extra;
    zip_int64_t more = zf && got == (zip_int64_t)zs.size ? zip_fread(zf, &extra, 1) : 0; /* EOF: CRC check */
    if (zf)
        zip_fclose(zf);
    if (got != (zip_int64_t)zs.size || more != 0) {
        free(buf);
        return sb_fail(err, SB_EFORMAT, "%s: cannot read %s/data.pkl (truncated or corrupt zip entry)", tf->path,
                       tf->prefix);
    }
    tf->scratch = buf; /* keep the pickle bytes alive during the run */
    tf->scratch_cap = (size_t)zs.size;
    wsrc ps;
    wsrc_init_mem(&ps, buf, (size_t)zs.size);
    tf->vm.persistent_load = zip_persid;
    tf->vm.persid_arg = tf;
    int rc = pvm_run(&tf->vm, &ps, &tf->root, err);
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
        return open_zip(tf, mem, len, err);
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
    free(tf->scratch);
    free(tf->zip_lho);
    memset(tf, 0, sizeof *tf);
    tf->fd = -1;
}

/* ===================================================================== */
/* reading storages                                                      */
/* ===================================================================== */
static int read_storage(torchfile *tf, const pv *st, uint64_t off, uint64_t n, void *dst, sb_error *err)
{
    uint64_t total = (uint64_t)st->numel * (uint64_t)sb_dtype_size(st->dtype);
    if (off > total || n > total - off)
        return sb_fail(err, SB_EFORMAT, "read outside storage '%s'", st->key);
    if (st->backing == ST_MEM) {
        memcpy(dst, st->mem + off, (size_t)n);
        return SB_OK;
    }
    if (st->backing == ST_SRC) {
        int r = wsrc_pread(&tf->src, dst, (size_t)n, st->data_off + off);
        if (r == -2)
            return sb_fail(err, SB_EIO, "read error: %s", strerror(errno));
        if (r)
            return sb_fail(err, SB_EFORMAT, "storage '%s' is truncated", st->key);
        if (st->has_crc && off == 0 && n == total) {
            if (sb_crc32_update(0, dst, (size_t)n) != st->crc)
                return sb_fail(err, SB_EFORMAT, "zip entry %s/data/%s is corrupt (CRC-32 mismatch)", tf->prefix,
                               st->key);
        }
        return SB_OK;
    }
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
