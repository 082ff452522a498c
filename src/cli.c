/* cli.c — the commands' messages and option values (cli.h). */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void say(const char *cmd, const char *fmt, va_list ap)
{
    fprintf(stderr, "tfm %s: ", cmd);
    vfprintf(stderr, fmt, ap);
}

int cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(cmd, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (tfm %s --help)\n", cmd);
    return 2;
}

int cli_int(int64_t *out, const char *cmd, const char *opt, const char *s, int64_t lo)
{
    char *end;
    errno = 0;
    const long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo)
        return cli_usage(cmd, "%s needs an integer >= %lld, not '%s'", opt, (long long)lo, s);
    *out = v;
    return 0;
}

int cli_size(size_t *out, const char *cmd, const char *opt, const char *s, size_t lo)
{
    int64_t v;
    const int rc = cli_int(&v, cmd, opt, s, (int64_t)lo);
    if (rc == 0)
        *out = (size_t)v;
    return rc;
}

int cli_float(double *out, const char *cmd, const char *opt, const char *s, double lo,
              double hi)
{
    char *end;
    errno = 0;
    const double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi))
        return cli_usage(cmd, "%s needs a number in [%g, %g], not '%s'", opt, lo, hi, s);
    *out = v;
    return 0;
}
