/*
 * sambench inspect FILE [--format text|json] [--variant V [--structure] [--allow-missing]]
 *                       [--unwrap KEY] [--strip-prefix P]
 *
 * What a weights file holds, read directly (no Python): the kind
 * (checkpoint / memory bank / sambench-h5), the tensors (name, dtype, shape,
 * bytes) or the bank entries (count, shapes, dtypes, iou range), the total
 * number of parameters and the file's SHA-256. JSON:
 *   {"kind": ..., "tensors": [{"name","dtype","shape","bytes"}], "entries": N, ...}
 */
#include "cli.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sambench inspect FILE [--format text|json] [--variant V [--config FILE | --structure]\n"
            "                        [--allow-missing]]\n"
            "                        [--unwrap KEY] [--strip-prefix PREFIX]\n\n"
            "Describes a checkpoint (torch .pth/.pt zip or legacy torch.save), a memory bank\n"
            "(memory_bank_list_<N>.pkl) or a sambench-h5 weight file; the format is found from the\n"
            "content. Nothing in the file is executed: its pickle runs on a restricted VM.\n\n"
            "  --format F        text (default) or json: {\"kind\", \"tensors\": [{\"name\", \"dtype\",\n"
            "                    \"shape\", \"bytes\"}], \"entries\", \"parameters\", \"sha256\", ...}\n"
            "  --variant V       also validate the keys and shapes against the official table of V\n"
            "                    (samed2, sam2_hiera_s, sam2_hiera_t, sam_vit_b)\n"
            "  --config FILE     with --variant: validate exactly against the keys and shapes of this\n"
            "                    model config (reduced-size models, e.g. tests/fixtures/*_config.json)\n"
            "  --structure       validate key names (layer indices abstracted) and ranks only, for\n"
            "                    reduced-size files without their config\n"
            "  --allow-missing   with --variant: keys missing from the file are initialised with\n"
            "                    random values (listed as a warning) instead of an error\n"
            "  --unwrap KEY      the state dict is under this top-level key (e.g. state_dict);\n"
            "                    default: 'model' if present, else the top level\n"
            "  --strip-prefix P  remove P from the front of every key (e.g. 'module.')\n\n"
            "Exit status: 0, or 2 with one line 'sambench inspect: FILE: problem' for bad input.\n");
}

static void json_str(FILE *o, const char *s)
{
    fputc('"', o);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(o, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(o, "\\u%04x", *p);
        else
            fputc(*p, o);
    }
    fputc('"', o);
}

static void json_shape(FILE *o, int ndim, const int64_t *shape)
{
    fputc('[', o);
    for (int d = 0; d < ndim; d++)
        fprintf(o, d ? ", %" PRId64 : "%" PRId64, shape[d]);
    fputc(']', o);
}

static void text_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, d ? ", %" PRId64 : "%" PRId64, shape[d]);
    if (k < cap)
        snprintf(buf + k, cap - k, "]");
}

static const char *thousands(int64_t v, char *buf)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%" PRId64, v);
    size_t n = strlen(tmp), j = 0;
    for (size_t i = 0; i < n; i++) {
        buf[j++] = tmp[i];
        if ((n - i - 1) % 3 == 0 && i + 1 < n && tmp[i] != '-')
            buf[j++] = ',';
    }
    buf[j] = '\0';
    return buf;
}

static int inspect_bank(const char *path, int json, const char *sha, uint64_t fsize)
{
    sb_error err;
    sb_bank *b;
    if (sb_bank_inspect(&b, path, &err))
        return sb_report_error("inspect", &err);
    float lo = b->iou[0], hi = b->iou[0];
    for (int64_t i = 1; i < b->n; i++) {
        lo = b->iou[i] < lo ? b->iou[i] : lo;
        hi = b->iou[i] > hi ? b->iou[i] : hi;
    }
    int64_t mshape[4] = {1, b->C, b->H, b->W};
    int64_t mem_n = b->C * b->H * b->W;
    struct {
        const char *name;
        int dtype, ndim;
        const int64_t *shape;
        int64_t n;
    } slots[4] = {{"maskmem_features", b->mem_dtype, 4, mshape, mem_n},
                  {"maskmem_pos_enc", b->pos_dtype, 4, mshape, mem_n},
                  {"iou", b->iou_dtype, 0, NULL, 1},
                  {"backbone_features", b->feat_dtype, 1, &b->feat_len, b->feat_len}};
    uint64_t resident = 0;
    int64_t params = 0;
    for (int k = 0; k < 4; k++) {
        resident += (uint64_t)slots[k].n * (uint64_t)(k == 2 ? 4 : (slots[k].dtype == SB_DT_BF16 ? 2 : 4));
        params += slots[k].n;
    }
    resident *= (uint64_t)b->n;
    params *= b->n;
    if (json) {
        printf("{\"file\": ");
        json_str(stdout, path);
        printf(", \"kind\": \"memory bank\", \"format\": \"pickle\", \"sha256\": \"%s\", \"file_bytes\": %" PRIu64
               ",\n \"tensors\": [",
               sha, fsize);
        for (int k = 0; k < 4; k++) {
            printf("%s\n  {\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": ", k ? "," : "", slots[k].name,
                   sb_dtype_name(slots[k].dtype));
            json_shape(stdout, slots[k].ndim, slots[k].shape);
            printf(", \"bytes\": %" PRId64 "}", slots[k].n * (slots[k].dtype == SB_DT_BF16 ? 2 : 4));
        }
        printf("],\n \"entries\": %" PRId64 ", \"parameters\": %" PRId64 ", \"iou_min\": %.9g, \"iou_max\": %.9g, "
               "\"location\": ",
               b->n, params, lo, hi);
        json_str(stdout, b->location);
        printf(", \"resident_bytes\": %" PRIu64 "}\n", resident);
    } else {
        char t[64];
        printf("file:       %s\nkind:       memory bank (pickle, tensors pickled from '%s')\nsha256:     %s\n", path,
               b->location, sha);
        printf("entries:    %" PRId64 "\nparameters: %s\n", b->n, thousands(params, t));
        printf("iou range:  [%.6g, %.6g]\n", lo, hi);
        printf("resident:   %.1f MiB when loaded (bf16 slots kept as bf16)\n", resident / 1048576.0);
        printf("per entry:\n");
        for (int k = 0; k < 4; k++) {
            char s[128];
            text_shape(s, sizeof s, slots[k].ndim, slots[k].shape);
            printf("  %-18s %-9s %s\n", slots[k].name, sb_dtype_name(slots[k].dtype), s);
        }
    }
    sb_bank_free(b);
    return SB_EXIT_OK;
}

/* --format: 1 for json, 0 for text */
static int parse_format(const char *v, void *dst)
{
    if (strcmp(v, "json") && strcmp(v, "text"))
        return -1;
    *(int *)dst = strcmp(v, "json") == 0;
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    int json = 0, structure = 0;
    const char *config = NULL, *pv[1];
    sb_weights_opts wo = {0};
    sb_opt_list files = {pv, 0, 1};
    const sb_opt opts[] = {
        {"--format", SB_OPT_FN, &json, 0, 0, "text or json", parse_format},
        {"--variant", SB_OPT_STR, &wo.variant, 0, 0, NULL, NULL},
        {"--structure", SB_OPT_FLAG, &structure, 0, 0, NULL, NULL},
        {"--config", SB_OPT_STR, &config, 0, 0, NULL, NULL},
        {"--allow-missing", SB_OPT_FLAG, &wo.allow_missing, 0, 0, NULL, NULL},
        {"--unwrap", SB_OPT_STR, &wo.unwrap, 0, 0, NULL, NULL},
        {"--strip-prefix", SB_OPT_STR, &wo.strip_prefix, 0, 0, NULL, NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int prc = sb_opts_parse("inspect", argc, argv, opts, &files, usage);
    if (prc)
        return prc == 1 ? SB_EXIT_OK : prc;
    if (files.n != 1) {
        fprintf(stderr, "sambench inspect: expected one FILE\n");
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    if (wo.variant && !sb_variant_known(wo.variant)) {
        fprintf(stderr, "sambench inspect: unknown variant '%s' (known: %s)\n", wo.variant, sb_variant_names());
        return SB_EXIT_USAGE;
    }
    if ((structure || wo.allow_missing || config) && !wo.variant) {
        fprintf(stderr, "sambench inspect: --structure, --config and --allow-missing need --variant\n");
        return SB_EXIT_USAGE;
    }
    if (config && (structure || wo.allow_missing)) {
        fprintf(stderr, "sambench inspect: --config validates exactly: not with --structure or --allow-missing\n");
        return SB_EXIT_USAGE;
    }
    if (structure && wo.allow_missing) {
        fprintf(stderr, "sambench inspect: --allow-missing needs the full table (not --structure)\n");
        return SB_EXIT_USAGE;
    }
    const char *path = pv[0];
    sb_error err;
    int fmt;
    if (sb_file_format(path, &fmt, &err))
        return sb_report_error("inspect", &err);
    char sha[65];
    if (sb_sha256_file(path, sha, &err))
        return sb_report_error("inspect", &err);
    struct stat st;
    uint64_t fsize = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (fmt == SB_FMT_PICKLE)
        return inspect_bank(path, json, sha, fsize);

    const char *variant = wo.variant;
    if (structure || config)
        wo.variant = NULL; /* validated below */
    sb_weights *w;
    if (sb_weights_load_ex(&w, path, &wo, &err))
        return sb_report_error("inspect", &err);
    if ((structure && sb_weights_validate(w, variant, SB_VALIDATE_STRUCTURE, &err)) ||
        (config && sb_weights_validate_config(w, variant, config, &err))) {
        sb_weights_free(w);
        return sb_report_error("inspect", &err);
    }
    const char *init = sb_weights_initialised(w);
    if (init[0]) {
        int cnt = 0;
        for (const char *p = init; *p; p++)
            cnt += *p == '\n';
        fprintf(stderr, "sambench inspect: warning: %s: %d missing keys initialised with random values:\n%s", path,
                cnt, init);
    }
    const char *kind = fmt == SB_FMT_H5 ? "sambench-h5" : "checkpoint";
    char h5fmt[512] = "", h5src[512] = "", h5sha[512] = "";
    if (fmt == SB_FMT_H5)
        sb_weights_h5_attrs(path, h5fmt, h5src, h5sha, sizeof h5src);
    size_t n = sb_weights_count(w);
    uint64_t total_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        sb_tensor_info t;
        sb_weights_info(w, i, &t);
        total_bytes += t.file_bytes;
    }
    if (json) {
        printf("{\"file\": ");
        json_str(stdout, path);
        printf(", \"kind\": \"%s\", \"format\": \"%s\", \"sha256\": \"%s\", \"file_bytes\": %" PRIu64 ",", kind,
               sb_file_format_name(fmt), sha, fsize);
        if (fmt == SB_FMT_H5) {
            printf(" \"source\": ");
            json_str(stdout, h5src);
            printf(", \"source_sha256\": ");
            json_str(stdout, h5sha);
            printf(",");
        }
        if (variant)
            printf(" \"variant\": \"%s\", \"validation\": \"%s\",", variant,
                   structure ? "structure" : config ? "config" : "full");
        printf("\n \"tensors\": [");
        for (size_t i = 0; i < n; i++) {
            sb_tensor_info t;
            sb_weights_info(w, i, &t);
            printf("%s\n  {\"name\": ", i ? "," : "");
            json_str(stdout, t.name);
            printf(", \"dtype\": \"%s\", \"shape\": ", sb_dtype_name(t.dtype));
            json_shape(stdout, t.ndim, t.shape);
            printf(", \"bytes\": %" PRIu64 "}", t.file_bytes);
        }
        printf("],\n \"entries\": %zu, \"parameters\": %" PRId64 ", \"tensor_bytes\": %" PRIu64 "}\n", n,
               sb_weights_parameters(w), total_bytes);
    } else {
        char t1[64];
        printf("file:       %s\nkind:       %s (%s)\nsha256:     %s\n", path, kind, sb_file_format_name(fmt), sha);
        if (fmt == SB_FMT_H5)
            printf("source:     %s (sha256 %s)\n", h5src, h5sha);
        if (variant)
            printf("validated:  %s (%s)\n", variant,
                   structure ? "structure of the table" : config ? "exact, keys and shapes of --config" : "full table");
        printf("tensors:    %zu\nparameters: %s\nbytes:      %s\n", n, thousands(sb_weights_parameters(w), t1),
               thousands((int64_t)total_bytes, t1 + 32));
        for (size_t i = 0; i < n; i++) {
            sb_tensor_info t;
            sb_weights_info(w, i, &t);
            char s[160];
            text_shape(s, sizeof s, t.ndim, t.shape);
            printf("  %-70s %-9s %-22s %" PRIu64 "\n", t.name, sb_dtype_name(t.dtype), s, t.file_bytes);
        }
    }
    sb_weights_free(w);
    return SB_EXIT_OK;
}
