/* sambench report RESULTS [RESULTS2 ...] [--format md,csv,tex,json] [--empty-policy ...] [--out DIR]
 * Re-renders the tables from RESULTS/results.h5 without re-running. One
 * folder: summary.{md,csv,tex,json} and per_case.csv into RESULTS (or --out).
 * Several folders (one per model): models.{md,...} with a column per model,
 * into --out (default: the current directory). */
#include "cli.h"
#include "run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void report_usage(FILE *f)
{
    fprintf(f, "usage: sambench report RESULTS [RESULTS2 ...] [--format md,csv,tex,json] [--empty-policy nan|one|zero]\n"
               "                      [--out DIR] [--seed N]\n\n"
               "Re-renders the tables of a finished run from RESULTS/results.h5: summary.md, summary.csv,\n"
               "summary.tex (booktabs), summary.json and per_case.csv. Several folders (one per model) give one\n"
               "table with a column per model: models.md/.csv/.tex/.json in --out (default: current directory).\n");
}

int cmd_report(int argc, char **argv)
{
    const char *dirs[256];
    int nd = 0;
    const char *out = NULL;
    sb_report_opts o = {SB_EMPTY_NAN, 1, 1, 1, 1, 0, 1000};
    int policy_set = 0, seed_set = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            report_usage(stdout);
            return SB_EXIT_OK;
        } else if (!strcmp(a, "--format") && v) {
            o.md = o.csv = o.tex = o.json = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                if (!strcmp(t, "md"))
                    o.md = 1;
                else if (!strcmp(t, "csv"))
                    o.csv = 1;
                else if (!strcmp(t, "tex"))
                    o.tex = 1;
                else if (!strcmp(t, "json"))
                    o.json = 1;
                else {
                    fprintf(stderr, "sambench report: --format: unknown format '%s' (md, csv, tex, json)\n", t);
                    return SB_EXIT_USAGE;
                }
            }
            i++;
        } else if (!strcmp(a, "--empty-policy") && v) {
            if (sb_run_parse_empty_policy(v, &o.empty_policy)) {
                fprintf(stderr, "sambench report: --empty-policy %s: expected nan, one or zero\n", v);
                return SB_EXIT_USAGE;
            }
            policy_set = 1;
            i++;
        } else if (!strcmp(a, "--out") && v) {
            out = v;
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            o.seed = strtoull(v, NULL, 10);
            seed_set = 1;
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "sambench report: unknown option or missing value '%s'\n", a);
            return SB_EXIT_USAGE;
        } else if (nd < 256) {
            dirs[nd++] = a;
        }
    }
    if (nd == 0) {
        report_usage(stderr);
        return SB_EXIT_USAGE;
    }
    sb_error err;
    sb_error_clear(&err);
    if (nd > 1) {
        if (sb_report_multi(dirs, nd, out ? out : ".", &o, &err) != SB_OK)
            return sb_report_error("report", &err);
        char p[4200];
        snprintf(p, sizeof p, "%s/models.md", out ? out : ".");
        FILE *f = fopen(p, "r");
        char line[4096];
        while (f && fgets(line, sizeof line, f))
            fputs(line, stdout);
        if (f)
            fclose(f);
        return SB_EXIT_OK;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/results.h5", dirs[0]);
    sb_recs recs;
    sb_batches b;
    sb_prov p;
    if (sb_results_read(path, &recs, &b, &p, &err) != SB_OK)
        return sb_report_error("report", &err);
    if (!policy_set)
        o.empty_policy = p.empty_policy;
    if (!seed_set)
        o.seed = (uint64_t)p.seed;
    const char *dir = out ? out : dirs[0];
    int rc = sb_mkdir_p(dir, &err);
    if (rc == SB_OK)
        rc = sb_report_write(dir, &recs, &b, &p, &o, &err);
    sb_recs_free(&recs);
    sb_batches_free(&b);
    if (rc != SB_OK)
        return sb_report_error("report", &err);
    if (o.md) {
        snprintf(path, sizeof path, "%s/summary.md", dir);
        FILE *f = fopen(path, "r");
        char line[4096];
        while (f && fgets(line, sizeof line, f))
            fputs(line, stdout);
        if (f)
            fclose(f);
    }
    return SB_EXIT_OK;
}
