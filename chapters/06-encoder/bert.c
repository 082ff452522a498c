/* bert.c — the layout of BERT's activations (bert.h), shared by both variants: one block,
 * sized once from the config, B and T, carved into the named buffers. */
#include "bert.h"

#include <float.h>

/* Floats of each buffer, in BertActs' order. */
static void sizes(size_t s[7], const BertConfig *c, size_t B, size_t T, int attentions)
{
    const size_t E = c->hidden_size, L = c->num_hidden_layers, H = c->num_attention_heads;
    s[0] = (L + 1) * B * T * E;                                   /* hidden */
    s[1] = B * T * E;                                             /* emb */
    s[2] = B * T * T;                                             /* mask */
    s[3] = attentions ? L * B * H * T * T : 0;                    /* probs */
    s[4] = B * E;                                                 /* first */
    s[5] = B * E;                                                 /* pooled */
    s[6] = encoder_layer_scratch_floats(B, T, E, c->intermediate_size);
}

size_t bert_acts_floats(const BertConfig *cfg, size_t B, size_t T, int attentions)
{
    size_t s[7], n = 0;
    sizes(s, cfg, B, T, attentions);
    for (int k = 0; k < 7; k++)
        n += s[k];
    return n;
}

void bert_acts_init(BertActs *a, float *block, const BertConfig *cfg, size_t B, size_t T,
                    int attentions)
{
    size_t s[7];
    sizes(s, cfg, B, T, attentions);
    float **part[7] = {&a->hidden, &a->emb, &a->mask, &a->probs, &a->first, &a->pooled,
                       &a->scratch};
    for (int k = 0; k < 7; k++) {
        *part[k] = s[k] ? block : NULL;
        block += s[k];
    }
    a->B = B;
    a->T = T;
    a->attentions = attentions;
}

void bert_attention_mask(float *mask, const int64_t *attention_mask, size_t B, size_t T)
{
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < T; i++)
            for (size_t j = 0; j < T; j++)
                mask[(b * T + i) * T + j] = (float)(1 - attention_mask[b * T + j]) * -FLT_MAX;
}

/* Floats of each training buffer, in BertTrainActs' order, then the layers' EncoderActs. */
static void train_sizes(size_t s[8], const BertConfig *c, size_t B, size_t T)
{
    const size_t E = c->hidden_size, L = c->num_hidden_layers;
    s[0] = B * T * E;                                             /* emb */
    s[1] = B * T;                                                 /* emb_mean */
    s[2] = B * T;                                                 /* emb_rstd */
    s[3] = (L + 1) * B * T * E;                                   /* hidden */
    s[4] = B * T * T;                                             /* mask */
    s[5] = B * E;                                                 /* first */
    s[6] = B * E;                                                 /* pooled */
    s[7] = L * encoder_acts_floats(B, T, E, c->num_attention_heads, c->intermediate_size);
}

size_t bert_train_acts_floats(const BertConfig *cfg, size_t B, size_t T)
{
    size_t s[8], n = 0;
    train_sizes(s, cfg, B, T);
    for (int k = 0; k < 8; k++)
        n += s[k];
    return n;
}

void bert_train_acts_init(BertTrainActs *a, EncoderActs *layers, float *block,
                          const BertConfig *cfg, size_t B, size_t T)
{
    size_t s[8];
    train_sizes(s, cfg, B, T);
    float **part[7] = {&a->emb, &a->emb_mean, &a->emb_rstd, &a->hidden, &a->mask, &a->first,
                       &a->pooled};
    for (int k = 0; k < 7; k++) {
        *part[k] = block;
        block += s[k];
    }
    const size_t E = cfg->hidden_size, H = cfg->num_attention_heads, I = cfg->intermediate_size;
    const size_t per_layer = encoder_acts_floats(B, T, E, H, I);
    for (size_t l = 0; l < cfg->num_hidden_layers; l++)
        encoder_acts_init(&layers[l], block + l * per_layer, B, T, E, H, I);
    a->layers = layers;
    a->B = B;
    a->T = T;
    a->masked = 0;
}

size_t bert_backward_scratch_floats(const BertConfig *cfg, size_t B, size_t T)
{
    const size_t E = cfg->hidden_size;
    return 2 * B * T * E + 2 * B * E +
           encoder_layer_backward_scratch_floats(B, T, E, cfg->intermediate_size);
}
