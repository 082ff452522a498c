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
import copy

import torch
import torch.nn.functional as F

import ch01_attention
import ch02_multihead
import ch05_pretraining
import export_06
import ch07_backward
from ch07_backward import grads
from goldenlib import Case, Golden, emit, padding_mask, to_f64

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
ATTENTION_CASES = [  # name, (B, H, Tq, Tk, Dk, Dv), extras: fn(case) -> optional inputs
    ("attention_tiny", (1, 1, 2, 3, 4, 4), None),
    ("attention_odd", (2, 3, 7, 9, 5, 6), None),                   # Dk != Dv, cross
    ("attention_causal", (1, 2, 70, 70, 16, 16), lambda c: {"is_causal": True}),   # 3 blocks
    ("attention_padded", (3, 2, 6, 6, 8, 8),
     lambda c: {"key_padding_mask": padding_mask([0, 2, 3], 6)}),
    ("attention_float_mask", (2, 2, 5, 5, 8, 8), lambda c: {"attn_mask": c.randn(5, 5)}),
    ("attention_per_head_mask", (2, 3, 4, 6, 8, 8), lambda c: {"attn_mask": c.randn(2, 3, 4, 6)}),
    ("attention_blocks", (1, 2, 100, 140, 64, 64), None),          # past BQ = 32 and BK = 64
    ("attention_causal_padded", (2, 2, 40, 40, 8, 8),              # padding and the future
     lambda c: {"is_causal": True, "key_padding_mask": padding_mask([0, 5], 40)}),
    ("attention_scale", (1, 1, 6, 6, 8, 8), lambda c: {"scale": 0.5}),
    ("attention_fully_padded", (2, 1, 3, 4, 4, 4),                 # batch row 1: NaN, as PyTorch
     lambda c: {"key_padding_mask": padding_mask([0, 4], 4)}),
]
MHA_CASES = [  # name, (B, T, E, H), extras
    ("mha_small", (2, 5, 12, 3), None),
    ("mha_padded", (3, 6, 16, 4), lambda c: {"key_padding_mask": padding_mask([0, 2, 3], 6)}),
    ("mha_causal", (1, 40, 32, 2),
     lambda c: {"attn_mask": torch.ones(40, 40, dtype=torch.bool).triu(1)}),
    ("mha_float_mask", (2, 7, 8, 2), lambda c: {"attn_mask": c.randn(7, 7)}),
    ("mha_wide", (1, 80, 192, 3), None),    # past the attention blocks (BQ, BK) and GEMM's KC
]
MHA_CROSS_CASES = [  # name, (B, Tq, Tk, E, H), value: "key" (the same tensor) or "own", extras
    ("mha_cross_memory", (2, 5, 7, 12, 3), "key",          # a decoder's memory as key and value
     lambda c: {"key_padding_mask": padding_mask([0, 3], 7)}),
    ("mha_cross_kv", (2, 6, 4, 8, 2), "own", lambda c: {"attn_mask": c.randn(6, 4)}),
    ("mha_cross_wide", (1, 40, 90, 64, 2), "key", None),    # past the attention blocks
]
ENCODER_CASES = [  # name, (B, T, E, H, I), activation, norm_first, extras
    ("encoder_post_relu", (2, 5, 8, 2, 16), "relu", False, None),
    ("encoder_post_gelu", (2, 7, 12, 3, 20), "gelu", False,
     lambda c: {"src_key_padding_mask": padding_mask([0, 2], 7)}),
    ("encoder_pre_gelu", (2, 6, 8, 2, 24), "gelu", True,
     lambda c: {"src_mask": torch.ones(6, 6, dtype=torch.bool).triu(1)}),
    ("encoder_pre_relu", (1, 9, 16, 4, 32), "relu", True, lambda c: {"src_mask": c.randn(9, 9)}),
    ("encoder_wide", (2, 40, 96, 4, 384), "gelu", False, None),   # past the GEMM's blocks
]
FFN_CASES = [  # name, x's shape, I, activation, biases
    ("ffn_relu", (2, 5, 8), 16, "relu", True),
    ("ffn_gelu", (3, 7, 12), 40, "gelu", True),
    ("ffn_nobias", (9, 6), 10, "gelu", False),
    ("ffn_wide", (70, 96), 300, "gelu", True),   # past the GEMM's KC and MR, NR edges
]
ADD_NORM_CASES = [  # name, x's shape, gamma and beta, eps
    ("add_norm_small", (4, 6), True, 1e-5),
    ("add_norm_bert", (2, 9, 768), True, 1e-12),
    ("add_norm_noaffine", (5, 33), False, 1e-5),
]
BERT_CASES = [  # name, (L, E, H, I, V, P, G), (B, T), lengths (None: no attention_mask), pair,
    #              which output gradients are given
    ("bert_micro", (2, 16, 2, 32, 40, 12, 2), (2, 7), [7, 4], True, ("last", "pooled")),
    ("bert_no_mask", (1, 8, 2, 16, 20, 8, 2), (3, 5), None, False, ("last",)),
    ("bert_pooled_only", (2, 12, 3, 24, 30, 10, 2), (2, 6), [6, 0], False, ("pooled",)),
]
HEADS_CASES = [  # name, (B, T, E, V), MLM labels kept (every k-th token), NSP label ignored
    ("heads_small", (2, 5, 8, 13), 2, False),
    ("heads_none_labelled", (3, 4, 8, 11), 0, True),   # mlm_loss NaN: no gradient from it
    ("heads_wide", (2, 24, 64, 300), 3, False),
]
EMB_CASES = [  # name, (B, T, E, V, P, G), position_ids given, padding_idx
    ("emb_small", (2, 5, 8, 11, 7, 2), False, None),
    ("emb_padding", (3, 6, 16, 9, 8, 2), False, 0),   # BERT: pad_token_id 0, ids repeat
    ("emb_positions", (2, 7, 12, 10, 9, 0), True, None),   # no type table, repeated positions
    ("emb_wide", (4, 33, 200, 50, 40, 3), False, 1),   # past the 64-column thread blocks
]
CE_CASES = [  # name, input's shape, probabilities, weight, ignored elements, reduction, eps
    ("ce_mean", (8, 10), False, False, 0, "mean", 0.0),
    ("ce_weight_ignore", (12, 7), False, True, 3, "mean", 0.0),
    ("ce_smooth", (6, 9), False, True, 1, "sum", 0.1),
    ("ce_none", (5, 6), False, False, 1, "none", 0.0),
    ("ce_smooth_none", (5, 6), False, False, 2, "none", 0.25),
    ("ce_one_sample", (9,), False, False, 0, "mean", 0.0),
    ("ce_all_ignored", (4, 5), False, False, 4, "mean", 0.0),
    ("ce_inner", (3, 5, 4), False, True, 2, "mean", 0.1),
    ("ce_vocab", (16, 3001), False, False, 3, "mean", 0.0),   # past the lse's 256-wide blocks
    ("ce_probs", (7, 11), True, True, 0, "mean", 0.2),
    ("ce_probs_none", (4, 5), True, False, 0, "none", 0.0),
    ("ce_probs_inner", (4, 6, 2, 3), True, False, 0, "sum", 0.0),
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


def _mha_params(c, E):
    """nn.MultiheadAttention's parameters, drawn from the case's generator in this order."""
    return {"in_proj_weight": c.randn(3 * E, E) / E ** 0.5, "in_proj_bias": 0.1 * c.randn(3 * E),
            "out_proj_weight": c.randn(E, E) / E ** 0.5, "out_proj_bias": 0.1 * c.randn(E)}


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

    for name, (B, H, Tq, Tk, Dk, Dv), extras in ATTENTION_CASES:
        c = Case(seed, name)
        q, k, v = c.randn(B, H, Tq, Dk), c.randn(B, H, Tk, Dk), c.randn(B, H, Tk, Dv)
        kw = extras(c) if extras else {}
        g = c.randn(B, H, Tq, Dv)
        am, kpm = kw.get("attn_mask"), kw.get("key_padding_mask")
        causal, scale = kw.get("is_causal", False), kw.get("scale")

        def fwd(q, k, v, am=am):   # the mask a constant, in the inputs' precision
            m = am.to(q.dtype) if am is not None else None
            return ch01_attention.attention(q, k, v, m, kpm, causal, scale)[0]
        g32, g64 = _both(fwd, {"q": q, "k": k, "v": v}, g)
        emit(out, name, {"q": q, "k": k, "v": v, "attn_mask": am, "key_padding_mask": kpm,
                         "grad_out": g}, g32, g64, op="attention-backward",
             params={"is_causal": 1 if causal else None, "scale": scale})
    assert out["attention_fully_padded/grad_k_f64"][1].isnan().all()
    assert not out["attention_fully_padded/grad_k_f64"][0].isnan().any()

    for name, (B, T, E, H), extras in MHA_CASES:
        c = Case(seed, name)
        x, g = c.randn(B, T, E), c.randn(B, T, E)
        kw = extras(c) if extras else {}
        params = _mha_params(c, E)
        kpm, am = kw.get("key_padding_mask"), kw.get("attn_mask")

        def mha_grads(dtype):
            # nn.MultiheadAttention called as a whole, with these parameters, in this precision
            m = ch02_multihead.module(E, H, params, dtype)
            xx = x.to(dtype).requires_grad_(True)
            mask = am.to(dtype) if am is not None and am.is_floating_point() else am
            y = m(xx, xx, xx, key_padding_mask=kpm, attn_mask=mask, need_weights=False)[0]
            leaves = (xx, m.in_proj_weight, m.in_proj_bias, m.out_proj.weight, m.out_proj.bias)
            got = torch.autograd.grad(y, leaves, g.to(dtype))
            names = ("query", "in_proj_weight", "in_proj_bias", "out_proj_weight",
                     "out_proj_bias")
            return {f"grad_{k}": d for k, d in zip(names, got)}
        g32, g64 = mha_grads(torch.float32), mha_grads(torch.float64)
        emit(out, name, {"query": x, **params, "key_padding_mask": kpm, "attn_mask": am,
                         "grad_attn_output": g}, g32, g64, op="mha-backward",
             params={"num_heads": H})

    for name, (B, Tq, Tk, E, H), vmode, extras in MHA_CROSS_CASES:
        c = Case(seed, name)
        q, key, g = c.randn(B, Tq, E), c.randn(B, Tk, E), c.randn(B, Tq, E)
        value = c.randn(B, Tk, E) if vmode == "own" else None
        kw = extras(c) if extras else {}
        params = _mha_params(c, E)
        kpm, am = kw.get("key_padding_mask"), kw.get("attn_mask")

        def cross_grads(dtype):
            # nn.MultiheadAttention(query, key, value) as a whole; one tensor passed as key and
            # value gets the sum of both paths, as a decoder's memory does
            m = ch02_multihead.module(E, H, params, dtype)
            qq = q.to(dtype).requires_grad_(True)
            kk = key.to(dtype).requires_grad_(True)
            vv = value.to(dtype).requires_grad_(True) if value is not None else kk
            mask = am.to(dtype) if am is not None and am.is_floating_point() else am
            y = m(qq, kk, vv, key_padding_mask=kpm, attn_mask=mask, need_weights=False)[0]
            leaves = [qq, kk] + ([vv] if value is not None else []) + [
                m.in_proj_weight, m.in_proj_bias, m.out_proj.weight, m.out_proj.bias]
            names = ["query", "key"] + (["value"] if value is not None else []) + [
                "in_proj_weight", "in_proj_bias", "out_proj_weight", "out_proj_bias"]
            got = torch.autograd.grad(y, leaves, g.to(dtype))
            return {f"grad_{k}": d for k, d in zip(names, got)}
        g32, g64 = cross_grads(torch.float32), cross_grads(torch.float64)
        emit(out, name, {"query": q, "key": key, "value": value, **params,
                         "key_padding_mask": kpm, "attn_mask": am, "grad_attn_output": g},
             g32, g64, op="mha-backward", params={"num_heads": H})

    for name, (B, T, E, H, I), act, norm_first, extras in ENCODER_CASES:
        c = Case(seed, name)
        x, g = c.randn(B, T, E), c.randn(B, T, E)
        kw = extras(c) if extras else {}
        layer = torch.nn.TransformerEncoderLayer(E, H, I, dropout=0.0, activation=act,
                                                 batch_first=True, norm_first=norm_first)
        state = {k: (0.1 * c.randn(*v.shape) + (1.0 if k.startswith("norm") and
                                                   k.endswith("weight") else 0.0))
                 if v.dim() == 1 else c.randn(*v.shape) / v.shape[1] ** 0.5
                 for k, v in layer.state_dict().items()}
        kpm, am = kw.get("src_key_padding_mask"), kw.get("src_mask")

        def layer_grads(dtype):
            # nn.TransformerEncoderLayer called as a whole, these parameters, this precision
            m = torch.nn.TransformerEncoderLayer(E, H, I, dropout=0.0, activation=act,
                                                 batch_first=True, norm_first=norm_first)
            m = m.to(dtype).train()   # dropout 0: training computes eval's function
            m.load_state_dict({k: v.to(dtype) for k, v in state.items()})
            xx = x.to(dtype).requires_grad_(True)
            mask = am.to(dtype) if am is not None and am.is_floating_point() else am
            y = m(xx, src_mask=mask, src_key_padding_mask=kpm)
            names = ["src"] + list(state)
            leaves = [xx] + [dict(m.named_parameters())[k] for k in state]
            got = torch.autograd.grad(y, leaves, g.to(dtype))
            return {f"grad_{k}": d for k, d in zip(names, got)}
        g32, g64 = layer_grads(torch.float32), layer_grads(torch.float64)
        emit(out, name, {"src": x, "src_key_padding_mask": kpm, "src_mask": am, **state,
                         "grad_out": g}, g32, g64, op="encoder-layer-backward",
             params={"nhead": H, "activation": act if act != "relu" else None,
                     "norm_first": 1 if norm_first else None})

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

    for name, sx, I, act, bias in FFN_CASES:
        c = Case(seed, name)
        E = sx[-1]
        x, g = c.randn(*sx), c.randn(*sx)
        state = {"linear1.weight": c.randn(I, E) / E ** 0.5,
                 "linear1.bias": 0.1 * c.randn(I) if bias else None,
                 "linear2.weight": c.randn(E, I) / I ** 0.5,
                 "linear2.bias": 0.1 * c.randn(E) if bias else None}

        def ffn_grads(dtype):
            # nn.Sequential(Linear, ReLU | GELU, Linear) called as a whole: the layer's half
            seq = torch.nn.Sequential(torch.nn.Linear(E, I, bias=bias),
                                      torch.nn.ReLU() if act == "relu" else torch.nn.GELU(),
                                      torch.nn.Linear(I, E, bias=bias)).to(dtype)
            keys = {"linear1.weight": "0.weight", "linear1.bias": "0.bias",
                    "linear2.weight": "2.weight", "linear2.bias": "2.bias"}
            seq.load_state_dict({keys[k]: v.to(dtype) for k, v in state.items()
                                 if v is not None}, strict=True)
            xx = x.to(dtype).requires_grad_(True)
            named = dict(seq.named_parameters())
            names = ["x"] + [k for k, v in state.items() if v is not None]
            leaves = [xx] + [named[keys[k]] for k in names[1:]]
            got = torch.autograd.grad(seq(xx), leaves, g.to(dtype))
            return {f"grad_{k}": d for k, d in zip(names, got)}
        emit(out, name, {"x": x, **state, "grad_out": g}, ffn_grads(torch.float32),
             ffn_grads(torch.float64), op="feedforward-backward",
             params={"activation": act if act != "relu" else None})

    for name, sx, affine, eps in ADD_NORM_CASES:
        c = Case(seed, name)
        x, sub = c.randn(*sx), c.randn(*sx)
        E = sx[-1]
        gamma = 1.0 + 0.1 * c.randn(E) if affine else None
        beta = 0.1 * c.randn(E) if affine else None
        g = c.randn(*sx)
        g32, g64 = _both(lambda x, s, gamma=None, beta=None:
                         F.layer_norm(x + s, (E,), gamma, beta, eps),
                         {"x": x, "s": sub, "gamma": gamma, "beta": beta}, g)
        emit(out, name, {"x": x, "s": sub, "gamma": gamma, "beta": beta, "grad_out": g}, g32,
             g64, op="add-norm-backward", params={"eps": eps if eps != 1e-5 else None})

    for name, spec, (B, T), lengths, pair, given in BERT_CASES:
        c = Case(seed, name)
        cfg, w, m32 = export_06._bert_model(c, spec)
        ids, mask, tt = export_06._bert_inputs(c, cfg, B, T, lengths, pair)
        E, L = cfg["hidden_size"], cfg["num_hidden_layers"]
        gl = c.randn(B, T, E) if "last" in given else None
        gp = c.randn(B, E) if "pooled" in given else None

        def bert_grads(dtype):
            # Hugging Face's BertModel (ref/ch06's), eval mode (no dropout), called as a whole
            m = copy.deepcopy(m32).to(dtype).eval()
            o = m(ids, attention_mask=mask, token_type_ids=tt)
            outs, ups = [], []
            for key, up in (("last_hidden_state", gl), ("pooler_output", gp)):
                if up is not None:
                    outs.append(o[key])
                    ups.append(up.to(dtype))
            named = dict(m.named_parameters())
            keys = list(w)
            # the pooler is unused when only last_hidden_state's gradient is given: zero
            got = torch.autograd.grad(outs, [named[k] for k in keys], ups, allow_unused=True)
            got = {k: torch.zeros_like(named[k]) if d is None else d for k, d in zip(keys, got)}
            res = {}
            for k in keys:
                short = k[len("bert."):]
                if short.startswith("encoder.layer."):
                    rest = short.split(".", 3)[3]   # encoder.layer.<l>.<rest>
                    if short.startswith("encoder.layer.0."):
                        res["grad_encoder.layer." + rest] = torch.stack(
                            [got[f"bert.encoder.layer.{l}.{rest}"] for l in range(L)])
                else:
                    res["grad_" + short] = got[k]
            return res
        emit(out, name, {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt, **w,
                         "grad_last_hidden_state": gl, "grad_pooler_output": gp},
             bert_grads(torch.float32), bert_grads(torch.float64), op="bert-backward")
        export_06._bert_config_meta(out, name, m32, w)

    for name, (B, T, E, V), every, nsp_ignored in HEADS_CASES:
        c = Case(seed, name)
        h = c.randn(B, T, E)
        ids = torch.randint(0, V, (B, T), generator=c.gen)
        keep = torch.zeros(B * T, dtype=torch.bool)
        if every:
            keep[::every] = True
        labels = torch.where(keep.view(B, T), ids, torch.full_like(ids, -100))
        nsp = torch.randint(0, 2, (B,), generator=c.gen)
        if nsp_ignored:
            nsp[0] = -100
        shapes = {k: v.shape for k, v in
                  ch05_pretraining.BertPretrainingHeadsRef(V, E).named_parameters()}
        state = {k: (1.0 if k.endswith("LayerNorm.weight") else 0.0) + 0.1 * c.randn(*shp)
                 if len(shp) == 1 else c.randn(*shp) / shp[1] ** 0.5
                 for k, shp in sorted(shapes.items())}
        gl = c.randn(1).reshape(())

        def heads_grads(dtype):
            # transformers' BertPreTrainingHeads (ref/ch05), called as a whole
            m = ch05_pretraining.BertPretrainingHeadsRef(V, E).to(dtype)
            named = dict(m.named_parameters())
            with torch.no_grad():
                for k, v in state.items():
                    named[k].copy_(v.to(dtype))
            hh = h.to(dtype).requires_grad_(True)
            loss = m(hh, labels, nsp)["loss"]
            names = ["sequence_output"] + list(state)
            got = torch.autograd.grad(loss, [hh] + [named[k] for k in state], gl.to(dtype))
            return {f"grad_{k}": d for k, d in zip(names, got)}
        emit(out, name, {"sequence_output": h, "labels": labels, "next_sentence_label": nsp,
                         **state, "grad_loss": gl}, heads_grads(torch.float32),
             heads_grads(torch.float64), op="pretraining-heads-backward")

    for name, (B, T, E, V, P, G), with_pos, pad in EMB_CASES:
        c = Case(seed, name)
        ids = torch.randint(0, V, (B, T), generator=c.gen)
        if pad is not None:
            ids[:, -2:] = pad                           # the sequences' padding
        word, pos = c.randn(V, E), c.randn(P, E)
        typ = c.randn(G, E) if G else None
        tt = torch.randint(0, G, (B, T), generator=c.gen) if G else None
        pids = torch.randint(0, P, (B, T), generator=c.gen) if with_pos else None
        g = c.randn(B, T, E)

        def emb(word_emb, pos_emb, type_emb=None):
            # BertEmbeddings' sum, nn.Embedding's lookups (padding_idx on the word table)
            p = pids if pids is not None else torch.arange(T).expand(B, T)
            x = F.embedding(ids, word_emb, padding_idx=pad)
            if type_emb is not None:
                x = x + F.embedding(tt, type_emb)
            return x + F.embedding(p, pos_emb)
        g32, g64 = _both(emb, {"word_emb": word, "pos_emb": pos, "type_emb": typ}, g)
        emit(out, name, {"input_ids": ids, "word_emb": word, "pos_emb": pos, "type_emb": typ,
                         "position_ids": pids, "token_type_ids": tt, "grad_out": g}, g32, g64,
             op="embeddings-backward", params={"padding_idx": pad})

    for name, shape, probs, weighted, ignored, reduction, eps in CE_CASES:
        c = Case(seed, name)
        C = shape[0] if len(shape) == 1 else shape[1]
        x = 2.0 * c.randn(*shape)
        eshape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
        if probs:
            target = torch.softmax(c.randn(*shape), dim=0 if len(shape) == 1 else 1)
        else:
            target = torch.randint(0, C, eshape, generator=c.gen)
            flat = target.view(-1)
            flat[:ignored] = -100      # the first elements ignored
        weight = (0.5 + c.rand(C)).to(torch.float32) if weighted else None
        g = c.randn(*eshape) if reduction == "none" else c.randn(1).reshape(())

        def ce(input, target, weight=weight, reduction=reduction, eps=eps):
            # weight is a constant: PyTorch implements no derivative for it
            w = None if weight is None else weight.to(input.dtype)
            return F.cross_entropy(input, target, w, reduction=reduction, label_smoothing=eps)
        g32, g64 = _both(ce, {"input": x, "target": target}, g)
        emit(out, name, {"input": x, "target": target, "weight": weight, "grad_out": g}, g32,
             g64, op="cross-entropy-backward",
             params={"reduction": reduction if reduction != "mean" else None,
                     "label_smoothing": eps or None})

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
