"""Chapter 03 in PyTorch: the sinusoidal positional encoding and BERT's learned absolute
embeddings, as chapters/03-positional/positional.h states them.

    PE[p, 2i] = sin(p w_i),  PE[p, 2i+1] = cos(p w_i),  w_i = 10000^(-2i/E)
    out[b, t] = (word_emb[input_ids] + type_emb[token_type_ids]) + pos_emb[position_ids]

sinusoidal() is the construction most PyTorch code copies (the one in the PyTorch tutorials and
in annotated Transformer write-ups): frequencies through exp(-ln(10000) 2i / E), the angle as a
product in the tensor's dtype. Run in float32 it is the float32 golden, in float64 the truth.
There is no torch built-in for it; crosscheck() ties it to the formula evaluated with Python's
math module in double, element by element.

embeddings() goes through nn.Embedding modules, summed in BertEmbeddings' order; crosscheck()
ties it to plain tensor indexing.
"""

import math

import torch
import torch.nn as nn


def sinusoidal(positions, d_model, dtype=torch.float32):
    """positions [T] (integers) -> PE [T, d_model] in dtype, the usual PyTorch construction.

    Odd d_model: the usual code fails there (d_model//2 cos columns, ceil(d_model/2) angles);
    like positional.h, the last column, an even index with no partner, gets its sin only."""
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=dtype) * (-math.log(10000.0) / d_model))
    position = positions.to(dtype).unsqueeze(1)           # [T, 1]
    angle = position * div_term                            # [T, ceil(E/2)], rounded in dtype
    pe = torch.zeros(len(positions), d_model, dtype=dtype)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe


def sinusoidal_formula(positions, d_model):
    """The same table straight from the formula, one math.sin/cos per element, in double."""
    rows = []
    for p in positions.tolist():
        row = []
        for j in range(d_model):
            angle = p / 10000.0 ** (2 * (j // 2) / d_model)
            row.append(math.sin(angle) if j % 2 == 0 else math.cos(angle))
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(len(positions), d_model)


def article_000_3_3(N, d_model, dtype=torch.float32):
    """Erratum 000 §3.3, as literally as it runs. The article builds an N x d_model table for a
    sequence of length N with Pos[i, 2i] = sin(i / 10000^(2i/N)), Pos[i, 2i+1] = cos(...),
    i = 1..N. One letter does two jobs there; we read the row subscript and the numerator as the
    position p = 1..N (the article's range) and the i of the column 2i and of the exponent as
    the pair index, which is the only reading that fills a whole table. What is left is the
    article's own choice: the exponent divides by N, the sequence length, where the paper divides
    by d_model. Returns [N, d_model]; row r holds position r + 1."""
    i = torch.arange(1, N + 1, dtype=dtype).unsqueeze(1)   # [N, 1]: the row's i, a position
    two_i = torch.arange(0, d_model, 2, dtype=dtype)       # [ceil(E/2)]: the column's 2i
    angle = i / torch.pow(torch.tensor(10000.0, dtype=dtype), two_i / N)
    pe = torch.zeros(N, d_model, dtype=dtype)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe


def embeddings(input_ids, word_emb, pos_emb, type_emb=None, position_ids=None,
               token_type_ids=None):
    """input_ids [B, T] -> [B, T, E] through nn.Embedding modules, summed as BertEmbeddings
    does: (word + token type) + position. BERT's LayerNorm and dropout after the sum are not
    part of this op (LayerNorm is chapter 04's)."""
    B, T = input_ids.shape
    word = nn.Embedding.from_pretrained(word_emb, freeze=True)
    pos = nn.Embedding.from_pretrained(pos_emb, freeze=True)
    if position_ids is None:
        position_ids = torch.arange(T).expand(B, T)
    x = word(input_ids)
    if type_emb is not None:
        if token_type_ids is None:
            token_type_ids = torch.zeros(B, T, dtype=torch.long)
        x = x + nn.Embedding.from_pretrained(type_emb, freeze=True)(token_type_ids)
    x = x + pos(position_ids)
    return x


def crosscheck():
    """Raises AssertionError if sinusoidal() or embeddings() disagree with the formula / with
    plain indexing, or if the article's table is not the paper's when N happens to be d_model."""
    for d in (1, 2, 7, 16, 33):
        pos = torch.tensor([0, 1, 2, 5, 63, 64, 511, 4097, 8192])
        ours = sinusoidal(pos, d, torch.float64)
        torch.testing.assert_close(ours, sinusoidal_formula(pos, d), rtol=0, atol=1e-11,
                                   msg=lambda s: f"sinusoidal crosscheck d={d}: {s}")
    # PE(p) . PE(p + k) = sum_i cos(k w_i) for even d: the relative-position property.
    pe = sinusoidal(torch.arange(0, 200), 64, torch.float64)
    dots = (pe[:-10] * pe[10:]).sum(1)
    torch.testing.assert_close(dots, dots[:1].expand_as(dots), rtol=0, atol=1e-10)

    # The article's exponent 2i/N is the paper's 2i/d_model exactly when N == d_model.
    art = article_000_3_3(12, 12, torch.float64)
    torch.testing.assert_close(art, sinusoidal(torch.arange(1, 13), 12, torch.float64), rtol=0,
                               atol=1e-13)

    g = torch.Generator().manual_seed(303)
    B, T, E, V, P, G = 3, 7, 5, 11, 9, 2
    word, posw, typ = (torch.randn(n, E, generator=g, dtype=torch.float64) for n in (V, P, G))
    ids = torch.randint(0, V, (B, T), generator=g)
    tt = torch.randint(0, G, (B, T), generator=g)
    pid = torch.randint(0, P, (B, T), generator=g)
    torch.testing.assert_close(embeddings(ids, word, posw, typ, pid, tt),
                               (word[ids] + typ[tt]) + posw[pid], rtol=0, atol=0)
    torch.testing.assert_close(embeddings(ids, word, posw, typ),
                               (word[ids] + typ[0]) + posw[torch.arange(T)], rtol=0, atol=0)
    torch.testing.assert_close(embeddings(ids, word, posw), word[ids] + posw[:T], rtol=0, atol=0)
    try:
        embeddings(torch.tensor([[V]]), word, posw)
    except IndexError:
        pass
    else:
        raise AssertionError("nn.Embedding accepted an id past the table")


if __name__ == "__main__":
    crosscheck()
    print("ch03_positional: crosscheck OK")
