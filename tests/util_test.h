/* Helpers shared by the cmocka tests (tests/util_test.c). */
#ifndef SB_UTIL_TEST_H
#define SB_UTIL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../core/sambench.h"

/* Path of a file under tests/fixtures (tests run from the repository root). */
const char *fixture_path(const char *name);
/* A fresh path under the per-run temporary directory. */
const char *temp_path(const char *name);
/* Runs `sambench ARGS...` (SAMBENCH_BIN) and returns its exit status; the
 * combined output goes to *out (malloc'ed, may be NULL). */
int run_sambench(char **out, const char *args_fmt, ...) __attribute__((format(printf, 2, 3)));

/* The whole file as a NUL-terminated string (malloc'ed), NULL if unreadable. */
char *slurp(const char *path);
/* Runs a shell command built like printf; its exit status, 128 + N when
 * killed by signal N. */
int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* malloc of n floats (at least one), failing the test when it cannot. */
float *fmalloc(size_t n);
/* An execution context with this many threads, failing the test on error. */
sb_ctx *make_ctx(int threads);

/* Deterministic uniform floats in [lo, hi) (splitmix64). */
void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi);

/* max |a - b| and max |a - b| / max|b| over n values; prints them with a label. */
typedef struct {
    double max_abs;
    double max_ref;
    double max_rel; /* max_abs / max_ref */
} cmp_stats;
cmp_stats compare_f32(const char *label, const float *got, const float *ref, size_t n);

/* Asserts an sb_* call returned SB_OK, printing the error message if not:
 *   sb_error err; assert_sb_ok(err, sb_h5_open(&f, path, SB_H5_READ, &err)); */
#define assert_sb_ok(err, call)                                                               \
    do {                                                                                      \
        int rc_ = (call);                                                                     \
        if (rc_ != SB_OK)                                                                     \
            fail_msg("%s -> %d: %s", #call, rc_, (err).msg);                                  \
    } while (0)

#endif
