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

static int parse_formats(const char *v, void *dst)
{
    sb_report_opts *o = dst;
    o->md = o->csv = o->tex = o->json = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!strcmp(t, "md"))
            o->md = 1;
        else if (!strcmp(t, "csv"))
            o->csv = 1;
        else if (!strcmp(t, "tex"))
            o->tex = 1;
        else if (!strcmp(t, "json"))
            o->json = 1;
        else
            return -1;
    }
    return o->md || o->csv || o->tex || o->json ? 0 : -1;
}

int cmd_report(int argc, char **argv)
{
    const char *dirs[256];
    const char *out = NULL;
    sb_report_opts o = {SB_EMPTY_NAN, 1, 1, 1, 1, 0, 1000};
    int policy_set = -1;
    sb_opt_u64_given seed = {0, 0};
    sb_opt_list folders = {dirs, 0, 256};
    const sb_opt opts[] = {
        {"--format", SB_OPT_FN, &o, 0, 0, "a comma-separated list of md, csv, tex, json", parse_formats},
        {"--empty-policy", SB_OPT_FN, &policy_set, 0, 0, "nan, one or zero", sb_run_parse_empty_policy},
        {"--out", SB_OPT_STR, &out, 0, 0, NULL, NULL},
        {"--seed", SB_OPT_FN, &seed, 0, 0, "a non-negative integer", sb_opt_parse_u64_given},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int prc = sb_opts_parse("report", argc, argv, opts, &folders, report_usage);
    if (prc)
        return prc == 1 ? SB_EXIT_OK : prc;
    const int nd = folders.n;
    o.seed = seed.v;
    if (policy_set >= 0)
        o.empty_policy = policy_set;
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
    /* the run's own policy and seed unless given here */
    o.empty_policy = policy_set >= 0 ? policy_set : p.empty_policy;
    if (!seed.given)
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
