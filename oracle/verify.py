#!/usr/bin/env python3
"""verify.py DIR_NEW DIR_COMMITTED — does a fresh export compute the same functions as the
committed goldens?

Regeneration must prove that PyTorch still computes the same function, not that it rounds the
same way: another machine's OpenBLAS kernels (OPENBLAS_CORETYPE), another thread count or other
ATen vector kernels sum in another order, and a float32 result near zero can move by 1e-3 of
itself. So only what no summation order can change is compared exactly. Every *.safetensors.gz of
either folder must exist in both, and in each file:

  1. metadata: equal, key by key (the file's keys and every "<case>/op", "<case>/params",
     "<case>/against"). A different torch_version is a warning, and values are still compared:
     a new torch that moves a golden is worth knowing about.
  2. tensors: the same names, dtypes and shapes.
  3. inputs, i.e. every tensor that is neither an output "<o>" (one with a "<o>_f64" twin) nor
     an "_f64" tensor: bit for bit equal (integers and bools exact, NaN payloads included).
     They are seeded draws made in float64 and rounded, the same bits whatever BLAS kernels and
     threads run (a few are float32 expressions of the draws, e.g. with torch.exp, whose bits
     follow ATen's vector kernels: AVX2, on every machine torch 1.13 runs them on by default).
  4. float64 outputs "*_f64": |new - committed| <= R64 * |committed| + A64 * max|committed|
     (max over the finite entries of the case's float64 outputs, not the tensor's own: a tensor
     that is the rounding noise of an exact zero, such as a key bias's gradient, since softmax
     ignores a constant added to a row's scores, has no scale of its own), NaN in the same
     places, infinities equal.
  5. float32 outputs "<o>": held to their float64 truth "<o>_f64" of the new export,
     |o - o_f64| <= atol + rtol * |o_f64| with the tolerance of the golden file's chapter
     (TOL_NN_ATOL, TOL_NN_RTOL for NN-name.safetensors.gz, read from oracle/tolerances.h), and
     NaN/inf exactly where the truth has them. That is the bar tfm itself is held to, so a
     PyTorch that still computes the function within it passes whatever it rounds.
     Where PyTorch's float32 is known to be far from the truth — a case with against=truth or
     op=pin, or an output whose committed float32 already fails rule 5 against the committed
     truth (each such output is listed in a NOTE line) — the new float32 is held instead to the
     committed one: |o_new - o_committed| <= atol + rtol * |o_committed|, NaN/inf in the same
     places. The band may move by one tolerance, not more.

Prints one line per file with the worst offender of each rule (as a fraction of its bound), the
problems under a failing file, and exits 1 if any rule failed.
"""

import os
import re
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import safetensors_io  # noqa: E402

SUFFIX = ".safetensors.gz"
TOLERANCES_H = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tolerances.h")
MAX_REPORTED = 5  # problems listed per file

# Rule 4. Measured (torch 1.13, OpenBLAS 0.3.21, a 2-core AMD EPYC with AVX-512) between the
# goldens as written (OpenBLAS's Haswell kernels, one thread) and exports with its Cooperlake
# (AVX-512), Sandybridge and Prescott kernels, one or two OpenBLAS threads, and ATen's scalar
# kernels (ATEN_CPU_CAPABILITY=default) instead of its AVX2 ones, the float64 outputs whose
# inputs were the same bits differ by at most, as a fraction of max|b| over the tensor:
#   9.7e-16  BLAS kernels and threads alone (linear_bert/out_f64: 768-term dot products, 4 ulps
#            of the largest entry; elementwise up to 6.5e-12 relative, on entries near zero);
#   9.1e-13  pe_long/out_f64 with ATen's scalar kernels (at position 8192 a frequency one ulp
#            off moves the angle by up to 8192 * 2.2e-16 = 1.8e-12);
#   1.0e-11  offset_1e4_raw/out_f64 with ATen's scalar sums: rows whose mean is 1e4 standard
#            deviations, so that reordering the float64 mean (u * 1e4 * sqrt(768) = 6e-11 of the
#            output's scale at most) shows in out = (x - mean) * rstd.
# A64 = 1e-10 is 10 times the worst of these and covers entries near zero; R64 = 1e-9 covers the
# rest (the largest entries moved by 1e-15 relative). Both are far below any change in what is
# computed, which moves a float64 result by float32 rounding (6e-8 relative) or more: a different
# eps in a layer norm (1e-5 vs 1e-6) moves rstd by 5e-6, and a float32 bit of an input by 6e-8.
R64 = 1e-9
A64 = 1e-10


def tolerances(path=TOLERANCES_H):
    """{"00": (atol, rtol), ...} from the #define TOL_NN_ATOL / TOL_NN_RTOL lines."""
    found = {}
    with open(path, encoding="utf-8") as f:
        for m in re.finditer(r"^\s*#define\s+TOL_(\d\d)_(ATOL|RTOL)\s+([-+0-9.eE]+)\s*(?:/[*/].*)?$",
                             f.read(), re.MULTILINE):
            found.setdefault(m.group(1), {})[m.group(2)] = float(m.group(3))
    return {nn: (d["ATOL"], d["RTOL"]) for nn, d in found.items() if {"ATOL", "RTOL"} <= set(d)}


def _first(mask):
    return tuple(int(i) for i in mask.nonzero()[0]) if mask.dim() else ()


def bits_equal(a, b):
    """None if a and b hold the same bytes, else a description of the first difference."""
    if a.numel() == 0:
        return None
    ua, ub = a.contiguous().numpy().tobytes(), b.contiguous().numpy().tobytes()
    if ua == ub:
        return None
    if a.is_floating_point():
        ia = a.contiguous().view(torch.int64 if a.dtype == torch.float64 else torch.int32)
        ib = b.contiguous().view(ia.dtype)
        diff = ia != ib
    else:
        diff = a != b
    idx = _first(diff)
    return (f"{int(diff.sum())} of {a.numel()} elements differ; first at {list(idx)}: "
            f"{a[idx].item()!r} vs {b[idx].item()!r}")


def finite_max(t):
    """max |t| over t's finite entries (0 if none)."""
    t = t.to(torch.float64)
    fin = torch.isfinite(t)
    return t[fin].abs().max().item() if fin.any() else 0.0


def within(got, want, atol, rtol_of_want, scale_atol=None, top=None):
    """Elementwise |got - want| <= atol + rtol * |want| (float64), NaN exactly where want has NaN,
    +-inf exactly where want has it. scale_atol: atol = scale_atol * top instead, top defaulting
    to max|want finite|. Returns (bad mask, err/bound on the entries where both are finite, 0
    elsewhere)."""
    g, w = got.to(torch.float64), want.to(torch.float64)
    fin_w = torch.isfinite(w)
    if scale_atol is not None:
        atol = scale_atol * (finite_max(w) if top is None else top)
    bound = atol + rtol_of_want * w.abs()
    err = (g - w).abs()
    both_fin = fin_w & torch.isfinite(g)
    nonfinite_bad = ~both_fin & ~((g == w) | (g.isnan() & w.isnan()))
    ratio = torch.zeros_like(w)
    ratio[both_fin] = torch.where(err[both_fin] == 0, torch.zeros_like(err[both_fin]),
                                  err[both_fin] / bound[both_fin])
    bad = nonfinite_bad | (both_fin & (err > bound))
    return bad, ratio


class Worst:
    """The worst offender of one rule over a file: the largest err/bound and where."""

    def __init__(self, label):
        self.label, self.ratio, self.where, self.n = label, 0.0, None, 0

    def add(self, name, ratio):
        self.n += 1
        if ratio.numel() == 0:
            return
        r = ratio.max().item()
        if self.where is None or r > self.ratio:
            self.ratio = r
            self.where = f"{name}{list(_first(ratio == ratio.max()))}" if r > 0 else name

    def text(self):
        if not self.n:
            return f"{self.label}: none"
        if self.ratio == 0:
            return f"{self.label}: {self.n}, all equal"
        return f"{self.label}: {self.n}, worst {self.ratio:.2g} of bound ({self.where})"


def describe(bad, got, want, name, what):
    idx = _first(bad)
    return (f"tensor '{name}': {int(bad.sum())} of {bad.numel()} elements outside {what}; first at "
            f"{list(idx)}: {got[idx].item()!r} vs {want[idx].item()!r}")


def compare_file(name, path_new, path_old, tols):
    """Returns (ok, lines): lines to print for this file."""
    label = name[:-len(SUFFIX)]
    try:
        new, meta_new = safetensors_io.load(path_new)
        old, meta_old = safetensors_io.load(path_old)
    except (OSError, ValueError) as e:
        return False, [f"FAIL {label}: {e}"]
    problems, warnings, notes = [], [], []

    # 1. metadata
    for key in sorted(set(meta_new) | set(meta_old)):
        vn, vo = meta_new.get(key), meta_old.get(key)
        if vn == vo:
            continue
        if key == "torch_version":
            warnings.append(f"WARN {label}: torch_version {vn!r} (new) vs {vo!r} (committed); "
                            "comparing values anyway")
        else:
            problems.append(f"metadata '{key}': {vn!r} (new) vs {vo!r} (committed)")

    # 2. names, dtypes, shapes
    for t in sorted(set(new) - set(old)):
        problems.append(f"tensor '{t}' only in the new export")
    for t in sorted(set(old) - set(new)):
        problems.append(f"tensor '{t}' only in the committed goldens")
    shared = sorted(set(new) & set(old))
    comparable = []
    for t in shared:
        a, b = new[t], old[t]
        if a.dtype != b.dtype:
            problems.append(f"tensor '{t}': dtype {a.dtype} (new) vs {b.dtype} (committed)")
        elif tuple(a.shape) != tuple(b.shape):
            problems.append(f"tensor '{t}': shape {list(a.shape)} (new) vs {list(b.shape)} "
                            "(committed)")
        else:
            comparable.append(t)

    tol = tols.get(label[:2])
    if tol is None:
        problems.append(f"no TOL_{label[:2]}_ATOL / TOL_{label[:2]}_RTOL in {TOLERANCES_H}")
        tol = (0.0, 0.0)
    atol, rtol = tol
    w_in, w64 = Worst("inputs bit-equal"), Worst("f64 vs committed")
    w32, wband = Worst("f32 vs truth"), Worst("f32 vs committed")
    n_in_bad = 0
    banded = []
    case_top = {}                                                # rule 4's scale, per case
    for t in comparable:
        if t.endswith("_f64"):
            case = t.split("/", 1)[0]
            case_top[case] = max(case_top.get(case, 0.0), finite_max(old[t]))
    for t in comparable:
        case = t.split("/", 1)[0]
        a, b = new[t], old[t]
        if t.endswith("_f64"):                                   # 4. float64 outputs
            bad, ratio = within(a, b, 0.0, R64, scale_atol=A64, top=case_top[case])
            w64.add(t, ratio)
            if bad.any():
                problems.append(describe(bad, a, b, t, f"{R64:g}*|b| + {A64:g}*max|case's b|"))
        elif t + "_f64" in old:                                  # 5. float32 outputs
            far = (meta_old.get(f"{case}/against") == "truth"
                   or meta_old.get(f"{case}/op") == "pin")
            if not far:
                was_bad, _ = within(b, old[t + "_f64"], atol, rtol)
                if was_bad.any():
                    far = True
                    banded.append(t)
            if far:
                bad, ratio = within(a, b, atol, rtol)
                wband.add(t, ratio)
                if bad.any():
                    problems.append(describe(bad, a, b, t, f"{atol:g} + {rtol:g}*|committed|"))
            elif t + "_f64" in new and new[t + "_f64"].shape == a.shape:
                truth = new[t + "_f64"]
                bad, ratio = within(a, truth, atol, rtol)
                w32.add(t, ratio)
                if bad.any():
                    problems.append(describe(bad, a, truth, t,
                                             f"{atol:g} + {rtol:g}*|truth| of its new _f64"))
        else:                                                    # 3. inputs
            w_in.n += 1
            why = bits_equal(a, b)
            if why:
                n_in_bad += 1
                problems.append(f"input '{t}': {why}")
    if banded:
        notes.append(f"NOTE {label}: {len(banded)} float32 output(s) already outside "
                     f"{atol:g} + {rtol:g}*|truth| when committed, held to the committed value: "
                     + ", ".join(banded))

    summary = (f"{len(shared)} tensors; inputs {w_in.n - n_in_bad}/{w_in.n} bit-equal; "
               f"{w64.text()}; {w32.text()}; {wband.text()}")
    if not problems:
        return True, warnings + notes + [f"OK {label}: {summary}"]
    lines = warnings + notes + [f"FAIL {label}: {len(problems)} problem(s); {summary}"]
    lines += ["    " + p for p in problems[:MAX_REPORTED]]
    if len(problems) > MAX_REPORTED:
        lines.append(f"    ... and {len(problems) - MAX_REPORTED} more")
    return False, lines


def main(argv):
    if len(argv) != 3:
        sys.exit(f"usage: {argv[0]} DIR_NEW DIR_COMMITTED")
    dir_new, dir_old = argv[1], argv[2]
    for d in (dir_new, dir_old):
        if not os.path.isdir(d):
            sys.exit(f"verify.py: {d}: not a folder")
    tols = tolerances()

    def goldens(d):
        return {f for f in os.listdir(d) if f.endswith(SUFFIX)}

    in_new, in_old = goldens(dir_new), goldens(dir_old)
    if not in_new and not in_old:
        sys.exit(f"verify.py: no *{SUFFIX} in {dir_new} or {dir_old}")
    ok = True
    for f in sorted(in_new | in_old):
        label = f[:-len(SUFFIX)]
        if f not in in_old:
            print(f"FAIL {label}: exported but not committed (missing from {dir_old})")
            ok = False
            continue
        if f not in in_new:
            print(f"FAIL {label}: committed but not exported (missing from {dir_new})")
            ok = False
            continue
        file_ok, lines = compare_file(f, os.path.join(dir_new, f), os.path.join(dir_old, f), tols)
        for line in lines:
            print(line)
        ok = ok and file_ok
    if not ok:
        print("verify.py: the exported goldens DIFFER from the committed ones")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
