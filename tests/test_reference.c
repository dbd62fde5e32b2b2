/* --protocol reference on a hand-made dataset whose numbers are derived by hand:
 * string-sorted split list, batch-pooled Dice (sam2/util.py iou/eval_seg),
 * batches straddling cases, drop_last, boxes and pixel counts on the model
 * grid. The box baseline with --box-jitter 0 predicts the tight GT box, and
 * with a 16 x 16 model grid (SAMBENCH_BOX_SIZE=16) on 16 x 16 masks there is
 * no resize, so every count below follows from the masks drawn here. */
#include "util_test.h"
#include "test_run_gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void put(const char *dir, const char *name, const int (*px)[2], int n)
{
    uint8_t m[256] = {0}, img[768] = {0};
    for (int i = 0; i < n; i++)
        m[px[i][1] * 16 + px[i][0]] = 255; /* (x, y) */
    char p[2048];
    snprintf(p, sizeof p, "%s/mask/%s", dir, name);
    assert_int_equal(gen_png(p, m, 16, 16, 1), 0);
    snprintf(p, sizeof p, "%s/image/%s", dir, name);
    assert_int_equal(gen_png(p, img, 16, 16, 3), 0);
}

/* The hand-made dataset ROOT/Organ_CT_001 (see the counts in test_reference_by_hand). */
static void make_by_hand(const char *root)
{
    char dir[1200], p[2048];
    snprintf(dir, sizeof dir, "%s/Organ_CT_001", root);
    mkdir(root, 0775);
    mkdir(dir, 0775);
    snprintf(p, sizeof p, "%s/image", dir);
    mkdir(p, 0775);
    snprintf(p, sizeof p, "%s/mask", dir);
    mkdir(p, 0775);
    /* a_slice_1: 3 x 2 rectangle x 3..5, y 4..5 -> gt 6, box [3,4,5,5], pred 6, tp 6 */
    const int a1[][2] = {{3, 4}, {4, 4}, {5, 4}, {3, 5}, {4, 5}, {5, 5}};
    put(dir, "a_slice_1.png", a1, 6);
    /* b_slice_10: two pixels (2,2), (5,5) -> box [2,2,5,5], pred 16, tp 2 */
    const int b10[][2] = {{2, 2}, {5, 5}};
    put(dir, "b_slice_10.png", b10, 2);
    /* b_slice_9: one pixel (7,8) -> box [7,8,7,8], pred 1, tp 1 */
    const int b9[][2] = {{7, 8}};
    put(dir, "b_slice_9.png", b9, 1);
    /* c_slice_1: a plus around (10,10) -> box [9,9,11,11], pred 9, tp 5 */
    const int c1[][2] = {{10, 9}, {9, 10}, {10, 10}, {11, 10}, {10, 11}};
    put(dir, "c_slice_1.png", c1, 5);
    /* c_slice_2: empty -> box [0,0,16,16]; left out by drop_last */
    put(dir, "c_slice_2.png", c1, 0);
    /* split file in non-sorted order, with blank lines and stray spaces */
    snprintf(p, sizeof p, "%s/test.txt", dir);
    FILE *f = fopen(p, "w");
    fputs("  ./image/c_slice_2.png\n./image/b_slice_9.png\n\n./image/a_slice_1.png  \n"
          "./image/c_slice_1.png\n./image/b_slice_10.png\n",
          f);
    fclose(f);
}

/* reference_batches.csv of the hand-made dataset under the name DATASET:
 * string order a_slice_1 < b_slice_10 < b_slice_9 < c_slice_1 < c_slice_2;
 * batch 0 = a_slice_1 + b_slice_10: I = 6 + 2 = 8, U = 6 + 16 = 22;
 * batch 1 = b_slice_9 + c_slice_1 (straddles cases b and c): I = 1 + 5 = 6, U = 1 + 9 = 10. */
static void check_batches(const char *out, const char *dataset)
{
    double iou0 = (8 + 1e-5) / (22 + 1e-5), iou1 = (6 + 1e-5) / (10 + 1e-5);
    double d0 = 2 * iou0 / (iou0 + 1), d1 = 2 * iou1 / (iou1 + 1);
    char want[1024], p[2048];
    snprintf(p, sizeof p, "%s/reference_batches.csv", out);
    char *s = slurp(p);
    assert_non_null(s);
    snprintf(want, sizeof want,
             "dataset,batch,cases,intersection,union,iou,dice\n"
             "%s,0,./image/a_slice_1.png;./image/b_slice_10.png,8,22,%.17g,%.17g\n"
             "%s,1,./image/b_slice_9.png;./image/c_slice_1.png,6,10,%.17g,%.17g\n",
             dataset, iou0, d0, dataset, iou1, d1);
    assert_string_equal(s, want);
    free(s);
}

static void test_reference_by_hand(void **state)
{
    (void)state;
    char root[1024], p[2048];
    snprintf(root, sizeof root, "%s", temp_path("ref_mb"));
    make_by_hand(root);
    char out[1024];
    snprintf(out, sizeof out, "%s", temp_path("ref_out"));
    setenv("SAMBENCH_BOX_SIZE", "16", 1);
    char *o = NULL;
    int rc = run_sambench(&o, "run --model box --protocol reference --batch 2 --box-jitter 0 --medbank %s --out %s "
                              "--progress 0",
                          root, out);
    if (rc)
        fprintf(stderr, "%s\n", o);
    assert_int_equal(rc, 0);
    free(o);
    /* string order: a_slice_1 < b_slice_10 < b_slice_9 < c_slice_1 < c_slice_2.
     * batch 0 = a_slice_1 + b_slice_10: I = 6 + 2 = 8, U = 6 + 16 = 22
     * batch 1 = b_slice_9 + c_slice_1 (straddles cases b and c): I = 1 + 5 = 6, U = 1 + 9 = 10 */
    double iou0 = (8 + 1e-5) / (22 + 1e-5), iou1 = (6 + 1e-5) / (10 + 1e-5);
    double d0 = 2 * iou0 / (iou0 + 1), d1 = 2 * iou1 / (iou1 + 1);
    char want[1024];
    check_batches(out, "Organ_CT_001");
    char *s;
    snprintf(p, sizeof p, "%s/per_case.csv", out);
    s = slurp(p);
    assert_non_null(strstr(s, "Organ_CT_001,./image/a_slice_1.png,0,3,4,5,5,6,6,6,"));
    assert_non_null(strstr(s, "Organ_CT_001,./image/b_slice_10.png,0,2,2,5,5,2,16,2,"));
    assert_non_null(strstr(s, "Organ_CT_001,./image/b_slice_9.png,1,7,8,7,8,1,1,1,"));
    assert_non_null(strstr(s, "Organ_CT_001,./image/c_slice_1.png,1,9,9,11,11,5,9,5,"));
    assert_null(strstr(s, "c_slice_2"));
    free(s);
    snprintf(p, sizeof p, "%s/summary.json", out);
    s = slurp(p);
    /* main.py: total_dice / n_val, summed in batch order */
    snprintf(want, sizeof want,
             "\"Organ_CT_001\": {\"batches\": 2, \"reference_mean_dice\": %.17g, \"reference_mean_iou\": %.17g, "
             "\"not_scored\": [\"./image/c_slice_2.png\"]}",
             (d0 + d1) / 2, (iou0 + iou1) / 2);
    assert_non_null(strstr(s, want));
    free(s);
    /* the same dataset with jitter: boxes grow outward, clamped to [0, 16] */
    snprintf(out, sizeof out, "%s", temp_path("ref_out_j"));
    assert_int_equal(run_sambench(&o, "run --model box --protocol reference --batch 2 --box-jitter 3 --medbank %s "
                                      "--out %s --progress 0",
                                  root, out),
                     0);
    free(o);
    snprintf(p, sizeof p, "%s/per_case.csv", out);
    s = slurp(p);
    int x0, y0, x1, y1;
    char *line = strstr(s, "./image/a_slice_1.png,0,");
    assert_non_null(line);
    assert_int_equal(sscanf(line + strlen("./image/a_slice_1.png,0,"), "%d,%d,%d,%d", &x0, &y0, &x1, &y1), 4);
    assert_true(x0 >= 0 && x0 <= 3 && y0 >= 1 && y0 <= 4 && x1 >= 5 && x1 <= 8 && y1 >= 5 && y1 <= 8);
    free(s);
    unsetenv("SAMBENCH_BOX_SIZE");
}

/* --protocol reference with --manifest: the manifest's MedBank-layout datasets give the same
 * hand-derived batches as --medbank; a glob matching two folders gives one unit per folder (as
 * main.py runs once per folder), named by the folder; an msd-layout dataset is refused by name. */
static void test_reference_manifest(void **state)
{
    (void)state;
    char root[1024], man[1200], out[1200], p[2048];
    snprintf(root, sizeof root, "%s", temp_path("refm_mb"));
    make_by_hand(root);
    setenv("SAMBENCH_BOX_SIZE", "16", 1);
    snprintf(man, sizeof man, "%s/m.yaml", root);
    FILE *f = fopen(man, "w");
    assert_non_null(f);
    fputs("collection: handmade\ndatasets:\n  - name: Organ_CT_001\n    task: Organ\n    modality: CT\n"
          "    path: Organ_CT_001\n    split: test.txt\n",
          f);
    fclose(f);
    snprintf(out, sizeof out, "%s", temp_path("refm_out"));
    char *o = NULL;
    int rc = run_sambench(&o, "run --model box --protocol reference --batch 2 --box-jitter 0 --manifest %s "
                              "--data-root %s --out %s --progress 0",
                          man, root, out);
    if (rc)
        fprintf(stderr, "%s\n", o);
    assert_int_equal(rc, 0);
    free(o);
    check_batches(out, "Organ_CT_001");
    snprintf(p, sizeof p, "%s/per_case.csv", out);
    char *s = slurp(p);
    assert_non_null(s);
    assert_non_null(strstr(s, "Organ_CT_001,./image/b_slice_10.png,0,2,2,5,5,2,16,2,"));
    free(s);

    /* the same dataset from two manifests is one name for two units: refused in both protocols */
    for (int k = 0; k < 2; k++) {
        rc = run_sambench(&o, "run --model box --protocol %s --manifest %s --manifest %s --data-root %s --out %s_dup "
                              "--progress 0",
                          k ? "reference" : "volume", man, man, root, out);
        assert_int_equal(rc, 2);
        assert_non_null(strstr(o, "dataset 'Organ_CT_001' appears twice across the manifests"));
        free(o);
    }

    /* a second folder with the same content, one glob over both */
    snprintf(p, sizeof p, "cp -r %s/Organ_CT_001 %s/Organ_CT_002", root, root);
    assert_int_equal(system(p), 0);
    f = fopen(man, "w");
    fputs("collection: handmade\ndatasets:\n  - name: Organ_CT\n    task: Organ\n    modality: CT\n"
          "    path: \"Organ_CT_*\"\n",
          f);
    fclose(f);
    snprintf(out, sizeof out, "%s", temp_path("refm_out2"));
    assert_int_equal(run_sambench(&o, "run --model box --protocol reference --batch 2 --box-jitter 0 --manifest %s "
                                      "--data-root %s --out %s --progress 0",
                                  man, root, out),
                     0);
    free(o);
    snprintf(p, sizeof p, "%s/reference_batches.csv", out);
    s = slurp(p);
    assert_non_null(s);
    assert_non_null(strstr(s, "\nOrgan_CT_001,1,./image/b_slice_9.png;./image/c_slice_1.png,6,10,"));
    assert_non_null(strstr(s, "\nOrgan_CT_002,1,./image/b_slice_9.png;./image/c_slice_1.png,6,10,"));
    free(s);

    /* an msd-layout dataset has no split list to reproduce */
    f = fopen(man, "w");
    fputs("collection: handmade\ndatasets:\n  - name: Organ_CT_001\n    task: Organ\n    modality: CT\n"
          "    path: Organ_CT_001\n  - name: Liver_vol\n    task: Liver\n    modality: CT\n    layout: msd\n"
          "    path: Task03_Liver\n",
          f);
    fclose(f);
    snprintf(out, sizeof out, "%s", temp_path("refm_out3"));
    rc = run_sambench(&o, "run --model box --protocol reference --manifest %s --data-root %s --out %s --progress 0",
                      man, root, out);
    assert_int_equal(rc, 2);
    assert_non_null(strstr(o, "Liver_vol"));
    assert_non_null(strstr(o, "msd"));
    free(o);
    unsetenv("SAMBENCH_BOX_SIZE");
}

int main(void)
{
    /* Under ASan, the `sambench run` children skip the leak check at exit: Open MPI leaves thousands
     * of allocations whose frames LeakSanitizer cannot attribute to its libraries (no frame
     * pointers), and checking them costs 6-18 s per process. The run code's own allocations are
     * leak-checked in process (test_eval_in_process, and the journal/results/report tests). */
    if (!getenv("ASAN_OPTIONS"))
        setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_reference_by_hand),
                                       cmocka_unit_test(test_reference_manifest)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
