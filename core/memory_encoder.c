/*
 * Memory encoder (MODEL.md 2.7), the SAMed-2 update path:
 *   mask_in = sigmoid(high-res logits) * 20 - 10      (skip_mask_sigmoid=True)
 *   m = MaskDownSampler(mask_in): [Conv(k3,s2,p1) -> LN2d -> GELU] x 4 -> Conv1x1
 *   x = pix_feat_proj(pix) + m
 *   x = CXBlock x n (dwconv 7x7 -> LN2d -> Linear -> GELU -> Linear -> gamma, residual)
 *   out = out_proj(x); pos = sine PE of out's grid (input independent)
 * LayerNorm2d eps 1e-6 everywhere here (MODEL.md 6.5).
 */
#include "samed2_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int sb_memory_encoder_init(sb_memory_encoder *me, const sb_sam2_config *cfg, sb_wbind *wb,
                           sb_error *err)
{
    memset(me, 0, sizeof *me);
    me->in_dim = cfg->mem_enc_in_dim;
    me->out_dim = cfg->mem_enc_out_dim;
    me->embed_dim = cfg->mem_ds_embed_dim;
    me->ds_kernel = cfg->mem_ds_kernel;
    me->ds_stride = cfg->mem_ds_stride;
    me->ds_pad = cfg->mem_ds_padding;
    me->fuser_layers = cfg->mem_fuser_layers;
    me->fuser_kernel = cfg->mem_fuser_kernel;
    me->fuser_pad = cfg->mem_fuser_padding;
    me->pe_feats = cfg->mem_enc_pe_num_pos_feats;
    if (me->pe_feats != me->out_dim)
        return sb_fail(err, SB_EINVAL, "memory encoder: position encoding has %d features but the output %d channels",
                       me->pe_feats, me->out_dim);
    me->scale = (float)cfg->sigmoid_scale_for_mem_enc;
    me->bias = (float)cfg->sigmoid_bias_for_mem_enc;
    /* num_layers = log2(total_stride) // log2(stride), and stride^layers must be total */
    int layers = 0;
    for (long s = 1; s < cfg->mem_ds_total_stride && layers <= SB_MEM_DS_MAX_LAYERS; s *= me->ds_stride)
        layers++;
    long check = 1;
    for (int i = 0; i < layers; i++)
        check *= me->ds_stride;
    if (me->ds_stride < 2 || layers < 1 || layers > SB_MEM_DS_MAX_LAYERS ||
        check != cfg->mem_ds_total_stride)
        return sb_fail(err, SB_EINVAL, "memory encoder: stride %d does not divide total stride %d into layers",
                       me->ds_stride, cfg->mem_ds_total_stride);
    if (me->fuser_layers < 0 || me->fuser_layers > SB_FUSER_MAX_LAYERS ||
        cfg->mem_fuser_dim != me->embed_dim || me->embed_dim != me->in_dim)
        return sb_fail(err, SB_EINVAL,
                       "memory encoder: fuser dim %d, downsampler dim %d and pix_feat dim %d must agree",
                       cfg->mem_fuser_dim, me->embed_dim, me->in_dim);
    me->ds_layers = layers;
    me->ds_ch[0] = 1;
    const char *p = "memory_encoder.mask_downsampler.encoder";
    int idx = 0; /* nn.Sequential index: conv, LN, GELU per layer, then the final conv */
    for (int i = 0; i < layers; i++) {
        int cin = me->ds_ch[i], cout = cin * me->ds_stride * me->ds_stride;
        me->ds_ch[i + 1] = cout;
        int64_t w[4] = {cout, cin, me->ds_kernel, me->ds_kernel}, v = cout;
        if (!(me->ds_conv_w[i] = sb_wbind_getf(wb, err, 4, w, "%s.%d.weight", p, idx)) ||
            !(me->ds_conv_b[i] = sb_wbind_getf(wb, err, 1, &v, "%s.%d.bias", p, idx)) ||
            !(me->ds_ln_w[i] = sb_wbind_getf(wb, err, 1, &v, "%s.%d.weight", p, idx + 1)) ||
            !(me->ds_ln_b[i] = sb_wbind_getf(wb, err, 1, &v, "%s.%d.bias", p, idx + 1)))
            return err->code;
        idx += 3;
    }
    int64_t wo[4] = {me->embed_dim, me->ds_ch[layers], 1, 1}, ve = me->embed_dim;
    if (!(me->ds_out_w = sb_wbind_getf(wb, err, 4, wo, "%s.%d.weight", p, idx)) ||
        !(me->ds_out_b = sb_wbind_getf(wb, err, 1, &ve, "%s.%d.bias", p, idx)))
        return err->code;
    const int64_t D = me->in_dim;
    int64_t pw[4] = {D, D, 1, 1}, vD = D;
    if (!(me->pix_w = sb_wbind_get(wb, "memory_encoder.pix_feat_proj.weight", 4, pw, err)) ||
        !(me->pix_b = sb_wbind_get(wb, "memory_encoder.pix_feat_proj.bias", 1, &vD, err)))
        return err->code;
    const char *f = "memory_encoder.fuser.layers";
    int64_t dw[4] = {D, 1, me->fuser_kernel, me->fuser_kernel}, p1[2] = {4 * D, D}, p2[2] = {D, 4 * D},
            v4 = 4 * D;
    for (int i = 0; i < me->fuser_layers; i++) {
        if (!(me->cx[i].dw_w = sb_wbind_getf(wb, err, 4, dw, "%s.%d.dwconv.weight", f, i)) ||
            !(me->cx[i].dw_b = sb_wbind_getf(wb, err, 1, &vD, "%s.%d.dwconv.bias", f, i)) ||
            !(me->cx[i].ln_w = sb_wbind_getf(wb, err, 1, &vD, "%s.%d.norm.weight", f, i)) ||
            !(me->cx[i].ln_b = sb_wbind_getf(wb, err, 1, &vD, "%s.%d.norm.bias", f, i)) ||
            !(me->cx[i].pw1_w = sb_wbind_getf(wb, err, 2, p1, "%s.%d.pwconv1.weight", f, i)) ||
            !(me->cx[i].pw1_b = sb_wbind_getf(wb, err, 1, &v4, "%s.%d.pwconv1.bias", f, i)) ||
            !(me->cx[i].pw2_w = sb_wbind_getf(wb, err, 2, p2, "%s.%d.pwconv2.weight", f, i)) ||
            !(me->cx[i].pw2_b = sb_wbind_getf(wb, err, 1, &vD, "%s.%d.pwconv2.bias", f, i)) ||
            !(me->cx[i].gamma = sb_wbind_getf(wb, err, 1, &vD, "%s.%d.gamma", f, i)))
            return err->code;
    }
    if (me->out_dim != me->in_dim) {
        int64_t ow[4] = {me->out_dim, D, 1, 1}, vo = me->out_dim;
        if (!(me->out_w = sb_wbind_get(wb, "memory_encoder.out_proj.weight", 4, ow, err)) ||
            !(me->out_b = sb_wbind_get(wb, "memory_encoder.out_proj.bias", 1, &vo, err)))
            return err->code;
    }
    return SB_OK;
}

int sb_memory_encoder_forward(const sb_memory_encoder *me, sb_ctx *ctx, const float *pix,
                              const float *logits, int64_t B, int64_t h, int64_t w, int64_t S,
                              float *out, float *pos, sb_arena *a, sb_modprof *mp,
                              sb_dump_fn dump, void *dump_arg, sb_error *err)
{
    const int64_t D = me->in_dim, HW = h * w;
    size_t mark = sb_arena_mark(a);
    int rc = SB_OK;
    /* side of every downsampler level; the last must be h x w */
    int64_t side[SB_MEM_DS_MAX_LAYERS + 1];
    side[0] = S;
    for (int i = 0; i < me->ds_layers; i++)
        side[i + 1] = sb_conv_out_size(side[i], me->ds_kernel, me->ds_stride, me->ds_pad);
    if (side[me->ds_layers] != h || h != w)
        return sb_fail(err, SB_ESHAPE,
                       "memory encoder: a %lldx%lld mask downsamples to %lld, but the features are %lldx%lld",
                       (long long)S, (long long)S, (long long)side[me->ds_layers], (long long)h, (long long)w);
    /* the largest pyramid level bounds the two ping-pong buffers */
    int64_t big = B * S * S;
    for (int i = 1; i <= me->ds_layers; i++)
        if (B * me->ds_ch[i] * side[i] * side[i] > big)
            big = B * me->ds_ch[i] * side[i] * side[i];
    if (B * D * HW > big)
        big = B * D * HW;
    float *p0 = sb_arena_alloc_checked(a, (size_t)big * sizeof(float), "memory encoder pyramid", err);
    float *p1 = p0 ? sb_arena_alloc_checked(a, (size_t)big * sizeof(float), "memory encoder pyramid", err) : NULL;
    float *x = p1 ? sb_arena_alloc_checked(a, (size_t)(B * D * HW) * sizeof(float), "memory encoder x", err) : NULL;
    float *y = x ? sb_arena_alloc_checked(a, (size_t)(B * D * HW) * sizeof(float), "memory encoder y", err) : NULL;
    float *hid = y ? sb_arena_alloc_checked(a, (size_t)(HW * 4 * D) * sizeof(float), "memory encoder mlp", err) : NULL;
    float *tok = hid ? sb_arena_alloc_checked(a, (size_t)(HW * D) * sizeof(float), "memory encoder tokens", err) : NULL;
    if (!tok) {
        sb_arena_reset(a, mark);
        return SB_ENOMEM;
    }
    sb_modprof_begin(mp, "memory_encoder");
    /* mask_in: sigmoid, then * scale, then + bias, each rounded like torch */
    for (int64_t i = 0; i < B * S * S; i++) {
        float s = 1.0f / (1.0f + expf(-logits[i]));
        s = s * me->scale;
        p0[i] = s + me->bias;
    }
    if (dump) {
        sb_dump4(dump, dump_arg, "memory_encoder/pix_feat", pix, B, D, h, w);
        sb_dump4(dump, dump_arg, "memory_encoder/mask_in", p0, B, 1, S, S);
    }
    float *cur = p0, *nxt = p1;
    double flops = 0;
    for (int i = 0; i < me->ds_layers; i++) {
        int64_t ci = me->ds_ch[i], co = me->ds_ch[i + 1], so = side[i + 1];
        if ((rc = sb_conv2d(ctx, cur, B, ci, side[i], side[i], me->ds_conv_w[i], me->ds_conv_b[i], co,
                            me->ds_kernel, me->ds_kernel, me->ds_stride, me->ds_pad, 1, nxt, a, err)))
            goto done;
        sb_layernorm2d(ctx, nxt, B, co, so * so, me->ds_ln_w[i], me->ds_ln_b[i], 1e-6f, nxt);
        sb_gelu(ctx, nxt, B * co * so * so);
        flops += 2.0 * (double)B * so * so * co * ci * me->ds_kernel * me->ds_kernel;
        float *t = cur;
        cur = nxt;
        nxt = t;
    }
    /* final 1x1 conv of the downsampler into y, pix_feat_proj into x, x += y */
    sb_linear_cm(ctx, cur, B, me->ds_ch[me->ds_layers], HW, me->ds_out_w, me->ds_out_b, me->embed_dim, y);
    sb_linear_cm(ctx, pix, B, D, HW, me->pix_w, me->pix_b, D, x);
    sb_add(ctx, x, y, B * D * HW);
    flops += sb_flops_linear(B * HW, me->ds_ch[me->ds_layers], me->embed_dim) + sb_flops_linear(B * HW, D, D);
    /* fuser: CXBlocks on NCHW x */
    for (int i = 0; i < me->fuser_layers; i++) {
        if ((rc = sb_conv2d(ctx, x, B, D, h, w, me->cx[i].dw_w, me->cx[i].dw_b, D, me->fuser_kernel,
                            me->fuser_kernel, 1, me->fuser_pad, (int)D, y, a, err)))
            goto done;
        sb_layernorm2d(ctx, y, B, D, HW, me->cx[i].ln_w, me->cx[i].ln_b, 1e-6f, y);
        for (int64_t b = 0; b < B; b++) {
            float *yb = y + b * D * HW, *xb = x + b * D * HW;
            /* NCHW -> tokens, Linear, GELU, Linear, gamma, back to NCHW, residual */
            sb_nchw_to_nhwc(ctx, yb, 1, D, h, w, tok);
            sb_linear_gelu(ctx, tok, HW, D, me->cx[i].pw1_w, me->cx[i].pw1_b, 4 * D, hid);
            sb_linear(ctx, hid, HW, 4 * D, me->cx[i].pw2_w, me->cx[i].pw2_b, D, tok);
            for (int64_t t = 0; t < HW; t++)
                for (int64_t c = 0; c < D; c++)
                    xb[c * HW + t] += me->cx[i].gamma[c] * tok[t * D + c];
        }
        flops += 2.0 * (double)B * HW * D * me->fuser_kernel * me->fuser_kernel +
                 2 * sb_flops_linear(B * HW, D, 4 * D);
    }
    if (me->out_w) {
        sb_linear_cm(ctx, x, B, D, HW, me->out_w, me->out_b, me->out_dim, out);
        flops += sb_flops_linear(B * HW, D, me->out_dim);
    } else {
        memcpy(out, x, (size_t)(B * D * HW) * sizeof(float));
    }
    sb_modprof_flops(mp, flops);
    float *pe = pos;
    if (!pe && dump) {
        pe = sb_arena_alloc_checked(a, (size_t)(me->out_dim * HW) * sizeof(float), "memory pe", err);
        if (!pe) {
            rc = SB_ENOMEM;
            goto done;
        }
    }
    if (pe)
        sb_pe_sine(pe, me->out_dim, h, w);
    if (dump) {
        sb_dump4(dump, dump_arg, "memory_encoder/vision_features", out, B, me->out_dim, h, w);
        for (int64_t b = 0; b < B; b++) /* the PE of every item (the golden layout) */
            memcpy(y + b * me->out_dim * HW, pe, (size_t)(me->out_dim * HW) * sizeof(float));
        sb_dump4(dump, dump_arg, "memory_encoder/vision_pos_enc", y, B, me->out_dim, h, w);
    }
done:
    sb_modprof_end(mp);
    sb_arena_reset(a, mark);
    return rc;
}
