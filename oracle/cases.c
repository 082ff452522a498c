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
    {2, "02-multihead", multihead_run, TOL_02_ATOL, TOL_02_RTOL},
    {3, "03-positional", positional_run, TOL_03_ATOL, TOL_03_RTOL},
    {4, "04-layernorm", layernorm_run, TOL_04_ATOL, TOL_04_RTOL},
    {5, "05-pretraining", pretraining_run, TOL_05_ATOL, TOL_05_RTOL},
};

/* One line per op of `tfm run`: name, chapter, the input that selects it, help. */
static const TfmOp OPS[] = {
    {"matmul", 0, "a", "a [M,K], b [K,N] -> out [M,N] = a b"},
    {"linear", 0, "x", "x [M,K], w [N,K], bias [N] (optional) -> out [M,N] = x w^T + bias"},
    {"attention", 1, "q",
     "q [B,H,Tq,Dk], k [B,H,Tk,Dk], v [B,H,Tk,Dv], attn_mask F32 [Tq,Tk] or [B,H,Tq,Tk] (optional,\n"
     "        additive), key_padding_mask BOOL [B,Tk] (optional, 1 = ignore), is_causal I64 [] (optional)\n"
     "        -> out [B,H,Tq,Dv], probs [B,H,Tq,Tk]"},
    {"mha", 2, "query",
     "query [B,Tq,E], key [B,Tk,E] (optional, = query), value [B,Tk,E] (optional, = key),\n"
     "        in_proj_weight [3E,E], in_proj_bias [3E], out_proj_weight [E,E], out_proj_bias [E]\n"
     "        (biases optional), num_heads I64 [], key_padding_mask BOOL [B,Tk] (optional, 1 = ignore),\n"
     "        attn_mask BOOL (1 = blocked) or F32 (additive) [Tq,Tk] or [B*H,Tq,Tk] (optional),\n"
     "        need_weights, average_attn_weights I64 [] (optional, 1) -> attn_output [B,Tq,E],\n"
     "        attn_weights [B,Tq,Tk] (averaged) or [B,H,Tq,Tk]: nn.MultiheadAttention, batch_first"},
    {"pe", 3, "positions",
     "positions I64 [T] (0..2^24), d_model I64 [] -> out [T,E] = sinusoidal PE, sin/cos interleaved"},
    {"embeddings", 3, "input_ids",
     "input_ids I64 [B,T], word_emb [V,E], pos_emb [P,E], type_emb [G,E] (optional),\n"
     "        position_ids I64 [B,T] (optional, 0..T-1), token_type_ids I64 [B,T] (optional, 0)\n"
     "        -> out [B,T,E] = (word + type) + pos, BERT's sum before its LayerNorm"},
    {"layernorm", 4, "x",
     "x [...,E], gamma [E], beta [E] (optional), eps F64 [] (optional, 1e-5) -> out [...,E] = LN(x),\n"
     "        mean [...], rstd [...] = 1/sqrt(var + eps): torch.nn.LayerNorm, biased variance"},
    {"add-norm", 4, "s",
     "x [...,E], s [...,E] (the sublayer's output), gamma, beta, eps as layernorm -> out = LN(x + s),\n"
     "        mean, rstd of x + s: post-LN Add & Norm (original Transformer, BERT)"},
    {"pre-norm", 4, "w",
     "x [...,E], w [E,E], bias [E] (optional), gamma, beta, eps as layernorm -> out = x + LN(x) w^T\n"
     "        + bias, norm = LN(x), mean, rstd: pre-LN block with a Linear sublayer (GPT-2 style)"},
    {"mlm-mask", 5, "input_ids",
     "input_ids I64 [B,T], mlm_probability F32 [], special_ids I64 [K], mask_token_id I64 [],\n"
     "        vocab_size I64 [], seed I64 [], mask_replace_prob, random_replace_prob F32 [] (optional,\n"
     "        0.8, 0.1) -> input_ids I64 [B,T] masked as HF's MLM collator does, labels I64 [B,T]"},
    {"mlm-loss", 5, "logits",
     "logits [...,V], labels I64 [...] (-100 = ignored) -> loss [] (mean cross-entropy over the\n"
     "        labelled rows; NaN if none), token_loss [...] (0 at ignored rows)"},
    {"nsp-loss", 5, "seq_relationship_logits",
     "seq_relationship_logits [B,2], next_sentence_label I64 [B] -> loss []"},
    {"pretraining-heads", 5, "sequence_output",
     "sequence_output [B,T,E], labels I64 [B,T], next_sentence_label I64 [B], BERT's head\n"
     "        parameters by their transformers names (cls.predictions.*, bert.pooler.dense.*,\n"
     "        cls.seq_relationship.*, bert.embeddings.word_embeddings.weight) -> masked_logits [S,V],\n"
     "        seq_relationship_logits [B,2], mlm_loss [], nsp_loss []"},
};

const TfmOp *tfm_ops(size_t *n) {
    *n = sizeof OPS / sizeof OPS[0];
    return OPS;
}

int tfm_run_op(OpOutputs *out, const TfmOp *op, const GoldenFile *in, const char *prefix,
               TfmVariant variant, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    /* Presence only: the runner checks the key input's dtype and shape like any other input's
     * (a key input need not be F32: token ids are I64). */
    char key[256];
    if (prefix[0]) snprintf(key, sizeof key, "%s/%s", prefix, op->key_input);
    else snprintf(key, sizeof key, "%s", op->key_input);
    if (!golden_find(in, key)) {
        snprintf(err, errlen, "%s: tensor '%s' is missing (op '%s' reads it; 'tfm run --help' "
                 "lists each op's tensors)", in->path ? in->path : "(tensors)", key, op->name);
        return -1;
    }
    size_t n;
    const TfmChapter *chs = tfm_chapters(&n);
    for (size_t i = 0; i < n; i++) {
        if (chs[i].number != op->chapter) continue;
        if (chs[i].run(out, in, prefix, variant, err, errlen) == 0) return 0;
        op_outputs_free(out);
        return -1;
    }
    snprintf(err, errlen, "op '%s': chapter %d is not in the chapter table", op->name, op->chapter);
    return -1;
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

/* ---- size guard (cases.h) ---- */

static size_t max_elements = TFM_MAX_ELEMENTS;

size_t tfm_max_elements(void) { return max_elements; }

size_t tfm_set_max_elements(size_t n) {
    size_t old = max_elements;
    max_elements = n;
    return old;
}

/* The elements a shape spans with each zero dimension counted as 1, saturating at SIZE_MAX:
 * how many times loops over its dimensions run, whether or not it holds any data. */
static size_t shape_extent(int ndim, const size_t *shape) {
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        size_t s = shape[d] ? shape[d] : 1;
        if (n > SIZE_MAX / s) return SIZE_MAX;
        n *= s;
    }
    return n;
}

static const Tensor *case_tensor(const GoldenFile *gf, const char *name, const char *tensor,
                                 TfmDType dt, int ndim, int required, char *err, size_t errlen) {
    char full[256];
    if (name[0]) snprintf(full, sizeof full, "%s/%s", name, tensor);
    else snprintf(full, sizeof full, "%s", tensor);
    err[0] = '\0';
    if (!required && !golden_find(gf, full)) return NULL;
    const Tensor *t = golden_require(gf, full, dt, ndim, err, errlen);
    if (t && shape_extent(t->ndim, t->shape) > max_elements) {
        char s[128];
        tfm_shape_str(s, sizeof s, t->ndim, t->shape);
        snprintf(err, errlen, "%s: tensor '%s' has shape %s, which spans more than %zu elements "
                 "(a zero dimension counted as 1); tfm refuses shapes that large",
                 gf->path ? gf->path : "(tensors)", full, s, max_elements);
        return NULL;
    }
    return t;
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
    size_t used = 0;   /* what the op's earlier outputs already span */
    for (size_t i = 0; i < o->n; i++) used += shape_extent(o->tensors[i].ndim, o->tensors[i].shape);
    size_t extent = ndim >= 0 && ndim <= TFM_MAX_DIMS ? shape_extent(ndim, shape) : 0;
    if (used > max_elements || extent > max_elements - used) {
        char s[128];
        tfm_shape_str(s, sizeof s, ndim, shape);
        snprintf(err, errlen, "output '%s' would have shape %s: with the op's other outputs that "
                 "spans more than %zu elements (a zero dimension counted as 1); tfm refuses "
                 "outputs that large", name, s, max_elements);
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
