/* Pre-processing: the 11 torchvision goldens bit for bit, the resize's
 * properties, the keyed box jitter, and `sambench preprocess`. */
#include "util_test.h"

#include "../pipeline/png_io.h"
#include "../pipeline/preprocess.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int size, h, w, c, mode;
} cases[] = {
    {"p01_gray8_512", 1024, 512, 512, 1, SB_PIL_L},
    {"p02_rgb8_1500x1100", 1024, 1100, 1500, 3, SB_PIL_RGB},
    {"p03_rgba_800x600", 1024, 600, 800, 4, SB_PIL_RGBA},
    {"p04_gray16_600x450", 1024, 450, 600, 1, SB_PIL_I},
    {"p05_palette_700x500", 1024, 500, 700, 1, SB_PIL_P},
    {"p06_rgb8_300x200", 1024, 200, 300, 3, SB_PIL_RGB},
    {"p07_rgb8_1023x767", 1024, 767, 1023, 3, SB_PIL_RGB},
    {"p08_gray8_777x1201", 1024, 1201, 777, 1, SB_PIL_L},
    {"p09_rgb8_1024", 1024, 1024, 1024, 3, SB_PIL_RGB},
    {"p10_rgb8_1500x1100_s256", 256, 1100, 1500, 3, SB_PIL_RGB},
    {"p11_gray8_257x129_s256", 256, 129, 257, 1, SB_PIL_L},
};

static void check_case(int i)
{
    sb_error err;
    char img[256], msk[256], gold[256];
    snprintf(img, sizeof img, "preprocess/%s_image.png", cases[i].name);
    snprintf(msk, sizeof msk, "preprocess/%s_mask.png", cases[i].name);
    snprintf(gold, sizeof gold, "preprocess/%s.h5", cases[i].name);
    char pimg[1024], pmsk[1024];
    snprintf(pimg, sizeof pimg, "%s", fixture_path(img));
    snprintf(pmsk, sizeof pmsk, "%s", fixture_path(msk));

    sb_png_image png;
    assert_sb_ok(err, sb_png_read_file(pimg, &png, &err));
    assert_int_equal(png.width, cases[i].w);
    assert_int_equal(png.height, cases[i].h);
    assert_int_equal(png.mode, cases[i].mode);
    sb_png_image_free(&png);

    const int S = cases[i].size;
    const size_t n = (size_t)S * S;
    float *image = malloc(sizeof(float) * 3 * n), *mask = malloc(sizeof(float) * n), box[4];
    sb_prep_opts o = {.size = S, .jitter = 0};
    int nonempty = -1;
    assert_sb_ok(err, sb_preprocess_png(pimg, pmsk, &o, image, mask, box, &nonempty, &err));

    sb_h5 *f;
    assert_sb_ok(err, sb_h5_open(&f, fixture_path(gold), SB_H5_READ, &err));
    float *gi, *gm, *gb;
    int nd;
    int64_t sh[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "image", &gi, &nd, sh, &err));
    assert_int_equal(nd, 3);
    assert_int_equal(sh[0], 3);
    assert_int_equal(sh[1], S);
    assert_int_equal(sh[2], S);
    assert_sb_ok(err, sb_h5_read_f32(f, "mask", &gm, &nd, sh, &err));
    assert_int_equal(sh[0] * sh[1] * sh[2], (int64_t)n);
    assert_sb_ok(err, sb_h5_read_f32(f, "box", &gb, &nd, sh, &err));
    int32_t *shape;
    assert_sb_ok(err, sb_h5_read_i32(f, "input_png_shape", &shape, &nd, sh, &err));
    assert_int_equal(shape[0], cases[i].h);
    assert_int_equal(shape[1], cases[i].w);
    assert_int_equal(shape[2], cases[i].c);
    sb_h5_close(f);

    size_t bad_img = 0, bad_mask = 0, fg = 0;
    for (size_t j = 0; j < 3 * n; j++)
        bad_img += memcmp(&image[j], &gi[j], sizeof(float)) != 0;
    for (size_t j = 0; j < n; j++) {
        bad_mask += mask[j] != gm[j];
        fg += gm[j] != 0;
    }
    printf("%-26s image diffs %zu, mask diffs %zu, box [%g %g %g %g] vs [%g %g %g %g]\n", cases[i].name, bad_img,
           bad_mask, box[0], box[1], box[2], box[3], gb[0], gb[1], gb[2], gb[3]);
    assert_int_equal(bad_img, 0);
    assert_int_equal(bad_mask, 0);
    for (int k = 0; k < 4; k++)
        assert_true(box[k] == gb[k]);
    assert_int_equal(nonempty, fg > 0);
    free(gi);
    free(gm);
    free(gb);
    free(shape);
    free(image);
    free(mask);
}

static void test_goldens(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case((int)i);
}

/* Properties of the resampler that do not need the goldens. */
static void test_resize_properties(void **state)
{
    (void)state;
    sb_error err;
    /* constant image stays constant at any scale */
    uint8_t src[37 * 23 * 3], dst[64 * 50 * 3];
    memset(src, 77, sizeof src);
    assert_sb_ok(err, sb_pil_resize_u8(src, 37, 23, 3, dst, 64, 50, &err));
    for (size_t i = 0; i < sizeof dst; i++)
        assert_int_equal(dst[i], 77);
    assert_sb_ok(err, sb_pil_resize_u8(src, 37, 23, 3, dst, 5, 3, &err));
    for (size_t i = 0; i < 5 * 3 * 3; i++)
        assert_int_equal(dst[i], 77);
    /* same size: copy */
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 31);
    assert_sb_ok(err, sb_pil_resize_u8(src, 37, 23, 3, dst, 37, 23, &err));
    assert_memory_equal(src, dst, sizeof src);
    /* 2x shrink of 1-D ramp 0,10,20,30 with support 2: output pixel 0 centred at 1.0 */
    uint8_t r[4] = {0, 10, 20, 30}, o[2];
    assert_sb_ok(err, sb_pil_resize_u8(r, 4, 1, 1, o, 2, 1, &err));
    /* taps for centre 1.0, support 2: x=0..2 weights (t=|x+0.5-1|/2) 0.75,0.75,0.25 -> 0/1.75*...: */
    assert_int_equal(o[0], (int)(0 * 0.75 / 1.75 + 10 * 0.75 / 1.75 + 20 * 0.25 / 1.75 + 0.5));
    assert_int_equal(sb_pil_resize_u8(r, 0, 1, 1, o, 2, 1, &err), SB_EINVAL);
}

static void test_box_and_jitter(void **state)
{
    (void)state;
    const int S = 64;
    uint8_t m[64 * 64] = {0};
    int box[4];
    assert_int_equal(sb_mask_box(m, S, box), 0);
    assert_int_equal(box[0], 0);
    assert_int_equal(box[1], 0);
    assert_int_equal(box[2], S);
    assert_int_equal(box[3], S);
    m[10 * S + 5] = 1;
    m[40 * S + 30] = 1;
    assert_int_equal(sb_mask_box(m, S, box), 1);
    assert_int_equal(box[0], 5);
    assert_int_equal(box[1], 10);
    assert_int_equal(box[2], 30);
    assert_int_equal(box[3], 40);

    /* determinism and key dependence */
    uint64_t k1 = sb_jitter_key(7, "Spleen_CT", "case_1", 3);
    assert_true(k1 == sb_jitter_key(7, "Spleen_CT", "case_1", 3));
    assert_true(k1 != sb_jitter_key(8, "Spleen_CT", "case_1", 3));
    assert_true(k1 != sb_jitter_key(7, "Liver_CT", "case_1", 3));
    assert_true(k1 != sb_jitter_key(7, "Spleen_CT", "case_2", 3));
    assert_true(k1 != sb_jitter_key(7, "Spleen_CT", "case_1", 4));
    /* draws cover [0, J] and stay inside it */
    int hist[21] = {0};
    for (int s = 0; s < 2000; s++) {
        uint64_t k = sb_jitter_key(1, "d", "c", s);
        for (int i = 0; i < 4; i++) {
            int r = sb_jitter_draw(k, i, 20);
            assert_true(r >= 0 && r <= 20);
            hist[r]++;
        }
    }
    for (int v = 0; v <= 20; v++)
        assert_true(hist[v] > 8000 / 21 / 2); /* roughly uniform */
    assert_int_equal(sb_jitter_draw(k1, 0, 0), 0);

    /* pushed outward, clamped to [0, S] */
    for (int s = 0; s < 200; s++) {
        int b[4] = {5, 10, 30, 40};
        uint64_t k = sb_jitter_key(3, "d", "c", s);
        sb_box_jitter(b, S, 20, k);
        assert_int_equal(b[0], 5 - sb_jitter_draw(k, 0, 20) < 0 ? 0 : 5 - sb_jitter_draw(k, 0, 20));
        assert_int_equal(b[2], 30 + sb_jitter_draw(k, 1, 20));
        assert_int_equal(b[1], 10 - sb_jitter_draw(k, 2, 20) < 0 ? 0 : 10 - sb_jitter_draw(k, 2, 20));
        assert_int_equal(b[3], 40 + sb_jitter_draw(k, 3, 20) > S ? S : 40 + sb_jitter_draw(k, 3, 20));
        assert_true(b[0] >= 0 && b[1] >= 0 && b[2] <= S && b[3] <= S);
    }
    int b[4] = {0, 0, 63, 63};
    sb_box_jitter(b, S, 1000, k1);
    assert_int_equal(b[0], 0);
    assert_int_equal(b[1], 0);
    assert_int_equal(b[2], S);
    assert_int_equal(b[3], S);
}

/* The command writes exactly what the library computes. */
static void test_cmd_preprocess(void **state)
{
    (void)state;
    const char *out = temp_path("pp_p11.h5");
    char *log = NULL;
    int rc = run_sambench(&log,
                          "preprocess --image %s --mask %s --size 256 --no-jitter --output %s",
                          fixture_path("preprocess/p11_gray8_257x129_s256_image.png"),
                          fixture_path("preprocess/p11_gray8_257x129_s256_mask.png"), out);
    if (rc != 0)
        fail_msg("preprocess exited %d: %s", rc, log ? log : "");
    free(log);
    sb_error err;
    sb_h5 *f, *g;
    assert_sb_ok(err, sb_h5_open(&f, out, SB_H5_READ, &err));
    assert_sb_ok(err, sb_h5_open(&g, fixture_path("preprocess/p11_gray8_257x129_s256.h5"), SB_H5_READ, &err));
    const char *names[] = {"image", "mask", "box"};
    for (int i = 0; i < 3; i++) {
        float *a, *b;
        int na, nb;
        int64_t sa[SB_MAX_DIMS], sbb[SB_MAX_DIMS];
        assert_sb_ok(err, sb_h5_read_f32(f, names[i], &a, &na, sa, &err));
        assert_sb_ok(err, sb_h5_read_f32(g, names[i], &b, &nb, sbb, &err));
        assert_int_equal(na, nb);
        size_t n = 1;
        for (int d = 0; d < na; d++) {
            assert_int_equal(sa[d], sbb[d]);
            n *= (size_t)sa[d];
        }
        assert_memory_equal(a, b, n * sizeof(float));
        free(a);
        free(b);
    }
    sb_h5_close(f);
    sb_h5_close(g);

    /* with jitter: box differs from the tight one only outward, within J */
    const char *out2 = temp_path("pp_p11_j.h5");
    rc = run_sambench(NULL, "preprocess --image %s --mask %s --size 256 --jitter 20 --seed 5 --output %s",
                      fixture_path("preprocess/p11_gray8_257x129_s256_image.png"),
                      fixture_path("preprocess/p11_gray8_257x129_s256_mask.png"), out2);
    assert_int_equal(rc, 0);
    assert_sb_ok(err, sb_h5_open(&f, out2, SB_H5_READ, &err));
    float *bx;
    int nd;
    int64_t sh[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "box", &bx, &nd, sh, &err));
    const float tight[4] = {55, 30, 226, 199};
    assert_true(bx[0] <= tight[0] && bx[0] >= tight[0] - 20);
    assert_true(bx[1] <= tight[1] && bx[1] >= tight[1] - 20);
    assert_true(bx[2] >= tight[2] && bx[2] <= tight[2] + 20);
    assert_true(bx[3] >= tight[3] && bx[3] <= tight[3] + 20);
    assert_true(bx[0] != tight[0] || bx[1] != tight[1] || bx[2] != tight[2] || bx[3] != tight[3]);
    free(bx);
    sb_h5_close(f);

    /* bad input: size mismatch, missing file, bad flags */
    log = NULL;
    rc = run_sambench(&log, "preprocess --image %s --mask %s --size 256 --no-jitter --output %s",
                      fixture_path("preprocess/p11_gray8_257x129_s256_image.png"),
                      fixture_path("preprocess/p01_gray8_512_mask.png"), temp_path("bad.h5"));
    assert_int_equal(rc, 2);
    assert_non_null(strstr(log, "p01_gray8_512_mask.png"));
    free(log);
    rc = run_sambench(&log, "preprocess --image /nonexistent.png --mask x.png --size 256 --output %s",
                      temp_path("bad.h5"));
    assert_int_equal(rc, 2);
    assert_non_null(strstr(log, "/nonexistent.png"));
    free(log);
    rc = run_sambench(NULL, "preprocess --image a.png --size 256 --output x.h5 --no-jitter --jitter 3");
    assert_int_equal(rc, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_goldens),
        cmocka_unit_test(test_resize_properties),
        cmocka_unit_test(test_box_and_jitter),
        cmocka_unit_test(test_cmd_preprocess),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
