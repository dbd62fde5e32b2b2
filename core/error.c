/* Error values: every fallible core function fills an sb_error. */
#include "sambench.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sb_fail(sb_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int sb_error_prefix(sb_error *err, const char *fmt, ...)
{
    if (!err)
        return SB_EINVAL;
    char prefix[SB_ERROR_MSG_MAX];
    char old[SB_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    /* snprintf into the same buffer we read from would be undefined */
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old); /* truncation is fine */
    return err->code;
}

void sb_error_clear(sb_error *err)
{
    if (err) {
        err->code = SB_OK;
        err->msg[0] = '\0';
    }
}

const char *sb_status_name(int code)
{
    switch (code) {
    case SB_OK: return "ok";
    case SB_EINVAL: return "invalid argument";
    case SB_EIO: return "I/O error";
    case SB_EFORMAT: return "bad format";
    case SB_ENOMEM: return "out of memory";
    case SB_ESHAPE: return "wrong shape";
    case SB_EKEY: return "missing key";
    case SB_EUNSUPPORTED: return "unsupported";
    case SB_ENUMERIC: return "non-finite value";
    default: return "unknown error";
    }
}
