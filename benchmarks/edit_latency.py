"""ROME edit latency, probe-suite time and peak memory on the default model.

    python benchmarks/edit_latency.py [--runs 5] [--corpus PATH] [--model NAME]

Statistics and context templates are computed once (a warm-up edit) and then come from the disk
cache, as they do for a user's second edit. Prints median and spread over the runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from editlab import EditSession, Fact, load_model

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--corpus", default=str(SHARED / "corpus" / "wikitext-2-test.txt"))
    ap.add_argument("--mom2-tokens", type=int, default=100_000)
    args = ap.parse_args()

    records = json.loads((SHARED / "editing" / "counterfact-edit.json").read_text())[: args.runs + 1]
    facts = [
        Fact(
            r["subject"],
            r["prompt"],
            r["target_new"],
            r["ground_truth"],
            paraphrases=(r["rephrase_prompt"],),
            neighbors=((r["locality_prompt"], r["locality_ground_truth"]),),
        )
        for r in records
    ]
    t0 = time.perf_counter()
    handle = load_model(args.model, device=args.device, dtype=args.dtype)
    load_s = time.perf_counter() - t0
    session = EditSession(handle, corpus=args.corpus)
    hp = {"mom2_n_tokens": args.mom2_tokens}
    cuda = handle.device.type == "cuda"

    t0 = time.perf_counter()
    warm = session.edit(facts[0], "rome", hp)
    warm_s = time.perf_counter() - t0
    session.reset()

    edit_s, probe_s = [], []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for fact in facts[1:]:
        probes = session.probes_for(fact)
        t0 = time.perf_counter()
        session.measure_current(fact, probes)
        probe_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        session.edit(fact, "rome", hp)
        if cuda:
            torch.cuda.synchronize()
        edit_s.append(time.perf_counter() - t0)
        session.reset()

    def row(name, xs):
        spread = f"{min(xs):.2f}-{max(xs):.2f}"
        return f"{name:<34} {statistics.median(xs):>9.2f} {spread:>14} {len(xs):>5}"

    print(
        f"model {handle.name} on {handle.device} ({str(handle.dtype).replace('torch.', '')}), "
        f"torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"load {load_s:.2f} s; first edit incl. statistics ({args.mom2_tokens} tokens) and templates: {warm_s:.1f} s "
        f"[stats {warm.timings.get('stats_s', 0):.1f} s, templates {warm.timings.get('templates_s', 0):.1f} s]"
    )
    print(f"{'measure':<34} {'median s':>9} {'min-max s':>14} {'runs':>5}")
    print(row("ROME edit (statistics cached)", edit_s))
    print(row("probe suite, one fact, one state", probe_s))
    mem = f"peak RSS {peak_rss_mb():.0f} MB"
    if cuda:
        mem += f"; peak CUDA memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MB"
    print(mem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
