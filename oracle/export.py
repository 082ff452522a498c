#!/usr/bin/env python3
"""export.py — writes the golden tensors the C side is checked against.

    export.py --out DIR [--chapter 00|01]

For each chapter: first the ref module's crosscheck() (our literal formulas against PyTorch's own
ops; if they disagree, the goldens would be wrong, so nothing is written), then
DIR/NN-name.safetensors.gz.

Naming (oracle/cases.h): inputs "<case>/<input>"; each output <o> twice, "<case>/<o>" computed in
float32 from the float32 inputs and "<case>/<o>_f64" computed by the same function from those
same inputs converted to float64 (the truth, up to float64 rounding).

Reproducibility: the same torch on the same machine gives byte-identical files (make
oracle-verify relies on it). Hence one thread everywhere, explicit generators, and inputs drawn in
float64 and rounded to float32: torch's float32 randn has an AVX2-only vectorized path with its
own log/cos, so float32 draws could differ between CPUs; the float64 path is scalar.
Each case has its own generator, seeded from the chapter seed and the case name, so adding,
removing or reordering cases leaves every other case's inputs unchanged.
"""

import argparse
import math
import os
import sys
import zlib

# Before torch loads: OpenBLAS and OpenMP read these once, at library load.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"
sys.dont_write_bytecode = True  # no __pycache__ left in oracle/ or ref/

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "ref"))
sys.path.insert(0, os.path.join(ROOT, "oracle"))

import torch  # noqa: E402

import ch00_matmul  # noqa: E402
import ch01_attention  # noqa: E402
import safetensors_io  # noqa: E402

SCRIPT = "oracle/export.py"
FORMAT = "tfm golden v1"
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


# ---------------------------------------------------------------- chapter 00: matmul, linear

MATMUL_CASES = [  # name, M, K, N
    ("matmul_tiny", 1, 1, 1),
    ("matmul_small", 2, 3, 4),
    ("matmul_odd", 37, 61, 29),
    ("matmul_square", 128, 128, 128),
    ("matmul_rect", 130, 257, 67),
]
LINEAR_CASES = [  # name, M, K, N, bias
    ("linear_small", 3, 5, 4, True),
    ("linear_nobias", 17, 33, 9, False),
    ("linear_odd", 65, 127, 97, True),
    ("linear_bert", 64, 768, 768, True),
]


def chapter_00(seed):
    out, names = {}, []
    for name, M, K, N in MATMUL_CASES:
        c = Case(seed, name)
        a, b = c.randn(M, K), c.randn(K, N)
        emit(out, name, {"a": a, "b": b},
             {"out": ch00_matmul.matmul(a, b)},
             {"out": ch00_matmul.matmul(to_f64(a), to_f64(b))})
        names.append(name)
    for name, M, K, N, has_bias in LINEAR_CASES:
        c = Case(seed, name)
        x, w = c.randn(M, K), c.randn(N, K)
        bias = c.randn(N) if has_bias else None
        emit(out, name, {"x": x, "w": w, "bias": bias},
             {"out": ch00_matmul.linear(x, w, bias)},
             {"out": ch00_matmul.linear(to_f64(x), to_f64(w), to_f64(bias))})
        names.append(name)
    return out, names


# ---------------------------------------------------------------- chapter 01: attention

def _keep_to_additive(keep):
    return torch.zeros(keep.shape, dtype=torch.float32).masked_fill(~keep, -math.inf)


def _bool_mask(c, Tq, Tk):
    """A random keep-mask (True = attend), each row keeping at least one key, as 0 / -inf."""
    keep = c.rand(Tq, Tk) < 0.5
    for i in range(Tq):
        if not keep[i].any():
            keep[i, int(c.rand(1).item() * Tk)] = True
    return _keep_to_additive(keep)


def _padding(lengths, Tk):
    """key_padding_mask [B, Tk], True for the last `n` keys of each batch row."""
    kpm = torch.zeros(len(lengths), Tk, dtype=torch.bool)
    for b, n in enumerate(lengths):
        if n:
            kpm[b, Tk - n:] = True
    return kpm


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
    ("padded", (3, 2, 6, 6, 8, 8), lambda c: {"key_padding_mask": _padding([0, 2, 3], 6)}),
    ("bool_mask", (1, 2, 6, 6, 4, 4), lambda c: {"attn_mask": _bool_mask(c, 6, 6)}),
    ("float_mask", (2, 2, 5, 5, 8, 8), lambda c: {"attn_mask": c.randn(5, 5)}),
    ("per_head_mask", (2, 3, 4, 6, 8, 8), lambda c: {"attn_mask": c.randn(2, 3, 4, 6)}),
    ("fully_masked_row", (1, 1, 3, 4, 4, 4), lambda c: {"attn_mask": _fully_masked_row(3, 4, 1)}),
    ("medium", (1, 4, 64, 64, 32, 32), None),
    ("long", (1, 2, 200, 200, 64, 64), None),
    ("large_logits", (1, 1, 8, 8, 16, 16), None),
]
Q_SCALE = {"large_logits": 100.0}  # logits ~1e3: exp overflows unless the max is subtracted


def chapter_01(seed):
    out, names = {}, []
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
                  "key_padding_mask": kw.get("key_padding_mask"),
                  "is_causal": torch.tensor(1, dtype=torch.int64) if kw.get("is_causal") else None}
        emit(out, name, inputs, {"out": o32, "probs": p32}, {"out": o64, "probs": p64})
        has_nan = bool(o64.isnan().any())
        assert has_nan == (name == "fully_masked_row"), f"{name}: unexpected NaN state {has_nan}"
        names.append(name)

    name = "errata_000_3_1"
    c = Case(seed, name)
    x = c.randn(6, 8)
    ws = {w: c.randn(8, 8) for w in ("w_q", "w_k", "w_v", "w_o")}
    good32, art32 = ch01_attention.article_000_3_1(x, **ws)
    good64, art64 = ch01_attention.article_000_3_1(to_f64(x), **{k: to_f64(w) for k, w in ws.items()})
    emit(out, name, {"x": x, **ws}, {"out": good32, "out_article": art32},
         {"out": good64, "out_article": art64})
    names.append(name)
    return out, names


# ---------------------------------------------------------------- main

CHAPTERS = {  # number: (file name, seed, ref module, builder)
    "00": ("00-tensors", 0, ch00_matmul, chapter_00),
    "01": ("01-attention", 1, ch01_attention, chapter_01),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (created if missing)")
    ap.add_argument("--chapter", choices=sorted(CHAPTERS), help="only this chapter")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    chosen = [args.chapter] if args.chapter else sorted(CHAPTERS)

    for num in chosen:
        fname, _, mod, _ = CHAPTERS[num]
        try:
            mod.crosscheck()
        except AssertionError as e:
            sys.exit(f"export.py: {mod.__name__}.crosscheck() FAILED, no goldens written:\n{e}")
        print(f"crosscheck OK  {mod.__name__} (torch {torch.__version__})")

    os.makedirs(args.out, exist_ok=True)
    for num in chosen:
        fname, seed, _, build = CHAPTERS[num]
        tensors, cases = build(seed)
        meta = {
            "torch_version": torch.__version__,
            "seed": str(seed),
            "seeding": SEEDING,
            "script": SCRIPT,
            "format": FORMAT,
            "cases": ",".join(cases),
        }
        path = os.path.join(args.out, fname + ".safetensors.gz")
        safetensors_io.save(path, tensors, meta)
        print(f"wrote {path}: {len(cases)} cases, {len(tensors)} tensors, "
              f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
