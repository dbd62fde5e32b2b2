/* sambench compare BASE_RESULTS CAND_RESULTS [--metric dice] [--max-drop 0.01] [--alpha 0.05]
 * The release gate (pipeline/compare.c): exit 0 no regression, 1 regression, 2 bad input. */
#include "cli.h"
#include "run.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void compare_usage(FILE *f)
{
    fprintf(f, "usage: sambench compare BASE_RESULTS CAND_RESULTS [--metric dice|nsd|iou] [--max-drop 0.01]\n"
               "                       [--alpha 0.05] [--empty-policy nan|one|zero] [--out FILE] [--seed N]\n\n"
               "Pairs cases by (dataset, case); per task: mean difference, paired bootstrap CI (1 - alpha),\n"
               "Wilcoxon signed-rank p. Exit 1 when a task's mean drops by more than --max-drop with the CI\n"
               "below zero, or when the candidate failed cases the base did not. Markdown report: --out\n"
               "(default CAND_RESULTS/compare.md).\n");
}

static int num(const char *s, double *v)
{
    char *e = NULL;
    errno = 0;
    *v = strtod(s, &e);
    return errno || !e || *e || e == s || !isfinite(*v) ? -1 : 0;
}

int cmd_compare(int argc, char **argv)
{
    const char *pos[2];
    int np = 0;
    sb_compare_opts o = {"dice", 0.01, 0.05, SB_EMPTY_NAN, 0, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            compare_usage(stdout);
            return SB_EXIT_OK;
        } else if (!strcmp(a, "--metric") && v) {
            o.metric = v;
            i++;
        } else if (!strcmp(a, "--max-drop") && v) {
            if (num(v, &o.max_drop) || o.max_drop < 0) {
                fprintf(stderr, "sambench compare: --max-drop %s: expected a number >= 0\n", v);
                return SB_EXIT_USAGE;
            }
            i++;
        } else if (!strcmp(a, "--alpha") && v) {
            if (num(v, &o.alpha) || o.alpha <= 0 || o.alpha >= 1) {
                fprintf(stderr, "sambench compare: --alpha %s: expected a number in (0, 1)\n", v);
                return SB_EXIT_USAGE;
            }
            i++;
        } else if (!strcmp(a, "--empty-policy") && v) {
            if (sb_run_parse_empty_policy(v, &o.empty_policy)) {
                fprintf(stderr, "sambench compare: --empty-policy %s: expected nan, one or zero\n", v);
                return SB_EXIT_USAGE;
            }
            i++;
        } else if (!strcmp(a, "--out") && v) {
            o.out = v;
            i++;
        } else if (!strcmp(a, "--seed") && v) {
            o.seed = strtoull(v, NULL, 10);
            i++;
        } else if (a[0] == '-' || np == 2) {
            fprintf(stderr, "sambench compare: unexpected argument '%s'\n", a);
            return SB_EXIT_USAGE;
        } else {
            pos[np++] = a;
        }
    }
    if (np != 2) {
        compare_usage(stderr);
        return SB_EXIT_USAGE;
    }
    sb_error err;
    sb_error_clear(&err);
    int r = sb_compare(pos[0], pos[1], &o, &err);
    if (r < 0)
        return sb_report_error("compare", &err);
    return r ? SB_EXIT_FAIL : SB_EXIT_OK;
}
