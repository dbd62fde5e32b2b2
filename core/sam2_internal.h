/*
 * Private declarations shared by the model files (core/hiera.c,
 * core/fpn_neck.c, core/prompt_encoder.c, core/mask_decoder.c,
 * core/sam2_model.c, core/model_config.c, core/model_util.c, core/model.c) and by the model work that
 * builds on them (SAMed-2's adapter and memory, SAM ViT's flows). Not part
 * of the public API (core/sambench.h).
 */
#ifndef SB_SAM2_INTERNAL_H
#define SB_SAM2_INTERNAL_H

#include "sambench.h"

#include <stdint.h>

/* ---- Weight binding (core/model_util.c) -----------------------------------
 * Every tensor a module uses is fetched once at create time through a
 * binder: from a loaded checkpoint (shape checked), or, with random
 * weights, generated deterministically from the key (so benchmarks need no
 * file). Generated tensors are owned by the binder. */
typedef struct sb_wbind {
    const sb_weights *w; /* NULL with random weights */
    uint64_t seed;
    float **owned;
    int n_owned, cap_owned;
    size_t bytes;    /* bytes of every tensor bound (the model's weights) */
    int64_t tensors; /* number bound */
} sb_wbind;

void sb_wbind_init(sb_wbind *b, const sb_weights *w, uint64_t seed);
void sb_wbind_release(sb_wbind *b);
/* The tensor `key` with exactly this shape (NULL + error if missing or of
 * another shape). Random init: norm weights ~1, biases and embeddings small,
 * matrices uniform +-1/sqrt(fan_in). */
const float *sb_wbind_get(sb_wbind *b, const char *key, int ndim, const int64_t *shape,
                          sb_error *err);
/* printf-style key. */
const float *sb_wbind_getf(sb_wbind *b, sb_error *err, int ndim, const int64_t *shape,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* 1 if the key is there (always 0 with random weights). */
int sb_wbind_has(const sb_wbind *b, const char *key);

/* ---- Per-module timing and FLOP counting --------------------------------- */
typedef struct sb_modprof {
    sb_profile *p; /* NULL: nothing recorded */
    int cur;       /* index of the module being timed, -1 none */
    double t0;
} sb_modprof;
/* Starts timing module `name` (stops the previous one). */
void sb_modprof_begin(sb_modprof *mp, const char *name);
void sb_modprof_end(sb_modprof *mp);
/* Adds FLOPs to the current module. */
static inline void sb_modprof_flops(sb_modprof *mp, double f)
{
    if (mp && mp->p && mp->cur >= 0)
        mp->p->flops[mp->cur] += f;
}

/* Dump helper: calls dump(arg, name, data, ndim, shape...) if dump is set. */
void sb_dump4(sb_dump_fn dump, void *arg, const char *name, const float *data, int64_t d0,
              int64_t d1, int64_t d2, int64_t d3);
void sb_dump2(sb_dump_fn dump, void *arg, const char *name, const float *data, int64_t d0,
              int64_t d1);
void sb_dump3(sb_dump_fn dump, void *arg, const char *name, const float *data, int64_t d0,
              int64_t d1, int64_t d2);

/* ---- Hiera trunk (core/hiera.c, MODEL.md 2.2) ----------------------------- */
/*
 * Adapter hook (SAMed-2, MODEL.md 2.2.5): called inside a block with the
 * attention output after the output projection, still in the window-
 * partitioned layout, before unpartition and the residual: a[n, h, w, C]
 * are the n consecutive windows (or whole images for a global block)
 * starting at global window index first (over the whole batch, index
 * b*nWin + wy*nWx + wx). The hook may modify a in place. The trunk always
 * calls it with `first` and `n` even when an adapter is set, so temporal
 * pairs (2j, 2j+1) never straddle two calls.
 */
typedef int (*sb_hiera_adapter_fn)(void *arg, int block, float *a, int64_t first, int64_t n,
                                   int64_t h, int64_t w, int64_t C, sb_ctx *ctx, sb_arena *scratch,
                                   sb_error *err);

typedef struct sb_hiera_block {
    int dim, dim_out, heads, window, q_pool; /* window 0 = global; q_pool: 2x2 pooling of q */
    int mlp_hidden;
    const float *norm1_w, *norm1_b, *qkv_w, *qkv_b, *attn_proj_w, *attn_proj_b;
    const float *norm2_w, *norm2_b, *mlp0_w, *mlp0_b, *mlp1_w, *mlp1_b;
    const float *proj_w, *proj_b; /* dim != dim_out only */
} sb_hiera_block;

typedef struct sb_hiera {
    int n_blocks, n_stages;
    int stage_ends[SB_CFG_MAX_STAGES];
    sb_hiera_block blk[SB_CFG_MAX_BLOCKS];
    int embed_dim;
    const float *patch_w, *patch_b;      /* [C0,3,7,7], [C0] */
    const float *pos_bkg, *pos_win;      /* [1,C0,bh,bw], [1,C0,w0,w0] */
    int pos_bkg_h, pos_bkg_w, pos_win_size;
    float *pos_embed;                    /* [H0,W0,C0] NHWC, precomputed for image_size */
    int64_t image_size, H0, W0;
    int64_t chunk_tokens;                /* tokens per window chunk; 0 = default (8192) */
    sb_hiera_adapter_fn adapter;         /* NULL: plain SAM2 block */
    void *adapter_arg;
} sb_hiera;

int sb_hiera_init(sb_hiera *h, const sb_sam2_config *cfg, sb_wbind *wb, const char *prefix,
                  sb_error *err);
void sb_hiera_release(sb_hiera *h);
/* Channels and side of stage s's output for the configured image size. */
int sb_hiera_stage_dim(const sb_hiera *h, int s);
int64_t sb_hiera_stage_side(const sb_hiera *h, int s);
/* img [B,3,S,S] -> stage outputs stage[s] NHWC [B,Hs,Ws,Cs] (caller passes
 * buffers of the right sizes). Work memory comes from `a` (LIFO, released).
 * dump: encoder/trunk/patch_embed, pos_embed, block_XX, out_i. */
int sb_hiera_forward(const sb_hiera *h, sb_ctx *ctx, const float *img, int64_t B, float **stage,
                     sb_arena *a, sb_modprof *mp, sb_dump_fn dump, void *dump_arg, sb_error *err);

/* ---- FPN neck (core/fpn_neck.c, MODEL.md 2.2.6-2.2.7) --------------------- */
typedef struct sb_fpn_neck {
    int n_levels, d_model, scalp;
    int in_ch[SB_CFG_MAX_LEVELS];   /* per level, highest resolution first */
    const float *conv_w[SB_CFG_MAX_LEVELS], *conv_b[SB_CFG_MAX_LEVELS]; /* per level */
    int top_down[SB_CFG_MAX_LEVELS];
    int nearest, fuse_avg;
    int pe_feats;
    float *pe[SB_CFG_MAX_LEVELS];   /* sine PE [pe_feats, Hl, Wl] of each kept level */
    int64_t side[SB_CFG_MAX_LEVELS];
} sb_fpn_neck;

int sb_fpn_neck_init(sb_fpn_neck *n, const sb_sam2_config *cfg, const sb_hiera *trunk,
                     sb_wbind *wb, const char *prefix, sb_error *err);
void sb_fpn_neck_release(sb_fpn_neck *n);
/* Number of levels kept after the scalp. */
int sb_fpn_neck_levels_out(const sb_fpn_neck *n);
/* stage NHWC -> out[l] token-major [B, Hl*Wl, d_model] for the kept levels
 * (out[0] may be NULL: level 0 is then not computed, the caller fuses it).
 * dump: encoder/backbone_fpn_i, encoder/vision_pos_enc_i (NCHW). */
int sb_fpn_neck_forward(const sb_fpn_neck *n, sb_ctx *ctx, float *const *stage, int64_t B,
                        float **out, sb_arena *a, sb_modprof *mp, sb_dump_fn dump,
                        void *dump_arg, sb_error *err);

/* ---- Prompt encoder (core/prompt_encoder.c, MODEL.md 2.3 / 2.9) ---------- */
typedef struct sb_prompt_encoder {
    int embed_dim;
    int64_t emb_h, emb_w;       /* image embedding size */
    int64_t input_h, input_w;   /* input image size (prompt coordinates frame) */
    const float *gauss;         /* [2, embed_dim/2] */
    const float *point_embed[4];/* [1,embed_dim] each */
    const float *not_a_point;   /* [1,embed_dim] */
    const float *no_mask;       /* [1,embed_dim] */
    float *dense_pe_tok;        /* [emb_h*emb_w, embed_dim] token-major */
    float *dense_pe_chw;        /* [embed_dim, emb_h, emb_w] (get_dense_pe) */
} sb_prompt_encoder;

/* prefix: "sam_prompt_encoder." (SAM2) or "prompt_encoder." (SAM v1). */
int sb_prompt_encoder_init(sb_prompt_encoder *pe, int embed_dim, int64_t emb_h, int64_t emb_w,
                           int64_t input_h, int64_t input_w, int mask_in_chans, sb_wbind *wb,
                           const char *prefix, sb_error *err);
void sb_prompt_encoder_release(sb_prompt_encoder *pe);
/* Number of sparse tokens for these prompts (points (+1 pad if no box) + 2 per box). */
int64_t sb_prompt_encoder_n_sparse(const sb_prompts *p);
/* sparse [B, n_sparse, embed_dim]. */
int sb_prompt_encoder_forward(const sb_prompt_encoder *pe, const sb_prompts *p, int64_t B,
                              float *sparse, sb_error *err);

/* ---- Mask decoder with the two-way transformer (core/mask_decoder.c) ----- */
typedef struct sb_attn_w {
    const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
    int internal; /* internal dim */
    int kv_in;
} sb_attn_w;

typedef struct sb_twoway_layer {
    sb_attn_w self_attn, t2i, i2t;
    const float *n1_w, *n1_b, *n2_w, *n2_b, *n3_w, *n3_b, *n4_w, *n4_b;
    const float *mlp0_w, *mlp0_b, *mlp1_w, *mlp1_b;
} sb_twoway_layer;

#define SB_DEC_MAX_DEPTH 8
#define SB_DEC_MAX_MASKS 8

typedef struct sb_mask_decoder_params {
    int transformer_dim;          /* 256 */
    int depth, mlp_dim, heads;    /* 2, 2048, 8 */
    int attention_downsample;     /* 2 */
    int num_multimask_outputs;    /* 3 */
    int iou_head_depth, iou_head_hidden; /* 3, 256 */
    int pred_obj_scores, pred_obj_scores_mlp; /* SAM2: 1,1; SAM v1: 0 */
    int use_high_res_features;    /* SAM2: 1 */
    int iou_sigmoid;              /* SAM2: 1; SAM v1: 0 */
    int dynamic_multimask;        /* SAM2 eval: 1; SAM v1: 0 */
    float stability_delta, stability_thresh;
} sb_mask_decoder_params;

typedef struct sb_mask_decoder {
    sb_mask_decoder_params p;
    int n_mask_tokens, n_out_tokens; /* 4; 6 (SAM2) or 5 (SAM v1) */
    const float *iou_token, *mask_tokens, *obj_score_token;
    sb_twoway_layer layer[SB_DEC_MAX_DEPTH];
    sb_attn_w final_attn;
    const float *nf_w, *nf_b;
    const float *up0_w, *up0_b, *up_ln_w, *up_ln_b, *up3_w, *up3_b;
    const float *conv_s0_w, *conv_s0_b, *conv_s1_w, *conv_s1_b; /* high-res only */
    const float *hyper_w[SB_DEC_MAX_MASKS][3], *hyper_b[SB_DEC_MAX_MASKS][3];
    const float *iou_w[8], *iou_b[8];
    const float *obj_w[3], *obj_b[3];
    int obj_layers;
} sb_mask_decoder;

/* prefix: "sam_mask_decoder." or "mask_decoder.". */
int sb_mask_decoder_init(sb_mask_decoder *d, const sb_mask_decoder_params *p, sb_wbind *wb,
                         const char *prefix, sb_error *err);

typedef struct sb_mask_decoder_io {
    /* inputs */
    const float *image_tok;  /* [B, h*w, C] image embedding, token-major (dense prompt not added yet) */
    const float *dense;      /* [C] no_mask_embed broadcast (or NULL) */
    const float *image_pe;   /* [h*w, C] token-major dense PE */
    const float *sparse;     /* [B, n_sparse, C] */
    int64_t B, n_sparse, h, w;
    const float *feat_s0;    /* [B, C/8, 4h, 4w] NCHW (high-res only) */
    const float *feat_s1;    /* [B, C/4, 2h, 2w] */
    /* outputs (caller-allocated) */
    float *all_masks;        /* [B, n_mask_tokens, 4h, 4w] */
    float *all_iou;          /* [B, n_mask_tokens] */
    float *low_res;          /* [B, 1, 4h, 4w] after selection */
    float *iou;              /* [B, 1] */
    float *obj_score;        /* [B, 1] or NULL */
} sb_mask_decoder_io;

int sb_mask_decoder_forward(const sb_mask_decoder *d, sb_ctx *ctx, sb_mask_decoder_io *io,
                            sb_arena *a, sb_modprof *mp, sb_dump_fn dump, void *dump_arg,
                            sb_error *err);
/* 1x1 conv_s0 / conv_s1 on a token-major level: x [B, HW, Cin] -> y [B, Cout, HW] NCHW. */
void sb_conv1x1_tok_to_nchw(sb_ctx *ctx, const float *x, int64_t B, int64_t HW, int64_t Cin,
                            const float *w, const float *b, int64_t Cout, float *y);

/* ---- The SAM2-family network and the model object (core/sam2_model.c) ---- */
/*
 * Hooks for SAMed-2 (left NULL by sam2/medsam2):
 *  - condition: replaces the sam2 flow's "+ no_mem_embed" step (MODEL.md 1.5
 *    step 2-3): feat [B, h*w, C] token-major level-2 features, modified in
 *    place (memory attention); pos [C, h, w] its sine PE.
 *  - after_decoder: called with the final-size high-res logits (bilinear,
 *    [B,1,S,S]), ious [B,1], and the conditioned features (memory update).
 */
typedef int (*sb_sam2_condition_fn)(void *arg, sb_ctx *ctx, float *feat, const float *pos,
                                    int64_t B, int64_t h, int64_t w, int64_t C, sb_arena *a,
                                    sb_modprof *mp, sb_dump_fn dump, void *dump_arg, sb_error *err);
typedef int (*sb_sam2_after_decoder_fn)(void *arg, sb_ctx *ctx, const float *feat,
                                        const float *high_res_logits, const float *iou, int64_t B,
                                        int64_t h, int64_t w, int64_t C, int64_t S, sb_arena *a,
                                        sb_modprof *mp, sb_dump_fn dump, void *dump_arg,
                                        sb_error *err);

typedef struct sb_sam2_net {
    sb_sam2_config cfg;
    sb_hiera trunk;
    sb_fpn_neck neck;
    sb_prompt_encoder pe;
    sb_mask_decoder dec;
    const float *no_mem_embed; /* [1,1,C] (sam2 flow) */
    int64_t emb;               /* image embedding side = image_size / backbone_stride */
    sb_sam2_condition_fn condition;
    sb_sam2_after_decoder_fn after_decoder;
    void *hook_arg;
} sb_sam2_net;

typedef int (*sb_model_forward_fn)(sb_model *m, sb_ctx *ctx, const float *images, int64_t B,
                                   const sb_prompts *prompts, const sb_forward_options *opt,
                                   sb_model_output *out, sb_arena *arena, sb_modprof *mp,
                                   sb_error *err);

struct sb_model {
    int flow;
    int64_t image_size, lowres;
    sb_wbind wb;
    sb_arena *arena;
    int64_t arena_batch; /* batch size the arena was planned for */
    size_t arena_peak;
    void *impl;                     /* flow-specific network */
    sb_model_forward_fn forward;    /* runs the flow with activations in `arena` */
    void (*impl_free)(void *impl);
    /* plan estimate of the arena bytes for a batch (an upper bound, virtual) */
    size_t (*arena_bound)(const sb_model *m, int64_t B);
    char desc[256];
};

/* The SAM2-family implementation of sb_model_create (core/sam2_model.c). */
int sb_sam2_model_init(sb_model *m, const sb_model_options *opt, sb_error *err);

/* ---- Shared small helpers (core/model_util.c) ----------------------------- */
/* (Re)allocates out's buffers for B images, low-res lh x lw and final oh x ow
 * logits; keeps them when the sizes are unchanged. */
int sb_model_output_reserve(sb_model_output *o, int64_t B, int64_t lh, int64_t lw, int64_t oh, int64_t ow,
                            sb_error *err);
/* out->logits = bilinear (or nearest) resize of out->low_res to out_h x
 * out_w, out->mask = logits > threshold; dumps logits_name and
 * output/binary_mask. */
int sb_model_finish_logits(sb_ctx *ctx, sb_model_output *out, int nearest, float threshold,
                           const char *logits_name, sb_arena *a, sb_modprof *mp, sb_dump_fn dump, void *da,
                           sb_error *err);
/* Token-major [B, HW, C] -> NCHW [B, C, HW]. */
void sb_tok_to_nchw(const float *x, int64_t B, int64_t HW, int64_t C, float *y);
/* Adds FLOPs of a linear layer (2*M*K*N). */
static inline double sb_flops_linear(int64_t M, int64_t K, int64_t N)
{
    return 2.0 * (double)M * (double)K * (double)N;
}

#endif
