/* Shared declarations of the sambench command-line front end (pipeline/). */
#ifndef SB_CLI_H
#define SB_CLI_H

#include "../core/sambench.h"

#include <stdint.h>
#include <stdio.h>

/* Exit statuses shared by every subcommand (documented in README.md). */
enum {
    SB_EXIT_OK = 0,
    SB_EXIT_FAIL = 1,        /* ran, but the answer is "no" (e.g. compare found a regression) */
    SB_EXIT_USAGE = 2,       /* bad arguments or bad input file */
    SB_EXIT_INTERRUPTED = 75 /* stopped by SIGTERM/SIGUSR1 after flushing: requeue with --resume (EX_TEMPFAIL) */
};

#define SB_COMMAND(id, name, summary) int cmd_##id(int argc, char **argv);
#include "commands.def"
#undef SB_COMMAND

typedef struct {
    const char *name;
    const char *summary;
    int (*fn)(int argc, char **argv);
} sb_command;

/* The table, NULL-terminated (pipeline/commands.c). */
extern const sb_command sb_commands[];
const sb_command *sb_find_command(const char *name);

/* Logging: one macro for every message; adds a timestamp, the rank when an
 * MPI job set it, and for errors the source location. */
enum { SB_LOG_DEBUG = 0, SB_LOG_INFO = 1, SB_LOG_WARN = 2, SB_LOG_ERROR = 3 };
void sb_log_set_rank(int rank);
void sb_log_set_level(int level);
void sb_log_set_stream(FILE *f); /* default stderr */
void sb_log_write(int level, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define SB_LOG(level, ...) sb_log_write((level), __FILE__, __LINE__, __VA_ARGS__)
#define SB_INFO(...) SB_LOG(SB_LOG_INFO, __VA_ARGS__)
#define SB_WARN(...) SB_LOG(SB_LOG_WARN, __VA_ARGS__)
#define SB_ERR(...) SB_LOG(SB_LOG_ERROR, __VA_ARGS__)

/* Command-line options, one table per command (pipeline/cli_opts.c). An
 * option takes its value from the next argument ("--batch 4") or after '='
 * ("--batch=4"); a bad value is
 * "sambench <cmd>: --batch x: expected <expect>" and exit status 2. */
enum {
    SB_OPT_FLAG,   /* int *: set to 1 */
    SB_OPT_STR,    /* const char **: the argument */
    SB_OPT_LIST,   /* sb_opt_list *: appended (repeatable option) */
    SB_OPT_INT,    /* int *: an integer in [lo, hi] */
    SB_OPT_U64,    /* uint64_t *: a non-negative integer */
    SB_OPT_DOUBLE, /* double *: a finite number in [lo, hi] */
    SB_OPT_FN      /* parse(value, dst) == 0 */
};
typedef struct {
    const char **v;
    int n, max;
} sb_opt_list;
typedef struct sb_opt {
    const char *name; /* "--batch" */
    int kind;         /* SB_OPT_* */
    void *dst;
    double lo, hi;      /* SB_OPT_INT / SB_OPT_DOUBLE: accepted range, inclusive */
    const char *expect; /* what a bad value should have been: "an integer in [1, 1024]" */
    int (*parse)(const char *value, void *dst);
} sb_opt;
/* Parses argv[1..] against opts (terminated by an entry with name NULL).
 * Arguments that are not options go to *pos (NULL: they are errors).
 * Returns 0 when parsed, 1 when --help/-h printed the usage to stdout, and
 * SB_EXIT_USAGE after printing what is wrong. */
int sb_opts_parse(const char *cmd, int argc, char **argv, const sb_opt *opts, sb_opt_list *pos,
                  void (*usage)(FILE *));
/* An SB_OPT_FN target for a non-negative integer whose absence matters
 * (a required --seed, or one that overrides a stored default). */
typedef struct {
    uint64_t v;
    int given;
} sb_opt_u64_given;
int sb_opt_parse_u64_given(const char *value, void *dst);
/* Parsers for SB_OPT_FN and for values given in other places. */
int sb_parse_int(const char *s, long lo, long hi, int *out);
int sb_parse_double(const char *s, double *out); /* finite */
int sb_parse_u64(const char *s, uint64_t *out);

/* Prints "sambench <cmd>: <message>" to stderr for a failed core call and
 * returns SB_EXIT_USAGE (bad input is exit status 2 everywhere). */
int sb_report_error(const char *cmd, const sb_error *err);

#endif
