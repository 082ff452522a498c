/* testutil.c — shared by every Check suite (see testutil.h). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

void tu_load_chapter(GoldenFile *gf, const TfmChapter **ch, const char *chapter_key) {
    *ch = tfm_chapter_find(chapter_key);
    ck_assert_msg(*ch != NULL, "no chapter '%s' in the chapter table", chapter_key);
    char path[1024], err[TFM_ERR_LEN];
    tfm_golden_path(path, sizeof path, *ch);
    if (golden_load(gf, path, err, sizeof err) != 0) ck_abort_msg("%s", err);
}

const Tensor *tu_case_tensor(const GoldenFile *gf, const char *case_name, const char *name,
                             TfmDType dt) {
    char full[256], err[TFM_ERR_LEN];
    snprintf(full, sizeof full, "%s/%s", case_name, name);
    const Tensor *t = golden_require(gf, full, dt, -1, err, sizeof err);
    if (t == NULL) ck_abort_msg("%s", err);
    return t;
}

double tu_case_param(const GoldenFile *gf, const char *case_name, const char *name) {
    char key[256], err[TFM_ERR_LEN];
    snprintf(key, sizeof key, "%s/params", case_name);
    const char *params = golden_meta(gf, key);
    ck_assert_msg(params != NULL, "%s: case %s has no parameters", gf->path, case_name);
    TfmParamArgs args = {0};
    ck_assert_msg(tfm_param_args_parse(&args, params, err, sizeof err) == 0, "%s", err);
    for (size_t i = 0; i < args.n; i++)
        if (strcmp(args.names[i], name) == 0) return strtod(args.values[i], NULL);
    ck_abort_msg("%s: case %s has no parameter %s (it has '%s')", gf->path, case_name, name, params);
    return NAN;
}

void tu_check_all_cases(const char *chapter_key, TfmVariant variant) {
    const TfmChapter *ch = tfm_chapter_find(chapter_key);
    ck_assert_msg(ch != NULL, "no chapter '%s' in the chapter table", chapter_key);
    CheckTotals tot = {0};
    tfm_check_chapter(ch, 1u << variant, stdout, &tot);
    ck_assert_msg(tot.cases > 0, "chapter %s holds no cases", chapter_key);
    ck_assert_msg(tot.failed == 0 && tot.errors == 0,
                  "chapter %s (%s): %zu output(s) failed against the goldens and %zu case(s) "
                  "did not run; see above", chapter_key, tfm_variant_name(variant), tot.failed,
                  tot.errors);
}

int tu_run_op(const char *op_name, OpOutputs *out, const GoldenFile *gf, const char *prefix,
              TfmVariant variant, char *err, size_t errlen) {
    const TfmOp *op = tfm_op_find(op_name);
    ck_assert_msg(op != NULL, "no op '%s' in the op table", op_name);
    TfmParamArgs args = {0};
    char key[256];
    snprintf(key, sizeof key, "%s/params", prefix);
    const char *params = prefix[0] ? golden_meta(gf, key) : NULL;
    if (params && tfm_param_args_parse(&args, params, err, errlen) != 0) return -1;
    snprintf(key, sizeof key, "%s/config", prefix);
    const TfmModelSource model = {gf, prefix, golden_meta(gf, key)};   /* a case's own model */
    return tfm_op_run_model(out, op, gf, prefix, &args, op->model && model.config_json ? &model : NULL,
                            variant, 1, err, errlen);
}

void tu_assert_close(const char *label, const float *got, size_t n, const Tensor *want,
                     double atol, double rtol) {
    CompareResult r = compare_f32(got, n, want, atol, rtol);
    if (!r.pass) compare_print(stderr, label, &r, want, atol, rtol);
    ck_assert_msg(r.pass, "%s: %zu of %zu elements out of tolerance (max abs %.3g)", label,
                  r.n_bad, r.n, r.max_abs);
}

void tu_assert_close_f32(const char *label, const float *got, const float *want, int ndim,
                         const size_t *shape, double atol, double rtol) {
    Tensor w = tensor_view(TFM_F32, (void *)(uintptr_t)want, ndim, shape);
    tu_assert_close(label, got, w.numel, &w, atol, rtol);
}

void tu_mem_init(TuMemFile *m) {
    memset(m, 0, sizeof *m);
    m->gf.path = (char *)"(in memory)";   /* names the file in the runner's messages */
    m->gf.names = m->name_ptrs;
    m->gf.tensors = m->tensors;
    m->gf.meta_keys = m->meta_key_ptrs;
    m->gf.meta_values = m->meta_value_ptrs;
}

void tu_mem_meta(TuMemFile *m, const char *key, const char *value) {
    size_t i = 0;
    while (i < m->gf.n_meta && strcmp(m->meta_keys[i], key) != 0) i++;
    if (i == m->gf.n_meta) {
        ck_assert_msg(i < TU_MEM_MAX_META, "TuMemFile's metadata is full (%d)", TU_MEM_MAX_META);
        m->gf.n_meta++;
    }
    ck_assert_msg(strlen(key) < sizeof m->meta_keys[i] && strlen(value) < sizeof m->meta_values[i],
                  "metadata '%s' is too long", key);
    snprintf(m->meta_keys[i], sizeof m->meta_keys[i], "%s", key);
    snprintf(m->meta_values[i], sizeof m->meta_values[i], "%s", value);
    m->meta_key_ptrs[i] = m->meta_keys[i];
    m->meta_value_ptrs[i] = m->meta_values[i];
}

void tu_mem_put(TuMemFile *m, const char *name, TfmDType dt, const void *data, int ndim,
                const size_t *shape) {
    size_t i = 0;
    while (i < m->gf.n && strcmp(m->names[i], name) != 0) i++;
    if (i == m->gf.n) {
        ck_assert_msg(i < TU_MEM_MAX, "TuMemFile is full (%d tensors)", TU_MEM_MAX);
        ck_assert_msg(strlen(name) < sizeof m->names[i], "tensor name '%s' is too long", name);
        snprintf(m->names[i], sizeof m->names[i], "%s", name);
        m->name_ptrs[i] = m->names[i];
        m->gf.n++;
    }
    /* A Tensor's data is not const; a runner only reads its inputs. */
    m->tensors[i] = tensor_view(dt, (void *)(uintptr_t)data, ndim, shape);
}

void tu_mem_from_case(TuMemFile *m, const GoldenFile *src, const char *case_name,
                      const char *prefix, const char *skip) {
    tu_mem_init(m);
    const size_t len = strlen(case_name);
    for (size_t i = 0; i < src->n; i++) {
        const char *full = src->names[i];
        if (strncmp(full, case_name, len) != 0 || full[len] != '/') continue;
        const char *name = full + len + 1;
        if (skip && strcmp(name, skip) == 0) continue;
        char renamed[256];   /* too long for names[]: tu_mem_put says so */
        snprintf(renamed, sizeof renamed, "%s%s%s", prefix, prefix[0] ? "/" : "", name);
        const Tensor *t = &src->tensors[i];
        tu_mem_put(m, renamed, t->dtype, t->data, t->ndim, t->shape);
    }
    /* The case's metadata (op, params, against) follows it under the new prefix. */
    for (size_t i = 0; i < src->n_meta; i++) {
        const char *key = src->meta_keys[i];
        if (strncmp(key, case_name, len) != 0 || key[len] != '/') continue;
        char renamed[256];
        snprintf(renamed, sizeof renamed, "%s%s%s", prefix, prefix[0] ? "/" : "", key + len + 1);
        tu_mem_meta(m, renamed, src->meta_values[i]);
    }
}

void tu_expect_refused(const char *op, const GoldenFile *gf, const char *prefix, const char *needle) {
    for (int v = TFM_NAIVE; v <= TFM_FAST; v++) {
        OpOutputs out;
        memset(&out, 0, sizeof out);
        char err[TFM_ERR_LEN] = "";
        const int rc = tu_run_op(op, &out, gf, prefix, (TfmVariant)v, err, sizeof err);
        op_outputs_free(&out);
        ck_assert_msg(rc == -1, "%s %s: bad input accepted (expected an error about '%s')",
                      op, tfm_variant_name((TfmVariant)v), needle);
        ck_assert_msg(strstr(err, needle) != NULL, "%s: error '%s' does not mention '%s'",
                      tfm_variant_name((TfmVariant)v), err, needle);
    }
}

double tu_uniform(TuRng *r) { return tfm_rng_uniform_next(&r->s); }

float tu_normal(TuRng *r) {
    double u1 = tu_uniform(r), u2 = tu_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void tu_fill_normal(float *x, size_t n, TuRng *r) {
    for (size_t i = 0; i < n; i++) x[i] = tu_normal(r);
}

void *tu_malloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_msg(p != NULL, "out of memory (%zu bytes)", bytes);
    return p;
}

int tu_run(Suite *s) {
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
