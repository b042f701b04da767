"""Sequential batches: does AlphaEdit keep earlier edits better than MEMIT?

    python benchmarks/sequential.py [--batches 4] [--batch-size 10] [--methods memit,alphaedit]

Each method writes B batches of CounterFact facts one after another into the same edit session
(the same facts for every method). After each batch, the efficacy (P(new) > P(true) on the prompt)
and the mean P(new) (a magnitude that still moves when efficacy saturates at 1) of every batch
written so far are measured: the diagonal is how well a batch is written, the
entries left of it how well earlier batches are *retained*. Also printed: the mean retention of
earlier batches and the neighbourhood score over all facts so far. Measured and printed, not
asserted.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cf import load_facts, measured, statistics_args  # noqa: E402

from editlab import EditSession, load_model, methods  # noqa: E402


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
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a hyperparameter for every method that has it (e.g. nullspace_threshold=2e-2)")
    args = ap.parse_args()
    if args.batches < 3:
        raise SystemExit("use at least 3 batches")

    handle = load_model()
    facts = load_facts(args.batches * args.batch_size)
    batches = [facts[i * args.batch_size:(i + 1) * args.batch_size] for i in range(args.batches)]
    results = {}
    for method in args.methods.split(","):
        session = EditSession(handle, corpus=args.corpus)
        grid, pgrid, ns, secs = [], [], [], []
        hp = hparams(method, args)
        for b, batch in enumerate(batches):
            t0 = time.perf_counter()
            session.edit(batch, method, hp)
            secs.append(time.perf_counter() - t0)
            row, prow, neigh = [], [], []
            for earlier in batches[: b + 1]:
                scores = [measured(session, f) for f in earlier]
                row.append(statistics.mean(s["ES"] for s in scores))
                prow.append(statistics.mean(s["p_new_pos"] for s in scores))
                neigh += [s["NS"] for s in scores if s["NS"] is not None]
            grid.append(row)
            pgrid.append(prow)
            ns.append(statistics.mean(neigh))
            print(f"  {method}: batch {b + 1}/{len(batches)} written ({secs[-1]:.0f} s); efficacy "
                  + " ".join(f"{v:.2f}" for v in row) + "; mean P(new) " + " ".join(f"{v:.3f}" for v in prow),
                  file=sys.stderr, flush=True)
        results[method] = (grid, pgrid, ns, secs)

    print(f"\nSequential editing on {handle.name}: {args.batches} batches x {args.batch_size} CounterFact facts, "
          f"mom2 tokens {args.mom2_tokens}")
    for method, (grid, pgrid, ns, secs) in results.items():
        for title, g, fmt in (("efficacy (P(new) > P(true))", grid, ".2f"), ("mean P(new) on the prompt", pgrid, ".3f")):
            print(f"\n{method}: {title} of batch j (columns) after writing batch i (rows)")
            print("after  " + "".join(f"{'b' + str(j + 1):>7}" for j in range(len(batches))) + f"{'retained':>10}{'NS':>7}{'s/batch':>9}")
            for i, row in enumerate(g):
                kept = statistics.mean(row[:-1]) if len(row) > 1 else float("nan")
                print(f"b{i + 1:<6}" + "".join(f"{v:>7{fmt}}" for v in row) + " " * 7 * (len(batches) - len(row))
                      + f"{kept:>10{fmt}}{ns[i]:>7.2f}{secs[i]:>9.0f}")
    print("\nretained = mean over the batches written before the latest one; NS = neighbourhood score over "
          "all facts written so far (P(true) > P(new) on their neighbourhood prompts)")
    for k, label in ((0, "efficacy"), (1, "mean P(new)")):
        final = {m: statistics.mean(r[k][-1][:-1]) for m, r in results.items()}
        first = {m: r[k][-1][0] for m, r in results.items()}
        print(f"final retention of earlier batches ({label}): " + ", ".join(f"{m} {v:.3f}" for m, v in final.items())
              + "; of the first batch: " + ", ".join(f"{m} {v:.3f}" for m, v in first.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
