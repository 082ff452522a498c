/* test_determinism.c — the same inputs give the same bits.
 *
 *   naive: bitwise identical run to run (one thread, a fixed order: anything else is a bug such
 *          as reading uninitialised memory);
 *   fast:  bitwise identical run to run for a fixed thread count, the contract of every fast
 *          file (CONTRIBUTING.md); and, across 1, 2 and 3 threads, identical too where the
 *          chapter's fast file promises it (each element computed by one thread in a fixed
 *          order). Where a chapter does not promise it, the difference is measured and printed.
 *
 * Every chapter of the chapter table is covered through its runner on every golden case, so a
 * new chapter is tested as soon as it is registered. One line in DETERMINISM below adds what a
 * chapter's goldens lack: whether its fast file promises thread-count invariance, and inputs
 * large enough that the fast variant really splits its work across threads (golden cases are
 * mostly too small for that).
 *
 * The printed report ("threads 1 vs 2 vs 3: ...") is what book.md states about thread counts.
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* ---- larger inputs, built in memory and read through the golden reader like any file ---- */

#define MAX_INPUTS 16

typedef struct {
    size_t n;
    char names[MAX_INPUTS][64];   /* "<case>/<tensor>" */
    Tensor t[MAX_INPUTS];
    size_t n_cases;
    char op_keys[MAX_INPUTS][64];   /* [n_cases] "<case>/op", as a golden's metadata */
    char op_values[MAX_INPUTS][32]; /* [n_cases] the op */
} Inputs;

/* Names the op of a case, as a golden case's metadata does. */
static void op(Inputs *in, const char *case_name, const char *op_name) {
    ck_assert_uint_lt(in->n_cases, MAX_INPUTS);
    snprintf(in->op_keys[in->n_cases], sizeof in->op_keys[0], "%s/op", case_name);
    snprintf(in->op_values[in->n_cases], sizeof in->op_values[0], "%s", op_name);
    in->n_cases++;
}

static void *add(Inputs *in, const char *name, TfmDType dt, int ndim, const size_t *shape) {
    char err[TFM_ERR_LEN];
    ck_assert_uint_lt(in->n, MAX_INPUTS);
    ck_assert_msg(tensor_alloc(&in->t[in->n], dt, ndim, shape, err, sizeof err) == 0, "%s", err);
    snprintf(in->names[in->n], sizeof in->names[0], "%s", name);
    return in->t[in->n++].data;
}

static void add_normal(Inputs *in, const char *name, int ndim, const size_t *shape, TuRng *r) {
    float *x = add(in, name, TFM_F32, ndim, shape);
    int overflow;
    tu_fill_normal(x, tfm_shape_numel(ndim, shape, &overflow), r);
}

/* Writes the inputs to a temporary file and loads it: the runners read a GoldenFile. */
static void inputs_to_file(Inputs *in, GoldenFile *gf) {
    char path[] = "/tmp/tfm-determinism-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    const char *names[MAX_INPUTS], *keys[MAX_INPUTS], *values[MAX_INPUTS];
    for (size_t i = 0; i < in->n; i++) names[i] = in->names[i];
    for (size_t i = 0; i < in->n_cases; i++) keys[i] = in->op_keys[i], values[i] = in->op_values[i];
    char err[TFM_ERR_LEN];
    int rc = golden_save(path, in->n, names, in->t, in->n_cases, keys, values, err, sizeof err);
    for (size_t i = 0; i < in->n; i++) tensor_free(&in->t[i]);
    in->n = in->n_cases = 0;
    ck_assert_msg(rc == 0, "%s", err);
    rc = golden_load(gf, path, err, sizeof err);
    unlink(path);
    ck_assert_msg(rc == 0, "%s", err);
}

/* Chapter 00: the blocked path (M >= DIRECT_M) and the direct one (few rows), each with enough
 * work (> WORK_PER_THREAD multiply-adds) to run on several threads; odd sizes so that thread
 * boundaries fall inside blocks. */
static void larger_00(Inputs *in, TuRng *r) {
    op(in, "big_matmul", "matmul");
    op(in, "big_linear", "linear");
    op(in, "few_rows_linear", "linear");
    add_normal(in, "big_matmul/a", 2, (size_t[]){203, 517}, r);
    add_normal(in, "big_matmul/b", 2, (size_t[]){517, 301}, r);
    add_normal(in, "big_linear/x", 2, (size_t[]){131, 383}, r);
    add_normal(in, "big_linear/w", 2, (size_t[]){259, 383}, r);
    add_normal(in, "big_linear/bias", 1, (size_t[]){259}, r);
    add_normal(in, "few_rows_linear/x", 2, (size_t[]){3, 997}, r);
    add_normal(in, "few_rows_linear/w", 2, (size_t[]){2011, 997}, r);
}

/* Chapter 01: more (batch, head, query block) tasks than threads, an odd number of them, with
 * and without the causal mask (whose tasks differ in length). */
static void larger_01(Inputs *in, TuRng *r) {
    op(in, "big", "attention");
    op(in, "big_causal", "attention");
    add_normal(in, "big/q", 4, (size_t[]){2, 3, 157, 64}, r);
    add_normal(in, "big/k", 4, (size_t[]){2, 3, 171, 64}, r);
    add_normal(in, "big/v", 4, (size_t[]){2, 3, 171, 40}, r);
    add_normal(in, "big_causal/q", 4, (size_t[]){1, 5, 133, 32}, r);
    add_normal(in, "big_causal/k", 4, (size_t[]){1, 5, 133, 32}, r);
    add_normal(in, "big_causal/v", 4, (size_t[]){1, 5, 133, 32}, r);
    *(int64_t *)add(in, "big_causal/is_causal", TFM_I64, 0, NULL) = 1;
}

static void add_ids(Inputs *in, const char *name, int ndim, const size_t *shape, int64_t lo,
                    int64_t hi, TuRng *r) {
    int64_t *x = add(in, name, TFM_I64, ndim, shape);
    int overflow;
    for (size_t i = 0; i < tfm_shape_numel(ndim, shape, &overflow); i++)
        x[i] = lo + (int64_t)(tu_uniform(r) * (double)(hi - lo));   /* in [lo, hi) */
}

static void add_scalar_i64(Inputs *in, const char *name, int64_t v) {
    *(int64_t *)add(in, name, TFM_I64, 0, NULL) = v;
}

/* Chapter 02: nn.MultiheadAttention with and without the attention weights (two fast paths). */
static void larger_02(Inputs *in, TuRng *r) {
    static const char *const c[2] = {"big_mha", "big_mha_stream"};
    for (int k = 0; k < 2; k++) {
        char n[64];
        op(in, c[k], "mha");
#define NAME(t) (snprintf(n, sizeof n, "%s/%s", c[k], t), n)
        add_normal(in, NAME("query"), 3, (size_t[]){2, 67, 96}, r);
        add_normal(in, NAME("in_proj_weight"), 2, (size_t[]){288, 96}, r);
        add_normal(in, NAME("in_proj_bias"), 1, (size_t[]){288}, r);
        add_normal(in, NAME("out_proj_weight"), 2, (size_t[]){96, 96}, r);
        add_normal(in, NAME("out_proj_bias"), 1, (size_t[]){96}, r);
        add_scalar_i64(in, NAME("num_heads"), 4);
        add_scalar_i64(in, NAME("need_weights"), 1 - k);
#undef NAME
    }
}

/* Chapter 03: a PE table and BERT's embedding sum, both split over threads by rows. */
static void larger_03(Inputs *in, TuRng *r) {
    op(in, "big_pe", "pe");
    op(in, "big_emb", "embeddings");
    add_ids(in, "big_pe/positions", 1, (size_t[]){300}, 0, 5000, r);
    add_scalar_i64(in, "big_pe/d_model", 128);
    add_ids(in, "big_emb/input_ids", 2, (size_t[]){4, 100}, 0, 500, r);
    add_ids(in, "big_emb/token_type_ids", 2, (size_t[]){4, 100}, 0, 2, r);
    add_normal(in, "big_emb/word_emb", 2, (size_t[]){500, 96}, r);
    add_normal(in, "big_emb/pos_emb", 2, (size_t[]){128, 96}, r);
    add_normal(in, "big_emb/type_emb", 2, (size_t[]){2, 96}, r);
}

/* Chapter 04: LayerNorm, Add & Norm and the pre-LN block, each above PAR_MIN (2^15) elements. */
static void larger_04(Inputs *in, TuRng *r) {
    op(in, "big_ln", "layernorm");
    op(in, "big_add_norm", "add-norm");
    op(in, "big_pre_norm", "pre-norm");
    add_normal(in, "big_ln/x", 2, (size_t[]){301, 257}, r);
    add_normal(in, "big_ln/gamma", 1, (size_t[]){257}, r);
    add_normal(in, "big_ln/beta", 1, (size_t[]){257}, r);
    add_normal(in, "big_add_norm/x", 3, (size_t[]){3, 131, 96}, r);
    add_normal(in, "big_add_norm/s", 3, (size_t[]){3, 131, 96}, r);
    add_normal(in, "big_add_norm/gamma", 1, (size_t[]){96}, r);
    add_normal(in, "big_pre_norm/x", 2, (size_t[]){353, 96}, r);
    add_normal(in, "big_pre_norm/w", 2, (size_t[]){96, 96}, r);
    add_normal(in, "big_pre_norm/gamma", 1, (size_t[]){96}, r);
}

/* Chapter 05: the MLM loss over many rows, some ignored; the NSP loss; MLM masking (seeded). */
static void larger_05(Inputs *in, TuRng *r) {
    op(in, "big_mlm_loss", "mlm-loss");
    op(in, "big_nsp", "nsp-loss");
    op(in, "big_mask", "mlm-mask");
    add_normal(in, "big_mlm_loss/logits", 3, (size_t[]){4, 50, 1000}, r);
    int64_t *y = add(in, "big_mlm_loss/labels", TFM_I64, 2, (size_t[]){4, 50});
    for (size_t i = 0; i < 200; i++)
        y[i] = i % 7 == 3 ? -100 : (int64_t)(tu_uniform(r) * 1000.0);
    add_normal(in, "big_nsp/seq_relationship_logits", 2, (size_t[]){97, 2}, r);
    add_ids(in, "big_nsp/next_sentence_label", 1, (size_t[]){97}, 0, 2, r);
    add_ids(in, "big_mask/input_ids", 2, (size_t[]){8, 128}, 104, 1000, r);
    *(float *)add(in, "big_mask/mlm_probability", TFM_F32, 0, NULL) = 0.15f;
    int64_t *sp = add(in, "big_mask/special_ids", TFM_I64, 1, (size_t[]){3});
    sp[0] = 0, sp[1] = 101, sp[2] = 102;
    add_scalar_i64(in, "big_mask/mask_token_id", 103);
    add_scalar_i64(in, "big_mask/vocab_size", 1000);
    add_scalar_i64(in, "big_mask/seed", 3);
}

/* One line per chapter whose fast file promises more than the contract, or whose goldens are
 * too small to run several threads. Chapters not listed are still tested on their goldens. */
static const struct {
    int chapter;
    int thread_invariant;               /* fast file: same bits for any thread count */
    void (*larger)(Inputs *, TuRng *);  /* extra inputs, or NULL */
} DETERMINISM[] = {
    {0, 1, larger_00},   /* matmul_fast.c, optimization 4 */
    {1, 1, larger_01},   /* attention_fast.c, "Determinism" */
    {2, 1, larger_02},   /* multihead_fast.c, "Determinism" (chapters 00 and 01 inside) */
    {3, 1, larger_03},   /* positional_fast.c, O4 */
    {4, 1, larger_04},   /* layernorm_fast.c, "Determinism" */
    {5, 1, larger_05},   /* pretraining_fast.c, F5 */
};

/* ---- running and comparing ------------------------------------------------------------- */

static const int THREADS[] = {1, 2, 3};   /* 3 on 2 cores: uneven splits, oversubscribed */

typedef struct {
    const TfmChapter *ch;
    int thread_invariant;
    GoldenFile files[2];   /* the goldens, then the larger inputs (n == 0 if none) */
} Subject;

static void run(const Subject *s, const GoldenFile *gf, const char *c, TfmVariant v, int threads,
                OpOutputs *out) {
    char err[TFM_ERR_LEN];
    memset(out, 0, sizeof *out);
    omp_set_num_threads(threads);
    char key[128];
    snprintf(key, sizeof key, "%s/op", c);
    const char *op_name = golden_meta(gf, key);
    ck_assert_msg(op_name != NULL, "%s case %s names no op", s->ch->name, c);
    if (strcmp(op_name, "pin") == 0) return;   /* PyTorch's values only: nothing of tfm's runs */
    int rc = tu_run_op(op_name, out, gf, c, v, err, sizeof err);
    ck_assert_msg(rc == 0, "%s case %s (%s): %s", s->ch->name, c, tfm_variant_name(v), err);
}

/* The largest difference between two results, as an absolute value and in units in the last
 * place (the distance between the float32 bit patterns, sign-corrected); NaN vs NaN is equal. */
typedef struct { double max_abs; uint64_t max_ulps; size_t n_diff; } Diff;

static int64_t ordered(float f) {
    int32_t i;
    memcpy(&i, &f, sizeof i);
    return i < 0 ? (int64_t)INT32_MIN - i : i;
}

static Diff diff(const OpOutputs *a, const OpOutputs *b) {
    Diff d = {0, 0, 0};
    ck_assert_uint_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        ck_assert_uint_eq(a->tensors[i].numel, b->tensors[i].numel);
        ck_assert_int_eq(a->tensors[i].dtype, b->tensors[i].dtype);
        if (a->tensors[i].dtype != TFM_F32) {   /* integer outputs (token ids): equal or not */
            const size_t es = tfm_dtype_size(a->tensors[i].dtype);
            const unsigned char *x = a->tensors[i].data, *y = b->tensors[i].data;
            for (size_t k = 0; k < a->tensors[i].numel; k++)
                if (memcmp(x + k * es, y + k * es, es) != 0) {
                    d.n_diff++;
                    d.max_abs = INFINITY;
                }
            continue;
        }
        const float *x = tensor_f32(&a->tensors[i]), *y = tensor_f32(&b->tensors[i]);
        for (size_t k = 0; k < a->tensors[i].numel; k++) {
            if (memcmp(&x[k], &y[k], sizeof x[k]) == 0 || (isnan(x[k]) && isnan(y[k]))) continue;
            d.n_diff++;
            double ad = fabs((double)x[k] - (double)y[k]);
            if (!(ad <= d.max_abs)) d.max_abs = ad;   /* NaN vs number counts as infinite */
            int64_t u = ordered(x[k]) - ordered(y[k]);
            uint64_t ulps = (uint64_t)(u < 0 ? -u : u);
            if (ulps > d.max_ulps) d.max_ulps = ulps;
        }
    }
    return d;
}

static size_t subjects(Subject **out) {
    size_t n;
    const TfmChapter *chs = tfm_chapters(&n);
    Subject *s = tu_malloc(n * sizeof *s);
    for (size_t i = 0; i < n; i++) {
        memset(&s[i], 0, sizeof s[i]);
        const TfmChapter *ch;
        tu_load_chapter(&s[i].files[0], &ch, chs[i].name);
        s[i].ch = ch;
        for (size_t j = 0; j < sizeof DETERMINISM / sizeof DETERMINISM[0]; j++) {
            if (DETERMINISM[j].chapter != ch->number) continue;
            s[i].thread_invariant = DETERMINISM[j].thread_invariant;
            if (DETERMINISM[j].larger) {
                Inputs in = {0};
                TuRng r = {0x5eed0000u + (uint64_t)ch->number};
                DETERMINISM[j].larger(&in, &r);
                inputs_to_file(&in, &s[i].files[1]);
            }
        }
    }
    *out = s;
    return n;
}

static void subjects_free(Subject *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        golden_free(&s[i].files[0]);
        golden_free(&s[i].files[1]);
    }
    free(s);
}

/* Calls fn on every case of every chapter (goldens and larger inputs). */
static int for_each_case(void (*fn)(const Subject *, const GoldenFile *, const char *, void *),
                         void *ctx) {
    Subject *s;
    size_t n = subjects(&s), count = 0;
    for (size_t i = 0; i < n; i++)
        for (int f = 0; f < 2; f++) {
            char **cases;
            size_t nc = golden_cases(&s[i].files[f], &cases);
            for (size_t c = 0; c < nc; c++, count++) fn(&s[i], &s[i].files[f], cases[c], ctx);
            golden_free_cases(cases, nc);
        }
    subjects_free(s, n);
    return (int)count;
}

/* ---- the tests --------------------------------------------------------------------------- */

static void naive_twice(const Subject *s, const GoldenFile *gf, const char *c, void *ctx) {
    (void)ctx;
    OpOutputs a, b;
    run(s, gf, c, TFM_NAIVE, 1, &a);
    run(s, gf, c, TFM_NAIVE, 1, &b);
    Diff d = diff(&a, &b);
    ck_assert_msg(d.n_diff == 0, "%s case %s: naive differs between two runs in %zu elements "
                  "(max %.3g, %llu ulps)", s->ch->name, c, d.n_diff, d.max_abs,
                  (unsigned long long)d.max_ulps);
    op_outputs_free(&a);
    op_outputs_free(&b);
}

START_TEST(test_naive_run_to_run) {
    ck_assert_int_gt(for_each_case(naive_twice, NULL), 0);
}
END_TEST

static void fast_twice(const Subject *s, const GoldenFile *gf, const char *c, void *ctx) {
    (void)ctx;
    for (size_t t = 0; t < sizeof THREADS / sizeof THREADS[0]; t++) {
        OpOutputs a, b;
        run(s, gf, c, TFM_FAST, THREADS[t], &a);
        run(s, gf, c, TFM_FAST, THREADS[t], &b);
        Diff d = diff(&a, &b);
        ck_assert_msg(d.n_diff == 0, "%s case %s: fast with %d threads differs between two runs "
                      "in %zu elements (max %.3g, %llu ulps)", s->ch->name, c, THREADS[t],
                      d.n_diff, d.max_abs, (unsigned long long)d.max_ulps);
        op_outputs_free(&a);
        op_outputs_free(&b);
    }
}

START_TEST(test_fast_run_to_run) {
    ck_assert_int_gt(for_each_case(fast_twice, NULL), 0);
}
END_TEST

/* Per chapter: the largest difference between thread counts over all its cases. */
typedef struct { const TfmChapter *ch; int invariant; Diff worst; size_t cases; } ThreadReport;

static void fast_threads(const Subject *s, const GoldenFile *gf, const char *c, void *ctx) {
    ThreadReport *rep = ctx;
    while (rep->ch && rep->ch != s->ch) rep++;
    rep->ch = s->ch;
    rep->invariant = s->thread_invariant;
    rep->cases++;
    OpOutputs base;
    run(s, gf, c, TFM_FAST, THREADS[0], &base);
    for (size_t t = 1; t < sizeof THREADS / sizeof THREADS[0]; t++) {
        OpOutputs o;
        run(s, gf, c, TFM_FAST, THREADS[t], &o);
        Diff d = diff(&base, &o);
        op_outputs_free(&o);
        if (d.n_diff > 0 && s->thread_invariant)
            ck_abort_msg("%s case %s: fast with %d threads differs from 1 thread in %zu elements "
                         "(max %.3g, %llu ulps), though %s promises the same bits for any "
                         "thread count", s->ch->name, c, THREADS[t], d.n_diff, d.max_abs,
                         (unsigned long long)d.max_ulps, s->ch->name);
        if (!(d.max_abs <= rep->worst.max_abs)) rep->worst.max_abs = d.max_abs;
        if (d.max_ulps > rep->worst.max_ulps) rep->worst.max_ulps = d.max_ulps;
        rep->worst.n_diff += d.n_diff;
    }
    op_outputs_free(&base);
}

START_TEST(test_fast_thread_counts) {
    size_t n;
    tfm_chapters(&n);
    ThreadReport *rep = calloc(n + 1, sizeof *rep);   /* + 1: a zeroed end marker */
    ck_assert_ptr_nonnull(rep);
    for_each_case(fast_threads, rep);
    for (size_t i = 0; i < n && rep[i].ch; i++) {
        if (rep[i].worst.n_diff == 0)
            printf("determinism: %-16s fast, threads 1 vs 2 vs 3: bitwise identical on %zu cases%s\n",
                   rep[i].ch->name, rep[i].cases, rep[i].invariant ? " (promised, asserted)" : "");
        else
            printf("determinism: %-16s fast, threads 1 vs 2 vs 3: %zu elements differ over %zu "
                   "cases, max %.3g absolute, %llu ulps\n", rep[i].ch->name, rep[i].worst.n_diff,
                   rep[i].cases, rep[i].worst.max_abs, (unsigned long long)rep[i].worst.max_ulps);
    }
    free(rep);
}
END_TEST

int main(void) {
    Suite *s = suite_create("determinism");
    TCase *tc = tcase_create("same inputs, same bits");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_naive_run_to_run);
    tcase_add_test(tc, test_fast_run_to_run);
    tcase_add_test(tc, test_fast_thread_counts);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
