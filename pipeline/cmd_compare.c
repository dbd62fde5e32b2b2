/* sambench compare BASE_RESULTS CAND_RESULTS [--metric dice] [--max-drop 0.01] [--alpha 0.05]
 * The release gate (pipeline/compare.c): exit 0 no regression, 1 regression, 2 bad input. */
#include "cli.h"
#include "run.h"

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

static int parse_alpha(const char *v, void *dst)
{
    double a;
    if (sb_parse_double(v, &a) || a <= 0 || a >= 1)
        return -1;
    *(double *)dst = a;
    return 0;
}

int cmd_compare(int argc, char **argv)
{
    const char *pos[2];
    sb_compare_opts o = {"dice", 0.01, 0.05, SB_EMPTY_NAN, 0, NULL};
    sb_opt_list folders = {pos, 0, 2};
    const sb_opt opts[] = {
        {"--metric", SB_OPT_STR, &o.metric, 0, 0, NULL, NULL},
        {"--max-drop", SB_OPT_DOUBLE, &o.max_drop, 0, HUGE_VAL, "a number >= 0", NULL},
        {"--alpha", SB_OPT_FN, &o.alpha, 0, 0, "a number in (0, 1)", parse_alpha},
        {"--empty-policy", SB_OPT_FN, &o.empty_policy, 0, 0, "nan, one or zero", sb_run_parse_empty_policy},
        {"--out", SB_OPT_STR, &o.out, 0, 0, NULL, NULL},
        {"--seed", SB_OPT_U64, &o.seed, 0, 0, "a non-negative integer", NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int prc = sb_opts_parse("compare", argc, argv, opts, &folders, compare_usage);
    if (prc)
        return prc == 1 ? SB_EXIT_OK : prc;
    const int np = folders.n;
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
