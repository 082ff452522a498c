/* cli.h — what the commands of chapter 09 (src/pretrain.c, src/evaluate.c) share: their two
 * kinds of message and their option values.
 *
 *   tfm CMD: what went wrong                      cli_fail: exit status 1 (bad data, a file)
 *   tfm CMD: what was wrong (tfm CMD --help)      cli_usage: exit status 2 (the command line)
 */
#ifndef TFM_CLI_H
#define TFM_CLI_H

#include <stddef.h>
#include <stdint.h>

int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The value of option opt: a whole decimal number >= lo (cli_int, cli_size), or a number in [lo, hi]
 * (cli_float). Returns 0,
 * or cli_usage's 2 with the option named. */
int cli_int(int64_t *out, const char *cmd, const char *opt, const char *s, int64_t lo);
int cli_size(size_t *out, const char *cmd, const char *opt, const char *s, size_t lo);
int cli_float(double *out, const char *cmd, const char *opt, const char *s, double lo,
              double hi);

#endif
