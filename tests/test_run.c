/* sambench run end to end on generated MedBank-layout data with the box
 * baseline: rank-count invariance, SIGTERM / SIGKILL + --resume, torn
 * journals, failing volumes, report re-rendering.
 * `test_run --gen DIR` only writes the small dataset (for tests/slurm). */
#include "util_test.h"
#include "test_run_gen.h"
#include "../pipeline/run.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_root[1024], g_base[1024];

static const char *bin(void)
{
    const char *b = getenv("SAMBENCH_BIN");
    return b && *b ? b : "build/bin/sambench";
}

/* summary.json without the one line that describes how the run was executed */
static char *summary_sans_run(const char *dir)
{
    char p[2048];
    snprintf(p, sizeof p, "%s/summary.json", dir);
    char *s = slurp(p);
    if (!s)
        return NULL;
    char *r = strstr(s, "  \"run\": {");
    if (r) {
        char *nl = strchr(r, '\n');
        if (nl)
            memmove(r, nl + 1, strlen(nl + 1) + 1);
    }
    return s;
}

static void assert_same_results(const char *a, const char *b)
{
    char p1[2048], p2[2048];
    snprintf(p1, sizeof p1, "%s/per_case.csv", a);
    snprintf(p2, sizeof p2, "%s/per_case.csv", b);
    char *x = slurp(p1), *y = slurp(p2);
    assert_non_null(x);
    assert_non_null(y);
    assert_string_equal(x, y);
    free(x);
    free(y);
    x = summary_sans_run(a);
    y = summary_sans_run(b);
    assert_non_null(x);
    assert_non_null(y);
    assert_string_equal(x, y);
    free(x);
    free(y);
}

static int mpirun(int np, const char *extra_env, const char *out, const char *more)
{
    return sh("%s mpirun -np %d --oversubscribe --bind-to none %s run --model box --medbank %s --out %s "
              "--progress 0 %s >%s.log 2>&1",
              extra_env ? extra_env : "", np, bin(), g_root, out, more ? more : "", out);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_root, sizeof g_root, "%s", temp_path("run_mb"));
    sh("rm -rf %s", g_root);
    if (gen_medbank(g_root) != 0)
        return -1;
    snprintf(g_base, sizeof g_base, "%s", temp_path("run_base"));
    /* one rank, no launcher */
    int rc = sh("%s run --model box --medbank %s --out %s --progress 0 >%s.log 2>&1", bin(), g_root, g_base, g_base);
    return rc == 0 ? 0 : -1;
}

static void test_rank_counts_identical(void **state)
{
    (void)state;
    char *x = NULL;
    char p[2048];
    snprintf(p, sizeof p, "%s/per_case.csv", g_base);
    x = slurp(p);
    assert_non_null(x);
    /* 13 cases + header; the box baseline over-covers: fp > 0, fn == 0 on non-empty cases */
    int lines = 0;
    for (char *c = x; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, 14);
    assert_non_null(strstr(x, "Aorta_MR_002,Aorta,MR,case00,4,ok,"));
    free(x);
    for (int np = 1; np <= 3; np++) {
        char out[1024];
        snprintf(out, sizeof out, "%s_np%d", temp_path("run"), np);
        assert_int_equal(mpirun(np, NULL, out, NULL), 0);
        assert_same_results(g_base, out);
        snprintf(p, sizeof p, "%s/summary.json", out);
        char *s = slurp(p);
        char want[64];
        snprintf(want, sizeof want, "\"ranks\": %d,", np);
        assert_non_null(strstr(s, want));
        free(s);
    }
}

static long journal_bytes(const char *out)
{
    char d[2048];
    snprintf(d, sizeof d, "%s/journal", out);
    DIR *dir = opendir(d);
    if (!dir)
        return 0;
    long total = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (strncmp(de->d_name, "rank-", 5))
            continue;
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", d, de->d_name);
        if (stat(p, &st) == 0)
            total += st.st_size - 42; /* minus the header record */
    }
    closedir(dir);
    return total;
}

/* children of pid (the ranks mpirun started) */
static int children(pid_t pid, pid_t *out, int cap)
{
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) && n < cap) {
        char p[512], buf[512];
        snprintf(p, sizeof p, "/proc/%s/stat", de->d_name);
        FILE *f = fopen(p, "r");
        if (!f)
            continue;
        if (fgets(buf, sizeof buf, f)) {
            char *rp = strrchr(buf, ')');
            int ppid = 0;
            char st;
            if (rp && sscanf(rp + 2, "%c %d", &st, &ppid) == 2 && ppid == pid)
                out[n++] = (pid_t)atoi(de->d_name);
        }
        fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}

/* Starts a slowed-down 3-rank run, waits until some units are journaled,
 * then sends sig to the ranks (all, or only one). Returns mpirun's status. */
static int interrupted_run(const char *out, int sig, int only_one)
{
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[8192];
        snprintf(cmd, sizeof cmd,
                 "exec mpirun -np 3 --oversubscribe --bind-to none %s run --model box --medbank %s --out %s "
                 "--progress 0 --batch 1 >%s.log 2>&1",
                 bin(), g_root, out, out);
        setenv("SAMBENCH_BOX_DELAY_MS", "80", 1);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* wait for at least two journaled units (each > 300 bytes) */
    for (int i = 0; i < 600 && journal_bytes(out) < 700; i++)
        usleep(20000);
    pid_t kids[16];
    int n = children(pid, kids, 16);
    for (int i = 0; i < n && (!only_one || i < 1); i++)
        kill(only_one ? kids[n - 1] : kids[i], sig);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_sigterm_then_resume(void **state)
{
    (void)state;
    char out[1024];
    snprintf(out, sizeof out, "%s", temp_path("run_sigterm"));
    int rc = interrupted_run(out, SIGTERM, 0);
    assert_int_equal(rc, 75); /* SB_EXIT_INTERRUPTED */
    char p[2048];
    snprintf(p, sizeof p, "%s/results.h5", out);
    assert_int_not_equal(access(p, F_OK), 0); /* no merge after an interruption */
    long done = journal_bytes(out);
    assert_true(done > 0);
    assert_int_equal(mpirun(3, NULL, out, "--batch 1 --resume"), 0);
    snprintf(p, sizeof p, "%s.log", out);
    char *log = slurp(p);
    assert_non_null(strstr(log, "resuming: "));
    assert_null(strstr(log, "resuming: 0 unit(s)"));
    free(log);
    /* --batch 1 vs the default 4 gives the same numbers for the box baseline */
    assert_same_results(g_base, out);
}

static void test_sigkill_one_rank_then_resume(void **state)
{
    (void)state;
    char out[1024];
    snprintf(out, sizeof out, "%s", temp_path("run_sigkill"));
    int rc = interrupted_run(out, SIGKILL, 1);
    assert_int_not_equal(rc, 0);
    assert_int_equal(mpirun(2, NULL, out, "--batch 1 --resume"), 0);
    char p[2048];
    snprintf(p, sizeof p, "%s.log", out);
    char *log = slurp(p);
    assert_null(strstr(log, "resuming: 0 unit(s)"));
    free(log);
    assert_same_results(g_base, out);
}

static void test_torn_journal_resume(void **state)
{
    (void)state;
    char out[1024], p[2048];
    snprintf(out, sizeof out, "%s", temp_path("run_torn"));
    assert_int_equal(mpirun(2, NULL, out, NULL), 0);
    snprintf(p, sizeof p, "%s/journal/rank-0", out);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    /* tear the last record: drop its last 7 bytes (CRC and some payload) */
    assert_int_equal(truncate(p, st.st_size - 7), 0);
    sb_recs recs = {0};
    size_t torn = 0, nkeys = 0;
    char **keys = NULL;
    sb_error err;
    uint64_t fp = 0;
    /* the header's fingerprint: read it back via a mismatching read first */
    assert_int_equal(sb_journal_read(p, 12345, &recs, NULL, &keys, &nkeys, &torn, &err), SB_EINVAL);
    assert_non_null(strstr(err.msg, "other options"));
    (void)fp;
    assert_int_equal(mpirun(2, NULL, out, "--resume"), 0);
    snprintf(p, sizeof p, "%s.log", out);
    char *log = slurp(p);
    assert_non_null(strstr(log, "torn tail record(s) dropped"));
    free(log);
    assert_same_results(g_base, out);
    sb_recs_free(&recs);
}

static void test_journal_api(void **state)
{
    (void)state;
    const char *p = temp_path("journal_api");
    sb_error err;
    sb_journal *j;
    assert_sb_ok(err, sb_journal_open(&j, p, 0, 77, &err));
    sb_rec r[2];
    memset(r, 0, sizeof r);
    for (int u = 0; u < 3; u++) {
        for (int k = 0; k < 2; k++) {
            snprintf(r[k].dataset, sizeof r[k].dataset, "D_X_1");
            snprintf(r[k].case_id, sizeof r[k].case_id, "case%d", u);
            r[k].slice = k;
            r[k].tp = 10 * u + k;
            r[k].surf_gt = 1.5 * u;
        }
        char cid[16];
        snprintf(cid, sizeof cid, "case%d", u);
        assert_sb_ok(err, sb_journal_append(j, "D_X_1", cid, r, 2, NULL, 0, &err));
    }
    sb_journal_close(j);
    sb_recs recs = {0};
    char **keys = NULL;
    size_t nkeys = 0, torn = 0;
    assert_sb_ok(err, sb_journal_read(p, 77, &recs, NULL, &keys, &nkeys, &torn, &err));
    assert_int_equal(recs.n, 6);
    assert_int_equal(nkeys, 3);
    assert_int_equal(torn, 0);
    assert_string_equal(keys[2], "D_X_1\tcase2");
    assert_int_equal(recs.v[5].tp, 21);
    assert_true(recs.v[5].surf_gt == 3.0);
    for (size_t i = 0; i < nkeys; i++)
        free(keys[i]);
    free(keys);
    keys = NULL;
    nkeys = 0;
    sb_recs_free(&recs);
    /* flip one payload byte of the second unit record: CRC mismatch, reading stops there */
    FILE *f = fopen(p, "r+b");
    assert_non_null(f);
    struct stat st;
    stat(p, &st);
    long rec_len = (st.st_size - 42) / 3;
    fseek(f, 42 + rec_len + 20, SEEK_SET);
    int c = fgetc(f);
    fseek(f, 42 + rec_len + 20, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
    assert_sb_ok(err, sb_journal_read(p, 77, &recs, NULL, &keys, &nkeys, &torn, &err));
    assert_int_equal(recs.n, 2);
    assert_int_equal(nkeys, 1);
    assert_int_equal(torn, 1);
    for (size_t i = 0; i < nkeys; i++)
        free(keys[i]);
    free(keys);
    sb_recs_free(&recs);
    /* resume-open truncates the file at the last valid record */
    assert_sb_ok(err, sb_journal_open(&j, p, 1, 77, &err));
    sb_journal_close(j);
    stat(p, &st);
    assert_int_equal(st.st_size, 42 + rec_len);
    /* garbage file */
    f = fopen(p, "wb");
    fputs("not a journal at all", f);
    fclose(f);
    torn = 0;
    assert_sb_ok(err, sb_journal_read(p, 77, &recs, NULL, NULL, NULL, &torn, &err));
    assert_int_equal(recs.n, 0);
    assert_int_equal(torn, 1);
    assert_int_equal(sb_crc32("123456789", 9), 0xcbf43926u); /* the CRC-32 check value */
}

static void test_failing_volume(void **state)
{
    (void)state;
    char root[1024], out[1024], p[2048];
    snprintf(root, sizeof root, "%s", temp_path("run_badmb"));
    sh("rm -rf %s", root);
    assert_int_equal(gen_dataset(root, "Spleen_CT_009", 3, 2, 32, 32, 9, 0, 0), 0);
    snprintf(p, sizeof p, "%s/Spleen_CT_009/mask/case01_slice_002.png", root);
    FILE *f = fopen(p, "wb");
    fputs("\x89PNG truncated", f);
    fclose(f);
    snprintf(out, sizeof out, "%s", temp_path("run_bad"));
    assert_int_equal(sh("%s run --model box --medbank %s --out %s --progress 0 >%s.log 2>&1", bin(), root, out, out), 0);
    snprintf(p, sizeof p, "%s/per_case.csv", out);
    char *x = slurp(p);
    assert_non_null(x);
    char *line = strstr(x, "Spleen_CT_009,Spleen,CT,case01,2,failed,");
    assert_non_null(line);
    assert_non_null(strstr(line, "case01_slice_002.png"));
    assert_non_null(strstr(x, "Spleen_CT_009,Spleen,CT,case02,2,ok,"));
    free(x);
    snprintf(p, sizeof p, "%s/summary.json", out);
    x = slurp(p);
    assert_non_null(strstr(x, "\"slices\": 4, \"cases\": 3, \"failed\": 1"));
    free(x);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    char *o = NULL;
    assert_int_equal(run_sambench(&o, "run --model box --out %s", temp_path("x")), 2);
    assert_non_null(strstr(o, "--medbank"));
    free(o);
    assert_int_equal(run_sambench(&o, "run --model nosuch --medbank %s --out %s", g_root, temp_path("x")), 2);
    assert_non_null(strstr(o, "unknown model 'nosuch'"));
    free(o);
    assert_int_equal(run_sambench(&o, "run --model box --medbank %s --out %s --batch 0", g_root, temp_path("x")), 2);
    assert_non_null(strstr(o, "--batch 0"));
    free(o);
    assert_int_equal(run_sambench(&o, "run --model box --medbank /nonexistent/mb --out %s", temp_path("x")), 2);
    assert_non_null(strstr(o, "/nonexistent/mb"));
    free(o);
    /* resume with other options than the journal's run */
    assert_int_equal(run_sambench(&o, "run --model box --medbank %s --out %s --seed 5 --resume", g_root, g_base), 2);
    assert_non_null(strstr(o, "other options"));
    free(o);
    assert_int_equal(run_sambench(&o, "report %s", temp_path("nothing_here")), 2);
    assert_non_null(strstr(o, "results.h5"));
    free(o);
}

static void test_report_rerender(void **state)
{
    (void)state;
    char out[1024], p[2048];
    snprintf(out, sizeof out, "%s", temp_path("report_one"));
    char *o = NULL;
    assert_int_equal(run_sambench(&o, "report %s --out %s --format json,tex --empty-policy one", g_base, out), 0);
    free(o);
    snprintf(p, sizeof p, "%s/summary.json", out);
    char *x = slurp(p);
    assert_non_null(x);
    assert_non_null(strstr(x, "\"empty_policy\": \"one\""));
    free(x);
    snprintf(p, sizeof p, "%s/summary.tex", out);
    x = slurp(p);
    assert_non_null(strstr(x, "\\toprule"));
    assert_non_null(strstr(x, "\\bottomrule"));
    free(x);
    snprintf(p, sizeof p, "%s/summary.md", out);
    assert_int_not_equal(access(p, F_OK), 0); /* not asked for */
    /* the default re-render reproduces run's own files byte for byte */
    assert_int_equal(run_sambench(&o, "report %s --out %s", g_base, out), 0);
    free(o);
    char a[2048], b[2048];
    snprintf(a, sizeof a, "%s/summary.csv", g_base);
    snprintf(b, sizeof b, "%s/summary.csv", out);
    char *s1 = slurp(a), *s2 = slurp(b);
    assert_string_equal(s1, s2);
    free(s1);
    free(s2);
    /* several folders: one column per model */
    assert_int_equal(run_sambench(&o, "report %s %s --out %s", g_base, g_base, out), 0);
    assert_non_null(strstr(o, "| Liver | CT | Liver_CT_001 |"));
    free(o);
    snprintf(p, sizeof p, "%s/models.csv", out);
    x = slurp(p);
    assert_non_null(x);
    assert_non_null(strstr(x, "metric,task,modality,dataset,box,"));
    free(x);
}

/* `sambench synth` data: the MedBank folders (np 1 vs 3) and the external manifest through the data
 * module (MSD NIfTI volumes: 3-D per-case metrics, statistics over cases), np 1 vs 2. */
static void test_synth_data(void **state)
{
    (void)state;
    char syn[1024], a[1024], b[1024], p[2048];
    snprintf(syn, sizeof syn, "%s", temp_path("synth"));
    char *o = NULL;
    int rc = run_sambench(&o, "synth --out %s --scale tiny", syn);
    if (rc)
        fprintf(stderr, "%s\n", o);
    free(o);
    assert_int_equal(rc, 0);
    setenv("SAMBENCH_BOX_SIZE", "256", 1); /* a smaller model grid keeps the test fast */
    snprintf(a, sizeof a, "%s", temp_path("synth_mb1"));
    snprintf(b, sizeof b, "%s", temp_path("synth_mb3"));
    assert_int_equal(sh("%s run --model box --medbank %s/MedBank --out %s --progress 0 >%s.log 2>&1", bin(), syn, a, a), 0);
    assert_int_equal(sh("mpirun -np 3 --oversubscribe --bind-to none %s run --model box --medbank %s/MedBank --out %s "
                        "--progress 0 >%s.log 2>&1",
                        bin(), syn, b, b),
                     0);
    assert_same_results(a, b);
    snprintf(p, sizeof p, "%s/summary.json", a);
    char *s = slurp(p);
    assert_non_null(strstr(s, "\"overall\": {\"tasks\": 21,"));
    free(s);
    snprintf(a, sizeof a, "%s", temp_path("synth_ext1"));
    snprintf(b, sizeof b, "%s", temp_path("synth_ext2"));
    assert_int_equal(sh("%s run --model box --manifest %s/external10.yaml --data-root %s --out %s --progress 0 >%s.log 2>&1",
                        bin(), syn, syn, a, a),
                     0);
    assert_int_equal(sh("mpirun -np 2 --oversubscribe --bind-to none %s run --model box --manifest %s/external10.yaml "
                        "--data-root %s --out %s --progress 0 >%s.log 2>&1",
                        bin(), syn, syn, b, b),
                     0);
    assert_same_results(a, b);
    snprintf(p, sizeof p, "%s/summary.json", a);
    s = slurp(p);
    assert_non_null(strstr(s, "\"overall\": {\"tasks\": 10,"));
    /* an MSD task: NIfTI volumes with spacing -> statistics over cases (n = cases < slices) */
    char *sp = strstr(s, "\"task\": \"Spleen\"");
    assert_non_null(sp);
    int slices = 0, cases = 0, failed = 0, n = 0;
    assert_int_equal(sscanf(strstr(sp, "\"slices\""), "\"slices\": %d, \"cases\": %d, \"failed\": %d, \"dice\": {\"n\": %d",
                            &slices, &cases, &failed, &n),
                     4);
    assert_int_equal(failed, 0);
    assert_int_equal(n, cases);
    assert_true(slices > cases);
    free(s);
}

/* sb_eval_unit without MPI (and under LeakSanitizer in process): with no jitter the box covers the
 * mask, so fn = 0 and tp = gt on the native grid for every slice of a non-empty mask. */
static void test_eval_in_process(void **state)
{
    (void)state;
    sb_units units;
    sb_error err;
    assert_sb_ok(err, sb_units_medbank(&units, g_root, "test", SB_PROTO_VOLUME, &err));
    assert_int_equal(units.n, 13);
    assert_string_equal(units.v[0].dataset, "Aorta_MR_002");
    assert_string_equal(units.v[0].case_id, "case00");
    assert_int_equal(units.v[0].nitems, 4);
    assert_int_equal(units.v[0].items[3].slice, 4);
    sb_run_model *m;
    sb_model_opts mo = {"box", NULL, NULL, NULL, 1, SB_PROTO_VOLUME, NULL};
    assert_sb_ok(err, sb_run_model_create(&m, &mo, &err));
    sb_eval_opts eo = {SB_PROTO_VOLUME, 3, 0, 0, 0.5, 2.0, NULL};
    sb_recs recs = {0};
    for (int i = 0; i < units.n; i++)
        assert_sb_ok(err, sb_eval_unit(&units.v[i], m, &eo, &recs, NULL, &err));
    assert_int_equal(recs.n, 13 + 38);
    int nonempty = 0;
    for (size_t i = 0; i < recs.n; i++) {
        const sb_rec *r = &recs.v[i];
        assert_int_equal(r->status, SB_REC_OK);
        if (r->slice >= 0 && r->gt > 0) {
            nonempty++;
            assert_int_equal(r->fn, 0);
            assert_int_equal(r->tp, r->gt);
            assert_true(r->pred >= r->gt);
            assert_true(r->surf_gt > 0 && r->surf_gt_in <= r->surf_gt);
        }
    }
    assert_int_equal(nonempty, 38 - 2); /* every 7th Liver slice is empty */
    /* a stop request abandons the unit and keeps no record */
    volatile int stop = 1;
    eo.stop = &stop;
    size_t before = recs.n;
    assert_int_equal(sb_eval_unit(&units.v[0], m, &eo, &recs, NULL, &err), SB_EUNSUPPORTED);
    assert_int_equal(recs.n, before);
    sb_recs_free(&recs);
    sb_run_model_free(m);
    sb_units_free(&units);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--gen") == 0) {
        mkdir(argv[2], 0775);
        return gen_medbank(argv[2]) == 0 ? 0 : 1;
    }
    /* Under ASan, the `sambench run` children skip the leak check at exit: Open MPI leaves thousands
     * of allocations whose frames LeakSanitizer cannot attribute to its libraries (no frame
     * pointers), and checking them costs 6-18 s per process. The run code's own allocations are
     * leak-checked in process (test_eval_in_process, and the journal/results/report tests). */
    if (!getenv("ASAN_OPTIONS"))
        setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    /* a 256 x 256 model grid for the box baseline keeps these many runs fast (make demo, bench and
     * test-slurm use the real 1024) */
    setenv("SAMBENCH_BOX_SIZE", "256", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_journal_api),
        cmocka_unit_test(test_eval_in_process),
        cmocka_unit_test(test_rank_counts_identical),
        cmocka_unit_test(test_sigterm_then_resume),
        cmocka_unit_test(test_sigkill_one_rank_then_resume),
        cmocka_unit_test(test_torn_journal_resume),
        cmocka_unit_test(test_failing_volume),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_report_rerender),
        cmocka_unit_test(test_synth_data),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
