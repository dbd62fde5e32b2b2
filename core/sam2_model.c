/*
 * The SAM2-family flows `sam2` (validation_step_sam2, MODEL.md 1.3),
 * `medsam2` (validation_step_medsam2, 1.4) and the SAM2 part of `samed2`:
 * forward_image (trunk, neck, conv_s0/s1), the level-2 feature step
 * (no_mem_embed / nothing / SAMed-2's hook), the prompt encoder and the mask
 * decoder, then the final upsampling (bilinear / nearest) and the 0.5 logit
 * threshold. The generic sb_model_* API is core/model.c; what the model
 * files share is core/model_util.c.
 */
#include "sam2_internal.h"
#include "samed2_internal.h"  /* sb_samed2_attach/detach (samed2 flow, issue 5) */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- SAM2-family network ------------------------------------------------------- */
static void sam2_net_free(void *p)
{
    sb_sam2_net *n = p;
    if (!n)
        return;
    sb_samed2_detach(n);
    sb_hiera_release(&n->trunk);
    sb_fpn_neck_release(&n->neck);
    sb_prompt_encoder_release(&n->pe);
    free(n);
}

static size_t sam2_arena_bound(const sb_model *m, int64_t B)
{
    const sb_sam2_net *n = m->impl;
    /* Estimate of the first call's peak (measured 192 MiB for SAM2-S at
     * 1024, batch 1): trunk maps (x, y, norm, shortcut, stage outputs),
     * levels 1-2 and the high-res features, the window/MLP chunk buffers,
     * the decoder's and the final maps; +25 %. A call that needs more (dumps)
     * re-plans with twice the size. */
    double S = (double)m->image_size, H0 = (double)n->trunk.H0, C0 = n->cfg.embed_dim, d = n->cfg.d_model;
    double f = (double)B * H0 * H0 * (6.0 * C0 + 0.5 * d) + 8192.0 * 30.0 * C0 + (double)B * S * S * 4.0;
    return (size_t)(1.25 * f * sizeof(float)) + ((size_t)16 << 20);
}

static int sam2_forward(sb_model *m, sb_ctx *ctx, const float *images, int64_t B, const sb_prompts *prompts,
                        const sb_forward_options *opt, sb_model_output *out, sb_arena *a, sb_modprof *mp,
                        sb_error *err)
{
    sb_sam2_net *n = m->impl;
    const sb_sam2_config *cfg = &n->cfg;
    int64_t S = m->image_size, C = cfg->d_model, e = n->emb, HW = e * e;
    int64_t OH = opt->out_h > 0 ? opt->out_h : S, OW = opt->out_w > 0 ? opt->out_w : S;
    sb_dump_fn dump = opt->dump;
    void *da = opt->dump_arg;
    int kept = sb_fpn_neck_levels_out(&n->neck);
    if (m->flow == SB_FLOW_SAMED2 && (B & 1)) /* before any work or bank change */
        return sb_fail(err, SB_EINVAL,
                       "flow samed2: batch %lld is odd, but the temporal adapter pairs consecutive images (MODEL.md 2.2.5): batches must be even",
                       (long long)B);
    int rc = SB_OK;
    size_t mark = sb_arena_mark(a);
#define ALLOC(ptr, count, what)                                                                  \
    do {                                                                                         \
        if (!((ptr) = sb_arena_alloc_checked(a, (size_t)(count) * sizeof(float), what, err))) {  \
            rc = err->code;                                                                      \
            goto done;                                                                           \
        }                                                                                        \
    } while (0)
    float *lev[SB_CFG_MAX_LEVELS] = {0}, *stage[SB_CFG_MAX_STAGES] = {0};
    float *feat_s0 = NULL, *feat_s1 = NULL;
    int64_t s0 = n->neck.side[0], s1 = kept > 1 ? n->neck.side[1] : 0;
    int use_hr = cfg->use_high_res_features;
    if (n->neck.side[kept - 1] != e || (use_hr && (4 * e != s0 || 2 * e != s1))) {
        rc = sb_fail(err, SB_EINVAL, "feature levels %lld/%lld/%lld do not match the embedding size %lld",
                     (long long)s0, (long long)s1, (long long)n->neck.side[kept - 1], (long long)e);
        goto done;
    }
    /* Level 0 (64 MiB at 1024) is only consumed by conv_s0: unless it is
     * dumped, it is never materialised; conv_s0 runs on chunks of it. */
    int lev0_whole = dump != NULL || !use_hr;
    for (int l = lev0_whole ? 0 : 1; l < kept; l++)
        ALLOC(lev[l], B * n->neck.side[l] * n->neck.side[l] * C, "fpn level");
    if (use_hr) {
        ALLOC(feat_s0, B * (C / 8) * s0 * s0, "conv_s0");
        ALLOC(feat_s1, B * (C / 4) * s1 * s1, "conv_s1");
    }
    /* forward_image: trunk, neck, conv_s0/conv_s1 (SAM2Base.forward_image) */
    {
        size_t m2 = sb_arena_mark(a);
        for (int s = 0; s < n->trunk.n_stages; s++) {
            int64_t side = sb_hiera_stage_side(&n->trunk, s);
            ALLOC(stage[s], B * side * side * sb_hiera_stage_dim(&n->trunk, s), "trunk stage output");
        }
        if (dump || n->trunk.adapter) {
            /* whole batch: dumps are per batch; SAMed-2's adapter couples images */
            if ((rc = sb_hiera_forward(&n->trunk, ctx, images, B, stage, a, mp, dump, da, err)))
                goto done;
        } else {
            /* one image at a time: the trunk's working memory does not grow with B
             * (its GEMMs are already chunked, so nothing is lost) */
            for (int64_t b = 0; b < B; b++) {
                float *sb_[SB_CFG_MAX_STAGES];
                for (int s = 0; s < n->trunk.n_stages; s++) {
                    int64_t side = sb_hiera_stage_side(&n->trunk, s);
                    sb_[s] = stage[s] + b * side * side * sb_hiera_stage_dim(&n->trunk, s);
                }
                if ((rc = sb_hiera_forward(&n->trunk, ctx, images + b * 3 * S * S, 1, sb_, a, mp, NULL, NULL, err)))
                    goto done;
            }
        }
        if ((rc = sb_fpn_neck_forward(&n->neck, ctx, stage, B, lev, a, mp, dump, da, err)))
            goto done;
        if (use_hr) {
            sb_modprof_begin(mp, "conv_s0_s1");
            int64_t HW0 = s0 * s0, Cin0 = n->neck.in_ch[0];
            if (lev[0]) {
                sb_conv1x1_tok_to_nchw(ctx, lev[0], B, HW0, C, n->dec.conv_s0_w, n->dec.conv_s0_b, C / 8, feat_s0);
            } else {
                int64_t ch = HW0 < 8192 ? HW0 : 8192;
                float *lat;
                ALLOC(lat, ch * C, "fpn level 0 chunk");
                for (int64_t b = 0; b < B; b++)
                    for (int64_t p0 = 0; p0 < HW0; p0 += ch) {
                        int64_t np = HW0 - p0 < ch ? HW0 - p0 : ch;
                        /* the neck's lateral conv of level 0 (no top-down there, MODEL.md 2.2.6) */
                        sb_linear(ctx, stage[0] + (b * HW0 + p0) * Cin0, np, Cin0, n->neck.conv_w[0],
                                  n->neck.conv_b[0], C, lat);
                        float *dst = feat_s0 + b * (C / 8) * HW0 + p0;
                        sb_gemm(0, 1, C / 8, np, C, 1.0f, n->dec.conv_s0_w, C, lat, C, 0.0f, dst, HW0);
                        for (int64_t o = 0; o < C / 8; o++)
                            for (int64_t q = 0; q < np; q++)
                                dst[o * HW0 + q] += n->dec.conv_s0_b[o];
                    }
                sb_modprof_flops(mp, sb_flops_linear(B * HW0, Cin0, C));
            }
            sb_conv1x1_tok_to_nchw(ctx, lev[1], B, s1 * s1, C, n->dec.conv_s1_w, n->dec.conv_s1_b, C / 4, feat_s1);
            sb_modprof_flops(mp, sb_flops_linear(B * HW0, C, C / 8) + sb_flops_linear(B * s1 * s1, C, C / 4));
            sb_modprof_end(mp);
        }
        sb_arena_reset(a, m2);
    }
    float *tmp = NULL;
    if (dump) {
        ALLOC(tmp, B * C * s0 * s0, "dump");
        if (cfg->use_high_res_features) {
            sb_dump4(dump, da, "forward_image/backbone_fpn_0", feat_s0, B, C / 8, s0, s0);
            sb_dump4(dump, da, "forward_image/backbone_fpn_1", feat_s1, B, C / 4, s1, s1);
        }
        sb_tok_to_nchw(lev[kept - 1], B, HW, C, tmp);
        sb_dump4(dump, da, "forward_image/backbone_fpn_2", tmp, B, C, e, e);
    }
    /* level-2 step: sam2 adds no_mem_embed (1.3), medsam2 adds zeros (1.4),
     * samed2 runs memory attention (1.5, hook) */
    float *img = lev[kept - 1];
    if (m->flow == SB_FLOW_SAMED2) {
        if (!n->condition) {
            rc = sb_fail(err, SB_EUNSUPPORTED, "flow samed2: memory attention is not available in this build");
            goto done;
        }
        if ((rc = n->condition(n->hook_arg, ctx, img, n->neck.pe[kept - 1], B, e, e, C, a, mp, dump, da, err)))
            goto done;
    } else if (m->flow == SB_FLOW_SAM2 && cfg->directly_add_no_mem_embed) {
        for (int64_t i = 0; i < B * HW; i++)
            for (int64_t c = 0; c < C; c++)
                img[i * C + c] += n->no_mem_embed[c];
    }
    if (dump) {
        sb_tok_to_nchw(img, B, HW, C, tmp);
        sb_dump4(dump, da, "mask_decoder/image_embeddings", tmp, B, C, e, e);
        if (cfg->use_high_res_features) {
            sb_dump4(dump, da, "mask_decoder/high_res_features_0", feat_s0, B, C / 8, s0, s0);
            sb_dump4(dump, da, "mask_decoder/high_res_features_1", feat_s1, B, C / 4, s1, s1);
        }
    }
    /* prompt encoder */
    sb_modprof_begin(mp, "prompt_encoder");
    int64_t ns = sb_prompt_encoder_n_sparse(prompts);
    float *sparse = NULL;
    if (ns > 0) {
        ALLOC(sparse, B * ns * C, "sparse prompts");
        if ((rc = sb_prompt_encoder_forward(&n->pe, prompts, B, sparse, err)))
            goto done;
    }
    sb_modprof_end(mp);
    if (dump) {
        if (prompts && prompts->boxes)
            sb_dump2(dump, da, "prompt_encoder/boxes", prompts->boxes, B, 4);
        if (ns > 0)
            sb_dump3(dump, da, "prompt_encoder/sparse", sparse, B, ns, C);
        for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < C; c++)
                for (int64_t i = 0; i < HW; i++)
                    tmp[(b * C + c) * HW + i] = n->pe.no_mask[c];
        sb_dump4(dump, da, "prompt_encoder/dense", tmp, B, C, e, e);
        sb_dump4(dump, da, "prompt_encoder/dense_pe", n->pe.dense_pe_chw, 1, C, e, e);
    }
    /* mask decoder */
    int64_t low = 4 * e;
    if ((rc = sb_model_output_reserve(out, B, low, low, OH, OW, err)))
        goto done;
    sb_mask_decoder_io io;
    memset(&io, 0, sizeof io);
    float *all_masks, *all_iou, *obj;
    ALLOC(all_masks, B * n->dec.n_mask_tokens * low * low, "all masks");
    ALLOC(all_iou, B * n->dec.n_mask_tokens, "all iou");
    ALLOC(obj, B, "object score");
    io.image_tok = img;
    io.dense = n->pe.no_mask;
    io.image_pe = n->pe.dense_pe_tok;
    io.sparse = sparse;
    io.B = B;
    io.n_sparse = ns;
    io.h = io.w = e;
    io.feat_s0 = feat_s0;
    io.feat_s1 = feat_s1;
    io.all_masks = all_masks;
    io.all_iou = all_iou;
    io.low_res = out->low_res;
    io.iou = out->iou;
    io.obj_score = obj;
    if ((rc = sb_mask_decoder_forward(&n->dec, ctx, &io, a, mp, dump, da, err)))
        goto done;
    /* final logits: bilinear (sam2, samed2) or nearest (medsam2, MODEL.md 1.4) */
    if ((rc = sb_model_finish_logits(ctx, out, m->flow == SB_FLOW_MEDSAM2, opt->threshold, "logits/final", a, mp,
                                     dump, da, err)))
        goto done;
    if (n->after_decoder) {
        /* SAMed-2 memory update works on the S x S bilinear logits */
        float *hr = out->logits;
        if (OH != S || OW != S || m->flow == SB_FLOW_MEDSAM2) {
            ALLOC(hr, B * S * S, "high-res logits");
            sb_interp_bilinear(ctx, out->low_res, B, low, low, hr, S, S);
        }
        if ((rc = n->after_decoder(n->hook_arg, ctx, img, hr, out->iou, B, e, e, C, S, a, mp, dump, da, err)))
            goto done;
    }
done:
#undef ALLOC
    sb_modprof_end(mp);
    sb_arena_reset(a, mark);
    return rc;
}

int sb_sam2_model_init(sb_model *m, const sb_model_options *opt, sb_error *err)
{
    sb_sam2_net *n = calloc(1, sizeof *n);
    if (!n)
        return sb_fail(err, SB_ENOMEM, "model: out of memory");
    m->impl = n;
    m->impl_free = sam2_net_free;
    m->forward = sam2_forward;
    m->arena_bound = sam2_arena_bound;
    int rc;
    if (opt->config_path)
        rc = sb_sam2_config_load(&n->cfg, opt->config_path, err);
    else
        rc = sb_sam2_config_default(&n->cfg, opt->flow, err);
    if (rc)
        return rc;
    sb_sam2_config *cfg = &n->cfg;
    if (opt->flow == SB_FLOW_SAMED2 && cfg->trunk_kind != SB_TRUNK_HIERA_ADAPTER)
        return sb_fail(err, SB_EINVAL, "%s: flow samed2 needs the adapter trunk (hieradet.Hiera)",
                       opt->config_path ? opt->config_path : "config");
    if (opt->flow != SB_FLOW_SAMED2 && cfg->trunk_kind == SB_TRUNK_HIERA_ADAPTER)
        return sb_fail(err, SB_EINVAL,
                       "%s: the config has the SAMed-2 adapter trunk (hieradet.Hiera); use --flow samed2",
                       opt->config_path ? opt->config_path : "config");
    m->image_size = cfg->image_size;
    n->emb = cfg->image_size / cfg->backbone_stride;
    m->lowres = 4 * n->emb;
    if ((rc = sb_hiera_init(&n->trunk, cfg, &m->wb, "image_encoder.trunk.", err)) ||
        (rc = sb_fpn_neck_init(&n->neck, cfg, &n->trunk, &m->wb, "image_encoder.neck.", err)))
        return rc;
    if ((rc = sb_prompt_encoder_init(&n->pe, cfg->d_model, n->emb, n->emb, cfg->image_size, cfg->image_size,
                                     cfg->mask_in_chans, &m->wb, "sam_prompt_encoder.", err)))
        return rc;
    sb_mask_decoder_params dp;
    memset(&dp, 0, sizeof dp);
    dp.transformer_dim = cfg->d_model;
    dp.depth = cfg->decoder_depth;
    dp.mlp_dim = cfg->decoder_mlp_dim;
    dp.heads = cfg->decoder_num_heads;
    dp.attention_downsample = 2;
    dp.num_multimask_outputs = cfg->num_multimask_outputs;
    dp.iou_head_depth = cfg->iou_head_depth;
    dp.iou_head_hidden = cfg->iou_head_hidden_dim;
    dp.pred_obj_scores = cfg->pred_obj_scores;
    dp.pred_obj_scores_mlp = cfg->pred_obj_scores_mlp;
    dp.use_high_res_features = cfg->use_high_res_features;
    dp.iou_sigmoid = cfg->iou_prediction_use_sigmoid;
    dp.dynamic_multimask = cfg->dynamic_multimask;
    dp.stability_delta = (float)cfg->stability_delta;
    dp.stability_thresh = (float)cfg->stability_thresh;
    if ((rc = sb_mask_decoder_init(&n->dec, &dp, &m->wb, "sam_mask_decoder.", err)))
        return rc;
    if (opt->flow == SB_FLOW_SAM2 && cfg->directly_add_no_mem_embed) {
        int64_t sh[3] = {1, 1, cfg->d_model};
        if (!(n->no_mem_embed = sb_wbind_get(&m->wb, "no_mem_embed", 3, sh, err)))
            return err->code;
    }
    if (opt->flow == SB_FLOW_SAMED2 && (rc = sb_samed2_attach(n, &m->wb, err)))
        return rc;
    if (opt->flow == SB_FLOW_SAMED2 && (!n->trunk.adapter || !n->condition))
        return sb_fail(err, SB_EUNSUPPORTED,
                       "flow samed2: the temporal adapter and memory attention are not available in this build");
    int depth = n->trunk.n_blocks, ng = 0;
    for (int i = 0; i < depth; i++)
        ng += n->trunk.blk[i].window == 0;
    snprintf(m->desc, sizeof m->desc,
             "%s: Hiera (%s) embed %d, %d blocks (%d global), image %d, neck d_model %d, decoder depth %d heads %d",
             sb_flow_name(opt->flow), cfg->trunk_kind == SB_TRUNK_HIERA_ADAPTER ? "adapter" : "sam2", cfg->embed_dim,
             depth, ng, cfg->image_size, cfg->d_model, cfg->decoder_depth, cfg->decoder_num_heads);
    return SB_OK;
}

const sb_sam2_config *sb_model_sam2_config(const sb_model *m)
{
    if (m->flow == SB_FLOW_SAM2 || m->flow == SB_FLOW_MEDSAM2 || m->flow == SB_FLOW_SAMED2)
        return &((const sb_sam2_net *)m->impl)->cfg;
    return NULL;
}
