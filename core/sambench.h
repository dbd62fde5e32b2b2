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
/* SECTION: ops */
/*
 * Conventions: row-major float32; `ctx` may be NULL (serial); outputs never
 * alias inputs unless a function says "in place" or "y may equal x".
 * Functions returning int can fail (bad sizes, scratch exhausted); the
 * others cannot fail for valid sizes.
 */

/* ---- GEMM, linear layers, elementwise (core/ops_linear.c) ------------- */
/* C[M,N] = alpha * op(A) op(B) + beta * C via cblas_sgemm (row-major). */
void sb_gemm(int trans_a, int trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
             int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* Token-major linear: y[M,N] = x[M,K] W[N,K]^T + b[N] (b may be NULL). */
void sb_linear(sb_ctx *ctx, const float *x, int64_t M, int64_t K, const float *W, const float *b,
               int64_t N, float *y);
/* Channel-major linear (a 1x1 conv), per image: y[B][N,P] = W[N,K] x[B][K,P] + b[N]. */
void sb_linear_cm(sb_ctx *ctx, const float *x, int64_t B, int64_t K, int64_t P, const float *W,
                  const float *b, int64_t N, float *y);
/* In place, elementwise. GELU is the exact erf form (MODEL.md preamble). */
void sb_gelu(sb_ctx *ctx, float *x, int64_t n);
void sb_relu(sb_ctx *ctx, float *x, int64_t n);
void sb_sigmoid(sb_ctx *ctx, float *x, int64_t n);
/* y[i] += x[i] */
void sb_add(sb_ctx *ctx, float *y, const float *x, int64_t n);
/* Max-subtracted softmax over the last axis, in place: x[rows, cols]. */
void sb_softmax_rows(sb_ctx *ctx, float *x, int64_t rows, int64_t cols);
/* LayerNorm over the last dim: y[r,:] = (x-mean)/sqrt(var+eps)*w + b, biased
 * variance; w/b may be NULL (no affine); y may equal x. */
void sb_layernorm(sb_ctx *ctx, const float *x, int64_t rows, int64_t C, const float *w,
                  const float *b, float eps, float *y);
/* Channel LayerNorm on NCHW (LayerNorm2d): statistics over C at each pixel. y may equal x. */
void sb_layernorm2d(sb_ctx *ctx, const float *x, int64_t B, int64_t C, int64_t HW, const float *w,
                    const float *b, float eps, float *y);
/* Layout changes: [B,C,H,W] <-> [B,H,W,C]. */
void sb_nchw_to_nhwc(sb_ctx *ctx, const float *x, int64_t B, int64_t C, int64_t H, int64_t W, float *y);
void sb_nhwc_to_nchw(sb_ctx *ctx, const float *x, int64_t B, int64_t H, int64_t W, int64_t C, float *y);

/* ---- Attention (core/ops_attention.c) ---------------------------------- */
/*
 * Multi-head scaled-dot-product attention over `batch` independent problems
 * (images, windows) of Lq queries x Lk keys, `heads` heads of head_dim.
 * Element (b, l, h, d) of q is q[b*q_batch + l*q_row + h*head_dim + d]; the
 * same for k, v and out (so [B, L, heads*hd] token-major data and strided
 * views both fit). out = softmax(scale * q k^T + bias) v per head.
 * Computed flash-attention style: query blocks x key blocks with a running
 * max and sum, so no more than a block_q x block_k tile of scores exists per
 * worker. `bias`, if set, is called for every tile after scaling and must add
 * to scores[i*ld + j] the bias of query q0+i and key k0+j (SAM ViT's
 * decomposed relative position). Scratch comes from `scratch` (if not NULL,
 * so its peak measures the extra memory) or is malloc'ed.
 */
typedef void (*sb_attn_bias_fn)(void *arg, int64_t batch, int64_t head, int64_t q0, int64_t nq,
                                int64_t k0, int64_t nk, float *scores, int64_t ld);
typedef struct {
    int64_t batch, heads, Lq, Lk, head_dim;
    const float *q;
    int64_t q_row, q_batch;
    const float *k;
    int64_t k_row, k_batch;
    const float *v;
    int64_t v_row, v_batch;
    float *out;
    int64_t o_row, o_batch;
    float scale;
    sb_attn_bias_fn bias; /* may be NULL */
    void *bias_arg;
    int64_t block_q, block_k; /* 0 = default */
} sb_attn_args;
int sb_attention(sb_ctx *ctx, const sb_attn_args *args, sb_arena *scratch, sb_error *err);
/* Scratch bytes sb_attention needs for these args and thread count (for planning arenas). */
size_t sb_attention_scratch_bytes(const sb_attn_args *args, int threads);

/* ---- Convolutions and pooling (core/ops_conv.c) ------------------------ */
/* Output length of a convolution along one axis. */
int64_t sb_conv_out_size(int64_t in, int k, int stride, int pad);
/* NCHW Conv2d, weight [Cout, Cin/groups, kh, kw], bias may be NULL, dilation 1,
 * groups >= 1 (depthwise = Cin). y: [B, Cout, OH, OW]. */
int sb_conv2d(sb_ctx *ctx, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
              const float *w, const float *b, int64_t Cout, int kh, int kw, int stride, int pad,
              int groups, float *y, sb_arena *scratch, sb_error *err);
/* ConvTranspose2d kernel 2 stride 2 on NCHW, weight [Cin, Cout, 2, 2] (MODEL.md 6.14).
 * y: [B, Cout, 2H, 2W]. */
int sb_conv_transpose2x2(sb_ctx *ctx, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
                         const float *w, const float *b, int64_t Cout, float *y, sb_arena *scratch,
                         sb_error *err);
/* Conv3d kernel 3x3x3, stride 1, padding 1, on channels-last data
 * x[N][T][H][W][Cin] -> y[N][T][H][W][Cout]; weight [Cout, Cin, 3, 3, 3]. */
int sb_conv3d_3x3x3_cl(sb_ctx *ctx, const float *x, int64_t N, int64_t T, int64_t H, int64_t W,
                       int64_t Cin, const float *w, const float *b, int64_t Cout, float *y,
                       sb_arena *scratch, sb_error *err);
/* 2x2 max-pool, stride 2, floor, on NHWC: [B,H,W,C] -> [B,H/2,W/2,C]. */
void sb_maxpool2x2_nhwc(sb_ctx *ctx, const float *x, int64_t B, int64_t H, int64_t W, int64_t C,
                        float *y);
/* Window partition of NHWC [B,H,W,C] into [B*nWy*nWx, ws, ws, C] with zero
 * padding at the bottom/right (Hp = ceil(H/ws)*ws); window index
 * b*nWy*nWx + wy*nWx + wx (MODEL.md 2.2.4). */
void sb_window_partition(sb_ctx *ctx, const float *x, int64_t B, int64_t H, int64_t W, int64_t C,
                         int64_t ws, float *y);
/* Inverse: [B*nW, ws, ws, C] of a padded Hp x Wp grid -> [B,H,W,C] cropped. */
void sb_window_unpartition(sb_ctx *ctx, const float *x, int64_t B, int64_t H, int64_t W, int64_t C,
                           int64_t ws, float *y);

/* ---- Interpolation exactly as PyTorch (core/ops_interp.c) ------------- */
/* All on planes: x[planes, H, W] -> y[planes, OH, OW]. */
/* F.interpolate bilinear, align_corners=False, no antialias. */
void sb_interp_bilinear(sb_ctx *ctx, const float *x, int64_t planes, int64_t H, int64_t W, float *y,
                        int64_t OH, int64_t OW);
/* F.interpolate mode='nearest': src = floor(dst * in / out) (PyTorch's float scale). */
void sb_interp_nearest(sb_ctx *ctx, const float *x, int64_t planes, int64_t H, int64_t W, float *y,
                       int64_t OH, int64_t OW);
/* F.interpolate bicubic, align_corners=False, A = -0.75, taps clamped. */
void sb_interp_bicubic(sb_ctx *ctx, const float *x, int64_t planes, int64_t H, int64_t W, float *y,
                       int64_t OH, int64_t OW);

/* ---- Positional encodings (core/ops_posenc.c) -------------------------- */
/* SAM2 PositionEmbeddingSine (normalize, scale 2*pi, temperature 10000) of an
 * H x W map: out[F, H, W] (MODEL.md 2.2.7, 6.12). */
void sb_pe_sine(float *out, int64_t F, int64_t H, int64_t W);
/* SAM random-Fourier encoding of n points with normalised coords (u, v) in
 * [0,1]: out[n, 2*npf] = [sin(c), cos(c)], c = 2*pi*((2*uv - 1) G), G[2, npf]
 * (MODEL.md 2.3). */
void sb_pe_random_fourier(const float *G, int64_t npf, const float *uv, int64_t n, float *out);
/* Dense grid PE (get_dense_pe): out[2*npf, H, W] at pixel centres. */
void sb_pe_dense_grid(const float *G, int64_t npf, int64_t H, int64_t W, float *out);
/* Axial RoPE tables for an end_x x end_y grid (MODEL.md 2.6, 6.11):
 * cos/sin[pos, dim/2] with pos = y*end_x + x; x frequencies on pairs
 * [0, dim/4), y on [dim/4, dim/2). */
void sb_rope_axial_table(int64_t dim, int64_t end_x, int64_t end_y, float theta, float *cos_t,
                         float *sin_t);
/* Rotates adjacent channel pairs (2m, 2m+1) of x[L, dim] (row stride ld) in
 * place; row l uses table row (l mod table_len) (rope_k_repeat). */
void sb_rope_apply(float *x, int64_t L, int64_t dim, int64_t ld, const float *cos_t,
                   const float *sin_t, int64_t table_len);

/* END SECTION: ops */

/* ===================================================================== */
/* Weights: checkpoints, memory banks, sambench-h5 (core/weights*.c)     */
/* ===================================================================== */
/* SECTION: weights */
/*
 * The model-facing contract (models call only these to find their tensors);
 * the weights work adds loading options, writers and the memory bank below.
 */
typedef struct sb_weights sb_weights;
/* Loads a checkpoint: torch .pth/.pt zip or sambench-h5, picked by content. */
int sb_weights_load(sb_weights **out, const char *path, sb_error *err);
void sb_weights_free(sb_weights *w);
/* 1 if the tensor exists. */
int sb_weights_has(const sb_weights *w, const char *key);
/* Shape of a tensor; SB_EKEY if missing. */
int sb_weights_shape(const sb_weights *w, const char *key, int *ndim, int64_t shape[SB_MAX_DIMS],
                     sb_error *err);
/* The tensor as float32 with exactly this shape (ndim < 0: any shape); NULL
 * with an error naming the file, the key, and the expected and found shape. */
const float *sb_weights_get(const sb_weights *w, const char *key, int ndim, const int64_t *shape,
                            sb_error *err);

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
