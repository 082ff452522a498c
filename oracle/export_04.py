"""Chapter 04 goldens: LayerNorm (torch.nn.LayerNorm, with mean and rstd from
torch.native_layer_norm), post-LN Add & Norm, a pre-LN block with a Linear sublayer, the numerical
edge cases, the erratum case for article 000 §3.4, and LayerNorm and Add & Norm over several
trailing dimensions (nn.LayerNorm(normalized_shape): the "nd_*" and "add_norm_nd*" cases).

Imported by oracle/export.py, which finds every oracle/export_NN.py: NAME is the golden file's
stem, SEED the chapter seed, REF the ref/ module whose crosscheck() must pass first, and
build(seed) returns a goldenlib.Golden (tensors, case names, case metadata).

Two facts about PyTorch's float32 kernel (1.13, CPU) shape the edge cases; build() asserts both,
so a PyTorch that behaves otherwise stops the export instead of writing different goldens:
  - it computes out as x * rstd + (-mean * rstd), contracted to one FMA. When mean * rstd is not
    exact in float32, a zero-variance row comes out as beta + gamma * (a rounding residual of up
    to half a float32 spacing of mean * rstd), not beta. Constant and width-1 rows therefore use
    powers of two (mean * rstd exact); tests/test_04_layernorm.c shows tfm returns exactly beta
    for any constant.
  - on rows with |mean| / std = 1e4 its float32 result is 1e-3 away from the truth (the same
    fused form, plus float32 moments). tfm's are 1e-7 away. The case "offset_1e4" therefore
    holds the rows shifted by their first element (exact in float32; LayerNorm does not change
    under a shift), held to PyTorch's float32 as usual, and the case "offset_1e4_raw" the raw
    rows with PyTorch's float32 and float64 results, against=truth: tfm is held to the float64
    truth there, not to PyTorch's float32.
"""
import torch

import ch04_layernorm as ref
from goldenlib import Case, Golden, emit, to_f64

NAME = "04-layernorm"
SEED = 4
REF = ref


def _affine(c, E):
    """nn.LayerNorm's weight and bias after training: near 1 and near 0."""
    return 1.0 + 0.1 * c.randn(E), 0.1 * c.randn(E)


def _pow2(c, *shape):
    """Random signed powers of two (and some zeros): mean * rstd is then exact in float32."""
    e = torch.floor(c.rand(*shape) * 6.0) - 3.0
    sign = torch.where(c.rand(*shape) < 0.5, -1.0, 1.0)
    v = sign * torch.pow(2.0, e)
    return torch.where(c.rand(*shape) < 0.2, 0.0, v).to(torch.float32)


def _ln_case(out, name, x, affine_params, eps, op="layernorm", against=None):
    """A layernorm case (op "pin": PyTorch's values kept for a test, not compared by tfm)."""
    gamma, beta = affine_params if affine_params else (None, None)
    o32, m32, r32 = ref.torch_layernorm(x, gamma, beta, eps)
    o64, m64, r64 = ref.torch_layernorm(to_f64(x), to_f64(gamma), to_f64(beta), eps)
    emit(out, name, {"x": x, "gamma": gamma, "beta": beta},
         {"out": o32, "mean": m32, "rstd": r32}, {"out": o64, "mean": m64, "rstd": r64},
         op=op, params={"eps": eps}, against=against)
    return o32, m32, r32


def _ln_nd_case(out, name, x, S, affine_params, eps, normalized_ndim=None):
    """A layernorm case over the trailing dimensions S: gamma and beta of shape S, or none and
    normalized_ndim = len(S) as a parameter (tfm's default without gamma is 1)."""
    gamma, beta = affine_params if affine_params else (None, None)
    o32, m32, r32 = ref.torch_layernorm(x, gamma, beta, eps, S)
    o64, m64, r64 = ref.torch_layernorm(to_f64(x), to_f64(gamma), to_f64(beta), eps, S)
    emit(out, name, {"x": x, "gamma": gamma, "beta": beta},
         {"out": o32, "mean": m32, "rstd": r32}, {"out": o64, "mean": m64, "rstd": r64},
         op="layernorm", params={"eps": eps, "normalized_ndim": normalized_ndim})
    return o32, m32, r32


def _nd_cases(out, seed):
    """LayerNorm over several trailing dimensions (nn.LayerNorm(normalized_shape)): the
    statistics run over all of S at once (not over its last dimension), gamma and beta are
    applied elementwise over S, and mean and rstd have x's leading dimensions."""
    def affine_nd(c, *S):
        return 1.0 + 0.1 * c.randn(*S), 0.1 * c.randn(*S)

    c = Case(seed, "nd_affine_4x5")        # gamma [4, 5] on x [2, 3, 4, 5]: 6 rows of 20
    _ln_nd_case(out, c.name, c.randn(2, 3, 4, 5) * 2.0 + c.randn(1, 1, 4, 1), (4, 5),
                affine_nd(c, 4, 5), 1e-5)
    c = Case(seed, "nd_control_2x3")       # the control: gamma [3] on x [2, 3], the usual form
    _ln_case(out, c.name, c.randn(2, 3), _affine(c, 3), 1e-5)
    c = Case(seed, "nd_plain_2")           # no gamma: S from normalized_ndim = 2, mean [3]
    _ln_nd_case(out, c.name, c.randn(3, 4, 6) + c.randn(3, 4, 1), (4, 6), None, 1e-5,
                normalized_ndim=2)
    c = Case(seed, "nd_plain_3")           # normalized_ndim = 3 of a 4-D x: mean [2]
    _ln_nd_case(out, c.name, c.randn(2, 3, 4, 5), (3, 4, 5), None, 1e-5, normalized_ndim=3)
    c = Case(seed, "nd_odd_3")             # three odd normalized dimensions, another eps
    _ln_nd_case(out, c.name, c.randn(3, 5, 7, 11), (5, 7, 11), affine_nd(c, 5, 7, 11), 1e-6)
    c = Case(seed, "nd_whole")             # S is all of x: one row, mean and rstd 0-d
    _ln_nd_case(out, c.name, c.randn(3, 4), (3, 4), affine_nd(c, 3, 4), 1e-5)
    c = Case(seed, "nd_vector")            # x [E], gamma [E]: the 1-D form, mean 0-d
    _ln_nd_case(out, c.name, c.randn(7), (7,), _affine(c, 7), 1e-5)
    c = Case(seed, "nd_heads_768")         # BERT's 768 as [12 heads, 64], eps 1e-12
    _ln_nd_case(out, c.name, c.randn(2, 8, 12, 64), (12, 64), affine_nd(c, 12, 64), 1e-12)
    # Constant over S (each [4, 5] block one power of two): out = beta exactly, rstd 1/sqrt(eps).
    c = Case(seed, "nd_constant")
    blocks = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float32)
    prm = affine_nd(c, 4, 5)
    o32, _, _ = _ln_nd_case(out, c.name, blocks[:, None, None].expand(3, 4, 5).contiguous(),
                            (4, 5), prm, 1e-5)
    assert torch.equal(o32, prm[1].expand(3, 4, 5)), "constant blocks: out != beta"

    # Add & Norm over S = [4, 5]: LN(x + s), mean of x + s
    for name, shape, S, affine, nd in (("add_norm_nd", (2, 3, 4, 5), (4, 5), True, None),
                                       ("add_norm_nd_plain", (2, 3, 4, 5), (3, 4, 5), False, 3)):
        c = Case(seed, name)
        x, s = c.randn(*shape), 0.5 * c.randn(*shape)
        gamma, beta = affine_nd(c, *S) if affine else (None, None)
        o32, m32, r32 = ref.torch_layernorm(x + s, gamma, beta, 1e-5, S)
        o64, m64, r64 = ref.torch_layernorm(to_f64(x) + to_f64(s), to_f64(gamma), to_f64(beta),
                                            1e-5, S)
        emit(out, name, {"x": x, "s": s, "gamma": gamma, "beta": beta},
             {"out": o32, "mean": m32, "rstd": r32}, {"out": o64, "mean": m64, "rstd": r64},
             op="add-norm", params={"eps": 1e-5, "normalized_ndim": nd})


def build(seed):
    out = Golden()

    # ---- shapes: one value, width 1, odd, BERT, GPT-2 width, many rows
    c = Case(seed, "single")
    _ln_case(out, "single", _pow2(c, 1, 1), _affine(c, 1), 1e-5)
    c = Case(seed, "width1")
    _ln_case(out, "width1", _pow2(c, 6, 1), _affine(c, 1), 1e-5)
    c = Case(seed, "tiny_3d")
    _ln_case(out, "tiny_3d", c.randn(2, 3, 5), _affine(c, 5), 1e-5)
    c = Case(seed, "odd")
    _ln_case(out, "odd", c.randn(7, 37), _affine(c, 37), 1e-5)
    c = Case(seed, "bert_768")   # BERT-base: E = 768, eps = 1e-12
    _ln_case(out, "bert_768", c.randn(2, 8, 768), _affine(c, 768), 1e-12)
    c = Case(seed, "plain_1024")  # no affine parameters
    _ln_case(out, "plain_1024", c.randn(8, 1024), None, 1e-5)
    c = Case(seed, "many_rows")
    _ln_case(out, "many_rows", 3.0 * c.randn(1000, 24) + 1.0, _affine(c, 24), 1e-5)

    # ---- a residual stream: per-row offset and scale, two biased channels (the figure's input)
    c = Case(seed, "residual")
    T, E = 32, 768
    x = c.randn(T, E) * torch.exp(0.7 * c.randn(T, 1)) + 2.0 * c.randn(T, 1)
    x[:, 7] += 4.0
    x[:, 300] -= 3.0
    _ln_case(out, "residual", x.to(torch.float32), None, 1e-5)

    # ---- zero variance: out = beta, rstd = 1/sqrt(eps)
    c = Case(seed, "constant")
    rows = torch.tensor([1.0, -2.0, 0.5, 0.0, 8.0], dtype=torch.float32)
    o32, _, r32 = _ln_case(out, "constant", rows[:, None].expand(5, 768).contiguous(),
                           _affine(c, 768), 1e-5)
    assert torch.equal(o32, out["constant/beta"].expand(5, 768)), "constant rows: out != beta"
    c = Case(seed, "constant_bert")
    rows = torch.tensor([4.0, -0.25], dtype=torch.float32)
    _ln_case(out, "constant_bert", rows[:, None].expand(2, 768).contiguous(),
             _affine(c, 768), 1e-12)

    # ---- large common offset: the rows shifted (against PyTorch), the raw rows (against the
    # truth, see above)
    name = "offset_1e4"
    c = Case(seed, name)
    raw = (1e4 + c.randn(4, 768).to(torch.float64)).to(torch.float32)
    raw[3] = 1e4   # and one constant row at the offset
    shifted = raw - raw[:, :1]
    assert torch.equal(shifted + raw[:, :1], raw), "the shift must be exact"
    _ln_case(out, name, shifted, None, 1e-5)
    o32, _, _ = _ln_case(out, name + "_raw", raw, None, 1e-5, against="truth")
    err = (o32.double() - out[f"{name}_raw/out_f64"]).abs().max().item()
    assert err > 1e-4, f"PyTorch float32 on offset rows is now accurate ({err:.2e}): revisit"
    assert o32[3].abs().max().item() > 0.01, "PyTorch float32 on a constant 1e4 row is now 0"

    # ---- magnitudes
    # Squares ~1e36 < FLT_MAX: still fine in float32. The offset of 2 keeps the mean away from 0:
    # a mean that cancels to 1e-3 of the values is known only to u * max|x|, in every precision
    # (that is the mean's conditioning, not the kernel's), and rtol would not describe it.
    c = Case(seed, "huge_1e18")
    _ln_case(out, "huge_1e18", 1e18 * (c.randn(4, 64) + 2.0), _affine(c, 64), 1e-5)
    c = Case(seed, "tiny_1e-18")  # var ~1e-36 << eps: rstd = 1/sqrt(eps), nothing normalized
    _ln_case(out, "tiny_1e-18", 1e-18 * c.randn(4, 768), None, 1e-5)

    # ---- overflow: var > FLT_MAX. PyTorch float32 (and tfm): rstd = 0, out = beta.
    name = "overflow_2e19"
    c = Case(seed, name)
    prm = _affine(c, 768)
    o32, _, r32 = _ln_case(out, name, 2e19 * c.randn(3, 768), prm, 1e-5)
    assert torch.equal(r32, torch.zeros(3)) and torch.equal(o32, prm[1].expand(3, 768)), \
        "PyTorch float32 no longer returns rstd = 0, out = beta when var overflows"
    # At 1e18 PyTorch's float32 sum of squares already overflows (E * var > FLT_MAX: rstd = 0,
    # out = 0) while var itself fits: tfm returns the truth, so "overflow_1e18" is held to it.
    # At 5e19 PyTorch returns NaN where tfm returns rstd = 0, out = beta as above: pinned only.
    # (Drawn from overflow_2e19's generator, after its rows, as before the split.)
    o18, _, r18 = _ln_case(out, "overflow_1e18", 1e18 * c.randn(2, 768), None, 1e-5,
                           against="truth")
    assert torch.equal(r18, torch.zeros(2)) and torch.equal(o18, torch.zeros(2, 768))
    o5, _, r5 = _ln_case(out, "overflow_5e19_pin", 5e19 * c.randn(2, 768), None, 1e-5, op="pin")
    assert o5.isnan().all() and r5.isnan().all()

    # ---- Add & Norm: post-LN (BERT) and pre-LN (GPT-2)
    for name, shape, eps in [("post_ln_bert", (2, 6, 768), 1e-12), ("post_ln_odd", (3, 33), 1e-5)]:
        c = Case(seed, name)
        x, s = c.randn(*shape), 0.5 * c.randn(*shape)
        gamma, beta = _affine(c, shape[-1])
        o32, m32, r32 = ref.add_norm_post(x, s, gamma, beta, eps)
        o64, m64, r64 = ref.add_norm_post(to_f64(x), to_f64(s), to_f64(gamma), to_f64(beta), eps)
        emit(out, name, {"x": x, "s": s, "gamma": gamma, "beta": beta},
             {"out": o32, "mean": m32, "rstd": r32}, {"out": o64, "mean": m64, "rstd": r64},
             op="add-norm", params={"eps": eps})
    for name, (N, E) in [("pre_ln", (5, 64)), ("pre_ln_odd", (4, 19))]:
        c = Case(seed, name)
        x = c.randn(N, E)
        gamma, beta = _affine(c, E)
        w, b = c.randn(E, E) / E ** 0.5, 0.1 * c.randn(E)
        r32 = ref.pre_norm_linear(x, w, b, gamma, beta, 1e-5)
        r64 = ref.pre_norm_linear(*(to_f64(t) for t in (x, w, b, gamma, beta)), 1e-5)
        keys = ("out", "norm", "mean", "rstd")
        emit(out, name, {"x": x, "w": w, "bias": b, "gamma": gamma, "beta": beta},
             dict(zip(keys, r32)), dict(zip(keys, r64)), op="pre-norm", params={"eps": 1e-5})

    # ---- erratum 000 §3.4: the article's gamma * ReLU(x + beta) + mu (the pin
    # "errata_000_3_4_article": mu and PyTorch's value) next to nn.LayerNorm
    name = "errata_000_3_4"
    c = Case(seed, name)
    x = (3.0 * torch.exp(0.5 * c.randn(6, 1)) * c.randn(6, 32) + 2.0 * c.randn(6, 1))
    gamma, beta = _affine(c, 32)
    mu = c.randn(32)
    _ln_case(out, name, x.to(torch.float32), (gamma, beta), 1e-5)
    emit(out, name + "_article", {"mu": mu},
         {"out_article": ref.article_000_3_4(x, gamma, beta, mu)},
         {"out_article": ref.article_000_3_4(*(to_f64(t) for t in (x, gamma, beta, mu)))},
         op="pin")

    # ---- over several trailing dimensions (nn.LayerNorm(normalized_shape))
    _nd_cases(out, seed)
    return out
