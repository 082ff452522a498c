/* ops.c — THE op table (ops.h): every op tfm runs, described once.
 *
 * Adding an op touches: its kernels (chapters/NN-name/), one entry here and its bind
 * (oracle/ops_NN_name.c, declared in binds.h), its cases in the exporter
 * (oracle/export_NN.py), and its test (tests/test_NN_name.c). Nothing else: `tfm run --help`,
 * `tfm check`, `tfm ops --json` (the notebooks' helpers) and `tfm bench --list` read it here.
 *
 * Shape rules use the chapter's dimension legend: B batch, H heads, T tokens (Tq queries, Tk
 * keys), D head width, E model width, V vocabulary, C classes, N rows, K inner dimension.
 */
#include "ops.h"

#include "attention.h"
#include "bert.h"
#include "encoder.h"
#include "functional.h"
#include "binds.h"
#include "layernorm.h"
#include "matmul.h"
#include "multihead.h"
#include "positional.h"
#include "pretrain.h"
#include "pretraining.h"
#include "tolerances.h"

/* Inputs: required and optional, by dtype set and rank range. */
#define IN(name, dts, lo, hi, shape) {name, dts, lo, hi, 0, shape}
#define OPT(name, dts, lo, hi, shape) {name, dts, lo, hi, 1, shape}
#define F32 DT(TFM_F32)
#define I64 DT(TFM_I64)
#define BOOL DT(TFM_BOOL)
/* Parameters. */
#define INT(name, def, lo, hi, help) {name, TFM_PARAM_INT, def, 0, lo, hi, NULL, help}
#define INT_REQ(name, lo, hi, help) {name, TFM_PARAM_INT, NULL, 0, lo, hi, NULL, help}
#define INT_OPT(name, lo, hi, help) {name, TFM_PARAM_INT, NULL, 1, lo, hi, NULL, help}
#define FLOAT(name, def, lo, hi, help) {name, TFM_PARAM_FLOAT, def, 0, lo, hi, NULL, help}
#define FLOAT_OPT(name, lo, hi, help) {name, TFM_PARAM_FLOAT, NULL, 1, lo, hi, NULL, help}
#define WORD(name, def, words, help) {name, TFM_PARAM_WORD, def, 0, 0, 0, words, help}
#define TOL(nn) .atol = TOL_##nn##_ATOL, .rtol = TOL_##nn##_RTOL
#define FLAG(name, def, help) INT(name, def, 0, 1, help)
#define BIG 9.007199254740992e15   /* 2^53: the largest int a double holds exactly */

/* The inputs and parameters an op and its backward share (the backward adds its
 * grad_<output>); Add & Norm takes LayerNorm's parameters. */
#define EMBEDDINGS_INPUTS \
    IN("input_ids", I64, 2, 2, "[B, T]"), IN("word_emb", F32, 2, 2, "[V, E]"), \
    IN("pos_emb", F32, 2, 2, "[P, E]"), OPT("type_emb", F32, 2, 2, "[G, E]"), \
    OPT("position_ids", I64, 2, 2, "[B, T]; absent: 0..T-1"), \
    OPT("token_type_ids", I64, 2, 2, "[B, T]; absent: 0")
#define LAYERNORM_INPUTS \
    IN("x", F32, 1, 8, "[..., *S]"), OPT("gamma", F32, 1, 8, "S (the weight)"), \
    OPT("beta", F32, 1, 8, "S (the bias)")
#define LAYERNORM_PARAMS \
    FLOAT("eps", "1e-05", 0, 1, "inside the square root; BERT uses 1e-12"), \
    INT_OPT("normalized_ndim", 1, 8, "how many trailing dimensions form S; " \
    "default gamma's rank, or 1")
#define ADD_NORM_INPUTS \
    IN("x", F32, 1, 8, "[..., *S], the sublayer's input"), \
    IN("s", F32, 1, 8, "[..., *S], the sublayer's output"), \
    OPT("gamma", F32, 1, 8, "S"), OPT("beta", F32, 1, 8, "S")
#define CROSS_ENTROPY_PARAMS \
    INT("ignore_index", "-100", -BIG, BIG, "a class index that adds nothing"), \
    WORD("reduction", "mean", "mean|sum|none", \
    "mean: weighted mean over the kept elements; none: one loss each"), \
    FLOAT("label_smoothing", "0", 0, 1, "eps: targets (1 - eps) y + eps / C")
#define FEEDFORWARD_INPUTS \
    IN("x", F32, 1, 8, "[..., E]"), IN("linear1.weight", F32, 2, 2, "[I, E]"), \
    OPT("linear1.bias", F32, 1, 1, "[I]"), IN("linear2.weight", F32, 2, 2, "[E, I]"), \
    OPT("linear2.bias", F32, 1, 1, "[E]")
#define FEEDFORWARD_PARAMS \
    WORD("activation", "relu", "relu|gelu", "gelu: the exact erf form (BERT's)")
#define ENCODER_LAYER_INPUTS \
    IN("src", F32, 3, 3, "[B, T, E]"), \
    OPT("src_key_padding_mask", BOOL, 2, 2, "[B, T], 1 = padding"), \
    OPT("src_mask", BOOL | F32, 2, 2, "[T, T]; BOOL 1 = blocked, F32 added"), \
    IN("self_attn.in_proj_weight", F32, 2, 2, "[3E, E]"), \
    OPT("self_attn.in_proj_bias", F32, 1, 1, "[3E]"), \
    IN("self_attn.out_proj.weight", F32, 2, 2, "[E, E]"), \
    OPT("self_attn.out_proj.bias", F32, 1, 1, "[E]"), \
    IN("linear1.weight", F32, 2, 2, "[I, E]"), OPT("linear1.bias", F32, 1, 1, "[I]"), \
    IN("linear2.weight", F32, 2, 2, "[E, I]"), OPT("linear2.bias", F32, 1, 1, "[E]"), \
    OPT("norm1.weight", F32, 1, 1, "[E]"), OPT("norm1.bias", F32, 1, 1, "[E]"), \
    OPT("norm2.weight", F32, 1, 1, "[E]"), OPT("norm2.bias", F32, 1, 1, "[E]")
#define ENCODER_LAYER_PARAMS \
    INT_REQ("nhead", 1, BIG, "H, a divisor of E"), \
    WORD("activation", "relu", "relu|gelu", "the module's default is relu"), \
    FLAG("norm_first", "0", "0: post-LN (BERT), 1: pre-LN"), \
    FLOAT("layer_norm_eps", "1e-05", 0, 1, "both LayerNorms' eps")
#define PRETRAINING_HEADS_INPUTS \
    IN("sequence_output", F32, 3, 3, "[B, T, E]"), IN("labels", I64, 2, 2, "[B, T]"), \
    IN("next_sentence_label", I64, 1, 1, "[B]"), \
    IN("bert.embeddings.word_embeddings.weight", F32, 2, 2, "[V, E], tied decoder"), \
    IN("cls.predictions.transform.dense.weight", F32, 2, 2, "[E, E]"), \
    IN("cls.predictions.transform.dense.bias", F32, 1, 1, "[E]"), \
    IN("cls.predictions.transform.LayerNorm.weight", F32, 1, 1, "[E]"), \
    IN("cls.predictions.transform.LayerNorm.bias", F32, 1, 1, "[E]"), \
    IN("cls.predictions.bias", F32, 1, 1, "[V]"), \
    IN("bert.pooler.dense.weight", F32, 2, 2, "[E, E]"), \
    IN("bert.pooler.dense.bias", F32, 1, 1, "[E]"), \
    IN("cls.seq_relationship.weight", F32, 2, 2, "[2, E]"), \
    IN("cls.seq_relationship.bias", F32, 1, 1, "[2]")
#define BERT_INPUTS \
    IN("input_ids", I64, 2, 2, "[B, T]"), \
    OPT("attention_mask", I64 | BOOL, 2, 2, "[B, T], 1 = attend (absent: all 1)"), \
    OPT("token_type_ids", I64, 2, 2, "[B, T] (absent: all 0)")
#define ATTENTION_PARAMS \
    FLAG("is_causal", "0", "1: query i sees keys j <= i"), \
    FLOAT_OPT("scale", -1e30, 1e30, "the score scale, used as given; default 1/sqrt(Dk)")
#define LINEAR_INPUTS \
    IN("x", F32, 1, 8, "[..., K]"), IN("w", F32, 2, 2, "[N, K]"), \
    OPT("bias", F32, 1, 1, "[N]")
#define MATMUL_INPUTS \
    IN("a", F32, 1, 8, "[..., M, K] or [K]"), IN("b", F32, 1, 8, "[..., K, N] or [K]")
#define SOFTMAX_PARAMS \
    INT("dim", "-1", -8, 7, "the dimension normalized; negative counts from the end")
#define LOG_SOFTMAX_PARAMS \
    INT("dim", "-1", -8, 7, "the dimension normalized; negative counts from the end")
#define GELU_PARAMS \
    WORD("approximate", "none", "none|tanh", "none: the erf form; tanh: GPT-2's")

/* The parameters of BertForPreTraining after a training step, by Hugging Face's keys without
 * "bert.", each layer's stacked over a first dimension L (as bert-backward's gradients). */
#define PRETRAIN_SNAPSHOT(s) \
    {s ".embeddings.word_embeddings.weight", "[V, E]"}, \
    {s ".embeddings.position_embeddings.weight", "[P, E]"}, \
    {s ".embeddings.token_type_embeddings.weight", "[G, E]"}, \
    {s ".embeddings.LayerNorm.weight", "[E]"}, {s ".embeddings.LayerNorm.bias", "[E]"}, \
    {s ".encoder.layer.attention.self.query.weight", "[L, E, E]"}, \
    {s ".encoder.layer.attention.self.key.weight", "[L, E, E]"}, \
    {s ".encoder.layer.attention.self.value.weight", "[L, E, E]"}, \
    {s ".encoder.layer.attention.self.query.bias", "[L, E]"}, \
    {s ".encoder.layer.attention.self.key.bias", "[L, E]"}, \
    {s ".encoder.layer.attention.self.value.bias", "[L, E]"}, \
    {s ".encoder.layer.attention.output.dense.weight", "[L, E, E]"}, \
    {s ".encoder.layer.attention.output.dense.bias", "[L, E]"}, \
    {s ".encoder.layer.attention.output.LayerNorm.weight", "[L, E]"}, \
    {s ".encoder.layer.attention.output.LayerNorm.bias", "[L, E]"}, \
    {s ".encoder.layer.intermediate.dense.weight", "[L, I, E]"}, \
    {s ".encoder.layer.intermediate.dense.bias", "[L, I]"}, \
    {s ".encoder.layer.output.dense.weight", "[L, E, I]"}, \
    {s ".encoder.layer.output.dense.bias", "[L, E]"}, \
    {s ".encoder.layer.output.LayerNorm.weight", "[L, E]"}, \
    {s ".encoder.layer.output.LayerNorm.bias", "[L, E]"}, \
    {s ".pooler.dense.weight", "[E, E]"}, {s ".pooler.dense.bias", "[E]"}, \
    {s ".cls.predictions.transform.dense.weight", "[E, E]"}, \
    {s ".cls.predictions.transform.dense.bias", "[E]"}, \
    {s ".cls.predictions.transform.LayerNorm.weight", "[E]"}, \
    {s ".cls.predictions.transform.LayerNorm.bias", "[E]"}, \
    {s ".cls.predictions.bias", "[V]"}, {s ".cls.seq_relationship.weight", "[2, E]"}, \
    {s ".cls.seq_relationship.bias", "[2]"}

/* The op table. */
static const TfmOp OPS[] = {
    /* ---------------------------------------------------------------- chapter 00 */
    {.name = "matmul", .chapter = 0,
     .summary = "torch.matmul(a, b): 1-D to 8-D, batch dimensions broadcast",
     .inputs = {MATMUL_INPUTS},
     .outputs = {{"out", "[broadcast(...), M, N], the 1-D sides dropped"}},
     TFM_KERNELS(matmul_naive, matmul_fast), TOL(00), .bind = bind_matmul},
    {.name = "linear", .chapter = 0,
     .summary = "F.linear(x, w, bias) = x w^T + bias",
     .inputs = {LINEAR_INPUTS},
     .outputs = {{"out", "[..., N]"}},
     TFM_KERNELS(linear_naive, linear_fast), TOL(00), .bind = bind_linear},
    {.name = "softmax", .chapter = 0,
     .summary = "F.softmax(input, dim)",
     .inputs = {IN("input", F32, 0, 8, "[...]")},
     .params = {SOFTMAX_PARAMS},
     .outputs = {{"out", "input's shape"}},
     TFM_KERNELS(softmax_naive, softmax_fast), TOL(00_FN), .bind = bind_softmax},
    {.name = "log-softmax", .chapter = 0,
     .summary = "F.log_softmax(input, dim)",
     .inputs = {IN("input", F32, 0, 8, "[...]")},
     .params = {LOG_SOFTMAX_PARAMS},
     .outputs = {{"out", "input's shape"}},
     TFM_KERNELS(log_softmax_naive, log_softmax_fast), TOL(00_FN), .bind = bind_log_softmax},
    {.name = "gelu", .chapter = 0,
     .summary = "F.gelu(input, approximate): x Phi(x), or its tanh approximation",
     .inputs = {IN("input", F32, 0, 8, "[...]")},
     .params = {GELU_PARAMS},
     .outputs = {{"out", "input's shape"}},
     TFM_KERNELS(gelu_naive, gelu_fast), TOL(00_FN), .bind = bind_gelu},

    /* ---------------------------------------------------------------- chapter 01 */
    {.name = "attention", .chapter = 1,
     .summary = "softmax(q k^T * scale + mask) v, PyTorch's scaled dot-product attention",
     .inputs = {IN("q", F32, 4, 4, "[B, H, Tq, Dk]"), IN("k", F32, 4, 4, "[B, H, Tk, Dk]"),
                IN("v", F32, 4, 4, "[B, H, Tk, Dv]"),
                OPT("attn_mask", F32, 2, 4, "[Tq, Tk], [B*H, Tq, Tk] or [B, H, Tq, Tk], added"),
                OPT("key_padding_mask", BOOL, 2, 2, "[B, Tk], 1 = ignore this key")},
     .params = {ATTENTION_PARAMS},
     .outputs = {{"out", "[B, H, Tq, Dv]"}, {"probs", "[B, H, Tq, Tk]"}},
     TFM_KERNELS(attention_forward_naive, attention_forward_fast), TOL(01),
     .bind = bind_attention},
    {.name = "self-attention", .chapter = 1,
     .summary = "article 000 sec. 3.1's single head: (softmax(XWq (XWk)^T / sqrt d) XWv) Wo",
     .inputs = {IN("x", F32, 2, 2, "[n, d]"), IN("w_q", F32, 2, 2, "[d, d]"),
                IN("w_k", F32, 2, 2, "[d, d]"), IN("w_v", F32, 2, 2, "[d, d]"),
                IN("w_o", F32, 2, 2, "[d, d], right-multiplied")},
     .outputs = {{"out", "[n, d]"}},
     TFM_KERNELS(attention_forward_naive, attention_forward_fast), TOL(01),
     .bind = bind_self_attention},

    /* ---------------------------------------------------------------- chapter 02 */
    {.name = "mha", .chapter = 2,
     .summary = "nn.MultiheadAttention(E, num_heads, batch_first=True) forward, eval mode",
     .inputs = {IN("query", F32, 3, 3, "[B, Tq, E]"),
                OPT("key", F32, 3, 3, "[B, Tk, E]; absent: key = query"),
                OPT("value", F32, 3, 3, "[B, Tk, E]; absent: value = key"),
                IN("in_proj_weight", F32, 2, 2, "[3E, E]"), OPT("in_proj_bias", F32, 1, 1, "[3E]"),
                IN("out_proj_weight", F32, 2, 2, "[E, E]"), OPT("out_proj_bias", F32, 1, 1, "[E]"),
                OPT("key_padding_mask", BOOL, 2, 2, "[B, Tk], 1 = ignore this key"),
                OPT("attn_mask", BOOL | F32, 2, 3,
                    "[Tq, Tk] or [B*H, Tq, Tk]; BOOL 1 = blocked, F32 added")},
     .params = {INT_REQ("num_heads", 1, BIG, "H, a divisor of E"),
                FLAG("need_weights", "1", "1: also return attn_weights"),
                FLAG("average_attn_weights", "1", "1: attn_weights averaged over heads")},
     .outputs = {{"attn_output", "[B, Tq, E]"},
                 {"attn_weights", "[B, Tq, Tk] averaged, or [B, H, Tq, Tk]"}},
     TFM_KERNELS(multihead_forward_naive, multihead_forward_fast), TOL(02), .bind = bind_mha},

    /* ---------------------------------------------------------------- chapter 03 */
    {.name = "pe", .chapter = 3,
     .summary = "sinusoidal positional encoding, sin/cos interleaved",
     .inputs = {IN("positions", I64, 1, 1, "[T], each in 0..2^24")},
     .params = {INT_REQ("d_model", 1, BIG, "E, the encoding width")},
     .outputs = {{"out", "[T, E]"}},
     TFM_KERNELS(pe_sinusoidal_naive, pe_sinusoidal_fast), TOL(03), .bind = bind_pe},
    {.name = "embeddings", .chapter = 3,
     .summary = "BERT's embedding sum (word + type) + pos, before its LayerNorm",
     .inputs = {EMBEDDINGS_INPUTS},
     .outputs = {{"out", "[B, T, E]"}},
     TFM_KERNELS(embeddings_forward_naive, embeddings_forward_fast), TOL(03),
     .bind = bind_embeddings},

    /* ---------------------------------------------------------------- chapter 04 */
    {.name = "layernorm", .chapter = 4,
     .summary = "nn.LayerNorm(normalized_shape): over the trailing dimensions gamma names",
     .inputs = {LAYERNORM_INPUTS},
     .params = {LAYERNORM_PARAMS},
     .outputs = {{"out", "[..., *S]"}, {"mean", "[...]"}, {"rstd", "[...], 1/sqrt(var + eps)"}},
     TFM_KERNELS(layernorm_forward_naive, layernorm_forward_fast), TOL(04),
     .bind = bind_layernorm},
    {.name = "add-norm", .chapter = 4,
     .summary = "LN(x + s): post-LN Add & Norm (the original Transformer, BERT)",
     .inputs = {ADD_NORM_INPUTS},
     .params = {LAYERNORM_PARAMS},
     .outputs = {{"out", "[..., *S]"}, {"mean", "[...] of x + s"}, {"rstd", "[...]"}},
     TFM_KERNELS(add_norm_forward_naive, add_norm_forward_fast), TOL(04),
     .bind = bind_add_norm},
    {.name = "pre-norm", .chapter = 4,
     .summary = "x + LN(x) w^T + bias: a pre-LN block with a Linear sublayer (GPT-2 style)",
     .inputs = {IN("x", F32, 1, 8, "[..., E]"), IN("w", F32, 2, 2, "[E, E]"),
                OPT("bias", F32, 1, 1, "[E]"), OPT("gamma", F32, 1, 1, "[E]"),
                OPT("beta", F32, 1, 1, "[E]")},
     .params = {FLOAT("eps", "1e-05", 0, 1, "inside the square root")},
     .outputs = {{"out", "[..., E]"}, {"norm", "[..., E] = LN(x)"}, {"mean", "[...]"},
                 {"rstd", "[...]"}},
     TFM_KERNELS(pre_norm_linear_forward_naive, pre_norm_linear_forward_fast), TOL(04),
     .bind = bind_pre_norm},

    /* ---------------------------------------------------------------- chapter 05 */
    {.name = "mlm-mask", .chapter = 5,
     .summary = "DataCollatorForLanguageModeling's masking, with tfm's generator",
     .inputs = {IN("input_ids", I64, 1, 8, "[B, T] (any shape)"),
                IN("special_ids", I64, 1, 1, "[K], never masked")},
     .params = {FLOAT("mlm_probability", "0.15", 0, 1, "chance a token is selected"),
                FLOAT("mask_replace_prob", "0.8", 0, 1, "share of selected -> [MASK]"),
                FLOAT("random_replace_prob", "0.1", 0, 1, "share of selected -> a random id"),
                INT_REQ("mask_token_id", 0, BIG, "[MASK]'s id (103 in bert-base-uncased)"),
                INT_REQ("vocab_size", 1, BIG, "V: random ids come from [0, V)"),
                INT_REQ("seed", 0, BIG, "of tfm's generator")},
     .outputs = {{"input_ids", "[B, T], masked"}, {"labels", "[B, T], -100 where unselected"}},
     TFM_KERNELS(mlm_mask, mlm_mask), TOL(05), .bind = bind_mlm_mask},
    {.name = "mlm-loss", .chapter = 5,
     .summary = "masked-LM cross-entropy, mean over labelled rows (NaN if none)",
     .inputs = {IN("logits", F32, 1, 8, "[..., V]"),
                IN("labels", I64, 0, 7, "[...], -100 = ignored")},
     .outputs = {{"loss", "[]"}, {"token_loss", "[...], 0 where ignored"}},
     TFM_KERNELS(cross_entropy_naive, cross_entropy_fast), TOL(05), .bind = bind_mlm_loss},
    {.name = "nsp-loss", .chapter = 5,
     .summary = "next-sentence cross-entropy",
     .inputs = {IN("seq_relationship_logits", F32, 2, 2, "[B, 2]"),
                IN("next_sentence_label", I64, 1, 1, "[B]")},
     .outputs = {{"loss", "[]"}},
     TFM_KERNELS(cross_entropy_naive, cross_entropy_fast), TOL(05), .bind = bind_nsp_loss},
    {.name = "pretraining-heads", .chapter = 5,
     .summary = "BertForPreTraining's MLM and NSP heads and losses from sequence_output",
     .inputs = {PRETRAINING_HEADS_INPUTS},
     .outputs = {{"masked_logits", "[S, V], the rows with labels != -100"},
                 {"seq_relationship_logits", "[B, 2]"}, {"mlm_loss", "[]"}, {"nsp_loss", "[]"},
                 {"loss", "[] = mlm_loss + nsp_loss, BertForPreTraining's total"}},
     TFM_KERNELS(mlm_forward_naive, mlm_forward_fast), TOL(05),
     .bind = bind_pretraining_heads},
    {.name = "cross-entropy", .chapter = 5,
     .summary = "F.cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)",
     .inputs = {IN("input", F32, 1, 8, "[C] or [N, C, d1..dk], the classes on dim 1"),
                IN("target", I64 | F32, 0, 7,
                   "I64 class indices [N, d1..dk] ([] for input [C]), or F32 probabilities of "
                   "input's shape"),
                OPT("weight", F32, 1, 1, "[C], a rescaling per class")},
     .params = {CROSS_ENTROPY_PARAMS},
     .outputs = {{"out", "[] (mean, sum), or the per-element shape [N, d1..dk] (none)"}},
     TFM_KERNELS(cross_entropy_loss_naive, cross_entropy_loss_fast), TOL(05),
     .bind = bind_cross_entropy},

    /* ---------------------------------------------------------------- chapter 06 */
    {.name = "feedforward", .chapter = 6,
     .summary = "linear2(act(linear1(x))): nn.TransformerEncoderLayer's feed-forward half",
     .inputs = {FEEDFORWARD_INPUTS},
     .params = {FEEDFORWARD_PARAMS},
     .outputs = {{"out", "[..., E]"}},
     TFM_KERNELS(feedforward_forward_naive, feedforward_forward_fast), TOL(06),
     .bind = bind_feedforward},
    {.name = "encoder-layer", .chapter = 6,
     .summary = "nn.TransformerEncoderLayer(batch_first=True, dropout=0) called as a whole",
     .inputs = {ENCODER_LAYER_INPUTS},
     .params = {ENCODER_LAYER_PARAMS},
     .outputs = {{"out", "[B, T, E]"}},
     TFM_KERNELS(encoder_layer_forward_naive, encoder_layer_forward_fast), TOL(06),
     .bind = bind_encoder_layer},
    {.name = "bert", .chapter = 6,
     .summary = "Hugging Face BertModel's forward, the model from --model DIR",
     .inputs = {BERT_INPUTS},
     .params = {FLAG("output_attentions", "0", "1: also the attentions of every layer"),
                FLAG("output_hidden_states", "0", "1: also the input of every layer and the last")},
     .outputs = {{"last_hidden_state", "[B, T, E]"}, {"pooler_output", "[B, E]"},
                 {"attentions", "[L, B, H, T, T]"}, {"hidden_states", "[L+1, B, T, E]"}},
     TFM_KERNELS(bert_forward_naive, bert_forward_fast), TOL(06), .bind = bind_bert,
     .model = 1},

    /* ---------------------------------------------------------------- chapter 07
     * The backward ops: OP's inputs and parameters plus grad_<output> (the upstream gradient
     * dL/d output) -> grad_<input> for every float input, as torch.autograd.grad gives them.
     * Their kernels sit beside the forwards, in the forward's chapter; their goldens and
     * tolerances are chapter 07's. */
    {.name = "matmul-backward", .chapter = 7,
     .summary = "torch.matmul's gradients: grad_a = grad_out b^T, grad_b = a^T grad_out",
     .inputs = {MATMUL_INPUTS, IN("grad_out", F32, 0, 8, "out's shape")},
     .outputs = {{"grad_a", "a's shape (summed over broadcast batch entries)"},
                 {"grad_b", "b's shape"}},
     TFM_KERNELS(matmul_backward_naive, matmul_backward_fast), TOL(07_MATMUL),
     .bind = bind_matmul_backward},
    {.name = "linear-backward", .chapter = 7,
     .summary = "F.linear's gradients: grad_x = g w, grad_w = g^T x, grad_bias = sum of g",
     .inputs = {LINEAR_INPUTS, IN("grad_out", F32, 1, 8, "[..., N]")},
     .outputs = {{"grad_x", "[..., K]"}, {"grad_w", "[N, K]"}, {"grad_bias", "[N], with bias"}},
     TFM_KERNELS(linear_backward_naive, linear_backward_fast), TOL(07_MATMUL),
     .bind = bind_linear_backward},
    {.name = "softmax-backward", .chapter = 7,
     .summary = "F.softmax's gradient: y (g - sum(g y)) along dim",
     .inputs = {IN("input", F32, 0, 8, "[...]"), IN("grad_out", F32, 0, 8, "input's shape")},
     .params = {SOFTMAX_PARAMS},
     .outputs = {{"grad_input", "input's shape"}},
     TFM_KERNELS(softmax_backward_naive, softmax_backward_fast), TOL(07_FN),
     .bind = bind_softmax_backward},
    {.name = "log-softmax-backward", .chapter = 7,
     .summary = "F.log_softmax's gradient: g - softmax(input) sum(g) along dim",
     .inputs = {IN("input", F32, 0, 8, "[...]"), IN("grad_out", F32, 0, 8, "input's shape")},
     .params = {LOG_SOFTMAX_PARAMS},
     .outputs = {{"grad_input", "input's shape"}},
     TFM_KERNELS(log_softmax_backward_naive, log_softmax_backward_fast), TOL(07_FN),
     .bind = bind_log_softmax_backward},
    {.name = "gelu-backward", .chapter = 7,
     .summary = "F.gelu's gradient: g (Phi(x) + x phi(x)), or the tanh form's",
     .inputs = {IN("input", F32, 0, 8, "[...]"), IN("grad_out", F32, 0, 8, "input's shape")},
     .params = {GELU_PARAMS},
     .outputs = {{"grad_input", "input's shape"}},
     TFM_KERNELS(gelu_backward_naive, gelu_backward_fast), TOL(07_FN),
     .bind = bind_gelu_backward},
    {.name = "attention-backward", .chapter = 7,
     .summary = "attention's gradients, FlashAttention-2's scheme in fast (no [Tq, Tk] buffer)",
     .inputs = {IN("q", F32, 4, 4, "[B, H, Tq, Dk]"), IN("k", F32, 4, 4, "[B, H, Tk, Dk]"),
                IN("v", F32, 4, 4, "[B, H, Tk, Dv]"),
                OPT("attn_mask", F32, 2, 4, "[Tq, Tk], [B*H, Tq, Tk] or [B, H, Tq, Tk], added "
                    "(a constant: no gradient)"),
                OPT("key_padding_mask", BOOL, 2, 2, "[B, Tk], 1 = ignore this key"),
                IN("grad_out", F32, 4, 4, "[B, H, Tq, Dv]")},
     .params = {ATTENTION_PARAMS},
     .outputs = {{"grad_q", "[B, H, Tq, Dk]"}, {"grad_k", "[B, H, Tk, Dk]"},
                 {"grad_v", "[B, H, Tk, Dv]"}},
     TFM_KERNELS(attention_backward_naive, attention_backward_fast), TOL(07_ATTN),
     .bind = bind_attention_backward},
    {.name = "mha-backward", .chapter = 7,
     .summary = "nn.MultiheadAttention's gradients: self-attention, or cross-attention (key, value)",
     .inputs = {IN("query", F32, 3, 3, "[B, Tq, E]"),
                OPT("key", F32, 3, 3, "[B, Tk, E]; absent: key = query"),
                OPT("value", F32, 3, 3, "[B, Tk, E]; absent: value = key"),
                IN("in_proj_weight", F32, 2, 2, "[3E, E]"), OPT("in_proj_bias", F32, 1, 1, "[3E]"),
                IN("out_proj_weight", F32, 2, 2, "[E, E]"), OPT("out_proj_bias", F32, 1, 1, "[E]"),
                OPT("key_padding_mask", BOOL, 2, 2, "[B, Tk], 1 = ignore this key"),
                OPT("attn_mask", BOOL | F32, 2, 3,
                    "[Tq, Tk] or [B*H, Tq, Tk]; BOOL 1 = blocked, F32 added (a constant)"),
                IN("grad_attn_output", F32, 3, 3, "[B, Tq, E]")},
     .params = {INT_REQ("num_heads", 1, BIG, "H, a divisor of E")},
     .outputs = {{"grad_query", "[B, Tq, E], with the k and v paths where key, value are absent"},
                 {"grad_key", "[B, Tk, E] when key is given, with the v path where value is absent"},
                 {"grad_value", "[B, Tk, E] when value is given"},
                 {"grad_in_proj_weight", "[3E, E]"}, {"grad_in_proj_bias", "[3E], with the bias"},
                 {"grad_out_proj_weight", "[E, E]"}, {"grad_out_proj_bias", "[E], with the bias"}},
     TFM_KERNELS(multihead_backward_naive, multihead_backward_fast), TOL(07_ATTN),
     .bind = bind_mha_backward},
    {.name = "encoder-layer-backward", .chapter = 7,
     .summary = "nn.TransformerEncoderLayer's gradients, post-LN and pre-LN",
     .inputs = {ENCODER_LAYER_INPUTS, IN("grad_out", F32, 3, 3, "[B, T, E]")},
     .params = {ENCODER_LAYER_PARAMS},
     .outputs = {{"grad_src", "[B, T, E]"},
                 {"grad_self_attn.in_proj_weight", "[3E, E]"},
                 {"grad_self_attn.in_proj_bias", "[3E]"},
                 {"grad_self_attn.out_proj.weight", "[E, E]"},
                 {"grad_self_attn.out_proj.bias", "[E]"},
                 {"grad_linear1.weight", "[I, E]"}, {"grad_linear1.bias", "[I]"},
                 {"grad_linear2.weight", "[E, I]"}, {"grad_linear2.bias", "[E]"},
                 {"grad_norm1.weight", "[E]"}, {"grad_norm1.bias", "[E]"},
                 {"grad_norm2.weight", "[E]"}, {"grad_norm2.bias", "[E]"}},
     TFM_KERNELS(encoder_layer_backward_naive, encoder_layer_backward_fast), TOL(07_LAYER),
     .bind = bind_encoder_layer_backward},
    {.name = "layernorm-backward", .chapter = 7,
     .summary = "nn.LayerNorm's gradients: grad_x (three terms), grad_gamma, grad_beta",
     .inputs = {LAYERNORM_INPUTS, IN("grad_out", F32, 1, 8, "x's shape")},
     .params = {LAYERNORM_PARAMS},
     .outputs = {{"grad_x", "[..., *S]"}, {"grad_gamma", "S, with gamma"},
                 {"grad_beta", "S, with beta"}},
     TFM_KERNELS(layernorm_backward_naive, layernorm_backward_fast), TOL(07_LN),
     .bind = bind_layernorm_backward},
    {.name = "add-norm-backward", .chapter = 7,
     .summary = "LN(x + s)'s gradients: the same grad to x and s, grad_gamma, grad_beta",
     .inputs = {ADD_NORM_INPUTS, IN("grad_out", F32, 1, 8, "x's shape")},
     .params = {LAYERNORM_PARAMS},
     .outputs = {{"grad_x", "[..., *S]"}, {"grad_s", "[..., *S]"}, {"grad_gamma", "S, with gamma"},
                 {"grad_beta", "S, with beta"}},
     TFM_KERNELS(add_norm_backward_naive, add_norm_backward_fast), TOL(07_LN),
     .bind = bind_add_norm_backward},
    {.name = "bert-backward", .chapter = 7,
     .summary = "BertModel's gradients from those of its outputs, the model from --model DIR",
     .inputs = {BERT_INPUTS, OPT("grad_last_hidden_state", F32, 3, 3, "[B, T, E] (absent: 0)"),
                OPT("grad_pooler_output", F32, 2, 2, "[B, E] (absent: 0)")},
     .outputs = {{"grad_embeddings.word_embeddings.weight", "[V, E], pad_token_id's row 0"},
                 {"grad_embeddings.position_embeddings.weight", "[P, E]"},
                 {"grad_embeddings.token_type_embeddings.weight", "[G, E]"},
                 {"grad_embeddings.LayerNorm.weight", "[E]"},
                 {"grad_embeddings.LayerNorm.bias", "[E]"},
                 {"grad_pooler.dense.weight", "[E, E]"}, {"grad_pooler.dense.bias", "[E]"},
                 {"grad_encoder.layer.attention.self.query.weight", "[L, E, E]: layer l's at [l]"},
                 {"grad_encoder.layer.attention.self.query.bias", "[L, E]"},
                 {"grad_encoder.layer.attention.self.key.weight", "[L, E, E]"},
                 {"grad_encoder.layer.attention.self.key.bias", "[L, E]"},
                 {"grad_encoder.layer.attention.self.value.weight", "[L, E, E]"},
                 {"grad_encoder.layer.attention.self.value.bias", "[L, E]"},
                 {"grad_encoder.layer.attention.output.dense.weight", "[L, E, E]"},
                 {"grad_encoder.layer.attention.output.dense.bias", "[L, E]"},
                 {"grad_encoder.layer.attention.output.LayerNorm.weight", "[L, E]"},
                 {"grad_encoder.layer.attention.output.LayerNorm.bias", "[L, E]"},
                 {"grad_encoder.layer.intermediate.dense.weight", "[L, I, E]"},
                 {"grad_encoder.layer.intermediate.dense.bias", "[L, I]"},
                 {"grad_encoder.layer.output.dense.weight", "[L, E, I]"},
                 {"grad_encoder.layer.output.dense.bias", "[L, E]"},
                 {"grad_encoder.layer.output.LayerNorm.weight", "[L, E]"},
                 {"grad_encoder.layer.output.LayerNorm.bias", "[L, E]"}},
     TFM_KERNELS(bert_backward_naive, bert_backward_fast), TOL(07_LAYER),
     .bind = bind_bert_backward, .model = 1},
    {.name = "pretraining-heads-backward", .chapter = 7,
     .summary = "BertForPreTraining's heads' gradients, the tied decoder's into the embeddings",
     .inputs = {PRETRAINING_HEADS_INPUTS, IN("grad_loss", F32, 0, 0, "[], of loss = mlm_loss + nsp_loss")},
     .outputs = {{"grad_sequence_output", "[B, T, E]"},
                 {"grad_bert.embeddings.word_embeddings.weight", "[V, E], the decoder's share"},
                 {"grad_cls.predictions.transform.dense.weight", "[E, E]"},
                 {"grad_cls.predictions.transform.dense.bias", "[E]"},
                 {"grad_cls.predictions.transform.LayerNorm.weight", "[E]"},
                 {"grad_cls.predictions.transform.LayerNorm.bias", "[E]"},
                 {"grad_cls.predictions.bias", "[V]"},
                 {"grad_bert.pooler.dense.weight", "[E, E]"},
                 {"grad_bert.pooler.dense.bias", "[E]"},
                 {"grad_cls.seq_relationship.weight", "[2, E]"},
                 {"grad_cls.seq_relationship.bias", "[2]"}},
     TFM_KERNELS(mlm_backward_naive, mlm_backward_fast), TOL(07_LAYER),
     .bind = bind_pretraining_heads_backward},
    {.name = "embeddings-backward", .chapter = 7,
     .summary = "the embedding sum's gradients: grad_out scattered into each table's rows",
     .inputs = {EMBEDDINGS_INPUTS, IN("grad_out", F32, 3, 3, "[B, T, E]")},
     .params = {INT("padding_idx", "-1", -1, BIG,
                    "word_emb's row that gets no gradient (nn.Embedding's padding_idx, "
                    "BERT's pad_token_id); -1: none")},
     .outputs = {{"grad_word_emb", "[V, E]"}, {"grad_pos_emb", "[P, E]"},
                 {"grad_type_emb", "[G, E], with type_emb"}},
     TFM_KERNELS(embeddings_backward_naive, embeddings_backward_fast), TOL(07_FN),
     .bind = bind_embeddings_backward},
    {.name = "cross-entropy-backward", .chapter = 7,
     .summary = "F.cross_entropy's gradients: grad_input, and grad_target for probabilities",
     .inputs = {IN("input", F32, 1, 8, "[C] or [N, C, d1..dk], the classes on dim 1"),
                IN("target", I64 | F32, 0, 7,
                   "I64 class indices [N, d1..dk] ([] for input [C]), or F32 probabilities of "
                   "input's shape"),
                OPT("weight", F32, 1, 1, "[C], a constant (PyTorch has no derivative for it)"),
                IN("grad_out", F32, 0, 7, "[] (mean, sum), or the per-element shape (none)")},
     .params = {CROSS_ENTROPY_PARAMS},
     .outputs = {{"grad_input", "input's shape"},
                 {"grad_target", "input's shape, with probabilities"}},
     TFM_KERNELS(cross_entropy_backward_naive, cross_entropy_backward_fast), TOL(07_FN),
     .bind = bind_cross_entropy_backward},
    {.name = "feedforward-backward", .chapter = 7,
     .summary = "linear2(act(linear1(x)))'s gradients, the encoder layer's feed-forward half",
     .inputs = {FEEDFORWARD_INPUTS, IN("grad_out", F32, 1, 8, "x's shape")},
     .params = {FEEDFORWARD_PARAMS},
     .outputs = {{"grad_x", "[..., E]"}, {"grad_linear1.weight", "[I, E]"},
                 {"grad_linear1.bias", "[I], with the bias"}, {"grad_linear2.weight", "[E, I]"},
                 {"grad_linear2.bias", "[E], with the bias"}},
     TFM_KERNELS(feedforward_backward_naive, feedforward_backward_fast), TOL(07_LAYER),
     .bind = bind_feedforward_backward},
    {.name = "pretrain-steps", .chapter = 9,
     .summary = "optimizer steps of BertForPreTraining (MLM + NSP, AdamW, warm-up, clipping) "
                "as Hugging Face's Trainer takes them, the model from --model DIR",
     .inputs = {IN("input_ids", I64, 3, 3, "[S, B, T], S = steps * grad_accum micro-batches"),
                IN("attention_mask", I64, 3, 3, "[S, B, T], 1 = attend"),
                IN("token_type_ids", I64, 3, 3, "[S, B, T]"),
                IN("labels", I64, 3, 3, "[S, B, T], the MLM labels: -100 or the token's id"),
                IN("next_sentence_label", I64, 2, 2, "[S, B], 0 = B follows A, 1 = random")},
     .params = {INT("steps", "2", 2, 1e9, "optimizer steps (the schedule's length)"),
                INT("grad_accum", "1", 1, 1e6, "micro-batches per optimizer step"),
                FLOAT("lr", "1e-4", 0, 1, "the peak learning rate"),
                INT("warmup", "0", 0, 1e9, "steps of linear warm-up, then linear decay to 0"),
                FLOAT("weight_decay", "0.01", 0, 1,
                      "AdamW's decoupled decay; none on biases and LayerNorm weights"),
                FLOAT("adam_eps", "1e-8", 0, 1, "AdamW's eps (betas 0.9, 0.999)"),
                FLOAT("max_grad_norm", "1", 0, 1e30, "clip_grad_norm_'s bound; 0: none")},
     .outputs = {{"loss", "[steps] mlm_loss + nsp_loss, mean over the micro-batches"},
                 {"mlm_loss", "[steps]"}, {"nsp_loss", "[steps]"},
                 {"learning_rate", "[steps] the learning rate each step used"},
                 {"grad_norm", "[steps] the gradients' norm before clipping"},
                 PRETRAIN_SNAPSHOT("step2"), PRETRAIN_SNAPSHOT("last")},
     TFM_KERNELS(bert_pretrain_step_naive, bert_pretrain_step_fast), TOL(09),
     .bind = bind_pretrain_steps, .model = 1},
};

const TfmOp *tfm_ops(size_t *n)
{
    *n = sizeof OPS / sizeof OPS[0];
    return OPS;
}
