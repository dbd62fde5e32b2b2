/* libFuzzer target: the PNG reader and Pillow's mode conversions on any
 * bytes. Must never crash, leak or read out of bounds; a failure must leave
 * nothing allocated and an error message. */
#include "../../pipeline/png_io.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sb_png_image img;
    sb_error err;
    if (sb_png_read_mem(data, size, "fuzz.png", &img, &err) != SB_OK) {
        if (img.data || img.idata || !err.msg[0])
            abort();
        return 0;
    }
    size_t n = (size_t)img.width * img.height;
    if (n <= (size_t)1 << 24) {
        uint8_t *rgb = malloc(n * 3 + 1), *l = malloc(n + 1);
        if (rgb && l) {
            sb_png_to_rgb(&img, rgb);
            sb_png_to_l(&img, l);
        }
        free(rgb);
        free(l);
    }
    sb_png_image_free(&img);
    return 0;
}
