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
 * pool owned by the sb_ctx. One number (SAMBENCH_THREADS) sets both, and
 * the two pools never run at the same time: either the ctx's thread calls
 * BLAS with `threads` BLAS threads, or our parallel region runs `threads`
 * workers that each call BLAS with OpenBLAS set to one thread for the
 * region (attention tiles, chunked linear layers), so the process never has
 * more than `threads` busy threads. openblas_set_num_threads is process-wide:
 * use one ctx at a time per process.
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
 * decomposed relative position); with a multi-threaded ctx it is called
 * from several workers at once, on different tiles. Scratch comes from
 * `scratch` (if not NULL, so its peak measures the extra memory) or is
 * malloc'ed; sb_attention_scratch_bytes(args, sb_ctx_threads(ctx)) is the
 * exact amount.
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
/* Fills args for packed token-major data: q [batch, Lq, heads*head_dim],
 * k/v [batch, Lk, heads*head_dim], out like q; scale 1/sqrt(head_dim) (the
 * softmax scale of F.scaled_dot_product_attention); no bias, default blocks. */
void sb_attn_args_packed(sb_attn_args *args, int64_t batch, int64_t heads, int64_t Lq, int64_t Lk,
                         int64_t head_dim, const float *q, const float *k, const float *v, float *out);
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
/* Scratch bytes sb_conv2d takes from its arena for these sizes (0 for the
 * 1x1 and depthwise paths). The im2col tile is bounded: at most
 * max(8 MiB, Cin/groups*kh*kw*OW*4) bytes whatever H, W and B. */
size_t sb_conv2d_scratch_bytes(int64_t B, int64_t Cin, int64_t H, int64_t W, int64_t Cout, int kh,
                               int kw, int stride, int pad, int groups);
/* ConvTranspose2d kernel 2 stride 2 on NCHW, weight [Cin, Cout, 2, 2] (MODEL.md 6.14).
 * y: [B, Cout, 2H, 2W]. */
int sb_conv_transpose2x2(sb_ctx *ctx, const float *x, int64_t B, int64_t Cin, int64_t H, int64_t W,
                         const float *w, const float *b, int64_t Cout, float *y, sb_arena *scratch,
                         sb_error *err);
/* Its scratch bytes (a tile of at most max(8 MiB, Cout*4*W*4) bytes). */
size_t sb_conv_transpose2x2_scratch_bytes(int64_t Cout, int64_t H, int64_t W);
/* Conv3d kernel 3x3x3, stride 1, padding 1, on channels-last data
 * x[N][T][H][W][Cin] -> y[N][T][H][W][Cout]; weight [Cout, Cin, 3, 3, 3]. */
int sb_conv3d_3x3x3_cl(sb_ctx *ctx, const float *x, int64_t N, int64_t T, int64_t H, int64_t W,
                       int64_t Cin, const float *w, const float *b, int64_t Cout, float *y,
                       sb_arena *scratch, sb_error *err);
/* Its scratch bytes: the repacked weight plus a tile of whole frames of about
 * 8 MiB (at least one frame). */
size_t sb_conv3d_3x3x3_cl_scratch_bytes(int64_t N, int64_t T, int64_t H, int64_t W, int64_t Cin,
                                        int64_t Cout);
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

/* ---- extended weights API (core/weights.c, weights_torch.c, weights_h5.c) */
/* Element types as found in files; loaded tensors are always float32. */
enum sb_dtype {
    SB_DT_F32 = 0, SB_DT_F64, SB_DT_F16, SB_DT_BF16, SB_DT_I64, SB_DT_I32, SB_DT_I16, SB_DT_I8,
    SB_DT_U8, SB_DT_BOOL, SB_DT_COUNT
};
const char *sb_dtype_name(int dtype); /* "float32", "bfloat16", ... */

/* File formats, recognised by content (never by name). */
enum sb_file_format {
    SB_FMT_UNKNOWN = 0,
    SB_FMT_TORCH_ZIP,    /* torch.save >= 1.6: zip of data.pkl + data/<key> */
    SB_FMT_TORCH_LEGACY, /* torch.save(_use_new_zipfile_serialization=False) */
    SB_FMT_PICKLE,       /* plain pickle.dump (the memory bank) */
    SB_FMT_H5            /* sambench-h5 (or any HDF5 file) */
};
int sb_file_format(const char *path, int *fmt, sb_error *err);
const char *sb_file_format_name(int fmt);

/* Loading options. Zero-initialise, then set what you need. */
typedef struct {
    /* The dict key holding the state dict (e.g. "state_dict"). NULL: the
     * value of "model" when the top level has it (SAM2 family), else the
     * top level itself (SAM / MedSAM). */
    const char *unwrap;
    /* Removed from the front of every key that has it (e.g. "module."). */
    const char *strip_prefix;
    /* If set, the loaded tensors are validated against this variant's table
     * (sb_weights_validate, SB_VALIDATE_FULL). */
    const char *variant;
    /* With variant: missing keys are created (random values from
     * init_seed, as init-random would) instead of failing; the list is in
     * sb_weights_initialised(). */
    int allow_missing;
    uint64_t init_seed;
    /* Threads reading a torch zip checkpoint's stored entries (page faults,
     * copy out of the page cache, CRC-32), whole tensors each, for the
     * duration of the load only (none is left running). 0 (or less):
     * sb_default_threads(1), i.e. SAMBENCH_THREADS or the cores available;
     * sb_weights_load uses that default too. 1: the serial load. The result
     * and any error message do not depend on it (the first failing tensor in
     * file order is reported). The pickle is parsed on one thread; legacy
     * torch.save and sambench-h5 files are read on one thread. */
    int threads;
} sb_weights_opts;
int sb_weights_load_ex(sb_weights **out, const char *path, const sb_weights_opts *opts,
                       sb_error *err);

/* Iteration over the tensors in file order. */
typedef struct {
    const char *name;
    int dtype; /* element type in the file */
    int ndim;
    int64_t shape[SB_MAX_DIMS];
    int64_t numel;
    uint64_t file_bytes; /* numel * size of dtype */
    const float *data;   /* float32 copy */
} sb_tensor_info;
size_t sb_weights_count(const sb_weights *w);
int sb_weights_info(const sb_weights *w, size_t i, sb_tensor_info *out);
int64_t sb_weights_parameters(const sb_weights *w); /* sum of numel */
int sb_weights_file_format(const sb_weights *w);
const char *sb_weights_path(const sb_weights *w);
/* Keys created by allow_missing, one per line ("" if none). */
const char *sb_weights_initialised(const sb_weights *w);

/* Variants: "samed2", "sam2_hiera_s", "sam2_hiera_t", "sam_vit_b" (key and
 * shape tables of the official checkpoints, embedded). */
int sb_variant_known(const char *variant);
const char *sb_variant_names(void); /* "samed2|sam2_hiera_s|sam2_hiera_t|sam_vit_b" */
int64_t sb_variant_tensor_count(const char *variant);
/* SB_VALIDATE_FULL: every key of the table with exactly its shape, and no
 * unexpected key under a module the model uses. SB_VALIDATE_STRUCTURE (for
 * reduced-size configs such as the test fixtures): key names with their
 * layer/block indices abstracted must belong to the table's set and have
 * the same number of dimensions; every pattern of the table must occur.
 * Errors name the key and the expected and found shape. */
enum { SB_VALIDATE_FULL = 0, SB_VALIDATE_STRUCTURE = 1 };
int sb_weights_validate(const sb_weights *w, const char *variant, int mode, sb_error *err);
/* Full validation against the table derived from a model config (a fixture
 * *_config.json or a configs/models YAML; NULL = the variant's official
 * config): exact keys and shapes for reduced-size models too. */
int sb_weights_validate_config(const sb_weights *w, const char *variant, const char *config,
                               sb_error *err);

/* Writers. The torch writer produces what torch.save(obj) of torch 1.13
 * produces: a zip (stored entries, 64-byte aligned data, data descriptors)
 * of <archive>/data.pkl (pickle protocol 2), <archive>/data/<i> and
 * <archive>/version; obj = {"model": OrderedDict} when wrap_model, else the
 * bare OrderedDict. Tensors are float32, contiguous, on "cpu". */
typedef struct sb_torch_writer sb_torch_writer;
int sb_torch_writer_open(sb_torch_writer **out, const char *path, int wrap_model, sb_error *err);
int sb_torch_writer_add(sb_torch_writer *tw, const char *name, int ndim, const int64_t *shape,
                        const float *data, sb_error *err);
/* Writes data.pkl and the directory, closes; frees tw in every case. */
int sb_torch_writer_close(sb_torch_writer *tw, sb_error *err);
void sb_torch_writer_abort(sb_torch_writer *tw); /* closes and deletes the file */
/* Random weights with exactly the variant's keys and shapes (layout of the
 * official file: {"model": ...} for the SAM2 family, bare for sam_vit_b). */
int sb_weights_init_random(const char *path, const char *variant, uint64_t seed, sb_error *err);
/* The same for the keys and shapes a config gives (reduced-size models);
 * config NULL = sb_weights_init_random. */
int sb_weights_init_random_config(const char *path, const char *variant, const char *config,
                                  uint64_t seed, sb_error *err);
/* The deterministic values init-random writes for one tensor. */
void sb_weights_random_values(const char *key, int ndim, const int64_t *shape, uint64_t seed,
                              float *out);
/* sambench-h5: one float32 dataset per tensor named by its key, attributes
 * "sambench_format" = "sambench-weights-1", "source", "source_sha256" on the
 * root and "dtype" (original) on each dataset. */
int sb_weights_save_h5(const sb_weights *w, const char *path, const char *source,
                       const char *source_sha256, sb_error *err);
/* The root attributes of a sambench-h5 file ("" when absent; each buffer
 * holds cap bytes). Returns 0, or -1 if the file cannot be opened. */
int sb_weights_h5_attrs(const char *path, char *format, char *source, char *source_sha256, size_t cap);

/* ---- memory bank (core/weights_bank.c) ---------------------------------- */
/*
 * memory_bank_list_<N>.pkl (MODEL.md 4.1): a pickle.dump'ed list of N
 * entries [maskmem_features (1,C,H,W), maskmem_pos_enc (1,C,H,W), iou (0-d),
 * backbone_features (L)], each tensor pickled as _rebuild_tensor_v2 of a
 * torch.storage._load_from_bytes(legacy torch.save blob) storage, possibly a
 * strided view with an offset into a larger storage, from any device.
 * In memory every entry owns compact arrays: a slot whose tensors are bf16 in
 * every entry is kept as bf16 bit patterns (uint16_t, convert on use with
 * sb_bank_to_f32), otherwise float32 (values converted at load). The file
 * is read in two passes (structure, then payload with pread), so the peak
 * memory is the payload plus one strided span, never two copies.
 * Entries are pointer arrays so an update can move an entry to the end
 * (MODEL.md 4.3) without copying payload.
 */
typedef struct sb_bank {
    int64_t n;            /* entries */
    int64_t C, H, W;      /* maskmem_features / maskmem_pos_enc are (1, C, H, W) */
    int64_t feat_len;     /* backbone_features length (C2*H*W, NCHW order) */
    int mem_dtype;        /* SB_DT_BF16 (uint16_t payload) or SB_DT_F32 (float) */
    int pos_dtype;        /* idem for maskmem_pos_enc */
    int feat_dtype;       /* idem for backbone_features */
    int iou_dtype;        /* iou dtype in the file (SB_DT_F32 or SB_DT_BF16); iou[] is float */
    void **maskmem;       /* n arrays of C*H*W elements (NCHW) */
    void **pos;           /* n arrays of C*H*W elements */
    void **feat;          /* n arrays of feat_len elements */
    float *iou;           /* n values (bf16 values exactly) */
    uint64_t payload_bytes; /* bytes of all entry arrays: the resident size of the bank */
    char location[32];    /* device the tensors were pickled from, e.g. "cuda:0" */
    /* The entry arrays live in one slab (huge pages where offered): never
     * free an entry array; to replace an entry, overwrite its arrays in
     * place (same sizes) and move the pointers (MODEL.md 4.3's "remove n*,
     * append" is a rotation of the three pointer arrays and iou[]). */
    void *slab;
    uint64_t slab_bytes;
    int slab_borrowed;    /* 1: the slab is the caller's (sb_bank_load_into), not freed */
} sb_bank;
int sb_bank_load(sb_bank **out, const char *path, sb_error *err);
/* Structure only (for inspect): shapes, dtypes, location and iou[] are
 * filled, maskmem/pos/feat are NULL and payload_bytes is 0. */
int sb_bank_inspect(sb_bank **out, const char *path, sb_error *err);
void sb_bank_free(sb_bank *b);
/* Bytes of the slab a full load of this bank needs (structure pass only). */
int sb_bank_slab_bytes(const char *path, uint64_t *bytes, sb_error *err);
/* Loads into caller-owned memory (e.g. an MPI shared window, so one copy
 * serves every rank of a node): slab_bytes >= sb_bank_slab_bytes. fill 1
 * reads the payload into it; fill 0 only sets the pointers (another process
 * filled the same memory; the layout is a function of the file). The slab
 * is not freed by sb_bank_free. */
int sb_bank_load_into(sb_bank **out, const char *path, void *slab, uint64_t slab_bytes, int fill, sb_error *err);
/* Converts n elements of a payload array (dtype SB_DT_BF16 or SB_DT_F32) to float32. */
void sb_bank_to_f32(const void *payload, int dtype, int64_t n, float *out);
/* bfloat16 <-> float32: exact widening; narrowing rounds to nearest even as
 * torch's .to(torch.bfloat16) does (MODEL.md 4.3), NaN stays NaN. */
float sb_bf16_to_f32(uint16_t h);
uint16_t sb_f32_to_bf16(float f);
/* Streaming writer of the same format (location e.g. "cuda:0"); payloads
 * are given in their dtype (uint16_t bf16 bits or float). iou_dtype is
 * SB_DT_F32 or SB_DT_BF16. */
typedef struct sb_bank_writer sb_bank_writer;
int sb_bank_writer_open(sb_bank_writer **out, const char *path, const char *location,
                        sb_error *err);
int sb_bank_writer_add(sb_bank_writer *bw, int64_t C, int64_t H, int64_t W, int mem_dtype,
                       const void *maskmem, const void *pos, int iou_dtype, float iou,
                       int64_t feat_len, int feat_dtype, const void *feat, sb_error *err);
int sb_bank_writer_close(sb_bank_writer *bw, sb_error *err); /* frees bw */
int sb_bank_save(const sb_bank *b, const char *path, const char *location, sb_error *err);

/* END SECTION: weights */

/* ===================================================================== */
/* SAM v1 ViT image encoder (core/vit_encoder.c) and the sam/medsam      */
/* flow's configuration (core/sam_vit_config.c)                          */
/* ===================================================================== */
/* SECTION: sam_vit */
/*
 * segment_anything ImageEncoderViT (MODEL.md 2.8): patch embed, absolute
 * position embedding, `depth` blocks with windowed (zero-padded) or global
 * attention with decomposed relative position bias, MLP with GELU, neck.
 * Layouts: the input image is NCHW [B,3,S,S]; blocks run NHWC; the output
 * is NCHW [B,out_chans,S/p,S/p].
 */
#define SB_VIT_MAX_DEPTH 64

typedef struct sb_vit_config {
    /* image encoder */
    int embed_dim;    /* encoder_embed_dim (768 for ViT-B) */
    int depth;        /* encoder_depth (12) */
    int num_heads;    /* encoder_num_heads (12) */
    int n_global;     /* number of encoder_global_attn_indexes */
    int global_idx[SB_VIT_MAX_DEPTH];
    int window_size;  /* 14 */
    int image_size;   /* 1024 */
    int patch_size;   /* vit_patch_size, 16 */
    int mlp_dim;      /* embed_dim * mlp_ratio (4) */
    int out_chans;    /* prompt_embed_dim (256): neck output channels */
    /* prompt encoder / mask decoder (SAM v1) */
    int decoder_mlp_dim;     /* 2048 */
    int decoder_num_heads;   /* 8 */
    int decoder_depth;       /* 2 */
    int iou_head_hidden_dim; /* 256 */
    int mask_in_chans;       /* 16 */
} sb_vit_config;

/* The ViT-B constants of segment_anything's build_sam_vit_b. */
void sb_vit_config_vit_b(sb_vit_config *cfg);
/* Reads a config: a JSON file with a `hyper_parameters` object (the fixture
 * *_config.json) or a YAML file (configs/models/NAME.yaml) with a
 * `hyper_parameters` mapping; keys as in segment_anything's _build_sam
 * (encoder_embed_dim, encoder_depth, encoder_num_heads,
 * encoder_global_attn_indexes, image_size, vit_patch_size, window_size,
 * prompt_embed_dim, decoder_mlp_dim, decoder_num_heads, decoder_depth,
 * iou_head_hidden_dim, mask_in_chans; optional mlp_ratio). Missing keys keep
 * the ViT-B values; unknown keys are ignored (every value that shapes the
 * computation is checked against the weights). */
int sb_vit_config_load(sb_vit_config *cfg, const char *path, sb_error *err);
/* Infers the hyper-parameters from a SAM v1 state dict (image_encoder.*,
 * prompt_encoder.*, mask_decoder.*); decoder_num_heads cannot be seen in the
 * weights and stays 8. */
int sb_vit_config_infer(sb_vit_config *cfg, const sb_weights *w, sb_error *err);
/* Checks a config against the weights' shapes (every encoder tensor and the
 * decoder dimensions); the error names the key and both shapes. */
int sb_vit_config_check(const sb_vit_config *cfg, const sb_weights *w, sb_error *err);
/* One line "embed 768 depth 12 heads 12 window 14 global [2,5,8,11] ...". */
void sb_vit_config_format(const sb_vit_config *cfg, char *buf, size_t cap);

/* Debug-dump hook: called with every intermediate tensor the model exposes
 * (names as in the golden HDF5 files, e.g. "encoder/block_03"). */
typedef void (*sb_dump_fn)(void *arg, const char *name, const float *data, int ndim,
                           const int64_t *shape);

/* The encoder itself and the flow are reached through the generic model API
 * (sb_model_create with SB_FLOW_SAM / SB_FLOW_MEDSAM); their internals are
 * in core/sam_vit_internal.h. */

/* END SECTION: sam_vit */

/* ===================================================================== */
/* Models: configuration, SAM2 family, the generic model API             */
/* (core/model_config.c, core/sam2_model.c, core/hiera.c,                */
/*  core/fpn_neck.c, core/prompt_encoder.c, core/mask_decoder.c)         */
/* ===================================================================== */
/* SECTION: models */
/*
 * One opaque sb_model per loaded network, driven by a flow (the step
 * function of the reference benchmark, MODEL.md 1.3-1.6). Images are NCHW
 * float32 [B,3,S,S] in [0,1] (no normalisation, MODEL.md 1.1) with S the
 * configured image_size; boxes are [B,4] x0,y0,x1,y1 in pixels of that
 * S x S frame.
 */
enum sb_flow {
    SB_FLOW_SAMED2 = 0, /* validation_step: Hiera-S + adapters + memory bank */
    SB_FLOW_SAM2 = 1,   /* validation_step_sam2: + no_mem_embed, bilinear    */
    SB_FLOW_MEDSAM2 = 2,/* validation_step_medsam2: nearest final upsample   */
    SB_FLOW_SAM = 3,    /* validation_step_sam (SAM ViT-B)                   */
    SB_FLOW_MEDSAM = 4, /* same network, MedSAM weights                      */
    SB_FLOW_COUNT = 5
};
/* "samed2", "sam2", "medsam2", "sam", "medsam"; NULL if out of range. */
const char *sb_flow_name(int flow);
/* Returns the flow or -1 for an unknown name. */
int sb_flow_parse(const char *name);

/* Trunk kinds selected by the config's image_encoder.trunk._target_. */
enum sb_trunk_kind {
    SB_TRUNK_HIERA_SAM2 = 0, /* ...backbones.hieradet_sam2.Hiera (sam2, medsam2)      */
    SB_TRUNK_HIERA_ADAPTER = 1 /* ...backbones.hieradet.Hiera (SAMed-2, adapters)     */
};

#define SB_CFG_MAX_STAGES 8
#define SB_CFG_MAX_BLOCKS 64
#define SB_CFG_MAX_LEVELS 8

/* The SAM2-family hyper-parameters (MODEL.md 2.1). Values the YAML leaves
 * to the constructors take the constructors' defaults; the decoder's are
 * fixed by SAM2Base._build_sam_heads. */
typedef struct sb_sam2_config {
    int trunk_kind; /* enum sb_trunk_kind */
    int image_size; /* 1024 */
    /* Hiera trunk */
    int embed_dim, num_heads;            /* 96, 1 */
    int n_stages;                        /* 4 */
    int stages[SB_CFG_MAX_STAGES];       /* S: 1,2,11,2; T: 1,2,7,2 */
    int window_spec[SB_CFG_MAX_STAGES];  /* 8,4,14,7 */
    int n_global;
    int global_att_blocks[SB_CFG_MAX_BLOCKS]; /* S: 7,10,13; T: 5,7,9 */
    int pos_bkg_h, pos_bkg_w;            /* window_pos_embed_bkg_spatial_size 7,7 */
    int q_pool, q_stride;                /* 3, 2 */
    double dim_mul, head_mul, mlp_ratio; /* 2, 2, 4 */
    int adapter_channels, adapter_d_size;/* 32, 2 (SB_TRUNK_HIERA_ADAPTER only) */
    /* FPN neck (+ ImageEncoder scalp) */
    int d_model;                                /* 256 */
    int n_levels;                               /* len(backbone_channel_list) = 4 */
    int backbone_channel_list[SB_CFG_MAX_LEVELS]; /* 768,384,192,96 */
    int n_top_down;
    int fpn_top_down_levels[SB_CFG_MAX_LEVELS]; /* 2,3 */
    int fpn_interp_nearest;                     /* fpn_interp_model: 1 nearest, 0 bilinear */
    int fuse_avg;                               /* fuse_type avg (1) or sum (0) */
    int scalp;                                  /* 1 */
    int pe_num_pos_feats;                       /* neck PositionEmbeddingSine: 256 */
    double pe_temperature;                      /* 10000 */
    /* SAM2Base */
    int backbone_stride;             /* 16 */
    int directly_add_no_mem_embed;   /* 1 */
    int use_high_res_features;       /* 1 */
    int iou_prediction_use_sigmoid;  /* 1 */
    int pred_obj_scores, pred_obj_scores_mlp; /* 1, 1 */
    int num_maskmem;                 /* 7 */
    double sigmoid_scale_for_mem_enc, sigmoid_bias_for_mem_enc; /* 20, -10 */
    /* prompt encoder / mask decoder (fixed by SAM2Base, MODEL.md 2.1) */
    int mask_in_chans;        /* 16 */
    int num_multimask_outputs;/* 3 */
    int decoder_depth, decoder_mlp_dim, decoder_num_heads; /* 2, 2048, 8 */
    int iou_head_depth, iou_head_hidden_dim;               /* 3, 256 */
    int dynamic_multimask;    /* 1 (build_sam2's extra args, eval mode) */
    double stability_delta, stability_thresh; /* 0.05, 0.98 */
    /* memory attention / encoder (read for SAMed-2; unused by sam2/medsam2) */
    int mem_attn_d_model, mem_attn_layers, mem_attn_ffn, mem_attn_heads; /* 256, 4, 2048, 1 */
    int mem_attn_kv_in_dim;                 /* 64 */
    double mem_attn_rope_theta;             /* 10000 */
    int mem_attn_feat_h, mem_attn_feat_w;   /* 32, 32 */
    int mem_enc_out_dim, mem_enc_in_dim;    /* 64, 256 */
    int mem_enc_pe_num_pos_feats;           /* 64 */
    int mem_ds_kernel, mem_ds_stride, mem_ds_padding, mem_ds_embed_dim, mem_ds_total_stride; /* 3,2,1,256,16 */
    int mem_fuser_layers, mem_fuser_dim, mem_fuser_kernel, mem_fuser_padding; /* 2,256,7,3 */
} sb_sam2_config;

/* The official full-size values of a release: flow SB_FLOW_SAMED2 ->
 * sam2_hiera_s.yaml, SB_FLOW_SAM2 -> sam2_hiera_s_original.yaml,
 * SB_FLOW_MEDSAM2 -> sam2_hiera_t_original.yaml. */
int sb_sam2_config_default(sb_sam2_config *cfg, int flow, sb_error *err);
/* Reads a hydra YAML (`model:` mapping) or a fixture JSON
 * (`full_model_cfg_after_overrides` mapping) with libyaml; `_target_`
 * names select the trunk; missing values take the constructors' defaults. */
int sb_sam2_config_load(sb_sam2_config *cfg, const char *path, sb_error *err);
/* Consistency of the numbers among themselves (stages vs windows etc.). */
int sb_sam2_config_validate(const sb_sam2_config *cfg, sb_error *err);

/* ---- The generic model API (every flow) -------------------------------- */
typedef struct sb_model sb_model;

typedef struct sb_model_options {
    int flow;                 /* enum sb_flow */
    const char *config_path;  /* NULL: the release defaults of the flow */
    const sb_weights *weights;/* borrowed, must outlive the model; NULL with random_weights */
    int random_weights;       /* 1: deterministic random tensors of the official shapes */
    uint64_t seed;            /* for random_weights */
} sb_model_options;

/* Reads the config, binds every tensor the flow uses (shapes checked
 * against the config; the error names key, expected and found shape) and
 * precomputes the constant tables (position embeddings). */
int sb_model_create(sb_model **out, const sb_model_options *opt, sb_ctx *ctx, sb_error *err);
void sb_model_free(sb_model *m);
int sb_model_flow(const sb_model *m);
/* S: the input images are [B,3,S,S]. */
int64_t sb_model_image_size(const sb_model *m);
/* Side of the low-resolution logits (4 x the embedding size: 256 at 1024). */
int64_t sb_model_lowres_size(const sb_model *m);
/* One line describing the network (trunk, dims, blocks). */
void sb_model_describe(const sb_model *m, char *buf, size_t cap);
/* The SAM2 config (NULL for the ViT flows). */
const sb_sam2_config *sb_model_sam2_config(const sb_model *m);

/* Per-module profile filled by sb_model_forward when passed (times summed
 * over calls, FLOPs as MODEL.md 5 counts them: 2 x GEMM/conv MACs,
 * attention 2*Lq*Lk*hd per head and product, padded windows). */
#define SB_PROFILE_MAX 64
typedef struct sb_profile {
    int n;
    char name[SB_PROFILE_MAX][32];
    double seconds[SB_PROFILE_MAX];
    double flops[SB_PROFILE_MAX];
    int64_t images; /* images processed */
} sb_profile;

typedef struct sb_prompts {
    const float *boxes;          /* [B,4] or NULL */
    const float *points;         /* [B,n_points,2] (x,y) pixels, or NULL */
    const int32_t *point_labels; /* [B,n_points]: 1 fg, 0 bg, -1 padding, 2/3 box corners */
    int64_t n_points;
} sb_prompts;

typedef struct sb_forward_options {
    int64_t out_h, out_w;  /* size of the final logits; 0 = image size S */
    float threshold;       /* binary mask = logit > threshold; the flows use 0.5 */
    sb_dump_fn dump;       /* intermediate tensors under the golden files' names */
    void *dump_arg;
    sb_profile *profile;   /* may be NULL */
} sb_forward_options;
/* Default options: out = S x S, threshold 0.5, no dump, no profile. */
void sb_forward_options_default(sb_forward_options *o);

/* Outputs of one batch; buffers owned by the struct (sb_model_output_free). */
typedef struct sb_model_output {
    int64_t B, low_h, low_w, out_h, out_w;
    float *low_res; /* [B,1,low_h,low_w] mask logits after selection */
    float *iou;     /* [B,1] */
    float *logits;  /* [B,1,out_h,out_w] final logits (bilinear or nearest per flow) */
    uint8_t *mask;  /* [B,1,out_h,out_w] 0/1: logits > threshold */
} sb_model_output;
void sb_model_output_free(sb_model_output *o);

/* Runs the flow on a batch. images [B,3,S,S]; prompts: boxes (the flows)
 * and/or points. Fills *out (allocating or reusing its buffers). The
 * activations live in an arena planned on the first call for a batch size
 * (that call may run twice if its estimate was short) and reused
 * afterwards; one forward at a time per model (use one model per thread). */
int sb_model_forward(sb_model *m, sb_ctx *ctx, const float *images, int64_t B,
                     const sb_prompts *prompts, const sb_forward_options *opt,
                     sb_model_output *out, sb_error *err);
/* Peak bytes of the activation arena so far (the memory plan). */
size_t sb_model_arena_peak(const sb_model *m);
/* Bytes of the weights the model holds or references. */
size_t sb_model_weight_bytes(const sb_model *m);

/* END SECTION: models */

/* ===================================================================== */
/* SAMed-2: the confidence-driven memory bank (core/memory_bank.c)       */
/* ===================================================================== */
/* SECTION: samed2 */
/*
 * The bank the samed2 flow selects memories from and updates (MODEL.md 4).
 * A read-only base (the loaded pkl, sb_bank, possibly placed in shared
 * memory by the caller and never written) plus an overlay that holds only
 * what this bank changed: the list order and the new entries. Two scopes:
 *  - SB_BANK_GLOBAL: one bank carried across every batch of the run (the
 *    published behaviour, MODEL.md 4.4; outputs depend on the order of all
 *    batches);
 *  - SB_BANK_VOLUME: sb_membank_begin_volume() returns it to the pristine
 *    base, so a volume's outputs depend only on its own slices; many
 *    volumes (ranks) share one base and each costs kilobytes plus its
 *    replacements.
 * Order codes: >= 0 is a base entry index, < 0 is -(1+slot) for an entry
 * that an update inserted.
 */
enum sb_bank_scope { SB_BANK_GLOBAL = 0, SB_BANK_VOLUME = 1 };

/* The base plus what every bank over it needs once: the norms of each
 * entry's backbone features and maskmem features. The sb_bank is borrowed. */
typedef struct sb_membank_base sb_membank_base;
int sb_membank_base_create(sb_membank_base **out, const sb_bank *bank, sb_ctx *ctx, sb_error *err);
void sb_membank_base_free(sb_membank_base *b);
const sb_bank *sb_membank_base_bank(const sb_membank_base *b);

typedef struct sb_membank sb_membank;
/* base is borrowed and must outlive the bank. */
int sb_membank_create(sb_membank **out, const sb_membank_base *base, int scope, sb_error *err);
void sb_membank_free(sb_membank *mb);
int sb_membank_scope(const sb_membank *mb);
/* Volume scope: back to the pristine base; global scope: nothing. */
void sb_membank_begin_volume(sb_membank *mb);
/* Back to the pristine base whatever the scope. */
void sb_membank_reset(sb_membank *mb);
int64_t sb_membank_entries(const sb_membank *mb);
/* The current order (sb_membank_entries codes, see above). */
void sb_membank_order(const sb_membank *mb, int32_t *codes);
/* Bytes the overlay holds (order + inserted entries). */
size_t sb_membank_overlay_bytes(const sb_membank *mb);
/* Entry at position pos of the current order as float32 (any output may be
 * NULL): maskmem [C*H*W], mem_pos [C*H*W] (NCHW), iou. */
void sb_membank_entry_f32(const sb_membank *mb, int64_t pos, float *maskmem, float *mem_pos,
                          float *iou);
/* Shapes: maskmem/pos are (C, H, W), backbone features feat_len long. */
void sb_membank_shape(const sb_membank *mb, int64_t *C, int64_t *H, int64_t *W, int64_t *feat_len);

/*
 * Selection (MODEL.md 4.2): cur [B, len] are the current level-2 features
 * flattened token-major ((y*W+x)*C + c), compared with the entries'
 * channel-major backbone features (the reference's flatten mismatch, kept
 * on purpose, MODEL.md 6.2): score[b,n] = max(0, cos) + sigmoid(iou_n).
 * idx [B, k] gets the positions (in the current order) of the k best,
 * best first (ties: lower position first); scores [B, N] may be NULL.
 * Scratch from `a` if given.
 */
int sb_membank_select(const sb_membank *mb, sb_ctx *ctx, const float *cur, int64_t B, int64_t len,
                      int64_t k, int32_t *idx, float *scores, sb_arena *a, sb_error *err);
/*
 * Update (MODEL.md 4.3), sequential over the batch: item b's maskmem
 * (rounded to bf16 first, as the reference stores it) is compared with
 * every entry's maskmem; if iou[b] > the most similar entry's iou, that
 * entry is removed and the new one appended. maskmem/mem_pos [B, C*H*W]
 * NCHW, iou [B], feat [B, feat_len] channel-major. replaced [B] (may be
 * NULL): the position item b replaced, or -1. order_after [N] (may be
 * NULL): for each position after the update, the position it had before,
 * or -(b+1) for the entry of item b (the fixtures' bank_update/order_after).
 * All allocation happens before the bank changes: an error leaves it as it was.
 */
int sb_membank_update(sb_membank *mb, const float *maskmem, const float *mem_pos,
                      const float *iou, const float *feat, int64_t B, int32_t *replaced,
                      int32_t *order_after, sb_error *err);

/* The samed2 flow selects from and updates this bank (borrowed: it must
 * outlive its use; the caller decides the scope and calls
 * sb_membank_begin_volume). Error for other flows. */
int sb_model_set_membank(sb_model *m, sb_membank *bank, sb_error *err);
/* The bank decisions of the last samed2 forward: indices [B, k] (positions
 * in the bank order the selection saw) and replaced [B] (position replaced
 * by item b, or -1). Pointers valid until the next forward. */
int sb_model_bank_decisions(const sb_model *m, int64_t *B, int64_t *k, const int32_t **indices,
                            const int32_t **replaced);

/* END SECTION: samed2 */

/* SECTION: perf */
/* Fused token-major linear + exact GELU: y = gelu(x W^T + b), the same
 * values as sb_linear then sb_gelu; where sb_linear works in row chunks the
 * GELU runs on each chunk while it is still in cache (core/ops_linear.c). */
void sb_linear_gelu(sb_ctx *ctx, const float *x, int64_t M, int64_t K, const float *W,
                    const float *b, int64_t N, float *y);
/* END SECTION: perf */

/* ===================================================================== */
/* Utilities                                                             */
/* ===================================================================== */
/* CRC-32 of the zip/gzip polynomial, continuing crc (start with 0): the
 * same value as zlib's crc32, folded with PCLMULQDQ where the CPU has it.
 * (core/crc32.c) */
uint32_t sb_crc32_update(uint32_t crc, const void *data, size_t len);
/* SHA-256 of a file, lowercase hex into out[65]. (core/sha256.c) */
int sb_sha256_file(const char *path, char out[65], sb_error *err);
void sb_sha256_buffer(const void *data, size_t len, char out[65]);
/* Measuring (core/measure.c): a monotonic clock in seconds, the CPU seconds
 * of the whole process (every thread; on a shared machine only the time it
 * actually ran), and the peak resident set of the process in MiB. */
double sb_clock_seconds(void);
double sb_cpu_seconds(void);
double sb_peak_rss_mib(void);

#ifdef __cplusplus
}
#endif
#endif /* SAMBENCH_H */
