/* The one logging function behind SB_LOG (see cli.h). */
#include "cli.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

static int log_rank = -1;
static int log_level = SB_LOG_INFO;
static FILE *log_stream = NULL;

void sb_log_set_rank(int rank) { log_rank = rank; }
void sb_log_set_level(int level) { log_level = level; }
void sb_log_set_stream(FILE *f) { log_stream = f; }

void sb_log_write(int level, const char *file, int line, const char *fmt, ...)
{
    if (level < log_level)
        return;
    FILE *out = log_stream ? log_stream : stderr;
    static const char *names[] = {"debug", "info", "warning", "error"};
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    if (log_rank >= 0 && level >= SB_LOG_ERROR)
        fprintf(out, "%s [%d] [%s:%d] %s: %s\n", stamp, log_rank, base, line, names[level], msg);
    else if (log_rank >= 0)
        fprintf(out, "%s [%d] %s: %s\n", stamp, log_rank, names[level], msg);
    else if (level >= SB_LOG_ERROR)
        fprintf(out, "%s [%s:%d] %s: %s\n", stamp, base, line, names[level], msg);
    else
        fprintf(out, "%s %s: %s\n", stamp, names[level], msg);
    fflush(out);
}

int sb_report_error(const char *cmd, const sb_error *err)
{
    fprintf(stderr, "sambench %s: %s\n", cmd, err && err->msg[0] ? err->msg : "unknown error");
    return SB_EXIT_USAGE;
}
