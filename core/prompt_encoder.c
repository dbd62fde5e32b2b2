/*
 * SAM / SAM2 prompt encoder (MODEL.md 2.3, 2.9): random-Fourier position
 * encoding of box corners and points, the dense positional encoding of the
 * image-embedding grid, and the no-mask dense embedding. Mask prompts
 * (mask_downscaling) are never used by the benchmark flows and are not
 * bound.
 */
#include "sam2_internal.h"

#include <stdlib.h>
#include <string.h>

int sb_prompt_encoder_init(sb_prompt_encoder *pe, int embed_dim, int64_t emb_h, int64_t emb_w,
                           int64_t input_h, int64_t input_w, int mask_in_chans, sb_wbind *wb,
                           const char *prefix, sb_error *err)
{
    (void)mask_in_chans;
    memset(pe, 0, sizeof *pe);
    if (embed_dim < 2 || embed_dim % 2)
        return sb_fail(err, SB_EINVAL, "prompt encoder: embed_dim %d must be even", embed_dim);
    pe->embed_dim = embed_dim;
    pe->emb_h = emb_h;
    pe->emb_w = emb_w;
    pe->input_h = input_h;
    pe->input_w = input_w;
    int64_t npf = embed_dim / 2, C = embed_dim;
    int64_t g[2] = {2, npf}, e[2] = {1, C};
    if (!(pe->gauss = sb_wbind_getf(wb, err, 2, g, "%spe_layer.positional_encoding_gaussian_matrix", prefix)))
        return err->code;
    for (int i = 0; i < 4; i++)
        if (!(pe->point_embed[i] = sb_wbind_getf(wb, err, 2, e, "%spoint_embeddings.%d.weight", prefix, i)))
            return err->code;
    if (!(pe->not_a_point = sb_wbind_getf(wb, err, 2, e, "%snot_a_point_embed.weight", prefix)))
        return err->code;
    if (!(pe->no_mask = sb_wbind_getf(wb, err, 2, e, "%sno_mask_embed.weight", prefix)))
        return err->code;
    int64_t HW = emb_h * emb_w;
    pe->dense_pe_chw = malloc((size_t)(C * HW) * sizeof(float));
    pe->dense_pe_tok = malloc((size_t)(C * HW) * sizeof(float));
    if (!pe->dense_pe_chw || !pe->dense_pe_tok)
        return sb_fail(err, SB_ENOMEM, "prompt encoder: cannot allocate the dense PE");
    sb_pe_dense_grid(pe->gauss, npf, emb_h, emb_w, pe->dense_pe_chw);
    for (int64_t c = 0; c < C; c++)
        for (int64_t p = 0; p < HW; p++)
            pe->dense_pe_tok[p * C + c] = pe->dense_pe_chw[c * HW + p];
    return SB_OK;
}

void sb_prompt_encoder_release(sb_prompt_encoder *pe)
{
    if (!pe)
        return;
    free(pe->dense_pe_chw);
    free(pe->dense_pe_tok);
    pe->dense_pe_chw = pe->dense_pe_tok = NULL;
}

int64_t sb_prompt_encoder_n_sparse(const sb_prompts *p)
{
    int64_t n = 0;
    if (p && p->points && p->n_points > 0)
        n += p->n_points + (p->boxes ? 0 : 1); /* pad point when there is no box */
    if (p && p->boxes)
        n += 2;
    return n;
}

int sb_prompt_encoder_forward(const sb_prompt_encoder *pe, const sb_prompts *p, int64_t B,
                              float *sparse, sb_error *err)
{
    int64_t C = pe->embed_dim, npf = C / 2;
    int64_t ns = sb_prompt_encoder_n_sparse(p);
    if (ns == 0)
        return SB_OK;
    int has_pts = p->points && p->n_points > 0;
    if (has_pts && !p->point_labels)
        return sb_fail(err, SB_EINVAL, "prompt encoder: points without labels");
    for (int64_t b = 0; b < B; b++) {
        float *out = sparse + b * ns * C;
        int64_t k = 0;
        if (has_pts) {
            for (int64_t i = 0; i < p->n_points; i++, k++) {
                const float *xy = p->points + (b * p->n_points + i) * 2;
                int32_t lab = p->point_labels[b * p->n_points + i];
                /* +0.5: pixel centre, then divide by the input size (MODEL.md 6.13) */
                float uv[2] = {(xy[0] + 0.5f) / (float)pe->input_w, (xy[1] + 0.5f) / (float)pe->input_h};
                float *o = out + k * C;
                sb_pe_random_fourier(pe->gauss, npf, uv, 1, o);
                if (lab == -1) {
                    memcpy(o, pe->not_a_point, (size_t)C * sizeof(float));
                } else if (lab >= 0 && lab <= 3) {
                    for (int64_t c = 0; c < C; c++)
                        o[c] += pe->point_embed[lab][c];
                }
            }
            if (!p->boxes) { /* padding point: label -1 -> not_a_point only */
                memcpy(out + k * C, pe->not_a_point, (size_t)C * sizeof(float));
                k++;
            }
        }
        if (p->boxes) {
            const float *bx = p->boxes + b * 4;
            for (int j = 0; j < 2; j++, k++) {
                float uv[2] = {(bx[2 * j] + 0.5f) / (float)pe->input_w, (bx[2 * j + 1] + 0.5f) / (float)pe->input_h};
                float *o = out + k * C;
                sb_pe_random_fourier(pe->gauss, npf, uv, 1, o);
                for (int64_t c = 0; c < C; c++)
                    o[c] += pe->point_embed[2 + j][c];
            }
        }
    }
    return SB_OK;
}
