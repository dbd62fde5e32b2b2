/*
 * SAM ViT-B / MedSAM ViT-B hyper-parameters: defaults, config files,
 * inference from the weights and checks against them.
 *
 * Config files: the fixture's *_config.json (its `hyper_parameters` object)
 * and configs/models/{sam,medsam}_vit_b.yaml (a `hyper_parameters`
 * mapping). Both are read with libyaml: the JSON used here is valid YAML
 * flow syntax. Key names are segment_anything's _build_sam arguments.
 */

#include "sam_vit_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* ------------------------------------------------------------------ */
/* configuration                                                       */
/* ------------------------------------------------------------------ */

void sb_vit_config_vit_b(sb_vit_config *c)
{
    memset(c, 0, sizeof *c);
    c->embed_dim = 768;
    c->depth = 12;
    c->num_heads = 12;
    c->n_global = 4;
    c->global_idx[0] = 2;
    c->global_idx[1] = 5;
    c->global_idx[2] = 8;
    c->global_idx[3] = 11;
    c->window_size = 14;
    c->image_size = 1024;
    c->patch_size = 16;
    c->mlp_dim = 4 * 768;
    c->out_chans = 256;
    c->decoder_mlp_dim = 2048;
    c->decoder_num_heads = 8;
    c->decoder_depth = 2;
    c->iou_head_hidden_dim = 256;
    c->mask_in_chans = 16;
}

static int parse_int(const char *path, const char *key, const char *s, int *out, sb_error *err)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || end == s || *end != '\0' || v < 0 || v > 1000000)
        return sb_fail(err, SB_EFORMAT, "%s: %s: expected a non-negative integer, found '%s'", path,
                       key, s);
    *out = (int)v;
    return SB_OK;
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(doc, p->value);
    }
    return NULL;
}

int sb_vit_config_load(sb_vit_config *cfg, const char *path, sb_error *err)
{
    sb_vit_config_vit_b(cfg);
    FILE *f = fopen(path, "rb");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot open: %s", path, strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    int rc = SB_OK;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return sb_fail(err, SB_ENOMEM, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = sb_fail(err, SB_EFORMAT, "%s: not valid YAML/JSON: %s at line %zu", path,
                     parser.problem ? parser.problem : "parse error", parser.problem_mark.line + 1);
        yaml_parser_delete(&parser);
        fclose(f);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *hp = map_get(&doc, root, "hyper_parameters");
    if (!hp) {
        rc = sb_fail(err, SB_EKEY, "%s: no `hyper_parameters` mapping", path);
        goto done;
    }
    if (hp->type != YAML_MAPPING_NODE) {
        rc = sb_fail(err, SB_EFORMAT, "%s: `hyper_parameters` is not a mapping", path);
        goto done;
    }
    struct {
        const char *key;
        int *dst;
    } ints[] = {
        {"encoder_embed_dim", &cfg->embed_dim},
        {"encoder_depth", &cfg->depth},
        {"encoder_num_heads", &cfg->num_heads},
        {"image_size", &cfg->image_size},
        {"vit_patch_size", &cfg->patch_size},
        {"window_size", &cfg->window_size},
        {"prompt_embed_dim", &cfg->out_chans},
        {"decoder_mlp_dim", &cfg->decoder_mlp_dim},
        {"decoder_num_heads", &cfg->decoder_num_heads},
        {"decoder_depth", &cfg->decoder_depth},
        {"iou_head_hidden_dim", &cfg->iou_head_hidden_dim},
        {"mask_in_chans", &cfg->mask_in_chans},
    };
    int mlp_ratio = 4;
    /* Unknown keys are ignored on purpose: every value that shapes the
     * computation is checked against the weights afterwards. */
    for (yaml_node_pair_t *p = hp->data.mapping.pairs.start; p < hp->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&doc, p->key);
        yaml_node_t *v = yaml_document_get_node(&doc, p->value);
        if (!k || k->type != YAML_SCALAR_NODE || !v)
            continue;
        const char *key = (const char *)k->data.scalar.value;
        if (strcmp(key, "encoder_global_attn_indexes") == 0) {
            if (v->type != YAML_SEQUENCE_NODE) {
                rc = sb_fail(err, SB_EFORMAT, "%s: encoder_global_attn_indexes: expected a list", path);
                goto done;
            }
            cfg->n_global = 0;
            for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
                 it++) {
                yaml_node_t *e = yaml_document_get_node(&doc, *it);
                if (!e || e->type != YAML_SCALAR_NODE) {
                    rc = sb_fail(err, SB_EFORMAT, "%s: encoder_global_attn_indexes: not a number", path);
                    goto done;
                }
                if (cfg->n_global >= SB_VIT_MAX_DEPTH) {
                    rc = sb_fail(err, SB_EFORMAT, "%s: encoder_global_attn_indexes: more than %d entries",
                                 path, SB_VIT_MAX_DEPTH);
                    goto done;
                }
                if ((rc = parse_int(path, key, (const char *)e->data.scalar.value,
                                    &cfg->global_idx[cfg->n_global], err)) != SB_OK)
                    goto done;
                cfg->n_global++;
            }
            continue;
        }
        if (strcmp(key, "mlp_ratio") == 0 || strcmp(key, "encoder_mlp_ratio") == 0) {
            if (v->type != YAML_SCALAR_NODE ||
                (rc = parse_int(path, key, (const char *)v->data.scalar.value, &mlp_ratio, err)) != SB_OK) {
                if (rc == SB_OK)
                    rc = sb_fail(err, SB_EFORMAT, "%s: %s: expected an integer", path, key);
                goto done;
            }
            continue;
        }
        for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
            if (strcmp(key, ints[i].key) != 0)
                continue;
            if (v->type != YAML_SCALAR_NODE) {
                rc = sb_fail(err, SB_EFORMAT, "%s: %s: expected an integer", path, key);
                goto done;
            }
            if ((rc = parse_int(path, key, (const char *)v->data.scalar.value, ints[i].dst, err)) != SB_OK)
                goto done;
        }
    }
    cfg->mlp_dim = cfg->embed_dim * mlp_ratio;
    if (cfg->depth < 1 || cfg->depth > SB_VIT_MAX_DEPTH) {
        rc = sb_fail(err, SB_EFORMAT, "%s: encoder_depth %d out of range [1, %d]", path, cfg->depth,
                     SB_VIT_MAX_DEPTH);
        goto done;
    }
    for (int i = 0; i < cfg->n_global; i++)
        if (cfg->global_idx[i] >= cfg->depth) {
            rc = sb_fail(err, SB_EFORMAT, "%s: encoder_global_attn_indexes: %d >= encoder_depth %d",
                         path, cfg->global_idx[i], cfg->depth);
            goto done;
        }
    if (cfg->embed_dim < 1 || cfg->num_heads < 1 || cfg->embed_dim % cfg->num_heads ||
        cfg->patch_size < 1 || cfg->image_size % cfg->patch_size || cfg->out_chans < 1 ||
        cfg->decoder_num_heads < 1 || cfg->out_chans % cfg->decoder_num_heads) {
        rc = sb_fail(err, SB_EFORMAT,
                     "%s: inconsistent hyper-parameters (embed %d heads %d patch %d image %d "
                     "prompt_embed_dim %d decoder heads %d)",
                     path, cfg->embed_dim, cfg->num_heads, cfg->patch_size, cfg->image_size,
                     cfg->out_chans, cfg->decoder_num_heads);
        goto done;
    }
done:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

static int wshape(const sb_weights *w, const char *key, int *nd, int64_t *shp, sb_error *err)
{
    return sb_weights_shape(w, key, nd, shp, err);
}

int sb_vit_config_infer(sb_vit_config *cfg, const sb_weights *w, sb_error *err)
{
    sb_vit_config_vit_b(cfg);
    int nd;
    int64_t s[SB_MAX_DIMS];
    char key[160];
    int rc;
    if ((rc = wshape(w, "image_encoder.patch_embed.proj.weight", &nd, s, err)) != SB_OK)
        return rc;
    if (nd != 4 || s[1] != 3 || s[2] != s[3] || s[2] < 1)
        return sb_fail(err, SB_ESHAPE, "image_encoder.patch_embed.proj.weight: expected [C, 3, p, p]");
    cfg->embed_dim = (int)s[0];
    cfg->patch_size = (int)s[2];
    if ((rc = wshape(w, "image_encoder.pos_embed", &nd, s, err)) != SB_OK)
        return rc;
    if (nd != 4 || s[0] != 1 || s[1] != s[2] || s[3] != cfg->embed_dim)
        return sb_fail(err, SB_ESHAPE, "image_encoder.pos_embed: expected [1, g, g, %d]", cfg->embed_dim);
    int64_t g = s[1];
    cfg->image_size = (int)(g * cfg->patch_size);
    int depth = 0;
    for (;;) {
        snprintf(key, sizeof key, "image_encoder.blocks.%d.norm1.weight", depth);
        if (!sb_weights_has(w, key))
            break;
        if (++depth > SB_VIT_MAX_DEPTH)
            return sb_fail(err, SB_EUNSUPPORTED, "image encoder has more than %d blocks", SB_VIT_MAX_DEPTH);
    }
    if (depth == 0)
        return sb_fail(err, SB_EKEY, "missing key image_encoder.blocks.0.norm1.weight");
    cfg->depth = depth;
    int64_t len[SB_VIT_MAX_DEPTH], minlen = 0;
    for (int i = 0; i < depth; i++) {
        snprintf(key, sizeof key, "image_encoder.blocks.%d.attn.rel_pos_h", i);
        if ((rc = wshape(w, key, &nd, s, err)) != SB_OK)
            return rc;
        if (nd != 2 || s[1] < 1 || cfg->embed_dim % s[1])
            return sb_fail(err, SB_ESHAPE, "%s: expected [2S-1, head_dim]", key);
        if (i == 0)
            cfg->num_heads = (int)(cfg->embed_dim / s[1]);
        else if (cfg->embed_dim / s[1] != cfg->num_heads)
            return sb_fail(err, SB_ESHAPE, "%s: head_dim %lld differs from block 0", key, (long long)s[1]);
        len[i] = s[0];
        if (i == 0 || s[0] < minlen)
            minlen = s[0];
    }
    /* window blocks have 2*ws-1 rows, global ones 2*g-1 */
    cfg->n_global = 0;
    if (minlen == 2 * g - 1) {
        cfg->window_size = 0; /* every block global */
    } else {
        cfg->window_size = (int)((minlen + 1) / 2);
        for (int i = 0; i < depth; i++)
            if (len[i] != minlen)
                cfg->global_idx[cfg->n_global++] = i;
    }
    if ((rc = wshape(w, "image_encoder.blocks.0.mlp.lin1.weight", &nd, s, err)) != SB_OK)
        return rc;
    cfg->mlp_dim = (int)s[0];
    if ((rc = wshape(w, "image_encoder.neck.0.weight", &nd, s, err)) != SB_OK)
        return rc;
    cfg->out_chans = (int)s[0];
    if ((rc = wshape(w, "mask_decoder.transformer.layers.0.mlp.lin1.weight", &nd, s, err)) != SB_OK)
        return rc;
    cfg->decoder_mlp_dim = (int)s[0];
    int dd = 0;
    for (;;) {
        snprintf(key, sizeof key, "mask_decoder.transformer.layers.%d.norm1.weight", dd);
        if (!sb_weights_has(w, key))
            break;
        dd++;
    }
    cfg->decoder_depth = dd;
    if ((rc = wshape(w, "mask_decoder.iou_prediction_head.layers.0.weight", &nd, s, err)) != SB_OK)
        return rc;
    cfg->iou_head_hidden_dim = (int)s[0];
    if ((rc = wshape(w, "prompt_encoder.mask_downscaling.3.weight", &nd, s, err)) != SB_OK)
        return rc;
    cfg->mask_in_chans = (int)s[0];
    return SB_OK;
}

int sb_vit_config_check(const sb_vit_config *cfg, const sb_weights *w, sb_error *err)
{
    sb_vit_config inf;
    int rc = sb_vit_config_infer(&inf, w, err);
    if (rc != SB_OK)
        return rc;
#define CHECK(field, name)                                                                    \
    if (cfg->field != inf.field)                                                              \
        return sb_fail(err, SB_ESHAPE, "config %s = %d but the weights say %d", (name), cfg->field, \
                       inf.field);
    CHECK(embed_dim, "encoder_embed_dim");
    CHECK(patch_size, "vit_patch_size");
    CHECK(image_size, "image_size (pos_embed grid x patch size)");
    CHECK(depth, "encoder_depth");
    CHECK(num_heads, "encoder_num_heads (embed / rel_pos head_dim)");
    CHECK(mlp_dim, "encoder mlp dim (embed x mlp_ratio)");
    CHECK(out_chans, "prompt_embed_dim");
    CHECK(decoder_mlp_dim, "decoder_mlp_dim");
    CHECK(decoder_depth, "decoder_depth");
    CHECK(iou_head_hidden_dim, "iou_head_hidden_dim");
    CHECK(mask_in_chans, "mask_in_chans");
#undef CHECK
    /* Window size and global blocks: the rel-pos tables have 2S-1 rows in a
     * checkpoint built by the reference; a table of another length is
     * interpolated (get_rel_pos), so only report a mismatch when every table
     * has the reference length for SOME window layout and it is not ours. */
    const int64_t g = cfg->image_size / cfg->patch_size;
    int all_ref = 1, mism = -1;
    char key[160];
    for (int i = 0; i < cfg->depth; i++) {
        int glob = cfg->window_size == 0;
        for (int k = 0; k < cfg->n_global; k++)
            glob |= cfg->global_idx[k] == i;
        int64_t S = glob ? g : cfg->window_size;
        int nd;
        int64_t s[SB_MAX_DIMS];
        snprintf(key, sizeof key, "image_encoder.blocks.%d.attn.rel_pos_h", i);
        if ((rc = sb_weights_shape(w, key, &nd, s, err)) != SB_OK)
            return rc;
        if (s[0] != 2 * g - 1 && (inf.window_size == 0 || s[0] != 2 * inf.window_size - 1))
            all_ref = 0;
        if (s[0] != 2 * S - 1 && mism < 0)
            mism = i;
    }
    if (all_ref && mism >= 0)
        return sb_fail(err, SB_ESHAPE,
                       "config window_size %d / encoder_global_attn_indexes do not match the "
                       "relative-position tables (block %d: image_encoder.blocks.%d.attn.rel_pos_h)",
                       cfg->window_size, mism, mism);
    return SB_OK;
}

void sb_vit_config_format(const sb_vit_config *c, char *buf, size_t cap)
{
    char gl[256];
    size_t n = 0;
    gl[0] = '\0';
    for (int i = 0; i < c->n_global && n + 8 < sizeof gl; i++)
        n += (size_t)snprintf(gl + n, sizeof gl - n, "%s%d", i ? "," : "", c->global_idx[i]);
    snprintf(buf, cap,
             "embed %d depth %d heads %d window %d global [%s] image %d patch %d mlp %d out %d "
             "decoder mlp %d heads %d depth %d iou_hidden %d mask_in %d",
             c->embed_dim, c->depth, c->num_heads, c->window_size, gl, c->image_size,
             c->patch_size, c->mlp_dim, c->out_chans, c->decoder_mlp_dim, c->decoder_num_heads,
             c->decoder_depth, c->iou_head_hidden_dim, c->mask_in_chans);
}
