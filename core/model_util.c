/*
 * What every model file shares (sam2_internal.h): the weight binder
 * (checkpoint tensors, or deterministic random ones of the same shapes), the
 * per-module profiler, the dump helpers, and the output buffers with the
 * final upsampling and threshold. Below every model file: it calls none.
 */
#include "sam2_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- weight binder ----------------------------------------------------------- */
void sb_wbind_init(sb_wbind *b, const sb_weights *w, uint64_t seed)
{
    memset(b, 0, sizeof *b);
    b->w = w;
    b->seed = seed;
}

void sb_wbind_release(sb_wbind *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n_owned; i++)
        free(b->owned[i]);
    free(b->owned);
    b->owned = NULL;
    b->n_owned = b->cap_owned = 0;
}

int sb_wbind_has(const sb_wbind *b, const char *key) { return b->w ? sb_weights_has(b->w, key) : 0; }

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const float *random_tensor(sb_wbind *b, const char *key, int ndim, const int64_t *shape,
                                  sb_error *err)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    float *t = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!t || (b->n_owned == b->cap_owned &&
               !(b->owned = realloc(b->owned, (size_t)(b->cap_owned = b->cap_owned * 2 + 64) * sizeof(float *))))) {
        free(t);
        sb_fail(err, SB_ENOMEM, "random weights: cannot allocate %s", key);
        return NULL;
    }
    b->owned[b->n_owned++] = t;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a of the key, mixed with the seed */
    for (const char *c = key; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ULL;
    uint64_t st = h ^ (b->seed * 0x9e3779b97f4a7c15ULL);
    float scale, offset = 0.0f;
    if (ndim == 1 && ends_with(key, ".weight")) { /* norm scales */
        scale = 0.1f;
        offset = 1.0f;
    } else if (ndim == 1) { /* biases */
        scale = 0.02f;
    } else if (strstr(key, "gaussian_matrix")) {
        scale = 1.0f;
    } else {
        int64_t fan_in = shape[0] > 0 ? n / shape[0] : 1;
        scale = 1.0f / sqrtf((float)(fan_in > 0 ? fan_in : 1));
    }
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(splitmix64(&st) >> 11) * (1.0 / 9007199254740992.0);
        t[i] = offset + scale * (float)(2.0 * u - 1.0);
    }
    return t;
}

const float *sb_wbind_get(sb_wbind *b, const char *key, int ndim, const int64_t *shape,
                          sb_error *err)
{
    const float *p;
    if (b->w)
        p = sb_weights_get(b->w, key, ndim, shape, err);
    else
        p = random_tensor(b, key, ndim, shape, err);
    if (p) {
        int64_t n = 1;
        for (int i = 0; i < ndim; i++)
            n *= shape[i];
        b->bytes += (size_t)n * sizeof(float);
        b->tensors++;
    }
    return p;
}

const float *sb_wbind_getf(sb_wbind *b, sb_error *err, int ndim, const int64_t *shape,
                           const char *fmt, ...)
{
    char key[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof key, fmt, ap);
    va_end(ap);
    return sb_wbind_get(b, key, ndim, shape, err);
}

/* ---- profiler ------------------------------------------------------------------ */
void sb_modprof_end(sb_modprof *mp)
{
    if (!mp || !mp->p || mp->cur < 0)
        return;
    mp->p->seconds[mp->cur] += sb_clock_seconds() - mp->t0;
    mp->cur = -1;
}

void sb_modprof_begin(sb_modprof *mp, const char *name)
{
    if (!mp || !mp->p)
        return;
    sb_modprof_end(mp);
    sb_profile *p = mp->p;
    int i;
    for (i = 0; i < p->n; i++)
        if (strcmp(p->name[i], name) == 0)
            break;
    if (i == p->n) {
        if (p->n >= SB_PROFILE_MAX)
            i = SB_PROFILE_MAX - 1; /* lump the overflow into the last entry */
        else {
            snprintf(p->name[i], sizeof p->name[i], "%s", name);
            p->seconds[i] = p->flops[i] = 0;
            p->n++;
        }
    }
    mp->cur = i;
    mp->t0 = sb_clock_seconds();
}

/* ---- dump helpers ------------------------------------------------------------- */
void sb_dump4(sb_dump_fn dump, void *arg, const char *name, const float *data, int64_t d0,
              int64_t d1, int64_t d2, int64_t d3)
{
    if (!dump)
        return;
    int64_t s[4] = {d0, d1, d2, d3};
    dump(arg, name, data, 4, s);
}

void sb_dump3(sb_dump_fn dump, void *arg, const char *name, const float *data, int64_t d0,
              int64_t d1, int64_t d2)
{
    if (!dump)
        return;
    int64_t s[3] = {d0, d1, d2};
    dump(arg, name, data, 3, s);
}

void sb_dump2(sb_dump_fn dump, void *arg, const char *name, const float *data, int64_t d0,
              int64_t d1)
{
    if (!dump)
        return;
    int64_t s[2] = {d0, d1};
    dump(arg, name, data, 2, s);
}

/* ---- outputs ------------------------------------------------------------------- */
int sb_model_output_reserve(sb_model_output *o, int64_t B, int64_t lh, int64_t lw, int64_t oh, int64_t ow,
                            sb_error *err)
{
    if (o->B != B || o->low_h != lh || o->low_w != lw || o->out_h != oh || o->out_w != ow || !o->low_res) {
        sb_model_output_free(o);
        o->low_res = malloc((size_t)(B * lh * lw) * sizeof(float));
        o->iou = malloc((size_t)B * sizeof(float));
        o->logits = malloc((size_t)(B * oh * ow) * sizeof(float));
        o->mask = malloc((size_t)(B * oh * ow));
        if (!o->low_res || !o->iou || !o->logits || !o->mask) {
            sb_model_output_free(o);
            return sb_fail(err, SB_ENOMEM, "model output: cannot allocate %lld x %lld x %lld logits", (long long)B,
                           (long long)oh, (long long)ow);
        }
        o->B = B;
        o->low_h = lh;
        o->low_w = lw;
        o->out_h = oh;
        o->out_w = ow;
    }
    return SB_OK;
}

void sb_model_output_free(sb_model_output *o)
{
    if (!o)
        return;
    free(o->low_res);
    free(o->iou);
    free(o->logits);
    free(o->mask);
    memset(o, 0, sizeof *o);
}

/* Final logits from the low-res ones, the binary mask and their dumps (every flow). */
int sb_model_finish_logits(sb_ctx *ctx, sb_model_output *out, int nearest, float threshold,
                           const char *logits_name, sb_arena *a, sb_modprof *mp, sb_dump_fn dump, void *da,
                           sb_error *err)
{
    const int64_t B = out->B, n = out->B * out->out_h * out->out_w;
    sb_modprof_begin(mp, "upsample");
    if (nearest)
        sb_interp_nearest(ctx, out->low_res, B, out->low_h, out->low_w, out->logits, out->out_h, out->out_w);
    else
        sb_interp_bilinear(ctx, out->low_res, B, out->low_h, out->low_w, out->logits, out->out_h, out->out_w);
    for (int64_t i = 0; i < n; i++)
        out->mask[i] = out->logits[i] > threshold;
    sb_modprof_end(mp);
    if (!dump)
        return SB_OK;
    sb_dump4(dump, da, logits_name, out->logits, B, 1, out->out_h, out->out_w);
    size_t mark = sb_arena_mark(a);
    float *bm = sb_arena_alloc_checked(a, (size_t)n * sizeof(float), "binary mask (dump)", err);
    if (!bm)
        return err->code;
    for (int64_t i = 0; i < n; i++)
        bm[i] = out->mask[i];
    sb_dump4(dump, da, "output/binary_mask", bm, B, 1, out->out_h, out->out_w);
    sb_arena_reset(a, mark);
    return SB_OK;
}
