"""Chapter 05 in PyTorch: BERT's pretraining heads and losses as
chapters/05-pretraining/pretraining.h states them.

BertPretrainingHeadsRef is assembled from torch.nn pieces under the parameter names of
transformers' BertForPreTraining (cls.predictions.transform.dense.weight, ...,
bert.pooler.dense.weight, cls.seq_relationship.weight), so its named_parameters() are the tensor
names the goldens and `tfm run pretraining-heads` use. GELU is ref/functional.py's gelu (the erf
form); the MLM and NSP loss cross_entropy(logits, labels) is written out on functional.log_softmax.
crosscheck() ties it to F.cross_entropy, runs functional.crosscheck_cross_entropy() (this chapter
owns F.cross_entropy's checks) and holds functional.cross_entropy to F.cross_entropy on the cases
the goldens of op cross-entropy rely on, edge cases included.

hf_mask_tokens() is DataCollatorForLanguageModeling's masking (transformers' torch_mask_tokens)
written from its description, drawing from an explicit torch.Generator.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import functional

IGNORE_INDEX = -100


def cross_entropy(logits, labels):
    """logits [..., V], labels [...] -> (loss [], token_loss [...]).

    functional.log_softmax of the kept rows, then the label's entry picked. token_loss is 0 at
    ignored rows (reduction='none'); loss is the mean over the others: 0/0 = NaN when there are
    none, as F.cross_entropy returns. An ignored row's logits are never read, so a NaN or inf
    there changes nothing.

    With z, y = logits.reshape(-1, V), labels.reshape(-1) this returns functional.cross_entropy(z,
    y) and functional.cross_entropy(z, y, reduction='none').reshape(labels.shape) (ignore_index
    -100, no weight, no smoothing; classes on the last dimension), except that the mean sums the
    kept rows only: the form the mlm-loss and nsp-loss goldens (oracle/export_05.py) were written
    with. On those goldens the token losses are functional.cross_entropy's numbers (a NaN's sign
    bit aside), but float32 means differ by up to 5e-7 (functional sums the ignored rows' zeros
    too, which regroups the sum), so the goldens keep this form rather than a call of it."""
    V = logits.shape[-1]
    z, y = logits.reshape(-1, V), labels.reshape(-1)
    keep = y != IGNORE_INDEX
    token = torch.zeros(y.shape, dtype=logits.dtype)
    logp = functional.log_softmax(z[keep], -1)
    token[keep] = -logp.gather(1, y[keep][:, None])[:, 0]
    loss = token[keep].sum() / keep.sum()
    return loss, token.reshape(labels.shape)


class _Node(nn.Module):
    """An empty container, so that submodules get BERT's dotted names."""


class BertPretrainingHeadsRef(nn.Module):
    """transformers' BertPreTrainingHeads, plus the two modules of BertModel it reads
    (bert.embeddings.word_embeddings for the tied decoder, bert.pooler)."""

    def __init__(self, vocab_size, hidden_size, layer_norm_eps=1e-12):
        super().__init__()
        V, E = vocab_size, hidden_size
        self.bert = _Node()
        self.bert.embeddings = _Node()
        self.bert.embeddings.word_embeddings = nn.Embedding(V, E)
        self.bert.pooler = _Node()
        self.bert.pooler.dense = nn.Linear(E, E)
        self.cls = _Node()
        self.cls.predictions = _Node()
        self.cls.predictions.transform = _Node()
        self.cls.predictions.transform.dense = nn.Linear(E, E)
        self.cls.predictions.transform.LayerNorm = nn.LayerNorm(E, eps=layer_norm_eps)
        # The decoder's weight IS the word-embedding matrix (tied), [V, E]; its bias is
        # cls.predictions.bias (transformers ties decoder.bias to that same parameter).
        self.cls.predictions.decoder = nn.Linear(E, V, bias=False)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight
        self.cls.predictions.bias = nn.Parameter(torch.zeros(V))
        self.cls.seq_relationship = nn.Linear(E, 2)

    def forward(self, sequence_output, labels, next_sentence_label):
        """sequence_output [B,T,E], labels [B,T], next_sentence_label [B] ->
        dict of prediction_scores [B,T,V], seq_relationship_logits [B,2], pooled_output [B,E],
        mlm_loss, nsp_loss, loss (= mlm_loss + nsp_loss)."""
        p = self.cls.predictions
        t = p.transform.LayerNorm(functional.gelu(p.transform.dense(sequence_output)))
        scores = p.decoder(t) + p.bias
        pooled = torch.tanh(self.bert.pooler.dense(sequence_output[:, 0]))
        nsp = self.cls.seq_relationship(pooled)
        mlm_loss, _ = cross_entropy(scores, labels)
        nsp_loss, _ = cross_entropy(nsp, next_sentence_label)
        return {"prediction_scores": scores, "seq_relationship_logits": nsp,
                "pooled_output": pooled, "mlm_loss": mlm_loss, "nsp_loss": nsp_loss,
                "loss": mlm_loss + nsp_loss}


def hf_mask_tokens(input_ids, special_ids, mask_token_id, vocab_size, generator,
                   mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1):
    """DataCollatorForLanguageModeling's masking -> (masked input_ids, labels).

    Each non-special position is selected with probability mlm_probability; a selected one
    becomes [MASK] with probability mask_replace_prob, otherwise a random id with probability
    random_replace_prob / (1 - mask_replace_prob), otherwise it stays. labels: the original id
    where selected, -100 elsewhere."""
    labels = input_ids.clone()
    prob = torch.full(labels.shape, mlm_probability, dtype=torch.float64)
    special = torch.isin(input_ids, torch.tensor(special_ids))
    prob.masked_fill_(special, 0.0)
    selected = torch.bernoulli(prob, generator=generator).bool()
    labels[~selected] = IGNORE_INDEX
    masked = input_ids.clone()
    to_mask = torch.bernoulli(torch.full(labels.shape, mask_replace_prob, dtype=torch.float64),
                              generator=generator).bool() & selected
    masked[to_mask] = mask_token_id
    p_random = random_replace_prob / (1.0 - mask_replace_prob)
    to_random = torch.bernoulli(torch.full(labels.shape, p_random, dtype=torch.float64),
                                generator=generator).bool() & selected & ~to_mask
    random_ids = torch.randint(vocab_size, labels.shape, generator=generator, dtype=torch.int64)
    masked[to_random] = random_ids[to_random]
    return masked, labels


def crosscheck():
    """Raises AssertionError if functional.gelu (the heads' GELU) or cross_entropy disagree with
    F.gelu and F.cross_entropy, on ordinary inputs and on the edge cases the goldens pin, or if
    F.cross_entropy's weight, ignore_index, reductions, label_smoothing, probability targets
    and [N, C, d...] / [C] inputs disagree with their rules as functional.cross_entropy writes
    them out (functional.crosscheck_cross_entropy(), then the cases below)."""
    g = torch.Generator().manual_seed(505)

    def randn(*shape, dtype=torch.float64):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    def same(a, b, label, tol):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, equal_nan=True,
                                   msg=lambda s: f"ch05 crosscheck '{label}': {s}")

    x = randn(1000) * 4
    same(functional.gelu(x), F.gelu(x), "gelu f64", 1e-15)
    same(functional.gelu(x.float()), F.gelu(x.float()), "gelu f32", 1e-6)

    def labels_for(N, V, p_keep):
        y = torch.randint(V, (N,), generator=g)
        drop = torch.rand(N, generator=g) >= p_keep
        return y.masked_fill(drop, IGNORE_INDEX)

    def check_ce(label, z, y, tol):
        loss, token = cross_entropy(z, y)
        same(loss, F.cross_entropy(z, y, ignore_index=IGNORE_INDEX), label + " loss", tol)
        same(token, F.cross_entropy(z, y, ignore_index=IGNORE_INDEX, reduction="none"),
             label + " token_loss", tol)

    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        tag = str(dtype).split(".")[1]
        check_ce(f"plain {tag}", randn(40, 50, dtype=dtype), labels_for(40, 50, 0.3), tol)
        check_ce(f"all kept {tag}", randn(7, 50, dtype=dtype), labels_for(7, 50, 1.0), tol)
        check_ce(f"V=30522 {tag}", randn(3, 30522, dtype=dtype), labels_for(3, 30522, 1.0), tol)
        check_ce(f"logits 1e4 {tag}", randn(6, 50, dtype=dtype) * 1e4, labels_for(6, 50, 1.0),
                 tol * 1e4)
        z = randn(4, 50, dtype=dtype)
        y = torch.tensor([3, 7, IGNORE_INDEX, 1])
        z[0, 5] = -math.inf            # -inf elsewhere: finite loss
        z[1, 7] = -math.inf            # -inf at the label: +inf
        z[2, :] = math.nan             # NaN in an ignored row: never read
        check_ce(f"-inf, NaN ignored {tag}", z, y, tol)
        z2 = z.clone()
        z2[3, 0] = math.inf            # +inf: the row is NaN
        check_ce(f"+inf {tag}", z2, y, tol)
        z3 = randn(3, 50, dtype=dtype)
        z3[1, :] = -math.inf           # every logit -inf: NaN
        check_ce(f"all -inf row {tag}", z3, torch.tensor([0, 4, 2]), tol)
        check_ce(f"all ignored {tag}", randn(4, 50, dtype=dtype), torch.full((4,), IGNORE_INDEX),
                 tol)
        check_ce(f"one class {tag}", randn(3, 1, dtype=dtype), torch.zeros(3, dtype=torch.int64),
                 tol)

    # F.cross_entropy's other rules (the goldens of op cross-entropy, oracle/export_05.py), as
    # functional.cross_entropy writes them out: classes on dim 1 (dim 0 of a 1-D input); with
    # class indices t,
    #   per = (1 - e) * w[t] * (-log p_t) + e / C * sum_c w_c * (-log p_c), 0 where t is ignored,
    #   mean = sum per / sum of w[t] over the positions not ignored (0 / 0 = NaN);
    # with class probabilities t (input's shape, not normalized by PyTorch),
    #   per = -sum_c w_c * ((1 - e) * t_c + e / C) * log p_c,  mean = sum per / positions.
    functional.crosscheck_cross_entropy()

    def classes(C, *shape, ignored=0, ignore=IGNORE_INDEX):
        t = torch.randint(C, shape, generator=g)
        t.view(-1)[:ignored] = ignore
        return t

    def probs(*shape):
        r = torch.rand(*shape, generator=g, dtype=torch.float64)
        return r / r.sum(dim=1 if len(shape) > 1 else 0, keepdim=True)

    w11 = 0.2 + torch.rand(11, generator=g, dtype=torch.float64)
    znf = randn(6, 11)
    znf[0, 4] = -math.inf      # with smoothing: +inf
    znf[1, 2] = math.nan       # ignored below: never read, even by the smoothing term
    znf[3, 5] = math.inf       # NaN
    tnf = torch.tensor([1, IGNORE_INDEX, 3, 0, 7, 2])
    for label, z, t, kw in [
            ("indices", randn(8, 11), classes(11, 8), {}),
            ("weight", randn(8, 11), classes(11, 8), {"weight": w11}),
            ("ignore -100", randn(9, 11), classes(11, 9, ignored=3), {"weight": w11}),
            ("ignore 2", randn(9, 11), torch.tensor([2, 5, 2, 0, 10, 2, 7, 1, 3]),
             {"ignore_index": 2, "weight": w11}),
            ("all ignored", randn(4, 11), classes(11, 4, ignored=4), {"weight": w11}),
            ("smoothing", randn(9, 11), classes(11, 9, ignored=3), {"label_smoothing": 0.1}),
            ("smoothing, weight", randn(9, 11), classes(11, 9, ignored=3),
             {"weight": w11, "label_smoothing": 0.1}),
            ("smoothing 1", randn(6, 11), classes(11, 6), {"label_smoothing": 1.0}),
            ("non-finite, smoothing", znf, tnf, {"label_smoothing": 0.1}),
            ("non-finite", znf, tnf, {}),
            ("[N, C, d]", randn(4, 7, 6), classes(7, 4, 6, ignored=3),
             {"weight": w11[:7], "label_smoothing": 0.1}),
            ("[N, C, d1, d2]", randn(2, 5, 3, 4), classes(5, 2, 3, 4, ignored=5),
             {"weight": w11[:5]}),
            ("[C]", randn(11), torch.tensor(7), {"weight": w11, "label_smoothing": 0.1}),
            ("[C] ignored", randn(11), torch.tensor(IGNORE_INDEX), {}),
            ("probabilities", randn(6, 11), probs(6, 11), {}),
            ("probabilities, weight, smoothing", randn(6, 11), probs(6, 11),
             {"weight": w11, "label_smoothing": 0.2}),
            ("unnormalized probabilities", randn(6, 11),
             2.0 * torch.rand(6, 11, generator=g, dtype=torch.float64), {"weight": w11}),
            ("probabilities [N, C, d1, d2]", randn(2, 5, 3, 4), probs(2, 5, 3, 4),
             {"weight": w11[:5], "label_smoothing": 0.1}),
            ("probabilities [C]", randn(11), probs(11), {"label_smoothing": 0.1}),
            ("probabilities, non-finite", znf, probs(6, 11).index_put_(
                (torch.tensor([0]), torch.tensor([4])), torch.tensor(0.0, dtype=torch.float64)),
             {}),
            ("logits 1e4", 1e4 * randn(6, 11), classes(11, 6),
             {"weight": w11, "label_smoothing": 0.1})]:
        for reduction in ("mean", "sum", "none"):
            got = functional.cross_entropy(z, t, reduction=reduction, **kw)
            want = F.cross_entropy(z, t, reduction=reduction, **kw)
            assert got.shape == want.shape, (label, reduction, got.shape, want.shape)
            tol = 1e-8 if label == "logits 1e4" else 1e-12
            same(got, want, f"cross_entropy {label}, {reduction}", tol)
    # The rules the cases of export_05.py rely on telling apart, each a different number:
    z, t = randn(8, 11), torch.tensor([0, 3, 3, 10, 7, 3, 1, 0])
    assert abs(F.cross_entropy(z, t, weight=w11) - (F.cross_entropy(z, t, weight=w11,
               reduction="sum") / 8)) > 1e-3, "a weighted mean divided by N"
    p = probs(6, 11)
    assert abs(F.cross_entropy(z[:6], p, weight=w11) - F.cross_entropy(z[:6], p, weight=w11,
               reduction="sum") / 6) < 1e-12, "a weighted probability mean not divided by N"

    # The module: its parameter names are BERT's, and the decoder is the embedding matrix.
    m = BertPretrainingHeadsRef(50, 16).double()
    names = dict(m.named_parameters())
    assert set(names) == set(PARAM_NAMES), sorted(names)
    assert m.cls.predictions.decoder.weight is m.bert.embeddings.word_embeddings.weight
    # LayerNorm's eps is BERT's 1e-12, and F.gelu's default is the erf form.
    assert m.cls.predictions.transform.LayerNorm.eps == 1e-12


PARAM_NAMES = (
    "bert.embeddings.word_embeddings.weight",
    "bert.pooler.dense.weight",
    "bert.pooler.dense.bias",
    "cls.predictions.bias",
    "cls.predictions.transform.dense.weight",
    "cls.predictions.transform.dense.bias",
    "cls.predictions.transform.LayerNorm.weight",
    "cls.predictions.transform.LayerNorm.bias",
    "cls.seq_relationship.weight",
    "cls.seq_relationship.bias",
)


if __name__ == "__main__":
    crosscheck()
    print("ch05_pretraining: crosscheck OK")
