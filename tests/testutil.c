/* testutil.c — shared by every Check suite (see testutil.h). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void tu_load_chapter(GoldenFile *gf, const TfmChapter **ch, const char *chapter_key) {
    *ch = tfm_chapter_find(chapter_key);
    ck_assert_msg(*ch != NULL, "no chapter '%s' in the chapter table", chapter_key);
    char path[1024], err[TFM_ERR_LEN];
    tfm_golden_path(path, sizeof path, *ch);
    if (golden_load(gf, path, err, sizeof err) != 0) ck_abort_msg("%s", err);
}

void tu_check_all_cases(const char *chapter_key, TfmVariant variant) {
    GoldenFile gf;
    const TfmChapter *ch;
    tu_load_chapter(&gf, &ch, chapter_key);
    char **cases;
    size_t n = golden_cases(&gf, &cases);
    int failed = 0;
    ck_assert_msg(n > 0, "%s holds no cases", gf.path);
    for (size_t i = 0; i < n; i++) {
        CaseOutcome oc = {0};
        char err[TFM_ERR_LEN];
        if (case_run(ch, &gf, cases[i], variant, &oc, err, sizeof err) != 0) {
            fprintf(stderr, "%s %s: ERROR %s\n", cases[i], tfm_variant_name(variant), err);
            failed++;
            continue;
        }
        for (size_t j = 0; j < oc.n; j++) {
            char label[256];
            snprintf(label, sizeof label, "%s %s/%s", tfm_variant_name(variant), cases[i], oc.outputs[j].output);
            if (!oc.outputs[j].vs_torch.pass) {
                compare_print(stderr, label, &oc.outputs[j].vs_torch, oc.outputs[j].want, ch->atol, ch->rtol);
                failed++;
            }
        }
    }
    golden_free_cases(cases, n);
    golden_free(&gf);
    ck_assert_msg(failed == 0, "%d output(s) of chapter %s (%s) failed against the goldens; see above",
                  failed, chapter_key, tfm_variant_name(variant));
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

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double tu_uniform(TuRng *r) { return (double)(splitmix64(&r->s) >> 11) * 0x1.0p-53; }

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
