/* cases.c — the chapter table and the golden checker (cases.h). */
#include "cases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tolerances.h"

/* One line per chapter: number, golden file stem, tolerances (tolerances.h). */
static const TfmChapter CHAPTERS[] = {
    {0, "00-tensors", TOL_00_ATOL, TOL_00_RTOL},
    {1, "01-attention", TOL_01_ATOL, TOL_01_RTOL},
    {2, "02-multihead", TOL_02_ATOL, TOL_02_RTOL},
    {3, "03-positional", TOL_03_ATOL, TOL_03_RTOL},
    {4, "04-layernorm", TOL_04_ATOL, TOL_04_RTOL},
    {5, "05-pretraining", TOL_05_ATOL, TOL_05_RTOL},
    {6, "06-encoder", TOL_06_ATOL, TOL_06_RTOL},
    {7, "07-backward", TOL_07_ATOL, TOL_07_RTOL},
    {9, "09-pretraining", TOL_09_ATOL, TOL_09_RTOL},
};

const TfmChapter *tfm_chapters(size_t *n)
{
    *n = sizeof CHAPTERS / sizeof CHAPTERS[0];
    return CHAPTERS;
}

const TfmChapter *tfm_chapter_find(const char *key)
{
    size_t n;
    const TfmChapter *chs = tfm_chapters(&n);
    char *end;
    long num = strtol(key, &end, 10);
    for (size_t i = 0; i < n; i++) {
        const char *dash = strchr(chs[i].name, '-');
        if (*key && *end == '\0' && num == chs[i].number)
            return &chs[i];
        if (strcmp(key, chs[i].name) == 0)
            return &chs[i];
        if (dash && strcmp(key, dash + 1) == 0)
            return &chs[i];
    }
    return NULL;
}

void tfm_golden_path(char *buf, size_t buflen, const TfmChapter *ch)
{
    const char *root = getenv("TFM_ROOT");
    snprintf(buf, buflen, "%s/oracle/golden/%s.safetensors.gz", root && *root ? root : ".",
             ch->name);
}

/* The case's metadata entry "<case>/<key>", or NULL. */
static const char *case_meta(const GoldenFile *gf, const char *name, const char *key)
{
    char full[256];
    snprintf(full, sizeof full, "%s/%s", name, key);
    return golden_meta(gf, full);
}

static int same_shape(const Tensor *a, const Tensor *b)
{
    return op_same_shape(a, b->ndim, b->shape);
}

int case_run(const GoldenFile *gf, const char *name, TfmVariant variant, CaseOutcome *oc,
             char *err, size_t errlen)
{
    memset(oc, 0, sizeof *oc);
    err[0] = '\0';
    const char *path = gf->path ? gf->path : "(tensors)";
    const char *opname = case_meta(gf, name, "op");
    if (!opname) {
        snprintf(err, errlen, "%s: case '%s' names no op (metadata '%s/op' is missing)", path,
                 name, name);
        return -1;
    }
    const size_t plen = strlen(name);
    if (strcmp(opname, "pin") == 0) {
        for (size_t t = 0; t < gf->n; t++)
            oc->n_pinned += strncmp(gf->names[t], name, plen) == 0 && gf->names[t][plen] == '/';
        return 0;
    }
    const TfmOp *op = tfm_op_find(opname);
    if (!op) {
        snprintf(err, errlen, "%s: case '%s' names op '%s', which is not in the op table", path,
                 name, opname);
        return -1;
    }
    oc->op = op;
    const char *against = case_meta(gf, name, "against");
    if (against && strcmp(against, "truth") != 0) {
        snprintf(err, errlen, "%s: case '%s': against is '%s'; the only value is 'truth'", path,
                 name, against);
        return -1;
    }
    oc->against_truth = against != NULL;
    TfmParamArgs args = {0};
    const char *params = case_meta(gf, name, "params");
    if (params && tfm_param_args_parse(&args, params, err, errlen) != 0)
        return -1;

    TfmModelSource model = {gf, name, case_meta(gf, name, "config")};
    if (op->model && !model.config_json) {
        snprintf(err, errlen, "%s: case '%s' of op '%s' has no model config (metadata "
                 "'%s/config')", path, name, op->name, name);
        return -1;
    }
    OpOutputs res;
    if (tfm_op_run_model(&res, op, gf, name, &args, op->model ? &model : NULL, variant, 1, err,
                         errlen) != 0)
        return -1;

    int rc = 0;
    /* Every golden output of the case must be one the op produced... */
    for (size_t t = 0; rc == 0 && t < gf->n; t++) {
        const char *full = gf->names[t];
        if (strncmp(full, name, plen) != 0 || full[plen] != '/')
            continue;
        char base[64];
        snprintf(base, sizeof base, "%s", full + plen + 1);
        const size_t bl = strlen(base);
        if (bl > 4 && strcmp(base + bl - 4, "_f64") == 0)
            base[bl - 4] = '\0';
        if (!tfm_op_has_output(op, base))
            continue;   /* an input or a parameter, checked by tfm_op_run */
        size_t i;
        for (i = 0; i < res.n && strcmp(res.names[i], base) != 0; i++) {
        }
        if (i == res.n) {
            snprintf(err, errlen, "%s: case '%s' holds output '%s', which op '%s' did not "
                     "produce with these inputs and parameters", path, name, full + plen + 1,
                     op->name);
            rc = -1;
        }
    }
    /* ... and every output the op produced must be in the golden. */
    for (size_t i = 0; rc == 0 && i < res.n; i++) {
        const Tensor *got = &res.tensors[i];
        char full[256], tname[256];
        snprintf(full, sizeof full, "%s/%s", name, res.names[i]);
        snprintf(tname, sizeof tname, "%s/%s_f64", name, res.names[i]);
        const Tensor *torch = golden_find(gf, full), *truth = golden_find(gf, tname);
        if (!torch) {
            snprintf(err, errlen, "%s: op '%s' produces output '%s' but case '%s' lacks it "
                     "(no tensor '%s')", path, op->name, res.names[i], name, full);
            rc = -1;
            break;
        }
        if (oc->against_truth && !truth) {
            snprintf(err, errlen, "%s: case '%s' is held to the truth but has no '%s'", path,
                     name, tname);
            rc = -1;
            break;
        }
        const Tensor *shaped[2] = {torch, truth};
        for (int s = 0; s < 2 && rc == 0; s++) {
            if (!shaped[s])
                continue;
            const TfmDType want_dt = s == 0 ? got->dtype == TFM_I64 ? TFM_I64 : TFM_F32 : TFM_F64;
            if (shaped[s]->dtype != want_dt || !same_shape(shaped[s], got)) {
                char a[128], b[128];
                tfm_shape_str(a, sizeof a, got->ndim, got->shape);
                tfm_shape_str(b, sizeof b, shaped[s]->ndim, shaped[s]->shape);
                snprintf(err, errlen, "%s: case '%s' output '%s': computed %s %s, golden '%s' "
                         "is %s %s", path, name, res.names[i], tfm_dtype_name(got->dtype), a,
                         s ? tname : full, tfm_dtype_name(shaped[s]->dtype), b);
                rc = -1;
            }
        }
        if (rc != 0)
            break;
        if (got->dtype != TFM_F32) {
            snprintf(err, errlen, "%s: case '%s' output '%s' is %s; goldens compare float "
                     "outputs only", path, name, res.names[i], tfm_dtype_name(got->dtype));
            rc = -1;
            break;
        }
        OutputCheck *c = &oc->outputs[oc->n++];
        snprintf(c->output, sizeof c->output, "%s", res.names[i]);
        c->want = oc->against_truth ? truth : torch;
        c->vs_want = compare_f32(tensor_f32(got), got->numel, c->want, op->atol, op->rtol);
        c->has_truth = truth != NULL;
        if (truth) {
            c->vs_truth = compare_f32(tensor_f32(got), got->numel, truth, op->atol, op->rtol);
            c->torch_vs_truth = compare_f32(tensor_f32(torch), torch->numel, truth, op->atol,
                                            op->rtol);
        }
    }
    op_outputs_free(&res);
    return rc;
}

/* ---- the oracle table ---------------------------------------------------------------------- */

void tfm_check_header(FILE *f)
{
    fprintf(f, "%-14s %-30s %-6s %10s %10s %10s | %-9s %s\n", "chapter", "case/output", "variant",
            "max_abs", "rel_err", "vs f64:tfm", "torch", "result");
}

int tfm_check_chapter(const TfmChapter *ch, unsigned variants, FILE *f, CheckTotals *tot)
{
    char path[1024], err[TFM_ERR_LEN];
    tfm_golden_path(path, sizeof path, ch);
    GoldenFile gf;
    if (golden_load(&gf, path, err, sizeof err) != 0) {
        if (f)
            fprintf(f, "%-14s %-30s %-6s ERROR %s\n", ch->name, "-", "-", err);
        tot->errors++;
        return -1;
    }
    char **cases;
    const size_t n = golden_cases(&gf, &cases);
    for (size_t i = 0; i < n; i++) {
        tot->cases++;
        size_t compared = 0;        /* outputs of the case, the same for every variant */
        const char *opname = NULL;  /* stays NULL for a pin or a case that did not run */
        for (int v = 0; v < 2; v++) {
            if (!(variants & (1u << v)))
                continue;
            CaseOutcome oc;
            if (case_run(&gf, cases[i], (TfmVariant)v, &oc, err, sizeof err) != 0) {
                if (f)
                    fprintf(f, "%-14s %-30s %-6s ERROR %s\n", ch->name, cases[i],
                            tfm_variant_name((TfmVariant)v), err);
                tot->errors++;
                continue;
            }
            if (!oc.op) {   /* a pin: once, not per variant */
                if (v == 0 || !(variants & 1u)) {
                    tot->pin_cases++;
                    if (f)
                        fprintf(f, "%-14s %-30s %-6s pin: %zu PyTorch tensors for the pin tests, "
                                "computed by no op\n", ch->name, cases[i], "-", oc.n_pinned);
                }
                continue;
            }
            for (size_t j = 0; j < oc.n; j++) {
                const OutputCheck *c = &oc.outputs[j];
                char label[128], ours[16] = "-", theirs[16] = "-";
                snprintf(label, sizeof label, "%s/%s", cases[i], c->output);
                if (c->has_truth) {
                    snprintf(ours, sizeof ours, "%.2e", c->vs_truth.rel_fro);
                    snprintf(theirs, sizeof theirs, "%.2e", c->torch_vs_truth.rel_fro);
                }
                tot->outputs++;
                tot->failed += !c->vs_want.pass;
                if (!f)
                    continue;
                fprintf(f, "%-14s %-30s %-6s %10.2e %10.2e %10s | %-9s %s%s\n", ch->name, label,
                        tfm_variant_name((TfmVariant)v), c->vs_want.max_abs, c->vs_want.rel_fro,
                        ours, theirs, c->vs_want.pass ? "PASS" : "FAIL",
                        oc.against_truth ? " (vs truth)" : "");
                if (!c->vs_want.pass) {
                    char l2[192];
                    snprintf(l2, sizeof l2, "    %s %s", label, tfm_variant_name((TfmVariant)v));
                    compare_print(f, l2, &c->vs_want, c->want, oc.op->atol, oc.op->rtol);
                }
            }
            compared = oc.n;
            opname = oc.op->name;
        }
        if (f && opname)
            fprintf(f, "%-14s %-30s %-6s op '%s': %zu output%s compared\n", ch->name, cases[i],
                    "-", opname, compared, compared == 1 ? "" : "s");
    }
    golden_free_cases(cases, n);
    golden_free(&gf);
    return 0;
}
