/*
 * sambench run: the distributed evaluation.
 *
 * Every rank scans the same data source and builds the same list of work
 * units (volumes, or datasets with --protocol reference), ordered by
 * estimated cost, longest first. Units are handed out through a one-sided
 * atomic counter (MPI_Fetch_and_op on a window at rank 0): no master rank,
 * no idle rank while work remains. Each finished unit is appended to the
 * rank's journal (RESULTS/journal/rank-N, fsync'd). At the end rank 0 merges
 * all journals into RESULTS/results.h5, sorted by (dataset, case, slice), and
 * renders the tables, so the numbers never depend on the number of ranks.
 *
 * SIGTERM / SIGUSR1: every rank abandons its current unit at the next batch
 * boundary, the counter is pushed past the end so nobody starts new work,
 * and the job exits with SB_EXIT_INTERRUPTED (75); `--resume` continues.
 */
#include "cli.h"
#include "run.h"
#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STOP_BIAS ((int64_t)1 << 40)

enum { W_NEXT = 0, W_UNITS = 1, W_SLICES = 2, W_FAILED = 3, W_N = 4 };

static volatile int g_stop = 0;
static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

typedef struct {
    const char *model, *model_config, *checkpoint, *memory_bank;
    const char *manifests[64];
    int nmanifests;
    const char *data_root, *medbank, *split, *out;
    int protocol, batch, box_jitter, empty_policy, resume;
    uint64_t seed;
    double threshold, tolerance_2d, progress;
} run_args;

static void run_usage(FILE *f)
{
    fprintf(f,
            "usage: sambench run --model NAME [--model-config CFG] [--checkpoint CKPT] [--memory-bank PKL]\n"
            "         (--manifest M [--manifest M2 ...] --data-root DIR | --medbank DIR [--split test])\n"
            "         --out RESULTS [--protocol volume|reference] [--batch 4] [--box-jitter 20] [--seed 0]\n"
            "         [--threshold 0.5] [--tolerance-2d 2] [--empty-policy nan] [--resume] [--progress SECONDS]\n\n"
            "Evaluates a model over MPI ranks (mpirun/srun, or one rank without a launcher).\n"
            "Models: box (weight-free baseline: the jittered prompt box filled), samed2, sam2, medsam2, sam, medsam.\n"
            "Writes RESULTS/results.h5, summary.{md,csv,tex,json}, per_case.csv, journal/rank-N, logs/rank-N.log.\n"
            "Exit status: 0 done, 2 bad arguments or input, 75 interrupted by SIGTERM/SIGUSR1 (rerun with --resume).\n");
}

static int parse_protocol(const char *v, void *dst)
{
    if (!strcmp(v, "volume"))
        *(int *)dst = SB_PROTO_VOLUME;
    else if (!strcmp(v, "reference"))
        *(int *)dst = SB_PROTO_REFERENCE;
    else
        return -1;
    return 0;
}

/* 0 ok, 1 help printed, 2 error printed */
static int parse_args(int argc, char **argv, run_args *a)
{
    memset(a, 0, sizeof *a);
    a->split = "test";
    a->protocol = SB_PROTO_VOLUME;
    a->batch = 4;
    a->box_jitter = 20;
    a->threshold = 0.5;
    a->tolerance_2d = 2.0;
    a->progress = 10;
    sb_opt_list manifests = {a->manifests, 0, 64};
    const sb_opt opts[] = {
        {"--model", SB_OPT_STR, &a->model, 0, 0, NULL, NULL},
        {"--model-config", SB_OPT_STR, &a->model_config, 0, 0, NULL, NULL},
        {"--checkpoint", SB_OPT_STR, &a->checkpoint, 0, 0, NULL, NULL},
        {"--memory-bank", SB_OPT_STR, &a->memory_bank, 0, 0, NULL, NULL},
        {"--manifest", SB_OPT_LIST, &manifests, 0, 0, NULL, NULL},
        {"--data-root", SB_OPT_STR, &a->data_root, 0, 0, NULL, NULL},
        {"--medbank", SB_OPT_STR, &a->medbank, 0, 0, NULL, NULL},
        {"--split", SB_OPT_STR, &a->split, 0, 0, NULL, NULL},
        {"--out", SB_OPT_STR, &a->out, 0, 0, NULL, NULL},
        {"--protocol", SB_OPT_FN, &a->protocol, 0, 0, "volume or reference", parse_protocol},
        {"--batch", SB_OPT_INT, &a->batch, 1, 1024, "an integer in [1, 1024]", NULL},
        {"--box-jitter", SB_OPT_INT, &a->box_jitter, 0, 100000, "an integer in [0, 100000]", NULL},
        {"--seed", SB_OPT_U64, &a->seed, 0, 0, "a non-negative integer", NULL},
        {"--threshold", SB_OPT_DOUBLE, &a->threshold, -HUGE_VAL, HUGE_VAL, "a number", NULL},
        {"--tolerance-2d", SB_OPT_DOUBLE, &a->tolerance_2d, 0, HUGE_VAL, "a number >= 0", NULL},
        {"--empty-policy", SB_OPT_FN, &a->empty_policy, 0, 0, "nan, one or zero", sb_run_parse_empty_policy},
        {"--resume", SB_OPT_FLAG, &a->resume, 0, 0, NULL, NULL},
        {"--progress", SB_OPT_DOUBLE, &a->progress, 0, HUGE_VAL, "seconds >= 0", NULL},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    int rc = sb_opts_parse("run", argc, argv, opts, NULL, run_usage);
    a->nmanifests = manifests.n;
    if (rc)
        return rc;
    if (!a->model) {
        fprintf(stderr, "sambench run: --model is required\n");
        return 2;
    }
    if (!a->out) {
        fprintf(stderr, "sambench run: --out RESULTS is required\n");
        return 2;
    }
    if (!a->medbank && a->nmanifests == 0) {
        fprintf(stderr, "sambench run: give --medbank DIR or --manifest M --data-root DIR\n");
        return 2;
    }
    if (a->medbank && a->nmanifests) {
        fprintf(stderr, "sambench run: --medbank and --manifest are exclusive\n");
        return 2;
    }
    if (a->nmanifests && !a->data_root) {
        fprintf(stderr, "sambench run: --manifest needs --data-root DIR\n");
        return 2;
    }
    return 0;
}

static uint64_t fingerprint(const run_args *a)
{
    char buf[8192];
    int n = snprintf(buf, sizeof buf, "%s|%s|%s|%s|%s|%s|%d|%d|%d|%llu|%.17g|%.17g", a->model,
                     a->model_config ? a->model_config : "", a->checkpoint ? a->checkpoint : "",
                     a->memory_bank ? a->memory_bank : "", a->medbank ? a->medbank : "", a->split, a->protocol,
                     a->batch, a->box_jitter, (unsigned long long)a->seed, a->threshold, a->tolerance_2d);
    for (int i = 0; i < a->nmanifests && n > 0 && (size_t)n < sizeof buf; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "|%s", a->manifests[i]);
    return sb_hash_str(buf);
}

static void fatal(const char *msg)
{
    fprintf(stderr, "sambench run: fatal: %s\n", msg);
    SB_ERR("fatal: %s", msg);
    MPI_Abort(MPI_COMM_WORLD, SB_EXIT_USAGE);
    exit(SB_EXIT_USAGE); /* not reached */
}

static int is_journal(const char *name) { return strncmp(name, "rank-", 5) == 0 && name[5]; }

/* Reads every journal in dir (sorted by name, so the merge order is fixed). */
static int read_journals(const char *dir, uint64_t fp, sb_recs *recs, sb_batches *b, char ***keys, size_t *nkeys,
                         size_t *torn, sb_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return SB_OK; /* nothing journaled yet */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_journal(de->d_name))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, sizeof(char *) * cap);
            if (!nn)
                break;
            names = nn;
        }
        names[n] = strdup(de->d_name);
        if (names[n])
            n++;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* insertion sort: few files */
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    int rc = SB_OK;
    for (size_t i = 0; i < n; i++) {
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        if (rc == SB_OK)
            rc = sb_journal_read(p, fp, recs, b, keys, nkeys, torn, err);
        free(names[i]);
    }
    free(names);
    return rc;
}

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int key_done(char **keys, size_t n, const char *key)
{
    return n && bsearch(&key, keys, n, sizeof(char *), cmp_strp) != NULL;
}

static void unit_key(const sb_unit *u, char *buf, size_t cap) { snprintf(buf, cap, "%s\t%s", u->dataset, u->case_id); }

static void fill_prov(sb_prov *p, const run_args *a, int ranks, int threads, const char *hosts, double wall,
                      double start)
{
    memset(p, 0, sizeof *p);
    snprintf(p->model, sizeof p->model, "%s", a->model);
    snprintf(p->checkpoint, sizeof p->checkpoint, "%s", a->checkpoint ? a->checkpoint : "");
    snprintf(p->bank, sizeof p->bank, "%s", a->memory_bank ? a->memory_bank : "");
    sb_error e;
    if (a->checkpoint && sb_sha256_file(a->checkpoint, p->checkpoint_sha256, &e) != SB_OK)
        p->checkpoint_sha256[0] = '\0';
    if (a->memory_bank && sb_sha256_file(a->memory_bank, p->bank_sha256, &e) != SB_OK)
        p->bank_sha256[0] = '\0';
    if (a->medbank)
        snprintf(p->source, sizeof p->source, "medbank:%s split:%s", a->medbank, a->split);
    else {
        size_t n = 0;
        n += (size_t)snprintf(p->source, sizeof p->source, "data-root:%s manifests:", a->data_root);
        for (int i = 0; i < a->nmanifests && n < sizeof p->source; i++)
            n += (size_t)snprintf(p->source + n, sizeof p->source - n, "%s%s", i ? "," : "", a->manifests[i]);
    }
    snprintf(p->protocol, sizeof p->protocol, "%s", a->protocol == SB_PROTO_REFERENCE ? "reference" : "volume");
    snprintf(p->options, sizeof p->options,
             "{\"model\": \"%s\", \"model_config\": \"%s\", \"batch\": %d, \"box_jitter\": %d, \"seed\": %llu, "
             "\"threshold\": %.17g, \"tolerance_2d\": %.17g, \"empty_policy\": \"%s\", \"split\": \"%s\", "
             "\"resume\": %s}",
             a->model, a->model_config ? a->model_config : "", a->batch, a->box_jitter, (unsigned long long)a->seed,
             a->threshold, a->tolerance_2d, sb_empty_policy_name(a->empty_policy), a->split,
             a->resume ? "true" : "false");
    snprintf(p->version, sizeof p->version, "%s", SB_VERSION_STRING);
    snprintf(p->hosts, sizeof p->hosts, "%s", hosts);
    p->ranks = ranks;
    p->threads = threads;
    p->wall_seconds = wall;
    p->start_time = start;
    p->seed = (double)a->seed;
    p->empty_policy = a->empty_policy;
}

/* rank 0: merge journals -> results.h5 -> tables */
static int merge_and_report(const run_args *a, const sb_units *units, uint64_t fp, const sb_prov *prov, sb_error *err)
{
    char jdir[4200], path[4200];
    snprintf(jdir, sizeof jdir, "%s/journal", a->out);
    sb_recs recs = {0};
    sb_batches b = {0};
    char **keys = NULL;
    size_t nkeys = 0, torn = 0;
    int rc = read_journals(jdir, fp, &recs, &b, &keys, &nkeys, &torn, err);
    if (rc == SB_OK) {
        if (nkeys > 1)
            qsort(keys, nkeys, sizeof(char *), cmp_strp);
        for (size_t i = 1; i < nkeys; i++)
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                rc = sb_fail(err, SB_EFORMAT, "%s: unit '%s' journaled twice", jdir, keys[i]);
                break;
            }
        for (int i = 0; rc == SB_OK && i < units->n; i++) {
            char k[SB_NAME_MAX + SB_CASE_MAX + 2];
            unit_key(&units->v[i], k, sizeof k);
            if (!key_done(keys, nkeys, k))
                rc = sb_fail(err, SB_EFORMAT, "%s: unit '%s' missing from the journals", jdir, k);
        }
    }
    if (rc == SB_OK) {
        sb_recs_sort(&recs);
        sb_batches_sort(&b);
        snprintf(path, sizeof path, "%s/results.h5", a->out);
        rc = sb_results_write(path, &recs, &b, prov, err);
    }
    if (rc == SB_OK) {
        /* render from what was written, exactly as `sambench report` does */
        sb_recs r2;
        sb_batches b2;
        sb_prov p2;
        rc = sb_results_read(path, &r2, &b2, &p2, err);
        if (rc == SB_OK) {
            sb_report_opts o = {a->empty_policy, 1, 1, 1, 1, a->seed, 1000};
            rc = sb_report_write(a->out, &r2, &b2, &p2, &o, err);
            sb_recs_free(&r2);
            sb_batches_free(&b2);
        }
    }
    for (size_t i = 0; i < nkeys; i++)
        free(keys[i]);
    free(keys);
    sb_recs_free(&recs);
    sb_batches_free(&b);
    return rc;
}

static void print_file(const char *path, FILE *to)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[4096];
    while (fgets(line, sizeof line, f))
        fputs(line, to);
    fclose(f);
}

/* ---- SAMed-2's base bank, once per node --------------------------------------
 * The 2-3 GB pristine bank is read once per node into an MPI-3 shared window
 * (node rank 0 reads, the node's other ranks map the same pages) and used
 * read-only by every rank; each volume's changes live in its own overlay
 * (core's sb_membank), so 64 ranks hold one copy, not 64. */
typedef struct {
    MPI_Comm node;
    MPI_Win win;
    int have_node, have_win;
    sb_bank *bank;
} node_bank;

/* Collective over MPI_COMM_WORLD (every rank calls it, with its own status so
 * far: if any rank already failed, nobody loads). */
static int node_bank_load(node_bank *nb, const char *path, int rc_in, sb_error *err)
{
    int rc = rc_in, any = 0;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any)
        return rc ? rc : sb_fail(err, SB_EINVAL, "another rank failed before the memory bank was loaded");
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &nb->node);
    nb->have_node = 1;
    int nr = 0;
    MPI_Comm_rank(nb->node, &nr);
    uint64_t bytes = 0;
    rc = sb_bank_slab_bytes(path, &bytes, err); /* every rank: its own message if the file is bad */
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, nb->node);
    if (any)
        return rc ? rc : sb_fail(err, SB_EIO, "%s: another rank of this node could not read the memory bank", path);
    void *base = NULL;
    MPI_Win_allocate_shared(nr == 0 ? (MPI_Aint)bytes : 0, 1, MPI_INFO_NULL, nb->node, &base, &nb->win);
    nb->have_win = 1;
    if (nr != 0) {
        MPI_Aint size = 0;
        int disp = 1;
        MPI_Win_shared_query(nb->win, 0, &size, &disp, &base);
    }
    MPI_Win_lock_all(MPI_MODE_NOCHECK, nb->win);
    rc = nr == 0 ? sb_bank_load_into(&nb->bank, path, base, bytes, 1, err) : SB_OK;
    MPI_Win_sync(nb->win);
    int rc0 = rc;
    MPI_Bcast(&rc0, 1, MPI_INT, 0, nb->node); /* the readers wait for the node's copy */
    MPI_Win_sync(nb->win);
    if (nr != 0)
        rc = rc0 ? sb_fail(err, rc0, "%s: the node's first rank could not load the memory bank", path)
                 : sb_bank_load_into(&nb->bank, path, base, bytes, 0, err);
    MPI_Win_unlock_all(nb->win);
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, nb->node);
    if (any && !rc)
        rc = sb_fail(err, SB_EIO, "%s: another rank of this node could not map the memory bank", path);
    return rc;
}

/* Collective over the node (every rank that called node_bank_load). */
static void node_bank_free(node_bank *nb)
{
    sb_bank_free(nb->bank);
    nb->bank = NULL;
    if (nb->have_win)
        MPI_Win_free(&nb->win);
    if (nb->have_node)
        MPI_Comm_free(&nb->node);
    nb->have_win = nb->have_node = 0;
}

int cmd_run(int argc, char **argv)
{
    run_args a;
    int prc = parse_args(argc, argv, &a);
    if (prc == 1)
        return SB_EXIT_OK;
    if (prc)
        return SB_EXIT_USAGE;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    /* re-install: some launchers' libraries set their own handlers during init */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    int rank = 0, nranks = 1, node_ranks = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &node_ranks);
    MPI_Comm_free(&node);
    const int threads = sb_default_threads(node_ranks);
    sb_log_set_rank(rank);
    double t_start = MPI_Wtime();
    time_t wall_start = time(NULL);
    sb_error err;
    sb_error_clear(&err);
    int status = SB_EXIT_OK;

    /* ---- the units: every rank builds the same list --------------------------- */
    sb_units units = {0};
    void **datas = NULL;
    int rc;
    if (a.nmanifests)
        rc = sb_units_manifests(&units, a.manifests, a.nmanifests, a.data_root, a.protocol, &datas, &err);
    else
        rc = sb_units_medbank(&units, a.medbank, a.split, a.protocol, &err);
    sb_run_model *model = NULL;
    node_bank nb;
    memset(&nb, 0, sizeof nb);
    if (!strcmp(a.model, "samed2") && a.memory_bank)
        rc = node_bank_load(&nb, a.memory_bank, rc, &err);
    sb_model_opts mo = {a.model, a.model_config, a.checkpoint, a.memory_bank, threads, a.protocol, nb.bank};
    if (rc == SB_OK)
        rc = sb_run_model_create(&model, &mo, &err);
    sb_ctx *ctx = NULL;
    if (rc == SB_OK)
        rc = sb_ctx_create(&ctx, threads, &err);
    /* every rank saw the same inputs, so the same error: report once */
    if (rc != SB_OK) {
        if (rank == 0)
            fprintf(stderr, "sambench run: %s\n", err.msg);
        sb_units_free(&units);
        sb_units_free_data(datas, a.nmanifests);
        sb_run_model_free(model);
        node_bank_free(&nb);
        sb_ctx_free(ctx);
        MPI_Finalize();
        return SB_EXIT_USAGE;
    }
    const uint64_t fp = fingerprint(&a);

    /* ---- output folders, journals ----------------------------------------------- */
    char jdir[4200], ldir[4200], path[4400];
    snprintf(jdir, sizeof jdir, "%s/journal", a.out);
    snprintf(ldir, sizeof ldir, "%s/logs", a.out);
    int ok = 1;
    if (rank == 0) {
        if (sb_mkdir_p(jdir, &err) || sb_mkdir_p(ldir, &err)) {
            fprintf(stderr, "sambench run: %s\n", err.msg);
            ok = 0;
        } else if (!a.resume) {
            /* a fresh run: journals of an earlier run (maybe with more ranks) go */
            DIR *d = opendir(jdir);
            struct dirent *de;
            while (d && (de = readdir(d)))
                if (is_journal(de->d_name)) {
                    snprintf(path, sizeof path, "%s/%s", jdir, de->d_name);
                    unlink(path);
                }
            if (d)
                closedir(d);
        }
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (!ok) {
        sb_units_free(&units);
        sb_units_free_data(datas, a.nmanifests);
        sb_run_model_free(model);
        node_bank_free(&nb);
        sb_ctx_free(ctx);
        MPI_Finalize();
        return SB_EXIT_USAGE;
    }
    snprintf(path, sizeof path, "%s/rank-%d.log", ldir, rank);
    FILE *logf = fopen(path, a.resume ? "a" : "w");
    if (logf)
        sb_log_set_stream(logf);
    SB_INFO("sambench %s run: model %s, protocol %s, %d units, rank %d of %d, %d thread(s)", SB_VERSION_STRING,
            a.model, a.protocol == SB_PROTO_REFERENCE ? "reference" : "volume", units.n, rank, nranks, threads);
    if (nb.bank) {
        int sharing = 1;
        MPI_Comm_size(nb.node, &sharing);
        SB_INFO("memory bank %s: %lld entries, %.1f MiB resident once per node, shared read-only by %d rank(s)",
                a.memory_bank, (long long)nb.bank->n, (double)nb.bank->payload_bytes / 1048576.0, sharing);
    }

    char **done = NULL;
    size_t ndone = 0, torn = 0;
    if (a.resume) {
        sb_recs tmp = {0};
        rc = read_journals(jdir, fp, &tmp, NULL, &done, &ndone, &torn, &err);
        sb_recs_free(&tmp);
        int bad = rc != SB_OK, anybad = 0;
        MPI_Allreduce(&bad, &anybad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (anybad) {
            if (rank == 0)
                fprintf(stderr, "sambench run: --resume: %s\n", bad ? err.msg : "a rank could not read the journals");
            sb_units_free(&units);
            sb_units_free_data(datas, a.nmanifests);
            sb_run_model_free(model);
        node_bank_free(&nb);
            sb_ctx_free(ctx);
            if (logf)
                fclose(logf);
            MPI_Finalize();
            return SB_EXIT_USAGE;
        }
        if (ndone > 1)
            qsort(done, ndone, sizeof(char *), cmp_strp);
        if (rank == 0)
            fprintf(stderr, "sambench run: resuming: %zu unit(s) already journaled%s\n", ndone,
                    torn ? ", torn tail record(s) dropped" : "");
    }
    MPI_Barrier(MPI_COMM_WORLD); /* all reads done before anyone truncates its journal */
    sb_journal *jr = NULL;
    snprintf(path, sizeof path, "%s/rank-%d", jdir, rank);
    if (sb_journal_open(&jr, path, a.resume, fp, &err) != SB_OK)
        fatal(err.msg);

    /* ---- the schedule: pending units, longest first ------------------------------ */
    double *cost = malloc(sizeof(double) * (size_t)(units.n + 1));
    int *order = malloc(sizeof(int) * (size_t)(units.n + 1));
    int *pending = malloc(sizeof(int) * (size_t)(units.n + 1));
    if (!cost || !order || !pending)
        fatal("out of memory");
    for (int i = 0; i < units.n; i++)
        cost[i] = units.v[i].cost = units.v[i].nitems * model->cost_per_slice;
    sb_sched_order(cost, units.n, order);
    int npending = 0;
    int64_t total_slices = 0;
    for (int i = 0; i < units.n; i++) {
        char k[SB_NAME_MAX + SB_CASE_MAX + 2];
        unit_key(&units.v[order[i]], k, sizeof k);
        if (!key_done(done, ndone, k)) {
            pending[npending++] = order[i];
            total_slices += units.v[order[i]].nitems;
        }
    }
    for (size_t i = 0; i < ndone; i++)
        free(done[i]);
    free(done);

    /* ---- the counter window at rank 0 -------------------------------------------- */
    int64_t *wbase = NULL;
    MPI_Win win;
    MPI_Win_allocate(rank == 0 ? (MPI_Aint)(W_N * sizeof(int64_t)) : 0, sizeof(int64_t), MPI_INFO_NULL,
                     MPI_COMM_WORLD, &wbase, &win);
    if (rank == 0)
        memset(wbase, 0, W_N * sizeof(int64_t));
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Win_lock_all(0, win);

    sb_eval_opts eo = {a.protocol, a.batch, a.box_jitter, a.seed, a.threshold, a.tolerance_2d, &g_stop};
    double last_progress = sb_clock_seconds(), t_loop = sb_clock_seconds();
    int64_t one = 1, my_units = 0, my_slices = 0;
    int stopped = 0;
    for (;;) {
        if (g_stop) {
            stopped = 1;
            int64_t bias = STOP_BIAS, old;
            MPI_Fetch_and_op(&bias, &old, MPI_INT64_T, 0, W_NEXT, MPI_SUM, win);
            MPI_Win_flush(0, win);
            break;
        }
        int64_t idx = 0;
        MPI_Fetch_and_op(&one, &idx, MPI_INT64_T, 0, W_NEXT, MPI_SUM, win);
        MPI_Win_flush(0, win);
        if (idx >= npending) {
            if (idx >= STOP_BIAS / 2)
                stopped = 1; /* another rank was interrupted */
            break;
        }
        const sb_unit *u = &units.v[pending[idx]];
        sb_recs recs = {0};
        sb_batches bs = {0};
        rc = sb_eval_unit(u, model, &eo, &recs, &bs, &err);
        if (rc != SB_OK) {
            sb_recs_free(&recs);
            sb_batches_free(&bs);
            if (g_stop) {
                SB_INFO("abandoned %s/%s on a signal", u->dataset, u->case_id);
                continue; /* loop top pushes the counter and leaves */
            }
            fatal(err.msg);
        }
        int failed = 0;
        for (size_t i = 0; i < recs.n; i++)
            if (recs.v[i].status != SB_REC_OK) {
                failed = 1;
                SB_WARN("%s/%s failed: %s", u->dataset, u->case_id, recs.v[i].reason);
                fprintf(stderr, "sambench run: [%d] %s/%s failed: %s\n", rank, u->dataset,
                        u->case_id[0] ? u->case_id : "*", recs.v[i].reason);
            }
        if (sb_journal_append(jr, u->dataset, u->case_id, recs.v, recs.n, bs.v, bs.n, &err) != SB_OK)
            fatal(err.msg);
        sb_recs_free(&recs);
        sb_batches_free(&bs);
        my_units++;
        my_slices += u->nitems;
        int64_t upd[3] = {1, u->nitems, failed}, old[3];
        for (int k = 0; k < 3; k++)
            MPI_Fetch_and_op(&upd[k], &old[k], MPI_INT64_T, 0, W_UNITS + k, MPI_SUM, win);
        MPI_Win_flush(0, win);
        if (rank == 0 && a.progress > 0 && sb_clock_seconds() - last_progress >= a.progress) {
            int64_t cur[3], dummy = 0;
            for (int k = 0; k < 3; k++)
                MPI_Fetch_and_op(&dummy, &cur[k], MPI_INT64_T, 0, W_UNITS + k, MPI_NO_OP, win);
            MPI_Win_flush(0, win);
            double el = sb_clock_seconds() - t_loop, rate = el > 0 ? cur[1] / el : 0;
            double eta = rate > 0 ? (total_slices - cur[1]) / rate : 0;
            fprintf(stderr, "progress: volumes %lld/%d, slices %lld/%lld, %.1f slices/s, ETA %.0f s, failures %lld\n",
                    (long long)cur[0], npending, (long long)cur[1], (long long)total_slices, rate, eta,
                    (long long)cur[2]);
            last_progress = sb_clock_seconds();
        }
    }
    MPI_Win_unlock_all(win);
    double busy = sb_clock_seconds() - t_loop;
    double infer = sb_eval_inference_seconds();
    SB_INFO("rank %d: %lld unit(s), %lld slice(s) in %.2f s%s, %.2f s of it in model inference", rank,
            (long long)my_units, (long long)my_slices, busy, stopped ? " (stopped by a signal)" : "", infer);
    double mine[2] = {infer, busy}, sums[2] = {0, 0};
    MPI_Reduce(mine, sums, 2, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    sb_journal_close(jr);
    int any_stop = 0;
    MPI_Allreduce(&stopped, &any_stop, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);

    /* host names for the provenance */
    char host[MPI_MAX_PROCESSOR_NAME] = "";
    int hl = 0;
    MPI_Get_processor_name(host, &hl);
    char *all_hosts = rank == 0 ? calloc((size_t)nranks, MPI_MAX_PROCESSOR_NAME) : NULL;
    MPI_Gather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all_hosts, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, 0, MPI_COMM_WORLD);
    MPI_Win_free(&win);

    if (any_stop) {
        status = SB_EXIT_INTERRUPTED;
        if (rank == 0)
            fprintf(stderr,
                    "sambench run: interrupted by a signal; finished units are journaled in %s; "
                    "rerun with --resume (exit %d)\n",
                    jdir, SB_EXIT_INTERRUPTED);
    } else if (rank == 0) {
        char hosts[4096] = "";
        size_t hn = 0;
        for (int r = 0; r < nranks && all_hosts; r++) {
            const char *h = all_hosts + (size_t)r * MPI_MAX_PROCESSOR_NAME;
            int seen = 0;
            for (int q = 0; q < r; q++)
                if (strcmp(h, all_hosts + (size_t)q * MPI_MAX_PROCESSOR_NAME) == 0)
                    seen = 1;
            if (!seen && hn + strlen(h) + 2 < sizeof hosts)
                hn += (size_t)snprintf(hosts + hn, sizeof hosts - hn, "%s%s", hn ? "," : "", h);
        }
        sb_prov prov;
        fill_prov(&prov, &a, nranks, threads, hosts, MPI_Wtime() - t_start, (double)wall_start);
        for (int mi = 0; datas && mi < a.nmanifests; mi++) {
            sb_data *d = datas[mi];
            int col = -1;
            for (int k = 0; k < SB_PUBLISHED_MODELS; k++)
                if (!strcmp(a.model, sb_published_model_names[k]))
                    col = k;
            for (int i = 0; col >= 0 && i < sb_data_ndatasets(d); i++) {
                const sb_dataset_spec *spec = sb_data_dataset(d, i);
                size_t len = strlen(prov.published);
                if (!isnan(spec->published_dice[col]))
                    snprintf(prov.published + len, sizeof prov.published - len, "%s%s=%.4f", len ? ";" : "",
                             spec->name, spec->published_dice[col]);
            }
        }
        if (merge_and_report(&a, &units, fp, &prov, &err) != SB_OK) {
            fprintf(stderr, "sambench run: %s\n", err.msg);
            status = SB_EXIT_USAGE;
        } else {
            snprintf(path, sizeof path, "%s/summary.md", a.out);
            print_file(path, stdout);
            double wall = MPI_Wtime() - t_start;
            fprintf(stderr, "sambench run: %d unit(s), %lld slice(s) evaluated on %d rank(s) in %.1f s; results in %s\n",
                    units.n, (long long)total_slices, nranks, wall, a.out);
            /* the share of the ranks' wall time spent outside model inference: scheduling,
             * I/O, pre-processing, metrics, journaling, the merge and the tables */
            if (wall > 0)
                fprintf(stderr,
                        "sambench run: model inference %.1f s of %.1f rank-seconds (%.1f in units): %.2f %% of the "
                        "wall time outside inference\n",
                        sums[0], wall * nranks, sums[1], 100.0 * (1.0 - sums[0] / (wall * nranks)));
        }
    }
    MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD);
    free(all_hosts);
    free(cost);
    free(order);
    free(pending);
    sb_units_free(&units);
    sb_units_free_data(datas, a.nmanifests);
    sb_run_model_free(model);
    node_bank_free(&nb);
    sb_ctx_free(ctx);
    if (logf) {
        sb_log_set_stream(NULL);
        fclose(logf);
    }
    MPI_Finalize();
    return status;
}
