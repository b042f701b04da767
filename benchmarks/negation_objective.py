"""Does editlab's negation-aware objective reduce the negation collapse, and at what cost?

    python benchmarks/negation_objective.py [--n 50] [--weight 1.0] [--methods rome,memit]
                                            [--objective push-down|contrast|two-sided]
                                            [--mom2-tokens 20000] [--corpus PATH] [--store F]

For the first N CounterFact facts on the default model, each method edits with negation_weight = 0
(the published objective) and with the chosen weight, as ``editlab bench`` does (independent
edits; every score from ``editlab.measure.metrics``). ROME edits one fact at a time; MEMIT writes all N
facts in one batch. Per fact, after the edit, on the edit prompt and its negation ("... is not ..."):

  ES = PP  P(new) > P(true) on the prompt (efficacy)
  PN       P(new) > P(true) on the negated prompt (the edit "survives" negation: lower is better)
  RE       rectified efficacy PP − PN (Liu et al. 2025)
  PS / NS  paraphrase success / neighbourhood P(true) > P(new)
  EM       mean P(new) − P(true) on the prompt

Prints one row per (method, weight) plus the unedited model. With ``--store``, an interrupted run
started again resumes (rows already measured under the same settings are reused).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cf import bench_rows, statistics_args  # noqa: E402

from editlab import load_model  # noqa: E402

COLUMNS = ("ES", "PN", "RE", "PS", "NS", "EM")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--weight", type=float, default=1.0)
    ap.add_argument(
        "--objective",
        default="push-down",
        help="the negation term's form (the README's table: push-down; benchmarks/negation.py compares them)",
    )
    ap.add_argument("--methods", default="rome,memit")
    statistics_args(ap)
    args = ap.parse_args()

    handle = load_model()
    rows = []
    for method in args.methods.split(","):
        for w in (0.0, args.weight):
            hp = {"mom2_n_tokens": args.mom2_tokens, "negation_weight": w, "negation_objective": args.objective}
            row, unedited = bench_rows(handle, method, args.n, hp, args, batch_size=1 if method == "rome" else args.n)
            if not rows:
                rows.append(("unedited", 0.0, unedited.metrics, None))
            rows.append((method, w, row.metrics, row.timings.get("seconds_per_edit")))
            print(
                f"  done {method}@{w}: PP {row.metrics['ES']:.2f} PN {row.metrics['PN']:.2f}",
                file=sys.stderr,
                flush=True,
            )

    print(
        f"\nNegation-aware objective ({args.objective}), {handle.name}, the first {args.n} CounterFact facts, "
        f"mom2 tokens {args.mom2_tokens}"
    )
    print(f"{'method':<10}{'weight':>7}" + "".join(f"{c:>7}" for c in COLUMNS) + f"{'s/edit':>8}")
    for method, w, m, sec in rows:
        cells = "".join(f"{m[c]:>7.2f}" if m.get(c) is not None else f"{'–':>7}" for c in COLUMNS)
        print(f"{method:<10}{w:>7.2f}{cells}{'-' if sec is None else f'{sec:.1f}':>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
