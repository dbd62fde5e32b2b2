/*
 * SAM ViT-B / MedSAM ViT-B: the `sam` flow of MODEL.md 1.6. The
 * hyper-parameters (config files, inference from the weights, checks) are
 * core/sam_vit_config.c.
 */

#include "sam_vit_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* the sam / medsam flow (MODEL.md 1.6, MedSAM.forward)                */
/* ------------------------------------------------------------------ */
/*
 * Plugged into the generic sb_model of core/model.c (impl, forward,
 * arena_bound hooks; the model's binder m->wb serves the checkpoint or the
 * random weights). The prompt encoder and mask decoder are the shared ones,
 * the decoder built as its SAM v1 variant.
 */
typedef struct sb_sam_vit {
    sb_vit_config cfg;
    sb_vit_encoder *enc;
    sb_prompt_encoder pe;
    int pe_ready;
    sb_mask_decoder dec;
} sb_sam_vit;

static void sam_vit_free(void *p)
{
    sb_sam_vit *n = p;
    if (!n)
        return;
    sb_vit_encoder_free(n->enc);
    if (n->pe_ready)
        sb_prompt_encoder_release(&n->pe);
    free(n);
}

const sb_vit_config *sb_model_vit_config(const sb_model *m)
{
    if (!m || (m->flow != SB_FLOW_SAM && m->flow != SB_FLOW_MEDSAM) || !m->impl)
        return NULL;
    return &((const sb_sam_vit *)m->impl)->cfg;
}

/* Upper bound of the activation arena for a batch of B (virtual: only the
 * touched pages count; sb_model_forward re-creates the arena at the
 * measured peak after the first call): the embeddings twice (NCHW and
 * token-major), the encoder's own plan, the decoder's buffers (token-major
 * keys and their sums with the PE, the upscaled maps, all masks), the
 * dumps' copies and the final-size logits. */
static size_t sam_vit_arena_bound(const sb_model *m, int64_t B)
{
    const sb_sam_vit *n = m->impl;
    const int64_t g = n->cfg.image_size / n->cfg.patch_size, HW = g * g, C = n->cfg.out_chans;
    const int64_t L4 = 16 * HW, S = n->cfg.image_size;
    const size_t f = sizeof(float);
    size_t enc = sb_vit_encoder_scratch_bytes(n->enc, B, 64);
    size_t dec = (size_t)B * (size_t)(8 * HW * C + 3 * L4 * (C / 8) + 8 * L4 + 4096) * f +
                 sb_conv_transpose2x2_scratch_bytes(C / 4, g, g) +
                 sb_conv_transpose2x2_scratch_bytes(C / 8, 2 * g, 2 * g);
    size_t emb = 3 * (size_t)(B * C * HW) * f;
    size_t fin = 2 * (size_t)(B * S * S) * f;
    return emb + (enc > dec ? enc : dec) + fin + ((size_t)16 << 20);
}

static int sam_vit_forward(sb_model *m, sb_ctx *ctx, const float *images, int64_t B,
                           const sb_prompts *prompts, const sb_forward_options *opt,
                           sb_model_output *out, sb_arena *a, sb_modprof *mp, sb_error *err);

int sb_sam_vit_model_init(sb_model *m, const sb_model_options *opt, sb_error *err)
{
    if (opt->flow != SB_FLOW_SAM && opt->flow != SB_FLOW_MEDSAM)
        return sb_fail(err, SB_EINVAL, "sam vit: flow '%s' is not sam/medsam", sb_flow_name(opt->flow));
    sb_sam_vit *n = calloc(1, sizeof *n);
    if (!n)
        return sb_fail(err, SB_ENOMEM, "sam vit: out of memory");
    m->impl = n;
    m->impl_free = sam_vit_free;
    m->forward = sam_vit_forward;
    m->arena_bound = sam_vit_arena_bound;
    int rc;
    const sb_weights *w = m->wb.w; /* NULL with random weights */
    if (opt->config_path) {
        if ((rc = sb_vit_config_load(&n->cfg, opt->config_path, err)) != SB_OK)
            return rc;
        if (w && (rc = sb_vit_config_check(&n->cfg, w, err)) != SB_OK)
            return sb_error_prefix(err, "%s against %s", opt->config_path, sb_weights_path(w));
    } else if (w) {
        if ((rc = sb_vit_config_infer(&n->cfg, w, err)) != SB_OK)
            return sb_error_prefix(err, "%s", sb_weights_path(w));
    } else {
        sb_vit_config_vit_b(&n->cfg); /* random weights: the released ViT-B */
    }
    const sb_vit_config *c = &n->cfg;
    if ((rc = sb_vit_encoder_create(&n->enc, &m->wb, "image_encoder.", c, err)) != SB_OK)
        return rc;
    const int64_t g = c->image_size / c->patch_size;
    if ((rc = sb_prompt_encoder_init(&n->pe, c->out_chans, g, g, c->image_size, c->image_size,
                                     c->mask_in_chans, &m->wb, "prompt_encoder.", err)) != SB_OK)
        return rc;
    n->pe_ready = 1;
    /* The SAM v1 variant of the shared decoder (MODEL.md 2.10): no
     * obj-score token (iou token 0, mask tokens 1..4), no high-res features
     * in the upscaling, no sigmoid on the IoU head, no dynamic multimask:
     * multimask_output=False always takes mask token 0. */
    sb_mask_decoder_params dp;
    memset(&dp, 0, sizeof dp);
    dp.transformer_dim = c->out_chans;
    dp.depth = c->decoder_depth;
    dp.mlp_dim = c->decoder_mlp_dim;
    dp.heads = c->decoder_num_heads;
    dp.attention_downsample = 2;
    dp.num_multimask_outputs = 3;
    dp.iou_head_depth = 3;
    dp.iou_head_hidden = c->iou_head_hidden_dim;
    if ((rc = sb_mask_decoder_init(&n->dec, &dp, &m->wb, "mask_decoder.", err)) != SB_OK)
        return rc;
    m->image_size = c->image_size;
    m->lowres = 4 * g;
    char cs[400];
    sb_vit_config_format(c, cs, sizeof cs);
    snprintf(m->desc, sizeof m->desc, "%s: SAM v1 ViT %s", sb_flow_name(opt->flow), cs);
    return SB_OK;
}

/* The caller's output buffers, reused when the sizes did not change. */
static int sam_vit_forward(sb_model *m, sb_ctx *ctx, const float *images, int64_t B,
                           const sb_prompts *prompts, const sb_forward_options *opt,
                           sb_model_output *out, sb_arena *a, sb_modprof *mp, sb_error *err)
{
    const sb_sam_vit *n = m->impl;
    const sb_vit_config *c = &n->cfg;
    const int64_t g = c->image_size / c->patch_size, HW = g * g, C = c->out_chans, L = 4 * g;
    const int64_t OH = opt->out_h ? opt->out_h : c->image_size;
    const int64_t OW = opt->out_w ? opt->out_w : c->image_size;
    sb_dump_fn dump = opt->dump;
    void *da = opt->dump_arg;
    if (!prompts || !prompts->boxes)
        return sb_fail(err, SB_EINVAL, "flow %s: needs one box per image (MedSAM.forward)",
                       sb_flow_name(m->flow));
    size_t mark = sb_arena_mark(a);
    int rc = SB_OK;
#define ALLOC(ptr, nf, what)                                                                   \
    do {                                                                                       \
        if (!((ptr) = sb_arena_alloc_checked(a, (size_t)(nf) * sizeof(float), (what), err))) { \
            rc = err ? err->code : SB_ENOMEM;                                                  \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)
    float *emb, *tok, *sparse, *all_masks, *all_iou;
    ALLOC(emb, B * C * HW, "image embeddings");

    /* 1. image encoder on the [0,1] image: MedSAM.forward calls
     *    image_encoder directly, no pixel normalisation (MODEL.md 1.1.4, 1.6) */
    if ((rc = sb_vit_encoder_forward(n->enc, ctx, images, B, emb, a, mp, dump, da, err)) != SB_OK)
        goto done;

    /* 2. prompt encoder: boxes [B,1,4] -> sparse [B,2,C]; points=None */
    sb_modprof_begin(mp, "prompt_encoder");
    sb_prompts pr;
    memset(&pr, 0, sizeof pr);
    pr.boxes = prompts->boxes;
    const int64_t ns = sb_prompt_encoder_n_sparse(&pr);
    ALLOC(sparse, B * ns * C, "sparse prompts");
    if ((rc = sb_prompt_encoder_forward(&n->pe, &pr, B, sparse, err)) != SB_OK)
        goto done;
    if (dump) {
        sb_dump3(dump, da, "prompt_encoder/boxes", prompts->boxes, B, 1, 4);
        sb_dump3(dump, da, "prompt_encoder/sparse", sparse, B, ns, C);
        size_t mk = sb_arena_mark(a);
        float *dense;
        ALLOC(dense, B * C * HW, "dense prompt (dump)");
        for (int64_t i = 0; i < B * C; i++)
            for (int64_t p = 0; p < HW; p++)
                dense[i * HW + p] = n->pe.no_mask[i % C];
        sb_dump4(dump, da, "prompt_encoder/dense", dense, B, C, g, g);
        sb_dump4(dump, da, "prompt_encoder/dense_pe", n->pe.dense_pe_chw, 1, C, g, g);
        sb_arena_reset(a, mk);
    }

    /* 3. SAM v1 mask decoder, multimask_output=False: mask token 0 */
    ALLOC(tok, B * C * HW, "image tokens");
    sb_nchw_to_nhwc(ctx, emb, B, C, g, g, tok);
    ALLOC(all_masks, B * n->dec.n_mask_tokens * L * L, "all masks");
    ALLOC(all_iou, B * n->dec.n_mask_tokens, "all iou");
    if ((rc = sb_model_output_reserve(out, B, L, L, OH, OW, err)) != SB_OK)
        goto done;
    sb_mask_decoder_io io;
    memset(&io, 0, sizeof io);
    io.image_tok = tok;
    io.dense = n->pe.no_mask;
    io.image_pe = n->pe.dense_pe_tok;
    io.sparse = sparse;
    io.B = B;
    io.n_sparse = ns;
    io.h = io.w = g;
    io.all_masks = all_masks;
    io.all_iou = all_iou;
    io.low_res = out->low_res;
    io.iou = out->iou;
    if ((rc = sb_mask_decoder_forward(&n->dec, ctx, &io, a, mp, dump, da, err)) != SB_OK)
        goto done;

    /* 4. bilinear (align_corners=False) to the input size; logits > 0.5 */
    rc = sb_model_finish_logits(ctx, out, 0, opt->threshold, "logits/high_res", a, mp, dump, da, err);
done:
#undef ALLOC
    sb_modprof_end(mp);
    sb_arena_reset(a, mark);
    return rc;
}
