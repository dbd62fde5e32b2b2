/*
 * sambench core: the CPU inference library (the one public header).
 *
 * Rules for everything declared here:
 *  - no MPI, no global mutable state, no exit(): a function that can fail
 *    returns an int error code (SB_OK == 0) and fills an sb_error message;
 *  - float32 buffers with their shapes in the argument lists (row-major,
 *    the innermost dimension last), in the spirit of llm.c;
 *  - resources come in *_create / *_free pairs; *_free(NULL) is a no-op.
 *
 * The file is organised in sections, one per area of the library; each
 * section is owned by the .c files named in its banner.
 */
#ifndef SAMBENCH_H
#define SAMBENCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SB_VERSION_MAJOR 0
#define SB_VERSION_MINOR 1
#define SB_VERSION_PATCH 0
#define SB_VERSION_STRING "0.1.0"

/* ===================================================================== */
/* Errors (core/error.c)                                                 */
/* ===================================================================== */

enum sb_status {
    SB_OK = 0,
    SB_EINVAL = 1,       /* invalid argument (caller's mistake)              */
    SB_EIO = 2,          /* cannot open / read / write a file                */
    SB_EFORMAT = 3,      /* file content is corrupt or not what it claims    */
    SB_ENOMEM = 4,       /* allocation failed or a size limit was exceeded   */
    SB_ESHAPE = 5,       /* a tensor has the wrong shape                     */
    SB_EKEY = 6,         /* a required key / dataset is missing              */
    SB_EUNSUPPORTED = 7, /* valid input we deliberately do not handle        */
    SB_ENUMERIC = 8      /* NaN / Inf where a finite value is required       */
};

#define SB_ERROR_MSG_MAX 1024

typedef struct sb_error {
    int code;                    /* one of enum sb_status */
    char msg[SB_ERROR_MSG_MAX];  /* one line, no trailing newline */
} sb_error;

/* Sets err (if not NULL) and returns code. printf-style message. */
int sb_fail(sb_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message: "<prefix>: <old message>". Returns err->code. */
int sb_error_prefix(sb_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sb_error_clear(sb_error *err);
const char *sb_status_name(int code);

/* ===================================================================== */
/* Execution context and threads (core/threads.c)                        */
/* ===================================================================== */
/*
 * Threading model: pthreads everywhere. Debian's libopenblas0-pthread is
 * the default OpenBLAS build, and our own loops run on a persistent pthread
 * pool owned by the sb_ctx. One number (SAMBENCH_THREADS) sets both. They
 * never run at the same time: a parallel region of ours never calls BLAS
 * with more than one thread (see sb_parallel_for), and BLAS is called only
 * from the thread that owns the ctx, so the process never has more than
 * `threads` busy threads.
 */
typedef struct sb_ctx sb_ctx;

/* threads <= 0 means sb_default_threads(1). Also sets OpenBLAS's thread
 * count (a process-wide setting of OpenBLAS). */
int sb_ctx_create(sb_ctx **out, int threads, sb_error *err);
void sb_ctx_free(sb_ctx *ctx);
int sb_ctx_threads(const sb_ctx *ctx);

/* SAMBENCH_THREADS if set (> 0), else (cores available to this process) /
 * ranks_on_node, at least 1. */
int sb_default_threads(int ranks_on_node);
/* Cores this process may run on (sched_getaffinity), at least 1. */
int sb_cores_available(void);

/* fn(arg, begin, end, worker) over [0, n) split into contiguous chunks of
 * at least `grain` items; worker is in [0, sb_ctx_threads(ctx)). Runs
 * serially when ctx is NULL, has one thread, or n <= grain. Blocking. */
typedef void (*sb_range_fn)(void *arg, int64_t begin, int64_t end, int worker);
void sb_parallel_for(sb_ctx *ctx, int64_t n, int64_t grain, sb_range_fn fn, void *arg);

/* Name of the OpenBLAS kernel in use (openblas_get_corename()) and config. */
const char *sb_blas_corename(void);
const char *sb_blas_config(void);

/* ===================================================================== */
/* Arena allocator for a forward pass's activations (core/arena.c)       */
/* ===================================================================== */
/*
 * A bump allocator over one block: plan the capacity once, allocate with
 * sb_arena_alloc, release in LIFO order with mark/reset, reuse across
 * forward passes. Allocations are 64-byte aligned. It never grows: an
 * allocation that does not fit returns NULL (and sb_arena_alloc_checked
 * fills an error naming the request). sb_arena_peak reports the high-water
 * mark, the figure the benchmarks and memory tests report.
 * A "measuring" arena (capacity 0 at create) hands out no memory but
 * records the peak an identical sequence of allocations would need; every
 * sb_arena_alloc on it returns NULL, so it is only for plan functions.
 */
typedef struct sb_arena sb_arena;

int sb_arena_create(sb_arena **out, size_t capacity, sb_error *err);
void sb_arena_free(sb_arena *a);
void *sb_arena_alloc(sb_arena *a, size_t bytes);
void *sb_arena_alloc_checked(sb_arena *a, size_t bytes, const char *what, sb_error *err);
#define sb_arena_floats(a, n) ((float *)sb_arena_alloc((a), (size_t)(n) * sizeof(float)))
size_t sb_arena_mark(const sb_arena *a);
void sb_arena_reset(sb_arena *a, size_t mark);
size_t sb_arena_used(const sb_arena *a);
size_t sb_arena_peak(const sb_arena *a);
size_t sb_arena_capacity(const sb_arena *a);
void sb_arena_reset_peak(sb_arena *a);

/* ===================================================================== */
/* HDF5 tensor I/O (core/h5io.c)                                         */
/* ===================================================================== */
/*
 * Reads and writes numeric datasets as float32 or int32 with their shapes.
 * Used by the parity tests (shared fixtures), replay outputs and the
 * sambench-h5 weight format. Any stored numeric type is converted by HDF5.
 */
#define SB_MAX_DIMS 8

typedef struct sb_h5 sb_h5;

enum sb_h5_mode { SB_H5_READ = 0, SB_H5_CREATE = 1, SB_H5_APPEND = 2 };

int sb_h5_open(sb_h5 **out, const char *path, int mode, sb_error *err);
void sb_h5_close(sb_h5 *f);
const char *sb_h5_path(const sb_h5 *f);
/* 1 if the dataset exists, 0 if not. */
int sb_h5_has(sb_h5 *f, const char *name);
/* Shape only. */
int sb_h5_shape(sb_h5 *f, const char *name, int *ndim, int64_t shape[SB_MAX_DIMS], sb_error *err);
/* *data is malloc'ed (caller frees); ndim/shape filled. */
int sb_h5_read_f32(sb_h5 *f, const char *name, float **data, int *ndim,
                   int64_t shape[SB_MAX_DIMS], sb_error *err);
int sb_h5_read_i32(sb_h5 *f, const char *name, int32_t **data, int *ndim,
                   int64_t shape[SB_MAX_DIMS], sb_error *err);
/* Creates intermediate groups; replaces nothing (error if it exists). */
int sb_h5_write_f32(sb_h5 *f, const char *name, const float *data, int ndim,
                    const int64_t *shape, sb_error *err);
int sb_h5_write_i32(sb_h5 *f, const char *name, const int32_t *data, int ndim,
                    const int64_t *shape, sb_error *err);
/* String attribute on a dataset or group ("/" for the file). */
int sb_h5_set_attr_str(sb_h5 *f, const char *obj, const char *attr, const char *value, sb_error *err);
/* Reads a string attribute into buf (truncated to cap-1). */
int sb_h5_get_attr_str(sb_h5 *f, const char *obj, const char *attr, char *buf, size_t cap, sb_error *err);

/* ===================================================================== */
/* Tensor ops (core/ops_*.c)                                             */
/* ===================================================================== */
/* SECTION: ops (owned by the tensor-op work; declarations go below) */

/* END SECTION: ops */

/* ===================================================================== */
/* Weights: checkpoints, memory banks, sambench-h5 (core/weights*.c)     */
/* ===================================================================== */
/* SECTION: weights (owned by the weights work; declarations go below) */

/* END SECTION: weights */

/* ===================================================================== */
/* Utilities                                                             */
/* ===================================================================== */
/* SHA-256 of a file, lowercase hex into out[65]. (core/sha256.c) */
int sb_sha256_file(const char *path, char out[65], sb_error *err);
void sb_sha256_buffer(const void *data, size_t len, char out[65]);

#ifdef __cplusplus
}
#endif
#endif /* SAMBENCH_H */
