/*
 * What the data readers share (data_internal.h): problem bookkeeping, the
 * case list of a dataset, and volumes. Below data.c, data_nifti.c and
 * data_shard.c: it calls none of them.
 */
#include "data_internal.h"

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- problems and cases ----------------------------------------------------- */
void sb_data_note(sb_data *d, const char *dataset, const char *case_id, const char *file, const char *reason,
                  int is_dataset)
{
    if (d->np == d->pcap) {
        int nc = d->pcap ? 2 * d->pcap : 16;
        sb_data_problem *np = realloc(d->p, sizeof *np * (size_t)nc);
        if (np) {
            d->p = np;
            d->pcap = nc;
        }
    }
    if (d->np < d->pcap) {
        sb_data_problem *p = &d->p[d->np++];
        snprintf(p->dataset, sizeof p->dataset, "%s", dataset ? dataset : "");
        snprintf(p->case_id, sizeof p->case_id, "%s", case_id ? case_id : "");
        snprintf(p->file, sizeof p->file, "%s", file ? file : "");
        snprintf(p->reason, sizeof p->reason, "%s", reason ? reason : "");
    }
    if (is_dataset)
        d->skipped_datasets++;
    else
        d->skipped_cases++;
    if (!(d->flags & SB_DATA_QUIET))
        SB_WARN("skipped %s %s%s%s: %s: %s", is_dataset ? "dataset" : "case", dataset ? dataset : "",
                case_id && *case_id ? " / " : "", case_id ? case_id : "", file ? file : "", reason ? reason : "");
}

void sb_data_case_free(dcase *c)
{
    for (int k = 0; c->img && k < (c->nslices > 0 ? c->nslices : 1); k++)
        free(c->img[k]);
    for (int k = 0; c->msk && k < (c->nslices > 0 ? c->nslices : 1); k++)
        free(c->msk[k]);
    free(c->img);
    free(c->msk);
    free(c->sidx);
    memset(c, 0, sizeof *c);
}

dcase *sb_data_add_case(dset *s, const char *id)
{
    if (s->ncases == s->cap) {
        int nc = s->cap ? 2 * s->cap : 16;
        dcase *n = realloc(s->cases, sizeof *n * (size_t)nc);
        if (!n)
            return NULL;
        s->cases = n;
        s->cap = nc;
    }
    dcase *c = &s->cases[s->ncases++];
    memset(c, 0, sizeof *c);
    snprintf(c->id, sizeof c->id, "%s", id);
    c->nslices = -1;
    return c;
}

/* ---- volumes ------------------------------------------------------------ */
void sb_volume_free(sb_volume *v)
{
    if (!v)
        return;
    for (int k = 0; v->slice_names && k < v->nslices; k++)
        free(v->slice_names[k]);
    free(v->slice_names);
    free(v->rgb);
    free(v->mask);
    free(v->slice_index);
    memset(v, 0, sizeof *v);
}

int sb_volume_alloc(sb_volume *v, int n, int h, int w, sb_error *err)
{
    size_t px = (size_t)h * w;
    v->nslices = n;
    v->height = h;
    v->width = w;
    v->rgb = malloc(px * 3 * (size_t)n + 1);
    v->mask = malloc(px * (size_t)n + 1);
    v->slice_index = calloc((size_t)n + 1, sizeof(int64_t));
    v->slice_names = calloc((size_t)n + 1, sizeof(char *));
    if (!v->rgb || !v->mask || !v->slice_index || !v->slice_names) {
        sb_volume_free(v);
        return sb_fail(err, SB_ENOMEM, "out of memory for %d slices of %dx%d", n, w, h);
    }
    return SB_OK;
}

int sb_volume_keep_nonempty(sb_volume *v)
{
    size_t px = (size_t)v->height * v->width;
    int k = 0;
    for (int z = 0; z < v->nslices; z++) {
        const uint8_t *m = v->mask + px * z;
        int any = 0;
        for (size_t i = 0; i < px && !any; i++)
            any = m[i] != 0;
        if (!any) {
            free(v->slice_names[z]);
            continue;
        }
        if (k != z) {
            memmove(v->rgb + px * 3 * k, v->rgb + px * 3 * z, px * 3);
            memmove(v->mask + px * k, m, px);
            v->slice_index[k] = v->slice_index[z];
            v->slice_names[k] = v->slice_names[z];
        }
        k++;
    }
    v->nslices = k;
    return k;
}
