/* Dataset manifests: YAML via libyaml's document API (see manifest.h). */
#include "manifest.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

const char *const sb_published_model_names[SB_PUBLISHED_MODELS] = {"samed2", "medsam2", "sam2",
                                                                    "medsam", "sam",     "unet"};

const char *sb_modality_canonical(const char *name)
{
    static const char *const table[][2] = {
        {"CT", "CT"},
        {"MR", "MR"},
        {"MRI", "MR"},
        {"Fundus", "Fundus"},
        {"Dermoscopy", "Dermoscopy"},
        {"X-Ray", "X-Ray"},
        {"XRay", "X-Ray"},
        {"Xray", "X-Ray"},
        {"CXR", "X-Ray"},
        {"Colonoscopy", "Colonoscopy"},
        {"Endoscopy", "Endoscopy"},
        {"Echocardiography", "Echocardiography"},
        {"Echo", "Echocardiography"},
        {"US", "US"},
        {"Ultrasound", "US"},
        {"PET", "PET"},
        {"Microscopy", "Microscopy"},
        {"OCT", "OCT"},
    };
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcasecmp(name, table[i][0]) == 0)
            return table[i][1];
    return NULL;
}

void sb_dataset_spec_defaults(sb_dataset_spec *s)
{
    memset(s, 0, sizeof *s);
    s->layout = SB_LAYOUT_MEDBANK;
    snprintf(s->split, sizeof s->split, "test.txt");
    s->label_ids[0] = 1;
    s->nlabels = 1;
    s->intensity = SB_INTENSITY_NONE;
    s->window_level = 40;
    s->window_width = 400;
    s->pct_lo = 0.5;
    s->pct_hi = 99.5;
    s->slice_axis = 2;
    s->nsd_tolerance = 2.0;
    for (int i = 0; i < SB_PUBLISHED_MODELS; i++)
        s->published_dice[i] = NAN;
}

void sb_manifest_free(sb_manifest *m)
{
    if (!m)
        return;
    free(m->d);
    free(m);
}

const sb_dataset_spec *sb_manifest_find(const sb_manifest *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->d[i].name, name) == 0)
            return &m->d[i];
    return NULL;
}

/* ---- YAML helpers ------------------------------------------------------- */

typedef struct {
    yaml_document_t *doc;
    const char *path;
    sb_error *err;
} yctx;

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int where(yctx *c, yaml_node_t *n, const char *fmt, const char *a, const char *b)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, a, b);
    return sb_fail(c->err, SB_EFORMAT, "%s:%zu: %s", c->path, n ? n->start_mark.line + 1 : 0, msg);
}

static int get_str(yctx *c, yaml_node_t *v, const char *key, char *dst, size_t cap)
{
    const char *s = scalar(v);
    if (!s)
        return where(c, v, "'%s' must be a string%s", key, "");
    if (strlen(s) >= cap)
        return where(c, v, "'%s' is too long%s", key, "");
    snprintf(dst, cap, "%s", s);
    return SB_OK;
}

static int get_num(yctx *c, yaml_node_t *v, const char *key, double *out)
{
    const char *s = scalar(v);
    char *end = NULL;
    double x = s ? strtod(s, &end) : NAN;
    if (!s || end == s || *end || !isfinite(x))
        return where(c, v, "'%s' must be a number, got '%s'", key, s ? s : "(not a scalar)");
    *out = x;
    return SB_OK;
}

static int get_int(yctx *c, yaml_node_t *v, const char *key, int *out)
{
    double x;
    int rc = get_num(c, v, key, &x);
    if (rc != SB_OK)
        return rc;
    if (x != floor(x) || fabs(x) > 1e9)
        return where(c, v, "'%s' must be an integer%s", key, "");
    *out = (int)x;
    return SB_OK;
}

static int get_bool(yctx *c, yaml_node_t *v, const char *key, int *out)
{
    const char *s = scalar(v);
    if (s && (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1")))
        *out = 1;
    else if (s && (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcmp(s, "0")))
        *out = 0;
    else
        return where(c, v, "'%s' must be true or false%s", key, "");
    return SB_OK;
}

static int set_key(yctx *c, sb_dataset_spec *s, const char *key, yaml_node_t *v)
{
    yaml_document_t *doc = c->doc;
    if (!strcmp(key, "name"))
        return get_str(c, v, key, s->name, sizeof s->name);
    if (!strcmp(key, "task"))
        return get_str(c, v, key, s->task, sizeof s->task);
    if (!strcmp(key, "modality")) {
        char buf[64];
        int rc = get_str(c, v, key, buf, sizeof buf);
        if (rc != SB_OK)
            return rc;
        const char *m = sb_modality_canonical(buf);
        if (!m)
            return where(c, v, "unknown modality '%s'%s", buf, "");
        snprintf(s->modality, sizeof s->modality, "%s", m);
        return SB_OK;
    }
    if (!strcmp(key, "layout")) {
        const char *x = scalar(v);
        if (x && !strcmp(x, "medbank"))
            s->layout = SB_LAYOUT_MEDBANK;
        else if (x && !strcmp(x, "msd"))
            s->layout = SB_LAYOUT_MSD;
        else
            return where(c, v, "layout must be medbank or msd, got '%s'%s", x ? x : "?", "");
        return SB_OK;
    }
    if (!strcmp(key, "path"))
        return get_str(c, v, key, s->path, sizeof s->path);
    if (!strcmp(key, "split"))
        return get_str(c, v, key, s->split, sizeof s->split);
    if (!strcmp(key, "sources")) {
        s->sources[0] = '\0';
        if (v->type == YAML_SCALAR_NODE)
            return get_str(c, v, key, s->sources, sizeof s->sources);
        if (v->type != YAML_SEQUENCE_NODE)
            return where(c, v, "'%s' must be a list%s", key, "");
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            const char *x = scalar(yaml_document_get_node(doc, *it));
            if (!x)
                return where(c, v, "'%s' must be a list of strings%s", key, "");
            size_t len = strlen(s->sources);
            snprintf(s->sources + len, sizeof s->sources - len, "%s%s", len ? "," : "", x);
        }
        return SB_OK;
    }
    if (!strcmp(key, "label_ids")) {
        if (v->type != YAML_SEQUENCE_NODE)
            return where(c, v, "'%s' must be a list of integers%s", key, "");
        s->nlabels = 0;
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
            if (s->nlabels == SB_MAX_LABELS)
                return where(c, v, "too many label ids%s%s", "", "");
            int rc = get_int(c, yaml_document_get_node(doc, *it), key, &s->label_ids[s->nlabels]);
            if (rc != SB_OK)
                return rc;
            s->nlabels++;
        }
        if (s->nlabels == 0)
            return where(c, v, "'%s' is empty%s", key, "");
        return SB_OK;
    }
    if (!strcmp(key, "channel"))
        return get_int(c, v, key, &s->channel);
    if (!strcmp(key, "intensity")) {
        const char *x = scalar(v);
        if (x && !strcmp(x, "none"))
            s->intensity = SB_INTENSITY_NONE;
        else if (x && !strcmp(x, "ct_window"))
            s->intensity = SB_INTENSITY_CT_WINDOW;
        else if (x && !strcmp(x, "percentile"))
            s->intensity = SB_INTENSITY_PERCENTILE;
        else
            return where(c, v, "intensity must be none, ct_window or percentile, got '%s'%s", x ? x : "?", "");
        return SB_OK;
    }
    if (!strcmp(key, "window_level"))
        return get_num(c, v, key, &s->window_level);
    if (!strcmp(key, "window_width"))
        return get_num(c, v, key, &s->window_width);
    if (!strcmp(key, "percentiles")) {
        if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top - v->data.sequence.items.start != 2)
            return where(c, v, "'%s' must be [low, high]%s", key, "");
        int rc = get_num(c, yaml_document_get_node(doc, v->data.sequence.items.start[0]), key, &s->pct_lo);
        if (rc == SB_OK)
            rc = get_num(c, yaml_document_get_node(doc, v->data.sequence.items.start[1]), key, &s->pct_hi);
        if (rc == SB_OK && !(s->pct_lo >= 0 && s->pct_lo < s->pct_hi && s->pct_hi <= 100))
            return where(c, v, "'%s' must satisfy 0 <= low < high <= 100%s", key, "");
        return rc;
    }
    if (!strcmp(key, "slice_axis")) {
        int rc = get_int(c, v, key, &s->slice_axis);
        if (rc == SB_OK && (s->slice_axis < 0 || s->slice_axis > 2))
            return where(c, v, "slice_axis must be 0, 1 or 2%s%s", "", "");
        return rc;
    }
    if (!strcmp(key, "nonempty_only"))
        return get_bool(c, v, key, &s->nonempty_only);
    if (!strcmp(key, "nsd_tolerance"))
        return get_num(c, v, key, &s->nsd_tolerance);
    if (!strcmp(key, "published_dice")) {
        if (v->type != YAML_MAPPING_NODE)
            return where(c, v, "'%s' must be a mapping model: value%s", key, "");
        for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
            const char *m = scalar(yaml_document_get_node(doc, p->key));
            int k = -1;
            for (int i = 0; m && i < SB_PUBLISHED_MODELS; i++)
                if (!strcmp(m, sb_published_model_names[i]))
                    k = i;
            if (k < 0)
                return where(c, v, "published_dice: unknown model '%s' (samed2, medsam2, sam2, medsam, sam, unet)%s",
                             m ? m : "?", "");
            int rc = get_num(c, yaml_document_get_node(doc, p->value), key, &s->published_dice[k]);
            if (rc != SB_OK)
                return rc;
        }
        return SB_OK;
    }
    return where(c, v, "unknown key '%s'%s", key, "");
}

static int apply_mapping(yctx *c, sb_dataset_spec *s, yaml_node_t *map)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return where(c, map, "expected a mapping%s%s", "", "");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(c->doc, p->key));
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (!k || !v)
            return where(c, map, "bad key%s%s", "", "");
        int rc = set_key(c, s, k, v);
        if (rc != SB_OK)
            return rc;
    }
    return SB_OK;
}

int sb_manifest_load(sb_manifest **out, const char *path, sb_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot open manifest (missing or unreadable)", path);
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return sb_fail(err, SB_ENOMEM, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = sb_fail(err, SB_EFORMAT, "%s:%zu: YAML error: %s", path, parser.problem_mark.line + 1,
                         parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        fclose(f);
        return rc;
    }
    yaml_parser_delete(&parser);
    fclose(f);
    yctx c = {&doc, path, err};
    int rc = SB_OK;
    sb_manifest *m = calloc(1, sizeof *m);
    sb_dataset_spec defaults;
    sb_dataset_spec_defaults(&defaults);
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t *list = NULL;
    if (!m) {
        rc = sb_fail(err, SB_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    snprintf(m->path, sizeof m->path, "%s", path);
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = sb_fail(err, SB_EFORMAT, "%s: a manifest is a mapping with 'collection' and 'datasets'", path);
        goto done;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        const char *k = scalar(yaml_document_get_node(&doc, p->key));
        yaml_node_t *v = yaml_document_get_node(&doc, p->value);
        if (k && !strcmp(k, "collection"))
            rc = get_str(&c, v, k, m->collection, sizeof m->collection);
        else if (k && !strcmp(k, "description"))
            rc = SB_OK;
        else if (k && !strcmp(k, "defaults"))
            rc = apply_mapping(&c, &defaults, v);
        else if (k && !strcmp(k, "datasets"))
            list = v;
        else
            rc = where(&c, v, "unknown top-level key '%s'%s", k ? k : "?", "");
        if (rc != SB_OK)
            goto done;
    }
    if (!list || list->type != YAML_SEQUENCE_NODE) {
        rc = sb_fail(err, SB_EFORMAT, "%s: 'datasets' (a list) is missing", path);
        goto done;
    }
    int n = (int)(list->data.sequence.items.top - list->data.sequence.items.start);
    m->d = calloc(n ? (size_t)n : 1, sizeof *m->d);
    if (!m->d) {
        rc = sb_fail(err, SB_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        sb_dataset_spec *s = &m->d[i];
        *s = defaults;
        yaml_node_t *e = yaml_document_get_node(&doc, list->data.sequence.items.start[i]);
        rc = apply_mapping(&c, s, e);
        if (rc != SB_OK)
            goto done;
        if (!s->name[0] || !s->task[0] || !s->modality[0] || !s->path[0]) {
            rc = where(&c, e, "dataset %s needs name, task, modality and path%s", s->name[0] ? s->name : "(unnamed)",
                       "");
            goto done;
        }
        if (strchr(s->name, '/')) {
            rc = where(&c, e, "dataset name '%s' must not contain '/'%s", s->name, "");
            goto done;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(m->d[j].name, s->name)) {
                rc = where(&c, e, "dataset name '%s' appears twice%s", s->name, "");
                goto done;
            }
        m->n = i + 1;
    }
done:
    yaml_document_delete(&doc);
    if (rc != SB_OK) {
        sb_manifest_free(m);
        return rc;
    }
    *out = m;
    return SB_OK;
}

static void put_num(FILE *f, const char *key, double v) { fprintf(f, "    %s: %.10g\n", key, v); }

int sb_manifest_write(const sb_manifest *m, const char *path, sb_error *err)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return sb_fail(err, SB_EIO, "%s: cannot create", path);
    fprintf(f, "# sambench dataset manifest (format: pipeline/manifest.h); paths relative to --data-root\n");
    fprintf(f, "collection: %s\ndatasets:\n", m->collection);
    static const char *intens[] = {"none", "ct_window", "percentile"};
    for (int i = 0; i < m->n; i++) {
        const sb_dataset_spec *s = &m->d[i];
        fprintf(f, "  - name: %s\n    task: %s\n    modality: %s\n", s->name, s->task, s->modality);
        fprintf(f, "    layout: %s\n    path: \"%s\"\n    split: \"%s\"\n", s->layout == SB_LAYOUT_MSD ? "msd" : "medbank",
                s->path, s->split);
        if (s->sources[0]) {
            fprintf(f, "    sources: [");
            const char *p = s->sources;
            int first = 1;
            while (*p) {
                const char *q = strchr(p, ',');
                size_t len = q ? (size_t)(q - p) : strlen(p);
                fprintf(f, "%s\"%.*s\"", first ? "" : ", ", (int)len, p);
                first = 0;
                p += len + (q ? 1 : 0);
            }
            fprintf(f, "]\n");
        }
        fprintf(f, "    label_ids: [");
        for (int k = 0; k < s->nlabels; k++)
            fprintf(f, "%s%d", k ? ", " : "", s->label_ids[k]);
        fprintf(f, "]\n    channel: %d\n    intensity: %s\n", s->channel, intens[s->intensity]);
        if (s->intensity == SB_INTENSITY_CT_WINDOW) {
            put_num(f, "window_level", s->window_level);
            put_num(f, "window_width", s->window_width);
        }
        if (s->intensity == SB_INTENSITY_PERCENTILE)
            fprintf(f, "    percentiles: [%.10g, %.10g]\n", s->pct_lo, s->pct_hi);
        fprintf(f, "    slice_axis: %d\n    nonempty_only: %s\n", s->slice_axis, s->nonempty_only ? "true" : "false");
        put_num(f, "nsd_tolerance", s->nsd_tolerance);
        int any = 0;
        for (int k = 0; k < SB_PUBLISHED_MODELS; k++)
            any |= !isnan(s->published_dice[k]);
        if (any) {
            fprintf(f, "    published_dice: {");
            int first = 1;
            for (int k = 0; k < SB_PUBLISHED_MODELS; k++)
                if (!isnan(s->published_dice[k])) {
                    fprintf(f, "%s%s: %.4f", first ? "" : ", ", sb_published_model_names[k], s->published_dice[k]);
                    first = 0;
                }
            fprintf(f, "}\n");
        }
    }
    if (fclose(f) != 0)
        return sb_fail(err, SB_EIO, "%s: write error", path);
    return SB_OK;
}
