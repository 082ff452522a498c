"""Chapter 05 goldens: cross-entropy with ignore_index (mlm-loss, nsp-loss), F.cross_entropy in
full (cross-entropy) and BERT's pretraining heads (pretraining-heads), with their numerical edge
cases.

Imported by oracle/export.py, which finds every oracle/export_NN.py: NAME is the golden file's
stem, SEED the chapter seed, REF the ref/ module whose crosscheck() must pass first, and
build(seed) returns a goldenlib.Golden (tensors, case names, case metadata).

The masking step (tfm run mlm-mask) has no golden: it draws from a random stream, and tfm's
generator is not torch's. Its tests are statistical (tests/test_05_pretraining.c). The labels of
the head cases below are made by ref's hf_mask_tokens, the collator's procedure on torch's
generator.

Size budget (random float32 hardly compresses): the vocabulary is 50 except in three cases at
bert-base-uncased's 30522: ce_bert_vocab (4 rows of logits given directly, 0.5 MB),
heads_bert_vocab (E = 8, so the tied [30522, 8] decoder is 1 MB; 2 labelled rows) and xent_mlm
(64 rows of logits on a grid of 2^-4, 2.5 MB; see there). Without xent_mlm the file stays under
3 MB.

The op cross-entropy (F.cross_entropy with weight, ignore_index, reduction, label_smoothing and
probability targets) has its own cases, "xent_*" (_xent_cases), computed by F.cross_entropy
itself in both precisions; ref's crosscheck() ties F.cross_entropy to each rule written out.
"""
import math

import torch
import torch.nn.functional as F

import ch05_pretraining as ref
from goldenlib import Case, Golden, emit, to_f64

NAME = "05-pretraining"
SEED = 5
REF = ref

IGNORE = ref.IGNORE_INDEX


def _labels(c, shape, V, p=0.15):
    """Random classes, kept with probability p (at least one kept), -100 elsewhere."""
    y = torch.randint(V, shape, generator=c.gen, dtype=torch.int64)
    keep = c.rand(*shape) < p
    keep.view(-1)[int(c.rand(1).item() * keep.numel())] = True
    return y.masked_fill(~keep, IGNORE)


def _ce_case(out, name, logits, labels):
    loss32, tok32 = ref.cross_entropy(logits, labels)
    loss64, tok64 = ref.cross_entropy(to_f64(logits), labels)
    emit(out, name, {"logits": logits, "labels": labels},
         {"loss": loss32, "token_loss": tok32}, {"loss": loss64, "token_loss": tok64},
         op="mlm-loss")


def _ce_cases(out, seed):
    def case(name):
        return Case(seed, name)

    c = case("ce_single_token")
    _ce_case(out, c.name, c.randn(1, 50), torch.tensor([17]))
    c = case("ce_small")
    _ce_case(out, c.name, c.randn(2, 9, 50), _labels(c, (2, 9), 50))
    c = case("ce_all_labelled")
    _ce_case(out, c.name, c.randn(7, 50), _labels(c, (7,), 50, p=1.0))
    c = case("ce_all_ignored")   # 0/0: PyTorch's loss is NaN, token_loss all 0
    _ce_case(out, c.name, c.randn(4, 50), torch.full((4,), IGNORE))
    c = case("ce_one_class")     # V = 1: log softmax is 0, every loss 0
    _ce_case(out, c.name, c.randn(3, 1), torch.zeros(3, dtype=torch.int64))
    c = case("ce_logits_100")    # exp(100) overflows float32: only the max shift saves it
    _ce_case(out, c.name, 100.0 + c.randn(5, 50), _labels(c, (5,), 50, p=1.0))
    c = case("ce_logits_1e4")
    _ce_case(out, c.name, 1e4 * c.randn(6, 50), _labels(c, (6,), 50, p=1.0))
    c = case("ce_neg_inf")       # -inf logits away from the label: finite
    z = c.randn(4, 50)
    z[0, :25] = -math.inf
    z[1, 1::2] = -math.inf
    z[3, :] = -math.inf
    z[3, 49] = 0.0               # one finite logit, in the last block of the fast variant
    _ce_case(out, c.name, z, torch.tensor([30, 0, 5, 49]))
    c = case("ce_neg_inf_label")  # -inf at the label: that row's loss and the mean are +inf
    z = c.randn(3, 50)
    z[1, 8] = -math.inf
    _ce_case(out, c.name, z, torch.tensor([2, 8, 40]))
    c = case("ce_pos_inf")       # +inf in a labelled row: inf - inf, NaN
    z = c.randn(3, 50)
    z[2, 33] = math.inf
    _ce_case(out, c.name, z, torch.tensor([2, 8, 40]))
    c = case("ce_all_neg_inf_row")  # softmax of all -inf: NaN
    z = c.randn(3, 70)
    z[0, :] = -math.inf
    _ce_case(out, c.name, z, torch.tensor([1, 2, 3]))
    c = case("ce_nonfinite_ignored")  # NaN / inf in ignored rows are never read: finite
    z = c.randn(4, 50)
    z[0, :] = math.nan
    z[2, 3] = math.inf
    z[3, :] = -math.inf
    _ce_case(out, c.name, z, torch.tensor([IGNORE, 7, IGNORE, IGNORE]))
    c = case("ce_bert_vocab")    # bert-base-uncased's vocabulary, 30522
    _ce_case(out, c.name, c.randn(4, 30522), torch.tensor([2054, IGNORE, 30521, 0]))


def _nsp_cases(out, seed):
    for name, B, ignore in (("nsp_batch", 8, False), ("nsp_ignored", 5, True)):
        c = Case(seed, name)
        z = c.randn(B, 2)
        y = torch.randint(2, (B,), generator=c.gen, dtype=torch.int64)
        if ignore:
            y[1] = IGNORE
        l32, _ = ref.cross_entropy(z, y)
        l64, _ = ref.cross_entropy(to_f64(z), y)
        emit(out, name, {"seq_relationship_logits": z, "next_sentence_label": y},
             {"loss": l32}, {"loss": l64}, op="nsp-loss")


def _heads(c, V, E):
    """A head with BERT's parameter names and weights scaled so activations stay of order 1."""
    m = ref.BertPretrainingHeadsRef(V, E)
    init = {
        "bert.embeddings.word_embeddings.weight": lambda: c.randn(V, E) * (2.0 / math.sqrt(E)),
        "bert.pooler.dense.weight": lambda: c.randn(E, E) / math.sqrt(E),
        "bert.pooler.dense.bias": lambda: 0.1 * c.randn(E),
        "cls.predictions.bias": lambda: 0.1 * c.randn(V),
        "cls.predictions.transform.dense.weight": lambda: c.randn(E, E) / math.sqrt(E),
        "cls.predictions.transform.dense.bias": lambda: 0.1 * c.randn(E),
        "cls.predictions.transform.LayerNorm.weight": lambda: 1.0 + 0.1 * c.randn(E),
        "cls.predictions.transform.LayerNorm.bias": lambda: 0.1 * c.randn(E),
        "cls.seq_relationship.weight": lambda: c.randn(2, E) / math.sqrt(E),
        "cls.seq_relationship.bias": lambda: 0.1 * c.randn(2),
    }
    params = dict(m.named_parameters())
    with torch.no_grad():
        for pname in ref.PARAM_NAMES:   # fixed order: the draws do not depend on dict order
            params[pname].copy_(init[pname]())
    return m


def _heads_case(out, name, m, h, labels, nsp_labels):
    m64 = ref.BertPretrainingHeadsRef(*m.bert.embeddings.word_embeddings.weight.shape).double()
    m64.load_state_dict(m.state_dict())
    with torch.no_grad():
        r32 = m(h, labels, nsp_labels)
        r64 = m64(to_f64(h), labels, nsp_labels)
    sel = labels != IGNORE

    def outputs(r):
        return {"masked_logits": r["prediction_scores"][sel],
                "seq_relationship_logits": r["seq_relationship_logits"],
                "mlm_loss": r["mlm_loss"], "nsp_loss": r["nsp_loss"],
                "loss": r["loss"]}   # the total, mlm_loss + nsp_loss (BertForPreTraining's)

    params = {k: v.detach() for k, v in m.named_parameters()}
    emit(out, name, {"sequence_output": h, "labels": labels, "next_sentence_label": nsp_labels,
                     **params}, outputs(r32), outputs(r64), op="pretraining-heads")


# Toy vocabulary of the example sentence: BERT's special tokens first, then words (V = 50).
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the quick brown fox jumps over lazy dog did not move at all a cat sat on mat it was "
         "very tired and then ran away from house because of rain sun came out bird sang "
         "song in tree big small red green blue old").split()
VOCAB = SPECIAL + WORDS
SENTENCE = ("[CLS] the quick brown fox jumps over the lazy dog [SEP] the dog did not move at "
            "all [SEP]").split()
PAD, CLS, SEP, MASK = 0, 2, 3, 4


def sentence_example(seed):
    """The example sentence masked by hf_mask_tokens: (ids, masked ids, labels), each [1, T].
    The first generator draw (from the case's seed on) that selects at least 4 tokens."""
    assert len(VOCAB) == 50 and len(set(VOCAB)) == 50
    ids = torch.tensor([[VOCAB.index(w) for w in SENTENCE]])
    c = Case(seed, "sentence_mask")
    while True:
        masked, labels = ref.hf_mask_tokens(ids, [PAD, CLS, SEP], MASK, len(VOCAB), c.gen)
        if int((labels != IGNORE).sum()) >= 4:
            return ids, masked, labels


def print_words(seed=SEED):
    """One line per token of the example sentence: position, word, what the model saw, kind
    (0 not selected, 1 [MASK], 2 random word, 3 unchanged). plots/05-pretraining.mk reads it."""
    ids, masked, labels = sentence_example(seed)
    for t, (i, mi, y) in enumerate(zip(ids[0].tolist(), masked[0].tolist(), labels[0].tolist())):
        kind = 0 if y == IGNORE else 1 if mi == MASK else 3 if mi == i else 2
        print(t, VOCAB[i], VOCAB[mi], kind)


def _xent_case(out, name, x, target, weight=None, **params):
    """F.cross_entropy(input, target, weight, **params) in both precisions, as op cross-entropy.
    params holds only what differs from F.cross_entropy's defaults (ignore_index -100,
    reduction mean, label_smoothing 0), which is also what the golden records."""
    order = ("ignore_index", "reduction", "label_smoothing")   # F.cross_entropy's order
    assert set(params) <= set(order), sorted(params)
    params = {k: params[k] for k in order if params.get(k) is not None}
    assert params.get("ignore_index", 0) != IGNORE and params.get("reduction") != "mean"
    assert params.get("label_smoothing", 1) != 0
    o32 = F.cross_entropy(x, target, weight=weight, **params)
    o64 = F.cross_entropy(to_f64(x), to_f64(target), weight=to_f64(weight), **params)
    emit(out, name, {"input": x, "target": target, "weight": weight}, {"out": o32},
         {"out": o64}, op="cross-entropy", params=params)
    return o32, o64


def _xent_cases(out, seed):
    """F.cross_entropy with all its rules: class indices or class probabilities, classes on dim 1
    of [N, C, d1, ...] (dim 0 of an unbatched [C]), weight, ignore_index, the three reductions and
    label_smoothing. Each case's comment says the rule it guards: what a wrong reading of that
    rule would change. Shapes have distinct sizes (N != C != d), so reading the wrong dimension
    as the classes changes the values or the shape."""
    def case(name):
        return Case(seed, name)

    def weight(c, C):   # class weights in [0.2, 3]: a weighted mean differs from a plain one
        return (0.2 + 2.8 * c.rand(C)).to(torch.float32)

    def probs(c, *shape):   # class probabilities over dim 1 (dim 0 when 1-D), rounded to float32
        r = c.rand(*shape) ** 2
        return (r / r.sum(dim=1 if len(shape) > 1 else 0, keepdim=True)).to(torch.float32)

    def classes(c, C, *shape, ignored=0, ignore=IGNORE):
        """Random classes in [0, C); the first `ignored` positions of the flattened target set to
        `ignore`, so that every case ignores the same count whatever the draws."""
        y = torch.randint(C, shape, generator=c.gen, dtype=torch.int64)
        y.view(-1)[:ignored] = ignore
        return y

    # ---- class indices, [N, C]: the mean, and the smallest shapes
    c = case("xent_mean")             # the mean over N of -log softmax at the target
    _xent_case(out, c.name, c.randn(8, 11), classes(c, 11, 8))
    c = case("xent_single_row")       # N = 1
    _xent_case(out, c.name, c.randn(1, 7), torch.tensor([4]))
    c = case("xent_one_class")        # C = 1: log softmax is 0, the loss 0
    _xent_case(out, c.name, c.randn(3, 1), torch.zeros(3, dtype=torch.int64))
    c = case("xent_odd")              # odd sizes, past any vector block of classes
    _xent_case(out, c.name, 3.0 * c.randn(13, 37), classes(c, 37, 13, ignored=2),
               weight(c, 37))
    # ---- weight: each term scaled by w[target], the mean divided by the sum of those weights
    c = case("xent_weight")           # the weighted mean divides by sum w[y], not by N
    _xent_case(out, c.name, c.randn(8, 11), torch.tensor([0, 3, 3, 10, 7, 3, 1, 0]),
               weight(c, 11))
    c = case("xent_weight_zero")      # w[y] = 0: no term and no share of the denominator
    w = weight(c, 11)
    w[3] = 0.0
    _xent_case(out, c.name, c.randn(8, 11), torch.tensor([0, 3, 3, 10, 7, 3, 1, 0]), w)
    # ---- ignore_index: an ignored position adds nothing and counts nothing
    c = case("xent_ignore_default")   # -100 (the default) in 3 of 9 rows: the mean over 6
    _xent_case(out, c.name, c.randn(9, 11), classes(c, 11, 9, ignored=3))
    c = case("xent_ignore_custom")    # ignore_index = 2, a valid class: rows with target 2 skipped
    _xent_case(out, c.name, c.randn(9, 11), torch.tensor([2, 5, 2, 0, 10, 2, 7, 1, 3]),
               ignore_index=2)
    c = case("xent_ignore_custom_weight")  # ... and their w[2] left out of the denominator
    _xent_case(out, c.name, c.randn(9, 11), torch.tensor([2, 5, 2, 0, 10, 2, 7, 1, 3]),
               weight(c, 11), ignore_index=2)
    c = case("xent_all_ignored")      # 0 / 0: the mean is NaN
    _xent_case(out, c.name, c.randn(4, 11), torch.full((4,), IGNORE))
    c = case("xent_all_ignored_weight")  # weighted 0 / 0: NaN too
    _xent_case(out, c.name, c.randn(4, 11), torch.full((4,), IGNORE), weight(c, 11))
    c = case("xent_all_ignored_sum")  # an empty sum: 0
    _xent_case(out, c.name, c.randn(4, 11), torch.full((4,), IGNORE), reduction="sum")
    c = case("xent_all_ignored_none")  # every position 0
    _xent_case(out, c.name, c.randn(4, 11), torch.full((4,), IGNORE), label_smoothing=0.1,
               reduction="none")
    # ---- reductions sum and none
    c = case("xent_sum")              # the sum: no division
    _xent_case(out, c.name, c.randn(8, 11), classes(c, 11, 8, ignored=2), reduction="sum")
    c = case("xent_sum_weight")       # the sum of w[y] * nll
    _xent_case(out, c.name, c.randn(8, 11), classes(c, 11, 8, ignored=2), weight(c, 11),
               reduction="sum")
    c = case("xent_none")             # per position, 0 where ignored: out [8]
    _xent_case(out, c.name, c.randn(8, 11), classes(c, 11, 8, ignored=2), reduction="none")
    c = case("xent_none_weight")      # per position w[y] * nll (not divided by anything)
    _xent_case(out, c.name, c.randn(8, 11), classes(c, 11, 8, ignored=2), weight(c, 11),
               reduction="none")
    # ---- label_smoothing e: (1 - e) * nll + e / C * sum_c w_c * (-log p_c), ignored rows 0;
    # the mean divides by sum w[y] over the kept rows, as without smoothing
    c = case("xent_ls")
    _xent_case(out, c.name, c.randn(8, 11), classes(c, 11, 8), label_smoothing=0.1)
    c = case("xent_ls_weight")        # the smoothing term weighted by w_c, the mean by sum w[y]
    _xent_case(out, c.name, c.randn(8, 11), classes(c, 11, 8), weight(c, 11),
               label_smoothing=0.1)
    c = case("xent_ls_ignore")        # ignored rows add no smoothing term either
    _xent_case(out, c.name, c.randn(9, 11), classes(c, 11, 9, ignored=3), label_smoothing=0.1)
    c = case("xent_ls_weight_ignore")
    _xent_case(out, c.name, c.randn(9, 11), classes(c, 11, 9, ignored=3), weight(c, 11),
               label_smoothing=0.1)
    c = case("xent_ls_custom_ignore")  # ignore_index = 2 with smoothing
    _xent_case(out, c.name, c.randn(9, 11), torch.tensor([2, 5, 2, 0, 10, 2, 7, 1, 3]),
               ignore_index=2, label_smoothing=0.1)
    c = case("xent_ls_none")          # per position, with smoothing
    _xent_case(out, c.name, c.randn(9, 11), classes(c, 11, 9, ignored=3), weight(c, 11),
               reduction="none", label_smoothing=0.1)
    c = case("xent_ls_sum_weight")
    _xent_case(out, c.name, c.randn(9, 11), classes(c, 11, 9, ignored=3), weight(c, 11),
               reduction="sum", label_smoothing=0.25)
    c = case("xent_ls_full")          # e = 1: the target's own term drops out entirely
    _xent_case(out, c.name, c.randn(6, 11), classes(c, 11, 6), label_smoothing=1.0)
    c = case("xent_ls_wide")          # C = 1000: the smoothing sum runs over many classes
    _xent_case(out, c.name, 2.0 * c.randn(5, 1000), classes(c, 1000, 5, ignored=1),
               weight(c, 1000), label_smoothing=0.1)
    # ---- non-finite logits, per position (reduction none)
    for name, ls in (("xent_nonfinite_none", None), ("xent_ls_nonfinite_none", 0.1)):
        c = case(name)
        z = c.randn(7, 11)
        z[0, 4] = -math.inf           # -inf away from the target: finite (with smoothing: +inf)
        z[1, 6] = -math.inf           # -inf at the target: +inf
        z[2, 9] = math.inf            # +inf: inf - inf, NaN
        z[3, :] = -math.inf           # every logit -inf: NaN
        z[4, :] = math.nan            # NaN in an ignored row: never read, 0
        z[5, 2] = math.inf            # +inf in an ignored row: 0
        y = torch.tensor([1, 6, 0, 3, IGNORE, IGNORE, 8])
        _xent_case(out, name, z, y, reduction="none", label_smoothing=ls)
    c = case("xent_ls_nan_ignored")   # the mean of the others is finite: ignored rows unread
    z = c.randn(5, 11)
    z[1, :] = math.nan
    z[3, 0] = -math.inf
    _xent_case(out, c.name, z, torch.tensor([0, IGNORE, 4, IGNORE, 9]), weight(c, 11),
               label_smoothing=0.1)
    # ---- class probabilities (a float target of input's shape): -sum_c w_c t_c log p_c, with
    # smoothing t = (1 - e) t + e / C; the mean divides by the number of positions, weight or not
    c = case("xent_prob")
    _xent_case(out, c.name, c.randn(6, 11), probs(c, 6, 11))
    c = case("xent_prob_ls")
    _xent_case(out, c.name, c.randn(6, 11), probs(c, 6, 11), label_smoothing=0.1)
    c = case("xent_prob_weight")      # weighted, the mean still over the 6 positions
    _xent_case(out, c.name, c.randn(6, 11), probs(c, 6, 11), weight(c, 11))
    c = case("xent_prob_weight_ls")
    _xent_case(out, c.name, c.randn(6, 11), probs(c, 6, 11), weight(c, 11),
               label_smoothing=0.2)
    c = case("xent_prob_unnormalized")  # targets not summing to 1 are used as they are
    _xent_case(out, c.name, c.randn(6, 11), (2.0 * c.rand(6, 11)).to(torch.float32),
               reduction="none")
    c = case("xent_prob_nonfinite_none")  # t_c * log p_c as PyTorch multiplies it, per position
    z = c.randn(4, 11)
    t = probs(c, 4, 11)
    z[0, 3], t[0, 3] = -math.inf, 0.0   # -inf where t is 0: 0 * -inf, NaN (not 0)
    z[1, 5] = -math.inf                 # -inf where t > 0: +inf
    z[2, 7] = math.inf                  # +inf: NaN
    _xent_case(out, c.name, z, t, reduction="none")
    c = case("xent_prob_sum")
    _xent_case(out, c.name, c.randn(6, 11), probs(c, 6, 11), reduction="sum")
    c = case("xent_prob_nd")          # [N, C, d1, d2]: classes on dim 1, the mean over N*d1*d2
    _xent_case(out, c.name, c.randn(2, 5, 3, 4), probs(c, 2, 5, 3, 4))
    c = case("xent_prob_nd_none")     # ... per position: out [2, 3, 4]
    _xent_case(out, c.name, c.randn(2, 5, 3, 4), probs(c, 2, 5, 3, 4), weight(c, 5),
               reduction="none", label_smoothing=0.1)
    # ---- unbatched: input [C], a 0-d target, a 0-d out whatever the reduction
    c = case("xent_vector")
    _xent_case(out, c.name, c.randn(11), torch.tensor(7))
    c = case("xent_vector_weight_sum")  # w[y] * nll (the mean would cancel w[y])
    _xent_case(out, c.name, c.randn(11), torch.tensor(7), weight(c, 11), reduction="sum")
    c = case("xent_vector_ignored")   # the one position ignored: NaN
    _xent_case(out, c.name, c.randn(11), torch.tensor(IGNORE))
    c = case("xent_vector_none")      # reduction none of one position: 0-d, with smoothing
    _xent_case(out, c.name, c.randn(11), torch.tensor(3), reduction="none",
               label_smoothing=0.1)
    c = case("xent_vector_prob")      # probabilities [C] over dim 0
    _xent_case(out, c.name, c.randn(11), probs(c, 11), weight(c, 11), label_smoothing=0.1)
    # ---- [N, C, d1, ...] with indices: classes on dim 1, the target [N, d1, ...]
    c = case("xent_3d")               # [4, 7, 6]: the classes are 7, not the last 6
    _xent_case(out, c.name, c.randn(4, 7, 6), classes(c, 7, 4, 6, ignored=3))
    c = case("xent_3d_ls_sum")
    _xent_case(out, c.name, c.randn(4, 7, 6), classes(c, 7, 4, 6, ignored=3), weight(c, 7),
               reduction="sum", label_smoothing=0.1)
    c = case("xent_nd")               # [2, 5, 3, 4], target [2, 3, 4]
    _xent_case(out, c.name, c.randn(2, 5, 3, 4), classes(c, 5, 2, 3, 4, ignored=5),
               weight(c, 5))
    c = case("xent_nd_none")          # per position: out [2, 3, 4]
    _xent_case(out, c.name, c.randn(2, 5, 3, 4), classes(c, 5, 2, 3, 4, ignored=5),
               reduction="none")
    # ---- large logits: only the max shift keeps exp finite
    c = case("xent_large_1e4")
    _xent_case(out, c.name, 1e4 * c.randn(6, 11), classes(c, 11, 6))
    c = case("xent_large_1e4_ls")
    _xent_case(out, c.name, 1e4 * c.randn(6, 11), classes(c, 11, 6), weight(c, 11),
               label_smoothing=0.1)
    # ---- MLM-like: 64 positions of bert-base-uncased's 30522 classes, most of them ignored
    # (the collator labels 15%). The logits are drawn N(0, 4) and rounded to multiples of 2^-4
    # (at most 9 significant bits): still float32 logits, fed to PyTorch and to tfm as they are,
    # but gzip stores them in 1.3 bytes instead of 3.7 (2.5 MB instead of 7.3; the output is one
    # number). Every exp(z - max) and the 30522-term sum are still float32 roundings.
    c = case("xent_mlm")
    z = torch.round(2.0 * c.randn(64, 30522).double() * 16.0) / 16.0
    _xent_case(out, c.name, z.to(torch.float32), _labels(c, (64,), 30522))


def build(seed):
    out = Golden()
    _ce_cases(out, seed)
    _nsp_cases(out, seed)
    _xent_cases(out, seed)

    # name, B, T, E, V, all labels ignored
    for name, B, T, E, V, none in (("heads_single_token", 1, 1, 8, 50, False),
                                   ("heads_small", 2, 9, 16, 50, False),
                                   ("heads_odd", 3, 17, 33, 50, False),
                                   ("heads_medium", 4, 64, 128, 50, False),
                                   ("heads_all_ignored", 2, 5, 16, 50, True),
                                   ("heads_bert_vocab", 1, 4, 8, 30522, False)):
        c = Case(seed, name)
        m = _heads(c, V, E)
        h = c.randn(B, T, E)
        if none:
            labels = torch.full((B, T), IGNORE)
        elif T == 1:
            labels = torch.tensor([[7]])
        else:
            # [CLS] ... [SEP] around random words, masked as the collator does.
            ids = torch.randint(5, V, (B, T), generator=c.gen, dtype=torch.int64)
            ids[:, 0], ids[:, -1] = CLS, SEP
            while True:
                _, labels = ref.hf_mask_tokens(ids, [PAD, CLS, SEP], MASK, V, c.gen)
                if (labels != IGNORE).any():
                    break
        nsp = torch.randint(2, (B,), generator=c.gen, dtype=torch.int64)
        _heads_case(out, name, m, h, labels, nsp)

    # The example sentence of the book's figure: the heads' scores on it (random hidden states)
    # and, as an mlm-loss case, the per-token loss of those scores. That case's input is the
    # float64 heads' scores rounded to float32, not the float32 heads' own: an input must be the
    # same bits on every machine (oracle/verify.py), and float32 scores move with the BLAS
    # kernels (796 of 950 differ between OpenBLAS's Haswell and Cooperlake kernels) while the
    # float64 ones round to the same float32 everywhere (they differ by ~1e-15 relative; the
    # nearest float32 rounding midpoint is 5e-12 relative away).
    c = Case(seed, "sentence")
    _, _, labels = sentence_example(seed)
    m = _heads(c, len(VOCAB), 32)
    h = c.randn(1, labels.shape[1], 32)
    _heads_case(out, "sentence_heads", m, h, labels, torch.tensor([0]))
    m64 = ref.BertPretrainingHeadsRef(len(VOCAB), 32).double()
    m64.load_state_dict(m.state_dict())
    with torch.no_grad():
        scores = m64(to_f64(h), labels, torch.tensor([0]))["prediction_scores"].to(torch.float32)
    _ce_case(out, "sentence_loss", scores, labels)
    return out
