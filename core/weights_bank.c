/*
 * The SAMed-2 memory bank (MODEL.md 4.1): reader and writer of
 * memory_bank_list_<N>.pkl, a plain pickle of a list of N entries
 * [maskmem_features, maskmem_pos_enc, iou, backbone_features], every tensor
 * a _rebuild_tensor_v2 view of a torch.storage._load_from_bytes storage
 * (a legacy torch.save blob embedded as BINBYTES).
 *
 * Reading is two passes over the file: the pickle VM runs first with the
 * blobs left in the file (only their small headers are parsed), which gives
 * every entry's dtype, shape, view and the file offset of its data; then
 * each entry's compact arrays are allocated and filled with pread. Peak
 * memory = the payload + the pickle structure + one strided span.
 */
#include "weights_internal.h"
#include "weights_pickle_emit.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const char *slot_name[4] = {"maskmem_features", "maskmem_pos_enc", "iou", "backbone_features"};

static int is_float_dtype(int dt) { return dt == SB_DT_F32 || dt == SB_DT_BF16 || dt == SB_DT_F16 || dt == SB_DT_F64; }

static void fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

void sb_bank_free(sb_bank *b)
{
    if (!b)
        return;
    if (b->slab && !b->slab_borrowed) {
        if (b->slab_bytes >= (4u << 20))
            munmap(b->slab, (size_t)b->slab_bytes);
        else
            free(b->slab);
    }
    free(b->maskmem);
    free(b->pos);
    free(b->feat);
    free(b->iou);
    free(b);
}

void sb_bank_to_f32(const void *payload, int dtype, int64_t n, float *out)
{
    sb_convert_to_f32(dtype, payload, out, (size_t)n);
}

/* Reads one tensor into dst in the slot's dtype (bf16 kept, else float32). */
static int read_slot(torchfile *tf, const pv *t, int slot_dtype, void *dst, sb_error *err)
{
    if (t->dtype == slot_dtype)
        return torchfile_tensor_raw(tf, t, dst, err);
    return torchfile_tensor_f32(tf, t, dst, err);
}

/* ext: an optional caller-owned slab (shared memory): used instead of
 * allocating one; with ext_fill 0 only the pointers into it are set (another
 * process fills it). ext_bytes 0 with ext NULL and with_payload 2: compute
 * the slab size only (into *out_bytes). */
typedef struct {
    void *slab;
    uint64_t bytes;
    int fill;
    uint64_t *size_only;
} ext_slab;

static int bank_build_ext(torchfile *tf, int with_payload, const ext_slab *ext, sb_bank **out, sb_error *err);

static int bank_build(torchfile *tf, int with_payload, sb_bank **out, sb_error *err)
{
    return bank_build_ext(tf, with_payload, NULL, out, err);
}

static int bank_build_ext(torchfile *tf, int with_payload, const ext_slab *ext, sb_bank **out, sb_error *err)
{
    *out = NULL;
    pv *root = tf->root;
    char e[128], f[128];
    if (root->kind != PV_LIST && root->kind != PV_TUPLE)
        return sb_fail(err, SB_EFORMAT, "%s: not a memory bank: the pickle holds a %s, not a list of entries",
                       tf->path, pv_kind_name(root->kind));
    if (root->n == 0)
        return sb_fail(err, SB_EFORMAT, "%s: the memory bank is empty", tf->path);
    /* pass 1: structure */
    const pv *first[4] = {0};
    int all_bf16[4] = {1, 1, 1, 1};
    uint64_t payload = 0;
    for (size_t i = 0; i < root->n; i++) {
        pv *en = root->items[i];
        if ((en->kind != PV_LIST && en->kind != PV_TUPLE) || en->n != 4)
            return sb_fail(err, SB_EFORMAT,
                           "%s: bank entry %zu is a %s of %zu items, expected a list of 4 tensors "
                           "[maskmem_features, maskmem_pos_enc, iou, backbone_features]",
                           tf->path, i, pv_kind_name(en->kind), en->n);
        for (int k = 0; k < 4; k++) {
            const pv *t = en->items[k];
            if (t->kind != PV_TENSOR)
                return sb_fail(err, SB_EFORMAT, "%s: bank entry %zu: %s is a %s, not a tensor", tf->path, i,
                               slot_name[k], pv_kind_name(t->kind));
            if (!is_float_dtype(t->dtype))
                return sb_fail(err, SB_EFORMAT, "%s: bank entry %zu: %s has dtype %s (a float type is expected)",
                               tf->path, i, slot_name[k], sb_dtype_name(t->dtype));
            int64_t count, lo, hi;
            if (tensor_check(t, &count, &lo, &hi, err))
                return sb_error_prefix(err, "%s: bank entry %zu: %s", tf->path, i, slot_name[k]);
            if (i == 0) {
                first[k] = t;
                int ok = k < 2 ? (t->ndim == 4 && t->shape[0] == 1 && count > 0)
                               : k == 2 ? count == 1 : (t->ndim == 1 && count > 0);
                if (!ok) {
                    fmt_shape(f, sizeof f, t->ndim, t->shape);
                    return sb_fail(err, SB_ESHAPE, "%s: bank entry 0: %s has shape %s, expected %s", tf->path,
                                   slot_name[k], f,
                                   k < 2 ? "[1, C, H, W]" : k == 2 ? "[] (one value)" : "[L] (1-D)");
                }
            } else {
                const pv *r = k == 1 ? first[0] : first[k];
                int ok = t->ndim == r->ndim;
                for (int d = 0; ok && d < t->ndim; d++)
                    ok = t->shape[d] == r->shape[d];
                if (k == 2)
                    ok = count == 1;
                if (!ok) {
                    fmt_shape(e, sizeof e, r->ndim, r->shape);
                    fmt_shape(f, sizeof f, t->ndim, t->shape);
                    return sb_fail(err, SB_ESHAPE, "%s: bank entry %zu: %s has shape %s, expected %s (as entry 0)",
                                   tf->path, i, slot_name[k], f, e);
                }
            }
            if (i == 0 && k == 1) { /* pos enc has the maskmem shape */
                int ok = t->ndim == 4;
                for (int d = 0; ok && d < 4; d++)
                    ok = t->shape[d] == first[0]->shape[d];
                if (!ok) {
                    fmt_shape(e, sizeof e, 4, first[0]->shape);
                    fmt_shape(f, sizeof f, t->ndim, t->shape);
                    return sb_fail(err, SB_ESHAPE, "%s: bank entry 0: maskmem_pos_enc has shape %s, expected %s",
                                   tf->path, f, e);
                }
            }
            if (t->dtype != SB_DT_BF16)
                all_bf16[k] = 0;
        }
    }
    sb_bank *b = calloc(1, sizeof *b);
    if (!b)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    b->n = (int64_t)root->n;
    b->C = first[0]->shape[1];
    b->H = first[0]->shape[2];
    b->W = first[0]->shape[3];
    b->feat_len = first[3]->shape[0];
    b->mem_dtype = all_bf16[0] ? SB_DT_BF16 : SB_DT_F32;
    b->pos_dtype = all_bf16[1] ? SB_DT_BF16 : SB_DT_F32;
    b->feat_dtype = all_bf16[3] ? SB_DT_BF16 : SB_DT_F32;
    b->iou_dtype = first[2]->dtype;
    snprintf(b->location, sizeof b->location, "%s", first[0]->storage->location ? first[0]->storage->location : "");
    int64_t mem_n = b->C * b->H * b->W;
    uint64_t per = (uint64_t)mem_n * (uint64_t)sb_dtype_size(b->mem_dtype) +
                   (uint64_t)mem_n * (uint64_t)sb_dtype_size(b->pos_dtype) +
                   (uint64_t)b->feat_len * (uint64_t)sb_dtype_size(b->feat_dtype);
    payload = per * (uint64_t)b->n + (uint64_t)b->n * sizeof(float);
    /* storages are bounded by the file, but entries could share one: bound the total too */
    if (payload > 4 * tf->file_size + (1u << 20)) {
        sb_bank_free(b);
        return sb_fail(err, SB_EFORMAT, "%s: bank entries reference far more data than the file holds", tf->path);
    }
    b->iou = calloc((size_t)b->n, sizeof(float));
    if (!b->iou) {
        sb_bank_free(b);
        return sb_fail(err, SB_ENOMEM, "out of memory");
    }
    int rc = SB_OK;
    if (with_payload) {
        b->maskmem = calloc((size_t)b->n, sizeof(void *));
        b->pos = calloc((size_t)b->n, sizeof(void *));
        b->feat = calloc((size_t)b->n, sizeof(void *));
        if (!b->maskmem || !b->pos || !b->feat) {
            sb_bank_free(b);
            return sb_fail(err, SB_ENOMEM, "out of memory");
        }
        b->payload_bytes = payload;
        /* one slab, 64-byte aligned arrays */
        uint64_t slab = 0;
        for (int k = 0; k < 3; k++)
            slab += ((k < 2 ? (uint64_t)mem_n : (uint64_t)b->feat_len) *
                         (uint64_t)sb_dtype_size(k == 0 ? b->mem_dtype : k == 1 ? b->pos_dtype : b->feat_dtype) +
                     63) / 64 * 64;
        slab *= (uint64_t)b->n;
        if (ext && ext->size_only) {
            *ext->size_only = slab;
            sb_bank_free(b);
            return SB_OK;
        }
        if (ext) {
            if (ext->bytes < slab) {
                sb_bank_free(b);
                return sb_fail(err, SB_EINVAL, "%s: the bank needs %llu bytes but the given memory has %llu",
                               tf->path, (unsigned long long)slab, (unsigned long long)ext->bytes);
            }
            b->slab = ext->slab;
            b->slab_borrowed = 1;
        } else if (slab >= (4u << 20)) {
            void *p = mmap(NULL, (size_t)slab, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p != MAP_FAILED) {
#ifdef MADV_HUGEPAGE
                madvise(p, (size_t)slab, MADV_HUGEPAGE);
#endif
                b->slab = p;
            }
        } else
            b->slab = malloc(slab ? (size_t)slab : 1);
        if (!b->slab) {
            sb_bank_free(b);
            return sb_fail(err, SB_ENOMEM, "%s: out of memory (%llu bytes for the bank)", tf->path,
                           (unsigned long long)slab);
        }
        b->slab_bytes = slab;
    }
    uint64_t at = 0;
    /* pass 2: payload, entry by entry */
    for (int64_t i = 0; i < b->n && rc == SB_OK; i++) {
        pv *en = root->items[i];
        float iou;
        if ((rc = torchfile_tensor_f32(tf, en->items[2], &iou, err))) {
            sb_error_prefix(err, "%s: bank entry %lld: iou", tf->path, (long long)i);
            break;
        }
        b->iou[i] = iou;
        if (!with_payload)
            continue;
        void **dst[3] = {&b->maskmem[i], &b->pos[i], &b->feat[i]};
        int slot[3] = {0, 1, 3};
        int dts[3] = {b->mem_dtype, b->pos_dtype, b->feat_dtype};
        int64_t cnt[3] = {mem_n, mem_n, b->feat_len};
        for (int k = 0; k < 3 && rc == SB_OK; k++) {
            *dst[k] = (char *)b->slab + at;
            at += ((uint64_t)cnt[k] * (uint64_t)sb_dtype_size(dts[k]) + 63) / 64 * 64;
            if (!ext || ext->fill)
                rc = read_slot(tf, en->items[slot[k]], dts[k], *dst[k], err);
            if (rc)
                sb_error_prefix(err, "%s: bank entry %lld: %s", tf->path, (long long)i, slot_name[slot[k]]);
        }
    }
    if (rc) {
        sb_bank_free(b);
        return rc;
    }
    *out = b;
    return SB_OK;
}

/* Opens a plain-pickle bank file and builds the bank; ext: the caller's
 * memory (or a size query), NULL for memory of its own. */
static int bank_open(sb_bank **out, const char *path, int with_payload, const ext_slab *ext, sb_error *err)
{
    *out = NULL;
    int fmt;
    int rc = sb_file_format(path, &fmt, err);
    if (rc)
        return rc;
    if (fmt != SB_FMT_PICKLE)
        return sb_fail(err, SB_EFORMAT, "%s: not a memory bank (a %s file, not a plain pickle)", path,
                       sb_file_format_name(fmt));
    torchfile tf;
    rc = torchfile_open(&tf, path, NULL, 0, fmt, err);
    if (rc == SB_OK)
        rc = bank_build_ext(&tf, with_payload, ext, out, err);
    torchfile_close(&tf);
    return rc;
}

int sb_bank_load(sb_bank **out, const char *path, sb_error *err) { return bank_open(out, path, 1, NULL, err); }

int sb_bank_slab_bytes(const char *path, uint64_t *bytes, sb_error *err)
{
    *bytes = 0;
    sb_bank *b = NULL;
    ext_slab e = {NULL, 0, 0, bytes};
    return bank_open(&b, path, 1, &e, err);
}

int sb_bank_load_into(sb_bank **out, const char *path, void *slab, uint64_t slab_bytes, int fill, sb_error *err)
{
    if (!slab)
        return sb_fail(err, SB_EINVAL, "%s: no memory given for the bank", path);
    ext_slab e = {slab, slab_bytes, fill, NULL};
    return bank_open(out, path, 1, &e, err);
}
int sb_bank_inspect(sb_bank **out, const char *path, sb_error *err) { return bank_open(out, path, 0, NULL, err); }

int bank_load_mem(sb_bank **out, const char *name, const void *data, size_t len, sb_error *err)
{
    *out = NULL;
    torchfile tf;
    int rc = torchfile_open(&tf, name, data, len, SB_FMT_PICKLE, err);
    if (rc == SB_OK)
        rc = bank_build(&tf, 1, out, err);
    torchfile_close(&tf);
    return rc;
}

/* ===================================================================== */
/* writer                                                                */
/* ===================================================================== */
struct sb_bank_writer {
    FILE *f;
    char path[4096];
    char location[32];
    int64_t keyc;
    int failed;
};

int sb_bank_writer_open(sb_bank_writer **out, const char *path, const char *location, sb_error *err)
{
    *out = NULL;
    sb_bank_writer *w = calloc(1, sizeof *w);
    if (!w)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->location, sizeof w->location, "%s", location && location[0] ? location : "cpu");
    w->keyc = 140000000000LL;
    w->f = fopen(path, "wb");
    if (!w->f) {
        int rc = sb_fail(err, SB_EIO, "%s: cannot create: %s", path, strerror(errno));
        free(w);
        return rc;
    }
    uint8_t head[3] = {0x80, 4, ']'}; /* protocol 4, the list */
    if (fwrite(head, 1, 3, w->f) != 3)
        w->failed = 1;
    *out = w;
    return SB_OK;
}

/* One tensor: _rebuild_tensor_v2(_load_from_bytes(blob), 0, shape, stride, False, OrderedDict()) */
static void write_tensor(sb_bank_writer *w, int dtype, int ndim, const int64_t *shape, const void *data)
{
    int64_t numel = 1, stride[4];
    for (int d = ndim - 1; d >= 0; d--) {
        stride[d] = numel;
        numel *= shape[d];
    }
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)w->keyc++);
    /* the legacy torch.save blob, without its payload */
    pbuf h = {0};
    static const uint8_t magic[] = {0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    pbuf_put(&h, magic, sizeof magic);
    static const uint8_t proto[] = {0x80, 2, 'M', 0xe9, 0x03, '.'};
    pbuf_put(&h, proto, sizeof proto);
    uint8_t p2[2] = {0x80, 2};
    pbuf_put(&h, p2, 2);
    pbuf_byte(&h, '}');
    pbuf_byte(&h, '(');
    pk_str(&h, "protocol_version");
    pk_int(&h, 1001);
    pk_str(&h, "little_endian");
    pbuf_byte(&h, 0x88);
    pk_str(&h, "type_sizes");
    pbuf_byte(&h, '}');
    pbuf_byte(&h, '(');
    pk_str(&h, "short");
    pk_int(&h, 2);
    pk_str(&h, "int");
    pk_int(&h, 4);
    pk_str(&h, "long");
    pk_int(&h, 4);
    pbuf_byte(&h, 'u');
    pbuf_byte(&h, 'u');
    pbuf_byte(&h, '.');
    pbuf_put(&h, p2, 2);
    pbuf_byte(&h, '(');
    pk_str(&h, "storage");
    pk_global(&h, "torch", sb_dtype_storage_name(dtype));
    pk_str(&h, key);
    pk_str(&h, w->location);
    pk_int(&h, numel);
    pbuf_byte(&h, 'N');
    pbuf_byte(&h, 't');
    pbuf_byte(&h, 'Q');
    pbuf_byte(&h, '.');
    pbuf_put(&h, p2, 2);
    pbuf_byte(&h, ']');
    pk_str(&h, key);
    pbuf_byte(&h, 'a');
    pbuf_byte(&h, '.');
    pbuf_put(&h, &numel, 8);
    uint64_t dbytes = (uint64_t)numel * (uint64_t)sb_dtype_size(dtype);
    uint64_t blob = h.len + dbytes;
    /* outer pickle */
    pbuf o = {0};
    pk_global(&o, "torch._utils", "_rebuild_tensor_v2");
    pbuf_byte(&o, '(');
    pk_global(&o, "torch.storage", "_load_from_bytes");
    if (blob <= 0xffffffffu) {
        uint32_t n32 = (uint32_t)blob;
        pbuf_byte(&o, 'B');
        pbuf_put(&o, &n32, 4);
    } else {
        pbuf_byte(&o, 0x8e);
        pbuf_put(&o, &blob, 8);
    }
    int ok = !h.failed && !o.failed;
    ok = ok && fwrite(o.data, 1, o.len, w->f) == o.len;
    ok = ok && fwrite(h.data, 1, h.len, w->f) == h.len;
    ok = ok && (dbytes == 0 || fwrite(data, 1, (size_t)dbytes, w->f) == dbytes);
    o.len = 0;
    pbuf_byte(&o, 0x85); /* TUPLE1 */
    pbuf_byte(&o, 'R');
    pk_int(&o, 0);
    pk_int_tuple(&o, ndim, shape);
    pk_int_tuple(&o, ndim, stride);
    pbuf_byte(&o, 0x89);
    pk_global(&o, "collections", "OrderedDict");
    pbuf_byte(&o, ')');
    pbuf_byte(&o, 'R');
    pbuf_byte(&o, 't');
    pbuf_byte(&o, 'R');
    ok = ok && !o.failed && fwrite(o.data, 1, o.len, w->f) == o.len;
    if (!ok)
        w->failed = 1;
    free(h.data);
    free(o.data);
}

int sb_bank_writer_add(sb_bank_writer *w, int64_t C, int64_t H, int64_t W, int mem_dtype, const void *maskmem,
                       const void *pos, int iou_dtype, float iou, int64_t feat_len, int feat_dtype,
                       const void *feat, sb_error *err)
{
    if ((mem_dtype != SB_DT_BF16 && mem_dtype != SB_DT_F32) || (feat_dtype != SB_DT_BF16 && feat_dtype != SB_DT_F32) ||
        (iou_dtype != SB_DT_BF16 && iou_dtype != SB_DT_F32) || C <= 0 || H <= 0 || W <= 0 || feat_len <= 0)
        return sb_fail(err, SB_EINVAL, "%s: bad bank entry arguments", w->path);
    uint8_t lm[2] = {']', '('};
    if (fwrite(lm, 1, 2, w->f) != 2)
        w->failed = 1;
    int64_t s4[4] = {1, C, H, W};
    write_tensor(w, mem_dtype, 4, s4, maskmem);
    write_tensor(w, mem_dtype, 4, s4, pos);
    if (iou_dtype == SB_DT_BF16) {
        uint16_t h = sb_f32_to_bf16(iou);
        write_tensor(w, SB_DT_BF16, 0, NULL, &h);
    } else
        write_tensor(w, SB_DT_F32, 0, NULL, &iou);
    write_tensor(w, feat_dtype, 1, &feat_len, feat);
    uint8_t ea[2] = {'e', 'a'}; /* APPENDS to the entry, APPEND it to the bank */
    if (fwrite(ea, 1, 2, w->f) != 2)
        w->failed = 1;
    if (w->failed)
        return sb_fail(err, SB_EIO, "%s: write error: %s", w->path, strerror(errno));
    return SB_OK;
}

int sb_bank_writer_close(sb_bank_writer *w, sb_error *err)
{
    if (!w)
        return SB_OK;
    uint8_t stop = '.';
    if (fwrite(&stop, 1, 1, w->f) != 1)
        w->failed = 1;
    if (fclose(w->f) != 0)
        w->failed = 1;
    int rc = SB_OK;
    if (w->failed) {
        rc = sb_fail(err, SB_EIO, "%s: write error", w->path);
        remove(w->path);
    }
    free(w);
    return rc;
}

int sb_bank_save(const sb_bank *b, const char *path, const char *location, sb_error *err)
{
    if (!b->maskmem)
        return sb_fail(err, SB_EINVAL, "%s: bank without payload", path);
    sb_bank_writer *w;
    int rc = sb_bank_writer_open(&w, path, location ? location : b->location, err);
    if (rc)
        return rc;
    for (int64_t i = 0; i < b->n && rc == SB_OK; i++) {
        if (b->mem_dtype != b->pos_dtype) {
            rc = sb_fail(err, SB_EUNSUPPORTED, "%s: maskmem and pos enc of different dtypes", path);
            break;
        }
        rc = sb_bank_writer_add(w, b->C, b->H, b->W, b->mem_dtype, b->maskmem[i], b->pos[i],
                                b->iou_dtype == SB_DT_BF16 ? SB_DT_BF16 : SB_DT_F32, b->iou[i], b->feat_len,
                                b->feat_dtype, b->feat[i], err);
    }
    if (rc) {
        sb_bank_writer_close(w, NULL);
        remove(path);
        return rc;
    }
    return sb_bank_writer_close(w, err);
}
