"""Shared by the method benchmarks: where the shared data is, its CounterFact facts, and one bench
row per method. Every score comes from ``editlab.runs.bench`` / ``editlab.runs.experiments`` and so from
``editlab.measure.metrics``: these scripts build plans, they do not score."""

from __future__ import annotations

import subprocess
from pathlib import Path

from editlab import Fact
from editlab.facts.datasets import load_dataset
from editlab.runs.bench import UNEDITED, BenchConfig, run_bench

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
COUNTERFACT = SHARED / "editing" / "counterfact-edit.json"
WIKITEXT = SHARED / "corpus" / "wikitext-2-test.txt"


def load_facts(n: int, start: int = 0) -> list[Fact]:
    """CounterFact records ``start`` .. ``start + n - 1``, in file order."""
    if not COUNTERFACT.exists():
        raise SystemExit(f"CounterFact not found at {COUNTERFACT} (the shared test data)")
    return list(load_dataset(COUNTERFACT).facts[start : start + n])


def statistics_args(ap) -> None:
    """The second-moment statistics options every method benchmark takes."""
    ap.add_argument("--mom2-tokens", type=int, default=20_000, help="statistics size for methods that use them")
    ap.add_argument("--corpus", default=str(WIKITEXT), help="statistics corpus (WikiText-2 test from the shared data)")
    ap.add_argument(
        "--store",
        default=None,
        help="a run store (SQLite file): a run started again resumes, "
        "rows already measured under the same settings are reused",
    )


def bench_rows(handle, method: str, n: int, hparams: dict, args, batch_size: int = 1):
    """``editlab bench`` on the first ``n`` CounterFact facts, one method, independent edits of
    ``batch_size`` facts, no negated edits: (the method's row, the unedited row)."""
    cfg = BenchConfig(
        dataset=str(COUNTERFACT),
        methods=(method,),
        n=n,
        seed=None,
        batch_size=batch_size,
        negative_edits=False,
        hparams={method: hparams},
        corpus=args.corpus,
        online=False,
    )
    res = run_bench(handle, cfg, store=args.store)
    return res.row(method), res.row(UNEDITED)


def git_commit() -> str:
    """The checkout's short commit, for a stored result's provenance ("unknown" outside git)."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
