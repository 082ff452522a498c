"""Chapter 09 goldens: pretraining BERT (op "pretrain-steps"), Hugging Face's Trainer loop on
BertForPreTraining as ref/ch09_pretraining.py runs it with torch's own AdamW, LambdaLR and
clip_grad_norm_, float32 from the float32 initial weights and float64 from those same weights
converted (the same batches: they are integers), the two runs otherwise independent.

Imported by oracle/export.py (NAME, SEED, REF, build(seed): see export_06.py).

Inputs. The initial weights, ref.hf_init's (BertPreTrainedModel._init_weights: matrices and
tables N(0, 0.02^2) drawn from the case's generator in float64 and rounded once, biases 0, the
padding row 0, LayerNorms 1 and 0), under BertForPreTraining's state_dict names: "bert.…" as
op bert reads them, then cls.predictions.bias, cls.predictions.transform.{dense,LayerNorm}.*,
cls.seq_relationship.*; no cls.predictions.decoder.weight (it IS
bert.embeddings.word_embeddings.weight) and no decoder bias (it is cls.predictions.bias).
"<case>/config" is config.json, as export_06 stores it. Then S = steps * grad_accum micro-batches,
stacked on a first dimension: input_ids, token_type_ids, attention_mask, labels [S, B, T] and
next_sentence_label [S, B] (I64; _micro_batch says how they are laid out and masked).

Outputs, per optimizer step k = 0 .. steps-1 (vectors [steps]): loss, mlm_loss and nsp_loss,
each the mean over the step's micro-batches (sum of loss / grad_accum); learning_rate, the lr
the step used (the scheduler's get_last_lr() before stepping: 0 at k = 0 under warm-up; the
name is the Trainer's log key, and "lr" is taken by the parameter); grad_norm, the total norm
clip_grad_norm_ returned, before clipping. Then every weight after step k = 1 ("step2.<key>", the second step,
counted from 1: the first that moves a weight, since k = 0 runs at lr 0) and after the last ("last.<key>"),
<key> the state_dict key without "bert.", the encoder layers stacked over a first dimension L as
export_07's bert-backward stores its gradients ("encoder.layer.attention.self.query.weight"
[L, E, E], ...), the heads under their own names ("cls.predictions.bias", ...).

Parameters: steps, grad_accum, lr, warmup, weight_decay, adam_eps, max_grad_norm. AdamW's betas
are fixed at (0.9, 0.999), the Trainer's defaults, and not recorded.
"""
import copy
import json
import os
import tempfile

import torch

import ch09_pretraining as ref
import export_06
import safetensors_io
from goldenlib import Case, Golden, emit

NAME = "09-pretraining"
SEED = 9
REF = ref

# BERT's architecture (post-LN, GELU erf, eps 1e-12, pad_token_id 0) small, so that the golden
# stays a few MB: its 180k weights are stored per case as the initial float32 ones and after
# step 1 and at the end in float32 and float64 (5 MB raw, 4.7 MB gzipped: trained weights are
# full-precision bits, which gzip hardly compresses), 9.5 MB for the two cases. vocab_size 1024
# rather than 30522 for the same reason (the tied [V, E] matrix is a third of the model). Dropout 0 in the config: the runs have none (eval
# semantics), and with p = 0 the Trainer's train-mode forward is exactly this one, so config.json
# describes the computation the goldens hold (tfm pretrain writes 0.0 there too).
MICRO = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2,
         "intermediate_size": 256, "max_position_embeddings": 64, "type_vocab_size": 2,
         "vocab_size": 1024, "layer_norm_eps": 1e-12, "hidden_act": "gelu", "pad_token_id": 0,
         "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
BETAS = (0.9, 0.999)                    # fixed (the Trainer's adam_beta1, adam_beta2)
ADAM_EPS = 1e-8

# name, (B, T), steps, grad_accum, lr, warmup, weight_decay, max_grad_norm. Small batches: the
# cases run many times in CI (every variant and thread count, under valgrind too) and what they
# check (the step's arithmetic, accumulation, clipping, the schedule) does not grow with B or T.
CASES = [
    ("micro_steps", (2, 32), 20, 1, 1e-3, 5, 0.01, 1.0),
    ("micro_accum", (2, 24), 6, 2, 5e-4, 2, 0.01, 0.5),     # T < max_position_embeddings
]
LEARNS = {"micro_steps"}                # build() asserts that its loss decreases

# The token ids of the batches: BERT's layout with ids of our own (bert-base-uncased's [CLS] is
# 101 etc.; here the specials come first). Ordinary tokens are ids FIRST_ID .. V-1 drawn by
# Zipf's law, P(id) proportional to 1 / (id - FIRST_ID + 1), as words in text are: uniform ids
# would leave the masked LM nothing to learn (its loss stays at log(V - FIRST_ID) whatever the
# weights), so the loss could not decrease; a word frequency is the first thing an MLM learns.
PAD, CLS, SEP, MASK = 0, 2, 3, 4
FIRST_ID = 5
MLM_PROBABILITY = 0.15                  # DataCollatorForLanguageModeling's defaults: 15% chosen,
MASK_REPLACE, RANDOM_REPLACE = 0.8, 0.1  # of them 80% [MASK], 10% a random id, 10% kept
MAX_NAME = 63                           # "<o>_f64" within the case: oracle/cases.c's char[64]


def _zipf_ids(c, V, *shape):
    """Ids in [FIRST_ID, V) with P(id) proportional to 1 / (id - FIRST_ID + 1), by inverting the
    cumulative distribution at uniform float64 draws (sequential float64 sums and a binary
    search: the same ids on any machine)."""
    cdf = torch.cumsum(1.0 / torch.arange(1, V - FIRST_ID + 1, dtype=torch.float64), 0)
    u = c.rand(*shape) * cdf[-1]
    return FIRST_ID + torch.searchsorted(cdf, u, right=True).clamp_max(V - FIRST_ID - 1)


def _micro_batch(c, V, B, T):
    """One micro-batch. Row b: [CLS] A [SEP] B [SEP] then padding, n_b tokens in all (row 0
    full, n = T; row 1 padded, n in [T/4, T-1]; the others n in [T/4, T]), A of 1 .. n-4 tokens;
    token_type_ids 0 over [CLS] A [SEP], 1 over B [SEP], 0 on padding; attention_mask 1 on the
    n tokens. Of the ordinary tokens (not special, not padding) each is chosen with probability
    0.15 (at least one per micro-batch): its label is its id, and its input becomes [MASK]
    (80%), a random id uniform in [FIRST_ID, V) (10%; the collator draws uniformly too) or stays
    (10%); labels -100 elsewhere. Ordinary ids: _zipf_ids.
    next_sentence_label uniform 0 / 1."""
    ids = _zipf_ids(c, V, B, T)
    tt = torch.zeros(B, T, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    for b in range(B):
        lo, hi = T // 4, T if b != 1 else T - 1
        n = T if b == 0 else int(torch.randint(lo, hi + 1, (), generator=c.gen))
        na = int(torch.randint(1, n - 3, (), generator=c.gen))      # A: 1 .. n-4 tokens
        ids[b, 0], ids[b, na + 1], ids[b, n - 1] = CLS, SEP, SEP
        ids[b, n:] = PAD
        tt[b, na + 2:n] = 1
        mask[b, :n] = 1
    ordinary = ids >= FIRST_ID
    chosen = (c.rand(B, T) < MLM_PROBABILITY) & ordinary
    if not chosen.any():                                             # at least one label
        where = ordinary.view(-1).nonzero()[:, 0]
        chosen.view(-1)[where[torch.randint(len(where), (), generator=c.gen)]] = True
    labels = torch.where(chosen, ids, torch.full_like(ids, ref.IGNORE_INDEX))
    u = c.rand(B, T)
    random_ids = torch.randint(FIRST_ID, V, (B, T), generator=c.gen)
    inputs = torch.where(chosen & (u < MASK_REPLACE), torch.full_like(ids, MASK), ids)
    inputs = torch.where(chosen & (u >= MASK_REPLACE) & (u < MASK_REPLACE + RANDOM_REPLACE),
                         random_ids, inputs)
    return {"input_ids": inputs, "attention_mask": mask, "token_type_ids": tt, "labels": labels,
            "next_sentence_label": torch.randint(0, 2, (B,), generator=c.gen)}


def _stacked(weights, L):
    """{key: tensor} of weights() as the outputs name them: "bert." dropped, the layers'
    "encoder.layer.<l>.<rest>" stacked into "encoder.layer.<rest>" [L, ...]."""
    out = {}
    for k, v in weights.items():
        short = k[len("bert."):] if k.startswith("bert.") else k
        if short.startswith("encoder.layer."):
            rest = short.split(".", 3)[3]                # encoder.layer.<l>.<rest>
            if short.startswith("encoder.layer.0."):
                out["encoder.layer." + rest] = torch.stack(
                    [weights[f"bert.encoder.layer.{l}.{rest}"] for l in range(L)])
        else:
            out[short] = v
    return out


def _outputs(rec, dtype, L):
    """train()'s record as the case's outputs, in the run's dtype."""
    out = {k: torch.stack(rec[k]).to(dtype) for k in ("loss", "mlm_loss", "nsp_loss",
                                                      "grad_norm")}
    out["learning_rate"] = torch.tensor(rec["learning_rate"], dtype=dtype)
    for snap in ("step2", "last"):
        out.update({f"{snap}.{k}": v for k, v in _stacked(rec[snap], L).items()})
    for k, v in out.items():
        assert v.dtype == dtype, (k, v.dtype)
    return out


def _config_meta(g, case, m32, weights):
    """"<case>/config" as export_06._bert_config_meta writes it (save_pretrained's config.json,
    compact, sorted keys, without torch_dtype and architectures), for BertForPreTraining: its
    model.safetensors must hold exactly the case's initial weights, the tied decoder left out."""
    with tempfile.TemporaryDirectory() as d:
        m32.save_pretrained(d)
        with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        saved, _ = safetensors_io.load(os.path.join(d, "model.safetensors"))
    assert cfg.pop("torch_dtype") == "float32"
    assert cfg.pop("architectures") == ["BertForPreTraining"]
    assert set(cfg) == export_06.BERT_CONFIG_FIELDS, sorted(cfg)
    assert sorted(saved) == sorted(weights) and all(
        torch.equal(saved[k], weights[k]) for k in weights), case
    g.metadata[f"{case}/config"] = json.dumps(cfg, sort_keys=True, separators=(",", ":"))


def build(seed):
    out = Golden()
    for name, (B, T), steps, accum, lr, warmup, wd, max_norm in CASES:
        c = Case(seed, name)
        cfg = ref.pretraining_config(**MICRO)
        L, V = cfg["num_hidden_layers"], cfg["vocab_size"]
        assert T <= cfg["max_position_embeddings"], (name, T)
        m32 = ref.BertForPreTrainingRef(cfg)
        ref.hf_init(m32, c.gen)
        w = {k: v.detach().clone() for k, v in m32.weights().items()}
        assert list(w) == ref.pretraining_keys(L), list(w)
        batches = [_micro_batch(c, V, B, T) for _ in range(steps * accum)]
        for mb in batches:
            assert (mb["labels"] != ref.IGNORE_INDEX).any(), name
        assert any(bool(mb["attention_mask"].all(1).any()) for mb in batches), name
        assert any(not bool(mb["attention_mask"].all(1).all()) for mb in batches), name

        hp = {"lr": lr, "warmup": warmup, "steps": steps, "grad_accum": accum,
              "weight_decay": wd, "betas": BETAS, "eps": ADAM_EPS, "max_grad_norm": max_norm}
        m64 = copy.deepcopy(m32).double()     # the same initial weights, converted
        rec32 = ref.train(copy.deepcopy(m32), batches, **hp)
        rec64 = ref.train(m64, batches, **hp)
        o32, o64 = _outputs(rec32, torch.float32, L), _outputs(rec64, torch.float64, L)

        # what the cases are meant to exercise: learning (micro_steps' 20 steps; micro_accum's 6
        # are too few to tell from the batches' noise), and clipping in at least one step
        loss = o64["loss"]
        if name in LEARNS:
            assert loss[-1] < loss[0] and loss[-5:].mean() < loss[:5].mean() - 0.1, \
                f"{name}: the loss did not decrease: {loss.tolist()}"
        assert (o64["grad_norm"] > max_norm).any(), f"{name}: never clipped"
        assert o64["learning_rate"][0] == 0.0 and o64["learning_rate"][1] > 0.0, name
        assert not torch.equal(o32["step2.embeddings.word_embeddings.weight"],
                               w["bert.embeddings.word_embeddings.weight"]), name
        for k in o32:
            assert len(k + "_f64") <= MAX_NAME, (k, len(k + "_f64"))

        inputs = dict(w)
        for k in ("input_ids", "token_type_ids", "attention_mask", "labels",
                  "next_sentence_label"):
            inputs[k] = torch.stack([mb[k] for mb in batches])
        emit(out, name, inputs, o32, o64, op="pretrain-steps",
             params={"steps": steps, "grad_accum": accum, "lr": lr, "warmup": warmup,
                     "weight_decay": wd, "adam_eps": ADAM_EPS, "max_grad_norm": max_norm},
             against="truth")   # PyTorch's float32 grad_norm is 1e-5 off; tfm sums in double
        _config_meta(out, name, m32, w)
    return out
