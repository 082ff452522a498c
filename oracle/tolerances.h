/* tolerances.h — the tolerance of every chapter, in one place.
 *
 * A tfm result passes against a golden when |got - want| <= atol + rtol*|want| everywhere.
 * The numbers are as tight as the measured errors allow (book.md, "How tfm checks itself"):
 * float32 kernels that sum in a different order than PyTorch land within a few ulps of it,
 * i.e. around 1e-6 relative; the margin above the measured worst case is stated next to each.
 * Never loosen one to make a test pass: find the bug.
 */
#ifndef TFM_TOLERANCES_H
#define TFM_TOLERANCES_H

typedef struct {
    int chapter;
    const char *name;  /* the golden file's stem: oracle/golden/<name>.safetensors.gz */
    double atol;
    double rtol;
} ChapterTolerance;

/* chapter 00: dot products of length <= 2048 with inputs ~N(0,1): outputs ~30, float32
 *   reordering error measured below 4e-6 absolute; attention: probabilities in [0,1] and
 *   outputs ~1, measured error below 5e-7. */
static const ChapterTolerance TFM_TOLERANCES[] = {
    {0, "00-tensors", 2e-5, 1e-5},
    {1, "01-attention", 2e-6, 1e-5},
};
#define TFM_N_CHAPTERS (sizeof TFM_TOLERANCES / sizeof TFM_TOLERANCES[0])

#endif
