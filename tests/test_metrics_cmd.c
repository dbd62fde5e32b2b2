/*
 * `sambench metrics` end to end: JSON keys and values (anchor 2-D against
 * DeepMind's), NaN -> null and infinity -> "inf", text format, --label,
 * --spacing, policies, PNG input, and the errors (exit 2, one line naming
 * the file).
 */
#include "util_test.h"

#include "../pipeline/nifti.h"
#include "../pipeline/png_io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Value of "key": in a JSON text; NAN for null, INFINITY for "inf". Fails if absent. */
static double json_value(const char *js, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\":", key);
    const char *p = strstr(js, k);
    if (!p)
        fail_msg("no key %s in output:\n%s", key, js);
    p += strlen(k);
    while (*p == ' ')
        p++;
    if (strncmp(p, "null", 4) == 0)
        return NAN;
    if (strncmp(p, "\"inf\"", 5) == 0)
        return INFINITY;
    char *e;
    double v = strtod(p, &e);
    if (e == p)
        fail_msg("key %s: not a number in:\n%s", key, js);
    return v;
}

static const char *write_mask(const char *name, const uint8_t *m, int ndim, const int64_t *dims, const double *sp,
                              int datatype)
{
    sb_nifti img;
    sb_error err;
    assert_sb_ok(err, sb_nifti_init(&img, datatype, ndim, dims, sp, &err));
    for (int64_t i = 0; i < img.nvox; i++) {
        if (datatype == SB_NIFTI_UINT8)
            ((uint8_t *)img.data)[i] = m[i];
        else
            ((int16_t *)img.data)[i] = m[i];
    }
    const char *path = temp_path(name);
    assert_sb_ok(err, sb_nifti_write(&img, path, &err));
    sb_nifti_free(&img);
    return path;
}

static void test_anchor2d_json(void **state)
{
    (void)state;
    char *out = NULL;
    int rc = run_sambench(&out, "metrics --gt %s --pred %s --format json",
                          fixture_path("metrics_anchor/anchor2d_gt.nii.gz"),
                          fixture_path("metrics_anchor/anchor2d_pred.nii.gz"));
    assert_int_equal(rc, 0);
    static const char *keys[] = {"dice", "iou", "nsd", "hd95", "hd100", "assd", "tp", "fp", "fn",
                                 "gt_voxels", "pred_voxels", "gt_surface", "pred_surface"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        (void)json_value(out, keys[i]);
    /* DeepMind's values (metrics_anchor/anchor2d.json), default tolerance 2 */
    assert_true(fabs(json_value(out, "dice") - 0.9801788679615612) < 1e-12);
    assert_true(fabs(json_value(out, "nsd") - 0.7790713826049116) < 1e-12);
    assert_true(fabs(json_value(out, "hd95") - 193.7937047481161) < 1e-9);
    assert_true(fabs(json_value(out, "hd100") - 220.7306050369998) < 1e-9);
    assert_true(fabs(json_value(out, "assd") - 12.392640853725553) < 1e-9);
    assert_true(fabs(json_value(out, "gt_surface") - 1704.0428560496189) < 1e-9);
    assert_true(json_value(out, "gt_voxels") == 190443);
    assert_true(json_value(out, "tp") + json_value(out, "fn") == 190443);
    free(out);
    rc = run_sambench(&out, "metrics --gt %s --pred %s --tolerance 1 --format text",
                      fixture_path("metrics_anchor/anchor2d_gt.nii.gz"),
                      fixture_path("metrics_anchor/anchor2d_pred.nii.gz"));
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "nsd            0.5239650716"));
    free(out);
}

static void test_empty_and_policies(void **state)
{
    (void)state;
    int64_t dims[3] = {6, 5, 4};
    uint8_t z[120] = {0}, one[120] = {0};
    one[2 * 20 + 2 * 4 + 1] = 1;
    double sp[3] = {1, 1, 2};
    const char *pz = write_mask("zero.nii.gz", z, 3, dims, sp, SB_NIFTI_UINT8);
    const char *po = write_mask("one.nii", one, 3, dims, sp, SB_NIFTI_UINT8);
    char *out = NULL;
    assert_int_equal(run_sambench(&out, "metrics --gt %s --pred %s", pz, pz), 0);
    assert_true(isnan(json_value(out, "dice")) && isnan(json_value(out, "nsd")) && isnan(json_value(out, "hd95")));
    assert_non_null(strstr(out, "\"dice\": null"));
    free(out);
    assert_int_equal(run_sambench(&out, "metrics --gt %s --pred %s --empty-policy one", pz, pz), 0);
    assert_true(json_value(out, "dice") == 1 && json_value(out, "nsd") == 1 && json_value(out, "hd95") == 0);
    free(out);
    assert_int_equal(run_sambench(&out, "metrics --gt %s --pred %s", po, pz), 0);
    assert_true(json_value(out, "dice") == 0 && json_value(out, "nsd") == 0);
    assert_non_null(strstr(out, "\"hd95\": \"inf\""));
    assert_true(isinf(json_value(out, "hd100")));
    free(out);
    /* single voxel vs itself: perfect; spacing override */
    assert_int_equal(run_sambench(&out, "metrics --gt %s --pred %s --spacing 1,2,3", po, po), 0);
    assert_true(json_value(out, "dice") == 1 && json_value(out, "nsd") == 1 && json_value(out, "hd100") == 0);
    assert_non_null(strstr(out, "\"spacing\": [1, 2, 3]"));
    free(out);
    assert_int_equal(run_sambench(&out, "metrics --gt %s --pred %s --empty-policy sometimes", pz, pz), 2);
    assert_non_null(strstr(out, "sometimes"));
    free(out);
}

static void test_labels_and_errors(void **state)
{
    (void)state;
    int64_t dims[2] = {8, 9};
    uint8_t m[72] = {0}, mb[72] = {0};
    for (int i = 2; i < 5; i++)
        for (int j = 2; j < 6; j++)
            m[i * 9 + j] = 1;
    m[7 * 9 + 8] = 2; /* a second label */
    for (int i = 0; i < 72; i++)
        mb[i] = m[i] == 1 ? 255 : 0;
    const char *pl = write_mask("labels.nii", m, 2, dims, NULL, SB_NIFTI_INT16);
    const char *pb = write_mask("binary255.nii", mb, 2, dims, NULL, SB_NIFTI_UINT8);
    char *out = NULL;
    int rc = run_sambench(&out, "metrics --gt %s --pred %s", pl, pb);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, pl));
    assert_non_null(strstr(out, "non-binary"));
    assert_non_null(strstr(out, "--label"));
    free(out);
    /* label 1 of the label map vs the 0/255 mask (one non-zero value: binary) -> identical */
    rc = run_sambench(&out, "metrics --gt %s --pred %s --label 1", pl, pl);
    assert_int_equal(rc, 0);
    free(out);
    rc = run_sambench(&out, "metrics --gt %s --pred %s", pb, pb);
    assert_int_equal(rc, 0);
    assert_true(json_value(out, "gt_voxels") == 12);
    free(out);
    rc = run_sambench(&out, "metrics --gt %s --pred %s --label 2", pl, pl);
    assert_int_equal(rc, 0);
    assert_true(json_value(out, "gt_voxels") == 1);
    free(out);
    /* shape mismatch */
    int64_t d2[2] = {9, 8};
    const char *pt = write_mask("transposed.nii", mb, 2, d2, NULL, SB_NIFTI_UINT8);
    rc = run_sambench(&out, "metrics --gt %s --pred %s", pb, pt);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, "does not match"));
    assert_non_null(strstr(out, pt));
    free(out);
    /* wrong spacing count, bad tolerance, unknown format, missing args */
    assert_int_equal(run_sambench(&out, "metrics --gt %s --pred %s --spacing 1,2,3", pb, pb), 2);
    free(out);
    assert_int_equal(run_sambench(&out, "metrics --gt %s --pred %s --tolerance -1", pb, pb), 2);
    free(out);
    assert_int_equal(run_sambench(&out, "metrics --gt %s --pred %s --format xml", pb, pb), 2);
    free(out);
    assert_int_equal(run_sambench(&out, "metrics --gt %s", pb), 2);
    free(out);
    /* truncated file */
    FILE *f = fopen(pb, "rb");
    uint8_t buf[1024];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *ptr = temp_path("cut.nii");
    f = fopen(ptr, "wb");
    assert_int_equal(fwrite(buf, 1, n - 10, f), n - 10);
    fclose(f);
    rc = run_sambench(&out, "metrics --gt %s --pred %s", ptr, pb);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(out, ptr));
    assert_non_null(strstr(out, "truncated"));
    /* one line */
    char *nl = strchr(out, '\n');
    assert_true(nl == NULL || nl[1] == '\0');
    free(out);
}

/* PNG masks: DeepMind's "two squares shifted by one pixel" with spacing (2, 1). */
static void test_png_input(void **state)
{
    (void)state;
    static const char *G[6] = {"000000", "011000", "011000", "000000", "000000", "000000"};
    static const char *P[6] = {"000000", "011000", "011000", "011000", "000000", "000000"};
    uint8_t g[36], p[36];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++) {
            g[i * 6 + j] = G[i][j] == '1' ? 255 : 0;
            p[i * 6 + j] = P[i][j] == '1' ? 255 : 0;
        }
    sb_error err;
    const char *pg = temp_path("g.png"), *pp = temp_path("p.png");
    assert_sb_ok(err, sb_png_write(pg, g, 6, 6, 0, 8, NULL, 0, -1, &err));
    assert_sb_ok(err, sb_png_write(pp, p, 6, 6, 0, 8, NULL, 0, -1, &err));
    char *out = NULL;
    assert_int_equal(run_sambench(&out, "metrics --gt %s --pred %s --spacing 2,1 --tolerance 1", pg, pp), 0);
    double diag = 0.5 * sqrt(5.0);
    double gs = 4 * diag + 2 + 4, ps = 4 * diag + 2 + 8;
    assert_true(fabs(json_value(out, "gt_surface") - gs) < 1e-12);
    assert_true(fabs(json_value(out, "pred_surface") - ps) < 1e-12);
    assert_true(fabs(json_value(out, "nsd") - (gs + ps - (2 * diag + 1)) / (gs + ps)) < 1e-12);
    assert_true(json_value(out, "hd100") == 2.0);
    assert_true(fabs(json_value(out, "dice") - 16.0 / 20.0) < 1e-15);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_anchor2d_json),
        cmocka_unit_test(test_empty_and_policies),
        cmocka_unit_test(test_labels_and_errors),
        cmocka_unit_test(test_png_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
