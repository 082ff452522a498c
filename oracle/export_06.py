"""Chapter 06 goldens: the position-wise feed-forward network (nn.Linear -> nn.ReLU | nn.GELU ->
nn.Linear, op "feedforward") and torch.nn.TransformerEncoderLayer(batch_first=True, dropout=0)
in eval mode (op "encoder-layer"), every encoder-layer output computed by the real module called
as a whole, its parameters saved beside the inputs under the module's state_dict names; plus the
erratum case for article 003 §4.2.

Imported by oracle/export.py, which finds every oracle/export_NN.py: NAME is the golden file's
stem, SEED the chapter seed, REF the ref/ module whose crosscheck() must pass first, and
build(seed) returns a goldenlib.Golden (tensors, case names, case metadata).

Tensors. feedforward reads x [..., E], linear1.weight [I, E], linear1.bias [I] (optional),
linear2.weight [E, I], linear2.bias [E] (optional) and writes out [..., E]; its parameter is
activation (relu | gelu, recorded in every case). encoder-layer reads src [B, T, E],
src_key_padding_mask [B, T] (BOOL, 1 = padding; optional), src_mask [T, T] (BOOL 1 = blocked, or
F32 added; optional) and the module's twelve parameters (self_attn.in_proj_weight ...
norm2.bias) and writes out [B, T, E]; its parameters are nhead, and where a case differs from the
module's defaults activation=gelu, norm_first=1, layer_norm_eps.

Path. Every encoder-layer golden is m(src, src_mask=..., src_key_padding_mask=...) under
torch.no_grad(), in float32 and for the truth in copy.deepcopy(m).double(): the fused fast path
(torch._transformer_encoder_layer_fwd) where torch takes it (even nhead, no src_mask), the Python
composition otherwise; build() asserts which each case took, and that the grad-enabled call
(always the composition) gives the same float64 result (1e-12) and the same NaN. Why no_grad:
see ref/ch06_encoder.py (it is the call inference code makes, chapter 02's convention, and the
float64 truth is the same on both paths).

Parameters. The module's own init leaves biases at zero and the norms at (1, 0), which would
leave them untested, so every parameter is drawn (ch06_encoder.random_layer_params: weights
N(0, 1/fan_in), biases N(0, 1/4), norms near (1, 0)), in float64 and rounded to float32 once.

The BERT-base case (E = 768, 12 heads, I = 3072) has 7.1M weights: 28 MB of random float32.
As in chapter 02 its weight matrices are rounded to a grid, here multiples of 2^-8 drawn with
BERT's initializer_range (N(0, 0.02^2), |w| < 0.12: at most 5 significant bits), still float32
tensors fed to PyTorch and to tfm as they are; gzip stores them in about 0.75 byte each. Biases,
norms and src stay full float32, so every product and sum is still rounded as in any float32
model; only the weights' entropy is lower. The feed-forward case "ff_wide" does the same at
E = 256, I = 1024 with N(0, 1/fan_in) weights on the grid.

BERT (op "bert"): Hugging Face's BertModel forward, as ref/ch06_encoder.BertModelRef computes it
in eval mode, called as a whole (float32, and copy.deepcopy(m).double() for the truth). A case
reads input_ids [B, T] (I64), attention_mask [B, T] (I64, 1 = attend; optional, absent: all 1),
token_type_ids [B, T] (I64; optional, absent: all 0) and the model's weights under BertModel's
state_dict keys with the "bert." prefix (ch06_encoder.bert_keys), and writes last_hidden_state
[B, T, E], pooler_output [B, E] and, where params say output_attentions=1 /
output_hidden_states=1, attentions [L, B, H, T, T] and hidden_states [L + 1, B, T, E]
(ch06_encoder.stacked). "<case>/config" is the model's config.json (BertConfig's fields,
compact JSON, sorted keys; without save_pretrained's torch_dtype and architectures), written by
save_pretrained, whose model.safetensors build() checks holds exactly the case's weights.
Weights: BERT's initializer (N(0, 0.02^2), every matrix and embedding table on the 2^-8 grid,
the padding token's row drawn like the others), but biases N(0, 0.02^2) and LayerNorms
1 + N(0, 0.1^2), N(0, 0.1^2), full float32. build() asserts per case that the float64 outputs
equal nn.TransformerEncoderLayer's with key_padding_mask (and its nn.MultiheadAttention's
weights) on every row with a key to attend (1e-12), that every output is finite, that a fully
padded row (attention_mask all 0: HF's additive (1 - m) * finfo(dtype).min) attends uniformly,
1/T exactly, and that absent attention_mask / token_type_ids equal all 1 / all 0.
"""
import copy
import json
import math
import os
import tempfile

import torch

import ch06_encoder as ref
import safetensors_io
from goldenlib import Case, Golden, emit, padding_mask, to_f64

NAME = "06-encoder"
SEED = 6
REF = ref

GRID = 2.0 ** -8            # the BERT-base and ff_wide weight grid
BERT_STD = 0.02             # BertConfig.initializer_range


def _randn64(c, *shape):
    return torch.randn(*shape, generator=c.gen, dtype=torch.float64)


def _on_grid(w):
    return torch.round(w / GRID) * GRID


def _causal(T):
    """The module's causal mask: BOOL, True above the diagonal = may NOT attend."""
    return torch.ones(T, T, dtype=torch.bool).triu(1)


def _float_mask(c, T):
    """A random additive src_mask [T, T]: N(0,1) biases with about 20% -inf, key 0 kept."""
    m = _randn64(c, T, T).masked_fill(c.rand(T, T) < 0.2, -math.inf)
    m[:, 0] = 0.0
    return m.to(torch.float32)


# ---------------------------------------------------------------- feedforward

# name, x shape, I, activation, (linear1.bias, linear2.bias), scale (x * s, linear2.weight / s),
# grid
FF_CASES = [
    ("ff_tiny", (1, 4), 8, "relu", (True, True), 1.0, False),
    ("ff_width1", (5, 1), 1, "relu", (True, True), 1.0, False),
    ("ff_odd_relu", (2, 7, 10), 24, "relu", (True, True), 1.0, False),
    ("ff_odd_gelu", (2, 7, 10), 24, "gelu", (True, True), 1.0, False),
    ("ff_no_bias", (3, 5, 12), 20, "gelu", (False, False), 1.0, False),
    ("ff_linear1_bias_only", (4, 9), 13, "relu", (True, False), 1.0, False),
    ("ff_linear2_bias_only", (4, 9), 13, "gelu", (False, True), 1.0, False),
    ("ff_vector", (6,), 9, "gelu", (True, True), 1.0, False),
    ("ff_4d", (2, 3, 4, 8), 16, "relu", (True, True), 1.0, False),
    # x ~ 100: hidden pre-activations ~ +-100, where GELU's erf saturates (exactly x or -0) and
    # ReLU zeroes half; linear2.weight / 100 brings out back to order 1, as a layer's norms
    # would. (Unscaled, outputs of ~100 that cancel to near 0 carry float32 rounding errors of
    # ~3e-5, 100 times the usual: float32's conditioning, not a kernel's, beyond any atol.)
    ("ff_large_gelu", (2, 6, 16), 64, "gelu", (True, True), 100.0, False),
    ("ff_large_relu", (2, 6, 16), 64, "relu", (True, True), 100.0, False),
    ("ff_wide", (2, 5, 256), 1024, "gelu", (True, True), 1.0, True),
]


def _ff_cases(out, seed):
    for name, shape, I, act, (has_b1, has_b2), scale, grid in FF_CASES:
        c = Case(seed, name)
        E = shape[-1]
        w1 = _randn64(c, I, E) / math.sqrt(E)
        w2 = _randn64(c, E, I) / (math.sqrt(I) * scale)
        if grid:
            w1, w2 = _on_grid(w1), _on_grid(w2)
        b1 = 0.5 * _randn64(c, I) if has_b1 else None
        b2 = 0.5 * _randn64(c, E) if has_b2 else None
        x = scale * _randn64(c, *shape)
        x, w1, b1, w2, b2 = (t.to(torch.float32) if t is not None else None
                             for t in (x, w1, b1, w2, b2))
        o32 = ref.torch_feedforward(x, w1, b1, w2, b2, act)
        o64 = ref.torch_feedforward(*(to_f64(t) for t in (x, w1, b1, w2, b2)), act)
        emit(out, name, {"x": x, "linear1.weight": w1, "linear1.bias": b1,
                          "linear2.weight": w2, "linear2.bias": b2},
              {"out": o32}, {"out": o64}, op="feedforward", params={"activation": act})


# ---------------------------------------------------------------- encoder-layer

def _padded(lengths, T):
    return lambda c: {"src_key_padding_mask": padding_mask(lengths, T)}


# name, (B, T, E, H, I), activation, norm_first, layer_norm_eps, extras(case) -> masks
LAYER_CASES = [
    ("tiny", (1, 1, 4, 1, 8), "relu", False, 1e-5, None),
    ("tiny_pre", (1, 1, 4, 1, 8), "relu", True, 1e-5, None),
    ("odd_post_relu", (2, 7, 10, 2, 24), "relu", False, 1e-5, None),
    ("odd_post_gelu", (2, 7, 10, 2, 24), "gelu", False, 1e-5, None),
    ("odd_pre_relu", (2, 7, 10, 2, 24), "relu", True, 1e-5, None),
    ("odd_pre_gelu", (2, 7, 10, 2, 24), "gelu", True, 1e-5, None),
    ("odd_heads_eps", (2, 6, 15, 5, 40), "gelu", True, 1e-6, None),       # odd H: slow path
    ("bert_base", (2, 16, 768, 12, 3072), "gelu", False, 1e-12, None),
    # lengths of padding 0, 2, 5 of 6: padded queries are computed, padded keys ignored
    ("padded", (3, 6, 16, 4, 32), "relu", False, 1e-5, _padded([0, 2, 5], 6)),
    ("padded_pre_gelu", (3, 6, 16, 4, 32), "gelu", True, 1e-5, _padded([1, 0, 4], 6)),
    # a batch element whose every key is padding: NaN in all of it, on both of torch's paths
    ("fully_padded", (2, 4, 8, 2, 16), "relu", False, 1e-5, _padded([0, 4], 4)),
    ("fully_padded_pre", (3, 5, 8, 2, 16), "gelu", True, 1e-5, _padded([5, 0, 2], 5)),
    ("causal", (2, 7, 16, 4, 32), "gelu", False, 1e-5, lambda c: {"src_mask": _causal(7)}),
    ("causal_pre", (2, 7, 16, 4, 32), "relu", True, 1e-5, lambda c: {"src_mask": _causal(7)}),
    ("float_mask", (2, 5, 12, 3, 20), "relu", False, 1e-5,
     lambda c: {"src_mask": _float_mask(c, 5)}),
    ("float_mask_pre", (2, 6, 16, 4, 32), "gelu", True, 1e-5,
     lambda c: {"src_mask": _float_mask(c, 6)}),
    ("padded_causal", (2, 6, 8, 2, 16), "gelu", True, 1e-5,
     lambda c: {"src_mask": _causal(6), "src_key_padding_mask": padding_mask([0, 2], 6)}),
    # src ~ 100 and linear1 10x: FF pre-activations ~ +-30, GELU saturated; post-LN renormalizes
    ("large_activations", (2, 6, 16, 4, 64), "gelu", False, 1e-5, None),
    # src ~ 1000 through a pre-LN layer: the residual stream carries it to the output
    ("large_activations_pre", (2, 6, 16, 4, 64), "relu", True, 1e-5, None),
]
SRC_SCALE = {"large_activations": 100.0, "large_activations_pre": 1000.0}
FF_GAIN = {"large_activations": 10.0}
NAN_CASES = {"fully_padded", "fully_padded_pre"}


def _layer_params(c, E, I, bert=False, ff_gain=1.0):
    """The module's parameters (float32), drawn in float64 and rounded once."""
    p = ref.random_layer_params(c.gen, E, I, torch.float64)
    if bert:
        for k in ("self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight",
                  "linear2.weight"):
            p[k] = _on_grid(BERT_STD * _randn64(c, *p[k].shape))
    p["linear1.weight"] = p["linear1.weight"] * ff_gain
    return {k: v.to(torch.float32) for k, v in p.items()}


def _scalars(H, act, norm_first, eps):
    """nhead always; the rest only where the case leaves the module's default."""
    return {"nhead": H, "activation": act if act != "relu" else None,
            "norm_first": 1 if norm_first else None, "layer_norm_eps": eps if eps != 1e-5 else None}


def _run(name, m, src, sm, kpm, H):
    """m called as a whole under no_grad, asserting the path torch takes."""
    fast = ref.fast_path_expected(H, sm)
    with ref.PathCounter() as pc:
        o = ref.run_module(m, src, sm, kpm)
    assert (pc.layer_calls, pc.mha_calls) == (int(fast), 0), \
        f"{name}: expected fast path {fast}, calls {pc.layer_calls}, mha {pc.mha_calls}"
    return o


def _layer_case(c, name, shape, act, norm_first, eps, kw):
    """Inputs (the module's parameters among them), the module (float32) and its outputs."""
    B, T, E, H, I = shape
    params = _layer_params(c, E, I, bert=name == "bert_base", ff_gain=FF_GAIN.get(name, 1.0))
    src = (SRC_SCALE.get(name, 1.0) * _randn64(c, B, T, E)).to(torch.float32)
    sm, kpm = kw.get("src_mask"), kw.get("src_key_padding_mask")
    m32 = ref.module(E, H, I, params, act, norm_first, eps, torch.float32)
    m64 = copy.deepcopy(m32).double()
    o32 = _run(name, m32, src, sm, kpm, H)
    o64 = _run(name, m64, to_f64(src), to_f64(sm), kpm, H)
    # the grad-enabled call (the Python composition) computes the same function
    torch.testing.assert_close(ref.run_module(m64, to_f64(src), to_f64(sm), kpm, grad=True), o64,
                               rtol=1e-12, atol=1e-12, equal_nan=True,
                               msg=lambda s: f"{name}: the module's two paths differ: {s}")
    inputs = {"src": src, "src_key_padding_mask": kpm, "src_mask": sm, **params}
    return inputs, params, (m32, m64), o32, o64


# ---------------------------------------------------------------- bert

# name, model (L, E, H, I, V, P, G), (B, T), attention_mask's row lengths (None: no mask),
# token_type_ids (True: a pair, 0s then 1s over each row's tokens), output_attentions,
# output_hidden_states, share (the case whose model and input_ids this one reuses)
BERT_CASES = [
    ("bert_tiny", (2, 32, 4, 64, 99, 40, 2), (2, 9), (9, 5), True, True, True, None),
    ("bert_tiny_no_mask", (2, 32, 4, 64, 99, 40, 2), (2, 9), None, False, False, False,
     "bert_tiny"),
    # row 1 entirely masked: HF's additive finfo.min mask makes it attend uniformly (finite)
    ("bert_fully_padded", (2, 24, 3, 48, 50, 16, 2), (3, 7), (7, 0, 4), True, True, True, None),
    ("bert_one_token", (1, 8, 2, 16, 5, 1, 1), (1, 1), (1,), True, True, True, None),
    ("bert_base_width", (2, 768, 12, 3072, 1000, 512, 2), (1, 16), (11,), True, False, False,
     None),
]
# config.json's fields as "<case>/config" holds them: BertConfig's, without save_pretrained's
# torch_dtype (a case holds both precisions) and architectures
BERT_CONFIG_FIELDS = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size", "hidden_act", "hidden_dropout_prob",
                      "attention_probs_dropout_prob", "max_position_embeddings",
                      "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id",
                      "position_embedding_type", "model_type"}


def _bert_model(c, spec):
    """config, the weights (float32, state_dict names) and the float32 model holding them.
    Weight matrices and embedding tables N(0, 0.02^2) on the grid; the other biases
    N(0, 0.02^2), LayerNorm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2), full float32."""
    L, E, H, I, V, P, G = spec
    cfg = ref.bert_config(vocab_size=V, hidden_size=E, num_hidden_layers=L,
                          num_attention_heads=H, intermediate_size=I, max_position_embeddings=P,
                          type_vocab_size=G)
    m32 = ref.BertModelRef(cfg)
    w = {}
    for k, t in m32.state_dict().items():
        z = _randn64(c, *t.shape)
        if k.endswith("LayerNorm.weight"):
            v = 1.0 + 0.1 * z
        elif k.endswith("LayerNorm.bias"):
            v = 0.1 * z
        elif k.endswith(".bias"):
            v = BERT_STD * z
        else:
            v = _on_grid(BERT_STD * z)
        w[k] = v.to(torch.float32)
    assert list(w) == ref.bert_keys(L), list(w)
    m32.load_state_dict(w, strict=True)
    return cfg, w, m32


def _bert_inputs(c, cfg, B, T, lengths, pair):
    """input_ids (real tokens 1..V-1, row 0's last real token V-1: the table's last row is
    read; padding pad_token_id, whose row is drawn like any other),
    attention_mask (1 for the first lengths[b] tokens of row b) and token_type_ids (0 over the
    first half of a row's tokens, rounded up, then 1; 0 on padding, as tokenizers pad)."""
    V = cfg["vocab_size"]
    assert V > 1, V
    ids = torch.randint(1, V, (B, T), generator=c.gen)
    mask = tt = None
    if lengths is not None:
        mask = torch.zeros(B, T, dtype=torch.long)
        for b, n in enumerate(lengths):
            mask[b, :n] = 1
        ids[mask == 0] = cfg["pad_token_id"]
    n0 = lengths[0] if lengths is not None else T
    assert n0 > 0, "row 0 has tokens"
    ids[0, n0 - 1] = V - 1
    if pair:
        tt = torch.zeros(B, T, dtype=torch.long)
        for b, n in enumerate(lengths if lengths is not None else [T] * B):
            tt[b, (n + 1) // 2:n] = 1
        assert int(tt.max()) < cfg["type_vocab_size"]
    return ids, mask, tt


def _bert_config_meta(g, case, m32, weights):
    """"<case>/config": the config.json save_pretrained writes for the case's model, as compact
    JSON with sorted keys (BERT_CONFIG_FIELDS); its model.safetensors must hold exactly the
    case's weights."""
    with tempfile.TemporaryDirectory() as d:
        m32.save_pretrained(d)
        with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        saved, _ = safetensors_io.load(os.path.join(d, "model.safetensors"))
    assert cfg.pop("torch_dtype") == "float32" and cfg.pop("architectures") == ["BertModel"]
    assert set(cfg) == BERT_CONFIG_FIELDS, sorted(cfg)
    assert sorted(saved) == sorted(weights) and all(
        torch.equal(saved[k], weights[k]) for k in weights), case
    g.metadata[f"{case}/config"] = json.dumps(cfg, sort_keys=True, separators=(",", ":"))


def _bert_cases(out, seed):
    drawn = {}
    for name, spec, (B, T), lengths, pair, attn, hid, share in BERT_CASES:
        if share:
            assert (spec, (B, T)) == drawn[share][0], (name, share)
            cfg, w, m32, ids = drawn[share][1]
            mask = tt = None
            assert lengths is None and not pair, name
        else:
            c = Case(seed, name)
            cfg, w, m32 = _bert_model(c, spec)
            ids, mask, tt = _bert_inputs(c, cfg, B, T, lengths, pair)
            drawn[name] = ((spec, (B, T)), (cfg, w, m32, ids))
        m64 = copy.deepcopy(m32).double()
        with torch.no_grad():
            o32 = ref.stacked(m32(ids, attention_mask=mask, token_type_ids=tt))
            o64 = ref.stacked(m64(ids, attention_mask=mask, token_type_ids=tt))
            if mask is None:   # the defaults: attention_mask all 1, token_type_ids all 0
                for m, o in ((m32, o32), (m64, o64)):
                    d = ref.stacked(m(ids, attention_mask=torch.ones(B, T, dtype=torch.long),
                                      token_type_ids=torch.zeros(B, T, dtype=torch.long)))
                    assert all(torch.equal(o[k], d[k]) for k in o), f"{name}: defaults"
        # rows with a key to attend: nn.TransformerEncoderLayer with key_padding_mask agrees
        rows = mask.any(1) if mask is not None else torch.ones(B, dtype=torch.bool)
        mods = ref.torch_layers_bert(m64, ids, mask, tt)
        for k in o64:
            sel = (slice(None), rows) if k in ("attentions", "hidden_states") else (rows,)
            torch.testing.assert_close(o64[k][sel], mods[k][sel], rtol=1e-12, atol=1e-12,
                                       msg=lambda s: f"{name} {k} vs torch's layers: {s}")
        # a fully padded row: finite, attending uniformly to all T keys
        for o in (o32, o64):
            assert all(bool(torch.isfinite(t).all()) for t in o.values()), f"{name}: not finite"
            a = o["attentions"][:, ~rows]
            assert torch.equal(a, torch.full_like(a, 1.0 / T)), f"{name}: not uniform"
        keep = ["last_hidden_state", "pooler_output"] + ["attentions"] * attn + \
            ["hidden_states"] * hid
        emit(out, name, {"input_ids": ids, "attention_mask": mask, "token_type_ids": tt, **w},
             {k: o32[k] for k in keep}, {k: o64[k] for k in keep}, op="bert",
             params={"output_attentions": 1 if attn else None,
                     "output_hidden_states": 1 if hid else None})
        _bert_config_meta(out, name, m32, w)


def build(seed):
    out = Golden()
    _ff_cases(out, seed)

    for name, shape, act, norm_first, eps, extras in LAYER_CASES:
        c = Case(seed, name)
        kw = extras(c) if extras else {}
        inputs, _, _, o32, o64 = _layer_case(c, name, shape, act, norm_first, eps, kw)
        emit(out, name, inputs, {"out": o32}, {"out": o64}, op="encoder-layer",
              params=_scalars(shape[3], act, norm_first, eps))
        has_nan = bool(o64.isnan().any())
        assert has_nan == (name in NAN_CASES), f"{name}: unexpected NaN state {has_nan}"
        if has_nan:   # exactly the fully padded batch elements, entirely
            rows = kw["src_key_padding_mask"].all(1)
            assert o64[rows].isnan().all() and not o64[~rows].isnan().any(), name
            assert torch.equal(o32.isnan(), o64.isnan()), name

    # Erratum 003 §4.2: the article's encoder layer is LayerNorm(x + MultiHead(x, x, x)), the
    # real post-LN layer's first half without the feed-forward sublayer and its Add & Norm. Its
    # value on the same inputs, by PyTorch's modules (m.norm1 and m.self_attn called as a
    # whole), is "out_article" (case errata_003_4_2_article, a pin) beside the real layer's out.
    name, shape, act = "errata_003_4_2", (2, 6, 16, 4, 64), "relu"
    c = Case(seed, name)
    inputs, params, mods, o32, o64 = _layer_case(c, name, shape, act, False, 1e-5, {})
    art = {}
    for m, src in zip(mods, (inputs["src"], to_f64(inputs["src"]))):
        with torch.no_grad():
            art[m.norm1.weight.dtype] = {
                "out_article": m.norm1(src + m.self_attn(src, src, src, need_weights=False)[0])}
    a64 = art[torch.float64]["out_article"]
    torch.testing.assert_close(
        a64, ref.article_003_4_2(to_f64(inputs["src"]), {k: to_f64(v) for k, v in params.items()},
                                 shape[3]), rtol=1e-12, atol=1e-12)
    gap = (a64 - o64).abs().max().item()
    assert gap > 0.5, f"{name}: the article's layer is close to the real one ({gap:.3g})"
    emit(out, name, inputs, {"out": o32}, {"out": o64}, op="encoder-layer",
          params=_scalars(shape[3], act, False, 1e-5))
    emit(out, name + "_article", {}, art[torch.float32], art[torch.float64], op="pin",
         params={"nhead": shape[3]})

    _bert_cases(out, seed)
    return out
