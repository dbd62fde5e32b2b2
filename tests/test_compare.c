/* sambench compare (the release gate) on planted regressions and identical runs. */
#include "util_test.h"
#include "../pipeline/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Writes DIR/results.h5 with tasks T1 (12 cases) and T2 (12 cases); each case
 * one slice with Dice 2tp/(2tp+fp+fn) = 2tp/(2tp + fp). drop1: tp lowered on T1
 * to drop Dice; fail_case: case index of T2 marked failed (-1: none);
 * skip_case: case of T2 left out (-1: none). */
static void write_run(const char *dir, int drop1, int fail_case, int skip_case)
{
    mkdir(dir, 0775);
    sb_recs recs = {0};
    for (int t = 0; t < 2; t++)
        for (int c = 0; c < 12; c++) {
            if (t == 1 && c == skip_case)
                continue;
            for (int slice = -1; slice <= 0; slice++) {
                sb_rec *r = sb_recs_push(&recs);
                snprintf(r->dataset, sizeof r->dataset, "%s", t ? "T2_MR_2" : "T1_CT_1");
                snprintf(r->task, sizeof r->task, "%s", t ? "T2" : "T1");
                snprintf(r->modality, sizeof r->modality, "%s", t ? "MR" : "CT");
                snprintf(r->case_id, sizeof r->case_id, "case%02d", c);
                r->slice = slice;
                r->batch = -1;
                r->height = r->width = 16;
                r->nslices = 1;
                r->tp = 80 + c - (t == 0 && slice == 0 ? drop1 * (1 + c % 3) : 0);
                r->fp = 20;
                r->fn = 0;
                r->gt = r->tp;
                r->pred = r->tp + r->fp;
                r->surf_gt = r->surf_pred = r->surf_gt_in = r->surf_pred_in = NAN;
                if (t == 1 && c == fail_case && slice < 0) {
                    r->status = SB_REC_FAILED;
                    snprintf(r->reason, sizeof r->reason, "planted failure");
                }
            }
        }
    sb_recs_sort(&recs);
    sb_prov p;
    memset(&p, 0, sizeof p);
    snprintf(p.model, sizeof p.model, "m%d", drop1);
    snprintf(p.protocol, sizeof p.protocol, "volume");
    char path[1200];
    snprintf(path, sizeof path, "%s/results.h5", dir);
    sb_error err;
    assert_sb_ok(err, sb_results_write(path, &recs, NULL, &p, &err));
    sb_recs_free(&recs);
}

static void test_results_roundtrip(void **state)
{
    (void)state;
    const char *d = temp_path("cmp_rt");
    write_run(d, 0, 3, -1);
    char path[1200];
    snprintf(path, sizeof path, "%s/results.h5", d);
    sb_recs r;
    sb_batches b;
    sb_prov p;
    sb_error err;
    assert_sb_ok(err, sb_results_read(path, &r, &b, &p, &err));
    assert_int_equal(r.n, 48);
    assert_string_equal(p.model, "m0");
    assert_string_equal(r.v[0].dataset, "T1_CT_1");
    assert_int_equal(r.v[0].slice, -1);
    assert_int_equal(r.v[1].tp, 80);
    assert_true(isnan(r.v[1].surf_gt));
    int failed = 0;
    for (size_t i = 0; i < r.n; i++)
        if (r.v[i].status == SB_REC_FAILED) {
            failed++;
            assert_string_equal(r.v[i].reason, "planted failure");
        }
    assert_int_equal(failed, 1);
    sb_recs_free(&r);
    sb_batches_free(&b);
    /* not a results file */
    FILE *f = fopen(path, "wb");
    fputs("garbage", f);
    fclose(f);
    assert_int_equal(sb_results_read(path, &r, &b, &p, &err), SB_EIO);
    assert_non_null(strstr(err.msg, path));
}

static void test_identical_runs_pass(void **state)
{
    (void)state;
    const char *a = temp_path("cmp_a");
    write_run(a, 0, -1, -1);
    char *o = NULL;
    assert_int_equal(run_sambench(&o, "compare %s %s", a, a), 0);
    assert_non_null(strstr(o, "| T1 | CT | T1_CT_1 | 12 |"));
    assert_non_null(strstr(o, "no regression (exit 0)"));
    free(o);
}

static void test_planted_regression_fails(void **state)
{
    (void)state;
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s", temp_path("cmp_base"));
    snprintf(b, sizeof b, "%s", temp_path("cmp_cand"));
    write_run(a, 0, -1, -1);
    write_run(b, 20, -1, -1); /* T1 Dice drops by about 0.07 on every case */
    char *o = NULL;
    assert_int_equal(run_sambench(&o, "compare %s %s --max-drop 0.01", a, b), 1);
    assert_non_null(strstr(o, "**REGRESSION**"));
    /* T2 unchanged: diff 0, p = 1 */
    assert_non_null(strstr(o, "| T2 | MR | T2_MR_2 | 12 | "));
    assert_non_null(strstr(o, "+0.0000 | [+0.0000, +0.0000] | 1 | ok |"));
    free(o);
    char md[1200];
    snprintf(md, sizeof md, "%s/compare.md", b);
    FILE *f = fopen(md, "r");
    assert_non_null(f);
    fclose(f);
    /* the same drop is tolerated with a larger --max-drop */
    assert_int_equal(run_sambench(&o, "compare %s %s --max-drop 0.2", a, b), 0);
    free(o);
    /* reversed: an improvement is not a regression */
    assert_int_equal(run_sambench(&o, "compare %s %s", b, a), 0);
    assert_non_null(strstr(o, "improved"));
    free(o);
}

static void test_new_failure_and_mismatch(void **state)
{
    (void)state;
    char a[1024], b[1024], c[1024];
    snprintf(a, sizeof a, "%s", temp_path("cmp_base2"));
    snprintf(b, sizeof b, "%s", temp_path("cmp_fail"));
    snprintf(c, sizeof c, "%s", temp_path("cmp_skip"));
    write_run(a, 0, -1, -1);
    write_run(b, 0, 5, -1);
    write_run(c, 0, -1, 7);
    char *o = NULL;
    assert_int_equal(run_sambench(&o, "compare %s %s", a, b), 1);
    assert_non_null(strstr(o, "candidate failed T2_MR_2 / case05"));
    free(o);
    /* the base failing and the candidate not is fine */
    assert_int_equal(run_sambench(&o, "compare %s %s", b, a), 0);
    free(o);
    /* a missing case is reported, not guessed; no regression by itself */
    assert_int_equal(run_sambench(&o, "compare %s %s", a, c), 0);
    assert_non_null(strstr(o, "only in base: T2_MR_2 / case07"));
    assert_non_null(strstr(o, "Cases only in base: 1; only in candidate: 0"));
    assert_non_null(strstr(o, "| T2 | MR | T2_MR_2 | 11 |"));
    free(o);
    assert_int_equal(run_sambench(&o, "compare %s %s --metric hd42", a, c), 2);
    free(o);
    assert_int_equal(run_sambench(&o, "compare %s", a), 2);
    free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_roundtrip),
        cmocka_unit_test(test_identical_runs_pass),
        cmocka_unit_test(test_planted_regression_fails),
        cmocka_unit_test(test_new_failure_and_mismatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
