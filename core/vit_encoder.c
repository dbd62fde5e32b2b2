/*
 * SAM v1 image encoder (segment_anything ImageEncoderViT), MODEL.md 2.8.
 *
 *   x = PatchEmbed(img)                     conv k=p s=p -> NHWC [B,g,g,C]
 *   x = x + pos_embed                       [1,g,g,C], added as is
 *   per block: x = x + proj(Attn(partition(LN1(x))))  (windowed: zero pad to a
 *              multiple of the window, padded keys NOT masked, MODEL.md 6.8)
 *              x = x + lin2(GELU(lin1(LN2(x))))
 *   neck: 1x1 conv (no bias) -> LN2d -> 3x3 conv pad 1 (no bias) -> LN2d
 *
 * Attention: softmax(scale * q k^T + rel_h + rel_w) v per head, with the
 * decomposed relative position terms computed from the UNSCALED q
 * (MODEL.md 6.6) and added per score tile through sb_attention's bias
 * callback, so no L x L score matrix ever exists (a global block at 1024
 * input would need 12 x 4096 x 4096 floats = 805 MB).
 *
 * Memory: the residual stream of the whole batch [B,g,g,C] stays resident
 * (the per-block dumps need it); everything else is per image and reused
 * block after block through the arena's mark/reset.
 */
#include "sam_vit_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VIT_LN_EPS 1e-6f /* MODEL.md 6.5: ViT-B blocks and the neck LayerNorm2d */
#define ALIGN64(n) (((size_t)(n) + 63) & ~(size_t)63)

typedef struct {
    const float *n1w, *n1b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    const float *n2w, *n2b, *l1w, *l1b, *l2w, *l2b;
    float *rel_h, *rel_w; /* resized to [2S-1, hd] */
    int64_t S;            /* side of the attention map: window or grid */
    int window;           /* 0 = global */
} vit_block;

struct sb_vit_encoder {
    sb_vit_config cfg;
    int64_t grid, C, hd, mlp, out_chans;
    const float *pe_w, *pe_b, *pos;
    const float *neck0, *neck1w, *neck1b, *neck2, *neck3w, *neck3b;
    vit_block blk[SB_VIT_MAX_DEPTH];
};

/* ------------------------------------------------------------------ */
/* relative position tables                                            */
/* ------------------------------------------------------------------ */

void sb_vit_rel_pos_resize(const float *table, int64_t len, int64_t C, int64_t S, float *out)
{
    int64_t M = 2 * S - 1;
    if (len == M) {
        memcpy(out, table, (size_t)(M * C) * sizeof(float));
        return;
    }
    /* get_rel_pos: F.interpolate(table as [1, C, len], size=M, mode='linear'),
     * align_corners=False. PyTorch's arithmetic: scale = (float)len / M, source
     * index = scale * (m + 0.5) - 0.5 evaluated in double and rounded to float,
     * clamped at 0; i1 = i0 + 1 unless i0 is the last entry. */
    float scale = (float)len / (float)M;
    for (int64_t m = 0; m < M; m++) {
        float src = (float)((double)scale * ((double)m + 0.5) - 0.5);
        if (src < 0.f)
            src = 0.f;
        int64_t i0 = (int64_t)src;
        if (i0 > len - 1)
            i0 = len - 1;
        int64_t i1 = i0 < len - 1 ? i0 + 1 : i0;
        float l1 = src - (float)i0;
        if (l1 < 0.f)
            l1 = 0.f;
        if (l1 > 1.f)
            l1 = 1.f;
        float l0 = 1.f - l1;
        const float *a = table + i0 * C, *b = table + i1 * C;
        for (int64_t c = 0; c < C; c++)
            out[m * C + c] = l0 * a[c] + l1 * b[c];
    }
}

/* ------------------------------------------------------------------ */
/* attention with decomposed relative position                        */
/* ------------------------------------------------------------------ */
/*
 * rel_h[q=(qy,qx), ky] = sum_c q[c] Rh[qy - ky + S - 1][c]
 * rel_w[q=(qy,qx), kx] = sum_c q[c] Rw[qx - kx + S - 1][c]
 * with the unscaled q (MODEL.md 2.8, 6.6). The tables are stored transposed
 * and row-reversed, T[c][r'] = R[M-1-r'][c] (row stride TSTRIDE(S) with
 * zero padding), so that the table row qy - ky + S - 1 is column
 * S-1-qy+ky: for a fixed qy, rel_h over (qx, ky) is a small GEMM
 * Q[qx, c] x T[c, S-1-qy + ky]; for a fixed qx, rel_w over (qy, kx) is
 * Q[qy, c] x T[c, S-1-qx + kx]. One work item = (window, head, t) computes
 * rel_h for qy = t and rel_w for qx = t.
 */
#define TPAD 16
#define TSTRIDE(S) (2 * (S) - 1 + TPAD)

typedef struct {
    const float *qkv;
    int64_t S, L, heads, hd, C3;
    const float *tht, *twt; /* [hd, TSTRIDE(S)] */
    float *relh, *relw;     /* [nwin, heads, L, S] */
} relpos_job;

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

static inline __m256i tail_mask(int64_t n) /* lanes < n (n in 0..8) */
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

/* out[i*os + k] = sum_c a[i*as + c] b[c*bs + k] for i < R, k < N, c < K.
 * b rows must be readable up to the next multiple of 16 columns past N. */
static void small_gemm(const float *a, int64_t as, const float *b, int64_t bs, float *out,
                       int64_t os, int64_t R, int64_t N, int64_t K)
{
    for (int64_t k0 = 0; k0 < N; k0 += 16) {
        const int64_t nk = N - k0 < 16 ? N - k0 : 16;
        const __m256i m0 = tail_mask(nk > 8 ? 8 : nk), m1 = tail_mask(nk > 8 ? nk - 8 : 0);
        int64_t i = 0;
        for (; i + 4 <= R; i += 4) {
            __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00;
            __m256 c20 = c00, c21 = c00, c30 = c00, c31 = c00;
            const float *a0 = a + i * as, *a1 = a0 + as, *a2 = a1 + as, *a3 = a2 + as;
            const float *bp = b + k0;
            for (int64_t c = 0; c < K; c++, bp += bs) {
                __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
                __m256 x = _mm256_broadcast_ss(a0 + c);
                c00 = _mm256_fmadd_ps(x, b0, c00);
                c01 = _mm256_fmadd_ps(x, b1, c01);
                x = _mm256_broadcast_ss(a1 + c);
                c10 = _mm256_fmadd_ps(x, b0, c10);
                c11 = _mm256_fmadd_ps(x, b1, c11);
                x = _mm256_broadcast_ss(a2 + c);
                c20 = _mm256_fmadd_ps(x, b0, c20);
                c21 = _mm256_fmadd_ps(x, b1, c21);
                x = _mm256_broadcast_ss(a3 + c);
                c30 = _mm256_fmadd_ps(x, b0, c30);
                c31 = _mm256_fmadd_ps(x, b1, c31);
            }
            float *o = out + i * os + k0;
            _mm256_maskstore_ps(o, m0, c00);
            _mm256_maskstore_ps(o + 8, m1, c01);
            _mm256_maskstore_ps(o + os, m0, c10);
            _mm256_maskstore_ps(o + os + 8, m1, c11);
            _mm256_maskstore_ps(o + 2 * os, m0, c20);
            _mm256_maskstore_ps(o + 2 * os + 8, m1, c21);
            _mm256_maskstore_ps(o + 3 * os, m0, c30);
            _mm256_maskstore_ps(o + 3 * os + 8, m1, c31);
        }
        for (; i < R; i++) {
            __m256 c0 = _mm256_setzero_ps(), c1 = c0;
            const float *ai = a + i * as, *bp = b + k0;
            for (int64_t c = 0; c < K; c++, bp += bs) {
                __m256 x = _mm256_broadcast_ss(ai + c);
                c0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(bp), c0);
                c1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(bp + 8), c1);
            }
            _mm256_maskstore_ps(out + i * os + k0, m0, c0);
            _mm256_maskstore_ps(out + i * os + k0 + 8, m1, c1);
        }
    }
}
#else
static void small_gemm(const float *a, int64_t as, const float *b, int64_t bs, float *out,
                       int64_t os, int64_t R, int64_t N, int64_t K)
{
    for (int64_t i = 0; i < R; i++) {
        float *o = out + i * os;
        for (int64_t k = 0; k < N; k++)
            o[k] = 0.f;
        for (int64_t c = 0; c < K; c++) {
            const float x = a[i * as + c];
            const float *bp = b + c * bs;
            for (int64_t k = 0; k < N; k++)
                o[k] += x * bp[k];
        }
    }
}
#endif

static void relpos_range(void *arg, int64_t begin, int64_t end, int worker)
{
    (void)worker;
    const relpos_job *J = arg;
    const int64_t S = J->S, TS = TSTRIDE(S), hd = J->hd, L = J->L;
    for (int64_t it = begin; it < end; it++) {
        const int64_t t = it % S;
        const int64_t h = (it / S) % J->heads;
        const int64_t w = it / (S * J->heads);
        const float *qbase = J->qkv + w * L * J->C3 + h * hd;
        const int64_t obase = (w * J->heads + h) * L;
        /* rel_h, qy = t: rows qx (token t*S + qx), row stride S in the output */
        small_gemm(qbase + t * S * J->C3, J->C3, J->tht + (S - 1 - t), TS,
                   J->relh + (obase + t * S) * S, S, S, S, hd);
        /* rel_w, qx = t: rows qy (token qy*S + t), row stride S*S in the output */
        small_gemm(qbase + t * J->C3, S * J->C3, J->twt + (S - 1 - t), TS,
                   J->relw + (obase + t) * S, S * S, S, S, hd);
    }
}

typedef struct {
    const float *relh, *relw;
    int64_t heads, L, S;
} relpos_bias;

/* sb_attention's tile callback: scores[i, j] += rel_h[q, ky] + rel_w[q, kx]
 * for query q = q0 + i and key k = k0 + j = ky*S + kx. */
static void relpos_add(void *arg, int64_t batch, int64_t head, int64_t q0, int64_t nq, int64_t k0,
                       int64_t nk, float *scores, int64_t ld)
{
    const relpos_bias *R = arg;
    const int64_t S = R->S;
    const int64_t base = (batch * R->heads + head) * R->L;
    for (int64_t i = 0; i < nq; i++) {
        const float *rh = R->relh + (base + q0 + i) * S;
        const float *rw = R->relw + (base + q0 + i) * S;
        float *s = scores + i * ld;
        int64_t j = 0, ky = k0 / S, kx = k0 % S;
        while (j < nk) {
            int64_t run = S - kx;
            if (run > nk - j)
                run = nk - j;
            const float hv = rh[ky];
            const float *wv = rw + kx;
            float *sj = s + j;
            int64_t t = 0;
#if defined(__AVX2__) && defined(__FMA__)
            const __m256 h8 = _mm256_set1_ps(hv);
            for (; t + 8 <= run; t += 8)
                _mm256_storeu_ps(sj + t, _mm256_add_ps(_mm256_loadu_ps(sj + t),
                                                       _mm256_add_ps(h8, _mm256_loadu_ps(wv + t))));
#endif
            for (; t < run; t++)
                sj[t] += hv + wv[t];
            j += run;
            ky++;
            kx = 0;
        }
    }
}

size_t sb_vit_rel_attention_scratch_bytes(int64_t nwin, int64_t S, int64_t heads, int64_t hd,
                                          int threads)
{
    int64_t L = S * S;
    size_t b = 2 * ALIGN64((size_t)(hd * TSTRIDE(S)) * sizeof(float));
    b += 2 * ALIGN64((size_t)(nwin * heads * L * S) * sizeof(float));
    sb_attn_args a;
    memset(&a, 0, sizeof a);
    a.batch = nwin;
    a.heads = heads;
    a.Lq = a.Lk = L;
    a.head_dim = hd;
    b += sb_attention_scratch_bytes(&a, threads);
    return b;
}

int sb_vit_rel_attention(sb_ctx *ctx, const float *qkv, int64_t nwin, int64_t S, int64_t heads,
                         int64_t hd, const float *rel_h, const float *rel_w, float *out,
                         sb_arena *scratch, sb_error *err)
{
    if (nwin <= 0 || S <= 0 || heads <= 0 || hd <= 0)
        return sb_fail(err, SB_EINVAL, "vit attention: bad sizes nwin %lld S %lld heads %lld hd %lld",
                       (long long)nwin, (long long)S, (long long)heads, (long long)hd);
    const int64_t L = S * S, M = 2 * S - 1, TS = TSTRIDE(S), C = heads * hd;
    size_t mark = scratch ? sb_arena_mark(scratch) : 0;
    float *tht, *twt, *relh, *relw;
    size_t tb = (size_t)(hd * TS) * sizeof(float), rb = (size_t)(nwin * heads * L * S) * sizeof(float);
    if (scratch) {
        tht = sb_arena_alloc_checked(scratch, tb, "rel-pos table (h)", err);
        twt = tht ? sb_arena_alloc_checked(scratch, tb, "rel-pos table (w)", err) : NULL;
        relh = twt ? sb_arena_alloc_checked(scratch, rb, "rel-pos terms (h)", err) : NULL;
        relw = relh ? sb_arena_alloc_checked(scratch, rb, "rel-pos terms (w)", err) : NULL;
        if (!relw) {
            sb_arena_reset(scratch, mark);
            return err ? err->code : SB_ENOMEM;
        }
    } else {
        tht = malloc(tb);
        twt = malloc(tb);
        relh = malloc(rb);
        relw = malloc(rb);
        if (!tht || !twt || !relh || !relw) {
            free(tht), free(twt), free(relh), free(relw);
            return sb_fail(err, SB_ENOMEM, "vit attention: out of memory for rel-pos terms");
        }
    }
    memset(tht, 0, tb);
    memset(twt, 0, tb);
    for (int64_t r = 0; r < M; r++) /* transposed, rows reversed (see above) */
        for (int64_t c = 0; c < hd; c++) {
            tht[c * TS + (M - 1 - r)] = rel_h[r * hd + c];
            twt[c * TS + (M - 1 - r)] = rel_w[r * hd + c];
        }
    relpos_job J = {qkv, S, L, heads, hd, 3 * C, tht, twt, relh, relw};
    sb_parallel_for(ctx, nwin * heads * S, 1, relpos_range, &J);

    relpos_bias R = {relh, relw, heads, L, S};
    sb_attn_args a;
    memset(&a, 0, sizeof a);
    a.batch = nwin;
    a.heads = heads;
    a.Lq = a.Lk = L;
    a.head_dim = hd;
    a.q = qkv;
    a.q_row = 3 * C;
    a.q_batch = L * 3 * C;
    a.k = qkv + C;
    a.k_row = 3 * C;
    a.k_batch = L * 3 * C;
    a.v = qkv + 2 * C;
    a.v_row = 3 * C;
    a.v_batch = L * 3 * C;
    a.out = out;
    a.o_row = C;
    a.o_batch = L * C;
    /* head_dim ** -0.5 in Python (double), applied to a float32 tensor */
    a.scale = (float)(1.0 / sqrt((double)hd));
    a.bias = relpos_add;
    a.bias_arg = &R;
    int rc = sb_attention(ctx, &a, scratch, err);
    if (scratch)
        sb_arena_reset(scratch, mark);
    else
        free(tht), free(twt), free(relh), free(relw);
    return rc;
}

/* ------------------------------------------------------------------ */
/* weights                                                             */
/* ------------------------------------------------------------------ */

static const float *wget(sb_wbind *wb, const char *prefix, const char *name, int ndim,
                         const int64_t *shape, sb_error *err)
{
    char key[256];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    return sb_wbind_get(wb, key, ndim, shape, err);
}

#define WGET(dst, name, ...)                                                                 \
    do {                                                                                      \
        const int64_t shp_[] = {__VA_ARGS__};                                                 \
        (dst) = wget(wb, prefix, (name), (int)(sizeof shp_ / sizeof shp_[0]), shp_, err);     \
        if (!(dst))                                                                           \
            goto fail;                                                                        \
    } while (0)

static int is_global(const sb_vit_config *cfg, int i)
{
    for (int k = 0; k < cfg->n_global; k++)
        if (cfg->global_idx[k] == i)
            return 1;
    return 0;
}

int sb_vit_encoder_create(sb_vit_encoder **out, sb_wbind *wb, const char *prefix,
                          const sb_vit_config *cfg, sb_error *err)
{
    *out = NULL;
    if (!prefix)
        prefix = "";
    if (cfg->embed_dim <= 0 || cfg->num_heads <= 0 || cfg->embed_dim % cfg->num_heads ||
        cfg->depth <= 0 || cfg->depth > SB_VIT_MAX_DEPTH || cfg->patch_size <= 0 ||
        cfg->image_size <= 0 || cfg->image_size % cfg->patch_size || cfg->window_size < 0 ||
        cfg->mlp_dim <= 0 || cfg->out_chans <= 0)
        return sb_fail(err, SB_EINVAL,
                       "vit encoder: inconsistent config (embed %d heads %d depth %d patch %d "
                       "image %d window %d mlp %d out %d)",
                       cfg->embed_dim, cfg->num_heads, cfg->depth, cfg->patch_size,
                       cfg->image_size, cfg->window_size, cfg->mlp_dim, cfg->out_chans);
    sb_vit_encoder *e = calloc(1, sizeof *e);
    if (!e)
        return sb_fail(err, SB_ENOMEM, "vit encoder: out of memory");
    e->cfg = *cfg;
    const int64_t C = cfg->embed_dim, g = cfg->image_size / cfg->patch_size, p = cfg->patch_size;
    const int64_t hd = C / cfg->num_heads, O = cfg->out_chans, H = cfg->mlp_dim;
    e->grid = g;
    e->C = C;
    e->hd = hd;
    e->mlp = H;
    e->out_chans = O;
    WGET(e->pe_w, "patch_embed.proj.weight", C, 3, p, p);
    WGET(e->pe_b, "patch_embed.proj.bias", C);
    WGET(e->pos, "pos_embed", 1, g, g, C);
    for (int i = 0; i < cfg->depth; i++) {
        vit_block *B = &e->blk[i];
        char n[128];
#define BGET(dst, leaf, ...)                                                                 \
    do {                                                                                      \
        snprintf(n, sizeof n, "blocks.%d.%s", i, (leaf));                                     \
        WGET(dst, n, __VA_ARGS__);                                                            \
    } while (0)
        BGET(B->n1w, "norm1.weight", C);
        BGET(B->n1b, "norm1.bias", C);
        BGET(B->qkv_w, "attn.qkv.weight", 3 * C, C);
        BGET(B->qkv_b, "attn.qkv.bias", 3 * C);
        BGET(B->proj_w, "attn.proj.weight", C, C);
        BGET(B->proj_b, "attn.proj.bias", C);
        BGET(B->n2w, "norm2.weight", C);
        BGET(B->n2b, "norm2.bias", C);
        BGET(B->l1w, "mlp.lin1.weight", H, C);
        BGET(B->l1b, "mlp.lin1.bias", H);
        BGET(B->l2w, "mlp.lin2.weight", C, H);
        BGET(B->l2b, "mlp.lin2.bias", C);
#undef BGET
        B->window = is_global(cfg, i) ? 0 : cfg->window_size;
        B->S = B->window > 0 ? B->window : g;
        const int64_t M = 2 * B->S - 1;
        B->rel_h = malloc((size_t)(M * hd) * sizeof(float));
        B->rel_w = malloc((size_t)(M * hd) * sizeof(float));
        if (!B->rel_h || !B->rel_w) {
            sb_fail(err, SB_ENOMEM, "vit encoder: out of memory");
            goto fail;
        }
        for (int t = 0; t < 2; t++) {
            snprintf(n, sizeof n, "%sblocks.%d.attn.rel_pos_%c", prefix, i, t ? 'w' : 'h');
            /* A stored table may have another length than 2S-1: get_rel_pos
             * then interpolates it (linear) to 2S-1. Its width must be
             * head_dim. Random weights use the reference length. */
            int64_t shp[SB_MAX_DIMS] = {M, hd};
            if (sb_wbind_has(wb, n)) {
                int nd;
                if (sb_weights_shape(wb->w, n, &nd, shp, err) != SB_OK)
                    goto fail;
                if (nd != 2 || shp[0] < 1 || shp[1] != hd) {
                    sb_fail(err, SB_ESHAPE,
                            "%s: expected shape [L, %lld] (L = %lld for this config), found "
                            "ndim %d [%lld, %lld]", n, (long long)hd, (long long)M, nd,
                            (long long)shp[0], nd > 1 ? (long long)shp[1] : 0LL);
                    goto fail;
                }
            }
            const float *tab = sb_wbind_get(wb, n, 2, shp, err);
            if (!tab)
                goto fail;
            sb_vit_rel_pos_resize(tab, shp[0], hd, B->S, t ? B->rel_w : B->rel_h);
        }
    }
    WGET(e->neck0, "neck.0.weight", O, C, 1, 1);
    WGET(e->neck1w, "neck.1.weight", O);
    WGET(e->neck1b, "neck.1.bias", O);
    WGET(e->neck2, "neck.2.weight", O, O, 3, 3);
    WGET(e->neck3w, "neck.3.weight", O);
    WGET(e->neck3b, "neck.3.bias", O);
    *out = e;
    return SB_OK;
fail:
    sb_vit_encoder_free(e);
    return err ? err->code : SB_EFORMAT;
}

void sb_vit_encoder_free(sb_vit_encoder *e)
{
    if (!e)
        return;
    for (int i = 0; i < SB_VIT_MAX_DEPTH; i++) {
        free(e->blk[i].rel_h);
        free(e->blk[i].rel_w);
    }
    free(e);
}

/* ------------------------------------------------------------------ */
/* forward                                                             */
/* ------------------------------------------------------------------ */

static int64_t windows_of(int64_t g, int64_t ws)
{
    int64_t n = (g + ws - 1) / ws;
    return n * n;
}

size_t sb_vit_encoder_scratch_bytes(const sb_vit_encoder *e, int64_t B, int threads)
{
    const int64_t g = e->grid, T = g * g, C = e->C, O = e->out_chans;
    const int p = e->cfg.patch_size;
    size_t fl = sizeof(float);
    size_t resid = ALIGN64((size_t)(B * T * C) * fl);
    /* patch embed: NCHW output + conv scratch */
    size_t pe = ALIGN64((size_t)(B * C * T) * fl) +
                ALIGN64(sb_conv2d_scratch_bytes(B, 3, e->cfg.image_size, e->cfg.image_size, C, p, p, p, 0, 1));
    /* one block, one image: worst of the attention and MLP phases */
    size_t blk = 0;
    for (int i = 0; i < e->cfg.depth; i++) {
        const vit_block *bk = &e->blk[i];
        int64_t nwin = bk->window ? windows_of(g, bk->window) : 1;
        int64_t Lp = bk->window ? nwin * bk->window * bk->window : T;
        size_t att = ALIGN64((size_t)(T * C) * fl) + ALIGN64((size_t)(Lp * 3 * C) * fl);
        size_t qt = bk->window ? ALIGN64((size_t)(T * 3 * C) * fl) : 0;
        size_t att2 = ALIGN64((size_t)(Lp * C) * fl) +
                      sb_vit_rel_attention_scratch_bytes(nwin, bk->S, e->cfg.num_heads, e->hd, threads);
        size_t att3 = ALIGN64((size_t)(Lp * C) * fl) + ALIGN64((size_t)(T * C) * fl);
        att += qt > att2 ? (qt > att3 ? qt : att3) : (att2 > att3 ? att2 : att3);
        size_t mlp = ALIGN64((size_t)(T * C) * fl) + ALIGN64((size_t)(T * e->mlp) * fl);
        if (att > blk)
            blk = att;
        if (mlp > blk)
            blk = mlp;
    }
    size_t neck = ALIGN64((size_t)(T * O) * fl) * 2 +
                  ALIGN64(sb_conv2d_scratch_bytes(1, O, g, g, O, 3, 3, 1, 1, 1));
    size_t body = pe > blk ? pe : blk;
    if (neck > body)
        body = neck;
    return resid + body + 4096;
}

int64_t sb_vit_encoder_grid(const sb_vit_encoder *e)
{
    return e->grid;
}

/* FLOPs of block i for one image (MODEL.md 5: padded windows; the rel-pos
 * einsums are bmm's in the reference and counted too). */
static double block_flops(const sb_vit_encoder *e, int i)
{
    const vit_block *bk = &e->blk[i];
    const double g = (double)e->grid, T = g * g, C = (double)e->C, H = (double)e->mlp;
    const double heads = e->cfg.num_heads, hd = (double)e->hd, S = (double)bk->S;
    double nwin = bk->window ? (double)windows_of(e->grid, bk->window) : 1.0;
    double L = S * S, Lp = nwin * L;
    double f = 2.0 * Lp * C * 3.0 * C;              /* qkv */
    f += 2.0 * 2.0 * nwin * heads * L * L * hd;     /* q k^T and a v */
    f += 2.0 * 2.0 * nwin * heads * L * S * hd;     /* rel_h and rel_w */
    f += 2.0 * Lp * C * C;                          /* proj */
    f += 2.0 * 2.0 * T * C * H;                     /* lin1, lin2 */
    return f;
}

double sb_vit_encoder_flops(const sb_vit_encoder *e)
{
    const double g = (double)e->grid, T = g * g, C = (double)e->C, O = (double)e->out_chans;
    const double p = e->cfg.patch_size;
    double f = 2.0 * T * C * 3.0 * p * p; /* patch embed */
    for (int i = 0; i < e->cfg.depth; i++)
        f += block_flops(e, i);
    f += 2.0 * T * C * O + 2.0 * T * O * O * 9.0; /* neck */
    return f;
}

#define ALLOC(dst, nfloats, what)                                                             \
    do {                                                                                      \
        (dst) = sb_arena_alloc_checked(scratch, (size_t)(nfloats) * sizeof(float), (what), err); \
        if (!(dst))                                                                           \
            goto fail;                                                                        \
    } while (0)

int sb_vit_encoder_forward(const sb_vit_encoder *e, sb_ctx *ctx, const float *img, int64_t B,
                           float *out, sb_arena *scratch, sb_modprof *mp, sb_dump_fn dump,
                           void *dump_arg, sb_error *err)
{
    if (!e || !img || !out || !scratch || B <= 0)
        return sb_fail(err, SB_EINVAL, "vit encoder forward: bad arguments");
    const sb_vit_config *cfg = &e->cfg;
    const int64_t g = e->grid, T = g * g, C = e->C, O = e->out_chans, H = e->mlp;
    const int64_t S_img = cfg->image_size;
    const int p = cfg->patch_size;
    size_t mark0 = sb_arena_mark(scratch);
    float *x;
    ALLOC(x, B * T * C, "vit residual stream");

    /* patch embed (conv k=p s=p, bias) -> NHWC, dump, + pos_embed */
    sb_modprof_begin(mp, "vit.patch_embed");
    {
        size_t m = sb_arena_mark(scratch);
        float *pe;
        ALLOC(pe, B * C * T, "vit patch embed");
        if (sb_conv2d(ctx, img, B, 3, S_img, S_img, e->pe_w, e->pe_b, C, p, p, p, 0, 1, pe,
                      scratch, err) != SB_OK) {
            sb_error_prefix(err, "vit patch embed");
            goto fail;
        }
        sb_nchw_to_nhwc(ctx, pe, B, C, g, g, x);
        sb_arena_reset(scratch, m);
        sb_dump4(dump, dump_arg, "encoder/patch_embed", x, B, g, g, C);
        for (int64_t b = 0; b < B; b++)
            sb_add(ctx, x + b * T * C, e->pos, T * C);
    }
    sb_modprof_flops(mp, (double)B * 2.0 * (double)(T * C * 3 * p * p));

    for (int i = 0; i < cfg->depth; i++) {
        const vit_block *bk = &e->blk[i];
        const int64_t ws = bk->window;
        const int64_t nwin = ws ? windows_of(g, ws) : 1;
        const int64_t Lp = ws ? nwin * ws * ws : T;
        sb_modprof_begin(mp, ws ? "vit.block.windowed" : "vit.block.global");
        for (int64_t b = 0; b < B; b++) {
            float *xb = x + b * T * C;
            size_t m = sb_arena_mark(scratch);
            /* attention branch */
            float *xn, *qkv, *ao, *y;
            ALLOC(xn, T * C, "vit LN1 output");
            sb_layernorm(ctx, xb, T, C, bk->n1w, bk->n1b, VIT_LN_EPS, xn);
            ALLOC(qkv, Lp * 3 * C, "vit qkv");
            if (ws) {
                /* The reference partitions LN1(x) with zero padding and runs
                 * qkv on every padded window. A zero token's qkv is exactly the
                 * bias, so: qkv on the T real tokens, partition the result,
                 * and give the padded rows the bias (same values, ~3% fewer
                 * FLOPs than MODEL.md 5 counts; padded keys stay unmasked,
                 * MODEL.md 6.8). */
                size_t mq = sb_arena_mark(scratch);
                float *qt;
                ALLOC(qt, T * 3 * C, "vit qkv (tokens)");
                sb_linear(ctx, xn, T, C, bk->qkv_w, bk->qkv_b, 3 * C, qt);
                sb_window_partition(ctx, qt, 1, g, g, 3 * C, ws, qkv);
                sb_arena_reset(scratch, mq);
                if (g % ws) {
                    const int64_t nwx = (g + ws - 1) / ws;
                    for (int64_t r = 0; r < Lp; r++) {
                        int64_t wi = r / (ws * ws), li = r % (ws * ws);
                        int64_t yy = (wi / nwx) * ws + li / ws, xx = (wi % nwx) * ws + li % ws;
                        if (yy >= g || xx >= g)
                            memcpy(qkv + r * 3 * C, bk->qkv_b, (size_t)(3 * C) * sizeof(float));
                    }
                }
            } else {
                sb_linear(ctx, xn, T, C, bk->qkv_w, bk->qkv_b, 3 * C, qkv);
            }
            ALLOC(ao, Lp * C, "vit attention output");
            if (sb_vit_rel_attention(ctx, qkv, nwin, bk->S, cfg->num_heads, e->hd, bk->rel_h,
                                     bk->rel_w, ao, scratch, err) != SB_OK) {
                sb_error_prefix(err, "vit block %d attention", i);
                goto fail;
            }
            /* proj is per token: crop the windows first (the padded rows'
             * outputs are discarded by the reference's unpartition) */
            if (ws)
                sb_window_unpartition(ctx, ao, 1, g, g, C, ws, xn); /* LN1 output is dead */
            ALLOC(y, T * C, "vit attention projection");
            sb_linear(ctx, ws ? xn : ao, T, C, bk->proj_w, bk->proj_b, C, y);
            sb_add(ctx, xb, y, T * C);
            sb_arena_reset(scratch, m);
            /* MLP branch */
            float *hid;
            ALLOC(xn, T * C, "vit LN2 output");
            ALLOC(hid, T * H, "vit MLP hidden");
            sb_layernorm(ctx, xb, T, C, bk->n2w, bk->n2b, VIT_LN_EPS, xn);
            sb_linear_gelu(ctx, xn, T, C, bk->l1w, bk->l1b, H, hid);
            sb_linear(ctx, hid, T, H, bk->l2w, bk->l2b, C, xn);
            sb_add(ctx, xb, xn, T * C);
            sb_arena_reset(scratch, m);
        }
        sb_modprof_flops(mp, (double)B * block_flops(e, i));
        if (dump) {
            char name[64];
            snprintf(name, sizeof name, "encoder/block_%02d", i);
            sb_dump4(dump, dump_arg, name, x, B, g, g, C);
        }
    }

    /* neck, per image */
    sb_modprof_begin(mp, "vit.neck");
    for (int64_t b = 0; b < B; b++) {
        size_t m = sb_arena_mark(scratch);
        float *y, *ycm;
        float *ob = out + b * O * T;
        ALLOC(y, T * O, "vit neck 1x1");
        ALLOC(ycm, T * O, "vit neck NCHW");
        /* 1x1 conv without bias = token-major linear; LN2d on NHWC = LN over C */
        sb_linear(ctx, x + b * T * C, T, C, e->neck0, NULL, O, y);
        sb_layernorm(ctx, y, T, O, e->neck1w, e->neck1b, VIT_LN_EPS, y);
        sb_nhwc_to_nchw(ctx, y, 1, g, g, O, ycm);
        if (sb_conv2d(ctx, ycm, 1, O, g, g, e->neck2, NULL, O, 3, 3, 1, 1, 1, ob, scratch, err) !=
            SB_OK) {
            sb_error_prefix(err, "vit neck conv 3x3");
            goto fail;
        }
        sb_layernorm2d(ctx, ob, 1, O, T, e->neck3w, e->neck3b, VIT_LN_EPS, ob);
        sb_arena_reset(scratch, m);
    }
    sb_modprof_flops(mp, (double)B * (2.0 * (double)(T * C * O) + 2.0 * (double)(T * O * O * 9)));
    sb_modprof_end(mp);
    sb_dump4(dump, dump_arg, "encoder/image_embeddings", out, B, O, g, g);
    sb_arena_reset(scratch, mark0);
    return SB_OK;
fail:
    sb_modprof_end(mp);
    sb_arena_reset(scratch, mark0);
    return err ? err->code : SB_ENOMEM;
}
