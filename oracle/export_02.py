"""Chapter 02 goldens: torch.nn.MultiheadAttention(E, H, batch_first=True) in eval mode, every
output computed by the real module (its parameters saved beside the inputs), plus the erratum
case for article 000 §3.2.

Imported by oracle/export.py, which finds every oracle/export_NN.py: NAME is the golden file's
stem, SEED the chapter seed, REF the ref/ module whose crosscheck() must pass first, and
build(seed) returns a goldenlib.Golden (tensors, case names, case metadata).

Parameters. nn.MultiheadAttention initializes in_proj_bias and out_proj.bias to zero, which
would leave the biases untested, so every parameter is drawn from the case's generator and copied
into the module: weights N(0, 1/E) (activations stay of order 1), biases N(0, 1/4).

The BERT-base case (E = 768, 12 heads) needs 4 E^2 = 2.4M weights: 9.4 MB of random float32,
which gzip cannot shrink. Its weights are therefore drawn the same way and then rounded to
multiples of 2^-8 (|w| <= 0.2, so at most 7 significant bits): still float32 tensors, fed to
PyTorch and to tfm as they are, but with 16+ trailing zero bits that gzip stores in about a byte
per weight (2.2 MB instead of 8.8). The inputs stay full float32, so every product w * x in the
projections is still rounded as in any float32 model; only the weights' own entropy is lower.

Module paths (torch 1.13, see ref/ch02_multihead.py): self-attention with an even number of heads
and no attn_mask runs torch._native_multi_head_attention; everything else runs
F.multi_head_attention_forward. build() asserts which one each case took.
"""
import math

import torch

import ch02_multihead
from ch02_multihead import FastPathCounter, module, run_module
from goldenlib import Case, Golden, emit, padding_mask, to_f64

NAME = "02-multihead"
SEED = 2
REF = ch02_multihead

GRID = 2.0 ** -8  # the BERT-base case's weight grid


def _params(c, E, grid=None, qk_gain=1.0):
    """qk_gain scales W_q and W_k (rows 0..2E-1 of in_proj_weight): logits grow with its
    square while V, and so the outputs, stay of order 1."""
    w_in = c.randn(3 * E, E) * (1.0 / math.sqrt(E))
    w_in[:2 * E] *= qk_gain
    w_out = c.randn(E, E) * (1.0 / math.sqrt(E))
    if grid:
        w_in, w_out = (torch.round(w / grid) * grid for w in (w_in, w_out))
    return {"in_proj_weight": w_in, "in_proj_bias": c.randn(3 * E) * 0.5,
            "out_proj_weight": w_out, "out_proj_bias": c.randn(E) * 0.5}


def _causal(T):
    """The module's causal mask: BOOL, True above the diagonal = may NOT attend."""
    return torch.ones(T, T, dtype=torch.bool).triu(1)


def _blocked(c, *shape):
    """A random BOOL attn_mask (True = blocked, ~30%), every row keeping key 0."""
    m = c.rand(*shape) < 0.3
    m[..., 0] = False
    return m


def _float_mask(c, *shape):
    """A random additive mask: N(0,1) biases with about 20% -inf, every row keeping key 0."""
    m = c.randn(*shape).masked_fill(c.rand(*shape) < 0.2, -math.inf)
    m[..., 0] = 0.0
    return m


def _fully_masked_row(T, row):
    m = torch.zeros(T, T, dtype=torch.bool)
    m[row] = True
    return m


# name, (B, Tq, Tk, E, H), kind, extras(case) -> dict of the module's keyword arguments.
# kind: "self" (key = value = query, one tensor), "memory" (key = value != query, as over an
# encoder's output), "cross" (three different tensors).
MHA_CASES = [
    ("one_head", (2, 5, 5, 8, 1), "self", None),
    ("bert_base", (1, 8, 8, 768, 12), "self", None),
    ("e10_h2", (2, 7, 7, 10, 2), "self", None),
    ("e15_h5_per_head", (1, 9, 9, 15, 5), "self", lambda c: {"average_attn_weights": False}),
    ("cross_e12_h4", (2, 5, 9, 12, 4), "memory", None),
    ("cross_kv_e12_h4", (2, 5, 9, 12, 4), "cross", lambda c: {"average_attn_weights": False}),
    ("single_token", (1, 1, 1, 4, 2), "self", None),
    ("one_key", (2, 3, 1, 6, 3), "memory", None),
    ("padded", (3, 6, 6, 16, 4), "self",
     lambda c: {"key_padding_mask": padding_mask([0, 2, 3], 6)}),
    ("causal", (2, 7, 7, 16, 4), "self", lambda c: {"attn_mask": _causal(7)}),
    ("float_mask", (2, 5, 5, 8, 2), "self", lambda c: {"attn_mask": _float_mask(c, 5, 5)}),
    ("bool_mask_3d", (2, 4, 6, 8, 2), "memory",
     lambda c: {"attn_mask": _blocked(c, 4, 4, 6), "average_attn_weights": False}),
    ("float_mask_3d", (2, 5, 5, 12, 3), "self", lambda c: {"attn_mask": _float_mask(c, 6, 5, 5)}),
    ("padded_causal", (2, 6, 6, 8, 2), "self",
     lambda c: {"attn_mask": _causal(6), "key_padding_mask": padding_mask([0, 2], 6)}),
    ("padded_float_mask_3d", (2, 6, 6, 8, 4), "self",
     lambda c: {"attn_mask": _float_mask(c, 8, 6, 6), "key_padding_mask": padding_mask([1, 3], 6),
                "average_attn_weights": False}),
    ("no_weights", (2, 6, 6, 16, 4), "self", lambda c: {"need_weights": False}),
    ("no_weights_cross", (2, 4, 7, 12, 3), "cross", lambda c: {"need_weights": False}),
    # Batch 1 is all padding, and row 2 of every batch element blocks every key: NaN there.
    ("fully_masked", (2, 4, 4, 8, 2), "self",
     lambda c: {"key_padding_mask": padding_mask([0, 4], 4), "attn_mask": _fully_masked_row(4, 2)}),
    # Batch 1 all padding on the fast path (no attn_mask): also NaN there.
    ("fully_padded", (2, 4, 4, 8, 2), "self",
     lambda c: {"key_padding_mask": padding_mask([0, 4], 4)}),
    ("large_logits", (1, 6, 6, 16, 4), "self", None),
    # The figure's input: 12 tokens, 8 heads, per-head weights; logits 4x larger sharpen the maps.
    ("sentence", (1, 12, 12, 32, 8), "self", lambda c: {"average_attn_weights": False}),
]
# W_q, W_k gains: 100 makes logits ~1e4 (exp overflows unless the row max is subtracted).
QK_GAIN = {"large_logits": 100.0, "sentence": 2.0}
NAN_CASES = {"fully_masked", "fully_padded"}


def _case(c, name, shape, kind, kw, grid=None):
    """Inputs, parameters, scalar parameters (num_heads and the flags the case sets) and the
    module's outputs (float32 and float64) of one case."""
    B, Tq, Tk, E, H = shape
    params = _params(c, E, grid=grid, qk_gain=QK_GAIN.get(name, 1.0))
    query = c.randn(B, Tq, E)
    key = None if kind == "self" else c.randn(B, Tk, E)
    value = c.randn(B, Tk, E) if kind == "cross" else None

    def run(dtype, conv):
        m = module(E, H, {k: conv(v) for k, v in params.items()}, dtype)
        kw_d = {k: conv(v) if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
        with FastPathCounter() as fp:
            out, w = run_module(m, conv(query), conv(key) if key is not None else None,
                                conv(value) if value is not None else None, **kw_d)
        fast = kind == "self" and H % 2 == 0 and kw.get("attn_mask") is None
        assert fp.calls == int(fast), f"{name}: expected fast path {fast}, calls {fp.calls}"
        return out, w

    o32, w32 = run(torch.float32, lambda t: t)
    o64, w64 = run(torch.float64, to_f64)
    inputs = {"query": query, "key": key, "value": value, **params,
              "key_padding_mask": kw.get("key_padding_mask"), "attn_mask": kw.get("attn_mask")}
    scalars = {"num_heads": H}
    for flag in ("need_weights", "average_attn_weights"):
        if flag in kw:
            scalars[flag] = int(kw[flag])
    outs32, outs64 = {"attn_output": o32}, {"attn_output": o64}
    if w32 is not None:
        outs32["attn_weights"], outs64["attn_weights"] = w32, w64
    return inputs, params, scalars, outs32, outs64


def build(seed):
    out = Golden()
    for name, shape, kind, extras in MHA_CASES:
        c = Case(seed, name)
        kw = extras(c) if extras else {}
        inputs, _, scalars, o32, o64 = _case(c, name, shape, kind, kw,
                                             grid=GRID if name == "bert_base" else None)
        emit(out, name, inputs, o32, o64, op="mha", params=scalars)
        has_nan = bool(o64["attn_output"].isnan().any())
        assert has_nan == (name in NAN_CASES), f"{name}: unexpected NaN state {has_nan}"

    # Erratum 000 §3.2: the article's multi-head attention is single-head attention over the
    # full width E (its steps are §3.1's, with no split into heads). With the same parameters
    # that is the module with num_heads = 1: "out_article" (case errata_000_3_2_article, a pin),
    # computed by PyTorch beside the real 4-head output.
    name, shape = "errata_000_3_2", (1, 6, 6, 16, 4)
    c = Case(seed, name)
    inputs, params, scalars, o32, o64 = _case(c, name, shape, "self", {})
    E = shape[3]
    art = {}
    for dtype, conv in ((torch.float32, lambda t: t), (torch.float64, to_f64)):
        m1 = module(E, 1, {k: conv(v) for k, v in params.items()}, dtype)
        art[dtype] = {"out_article": run_module(m1, conv(inputs["query"]))[0]}
    emit(out, name, inputs, o32, o64, op="mha", params=scalars)
    emit(out, name + "_article", {}, art[torch.float32], art[torch.float64], op="pin",
         params={"num_heads": 1})
    return out
