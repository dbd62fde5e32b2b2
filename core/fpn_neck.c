/*
 * FpnNeck + ImageEncoder scalp (MODEL.md 2.2.6) and the sine position
 * encoding of each kept level (2.2.7). Works token-major: a stage output
 * NHWC [B,H,W,C] is [B*H*W, C] tokens, so each lateral 1x1 conv is one
 * linear layer and the levels come out as [B, H*W, d_model], the layout
 * the mask decoder and the memory attention consume.
 */
#include "sam2_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sb_fpn_neck_init(sb_fpn_neck *n, const sb_sam2_config *cfg, const sb_hiera *trunk,
                     sb_wbind *wb, const char *prefix, sb_error *err)
{
    memset(n, 0, sizeof *n);
    n->n_levels = cfg->n_levels;
    n->d_model = cfg->d_model;
    n->scalp = cfg->scalp;
    n->nearest = cfg->fpn_interp_nearest;
    n->fuse_avg = cfg->fuse_avg;
    n->pe_feats = cfg->pe_num_pos_feats;
    if (fabs(cfg->pe_temperature - 10000.0) > 0)
        return sb_fail(err, SB_EUNSUPPORTED, "neck: position_encoding.temperature %g (only 10000 is supported)",
                       cfg->pe_temperature);
    if (cfg->n_top_down < 0)
        for (int l = 0; l < n->n_levels; l++)
            n->top_down[l] = 1;
    else
        for (int i = 0; i < cfg->n_top_down; i++)
            if (cfg->fpn_top_down_levels[i] >= 0 && cfg->fpn_top_down_levels[i] < n->n_levels)
                n->top_down[cfg->fpn_top_down_levels[i]] = 1;
    int last = n->n_levels - 1;
    for (int l = 0; l < n->n_levels; l++) {
        /* level l (stage l) uses convs[last - l] with backbone_channel_list[last - l] inputs */
        int j = last - l;
        n->in_ch[l] = cfg->backbone_channel_list[j];
        if (n->in_ch[l] != sb_hiera_stage_dim(trunk, l))
            return sb_fail(err, SB_EINVAL, "neck: convs.%d expects %d channels but trunk stage %d has %d", j,
                           n->in_ch[l], l, sb_hiera_stage_dim(trunk, l));
        int64_t s4[4] = {n->d_model, n->in_ch[l], 1, 1}, s1 = n->d_model;
        if (!(n->conv_w[l] = sb_wbind_getf(wb, err, 4, s4, "%sconvs.%d.conv.weight", prefix, j)))
            return err->code;
        if (!(n->conv_b[l] = sb_wbind_getf(wb, err, 1, &s1, "%sconvs.%d.conv.bias", prefix, j)))
            return err->code;
        n->side[l] = sb_hiera_stage_side(trunk, l);
    }
    /* top-down needs exact 2x sizes (F.interpolate scale_factor 2 then a sum) */
    for (int l = 0; l < last; l++)
        if (n->top_down[l] && n->side[l] != 2 * n->side[l + 1])
            return sb_fail(err, SB_EINVAL,
                           "neck: level %d is %lldx%lld but 2x level %d is %lldx%lld (image size must be a multiple of 32)",
                           l, (long long)n->side[l], (long long)n->side[l], l + 1, (long long)(2 * n->side[l + 1]),
                           (long long)(2 * n->side[l + 1]));
    /* only the last kept level's PE is ever used (memory attention); the
     * others are computed when dumped (level 0's would be 64 MiB at 1024) */
    int kept = sb_fpn_neck_levels_out(n);
    for (int l = kept - 1; l < kept; l++) {
        int64_t s = n->side[l];
        n->pe[l] = malloc((size_t)(n->pe_feats * s * s) * sizeof(float));
        if (!n->pe[l])
            return sb_fail(err, SB_ENOMEM, "neck: cannot allocate the position encoding");
        sb_pe_sine(n->pe[l], n->pe_feats, s, s);
    }
    return SB_OK;
}

void sb_fpn_neck_release(sb_fpn_neck *n)
{
    if (!n)
        return;
    for (int l = 0; l < SB_CFG_MAX_LEVELS; l++) {
        free(n->pe[l]);
        n->pe[l] = NULL;
    }
}

int sb_fpn_neck_levels_out(const sb_fpn_neck *n) { return n->n_levels - n->scalp; }

void sb_tok_to_nchw(const float *x, int64_t B, int64_t HW, int64_t C, float *y)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t p = 0; p < HW; p++)
            for (int64_t c = 0; c < C; c++)
                y[(b * C + c) * HW + p] = x[(b * HW + p) * C + c];
}

/* dst[B, side^2, C] += up2(src[B, (side/2)^2, C]) */
static int add_top_down(sb_ctx *ctx, float *dst, const float *src, int64_t B, int64_t side, int64_t C,
                        int nearest, sb_arena *a, sb_error *err)
{
    int64_t hs = side / 2;
    if (nearest) {
        for (int64_t b = 0; b < B; b++)
            for (int64_t y = 0; y < side; y++)
                for (int64_t x = 0; x < side; x++) {
                    float *d = dst + ((b * side + y) * side + x) * C;
                    const float *s = src + ((b * hs + y / 2) * hs + x / 2) * C;
                    for (int64_t c = 0; c < C; c++)
                        d[c] += s[c];
                }
        return SB_OK;
    }
    /* bilinear, align_corners=False, exact 2x: through planes */
    size_t mark = sb_arena_mark(a);
    float *p = sb_arena_alloc_checked(a, (size_t)(B * C * hs * hs) * sizeof(float), "fpn top-down", err);
    float *q = p ? sb_arena_alloc_checked(a, (size_t)(B * C * side * side) * sizeof(float), "fpn top-down", err) : NULL;
    if (!q)
        return err->code;
    sb_tok_to_nchw(src, B, hs * hs, C, p);
    sb_interp_bilinear(ctx, p, B * C, hs, hs, q, side, side);
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < side * side; i++)
                dst[(b * side * side + i) * C + c] += q[(b * C + c) * side * side + i];
    sb_arena_reset(a, mark);
    return SB_OK;
}

int sb_fpn_neck_forward(const sb_fpn_neck *n, sb_ctx *ctx, float *const *stage, int64_t B,
                        float **out, sb_arena *a, sb_modprof *mp, sb_dump_fn dump,
                        void *dump_arg, sb_error *err)
{
    int last = n->n_levels - 1, kept = sb_fpn_neck_levels_out(n);
    int64_t C = n->d_model;
    size_t mark = sb_arena_mark(a);
    int rc = SB_OK;
    /* levels that are scalped still feed the top-down path: keep them in the arena */
    float *lev[SB_CFG_MAX_LEVELS] = {0};
    for (int l = kept; l <= last; l++) {
        lev[l] = sb_arena_alloc_checked(a, (size_t)(B * n->side[l] * n->side[l] * C) * sizeof(float), "fpn level", err);
        if (!lev[l])
            return err->code;
    }
    for (int l = 0; l < kept; l++)
        lev[l] = out[l];
    sb_modprof_begin(mp, "neck");
    for (int l = last; l >= 0; l--) {
        int64_t HW = n->side[l] * n->side[l];
        if (!lev[l])
            continue; /* level 0 not wanted (the caller fuses it into conv_s0) */
        sb_linear(ctx, stage[l], B * HW, n->in_ch[l], n->conv_w[l], n->conv_b[l], C, lev[l]);
        sb_modprof_flops(mp, sb_flops_linear(B * HW, n->in_ch[l], C));
        if (l < last && n->top_down[l]) {
            if ((rc = add_top_down(ctx, lev[l], lev[l + 1], B, n->side[l], C, n->nearest, a, err)))
                goto done;
            if (n->fuse_avg)
                for (int64_t i = 0; i < B * HW * C; i++)
                    lev[l][i] *= 0.5f;
        }
    }
    if (dump) {
        for (int l = 0; l < kept; l++) {
            int64_t s = n->side[l], HW = s * s;
            if (!lev[l])
                continue;
            size_t m2 = sb_arena_mark(a);
            float *t = sb_arena_alloc_checked(a, (size_t)(B * C * HW) * sizeof(float), "dump", err);
            if (!t) {
                rc = err->code;
                goto done;
            }
            char name[64];
            sb_tok_to_nchw(lev[l], B, HW, C, t);
            snprintf(name, sizeof name, "encoder/backbone_fpn_%d", l);
            sb_dump4(dump, dump_arg, name, t, B, C, s, s);
            if (n->pe[l])
                memcpy(t, n->pe[l], (size_t)(n->pe_feats * HW) * sizeof(float));
            else
                sb_pe_sine(t, n->pe_feats, s, s);
            for (int64_t b = 1; b < B; b++)
                memcpy(t + b * C * HW, t, (size_t)(n->pe_feats * HW) * sizeof(float));
            snprintf(name, sizeof name, "encoder/vision_pos_enc_%d", l);
            sb_dump4(dump, dump_arg, name, t, B, n->pe_feats, s, s);
            sb_arena_reset(a, m2);
        }
    }
done:
    sb_modprof_end(mp);
    sb_arena_reset(a, mark);
    return rc;
}
