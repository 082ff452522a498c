"""torch.nn.functional's building blocks in PyTorch, as chapters/00-tensors/functional.h and
chapters/05-pretraining/pretraining.h state them, one line per term of the formula:

    softmax(x)_c     = exp(x_c - m) / sum_c' exp(x_c' - m),     m = max_c x_c
    log_softmax(x)_c = (x_c - m) - log sum_c' exp(x_c' - m)
    gelu(x)          = x/2 (1 + erf(x / sqrt 2))                          approximate='none'
                     = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))      approximate='tanh'
    cross_entropy    = nll_loss(log_softmax(input, dim=1)) with weights, ignore_index, label
                       smoothing and probability targets (cross_entropy() below)

These are the only copies of these formulas in ref/: the chapters import them (ch05_pretraining's
MLM cross_entropy(logits, labels) is the one chapter-specific form, built on log_softmax here).

crosscheck_functions() ties softmax, log_softmax and gelu (both approximations) to
torch.nn.functional's own; crosscheck_cross_entropy() ties cross_entropy to F.cross_entropy in
every combination of weight, ignore_index, reduction, label smoothing and target kind, on inputs
[C], [N, C] and [N, C, d1, d2], edge cases included. oracle/export.py runs them before writing
goldens, through the chapters that own them: ch00_matmul.crosscheck() calls the first,
ch05_pretraining.crosscheck() the second. crosscheck() runs both.
"""

import math

import torch
import torch.nn.functional as F


def softmax(x, dim):
    """exp(x - m) / sum exp(x - m) along dim; an empty dim gives an empty result."""
    if x.shape[dim] == 0:
        return x.clone()
    m = x.amax(dim, keepdim=True)          # the row max: -inf for a row of -inf, then NaN
    e = torch.exp(x - m)
    return e / e.sum(dim, keepdim=True)


def log_softmax(x, dim):
    """(x - m) - log sum exp(x - m) along dim."""
    if x.shape[dim] == 0:
        return x.clone()
    m = x.amax(dim, keepdim=True)
    return (x - m) - torch.log(torch.exp(x - m).sum(dim, keepdim=True))


def gelu(x, approximate="none"):
    """x Phi(x) in its erf form, or PyTorch's tanh approximation."""
    if approximate == "none":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    u = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1.0 + torch.tanh(u))


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """F.cross_entropy's semantics written out. input [C], [N, C] or [N, C, d1, ...], classes on
    dim 1 (dim 0 for [C]); target class indices [N, d1, ...] (int64) or probabilities shaped like
    input (floating). Indices: l = (1 - eps) * (-w[y] log p_y) + eps/C * (-sum_c w[c] log p_c),
    0 where y == ignore_index; mean divides by sum w[y] over the elements not ignored.
    Probabilities: l = -sum_c w[c] y'_c log p_c with y' = y (1 - eps) + eps/C; mean divides by
    the number of elements N*d1*..., not by the weights."""
    eps = label_smoothing
    no_batch = input.dim() == 1
    if no_batch:                                            # [C]: one element, a 0-d result
        input, target = input[None], target[None]
    C = input.shape[1]
    logp = log_softmax(input, 1)                            # [N, C, ...]
    w = weight if weight is not None else torch.ones(C, dtype=input.dtype)
    w_c = w.reshape(1, C, *([1] * (input.dim() - 2)))      # w[c], broadcast along dim 1
    if target.dtype.is_floating_point:
        y = target * (1 - eps) + eps / C if eps > 0 else target
        loss = -(w_c * y * logp).sum(1)
        count = loss.numel()
        divisor = float("nan") if input.numel() == 0 else count
    else:
        keep = target != ignore_index
        y = torch.where(keep, target, torch.zeros_like(target))   # any valid class at ignored
        nll = -w[y] * logp.gather(1, y.unsqueeze(1)).squeeze(1)
        loss = nll
        if eps > 0:   # PyTorch's smoothing path only then: without it a -inf logit away from
            smooth = -(w_c * logp).sum(1)                   # y is no term at all, not 0 * inf
            loss = (1 - eps) * nll + (eps / C) * smooth
        zero = torch.zeros((), dtype=loss.dtype)
        loss = torch.where(keep, loss, zero)                # 0, even where it was NaN
        divisor = torch.where(keep, w[y], zero).sum()       # not w[y] * keep: w[0] NaN or inf
                                                            # at an ignored position is skipped
    if reduction == "none":
        return loss.squeeze(0) if no_batch else loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / divisor


_DTYPES = ((torch.float64, 1e-12), (torch.float32, 2e-6))   # float64; float32 to its rounding


def _randn(g, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=g, dtype=dtype)


def _close(a, b, label, tol):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol, equal_nan=True,
                               msg=lambda m: f"functional crosscheck '{label}': {m}")


def crosscheck_functions():
    """Raises AssertionError if softmax, log_softmax or gelu disagree with F.softmax,
    F.log_softmax or F.gelu (float64 to 1e-12, float32 to float32 rounding), NaN and inf in the
    same places. Run by ch00_matmul.crosscheck()."""
    g = torch.Generator().manual_seed(5005)
    inf, nan = math.inf, math.nan
    for dtype, tol in _DTYPES:
        # softmax / log_softmax along the last, a middle and the first dimension.
        x = _randn(g, 3, 37, 5, dtype=dtype) * 4
        x[0, :, 0] = -inf                                   # a row of -inf: NaN
        x[1, 3, 1] = inf                                    # +inf in a row: NaN
        x[1, 5, 2] = nan                                    # NaN in a row: NaN
        x[2, 7, 3] = -inf                                   # one -inf: probability 0
        x[2, :, 4] = x[2, :, 4] * 2500                      # logits of ~1e4
        for dim in (0, 1, 2):
            _close(softmax(x, dim), F.softmax(x, dim), f"softmax dim {dim} {dtype}", tol)
            _close(log_softmax(x, dim), F.log_softmax(x, dim), f"log_softmax dim {dim} {dtype}",
                   tol)
        for shape in ((3, 0), (0, 5), (3, 0, 2)):           # empty
            e = torch.zeros(shape, dtype=dtype)
            _close(softmax(e, 1), F.softmax(e, 1), f"softmax {shape}", tol)
            _close(log_softmax(e, 1), F.log_softmax(e, 1), f"log_softmax {shape}", tol)

        # GELU: a grid, the special values. PyTorch's float32 'none' is oneDNN's, whose erf is a
        # polynomial accurate to 1.5e-7 (error up to 3.8e-7 here): float32 within 1e-6.
        v = torch.cat([torch.linspace(-12, 12, 4801, dtype=dtype),
                       torch.tensor([inf, -inf, nan, 0.0, -0.0, 1e30, -1e30], dtype=dtype)])
        for approx in ("none", "tanh"):
            _close(gelu(v, approx), F.gelu(v, approximate=approx), f"gelu {approx} {dtype}",
                   tol if dtype == torch.float64 else 1e-6)


def crosscheck_cross_entropy():
    """Raises AssertionError if cross_entropy disagrees with F.cross_entropy (float64 to 1e-12,
    float32 to float32 rounding), NaN and inf in the same places. Run by
    ch05_pretraining.crosscheck()."""
    g = torch.Generator().manual_seed(5005)
    inf, nan = math.inf, math.nan
    for dtype, tol in _DTYPES:
        # cross_entropy, every combination.
        C = 7
        weight = torch.rand(C, generator=g, dtype=dtype) + 0.1
        shapes = {"[C]": (C,), "[N,C]": (6, C), "[N,C,d1,d2]": (3, C, 4, 2)}
        for sname, shape in shapes.items():
            logits = _randn(g, *shape, dtype=dtype) * 3
            tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
            idx = torch.randint(0, C, tshape, generator=g)
            if idx.dim() > 0:
                idx.view(-1)[::3] = -100                    # ignore_index hit
                idx.view(-1)[1] = 2
            idx_2 = torch.where(idx == -100, torch.ones_like(idx), idx)   # ignore_index = 2
            probs = torch.softmax(_randn(g, *shape, dtype=dtype), dim=1 if len(shape) > 1 else 0)
            for w in (None, weight):
                for red in ("mean", "sum", "none"):
                    for eps in (0.0, 0.1):
                        for tgt, ii in ((idx, -100), (idx_2, 2), (probs, -100)):
                            kw = dict(weight=w, ignore_index=ii, reduction=red,
                                      label_smoothing=eps)
                            ours = cross_entropy(logits, tgt, **kw)
                            theirs = F.cross_entropy(logits, tgt, **kw)
                            label = (f"cross_entropy {sname} w={w is not None} {red} eps={eps} "
                                     f"{'probs' if tgt.dtype.is_floating_point else 'ii=%d' % ii}"
                                     f" {dtype}")
                            assert ours.shape == theirs.shape, label
                            _close(ours, theirs, label, tol if dtype == torch.float64 else 1e-5)

        # Edge cases: all ignored (NaN mean, 0 sum), zero weights (NaN), -inf logits, empty,
        # a non-finite weight only ignored positions would read.
        z = _randn(g, 4, 5, dtype=dtype)
        z[1, 2] = -inf                                      # at row 1's label
        z[0, 3] = -inf                                      # elsewhere in row 0
        ign = torch.full((4,), -100)
        lab = torch.tensor([0, 2, 1, 4])
        onehot = F.one_hot(lab, 5).to(dtype)
        zero_at_labels = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0], dtype=dtype)
        part_ignored = torch.tensor([1, -100, 4, -100])     # ignored read as class 0 ...
        w0_nan = torch.tensor([nan, 1.0, 2.0, 3.0, 4.0], dtype=dtype)   # ... whose weight PyTorch
        w0_inf = torch.tensor([inf, 1.0, 2.0, 3.0, 4.0], dtype=dtype)   # never reads: finite
        cases = [(z, ign, {}), (z, ign, dict(reduction="sum")), (z, ign, dict(label_smoothing=.1)),
                 (z, torch.tensor([0, 2, 4, 0]), dict(weight=zero_at_labels)),   # 0/0: NaN
                 (z, torch.tensor([0, 2, 4, 0]), dict(weight=zero_at_labels, label_smoothing=.1)),
                 (z, lab, {}), (z, lab, dict(label_smoothing=0.1)),       # -inf at label: inf
                 (z, onehot, {}), (z, onehot, dict(label_smoothing=0.1)),  # 0 * -inf: NaN
                 (z[0], torch.tensor(-100), {}), (z[2], torch.tensor(3), {}),  # input [C]
                 (torch.zeros(0, 5, dtype=dtype), torch.zeros(0, dtype=torch.long), {}),
                 (torch.zeros(0, 5, dtype=dtype), torch.zeros(0, 5, dtype=dtype), {}),
                 (torch.zeros(3, 0, dtype=dtype), torch.zeros(3, 0, dtype=dtype), {}),
                 (z, part_ignored, dict(weight=w0_nan)), (z, part_ignored, dict(weight=w0_inf))]
        for k, (inp, tgt, kw) in enumerate(cases):
            for red in ("mean", "sum", "none"):
                kw2 = dict(kw, reduction=kw.get("reduction", red))
                _close(cross_entropy(inp, tgt, **kw2), F.cross_entropy(inp, tgt, **kw2),
                       f"cross_entropy edge {k} {kw2} {dtype}", tol)


def crosscheck():
    """crosscheck_functions() and crosscheck_cross_entropy()."""
    crosscheck_functions()
    crosscheck_cross_entropy()


if __name__ == "__main__":
    crosscheck()
    print("functional: crosscheck OK")
