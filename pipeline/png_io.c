/*
 * PNG reader/writer on libpng, with Pillow 9.4's open modes and its
 * convert('RGB') / convert('L') (see png_io.h for the table).
 * libpng reports errors through longjmp: every failure becomes an sb_error
 * naming the file and libpng's reason.
 */
#include "png_io.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *sb_pil_mode_name(int mode)
{
    static const char *names[] = {"1", "L", "I", "RGB", "RGBA", "LA", "P"};
    return mode >= 0 && mode <= SB_PIL_P ? names[mode] : "?";
}

typedef struct {
    const uint8_t *buf;
    size_t len, pos;
    char msg[512];
} png_src;

static void on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    if (s)
        snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* Pillow ignores what libpng only warns about */
}

static void mem_read(png_structp png, png_bytep out, size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->pos) {
        snprintf(s->msg, sizeof s->msg, "file is truncated (%zu bytes)", s->len);
        png_longjmp(png, 1);
    }
    memcpy(out, s->buf + s->pos, n);
    s->pos += n;
}

void sb_png_image_free(sb_png_image *img)
{
    if (!img)
        return;
    free(img->data);
    free(img->idata);
    img->data = NULL;
    img->idata = NULL;
}

/* Fills img from libpng's rows (8 or 16 bits per sample, packed sub-byte
 * samples already expanded to one byte each by png_set_packing). */
static int convert_rows(sb_png_image *img, uint8_t *const *rows, const char *name, sb_error *err)
{
    const int w = img->width, h = img->height, ct = img->color_type, bd = img->bit_depth;
    const size_t n = (size_t)w * h;
    if (ct == PNG_COLOR_TYPE_GRAY && bd == 16) {
        img->mode = SB_PIL_I;
        img->channels = 0;
        img->idata = malloc(n * sizeof(int32_t));
        if (!img->idata)
            return sb_fail(err, SB_ENOMEM, "%s: out of memory for %dx%d pixels", name, w, h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                img->idata[(size_t)y * w + x] = (rows[y][2 * x] << 8) | rows[y][2 * x + 1];
        return SB_OK;
    }
    int in_c, out_c, mode;
    switch (ct) {
    case PNG_COLOR_TYPE_GRAY: in_c = 1; out_c = 1; mode = bd == 1 ? SB_PIL_1 : SB_PIL_L; break;
    case PNG_COLOR_TYPE_RGB: in_c = 3; out_c = 3; mode = SB_PIL_RGB; break;
    case PNG_COLOR_TYPE_PALETTE: in_c = 1; out_c = 1; mode = SB_PIL_P; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        in_c = 2;
        out_c = bd == 16 ? 4 : 2; /* Pillow: 16-bit LA opens as RGBA */
        mode = bd == 16 ? SB_PIL_RGBA : SB_PIL_LA;
        break;
    case PNG_COLOR_TYPE_RGB_ALPHA: in_c = 4; out_c = 4; mode = SB_PIL_RGBA; break;
    default: return sb_fail(err, SB_EFORMAT, "%s: unknown PNG colour type %d", name, ct);
    }
    img->mode = mode;
    img->channels = out_c;
    img->data = malloc(n * out_c);
    if (!img->data)
        return sb_fail(err, SB_ENOMEM, "%s: out of memory for %dx%d pixels", name, w, h);
    const int step = bd == 16 ? 2 : 1; /* 16-bit: take the high (first) byte */
    for (int y = 0; y < h; y++) {
        const uint8_t *r = rows[y];
        uint8_t *o = img->data + (size_t)y * w * out_c;
        if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) {
            for (int x = 0; x < w; x++) {
                int v = r[x];
                o[x] = bd == 1 ? (v ? 255 : 0) : bd == 2 ? (uint8_t)(v * 0x55) : (uint8_t)(v * 0x11);
            }
        } else if (ct == PNG_COLOR_TYPE_GRAY_ALPHA && bd == 16) {
            for (int x = 0; x < w; x++) {
                uint8_t l = r[4 * x], a = r[4 * x + 2];
                o[4 * x] = o[4 * x + 1] = o[4 * x + 2] = l;
                o[4 * x + 3] = a;
            }
        } else if (step == 1) {
            memcpy(o, r, (size_t)w * in_c);
        } else {
            for (int i = 0; i < w * in_c; i++)
                o[i] = r[2 * i];
        }
    }
    return SB_OK;
}

static int read_png(const void *buf, size_t len, const char *name, sb_png_image *img, sb_error *err)
{
    if (len < 8 || png_sig_cmp((png_const_bytep)buf, 0, 8) != 0)
        return sb_fail(err, SB_EFORMAT, "%s: not a PNG file (bad signature)", name);
    png_src src = {buf, len, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_error, on_warning);
    if (!png)
        return sb_fail(err, SB_ENOMEM, "%s: cannot create a libpng reader", name);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return sb_fail(err, SB_ENOMEM, "%s: cannot create a libpng reader", name);
    }
    /* volatile: modified between setjmp and a possible longjmp */
    uint8_t *volatile raw = NULL;
    uint8_t **volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(raw);
        free(rows);
        sb_png_image_free(img);
        png_destroy_read_struct(&png, &info, NULL);
        return sb_fail(err, SB_EFORMAT, "%s: corrupt PNG: %s", name, src.msg[0] ? src.msg : "libpng error");
    }
    png_set_read_fn(png, &src, mem_read);
    png_set_user_limits(png, SB_PNG_MAX_SIDE, SB_PNG_MAX_SIDE);
    png_set_chunk_malloc_max(png, 64u << 20);
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int bd = 0, ct = 0, il = 0;
    png_get_IHDR(png, info, &w, &h, &bd, &ct, &il, NULL, NULL);
    if ((int64_t)w * h > SB_PNG_MAX_PIXELS) {
        png_destroy_read_struct(&png, &info, NULL);
        return sb_fail(err, SB_EFORMAT, "%s: image of %ux%u pixels exceeds the limit of %lld", name,
                       (unsigned)w, (unsigned)h, (long long)SB_PNG_MAX_PIXELS);
    }
    img->width = (int)w;
    img->height = (int)h;
    img->bit_depth = bd;
    img->color_type = ct;
    for (int i = 0; i < 256; i++) /* Pillow's palette starts as a grey ramp */
        img->palette[3 * i] = img->palette[3 * i + 1] = img->palette[3 * i + 2] = (uint8_t)i;
    if (ct == PNG_COLOR_TYPE_PALETTE) {
        png_colorp pal = NULL;
        int npal = 0;
        if (png_get_PLTE(png, info, &pal, &npal) & PNG_INFO_PLTE) {
            for (int i = 0; i < npal && i < 256; i++) {
                img->palette[3 * i] = pal[i].red;
                img->palette[3 * i + 1] = pal[i].green;
                img->palette[3 * i + 2] = pal[i].blue;
            }
            img->palette_len = npal;
        }
    }
    if (bd < 8)
        png_set_packing(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    raw = malloc(rowbytes * h);
    rows = malloc(sizeof(uint8_t *) * h);
    if (!raw || !rows) {
        free(raw);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return sb_fail(err, SB_ENOMEM, "%s: out of memory for %ux%u pixels", name, (unsigned)w, (unsigned)h);
    }
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = raw + rowbytes * y;
    png_read_image(png, rows);
    int rc = convert_rows(img, rows, name, err);
    free(raw);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    if (rc != SB_OK)
        sb_png_image_free(img);
    return rc;
}

int sb_png_read_mem(const void *buf, size_t len, const char *name, sb_png_image *img, sb_error *err)
{
    memset(img, 0, sizeof *img);
    return read_png(buf, len, name ? name : "<memory>", img, err);
}

static int slurp(const char *path, uint8_t **buf, size_t *len, sb_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot open (missing or unreadable)", path);
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return sb_fail(err, SB_EIO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        fclose(f);
        return sb_fail(err, SB_ENOMEM, "%s: out of memory (%zu bytes)", path, n);
    }
    if (fread(b, 1, n, f) != n) {
        free(b);
        fclose(f);
        return sb_fail(err, SB_EIO, "%s: read error", path);
    }
    fclose(f);
    *buf = b;
    *len = n;
    return SB_OK;
}

int sb_png_read_file(const char *path, sb_png_image *img, sb_error *err)
{
    memset(img, 0, sizeof *img);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = slurp(path, &buf, &len, err);
    if (rc != SB_OK)
        return rc;
    rc = sb_png_read_mem(buf, len, path, img, err);
    free(buf);
    return rc;
}

int sb_png_size(const char *path, int *width, int *height, sb_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot open (missing or unreadable)", path);
    uint8_t hdr[24];
    size_t n = fread(hdr, 1, sizeof hdr, f);
    fclose(f);
    if (n < 24 || png_sig_cmp(hdr, 0, 8) != 0 || memcmp(hdr + 12, "IHDR", 4) != 0)
        return sb_fail(err, SB_EFORMAT, "%s: not a PNG file (bad signature or header)", path);
    uint32_t w = (uint32_t)hdr[16] << 24 | (uint32_t)hdr[17] << 16 | (uint32_t)hdr[18] << 8 | hdr[19];
    uint32_t h = (uint32_t)hdr[20] << 24 | (uint32_t)hdr[21] << 16 | (uint32_t)hdr[22] << 8 | hdr[23];
    if (w == 0 || h == 0 || w > SB_PNG_MAX_SIDE || h > SB_PNG_MAX_SIDE)
        return sb_fail(err, SB_EFORMAT, "%s: bad PNG size %ux%u", path, w, h);
    *width = (int)w;
    *height = (int)h;
    return SB_OK;
}

static inline uint8_t clamp_i32(int32_t v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v; }
static inline uint8_t luma(const uint8_t *p)
{
    return (uint8_t)(((uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[2] * 7471u + 0x8000u) >> 16);
}

void sb_png_to_rgb(const sb_png_image *img, uint8_t *rgb)
{
    const size_t n = (size_t)img->width * img->height;
    const uint8_t *d = img->data;
    switch (img->mode) {
    case SB_PIL_I:
        for (size_t i = 0; i < n; i++)
            rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = clamp_i32(img->idata[i]);
        break;
    case SB_PIL_1:
    case SB_PIL_L:
        for (size_t i = 0; i < n; i++)
            rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = d[i];
        break;
    case SB_PIL_LA:
        for (size_t i = 0; i < n; i++)
            rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = d[2 * i];
        break;
    case SB_PIL_P:
        for (size_t i = 0; i < n; i++)
            memcpy(rgb + 3 * i, img->palette + 3 * d[i], 3);
        break;
    case SB_PIL_RGB: memcpy(rgb, d, n * 3); break;
    case SB_PIL_RGBA:
        for (size_t i = 0; i < n; i++)
            memcpy(rgb + 3 * i, d + 4 * i, 3);
        break;
    default: memset(rgb, 0, n * 3);
    }
}

void sb_png_to_l(const sb_png_image *img, uint8_t *l)
{
    const size_t n = (size_t)img->width * img->height;
    const uint8_t *d = img->data;
    switch (img->mode) {
    case SB_PIL_I:
        for (size_t i = 0; i < n; i++)
            l[i] = clamp_i32(img->idata[i]);
        break;
    case SB_PIL_1:
    case SB_PIL_L: memcpy(l, d, n); break;
    case SB_PIL_LA:
        for (size_t i = 0; i < n; i++)
            l[i] = d[2 * i];
        break;
    case SB_PIL_P:
        for (size_t i = 0; i < n; i++)
            l[i] = luma(img->palette + 3 * d[i]);
        break;
    case SB_PIL_RGB:
        for (size_t i = 0; i < n; i++)
            l[i] = luma(d + 3 * i);
        break;
    case SB_PIL_RGBA:
        for (size_t i = 0; i < n; i++)
            l[i] = luma(d + 4 * i);
        break;
    default: memset(l, 0, n);
    }
}

static int load_conv(const char *path, int rgb, uint8_t **out, int *width, int *height, sb_error *err)
{
    *out = NULL;
    sb_png_image img;
    int rc = sb_png_read_file(path, &img, err);
    if (rc != SB_OK)
        return rc;
    size_t n = (size_t)img.width * img.height * (rgb ? 3 : 1);
    uint8_t *o = malloc(n ? n : 1);
    if (!o) {
        sb_png_image_free(&img);
        return sb_fail(err, SB_ENOMEM, "%s: out of memory", path);
    }
    if (rgb)
        sb_png_to_rgb(&img, o);
    else
        sb_png_to_l(&img, o);
    *width = img.width;
    *height = img.height;
    sb_png_image_free(&img);
    *out = o;
    return SB_OK;
}

int sb_png_load_rgb(const char *path, uint8_t **out, int *width, int *height, sb_error *err)
{
    return load_conv(path, 1, out, width, height, err);
}

int sb_png_load_l(const char *path, uint8_t **out, int *width, int *height, sb_error *err)
{
    return load_conv(path, 0, out, width, height, err);
}

/* ---- writer ------------------------------------------------------------- */

typedef struct {
    char msg[512];
} png_wctx;

static void on_werror(png_structp png, png_const_charp msg)
{
    png_wctx *c = png_get_error_ptr(png);
    if (c)
        snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

int sb_png_write(const char *path, const void *samples, int width, int height, int color_type,
                 int bit_depth, const uint8_t *palette, int npal, int compression, sb_error *err)
{
    int c;
    switch (color_type) {
    case 0: c = 1; break;
    case 2: c = 3; break;
    case 3: c = 1; break;
    case 4: c = 2; break;
    case 6: c = 4; break;
    default: return sb_fail(err, SB_EINVAL, "%s: unknown PNG colour type %d", path, color_type);
    }
    int ok_depth = bit_depth == 8 || (bit_depth == 16 && color_type != 3) ||
                   ((bit_depth == 1 || bit_depth == 2 || bit_depth == 4) && (color_type == 0 || color_type == 3));
    if (!ok_depth || width <= 0 || height <= 0)
        return sb_fail(err, SB_EINVAL, "%s: cannot write %dx%d PNG with colour type %d and bit depth %d", path,
                       width, height, color_type, bit_depth);
    if (color_type == 3 && (!palette || npal < 1 || npal > 256))
        return sb_fail(err, SB_EINVAL, "%s: palette PNG needs 1..256 palette entries", path);
    FILE *f = fopen(path, "wb");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot create", path);
    png_wctx ctx = {""};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_werror, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        return sb_fail(err, SB_ENOMEM, "%s: cannot create a libpng writer", path);
    }
    size_t rowbytes = ((size_t)width * c * bit_depth + 7) / 8;
    uint8_t *volatile row = malloc(rowbytes);
    if (!row || setjmp(png_jmpbuf(png))) {
        free(row);
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return sb_fail(err, SB_EIO, "%s: cannot write PNG: %s", path, ctx.msg[0] ? ctx.msg : "out of memory");
    }
    png_init_io(png, f);
    if (compression >= 0)
        png_set_compression_level(png, compression > 9 ? 9 : compression);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, bit_depth, color_type, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color_type == 3) {
        png_color pal[256];
        for (int i = 0; i < npal; i++) {
            pal[i].red = palette[3 * i];
            pal[i].green = palette[3 * i + 1];
            pal[i].blue = palette[3 * i + 2];
        }
        png_set_PLTE(png, info, pal, npal);
    }
    png_write_info(png, info);
    const size_t per_row = (size_t)width * c;
    for (int y = 0; y < height; y++) {
        if (bit_depth == 8) {
            memcpy(row, (const uint8_t *)samples + per_row * y, per_row);
        } else if (bit_depth == 16) {
            const uint16_t *s = (const uint16_t *)samples + per_row * y;
            for (size_t i = 0; i < per_row; i++) {
                row[2 * i] = (uint8_t)(s[i] >> 8);
                row[2 * i + 1] = (uint8_t)(s[i] & 0xff);
            }
        } else {
            const uint8_t *s = (const uint8_t *)samples + per_row * y;
            memset(row, 0, rowbytes);
            const int per_byte = 8 / bit_depth, mask = (1 << bit_depth) - 1;
            for (size_t i = 0; i < per_row; i++) {
                int shift = 8 - bit_depth * (int)(i % per_byte + 1);
                row[i / per_byte] |= (uint8_t)((s[i] & mask) << shift);
            }
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    if (fclose(f) != 0)
        return sb_fail(err, SB_EIO, "%s: write error (disk full?)", path);
    return SB_OK;
}
