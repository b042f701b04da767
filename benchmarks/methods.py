"""Every registered editing method on the default model: speed and edit quality.

    python benchmarks/methods.py [--n 20] [--methods rome,memit,...] [--mom2-tokens 20000] [--store F]

For the first N CounterFact facts, each method (all of ``editlab.methods.available()`` unless
given) runs as ``editlab bench`` does: one fact per edit from the unedited model (independent
edits), every probe measured and scored by ``editlab.measure.metrics``. Prints per method: median seconds
per edit, efficacy ES, paraphrase PS, neighbourhood NS, PN (the new target still wins after the
negated prompt), rectified efficacy RE = ES − PN and EM (mean P(new) − P(true) on the prompt),
plus the unedited model's row. A method that fails is reported and the others go on.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cf import bench_rows, statistics_args  # noqa: E402

from editlab import load_model, methods  # noqa: E402

COLUMNS = ("ES", "PS", "NS", "PN", "RE", "EM")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--methods", default=",".join(methods.available()))
    statistics_args(ap)
    args = ap.parse_args()

    handle = load_model()
    table: dict = {}
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        hp = {"mom2_n_tokens": args.mom2_tokens} if methods.get(name).HParams.accepts("mom2_n_tokens") else {}
        try:
            row, unedited = bench_rows(handle, name, args.n, hp, args)
            table.setdefault("unedited", (unedited.metrics, None, ""))
            table[name] = (row.metrics, row.timings.get("seconds_per_edit"), "")
        except Exception as e:  # report the method that fails, keep benchmarking the others
            traceback.print_exc()
            table[name] = (None, None, f"failed: {type(e).__name__}: {e}")
        print(f"  {name}: done", file=sys.stderr, flush=True)

    print(
        f"\nEditing methods on {handle.name} ({handle.device}), the first {args.n} CounterFact facts, one fact per "
        f"edit (editlab bench, independent), mom2 tokens {args.mom2_tokens}"
    )
    print(f"{'method':<11}{'s/edit':>8}" + "".join(f"{c:>7}" for c in COLUMNS))
    for name, (m, sec, note) in table.items():
        if m is None:
            print(f"{name:<11}  {note}")
            continue
        cells = "".join(f"{m[c]:>7.2f}" if m.get(c) is not None else f"{'–':>7}" for c in COLUMNS)
        print(f"{name:<11}{'-' if sec is None else f'{sec:.1f}':>8}{cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
