/* cases.c — the chapter table and the helpers every chapter's runner shares. */
#include "cases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tolerances.h"

const char *tfm_variant_name(TfmVariant v) { return v == TFM_FAST ? "fast" : "naive"; }

/* One line per chapter: number, golden file stem, runner, tolerances (tolerances.h). */
static const TfmChapter CHAPTERS[] = {
    {0, "00-tensors", matmul_run, TOL_00_ATOL, TOL_00_RTOL},
    {1, "01-attention", attention_run, TOL_01_ATOL, TOL_01_RTOL},
};

/* One line per op of `tfm run`: name, chapter, the input that selects it, help. */
static const TfmOp OPS[] = {
    {"matmul", 0, "a", "a [M,K], b [K,N] -> out [M,N] = a b"},
    {"linear", 0, "x", "x [M,K], w [N,K], bias [N] (optional) -> out [M,N] = x w^T + bias"},
    {"attention", 1, "q",
     "q [B,H,Tq,Dk], k [B,H,Tk,Dk], v [B,H,Tk,Dv], attn_mask F32 [Tq,Tk] or [B,H,Tq,Tk] (optional,\n"
     "        additive), key_padding_mask BOOL [B,Tk] (optional, 1 = ignore), is_causal I64 [] (optional)\n"
     "        -> out [B,H,Tq,Dv], probs [B,H,Tq,Tk]"},
};

const TfmOp *tfm_ops(size_t *n) {
    *n = sizeof OPS / sizeof OPS[0];
    return OPS;
}

const TfmChapter *tfm_chapters(size_t *n) {
    *n = sizeof CHAPTERS / sizeof CHAPTERS[0];
    return CHAPTERS;
}

const TfmChapter *tfm_chapter_find(const char *key) {
    size_t n;
    const TfmChapter *chs = tfm_chapters(&n);
    char *end;
    long num = strtol(key, &end, 10);
    for (size_t i = 0; i < n; i++) {
        const char *dash = strchr(chs[i].name, '-');
        if (*key && *end == '\0' && num == chs[i].number) return &chs[i];
        if (strcmp(key, chs[i].name) == 0) return &chs[i];
        if (dash && strcmp(key, dash + 1) == 0) return &chs[i];
    }
    return NULL;
}

void tfm_golden_path(char *buf, size_t buflen, const TfmChapter *ch) {
    const char *root = getenv("TFM_ROOT");
    snprintf(buf, buflen, "%s/oracle/golden/%s.safetensors.gz", root && *root ? root : ".", ch->name);
}

static const Tensor *case_tensor(const GoldenFile *gf, const char *name, const char *tensor,
                                 TfmDType dt, int ndim, int required, char *err, size_t errlen) {
    char full[256];
    if (name[0]) snprintf(full, sizeof full, "%s/%s", name, tensor);
    else snprintf(full, sizeof full, "%s", tensor);
    err[0] = '\0';
    if (!required && !golden_find(gf, full)) return NULL;
    return golden_require(gf, full, dt, ndim, err, errlen);
}

const Tensor *case_input(const GoldenFile *gf, const char *name, const char *tensor, TfmDType dt,
                         int ndim, char *err, size_t errlen) {
    return case_tensor(gf, name, tensor, dt, ndim, 1, err, errlen);
}

const Tensor *case_optional(const GoldenFile *gf, const char *name, const char *tensor,
                            TfmDType dt, int ndim, char *err, size_t errlen) {
    return case_tensor(gf, name, tensor, dt, ndim, 0, err, errlen);
}

float *op_output(OpOutputs *o, const char *name, int ndim, const size_t *shape, char *err,
                 size_t errlen) {
    if (o->n >= TFM_MAX_OUTPUTS) {
        snprintf(err, errlen, "more than %d outputs", TFM_MAX_OUTPUTS);
        return NULL;
    }
    if (tensor_alloc(&o->tensors[o->n], TFM_F32, ndim, shape, err, errlen) != 0) return NULL;
    snprintf(o->names[o->n], sizeof o->names[o->n], "%s", name);
    return tensor_f32(&o->tensors[o->n++]);
}

void op_outputs_free(OpOutputs *o) {
    for (size_t i = 0; i < o->n; i++) tensor_free(&o->tensors[i]);
    o->n = 0;
}

int case_run(const TfmChapter *ch, const GoldenFile *gf, const char *name, TfmVariant variant,
             CaseOutcome *oc, char *err, size_t errlen) {
    OpOutputs res;
    memset(&res, 0, sizeof res);
    memset(oc, 0, sizeof *oc);
    int rc = ch->run(&res, gf, name, variant, err, errlen);
    for (size_t i = 0; rc == 0 && i < res.n; i++) {
        const Tensor *got = &res.tensors[i];
        const Tensor *want = case_input(gf, name, res.names[i], TFM_F32, -1, err, errlen);
        if (!want) { rc = -1; break; }
        char truth_name[64];
        snprintf(truth_name, sizeof truth_name, "%s_f64", res.names[i]);
        const Tensor *truth = case_optional(gf, name, truth_name, TFM_F64, -1, err, errlen);
        if (!truth && err[0]) { rc = -1; break; }
        const Tensor *shaped[2] = {want, truth};
        for (int t = 0; t < 2 && rc == 0; t++) {
            if (!shaped[t]) continue;
            int same = shaped[t]->ndim == got->ndim;
            for (int d = 0; same && d < got->ndim; d++) same = shaped[t]->shape[d] == got->shape[d];
            if (!same) {
                char a[96], b[96];
                tfm_shape_str(a, sizeof a, got->ndim, got->shape);
                tfm_shape_str(b, sizeof b, shaped[t]->ndim, shaped[t]->shape);
                snprintf(err, errlen, "%s: case '%s' output '%s': computed shape %s, golden has %s",
                         gf->path, name, res.names[i], a, b);
                rc = -1;
            }
        }
        if (rc != 0) break;
        OutputCheck *c = &oc->outputs[oc->n++];
        snprintf(c->output, sizeof c->output, "%s", res.names[i]);
        c->want = want;
        c->vs_torch = compare_f32(tensor_f32(got), got->numel, want, ch->atol, ch->rtol);
        c->has_truth = truth != NULL;
        if (truth) {
            c->vs_truth = compare_f32(tensor_f32(got), got->numel, truth, ch->atol, ch->rtol);
            c->torch_vs_truth = compare_f32(tensor_f32(want), want->numel, truth, ch->atol, ch->rtol);
        }
    }
    op_outputs_free(&res);
    return rc;
}
