#include "util_parity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void store_dump(void *arg, const char *name, const float *data, int ndim, const int64_t *shape)
{
    dump_store *s = arg;
    if (s->n == s->cap) {
        s->cap = s->cap * 2 + 16;
        s->items = realloc(s->items, (size_t)s->cap * sizeof(dumped));
        assert_non_null(s->items);
    }
    dumped *d = &s->items[s->n++];
    snprintf(d->name, sizeof d->name, "%s", name);
    d->ndim = ndim;
    d->n = 1;
    for (int i = 0; i < ndim; i++) {
        d->shape[i] = shape[i];
        d->n *= (size_t)shape[i];
    }
    d->data = malloc(d->n * sizeof(float));
    assert_non_null(d->data);
    memcpy(d->data, data, d->n * sizeof(float));
}

void store_free(dump_store *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->items[i].data);
    free(s->items);
    memset(s, 0, sizeof *s);
}

const dumped *store_find(const dump_store *s, const char *name)
{
    for (int i = s->n - 1; i >= 0; i--)
        if (strcmp(s->items[i].name, name) == 0)
            return &s->items[i];
    return NULL;
}

/* Reads the golden tensor and finds the matching dump with the same shape;
 * NULL (and a failure counted) when missing or of another shape. */
static const dumped *fetch_pair(sb_h5 *f, const dump_store *s, const char *name, float **ref,
                                size_t *n, int *failures)
{
    sb_error err;
    int nd;
    int64_t shp[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, name, ref, &nd, shp, &err));
    const dumped *d = store_find(s, name);
    if (!d) {
        printf("  %-40s MISSING from the core's dumps\n", name);
        (*failures)++;
        return NULL;
    }
    *n = 1;
    for (int i = 0; i < nd; i++)
        *n *= (size_t)shp[i];
    int same = d->ndim == nd && d->n == *n;
    for (int i = 0; same && i < nd; i++)
        same = d->shape[i] == shp[i];
    if (!same) {
        printf("  %-40s SHAPE differs (core ndim %d, n %zu; ref ndim %d, n %zu)\n", name, d->ndim, d->n,
               nd, *n);
        (*failures)++;
        return NULL;
    }
    return d;
}

int compare_tensor(sb_h5 *f, const dump_store *s, const char *name, int *failures)
{
    if (!sb_h5_has(f, name))
        return 0;
    float *ref = NULL;
    size_t n = 0;
    const dumped *d = fetch_pair(f, s, name, &ref, &n, failures);
    if (d) {
        cmp_stats st = compare_f32(name, d->data, ref, n);
        if (!(st.max_abs <= 1e-4 * st.max_ref + 1e-6)) {
            printf("    -> over tolerance %.3e\n", 1e-4 * st.max_ref + 1e-6);
            (*failures)++;
        }
    }
    free(ref);
    return 1;
}

int compare_exact(sb_h5 *f, const dump_store *s, const char *name, int *failures)
{
    if (!sb_h5_has(f, name))
        return 0;
    float *ref = NULL;
    size_t n = 0;
    const dumped *d = fetch_pair(f, s, name, &ref, &n, failures);
    if (d) {
        size_t diff = 0;
        for (size_t i = 0; i < n; i++)
            diff += d->data[i] != ref[i];
        printf("  %-40s n=%-9zu exact: %zu differ\n", name, n, diff);
        if (diff) {
            printf("    core:");
            for (size_t i = 0; i < n && i < 16; i++)
                printf(" %g", d->data[i]);
            printf("\n    ref: ");
            for (size_t i = 0; i < n && i < 16; i++)
                printf(" %g", ref[i]);
            printf("\n");
            (*failures)++;
        }
    }
    free(ref);
    return 1;
}

int check_binary(sb_h5 *f, const dump_store *s, const char *logit_name, int *failures)
{
    sb_error err;
    float *ref = NULL, *logit = NULL;
    int nd;
    int64_t shp[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(f, "output/binary_mask", &ref, &nd, shp, &err));
    assert_sb_ok(err, sb_h5_read_f32(f, logit_name, &logit, &nd, shp, &err));
    const dumped *d = store_find(s, "output/binary_mask");
    assert_non_null(d);
    size_t n = d->n;
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = fmax(mx, fabs(logit[i]));
    size_t near = 0, bad = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        int is_near = fabs(logit[i] - 0.5) < 1e-4 * mx;
        near += is_near;
        if (d->data[i] != ref[i]) {
            diff++;
            if (!is_near)
                bad++;
        }
    }
    printf("  %-40s n=%-9zu differing=%zu (near-threshold pixels %zu, differing elsewhere %zu)\n",
           "output/binary_mask", n, diff, near, bad);
    if (bad)
        (*failures)++;
    free(ref);
    free(logit);
    return 1;
}

size_t read_h5_pair(sb_h5 *got, sb_h5 *ref, const char *name, float **a, float **b)
{
    sb_error err;
    int na, nb;
    int64_t sa[SB_MAX_DIMS], sbs[SB_MAX_DIMS];
    assert_sb_ok(err, sb_h5_read_f32(got, name, a, &na, sa, &err));
    assert_sb_ok(err, sb_h5_read_f32(ref, name, b, &nb, sbs, &err));
    assert_int_equal(na, nb);
    size_t n = 1;
    for (int k = 0; k < na; k++) {
        assert_int_equal(sa[k], sbs[k]);
        n *= (size_t)sa[k];
    }
    return n;
}
