/* bert.h — chapter 06: BERT's encoder, forward (Hugging Face BertModel's semantics, eval mode).
 *
 *   h_0     = LayerNorm((word[ids] + type[token_type_ids]) + pos[0..T-1])      (chapter 03, 04)
 *   M[b,j]  = (1 - attention_mask[b, j]) * finfo(float32).min                   added to scores
 *   h_l     = EncoderLayer_l(h_{l-1}, M), post-LN, GELU, eps = layer_norm_eps     l = 1..L
 *   pooled  = tanh(W_p h_L[:, 0] + b_p)                                          the pooler
 *
 * Dimensions: B batch, T tokens, E hidden_size, H num_attention_heads, D = E / H,
 *             I intermediate_size, L num_hidden_layers, V vocab_size,
 *             P max_position_embeddings, G type_vocab_size.
 *
 * Two masks, side by side. Hugging Face's attention_mask is 1 where a token may be attended
 * and turns into an additive mask of finfo(float32).min = -3.4e38 on the keys to ignore: a row
 * with some keys kept gives those keys all the probability (exp(-3.4e38 - m) = 0), exactly as
 * nn.MultiheadAttention's key_padding_mask (-inf) does; a row with no key kept gives
 * score + min = min for every key (the scores vanish in min's rounding), so uniform attention
 * over all keys and finite numbers, where key_padding_mask gives 0/0 = NaN (chapter 01).
 *
 * A model is weights (BertWeights, read-only) and the activations of one forward (BertActs),
 * sized once from the config, B and T, and reused for every call and across layers: the fast
 * forward allocates nothing (llm.c's scheme); the naive one lets its naive layers allocate the
 * intermediates they name.
 */
#ifndef TFM_BERT_H
#define TFM_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "encoder.h"

typedef struct {
    size_t vocab_size;              /* V */
    size_t hidden_size;             /* E */
    size_t num_hidden_layers;       /* L */
    size_t num_attention_heads;     /* H */
    size_t intermediate_size;       /* I */
    size_t max_position_embeddings; /* P */
    size_t type_vocab_size;         /* G */
    float layer_norm_eps;           /* 1e-12 in BERT */
    TfmActivation hidden_act;       /* gelu (the erf form) in BERT */
    int64_t pad_token_id;           /* 0 in BERT; the word table's padding_idx (no gradient);
                                       negative: none */
} BertConfig;

typedef struct {
    const float *word_embeddings;       /* [V, E] */
    const float *position_embeddings;   /* [P, E] */
    const float *token_type_embeddings; /* [G, E] */
    const float *emb_ln_w, *emb_ln_b;   /* [E] embeddings.LayerNorm */
    const EncoderLayerParams *layers;   /* [L]: q, k, v packed into in_proj [3E, E] */
    const float *pooler_w;              /* [E, E] pooler.dense.weight */
    const float *pooler_b;              /* [E] */
} BertWeights;

/* The activations of one forward at (B, T), one block from bert_acts_floats. */
typedef struct {
    size_t B, T;
    int attentions;     /* 1: probs is kept */
    float *hidden;      /* [L+1, B, T, E]: h_0 (embeddings), then each layer's output */
    float *emb;         /* [B, T, E] the embedding sum before its LayerNorm */
    float *mask;        /* [B, T, T] the additive mask M, broadcast over queries and heads */
    float *probs;       /* [L, B, H, T, T] the attention probabilities, or NULL */
    float *first;       /* [B, E] h_L[:, 0] */
    float *pooled;      /* [B, E] pooler_output */
    float *scratch;     /* [encoder_layer_scratch_floats(B, T, E, I)] */
} BertActs;

/* Floats the activations need, and their layout in a caller's block of that many floats. */
size_t bert_acts_floats(const BertConfig *cfg, size_t B, size_t T, int attentions);
void bert_acts_init(BertActs *a, float *block, const BertConfig *cfg, size_t B, size_t T,
                    int attentions);

/* The forward. ids must be valid (0 <= id < V, type < G, T <= P: the caller checks, as
 * chapter 03's embeddings_check_ids does); attention_mask and token_type_ids may be NULL
 * (all ones, all zeros). The outputs are in acts: last_hidden_state is
 * acts->hidden + L*B*T*E, pooler_output acts->pooled, attentions acts->probs. */
void bert_forward_naive(BertActs *acts,
                        const int64_t *input_ids,       /* [B, T] */
                        const int64_t *attention_mask,  /* [B, T] 1 = attend, or NULL */
                        const int64_t *token_type_ids,  /* [B, T] or NULL */
                        const BertWeights *w, const BertConfig *cfg);
void bert_forward_fast(BertActs *acts, const int64_t *input_ids, const int64_t *attention_mask,
                       const int64_t *token_type_ids, const BertWeights *w,
                       const BertConfig *cfg);

/* ---- Training (chapter 07). The training forward computes what bert_forward_* computes (to
 * rounding: its layers are chapter 06's training forwards) and keeps what the backward reads:
 * every layer's EncoderActs, the embedding sum and its LayerNorm's statistics. */
typedef struct {
    size_t B, T;
    int masked;             /* 1: an attention_mask was given (mask holds M) */
    float *emb;             /* [B, T, E] the embedding sum, LayerNorm's input */
    float *emb_mean;        /* [B*T] its statistics */
    float *emb_rstd;        /* [B*T] */
    float *hidden;          /* [L+1, B, T, E] h_0 .. h_L */
    float *mask;            /* [B, T, T] the additive mask M */
    float *first;           /* [B, E] h_L[:, 0] */
    float *pooled;          /* [B, E] pooler_output */
    EncoderActs *layers;    /* [L] the caller's array, pointed into the block */
} BertTrainActs;

size_t bert_train_acts_floats(const BertConfig *cfg, size_t B, size_t T);
void bert_train_acts_init(BertTrainActs *a, EncoderActs *layers,   /* [L] */
                          float *block, const BertConfig *cfg, size_t B, size_t T);

void bert_forward_train_naive(BertTrainActs *acts, const int64_t *input_ids,
                              const int64_t *attention_mask, const int64_t *token_type_ids,
                              const BertWeights *w, const BertConfig *cfg);
void bert_forward_train_fast(BertTrainActs *acts, const int64_t *input_ids,
                             const int64_t *attention_mask, const int64_t *token_type_ids,
                             const BertWeights *w, const BertConfig *cfg);

/* The gradients, BertWeights' layout, each accumulated into (matmul.h); NULL: not computed
 * (the embedding tables and the pooler; every layer's EncoderLayerGrads as that says). A
 * BertForPreTraining passes its MLM decoder's gradient in word_embeddings too: the tied
 * weight's two paths add. */
typedef struct {
    float *word_embeddings;         /* [V, E] */
    float *position_embeddings;     /* [P, E] */
    float *token_type_embeddings;   /* [G, E] */
    float *emb_ln_w, *emb_ln_b;     /* [E] */
    const EncoderLayerGrads *layers;   /* [L] */
    float *pooler_w, *pooler_b;     /* [E, E], [E] */
} BertGrads;

/* Scratch of the backward: 2 B T E + 2 B E floats plus one layer's backward scratch. */
size_t bert_backward_scratch_floats(const BertConfig *cfg, size_t B, size_t T);

/* The backward from the upstream gradients of last_hidden_state and pooler_output (either may
 * be NULL: not used), in reverse: the pooler (tanh' = 1 - pooled^2, into token 0), the layers
 * L..1 (each layer's input gradient the next one's upstream), the embeddings' LayerNorm, then
 * the scatter-add into the tables (padding_idx = cfg->pad_token_id). The mask is a constant. */
void bert_backward_naive(const BertGrads *g,
                         float *scratch,                 /* [bert_backward_scratch_floats] */
                         const float *dlast,             /* [B, T, E] or NULL */
                         const float *dpooled,           /* [B, E] or NULL */
                         const int64_t *input_ids,       /* [B, T] */
                         const int64_t *token_type_ids,  /* [B, T] or NULL */
                         const BertTrainActs *acts, const BertWeights *w, const BertConfig *cfg);
void bert_backward_fast(const BertGrads *g, float *scratch, const float *dlast,
                        const float *dpooled, const int64_t *input_ids,
                        const int64_t *token_type_ids, const BertTrainActs *acts,
                        const BertWeights *w, const BertConfig *cfg);

/* M[b, i, j] = (1 - attention_mask[b, j]) * finfo(float32).min, for the training forwards. */
void bert_attention_mask(float *mask,                   /* [B, T, T] */
                         const int64_t *attention_mask, /* [B, T] */
                         size_t B, size_t T);

#endif
