/*
 * SAMed-2's TemporalAdapter (MODEL.md 2.2.5), run inside every Hiera block
 * through the trunk's adapter hook on the attention output, still in the
 * window-partitioned layout:
 *   a += Linear_up(GELU(Conv3d(pair(Linear_down(LN(a))))))
 * LN eps 1e-5 (nn.LayerNorm's default, MODEL.md 6.5). pair() groups
 * consecutive entries of the (batch x windows) sequence two by two as the
 * time axis T = 2 of a Conv3d(3x3x3, padding 1): entries 2j and 2j+1, which
 * for 25 windows per image straddle images (the quirk the trained weights
 * expect, MODEL.md 2.2.5 / 6.9). The trunk always hands the hook an even
 * `first` and `n`, so a pair is never split between calls.
 */
#include "samed2_internal.h"

#include <stdio.h>
#include <string.h>

int sb_temporal_adapters_init(sb_temporal_adapters *ta, const sb_sam2_config *cfg,
                              const sb_hiera *trunk, sb_wbind *wb, sb_error *err)
{
    memset(ta, 0, sizeof *ta);
    if (cfg->adapter_d_size != 2)
        return sb_fail(err, SB_EUNSUPPORTED,
                       "temporal adapter: d_size %d (only the published 2 is supported)",
                       cfg->adapter_d_size);
    ta->n_blocks = trunk->n_blocks;
    const int ch = cfg->adapter_channels;
    for (int i = 0; i < trunk->n_blocks; i++) {
        sb_adapter_w *w = &ta->blk[i];
        int d = trunk->blk[i].dim_out;
        w->dim = d;
        w->ch = ch;
        const char *p = "image_encoder.trunk.blocks";
        int64_t vd[1] = {d}, vc[1] = {ch}, down[2] = {ch, d}, up[2] = {d, ch};
        int64_t conv[5] = {ch, ch, 3, 3, 3};
        if (!(w->norm_w = sb_wbind_getf(wb, err, 1, vd, "%s.%d.adapter.norm.weight", p, i)) ||
            !(w->norm_b = sb_wbind_getf(wb, err, 1, vd, "%s.%d.adapter.norm.bias", p, i)) ||
            !(w->down_w = sb_wbind_getf(wb, err, 2, down, "%s.%d.adapter.linear_down.weight", p, i)) ||
            !(w->down_b = sb_wbind_getf(wb, err, 1, vc, "%s.%d.adapter.linear_down.bias", p, i)) ||
            !(w->conv_w = sb_wbind_getf(wb, err, 5, conv, "%s.%d.adapter.conv.weight", p, i)) ||
            !(w->conv_b = sb_wbind_getf(wb, err, 1, vc, "%s.%d.adapter.conv.bias", p, i)) ||
            !(w->up_w = sb_wbind_getf(wb, err, 2, up, "%s.%d.adapter.linear_up.weight", p, i)) ||
            !(w->up_b = sb_wbind_getf(wb, err, 1, vd, "%s.%d.adapter.linear_up.bias", p, i)))
            return err ? err->code : SB_EKEY;
    }
    return SB_OK;
}

int sb_temporal_adapter_hook(void *arg, int block, float *a, int64_t first, int64_t n, int64_t h,
                             int64_t w, int64_t C, sb_ctx *ctx, sb_arena *scratch, sb_error *err)
{
    sb_temporal_adapters *ta = arg;
    if (block < 0 || block >= ta->n_blocks)
        return sb_fail(err, SB_EINVAL, "temporal adapter: block %d out of range", block);
    const sb_adapter_w *wt = &ta->blk[block];
    if (C != wt->dim)
        return sb_fail(err, SB_ESHAPE, "temporal adapter: block %d gets %lld channels, expects %d", block,
                       (long long)C, wt->dim);
    if ((first & 1) || (n & 1))
        return sb_fail(err, SB_EINVAL,
                       "temporal adapter: block %d: windows [%lld, %lld) split a temporal pair (batch must be even)",
                       block, (long long)first, (long long)(first + n));
    const int64_t T = n * h * w; /* tokens */
    const int64_t ch = wt->ch;
    size_t mark = sb_arena_mark(scratch);
    float *t = sb_arena_alloc_checked(scratch, (size_t)(T * C) * sizeof(float), "adapter norm", err);
    float *d = t ? sb_arena_alloc_checked(scratch, (size_t)(T * ch) * sizeof(float), "adapter down", err) : NULL;
    float *c = d ? sb_arena_alloc_checked(scratch, (size_t)(T * ch) * sizeof(float), "adapter conv", err) : NULL;
    if (!c) {
        sb_arena_reset(scratch, mark);
        return SB_ENOMEM;
    }
    sb_layernorm(ctx, a, T, C, wt->norm_w, wt->norm_b, 1e-5f, t);
    sb_linear(ctx, t, T, C, wt->down_w, wt->down_b, ch, d);
    /* d is [n, h, w, ch] = [n/2 pairs][T=2][h][w][ch]: channels-last 3-D data as is */
    int rc = sb_conv3d_3x3x3_cl(ctx, d, n / 2, 2, h, w, ch, wt->conv_w, wt->conv_b, ch, c, scratch, err);
    if (rc) {
        sb_arena_reset(scratch, mark);
        return rc;
    }
    sb_gelu(ctx, c, T * ch); /* GELU after the conv, nothing between down and conv */
    sb_linear(ctx, c, T, ch, wt->up_w, wt->up_b, C, t);
    sb_add(ctx, a, t, T * C);
    if (block == 0 && first == 0) /* a new forward (or a retried one) starts counting afresh */
        ta->flops = 0;
    ta->flops += sb_flops_linear(T, C, ch) * 2.0 + 2.0 * (double)T * ch * ch * 27.0;
    sb_arena_reset(scratch, mark);
    return SB_OK;
}
