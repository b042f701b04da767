"""Sequential batches: does AlphaEdit keep earlier edits better than MEMIT?

    python benchmarks/sequential.py [--batches 4] [--batch-size 10] [--methods memit,alphaedit]

Each method writes B batches of CounterFact facts one after another into the same model (the same
facts for every method): a sequential ``editlab.runs.experiments.Plan`` measured after every batch by
the engine's quality evaluator (scores from ``editlab.measure.metrics``). After each batch, the efficacy
(P(new) > P(true) on the prompt) and EM, the mean P(new) − P(true) (a magnitude that still moves
when efficacy saturates at 1), of every batch written so far are read: the diagonal is how well a batch is written, the
entries left of it how well earlier batches are *retained*. Also printed: the mean retention of
earlier batches and the neighbourhood score over all facts so far. Measured and printed, not
asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cf import load_facts, statistics_args  # noqa: E402

from editlab import load_model, methods  # noqa: E402
from editlab.runs import experiments  # noqa: E402


def hparams(method: str, args) -> dict:
    from editlab.cli.edit import parse_sets

    hp = methods.get(method).HParams
    return {"mom2_n_tokens": args.mom2_tokens, **{k: v for k, v in parse_sets(args.set).items() if hp.accepts(k)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=10)
    ap.add_argument("--methods", default="memit,alphaedit")
    statistics_args(ap)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyperparameter for every method that has it (e.g. nullspace_threshold=2e-2)",
    )
    args = ap.parse_args()
    if args.batches < 3:
        raise SystemExit("use at least 3 batches")

    handle = load_model()
    facts = load_facts(args.batches * args.batch_size)
    nb, bs = args.batches, args.batch_size
    results = {}
    for method in args.methods.split(","):
        plan = experiments.Plan(tuple(facts), method, hparams(method, args), "sequential", bs, corpus=args.corpus)

        def said(m, at, method=method):
            es = [s["ES"] for s in m.values["quality"]["scores"]]
            print(
                f"  {method}: batch {m.step // bs}/{nb} written ({m.edit_s:.0f} s); efficacy "
                + " ".join(f"{statistics.mean(es[j * bs : (j + 1) * bs]):.2f}" for j in range(m.step // bs)),
                file=sys.stderr,
                flush=True,
            )

        out = experiments.run(handle, plan, [experiments.Quality("edited")], on_measured=said)
        grid, pgrid, ns, secs = [], [], [], []
        for m in out.measured:
            q = m.values["quality"]["scores"]  # the facts edited so far, in order
            grid.append([statistics.mean(s["ES"] for s in q[j * bs : (j + 1) * bs]) for j in range(m.step // bs)])
            pgrid.append([statistics.mean(s["EM"] for s in q[j * bs : (j + 1) * bs]) for j in range(m.step // bs)])
            ns.append(statistics.mean(s["NS"] for s in q if s["NS"] is not None))
            secs.append(m.edit_s)
        results[method] = (grid, pgrid, ns, secs)

    print(
        f"\nSequential editing on {handle.name}: {nb} batches x {bs} CounterFact facts, mom2 tokens {args.mom2_tokens}"
    )
    for method, (grid, pgrid, ns, secs) in results.items():
        for title, g, fmt in (
            ("efficacy (P(new) > P(true))", grid, ".2f"),
            ("EM, mean P(new) − P(true) on the prompt", pgrid, ".3f"),
        ):
            print(f"\n{method}: {title} of batch j (columns) after writing batch i (rows)")
            print(
                "after  "
                + "".join(f"{'b' + str(j + 1):>7}" for j in range(nb))
                + f"{'retained':>10}{'NS':>7}{'s/batch':>9}"
            )
            for i, row in enumerate(g):
                kept = statistics.mean(row[:-1]) if len(row) > 1 else float("nan")
                print(
                    f"b{i + 1:<6}"
                    + "".join(f"{v:>7{fmt}}" for v in row)
                    + " " * 7 * (nb - len(row))
                    + f"{kept:>10{fmt}}{ns[i]:>7.2f}{secs[i]:>9.0f}"
                )
    print(
        "\nretained = mean over the batches written before the latest one; NS = neighbourhood score over "
        "all facts written so far (P(true) > P(new) on their neighbourhood prompts)"
    )
    for k, label in ((0, "efficacy"), (1, "EM")):
        final = {m: statistics.mean(r[k][-1][:-1]) for m, r in results.items()}
        first = {m: r[k][-1][0] for m, r in results.items()}
        print(
            f"final retention of earlier batches ({label}): "
            + ", ".join(f"{m} {v:.3f}" for m, v in final.items())
            + "; of the first batch: "
            + ", ".join(f"{m} {v:.3f}" for m, v in first.items())
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
