"""Time of one causal trace on the default model (no disk cache), median over several runs.

    python benchmarks/trace.py [--runs 3] [--samples 10] [--tokens all] [--kinds all] [--model NAME]

Prints one row per configuration: the full trace (all three maps, every token, the paper's 10
noise samples) and the quick one the app offers (MLP map, the subject's tokens, 5 samples), plus
the number of restorations and forward rows, and the share of the time saved by computing the
corrupted prefix once (``share_prefix``) — measured on the quick trace.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from editlab import load_model
from editlab.trace import KINDS, trace

PROMPT, SUBJECT = "The Eiffel Tower is located in the city of", "Eiffel Tower"


def timed(handle, runs: int, **kw) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = trace(handle, PROMPT, SUBJECT, cache=False, **kw)
        times.append(time.perf_counter() - t0)
    return times, result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--device", default=None)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--tokens", default="all")
    ap.add_argument("--kinds", default="all")
    ap.add_argument("--skip-full", action="store_true", help="only the quick configurations")
    args = ap.parse_args()

    handle = load_model(args.model, device=args.device)
    print(f"model {handle.name} on {handle.device} ({torch.get_num_threads()} threads), prompt {PROMPT!r}, "
          f"subject {SUBJECT!r}, {args.runs} run(s) each")
    configs = [("quick: mlp, subject tokens, 5 samples", dict(kinds="mlp", tokens="subject", samples=5)),
               ("quick, without share_prefix", dict(kinds="mlp", tokens="subject", samples=5, share_prefix=False))]
    if not args.skip_full:
        kinds = list(KINDS) if args.kinds == "all" else args.kinds.split(",")
        configs.insert(0, (f"full: {'+'.join(kinds)}, tokens={args.tokens}, {args.samples} samples",
                           dict(kinds=kinds, tokens=args.tokens, samples=args.samples)))
    print(f"{'configuration':<58} {'restorations':>12} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, kw in configs:
        times, r = timed(handle, args.runs, **kw)
        n = sum(int((~torch.isnan(torch.tensor(r.probabilities(k)[r.subject_range[0]:]))).all(dim=1).sum()) * r.n_layers
                for k in r.kinds)
        print(f"{name:<58} {n:>12} {statistics.median(times):>9.1f} {min(times):>7.1f} {max(times):>7.1f}", flush=True)
    print(f"peak MLP effect at the subject's last token {r.tokens[r.subject_last]!r}: layer {r.peak_layer('mlp')}; "
          f"P(answer) clean {r.p_clean:.3f}, corrupted {r.p_corrupted:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
