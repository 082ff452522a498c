/* ops_run.c — what the op table can check by itself (ops.h): which tensors an op reads, their
 * dtypes and ranks, its parameters; then the op's bind function; plus the helpers binds share.
 * The table itself is oracle/ops.c. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

#include "bert_model.h"

const char *tfm_variant_name(TfmVariant v) { return v == TFM_FAST ? "fast" : "naive"; }

size_t tfm_op_n_inputs(const TfmOp *op)
{
    size_t n = 0;
    while (n < TFM_OP_MAX_INPUTS && op->inputs[n].name)
        n++;
    return n;
}

size_t tfm_op_n_params(const TfmOp *op)
{
    size_t n = 0;
    while (n < TFM_OP_MAX_PARAMS && op->params[n].name)
        n++;
    return n;
}

size_t tfm_op_n_outputs(const TfmOp *op)
{
    size_t n = 0;
    while (n < TFM_MAX_OUTPUTS && op->outputs[n].name)
        n++;
    return n;
}

const TfmOp *tfm_op_find(const char *name)
{
    size_t n;
    const TfmOp *ops = tfm_ops(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(ops[i].name, name) == 0)
            return &ops[i];
    return NULL;
}

int tfm_op_has_output(const TfmOp *op, const char *name)
{
    for (size_t i = 0; i < tfm_op_n_outputs(op); i++)
        if (strcmp(op->outputs[i].name, name) == 0)
            return 1;
    return 0;
}

/* Appends ", name" (or "name" at the start) to the list in buf. */
static void list_add(char *buf, size_t buflen, size_t *used, const char *name)
{
    if (*used >= buflen)
        return;
    int w = snprintf(buf + *used, buflen - *used, "%s%s", *used ? ", " : "", name);
    if (w > 0)
        *used += (size_t)w;
}

void tfm_op_inputs_str(char *buf, size_t buflen, const TfmOp *op)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < tfm_op_n_inputs(op); i++)
        list_add(buf, buflen, &used, op->inputs[i].name);
}

/* "eps, normalized_ndim": the parameters op takes, for messages. */
static void params_str(char *buf, size_t buflen, const TfmOp *op)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < tfm_op_n_params(op); i++)
        list_add(buf, buflen, &used, op->params[i].name);
}

/* ---- parameters as text ------------------------------------------------------------------ */

int tfm_param_args_add(TfmParamArgs *a, const char *s, char *err, size_t errlen)
{
    const char *eq = strchr(s, '=');
    if (!eq || eq == s || !eq[1]) {
        snprintf(err, errlen, "parameter '%s' is not NAME=VALUE (e.g. eps=1e-12)", s);
        return -1;
    }
    const size_t nlen = (size_t)(eq - s), vlen = strlen(eq + 1);
    if (nlen >= sizeof a->names[0] || vlen >= sizeof a->values[0]) {
        snprintf(err, errlen, "parameter '%s' is too long", s);
        return -1;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (strlen(a->names[i]) == nlen && strncmp(a->names[i], s, nlen) == 0) {
            snprintf(err, errlen, "parameter '%.*s' is given twice", (int)nlen, s);
            return -1;
        }
    }
    if (a->n >= TFM_MAX_PARAM_ARGS) {
        snprintf(err, errlen, "more than %d parameters", TFM_MAX_PARAM_ARGS);
        return -1;
    }
    memcpy(a->names[a->n], s, nlen);
    a->names[a->n][nlen] = '\0';
    memcpy(a->values[a->n], eq + 1, vlen + 1);
    a->n++;
    return 0;
}

int tfm_param_args_parse(TfmParamArgs *a, const char *s, char *err, size_t errlen)
{
    char item[160];
    while (*s) {
        while (*s == ' ')
            s++;
        size_t len = strcspn(s, " ");
        if (len == 0)
            break;
        if (len >= sizeof item) {
            snprintf(err, errlen, "parameter '%.40s...' is too long", s);
            return -1;
        }
        memcpy(item, s, len);
        item[len] = '\0';
        if (tfm_param_args_add(a, item, err, errlen) != 0)
            return -1;
        s += len;
    }
    return 0;
}

/* Parses `text` as parameter p of op into v. */
static int parse_param(TfmParamValue *v, const TfmOp *op, const TfmParamSpec *p,
                       const char *text, char *err, size_t errlen)
{
    char *end;
    memset(v, 0, sizeof *v);
    v->set = 1;
    switch (p->type) {
    case TFM_PARAM_INT: {
        errno = 0;
        long long x = strtoll(text, &end, 10);
        if (end == text || *end || errno) {
            snprintf(err, errlen, "op '%s': parameter %s=%s is not a whole number", op->name,
                     p->name, text);
            return -1;
        }
        v->i = x;
        v->f = (double)x;
        break;
    }
    case TFM_PARAM_FLOAT: {
        errno = 0;
        double x = strtod(text, &end);
        if (end == text || *end || errno == ERANGE || isnan(x)) {
            snprintf(err, errlen, "op '%s': parameter %s=%s is not a number", op->name, p->name,
                     text);
            return -1;
        }
        v->f = x;
        break;
    }
    case TFM_PARAM_WORD: {
        const char *w = p->words;
        const size_t len = strlen(text);
        for (int k = 0; *w; k++) {
            const size_t wl = strcspn(w, "|");
            if (wl == len && strncmp(w, text, len) == 0) {
                v->word = k;
                return 0;
            }
            w += wl + (w[wl] == '|');
        }
        snprintf(err, errlen, "op '%s': parameter %s=%s is not one of %s", op->name, p->name,
                 text, p->words);
        return -1;
    }
    }
    if (v->f < p->min || v->f > p->max) {
        if (p->max >= 9e15)   /* no upper bound to speak of */
            snprintf(err, errlen, "op '%s': %s is %s; it must be at least %g (%s)", op->name,
                     p->name, text, p->min, p->help);
        else
            snprintf(err, errlen, "op '%s': %s is %s; it must lie in [%g, %g] (%s)", op->name,
                     p->name, text, p->min, p->max, p->help);
        return -1;
    }
    return 0;
}

/* A 0-d tensor standing for parameter p. */
static int param_from_tensor(TfmParamValue *v, const TfmOp *op, const TfmParamSpec *p,
                             const Tensor *t, const char *full, char *err, size_t errlen)
{
    char text[64];
    if (t->ndim != 0) {
        char s[96];
        tfm_shape_str(s, sizeof s, t->ndim, t->shape);
        snprintf(err, errlen, "op '%s': tensor '%s' is %s; a parameter given as a tensor must "
                 "be 0-d", op->name, full, s);
        return -1;
    }
    if (p->type == TFM_PARAM_INT && t->dtype == TFM_I64) {
        snprintf(text, sizeof text, "%lld", (long long)tensor_i64(t)[0]);
    } else if (p->type == TFM_PARAM_FLOAT && (t->dtype == TFM_F32 || t->dtype == TFM_F64)) {
        const double x = t->dtype == TFM_F32 ? (double)tensor_f32(t)[0] : tensor_f64(t)[0];
        snprintf(text, sizeof text, "%.17g", x);
    } else {
        snprintf(err, errlen, "op '%s': tensor '%s' is %s, expected %s (parameter %s)",
                 op->name, full, tfm_dtype_name(t->dtype),
                 p->type == TFM_PARAM_INT ? "I64" :
                 p->type == TFM_PARAM_FLOAT ? "F32 or F64" : "a --param (a word is no tensor)",
                 p->name);
        return -1;
    }
    return parse_param(v, op, p, text, err, errlen);
}

/* ---- the size guard ---------------------------------------------------------------------- */

static size_t max_elements = TFM_MAX_ELEMENTS;

size_t tfm_max_elements(void) { return max_elements; }

size_t tfm_set_max_elements(size_t n)
{
    size_t old = max_elements;
    max_elements = n;
    return old;
}

/* The elements a shape spans with each zero dimension counted as 1, saturating at SIZE_MAX:
 * how many times loops over its dimensions run, whether or not it holds any data. */
static size_t shape_extent(int ndim, const size_t *shape)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        size_t s = shape[d] ? shape[d] : 1;
        if (n > SIZE_MAX / s)
            return SIZE_MAX;
        n *= s;
    }
    return n;
}

/* ---- running an op ----------------------------------------------------------------------- */

static void dtypes_str(char *buf, size_t buflen, unsigned set)
{
    static const TfmDType all[] = {TFM_F32, TFM_F64, TFM_I64, TFM_BOOL};
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (!(set & DT(all[i])) || used >= buflen)
            continue;
        int w = snprintf(buf + used, buflen - used, "%s%s", used ? " or " : "",
                         tfm_dtype_name(all[i]));
        if (w > 0)
            used += (size_t)w;
    }
}

/* 1 if `name` is "<o>" or "<o>_f64" for an output o of op. */
static int is_output_name(const TfmOp *op, const char *name)
{
    if (tfm_op_has_output(op, name))
        return 1;
    const size_t len = strlen(name);
    if (len > 4 && strcmp(name + len - 4, "_f64") == 0) {
        char base[64];
        if (len - 4 >= sizeof base)
            return 0;
        memcpy(base, name, len - 4);
        base[len - 4] = '\0';
        return tfm_op_has_output(op, base);
    }
    return 0;
}

int tfm_op_run(OpOutputs *out, const TfmOp *op, const GoldenFile *in, const char *prefix,
               const TfmParamArgs *args, TfmVariant variant, int allow_outputs, char *err,
               size_t errlen)
{
    return tfm_op_run_model(out, op, in, prefix, args, NULL, variant, allow_outputs, err, errlen);
}

int tfm_op_run_model(OpOutputs *out, const TfmOp *op, const GoldenFile *in, const char *prefix,
                     const TfmParamArgs *args, const TfmModelSource *model, TfmVariant variant,
                     int allow_outputs, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    err[0] = '\0';
    OpCall c;
    memset(&c, 0, sizeof c);
    c.op = op;
    c.variant = variant;
    c.kernel = variant == TFM_FAST ? op->fast : op->naive;
    c.out = out;
    c.model = model;
    c.err = err;
    c.errlen = errlen;
    char label[160], reads[256];
    if (prefix[0])
        snprintf(label, sizeof label, "op '%s', case '%s'", op->name, prefix);
    else
        snprintf(label, sizeof label, "op '%s'", op->name);
    c.label = label;
    tfm_op_inputs_str(reads, sizeof reads, op);
    const char *path = in->path ? in->path : "(tensors)";
    const size_t ni = tfm_op_n_inputs(op), np = tfm_op_n_params(op);
    const size_t plen = strlen(prefix);
    const Tensor *ptensor[TFM_OP_MAX_PARAMS] = {NULL};
    if (op->model && !model) {
        snprintf(err, errlen, "op '%s' reads a model: give --model DIR (a Hugging Face directory: "
                 "config.json and model.safetensors)", op->name);
        return -1;
    }

    /* Every tensor of the case: an input, a parameter, (in a golden) an output, or an error. */
    for (size_t t = 0; t < in->n; t++) {
        const char *full = in->names[t], *name = full;
        if (plen) {
            if (strncmp(full, prefix, plen) != 0 || full[plen] != '/')
                continue;
            name = full + plen + 1;
        }
        const Tensor *x = &in->tensors[t];
        size_t k;
        for (k = 0; k < ni && strcmp(op->inputs[k].name, name) != 0; k++) {
        }
        if (k < ni) {
            const TfmInputSpec *s = &op->inputs[k];
            if (!(s->dtypes & DT(x->dtype))) {
                char want[64];
                dtypes_str(want, sizeof want, s->dtypes);
                snprintf(err, errlen, "%s: tensor '%s' is %s, expected %s (%s reads %s %s)",
                         path, full, tfm_dtype_name(x->dtype), want, label, s->name, s->shape);
                return -1;
            }
            if (x->ndim < s->min_rank || x->ndim > s->max_rank) {
                char got[128];
                tfm_shape_str(got, sizeof got, x->ndim, x->shape);
                if (s->min_rank == s->max_rank)
                    snprintf(err, errlen, "%s: tensor '%s' is %s (%d-d); %s reads it as %s "
                             "(%d-d)", path, full, got, x->ndim, label, s->shape, s->min_rank);
                else
                    snprintf(err, errlen, "%s: tensor '%s' is %s (%d-d); %s reads it as %s "
                             "(%d-d to %d-d)", path, full, got, x->ndim, label, s->shape,
                             s->min_rank, s->max_rank);
                return -1;
            }
            if (shape_extent(x->ndim, x->shape) > max_elements) {
                char got[128];
                tfm_shape_str(got, sizeof got, x->ndim, x->shape);
                snprintf(err, errlen, "%s: tensor '%s' has shape %s, which spans more than %zu "
                         "elements (a zero dimension counted as 1); tfm refuses shapes that "
                         "large", path, full, got, max_elements);
                return -1;
            }
            c.in[k] = x;
            continue;
        }
        for (k = 0; k < np && strcmp(op->params[k].name, name) != 0; k++) {
        }
        if (k < np) {
            ptensor[k] = x;
            continue;
        }
        if (allow_outputs && is_output_name(op, name))
            continue;
        if (model && model->weights == in && tfm_bert_is_model_tensor(name))
            continue;   /* the model's own tensors: its loader checks them */
        if (np) {
            char pnames[160];
            params_str(pnames, sizeof pnames, op);
            snprintf(err, errlen, "%s: tensor '%s' is not an input of op '%s' (it reads %s; "
                     "parameters %s)", path, full, op->name, reads, pnames);
        } else {
            snprintf(err, errlen, "%s: tensor '%s' is not an input of op '%s' (it reads %s)",
                     path, full, op->name, reads);
        }
        return -1;
    }
    for (size_t k = 0; k < ni; k++) {
        if (!c.in[k] && !op->inputs[k].optional) {
            snprintf(err, errlen, "%s: tensor '%s%s%s' is missing (%s reads %s; 'tfm run --help' "
                     "lists each op's tensors)", path, prefix, plen ? "/" : "",
                     op->inputs[k].name, label, reads);
            return -1;
        }
    }

    /* Parameters: given as text (--param, metadata), as a 0-d tensor, or defaulted. */
    for (size_t a = 0; args && a < args->n; a++) {
        size_t k;
        for (k = 0; k < np && strcmp(op->params[k].name, args->names[a]) != 0; k++) {
        }
        if (k == np) {
            if (np == 0) {
                snprintf(err, errlen, "op '%s' has no parameters (got %s)", op->name,
                         args->names[a]);
            } else {
                char pnames[160];
                params_str(pnames, sizeof pnames, op);
                snprintf(err, errlen, "op '%s' has no parameter '%s' (it takes %s)", op->name,
                         args->names[a], pnames);
            }
            return -1;
        }
        if (ptensor[k]) {
            snprintf(err, errlen, "%s: parameter %s is given twice: as %s=%s and as the tensor "
                     "'%s%s%s'; give one", path, op->params[k].name, args->names[a],
                     args->values[a], prefix, plen ? "/" : "", op->params[k].name);
            return -1;
        }
        if (parse_param(&c.param[k], op, &op->params[k], args->values[a], err, errlen) != 0)
            return -1;
    }
    for (size_t k = 0; k < np; k++) {
        const TfmParamSpec *p = &op->params[k];
        if (c.param[k].set)
            continue;
        if (ptensor[k]) {
            char full[256];
            snprintf(full, sizeof full, "%s%s%s", prefix, plen ? "/" : "", p->name);
            if (param_from_tensor(&c.param[k], op, p, ptensor[k], full, err, errlen) != 0)
                return -1;
        } else if (p->def) {
            if (parse_param(&c.param[k], op, p, p->def, err, errlen) != 0)
                return -1;
        } else if (!p->optional) {
            snprintf(err, errlen, "%s: parameter %s is missing (give --param %s=VALUE or a 0-d "
                     "tensor '%s'): %s", label, p->name, p->name, p->name, p->help);
            return -1;
        }
    }

    if (op->bind(&c) != 0) {
        op_outputs_free(out);
        if (!err[0])
            snprintf(err, errlen, "%s failed", label);
        return -1;
    }
    return 0;
}

/* ---- helpers for bind functions ---------------------------------------------------------- */

const Tensor *op_in(const OpCall *c, const char *name)
{
    for (size_t k = 0; k < tfm_op_n_inputs(c->op); k++)
        if (strcmp(c->op->inputs[k].name, name) == 0)
            return c->in[k];
    fprintf(stderr, "op_in: op '%s' declares no input '%s'\n", c->op->name, name);
    abort();   /* a bind that asks for an undeclared input is a programming error */
}

const TfmParamValue *op_param(const OpCall *c, const char *name)
{
    for (size_t k = 0; k < tfm_op_n_params(c->op); k++)
        if (strcmp(c->op->params[k].name, name) == 0)
            return &c->param[k];
    fprintf(stderr, "op_param: op '%s' declares no parameter '%s'\n", c->op->name, name);
    abort();
}

int64_t op_int(const OpCall *c, const char *name) { return op_param(c, name)->i; }
double op_float(const OpCall *c, const char *name) { return op_param(c, name)->f; }

int op_word_is(const OpCall *c, const char *name, const char *word)
{
    const TfmParamValue *v = op_param(c, name);
    const char *w = NULL;
    for (size_t k = 0; k < tfm_op_n_params(c->op); k++)
        if (strcmp(c->op->params[k].name, name) == 0)
            w = c->op->params[k].words;
    for (int i = 0; w && i < v->word; i++)
        if ((w = strchr(w, '|')))
            w++;
    return w && strncmp(w, word, strlen(word)) == 0 && (w[strlen(word)] == '|' || !w[strlen(word)]);
}

int op_fail(OpCall *c, const char *fmt, ...)
{
    int w = snprintf(c->err, c->errlen, "%s: ", c->label);
    if (w < 0 || (size_t)w >= c->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + w, c->errlen - (size_t)w, fmt, ap);
    va_end(ap);
    return -1;
}

int op_same_shape(const Tensor *t, int ndim, const size_t *shape)
{
    if (t->ndim != ndim)
        return 0;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != shape[d])
            return 0;
    return 1;
}

static void *new_output(OpCall *c, TfmDType dt, const char *name, int ndim, const size_t *shape)
{
    OpOutputs *o = c->out;
    if (o->n >= TFM_MAX_OUTPUTS) {
        op_fail(c, "more than %d outputs", TFM_MAX_OUTPUTS);
        return NULL;
    }
    size_t used = 0;   /* what the call's earlier outputs already span */
    for (size_t i = 0; i < o->n; i++)
        used += shape_extent(o->tensors[i].ndim, o->tensors[i].shape);
    const size_t extent = ndim >= 0 && ndim <= TFM_MAX_DIMS ? shape_extent(ndim, shape) : 0;
    if (used > max_elements || extent > max_elements - used) {
        char s[128];
        tfm_shape_str(s, sizeof s, ndim, shape);
        op_fail(c, "output '%s' would have shape %s: with the op's other outputs that spans "
                "more than %zu elements (a zero dimension counted as 1); tfm refuses outputs "
                "that large", name, s, max_elements);
        return NULL;
    }
    char msg[256];
    if (tensor_alloc(&o->tensors[o->n], dt, ndim, shape, msg, sizeof msg) != 0) {
        op_fail(c, "output '%s': %s", name, msg);
        return NULL;
    }
    snprintf(o->names[o->n], sizeof o->names[o->n], "%s", name);
    return o->tensors[o->n++].data;
}

float *op_output(OpCall *c, const char *name, int ndim, const size_t *shape)
{
    return new_output(c, TFM_F32, name, ndim, shape);
}

int64_t *op_output_i64(OpCall *c, const char *name, int ndim, const size_t *shape)
{
    return new_output(c, TFM_I64, name, ndim, shape);
}

const float *op_grad_in(OpCall *c, const char *name, const char *of, int ndim,
                        const size_t *shape)
{
    const Tensor *g = op_in(c, name);
    if (!g) {
        op_fail(c, "needs %s, the gradient of the loss with respect to %s", name, of);
        return NULL;
    }
    if (!op_same_shape(g, ndim, shape)) {
        char gs[160], os[160];
        tfm_shape_str(gs, sizeof gs, g->ndim, g->shape);
        tfm_shape_str(os, sizeof os, ndim, shape);
        op_fail(c, "%s is %s but %s is %s: an upstream gradient has the shape of the output it "
                "belongs to", name, gs, of, os);
        return NULL;
    }
    return tensor_f32(g);
}

void op_outputs_free(OpOutputs *o)
{
    for (size_t i = 0; i < o->n; i++)
        tensor_free(&o->tensors[i]);
    o->n = 0;
}
