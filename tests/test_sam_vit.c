/*
 * SAM ViT (sam / medsam flow): relative-position attention against a naive
 * full-matrix implementation (incl. the get_rel_pos interpolation path),
 * configs, and parity with the PyTorch golden tensors of sam_step0.h5.
 */
#include "util_test.h"
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

typedef struct {
    int n;
    char name[64][64];
    float *data[64];
    int64_t numel[64];
    int64_t shape[64][4];
    int ndim[64];
} dumps;

static void collect(void *arg, const char *name, const float *data, int ndim, const int64_t *shape)
{
    dumps *d = arg;
    if (d->n >= 64 || !data)
        return;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    int k = d->n++;
    snprintf(d->name[k], sizeof d->name[k], "%s", name);
    d->data[k] = malloc(sizeof(float) * (size_t)n);
    memcpy(d->data[k], data, sizeof(float) * (size_t)n);
    d->numel[k] = n;
    d->ndim[k] = ndim;
    for (int i = 0; i < ndim && i < 4; i++)
        d->shape[k][i] = shape[i];
}

static const float *find_dump(const dumps *d, const char *name, int64_t *numel)
{
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->name[i], name) == 0) {
            *numel = d->numel[i];
            return d->data[i];
        }
    return NULL;
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

    dumps d;
    memset(&d, 0, sizeof d);
    sb_forward_options fo;
    memset(&fo, 0, sizeof fo);
    fo.threshold = 0.5f;
    fo.dump = collect;
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
    int checked = 0;
    printf("parity %s (flow %s):\n", h5name, sb_flow_name(flow));
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!sb_h5_has(f, names[i]))
            continue;
        float *ref;
        assert_sb_ok(err, sb_h5_read_f32(f, names[i], &ref, &nd, shp, &err));
        int64_t n = 1;
        for (int k = 0; k < nd; k++)
            n *= shp[k];
        int64_t got_n = 0;
        const float *got = find_dump(&d, names[i], &got_n);
        if (!got)
            fail_msg("the model did not expose %s", names[i]);
        assert_int_equal(got_n, n);
        cmp_stats st = compare_f32(names[i], got, ref, (size_t)n);
        if (!(st.max_abs <= 1e-4 * st.max_ref + 1e-6))
            fail_msg("%s: max |c - r| %.3e > 1e-4 x %.3e + 1e-6", names[i], st.max_abs, st.max_ref);
        checked++;
        free(ref);
    }
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
    for (int i = 0; i < d.n; i++)
        free(d.data[i]);
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
        cmocka_unit_test(test_replay_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
