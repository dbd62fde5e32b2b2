/*
 * Bit-exact pre-processing of one slice (PROTOCOL.md 2, MODEL.md 1.1):
 * torchvision Resize((S,S)) on a PIL image = Pillow's separable bilinear
 * (triangle) resampler, antialiased when shrinking, in Pillow's 8-bit fixed
 * point; ToTensor (/255 to float32 CHW); the mask through the same resize
 * then >= 128 (= ToTensor >= 0.5); the box from the resized mask with a
 * keyed, counter-based jitter.
 */
#ifndef SB_PREPROCESS_H
#define SB_PREPROCESS_H

#include "../core/sambench.h"

#include <stdint.h>

/* Pillow's Image.resize((ow, oh), BILINEAR) of an interleaved uint8 image
 * with c channels (1..4): horizontal pass, then vertical, each rounded and
 * clamped to uint8; a pass whose axis keeps its length is skipped, same size
 * is a copy. dst: oh*ow*c. Errors only for bad sizes / out of memory. */
int sb_pil_resize_u8(const uint8_t *src, int w, int h, int c, uint8_t *dst, int ow, int oh, sb_error *err);

/* Tight box of the non-zero pixels of mask[S*S] as x_min, y_min, x_max,
 * y_max (inclusive indices). Returns 1 if the mask is non-empty; for an empty
 * mask box = {0, 0, S, S} and returns 0. */
int sb_mask_box(const uint8_t *mask, int S, int box[4]);

/* The jitter key: a 64-bit hash of (seed, dataset, case, slice) (SplitMix64
 * finaliser over FNV-1a hashes of the strings). */
uint64_t sb_jitter_key(uint64_t seed, const char *dataset, const char *case_id, int64_t slice);
/* Draw i (0..3) in [0, J] from the key: counter-based, so any rank reading
 * the slice draws the same numbers. */
int sb_jitter_draw(uint64_t key, int i, int J);
/* Pushes each side of a non-empty tight box outward by draws 0..3 (x_min,
 * x_max, y_min, y_max, the published order) and clamps to [0, S]. J <= 0
 * leaves the box as it is. */
void sb_box_jitter(int box[4], int S, int J, uint64_t key);

typedef struct {
    int size;            /* S, the model's input size (1024) */
    int jitter;          /* J: max outward push per side in pixels; 0 = none */
    uint64_t seed;       /* jitter key: seed, dataset, case, slice */
    const char *dataset; /* may be NULL (= "") */
    const char *case_id; /* may be NULL (= "") */
    int64_t slice;       /* the slice's index in its case */
} sb_prep_opts;

/*
 * One slice in memory: rgb[h*w*3] (uint8, PIL convert('RGB') values) and
 * mask_l[h*w] (uint8, PIL convert('L') values; may be NULL: no mask, box =
 * the full frame) -> image[3*S*S] float32 CHW in [0,1], mask[S*S] float32
 * 0/1 (may be NULL), box[4] float32 x_min, y_min, x_max, y_max. Returns 1 in
 * *nonempty (if not NULL) when the resized mask has a foreground pixel.
 * Scratch is malloc'ed internally.
 */
int sb_preprocess_slice(const uint8_t *rgb, const uint8_t *mask_l, int w, int h, const sb_prep_opts *o,
                        float *image, float *mask, float box[4], int *nonempty, sb_error *err);

/* The same, from PNG files (image converted as 'RGB', mask as 'L'); errors
 * name the file. The mask must have the image's size. */
int sb_preprocess_png(const char *image_png, const char *mask_png, const sb_prep_opts *o, float *image,
                      float *mask, float box[4], int *nonempty, sb_error *err);

#endif
