/* matmul_case.c — chapter 00's golden-case runner (cases.h).
 *
 * A case holds either
 *   "<case>/a" [M,K], "<case>/b" [K,N]                         -> out = matmul(a, b)
 * or
 *   "<case>/x" [M,K], "<case>/w" [N,K], "<case>/bias" [N]?     -> out = linear(x, w, bias)
 * all F32, and the expected "<case>/out" [M,N] (plus "<case>/out_f64", the float64 truth).
 */
#include <stdio.h>
#include <stdlib.h>

#include "cases.h"
#include "matmul.h"

static int run_matmul(const GoldenFile *gf, const char *name, const Tensor *a, TfmVariant variant,
                      float **out, size_t *n, char *err, size_t errlen)
{
    const Tensor *b = case_input(gf, name, "b", TFM_F32, 2, err, errlen);
    if (!b)
        return -1;
    const size_t M = a->shape[0], K = a->shape[1], N = b->shape[1];
    if (b->shape[0] != K) {
        snprintf(err, errlen, "%s: a is [%zu, %zu] but b is [%zu, %zu]: inner dimensions differ",
                 name, M, K, b->shape[0], N);
        return -1;
    }
    *n = M * N;
    *out = malloc((*n ? *n : 1) * sizeof(float));
    if (!*out) {
        snprintf(err, errlen, "%s: out of memory for a [%zu, %zu] output", name, M, N);
        return -1;
    }
    if (variant == TFM_FAST)
        matmul_fast(*out, tensor_f32(a), tensor_f32(b), M, K, N);
    else
        matmul_naive(*out, tensor_f32(a), tensor_f32(b), M, K, N);
    return 0;
}

static int run_linear(const GoldenFile *gf, const char *name, TfmVariant variant, float **out,
                      size_t *n, char *err, size_t errlen)
{
    const Tensor *x = case_input(gf, name, "x", TFM_F32, 2, err, errlen);
    if (!x)
        return -1;
    const Tensor *w = case_input(gf, name, "w", TFM_F32, 2, err, errlen);
    if (!w)
        return -1;
    const Tensor *bias = case_optional(gf, name, "bias", TFM_F32, 1, err, errlen);
    if (!bias && err[0])                 /* present but of the wrong dtype or rank */
        return -1;
    const size_t M = x->shape[0], K = x->shape[1], N = w->shape[0];
    if (w->shape[1] != K) {
        snprintf(err, errlen,
                 "%s: x is [%zu, %zu] but w is [%zu, %zu]: w must be [out, in] = [N, %zu]", name,
                 M, K, N, w->shape[1], K);
        return -1;
    }
    if (bias && bias->shape[0] != N) {
        snprintf(err, errlen, "%s: w is [%zu, %zu] but bias is [%zu]: bias must be [%zu]", name,
                 N, K, bias->shape[0], N);
        return -1;
    }
    *n = M * N;
    *out = malloc((*n ? *n : 1) * sizeof(float));
    if (!*out) {
        snprintf(err, errlen, "%s: out of memory for a [%zu, %zu] output", name, M, N);
        return -1;
    }
    const float *bp = bias ? tensor_f32(bias) : NULL;
    if (variant == TFM_FAST)
        linear_fast(*out, tensor_f32(x), tensor_f32(w), bp, M, K, N);
    else
        linear_naive(*out, tensor_f32(x), tensor_f32(w), bp, M, K, N);
    return 0;
}

int matmul_run_case(const GoldenFile *gf, const char *name, TfmVariant variant, double atol,
                    double rtol, CaseOutcome *oc, char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    float *out = NULL;
    size_t n = 0;
    const Tensor *a = case_optional(gf, name, "a", TFM_F32, 2, err, errlen);
    int rc;
    if (a)
        rc = run_matmul(gf, name, a, variant, &out, &n, err, errlen);
    else if (err[0])                     /* "a" exists but is not a 2-D F32 tensor */
        rc = -1;
    else
        rc = run_linear(gf, name, variant, &out, &n, err, errlen);
    if (rc == 0)
        rc = case_check_output(oc, gf, name, "out", out, n, atol, rtol, err, errlen);
    free(out);
    return rc;
}
