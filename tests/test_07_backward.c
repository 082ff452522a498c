/* test_07_backward.c — chapter 07: the backward kernels of chapters 00 and 04 against
 * torch.autograd's goldens (both variants), every naive backward against finite differences of
 * its own forward in double (no PyTorch involved), fast against naive on fresh shapes (the
 * direct and blocked GEMM paths, contiguous and strided rows, attention's tiles and masks),
 * the accumulate convention, the
 * thread count's independence, and the runner's refusals of a grad_out of the wrong shape. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "bert.h"
#include "encoder.h"
#include "functional.h"
#include "layernorm.h"
#include "matmul.h"
#include "multihead.h"
#include "positional.h"
#include "pretraining.h"
#include "testutil.h"
#include "tolerances.h"

static const char *const CH = "07-backward";

/* ---------------------------------------------------------------- torch.autograd's goldens */

START_TEST(test_naive_vs_goldens) { tu_check_all_cases(CH, TFM_NAIVE); }
END_TEST

START_TEST(test_fast_vs_goldens) { tu_check_all_cases(CH, TFM_FAST); }
END_TEST

/* ---------------------------------------------------------------- finite differences
 *
 * For a forward f and a fixed upstream gradient g, L(inputs) = sum_o g_o f(inputs)_o, summed in
 * double, has dL/d input = the backward of g. Each input element x_i is moved by +-h and
 *   (L(x_i + h) - L(x_i - h)) / (2h)
 * is compared with the backward's element: the central difference is off by h^2 f'''/6 and by
 * the float32 rounding of the forward's outputs (about 6e-8 |g_o f_o| per output, divided by
 * 2h). With inputs and g of order 1 and h = 1e-2 both stay below 1e-4 on the shapes here, where
 * a wrong term in a gradient is off by O(1): FD_ATOL + FD_RTOL |grad| separates the two by
 * orders of magnitude. The step actually taken, (x + h) - (x - h) in float32, is the divisor. */
#define FD_H 1e-2
#define FD_ATOL 1e-3
#define FD_RTOL 1e-3

typedef struct FdProblem FdProblem;
struct FdProblem {
    double (*loss)(const FdProblem *p);   /* L = sum g * forward(inputs), in double */
    float *in[5];                         /* the inputs the gradients are of */
    size_t n[5];
    const float *g;                       /* [outputs] the upstream gradient */
    float *y;                             /* [outputs] scratch for the forward */
    size_t dims[5];                       /* the forward's dimensions */
    int flag;                             /* a forward option (GELU form, bias present) */
};

static double dot_g(const float *g, const float *y, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * (double)y[i];
    return s;
}

/* Checks grad[0..n) against the central differences of p->loss along every element of input k
 * (at most 400 of them, spread evenly when there are more). */
static void fd_check(const char *label, FdProblem *p, int k, const float *grad)
{
    float *x = p->in[k];
    const size_t n = p->n[k], step = n > 400 ? n / 400 : 1;
    double worst = 0.0;
    size_t worst_i = 0;
    double worst_fd = 0.0;
    for (size_t i = 0; i < n; i += step) {
        const float x0 = x[i];
        const float xp = (float)(x0 + FD_H), xm = (float)(x0 - FD_H);
        x[i] = xp;
        const double lp = p->loss(p);
        x[i] = xm;
        const double lm = p->loss(p);
        x[i] = x0;
        const double fd = (lp - lm) / ((double)xp - (double)xm);
        const double excess = fabs(fd - grad[i]) - (FD_ATOL + FD_RTOL * fabs(fd));
        if (excess > worst || i == 0) {
            worst = excess > worst ? excess : worst;
            worst_i = i;
            worst_fd = fd;
        }
    }
    ck_assert_msg(worst <= 0.0, "%s: grad[%zu] = %.7g but the central difference is %.7g "
                  "(beyond %g + %g |fd| by %.3g)", label, worst_i, (double)grad[worst_i],
                  worst_fd, FD_ATOL, FD_RTOL, worst);
}

static float *normal(size_t n, float scale, TuRng *r)
{
    float *x = tu_malloc((n ? n : 1) * sizeof(float));
    tu_fill_normal(x, n, r);
    for (size_t i = 0; i < n; i++)
        x[i] *= scale;
    return x;
}

static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* matmul: a [M, K], b [K, N] */
static double matmul_loss(const FdProblem *p)
{
    const size_t M = p->dims[0], K = p->dims[1], N = p->dims[2];
    matmul_naive(p->y, p->in[0], p->in[1], M, K, N);
    return dot_g(p->g, p->y, M * N);
}

/* linear: x [M, K], w [N, K], bias [N] */
static double linear_loss(const FdProblem *p)
{
    const size_t M = p->dims[0], K = p->dims[1], N = p->dims[2];
    linear_naive(p->y, p->in[0], p->in[1], p->in[2], M, K, N);
    return dot_g(p->g, p->y, M * N);
}

START_TEST(test_fd_matmul_linear)
{
    static const size_t SHAPES[][3] = {{1, 1, 1}, {3, 5, 4}, {7, 2, 9}, {12, 33, 5}};
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const size_t M = SHAPES[s][0], K = SHAPES[s][1], N = SHAPES[s][2];
        TuRng r = {0x0700 + s};
        float *a = normal(M * K, 1.0f, &r), *b = normal(K * N, 1.0f, &r);
        float *w = normal(N * K, 1.0f, &r), *bias = normal(N, 1.0f, &r);
        float *g = normal(M * N, 1.0f, &r), *y = zeros(M * N);
        float *da = zeros(M * K), *db = zeros(K * N), *dw = zeros(N * K), *dbias = zeros(N);
        char label[96];

        FdProblem mp = {matmul_loss, {a, b}, {M * K, K * N}, g, y, {M, K, N}, 0};
        matmul_backward_naive(da, db, g, a, b, M, K, N);
        snprintf(label, sizeof label, "matmul %zux%zux%zu grad_a", M, K, N);
        fd_check(label, &mp, 0, da);
        snprintf(label, sizeof label, "matmul %zux%zux%zu grad_b", M, K, N);
        fd_check(label, &mp, 1, db);

        memset(da, 0, M * K * sizeof(float));
        FdProblem lp = {linear_loss, {a, w, bias}, {M * K, N * K, N}, g, y, {M, K, N}, 0};
        linear_backward_naive(da, dw, dbias, g, a, w, M, K, N);
        snprintf(label, sizeof label, "linear %zux%zux%zu grad_x", M, K, N);
        fd_check(label, &lp, 0, da);
        snprintf(label, sizeof label, "linear %zux%zux%zu grad_w", M, K, N);
        fd_check(label, &lp, 1, dw);
        snprintf(label, sizeof label, "linear %zux%zux%zu grad_bias", M, K, N);
        fd_check(label, &lp, 2, dbias);
        float *arrays[] = {a, b, w, bias, g, y, da, db, dw, dbias};
        for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
            free(arrays[i]);
    }
}
END_TEST

/* softmax / log_softmax over [outer, C, inner]; flag 1 = log_softmax */
static double rowwise_loss(const FdProblem *p)
{
    const size_t outer = p->dims[0], C = p->dims[1], inner = p->dims[2];
    (p->flag ? log_softmax_naive : softmax_naive)(p->y, p->in[0], outer, C, inner);
    return dot_g(p->g, p->y, outer * C * inner);
}

START_TEST(test_fd_softmax)
{
    static const size_t SHAPES[][3] = {{1, 1, 1}, {3, 7, 1}, {2, 5, 3}, {2, 9, 17}, {1, 40, 1}};
    for (int log = 0; log <= 1; log++)
        for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
            const size_t outer = SHAPES[s][0], C = SHAPES[s][1], inner = SHAPES[s][2];
            const size_t n = outer * C * inner;
            TuRng r = {0x0710 + s};
            float *x = normal(n, 2.0f, &r), *g = normal(n, 1.0f, &r), *y = zeros(n);
            float *dx = zeros(n);
            (log ? log_softmax_naive : softmax_naive)(y, x, outer, C, inner);
            (log ? log_softmax_backward_naive : softmax_backward_naive)(dx, g, y, outer, C, inner);
            FdProblem p = {rowwise_loss, {x}, {n}, g, y, {outer, C, inner}, log};
            char label[96];
            snprintf(label, sizeof label, "%s [%zu, %zu, %zu]", log ? "log_softmax" : "softmax",
                     outer, C, inner);
            fd_check(label, &p, 0, dx);
            free(x), free(g), free(y), free(dx);
        }
}
END_TEST

/* gelu over [n]; flag = TfmGeluApprox */
static double gelu_loss(const FdProblem *p)
{
    gelu_naive(p->y, p->in[0], p->dims[0], (TfmGeluApprox)p->flag);
    return dot_g(p->g, p->y, p->dims[0]);
}

START_TEST(test_fd_gelu)
{
    const size_t n = 161;   /* -8 .. 8 in steps of 0.1 */
    for (int approx = TFM_GELU_NONE; approx <= TFM_GELU_TANH; approx++) {
        TuRng r = {0x0720};
        float *x = zeros(n), *g = normal(n, 1.0f, &r), *y = zeros(n), *dx = zeros(n);
        for (size_t i = 0; i < n; i++)
            x[i] = (float)((double)i / 10.0 - 8.0);
        gelu_backward_naive(dx, g, x, n, (TfmGeluApprox)approx);
        FdProblem p = {gelu_loss, {x}, {n}, g, y, {n}, approx};
        fd_check(approx == TFM_GELU_NONE ? "gelu" : "gelu tanh", &p, 0, dx);
        free(x), free(g), free(y), free(dx);
    }
}
END_TEST

/* layernorm of [N, E] with gamma, beta */
static double layernorm_loss(const FdProblem *p)
{
    const size_t N = p->dims[0], E = p->dims[1];
    layernorm_forward_naive(p->y, NULL, NULL, p->in[0], p->in[1], p->in[2], 1e-5f, N, E);
    return dot_g(p->g, p->y, N * E);
}

START_TEST(test_fd_layernorm)
{
    static const size_t SHAPES[][2] = {{1, 2}, {3, 5}, {4, 16}, {2, 33}};
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const size_t N = SHAPES[s][0], E = SHAPES[s][1];
        TuRng r = {0x0730 + s};
        float *x = normal(N * E, 1.0f, &r), *g = normal(N * E, 1.0f, &r), *y = zeros(N * E);
        float *gamma = normal(E, 0.3f, &r), *beta = normal(E, 0.3f, &r);
        for (size_t e = 0; e < E; e++)
            gamma[e] += 1.0f;
        float *mean = zeros(N), *rstd = zeros(N);
        float *dx = zeros(N * E), *dg = zeros(E), *db = zeros(E);
        layernorm_forward_naive(y, mean, rstd, x, gamma, beta, 1e-5f, N, E);
        layernorm_backward_naive(dx, dg, db, g, x, mean, rstd, gamma, N, E);
        FdProblem p = {layernorm_loss, {x, gamma, beta}, {N * E, E, E}, g, y, {N, E}, 0};
        char label[96];
        snprintf(label, sizeof label, "layernorm [%zu, %zu] grad_x", N, E);
        fd_check(label, &p, 0, dx);
        snprintf(label, sizeof label, "layernorm [%zu, %zu] grad_gamma", N, E);
        fd_check(label, &p, 1, dg);
        snprintf(label, sizeof label, "layernorm [%zu, %zu] grad_beta", N, E);
        fd_check(label, &p, 2, db);
        float *arrays[] = {x, g, y, gamma, beta, mean, rstd, dx, dg, db};
        for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
            free(arrays[i]);
    }
}
END_TEST

/* Add & Norm: x, s [N, E], gamma, beta [E] */
static double add_norm_loss(const FdProblem *p)
{
    const size_t N = p->dims[0], E = p->dims[1];
    add_norm_forward_naive(p->y, NULL, NULL, p->in[0], p->in[1], p->in[2], p->in[3], 1e-5f, N,
                           E);
    return dot_g(p->g, p->y, N * E);
}

/* feed-forward: x [N, E], w1 [I, E], b1 [I], w2 [E, I], b2 [E]; GELU (smooth: see the encoder
 * layer's test below for why not ReLU) */
static double ffn_loss(const FdProblem *p)
{
    const size_t N = p->dims[0], E = p->dims[1], I = p->dims[2];
    const FfnParams prm = {p->in[1], p->in[2], p->in[3], p->in[4]};
    float *hidden = tu_malloc(N * I * sizeof(float));
    feedforward_forward_naive(p->y, hidden, p->in[0], NULL, &prm, TFM_ACT_GELU, N, E, I);
    free(hidden);
    return dot_g(p->g, p->y, N * E);
}

START_TEST(test_fd_add_norm_ffn)
{
    const size_t N = 3, E = 7, I = 11;
    TuRng r = {0x0738};
    float *x = normal(N * E, 1.0f, &r), *sub = normal(N * E, 1.0f, &r);
    float *g = normal(N * E, 1.0f, &r), *y = zeros(N * E);
    float *gamma = normal(E, 0.3f, &r), *beta = normal(E, 0.3f, &r);
    for (size_t e = 0; e < E; e++)
        gamma[e] += 1.0f;
    float *mean = zeros(N), *rstd = zeros(N);
    float *dx = zeros(N * E), *ds = zeros(N * E), *dg = zeros(E), *db = zeros(E);
    add_norm_forward_naive(y, mean, rstd, x, sub, gamma, beta, 1e-5f, N, E);
    add_norm_backward_naive(dx, ds, dg, db, g, x, sub, mean, rstd, gamma, N, E);
    FdProblem p = {add_norm_loss, {x, sub, gamma, beta}, {N * E, N * E, E, E}, g, y, {N, E}, 0};
    const float *an_grads[4] = {dx, ds, dg, db};
    static const char *const AN_NAMES[4] = {"grad_x", "grad_s", "grad_gamma", "grad_beta"};
    for (int k = 0; k < 4; k++) {
        char label[64];
        snprintf(label, sizeof label, "add & norm %s", AN_NAMES[k]);
        fd_check(label, &p, k, an_grads[k]);
    }

    float *w1 = normal(I * E, 0.4f, &r), *b1 = normal(I, 0.4f, &r);
    float *w2 = normal(E * I, 0.4f, &r), *b2 = normal(E, 0.4f, &r);
    float *pre = zeros(N * I), *hid = zeros(N * I);
    float *scratch = zeros(feedforward_backward_scratch_floats(N, I));
    float *gx = zeros(N * E), *gw1 = zeros(I * E), *gb1 = zeros(I), *gw2 = zeros(E * I);
    float *gb2 = zeros(E);
    const FfnParams prm = {w1, b1, w2, b2};
    const FfnGrads fg = {gw1, gb1, gw2, gb2};
    feedforward_forward_train_naive(y, pre, hid, x, NULL, &prm, TFM_ACT_GELU, N, E, I);
    feedforward_backward_naive(gx, &fg, scratch, g, x, pre, hid, &prm, TFM_ACT_GELU, N, E, I);
    FdProblem q = {ffn_loss, {x, w1, b1, w2, b2}, {N * E, I * E, I, E * I, E}, g, y, {N, E, I},
                   0};
    const float *ffn_grads[5] = {gx, gw1, gb1, gw2, gb2};
    static const char *const FFN_NAMES[5] = {"grad_x", "grad_w1", "grad_b1", "grad_w2",
                                             "grad_b2"};
    for (int k = 0; k < 5; k++) {
        char label[64];
        snprintf(label, sizeof label, "feed-forward %s", FFN_NAMES[k]);
        fd_check(label, &q, k, ffn_grads[k]);
    }
    float *arrays[] = {x, sub, g, y, gamma, beta, mean, rstd, dx, ds, dg, db, w1, b1, w2, b2,
                       pre, hid, scratch, gx, gw1, gb1, gw2, gb2};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        free(arrays[i]);
}
END_TEST

/* cross-entropy: input [N, C, inner] (dims N, C, inner), reduction sum, weights, ignore_index
 * -100, label smoothing 0.1; class indices from fd_ce_target, or probabilities in[1] */
static const int64_t CE_TARGET[6] = {2, -100, 0, 4, 1, 3};
static const float CE_WEIGHT[5] = {0.5f, 1.5f, 1.0f, 0.75f, 1.25f};

static double ce_loss(const FdProblem *p)
{
    const size_t N = p->dims[0], C = p->dims[1], inner = p->dims[2];
    float out;
    cross_entropy_loss_naive(&out, p->in[0], p->flag ? NULL : CE_TARGET, p->flag ? p->in[1] : NULL,
                             CE_WEIGHT, -100, TFM_REDUCTION_SUM, 0.1f, N, C, inner);
    return (double)p->g[0] * (double)out;
}

START_TEST(test_fd_cross_entropy)
{
    const size_t N = 3, C = 5, inner = 2, n = N * C * inner;
    TuRng r = {0x0739};
    float *x = normal(n, 2.0f, &r), *probs = zeros(n), g = 0.7f;
    for (size_t i = 0; i < n; i++)
        probs[i] = 0.05f + 0.1f * (float)(i % 7);   /* any targets: the loss is linear in them */
    for (int use_probs = 0; use_probs <= 1; use_probs++) {
        float *dx = zeros(n), *dt = zeros(n);
        cross_entropy_backward_naive(dx, use_probs ? dt : NULL, &g, x,
                                     use_probs ? NULL : CE_TARGET, use_probs ? probs : NULL,
                                     CE_WEIGHT, -100, TFM_REDUCTION_SUM, 0.1f, N, C, inner);
        FdProblem p = {ce_loss, {x, probs}, {n, n}, &g, NULL, {N, C, inner}, use_probs};
        fd_check(use_probs ? "cross-entropy, probabilities, grad_input"
                           : "cross-entropy, class indices, grad_input", &p, 0, dx);
        if (use_probs)
            fd_check("cross-entropy, probabilities, grad_target", &p, 1, dt);
        free(dx), free(dt);
    }
    free(x), free(probs);
}
END_TEST

/* The pretraining heads: dims {B, T, E, V}. MLM: in = hidden, dense_w, ln_gamma, decoder_w,
 * decoder_b (the others fixed in the problem's heads); NSP: hidden, pooler_w, pooler_b, cls_w,
 * cls_b. flag 0 = MLM, 1 = NSP. */
typedef struct {
    FdProblem fd;
    MlmHead mh;
    NspHead nh;
    const int64_t *labels, *nsp;
} HeadsProblem;

static double heads_loss(const FdProblem *fp)
{
    const HeadsProblem *hp = (const HeadsProblem *)fp;
    const size_t B = fp->dims[0], T = fp->dims[1], E = fp->dims[2], V = fp->dims[3];
    float loss;
    if (fp->flag == 0) {
        MlmHead mh = hp->mh;
        mh.dense_w = fp->in[1], mh.ln_gamma = fp->in[2], mh.decoder_w = fp->in[3];
        mh.decoder_b = fp->in[4];
        mlm_forward_naive(&loss, NULL, fp->in[0], hp->labels, &mh, B * T, E, V);
    } else {
        const NspHead nh = {fp->in[1], fp->in[2], fp->in[3], fp->in[4]};
        float logits[8];
        nsp_forward_naive(&loss, logits, NULL, fp->in[0], hp->nsp, &nh, B, T, E);
    }
    return (double)fp->g[0] * (double)loss;
}

START_TEST(test_fd_pretraining_heads)
{
    const size_t B = 2, T = 3, E = 6, V = 9, N = B * T;
    static const int64_t LABELS[6] = {4, -100, 0, -100, 8, 2}, NSP[2] = {1, 0};
    TuRng r = {0x073a};
    float *h = normal(N * E, 1.0f, &r), *dw = normal(E * E, 0.4f, &r), *db = normal(E, 0.1f, &r);
    float *gam = normal(E, 0.1f, &r), *bet = normal(E, 0.1f, &r), *W = normal(V * E, 0.5f, &r);
    float *bd = normal(V, 0.1f, &r), *pw = normal(E * E, 0.4f, &r), *pb = normal(E, 0.1f, &r);
    float *cw = normal(2 * E, 0.4f, &r), *cb = normal(2, 0.1f, &r);
    for (size_t e = 0; e < E; e++)
        gam[e] += 1.0f;
    const float dloss = 0.8f;
    HeadsProblem hp = {.mh = {dw, db, gam, bet, W, bd, 1e-12f}, .nh = {pw, pb, cw, cb},
                       .labels = LABELS, .nsp = NSP};
    for (int head = 0; head < 2; head++) {
        const size_t sizes[2][5] = {{N * E, E * E, E, V * E, V}, {N * E, E * E, E, 2 * E, 2}};
        float *grads[5];
        for (int k = 0; k < 5; k++)
            grads[k] = zeros(sizes[head][k]);
        /* the gradients of the parameters this problem does not perturb */
        float *unused[6] = {zeros(E), zeros(E), zeros(E), zeros(E), zeros(E), zeros(E)};
        if (head == 0) {
            const MlmHeadGrads mg = {grads[1], unused[0], grads[2], unused[1], grads[3],
                                     grads[4]};
            mlm_backward_naive(grads[0], &mg, dloss, h, LABELS, &hp.mh, N, E, V);
        } else {
            const NspHeadGrads ng = {grads[1], grads[2], grads[3], grads[4]};
            nsp_backward_naive(grads[0], &ng, dloss, h, NSP, &hp.nh, B, T, E);
        }
        hp.fd = (FdProblem){heads_loss,
                            {h, head ? pw : dw, head ? pb : gam, head ? cw : W, head ? cb : bd},
                            {0}, &dloss, NULL, {B, T, E, V}, head};
        for (int k = 0; k < 5; k++) {
            hp.fd.n[k] = sizes[head][k];
            char label[64];
            snprintf(label, sizeof label, "%s head, input %d", head ? "NSP" : "MLM", k);
            fd_check(label, &hp.fd, k, grads[k]);
            free(grads[k]);
        }
        for (int k = 0; k < 6; k++)
            free(unused[k]);
    }
    float *arrays[] = {h, dw, db, gam, bet, W, bd, pw, pb, cw, cb};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
        free(arrays[i]);
}
END_TEST

/* A micro BERT, its weights in one block: the tables, the embeddings' LayerNorm, L layers of
 * EncoderLayerParams' 12 tensors, the pooler. Its gradients in a block of the same layout. */
enum { MB_L = 2, MB_E = 8, MB_H = 2, MB_I = 12, MB_V = 11, MB_P = 6, MB_G = 2, MB_B = 2,
       MB_T = 5 };

typedef struct {
    FdProblem fd;
    BertConfig cfg;
    BertWeights w;
    EncoderLayerParams layers[MB_L];
    const int64_t *ids, *mask, *types;
    const float *gp;   /* [B, E] the pooler output's upstream gradient */
} BertProblem;

/* The sizes of the block's tensors, in order; returns their count. */
static int bert_sizes(size_t sz[40])
{
    const size_t E = MB_E, I = MB_I;
    int k = 0;
    sz[k++] = MB_V * E, sz[k++] = MB_P * E, sz[k++] = MB_G * E, sz[k++] = E, sz[k++] = E;
    for (int l = 0; l < MB_L; l++) {
        const size_t layer[12] = {3 * E * E, 3 * E, E * E, E, I * E, I, E * I, E, E, E, E, E};
        for (int t = 0; t < 12; t++)
            sz[k++] = layer[t];
    }
    sz[k++] = E * E, sz[k++] = E;
    return k;
}

/* Points w (and layers) or g (and lg) at the tensors of block. */
static void bert_point(float *block, BertWeights *w, EncoderLayerParams *layers, BertGrads *g,
                       EncoderLayerGrads *lg)
{
    size_t sz[40];
    const int n = bert_sizes(sz);
    float *t[40];
    for (int k = 0; k < n; k++) {
        t[k] = block;
        block += sz[k];
    }
    for (int l = 0; l < MB_L; l++) {
        float **q = t + 5 + 12 * l;
        if (layers)
            layers[l] = (EncoderLayerParams){{q[0], q[1], q[2], q[3]}, {q[4], q[5], q[6], q[7]},
                                             q[8], q[9], q[10], q[11]};
        if (lg)
            lg[l] = (EncoderLayerGrads){{q[0], q[1], q[2], q[3]}, {q[4], q[5], q[6], q[7]},
                                        q[8], q[9], q[10], q[11]};
    }
    if (w)
        *w = (BertWeights){t[0], t[1], t[2], t[3], t[4], layers, t[n - 2], t[n - 1]};
    if (g)
        *g = (BertGrads){t[0], t[1], t[2], t[3], t[4], lg, t[n - 2], t[n - 1]};
}

static double bert_loss(const FdProblem *fp)
{
    const BertProblem *bp = (const BertProblem *)fp;
    BertActs acts;
    float *block = zeros(bert_acts_floats(&bp->cfg, MB_B, MB_T, 0));
    bert_acts_init(&acts, block, &bp->cfg, MB_B, MB_T, 0);
    bert_forward_naive(&acts, bp->ids, bp->mask, bp->types, &bp->w, &bp->cfg);
    const double l = dot_g(fp->g, acts.hidden + (size_t)MB_L * MB_B * MB_T * MB_E,
                           (size_t)MB_B * MB_T * MB_E) +
                     dot_g(bp->gp, acts.pooled, (size_t)MB_B * MB_E);
    free(block);
    return l;
}

/* The whole BERT's backward (bert_backward_*) from a training forward, as a model runs it:
 * naive against central differences of the eval forward, with a padded token and two token
 * types, on the tables, the embeddings' LayerNorm, layer 0's attention, layer 1's FFN and the
 * pooler; fast against naive on every gradient. The padding row gets nothing. */
START_TEST(test_bert_backward)
{
    static const int64_t IDS[10] = {2, 5, 7, 10, 0, 3, 3, 9, 1, 0};   /* 0: [PAD] */
    static const int64_t MASK[10] = {1, 1, 1, 1, 0, 1, 1, 1, 1, 0};
    static const int64_t TYPES[10] = {0, 0, 1, 1, 0, 0, 1, 1, 1, 0};
    size_t sz[40];
    const int n = bert_sizes(sz);
    size_t total = 0;
    for (int k = 0; k < n; k++)
        total += sz[k];
    TuRng r = {0x07b8};
    float *wblock = normal(total, 0.3f, &r);
    BertProblem bp = {.cfg = {MB_V, MB_E, MB_L, MB_H, MB_I, MB_P, MB_G, 1e-12f, TFM_ACT_GELU, 0},
                      .ids = IDS, .mask = MASK, .types = TYPES};
    bert_point(wblock, &bp.w, bp.layers, NULL, NULL);
    for (int l = 0; l < MB_L; l++)   /* LayerNorm weights near 1 */
        for (size_t e = 0; e < MB_E; e++)
            ((float *)bp.layers[l].norm1_w)[e] += 1.0f, ((float *)bp.layers[l].norm2_w)[e] += 1.0f;
    for (size_t e = 0; e < MB_E; e++)
        ((float *)bp.w.emb_ln_w)[e] += 1.0f;
    const size_t BTE = (size_t)MB_B * MB_T * MB_E;
    float *g = normal(BTE, 1.0f, &r), *gp = normal((size_t)MB_B * MB_E, 1.0f, &r);
    bp.gp = gp;

    float *grads[2];
    for (int v = 0; v < 2; v++) {
        EncoderActs la[MB_L];
        BertTrainActs acts;
        float *ablock = zeros(bert_train_acts_floats(&bp.cfg, MB_B, MB_T));
        float *scratch = zeros(bert_backward_scratch_floats(&bp.cfg, MB_B, MB_T));
        bert_train_acts_init(&acts, la, ablock, &bp.cfg, MB_B, MB_T);
        grads[v] = zeros(total);
        BertGrads bg;
        EncoderLayerGrads lg[MB_L];
        bert_point(grads[v], NULL, NULL, &bg, lg);
        (v ? bert_forward_train_fast : bert_forward_train_naive)(&acts, IDS, MASK, TYPES, &bp.w,
                                                                 &bp.cfg);
        (v ? bert_backward_fast : bert_backward_naive)(&bg, scratch, g, gp, IDS, TYPES, &acts,
                                                       &bp.w, &bp.cfg);
        free(ablock), free(scratch);
    }
    for (size_t e = 0; e < MB_E; e++)
        ck_assert_msg(grads[0][e] == 0.0f && grads[1][e] == 0.0f,
                      "the [PAD] row of the word table received a gradient");

    bp.fd = (FdProblem){bert_loss, {NULL}, {0}, g, NULL, {0}, 0};
    /* word, position and type tables, the embeddings' LayerNorm weight, layer 0's
     * in_proj_weight, layer 1's linear2.weight, the pooler's weight */
    static const int CHECKED[7] = {0, 1, 2, 3, 5, 5 + 12 + 6, 5 + 24};
    size_t off[40];
    off[0] = 0;
    for (int k = 1; k < n; k++)
        off[k] = off[k - 1] + sz[k - 1];
    for (int c = 0; c < 7; c++) {
        const int k = CHECKED[c];
        /* the word table from row 1: the [PAD] row does change the output (padded tokens are
         * still computed), but padding_idx gives it no gradient by definition */
        const size_t skip = k == 0 ? MB_E : 0;
        bp.fd.in[0] = wblock + off[k] + skip;
        bp.fd.n[0] = sz[k] - skip;
        char label[64];
        snprintf(label, sizeof label, "BERT, tensor %d of the weight block", k);
        fd_check(label, &bp.fd, 0, grads[0] + off[k] + skip);
    }
    for (int k = 0; k < n; k++) {
        char label[64];
        snprintf(label, sizeof label, "BERT fast vs naive, tensor %d", k);
        tu_assert_close_f32(label, grads[1] + off[k], grads[0] + off[k], 1, &sz[k],
                            TOL_07_LAYER_ATOL, TOL_07_LAYER_RTOL);
    }
    free(wblock), free(g), free(gp), free(grads[0]), free(grads[1]);
}
END_TEST

/* attention: q, k, v [1, H, T, D] with the mask in p->dims[4..]: dims = {H, Tq, Tk, D} and flag
 * bit 0 = causal, bit 1 = padding of the last key */
static const uint8_t PAD_LAST[8] = {0, 0, 0, 0, 0, 0, 0, 1};

static AttnMask fd_mask(int flag, size_t Tk)
{
    AttnMask m = {NULL, 0, 0, (flag & 2) ? PAD_LAST + 8 - Tk : NULL, flag & 1};
    return m;
}

static double attention_loss(const FdProblem *p)
{
    const size_t H = p->dims[0], Tq = p->dims[1], Tk = p->dims[2], D = p->dims[3];
    const AttnMask m = fd_mask(p->flag, Tk);
    attention_forward_naive(p->y, NULL, p->in[0], p->in[1], p->in[2], &m, 0.6f, 1, H, Tq, Tk,
                            D, D);
    return dot_g(p->g, p->y, H * Tq * D);
}

START_TEST(test_fd_attention)
{
    static const size_t SHAPES[][4] = {{1, 1, 1, 3}, {2, 4, 5, 3}, {1, 6, 6, 4}, {2, 3, 8, 2}};
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++)
        for (int flag = 0; flag < 4; flag++) {
            const size_t H = SHAPES[s][0], Tq = SHAPES[s][1], Tk = SHAPES[s][2], D = SHAPES[s][3];
            if ((flag & 2) && Tk < 2)
                continue;   /* padding the only key would leave nothing to attend */
            TuRng r = {0x0790 + 4 * s + (uint64_t)flag};
            const size_t nq = H * Tq * D, nk = H * Tk * D;
            float *q = normal(nq, 1.0f, &r), *k = normal(nk, 1.0f, &r), *v = normal(nk, 1.0f, &r);
            float *g = normal(nq, 1.0f, &r), *y = zeros(nq), *lse = zeros(attention_lse_floats(1, H, Tq));
            float *dq = zeros(nq), *dk = zeros(nk), *dv = zeros(nk);
            const AttnMask m = fd_mask(flag, Tk);
            attention_forward_lse_naive(y, lse, q, k, v, &m, 0.6f, 1, H, Tq, Tk, D, D);
            attention_backward_naive(dq, dk, dv, g, q, k, v, y, lse, &m, 0.6f, 1, H, Tq, Tk, D, D);
            FdProblem p = {attention_loss, {q, k, v}, {nq, nk, nk}, g, y, {H, Tq, Tk, D}, flag};
            char label[96];
            for (int t = 0; t < 3; t++) {
                snprintf(label, sizeof label, "attention H%zu Tq%zu Tk%zu D%zu mask %d grad_%c", H,
                         Tq, Tk, D, flag, "qkv"[t]);
                fd_check(label, &p, t, t == 0 ? dq : t == 1 ? dk : dv);
            }
            float *arrays[] = {q, k, v, g, y, lse, dq, dk, dv};
            for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
                free(arrays[i]);
        }
}
END_TEST

/* Multi-head attention in the general case (chapter 02's cross-attention): query [B, Tq, E], key
 * and value [B, Tk, E], Tq != Tk, with padding on the keys. The FD problem's inputs are query,
 * key, value, in_proj_weight and out_proj_weight (the biases: the goldens); dims = {B, Tq, Tk, E,
 * H}; flag bit 0: padding, bit 1: value = key (one buffer for both, as a decoder passes its
 * memory), whose gradient then sums both paths. */
static float *halves(size_t n);   /* below: a gradient buffer that starts at 0.5 everywhere */

typedef struct {
    FdProblem fd;
    const float *b_in, *b_out;    /* [3E], [E] */
    const uint8_t *pad;           /* [B, Tk] */
} MhaProblem;

static double mha_loss(const FdProblem *fp)
{
    const MhaProblem *mp = (const MhaProblem *)fp;
    const size_t B = fp->dims[0], Tq = fp->dims[1], Tk = fp->dims[2], E = fp->dims[3];
    const size_t H = fp->dims[4], nq = B * Tq * E, nk = B * Tk * E;
    const MhaParams prm = {fp->in[3], mp->b_in, fp->in[4], mp->b_out};
    const AttnMask m = {NULL, 0, 0, (fp->flag & 1) ? mp->pad : NULL, 0};
    float *buf = zeros(2 * nq + 2 * nk + attention_lse_floats(B, H, Tq));
    const MhaCrossActs acts = {buf, buf + nq, buf + nq + nk, buf + nq + 2 * nk, buf + 2 * nq + 2 * nk};
    const float *value = (fp->flag & 2) ? fp->in[1] : fp->in[2];
    multihead_forward_train_naive(fp->y, &acts, fp->in[0], fp->in[1], value, &prm, &m, B, H, Tq,
                                  Tk, E);
    free(buf);
    return dot_g(fp->g, fp->y, nq);
}

START_TEST(test_fd_mha_cross)
{
    static const size_t SHAPES[][5] = {{2, 3, 5, 6, 2}, {1, 4, 2, 4, 1}};   /* B, Tq, Tk, E, H */
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++)
        for (int flag = 0; flag < 4; flag++) {
            const size_t B = SHAPES[s][0], Tq = SHAPES[s][1], Tk = SHAPES[s][2], E = SHAPES[s][3];
            const size_t H = SHAPES[s][4], nq = B * Tq * E, nk = B * Tk * E;
            TuRng r = {0x07c0 + 4 * s + (uint64_t)flag};
            float *query = normal(nq, 1.0f, &r), *key = normal(nk, 1.0f, &r);
            float *value = normal(nk, 1.0f, &r), *g = normal(nq, 1.0f, &r);
            float *w_in = normal(3 * E * E, 1.0f / sqrtf((float)E), &r);
            float *w_out = normal(E * E, 1.0f / sqrtf((float)E), &r);
            float *b_in = normal(3 * E, 0.1f, &r), *b_out = normal(E, 0.1f, &r);
            uint8_t pad[16] = {0};
            for (size_t b = 0; b < B; b++)          /* batch row b: its last b keys are padding */
                for (size_t j = 0; j < Tk; j++)
                    pad[b * Tk + j] = j >= 1 && j + b >= Tk;
            MhaProblem mp = {{mha_loss, {query, key, value, w_in, w_out},
                              {nq, nk, nk, 3 * E * E, E * E}, g, zeros(nq), {B, Tq, Tk, E, H},
                              flag}, b_in, b_out, pad};
            const int same = flag & 2;
            /* the backward, from the naive training forward's acts */
            float *buf = zeros(2 * nq + 2 * nk + attention_lse_floats(B, H, Tq));
            const MhaCrossActs acts = {buf, buf + nq, buf + nq + nk, buf + nq + 2 * nk,
                                       buf + 2 * nq + 2 * nk};
            const MhaParams prm = {w_in, b_in, w_out, b_out};
            const AttnMask m = {NULL, 0, 0, (flag & 1) ? pad : NULL, 0};
            float *dq = zeros(nq), *dk = zeros(nk), *dv = same ? dk : zeros(nk);
            float *dw_in = zeros(3 * E * E), *db_in = zeros(3 * E), *dw_out = zeros(E * E);
            float *db_out = zeros(E), *y = zeros(nq);
            const MhaGrads gr = {dw_in, db_in, dw_out, db_out};
            multihead_forward_train_naive(y, &acts, query, key, same ? key : value, &prm, &m, B, H,
                                          Tq, Tk, E);
            multihead_backward_naive(dq, dk, dv, &gr, g, query, key, same ? key : value, &prm,
                                     &acts, &m, B, H, Tq, Tk, E);
            const float *grads[5] = {dq, dk, dv, dw_in, dw_out};
            static const char *const NAMES[5] = {"query", "key", "value", "in_proj_weight",
                                                 "out_proj_weight"};
            char label[128];
            for (int t = 0; t < 5; t++) {
                if (same && t == 2)
                    continue;                     /* value is key: its gradient is key's */
                snprintf(label, sizeof label, "mha B%zu Tq%zu Tk%zu E%zu H%zu pad %d %s grad_%s",
                         B, Tq, Tk, E, H, flag & 1, same ? "value=key" : "", NAMES[t]);
                fd_check(label, &mp.fd, t, grads[t]);
            }
            float *arrays[] = {query, key, value, g, w_in, w_out, b_in, b_out, buf, dq, dk, dw_in,
                               db_in, dw_out, db_out, y, mp.fd.y};
            for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
                free(arrays[i]);
            if (!same)
                free(dv);
        }
}
END_TEST

/* The general multi-head attention backward, fast against naive, past the GEMM's and attention's
 * blocks, with padding, a float mask and value = key. */
START_TEST(test_fast_vs_naive_mha_cross)
{
    typedef struct { size_t B, Tq, Tk, E, H; int pad, add, same; } Shape;
    static const Shape SHAPES[] = {
        {2, 5, 7, 12, 3, 1, 0, 0}, {1, 33, 70, 64, 2, 0, 1, 1}, {2, 40, 9, 48, 4, 1, 1, 0},
    };
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const Shape *z = &SHAPES[s];
        const size_t E = z->E, nq = z->B * z->Tq * E, nk = z->B * z->Tk * E;
        TuRng r = {0x07d0 + s};
        float *query = normal(nq, 1.0f, &r), *key = normal(nk, 1.0f, &r);
        float *value = normal(nk, 1.0f, &r);
        float *g = normal(nq, 1.0f, &r), *add = normal(z->Tq * z->Tk, 1.0f, &r);
        float *w_in = normal(3 * E * E, 1.0f / sqrtf((float)E), &r);
        float *b_in = normal(3 * E, 0.1f, &r);
        float *w_out = normal(E * E, 1.0f / sqrtf((float)E), &r), *b_out = normal(E, 0.1f, &r);
        uint8_t *pad = tu_malloc(z->B * z->Tk);
        for (size_t b = 0; b < z->B; b++)
            for (size_t j = 0; j < z->Tk; j++)
                pad[b * z->Tk + j] = z->pad && j >= 1 && j + 3 * b >= z->Tk;
        const AttnMask m = {z->add ? add : NULL, 0, 0, z->pad ? pad : NULL, 0};
        const MhaParams prm = {w_in, b_in, w_out, b_out};
        const float *v_in = z->same ? key : value;
        float *got[2][7];
        const size_t n[7] = {nq, nk, nk, 3 * E * E, 3 * E, E * E, E};
        for (int fast = 0; fast < 2; fast++) {
            for (int o = 0; o < 7; o++) got[fast][o] = halves(n[o]);
            float *buf = zeros(2 * nq + 2 * nk + attention_lse_floats(z->B, z->H, z->Tq));
            const MhaCrossActs acts = {buf, buf + nq, buf + nq + nk, buf + nq + 2 * nk,
                                       buf + 2 * nq + 2 * nk};
            float *y = zeros(nq);
            const MhaGrads gr = {got[fast][3], got[fast][4], got[fast][5], got[fast][6]};
            float *dv = z->same ? got[fast][1] : got[fast][2];
            (fast ? multihead_forward_train_fast : multihead_forward_train_naive)(
                y, &acts, query, key, v_in, &prm, &m, z->B, z->H, z->Tq, z->Tk, E);
            (fast ? multihead_backward_fast : multihead_backward_naive)(
                got[fast][0], got[fast][1], dv, &gr, g, query, key, v_in, &prm, &acts, &m, z->B,
                z->H, z->Tq, z->Tk, E);
            free(buf), free(y);
        }
        static const char *const NAMES[7] = {"grad_query", "grad_key", "grad_value",
                                             "grad_in_proj_weight", "grad_in_proj_bias",
                                             "grad_out_proj_weight", "grad_out_proj_bias"};
        char label[160];
        for (int o = 0; o < 7; o++) {
            if (z->same && o == 2)
                continue;
            snprintf(label, sizeof label,
                     "mha B%zu Tq%zu Tk%zu E%zu H%zu p%d a%d same%d %s fast vs naive", z->B,
                     z->Tq, z->Tk, E, z->H, z->pad, z->add, z->same, NAMES[o]);
            tu_assert_close_f32(label, got[1][o], got[0][o], 1, &n[o], TOL_07_ATTN_ATOL,
                                TOL_07_ATTN_RTOL);
        }
        for (int f = 0; f < 2; f++)
            for (int o = 0; o < 7; o++) free(got[f][o]);
        free(query), free(key), free(value), free(g), free(add), free(w_in), free(b_in);
        free(w_out), free(b_out), free(pad);
    }
}
END_TEST

/* The encoder layer (and through it multi-head attention, the FFN, LayerNorm, the residuals):
 * every input and parameter, both orders, ReLU and GELU, with padding. The FD problem's inputs
 * are src and the twelve parameters; dims = {B, T, E, H, I}, flag = act | norm_first << 4. */
typedef struct {
    FdProblem fd;
    float *p[13];               /* src, then EncoderLayerParams's order */
    size_t n[13];
    const uint8_t *pad;         /* [B, T] */
} LayerProblem;

static EncoderLayerParams layer_params(float *const *p)
{
    const EncoderLayerParams lp = {{p[1], p[2], p[3], p[4]}, {p[5], p[6], p[7], p[8]},
                                   p[9], p[10], p[11], p[12]};
    return lp;
}

static double layer_loss(const FdProblem *fp)
{
    const LayerProblem *lp = (const LayerProblem *)fp;
    const size_t B = fp->dims[0], T = fp->dims[1], E = fp->dims[2], H = fp->dims[3];
    const size_t I = fp->dims[4];
    const EncoderLayerParams prm = layer_params(lp->p);
    const AttnMask m = {NULL, 0, 0, lp->pad, 0};
    float *scratch = tu_malloc(encoder_layer_scratch_floats(B, T, E, I) * sizeof(float));
    encoder_layer_forward_naive(fp->y, NULL, scratch, lp->p[0], &m, &prm,
                                (TfmActivation)(fp->flag & 15), fp->flag >> 4, 1e-5f, B, T, E, H,
                                I);
    free(scratch);
    return dot_g(fp->g, fp->y, B * T * E);
}

START_TEST(test_fd_encoder_layer)
{
    const size_t B = 2, T = 4, E = 6, H = 2, I = 10, N = B * T;
    static const uint8_t PAD[8] = {0, 0, 0, 0, 0, 0, 0, 1};   /* batch row 1's last token */
    /* GELU only: a step of FD_H moves some of ReLU's I*N pre-activations across its kink,
     * where a central difference measures neither side's slope. ReLU's layer gradient is held
     * by the autograd goldens (encoder_post_relu, encoder_pre_relu) and by fast-vs-naive. */
    const TfmActivation act = TFM_ACT_GELU;
    for (int norm_first = 0; norm_first <= 1; norm_first++) {
        TuRng r = {0x07b1 + 2 * (uint64_t)norm_first};
        LayerProblem lp = {.pad = PAD};
        const size_t sizes[13] = {N * E, 3 * E * E, 3 * E, E * E, E, I * E, I, E * I, E,
                                  E, E, E, E};
        for (int t = 0; t < 13; t++) {
            lp.n[t] = sizes[t];
            lp.p[t] = normal(sizes[t], t == 0 ? 1.0f : 0.4f, &r);
        }
        for (size_t e = 0; e < E; e++)   /* LayerNorm weights near 1 */
            lp.p[9][e] += 1.0f, lp.p[11][e] += 1.0f;
        float *g = normal(N * E, 1.0f, &r), *y = zeros(N * E);
        float *grads[13];
        for (int t = 0; t < 13; t++)
            grads[t] = zeros(sizes[t]);
        const EncoderLayerGrads eg = {{grads[1], grads[2], grads[3], grads[4]},
                                      {grads[5], grads[6], grads[7], grads[8]},
                                      grads[9], grads[10], grads[11], grads[12]};
        const EncoderLayerParams prm = layer_params(lp.p);
        const AttnMask m = {NULL, 0, 0, PAD, 0};
        float *acts_buf = zeros(encoder_acts_floats(B, T, E, H, I));
        float *scratch = zeros(encoder_layer_backward_scratch_floats(B, T, E, I));
        EncoderActs acts;
        encoder_acts_init(&acts, acts_buf, B, T, E, H, I);
        encoder_layer_forward_train_naive(y, &acts, lp.p[0], &m, &prm, act, norm_first, 1e-5f,
                                          B, T, E, H, I);
        encoder_layer_backward_naive(grads[0], &eg, scratch, g, lp.p[0], &acts, &m, &prm, act,
                                     norm_first, B, T, E, H, I);
        lp.fd = (FdProblem){layer_loss, {NULL}, {0}, g, y, {B, T, E, H, I},
                            (int)act | norm_first << 4};
        for (int t = 0; t < 13; t++) {
            lp.fd.in[0] = lp.p[t];   /* fd_check perturbs in[k]; the loss reads lp.p */
            lp.fd.n[0] = sizes[t];
            char label[96];
            snprintf(label, sizeof label, "encoder layer %s gelu input %d",
                     norm_first ? "pre-LN" : "post-LN", t);
            fd_check(label, &lp.fd, 0, grads[t]);
        }
        for (int t = 0; t < 13; t++)
            free(lp.p[t]), free(grads[t]);
        free(g), free(y), free(acts_buf), free(scratch);
    }
}
END_TEST

/* ---------------------------------------------------------------- fast vs naive, accumulation
 *
 * Every gradient buffer starts at 0.5 (not 0): a backward that overwrote instead of adding would
 * lose it. Fast and naive sum in other orders; they are held to chapter 07's tolerances. */

static float *halves(size_t n)
{
    float *x = tu_malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f;
    return x;
}

START_TEST(test_fast_vs_naive_linear_matmul)
{
    /* M < 5: the direct paths; 12 and 32 edges; reduced dimensions past KC = 256 */
    static const size_t SHAPES[][3] = {{1, 7, 5},   {4, 33, 17},  {5, 12, 32},
                                       {13, 70, 45}, {300, 64, 270}, {64, 768, 96}};
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const size_t M = SHAPES[s][0], K = SHAPES[s][1], N = SHAPES[s][2];
        TuRng r = {0x0740 + s};
        float *x = normal(M * K, 1.0f, &r), *w = normal(N * K, 1.0f, &r);
        float *b = normal(K * N, 1.0f, &r), *g = normal(M * N, 1.0f, &r);
        float *dx[2], *dw[2], *db[2], *da[2], *dbm[2];
        for (int v = 0; v < 2; v++) {
            dx[v] = halves(M * K), dw[v] = halves(N * K), db[v] = halves(N);
            da[v] = halves(M * K), dbm[v] = halves(K * N);
            (v ? linear_backward_fast : linear_backward_naive)(dx[v], dw[v], db[v], g, x, w, M, K,
                                                               N);
            (v ? matmul_backward_fast : matmul_backward_naive)(da[v], dbm[v], g, x, b, M, K, N);
        }
        char label[96];
        const struct { const char *name; float **got; size_t n; } outs[] = {
            {"linear grad_x", dx, M * K}, {"linear grad_w", dw, N * K},
            {"linear grad_bias", db, N}, {"matmul grad_a", da, M * K},
            {"matmul grad_b", dbm, K * N}};
        for (size_t o = 0; o < sizeof outs / sizeof outs[0]; o++) {
            snprintf(label, sizeof label, "%s %zux%zux%zu fast vs naive", outs[o].name, M, K, N);
            tu_assert_close_f32(label, outs[o].got[1], outs[o].got[0], 1, &outs[o].n,
                                TOL_07_MATMUL_ATOL, TOL_07_MATMUL_RTOL);
        }
        /* the 0.5 is still there: naive's grad_bias of a single row is 0.5 + g exactly */
        if (M == 1)
            for (size_t j = 0; j < N; j++)
                ck_assert_float_eq(db[0][j], 0.5f + g[j]);
        for (int v = 0; v < 2; v++)
            free(dx[v]), free(dw[v]), free(db[v]), free(da[v]), free(dbm[v]);
        free(x), free(w), free(b), free(g);
    }
}
END_TEST

START_TEST(test_fast_vs_naive_rows)
{
    static const size_t SHAPES[][3] = {{1, 1, 1}, {5, 7, 1}, {3, 100, 1}, {2, 9, 16},
                                       {2, 9, 35}, {4, 30522, 1}};
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const size_t outer = SHAPES[s][0], C = SHAPES[s][1], inner = SHAPES[s][2];
        const size_t n = outer * C * inner;
        TuRng r = {0x0750 + s};
        float *x = normal(n, 3.0f, &r), *g = normal(n, 1.0f, &r), *y = zeros(n);
        for (int log = 0; log <= 1; log++) {
            float *dx[2] = {halves(n), halves(n)};
            for (int v = 0; v < 2; v++) {
                (log ? log_softmax_naive : softmax_naive)(y, x, outer, C, inner);
                if (log)
                    (v ? log_softmax_backward_fast : log_softmax_backward_naive)(dx[v], g, y,
                                                                                 outer, C, inner);
                else
                    (v ? softmax_backward_fast : softmax_backward_naive)(dx[v], g, y, outer, C,
                                                                         inner);
            }
            char label[96];
            snprintf(label, sizeof label, "%s [%zu, %zu, %zu] fast vs naive",
                     log ? "log_softmax" : "softmax", outer, C, inner);
            tu_assert_close_f32(label, dx[1], dx[0], 1, &n, TOL_07_FN_ATOL, TOL_07_FN_RTOL);
            free(dx[0]), free(dx[1]);
        }
        for (int approx = TFM_GELU_NONE; approx <= TFM_GELU_TANH; approx++) {
            float *dx[2] = {halves(n), halves(n)};
            gelu_backward_naive(dx[0], g, x, n, (TfmGeluApprox)approx);
            gelu_backward_fast(dx[1], g, x, n, (TfmGeluApprox)approx);
            tu_assert_close_f32(approx ? "gelu tanh fast vs naive" : "gelu fast vs naive", dx[1],
                                dx[0], 1, &n, TOL_07_FN_ATOL, TOL_07_FN_RTOL);
            free(dx[0]), free(dx[1]);
        }
        free(x), free(g), free(y);
    }
}
END_TEST

START_TEST(test_fast_vs_naive_layernorm)
{
    static const size_t SHAPES[][2] = {{1, 1}, {3, 7}, {17, 256}, {9, 300}, {64, 768}};
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const size_t N = SHAPES[s][0], E = SHAPES[s][1];
        TuRng r = {0x0760 + s};
        float *x = normal(N * E, 2.0f, &r), *g = normal(N * E, 1.0f, &r);
        float *gamma = normal(E, 1.0f, &r), *y = zeros(N * E), *mean = zeros(N), *rstd = zeros(N);
        layernorm_forward_naive(y, mean, rstd, x, gamma, NULL, 1e-5f, N, E);
        for (int affine = 0; affine <= 1; affine++) {
            float *dx[2] = {halves(N * E), halves(N * E)}, *dg[2] = {halves(E), halves(E)};
            float *db[2] = {halves(E), halves(E)};
            for (int v = 0; v < 2; v++)
                (v ? layernorm_backward_fast : layernorm_backward_naive)(
                    dx[v], dg[v], db[v], g, x, mean, rstd, affine ? gamma : NULL, N, E);
            char label[96];
            const size_t nE = N * E;
            snprintf(label, sizeof label, "layernorm [%zu, %zu]%s grad_x", N, E,
                     affine ? "" : " no gamma");
            tu_assert_close_f32(label, dx[1], dx[0], 1, &nE, TOL_07_LN_ATOL, TOL_07_LN_RTOL);
            tu_assert_close_f32("layernorm grad_gamma", dg[1], dg[0], 1, &E, TOL_07_LN_ATOL,
                                TOL_07_LN_RTOL);
            tu_assert_close_f32("layernorm grad_beta", db[1], db[0], 1, &E, TOL_07_LN_ATOL,
                                TOL_07_LN_RTOL);
            for (int v = 0; v < 2; v++)
                free(dx[v]), free(dg[v]), free(db[v]);
        }
        free(x), free(g), free(gamma), free(y), free(mean), free(rstd);
    }
}
END_TEST

/* Add & Norm and the feed-forward network, fast against naive, both activations and with and
 * without biases, at shapes past the GEMM's and LayerNorm's blocks; every buffer starts at 1/2
 * (they accumulate). */
START_TEST(test_fast_vs_naive_add_norm_ffn)
{
    static const size_t SHAPES[][3] = {{1, 1, 1}, {5, 7, 9}, {70, 300, 260}, {33, 768, 64}};
    for (size_t sh = 0; sh < sizeof SHAPES / sizeof SHAPES[0]; sh++) {
        const size_t N = SHAPES[sh][0], E = SHAPES[sh][1], I = SHAPES[sh][2], nE = N * E;
        TuRng r = {0x0770 + sh};
        float *x = normal(nE, 1.0f, &r), *sub = normal(nE, 1.0f, &r), *g = normal(nE, 1.0f, &r);
        float *gamma = normal(E, 1.0f, &r), *y = zeros(nE), *mean = zeros(N), *rstd = zeros(N);
        add_norm_forward_naive(y, mean, rstd, x, sub, gamma, NULL, 1e-5f, N, E);
        float *an[2][4];
        for (int v = 0; v < 2; v++) {
            an[v][0] = halves(nE), an[v][1] = halves(nE), an[v][2] = halves(E);
            an[v][3] = halves(E);
            (v ? add_norm_backward_fast : add_norm_backward_naive)(
                an[v][0], an[v][1], an[v][2], an[v][3], g, x, sub, mean, rstd, gamma, N, E);
        }
        const size_t an_n[4] = {nE, nE, E, E};
        for (int t = 0; t < 4; t++) {
            char label[96];
            snprintf(label, sizeof label, "add & norm [%zu, %zu] gradient %d", N, E, t);
            tu_assert_close_f32(label, an[1][t], an[0][t], 1, &an_n[t], TOL_07_LN_ATOL,
                                TOL_07_LN_RTOL);
        }

        float *w1 = normal(I * E, 1.0f / sqrtf((float)E), &r), *b1 = normal(I, 0.1f, &r);
        /* W2 ~ 1/sqrt(E), not 1/sqrt(I): d_hid = dout W2 sums over E, and the tolerance is
         * absolute at gradients of order 1 (the goldens'); at E = 768 and 1/sqrt(I) they are
         * of order 3.5 and grad_w1, a sum of 33 of those, of order 20 */
        float *w2 = normal(E * I, 1.0f / sqrtf((float)E), &r), *b2 = normal(E, 0.1f, &r);
        float *pre = zeros(N * I), *hid = zeros(N * I);
        float *scratch = zeros(feedforward_backward_scratch_floats(N, I));
        for (int a = 0; a < 2; a++) {
            const TfmActivation act = a ? TFM_ACT_GELU : TFM_ACT_RELU;
            const int bias = a;   /* GELU with biases, ReLU without */
            const FfnParams prm = {w1, bias ? b1 : NULL, w2, bias ? b2 : NULL};
            feedforward_forward_train_naive(y, pre, hid, x, NULL, &prm, act, N, E, I);
            const size_t sizes[5] = {nE, I * E, I, E * I, E};
            float *res[2][5];
            for (int v = 0; v < 2; v++) {
                for (int t = 0; t < 5; t++)
                    res[v][t] = halves(sizes[t]);
                const FfnGrads fg = {res[v][1], bias ? res[v][2] : NULL, res[v][3],
                                     bias ? res[v][4] : NULL};
                (v ? feedforward_backward_fast : feedforward_backward_naive)(
                    res[v][0], &fg, scratch, g, x, pre, hid, &prm, act, N, E, I);
            }
            for (int t = 0; t < 5; t++) {
                char label[96];
                snprintf(label, sizeof label, "feed-forward [%zu, %zu, %zu] %s gradient %d", N,
                         E, I, a ? "gelu" : "relu", t);
                tu_assert_close_f32(label, res[1][t], res[0][t], 1, &sizes[t],
                                    TOL_07_LAYER_ATOL, TOL_07_LAYER_RTOL);
            }
            for (int v = 0; v < 2; v++)
                for (int t = 0; t < 5; t++)
                    free(res[v][t]);
        }
        for (int v = 0; v < 2; v++)
            for (int t = 0; t < 4; t++)
                free(an[v][t]);
        float *arrays[] = {x, sub, g, gamma, y, mean, rstd, w1, b1, w2, b2, pre, hid, scratch};
        for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++)
            free(arrays[i]);
    }
}
END_TEST

/* Cross-entropy, fast against naive: contiguous rows (inner = 1) and strided ones, indices
 * with weights, ignored rows and smoothing, and probabilities, for every reduction. */
START_TEST(test_fast_vs_naive_cross_entropy)
{
    static const size_t SHAPES[][3] = {{1, 1, 1}, {7, 33, 1}, {64, 3001, 1}, {3, 17, 5}};
    for (size_t sh = 0; sh < sizeof SHAPES / sizeof SHAPES[0]; sh++) {
        const size_t N = SHAPES[sh][0], C = SHAPES[sh][1], inner = SHAPES[sh][2];
        const size_t n = N * C * inner, ne = N * inner;
        TuRng r = {0x0780 + sh};
        float *x = normal(n, 3.0f, &r), *probs = zeros(n), *w = zeros(C);
        float *g = normal(ne, 1.0f, &r);
        int64_t *y = tu_malloc(ne * sizeof *y);
        for (size_t e = 0; e < ne; e++)
            y[e] = e % 5 == 1 ? -100 : (int64_t)((e * 7919) % C);
        for (size_t i = 0; i < n; i++)
            probs[i] = (float)((i * 31) % 17) / 17.0f;
        for (size_t c = 0; c < C; c++)
            w[c] = 0.5f + (float)(c % 3) * 0.25f;
        for (int red = 0; red < 3; red++)
            for (int use_probs = 0; use_probs <= 1; use_probs++) {
                float *res[2][2];
                for (int v = 0; v < 2; v++) {
                    res[v][0] = halves(n), res[v][1] = halves(n);
                    (v ? cross_entropy_backward_fast : cross_entropy_backward_naive)(
                        res[v][0], res[v][1], g, x, use_probs ? NULL : y,
                        use_probs ? probs : NULL, w, -100, (TfmReduction)red, 0.1f, N, C, inner);
                }
                for (int t = 0; t < 2; t++) {
                    char label[96];
                    snprintf(label, sizeof label, "cross-entropy [%zu, %zu, %zu] %s %d grad %d",
                             N, C, inner, use_probs ? "probs" : "indices", red, t);
                    tu_assert_close_f32(label, res[1][t], res[0][t], 1, &n, TOL_07_FN_ATOL,
                                        TOL_07_FN_RTOL);
                }
                for (int v = 0; v < 2; v++)
                    free(res[v][0]), free(res[v][1]);
            }
        free(x), free(probs), free(w), free(g), free(y);
    }
}
END_TEST

/* The pretraining heads, fast (the S labelled rows gathered) against naive (all N rows), at a
 * shape past the GEMM's blocks; every gradient starts at 1/2. */
START_TEST(test_fast_vs_naive_pretraining_heads)
{
    const size_t B = 3, T = 50, E = 96, V = 700, N = B * T;
    TuRng r = {0x07a0};
    float *h = normal(N * E, 1.0f, &r);
    float *p[10];
    const size_t sizes[11] = {N * E, E * E, E, E, E, V * E, V, E * E, E, 2 * E, 2};
    for (int k = 0; k < 10; k++)
        p[k] = normal(sizes[k + 1], 0.1f, &r);
    for (size_t e = 0; e < E; e++)
        p[2][e] += 1.0f;   /* LayerNorm weight near 1 */
    int64_t labels[150], nsp[3] = {0, 1, -100};
    for (size_t n = 0; n < N; n++)
        labels[n] = n % 7 == 3 ? (int64_t)((n * 13) % V) : -100;
    const MlmHead mh = {p[0], p[1], p[2], p[3], p[4], p[5], 1e-12f};
    const NspHead nh = {p[6], p[7], p[8], p[9]};
    float *res[2][11];
    for (int v = 0; v < 2; v++) {
        for (int k = 0; k < 11; k++)
            res[v][k] = halves(sizes[k]);
        const MlmHeadGrads mg = {res[v][1], res[v][2], res[v][3], res[v][4], res[v][5],
                                 res[v][6]};
        const NspHeadGrads ng = {res[v][7], res[v][8], res[v][9], res[v][10]};
        (v ? mlm_backward_fast : mlm_backward_naive)(res[v][0], &mg, 1.3f, h, labels, &mh, N, E,
                                                     V);
        (v ? nsp_backward_fast : nsp_backward_naive)(res[v][0], &ng, 1.3f, h, nsp, &nh, B, T, E);
    }
    for (int k = 0; k < 11; k++) {
        char label[64];
        snprintf(label, sizeof label, "pretraining heads, gradient %d", k);
        tu_assert_close_f32(label, res[1][k], res[0][k], 1, &sizes[k], TOL_07_LAYER_ATOL,
                            TOL_07_LAYER_RTOL);
    }
    for (int v = 0; v < 2; v++)
        for (int k = 0; k < 11; k++)
            free(res[v][k]);
    for (int k = 0; k < 10; k++)
        free(p[k]);
    free(h);
}
END_TEST

/* The embeddings' scatter-add: fast equals naive bit for bit on 1 and 3 threads (the same
 * order per element), the padding row receives nothing, and a bad id writes nothing. */
START_TEST(test_embeddings_backward)
{
    const size_t B = 3, T = 40, E = 150, V = 7, P = 45, G = 2, n = B * T;
    TuRng r = {0x0790};
    int64_t ids[120], tt[120];
    for (size_t i = 0; i < n; i++)
        ids[i] = (int64_t)((i * 5) % V), tt[i] = (int64_t)(i % G);   /* ids repeat */
    float *g = normal(n * E, 1.0f, &r);
    float *res[3][3];
    const int threads = omp_get_max_threads();
    for (int v = 0; v < 3; v++) {
        res[v][0] = halves(V * E), res[v][1] = halves(P * E), res[v][2] = halves(G * E);
        omp_set_num_threads(v == 2 ? 3 : 1);
        EmbBadId bad = {EMB_OK, 0, 0, 0};
        const int rc = (v ? embeddings_backward_fast : embeddings_backward_naive)(
            res[v][0], res[v][1], res[v][2], &bad, g, ids, NULL, tt, 3, B, T, E, V, P, G);
        ck_assert_int_eq(rc, 0);
    }
    omp_set_num_threads(threads);
    const size_t sizes[3] = {V * E, P * E, G * E};
    for (int v = 1; v < 3; v++)
        for (int t = 0; t < 3; t++)
            ck_assert_msg(memcmp(res[v][t], res[0][t], sizes[t] * sizeof(float)) == 0,
                          "embeddings backward: fast (%d threads) differs from naive in table %d",
                          v == 1 ? 1 : 3, t);
    for (size_t j = 0; j < E; j++)   /* padding_idx 3: its row keeps its 1/2 */
        ck_assert_msg(res[0][0][3 * E + j] == 0.5f, "the padding row received a gradient");
    ids[77] = (int64_t)V;   /* out of the table */
    float *before = halves(V * E);
    for (int v = 0; v < 2; v++) {
        float *dw = halves(V * E);
        EmbBadId bad = {EMB_OK, 0, 0, 0};
        const int rc = (v ? embeddings_backward_fast : embeddings_backward_naive)(
            dw, NULL, NULL, &bad, g, ids, NULL, NULL, -1, B, T, E, V, P, G);
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq((int)bad.kind, (int)EMB_INPUT_IDS);
        ck_assert_uint_eq(bad.index, 77);
        ck_assert_msg(memcmp(dw, before, V * E * sizeof(float)) == 0, "a refused call wrote");
        free(dw);
    }
    free(before), free(g);
    for (int v = 0; v < 3; v++)
        for (int t = 0; t < 3; t++)
            free(res[v][t]);
}
END_TEST

/* Attention: fast (tiles of 32 queries x 64 keys, causal block skipping, lse from the
 * streaming forward) against naive (one row at a time), with every kind of mask. */
START_TEST(test_fast_vs_naive_attention)
{
    typedef struct { size_t B, H, Tq, Tk, Dk, Dv; int causal, pad, add; } Shape;
    static const Shape SHAPES[] = {
        {1, 1, 1, 1, 1, 1, 0, 0, 0},    {2, 2, 5, 7, 3, 6, 0, 1, 0},
        {1, 3, 33, 65, 16, 8, 1, 0, 0}, {2, 2, 70, 70, 64, 64, 1, 1, 0},
        {1, 2, 40, 129, 20, 24, 0, 0, 1}, {1, 1, 130, 97, 64, 64, 1, 0, 1},
    };
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const Shape *z = &SHAPES[s];
        const size_t BH = z->B * z->H, nq = BH * z->Tq * z->Dk, nk = BH * z->Tk * z->Dk;
        const size_t nv = BH * z->Tk * z->Dv, no = BH * z->Tq * z->Dv;
        TuRng r = {0x07a0 + s};
        float *q = normal(nq, 1.0f, &r), *k = normal(nk, 1.0f, &r), *v = normal(nv, 1.0f, &r);
        float *g = normal(no, 1.0f, &r), *add = normal(z->Tq * z->Tk, 1.0f, &r);
        uint8_t *pad = tu_malloc(z->B * z->Tk);
        for (size_t b = 0; b < z->B; b++)   /* batch row b: its last 3b keys are padding */
            for (size_t j = 0; j < z->Tk; j++)
                pad[b * z->Tk + j] = z->pad && j >= 1 && j + 3 * b >= z->Tk;
        const AttnMask m = {z->add ? add : NULL, 0, 0, z->pad ? pad : NULL, z->causal};
        float *dq[2], *dk[2], *dv[2];
        for (int fast = 0; fast < 2; fast++) {
            float *o = zeros(no), *lse = zeros(attention_lse_floats(z->B, z->H, z->Tq));
            dq[fast] = halves(nq), dk[fast] = halves(nk), dv[fast] = halves(nv);
            (fast ? attention_forward_lse_fast : attention_forward_lse_naive)(
                o, lse, q, k, v, &m, 0.3f, z->B, z->H, z->Tq, z->Tk, z->Dk, z->Dv);
            (fast ? attention_backward_fast : attention_backward_naive)(
                dq[fast], dk[fast], dv[fast], g, q, k, v, o, lse, &m, 0.3f, z->B, z->H, z->Tq,
                z->Tk, z->Dk, z->Dv);
            free(o), free(lse);
        }
        char label[128];
        const struct { const char *name; float **got; size_t n; } outs[] = {
            {"grad_q", dq, nq}, {"grad_k", dk, nk}, {"grad_v", dv, nv}};
        for (size_t o = 0; o < 3; o++) {
            snprintf(label, sizeof label, "attention B%zu H%zu Tq%zu Tk%zu Dk%zu Dv%zu c%d p%d a%d "
                     "%s fast vs naive", z->B, z->H, z->Tq, z->Tk, z->Dk, z->Dv, z->causal, z->pad,
                     z->add, outs[o].name);
            tu_assert_close_f32(label, outs[o].got[1], outs[o].got[0], 1, &outs[o].n,
                                TOL_07_ATTN_ATOL, TOL_07_ATTN_RTOL);
        }
        for (int v2 = 0; v2 < 2; v2++)
            free(dq[v2]), free(dk[v2]), free(dv[v2]);
        free(q), free(k), free(v), free(g), free(add), free(pad);
    }
}
END_TEST

/* The encoder layer's training forward and backward, fast against naive, on shapes past the
 * GEMM's and the attention's blocks; the training forward also against the plain forward. */
START_TEST(test_fast_vs_naive_encoder_layer)
{
    typedef struct { size_t B, T, E, H, I; int norm_first, gelu, pad; } Shape;
    static const Shape SHAPES[] = {{1, 1, 4, 1, 8, 0, 0, 0},   {2, 7, 12, 3, 20, 1, 1, 1},
                                   {2, 33, 64, 4, 130, 0, 1, 1}, {1, 70, 96, 2, 256, 1, 0, 0}};
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        const Shape *z = &SHAPES[s];
        const size_t B = z->B, T = z->T, E = z->E, H = z->H, I = z->I, N = B * T;
        const TfmActivation act = z->gelu ? TFM_ACT_GELU : TFM_ACT_RELU;
        TuRng r = {0x07c0 + s};
        const size_t sizes[13] = {N * E, 3 * E * E, 3 * E, E * E, E, I * E, I, E * I, E,
                                  E, E, E, E};
        float *p[13];
        for (int t = 0; t < 13; t++)
            p[t] = normal(sizes[t], t == 0 ? 1.0f : t % 2 ? 1.0f / sqrtf((float)E) : 0.1f, &r);
        for (size_t e = 0; e < E; e++)
            p[9][e] += 1.0f, p[11][e] += 1.0f;
        uint8_t *pad = tu_malloc(B * T);
        for (size_t i = 0; i < B * T; i++)
            pad[i] = z->pad && i % T >= T - i / T && i % T > 0;   /* row b: its last b tokens */
        const AttnMask m = {NULL, 0, 0, pad, 0};
        const EncoderLayerParams prm = layer_params(p);
        float *res[2][13], *outs[2];
        for (int fast = 0; fast < 2; fast++) {
            for (int t = 0; t < 13; t++)
                res[fast][t] = halves(sizes[t]);
            const EncoderLayerGrads eg = {{res[fast][1], res[fast][2], res[fast][3], res[fast][4]},
                                          {res[fast][5], res[fast][6], res[fast][7], res[fast][8]},
                                          res[fast][9], res[fast][10], res[fast][11],
                                          res[fast][12]};
            float *acts_buf = zeros(encoder_acts_floats(B, T, E, H, I));
            float *scratch = zeros(encoder_layer_backward_scratch_floats(B, T, E, I));
            float *g = normal(N * E, 1.0f, &(TuRng){0x07d0 + s});
            EncoderActs acts;
            encoder_acts_init(&acts, acts_buf, B, T, E, H, I);
            outs[fast] = zeros(N * E);
            (fast ? encoder_layer_forward_train_fast : encoder_layer_forward_train_naive)(
                outs[fast], &acts, p[0], &m, &prm, act, z->norm_first, 1e-5f, B, T, E, H, I);
            (fast ? encoder_layer_backward_fast : encoder_layer_backward_naive)(
                res[fast][0], &eg, scratch, g, p[0], &acts, &m, &prm, act, z->norm_first, B, T, E,
                H, I);
            free(acts_buf), free(scratch), free(g);
        }
        /* the training forward computes the layer */
        float *plain = zeros(N * E);
        float *fwd_scratch = zeros(encoder_layer_scratch_floats(B, T, E, I));
        encoder_layer_forward_fast(plain, NULL, fwd_scratch, p[0], &m, &prm, act, z->norm_first,
                                   1e-5f, B, T, E, H, I);
        tu_assert_close_f32("training forward vs forward", outs[1], plain, 1, &sizes[0],
                            TOL_06_ATOL, TOL_06_RTOL);
        tu_assert_close_f32("training forward fast vs naive", outs[1], outs[0], 1, &sizes[0],
                            TOL_06_ATOL, TOL_06_RTOL);
        for (int t = 0; t < 13; t++) {
            char label[128];
            snprintf(label, sizeof label, "encoder layer B%zu T%zu E%zu H%zu I%zu %s %s: gradient "
                     "%d fast vs naive", B, T, E, H, I, z->norm_first ? "pre-LN" : "post-LN",
                     z->gelu ? "gelu" : "relu", t);
            tu_assert_close_f32(label, res[1][t], res[0][t], 1, &sizes[t], TOL_07_LAYER_ATOL,
                                TOL_07_LAYER_RTOL);
        }
        for (int t = 0; t < 13; t++)
            free(p[t]), free(res[0][t]), free(res[1][t]);
        free(outs[0]), free(outs[1]), free(plain), free(fwd_scratch), free(pad);
    }
}
END_TEST

/* Twice the same backward into one buffer is twice the gradient (plus where it started): the
 * accumulate convention, on the path that sums in blocks (fast). */
START_TEST(test_backward_accumulates)
{
    const size_t M = 40, K = 300, N = 50;
    TuRng r = {0x0770};
    float *x = normal(M * K, 1.0f, &r), *w = normal(N * K, 1.0f, &r), *g = normal(M * N, 1.0f, &r);
    float *once = zeros(N * K), *twice = zeros(N * K);
    linear_backward_fast(NULL, once, NULL, g, x, w, M, K, N);
    linear_backward_fast(NULL, twice, NULL, g, x, w, M, K, N);
    linear_backward_fast(NULL, twice, NULL, g, x, w, M, K, N);
    for (size_t i = 0; i < N * K; i++)
        ck_assert_msg(twice[i] == 2.0f * once[i], "grad_w[%zu]: twice %.9g, once %.9g", i,
                      (double)twice[i], (double)once[i]);
    free(x), free(w), free(g), free(once), free(twice);
}
END_TEST

/* The fast backwards give the same bits on 1 and 2 threads: every sum has one owner and one
 * order (matmul_fast.c 4. and 8., functional_fast.c F5, layernorm_fast.c O7). */
START_TEST(test_fast_thread_independent)
{
    const size_t M = 256, K = 192, N = 320;
    TuRng r = {0x0780};
    float *x = normal(M * K, 1.0f, &r), *w = normal(N * K, 1.0f, &r), *g = normal(M * N, 1.0f, &r);
    float *gamma = normal(N, 1.0f, &r), *mean = zeros(M), *rstd = zeros(M), *y = zeros(M * N);
    layernorm_forward_fast(y, mean, rstd, g, gamma, NULL, 1e-5f, M, N);
    float *res[2][5];
    const size_t sizes[5] = {M * K, N * K, N, M * N, N};
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        for (int o = 0; o < 5; o++)
            res[t][o] = zeros(sizes[o]);
        linear_backward_fast(res[t][0], res[t][1], res[t][2], g, x, w, M, K, N);
        layernorm_backward_fast(res[t][3], res[t][4], NULL, y, g, mean, rstd, gamma, M, N);
    }
    omp_set_num_threads(omp_get_num_procs());
    for (int o = 0; o < 5; o++)
        ck_assert_msg(memcmp(res[0][o], res[1][o], sizes[o] * sizeof(float)) == 0,
                      "output %d differs between 1 and 2 threads", o);
    for (int t = 0; t < 2; t++)
        for (int o = 0; o < 5; o++)
            free(res[t][o]);
    free(x), free(w), free(g), free(gamma), free(mean), free(rstd), free(y);
}
END_TEST

/* ---------------------------------------------------------------- refusals */

START_TEST(test_refuses_bad_grad_out)
{
    static const float POOL[64] = {0};
    TuMemFile m;
    tu_mem_init(&m);
    tu_mem_put(&m, "c/x", TFM_F32, POOL, 2, (size_t[]){3, 4});
    tu_mem_put(&m, "c/w", TFM_F32, POOL, 2, (size_t[]){5, 4});
    tu_mem_put(&m, "c/grad_out", TFM_F32, POOL, 2, (size_t[]){3, 4});
    tu_expect_refused("linear-backward", &m.gf, "c",
                      "grad_out is [3, 4] but out is [3, 5]: an upstream gradient has the shape");
    tu_mem_init(&m);
    tu_mem_put(&m, "c/x", TFM_F32, POOL, 2, (size_t[]){3, 4});
    tu_mem_put(&m, "c/w", TFM_F32, POOL, 2, (size_t[]){5, 4});
    tu_expect_refused("linear-backward", &m.gf, "c", "tensor 'c/grad_out' is missing");
    tu_mem_init(&m);
    tu_mem_put(&m, "c/input", TFM_F32, POOL, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "c/grad_out", TFM_F32, POOL, 1, (size_t[]){6});
    tu_expect_refused("softmax-backward", &m.gf, "c", "grad_out is [6] but out is [2, 3]");
    tu_mem_init(&m);
    tu_mem_put(&m, "c/a", TFM_F32, POOL, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "c/b", TFM_F32, POOL, 2, (size_t[]){3, 4});
    tu_mem_put(&m, "c/grad_out", TFM_F32, POOL, 2, (size_t[]){4, 2});
    tu_expect_refused("matmul-backward", &m.gf, "c", "grad_out is [4, 2] but out is [2, 4]");
    tu_mem_init(&m);
    tu_mem_put(&m, "c/x", TFM_F32, POOL, 2, (size_t[]){2, 8});
    tu_mem_put(&m, "c/gamma", TFM_F32, POOL, 1, (size_t[]){8});
    tu_mem_put(&m, "c/grad_out", TFM_F32, POOL, 2, (size_t[]){2, 7});
    tu_expect_refused("layernorm-backward", &m.gf, "c", "grad_out is [2, 7] but out is [2, 8]");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("07-backward");
    TCase *gold = tcase_create("goldens");
    tcase_set_tags(gold, "goldens");    /* make valgrind leaves these to `tfm check` */
    tcase_set_timeout(gold, 120);
    tcase_add_test(gold, test_naive_vs_goldens);
    tcase_add_test(gold, test_fast_vs_goldens);
    suite_add_tcase(s, gold);
    TCase *fd = tcase_create("finite differences");
    tcase_set_timeout(fd, 120);
    tcase_add_test(fd, test_fd_matmul_linear);
    tcase_add_test(fd, test_fd_softmax);
    tcase_add_test(fd, test_fd_gelu);
    tcase_add_test(fd, test_fd_layernorm);
    tcase_add_test(fd, test_fd_add_norm_ffn);
    tcase_add_test(fd, test_fd_cross_entropy);
    tcase_add_test(fd, test_fd_pretraining_heads);
    tcase_add_test(fd, test_bert_backward);
    tcase_add_test(fd, test_fd_attention);
    tcase_add_test(fd, test_fd_mha_cross);
    tcase_add_test(fd, test_fd_encoder_layer);
    suite_add_tcase(s, fd);
    TCase *fast = tcase_create("fast");
    tcase_set_timeout(fast, 120);
    tcase_add_test(fast, test_fast_vs_naive_linear_matmul);
    tcase_add_test(fast, test_fast_vs_naive_rows);
    tcase_add_test(fast, test_fast_vs_naive_layernorm);
    tcase_add_test(fast, test_fast_vs_naive_add_norm_ffn);
    tcase_add_test(fast, test_fast_vs_naive_cross_entropy);
    tcase_add_test(fast, test_embeddings_backward);
    tcase_add_test(fast, test_fast_vs_naive_pretraining_heads);
    tcase_add_test(fast, test_fast_vs_naive_attention);
    tcase_add_test(fast, test_fast_vs_naive_mha_cross);
    tcase_add_test(fast, test_fast_vs_naive_encoder_layer);
    tcase_add_test(fast, test_backward_accumulates);
    tcase_add_test(fast, test_fast_thread_independent);
    suite_add_tcase(s, fast);
    TCase *bad = tcase_create("refusals");
    tcase_add_test(bad, test_refuses_bad_grad_out);
    suite_add_tcase(s, bad);
    return s;
}

int main(void) { return tu_run(suite()); }
