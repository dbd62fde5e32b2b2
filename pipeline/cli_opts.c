/* The option parser every subcommand with hand-written options shares: one
 * table per command, the same messages and exit status for every bad value. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int sb_parse_int(const char *s, long lo, long hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || end == s || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int sb_parse_double(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

int sb_parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (*s == '-' || *s == '+')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !end || *end || end == s)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

int sb_opt_parse_u64_given(const char *value, void *dst)
{
    sb_opt_u64_given *g = dst;
    if (sb_parse_u64(value, &g->v))
        return -1;
    g->given = 1;
    return 0;
}

/* 0 when the value fits the option */
static int set_value(const sb_opt *o, const char *v)
{
    switch (o->kind) {
    case SB_OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case SB_OPT_LIST: {
        sb_opt_list *l = o->dst;
        if (l->n >= l->max)
            return -1;
        l->v[l->n++] = v;
        return 0;
    }
    case SB_OPT_INT:
        return sb_parse_int(v, (long)o->lo, (long)o->hi, (int *)o->dst);
    case SB_OPT_U64:
        return sb_parse_u64(v, (uint64_t *)o->dst);
    case SB_OPT_DOUBLE: {
        double d;
        if (sb_parse_double(v, &d) || d < o->lo || d > o->hi)
            return -1;
        *(double *)o->dst = d;
        return 0;
    }
    case SB_OPT_FN:
        return o->parse(v, o->dst);
    }
    return -1;
}

int sb_opts_parse(const char *cmd, int argc, char **argv, const sb_opt *opts, sb_opt_list *pos,
                  void (*usage)(FILE *))
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        /* "--name=value" as getopt_long accepts it */
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const sb_opt *o = NULL;
        for (const sb_opt *q = opts; q->name && !o; q++)
            if (strlen(q->name) == nlen && !strncmp(a, q->name, nlen))
                o = q;
        if (!o) {
            if (a[0] == '-' && a[1] != '\0') {
                fprintf(stderr, "sambench %s: unknown option '%s' (see sambench %s --help)\n", cmd, a, cmd);
                return SB_EXIT_USAGE;
            }
            if (!pos || pos->n >= pos->max) {
                fprintf(stderr, "sambench %s: unexpected argument '%s' (see sambench %s --help)\n", cmd, a, cmd);
                return SB_EXIT_USAGE;
            }
            pos->v[pos->n++] = a;
            continue;
        }
        if (o->kind == SB_OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "sambench %s: %s takes no value\n", cmd, o->name);
                return SB_EXIT_USAGE;
            }
            *(int *)o->dst = 1;
            continue;
        }
        if (!eq && i + 1 >= argc) {
            fprintf(stderr, "sambench %s: %s needs a value\n", cmd, a);
            return SB_EXIT_USAGE;
        }
        const char *v = eq ? eq + 1 : argv[++i];
        if (set_value(o, v)) {
            if (o->kind == SB_OPT_LIST)
                fprintf(stderr, "sambench %s: %s: at most %d\n", cmd, o->name, ((sb_opt_list *)o->dst)->max);
            else
                fprintf(stderr, "sambench %s: %s %s: expected %s\n", cmd, o->name, v, o->expect ? o->expect : "a value");
            return SB_EXIT_USAGE;
        }
    }
    return 0;
}
