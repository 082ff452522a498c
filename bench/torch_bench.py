#!/usr/bin/env python3
"""torch_bench.py -- PyTorch's side of `make bench`.

Times the PyTorch equivalent of every case `tfm bench --list` prints, on the same shapes and
thread counts, in two configurations. Each (configuration, thread count) runs in a process of
its own, because what it sets is read when the process starts:

  shipped  Debian's python3-torch as installed, none of the variables below set.
  tuned    MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000: glibc keeps freed memory
           instead of returning it, so a new large tensor reuses mapped pages rather than
           faulting in fresh ones (a first touch costs about a microsecond per 4 KiB page);
           ATEN_CPU_CAPABILITY=avx512 (only where the CPU has avx512f): Debian's build
           dispatches its AVX2 kernels unless told otherwise;
           OMP_WAIT_POLICY=PASSIVE: idle OpenMP workers sleep instead of spinning, so they do
           not take the second core away from OpenBLAS's own threads.

Thread count t: torch.set_num_threads(t) sets ATen's OpenMP threads only. PyTorch's matmuls go
to OpenBLAS (Debian links it as libblas.so.3), which has a thread pool of its own, sized from
OPENBLAS_NUM_THREADS when it is loaded, or one thread per CPU. So every process also gets
OPENBLAS_NUM_THREADS=t and OMP_NUM_THREADS=t: a "1 thread" row is one thread, not PyTorch on one
plus OpenBLAS on all.

Method, the same as the C harness's (bench/bench.h): random inputs uniform in [-1, 1), under
torch.inference_mode() (the OP-backward ops and pretrain-steps, which need autograd, outside it); warm-up calls, then one call per sample, timed with a monotonic clock,
until a minimum count and a minimum time are reached; median, min and max in milliseconds.
There is no two-core probe on this side: a row's PyTorch numbers come from a machine in the
same state as the C rows only if the machine was quiet.

  torch_bench.py --cases build/bench/cases.json --threads 1,2 [--quick] --out build/bench
      runs both configurations, writes torch-shipped.json and torch-tuned.json into --out
  torch_bench.py --config NAME --cases ... --threads T [--quick] --out FILE.json
      one configuration and one thread count in this process (what the first form runs, with
      the environment set)

Ops and their dims (bench/bench.h): matmul [M,K,N], linear [M,K,N], attention [B,H,T,D,causal],
attention-backward [B,H,T,D,0], mha [B,T,E,H], pe [T,E], layernorm [N,E], mlm-loss
[N,V,keep_percent], encoder-layer [B,T,E,H,I], encoder-layer-backward [B,T,E,H,I] (a training
step: forward and backward), pretrain-steps [B,T,L,E,H,I] (an optimizer step of
BertForPreTraining).
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

TUNED = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "100000000000",
    "ATEN_CPU_CAPABILITY": "avx512",
    "OMP_WAIT_POLICY": "PASSIVE",
}


def cpu_has_avx512f():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def config_env(name, threads):
    """The environment of one configuration: ours, minus every tuning variable, plus the tuned
    ones for 'tuned' (ATEN_CPU_CAPABILITY only where the CPU can run AVX-512), and the thread
    count for OpenBLAS and OpenMP."""
    env = {k: v for k, v in os.environ.items() if k not in TUNED}
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    if name == "tuned":
        for k, v in TUNED.items():
            if k == "ATEN_CPU_CAPABILITY" and not cpu_has_avx512f():
                continue
            env[k] = v
    return env


# ---- the PyTorch equivalents: each returns a zero-argument function that runs the op once ----

def make_op(torch, op, dims, gen):
    F = torch.nn.functional

    def rand(*shape):
        return torch.rand(*shape, generator=gen) * 2 - 1

    if op == "matmul":
        M, K, N = dims[:3]
        a, b = rand(M, K), rand(K, N)
        return lambda: torch.matmul(a, b)
    if op == "linear":
        M, K, N = dims[:3]
        x, w, bias = rand(M, K), rand(N, K), rand(N)
        return lambda: F.linear(x, w, bias)
    if op == "attention":
        # textbook attention, as BERT's self-attention computes it: the T x T scores exist
        B, H, T, D, causal = dims[:5]
        q, k, v = rand(B, H, T, D), rand(B, H, T, D), rand(B, H, T, D)
        future = torch.ones(T, T, dtype=torch.bool).triu(1) if causal else None
        scale = math.sqrt(D)

        def attention():
            s = torch.matmul(q, k.transpose(-2, -1)) / scale
            if future is not None:
                s = s.masked_fill(future, float("-inf"))
            return torch.matmul(torch.softmax(s, dim=-1), v)
        return attention
    if op == "attention-backward":
        # autograd through the textbook attention above: the T x T probabilities are saved by
        # the forward (outside the timing), the backward is what is timed
        B, H, T, D = dims[:4]
        q, k, v = (rand(B, H, T, D).requires_grad_(True) for _ in range(3))
        g = rand(B, H, T, D)
        out = torch.matmul(torch.softmax(torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(D),
                                         dim=-1), v)
        return lambda: torch.autograd.grad(out, (q, k, v), g, retain_graph=True)
    if op == "mha":
        B, T, E, H = dims[:4]
        mha = torch.nn.MultiheadAttention(E, H, batch_first=True).eval()
        x = rand(B, T, E)
        return lambda: mha(x, x, x, need_weights=False)[0]
    if op == "pe":
        T, E = dims[:2]

        def table():
            # the usual construction of the sinusoidal table
            pos = torch.arange(T, dtype=torch.float32).unsqueeze(1)
            div = torch.exp(torch.arange(0, E, 2, dtype=torch.float32) * (-math.log(10000.0) / E))
            pe = torch.zeros(T, E)
            pe[:, 0::2] = torch.sin(pos * div)
            pe[:, 1::2] = torch.cos(pos * div)
            return pe
        return table
    if op == "layernorm":
        N, E = dims[:2]
        x, w, b = rand(N, E), rand(E), rand(E)
        return lambda: F.layer_norm(x, (E,), w, b, eps=1e-12)
    if op == "encoder-layer":
        B, T, E, H, I = dims[:5]
        layer = torch.nn.TransformerEncoderLayer(E, H, I, dropout=0.0, activation="gelu",
                                                 layer_norm_eps=1e-12, batch_first=True).eval()
        x = rand(B, T, E)
        return lambda: layer(x)
    if op == "encoder-layer-backward":
        # one training step of the layer: forward, then backward (autograd), as a trainer runs it
        B, T, E, H, I = dims[:5]
        layer = torch.nn.TransformerEncoderLayer(E, H, I, dropout=0.0, activation="gelu",
                                                 layer_norm_eps=1e-12, batch_first=True).train()
        x = rand(B, T, E).requires_grad_(True)
        g = rand(B, T, E)
        params = [x] + list(layer.parameters())

        def step():
            return torch.autograd.grad(layer(x), params, g)
        return step
    if op == "bert":
        B, T, L, E, H, I = dims[:6]
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ref"))
        import ch06_encoder
        model = ch06_encoder.BertModelRef(ch06_encoder.bert_config(
            num_hidden_layers=L, hidden_size=E, num_attention_heads=H, intermediate_size=I)).eval()
        ids = torch.randint(0, 30522, (B, T), generator=gen)
        return lambda: model(ids)["last_hidden_state"]
    if op == "pretrain-steps":
        # one optimizer step of Hugging Face's BertForPreTraining (ref/ch09: its MLM head scores
        # every token, as transformers' does), AdamW with the Trainer's groups, clipping
        B, T, L, E, H, I = dims[:6]
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ref"))
        import ch09_pretraining as ref9
        V = 30522
        model = ref9.BertForPreTrainingRef(ref9.pretraining_config(
            num_hidden_layers=L, hidden_size=E, num_attention_heads=H, intermediate_size=I))
        ref9.hf_init(model, gen)
        model.train()
        ids = torch.randint(1000, V, (B, T), generator=gen)
        ids[:, 0], ids[:, T // 2], ids[:, T - 1] = 101, 102, 102
        types = (torch.arange(T) > T // 2).long().expand(B, T).contiguous()
        mask = torch.ones(B, T, dtype=torch.long)
        labels = torch.where(torch.rand(B, T, generator=gen) < 0.15, ids, torch.full_like(ids, -100))
        nsp = torch.arange(B) % 2
        opt = torch.optim.AdamW(ref9.param_groups(model, 0.01), lr=1e-4)   # torch's default path

        def step():
            model.zero_grad(set_to_none=True)
            loss = model(ids, mask, types, labels, nsp)[0]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        return step
    if op == "mlm-loss":
        N, V, keep = dims[:3]
        logits = rand(N, V) * 4
        # row n kept when floor((n+1) keep / 100) > floor(n keep / 100): the C side's rule
        labels = torch.randint(0, V, (N,), generator=gen)
        for n in range(N):
            if (n + 1) * keep // 100 == n * keep // 100:
                labels[n] = -100
        return lambda: F.cross_entropy(logits, labels, ignore_index=-100)
    return None


def TRAINS(op):
    """The ops that need autograd: the backwards and the training steps."""
    return op.endswith("-backward") or op == "pretrain-steps"


def time_op(fn, quick):
    # --quick is a smoke test: one warm-up, then at least 2 samples and 0.1 s
    warmup, min_samples, max_samples, min_seconds = (1, 2, 200, 0.1) if quick else (3, 10, 2000, 1.0)
    for _ in range(warmup):
        fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < max_samples:
        t0 = time.perf_counter()
        fn()
        samples.append(1e3 * (time.perf_counter() - t0))
        if len(samples) >= min_samples and time.perf_counter() - start >= min_seconds:
            break
    return {"median_ms": statistics.median(samples), "min_ms": min(samples),
            "max_ms": max(samples), "samples": len(samples)}


def run_config(args):
    import torch
    with open(args.cases) as f:
        cases = json.load(f)["cases"]
    t = int(args.threads)
    capability = [l.split(":", 1)[1].strip() for l in torch.__config__.show().splitlines()
                  if "CPU capability usage" in l]
    out = {
        "config": args.config,
        "env": {k: os.environ.get(k) for k in list(TUNED) + [
            "OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"]},
        "torch": torch.__version__,
        "cpu_capability": capability[0] if capability else None,
        "python": platform.python_version(),
        "quick": args.quick,
        "threads": [t],
        "results": {},
    }
    torch.set_num_threads(t)
    for c in cases:
        with torch.inference_mode(not TRAINS(c["op"])):
            gen = torch.Generator().manual_seed(1234)
            fn = make_op(torch, c["op"], c["dims"], gen)
            res = out["results"].setdefault(c["key"], {})
            if fn is None:
                res[str(t)] = {"error": "torch_bench.py has no equivalent for op '%s'" % c["op"]}
                continue
            print("torch %s: %s, %d thread(s)" % (args.config, c["key"], t), file=sys.stderr)
            res[str(t)] = time_op(fn, args.quick)
            del fn
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", required=True, help="output of `tfm bench --list`")
    p.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2 (one with --config)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--config", choices=["shipped", "tuned"],
                   help="run one configuration and thread count here (--out is then a file)")
    p.add_argument("--out", required=True, help="directory (both configs) or file (--config)")
    args = p.parse_args()
    if args.config:
        run_config(args)
        return 0
    os.makedirs(args.out, exist_ok=True)
    for name in ("shipped", "tuned"):
        merged = None
        for t in [int(x) for x in args.threads.split(",")]:
            part = os.path.join(args.out, "torch-%s-%dT.json" % (name, t))
            cmd = [sys.executable, os.path.abspath(__file__), "--config", name, "--cases",
                   args.cases, "--threads", str(t), "--out", part]
            if args.quick:
                cmd.append("--quick")
            r = subprocess.run(cmd, env=config_env(name, t))
            if r.returncode != 0:
                print("torch_bench.py: configuration '%s', %d thread(s) failed" % (name, t),
                      file=sys.stderr)
                return r.returncode
            with open(part) as f:
                one = json.load(f)
            os.remove(part)
            if merged is None:
                merged = one
                merged["env_per_threads"] = {}
            else:
                merged["threads"] += one["threads"]
                for key, per in one["results"].items():
                    merged["results"].setdefault(key, {}).update(per)
            merged["env_per_threads"][str(t)] = one["env"]
        merged.pop("env", None)
        with open(os.path.join(args.out, "torch-%s.json" % name), "w") as f:
            json.dump(merged, f, indent=1)
            f.write("\n")
    return 0

if __name__ == "__main__":
    sys.exit(main())
