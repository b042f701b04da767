"""How many corpus tokens do ROME's second-moment statistics need? The same facts edited with
statistics over N tokens, scored by editlab.measure.metrics against the largest N.

    python benchmarks/stats_tokens.py [--n 20] [--tokens 10000,20000,50000,100000] [--layer 5]

Prints, per N: the time of the statistics pass, ES / PS / NS / PN over the facts, and the mean
relative difference of the weight change ‖ΔW_N − ΔW_ref‖ / ‖ΔW_ref‖ against the largest N (v* does
not depend on C, so the difference is C's alone). Statistics come from WikiText-2 (shared data).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._cf import WIKITEXT, load_facts  # noqa: E402
from editlab import load_model  # noqa: E402
from editlab.core import paths  # noqa: E402
from editlab.measure import metrics  # noqa: E402
from editlab.runs import experiments  # noqa: E402


class Delta:
    """The latest edit's change of its one weight (ROME writes one matrix) and its statistics seconds."""

    name = "delta"

    def __call__(self, at) -> dict:
        rec = at.session.records[-1]
        [w] = rec.weights_after
        return {
            "delta": rec.weights_after[w].float() - rec.weights_before[w].float(),
            "stats_s": rec.timings.get("stats_s", 0.0),
        }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--tokens", default="10000,20000,50000,100000")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    args = ap.parse_args()
    sizes = sorted({int(x) for x in args.tokens.split(",")}, reverse=True)  # the reference (largest) first
    facts = load_facts(args.n, args.start)
    handle = load_model(args.model)
    print(
        f"model {handle.name}, {len(facts)} CounterFact facts from #{args.start}, ROME, "
        f"torch threads {torch.get_num_threads()}, "
        f"cache {paths.cache_root()}"
    )
    ref: list[torch.Tensor] = []
    rows = []
    for n_tokens in sizes:
        # one engine plan per statistics size: each fact edited from the unedited model, the edit's
        # weight change kept (keep_weights) and read by Delta, its scores by the Quality evaluator
        plan = experiments.Plan(
            tuple(facts),
            "rome",
            {"mom2_n_tokens": n_tokens},
            "independent",
            corpus=str(WIKITEXT),
            online=False,
            keep_weights=True,
        )
        out = experiments.run(handle, plan, [experiments.Quality("latest"), Delta()])
        deltas = [m.values["delta"]["delta"] for m in out.measured]
        if n_tokens == sizes[0]:
            ref = deltas
        rel = [float((d - r).norm() / r.norm()) for d, r in zip(deltas, ref)]
        stats_s = out.measured[0].values["delta"]["stats_s"]  # the first edit computes the statistics
        agg = metrics.aggregate([s for m in out.measured for s in m.values["quality"]["scores"]])
        rows.append((n_tokens, stats_s, agg, statistics.mean(rel), statistics.median(out.edit_seconds.values())))
        print(
            f"  N={n_tokens:>7,}: statistics {stats_s:6.1f} s  "
            f"ES {agg['ES']:.2f} PS {agg['PS']:.2f} NS {agg['NS']:.2f} "
            f"PN {agg['PN']:.2f}  rel ΔW {statistics.mean(rel):.4f}",
            flush=True,
        )
    print()
    print(f"| tokens | statistics s | ES | PS | NS | PN | mean ‖ΔW−ΔW_{sizes[0] // 1000}k‖/‖ΔW_{sizes[0] // 1000}k‖ |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n_tokens, stats_s, agg, rel, _ in sorted(rows):
        print(
            f"| {n_tokens:,} | {stats_s:.1f} | {agg['ES']:.2f} | {agg['PS']:.2f} | {agg['NS']:.2f} | "
            f"{agg['PN']:.2f} | {rel:.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
