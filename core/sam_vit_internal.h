/*
 * Private declarations of the SAM v1 ViT models (core/vit_encoder.c,
 * core/sam_vit_config.c, core/sam_vit_model.c). Not part of the public API: the flows are reached
 * through sb_model_create / sb_model_forward (SB_FLOW_SAM, SB_FLOW_MEDSAM).
 */
#ifndef SB_SAM_VIT_INTERNAL_H
#define SB_SAM_VIT_INTERNAL_H

#include "sam2_internal.h"

/* ---- ImageEncoderViT (core/vit_encoder.c, MODEL.md 2.8) ------------------ */
typedef struct sb_vit_encoder sb_vit_encoder;

/* Binds the tensors under `prefix` ("image_encoder.") through the binder
 * (shapes checked, or random weights) and precomputes the relative-position
 * tables, interpolated when a stored table's length is not 2S-1 (as
 * get_rel_pos does). */
int sb_vit_encoder_create(sb_vit_encoder **out, sb_wbind *wb, const char *prefix,
                          const sb_vit_config *cfg, sb_error *err);
void sb_vit_encoder_free(sb_vit_encoder *e);
/* Side of the embedding grid (image_size / patch_size). */
int64_t sb_vit_encoder_grid(const sb_vit_encoder *e);
/* Arena bytes sb_vit_encoder_forward needs for a batch of B images. */
size_t sb_vit_encoder_scratch_bytes(const sb_vit_encoder *e, int64_t B, int threads);
/* FLOPs of one image as MODEL.md 5 counts them (GEMM/conv MACs x 2,
 * padded windows, rel-pos einsums included). */
double sb_vit_encoder_flops(const sb_vit_encoder *e);
/* img [B,3,S,S] (as given: the sam flow passes [0,1], no normalisation)
 * -> out [B,out_chans,g,g] NCHW. dump (may be NULL) receives
 * encoder/patch_embed (before pos_embed), encoder/block_XX (NHWC, the whole
 * batch) and encoder/image_embeddings. */
int sb_vit_encoder_forward(const sb_vit_encoder *e, sb_ctx *ctx, const float *img, int64_t B,
                           float *out, sb_arena *scratch, sb_modprof *mp, sb_dump_fn dump,
                           void *dump_arg, sb_error *err);

/* get_rel_pos's table resize: table [len, C] -> out [2S-1, C]; a copy when
 * len == 2S-1, else F.interpolate(mode='linear', align_corners=False) along
 * the table axis. */
void sb_vit_rel_pos_resize(const float *table, int64_t len, int64_t C, int64_t S, float *out);

/* Attention with decomposed relative position over `nwin` independent
 * S x S maps (windows or whole images) of qkv [nwin, S*S, 3*heads*hd]
 * (channel = s*heads*hd + head*hd + d) -> out [nwin, S*S, heads*hd] (before
 * the output projection). rel_h/rel_w: resized [2S-1, hd] tables; the
 * rel-pos terms use the unscaled q (MODEL.md 6.6); scale = hd^-0.5. Scratch
 * from the arena if given, else malloc. */
int sb_vit_rel_attention(sb_ctx *ctx, const float *qkv, int64_t nwin, int64_t S, int64_t heads,
                         int64_t hd, const float *rel_h, const float *rel_w, float *out,
                         sb_arena *scratch, sb_error *err);
size_t sb_vit_rel_attention_scratch_bytes(int64_t nwin, int64_t S, int64_t heads, int64_t hd,
                                          int threads);

/* ---- The sam / medsam flow (core/sam_vit_model.c, MODEL.md 1.6) ----------- */
/* Called by sb_model_create for SB_FLOW_SAM / SB_FLOW_MEDSAM (m->wb already
 * holds the checkpoint or the random-weights seed): reads the config
 * (opt->config_path: fixture JSON or configs/models YAML, checked against
 * the weights; NULL: inferred from the weights, or ViT-B with random
 * weights), binds the encoder, prompt encoder and SAM v1 decoder, and sets
 * the model's impl/forward/arena_bound hooks. */
int sb_sam_vit_model_init(sb_model *m, const sb_model_options *opt, sb_error *err);
/* The ViT config of a sam/medsam model; NULL for the other flows. */
const sb_vit_config *sb_model_vit_config(const sb_model *m);

#endif
