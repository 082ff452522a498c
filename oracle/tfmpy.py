"""tfmpy — run tfm's ops on PyTorch tensors, checked against tfm's own op table.

    import tfmpy
    out = tfmpy.run("linear", {"x": x, "w": w, "bias": b})                  # {"out": tensor}
    r = tfmpy.run("mha", {"query": q, ...}, variant="naive", num_heads=4)  # parameters as keywords
    b = tfmpy.run("bert", {"input_ids": ids}, model="my-bert/")  # an op that reads a model
    tfmpy.ops()["layernorm"]["params"]       # the op table, as `tfm ops --json` prints it
    print(tfmpy.cli("check", "01"))          # any other tfm command; returns its stdout

`run` is `tfm run OP [--variant V] [--param NAME=VALUE]... [--model DIR] IN OUT` with the files
hidden: it writes the inputs to a safetensors file (oracle/safetensors_io.py), runs build/bin/tfm,
and reads the outputs back. model=DIR is --model DIR, for an op that reads a model (bert): a
Hugging Face directory as save_pretrained writes it (config.json, model.safetensors), which tfm
reads itself. Before it starts tfm it checks the call against the op table, which tfm prints
from the same entries its own `run` enforces (oracle/ops.c), so a misspelt tensor or parameter fails
in Python with a message naming what the op does read:

  - an unknown op, or a variant other than naive/fast;
  - a tensor the op does not read (a parameter passed as a tensor gets its own message: here
    parameters are keywords, never 0-d tensors), a missing required input, a dtype or rank the op
    does not take;
  - a parameter the op does not take, a missing required one, a value of the wrong kind (an int
    parameter takes an int or a bool, a float one a number, a word one one of its words);
  - model= for an op that reads no model, or no model= for one that reads one (bert).

What the table cannot say — shapes that must agree, a parameter out of its range, a token id
outside the vocabulary, a model directory that is missing or does not fit — tfm itself checks;
its one-line message comes back as a RuntimeError.

Floats go on the command line as repr(float(v)), the shortest text that reads back as the same
double, so eps=1e-12 reaches tfm as exactly the double 1e-12 (not a float32 near it).

Files: every temporary file lives in one folder, made on first use and removed when Python exits.
`save` and `workdir` hand out that folder for files of your own (e.g. a tensor to `tfm slice` for
gnuplot). The repository root is $TFM_ROOT, else the folder above this file; tfm is
ROOT/build/bin/tfm, and it runs with TFM_ROOT=ROOT so that `check` finds oracle/golden/ from any
working directory.

Needs only torch and the standard library, and safetensors_io beside this file (which uses the
numpy that torch depends on).
"""

import atexit
import copy
import itertools
import json
import operator
import os
import shutil
import subprocess
import sys
import tempfile

if __name__ == "__main__":
    sys.dont_write_bytecode = True  # the self-test below leaves no __pycache__ in oracle/

import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:  # safetensors_io sits beside this file
    sys.path.insert(0, _HERE)
import safetensors_io  # noqa: E402

ROOT = os.path.abspath(os.environ.get("TFM_ROOT") or os.path.join(_HERE, ".."))
TFM = os.path.join(ROOT, "build", "bin", "tfm")
VARIANTS = ("naive", "fast")

# The dtype names of the op table (and of the safetensors header) for the torch dtypes tfm reads.
_DTYPE_NAMES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.bool: "BOOL"}

_table = None       # name -> op entry, loaded from `tfm ops --json` on first use
_workdir = None     # the temporary folder, made on first use
_serial = itertools.count()  # numbers the files of successive runs


# ---- the program and its table ---------------------------------------------------------------

def _tfm(args, stdin=None):
    """Runs tfm with args (stdin: text for its standard input); returns its stdout, or raises
    RuntimeError with its stderr."""
    if not os.access(TFM, os.X_OK):
        raise FileNotFoundError(f"build tfm first: make (in {ROOT}; {TFM} does not exist)")
    env = dict(os.environ, TFM_ROOT=ROOT)
    r = subprocess.run([TFM, *map(str, args)], capture_output=True, text=True, env=env, input=stdin)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip() or f"tfm exited with status {r.returncode}")
    return r.stdout


def _ops():
    global _table
    if _table is None:
        _table = {op["name"]: op for op in json.loads(_tfm(["ops", "--json"]))}
    return _table


def ops():
    """The op table: a dict op name -> entry, in tfm's order. Each entry is what `tfm ops --json`
    prints: name, chapter, summary, inputs (name, dtypes, min_rank, max_rank, optional, shape),
    params (name, type int/float/word, default, required, min and max or words, help), outputs
    (name, shape), model (True: the op reads a model, run(..., model=DIR)), the naive and fast
    kernels' names, atol and rtol.
    A copy: edit it freely."""
    return copy.deepcopy(_ops())


def cli(*args, stdin=None):
    """Runs any tfm command, e.g. cli("check", "01") or cli("slice", f, "probs", out), and returns
    its stdout; a failure raises RuntimeError with tfm's message. stdin: text it reads, e.g.
    cli("tokenize", "--format", "json", stdin="Hello, world!\n")."""
    return _tfm(args, stdin)


# ---- temporary files --------------------------------------------------------------------------

def workdir():
    """The folder of this process's temporary files (removed at exit)."""
    global _workdir
    if _workdir is None:
        _workdir = tempfile.mkdtemp(prefix="tfmpy-")
        atexit.register(shutil.rmtree, _workdir, ignore_errors=True)
    return _workdir


def save(name, tensors, metadata=None):
    """Writes tensors (dict name -> torch.Tensor) to workdir()/name.safetensors for other tfm
    commands (`inspect`, `slice`); returns the path. Removed at exit like the rest."""
    path = os.path.join(workdir(), name + ".safetensors")
    safetensors_io.save(path, tensors, metadata)
    return path


# ---- checking a call against the table --------------------------------------------------------

def _names(entries):
    return ", ".join(e["name"] for e in entries)


def _check_inputs(spec, inputs):
    op = spec["name"]
    by_name = {s["name"]: s for s in spec["inputs"]}
    params = {p["name"] for p in spec["params"]}
    for name, t in inputs.items():
        if name in params:
            raise ValueError(f"'{name}' is a parameter of op '{op}', not a tensor: pass it as "
                             f"a keyword, tfmpy.run({op!r}, ..., {name}=...)")
        if name not in by_name:
            more = f"; parameters {_names(spec['params'])}, as keywords" if params else ""
            raise ValueError(f"tensor '{name}' is not an input of op '{op}' "
                             f"(it reads {_names(spec['inputs'])}{more})")
        s = by_name[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"op '{op}': input '{name}' is a {type(t).__name__}, "
                            f"not a torch.Tensor")
        dt = _DTYPE_NAMES.get(t.dtype, str(t.dtype))
        if dt not in s["dtypes"]:
            raise ValueError(f"op '{op}': tensor '{name}' is {dt}, expected "
                             f"{' or '.join(s['dtypes'])} ({name} is {s['shape']})")
        if not s["min_rank"] <= t.dim() <= s["max_rank"]:
            ranks = (f"{s['min_rank']}-d" if s["min_rank"] == s["max_rank"]
                     else f"{s['min_rank']}-d to {s['max_rank']}-d")
            raise ValueError(f"op '{op}': tensor '{name}' is {list(t.shape)} ({t.dim()}-d); "
                             f"the op reads it as {s['shape']} ({ranks})")
    missing = [s["name"] for s in spec["inputs"] if not s["optional"] and s["name"] not in inputs]
    if missing:
        raise ValueError(f"op '{op}': tensor{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(m) for m in missing)} "
                         f"{'are' if len(missing) > 1 else 'is'} missing "
                         f"(it reads {_names(spec['inputs'])})")


def _param_text(op, p, value):
    """The --param text of value for parameter p, or ValueError if it is the wrong kind."""
    kind, name = p["type"], p["name"]
    wrong = ValueError(f"op '{op}': parameter {name} takes {'an' if kind == 'int' else 'a'} "
                       f"{kind}; got {value!r}")
    if kind == "word":
        words = p["words"].split("|")
        if not isinstance(value, str):
            raise wrong
        if value not in words:
            raise ValueError(f"op '{op}': parameter {name}={value!r} is not one of {p['words']}")
        return value
    if isinstance(value, (str, bytes)):
        raise wrong
    if kind == "int":
        try:
            return str(operator.index(value))  # int, bool (True -> 1), an integer 0-d tensor
        except TypeError:
            raise wrong from None
    try:
        return repr(float(value))  # shortest round-trip text; float() first: numpy's repr differs
    except (TypeError, ValueError):
        raise wrong from None


def _param_args(spec, params):
    op = spec["name"]
    by_name = {p["name"]: p for p in spec["params"]}
    args = []
    for name, value in params.items():
        if name not in by_name:
            if not by_name:
                raise ValueError(f"op '{op}' has no parameters (got {name})")
            raise ValueError(f"op '{op}' has no parameter '{name}' "
                             f"(it takes {_names(spec['params'])})")
        if value is not None:  # None: not given (tfm uses the default)
            args += ["--param", f"{name}={_param_text(op, by_name[name], value)}"]
    missing = [p["name"] for p in spec["params"]
               if p["required"] and params.get(p["name"]) is None]
    if missing:
        raise ValueError(f"op '{op}': required parameter{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)} {'are' if len(missing) > 1 else 'is'} missing "
                         f"(give {missing[0]}=...)")
    return args


# ---- running an op ----------------------------------------------------------------------------

def _model_args(spec, model):
    op = spec["name"]
    readers = [name for name, e in _ops().items() if e["model"]]
    if model is None:
        if spec["model"]:
            raise ValueError(f"op '{op}' reads a model: give model=DIR (a Hugging Face directory: "
                             f"config.json and model.safetensors, as save_pretrained writes it)")
        return []
    if not spec["model"]:
        raise ValueError(f"op '{op}' reads no model (model=); "
                         f"{'the ops that do: ' + ', '.join(readers) if readers else 'no op does'}")
    return ["--model", os.fspath(model)]


def run(op, inputs, /, variant="fast", model=None, **params):
    """Runs tfm's op on inputs (dict tensor name -> torch.Tensor) with the given parameters
    (keywords; None means not given) and returns its outputs as a dict name -> torch.Tensor.
    variant is "naive" or "fast"; model is the directory (str or path) of an op that reads a
    model (`tfm run --model DIR`), and only of such an op. A call the op table refuses raises
    ValueError (TypeError for a non-tensor input) before tfm runs; a run tfm refuses raises
    RuntimeError with its message."""
    table = _ops()
    if op not in table:
        raise ValueError(f"unknown op {op!r}; tfm's ops are {', '.join(table)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r} (naive or fast)")
    spec = table[op]
    inputs = dict(inputs or {})
    _check_inputs(spec, inputs)
    args = _param_args(spec, params) + _model_args(spec, model)

    stem = os.path.join(workdir(), f"{next(_serial):05d}-{op}")
    src, dst = stem + ".in.safetensors", stem + ".out.safetensors"
    try:
        safetensors_io.save(src, inputs, {"made_by": "oracle/tfmpy.py"})
        _tfm(["run", op, "--variant", variant, *args, src, dst])
        return safetensors_io.load(dst)[0]
    finally:  # a run's files go at once; a notebook may run many
        for f in (src, dst):
            try:
                os.unlink(f)
            except FileNotFoundError:
                pass


# ---- self-test: /usr/bin/python3 oracle/tfmpy.py ------------------------------------------------

if __name__ == "__main__":
    import torch.nn.functional as F

    def refused(exc, fn, *args, **kw):
        """fn(*args, **kw) must raise exc; returns its message."""
        try:
            fn(*args, **kw)
        except exc as e:
            return str(e)
        raise AssertionError(f"{fn.__name__}{args} did not raise {exc.__name__}")

    x = torch.tensor([[1.0, 2.0, 3.0], [-4.0, 0.5, 6.0]])   # [2, 3]
    w = torch.tensor([[0.5, -1.0, 2.0], [3.0, 0.0, -0.25]])  # [N=2, K=3]
    bias = torch.tensor([0.125, -1.0])
    want = F.linear(x, w, bias)
    spec = ops()["linear"]
    for variant in VARIANTS:
        got = run("linear", {"x": x, "w": w, "bias": bias}, variant=variant)
        assert set(got) == {"out"}, got.keys()
        assert torch.allclose(got["out"], want, rtol=spec["rtol"], atol=spec["atol"]), (got, want)
        print(f"linear {variant}: {got['out'].tolist()} == torch {want.tolist()}")

    msg = refused(ValueError, run, "linear", {"x": x, "w": w, "a": bias})
    assert msg == "tensor 'a' is not an input of op 'linear' (it reads x, w, bias)", msg
    print("foreign tensor:", msg)
    msg = refused(ValueError, run, "linear", {"x": x, "w": w}, eps=1e-5)
    assert "has no parameters" in msg, msg
    print("unknown parameter:", msg)
    msg = refused(ValueError, run, "layernorm", {"x": x}, epsilon=1e-5)
    assert "it takes eps, normalized_ndim" in msg, msg
    print("unknown parameter:", msg)
    print("unknown op:", refused(ValueError, run, "lineer", {"x": x}))
    print("missing input:", refused(ValueError, run, "linear", {"x": x}))
    print("parameter as a tensor:", refused(ValueError, run, "layernorm",
                                            {"x": x, "eps": torch.tensor(1e-5)}))
    print("tfm's own check:", refused(RuntimeError, run, "linear", {"x": x, "w": w.t()}))

    # model=: only for an op that reads one (bert), and required there; tfm reads the directory.
    assert ops()["bert"]["model"] and not ops()["linear"]["model"]
    msg = refused(ValueError, run, "linear", {"x": x, "w": w}, model=workdir())
    assert "reads no model" in msg and "bert" in msg, msg
    print("model for a plain op:", msg)
    ids = torch.tensor([[101, 7, 12, 5, 102]])
    msg = refused(ValueError, run, "bert", {"input_ids": ids})
    assert "reads a model: give model=DIR" in msg, msg
    print("no model:", msg)
    print("tfm's own check of the model:", refused(RuntimeError, run, "bert", {"input_ids": ids},
                                                   model=os.path.join(workdir(), "absent")))
    sys.path.insert(0, os.path.join(ROOT, "ref"))
    import ch06_encoder  # noqa: E402
    torch.manual_seed(6)
    bert = ch06_encoder.BertModelRef(ch06_encoder.bert_config(
        vocab_size=120, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=16))
    bert_dir = os.path.join(workdir(), "bert")
    bert.save_pretrained(bert_dir)
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    with torch.no_grad():
        want = bert(ids, attention_mask=mask)["last_hidden_state"]
    spec = ops()["bert"]
    for variant in VARIANTS:
        got = run("bert", {"input_ids": ids, "attention_mask": mask}, variant=variant,
                  model=bert_dir)
        assert set(got) == {"last_hidden_state", "pooler_output"}, got.keys()
        assert torch.allclose(got["last_hidden_state"], want, rtol=spec["rtol"],
                              atol=spec["atol"]), (got, want)
        err = (got["last_hidden_state"] - want).abs().max().item()
        print(f"bert {variant} (model=DIR): last_hidden_state {list(want.shape)}, "
              f"max |tfm - torch| = {err:.1e}")
    # No op takes a word today; the check still runs on an entry shaped like the table's.
    word = {"name": "reduction", "type": "word", "words": "mean|sum|none"}
    assert _param_text("op", word, "sum") == "sum"
    print("word parameter:", refused(ValueError, _param_text, "op", word, "avg"))
    assert _param_text("op", {"name": "eps", "type": "float"}, 1e-12) == "1e-12"
    assert _param_text("op", {"name": "is_causal", "type": "int"}, True) == "1"
    assert "linear" in cli("ops")
    print("tfmpy self-test: OK")
