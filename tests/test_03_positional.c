/* test_03_positional.c — chapter 03: both variants of the sinusoidal table and of the embedding
 * sum against PyTorch's goldens and against the float64 truth position by position, the fast
 * table against the naive one on fresh positions, the properties of the encoding (relative
 * offsets, range, prefixes), the runner's refusals, the erratum of article 000 §3.3, and,
 * apart, the pins of PyTorch's own values that the book and the erratum quote. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "positional.h"
#include "testutil.h"
#include "tolerances.h"

/* Fast vs naive on the sinusoidal table: each rounds a double within ~1e-14 of the exact value
 * to float32, so both land within half an ulp of the exact value and differ by at most one ulp:
 * 2^-24 for values below 1 (and never more than that anywhere). */
#define PE_ULP_AT_ONE 0x1p-24

static const char *const CH = "03-positional";

typedef void (*PeFn)(float *, const int64_t *, size_t, size_t);
static const PeFn PE_FN[2] = {pe_sinusoidal_naive, pe_sinusoidal_fast};

/* ---------------------------------------------------------------- PyTorch's goldens */

START_TEST(test_naive_vs_goldens) { tu_check_all_cases(CH, TFM_NAIVE); }
END_TEST

START_TEST(test_fast_vs_goldens) { tu_check_all_cases(CH, TFM_FAST); }
END_TEST

/* Every PE case, and the position buckets [PE_LO, PE_HI] by which test_pe_error_by_position and
 * test_pin_pe_torch_error_grows_with_position break the error against float64 down. */
static const char *const PE_CASES[] = {"pe_single", "pe_width1", "pe_d2", "pe_odd",
                                       "pe_unordered", "pe_figure", "pe_short", "pe_long",
                                       "pe_tail", "errata_000_3_3_N10", "errata_000_3_3_N20"};
#define N_PE_CASES (sizeof PE_CASES / sizeof PE_CASES[0])
enum { PE_NB = 6 };
static const int64_t PE_LO[PE_NB] = {0, 64, 513, 1025, 2049, 4097};
static const int64_t PE_HI[PE_NB] = {63, 512, 1024, 2048, 4096, 8192};

/* The chapter tolerance (6e-4) is PyTorch's own float32 error at position 8192. This test holds
 * both variants to the float64 truth instead, at float32's rounding (TOL_03_TRUTH_ATOL), on
 * every stored row of every PE case, and prints the error by position bucket: naive, fast and
 * PyTorch side by side (book.md, chapter 03). Ours is asserted to stay flat; that PyTorch's
 * grows with the position is pinned apart (test_pin_pe_torch_error_grows_with_position). */
START_TEST(test_pe_error_by_position)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    double worst[PE_NB][3] = {{0}};   /* per bucket: naive, fast, PyTorch; E >= 64 cases only */
    double worst_all[2] = {0, 0};
    for (size_t c = 0; c < N_PE_CASES; c++) {
        const Tensor *pos = tu_case_tensor(&gf, PE_CASES[c], "positions", TFM_I64);
        const Tensor *torch = tu_case_tensor(&gf, PE_CASES[c], "out", TFM_F32);
        const Tensor *truth = tu_case_tensor(&gf, PE_CASES[c], "out_f64", TFM_F64);
        const size_t T = pos->shape[0];
        const size_t E = (size_t)tu_case_param(&gf, PE_CASES[c], "d_model");
        float *got[2];
        for (int v = 0; v < 2; v++) {
            got[v] = tu_malloc(T * E * sizeof(float));
            PE_FN[v](got[v], tensor_i64(pos), T, E);
            char label[96];
            snprintf(label, sizeof label, "%s %s vs float64 truth", tfm_variant_name((TfmVariant)v),
                     PE_CASES[c]);
            tu_assert_close(label, got[v], T * E, truth, TOL_03_TRUTH_ATOL, 0.0);
        }
        for (size_t t = 0; t < T; t++) {
            const int64_t p = tensor_i64(pos)[t];
            for (size_t j = 0; j < E; j++) {
                const double x = tensor_f64(truth)[t * E + j];
                const double e[3] = {fabs(got[0][t * E + j] - x), fabs(got[1][t * E + j] - x),
                                     fabs(tensor_f32(torch)[t * E + j] - x)};
                for (int v = 0; v < 2; v++)
                    worst_all[v] = fmax(worst_all[v], e[v]);
                for (int b = 0; b < PE_NB && E >= 64; b++)
                    if (p >= PE_LO[b] && p <= PE_HI[b])
                        for (int k = 0; k < 3; k++)
                            worst[b][k] = fmax(worst[b][k], e[k]);
            }
        }
        free(got[0]);
        free(got[1]);
    }
    fprintf(stderr, "PE max |error| vs float64 truth, by position (E = 64 and 768 rows):\n"
                    "  positions        naive      fast       PyTorch f32\n");
    for (int b = 0; b < PE_NB; b++)
        fprintf(stderr, "  %5lld..%-5lld   %.2e   %.2e   %.2e\n", (long long)PE_LO[b],
                (long long)PE_HI[b], worst[b][0], worst[b][1], worst[b][2]);
    fprintf(stderr, "  all PE cases: naive %.2e, fast %.2e\n", worst_all[0], worst_all[1]);
    /* Ours stays flat: within float32's rounding of the truth in every bucket. */
    for (int b = 0; b < PE_NB; b++)
        ck_assert(worst[b][0] <= TOL_03_TRUTH_ATOL && worst[b][1] <= TOL_03_TRUTH_ATOL);
    golden_free(&gf);
}
END_TEST

/* The embedding sum is three lookups and two float additions in PyTorch's order: the same bits,
 * not just close ones (the chapter tolerance, set by the PE cases, would hide an order change).
 * compare_f32 with zero tolerance demands NaN and infinities in the same places too. */
START_TEST(test_embeddings_bit_exact)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    static const char *const cases[] = {"emb_single", "emb_tiny", "emb_segments", "emb_positions",
                                        "emb_no_type", "emb_bert", "emb_extreme"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int v = TFM_NAIVE; v <= TFM_FAST; v++) {
            OpOutputs out;
            memset(&out, 0, sizeof out);
            char err[TFM_ERR_LEN] = "", label[96];
            ck_assert_msg(tu_run_op("embeddings", &out, &gf, cases[c], (TfmVariant)v, err,
                                    sizeof err) == 0,
                          "%s", err);
            snprintf(label, sizeof label, "%s %s (bit exact)", tfm_variant_name((TfmVariant)v),
                     cases[c]);
            tu_assert_close(label, tensor_f32(&out.tensors[0]), out.tensors[0].numel,
                            tu_case_tensor(&gf, cases[c], "out", TFM_F32), 0.0, 0.0);
            op_outputs_free(&out);
        }
    }
    golden_free(&gf);
}
END_TEST

/* ---------------------------------------------------------------- fast vs naive */

enum { POS_RANGE, POS_STRIDED, POS_RANDOM, POS_DESCENDING, POS_REPEATS };

typedef struct {
    size_t T, E;
    int kind;          /* POS_* */
    int64_t start;     /* first position */
    int64_t stride;    /* POS_STRIDED's step */
} PeProblem;

/* Around the anchor period R = 64: one row, R - 1, R, R + 1, many blocks; widths 1, 2, odd,
 * BERT's; positions from 0, far out (2^20 and 2^24 - T), strided, random, descending, repeated. */
static const PeProblem PE_PROBLEMS[] = {
    {1, 1, POS_RANGE, 0, 1},          {1, 768, POS_RANGE, 5000, 1},
    {63, 2, POS_RANGE, 0, 1},         {64, 3, POS_RANGE, 0, 1},
    {65, 7, POS_RANGE, 0, 1},         {129, 768, POS_RANGE, 0, 1},
    {1000, 64, POS_RANGE, 0, 1},      {300, 33, POS_RANGE, 1 << 20, 1},
    {200, 16, POS_RANGE, (1 << 24) - 200, 1},
    {150, 12, POS_STRIDED, 3, 7},     {130, 768, POS_STRIDED, 0, 64},
    {100, 9, POS_RANDOM, 0, 1},       {97, 64, POS_DESCENDING, 9000, 1},
    {140, 6, POS_REPEATS, 10, 1},
};
#define N_PE_PROBLEMS (sizeof PE_PROBLEMS / sizeof PE_PROBLEMS[0])

static int64_t *make_positions(const PeProblem *pp, uint64_t seed)
{
    TuRng rng = {seed};
    int64_t *p = tu_malloc(pp->T * sizeof *p);
    for (size_t t = 0; t < pp->T; t++) {
        const int64_t it = (int64_t)t;
        switch (pp->kind) {
        case POS_RANGE: p[t] = pp->start + it; break;
        case POS_STRIDED: p[t] = pp->start + it * pp->stride; break;
        case POS_RANDOM: p[t] = (int64_t)(tu_uniform(&rng) * 100000.0); break;
        case POS_DESCENDING: p[t] = pp->start - it; break;
        default: p[t] = pp->start + it / 3; break;   /* each position three times */
        }
    }
    return p;
}

START_TEST(test_pe_fast_vs_naive_random)
{
    const PeProblem *pp = &PE_PROBLEMS[_i];
    int64_t *pos = make_positions(pp, 300 + (uint64_t)_i);
    float *naive = tu_malloc(pp->T * pp->E * sizeof(float));
    float *fast = tu_malloc(pp->T * pp->E * sizeof(float));
    pe_sinusoidal_naive(naive, pos, pp->T, pp->E);
    pe_sinusoidal_fast(fast, pos, pp->T, pp->E);
    const size_t shape[2] = {pp->T, pp->E};
    char label[96];
    snprintf(label, sizeof label, "problem %d [T %zu, E %zu, kind %d, start %lld]", _i, pp->T,
             pp->E, pp->kind, (long long)pp->start);
    tu_assert_close_f32(label, fast, naive, 2, shape, PE_ULP_AT_ONE, 0.0);
    free(pos);
    free(naive);
    free(fast);
}
END_TEST

/* NULL positions mean 0..T-1 in both variants. */
START_TEST(test_pe_null_positions)
{
    const size_t T = 150, E = 10;
    int64_t *pos = tu_malloc(T * sizeof *pos);
    for (size_t t = 0; t < T; t++)
        pos[t] = (int64_t)t;
    float *a = tu_malloc(T * E * sizeof(float)), *b = tu_malloc(T * E * sizeof(float));
    for (int v = 0; v < 2; v++) {
        PE_FN[v](a, pos, T, E);
        PE_FN[v](b, NULL, T, E);
        ck_assert_msg(memcmp(a, b, T * E * sizeof(float)) == 0, "%s: NULL positions != 0..T-1",
                      tfm_variant_name((TfmVariant)v));
    }
    free(pos);
    free(a);
    free(b);
}
END_TEST

/* Each block starts from its own anchor, so the thread count cannot change a bit. */
START_TEST(test_pe_fast_deterministic_across_threads)
{
    const size_t T = 1000, E = 96;
    float *a = tu_malloc(T * E * sizeof(float)), *b = tu_malloc(T * E * sizeof(float));
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    pe_sinusoidal_fast(a, NULL, T, E);
    omp_set_num_threads(3);
    pe_sinusoidal_fast(b, NULL, T, E);
    omp_set_num_threads(saved);
    ck_assert_msg(memcmp(a, b, T * E * sizeof(float)) == 0, "fast PE depends on the threads");
    free(a);
    free(b);
}
END_TEST

/* Random embedding problems, fast against naive, bit for bit (same additions, same order). */
START_TEST(test_embeddings_fast_vs_naive_random)
{
    static const size_t shapes[][6] = {   /* B, T, E, V, P, G */
        {1, 1, 1, 1, 1, 1}, {2, 7, 5, 11, 9, 0}, {3, 33, 17, 50, 40, 2}, {4, 70, 768, 100, 70, 3},
    };
    const size_t *s = shapes[_i];
    const size_t B = s[0], T = s[1], E = s[2], V = s[3], P = s[4], G = s[5];
    TuRng rng = {700 + (uint64_t)_i};
    float *word = tu_malloc(V * E * sizeof(float)), *pos = tu_malloc(P * E * sizeof(float));
    float *type = tu_malloc((G ? G : 1) * E * sizeof(float));
    tu_fill_normal(word, V * E, &rng);
    tu_fill_normal(pos, P * E, &rng);
    tu_fill_normal(type, G * E, &rng);
    int64_t *ids = tu_malloc(B * T * sizeof(int64_t)), *pid = tu_malloc(B * T * sizeof(int64_t));
    int64_t *tt = tu_malloc(B * T * sizeof(int64_t));
    for (size_t k = 0; k < B * T; k++) {
        ids[k] = (int64_t)(tu_uniform(&rng) * (double)V);
        pid[k] = (int64_t)(tu_uniform(&rng) * (double)P);
        tt[k] = G ? (int64_t)(tu_uniform(&rng) * (double)G) : 0;
    }
    float *a = tu_malloc(B * T * E * sizeof(float)), *b = tu_malloc(B * T * E * sizeof(float));
    const size_t shape[3] = {B, T, E};
    for (int with_ids = 0; with_ids < 2; with_ids++) {   /* explicit ids, then the defaults */
        const int64_t *p = with_ids ? pid : NULL, *g = with_ids && G ? tt : NULL;
        const float *ty = G ? type : NULL;
        EmbBadId bad;
        ck_assert_int_eq(embeddings_forward_naive(a, &bad, ids, p, g, word, pos, ty, B, T, E, V,
                                                  P, G), 0);
        ck_assert_int_eq(embeddings_forward_fast(b, &bad, ids, p, g, word, pos, ty, B, T, E, V,
                                                 P, G), 0);
        tu_assert_close_f32("embeddings fast vs naive", b, a, 3, shape, 0.0, 0.0);
        /* spot check the formula itself on the last element */
        const size_t k = B * T - 1, j = E - 1;
        const size_t pr = p ? (size_t)p[k] : (size_t)(k % T), gr = g ? (size_t)g[k] : 0;
        float want = word[(size_t)ids[k] * E + j];
        if (G)
            want = want + type[gr * E + j];
        want = want + pos[pr * E + j];
        ck_assert_float_eq(a[k * E + j], want);
    }
    free(word);
    free(pos);
    free(type);
    free(ids);
    free(pid);
    free(tt);
    free(a);
    free(b);
}
END_TEST

/* ---------------------------------------------------------------- properties */

/* PE(p) . PE(p + k) = sum_i [sin(p w_i) sin((p+k) w_i) + cos(p w_i) cos((p+k) w_i)]
 *                   = sum_i cos(k w_i)                 (cos(a - b) = cos a cos b + sin a sin b)
 * depends on the offset k only. With float32 values, each within u = 2^-24 of the exact one
 * and at most 1 in size, each product is off by at most 2u (+u^2), so the dot product is within
 * 2 u E of the closed form (summed in double: no further error worth counting). */
static double dot_rows(const float *a, const float *b, size_t E)
{
    double s = 0.0;
    for (size_t j = 0; j < E; j++)
        s += (double)a[j] * (double)b[j];
    return s;
}

START_TEST(test_pe_dot_depends_on_offset_only)
{
    static const size_t widths[] = {2, 64, 768};
    static const int64_t starts[] = {0, 1, 37, 1000, 4096, 8000, 100000};
    static const int64_t offsets[] = {0, 1, 2, 10, 100, 1000};
    enum { NS = sizeof starts / sizeof starts[0], NK = sizeof offsets / sizeof offsets[0] };
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        const size_t E = widths[w];
        const double bound = 2.0 * 0x1p-24 * (double)E + 1e-12;
        float *row = tu_malloc(2 * E * sizeof(float));
        for (int v = 0; v < 2; v++) {
            for (int ik = 0; ik < NK; ik++) {
                double closed = 0.0;   /* sum_i cos(k w_i) over the E/2 pairs */
                for (size_t i = 0; i < E / 2; i++)
                    closed += cos((double)offsets[ik] * pow(10000.0, -(double)(2 * i) / (double)E));
                for (int is = 0; is < NS; is++) {
                    const int64_t pq[2] = {starts[is], starts[is] + offsets[ik]};
                    PE_FN[v](row, &pq[0], 1, E);
                    PE_FN[v](row + E, &pq[1], 1, E);
                    const double d = dot_rows(row, row + E, E);
                    ck_assert_msg(fabs(d - closed) <= bound,
                                  "%s E=%zu: PE(%lld).PE(%lld) = %.9f, but sum_i cos(k w_i) = "
                                  "%.9f for k = %lld (bound %.2e)",
                                  tfm_variant_name((TfmVariant)v), E, (long long)pq[0],
                                  (long long)pq[1], d, closed, (long long)offsets[ik], bound);
                }
            }
        }
        free(row);
    }
}
END_TEST

/* Odd E: the last column, sin(p w) with no cos partner, adds sin(p w) sin((p+k) w) to the dot
 * product, which does depend on p: the property holds for even E only. Shown, not hidden: the
 * dot minus that one term is again the closed form, and the term itself moves with p. */
START_TEST(test_pe_odd_width_breaks_offset_property)
{
    const size_t E = 7;
    const double w = pow(10000.0, -6.0 / 7.0), bound = 2.0 * 0x1p-24 * (double)E + 1e-12;
    float row[14];
    double extra_min = INFINITY, extra_max = -INFINITY;
    for (int64_t p = 0; p < 20000; p += 331) {   /* p w runs over several periods */
        const int64_t pq[2] = {p, p + 3};
        pe_sinusoidal_naive(row, &pq[0], 1, E);
        pe_sinusoidal_naive(row + E, &pq[1], 1, E);
        double closed = 0.0;
        for (size_t i = 0; i < E / 2; i++)
            closed += cos(3.0 * pow(10000.0, -(double)(2 * i) / (double)E));
        const double extra = sin((double)p * w) * sin((double)(p + 3) * w);
        ck_assert(fabs(dot_rows(row, row + E, E) - extra - closed) <= bound);
        extra_min = fmin(extra_min, extra);
        extra_max = fmax(extra_max, extra);
    }
    ck_assert_msg(extra_max - extra_min > 0.5, "the lone sin column's term should vary with p");
}
END_TEST

/* Every value is a sine or a cosine: inside [-1, 1], at any position (the recurrence of the
 * fast variant must not let the amplitude grow). */
START_TEST(test_pe_values_in_unit_interval)
{
    static const int64_t starts[] = {0, 8000, 1 << 20, (1 << 24) - 300};
    const size_t T = 300, E = 768;
    float *pe = tu_malloc(T * E * sizeof(float));
    int64_t *pos = tu_malloc(T * sizeof *pos);
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        for (size_t t = 0; t < T; t++)
            pos[t] = starts[s] + (int64_t)t;
        for (int v = 0; v < 2; v++) {
            PE_FN[v](pe, pos, T, E);
            size_t k = 0;   /* the first value outside, if any (one assert: Check's are costly) */
            while (k < T * E && pe[k] >= -1.0f && pe[k] <= 1.0f)
                k++;
            ck_assert_msg(k == T * E, "%s: PE[%lld][%zu] = %.9g is outside [-1, 1]",
                          tfm_variant_name((TfmVariant)v), (long long)pos[k / E], k % E,
                          (double)pe[k]);
        }
    }
    /* position 0: every sin is 0 and every cos is 1, exactly */
    for (int v = 0; v < 2; v++) {
        PE_FN[v](pe, NULL, 1, 9);
        for (size_t j = 0; j < 9; j++)
            ck_assert_float_eq(pe[j], j % 2 ? 1.0f : 0.0f);
    }
    free(pe);
    free(pos);
}
END_TEST

/* The table for length N is the first N rows of the table for 2N: a position's code does not
 * depend on how long the sequence is (compare the article's table below). Bit for bit, both
 * variants, at lengths that put the fast variant's anchors in the same places and not. */
START_TEST(test_pe_prefix)
{
    static const size_t Ns[] = {1, 50, 64, 77, 100, 1000};
    const size_t E = 40;
    for (size_t n = 0; n < sizeof Ns / sizeof Ns[0]; n++) {
        const size_t N = Ns[n];
        float *a = tu_malloc(N * E * sizeof(float)), *b = tu_malloc(2 * N * E * sizeof(float));
        for (int v = 0; v < 2; v++) {
            PE_FN[v](a, NULL, N, E);
            PE_FN[v](b, NULL, 2 * N, E);
            ck_assert_msg(memcmp(a, b, N * E * sizeof(float)) == 0,
                          "%s: table for %zu is not a prefix of the table for %zu",
                          tfm_variant_name((TfmVariant)v), N, 2 * N);
        }
        free(a);
        free(b);
    }
}
END_TEST

/* ---------------------------------------------------------------- the runner */

/* The runner reads a GoldenFile; these build one in memory (TuMemFile), with no case prefix, from
 * views of the arrays below. */
static int64_t POOL_I64[64];
static const float POOL_F32[256];

/* An embeddings file: input_ids [B,T] (POOL_I64, all 1 unless changed), word_emb [V,E],
 * pos_emb [P,E] (POOL_F32). */
static void mem_embeddings(TuMemFile *m, size_t B, size_t T, size_t V, size_t P, size_t E)
{
    const size_t ids[2] = {B, T}, word[2] = {V, E}, pos[2] = {P, E};
    tu_mem_init(m);
    for (size_t k = 0; k < 64; k++)
        POOL_I64[k] = 1;
    tu_mem_put(m, "input_ids", TFM_I64, POOL_I64, 2, ids);
    tu_mem_put(m, "word_emb", TFM_F32, POOL_F32, 2, word);
    tu_mem_put(m, "pos_emb", TFM_F32, POOL_F32, 2, pos);
}

START_TEST(test_runner_refuses_bad_pe_input)
{
    TuMemFile m;
    tu_mem_init(&m);                               /* d_model missing */
    memset(POOL_I64, 0, sizeof POOL_I64);
    tu_mem_put(&m, "positions", TFM_I64, POOL_I64, 1, (size_t[]){4});
    tu_expect_refused("pe", &m.gf, "", "d_model");

    tu_mem_init(&m);                               /* positions as float */
    tu_mem_put(&m, "positions", TFM_F32, POOL_F32, 1, (size_t[]){4});
    tu_mem_put(&m, "d_model", TFM_I64, POOL_I64, 0, NULL);
    tu_expect_refused("pe", &m.gf, "", "positions");

    tu_mem_init(&m);                               /* d_model 0 */
    tu_mem_put(&m, "positions", TFM_I64, POOL_I64, 1, (size_t[]){4});
    tu_mem_put(&m, "d_model", TFM_I64, POOL_I64, 0, NULL);
    POOL_I64[0] = 0;
    tu_expect_refused("pe", &m.gf, "", "d_model is 0");

    POOL_I64[0] = 8;                               /* d_model 8, positions[2] negative */
    POOL_I64[2] = -3;
    tu_expect_refused("pe", &m.gf, "", "positions[2] is -3");
    POOL_I64[2] = ((int64_t)1 << 24) + 1;          /* past 2^24 */
    tu_expect_refused("pe", &m.gf, "", "positions[2] is 16777217");
    POOL_I64[2] = 0;

    tu_mem_init(&m);                               /* positions of rank 2 */
    tu_mem_put(&m, "positions", TFM_I64, POOL_I64, 2, (size_t[]){2, 2});
    tu_mem_put(&m, "d_model", TFM_I64, POOL_I64, 0, NULL);
    tu_expect_refused("pe", &m.gf, "", "positions");
}
END_TEST

START_TEST(test_runner_refuses_bad_embeddings_input)
{
    TuMemFile m;
    mem_embeddings(&m, 2, 3, 4, 5, 6);             /* an id past the vocabulary */
    POOL_I64[4] = 4;
    tu_expect_refused("embeddings", &m.gf, "",
                      "input_ids[1, 1] = 4 is outside word_emb's 4 rows (valid 0..3)");
    POOL_I64[4] = -1;                              /* a negative id */
    tu_expect_refused("embeddings", &m.gf, "", "input_ids[1, 1] = -1");

    mem_embeddings(&m, 1, 6, 4, 5, 6);             /* implicit positions 0..5, pos_emb has 5 */
    tu_expect_refused("embeddings", &m.gf, "",
                      "position_ids[0, 5] = 5 is outside pos_emb's 5 rows");

    mem_embeddings(&m, 2, 3, 4, 5, 6);             /* explicit position id past the table */
    /* position_ids views POOL_I64 too: the ids are all 1 */
    tu_mem_put(&m, "position_ids", TFM_I64, POOL_I64, 2, (size_t[]){2, 3});
    POOL_I64[5] = 5;                               /* input_ids is checked first */
    tu_expect_refused("embeddings", &m.gf, "", "input_ids[1, 2] = 5");
    POOL_I64[5] = 3;
    tu_mem_put(&m, "type_emb", TFM_F32, POOL_F32, 2, (size_t[]){2, 6});
    tu_mem_put(&m, "token_type_ids", TFM_I64, POOL_I64, 2, (size_t[]){2, 3});
    tu_expect_refused("embeddings", &m.gf, "",
                      "token_type_ids[1, 2] = 3 is outside type_emb's 2 rows");

    mem_embeddings(&m, 2, 3, 4, 5, 6);             /* token_type_ids without type_emb */
    tu_mem_put(&m, "token_type_ids", TFM_I64, POOL_I64, 2, (size_t[]){2, 3});
    tu_expect_refused("embeddings", &m.gf, "", "type_emb is not");

    mem_embeddings(&m, 2, 3, 4, 5, 6);             /* position_ids of another shape */
    tu_mem_put(&m, "position_ids", TFM_I64, POOL_I64, 2, (size_t[]){3, 2});
    tu_expect_refused("embeddings", &m.gf, "", "position_ids is [3, 2]");

    tu_mem_init(&m);                               /* pos_emb of another width */
    tu_mem_put(&m, "input_ids", TFM_I64, POOL_I64, 2, (size_t[]){1, 2});
    tu_mem_put(&m, "word_emb", TFM_F32, POOL_F32, 2, (size_t[]){4, 6});
    tu_mem_put(&m, "pos_emb", TFM_F32, POOL_F32, 2, (size_t[]){5, 7});
    tu_expect_refused("embeddings", &m.gf, "", "E = 6");

    tu_mem_init(&m);                               /* word_emb missing */
    tu_mem_put(&m, "input_ids", TFM_I64, POOL_I64, 2, (size_t[]){1, 2});
    tu_mem_put(&m, "pos_emb", TFM_F32, POOL_F32, 2, (size_t[]){5, 7});
    tu_expect_refused("embeddings", &m.gf, "", "word_emb");

    mem_embeddings(&m, 1, 2, 4, 5, 6);             /* input_ids as float */
    tu_mem_put(&m, "input_ids", TFM_F32, POOL_I64, 2, (size_t[]){1, 2});
    tu_expect_refused("embeddings", &m.gf, "", "input_ids");
}
END_TEST

/* The kernels themselves refuse bad ids and leave out untouched. */
START_TEST(test_kernels_refuse_bad_ids)
{
    const float word[2 * 3] = {1, 2, 3, 4, 5, 6}, pos[2 * 3] = {0};
    const int64_t ids[2] = {1, 2};
    for (int v = 0; v < 2; v++) {
        float out[6] = {7, 7, 7, 7, 7, 7};
        EmbBadId bad;
        const int rc = (v ? embeddings_forward_fast : embeddings_forward_naive)(
            out, &bad, ids, NULL, NULL, word, pos, NULL, 1, 2, 3, 2, 2, 0);
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(bad.kind, EMB_INPUT_IDS);
        ck_assert_uint_eq(bad.index, 1);
        ck_assert_int_eq(bad.id, 2);
        for (int k = 0; k < 6; k++)
            ck_assert_float_eq(out[k], 7.0f);
    }
}
END_TEST

/* ---------------------------------------------------------------- erratum 000 §3.3 */

/* Article 000 §3.3 builds the table for a sequence of length N with the exponent 2i/N, the
 * sequence length where the paper has d_model, and with one letter i for the row (position)
 * and the pair index. Read as ref/ch03_positional.py reads it (rows are positions 1..N, the
 * column's i is the pair index), in double: */
static void pe_article_000_3_3(float *pe /* [N, E] */, size_t N, size_t E)
{
    for (size_t r = 0; r < N; r++) {
        const double p = (double)(r + 1);
        for (size_t j = 0; j < E; j++) {
            const double angle = p / pow(10000.0, (double)(2 * (j / 2)) / (double)N);
            pe[r * E + j] = (float)(j % 2 == 0 ? sin(angle) : cos(angle));
        }
    }
}

/* The real tables (positions 1..N) at N = 10 and N = 20, and PyTorch's value of the article's
 * (pin cases, computed by no op). */
static const char *const ERRATA_CASES[2] = {"errata_000_3_3_N10", "errata_000_3_3_N20"};
static const char *const ERRATA_ARTICLE[2] = {"errata_000_3_3_N10_article",
                                              "errata_000_3_3_N20_article"};
static const size_t ERRATA_NS[2] = {10, 20};

START_TEST(test_errata_000_3_3)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    const char *const *cases = ERRATA_CASES, *const *article = ERRATA_ARTICLE;
    const size_t *Ns = ERRATA_NS;
    float *art[2], *ours[2][2];
    size_t E = 0;
    for (int c = 0; c < 2; c++) {
        E = (size_t)tu_case_param(&gf, cases[c], "d_model");
        const Tensor *pos = tu_case_tensor(&gf, cases[c], "positions", TFM_I64);
        ck_assert_uint_eq(pos->shape[0], Ns[c]);
        ck_assert_int_eq(tensor_i64(pos)[4], 5);   /* row 4 is position 5 */
        /* 1. our C reading of the article reproduces PyTorch's: the difference shown below is
         *    in the formula, not in an implementation */
        art[c] = tu_malloc(Ns[c] * E * sizeof(float));
        pe_article_000_3_3(art[c], Ns[c], E);
        tu_assert_close("C article table vs PyTorch float64", art[c], Ns[c] * E,
                        tu_case_tensor(&gf, article[c], "out_article_f64", TFM_F64),
                        TOL_03_TRUTH_ATOL, 0.0);
        tu_assert_close("C article table vs PyTorch float32", art[c], Ns[c] * E,
                        tu_case_tensor(&gf, article[c], "out_article", TFM_F32), ch->atol, ch->rtol);
        for (int v = 0; v < 2; v++) {
            ours[c][v] = tu_malloc(Ns[c] * E * sizeof(float));
            PE_FN[v](ours[c][v], tensor_i64(pos), Ns[c], E);
        }
    }
    /* 2. The article's code for position 5 changes with the sequence length... */
    const float *a10 = art[0] + 4 * E, *a20 = art[1] + 4 * E;
    double diff = 0.0;
    for (size_t j = 0; j < E; j++)
        diff = fmax(diff, fabs((double)a10[j] - (double)a20[j]));
    fprintf(stderr, "erratum 000 §3.3: position 5, article's table at N=10 vs N=20: max |diff| = "
                    "%.3f\n", diff);
    ck_assert_msg(diff > 0.5, "the article's code for position 5 barely moved (%.3g)", diff);
    /*    (in PyTorch's goldens too: test_pin_errata_000_3_3_article_pe5_moves) */
    /* 3. ... while the real encoding of position 5 is the same bits in both tables, in both
     *    variants (and in PyTorch's goldens: test_pin_errata_000_3_3_torch_pe5_same_bits). */
    for (int v = 0; v < 2; v++)
        ck_assert_msg(memcmp(ours[0][v] + 4 * E, ours[1][v] + 4 * E, E * sizeof(float)) == 0,
                      "%s: PE(5) depends on the table length", tfm_variant_name((TfmVariant)v));
    /* 4. The article's table is the paper's exactly when N happens to equal d_model. */
    float *sq = tu_malloc(E * E * sizeof(float)), *real = tu_malloc(E * E * sizeof(float));
    int64_t *p1 = tu_malloc(E * sizeof *p1);
    for (size_t t = 0; t < E; t++)
        p1[t] = (int64_t)t + 1;
    pe_article_000_3_3(sq, E, E);
    pe_sinusoidal_naive(real, p1, E, E);
    const size_t shape[2] = {E, E};
    tu_assert_close_f32("article at N = d_model vs the paper", sq, real, 2, shape,
                        PE_ULP_AT_ONE, 0.0);
    free(sq);
    free(real);
    free(p1);
    for (int c = 0; c < 2; c++) {
        free(art[c]);
        free(ours[c][0]);
        free(ours[c][1]);
    }
    golden_free(&gf);
}
END_TEST

/* ---------------------------------------------------------------- pins (PyTorch's own behaviour)
 *
 * These assert PyTorch's values from the goldens, or compare two goldens: no change to tfm can
 * make them fail. They guard what the book and the errata quote about PyTorch. */

/* Pin: PyTorch's float32 sinusoidal table ("out" of every PE case) drifts from the float64
 * truth ("out_f64") as the position grows, because it rounds the angle p w to float32: over the
 * E >= 64 rows its worst error at positions 4097..8192 is above 1e-4 and over 50 times its worst
 * at 0..63 (a few 1e-6 near 0, several 1e-4 near 8192). Kept because the book (chapter 03's
 * table by position, printed by test_pe_error_by_position, and the Edge cases table: 5.5e-4 at
 * position 8192) rests on it, and the chapter tolerance (6e-4) is this error. */
START_TEST(test_pin_pe_torch_error_grows_with_position)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    double worst[PE_NB] = {0};   /* PyTorch's, per bucket; E >= 64 cases only */
    for (size_t c = 0; c < N_PE_CASES; c++) {
        const Tensor *pos = tu_case_tensor(&gf, PE_CASES[c], "positions", TFM_I64);
        const Tensor *torch = tu_case_tensor(&gf, PE_CASES[c], "out", TFM_F32);
        const Tensor *truth = tu_case_tensor(&gf, PE_CASES[c], "out_f64", TFM_F64);
        const size_t T = pos->shape[0];
        const size_t E = (size_t)tu_case_param(&gf, PE_CASES[c], "d_model");
        ck_assert_uint_eq(torch->numel, T * E);
        ck_assert_uint_eq(truth->numel, T * E);
        for (size_t t = 0; t < T && E >= 64; t++) {
            const int64_t p = tensor_i64(pos)[t];
            for (size_t j = 0; j < E; j++) {
                const double e = fabs(tensor_f32(torch)[t * E + j] - tensor_f64(truth)[t * E + j]);
                for (int b = 0; b < PE_NB; b++)
                    if (p >= PE_LO[b] && p <= PE_HI[b])
                        worst[b] = fmax(worst[b], e);
            }
        }
    }
    fprintf(stderr, "PyTorch f32 PE max |error| vs float64: positions 0..63 %.2e, 4097..8192 "
                    "%.2e\n", worst[0], worst[PE_NB - 1]);
    ck_assert_msg(worst[PE_NB - 1] > 50.0 * worst[0] && worst[PE_NB - 1] > 1e-4,
                  "PyTorch's float32 error did not grow with position as the book says");
    golden_free(&gf);
}
END_TEST

/* Pin: PyTorch's value of the article's table (the pin cases errata_000_3_3_N10_article and
 * _N20_article, rows = positions 1..N) gives position 5 (row 4) other bits at N = 10 than at
 * N = 20. Kept because the erratum of article 000 §3.3 (book.md, chapter 03, and the Errata
 * table: "the article's code for position 5 moves by up to 1.11") says so of PyTorch's tables,
 * not only of test_errata_000_3_3's C reading of the article. */
START_TEST(test_pin_errata_000_3_3_article_pe5_moves)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    const float *row5[2];
    size_t E = 0;
    for (int c = 0; c < 2; c++) {
        E = (size_t)tu_case_param(&gf, ERRATA_CASES[c], "d_model");
        const Tensor *t = tu_case_tensor(&gf, ERRATA_ARTICLE[c], "out_article", TFM_F32);
        ck_assert_uint_eq(t->numel, ERRATA_NS[c] * E);
        row5[c] = tensor_f32(t) + 4 * E;
    }
    ck_assert(memcmp(row5[0], row5[1], E * sizeof(float)) != 0);
    golden_free(&gf);
}
END_TEST

/* Pin: PyTorch's real sinusoidal table (errata_000_3_3_N10/out and _N20/out) gives position 5
 * the same bits at N = 10 and at N = 20: a position's code does not depend on the sequence
 * length. Kept because the erratum of article 000 §3.3 (book.md, chapter 03) states it of
 * "tfm's naive and fast variants and PyTorch's goldens"; test_errata_000_3_3 checks tfm's. */
START_TEST(test_pin_errata_000_3_3_torch_pe5_same_bits)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    const float *row5[2];
    size_t E = 0;
    for (int c = 0; c < 2; c++) {
        E = (size_t)tu_case_param(&gf, ERRATA_CASES[c], "d_model");
        const Tensor *pos = tu_case_tensor(&gf, ERRATA_CASES[c], "positions", TFM_I64);
        const Tensor *t = tu_case_tensor(&gf, ERRATA_CASES[c], "out", TFM_F32);
        ck_assert_uint_eq(pos->shape[0], ERRATA_NS[c]);
        ck_assert_int_eq(tensor_i64(pos)[4], 5);   /* row 4 is position 5 */
        ck_assert_uint_eq(t->numel, ERRATA_NS[c] * E);
        row5[c] = tensor_f32(t) + 4 * E;
    }
    ck_assert(memcmp(row5[0], row5[1], E * sizeof(float)) == 0);
    golden_free(&gf);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *positional_suite(void)
{
    Suite *s = suite_create(CH);
    TCase *golden_tc = tcase_create("goldens");
    tcase_set_tags(golden_tc, "goldens");    /* make valgrind leaves these to `tfm check` */
    tcase_add_test(golden_tc, test_naive_vs_goldens);
    tcase_add_test(golden_tc, test_fast_vs_goldens);
    tcase_add_test(golden_tc, test_pe_error_by_position);
    tcase_add_test(golden_tc, test_embeddings_bit_exact);
    suite_add_tcase(s, golden_tc);

    TCase *fast = tcase_create("fast vs naive");
    tcase_add_loop_test(fast, test_pe_fast_vs_naive_random, 0, (int)N_PE_PROBLEMS);
    tcase_add_test(fast, test_pe_null_positions);
    tcase_add_test(fast, test_pe_fast_deterministic_across_threads);
    tcase_add_loop_test(fast, test_embeddings_fast_vs_naive_random, 0, 4);
    suite_add_tcase(s, fast);

    TCase *props = tcase_create("properties");
    tcase_add_test(props, test_pe_dot_depends_on_offset_only);
    tcase_add_test(props, test_pe_odd_width_breaks_offset_property);
    tcase_add_test(props, test_pe_values_in_unit_interval);
    tcase_add_test(props, test_pe_prefix);
    suite_add_tcase(s, props);

    TCase *runner = tcase_create("bad input");
    tcase_add_test(runner, test_runner_refuses_bad_pe_input);
    tcase_add_test(runner, test_runner_refuses_bad_embeddings_input);
    tcase_add_test(runner, test_kernels_refuse_bad_ids);
    suite_add_tcase(s, runner);

    TCase *errata = tcase_create("erratum 000 3.3");
    tcase_add_test(errata, test_errata_000_3_3);
    suite_add_tcase(s, errata);

    TCase *pins = tcase_create("pins (PyTorch's own behaviour)");
    tcase_add_test(pins, test_pin_pe_torch_error_grows_with_position);
    tcase_add_test(pins, test_pin_errata_000_3_3_article_pe5_moves);
    tcase_add_test(pins, test_pin_errata_000_3_3_torch_pe5_same_bits);
    suite_add_tcase(s, pins);
    return s;
}

int main(void) { return tu_run(positional_suite()); }
