"""Wall time of a small grid in-process, on Ray with 1 worker and with 2 workers (one thread each).

    OMP_NUM_THREADS=1 python benchmarks/grid.py [--methods rome,memit] [--shards 4] [--steps 8]

The grid: each method × ``--shards`` one-fact shards of CounterFact, independent edits without the
negated edits, statistics over 20k WikiText-2 tokens. A warm-up run fills the disk caches
(statistics, context templates, the unedited model's measurements) so that every timed run starts
from the same caches; each timed run writes a fresh run store, so no cell is skipped. Prints wall
time, the cells' own time (the engine's seconds, summed), the overhead per cell (wall minus the
in-process wall, over the cells: Ray's start, the workers' model loads, transfers) and the speed-up.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from editlab.runs.grid import GridSpec  # noqa: E402
from editlab.runs.grid_run import run_grid  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="rome,memit")
    ap.add_argument("--shards", type=int, default=4, help="one-fact shards of CounterFact per method")
    ap.add_argument("--steps", type=int, default=8, help="v* optimisation steps (the tests' setting; default 25)")
    ap.add_argument("--mom2-tokens", type=int, default=20_000)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--dataset", default=str(SHARED / "editing" / "counterfact-edit.json"))
    ap.add_argument("--corpus", default=str(SHARED / "corpus" / "wikitext-2-test.txt"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    hp = {"mom2_n_tokens": args.mom2_tokens, "v_num_grad_steps": args.steps}
    spec = GridSpec.from_dict(
        {
            "name": "bench-grid",
            "models": [{"name": args.model, "num_cpus": 1}],
            "methods": names,
            "datasets": [{"path": args.dataset, "n": args.shards, "seed": 0, "shards": args.shards}],
            "protocols": [{"mode": "independent", "negative_edits": False, "generation_tokens": 4}],
            "hparams": {m: dict(hp) for m in names},
            "corpus": args.corpus,
        }
    )
    cells = spec.cells()
    print(
        f"grid: {len(cells)} cells ({', '.join(names)} × {args.shards} one-fact shards of CounterFact), "
        f"{args.model}, v* steps {args.steps}; torch {torch.__version__}, {os.cpu_count()} cores, 1 thread per worker",
        flush=True,
    )

    def timed(label: str, **kw):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = run_grid(cells, Path(tmp) / "runs.sqlite", **kw)
            wall = time.perf_counter() - t0
        if not result.ok:
            raise SystemExit(f"{label}: {len(result.failed)} cell(s) failed: {result.failed[0].error}")
        cell_s = sum(s.seconds or 0.0 for s in result.states)
        print(f"  {label}: {wall:.1f} s", file=sys.stderr, flush=True)
        return wall, cell_s

    timed("warm-up (fills the caches)")
    rows = [
        ("in-process", *timed("in-process")),
        ("ray, 1 worker", *timed("ray, 1 worker", backend="ray", workers=1)),
        ("ray, 2 workers", *timed("ray, 2 workers", backend="ray", workers=2)),
    ]
    base = rows[0][1]
    one = rows[1][1]
    n = len(cells)
    print(f"\n{'run':<16}{'wall s':>9}{'cells s':>10}{'s/cell':>9}{'overhead s/cell':>17}{'speed-up':>10}")
    for label, wall, cell_s in rows:
        speed = f"{one / wall:.2f}x" if label.startswith("ray") else "–"
        print(f"{label:<16}{wall:>9.1f}{cell_s:>10.1f}{wall / n:>9.1f}{(wall - base) / n:>17.1f}{speed:>10}")
    print(
        f"\nspeed-up, 2 workers vs 1: {one / rows[2][1]:.2f}x; vs in-process: {base / rows[2][1]:.2f}x. "
        "overhead = (wall − in-process wall) / cells; cells s = the engine's own seconds, summed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
