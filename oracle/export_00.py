"""Chapter 00 goldens: torch.matmul (1-D to 8-D, broadcast batch dimensions), F.linear (any
leading dimensions), F.softmax / F.log_softmax along any dim, and F.gelu (erf and tanh forms),
at shapes that are multiples of no block size and on the edge cases of each rule.

Imported by oracle/export.py, which finds every oracle/export_NN.py: NAME is the golden file's
stem, SEED the chapter seed, REF the ref/ module whose crosscheck() must pass first, and
build(seed) returns a goldenlib.Golden (tensors, case names, case metadata).

The 2-D matmul and linear cases go through ref/ch00_matmul.py's formulas; every other case
through PyTorch's own op (torch.matmul, F.linear, F.softmax, F.log_softmax, F.gelu) in both
precisions, so that the goldens carry PyTorch's semantics (crosscheck() ties the formulas to them).
Parameters are recorded only where they differ from the op's default (softmax's dim = -1,
gelu's approximate = none).
"""
import math

import torch
import torch.nn.functional as F

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

# torch.matmul's rules beyond 2-D x 2-D: name, a's shape, b's shape; the comment says what the
# case guards.
MATMUL_ND_CASES = [
    ("matmul_vec_vec", (7,), (7,)),                  # 1-D x 1-D: a dot product, a 0-d out
    ("matmul_vec_vec_1", (1,), (1,)),                # the smallest: K = 1, 0-d out
    ("matmul_vec_mat", (5,), (5, 3)),                # 1-D a: a row whose 1 is dropped -> [3]
    ("matmul_mat_vec", (4, 5), (5,)),                # 1-D b: a column whose 1 is dropped -> [4]
    ("matmul_vec_3d", (5,), (3, 5, 4)),              # 1-D a against a batch -> [3, 4]
    ("matmul_3d_vec", (3, 4, 5), (5,)),              # a batch against 1-D b -> [3, 4]
    ("matmul_vec_4d", (6,), (2, 3, 6, 5)),           # -> [2, 3, 5]
    ("matmul_batched", (4, 7, 9), (4, 9, 6)),        # batch against batch, same batch
    ("matmul_broadcast", (2, 1, 3, 4), (5, 4, 2)),   # batch dims broadcast from the right
    ("matmul_b_batch1", (3, 4, 5), (1, 5, 6)),       # b's batch dimension 1 broadcasts to 3
    ("matmul_a_batch1", (1, 4, 5), (3, 5, 6)),       # a's batch dimension 1 broadcasts to 3
    ("matmul_4d_2d", (2, 3, 5, 7), (7, 4)),          # 2-D b shared by every batch element
    ("matmul_2d_4d", (5, 7), (2, 3, 7, 4)),          # 2-D a shared by every batch element
    ("matmul_8d", (1, 2, 1, 1, 1, 1, 3, 5), (5, 4)),  # the most dimensions tfm reads
    ("matmul_8d_broadcast", (2, 1, 3, 1, 1, 2, 3, 5), (1, 3, 1, 2, 1, 1, 5, 4)),
    ("matmul_heads", (2, 12, 16, 64), (2, 12, 64, 16)),  # BERT's q k^T at 12 heads, Dk = 64
    ("matmul_k0", (2, 3, 0), (0, 4)),                # K = 0: an empty sum, zeros
]

# name, x's shape, N, bias
LINEAR_ND_CASES = [
    ("linear_vec", (7,), 5, True),          # x [K] -> [N]
    ("linear_vec_1", (1,), 1, False),       # the smallest: K = N = 1, no bias
    ("linear_3d", (2, 3, 33), 17, True),    # x [2, 3, K] -> [2, 3, N]
    ("linear_3d_nobias", (2, 3, 19), 11, False),
    ("linear_4d", (2, 1, 3, 13), 9, True),
]

INF, NAN = math.inf, math.nan


def _softmax_cases(seed, prefix):
    """The cases of softmax and log-softmax (prefix "softmax" or "log_softmax"): (case name,
    input, dim or None for the default -1), each drawn from its own case's generator. Each one
    guards one rule; the shapes have distinct sizes, so reducing along the wrong dimension
    changes the values (or the shape)."""
    cases = []

    def case(suffix, draw, dim):
        name = f"{prefix}_{suffix}"
        cases.append((name, draw(Case(seed, name)), dim))

    case("row", lambda c: c.randn(5, 7), None)               # the default dim -1
    case("dim0", lambda c: c.randn(6, 9), 0)                 # along the first dimension
    case("3d_dim1", lambda c: c.randn(3, 5, 7), 1)           # a middle dimension of a 3-D input
    case("3d_dim2", lambda c: c.randn(3, 5, 7), 2)           # the last, named by a positive dim
    case("3d_neg2", lambda c: c.randn(4, 6, 5), -2)          # negative counts from the end: 1
    case("3d_neg3", lambda c: c.randn(4, 6, 5), -3)          # ... and -3 is dimension 0
    case("1d", lambda c: c.randn(11), None)                  # a 1-D input
    case("1d_dim0", lambda c: c.randn(13), 0)                # the same, named by dim 0
    case("4d_dim2", lambda c: c.randn(2, 3, 4, 5), 2)        # a 4-D input along dim 2
    case("odd", lambda c: 3.0 * c.randn(33, 257), None)      # widths past any vector block
    case("attention", lambda c: 2.0 * c.randn(1, 12, 4, 128), None)  # BERT's score rows, T = 128
    case("single", lambda c: c.randn(1), None)               # one element: 1 (log: 0)
    case("c1", lambda c: c.randn(4, 1), None)                # C = 1: every row is 1 (log: 0)
    case("c1_dim0", lambda c: c.randn(1, 6), 0)              # C = 1 along dim 0

    def nonfinite(c):
        z = c.randn(10, 8)
        z[0, :] = -INF               # all -inf: the max is -inf, -inf - -inf = NaN: a NaN row
        z[1, 3] = INF                # one +inf: inf - inf = NaN there, a NaN row
        z[2, 1], z[2, 6] = INF, INF  # two +inf: a NaN row (not 0.5 and 0.5)
        z[3, 5] = NAN                # a NaN: a NaN row
        z[4, 0] = NAN                # a NaN first, where a max scan starts
        z[5, 7] = NAN                # a NaN last, after the max
        z[6, :7] = -INF              # all -inf but the last: 1 there (log 0), else 0 (log -inf)
        z[7, ::2] = -INF             # some -inf: exactly 0 there (log -inf), the rest finite
        z[8, 0], z[8, 1] = -INF, NAN  # -inf, then NaN: a NaN row
        return z                     # row 9 finite
    case("nonfinite", nonfinite, None)
    case("nonfinite_dim0", lambda c: nonfinite(c).t().contiguous(), 0)  # the rows as columns
    case("large_1e4", lambda c: 1e4 * c.randn(6, 10), None)  # exp overflows without the max shift

    def large_gap(c):
        z = c.randn(3, 40)
        z[0] += 1e4                  # a common offset of 1e4: the shift removes it
        z[1, 7] = 200.0              # a gap of 200: exp(-200) underflows, log-softmax is -200
        z[2] *= 100.0
        return z
    case("large_gap", large_gap, None)

    def bert_vocab(c):               # bert-base-uncased's vocabulary; row 1 an MLM-like peak
        z = c.randn(2, 30522)
        z[1, 2054] = 15.0
        return z
    case("bert_vocab", bert_vocab, None)
    return cases


def _gelu_inputs():
    """{case suffix: draw(Case) -> input}: the range densely, values near 0 (denormals and
    signed zeros), large ones (where x^3 of the tanh form overflows float32 past 7e12) and
    non-finite ones, an odd shape and BERT's FFN width."""
    # -10..10 in steps of 1/200 (k / 200, each division correctly rounded: the same bits on any
    # CPU, which torch.linspace's vectorized fill does not promise)
    dense = (torch.arange(-2000, 2001, dtype=torch.float64) / 200.0).to(torch.float32)
    near0 = torch.tensor([0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.1754944e-38, -1.1754944e-38,
                          1e-30, -1e-30, 1e-10, -1e-10, 1e-7, -1e-7, 1e-4, -1e-4, 1e-3, -1e-3,
                          0.01, -0.01, 0.1, -0.1], dtype=torch.float64).to(torch.float32)
    large = torch.tensor([1e4, -1e4, 100.0, -100.0, 30.0, -30.0, 12.0, -12.0, 1e20, -1e20,
                          1e30, -1e30, 3.4028235e38, -3.4028235e38, 5e12, -5e12, 2e13, -2e13,
                          INF, -INF, NAN, 1.0, -1.0], dtype=torch.float64).to(torch.float32)
    return {"range": lambda c: dense, "near0": lambda c: near0, "large": lambda c: large,
            "odd": lambda c: 3.0 * c.randn(7, 37), "bert_ffn": lambda c: 2.0 * c.randn(2, 3072)}


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

    for name, sa, sb in MATMUL_ND_CASES:
        c = Case(seed, name)
        a, b = c.randn(*sa), c.randn(*sb)
        o32, o64 = torch.matmul(a, b), torch.matmul(to_f64(a), to_f64(b))
        emit(out, name, {"a": a, "b": b}, {"out": o32}, {"out": o64}, op="matmul")
    assert out["matmul_vec_vec/out"].dim() == 0 and out["matmul_k0/out"].abs().max() == 0
    assert out["matmul_8d_broadcast/out"].shape == (2, 3, 3, 2, 1, 2, 3, 4)

    for name, sx, N, has_bias in LINEAR_ND_CASES:
        c = Case(seed, name)
        x, w = c.randn(*sx), c.randn(N, sx[-1])
        bias = c.randn(N) if has_bias else None
        emit(out, name, {"x": x, "w": w, "bias": bias},
             {"out": F.linear(x, w, bias)},
             {"out": F.linear(to_f64(x), to_f64(w), to_f64(bias))}, op="linear")

    for op, fn, prefix in (("softmax", F.softmax, "softmax"),
                           ("log-softmax", F.log_softmax, "log_softmax")):
        for name, x, dim in _softmax_cases(seed, prefix):
            d = -1 if dim is None else dim
            emit(out, name, {"input": x}, {"out": fn(x, dim=d)}, {"out": fn(to_f64(x), dim=d)},
                 op=op, params={"dim": dim})
    # What the non-finite rows pin (PyTorch 1.13, both precisions): NaN rows, and the finite ones.
    for tag in ("softmax", "log_softmax"):
        sm = out[f"{tag}_nonfinite/out_f64"]
        assert sm[:6].isnan().all() and sm[8].isnan().all(), tag
        assert not sm[6:8].isnan().any() and sm[9].isfinite().all(), tag
    assert out["log_softmax_large_gap/out"][1, 7] == 0.0
    assert out["softmax_large_gap/out"][1].max() == 1

    for approximate in ("none", "tanh"):
        tag = "gelu" if approximate == "none" else "gelu_tanh"
        for suffix, draw in _gelu_inputs().items():
            name = f"{tag}_{suffix}"
            x = draw(Case(seed, name))
            emit(out, name, {"input": x},
                 {"out": F.gelu(x, approximate=approximate)},
                 {"out": F.gelu(to_f64(x), approximate=approximate)}, op="gelu",
                 params={"approximate": "tanh" if approximate == "tanh" else None})
    # gelu(-inf) is -inf * 0 = NaN in PyTorch (both forms), gelu(inf) = inf.
    g = out["gelu_large/out_f64"]
    assert g[-5] == INF and g[-4].isnan() and g[-3].isnan()
    return out
