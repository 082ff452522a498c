/* ops.h — the op table: one declarative description of every op tfm runs.
 *
 * An op is what `tfm run OP` computes, what a golden case names in its metadata, and what
 * `tfm check`, the Check suites, the fuzzers, the notebooks (through `tfm ops --json`) and
 * `tfm bench --list` know about. Each entry in oracle/ops.c says, in one place:
 *
 *   name, chapter        "layernorm", 4 (its golden file and its tolerance)
 *   inputs               name, accepted dtypes, rank range, required or optional, shape rule
 *   params               name, type (int, float, word), default, range or words
 *   outputs              name, shape rule
 *   kernels              the naive and the fast entry point
 *   atol, rtol           the tolerance its golden cases are held to (oracle/tolerances.h)
 *   bind                 the few lines that check how the shapes relate, size the outputs and
 *                        call the chosen kernel (oracle/ops_NN_name.c)
 *
 * The generic part (tfm_op_run, ops.c) does everything the table can say by itself before bind
 * runs: it refuses a tensor the op does not read (naming it and listing what the op reads), a
 * missing required input, a wrong dtype or rank, a parameter given twice (as --param and as a
 * 0-d tensor) or out of range; bind only sees inputs that already have the declared dtype and
 * rank. So `tfm run linear` on a file of matmul inputs says which tensor is foreign instead of
 * computing the other op.
 *
 * Parameters come from three places, in this order of preference: the command line
 * (`--param eps=1e-12`), a golden case's metadata ("<case>/params" = "eps=1e-12"), or a 0-d
 * tensor of the same name in the input file (I64 for int, F32 or F64 for float). Giving one
 * both on the command line and as a tensor is an error.
 */
#ifndef TFM_OPS_H
#define TFM_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "golden.h"

typedef enum { TFM_NAIVE = 0, TFM_FAST = 1 } TfmVariant;
const char *tfm_variant_name(TfmVariant v);

#define TFM_OP_MAX_INPUTS 20
#define TFM_OP_MAX_PARAMS 8
#define TFM_MAX_OUTPUTS 72
/* Bytes of an output name, its NUL included (52 characters in
 * "grad_encoder.layer.attention.output.LayerNorm.weight"). */
#define TFM_MAX_NAME 64

/* Accepted dtypes of an input, as a bit set: DT(TFM_F32) | DT(TFM_BOOL). */
#define DT(d) (1u << (d))

typedef struct {
    const char *name;     /* the tensor's name, as PyTorch names the argument */
    unsigned dtypes;      /* DT(...) | DT(...) */
    int min_rank, max_rank;
    int optional;         /* 1: may be absent */
    const char *shape;    /* the rule, for --help: "[B, H, Tq, Dk]" */
} TfmInputSpec;

typedef enum { TFM_PARAM_INT, TFM_PARAM_FLOAT, TFM_PARAM_WORD } TfmParamType;

typedef struct {
    const char *name;
    TfmParamType type;
    const char *def;      /* the default, as written after NAME=; NULL: see `optional` */
    int optional;         /* with def NULL: 1 = may be absent (the op derives it, e.g. scale),
                           * 0 = required */
    double min, max;      /* INT and FLOAT: the closed range allowed */
    const char *words;    /* WORD: the allowed values, "mean|sum|none" */
    const char *help;     /* one line */
} TfmParamSpec;

typedef struct {
    const char *name;
    const char *shape;    /* the rule, for --help */
} TfmOutputSpec;

typedef struct {
    int set;              /* 0: absent and no default (an optional parameter) */
    int64_t i;            /* INT */
    double f;             /* FLOAT */
    int word;             /* WORD: index into the spec's words */
} TfmParamValue;

/* What an op produced: named tensors (F32, or I64 for ids) with their shapes. */
typedef struct {
    size_t n;
    char names[TFM_MAX_OUTPUTS][TFM_MAX_NAME];
    Tensor tensors[TFM_MAX_OUTPUTS];
} OpOutputs;

/* Where an op that reads a model (bert) finds it: the weights, under "<prefix>/" in a file,
 * and the config's text. `tfm run --model DIR` reads DIR/model.safetensors and DIR/config.json;
 * a golden case holds its weights beside its inputs and its config as "<case>/config". */
typedef struct {
    const GoldenFile *weights;
    const char *prefix;
    const char *config_json;
} TfmModelSource;

typedef void (*TfmKernelFn)(void);   /* a kernel of any signature; bind casts it back */
typedef struct OpCall OpCall;
typedef struct TfmOp TfmOp;
typedef int (*TfmOpBind)(OpCall *c);

struct TfmOp {
    const char *name;
    int chapter;
    const char *summary;                          /* one line: what it computes, which PyTorch */
    TfmInputSpec inputs[TFM_OP_MAX_INPUTS];       /* [n_inputs], then {NULL} */
    TfmParamSpec params[TFM_OP_MAX_PARAMS];       /* [n_params], then {NULL} */
    TfmOutputSpec outputs[TFM_MAX_OUTPUTS];       /* [n_outputs], then {NULL} */
    const char *naive_name, *fast_name;
    TfmKernelFn naive, fast;
    double atol, rtol;
    TfmOpBind bind;
    int model;                                    /* 1: reads a model (TfmModelSource) */
};

/* The naive and fast entry points of an entry, by name, as a designated initializer. */
#define TFM_KERNELS(n, f) \
    .naive_name = #n, .fast_name = #f, .naive = (TfmKernelFn)(n), .fast = (TfmKernelFn)(f)

/* One call of an op, as bind sees it: every input already checked against its spec. */
struct OpCall {
    const TfmOp *op;
    TfmVariant variant;
    TfmKernelFn kernel;                        /* op->naive or op->fast */
    const char *label;                         /* "op 'linear'" or "op 'linear', case 'c'" */
    const Tensor *in[TFM_OP_MAX_INPUTS];       /* by the op's input order; NULL when absent */
    TfmParamValue param[TFM_OP_MAX_PARAMS];    /* by the op's parameter order */
    const TfmModelSource *model;               /* for an op that reads one, else NULL */
    OpOutputs *out;
    char *err;
    size_t errlen;
};

/* The chosen kernel as its own function type: KERNEL(c, LinearFn)(y, x, w, bias, M, K, N). */
#define KERNEL(c, Type) ((Type)(c)->kernel)

/* ---- the table */
const TfmOp *tfm_ops(size_t *n);
const TfmOp *tfm_op_find(const char *name);   /* NULL if none */
size_t tfm_op_n_inputs(const TfmOp *op);
size_t tfm_op_n_params(const TfmOp *op);
size_t tfm_op_n_outputs(const TfmOp *op);
/* 1 if `name` is one of op's outputs. */
int tfm_op_has_output(const TfmOp *op, const char *name);
/* "x, w, bias": the tensors op reads, for messages. */
void tfm_op_inputs_str(char *buf, size_t buflen, const TfmOp *op);

/* ---- parameters given as text: "NAME=VALUE" from --param or a case's metadata */
#define TFM_MAX_PARAM_ARGS 16
typedef struct {
    size_t n;
    char names[TFM_MAX_PARAM_ARGS][48];
    char values[TFM_MAX_PARAM_ARGS][64];
} TfmParamArgs;
/* Adds one "NAME=VALUE"; -1 with a message if malformed, a repeat or too many. */
int tfm_param_args_add(TfmParamArgs *a, const char *name_eq_value, char *err, size_t errlen);
/* Adds every space-separated "NAME=VALUE" of s (a case's "<case>/params"). */
int tfm_param_args_parse(TfmParamArgs *a, const char *s, char *err, size_t errlen);

/* Runs op on the tensors of `in` under "<prefix>/" ("" for none) with the parameters of
 * `args` (may be NULL), into `out`. With allow_outputs, tensors named after one of op's outputs
 * "<o>" or "<o>_f64" are passed over instead of refused (a golden case holds them).
 * Returns 0, or -1 with a message in err and nothing left in `out`. */
int tfm_op_run(OpOutputs *out, const TfmOp *op, const GoldenFile *in, const char *prefix,
               const TfmParamArgs *args, TfmVariant variant, int allow_outputs, char *err,
               size_t errlen);
/* The same for an op that reads a model (op->model): model says where. When the model's
 * weights are in `in` itself (a golden case), its tensors are left to the model's loader. */
int tfm_op_run_model(OpOutputs *out, const TfmOp *op, const GoldenFile *in, const char *prefix,
                     const TfmParamArgs *args, const TfmModelSource *model, TfmVariant variant,
                     int allow_outputs, char *err, size_t errlen);

/* ---- for bind functions */
const Tensor *op_in(const OpCall *c, const char *name);          /* NULL when absent */
const TfmParamValue *op_param(const OpCall *c, const char *name);
int64_t op_int(const OpCall *c, const char *name);
double op_float(const OpCall *c, const char *name);
/* 1 if the WORD parameter `name` is `word`. */
int op_word_is(const OpCall *c, const char *name, const char *word);
/* Writes "<label>: <message>" into c->err; returns -1. */
int op_fail(OpCall *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A new zero-filled output (F32, or I64) called `name`; its data, or NULL with c->err set. */
float *op_output(OpCall *c, const char *name, int ndim, const size_t *shape);
int64_t *op_output_i64(OpCall *c, const char *name, int ndim, const size_t *shape);
/* A backward op's upstream gradient, the input `name` (grad_out, ...), which must have the shape
 * of the forward's output `of` (shape[0..ndim)); its data, or NULL with c->err set. */
const float *op_grad_in(OpCall *c, const char *name, const char *of, int ndim,
                        const size_t *shape);
/* 1 if t has exactly shape[0..ndim). */
int op_same_shape(const Tensor *t, int ndim, const size_t *shape);
void op_outputs_free(OpOutputs *o);

/* Size guard. Ops read files that users bring, and a zero in a shape makes an empty tensor
 * whatever its other dimensions are: a q of shape [2^40, 1, 1, 0] holds no bytes, yet an op
 * would loop 2^40 times over it, and matmul of a [10^6, 0] by a [0, 10^6] asks for a 4 TB
 * output. So each input (checked by tfm_op_run) and all the outputs of one call together
 * (op_output) may span at most tfm_max_elements() elements, a zero dimension counted as 1;
 * past that they fail with a message naming the shape. The default, 2^30, is 4 GiB of float32:
 * no larger than the biggest file golden_load reads, so it refuses no tensor a file could
 * actually hold. The fuzzers lower it to keep each run small. */
#define TFM_MAX_ELEMENTS ((size_t)1 << 30)
size_t tfm_max_elements(void);
size_t tfm_set_max_elements(size_t n);   /* returns the previous limit */

#endif
