/* ch04_layernorm.c — chapter 04's benchmark cases: LayerNorm over the last dimension.
 *
 * Dimensions (layernorm.h): N rows (B*T tokens), E the normalized width.
 *   out[n,e] = (x[n,e] - mu_n) / sqrt(var_n + eps) * gamma[e] + beta[e],   eps = 1e-12 (BERT)
 *
 * Memory-bound: its compulsory traffic is reading x and writing out once (gamma and beta stay in
 * cache), 8 N E bytes, against the copy bandwidth, which moves the same two streams.
 *
 * Naive on big shapes: rows are independent, so naive normalizes the first Nn rows only.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>

#include "layernorm.h"

/* Flops per element of naive's three passes (mean; squared deviations; normalize and scale),
 * only to size its slice against the budget. */
#define LN_FLOPS_PER_ELEMENT 8.0

typedef struct {
    size_t N, E;
    size_t Nn;           /* rows naive computes */
    float *x;            /* [N, E] */
    float *gamma, *beta; /* [E] each */
    float *out;          /* [N, E] fast's output */
    float *naive_out;    /* [Nn, E] */
} LnState;

void bench_layernorm_teardown(void *state)
{
    LnState *s = state;
    if (!s) return;
    free(s->x);
    free(s->gamma);
    free(s->beta);
    free(s->out);
    free(s->naive_out);
    free(s);
}

int bench_layernorm_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                          char *err, size_t errlen)
{
    LnState *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    in->state = s;
    s->N = c->dims[0];
    s->E = c->dims[1];
    const double row_flops = LN_FLOPS_PER_ELEMENT * (double)s->E;
    s->Nn = s->N;
    if ((double)s->N * row_flops > budget) {
        s->Nn = (size_t)(budget / row_flops);
        if (s->Nn < 1) s->Nn = 1;
        snprintf(in->naive_note, sizeof in->naive_note, "naive: %zu of %zu rows, x%.1f", s->Nn,
                 s->N, (double)s->N / (double)s->Nn);
    }
    s->x = bench_alloc(s->N * s->E);
    s->gamma = bench_alloc(s->E);
    s->beta = bench_alloc(s->E);
    s->out = bench_alloc(s->N * s->E);
    s->naive_out = bench_alloc(s->Nn * s->E);
    if (!s->x || !s->gamma || !s->beta || !s->out || !s->naive_out) goto oom;
    bench_fill_uniform(s->x, s->N * s->E, seed, 1.0f);
    bench_fill_uniform(s->gamma, s->E, seed + 1, 1.0f);
    bench_fill_uniform(s->beta, s->E, seed + 2, 1.0f);
    in->out = s->out;
    in->naive_out = s->naive_out;
    in->n_check = s->Nn * s->E;
    in->ndim = 2;
    in->shape[0] = s->Nn;
    in->shape[1] = s->E;
    in->naive_share = (double)s->Nn / (double)s->N;
    return 0;
oom:
    snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
    return -1;
}

void bench_layernorm_naive(void *state)
{
    LnState *s = state;
    layernorm_forward_naive(s->naive_out, NULL, NULL, s->x, s->gamma, s->beta, 1e-12f, s->Nn, s->E);
}

void bench_layernorm_fast(void *state)
{
    LnState *s = state;
    layernorm_forward_fast(s->out, NULL, NULL, s->x, s->gamma, s->beta, 1e-12f, s->N, s->E);
}
