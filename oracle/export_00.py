"""Chapter 00 goldens: torch.matmul and F.linear, at shapes that are multiples of no block size.

Imported by oracle/export.py, which finds every oracle/export_NN.py: NAME is the golden file's
stem, SEED the chapter seed, REF the ref/ module whose crosscheck() must pass first, and
build(seed) returns a goldenlib.Golden (tensors, case names, case metadata).
"""

import ch00_matmul
from goldenlib import Case, Golden, emit, to_f64

NAME = "00-tensors"
SEED = 0
REF = ch00_matmul

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


def build(seed):
    out = Golden()
    for name, M, K, N in MATMUL_CASES:
        c = Case(seed, name)
        a, b = c.randn(M, K), c.randn(K, N)
        emit(out, name, {"a": a, "b": b},
             {"out": ch00_matmul.matmul(a, b)},
             {"out": ch00_matmul.matmul(to_f64(a), to_f64(b))}, op="matmul")
    for name, M, K, N, has_bias in LINEAR_CASES:
        c = Case(seed, name)
        x, w = c.randn(M, K), c.randn(N, K)
        bias = c.randn(N) if has_bias else None
        emit(out, name, {"x": x, "w": w, "bias": bias},
             {"out": ch00_matmul.linear(x, w, bias)},
             {"out": ch00_matmul.linear(to_f64(x), to_f64(w), to_f64(bias))}, op="linear")
    return out
