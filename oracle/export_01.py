"""Chapter 01 goldens: scaled dot-product attention with every kind of mask, plus the
erratum case for article 000 §3.1.

Imported by oracle/export.py, which finds every oracle/export_NN.py: NAME is the golden file's
stem, SEED the chapter seed, REF the ref/ module whose crosscheck() must pass first, and
build(seed) returns a goldenlib.Golden (tensors, case names, case metadata).
"""
import math

import torch

import ch01_attention
from goldenlib import Case, Golden, emit, padding_mask, to_f64

NAME = "01-attention"
SEED = 1
REF = ch01_attention

def _keep_to_additive(keep):
    return torch.zeros(keep.shape, dtype=torch.float32).masked_fill(~keep, -math.inf)


def _bool_mask(c, Tq, Tk):
    """A random keep-mask (True = attend), each row keeping at least one key, as 0 / -inf."""
    keep = c.rand(Tq, Tk) < 0.5
    for i in range(Tq):
        if not keep[i].any():
            keep[i, int(c.rand(1).item() * Tk)] = True
    return _keep_to_additive(keep)


def _fully_masked_row(Tq, Tk, row):
    m = torch.zeros(Tq, Tk, dtype=torch.float32)
    m[row] = -math.inf
    return m


# name, (B, H, Tq, Tk, Dk, Dv), extras: fn(case) -> dict of the optional inputs
ATTENTION_CASES = [
    ("tiny", (1, 1, 2, 2, 4, 4), None),
    ("single_token", (1, 1, 1, 1, 8, 8), None),
    ("odd", (2, 3, 7, 7, 5, 5), None),
    ("dk_ne_dv", (1, 2, 9, 9, 16, 6), None),
    ("cross", (2, 2, 5, 11, 8, 8), None),
    ("causal", (1, 2, 13, 13, 8, 8), lambda c: {"is_causal": True}),
    ("causal_cross", (1, 1, 4, 9, 8, 8), lambda c: {"is_causal": True}),
    ("padded", (3, 2, 6, 6, 8, 8), lambda c: {"key_padding_mask": padding_mask([0, 2, 3], 6)}),
    ("bool_mask", (1, 2, 6, 6, 4, 4), lambda c: {"attn_mask": _bool_mask(c, 6, 6)}),
    ("float_mask", (2, 2, 5, 5, 8, 8), lambda c: {"attn_mask": c.randn(5, 5)}),
    ("per_head_mask", (2, 3, 4, 6, 8, 8), lambda c: {"attn_mask": c.randn(2, 3, 4, 6)}),
    ("fully_masked_row", (1, 1, 3, 4, 4, 4), lambda c: {"attn_mask": _fully_masked_row(3, 4, 1)}),
    ("medium", (1, 4, 64, 64, 32, 32), None),
    ("long", (1, 2, 200, 200, 64, 64), None),
    ("large_logits", (1, 1, 8, 8, 16, 16), None),
]
Q_SCALE = {"large_logits": 100.0}  # logits ~1e3: exp overflows unless the max is subtracted


def build(seed):
    out = Golden()
    for name, (B, H, Tq, Tk, Dk, Dv), extras in ATTENTION_CASES:
        c = Case(seed, name)
        q, k, v = c.randn(B, H, Tq, Dk), c.randn(B, H, Tk, Dk), c.randn(B, H, Tk, Dv)
        if name in Q_SCALE:
            q = q * Q_SCALE[name]
        kw = extras(c) if extras else {}
        kw64 = {key: to_f64(val) if isinstance(val, torch.Tensor) else val
                for key, val in kw.items()}
        o32, p32 = ch01_attention.attention(q, k, v, **kw)
        o64, p64 = ch01_attention.attention(to_f64(q), to_f64(k), to_f64(v), **kw64)
        inputs = {"q": q, "k": k, "v": v,
                  "attn_mask": kw.get("attn_mask"),
                  "key_padding_mask": kw.get("key_padding_mask")}
        params = {"is_causal": 1} if kw.get("is_causal") else None
        emit(out, name, inputs, {"out": o32, "probs": p32}, {"out": o64, "probs": p64},
             op="attention", params=params)
        has_nan = bool(o64.isnan().any())
        assert has_nan == (name == "fully_masked_row"), f"{name}: unexpected NaN state {has_nan}"

    name = "errata_000_3_1"
    c = Case(seed, name)
    x = c.randn(6, 8)
    ws = {w: c.randn(8, 8) for w in ("w_q", "w_k", "w_v", "w_o")}
    good32, art32 = ch01_attention.article_000_3_1(x, **ws)
    good64, art64 = ch01_attention.article_000_3_1(to_f64(x), **{k: to_f64(w) for k, w in ws.items()})
    emit(out, name, {"x": x, **ws}, {"out": good32}, {"out": good64}, op="self-attention")
    # The article's A X W_o beside it: PyTorch's value of a formula no tfm op computes.
    emit(out, name + "_article", {}, {"out_article": art32}, {"out_article": art64}, op="pin")
    return out
