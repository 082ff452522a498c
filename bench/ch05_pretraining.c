/* ch05_pretraining.c — chapter 05's benchmark cases: the masked-LM loss, i.e. cross-entropy of
 * the logits with ignore_index = -100.
 *
 * Dimensions (pretraining.h): N token rows, V vocabulary, S rows whose label is kept.
 *   loss = (1/S) sum_{n: y_n != -100} ( logsumexp_v z[n,v] - z[n, y_n] )
 *
 * Labels: row n is kept when floor((n+1) k / 100) > floor(n k / 100), k = keep_percent: exactly
 * floor(N k / 100) rows, evenly spread (bench/torch_bench.py uses the same rule). Kept rows get
 * a random id in [0, V).
 *
 * Memory-bound: the only compulsory traffic is reading the S kept rows of logits (4 S V bytes):
 * an ignored row's loss is never needed, which is the point of the fast variant. Naive always
 * computes the whole loss (one pass over the logits: a fraction of a second).
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>

#include "pretraining.h"

typedef struct {
    size_t N, V;
    float *logits;       /* [N, V] */
    int64_t *labels;     /* [N], -100 or in [0, V) */
    float loss, naive_loss;
} CeState;

void bench_mlm_loss_teardown(void *state)
{
    CeState *s = state;
    if (!s) return;
    free(s->logits);
    free(s->labels);
    free(s);
}

int bench_mlm_loss_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                         char *err, size_t errlen)
{
    (void)budget;
    CeState *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    in->state = s;
    s->N = c->dims[0];
    s->V = c->dims[1];
    const size_t keep = c->dims[2];
    s->logits = bench_alloc(s->N * s->V);
    s->labels = malloc(s->N * sizeof *s->labels);
    if (!s->logits || !s->labels) goto oom;
    bench_fill_uniform(s->logits, s->N * s->V, seed, 4.0f);
    /* The ids come from the same generator: a second fill, mapped to [0, V). */
    float *u = bench_alloc(s->N);
    if (!u) goto oom;
    bench_fill_uniform(u, s->N, seed + 1, 1.0f);
    for (size_t n = 0; n < s->N; n++) {
        const int kept = (n + 1) * keep / 100 > n * keep / 100;
        size_t id = (size_t)((0.5f * u[n] + 0.5f) * (float)s->V);
        s->labels[n] = kept ? (int64_t)(id < s->V ? id : s->V - 1) : TFM_IGNORE_INDEX;
    }
    free(u);
    in->out = &s->loss;
    in->naive_out = &s->naive_loss;
    in->n_check = 1;
    in->ndim = 1;
    in->shape[0] = 1;
    in->naive_share = 1.0;
    return 0;
oom:
    snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
    return -1;
}

void bench_mlm_loss_naive(void *state)
{
    CeState *s = state;
    cross_entropy_naive(&s->naive_loss, NULL, s->logits, s->labels, s->N, s->V);
}

void bench_mlm_loss_fast(void *state)
{
    CeState *s = state;
    cross_entropy_fast(&s->loss, NULL, s->logits, s->labels, s->N, s->V);
}
