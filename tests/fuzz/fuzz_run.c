/* fuzz_run.c — libFuzzer target for the `tfm run` input path: a file of tensors (names, dtypes,
 * shapes, values) handed to every op of the chapter table, the way `tfm run OP IN OUT` does.
 *
 * The bytes are read by golden_load_bytes; each op of tfm_ops() then runs through tfm_op_run
 * (exactly what `tfm run` calls) with prefix "" and with the file's first case prefixes (what
 * `--case NAME` does), in both variants. New chapters' ops are covered as soon as they are in
 * the table. Each run must either produce well-formed outputs or fail with one line in err;
 * naive and fast must agree on which (they share the runner's validation) and on the names
 * and shapes of what they produce.
 *
 * Sizes: files over 1 MiB of tensor data are skipped, and the runners' size guard (cases.h) is
 * lowered to 2^20 elements, so a fuzzed shape runs in milliseconds. A shape that gets past the
 * guard and still makes a runner allocate or loop without bound is a bug in that runner.
 *
 * Seeds: tests/fuzz/corpus/fuzz_run/; run with `make fuzz`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cases.h"

#define REQUIRE(cond)                                                                          \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "fuzz_run: %s:%d: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

#define MAX_INPUT_BYTES ((size_t)1 << 20)
#define MAX_CASES 3   /* case prefixes tried besides "" */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    tfm_set_max_elements((size_t)1 << 20);
    golden_set_max_bytes((size_t)16 << 20);
    return 0;
}

static void check_outputs(const OpOutputs *o) {
    REQUIRE(o->n >= 1 && o->n <= TFM_MAX_OUTPUTS);
    for (size_t i = 0; i < o->n; i++) {
        const Tensor *t = &o->tensors[i];
        int overflow;
        REQUIRE(o->names[i][0] != '\0');
        REQUIRE(tfm_dtype_size(t->dtype) != 0 && t->data != NULL);   /* F32, or I64 ids */
        REQUIRE(tfm_shape_numel(t->ndim, t->shape, &overflow) == t->numel && !overflow);
        REQUIRE(t->numel <= tfm_max_elements());
    }
}

/* Runs one op on one prefix in both variants. */
static void run_op(const TfmOp *op, const GoldenFile *gf, const char *prefix) {
    /* A case's "<case>/params" metadata, as tfm check reads it (malformed: run without). */
    TfmParamArgs parsed = {0}, *args = NULL;
    char key[256], perr[TFM_ERR_LEN];
    snprintf(key, sizeof key, "%s/params", prefix);
    const char *params = prefix[0] ? golden_meta(gf, key) : NULL;
    if (params && tfm_param_args_parse(&parsed, params, perr, sizeof perr) == 0) args = &parsed;
    OpOutputs res[2];
    int rc[2];
    for (int v = 0; v < 2; v++) {
        char err[TFM_ERR_LEN] = "";
        rc[v] = tfm_op_run(&res[v], op, gf, prefix, args, (TfmVariant)v, prefix[0] != 0, err,
                           sizeof err);   /* a case holds its outputs, as a golden does */
        if (rc[v] != 0) {
            REQUIRE(err[0] != '\0' && strchr(err, '\n') == NULL);   /* one line, never empty */
            REQUIRE(res[v].n == 0);                                 /* nothing left behind */
        } else {
            check_outputs(&res[v]);
        }
    }
    /* The only way for the variants to differ in outcome: allocating the fast variant's
     * scratch failed. Under the guard's limit that cannot happen. */
    REQUIRE(rc[0] == rc[1]);
    if (rc[0] == 0) {
        REQUIRE(res[0].n == res[1].n);
        for (size_t i = 0; i < res[0].n; i++) {
            REQUIRE(strcmp(res[0].names[i], res[1].names[i]) == 0);
            REQUIRE(res[0].tensors[i].ndim == res[1].tensors[i].ndim);
            for (int d = 0; d < res[0].tensors[i].ndim; d++)
                REQUIRE(res[0].tensors[i].shape[d] == res[1].tensors[i].shape[d]);
        }
    }
    op_outputs_free(&res[0]);
    op_outputs_free(&res[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    GoldenFile gf;
    char err[TFM_ERR_LEN];
    if (golden_load_bytes(&gf, data, size, "in.safetensors", err, sizeof err) != 0) return 0;
    size_t bytes = 0;
    for (size_t i = 0; i < gf.n; i++) bytes += gf.tensors[i].numel * tfm_dtype_size(gf.tensors[i].dtype);
    if (bytes <= MAX_INPUT_BYTES) {
        char **cases;
        size_t nc = golden_cases(&gf, &cases), nops;
        const TfmOp *ops = tfm_ops(&nops);
        for (size_t k = 0; k < nops; k++) {
            run_op(&ops[k], &gf, "");
            for (size_t c = 0; c < nc && c < MAX_CASES; c++) run_op(&ops[k], &gf, cases[c]);
        }
        golden_free_cases(cases, nc);
    }
    golden_free(&gf);
    return 0;
}
