"""Chapter 07 goldens: the gradients of chapter 00's and 04's ops, from torch.autograd through
PyTorch's own forwards (ref/ch07_backward.py's grads()), float32 from the float32 inputs and
float64 from the same inputs in float64 (forwards that ref's crosscheck() passes through
torch.autograd.gradcheck).

Each case holds the forward's inputs, grad_out (the upstream gradient, drawn N(0, 1) in the
output's shape) and grad_<input> for every float input. Shapes straddle the fast GEMM's blocks
(KC = 256 along the reduced dimension of each gradient product, MR = 12 and NR = 32 edges) and
the rows of the row-wise kernels (sixteen lanes, contiguous or not).

Imported by oracle/export.py (NAME, SEED, REF, build(seed): see export_00.py).
"""
import torch
import torch.nn.functional as F

import ch07_backward
from ch07_backward import grads
from goldenlib import Case, Golden, emit, to_f64

NAME = "07-backward"
SEED = 7
REF = ch07_backward

MATMUL_CASES = [  # name, a's shape, b's shape
    ("matmul_small", (2, 3), (3, 4)),
    ("matmul_blocks", (300, 130), (130, 270)),       # every reduced dimension past KC = 256
    ("matmul_vec_mat", (5,), (5, 3)),                # 1-D a: grad_a is [K]
    ("matmul_mat_vec", (4, 5), (5,)),                # 1-D b: grad_b is [K]
    ("matmul_broadcast", (2, 1, 3, 4), (5, 4, 2)),   # batch entries summed into broadcast grads
    ("matmul_heads", (2, 4, 16, 64), (2, 4, 64, 16)),  # q k^T of attention, batched
]
LINEAR_CASES = [  # name, x's shape, N, bias
    ("linear_small", (3, 5), 4, True),
    ("linear_nobias", (17, 33), 9, False),
    ("linear_blocks", (300, 130), 270, True),        # dW reduces over 300 rows, dX over 270
    ("linear_3d", (2, 3, 33), 17, True),
    ("linear_one_row", (1, 96), 40, True),           # M = 1: the direct path
    ("linear_bert", (2, 32, 768), 192, True),        # BERT's width in, 64 tokens
]
ROWWISE_CASES = [  # suffix, shape, dim (None: the default -1), scale
    ("row", (5, 7), None, 1.0),
    ("dim0", (6, 9), 0, 1.0),
    ("3d_dim1", (3, 37, 20), 1, 2.0),                # rows 20 apart: 16 lanes and a tail of 4
    ("odd", (33, 257), None, 3.0),
    ("attention", (1, 4, 8, 128), None, 2.0),
    ("c1", (4, 1), None, 1.0),                       # C = 1: the gradient is 0 (softmax)
    ("bert_vocab", (1, 30522), None, 1.0),
]
LAYERNORM_CASES = [  # name, x's shape, normalized dims, gamma and beta, eps, offset
    ("layernorm_small", (4, 6), 1, True, 1e-5, 0.0),
    ("layernorm_noaffine", (5, 7), 1, False, 1e-5, 0.0),
    ("layernorm_2d_shape", (2, 3, 4, 5), 2, True, 1e-5, 0.0),
    ("layernorm_cols", (70, 300), 1, True, 1e-5, 0.0),   # past the 256-column block of dgamma
    ("layernorm_bert", (2, 32, 768), 1, True, 1e-12, 0.0),
    ("layernorm_offset", (8, 64), 1, True, 1e-5, 100.0),  # |mean| / std = 100
]


def _both(forward, inputs, grad_out):
    """autograd in float32 and in float64 (the same inputs, converted)."""
    g32 = {f"grad_{k}": v for k, v in grads(forward, inputs, grad_out).items()}
    g64 = {f"grad_{k}": v for k, v in
           grads(forward, {k: to_f64(v) for k, v in inputs.items()}, to_f64(grad_out)).items()}
    return g32, g64


def build(seed):
    out = Golden()
    for name, sa, sb in MATMUL_CASES:
        c = Case(seed, name)
        a, b = c.randn(*sa), c.randn(*sb)
        g = c.randn(*torch.matmul(a, b).shape)
        g32, g64 = _both(lambda a, b: torch.matmul(a, b), {"a": a, "b": b}, g)
        emit(out, name, {"a": a, "b": b, "grad_out": g}, g32, g64, op="matmul-backward")

    for name, sx, N, has_bias in LINEAR_CASES:
        c = Case(seed, name)
        x, w = c.randn(*sx), c.randn(N, sx[-1]) / sx[-1] ** 0.5
        bias = c.randn(N) if has_bias else None
        g = c.randn(*sx[:-1], N)
        g32, g64 = _both(lambda x, w, bias=None: F.linear(x, w, bias),
                         {"x": x, "w": w, "bias": bias}, g)
        emit(out, name, {"x": x, "w": w, "bias": bias, "grad_out": g}, g32, g64,
             op="linear-backward")

    for op, fn, prefix in (("softmax-backward", F.softmax, "softmax"),
                           ("log-softmax-backward", F.log_softmax, "log_softmax")):
        for suffix, shape, dim, scale in ROWWISE_CASES:
            name = f"{prefix}_{suffix}"
            c = Case(seed, name)
            x, g = scale * c.randn(*shape), c.randn(*shape)
            d = -1 if dim is None else dim
            g32, g64 = _both(lambda input: fn(input, dim=d), {"input": x}, g)
            emit(out, name, {"input": x, "grad_out": g}, g32, g64, op=op, params={"dim": dim})

    # -10..10 in steps of 1/100 (exact divisions: the same bits anywhere), large values, BERT's
    # FFN width
    dense = (torch.arange(-1000, 1001, dtype=torch.float64) / 100.0).to(torch.float32)
    large = torch.tensor([30.0, -30.0, 15.0, -15.0, 12.0, -12.0, 6.0, -6.0, 1e4, -1e4, 0.0,
                          -0.0], dtype=torch.float32)
    for approximate in ("none", "tanh"):
        tag = "gelu" if approximate == "none" else "gelu_tanh"
        for suffix, draw in (("range", lambda c: dense), ("large", lambda c: large),
                             ("bert_ffn", lambda c: 2.0 * c.randn(2, 3072))):
            name = f"{tag}_{suffix}"
            c = Case(seed, name)
            x = draw(c)
            g = c.randn(*x.shape)
            g32, g64 = _both(lambda input: F.gelu(input, approximate=approximate),
                             {"input": x}, g)
            # the tanh form is held to the truth: PyTorch's float32 backward computes 1 - tanh^2,
            # which cancels for |u| > 3 (3e-6 off where the derivative is 1e-3; functional_naive.c)
            emit(out, name, {"input": x, "grad_out": g}, g32, g64, op="gelu-backward",
                 params={"approximate": "tanh" if approximate == "tanh" else None},
                 against="truth" if approximate == "tanh" else None)

    for name, sx, nd, affine, eps, offset in LAYERNORM_CASES:
        c = Case(seed, name)
        x = c.randn(*sx) + offset
        s = sx[len(sx) - nd:]
        gamma = 1.0 + 0.1 * c.randn(*s) if affine else None
        beta = 0.1 * c.randn(*s) if affine else None
        g = c.randn(*sx)
        g32, g64 = _both(lambda x, gamma=None, beta=None: F.layer_norm(x, s, gamma, beta, eps),
                         {"x": x, "gamma": gamma, "beta": beta}, g)
        # offset rows are held to the truth: PyTorch's float32 grad_gamma is 4.6e-6 from it
        # (relative Frobenius) at |mean| / std = 100, tfm's 1.2e-6
        emit(out, name, {"x": x, "gamma": gamma, "beta": beta, "grad_out": g}, g32, g64,
             op="layernorm-backward", against="truth" if offset else None,
             params={"eps": eps if eps != 1e-5 else None,
                     "normalized_ndim": nd if not affine and nd != 1 else None})
    return out
