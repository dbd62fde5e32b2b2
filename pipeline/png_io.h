/*
 * PNG reading and writing with libpng, and the mode conversions of Pillow
 * (9.4, the version the published benchmark ran) that the pre-processing
 * needs: convert('RGB') for images, convert('L') for masks.
 *
 * A PNG is decoded into the pixel mode Pillow's PngImagePlugin gives it on
 * open (PIL mode), with Pillow's sample values:
 *   grey 1-bit          -> '1'    samples 0 / 255
 *   grey 2/4/8-bit      -> 'L'    2/4-bit scaled to 0..255 (x 0x55 / x 0x11)
 *   grey 16-bit         -> 'I'    the 16-bit value as int32 (0..65535)
 *   RGB 8/16-bit        -> 'RGB'  16-bit: the high byte of each sample
 *   palette 1/2/4/8-bit -> 'P'    indices; palette from PLTE (missing entries
 *                                 are Pillow's grey ramp i -> (i,i,i))
 *   grey+alpha 8-bit    -> 'LA'
 *   grey+alpha 16-bit   -> 'RGBA' (L high byte replicated, alpha high byte)
 *   RGBA 8/16-bit       -> 'RGBA' 16-bit: high bytes
 * tRNS, gAMA, sBIT and friends are ignored, as Pillow ignores them for the
 * pixel values. Interlaced PNGs are de-interlaced.
 */
#ifndef SB_PNG_IO_H
#define SB_PNG_IO_H

#include "../core/sambench.h"

#include <stddef.h>
#include <stdint.h>

enum sb_pil_mode {
    SB_PIL_1 = 0,
    SB_PIL_L = 1,
    SB_PIL_I = 2,
    SB_PIL_RGB = 3,
    SB_PIL_RGBA = 4,
    SB_PIL_LA = 5,
    SB_PIL_P = 6
};

/* Images larger than this (pixels) are rejected as corrupt/hostile. */
#define SB_PNG_MAX_PIXELS ((int64_t)1 << 27)
#define SB_PNG_MAX_SIDE 65535

typedef struct {
    int width, height;
    int mode;       /* enum sb_pil_mode */
    int bit_depth;  /* as stored in IHDR */
    int color_type; /* as stored in IHDR (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA) */
    int channels;   /* bytes per pixel in `data` (1: '1','L','P'; 2: 'LA'; 3: 'RGB'; 4: 'RGBA'); 0 for 'I' */
    uint8_t *data;  /* height*width*channels, NULL for mode 'I' */
    int32_t *idata; /* height*width, mode 'I' only */
    uint8_t palette[256 * 3];
    int palette_len; /* entries given by PLTE */
} sb_png_image;

const char *sb_pil_mode_name(int mode);

/* Decodes a PNG file / buffer. `name` is used in error messages. On failure
 * *img is left empty (nothing to free). */
int sb_png_read_file(const char *path, sb_png_image *img, sb_error *err);
int sb_png_read_mem(const void *buf, size_t len, const char *name, sb_png_image *img, sb_error *err);
void sb_png_image_free(sb_png_image *img);

/* Pillow's convert('RGB') into rgb[height*width*3]: '1' and 'L' replicate,
 * 'I' clamps to 0..255 (no scaling), 'P' looks up the palette, 'RGBA'/'LA'
 * drop alpha (no compositing). */
void sb_png_to_rgb(const sb_png_image *img, uint8_t *rgb);
/* Pillow's convert('L') into l[height*width]: 'I' clamps, RGB/RGBA/P use
 * the integer luma (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, 'LA' drops
 * alpha, '1' gives 0/255. */
void sb_png_to_l(const sb_png_image *img, uint8_t *l);

/* Read + convert in one call; *out is malloc'ed (caller frees). */
int sb_png_load_rgb(const char *path, uint8_t **out, int *width, int *height, sb_error *err);
int sb_png_load_l(const char *path, uint8_t **out, int *width, int *height, sb_error *err);
/* Width and height from the header only (no pixel decoding). */
int sb_png_size(const char *path, int *width, int *height, sb_error *err);

/*
 * Writes a PNG. `samples` holds height*width*C samples, C from color_type
 * (0 grey: 1, 2 RGB: 3, 3 palette: 1 index, 4 grey+alpha: 2, 6 RGBA: 4);
 * bit_depth 8: one uint8 per sample; 16: one uint16_t (host order) per
 * sample; 1/2/4 (grey or palette): one uint8 per sample holding the value
 * (0..2^depth-1), packed by the writer. palette: npal RGB triples for
 * color_type 3 (else NULL). compression: zlib level 0..9 (-1 default).
 */
int sb_png_write(const char *path, const void *samples, int width, int height, int color_type,
                 int bit_depth, const uint8_t *palette, int npal, int compression, sb_error *err);

#endif
