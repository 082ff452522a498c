/* compare.c — the one comparison of tfm (see compare.h for the rule). */
#include "compare.h"

#include <math.h>
#include <string.h>

static double want_at(const Tensor *t, size_t i) {
    return t->dtype == TFM_F64 ? tensor_f64(t)[i] : (double)tensor_f32(t)[i];
}

/* Non-finite values must agree exactly: NaN with NaN, +inf with +inf, -inf with -inf. */
static int nonfinite_match(double g, double w) {
    if (isnan(g) || isnan(w)) return isnan(g) && isnan(w);
    return g == w;
}

CompareResult compare_f32(const float *got, size_t n, const Tensor *want, double atol, double rtol) {
    CompareResult r;
    memset(&r, 0, sizeof r);
    r.n = n;
    if (n != want->numel || (want->dtype != TFM_F32 && want->dtype != TFM_F64)) {
        r.n_bad = n ? n : 1;
        r.worst_got = NAN;
        r.worst_want = NAN;
        r.max_abs = r.max_rel = r.rel_fro = INFINITY;
        return r;
    }
    /* The worst element: the failing one furthest outside its tolerance; when none fails, the
     * one with the largest absolute error. */
    double diff2 = 0, want2 = 0, worst_fail = -1, worst_pass = -1;
    size_t i_fail = 0, i_pass = 0;
    for (size_t i = 0; i < n; i++) {
        double g = (double)got[i], w = want_at(want, i);
        if (!isfinite(g) || !isfinite(w)) {
            if (nonfinite_match(g, w)) continue;
            r.n_bad++;
            if (worst_fail < INFINITY) { worst_fail = INFINITY; i_fail = i; }
            continue;
        }
        double d = fabs(g - w);
        diff2 += d * d;
        want2 += w * w;
        if (d > r.max_abs) r.max_abs = d;
        if (w != 0 && d / fabs(w) > r.max_rel) r.max_rel = d / fabs(w);
        double excess = d - (atol + rtol * fabs(w));
        if (excess > 0) {
            r.n_bad++;
            if (excess > worst_fail) { worst_fail = excess; i_fail = i; }
        } else if (d > worst_pass) {
            worst_pass = d;
            i_pass = i;
        }
    }
    r.worst = r.n_bad ? i_fail : i_pass;
    if (n) {
        r.worst_got = (double)got[r.worst];
        r.worst_want = want_at(want, r.worst);
    }
    r.rel_fro = want2 > 0 ? sqrt(diff2 / want2) : sqrt(diff2);
    r.pass = r.n_bad == 0;
    return r;
}

void compare_print(FILE *f, const char *label, const CompareResult *r, const Tensor *want,
                   double atol, double rtol) {
    if (r->n != want->numel) {
        char s[96];
        tfm_shape_str(s, sizeof s, want->ndim, want->shape);
        fprintf(f, "%s: FAIL size mismatch: got %zu elements, expected %zu (shape %s)\n", label,
                r->n, want->numel, s);
        return;
    }
    fprintf(f, "%s: %s max_abs %.3g max_rel %.3g rel_fro %.3g (atol %.1g rtol %.1g)\n", label,
            r->pass ? "PASS" : "FAIL", r->max_abs, r->max_rel, r->rel_fro, atol, rtol);
    if (!r->pass) {
        char idx[96];
        tfm_index_str(idx, sizeof idx, want->ndim, want->shape, r->worst);
        double d = fabs(r->worst_got - r->worst_want);
        fprintf(f, "  %zu of %zu elements out of tolerance; worst at %s: got %.9g expected %.9g "
                "abs err %.3g rel err %.3g\n", r->n_bad, r->n, idx, r->worst_got, r->worst_want,
                d, r->worst_want != 0 ? d / fabs(r->worst_want) : d);
    }
}
