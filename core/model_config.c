/*
 * SAM2-family model configuration (MODEL.md 2.1): reads the official hydra
 * YAML files unchanged (a top-level `model:` mapping) and the fixture JSON
 * configs (`full_model_cfg_after_overrides`; JSON is YAML) with libyaml.
 * `_target_` names select the trunk; values a file leaves out take the
 * defaults of the constructors the reference calls (SAM2Base, Hiera,
 * FpnNeck, ...); the prompt encoder / mask decoder numbers are fixed by
 * SAM2Base._build_sam_heads and build_sam2's extra decoder arguments.
 */
#include "sambench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static const char *const flow_names[SB_FLOW_COUNT] = {"samed2", "sam2", "medsam2", "sam", "medsam"};

const char *sb_flow_name(int flow)
{
    return (flow >= 0 && flow < SB_FLOW_COUNT) ? flow_names[flow] : NULL;
}

int sb_flow_parse(const char *name)
{
    for (int i = 0; name && i < SB_FLOW_COUNT; i++)
        if (strcmp(name, flow_names[i]) == 0)
            return i;
    return -1;
}

/* ---- constructor defaults ------------------------------------------------ */
static void set_constructor_defaults(sb_sam2_config *c)
{
    memset(c, 0, sizeof *c);
    c->trunk_kind = SB_TRUNK_HIERA_SAM2;
    /* SAM2Base */
    c->image_size = 512;
    c->backbone_stride = 16;
    c->num_maskmem = 7;
    c->sigmoid_scale_for_mem_enc = 1.0;
    c->sigmoid_bias_for_mem_enc = 0.0;
    /* Hiera */
    c->embed_dim = 96;
    c->num_heads = 1;
    c->n_stages = 4;
    int st[4] = {2, 3, 16, 3}, ws[4] = {8, 4, 14, 7}, gb[3] = {12, 16, 20};
    memcpy(c->stages, st, sizeof st);
    memcpy(c->window_spec, ws, sizeof ws);
    c->n_global = 3;
    memcpy(c->global_att_blocks, gb, sizeof gb);
    c->pos_bkg_h = c->pos_bkg_w = 14;
    c->q_pool = 3;
    c->q_stride = 2;
    c->dim_mul = c->head_mul = 2.0;
    c->mlp_ratio = 4.0;
    c->adapter_channels = 32;
    c->adapter_d_size = 2;
    /* FpnNeck / ImageEncoder / PositionEmbeddingSine */
    c->d_model = 256;
    c->n_levels = 4;
    int bc[4] = {768, 384, 192, 96};
    memcpy(c->backbone_channel_list, bc, sizeof bc);
    c->n_top_down = -1; /* None = every level; resolved after parsing */
    c->fpn_interp_nearest = 0; /* "bilinear" */
    c->fuse_avg = 0;
    c->scalp = 0;
    c->pe_num_pos_feats = 256;
    c->pe_temperature = 10000.0;
    /* prompt encoder / mask decoder: fixed by SAM2Base._build_sam_heads */
    c->mask_in_chans = 16;
    c->num_multimask_outputs = 3;
    c->decoder_depth = 2;
    c->decoder_mlp_dim = 2048;
    c->decoder_num_heads = 8;
    c->iou_head_depth = 3;
    c->iou_head_hidden_dim = 256;
    /* build_sam2(apply_postprocessing=True) adds these (MODEL.md 1) */
    c->dynamic_multimask = 1;
    c->stability_delta = 0.05;
    c->stability_thresh = 0.98;
    /* memory attention / encoder constructor defaults */
    c->mem_attn_d_model = 256;
    c->mem_attn_layers = 4;
    c->mem_attn_ffn = 2048;
    c->mem_attn_heads = 1;
    c->mem_attn_kv_in_dim = 256;
    c->mem_attn_rope_theta = 10000.0;
    c->mem_attn_feat_h = c->mem_attn_feat_w = 32;
    c->mem_enc_out_dim = 256;
    c->mem_enc_in_dim = 256;
    c->mem_enc_pe_num_pos_feats = 64;
    c->mem_ds_kernel = 4;
    c->mem_ds_stride = 4;
    c->mem_ds_padding = 0;
    c->mem_ds_embed_dim = 256;
    c->mem_ds_total_stride = 16;
    c->mem_fuser_layers = 2;
    c->mem_fuser_dim = 256;
    c->mem_fuser_kernel = 7;
    c->mem_fuser_padding = 3;
}

int sb_sam2_config_default(sb_sam2_config *c, int flow, sb_error *err)
{
    if (flow != SB_FLOW_SAMED2 && flow != SB_FLOW_SAM2 && flow != SB_FLOW_MEDSAM2)
        return sb_fail(err, SB_EINVAL, "no SAM2 configuration for flow '%s'",
                       sb_flow_name(flow) ? sb_flow_name(flow) : "?");
    set_constructor_defaults(c);
    /* values the three official YAMLs set (MODEL.md 2.1) */
    c->trunk_kind = flow == SB_FLOW_SAMED2 ? SB_TRUNK_HIERA_ADAPTER : SB_TRUNK_HIERA_SAM2;
    c->image_size = 1024;
    c->embed_dim = 96;
    c->num_heads = 1;
    if (flow == SB_FLOW_MEDSAM2) {
        int st[4] = {1, 2, 7, 2}, gb[3] = {5, 7, 9};
        memcpy(c->stages, st, sizeof st);
        memcpy(c->global_att_blocks, gb, sizeof gb);
    } else {
        int st[4] = {1, 2, 11, 2}, gb[3] = {7, 10, 13};
        memcpy(c->stages, st, sizeof st);
        memcpy(c->global_att_blocks, gb, sizeof gb);
    }
    c->n_global = 3;
    c->pos_bkg_h = c->pos_bkg_w = 7;
    c->scalp = 1;
    c->n_top_down = 2;
    c->fpn_top_down_levels[0] = 2;
    c->fpn_top_down_levels[1] = 3;
    c->fpn_interp_nearest = 1;
    c->num_maskmem = 7;
    c->sigmoid_scale_for_mem_enc = 20.0;
    c->sigmoid_bias_for_mem_enc = -10.0;
    c->directly_add_no_mem_embed = 1;
    c->use_high_res_features = 1;
    c->iou_prediction_use_sigmoid = 1;
    c->pred_obj_scores = 1;
    c->pred_obj_scores_mlp = 1;
    c->mem_attn_kv_in_dim = 64;
    c->mem_enc_out_dim = 64;
    c->mem_ds_kernel = 3;
    c->mem_ds_stride = 2;
    c->mem_ds_padding = 1;
    return sb_sam2_config_validate(c, err);
}

/* ---- YAML document helpers ------------------------------------------------ */
typedef struct {
    yaml_document_t *doc;
    const char *path;
    sb_error *err;
} ydoc;

static yaml_node_t *ynode(ydoc *d, int id) { return yaml_document_get_node(d->doc, id); }

static yaml_node_t *ymap_get(ydoc *d, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = ynode(d, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return ynode(d, p->value);
    }
    return NULL;
}

static const char *yscalar(yaml_node_t *n)
{
    return (n && n->type == YAML_SCALAR_NODE) ? (const char *)n->data.scalar.value : NULL;
}

static int is_null_scalar(const char *s)
{
    return !s || !*s || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0 ||
           strcmp(s, "~") == 0;
}

/* Reads a number at map[key] if present. */
static int get_num(ydoc *d, yaml_node_t *map, const char *ctx, const char *key, double *out, int *found)
{
    if (found)
        *found = 0;
    yaml_node_t *n = ymap_get(d, map, key);
    if (!n)
        return SB_OK;
    const char *s = yscalar(n);
    if (!s)
        return sb_fail(d->err, SB_EFORMAT, "%s: %s.%s must be a number", d->path, ctx, key);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v))
        return sb_fail(d->err, SB_EFORMAT, "%s: %s.%s = '%s' is not a number", d->path, ctx, key, s);
    *out = v;
    if (found)
        *found = 1;
    return SB_OK;
}

static int get_int(ydoc *d, yaml_node_t *map, const char *ctx, const char *key, int *out)
{
    double v;
    int found;
    int rc = get_num(d, map, ctx, key, &v, &found);
    if (rc)
        return rc;
    if (!found)
        return SB_OK;
    if (v != floor(v) || fabs(v) > 1e9)
        return sb_fail(d->err, SB_EFORMAT, "%s: %s.%s = %g must be an integer", d->path, ctx, key, v);
    *out = (int)v;
    return SB_OK;
}

static int get_bool(ydoc *d, yaml_node_t *map, const char *ctx, const char *key, int *out)
{
    yaml_node_t *n = ymap_get(d, map, key);
    if (!n)
        return SB_OK;
    const char *s = yscalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE") || !strcmp(s, "yes") ||
              !strcmp(s, "on") || !strcmp(s, "1"))) {
        *out = 1;
        return SB_OK;
    }
    if (s && (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE") || !strcmp(s, "no") ||
              !strcmp(s, "off") || !strcmp(s, "0"))) {
        *out = 0;
        return SB_OK;
    }
    return sb_fail(d->err, SB_EFORMAT, "%s: %s.%s = '%s' is not a boolean", d->path, ctx, key,
                   s ? s : "(not a scalar)");
}

/* Integer list; *n = -1 untouched if absent; "null" gives *n = -2. */
static int get_int_list(ydoc *d, yaml_node_t *map, const char *ctx, const char *key, int *vals,
                        int cap, int *n)
{
    yaml_node_t *node = ymap_get(d, map, key);
    if (!node)
        return SB_OK;
    if (node->type == YAML_SCALAR_NODE && is_null_scalar(yscalar(node))) {
        *n = -2;
        return SB_OK;
    }
    if (node->type != YAML_SEQUENCE_NODE)
        return sb_fail(d->err, SB_EFORMAT, "%s: %s.%s must be a list of integers", d->path, ctx, key);
    int cnt = 0;
    for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++) {
        const char *s = yscalar(ynode(d, *it));
        char *end = NULL;
        long v = s ? strtol(s, &end, 10) : 0;
        if (!s || end == s || *end != '\0')
            return sb_fail(d->err, SB_EFORMAT, "%s: %s.%s has a non-integer element", d->path, ctx, key);
        if (cnt >= cap)
            return sb_fail(d->err, SB_EFORMAT, "%s: %s.%s has more than %d elements", d->path, ctx, key, cap);
        vals[cnt++] = (int)v;
    }
    *n = cnt;
    return SB_OK;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const char *target_of(ydoc *d, yaml_node_t *map) { return yscalar(ymap_get(d, map, "_target_")); }

/* ---- the parser ------------------------------------------------------------ */
static int parse_trunk(ydoc *d, yaml_node_t *t, sb_sam2_config *c)
{
    const char *ctx = "model.image_encoder.trunk";
    if (!t || t->type != YAML_MAPPING_NODE)
        return sb_fail(d->err, SB_EKEY, "%s: missing mapping %s", d->path, ctx);
    const char *tg = target_of(d, t);
    if (!tg)
        return sb_fail(d->err, SB_EKEY, "%s: %s has no _target_", d->path, ctx);
    if (ends_with(tg, "hieradet_sam2.Hiera"))
        c->trunk_kind = SB_TRUNK_HIERA_SAM2;
    else if (ends_with(tg, "hieradet.Hiera"))
        c->trunk_kind = SB_TRUNK_HIERA_ADAPTER;
    else
        return sb_fail(d->err, SB_EUNSUPPORTED,
                       "%s: trunk _target_ '%s' is not supported (expected ...hieradet_sam2.Hiera or ...hieradet.Hiera)",
                       d->path, tg);
    int rc, n;
    if ((rc = get_int(d, t, ctx, "embed_dim", &c->embed_dim)) || (rc = get_int(d, t, ctx, "num_heads", &c->num_heads)) ||
        (rc = get_int(d, t, ctx, "q_pool", &c->q_pool)) ||
        (rc = get_num(d, t, ctx, "dim_mul", &c->dim_mul, NULL)) ||
        (rc = get_num(d, t, ctx, "head_mul", &c->head_mul, NULL)) ||
        (rc = get_num(d, t, ctx, "mlp_ratio", &c->mlp_ratio, NULL)) ||
        (rc = get_int(d, t, ctx, "adapter_channels", &c->adapter_channels)) ||
        (rc = get_int(d, t, ctx, "d_size", &c->adapter_d_size)))
        return rc;
    n = -1;
    int tmp[SB_CFG_MAX_BLOCKS];
    if ((rc = get_int_list(d, t, ctx, "stages", tmp, SB_CFG_MAX_STAGES, &n)))
        return rc;
    if (n >= 0) {
        c->n_stages = n;
        memcpy(c->stages, tmp, (size_t)n * sizeof(int));
    } else if (n == -2)
        return sb_fail(d->err, SB_EFORMAT, "%s: %s.stages must not be null", d->path, ctx);
    n = -1;
    if ((rc = get_int_list(d, t, ctx, "window_spec", tmp, SB_CFG_MAX_STAGES, &n)))
        return rc;
    if (n >= 0) {
        if (n != c->n_stages)
            return sb_fail(d->err, SB_EFORMAT, "%s: %s.window_spec has %d entries but stages has %d",
                           d->path, ctx, n, c->n_stages);
        memcpy(c->window_spec, tmp, (size_t)n * sizeof(int));
    }
    n = -1;
    if ((rc = get_int_list(d, t, ctx, "global_att_blocks", tmp, SB_CFG_MAX_BLOCKS, &n)))
        return rc;
    if (n >= 0) {
        c->n_global = n;
        memcpy(c->global_att_blocks, tmp, (size_t)n * sizeof(int));
    } else if (n == -2)
        c->n_global = 0;
    n = -1;
    if ((rc = get_int_list(d, t, ctx, "window_pos_embed_bkg_spatial_size", tmp, 2, &n)))
        return rc;
    if (n >= 0) {
        if (n != 2)
            return sb_fail(d->err, SB_EFORMAT, "%s: %s.window_pos_embed_bkg_spatial_size needs 2 values",
                           d->path, ctx);
        c->pos_bkg_h = tmp[0];
        c->pos_bkg_w = tmp[1];
    }
    n = -1;
    if ((rc = get_int_list(d, t, ctx, "q_stride", tmp, 2, &n)))
        return rc;
    if (n >= 0) {
        if (n != 2 || tmp[0] != tmp[1] || tmp[0] != 2)
            return sb_fail(d->err, SB_EUNSUPPORTED, "%s: %s.q_stride: only (2, 2) is supported", d->path, ctx);
        c->q_stride = 2;
    }
    int interm = 1;
    if ((rc = get_bool(d, t, ctx, "return_interm_layers", &interm)))
        return rc;
    if (!interm)
        return sb_fail(d->err, SB_EUNSUPPORTED, "%s: %s.return_interm_layers false is not supported", d->path, ctx);
    return SB_OK;
}

static int parse_neck(ydoc *d, yaml_node_t *nk, sb_sam2_config *c)
{
    const char *ctx = "model.image_encoder.neck";
    if (!nk || nk->type != YAML_MAPPING_NODE)
        return sb_fail(d->err, SB_EKEY, "%s: missing mapping %s", d->path, ctx);
    const char *tg = target_of(d, nk);
    if (tg && !ends_with(tg, "FpnNeck"))
        return sb_fail(d->err, SB_EUNSUPPORTED, "%s: neck _target_ '%s' is not supported", d->path, tg);
    int rc, n = -1, tmp[SB_CFG_MAX_LEVELS];
    if ((rc = get_int(d, nk, ctx, "d_model", &c->d_model)))
        return rc;
    if ((rc = get_int_list(d, nk, ctx, "backbone_channel_list", tmp, SB_CFG_MAX_LEVELS, &n)))
        return rc;
    if (n >= 0) {
        c->n_levels = n;
        memcpy(c->backbone_channel_list, tmp, (size_t)n * sizeof(int));
    }
    n = -1;
    if ((rc = get_int_list(d, nk, ctx, "fpn_top_down_levels", tmp, SB_CFG_MAX_LEVELS, &n)))
        return rc;
    if (n >= 0) {
        c->n_top_down = n;
        memcpy(c->fpn_top_down_levels, tmp, (size_t)n * sizeof(int));
    } else if (n == -2)
        c->n_top_down = -1;
    const char *interp = yscalar(ymap_get(d, nk, "fpn_interp_model"));
    if (interp) {
        if (!strcmp(interp, "nearest"))
            c->fpn_interp_nearest = 1;
        else if (!strcmp(interp, "bilinear"))
            c->fpn_interp_nearest = 0;
        else
            return sb_fail(d->err, SB_EUNSUPPORTED, "%s: %s.fpn_interp_model '%s' is not supported", d->path, ctx, interp);
    }
    const char *fuse = yscalar(ymap_get(d, nk, "fuse_type"));
    if (fuse) {
        if (!strcmp(fuse, "sum"))
            c->fuse_avg = 0;
        else if (!strcmp(fuse, "avg"))
            c->fuse_avg = 1;
        else
            return sb_fail(d->err, SB_EFORMAT, "%s: %s.fuse_type '%s' must be sum or avg", d->path, ctx, fuse);
    }
    int ks = 1, stride = 1, pad = 0;
    if ((rc = get_int(d, nk, ctx, "kernel_size", &ks)) || (rc = get_int(d, nk, ctx, "stride", &stride)) ||
        (rc = get_int(d, nk, ctx, "padding", &pad)))
        return rc;
    if (ks != 1 || stride != 1 || pad != 0)
        return sb_fail(d->err, SB_EUNSUPPORTED, "%s: %s: only 1x1 lateral convolutions are supported", d->path, ctx);
    yaml_node_t *pe = ymap_get(d, nk, "position_encoding");
    if (pe) {
        const char *pctx = "model.image_encoder.neck.position_encoding";
        int normalize = 1;
        if ((rc = get_int(d, pe, pctx, "num_pos_feats", &c->pe_num_pos_feats)) ||
            (rc = get_num(d, pe, pctx, "temperature", &c->pe_temperature, NULL)) ||
            (rc = get_bool(d, pe, pctx, "normalize", &normalize)))
            return rc;
        const char *sc = yscalar(ymap_get(d, pe, "scale"));
        if (!normalize || (sc && !is_null_scalar(sc)))
            return sb_fail(d->err, SB_EUNSUPPORTED, "%s: %s: only normalize=true with scale=null (2*pi) is supported",
                           d->path, pctx);
    }
    return SB_OK;
}

static int parse_memory(ydoc *d, yaml_node_t *root, sb_sam2_config *c)
{
    int rc;
    yaml_node_t *ma = ymap_get(d, root, "memory_attention");
    if (ma) {
        const char *ctx = "model.memory_attention";
        if ((rc = get_int(d, ma, ctx, "d_model", &c->mem_attn_d_model)) ||
            (rc = get_int(d, ma, ctx, "num_layers", &c->mem_attn_layers)))
            return rc;
        yaml_node_t *ly = ymap_get(d, ma, "layer");
        if (ly) {
            if ((rc = get_int(d, ly, "model.memory_attention.layer", "dim_feedforward", &c->mem_attn_ffn)))
                return rc;
            yaml_node_t *sa = ymap_get(d, ly, "self_attention");
            yaml_node_t *ca = ymap_get(d, ly, "cross_attention");
            int n = -1, fs[2];
            if (sa && ((rc = get_int(d, sa, "self_attention", "num_heads", &c->mem_attn_heads)) ||
                       (rc = get_num(d, sa, "self_attention", "rope_theta", &c->mem_attn_rope_theta, NULL)) ||
                       (rc = get_int_list(d, sa, "self_attention", "feat_sizes", fs, 2, &n))))
                return rc;
            if (n == 2) {
                c->mem_attn_feat_h = fs[0];
                c->mem_attn_feat_w = fs[1];
            }
            if (ca && (rc = get_int(d, ca, "cross_attention", "kv_in_dim", &c->mem_attn_kv_in_dim)))
                return rc;
        }
    }
    yaml_node_t *me = ymap_get(d, root, "memory_encoder");
    if (me) {
        const char *ctx = "model.memory_encoder";
        if ((rc = get_int(d, me, ctx, "out_dim", &c->mem_enc_out_dim)) ||
            (rc = get_int(d, me, ctx, "in_dim", &c->mem_enc_in_dim)))
            return rc;
        yaml_node_t *pe = ymap_get(d, me, "position_encoding");
        if (pe && (rc = get_int(d, pe, ctx, "num_pos_feats", &c->mem_enc_pe_num_pos_feats)))
            return rc;
        yaml_node_t *ds = ymap_get(d, me, "mask_downsampler");
        if (ds && ((rc = get_int(d, ds, ctx, "kernel_size", &c->mem_ds_kernel)) ||
                   (rc = get_int(d, ds, ctx, "stride", &c->mem_ds_stride)) ||
                   (rc = get_int(d, ds, ctx, "padding", &c->mem_ds_padding)) ||
                   (rc = get_int(d, ds, ctx, "embed_dim", &c->mem_ds_embed_dim)) ||
                   (rc = get_int(d, ds, ctx, "total_stride", &c->mem_ds_total_stride))))
            return rc;
        yaml_node_t *fu = ymap_get(d, me, "fuser");
        if (fu) {
            if ((rc = get_int(d, fu, ctx, "num_layers", &c->mem_fuser_layers)))
                return rc;
            yaml_node_t *fl = ymap_get(d, fu, "layer");
            if (fl && ((rc = get_int(d, fl, ctx, "dim", &c->mem_fuser_dim)) ||
                       (rc = get_int(d, fl, ctx, "kernel_size", &c->mem_fuser_kernel)) ||
                       (rc = get_int(d, fl, ctx, "padding", &c->mem_fuser_padding))))
                return rc;
        }
    }
    return SB_OK;
}

static int parse_model(ydoc *d, yaml_node_t *m, sb_sam2_config *c)
{
    const char *tg = target_of(d, m);
    if (tg && !ends_with(tg, "SAM2Base") && !ends_with(tg, "SAM2Train"))
        return sb_fail(d->err, SB_EUNSUPPORTED, "%s: model _target_ '%s' is not a SAM2 model", d->path, tg);
    yaml_node_t *ie = ymap_get(d, m, "image_encoder");
    if (!ie || ie->type != YAML_MAPPING_NODE)
        return sb_fail(d->err, SB_EKEY, "%s: missing mapping model.image_encoder", d->path);
    int rc;
    if ((rc = get_int(d, ie, "model.image_encoder", "scalp", &c->scalp)))
        return rc;
    if ((rc = parse_trunk(d, ymap_get(d, ie, "trunk"), c)) || (rc = parse_neck(d, ymap_get(d, ie, "neck"), c)) ||
        (rc = parse_memory(d, m, c)))
        return rc;
    const char *ctx = "model";
    if ((rc = get_int(d, m, ctx, "image_size", &c->image_size)) ||
        (rc = get_int(d, m, ctx, "backbone_stride", &c->backbone_stride)) ||
        (rc = get_int(d, m, ctx, "num_maskmem", &c->num_maskmem)) ||
        (rc = get_num(d, m, ctx, "sigmoid_scale_for_mem_enc", &c->sigmoid_scale_for_mem_enc, NULL)) ||
        (rc = get_num(d, m, ctx, "sigmoid_bias_for_mem_enc", &c->sigmoid_bias_for_mem_enc, NULL)) ||
        (rc = get_bool(d, m, ctx, "directly_add_no_mem_embed", &c->directly_add_no_mem_embed)) ||
        (rc = get_bool(d, m, ctx, "use_high_res_features_in_sam", &c->use_high_res_features)) ||
        (rc = get_bool(d, m, ctx, "iou_prediction_use_sigmoid", &c->iou_prediction_use_sigmoid)) ||
        (rc = get_bool(d, m, ctx, "pred_obj_scores", &c->pred_obj_scores)) ||
        (rc = get_bool(d, m, ctx, "pred_obj_scores_mlp", &c->pred_obj_scores_mlp)))
        return rc;
    yaml_node_t *ex = ymap_get(d, m, "sam_mask_decoder_extra_args");
    if (ex && ex->type == YAML_MAPPING_NODE) {
        const char *ectx = "model.sam_mask_decoder_extra_args";
        if ((rc = get_bool(d, ex, ectx, "dynamic_multimask_via_stability", &c->dynamic_multimask)) ||
            (rc = get_num(d, ex, ectx, "dynamic_multimask_stability_delta", &c->stability_delta, NULL)) ||
            (rc = get_num(d, ex, ectx, "dynamic_multimask_stability_thresh", &c->stability_thresh, NULL)))
            return rc;
    }
    return SB_OK;
}

int sb_sam2_config_load(sb_sam2_config *c, const char *path, sb_error *err)
{
    set_constructor_defaults(c);
    FILE *f = fopen(path, "rb");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot open the model config: %s", path, strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return sb_fail(err, SB_ENOMEM, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = SB_OK;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = sb_fail(err, SB_EFORMAT, "%s: not valid YAML/JSON: %s at line %zu column %zu", path,
                     parser.problem ? parser.problem : "parse error", parser.problem_mark.line + 1,
                     parser.problem_mark.column + 1);
        yaml_parser_delete(&parser);
        fclose(f);
        return rc;
    }
    ydoc d = {&doc, path, err};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *m = NULL;
    if (!root)
        rc = sb_fail(err, SB_EFORMAT, "%s: empty model config", path);
    else if ((m = ymap_get(&d, root, "model")) != NULL)
        ;
    else if ((m = ymap_get(&d, root, "full_model_cfg_after_overrides")) != NULL)
        ;
    else if (ymap_get(&d, root, "image_encoder"))
        m = root;
    if (rc == SB_OK && (!m || m->type != YAML_MAPPING_NODE))
        rc = sb_fail(err, SB_EKEY,
                     "%s: no `model:` mapping (hydra YAML) nor `full_model_cfg_after_overrides` (fixture JSON)", path);
    if (rc == SB_OK)
        rc = parse_model(&d, m, c);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc == SB_OK) {
        rc = sb_sam2_config_validate(c, err);
        if (rc)
            sb_error_prefix(err, "%s", path);
    }
    return rc;
}

int sb_sam2_config_validate(const sb_sam2_config *c, sb_error *err)
{
    if (c->n_stages < 1 || c->n_stages > SB_CFG_MAX_STAGES)
        return sb_fail(err, SB_EINVAL, "trunk: %d stages (1..%d supported)", c->n_stages, SB_CFG_MAX_STAGES);
    int depth = 0;
    for (int s = 0; s < c->n_stages; s++) {
        if (c->stages[s] < 1)
            return sb_fail(err, SB_EINVAL, "trunk: stage %d has %d blocks", s, c->stages[s]);
        if (c->window_spec[s] < 0)
            return sb_fail(err, SB_EINVAL, "trunk: negative window_spec[%d]", s);
        depth += c->stages[s];
    }
    if (depth > SB_CFG_MAX_BLOCKS)
        return sb_fail(err, SB_EINVAL, "trunk: %d blocks (at most %d supported)", depth, SB_CFG_MAX_BLOCKS);
    if (c->q_pool < 0 || c->q_pool > c->n_stages - 1)
        return sb_fail(err, SB_EINVAL, "trunk: q_pool %d must be in [0, %d]", c->q_pool, c->n_stages - 1);
    if (c->embed_dim < 1 || c->num_heads < 1 || c->image_size < 1 || c->d_model < 2 || c->d_model % 8)
        return sb_fail(err, SB_EINVAL, "embed_dim %d, num_heads %d, image_size %d, d_model %d out of range",
                       c->embed_dim, c->num_heads, c->image_size, c->d_model);
    if (c->n_levels != c->n_stages)
        return sb_fail(err, SB_EINVAL, "neck: backbone_channel_list has %d levels but the trunk has %d stages",
                       c->n_levels, c->n_stages);
    /* the trunk's channel list (lowest resolution first) must equal the neck's (ImageEncoder's assert) */
    double dim = c->embed_dim;
    int dims[SB_CFG_MAX_STAGES];
    for (int s = 0; s < c->n_stages; s++) {
        if (s > 0)
            dim = (int)(dim * c->dim_mul);
        dims[s] = (int)dim;
    }
    for (int s = 0; s < c->n_stages; s++)
        if (c->backbone_channel_list[c->n_stages - 1 - s] != dims[s])
            return sb_fail(err, SB_EINVAL,
                           "neck: backbone_channel_list[%d] = %d but trunk stage %d has %d channels",
                           c->n_stages - 1 - s, c->backbone_channel_list[c->n_stages - 1 - s], s, dims[s]);
    if (c->scalp < 0 || c->scalp >= c->n_levels)
        return sb_fail(err, SB_EINVAL, "image_encoder.scalp %d out of range", c->scalp);
    if (c->pe_num_pos_feats != c->d_model)
        return sb_fail(err, SB_EINVAL, "neck: position_encoding.num_pos_feats %d != d_model %d",
                       c->pe_num_pos_feats, c->d_model);
    if (c->backbone_stride < 1 || c->image_size % c->backbone_stride)
        return sb_fail(err, SB_EINVAL, "image_size %d is not a multiple of backbone_stride %d", c->image_size,
                       c->backbone_stride);
    if (c->n_levels - c->scalp < 3 && c->use_high_res_features)
        return sb_fail(err, SB_EINVAL, "use_high_res_features_in_sam needs 3 feature levels after the scalp");
    if (c->decoder_num_heads < 1 || c->d_model % (2 * c->decoder_num_heads))
        return sb_fail(err, SB_EINVAL, "d_model %d not divisible by 2 x %d decoder heads", c->d_model,
                       c->decoder_num_heads);
    return SB_OK;
}
