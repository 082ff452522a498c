"""goldenlib — what every chapter's golden builder (oracle/export_NN.py) shares.

Case draws a case's inputs from its own generator; emit() stores inputs and both precisions of
every output under the naming of oracle/cases.h.
"""

import zlib

import torch

SEEDING = "per case: torch.Generator seeded with seed * 2**32 + crc32(case name)"


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


def emit(out, case, inputs, outputs32, outputs64):
    """Stores inputs and both precisions of every output under "<case>/"."""
    for k, t in inputs.items():
        if t is not None:
            out[f"{case}/{k}"] = t.contiguous()
    for k, t in outputs32.items():
        assert t.dtype == torch.float32, (case, k, t.dtype)
        out[f"{case}/{k}"] = t.contiguous()
    for k, t in outputs64.items():
        assert t.dtype == torch.float64, (case, k, t.dtype)
        out[f"{case}/{k}_f64"] = t.contiguous()
