"""goldenlib — what every chapter's golden builder (oracle/export_NN.py) shares.

Case draws a case's inputs from its own generator; emit() stores one case in a Golden: its
inputs and both precisions of every output under the naming of oracle/cases.h, and what the case
is in the file's __metadata__ (all values strings):

    "<case>/op"       the tfm op that computes it (oracle/ops.c), or "pin": PyTorch values kept for tests
                      that pin PyTorch's own behaviour, which no tfm op computes
    "<case>/params"   the op's scalar parameters, "NAME=VALUE NAME=VALUE" (ints as ints, floats
                      as repr(float(v)), which round-trips exactly, words as words); absent when
                      the case has none. A pin may record the scalars PyTorch computed it with
    "<case>/against"  "truth" when tfm is held to the float64 truth instead of PyTorch's float32
                      (cases where PyTorch's float32 is known to be far from the truth); absent
                      otherwise

Scalar parameters live only there: a case's tensors are the op's tensor inputs and its outputs.
"""

import re
import zlib

import torch

SEEDING = "per case: torch.Generator seeded with seed * 2**32 + crc32(case name)"

# An op's name as the op table spells them (oracle/ops.c; `tfm ops` lists them), or "pin". The
# table itself is the C side's: tests/test_ops.c and `tfm check` refuse a case whose op it lacks.
OP_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
AGAINST = ("truth",)


class Case:
    """Inputs of one case, drawn from the case's own generator."""

    def __init__(self, chapter_seed, name):
        self.name = name
        self.gen = torch.Generator().manual_seed(chapter_seed * 2**32 + zlib.crc32(name.encode()))

    def randn(self, *shape):
        return torch.randn(*shape, generator=self.gen, dtype=torch.float64).to(torch.float32)

    def rand(self, *shape):
        return torch.rand(*shape, generator=self.gen, dtype=torch.float64)


def to_f64(x):
    return x.to(torch.float64) if x is not None and x.is_floating_point() else x


class Golden:
    """One golden file being built: tensors by "<case>/<tensor>", the case names in the order
    they were emitted, and the cases' metadata ("<case>/op", ...), which export.py merges into
    the file's __metadata__ beside its own keys."""

    def __init__(self):
        self.tensors = {}
        self.cases = []
        self.metadata = {}

    def __getitem__(self, name):
        return self.tensors[name]


def format_params(params):
    """{"num_heads": 12, "eps": 1e-12} -> "num_heads=12 eps=1e-12", in the dict's order.
    bool -> 0/1, int -> str(int), float -> repr(float(v)), str -> itself (one word); a None
    value is left out (a flag the case does not set)."""
    parts = []
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, torch.Tensor):
            raise TypeError(f"param {k}: pass a Python number, not a tensor")
        if isinstance(v, bool):
            text = str(int(v))
        elif isinstance(v, int):
            text = str(v)
        elif isinstance(v, float):
            text = repr(float(v))
        elif isinstance(v, str) and v and not any(ch.isspace() or ch == "=" for ch in v):
            text = v
        else:
            raise TypeError(f"param {k}: {v!r} is not an int, float or one word")
        if not k.isidentifier():
            raise ValueError(f"param name {k!r} is not an identifier")
        parts.append(f"{k}={text}")
    return " ".join(parts)


def emit(g, case, inputs, outputs32, outputs64, *, op, params=None, against=None):
    """Stores one case in g (a Golden): inputs and both precisions of every output under
    "<case>/", and its op, params and against under "<case>/" in g.metadata. A None input is
    left out (an optional input the case does not give)."""
    assert OP_NAME.fullmatch(op), (case, op)
    assert against is None or against in AGAINST, (case, against)
    assert case not in g.cases and "/" not in case and "," not in case, case
    assert set(outputs32) == set(outputs64), (case, sorted(outputs32), sorted(outputs64))
    names = [k for k, t in inputs.items() if t is not None] + list(outputs32)
    names += [f"{k}_f64" for k in outputs64]
    assert len(set(names)) == len(names), (case, names)
    assert not any(k.endswith("_f64") for k, t in inputs.items() if t is not None), (case, inputs)
    for k, t in inputs.items():
        if t is not None:
            g.tensors[f"{case}/{k}"] = t.contiguous()
    for k, t in outputs32.items():
        assert t.dtype == torch.float32, (case, k, t.dtype)
        g.tensors[f"{case}/{k}"] = t.contiguous()
    for k, t in outputs64.items():
        assert t.dtype == torch.float64, (case, k, t.dtype)
        g.tensors[f"{case}/{k}_f64"] = t.contiguous()
    g.cases.append(case)
    g.metadata[f"{case}/op"] = op
    text = format_params(params or {})
    if text:
        assert not set(p.split("=")[0] for p in text.split()) & set(names), (case, text, names)
        g.metadata[f"{case}/params"] = text
    if against:
        g.metadata[f"{case}/against"] = against


def padding_mask(lengths, Tk):
    """key_padding_mask [B, Tk] (BOOL, True = padding): the last lengths[b] keys of batch row b."""
    kpm = torch.zeros(len(lengths), Tk, dtype=torch.bool)
    for b, n in enumerate(lengths):
        if n:
            kpm[b, Tk - n:] = True
    return kpm
