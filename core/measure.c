/* Clocks and the peak resident set, for timings and the benchmarks' tables. */
#include "sambench.h"

#include <sys/resource.h>
#include <time.h>

static double ts_seconds(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return 0.0;
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double sb_clock_seconds(void) { return ts_seconds(CLOCK_MONOTONIC); }

double sb_cpu_seconds(void) { return ts_seconds(CLOCK_PROCESS_CPUTIME_ID); }

double sb_peak_rss_mib(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0.0;
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}
