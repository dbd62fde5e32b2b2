/*
 * A restricted pickle virtual machine: the opcodes torch.save (protocol 2)
 * and pickle.dump (protocols 2-5) emit for tensors, dicts, lists and
 * tuples, and nothing else. GLOBAL / STACK_GLOBAL resolve only names of an
 * allowlist (the torch rebuild functions, storage types, dtypes,
 * collections.OrderedDict, torch.device, builtins.set/frozenset); REDUCE
 * and BUILD apply only to allowlisted callables, interpreted here (nothing
 * is ever executed). Everything else is refused with a message naming the
 * opcode or the global.
 *
 * Resource bounds: the VM reads its input sequentially and never seeks
 * back; every opcode consumes at least one byte and creates at most one
 * value, so memory is bounded by the input size. Memo indices are bounded
 * by the number of opcodes executed; string/bytes lengths by the bytes left
 * in the source; large BINBYTES can stay in the source (lazy) so a 2 GB
 * memory bank is parsed without reading its payload.
 *
 * Formats learnt from CPython's Lib/pickletools.py (opcode table) and
 * PyTorch's torch/serialization.py, torch/_utils.py, torch/storage.py.
 */
#include "weights_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ===================================================================== */
/* byte sources                                                          */
/* ===================================================================== */
void wsrc_init_mem(wsrc *s, const void *data, size_t len)
{
    memset(s, 0, sizeof *s);
    s->mem = data;
    s->fd = -1;
    s->size = len;
}

int wsrc_init_fd(wsrc *s, int fd, uint64_t base, uint64_t size, size_t buf_cap)
{
    memset(s, 0, sizeof *s);
    s->fd = fd;
    s->base = base;
    s->size = size;
    s->buf_cap = buf_cap ? buf_cap : 65536;
    s->buf = malloc(s->buf_cap);
    s->own_buf = 1;
    return s->buf ? 0 : -1;
}

int wsrc_sub(wsrc *sub, const wsrc *s, uint64_t off, uint64_t len)
{
    if (off > s->size || len > s->size - off)
        return -1;
    if (s->mem) {
        wsrc_init_mem(sub, s->mem + s->base + off, (size_t)len);
        return 0;
    }
    return wsrc_init_fd(sub, s->fd, s->base + off, len, len < 65536 ? (size_t)(len ? len : 1) : 65536);
}

void wsrc_free(wsrc *s)
{
    if (s && s->own_buf)
        free(s->buf);
    if (s) {
        s->buf = NULL;
        s->own_buf = 0;
    }
}

static int pread_full(int fd, void *dst, size_t n, uint64_t off)
{
    uint8_t *p = dst;
    while (n > 0) {
        ssize_t r = pread(fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -2;
        }
        if (r == 0)
            return -1;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int wsrc_pread(wsrc *s, void *dst, size_t n, uint64_t off)
{
    if (off > s->size || n > s->size - off)
        return -1;
    if (s->mem) {
        memcpy(dst, s->mem + s->base + off, n);
        return 0;
    }
    return pread_full(s->fd, dst, n, s->base + off);
}

int wsrc_read(wsrc *s, void *dst, size_t n)
{
    if (n > wsrc_left(s))
        return -1;
    if (s->mem) {
        memcpy(dst, s->mem + s->base + s->pos, n);
        s->pos += n;
        return 0;
    }
    uint64_t abs = s->base + s->pos;
    uint8_t *d = dst;
    while (n > 0) {
        if (abs >= s->buf_start && abs < s->buf_start + s->buf_len) {
            size_t avail = (size_t)(s->buf_start + s->buf_len - abs);
            size_t k = n < avail ? n : avail;
            memcpy(d, s->buf + (abs - s->buf_start), k);
            d += k;
            n -= k;
            abs += k;
            s->pos += k;
            continue;
        }
        if (n >= s->buf_cap) { /* large read: straight into dst */
            int rc = pread_full(s->fd, d, n, abs);
            if (rc)
                return rc;
            s->pos += n;
            return 0;
        }
        uint64_t left = s->base + s->size - abs;
        size_t want = left < s->buf_cap ? (size_t)left : s->buf_cap;
        int rc = pread_full(s->fd, s->buf, want, abs);
        if (rc)
            return rc;
        s->buf_start = abs;
        s->buf_len = want;
    }
    return 0;
}

int wsrc_skip(wsrc *s, uint64_t n)
{
    if (n > wsrc_left(s))
        return -1;
    s->pos += n;
    return 0;
}

/* ===================================================================== */
/* dtypes                                                                */
/* ===================================================================== */
static const struct {
    const char *name, *storage, *torch1, *torch2;
    int size;
} dtypes[SB_DT_COUNT] = {
    [SB_DT_F32] = {"float32", "FloatStorage", "float32", "float", 4},
    [SB_DT_F64] = {"float64", "DoubleStorage", "float64", "double", 8},
    [SB_DT_F16] = {"float16", "HalfStorage", "float16", "half", 2},
    [SB_DT_BF16] = {"bfloat16", "BFloat16Storage", "bfloat16", "bfloat16", 2},
    [SB_DT_I64] = {"int64", "LongStorage", "int64", "long", 8},
    [SB_DT_I32] = {"int32", "IntStorage", "int32", "int", 4},
    [SB_DT_I16] = {"int16", "ShortStorage", "int16", "short", 2},
    [SB_DT_I8] = {"int8", "CharStorage", "int8", "int8", 1},
    [SB_DT_U8] = {"uint8", "ByteStorage", "uint8", "uint8", 1},
    [SB_DT_BOOL] = {"bool", "BoolStorage", "bool", "bool", 1},
};

const char *sb_dtype_name(int dt) { return dt >= 0 && dt < SB_DT_COUNT ? dtypes[dt].name : "?"; }
int sb_dtype_size(int dt) { return dt >= 0 && dt < SB_DT_COUNT ? dtypes[dt].size : 0; }
const char *sb_dtype_storage_name(int dt)
{
    return dt >= 0 && dt < SB_DT_COUNT ? dtypes[dt].storage : "?";
}

int sb_dtype_from_storage_name(const char *name)
{
    for (int i = 0; i < SB_DT_COUNT; i++)
        if (strcmp(name, dtypes[i].storage) == 0)
            return i;
    return -1;
}

int sb_dtype_from_torch_name(const char *name)
{
    for (int i = 0; i < SB_DT_COUNT; i++)
        if (strcmp(name, dtypes[i].torch1) == 0 || strcmp(name, dtypes[i].torch2) == 0)
            return i;
    return -1;
}

float sb_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t sb_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float half_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31u, m = h & 0x3ffu, u;
    if (e == 0) {
        if (m == 0)
            u = s;
        else { /* subnormal */
            float f = ldexpf((float)m, -24);
            memcpy(&u, &f, 4);
            u |= s;
        }
    } else if (e == 31)
        u = s | 0x7f800000u | (m << 13);
    else
        u = s | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

void sb_convert_to_f32(int dt, const void *src, float *dst, size_t n)
{
    const uint8_t *p = src;
    switch (dt) {
    case SB_DT_F32: memcpy(dst, src, n * 4); break;
    case SB_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    case SB_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = half_to_f32(h);
        }
        break;
    case SB_DT_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = sb_bf16_to_f32(h);
        }
        break;
    case SB_DT_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, p + 8 * i, 8);
            dst[i] = (float)v;
        }
        break;
    case SB_DT_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, p + 4 * i, 4);
            dst[i] = (float)v;
        }
        break;
    case SB_DT_I16:
        for (size_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, p + 2 * i, 2);
            dst[i] = (float)v;
        }
        break;
    case SB_DT_I8:
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)(int8_t)p[i];
        break;
    case SB_DT_U8: for (size_t i = 0; i < n; i++) dst[i] = (float)p[i]; break;
    case SB_DT_BOOL: for (size_t i = 0; i < n; i++) dst[i] = p[i] ? 1.0f : 0.0f; break;
    default: memset(dst, 0, n * sizeof *dst); break;
    }
}

/* ===================================================================== */
/* values                                                                */
/* ===================================================================== */
void pvm_init(pvm *vm) { memset(vm, 0, sizeof *vm); }

/* Values live in slabs: the first small (most pickles are), the next ones
 * 2 MiB, 2 MiB-aligned and advised for transparent huge pages, so a
 * checkpoint's ~13,000 values cost a few page faults instead of ~1,000
 * (page faults are what a load from the page cache pays for; see
 * bench/bench_weights.c). Sanitizer builds allocate each value on its own so
 * that overflows stay detectable. */
#if defined(__SANITIZE_ADDRESS__)
#define PV_SLABS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PV_SLABS 0
#endif
#endif
#ifndef PV_SLABS
#define PV_SLABS 1
#endif
#define SLAB_FIRST ((size_t)32 << 10)
#define SLAB_HUGE ((size_t)2 << 20)
#define PV_STEP ((sizeof(pv) + 15) & ~(size_t)15)

typedef struct slab_hdr {
    void *prev; /* the previous slab */
    size_t bytes;
    size_t used; /* bytes used (of a full slab; the current one: vm->slab_used) */
    int mapped;  /* mmap'ed (else malloc'ed) */
} slab_hdr;
#define SLAB_HDR ((sizeof(slab_hdr) + 15) & ~(size_t)15)

#if PV_SLABS
static void *slab_map(size_t bytes)
{
    size_t span = bytes + SLAB_HUGE;
    uint8_t *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    uintptr_t a = ((uintptr_t)p + SLAB_HUGE - 1) & ~(uintptr_t)(SLAB_HUGE - 1);
    size_t head = (size_t)(a - (uintptr_t)p), tail = span - head - bytes;
    if (head)
        munmap(p, head);
    if (tail)
        munmap((uint8_t *)a + bytes, tail);
#ifdef MADV_HUGEPAGE
    madvise((void *)a, bytes, MADV_HUGEPAGE);
#endif
    return (void *)a;
}
#endif

static pv *slab_take(pvm *vm)
{
#if PV_SLABS
    if (!vm->slab || vm->slab_used + PV_STEP > vm->slab_cap) {
        size_t bytes = vm->slab ? SLAB_HUGE : SLAB_FIRST;
        slab_hdr *h = bytes >= SLAB_HUGE ? slab_map(bytes) : malloc(bytes);
        if (!h)
            return NULL;
        if (vm->slab)
            ((slab_hdr *)vm->slab)->used = vm->slab_used;
        h->prev = vm->slab;
        h->bytes = bytes;
        h->mapped = bytes >= SLAB_HUGE;
        vm->slab = h;
        vm->slab_cap = bytes;
        vm->slab_used = SLAB_HDR;
    }
    pv *v = (pv *)((uint8_t *)vm->slab + vm->slab_used);
    vm->slab_used += PV_STEP;
    memset(v, 0, sizeof *v);
    return v;
#else
    (void)vm;
    return calloc(1, sizeof(pv));
#endif
}

static void pv_free_members(pv *v)
{
    free(v->s);
    free(v->items);
    free(v->key);
    free(v->location);
    free(v->dhash);
}

void pvm_free(pvm *vm)
{
    /* with slabs the values are found in them (no list of every value to
     * grow and fault in: another ~100 KiB for a full-size checkpoint) */
    for (size_t i = 0; i < vm->nobjs && !PV_SLABS; i++) {
        pv_free_members(vm->objs[i]);
        free(vm->objs[i]);
    }
    free(vm->objs);
    size_t used = vm->slab_used;
    for (slab_hdr *h = vm->slab; h;) {
        slab_hdr *prev = h->prev;
        for (size_t at = SLAB_HDR; at + PV_STEP <= used; at += PV_STEP)
            pv_free_members((pv *)((uint8_t *)h + at));
        if (h->mapped)
            munmap(h, h->bytes);
        else
            free(h);
        h = prev;
        if (h)
            used = h->used;
    }
    memset(vm, 0, sizeof *vm);
}

pv *pvm_new(pvm *vm, int kind)
{
    if (!PV_SLABS && vm->nobjs == vm->objs_cap) {
        size_t cap = vm->objs_cap ? vm->objs_cap * 2 : 256;
        pv **o = realloc(vm->objs, cap * sizeof *o);
        if (!o)
            return NULL;
        vm->objs = o;
        vm->objs_cap = cap;
    }
    pv *v = slab_take(vm);
    if (!v)
        return NULL;
    v->kind = kind;
    if (!PV_SLABS)
        vm->objs[vm->nobjs] = v;
    vm->nobjs++;
    return v;
}

const char *pv_kind_name(int kind)
{
    static const char *names[] = {"None",  "bool", "int",    "int",     "float",   "str",
                                  "bytes", "tuple", "list",  "dict",    "set",     "global",
                                  "storage", "tensor", "device"};
    return kind >= 0 && kind <= PV_DEVICE ? names[kind] : "?";
}

static int pv_push_item(pv *c, pv *item)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4;
        pv **it = realloc(c->items, cap * sizeof *it);
        if (!it)
            return -1;
        c->items = it;
        c->cap = cap;
    }
    c->items[c->n++] = item;
    return 0;
}

pv *pv_dict_get(const pv *d, const char *key)
{
    if (!d || d->kind != PV_DICT)
        return NULL;
    for (size_t i = 0; i + 1 < d->n; i += 2) {
        pv *k = d->items[i];
        if (k->kind == PV_STR && strcmp(k->s, key) == 0)
            return d->items[i + 1];
    }
    return NULL;
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void dict_index(pv *d, size_t pair)
{
    size_t i = str_hash(d->items[2 * pair]->s) & (d->dhcap - 1);
    while (d->dhash[i])
        i = (i + 1) & (d->dhcap - 1);
    d->dhash[i] = pair + 1;
}

/* dict assignment keeps insertion order; a repeated string key replaces.
 * Past 16 pairs the string keys are hashed: a state dict has hundreds, and
 * searching them all on every assignment was half of the pickle run of a
 * full-size checkpoint. */
static int pv_dict_set(pv *d, pv *k, pv *v)
{
    if (k->kind == PV_STR && d->dhcap) {
        for (size_t i = str_hash(k->s) & (d->dhcap - 1); d->dhash[i]; i = (i + 1) & (d->dhcap - 1)) {
            size_t p = 2 * (d->dhash[i] - 1);
            if (strcmp(d->items[p]->s, k->s) == 0) {
                d->items[p + 1] = v;
                return 0;
            }
        }
    } else if (k->kind == PV_STR) {
        for (size_t i = 0; i + 1 < d->n; i += 2)
            if (d->items[i]->kind == PV_STR && strcmp(d->items[i]->s, k->s) == 0) {
                d->items[i + 1] = v;
                return 0;
            }
    }
    if (pv_push_item(d, k) || pv_push_item(d, v))
        return -1;
    size_t pairs = d->n / 2;
    if (pairs > 16 && 2 * pairs > d->dhcap) { /* (re)build at load factor 1/4 */
        size_t cap = 64;
        while (cap < 4 * pairs)
            cap *= 2;
        size_t *h = calloc(cap, sizeof *h);
        if (!h)
            return -1;
        free(d->dhash);
        d->dhash = h;
        d->dhcap = cap;
        for (size_t p = 0; p < pairs; p++)
            if (d->items[2 * p]->kind == PV_STR)
                dict_index(d, p);
    } else if (d->dhcap && k->kind == PV_STR)
        dict_index(d, pairs - 1);
    return 0;
}

/* ===================================================================== */
/* the allowlist                                                         */
/* ===================================================================== */
static int resolve_global(const char *mod, const char *name, int *gid, int *dtype)
{
    *dtype = -1;
    static const struct {
        const char *mod, *name;
        int gid;
    } allow[] = {
        {"collections", "OrderedDict", G_ODICT},
        {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2},
        {"torch._utils", "_rebuild_tensor", G_REBUILD_TENSOR},
        {"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM},
        {"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE},
        {"torch._tensor", "_rebuild_from_type_v2", G_FROM_TYPE_V2},
        {"torch", "Tensor", G_TENSOR_TYPE},
        {"torch._tensor", "Tensor", G_TENSOR_TYPE},
        {"torch.nn.parameter", "Parameter", G_TENSOR_TYPE},
        {"torch.storage", "_load_from_bytes", G_LOAD_BYTES},
        {"torch", "device", G_DEVICE},
        {"torch", "Size", G_SIZE},
        {"builtins", "set", G_SET},
        {"builtins", "frozenset", G_FROZENSET},
        {"__builtin__", "set", G_SET},
    };
    for (size_t i = 0; i < sizeof allow / sizeof allow[0]; i++)
        if (strcmp(mod, allow[i].mod) == 0 && strcmp(name, allow[i].name) == 0) {
            *gid = allow[i].gid;
            return 0;
        }
    if (strcmp(mod, "torch") == 0 || strcmp(mod, "torch.cuda") == 0) {
        int dt = sb_dtype_from_storage_name(name);
        if (dt >= 0) {
            *gid = G_STORAGE_TYPE;
            *dtype = dt;
            return 0;
        }
        size_t nl = strlen(name);
        if (nl > 7 && strcmp(name + nl - 7, "Storage") == 0) { /* a storage type we do not know */
            *gid = G_STORAGE_TYPE;
            return 0;
        }
        if (strcmp(mod, "torch") == 0) {
            dt = sb_dtype_from_torch_name(name);
            if (dt >= 0) {
                *gid = G_DTYPE;
                *dtype = dt;
                return 0;
            }
        }
    }
    return -1;
}

/* ===================================================================== */
/* the machine                                                           */
/* ===================================================================== */
#define MAX_STR (1u << 20)   /* strings: keys, names (1 MiB is generous) */
#define MAX_INLINE (1u << 30) /* bytes read into memory */

typedef struct {
    pv **st;
    size_t n, cap;
    size_t *marks;
    size_t nmarks, marks_cap;
    pv **memo;
    size_t memo_cap;
    size_t memo_len; /* distinct indices written (Python's len(memo)) */
} vmstate;

static int st_push(vmstate *s, pv *v)
{
    if (!v)
        return -1;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        pv **p = realloc(s->st, cap * sizeof *p);
        if (!p)
            return -1;
        s->st = p;
        s->cap = cap;
    }
    s->st[s->n++] = v;
    return 0;
}

#define FAIL(...) do { rc = sb_fail(err, SB_EFORMAT, __VA_ARGS__); goto out; } while (0)
#define NEED(k) do { if (S.n - base_mark() < (size_t)(k)) FAIL("pickle: stack underflow at opcode 0x%02x (byte %llu)", op, (unsigned long long)at); } while (0)
#define RD(dst, n) do { int r_ = wsrc_read(s, (dst), (n)); if (r_ == -2) { rc = sb_fail(err, SB_EIO, "read error"); goto out; } if (r_) FAIL("pickle ends early (truncated at byte %llu, inside opcode 0x%02x)", (unsigned long long)s->pos, op); } while (0)
#define PUSH(v) do { if (st_push(&S, (v))) { rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory"); goto out; } } while (0)
#define NEWV(var, kind) do { var = pvm_new(vm, (kind)); if (!var) { rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory"); goto out; } } while (0)

static int pv_is_intlike(const pv *v) { return v->kind == PV_INT || v->kind == PV_BOOL; }

static int int_tuple(const pv *t, int64_t *out, int *n, int max)
{
    if (t->kind != PV_TUPLE && t->kind != PV_LIST)
        return -1;
    if (t->n > (size_t)max)
        return -2;
    for (size_t i = 0; i < t->n; i++) {
        if (!pv_is_intlike(t->items[i]))
            return -1;
        out[i] = t->items[i]->i;
    }
    *n = (int)t->n;
    return 0;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) */
static int rebuild_tensor(pvm *vm, pv *args, int legacy, pv **out, sb_error *err)
{
    size_t need = legacy ? 4 : 6;
    if (args->kind != PV_TUPLE || args->n < need || args->n > 7)
        return sb_fail(err, SB_EFORMAT, "pickle: _rebuild_tensor%s expects %zu arguments, got %s of %zu",
                       legacy ? "" : "_v2", need, pv_kind_name(args->kind), args->n);
    pv *st = args->items[0];
    if (st->kind != PV_STORAGE)
        return sb_fail(err, SB_EFORMAT, "pickle: tensor storage is a %s, not a storage", pv_kind_name(st->kind));
    if (!pv_is_intlike(args->items[1]))
        return sb_fail(err, SB_EFORMAT, "pickle: tensor storage offset is not an int");
    pv *t = pvm_new(vm, PV_TENSOR);
    if (!t)
        return sb_fail(err, SB_ENOMEM, "pickle: out of memory");
    t->storage = st;
    t->dtype = st->dtype;
    t->offset = args->items[1]->i;
    int nd = 0, ns = 0, r;
    if ((r = int_tuple(args->items[2], t->shape, &nd, SB_MAX_DIMS)) != 0)
        return sb_fail(err, SB_EFORMAT, r == -2 ? "pickle: tensor has more than %d dimensions"
                                                : "pickle: tensor size is not a tuple of ints (%d)", SB_MAX_DIMS);
    if ((r = int_tuple(args->items[3], t->stride, &ns, SB_MAX_DIMS)) != 0 || ns != nd)
        return sb_fail(err, SB_EFORMAT, "pickle: tensor stride is not a tuple of %d ints", nd);
    t->ndim = nd;
    int64_t count, lo, hi;
    int rc = tensor_check(t, &count, &lo, &hi, err);
    if (rc)
        return rc;
    *out = t;
    return SB_OK;
}

static int apply_reduce(pvm *vm, wsrc *s, pv *fn, pv *args, pv **out, sb_error *err)
{
    if (fn->kind != PV_GLOBAL)
        return sb_fail(err, SB_EFORMAT, "pickle: REDUCE on a %s (only allowlisted callables)", pv_kind_name(fn->kind));
    if (args->kind != PV_TUPLE)
        return sb_fail(err, SB_EFORMAT, "pickle: REDUCE arguments are a %s, not a tuple", pv_kind_name(args->kind));
    pv *v;
    switch (fn->gid) {
    case G_ODICT:
        if (args->n > 1)
            return sb_fail(err, SB_EFORMAT, "pickle: OrderedDict with %zu arguments", args->n);
        v = pvm_new(vm, PV_DICT);
        if (!v)
            return sb_fail(err, SB_ENOMEM, "pickle: out of memory");
        if (args->n == 1) { /* OrderedDict([(k, v), ...]) */
            pv *l = args->items[0];
            if (l->kind != PV_LIST && l->kind != PV_TUPLE)
                return sb_fail(err, SB_EFORMAT, "pickle: OrderedDict of a %s", pv_kind_name(l->kind));
            for (size_t i = 0; i < l->n; i++) {
                pv *p = l->items[i];
                if (p->kind != PV_TUPLE || p->n != 2)
                    return sb_fail(err, SB_EFORMAT, "pickle: OrderedDict item is not a pair");
                if (pv_dict_set(v, p->items[0], p->items[1]))
                    return sb_fail(err, SB_ENOMEM, "pickle: out of memory");
            }
        }
        *out = v;
        return SB_OK;
    case G_REBUILD_V2: return rebuild_tensor(vm, args, 0, out, err);
    case G_REBUILD_TENSOR: return rebuild_tensor(vm, args, 1, out, err);
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE:
        if (args->n < 1 || args->items[0]->kind != PV_TENSOR)
            return sb_fail(err, SB_EFORMAT, "pickle: _rebuild_parameter without a tensor");
        *out = args->items[0];
        return SB_OK;
    case G_FROM_TYPE_V2: { /* (func, new_type, args, state) */
        if (args->n != 4 || args->items[1]->kind != PV_GLOBAL || args->items[1]->gid != G_TENSOR_TYPE ||
            args->items[2]->kind != PV_TUPLE)
            return sb_fail(err, SB_EFORMAT, "pickle: _rebuild_from_type_v2 with unexpected arguments");
        return apply_reduce(vm, s, args->items[0], args->items[2], out, err);
    }
    case G_LOAD_BYTES: {
        if (args->n != 1 || args->items[0]->kind != PV_BYTES)
            return sb_fail(err, SB_EFORMAT, "pickle: _load_from_bytes without bytes");
        if (vm->depth >= 1)
            return sb_fail(err, SB_EFORMAT, "pickle: nested _load_from_bytes");
        pv *b = args->items[0];
        wsrc sub;
        if (b->lazy) {
            if (wsrc_sub(&sub, s, b->src_off, b->slen))
                return sb_fail(err, SB_EFORMAT, "pickle: bytes outside the file");
        } else
            wsrc_init_mem(&sub, b->s, b->slen);
        vm->depth++;
        int rc = legacy_load(vm, &sub, out, err);
        vm->depth--;
        if (rc == SB_OK && (*out)->kind != PV_STORAGE)
            rc = sb_fail(err, SB_EFORMAT, "pickle: _load_from_bytes gave a %s, not a storage", pv_kind_name((*out)->kind));
        if (rc == SB_OK && (*out)->backing == ST_SRC) {
            if (b->lazy) /* data_off is relative to the blob: make it relative to s */
                (*out)->data_off += b->src_off;
            else { /* the blob is in memory (kept until pvm_free) */
                (*out)->backing = ST_MEM;
                (*out)->mem = (const uint8_t *)b->s + (*out)->data_off;
            }
        }
        wsrc_free(&sub);
        return rc;
    }
    case G_DEVICE: {
        if (args->n < 1 || args->n > 2 || args->items[0]->kind != PV_STR)
            return sb_fail(err, SB_EFORMAT, "pickle: torch.device with unexpected arguments");
        v = pvm_new(vm, PV_DEVICE);
        if (!v || !(v->s = strdup(args->items[0]->s)))
            return sb_fail(err, SB_ENOMEM, "pickle: out of memory");
        v->slen = strlen(v->s);
        *out = v;
        return SB_OK;
    }
    case G_SET:
    case G_FROZENSET:
    case G_SIZE: {
        v = pvm_new(vm, fn->gid == G_SIZE ? PV_TUPLE : PV_SET);
        if (!v)
            return sb_fail(err, SB_ENOMEM, "pickle: out of memory");
        if (args->n == 1) {
            pv *l = args->items[0];
            if (l->kind != PV_LIST && l->kind != PV_TUPLE && l->kind != PV_SET)
                return sb_fail(err, SB_EFORMAT, "pickle: set/Size of a %s", pv_kind_name(l->kind));
            for (size_t i = 0; i < l->n; i++)
                if (pv_push_item(v, l->items[i]))
                    return sb_fail(err, SB_ENOMEM, "pickle: out of memory");
        } else if (args->n > 1)
            return sb_fail(err, SB_EFORMAT, "pickle: set with %zu arguments", args->n);
        *out = v;
        return SB_OK;
    }
    default:
        return sb_fail(err, SB_EFORMAT, "pickle: global is not callable (REDUCE refused)");
    }
}

int pvm_run(pvm *vm, wsrc *s, pv **out, sb_error *err)
{
    vmstate S = {0};
    int rc = SB_OK;
    uint64_t nops = 0;
    *out = NULL;
    uint8_t op = 0;
    uint64_t at = 0;
#define base_mark() (S.nmarks ? S.marks[S.nmarks - 1] : 0)
    for (;;) {
        at = s->pos;
        if (wsrc_read(s, &op, 1) != 0) {
            if (s->pos > 0 || nops > 0)
                FAIL("pickle ends early (no STOP opcode, %llu bytes)", (unsigned long long)s->pos);
            FAIL("pickle is empty");
        }
        nops++;
        vm->ops++;
        pv *v = NULL;
        uint8_t b1;
        uint16_t b2;
        uint32_t b4;
        uint64_t b8;
        switch (op) {
        case 0x80: /* PROTO */
            RD(&b1, 1);
            if (b1 > 5)
                FAIL("pickle: unsupported protocol %u", b1);
            break;
        case 0x95: /* FRAME: length ignored, data is read sequentially */
            RD(&b8, 8);
            break;
        case '.': /* STOP */
            if (S.n == 0 || S.nmarks)
                FAIL("pickle: STOP with %s", S.n ? "an open MARK" : "an empty stack");
            *out = S.st[S.n - 1];
            goto out;
        case '(': /* MARK */
            if (S.nmarks == S.marks_cap) {
                size_t cap = S.marks_cap ? S.marks_cap * 2 : 16;
                size_t *m = realloc(S.marks, cap * sizeof *m);
                if (!m) {
                    rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                    goto out;
                }
                S.marks = m;
                S.marks_cap = cap;
            }
            S.marks[S.nmarks++] = S.n;
            break;
        case '0': /* POP */
            if (S.n > base_mark())
                S.n--;
            else if (S.nmarks && S.marks[S.nmarks - 1] == S.n)
                S.nmarks--;
            else
                FAIL("pickle: POP on an empty stack");
            break;
        case '1': /* POP_MARK */
            if (!S.nmarks)
                FAIL("pickle: POP_MARK without MARK");
            S.n = S.marks[--S.nmarks];
            break;
        case '2': /* DUP */
            NEED(1);
            PUSH(S.st[S.n - 1]);
            break;
        case 'N': NEWV(v, PV_NONE); PUSH(v); break;
        case 0x88:
        case 0x89:
            NEWV(v, PV_BOOL);
            v->i = op == 0x88;
            PUSH(v);
            break;
        case 'K': RD(&b1, 1); NEWV(v, PV_INT); v->i = b1; PUSH(v); break;
        case 'M': RD(&b2, 2); NEWV(v, PV_INT); v->i = b2; PUSH(v); break;
        case 'J': {
            int32_t x;
            RD(&x, 4);
            NEWV(v, PV_INT);
            v->i = x;
            PUSH(v);
            break;
        }
        case 0x8a: /* LONG1 */
        case 0x8b: { /* LONG4 */
            uint32_t n = 0;
            if (op == 0x8a) {
                RD(&b1, 1);
                n = b1;
            } else {
                RD(&b4, 4);
                n = b4;
            }
            if (n > 4096 || n > wsrc_left(s))
                FAIL("pickle: LONG of %u bytes", n);
            uint8_t tmp[4096];
            RD(tmp, n);
            if (n <= 8) {
                uint64_t u = 0;
                for (uint32_t k = 0; k < n; k++)
                    u |= (uint64_t)tmp[k] << (8 * k);
                if (n > 0 && n < 8 && (tmp[n - 1] & 0x80))
                    u |= ~0ull << (8 * n);
                NEWV(v, PV_INT);
                v->i = (int64_t)u;
            } else {
                NEWV(v, PV_BIGINT);
                v->s = malloc(n);
                if (!v->s) {
                    rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                    goto out;
                }
                memcpy(v->s, tmp, n);
                v->slen = n;
            }
            PUSH(v);
            break;
        }
        case 'G': { /* BINFLOAT, big endian */
            uint8_t t[8];
            RD(t, 8);
            uint64_t u = 0;
            for (int k = 0; k < 8; k++)
                u = (u << 8) | t[k];
            NEWV(v, PV_FLOAT);
            memcpy(&v->f, &u, 8);
            PUSH(v);
            break;
        }
        case 'X':    /* BINUNICODE */
        case 0x8c:   /* SHORT_BINUNICODE */
        case 0x8d:   /* BINUNICODE8 */
        case 'T':    /* BINSTRING */
        case 'U':    /* SHORT_BINSTRING */
        case 'B':    /* BINBYTES */
        case 'C':    /* SHORT_BINBYTES */
        case 0x8e:   /* BINBYTES8 */
        case 0x96: { /* BYTEARRAY8 */
            uint64_t n;
            if (op == 0x8c || op == 'U' || op == 'C') {
                RD(&b1, 1);
                n = b1;
            } else if (op == 0x8d || op == 0x8e || op == 0x96) {
                RD(&b8, 8);
                n = b8;
            } else {
                RD(&b4, 4);
                n = b4;
            }
            int is_bytes = op == 'B' || op == 'C' || op == 0x8e || op == 0x96;
            if (n > wsrc_left(s))
                FAIL("pickle ends early (a %s of %llu bytes at byte %llu, %llu left)",
                     is_bytes ? "bytes object" : "string", (unsigned long long)n, (unsigned long long)at,
                     (unsigned long long)wsrc_left(s));
            NEWV(v, is_bytes ? PV_BYTES : PV_STR);
            if (is_bytes && vm->lazy_bytes_min > 0 && n >= (uint64_t)vm->lazy_bytes_min) {
                v->lazy = 1;
                v->src_off = s->pos;
                v->slen = n;
                wsrc_skip(s, n);
            } else {
                if (!is_bytes && n > MAX_STR)
                    FAIL("pickle: string of %llu bytes", (unsigned long long)n);
                if (n > MAX_INLINE)
                    FAIL("pickle: bytes object of %llu bytes", (unsigned long long)n);
                v->s = malloc((size_t)n + 1);
                if (!v->s) {
                    rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                    goto out;
                }
                RD(v->s, (size_t)n);
                v->s[n] = '\0';
                v->slen = (size_t)n;
                if (!is_bytes && memchr(v->s, 0, (size_t)n))
                    FAIL("pickle: string with a NUL byte");
            }
            PUSH(v);
            break;
        }
        case ')': NEWV(v, PV_TUPLE); PUSH(v); break;
        case ']': NEWV(v, PV_LIST); PUSH(v); break;
        case '}': NEWV(v, PV_DICT); PUSH(v); break;
        case 0x8f: NEWV(v, PV_SET); PUSH(v); break;
        case 0x85:
        case 0x86:
        case 0x87: {
            int k = op - 0x84;
            NEED(k);
            NEWV(v, PV_TUPLE);
            for (int j = 0; j < k; j++)
                if (pv_push_item(v, S.st[S.n - (size_t)k + (size_t)j])) {
                    rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                    goto out;
                }
            S.n -= (size_t)k;
            PUSH(v);
            break;
        }
        case 't':    /* TUPLE */
        case 'l':    /* LIST */
        case 0x91: { /* FROZENSET */
            if (!S.nmarks)
                FAIL("pickle: opcode 0x%02x without MARK", op);
            size_t m = S.marks[--S.nmarks];
            NEWV(v, op == 't' ? PV_TUPLE : op == 'l' ? PV_LIST : PV_SET);
            for (size_t j = m; j < S.n; j++)
                if (pv_push_item(v, S.st[j])) {
                    rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                    goto out;
                }
            S.n = m;
            PUSH(v);
            break;
        }
        case 'd': { /* DICT */
            if (!S.nmarks)
                FAIL("pickle: DICT without MARK");
            size_t m = S.marks[--S.nmarks];
            if ((S.n - m) % 2)
                FAIL("pickle: DICT with an odd number of items");
            NEWV(v, PV_DICT);
            for (size_t j = m; j < S.n; j += 2)
                if (pv_dict_set(v, S.st[j], S.st[j + 1])) {
                    rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                    goto out;
                }
            S.n = m;
            PUSH(v);
            break;
        }
        case 'a': { /* APPEND */
            NEED(2);
            pv *l = S.st[S.n - 2];
            if (l->kind != PV_LIST)
                FAIL("pickle: APPEND to a %s", pv_kind_name(l->kind));
            if (pv_push_item(l, S.st[S.n - 1])) {
                rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                goto out;
            }
            S.n--;
            break;
        }
        case 'e':    /* APPENDS */
        case 0x90: { /* ADDITEMS */
            if (!S.nmarks)
                FAIL("pickle: opcode 0x%02x without MARK", op);
            size_t m = S.marks[--S.nmarks];
            if (m == 0)
                FAIL("pickle: APPENDS without a list");
            pv *l = S.st[m - 1];
            if (l->kind != (op == 'e' ? PV_LIST : PV_SET))
                FAIL("pickle: opcode 0x%02x on a %s", op, pv_kind_name(l->kind));
            for (size_t j = m; j < S.n; j++)
                if (pv_push_item(l, S.st[j])) {
                    rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                    goto out;
                }
            S.n = m;
            break;
        }
        case 's': { /* SETITEM */
            NEED(3);
            pv *d = S.st[S.n - 3];
            if (d->kind != PV_DICT)
                FAIL("pickle: SETITEM on a %s", pv_kind_name(d->kind));
            if (pv_dict_set(d, S.st[S.n - 2], S.st[S.n - 1])) {
                rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                goto out;
            }
            S.n -= 2;
            break;
        }
        case 'u': { /* SETITEMS */
            if (!S.nmarks)
                FAIL("pickle: SETITEMS without MARK");
            size_t m = S.marks[--S.nmarks];
            if (m == 0 || S.st[m - 1]->kind != PV_DICT)
                FAIL("pickle: SETITEMS without a dict");
            if ((S.n - m) % 2)
                FAIL("pickle: SETITEMS with an odd number of items");
            for (size_t j = m; j < S.n; j += 2)
                if (pv_dict_set(S.st[m - 1], S.st[j], S.st[j + 1])) {
                    rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                    goto out;
                }
            S.n = m;
            break;
        }
        case 'c': { /* GLOBAL "module\nname\n" */
            char mod[256], name[256];
            char *parts[2] = {mod, name};
            for (int pidx = 0; pidx < 2; pidx++) {
                size_t k = 0;
                for (;;) {
                    uint8_t ch;
                    RD(&ch, 1);
                    if (ch == '\n')
                        break;
                    if (k + 1 >= sizeof mod || ch < 0x20 || ch > 0x7e)
                        FAIL("pickle: malformed GLOBAL at byte %llu", (unsigned long long)at);
                    parts[pidx][k++] = (char)ch;
                }
                parts[pidx][k] = '\0';
            }
            int gid, dt;
            if (resolve_global(mod, name, &gid, &dt))
                FAIL("pickle: disallowed global '%s.%s' (only torch tensor/storage rebuilders, dtypes and "
                     "collections.OrderedDict are allowed; nothing is executed)", mod, name);
            NEWV(v, PV_GLOBAL);
            v->gid = gid;
            v->dtype = dt;
            if (!(v->s = strdup(name))) {
                rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                goto out;
            }
            PUSH(v);
            break;
        }
        case 0x93: { /* STACK_GLOBAL */
            NEED(2);
            pv *m = S.st[S.n - 2], *n = S.st[S.n - 1];
            if (m->kind != PV_STR || n->kind != PV_STR)
                FAIL("pickle: STACK_GLOBAL on non-strings");
            int gid, dt;
            if (resolve_global(m->s, n->s, &gid, &dt))
                FAIL("pickle: disallowed global '%.200s.%.200s' (only torch tensor/storage rebuilders, dtypes "
                     "and collections.OrderedDict are allowed; nothing is executed)", m->s, n->s);
            NEWV(v, PV_GLOBAL);
            v->gid = gid;
            v->dtype = dt;
            if (!(v->s = strdup(n->s))) {
                rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                goto out;
            }
            S.n -= 2;
            PUSH(v);
            break;
        }
        case 'R': { /* REDUCE */
            NEED(2);
            pv *r = NULL;
            rc = apply_reduce(vm, s, S.st[S.n - 2], S.st[S.n - 1], &r, err);
            if (rc)
                goto out;
            S.n -= 2;
            PUSH(r);
            break;
        }
        case 'b': { /* BUILD: state on dicts (OrderedDict._metadata) and tensors is ignored */
            NEED(2);
            pv *o = S.st[S.n - 2];
            if (o->kind != PV_DICT && o->kind != PV_TENSOR)
                FAIL("pickle: BUILD on a %s", pv_kind_name(o->kind));
            S.n--;
            break;
        }
        case 'Q': { /* BINPERSID */
            NEED(1);
            if (!vm->persistent_load)
                FAIL("pickle: persistent id where none is expected");
            pv *r = NULL;
            rc = vm->persistent_load(vm, vm->persid_arg, S.st[S.n - 1], &r, err);
            if (rc)
                goto out;
            S.st[S.n - 1] = r;
            break;
        }
        case 'h':   /* BINGET */
        case 'j': { /* LONG_BINGET */
            uint64_t idx;
            if (op == 'h') {
                RD(&b1, 1);
                idx = b1;
            } else {
                RD(&b4, 4);
                idx = b4;
            }
            if (idx >= S.memo_cap || !S.memo[idx])
                FAIL("pickle: memo %llu read before it was written", (unsigned long long)idx);
            PUSH(S.memo[idx]);
            break;
        }
        case 'q':    /* BINPUT */
        case 'r':    /* LONG_BINPUT */
        case 0x94: { /* MEMOIZE */
            uint64_t idx;
            if (op == 'q') {
                RD(&b1, 1);
                idx = b1;
            } else if (op == 'r') {
                RD(&b4, 4);
                idx = b4;
            } else
                idx = 0; /* set below */
            NEED(1);
            if (op == 0x94) /* MEMOIZE: memo[len(memo)] = top */
                idx = S.memo_len;
            if (idx > nops + 256)
                FAIL("pickle: memo index %llu out of range", (unsigned long long)idx);
            if (idx >= S.memo_cap) {
                size_t cap = S.memo_cap ? S.memo_cap : 64;
                while (cap <= idx)
                    cap *= 2;
                pv **m = realloc(S.memo, cap * sizeof *m);
                if (!m) {
                    rc = sb_fail(err, SB_ENOMEM, "pickle: out of memory");
                    goto out;
                }
                memset(m + S.memo_cap, 0, (cap - S.memo_cap) * sizeof *m);
                S.memo = m;
                S.memo_cap = cap;
            }
            if (!S.memo[idx])
                S.memo_len++;
            S.memo[idx] = S.st[S.n - 1];
            break;
        }
        default:
            FAIL("pickle: unknown or disallowed opcode 0x%02x at byte %llu", op, (unsigned long long)at);
        }
    }
out:
#undef base_mark
    free(S.st);
    free(S.marks);
    free(S.memo);
    if (rc != SB_OK)
        *out = NULL;
    return rc;
}
