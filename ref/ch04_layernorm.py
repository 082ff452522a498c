"""Chapter 04 in PyTorch: LayerNorm as chapters/04-layernorm/layernorm.h states it, one line per
term of the formula

    mu = mean_e x,  var = mean_e (x - mu)^2,  rstd = 1 / sqrt(var + eps),
    out = (x - mu) * rstd * gamma + beta

plus the two Add & Norm arrangements and the formula article 000 §3.4 writes instead.
crosscheck() ties layernorm() to torch.nn.LayerNorm and torch.native_layer_norm (which also
returns mean and rstd, what a backward pass needs), and the arrangements to
nn.TransformerEncoderLayer's own norm_first=False / True.
"""

import torch
import torch.nn.functional as F


def layernorm(x, gamma=None, beta=None, eps=1e-5):
    """x [..., E] -> (out [..., E], mean [...], rstd [...]), the formula written out."""
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)  # biased: divides by E
    rstd = 1.0 / torch.sqrt(var + eps)                 # eps inside the root
    out = (x - mu) * rstd
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    return out, mu.squeeze(-1), rstd.squeeze(-1)


def torch_layernorm(x, gamma=None, beta=None, eps=1e-5, normalized_shape=None):
    """PyTorch's own: out from an nn.LayerNorm(S) module, mean and rstd from native_layer_norm
    (the op the module calls), checked to agree bit for bit on out. S = normalized_shape, x's
    trailing dimensions (default: the last one). Same returns as layernorm(), mean and rstd
    with x's leading dimensions: native_layer_norm keeps S as 1s ([2, 3, 1, 1] for x
    [2, 3, 4, 5], S = (4, 5)), which are squeezed ([2, 3]; [] when S is all of x)."""
    S = tuple(normalized_shape) if normalized_shape is not None else (x.shape[-1],)
    affine = gamma is not None
    assert (beta is not None) == affine, "nn.LayerNorm has both gamma and beta or neither"
    assert tuple(x.shape[x.dim() - len(S):]) == S
    mod = torch.nn.LayerNorm(S, eps=eps, elementwise_affine=affine, dtype=x.dtype)
    if affine:
        with torch.no_grad():
            mod.weight.copy_(gamma)
            mod.bias.copy_(beta)
    with torch.no_grad():
        out = mod(x)
        out2, mean, rstd = torch.native_layer_norm(x, list(S), gamma, beta, eps)
    assert torch.equal(out, out2) or (out.isnan() == out2.isnan()).all()
    lead = tuple(x.shape[:x.dim() - len(S)])
    assert tuple(mean.shape) == tuple(rstd.shape) == lead + (1,) * len(S), (mean.shape, lead, S)
    return out, mean.reshape(lead), rstd.reshape(lead)


def add_norm_post(x, s, gamma=None, beta=None, eps=1e-5):
    """Post-LN Add & Norm (original Transformer, BERT): LN(x + s), s = sublayer(x) given."""
    return torch_layernorm(x + s, gamma, beta, eps)


def pre_norm_linear(x, w, bias, gamma=None, beta=None, eps=1e-5):
    """Pre-LN block (GPT-2) with a Linear sublayer: (x + Linear(LN(x)), LN(x), mean, rstd)."""
    norm, mean, rstd = torch_layernorm(x, gamma, beta, eps)
    return x + F.linear(norm, w, bias), norm, mean, rstd


def article_000_3_4(x, gamma, beta, mu):
    """Erratum 000 §3.4, read literally: gamma * sigma(x + beta) + mu, sigma = ReLU (the
    article's example activation), mu a fixed vector (its 'moving average'). No statistic of
    the row appears in it, so nothing normalizes the row."""
    return gamma * torch.relu(x + beta) + mu


def crosscheck():
    """Raises AssertionError if layernorm() disagrees with PyTorch's LayerNorm (float64), or the
    two Add & Norm arrangements disagree with nn.TransformerEncoderLayer's, or layernorm() on
    rows flattened over several trailing dimensions S disagrees with nn.LayerNorm(S) (and
    native_layer_norm's mean and rstd, S squeezed)."""
    g = torch.Generator().manual_seed(4004)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def close(a, b, label, tol=1e-12):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol,
                                   msg=lambda m: f"layernorm crosscheck '{label}': {m}")

    for label, shape, affine, eps in [("2-D affine", (5, 16), True, 1e-5),
                                      ("3-D plain", (2, 3, 7), False, 1e-5),
                                      ("BERT eps", (4, 768), True, 1e-12),
                                      ("width 1", (3, 1), True, 1e-5),
                                      ("offset rows", (3, 64), False, 1e-5)]:
        x = randn(*shape)
        if label == "offset rows":
            x = x + 1e4
        gamma, beta = (randn(shape[-1]), randn(shape[-1])) if affine else (None, None)
        ours = layernorm(x, gamma, beta, eps)
        theirs = torch_layernorm(x, gamma, beta, eps)
        # On rows with |mean| / std = 1e4 even float64 keeps only 1e4 * 1.1e-16 of absolute
        # accuracy in PyTorch's fused x * rstd - mean * rstd (book.md, chapter 04): 1e-10 there.
        tol = 1e-10 if label == "offset rows" else 1e-12
        for a, b, what in zip(ours, theirs, ("out", "mean", "rstd")):
            close(a, b, f"{label} {what}", tol)
        close(ours[0], F.layer_norm(x, shape[-1:], gamma, beta, eps), f"{label} F.layer_norm",
              tol)

    # The arrangements, against PyTorch's encoder layer with dropout 0: its self-attention block
    # is the sublayer. Post-LN: norm1(x + sa(x)); pre-LN: x + sa(norm1(x)).
    E = 16
    x = randn(2, 5, E)
    for norm_first in (False, True):
        layer = torch.nn.TransformerEncoderLayer(E, 2, dim_feedforward=32, dropout=0.0,
                                                 batch_first=True, norm_first=norm_first,
                                                 dtype=torch.float64).eval()
        with torch.no_grad():
            ln = layer.norm1
            sa = lambda t: layer.self_attn(t, t, t, need_weights=False)[0]  # noqa: E731
            if norm_first:
                normed = torch_layernorm(x, ln.weight, ln.bias, ln.eps)[0]
                ours = x + sa(normed)
                theirs = x + layer._sa_block(layer.norm1(x), None, None)
            else:
                ours = add_norm_post(x, sa(x), ln.weight, ln.bias, ln.eps)[0]
                theirs = layer.norm1(x + layer._sa_block(x, None, None))
        close(ours, theirs, f"norm_first={norm_first}")

    w, b = randn(E, E), randn(E)
    out, norm, _, _ = pre_norm_linear(x, w, b)
    close(out, x + layernorm(x)[0] @ w.T + b, "pre-norm linear")

    # Over several trailing dimensions S (nn.LayerNorm(normalized_shape)): the formula on rows
    # of prod(S) values, x flattened to [..., prod(S)], gamma and beta applied elementwise over
    # S. native_layer_norm keeps S as 1s in mean and rstd ([2, 3, 1, 1] for x [2, 3, 4, 5],
    # S = [4, 5]); the goldens squeeze them to x's leading dimensions ([2, 3]; [] when S is x's
    # whole shape), which is what layernorm() on the flattened rows returns.
    for shape, k, affine, eps in [((2, 3, 4, 5), 2, True, 1e-5), ((3, 4, 6), 2, False, 1e-5),
                                  ((2, 3, 4, 5), 3, False, 1e-5), ((3, 5, 7, 11), 3, True, 1e-6),
                                  ((3, 4), 2, True, 1e-5), ((7,), 1, True, 1e-5),
                                  ((2, 8, 12, 64), 2, True, 1e-12)]:
        S, lead = shape[len(shape) - k:], shape[:len(shape) - k]
        label = f"x {list(shape)} over {list(S)}"
        # a per-(row, first dimension of S) offset: the last dimension alone would normalize
        # differently
        x = randn(*shape) + 3.0 * randn(*lead, S[0], *([1] * (k - 1)))
        gamma, beta = (randn(*S), randn(*S)) if affine else (None, None)
        flat = layernorm(x.reshape(*lead, -1), None if gamma is None else gamma.reshape(-1),
                         None if beta is None else beta.reshape(-1), eps)
        want, mean, rstd = torch_layernorm(x, gamma, beta, eps, S)
        close(flat[0].reshape(shape), want, f"{label} out")
        close(F.layer_norm(x, S, gamma, beta, eps), want, f"{label} F.layer_norm")
        close(flat[1], mean, f"{label} mean")
        close(flat[2], rstd, f"{label} rstd")
        if k >= 2:   # and it is not the last dimension's LayerNorm
            last = layernorm(x, None, None, eps)[0]
            assert (last - (want if not affine else (want - beta) / gamma)).abs().max() > 1e-3, \
                label


if __name__ == "__main__":
    crosscheck()
    print("ch04_layernorm: crosscheck OK")
