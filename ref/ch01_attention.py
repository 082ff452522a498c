"""Chapter 01 in PyTorch: scaled dot-product attention as chapters/01-attention/attention.h
states it, one line per term of the formula

    out = softmax(Q K^T * scale + M) V

crosscheck() ties it to PyTorch's own scaled_dot_product_attention. That function is public
(F.scaled_dot_product_attention) from torch 2.0; Debian bookworm ships 1.13, where the same op is
the private F._scaled_dot_product_attention and also returns the weights. _torch_sdpa() takes
whichever exists.
"""

import math

import torch
import torch.nn.functional as F


def attention_mask(B, H, Tq, Tk, attn_mask=None, key_padding_mask=None, is_causal=False,
                   dtype=torch.float32):
    """The additive mask M [B, H, Tq, Tk]: the sum of the three parts attention.h lists."""
    M = torch.zeros(B, H, Tq, Tk, dtype=dtype)
    if attn_mask is not None:
        M = M + attn_mask.to(dtype)  # [Tq, Tk] broadcasts over B and H; [B, H, Tq, Tk] does not
    if key_padding_mask is not None:
        # [B, Tk], True = padding: -inf over every head and query of that batch row.
        pad = torch.zeros(B, 1, 1, Tk, dtype=dtype)
        M = M + pad.masked_fill(key_padding_mask.bool()[:, None, None, :], -math.inf)
    if is_causal:
        # Top-left aligned, as PyTorch builds it: query i sees keys 0..i, whatever Tk is.
        keep = torch.ones(Tq, Tk, dtype=torch.bool).tril()
        M = M + torch.zeros(Tq, Tk, dtype=dtype).masked_fill(~keep, -math.inf)
    return M


def attention(q, k, v, attn_mask=None, key_padding_mask=None, is_causal=False, scale=None):
    """q [B,H,Tq,Dk], k [B,H,Tk,Dk], v [B,H,Tk,Dv] -> (out [B,H,Tq,Dv], probs [B,H,Tq,Tk]).

    A row whose keys are all masked is softmax over all -inf: 0/0, NaN in probs and out, as
    plain torch.softmax gives it. Nothing here hides that."""
    B, H, Tq, Dk = q.shape
    Tk = k.shape[2]
    if scale is None:
        scale = 1.0 / math.sqrt(Dk)
    M = attention_mask(B, H, Tq, Tk, attn_mask, key_padding_mask, is_causal, dtype=q.dtype)
    scores = q @ k.transpose(-2, -1) * scale + M
    probs = torch.softmax(scores, dim=-1)
    return probs @ v, probs


def article_000_3_1(x, w_q, w_k, w_v, w_o):
    """Erratum 000 §3.1. The article writes the attention output as A X W_o; it is A V W_o.

    x [n, d], weights [d, d] right-multiplied as the article writes them (Q = X W_q, ...).
    Returns (correct, article), both [n, d]. (A V) W_o is grouped as attention's output times
    W_o, the order a multi-head layer computes it in."""
    d = x.shape[-1]
    Q, K, V = x @ w_q, x @ w_k, x @ w_v
    AV, A = attention(Q[None, None], K[None, None], V[None, None], scale=1.0 / math.sqrt(d))
    correct = AV[0, 0] @ w_o
    article = (A[0, 0] @ x) @ w_o
    return correct, article


def _torch_sdpa(q, k, v, attn_mask=None, is_causal=False):
    """PyTorch's SDPA (math backend on CPU). Returns (out, probs); probs is None when this
    torch's SDPA does not hand them out (the public 2.x function)."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=0.0,
                                              is_causal=is_causal), None
    return F._scaled_dot_product_attention(q, k, v, attn_mask, 0.0, True, is_causal)


def crosscheck():
    """Raises AssertionError if attention() disagrees with PyTorch's SDPA (float64) on cases
    without a fully masked row (where the two may legitimately differ between torch versions)."""
    g = torch.Generator().manual_seed(4321)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def check(label, B, H, Tq, Tk, Dk, Dv, ours_kw, torch_kw):
        q, k, v = randn(B, H, Tq, Dk), randn(B, H, Tk, Dk), randn(B, H, Tk, Dv)
        out, probs = attention(q, k, v, **ours_kw)
        t_out, t_probs = _torch_sdpa(q, k, v, **torch_kw)
        assert not out.isnan().any(), f"{label}: NaN in our output"
        torch.testing.assert_close(out, t_out, rtol=1e-12, atol=1e-12,
                                   msg=lambda s: f"attention crosscheck '{label}' out: {s}")
        if t_probs is not None:
            torch.testing.assert_close(probs, t_probs, rtol=1e-12, atol=1e-12,
                                       msg=lambda s: f"attention crosscheck '{label}' probs: {s}")

    check("plain", 2, 3, 5, 5, 8, 8, {}, {})
    check("causal Tq==Tk", 1, 2, 7, 7, 4, 4, {"is_causal": True}, {"is_causal": True})
    check("causal Tq<Tk", 1, 2, 4, 9, 4, 4, {"is_causal": True}, {"is_causal": True})
    check("Dk != Dv", 1, 2, 6, 6, 16, 3, {}, {})
    check("cross Tq != Tk", 2, 1, 3, 8, 4, 4, {}, {})

    # Bool mask: SDPA's True means "attend"; ours takes it as 0 / -inf. Column 0 is always
    # kept so no row is fully masked.
    keep = torch.rand(5, 7, generator=g) < 0.5
    keep[:, 0] = True
    additive = torch.zeros(5, 7, dtype=torch.float64).masked_fill(~keep, -math.inf)
    check("bool mask", 2, 2, 5, 7, 4, 4, {"attn_mask": additive}, {"attn_mask": keep})

    bias = randn(5, 5)
    check("float mask [Tq,Tk]", 2, 2, 5, 5, 8, 8, {"attn_mask": bias}, {"attn_mask": bias})
    bias4 = randn(2, 3, 4, 6)
    check("float mask [B,H,Tq,Tk]", 2, 3, 4, 6, 8, 8, {"attn_mask": bias4},
          {"attn_mask": bias4})

    # key_padding_mask has no SDPA argument: it is a bool "attend" mask over keys, per batch.
    kpm = torch.tensor([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    check("key_padding_mask", 2, 2, 6, 6, 8, 8, {"key_padding_mask": kpm},
          {"attn_mask": ~kpm[:, None, None, :]})


if __name__ == "__main__":
    crosscheck()
    print("ch01_attention: crosscheck OK")
