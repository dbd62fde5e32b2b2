/* Model selection for `sambench run --model NAME`. The inference cores
 * (samed2, sam2, medsam2, sam, medsam) plug in here as they land in core/;
 * until then only the weight-free `box` baseline runs. */
#include "run.h"

#include <stdlib.h>
#include <string.h>

int sb_run_model_create(sb_run_model **out, const sb_model_opts *o, sb_error *err)
{
    *out = NULL;
    if (strcmp(o->model, "box") == 0) {
        int S = 1024;
        const char *env = getenv("SAMBENCH_BOX_SIZE"); /* tests: a smaller model grid */
        if (env && *env)
            S = atoi(env);
        return sb_model_box_create(out, S, err);
    }
    static const char *cores[] = {"samed2", "sam2", "medsam2", "sam", "medsam"};
    for (size_t i = 0; i < sizeof cores / sizeof *cores; i++)
        if (strcmp(o->model, cores[i]) == 0)
            return sb_fail(err, SB_EUNSUPPORTED,
                           "model '%s': its inference core is not in this build yet (use --model box)",
                           o->model);
    return sb_fail(err, SB_EINVAL,
                   "unknown model '%s' (samed2, sam2, medsam2, sam, medsam or box)", o->model);
}

void sb_run_model_free(sb_run_model *m)
{
    if (!m)
        return;
    if (m->destroy)
        m->destroy(m);
    free(m);
}
