/* Statistics for the reducer and the release gate: summaries with a seeded
 * percentile bootstrap, and the Wilcoxon signed-rank test. Every sum runs in
 * a fixed order, so results never depend on ranks or threads. */
#include "run.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint64_t sb_splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t sb_hash_str(const char *s) /* FNV-1a 64 */
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double sb_quantile_sorted(const double *x, int n, double q)
{
    if (n <= 0)
        return NAN;
    double pos = q * (n - 1);
    int lo = (int)floor(pos);
    int hi = lo + 1 < n ? lo + 1 : n - 1;
    double f = pos - lo;
    return x[lo] + (x[hi] - x[lo]) * f;
}

void sb_summarize(const double *x, int n, int resamples, uint64_t seed, sb_summary *s)
{
    memset(s, 0, sizeof *s);
    s->mean = s->std = s->median = s->q1 = s->q3 = s->iqr = s->ci_lo = s->ci_hi = NAN;
    double *v = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!v)
        return;
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(x[i]))
            s->nan_count++;
        else
            v[m++] = x[i];
    }
    s->n = m;
    if (m == 0) {
        free(v);
        return;
    }
    double sum = 0;
    for (int i = 0; i < m; i++)
        sum += v[i];
    s->mean = sum / m;
    if (m > 1) {
        double ss = 0;
        for (int i = 0; i < m; i++)
            ss += (v[i] - s->mean) * (v[i] - s->mean);
        s->std = sqrt(ss / (m - 1));
    } else {
        s->std = 0.0;
    }
    /* bootstrap on the values in their given order (before sorting) */
    if (resamples > 0) {
        double *means = malloc(sizeof(double) * (size_t)resamples);
        if (means) {
            uint64_t st = seed;
            for (int r = 0; r < resamples; r++) {
                double acc = 0;
                for (int i = 0; i < m; i++) {
                    uint64_t u = sb_splitmix64(&st);
                    int k = (int)(((u >> 32) * (uint64_t)m) >> 32);
                    acc += v[k];
                }
                means[r] = acc / m;
            }
            qsort(means, (size_t)resamples, sizeof(double), cmp_double);
            s->ci_lo = sb_quantile_sorted(means, resamples, 0.025);
            s->ci_hi = sb_quantile_sorted(means, resamples, 0.975);
            free(means);
        }
    }
    qsort(v, (size_t)m, sizeof(double), cmp_double);
    s->median = sb_quantile_sorted(v, m, 0.5);
    s->q1 = sb_quantile_sorted(v, m, 0.25);
    s->q3 = sb_quantile_sorted(v, m, 0.75);
    s->iqr = s->q3 - s->q1;
    free(v);
}

typedef struct {
    double a;
    int i;
} absd;
static int cmp_absd(const void *x, const void *y)
{
    const absd *p = x, *q = y;
    if (p->a != q->a)
        return (p->a > q->a) - (p->a < q->a);
    return p->i - q->i;
}

double sb_wilcoxon_p(const double *d, int n)
{
    absd *a = malloc(sizeof(absd) * (size_t)(n > 0 ? n : 1));
    double *rank = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!a || !rank) {
        free(a);
        free(rank);
        return NAN;
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(d[i]) && d[i] != 0.0) {
            a[m].a = fabs(d[i]);
            a[m].i = i;
            m++;
        }
    if (m == 0) {
        free(a);
        free(rank);
        return 1.0;
    }
    qsort(a, (size_t)m, sizeof(absd), cmp_absd);
    int ties = 0;
    double tie_term = 0;
    for (int i = 0; i < m;) {
        int j = i;
        while (j + 1 < m && a[j + 1].a == a[i].a)
            j++;
        double r = (i + j) / 2.0 + 1.0;
        for (int k = i; k <= j; k++)
            rank[k] = r;
        int t = j - i + 1;
        if (t > 1) {
            ties = 1;
            tie_term += (double)t * t * t - t;
        }
        i = j + 1;
    }
    double rplus = 0;
    for (int k = 0; k < m; k++)
        if (d[a[k].i] > 0)
            rplus += rank[k];
    double p;
    if (!ties && m <= 50) {
        /* exact null distribution of R+ by dynamic programming over ranks 1..m */
        int maxs = m * (m + 1) / 2;
        double *cnt = calloc((size_t)maxs + 1, sizeof(double));
        if (!cnt) {
            free(a);
            free(rank);
            return NAN;
        }
        cnt[0] = 1;
        for (int r = 1; r <= m; r++)
            for (int s = maxs; s >= r; s--)
                cnt[s] += cnt[s - r];
        double total = ldexp(1.0, m);
        int rp = (int)llround(rplus);
        int lo = rp < maxs - rp ? rp : maxs - rp;
        double tail = 0;
        for (int s = 0; s <= lo; s++)
            tail += cnt[s];
        p = 2.0 * tail / total;
        if (p > 1.0)
            p = 1.0;
        free(cnt);
    } else {
        double mean = m * (m + 1) / 4.0;
        double var = m * (m + 1) * (2.0 * m + 1) / 24.0 - tie_term / 48.0;
        double z = var > 0 ? (rplus - mean) / sqrt(var) : 0.0;
        p = erfc(fabs(z) / sqrt(2.0));
    }
    free(a);
    free(rank);
    return p;
}
