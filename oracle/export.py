#!/usr/bin/env python3
"""export.py — writes the golden tensors the C side is checked against.

    export.py --out DIR [--chapter NN] [--threads N|env]

For each chapter: first the ref module's crosscheck() (our literal formulas against PyTorch's own
ops; if they disagree, the goldens would be wrong, so nothing is written), then
DIR/NN-name.safetensors.gz.

Naming (oracle/cases.h): inputs "<case>/<input>"; each output <o> twice, "<case>/<o>" computed in
float32 from the float32 inputs and "<case>/<o>_f64" computed by the same function from those
same inputs converted to float64 (the truth, up to float64 rounding). What each case is goes in
the file's __metadata__: "<case>/op", "<case>/params", "<case>/against" (oracle/goldenlib.py),
beside the file's own keys below (torch_version, seed, seeding, script, format, cases).

Reproducibility: the same torch on the same machine gives byte-identical files, so that a
regenerated golden commits as no change. Hence one thread (--threads 1, the default: make oracle),
explicit generators, and inputs drawn in float64 and rounded to float32: torch's float32 randn
has an AVX2-only vectorized path with its own log/cos, so float32 draws could differ between CPUs;
the float64 path is scalar. Inputs are therefore the same bits on any machine; outputs may round
differently with other BLAS kernels or thread counts, which make oracle-verify allows
(oracle/verify.py) and exercises: it exports with --threads env, leaving OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS and MKL_NUM_THREADS (and torch's default thread count) to the environment.
Each case has its own generator, seeded from the chapter seed and the case name, so adding,
removing or reordering cases leaves every other case's inputs unchanged.
"""

import argparse
import glob
import importlib
import os
import sys


def _threads_from_argv(argv):
    """--threads N|env (default 1), read before torch loads: OpenBLAS and OpenMP read their
    thread counts once, at library load. Returns N, or None for env."""
    val = "1"
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            val = argv[i + 1]
        elif a.startswith("--threads="):
            val = a[len("--threads="):]
    if val == "env":
        return None
    if not val.isdigit() or int(val) < 1:
        sys.exit(f"export.py: --threads takes a positive integer or 'env', not {val!r}")
    return int(val)


THREADS = _threads_from_argv(sys.argv[1:]) if __name__ == "__main__" else 1
if THREADS is not None:
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(THREADS)
sys.dont_write_bytecode = True  # no __pycache__ left in oracle/ or ref/

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "ref"))
sys.path.insert(0, os.path.join(ROOT, "oracle"))

import torch  # noqa: E402

import safetensors_io  # noqa: E402
from goldenlib import SEEDING  # noqa: E402

SCRIPT = "oracle/export.py"
FORMAT = "tfm golden v1"


# ---------------------------------------------------------------- main

def chapters():
    """{"00": module, ...}: every oracle/export_NN.py, so a chapter adds its goldens by adding
    its own file and nothing else."""
    found = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "oracle", "export_[0-9][0-9].py"))):
        num = os.path.basename(path)[len("export_"):-len(".py")]
        found[num] = importlib.import_module("export_" + num)
    return found


CHAPTERS = chapters()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder (created if missing)")
    ap.add_argument("--chapter", choices=sorted(CHAPTERS), help="only this chapter")
    ap.add_argument("--threads", default="1", metavar="N|env",
                    help="N threads (default 1: byte-identical files), or env: leave the "
                         "thread count to OMP_NUM_THREADS etc.")
    args = ap.parse_args(argv)

    if THREADS is not None:
        torch.set_num_threads(THREADS)
    env = ", ".join(f"{v}={os.environ[v]}" for v in
                    ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")
                    if v in os.environ)
    print(f"export.py: torch uses {torch.get_num_threads()} thread(s)"
          f"{' (' + env + ')' if env else ''}")
    chosen = [args.chapter] if args.chapter else sorted(CHAPTERS)

    for num in chosen:
        mod = CHAPTERS[num].REF
        try:
            mod.crosscheck()
        except AssertionError as e:
            sys.exit(f"export.py: {mod.__name__}.crosscheck() FAILED, no goldens written:\n{e}")
        print(f"crosscheck OK  {mod.__name__} (torch {torch.__version__})")

    os.makedirs(args.out, exist_ok=True)
    for num in chosen:
        fname, seed = CHAPTERS[num].NAME, CHAPTERS[num].SEED
        g = CHAPTERS[num].build(seed)
        tensors, cases = g.tensors, g.cases
        meta = {
            "torch_version": torch.__version__,
            "seed": str(seed),
            "seeding": SEEDING,
            "script": SCRIPT,
            "format": FORMAT,
            "cases": ",".join(cases),
        }
        assert not set(meta) & set(g.metadata), sorted(set(meta) & set(g.metadata))
        meta.update(g.metadata)
        path = os.path.join(args.out, fname + ".safetensors.gz")
        safetensors_io.save(path, tensors, meta)
        print(f"wrote {path}: {len(cases)} cases, {len(tensors)} tensors, "
              f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
