"""Chapter 02 in PyTorch: multi-head attention as chapters/02-multihead/multihead.h states it,
one line per step, on top of chapter 01's attention():

    Q, K, V = query W_q^T + b_q, key W_k^T + b_k, value W_v^T + b_v      [B, T, E]
    head_h  = softmax(Q_h K_h^T / sqrt(D) + M) V_h                        D = E / H
    out     = concat(head_0 .. head_{H-1}) W_o^T + b_o

crosscheck() ties it to torch.nn.MultiheadAttention (batch_first=True, eval mode) itself, on
both of the module's code paths in torch 1.13:

  * the "fast path", torch._native_multi_head_attention: taken in eval mode without autograd
    when query IS key IS value (the same tensor object), num_heads is even, attn_mask is None,
    batch_first=True, dropout 0, no bias_k/bias_v/add_zero_attn;
  * otherwise F.multi_head_attention_forward, the Python code of the formula. It scales q by
    1/sqrt(D) BEFORE the dot product (q / sqrt(D) @ k^T), merges key_padding_mask into attn_mask
    (logical_or for a boolean attn_mask, masked_fill(-inf) for a float one), turns a boolean mask
    into 0 / -inf, and averages weights as sum over heads / num_heads.

Both return NaN for a query row whose keys are all masked (softmax over all -inf), in the output
and in the weights, as chapter 01 does.
"""

import math

import torch

import ch01_attention


def additive_mask(attn_mask, B, H, Tq, Tk, dtype):
    """nn.MultiheadAttention's attn_mask [Tq, Tk] or [B*H, Tq, Tk] as an additive mask that
    broadcasts against [B, H, Tq, Tk]. BOOL: True means "may NOT attend" (the module's
    convention, the opposite of scaled_dot_product_attention's) and becomes -inf."""
    if attn_mask is None:
        return None
    if attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=dtype).masked_fill(attn_mask, -math.inf)
    attn_mask = attn_mask.to(dtype)
    return attn_mask if attn_mask.dim() == 2 else attn_mask.view(B, H, Tq, Tk)


def multihead(query, key, value, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias,
              num_heads, key_padding_mask=None, attn_mask=None, need_weights=True,
              average_attn_weights=True):
    """query [B,Tq,E], key/value [B,Tk,E] -> (attn_output [B,Tq,E], attn_weights or None).

    attn_weights: [B,Tq,Tk] averaged over heads, or [B,H,Tq,Tk] when average_attn_weights is
    False; None when need_weights is False (the module's return values)."""
    B, Tq, E = query.shape
    Tk, H = key.shape[1], num_heads
    D = E // H
    w_q, w_k, w_v = in_proj_weight.chunk(3)  # rows 0..E-1, E..2E-1, 2E..3E-1
    b_q, b_k, b_v = in_proj_bias.chunk(3)

    q = query @ w_q.T + b_q  # [B, Tq, E]
    k = key @ w_k.T + b_k  # [B, Tk, E]
    v = value @ w_v.T + b_v

    def split(x, T):  # [B, T, E] -> [B, H, T, D]: head h owns columns h*D .. h*D+D-1
        return x.view(B, T, H, D).transpose(1, 2)

    M = additive_mask(attn_mask, B, H, Tq, Tk, query.dtype)
    heads, probs = ch01_attention.attention(split(q, Tq), split(k, Tk), split(v, Tk),
                                            attn_mask=M, key_padding_mask=key_padding_mask)
    ctx = heads.transpose(1, 2).reshape(B, Tq, E)  # concat(head_0, ..., head_{H-1})
    out = ctx @ out_proj_weight.T + out_proj_bias

    if not need_weights:
        return out, None
    return out, (probs.sum(dim=1) / H if average_attn_weights else probs)


def module(E, H, params, dtype=torch.float32):
    """A real nn.MultiheadAttention(E, H, batch_first=True) in eval mode holding `params`
    (in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias)."""
    m = torch.nn.MultiheadAttention(E, H, batch_first=True).eval().to(dtype)
    with torch.no_grad():
        m.in_proj_weight.copy_(params["in_proj_weight"])
        m.in_proj_bias.copy_(params["in_proj_bias"])
        m.out_proj.weight.copy_(params["out_proj_weight"])
        m.out_proj.bias.copy_(params["out_proj_bias"])
    return m


def run_module(m, query, key=None, value=None, **kw):
    """m(query, key, value, ...) without autograd. key None means key = query, value None means
    value = key: the SAME tensor object, so self-attention can take the module's fast path."""
    key = query if key is None else key
    value = key if value is None else value
    with torch.no_grad():
        return m(query, key, value, **kw)


class FastPathCounter:
    """Counts calls of torch._native_multi_head_attention (the module's fast path)."""

    def __enter__(self):
        self.calls, self._orig = 0, torch._native_multi_head_attention

        def counted(*a, **kw):
            self.calls += 1
            return self._orig(*a, **kw)

        torch._native_multi_head_attention = counted
        return self

    def __exit__(self, *exc):
        torch._native_multi_head_attention = self._orig


def crosscheck():
    """Raises AssertionError if multihead() disagrees with nn.MultiheadAttention (float64)."""
    g = torch.Generator().manual_seed(2024)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def check(label, B, Tq, Tk, E, H, self_attn=True, fast_path=False, **kw):
        params = {"in_proj_weight": randn(3 * E, E) / math.sqrt(E), "in_proj_bias": randn(3 * E),
                  "out_proj_weight": randn(E, E) / math.sqrt(E), "out_proj_bias": randn(E)}
        m = module(E, H, params, torch.float64)
        query = randn(B, Tq, E)
        key = None if self_attn else randn(B, Tk, E)
        value = None if self_attn else randn(B, Tk, E)
        with FastPathCounter() as fp:
            t_out, t_w = run_module(m, query, key, value, **kw)
        assert (fp.calls == 1) == fast_path, f"mha crosscheck '{label}': fast path calls {fp.calls}"
        k = query if key is None else key
        out, w = multihead(query, k, k if value is None else value, num_heads=H, **params, **kw)
        torch.testing.assert_close(out, t_out, rtol=1e-12, atol=1e-12, equal_nan=True,
                                   msg=lambda s: f"mha crosscheck '{label}' attn_output: {s}")
        if t_w is None or w is None:
            assert t_w is None and w is None, f"mha crosscheck '{label}': weights present differ"
        else:
            torch.testing.assert_close(w, t_w, rtol=1e-12, atol=1e-12, equal_nan=True,
                                       msg=lambda s: f"mha crosscheck '{label}' weights: {s}")

    def pad(lengths, Tk):  # True for the last n keys of each batch row
        kpm = torch.zeros(len(lengths), Tk, dtype=torch.bool)
        for b, n in enumerate(lengths):
            kpm[b, Tk - n:] = n > 0
        return kpm

    check("self, fast path", 2, 5, 5, 8, 2, fast_path=True)
    check("self, fast path, per-head weights", 2, 5, 5, 8, 4, fast_path=True,
          average_attn_weights=False)
    check("self, fast path, padding", 3, 6, 6, 8, 2, fast_path=True,
          key_padding_mask=pad([0, 2, 5], 6))
    check("self, odd heads (slow path)", 2, 5, 5, 15, 5)
    check("self, need_weights=False", 1, 4, 4, 8, 2, fast_path=True, need_weights=False)
    check("cross", 2, 4, 7, 12, 4, self_attn=False)
    check("cross, per-head weights", 2, 4, 7, 12, 4, self_attn=False, average_attn_weights=False)
    causal = torch.ones(6, 6, dtype=torch.bool).triu(1)
    check("bool causal mask", 2, 6, 6, 8, 2, attn_mask=causal)
    check("float mask 2-D", 2, 5, 5, 8, 2, attn_mask=randn(5, 5))
    blocked = torch.rand(2 * 4, 5, 7, generator=g) < 0.3
    blocked[..., 0] = False  # every row keeps key 0
    check("bool mask 3-D", 2, 5, 7, 8, 4, self_attn=False, attn_mask=blocked,
          average_attn_weights=False)
    check("float mask 3-D + padding", 2, 5, 5, 8, 4, attn_mask=randn(8, 5, 5),
          key_padding_mask=pad([1, 0], 5))
    check("bool mask + padding", 2, 5, 5, 8, 2, attn_mask=causal[:5, :5],
          key_padding_mask=pad([0, 2], 5))
    # NaN where PyTorch gives NaN: a fully padded batch element, on both paths.
    check("fully padded element (fast path)", 2, 4, 4, 8, 2, fast_path=True,
          key_padding_mask=pad([0, 4], 4))
    check("fully masked row (slow path)", 1, 4, 4, 8, 2,
          attn_mask=torch.zeros(4, 4, dtype=torch.bool).index_fill(0, torch.tensor([2]), True))


if __name__ == "__main__":
    crosscheck()
    print("ch02_multihead: crosscheck OK")
