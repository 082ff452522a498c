/* compare.h — the one comparison of tfm.
 *
 * An element passes when |got - want| <= atol + rtol * |want| (numpy's allclose rule), and a NaN
 * or an infinity must stand in the same place, with the same sign, in both. The report gives
 * the max absolute and relative errors, the relative Frobenius error ||got - want|| / ||want||,
 * and the worst element: the one furthest outside its tolerance (or, when all pass, the one with
 * the largest absolute error), as a multi-index with got and want.
 */
#ifndef TFM_COMPARE_H
#define TFM_COMPARE_H

#include <stdio.h>
#include "tensor.h"

typedef struct {
    size_t n;            /* elements compared */
    size_t n_bad;        /* elements outside tolerance or with mismatched NaN/inf */
    double max_abs;      /* max |got - want| over finite pairs */
    double max_rel;      /* max |got - want| / |want| over finite pairs with want != 0 */
    double rel_fro;      /* ||got - want||_2 / ||want||_2 over finite pairs (abs norm if want is 0) */
    size_t worst;        /* flat index of the worst element */
    double worst_got, worst_want;
    int pass;            /* n_bad == 0 */
} CompareResult;

/* Compares n float32 values against `want` (F32 or F64; n must equal want->numel, else a
 * failing result with n_bad = n is returned and the mismatch is reported by compare_print). */
CompareResult compare_f32(const float *got, size_t n, const Tensor *want, double atol, double rtol);

/* One line: "label: PASS max_abs ... max_rel ... rel_fro ..." and, on failure, a second line
 * with the worst element's multi-index (shape from `want`), got, expected, abs and rel error. */
void compare_print(FILE *f, const char *label, const CompareResult *r, const Tensor *want,
                   double atol, double rtol);

#endif
