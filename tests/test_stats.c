/* pipeline/stats.c and the reducer (pipeline/report.c) against hand-computed values. */
#include "util_test.h"
#include "../pipeline/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_summary_hand_values(void **state)
{
    (void)state;
    double x[] = {4, 1, NAN, 3, 2, NAN};
    sb_summary s;
    sb_summarize(x, 6, 0, 0, &s);
    assert_int_equal(s.n, 4);
    assert_int_equal(s.nan_count, 2);
    assert_true(s.mean == 2.5);
    /* sample std: sqrt(((1.5^2+1.5^2+.5^2+.5^2))/3) = sqrt(5/3) */
    assert_true(fabs(s.std - sqrt(5.0 / 3.0)) < 1e-15);
    assert_true(s.median == 2.5);
    /* numpy linear quantiles of 1,2,3,4: q1 = 1.75, q3 = 3.25 */
    assert_true(s.q1 == 1.75);
    assert_true(s.q3 == 3.25);
    assert_true(s.iqr == 1.5);
    assert_true(isnan(s.ci_lo)); /* no resamples asked */
    double one[] = {0.7};
    sb_summarize(one, 1, 100, 1, &s);
    assert_true(s.mean == 0.7 && s.std == 0 && s.ci_lo == 0.7 && s.ci_hi == 0.7);
    double none[] = {NAN};
    sb_summarize(none, 1, 100, 1, &s);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.nan_count, 1);
    assert_true(isnan(s.mean));
}

static void test_bootstrap_reproducible(void **state)
{
    (void)state;
    double x[50];
    for (int i = 0; i < 50; i++)
        x[i] = (i * 37 % 50) / 50.0;
    sb_summary a, b, c;
    sb_summarize(x, 50, 1000, 42, &a);
    sb_summarize(x, 50, 1000, 42, &b);
    sb_summarize(x, 50, 1000, 43, &c);
    assert_true(a.ci_lo == b.ci_lo && a.ci_hi == b.ci_hi);
    assert_true(a.ci_lo != c.ci_lo || a.ci_hi != c.ci_hi);
    /* the CI brackets the mean and has about the normal-theory width 2*1.96*sd/sqrt(n) */
    assert_true(a.ci_lo < a.mean && a.mean < a.ci_hi);
    double w = 2 * 1.96 * a.std / sqrt(50.0);
    assert_true(fabs((a.ci_hi - a.ci_lo) - w) < 0.25 * w);
}

static void test_wilcoxon(void **state)
{
    (void)state;
    /* all five differences positive: exact p = 2 / 2^5 */
    double d1[] = {0.1, 0.2, 0.3, 0.4, 0.5};
    assert_true(fabs(sb_wilcoxon_p(d1, 5) - 0.0625) < 1e-15);
    /* R- = 1 (rank of |-0.1|): P(R- <= 1) = 2/32 -> p = 0.125 */
    double d2[] = {-0.1, 0.2, 0.3, 0.4, 0.5};
    assert_true(fabs(sb_wilcoxon_p(d2, 5) - 0.125) < 1e-15);
    /* zeros are dropped */
    double d3[] = {0, 0.1, 0.2, 0.3, 0.4, 0.5, 0};
    assert_true(fabs(sb_wilcoxon_p(d3, 7) - 0.0625) < 1e-15);
    /* ties -> normal approximation: |d| = 1,1,2,2 ranks 1.5,1.5,3.5,3.5, signs + + + -:
     * mean 5, var = 4*5*9/24 - (6+6)/48 = 7.25, z = 1.5/sqrt(7.25) */
    double d4[] = {1, -1, 2, 2};
    /* signs: +1 (rank 1.5), -1 (1.5), +2 (3.5), +2 (3.5) -> R+ = 8.5 */
    double z = (8.5 - 5.0) / sqrt(7.25);
    assert_true(fabs(sb_wilcoxon_p(d4, 4) - erfc(z / sqrt(2.0))) < 1e-15);
    double d5[] = {0, 0};
    assert_true(sb_wilcoxon_p(d5, 2) == 1.0);
}

static sb_rec mk(const char *ds, const char *task, const char *mod, const char *c, int slice, int64_t tp,
                 int64_t fp, int64_t fn)
{
    sb_rec r;
    memset(&r, 0, sizeof r);
    snprintf(r.dataset, sizeof r.dataset, "%s", ds);
    snprintf(r.task, sizeof r.task, "%s", task);
    snprintf(r.modality, sizeof r.modality, "%s", mod);
    snprintf(r.case_id, sizeof r.case_id, "%s", c);
    r.slice = slice;
    r.batch = -1;
    r.height = r.width = 8;
    r.tp = tp;
    r.fp = fp;
    r.fn = fn;
    r.gt = tp + fn;
    r.pred = tp + fp;
    /* NSD = (1 + 1) / (2 + 2) = 0.5 when both masks are non-empty */
    r.surf_gt = r.surf_pred = 2;
    r.surf_gt_in = r.surf_pred_in = 1;
    if (slice < 0) /* 2-D data: no case-level surfaces */
        r.surf_gt = r.surf_pred = r.surf_gt_in = r.surf_pred_in = NAN;
    return r;
}

static void test_reducer_macro_pooled_nan(void **state)
{
    (void)state;
    /* task A (CT): slices with Dice 1, 0.5 and one both-empty slice; task B (CT): Dice 0.25;
     * task C (MR): Dice 0.6 */
    sb_recs recs = {0};
    *sb_recs_push(&recs) = mk("A_CT_1", "A", "CT", "c1", -1, 0, 0, 0);
    *sb_recs_push(&recs) = mk("A_CT_1", "A", "CT", "c1", 0, 1, 0, 0);
    *sb_recs_push(&recs) = mk("A_CT_1", "A", "CT", "c1", 1, 1, 2, 0);
    *sb_recs_push(&recs) = mk("A_CT_1", "A", "CT", "c1", 2, 0, 0, 0);
    *sb_recs_push(&recs) = mk("B_CT_2", "B", "CT", "c1", -1, 0, 0, 0);
    *sb_recs_push(&recs) = mk("B_CT_2", "B", "CT", "c1", 0, 1, 6, 0);
    *sb_recs_push(&recs) = mk("C_MR_3", "C", "MR", "c1", -1, 0, 0, 0);
    *sb_recs_push(&recs) = mk("C_MR_3", "C", "MR", "c1", 0, 3, 4, 0);
    sb_recs_sort(&recs);
    sb_prov p;
    memset(&p, 0, sizeof p);
    snprintf(p.model, sizeof p.model, "box");
    snprintf(p.protocol, sizeof p.protocol, "volume");
    sb_report_opts o = {SB_EMPTY_NAN, 1, 1, 1, 1, 0, 1000};
    const char *dir = temp_path("reducer");
    char cmd[1200], path[1200];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    assert_int_equal(system(cmd), 0);
    sb_error err;
    assert_sb_ok(err, sb_report_write(dir, &recs, NULL, &p, &o, &err));
    snprintf(path, sizeof path, "%s/summary.json", dir);
    char *s = slurp(path);
    assert_non_null(s);
    /* A: mean of {1, 0.5} = 0.75, NaN count 1; dice_pooled = 2*2/(2*2+2) = 2/3 */
    assert_non_null(strstr(s, "\"dataset\": \"A_CT_1\", \"task\": \"A\", \"modality\": \"CT\", \"slices\": 3"));
    assert_non_null(strstr(s, "\"dice\": {\"n\": 2, \"mean\": 0.75,"));
    assert_non_null(strstr(s, "\"nan\": 1}"));
    assert_non_null(strstr(s, "\"dice_pooled\": 0.66666666666666663"));
    /* CT: macro (0.75 + 0.25) / 2 = 0.5; pooled (1 + 0.5 + 0.25) / 3 */
    assert_non_null(strstr(s, "{\"modality\": \"CT\", \"tasks\": 2, \"slices\": 4, \"dice_macro\": 0.5, "
                              "\"dice_pooled\": 0.58333333333333337"));
    /* overall: macro (0.75 + 0.25 + 0.6) / 3, pooled (1 + .5 + .25 + .6) / 4 */
    char want[256];
    snprintf(want, sizeof want, "\"dice_macro\": %.17g, \"dice_pooled\": %.17g", (0.75 + 0.25 + 0.6) / 3,
             (1 + 0.5 + 0.25 + 0.6) / 4);
    assert_non_null(strstr(s, want));
    /* NSD: 0.5 on every non-empty slice */
    assert_non_null(strstr(s, "\"nsd_macro\": 0.5, \"nsd_pooled\": 0.5}"));
    free(s);
    /* policy "one": the both-empty slice counts as 1 -> A mean (1 + .5 + 1) / 3 */
    o.empty_policy = SB_EMPTY_ONE;
    assert_sb_ok(err, sb_report_write(dir, &recs, NULL, &p, &o, &err));
    s = slurp(path);
    snprintf(want, sizeof want, "\"dice\": {\"n\": 3, \"mean\": %.17g,", 2.5 / 3);
    assert_non_null(strstr(s, want));
    free(s);
    /* policy "zero" */
    o.empty_policy = SB_EMPTY_ZERO;
    assert_sb_ok(err, sb_report_write(dir, &recs, NULL, &p, &o, &err));
    s = slurp(path);
    assert_non_null(strstr(s, "\"dice\": {\"n\": 3, \"mean\": 0.5,"));
    free(s);
    /* the bootstrap CI is reproducible: same file twice */
    o.empty_policy = SB_EMPTY_NAN;
    assert_sb_ok(err, sb_report_write(dir, &recs, NULL, &p, &o, &err));
    char *a = slurp(path);
    assert_sb_ok(err, sb_report_write(dir, &recs, NULL, &p, &o, &err));
    char *b = slurp(path);
    assert_string_equal(a, b);
    free(a);
    free(b);
    sb_recs_free(&recs);
    /* a 3-D task (case records with surfaces from the true spacing): statistics over cases */
    sb_recs r3 = {0};
    for (int c = 0; c < 2; c++) {
        char cid[8];
        snprintf(cid, sizeof cid, "v%d", c);
        sb_rec *x = sb_recs_push(&r3);
        *x = mk("V_CT_9", "V", "CT", cid, -1, c ? 1 : 3, 1, 0); /* Dice 6/7 and 2/3 */
        x->surf_gt = x->surf_pred = 4;
        x->surf_gt_in = x->surf_pred_in = c ? 1 : 3; /* NSD 0.75 and 0.25 */
        for (int k = 0; k < 3; k++)
            *sb_recs_push(&r3) = mk("V_CT_9", "V", "CT", cid, k, 1, 0, 0);
    }
    sb_recs_sort(&r3);
    assert_sb_ok(err, sb_report_write(dir, &r3, NULL, &p, &o, &err));
    s = slurp(path);
    snprintf(want, sizeof want, "\"slices\": 6, \"cases\": 2, \"failed\": 0, \"dice\": {\"n\": 2, \"mean\": %.17g,",
             (6.0 / 7 + 2.0 / 3) / 2);
    assert_non_null(strstr(s, want));
    assert_non_null(strstr(s, "\"nsd\": {\"n\": 2, \"mean\": 0.5,"));
    free(s);
    sb_recs_free(&r3);
}

static void test_published_lookup(void **state)
{
    (void)state;
    assert_true(sb_published_dice("Liver", "CT", "samed2", 0) == .8332);
    assert_true(sb_published_dice("Liver", "MR", "medsam", 0) == .8773);
    assert_true(sb_published_dice("IVC", "MRI", "sam2", 0) == .3014);
    assert_true(sb_published_dice("Thyroid", "US", "sam", 1) == .8655);
    assert_true(isnan(sb_published_dice("Liver", "CT", "box", 0)));
    assert_true(isnan(sb_published_dice("Nothing", "CT", "samed2", 0)));
}

static void test_schedule_lpt(void **state)
{
    (void)state;
    double cost[] = {1, 5, 3, 5, 2};
    int order[5];
    sb_sched_order(cost, 5, order);
    int want[] = {1, 3, 2, 4, 0}; /* descending, ties by index */
    for (int i = 0; i < 5; i++)
        assert_int_equal(order[i], want[i]);
    /* 2 ranks: 5 | 5 ; 3 -> r0 (8), 2 -> r1 (7), 1 -> r1 (8): makespan 8 = total/2 */
    assert_true(sb_sched_makespan(cost, order, 5, 2, 0) == 8.0);
    assert_true(sb_sched_makespan(cost, order, 5, 1, 0) == 16.0);
    assert_true(sb_sched_makespan(cost, order, 5, 10, 0) == 5.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_summary_hand_values), cmocka_unit_test(test_bootstrap_reproducible),
        cmocka_unit_test(test_wilcoxon),           cmocka_unit_test(test_reducer_macro_pooled_nan),
        cmocka_unit_test(test_published_lookup),   cmocka_unit_test(test_schedule_lpt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
