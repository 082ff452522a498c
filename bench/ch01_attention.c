/* ch01_attention.c — chapter 01's benchmark cases: scaled dot-product attention, with and
 * without the causal mask, and its peak memory at a long sequence.
 *
 * Dimensions (attention.h): B batch, H heads, T tokens (Tq = Tk = T), D head width (Dk = Dv).
 *   out[B,H,T,D] = softmax(Q K^T / sqrt(D) (+ causal mask)) V
 *
 * Both variants run with probs == NULL: that is the streaming path of fast (online softmax, no
 * T x T matrix), and naive still materializes one head's T x T scores, as its formula reads.
 *
 * Useful work, counted for GFLOP/s: 2 D flops per (query, key) pair for Q K^T and 2 D for P V;
 * the causal mask leaves T(T+1)/2 of the T^2 pairs, so a causal row's GFLOP/s counts only the
 * pairs that matter (PyTorch's textbook version computes all T^2 and masks afterwards).
 *
 * Naive on big shapes: with no padding mask, every (b, h) slice is an independent attention, so
 * naive computes the first Hn slices of the flattened B*H and those slices of fast's output are
 * checked.
 */
#include "bench.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"

typedef struct {
    size_t B, H, T, D;
    size_t BHn;          /* (b, h) slices naive computes, of B*H */
    AttnMask mask;       /* only .causal is used */
    float *q, *k, *v;    /* [B, H, T, D] each */
    float *out;          /* [B, H, T, D] fast's output */
    float *naive_out;    /* [BHn, T, D] */
} AttnState;

void bench_attention_teardown(void *state)
{
    AttnState *s = state;
    if (!s) return;
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->out);
    free(s->naive_out);
    free(s);
}

/* How many of the BH heads naive runs within budget flops (at least one), a note when fewer
 * than all. */
static size_t naive_heads(BenchInstance *in, size_t BH, double slice_flops, double budget)
{
    if ((double)BH * slice_flops <= budget)
        return BH;
    size_t n = (size_t)(budget / slice_flops);
    if (n < 1) n = 1;
    snprintf(in->naive_note, sizeof in->naive_note, "naive: %zu of %zu heads, x%.1f", n, BH,
             (double)BH / (double)n);
    return n;
}

int bench_attention_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                          char *err, size_t errlen)
{
    AttnState *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    in->state = s;
    s->B = c->dims[0];
    s->H = c->dims[1];
    s->T = c->dims[2];
    s->D = c->dims[3];
    s->mask.causal = (int)c->dims[4];
    const size_t BH = s->B * s->H, n = BH * s->T * s->D;
    /* naive computes every T x T score of a slice, masked or not */
    s->BHn = naive_heads(in, BH, 4.0 * (double)s->T * (double)s->T * (double)s->D, budget);
    s->q = bench_alloc(n);
    s->k = bench_alloc(n);
    s->v = bench_alloc(n);
    s->out = bench_alloc(n);
    s->naive_out = bench_alloc(s->BHn * s->T * s->D);
    if (!s->q || !s->k || !s->v || !s->out || !s->naive_out) goto oom;
    bench_fill_uniform(s->q, n, seed, 1.0f);
    bench_fill_uniform(s->k, n, seed + 1, 1.0f);
    bench_fill_uniform(s->v, n, seed + 2, 1.0f);

    in->out = s->out;
    in->naive_out = s->naive_out;
    in->n_check = s->BHn * s->T * s->D;
    in->ndim = 3;
    in->shape[0] = s->BHn;
    in->shape[1] = s->T;
    in->shape[2] = s->D;
    in->naive_share = (double)s->BHn / (double)BH;
    return 0;
oom:
    snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
    return -1;
}

void bench_attention_naive(void *state)
{
    AttnState *s = state;
    const float scale = 1.0f / sqrtf((float)s->D);   /* PyTorch's default */
    attention_forward_naive(s->naive_out, NULL, s->q, s->k, s->v, &s->mask, scale, 1, s->BHn,
                            s->T, s->T, s->D, s->D);
}

void bench_attention_fast(void *state)
{
    AttnState *s = state;
    const float scale = 1.0f / sqrtf((float)s->D);   /* PyTorch's default */
    attention_forward_fast(s->out, NULL, s->q, s->k, s->v, &s->mask, scale, s->B, s->H, s->T,
                           s->T, s->D, s->D);
}

/* Peak memory of the streaming path at B=1, H=12, T=8192, D=64, where the T x T scores of all
 * heads would be 12 * 8192^2 * 4 bytes = 3 GiB. The inputs and the output are allocated and
 * touched first; then the peak RSS is reset to the current RSS and the op runs once: what the
 * peak grew by is the op's own working memory (per-thread tiles, OpenMP stacks). Falls back to
 * "peak before vs after" when the peak cannot be reset, which is an upper bound only if the
 * process has not been larger before. */
int bench_attention_memory(BenchMemory *m, int threads, char *err, size_t errlen)
{
    const size_t B = 1, H = 12, T = 8192, D = 64, n = B * H * T * D;
    snprintf(m->op, sizeof m->op, "attention");
    snprintf(m->shape, sizeof m->shape, "B%zu H%zu T%zu D%zu", B, H, T, D);
    snprintf(m->variant, sizeof m->variant, "fast, probs=NULL");
    m->inputs_bytes = 4.0 * (double)n * sizeof(float);
    m->quadratic_bytes = (double)(B * H) * (double)T * (double)T * sizeof(float);
    float *q = bench_alloc(n), *k = bench_alloc(n), *v = bench_alloc(n), *out = bench_alloc(n);
    int rc = 0;
    if (!q || !k || !v || !out) {
        snprintf(err, errlen, "attention memory probe: out of memory");
        rc = -1;
    } else {
        bench_fill_uniform(q, n, 11, 1.0f);
        bench_fill_uniform(k, n, 12, 1.0f);
        bench_fill_uniform(v, n, 13, 1.0f);
        bench_fill_uniform(out, n, 14, 1.0f);   /* touched, so its pages count before, not during */
        omp_set_num_threads(threads);
        AttnMask mask = {0};
        const int reset = bench_reset_peak_rss() == 0;
        const double before = reset ? bench_rss_bytes() : bench_peak_rss_bytes();
        attention_forward_fast(out, NULL, q, k, v, &mask, 1.0f / sqrtf((float)D), B, H, T, T, D, D);
        const double after = bench_peak_rss_bytes();
        m->growth_bytes = (before < 0 || after < 0) ? -1.0 : after - before;
        snprintf(m->method, sizeof m->method, "%s, %d threads",
                 reset ? "VmHWM after reset - VmRSS" : "VmHWM delta (no reset)", threads);
        if (!isfinite(out[0]) || !isfinite(out[n - 1])) {
            snprintf(err, errlen, "attention memory probe: non-finite output");
            rc = -1;
        }
    }
    free(q);
    free(k);
    free(v);
    free(out);
    return rc;
}

/* ---- attention-backward (chapter 07): dq, dk, dv from dout and the forward's out and lse,
 * which setup computes once with the fast training forward. Each run zeroes the gradients first
 * (the kernels accumulate; PyTorch's autograd.grad returns fresh tensors). The bench compares
 * grad_q, the part naive computes (its first BHn heads). */
typedef struct {
    size_t B, H, T, D, BHn;
    AttnMask mask;
    float *q, *k, *v, *dout, *out, *lse;   /* [B, H, T, D] each, lse [B, H, T, 2] */
    float *grads;                          /* [3, B, H, T, D]: dq, dk, dv (fast) */
    float *naive_grads;                    /* [3, BHn, T, D] */
} AttnBwdState;

void bench_attention_backward_teardown(void *state)
{
    AttnBwdState *s = state;
    if (!s) return;
    float *bufs[] = {s->q, s->k, s->v, s->dout, s->out, s->lse, s->grads, s->naive_grads};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
    free(s);
}

int bench_attention_backward_setup(BenchInstance *in, const BenchCase *c, uint64_t seed,
                                   double budget, char *err, size_t errlen)
{
    AttnBwdState *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    in->state = s;
    s->B = c->dims[0];
    s->H = c->dims[1];
    s->T = c->dims[2];
    s->D = c->dims[3];
    s->mask.causal = (int)c->dims[4];
    const size_t BH = s->B * s->H, n = BH * s->T * s->D;
    /* naive: 5 products of 2 D flops per (query, key) pair, every pair */
    s->BHn = naive_heads(in, BH, 10.0 * (double)s->T * (double)s->T * (double)s->D, budget);
    s->q = bench_alloc(n);
    s->k = bench_alloc(n);
    s->v = bench_alloc(n);
    s->dout = bench_alloc(n);
    s->out = bench_alloc(n);
    s->lse = bench_alloc(attention_lse_floats(s->B, s->H, s->T));
    s->grads = bench_alloc(3 * n);
    s->naive_grads = bench_alloc(3 * s->BHn * s->T * s->D);
    if (!s->q || !s->k || !s->v || !s->dout || !s->out || !s->lse || !s->grads ||
        !s->naive_grads)
        goto oom;
    bench_fill_uniform(s->q, n, seed, 1.0f);
    bench_fill_uniform(s->k, n, seed + 1, 1.0f);
    bench_fill_uniform(s->v, n, seed + 2, 1.0f);
    bench_fill_uniform(s->dout, n, seed + 3, 1.0f);
    attention_forward_lse_fast(s->out, s->lse, s->q, s->k, s->v, &s->mask,
                               1.0f / sqrtf((float)s->D), s->B, s->H, s->T, s->T, s->D, s->D);
    in->out = s->grads;   /* grad_q */
    in->naive_out = s->naive_grads;
    in->n_check = s->BHn * s->T * s->D;
    in->ndim = 3;
    in->shape[0] = s->BHn;
    in->shape[1] = s->T;
    in->shape[2] = s->D;
    in->naive_share = (double)s->BHn / (double)BH;
    return 0;
oom:
    snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
    return -1;
}

void bench_attention_backward_naive(void *state)
{
    AttnBwdState *s = state;
    const size_t m = s->BHn * s->T * s->D;
    memset(s->naive_grads, 0, 3 * m * sizeof(float));
    attention_backward_naive(s->naive_grads, s->naive_grads + m, s->naive_grads + 2 * m, s->dout,
                             s->q, s->k, s->v, s->out, s->lse, &s->mask,
                             1.0f / sqrtf((float)s->D), 1, s->BHn, s->T, s->T, s->D, s->D);
}

void bench_attention_backward_fast(void *state)
{
    AttnBwdState *s = state;
    const size_t n = s->B * s->H * s->T * s->D;
    memset(s->grads, 0, 3 * n * sizeof(float));
    attention_backward_fast(s->grads, s->grads + n, s->grads + 2 * n, s->dout, s->q, s->k, s->v,
                            s->out, s->lse, &s->mask, 1.0f / sqrtf((float)s->D), s->B, s->H,
                            s->T, s->T, s->D, s->D);
}

/* Peak memory of the backward at B=1, H=12, T=8192, D=64, measured as the forward's (above):
 * every input, the saved out and lse and the three gradients allocated and touched first. */
int bench_attention_backward_memory(BenchMemory *m, int threads, char *err, size_t errlen)
{
    const size_t B = 1, H = 12, T = 8192, D = 64, n = B * H * T * D;
    snprintf(m->op, sizeof m->op, "attention-backward");
    snprintf(m->shape, sizeof m->shape, "B%zu H%zu T%zu D%zu", B, H, T, D);
    snprintf(m->variant, sizeof m->variant, "fast");
    m->inputs_bytes = (8.0 * (double)n + (double)attention_lse_floats(B, H, T)) * sizeof(float);
    m->quadratic_bytes = (double)(B * H) * (double)T * (double)T * sizeof(float);
    float *buf = bench_alloc(8 * n + attention_lse_floats(B, H, T));
    int rc = 0;
    if (!buf) {
        snprintf(err, errlen, "attention-backward memory probe: out of memory");
        return -1;
    }
    float *q = buf, *k = q + n, *v = k + n, *dout = v + n, *out = dout + n, *dq = out + n;
    float *dk = dq + n, *dv = dk + n, *lse = dv + n;
    bench_fill_uniform(q, 3 * n, 21, 1.0f);
    bench_fill_uniform(dout, n, 22, 1.0f);
    omp_set_num_threads(threads);
    AttnMask mask = {0};
    const float scale = 1.0f / sqrtf((float)D);
    attention_forward_lse_fast(out, lse, q, k, v, &mask, scale, B, H, T, T, D, D);
    memset(dq, 0, 3 * n * sizeof(float));   /* touched, so its pages count before */
    const int reset = bench_reset_peak_rss() == 0;
    const double before = reset ? bench_rss_bytes() : bench_peak_rss_bytes();
    attention_backward_fast(dq, dk, dv, dout, q, k, v, out, lse, &mask, scale, B, H, T, T, D, D);
    const double after = bench_peak_rss_bytes();
    m->growth_bytes = (before < 0 || after < 0) ? -1.0 : after - before;
    snprintf(m->method, sizeof m->method, "%s, %d threads",
             reset ? "VmHWM after reset - VmRSS" : "VmHWM delta (no reset)", threads);
    if (!isfinite(dq[0]) || !isfinite(dk[n - 1]) || !isfinite(dv[n - 1])) {
        snprintf(err, errlen, "attention-backward memory probe: non-finite gradient");
        rc = -1;
    }
    free(buf);
    return rc;
}
