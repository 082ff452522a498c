/* ch03_positional.c — chapter 03's benchmark cases: building the sinusoidal table.
 *
 * Dimensions (positional.h): T positions, E model width.
 *   PE[p, 2i] = sin(p w_i),  PE[p, 2i+1] = cos(p w_i),  w_i = 10000^(-2i/E)
 *
 * Measured as memory-bound: its compulsory traffic is writing the T x E table once, so its rate
 * is GB/s written, against the copy bandwidth. Naive always builds the whole table (one sin or
 * cos per element: a fraction of a second at the sizes of the table).
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>

#include "positional.h"

typedef struct {
    size_t T, E;
    float *out;          /* [T, E] fast's table */
    float *naive_out;    /* [T, E] */
} PeState;

void bench_positional_teardown(void *state)
{
    PeState *s = state;
    if (!s) return;
    free(s->out);
    free(s->naive_out);
    free(s);
}

int bench_positional_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                           char *err, size_t errlen)
{
    (void)seed;     /* no inputs: the table is a function of T and E alone */
    (void)budget;
    PeState *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    in->state = s;
    s->T = c->dims[0];
    s->E = c->dims[1];
    s->out = bench_alloc(s->T * s->E);
    s->naive_out = bench_alloc(s->T * s->E);
    if (!s->out || !s->naive_out) goto oom;
    in->out = s->out;
    in->naive_out = s->naive_out;
    in->n_check = s->T * s->E;
    in->ndim = 2;
    in->shape[0] = s->T;
    in->shape[1] = s->E;
    in->naive_share = 1.0;
    return 0;
oom:
    snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
    return -1;
}

void bench_positional_naive(void *state)
{
    PeState *s = state;
    pe_sinusoidal_naive(s->naive_out, NULL, s->T, s->E);
}

void bench_positional_fast(void *state)
{
    PeState *s = state;
    pe_sinusoidal_fast(s->out, NULL, s->T, s->E);
}
