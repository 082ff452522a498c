"""make_corpus.py — writes the fuzzers' seed corpus and dictionaries from the committed goldens.

    $(tools/find-torch-python) tests/fuzz/make_corpus.py

Every chapter's golden file (oracle/golden/*.safetensors.gz) is a list of cases; the small ones
are exactly the inputs `tfm run` takes, so they are the seeds, and a new chapter gets seeds by
rerunning this script once its golden is committed:

  corpus/fuzz_run/     per small case: its inputs under their own names and its parameters as
                       0-d tensors (`tfm run OP IN OUT`),
                       and for one case per chapter the whole case with its "<case>/" prefix
                       (`tfm run --case NAME`); plus hand-made edge cases (zero dimensions,
                       NaN and inf values, wrong dtypes).
  corpus/fuzz_golden/  per chapter two whole cases with outputs, truth and metadata, plain and
                       gzip-compressed; plus the format's corners (empty header, scalars, every
                       dtype, a zero-size tensor).
  safetensors.dict     the JSON keys, dtypes and every tensor name the goldens use, so that the
                       fuzzer's mutations speak the header's language.

Files found by fuzzing (regressions) are named regress-*; this script never touches them.
Each seed stays under 20 KB. Output is deterministic: rerunning rewrites identical files.
"""
import glob
import gzip
import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "oracle"))

import torch  # noqa: E402
import safetensors_io as st  # noqa: E402

MAX_SEED = 20 * 1024      # bytes per committed seed
SMALL_CASE = 4 * 1024     # a case whose inputs fit in this becomes a fuzz_run seed


def write(path, raw):
    assert len(raw) <= MAX_SEED, f"{path}: {len(raw)} bytes"
    with open(path, "wb") as f:
        f.write(raw)


def gz(raw):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(raw)
    return buf.getvalue()


def split_cases(tensors):
    """{case: {name: tensor}} in file order."""
    cases = {}
    for full, t in tensors.items():
        case, _, name = full.partition("/")
        cases.setdefault(case, {})[name] = t
    return cases


def inputs_of(case):
    """The case without its outputs: every "<o>_f64" marks "<o>" and itself as outputs."""
    outs = {n[:-4] for n in case if n.endswith("_f64")}
    return {n: t for n, t in case.items() if n not in outs and not n.endswith("_f64")}


def params_of(meta, case):
    """The case's parameters ("<case>/params" = "eps=1e-12 ...") as the 0-d tensors `tfm run`
    also takes: ints as I64, floats as F64. Words (reduction=sum) have no tensor form: left out,
    the op's default applies."""
    out = {}
    for item in meta.get(f"{case}/params", "").split():
        name, _, value = item.partition("=")
        try:
            out[name] = torch.tensor(int(value), dtype=torch.int64)
        except ValueError:
            try:
                out[name] = torch.tensor(float(value), dtype=torch.float64)
            except ValueError:
                pass
    return out


def nbytes(ts):
    return sum(t.numel() * t.element_size() for t in ts.values())


def edge_seeds():
    """Inputs that no golden holds: the corners of shapes and values."""
    f32 = torch.float32
    nan, inf = float("nan"), float("inf")
    g = torch.Generator().manual_seed(7)
    r = lambda *s: torch.randn(*s, generator=g, dtype=f32)  # noqa: E731
    return {
        "edge-matmul-k0": {"a": torch.zeros(3, 0), "b": torch.zeros(0, 4)},
        "edge-matmul-nan-inf": {"a": torch.tensor([[1.0, nan], [inf, 2.0]]),
                                "b": torch.tensor([[1.0, 1.0], [1.0, 2.0]])},
        "edge-linear-empty-rows": {"x": torch.zeros(0, 5), "w": r(3, 5), "bias": r(3)},
        "edge-linear-f64": {"x": r(2, 3).double(), "w": r(4, 3)},
        "edge-attention-tk0": {"q": r(1, 1, 2, 4), "k": torch.zeros(1, 1, 0, 4),
                               "v": torch.zeros(1, 1, 0, 4)},
        "edge-attention-d0": {"q": torch.zeros(1, 2, 3, 0), "k": torch.zeros(1, 2, 5, 0),
                              "v": torch.zeros(1, 2, 5, 0)},
        "edge-attention-nan": {"q": torch.tensor([[[[nan, 1.0], [0.0, 1.0]]]]),
                               "k": r(1, 1, 2, 2), "v": r(1, 1, 2, 2),
                               "attn_mask": torch.tensor([[0.0, -inf], [0.0, 0.0]])},
        "edge-attention-masked-row": {"q": r(1, 1, 2, 2), "k": r(1, 1, 2, 2), "v": r(1, 1, 2, 2),
                                      "attn_mask": torch.tensor([[-inf, -inf], [0.0, 1e4]])},
        "edge-attention-causal-bad": {"q": r(1, 1, 2, 2), "k": r(1, 1, 2, 2), "v": r(1, 1, 2, 2),
                                      "is_causal": torch.tensor(2, dtype=torch.int64)},
        "edge-mlm-mask": {"input_ids": torch.tensor([[101, 5, 6, 7, 8, 9, 10, 102], [101, 11, 12, 13, 102, 0, 0, 0]]),
                          "mlm_probability": torch.tensor(0.15), "special_ids": torch.tensor([0, 101, 102]),
                          "mask_token_id": torch.tensor(103), "vocab_size": torch.tensor(200),
                          "seed": torch.tensor(7)},
        "edge-attention-kpm": {"q": r(2, 1, 3, 2), "k": r(2, 1, 4, 2), "v": r(2, 1, 4, 3),
                               "key_padding_mask": torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]],
                                                                dtype=torch.bool)},
    }


def format_seeds():
    return {
        "format-empty-header": ({}, {}),
        "format-metadata-only": ({}, {"k": "v", "": ""}),
        "format-every-dtype": ({"f": torch.tensor([1.5, -2.0]), "d": torch.tensor([[3.25]], dtype=torch.float64),
                                "i": torch.tensor(-7, dtype=torch.int64),
                                "b": torch.tensor([True, False, True])}, {"seed": "0"}),
        "format-zero-size": ({"c/z": torch.zeros(2, 0, 3), "c/s": torch.tensor(1.0)}, {}),
    }


def main():
    run_dir = os.path.join(HERE, "corpus", "fuzz_run")
    golden_dir = os.path.join(HERE, "corpus", "fuzz_golden")
    os.makedirs(run_dir, exist_ok=True)
    os.makedirs(golden_dir, exist_ok=True)
    for d in (run_dir, golden_dir):   # regenerate ours, keep regression files
        for p in glob.glob(os.path.join(d, "*")):
            if not os.path.basename(p).startswith("regress-"):
                os.unlink(p)

    names = set()
    for path in sorted(glob.glob(os.path.join(ROOT, "oracle", "golden", "*.safetensors.gz"))):
        chapter = os.path.basename(path).split(".")[0]
        tensors, meta = st.load(path)
        cases = split_cases(tensors)
        for case in cases.values():
            names.update(case)
        small = [(c, ts) for c, ts in cases.items()
                 if nbytes(inputs_of(ts)) <= SMALL_CASE and meta.get(f"{c}/op") != "pin"]
        for c, ts in small:
            seed = {**inputs_of(ts), **params_of(meta, c)}
            write(os.path.join(run_dir, f"{chapter}-{c}.safetensors"), st.serialize(seed))
        # The smallest case whole, prefixed as --case reads it; outputs ride along unread.
        by_size = sorted(small, key=lambda ct: nbytes(ct[1]))
        if by_size:
            c, ts = by_size[0]
            write(os.path.join(run_dir, f"{chapter}-case-{c}.safetensors"),
                  st.serialize({f"{c}/{n}": t for n, t in ts.items()}))
        # fuzz_golden: the two smallest whole cases with the file's metadata, plain and gzip.
        for c, ts in by_size[:2]:
            raw = st.serialize({f"{c}/{n}": t for n, t in ts.items()}, meta)
            write(os.path.join(golden_dir, f"{chapter}-{c}.safetensors"), raw)
            write(os.path.join(golden_dir, f"{chapter}-{c}.safetensors.gz"), gz(raw))

    for name, ts in edge_seeds().items():
        names.update(ts)
        write(os.path.join(run_dir, name + ".safetensors"), st.serialize(ts))
    for name, (ts, meta) in format_seeds().items():
        raw = st.serialize(ts, meta)
        write(os.path.join(golden_dir, name + ".safetensors"), raw)
        write(os.path.join(golden_dir, name + ".safetensors.gz"), gz(raw))

    # libFuzzer dictionaries: one quoted token per line. Header tokens carry their JSON quotes.
    raw_tokens = ['"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', '"F32"', '"F64"',
                  '"I64"', '"BOOL"', '"F16"', "[0,0]", "[]", "{}"]
    raw_tokens += sorted(f'"{n}"' for n in names if n)
    quote = lambda tok: '"' + tok.replace("\\", "\\\\").replace('"', '\\"') + '"'  # noqa: E731
    with open(os.path.join(HERE, "safetensors.dict"), "w") as f:
        f.write("# generated by tests/fuzz/make_corpus.py: header keys, dtypes and the goldens' tensor names\n")
        for tok in raw_tokens:
            f.write(quote(tok) + "\n")
    tokens = raw_tokens
    print(f"corpus: {len(os.listdir(run_dir))} fuzz_run seeds, "
          f"{len(os.listdir(golden_dir))} fuzz_golden seeds, {len(tokens)} dictionary tokens")


if __name__ == "__main__":
    main()
