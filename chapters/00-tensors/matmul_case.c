/* matmul_case.c — chapter 00's op runner (cases.h): the ops "matmul" and "linear".
 *
 * The inputs (under "<prefix>/", all F32) select the op:
 *   a [M,K], b [K,N]                       -> out [M,N] = matmul(a, b)
 *   x [M,K], w [N,K], bias [N] (optional)  -> out [M,N] = linear(x, w, bias) = x w^T + bias
 * case_run then compares "out" with PyTorch's float32 "out" and the float64 truth "out_f64".
 */
#include <stdio.h>

#include "cases.h"
#include "matmul.h"

static int run_matmul(OpOutputs *out, const GoldenFile *in, const char *prefix, const Tensor *a,
                      TfmVariant variant, char *err, size_t errlen)
{
    const Tensor *b = case_input(in, prefix, "b", TFM_F32, 2, err, errlen);
    if (!b)
        return -1;
    const size_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (b->shape[0] != K) {
        snprintf(err, errlen,
                 "matmul '%s': a is [%zu, %zu] but b is [%zu, %zu]: b must be [K, N] = [%zu, N]",
                 prefix, M, K, b->shape[0], N, K);
        return -1;
    }
    const size_t shape[2] = {M, N};
    float *c = op_output(out, "out", 2, shape, err, errlen);
    if (!c)
        return -1;
    if (variant == TFM_FAST)
        matmul_fast(c, tensor_f32(a), tensor_f32(b), M, K, N);
    else
        matmul_naive(c, tensor_f32(a), tensor_f32(b), M, K, N);
    return 0;
}

static int run_linear(OpOutputs *out, const GoldenFile *in, const char *prefix, TfmVariant variant,
                      char *err, size_t errlen)
{
    const Tensor *x = case_input(in, prefix, "x", TFM_F32, 2, err, errlen);
    if (!x)
        return -1;
    const Tensor *w = case_input(in, prefix, "w", TFM_F32, 2, err, errlen);
    if (!w)
        return -1;
    const Tensor *bias = case_optional(in, prefix, "bias", TFM_F32, 1, err, errlen);
    if (!bias && err[0])                 /* present, but not a 1-D F32 tensor */
        return -1;
    const size_t M = x->shape[0], K = x->shape[1], N = w->shape[0];
    if (w->shape[1] != K) {
        snprintf(err, errlen,
                 "linear '%s': x is [%zu, %zu] but w is [%zu, %zu]: w must be [out, in] = [N, %zu]",
                 prefix, M, K, N, w->shape[1], K);
        return -1;
    }
    if (bias && bias->shape[0] != N) {
        snprintf(err, errlen, "linear '%s': w is [%zu, %zu] but bias is [%zu]: bias must be [%zu]",
                 prefix, N, K, bias->shape[0], N);
        return -1;
    }
    const size_t shape[2] = {M, N};
    float *y = op_output(out, "out", 2, shape, err, errlen);
    if (!y)
        return -1;
    const float *bp = bias ? tensor_f32(bias) : NULL;
    if (variant == TFM_FAST)
        linear_fast(y, tensor_f32(x), tensor_f32(w), bp, M, K, N);
    else
        linear_naive(y, tensor_f32(x), tensor_f32(w), bp, M, K, N);
    return 0;
}

int matmul_run(OpOutputs *out, const GoldenFile *in, const char *prefix, TfmVariant variant,
               char *err, size_t errlen)
{
    const Tensor *a = case_optional(in, prefix, "a", TFM_F32, 2, err, errlen);
    if (a)
        return run_matmul(out, in, prefix, a, variant, err, errlen);
    if (err[0])                          /* "a" is present, but not a 2-D F32 tensor */
        return -1;
    return run_linear(out, in, prefix, variant, err, errlen);
}
