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

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    b[n] = '\0';
    fclose(f);
    return b;
}

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
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
