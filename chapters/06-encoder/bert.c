/* bert.c — the layout of BERT's activations (bert.h), shared by both variants: one block,
 * sized once from the config, B and T, carved into the named buffers. */
#include "bert.h"

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
