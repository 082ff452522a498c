/* ops_03_positional.c — how chapter 03's ops bind to their kernels (the table is oracle/ops.c):
 *
 *   pe           the sinusoidal table of "Attention Is All You Need" at the given positions
 *   embeddings   BERT's embedding sum (word + type) + pos, before its LayerNorm
 *   embeddings-backward   its scatter-add into the three tables (chapter 07)
 *
 * Every id is checked against its table before anything runs; the first one outside is named
 * with its index and value.
 */
#include <stdio.h>

#include "binds.h"
#include "positional.h"

typedef void (*PeFn)(float *pe, const int64_t *positions, size_t T, size_t E);
typedef int (*EmbeddingsFn)(float *out, EmbBadId *bad, const int64_t *input_ids,
                            const int64_t *position_ids, const int64_t *token_type_ids,
                            const float *word_emb, const float *pos_emb, const float *type_emb,
                            size_t B, size_t T, size_t E, size_t V, size_t P, size_t G);

/* The largest position the op takes. Both variants compute the angle p w in double, whose
 * rounding is about p * 2^-53: 2e-9 at 2^24, far below float32's 6e-8, so the table stays
 * correct to float32 rounding up to here (and 2^24 positions is beyond any context length). */
#define PE_MAX_POSITION ((int64_t)1 << 24)

int bind_pe(OpCall *c)
{
    const Tensor *pos = op_in(c, "positions");
    const size_t T = pos->shape[0], E = (size_t)op_int(c, "d_model");
    const int64_t *p = tensor_i64(pos);
    for (size_t t = 0; t < T; t++)
        if (p[t] < 0 || p[t] > PE_MAX_POSITION)
            return op_fail(c, "positions[%zu] is %lld; positions must lie in 0..%lld (2^24)", t,
                           (long long)p[t], (long long)PE_MAX_POSITION);
    const size_t shape[2] = {T, E};
    float *out = op_output(c, "out", 2, shape);
    if (!out)
        return -1;
    KERNEL(c, PeFn)(out, p, T, E);
    return 0;
}

/* An optional [B, T] id tensor. */
static int check_ids(OpCall *c, const Tensor *x, const char *name, size_t B, size_t T)
{
    if (!x || (x->shape[0] == B && x->shape[1] == T))
        return 0;
    return op_fail(c, "input_ids is [%zu, %zu] but %s is [%zu, %zu]: it must be [B, T] = [%zu, "
                   "%zu]", B, T, name, x->shape[0], x->shape[1], B, T);
}

/* The tables, the ids and their sizes, checked: what the forward and the backward share. */
typedef struct {
    const Tensor *ids, *word, *pos, *type;
    const int64_t *position_ids, *token_type_ids;   /* NULL when absent */
    size_t B, T, E, V, P, G;
} EmbCall;

static int emb_setup(OpCall *c, EmbCall *e)
{
    const Tensor *ids = op_in(c, "input_ids"), *word = op_in(c, "word_emb");
    const Tensor *pos = op_in(c, "pos_emb"), *type = op_in(c, "type_emb");
    const Tensor *pid = op_in(c, "position_ids"), *tid = op_in(c, "token_type_ids");
    const size_t B = ids->shape[0], T = ids->shape[1];
    const size_t V = word->shape[0], E = word->shape[1], P = pos->shape[0];
    const size_t G = type ? type->shape[0] : 0;
    if (pos->shape[1] != E || (type && type->shape[1] != E))
        return op_fail(c, "word_emb is [%zu, %zu], pos_emb [%zu, %zu]%s: every table must have "
                       "E = %zu columns", V, E, P, pos->shape[1],
                       type ? " and type_emb has another width" : "", E);
    if (check_ids(c, pid, "position_ids", B, T) || check_ids(c, tid, "token_type_ids", B, T))
        return -1;
    if (tid && !type)
        return op_fail(c, "token_type_ids is given but type_emb is not");
    const int64_t *position_ids = pid ? tensor_i64(pid) : NULL;
    const int64_t *token_type_ids = tid ? tensor_i64(tid) : NULL;
    EmbBadId bad;
    if (embeddings_check_ids(&bad, tensor_i64(ids), position_ids, token_type_ids, B, T, V, P,
                             G) != 0) {
        char what[256];
        embeddings_bad_id_str(what, sizeof what, &bad, T);
        return op_fail(c, "%s", what);
    }
    *e = (EmbCall){ids, word, pos, type, position_ids, token_type_ids, B, T, E, V, P, G};
    return 0;
}

int bind_embeddings(OpCall *c)
{
    EmbCall e;
    if (emb_setup(c, &e))
        return -1;
    const size_t shape[3] = {e.B, e.T, e.E};
    float *out = op_output(c, "out", 3, shape);
    if (!out)
        return -1;
    EmbBadId bad;
    if (KERNEL(c, EmbeddingsFn)(out, &bad, tensor_i64(e.ids), e.position_ids, e.token_type_ids,
                                tensor_f32(e.word), tensor_f32(e.pos),
                                e.type ? tensor_f32(e.type) : NULL, e.B, e.T, e.E, e.V, e.P,
                                e.G) != 0)
        /* checked above; kept so that a kernel and bind disagreement is loud */
        return op_fail(c, "the kernel rejected an id the bind accepted");
    return 0;
}

typedef int (*EmbeddingsBackwardFn)(float *dword, float *dpos, float *dtype, EmbBadId *bad,
                                    const float *dout, const int64_t *input_ids,
                                    const int64_t *position_ids, const int64_t *token_type_ids,
                                    int64_t padding_idx, size_t B, size_t T, size_t E, size_t V,
                                    size_t P, size_t G);

/* embeddings-backward (chapter 07): grad_word_emb, grad_pos_emb and grad_type_emb (with
 * type_emb), the scatter-add of grad_out. */
int bind_embeddings_backward(OpCall *c)
{
    EmbCall e;
    if (emb_setup(c, &e))
        return -1;
    const size_t shape[3] = {e.B, e.T, e.E};
    const float *dout = op_grad_in(c, "grad_out", "out", 3, shape);
    float *dw = dout ? op_output(c, "grad_word_emb", 2, e.word->shape) : NULL;
    float *dp = dw ? op_output(c, "grad_pos_emb", 2, e.pos->shape) : NULL;
    float *dt = dp && e.type ? op_output(c, "grad_type_emb", 2, e.type->shape) : NULL;
    if (!dp || (e.type && !dt))
        return -1;
    EmbBadId bad;
    if (KERNEL(c, EmbeddingsBackwardFn)(dw, dp, dt, &bad, dout, tensor_i64(e.ids),
                                        e.position_ids, e.token_type_ids,
                                        op_int(c, "padding_idx"), e.B, e.T, e.E, e.V, e.P,
                                        e.G) != 0)
        return op_fail(c, "the kernel rejected an id the bind accepted");
    return 0;
}
