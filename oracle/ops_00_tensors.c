/* ops_00_tensors.c — how chapter 00's ops bind to their kernels (the table is oracle/ops.c):
 *
 *   matmul   torch.matmul(a, b): 1-D to 8-D operands, batch dimensions broadcast
 *   linear   F.linear(x, w, bias): x [..., K], w [N, K], bias [N] -> out [..., N]
 *   softmax, log-softmax, gelu   F.softmax(input, dim), F.log_softmax(input, dim),
 *            F.gelu(input, approximate)
 *   OP-backward  the gradients of each (chapter 07): its inputs plus grad_out -> grad_<input>
 *
 * The kernels are 2-D (matmul.h); the batch loop and the 1-D rules live here, as torch.matmul
 * states them: a 1-D a is a row [1, K] whose 1 is dropped from the result, a 1-D b a column
 * [K, 1] whose 1 is dropped, and the dimensions before the last two broadcast (sizes equal, or
 * one of them 1) like any elementwise op's.
 */
#include <stdio.h>
#include <stdlib.h>

#include "binds.h"
#include "functional.h"
#include "matmul.h"
#include "tensor.h"

typedef void (*MatmulFn)(float *c, const float *a, const float *b, size_t M, size_t K,
                         size_t N);
typedef void (*LinearFn)(float *y, const float *x, const float *w, const float *bias, size_t M,
                         size_t K, size_t N);
typedef void (*MatmulBackwardFn)(float *da, float *db, const float *dc, const float *a,
                                 const float *b, size_t M, size_t K, size_t N);
typedef void (*LinearBackwardFn)(float *dx, float *dw, float *dbias, const float *dy,
                                 const float *x, const float *w, size_t M, size_t K, size_t N);

/* How torch.matmul pairs a and b: the matrix sizes, the broadcast batch and each operand's
 * stride along it, the output's shape. */
typedef struct {
    size_t M, K, N;
    int nb;                                   /* batch dimensions */
    size_t batch[TFM_MAX_DIMS];               /* [nb] */
    size_t sa[TFM_MAX_DIMS], sb[TFM_MAX_DIMS];   /* [nb] strides; 0 where broadcast */
    size_t nbatch;
    int ond;
    size_t oshape[TFM_MAX_DIMS];
} MatmulPlan;

static int matmul_plan(OpCall *c, MatmulPlan *p)
{
    const Tensor *a = op_in(c, "a"), *b = op_in(c, "b");
    char as[128], bs[128];
    tfm_shape_str(as, sizeof as, a->ndim, a->shape);
    tfm_shape_str(bs, sizeof bs, b->ndim, b->shape);

    /* The matrix parts: a is [..., M, K] (or [K]), b is [..., K, N] (or [K]). */
    const int a_vec = a->ndim == 1, b_vec = b->ndim == 1;
    const size_t M = a_vec ? 1 : a->shape[a->ndim - 2], K = a->shape[a->ndim - 1];
    const size_t Kb = b_vec ? b->shape[0] : b->shape[b->ndim - 2];
    const size_t N = b_vec ? 1 : b->shape[b->ndim - 1];
    if (Kb != K)
        return op_fail(c, "a is %s but b is %s: a's last dimension (%zu) must equal b's %s "
                       "(%zu)", as, bs, K, b_vec ? "only one" : "second to last", Kb);
    p->M = M;
    p->K = K;
    p->N = N;

    /* Batch dimensions, right-aligned and broadcast. */
    const int nba = a_vec ? 0 : a->ndim - 2, nbb = b_vec ? 0 : b->ndim - 2;
    const int nb = nba > nbb ? nba : nbb;
    p->nb = nb;
    size_t stride_a = M * K, stride_b = K * N;                         /* one matrix each */
    for (int d = nb - 1; d >= 0; d--) {
        const int da = d - (nb - nba), db = d - (nb - nbb);
        const size_t ea = da >= 0 ? a->shape[da] : 1, eb = db >= 0 ? b->shape[db] : 1;
        if (ea != eb && ea != 1 && eb != 1)
            return op_fail(c, "a is %s but b is %s: batch dimensions %zu and %zu do not "
                           "broadcast (they must be equal, or one of them 1)", as, bs, ea, eb);
        p->batch[d] = ea > eb ? ea : eb;
        p->sa[d] = ea == 1 ? 0 : stride_a;   /* a broadcast dimension does not advance */
        p->sb[d] = eb == 1 ? 0 : stride_b;
        stride_a *= ea;
        stride_b *= eb;
    }
    p->ond = 0;
    p->nbatch = 1;
    for (int d = 0; d < nb; d++) {
        p->oshape[p->ond++] = p->batch[d];
        p->nbatch *= p->batch[d];
    }
    if (!a_vec)
        p->oshape[p->ond++] = M;
    if (!b_vec)
        p->oshape[p->ond++] = N;
    return 0;
}

/* Where batch entry i of a and of b starts: its index, digit by digit from the right. */
static void matmul_offsets(const MatmulPlan *p, size_t i, size_t *oa, size_t *ob)
{
    size_t rest = i;
    *oa = *ob = 0;
    for (int d = p->nb - 1; d >= 0; d--) {
        const size_t idx = rest % p->batch[d];
        rest /= p->batch[d];
        *oa += idx * p->sa[d];
        *ob += idx * p->sb[d];
    }
}

int bind_matmul(OpCall *c)
{
    MatmulPlan p;
    if (matmul_plan(c, &p) != 0)
        return -1;
    float *out = op_output(c, "out", p.ond, p.oshape);
    if (!out)
        return -1;
    const float *A = tensor_f32(op_in(c, "a")), *B = tensor_f32(op_in(c, "b"));
    for (size_t i = 0; i < p.nbatch; i++) {
        size_t oa, ob;
        matmul_offsets(&p, i, &oa, &ob);
        KERNEL(c, MatmulFn)(out + i * p.M * p.N, A + oa, B + ob, p.M, p.K, p.N);
    }
    return 0;
}

/* matmul-backward: each batch entry's gradients accumulate into grad_a and grad_b, so a
 * broadcast operand (stride 0) receives the sum over the entries that read it, as autograd's
 * sum over broadcast dimensions gives. */
int bind_matmul_backward(OpCall *c)
{
    MatmulPlan p;
    if (matmul_plan(c, &p) != 0)
        return -1;
    const Tensor *a = op_in(c, "a"), *b = op_in(c, "b");
    const float *dout = op_grad_in(c, "grad_out", "out", p.ond, p.oshape);
    float *da = dout ? op_output(c, "grad_a", a->ndim, a->shape) : NULL;
    float *db = da ? op_output(c, "grad_b", b->ndim, b->shape) : NULL;
    if (!db)
        return -1;
    const float *A = tensor_f32(a), *B = tensor_f32(b);
    for (size_t i = 0; i < p.nbatch; i++) {
        size_t oa, ob;
        matmul_offsets(&p, i, &oa, &ob);
        KERNEL(c, MatmulBackwardFn)(da + oa, db + ob, dout + i * p.M * p.N, A + oa, B + ob, p.M,
                                    p.K, p.N);
    }
    return 0;
}

/* linear's sizes: x [..., K] is M rows, w [N, K]; out is x's shape with N last. */
static int linear_sizes(OpCall *c, size_t *M, size_t *K, size_t *N, size_t *oshape)
{
    const Tensor *x = op_in(c, "x"), *w = op_in(c, "w"), *bias = op_in(c, "bias");
    *K = x->shape[x->ndim - 1];
    *N = w->shape[0];
    *M = 1;   /* the rows: every dimension but the last (numel / K fails at K = 0) */
    for (int d = 0; d < x->ndim - 1; d++)
        *M *= x->shape[d];
    char xs[128];
    tfm_shape_str(xs, sizeof xs, x->ndim, x->shape);
    if (w->shape[1] != *K)
        return op_fail(c, "x is %s but w is [%zu, %zu]: w must be [out, in] = [N, %zu]", xs, *N,
                       w->shape[1], *K);
    if (bias && bias->shape[0] != *N)
        return op_fail(c, "w is [%zu, %zu] but bias is [%zu]: bias must be [%zu]", *N, *K,
                       bias->shape[0], *N);
    for (int d = 0; d < x->ndim - 1; d++)
        oshape[d] = x->shape[d];
    oshape[x->ndim - 1] = *N;
    return 0;
}

int bind_linear(OpCall *c)
{
    const Tensor *x = op_in(c, "x"), *w = op_in(c, "w"), *bias = op_in(c, "bias");
    size_t M, K, N, oshape[TFM_MAX_DIMS];
    if (linear_sizes(c, &M, &K, &N, oshape) != 0)
        return -1;
    float *y = op_output(c, "out", x->ndim, oshape);
    if (!y)
        return -1;
    KERNEL(c, LinearFn)(y, tensor_f32(x), tensor_f32(w), bias ? tensor_f32(bias) : NULL, M, K,
                        N);
    return 0;
}

int bind_linear_backward(OpCall *c)
{
    const Tensor *x = op_in(c, "x"), *w = op_in(c, "w"), *bias = op_in(c, "bias");
    size_t M, K, N, oshape[TFM_MAX_DIMS];
    if (linear_sizes(c, &M, &K, &N, oshape) != 0)
        return -1;
    const float *dy = op_grad_in(c, "grad_out", "out", x->ndim, oshape);
    float *dx = dy ? op_output(c, "grad_x", x->ndim, x->shape) : NULL;
    float *dw = dx ? op_output(c, "grad_w", w->ndim, w->shape) : NULL;
    float *db = dw && bias ? op_output(c, "grad_bias", bias->ndim, bias->shape) : NULL;
    if (!dw || (bias && !db))
        return -1;
    KERNEL(c, LinearBackwardFn)(dx, dw, db, dy, tensor_f32(x), tensor_f32(w), M, K, N);
    return 0;
}

/* ---- softmax, log-softmax, gelu (functional.h) --------------------------------------------- */

typedef void (*RowwiseFn)(float *out, const float *x, size_t outer, size_t C, size_t inner);
typedef void (*RowwiseBackwardFn)(float *dx, const float *dy, const float *y, size_t outer,
                                  size_t C, size_t inner);
typedef void (*GeluBackwardFn)(float *dx, const float *dy, const float *x, size_t n,
                               TfmGeluApprox approximate);
typedef void (*GeluFn)(float *out, const float *x, size_t n, TfmGeluApprox approximate);

/* softmax(input, dim) and log_softmax(input, dim): the tensor as [outer, C, inner] around dim.
 * A 0-d input is one row of one element, as in PyTorch (dim -1 or 0). */
/* [outer, C, inner] around dim. */
static int rowwise_dims(OpCall *c, size_t *outer, size_t *C, size_t *inner)
{
    const Tensor *x = op_in(c, "input");
    const int nd = x->ndim ? x->ndim : 1;
    const int64_t dim = op_int(c, "dim");
    if (dim < -nd || dim >= nd)
        return op_fail(c, "dim is %lld; for a %d-d input it must lie in [%d, %d]",
                       (long long)dim, x->ndim, -nd, nd - 1);
    const int d = (int)(dim < 0 ? dim + nd : dim);
    *outer = *inner = 1;
    for (int k = 0; k < x->ndim; k++) {
        if (k < d)
            *outer *= x->shape[k];
        if (k > d)
            *inner *= x->shape[k];
    }
    *C = x->ndim ? x->shape[d] : 1;
    return 0;
}

static int rowwise(OpCall *c)
{
    const Tensor *x = op_in(c, "input");
    size_t outer, C, inner;
    if (rowwise_dims(c, &outer, &C, &inner) != 0)
        return -1;
    float *out = op_output(c, "out", x->ndim, x->shape);
    if (!out)
        return -1;
    KERNEL(c, RowwiseFn)(out, tensor_f32(x), outer, C, inner);
    return 0;
}

/* softmax-backward, log-softmax-backward: the forward (of the same variant) gives y, which the
 * backward kernel reads; it is scratch, not an output. */
static int rowwise_backward(OpCall *c, RowwiseFn forward)
{
    const Tensor *x = op_in(c, "input");
    size_t outer, C, inner;
    if (rowwise_dims(c, &outer, &C, &inner) != 0)
        return -1;
    const float *dy = op_grad_in(c, "grad_out", "out", x->ndim, x->shape);
    float *dx = dy ? op_output(c, "grad_input", x->ndim, x->shape) : NULL;
    if (!dx)
        return -1;
    float *y = tfm_xcalloc(x->numel, sizeof(float), c->op->name);
    forward(y, tensor_f32(x), outer, C, inner);
    KERNEL(c, RowwiseBackwardFn)(dx, dy, y, outer, C, inner);
    free(y);
    return 0;
}

int bind_softmax(OpCall *c) { return rowwise(c); }
int bind_log_softmax(OpCall *c) { return rowwise(c); }
int bind_softmax_backward(OpCall *c)
{
    return rowwise_backward(c, c->variant == TFM_FAST ? softmax_fast : softmax_naive);
}
int bind_log_softmax_backward(OpCall *c)
{
    return rowwise_backward(c, c->variant == TFM_FAST ? log_softmax_fast : log_softmax_naive);
}

int bind_gelu(OpCall *c)
{
    const Tensor *x = op_in(c, "input");
    float *out = op_output(c, "out", x->ndim, x->shape);
    if (!out)
        return -1;
    KERNEL(c, GeluFn)(out, tensor_f32(x), x->numel,
                      op_word_is(c, "approximate", "tanh") ? TFM_GELU_TANH : TFM_GELU_NONE);
    return 0;
}

int bind_gelu_backward(OpCall *c)
{
    const Tensor *x = op_in(c, "input");
    const float *dy = op_grad_in(c, "grad_out", "out", x->ndim, x->shape);
    float *dx = dy ? op_output(c, "grad_input", x->ndim, x->shape) : NULL;
    if (!dx)
        return -1;
    KERNEL(c, GeluBackwardFn)(dx, dy, tensor_f32(x), x->numel,
                              op_word_is(c, "approximate", "tanh") ? TFM_GELU_TANH
                                                                   : TFM_GELU_NONE);
    return 0;
}
