/* Scheduling of work units: longest estimated cost first (LPT order), handed
 * out dynamically (the MPI driver uses a one-sided atomic counter; here the
 * same policy is simulated for bench/bench_schedule_sim.c). */
#include "run.h"

#include <stdlib.h>

static const double *sort_cost;
static int cmp_order(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_cost[i] != sort_cost[j])
        return sort_cost[i] < sort_cost[j] ? 1 : -1;
    return (i > j) - (i < j);
}

void sb_sched_order(const double *cost, int n, int *order)
{
    for (int i = 0; i < n; i++)
        order[i] = i;
    sort_cost = cost; /* qsort has no context argument; callers are single-threaded */
    qsort(order, (size_t)n, sizeof(int), cmp_order);
    sort_cost = NULL;
}

/* Binary min-heap of rank finish times: each fetch goes to the rank that is
 * free first, exactly what the atomic counter does in a real run. */
static void sift_down(double *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l] < h[m])
            m = l;
        if (r < n && h[r] < h[m])
            m = r;
        if (m == i)
            return;
        double t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

double sb_sched_makespan(const double *cost, const int *order, int n, int ranks, double fetch_overhead)
{
    if (ranks < 1)
        ranks = 1;
    double *h = calloc((size_t)ranks, sizeof(double));
    if (!h)
        return -1;
    for (int k = 0; k < n; k++) {
        h[0] += fetch_overhead + cost[order[k]];
        sift_down(h, ranks, 0);
    }
    double mk = 0;
    for (int r = 0; r < ranks; r++)
        if (h[r] > mk)
            mk = h[r];
    free(h);
    return mk;
}
