/*
 * sambench prepare --manifest M --out SHARD_DIR [--data-root DIR] [--datasets A,B,...]
 *
 * Converts the datasets of a manifest (MedBank PNG folders, MSD NIfTI) into
 * HDF5 shards, one file per dataset (format in pipeline/data_shard.c), and
 * writes SHARD_DIR/manifest.yaml so that the shards are self-describing.
 * Reading the shards (sb_data_open with shard_dir) gives the same volumes
 * as reading the raw layout. Bad cases are reported and skipped; exit
 * status 2 when no dataset at all could be read.
 */
#include "cli.h"
#include "data.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sambench prepare --manifest M --out SHARD_DIR [--data-root DIR] [--datasets A,B,...]\n\n"
            "Packs every dataset of the manifest into SHARD_DIR/<dataset>.h5: per case a chunked, compressed\n"
            "uint8 image stack (Z,H,W[,3]) and mask stack (Z,H,W) with spacing, task, modality, source paths\n"
            "and original slice names. Also writes SHARD_DIR/manifest.yaml. Cases that cannot be read are\n"
            "reported (file and reason) and skipped; the summary counts them.\n\n"
            "  --manifest M     dataset manifest (configs/datasets/*.yaml or one written by synth)\n"
            "  --out SHARD_DIR  output directory (created)\n"
            "  --data-root DIR  root the manifest's paths are relative to (default: the manifest's folder)\n"
            "  --datasets LIST  only these datasets (comma-separated names)\n");
}

static int in_list(const char *list, const char *name)
{
    if (!list)
        return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *q = strchr(p, ',');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0)
            return 1;
        p += len + (q ? 1 : 0);
    }
    return 0;
}

int cmd_prepare(int argc, char **argv)
{
    const char *manifest = NULL, *out = NULL, *root = NULL, *only = NULL;
    const sb_opt opts[] = {
        {"--manifest", SB_OPT_STR, &manifest, 0, 0, NULL, NULL},
        {"--out", SB_OPT_STR, &out, 0, 0, NULL, NULL},
        {"--data-root", SB_OPT_STR, &root, 0, 0, NULL, NULL},
        {"--datasets", SB_OPT_STR, &only, 0, 0, NULL, NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int prc = sb_opts_parse("prepare", argc, argv, opts, NULL, usage);
    if (prc)
        return prc == 1 ? SB_EXIT_OK : prc;
    if (!manifest || !out) {
        fprintf(stderr, "sambench prepare: --manifest and --out are required\n\n");
        usage(stderr);
        return SB_EXIT_USAGE;
    }
    sb_error err;
    sb_error_clear(&err);
    sb_manifest *m = NULL;
    if (sb_manifest_load(&m, manifest, &err) != SB_OK)
        return sb_report_error("prepare", &err);
    if (only) { /* keep the named datasets */
        int k = 0;
        for (int i = 0; i < m->n; i++)
            if (in_list(only, m->d[i].name))
                m->d[k++] = m->d[i];
        if (k == 0) {
            fprintf(stderr, "sambench prepare: --datasets names no dataset of %s\n", manifest);
            sb_manifest_free(m);
            return SB_EXIT_USAGE;
        }
        m->n = k;
    }
    char rootbuf[4096];
    if (!root) {
        snprintf(rootbuf, sizeof rootbuf, "%s", manifest);
        root = dirname(rootbuf);
    }
    char mk[4096];
    snprintf(mk, sizeof mk, "%s", out);
    for (char *q = mk + 1; *q; q++)
        if (*q == '/') { /* mkdir -p */
            *q = '\0';
            mkdir(mk, 0775);
            *q = '/';
        }
    if (mkdir(out, 0775) != 0 && errno != EEXIST) {
        fprintf(stderr, "sambench prepare: %s: cannot create directory: %s\n", out, strerror(errno));
        sb_manifest_free(m);
        return SB_EXIT_USAGE;
    }
    sb_data *d = NULL;
    if (sb_data_open_manifest(&d, m, root, NULL, 0, &err) != SB_OK) {
        sb_manifest_free(m);
        return sb_report_error("prepare", &err);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = SB_OK, written = 0;
    for (int i = 0; i < sb_data_ndatasets(d) && rc == SB_OK; i++) {
        const sb_dataset_spec *s = sb_data_dataset(d, i);
        if (sb_data_ncases(d, i) == 0)
            continue;
        char path[4096], tmp[4200];
        snprintf(path, sizeof path, "%s/%s.h5", out, s->name);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        sb_shard *sh = NULL;
        rc = sb_shard_create(&sh, tmp, s, sb_data_source_kind(d, i), &err);
        if (rc != SB_OK)
            break;
        int ncases = 0;
        long long nsl = 0;
        for (int c = 0; c < sb_data_ncases(d, i) && rc == SB_OK; c++) {
            sb_volume v;
            sb_error lerr;
            if (sb_data_load(d, i, c, &v, &lerr) != SB_OK)
                continue; /* recorded and logged by sb_data_load */
            rc = sb_shard_add(sh, &v, &err);
            ncases += rc == SB_OK;
            nsl += rc == SB_OK ? v.nslices : 0;
            sb_volume_free(&v);
        }
        int crc = sb_shard_close(sh, rc == SB_OK ? &err : NULL);
        if (rc == SB_OK)
            rc = crc;
        if (rc == SB_OK && rename(tmp, path) != 0)
            rc = sb_fail(&err, SB_EIO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        if (rc != SB_OK) {
            remove(tmp);
            break;
        }
        struct stat st;
        long long bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
        printf("prepare: %-32s %4d cases %6lld slices -> %s (%lld bytes)\n", s->name, ncases, nsl, path, bytes);
        written++;
    }
    if (rc == SB_OK) {
        char mpath[4096];
        snprintf(mpath, sizeof mpath, "%s/manifest.yaml", out);
        rc = sb_manifest_write(m, mpath, &err);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    sb_data_summary(d, stdout);
    for (int k = 0; k < sb_data_nproblems(d); k++) {
        const sb_data_problem *p = sb_data_problem_at(d, k);
        printf("  skipped %s%s%s: %s: %s\n", p->dataset, p->case_id[0] ? " / " : "", p->case_id, p->file, p->reason);
    }
    printf("prepare: %d shard files in %s (%.2f s)\n", written, out,
           (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    sb_data_free(d);
    sb_manifest_free(m);
    if (rc != SB_OK)
        return sb_report_error("prepare", &err);
    if (written == 0) {
        fprintf(stderr, "sambench prepare: no dataset of %s could be read (see the skipped list)\n", manifest);
        return SB_EXIT_USAGE;
    }
    return SB_EXIT_OK;
}
