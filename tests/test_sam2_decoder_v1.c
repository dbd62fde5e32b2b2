/*
 * The prompt encoder and mask decoder in their SAM v1 configuration
 * (MODEL.md 2.9-2.10: keys prompt_encoder./mask_decoder., no object-score
 * token so the IoU token is index 0, upscaling without high-resolution
 * features, IoU head without sigmoid, no dynamic multimask: mask token 0)
 * against the PyTorch golden file of the sam flow (sam_step0.h5 with
 * sam_vit_tiny.pth), fed with the reference's own image embeddings. This is
 * the same code the SAM2 flows run, with the variant as parameters.
 */
#include "util_parity.h"
#include "../core/sam2_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(sb_h5 *f, const char *name, const float *data, size_t n)
{
    sb_error err;
    float *ref = NULL;
    int nd;
    int64_t shp[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, name, &ref, &nd, shp, &err));
    size_t m = 1;
    for (int i = 0; i < nd; i++)
        m *= (size_t)shp[i];
    assert_int_equal(m, n);
    cmp_stats st = compare_f32(name, data, ref, n);
    assert_true(st.max_abs <= 1e-4 * st.max_ref + 1e-6);
    free(ref);
}

static void test_sam_v1_decoder(void **state)
{
    (void)state;
    sb_error err;
    sb_weights *w = NULL;
    assert_sb_ok(err, sb_weights_load(&w, fixture_path("sam_vit_tiny.pth"), &err));
    sb_wbind wb;
    sb_wbind_init(&wb, w, 0);
    const int C = 32;
    const int64_t e = 12, S = 192;
    sb_prompt_encoder pe;
    assert_sb_ok(err, sb_prompt_encoder_init(&pe, C, e, e, S, S, 16, &wb, "prompt_encoder.", &err));
    sb_mask_decoder_params p;
    memset(&p, 0, sizeof p);
    p.transformer_dim = C;
    p.depth = 2;
    p.mlp_dim = 128;
    p.heads = 8;
    p.attention_downsample = 2;
    p.num_multimask_outputs = 3;
    p.iou_head_depth = 3;
    p.iou_head_hidden = 32;
    sb_mask_decoder d;
    assert_sb_ok(err, sb_mask_decoder_init(&d, &p, &wb, "mask_decoder.", &err));
    assert_int_equal(d.n_out_tokens, 5);

    sb_h5 *f = NULL;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path("sam_step0.h5"), SB_H5_READ, &err));
    float *emb = NULL, *boxes = NULL;
    int nd;
    int64_t shp[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "encoder/image_embeddings", &emb, &nd, shp, &err));
    assert_sb_ok(err, sb_h5_read_f32(f, "input/boxes", &boxes, &nd, shp, &err));
    int64_t B = 2, HW = e * e, P = 16 * HW;
    float *tok = malloc((size_t)(B * HW * C) * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t i = 0; i < HW; i++)
                tok[(b * HW + i) * C + c] = emb[(b * C + c) * HW + i];
    sb_prompts pr;
    memset(&pr, 0, sizeof pr);
    pr.boxes = boxes;
    assert_int_equal(sb_prompt_encoder_n_sparse(&pr), 2);
    float *sparse = malloc((size_t)(B * 2 * C) * sizeof(float));
    assert_sb_ok(err, sb_prompt_encoder_forward(&pe, &pr, B, sparse, &err));
    printf("SAM v1 prompt encoder + mask decoder (sam_step0.h5)\n");
    check(f, "prompt_encoder/sparse", sparse, (size_t)(B * 2 * C));
    check(f, "prompt_encoder/dense_pe", pe.dense_pe_chw, (size_t)(C * HW));

    float *all_masks = malloc((size_t)(B * 4 * P) * sizeof(float)), *all_iou = malloc((size_t)(B * 4) * sizeof(float));
    float *low = malloc((size_t)(B * P) * sizeof(float)), iou[2];
    sb_mask_decoder_io io;
    memset(&io, 0, sizeof io);
    io.image_tok = tok;
    io.dense = pe.no_mask;
    io.image_pe = pe.dense_pe_tok;
    io.sparse = sparse;
    io.B = B;
    io.n_sparse = 2;
    io.h = io.w = e;
    io.all_masks = all_masks;
    io.all_iou = all_iou;
    io.low_res = low;
    io.iou = iou;
    sb_arena *a;
    assert_sb_ok(err, sb_arena_create(&a, (size_t)16 << 20, &err));
    dump_store ds = {NULL, 0, 0};
    assert_sb_ok(err, sb_mask_decoder_forward(&d, NULL, &io, a, NULL, store_dump, &ds, &err));
    check(f, "mask_decoder/all_masks", all_masks, (size_t)(B * 4 * P));
    check(f, "mask_decoder/all_iou", all_iou, (size_t)(B * 4));
    check(f, "mask_decoder/low_res_masks", low, (size_t)(B * P));
    check(f, "mask_decoder/iou_pred", iou, (size_t)B);
    /* no object-score token: nothing dumped under that name */
    assert_true(ds.n > 0);
    assert_null(store_find(&ds, "mask_decoder/object_score_logits"));
    store_free(&ds);
    sb_arena_free(a);
    sb_h5_close(f);
    free(emb);
    free(boxes);
    free(tok);
    free(sparse);
    free(all_masks);
    free(all_iou);
    free(low);
    sb_prompt_encoder_release(&pe);
    sb_wbind_release(&wb);
    sb_weights_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sam_v1_decoder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
