#!/usr/bin/env python3
"""bench-summary.py BENCH.json — the book's performance table from a `make bench` report.

One row per op and shape: the fast variant's median time on 1 and 2 threads, and its ratios to
the naive variant, to PyTorch as shipped and tuned, and to the measured ceiling. Written as
GitHub markdown on stdout, so the book quotes numbers that `make bench` produced, never typed.
"""
import json
import sys


def main(path):
    d = json.load(open(path))
    rows = [r for r in d["rows"] if r["variant"] == "fast"]
    by = {}
    for r in rows:
        by.setdefault((r["chapter"], r["key"]), {})[r["threads"]] = r
    ceil = {(c["name"], c["threads"]): c["best"] for c in d["ceilings"]}
    def ceiling(name, label, threads, unit):
        v = ceil.get((name, threads))
        return None if v is None else f"{label} {v:.1f} {unit} on {threads} thread{'s' if threads > 1 else ''}"

    measured = [c for c in (ceiling("fma_peak", "FMA peak", 1, "GFLOP/s"),
                            ceiling("fma_peak", "FMA peak", 2, "GFLOP/s"),
                            ceiling("copy", "copy", 1, "GB/s"),
                            ceiling("copy", "copy", 2, "GB/s")) if c]
    print(f"*{d['cpu']}, {d['compiler']}, OpenBLAS kernels {d['openblas_core']}; {d['date']}. "
          f"Ceilings measured in the same run: {'; '.join(measured)}.*\n")
    print("| ch | op and shape | fast, 1 thread | of ceiling | vs naive | vs PyTorch shipped | "
          "vs PyTorch tuned | fast, 2 threads | vs PyTorch tuned (2T) | 2T vs 1T |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def x(v):
        return "—" if v is None else f"{v:.2f}×"

    for (ch, key), t in sorted(by.items(), key=lambda kv: (kv[0][0], list(by).index(kv[0]))):
        one, two = t.get(1), t.get(2)
        if one is None:
            continue
        cells = [f"{ch:02d}", key,
                 f"{one['median_ms']:.3g} ms", f"{100 * one['ceiling_fraction']:.0f}%",
                 x(one.get("vs_naive")), x(one.get("vs_torch_shipped")),
                 x(one.get("vs_torch_tuned"))]
        if two is not None:
            cells += [f"{two['median_ms']:.3g} ms", x(two.get("vs_torch_tuned")),
                      x(two.get("vs_1_thread"))]
        else:
            cells += ["—", "—", "—"]
        print("| " + " | ".join(cells) + " |")
    for m in d.get("memory", []):
        print(f"\nPeak memory of {m['op']} {m['shape']} ({m['variant']}): "
              f"+{m['peak_rss_growth_bytes'] / 2**20:.1f} MiB during the op; its inputs and output "
              f"take {m['inputs_bytes'] / 2**20:.0f} MiB and the T×T scores alone would take "
              f"{m['quadratic_scores_bytes'] / 2**20:.0f} MiB.")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench-summary.py BENCH.json")
    main(sys.argv[1])
