/* bert_fast.c — the same forward as bert_naive.c with the fast kernels. What changes is only
 * which kernels run (each names its own optimizations): the model's own steps are a gather
 * of B rows and B*E tanh, nothing worth a thread. The mask is built once per call, not per
 * layer, and every buffer is the caller's (bert_acts_init): a forward allocates nothing. The
 * training forward and the backward (chapter 07) are the same steps as naive's on the fast
 * kernels, in the caller's BertTrainActs and scratch: a training step allocates nothing either
 * (the kernels' own scratch is the arena's). */
#include "bert.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "layernorm.h"
#include "matmul.h"
#include "positional.h"

void bert_forward_fast(BertActs *a, const int64_t *input_ids, const int64_t *attention_mask,
                       const int64_t *token_type_ids, const BertWeights *w,
                       const BertConfig *cfg)
{
    const size_t B = a->B, T = a->T, E = cfg->hidden_size, L = cfg->num_hidden_layers;
    const size_t H = cfg->num_attention_heads, I = cfg->intermediate_size, BTE = B * T * E;

    embeddings_forward_fast(a->emb, NULL, input_ids, NULL, token_type_ids, w->word_embeddings,
                            w->position_embeddings, w->token_type_embeddings, B, T, E,
                            cfg->vocab_size, cfg->max_position_embeddings, cfg->type_vocab_size);
    layernorm_forward_fast(a->hidden, NULL, NULL, a->emb, w->emb_ln_w, w->emb_ln_b,
                           cfg->layer_norm_eps, B * T, E);

    AttnMask mask = {a->mask, T * T, 0, NULL, 0};
    if (attention_mask) {
        for (size_t b = 0; b < B; b++) {   /* row 0 of batch b, then copied to its T rows */
            float *m0 = a->mask + b * T * T;
            for (size_t j = 0; j < T; j++)
                m0[j] = (float)(1 - attention_mask[b * T + j]) * -FLT_MAX;
            for (size_t i = 1; i < T; i++)
                for (size_t j = 0; j < T; j++)
                    m0[i * T + j] = m0[j];
        }
    }

    for (size_t l = 0; l < L; l++) {
        float *probs = a->probs ? a->probs + l * B * H * T * T : NULL;
        encoder_layer_forward_fast(a->hidden + (l + 1) * BTE, probs, a->scratch,
                                   a->hidden + l * BTE, attention_mask ? &mask : NULL,
                                   &w->layers[l], cfg->hidden_act, 0, cfg->layer_norm_eps, B, T,
                                   E, H, I);
    }

    const float *last = a->hidden + L * BTE;
    for (size_t b = 0; b < B; b++)
        for (size_t e = 0; e < E; e++)
            a->first[b * E + e] = last[b * T * E + e];
    linear_fast(a->pooled, a->first, w->pooler_w, w->pooler_b, B, E, E);
    for (size_t i = 0; i < B * E; i++)
        a->pooled[i] = tanhf(a->pooled[i]);
}

void bert_forward_train_fast(BertTrainActs *a, const int64_t *input_ids,
                             const int64_t *attention_mask, const int64_t *token_type_ids,
                             const BertWeights *w, const BertConfig *cfg)
{
    const size_t B = a->B, T = a->T, E = cfg->hidden_size, L = cfg->num_hidden_layers;
    const size_t H = cfg->num_attention_heads, I = cfg->intermediate_size, BTE = B * T * E;

    embeddings_forward_fast(a->emb, NULL, input_ids, NULL, token_type_ids, w->word_embeddings,
                            w->position_embeddings, w->token_type_embeddings, B, T, E,
                            cfg->vocab_size, cfg->max_position_embeddings,
                            cfg->type_vocab_size);
    layernorm_forward_fast(a->hidden, a->emb_mean, a->emb_rstd, a->emb, w->emb_ln_w, w->emb_ln_b,
                           cfg->layer_norm_eps, B * T, E);   /* h_0, its statistics kept */
    a->masked = attention_mask != NULL;
    if (attention_mask)
        bert_attention_mask(a->mask, attention_mask, B, T);
    const AttnMask mask = {a->mask, T * T, 0, NULL, 0};
    for (size_t l = 0; l < L; l++)
        encoder_layer_forward_train_fast(a->hidden + (l + 1) * BTE, &a->layers[l],
                                         a->hidden + l * BTE, a->masked ? &mask : NULL,
                                         &w->layers[l], cfg->hidden_act, 0, cfg->layer_norm_eps,
                                         B, T, E, H, I);
    const float *last = a->hidden + L * BTE;
    for (size_t b = 0; b < B; b++)
        for (size_t e = 0; e < E; e++)
            a->first[b * E + e] = last[b * T * E + e];
    linear_fast(a->pooled, a->first, w->pooler_w, w->pooler_b, B, E, E);
    for (size_t i = 0; i < B * E; i++)
        a->pooled[i] = tanhf(a->pooled[i]);
}

void bert_backward_fast(const BertGrads *g, float *scratch, const float *dlast,
                        const float *dpooled, const int64_t *input_ids,
                        const int64_t *token_type_ids, const BertTrainActs *a,
                        const BertWeights *w, const BertConfig *cfg)
{
    const size_t B = a->B, T = a->T, E = cfg->hidden_size, L = cfg->num_hidden_layers;
    const size_t H = cfg->num_attention_heads, I = cfg->intermediate_size, BTE = B * T * E;
    float *dh = scratch, *dprev = dh + BTE;                       /* [B, T, E] each */
    float *dfirst = dprev + BTE, *dpre = dfirst + B * E;          /* [B, E] each */
    float *layer_scratch = dpre + B * E;

    /* d h_L: the upstream gradient, and the pooler's path into token 0 */
    if (dlast)
        for (size_t i = 0; i < BTE; i++)
            dh[i] = dlast[i];
    else
        memset(dh, 0, BTE * sizeof(float));
    if (dpooled) {
        for (size_t i = 0; i < B * E; i++)   /* tanh' = 1 - tanh^2 */
            dpre[i] = dpooled[i] * (1.0f - a->pooled[i] * a->pooled[i]);
        memset(dfirst, 0, B * E * sizeof(float));
        linear_backward_fast(dfirst, g->pooler_w, g->pooler_b, dpre, a->first, w->pooler_w, B, E,
                             E);
        for (size_t b = 0; b < B; b++)
            for (size_t e = 0; e < E; e++)
                dh[b * T * E + e] += dfirst[b * E + e];
    }

    /* the layers, last first: each one's input gradient is the next one's upstream */
    const AttnMask mask = {a->mask, T * T, 0, NULL, 0};
    for (size_t l = L; l-- > 0;) {
        memset(dprev, 0, BTE * sizeof(float));
        encoder_layer_backward_fast(dprev, &g->layers[l], layer_scratch, dh, a->hidden + l * BTE,
                                    &a->layers[l], a->masked ? &mask : NULL, &w->layers[l],
                                    cfg->hidden_act, 0, B, T, E, H, I);
        float *t = dh;
        dh = dprev;
        dprev = t;
    }

    /* h_0 = LN(emb), then the scatter-add into the tables */
    memset(dprev, 0, BTE * sizeof(float));
    layernorm_backward_fast(dprev, g->emb_ln_w, g->emb_ln_b, dh, a->emb, a->emb_mean, a->emb_rstd,
                            w->emb_ln_w, B * T, E);
    embeddings_backward_fast(g->word_embeddings, g->position_embeddings, g->token_type_embeddings,
                             NULL, dprev, input_ids, NULL, token_type_ids, cfg->pad_token_id, B,
                             T, E, cfg->vocab_size, cfg->max_position_embeddings,
                             cfg->type_vocab_size);
}
