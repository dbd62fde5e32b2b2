/*
 * Hiera trunk of the SAM2 image encoder (`hieradet_sam2.Hiera`, MODEL.md
 * 2.2.1-2.2.4), NHWC throughout. SAMed-2's block (`hieradet.Hiera`) is the
 * same block with a TemporalAdapter on the attention output; it plugs in
 * through the adapter hook (sb_hiera_adapter_fn), not a second copy.
 *
 * Memory: a block never materialises its full qkv. Windows are processed in
 * chunks of about SB_HIERA_CHUNK_TOKENS tokens: gather (zero-padded) ->
 * qkv -> (q-pool) -> attention -> proj -> (adapter) -> scatter-add onto the
 * shortcut. The q-pool shortcut projection and the MLP run on row/token
 * chunks the same way.
 */
#include "sam2_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SB_HIERA_CHUNK_TOKENS 8192

#if defined(__AVX2__)
#include <immintrin.h>
#endif

/* d[c] = max of the four rows, the scalar rule m = p > m ? p : m in that
 * order (a NaN never replaces m; _mm256_max_ps(p, m) is the same rule). */
static inline void max4_row(float *restrict d, const float *p00, const float *p01, const float *p10,
                            const float *p11, int64_t C)
{
    int64_t c = 0;
#if defined(__AVX2__)
    for (; c + 8 <= C; c += 8) {
        __m256 m = _mm256_loadu_ps(p00 + c);
        m = _mm256_max_ps(_mm256_loadu_ps(p01 + c), m);
        m = _mm256_max_ps(_mm256_loadu_ps(p10 + c), m);
        m = _mm256_max_ps(_mm256_loadu_ps(p11 + c), m);
        _mm256_storeu_ps(d + c, m);
    }
#endif
    for (; c < C; c++) {
        float m = p00[c];
        m = p01[c] > m ? p01[c] : m;
        m = p10[c] > m ? p10[c] : m;
        m = p11[c] > m ? p11[c] : m;
        d[c] = m;
    }
}

/* dst = base + src, or dst += src when base is NULL */
static inline void add_row(float *dst, const float *base, const float *restrict src, int64_t n)
{
    const float *a = base ? base : dst;
    int64_t k = 0;
#if defined(__AVX2__)
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(dst + k, _mm256_add_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(src + k)));
#endif
    for (; k < n; k++)
        dst[k] = a[k] + src[k];
}

int sb_hiera_init(sb_hiera *h, const sb_sam2_config *cfg, sb_wbind *wb, const char *prefix,
                  sb_error *err)
{
    memset(h, 0, sizeof *h);
    int depth = 0;
    for (int s = 0; s < cfg->n_stages; s++)
        depth += cfg->stages[s];
    h->n_blocks = depth;
    h->n_stages = cfg->n_stages;
    for (int s = 0, acc = 0; s < cfg->n_stages; s++) {
        acc += cfg->stages[s];
        h->stage_ends[s] = acc - 1;
    }
    h->embed_dim = cfg->embed_dim;
    h->image_size = cfg->image_size;
    /* PatchEmbed: Conv2d k7 s4 p3 */
    h->H0 = sb_conv_out_size(cfg->image_size, 7, 4, 3);
    h->W0 = h->H0;
    int64_t C0 = cfg->embed_dim;
    int64_t shp4[4];
    shp4[0] = C0; shp4[1] = 3; shp4[2] = 7; shp4[3] = 7;
    if (!(h->patch_w = sb_wbind_getf(wb, err, 4, shp4, "%spatch_embed.proj.weight", prefix)))
        return err->code;
    if (!(h->patch_b = sb_wbind_getf(wb, err, 1, &C0, "%spatch_embed.proj.bias", prefix)))
        return err->code;
    h->pos_bkg_h = cfg->pos_bkg_h;
    h->pos_bkg_w = cfg->pos_bkg_w;
    h->pos_win_size = cfg->window_spec[0];
    shp4[0] = 1; shp4[1] = C0; shp4[2] = cfg->pos_bkg_h; shp4[3] = cfg->pos_bkg_w;
    if (!(h->pos_bkg = sb_wbind_getf(wb, err, 4, shp4, "%spos_embed", prefix)))
        return err->code;
    shp4[2] = shp4[3] = cfg->window_spec[0];
    if (!(h->pos_win = sb_wbind_getf(wb, err, 4, shp4, "%spos_embed_window", prefix)))
        return err->code;

    /* Block schedule (MODEL.md 2.2.3): window lags one block; q-pool at the
     * first block of stages 2..q_pool+1; dims/heads multiply there. */
    int q_pool_blocks[SB_CFG_MAX_STAGES];
    for (int s = 0; s < cfg->q_pool; s++)
        q_pool_blocks[s] = h->stage_ends[s] + 1;
    int cur_stage = 1;
    double embed = cfg->embed_dim;
    int heads = cfg->num_heads;
    for (int i = 0; i < depth; i++) {
        sb_hiera_block *b = &h->blk[i];
        int dim_out = (int)embed;
        int window = cfg->window_spec[cur_stage - 1];
        for (int g = 0; g < cfg->n_global; g++)
            if (cfg->global_att_blocks[g] == i)
                window = 0;
        int stage_change = 0;
        for (int s = 0; s < cfg->n_stages; s++)
            if (h->stage_ends[s] == i - 1)
                stage_change = 1;
        if (stage_change) {
            dim_out = (int)(embed * cfg->dim_mul);
            heads = (int)(heads * cfg->head_mul);
            cur_stage++;
        }
        b->dim = (int)embed;
        b->dim_out = dim_out;
        b->heads = heads;
        b->window = window;
        b->q_pool = 0;
        b->mlp_hidden = (int)((double)dim_out * cfg->mlp_ratio);
        for (int s = 0; s < cfg->q_pool; s++)
            if (q_pool_blocks[s] == i)
                b->q_pool = 1;
        if (heads < 1 || dim_out % heads)
            return sb_fail(err, SB_EINVAL, "trunk block %d: %d channels not divisible by %d heads", i,
                           dim_out, heads);
        int64_t Ci = b->dim, Co = b->dim_out, Ch = b->mlp_hidden;
        int64_t s2[2];
#define GETW(field, nd, key)                                                                   \
    do {                                                                                       \
        if (!(b->field = sb_wbind_getf(wb, err, nd, s2, "%sblocks.%d." key, prefix, i)))       \
            return err->code;                                                                  \
    } while (0)
        s2[0] = Ci;
        GETW(norm1_w, 1, "norm1.weight");
        GETW(norm1_b, 1, "norm1.bias");
        s2[0] = 3 * Co; s2[1] = Ci;
        GETW(qkv_w, 2, "attn.qkv.weight");
        GETW(qkv_b, 1, "attn.qkv.bias");
        s2[0] = Co; s2[1] = Co;
        GETW(attn_proj_w, 2, "attn.proj.weight");
        GETW(attn_proj_b, 1, "attn.proj.bias");
        GETW(norm2_w, 1, "norm2.weight");
        GETW(norm2_b, 1, "norm2.bias");
        s2[0] = Ch; s2[1] = Co;
        GETW(mlp0_w, 2, "mlp.layers.0.weight");
        GETW(mlp0_b, 1, "mlp.layers.0.bias");
        s2[0] = Co; s2[1] = Ch;
        GETW(mlp1_w, 2, "mlp.layers.1.weight");
        GETW(mlp1_b, 1, "mlp.layers.1.bias");
        if (Ci != Co) {
            s2[0] = Co; s2[1] = Ci;
            GETW(proj_w, 2, "proj.weight");
            GETW(proj_b, 1, "proj.bias");
        }
#undef GETW
        embed = dim_out;
    }

    /* Position embedding (MODEL.md 2.2.2): bicubic(pos_embed -> H0 x W0)
     * + tile(pos_embed_window), precomputed once as NHWC. The tile needs
     * H0, W0 multiples of the window table (as `tile` does in PyTorch). */
    int64_t ws0 = h->pos_win_size;
    if (ws0 < 1 || h->H0 % ws0 || h->W0 % ws0)
        return sb_fail(err, SB_EINVAL,
                       "trunk: patch grid %lldx%lld is not a multiple of window_spec[0] = %lld (pos_embed_window tiling)",
                       (long long)h->H0, (long long)h->W0, (long long)ws0);
    float *chw = malloc((size_t)(C0 * h->H0 * h->W0) * sizeof(float));
    h->pos_embed = malloc((size_t)(C0 * h->H0 * h->W0) * sizeof(float));
    if (!chw || !h->pos_embed) {
        free(chw);
        return sb_fail(err, SB_ENOMEM, "trunk: cannot allocate the position embedding");
    }
    sb_interp_bicubic(NULL, h->pos_bkg, C0, h->pos_bkg_h, h->pos_bkg_w, chw, h->H0, h->W0);
    for (int64_t c = 0; c < C0; c++)
        for (int64_t y = 0; y < h->H0; y++)
            for (int64_t x = 0; x < h->W0; x++)
                h->pos_embed[(y * h->W0 + x) * C0 + c] =
                    chw[(c * h->H0 + y) * h->W0 + x] + h->pos_win[(c * ws0 + y % ws0) * ws0 + x % ws0];
    free(chw);
    return SB_OK;
}

void sb_hiera_release(sb_hiera *h)
{
    if (!h)
        return;
    free(h->pos_embed);
    h->pos_embed = NULL;
}

int sb_hiera_stage_dim(const sb_hiera *h, int s) { return h->blk[h->stage_ends[s]].dim_out; }

int64_t sb_hiera_stage_side(const sb_hiera *h, int s)
{
    int64_t side = h->H0;
    for (int i = 0; i <= h->stage_ends[s]; i++)
        if (h->blk[i].q_pool)
            side /= 2;
    return side;
}

/* ---- block pieces ------------------------------------------------------------ */

/* Shortcut of a dim-changing block: y = maxpool2x2(proj(xn)) (MODEL.md 2.2.4:
 * proj on the NORMED x, then pool), on chunks of row pairs. Without q-pool
 * (not in any release) it is proj alone. */
static int shortcut_proj(const sb_hiera_block *b, sb_ctx *ctx, const float *xn, int64_t B, int64_t H,
                         int64_t W, float *y, int64_t Ho, int64_t Wo, int64_t ctok, sb_arena *a,
                         sb_modprof *mp, sb_error *err)
{
    int64_t Ci = b->dim, Co = b->dim_out;
    if (!b->q_pool) {
        sb_linear(ctx, xn, B * H * W, Ci, b->proj_w, b->proj_b, Co, y);
        sb_modprof_flops(mp, sb_flops_linear(B * H * W, Ci, Co));
        return SB_OK;
    }
    int64_t rows_per = ctok / (2 * W);
    if (rows_per < 1)
        rows_per = 1;
    size_t mark = sb_arena_mark(a);
    float *t = sb_arena_alloc_checked(a, (size_t)(rows_per * 2 * W * Co) * sizeof(float), "shortcut proj", err);
    if (!t)
        return err->code;
    for (int64_t bi = 0; bi < B; bi++) {
        for (int64_t oy0 = 0; oy0 < Ho; oy0 += rows_per) {
            int64_t nr = Ho - oy0 < rows_per ? Ho - oy0 : rows_per;
            /* rows 2*oy0 .. 2*(oy0+nr)-1 are contiguous in NHWC */
            const float *src = xn + ((bi * H + 2 * oy0) * W) * Ci;
            sb_linear(ctx, src, nr * 2 * W, Ci, b->proj_w, b->proj_b, Co, t);
            sb_modprof_flops(mp, sb_flops_linear(nr * 2 * W, Ci, Co));
            for (int64_t r = 0; r < nr; r++) {
                float *dst = y + ((bi * Ho + oy0 + r) * Wo) * Co;
                const float *r0 = t + (2 * r) * W * Co, *r1 = r0 + W * Co;
                for (int64_t ox = 0; ox < Wo; ox++) {
                    const float *p00 = r0 + 2 * ox * Co, *p01 = p00 + Co, *p10 = r1 + 2 * ox * Co,
                                *p11 = p10 + Co;
                    max4_row(dst + ox * Co, p00, p01, p10, p11, Co);
                }
            }
        }
    }
    sb_arena_reset(a, mark);
    return SB_OK;
}

typedef struct {
    int64_t B, H, W;      /* input grid */
    int64_t wh, ww;       /* input window (H, W for global) */
    int64_t nwy, nwx;     /* windows per image */
    int64_t owh, oww;     /* output window */
    int64_t Ho, Wo;       /* output grid */
} win_geom;

/* Gathers windows [first, first+n) of xn (NHWC, zero padding) into w[n, wh, ww, C]. */
static void gather_windows(const float *xn, const win_geom *g, int64_t C, int64_t first, int64_t n,
                           float *w)
{
    int64_t per = g->nwy * g->nwx;
    for (int64_t i = 0; i < n; i++) {
        int64_t gw = first + i, b = gw / per, r = gw % per, wy = r / g->nwx, wx = r % g->nwx;
        for (int64_t ty = 0; ty < g->wh; ty++) {
            int64_t y = wy * g->wh + ty;
            float *dst = w + ((i * g->wh + ty) * g->ww) * C;
            if (y >= g->H) {
                memset(dst, 0, (size_t)(g->ww * C) * sizeof(float));
                continue;
            }
            int64_t x0 = wx * g->ww;
            int64_t nx = g->W - x0 < g->ww ? g->W - x0 : g->ww;
            memcpy(dst, xn + ((b * g->H + y) * g->W + x0) * C, (size_t)(nx * C) * sizeof(float));
            if (nx < g->ww)
                memset(dst + nx * C, 0, (size_t)((g->ww - nx) * C) * sizeof(float));
        }
    }
}

/* Adds windows a[n, owh, oww, C] onto y (NHWC [B,Ho,Wo,C]), cropping the
 * padding; with base (same layout as y) y = base + a instead of y += a. */
static void scatter_add_windows(float *y, const float *base, const win_geom *g, int64_t C,
                                int64_t first, int64_t n, const float *a)
{
    int64_t per = g->nwy * g->nwx;
    for (int64_t i = 0; i < n; i++) {
        int64_t gw = first + i, b = gw / per, r = gw % per, wy = r / g->nwx, wx = r % g->nwx;
        for (int64_t ty = 0; ty < g->owh; ty++) {
            int64_t oy = wy * g->owh + ty;
            if (oy >= g->Ho)
                break;
            int64_t x0 = wx * g->oww;
            int64_t nx = g->Wo - x0 < g->oww ? g->Wo - x0 : g->oww;
            int64_t off = ((b * g->Ho + oy) * g->Wo + x0) * C;
            const float *src = a + ((i * g->owh + ty) * g->oww) * C;
            add_row(y + off, base ? base + off : NULL, src, nx * C);
        }
    }
}

/* q of qkv [n, wh, ww, 3C] (channels [0,C)) max-pooled 2x2 (floor) into qp [n, wh/2, ww/2, C]. */
static void pool_q(const float *qkv, int64_t n, int64_t wh, int64_t ww, int64_t C, float *qp)
{
    int64_t ph = wh / 2, pw = ww / 2, C3 = 3 * C;
    for (int64_t i = 0; i < n; i++)
        for (int64_t py = 0; py < ph; py++)
            for (int64_t px = 0; px < pw; px++) {
                const float *p00 = qkv + ((i * wh + 2 * py) * ww + 2 * px) * C3;
                const float *p01 = p00 + C3, *p10 = p00 + ww * C3, *p11 = p10 + C3;
                max4_row(qp + ((i * ph + py) * pw + px) * C, p00, p01, p10, p11, C);
            }
}

/* The three window loops over the pool (windows are independent; each
 * window writes its own output rows, so no two workers touch the same data). */
typedef struct {
    int kind; /* 0 gather, 1 scatter-add, 2 pool q, 3 dst = base + src (contiguous) */
    const win_geom *g;
    const float *src;
    float *dst;
    int64_t C, first;
    const float *base; /* kinds 1 and 3 */
} win_job;

static void win_range(void *arg, int64_t i0, int64_t i1, int worker)
{
    (void)worker;
    const win_job *j = arg;
    if (j->kind == 0)
        gather_windows(j->src, j->g, j->C, j->first + i0, i1 - i0, j->dst + i0 * j->g->wh * j->g->ww * j->C);
    else if (j->kind == 1)
        scatter_add_windows(j->dst, j->base, j->g, j->C, j->first + i0, i1 - i0,
                            j->src + i0 * j->g->owh * j->g->oww * j->C);
    else if (j->kind == 3) /* items are elements, in blocks of C */
        add_row(j->dst + i0 * j->C, j->base + i0 * j->C, j->src + i0 * j->C, (i1 - i0) * j->C);
    else
        pool_q(j->src + i0 * j->g->wh * j->g->ww * 3 * j->C, i1 - i0, j->g->wh, j->g->ww, j->C,
               j->dst + i0 * (j->g->wh / 2) * (j->g->ww / 2) * j->C);
}

static void win_parallel(sb_ctx *ctx, int kind, const win_geom *g, const float *src, float *dst, int64_t C,
                         int64_t first, int64_t n, const float *base)
{
    win_job j = {kind, g, src, dst, C, first, base};
    sb_parallel_for(ctx, n, kind == 3 ? 4096 / C + 1 : 1, win_range, &j);
}

static int hiera_block_forward(const sb_hiera *h, int bi, sb_ctx *ctx, const float *x, int64_t B,
                               int64_t H, int64_t W, float *y, int64_t *pHo, int64_t *pWo,
                               sb_arena *a, sb_modprof *mp, sb_error *err)
{
    const sb_hiera_block *b = &h->blk[bi];
    int64_t Ci = b->dim, Co = b->dim_out, heads = b->heads, hd = Co / heads;
    int64_t Ho = b->q_pool ? H / 2 : H, Wo = b->q_pool ? W / 2 : W;
    *pHo = Ho;
    *pWo = Wo;
    size_t mark = sb_arena_mark(a);
    int rc = SB_OK;
    float *xn = sb_arena_alloc_checked(a, (size_t)(B * H * W * Ci) * sizeof(float), "hiera norm1", err);
    if (!xn)
        return err->code;
    sb_layernorm(ctx, x, B * H * W, Ci, b->norm1_w, b->norm1_b, 1e-6f, xn);

    /* shortcut. With Ci == Co it is x itself: not copied into y, the
     * attention residual writes y = x + attn directly (`res`), so y is
     * written once instead of copied and then updated. */
    const float *res = NULL;
    if (Ci != Co) {
        if ((rc = shortcut_proj(b, ctx, xn, B, H, W, y, Ho, Wo,
                                h->chunk_tokens > 0 ? h->chunk_tokens : SB_HIERA_CHUNK_TOKENS, a, mp, err)))
            goto done;
    } else if (!b->q_pool) {
        res = x;
    } else {
        memcpy(y, x, (size_t)(B * H * W * Ci) * sizeof(float));
    }

    /* window geometry (MODEL.md 2.2.4) */
    win_geom g;
    g.B = B; g.H = H; g.W = W; g.Ho = Ho; g.Wo = Wo;
    if (b->window > 0) {
        g.wh = g.ww = b->window;
        g.nwy = (H + b->window - 1) / b->window;
        g.nwx = (W + b->window - 1) / b->window;
        int64_t ows = b->q_pool ? b->window / 2 : b->window;
        g.owh = g.oww = ows;
        if (ows < 1 || (Ho + ows - 1) / ows != g.nwy || (Wo + ows - 1) / ows != g.nwx) {
            rc = sb_fail(err, SB_EUNSUPPORTED,
                         "window %d with q-pooling gives %lldx%lld input windows but the "
                         "%lldx%lld output grid needs a different count (the reference cannot run this either)",
                         b->window, (long long)g.nwy, (long long)g.nwx, (long long)Ho, (long long)Wo);
            goto done;
        }
    } else {
        g.wh = H; g.ww = W; g.nwy = g.nwx = 1;
        g.owh = Ho; g.oww = Wo;
    }
    int64_t L = g.wh * g.ww, Lq = g.owh * g.oww;
    if (b->q_pool && (g.wh / 2 != g.owh || g.ww / 2 != g.oww)) {
        rc = sb_fail(err, SB_EINVAL, "inconsistent pooled window");
        goto done;
    }
    int64_t nwin = B * g.nwy * g.nwx;
    int64_t ctok = h->chunk_tokens > 0 ? h->chunk_tokens : SB_HIERA_CHUNK_TOKENS;
    int64_t chunk = ctok / L;
    if (chunk < 1)
        chunk = 1;
    if (h->adapter) { /* temporal pairs must not straddle chunks */
        chunk += chunk & 1;
        if (nwin % 2) {
            rc = sb_fail(err, SB_EINVAL,
                         "the temporal adapter pairs windows but there are %lld (batch %lld must be even)",
                         (long long)nwin, (long long)B);
            goto done;
        }
    }
    if (chunk > nwin)
        chunk = nwin;
    {
        size_t m2 = sb_arena_mark(a);
        float *wbuf = sb_arena_alloc_checked(a, (size_t)(chunk * L * Ci) * sizeof(float), "hiera windows", err);
        float *qkv = wbuf ? sb_arena_alloc_checked(a, (size_t)(chunk * L * 3 * Co) * sizeof(float), "hiera qkv", err) : NULL;
        float *qp = (qkv && b->q_pool) ? sb_arena_alloc_checked(a, (size_t)(chunk * Lq * Co) * sizeof(float), "hiera pooled q", err) : NULL;
        float *ao = qkv ? sb_arena_alloc_checked(a, (size_t)(chunk * Lq * Co) * sizeof(float), "hiera attention out", err) : NULL;
        float *ap = ao ? sb_arena_alloc_checked(a, (size_t)(chunk * Lq * Co) * sizeof(float), "hiera attention proj", err) : NULL;
        if (!ap || (b->q_pool && !qp)) {
            rc = err->code;
            goto done;
        }
        for (int64_t w0 = 0; w0 < nwin; w0 += chunk) {
            int64_t n = nwin - w0 < chunk ? nwin - w0 : chunk;
            const float *src = xn;
            if (b->window > 0) {
                win_parallel(ctx, 0, &g, xn, wbuf, Ci, w0, n, NULL);
                src = wbuf;
            } else {
                src = xn + w0 * L * Ci; /* whole images */
            }
            sb_linear(ctx, src, n * L, Ci, b->qkv_w, b->qkv_b, 3 * Co, qkv);
            sb_modprof_flops(mp, sb_flops_linear(n * L, Ci, 3 * Co));
            sb_attn_args at;
            memset(&at, 0, sizeof at);
            at.batch = n;
            at.heads = heads;
            at.Lq = Lq;
            at.Lk = L;
            at.head_dim = hd;
            if (b->q_pool) {
                win_parallel(ctx, 2, &g, qkv, qp, Co, 0, n, NULL);
                at.q = qp;
                at.q_row = Co;
                at.q_batch = Lq * Co;
            } else {
                at.q = qkv;
                at.q_row = 3 * Co;
                at.q_batch = L * 3 * Co;
            }
            at.k = qkv + Co;
            at.k_row = 3 * Co;
            at.k_batch = L * 3 * Co;
            at.v = qkv + 2 * Co;
            at.v_row = 3 * Co;
            at.v_batch = L * 3 * Co;
            at.out = ao;
            at.o_row = Co;
            at.o_batch = Lq * Co;
            at.scale = 1.0f / sqrtf((float)hd);
            if ((rc = sb_attention(ctx, &at, a, err)))
                goto done;
            sb_modprof_flops(mp, 4.0 * (double)n * (double)Lq * (double)L * (double)Co);
            sb_linear(ctx, ao, n * Lq, Co, b->attn_proj_w, b->attn_proj_b, Co, ap);
            sb_modprof_flops(mp, sb_flops_linear(n * Lq, Co, Co));
            if (h->adapter) {
                if ((rc = h->adapter(h->adapter_arg, bi, ap, w0, n, g.owh, g.oww, Co, ctx, a, err)))
                    goto done;
            }
            if (b->window > 0)
                win_parallel(ctx, 1, &g, ap, y, Co, w0, n, res);
            else if (res)
                win_parallel(ctx, 3, &g, ap, y + w0 * Lq * Co, Co, 0, n * Lq, res + w0 * Lq * Co);
            else
                sb_add(ctx, y + w0 * Lq * Co, ap, n * Lq * Co);
        }
        sb_arena_reset(a, m2);
    }

    /* MLP on token chunks: y += lin1(gelu(lin0(LN2(y)))) */
    {
        int64_t M = B * Ho * Wo, hid = b->mlp_hidden;
        int64_t tc = ctok < M ? ctok : M;
        float *t = sb_arena_alloc_checked(a, (size_t)(tc * Co) * sizeof(float), "hiera mlp in", err);
        float *hb = t ? sb_arena_alloc_checked(a, (size_t)(tc * hid) * sizeof(float), "hiera mlp hidden", err) : NULL;
        if (!hb) {
            rc = err->code;
            goto done;
        }
        for (int64_t r0 = 0; r0 < M; r0 += tc) {
            int64_t n = M - r0 < tc ? M - r0 : tc;
            float *yr = y + r0 * Co;
            sb_layernorm(ctx, yr, n, Co, b->norm2_w, b->norm2_b, 1e-6f, t);
            sb_linear_gelu(ctx, t, n, Co, b->mlp0_w, b->mlp0_b, hid, hb);
            sb_linear(ctx, hb, n, hid, b->mlp1_w, b->mlp1_b, Co, t);
            sb_add(ctx, yr, t, n * Co);
            sb_modprof_flops(mp, 2.0 * sb_flops_linear(n, Co, hid));
        }
    }
done:
    sb_arena_reset(a, mark);
    return rc;
}

int sb_hiera_forward(const sb_hiera *h, sb_ctx *ctx, const float *img, int64_t B, float **stage,
                     sb_arena *a, sb_modprof *mp, sb_dump_fn dump, void *dump_arg, sb_error *err)
{
    int64_t S = h->image_size, C0 = h->embed_dim, H = h->H0, W = h->W0;
    /* ping-pong buffers sized for the largest block output / input */
    int64_t maxsz = B * H * W * C0;
    {
        int64_t hh = H, ww = W;
        for (int i = 0; i < h->n_blocks; i++) {
            if (h->blk[i].q_pool) {
                hh /= 2;
                ww /= 2;
            }
            int64_t sz = B * hh * ww * h->blk[i].dim_out;
            if (sz > maxsz)
                maxsz = sz;
        }
    }
    size_t mark = sb_arena_mark(a);
    int rc = SB_OK;
    float *bufA = sb_arena_alloc_checked(a, (size_t)maxsz * sizeof(float), "hiera activations", err);
    float *bufB = bufA ? sb_arena_alloc_checked(a, (size_t)maxsz * sizeof(float), "hiera activations", err) : NULL;
    if (!bufB)
        return err->code;

    sb_modprof_begin(mp, "patch_embed");
    {
        size_t m2 = sb_arena_mark(a);
        float *conv = sb_arena_alloc_checked(a, (size_t)(B * C0 * H * W) * sizeof(float), "patch embed", err);
        if (!conv) {
            rc = err->code;
            goto out;
        }
        if ((rc = sb_conv2d(ctx, img, B, 3, S, S, h->patch_w, h->patch_b, C0, 7, 7, 4, 3, 1, conv, a, err)))
            goto out;
        sb_modprof_flops(mp, 2.0 * (double)(B * H * W) * (double)C0 * 3.0 * 49.0);
        sb_nchw_to_nhwc(ctx, conv, B, C0, H, W, bufA);
        sb_arena_reset(a, m2);
    }
    sb_dump4(dump, dump_arg, "encoder/trunk/patch_embed", bufA, B, H, W, C0);
    sb_dump4(dump, dump_arg, "encoder/trunk/pos_embed", h->pos_embed, 1, H, W, C0);
    for (int64_t b = 0; b < B; b++)
        sb_add(ctx, bufA + b * H * W * C0, h->pos_embed, H * W * C0);

    float *x = bufA, *y = bufB;
    int stage_i = 0;
    for (int i = 0; i < h->n_blocks; i++) {
        char name[64];
        snprintf(name, sizeof name, "block_%02d", i);
        sb_modprof_begin(mp, name);
        int64_t Ho, Wo;
        if ((rc = hiera_block_forward(h, i, ctx, x, B, H, W, y, &Ho, &Wo, a, mp, err))) {
            sb_error_prefix(err, "trunk block %d", i);
            goto out;
        }
        H = Ho;
        W = Wo;
        float *t = x;
        x = y;
        y = t;
        int64_t C = h->blk[i].dim_out;
        if (dump) {
            snprintf(name, sizeof name, "encoder/trunk/block_%02d", i);
            sb_dump4(dump, dump_arg, name, x, B, H, W, C);
        }
        if (stage_i < h->n_stages && i == h->stage_ends[stage_i]) {
            memcpy(stage[stage_i], x, (size_t)(B * H * W * C) * sizeof(float));
            if (dump) {
                size_t m3 = sb_arena_mark(a);
                float *nchw = sb_arena_alloc_checked(a, (size_t)(B * H * W * C) * sizeof(float), "dump", err);
                if (!nchw) {
                    rc = err->code;
                    goto out;
                }
                sb_nhwc_to_nchw(ctx, x, B, H, W, C, nchw);
                snprintf(name, sizeof name, "encoder/trunk/out_%d", stage_i);
                sb_dump4(dump, dump_arg, name, nchw, B, C, H, W);
                sb_arena_reset(a, m3);
            }
            stage_i++;
        }
    }
out:
    sb_modprof_end(mp);
    sb_arena_reset(a, mark);
    return rc;
}
