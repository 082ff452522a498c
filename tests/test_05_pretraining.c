/* test_05_pretraining.c — chapter 05: the losses and heads against PyTorch's goldens, fast
 * against naive on fresh shapes, why the log-sum-exp subtracts the max, the properties of
 * cross-entropy, the masking procedure checked statistically (it has no golden), and the runner's
 * bad input. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pretraining.h"
#include "rng.h"
#include "testutil.h"

/* Fast vs naive: float32 both, differing in summation order only (blocked sums of exps, FMA in
 * linear_fast): the chapter's own tolerance (tolerances.h), no looser. */
#define ATOL 3e-6
#define RTOL 1e-6

static const char *const CH = "05-pretraining";

/* ---------------------------------------------------------------- PyTorch's goldens */

START_TEST(test_naive_vs_goldens) { tu_check_all_cases(CH, TFM_NAIVE); }
END_TEST

START_TEST(test_fast_vs_goldens) { tu_check_all_cases(CH, TFM_FAST); }
END_TEST

/* BertForPreTraining's loss is mlm_loss + nsp_loss: the sum of our two outputs against PyTorch's
 * total, "<case>/loss", for every heads case (NaN where the MLM loss is NaN). */
START_TEST(test_total_loss_goldens)
{
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, CH);
    char **cases, err[TFM_ERR_LEN];
    const size_t n = golden_cases(&gf, &cases);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(cases[i], "heads_", 6) != 0 && strncmp(cases[i], "sentence_heads", 14) != 0)
            continue;
        const Tensor *want = tu_case_tensor(&gf, cases[i], "loss", TFM_F32);
        for (int v = TFM_NAIVE; v <= TFM_FAST; v++) {
            OpOutputs res;
            memset(&res, 0, sizeof res);
            ck_assert_msg(tu_run_op("pretraining-heads", &res, &gf, cases[i], (TfmVariant)v, err,
                                    sizeof err) == 0,
                          "%s", err);
            ck_assert_str_eq(res.names[2], "mlm_loss");
            ck_assert_str_eq(res.names[3], "nsp_loss");
            const float total = tensor_f32(&res.tensors[2])[0] + tensor_f32(&res.tensors[3])[0];
            char label[128];
            snprintf(label, sizeof label, "%s %s total loss", cases[i],
                     tfm_variant_name((TfmVariant)v));
            tu_assert_close(label, &total, 1, want, ch->atol, ch->rtol);
            op_outputs_free(&res);
        }
        seen++;
    }
    ck_assert_int_ge(seen, 6);
    golden_free_cases(cases, n);
    golden_free(&gf);
}
END_TEST

/* ---------------------------------------------------------------- random problems */

static int64_t *random_labels(size_t N, size_t V, double p_keep, TuRng *rng)
{
    int64_t *y = tu_malloc(N * sizeof *y);
    for (size_t n = 0; n < N; n++) {
        const int64_t cls = (int64_t)(tu_uniform(rng) * (double)V);
        y[n] = tu_uniform(rng) < p_keep ? cls : TFM_IGNORE_INDEX;
    }
    return y;
}

/* N rows, V classes, share of labelled rows. V straddles the fast variant's 64-logit blocks. */
static const struct { size_t N, V; double keep; } CE_PROBLEMS[] = {
    {0, 5, 1.0},   {1, 1, 1.0},     {3, 2, 1.0},      {17, 63, 0.5},   {16, 64, 0.15},
    {9, 65, 1.0},  {40, 129, 0.15}, {5, 1000, 0.7},   {3, 30522, 1.0}, {200, 50, 0.0},
};
#define N_CE (sizeof CE_PROBLEMS / sizeof CE_PROBLEMS[0])

START_TEST(test_ce_fast_vs_naive_random)
{
    const size_t N = CE_PROBLEMS[_i].N, V = CE_PROBLEMS[_i].V;
    TuRng rng = {500 + (uint64_t)_i};
    float *z = tu_malloc(N * V * sizeof *z);
    tu_fill_normal(z, N * V, &rng);
    for (size_t t = 0; t < N * V; t++)
        z[t] *= 3.0f;
    int64_t *y = random_labels(N, V, CE_PROBLEMS[_i].keep, &rng);
    float ln, lf, *tn = tu_malloc(N * sizeof *tn), *tf = tu_malloc(N * sizeof *tf);
    cross_entropy_naive(&ln, tn, z, y, N, V);
    cross_entropy_fast(&lf, tf, z, y, N, V);
    char label[96];
    snprintf(label, sizeof label, "ce N=%zu V=%zu token_loss", N, V);
    const size_t shape[1] = {N};
    tu_assert_close_f32(label, tf, tn, 1, shape, ATOL, RTOL);
    if (mlm_count_selected(y, N) == 0) {
        ck_assert_msg(isnan(ln) && isnan(lf), "no labelled row: loss must be NaN (%g, %g)",
                      (double)ln, (double)lf);
    } else {
        const size_t one[1] = {1};
        snprintf(label, sizeof label, "ce N=%zu V=%zu loss", N, V);
        tu_assert_close_f32(label, &lf, &ln, 1, one, ATOL, RTOL);
    }
    free(z);
    free(y);
    free(tn);
    free(tf);
}
END_TEST

typedef struct {
    size_t B, T, E, V;
    float *h, *w;   /* hidden [B,T,E]; all parameters in one block */
    int64_t *y, *ns;
    MlmHead mh;
    NspHead nh;
} Heads;

static void make_heads(Heads *p, size_t B, size_t T, size_t E, size_t V, double keep,
                       uint64_t seed)
{
    TuRng rng = {seed};
    *p = (Heads){.B = B, .T = T, .E = E, .V = V};
    const size_t nw = 3 * E * E + V * E + V + 6 * E + 2 + 2;
    p->h = tu_malloc(B * T * E * sizeof(float));
    p->w = tu_malloc(nw * sizeof(float));
    tu_fill_normal(p->h, B * T * E, &rng);
    tu_fill_normal(p->w, nw, &rng);
    const float s = 1.0f / sqrtf((float)E);
    for (size_t i = 0; i < nw; i++)
        p->w[i] *= s;   /* keeps every pre-activation of order 1 */
    float *w = p->w;
    p->mh = (MlmHead){w, w + E * E, w + E * E + E, w + E * E + 2 * E, w + E * E + 3 * E,
                      w + E * E + 3 * E + V * E, 1e-12f};
    w += E * E + 3 * E + V * E + V;
    p->nh = (NspHead){w, w + E * E, w + E * E + E, w + E * E + 3 * E};
    p->y = random_labels(B * T, V, keep, &rng);
    p->ns = random_labels(B, 2, 1.0, &rng);
}

static void free_heads(Heads *p)
{
    free(p->h);
    free(p->w);
    free(p->y);
    free(p->ns);
}

static const struct { size_t B, T, E, V; double keep; } HEAD_PROBLEMS[] = {
    {1, 1, 1, 1, 1.0}, {1, 1, 4, 7, 1.0}, {2, 9, 16, 50, 0.15}, {3, 13, 33, 65, 0.15},
    {2, 40, 64, 1000, 0.15}, {1, 7, 24, 30522, 0.3}, {2, 5, 8, 50, 0.0},
};
#define N_HEADS (sizeof HEAD_PROBLEMS / sizeof HEAD_PROBLEMS[0])

START_TEST(test_heads_fast_vs_naive_random)
{
    Heads p;
    make_heads(&p, HEAD_PROBLEMS[_i].B, HEAD_PROBLEMS[_i].T, HEAD_PROBLEMS[_i].E,
               HEAD_PROBLEMS[_i].V, HEAD_PROBLEMS[_i].keep, 600 + (uint64_t)_i);
    const size_t N = p.B * p.T, S = mlm_count_selected(p.y, N);
    float *zn = tu_malloc(S * p.V * sizeof(float)), *zf = tu_malloc(S * p.V * sizeof(float));
    float ln, lf, nn, nf, sn[64], sf[64], pn[64 * 64], pf[64 * 64];
    mlm_forward_naive(&ln, zn, p.h, p.y, &p.mh, N, p.E, p.V);
    mlm_forward_fast(&lf, zf, p.h, p.y, &p.mh, N, p.E, p.V);
    nsp_forward_naive(&nn, sn, pn, p.h, p.ns, &p.nh, p.B, p.T, p.E);
    nsp_forward_fast(&nf, sf, pf, p.h, p.ns, &p.nh, p.B, p.T, p.E);
    char label[96];
    snprintf(label, sizeof label, "heads B%zu T%zu E%zu V%zu", p.B, p.T, p.E, p.V);
    const size_t zs[2] = {S, p.V}, ss[2] = {p.B, 2}, ps[2] = {p.B, p.E}, one[1] = {1};
    tu_assert_close_f32(label, zf, zn, 2, zs, ATOL, RTOL);
    tu_assert_close_f32(label, sf, sn, 2, ss, ATOL, RTOL);
    tu_assert_close_f32(label, pf, pn, 2, ps, ATOL, RTOL);
    tu_assert_close_f32(label, &nf, &nn, 1, one, ATOL, RTOL);
    if (S == 0)
        ck_assert_msg(isnan(ln) && isnan(lf), "%s: S = 0 must give NaN", label);
    else
        tu_assert_close_f32(label, &lf, &ln, 1, one, ATOL, RTOL);
    free(zn);
    free(zf);
    free_heads(&p);
}
END_TEST

/* F5: each row by one thread, the mean by one thread in row order: bitwise thread-independent. */
START_TEST(test_fast_deterministic_across_threads)
{
    Heads p;
    make_heads(&p, 4, 64, 48, 2000, 0.15, 77);
    const size_t N = p.B * p.T, S = mlm_count_selected(p.y, N);
    float *z1 = tu_malloc(S * p.V * sizeof(float)), *z3 = tu_malloc(S * p.V * sizeof(float));
    float l1, l3;
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    mlm_forward_fast(&l1, z1, p.h, p.y, &p.mh, N, p.E, p.V);
    omp_set_num_threads(3);
    mlm_forward_fast(&l3, z3, p.h, p.y, &p.mh, N, p.E, p.V);
    omp_set_num_threads(saved);
    ck_assert_msg(memcmp(z1, z3, S * p.V * sizeof(float)) == 0, "masked_logits: threads matter");
    ck_assert_msg(memcmp(&l1, &l3, sizeof l1) == 0, "loss: threads matter (%.9g vs %.9g)",
                  (double)l1, (double)l3);
    free(z1);
    free(z3);
    free_heads(&p);
}
END_TEST

/* Gather first: the hidden states of unlabelled positions cannot change the MLM loss. Filling
 * them with NaN leaves both variants' loss exactly as it was. */
START_TEST(test_unlabelled_positions_do_not_matter)
{
    Heads p;
    make_heads(&p, 2, 30, 16, 50, 0.2, 88);
    const size_t N = p.B * p.T;
    float before[2], after[2];
    mlm_forward_naive(&before[0], NULL, p.h, p.y, &p.mh, N, p.E, p.V);
    mlm_forward_fast(&before[1], NULL, p.h, p.y, &p.mh, N, p.E, p.V);
    for (size_t n = 0; n < N; n++)
        if (p.y[n] == TFM_IGNORE_INDEX)
            for (size_t e = 0; e < p.E; e++)
                p.h[n * p.E + e] = NAN;
    mlm_forward_naive(&after[0], NULL, p.h, p.y, &p.mh, N, p.E, p.V);
    mlm_forward_fast(&after[1], NULL, p.h, p.y, &p.mh, N, p.E, p.V);
    for (int v = 0; v < 2; v++)
        ck_assert_msg(before[v] == after[v], "variant %d: %.9g became %.9g", v,
                      (double)before[v], (double)after[v]);
    free_heads(&p);
}
END_TEST

/* ---------------------------------------------------------------- numerics */

/* The textbook formula without the max shift: log sum exp(z) - z_y, in float32. */
static float ce_without_max_shift(const float *z, size_t V, size_t y)
{
    float s = 0.0f;
    for (size_t v = 0; v < V; v++)
        s += expf(z[v]);
    return logf(s) - z[y];
}

/* The same in double with the shift: the truth the float32 results are held to. */
static double ce_truth(const float *z, size_t V, size_t y)
{
    double m = -INFINITY, s = 0.0;
    for (size_t v = 0; v < V; v++)
        m = fmax(m, z[v]);
    for (size_t v = 0; v < V; v++)
        s += exp((double)z[v] - m);
    return log(s) - ((double)z[y] - m);
}

/* Logits near 100: float32's exp overflows above 88.72, so the unshifted sum is inf and the loss
 * inf (or NaN); both variants subtract the max and stay within float rounding of the truth. The
 * same logits minus 100 give the same loss (softmax is shift invariant), and there the unshifted
 * formula is fine: the overflow, not the formula, is what breaks it. */
START_TEST(test_logsumexp_does_not_overflow)
{
    const size_t V = 50;
    float z[50], zc[50];
    TuRng rng = {100};
    for (size_t v = 0; v < V; v++) {
        zc[v] = tu_normal(&rng);
        z[v] = 100.0f + zc[v];
    }
    const int64_t y = 7;
    ck_assert(isinf(expf(89.0f)));   /* the premise */
    const float naive_way = ce_without_max_shift(z, V, (size_t)y);
    const double truth = ce_truth(z, V, (size_t)y);
    float l[2];
    cross_entropy_naive(&l[0], NULL, z, &y, 1, V);
    cross_entropy_fast(&l[1], NULL, z, &y, 1, V);
    fprintf(stderr, "logits ~100: without the max shift %g; log-sum-exp naive %.7g, fast %.7g; "
            "float64 truth %.7g\n", (double)naive_way, (double)l[0], (double)l[1], truth);
    ck_assert_msg(!isfinite(naive_way), "exp(100) should overflow float32: got %g",
                  (double)naive_way);
    for (int v = 0; v < 2; v++)
        ck_assert_msg(isfinite(l[v]) && fabs(l[v] - truth) <= 1e-6 * fabs(truth) + 1e-6,
                      "variant %d: %.9g, truth %.9g", v, (double)l[v], truth);
    const float centred = ce_without_max_shift(zc, V, (size_t)y);
    ck_assert_msg(fabs(centred - truth) <= 1e-5, "unshifted, centred: %.9g vs %.9g",
                  (double)centred, truth);
}
END_TEST

/* ---------------------------------------------------------------- properties */

typedef void (*CeFn)(float *, float *, const float *, const int64_t *, size_t, size_t);
static const CeFn CE[2] = {cross_entropy_naive, cross_entropy_fast};

/* Uniform logits: every class has probability 1/V, every loss is log V. */
START_TEST(test_uniform_logits_give_log_v)
{
    const size_t N = 4, V = 30522;
    float *z = tu_malloc(N * V * sizeof *z), l, tok[4];
    for (size_t t = 0; t < N * V; t++)
        z[t] = 3.25f;
    const int64_t y[4] = {0, 101, TFM_IGNORE_INDEX, 30521};
    for (int v = 0; v < 2; v++) {
        CE[v](&l, tok, z, y, N, V);
        ck_assert_msg(fabs(l - log((double)V)) <= 2e-6 * log((double)V), "variant %d: %.9g vs "
                      "log V = %.9g", v, (double)l, log((double)V));
        ck_assert(tok[2] == 0.0f);
    }
    free(z);
}
END_TEST

/* Shift invariance and non-negativity: adding c to a row changes no loss beyond the rounding of
 * the shifted logits themselves (|c| * 2^-24 per logit); every loss is >= 0. */
START_TEST(test_shift_invariance)
{
    const size_t N = 20, V = 100;
    TuRng rng = {7};
    float *z = tu_malloc(N * V * sizeof *z), *zs = tu_malloc(N * V * sizeof *zs);
    tu_fill_normal(z, N * V, &rng);
    int64_t *y = random_labels(N, V, 0.5, &rng);
    y[0] = 3;
    float t0[20], t1[20], l0, l1;
    for (size_t n = 0; n < N; n++)
        for (size_t v = 0; v < V; v++)
            zs[n * V + v] = z[n * V + v] + (float)(n * 50) - 400.0f;
    for (int v = 0; v < 2; v++) {
        CE[v](&l0, t0, z, y, N, V);
        CE[v](&l1, t1, zs, y, N, V);
        for (size_t n = 0; n < N; n++) {
            ck_assert_msg(t0[n] >= 0.0f, "variant %d row %zu: loss %g < 0", v, n, (double)t0[n]);
            ck_assert_msg(fabs(t0[n] - t1[n]) <= 1e-4, "variant %d row %zu: %.7g vs %.7g", v, n,
                          (double)t0[n], (double)t1[n]);
        }
    }
    free(z);
    free(zs);
    free(y);
}
END_TEST

/* All rows ignored: 0/0 = NaN, PyTorch's answer, and token_loss all 0. */
START_TEST(test_all_ignored_is_nan)
{
    float z[6] = {1, 2, 3, 4, 5, 6}, l, tok[2] = {9, 9};
    const int64_t y[2] = {TFM_IGNORE_INDEX, TFM_IGNORE_INDEX};
    for (int v = 0; v < 2; v++) {
        CE[v](&l, tok, z, y, 2, 3);
        ck_assert_msg(isnan(l), "variant %d: %g", v, (double)l);
        ck_assert(tok[0] == 0.0f && tok[1] == 0.0f);
    }
}
END_TEST

/* ---------------------------------------------------------------- masking */

enum { MASK_ID = 103, CLS_ID = 101, SEP_ID = 102, PAD_ID = 0, BERT_V = 30522 };
static const int64_t SPECIAL[3] = {CLS_ID, SEP_ID, PAD_ID};

/* A batch of "sentences": [CLS] words [SEP] words [SEP] [PAD]..., word ids in [1000, V). */
static int64_t *make_batch(size_t N, size_t T, uint64_t seed)
{
    int64_t *ids = tu_malloc(N * sizeof *ids);
    TuRng rng = {seed};
    for (size_t n = 0; n < N; n++) {
        const size_t t = n % T;
        ids[n] = 1000 + (int64_t)(tu_uniform(&rng) * (BERT_V - 1000));
        if (t == 0)
            ids[n] = CLS_ID;
        else if (t == T / 2 || t == T - 4)
            ids[n] = SEP_ID;
        else if (t > T - 4)
            ids[n] = PAD_ID;
    }
    return ids;
}

static MlmMaskConfig bert_config(uint64_t seed)
{
    return (MlmMaskConfig){0.15, 0.8, 0.1, MASK_ID, BERT_V, SPECIAL, 3, seed};
}

/* |k - n p| <= 5 sqrt(n p (1-p)): a binomial count within five standard deviations of its mean.
 * A correct masker fails this with probability below 6e-7 per check. */
static void assert_binomial(const char *what, size_t k, size_t n, double p)
{
    const double mean = (double)n * p, sd = sqrt((double)n * p * (1.0 - p));
    fprintf(stderr, "mask %-26s %8zu of %8zu = %.5f (expected %.5f, 5 sigma = %.5f)\n", what, k,
            n, (double)k / (double)n, p, 5.0 * sd / (double)n);
    ck_assert_msg(fabs((double)k - mean) <= 5.0 * sd, "%s: %zu of %zu, expected %.1f +- %.1f "
                  "(5 sigma)", what, k, n, mean, 5.0 * sd);
}

/* 2M tokens: the proportions of the collator, each within 5 sigma; special tokens never chosen;
 * labels hold the original id exactly where selected. A random id equals [MASK] or the original
 * with probability 1/V each, which the expected shares include. */
START_TEST(test_mask_proportions)
{
    const size_t N = 2000000, T = 128;
    int64_t *ids = make_batch(N, T, 1), *out = tu_malloc(N * sizeof *out);
    int64_t *lab = tu_malloc(N * sizeof *lab);
    const MlmMaskConfig cfg = bert_config(2024);
    mlm_mask(out, lab, ids, &cfg, N);
    /* Violations are counted, not asserted one by one: each passing ck_assert costs a message
     * to Check's parent process, and this loop runs 2M times. */
    size_t eligible = 0, selected = 0, to_mask = 0, to_random = 0, kept = 0;
    size_t special_chosen = 0, unselected_changed = 0, wrong_label = 0, out_of_vocab = 0;
    for (size_t n = 0; n < N; n++) {
        const int special = ids[n] == CLS_ID || ids[n] == SEP_ID || ids[n] == PAD_ID;
        if (special) {
            special_chosen += lab[n] != TFM_IGNORE_INDEX || out[n] != ids[n];
            continue;
        }
        eligible++;
        if (lab[n] == TFM_IGNORE_INDEX) {
            unselected_changed += out[n] != ids[n];
            continue;
        }
        wrong_label += lab[n] != ids[n];
        out_of_vocab += out[n] < 0 || out[n] >= BERT_V;
        selected++;
        to_mask += out[n] == MASK_ID;
        kept += out[n] == ids[n];
        to_random += out[n] != MASK_ID && out[n] != ids[n];
    }
    ck_assert_msg(special_chosen == 0, "%zu special tokens were selected", special_chosen);
    ck_assert_msg(unselected_changed == 0, "%zu unselected tokens changed", unselected_changed);
    ck_assert_msg(wrong_label == 0, "%zu labels differ from the original id", wrong_label);
    ck_assert_msg(out_of_vocab == 0, "%zu ids outside [0, V)", out_of_vocab);
    const double r = 0.1 / BERT_V;   /* a random id that happens to be [MASK], or the original */
    assert_binomial("selected / eligible", selected, eligible, 0.15);
    assert_binomial("[MASK] / selected", to_mask, selected, 0.8 + r);
    assert_binomial("random / selected", to_random, selected, 0.1 - 2 * r);
    assert_binomial("unchanged / selected", kept, selected, 0.1 + r);
    free(ids);
    free(out);
    free(lab);
}
END_TEST

/* The random ids are uniform over [0, V): with every token selected and replaced by a random id,
 * Pearson's chi-square over V = 50 bins (49 degrees of freedom, mean 49, sd sqrt(98) = 9.9)
 * stays below its mean plus 5 sd. */
START_TEST(test_mask_random_ids_uniform)
{
    const size_t N = 100000, V = 50;
    int64_t *ids = tu_malloc(N * sizeof *ids), *out = tu_malloc(N * sizeof *out);
    int64_t *lab = tu_malloc(N * sizeof *lab);
    for (size_t n = 0; n < N; n++)
        ids[n] = 10;
    const MlmMaskConfig cfg = {1.0, 0.0, 1.0, 4, V, NULL, 0, 99};
    mlm_mask(out, lab, ids, &cfg, N);
    double count[50] = {0};
    size_t bad = 0;
    for (size_t n = 0; n < N; n++) {
        bad += !(out[n] >= 0 && out[n] < (int64_t)V && lab[n] == 10);
        if (out[n] >= 0 && out[n] < (int64_t)V)
            count[out[n]] += 1.0;
    }
    ck_assert_msg(bad == 0, "%zu positions unselected or outside [0, V)", bad);
    double chi2 = 0.0;
    const double e = (double)N / (double)V;
    for (size_t v = 0; v < V; v++)
        chi2 += (count[v] - e) * (count[v] - e) / e;
    fprintf(stderr, "mask random ids: chi-square %.1f over 49 degrees of freedom (bound %.1f)\n",
            chi2, 49.0 + 5.0 * sqrt(98.0));
    ck_assert_msg(chi2 <= 49.0 + 5.0 * sqrt(98.0), "chi-square %.1f: not uniform", chi2);
    free(ids);
    free(out);
    free(lab);
}
END_TEST

/* Deterministic per seed; another seed masks differently; in place equals out of place; a batch
 * masked as one piece equals its rows masked at their offsets (draws depend on the position). */
START_TEST(test_mask_deterministic)
{
    const size_t N = 4096, T = 64;
    int64_t *ids = make_batch(N, T, 3);
    int64_t *a = tu_malloc(N * 8), *b = tu_malloc(N * 8), *c = tu_malloc(N * 8);
    int64_t *la = tu_malloc(N * 8), *lb = tu_malloc(N * 8), *lc = tu_malloc(N * 8);
    MlmMaskConfig cfg = bert_config(42);
    mlm_mask(a, la, ids, &cfg, N);
    mlm_mask(b, lb, ids, &cfg, N);
    ck_assert(memcmp(a, b, N * 8) == 0 && memcmp(la, lb, N * 8) == 0);
    memcpy(c, ids, N * 8);
    mlm_mask(c, lc, c, &cfg, N);   /* in place */
    ck_assert(memcmp(a, c, N * 8) == 0 && memcmp(la, lc, N * 8) == 0);
    cfg.seed = 43;
    mlm_mask(b, lb, ids, &cfg, N);
    ck_assert_msg(memcmp(la, lb, N * 8) != 0, "seeds 42 and 43 select the same tokens");
    /* splitmix64's first output for seed 0 (a published test value of the generator), and its
     * stream form (the tests' TuRng) taking the very draws of the direct one. */
    ck_assert_uint_eq(tfm_rng_at(0, 0), 0xe220a8397b1dcdafULL);
    uint64_t state = 42;
    for (uint64_t k = 0; k < 8; k++)
        ck_assert_uint_eq(tfm_rng_next(&state), tfm_rng_at(42, k));
    free(ids);
    free(a);
    free(b);
    free(c);
    free(la);
    free(lb);
    free(lc);
}
END_TEST

/* ---------------------------------------------------------------- bad input */

/* Each bad input is a GoldenFile in memory (TuMemFile), with no case prefix: what `tfm run` would
 * load from a user's file. Both variants must refuse it. */
START_TEST(test_bad_input)
{
    const float z[6] = {0};
    const int64_t y_bad[2] = {1, 3}, y_ok[2] = {1, -100}, y3[3] = {0, 0, 0};
    TuMemFile m;
    tu_mem_init(&m);
    tu_mem_put(&m, "logits", TFM_F32, z, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "labels", TFM_I64, y_bad, 1, (size_t[]){2});
    tu_expect_refused("mlm-loss", &m.gf, "", "labels[1] = 3");     /* class outside [0, V) */
    tu_mem_put(&m, "labels", TFM_I64, y3, 1, (size_t[]){3});
    tu_expect_refused("mlm-loss", &m.gf, "", "without its last dimension");  /* shapes */
    tu_mem_put(&m, "labels", TFM_F32, z, 1, (size_t[]){2});
    tu_expect_refused("mlm-loss", &m.gf, "", "F32, expected I64");  /* wrong dtype */
    tu_mem_init(&m);
    tu_mem_put(&m, "logits", TFM_F32, z, 2, (size_t[]){2, 3});
    tu_expect_refused("mlm-loss", &m.gf, "", "'labels' is missing");

    TuMemFile k;
    tu_mem_init(&k);
    tu_mem_put(&k, "seq_relationship_logits", TFM_F32, z, 2, (size_t[]){2, 3});
    tu_mem_put(&k, "next_sentence_label", TFM_I64, y_ok, 1, (size_t[]){2});
    tu_expect_refused("nsp-loss", &k.gf, "", "[B, 2]");   /* NSP has two classes */
    tu_mem_put(&k, "seq_relationship_logits", TFM_F32, z, 2, (size_t[]){3, 2});
    tu_expect_refused("nsp-loss", &k.gf, "", "without its last dimension");

    int64_t ids[3] = {5, 60, 7};
    const int64_t special[1] = {0}, mask_id = 4, vocab = 50, seed = 1;
    const float p = 0.15f, bad_p = 1.5f;
    TuMemFile q;
    tu_mem_init(&q);
    tu_mem_put(&q, "input_ids", TFM_I64, ids, 1, (size_t[]){3});
    tu_mem_put(&q, "mlm_probability", TFM_F32, &p, 0, NULL);
    tu_mem_put(&q, "special_ids", TFM_I64, special, 1, (size_t[]){1});
    tu_mem_put(&q, "mask_token_id", TFM_I64, &mask_id, 0, NULL);
    tu_mem_put(&q, "vocab_size", TFM_I64, &vocab, 0, NULL);
    tu_mem_put(&q, "seed", TFM_I64, &seed, 0, NULL);
    tu_expect_refused("mlm-mask", &q.gf, "", "input_ids[1] = 60 is outside the vocabulary");
    ids[1] = 6;
    tu_mem_put(&q, "mlm_probability", TFM_F32, &bad_p, 0, NULL);
    tu_expect_refused("mlm-mask", &q.gf, "", "must lie in [0, 1]");
    tu_mem_put(&q, "mlm_probability", TFM_F32, &p, 0, NULL);
    OpOutputs res;
    memset(&res, 0, sizeof res);
    char err[TFM_ERR_LEN];
    ck_assert_msg(tu_run_op("mlm-mask", &res, &q.gf, "", TFM_FAST, err, sizeof err) == 0, "%s", err);
    ck_assert(res.n == 2 && res.tensors[0].dtype == TFM_I64 && res.tensors[1].numel == 3);
    op_outputs_free(&res);
}
END_TEST

/* ---------------------------------------------------------------- suite */

static Suite *pretraining_suite(void)
{
    Suite *s = suite_create(CH);
    TCase *golden = tcase_create("goldens");
    tcase_set_tags(golden, "goldens");    /* make valgrind leaves these to `tfm check` */
    tcase_set_timeout(golden, 60);
    tcase_add_test(golden, test_naive_vs_goldens);
    tcase_add_test(golden, test_fast_vs_goldens);
    tcase_add_test(golden, test_total_loss_goldens);
    suite_add_tcase(s, golden);

    TCase *fast = tcase_create("fast vs naive");
    tcase_set_timeout(fast, 60);
    tcase_add_loop_test(fast, test_ce_fast_vs_naive_random, 0, (int)N_CE);
    tcase_add_loop_test(fast, test_heads_fast_vs_naive_random, 0, (int)N_HEADS);
    tcase_add_test(fast, test_fast_deterministic_across_threads);
    tcase_add_test(fast, test_unlabelled_positions_do_not_matter);
    suite_add_tcase(s, fast);

    TCase *num = tcase_create("numerics and properties");
    tcase_add_test(num, test_logsumexp_does_not_overflow);
    tcase_add_test(num, test_uniform_logits_give_log_v);
    tcase_add_test(num, test_shift_invariance);
    tcase_add_test(num, test_all_ignored_is_nan);
    suite_add_tcase(s, num);

    TCase *mask = tcase_create("masking");
    tcase_set_timeout(mask, 60);
    tcase_add_test(mask, test_mask_proportions);
    tcase_add_test(mask, test_mask_random_ids_uniform);
    tcase_add_test(mask, test_mask_deterministic);
    suite_add_tcase(s, mask);

    TCase *bad = tcase_create("bad input");
    tcase_add_test(bad, test_bad_input);
    suite_add_tcase(s, bad);
    return s;
}

int main(void) { return tu_run(pretraining_suite()); }
