"""Chapter 06 in PyTorch: the position-wise feed-forward network, the encoder layer, and BERT.

    FF(x)        = act(x W1^T + b1) W2^T + b2          act = ReLU, or GELU x Phi(x) (erf form)
    post-LN      h = LN1(x + SA(x)),    out = LN2(h + FF(h))      (the original paper, BERT)
    pre-LN       h = x + SA(LN1(x)),    out = h + FF(LN2(h))      (norm_first=True, GPT-2)

SA is chapter 02's multi-head self-attention (ch02_multihead.multihead), LN chapter 04's
(ch04_layernorm.layernorm). encoder_layer() takes the parameters under the state_dict names of
torch.nn.TransformerEncoderLayer (self_attn.in_proj_weight, ..., norm2.bias), so they load into
the real module with load_state_dict and the goldens store them under those names.

BertModelRef is transformers' BertModel (and the "bert." part of BertForPreTraining) assembled
from torch.nn parts, its state_dict keys exactly the Hugging Face ones ("bert.embeddings.
word_embeddings.weight", ..., "bert.pooler.dense.bias"), with BertModel's eager forward: see the
class. save_pretrained() writes config.json (BertConfig's field names) and model.safetensors.
stacked() gives its outputs as the goldens hold them (attentions [L, B, H, T, T], hidden_states
[L + 1, B, T, E]); torch_layers_bert() recomputes them from nn.TransformerEncoderLayer and
nn.MultiheadAttention (crosscheck() and oracle/export_06.py hold the two together).

crosscheck() ties all of it to torch built-ins called as a whole (nn.TransformerEncoderLayer,
nn.Sequential of nn.Linear and nn.ReLU / nn.GELU, nn.MultiheadAttention's weights).

The module's two code paths (torch 1.13). nn.TransformerEncoderLayer.forward hands the whole
layer to the fused torch._transformer_encoder_layer_fwd (the "fast path") when it is in eval mode,
batched (src 3-D), batch_first, the activation is relu or gelu, norm1.eps == norm2.eps, there is
no src_mask, num_heads is even, autocast is off, and either autograd is off or no parameter
requires grad. Otherwise it runs the Python composition above (norm1, _sa_block, _ff_block),
whose attention is nn.MultiheadAttention's own (itself on its slow path whenever the layer is:
the conditions it adds are the layer's). Measured here (crosscheck asserts each):
  * both paths agree: float64 to 1e-14, float32 to a few ulps (<= 1e-6 on outputs of order 1);
  * a FULLY padded batch element (every key of the row padded) is NaN on BOTH paths, in float32
    and float64: softmax over all -inf, as chapters 01 and 02 return it. The layer alone never
    returns zeros there. (Zeros come from nn.TransformerEncoder, not the layer: under no_grad its
    nested-tensor path packs the sequences without their padding and unpacks with 0.0, so EVERY
    padded position, also the padded queries of a partly padded row, comes out exactly 0, while
    its grad-enabled call gives NaN / the layer's values. padded_row_paths() shows all four.)
  * padded QUERY positions of a partly padded row are computed like any other position (their
    keys are masked, not they) on both paths.
The goldens call the module as a whole under torch.no_grad(), the call inference code makes, so
each case runs the path PyTorch picks for it (fast unless it has a src_mask or odd heads; the
export asserts which); that is also chapter 02's convention. Since the two paths agree to 1e-14
in float64, the truth tfm is held to does not depend on the choice.

HF's attention mask versus key_padding_mask. BertModel turns attention_mask [B, T] (1 = attend,
0 = padding) into an additive mask (1 - m) * torch.finfo(dtype).min added to the scores, with
dtype the MODEL's parameter dtype (ModuleUtilsMixin.get_extended_attention_mask, dtype=None ->
self.dtype; transformers uses finfo.min since v4.2x, -10000.0 before): finfo(float32).min =
-3.4e38 for a float32 model, finfo(float64).min = -1.8e308 for model.double(). A padded key's
probability is then exp(finfo.min - max) = 0 exactly, the same as -inf, so a partly padded row
matches key_padding_mask to rounding. A fully padded row differs: score + finfo.min rounds to
finfo.min for every key (|score| is far below half a spacing there), so all scores are equal and
the row attends UNIFORMLY to all keys (padding included): finite numbers, where key_padding_mask
gives NaN. (With the -10000.0 of older transformers every score of such a row moves by the
same constant, and softmax ignores a constant: the row attends as if nothing were masked.)
crosscheck() shows both.
"""

import copy
import json
import math
import os
import sys
import tempfile
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

import ch02_multihead
import ch04_layernorm
import functional

ACTIVATIONS = ("relu", "gelu")  # nn.TransformerEncoderLayer's words; relu is its default

# nn.TransformerEncoderLayer's state_dict, in the module's order.
LAYER_KEYS = ("self_attn.in_proj_weight", "self_attn.in_proj_bias",
              "self_attn.out_proj.weight", "self_attn.out_proj.bias",
              "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
              "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")


# ---------------------------------------------------------------- the formulas

def feedforward(x, w1, b1, w2, b2, activation="relu"):
    """x [..., E], w1 [I, E], b1 [I] or None, w2 [E, I], b2 [E] or None -> [..., E]."""
    assert activation in ACTIVATIONS, activation
    h = x @ w1.T + (b1 if b1 is not None else 0.0)                          # linear1
    h = h.clamp_min(0.0) if activation == "relu" else functional.gelu(h)   # max(0, h) | h Phi(h)
    return h @ w2.T + (b2 if b2 is not None else 0.0)                       # linear2


def encoder_layer(src, params, nhead, activation="relu", norm_first=False, eps=1e-5,
                  src_mask=None, src_key_padding_mask=None):
    """src [B, T, E] -> out [B, T, E]; params: nn.TransformerEncoderLayer's state_dict names.
    src_mask [T, T] (BOOL True = blocked, or additive), src_key_padding_mask [B, T] (True = pad)."""
    p = params

    def sa(x):
        return ch02_multihead.multihead(
            x, x, x, p["self_attn.in_proj_weight"], p["self_attn.in_proj_bias"],
            p["self_attn.out_proj.weight"], p["self_attn.out_proj.bias"], nhead,
            key_padding_mask=src_key_padding_mask, attn_mask=src_mask, need_weights=False)[0]

    def ln(x, n):
        return ch04_layernorm.layernorm(x, p[n + ".weight"], p[n + ".bias"], eps)[0]

    def ff(x):
        return feedforward(x, p["linear1.weight"], p["linear1.bias"], p["linear2.weight"],
                           p["linear2.bias"], activation)

    x = src
    if norm_first:
        h = x + sa(ln(x, "norm1"))
        return h + ff(ln(h, "norm2"))
    h = ln(x + sa(x), "norm1")
    return ln(h + ff(h), "norm2")


def article_003_4_2(src, params, nhead, eps=1e-5, src_key_padding_mask=None):
    """Erratum 003 §4.2, read literally: the encoder layer as LN(x + MultiHead(x, x, x)) alone,
    i.e. the real post-LN layer's first half, with no feed-forward sublayer and no second norm."""
    p = params
    s = ch02_multihead.multihead(
        src, src, src, p["self_attn.in_proj_weight"], p["self_attn.in_proj_bias"],
        p["self_attn.out_proj.weight"], p["self_attn.out_proj.bias"], nhead,
        key_padding_mask=src_key_padding_mask, need_weights=False)[0]
    return ch04_layernorm.layernorm(src + s, p["norm1.weight"], p["norm1.bias"], eps)[0]


# ---------------------------------------------------------------- PyTorch's own

def module(E, nhead, dim_feedforward, params, activation="relu", norm_first=False, eps=1e-5,
           dtype=torch.float32):
    """A real nn.TransformerEncoderLayer(batch_first=True, dropout=0) in eval mode holding
    `params` (load_state_dict, strict: the names must be the module's own)."""
    m = nn.TransformerEncoderLayer(E, nhead, dim_feedforward=dim_feedforward, dropout=0.0,
                                   activation=activation, layer_norm_eps=eps, batch_first=True,
                                   norm_first=norm_first, dtype=dtype).eval()
    m.load_state_dict(params, strict=True)
    return m


def run_module(m, src, src_mask=None, src_key_padding_mask=None, grad=False):
    """m(src, src_mask=..., src_key_padding_mask=...), the module called as a whole: without
    autograd (grad=False: the fast path where torch allows it), or with autograd on and the
    parameters requiring grad (grad=True: always the Python composition), detached."""
    if grad:
        with torch.enable_grad():
            assert all(q.requires_grad for q in m.parameters())
            return m(src, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask).detach()
    with torch.no_grad():
        return m(src, src_mask=src_mask, src_key_padding_mask=src_key_padding_mask)


def fast_path_expected(nhead, src_mask):
    """Whether run_module(grad=False) takes torch._transformer_encoder_layer_fwd (see above; the
    other conditions hold for every module built by module())."""
    return src_mask is None and nhead % 2 == 0


class PathCounter:
    """Counts calls of the layer's fused fast path and of nn.MultiheadAttention's."""

    def __enter__(self):
        self.layer_calls = self.mha_calls = 0
        self._layer, self._mha = torch._transformer_encoder_layer_fwd, \
            torch._native_multi_head_attention

        def layer(*a, **kw):
            self.layer_calls += 1
            return self._layer(*a, **kw)

        def mha(*a, **kw):
            self.mha_calls += 1
            return self._mha(*a, **kw)

        torch._transformer_encoder_layer_fwd, torch._native_multi_head_attention = layer, mha
        return self

    def __exit__(self, *exc):
        torch._transformer_encoder_layer_fwd = self._layer
        torch._native_multi_head_attention = self._mha


def torch_feedforward(x, w1, b1, w2, b2, activation="relu"):
    """PyTorch's own: nn.Sequential(nn.Linear, nn.ReLU | nn.GELU, nn.Linear), called as a whole
    without autograd (the layer's linear1 -> activation -> linear2, dropout 0)."""
    I, E = w1.shape
    act = nn.ReLU() if activation == "relu" else nn.GELU()
    seq = nn.Sequential(nn.Linear(E, I, bias=b1 is not None, dtype=x.dtype), act,
                        nn.Linear(I, E, bias=b2 is not None, dtype=x.dtype)).eval()
    state = {"0.weight": w1, "2.weight": w2}
    if b1 is not None:
        state["0.bias"] = b1
    if b2 is not None:
        state["2.bias"] = b2
    seq.load_state_dict(state, strict=True)
    with torch.no_grad():
        return seq(x)


def padded_row_paths(E=8, nhead=2, dim_feedforward=16, T=4, dtype=torch.float32, seed=606):
    """What each PyTorch path returns on a batch of [unpadded, fully padded, half padded] rows:
    {path: out [3, T, E]} for the layer without and with autograd, and for
    nn.TransformerEncoder(layer, 1) (nested tensors) without and with autograd."""
    g = torch.Generator().manual_seed(seed)
    params = random_layer_params(g, E, dim_feedforward, dtype)
    m = module(E, nhead, dim_feedforward, params, dtype=dtype)
    src = torch.randn(3, T, E, generator=g, dtype=torch.float64).to(dtype)
    kpm = torch.zeros(3, T, dtype=torch.bool)
    kpm[1] = True
    kpm[2, T // 2:] = True
    enc = nn.TransformerEncoder(module(E, nhead, dim_feedforward, params, dtype=dtype), 1).eval()
    with warnings.catch_warnings():   # "nested tensors are a prototype" from the no_grad path
        warnings.simplefilter("ignore")
        with torch.no_grad():
            enc_nograd = enc(src, src_key_padding_mask=kpm)
        enc_grad = enc(src, src_key_padding_mask=kpm).detach()
    return {"layer no_grad": run_module(m, src, src_key_padding_mask=kpm),
            "layer grad": run_module(m, src, src_key_padding_mask=kpm, grad=True),
            "TransformerEncoder no_grad": enc_nograd, "TransformerEncoder grad": enc_grad}, kpm


def random_layer_params(g, E, I, dtype=torch.float64):
    """Every parameter of the layer drawn (the module's own init leaves the biases at 0 and the
    norms at 1, 0): weights N(0, 1/fan_in), biases N(0, 1/4), norms 1 + N(0, 0.01), N(0, 0.01)."""
    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    return {"self_attn.in_proj_weight": randn(3 * E, E) / math.sqrt(E),
            "self_attn.in_proj_bias": 0.5 * randn(3 * E),
            "self_attn.out_proj.weight": randn(E, E) / math.sqrt(E),
            "self_attn.out_proj.bias": 0.5 * randn(E),
            "linear1.weight": randn(I, E) / math.sqrt(E), "linear1.bias": 0.5 * randn(I),
            "linear2.weight": randn(E, I) / math.sqrt(I), "linear2.bias": 0.5 * randn(E),
            "norm1.weight": 1.0 + 0.1 * randn(E), "norm1.bias": 0.1 * randn(E),
            "norm2.weight": 1.0 + 0.1 * randn(E), "norm2.bias": 0.1 * randn(E)}


# ---------------------------------------------------------------- BERT

def bert_config(**overrides):
    """BertConfig's fields with its defaults (bert-base-uncased's shape), as config.json holds
    them; model_type and architectures as BertModel.save_pretrained writes them."""
    cfg = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
           "num_attention_heads": 12, "intermediate_size": 3072, "hidden_act": "gelu",
           "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
           "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02,
           "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
           "model_type": "bert", "architectures": ["BertModel"]}
    unknown = set(overrides) - set(cfg)
    assert not unknown, f"not BertConfig fields: {sorted(unknown)}"
    cfg.update(overrides)
    assert cfg["hidden_act"] == "gelu" and cfg["position_embedding_type"] == "absolute", \
        "BertModelRef implements hidden_act 'gelu' and absolute positions only"
    assert cfg["hidden_size"] % cfg["num_attention_heads"] == 0
    return cfg


class _Node(nn.Module):
    """An empty container, so that submodules get BERT's dotted names."""


class BertSelfAttention(nn.Module):
    """scores = (q k^T) / sqrt(D) + mask, probs = softmax(scores), ctx = probs v: transformers'
    eager attention (it divides the scores AFTER the product; nn.MultiheadAttention scales q)."""

    def __init__(self, E, H):
        super().__init__()
        self.H, self.D = H, E // H
        self.query, self.key, self.value = nn.Linear(E, E), nn.Linear(E, E), nn.Linear(E, E)

    def forward(self, x, ext_mask):
        B, T, E = x.shape

        def heads(t):                           # [B, T, E] -> [B, H, T, D]
            return t.view(B, T, self.H, self.D).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.D) + ext_mask
        probs = torch.softmax(scores, dim=-1)   # [B, H, T, T]
        return (probs @ v).transpose(1, 2).reshape(B, T, E), probs


class _DenseNorm(nn.Module):
    """BertSelfOutput / BertOutput: LayerNorm(dense(h) + residual) (dropout: eval, none)."""

    def __init__(self, n_in, E, eps):
        super().__init__()
        self.dense = nn.Linear(n_in, E)
        self.LayerNorm = nn.LayerNorm(E, eps=eps)

    def forward(self, h, residual):
        return self.LayerNorm(self.dense(h) + residual)


class BertLayer(nn.Module):
    """A post-LN encoder layer: h = LN(x + SA(x)), out = LN(h + W2 gelu(W1 h))."""

    def __init__(self, E, H, I, eps):
        super().__init__()
        self.attention = _Node()
        self.attention.self = BertSelfAttention(E, H)
        self.attention.output = _DenseNorm(E, E, eps)
        self.intermediate = _Node()
        self.intermediate.dense = nn.Linear(E, I)
        self.output = _DenseNorm(I, E, eps)

    def forward(self, x, ext_mask):
        ctx, probs = self.attention.self(x, ext_mask)
        h = self.attention.output(ctx, x)
        return self.output(F.gelu(self.intermediate.dense(h)), h), probs   # gelu: exact (erf)


class BertModelRef(nn.Module):
    """transformers' BertModel, eager attention, eval mode. forward(input_ids [B, T],
    attention_mask [B, T] (1 attend, 0 pad; default all 1), token_type_ids (default 0),
    position_ids (default 0..T-1)) -> dict of last_hidden_state [B, T, E], pooler_output [B, E],
    attentions (one [B, H, T, T] per layer), hidden_states (the embeddings' output, then each
    layer's: L + 1 of [B, T, E])."""

    def __init__(self, config):
        super().__init__()
        c = self.config = dict(config)
        E, eps = c["hidden_size"], c["layer_norm_eps"]
        self.bert = _Node()
        emb = self.bert.embeddings = _Node()
        emb.word_embeddings = nn.Embedding(c["vocab_size"], E, padding_idx=c["pad_token_id"])
        emb.position_embeddings = nn.Embedding(c["max_position_embeddings"], E)
        emb.token_type_embeddings = nn.Embedding(c["type_vocab_size"], E)
        emb.LayerNorm = nn.LayerNorm(E, eps=eps)
        self.bert.encoder = _Node()
        self.bert.encoder.layer = nn.ModuleList(
            BertLayer(E, c["num_attention_heads"], c["intermediate_size"], eps)
            for _ in range(c["num_hidden_layers"]))
        self.bert.pooler = _Node()
        self.bert.pooler.dense = nn.Linear(E, E)
        self.eval()

    @property
    def dtype(self):
        return self.bert.pooler.dense.weight.dtype

    def extended_attention_mask(self, attention_mask):
        """[B, T] 1/0 -> [B, 1, 1, T]: 0 where attended, finfo(model dtype).min where padded."""
        m = attention_mask[:, None, None, :].to(self.dtype)
        return (1.0 - m) * torch.finfo(self.dtype).min

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None):
        B, T = input_ids.shape
        emb = self.bert.embeddings
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long)
        if token_type_ids is None:
            token_type_ids = torch.zeros(B, T, dtype=torch.long)
        if position_ids is None:
            position_ids = torch.arange(T).expand(B, T)
        x = emb.word_embeddings(input_ids) + emb.token_type_embeddings(token_type_ids)
        x = emb.LayerNorm(x + emb.position_embeddings(position_ids))
        ext = self.extended_attention_mask(attention_mask)
        hidden, attentions = [x], []
        for layer in self.bert.encoder.layer:
            x, probs = layer(x, ext)
            hidden.append(x)
            attentions.append(probs)
        pooled = torch.tanh(self.bert.pooler.dense(x[:, 0]))
        return {"last_hidden_state": x, "pooler_output": pooled,
                "attentions": tuple(attentions), "hidden_states": tuple(hidden)}

    def save_pretrained(self, directory):
        """config.json (BertConfig's fields, plus torch_dtype) and model.safetensors (the
        state_dict under HF's "bert."-prefixed names, metadata format=pt as transformers
        writes it). transformers' from_pretrained strips the base-model prefix "bert." when it
        loads these into a BertModel (and BertForPreTraining takes them as they are)."""
        safetensors_io = _safetensors_io()
        os.makedirs(directory, exist_ok=True)
        cfg = dict(self.config, torch_dtype=str(self.dtype).replace("torch.", ""))
        with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        safetensors_io.save(os.path.join(directory, "model.safetensors"), state,
                            {"format": "pt"})

    @classmethod
    def from_pretrained(cls, directory):
        """The inverse of save_pretrained (for these two files only)."""
        safetensors_io = _safetensors_io()
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        dtype = getattr(torch, cfg.pop("torch_dtype", "float32"))
        m = cls(bert_config(**cfg)).to(dtype)
        state, _ = safetensors_io.load(os.path.join(directory, "model.safetensors"))
        m.load_state_dict(state, strict=True)
        return m


def stacked(out):
    """BertModelRef's outputs as the goldens hold them: the per-layer attentions stacked to
    [L, B, H, T, T], the hidden states to [L + 1, B, T, E] (embeddings' output first)."""
    return {"last_hidden_state": out["last_hidden_state"], "pooler_output": out["pooler_output"],
            "attentions": torch.stack(out["attentions"]),
            "hidden_states": torch.stack(out["hidden_states"])}


def torch_layers_bert(bert, input_ids, attention_mask=None, token_type_ids=None):
    """BertModelRef's outputs (stacked) recomputed from torch built-ins called as a whole: its
    embeddings' nn.Embedding and nn.LayerNorm, then per layer an nn.TransformerEncoderLayer
    (post-LN, gelu, layer_norm_eps, q, k, v packed: packed_layer_params) with
    src_key_padding_mask = (attention_mask == 0), whose attentions are its nn.MultiheadAttention's
    per-head weights, and the pooler tanh(F.linear(first token)). On a fully padded row this gives
    NaN (key_padding_mask), where BertModelRef attends uniformly (the docstring)."""
    c, e = bert.config, bert.bert.embeddings
    B, T = input_ids.shape
    kpm = attention_mask == 0 if attention_mask is not None else None
    if token_type_ids is None:
        token_type_ids = torch.zeros(B, T, dtype=torch.long)
    with torch.no_grad():
        x = e.LayerNorm((e.word_embeddings(input_ids) + e.token_type_embeddings(token_type_ids))
                        + e.position_embeddings(torch.arange(T)))
        hidden, attentions = [x], []
        for lay in bert.bert.encoder.layer:
            m = module(c["hidden_size"], c["num_attention_heads"], c["intermediate_size"],
                       {k: v.detach() for k, v in packed_layer_params(lay).items()}, "gelu",
                       False, c["layer_norm_eps"], bert.dtype)
            attentions.append(m.self_attn(x, x, x, key_padding_mask=kpm, need_weights=True,
                                          average_attn_weights=False)[1])
            x = run_module(m, x, src_key_padding_mask=kpm)
            hidden.append(x)
        pooled = torch.tanh(F.linear(x[:, 0], bert.bert.pooler.dense.weight,
                                     bert.bert.pooler.dense.bias))
    return stacked({"last_hidden_state": x, "pooler_output": pooled,
                    "attentions": attentions, "hidden_states": hidden})


def bert_keys(num_hidden_layers):
    """The state_dict keys of BertModelRef: Hugging Face's names."""
    keys = ["bert.embeddings.word_embeddings.weight", "bert.embeddings.position_embeddings.weight",
            "bert.embeddings.token_type_embeddings.weight", "bert.embeddings.LayerNorm.weight",
            "bert.embeddings.LayerNorm.bias"]
    for n in range(num_hidden_layers):
        p = f"bert.encoder.layer.{n}."
        for sub in ("attention.self.query", "attention.self.key", "attention.self.value",
                    "attention.output.dense", "attention.output.LayerNorm",
                    "intermediate.dense", "output.dense", "output.LayerNorm"):
            keys += [p + sub + ".weight", p + sub + ".bias"]
    return keys + ["bert.pooler.dense.weight", "bert.pooler.dense.bias"]


def packed_layer_params(bert_layer):
    """A BertLayer's parameters under nn.TransformerEncoderLayer's names: q, k, v stacked into
    in_proj (rows 0..E-1 query, E..2E-1 key, 2E..3E-1 value, the order MHA splits them in)."""
    a, s = bert_layer.attention, bert_layer.attention.self
    return {"self_attn.in_proj_weight": torch.cat([s.query.weight, s.key.weight, s.value.weight]),
            "self_attn.in_proj_bias": torch.cat([s.query.bias, s.key.bias, s.value.bias]),
            "self_attn.out_proj.weight": a.output.dense.weight,
            "self_attn.out_proj.bias": a.output.dense.bias,
            "linear1.weight": bert_layer.intermediate.dense.weight,
            "linear1.bias": bert_layer.intermediate.dense.bias,
            "linear2.weight": bert_layer.output.dense.weight,
            "linear2.bias": bert_layer.output.dense.bias,
            "norm1.weight": a.output.LayerNorm.weight, "norm1.bias": a.output.LayerNorm.bias,
            "norm2.weight": bert_layer.output.LayerNorm.weight,
            "norm2.bias": bert_layer.output.LayerNorm.bias}


def _safetensors_io():
    """oracle/safetensors_io.py (on sys.path under export.py; added here when run alone)."""
    try:
        import safetensors_io
    except ImportError:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))), "oracle"))
        import safetensors_io
    return safetensors_io


# ---------------------------------------------------------------- crosscheck

def crosscheck():
    """Raises AssertionError if feedforward() or encoder_layer() disagree with PyTorch's modules
    called as a whole (float64 to 1e-12, float32 to float32 rounding; NaN in the same places),
    if the layer's two paths disagree or stop returning NaN on a fully padded row, or if
    BertModelRef's layer, model, masks, stacked outputs or saved files are not what the
    docstring says (save_pretrained -> from_pretrained: the same bits, float32 and float64)."""
    g = torch.Generator().manual_seed(6006)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    def close(a, b, label, tol=1e-12):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, equal_nan=True,
                                   msg=lambda m: f"encoder crosscheck '{label}': {m}")

    def pad(lengths, T):                   # True for the last n keys of each batch row
        kpm = torch.zeros(len(lengths), T, dtype=torch.bool)
        for b, n in enumerate(lengths):
            kpm[b, T - n:] = n > 0
        return kpm

    # ---- the feed-forward network against nn.Sequential(Linear, act, Linear)
    for shape, I, act, bias1, bias2 in [((2, 5, 8), 16, "relu", True, True),
                                        ((2, 5, 8), 16, "gelu", True, True),
                                        ((3, 7), 11, "gelu", False, False),
                                        ((9,), 4, "relu", True, False),
                                        ((2, 3, 2, 6), 10, "gelu", False, True)]:
        E = shape[-1]
        x = randn(*shape) * 2.0
        w1, w2 = randn(I, E) / math.sqrt(E), randn(E, I) / math.sqrt(I)
        b1 = randn(I) if bias1 else None
        b2 = randn(E) if bias2 else None
        label = f"feedforward {list(shape)} I={I} {act} bias={int(bias1)}{int(bias2)}"
        for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
            conv = (lambda t: t.to(dtype) if t is not None else None)  # noqa: E731
            close(feedforward(*map(conv, (x, w1, b1, w2, b2)), act),
                  torch_feedforward(*map(conv, (x, w1, b1, w2, b2)), act), f"{label} {dtype}",
                  tol)

    # ---- the encoder layer against nn.TransformerEncoderLayer, both orders, both activations,
    # every mask kind, on both of its paths; float64 to 1e-12, float32 to float32 rounding
    B, T = 3, 6
    causal = torch.ones(T, T, dtype=torch.bool).triu(1)
    float_mask = randn(T, T).masked_fill(torch.rand(T, T, generator=g) < 0.2, -math.inf)
    float_mask[:, 0] = 0.0                 # every row keeps key 0
    masks = {"no mask": (None, None), "padding": (None, pad([0, 2, 5], T)),
             "bool causal": (causal, None), "float mask": (float_mask, None),
             "causal + padding": (causal, pad([1, 0, 3], T)),
             "fully padded row": (None, pad([0, T, 2], T))}
    for E, H, I, eps in ((16, 4, 32, 1e-5), (15, 5, 24, 1e-6)):
        params64 = random_layer_params(g, E, I)
        src = randn(B, T, E)
        for norm_first in (False, True):
            for act in ACTIVATIONS:
                m64 = module(E, H, I, params64, act, norm_first, eps, torch.float64)
                m32 = module(E, H, I, params64, act, norm_first, eps, torch.float32)
                for mname, (sm, kpm) in masks.items():
                    label = f"layer E={E} H={H} norm_first={norm_first} {act} {mname}"
                    ours = encoder_layer(src, params64, H, act, norm_first, eps, sm, kpm)
                    fast = fast_path_expected(H, sm)
                    with PathCounter() as pc:
                        nograd = run_module(m64, src, sm, kpm)
                    assert (pc.layer_calls, pc.mha_calls) == (int(fast), 0), \
                        f"{label}: path calls {pc.layer_calls}, {pc.mha_calls}; fast {fast}"
                    with PathCounter() as pc:
                        grad = run_module(m64, src, sm, kpm, grad=True)
                    assert (pc.layer_calls, pc.mha_calls) == (0, 0), f"{label}: grad path"
                    close(ours, nograd, f"{label} no_grad")
                    close(ours, grad, f"{label} grad")
                    close(nograd, grad, f"{label} paths", 1e-14)
                    nan_rows = (kpm.all(1) if kpm is not None
                                else torch.zeros(B, dtype=torch.bool))
                    assert torch.equal(nograd.isnan().all(2).all(1), nan_rows) and \
                        not nograd[~nan_rows].isnan().any(), f"{label}: NaN rows"
                    s32 = sm.float() if sm is not None and sm.is_floating_point() else sm
                    o32 = encoder_layer(src.float(), {k: v.float() for k, v in params64.items()},
                                        H, act, norm_first, eps, s32, kpm)
                    close(o32, run_module(m32, src.float(), s32, kpm), f"{label} float32", 1e-5)
                    close(o32, run_module(m32, src.float(), s32, kpm, grad=True),
                          f"{label} float32 grad", 1e-5)
        # the module's default activation is relu, its default eps 1e-5
        d = nn.TransformerEncoderLayer(E, H, I, batch_first=True)
        assert d.activation is F.relu and d.norm1.eps == 1e-5 and not d.norm_first

    # What each path returns on a fully padded row (docstring): the layer NaN on both paths.
    for dtype in (torch.float32, torch.float64):
        outs, kpm = padded_row_paths(dtype=dtype)
        for path in ("layer no_grad", "layer grad"):
            assert outs[path][1].isnan().all() and not outs[path][[0, 2]].isnan().any(), \
                f"{path} {dtype}: a fully padded row is no longer NaN (and only it)"
        close(outs["layer no_grad"], outs["layer grad"], f"padded rows {dtype}",
              1e-14 if dtype == torch.float64 else 1e-5)

    # ---- BERT
    cfg = bert_config(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=40, max_position_embeddings=12, type_vocab_size=2)
    bert = BertModelRef(cfg).double()
    with torch.no_grad():      # every parameter drawn: norms near (1, 0), Linears N(0, 1/fan_in)
        for name, q in bert.named_parameters():
            if name.endswith("LayerNorm.weight"):
                q.copy_(1.0 + 0.1 * randn(*q.shape))
            elif "embeddings" in name and not name.startswith("bert.embeddings.LayerNorm"):
                q.copy_(randn(*q.shape))
            elif q.dim() == 2:
                q.copy_(randn(*q.shape) / math.sqrt(q.shape[1]))
            else:
                q.copy_(0.2 * randn(*q.shape))
    assert list(bert.state_dict()) == bert_keys(2), list(bert.state_dict())
    B, T, E, H = 3, 7, 16, 4
    ids = torch.randint(0, 50, (B, T), generator=g)
    tt = torch.randint(0, 2, (B, T), generator=g)
    with torch.no_grad():
        ref = bert(ids, token_type_ids=tt)

    # (a) each BertLayer is nn.TransformerEncoderLayer(norm_first=False, gelu, eps 1e-12) with
    # q, k, v packed into in_proj; its attentions are nn.MultiheadAttention's per-head weights
    layers = [module(E, H, cfg["intermediate_size"], {k: v.detach() for k, v in
                                                      packed_layer_params(lay).items()},
                     "gelu", False, 1e-12, torch.float64) for lay in bert.bert.encoder.layer]
    e = bert.bert.embeddings
    with torch.no_grad():
        x = e.LayerNorm((e.word_embeddings(ids) + e.token_type_embeddings(tt))
                        + e.position_embeddings(torch.arange(T)))
        close(ref["hidden_states"][0], x, "bert embeddings")
        for n, layer in enumerate(layers):
            probs = layer.self_attn(x, x, x, need_weights=True, average_attn_weights=False)[1]
            close(ref["attentions"][n], probs, f"bert layer {n} attentions")
            x = run_module(layer, x)
            close(ref["hidden_states"][n + 1], x, f"bert layer {n}")
        close(ref["last_hidden_state"], x, "bert last_hidden_state")
        close(ref["pooler_output"], torch.tanh(F.linear(x[:, 0], bert.bert.pooler.dense.weight,
                                                        bert.bert.pooler.dense.bias)),
              "bert pooler")
        assert len(ref["hidden_states"]) == 3 and len(ref["attentions"]) == 2 and \
            ref["attentions"][0].shape == (B, H, T, T), "BERT's output tuples"

        # (b) HF's additive finfo.min mask vs key_padding_mask: equal on partly padded rows;
        # on a fully padded row key_padding_mask gives NaN, HF's mask uniform attention
        attn = torch.ones(B, T, dtype=torch.long)
        attn[1, 4:] = 0                    # partly padded
        attn[2, :] = 0                     # fully padded
        ext = bert.extended_attention_mask(attn)
        assert ext.dtype == torch.float64 and ext.min().item() == torch.finfo(torch.float64).min \
            and torch.equal(ext[0], torch.zeros(1, 1, T, dtype=torch.float64)), \
            "a float64 model's mask is not 0 / finfo(float64).min"
        ext32 = BertModelRef(cfg).extended_attention_mask(attn)   # a float32 model's
        assert ext32.dtype == torch.float32 and ext32.min().item() == \
            torch.finfo(torch.float32).min, "a float32 model's mask is not finfo(float32).min"
        h = ref["hidden_states"][0]
        hf_out, hf_probs = bert.bert.encoder.layer[0](h, ext)
        kpm_out = run_module(layers[0], h, src_key_padding_mask=attn == 0)
        close(hf_out[:2], kpm_out[:2], "HF mask vs key_padding_mask, partly padded")
        assert torch.equal(hf_probs[1, :, :, 4:], torch.zeros(H, T, T - 4)), "padded key != 0"
        assert kpm_out[2].isnan().all(), "key_padding_mask on a fully padded row is not NaN"
        assert torch.isfinite(hf_out[2]).all(), "HF mask on a fully padded row is not finite"
        close(hf_probs[2], torch.full((H, T, T), 1.0 / T, dtype=torch.float64),
              "HF mask, fully padded row: uniform attention", 1e-15)
        lay = bert.bert.encoder.layer[0]      # uniform attention: ctx = the mean of v over keys
        ctx = lay.attention.self.value(h[2:]).mean(1, keepdim=True).expand(1, T, E)
        hh = lay.attention.output(ctx, h[2:])
        close(hf_out[2:], lay.output(F.gelu(lay.intermediate.dense(hh)), hh),
              "HF mask, fully padded row = the layer with uniform attention")
        with torch.no_grad():
            full = bert(ids, attention_mask=attn, token_type_ids=tt)
        assert torch.isfinite(full["last_hidden_state"]).all(), "BERT on a padded row: not finite"

    # (a') the stacked outputs the goldens hold (stacked()): attentions [L, B, H, T, T] are the
    # per-layer nn.MultiheadAttention weights stacked, hidden_states [L + 1, B, T, E] the
    # embeddings' and each nn.TransformerEncoderLayer's output; no mask, then a partly padded one
    part = torch.ones(B, T, dtype=torch.long)
    part[0, 5:] = 0
    part[2, 1:] = 0                        # one key left
    for am, label in ((None, "no mask"), (part, "partly padded")):
        with torch.no_grad():
            ours = stacked(bert(ids, attention_mask=am, token_type_ids=tt))
        theirs = torch_layers_bert(bert, ids, am, tt)
        assert ours["attentions"].shape == (2, B, H, T, T) and \
            ours["hidden_states"].shape == (3, B, T, E), "stacked shapes"
        for k in ours:
            close(ours[k], theirs[k], f"bert stacked {k}, {label}")

    # (c) save_pretrained: config.json's fields and model.safetensors's keys, and back
    with tempfile.TemporaryDirectory() as d:
        bert.save_pretrained(d)
        with open(os.path.join(d, "config.json"), encoding="utf-8") as f:
            saved_cfg = json.load(f)
        assert saved_cfg == dict(cfg, torch_dtype="float64"), saved_cfg
        tensors, meta = _safetensors_io().load(os.path.join(d, "model.safetensors"))
        assert sorted(tensors) == sorted(bert_keys(2)) and meta == {"format": "pt"}, \
            (sorted(tensors), meta)
    # save_pretrained -> from_pretrained gives identical tensors: every parameter (bits and
    # dtype) and every output, for a float64 and a float32 model, with a partly padded mask
    for model in (bert, copy.deepcopy(bert).float()):
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            again = BertModelRef.from_pretrained(d)
        label = f"save_pretrained round trip {model.dtype}"
        assert again.dtype == model.dtype and again.config == model.config, label
        s0, s1 = model.state_dict(), again.state_dict()
        assert list(s0) == list(s1) and all(
            s0[k].dtype == s1[k].dtype and torch.equal(s0[k], s1[k]) for k in s0), label
        with torch.no_grad():
            o0 = stacked(model(ids, attention_mask=part, token_type_ids=tt))
            o1 = stacked(again(ids, attention_mask=part, token_type_ids=tt))
        assert all(torch.equal(o0[k], o1[k]) for k in o0), label


if __name__ == "__main__":
    crosscheck()
    for dt in (torch.float32, torch.float64):
        outs, kpm = padded_row_paths(dtype=dt)
        for path, o in outs.items():
            r1, r2 = o[1, :, 0].tolist(), o[2, :, 0].tolist()
            print(f"{dt} {path:28s} fully padded row: {r1}  half padded row: {r2}")
    print("ch06_encoder: crosscheck OK")
