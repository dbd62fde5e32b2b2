/*
 * Internal declarations shared by core/weights*.c (not part of the public
 * API): a byte source over memory or a file window, the restricted pickle
 * virtual machine and its value tree, torch storages and their backing.
 */
#ifndef SB_WEIGHTS_INTERNAL_H
#define SB_WEIGHTS_INTERNAL_H

#include "sambench.h"

#include <stdint.h>
#include <stdio.h>

/* ---- byte source: memory, or a window of a file read with pread ------- */
typedef struct wsrc {
    const uint8_t *mem; /* memory source if not NULL */
    int fd;             /* file source otherwise */
    uint64_t base;      /* absolute offset of the window in mem / file */
    uint64_t size;      /* window length */
    uint64_t pos;       /* position inside the window */
    uint8_t *buf;       /* read buffer (file sources) */
    size_t buf_cap;
    uint64_t buf_start; /* absolute offset of buf[0] */
    size_t buf_len;
    int own_buf;
} wsrc;

void wsrc_init_mem(wsrc *s, const void *data, size_t len);
/* A file source over [base, base+size); buf_cap bytes of buffer. */
int wsrc_init_fd(wsrc *s, int fd, uint64_t base, uint64_t size, size_t buf_cap);
/* A sub-window [off, off+len) of s (relative to s's window), sharing nothing. */
int wsrc_sub(wsrc *sub, const wsrc *s, uint64_t off, uint64_t len);
void wsrc_free(wsrc *s);
/* 0 on success, -1 at end of window (nothing is read then), -2 on I/O error. */
int wsrc_read(wsrc *s, void *dst, size_t n);
/* Reads at an absolute window offset, not moving pos. Same return codes. */
int wsrc_pread(wsrc *s, void *dst, size_t n, uint64_t off);
int wsrc_skip(wsrc *s, uint64_t n);
static inline uint64_t wsrc_left(const wsrc *s) { return s->size - s->pos; }

/* ---- dtypes ------------------------------------------------------------ */
int sb_dtype_size(int dtype);
/* torch names: "FloatStorage" / "float32" style -> SB_DT_*, -1 if unknown. */
int sb_dtype_from_storage_name(const char *name);
int sb_dtype_from_torch_name(const char *name);
const char *sb_dtype_storage_name(int dtype); /* "FloatStorage" */
/* Converts n elements of dtype at src (little endian) to float32. */
void sb_convert_to_f32(int dtype, const void *src, float *dst, size_t n);

/* ---- pickle values ----------------------------------------------------- */
enum pv_kind {
    PV_NONE, PV_BOOL, PV_INT, PV_BIGINT, PV_FLOAT, PV_STR, PV_BYTES, PV_TUPLE, PV_LIST,
    PV_DICT, PV_SET, PV_GLOBAL, PV_STORAGE, PV_TENSOR, PV_DEVICE
};

/* allowlisted globals */
enum pv_global {
    G_ODICT = 1, G_REBUILD_V2, G_REBUILD_TENSOR, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE,
    G_FROM_TYPE_V2, G_TENSOR_TYPE, G_LOAD_BYTES, G_DEVICE, G_SET, G_FROZENSET, G_SIZE,
    G_STORAGE_TYPE, /* dtype in pv.dtype */
    G_DTYPE         /* dtype in pv.dtype */
};

/* ST_ZIP: a compressed zip entry (libzip, index zip_index); ST_ZIPSTORED: a
 * stored zip entry (directory index zip_index) whose local header is not read
 * yet (it becomes ST_SRC on first read); ST_SRC: raw data at data_off of the
 * loader's source; ST_MEM: raw data in memory. */
enum storage_backing { ST_NONE = 0, ST_ZIP = 1, ST_SRC = 2, ST_MEM = 3, ST_ZIPSTORED = 4 };

typedef struct pv pv;
struct pv {
    int kind;
    int gid;   /* PV_GLOBAL */
    int dtype; /* PV_GLOBAL storage/dtype, PV_STORAGE */
    int64_t i; /* PV_INT, PV_BOOL */
    double f;
    char *s; /* PV_STR, PV_DEVICE (NUL terminated), PV_BYTES inline / PV_BIGINT raw */
    size_t slen;
    /* PV_BYTES may be lazy: its content stays in the source at src_off */
    int lazy;
    uint64_t src_off;
    pv **items; /* tuple/list/set; dict: 2*n (key, value) */
    size_t n, cap;
    size_t *dhash; /* dict of more than 16 pairs: its string keys hashed (pair index+1, 0 = empty) */
    size_t dhcap;
    /* PV_STORAGE */
    char *key;
    char *location;
    int64_t numel;
    int backing; /* enum storage_backing */
    int refs;    /* tensors of the state dict being loaded that use it (weights.c) */
    int64_t zip_index;
    uint64_t data_off; /* ST_SRC: window offset of the raw data in the loader's source */
    const uint8_t *mem; /* ST_MEM: the raw data (inside another value's bytes) */
    int has_crc;        /* ST_SRC inside a zip: CRC-32 to check on a whole read */
    uint32_t crc;
    /* PV_TENSOR */
    pv *storage;
    int64_t offset;
    int ndim;
    int64_t shape[SB_MAX_DIMS];
    int64_t stride[SB_MAX_DIMS];
};

/* Hooks of a VM run. persistent_load turns a persistent id into a value. */
typedef struct pvm pvm;
typedef int (*pvm_persid_fn)(pvm *vm, void *arg, pv *pid, pv **out, sb_error *err);

struct pvm {
    pv **objs; /* every allocated value (freed together; sanitizer builds only, else the slabs hold them) */
    size_t nobjs, objs_cap; /* nobjs: values allocated */
    /* values are carved from slabs, not allocated one by one: a full-size
     * checkpoint's pickle makes ~13,000 of them, and faulting in their heap
     * pages 4 KiB at a time cost ~12 ms of a ~75 ms load (weights_pickle.c) */
    void *slab;       /* current slab (its header links the previous ones) */
    size_t slab_used; /* bytes used in the current slab */
    size_t slab_cap;  /* its size */
    pvm_persid_fn persistent_load;
    void *persid_arg;
    /* _load_from_bytes: a legacy torch.save blob in this VM's source */
    wsrc *src; /* source of the current run (for lazy bytes) */
    int depth; /* nesting of legacy blobs */
    int lazy_bytes_min; /* BINBYTES of at least this many bytes stay lazy (0 = never) */
    uint64_t ops; /* opcodes executed in all runs */
};

void pvm_init(pvm *vm);
void pvm_free(pvm *vm);
pv *pvm_new(pvm *vm, int kind);
/* Runs one pickle (up to and including STOP) from s. *out = the result. */
int pvm_run(pvm *vm, wsrc *s, pv **out, sb_error *err);
const char *pv_kind_name(int kind);
/* dict lookup by string key, NULL if absent */
pv *pv_dict_get(const pv *d, const char *key);

/* A legacy (non-zip) torch.save stream in s: magic, protocol, sys info,
 * the object, the storage keys, then the storages. Storages become ST_SRC
 * backed, with data_off relative to s's window. */
int legacy_load(pvm *vm, wsrc *s, pv **out, sb_error *err);

/* Tensor geometry checks against its storage: element span within numel,
 * overflow-free counts. count = number of elements, lo..hi = the storage
 * element range [lo, hi] touched (hi < lo when count == 0). */
int tensor_check(const pv *t, int64_t *count, int64_t *lo, int64_t *hi, sb_error *err);
int tensor_is_contiguous(const pv *t);
/* Gathers the strided view t from span (storage elements [lo, ...]) into
 * dst as packed elements of the same dtype. */
void tensor_gather(const pv *t, const uint8_t *span, int64_t lo, uint8_t *dst);

/* ---- an opened torch file (zip, legacy, plain pickle) ----------------- */
/* One entry of a zip central directory. */
typedef struct zdirent {
    uint64_t name_off; /* the name: zcd + name_off, name_len bytes (not NUL terminated) */
    uint32_t name_len;
    uint16_t method, flags;
    uint32_t crc;
    uint64_t csize, usize, lho; /* zip64 values where the entry has them */
} zdirent;

typedef struct torchfile {
    int fmt; /* enum sb_file_format */
    char path[4096];
    struct zip *zip; /* libzip, opened only to inflate compressed entries */
    uint64_t file_size;
    char prefix[512]; /* zip archive folder, e.g. "archive" */
    uint8_t *zcd;     /* the zip central directory, read and checked by us */
    uint64_t zcd_off; /* its offset: every entry's data ends before it */
    zdirent *zent;     /* its entries, in directory order */
    size_t zip_n;
    size_t *zhash; /* open addressing over zent by name: index+1, 0 = empty */
    size_t zhcap;
    int fd;
    wsrc src; /* legacy / pickle: the whole file (or memory) */
    pvm vm;
    pv *root;
    pv **stores; /* storages by key (shared storages resolve to one value) */
    size_t nstores, stores_cap;
    size_t *store_hash; /* open addressing over stores by key: index+1, 0 = empty */
    size_t store_hcap;
    uint8_t *scratch;
    size_t scratch_cap;
} torchfile;

/* Opens path (mem == NULL) or a memory image of a file (mem, len; the name
 * is used in messages) and runs its pickle. fmt must be a torch format
 * (zip, legacy or plain pickle). lazy: large bytes stay in the file. */
int torchfile_open(torchfile *tf, const char *name, const void *mem, size_t len, int fmt,
                   sb_error *err);
void torchfile_close(torchfile *tf);
/* Packed elements of t in the file's dtype (count * dtype size bytes). */
int torchfile_tensor_raw(torchfile *tf, const pv *t, void *dst, sb_error *err);
/* t converted to float32. */
int torchfile_tensor_f32(torchfile *tf, const pv *t, float *dst, sb_error *err);
/* Parallel tensor reads (the load of a torch zip checkpoint). A tensor may
 * be read by a worker thread only if torchfile_tensor_parallel_ok(): float32,
 * contiguous, covering the whole of a stored zip entry that no other tensor
 * of the load uses (st->refs == 1, set by the caller). Such a read touches
 * nothing of tf but its own storage (the same code as a serial read: same
 * bytes, same CRC check, same message). */
int torchfile_tensor_parallel_ok(const pv *t);
typedef struct {
    const pv *t;
    float *dst;
} tf_read_job;
/* Reads jobs[0..n) on `threads` threads (the caller's among them; plain
 * pthreads, all joined before it returns), taken in order. status[i] = 0
 * when job i was read, else its error code (jobs after a failed one may be
 * skipped: status -1). On failure, *first = the lowest failed job and err
 * its message (the one a serial read gives); that job's code is returned. */
int torchfile_read_parallel(torchfile *tf, const tf_read_job *jobs, size_t n, int threads, int *status,
                            size_t *first, sb_error *err);
/* Format by the first bytes. */
int sb_detect_format(const uint8_t *head, size_t n);

/* Loaders over a memory image (fuzz targets, tests); name is for messages. */
int weights_load_mem(sb_weights **out, const char *name, const void *data, size_t len, sb_error *err);
int bank_load_mem(sb_bank **out, const char *name, const void *data, size_t len, sb_error *err);

/* ---- key/shape tables of the variants (core/weights_variants.c) ------- */
typedef struct {
    const char *key;
    int ndim;
    int64_t shape[5];
} sb_key_shape;
/* NULL if unknown; *n = entries. */
const sb_key_shape *sb_variant_table(const char *variant, size_t *n);
/* The table of a variant derived from a config file (NULL: the official
 * config of the variant), in state-dict order (core/weights_shapes.c). */
int sb_key_table_from_config(const char *variant, const char *config, sb_key_shape **out, size_t *n,
                             sb_error *err);
void sb_key_table_free(sb_key_shape *t, size_t n);
int weights_validate_table(const sb_weights *w, const sb_key_shape *tab, size_t n, const char *label, int mode,
                           sb_error *err);
int weights_write_random(const char *path, const sb_key_shape *tab, size_t n, int wrap_model, uint64_t seed,
                         sb_error *err);

#endif
