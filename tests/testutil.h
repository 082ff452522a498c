/* testutil.h — what every Check suite shares: loading a chapter's goldens, asserting closeness
 * with the one compare routine, in-memory inputs for a runner's refusals, seeded random inputs,
 * and running a suite to an exit code. */
#ifndef TFM_TESTUTIL_H
#define TFM_TESTUTIL_H

#include <check.h>
#include <stdint.h>
#include "cases.h"

/* Loads oracle/golden/<chapter>.safetensors.gz (root from $TFM_ROOT); aborts the test on error. */
void tu_load_chapter(GoldenFile *gf, const TfmChapter **ch, const char *chapter_key);
/* The golden tensor "<case_name>/<name>", of dtype dt; aborts the test with the reader's message
 * if it is missing or of another dtype. */
const Tensor *tu_case_tensor(const GoldenFile *gf, const char *case_name, const char *name,
                             TfmDType dt);

/* The value of parameter `name` in the case's "<case>/params" metadata; aborts the test if the
 * case does not give it. */
double tu_case_param(const GoldenFile *gf, const char *case_name, const char *name);

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

/* ---- a GoldenFile in memory, to feed a runner hand-made (often broken) input
 *
 * Every tensor is a view: of the caller's memory (tu_mem_put) or of a loaded golden file's
 * (tu_mem_from_case); nothing is copied, owned or freed. The struct points into itself, so
 * initialize it in place (tu_mem_init or tu_mem_from_case) and never copy it. */
#define TU_MEM_MAX 128
#define TU_MEM_MAX_META 8
typedef struct {
    GoldenFile gf;                 /* what the op reads; gf.names, gf.tensors point below */
    char names[TU_MEM_MAX][64];    /* [gf.n] */
    char *name_ptrs[TU_MEM_MAX];   /* [gf.n] -> names */
    Tensor tensors[TU_MEM_MAX];    /* [gf.n] views */
    char meta_keys[TU_MEM_MAX_META][64];      /* [gf.n_meta] */
    char meta_values[TU_MEM_MAX_META][1024];  /* [gf.n_meta] (a model config fits) */
    char *meta_key_ptrs[TU_MEM_MAX_META];     /* [gf.n_meta] -> meta_keys */
    char *meta_value_ptrs[TU_MEM_MAX_META];   /* [gf.n_meta] -> meta_values */
} TuMemFile;

/* Empties m. */
void tu_mem_init(TuMemFile *m);
/* Sets the tensor `name` (the full name, e.g. "c/x") to a view of data with dtype dt and shape
 * [ndim] (NULL for a scalar, ndim 0), replacing a tensor of that name or adding one. The view is
 * only read, by the runner; data must outlive its use. The shape can be a compound literal:
 * tu_mem_put(&m, "c/x", TFM_F32, buf, 2, (size_t[]){2, 3}). */
void tu_mem_put(TuMemFile *m, const char *name, TfmDType dt, const void *data, int ndim,
                const size_t *shape);
/* Sets metadata `key` (e.g. "c/params") to value, replacing or adding it. */
void tu_mem_meta(TuMemFile *m, const char *key, const char *value);
/* Empties m, then views every tensor "<case_name>/x" of src as "<prefix>/x", except the one called
 * `skip` (NULL: none). The case's metadata ("<case>/op", "<case>/params", ...) is copied under the new prefix too.
 * src must stay loaded while m is used. */
void tu_mem_from_case(TuMemFile *m, const GoldenFile *src, const char *case_name,
                      const char *prefix, const char *skip);
/* Runs op `op_name` (ops.h) on the case `prefix` of gf (prefix "": the file's plain names) with
 * the parameters of its "<prefix>/params" metadata, tensors named after its outputs passed over
 * (a golden case holds them); an op that reads a model finds it in the case ("<prefix>/config"
 * and its weights). Returns tfm_op_run_model's result. */
int tu_run_op(const char *op_name, OpOutputs *out, const GoldenFile *gf, const char *prefix,
              TfmVariant variant, char *err, size_t errlen);
/* Runs both variants of op `op` on the case `prefix` of gf; each must refuse (return -1) with an
 * error message containing `needle`. */
void tu_expect_refused(const char *op, const GoldenFile *gf, const char *prefix, const char *needle);

/* ---- random inputs
 *
 * A stream of tfm's one generator (rng.h), seeded as TuRng r = {seed}: its k-th draw is
 * tfm_rng_at(seed, k). Uniform in [0, 1) from one draw, N(0, 1) from two (Box–Muller). */
typedef struct { uint64_t s; } TuRng;   /* the generator's state: the seed, to begin with */
double tu_uniform(TuRng *r);
float tu_normal(TuRng *r);
void tu_fill_normal(float *x,          /* [n] */
                    size_t n, TuRng *r);

/* malloc that aborts the test on failure; free with free(). */
void *tu_malloc(size_t bytes);

/* Runs the suite (CK_NORMAL output), returns EXIT_SUCCESS only if every test passed. */
int tu_run(Suite *s);

#endif
