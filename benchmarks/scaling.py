"""How the cost of an edit grows: with the model's size, and with the edits already made.

    python benchmarks/scaling.py --json scaling.json                         # the table, then the fit
    python benchmarks/scaling.py --shapes 135m,360m --methods rome,memit10 --runs 2
    python benchmarks/scaling.py --device cuda --dtype bfloat16 --shapes 135m,1.7b,8b     # on a GPU
    python benchmarks/scaling.py --render scaling.json --out docs/results/scaling.md --figure assets/scaling.png

**Model size.** The real default model (SmolLM2-135M-Instruct) and random-weight models of the same
family built from a configuration (no download): SmolLM2-360M's and SmolLM2-1.7B's shapes, and
Llama-3-8B's (``8b``, bfloat16 on a GPU; ``--quantization 8bit`` with bitsandbytes). Each shape runs
in its own process (its peak memory is its own). Per shape and method: the first edit (second-moment
statistics of ``--mom2-tokens`` corpus tokens and context templates computed, then cached), then
``--runs`` timed edits (each undone; the median is printed), the v* steps they took, the probe set's
seconds on one model state (median of ``--runs``), and the peak resident memory (CPU; on CUDA the
peak allocated) during the timed edits. Random weights never reach ROME's loss threshold, so their
v* runs every step (the table gives the steps): a trained model of the same shape usually stops
earlier, so the random-weight rows are an upper bound on the optimiser's share.

**Edits already made.** On the real model, ``--sequential`` edits one after another with GRACE (its
codebook grows), IKE (its prompt of demonstrations grows) and AlphaEdit (its preserved keys grow):
the seconds of the k-th edit and of the probe set after it, at each k of ``--at``.

Then a power law t = a · P^b is fitted to each method's median edit seconds against the parameter
count P (least squares in log-log) and the fit is evaluated at GPT-2 XL's 1.56 B and Llama-3-8B's
8.03 B parameters, on the device and dtype of the run. Nothing is assumed: every printed number is
timed here, and the extrapolations are labelled as such.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._cf import WIKITEXT, git_commit, load_facts  # noqa: E402

# Llama-family shapes (hidden, layers, heads, kv heads, intermediate, vocab, tied embeddings)
SHAPES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=49152, tie_word_embeddings=True),  # a smoke test of the script
    "135m": None,  # the real default model
    "360m": dict(hidden_size=960, num_hidden_layers=32, num_attention_heads=15, num_key_value_heads=5,
                 intermediate_size=2560, vocab_size=49152, tie_word_embeddings=True),
    "1.7b": dict(hidden_size=2048, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32,
                 intermediate_size=8192, vocab_size=49152, tie_word_embeddings=True),
    "8b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False),
}  # fmt: skip
METHODS = {"rome": ("rome", 1), "memit10": ("memit", 10), "memit100": ("memit", 100), "alphaedit10": ("alphaedit", 10)}
REFERENCE_MODELS = {"GPT-2 XL": 1.558e9, "Llama-3-8B": 8.03e9}


class PeakMemory:
    """The peak resident memory (CPU, sampled every 20 ms) or CUDA's peak allocated, within a block, in GiB."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = 0.0

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            return self
        import psutil

        proc, self._stop = psutil.Process(), threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, proc.memory_info().rss / 2**30)
                time.sleep(0.02)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            import torch

            self.peak = torch.cuda.max_memory_allocated() / 2**30
        else:
            self._stop.set()
            self._thread.join()


def build(shape: str, device: str, dtype: str, quantization: str | None):
    """The model handle for ``shape``: the real default model, or random weights of that shape."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from editlab import load_model
    from editlab.model.handle import ModelHandle, embedded_model_dir

    if SHAPES[shape] is None:
        return load_model("smollm2-135m-instruct", device=device, dtype=dtype, quantization=quantization)
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir("smollm2-135m-instruct"))
    config = LlamaConfig(**SHAPES[shape], max_position_embeddings=2048, rms_norm_eps=1e-5)
    torch.manual_seed(0)
    torch_dtype = getattr(torch, dtype)
    with torch.device(device if not quantization else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype).eval()
    if quantization:
        raise SystemExit("--quantization on random weights: save the model and load it with editlab.load_model")
    return ModelHandle(model, tokenizer, name=f"random-{shape}")


def one_shape(args) -> dict:
    """Everything measured on one shape (run in its own process)."""
    import torch

    from editlab import EditSession
    from editlab.measure.probes import default_probes, measure

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    handle = build(args.one, args.device, args.dtype, args.quantization)
    n_params = sum(p.numel() for p in handle.model.parameters())
    out = {"shape": args.one, "params": n_params, "load_s": round(time.perf_counter() - t0, 1), "methods": {}}
    facts = load_facts(args.facts_needed, start=args.start)
    session = EditSession(handle, corpus=str(WIKITEXT), online=False)
    probes = default_probes(facts[0], handle.tokenizer, 40)
    probe_s = []
    for _ in range(args.runs):
        t = time.perf_counter()
        with handle.lock:
            measure(handle.model, handle.tokenizer, facts[0], probes)
        probe_s.append(time.perf_counter() - t)
    out["probe_s"] = round(statistics.median(probe_s), 2)
    for key in args.methods.split(","):
        method, batch = METHODS[key]
        if key in args.skip.get(args.one, ()):
            out["methods"][key] = {"skipped": "too slow for this device (--skip)"}
            continue
        hp = {"mom2_n_tokens": args.mom2_tokens} if SHAPES[args.one] is not None else None
        t = time.perf_counter()
        session.undo(session.edit(facts[:batch], method, hp))  # statistics and templates, then cached
        first = time.perf_counter() - t
        secs, steps = [], []
        with PeakMemory(args.device) as peak:
            for r in range(args.runs):
                chosen = facts[(r + 1) * batch : (r + 2) * batch]
                t = time.perf_counter()
                record = session.edit(chosen, method, hp)
                secs.append(time.perf_counter() - t)
                steps += [d.get("v_steps") or d.get("z_steps") for d in (record.info.get("facts") or [])]
                session.undo(record)
        steps = [s for s in steps if s is not None]
        out["methods"][key] = {
            "first_s": round(first, 1),
            "edit_s": round(statistics.median(secs), 2),
            "edit_s_all": [round(s, 2) for s in secs],
            "per_fact_s": round(statistics.median(secs) / batch, 3),
            "v_steps_median": statistics.median(steps) if steps else None,
            "peak_gib": round(peak.peak, 2),
        }
        print(f"  {args.one} {key}: {out['methods'][key]}", file=sys.stderr, flush=True)
    return out


def sequential(args) -> dict:
    """The k-th edit's seconds and the probe set's after it, for methods whose state grows."""
    from editlab import EditSession, load_model
    from editlab.measure.probes import default_probes

    handle = load_model("smollm2-135m-instruct")
    at = sorted(int(x) for x in args.at.split(","))
    facts = load_facts(max(at) + 1, start=args.start)
    out = {}
    for method in args.sequential.split(","):
        session, rows, t_edit = EditSession(handle, corpus=str(WIKITEXT), online=False), [], []
        probes = default_probes(facts[-1], handle.tokenizer, 40)
        for k in range(1, max(at) + 1):
            t = time.perf_counter()
            session.edit(facts[k - 1], method)
            t_edit.append(time.perf_counter() - t)
            if k in at:
                t = time.perf_counter()
                session.measure_current(facts[-1], probes, guess=False)
                rows.append({"edits": k, "edit_s": round(t_edit[-1], 2), "probe_s": round(time.perf_counter() - t, 2)})
                print(f"  {method} after {k} edits: {rows[-1]}", file=sys.stderr, flush=True)
        session.reset()
        out[method] = rows
    return out


def fit(rows: list[dict], key: str) -> dict | None:
    """t = a · P^b by least squares in log-log over the shapes measured; None with fewer than two."""
    pts = [(r["params"], r["methods"][key]["edit_s"]) for r in rows if "edit_s" in r["methods"].get(key, {})]
    if len(pts) < 2:
        return None
    xs, ys = [math.log(p) for p, _ in pts], [math.log(t) for _, t in pts]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = math.exp(my - b * mx)
    return {"exponent": round(b, 2), "at": {name: round(a * p**b, 1) for name, p in REFERENCE_MODELS.items()}}


def render(doc: dict) -> str:
    """The docs page: provenance, the size table, the fit, the sequential table."""
    p = doc["provenance"]
    lines = [
        "# How the cost of an edit grows",
        "",
        f"`python benchmarks/scaling.py` ({p['command']}) on {p['date']}, commit {p['commit']}, {p['machine']}; "
        f"device {doc['device']}, {doc['dtype']}; median of {doc['runs']} timed edits per cell, each undone. "
        "135m is the real default model; the other shapes are random weights of SmolLM2's family (their v* runs "
        "every step: an upper bound for a trained model of that shape).",
        "",
        "| shape | parameters | load s | probe set s | "
        + " | ".join(f"{k}: edit s (first) · v* steps · peak GiB" for k in doc["methods"])
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(doc["methods"]),
    ]
    for r in doc["sizes"]:
        cells = []
        for k in doc["methods"]:
            m = r["methods"].get(k, {})
            cells.append(
                m.get("skipped", "–")
                if "edit_s" not in m
                else f"{m['edit_s']} ({m['first_s']}) · {m['v_steps_median']} · {m['peak_gib']}"
            )
        lines.append(
            f"| {r['shape']} | {r['params'] / 1e6:,.0f} M | {r['load_s']} | {r['probe_s']} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "Fitted t = a · P^b (edit seconds against parameters), extrapolated — not measured:", ""]
    lines += ["| method | exponent b | " + " | ".join(f"{n} (s, extrapolated)" for n in REFERENCE_MODELS) + " |"]
    lines += ["|---|---:|" + "---:|" * len(REFERENCE_MODELS)]
    for k, f in doc["fits"].items():
        if f:
            lines.append(f"| {k} | {f['exponent']} | " + " | ".join(str(f["at"][n]) for n in REFERENCE_MODELS) + " |")
    if doc.get("sequential"):
        lines += ["", "Edits already made (real model): the k-th edit's seconds and the probe set's after it.", ""]
        lines += [
            "| method | "
            + " | ".join(f"edit {r['edits']}: edit s / probe s" for r in next(iter(doc["sequential"].values())))
            + " |"
        ]
        lines += ["|---|" + "---:|" * len(next(iter(doc["sequential"].values())))]
        for method, rows in doc["sequential"].items():
            lines.append(f"| {method} | " + " | ".join(f"{r['edit_s']} / {r['probe_s']}" for r in rows) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="135m,360m,1.7b")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--quantization", default=None, choices=[None, "8bit", "4bit"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--mom2-tokens", type=int, default=5000, help="statistics tokens for random-weight shapes")
    ap.add_argument("--skip", default="1.7b:memit100", help="shape:method pairs not run, comma-separated")
    ap.add_argument("--sequential", default="grace,ike,alphaedit", help="methods edited one after another ('' : none)")
    ap.add_argument("--at", default="1,10,50", help="edit counts at which the sequential run is timed")
    ap.add_argument("--start", type=int, default=600, help="first CounterFact record used")
    ap.add_argument("--json", default=None)
    ap.add_argument("--render", default=None, help="a stored JSON: write the page (and figure) from it")
    ap.add_argument("--out", default="docs/results/scaling.md")
    ap.add_argument("--figure", default=None)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: measure one shape
    ap.add_argument("--seq-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    pairs = [x.split(":") for x in args.skip.split(",") if ":" in x]
    args.skip = {s: {m for s2, m in pairs if s2 == s} for s, _ in pairs}
    args.facts_needed = (args.runs + 1) * max(METHODS[k][1] for k in args.methods.split(",")) + 1
    if args.one:
        print(json.dumps(one_shape(args)))
        return 0
    if args.seq_only:
        print(json.dumps(sequential(args)))
        return 0
    if args.render:
        doc = json.loads(Path(args.render).read_text())
    else:
        doc = measure_all(args, argv)
    Path(args.out).write_text(render(doc))
    print(render(doc))
    if args.figure:
        draw(doc, args.figure)
    return 0


def _child(argv: list[str]) -> dict:
    """Run this script in a fresh process (its memory is its own) and read its JSON line."""
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    sys.stderr.write(done.stderr[-4000:])
    if done.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_all(args, argv) -> dict:
    commit = git_commit()  # the code the run uses: the checkout when it started
    common = ["--methods", args.methods, "--runs", str(args.runs), "--device", args.device, "--dtype", args.dtype]
    common += ["--mom2-tokens", str(args.mom2_tokens), "--start", str(args.start)]
    common += ["--skip", ",".join(f"{s}:{m}" for s, ms in args.skip.items() for m in ms) or "none:none"]
    common += ["--threads", str(args.threads)] if args.threads else []
    sizes = []
    for shape in args.shapes.split(","):
        print(f"measuring {shape} ...", file=sys.stderr, flush=True)
        sizes.append(_child([*common, "--one", shape]))
    seq = (
        _child(["--sequential", args.sequential, "--at", args.at, "--start", str(args.start), "--seq-only"])
        if args.sequential
        else {}
    )
    doc = {
        "provenance": {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "commit": commit,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores"
            + (f", OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}" if "OMP_NUM_THREADS" in os.environ else ""),
            "command": "python benchmarks/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        },
        "device": args.device,
        "dtype": args.dtype,
        "runs": args.runs,
        "methods": args.methods.split(","),
        "sizes": sizes,
        "fits": {k: fit(sizes, k) for k in args.methods.split(",")},
        "sequential": seq,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def draw(doc: dict, path: str) -> None:
    """Edit seconds and peak memory against parameters (log-log), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in doc["methods"]:
        pts = [(r["params"], r["methods"][key]) for r in doc["sizes"] if "edit_s" in r["methods"].get(key, {})]
        if pts:
            axes[0].plot([p for p, _ in pts], [m["edit_s"] for _, m in pts], marker="o", label=key)
            axes[1].plot([p for p, _ in pts], [m["peak_gib"] for _, m in pts], marker="o", label=key)
    for ax, title in zip(axes, ("edit seconds (median)", "peak memory, GiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"editlab: edit cost vs model size ({doc['device']}, {doc['dtype']})", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    raise SystemExit(main())
