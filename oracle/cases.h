/* cases.h — how a golden case becomes a check, and the chapter table.
 *
 * A golden file (oracle/golden/NN-name.safetensors.gz) holds cases. Tensors are named
 * "<case>/<tensor>": the inputs under the op's own names (q, k, v, x, w, ...), and each output
 * <o> twice, "<case>/<o>" (PyTorch in float32) and "<case>/<o>_f64" (PyTorch in float64 from
 * the same float32-valued inputs: the truth). The file's metadata says, for each case:
 *
 *   "<case>/op"       the op that computes it (ops.h), or "pin": PyTorch values kept for
 *                     tests that pin PyTorch's own behaviour, which no tfm op computes
 *   "<case>/params"   its parameters, "NAME=VALUE ..." (absent: the op's defaults)
 *   "<case>/against"  "truth": tfm is held to the float64 truth, not to PyTorch's float32
 *                     (where PyTorch's float32 is known to be far from it)
 *
 * case_run runs that op on the case and compares EVERY output: an output the op produces that
 * the golden lacks, a golden output the op does not produce, or any tensor of the case that is
 * neither an input, a parameter nor an output, is an error naming it. `tfm check` and the Check
 * suites both go through case_run, so what the oracle table prints is what the tests assert.
 */
#ifndef TFM_CASES_H
#define TFM_CASES_H

#include "compare.h"
#include "golden.h"
#include "ops.h"

typedef struct {
    char output[TFM_MAX_NAME];    /* output name within the case, e.g. "out", "probs" */
    const Tensor *want;           /* what tfm is held to: PyTorch float32, or the truth */
    CompareResult vs_want;        /* ours vs want, with the op's tolerance: PASS or FAIL */
    int has_truth;                /* 1 if "<case>/<output>_f64" exists */
    CompareResult vs_truth;       /* ours vs float64 truth */
    CompareResult torch_vs_truth; /* PyTorch float32 vs float64 truth: the bar we are held to */
} OutputCheck;

typedef struct {
    const TfmOp *op;              /* NULL for a pin case */
    int against_truth;            /* 1: "<case>/against" = "truth" */
    size_t n_pinned;              /* a pin case: its tensors */
    size_t n;                     /* outputs compared */
    OutputCheck outputs[TFM_MAX_OUTPUTS];
} CaseOutcome;

/* Runs golden case `name` with one variant and compares every output (see above). The outcome
 * points into gf. Returns 0 (a pin case: 0 with oc->op NULL), or -1 with a message in err. */
int case_run(const GoldenFile *gf, const char *name, TfmVariant variant, CaseOutcome *oc,
             char *err, size_t errlen);

/* What one golden file's check came to (tfm check prints it; a test holds it). */
typedef struct {
    size_t cases, pin_cases, errors;   /* errors: cases that did not run */
    size_t outputs, failed;            /* outputs compared, of which outside tolerance */
} CheckTotals;

/* The chapter table. */
typedef struct {
    int number;          /* 0, 1, ... */
    const char *name;    /* "01-attention": golden file oracle/golden/<name>.safetensors.gz */
    double atol, rtol;   /* the chapter's tolerance (tolerances.h), which its ops use */
} TfmChapter;

const TfmChapter *tfm_chapters(size_t *n);
/* Chapter by number or by name ("1", "01", "01-attention", "attention"); NULL if none. */
const TfmChapter *tfm_chapter_find(const char *key);
/* "<root>/oracle/golden/<name>.safetensors.gz", root from $TFM_ROOT or ".". */
void tfm_golden_path(char *buf, size_t buflen, const TfmChapter *ch);

/* Checks every case of the chapter's golden file with the variants in `variants` (bit 0 naive,
 * bit 1 fast), printing the oracle table's rows to f (NULL: none) and adding to *tot. Returns
 * 0, or -1 if the file did not load. */
int tfm_check_chapter(const TfmChapter *ch, unsigned variants, FILE *f, CheckTotals *tot);
void tfm_check_header(FILE *f);

#endif
