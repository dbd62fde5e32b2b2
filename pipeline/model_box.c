/* The weight-free `box` baseline: predicts the (jittered) prompt box filled.
 * Logits on the S x S model grid: +10 inside the box (columns x0..x1, rows
 * y0..y1, inclusive, clipped to the grid), -10 outside. Useful as a lower
 * bound, for the demo and for tests. */
#include "run.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

static int box_begin(sb_run_model *m, sb_error *err)
{
    (void)m;
    (void)err;
    return SB_OK;
}

static int box_predict(sb_run_model *m, const uint8_t *imgs, const float *boxes, int B, float *logits,
                       sb_error *err)
{
    (void)imgs;
    (void)err;
    int S = m->image_size;
    if (m->state) { /* SAMBENCH_BOX_DELAY_MS: simulate a slower model (tests of signals and resume) */
        long ms = *(long *)m->state;
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    for (int b = 0; b < B; b++) {
        float *o = logits + (size_t)b * S * S;
        int x0 = (int)boxes[4 * b], y0 = (int)boxes[4 * b + 1];
        int x1 = (int)boxes[4 * b + 2], y1 = (int)boxes[4 * b + 3];
        if (x1 > S - 1)
            x1 = S - 1;
        if (y1 > S - 1)
            y1 = S - 1;
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++)
                o[(size_t)y * S + x] = (x >= x0 && x <= x1 && y >= y0 && y <= y1) ? 10.0f : -10.0f;
    }
    return SB_OK;
}

static void box_destroy(sb_run_model *m) { free(m->state); }

int sb_model_box_create(sb_run_model **out, int image_size, sb_error *err)
{
    *out = NULL;
    if (image_size < 8 || image_size > 8192)
        return sb_fail(err, SB_EINVAL, "box model: image size %d out of range", image_size);
    sb_run_model *m = calloc(1, sizeof *m);
    if (!m)
        return sb_fail(err, SB_ENOMEM, "out of memory");
    snprintf(m->name, sizeof m->name, "box");
    m->image_size = image_size;
    m->logits_size = image_size;
    m->needs_image = 0;
    m->cost_per_slice = 1.0;
    m->begin_scope = box_begin;
    m->predict = box_predict;
    m->destroy = box_destroy;
    const char *d = getenv("SAMBENCH_BOX_DELAY_MS");
    if (d && atol(d) > 0) {
        long *ms = malloc(sizeof *ms);
        if (ms) {
            *ms = atol(d);
            m->state = ms;
        }
    }
    *out = m;
    return SB_OK;
}
