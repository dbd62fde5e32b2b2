#include "util_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

const char *fixture_path(const char *name)
{
    static char buf[8][1024];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "tests/fixtures/%s", name);
    return p;
}

const char *temp_path(const char *name)
{
    static char buf[8][1024];
    static int next;
    const char *dir = getenv("SAMBENCH_TEST_TMP");
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", dir && *dir ? dir : "/tmp", name);
    return p;
}

int run_sambench(char **out, const char *fmt, ...)
{
    const char *bin = getenv("SAMBENCH_BIN");
    if (!bin || !*bin)
        bin = "build/bin/sambench";
    char args[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", bin, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
    }
    if (buf)
        buf[len] = '\0';
    int st = pclose(p);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++) {
        double u = (double)(splitmix64(&s) >> 11) / 9007199254740992.0;
        x[i] = (float)(lo + (hi - lo) * u);
    }
}

cmp_stats compare_f32(const char *label, const float *got, const float *ref, size_t n)
{
    cmp_stats s = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (isnan(got[i]) != isnan(ref[i]))
            d = INFINITY;
        if (d > s.max_abs)
            s.max_abs = d;
        if (fabs((double)ref[i]) > s.max_ref)
            s.max_ref = fabs((double)ref[i]);
    }
    s.max_rel = s.max_ref > 0 ? s.max_abs / s.max_ref : s.max_abs;
    printf("  %-40s n=%-9zu max_abs=%.3e max|ref|=%.3e rel=%.3e\n", label, n, s.max_abs, s.max_ref,
           s.max_rel);
    return s;
}

char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0)
        b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = '\0';
    fclose(f);
    return b;
}

int sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof cmd)
        fail_msg("sh: command longer than %zu bytes", sizeof cmd);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

float *fmalloc(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}

sb_ctx *make_ctx(int threads)
{
    sb_error err;
    sb_ctx *ctx = NULL;
    assert_sb_ok(err, sb_ctx_create(&ctx, threads, &err));
    return ctx;
}
