#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int srp_err_set(srp_err *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

int srp_err_prefix(srp_err *e, const char *fmt, ...) {
    if (!e) return 0;
    char old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : (size_t)n < sizeof e->msg ? (size_t)n : sizeof e->msg - 1;
    size_t room = sizeof e->msg - 1 - used;
    size_t olen = strnlen(old, sizeof old - 1);
    if (room >= 2) {
        memcpy(e->msg + used, ": ", 2);
        used += 2;
        room -= 2;
        size_t k = olen < room ? olen : room;
        memcpy(e->msg + used, old, k);
        used += k;
    }
    e->msg[used] = 0;
    return e->code;
}

const char *srp_strerror(int code) {
    switch (code) {
    case SRP_OK:
        return "ok";
    case SRP_EIO:
        return "i/o error";
    case SRP_EFORMAT:
        return "malformed input";
    case SRP_EUNSUPPORTED:
        return "unsupported";
    case SRP_ENOMEM:
        return "out of memory";
    case SRP_EINVAL:
        return "invalid argument";
    case SRP_EBACKEND:
        return "backend failure";
    case SRP_EFULL:
        return "no capacity";
    default:
        return "unknown error";
    }
}
