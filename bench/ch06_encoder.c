/* ch06_encoder.c — chapter 06's benchmark cases: nn.TransformerEncoderLayer's forward, post-LN
 * with GELU (BERT's layer), no mask.
 *
 * Dimensions (encoder.h): B batch, T tokens, E model width, H heads, I feed-forward width.
 * Useful work: the attention block (8 B T E^2 + 4 B T^2 E, chapter 02) and the feed-forward
 * network (4 B T E I): 2 B T (4 E^2 + 2 E I) + 4 B T^2 E. Weights are uniform in
 * [-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's initialization scale.
 *
 * Naive on big shapes: batch elements are independent, so naive computes the first Bn of them.
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert.h"
#include "encoder.h"

typedef struct {
    size_t B, T, E, H, I;
    size_t Bn;            /* batch elements naive computes */
    float *buf;           /* every parameter below, in one block */
    float *x;             /* [B, T, E] */
    EncoderLayerParams p; /* views into buf */
    float *scratch;       /* [encoder_layer_scratch_floats(B, T, E, I)] */
    float *out;           /* [B, T, E] fast's output */
    float *naive_out;     /* [Bn, T, E] */
    /* training cases only (encoder-layer-backward): */
    float *train;         /* one block for the rest: */
    float *dout;          /* [B, T, E] the upstream gradient */
    float *acts;          /* [encoder_acts_floats(B, ...)]: fast's activations (naive's: Bn) */
    float *bwd_scratch;   /* [encoder_layer_backward_scratch_floats(B, ...)] */
    float *grads;         /* [n_grads]: dsrc [B, T, E], then the parameters' (fast) */
    float *naive_grads;   /* [n_grads] (its dsrc part [Bn, T, E]) */
    size_t n_grads;
} EncState;

void bench_encoder_teardown(void *state)
{
    EncState *s = state;
    if (!s) return;
    free(s->buf);
    free(s->x);
    free(s->scratch);
    free(s->out);
    free(s->naive_out);
    free(s->train);
    free(s);
}

int bench_encoder_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                        char *err, size_t errlen)
{
    EncState *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    in->state = s;
    s->B = c->dims[0];
    s->T = c->dims[1];
    s->E = c->dims[2];
    s->H = c->dims[3];
    s->I = c->dims[4];
    const size_t E = s->E, I = s->I, n = s->B * s->T * E;
    const double T = (double)s->T, dE = (double)E, dI = (double)I;
    const double batch_flops = 2.0 * T * (4.0 * dE * dE + 2.0 * dE * dI) + 4.0 * T * T * dE;
    s->Bn = bench_naive_batches(in, s->B, batch_flops, budget);
    /* [3E, E], [3E], [E, E], [E], [I, E], [I], [E, I], [E], then four [E] LayerNorm vectors */
    const size_t sizes[12] = {3 * E * E, 3 * E, E * E, E, I * E, I, E * I, E, E, E, E, E};
    const size_t fan[12] = {E, E, E, E, E, E, I, I, 0, 0, 0, 0};   /* 0: LayerNorm, near 1 / 0 */
    size_t total = 0;
    for (int k = 0; k < 12; k++) total += sizes[k];
    s->buf = bench_alloc(total);
    s->x = bench_alloc(n);
    s->scratch = bench_alloc(encoder_layer_scratch_floats(s->B, s->T, E, I));
    s->out = bench_alloc(n);
    s->naive_out = bench_alloc(s->Bn * s->T * E);
    if (!s->buf || !s->x || !s->scratch || !s->out || !s->naive_out) goto oom;
    float *part[12];
    size_t off = 0;
    for (int k = 0; k < 12; k++) {
        part[k] = s->buf + off;
        off += sizes[k];
        bench_fill_uniform(part[k], sizes[k], seed + 1 + (uint64_t)k,
                           fan[k] ? 1.0f / sqrtf((float)fan[k]) : 0.1f);
        if (!fan[k] && k % 2 == 0)   /* the LayerNorm weights: 1 + U(-0.1, 0.1) */
            for (size_t i = 0; i < sizes[k]; i++) part[k][i] += 1.0f;
    }
    s->p = (EncoderLayerParams){{part[0], part[1], part[2], part[3]},
                                {part[4], part[5], part[6], part[7]},
                                part[8], part[9], part[10], part[11]};
    bench_fill_uniform(s->x, n, seed, 1.0f);

    in->out = s->out;
    in->naive_out = s->naive_out;
    in->n_check = s->Bn * s->T * E;
    in->ndim = 3;
    in->shape[0] = s->Bn;
    in->shape[1] = s->T;
    in->shape[2] = E;
    in->naive_share = (double)s->Bn / (double)s->B;
    return 0;
oom:
    snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
    return -1;
}

void bench_encoder_naive(void *state)
{
    EncState *s = state;
    encoder_layer_forward_naive(s->naive_out, NULL, s->scratch, s->x, NULL, &s->p, TFM_ACT_GELU, 0,
                                1e-12f, s->Bn, s->T, s->E, s->H, s->I);
}

void bench_encoder_fast(void *state)
{
    EncState *s = state;
    encoder_layer_forward_fast(s->out, NULL, s->scratch, s->x, NULL, &s->p, TFM_ACT_GELU, 0, 1e-12f,
                               s->B, s->T, s->E, s->H, s->I);
}

/* ---- The layer's training step (chapter 07): the training forward and the backward, timed
 * together, as PyTorch's layer(x) then backward. Every gradient buffer is zeroed inside the
 * run (the kernels accumulate; autograd returns fresh tensors). Useful work: the forward's, and
 * twice its products for the backward (each product's two gradients), counted in cases.c. Naive
 * runs the first Bn batch elements; their grad_src is what is checked (the weights' gradients
 * sum over the batch, so only grad_src is per element). */
int bench_encoder_train_setup(BenchInstance *in, const BenchCase *c, uint64_t seed,
                              double budget, char *err, size_t errlen)
{
    if (bench_encoder_setup(in, c, seed, budget / 3.0, err, errlen) != 0)
        return -1;
    EncState *s = in->state;
    const size_t B = s->B, T = s->T, E = s->E, H = s->H, I = s->I, n = B * T * E;
    s->n_grads = n + 3 * E * E + 3 * E + E * E + E + I * E + I + E * I + E + 4 * E;
    const size_t acts = encoder_acts_floats(B, T, E, H, I);
    const size_t scratch = encoder_layer_backward_scratch_floats(B, T, E, I);
    s->train = bench_alloc(n + acts + scratch + 2 * s->n_grads);
    if (!s->train) {
        snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
        return -1;
    }
    s->dout = s->train;
    s->acts = s->dout + n;
    s->bwd_scratch = s->acts + acts;
    s->grads = s->bwd_scratch + scratch;
    s->naive_grads = s->grads + s->n_grads;
    bench_fill_uniform(s->dout, n, seed + 99, 1.0f);
    in->out = s->grads;               /* grad_src, its first Bn batch elements */
    in->naive_out = s->naive_grads;
    return 0;
}

/* The gradient views of one block: dsrc [B, T, E], then the parameters in EncoderLayerGrads's
 * order. */
static EncoderLayerGrads grads_in(float *g, size_t B, size_t T, size_t E, size_t I)
{
    float *p = g + B * T * E;
#define TAKE(n) (p += (n), p - (n))
    EncoderLayerGrads eg;
    eg.self_attn.in_proj_weight = TAKE(3 * E * E);
    eg.self_attn.in_proj_bias = TAKE(3 * E);
    eg.self_attn.out_proj_weight = TAKE(E * E);
    eg.self_attn.out_proj_bias = TAKE(E);
    eg.ffn.w1 = TAKE(I * E);
    eg.ffn.b1 = TAKE(I);
    eg.ffn.w2 = TAKE(E * I);
    eg.ffn.b2 = TAKE(E);
    eg.norm1_w = TAKE(E);
    eg.norm1_b = TAKE(E);
    eg.norm2_w = TAKE(E);
    eg.norm2_b = TAKE(E);
#undef TAKE
    return eg;
}

static void train_step(EncState *s, int fast, size_t B, float *grads)
{
    memset(grads, 0, s->n_grads * sizeof(float));
    EncoderActs acts;
    encoder_acts_init(&acts, s->acts, B, s->T, s->E, s->H, s->I);
    const EncoderLayerGrads eg = grads_in(grads, B, s->T, s->E, s->I);
    float *out = fast ? s->out : s->naive_out;
    (fast ? encoder_layer_forward_train_fast : encoder_layer_forward_train_naive)(
        out, &acts, s->x, NULL, &s->p, TFM_ACT_GELU, 0, 1e-12f, B, s->T, s->E, s->H, s->I);
    (fast ? encoder_layer_backward_fast : encoder_layer_backward_naive)(
        grads, &eg, s->bwd_scratch, s->dout, s->x, &acts, NULL, &s->p, TFM_ACT_GELU, 0, B, s->T,
        s->E, s->H, s->I);
}

void bench_encoder_train_naive(void *state)
{
    EncState *s = state;
    train_step(s, 0, s->Bn, s->naive_grads);
}

void bench_encoder_train_fast(void *state)
{
    EncState *s = state;
    train_step(s, 1, s->B, s->grads);
}

/* ---- BERT: the whole forward (bert.h), BERT-base's config, one sequence ------------------- *
 * dims [B, T, L, E, H, I], V = 30522, P = 512, G = 2. The latency case: at B = 1 the per-op
 * overhead of a framework shows, and tfm's forward allocates nothing (its activations are
 * sized once, in setup). Naive runs the first layer only (its output is what is checked: it
 * is layer 1's hidden state of fast's run, the same weights and input); its time is scaled by
 * the number of layers. */
typedef struct {
    BertConfig cfg, cfg_naive;   /* cfg_naive: the same model cut to one layer */
    BertWeights w;
    EncoderLayerParams *layers;  /* [L] */
    float *weights;              /* every weight, one block */
    int64_t *ids;                /* [B, T] */
    float *acts, *acts_naive;    /* bert_acts_floats blocks */
    BertActs a, an;
} BertState;

void bench_bert_teardown(void *state)
{
    BertState *s = state;
    if (!s) return;
    free(s->layers);
    free(s->weights);
    free(s->ids);
    free(s->acts);
    free(s->acts_naive);
    free(s);
}

int bench_bert_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                     char *err, size_t errlen)
{
    (void)budget;
    BertState *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    in->state = s;
    const size_t B = c->dims[0], T = c->dims[1], L = c->dims[2], E = c->dims[3];
    const size_t H = c->dims[4], I = c->dims[5], V = 30522, P = 512, G = 2;
    s->cfg = (BertConfig){V, E, L, H, I, P, G, 1e-12f, TFM_ACT_GELU, 0};
    s->cfg_naive = s->cfg;
    s->cfg_naive.num_hidden_layers = 1;
    const size_t per_layer = 3 * E * E + 3 * E + E * E + E + I * E + I + E * I + E + 4 * E;
    const size_t total = (V + P + G) * E + 2 * E + E * E + E + L * per_layer;
    s->weights = bench_alloc(total);
    s->layers = calloc(L, sizeof *s->layers);
    s->ids = malloc(B * T * sizeof *s->ids);
    s->acts = bench_alloc(bert_acts_floats(&s->cfg, B, T, 0));
    s->acts_naive = bench_alloc(bert_acts_floats(&s->cfg_naive, B, T, 0));
    if (!s->weights || !s->layers || !s->ids || !s->acts || !s->acts_naive) goto oom;
    bench_fill_uniform(s->weights, total, seed + 1, 0.05f);   /* BERT's init scale, 0.02 std */
    float *p = s->weights;
#define TAKE(n) (p += (n), p - (n))
    s->w.word_embeddings = TAKE(V * E);
    s->w.position_embeddings = TAKE(P * E);
    s->w.token_type_embeddings = TAKE(G * E);
    s->w.emb_ln_w = TAKE(E);
    s->w.emb_ln_b = TAKE(E);
    s->w.pooler_w = TAKE(E * E);
    s->w.pooler_b = TAKE(E);
    for (size_t l = 0; l < L; l++) {
        EncoderLayerParams *q = &s->layers[l];
        q->self_attn.in_proj_weight = TAKE(3 * E * E);   /* one TAKE per statement: each */
        q->self_attn.in_proj_bias = TAKE(3 * E);         /* advances p */
        q->self_attn.out_proj_weight = TAKE(E * E);
        q->self_attn.out_proj_bias = TAKE(E);
        q->ffn.w1 = TAKE(I * E);
        q->ffn.b1 = TAKE(I);
        q->ffn.w2 = TAKE(E * I);
        q->ffn.b2 = TAKE(E);
        q->norm1_w = TAKE(E);
        q->norm1_b = TAKE(E);
        q->norm2_w = TAKE(E);
        q->norm2_b = TAKE(E);
    }
#undef TAKE
    s->w.layers = s->layers;
    for (size_t i = 0; i < B * T; i++)
        s->ids[i] = (int64_t)((i * 7919u + seed) % V);
    bert_acts_init(&s->a, s->acts, &s->cfg, B, T, 0);
    bert_acts_init(&s->an, s->acts_naive, &s->cfg_naive, B, T, 0);
    in->out = s->a.hidden + B * T * E;          /* layer 1's output */
    in->naive_out = s->an.hidden + B * T * E;
    in->n_check = B * T * E;
    in->ndim = 3;
    in->shape[0] = B;
    in->shape[1] = T;
    in->shape[2] = E;
    in->naive_share = 1.0 / (double)L;
    snprintf(in->naive_note, sizeof in->naive_note, "naive: 1 of %zu layers, x%zu", L, L);
    return 0;
oom:
    snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
    return -1;
}

void bench_bert_naive(void *state)
{
    BertState *s = state;
    bert_forward_naive(&s->an, s->ids, NULL, NULL, &s->w, &s->cfg_naive);
}

void bench_bert_fast(void *state)
{
    BertState *s = state;
    bert_forward_fast(&s->a, s->ids, NULL, NULL, &s->w, &s->cfg);
}
