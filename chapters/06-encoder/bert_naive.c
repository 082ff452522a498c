/* bert_naive.c — BERT's forward as bert.h writes it, one step per line, with the naive kernels
 * of chapters 00, 03, 04 and 06; then its training forward and backward (chapter 07, bert.h),
 * the forward's steps keeping what the backward reads, and the backward those steps in
 * reverse. */
#include "bert.h"

#include <float.h>
#include <math.h>

#include "layernorm.h"
#include "matmul.h"
#include "positional.h"

void bert_forward_naive(BertActs *a, const int64_t *input_ids, const int64_t *attention_mask,
                        const int64_t *token_type_ids, const BertWeights *w,
                        const BertConfig *cfg)
{
    const size_t B = a->B, T = a->T, E = cfg->hidden_size, L = cfg->num_hidden_layers;
    const size_t H = cfg->num_attention_heads, I = cfg->intermediate_size, BTE = B * T * E;

    /* h_0 = LayerNorm((word + type) + pos), positions 0..T-1 (chapter 03's sum, chapter 04) */
    embeddings_forward_naive(a->emb, NULL, input_ids, NULL, token_type_ids, w->word_embeddings,
                             w->position_embeddings, w->token_type_embeddings, B, T, E,
                             cfg->vocab_size, cfg->max_position_embeddings,
                             cfg->type_vocab_size);
    layernorm_forward_naive(a->hidden, NULL, NULL, a->emb, w->emb_ln_w, w->emb_ln_b,
                            cfg->layer_norm_eps, B * T, E);

    /* M[b, i, j] = (1 - attention_mask[b, j]) * finfo(float32).min, the same for every query
     * i and head: stride_b = T*T, stride_h = 0 (chapter 01's AttnMask) */
    AttnMask mask = {a->mask, T * T, 0, NULL, 0};
    for (size_t b = 0; attention_mask && b < B; b++)
        for (size_t i = 0; i < T; i++)
            for (size_t j = 0; j < T; j++)
                a->mask[(b * T + i) * T + j] = (float)(1 - attention_mask[b * T + j]) * -FLT_MAX;

    /* h_l = EncoderLayer_l(h_{l-1}): post-LN, BERT's activation */
    for (size_t l = 0; l < L; l++) {
        float *probs = a->probs ? a->probs + l * B * H * T * T : NULL;
        encoder_layer_forward_naive(a->hidden + (l + 1) * BTE, probs, a->scratch,
                                    a->hidden + l * BTE, attention_mask ? &mask : NULL,
                                    &w->layers[l], cfg->hidden_act, 0, cfg->layer_norm_eps, B,
                                    T, E, H, I);
    }

    /* pooled = tanh(W_p h_L[:, 0] + b_p) */
    const float *last = a->hidden + L * BTE;
    for (size_t b = 0; b < B; b++)
        for (size_t e = 0; e < E; e++)
            a->first[b * E + e] = last[b * T * E + e];
    linear_naive(a->pooled, a->first, w->pooler_w, w->pooler_b, B, E, E);
    for (size_t i = 0; i < B * E; i++)
        a->pooled[i] = tanhf(a->pooled[i]);
}

void bert_forward_train_naive(BertTrainActs *a, const int64_t *input_ids,
                              const int64_t *attention_mask, const int64_t *token_type_ids,
                              const BertWeights *w, const BertConfig *cfg)
{
    const size_t B = a->B, T = a->T, E = cfg->hidden_size, L = cfg->num_hidden_layers;
    const size_t H = cfg->num_attention_heads, I = cfg->intermediate_size, BTE = B * T * E;

    embeddings_forward_naive(a->emb, NULL, input_ids, NULL, token_type_ids, w->word_embeddings,
                             w->position_embeddings, w->token_type_embeddings, B, T, E,
                             cfg->vocab_size, cfg->max_position_embeddings,
                             cfg->type_vocab_size);
    layernorm_forward_naive(a->hidden, a->emb_mean, a->emb_rstd, a->emb, w->emb_ln_w, w->emb_ln_b,
                            cfg->layer_norm_eps, B * T, E);   /* h_0, its statistics kept */
    a->masked = attention_mask != NULL;
    if (attention_mask)
        bert_attention_mask(a->mask, attention_mask, B, T);
    const AttnMask mask = {a->mask, T * T, 0, NULL, 0};
    for (size_t l = 0; l < L; l++)
        encoder_layer_forward_train_naive(a->hidden + (l + 1) * BTE, &a->layers[l],
                                          a->hidden + l * BTE, a->masked ? &mask : NULL,
                                          &w->layers[l], cfg->hidden_act, 0, cfg->layer_norm_eps,
                                          B, T, E, H, I);
    const float *last = a->hidden + L * BTE;
    for (size_t b = 0; b < B; b++)
        for (size_t e = 0; e < E; e++)
            a->first[b * E + e] = last[b * T * E + e];
    linear_naive(a->pooled, a->first, w->pooler_w, w->pooler_b, B, E, E);
    for (size_t i = 0; i < B * E; i++)
        a->pooled[i] = tanhf(a->pooled[i]);
}

void bert_backward_naive(const BertGrads *g, float *scratch, const float *dlast,
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
        for (size_t i = 0; i < BTE; i++)
            dh[i] = 0.0f;
    if (dpooled) {
        for (size_t i = 0; i < B * E; i++)   /* tanh' = 1 - tanh^2 */
            dpre[i] = dpooled[i] * (1.0f - a->pooled[i] * a->pooled[i]);
        for (size_t i = 0; i < B * E; i++)
            dfirst[i] = 0.0f;
        linear_backward_naive(dfirst, g->pooler_w, g->pooler_b, dpre, a->first, w->pooler_w, B, E,
                              E);
        for (size_t b = 0; b < B; b++)
            for (size_t e = 0; e < E; e++)
                dh[b * T * E + e] += dfirst[b * E + e];
    }

    /* the layers, last first: each one's input gradient is the next one's upstream */
    const AttnMask mask = {a->mask, T * T, 0, NULL, 0};
    for (size_t l = L; l-- > 0;) {
        for (size_t i = 0; i < BTE; i++)
            dprev[i] = 0.0f;
        encoder_layer_backward_naive(dprev, &g->layers[l], layer_scratch, dh, a->hidden + l * BTE,
                                     &a->layers[l], a->masked ? &mask : NULL, &w->layers[l],
                                     cfg->hidden_act, 0, B, T, E, H, I);
        float *t = dh;
        dh = dprev;
        dprev = t;
    }

    /* h_0 = LN(emb), then the scatter-add into the tables */
    for (size_t i = 0; i < BTE; i++)
        dprev[i] = 0.0f;
    layernorm_backward_naive(dprev, g->emb_ln_w, g->emb_ln_b, dh, a->emb, a->emb_mean, a->emb_rstd,
                             w->emb_ln_w, B * T, E);
    embeddings_backward_naive(g->word_embeddings, g->position_embeddings, g->token_type_embeddings,
                              NULL, dprev, input_ids, NULL, token_type_ids, cfg->pad_token_id, B,
                              T, E, cfg->vocab_size, cfg->max_position_embeddings,
                              cfg->type_vocab_size);
}
