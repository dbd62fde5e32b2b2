/* PNG reader: every colour type and bit depth opens in Pillow 9.4's mode
 * with Pillow's values, and convert('RGB') / convert('L') follow Pillow;
 * corrupt and truncated files are errors naming the file. */
#include "util_test.h"

#include "../pipeline/png_io.h"

#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sb_png_image roundtrip(const char *name, const void *samples, int w, int h, int ct, int bd,
                              const uint8_t *pal, int npal)
{
    sb_error err;
    const char *p = temp_path(name);
    assert_sb_ok(err, sb_png_write(p, samples, w, h, ct, bd, pal, npal, -1, &err));
    sb_png_image img;
    assert_sb_ok(err, sb_png_read_file(p, &img, &err));
    assert_int_equal(img.width, w);
    assert_int_equal(img.height, h);
    assert_int_equal(img.bit_depth, bd);
    assert_int_equal(img.color_type, ct);
    int ww, hh;
    assert_sb_ok(err, sb_png_size(p, &ww, &hh, &err));
    assert_int_equal(ww, w);
    assert_int_equal(hh, h);
    return img;
}

static uint8_t luma(int r, int g, int b) { return (uint8_t)((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16); }

static void test_grey(void **state)
{
    (void)state;
    uint8_t g8[6] = {0, 1, 127, 128, 200, 255}, rgb[32 * 3], l[32];
    sb_png_image im = roundtrip("g8.png", g8, 3, 2, 0, 8, NULL, 0);
    assert_int_equal(im.mode, SB_PIL_L);
    assert_memory_equal(im.data, g8, 6);
    sb_png_to_rgb(&im, rgb);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(rgb[3 * i], g8[i]);
        assert_int_equal(rgb[3 * i + 2], g8[i]);
    }
    sb_png_to_l(&im, l);
    assert_memory_equal(l, g8, 6);
    sb_png_image_free(&im);

    /* 16-bit grey: mode 'I', convert clamps to 0..255 without rescaling */
    uint16_t g16[6] = {0, 100, 255, 256, 300, 65535};
    im = roundtrip("g16.png", g16, 6, 1, 0, 16, NULL, 0);
    assert_int_equal(im.mode, SB_PIL_I);
    assert_null(im.data);
    for (int i = 0; i < 6; i++)
        assert_int_equal(im.idata[i], g16[i]);
    sb_png_to_rgb(&im, rgb);
    sb_png_to_l(&im, l);
    const uint8_t want16[6] = {0, 100, 255, 255, 255, 255};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(rgb[3 * i + 1], want16[i]);
        assert_int_equal(l[i], want16[i]);
    }
    sb_png_image_free(&im);

    /* 1-bit: mode '1' with 0/255; 2- and 4-bit: 'L' scaled by 0x55 / 0x11 */
    uint8_t b1[9] = {0, 1, 1, 0, 1, 0, 0, 0, 1};
    im = roundtrip("g1.png", b1, 9, 1, 0, 1, NULL, 0);
    assert_int_equal(im.mode, SB_PIL_1);
    for (int i = 0; i < 9; i++)
        assert_int_equal(im.data[i], b1[i] ? 255 : 0);
    sb_png_to_l(&im, l);
    assert_int_equal(l[1], 255);
    sb_png_image_free(&im);
    uint8_t b2[4] = {0, 1, 2, 3};
    im = roundtrip("g2.png", b2, 4, 1, 0, 2, NULL, 0);
    assert_int_equal(im.mode, SB_PIL_L);
    assert_int_equal(im.data[1], 0x55);
    assert_int_equal(im.data[3], 0xff);
    sb_png_image_free(&im);
    uint8_t b4[3] = {0, 7, 15};
    im = roundtrip("g4.png", b4, 3, 1, 0, 4, NULL, 0);
    assert_int_equal(im.data[1], 0x77);
    assert_int_equal(im.data[2], 0xff);
    sb_png_image_free(&im);
}

static void test_colour(void **state)
{
    (void)state;
    uint8_t px[4 * 3] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30}, rgb[12], l[4];
    sb_png_image im = roundtrip("rgb8.png", px, 2, 2, 2, 8, NULL, 0);
    assert_int_equal(im.mode, SB_PIL_RGB);
    sb_png_to_rgb(&im, rgb);
    assert_memory_equal(rgb, px, 12);
    sb_png_to_l(&im, l);
    assert_int_equal(l[0], luma(255, 0, 0)); /* 76 */
    assert_int_equal(l[0], 76);
    assert_int_equal(l[1], 150);
    assert_int_equal(l[2], 29);
    assert_int_equal(l[3], luma(10, 20, 30));
    sb_png_image_free(&im);

    /* RGBA: alpha dropped, no compositing (transparent pixels keep RGB) */
    uint8_t rgba[8] = {200, 100, 50, 0, 1, 2, 3, 255};
    im = roundtrip("rgba8.png", rgba, 2, 1, 6, 8, NULL, 0);
    assert_int_equal(im.mode, SB_PIL_RGBA);
    sb_png_to_rgb(&im, rgb);
    assert_int_equal(rgb[0], 200);
    assert_int_equal(rgb[1], 100);
    assert_int_equal(rgb[2], 50);
    assert_int_equal(rgb[5], 3);
    sb_png_to_l(&im, l);
    assert_int_equal(l[0], luma(200, 100, 50));
    sb_png_image_free(&im);

    /* 16-bit RGB / RGBA: the high byte of each sample */
    uint16_t rgb16[3] = {0x1234, 0xff00, 0x00ff};
    im = roundtrip("rgb16.png", rgb16, 1, 1, 2, 16, NULL, 0);
    assert_int_equal(im.mode, SB_PIL_RGB);
    assert_int_equal(im.data[0], 0x12);
    assert_int_equal(im.data[1], 0xff);
    assert_int_equal(im.data[2], 0x00);
    sb_png_image_free(&im);

    /* grey + alpha: 8-bit 'LA' (alpha dropped), 16-bit opens as 'RGBA' with L's high byte */
    uint8_t la[4] = {90, 0, 180, 255};
    im = roundtrip("la8.png", la, 2, 1, 4, 8, NULL, 0);
    assert_int_equal(im.mode, SB_PIL_LA);
    sb_png_to_rgb(&im, rgb);
    sb_png_to_l(&im, l);
    assert_int_equal(rgb[0], 90);
    assert_int_equal(rgb[4], 180);
    assert_int_equal(l[1], 180);
    sb_png_image_free(&im);
    uint16_t la16[2] = {0xabcd, 0x0102};
    im = roundtrip("la16.png", la16, 1, 1, 4, 16, NULL, 0);
    assert_int_equal(im.mode, SB_PIL_RGBA);
    assert_int_equal(im.data[0], 0xab);
    assert_int_equal(im.data[2], 0xab);
    assert_int_equal(im.data[3], 0x01);
    sb_png_image_free(&im);
}

static void test_palette(void **state)
{
    (void)state;
    const uint8_t pal[3 * 3] = {10, 20, 30, 255, 0, 0, 0, 0, 255};
    uint8_t idx[4] = {0, 1, 2, 1}, rgb[12], l[4];
    sb_png_image im = roundtrip("p8.png", idx, 4, 1, 3, 8, pal, 3);
    assert_int_equal(im.mode, SB_PIL_P);
    assert_int_equal(im.palette_len, 3);
    sb_png_to_rgb(&im, rgb);
    assert_memory_equal(rgb, pal, 3);
    assert_memory_equal(rgb + 3, pal + 3, 3);
    assert_memory_equal(rgb + 6, pal + 6, 3);
    sb_png_to_l(&im, l);
    assert_int_equal(l[1], luma(255, 0, 0));
    sb_png_image_free(&im);
    /* 2-bit palette indices */
    uint8_t i2[5] = {2, 1, 0, 2, 1};
    im = roundtrip("p2.png", i2, 5, 1, 3, 2, pal, 3);
    assert_int_equal(im.mode, SB_PIL_P);
    assert_memory_equal(im.data, i2, 5);
    sb_png_image_free(&im);
}

/* Adam7-interlaced PNG written with libpng directly: same pixels as non-interlaced. */
static void test_interlaced(void **state)
{
    (void)state;
    const int w = 13, h = 11;
    uint8_t px[13 * 11 * 3];
    for (int i = 0; i < w * h * 3; i++)
        px[i] = (uint8_t)(i * 7 + 3);
    const char *p = temp_path("interlaced.png");
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_ADAM7, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_bytep rows[11];
    for (int y = 0; y < h; y++)
        rows[y] = px + y * w * 3;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    sb_error err;
    uint8_t *rgb;
    int ww, hh;
    assert_sb_ok(err, sb_png_load_rgb(p, &rgb, &ww, &hh, &err));
    assert_int_equal(ww, w);
    assert_int_equal(hh, h);
    assert_memory_equal(rgb, px, sizeof px);
    free(rgb);
}

static void test_bad_files(void **state)
{
    (void)state;
    sb_error err;
    sb_png_image im;
    const char *missing = "/nonexistent/x.png";
    assert_int_equal(sb_png_read_file(missing, &im, &err), SB_EIO);
    assert_non_null(strstr(err.msg, missing));

    const char *txt = temp_path("notpng.png");
    FILE *f = fopen(txt, "w");
    fputs("hello, not a png", f);
    fclose(f);
    assert_int_equal(sb_png_read_file(txt, &im, &err), SB_EFORMAT);
    assert_non_null(strstr(err.msg, "notpng.png"));
    assert_non_null(strstr(err.msg, "signature"));

    /* a valid PNG truncated at every length fails cleanly (or is complete) */
    uint8_t g[32 * 32];
    for (int i = 0; i < 32 * 32; i++)
        g[i] = (uint8_t)(i * 13);
    const char *ok = temp_path("ok.png");
    assert_sb_ok(err, sb_png_write(ok, g, 32, 32, 0, 8, NULL, 0, 9, &err));
    f = fopen(ok, "rb");
    uint8_t buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int failures = 0;
    for (size_t len = 0; len < n; len++) {
        int rc = sb_png_read_mem(buf, len, "cut.png", &im, &err);
        if (rc == SB_OK) {
            sb_png_image_free(&im);
        } else {
            failures++;
            assert_int_equal(rc, SB_EFORMAT);
            assert_non_null(strstr(err.msg, "cut.png"));
            assert_null(im.data);
        }
    }
    assert_true(failures >= (int)n - 20); /* everything short of the image data fails */
    /* a flipped byte in the image data: CRC error */
    buf[n - 20] ^= 0x55;
    assert_int_equal(sb_png_read_mem(buf, n, "flip.png", &im, &err), SB_EFORMAT);
    assert_non_null(strstr(err.msg, "flip.png"));
    /* writer rejects impossible combinations */
    assert_int_equal(sb_png_write(temp_path("bad.png"), g, 4, 4, 3, 16, NULL, 0, -1, &err), SB_EINVAL);
    assert_int_equal(sb_png_write(temp_path("bad.png"), g, 4, 4, 5, 8, NULL, 0, -1, &err), SB_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grey),        cmocka_unit_test(test_colour),    cmocka_unit_test(test_palette),
        cmocka_unit_test(test_interlaced),  cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
