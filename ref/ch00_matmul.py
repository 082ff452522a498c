"""Chapter 00 in PyTorch: the formulas of chapters/00-tensors/matmul.h, written out.

matmul spells the sum out (every product, then a sum over k) rather than calling torch.matmul:
the point of a reference is that it reads like the formula. linear is the formula nn.Linear
documents, y = x W^T + b, with W stored [out, in]. crosscheck() ties both to PyTorch's own ops.
"""

import torch


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
    """Raises AssertionError if the formulas above disagree with torch.matmul / F.linear."""
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


if __name__ == "__main__":
    crosscheck()
    print("ch00_matmul: crosscheck OK")
