/*
 * SAM ViT (sam / medsam flow): relative-position attention against a naive
 * full-matrix implementation (incl. the get_rel_pos interpolation path),
 * configs, and parity with the PyTorch golden tensors of sam_step0.h5.
 */
#include "util_parity.h"
#include "../core/sam_vit_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- get_rel_pos interpolation ------------------------------------------ */

/* F.interpolate(mode='linear', align_corners=False) of a 3-row table to
 * 2*3-1 = 5 rows: scale 3/5, source = 0.6*(m+0.5)-0.5 = -0.2 (clamped to 0),
 * 0.4, 1.0, 1.6, 2.2 (last row repeated) -> weights derived by hand. */
static void test_rel_pos_resize(void **state)
{
    (void)state;
    const float T[3 * 2] = {1.f, 10.f, 2.f, 20.f, 4.f, 40.f};
    float out[5 * 2];
    sb_vit_rel_pos_resize(T, 3, 2, 3, out);
    const float want[5 * 2] = {1.f, 10.f,                       /* m=0: row 0 */
                               0.6f * 1 + 0.4f * 2, 6.f + 8.f,  /* m=1: 0.6 r0 + 0.4 r1 */
                               2.f, 20.f,                       /* m=2: row 1 */
                               0.4f * 2 + 0.6f * 4, 8.f + 24.f, /* m=3: 0.4 r1 + 0.6 r2 */
                               4.f, 40.f};                      /* m=4: clamps to row 2 */
    for (int i = 0; i < 10; i++)
        assert_float_equal(out[i], want[i], 1e-5);
    /* right length: a copy */
    float T5[5 * 2], o5[5 * 2];
    fill_uniform(T5, 10, 7, -1, 1);
    sb_vit_rel_pos_resize(T5, 5, 2, 3, o5);
    assert_memory_equal(T5, o5, sizeof T5);
    /* upsampling a longer table down: 9 rows -> 5, src = 1.8*(m+0.5)-0.5 */
    float T9[9], o9[5];
    for (int i = 0; i < 9; i++)
        T9[i] = (float)(i * i);
    sb_vit_rel_pos_resize(T9, 9, 1, 3, o9);
    const double src[5] = {0.4, 2.2, 4.0, 5.8, 7.6};
    for (int m = 0; m < 5; m++) {
        int i0 = (int)src[m];
        double l = src[m] - i0;
        assert_float_equal(o9[m], (1 - l) * i0 * i0 + l * (i0 + 1) * (i0 + 1), 1e-4);
    }
}

/* ---- attention with decomposed relative position vs a naive version ---- */

/* The reference math of MODEL.md 2.8 with full score matrices. */
static void naive_rel_attention(const float *qkv, int nwin, int S, int heads, int hd,
                                const float *Rh, const float *Rw, float *out)
{
    const int L = S * S, C = heads * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    double *sc = malloc(sizeof(double) * (size_t)L);
    for (int w = 0; w < nwin; w++)
        for (int h = 0; h < heads; h++)
            for (int q = 0; q < L; q++) {
                const float *qv = qkv + ((size_t)w * L + q) * 3 * C + h * hd;
                int qy = q / S, qx = q % S;
                double mx = -INFINITY;
                for (int k = 0; k < L; k++) {
                    const float *kv = qkv + ((size_t)w * L + k) * 3 * C + C + h * hd;
                    int ky = k / S, kx = k % S;
                    double s = 0, rh = 0, rw = 0;
                    for (int c = 0; c < hd; c++) {
                        s += (double)(qv[c] * scale) * kv[c];
                        rh += (double)qv[c] * Rh[(qy - ky + S - 1) * hd + c];
                        rw += (double)qv[c] * Rw[(qx - kx + S - 1) * hd + c];
                    }
                    sc[k] = s + rh + rw;
                    if (sc[k] > mx)
                        mx = sc[k];
                }
                double sum = 0;
                for (int k = 0; k < L; k++)
                    sum += (sc[k] = exp(sc[k] - mx));
                for (int c = 0; c < hd; c++) {
                    double acc = 0;
                    for (int k = 0; k < L; k++)
                        acc += sc[k] * qkv[((size_t)w * L + k) * 3 * C + 2 * C + h * hd + c];
                    out[((size_t)w * L + q) * C + h * hd + c] = (float)(acc / sum);
                }
            }
    free(sc);
}

static void check_rel_attention(int nwin, int S, int heads, int hd, int table_len, uint64_t seed)
{
    const int L = S * S, C = heads * hd, M = 2 * S - 1;
    float *qkv = malloc(sizeof(float) * (size_t)nwin * L * 3 * C);
    float *th = malloc(sizeof(float) * (size_t)table_len * hd);
    float *tw = malloc(sizeof(float) * (size_t)table_len * hd);
    float *rh = malloc(sizeof(float) * (size_t)M * hd);
    float *rw = malloc(sizeof(float) * (size_t)M * hd);
    float *got = malloc(sizeof(float) * (size_t)nwin * L * C);
    float *ref = malloc(sizeof(float) * (size_t)nwin * L * C);
    fill_uniform(qkv, (size_t)nwin * L * 3 * C, seed, -2.f, 2.f);
    fill_uniform(th, (size_t)table_len * hd, seed + 1, -1.f, 1.f);
    fill_uniform(tw, (size_t)table_len * hd, seed + 2, -1.f, 1.f);
    sb_vit_rel_pos_resize(th, table_len, hd, S, rh);
    sb_vit_rel_pos_resize(tw, table_len, hd, S, rw);
    sb_error err;
    sb_error_clear(&err);
    assert_sb_ok(err, sb_vit_rel_attention(NULL, qkv, nwin, S, heads, hd, rh, rw, got, NULL, &err));
    naive_rel_attention(qkv, nwin, S, heads, hd, rh, rw, ref);
    char label[96];
    snprintf(label, sizeof label, "rel-attn nwin %d S %d heads %d hd %d table %d", nwin, S, heads,
             hd, table_len);
    cmp_stats st = compare_f32(label, got, ref, (size_t)nwin * L * C);
    assert_true(st.max_abs <= 1e-5 * st.max_ref + 1e-6);
    /* The bias really matters: without it the result differs. */
    float *zero = calloc((size_t)M * hd, sizeof(float));
    naive_rel_attention(qkv, nwin, S, heads, hd, zero, zero, ref);
    cmp_stats st0 = compare_f32("  (same without rel-pos: must differ)", got, ref,
                                (size_t)nwin * L * C);
    assert_true(st0.max_abs > 1e-3);
    free(zero);
    free(qkv), free(th), free(tw), free(rh), free(rw), free(got), free(ref);
}

static void test_rel_attention_matches_naive(void **state)
{
    (void)state;
    check_rel_attention(3, 5, 2, 8, 9, 11);   /* reference table length 2S-1 */
    check_rel_attention(1, 7, 3, 4, 13, 12);  /* global-like single map */
    check_rel_attention(2, 4, 2, 16, 3, 13);  /* table too short: interpolated up */
    check_rel_attention(1, 3, 1, 8, 11, 14);  /* table too long: interpolated down */
    check_rel_attention(1, 18, 2, 8, 35, 15); /* S > 16: several column chunks */
}

static void test_rel_attention_threads_and_arena(void **state)
{
    (void)state;
    const int nwin = 2, S = 6, heads = 2, hd = 8, L = S * S, C = heads * hd, M = 2 * S - 1;
    float *qkv = malloc(sizeof(float) * nwin * L * 3 * C);
    float rh[11 * 8], rw[11 * 8];
    float *a = malloc(sizeof(float) * nwin * L * C), *b = malloc(sizeof(float) * nwin * L * C);
    fill_uniform(qkv, (size_t)nwin * L * 3 * C, 5, -1.f, 1.f);
    fill_uniform(rh, (size_t)M * hd, 6, -1.f, 1.f);
    fill_uniform(rw, (size_t)M * hd, 7, -1.f, 1.f);
    sb_error err;
    sb_ctx *ctx;
    sb_arena *ar;
    assert_sb_ok(err, sb_ctx_create(&ctx, 2, &err));
    size_t need = sb_vit_rel_attention_scratch_bytes(nwin, S, heads, hd, 2);
    assert_sb_ok(err, sb_arena_create(&ar, need, &err));
    assert_sb_ok(err, sb_vit_rel_attention(ctx, qkv, nwin, S, heads, hd, rh, rw, a, ar, &err));
    assert_true(sb_arena_peak(ar) <= need);
    assert_int_equal(sb_arena_used(ar), 0);
    assert_sb_ok(err, sb_vit_rel_attention(NULL, qkv, nwin, S, heads, hd, rh, rw, b, NULL, &err));
    cmp_stats st = compare_f32("rel-attn 2 threads + arena vs serial", a, b, (size_t)nwin * L * C);
    assert_true(st.max_abs <= 1e-6 * st.max_ref + 1e-7);
    /* bad sizes are an error, not a crash */
    assert_int_equal(sb_vit_rel_attention(NULL, qkv, 0, S, heads, hd, rh, rw, b, NULL, &err),
                     SB_EINVAL);
    sb_arena_free(ar);
    sb_ctx_free(ctx);
    free(qkv), free(a), free(b);
}

/* ---- configs --------------------------------------------------------------- */

static void test_config_files(void **state)
{
    (void)state;
    sb_error err;
    sb_vit_config c, vb;
    sb_vit_config_vit_b(&vb);
    assert_sb_ok(err, sb_vit_config_load(&c, fixture_path("sam_vit_tiny_config.json"), &err));
    assert_int_equal(c.embed_dim, 32);
    assert_int_equal(c.depth, 4);
    assert_int_equal(c.num_heads, 2);
    assert_int_equal(c.n_global, 2);
    assert_int_equal(c.global_idx[0], 1);
    assert_int_equal(c.global_idx[1], 3);
    assert_int_equal(c.image_size, 192);
    assert_int_equal(c.patch_size, 16);
    assert_int_equal(c.window_size, 5);
    assert_int_equal(c.out_chans, 32);
    assert_int_equal(c.mlp_dim, 128);
    assert_int_equal(c.decoder_mlp_dim, 128);
    assert_int_equal(c.decoder_num_heads, 8);
    assert_int_equal(c.decoder_depth, 2);
    assert_int_equal(c.iou_head_hidden_dim, 32);
    assert_int_equal(c.mask_in_chans, 16);
    const char *yamls[2] = {"configs/models/sam_vit_b.yaml", "configs/models/medsam_vit_b.yaml"};
    for (int i = 0; i < 2; i++) {
        assert_sb_ok(err, sb_vit_config_load(&c, yamls[i], &err));
        assert_memory_equal(&c, &vb, sizeof c);
    }
    char line[512];
    sb_vit_config_format(&vb, line, sizeof line);
    assert_non_null(strstr(line, "global [2,5,8,11]"));

    /* bad files: clear errors naming the file */
    assert_int_equal(sb_vit_config_load(&c, "no/such/config.yaml", &err), SB_EIO);
    assert_non_null(strstr(err.msg, "no/such/config.yaml"));
    const char *p = temp_path("bad_vit.yaml");
    FILE *f = fopen(p, "w");
    fputs("hyper_parameters:\n  encoder_depth: twelve\n", f);
    fclose(f);
    assert_int_equal(sb_vit_config_load(&c, p, &err), SB_EFORMAT);
    assert_non_null(strstr(err.msg, "encoder_depth"));
    f = fopen(p, "w");
    fputs("hyper_parameters:\n  encoder_depth: 4\n  encoder_global_attn_indexes: [1, 7]\n", f);
    fclose(f);
    assert_int_equal(sb_vit_config_load(&c, p, &err), SB_EFORMAT);
    assert_non_null(strstr(err.msg, "encoder_global_attn_indexes"));
    f = fopen(p, "w");
    fputs("model: {a: 1}\n", f);
    fclose(f);
    assert_int_equal(sb_vit_config_load(&c, p, &err), SB_EKEY);
    f = fopen(p, "w");
    fputs("hyper_parameters: [1, 2\n", f);
    fclose(f);
    assert_int_equal(sb_vit_config_load(&c, p, &err), SB_EFORMAT);
    assert_non_null(strstr(err.msg, p));
}

static void test_config_vs_weights(void **state)
{
    (void)state;
    sb_error err;
    sb_weights *w;
    assert_sb_ok(err, sb_weights_load(&w, fixture_path("sam_vit_tiny.pth"), &err));
    sb_vit_config c, inf;
    assert_sb_ok(err, sb_vit_config_load(&c, fixture_path("sam_vit_tiny_config.json"), &err));
    assert_sb_ok(err, sb_vit_config_infer(&inf, w, &err));
    assert_memory_equal(&c, &inf, sizeof c);
    assert_sb_ok(err, sb_vit_config_check(&c, w, &err));
    sb_vit_config bad = c;
    bad.embed_dim = 64;
    assert_int_equal(sb_vit_config_check(&bad, w, &err), SB_ESHAPE);
    assert_non_null(strstr(err.msg, "encoder_embed_dim"));
    bad = c;
    bad.global_idx[1] = 2;
    assert_int_equal(sb_vit_config_check(&bad, w, &err), SB_ESHAPE);
    assert_non_null(strstr(err.msg, "rel_pos_h"));
    bad = c;
    bad.image_size = 224;
    assert_int_equal(sb_vit_config_check(&bad, w, &err), SB_ESHAPE);
    assert_non_null(strstr(err.msg, "image_size"));
    /* the ViT-B config against the tiny weights */
    sb_vit_config_vit_b(&bad);
    assert_int_equal(sb_vit_config_check(&bad, w, &err), SB_ESHAPE);
    sb_weights_free(w);
}

/* ---- parity with sam_step0.h5 --------------------------------------------- */

/* the dump of NAME (its element count in *numel), or NULL */
static const float *find_dump(const dump_store *d, const char *name, int64_t *numel)
{
    const dumped *g = store_find(d, name);
    if (!g)
        return NULL;
    *numel = (int64_t)g->n;
    return g->data;
}

static void run_parity(const char *h5name, const char *config, int flow)
{
    sb_error err;
    sb_h5 *f;
    sb_weights *w;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path(h5name), SB_H5_READ, &err));
    assert_sb_ok(err, sb_weights_load(&w, fixture_path("sam_vit_tiny.pth"), &err));
    float *img, *boxes;
    int nd;
    int64_t shp[SB_MAX_DIMS], bshp[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "input/image", &img, &nd, shp, &err));
    assert_sb_ok(err, sb_h5_read_f32(f, "input/boxes", &boxes, &nd, bshp, &err));
    const int64_t B = shp[0];

    sb_model_options mo;
    memset(&mo, 0, sizeof mo);
    mo.flow = flow;
    mo.config_path = config ? fixture_path(config) : NULL;
    mo.weights = w;
    sb_model *m;
    sb_ctx *ctx;
    assert_sb_ok(err, sb_ctx_create(&ctx, 1, &err));
    assert_sb_ok(err, sb_model_create(&m, &mo, ctx, &err));
    assert_int_equal(sb_model_image_size(m), shp[2]);
    assert_int_equal(sb_model_lowres_size(m), 4 * shp[2] / 16);
    assert_non_null(sb_model_vit_config(m));
    assert_null(sb_model_sam2_config(m));

    dump_store d = {NULL, 0, 0};
    sb_forward_options fo;
    memset(&fo, 0, sizeof fo);
    fo.threshold = 0.5f;
    fo.dump = store_dump;
    fo.dump_arg = &d;
    sb_prompts pr;
    memset(&pr, 0, sizeof pr);
    pr.boxes = boxes;
    sb_model_output out;
    memset(&out, 0, sizeof out);
    assert_sb_ok(err, sb_model_forward(m, ctx, img, B, &pr, &fo, &out, &err));

    /* every float tensor of the golden file the model computes */
    const char *names[] = {"encoder/patch_embed", "encoder/block_00", "encoder/block_01",
                           "encoder/block_02", "encoder/block_03", "encoder/image_embeddings",
                           "prompt_encoder/sparse", "prompt_encoder/dense", "prompt_encoder/dense_pe",
                           "mask_decoder/all_masks", "mask_decoder/all_iou",
                           "mask_decoder/low_res_masks", "mask_decoder/iou_pred", "logits/high_res"};
    int checked = 0, failures = 0;
    printf("parity %s (flow %s):\n", h5name, sb_flow_name(flow));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (sb_h5_has(f, names[i]) && !store_find(&d, names[i]))
            fail_msg("the model did not expose %s", names[i]);
        checked += compare_tensor(f, &d, names[i], &failures);
    }
    assert_int_equal(failures, 0);
    assert_true(checked >= 12);
    /* iou_pred and low_res in the output struct are the same tensors */
    float *ref;
    assert_sb_ok(err, sb_h5_read_f32(f, "mask_decoder/iou_pred", &ref, &nd, shp, &err));
    cmp_stats st = compare_f32("output.iou", out.iou, ref, (size_t)B);
    assert_true(st.max_abs <= 1e-4 * st.max_ref + 1e-6);
    free(ref);

    /* binary mask: identical except where the reference logit is within
     * 1e-4 x max|logit| of the threshold (counted) */
    float *lref, *mref;
    assert_sb_ok(err, sb_h5_read_f32(f, "logits/high_res", &lref, &nd, shp, &err));
    int64_t n = shp[0] * shp[1] * shp[2] * shp[3];
    assert_int_equal(out.B * out.out_h * out.out_w, n);
    assert_sb_ok(err, sb_h5_read_f32(f, "output/binary_mask", &mref, &nd, shp, &err));
    double mx = 0;
    for (int64_t i = 0; i < n; i++)
        if (fabs(lref[i]) > mx)
            mx = fabs(lref[i]);
    int64_t differ = 0, near = 0, ones = 0;
    for (int64_t i = 0; i < n; i++) {
        ones += mref[i] > 0.5f;
        if ((out.mask[i] != 0) != (mref[i] > 0.5f)) {
            if (fabs(lref[i] - 0.5) < 1e-4 * mx)
                near++;
            else
                differ++;
        }
    }
    printf("  %-40s n=%-9lld ones=%lld differ=%lld (near threshold, allowed: %lld)\n",
           "output/binary_mask", (long long)n, (long long)ones, (long long)differ, (long long)near);
    assert_int_equal(differ, 0);
    assert_true(ones > 0 && ones < n); /* a real mask, not trivially empty/full */

    free(lref), free(mref);
    store_free(&d);
    sb_model_output_free(&out);
    sb_model_free(m);
    sb_ctx_free(ctx);
    free(img), free(boxes);
    sb_weights_free(w);
    sb_h5_close(f);
}

static void test_parity_fixture_config(void **state)
{
    (void)state;
    run_parity("sam_step0.h5", "sam_vit_tiny_config.json", SB_FLOW_SAM);
}

static void test_parity_inferred_config_medsam(void **state)
{
    (void)state;
    /* no config: hyper-parameters inferred from the weights; the medsam
     * flow is the same network */
    run_parity("sam_step0.h5", NULL, SB_FLOW_MEDSAM);
}

/* ---- the whole encoder at other sizes vs a naive double transcription ----- */
/*
 * A checkpoint written here (bare state dict, torch zip) with sizes unlike
 * the fixture's: 9x9 grid with window 4 (padded to 12, 9 windows), a 9x9
 * global block, 3 heads of 8, and block 2's rel-pos tables of length 5
 * instead of 2*4-1 = 7 (get_rel_pos interpolates them). The reference is a
 * plain double-precision transcription of MODEL.md 2.8 written for this test.
 */
enum { NV_C = 24, NV_HEADS = 3, NV_HD = 8, NV_DEPTH = 3, NV_WS = 4, NV_P = 16, NV_G = 9,
       NV_S = NV_G * NV_P, NV_O = 16, NV_MLP = 96, NV_B = 2 };

typedef struct {
    float *pe_w, *pe_b, *pos, *neck0, *n1w, *n1b, *neck2, *n3w, *n3b;
    float *b[NV_DEPTH][12];
    float *relh[NV_DEPTH], *relw[NV_DEPTH];
    int rel_len[NV_DEPTH];
} nv_weights;

static const char *const nv_leaf[12] = {"norm1.weight", "norm1.bias", "attn.qkv.weight",
                                        "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                                        "norm2.weight", "norm2.bias", "mlp.lin1.weight",
                                        "mlp.lin1.bias", "mlp.lin2.weight", "mlp.lin2.bias"};

static int nv_is_global(int i) { return i == 1; }

static void nv_shape(int k, int64_t *shp, int *nd)
{
    const int64_t C = NV_C;
    const int64_t s[12][2] = {{C, 0},      {C, 0},      {3 * C, C}, {3 * C, 0},
                              {C, C},      {C, 0},      {C, 0},     {C, 0},
                              {NV_MLP, C}, {NV_MLP, 0}, {C, NV_MLP}, {C, 0}};
    shp[0] = s[k][0];
    shp[1] = s[k][1];
    *nd = s[k][1] ? 2 : 1;
}

static float *nv_rand(size_t n, uint64_t seed, float lo, float hi)
{
    float *x = malloc(n * sizeof(float));
    fill_uniform(x, n, seed, lo, hi);
    return x;
}

static void nv_make(nv_weights *W, const char *path)
{
    uint64_t sd = 100;
    W->pe_w = nv_rand(NV_C * 3 * NV_P * NV_P, sd++, -0.05f, 0.05f);
    W->pe_b = nv_rand(NV_C, sd++, -0.1f, 0.1f);
    W->pos = nv_rand(NV_G * NV_G * NV_C, sd++, -0.5f, 0.5f);
    for (int i = 0; i < NV_DEPTH; i++) {
        for (int k = 0; k < 12; k++) {
            int64_t shp[2];
            int nd;
            nv_shape(k, shp, &nd);
            size_t n = (size_t)(shp[0] * (nd == 2 ? shp[1] : 1));
            int is_norm_w = k == 0 || k == 6;
            W->b[i][k] = is_norm_w ? nv_rand(n, sd++, 0.8f, 1.2f)
                                   : nv_rand(n, sd++, nd == 2 ? -0.35f : -0.1f, nd == 2 ? 0.35f : 0.1f);
        }
        int S = nv_is_global(i) ? NV_G : NV_WS;
        W->rel_len[i] = i == 2 ? 5 : 2 * S - 1;
        W->relh[i] = nv_rand((size_t)W->rel_len[i] * NV_HD, sd++, -0.6f, 0.6f);
        W->relw[i] = nv_rand((size_t)W->rel_len[i] * NV_HD, sd++, -0.6f, 0.6f);
    }
    W->neck0 = nv_rand(NV_O * NV_C, sd++, -0.3f, 0.3f);
    W->n1w = nv_rand(NV_O, sd++, 0.8f, 1.2f);
    W->n1b = nv_rand(NV_O, sd++, -0.1f, 0.1f);
    W->neck2 = nv_rand(NV_O * NV_O * 9, sd++, -0.15f, 0.15f);
    W->n3w = nv_rand(NV_O, sd++, 0.8f, 1.2f);
    W->n3b = nv_rand(NV_O, sd++, -0.1f, 0.1f);

    sb_error err;
    sb_torch_writer *tw;
    assert_sb_ok(err, sb_torch_writer_open(&tw, path, 0, &err));
#define ADD(name, nd, data, ...)                                                               \
    do {                                                                                       \
        const int64_t s_[] = {__VA_ARGS__};                                                    \
        assert_sb_ok(err, sb_torch_writer_add(tw, name, nd, s_, data, &err));                  \
    } while (0)
    ADD("image_encoder.pos_embed", 4, W->pos, 1, NV_G, NV_G, NV_C);
    ADD("image_encoder.patch_embed.proj.weight", 4, W->pe_w, NV_C, 3, NV_P, NV_P);
    ADD("image_encoder.patch_embed.proj.bias", 1, W->pe_b, NV_C);
    for (int i = 0; i < NV_DEPTH; i++) {
        char key[128];
        for (int k = 0; k < 12; k++) {
            int64_t shp[2];
            int nd;
            nv_shape(k, shp, &nd);
            snprintf(key, sizeof key, "image_encoder.blocks.%d.%s", i, nv_leaf[k]);
            assert_sb_ok(err, sb_torch_writer_add(tw, key, nd, shp, W->b[i][k], &err));
        }
        int64_t rs[2] = {W->rel_len[i], NV_HD};
        snprintf(key, sizeof key, "image_encoder.blocks.%d.attn.rel_pos_h", i);
        assert_sb_ok(err, sb_torch_writer_add(tw, key, 2, rs, W->relh[i], &err));
        snprintf(key, sizeof key, "image_encoder.blocks.%d.attn.rel_pos_w", i);
        assert_sb_ok(err, sb_torch_writer_add(tw, key, 2, rs, W->relw[i], &err));
    }
    ADD("image_encoder.neck.0.weight", 4, W->neck0, NV_O, NV_C, 1, 1);
    ADD("image_encoder.neck.1.weight", 1, W->n1w, NV_O);
    ADD("image_encoder.neck.1.bias", 1, W->n1b, NV_O);
    ADD("image_encoder.neck.2.weight", 4, W->neck2, NV_O, NV_O, 3, 3);
    ADD("image_encoder.neck.3.weight", 1, W->n3w, NV_O);
    ADD("image_encoder.neck.3.bias", 1, W->n3b, NV_O);
#undef ADD
    assert_sb_ok(err, sb_torch_writer_close(tw, &err));
}

static void nv_free(nv_weights *W)
{
    free(W->pe_w), free(W->pe_b), free(W->pos), free(W->neck0), free(W->n1w), free(W->n1b);
    free(W->neck2), free(W->n3w), free(W->n3b);
    for (int i = 0; i < NV_DEPTH; i++) {
        for (int k = 0; k < 12; k++)
            free(W->b[i][k]);
        free(W->relh[i]), free(W->relw[i]);
    }
}

/* LayerNorm over n values (biased variance). */
static void nv_ln(const double *x, int n, const float *w, const float *b, double eps, double *y)
{
    double m = 0, v = 0;
    for (int i = 0; i < n; i++)
        m += x[i];
    m /= n;
    for (int i = 0; i < n; i++)
        v += (x[i] - m) * (x[i] - m);
    v /= n;
    for (int i = 0; i < n; i++)
        y[i] = (x[i] - m) / sqrt(v + eps) * w[i] + b[i];
}

/* get_rel_pos: linear resize (align_corners=False) of a [len, hd] table to 2S-1 rows. */
static void nv_resize(const float *t, int len, int S, double *out)
{
    int M = 2 * S - 1;
    for (int m = 0; m < M; m++) {
        double src = (double)len / M * (m + 0.5) - 0.5;
        if (src < 0)
            src = 0;
        int i0 = (int)src, i1 = i0 < len - 1 ? i0 + 1 : i0;
        double l = src - i0;
        for (int c = 0; c < NV_HD; c++)
            out[m * NV_HD + c] = (1 - l) * t[i0 * NV_HD + c] + l * t[i1 * NV_HD + c];
    }
}

/* x [G*G*C] (one image, NHWC) updated in place by block i. */
static void nv_block(const nv_weights *W, int i, double *x)
{
    const int C = NV_C, G = NV_G;
    const float *const *P = (const float *const *)W->b[i];
    int S = nv_is_global(i) ? G : NV_WS;
    int nw1 = (G + S - 1) / S, Hp = nw1 * S, L = S * S;
    double *xn = calloc((size_t)Hp * Hp * C, sizeof(double)); /* zero padding after LN1 */
    for (int y = 0; y < G; y++)
        for (int xx = 0; xx < G; xx++)
            nv_ln(x + (y * G + xx) * C, C, P[0], P[1], 1e-6, xn + (y * Hp + xx) * C);
    double *Rh = malloc(sizeof(double) * (2 * S - 1) * NV_HD), *Rw = malloc(sizeof(double) * (2 * S - 1) * NV_HD);
    nv_resize(W->relh[i], W->rel_len[i], S, Rh);
    nv_resize(W->relw[i], W->rel_len[i], S, Rw);
    double *qkv = malloc(sizeof(double) * L * 3 * C), *o = malloc(sizeof(double) * L * C);
    double *sc = malloc(sizeof(double) * L), *attn_out = calloc((size_t)G * G * C, sizeof(double));
    for (int wy = 0; wy < nw1; wy++)
        for (int wx = 0; wx < nw1; wx++) {
            for (int t = 0; t < L; t++) {
                const double *in = xn + ((wy * S + t / S) * Hp + wx * S + t % S) * C;
                for (int oc = 0; oc < 3 * C; oc++) {
                    double a = P[3][oc];
                    for (int c = 0; c < C; c++)
                        a += in[c] * P[2][oc * C + c];
                    qkv[t * 3 * C + oc] = a;
                }
            }
            for (int h = 0; h < NV_HEADS; h++)
                for (int q = 0; q < L; q++) {
                    const double *qv = qkv + q * 3 * C + h * NV_HD;
                    double mx = -INFINITY;
                    for (int k = 0; k < L; k++) {
                        const double *kv = qkv + k * 3 * C + C + h * NV_HD;
                        double s = 0;
                        for (int c = 0; c < NV_HD; c++)
                            s += qv[c] / sqrt((double)NV_HD) * kv[c] +
                                 qv[c] * Rh[(q / S - k / S + S - 1) * NV_HD + c] +
                                 qv[c] * Rw[(q % S - k % S + S - 1) * NV_HD + c];
                        sc[k] = s;
                        mx = s > mx ? s : mx;
                    }
                    double sum = 0;
                    for (int k = 0; k < L; k++)
                        sum += (sc[k] = exp(sc[k] - mx));
                    for (int c = 0; c < NV_HD; c++) {
                        double a = 0;
                        for (int k = 0; k < L; k++)
                            a += sc[k] * qkv[k * 3 * C + 2 * C + h * NV_HD + c];
                        o[q * C + h * NV_HD + c] = a / sum;
                    }
                }
            for (int t = 0; t < L; t++) {
                int y = wy * S + t / S, xx = wx * S + t % S;
                if (y >= G || xx >= G)
                    continue; /* cropped by unpartition */
                for (int oc = 0; oc < C; oc++) {
                    double a = P[5][oc];
                    for (int c = 0; c < C; c++)
                        a += o[t * C + c] * P[4][oc * C + c];
                    attn_out[(y * G + xx) * C + oc] = a;
                }
            }
        }
    for (int k = 0; k < G * G * C; k++)
        x[k] += attn_out[k];
    double *t = malloc(sizeof(double) * C), *hid = malloc(sizeof(double) * NV_MLP);
    for (int p = 0; p < G * G; p++) {
        nv_ln(x + p * C, C, P[6], P[7], 1e-6, t);
        for (int j = 0; j < NV_MLP; j++) {
            double a = P[9][j];
            for (int c = 0; c < C; c++)
                a += t[c] * P[8][j * C + c];
            hid[j] = 0.5 * a * (1 + erf(a / sqrt(2.0)));
        }
        for (int oc = 0; oc < C; oc++) {
            double a = P[11][oc];
            for (int j = 0; j < NV_MLP; j++)
                a += hid[j] * P[10][oc * NV_MLP + j];
            x[p * C + oc] += a;
        }
    }
    free(xn), free(Rh), free(Rw), free(qkv), free(o), free(sc), free(attn_out), free(t), free(hid);
}

static void test_encoder_other_sizes_vs_naive(void **state)
{
    (void)state;
    nv_weights W;
    const char *path = temp_path("vit_other_sizes.pth");
    nv_make(&W, path);
    sb_error err;
    sb_weights *w;
    assert_sb_ok(err, sb_weights_load(&w, path, &err));
    sb_vit_config cfg;
    sb_vit_config_vit_b(&cfg);
    cfg.embed_dim = NV_C;
    cfg.depth = NV_DEPTH;
    cfg.num_heads = NV_HEADS;
    cfg.n_global = 1;
    cfg.global_idx[0] = 1;
    cfg.window_size = NV_WS;
    cfg.image_size = NV_S;
    cfg.patch_size = NV_P;
    cfg.mlp_dim = NV_MLP;
    cfg.out_chans = NV_O;
    sb_wbind wb;
    sb_wbind_init(&wb, w, 0);
    sb_vit_encoder *enc;
    assert_sb_ok(err, sb_vit_encoder_create(&enc, &wb, "image_encoder.", &cfg, &err));
    assert_int_equal(sb_vit_encoder_grid(enc), NV_G);

    float *img = nv_rand((size_t)NV_B * 3 * NV_S * NV_S, 77, 0.f, 1.f);
    float *emb = malloc(sizeof(float) * NV_B * NV_O * NV_G * NV_G);
    sb_arena *ar;
    sb_ctx *ctx;
    assert_sb_ok(err, sb_ctx_create(&ctx, 2, &err));
    size_t need = sb_vit_encoder_scratch_bytes(enc, NV_B, 2);
    assert_sb_ok(err, sb_arena_create(&ar, need, &err));
    dump_store d = {NULL, 0, 0};
    assert_sb_ok(err, sb_vit_encoder_forward(enc, ctx, img, NV_B, emb, ar, NULL, store_dump, &d, &err));
    assert_true(sb_arena_peak(ar) <= need);

    const int C = NV_C, G = NV_G, T = G * G;
    double *x = malloc(sizeof(double) * T * C);
    double *ref_blocks = malloc(sizeof(double) * NV_DEPTH * NV_B * T * C);
    double *ref_emb = malloc(sizeof(double) * NV_B * NV_O * T);
    for (int b = 0; b < NV_B; b++) {
        const float *im = img + (size_t)b * 3 * NV_S * NV_S;
        for (int y = 0; y < G; y++)
            for (int xx = 0; xx < G; xx++)
                for (int oc = 0; oc < C; oc++) {
                    double a = W.pe_b[oc];
                    for (int ci = 0; ci < 3; ci++)
                        for (int ky = 0; ky < NV_P; ky++)
                            for (int kx = 0; kx < NV_P; kx++)
                                a += (double)W.pe_w[((oc * 3 + ci) * NV_P + ky) * NV_P + kx] *
                                     im[(ci * NV_S + y * NV_P + ky) * NV_S + xx * NV_P + kx];
                    x[(y * G + xx) * C + oc] = a + W.pos[(y * G + xx) * C + oc];
                }
        for (int i = 0; i < NV_DEPTH; i++) {
            nv_block(&W, i, x);
            memcpy(ref_blocks + ((size_t)i * NV_B + b) * T * C, x, sizeof(double) * T * C);
        }
        /* neck: 1x1 conv, LN2d, 3x3 conv pad 1, LN2d (eps 1e-6) */
        double *y1 = malloc(sizeof(double) * T * NV_O), *y2 = malloc(sizeof(double) * T * NV_O);
        for (int p = 0; p < T; p++) {
            double tmp[NV_O];
            for (int oc = 0; oc < NV_O; oc++) {
                double a = 0;
                for (int c = 0; c < C; c++)
                    a += x[p * C + c] * W.neck0[oc * C + c];
                tmp[oc] = a;
            }
            nv_ln(tmp, NV_O, W.n1w, W.n1b, 1e-6, y1 + p * NV_O);
        }
        for (int yy = 0; yy < G; yy++)
            for (int xx = 0; xx < G; xx++) {
                double tmp[NV_O];
                for (int oc = 0; oc < NV_O; oc++) {
                    double a = 0;
                    for (int ic = 0; ic < NV_O; ic++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int sy = yy + ky - 1, sx = xx + kx - 1;
                                if (sy >= 0 && sy < G && sx >= 0 && sx < G)
                                    a += y1[(sy * G + sx) * NV_O + ic] *
                                         W.neck2[((oc * NV_O + ic) * 3 + ky) * 3 + kx];
                            }
                    tmp[oc] = a;
                }
                nv_ln(tmp, NV_O, W.n3w, W.n3b, 1e-6, y2 + (yy * G + xx) * NV_O);
            }
        for (int oc = 0; oc < NV_O; oc++)
            for (int p = 0; p < T; p++)
                ref_emb[((size_t)b * NV_O + oc) * T + p] = y2[p * NV_O + oc];
        free(y1), free(y2);
    }
    printf("encoder at other sizes (grid 9, window 4 -> 12, rel-pos table 5 -> 7) vs double:\n");
    float *rf = malloc(sizeof(float) * NV_B * T * (C > NV_O ? C : NV_O));
    for (int i = 0; i <= NV_DEPTH; i++) {
        char name[64];
        int64_t n = 0;
        size_t cnt = i < NV_DEPTH ? (size_t)NV_B * T * C : (size_t)NV_B * NV_O * T;
        const double *src = i < NV_DEPTH ? ref_blocks + (size_t)i * NV_B * T * C : ref_emb;
        if (i < NV_DEPTH)
            snprintf(name, sizeof name, "encoder/block_%02d", i);
        else
            snprintf(name, sizeof name, "encoder/image_embeddings");
        const float *got = find_dump(&d, name, &n);
        assert_non_null(got);
        assert_int_equal(n, (int64_t)cnt);
        for (size_t k = 0; k < cnt; k++)
            rf[k] = (float)src[k];
        cmp_stats st = compare_f32(name, got, rf, cnt);
        assert_true(st.max_abs <= 1e-4 * st.max_ref + 1e-6);
    }
    int64_t n = 0;
    const float *got = find_dump(&d, "encoder/image_embeddings", &n);
    assert_non_null(got);
    assert_memory_equal(got, emb, sizeof(float) * (size_t)n);

    free(rf), free(x), free(ref_blocks), free(ref_emb), free(img), free(emb);
    store_free(&d);
    sb_arena_free(ar);
    sb_ctx_free(ctx);
    sb_vit_encoder_free(enc);
    sb_wbind_release(&wb);
    sb_weights_free(w);
    nv_free(&W);
}

/* ---- sambench replay --flow sam ------------------------------------------ */

static void test_replay_cli(void **state)
{
    (void)state;
    const char *dir = temp_path("replay_sam");
    char *log = NULL;
    int rc = run_sambench(&log,
                          "replay --flow sam --model-config %s --checkpoint %s --output-dir %s %s",
                          fixture_path("sam_vit_tiny_config.json"), fixture_path("sam_vit_tiny.pth"),
                          dir, fixture_path("sam_step0.h5"));
    if (rc != 0)
        fail_msg("replay exited %d: %s", rc, log ? log : "");
    free(log);
    char outp[1024];
    snprintf(outp, sizeof outp, "%s/sam_step0.h5", dir);
    sb_error err;
    sb_h5 *o, *g;
    assert_sb_ok(err, sb_h5_open(&o, outp, SB_H5_READ, &err));
    assert_sb_ok(err, sb_h5_open(&g, fixture_path("sam_step0.h5"), SB_H5_READ, &err));
    const char *names[] = {"encoder/image_embeddings", "prompt_encoder/sparse",
                           "mask_decoder/low_res_masks", "mask_decoder/iou_pred",
                           "logits/high_res", "output/binary_mask"};
    printf("replay --flow sam:\n");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        float *a, *b;
        int na, nb;
        int64_t sa[SB_MAX_DIMS], sbs[SB_MAX_DIMS];
        assert_sb_ok(err, sb_h5_read_f32(o, names[i], &a, &na, sa, &err));
        assert_sb_ok(err, sb_h5_read_f32(g, names[i], &b, &nb, sbs, &err));
        assert_int_equal(na, nb);
        int64_t n = 1;
        for (int k = 0; k < na; k++) {
            assert_int_equal(sa[k], sbs[k]);
            n *= sa[k];
        }
        cmp_stats st = compare_f32(names[i], a, b, (size_t)n);
        /* binary masks: no pixel near the threshold in this fixture (see the parity test) */
        assert_true(st.max_abs <= 1e-4 * st.max_ref + 1e-6);
        free(a), free(b);
    }
    sb_h5_close(o);
    sb_h5_close(g);

    /* bad input: a config that does not match the weights -> exit 2, naming the key */
    rc = run_sambench(&log, "replay --flow sam --model-config configs/models/sam_vit_b.yaml "
                            "--checkpoint %s --output-dir %s %s",
                      fixture_path("sam_vit_tiny.pth"), dir, fixture_path("sam_step0.h5"));
    assert_int_equal(rc, 2);
    assert_non_null(log);
    assert_non_null(strstr(log, "encoder_embed_dim"));
    free(log);
    /* a SAM2 checkpoint for the sam flow: missing keys, exit 2 */
    rc = run_sambench(&log, "replay --flow sam --model-config %s --checkpoint %s --output-dir %s %s",
                      fixture_path("sam_vit_tiny_config.json"), fixture_path("sam2_tiny.pth"), dir,
                      fixture_path("sam_step0.h5"));
    assert_int_equal(rc, 2);
    assert_non_null(log);
    assert_non_null(strstr(log, "image_encoder."));
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rel_pos_resize),
        cmocka_unit_test(test_rel_attention_matches_naive),
        cmocka_unit_test(test_rel_attention_threads_and_arena),
        cmocka_unit_test(test_config_files),
        cmocka_unit_test(test_config_vs_weights),
        cmocka_unit_test(test_parity_fixture_config),
        cmocka_unit_test(test_parity_inferred_config_medsam),
        cmocka_unit_test(test_encoder_other_sizes_vs_naive),
        cmocka_unit_test(test_replay_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
