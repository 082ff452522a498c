/* test_00_tensors.c — chapter 00: the tensor type, and both matmul variants against PyTorch's
 * goldens and against each other. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "matmul.h"
#include "tfm_exp.h"
#include "testutil.h"

/* ---------------------------------------------------------------- the tensor type */

START_TEST(test_alloc_and_free) {
    Tensor t;
    char err[TFM_ERR_LEN] = "";
    const size_t shape[3] = {2, 3, 4};
    ck_assert_int_eq(tensor_alloc(&t, TFM_F32, 3, shape, err, sizeof err), 0);
    ck_assert_int_eq(t.ndim, 3);
    ck_assert_uint_eq(t.numel, 24);
    ck_assert_uint_eq(t.shape[0], 2);
    ck_assert_uint_eq(t.shape[2], 4);
    ck_assert_uint_eq(t.shape[3], 1);              /* unused dimensions are 1 */
    ck_assert_int_eq(t.owns, 1);
    for (size_t i = 0; i < t.numel; i++)
        if (tensor_f32(&t)[i] != 0.0f)
            ck_abort_msg("element %zu not zero-filled", i);
    tensor_f32(&t)[23] = 5.0f;                     /* the whole block is writable */
    tensor_free(&t);
    ck_assert_ptr_null(t.data);
    ck_assert_uint_eq(t.numel, 0);

    /* A scalar holds one element. */
    ck_assert_int_eq(tensor_alloc(&t, TFM_I64, 0, NULL, err, sizeof err), 0);
    ck_assert_uint_eq(t.numel, 1);
    ck_assert_int_eq((int)tensor_i64(&t)[0], 0);
    tensor_free(&t);

    /* Element sizes follow the dtype. */
    ck_assert_uint_eq(tfm_dtype_size(TFM_F32), 4);
    ck_assert_uint_eq(tfm_dtype_size(TFM_F64), 8);
    ck_assert_uint_eq(tfm_dtype_size(TFM_I64), 8);
    ck_assert_uint_eq(tfm_dtype_size(TFM_BOOL), 1);
}
END_TEST

START_TEST(test_alloc_refuses_bad_shapes) {
    Tensor t;
    char err[TFM_ERR_LEN] = "";
    const size_t huge[2] = {SIZE_MAX / 2, 3};
    ck_assert_int_eq(tensor_alloc(&t, TFM_F32, 2, huge, err, sizeof err), -1);
    ck_assert_msg(err[0] != '\0', "no message for an overflowing shape");
    ck_assert_ptr_null(t.data);
    /* numel fits, bytes do not: SIZE_MAX/4 + 1 floats. */
    const size_t big[1] = {SIZE_MAX / 4 + 1};
    err[0] = '\0';
    ck_assert_int_eq(tensor_alloc(&t, TFM_F32, 1, big, err, sizeof err), -1);
    ck_assert_msg(err[0] != '\0', "no message for a shape too large in bytes");
    const size_t nine[TFM_MAX_DIMS + 1] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    err[0] = '\0';
    ck_assert_int_eq(tensor_alloc(&t, TFM_F32, TFM_MAX_DIMS + 1, nine, err, sizeof err), -1);
    ck_assert_msg(err[0] != '\0', "no message for a rank above TFM_MAX_DIMS");
}
END_TEST

START_TEST(test_shape_numel_overflow) {
    int overflow = -1;
    const size_t ok[4] = {12, 2048, 2048, 1};
    ck_assert_uint_eq(tfm_shape_numel(4, ok, &overflow), (size_t)12 * 2048 * 2048);
    ck_assert_int_eq(overflow, 0);

    /* 2^32 * 2^32 = 2^64 does not fit in a 64-bit size_t. */
    const size_t two32 = (size_t)1 << (sizeof(size_t) * 4);
    const size_t wraps[2] = {two32, two32};
    ck_assert_uint_eq(tfm_shape_numel(2, wraps, &overflow), 0);
    ck_assert_int_eq(overflow, 1);

    /* Overflow found across several dimensions, none of which is huge alone. */
    const size_t many[4] = {1u << 16, 1u << 16, 1u << 16, 1u << 16};
    ck_assert_uint_eq(tfm_shape_numel(4, many, &overflow), 0);
    ck_assert_int_eq(overflow, 1);

    /* A zero anywhere makes the product 0, which is not an overflow. */
    const size_t zero[3] = {SIZE_MAX, 0, SIZE_MAX};
    ck_assert_uint_eq(tfm_shape_numel(3, zero, &overflow), 0);
    ck_assert_int_eq(overflow, 0);

    ck_assert_uint_eq(tfm_shape_numel(0, NULL, &overflow), 1);   /* scalar */
    ck_assert_int_eq(overflow, 0);
}
END_TEST

START_TEST(test_index_and_shape_strings) {
    char buf[64];
    const size_t shape[3] = {2, 3, 4};
    tfm_index_str(buf, sizeof buf, 3, shape, 0);
    ck_assert_str_eq(buf, "[0, 0, 0]");
    tfm_index_str(buf, sizeof buf, 3, shape, 23);
    ck_assert_str_eq(buf, "[1, 2, 3]");
    tfm_index_str(buf, sizeof buf, 3, shape, 1 * 12 + 0 * 4 + 2);   /* row-major offset */
    ck_assert_str_eq(buf, "[1, 0, 2]");
    tfm_shape_str(buf, sizeof buf, 3, shape);
    ck_assert_str_eq(buf, "[2, 3, 4]");
    tfm_shape_str(buf, sizeof buf, 0, NULL);
    ck_assert_str_eq(buf, "[]");
    /* A short buffer is truncated, never overrun. */
    char tiny[5];
    memset(tiny, 'x', sizeof tiny);
    tfm_shape_str(tiny, sizeof tiny, 3, shape);
    ck_assert_msg(memchr(tiny, '\0', sizeof tiny) != NULL, "shape string not terminated");
}
END_TEST

START_TEST(test_dtype_names) {
    const TfmDType all[4] = {TFM_F32, TFM_F64, TFM_I64, TFM_BOOL};
    for (int i = 0; i < 4; i++) {
        TfmDType back;
        ck_assert_int_eq(tfm_dtype_parse(tfm_dtype_name(all[i]), &back), 0);
        ck_assert_int_eq(back, all[i]);
    }
    ck_assert_str_eq(tfm_dtype_name(TFM_F32), "F32");
    ck_assert_str_eq(tfm_dtype_name(TFM_BOOL), "BOOL");
    TfmDType dt = TFM_F64;
    ck_assert_int_eq(tfm_dtype_parse("F16", &dt), -1);     /* a real safetensors dtype we lack */
    ck_assert_int_eq(tfm_dtype_parse("f32", &dt), -1);     /* names are case-sensitive */
    ck_assert_int_eq(tfm_dtype_parse("", &dt), -1);
}
END_TEST

/* ---------------------------------------------------------------- against PyTorch */

START_TEST(test_naive_vs_goldens) { tu_check_all_cases("00-tensors", TFM_NAIVE); }
END_TEST

START_TEST(test_fast_vs_goldens) { tu_check_all_cases("00-tensors", TFM_FAST); }
END_TEST

/* ---------------------------------------------------------------- the runner
 *
 * The ops read their inputs from a GoldenFile; these tests build one in memory from views
 * (TuMemFile): a tiny case computed exactly, then every kind of bad input, each refused with a
 * message. */

START_TEST(test_runner_computes_both_ops) {
    /* [[1,2,3],[4,5,6]] times [[1,2],[3,4],[5,6]] = [[22,28],[49,64]] (matmul), and with
     * w = [[1,0,1],[0,1,0]], bias = [10,20]: x w^T + bias = [[14,22],[20,25]] (linear). */
    static const float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 2, 3, 4, 5, 6};
    static const float W[6] = {1, 0, 1, 0, 1, 0}, BIAS[2] = {10, 20};
    static const float MATMUL[4] = {22, 28, 49, 64}, LINEAR[4] = {14, 22, 20, 25};
    for (int v = TFM_NAIVE; v <= TFM_FAST; v++) {
        for (int op = 0; op < 2; op++) {
            /* no prefix: the tensors are called "a", "b" (or "x", "w", "bias") */
            TuMemFile m;
            tu_mem_init(&m);
            if (op == 0) {
                tu_mem_put(&m, "a", TFM_F32, A, 2, (size_t[]){2, 3});
                tu_mem_put(&m, "b", TFM_F32, B, 2, (size_t[]){3, 2});
            } else {
                tu_mem_put(&m, "x", TFM_F32, A, 2, (size_t[]){2, 3});
                tu_mem_put(&m, "w", TFM_F32, W, 2, (size_t[]){2, 3});
                tu_mem_put(&m, "bias", TFM_F32, BIAS, 1, (size_t[]){2});
            }
            OpOutputs out;
            memset(&out, 0, sizeof out);
            char err[TFM_ERR_LEN] = "";
            ck_assert_msg(tu_run_op(op ? "linear" : "matmul", &out, &m.gf, "", (TfmVariant)v,
                                    err, sizeof err) == 0, "%s", err);
            ck_assert_uint_eq(out.n, 1);
            ck_assert_str_eq(out.names[0], "out");
            ck_assert_int_eq(out.tensors[0].ndim, 2);
            ck_assert_uint_eq(out.tensors[0].shape[0], 2);
            ck_assert_uint_eq(out.tensors[0].shape[1], 2);
            const float *want = op ? LINEAR : MATMUL, *got = tensor_f32(&out.tensors[0]);
            for (size_t i = 0; i < 4; i++)
                ck_assert_msg(got[i] == want[i], "%s %s: out[%zu] = %g, want %g",
                              op ? "linear" : "matmul", tfm_variant_name((TfmVariant)v), i,
                              (double)got[i], (double)want[i]);
            op_outputs_free(&out);
        }
    }
}
END_TEST

/* torch.matmul's rules, each shape checked element by element against a sum written out with
 * explicit multi-indices (an independent reading of the rules, not the bind's stride walk):
 * batch dimensions broadcast from the right, a 1-D a is a row whose 1 is dropped, a 1-D b a
 * column whose 1 is dropped. Small integers make every sum exact in both variants. */
typedef struct {
    int na, nb;
    size_t a[TFM_MAX_DIMS], b[TFM_MAX_DIMS];
    int nout;
    size_t out[TFM_MAX_DIMS];
} MatmulShapes;

/* Element of a row-major tensor at the multi-index idx, broadcasting dimensions of size 1. */
static float at(const float *x, int nd, const size_t *shape, const size_t *idx) {
    size_t off = 0;
    for (int d = 0; d < nd; d++) off = off * shape[d] + (shape[d] == 1 ? 0 : idx[d]);
    return x[off];
}

START_TEST(test_matmul_broadcasts_as_torch) {
    static const MatmulShapes CASES[] = {
        {2, 2, {3, 4}, {4, 2}, 2, {3, 2}},
        {4, 3, {2, 1, 3, 4}, {5, 4, 2}, 4, {2, 5, 3, 2}},      /* batch [2,1] x [5] -> [2,5] */
        {1, 1, {4}, {4}, 0, {0}},                               /* dot product: a 0-d out */
        {1, 3, {3}, {2, 3, 4}, 2, {2, 4}},                      /* row times batched matrices */
        {3, 1, {2, 3, 4}, {4}, 2, {2, 3}},                      /* batched matrices times column */
        {8, 2, {1, 2, 1, 1, 1, 1, 3, 2}, {2, 3}, 8, {1, 2, 1, 1, 1, 1, 3, 3}},   /* 8-d */
    };
    float a[512], b[512];
    for (size_t i = 0; i < 512; i++) a[i] = (float)((int)(i % 7) - 3), b[i] = (float)((int)(i % 5) - 2);
    for (size_t t = 0; t < sizeof CASES / sizeof CASES[0]; t++) {
        const MatmulShapes *c = &CASES[t];
        for (int v = TFM_NAIVE; v <= TFM_FAST; v++) {
            TuMemFile m;
            tu_mem_init(&m);
            tu_mem_put(&m, "a", TFM_F32, a, c->na, c->a);
            tu_mem_put(&m, "b", TFM_F32, b, c->nb, c->b);
            OpOutputs out;
            char err[TFM_ERR_LEN];
            ck_assert_msg(tu_run_op("matmul", &out, &m.gf, "", (TfmVariant)v, err, sizeof err) == 0,
                          "case %zu: %s", t, err);
            const Tensor *o = &out.tensors[0];
            ck_assert_msg(op_same_shape(o, c->nout, c->out), "case %zu: out has %d dims", t, o->ndim);
            /* out[..., i, j] = sum_k a[..., i, k] b[..., k, j], the 1-D sides without i or j. */
            const size_t K = c->a[c->na - 1];
            const int nbatch = c->nout - (c->na > 1) - (c->nb > 1);
            for (size_t e = 0; e < o->numel; e++) {
                size_t idx[TFM_MAX_DIMS] = {0}, rest = e;
                for (int d = c->nout - 1; d >= 0; d--) idx[d] = rest % c->out[d], rest /= c->out[d];
                const size_t i = c->na > 1 ? idx[nbatch] : 0;
                const size_t j = c->nb > 1 ? idx[c->nout - 1] : 0;
                double want = 0.0;
                for (size_t k = 0; k < K; k++) {
                    size_t ia[TFM_MAX_DIMS], ib[TFM_MAX_DIMS];
                    for (int d = 0; d < c->na - 2; d++) ia[d] = idx[nbatch - (c->na - 2) + d];
                    for (int d = 0; d < c->nb - 2; d++) ib[d] = idx[nbatch - (c->nb - 2) + d];
                    if (c->na > 1) ia[c->na - 2] = i;
                    ia[c->na - 1] = k;
                    ib[c->nb == 1 ? 0 : c->nb - 2] = k;
                    if (c->nb > 1) ib[c->nb - 1] = j;
                    want += (double)at(a, c->na, c->a, ia) * (double)at(b, c->nb, c->b, ib);
                }
                ck_assert_msg(tensor_f32(o)[e] == (float)want, "case %zu %s: out[%zu] = %g, want %g",
                              t, tfm_variant_name((TfmVariant)v), e, (double)tensor_f32(o)[e], want);
            }
            op_outputs_free(&out);
        }
    }
    /* Batch dimensions that do not broadcast, and inner dimensions that disagree. */
    TuMemFile m;
    tu_mem_init(&m);
    tu_mem_put(&m, "a", TFM_F32, a, 3, (size_t[]){2, 3, 4});
    tu_mem_put(&m, "b", TFM_F32, b, 3, (size_t[]){3, 4, 2});
    tu_expect_refused("matmul", &m.gf, "", "batch dimensions 2 and 3 do not broadcast");
    tu_mem_put(&m, "b", TFM_F32, b, 1, (size_t[]){3});
    tu_expect_refused("matmul", &m.gf, "", "a's last dimension (4) must equal b's only one (3)");
}
END_TEST

/* linear takes x of any rank, as F.linear does: [2, 3, 4] rows through w [5, 4]. */
START_TEST(test_linear_takes_any_rank) {
    float x[24], w[20], bias[5] = {1, 2, 3, 4, 5};
    for (size_t i = 0; i < 24; i++) x[i] = (float)((int)(i % 5) - 2);
    for (size_t i = 0; i < 20; i++) w[i] = (float)((int)(i % 3) - 1);
    for (int nd = 1; nd <= 3; nd++) {
        static const size_t SHAPES[3][3] = {{4}, {6, 4}, {2, 3, 4}};
        TuMemFile m;
        tu_mem_init(&m);
        tu_mem_put(&m, "x", TFM_F32, x, nd, SHAPES[nd - 1]);
        tu_mem_put(&m, "w", TFM_F32, w, 2, (size_t[]){5, 4});
        tu_mem_put(&m, "bias", TFM_F32, bias, 1, (size_t[]){5});
        for (int v = TFM_NAIVE; v <= TFM_FAST; v++) {
            OpOutputs out;
            char err[TFM_ERR_LEN];
            ck_assert_msg(tu_run_op("linear", &out, &m.gf, "", (TfmVariant)v, err, sizeof err) == 0, "%s", err);
            const Tensor *o = &out.tensors[0];
            ck_assert_int_eq(o->ndim, nd);
            ck_assert_uint_eq(o->shape[nd - 1], 5);
            for (size_t r = 0; r < o->numel / 5; r++)
                for (size_t n = 0; n < 5; n++) {
                    float want = bias[n];
                    for (size_t k = 0; k < 4; k++) want += x[r * 4 + k] * w[n * 4 + k];
                    ck_assert_msg(tensor_f32(o)[r * 5 + n] == want, "rank %d: out[%zu, %zu]", nd, r, n);
                }
            op_outputs_free(&out);
        }
    }
}
END_TEST

/* The bad inputs' values never matter (the shapes and dtypes are refused first): they view these
 * zeros. */
static const float POOL_F32[64];
static const double POOL_F64[64];

START_TEST(test_runner_refuses_bad_input) {
    TuMemFile m;

    tu_mem_init(&m);                                /* inner dimensions disagree */
    tu_mem_put(&m, "c/a", TFM_F32, POOL_F32, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "c/b", TFM_F32, POOL_F32, 2, (size_t[]){4, 2});
    tu_expect_refused("matmul", &m.gf, "c", "b is [4, 2]");

    tu_mem_init(&m);                                /* b missing */
    tu_mem_put(&m, "c/a", TFM_F32, POOL_F32, 2, (size_t[]){2, 3});
    tu_expect_refused("matmul", &m.gf, "c", "c/b");

    tu_mem_init(&m);                                /* a of the wrong dtype */
    tu_mem_put(&m, "c/a", TFM_F64, POOL_F64, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "c/b", TFM_F32, POOL_F32, 2, (size_t[]){3, 2});
    tu_expect_refused("matmul", &m.gf, "c", "c/a");

    tu_mem_init(&m);                                /* b of the wrong rank */
    tu_mem_put(&m, "c/a", TFM_F32, POOL_F32, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "c/b", TFM_F32, POOL_F32, 0, NULL);
    tu_expect_refused("matmul", &m.gf, "c", "c/b");

    tu_mem_init(&m);                                /* x missing */
    tu_mem_put(&m, "c/w", TFM_F32, POOL_F32, 2, (size_t[]){2, 3});
    tu_expect_refused("linear", &m.gf, "c", "c/x");

    tu_mem_init(&m);                                /* w is [N, K'] with K' != K */
    tu_mem_put(&m, "c/x", TFM_F32, POOL_F32, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "c/w", TFM_F32, POOL_F32, 2, (size_t[]){5, 4});
    tu_expect_refused("linear", &m.gf, "c", "w is [5, 4]");

    tu_mem_init(&m);                                /* w given as [K, N] (transposed) */
    tu_mem_put(&m, "c/x", TFM_F32, POOL_F32, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "c/w", TFM_F32, POOL_F32, 2, (size_t[]){3, 5});
    tu_expect_refused("linear", &m.gf, "c", "w must be [out, in]");

    tu_mem_init(&m);                                /* bias of the wrong length */
    tu_mem_put(&m, "c/x", TFM_F32, POOL_F32, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "c/w", TFM_F32, POOL_F32, 2, (size_t[]){5, 3});
    tu_mem_put(&m, "c/bias", TFM_F32, POOL_F32, 1, (size_t[]){4});
    tu_expect_refused("linear", &m.gf, "c", "bias is [4]");

    tu_mem_init(&m);                                /* bias of the wrong rank */
    tu_mem_put(&m, "c/x", TFM_F32, POOL_F32, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "c/w", TFM_F32, POOL_F32, 2, (size_t[]){5, 3});
    tu_mem_put(&m, "c/bias", TFM_F32, POOL_F32, 2, (size_t[]){1, 5});
    tu_expect_refused("linear", &m.gf, "c", "c/bias");
}
END_TEST

/* ---------------------------------------------------------------- fast against naive
 *
 * The two variants sum in different orders, so they agree only up to float32 rounding. The
 * tolerance is the classical bound for a float sum of K+1 terms (Higham, "Accuracy and
 * Stability of Numerical Algorithms", 3.1): each result is within gamma_{K+1} * S of the exact
 * value, S = |bias_j| + sum_k |A[i][k] B~[k][j]|, gamma_n = n u / (1 - n u), u = 2^-24; hence
 * |fast - naive| <= 2 gamma_{K+1} S. It holds for any summation order and with or without FMA,
 * so it cannot fail by bad luck; a lost, doubled or misplaced term exceeds it by orders of
 * magnitude.
 *
 * The shapes come from matmul_fast.c's blocking: MR = 12, NR = 32 (microkernel tile), KC = 256,
 * MC <= 192, NC = 4096 (cache blocks), direct loops for M < 5, a second thread from 4M
 * multiply-adds on. Each is straddled (block - 1, block, block + 1) in its own dimension. */

typedef struct {
    size_t M, K, N;
} Shape;

static const Shape SHAPES[] = {
    {1, 1, 1},      {1, 1, 7},       {7, 1, 1},      {1, 300, 1},    /* degenerate */
    {2, 3, 5},      {37, 61, 29},    {61, 37, 127},  {257, 131, 67}, /* primes */
    {4, 50, 60},    {5, 50, 60},     {6, 50, 60},                    /* direct path: M < 5 */
    {11, 100, 70},  {12, 100, 70},   {13, 100, 70},                  /* MR */
    {50, 80, 31},   {50, 80, 32},    {50, 80, 33},                   /* NR */
    {30, 255, 40},  {30, 256, 40},   {30, 257, 40},  {30, 513, 40},  /* KC, 2 KC */
    {191, 40, 50},  {192, 40, 50},   {193, 40, 50},  {385, 40, 50},  /* MC */
    {20, 30, 4095}, {20, 30, 4096},  {20, 30, 4097}, {13, 7, 8193},  /* NC, 2 NC */
    {2000, 70, 3},  {1500, 3, 90},                                   /* tall-skinny */
    {7, 70, 2000},  {2, 1100, 300},                                  /* short-fat, long K */
    /* two threads (with the default thread count): blocked, blocked with fewer row blocks than
     * threads, direct with 1..4 rows */
    {197, 263, 1031}, {400, 300, 500}, {6, 700, 1100},
    {1, 2048, 2100}, {3, 1000, 2000}, {4, 1024, 1100},
};
#define N_SHAPES (sizeof SHAPES / sizeof SHAPES[0])

typedef struct {
    float *a;      /* [M,K] (matmul's A, linear's X) */
    float *b;      /* [K,N] for matmul, [N,K] for linear */
    float *bias;   /* [N] */
} Inputs;

static Inputs make_inputs(Shape s, uint64_t seed) {
    TuRng rng = {seed};
    Inputs in;
    in.a = tu_malloc(s.M * s.K * sizeof(float));
    in.b = tu_malloc(s.K * s.N * sizeof(float));
    in.bias = tu_malloc(s.N * sizeof(float));
    tu_fill_normal(in.a, s.M * s.K, &rng);
    tu_fill_normal(in.b, s.K * s.N, &rng);
    tu_fill_normal(in.bias, s.N, &rng);
    return in;
}

static void free_inputs(Inputs *in) {
    free(in->a);
    free(in->b);
    free(in->bias);
}

/* Asserts |got - want| <= 2 gamma_{K+1} S elementwise (see above); `linear` selects how b is
 * indexed, bias may be NULL. */
static void assert_within_bound(const char *label, const float *got, const float *want,
                                const Inputs *in, const float *bias, int linear, Shape s) {
    const double u = 0x1.0p-24, n = (double)(s.K + 1);
    const double gamma = n * u / (1.0 - n * u);
    for (size_t i = 0; i < s.M; i++) {
        for (size_t j = 0; j < s.N; j++) {
            double S = bias ? fabs((double)bias[j]) : 0.0;
            for (size_t k = 0; k < s.K; k++) {
                const double bkj = linear ? in->b[j * s.K + k] : in->b[k * s.N + j];
                S += fabs((double)in->a[i * s.K + k] * bkj);
            }
            const double diff = fabs((double)got[i * s.N + j] - (double)want[i * s.N + j]);
            /* Check's asserts cost a pipe write each: test first, assert only on failure. */
            if (!(diff <= 2.0 * gamma * S))
                ck_abort_msg("%s [%zu x %zu x %zu]: element [%zu, %zu]: fast %.9g naive %.9g, "
                             "|diff| %.3g > bound %.3g",
                             label, s.M, s.K, s.N, i, j, (double)got[i * s.N + j],
                             (double)want[i * s.N + j], diff, 2.0 * gamma * S);
        }
    }
}

typedef enum { OP_MATMUL, OP_LINEAR_BIAS, OP_LINEAR_NOBIAS } Op;
static const char *const OP_NAMES[] = {"matmul", "linear+bias", "linear"};

static void run_fast(Op op, float *out, const Inputs *in, Shape s) {
    if (op == OP_MATMUL)
        matmul_fast(out, in->a, in->b, s.M, s.K, s.N);
    else
        linear_fast(out, in->a, in->b, op == OP_LINEAR_BIAS ? in->bias : NULL, s.M, s.K, s.N);
}

static void run_naive(Op op, float *out, const Inputs *in, Shape s) {
    if (op == OP_MATMUL)
        matmul_naive(out, in->a, in->b, s.M, s.K, s.N);
    else
        linear_naive(out, in->a, in->b, op == OP_LINEAR_BIAS ? in->bias : NULL, s.M, s.K, s.N);
}

/* Output buffers are pre-filled with NaN: "outputs are overwritten, never accumulated into",
 * and an element the kernel forgets stays NaN and fails the bound. */
static float *nan_buffer(size_t n) {
    float *p = tu_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

static void fast_vs_naive(int threads) {
    const int saved = omp_get_max_threads();
    if (threads > 0)
        omp_set_num_threads(threads);
    for (size_t t = 0; t < N_SHAPES; t++) {
        const Shape s = SHAPES[t];
        Inputs in = make_inputs(s, 1000 + t);
        for (int op = OP_MATMUL; op <= OP_LINEAR_NOBIAS; op++) {
            float *fast = nan_buffer(s.M * s.N), *naive = nan_buffer(s.M * s.N);
            run_fast((Op)op, fast, &in, s);
            run_naive((Op)op, naive, &in, s);
            char label[96];
            snprintf(label, sizeof label, "%s, %d thread(s)", OP_NAMES[op], omp_get_max_threads());
            assert_within_bound(label, fast, naive, &in, op == OP_LINEAR_BIAS ? in.bias : NULL,
                                op != OP_MATMUL, s);
            free(fast);
            free(naive);
        }
        free_inputs(&in);
    }
    omp_set_num_threads(saved);
}

START_TEST(test_fast_vs_naive_one_thread) { fast_vs_naive(1); }
END_TEST

START_TEST(test_fast_vs_naive_default_threads) { fast_vs_naive(0); }
END_TEST

/* matmul_fast.c promises more than run-to-run determinism: each element is summed by one thread
 * in a fixed order, so the bits do not depend on the number of threads either (3 threads also
 * exercise an uneven split of the work). */
START_TEST(test_fast_is_bitwise_deterministic) {
    const int saved = omp_get_max_threads();
    const Shape shapes[] = {{197, 263, 1031}, {512, 768, 96}, {13, 7, 4097},
                            {6, 700, 1100},   {3, 1000, 2000}, {4, 1024, 1100}};
    const int threads[] = {1, 2, 3};
    for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
        const Shape s = shapes[t];
        Inputs in = make_inputs(s, 2000 + t);
        for (int op = OP_MATMUL; op <= OP_LINEAR_NOBIAS; op++) {
            const size_t bytes = s.M * s.N * sizeof(float);
            omp_set_num_threads(saved);
            float *first = nan_buffer(s.M * s.N), *again = nan_buffer(s.M * s.N);
            run_fast((Op)op, first, &in, s);
            run_fast((Op)op, again, &in, s);
            ck_assert_msg(memcmp(first, again, bytes) == 0,
                          "%s [%zu x %zu x %zu]: two runs with %d threads differ", OP_NAMES[op],
                          s.M, s.K, s.N, saved);
            for (size_t h = 0; h < sizeof threads / sizeof threads[0]; h++) {
                omp_set_num_threads(threads[h]);
                for (size_t i = 0; i < s.M * s.N; i++)
                    again[i] = NAN;
                run_fast((Op)op, again, &in, s);
                ck_assert_msg(memcmp(first, again, bytes) == 0,
                              "%s [%zu x %zu x %zu]: %d threads differ from %d", OP_NAMES[op],
                              s.M, s.K, s.N, threads[h], saved);
            }
            free(first);
            free(again);
        }
        free_inputs(&in);
    }
    omp_set_num_threads(saved);
}
END_TEST

/* A known product, exactly representable: the kernels must get every element exactly right
 * when no rounding happens at all (small integers), which pins down indexing independently of
 * any tolerance. */
START_TEST(test_exact_small_integers) {
    /* blocked path with edge tiles in M and N and two K blocks; direct path with 3 rows */
    const Shape shapes[2] = {{45, 300, 70}, {3, 300, 70}};
    for (size_t t = 0; t < 2; t++) {
        const Shape s = shapes[t];
        float *a = tu_malloc(s.M * s.K * sizeof(float)), *b = tu_malloc(s.K * s.N * sizeof(float));
        float *w = tu_malloc(s.N * s.K * sizeof(float)), *bias = tu_malloc(s.N * sizeof(float));
        float *c = nan_buffer(s.M * s.N);
        for (size_t i = 0; i < s.M; i++)
            for (size_t k = 0; k < s.K; k++)
                a[i * s.K + k] = (float)((int)((i * 7 + k * 3) % 5) - 2);
        for (size_t k = 0; k < s.K; k++)
            for (size_t j = 0; j < s.N; j++) {
                b[k * s.N + j] = (float)((int)((k * 5 + j * 11) % 7) - 3);
                w[j * s.K + k] = b[k * s.N + j];
            }
        for (size_t j = 0; j < s.N; j++)
            bias[j] = (float)j;
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 0)
                matmul_fast(c, a, b, s.M, s.K, s.N);
            else
                linear_fast(c, a, w, bias, s.M, s.K, s.N);
            for (size_t i = 0; i < s.M; i++)
                for (size_t j = 0; j < s.N; j++) {
                    long want = pass ? (long)j : 0;
                    for (size_t k = 0; k < s.K; k++)
                        want += (long)a[i * s.K + k] * (long)b[k * s.N + j];
                    if (c[i * s.N + j] != (float)want)
                        ck_abort_msg("%s [%zu x %zu x %zu] [%zu, %zu]: got %g, want %ld",
                                     pass ? "linear" : "matmul", s.M, s.K, s.N, i, j,
                                     (double)c[i * s.N + j], want);
                }
        }
        free(a);
        free(b);
        free(w);
        free(bias);
        free(c);
    }
}
END_TEST

/* ---------------------------------------------------------------- tfm_expf (tfm_exp.h) */

/* The spacing of floats at t (>= 0): 2^(e-24) for t in [2^(e-1), 2^e), 2^-149 below FLT_MIN. */
static double float_ulp(double t) {
    if (t < FLT_MIN)
        return ldexp(1.0, -149);
    int e;
    frexp(t, &e);
    return ldexp(1.0, e - 24);
}

/* Every 61st float in [-104, 89] (37 million of them, both signs), through a vectorizable loop
 * as the fast files use it, against float64 exp: at most 1.2 ulp, as tfm_exp.h promises (0.94
 * with FMA contraction, as the fast files are built; this file is built without it). */
START_TEST(test_expf_within_one_ulp) {
    enum { CHUNK = 4096 };
    static float xs[CHUNK], ys[CHUNK];
    double worst = 0.0;
    float worst_x = 0.0f;
    size_t n = 0, checked = 0;
    for (int sign = 0; sign < 2; sign++) {
        for (uint64_t bits = 0; bits < 0x7f800000u; bits += 61) {
            const uint32_t u = (uint32_t)bits | (sign ? 0x80000000u : 0u);
            float x;
            memcpy(&x, &u, sizeof x);
            if (x > 89.0f || x < -104.0f)
                continue;
            xs[n++] = x;
            if (n < CHUNK && bits + 61 < 0x7f800000u)
                continue;
#pragma omp simd
            for (size_t i = 0; i < n; i++)
                ys[i] = tfm_expf(xs[i]);
            for (size_t i = 0; i < n; i++) {
                const double truth = exp((double)xs[i]);
                if (truth > FLT_MAX)   /* x in (88.72, 89]: +inf is the right float answer */
                    ck_assert_msg(isinf(ys[i]), "exp(%.9g) = %.9g, want inf", xs[i], ys[i]);
                else {
                    const double err = fabs((double)ys[i] - truth) / float_ulp(truth);
                    if (err > worst) {
                        worst = err;
                        worst_x = xs[i];
                    }
                }
            }
            checked += n;
            n = 0;
        }
    }
    printf("tfm_expf: %zu floats in [-104, 89], worst %.3f ulp at x = %.9g\n", checked, worst,
           worst_x);
    ck_assert_uint_gt(checked, 30000000);
    ck_assert_msg(worst <= 1.2, "tfm_expf: %.3f ulp at x = %.9g (allowed 1.2)", worst, worst_x);
}
END_TEST

START_TEST(test_expf_special_values) {
    ck_assert(isnan(tfm_expf(NAN)));
    ck_assert(isnan(tfm_expf(-NAN)));
    ck_assert(isinf(tfm_expf(INFINITY)) && tfm_expf(INFINITY) > 0.0f);
    ck_assert(tfm_expf(-INFINITY) == 0.0f);
    ck_assert(tfm_expf(0.0f) == 1.0f && tfm_expf(-0.0f) == 1.0f);
    ck_assert(isinf(tfm_expf(88.73f)) && tfm_expf(1e30f) > FLT_MAX);
    ck_assert(tfm_expf(-104.0f) == 0.0f && tfm_expf(-1e30f) == 0.0f);
    ck_assert(tfm_expf(-103.9f) > 0.0f);   /* the smallest subnormal, 2^-149, is exp(-103.28) */
}
END_TEST

static Suite *suite(void) {
    Suite *s = suite_create("00-tensors");
    TCase *tensor = tcase_create("tensor");
    tcase_add_test(tensor, test_alloc_and_free);
    tcase_add_test(tensor, test_alloc_refuses_bad_shapes);
    tcase_add_test(tensor, test_shape_numel_overflow);
    tcase_add_test(tensor, test_index_and_shape_strings);
    tcase_add_test(tensor, test_dtype_names);
    suite_add_tcase(s, tensor);

    TCase *expf = tcase_create("tfm_expf");
    tcase_set_timeout(expf, 60);
    tcase_add_test(expf, test_expf_within_one_ulp);
    tcase_add_test(expf, test_expf_special_values);
    suite_add_tcase(s, expf);

    TCase *runner = tcase_create("runner");
    tcase_add_test(runner, test_runner_computes_both_ops);
    tcase_add_test(runner, test_runner_refuses_bad_input);
    tcase_add_test(runner, test_matmul_broadcasts_as_torch);
    tcase_add_test(runner, test_linear_takes_any_rank);
    suite_add_tcase(s, runner);

    TCase *golden = tcase_create("goldens");
    tcase_set_tags(golden, "goldens");    /* make valgrind leaves these to `tfm check` */
    tcase_set_timeout(golden, 60);
    tcase_add_test(golden, test_naive_vs_goldens);
    tcase_add_test(golden, test_fast_vs_goldens);
    suite_add_tcase(s, golden);

    TCase *fast = tcase_create("fast");
    tcase_set_timeout(fast, 300);
    tcase_add_test(fast, test_exact_small_integers);
    tcase_add_test(fast, test_fast_vs_naive_one_thread);
    tcase_add_test(fast, test_fast_vs_naive_default_threads);
    tcase_add_test(fast, test_fast_is_bitwise_deterministic);
    suite_add_tcase(s, fast);
    return s;
}

int main(void) { return tu_run(suite()); }
