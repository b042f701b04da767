"""How many corpus tokens do ROME's second-moment statistics need? The same facts edited with
statistics over N tokens, scored by editlab.metrics against the largest N.

    python benchmarks/stats_tokens.py [--n 20] [--tokens 10000,20000,50000,100000] [--layer 5]

Prints, per N: the time of the statistics pass, ES / PS / NS / PN over the facts, and the mean
relative difference of the weight change ‖ΔW_N − ΔW_ref‖ / ‖ΔW_ref‖ against the largest N (v* does
not depend on C, so the difference is C's alone). Statistics come from WikiText-2 (shared data).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._cf import WIKITEXT, load_facts  # noqa: E402
from editlab.experiments import quality_probes  # noqa: E402
from editlab import EditSession, load_model, metrics, paths  # noqa: E402


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
    print(f"model {handle.name}, {len(facts)} CounterFact facts from #{args.start}, ROME, torch threads {torch.get_num_threads()}, "
          f"cache {paths.cache_root()}")
    ref: list[torch.Tensor] = []
    rows = []
    for n_tokens in sizes:
        session = EditSession(handle, corpus=str(WIKITEXT), online=False)
        scores, rel, edit_s = [], [], []
        stats_s = None
        for i, fact in enumerate(facts):
            t0 = time.perf_counter()
            rec = session.edit(fact, "rome", {"mom2_n_tokens": n_tokens})
            edit_s.append(time.perf_counter() - t0)
            if stats_s is None:
                stats_s = rec.timings.get("stats_s", 0.0)
            [name] = rec.weights_after
            delta = rec.weights_after[name].float() - rec.weights_before[name].float()
            if n_tokens == sizes[0]:
                ref.append(delta)
            rel.append(float((delta - ref[i]).norm() / ref[i].norm()))
            scores.append(metrics.fact_scores(session.compare(fact, quality_probes(fact, handle.tokenizer))))
            session.reset()
        agg = metrics.aggregate(scores)
        rows.append((n_tokens, stats_s, agg, statistics.mean(rel), statistics.median(edit_s)))
        print(f"  N={n_tokens:>7,}: statistics {stats_s:6.1f} s  ES {agg['ES']:.2f} PS {agg['PS']:.2f} NS {agg['NS']:.2f} "
              f"PN {agg['PN']:.2f}  rel ΔW {statistics.mean(rel):.4f}", flush=True)
    print()
    print(f"| tokens | statistics s | ES | PS | NS | PN | mean ‖ΔW−ΔW_{sizes[0] // 1000}k‖/‖ΔW_{sizes[0] // 1000}k‖ |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n_tokens, stats_s, agg, rel, _ in sorted(rows):
        print(f"| {n_tokens:,} | {stats_s:.1f} | {agg['ES']:.2f} | {agg['PS']:.2f} | {agg['NS']:.2f} | {agg['PN']:.2f} | {rel:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
