/* testutil.h — what every Check suite shares: loading a chapter's goldens, asserting closeness
 * with the one compare routine, seeded random inputs, and running a suite to an exit code. */
#ifndef TFM_TESTUTIL_H
#define TFM_TESTUTIL_H

#include <check.h>
#include <stdint.h>
#include "cases.h"

/* Loads oracle/golden/<chapter>.safetensors.gz (root from $TFM_ROOT); aborts the test on error. */
void tu_load_chapter(GoldenFile *gf, const TfmChapter **ch, const char *chapter_key);

/* Runs one variant on every case of the chapter's golden file; each output must pass against
 * PyTorch float32 with the chapter's tolerance. Prints the oracle line of each output; on a
 * failure prints the worst element and fails the test. */
void tu_check_all_cases(const char *chapter_key, TfmVariant variant);

/* Asserts got[0..n) is close to want (F32 or F64 tensor); prints the report and fails otherwise. */
void tu_assert_close(const char *label, const float *got, size_t n, const Tensor *want,
                     double atol, double rtol);
/* Same with a plain float32 buffer as the expectation (e.g. fast vs naive); shape for messages. */
void tu_assert_close_f32(const char *label, const float *got, const float *want, int ndim,
                         const size_t *shape, double atol, double rtol);

/* Seeded generator (splitmix64 + Box–Muller): deterministic N(0,1) samples, and uniform in [0,1). */
typedef struct { uint64_t s; } TuRng;
double tu_uniform(TuRng *r);
float tu_normal(TuRng *r);
void tu_fill_normal(float *x, size_t n, TuRng *r);
/* malloc that aborts the test on failure; free with free(). */
void *tu_malloc(size_t bytes);

/* Runs the suite (CK_NORMAL output), returns EXIT_SUCCESS only if every test passed. */
int tu_run(Suite *s);

#endif
