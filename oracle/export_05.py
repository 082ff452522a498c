"""Chapter 05 goldens: cross-entropy with ignore_index (mlm-loss, nsp-loss) and BERT's pretraining
heads (pretraining-heads), with their numerical edge cases.

Imported by oracle/export.py, which finds every oracle/export_NN.py: NAME is the golden file's
stem, SEED the chapter seed, REF the ref/ module whose crosscheck() must pass first, and
build(seed) returns a goldenlib.Golden (tensors, case names, case metadata).

The masking step (tfm run mlm-mask) has no golden: it draws from a random stream, and tfm's
generator is not torch's. Its tests are statistical (tests/test_05_pretraining.c). The labels of
the head cases below are made by ref's hf_mask_tokens, the collator's procedure on torch's
generator.

Size budget (3 MB compressed, random float32 hardly compresses): the vocabulary is 50 except in
two cases at bert-base-uncased's 30522: ce_bert_vocab (4 rows of logits given directly, 0.5 MB)
and heads_bert_vocab (E = 8, so the tied [30522, 8] decoder is 1 MB; 2 labelled rows).
"""
import math

import torch

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


def build(seed):
    out = Golden()
    _ce_cases(out, seed)
    _nsp_cases(out, seed)

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
