/* test_ops.c — the op table (oracle/ops.h): `tfm run OP` runs exactly OP, parameters from the
 * command line, a golden case's metadata or a 0-d tensor, and a golden checker that compares
 * every output a case holds and refuses every tensor no op explains. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const float ZEROS[64];
static const float ONES[8] = {1, 1, 1, 1, 1, 1, 1, 1};

/* Runs op on m (no case prefix) with the given parameters ("" for none) in both variants; each
 * must fail with a message containing `needle`. */
static void expect_op_error(const char *op, const TuMemFile *m, const char *params,
                            const char *needle) {
    for (int v = TFM_NAIVE; v <= TFM_FAST; v++) {
        TfmParamArgs args = {0};
        char err[TFM_ERR_LEN] = "";
        ck_assert_msg(tfm_param_args_parse(&args, params, err, sizeof err) == 0, "%s", err);
        OpOutputs out;
        const int rc = tfm_op_run(&out, tfm_op_find(op), &m->gf, "", &args, (TfmVariant)v, 0, err,
                                  sizeof err);
        ck_assert_msg(rc == -1, "%s %s accepted bad input (expected '%s')", op,
                      tfm_variant_name((TfmVariant)v), needle);
        ck_assert_msg(strstr(err, needle) != NULL, "error '%s' does not mention '%s'", err, needle);
        ck_assert_uint_eq(out.n, 0);
    }
}

/* The two ways `tfm run` used to run another op than the one asked for. */
/* softmax's dim counts from the end when negative, as in PyTorch, and is checked against the
 * input's rank (the table's range [-8, 7] alone cannot know it). */
START_TEST(test_softmax_dim) {
    static const float X[6] = {0, 1, 2, 3, 4, 5};
    TuMemFile m;
    tu_mem_init(&m);
    tu_mem_put(&m, "input", TFM_F32, X, 2, (size_t[]){2, 3});
    expect_op_error("softmax", &m, "dim=2", "dim is 2; for a 2-d input it must lie in [-2, 1]");
    expect_op_error("log-softmax", &m, "dim=-3", "dim is -3");
    for (int dim = -2; dim <= 1; dim++) {
        TfmParamArgs args = {0};
        char err[TFM_ERR_LEN], p[16];
        snprintf(p, sizeof p, "dim=%d", dim);
        ck_assert_int_eq(tfm_param_args_add(&args, p, err, sizeof err), 0);
        OpOutputs out;
        ck_assert_msg(tfm_op_run(&out, tfm_op_find("softmax"), &m.gf, "", &args, TFM_NAIVE, 0, err,
                                 sizeof err) == 0, "%s", err);
        const float *y = tensor_f32(&out.tensors[0]);
        /* rows along dim 1 (or -1) sum to 1 over 3 elements, along dim 0 over 2 */
        const int along_rows = dim == 1 || dim == -1;
        const double s = along_rows ? (double)y[0] + y[1] + y[2] : (double)y[0] + y[3];
        ck_assert_msg(fabs(s - 1.0) < 1e-6, "dim %d: sum %.9g", dim, s);
        ck_assert_msg(along_rows ? y[2] > y[1] : y[3] > y[0], "dim %d: not along the right axis", dim);
        op_outputs_free(&out);
    }
}
END_TEST

START_TEST(test_run_runs_exactly_the_op) {
    TuMemFile m;
    tu_mem_init(&m);   /* matmul's a and b beside linear's x and w: once ran matmul(a, b) */
    tu_mem_put(&m, "a", TFM_F32, ZEROS, 2, (size_t[]){1, 2});
    tu_mem_put(&m, "b", TFM_F32, ZEROS, 2, (size_t[]){2, 1});
    tu_mem_put(&m, "x", TFM_F32, ZEROS, 2, (size_t[]){1, 2});
    tu_mem_put(&m, "w", TFM_F32, ZEROS, 2, (size_t[]){3, 2});
    expect_op_error("linear", &m, "", "tensor 'a' is not an input of op 'linear' (it reads x, w, bias)");

    tu_mem_init(&m);   /* add-norm's s beside layernorm's inputs: once returned LN(x + s) */
    tu_mem_put(&m, "x", TFM_F32, ZEROS, 2, (size_t[]){2, 4});
    tu_mem_put(&m, "gamma", TFM_F32, ONES, 1, (size_t[]){4});
    tu_mem_put(&m, "beta", TFM_F32, ZEROS, 1, (size_t[]){4});
    tu_mem_put(&m, "s", TFM_F32, ZEROS, 2, (size_t[]){2, 4});
    expect_op_error("layernorm", &m, "", "tensor 's' is not an input of op 'layernorm'");

    tu_mem_init(&m);   /* a required input missing names it and what the op reads */
    tu_mem_put(&m, "x", TFM_F32, ZEROS, 2, (size_t[]){1, 2});
    expect_op_error("linear", &m, "", "tensor 'w' is missing (op 'linear' reads x, w, bias");
}
END_TEST

/* LayerNorm of the rows [0, 2] with gamma 1, beta 0: +-1 / sqrt(1 + eps). */
START_TEST(test_params_from_every_source) {
    static const float X[2] = {0, 2};
    static const double EPS = 0.25;
    TuMemFile m;
    tu_mem_init(&m);
    tu_mem_put(&m, "x", TFM_F32, X, 2, (size_t[]){1, 2});
    const float want_default = (float)(1.0 / sqrt(1.0 + 1e-5)), want_quarter = (float)(1.0 / sqrt(1.25));
    for (int src = 0; src < 3; src++) {   /* default, --param, 0-d tensor */
        TfmParamArgs args = {0};
        char err[TFM_ERR_LEN];
        if (src == 1) ck_assert_int_eq(tfm_param_args_add(&args, "eps=0.25", err, sizeof err), 0);
        if (src == 2) tu_mem_put(&m, "eps", TFM_F64, &EPS, 0, NULL);
        OpOutputs out;
        ck_assert_msg(tfm_op_run(&out, tfm_op_find("layernorm"), &m.gf, "", &args, TFM_NAIVE, 0,
                                 err, sizeof err) == 0, "%s", err);
        const float got = tensor_f32(&out.tensors[0])[1], want = src ? want_quarter : want_default;
        ck_assert_msg(fabsf(got - want) <= 1e-6f, "source %d: out[1] = %.9g, want %.9g", src,
                      (double)got, (double)want);
        op_outputs_free(&out);
    }
    /* Both the tensor (still in m) and --param: an error, not a silent choice. */
    expect_op_error("layernorm", &m, "eps=0.5", "parameter eps is given twice");
    tu_mem_init(&m);
    tu_mem_put(&m, "x", TFM_F32, X, 2, (size_t[]){1, 2});
    expect_op_error("layernorm", &m, "epsilon=0.5", "op 'layernorm' has no parameter 'epsilon' (it takes eps");
    expect_op_error("layernorm", &m, "eps=tiny", "eps=tiny is not a number");
    expect_op_error("layernorm", &m, "eps=2", "eps is 2; it must lie in [0, 1]");
    tu_mem_put(&m, "w", TFM_F32, ZEROS, 2, (size_t[]){3, 2});
    tu_mem_put(&m, "x", TFM_F32, ZEROS, 2, (size_t[]){1, 2});
    expect_op_error("linear", &m, "eps=0.5", "op 'linear' has no parameters");
    /* A word parameter takes one of its words. */
    tu_mem_init(&m);
    tu_mem_put(&m, "input", TFM_F32, ZEROS, 2, (size_t[]){2, 3});
    tu_mem_put(&m, "target", TFM_F32, ZEROS, 2, (size_t[]){2, 3});
    expect_op_error("cross-entropy", &m, "reduction=avg", "reduction=avg is not one of mean|sum|none");
    expect_op_error("softmax", &m, "dim=2", "tensor 'target' is not an input of op 'softmax'");
    /* An int parameter takes whole numbers only; a required one must be given. */
    tu_mem_init(&m);
    const int64_t pos[3] = {0, 1, 2};
    tu_mem_put(&m, "positions", TFM_I64, pos, 1, (size_t[]){3});
    expect_op_error("pe", &m, "d_model=4.5", "d_model=4.5 is not a whole number");
    expect_op_error("pe", &m, "", "parameter d_model is missing");
    TfmParamArgs args = {0};
    char err[TFM_ERR_LEN];
    ck_assert_int_eq(tfm_param_args_add(&args, "d_model", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "not NAME=VALUE"), "%s", err);
    ck_assert_int_eq(tfm_param_args_parse(&args, "d_model=4 d_model=6", err, sizeof err), -1);
    ck_assert_msg(strstr(err, "given twice"), "%s", err);
}
END_TEST

/* A golden case in memory: linear's x [1, 2], w [1, 2] -> out [1, 1] = 0, with its op. */
static void linear_case(TuMemFile *m) {
    tu_mem_init(m);
    tu_mem_put(m, "c/x", TFM_F32, ZEROS, 2, (size_t[]){1, 2});
    tu_mem_put(m, "c/w", TFM_F32, ZEROS, 2, (size_t[]){1, 2});
    tu_mem_put(m, "c/out", TFM_F32, ZEROS, 2, (size_t[]){1, 1});
    tu_mem_meta(m, "c/op", "linear");
}

static void expect_case_error(const TuMemFile *m, const char *needle) {
    CaseOutcome oc;
    char err[TFM_ERR_LEN] = "";
    ck_assert_msg(case_run(&m->gf, "c", TFM_NAIVE, &oc, err, sizeof err) == -1,
                  "the case was accepted (expected an error about '%s')", needle);
    ck_assert_msg(strstr(err, needle) != NULL, "error '%s' does not mention '%s'", err, needle);
}

START_TEST(test_checker_compares_every_output) {
    TuMemFile m;
    CaseOutcome oc;
    char err[TFM_ERR_LEN];
    linear_case(&m);
    ck_assert_msg(case_run(&m.gf, "c", TFM_NAIVE, &oc, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(oc.n, 1);
    ck_assert(oc.outputs[0].vs_want.pass && !oc.outputs[0].has_truth);

    linear_case(&m);   /* an output planted in the golden that linear does not produce */
    tu_mem_put(&m, "c/probs", TFM_F32, ZEROS, 2, (size_t[]){1, 1});
    expect_case_error(&m, "tensor 'c/probs' is not an input of op 'linear'");

    linear_case(&m);   /* a truth whose output is not there */
    tu_mem_put(&m, "c/norm_f64", TFM_F64, ZEROS, 2, (size_t[]){1, 1});
    expect_case_error(&m, "'c/norm_f64' is not an input of op 'linear'");

    tu_mem_init(&m);   /* an output the op produces that the golden lacks */
    tu_mem_put(&m, "c/x", TFM_F32, ZEROS, 2, (size_t[]){1, 2});
    tu_mem_put(&m, "c/w", TFM_F32, ZEROS, 2, (size_t[]){1, 2});
    tu_mem_meta(&m, "c/op", "linear");
    expect_case_error(&m, "op 'linear' produces output 'out' but case 'c' lacks it");

    /* An output of the op that these parameters do not produce: mha without weights. */
    static const float Q[4] = {1, 2, 3, 4};
    tu_mem_init(&m);
    tu_mem_put(&m, "c/query", TFM_F32, Q, 3, (size_t[]){1, 2, 2});
    tu_mem_put(&m, "c/in_proj_weight", TFM_F32, ZEROS, 2, (size_t[]){6, 2});
    tu_mem_put(&m, "c/out_proj_weight", TFM_F32, ZEROS, 2, (size_t[]){2, 2});
    tu_mem_put(&m, "c/attn_output", TFM_F32, ZEROS, 3, (size_t[]){1, 2, 2});
    tu_mem_put(&m, "c/attn_weights", TFM_F32, ZEROS, 3, (size_t[]){1, 2, 2});
    tu_mem_meta(&m, "c/op", "mha");
    tu_mem_meta(&m, "c/params", "num_heads=1 need_weights=0");
    expect_case_error(&m, "case 'c' holds output 'attn_weights', which op 'mha' did not produce");
    tu_mem_meta(&m, "c/params", "num_heads=1");
    ck_assert_msg(case_run(&m.gf, "c", TFM_FAST, &oc, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(oc.n, 2);

    linear_case(&m);   /* no op, an unknown op, a bad 'against' */
    tu_mem_meta(&m, "c/op", "linear2");
    expect_case_error(&m, "names op 'linear2', which is not in the op table");
    linear_case(&m);
    tu_mem_meta(&m, "c/against", "numpy");
    expect_case_error(&m, "against is 'numpy'");
    tu_mem_init(&m);
    tu_mem_put(&m, "c/x", TFM_F32, ZEROS, 2, (size_t[]){1, 2});
    expect_case_error(&m, "case 'c' names no op");

    linear_case(&m);   /* held to the truth: the truth is then required, and decides */
    tu_mem_meta(&m, "c/against", "truth");
    expect_case_error(&m, "is held to the truth but has no 'c/out_f64'");
    static const double ONE = 1.0;
    tu_mem_put(&m, "c/out_f64", TFM_F64, &ONE, 2, (size_t[]){1, 1});
    ck_assert_msg(case_run(&m.gf, "c", TFM_NAIVE, &oc, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(!oc.outputs[0].vs_want.pass, "0 passed against a truth of 1");
}
END_TEST

/* The oracle table compares exactly the outputs the golden files hold: counted here
 * independently, tensor by tensor, against what tfm_check_chapter compared. */
START_TEST(test_every_golden_output_is_compared) {
    size_t n;
    const TfmChapter *chs = tfm_chapters(&n);
    for (size_t i = 0; i < n; i++) {
        GoldenFile gf;
        const TfmChapter *ch;
        tu_load_chapter(&gf, &ch, chs[i].name);
        size_t outputs = 0, pinned = 0, explained = 0;
        char **cases;
        const size_t nc = golden_cases(&gf, &cases);
        for (size_t c = 0; c < nc; c++) {
            char key[256];
            snprintf(key, sizeof key, "%s/op", cases[c]);
            const char *opname = golden_meta(&gf, key);
            ck_assert_msg(opname, "%s: case %s names no op", gf.path, cases[c]);
            const TfmOp *op = strcmp(opname, "pin") ? tfm_op_find(opname) : NULL;
            const size_t len = strlen(cases[c]);
            for (size_t t = 0; t < gf.n; t++) {
                const char *name = gf.names[t];
                if (strncmp(name, cases[c], len) != 0 || name[len] != '/') continue;
                name += len + 1;
                explained++;
                if (!op) { pinned++; continue; }
                outputs += tfm_op_has_output(op, name);
            }
        }
        golden_free_cases(cases, nc);
        ck_assert_uint_eq(explained, gf.n);   /* every tensor belongs to a case */
        CheckTotals tot = {0};
        tfm_check_chapter(ch, 1u << TFM_NAIVE, NULL, &tot);
        ck_assert_msg(tot.errors == 0, "%s: %zu cases did not run", ch->name, tot.errors);
        ck_assert_msg(tot.outputs == outputs, "%s: the checker compared %zu outputs, the golden "
                      "holds %zu", ch->name, tot.outputs, outputs);
        fprintf(stderr, "%s: %zu cases, %zu outputs compared, %zu pinned tensors in %zu pin "
                "cases\n", ch->name, tot.cases, tot.outputs, pinned, tot.pin_cases);
        golden_free(&gf);
    }
}
END_TEST

/* Every entry of the table is complete and self-consistent. */
START_TEST(test_table_is_well_formed) {
    size_t n;
    const TfmOp *ops = tfm_ops(&n);
    ck_assert_uint_gt(n, 10);
    for (size_t i = 0; i < n; i++) {
        const TfmOp *op = &ops[i];
        ck_assert_msg(op->bind && op->naive && op->fast && op->naive_name && op->fast_name,
                      "op '%s' lacks a bind or kernel", op->name);
        ck_assert_msg(op->summary && op->atol > 0 && op->rtol > 0, "op '%s'", op->name);
        ck_assert_msg(tfm_op_find(op->name) == op, "op name '%s' is not unique", op->name);
        char sc[8];
        snprintf(sc, sizeof sc, "%d", op->chapter);
        ck_assert_msg(tfm_chapter_find(sc), "op '%s': no chapter %d", op->name, op->chapter);
        ck_assert_uint_ge(tfm_op_n_outputs(op), 1);
        for (size_t k = 0; k < tfm_op_n_inputs(op); k++) {
            const TfmInputSpec *s = &op->inputs[k];
            ck_assert_msg(s->dtypes && s->min_rank >= 0 && s->min_rank <= s->max_rank &&
                          s->max_rank <= TFM_MAX_DIMS && s->shape, "%s/%s", op->name, s->name);
            for (size_t q = 0; q < k; q++)
                ck_assert_msg(strcmp(op->inputs[q].name, s->name), "%s/%s twice", op->name, s->name);
        }
        for (size_t k = 0; k < tfm_op_n_params(op); k++) {
            const TfmParamSpec *p = &op->params[k];
            ck_assert_msg(p->help, "%s: parameter %s has no help", op->name, p->name);
            if (p->type == TFM_PARAM_WORD) {
                ck_assert_msg(p->words && p->def && strstr(p->words, p->def), "%s/%s", op->name, p->name);
            } else if (p->def) {
                const double d = strtod(p->def, NULL);
                ck_assert_msg(d >= p->min && d <= p->max, "%s: default %s=%s is out of its range",
                              op->name, p->name, p->def);
            }
        }
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("ops");
    TCase *tc = tcase_create("op table");
    tcase_add_test(tc, test_run_runs_exactly_the_op);
    tcase_add_test(tc, test_softmax_dim);
    tcase_add_test(tc, test_params_from_every_source);
    tcase_add_test(tc, test_checker_compares_every_output);
    tcase_add_test(tc, test_table_is_well_formed);
    suite_add_tcase(s, tc);
    TCase *walk = tcase_create("goldens");
    tcase_set_tags(walk, "goldens");    /* make valgrind leaves it to `tfm check` */
    tcase_set_timeout(walk, 600);       /* every golden case once, naive */
    tcase_add_test(walk, test_every_golden_output_is_compared);
    suite_add_tcase(s, walk);
    return tu_run(s);
}
