/* sambench run with the tiny fixture models (tests/fixtures: sam2_tiny, samed2_tiny with the
 * 6-entry memory bank): results identical for 1 and 3 ranks, in both protocols; the SAMed-2 bank
 * scope follows the protocol (per volume vs carried across the dataset). */
#include "util_test.h"
#include "test_run_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static char g_root[1024];

static void same_file(const char *a, const char *b, const char *name)
{
    char p[2048], q[2048];
    snprintf(p, sizeof p, "%s/%s", a, name);
    snprintf(q, sizeof q, "%s/%s", b, name);
    char *x = slurp(p), *y = slurp(q);
    assert_non_null(x);
    assert_non_null(y);
    assert_string_equal(x, y);
    free(x);
    free(y);
}

static const char *bin(void)
{
    const char *b = getenv("SAMBENCH_BIN");
    return b && *b ? b : "build/bin/sambench";
}

static void run_pair(const char *model, const char *protocol)
{
    char a[1024], b[1024], extra[1024] = "";
    snprintf(a, sizeof a, "%s_%s_%s_np1", temp_path("models"), model, protocol);
    snprintf(b, sizeof b, "%s_%s_%s_np3", temp_path("models"), model, protocol);
    if (!strcmp(model, "samed2"))
        snprintf(extra, sizeof extra, "--memory-bank %s", fixture_path("memory_bank_list_6.pkl"));
    const char *fmt = "%s %s run --model %s --model-config tests/fixtures/%s_tiny_config.json --checkpoint "
                      "tests/fixtures/%s_tiny.pth %s --protocol %s --batch 2 --medbank %s --out %s --progress 0 "
                      ">%s.log 2>&1";
    /* one rank with 2 threads vs 3 ranks with 1 thread each */
    assert_int_equal(sh(fmt, "env SAMBENCH_THREADS=2 OPENBLAS_NUM_THREADS=2", bin(), model, model, model, extra, protocol,
                        g_root, a, a),
                     0);
    assert_int_equal(sh(fmt, "mpirun -np 3 --oversubscribe --bind-to none env SAMBENCH_THREADS=1", bin(), model, model, model, extra,
                        protocol, g_root, b, b),
                     0);
    same_file(a, b, "per_case.csv");
    if (!strcmp(model, "samed2")) { /* the 3 ranks of this node share one copy of the base bank */
        char lp[2048];
        snprintf(lp, sizeof lp, "%s/logs/rank-2.log", b);
        char *lg = slurp(lp);
        assert_non_null(lg);
        assert_non_null(strstr(lg, "resident once per node, shared read-only by 3 rank(s)"));
        free(lg);
    }
    if (!strcmp(protocol, "reference"))
        same_file(a, b, "reference_batches.csv");
    char p[2048];
    snprintf(p, sizeof p, "%s/per_case.csv", a);
    char *x = slurp(p);
    /* the tiny random-ish models predict something: not every row has pred_pixels 0 */
    assert_non_null(x);
    assert_true(strlen(x) > 100);
    free(x);
}

static void test_sam2_tiny_volume(void **state) { (void)state; run_pair("sam2", "volume"); }
static void test_samed2_tiny_volume(void **state) { (void)state; run_pair("samed2", "volume"); }
static void test_samed2_tiny_reference(void **state) { (void)state; run_pair("samed2", "reference"); }

static void test_samed2_needs_bank(void **state)
{
    (void)state;
    char *o = NULL;
    assert_int_equal(run_sambench(&o, "run --model samed2 --model-config tests/fixtures/samed2_tiny_config.json "
                                      "--checkpoint tests/fixtures/samed2_tiny.pth --medbank %s --out %s",
                                  g_root, temp_path("nobank")),
                     2);
    assert_non_null(strstr(o, "--memory-bank"));
    free(o);
    assert_int_equal(run_sambench(&o, "run --model sam2 --checkpoint /nonexistent.pth --medbank %s --out %s", g_root,
                                  temp_path("nockpt")),
                     2);
    assert_non_null(strstr(o, "/nonexistent.pth"));
    free(o);
}

/* ---- the SAMed-2 bank's scope, derived by hand -------------------------------------------------
 * Two dataset folders with the same content: four copies of one image, entries a_slice_1,
 * a_slice_2, b_slice_1, b_slice_2 (cases a and b). With --batch 2 and no jitter, batch 0 is case a
 * and batch 1 is case b, and both batches see identical pixels and boxes. So:
 *  - a bank whose every iou is 2 is never replaced (the predicted iou is a sigmoid, < 1): the
 *    model state is the same for both batches, so b's rows equal a's;
 *  - a bank whose every iou is -1 is replaced by every image (MODEL.md 4.3): in the reference
 *    protocol batch 1 sees the bank batch 0 updated, so b's rows differ from a's, while the
 *    second folder, which starts again from the pristine bank (main.py runs once per dataset),
 *    repeats the first folder's rows exactly; in the volume protocol every case starts from the
 *    pristine bank, so b's rows equal a's again. */
static void bank_with_iou(const char *out, float iou)
{
    sb_bank *b = NULL;
    sb_error e;
    sb_error_clear(&e);
    assert_int_equal(sb_bank_load(&b, fixture_path("memory_bank_list_6.pkl"), &e), SB_OK);
    for (int64_t i = 0; i < b->n; i++)
        b->iou[i] = iou;
    assert_int_equal(sb_bank_save(b, out, "cpu", &e), SB_OK);
    sb_bank_free(b);
}

/* The pred_pixels,tp fields of per_case.csv's row for (dataset, entry). */
static void row_counts(const char *csv, const char *dataset, const char *entry, char *buf, size_t cap)
{
    char key[512];
    snprintf(key, sizeof key, "\n%s,%s,", dataset, entry);
    const char *r = strstr(csv, key);
    assert_non_null(r);
    r += strlen(key);
    /* batch,box_x0,box_y0,box_x1,box_y1,gt_pixels, then pred_pixels,tp */
    for (int k = 0; k < 6; k++) {
        r = strchr(r, ',');
        assert_non_null(r);
        r++;
    }
    const char *end = strchr(strchr(r, ',') + 1, ',');
    assert_non_null(end);
    snprintf(buf, cap, "%.*s", (int)(end - r), r);
}

static char *run_scope(const char *root, const char *bank, const char *protocol, const char *tag)
{
    char out[1024], p[1200];
    snprintf(out, sizeof out, "%s", temp_path(tag));
    assert_int_equal(sh("env SAMBENCH_THREADS=1 %s run --model samed2 --model-config "
                        "tests/fixtures/samed2_tiny_config.json --checkpoint tests/fixtures/samed2_tiny.pth "
                        "--memory-bank %s --protocol %s --batch 2 --box-jitter 0 --medbank %s --out %s --progress 0 "
                        ">%s.log 2>&1",
                        bin(), bank, protocol, root, out, out),
                     0);
    snprintf(p, sizeof p, "%s/per_case.csv", out);
    char *x = slurp(p);
    assert_non_null(x);
    return x;
}

static void test_samed2_bank_scope_by_hand(void **state)
{
    (void)state;
    char root[1024], src[1024], keep[1024], swap[1024];
    snprintf(root, sizeof root, "%s", temp_path("scope_mb"));
    snprintf(src, sizeof src, "%s", temp_path("scope_src"));
    sh("rm -rf %s %s; mkdir -p %s", root, src, root);
    assert_int_equal(gen_dataset(src, "Src_CT_000", 1, 1, 40, 36, 11, 0, 0), 0);
    for (int d = 1; d <= 2; d++) {
        assert_int_equal(sh("set -e; D=%s/Organ_CT_00%d; mkdir -p $D/image $D/mask; : > $D/test.txt; "
                            "for n in a_slice_1 a_slice_2 b_slice_1 b_slice_2; do "
                            "cp %s/Src_CT_000/image/case00_slice_001.png $D/image/$n.png; "
                            "cp %s/Src_CT_000/mask/case00_slice_001.png $D/mask/$n.png; "
                            "echo ./image/$n.png >> $D/test.txt; done",
                            root, d, src, src),
                         0);
    }
    snprintf(keep, sizeof keep, "%s", temp_path("bank_keep.pkl"));
    snprintf(swap, sizeof swap, "%s", temp_path("bank_swap.pkl"));
    bank_with_iou(keep, 2.0f);
    bank_with_iou(swap, -1.0f);
    char a[64], b[64], c[64], d[64];

    char *x = run_scope(root, keep, "reference", "scope_keep");
    row_counts(x, "Organ_CT_001", "./image/a_slice_1.png", a, sizeof a);
    row_counts(x, "Organ_CT_001", "./image/b_slice_1.png", b, sizeof b);
    assert_string_equal(a, b); /* the bank never changed */
    row_counts(x, "Organ_CT_001", "./image/a_slice_2.png", a, sizeof a);
    row_counts(x, "Organ_CT_001", "./image/b_slice_2.png", b, sizeof b);
    assert_string_equal(a, b);
    free(x);

    x = run_scope(root, swap, "reference", "scope_swap");
    row_counts(x, "Organ_CT_001", "./image/a_slice_1.png", a, sizeof a);
    row_counts(x, "Organ_CT_001", "./image/b_slice_1.png", b, sizeof b);
    row_counts(x, "Organ_CT_002", "./image/a_slice_1.png", c, sizeof c);
    row_counts(x, "Organ_CT_002", "./image/b_slice_1.png", d, sizeof d);
    assert_string_not_equal(a, b); /* batch 1 saw the bank batch 0 updated */
    assert_string_equal(a, c);     /* each dataset starts from the pristine bank */
    assert_string_equal(b, d);
    free(x);

    x = run_scope(root, swap, "volume", "scope_swap_vol");
    /* volume protocol: one case row per volume, everything after the case id must match */
    char *ra = strstr(x, "\nOrgan_CT_001,Organ,CT,a,"), *rb = strstr(x, "\nOrgan_CT_001,Organ,CT,b,");
    assert_non_null(ra);
    assert_non_null(rb);
    ra += strlen("\nOrgan_CT_001,Organ,CT,a,");
    rb += strlen("\nOrgan_CT_001,Organ,CT,b,");
    size_t la = strcspn(ra, "\n"), lb = strcspn(rb, "\n");
    assert_true(la > 20);
    assert_int_equal(la, lb);
    assert_memory_equal(ra, rb, la);
    free(x);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_root, sizeof g_root, "%s", temp_path("models_mb"));
    sh("rm -rf %s; mkdir -p %s", g_root, g_root);
    /* 2 datasets; odd slice counts so the volume batches are padded and reference batches straddle cases */
    int rc = gen_dataset(g_root, "Spleen_CT_004", 3, 3, 40, 36, 4, 5, 1);
    rc |= gen_dataset(g_root, "Polyp_Colonoscopy_020", 3, 1, 44, 40, 5, 0, 0);
    return rc;
}

int main(void)
{
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    if (!getenv("ASAN_OPTIONS")) /* see tests/test_run.c */
        setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sam2_tiny_volume),
        cmocka_unit_test(test_samed2_tiny_volume),
        cmocka_unit_test(test_samed2_tiny_reference),
        cmocka_unit_test(test_samed2_needs_bank),
        cmocka_unit_test(test_samed2_bank_scope_by_hand),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
