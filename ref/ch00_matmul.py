"""Chapter 00 in PyTorch: the formulas of chapters/00-tensors/matmul.h, written out.

matmul spells the sum out (every product, then a sum over k) rather than calling torch.matmul:
the point of a reference is that it reads like the formula. linear is the formula nn.Linear
documents, y = x W^T + b, with W stored [out, in]. crosscheck() ties both to PyTorch's own ops.

softmax, log_softmax and gelu (chapters/00-tensors/functional.h) are ref/functional.py's; this
chapter owns their checks: crosscheck() runs functional.crosscheck_functions() and its own cases.
"""

import itertools
import math

import torch

import functional


def matmul(a, b):
    """C[m, n] = sum_k A[m, k] B[k, n].   a [M, K], b [K, N] -> [M, N]"""
    return (a[:, :, None] * b[None, :, :]).sum(dim=1)


def linear(x, w, bias=None):
    """Y = X W^T + bias.   x [M, K], w [N, K], bias [N] or None -> [M, N]"""
    y = x @ w.T
    if bias is not None:
        y = y + bias
    return y


def crosscheck():
    """Raises AssertionError if the formulas above disagree with torch.matmul / F.linear, or if
    torch.matmul's 1-D and broadcast rules or F.linear's leading dimensions disagree with their
    rules written out below, or F.softmax, F.log_softmax or F.gelu (both forms) with
    ref/functional.py's formulas (functional.crosscheck_functions(), then the cases below): the
    rules the goldens of oracle/export_00.py carry."""
    g = torch.Generator().manual_seed(1234)
    for m, k, n in [(1, 1, 1), (2, 3, 4), (7, 13, 5), (33, 64, 17)]:
        a = torch.randn(m, k, generator=g, dtype=torch.float64)
        b = torch.randn(k, n, generator=g, dtype=torch.float64)
        w = torch.randn(n, k, generator=g, dtype=torch.float64)
        bias = torch.randn(n, generator=g, dtype=torch.float64)
        torch.testing.assert_close(matmul(a, b), torch.matmul(a, b), rtol=1e-12, atol=1e-12,
                                   msg=lambda s: f"matmul {m}x{k}x{n}: {s}")
        torch.testing.assert_close(linear(a, w, bias), torch.nn.functional.linear(a, w, bias),
                                   rtol=1e-12, atol=1e-12,
                                   msg=lambda s: f"linear {m}x{k}x{n}: {s}")
        torch.testing.assert_close(linear(a, w), torch.nn.functional.linear(a, w),
                                   rtol=1e-12, atol=1e-12,
                                   msg=lambda s: f"linear (no bias) {m}x{k}x{n}: {s}")

    # The goldens beyond 2-D (oracle/export_00.py) come from torch's own ops; these checks pin
    # the rules they carry, each written out independently of the op it is checked against.
    F = torch.nn.functional

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def close(got, want, label, tol=1e-12):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol, equal_nan=True,
                                   msg=lambda s: f"ch00 crosscheck '{label}': {s}")

    # torch.matmul: a 1-D a is a row [1, K], a 1-D b a column [K, 1], each dropped from the
    # result; batch dimensions broadcast from the right; each batch element is matmul() above.
    def matmul_nd(a, b):
        a2 = a[None, :] if a.dim() == 1 else a
        b2 = b[:, None] if b.dim() == 1 else b
        batch = torch.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
        ab = a2.expand(*batch, *a2.shape[-2:])
        bb = b2.expand(*batch, *b2.shape[-2:])
        out = torch.empty(*batch, a2.shape[-2], b2.shape[-1], dtype=a.dtype)
        for i in itertools.product(*[range(n) for n in batch]):   # one () when there is none
            out[i] = matmul(ab[i], bb[i])
        if a.dim() == 1:
            out = out.squeeze(-2)
        if b.dim() == 1:
            out = out.squeeze(-1)
        return out

    for sa, sb in [((7,), (7,)), ((5,), (5, 3)), ((4, 5), (5,)), ((5,), (3, 5, 4)),
                   ((3, 4, 5), (5,)), ((4, 7, 9), (4, 9, 6)), ((2, 1, 3, 4), (5, 4, 2)),
                   ((3, 4, 5), (1, 5, 6)), ((5, 7), (2, 3, 7, 4)), ((2, 3, 5, 7), (7, 4)),
                   ((1, 2, 1, 1, 1, 1, 3, 5), (5, 4)),
                   ((2, 1, 3, 1, 1, 2, 3, 5), (1, 3, 1, 2, 1, 1, 5, 4))]:
        a, b = randn(*sa), randn(*sb)
        want = torch.matmul(a, b)
        got = matmul_nd(a, b)
        assert got.shape == want.shape, (sa, sb, got.shape, want.shape)
        close(got, want, f"matmul {list(sa)} x {list(sb)}")
    assert torch.matmul(randn(2, 3, 0), randn(0, 4)).eq(0).all(), "K = 0 is not zeros"

    # F.linear over any leading dimensions: linear() on the rows, x [..., K] -> [..., N].
    for sx in [(7,), (2, 3, 33), (2, 1, 3, 13)]:
        x, w, bias = randn(*sx), randn(5, sx[-1]), randn(5)
        close(linear(x.reshape(-1, sx[-1]), w, bias).reshape(*sx[:-1], 5), F.linear(x, w, bias),
              f"linear {list(sx)}")

    functional.crosscheck_functions()

    # functional.softmax / log_softmax along dim (negative counts from the end), the max shifted
    # out: exp(x - max) / sum exp(x - max) and (x - max) - log sum exp(x - max). The non-finite
    # rows follow from the formula: all -inf (-inf - -inf), any +inf (inf - inf), any NaN: NaN.
    z = randn(9, 8)
    z[0, :] = -math.inf
    z[1, 3] = math.inf
    z[2, 5] = math.nan
    z[3, :7] = -math.inf
    z[4, ::2] = -math.inf
    z[5] *= 1e4
    for x, dims in [(randn(5, 7), (-1, 0, 1, -2)), (randn(3, 5, 7), (0, 1, 2, -1, -2, -3)),
                    (randn(11), (0, -1)), (randn(2, 3, 4, 5), (2, -2, 3)), (z, (-1, 0)),
                    (randn(4, 1), (-1,))]:
        for d in dims:
            close(functional.softmax(x, d), F.softmax(x, dim=d), f"softmax {list(x.shape)} dim {d}")
            close(functional.log_softmax(x, d), F.log_softmax(x, dim=d),
                  f"log_softmax {list(x.shape)} dim {d}", tol=1e-11)

    # functional.gelu: x/2 (1 + erf(x / sqrt 2)), and the tanh form
    # x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). At -inf both are -inf * 0 = NaN in PyTorch.
    x = torch.cat([torch.linspace(-10, 10, 2001, dtype=torch.float64), 1e4 * randn(50),
                   torch.tensor([0.0, 1e-30, -1e-30, 1e4, -1e4, 1e30, -1e30,
                                 math.inf, -math.inf, math.nan], dtype=torch.float64)])
    for approximate in ("none", "tanh"):
        close(functional.gelu(x, approximate), F.gelu(x, approximate=approximate),
              f"gelu {approximate}", tol=1e-14)
        close(functional.gelu(x.float(), approximate), F.gelu(x.float(), approximate=approximate),
              f"gelu {approximate} float32", tol=2e-6)
    assert F.gelu(torch.tensor(-math.inf)).isnan() and F.gelu(torch.tensor(math.inf)).isinf()


if __name__ == "__main__":
    crosscheck()
    print("ch00_matmul: crosscheck OK")
