/* libFuzzer target: the torch zip checkpoint reader (libzip directory, our
 * local-header offsets, data.pkl on the pickle VM, storages read with size
 * and CRC checks) on any bytes. Must never crash, leak or read out of
 * bounds; a failure must come with an error message. */
#include "../../core/weights_internal.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sb_error err;
    err.msg[0] = '\0';
    sb_weights *w = NULL;
    if (weights_load_mem(&w, "fuzz.pth", data, size, &err) == SB_OK) {
        double s = 0;
        for (size_t i = 0; i < sb_weights_count(w); i++) {
            sb_tensor_info t;
            if (sb_weights_info(w, i, &t) != SB_OK)
                abort();
            for (int64_t k = 0; k < t.numel; k++)
                s += t.data[k];
        }
        (void)s;
        sb_weights_free(w);
    } else if (w || !err.msg[0])
        abort();
    return 0;
}
