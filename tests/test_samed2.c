/*
 * SAMed-2 at parity with the PyTorch reference (MODEL.md 1.5): the golden
 * files samed2_step0.h5 then samed2_step1.h5 (the bank evolves between
 * them) with samed2_tiny.pth and the public 6-entry bank. Every tensor the
 * core computes is compared (max |c - r| <= 1e-4 max|r| + 1e-6), bank
 * selections and orders exactly, binary masks except near the threshold.
 * Also: the bank in isolation, the two scopes, and bad input.
 */
#include "util_parity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sb_weights *w;
    sb_model *m;
    sb_bank *bank;
    sb_membank_base *base;
    sb_ctx *ctx;
} fixture_model;

static void open_model(fixture_model *fm)
{
    sb_error err;
    memset(fm, 0, sizeof *fm);
    assert_sb_ok(err, sb_ctx_create(&fm->ctx, 0, &err));
    assert_sb_ok(err, sb_weights_load(&fm->w, fixture_path("samed2_tiny.pth"), &err));
    sb_model_options mo = {0};
    mo.flow = SB_FLOW_SAMED2;
    mo.config_path = fixture_path("samed2_tiny_config.json");
    mo.weights = fm->w;
    assert_sb_ok(err, sb_model_create(&fm->m, &mo, fm->ctx, &err));
    assert_sb_ok(err, sb_bank_load(&fm->bank, fixture_path("memory_bank_list_6.pkl"), &err));
    assert_sb_ok(err, sb_membank_base_create(&fm->base, fm->bank, fm->ctx, &err));
}

static void close_model(fixture_model *fm)
{
    sb_model_free(fm->m);
    sb_membank_base_free(fm->base);
    sb_bank_free(fm->bank);
    sb_weights_free(fm->w);
    sb_ctx_free(fm->ctx);
}

typedef struct {
    float *img, *boxes;
    int64_t B, S;
} step_input;

static void read_input(const char *fixture, step_input *in)
{
    sb_error err;
    sb_h5 *f;
    int nd;
    int64_t shp[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_open(&f, fixture_path(fixture), SB_H5_READ, &err));
    assert_sb_ok(err, sb_h5_read_f32(f, "input/image", &in->img, &nd, shp, &err));
    in->B = shp[0];
    in->S = shp[2];
    assert_sb_ok(err, sb_h5_read_f32(f, "input/boxes", &in->boxes, &nd, shp, &err));
    sb_h5_close(f);
}

/* Runs one golden step on the model with bank mb and compares everything. */
static void run_step(fixture_model *fm, sb_membank *mb, const char *fixture, sb_model_output *out)
{
    sb_error err;
    step_input in;
    read_input(fixture, &in);
    dump_store ds = {0};
    sb_forward_options fo;
    sb_forward_options_default(&fo);
    fo.dump = store_dump;
    fo.dump_arg = &ds;
    sb_prompts pr = {0};
    pr.boxes = in.boxes;
    assert_sb_ok(err, sb_model_set_membank(fm->m, mb, &err));
    assert_sb_ok(err, sb_model_forward(fm->m, fm->ctx, in.img, in.B, &pr, &fo, out, &err));
    sb_h5 *f;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path(fixture), SB_H5_READ, &err));
    printf("%s (samed2 flow, batch %lld)\n", fixture, (long long)in.B);
    int failures = 0, compared = 0;
    for (int i = 0; i < 64; i++) {
        char bn[64];
        snprintf(bn, sizeof bn, "encoder/trunk/block_%02d", i);
        compared += compare_tensor(f, &ds, bn, &failures);
    }
    const char *names[] = {
        "encoder/trunk/patch_embed", "encoder/trunk/pos_embed", "encoder/trunk/out_0",
        "encoder/trunk/out_1", "encoder/trunk/out_2", "encoder/trunk/out_3", "encoder/backbone_fpn_0",
        "encoder/backbone_fpn_1", "encoder/backbone_fpn_2", "encoder/vision_pos_enc_2",
        "forward_image/backbone_fpn_0", "forward_image/backbone_fpn_1", "forward_image/backbone_fpn_2",
        "memory_select/combined_scores", "memory_attention/curr", "memory_attention/curr_pos",
        "memory_attention/memory", "memory_attention/memory_pos", "memory_attention/output",
        "prompt_encoder/sparse", "mask_decoder/image_embeddings", "mask_decoder/all_masks",
        "mask_decoder/all_iou", "mask_decoder/low_res_masks", "mask_decoder/iou_pred", "logits/final",
        "memory_encoder/pix_feat", "memory_encoder/mask_in", "memory_encoder/vision_features",
        "memory_encoder/vision_pos_enc", "bank_update/maskmem_features_in", "bank_update/ious_in",
        "bank_update/backbone_features_in"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        compared += compare_tensor(f, &ds, names[i], &failures);
    compared += compare_exact(f, &ds, "memory_select/indices", &failures);
    compared += compare_exact(f, &ds, "bank_update/order_after", &failures);
    compared += check_binary(f, &ds, "logits/final", &failures);
    printf("  compared %d tensors, %d failures\n", compared, failures);
    assert_true(compared >= 30); /* per-block tensors exist in step 0 only */
    assert_int_equal(failures, 0);

    /* the bank after the step equals the golden bank_after tensors */
    float *ref_mm, *ref_pos, *ref_iou;
    int nd;
    int64_t shp[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "bank_after/maskmem_features", &ref_mm, &nd, shp, &err));
    assert_sb_ok(err, sb_h5_read_f32(f, "bank_after/maskmem_pos_enc", &ref_pos, &nd, shp, &err));
    assert_sb_ok(err, sb_h5_read_f32(f, "bank_after/iou", &ref_iou, &nd, shp, &err));
    int64_t N = sb_membank_entries(mb), chw;
    int64_t C, H, W, fl;
    sb_membank_shape(mb, &C, &H, &W, &fl);
    chw = C * H * W;
    float *mm = malloc((size_t)chw * sizeof(float)), *pp = malloc((size_t)chw * sizeof(float));
    /* New entries are stored in bf16 (MODEL.md 4.3): a value computed 1e-6
     * away from the reference may round to the neighbouring bf16 value, so
     * each element may be off by one bf16 ulp of the reference, no more. */
    size_t flips = 0;
    for (int64_t i = 0; i < N; i++) {
        float iou;
        sb_membank_entry_f32(mb, i, mm, pp, &iou);
        const float *rm = ref_mm + i * chw, *rp = ref_pos + i * chw;
        for (int64_t e = 0; e < chw; e++) {
            double r = rm[e], ulp = r == 0 ? 0 : ldexp(1.0, ilogb(r) - 7);
            if (mm[e] != rm[e]) {
                flips++;
                if (fabs(mm[e] - r) > ulp)
                    fail_msg("bank entry %lld element %lld: %g vs reference %g (more than one bf16 ulp)",
                             (long long)i, (long long)e, mm[e], r);
            }
            if (pp[e] != rp[e])
                fail_msg("bank entry %lld pos element %lld differs", (long long)i, (long long)e);
        }
        assert_true(fabs(iou - ref_iou[i]) <= 1e-4 * fabs(ref_iou[i]) + 1e-6);
    }
    printf("  bank_after: %lld entries, %zu maskmem values one bf16 ulp from the reference\n", (long long)N,
           flips);
    free(mm);
    free(pp);
    free(ref_mm);
    free(ref_pos);
    free(ref_iou);
    sb_h5_close(f);
    store_free(&ds);
    free(in.img);
    free(in.boxes);
}

static void test_samed2_parity(void **state)
{
    (void)state;
    fixture_model fm;
    open_model(&fm);
    sb_error err;
    sb_membank *mb;
    assert_sb_ok(err, sb_membank_create(&mb, fm.base, SB_BANK_GLOBAL, &err));
    sb_model_output out = {0};
    run_step(&fm, mb, "samed2_step0.h5", &out);
    run_step(&fm, mb, "samed2_step1.h5", &out); /* the bank carried over (global scope) */
    sb_model_output_free(&out);
    sb_membank_free(mb);
    close_model(&fm);
}

/* Runs a step without dumps; returns the low-res logits (malloc'ed). */
static float *plain_step(fixture_model *fm, sb_membank *mb, const char *fixture, int64_t *n)
{
    sb_error err;
    step_input in;
    read_input(fixture, &in);
    sb_prompts pr = {0};
    pr.boxes = in.boxes;
    sb_model_output out = {0};
    assert_sb_ok(err, sb_model_set_membank(fm->m, mb, &err));
    assert_sb_ok(err, sb_model_forward(fm->m, fm->ctx, in.img, in.B, &pr, NULL, &out, &err));
    *n = out.B * out.low_h * out.low_w;
    float *r = malloc((size_t)*n * sizeof(float));
    memcpy(r, out.low_res, (size_t)*n * sizeof(float));
    sb_model_output_free(&out);
    free(in.img);
    free(in.boxes);
    return r;
}

static uint64_t bank_checksum(const sb_bank *b)
{
    uint64_t h = 1469598103934665603ULL;
    size_t es = b->mem_dtype == SB_DT_BF16 ? 2 : 4, fs = b->feat_dtype == SB_DT_BF16 ? 2 : 4;
    for (int64_t i = 0; i < b->n; i++) {
        const unsigned char *p = b->maskmem[i];
        for (size_t k = 0; k < (size_t)(b->C * b->H * b->W) * es; k++)
            h = (h ^ p[k]) * 1099511628211ULL;
        p = b->feat[i];
        for (size_t k = 0; k < (size_t)b->feat_len * fs; k++)
            h = (h ^ p[k]) * 1099511628211ULL;
        h ^= (uint64_t)(b->iou[i] * 1e6f);
    }
    return h;
}

/* Volume scope = global scope started from the pristine bank; volumes that
 * share one base never see each other's updates; the base is never written. */
static void test_scopes(void **state)
{
    (void)state;
    fixture_model fm;
    open_model(&fm);
    sb_error err;
    uint64_t sum0 = bank_checksum(fm.bank);
    sb_membank *g, *v1, *v2;
    assert_sb_ok(err, sb_membank_create(&g, fm.base, SB_BANK_GLOBAL, &err));
    assert_sb_ok(err, sb_membank_create(&v1, fm.base, SB_BANK_VOLUME, &err));
    assert_sb_ok(err, sb_membank_create(&v2, fm.base, SB_BANK_VOLUME, &err));
    int64_t n, n2;
    /* global: step0 then step1 on the evolving bank */
    float *g0 = plain_step(&fm, g, "samed2_step0.h5", &n);
    float *g1 = plain_step(&fm, g, "samed2_step1.h5", &n);
    /* volume 1 = slices 0-1 then 2-3 of one volume: identical to global from pristine */
    sb_membank_begin_volume(v1);
    float *a0 = plain_step(&fm, v1, "samed2_step0.h5", &n2);
    float *a1 = plain_step(&fm, v1, "samed2_step1.h5", &n2);
    assert_int_equal(n, n2);
    assert_memory_equal(g0, a0, (size_t)n * sizeof(float));
    assert_memory_equal(g1, a1, (size_t)n * sizeof(float));
    /* volume 2 shares the base: pristine order, no overlay entries, same outputs */
    int32_t order[6];
    sb_membank_order(v2, order);
    for (int i = 0; i < 6; i++)
        assert_int_equal(order[i], i);
    sb_membank_order(v1, order); /* v1 replaced an entry in step 1 (inventory.json: 0,1,2,3,5,-1) */
    assert_true(order[5] < 0);
    float *b0 = plain_step(&fm, v2, "samed2_step0.h5", &n2);
    assert_memory_equal(g0, b0, (size_t)n * sizeof(float));
    /* a new volume on v1 starts from the pristine bank again */
    sb_membank_begin_volume(v1);
    sb_membank_order(v1, order);
    for (int i = 0; i < 6; i++)
        assert_int_equal(order[i], i);
    float *c1 = plain_step(&fm, v1, "samed2_step1.h5", &n2);
    float *h1 = NULL;
    { /* step1 straight from the pristine bank differs from step1 after step0 */
        sb_membank *fresh;
        assert_sb_ok(err, sb_membank_create(&fresh, fm.base, SB_BANK_GLOBAL, &err));
        h1 = plain_step(&fm, fresh, "samed2_step1.h5", &n2);
        sb_membank_free(fresh);
    }
    assert_memory_equal(c1, h1, (size_t)n * sizeof(float));
    /* the global-scope bank does not reset at a volume boundary */
    sb_membank_begin_volume(g);
    sb_membank_order(g, order);
    assert_true(order[5] < 0);
    printf("  overlay bytes: global %zu, volume %zu\n", sb_membank_overlay_bytes(g), sb_membank_overlay_bytes(v2));
    assert_true(bank_checksum(fm.bank) == sum0); /* the shared base is read-only */
    int64_t B, k;
    const int32_t *idx, *rep;
    assert_sb_ok(err, sb_model_bank_decisions(fm.m, &B, &k, &idx, &rep));
    assert_int_equal(B, 2);
    assert_int_equal(k, 2);
    free(g0); free(g1); free(a0); free(a1); free(b0); free(c1); free(h1);
    sb_membank_free(g);
    sb_membank_free(v1);
    sb_membank_free(v2);
    close_model(&fm);
}

/* Bad input: odd batch, no bank, NaN iou, oversized top-k, other flows. */
static void test_errors(void **state)
{
    (void)state;
    fixture_model fm;
    open_model(&fm);
    sb_error err;
    step_input in;
    read_input("samed2_step0.h5", &in);
    sb_prompts pr = {0};
    pr.boxes = in.boxes;
    sb_model_output out = {0};
    /* no bank */
    assert_int_equal(sb_model_forward(fm.m, fm.ctx, in.img, 2, &pr, NULL, &out, &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "memory bank"));
    sb_membank *mb;
    assert_sb_ok(err, sb_membank_create(&mb, fm.base, SB_BANK_GLOBAL, &err));
    assert_sb_ok(err, sb_model_set_membank(fm.m, mb, &err));
    /* odd batch: the temporal adapter pairs images (MODEL.md 2.2.5) */
    int rc = sb_model_forward(fm.m, fm.ctx, in.img, 1, &pr, NULL, &out, &err);
    assert_int_not_equal(rc, SB_OK);
    printf("  odd batch: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "even"));
    int32_t order[6];
    sb_membank_order(mb, order);
    for (int i = 0; i < 6; i++)
        assert_int_equal(order[i], i); /* a failed forward leaves the bank alone */
    /* update with a NaN iou is refused and changes nothing */
    int64_t C, H, W, fl;
    sb_membank_shape(mb, &C, &H, &W, &fl);
    float *mm = calloc((size_t)(C * H * W), sizeof(float)), *feat = calloc((size_t)fl, sizeof(float));
    float bad = NAN;
    assert_int_equal(sb_membank_update(mb, mm, mm, &bad, feat, 1, NULL, NULL, &err), SB_ENUMERIC);
    /* a selection of more memories than entries */
    int32_t idx[16];
    assert_int_equal(sb_membank_select(mb, fm.ctx, feat, 1, fl, 7, idx, NULL, NULL, &err), SB_EINVAL);
    assert_int_equal(sb_membank_select(mb, fm.ctx, feat, 1, fl - 1, 2, idx, NULL, NULL, &err), SB_ESHAPE);
    /* an update that always wins (iou 2 > any sigmoid output) replaces the most similar entry */
    float good = 2.0f;
    int32_t rep = -2, after[6];
    for (int64_t i = 0; i < C * H * W; i++)
        mm[i] = (float)(i % 7) - 3.0f;
    assert_sb_ok(err, sb_membank_update(mb, mm, mm, &good, feat, 1, &rep, after, &err));
    assert_true(rep >= 0 && rep < 6);
    assert_int_equal(after[5], -1);
    sb_membank_order(mb, order);
    assert_true(order[5] < 0);
    float iou_last;
    sb_membank_entry_f32(mb, 5, NULL, NULL, &iou_last);
    assert_true(iou_last == 2.0f);
    /* other flows have no bank */
    assert_int_equal(sb_model_set_membank(NULL, mb, &err), SB_EINVAL);
    free(mm);
    free(feat);
    free(in.img);
    free(in.boxes);
    sb_model_output_free(&out);
    sb_membank_free(mb);
    close_model(&fm);
}

/* sambench replay --flow samed2: the bank carried from file to file, the
 * outputs under the golden names, indices as int32, exit 2 on bad input. */
static void test_replay_cli(void **state)
{
    (void)state;
    const char *dir = temp_path("replay_samed2");
    char *out = NULL;
    int rc = run_sambench(&out,
                          "replay --flow samed2 --model-config %s --checkpoint %s --memory-bank %s "
                          "--output-dir %s %s %s",
                          fixture_path("samed2_tiny_config.json"), fixture_path("samed2_tiny.pth"),
                          fixture_path("memory_bank_list_6.pkl"), dir, fixture_path("samed2_step0.h5"),
                          fixture_path("samed2_step1.h5"));
    if (rc != 0)
        fail_msg("replay failed (%d): %s", rc, out ? out : "");
    free(out);
    const char *steps[] = {"samed2_step0.h5", "samed2_step1.h5"};
    for (int s = 0; s < 2; s++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, steps[s]);
        sb_error err;
        sb_h5 *got, *ref;
        assert_sb_ok(err, sb_h5_open(&got, path, SB_H5_READ, &err));
        assert_sb_ok(err, sb_h5_open(&ref, fixture_path(steps[s]), SB_H5_READ, &err));
        const char *names[] = {"encoder/backbone_fpn_0", "encoder/backbone_fpn_2", "prompt_encoder/sparse",
                               "mask_decoder/low_res_masks", "mask_decoder/iou_pred", "logits/final",
                               "memory_attention/output", "memory_encoder/vision_features"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            float *a, *b;
            size_t n = read_h5_pair(got, ref, names[i], &a, &b);
            cmp_stats st = compare_f32(names[i], a, b, n);
            assert_true(st.max_abs <= 1e-4 * st.max_ref + 1e-6);
            free(a);
            free(b);
        }
        const char *exact[] = {"memory_select/indices", "bank_update/order_after"};
        for (int i = 0; i < 2; i++) {
            int32_t *a, *b;
            int nd1, nd2;
            int64_t s1[SB_MAX_DIMS], s2[SB_MAX_DIMS];
            assert_sb_ok(err, sb_h5_read_i32(got, exact[i], &a, &nd1, s1, &err));
            assert_sb_ok(err, sb_h5_read_i32(ref, exact[i], &b, &nd2, s2, &err));
            assert_int_equal(s1[0], s2[0]);
            assert_memory_equal(a, b, (size_t)(s1[0] * (nd1 > 1 ? s1[1] : 1)) * sizeof(int32_t));
            free(a);
            free(b);
        }
        sb_h5_close(got);
        sb_h5_close(ref);
    }
    /* samed2 without a bank, or a bank for another flow: usage error */
    rc = run_sambench(&out, "replay --flow samed2 --model-config %s --checkpoint %s --output-dir %s %s",
                      fixture_path("samed2_tiny_config.json"), fixture_path("samed2_tiny.pth"), dir,
                      fixture_path("samed2_step0.h5"));
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "--memory-bank"));
    free(out);
    /* a bank whose shapes do not fit the model: one line naming the problem, exit 2 */
    rc = run_sambench(&out, "replay --flow samed2 --model-config %s --checkpoint %s --memory-bank %s --output-dir %s %s",
                      fixture_path("samed2_tiny_config.json"), fixture_path("samed2_tiny.pth"),
                      fixture_path("sam2_tiny.pth"), dir, fixture_path("samed2_step0.h5"));
    assert_int_equal(rc, 2);
    printf("  wrong bank file: %s", out);
    free(out);
}

/* bench-model --flow samed2 with a synthetic bank written in the real
 * format (tiny config so it runs in the test suite): JSON keys and values. */
static void test_bench_model_cli(void **state)
{
    (void)state;
    char *out = NULL;
    int rc = run_sambench(&out,
                          "bench-model --flow samed2 --model-config %s --random-weights --batch 2 --reps 1 "
                          "--threads 1 --bank-entries 5 --format json",
                          fixture_path("samed2_tiny_config.json"));
    if (rc != 0)
        fail_msg("bench-model failed (%d): %s", rc, out ? out : "");
    const char *keys[] = {"\"seconds_per_image\"", "\"gflop_per_image\"", "\"sgemm_peak_gflops\"",
                          "\"efficiency\"", "\"peak_rss_mb\"", "\"modules\"", "\"bank_entries\": 5",
                          "\"memory_attention\"", "\"temporal_adapters\"", "\"bank_update\""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strstr(out, keys[i]))
            fail_msg("bench-model JSON lacks %s:\n%s", keys[i], out);
    free(out);
    rc = run_sambench(&out, "bench-model --flow samed2 --model-config %s --random-weights --batch 2 --reps 1",
                      fixture_path("samed2_tiny_config.json"));
    assert_int_equal(rc, 2); /* a bank is required */
    free(out);
}

/* One copy of a bank serving several readers: load_into fills caller
 * memory; a second reader with fill 0 sees the same entries; the selection
 * over it equals the one over a normal load; freeing leaves the memory. */
static void test_bank_in_caller_memory(void **state)
{
    (void)state;
    sb_error err;
    const char *path = fixture_path("memory_bank_list_6.pkl");
    uint64_t bytes = 0;
    assert_sb_ok(err, sb_bank_slab_bytes(path, &bytes, &err));
    assert_true(bytes > 0);
    void *shared = malloc(bytes);
    memset(shared, 0xAB, bytes);
    sb_bank *own, *writer, *reader;
    assert_sb_ok(err, sb_bank_load(&own, path, &err));
    assert_int_equal(own->slab_bytes, bytes);
    assert_sb_ok(err, sb_bank_load_into(&writer, path, shared, bytes, 1, &err));
    assert_sb_ok(err, sb_bank_load_into(&reader, path, shared, bytes, 0, &err));
    size_t es = own->mem_dtype == SB_DT_BF16 ? 2 : 4, fs = own->feat_dtype == SB_DT_BF16 ? 2 : 4;
    for (int64_t i = 0; i < own->n; i++) {
        assert_ptr_equal(writer->maskmem[i], reader->maskmem[i]);
        assert_ptr_equal(writer->feat[i], reader->feat[i]);
        assert_memory_equal(own->maskmem[i], reader->maskmem[i], (size_t)(own->C * own->H * own->W) * es);
        assert_memory_equal(own->pos[i], reader->pos[i], (size_t)(own->C * own->H * own->W) * es);
        assert_memory_equal(own->feat[i], reader->feat[i], (size_t)own->feat_len * fs);
        assert_true(own->iou[i] == reader->iou[i]);
    }
    /* too little memory: refused with the sizes */
    sb_bank *small = NULL;
    assert_int_equal(sb_bank_load_into(&small, path, shared, bytes - 1, 1, &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "bytes"));
    sb_bank_free(writer);
    sb_bank_free(reader); /* the caller's memory stays */
    assert_memory_equal(own->feat[0], (char *)shared + ((char *)own->feat[0] - (char *)own->slab),
                        (size_t)own->feat_len * fs);
    sb_bank_free(own);
    free(shared);
}

/* sb_membank_select's scores against a double-precision transcription of MODEL.md 4.2
 * (clamped cosine + sigmoid of the stored iou) on banks with bf16 and float32 features whose
 * length is not a multiple of the kernel's blocks, at 1 and 2 threads (identical bits). */
static void test_select_scores(void **state)
{
    (void)state;
    const int64_t C = 4, H = 3, W = 3, N = 7, B = 3, FL = 5000; /* 5000: a partial 4096 chunk and block */
    for (int fdt = 0; fdt < 2; fdt++) {
        const int dtype = fdt ? SB_DT_F32 : SB_DT_BF16;
        char path[1200];
        snprintf(path, sizeof path, "%s", temp_path(fdt ? "sel_f32.pkl" : "sel_bf16.pkl"));
        sb_error err;
        sb_bank_writer *bw;
        assert_sb_ok(err, sb_bank_writer_open(&bw, path, "cpu", &err));
        uint16_t *h = malloc(sizeof(uint16_t) * FL), mmh[36];
        float *fv = malloc(sizeof(float) * FL);
        for (int64_t q = 0; q < C * H * W; q++)
            mmh[q] = sb_f32_to_bf16(0.25f * (float)(q % 5));
        for (int64_t n = 0; n < N; n++) {
            fill_uniform(fv, (size_t)FL, 100 + (uint64_t)n, -1.0f, 1.0f);
            if (n == 3)
                for (int64_t i = 0; i < FL; i++)
                    fv[i] = -fv[i]; /* negative cosines: clamped to 0 */
            for (int64_t i = 0; i < FL; i++)
                h[i] = sb_f32_to_bf16(fv[i]);
            float iou = 0.1f * (float)n;
            assert_sb_ok(err, sb_bank_writer_add(bw, C, H, W, SB_DT_BF16, mmh, mmh, SB_DT_F32, iou, FL, dtype,
                                                 fdt ? (const void *)fv : (const void *)h, &err));
        }
        assert_sb_ok(err, sb_bank_writer_close(bw, &err));
        sb_bank *bank;
        assert_sb_ok(err, sb_bank_load(&bank, path, &err));
        assert_int_equal(bank->feat_dtype, dtype);
        float *cur = malloc(sizeof(float) * B * FL);
        fill_uniform(cur, (size_t)(B * FL), 7, -1.0f, 1.0f);
        float *got[2];
        int32_t idx[2][B * 2];
        for (int t = 0; t < 2; t++) {
            sb_ctx *ctx;
            sb_membank_base *base;
            sb_membank *mb;
            assert_sb_ok(err, sb_ctx_create(&ctx, t + 1, &err));
            assert_sb_ok(err, sb_membank_base_create(&base, bank, ctx, &err));
            assert_sb_ok(err, sb_membank_create(&mb, base, SB_BANK_GLOBAL, &err));
            got[t] = malloc(sizeof(float) * B * N);
            assert_sb_ok(err, sb_membank_select(mb, ctx, cur, B, FL, 2, idx[t], got[t], NULL, &err));
            sb_membank_free(mb);
            sb_membank_base_free(base);
            sb_ctx_free(ctx);
        }
        assert_memory_equal(got[0], got[1], sizeof(float) * B * N);
        assert_memory_equal(idx[0], idx[1], sizeof idx[0]);
        double worst = 0;
        for (int64_t b = 0; b < B; b++) {
            double cn = 0;
            for (int64_t i = 0; i < FL; i++)
                cn += (double)cur[b * FL + i] * cur[b * FL + i];
            for (int64_t n = 0; n < N; n++) {
                float *f = malloc(sizeof(float) * FL);
                sb_bank_to_f32(bank->feat[n], bank->feat_dtype, FL, f);
                double d = 0, fn = 0;
                for (int64_t i = 0; i < FL; i++) {
                    d += (double)cur[b * FL + i] * f[i];
                    fn += (double)f[i] * f[i];
                }
                free(f);
                double cosv = d / (sqrt(cn) * sqrt(fn));
                double want = (cosv > 0 ? cosv : 0) + 1.0 / (1.0 + exp(-(double)bank->iou[n]));
                double e = fabs(got[0][b * N + n] - want);
                if (e > worst)
                    worst = e;
            }
        }
        printf("  select scores (%s features): worst |score - double reference| %.2e\n", fdt ? "f32" : "bf16", worst);
        assert_true(worst < 1e-6);
        free(got[0]);
        free(got[1]);
        free(cur);
        free(h);
        free(fv);
        sb_bank_free(bank);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samed2_parity),
        cmocka_unit_test(test_scopes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_replay_cli),
        cmocka_unit_test(test_bench_model_cli),
        cmocka_unit_test(test_bank_in_caller_memory),
        cmocka_unit_test(test_select_scores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
