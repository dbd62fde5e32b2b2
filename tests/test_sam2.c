/*
 * Parity of the sam2 and medsam2 flows with the PyTorch reference
 * (tests/fixtures/sam2_step0.h5, medsam2_step0.h5 written by the published
 * code on CPU fp32 with sam2_tiny.pth / sam2_tiny_config.json). Every
 * tensor the core computes is compared: max |c - r| <= 1e-4 max|r| + 1e-6;
 * the binary mask must be identical except where the reference logit is
 * within 1e-4 max|logit| of the 0.5 threshold.
 * Also: config reading (official YAMLs in configs/models, defaults, errors),
 * error paths of the model API, and batch independence.
 */
#include "util_parity.h"
#include "../core/sam2_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void run_parity(const char *fixture, int flow)
{
    sb_error err;
    sb_weights *w = NULL;
    assert_sb_ok(err, sb_weights_load(&w, fixture_path("sam2_tiny.pth"), &err));
    sb_model_options mo = {0};
    mo.flow = flow;
    mo.config_path = fixture_path("sam2_tiny_config.json");
    mo.weights = w;
    sb_model *m = NULL;
    assert_sb_ok(err, sb_model_create(&m, &mo, NULL, &err));
    sb_h5 *f = NULL;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path(fixture), SB_H5_READ, &err));
    float *img = NULL, *boxes = NULL;
    int nd;
    int64_t shp[SB_MAX_DIMS], bs[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "input/image", &img, &nd, shp, &err));
    assert_int_equal(shp[2], sb_model_image_size(m));
    assert_sb_ok(err, sb_h5_read_f32(f, "input/boxes", &boxes, &nd, bs, &err));
    int64_t B = shp[0];
    dump_store ds = {0};
    sb_forward_options fo;
    sb_forward_options_default(&fo);
    fo.dump = store_dump;
    fo.dump_arg = &ds;
    sb_prompts pr = {0};
    pr.boxes = boxes;
    sb_model_output out = {0};
    sb_ctx *ctx = NULL;
    assert_sb_ok(err, sb_ctx_create(&ctx, 0, &err));
    assert_sb_ok(err, sb_model_forward(m, ctx, img, B, &pr, &fo, &out, &err));
    printf("%s (%s flow, batch %lld)\n", fixture, sb_flow_name(flow), (long long)B);
    int failures = 0, compared = 0;
    const char *names[] = {
        "encoder/trunk/patch_embed", "encoder/trunk/pos_embed", "encoder/trunk/out_0", "encoder/trunk/out_1",
        "encoder/trunk/out_2", "encoder/trunk/out_3", "encoder/backbone_fpn_0", "encoder/backbone_fpn_1",
        "encoder/backbone_fpn_2", "encoder/vision_pos_enc_0", "encoder/vision_pos_enc_1",
        "encoder/vision_pos_enc_2", "forward_image/backbone_fpn_0", "forward_image/backbone_fpn_1",
        "forward_image/backbone_fpn_2", "prompt_encoder/sparse", "prompt_encoder/dense",
        "prompt_encoder/dense_pe", "prompt_encoder/boxes", "mask_decoder/image_embeddings",
        "mask_decoder/high_res_features_0", "mask_decoder/high_res_features_1", "mask_decoder/all_masks",
        "mask_decoder/all_iou", "mask_decoder/all_mask_tokens_out", "mask_decoder/object_score_logits",
        "mask_decoder/low_res_masks", "mask_decoder/iou_pred", "logits/final"};
    for (int i = 0; i < 64; i++) {
        char bn[64];
        snprintf(bn, sizeof bn, "encoder/trunk/block_%02d", i);
        compared += compare_tensor(f, &ds, bn, &failures);
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        compared += compare_tensor(f, &ds, names[i], &failures);
    compared += check_binary(f, &ds, "logits/final", &failures);
    /* the returned outputs equal the dumped ones */
    const dumped *lr = store_find(&ds, "mask_decoder/low_res_masks");
    assert_non_null(lr);
    assert_memory_equal(lr->data, out.low_res, lr->n * sizeof(float));
    printf("  compared %d tensors, %d over tolerance\n", compared, failures);
    assert_true(compared >= 20);
    assert_int_equal(failures, 0);

    /* batch independence: the last image alone gives the same outputs (sam2/medsam2 have no batch coupling) */
    sb_model_output o1 = {0};
    int64_t S = shp[2], last = B - 1;
    sb_prompts p1 = {0};
    p1.boxes = boxes + 4 * last;
    assert_sb_ok(err, sb_model_forward(m, ctx, img + last * 3 * S * S, 1, &p1, NULL, &o1, &err));
    cmp_stats st = compare_f32("batch-1 vs whole-batch low_res", o1.low_res, out.low_res + last * o1.low_h * o1.low_w,
                               (size_t)(o1.low_h * o1.low_w));
    assert_true(st.max_abs <= 1e-5 * st.max_ref + 1e-6);
    /* native-size output: nearest / bilinear to another size */
    sb_forward_options f2;
    sb_forward_options_default(&f2);
    f2.out_h = 100;
    f2.out_w = 77;
    assert_sb_ok(err, sb_model_forward(m, ctx, img, B, &pr, &f2, &o1, &err));
    st = compare_f32("batch without dumps (per-image trunk) low_res", o1.low_res, out.low_res,
                     (size_t)(B * o1.low_h * o1.low_w));
    assert_true(st.max_abs <= 1e-5 * st.max_ref + 1e-6);
    assert_int_equal(o1.out_h, 100);
    assert_int_equal(o1.out_w, 77);
    for (int64_t i = 0; i < B * 100 * 77; i++)
        assert_int_equal(o1.mask[i], o1.logits[i] > 0.5f);
    sb_model_output_free(&o1);

    /* NaN input is an error naming the problem */
    img[5] = NAN;
    assert_int_equal(sb_model_forward(m, ctx, img, B, &pr, NULL, &out, &err), SB_ENUMERIC);
    assert_non_null(strstr(err.msg, "NaN"));

    sb_model_output_free(&out);
    store_free(&ds);
    free(img);
    free(boxes);
    sb_h5_close(f);
    sb_model_free(m);
    sb_weights_free(w);
    sb_ctx_free(ctx);
}

static void test_sam2_parity(void **state)
{
    (void)state;
    run_parity("sam2_step0.h5", SB_FLOW_SAM2);
}

static void test_medsam2_parity(void **state)
{
    (void)state;
    run_parity("medsam2_step0.h5", SB_FLOW_MEDSAM2);
}

static void test_configs(void **state)
{
    (void)state;
    sb_error err;
    sb_sam2_config c, d;
    /* the shipped official YAMLs equal the release defaults */
    struct {
        const char *file;
        int flow;
    } rel[] = {{"configs/models/sam2_hiera_s_original.yaml", SB_FLOW_SAM2},
               {"configs/models/sam2_hiera_t_original.yaml", SB_FLOW_MEDSAM2},
               {"configs/models/sam2_hiera_s.yaml", SB_FLOW_SAMED2}};
    for (int i = 0; i < 3; i++) {
        assert_sb_ok(err, sb_sam2_config_load(&c, rel[i].file, &err));
        assert_sb_ok(err, sb_sam2_config_default(&d, rel[i].flow, &err));
        assert_memory_equal(&c, &d, sizeof c);
    }
    assert_int_equal(c.trunk_kind, SB_TRUNK_HIERA_ADAPTER);
    assert_sb_ok(err, sb_sam2_config_load(&c, "configs/models/sam2_hiera_t_original.yaml", &err));
    assert_int_equal(c.stages[2], 7);
    assert_int_equal(c.global_att_blocks[0], 5);
    assert_int_equal(c.window_spec[2], 14);
    /* the fixture JSON loads; the values are checked on a copy of its layout
     * (so the test does not depend on which tiny sizes the fixture uses) */
    assert_sb_ok(err, sb_sam2_config_load(&c, fixture_path("sam2_tiny_config.json"), &err));
    const char *jp = temp_path("tiny_config.json");
    FILE *jf = fopen(jp, "w");
    assert_non_null(jf);
    fputs("{\"variant\": \"sam2\", \"overrides\": {\"image_size\": 999},\n"
          " \"full_model_cfg_after_overrides\": {\"_target_\": \"sam2.modeling.sam2_base.SAM2Base\",\n"
          "  \"image_encoder\": {\"_target_\": \"x.ImageEncoder\", \"scalp\": 1,\n"
          "   \"trunk\": {\"_target_\": \"sam2.modeling.backbones.hieradet_sam2.Hiera\", \"embed_dim\": 8,\n"
          "    \"num_heads\": 1, \"stages\": [1, 2, 3, 1], \"global_att_blocks\": [4],\n"
          "    \"window_pos_embed_bkg_spatial_size\": [7, 7], \"window_spec\": [8, 4, 4, 2]},\n"
          "   \"neck\": {\"_target_\": \"x.FpnNeck\", \"position_encoding\": {\"_target_\": \"x.PositionEmbeddingSine\",\n"
          "     \"num_pos_feats\": 32, \"normalize\": true, \"scale\": null, \"temperature\": 10000},\n"
          "    \"d_model\": 32, \"backbone_channel_list\": [64, 32, 16, 8], \"fpn_top_down_levels\": [2, 3],\n"
          "    \"fpn_interp_model\": \"nearest\"}},\n"
          "  \"memory_encoder\": {\"out_dim\": 16, \"fuser\": {\"layer\": {\"layer_scale_init_value\": \"1e-6\"}}},\n"
          "  \"image_size\": 192, \"directly_add_no_mem_embed\": true, \"use_high_res_features_in_sam\": true,\n"
          "  \"iou_prediction_use_sigmoid\": true, \"pred_obj_scores\": true, \"pred_obj_scores_mlp\": true,\n"
          "  \"sam_mask_decoder_extra_args\": {\"dynamic_multimask_via_stability\": true,\n"
          "   \"dynamic_multimask_stability_delta\": 0.05, \"dynamic_multimask_stability_thresh\": 0.98}}}\n",
          jf);
    fclose(jf);
    assert_sb_ok(err, sb_sam2_config_load(&c, jp, &err));
    assert_int_equal(c.mem_enc_out_dim, 16);
    assert_int_equal(c.dynamic_multimask, 1);
    assert_int_equal(c.fpn_interp_nearest, 1);
    assert_int_equal(c.image_size, 192);
    assert_int_equal(c.embed_dim, 8);
    assert_int_equal(c.d_model, 32);
    assert_int_equal(c.window_spec[3], 2);
    assert_int_equal(c.n_global, 1);
    assert_int_equal(c.stages[2], 3);
    assert_int_equal(c.trunk_kind, SB_TRUNK_HIERA_SAM2);
    assert_sb_ok(err, sb_sam2_config_load(&c, fixture_path("samed2_tiny_config.json"), &err));
    assert_int_equal(c.trunk_kind, SB_TRUNK_HIERA_ADAPTER);
    /* errors: a missing file, bad YAML, an unknown trunk, inconsistent channels */
    assert_int_equal(sb_sam2_config_load(&c, "/nonexistent/cfg.yaml", &err), SB_EIO);
    const char *p = temp_path("bad.yaml");
    FILE *f = fopen(p, "w");
    fputs("model:\n  image_encoder: [1, 2\n", f);
    fclose(f);
    assert_int_equal(sb_sam2_config_load(&c, p, &err), SB_EFORMAT);
    assert_non_null(strstr(err.msg, "bad.yaml"));
    f = fopen(p, "w");
    fputs("model:\n  image_encoder:\n    trunk:\n      _target_: x.ViT\n    neck: {}\n", f);
    fclose(f);
    assert_int_equal(sb_sam2_config_load(&c, p, &err), SB_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "x.ViT"));
    f = fopen(p, "w");
    fputs("model:\n  image_encoder:\n    scalp: 1\n    trunk:\n      _target_: a.hieradet_sam2.Hiera\n"
          "      embed_dim: 96\n      stages: [1, 2, 11, 2]\n    neck:\n      d_model: 256\n"
          "      backbone_channel_list: [768, 384, 192, 64]\n  image_size: 1024\n", f);
    fclose(f);
    assert_int_equal(sb_sam2_config_load(&c, p, &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "backbone_channel_list"));
    f = fopen(p, "w");
    fputs("model:\n  image_size: abc\n  image_encoder:\n    trunk:\n      _target_: a.hieradet_sam2.Hiera\n"
          "    neck: {}\n", f);
    fclose(f);
    assert_int_equal(sb_sam2_config_load(&c, p, &err), SB_EFORMAT);
    assert_non_null(strstr(err.msg, "image_size"));
}

static void test_model_errors(void **state)
{
    (void)state;
    sb_error err;
    sb_weights *w = NULL;
    assert_sb_ok(err, sb_weights_load(&w, fixture_path("sam2_tiny.pth"), &err));
    sb_model *m = NULL;
    sb_model_options mo = {0};
    /* the full-size config does not fit the tiny checkpoint: the error names key and shapes */
    mo.flow = SB_FLOW_SAM2;
    mo.weights = w;
    assert_int_not_equal(sb_model_create(&m, &mo, NULL, &err), SB_OK);
    assert_null(m);
    assert_non_null(strstr(err.msg, "image_encoder.trunk"));
    printf("  full-size config on the tiny checkpoint: %s\n", err.msg);
    /* samed2 flow on a sam2 config */
    mo.flow = SB_FLOW_SAMED2;
    mo.config_path = fixture_path("sam2_tiny_config.json");
    assert_int_equal(sb_model_create(&m, &mo, NULL, &err), SB_EINVAL);
    /* no weights */
    mo.flow = SB_FLOW_SAM2;
    mo.weights = NULL;
    assert_int_equal(sb_model_create(&m, &mo, NULL, &err), SB_EINVAL);
    assert_string_equal(sb_flow_name(SB_FLOW_MEDSAM2), "medsam2");
    assert_int_equal(sb_flow_parse("sam2"), SB_FLOW_SAM2);
    assert_int_equal(sb_flow_parse("nope"), -1);
    sb_weights_free(w);

    /* random weights, tiny config: deterministic, finite outputs, points as prompts */
    mo.random_weights = 1;
    mo.seed = 7;
    assert_sb_ok(err, sb_model_create(&m, &mo, NULL, &err));
    int64_t S = sb_model_image_size(m);
    float *img = malloc((size_t)(2 * 3 * S * S) * sizeof(float));
    fill_uniform(img, (size_t)(2 * 3 * S * S), 3, 0.0f, 1.0f);
    float pts[2 * 2 * 2] = {10, 20, 50, 60, 100, 30, 40, 150};
    int32_t labels[4] = {1, 0, 1, 1};
    sb_prompts pr = {0};
    pr.points = pts;
    pr.point_labels = labels;
    pr.n_points = 2;
    sb_model_output o = {0}, o2 = {0};
    assert_sb_ok(err, sb_model_forward(m, NULL, img, 2, &pr, NULL, &o, &err));
    for (int64_t i = 0; i < 2 * o.low_h * o.low_w; i++)
        assert_true(isfinite(o.low_res[i]));
    sb_model *m2 = NULL;
    assert_sb_ok(err, sb_model_create(&m2, &mo, NULL, &err));
    assert_sb_ok(err, sb_model_forward(m2, NULL, img, 2, &pr, NULL, &o2, &err));
    assert_memory_equal(o.low_res, o2.low_res, (size_t)(2 * o.low_h * o.low_w) * sizeof(float));
    assert_true(sb_model_arena_peak(m) > 0);
    sb_model_output_free(&o);
    sb_model_output_free(&o2);
    sb_model_free(m2);
    sb_model_free(m);
    free(img);
}


/* sambench replay: the written datasets match the golden files under the same tolerance. */
static void replay_and_check(const char *flow, const char *fixture)
{
    const char *dir = temp_path("replay_out");
    char *out = NULL;
    int rc = run_sambench(&out, "replay --flow %s --model-config %s --checkpoint %s --output-dir %s %s", flow,
                          fixture_path("sam2_tiny_config.json"), fixture_path("sam2_tiny.pth"), dir,
                          fixture_path(fixture));
    if (rc != 0)
        fail_msg("replay exit %d: %s", rc, out ? out : "");
    free(out);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, fixture);
    sb_error err;
    sb_h5 *got = NULL, *ref = NULL;
    assert_sb_ok(err, sb_h5_open(&got, path, SB_H5_READ, &err));
    assert_sb_ok(err, sb_h5_open(&ref, fixture_path(fixture), SB_H5_READ, &err));
    const char *names[] = {"encoder/backbone_fpn_0", "encoder/backbone_fpn_1", "encoder/backbone_fpn_2",
                           "prompt_encoder/sparse", "mask_decoder/low_res_masks", "mask_decoder/iou_pred",
                           "logits/final", "output/binary_mask"};
    printf("replay --flow %s %s\n", flow, fixture);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        float *a = NULL, *b = NULL;
        size_t n = read_h5_pair(got, ref, names[i], &a, &b);
        cmp_stats st = compare_f32(names[i], a, b, n);
        if (strcmp(names[i], "output/binary_mask") == 0) {
            /* flips only where the reference logit is within 1e-4 max|logit| of 0.5 */
            float *lg = NULL;
            int nl;
            int64_t sl[SB_MAX_DIMS];
            assert_sb_ok(err, sb_h5_read_f32(ref, "logits/final", &lg, &nl, sl, &err));
            double mx = 0;
            for (size_t k = 0; k < n; k++)
                mx = fmax(mx, fabs(lg[k]));
            for (size_t k = 0; k < n; k++)
                if (a[k] != b[k])
                    assert_true(fabs(lg[k] - 0.5) < 1e-4 * mx);
            free(lg);
        } else
            assert_true(st.max_abs <= 1e-4 * st.max_ref + 1e-6);
        free(a);
        free(b);
    }
    sb_h5_close(got);
    sb_h5_close(ref);
}

static void test_replay_cli(void **state)
{
    (void)state;
    replay_and_check("sam2", "sam2_step0.h5");
    replay_and_check("medsam2", "medsam2_step0.h5");
    char *out = NULL;
    /* bad input: exit 2 with a message naming the problem */
    assert_int_equal(run_sambench(&out, "replay --flow nope --model-config a --checkpoint b --output-dir c d.h5"), 2);
    assert_non_null(strstr(out, "nope"));
    free(out);
    assert_int_equal(run_sambench(&out, "replay --flow sam2 --model-config %s --checkpoint %s --output-dir %s "
                                        "/nonexistent/step.h5",
                                  fixture_path("sam2_tiny_config.json"), fixture_path("sam2_tiny.pth"),
                                  temp_path("replay_bad")),
                     2);
    assert_non_null(strstr(out, "/nonexistent/step.h5"));
    free(out);
    /* a golden file of the wrong image size for the config */
    assert_int_equal(run_sambench(&out, "replay --flow sam2 --model-config configs/models/sam2_hiera_s_original.yaml "
                                        "--checkpoint %s --output-dir %s %s",
                                  fixture_path("sam2_tiny.pth"), temp_path("replay_bad"), fixture_path("sam2_step0.h5")),
                     2);
    assert_non_null(strstr(out, "expected shape"));
    free(out);
    assert_int_equal(run_sambench(&out, "replay --flow sam2"), 2);
    free(out);
    /* bench-model on the tiny config: the JSON keys the issue names, with sane values */
    assert_int_equal(run_sambench(&out, "bench-model --flow medsam2 --model-config %s --random-weights --batch 2 "
                                        "--reps 1 --threads 1 --format json",
                                  fixture_path("sam2_tiny_config.json")),
                     0);
    const char *keys[] = {"\"seconds_per_image\": ", "\"gflop_per_image\": ", "\"sgemm_peak_gflops\": ",
                          "\"efficiency\": ", "\"peak_rss_mb\": "};
    for (int i = 0; i < 5; i++) {
        const char *k = strstr(out, keys[i]);
        assert_non_null(k);
        assert_true(strtod(k + strlen(keys[i]), NULL) > 0);
    }
    assert_non_null(strstr(out, "\"modules\": {\"patch_embed\": "));
    assert_non_null(strstr(out, "\"block_06\": "));
    free(out);
    assert_int_equal(run_sambench(&out, "bench-model --flow sam2 --batch 0 --reps 1 --random-weights"), 2);
    free(out);
    assert_int_equal(run_sambench(&out, "bench-model --flow sam2 --batch 1 --reps 1"), 2);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_configs),
        cmocka_unit_test(test_model_errors),
        cmocka_unit_test(test_sam2_parity),
        cmocka_unit_test(test_medsam2_parity),
        cmocka_unit_test(test_replay_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
