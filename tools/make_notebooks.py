"""Writes notebooks/*.ipynb from the cell sources below, with no outputs (as they are committed).

Run with the torch Python: `$(tools/find-torch-python) tools/make_notebooks.py`. Edit the
cells here, not the .ipynb, so the notebooks stay reviewable as plain Python.
"""
import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SETUP = '''\
import os, subprocess, sys, tempfile
import torch
from IPython.display import Image, display

ROOT = os.environ.get("TFM_ROOT") or os.path.abspath("..")
sys.path.insert(0, os.path.join(ROOT, "oracle"))
import safetensors_io as st

TFM = os.path.join(ROOT, "build", "bin", "tfm")
assert os.path.exists(TFM), "build tfm first: make (in the repository root)"
WORK = tempfile.mkdtemp(prefix="tfm-nb-")

def tfm(*args):
    """Runs build/bin/tfm and raises with its message if it fails."""
    r = subprocess.run([TFM, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return r.stdout
'''

ATTENTION = [
    new_markdown_cell('''\
# Chapter 01 — scaled dot-product attention

$$\\mathrm{Attention}(Q,K,V) = \\mathrm{softmax}\\!\\left(\\frac{QK^\\top}{\\sqrt{d_k}} + M\\right)V$$

This notebook makes Q, K and V with PyTorch, runs **tfm's C code** on them (`tfm run attention`),
checks the result against PyTorch, and draws the attention probabilities with gnuplot.
Change the parameters in the next cell and run all cells again (book.md, chapter 01).'''),
    new_code_cell('''\
# Parameters: change these and re-run.
seq_len = 12        # tokens (Tq = Tk)
d_k = 16            # query/key width
causal = True       # mask keys after the query (decoder-style)
variant = "fast"    # "naive" or "fast"
seed = 0'''),
    new_code_cell(SETUP),
    new_code_cell('''\
g = torch.Generator().manual_seed(seed)
q, k, v = (torch.randn(1, 1, seq_len, d_k, generator=g) for _ in range(3))
inputs = {"q": q, "k": k, "v": v}
if causal:
    inputs["is_causal"] = torch.tensor(1, dtype=torch.int64)
st.save(os.path.join(WORK, "in.safetensors"), inputs, {"made_by": "notebooks/01-attention"})
tfm("run", "attention", "--variant", variant,
    os.path.join(WORK, "in.safetensors"), os.path.join(WORK, "out.safetensors"))
ours, _ = st.load(os.path.join(WORK, "out.safetensors"))

# PyTorch, written the way the formula reads.
scores = q @ k.transpose(-2, -1) / d_k ** 0.5
if causal:
    scores = scores.masked_fill(torch.ones(seq_len, seq_len).triu(1).bool(), float("-inf"))
probs = scores.softmax(-1)
out = probs @ v
for name, want in [("out", out), ("probs", probs)]:
    err = (ours[name] - want).abs().max().item()
    print(f"{name}: max |tfm - torch| = {err:.2e}", "PASS" if err < 1e-5 else "FAIL")
    assert err < 1e-5'''),
    new_code_cell('''\
tfm("slice", os.path.join(WORK, "out.safetensors"), "probs", "--at", "0,0",
    os.path.join(WORK, "probs.dat"))
png = os.path.join(WORK, "heatmap.png")
subprocess.run(["gnuplot", "-e",
                f"datafile='{WORK}/probs.dat'; outfile='{png}'; "
                f"title='tfm {variant}: {seq_len} tokens, d_k={d_k}, causal={causal}'",
                os.path.join(ROOT, "plots", "attention_heatmap.gp")], check=True)
display(Image(filename=png))'''),
    new_code_cell('''\
# The oracle table for this chapter (every golden case, both variants).
print(tfm("check", "01"))'''),
]

NOTEBOOKS = {"01-attention.ipynb": ATTENTION}

if __name__ == "__main__":
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
        path = os.path.join(ROOT, "notebooks", name)
        with open(path, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        print("wrote", os.path.relpath(path, ROOT))
