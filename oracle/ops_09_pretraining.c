/* ops_09_pretraining.c — the bind of chapter 09's op: training steps of BertForPreTraining
 * (pretrain.h), from the initial weights and the batches a golden case holds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "binds.h"
#include "bert_model.h"
#include "positional.h"
#include "pretrain.h"
#include "pretrain_model.h"

typedef int (*StepFn)(BertPretrainRun *, const TrainRecipe *, int64_t, const PretrainBatch *,
                      StepStats *);

/* The output name of table tensor t after a snapshot: "<snap>.<key>" with "bert." dropped and
 * the layers stacked (layer 0's name stands for all: "encoder.layer.attention.self.query.weight"
 * [L, E, E]), as bert-backward names its gradients. Returns the layer index, or -1 for a tensor
 * outside the layers; *key points into t->name. */
static long stacked_key(char *buf, size_t len, const char *snap, const char *name)
{
    const char *k = strncmp(name, "bert.", 5) == 0 ? name + 5 : name;
    long layer = -1;
    if (strncmp(k, "encoder.layer.", 14) == 0) {
        char *rest;
        layer = strtol(k + 14, &rest, 10);
        snprintf(buf, len, "%s.encoder.layer%s", snap, rest);
    } else {
        snprintf(buf, len, "%s.%s", snap, k);
    }
    return layer;
}

/* Every parameter of params as the snapshot's outputs. */
static int snapshot(OpCall *c, const char *snap, const BertPretrainLayout *lay,
                    const float *params)
{
    const size_t L = lay->cfg.num_hidden_layers;
    char name[TFM_MAX_NAME + 32];
    for (size_t k = 0; k < lay->n_tensors; k++) {
        const BertPretrainTensor *t = &lay->tensors[k];
        const long l = stacked_key(name, sizeof name, snap, t->name);
        if (l > 0)
            continue;                              /* written with layer 0's */
        const size_t n = t->shape[0] * t->shape[1];
        if (l < 0) {
            float *o = op_output(c, name, t->ndim, t->shape);
            if (!o)
                return -1;
            memcpy(o, params + t->offset, n * sizeof(float));
            continue;
        }
        const size_t shape[3] = {L, t->shape[0], t->shape[1]};
        float *o = op_output(c, name, t->ndim + 1, shape);
        if (!o)
            return -1;
        /* layer l's copy of this tensor sits one layer's stride further on */
        const size_t stride = lay->tensors[k + 16].offset - t->offset;
        for (size_t j = 0; j < L; j++)
            memcpy(o + j * n, params + t->offset + j * stride, n * sizeof(float));
    }
    return 0;
}

/* The batches: [S, B, T] each (next_sentence_label [S, B]), S = steps * grad_accum, ids
 * within the config, masks 0/1, labels -100 or a token id, NSP labels 0, 1 or -100. */
static int check_batches(OpCall *c, const BertConfig *cfg, size_t S)
{
    const Tensor *ids = op_in(c, "input_ids");
    const size_t B = ids->shape[1], T = ids->shape[2], want[3] = {S, B, T}, wn[2] = {S, B};
    static const char *const SAME[] = {"attention_mask", "token_type_ids", "labels"};
    if (ids->shape[0] != S)
        return op_fail(c, "input_ids holds %zu micro-batches; steps * grad_accum = %zu",
                       ids->shape[0], S);
    for (size_t i = 0; i < 3; i++)
        if (!op_same_shape(op_in(c, SAME[i]), 3, want))
            return op_fail(c, "%s must be [%zu, %zu, %zu] as input_ids is", SAME[i], S, B, T);
    if (!op_same_shape(op_in(c, "next_sentence_label"), 2, wn))
        return op_fail(c, "next_sentence_label must be [%zu, %zu]", S, B);
    EmbBadId bad;
    if (embeddings_check_ids(&bad, tensor_i64(ids), NULL, tensor_i64(op_in(c, "token_type_ids")),
                             S * B, T, cfg->vocab_size, cfg->max_position_embeddings,
                             cfg->type_vocab_size) != 0) {
        char what[256];
        embeddings_bad_id_str(what, sizeof what, &bad, T);
        return op_fail(c, "%s (the config's vocab_size, max_position_embeddings, "
                       "type_vocab_size)", what);
    }
    const int64_t *am = tensor_i64(op_in(c, "attention_mask"));
    for (size_t i = 0; i < S * B * T; i++)
        if (am[i] != 0 && am[i] != 1)
            return op_fail(c, "attention_mask[%zu] is %lld; it must be 1 (attend) or 0", i,
                           (long long)am[i]);
    if (bind_check_labels(c, "labels", tensor_i64(op_in(c, "labels")), S * B * T,
                          cfg->vocab_size) ||
        bind_check_labels(c, "next_sentence_label", tensor_i64(op_in(c, "next_sentence_label")),
                          S * B, 2))
        return -1;
    return 0;
}

/* steps optimizer steps of Hugging Face's Trainer recipe (pretrain.h) from the case's
 * weights: the per-step losses, learning rates and gradient norms, and every parameter after
 * step 2 and after the last step (step 2, not 1: under warm-up step 1 runs at lr 0 and leaves
 * every weight as it was, so a snapshot there would check nothing). steps >= 2. */
int bind_pretrain_steps(OpCall *c)
{
    const Tensor *ids = op_in(c, "input_ids");
    const size_t B = ids->shape[1], T = ids->shape[2];
    TrainRecipe rc = {
        .steps = op_int(c, "steps"), .warmup = op_int(c, "warmup"),
        .grad_accum = op_int(c, "grad_accum"), .lr = op_float(c, "lr"),
        .max_grad_norm = op_float(c, "max_grad_norm"),
        .adamw = {0.9, 0.999, op_float(c, "adam_eps"), op_float(c, "weight_decay")},
    };
    const size_t S = (size_t)(rc.steps * rc.grad_accum), BT = B * T;
    BertConfig cfg;
    BertPretrainLayout lay = {0};
    BertPretrainRun run = {0};
    float *params = NULL;
    char msg[TFM_ERR_LEN];
    int rc_ = -1;
    if (tfm_bert_parse_config(&cfg, c->model->config_json, "config", msg, sizeof msg) ||
        bert_pretrain_layout(&lay, &cfg, msg, sizeof msg)) {
        op_fail(c, "%s", msg);
        goto done;
    }
    if (check_batches(c, &cfg, S))
        goto done;
    if (!(params = malloc(lay.n_params * sizeof(float) + 1))) {
        op_fail(c, "out of memory for %zu parameters", lay.n_params);
        goto done;
    }
    if (pretrain_params_from_tensors(params, &lay, c->model->weights, c->model->prefix, msg,
                                     sizeof msg) ||
        bert_pretrain_run_init(&run, &lay, params, B, T, msg, sizeof msg)) {
        op_fail(c, "%s", msg);
        goto done;
    }
    const size_t ss[1] = {(size_t)rc.steps};
    float *loss = op_output(c, "loss", 1, ss), *mlm = op_output(c, "mlm_loss", 1, ss);
    float *nsp = op_output(c, "nsp_loss", 1, ss), *lr = op_output(c, "learning_rate", 1, ss);
    float *gn = op_output(c, "grad_norm", 1, ss);
    if (!loss || !mlm || !nsp || !lr || !gn)
        goto done;
    PretrainBatch *mb = calloc((size_t)rc.grad_accum, sizeof *mb);
    if (!mb) {
        op_fail(c, "out of memory");
        goto done;
    }
    for (int64_t s = 0; s < rc.steps; s++) {
        for (int64_t k = 0; k < rc.grad_accum; k++) {
            const size_t at = (size_t)(s * rc.grad_accum + k);
            mb[k].input_ids = tensor_i64(ids) + at * BT;
            mb[k].attention_mask = tensor_i64(op_in(c, "attention_mask")) + at * BT;
            mb[k].token_type_ids = tensor_i64(op_in(c, "token_type_ids")) + at * BT;
            mb[k].labels = tensor_i64(op_in(c, "labels")) + at * BT;
            mb[k].next_sentence_label = tensor_i64(op_in(c, "next_sentence_label")) + at * B;
        }
        StepStats st = {0};
        if (KERNEL(c, StepFn)(&run, &rc, s, mb, &st) != 0) {
            op_fail(c, "step %lld: the loss is %g (mlm %g, nsp %g), the gradient norm %g",
                    (long long)s + 1, st.loss, st.mlm_loss, st.nsp_loss, st.grad_norm);
            free(mb);
            goto done;
        }
        loss[s] = (float)st.loss, mlm[s] = (float)st.mlm_loss, nsp[s] = (float)st.nsp_loss;
        lr[s] = (float)st.lr, gn[s] = (float)st.grad_norm;
        if (s == 1 && snapshot(c, "step2", &lay, params)) {
            free(mb);
            goto done;
        }
    }
    free(mb);
    rc_ = snapshot(c, "last", &lay, params);
done:
    bert_pretrain_run_free(&run);
    free(params);
    bert_pretrain_layout_free(&lay);
    return rc_;
}
