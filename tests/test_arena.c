/* test_arena.c — the fast kernels' scratch arena (chapters/00-tensors/arena.h): after the first
 * call at a shape no kernel allocates, a release frees everything and changes no result, and the
 * arena's own promises (alignment, one buffer per slot and thread, growth only when needed). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "attention.h"
#include "matmul.h"
#include "multihead.h"
#include "positional.h"
#include "pretraining.h"
#include "testutil.h"

/* ---------------------------------------------------------------- a training step's kernels
 *
 * One fixed shape for each kernel, large enough for its arena paths: matmul and linear on the
 * blocked (packing) path, attention with and without probs (the streaming and the materializing
 * path, each with per-thread tiles), multi-head self-attention with averaged weights (its three
 * chunk buffers, and linear and attention inside it), the sinusoidal table, and the pretraining
 * heads with their losses. */
enum { MM_M = 64, MM_K = 300, MM_N = 200 };
enum { AT_B = 2, AT_H = 3, AT_T = 70, AT_D = 32 };
enum { MH_B = 2, MH_H = 4, MH_T = 40, MH_E = 64 };
enum { PE_T = 150, PE_E = 77 };
enum { PT_N = 30, PT_E = 32, PT_V = 300, PT_B = 3, PT_T = 10 };

#define AT_N ((size_t)AT_B * AT_H * AT_T * AT_D)
#define AT_P ((size_t)AT_B * AT_H * AT_T * AT_T)
#define MH_N ((size_t)MH_B * MH_T * MH_E)

typedef struct {
    /* inputs */
    float *a;          /* [MM_M, MM_K] */
    float *b;          /* [MM_K, MM_N] */
    float *w;          /* [MM_N, MM_K] */
    float *bias;       /* [MM_N] */
    float *q, *k, *v;  /* [AT_B, AT_H, AT_T, AT_D] each */
    float *x;          /* [MH_B, MH_T, MH_E] */
    float *in_w;       /* [3 MH_E, MH_E] */
    float *in_b;       /* [3 MH_E] */
    float *out_w;      /* [MH_E, MH_E] */
    float *out_b;      /* [MH_E] */
    float *hidden;     /* [PT_N, PT_E]; also the NSP head's [PT_B, PT_T, PT_E] */
    float *dense_w;    /* [PT_E, PT_E] */
    float *vec;        /* [PT_E]: dense bias, LayerNorm gamma and beta, pooler bias */
    float *dec_w;      /* [PT_V, PT_E]; its first PT_N * PT_V floats also serve as logits */
    float *dec_b;      /* [PT_V] */
    float *cls_w;      /* [2, PT_E] */
    int64_t *labels;   /* [PT_N] */
    int64_t *nsp_labels; /* [PT_B] */
} Inputs;

typedef struct {
    float mm[MM_M * MM_N];           /* matmul_fast */
    float lin[MM_M * MM_N];          /* linear_fast */
    float att[AT_N];                 /* attention_forward_fast, probs == NULL */
    float att_p[AT_N];               /* attention_forward_fast with probs: out */
    float probs[AT_P];               /* ... and probs */
    float mha[MH_N];                 /* multihead_forward_fast: out */
    float mha_w[MH_B * MH_T * MH_T]; /* ... and the averaged weights */
    float pe[PE_T * PE_E];           /* pe_sinusoidal_fast */
    float mlm_loss, nsp_loss, ce_loss;
    float nsp_logits[PT_B * 2];
} Outputs;

static float *normal(size_t n, TuRng *r)
{
    float *p = tu_malloc(n * sizeof(float));
    tu_fill_normal(p, n, r);
    return p;
}

static Inputs make_inputs(void)
{
    TuRng r = {20240601};
    Inputs in;
    in.a = normal((size_t)MM_M * MM_K, &r);
    in.b = normal((size_t)MM_K * MM_N, &r);
    in.w = normal((size_t)MM_N * MM_K, &r);
    in.bias = normal(MM_N, &r);
    in.q = normal(AT_N, &r);
    in.k = normal(AT_N, &r);
    in.v = normal(AT_N, &r);
    in.x = normal(MH_N, &r);
    in.in_w = normal((size_t)3 * MH_E * MH_E, &r);
    in.in_b = normal((size_t)3 * MH_E, &r);
    in.out_w = normal((size_t)MH_E * MH_E, &r);
    in.out_b = normal(MH_E, &r);
    in.hidden = normal((size_t)PT_N * PT_E, &r);
    in.dense_w = normal((size_t)PT_E * PT_E, &r);
    in.vec = normal(PT_E, &r);
    in.dec_w = normal((size_t)PT_V * PT_E, &r);
    in.dec_b = normal(PT_V, &r);
    in.cls_w = normal((size_t)2 * PT_E, &r);
    in.labels = tu_malloc(PT_N * sizeof(int64_t));
    for (size_t n = 0; n < PT_N; n++)   /* a third of the rows labelled */
        in.labels[n] = n % 3 == 0 ? (int64_t)((n * 37) % PT_V) : TFM_IGNORE_INDEX;
    in.nsp_labels = tu_malloc(PT_B * sizeof(int64_t));
    for (size_t b = 0; b < PT_B; b++)
        in.nsp_labels[b] = (int64_t)(b % 2);
    return in;
}

static void free_inputs(Inputs *in)
{
    float *f[] = {in->a, in->b, in->w, in->bias, in->q, in->k, in->v, in->x, in->in_w, in->in_b,
                  in->out_w, in->out_b, in->hidden, in->dense_w, in->vec, in->dec_w, in->dec_b,
                  in->cls_w};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        free(f[i]);
    free(in->labels);
    free(in->nsp_labels);
}

/* One "training step": every kernel once, at its fixed shape. */
static void step(Outputs *o, const Inputs *in)
{
    matmul_fast(o->mm, in->a, in->b, MM_M, MM_K, MM_N);
    linear_fast(o->lin, in->a, in->w, in->bias, MM_M, MM_K, MM_N);

    const AttnMask causal = {NULL, 0, 0, NULL, 1};
    const float scale = 1.0f / sqrtf((float)AT_D);
    attention_forward_fast(o->att, NULL, in->q, in->k, in->v, &causal, scale, AT_B, AT_H, AT_T,
                           AT_T, AT_D, AT_D);
    attention_forward_fast(o->att_p, o->probs, in->q, in->k, in->v, NULL, scale, AT_B, AT_H, AT_T,
                           AT_T, AT_D, AT_D);

    const MhaParams p = {in->in_w, in->in_b, in->out_w, in->out_b};
    multihead_forward_fast(o->mha, o->mha_w, in->x, in->x, in->x, &p, NULL, 1, MH_B, MH_H, MH_T,
                           MH_T, MH_E);

    pe_sinusoidal_fast(o->pe, NULL, PE_T, PE_E);

    const MlmHead mlm = {in->dense_w, in->vec, in->vec, in->vec, in->dec_w, in->dec_b, 1e-12f};
    mlm_forward_fast(&o->mlm_loss, NULL, in->hidden, in->labels, &mlm, PT_N, PT_E, PT_V);
    const NspHead nsp = {in->dense_w, in->vec, in->cls_w, in->vec};
    nsp_forward_fast(&o->nsp_loss, o->nsp_logits, NULL, in->hidden, in->nsp_labels, &nsp, PT_B,
                     PT_T, PT_E);
    cross_entropy_fast(&o->ce_loss, NULL, in->dec_w, in->labels, PT_N, PT_V);   /* [N, V] logits */
}

/* ---------------------------------------------------------------- no allocation after the first call */

enum { STEPS = 50 };   /* steps after the first; each must allocate nothing */

START_TEST(test_no_growth_after_first_call) {
    omp_set_dynamic(0);   /* a fixed team size: the same thread numbers every call */
    Inputs in = make_inputs();
    Outputs *o = tu_malloc(sizeof *o);
    Outputs *first = tu_malloc(sizeof *first);

    const size_t g0 = tfm_arena_grows();
    step(first, &in);
    const size_t g1 = tfm_arena_grows(), bytes = tfm_arena_bytes();
    ck_assert_msg(g1 > g0, "the first step allocated no scratch (grows %zu -> %zu)", g0, g1);
    ck_assert_msg(bytes > 0, "the arena holds no bytes after a step");

    for (int it = 0; it < STEPS; it++) {
        step(o, &in);
        ck_assert_msg(tfm_arena_grows() == g1,
                      "step %d allocated: tfm_arena_grows() went from %zu to %zu", it + 2, g1,
                      tfm_arena_grows());
        ck_assert_msg(tfm_arena_bytes() == bytes, "step %d: arena bytes %zu -> %zu", it + 2,
                      bytes, tfm_arena_bytes());
    }
    /* dirty buffers reused STEPS times, results still the first step's, bit for bit */
    ck_assert_msg(memcmp(o, first, sizeof *o) == 0, "results changed across steps");
    printf("arena: a step (9 kernel calls, %d threads) holds %zu bytes in %zu buffers; %d more "
           "steps allocated nothing\n", omp_get_max_threads(), bytes, g1 - g0, STEPS);

    free(first);
    free(o);
    free_inputs(&in);
}
END_TEST

/* Each kernel alone, from an empty arena: it allocates on its first call (so it does use the
 * arena) and never on the following ones. */
START_TEST(test_each_kernel_allocates_once) {
    omp_set_dynamic(0);
    Inputs in = make_inputs();
    Outputs *o = tu_malloc(sizeof *o);
    const MhaParams p = {in.in_w, in.in_b, in.out_w, in.out_b};
    const float scale = 1.0f / sqrtf((float)AT_D);
    for (int kernel = 0; kernel < 5; kernel++) {
        tfm_arena_release();
        size_t g = 0;
        for (int call = 0; call < 10; call++) {
            switch (kernel) {
            case 0: matmul_fast(o->mm, in.a, in.b, MM_M, MM_K, MM_N); break;
            case 1: linear_fast(o->lin, in.a, in.w, in.bias, MM_M, MM_K, MM_N); break;
            case 2:
                attention_forward_fast(o->att, NULL, in.q, in.k, in.v, NULL, scale, AT_B, AT_H,
                                       AT_T, AT_T, AT_D, AT_D);
                break;
            case 3:
                attention_forward_fast(o->att_p, o->probs, in.q, in.k, in.v, NULL, scale, AT_B,
                                       AT_H, AT_T, AT_T, AT_D, AT_D);
                break;
            default:
                multihead_forward_fast(o->mha, o->mha_w, in.x, in.x, in.x, &p, NULL, 1, MH_B,
                                       MH_H, MH_T, MH_T, MH_E);
                break;
            }
            if (call == 0) {
                g = tfm_arena_grows();
                ck_assert_msg(tfm_arena_bytes() > 0, "kernel %d took no scratch", kernel);
            }
            ck_assert_msg(tfm_arena_grows() == g, "kernel %d allocated again on call %d",
                          kernel, call + 1);
        }
    }
    free(o);
    free_inputs(&in);
}
END_TEST

/* ---------------------------------------------------------------- release */

START_TEST(test_release_frees_all_and_changes_nothing) {
    omp_set_dynamic(0);
    Inputs in = make_inputs();
    Outputs *before = tu_malloc(sizeof *before);
    Outputs *after = tu_malloc(sizeof *after);
    memset(before, 0, sizeof *before);
    memset(after, 0, sizeof *after);

    step(before, &in);
    ck_assert_msg(tfm_arena_bytes() > 0, "nothing to release");
    tfm_arena_release();
    ck_assert_msg(tfm_arena_bytes() == 0, "after tfm_arena_release the arena holds %zu bytes",
                  tfm_arena_bytes());
    tfm_arena_release();   /* twice is harmless */
    ck_assert_uint_eq(tfm_arena_bytes(), 0);

    const size_t g = tfm_arena_grows();
    step(after, &in);   /* allocates afresh */
    ck_assert_msg(tfm_arena_grows() > g, "the step after a release allocated nothing");
    ck_assert_msg(memcmp(before, after, sizeof *before) == 0,
                  "results after tfm_arena_release differ from those before it");
    tfm_arena_release();
    ck_assert_uint_eq(tfm_arena_bytes(), 0);

    free(before);
    free(after);
    free_inputs(&in);
}
END_TEST

/* ---------------------------------------------------------------- the arena's own promises */

START_TEST(test_alignment_growth_and_slots) {
    tfm_arena_release();
    const size_t g = tfm_arena_grows();
    char *a = tfm_arena_get(TFM_SCRATCH_MLM_HIDDEN, 100, sizeof(float), "test");
    ck_assert_uint_eq((uintptr_t)a % TFM_ARENA_ALIGN, 0);
    ck_assert_uint_eq(tfm_arena_grows(), g + 1);
    ck_assert_uint_eq(tfm_arena_bytes(), 448);   /* 400 bytes, rounded up to 64 */
    memset(a, 0x5A, 400);
    /* a smaller or equal request: the same buffer, as it was (not zeroed), no allocation */
    char *b = tfm_arena_get(TFM_SCRATCH_MLM_HIDDEN, 448, 1, "test");
    ck_assert_ptr_eq(a, b);
    ck_assert_int_eq(b[399], 0x5A);
    ck_assert_uint_eq(tfm_arena_grows(), g + 1);
    /* 0 bytes: still a valid, aligned pointer */
    void *z = tfm_arena_get(TFM_SCRATCH_NSP_CLS, 0, sizeof(float), "test");
    ck_assert_ptr_nonnull(z);
    ck_assert_uint_eq((uintptr_t)z % TFM_ARENA_ALIGN, 0);
    /* another slot is another buffer */
    ck_assert_ptr_ne(z, a);
    /* a larger request grows, aligned again */
    char *c = tfm_arena_get(TFM_SCRATCH_MLM_HIDDEN, 1000, sizeof(float), "test");
    ck_assert_uint_eq((uintptr_t)c % TFM_ARENA_ALIGN, 0);
    ck_assert_uint_eq(tfm_arena_grows(), g + 3);
    ck_assert_uint_eq(tfm_arena_bytes(), 4032 + 64);   /* 4000 rounded up, and z's 64 */
    tfm_arena_release();
    ck_assert_uint_eq(tfm_arena_bytes(), 0);
}
END_TEST

/* Threads of one region get different buffers for the same slot, and so do the threads of a
 * caller's region when each calls a kernel that opens its own (nested, inactive) region: there
 * every thread is number 0 of a one-thread team, and the arena must still tell them apart. */
START_TEST(test_threads_get_their_own_buffers) {
    enum { NT = 3 };
    void *flat[NT] = {NULL}, *nested[NT] = {NULL}, *active[NT][2] = {{NULL}};
    const int saved = omp_get_max_active_levels();
    omp_set_dynamic(0);
    tfm_arena_release();
    omp_set_max_active_levels(1);   /* inner regions inactive: one thread each */
#pragma omp parallel num_threads(NT)
    {
        const int t = omp_get_thread_num();
        flat[t] = tfm_arena_get(TFM_SCRATCH_ATTN_QT, 256, sizeof(float), "test");
#pragma omp parallel num_threads(2)
        /* thread 0 of a one-thread team, at nesting level 2 */
        nested[t] = tfm_arena_get(TFM_SCRATCH_ATTN_KT, 256, sizeof(float), "test");
    }
    omp_set_max_active_levels(2);   /* inner regions active: NT teams of 2 threads */
#pragma omp parallel num_threads(NT)
    {
        const int t = omp_get_thread_num();
#pragma omp parallel num_threads(2)
        active[t][omp_get_thread_num()] =
            tfm_arena_get(TFM_SCRATCH_ATTN_ACC, 256, sizeof(float), "test");
    }
    omp_set_max_active_levels(saved);
    for (int i = 0; i < NT; i++) {
        ck_assert_ptr_nonnull(flat[i]);
        ck_assert_ptr_nonnull(nested[i]);
        for (int j = 0; j < i; j++) {
            ck_assert_msg(flat[i] != flat[j], "threads %d and %d share a buffer", i, j);
            ck_assert_msg(nested[i] != nested[j],
                          "threads %d and %d share a buffer inside inactive nested regions", i, j);
        }
    }
    for (int i = 0; i < 2 * NT; i++) {
        ck_assert_ptr_nonnull(active[i / 2][i % 2]);
        for (int j = 0; j < i; j++)
            ck_assert_msg(active[i / 2][i % 2] != active[j / 2][j % 2],
                          "inner threads %d.%d and %d.%d share a buffer", i / 2, i % 2, j / 2,
                          j % 2);
    }
    tfm_arena_release();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("arena");
    TCase *kernels = tcase_create("kernels");
    tcase_set_timeout(kernels, 120);
    tcase_add_test(kernels, test_no_growth_after_first_call);
    tcase_add_test(kernels, test_each_kernel_allocates_once);
    tcase_add_test(kernels, test_release_frees_all_and_changes_nothing);
    suite_add_tcase(s, kernels);

    TCase *arena = tcase_create("arena");
    tcase_add_test(arena, test_alignment_growth_and_slots);
    tcase_add_test(arena, test_threads_get_their_own_buffers);
    suite_add_tcase(s, arena);
    return s;
}

int main(void) { return tu_run(suite()); }
