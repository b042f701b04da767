"""The GPU path on a CUDA machine: live edits in float32 and bfloat16, and muting runs at scale.

    python benchmarks/gpu_check.py --data DIR --out DIR [--n 5] [--muting alphaedit,memit]
                                   [--muting-n 1000] [--batch-size 100]
                                   [--checkpoints 10,100,200,500,1000] [--dtypes '']

Part 1, for each dtype (float32, bfloat16): load the default model on CUDA, then for ROME, MEMIT and
AlphaEdit edit the first ``--n`` CounterFact facts one at a time (after one warm-up edit that fills
the statistics and template caches), measure each with ``editlab.measure.metrics`` (ES, PS, NS, PN, RE) on
the session's probes and undo it; the weights' digest after the last undo must equal the unedited
one. Prints median seconds per edit and per probe pass.

Part 2: ``editlab.runs.reproduce.muting`` for each method of ``--muting`` (sequential edits in batches,
checkpoints 10, 100, ..., n), each written to ``<out>/muting-<method>.json`` as soon as it ends.
Plotly is not needed (no HTML here: ``benchmarks/findings_tables.py`` reads the JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from editlab import EditSession, load_model  # noqa: E402
from editlab.facts.datasets import load_dataset  # noqa: E402
from editlab.measure import metrics  # noqa: E402
from editlab.model.handle import weights_digest  # noqa: E402
from editlab.runs.reproduce import muting  # noqa: E402


def say(*a) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def live(data: Path, n: int, dtype: str, methods: list[str], device: str) -> dict:
    t0 = time.perf_counter()
    handle = load_model(device=device, dtype=dtype)
    load_s = time.perf_counter() - t0
    ds = load_dataset(str(data / "editing" / "counterfact-edit.json"), seed=None)
    facts, warm = list(ds.facts[:n]), ds.facts[n]
    session = EditSession(handle, corpus=str(data / "corpus" / "wikitext-2-test.txt"), online=False)
    digest0 = weights_digest(handle.model.state_dict().items())
    out = {
        "dtype": dtype,
        "device": torch.cuda.get_device_name() if handle.device.type == "cuda" else str(handle.device),
        "load_s": round(load_s, 2),
        "methods": {},
    }
    say(f"{dtype}: loaded in {load_s:.1f} s")
    unedited = [metrics.fact_scores(session.compare(f), column="unedited") for f in facts]
    out["unedited"] = metrics.aggregate(unedited)
    for name in methods:
        row: dict = {}
        try:
            t = time.perf_counter()
            session.edit(warm, name)
            row["first_edit_s"] = round(time.perf_counter() - t, 2)
            session.reset()
            edit_s, probe_s, per_fact = [], [], []
            for f in facts:
                sync(handle.device)
                t = time.perf_counter()
                session.edit(f, name)
                sync(handle.device)
                edit_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                report = session.compare(f)
                probe_s.append(time.perf_counter() - t)
                per_fact.append(metrics.fact_scores(report, column="after"))
                session.undo()
            row |= {
                "edit_s_median": round(statistics.median(edit_s), 3),
                "edit_s": [round(s, 3) for s in edit_s],
                "probe_s_median": round(statistics.median(probe_s), 3),
                "scores": metrics.aggregate(per_fact),
            }
        except Exception as e:  # report, go on with the next method
            session.reset()
            row["error"] = f"{type(e).__name__}: {e}"[:500]
        row["weights_restored"] = weights_digest(handle.model.state_dict().items()) == digest0
        out["methods"][name] = row
        sc = row.get("scores") or {}
        say(
            f"{dtype} {name}: "
            + (
                row.get("error")
                or f"first {row['first_edit_s']} s, median edit {row['edit_s_median']} s, "
                f"probes {row['probe_s_median']} s, "
                + ", ".join(f"{k} {sc.get(k)}" for k in ("ES", "PS", "NS", "PN", "RE"))
            )
            + f", restored {row['weights_restored']}"
        )
    del session, handle
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a folder laid out like ../shared/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--methods", default="rome,memit,alphaedit")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--muting", default="alphaedit,memit", help="methods for the muting runs ('' for none)")
    ap.add_argument("--muting-n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--checkpoints", default="", help="comma-separated edit counts (default 10, 100, ..., n)")
    ap.add_argument("--device", default="cuda", help="cuda (the point of it); cpu for a dry run")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script checks the GPU path")
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m]
    for dtype in [d for d in args.dtypes.split(",") if d]:
        res = live(data, args.n, dtype, methods, args.device)
        (out / f"live-{dtype}.json").write_text(json.dumps(res, indent=1, default=str))
    for method in [m for m in args.muting.split(",") if m]:
        handle = load_model(device=args.device)
        checkpoints = [int(x) for x in args.checkpoints.split(",") if x]
        if not checkpoints:  # 10, 100, ... below n, then n
            checkpoints = [10**k for k in range(1, len(str(args.muting_n))) if 10**k < args.muting_n] + [args.muting_n]
        say(f"muting {method}: n={args.muting_n}, batches of {args.batch_size}, checkpoints {checkpoints}")
        res = muting(
            handle,
            args.muting_n,
            method,
            dataset=data / "editing" / "counterfact-edit.json",
            batch_size=args.batch_size,
            checkpoints=checkpoints,
            heldout=data / "corpus" / "wikitext-2-valid.txt",
            online=False,
            progress=lambda i, k, msg: say(f"  {method} [{i}/{k}] {msg}"),  # noqa: B023 (used within this iteration)
        )
        (out / f"muting-{method}.json").write_text(res.to_json(indent=1))
        say(f"muting {method}: {res.cost}")
        del handle
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
