/* Dataset manifests: the two shipped ones parse with the facts of
 * PROTOCOL.md 5; errors name the file and line; write + load round-trips. */
#include "util_test.h"

#include "../pipeline/manifest.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_medbank_manifest(void **state)
{
    (void)state;
    sb_error err;
    sb_manifest *m;
    assert_sb_ok(err, sb_manifest_load(&m, "configs/datasets/medbank100k.yaml", &err));
    assert_string_equal(m->collection, "medbank100k");
    assert_int_equal(m->n, 21);
    static const char *tasks[21][2] = {
        {"OpticCup", "Fundus"}, {"Melanoma", "Dermoscopy"}, {"Lung", "X-Ray"}, {"Spleen", "CT"},
        {"Esophagus", "CT"}, {"Liver", "CT"}, {"Stomach", "CT"}, {"InferiorVenaCava", "CT"},
        {"Pancreas", "CT"}, {"AdrenalGland", "CT"}, {"KidneyTumor", "CT"}, {"LiverTumor", "CT"},
        {"LungTumor", "CT"}, {"Liver", "MR"}, {"Aorta", "MR"}, {"InferiorVenaCava", "MR"},
        {"Gallbladder", "MR"}, {"Esophagus", "MR"}, {"Stomach", "MR"}, {"Polyp", "Colonoscopy"},
        {"LVepi", "Echocardiography"}};
    int modalities = 0;
    char seen[8][32] = {{0}};
    for (int i = 0; i < 21; i++) {
        const sb_dataset_spec *s = &m->d[i];
        assert_string_equal(s->task, tasks[i][0]);
        assert_string_equal(s->modality, tasks[i][1]);
        assert_int_equal(s->layout, SB_LAYOUT_MEDBANK);
        assert_string_equal(s->split, "test.txt");
        assert_true(s->nonempty_only);
        assert_true(s->sources[0] != '\0');
        for (int k = 0; k < SB_PUBLISHED_MODELS; k++)
            assert_false(isnan(s->published_dice[k]));
        int known = 0;
        for (int k = 0; k < modalities; k++)
            known |= !strcmp(seen[k], s->modality);
        if (!known)
            snprintf(seen[modalities++], sizeof seen[0], "%s", s->modality);
    }
    assert_int_equal(modalities, 7);
    const sb_dataset_spec *sp = sb_manifest_find(m, "Spleen_CT");
    assert_non_null(sp);
    assert_true(fabs(sp->published_dice[0] - 0.8566) < 1e-12); /* SAMed-2 */
    assert_true(fabs(sp->published_dice[5] - 0.5239) < 1e-12); /* U-Net */
    const sb_dataset_spec *lv = sb_manifest_find(m, "LVepi_Echocardiography");
    assert_non_null(lv);
    assert_true(fabs(lv->published_dice[3] - 0.3412) < 1e-12); /* MedSAM */
    assert_null(sb_manifest_find(m, "NoSuch"));
    sb_manifest_free(m);
}

static void test_external_manifest(void **state)
{
    (void)state;
    sb_error err;
    sb_manifest *m;
    assert_sb_ok(err, sb_manifest_load(&m, "configs/datasets/external10.yaml", &err));
    assert_int_equal(m->n, 10);
    int msd = 0;
    for (int i = 0; i < m->n; i++)
        msd += m->d[i].layout == SB_LAYOUT_MSD;
    assert_int_equal(msd, 7);
    const sb_dataset_spec *l = sb_manifest_find(m, "Liver_CT_Task03"), *t = sb_manifest_find(m, "LiverTumor_CT_Task03");
    assert_non_null(l);
    assert_non_null(t);
    assert_string_equal(l->path, t->path);
    assert_int_equal(l->nlabels, 1);
    assert_int_equal(l->label_ids[0], 1);
    assert_int_equal(t->label_ids[0], 2);
    assert_int_equal(l->intensity, SB_INTENSITY_CT_WINDOW);
    assert_true(l->window_level == 40 && l->window_width == 400);
    const sb_dataset_spec *b = sb_manifest_find(m, "BrainTumor_MR_Task01");
    assert_non_null(b);
    assert_int_equal(b->nlabels, 3);
    assert_int_equal(b->intensity, SB_INTENSITY_PERCENTILE);
    assert_true(b->pct_lo == 0.5 && b->pct_hi == 99.5);
    assert_int_equal(b->slice_axis, 2);
    const sb_dataset_spec *th = sb_manifest_find(m, "Thyroid_US");
    assert_non_null(th);
    assert_string_equal(th->modality, "US");
    assert_true(fabs(th->published_dice[1] - 0.6756) < 1e-12);
    sb_manifest_free(m);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void expect_error(const char *text, const char *needle)
{
    const char *p = temp_path("bad_manifest.yaml");
    write_file(p, text);
    sb_error err;
    sb_manifest *m = NULL;
    int rc = sb_manifest_load(&m, p, &err);
    assert_int_not_equal(rc, SB_OK);
    assert_null(m);
    if (!strstr(err.msg, needle) || !strstr(err.msg, "bad_manifest.yaml"))
        fail_msg("expected '%s' in: %s", needle, err.msg);
}

static void test_manifest_errors(void **state)
{
    (void)state;
    const char *head = "collection: x\ndatasets:\n  - name: a\n    task: A\n    path: p\n";
    char buf[1024];
    snprintf(buf, sizeof buf, "%s    modality: Sonar\n", head);
    expect_error(buf, "unknown modality 'Sonar'");
    snprintf(buf, sizeof buf, "%s    modality: CT\n    colour: red\n", head);
    expect_error(buf, "unknown key 'colour'");
    snprintf(buf, sizeof buf, "%s    modality: CT\n    layout: zip\n", head);
    expect_error(buf, "layout must be");
    snprintf(buf, sizeof buf, "%s    modality: CT\n    slice_axis: 5\n", head);
    expect_error(buf, "slice_axis");
    snprintf(buf, sizeof buf, "%s    modality: CT\n    label_ids: [1, x]\n", head);
    expect_error(buf, "must be a number");
    snprintf(buf, sizeof buf, "%s    modality: CT\n    published_dice: {gpt: 0.5}\n", head);
    expect_error(buf, "unknown model 'gpt'");
    expect_error("collection: x\ndatasets:\n  - name: a\n    task: A\n", "needs name, task, modality and path");
    snprintf(buf, sizeof buf, "%s    modality: CT\n  - name: a\n    task: B\n    modality: MR\n    path: q\n", head);
    expect_error(buf, "appears twice");
    expect_error("collection: [unclosed\n", "YAML error");
    expect_error("- just\n- a list\n", "mapping");
    sb_error err;
    sb_manifest *m;
    assert_int_equal(sb_manifest_load(&m, "/nonexistent/m.yaml", &err), SB_EIO);
    assert_non_null(strstr(err.msg, "/nonexistent/m.yaml"));
    /* modality aliases */
    assert_string_equal(sb_modality_canonical("MRI"), "MR");
    assert_string_equal(sb_modality_canonical("echo"), "Echocardiography");
    assert_string_equal(sb_modality_canonical("XRay"), "X-Ray");
    assert_null(sb_modality_canonical("Sonar"));
}

static void test_roundtrip(void **state)
{
    (void)state;
    sb_error err;
    sb_manifest *a, *b;
    assert_sb_ok(err, sb_manifest_load(&a, "configs/datasets/external10.yaml", &err));
    const char *p = temp_path("rt.yaml");
    assert_sb_ok(err, sb_manifest_write(a, p, &err));
    assert_sb_ok(err, sb_manifest_load(&b, p, &err));
    assert_int_equal(a->n, b->n);
    assert_string_equal(a->collection, b->collection);
    for (int i = 0; i < a->n; i++) {
        const sb_dataset_spec *x = &a->d[i], *y = &b->d[i];
        assert_string_equal(x->name, y->name);
        assert_string_equal(x->task, y->task);
        assert_string_equal(x->modality, y->modality);
        assert_string_equal(x->path, y->path);
        assert_string_equal(x->split, y->split);
        assert_string_equal(x->sources, y->sources);
        assert_int_equal(x->layout, y->layout);
        assert_int_equal(x->nlabels, y->nlabels);
        assert_memory_equal(x->label_ids, y->label_ids, sizeof x->label_ids);
        assert_int_equal(x->intensity, y->intensity);
        assert_int_equal(x->channel, y->channel);
        assert_int_equal(x->slice_axis, y->slice_axis);
        assert_int_equal(x->nonempty_only, y->nonempty_only);
        assert_true(x->nsd_tolerance == y->nsd_tolerance);
        for (int k = 0; k < SB_PUBLISHED_MODELS; k++)
            assert_true(fabs(x->published_dice[k] - y->published_dice[k]) < 1e-12);
    }
    sb_manifest_free(a);
    sb_manifest_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_medbank_manifest),
        cmocka_unit_test(test_external_manifest),
        cmocka_unit_test(test_manifest_errors),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
