/*
 * The execution context: a persistent pthread pool for our own loops, and
 * the one thread setting shared with OpenBLAS (see the threading model in
 * sambench.h).
 */
#include "sambench.h"

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

struct sb_ctx {
    int threads;
    pthread_t *workers; /* threads - 1 of them; the caller is worker 0 */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    /* current job */
    sb_range_fn fn;
    void *arg;
    int64_t n;
    int64_t chunk;
    int64_t next;        /* next chunk start, under mu */
    int active;          /* workers still running the job */
    unsigned generation; /* bumps per job so workers see a new one */
    int shutdown;
};

int sb_cores_available(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    return 1;
}

int sb_default_threads(int ranks_on_node)
{
    const char *s = getenv("SAMBENCH_THREADS");
    if (s && *s) {
        char *end = NULL;
        long v = strtol(s, &end, 10);
        if (end && *end == '\0' && v > 0 && v <= 4096)
            return (int)v;
    }
    if (ranks_on_node < 1)
        ranks_on_node = 1;
    int t = sb_cores_available() / ranks_on_node;
    return t < 1 ? 1 : t;
}

static int take_chunk(sb_ctx *c, int64_t *b, int64_t *e)
{
    if (c->next >= c->n)
        return 0;
    *b = c->next;
    c->next += c->chunk;
    *e = c->next < c->n ? c->next : c->n;
    return 1;
}

typedef struct {
    sb_ctx *ctx;
    int id;
} worker_arg;

static void *worker_main(void *p)
{
    worker_arg wa = *(worker_arg *)p;
    free(p);
    sb_ctx *c = wa.ctx;
    unsigned seen = 0;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->shutdown && c->generation == seen)
            pthread_cond_wait(&c->work_cv, &c->mu);
        if (c->shutdown)
            break;
        seen = c->generation;
        int64_t b, e;
        while (take_chunk(c, &b, &e)) {
            pthread_mutex_unlock(&c->mu);
            c->fn(c->arg, b, e, wa.id);
            pthread_mutex_lock(&c->mu);
        }
        if (--c->active == 0)
            pthread_cond_signal(&c->done_cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int sb_ctx_create(sb_ctx **out, int threads, sb_error *err)
{
    *out = NULL;
    if (threads <= 0)
        threads = sb_default_threads(1);
    sb_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return sb_fail(err, SB_ENOMEM, "threads: cannot allocate the context");
    c->threads = threads;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->work_cv, NULL);
    pthread_cond_init(&c->done_cv, NULL);
    if (threads > 1) {
        c->workers = calloc((size_t)threads - 1, sizeof *c->workers);
        if (!c->workers) {
            sb_ctx_free(c);
            return sb_fail(err, SB_ENOMEM, "threads: cannot allocate %d workers", threads);
        }
        for (int i = 1; i < threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa || (wa->ctx = c, wa->id = i,
                        pthread_create(&c->workers[i - 1], NULL, worker_main, wa) != 0)) {
                free(wa);
                c->threads = i; /* only i-1 workers exist; free joins those */
                sb_ctx_free(c);
                return sb_fail(err, SB_ENOMEM, "threads: cannot start worker thread %d of %d", i,
                               threads);
            }
        }
    }
    openblas_set_num_threads(threads);
    *out = c;
    return SB_OK;
}

void sb_ctx_free(sb_ctx *c)
{
    if (!c)
        return;
    if (c->workers) {
        pthread_mutex_lock(&c->mu);
        c->shutdown = 1;
        pthread_cond_broadcast(&c->work_cv);
        pthread_mutex_unlock(&c->mu);
        for (int i = 1; i < c->threads; i++)
            pthread_join(c->workers[i - 1], NULL);
        free(c->workers);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->work_cv);
    pthread_cond_destroy(&c->done_cv);
    free(c);
}

int sb_ctx_threads(const sb_ctx *c) { return c ? c->threads : 1; }

void sb_parallel_for(sb_ctx *c, int64_t n, int64_t grain, sb_range_fn fn, void *arg)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (!c || c->threads <= 1 || n <= grain) {
        fn(arg, 0, n, 0);
        return;
    }
    /* about 4 chunks per thread for balance, never below the grain */
    int64_t chunk = (n + 4 * (int64_t)c->threads - 1) / (4 * (int64_t)c->threads);
    if (chunk < grain)
        chunk = grain;
    pthread_mutex_lock(&c->mu);
    c->fn = fn;
    c->arg = arg;
    c->n = n;
    c->chunk = chunk;
    c->next = 0;
    c->active = c->threads - 1;
    c->generation++;
    pthread_cond_broadcast(&c->work_cv);
    int64_t b, e;
    while (take_chunk(c, &b, &e)) {
        pthread_mutex_unlock(&c->mu);
        fn(arg, b, e, 0);
        pthread_mutex_lock(&c->mu);
    }
    while (c->active > 0)
        pthread_cond_wait(&c->done_cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

const char *sb_blas_corename(void) { return openblas_get_corename(); }
const char *sb_blas_config(void) { return openblas_get_config(); }
