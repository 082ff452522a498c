/* cases.h — how a golden case becomes a check: run one variant on the case's inputs, compare
 * every output with PyTorch's float32 result and with the float64 truth.
 *
 * Golden naming (every chapter): tensors are named "<case>/<tensor>". Inputs and parameters carry
 * the op's own names (q, k, v, x, w, ...); integer parameters are 0-d I64 tensors (is_causal);
 * each output <o> is stored as "<case>/<o>" (PyTorch in float32) and "<case>/<o>_f64" (PyTorch in
 * float64 from the same float32-valued inputs: the truth).
 *
 * Each chapter provides one runner (chapters/NN-name/NAME_case.c) and one line in the chapter table
 * (oracle/cases.c); `tfm check` and the Check suites both go through it, so what the table prints
 * is exactly what the tests assert.
 */
#ifndef TFM_CASES_H
#define TFM_CASES_H

#include "compare.h"
#include "golden.h"

typedef enum { TFM_NAIVE = 0, TFM_FAST = 1 } TfmVariant;
const char *tfm_variant_name(TfmVariant v);

#define TFM_MAX_OUTPUTS 4

typedef struct {
    char output[48];              /* output name within the case, e.g. "out", "probs" */
    const Tensor *want;           /* PyTorch float32 result (its shape names the worst index) */
    CompareResult vs_torch;       /* ours vs PyTorch float32, with the chapter's tolerance */
    int has_truth;                /* 1 if "<case>/<output>_f64" exists */
    CompareResult vs_truth;       /* ours vs float64 truth */
    CompareResult torch_vs_truth; /* PyTorch float32 vs float64 truth: the bar we are held to */
} OutputCheck;

typedef struct {
    size_t n;
    OutputCheck outputs[TFM_MAX_OUTPUTS];
} CaseOutcome;

/* What an op produced: named float32 tensors with their shapes. */
typedef struct {
    size_t n;
    char names[TFM_MAX_OUTPUTS][48];
    Tensor tensors[TFM_MAX_OUTPUTS];
} OpOutputs;

/* An op runner: reads its inputs from `in` under "<prefix>/<name>" ("<name>" alone when prefix
 * is ""), runs `variant`, and fills `out`. Returns 0, or -1 with a message in err (a missing
 * input, a wrong dtype or shape): an error is a failure, never a skip. Each chapter provides one
 * (chapters/NN-name/NAME_case.c); `tfm check`, `tfm run` and the Check suites all go through it,
 * so what the table prints is exactly what the tests assert. */
typedef int (*OpRunner)(OpOutputs *out, const GoldenFile *in, const char *prefix,
                        TfmVariant variant, char *err, size_t errlen);

/* Used by runners: a new zero-filled float32 output called `name`; returns its data or NULL. */
float *op_output(OpOutputs *o, const char *name, int ndim, const size_t *shape, char *err,
                 size_t errlen);
void op_outputs_free(OpOutputs *o);

typedef struct {
    int number;          /* 0, 1, ... */
    const char *name;    /* "01-attention": golden file oracle/golden/<name>.safetensors.gz */
    OpRunner run;
    double atol, rtol;   /* from tolerances.h */
} TfmChapter;

/* Runs one golden case with one variant and compares every output with "<case>/<output>"
 * (PyTorch float32) and, when present, "<case>/<output>_f64" (the truth). The outcome points
 * into gf. Returns 0, or -1 with a message in err. */
int case_run(const TfmChapter *ch, const GoldenFile *gf, const char *name, TfmVariant variant,
             CaseOutcome *oc, char *err, size_t errlen);

/* The ops `tfm run` knows: a name, the chapter whose runner computes it, the input that selects
 * it, and one help line naming its tensors. */
typedef struct {
    const char *name;
    int chapter;
    const char *key_input;
    const char *help;
} TfmOp;
const TfmOp *tfm_ops(size_t *n);
/* What `tfm run OP` does once IN is loaded: requires the op's key input to be present (so that
 * `run matmul` on a file of linear inputs says so instead of running the other op), then runs
 * the runner of the op's chapter. The fuzzer (tests/fuzz/fuzz_run.c) calls exactly this.
 * Returns 0, or -1 with a message in err and nothing left in `out`. */
int tfm_run_op(OpOutputs *out, const TfmOp *op, const GoldenFile *in, const char *prefix,
               TfmVariant variant, char *err, size_t errlen);

/* Size guard. Runners read files that users bring, and a zero in a shape makes an empty tensor
 * whatever its other dimensions are: a q of shape [2^40, 1, 1, 0] holds no bytes, yet an op
 * would loop 2^40 times over it, and matmul of a [10^6, 0] by a [0, 10^6] asks for a 4 TB
 * output. So each input a runner takes (case_input, case_optional) and all the outputs it makes
 * together (op_output) may span at most tfm_max_elements() elements, a zero dimension counted
 * as 1; past that they fail with a message naming the shape. The default, 2^30, is 4 GiB of
 * float32: no larger than the biggest file golden_load reads, so it refuses no tensor a file
 * could actually hold. The fuzzers lower it to keep each run small. */
#define TFM_MAX_ELEMENTS ((size_t)1 << 30)
size_t tfm_max_elements(void);
size_t tfm_set_max_elements(size_t n);   /* returns the previous limit */

/* The chapter table. */
const TfmChapter *tfm_chapters(size_t *n);
/* Chapter by number or by name ("1", "01", "01-attention", "attention"); NULL if none. */
const TfmChapter *tfm_chapter_find(const char *key);
/* "<root>/oracle/golden/<name>.safetensors.gz", root from $TFM_ROOT or ".". */
void tfm_golden_path(char *buf, size_t buflen, const TfmChapter *ch);

/* Used by runners: the tensor "<case>/<tensor>" with the given dtype and rank (ndim < 0: any),
 * or NULL with a message in err. */
const Tensor *case_input(const GoldenFile *gf, const char *name, const char *tensor, TfmDType dt,
                         int ndim, char *err, size_t errlen);
/* Same, but a missing tensor is not an error: returns NULL with err empty. */
const Tensor *case_optional(const GoldenFile *gf, const char *name, const char *tensor,
                            TfmDType dt, int ndim, char *err, size_t errlen);

/* The runners, one per chapter. */
int matmul_run(OpOutputs *out, const GoldenFile *in, const char *prefix, TfmVariant variant,
               char *err, size_t errlen);
int attention_run(OpOutputs *out, const GoldenFile *in, const char *prefix, TfmVariant variant,
                  char *err, size_t errlen);
int multihead_run(OpOutputs *out, const GoldenFile *in, const char *prefix, TfmVariant variant,
                  char *err, size_t errlen);
int positional_run(OpOutputs *out, const GoldenFile *in, const char *prefix, TfmVariant variant,
                   char *err, size_t errlen);
int pretraining_run(OpOutputs *out, const GoldenFile *in, const char *prefix, TfmVariant variant,
                    char *err, size_t errlen);
int layernorm_run(OpOutputs *out, const GoldenFile *in, const char *prefix, TfmVariant variant,
                  char *err, size_t errlen);

#endif
