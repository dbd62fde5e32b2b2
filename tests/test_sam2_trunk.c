/*
 * The Hiera trunk against a direct double-precision transcription of the
 * reference block (hieradet_sam2.MultiScaleBlock, MODEL.md 2.2.4) on a
 * configuration the golden fixtures do not cover: window padding (10 -> 12,
 * 5 -> 6), q-pooling inside padded windows, q-pooling in a global block,
 * an odd batch, and window chunks that split rows and images (tiny chunk
 * size). Also: the adapter hook's contract (even chunks, window order) and
 * the neck's level sizes.
 */
#include "util_test.h"
#include "../core/sam2_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char name[64];
    float *data;
    size_t n;
} dumped;

typedef struct {
    dumped items[64];
    int n;
} store;

static void keep(void *arg, const char *name, const float *data, int ndim, const int64_t *shape)
{
    store *s = arg;
    if (s->n >= 64)
        return;
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    dumped *d = &s->items[s->n++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->n = n;
    d->data = malloc(n * sizeof(float));
    memcpy(d->data, data, n * sizeof(float));
}

static const dumped *find(const store *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->items[i].name, name))
            return &s->items[i];
    return NULL;
}

static void ln_d(const double *x, int64_t rows, int64_t C, const float *w, const float *b, double eps, double *y)
{
    for (int64_t r = 0; r < rows; r++) {
        double m = 0, v = 0;
        for (int64_t c = 0; c < C; c++)
            m += x[r * C + c];
        m /= C;
        for (int64_t c = 0; c < C; c++)
            v += (x[r * C + c] - m) * (x[r * C + c] - m);
        v /= C;
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = (x[r * C + c] - m) / sqrt(v + eps) * w[c] + b[c];
    }
}

static void lin_d(const double *x, int64_t M, int64_t K, const float *W, const float *b, int64_t N, double *y)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t o = 0; o < N; o++) {
            double s = b ? b[o] : 0;
            for (int64_t k = 0; k < K; k++)
                s += x[i * K + k] * W[o * K + k];
            y[i * N + o] = s;
        }
}

/* One block, directly as the reference writes it. x [B,H,W,Ci] -> y [B,Ho,Wo,Co]. */
static void naive_block(const sb_hiera_block *b, const float *xf, int64_t B, int64_t H, int64_t W, double *y,
                        int64_t *pHo, int64_t *pWo)
{
    int64_t Ci = b->dim, Co = b->dim_out, nh = b->heads, hd = Co / nh;
    int64_t N = B * H * W;
    double *x = malloc((size_t)(N * Ci) * sizeof(double)), *xn = malloc((size_t)(N * Ci) * sizeof(double));
    for (int64_t i = 0; i < N * Ci; i++)
        x[i] = xf[i];
    ln_d(x, N, Ci, b->norm1_w, b->norm1_b, 1e-6, xn);
    int64_t Ho = b->q_pool ? H / 2 : H, Wo = b->q_pool ? W / 2 : W;
    *pHo = Ho;
    *pWo = Wo;
    double *sc = malloc((size_t)(B * Ho * Wo * Co) * sizeof(double));
    if (Ci != Co) {
        double *t = malloc((size_t)(N * Co) * sizeof(double));
        lin_d(xn, N, Ci, b->proj_w, b->proj_b, Co, t);
        for (int64_t bb = 0; bb < B; bb++)
            for (int64_t oy = 0; oy < Ho; oy++)
                for (int64_t ox = 0; ox < Wo; ox++)
                    for (int64_t c = 0; c < Co; c++) {
                        double m = -INFINITY;
                        for (int dy = 0; dy < 2; dy++)
                            for (int dx = 0; dx < 2; dx++)
                                m = fmax(m, t[((bb * H + 2 * oy + dy) * W + 2 * ox + dx) * Co + c]);
                        sc[((bb * Ho + oy) * Wo + ox) * Co + c] = m;
                    }
        free(t);
    } else {
        memcpy(sc, x, (size_t)(N * Ci) * sizeof(double));
    }
    /* windows over a zero-padded grid */
    int64_t wh = b->window ? b->window : H, ww = b->window ? b->window : W;
    int64_t Hp = (H + wh - 1) / wh * wh, Wp = (W + ww - 1) / ww * ww, nwy = Hp / wh, nwx = Wp / ww;
    int64_t owh = b->q_pool ? wh / 2 : wh, oww = b->q_pool ? ww / 2 : ww;
    int64_t L = wh * ww, Lq = owh * oww;
    double *win = malloc((size_t)(L * Ci) * sizeof(double)), *qkv = malloc((size_t)(L * 3 * Co) * sizeof(double));
    double *q = malloc((size_t)(Lq * Co) * sizeof(double)), *o = malloc((size_t)(Lq * Co) * sizeof(double));
    double *a = malloc((size_t)(Lq * Co) * sizeof(double)), *s = malloc((size_t)L * sizeof(double));
    for (int64_t bb = 0; bb < B; bb++)
        for (int64_t wy = 0; wy < nwy; wy++)
            for (int64_t wx = 0; wx < nwx; wx++) {
                for (int64_t ty = 0; ty < wh; ty++)
                    for (int64_t tx = 0; tx < ww; tx++)
                        for (int64_t c = 0; c < Ci; c++) {
                            int64_t yy = wy * wh + ty, xx = wx * ww + tx;
                            win[(ty * ww + tx) * Ci + c] =
                                (yy < H && xx < W) ? xn[((bb * H + yy) * W + xx) * Ci + c] : 0.0;
                        }
                lin_d(win, L, Ci, b->qkv_w, b->qkv_b, 3 * Co, qkv);
                for (int64_t py = 0; py < owh; py++)
                    for (int64_t px = 0; px < oww; px++)
                        for (int64_t c = 0; c < Co; c++) {
                            double v;
                            if (b->q_pool) {
                                v = -INFINITY;
                                for (int dy = 0; dy < 2; dy++)
                                    for (int dx = 0; dx < 2; dx++)
                                        v = fmax(v, qkv[((2 * py + dy) * ww + 2 * px + dx) * 3 * Co + c]);
                            } else {
                                v = qkv[(py * ww + px) * 3 * Co + c];
                            }
                            q[(py * oww + px) * Co + c] = v;
                        }
                for (int64_t h = 0; h < nh; h++)
                    for (int64_t i = 0; i < Lq; i++) {
                        double mx = -INFINITY, sum = 0;
                        for (int64_t j = 0; j < L; j++) {
                            double d = 0;
                            for (int64_t e = 0; e < hd; e++)
                                d += q[i * Co + h * hd + e] * qkv[j * 3 * Co + Co + h * hd + e];
                            s[j] = d / sqrt((double)hd);
                            mx = fmax(mx, s[j]);
                        }
                        for (int64_t j = 0; j < L; j++)
                            sum += (s[j] = exp(s[j] - mx));
                        for (int64_t e = 0; e < hd; e++) {
                            double acc = 0;
                            for (int64_t j = 0; j < L; j++)
                                acc += s[j] * qkv[j * 3 * Co + 2 * Co + h * hd + e];
                            o[i * Co + h * hd + e] = acc / sum;
                        }
                    }
                lin_d(o, Lq, Co, b->attn_proj_w, b->attn_proj_b, Co, a);
                for (int64_t ty = 0; ty < owh; ty++)
                    for (int64_t tx = 0; tx < oww; tx++) {
                        int64_t yy = wy * owh + ty, xx = wx * oww + tx;
                        if (yy >= Ho || xx >= Wo)
                            continue; /* crop */
                        for (int64_t c = 0; c < Co; c++)
                            sc[((bb * Ho + yy) * Wo + xx) * Co + c] += a[(ty * oww + tx) * Co + c];
                    }
            }
    int64_t M = B * Ho * Wo, Hd = b->mlp_hidden;
    double *t = malloc((size_t)(M * Co) * sizeof(double)), *hh = malloc((size_t)(M * Hd) * sizeof(double));
    ln_d(sc, M, Co, b->norm2_w, b->norm2_b, 1e-6, t);
    lin_d(t, M, Co, b->mlp0_w, b->mlp0_b, Hd, hh);
    for (int64_t i = 0; i < M * Hd; i++)
        hh[i] = 0.5 * hh[i] * (1.0 + erf(hh[i] / sqrt(2.0)));
    lin_d(hh, M, Hd, b->mlp1_w, b->mlp1_b, Co, t);
    for (int64_t i = 0; i < M * Co; i++)
        y[i] = sc[i] + t[i];
    free(t);
    free(hh);
    free(win);
    free(qkv);
    free(q);
    free(o);
    free(a);
    free(s);
    free(sc);
    free(x);
    free(xn);
}

typedef struct {
    int calls, odd;
    int64_t next_first[64];
} adapter_log;

static int check_adapter(void *arg, int block, float *a, int64_t first, int64_t n, int64_t h, int64_t w,
                         int64_t C, sb_ctx *ctx, sb_arena *scratch, sb_error *err)
{
    adapter_log *lg = arg;
    lg->calls++;
    if ((first % 2) || (n % 2) || first != lg->next_first[block])
        lg->odd++;
    lg->next_first[block] = first + n;
    (void)a, (void)h, (void)w, (void)C, (void)ctx, (void)scratch, (void)err;
    return SB_OK;
}

static void test_trunk_padding_qpool_chunks(void **state)
{
    (void)state;
    sb_error err;
    const char *cfg_path = temp_path("trunk.yaml");
    FILE *f = fopen(cfg_path, "w");
    assert_non_null(f);
    fputs("model:\n"
          "  _target_: sam2.modeling.sam2_base.SAM2Base\n"
          "  image_size: 160\n"
          "  use_high_res_features_in_sam: true\n"
          "  image_encoder:\n"
          "    scalp: 1\n"
          "    trunk:\n"
          "      _target_: sam2.modeling.backbones.hieradet_sam2.Hiera\n"
          "      embed_dim: 8\n"
          "      num_heads: 1\n"
          "      stages: [1, 2, 3, 2]\n"
          "      global_att_blocks: [3, 4]\n"
          "      window_spec: [8, 4, 6, 3]\n"
          "      window_pos_embed_bkg_spatial_size: [5, 3]\n"
          "    neck:\n"
          "      d_model: 16\n"
          "      backbone_channel_list: [64, 32, 16, 8]\n"
          "      fpn_top_down_levels: [2, 3]\n"
          "      fpn_interp_model: nearest\n"
          "      position_encoding: {num_pos_feats: 16}\n",
          f);
    fclose(f);
    sb_sam2_config cfg;
    assert_sb_ok(err, sb_sam2_config_load(&cfg, cfg_path, &err));
    sb_wbind wb;
    sb_wbind_init(&wb, NULL, 99);
    sb_hiera h;
    assert_sb_ok(err, sb_hiera_init(&h, &cfg, &wb, "image_encoder.trunk.", &err));
    assert_int_equal(h.n_blocks, 8);
    assert_int_equal(h.blk[3].window, 0);
    assert_int_equal(h.blk[3].q_pool, 1);
    assert_int_equal(h.blk[6].window, 6);
    assert_int_equal(h.blk[6].q_pool, 1);
    assert_int_equal(h.blk[7].window, 3);
    assert_int_equal(sb_hiera_stage_side(&h, 3), 5);
    h.chunk_tokens = 37; /* windows and MLP rows in many small chunks */
    int64_t B = 3, S = 160;
    float *img = malloc((size_t)(B * 3 * S * S) * sizeof(float));
    fill_uniform(img, (size_t)(B * 3 * S * S), 11, 0.0f, 1.0f);
    float *stage[4];
    for (int s = 0; s < 4; s++) {
        int64_t side = sb_hiera_stage_side(&h, s);
        stage[s] = malloc((size_t)(B * side * side * sb_hiera_stage_dim(&h, s)) * sizeof(float));
    }
    sb_arena *a;
    assert_sb_ok(err, sb_arena_create(&a, (size_t)64 << 20, &err));
    store st = {0};
    sb_ctx *ctx2 = NULL; /* two workers: the window loops run on the pool */
    assert_sb_ok(err, sb_ctx_create(&ctx2, 2, &err));
    assert_sb_ok(err, sb_hiera_forward(&h, ctx2, img, B, stage, a, NULL, keep, &st, &err));
    sb_ctx_free(ctx2);
    /* block by block from the core's own input to that block */
    const dumped *pe = find(&st, "encoder/trunk/patch_embed"), *pos = find(&st, "encoder/trunk/pos_embed");
    assert_non_null(pe);
    assert_non_null(pos);
    float *x = malloc(pe->n * sizeof(float));
    for (size_t i = 0; i < pe->n; i++)
        x[i] = pe->data[i] + pos->data[i % pos->n];
    int64_t H = h.H0, W = h.W0;
    for (int i = 0; i < h.n_blocks; i++) {
        char name[64];
        snprintf(name, sizeof name, "encoder/trunk/block_%02d", i);
        const dumped *d = find(&st, name);
        assert_non_null(d);
        int64_t Ho, Wo;
        double *ref = malloc(d->n * sizeof(double));
        naive_block(&h.blk[i], x, B, H, W, ref, &Ho, &Wo);
        assert_int_equal((size_t)(B * Ho * Wo * h.blk[i].dim_out), d->n);
        float *rf = malloc(d->n * sizeof(float));
        for (size_t k = 0; k < d->n; k++)
            rf[k] = (float)ref[k];
        snprintf(name, sizeof name, "block %d (%s%s, window %d)", i, h.blk[i].window ? "windowed" : "global",
                 h.blk[i].q_pool ? " q-pool" : "", h.blk[i].window);
        cmp_stats cs = compare_f32(name, d->data, rf, d->n);
        assert_true(cs.max_abs <= 1e-5 * cs.max_ref + 1e-6);
        free(ref);
        free(rf);
        free(x);
        x = malloc(d->n * sizeof(float));
        memcpy(x, d->data, d->n * sizeof(float));
        H = Ho;
        W = Wo;
    }
    /* the last stage output equals the last block */
    assert_memory_equal(stage[3], x, (size_t)(B * 5 * 5 * 64) * sizeof(float));

    /* adapter hook contract: even-sized chunks, in window order; odd window
     * totals are refused (the reference needs an even batch) */
    adapter_log lg;
    memset(&lg, 0, sizeof lg);
    h.adapter = check_adapter;
    h.adapter_arg = &lg;
    assert_int_equal(sb_hiera_forward(&h, NULL, img, B, stage, a, NULL, NULL, NULL, &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "even"));
    memset(&lg, 0, sizeof lg);
    assert_sb_ok(err, sb_hiera_forward(&h, NULL, img, 2, stage, a, NULL, NULL, NULL, &err));
    assert_true(lg.calls > 8);
    assert_int_equal(lg.odd, 0);
    assert_int_equal(lg.next_first[0], 2 * 25); /* block 0: 5x5 windows per image */
    assert_int_equal(lg.next_first[4], 2);      /* global: one per image */
    assert_int_equal(lg.next_first[6], 2 * 4);  /* 10 -> pad 12, window 6: 2x2 */

    /* the neck on these stages: sizes and scalp */
    sb_fpn_neck nk;
    assert_sb_ok(err, sb_fpn_neck_init(&nk, &cfg, &h, &wb, "image_encoder.neck.", &err));
    assert_int_equal(sb_fpn_neck_levels_out(&nk), 3);
    assert_int_equal(nk.side[0], 40);
    assert_int_equal(nk.side[2], 10);
    sb_fpn_neck_release(&nk);

    for (int i = 0; i < st.n; i++)
        free(st.items[i].data);
    for (int s = 0; s < 4; s++)
        free(stage[s]);
    free(x);
    free(img);
    sb_arena_free(a);
    sb_hiera_release(&h);
    sb_wbind_release(&wb);
}

/* A window that q-pooling cannot map onto the output grid is refused with a
 * sentence, as the reference cannot run it either. */
static void test_trunk_bad_windows(void **state)
{
    (void)state;
    sb_error err;
    sb_sam2_config cfg;
    const char *p = temp_path("bad_windows.yaml");
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("model:\n  image_size: 192\n  image_encoder:\n    scalp: 1\n    trunk:\n"
          "      _target_: sam2.modeling.backbones.hieradet_sam2.Hiera\n      embed_dim: 8\n"
          "      stages: [1, 2, 3, 1]\n      global_att_blocks: [4]\n      window_spec: [8, 4, 4, 2]\n"
          "      window_pos_embed_bkg_spatial_size: [7, 7]\n    neck:\n      d_model: 32\n"
          "      backbone_channel_list: [64, 32, 16, 8]\n      position_encoding: {num_pos_feats: 32}\n",
          f);
    fclose(f);
    assert_sb_ok(err, sb_sam2_config_load(&cfg, p, &err));
    cfg.window_spec[0] = 7; /* the 48x48 patch grid cannot tile a 7x7 pos_embed_window */
    sb_wbind wb;
    sb_wbind_init(&wb, NULL, 1);
    sb_hiera h;
    assert_int_equal(sb_hiera_init(&h, &cfg, &wb, "t.", &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "window_spec[0]"));
    sb_hiera_release(&h);
    cfg.window_spec[0] = 8;
    cfg.window_spec[1] = 5; /* block 3: 24x24 in 5x5 windows (5x5 of them) -> 12x12 in 2x2 windows (6x6): refused */
    assert_sb_ok(err, sb_hiera_init(&h, &cfg, &wb, "t.", &err));
    float *img = calloc((size_t)(3 * 192 * 192), sizeof(float));
    float *stage[4];
    for (int s = 0; s < 4; s++) {
        int64_t side = sb_hiera_stage_side(&h, s);
        stage[s] = malloc((size_t)(side * side * sb_hiera_stage_dim(&h, s)) * sizeof(float));
    }
    sb_arena *a;
    assert_sb_ok(err, sb_arena_create(&a, (size_t)32 << 20, &err));
    assert_int_equal(sb_hiera_forward(&h, NULL, img, 1, stage, a, NULL, NULL, NULL, &err), SB_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "block 3"));
    for (int s = 0; s < 4; s++)
        free(stage[s]);
    free(img);
    sb_arena_free(a);
    sb_hiera_release(&h);
    sb_wbind_release(&wb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trunk_padding_qpool_chunks),
        cmocka_unit_test(test_trunk_bad_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
