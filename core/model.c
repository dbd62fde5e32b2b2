/*
 * The generic model object (sb_model_*, core/sambench.h): creation picks the
 * flow's implementation (sam2_model.c for sam2 / medsam2 / samed2,
 * sam_vit_model.c for sam / medsam), and sb_model_forward checks the inputs
 * and plans the activation arena around the flow's forward.
 */
#include "sam2_internal.h"
#include "sam_vit_internal.h" /* sb_sam_vit_model_init */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_finite(const float *x, int64_t n, const char *what, sb_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return sb_fail(err, SB_ENUMERIC, "%s: element %lld is %s", what, (long long)i,
                           isnan(x[i]) ? "NaN" : "infinite");
    return SB_OK;
}

/* ---- generic model API ------------------------------------------------------------- */
void sb_forward_options_default(sb_forward_options *o)
{
    memset(o, 0, sizeof *o);
    o->threshold = 0.5f;
}

int sb_model_create(sb_model **out, const sb_model_options *opt, sb_ctx *ctx, sb_error *err)
{
    (void)ctx;
    *out = NULL;
    if (!opt || !sb_flow_name(opt->flow))
        return sb_fail(err, SB_EINVAL, "model: unknown flow %d", opt ? opt->flow : -1);
    if (!opt->weights && !opt->random_weights)
        return sb_fail(err, SB_EINVAL, "model: no weights (give a checkpoint or ask for random weights)");
    sb_model *m = calloc(1, sizeof *m);
    if (!m)
        return sb_fail(err, SB_ENOMEM, "model: out of memory");
    m->flow = opt->flow;
    sb_wbind_init(&m->wb, opt->random_weights ? NULL : opt->weights, opt->seed);
    int rc;
    switch (opt->flow) {
    case SB_FLOW_SAM2:
    case SB_FLOW_MEDSAM2:
    case SB_FLOW_SAMED2:
        rc = sb_sam2_model_init(m, opt, err);
        break;
    case SB_FLOW_SAM: /* SAM ViT-B / MedSAM ViT-B: core/sam_vit_model.c (issue 6) */
    case SB_FLOW_MEDSAM:
        rc = sb_sam_vit_model_init(m, opt, err);
        break;
    default:
        rc = sb_fail(err, SB_EUNSUPPORTED, "model: flow '%s' is not available in this build", sb_flow_name(opt->flow));
    }
    if (rc) {
        sb_model_free(m);
        return rc;
    }
    *out = m;
    return SB_OK;
}

void sb_model_free(sb_model *m)
{
    if (!m)
        return;
    if (m->impl_free)
        m->impl_free(m->impl);
    sb_arena_free(m->arena);
    sb_wbind_release(&m->wb);
    free(m);
}

int sb_model_flow(const sb_model *m) { return m->flow; }
int64_t sb_model_image_size(const sb_model *m) { return m->image_size; }
int64_t sb_model_lowres_size(const sb_model *m) { return m->lowres; }
size_t sb_model_arena_peak(const sb_model *m) { return m->arena_peak; }
size_t sb_model_weight_bytes(const sb_model *m) { return m->wb.bytes; }

void sb_model_describe(const sb_model *m, char *buf, size_t cap) { snprintf(buf, cap, "%s", m->desc); }

int sb_model_forward(sb_model *m, sb_ctx *ctx, const float *images, int64_t B,
                     const sb_prompts *prompts, const sb_forward_options *opt,
                     sb_model_output *out, sb_error *err)
{
    sb_forward_options dflt;
    if (!opt) {
        sb_forward_options_default(&dflt);
        opt = &dflt;
    }
    if (!m || !images || B < 1 || !out)
        return sb_fail(err, SB_EINVAL, "model forward: bad arguments (batch %lld)", (long long)B);
    if (opt->out_h < 0 || opt->out_w < 0 || opt->out_h > 65536 || opt->out_w > 65536)
        return sb_fail(err, SB_EINVAL, "model forward: output size %lldx%lld out of range", (long long)opt->out_h,
                       (long long)opt->out_w);
    int64_t S = m->image_size;
    int rc = check_finite(images, B * 3 * S * S, "input images", err);
    if (rc)
        return rc;
    if (prompts && prompts->boxes && (rc = check_finite(prompts->boxes, B * 4, "input boxes", err)))
        return rc;
    if (prompts && prompts->points && prompts->n_points > 0 &&
        (rc = check_finite(prompts->points, B * prompts->n_points * 2, "input points", err)))
        return rc;
    /* The activation arena. The plan is the first call's allocation
     * sequence: it runs in a reservation sized by the flow's estimate
     * (doubled and re-run if too small, e.g. when dumps are asked for), then
     * the arena is re-created at exactly the measured peak, pre-faulted, and
     * reused by every later call with at most that batch size. */
    sb_modprof mp = {opt->profile, -1, 0.0};
    int planned = m->arena && B <= m->arena_batch;
    if (planned) {
        rc = m->forward(m, ctx, images, B, prompts, opt, out, m->arena, &mp, err);
        sb_modprof_end(&mp);
        if (rc != SB_ENOMEM)
            goto finish;
        if (opt->profile) /* forget the failed attempt's partial timings */
            memset(opt->profile, 0, sizeof *opt->profile);
    }
    {
        size_t cap = m->arena_bound(m, B);
        if (planned && cap < 2 * sb_arena_capacity(m->arena))
            cap = 2 * sb_arena_capacity(m->arena);
        sb_profile saved;
        if (opt->profile)
            saved = *opt->profile;
        for (int attempt = 0; attempt < 8; attempt++) {
            sb_arena_free(m->arena);
            m->arena = NULL;
            if ((rc = sb_arena_create(&m->arena, cap, err)))
                return rc;
            if (opt->profile)
                *opt->profile = saved;
            mp.cur = -1;
            rc = m->forward(m, ctx, images, B, prompts, opt, out, m->arena, &mp, err);
            sb_modprof_end(&mp);
            if (rc != SB_ENOMEM || !strstr(err->msg, "arena"))
                break; /* done, or an out-of-memory that is not the arena's */
            cap *= 2;
        }
        if (rc == SB_OK) {
            size_t peak = sb_arena_peak(m->arena);
            sb_arena_free(m->arena); /* first, so the two never coexist (peak RSS) */
            m->arena = NULL;
            if ((rc = sb_arena_create(&m->arena, peak, err)))
                return rc;
            void *p = sb_arena_alloc(m->arena, peak);
            if (p)
                memset(p, 0, peak); /* fault the pages in once, not on every call */
            sb_arena_reset(m->arena, 0);
            m->arena_batch = B;
            if (peak > m->arena_peak)
                m->arena_peak = peak;
        } else {
            sb_arena_free(m->arena);
            m->arena = NULL;
            m->arena_batch = 0;
        }
    }
finish:
    if (opt->profile && rc == SB_OK)
        opt->profile->images += B;
    if (m->arena && sb_arena_peak(m->arena) > m->arena_peak)
        m->arena_peak = sb_arena_peak(m->arena);
    return rc;
}
