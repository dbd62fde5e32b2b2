/*
 * Private declarations of SAMed-2's own modules (MODEL.md 1.5, 2.2.5, 2.6,
 * 2.7, 4): the temporal adapter plugged into the Hiera block through the
 * trunk's adapter hook, memory attention, the memory encoder and the
 * confidence-driven memory bank. The flow is the SAM2 network of
 * core/sam2_model.c with its two SAMed-2 hooks set (core/samed2_model.c).
 */
#ifndef SB_SAMED2_INTERNAL_H
#define SB_SAMED2_INTERNAL_H

#include "sam2_internal.h"

/* ---- TemporalAdapter (core/temporal_adapter.c, MODEL.md 2.2.5) ---------- */
typedef struct sb_adapter_w {
    int dim, ch; /* block dim_out, adapter_channels */
    const float *norm_w, *norm_b, *down_w, *down_b, *conv_w, *conv_b, *up_w, *up_b;
} sb_adapter_w;

typedef struct sb_temporal_adapters {
    int n_blocks;
    sb_adapter_w blk[SB_CFG_MAX_BLOCKS];
    double flops; /* FLOPs since the last take (the trunk's hook has no profile) */
} sb_temporal_adapters;

int sb_temporal_adapters_init(sb_temporal_adapters *ta, const sb_sam2_config *cfg,
                              const sb_hiera *trunk, sb_wbind *wb, sb_error *err);
/* The sb_hiera_adapter_fn: arg is the sb_temporal_adapters. */
int sb_temporal_adapter_hook(void *arg, int block, float *a, int64_t first, int64_t n, int64_t h,
                             int64_t w, int64_t C, sb_ctx *ctx, sb_arena *scratch, sb_error *err);

/* ---- Memory attention (core/memory_attention.c, MODEL.md 2.6) ----------- */
typedef struct sb_mem_attn_layer {
    sb_attn_w self_attn, cross_attn;
    const float *n1_w, *n1_b, *n2_w, *n2_b, *n3_w, *n3_b;
    const float *l1_w, *l1_b, *l2_w, *l2_b;
} sb_mem_attn_layer;

#define SB_MEM_ATTN_MAX_LAYERS 16

typedef struct sb_memory_attention {
    int d_model, n_layers, ffn, heads, kv_in;
    float rope_theta;
    int feat_w, feat_h; /* configured RoPE grid (feat_sizes) */
    sb_mem_attn_layer layer[SB_MEM_ATTN_MAX_LAYERS];
    const float *norm_w, *norm_b;
} sb_memory_attention;

int sb_memory_attention_init(sb_memory_attention *ma, const sb_sam2_config *cfg, sb_wbind *wb,
                             sb_error *err);
/*
 * Batch-first memory attention of one image:
 *   x    [N, d_model]  in: curr (level-2 tokens), out: normed output
 *   pos  [N, d_model]  curr_pos (0.1 x pos is added at the input)
 *   mem  [M, kv_in], mem_pos [M, kv_in]  (M = N * k; RoPE key position m mod N)
 * Work memory from `a` (released before returning).
 */
int sb_memory_attention_forward(const sb_memory_attention *ma, sb_ctx *ctx, float *x,
                                const float *pos, int64_t N, const float *mem,
                                const float *mem_pos, int64_t M, sb_arena *a, sb_modprof *mp,
                                sb_error *err);

/* ---- Memory encoder (core/memory_encoder.c, MODEL.md 2.7) --------------- */
#define SB_MEM_DS_MAX_LAYERS 8
#define SB_FUSER_MAX_LAYERS 8

typedef struct sb_memory_encoder {
    int in_dim, out_dim, embed_dim; /* pix_feat channels, output channels, downsampler out */
    int ds_layers, ds_kernel, ds_stride, ds_pad;
    int ds_ch[SB_MEM_DS_MAX_LAYERS + 1]; /* 1, 4, 16, 64, 256 */
    const float *ds_conv_w[SB_MEM_DS_MAX_LAYERS], *ds_conv_b[SB_MEM_DS_MAX_LAYERS];
    const float *ds_ln_w[SB_MEM_DS_MAX_LAYERS], *ds_ln_b[SB_MEM_DS_MAX_LAYERS];
    const float *ds_out_w, *ds_out_b; /* final 1x1 conv */
    const float *pix_w, *pix_b;       /* pix_feat_proj 1x1 */
    int fuser_layers, fuser_kernel, fuser_pad;
    struct {
        const float *dw_w, *dw_b, *ln_w, *ln_b, *pw1_w, *pw1_b, *pw2_w, *pw2_b, *gamma;
    } cx[SB_FUSER_MAX_LAYERS];
    const float *out_w, *out_b; /* NULL when out_dim == in_dim (Identity) */
    int pe_feats;
    float scale, bias; /* sigmoid_scale_for_mem_enc, sigmoid_bias_for_mem_enc */
} sb_memory_encoder;

int sb_memory_encoder_init(sb_memory_encoder *me, const sb_sam2_config *cfg, sb_wbind *wb,
                           sb_error *err);
/*
 * pix [B, in_dim, h, w] NCHW; logits [B, 1, S, S] (the bilinear high-res
 * logits; mask_in = sigmoid(logits) * scale + bias is formed here, MODEL.md
 * 1.5 step 6); out [B, out_dim, h, w]; pos [out_dim, h, w] (may be NULL).
 * dump: memory_encoder/pix_feat, mask_in, vision_features, vision_pos_enc.
 */
int sb_memory_encoder_forward(const sb_memory_encoder *me, sb_ctx *ctx, const float *pix,
                              const float *logits, int64_t B, int64_t h, int64_t w, int64_t S,
                              float *out, float *pos, sb_arena *a, sb_modprof *mp,
                              sb_dump_fn dump, void *dump_arg, sb_error *err);

/* ---- The flow's hooks (core/samed2_model.c) ------------------------------ */
/* Binds the adapters, memory attention and memory encoder and sets the
 * trunk's adapter hook and the net's condition / after_decoder hooks. */
int sb_samed2_attach(sb_sam2_net *n, sb_wbind *wb, sb_error *err);
/* Frees what attach created (safe on a net without it). */
void sb_samed2_detach(sb_sam2_net *n);

#endif
