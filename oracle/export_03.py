"""Chapter 03 goldens: the sinusoidal table from position 0 to 8192, BERT's embedding sum, and
the erratum of article 000 §3.3.

Imported by oracle/export.py, which finds every oracle/export_NN.py: NAME is the golden file's
stem, SEED the chapter seed, REF the ref/ module whose crosscheck() must pass first, and
build(seed) returns a goldenlib.Golden (tensors, case names, case metadata).

Which PE rows are stored. A full 8193 x 768 table is 25 MB in float32 alone, so the goldens keep
rows that show how the error behaves along the positions, at BERT-base's width E = 768:
pe_short holds positions 0..63, pe_long every 128th position from 128 to 8192 (64 rows), and
pe_tail the consecutive positions 8000..8192 at E = 64, where PyTorch's float32 error is
largest and the fast variant's recurrence runs through several anchors.
"""
import math

import torch

import ch03_positional
from goldenlib import Case, Golden, emit, to_f64

NAME = "03-positional"
SEED = 3
REF = ch03_positional


def _i64(x):
    return torch.tensor(x, dtype=torch.int64)


# name, positions, d_model
PE_CASES = [
    ("pe_single", [0], 1),                          # the smallest table: sin(0) = 0
    ("pe_width1", list(range(5)), 1),               # E = 1: one unpaired sin column
    ("pe_d2", list(range(10)), 2),                  # one frequency, w_0 = 1
    ("pe_odd", list(range(13)), 7),                 # odd E: the last column is a lone sin
    ("pe_unordered", [5, 3, 3, 100, 0, 8191, 1, 2, 3, 4, 6, 8, 10, 12], 12),  # any order
    ("pe_figure", list(range(128)), 64),            # the figures' table (plots/03-positional.mk)
    ("pe_short", list(range(64)), 768),
    ("pe_long", list(range(128, 8193, 128)), 768),
    ("pe_tail", list(range(8000, 8193)), 64),
]

# name, B, T, E, V, P, G (0: no type table), position_ids, token_type_ids
#   position_ids: None (0..T-1), or "offset" (7..T+6: what a cache of 7 earlier tokens gives)
#   token_type_ids: None (all 0 when there is a table), "segments" (0 then 1, BERT's pair
#   input), or "random"
EMB_CASES = [
    ("emb_single", 1, 1, 1, 1, 1, 1, None, None),
    ("emb_tiny", 1, 3, 4, 10, 8, 2, None, None),
    ("emb_segments", 2, 9, 12, 20, 16, 2, None, "segments"),
    ("emb_positions", 3, 5, 12, 20, 16, 3, "offset", "random"),
    ("emb_no_type", 2, 6, 10, 15, 8, 0, None, None),   # GPT-2's word + position
    ("emb_bert", 2, 16, 768, 40, 24, 2, None, "segments"),
]


def _pe_case(out, name, positions, d_model):
    pos = positions if isinstance(positions, torch.Tensor) else _i64(positions)
    pe32 = ch03_positional.sinusoidal(pos, d_model, torch.float32)
    pe64 = ch03_positional.sinusoidal(pos, d_model, torch.float64)
    emit(out, name, {"positions": pos}, {"out": pe32}, {"out": pe64}, op="pe",
         params={"d_model": d_model})


def _emb_inputs(c, B, T, E, V, P, G, position_ids, token_type_ids):
    inputs = {"input_ids": (c.rand(B, T) * V).long().clamp_(max=V - 1),
              "word_emb": c.randn(V, E), "pos_emb": c.randn(P, E),
              "type_emb": c.randn(G, E) if G else None}
    if position_ids == "offset":
        inputs["position_ids"] = torch.arange(7, 7 + T).expand(B, T).contiguous()
    if token_type_ids == "segments":
        tt = torch.zeros(B, T, dtype=torch.int64)
        tt[:, T // 2:] = 1
        inputs["token_type_ids"] = tt
    elif token_type_ids == "random":
        inputs["token_type_ids"] = (c.rand(B, T) * G).long().clamp_(max=G - 1)
    return inputs


def _emb_case(out, name, inputs):
    def run(dtype_fn):
        return ch03_positional.embeddings(
            inputs["input_ids"], dtype_fn(inputs["word_emb"]), dtype_fn(inputs["pos_emb"]),
            dtype_fn(inputs.get("type_emb")), inputs.get("position_ids"),
            inputs.get("token_type_ids"))
    emit(out, name, inputs, {"out": run(lambda t: t)}, {"out": run(to_f64)}, op="embeddings")


def _extreme_inputs():
    """Tables holding +-inf, NaN and values whose sum overflows: PyTorch's IEEE answers
    (inf + -inf = NaN, 3e38 + 3e38 = inf, NaN spreads) are what tfm must give too."""
    inf, nan = math.inf, math.nan
    word = torch.tensor([[inf, 1.0, 3e38, -0.0], [nan, -2.0, -3e38, 5.0]], dtype=torch.float32)
    typ = torch.tensor([[0.0, 0.5, 0.0, 0.0]], dtype=torch.float32)
    pos = torch.tensor([[-inf, 1.0, 3e38, 0.0], [1.0, inf, -3e38, -5.0],
                        [2.0, 2.0, 2.0, 2.0]], dtype=torch.float32)
    ids = torch.tensor([[0, 1, 0]], dtype=torch.int64)
    return {"input_ids": ids, "word_emb": word, "pos_emb": pos, "type_emb": typ}


def build(seed):
    out = Golden()
    for name, positions, d_model in PE_CASES:
        _pe_case(out, name, positions, d_model)

    for name, B, T, E, V, P, G, pid, tt in EMB_CASES:
        c = Case(seed, name)
        _emb_case(out, name, _emb_inputs(c, B, T, E, V, P, G, pid, tt))
    _emb_case(out, "emb_extreme", _extreme_inputs())

    # Erratum 000 §3.3: the article's table for N = 10 and N = 20 (rows = positions 1..N), in the
    # pin "<name>_article", next to the true encoding of the same positions ("<name>/out", which
    # tfm computes).
    for N in (10, 20):
        name = f"errata_000_3_3_N{N}"
        d_model = 16
        pos = torch.arange(1, N + 1)
        _pe_case(out, name, pos, d_model)
        emit(out, name + "_article", {},
             {"out_article": ch03_positional.article_000_3_3(N, d_model, torch.float32)},
             {"out_article": ch03_positional.article_000_3_3(N, d_model, torch.float64)},
             op="pin", params={"d_model": d_model})
    return out
