#!/usr/bin/env python3
"""verify.py DIR_NEW DIR_COMMITTED — do freshly exported goldens match the committed ones?

Every *.safetensors.gz of either folder must exist in both, with the same tensors (names,
dtypes, shapes), the same metadata, and values equal within 1e-6 relative:
|a - b| <= 1e-6 * max(|a|, |b|) + 1e-30, NaN only where the other has NaN, infinities equal,
bools and integers exact. A different torch_version is reported as a warning (values are still
compared: a new torch that moves a golden is worth knowing about).
Prints one line per file and exits 1 if anything differs.
"""

import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import safetensors_io  # noqa: E402

RTOL = 1e-6
TINY = 1e-30
SUFFIX = ".safetensors.gz"
MAX_REPORTED = 5  # mismatching tensors listed per file


def compare_tensor(a, b):
    """None if a and b agree, else a one-line description of the worst disagreement."""
    if a.dtype != b.dtype:
        return f"dtype {a.dtype} vs {b.dtype}"
    if tuple(a.shape) != tuple(b.shape):
        return f"shape {list(a.shape)} vs {list(b.shape)}"
    if a.numel() == 0:
        return None
    if not a.is_floating_point():
        diff = a != b
        if not diff.any():
            return None
        idx = _first(diff)
        return f"{int(diff.sum())} elements differ; first at {idx}: {a[idx].item()} vs {b[idx].item()}"
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    nan_a, nan_b = a64.isnan(), b64.isnan()
    nan_bad = nan_a != nan_b
    same = a64 == b64  # covers equal infinities, where a - b would be NaN
    close = (a64 - b64).abs() <= RTOL * torch.maximum(a64.abs(), b64.abs()) + TINY
    bad = nan_bad | ~(same | close | (nan_a & nan_b))
    if not bad.any():
        return None
    idx = _first(bad)
    rel = ((a64 - b64).abs() / torch.maximum(a64.abs(), b64.abs()).clamp_min(TINY))
    rel = rel[bad & ~nan_bad]
    worst = f", worst relative difference {rel.max().item():.3g}" if rel.numel() else ""
    return (f"{int(bad.sum())} of {a.numel()} elements differ; first at {idx}: "
            f"{a64[idx].item()!r} vs {b64[idx].item()!r}{worst}")


def _first(mask):
    return tuple(int(i) for i in mask.nonzero()[0]) if mask.dim() else ()


def compare_file(name, path_new, path_old):
    """Returns (ok, lines): lines to print for this file."""
    label = name[:-len(SUFFIX)]
    try:
        new, meta_new = safetensors_io.load(path_new)
        old, meta_old = safetensors_io.load(path_old)
    except (OSError, ValueError) as e:
        return False, [f"FAIL {label}: {e}"]
    problems, warnings = [], []

    for key in sorted(set(meta_new) | set(meta_old)):
        vn, vo = meta_new.get(key), meta_old.get(key)
        if vn == vo:
            continue
        if key == "torch_version":
            warnings.append(f"WARN {label}: torch_version {vn!r} (new) vs {vo!r} (committed); "
                            "comparing values anyway")
        else:
            problems.append(f"metadata '{key}': {vn!r} (new) vs {vo!r} (committed)")

    for t in sorted(set(new) - set(old)):
        problems.append(f"tensor '{t}' only in the new export")
    for t in sorted(set(old) - set(new)):
        problems.append(f"tensor '{t}' only in the committed goldens")
    shared = sorted(set(new) & set(old))
    for t in shared:
        why = compare_tensor(new[t], old[t])
        if why:
            problems.append(f"tensor '{t}': {why}")

    if not problems:
        return True, warnings + [f"OK {label}: {len(shared)} tensors"]
    lines = warnings + [f"FAIL {label}: {len(problems)} problem(s)"]
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
        file_ok, lines = compare_file(f, os.path.join(dir_new, f), os.path.join(dir_old, f))
        for line in lines:
            print(line)
        ok = ok and file_ok
    if not ok:
        print("verify.py: the exported goldens DIFFER from the committed ones")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
