/* Status values, error messages and checked arithmetic. */
#include "cwba/core.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

cwba_status cwba_fail(cwba_error *err, cwba_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        /* Keep the one-line promise even if a file name carried a newline. */
        for (char *p = err->msg; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        err->status = st;
    }
    return st;
}

void cwba_error_clear(cwba_error *err)
{
    if (err) {
        err->status = CWBA_OK;
        err->msg[0] = '\0';
    }
}

const char *cwba_status_name(cwba_status st)
{
    switch (st) {
    case CWBA_OK: return "ok";
    case CWBA_E_ARG: return "invalid argument";
    case CWBA_E_IO: return "i/o error";
    case CWBA_E_FORMAT: return "malformed input";
    case CWBA_E_NOMEM: return "out of memory";
    case CWBA_E_SHAPE: return "shape mismatch";
    case CWBA_E_UNSUPPORTED: return "unsupported";
    case CWBA_E_INTERNAL: return "internal error";
    }
    return "unknown status";
}

int cwba_size_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int cwba_size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

double cwba_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cwba_parse_int(const char *s, long *out)
{
    if (!s || !*s) return 0;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') return 0;
    *out = v;
    return 1;
}

int cwba_parse_double(const char *s, double *out)
{
    if (!s || !*s) return 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v)) return 0;
    *out = v;
    return 1;
}
