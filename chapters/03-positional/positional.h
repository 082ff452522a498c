/* positional.h — chapter 03: where a token sits. The sinusoidal positional encoding of
 * "Attention Is All You Need" and BERT's learned absolute embeddings.
 *
 * Sinusoidal (fixed, nothing learned), for a position p and a pair index i:
 *
 *   omega_i        = 10000^(-2i/E)                      the pair's angular frequency
 *   PE[p, 2i]      = sin(p * omega_i)
 *   PE[p, 2i + 1]  = cos(p * omega_i)                    interleaved: sin, cos, sin, cos, ...
 *
 * Odd E: the last column E-1 is an even index 2i with no partner; it holds sin(p * omega_i)
 * alone, with omega_i = 10000^(-(E-1)/E) from the same formula. (PyTorch's usual construction
 * fails with a shape error on odd E; ref/ch03_positional.py does what is written here.)
 *
 * Learned absolute embeddings (BERT), three table lookups summed:
 *
 *   out[b, t, :] = (word_emb[input_ids[b,t]] + type_emb[token_type_ids[b,t]])
 *                  + pos_emb[position_ids[b,t]]
 *
 * in that order, which is the order of BertEmbeddings in Hugging Face Transformers, so that the
 * float32 sums match PyTorch's bit for bit. position_ids default to 0, 1, ..., T-1 in every
 * batch row and token_type_ids to 0, as there. BERT applies LayerNorm (and dropout) to this sum:
 * that is chapter 04's op and is not part of this one.
 *
 * Dimensions: T positions (rows of a PE table), E model width (d_model), B batch, V vocabulary
 * (rows of word_emb), P maximum positions (rows of pos_emb), G token types (rows of type_emb).
 */
#ifndef TFM_POSITIONAL_H
#define TFM_POSITIONAL_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- sinusoidal */

/* PE rows for the given positions (NULL means 0, 1, ..., T-1). Both variants compute the
 * angle p * omega_i in double and round each value to float32 once, so their error is float32's
 * rounding (at most 2^-25 ~ 3e-8 for |value| < 0.5, 2^-24 ~ 6e-8 below 1) at every position up
 * to 2^24 at least: the angle's own double rounding, about |p| 2^-53, is 2e-9 there. */
void pe_sinusoidal_naive(float *pe,                 /* [T, E] */
                         const int64_t *positions,  /* [T] or NULL */
                         size_t T, size_t E);

/* Fast: same contract. Frequencies once; rows in blocks of PE_ANCHOR_EVERY, each anchored by
 * exact sin/cos and continued by the angle-addition recurrence (positional_fast.c). */
void pe_sinusoidal_fast(float *pe, const int64_t *positions, size_t T, size_t E);

/* Rows between exact anchors in pe_sinusoidal_fast. */
#define PE_ANCHOR_EVERY 64

/* ---------------------------------------------------------------- learned embeddings */

/* Which id an embedding lookup rejected. */
typedef enum { EMB_OK = 0, EMB_INPUT_IDS, EMB_POSITION_IDS, EMB_TOKEN_TYPE_IDS } EmbIdKind;

typedef struct {
    EmbIdKind kind;   /* EMB_OK when every id is inside its table */
    size_t index;     /* flat index b*T + t of the first bad id (row-major order) */
    int64_t id;       /* its value */
    size_t rows;      /* rows of the table it indexes: valid ids are 0 .. rows-1 */
} EmbBadId;

/* Checks every id against its table: input_ids first, then position_ids, then token_type_ids.
 * A NULL position_ids means 0..T-1 in every row, so T > P is reported as position P of row 0.
 * G == 0 means "no token-type table": token_type_ids must then be NULL (any id is outside).
 * Returns 0, or -1 with the first offender in *bad (bad may be NULL). */
int embeddings_check_ids(EmbBadId *bad,
                         const int64_t *input_ids,       /* [B, T] */
                         const int64_t *position_ids,    /* [B, T] or NULL */
                         const int64_t *token_type_ids,  /* [B, T] or NULL */
                         size_t B, size_t T, size_t V, size_t P, size_t G);

/* "input_ids[1, 3] = 30522 is outside word_emb's 1000 rows (valid 0..999)" */
void embeddings_bad_id_str(char *buf, size_t buflen, const EmbBadId *bad, size_t T);

/* out = (word + type) + pos, as above. type_emb NULL or G == 0: no token-type term (GPT-2's
 * word + position); token_type_ids must then be NULL. Validates every id first
 * (embeddings_check_ids): returns 0, or -1 with the offender in *bad (bad may be NULL) and out
 * untouched. Never reads outside a table. */
int embeddings_forward_naive(float *out,                     /* [B, T, E] */
                             EmbBadId *bad,                  /* or NULL */
                             const int64_t *input_ids,       /* [B, T] */
                             const int64_t *position_ids,    /* [B, T] or NULL: 0..T-1 */
                             const int64_t *token_type_ids,  /* [B, T] or NULL: all 0 */
                             const float *word_emb,          /* [V, E] */
                             const float *pos_emb,           /* [P, E] */
                             const float *type_emb,          /* [G, E] or NULL */
                             size_t B, size_t T, size_t E, size_t V, size_t P, size_t G);

int embeddings_forward_fast(float *out, EmbBadId *bad, const int64_t *input_ids,
                            const int64_t *position_ids, const int64_t *token_type_ids,
                            const float *word_emb, const float *pos_emb, const float *type_emb,
                            size_t B, size_t T, size_t E, size_t V, size_t P, size_t G);

/* The backward (chapter 07): each table row receives the sum of dout over the tokens that
 * looked it up, in token order b*T + t:
 *
 *   dword[input_ids[b,t]]      += dout[b,t]   (not where input_ids[b,t] = padding_idx)
 *   dtype[token_type_ids[b,t]] += dout[b,t]
 *   dpos[position_ids[b,t]]    += dout[b,t]
 *
 * padding_idx is nn.Embedding's (Hugging Face builds BERT's word table with padding_idx =
 * pad_token_id): that row's gradient stays 0, so the padding vector never trains; negative for
 * none. Tables without a gradient buffer (NULL) are skipped; like every tfm backward the
 * buffers accumulate (matmul.h). Validates the ids as the forward does: returns 0, or -1 with
 * the offender in *bad and nothing written. */
int embeddings_backward_naive(float *dword,                   /* [V, E] or NULL, += */
                              float *dpos,                    /* [P, E] or NULL, += */
                              float *dtype,                   /* [G, E] or NULL, += */
                              EmbBadId *bad,                  /* or NULL */
                              const float *dout,              /* [B, T, E] */
                              const int64_t *input_ids,       /* [B, T] */
                              const int64_t *position_ids,    /* [B, T] or NULL: 0..T-1 */
                              const int64_t *token_type_ids,  /* [B, T] or NULL: all 0 */
                              int64_t padding_idx, size_t B, size_t T, size_t E, size_t V,
                              size_t P, size_t G);
int embeddings_backward_fast(float *dword, float *dpos, float *dtype, EmbBadId *bad,
                             const float *dout, const int64_t *input_ids,
                             const int64_t *position_ids, const int64_t *token_type_ids,
                             int64_t padding_idx, size_t B, size_t T, size_t E, size_t V,
                             size_t P, size_t G);

#endif
