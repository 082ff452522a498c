"""Chapter 09 in PyTorch: pretraining BERT, as Hugging Face's Trainer runs BertForPreTraining.

    loss      = mlm_loss + nsp_loss          (cross-entropy, ignore_index -100, means)
    schedule  lr_k = lr * k / max(1, warmup)                        k < warmup
                   = lr * max(0, (steps - k) / max(1, steps - warmup))   otherwise
    clip      n = || all gradients ||_2,  g <- g * min(1, max_grad_norm / (n + 1e-6))
    AdamW     m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2            (t = k + 1)
              p <- p (1 - lr_k wd) - lr_k / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

BertForPreTrainingRef is ref/ch06's BertModelRef (state_dict keys "bert.…") with ref/ch05's
pretraining heads (BertPretrainingHeadsRef's cls.* modules and its forward, reused as they are):
the state_dict names are transformers' BertForPreTraining's. The MLM decoder's weight IS
bert.embeddings.word_embeddings.weight (one Parameter), so weights() -- what save_pretrained writes
and the goldens hold -- leaves out cls.predictions.decoder.weight, as transformers' save does for a
tied weight; the decoder's bias is cls.predictions.bias. Eval semantics: no dropout anywhere
(BertModelRef and the heads have none), GELU in its erf form.

hf_init() is transformers' BertPreTrainedModel._init_weights, param_groups() the Trainer's
weight-decay split, and train() the Trainer's inner loop, every piece a torch built-in called as
a whole: torch.optim.AdamW (foreach=False: the single-tensor loop, the one written above),
torch.optim.lr_scheduler.LambdaLR with get_linear_schedule_with_warmup's lambda, and
torch.nn.utils.clip_grad_norm_. The Trainer divides each micro-batch's loss by grad_accum before
backward (BertForPreTraining takes no num_items_in_batch, so no per-token renormalization), zeroes
the gradients after each optimizer step, and steps the scheduler after the optimizer. Under
warm-up step k = 0 runs at lr 0: it moves Adam's moments (and step count) but no weight.

crosscheck() holds the model's losses to F.cross_entropy on its full logits, the heads to
F.linear / F.gelu / F.layer_norm, one AdamW step to the closed form above in float64, the schedule
to the lambda, clip_grad_norm_ to the formula, and train() to a hand-written loop of those
closed forms (float64, 1e-12).
"""

import copy
import inspect
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

import ch05_pretraining
import ch06_encoder

IGNORE_INDEX = ch05_pretraining.IGNORE_INDEX
TIED_KEY = "cls.predictions.decoder.weight"       # = bert.embeddings.word_embeddings.weight
# BertForPreTraining's keys after "bert.…" (bert_keys), in the order weights() gives them (a
# module's own parameters before its submodules': cls.predictions.bias first, as in HF's).
CLS_KEYS = ("cls.predictions.bias", "cls.predictions.transform.dense.weight",
            "cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.weight",
            "cls.predictions.transform.LayerNorm.bias", "cls.seq_relationship.weight",
            "cls.seq_relationship.bias")
CLIP_EPS = 1e-6                                   # clip_grad_norm_'s max_norm / (norm + 1e-6)
# The optimizer step (0-based) after which train() takes its "step2" snapshot: k = 1 (the second
# step counted from 1, hence the name), the first step that moves a weight. Under warm-up step k = 0 runs at lr 0, and the weights after it are
# the initial ones bit for bit (p * (1 - 0 * wd) - 0 * m / d), so a snapshot there checks nothing.
SNAPSHOT_STEP = 1


def pretraining_keys(num_hidden_layers):
    """The keys of weights(): BertForPreTraining's state_dict without the tied decoder."""
    return ch06_encoder.bert_keys(num_hidden_layers) + list(CLS_KEYS)


# ---------------------------------------------------------------- the model

class BertForPreTrainingRef(ch06_encoder.BertModelRef):
    """transformers' BertForPreTraining, eval semantics. forward(input_ids, attention_mask,
    token_type_ids, labels [B, T], next_sentence_label [B]) -> (loss, mlm_loss, nsp_loss)."""

    def __init__(self, config):
        super().__init__(config)                  # self.bert: BertModelRef's modules
        c = self.config
        heads = ch05_pretraining.BertPretrainingHeadsRef(c["vocab_size"], c["hidden_size"],
                                                         c["layer_norm_eps"])
        self.cls = heads.cls                      # heads' own bert.* copies are dropped
        # tie the decoder to OUR word embeddings (the heads had tied it to their own copy)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def heads(self, input_ids, attention_mask, token_type_ids, labels, next_sentence_label):
        """ch05's BertPretrainingHeadsRef.forward on the encoder's last hidden state: the dict
        of prediction_scores [B, T, V], seq_relationship_logits [B, 2], ..., mlm_loss, nsp_loss,
        loss. It reads self.bert.pooler and self.cls, which this class has under the same names
        (the pooler thus runs on the hidden state as BertForPreTraining's does)."""
        h = ch06_encoder.BertModelRef.forward(self, input_ids, attention_mask,
                                              token_type_ids)["last_hidden_state"]
        return ch05_pretraining.BertPretrainingHeadsRef.forward(self, h, labels,
                                                                next_sentence_label)

    def forward(self, input_ids, attention_mask, token_type_ids, labels, next_sentence_label):
        o = self.heads(input_ids, attention_mask, token_type_ids, labels, next_sentence_label)
        return o["loss"], o["mlm_loss"], o["nsp_loss"]

    def weights(self):
        """{key: tensor}: the state_dict without the tied decoder weight (pretraining_keys)."""
        assert self.cls.predictions.decoder.weight is self.bert.embeddings.word_embeddings.weight
        return {k: v for k, v in self.state_dict().items() if k != TIED_KEY}

    def load_weights(self, w):
        """load_state_dict of weights(): strict, except for the tied key it must lack."""
        missing, unexpected = self.load_state_dict(w, strict=False)
        assert missing == [TIED_KEY] and not unexpected, (missing, unexpected)

    def save_pretrained(self, directory):
        """config.json and model.safetensors as BertModelRef.save_pretrained writes them, the
        weights without the tied decoder (transformers' BertForPreTraining.save_pretrained)."""
        sio = ch06_encoder._safetensors_io()
        os.makedirs(directory, exist_ok=True)
        cfg = dict(self.config, torch_dtype=str(self.dtype).replace("torch.", ""))
        with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        sio.save(os.path.join(directory, "model.safetensors"),
                 {k: v.detach().contiguous() for k, v in self.weights().items()},
                 {"format": "pt"})


def pretraining_config(**overrides):
    """ch06's bert_config, architectures as BertForPreTraining.save_pretrained writes them."""
    return ch06_encoder.bert_config(**dict({"architectures": ["BertForPreTraining"]},
                                           **overrides))


# ---------------------------------------------------------------- what the Trainer does

def hf_init(model, generator):
    """BertPreTrainedModel._init_weights: every nn.Linear and nn.Embedding weight
    N(0, initializer_range^2), Linear biases 0, the Embedding's padding_idx row 0, LayerNorm
    weight 1 and bias 0, cls.predictions.bias 0. The draws are made in float64 and rounded to
    the model's dtype (goldenlib's convention), in named_modules() order. A weight is drawn once:
    transformers ties the decoder after initializing, so the tied matrix keeps its Embedding
    init (padding row zero), which is the first module to hold it here too."""
    std = model.config["initializer_range"]
    seen = set()
    with torch.no_grad():
        for _, m in model.named_modules():
            if isinstance(m, (nn.Linear, nn.Embedding)) and id(m.weight) not in seen:
                seen.add(id(m.weight))
                m.weight.copy_(std * torch.randn(*m.weight.shape, generator=generator,
                                                 dtype=torch.float64))
                if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                    m.weight[m.padding_idx].zero_()
            if isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.zero_()
            if isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
        model.cls.predictions.bias.zero_()


def no_decay(name):
    """The Trainer's rule: no weight decay for biases and LayerNorm weights."""
    return name.endswith("bias") or "LayerNorm.weight" in name


def param_groups(model, weight_decay):
    """[{params: decayed, weight_decay}, {params: the rest, weight_decay: 0}]; named_parameters()
    yields each Parameter once, so the tied decoder is the word embeddings (in the first)."""
    named = list(model.named_parameters())
    return [{"params": [p for n, p in named if not no_decay(n)], "weight_decay": weight_decay},
            {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0}]


def linear_warmup_lambda(warmup, steps):
    """transformers' get_linear_schedule_with_warmup, as the LambdaLR factor of step s."""
    def lr_lambda(s):
        if s < warmup:
            return float(s) / float(max(1, warmup))
        return max(0.0, float(steps - s) / float(max(1, steps - warmup)))
    return lr_lambda


def adamw(groups, lr, betas, eps):
    """torch.optim.AdamW on these groups; foreach=False where torch has the argument, so it is
    the single-tensor loop (the closed form of the docstring), not the fused multi-tensor one."""
    kw = {"foreach": False} if "foreach" in inspect.signature(torch.optim.AdamW).parameters \
        else {}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kw)


def _batch_args(mb):
    return (mb["input_ids"], mb["attention_mask"], mb["token_type_ids"], mb["labels"],
            mb["next_sentence_label"])


def train(model, batches, *, lr, warmup, steps, grad_accum, weight_decay, betas=(0.9, 0.999),
          eps=1e-8, max_grad_norm=1.0):
    """Hugging Face's Trainer loop on model (in place). batches: steps * grad_accum micro-batches,
    dicts of input_ids, attention_mask, token_type_ids, labels, next_sentence_label. Returns
    {"loss", "mlm_loss", "nsp_loss": per optimizer step the mean over its micro-batches (tensors
    in the model's dtype), "learning_rate": the lr each step used (floats), "grad_norm": the
    total norm before clipping, "step2" and "last": {key: tensor} of weights() after optimizer
    step k = SNAPSHOT_STEP (= 1) and after the last}."""
    assert len(batches) == steps * grad_accum, (len(batches), steps, grad_accum)
    assert steps > SNAPSHOT_STEP, steps
    opt = adamw(param_groups(model, weight_decay), lr, betas, eps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_lambda(warmup, steps))
    rec = {"loss": [], "mlm_loss": [], "nsp_loss": [], "learning_rate": [], "grad_norm": []}
    for k in range(steps):
        model.zero_grad(set_to_none=True)
        sums = [0.0, 0.0, 0.0]
        for mb in batches[k * grad_accum:(k + 1) * grad_accum]:
            losses = model(*_batch_args(mb))
            (losses[0] / grad_accum).backward()
            sums = [s + x.detach() / grad_accum for s, x in zip(sums, losses)]
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        rec["learning_rate"].append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
        for name, s in zip(("loss", "mlm_loss", "nsp_loss"), sums):
            rec[name].append(s)
        rec["grad_norm"].append(norm.detach())
        if k == SNAPSHOT_STEP:
            rec["step2"] = {key: v.detach().clone() for key, v in model.weights().items()}
        if k == steps - 1:
            rec["last"] = {key: v.detach().clone() for key, v in model.weights().items()}
    return rec


# ---------------------------------------------------------------- crosscheck

def _toy_model(g, V=30, E=16, L=1, H=2, I=24, P=12, dtype=torch.float64):
    cfg = pretraining_config(vocab_size=V, hidden_size=E, num_hidden_layers=L,
                             num_attention_heads=H, intermediate_size=I,
                             max_position_embeddings=P, type_vocab_size=2)
    m = BertForPreTrainingRef(cfg)
    hf_init(m, g)
    return m.to(dtype)


def _toy_batch(g, V, B, T):
    """A micro-batch: ids in [5, V), row 1 padded after 3 tokens, about a third labelled."""
    ids = torch.randint(5, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 3:] = 0
    ids[mask == 0] = 0
    labels = torch.where((torch.rand(B, T, generator=g) < 0.35) & (mask == 1), ids,
                         torch.full_like(ids, IGNORE_INDEX))
    labels[0, 1] = ids[0, 1]
    return {"input_ids": ids, "attention_mask": mask,
            "token_type_ids": (torch.arange(T) >= T // 2).long().expand(B, T) * mask,
            "labels": labels, "next_sentence_label": torch.randint(0, 2, (B,), generator=g)}


def crosscheck():
    """Raises AssertionError if the model's names, tie, losses or heads, hf_init, param_groups,
    AdamW, the schedule, clip_grad_norm_ or train() are not what the docstring says."""
    g = torch.Generator().manual_seed(909)

    def close(a, b, label, tol=1e-12):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol,
                                   msg=lambda s: f"ch09 crosscheck '{label}': {s}")

    # ---- names, tie (surviving .double() and deepcopy), init
    m = _toy_model(g, dtype=torch.float32)
    V, E = m.config["vocab_size"], m.config["hidden_size"]
    assert list(m.weights()) == pretraining_keys(1), list(m.weights())
    assert set(m.state_dict()) == set(pretraining_keys(1)) | {TIED_KEY}
    m = m.double()                                 # in place: the same Parameters, float64
    for mm in (m, copy.deepcopy(m)):
        assert mm.cls.predictions.decoder.weight is mm.bert.embeddings.word_embeddings.weight
        assert mm.cls.predictions.decoder.bias is None and mm.dtype == torch.float64
    w = m.weights()
    assert not w["bert.embeddings.word_embeddings.weight"][0].any(), "padding row not zero"
    for k, t in w.items():
        if k.endswith("LayerNorm.weight"):
            assert torch.equal(t, torch.ones_like(t)), k
        elif k.endswith("bias"):
            assert torch.equal(t, torch.zeros_like(t)), k
        else:                                      # N(0, 0.02^2): the sample's std within 15%
            assert abs(t.std().item() / 0.02 - 1.0) < 0.15, (k, t.std().item())
    again = BertForPreTrainingRef(m.config).double()
    again.load_weights(w)
    assert all(torch.equal(again.weights()[k], w[k]) for k in w)

    # ---- param_groups: each parameter once; no decay exactly for biases and LayerNorm weights
    groups = param_groups(m, 0.01)
    named = dict(m.named_parameters())
    ids_in = [id(p) for gr in groups for p in gr["params"]]
    assert sorted(ids_in) == sorted(id(p) for p in named.values()) and len(set(ids_in)) == len(w)
    nd = {n for n, p in named.items() if any(p is q for q in groups[1]["params"])}
    assert nd == {k for k in w if k.endswith(".bias") or k.endswith("LayerNorm.weight")
                  or k == "cls.predictions.bias"}, sorted(nd)
    assert any(p is m.bert.embeddings.word_embeddings.weight for p in groups[0]["params"])

    # ---- the losses are F.cross_entropy on the full logits; the heads are F.* built-ins
    mb = _toy_batch(g, V, 3, 7)
    with torch.no_grad():
        o = m.heads(*_batch_args(mb))
        loss, mlm, nsp = m(*_batch_args(mb))
        close(mlm, F.cross_entropy(o["prediction_scores"].reshape(-1, V),
                                   mb["labels"].reshape(-1), ignore_index=IGNORE_INDEX),
              "mlm_loss")
        close(nsp, F.cross_entropy(o["seq_relationship_logits"], mb["next_sentence_label"]),
              "nsp_loss")
        close(loss, mlm + nsp, "loss")
        h = ch06_encoder.BertModelRef.forward(m, *_batch_args(mb)[:3])["last_hidden_state"]
        t = m.cls.predictions.transform
        z = F.layer_norm(F.gelu(F.linear(h, t.dense.weight, t.dense.bias)), (E,),
                         t.LayerNorm.weight, t.LayerNorm.bias, m.config["layer_norm_eps"])
        close(o["prediction_scores"], F.linear(z, m.bert.embeddings.word_embeddings.weight,
                                               m.cls.predictions.bias), "prediction scores")
        pooled = torch.tanh(F.linear(h[:, 0], m.bert.pooler.dense.weight,
                                     m.bert.pooler.dense.bias))
        close(o["seq_relationship_logits"], F.linear(pooled, m.cls.seq_relationship.weight,
                                                     m.cls.seq_relationship.bias), "nsp logits")

    # ---- AdamW: three steps of torch's against the closed form, with and without decay
    b1, b2, eps = 0.9, 0.999, 1e-8
    for wd in (0.0, 0.01):
        p = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
        opt = adamw([{"params": [p], "weight_decay": wd}], 1e-3, (b1, b2), eps)
        want, mom, vel = p.detach().clone(), torch.zeros(5, 4, dtype=torch.float64), \
            torch.zeros(5, 4, dtype=torch.float64)
        for t, lr_t in enumerate((1e-3, 3e-2, 0.5), start=1):
            grad = torch.randn(5, 4, generator=g, dtype=torch.float64)
            opt.param_groups[0]["lr"] = lr_t
            p.grad = grad.clone()
            opt.step()
            mom, vel = b1 * mom + (1 - b1) * grad, b2 * vel + (1 - b2) * grad * grad
            want = want * (1 - lr_t * wd) - lr_t / (1 - b1 ** t) * mom / (
                vel.sqrt() / math.sqrt(1 - b2 ** t) + eps)
            close(p.detach(), want, f"AdamW wd={wd} step {t}", 1e-14)

    # ---- the schedule: LambdaLR's lr at each step is lr * lambda(step)
    for warmup, steps in ((5, 20), (0, 4), (2, 6), (10, 3)):
        q = torch.zeros(1, requires_grad=True)
        opt = adamw([q], 0.1, (b1, b2), eps)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_warmup_lambda(warmup, steps))
        got = []
        for s in range(steps):
            got.append(sched.get_last_lr()[0])
            q.grad = torch.zeros(1)
            opt.step()
            sched.step()
        want = [0.1 * (s / max(1, warmup) if s < warmup else
                       max(0.0, (steps - s) / max(1, steps - warmup))) for s in range(steps)]
        assert got == want, (warmup, steps, got, want)

    # ---- clip_grad_norm_: the norm of all gradients, scaled by max_norm / (norm + 1e-6) if > 1
    for max_norm in (0.3, 100.0):
        ps = [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
              for s in ((3, 4), (7,), (2, 2, 2))]
        for q in ps:
            q.grad = torch.randn(*q.shape, generator=g, dtype=torch.float64)
        before = [q.grad.clone() for q in ps]
        n = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        want = math.sqrt(sum((b * b).sum().item() for b in before))
        close(n, torch.tensor(want, dtype=torch.float64), "clip norm", 1e-14)
        coef = min(1.0, max_norm / (want + CLIP_EPS))
        for q, b in zip(ps, before):
            close(q.grad, b * coef, f"clip max_norm={max_norm}", 1e-14)

    # ---- train() against a hand-written loop of the closed forms (float64): grad_accum 2,
    # warm-up, decay, clipping on (max_grad_norm small), and the step2 / last snapshots
    m0 = _toy_model(g)
    batches = [_toy_batch(g, V, 3, 7) for _ in range(6)]
    hp = {"lr": 2e-2, "warmup": 1, "steps": 3, "grad_accum": 2, "weight_decay": 0.01,
          "max_grad_norm": 0.5}
    rec = train(copy.deepcopy(m0), batches, **hp)
    mh = copy.deepcopy(m0)
    params = dict(mh.named_parameters())
    mom = {n: torch.zeros_like(p) for n, p in params.items()}
    vel = {n: torch.zeros_like(p) for n, p in params.items()}
    lam = linear_warmup_lambda(hp["warmup"], hp["steps"])
    for k in range(hp["steps"]):
        gsum = {n: torch.zeros_like(p) for n, p in params.items()}
        lsum = 0.0
        for mbk in batches[2 * k:2 * k + 2]:
            lo = mh(*_batch_args(mbk))[0] / 2
            for n, gr in zip(params, torch.autograd.grad(lo, list(params.values()))):
                gsum[n] += gr
            lsum += lo.item()
        norm = math.sqrt(sum((gr * gr).sum().item() for gr in gsum.values()))
        coef = min(1.0, hp["max_grad_norm"] / (norm + CLIP_EPS))
        lr_k, t = hp["lr"] * lam(k), k + 1
        assert rec["learning_rate"][k] == lr_k, (k, rec["learning_rate"][k], lr_k)
        close(rec["grad_norm"][k], torch.tensor(norm, dtype=torch.float64), f"train norm {k}")
        close(rec["loss"][k], torch.tensor(lsum, dtype=torch.float64), f"train loss {k}")
        with torch.no_grad():
            for n, p in params.items():
                gr = gsum[n] * coef
                wd = 0.0 if no_decay(n) else hp["weight_decay"]
                mom[n] = b1 * mom[n] + (1 - b1) * gr
                vel[n] = b2 * vel[n] + (1 - b2) * gr * gr
                p.copy_(p * (1 - lr_k * wd) - lr_k / (1 - b1 ** t) * mom[n] / (
                    vel[n].sqrt() / math.sqrt(1 - b2 ** t) + eps))
        if k in (SNAPSHOT_STEP, hp["steps"] - 1):
            snap = rec["step2" if k == SNAPSHOT_STEP else "last"]
            for key, v in mh.weights().items():
                close(snap[key], v, f"train {key} after step {k}")
    assert rec["grad_norm"][0] > hp["max_grad_norm"], "the clipping went untested"
    assert not torch.equal(rec["step2"]["cls.predictions.bias"],
                           rec["last"]["cls.predictions.bias"]), "the weights did not move"


if __name__ == "__main__":
    crosscheck()
    print("ch09_pretraining: crosscheck OK")
