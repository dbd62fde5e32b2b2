/*
 * The samed2 flow (validation_step, MODEL.md 1.5): the SAM2 network of
 * core/sam2_model.c with SAMed-2's pieces plugged into its hooks:
 *  - the temporal adapter in every Hiera block (trunk adapter hook);
 *  - "condition": bank selection on the raw level-2 features, then memory
 *    attention replaces the sam2 flow's no_mem_embed step;
 *  - "after_decoder": memory encoder on sigmoid(high-res logits)*20-10 and
 *    the conditioned features, then the bank update.
 * The bank is borrowed (sb_model_set_membank): its scope is the caller's.
 */
#include "samed2_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct samed2_state {
    sb_temporal_adapters ta;
    sb_memory_attention ma;
    sb_memory_encoder me;
    sb_membank *bank; /* borrowed */
    int64_t last_B, last_k;
    int32_t *last_idx;      /* [B, k] */
    int32_t *last_replaced; /* [B] */
} samed2_state;

static int reserve_decisions(samed2_state *s, int64_t B, sb_error *err)
{
    if (s->last_B == B)
        return SB_OK;
    int32_t *idx = realloc(s->last_idx, (size_t)(B * B) * sizeof(int32_t));
    if (idx)
        s->last_idx = idx;
    int32_t *rep = realloc(s->last_replaced, (size_t)B * sizeof(int32_t));
    if (rep)
        s->last_replaced = rep;
    if (!idx || !rep)
        return sb_fail(err, SB_ENOMEM, "samed2: out of memory for the bank decisions");
    s->last_B = B;
    return SB_OK;
}

/* Dumps an index array under a golden name (the dump hook takes floats). */
static void dump_indices(sb_dump_fn dump, void *da, const char *name, const int32_t *v, int64_t d0,
                         int64_t d1, float *tmp)
{
    for (int64_t i = 0; i < d0 * d1; i++)
        tmp[i] = (float)v[i];
    if (d1 > 0)
        sb_dump2(dump, da, name, tmp, d0, d1);
}

static int samed2_condition(void *arg, sb_ctx *ctx, float *feat, const float *pos, int64_t B,
                            int64_t h, int64_t w, int64_t C, sb_arena *a, sb_modprof *mp,
                            sb_dump_fn dump, void *da, sb_error *err)
{
    samed2_state *s = arg;
    if (!s->bank)
        return sb_fail(err, SB_EINVAL, "flow samed2: no memory bank was given (sb_model_set_membank)");
    int64_t bC, bH, bW, flen;
    sb_membank_shape(s->bank, &bC, &bH, &bW, &flen);
    const int64_t HW = h * w, k = B, Cm = s->ma.kv_in, M = HW * k, N = sb_membank_entries(s->bank);
    if (bC != Cm || bH != h || bW != w || flen != HW * C)
        return sb_fail(err, SB_ESHAPE,
                       "flow samed2: the memory bank holds (%lld,%lld,%lld) memories and %lld-value features, the model needs (%lld,%lld,%lld) and %lld",
                       (long long)bC, (long long)bH, (long long)bW, (long long)flen, (long long)Cm,
                       (long long)h, (long long)w, (long long)(HW * C));
    if (k > N)
        return sb_fail(err, SB_EINVAL, "flow samed2: batch %lld needs %lld memories but the bank has %lld entries",
                       (long long)B, (long long)k, (long long)N);
    int rc = reserve_decisions(s, B, err);
    if (rc)
        return rc;
    size_t mark = sb_arena_mark(a);
#define TAKE(ptr, count, what)                                                                   \
    do {                                                                                         \
        (ptr) = sb_arena_alloc_checked(a, (size_t)(count) * sizeof(*(ptr)), (what), err);        \
        if (!(ptr)) {                                                                            \
            sb_arena_reset(a, mark);                                                             \
            return SB_ENOMEM;                                                                    \
        }                                                                                        \
    } while (0)
    float *scores = NULL, *pos_tok, *sel_mem, *sel_pos, *mem, *mem_pos, *tmp = NULL, *dmem = NULL,
          *dpos = NULL;
    TAKE(pos_tok, HW * C, "memory attention pos");
    TAKE(sel_mem, B * k * Cm * HW, "selected memories");
    TAKE(sel_pos, B * k * Cm * HW, "selected memory pos");
    TAKE(mem, M * Cm, "memory");
    TAKE(mem_pos, M * Cm, "memory pos");
    if (dump) {
        TAKE(scores, B * N, "selection scores");
        TAKE(tmp, B * HW * C + B * k, "samed2 dumps");
        TAKE(dmem, B * M * Cm, "samed2 memory dump");
        TAKE(dpos, B * M * Cm, "samed2 memory dump");
    }
#undef TAKE
    /* the adapters ran inside the trunk's blocks (their time is counted
     * there); their FLOPs are reported as a module of their own */
    sb_modprof_begin(mp, "temporal_adapters");
    sb_modprof_flops(mp, s->ta.flops);
    s->ta.flops = 0;
    sb_modprof_end(mp);
    sb_modprof_begin(mp, "memory_select");
    rc = sb_membank_select(s->bank, ctx, feat, B, HW * C, k, s->last_idx, scores, a, err);
    sb_modprof_flops(mp, 2.0 * (double)B * (double)N * (double)(HW * C));
    sb_modprof_end(mp);
    if (rc)
        goto done;
    s->last_k = k;
    if (dump) {
        dump_indices(dump, da, "memory_select/indices", s->last_idx, B, k, tmp);
        sb_dump2(dump, da, "memory_select/combined_scores", scores, B, N);
    }
    /* the selected entries as float32, [b][j][Cm][HW] (NCHW) */
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < k; j++)
            sb_membank_entry_f32(s->bank, s->last_idx[b * k + j], sel_mem + (b * k + j) * Cm * HW,
                                 sel_pos + (b * k + j) * Cm * HW, NULL);
    for (int64_t t = 0; t < HW; t++) /* pos [C, h, w] -> tokens [HW, C] */
        for (int64_t c = 0; c < C; c++)
            pos_tok[t * C + c] = pos[c * HW + t];
    if (dump) { /* the reference's sequence-first tensors [L, B, C] */
        for (int64_t t = 0; t < HW; t++)
            for (int64_t b = 0; b < B; b++)
                memcpy(tmp + (t * B + b) * C, feat + (b * HW + t) * C, (size_t)C * sizeof(float));
        sb_dump3(dump, da, "memory_attention/curr", tmp, HW, B, C);
        for (int64_t t = 0; t < HW; t++)
            for (int64_t b = 0; b < B; b++)
                memcpy(tmp + (t * B + b) * C, pos_tok + t * C, (size_t)C * sizeof(float));
        sb_dump3(dump, da, "memory_attention/curr_pos", tmp, HW, B, C);
    }
    sb_modprof_begin(mp, "memory_attention");
    for (int64_t bq = 0; bq < B && rc == SB_OK; bq++) {
        /* MODEL.md 4.2's layout quirk: [B, k, HW, Cm] is permuted to
         * [HW, B, k, Cm] and the buffer reinterpreted as [HW*k, B, Cm], so
         * memory position m of query image bq holds flat row f = m*B + bq of
         * the permuted tensor: j = f % k, b = (f / k) % B, token (f / k) / B. */
        for (int64_t m = 0; m < M; m++) {
            int64_t f = m * B + bq, j = f % k, t = f / k, b = t % B, hw = t / B;
            const float *src = sel_mem + (b * k + j) * Cm * HW + hw;
            const float *srp = sel_pos + (b * k + j) * Cm * HW + hw;
            for (int64_t c = 0; c < Cm; c++) {
                mem[m * Cm + c] = src[c * HW];
                mem_pos[m * Cm + c] = srp[c * HW];
            }
        }
        if (dump) /* sequence-first [M, B, Cm] as the reference passes them */
            for (int64_t m = 0; m < M; m++) {
                memcpy(dmem + (m * B + bq) * Cm, mem + m * Cm, (size_t)Cm * sizeof(float));
                memcpy(dpos + (m * B + bq) * Cm, mem_pos + m * Cm, (size_t)Cm * sizeof(float));
            }
        rc = sb_memory_attention_forward(&s->ma, ctx, feat + bq * HW * C, pos_tok, HW, mem, mem_pos, M, a,
                                         mp, err);
    }
    sb_modprof_end(mp);
    if (rc == SB_OK && dump) {
        sb_dump3(dump, da, "memory_attention/memory", dmem, M, B, Cm);
        sb_dump3(dump, da, "memory_attention/memory_pos", dpos, M, B, Cm);
        for (int64_t t = 0; t < HW; t++)
            for (int64_t b = 0; b < B; b++)
                memcpy(tmp + (t * B + b) * C, feat + (b * HW + t) * C, (size_t)C * sizeof(float));
        sb_dump3(dump, da, "memory_attention/output", tmp, HW, B, C);
    }
done:
    sb_arena_reset(a, mark);
    return rc;
}

static int samed2_after_decoder(void *arg, sb_ctx *ctx, const float *feat, const float *hr,
                                const float *iou, int64_t B, int64_t h, int64_t w, int64_t C,
                                int64_t S, sb_arena *a, sb_modprof *mp, sb_dump_fn dump, void *da,
                                sb_error *err)
{
    samed2_state *s = arg;
    const int64_t HW = h * w, Cm = s->me.out_dim, N = sb_membank_entries(s->bank);
    size_t mark = sb_arena_mark(a);
    int rc = SB_OK;
    float *pix = sb_arena_alloc_checked(a, (size_t)(B * C * HW) * sizeof(float), "memory pix_feat", err);
    float *out = pix ? sb_arena_alloc_checked(a, (size_t)(B * Cm * HW) * sizeof(float), "maskmem", err) : NULL;
    float *pos = out ? sb_arena_alloc_checked(a, (size_t)(B * Cm * HW) * sizeof(float), "maskmem pos", err) : NULL;
    float *ious = pos ? sb_arena_alloc_checked(a, (size_t)(B + N) * sizeof(float), "bank ious", err) : NULL;
    int32_t *order = ious ? sb_arena_alloc_checked(a, (size_t)N * sizeof(int32_t), "bank order", err) : NULL;
    if (!order) {
        sb_arena_reset(a, mark);
        return SB_ENOMEM;
    }
    /* backbone_features = output.permute(1, 2, 0).view(B, C, H, W): NCHW */
    sb_tok_to_nchw(feat, B, HW, C, pix);
    if ((rc = sb_memory_encoder_forward(&s->me, ctx, pix, hr, B, h, w, S, out, pos, a, mp, dump, da, err)))
        goto done;
    for (int64_t b = 1; b < B; b++)
        memcpy(pos + b * Cm * HW, pos, (size_t)(Cm * HW) * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        ious[b] = iou[b]; /* ious [B, 1] */
    if (dump) {
        sb_dump4(dump, da, "bank_update/maskmem_features_in", out, B, Cm, h, w);
        sb_dump2(dump, da, "bank_update/ious_in", ious, B, 1);
        sb_dump4(dump, da, "bank_update/backbone_features_in", pix, B, C, h, w);
    }
    sb_modprof_begin(mp, "bank_update");
    rc = sb_membank_update(s->bank, out, pos, ious, pix, B, s->last_replaced, order, err);
    sb_modprof_flops(mp, 2.0 * (double)B * (double)N * (double)(Cm * HW));
    sb_modprof_end(mp);
    if (rc == SB_OK && dump) {
        for (int64_t i = 0; i < N; i++)
            ious[B + i] = (float)order[i];
        int64_t shape[1] = {N};
        dump(da, "bank_update/order_after", ious + B, 1, shape);
    }
done:
    sb_arena_reset(a, mark);
    return rc;
}

int sb_samed2_attach(sb_sam2_net *n, sb_wbind *wb, sb_error *err)
{
    samed2_state *s = calloc(1, sizeof *s);
    if (!s)
        return sb_fail(err, SB_ENOMEM, "samed2: out of memory");
    int rc;
    if ((rc = sb_temporal_adapters_init(&s->ta, &n->cfg, &n->trunk, wb, err)) ||
        (rc = sb_memory_attention_init(&s->ma, &n->cfg, wb, err)) ||
        (rc = sb_memory_encoder_init(&s->me, &n->cfg, wb, err))) {
        free(s);
        return rc;
    }
    if (s->ma.d_model != n->cfg.d_model || s->me.in_dim != n->cfg.d_model || s->me.out_dim != s->ma.kv_in) {
        rc = sb_fail(err, SB_EINVAL,
                     "samed2: memory attention d_model %d / kv_in %d, memory encoder %d -> %d and neck d_model %d disagree",
                     s->ma.d_model, s->ma.kv_in, s->me.in_dim, s->me.out_dim, n->cfg.d_model);
        free(s);
        return rc;
    }
    n->trunk.adapter = sb_temporal_adapter_hook;
    n->trunk.adapter_arg = &s->ta;
    n->condition = samed2_condition;
    n->after_decoder = samed2_after_decoder;
    n->hook_arg = s;
    return SB_OK;
}

void sb_samed2_detach(sb_sam2_net *n)
{
    samed2_state *s = n->hook_arg;
    if (!s || n->condition != samed2_condition)
        return;
    free(s->last_idx);
    free(s->last_replaced);
    free(s);
    n->hook_arg = NULL;
    n->condition = NULL;
    n->after_decoder = NULL;
    n->trunk.adapter = NULL;
    n->trunk.adapter_arg = NULL;
}

static samed2_state *state_of(const sb_model *m)
{
    if (!m || m->flow != SB_FLOW_SAMED2 || !m->impl)
        return NULL;
    const sb_sam2_net *n = m->impl;
    return n->condition == samed2_condition ? n->hook_arg : NULL;
}

int sb_model_set_membank(sb_model *m, sb_membank *bank, sb_error *err)
{
    samed2_state *s = state_of(m);
    if (!s)
        return sb_fail(err, SB_EINVAL, "only the samed2 flow uses a memory bank");
    s->bank = bank;
    return SB_OK;
}

int sb_model_bank_decisions(const sb_model *m, int64_t *B, int64_t *k, const int32_t **indices,
                            const int32_t **replaced)
{
    samed2_state *s = state_of(m);
    if (!s || !s->last_idx)
        return SB_EINVAL;
    *B = s->last_B;
    *k = s->last_k;
    *indices = s->last_idx;
    *replaced = s->last_replaced;
    return SB_OK;
}
