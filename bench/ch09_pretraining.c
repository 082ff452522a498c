/* ch09_pretraining.c — bench callbacks for chapter 09: one optimizer step of BertForPreTraining
 * (pretrain.h): forward, MLM and NSP losses, backward, clipping, AdamW.
 *
 * dims [B, T, L, E, H, I], V = 30522, P = 512, G = 2: the throughput case is the tiny
 * preset at B = 32, T = 128. The batch is random ids with BERT's layout ([CLS] at 0, a [SEP] in
 * the middle and at the end, token types 0 then 1), 15% of the tokens labelled (chapter 05's
 * masking), NSP labels alternating. Each run is a whole training step on its own copy of the
 * parameters, which it moves; the step's time is what a training loop spends per step.
 *
 * Checked: the last hidden states of the first Bn sequences after each variant's first run's
 * forward (the step's forward reads the initial weights: both copies start equal). Naive runs
 * its step on those Bn sequences only and its time is scaled by B / Bn; its AdamW still visits
 * every parameter, so the scaling overstates naive's optimizer by that factor (the optimizer
 * is a few percent of a step). */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "pretrain.h"
#include "pretraining.h"

typedef struct {
    BertPretrainLayout lay;
    float *params, *params_naive;     /* [n_params] each */
    BertPretrainRun run, run_naive;   /* at B and at Bn */
    int64_t *batch;                   /* ids, mask, types, labels [B, T] each, nsp [B] */
    size_t B, Bn, T;
    float *out;                       /* [Bn, T, E] fast's h_L after its first forward */
    float *naive_out;
    int fast_done, naive_done;
    TrainRecipe recipe;
    int64_t step;
} PretrainState;

void bench_pretrain_teardown(void *state)
{
    PretrainState *s = state;
    if (!s) return;
    bert_pretrain_run_free(&s->run);
    bert_pretrain_run_free(&s->run_naive);
    free(s->params);
    free(s->params_naive);
    free(s->batch);
    free(s->out);
    free(s->naive_out);
    bert_pretrain_layout_free(&s->lay);
    free(s);
}

int bench_pretrain_setup(BenchInstance *in, const BenchCase *c, uint64_t seed, double budget,
                         char *err, size_t errlen)
{
    PretrainState *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    in->state = s;
    const size_t B = c->dims[0], T = c->dims[1], L = c->dims[2], E = c->dims[3];
    const size_t H = c->dims[4], I = c->dims[5], V = 30522;
    const BertConfig cfg = {V, E, L, H, I, 512, 2, 1e-12f, TFM_ACT_GELU, 0};
    /* naive's share: as many sequences as the budget allows, at least one */
    size_t Bn = (size_t)((double)B * budget / c->flops);
    Bn = Bn < 1 ? 1 : Bn > B ? B : Bn;
    s->B = B, s->Bn = Bn, s->T = T;
    if (bert_pretrain_layout(&s->lay, &cfg, err, errlen) != 0) {
        free(s);
        in->state = NULL;
        return -1;
    }
    const size_t n = s->lay.n_params;
    s->params = bench_alloc(n);
    s->params_naive = bench_alloc(n);
    s->batch = malloc((4 * B * T + B) * sizeof *s->batch);
    s->out = bench_alloc(Bn * T * E);
    s->naive_out = bench_alloc(Bn * T * E);
    if (!s->params || !s->params_naive || !s->batch || !s->out || !s->naive_out) goto oom;
    bert_pretrain_init(s->params, &s->lay, 0.02, seed);
    memcpy(s->params_naive, s->params, n * sizeof(float));
    if (bert_pretrain_run_init(&s->run, &s->lay, s->params, B, T, err, errlen) != 0 ||
        bert_pretrain_run_init(&s->run_naive, &s->lay, s->params_naive, Bn, T, err, errlen) != 0)
        return -1;
    int64_t *ids = s->batch, *mask = ids + B * T, *types = mask + B * T, *labels = types + B * T;
    int64_t *nsp = labels + B * T;
    for (size_t b = 0; b < B; b++) {
        for (size_t t = 0; t < T; t++) {
            const size_t i = b * T + t;
            const int sep = t == T / 2 || t == T - 1;
            ids[i] = t == 0 ? 101 : sep ? 102 : (int64_t)(1000 + (i * 7919u + seed) % (V - 1000));
            mask[i] = 1;
            types[i] = t > T / 2;
        }
        nsp[b] = (int64_t)(b % 2);
    }
    const int64_t special[3] = {101, 102, 0};
    const MlmMaskConfig mc = {0.15, 0.8, 0.1, 103, V, special, 3, seed + 7};
    int64_t *masked = malloc(B * T * sizeof *masked);
    if (!masked) goto oom;
    mlm_mask(masked, labels, ids, &mc, B * T);
    memcpy(ids, masked, B * T * sizeof *ids);
    free(masked);
    s->recipe = (TrainRecipe){1000000, 0, 1, 1e-4, 1.0, {0.9, 0.999, 1e-8, 0.01}};

    in->out = s->out;
    in->naive_out = s->naive_out;
    in->n_check = Bn * T * E;
    in->ndim = 3;
    in->shape[0] = Bn;
    in->shape[1] = T;
    in->shape[2] = E;
    in->naive_share = (double)Bn / (double)B;
    if (Bn < B)
        snprintf(in->naive_note, sizeof in->naive_note, "naive: %zu of %zu sequences, x%.1f", Bn,
                 B, (double)B / (double)Bn);
    return 0;
oom:
    snprintf(err, errlen, "%s %s: out of memory", c->op, c->shape);
    return -1;
}

static void step(PretrainState *s, int fast)
{
    BertPretrainRun *r = fast ? &s->run : &s->run_naive;
    const size_t B = r->B, T = s->T, BT = s->B * T;
    const int64_t *ids = s->batch, *mask = ids + BT, *types = mask + BT, *labels = types + BT;
    const PretrainBatch mb = {ids, mask, types, labels, labels + BT};
    StepStats st = {0};
    (fast ? bert_pretrain_step_fast : bert_pretrain_step_naive)(r, &s->recipe, s->step, &mb, &st);
    int *done = fast ? &s->fast_done : &s->naive_done;
    if (!*done) {
        /* the first run's forward read the initial weights: keep its h_L of the first Bn rows */
        const size_t E = s->lay.cfg.hidden_size, L = s->lay.cfg.num_hidden_layers;
        memcpy(fast ? s->out : s->naive_out, r->acts.hidden + L * B * T * E,
               s->Bn * T * E * sizeof(float));
        *done = 1;
    }
}

void bench_pretrain_naive(void *state) { step(state, 0); }
void bench_pretrain_fast(void *state) { step(state, 1); }
