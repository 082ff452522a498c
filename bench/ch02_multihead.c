/* ch02_multihead.c — chapter 02's benchmark cases: nn.MultiheadAttention's forward, as
 * self-attention (query = key = value = x), no mask, no weights returned.
 *
 * Dimensions (multihead.h): B batch, T tokens, E model width, H heads, D = E / H.
 *   out[B,T,E] = concat_h softmax(Q_h K_h^T / sqrt(D)) V_h  W_o^T + b_o,  [Q K V] = x W_in^T + b_in
 *
 * Useful work: the three input projections (2 B T E 3E flops), the attention of every head
 * (4 B T^2 E over all heads), the output projection (2 B T E E): 8 B T E^2 + 4 B T^2 E.
 * Weights are uniform in [-1/sqrt(E), 1/sqrt(E)), the scale of PyTorch's initialization, so
 * that the scores are of order one and the softmax is not saturated.
 *
 * Naive on big shapes: batch elements are independent, so naive computes the first Bn of them.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "multihead.h"

typedef struct {
    size_t B, T, E, H;
    size_t Bn;            /* batch elements naive computes */
    float *x;             /* [B, T, E] query = key = value */
    float *in_w;          /* [3E, E] */
    float *in_b;          /* [3E] */
    float *out_w;         /* [E, E] */
    float *out_b;         /* [E] */
    MhaParams p;
    float *out;           /* [B, T, E] fast's output */
    float *naive_out;     /* [Bn, T, E] */
} MhaState;

void bench_multihead_teardown(void *state)
{
    MhaState *s = state;
    if (!s) return;
    free(s->x);
    free(s->in_w);
    free(s->in_b);
    free(s->out_w);
    free(s->out_b);
    free(s->out);
    free(s->naive_out);
    free(s);
}

int bench_multihead_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                          char *err, size_t errlen)
{
    MhaState *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    in->state = s;
    s->B = c->dims[0];
    s->T = c->dims[1];
    s->E = c->dims[2];
    s->H = c->dims[3];
    const double T = (double)s->T, E = (double)s->E;
    const double batch_flops = 8.0 * T * E * E + 4.0 * T * T * E;
    s->Bn = bench_naive_batches(in, s->B, batch_flops, budget);
    const size_t n = s->B * s->T * s->E, e = s->E;
    s->x = bench_alloc(n);
    s->in_w = bench_alloc(3 * e * e);
    s->in_b = bench_alloc(3 * e);
    s->out_w = bench_alloc(e * e);
    s->out_b = bench_alloc(e);
    s->out = bench_alloc(n);
    s->naive_out = bench_alloc(s->Bn * s->T * e);
    if (!s->x || !s->in_w || !s->in_b || !s->out_w || !s->out_b || !s->out || !s->naive_out)
        goto oom;
    const float w = 1.0f / sqrtf((float)e);
    bench_fill_uniform(s->x, n, seed, 1.0f);
    bench_fill_uniform(s->in_w, 3 * e * e, seed + 1, w);
    bench_fill_uniform(s->in_b, 3 * e, seed + 2, w);
    bench_fill_uniform(s->out_w, e * e, seed + 3, w);
    bench_fill_uniform(s->out_b, e, seed + 4, w);
    s->p = (MhaParams){s->in_w, s->in_b, s->out_w, s->out_b};

    in->out = s->out;
    in->naive_out = s->naive_out;
    in->n_check = s->Bn * s->T * e;
    in->ndim = 3;
    in->shape[0] = s->Bn;
    in->shape[1] = s->T;
    in->shape[2] = e;
    in->naive_share = (double)s->Bn / (double)s->B;
    return 0;
oom:
    snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
    return -1;
}

void bench_multihead_naive(void *state)
{
    MhaState *s = state;
    multihead_forward_naive(s->naive_out, NULL, s->x, s->x, s->x, &s->p, NULL, 0, s->Bn, s->H,
                            s->T, s->T, s->E);
}

void bench_multihead_fast(void *state)
{
    MhaState *s = state;
    /* the same pointer three times: fast's packed self-attention projection */
    multihead_forward_fast(s->out, NULL, s->x, s->x, s->x, &s->p, NULL, 0, s->B, s->H, s->T, s->T,
                           s->E);
}
