/*
 * Mask decoder with its two-way transformer (MODEL.md 2.4 for SAM2, 2.10
 * for SAM v1 -- one code path, the differences are parameters: object-score
 * token, high-resolution skip features, IoU sigmoid, dynamic multimask).
 * Token-major throughout: queries [B, Nt, C], keys [B, HW, C].
 */
#include "sam2_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int bind_attn(sb_attn_w *a, int C, int internal, sb_wbind *wb, const char *prefix,
                     const char *name, sb_error *err)
{
    a->internal = internal;
    a->kv_in = C;
    int64_t wi[2] = {internal, C}, wo[2] = {C, internal}, bi = internal, bo = C;
    if (!(a->q_w = sb_wbind_getf(wb, err, 2, wi, "%s%s.q_proj.weight", prefix, name)) ||
        !(a->q_b = sb_wbind_getf(wb, err, 1, &bi, "%s%s.q_proj.bias", prefix, name)) ||
        !(a->k_w = sb_wbind_getf(wb, err, 2, wi, "%s%s.k_proj.weight", prefix, name)) ||
        !(a->k_b = sb_wbind_getf(wb, err, 1, &bi, "%s%s.k_proj.bias", prefix, name)) ||
        !(a->v_w = sb_wbind_getf(wb, err, 2, wi, "%s%s.v_proj.weight", prefix, name)) ||
        !(a->v_b = sb_wbind_getf(wb, err, 1, &bi, "%s%s.v_proj.bias", prefix, name)) ||
        !(a->o_w = sb_wbind_getf(wb, err, 2, wo, "%s%s.out_proj.weight", prefix, name)) ||
        !(a->o_b = sb_wbind_getf(wb, err, 1, &bo, "%s%s.out_proj.bias", prefix, name)))
        return err->code;
    return SB_OK;
}

static int bind_vec(const float **dst, sb_wbind *wb, int64_t n, const char *prefix, const char *name,
                    sb_error *err)
{
    if (!(*dst = sb_wbind_getf(wb, err, 1, &n, "%s%s", prefix, name)))
        return err->code;
    return SB_OK;
}

static int bind_mat(const float **dst, sb_wbind *wb, int64_t r, int64_t c, const char *prefix,
                    const char *name, sb_error *err)
{
    int64_t s[2] = {r, c};
    if (!(*dst = sb_wbind_getf(wb, err, 2, s, "%s%s", prefix, name)))
        return err->code;
    return SB_OK;
}

int sb_mask_decoder_init(sb_mask_decoder *d, const sb_mask_decoder_params *p, sb_wbind *wb,
                         const char *prefix, sb_error *err)
{
    memset(d, 0, sizeof *d);
    d->p = *p;
    int C = p->transformer_dim, rc;
    if (p->depth < 1 || p->depth > SB_DEC_MAX_DEPTH || p->heads < 1 || C % (p->heads * p->attention_downsample) ||
        C % 8 || p->num_multimask_outputs + 1 > SB_DEC_MAX_MASKS || p->iou_head_depth < 1 || p->iou_head_depth > 8)
        return sb_fail(err, SB_EINVAL, "mask decoder: unsupported dims (dim %d, depth %d, heads %d)", C, p->depth,
                       p->heads);
    d->n_mask_tokens = p->num_multimask_outputs + 1;
    d->n_out_tokens = d->n_mask_tokens + 1 + (p->pred_obj_scores ? 1 : 0);
    char name[160];
    if ((rc = bind_mat(&d->iou_token, wb, 1, C, prefix, "iou_token.weight", err)) ||
        (rc = bind_mat(&d->mask_tokens, wb, d->n_mask_tokens, C, prefix, "mask_tokens.weight", err)))
        return rc;
    if (p->pred_obj_scores && (rc = bind_mat(&d->obj_score_token, wb, 1, C, prefix, "obj_score_token.weight", err)))
        return rc;
    int Ic = C / p->attention_downsample;
    for (int l = 0; l < p->depth; l++) {
        sb_twoway_layer *L = &d->layer[l];
        snprintf(name, sizeof name, "transformer.layers.%d.self_attn", l);
        if ((rc = bind_attn(&L->self_attn, C, C, wb, prefix, name, err)))
            return rc;
        snprintf(name, sizeof name, "transformer.layers.%d.cross_attn_token_to_image", l);
        if ((rc = bind_attn(&L->t2i, C, Ic, wb, prefix, name, err)))
            return rc;
        snprintf(name, sizeof name, "transformer.layers.%d.cross_attn_image_to_token", l);
        if ((rc = bind_attn(&L->i2t, C, Ic, wb, prefix, name, err)))
            return rc;
        const float **nw[4] = {&L->n1_w, &L->n2_w, &L->n3_w, &L->n4_w};
        const float **nb[4] = {&L->n1_b, &L->n2_b, &L->n3_b, &L->n4_b};
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "transformer.layers.%d.norm%d.weight", l, k + 1);
            if ((rc = bind_vec(nw[k], wb, C, prefix, name, err)))
                return rc;
            snprintf(name, sizeof name, "transformer.layers.%d.norm%d.bias", l, k + 1);
            if ((rc = bind_vec(nb[k], wb, C, prefix, name, err)))
                return rc;
        }
        /* SAM v1's TwoWayAttentionBlock uses MLPBlock (mlp.lin1 / mlp.lin2),
         * SAM2's uses MLP (mlp.layers.0 / .1); same math (issue 6). The
         * checkpoint decides; random weights follow the v1 variant flags. */
        char full[256];
        snprintf(full, sizeof full, "%stransformer.layers.%d.mlp.lin1.weight", prefix, l);
        int v1_mlp = wb->w ? sb_wbind_has(wb, full) : (!p->pred_obj_scores && !p->use_high_res_features);
        const char *m0 = v1_mlp ? "lin1" : "layers.0", *m1 = v1_mlp ? "lin2" : "layers.1";
        snprintf(name, sizeof name, "transformer.layers.%d.mlp.%s.weight", l, m0);
        if ((rc = bind_mat(&L->mlp0_w, wb, p->mlp_dim, C, prefix, name, err)))
            return rc;
        snprintf(name, sizeof name, "transformer.layers.%d.mlp.%s.bias", l, m0);
        if ((rc = bind_vec(&L->mlp0_b, wb, p->mlp_dim, prefix, name, err)))
            return rc;
        snprintf(name, sizeof name, "transformer.layers.%d.mlp.%s.weight", l, m1);
        if ((rc = bind_mat(&L->mlp1_w, wb, C, p->mlp_dim, prefix, name, err)))
            return rc;
        snprintf(name, sizeof name, "transformer.layers.%d.mlp.%s.bias", l, m1);
        if ((rc = bind_vec(&L->mlp1_b, wb, C, prefix, name, err)))
            return rc;
    }
    if ((rc = bind_attn(&d->final_attn, C, Ic, wb, prefix, "transformer.final_attn_token_to_image", err)) ||
        (rc = bind_vec(&d->nf_w, wb, C, prefix, "transformer.norm_final_attn.weight", err)) ||
        (rc = bind_vec(&d->nf_b, wb, C, prefix, "transformer.norm_final_attn.bias", err)))
        return rc;
    int64_t u0[4] = {C, C / 4, 2, 2}, u3[4] = {C / 4, C / 8, 2, 2};
    if (!(d->up0_w = sb_wbind_getf(wb, err, 4, u0, "%soutput_upscaling.0.weight", prefix)) ||
        !(d->up3_w = sb_wbind_getf(wb, err, 4, u3, "%soutput_upscaling.3.weight", prefix)))
        return err->code;
    if ((rc = bind_vec(&d->up0_b, wb, C / 4, prefix, "output_upscaling.0.bias", err)) ||
        (rc = bind_vec(&d->up_ln_w, wb, C / 4, prefix, "output_upscaling.1.weight", err)) ||
        (rc = bind_vec(&d->up_ln_b, wb, C / 4, prefix, "output_upscaling.1.bias", err)) ||
        (rc = bind_vec(&d->up3_b, wb, C / 8, prefix, "output_upscaling.3.bias", err)))
        return rc;
    if (p->use_high_res_features) {
        int64_t s0[4] = {C / 8, C, 1, 1}, s1[4] = {C / 4, C, 1, 1};
        if (!(d->conv_s0_w = sb_wbind_getf(wb, err, 4, s0, "%sconv_s0.weight", prefix)) ||
            !(d->conv_s1_w = sb_wbind_getf(wb, err, 4, s1, "%sconv_s1.weight", prefix)))
            return err->code;
        if ((rc = bind_vec(&d->conv_s0_b, wb, C / 8, prefix, "conv_s0.bias", err)) ||
            (rc = bind_vec(&d->conv_s1_b, wb, C / 4, prefix, "conv_s1.bias", err)))
            return rc;
    }
    for (int i = 0; i < d->n_mask_tokens; i++) {
        int outs[3] = {C, C, C / 8};
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "output_hypernetworks_mlps.%d.layers.%d.weight", i, k);
            if ((rc = bind_mat(&d->hyper_w[i][k], wb, outs[k], C, prefix, name, err)))
                return rc;
            snprintf(name, sizeof name, "output_hypernetworks_mlps.%d.layers.%d.bias", i, k);
            if ((rc = bind_vec(&d->hyper_b[i][k], wb, outs[k], prefix, name, err)))
                return rc;
        }
    }
    for (int k = 0; k < p->iou_head_depth; k++) {
        int in = k == 0 ? C : p->iou_head_hidden;
        int out = k == p->iou_head_depth - 1 ? d->n_mask_tokens : p->iou_head_hidden;
        snprintf(name, sizeof name, "iou_prediction_head.layers.%d.weight", k);
        if ((rc = bind_mat(&d->iou_w[k], wb, out, in, prefix, name, err)))
            return rc;
        snprintf(name, sizeof name, "iou_prediction_head.layers.%d.bias", k);
        if ((rc = bind_vec(&d->iou_b[k], wb, out, prefix, name, err)))
            return rc;
    }
    if (p->pred_obj_scores) {
        if (p->pred_obj_scores_mlp) {
            d->obj_layers = 3;
            int outs[3] = {C, C, 1};
            for (int k = 0; k < 3; k++) {
                snprintf(name, sizeof name, "pred_obj_score_head.layers.%d.weight", k);
                if ((rc = bind_mat(&d->obj_w[k], wb, outs[k], C, prefix, name, err)))
                    return rc;
                snprintf(name, sizeof name, "pred_obj_score_head.layers.%d.bias", k);
                if ((rc = bind_vec(&d->obj_b[k], wb, outs[k], prefix, name, err)))
                    return rc;
            }
        } else {
            d->obj_layers = 1;
            if ((rc = bind_mat(&d->obj_w[0], wb, 1, C, prefix, "pred_obj_score_head.weight", err)) ||
                (rc = bind_vec(&d->obj_b[0], wb, 1, prefix, "pred_obj_score_head.bias", err)))
                return rc;
        }
    }
    return SB_OK;
}

void sb_conv1x1_tok_to_nchw(sb_ctx *ctx, const float *x, int64_t B, int64_t HW, int64_t Cin,
                            const float *w, const float *b, int64_t Cout, float *y)
{
    (void)ctx;
    for (int64_t bi = 0; bi < B; bi++) {
        float *yb = y + bi * Cout * HW;
        /* y[Cout, HW] = W[Cout, Cin] x[HW, Cin]^T */
        sb_gemm(0, 1, Cout, HW, Cin, 1.0f, w, Cin, x + bi * HW * Cin, Cin, 0.0f, yb, HW);
        if (b)
            for (int64_t o = 0; o < Cout; o++)
                for (int64_t p = 0; p < HW; p++)
                    yb[o * HW + p] += b[o];
    }
}

/* out[B,Lq,C] = Attention(q_in[B,Lq,C], k_in[B,Lk,C], v_in[B,Lk,C]) (transformer.Attention). */
static int dec_attention(const sb_attn_w *aw, int heads, sb_ctx *ctx, const float *q_in,
                         const float *k_in, const float *v_in, int64_t B, int64_t Lq, int64_t Lk,
                         int64_t C, float *out, sb_arena *a, sb_modprof *mp, sb_error *err)
{
    int64_t I = aw->internal, hd = I / heads;
    size_t mark = sb_arena_mark(a);
    float *Q = sb_arena_alloc_checked(a, (size_t)(B * Lq * I) * sizeof(float), "decoder q", err);
    float *K = Q ? sb_arena_alloc_checked(a, (size_t)(B * Lk * I) * sizeof(float), "decoder k", err) : NULL;
    float *V = K ? sb_arena_alloc_checked(a, (size_t)(B * Lk * I) * sizeof(float), "decoder v", err) : NULL;
    float *O = V ? sb_arena_alloc_checked(a, (size_t)(B * Lq * I) * sizeof(float), "decoder attn", err) : NULL;
    if (!O)
        return err->code;
    sb_linear(ctx, q_in, B * Lq, C, aw->q_w, aw->q_b, I, Q);
    sb_linear(ctx, k_in, B * Lk, C, aw->k_w, aw->k_b, I, K);
    sb_linear(ctx, v_in, B * Lk, C, aw->v_w, aw->v_b, I, V);
    sb_attn_args at;
    sb_attn_args_packed(&at, B, heads, Lq, Lk, hd, Q, K, V, O);
    int rc = sb_attention(ctx, &at, a, err);
    if (rc == SB_OK) {
        sb_linear(ctx, O, B * Lq, I, aw->o_w, aw->o_b, C, out);
        sb_modprof_flops(mp, sb_flops_linear(B * Lq, C, I) + 2 * sb_flops_linear(B * Lk, C, I) +
                                 4.0 * (double)B * (double)Lq * (double)Lk * (double)I +
                                 sb_flops_linear(B * Lq, I, C));
    }
    sb_arena_reset(a, mark);
    return rc;
}

/* x[B, L, C] = a[B, L, C] + pe (pe [L, C] broadcast over B when pe_batched == 0). */
static void add_pe(float *x, const float *a, const float *pe, int64_t B, int64_t L, int64_t C, int pe_batched)
{
    for (int64_t b = 0; b < B; b++) {
        const float *p = pe_batched ? pe + b * L * C : pe;
        const float *s = a + b * L * C;
        float *d = x + b * L * C;
        for (int64_t i = 0; i < L * C; i++)
            d[i] = s[i] + p[i];
    }
}

/* Small MLP with ReLU between layers on rows: x[M, in] -> y[M, out]. */
static void mlp_rows(sb_ctx *ctx, const float *x, int64_t M, int nl, const float *const *W,
                     const float *const *b, const int *dims, float *tmp1, float *tmp2, float *y,
                     sb_modprof *mp)
{
    const float *in = x;
    for (int k = 0; k < nl; k++) {
        float *o = k == nl - 1 ? y : (k % 2 ? tmp2 : tmp1);
        sb_linear(ctx, in, M, dims[k], W[k], b[k], dims[k + 1], o);
        sb_modprof_flops(mp, sb_flops_linear(M, dims[k], dims[k + 1]));
        if (k < nl - 1)
            sb_relu(ctx, o, M * dims[k + 1]);
        in = o;
    }
}

int sb_mask_decoder_forward(const sb_mask_decoder *d, sb_ctx *ctx, sb_mask_decoder_io *io,
                            sb_arena *a, sb_modprof *mp, sb_dump_fn dump, void *dump_arg,
                            sb_error *err)
{
    const sb_mask_decoder_params *p = &d->p;
    int64_t B = io->B, C = p->transformer_dim, h = io->h, w = io->w, HW = h * w;
    int64_t Nt = d->n_out_tokens + io->n_sparse, NM = d->n_mask_tokens;
    int s = p->pred_obj_scores ? 1 : 0;
    size_t mark = sb_arena_mark(a);
    int rc = SB_OK;
#define ALLOC(ptr, n, what)                                                                    \
    do {                                                                                       \
        if (!((ptr) = sb_arena_alloc_checked(a, (size_t)(n) * sizeof(float), what, err))) {    \
            rc = err->code;                                                                    \
            goto done;                                                                         \
        }                                                                                      \
    } while (0)
    float *tokens, *queries, *keys, *qpe_buf, *kpe_buf, *att, *mlp_h;
    ALLOC(tokens, B * Nt * C, "decoder tokens");
    ALLOC(queries, B * Nt * C, "decoder queries");
    ALLOC(keys, B * HW * C, "decoder keys");
    ALLOC(qpe_buf, B * Nt * C, "decoder q+pe");
    ALLOC(kpe_buf, B * HW * C, "decoder k+pe");
    ALLOC(att, B * HW * C, "decoder attention out");
    ALLOC(mlp_h, B * Nt * p->mlp_dim, "decoder mlp");

    sb_modprof_begin(mp, "mask_decoder");
    /* tokens = [obj_score?, iou, mask tokens, sparse] */
    for (int64_t b = 0; b < B; b++) {
        float *t = tokens + b * Nt * C;
        int64_t k = 0;
        if (s)
            memcpy(t + (k++) * C, d->obj_score_token, (size_t)C * sizeof(float));
        memcpy(t + (k++) * C, d->iou_token, (size_t)C * sizeof(float));
        memcpy(t + k * C, d->mask_tokens, (size_t)(NM * C) * sizeof(float));
        k += NM;
        if (io->n_sparse)
            memcpy(t + k * C, io->sparse + b * io->n_sparse * C, (size_t)(io->n_sparse * C) * sizeof(float));
    }
    memcpy(queries, tokens, (size_t)(B * Nt * C) * sizeof(float));
    /* src = image embedding + dense prompt (no_mask_embed broadcast) */
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < HW; i++) {
            const float *src = io->image_tok + (b * HW + i) * C;
            float *dst = keys + (b * HW + i) * C;
            for (int64_t c = 0; c < C; c++)
                dst[c] = src[c] + (io->dense ? io->dense[c] : 0.0f);
        }

    const float eps = 1e-5f; /* nn.LayerNorm default in the two-way transformer (MODEL.md 6.5) */
    for (int l = 0; l < p->depth; l++) {
        const sb_twoway_layer *L = &d->layer[l];
        /* self attention; layer 0 has no PE and no residual */
        if (l == 0) {
            if ((rc = dec_attention(&L->self_attn, p->heads, ctx, queries, queries, queries, B, Nt, Nt, C, att, a, mp, err)))
                goto done;
            memcpy(queries, att, (size_t)(B * Nt * C) * sizeof(float));
        } else {
            add_pe(qpe_buf, queries, tokens, B, Nt, C, 1);
            if ((rc = dec_attention(&L->self_attn, p->heads, ctx, qpe_buf, qpe_buf, queries, B, Nt, Nt, C, att, a, mp, err)))
                goto done;
            sb_add(ctx, queries, att, B * Nt * C);
        }
        sb_layernorm(ctx, queries, B * Nt, C, L->n1_w, L->n1_b, eps, queries);
        /* tokens -> image */
        add_pe(qpe_buf, queries, tokens, B, Nt, C, 1);
        add_pe(kpe_buf, keys, io->image_pe, B, HW, C, 0);
        if ((rc = dec_attention(&L->t2i, p->heads, ctx, qpe_buf, kpe_buf, keys, B, Nt, HW, C, att, a, mp, err)))
            goto done;
        sb_add(ctx, queries, att, B * Nt * C);
        sb_layernorm(ctx, queries, B * Nt, C, L->n2_w, L->n2_b, eps, queries);
        /* MLP (ReLU) */
        sb_linear(ctx, queries, B * Nt, C, L->mlp0_w, L->mlp0_b, p->mlp_dim, mlp_h);
        sb_relu(ctx, mlp_h, B * Nt * p->mlp_dim);
        sb_linear(ctx, mlp_h, B * Nt, p->mlp_dim, L->mlp1_w, L->mlp1_b, C, att);
        sb_modprof_flops(mp, 2 * sb_flops_linear(B * Nt, C, p->mlp_dim));
        sb_add(ctx, queries, att, B * Nt * C);
        sb_layernorm(ctx, queries, B * Nt, C, L->n3_w, L->n3_b, eps, queries);
        /* image -> tokens: q = keys + key_pe, k = queries + query_pe, v = queries */
        add_pe(qpe_buf, queries, tokens, B, Nt, C, 1);
        if ((rc = dec_attention(&L->i2t, p->heads, ctx, kpe_buf, qpe_buf, queries, B, HW, Nt, C, att, a, mp, err)))
            goto done;
        sb_add(ctx, keys, att, B * HW * C);
        sb_layernorm(ctx, keys, B * HW, C, L->n4_w, L->n4_b, eps, keys);
    }
    add_pe(qpe_buf, queries, tokens, B, Nt, C, 1);
    add_pe(kpe_buf, keys, io->image_pe, B, HW, C, 0);
    if ((rc = dec_attention(&d->final_attn, p->heads, ctx, qpe_buf, kpe_buf, keys, B, Nt, HW, C, att, a, mp, err)))
        goto done;
    sb_add(ctx, queries, att, B * Nt * C);
    sb_layernorm(ctx, queries, B * Nt, C, d->nf_w, d->nf_b, eps, queries);

    /* upscaling: keys -> NCHW [B,C,h,w] -> ConvT -> (+s1) LN2d GELU -> ConvT -> (+s0) GELU */
    {
        int64_t C4 = C / 4, C8 = C / 8, H2 = 2 * h, W2 = 2 * w, H4 = 4 * h, W4 = 4 * w;
        float *src_nchw, *u1, *u2, *hyper, *tok_i, *t1, *t2;
        ALLOC(src_nchw, B * C * HW, "decoder src");
        ALLOC(u1, B * C4 * H2 * W2, "decoder upscale 1");
        ALLOC(u2, B * C8 * H4 * W4, "decoder upscale 2");
        sb_tok_to_nchw(keys, B, HW, C, src_nchw);
        if ((rc = sb_conv_transpose2x2(ctx, src_nchw, B, C, h, w, d->up0_w, d->up0_b, C4, u1, a, err)))
            goto done;
        sb_modprof_flops(mp, 2.0 * (double)(B * HW) * (double)C * (double)C4 * 4.0);
        if (p->use_high_res_features)
            sb_add(ctx, u1, io->feat_s1, B * C4 * H2 * W2);
        sb_layernorm2d(ctx, u1, B, C4, H2 * W2, d->up_ln_w, d->up_ln_b, 1e-6f, u1);
        sb_gelu(ctx, u1, B * C4 * H2 * W2);
        if ((rc = sb_conv_transpose2x2(ctx, u1, B, C4, H2, W2, d->up3_w, d->up3_b, C8, u2, a, err)))
            goto done;
        sb_modprof_flops(mp, 2.0 * (double)(B * H2 * W2) * (double)C4 * (double)C8 * 4.0);
        if (p->use_high_res_features)
            sb_add(ctx, u2, io->feat_s0, B * C8 * H4 * W4);
        sb_gelu(ctx, u2, B * C8 * H4 * W4);

        /* hypernetwork MLPs on the mask tokens, then masks = hyper @ u2 */
        int hmax = C > p->iou_head_hidden ? C : p->iou_head_hidden;
        ALLOC(hyper, B * NM * C8, "decoder hyper");
        ALLOC(tok_i, B * C, "decoder token");
        ALLOC(t1, B * hmax, "decoder head tmp");
        ALLOC(t2, B * hmax, "decoder head tmp");
        float *hy_i;
        ALLOC(hy_i, B * C8, "decoder hyper tmp");
        for (int64_t i = 0; i < NM; i++) {
            for (int64_t b = 0; b < B; b++)
                memcpy(tok_i + b * C, queries + (b * Nt + s + 1 + i) * C, (size_t)C * sizeof(float));
            int dims[4] = {(int)C, (int)C, (int)C, (int)C8};
            mlp_rows(ctx, tok_i, B, 3, d->hyper_w[i], d->hyper_b[i], dims, t1, t2, hy_i, mp);
            for (int64_t b = 0; b < B; b++)
                memcpy(hyper + (b * NM + i) * C8, hy_i + b * C8, (size_t)C8 * sizeof(float));
        }
        for (int64_t b = 0; b < B; b++)
            sb_gemm(0, 0, NM, H4 * W4, C8, 1.0f, hyper + b * NM * C8, C8, u2 + b * C8 * H4 * W4, H4 * W4, 0.0f,
                    io->all_masks + b * NM * H4 * W4, H4 * W4);
        sb_modprof_flops(mp, 2.0 * (double)B * (double)NM * (double)(H4 * W4) * (double)C8);

        /* IoU head (sigmoid for SAM2) */
        for (int64_t b = 0; b < B; b++)
            memcpy(tok_i + b * C, queries + (b * Nt + s) * C, (size_t)C * sizeof(float));
        {
            int dims[10];
            for (int k = 0; k <= p->iou_head_depth; k++)
                dims[k] = k == 0 ? (int)C : (k == p->iou_head_depth ? (int)NM : p->iou_head_hidden);
            mlp_rows(ctx, tok_i, B, p->iou_head_depth, d->iou_w, d->iou_b, dims, t1, t2, io->all_iou, mp);
            if (p->iou_sigmoid)
                sb_sigmoid(ctx, io->all_iou, B * NM);
        }
        /* object score (no effect on these flows' outputs; dumped for parity) */
        if (p->pred_obj_scores && io->obj_score) {
            for (int64_t b = 0; b < B; b++)
                memcpy(tok_i + b * C, queries + (b * Nt) * C, (size_t)C * sizeof(float));
            int dims[4] = {(int)C, (int)C, (int)C, 1};
            if (d->obj_layers == 1)
                dims[1] = 1;
            mlp_rows(ctx, tok_i, B, d->obj_layers, d->obj_w, d->obj_b, dims, t1, t2, io->obj_score, mp);
        }
        if (dump) {
            float *mt;
            ALLOC(mt, B * NM * C, "dump");
            for (int64_t b = 0; b < B; b++)
                memcpy(mt + b * NM * C, queries + (b * Nt + s + 1) * C, (size_t)(NM * C) * sizeof(float));
            sb_dump3(dump, dump_arg, "mask_decoder/all_mask_tokens_out", mt, B, NM, C);
            sb_dump4(dump, dump_arg, "mask_decoder/all_masks", io->all_masks, B, NM, H4, W4);
            sb_dump2(dump, dump_arg, "mask_decoder/all_iou", io->all_iou, B, NM);
            if (p->pred_obj_scores && io->obj_score)
                sb_dump2(dump, dump_arg, "mask_decoder/object_score_logits", io->obj_score, B, 1);
        }

        /* selection (multimask_output=False) */
        int64_t P = H4 * W4;
        for (int64_t b = 0; b < B; b++) {
            const float *m0 = io->all_masks + b * NM * P;
            int64_t pick = 0;
            if (p->dynamic_multimask && NM > 1) {
                /* stability of token 0 (MODEL.md 2.4): counts of logits > +-delta, compared in float32 */
                int64_t ai = 0, au = 0;
                float dl = p->stability_delta;
                for (int64_t i = 0; i < P; i++) {
                    ai += m0[i] > dl;
                    au += m0[i] > -dl;
                }
                float stab = au > 0 ? (float)ai / (float)au : 1.0f;
                if (!(stab >= p->stability_thresh)) {
                    const float *iu = io->all_iou + b * NM;
                    int64_t best = 1;
                    for (int64_t j = 2; j < NM; j++)
                        if (iu[j] > iu[best])
                            best = j;
                    pick = best;
                }
            }
            memcpy(io->low_res + b * P, io->all_masks + (b * NM + pick) * P, (size_t)P * sizeof(float));
            io->iou[b] = io->all_iou[b * NM + pick];
        }
        sb_dump4(dump, dump_arg, "mask_decoder/low_res_masks", io->low_res, B, 1, H4, W4);
        sb_dump2(dump, dump_arg, "mask_decoder/iou_pred", io->iou, B, 1);
    }
done:
#undef ALLOC
    sb_modprof_end(mp);
    sb_arena_reset(a, mark);
    return rc;
}
