/* positional_naive.c — positional encodings, written the way the formulas read.
 *
 *   PE[p, 2i] = sin(p / 10000^(2i/E)),   PE[p, 2i+1] = cos(p / 10000^(2i/E))
 *   out[b, t, :] = (word_emb[input_ids[b,t]] + type_emb[token_type_ids[b,t]])
 *                  + pos_emb[position_ids[b,t]]
 *
 * Dimension legend (same letters as positional.h):
 *   t < T   row of the PE table / token of a sequence     p   its position
 *   j < E   column (feature); j = 2i or 2i + 1            i   pair index, frequency number
 *   b < B   batch element
 *   V, P, G rows of the word, position and token-type tables
 *
 * Memory layout, row-major: pe[t][j], out[b][t][j], input_ids[b][t], word_emb[v][j], ...
 * All offsets are size_t.
 *
 * Precision. The angle p / 10000^(2i/E) reaches 8192 radians at position 8192 (i = 0). A
 * float32 near 8192 has a spacing of 2^-10 ~ 1e-3, so an angle rounded to float32 is already
 * off by up to 5e-4 before sin sees it, and sin passes an argument error straight through
 * (|d sin/dx| <= 1). That is exactly how PyTorch's usual float32 construction loses accuracy
 * with position (book.md, chapter 03). Here the angle and its sin/cos are computed in double
 * (spacing 2^-39 near 8192) and the result is rounded to float32 once: the float32 table is
 * then correct to its own rounding at every position.
 */
#include "positional.h"

#include <math.h>
#include <stdio.h>

void pe_sinusoidal_naive(float *pe, const int64_t *positions, size_t T, size_t E)
{
    for (size_t t = 0; t < T; t++) {
        const double p = positions ? (double)positions[t] : (double)t;
        for (size_t j = 0; j < E; j++) {
            const size_t i = j / 2;                                   /* j = 2i or 2i + 1 */
            const double angle = p / pow(10000.0, (double)(2 * i) / (double)E);
            /* Odd E: the last column j = E-1 is even, so it gets its sin and no cos. */
            pe[t * E + j] = (float)(j % 2 == 0 ? sin(angle) : cos(angle));
        }
    }
}

/* The first id of ids[0..n) outside [0, rows), as an index; n if there is none. */
static size_t first_outside(const int64_t *ids, size_t n, size_t rows)
{
    for (size_t k = 0; k < n; k++)
        if (ids[k] < 0 || (uint64_t)ids[k] >= (uint64_t)rows)
            return k;
    return n;
}

int embeddings_check_ids(EmbBadId *bad, const int64_t *input_ids, const int64_t *position_ids,
                         const int64_t *token_type_ids, size_t B, size_t T, size_t V, size_t P,
                         size_t G)
{
    const size_t n = B * T;
    EmbBadId b = {EMB_OK, 0, 0, 0};
    size_t k;
    if ((k = first_outside(input_ids, n, V)) < n) {
        b = (EmbBadId){EMB_INPUT_IDS, k, input_ids[k], V};
    } else if (position_ids && (k = first_outside(position_ids, n, P)) < n) {
        b = (EmbBadId){EMB_POSITION_IDS, k, position_ids[k], P};
    } else if (!position_ids && n > 0 && T > P) {
        /* the implicit positions 0..T-1: the first row past the table is t = P, in batch 0 */
        b = (EmbBadId){EMB_POSITION_IDS, P, (int64_t)P, P};
    } else if (token_type_ids && (k = first_outside(token_type_ids, n, G)) < n) {
        b = (EmbBadId){EMB_TOKEN_TYPE_IDS, k, token_type_ids[k], G};
    }
    if (bad)
        *bad = b;
    return b.kind == EMB_OK ? 0 : -1;
}

void embeddings_bad_id_str(char *buf, size_t buflen, const EmbBadId *bad, size_t T)
{
    static const char *const ids[] = {"-", "input_ids", "position_ids", "token_type_ids"};
    static const char *const table[] = {"-", "word_emb", "pos_emb", "type_emb"};
    if (bad->kind == EMB_OK) {
        snprintf(buf, buflen, "every id is inside its table");
        return;
    }
    const size_t b = T ? bad->index / T : 0, t = T ? bad->index % T : 0;
    if (bad->rows == 0)
        snprintf(buf, buflen, "%s[%zu, %zu] = %lld, but %s has no rows", ids[bad->kind], b, t,
                 (long long)bad->id, table[bad->kind]);
    else
        snprintf(buf, buflen, "%s[%zu, %zu] = %lld is outside %s's %zu rows (valid 0..%zu)",
                 ids[bad->kind], b, t, (long long)bad->id, table[bad->kind], bad->rows,
                 bad->rows - 1);
}

int embeddings_forward_naive(float *out, EmbBadId *bad, const int64_t *input_ids,
                             const int64_t *position_ids, const int64_t *token_type_ids,
                             const float *word_emb, const float *pos_emb, const float *type_emb,
                             size_t B, size_t T, size_t E, size_t V, size_t P, size_t G)
{
    if (!type_emb)
        G = 0;   /* no token-type table: token_type_ids, if given, index nothing */
    if (embeddings_check_ids(bad, input_ids, position_ids, token_type_ids, B, T, V, P, G) != 0)
        return -1;

    for (size_t b = 0; b < B; b++) {
        for (size_t t = 0; t < T; t++) {
            const size_t bt = b * T + t;
            const size_t w = (size_t)input_ids[bt];
            const size_t p = position_ids ? (size_t)position_ids[bt] : t;
            const size_t g = token_type_ids ? (size_t)token_type_ids[bt] : 0;
            for (size_t j = 0; j < E; j++) {
                float x = word_emb[w * E + j];
                if (G > 0)
                    x = x + type_emb[g * E + j];
                out[bt * E + j] = x + pos_emb[p * E + j];
            }
        }
    }
    return 0;
}

int embeddings_backward_naive(float *dword, float *dpos, float *dtype, EmbBadId *bad,
                              const float *dout, const int64_t *input_ids,
                              const int64_t *position_ids, const int64_t *token_type_ids,
                              int64_t padding_idx, size_t B, size_t T, size_t E, size_t V,
                              size_t P, size_t G)
{
    if (!dtype)
        G = 0;
    if (embeddings_check_ids(bad, input_ids, position_ids, token_type_ids, B, T, V, P, G) != 0)
        return -1;

    for (size_t b = 0; b < B; b++) {
        for (size_t t = 0; t < T; t++) {
            const size_t bt = b * T + t;
            const size_t w = (size_t)input_ids[bt];
            const size_t p = position_ids ? (size_t)position_ids[bt] : t;
            const size_t g = token_type_ids ? (size_t)token_type_ids[bt] : 0;
            for (size_t j = 0; j < E; j++) {
                const float d = dout[bt * E + j];   /* d out[b,t,j] reaches all three terms */
                if (dword && input_ids[bt] != padding_idx)
                    dword[w * E + j] += d;
                if (G > 0)
                    dtype[g * E + j] += d;
                if (dpos)
                    dpos[p * E + j] += d;
            }
        }
    }
    return 0;
}
