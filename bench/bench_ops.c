/*
 * bench_ops: GFLOP/s of the tensor-op core on the GEMM shapes of SAMed-2 at
 * 1024x1024 and on blocked attention, at 1 and 2 threads, each as a ratio to
 * this machine's square-SGEMM peak measured in the same run at the same
 * thread count (issue 2 goals: GEMM-shaped work >= 0.85, attention >= 0.60).
 *
 * The machine is shared, so the peak is not measured once: every case's
 * repetitions are interleaved with repetitions of a 2048^3 sgemm at the same
 * thread count, in the same process, and the ratio is median(case GFLOP/s) /
 * median(square GFLOP/s) of those interleaved runs; slow drifts of the
 * available CPU then cancel. The square row is the median over all cases.
 *
 * Memory: every case also runs once in a separate forked child that does
 * nothing else, and "peak RSS" is that child's ru_maxrss (from wait4): the
 * case's inputs, outputs, BLAS buffers and scratch plus the process baseline
 * (the "baseline" row: a child that allocates nothing). "scratch" is the
 * extra memory the op itself asked for (the arena peak of sb_attention; 0 for
 * sb_linear). Times are medians of several repetitions after one warm-up.
 *
 *   bench_ops [--threads 1,2] [--reps N] [--bq N --bk N] [--only TEXT] [--quick]
 * (--bq/--bk: attention block sizes, default the library's; --only: cases
 * whose "name shape" contains TEXT; --quick: skip the 16384-key attention)
 * SAMBENCH_BENCH_THREADS="1 2" overrides the thread list as well.
 */
#include "../core/sambench.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum kind { K_BASELINE, K_SQUARE, K_LINEAR, K_ATTN };

typedef struct {
    enum kind kind;
    const char *name;
    int64_t M, K, N; /* linear: M x K x N; attention: Lq, Lk, head_dim; square: n */
} bench_case;

typedef struct {
    double gflops;      /* median of the case */
    double peak_gflops; /* median of the interleaved square sgemm */
    double ratio;       /* gflops / peak_gflops */
    double ms;
    double scratch_mib;
    int ok;
} case_result;

#define SQUARE_N 2048
#define MAX_REPS 64

static int g_reps = 5;
static int64_t g_bq = 0, g_bk = 0;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static float *alloc_fill(size_t n, unsigned seed, float scale)
{
    float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    if (!p)
        return NULL;
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = scale * ((float)(s >> 8) / 16777216.0f - 0.5f);
    }
    return p;
}

/* The buffers and arguments of one case. */
typedef struct {
    const bench_case *c;
    sb_ctx *ctx;
    float *a, *b, *bias, *y;
    sb_attn_args args;
    sb_arena *arena;
    double flops;
} case_state;

static void state_free(case_state *st)
{
    free(st->a);
    free(st->b);
    free(st->bias);
    free(st->y);
    sb_arena_free(st->arena);
}

static int state_init(case_state *st, const bench_case *c, sb_ctx *ctx, int threads)
{
    memset(st, 0, sizeof *st);
    st->c = c;
    st->ctx = ctx;
    sb_error err;
    switch (c->kind) {
    case K_BASELINE:
        return 0;
    case K_SQUARE: {
        int64_t n = c->M;
        st->a = alloc_fill((size_t)(n * n), 1, 1.0f);
        st->b = alloc_fill((size_t)(n * n), 2, 1.0f);
        st->y = alloc_fill((size_t)(n * n), 3, 1.0f);
        st->flops = 2.0 * (double)n * (double)n * (double)n;
        return st->a && st->b && st->y ? 0 : -1;
    }
    case K_LINEAR:
        st->a = alloc_fill((size_t)(c->M * c->K), 1, 1.0f);
        st->b = alloc_fill((size_t)(c->N * c->K), 2, 0.1f);
        st->bias = alloc_fill((size_t)c->N, 3, 0.1f);
        st->y = alloc_fill((size_t)(c->M * c->N), 4, 1.0f);
        st->flops = 2.0 * (double)c->M * (double)c->K * (double)c->N;
        return st->a && st->b && st->bias && st->y ? 0 : -1;
    case K_ATTN: {
        int64_t Lq = c->M, Lk = c->K, hd = c->N;
        st->a = alloc_fill((size_t)(Lq * hd), 1, 1.0f);     /* q */
        st->b = alloc_fill((size_t)(2 * Lk * hd), 2, 1.0f); /* k then v */
        st->y = alloc_fill((size_t)(Lq * hd), 4, 1.0f);
        if (!st->a || !st->b || !st->y)
            return -1;
        sb_attn_args *g = &st->args;
        g->batch = 1;
        g->heads = 1;
        g->Lq = Lq;
        g->Lk = Lk;
        g->head_dim = hd;
        g->q = st->a;
        g->q_row = hd;
        g->q_batch = Lq * hd;
        g->k = st->b;
        g->k_row = hd;
        g->k_batch = Lk * hd;
        g->v = st->b + Lk * hd;
        g->v_row = hd;
        g->v_batch = Lk * hd;
        g->out = st->y;
        g->o_row = hd;
        g->o_batch = Lq * hd;
        g->scale = 1.0f / sqrtf((float)hd);
        g->block_q = g_bq;
        g->block_k = g_bk;
        if (sb_arena_create(&st->arena, sb_attention_scratch_bytes(g, threads), &err) != SB_OK) {
            fprintf(stderr, "bench_ops: %s\n", err.msg);
            return -1;
        }
        st->flops = 4.0 * (double)Lq * (double)Lk * (double)hd;
        return 0;
    }
    }
    return -1;
}

/* One run of the case; returns seconds (< 0 on error). */
static double state_run(case_state *st)
{
    const bench_case *c = st->c;
    sb_error err;
    double t0 = sb_clock_seconds();
    switch (c->kind) {
    case K_BASELINE:
        break;
    case K_SQUARE:
        sb_gemm(0, 0, c->M, c->M, c->M, 1.0f, st->a, c->M, st->b, c->M, 0.0f, st->y, c->M);
        break;
    case K_LINEAR:
        sb_linear(st->ctx, st->a, c->M, c->K, st->b, st->bias, c->N, st->y);
        break;
    case K_ATTN:
        if (sb_attention(st->ctx, &st->args, st->arena, &err) != SB_OK) {
            fprintf(stderr, "bench_ops: %s\n", err.msg);
            return -1;
        }
        break;
    }
    return sb_clock_seconds() - t0;
}

/* Runs one case in this (child) process: once (memory mode) or timed,
 * interleaved with the square sgemm. */
static case_result run_case(const bench_case *c, int threads, int timed)
{
    case_result r = {0, 0, 0, 0, 0, 0};
    sb_error err;
    sb_ctx *ctx = NULL;
    if (sb_ctx_create(&ctx, threads, &err) != SB_OK) {
        fprintf(stderr, "bench_ops: %s\n", err.msg);
        return r;
    }
    case_state st, sq;
    static const bench_case square = {K_SQUARE, "square", SQUARE_N, 0, 0};
    memset(&sq, 0, sizeof sq);
    if (state_init(&st, c, ctx, threads) != 0)
        goto out;
    if (state_run(&st) < 0) /* warm-up (page faults, BLAS buffers) */
        goto out;
    if (!timed || c->kind == K_BASELINE) {
        if (st.arena)
            r.scratch_mib = (double)sb_arena_peak(st.arena) / (1024.0 * 1024.0);
        r.ok = 1;
        goto out;
    }
    if (state_init(&sq, &square, ctx, threads) != 0)
        goto out;
    state_run(&sq);
    int reps = g_reps;
    if (st.flops > 2e10 && reps > 3)
        reps = 3; /* the 4096 x 16384 x 256 attention: ~0.6 s per run */
    double tc[MAX_REPS], rate[MAX_REPS], peak[MAX_REPS];
    for (int i = 0; i < reps; i++) {
        double ts = state_run(&sq);
        tc[i] = state_run(&st);
        if (tc[i] < 0)
            goto out;
        rate[i] = st.flops / tc[i] * 1e-9;
        peak[i] = sq.flops / ts * 1e-9;
    }
    r.ms = 1e3 * median(tc, reps);
    r.gflops = median(rate, reps);
    r.peak_gflops = median(peak, reps);
    r.ratio = r.gflops / r.peak_gflops;
    r.ok = 1;
out:
    state_free(&st);
    state_free(&sq);
    sb_ctx_free(ctx);
    return r;
}

/* Forks, runs the case in the child, returns its result and max RSS (MiB). */
static case_result run_forked(const bench_case *c, int threads, int timed, double *rss_mib)
{
    case_result r = {0, 0, 0, 0, 0, 0};
    int fd[2];
    *rss_mib = 0;
    if (pipe(fd) != 0)
        return r;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        return r;
    }
    if (pid == 0) {
        close(fd[0]);
        case_result cr = run_case(c, threads, timed);
        ssize_t w = write(fd[1], &cr, sizeof cr);
        close(fd[1]);
        _exit(w == (ssize_t)sizeof cr ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], &r, sizeof r);
    close(fd[0]);
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
        ;
    if (got != (ssize_t)sizeof r || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        r.ok = 0;
    *rss_mib = (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
    return r;
}

static void shape_str(const bench_case *c, char *buf, size_t n)
{
    switch (c->kind) {
    case K_BASELINE: snprintf(buf, n, "-"); break;
    case K_SQUARE: snprintf(buf, n, "%lldx%lldx%lld", (long long)c->M, (long long)c->M, (long long)c->M); break;
    case K_LINEAR: snprintf(buf, n, "%lldx%lldx%lld", (long long)c->M, (long long)c->K, (long long)c->N); break;
    case K_ATTN: snprintf(buf, n, "%lldq x %lldk x %lld", (long long)c->M, (long long)c->K, (long long)c->N); break;
    }
}

static int parse_threads(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s)
            break;
        if (v > 0 && v <= 256)
            out[n++] = (int)v;
        s = end;
        while (*s == ',' || *s == ' ')
            s++;
    }
    return n;
}

int main(int argc, char **argv)
{
    int threads[8] = {1, 2};
    int nthreads = 2;
    int quick = 0;
    const char *only = NULL; /* run only cases whose "name shape" contains this */
    const char *env = getenv("SAMBENCH_BENCH_THREADS");
    if (env && *env) {
        int n = parse_threads(env, threads, 8);
        if (n > 0)
            nthreads = n;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            int n = parse_threads(argv[++i], threads, 8);
            if (n > 0)
                nthreads = n;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            g_reps = atoi(argv[++i]);
            if (g_reps < 1)
                g_reps = 1;
            if (g_reps > MAX_REPS)
                g_reps = MAX_REPS;
        } else if (!strcmp(argv[i], "--bq") && i + 1 < argc) {
            g_bq = atoll(argv[++i]);
        } else if (!strcmp(argv[i], "--bk") && i + 1 < argc) {
            g_bk = atoll(argv[++i]);
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else {
            fprintf(stderr, "usage: bench_ops [--threads 1,2] [--reps N] [--bq N --bk N] [--only TEXT] [--quick]\n");
            return 2;
        }
    }

    static const bench_case cases[] = {
        {K_BASELINE, "baseline (empty child)", 0, 0, 0},
        {K_SQUARE, "sgemm square", SQUARE_N, 0, 0},
        {K_LINEAR, "linear", 65536, 96, 288},
        {K_LINEAR, "linear", 16384, 192, 576},
        {K_LINEAR, "linear", 4096, 384, 1152},
        {K_LINEAR, "linear", 4096, 384, 1536},
        {K_LINEAR, "linear", 1024, 768, 3072},
        {K_LINEAR, "linear", 4096, 256, 2048},
        {K_ATTN, "attention 1 head", 4096, 4096, 64},
        {K_ATTN, "attention 1 head", 4096, 16384, 256},
    };
    const int ncases = (int)(sizeof cases / sizeof cases[0]);

    printf("bench_ops: OpenBLAS core %s (%s)\n", sb_blas_corename(), sb_blas_config());
    printf("sb_linear with bias (flops 2*M*K*N); attention 1 head, no bias (flops 4*Lq*Lk*hd)\n");
    printf("ratio = median case GFLOP/s / median %d^3 sgemm GFLOP/s, the two interleaved rep by rep\n"
           "  in one process at the same thread count; goals: linear >= 0.85, attention >= 0.60\n",
           SQUARE_N);
    printf("peak RSS = max RSS of a forked child that runs only that case once; scratch = arena peak\n");
    printf("median of %d reps (3 for the 4096x16384x256 attention)%s\n\n", g_reps,
           quick ? ", quick mode (no 16384-key attention)" : "");
    printf("%-24s %-22s %3s %8s %8s %6s %9s %12s %11s\n", "case", "shape (MxKxN)", "thr", "GFLOP/s",
           "peak", "ratio", "time_ms", "peak_RSS_MiB", "scratch_MiB");

    int status = 0;
    for (int t = 0; t < nthreads; t++) {
        double peaks[16];
        int npeaks = 0;
        for (int i = 0; i < ncases; i++) {
            const bench_case *c = &cases[i];
            if (quick && c->kind == K_ATTN && c->K > 4096)
                continue;
            char shape[64];
            shape_str(c, shape, sizeof shape);
            if (only && c->kind != K_BASELINE) {
                char label[160];
                snprintf(label, sizeof label, "%s %s", c->name, shape);
                if (!strstr(label, only))
                    continue;
            }
            double rss = 0, rss_t = 0;
            case_result m = run_forked(c, threads[t], 0, &rss);
            case_result r = c->kind == K_BASELINE ? m : run_forked(c, threads[t], 1, &rss_t);
            if (!r.ok || !m.ok) {
                printf("%-24s %-22s %3d   FAILED\n", c->name, shape, threads[t]);
                status = 1;
                continue;
            }
            if (c->kind == K_BASELINE) {
                printf("%-24s %-22s %3d %8s %8s %6s %9s %12.1f %11s\n", c->name, shape, threads[t],
                       "-", "-", "-", "-", rss, "-");
                continue;
            }
            peaks[npeaks++] = r.peak_gflops;
            printf("%-24s %-22s %3d %8.1f %8.1f %6.2f %9.2f %12.1f %11.2f\n", c->name, shape,
                   threads[t], r.gflops, r.peak_gflops, r.ratio, r.ms, rss, m.scratch_mib);
            fflush(stdout);
        }
        if (npeaks > 0) {
            char shape[64];
            snprintf(shape, sizeof shape, "%dx%dx%d", SQUARE_N, SQUARE_N, SQUARE_N);
            printf("%-24s %-22s %3d %8.1f %8s %6s\n", "sgemm square (all runs)", shape, threads[t],
                   median(peaks, npeaks), "-", "-");
        }
        printf("\n");
    }
    return status;
}
