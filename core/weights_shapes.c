/*
 * Key/shape tables derived from a model config, in state-dict order: what
 * the reference constructors register for any hyper-parameters (so reduced
 * configs such as the test fixtures get exact tables, and the official
 * configs reproduce the embedded KEYS tables; tests check both).
 *  - SAM2 family (SAM2Base: hieradet / hieradet_sam2 Hiera trunk, FpnNeck,
 *    memory attention, memory encoder, SAM prompt encoder and mask decoder
 *    heads, obj_ptr_proj) from sb_sam2_config;
 *  - SAM v1 (ImageEncoderViT, PromptEncoder, MaskDecoder) from sb_vit_config.
 */
#include "weights_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sb_key_shape *t;
    size_t n, cap;
    int failed;
} ktab;

static void add(ktab *k, int nd, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add(ktab *k, int nd, const int64_t *shape, const char *fmt, ...)
{
    if (k->failed)
        return;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 256;
        sb_key_shape *t = realloc(k->t, cap * sizeof *t);
        if (!t) {
            k->failed = 1;
            return;
        }
        k->t = t;
        k->cap = cap;
    }
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sb_key_shape *e = &k->t[k->n];
    memset(e, 0, sizeof *e);
    e->key = strdup(buf);
    if (!e->key) {
        k->failed = 1;
        return;
    }
    e->ndim = nd;
    for (int d = 0; d < nd; d++)
        e->shape[d] = shape[d];
    k->n++;
}

#define S(...) ((const int64_t[]){__VA_ARGS__})
/* weight [out, in] + bias [out] of a Linear under prefix */
static void linear(ktab *k, const char *p, int64_t out, int64_t in)
{
    add(k, 2, S(out, in), "%s.weight", p);
    add(k, 1, S(out), "%s.bias", p);
}
static void norm(ktab *k, const char *p, int64_t c)
{
    add(k, 1, S(c), "%s.weight", p);
    add(k, 1, S(c), "%s.bias", p);
}
static void conv(ktab *k, const char *p, int64_t out, int64_t in, int64_t kh, int64_t kw)
{
    add(k, 4, S(out, in, kh, kw), "%s.weight", p);
    add(k, 1, S(out), "%s.bias", p);
}
/* sam2 / segment_anything Attention: q,k,v,out projections with downsampling */
static void attention(ktab *k, const char *p, int64_t dim, int64_t internal, int64_t kv_in)
{
    char b[256];
    snprintf(b, sizeof b, "%s.q_proj", p);
    linear(k, b, internal, dim);
    snprintf(b, sizeof b, "%s.k_proj", p);
    linear(k, b, internal, kv_in);
    snprintf(b, sizeof b, "%s.v_proj", p);
    linear(k, b, internal, kv_in);
    snprintf(b, sizeof b, "%s.out_proj", p);
    linear(k, b, dim, internal);
}
/* MLP(in, hidden, out, layers) as sam2's MLP: layers.i */
static void mlp(ktab *k, const char *p, int64_t in, int64_t hidden, int64_t out, int layers, const char *l0,
                const char *l1)
{
    char b[256];
    for (int i = 0; i < layers; i++) {
        int64_t a = i == 0 ? in : hidden, z = i == layers - 1 ? out : hidden;
        if (l0)
            snprintf(b, sizeof b, "%s.%s", p, i == 0 ? l0 : l1);
        else
            snprintf(b, sizeof b, "%s.layers.%d", p, i);
        linear(k, b, z, a);
    }
}

/* TwoWayTransformer + the decoder heads (shared by SAM2 and SAM v1). */
static void two_way(ktab *k, const char *p, int64_t D, int depth, int64_t mlp_dim, int v1)
{
    char b[256];
    for (int l = 0; l < depth; l++) {
        snprintf(b, sizeof b, "%s.transformer.layers.%d.self_attn", p, l);
        attention(k, b, D, D, D);
        snprintf(b, sizeof b, "%s.transformer.layers.%d.norm1", p, l);
        norm(k, b, D);
        snprintf(b, sizeof b, "%s.transformer.layers.%d.cross_attn_token_to_image", p, l);
        attention(k, b, D, D / 2, D);
        snprintf(b, sizeof b, "%s.transformer.layers.%d.norm2", p, l);
        norm(k, b, D);
        snprintf(b, sizeof b, "%s.transformer.layers.%d.mlp", p, l);
        if (v1)
            mlp(k, b, D, mlp_dim, D, 2, "lin1", "lin2");
        else
            mlp(k, b, D, mlp_dim, D, 2, NULL, NULL);
        snprintf(b, sizeof b, "%s.transformer.layers.%d.norm3", p, l);
        norm(k, b, D);
        snprintf(b, sizeof b, "%s.transformer.layers.%d.norm4", p, l);
        norm(k, b, D);
        snprintf(b, sizeof b, "%s.transformer.layers.%d.cross_attn_image_to_token", p, l);
        attention(k, b, D, D / 2, D);
    }
    snprintf(b, sizeof b, "%s.transformer.final_attn_token_to_image", p);
    attention(k, b, D, D / 2, D);
    snprintf(b, sizeof b, "%s.transformer.norm_final_attn", p);
    norm(k, b, D);
}

static void decoder_heads(ktab *k, const char *p, int64_t D, int n_mask_tokens, int iou_depth, int64_t iou_hidden,
                          int sam2)
{
    char b[256];
    add(k, 2, S(1, D), "%s.iou_token.weight", p);
    add(k, 2, S(n_mask_tokens, D), "%s.mask_tokens.weight", p);
    if (sam2)
        add(k, 2, S(1, D), "%s.obj_score_token.weight", p);
    add(k, 4, S(D, D / 4, 2, 2), "%s.output_upscaling.0.weight", p);
    add(k, 1, S(D / 4), "%s.output_upscaling.0.bias", p);
    snprintf(b, sizeof b, "%s.output_upscaling.1", p);
    norm(k, b, D / 4);
    add(k, 4, S(D / 4, D / 8, 2, 2), "%s.output_upscaling.3.weight", p);
    add(k, 1, S(D / 8), "%s.output_upscaling.3.bias", p);
    if (sam2) {
        snprintf(b, sizeof b, "%s.conv_s0", p);
        conv(k, b, D / 8, D, 1, 1);
        snprintf(b, sizeof b, "%s.conv_s1", p);
        conv(k, b, D / 4, D, 1, 1);
    }
    for (int i = 0; i < n_mask_tokens; i++) {
        snprintf(b, sizeof b, "%s.output_hypernetworks_mlps.%d", p, i);
        mlp(k, b, D, D, D / 8, 3, NULL, NULL);
    }
    snprintf(b, sizeof b, "%s.iou_prediction_head", p);
    mlp(k, b, D, iou_hidden, n_mask_tokens, iou_depth, NULL, NULL);
    if (sam2) {
        snprintf(b, sizeof b, "%s.pred_obj_score_head", p);
        mlp(k, b, D, D, 1, 3, NULL, NULL);
    }
}

static void prompt_encoder(ktab *k, const char *p, int64_t D, int64_t mask_in)
{
    char b[256];
    add(k, 2, S(2, D / 2), "%s.pe_layer.positional_encoding_gaussian_matrix", p);
    for (int i = 0; i < 4; i++)
        add(k, 2, S(1, D), "%s.point_embeddings.%d.weight", p, i);
    add(k, 2, S(1, D), "%s.not_a_point_embed.weight", p);
    snprintf(b, sizeof b, "%s.mask_downscaling.0", p);
    conv(k, b, mask_in / 4, 1, 2, 2);
    snprintf(b, sizeof b, "%s.mask_downscaling.1", p);
    norm(k, b, mask_in / 4);
    snprintf(b, sizeof b, "%s.mask_downscaling.3", p);
    conv(k, b, mask_in, mask_in / 4, 2, 2);
    snprintf(b, sizeof b, "%s.mask_downscaling.4", p);
    norm(k, b, mask_in);
    snprintf(b, sizeof b, "%s.mask_downscaling.6", p);
    conv(k, b, D, mask_in, 1, 1);
    add(k, 2, S(1, D), "%s.no_mask_embed.weight", p);
}

static int sam2_table(ktab *k, const sb_sam2_config *c)
{
    int64_t D = c->d_model, Dm = c->mem_enc_out_dim;
    char b[256];
    add(k, 4, S(c->num_maskmem, 1, 1, Dm), "maskmem_tpos_enc");
    add(k, 3, S(1, 1, D), "no_mem_embed");
    add(k, 3, S(1, 1, D), "no_mem_pos_enc");
    add(k, 2, S(1, D), "no_obj_ptr");
    /* trunk */
    int64_t C0 = c->embed_dim;
    add(k, 4, S(1, C0, c->pos_bkg_h, c->pos_bkg_w), "image_encoder.trunk.pos_embed");
    add(k, 4, S(1, C0, c->window_spec[0], c->window_spec[0]), "image_encoder.trunk.pos_embed_window");
    conv(k, "image_encoder.trunk.patch_embed.proj", C0, 3, 7, 7);
    int blk = 0;
    int64_t dim = C0;
    for (int s = 0; s < c->n_stages; s++)
        for (int j = 0; j < c->stages[s]; j++, blk++) {
            int64_t dim_out = dim;
            int transition = s > 0 && j == 0;
            if (transition)
                dim_out = (int64_t)(dim * c->dim_mul + 0.5);
            char p[160];
            snprintf(p, sizeof p, "image_encoder.trunk.blocks.%d", blk);
            snprintf(b, sizeof b, "%s.norm1", p);
            norm(k, b, dim);
            snprintf(b, sizeof b, "%s.attn.qkv", p);
            linear(k, b, 3 * dim_out, dim);
            snprintf(b, sizeof b, "%s.attn.proj", p);
            linear(k, b, dim_out, dim_out);
            if (c->trunk_kind == SB_TRUNK_HIERA_ADAPTER) {
                int64_t a = c->adapter_channels;
                snprintf(b, sizeof b, "%s.adapter.norm", p);
                norm(k, b, dim_out);
                snprintf(b, sizeof b, "%s.adapter.linear_down", p);
                linear(k, b, a, dim_out);
                add(k, 5, S(a, a, 3, 3, 3), "%s.adapter.conv.weight", p);
                add(k, 1, S(a), "%s.adapter.conv.bias", p);
                snprintf(b, sizeof b, "%s.adapter.linear_up", p);
                linear(k, b, dim_out, a);
            }
            snprintf(b, sizeof b, "%s.norm2", p);
            norm(k, b, dim_out);
            int64_t hid = (int64_t)(dim_out * c->mlp_ratio + 0.5);
            snprintf(b, sizeof b, "%s.mlp", p);
            mlp(k, b, dim_out, hid, dim_out, 2, NULL, NULL);
            if (transition) {
                snprintf(b, sizeof b, "%s.proj", p);
                linear(k, b, dim_out, dim);
            }
            if (c->trunk_kind == SB_TRUNK_HIERA_ADAPTER) {
                add(k, 2, S(3 * dim_out, dim_out), "%s.fancy_fusion.cross_attn.in_proj_weight", p);
                add(k, 1, S(3 * dim_out), "%s.fancy_fusion.cross_attn.in_proj_bias", p);
                snprintf(b, sizeof b, "%s.fancy_fusion.cross_attn.out_proj", p);
                linear(k, b, dim_out, dim_out);
                snprintf(b, sizeof b, "%s.fancy_fusion.norm", p);
                norm(k, b, dim_out);
            }
            dim = dim_out;
        }
    for (int l = 0; l < c->n_levels; l++) {
        snprintf(b, sizeof b, "image_encoder.neck.convs.%d.conv", l);
        conv(k, b, D, c->backbone_channel_list[l], 1, 1);
    }
    conv(k, "mask_downsample", 1, 1, 4, 4);
    /* memory attention */
    int64_t Da = c->mem_attn_d_model;
    for (int l = 0; l < c->mem_attn_layers; l++) {
        snprintf(b, sizeof b, "memory_attention.layers.%d.self_attn", l);
        attention(k, b, Da, Da, Da);
        snprintf(b, sizeof b, "memory_attention.layers.%d.cross_attn_image", l);
        attention(k, b, Da, Da, c->mem_attn_kv_in_dim);
        snprintf(b, sizeof b, "memory_attention.layers.%d.linear1", l);
        linear(k, b, c->mem_attn_ffn, Da);
        snprintf(b, sizeof b, "memory_attention.layers.%d.linear2", l);
        linear(k, b, Da, c->mem_attn_ffn);
        for (int n = 1; n <= 3; n++) {
            snprintf(b, sizeof b, "memory_attention.layers.%d.norm%d", l, n);
            norm(k, b, Da);
        }
    }
    norm(k, "memory_attention.norm", Da);
    /* memory encoder: mask downsampler (conv, LN2d, GELU) x log_stride(total), then 1x1 */
    int64_t cin = 1, idx = 0;
    int s_tot = c->mem_ds_total_stride, st = c->mem_ds_stride > 1 ? c->mem_ds_stride : 2;
    int layers = 0;
    for (int t = 1; t < s_tot; t *= st)
        layers++;
    for (int i = 0; i < layers; i++) {
        int64_t cout = cin * st * st;
        snprintf(b, sizeof b, "memory_encoder.mask_downsampler.encoder.%lld", (long long)idx);
        conv(k, b, cout, cin, c->mem_ds_kernel, c->mem_ds_kernel);
        snprintf(b, sizeof b, "memory_encoder.mask_downsampler.encoder.%lld", (long long)idx + 1);
        norm(k, b, cout);
        idx += 3;
        cin = cout;
    }
    snprintf(b, sizeof b, "memory_encoder.mask_downsampler.encoder.%lld", (long long)idx);
    conv(k, b, c->mem_ds_embed_dim, cin, 1, 1);
    conv(k, "memory_encoder.pix_feat_proj", c->mem_enc_in_dim, c->mem_enc_in_dim, 1, 1);
    int64_t F = c->mem_fuser_dim;
    for (int l = 0; l < c->mem_fuser_layers; l++) {
        add(k, 1, S(F), "memory_encoder.fuser.layers.%d.gamma", l);
        add(k, 4, S(F, 1, c->mem_fuser_kernel, c->mem_fuser_kernel), "memory_encoder.fuser.layers.%d.dwconv.weight", l);
        add(k, 1, S(F), "memory_encoder.fuser.layers.%d.dwconv.bias", l);
        snprintf(b, sizeof b, "memory_encoder.fuser.layers.%d.norm", l);
        norm(k, b, F);
        snprintf(b, sizeof b, "memory_encoder.fuser.layers.%d.pwconv1", l);
        linear(k, b, 4 * F, F);
        snprintf(b, sizeof b, "memory_encoder.fuser.layers.%d.pwconv2", l);
        linear(k, b, F, 4 * F);
    }
    conv(k, "memory_encoder.out_proj", Dm, c->mem_enc_in_dim, 1, 1);
    /* heads */
    prompt_encoder(k, "sam_prompt_encoder", D, c->mask_in_chans);
    two_way(k, "sam_mask_decoder", D, c->decoder_depth, c->decoder_mlp_dim, 0);
    decoder_heads(k, "sam_mask_decoder", D, c->num_multimask_outputs + 1, c->iou_head_depth, c->iou_head_hidden_dim, 1);
    mlp(k, "obj_ptr_proj", D, D, D, 3, NULL, NULL);
    return k->failed ? -1 : 0;
}

static int vit_table(ktab *k, const sb_vit_config *c)
{
    int64_t E = c->embed_dim, D = c->out_chans, g = c->image_size / c->patch_size, hd = E / c->num_heads;
    char b[256];
    add(k, 4, S(1, g, g, E), "image_encoder.pos_embed");
    conv(k, "image_encoder.patch_embed.proj", E, 3, c->patch_size, c->patch_size);
    for (int i = 0; i < c->depth; i++) {
        int global = 0;
        for (int j = 0; j < c->n_global; j++)
            global |= c->global_idx[j] == i;
        int64_t r = 2 * (global ? g : c->window_size) - 1;
        snprintf(b, sizeof b, "image_encoder.blocks.%d.norm1", i);
        norm(k, b, E);
        add(k, 2, S(r, hd), "image_encoder.blocks.%d.attn.rel_pos_h", i);
        add(k, 2, S(r, hd), "image_encoder.blocks.%d.attn.rel_pos_w", i);
        snprintf(b, sizeof b, "image_encoder.blocks.%d.attn.qkv", i);
        linear(k, b, 3 * E, E);
        snprintf(b, sizeof b, "image_encoder.blocks.%d.attn.proj", i);
        linear(k, b, E, E);
        snprintf(b, sizeof b, "image_encoder.blocks.%d.norm2", i);
        norm(k, b, E);
        snprintf(b, sizeof b, "image_encoder.blocks.%d.mlp", i);
        mlp(k, b, E, c->mlp_dim, E, 2, "lin1", "lin2");
    }
    add(k, 4, S(D, E, 1, 1), "image_encoder.neck.0.weight");
    norm(k, "image_encoder.neck.1", D);
    add(k, 4, S(D, D, 3, 3), "image_encoder.neck.2.weight");
    norm(k, "image_encoder.neck.3", D);
    prompt_encoder(k, "prompt_encoder", D, c->mask_in_chans);
    two_way(k, "mask_decoder", D, c->decoder_depth, c->decoder_mlp_dim, 1);
    decoder_heads(k, "mask_decoder", D, 4, 3, c->iou_head_hidden_dim, 0);
    return k->failed ? -1 : 0;
}

void sb_key_table_free(sb_key_shape *t, size_t n)
{
    for (size_t i = 0; t && i < n; i++)
        free((char *)t[i].key);
    free(t);
}

int sb_key_table_from_config(const char *variant, const char *config, sb_key_shape **out, size_t *n, sb_error *err)
{
    *out = NULL;
    *n = 0;
    ktab k = {0};
    int rc;
    int is_vit = variant && strcmp(variant, "sam_vit_b") == 0;
    if (!sb_variant_known(variant))
        return sb_fail(err, SB_EINVAL, "unknown variant '%s' (known: %s)", variant ? variant : "(null)",
                       sb_variant_names());
    if (is_vit) {
        sb_vit_config c;
        sb_vit_config_vit_b(&c);
        if (config && (rc = sb_vit_config_load(&c, config, err)))
            return rc;
        if (c.num_heads <= 0 || c.patch_size <= 0 || c.depth < 0 || c.depth > SB_VIT_MAX_DEPTH)
            return sb_fail(err, SB_EFORMAT, "%s: inconsistent ViT config", config ? config : "vit_b");
        rc = vit_table(&k, &c);
    } else {
        sb_sam2_config c;
        int flow = strcmp(variant, "samed2") == 0 ? SB_FLOW_SAMED2
                   : strcmp(variant, "sam2_hiera_t") == 0 ? SB_FLOW_MEDSAM2 : SB_FLOW_SAM2;
        if (config)
            rc = sb_sam2_config_load(&c, config, err);
        else
            rc = sb_sam2_config_default(&c, flow, err);
        if (rc)
            return rc;
        if ((rc = sb_sam2_config_validate(&c, err)))
            return sb_error_prefix(err, "%s", config ? config : variant);
        if ((c.trunk_kind == SB_TRUNK_HIERA_ADAPTER) != (flow == SB_FLOW_SAMED2)) {
            return sb_fail(err, SB_EINVAL, "%s: the config's trunk (%s) does not match variant %s",
                           config ? config : variant,
                           c.trunk_kind == SB_TRUNK_HIERA_ADAPTER ? "hieradet with adapters (SAMed-2)" : "hieradet_sam2",
                           variant);
        }
        rc = sam2_table(&k, &c);
    }
    if (rc) {
        sb_key_table_free(k.t, k.n);
        return sb_fail(err, SB_ENOMEM, "out of memory");
    }
    *out = k.t;
    *n = k.n;
    return SB_OK;
}
