"""Time of one causal trace on the default model (no disk cache), median over several runs.

    python benchmarks/trace.py [--runs 3] [--full-runs 3] [--samples 10] [--tokens all] [--kinds all] [--model NAME]

Prints one row per configuration: the full trace (all three maps, every token, the paper's 10
noise samples) and the quick one the app offers (MLP map, the subject's tokens, 5 samples), plus
the number of restorations, and the time saved by computing the corrupted prefix once
(``share_prefix``), measured on the residual map of every token.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from editlab import load_model
from editlab.measure.trace import KINDS, trace

PROMPT, SUBJECT = "The Eiffel Tower is located in the city of", "Eiffel Tower"


def timed(handle, runs: int, **kw) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = trace(handle, PROMPT, SUBJECT, cache=False, **kw)
        times.append(time.perf_counter() - t0)
        print(f"  ({kw}): {times[-1]:.1f} s", file=sys.stderr, flush=True)
    return times, result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="runs of each quick configuration")
    ap.add_argument("--full-runs", type=int, default=3, help="runs of the full trace")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--device", default=None)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--tokens", default="all")
    ap.add_argument("--kinds", default="all")
    ap.add_argument("--skip-full", action="store_true", help="only the quick configurations")
    args = ap.parse_args()

    handle = load_model(args.model, device=args.device)
    print(
        f"model {handle.name} on {handle.device} ({torch.get_num_threads()} threads), prompt {PROMPT!r}, "
        f"subject {SUBJECT!r}, {args.runs} run(s) each"
    )
    configs = [
        (
            "quick (the app's): mlp, subject tokens, 5 samples",
            args.runs,
            dict(kinds="mlp", tokens="subject", samples=5),
        ),
        ("residual, every token, 3 samples", args.runs, dict(kinds="residual", tokens="all", samples=3)),
        (
            "  the same without share_prefix",
            args.runs,
            dict(kinds="residual", tokens="all", samples=3, share_prefix=False),
        ),
    ]
    if not args.skip_full:
        kinds = list(KINDS) if args.kinds == "all" else args.kinds.split(",")
        configs.append(
            (
                f"full: {'+'.join(kinds)}, tokens={args.tokens}, {args.samples} samples",
                args.full_runs,
                dict(kinds=kinds, tokens=args.tokens, samples=args.samples),
            )
        )
    print(f"{'configuration':<58} {'restorations':>12} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, runs, kw in configs:
        times, r = timed(handle, runs, **kw)
        n = sum(
            int((~torch.isnan(torch.tensor(r.probabilities(k)[r.subject_range[0] :]))).all(dim=1).sum()) * r.n_layers
            for k in r.kinds
        )
        print(f"{name:<58} {n:>12} {statistics.median(times):>9.1f} {min(times):>7.1f} {max(times):>7.1f}", flush=True)
    if "mlp" in r.kinds:
        ie = r.indirect_effect("mlp")
        t, layer = divmod(int(torch.tensor(ie).nan_to_num(-1.0).argmax()), r.n_layers)
        print(
            f"P({r.answer.strip()}) clean {r.p_clean:.3f}, corrupted {r.p_corrupted:.3f}; "
            f"MLP effect at the subject's last "
            f"token {r.tokens[r.subject_last]!r}: peak layer {r.peak_layer('mlp')} "
            f"(IE {r.subject_last_effect('mlp')[r.peak_layer('mlp')]:+.3f}); strongest cell: {r.tokens[t]!r} "
            f"at layer {layer} (IE {ie[t, layer]:+.3f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
