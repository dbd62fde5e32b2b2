/* libFuzzer target: the restricted pickle VM, the legacy torch.save stream
 * and the memory bank reader on any bytes (as a plain pickle, and as a
 * legacy torch.save checkpoint). Must never crash, hang, leak or read out of
 * bounds; a failure must come with an error message. */
#include "../../core/weights_internal.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sb_error err;
    err.msg[0] = '\0';
    sb_bank *b = NULL;
    if (bank_load_mem(&b, "fuzz.pkl", data, size, &err) == SB_OK) {
        if (!b || b->n <= 0)
            abort();
        float v[4];
        sb_bank_to_f32(b->maskmem[0], b->mem_dtype, 1, v);
        sb_bank_free(b);
    } else if (b || !err.msg[0])
        abort();
    err.msg[0] = '\0';
    sb_weights *w = NULL;
    if (weights_load_mem(&w, "fuzz.pt", data, size, &err) == SB_OK) {
        for (size_t i = 0; i < sb_weights_count(w); i++) {
            sb_tensor_info t;
            if (sb_weights_info(w, i, &t) != SB_OK || (t.numel > 0 && !t.data))
                abort();
        }
        sb_weights_free(w);
    } else if (w || !err.msg[0])
        abort();
    return 0;
}
