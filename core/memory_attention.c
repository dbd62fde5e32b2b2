/*
 * Memory attention (MODEL.md 2.6): the current frame's level-2 tokens
 * attend to themselves and to the memories retrieved from the bank, with
 * axial RoPE on queries and keys.
 *   x = curr + 0.1 pos
 *   per layer: x += SelfRoPE(LN1 x); x += CrossRoPE(LN2 x, mem + mem_pos, mem);
 *              x += W2 ReLU(W1 LN3 x)
 *   out = LN(x)                       (all LayerNorms eps 1e-5, MODEL.md 6.5)
 * Queries use RoPE positions 0..N-1; memory keys use m mod N (rope_k_repeat).
 * The scores go through sb_attention (tiled: never N x M at once).
 */
#include "samed2_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int bind_rope_attn(sb_attn_w *aw, int C, int kv_in, int internal, sb_wbind *wb, int layer,
                          const char *name, sb_error *err)
{
    aw->internal = internal;
    aw->kv_in = kv_in;
    int64_t wq[2] = {internal, C}, wkv[2] = {internal, kv_in}, wo[2] = {C, internal};
    int64_t bi = internal, bo = C;
    const char *p = "memory_attention.layers";
    if (!(aw->q_w = sb_wbind_getf(wb, err, 2, wq, "%s.%d.%s.q_proj.weight", p, layer, name)) ||
        !(aw->q_b = sb_wbind_getf(wb, err, 1, &bi, "%s.%d.%s.q_proj.bias", p, layer, name)) ||
        !(aw->k_w = sb_wbind_getf(wb, err, 2, wkv, "%s.%d.%s.k_proj.weight", p, layer, name)) ||
        !(aw->k_b = sb_wbind_getf(wb, err, 1, &bi, "%s.%d.%s.k_proj.bias", p, layer, name)) ||
        !(aw->v_w = sb_wbind_getf(wb, err, 2, wkv, "%s.%d.%s.v_proj.weight", p, layer, name)) ||
        !(aw->v_b = sb_wbind_getf(wb, err, 1, &bi, "%s.%d.%s.v_proj.bias", p, layer, name)) ||
        !(aw->o_w = sb_wbind_getf(wb, err, 2, wo, "%s.%d.%s.out_proj.weight", p, layer, name)) ||
        !(aw->o_b = sb_wbind_getf(wb, err, 1, &bo, "%s.%d.%s.out_proj.bias", p, layer, name)))
        return err->code;
    return SB_OK;
}

int sb_memory_attention_init(sb_memory_attention *ma, const sb_sam2_config *cfg, sb_wbind *wb,
                             sb_error *err)
{
    memset(ma, 0, sizeof *ma);
    ma->d_model = cfg->mem_attn_d_model;
    ma->n_layers = cfg->mem_attn_layers;
    ma->ffn = cfg->mem_attn_ffn;
    ma->heads = cfg->mem_attn_heads;
    ma->kv_in = cfg->mem_attn_kv_in_dim;
    ma->rope_theta = (float)cfg->mem_attn_rope_theta;
    ma->feat_w = cfg->mem_attn_feat_w;
    ma->feat_h = cfg->mem_attn_feat_h;
    if (ma->n_layers < 1 || ma->n_layers > SB_MEM_ATTN_MAX_LAYERS || ma->heads < 1 ||
        ma->d_model % ma->heads || (ma->d_model / ma->heads) % 4)
        return sb_fail(err, SB_EINVAL,
                       "memory attention: unsupported config (%d layers, d_model %d, %d heads: head dim must be a multiple of 4 for axial RoPE)",
                       ma->n_layers, ma->d_model, ma->heads);
    const int C = ma->d_model;
    int64_t vC = C, l1[2] = {ma->ffn, C}, l2[2] = {C, ma->ffn}, vF = ma->ffn;
    for (int l = 0; l < ma->n_layers; l++) {
        sb_mem_attn_layer *L = &ma->layer[l];
        int rc;
        if ((rc = bind_rope_attn(&L->self_attn, C, C, C, wb, l, "self_attn", err)) ||
            (rc = bind_rope_attn(&L->cross_attn, C, ma->kv_in, C, wb, l, "cross_attn_image", err)))
            return rc;
        const char *p = "memory_attention.layers";
        if (!(L->n1_w = sb_wbind_getf(wb, err, 1, &vC, "%s.%d.norm1.weight", p, l)) ||
            !(L->n1_b = sb_wbind_getf(wb, err, 1, &vC, "%s.%d.norm1.bias", p, l)) ||
            !(L->n2_w = sb_wbind_getf(wb, err, 1, &vC, "%s.%d.norm2.weight", p, l)) ||
            !(L->n2_b = sb_wbind_getf(wb, err, 1, &vC, "%s.%d.norm2.bias", p, l)) ||
            !(L->n3_w = sb_wbind_getf(wb, err, 1, &vC, "%s.%d.norm3.weight", p, l)) ||
            !(L->n3_b = sb_wbind_getf(wb, err, 1, &vC, "%s.%d.norm3.bias", p, l)) ||
            !(L->l1_w = sb_wbind_getf(wb, err, 2, l1, "%s.%d.linear1.weight", p, l)) ||
            !(L->l1_b = sb_wbind_getf(wb, err, 1, &vF, "%s.%d.linear1.bias", p, l)) ||
            !(L->l2_w = sb_wbind_getf(wb, err, 2, l2, "%s.%d.linear2.weight", p, l)) ||
            !(L->l2_b = sb_wbind_getf(wb, err, 1, &vC, "%s.%d.linear2.bias", p, l)))
            return err->code;
    }
    if (!(ma->norm_w = sb_wbind_getf(wb, err, 1, &vC, "memory_attention.norm.weight")) ||
        !(ma->norm_b = sb_wbind_getf(wb, err, 1, &vC, "memory_attention.norm.bias")))
        return err->code;
    return SB_OK;
}

/* RoPE on every head of x[L, heads*hd]. */
static void rope_heads(float *x, int64_t L, int heads, int64_t hd, const float *cos_t,
                       const float *sin_t, int64_t table_len)
{
    for (int h = 0; h < heads; h++)
        sb_rope_apply(x + h * hd, L, hd, (int64_t)heads * hd, cos_t, sin_t, table_len);
}

/* out[Lq, C] = out_proj(attn(q = Q, k = K, v = V)) with Q, K, V already
 * projected and rotated, [L, I]. */
static int attend(const sb_attn_w *aw, int heads, sb_ctx *ctx, const float *Q, const float *K,
                  const float *V, int64_t Lq, int64_t Lk, float *O, float *out, int64_t C,
                  sb_arena *a, sb_error *err)
{
    const int64_t I = aw->internal, hd = I / heads;
    sb_attn_args at;
    sb_attn_args_packed(&at, 1, heads, Lq, Lk, hd, Q, K, V, O);
    int rc = sb_attention(ctx, &at, a, err);
    if (rc == SB_OK)
        sb_linear(ctx, O, Lq, I, aw->o_w, aw->o_b, C, out);
    return rc;
}

int sb_memory_attention_forward(const sb_memory_attention *ma, sb_ctx *ctx, float *x,
                                const float *pos, int64_t N, const float *mem,
                                const float *mem_pos, int64_t M, sb_arena *a, sb_modprof *mp,
                                sb_error *err)
{
    const int64_t C = ma->d_model, I = C, Ckv = ma->kv_in, hd = I / ma->heads;
    if (M % N)
        return sb_fail(err, SB_ESHAPE, "memory attention: %lld memory tokens is not a multiple of %lld queries",
                       (long long)M, (long long)N);
    /* RoPE grid: the configured feat_sizes when they match N, else a square
     * sqrt(N) grid (the reference recomputes its table, MODEL.md 2.6 / 6.11) */
    int64_t gx = ma->feat_w, gy = ma->feat_h;
    if (gx * gy != N) {
        gx = (int64_t)llround(sqrt((double)N));
        gy = gx;
        if (gx * gy != N)
            return sb_fail(err, SB_ESHAPE, "memory attention: %lld tokens is not a square grid", (long long)N);
    }
    size_t mark = sb_arena_mark(a);
#define TAKE(ptr, count, what)                                                                   \
    do {                                                                                         \
        (ptr) = sb_arena_alloc_checked(a, (size_t)(count) * sizeof(float), (what), err);         \
        if (!(ptr)) {                                                                            \
            sb_arena_reset(a, mark);                                                             \
            return SB_ENOMEM;                                                                    \
        }                                                                                        \
    } while (0)
    float *cos_t, *sin_t, *t, *Q, *K, *V, *O, *o, *kin, *hid;
    TAKE(cos_t, N * hd / 2, "rope cos");
    TAKE(sin_t, N * hd / 2, "rope sin");
    TAKE(t, N * C, "memory attention norm");
    TAKE(Q, N * I, "memory attention q");
    TAKE(K, M * I, "memory attention k");
    TAKE(V, M * I, "memory attention v");
    TAKE(O, N * I, "memory attention heads");
    TAKE(o, N * C, "memory attention out");
    TAKE(kin, M * Ckv, "memory keys");
    TAKE(hid, N * ma->ffn, "memory attention mlp");
#undef TAKE
    sb_rope_axial_table(hd, gx, gy, ma->rope_theta, cos_t, sin_t);
    for (int64_t i = 0; i < N * C; i++)
        x[i] += 0.1f * pos[i]; /* pos_enc_at_input */
    for (int64_t i = 0; i < M * Ckv; i++)
        kin[i] = mem[i] + mem_pos[i]; /* pos_enc_at_cross_attn_keys */
    int rc = SB_OK;
    for (int l = 0; l < ma->n_layers && rc == SB_OK; l++) {
        const sb_mem_attn_layer *L = &ma->layer[l];
        /* self-attention: q = k = v = LN1(x), no additive pos (pos_enc_at_attn false) */
        sb_layernorm(ctx, x, N, C, L->n1_w, L->n1_b, 1e-5f, t);
        sb_linear(ctx, t, N, C, L->self_attn.q_w, L->self_attn.q_b, I, Q);
        sb_linear(ctx, t, N, C, L->self_attn.k_w, L->self_attn.k_b, I, K);
        sb_linear(ctx, t, N, C, L->self_attn.v_w, L->self_attn.v_b, I, V);
        rope_heads(Q, N, ma->heads, hd, cos_t, sin_t, N);
        rope_heads(K, N, ma->heads, hd, cos_t, sin_t, N);
        if ((rc = attend(&L->self_attn, ma->heads, ctx, Q, K, V, N, N, O, o, C, a, err)))
            break;
        sb_add(ctx, x, o, N * C);
        /* cross-attention: q = LN2(x) (no pos), k = mem + mem_pos, v = mem */
        sb_layernorm(ctx, x, N, C, L->n2_w, L->n2_b, 1e-5f, t);
        sb_linear(ctx, t, N, C, L->cross_attn.q_w, L->cross_attn.q_b, I, Q);
        sb_linear(ctx, kin, M, Ckv, L->cross_attn.k_w, L->cross_attn.k_b, I, K);
        sb_linear(ctx, mem, M, Ckv, L->cross_attn.v_w, L->cross_attn.v_b, I, V);
        rope_heads(Q, N, ma->heads, hd, cos_t, sin_t, N);
        rope_heads(K, M, ma->heads, hd, cos_t, sin_t, N); /* key m uses position m mod N */
        if ((rc = attend(&L->cross_attn, ma->heads, ctx, Q, K, V, N, M, O, o, C, a, err)))
            break;
        sb_add(ctx, x, o, N * C);
        /* MLP with ReLU */
        sb_layernorm(ctx, x, N, C, L->n3_w, L->n3_b, 1e-5f, t);
        sb_linear(ctx, t, N, C, L->l1_w, L->l1_b, ma->ffn, hid);
        sb_relu(ctx, hid, N * ma->ffn);
        sb_linear(ctx, hid, N, ma->ffn, L->l2_w, L->l2_b, C, o);
        sb_add(ctx, x, o, N * C);
        sb_modprof_flops(mp, 4 * sb_flops_linear(N, C, I) + 4.0 * (double)N * N * I      /* self */
                                 + 2 * sb_flops_linear(N, C, I) + 2 * sb_flops_linear(M, Ckv, I) +
                                 4.0 * (double)N * M * I                                   /* cross */
                                 + 2 * sb_flops_linear(N, C, ma->ffn));                    /* mlp */
    }
    if (rc == SB_OK)
        sb_layernorm(ctx, x, N, C, ma->norm_w, ma->norm_b, 1e-5f, x);
    sb_arena_reset(a, mark);
    return rc;
}
