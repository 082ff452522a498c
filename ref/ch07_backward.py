"""Chapter 07 in PyTorch: the backward formulas of chapters 00 and 04, written out, and the
autograd that the goldens come from.

Each *_backward function is the gradient the C header states (matmul.h, functional.h,
layernorm.h), in a few tensor operations: what a reader checks the derivation against.
grads() is what the goldens are: torch.autograd.grad through PyTorch's own forward (torch.matmul,
F.linear, F.softmax, F.log_softmax, F.gelu, F.layer_norm), called as a whole. crosscheck() ties
the two together and passes every float64 forward through torch.autograd.gradcheck, which
compares autograd's gradient with finite differences: so the float64 goldens are right, not only
consistent.
"""

import torch
import torch.nn.functional as F

import ch01_attention


# ---------------------------------------------------------------- the formulas

def matmul_backward(a, b, g):
    """C = A B:  dA = g B^T, dB = A^T g.   a [M, K], b [K, N], g [M, N]"""
    return g @ b.T, a.T @ g


def linear_backward(x, w, g):
    """Y = X W^T + bias:  dX = g W, dW = g^T X, dbias = sum over rows of g.   x [M, K], w [N, K]"""
    return g @ w, g.T @ x, g.sum(0)


def softmax_backward(y, g, dim):
    """p = softmax(x):  dx = p (g - sum(g p))  (the Jacobian diag(p) - p p^T applied to g)."""
    return y * (g - (g * y).sum(dim, keepdim=True))


def log_softmax_backward(y, g, dim):
    """y = log_softmax(x):  dx = g - exp(y) sum(g)."""
    return g - y.exp() * g.sum(dim, keepdim=True)


def gelu_backward(x, g, approximate="none"):
    """d/dx x Phi(x) = Phi(x) + x phi(x); the tanh form's derivative with t = tanh u."""
    if approximate == "none":
        cdf = 0.5 * (1.0 + torch.erf(x / 2.0 ** 0.5))
        pdf = torch.exp(-0.5 * x * x) / (2.0 * torch.pi) ** 0.5
        return g * (cdf + x * pdf)
    k, s = 0.044715, (2.0 / torch.pi) ** 0.5
    t = torch.tanh(s * (x + k * x ** 3))
    return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * s * (1.0 + 3.0 * k * x * x))


def attention_backward(q, k, v, M, scale, g):
    """P = softmax(scale Q K^T + M): dV = P^T g, dP = g V^T, dS = P (dP - rowsum(P dP)),
    dQ = scale dS K, dK = scale dS^T Q."""
    P = torch.softmax(q @ k.transpose(-2, -1) * scale + M, dim=-1)
    dP = g @ v.transpose(-2, -1)
    dS = P * (dP - (P * dP).sum(-1, keepdim=True))
    return scale * dS @ k, scale * dS.transpose(-2, -1) @ q, P.transpose(-2, -1) @ g


def layernorm_backward(x, gamma, g, eps, nd=1):
    """out = gamma x_hat + beta over the last nd dimensions:
    dx = rstd (g gamma - mean(g gamma) - x_hat mean(g gamma x_hat)),
    dgamma = sum over rows of g x_hat, dbeta = sum over rows of g."""
    dims = tuple(range(x.dim() - nd, x.dim()))
    mu = x.mean(dims, keepdim=True)
    rstd = 1.0 / torch.sqrt(((x - mu) ** 2).mean(dims, keepdim=True) + eps)
    xhat = (x - mu) * rstd
    gg = g * gamma if gamma is not None else g
    dx = rstd * (gg - gg.mean(dims, keepdim=True) - xhat * (gg * xhat).mean(dims, keepdim=True))
    rows = tuple(range(x.dim() - nd))
    return dx, (g * xhat).sum(rows), g.sum(rows)


# ---------------------------------------------------------------- autograd: the goldens

def grads(forward, inputs, grad_out):
    """{name: dL/d input} for L = sum(forward(**inputs) * grad_out), over the float inputs
    (None ones left out), by torch.autograd.grad through PyTorch's own forward."""
    leaves = {k: (v.detach().clone().requires_grad_(True)
                  if v is not None and v.is_floating_point() else v)
              for k, v in inputs.items()}
    out = forward(**leaves)
    wanted = [k for k, v in leaves.items() if v is not None and v.requires_grad]
    got = torch.autograd.grad(out, [leaves[k] for k in wanted], grad_out, allow_unused=True)
    return {k: (torch.zeros_like(leaves[k]) if d is None else d) for k, d in zip(wanted, got)}


def _gradcheck(forward, inputs, label):
    names = [k for k, v in inputs.items() if v is not None and v.is_floating_point()]
    fixed = {k: v for k, v in inputs.items() if k not in names}

    def f(*args):
        return forward(**dict(zip(names, args)), **fixed)
    args = tuple(inputs[k].detach().clone().requires_grad_(True) for k in names)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-5), label


def crosscheck():
    """Raises AssertionError if a formula above disagrees with autograd through PyTorch's
    forward, or if autograd's float64 gradient of a forward fails gradcheck (finite differences)."""
    gen = torch.Generator().manual_seed(7)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def close(a, b, label):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda s: f"{label}: {s}")

    a, b = randn(5, 7), randn(7, 3)
    g = randn(5, 3)
    want = grads(torch.matmul, {"input": a, "other": b}, g)
    for got, k in zip(matmul_backward(a, b, g), ("input", "other")):
        close(got, want[k], f"matmul d{k}")
    _gradcheck(torch.matmul, {"input": a, "other": b}, "matmul")
    _gradcheck(torch.matmul, {"input": randn(2, 1, 3, 4), "other": randn(5, 4, 2)},
               "matmul, broadcast batch")

    x, w, bias = randn(6, 4), randn(3, 4), randn(3)
    g = randn(6, 3)
    want = grads(F.linear, {"input": x, "weight": w, "bias": bias}, g)
    for got, k in zip(linear_backward(x, w, g), ("input", "weight", "bias")):
        close(got, want[k], f"linear d{k}")
    _gradcheck(F.linear, {"input": x, "weight": w, "bias": bias}, "linear")

    for dim in (-1, 0, 1):
        x, g = randn(3, 5, 4), randn(3, 5, 4)
        close(softmax_backward(F.softmax(x, dim), g, dim),
              grads(lambda input: F.softmax(input, dim), {"input": x}, g)["input"],
              f"softmax dim {dim}")
        close(log_softmax_backward(F.log_softmax(x, dim), g, dim),
              grads(lambda input: F.log_softmax(input, dim), {"input": x}, g)["input"],
              f"log_softmax dim {dim}")
        _gradcheck(lambda input: F.softmax(input, dim), {"input": x}, f"softmax dim {dim}")
        _gradcheck(lambda input: F.log_softmax(input, dim), {"input": x}, f"log_softmax {dim}")

    for approximate in ("none", "tanh"):
        x, g = 3.0 * randn(40), randn(40)
        close(gelu_backward(x, g, approximate),
              grads(lambda input: F.gelu(input, approximate=approximate), {"input": x},
                    g)["input"], f"gelu {approximate}")
        _gradcheck(lambda input: F.gelu(input, approximate=approximate), {"input": x},
                   f"gelu {approximate}")

    B, H, Tq, Tk, Dk, Dv = 2, 3, 5, 7, 4, 6
    q, k, v = randn(B, H, Tq, Dk), randn(B, H, Tk, Dk), randn(B, H, Tk, Dv)
    g = randn(B, H, Tq, Dv)
    kpm = torch.zeros(B, Tk, dtype=torch.bool)
    kpm[1, 5:] = True
    for causal, am in ((False, None), (True, None), (False, randn(Tq, Tk))):
        def attn(q, k, v):
            return ch01_attention.attention(q, k, v, am, kpm, causal, 0.7)[0]
        want = grads(attn, {"q": q, "k": k, "v": v}, g)
        M = ch01_attention.attention_mask(B, H, Tq, Tk, am, kpm, causal, torch.float64)
        for got, name in zip(attention_backward(q, k, v, M, 0.7, g), "qkv"):
            close(got, want[name], f"attention d{name} causal={causal}")
        _gradcheck(attn, {"q": q, "k": k, "v": v}, f"attention causal={causal}")

    # nn.MultiheadAttention through its functional form (the module's own forward), with every
    # parameter an input: gradcheck in float64, self-attention (query = key = value = x) and
    # cross-attention (query [B, Tq, E] against key, value [B, Tk, E], Tq != Tk)
    E, H = 6, 2

    def mha(q, k, v, w_in, b_in, w_out, b_out):
        return F.multi_head_attention_forward(
            q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), E, H, w_in, b_in, None, None,
            False, 0.0, w_out, b_out, training=False, need_weights=False)[0].transpose(0, 1)

    def mha_self(x, w_in, b_in, w_out, b_out):
        return mha(x, x, x, w_in, b_in, w_out, b_out)
    _gradcheck(mha_self, {"x": randn(2, 4, E), "w_in": randn(3 * E, E), "b_in": randn(3 * E),
                          "w_out": randn(E, E), "b_out": randn(E)}, "multi-head attention")
    _gradcheck(mha, {"q": randn(2, 3, E), "k": randn(2, 5, E), "v": randn(2, 5, E),
                     "w_in": randn(3 * E, E), "b_in": randn(3 * E), "w_out": randn(E, E),
                     "b_out": randn(E)}, "multi-head cross-attention")

    for shape, nd, affine in (((4, 6), 1, True), ((2, 3, 4, 5), 2, True), ((5, 7), 1, False)):
        x, g = randn(*shape), randn(*shape)
        s = shape[len(shape) - nd:]
        gamma, beta = (randn(*s), randn(*s)) if affine else (None, None)

        def ln(x, gamma=None, beta=None):
            return F.layer_norm(x, s, gamma, beta, 1e-5)
        want = grads(ln, {"x": x, "gamma": gamma, "beta": beta}, g)
        dx, dg, db = layernorm_backward(x, gamma, g, 1e-5, nd)
        close(dx, want["x"], f"layernorm dx {shape}")
        if affine:
            close(dg, want["gamma"], f"layernorm dgamma {shape}")
            close(db, want["beta"], f"layernorm dbeta {shape}")
        _gradcheck(ln, {"x": x, "gamma": gamma, "beta": beta}, f"layernorm {shape}")

    # Add & Norm: LN(x + s) sends LayerNorm's dx to both addends
    x, sub, g = randn(4, 6), randn(4, 6), randn(4, 6)
    gamma, beta = randn(6), randn(6)

    def add_norm(x, s, gamma, beta):
        return F.layer_norm(x + s, (6,), gamma, beta, 1e-5)
    want = grads(add_norm, {"x": x, "s": sub, "gamma": gamma, "beta": beta}, g)
    dy = layernorm_backward(x + sub, gamma, g, 1e-5, 1)[0]
    close(dy, want["x"], "add & norm dx")
    close(dy, want["s"], "add & norm ds")
    _gradcheck(add_norm, {"x": x, "s": sub, "gamma": gamma, "beta": beta}, "add & norm")

    # the feed-forward network, every parameter an input (GELU: smooth, so gradcheck's
    # differences see no kink)
    def ffn(x, w1, b1, w2, b2):
        return F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)
    _gradcheck(ffn, {"x": randn(3, 5), "w1": randn(7, 5), "b1": randn(7), "w2": randn(5, 7),
                     "b2": randn(5)}, "feed-forward")
