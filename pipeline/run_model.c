/* Model selection for `sambench run --model NAME`: the weight-free `box`
 * baseline (model_box.c) and the inference cores of core/ through the
 * generic model API (sb_model_create / sb_model_forward), with the SAMed-2
 * memory bank scoped per volume (volume protocol) or carried across a
 * dataset (reference protocol, reset at the start of each dataset). */
#include "run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    sb_weights *w;
    sb_model *model;
    sb_ctx *ctx;
    sb_model_bank bank;
    float *imgs;
    size_t imgs_cap;
    sb_model_output out;
    int final; /* 1: the flow's own S x S logits (reference); 0: the low-res logits */
    int reference;
} core_state;

int sb_model_bank_attach(sb_model_bank *b, sb_model *m, sb_ctx *ctx, const char *path, const sb_bank *shared,
                         int scope, sb_error *err)
{
    memset(b, 0, sizeof *b);
    int rc = shared ? SB_OK : sb_bank_load(&b->owned, path, err);
    if (rc == SB_OK)
        rc = sb_membank_base_create(&b->base, shared ? shared : b->owned, ctx, err);
    if (rc == SB_OK)
        rc = sb_membank_create(&b->mb, b->base, scope, err);
    if (rc == SB_OK)
        rc = sb_model_set_membank(m, b->mb, err);
    if (rc != SB_OK)
        sb_model_bank_free(b);
    return rc;
}

void sb_model_bank_free(sb_model_bank *b)
{
    sb_membank_free(b->mb);
    sb_membank_base_free(b->base);
    sb_bank_free(b->owned);
    memset(b, 0, sizeof *b);
}

static int core_begin(sb_run_model *m, sb_error *err)
{
    (void)err;
    core_state *s = m->state;
    if (s->bank.mb) {
        if (s->reference)
            sb_membank_reset(s->bank.mb); /* each dataset starts from the pretrained bank, as main.py does */
        else
            sb_membank_begin_volume(s->bank.mb);
    }
    return SB_OK;
}

static int core_predict(sb_run_model *m, const uint8_t *imgs, const float *boxes, int B, float *logits,
                        sb_error *err)
{
    core_state *s = m->state;
    const int S = m->image_size;
    size_t need = (size_t)B * 3 * S * S;
    if (need > s->imgs_cap) {
        free(s->imgs);
        s->imgs = malloc(sizeof(float) * need);
        s->imgs_cap = s->imgs ? need : 0;
        if (!s->imgs)
            return sb_fail(err, SB_ENOMEM, "out of memory for a batch of %d images", B);
    }
    /* HWC uint8 -> NCHW float /255 (ToTensor; no normalisation, MODEL.md 1.1) */
    for (int b = 0; b < B; b++)
        for (int c = 0; c < 3; c++)
            for (size_t i = 0; i < (size_t)S * S; i++)
                s->imgs[((size_t)b * 3 + c) * S * S + i] = imgs[((size_t)b * S * S + i) * 3 + c] / 255.0f;
    sb_prompts pr = {boxes, NULL, NULL, 0};
    sb_forward_options fo;
    sb_forward_options_default(&fo);
    int rc = sb_model_forward(s->model, s->ctx, s->imgs, B, &pr, &fo, &s->out, err);
    if (rc)
        return rc;
    size_t L = (size_t)m->logits_size;
    const float *src = s->final ? s->out.logits : s->out.low_res;
    if ((s->final && (size_t)s->out.out_h != L) || (!s->final && (size_t)s->out.low_h != L))
        return sb_fail(err, SB_ESHAPE, "model %s: logits of an unexpected size", m->name);
    memcpy(logits, src, sizeof(float) * (size_t)B * L * L);
    return SB_OK;
}

static void core_destroy(sb_run_model *m)
{
    core_state *s = m->state;
    if (!s)
        return;
    sb_model_output_free(&s->out);
    sb_model_free(s->model);
    sb_model_bank_free(&s->bank);
    sb_weights_free(s->w);
    sb_ctx_free(s->ctx);
    free(s->imgs);
    free(s);
}

static int core_create(sb_run_model **out, int flow, const sb_model_opts *o, sb_error *err)
{
    sb_run_model *m = calloc(1, sizeof *m);
    core_state *s = calloc(1, sizeof *s);
    if (!m || !s) {
        free(m);
        free(s);
        return sb_fail(err, SB_ENOMEM, "out of memory");
    }
    snprintf(m->name, sizeof m->name, "%s", o->model);
    m->state = s;
    m->destroy = core_destroy;
    m->begin_scope = core_begin;
    m->predict = core_predict;
    m->needs_image = 1;
    s->reference = o->protocol == SB_PROTO_REFERENCE;
    s->final = s->reference;
    /* relative cost per slice: GFLOP per image at 1024 (MODEL.md 5.2) */
    static const double gflop[SB_FLOW_COUNT] = {783.2, 363.7, 296.0, 975.7, 975.7};
    m->cost_per_slice = gflop[flow];
    int rc = sb_ctx_create(&s->ctx, o->threads, err);
    if (rc == SB_OK && o->checkpoint) {
        sb_weights_opts wo = {0};
        wo.threads = sb_ctx_threads(s->ctx); /* the rank's share of the node, never more */
        rc = sb_weights_load_ex(&s->w, o->checkpoint, &wo, err);
    }
    if (rc == SB_OK) {
        sb_model_options mo = {flow, o->model_config, s->w, s->w == NULL, 0};
        rc = sb_model_create(&s->model, &mo, s->ctx, err);
    }
    if (rc == SB_OK && flow == SB_FLOW_SAMED2) {
        if (!o->memory_bank)
            rc = sb_fail(err, SB_EINVAL, "model samed2 needs --memory-bank PKL (memory_bank_list_<N>.pkl)");
        if (rc == SB_OK)
            rc = sb_model_bank_attach(&s->bank, s->model, s->ctx, o->memory_bank, o->bank,
                                      s->reference ? SB_BANK_GLOBAL : SB_BANK_VOLUME, err);
    }
    if (rc != SB_OK) {
        sb_run_model_free(m);
        return rc;
    }
    m->image_size = (int)sb_model_image_size(s->model);
    m->logits_size = s->final ? m->image_size : (int)sb_model_lowres_size(s->model);
    *out = m;
    return SB_OK;
}

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
    int flow = sb_flow_parse(o->model);
    if (flow < 0)
        return sb_fail(err, SB_EINVAL, "unknown model '%s' (samed2, sam2, medsam2, sam, medsam or box)", o->model);
    return core_create(out, flow, o, err);
}

void sb_run_model_free(sb_run_model *m)
{
    if (!m)
        return;
    if (m->destroy)
        m->destroy(m);
    free(m);
}
