/* The shared option parser of the subcommands (pipeline/cli_opts.c): every
 * kind of option, "--name=value", positional arguments, and each way an
 * argument list can be wrong (status 2, nothing half-applied that matters). */
#include "util_test.h"
#include "../pipeline/cli.h"

#include <math.h>
#include <string.h>

static void no_usage(FILE *f) { fputs("usage: test\n", f); }

static int parse_even(const char *v, void *dst)
{
    int x;
    if (sb_parse_int(v, 0, 100, &x) || x % 2)
        return -1;
    *(int *)dst = x;
    return 0;
}

typedef struct {
    int flag, n, even;
    const char *name;
    uint64_t seed;
    double x;
    const char *listv[2];
    sb_opt_list list;
    const char *posv[2];
    sb_opt_list pos;
} args;

static int parse(args *a, int argc, const char *const *argv)
{
    memset(a, 0, sizeof *a);
    a->list = (sb_opt_list){a->listv, 0, 2};
    a->pos = (sb_opt_list){a->posv, 0, 2};
    a->n = 7;
    const sb_opt opts[] = {
        {"--flag", SB_OPT_FLAG, &a->flag, 0, 0, NULL, NULL},
        {"--name", SB_OPT_STR, &a->name, 0, 0, NULL, NULL},
        {"--item", SB_OPT_LIST, &a->list, 0, 0, NULL, NULL},
        {"--n", SB_OPT_INT, &a->n, 1, 10, "an integer in [1, 10]", NULL},
        {"--seed", SB_OPT_U64, &a->seed, 0, 0, "a non-negative integer", NULL},
        {"--x", SB_OPT_DOUBLE, &a->x, 0, 1, "a number in [0, 1]", NULL},
        {"--even", SB_OPT_FN, &a->even, 0, 0, "an even number", parse_even},
        {NULL, 0, NULL, 0, 0, NULL, NULL},
    };
    return sb_opts_parse("test", argc, (char **)argv, opts, &a->pos, no_usage);
}

static void test_cli_accepts(void **state)
{
    (void)state;
    args a;
    const char *argv[] = {"test", "P1", "--flag", "--name", "abc", "--item", "i1", "--item=i2", "--n=10",
                          "--seed", "18446744073709551615", "--x", "0.25", "--even", "42", "P2"};
    assert_int_equal(parse(&a, 16, argv), 0);
    assert_int_equal(a.flag, 1);
    assert_string_equal(a.name, "abc");
    assert_int_equal(a.list.n, 2);
    assert_string_equal(a.listv[0], "i1");
    assert_string_equal(a.listv[1], "i2");
    assert_int_equal(a.n, 10);
    assert_true(a.seed == UINT64_MAX);
    assert_true(a.x == 0.25);
    assert_int_equal(a.even, 42);
    assert_int_equal(a.pos.n, 2);
    assert_string_equal(a.posv[0], "P1");
    assert_string_equal(a.posv[1], "P2");
    /* defaults survive when an option is absent; "-" is a positional argument (stdin) */
    const char *argv2[] = {"test", "-"};
    assert_int_equal(parse(&a, 2, argv2), 0);
    assert_int_equal(a.n, 7);
    assert_int_equal(a.pos.n, 1);
    /* --help prints the usage and says so */
    const char *argv3[] = {"test", "--n", "3", "--help"};
    assert_int_equal(parse(&a, 4, argv3), 1);
}

static void test_cli_rejects(void **state)
{
    (void)state;
    args a;
    const char *bad[][4] = {
        {"--n", "0"},            /* below the range */
        {"--n", "11"},           /* above */
        {"--n", "3x"},           /* trailing garbage */
        {"--n", ""},             /* empty */
        {"--seed", "-1"},        /* negative */
        {"--seed", "99999999999999999999"}, /* overflows 64 bits */
        {"--x", "nan"},          /* not finite */
        {"--x", "1.5"},          /* out of range */
        {"--even", "3"},         /* the callback says no */
        {"--flag=1"},            /* a flag takes no value */
        {"--name"},              /* value missing */
        {"--bogus", "1"},        /* unknown option */
        {"--nam", "x"},          /* a prefix is not the option */
        {"A", "B"},              /* third positional (with "C" below) */
        {"--item", "1"},         /* third list item (with the two below) */
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        const char *argv[8] = {"test"};
        int argc = 1;
        for (int j = 0; j < 4 && bad[k][j]; j++)
            argv[argc++] = bad[k][j];
        if (k == 13)
            argv[argc++] = "C";
        if (k == 14) {
            argv[argc++] = "--item=2";
            argv[argc++] = "--item=3";
        }
        int rc = parse(&a, argc, argv);
        if (rc != SB_EXIT_USAGE)
            fail_msg("case %zu (%s %s): status %d, expected %d", k, bad[k][0], bad[k][1] ? bad[k][1] : "", rc,
                     SB_EXIT_USAGE);
    }
    int x;
    assert_int_equal(sb_parse_int("-5", -10, 10, &x), 0);
    assert_int_equal(x, -5);
    double d;
    assert_int_equal(sb_parse_double("1e308", &d), 0);
    assert_int_not_equal(sb_parse_double("1e999", &d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_accepts),
        cmocka_unit_test(test_cli_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
