"""Process-level settings against a warm ROME edit: threads and memory allocators, each measured in
its own fresh process, configurations alternating round by round so every one sees the same machine.

    python benchmarks/rome_knobs.py [--facts 6] [--rounds 3] [--start 400]
                                    [--configs baseline,threads1,jemalloc,tcmalloc,compile]

A configuration is a process: ``baseline`` (torch threads = the cores, glibc malloc), ``threads1``
(one torch thread), ``jemalloc`` / ``tcmalloc`` (the allocator preloaded with ``LD_PRELOAD``, from
Debian's libjemalloc2 / libtcmalloc-minimal4; a configuration whose library is missing is
skipped, and said so), ``compile`` (every decoder layer above ROME's edit layer compiled in place
with ``torch.compile(dynamic=True)``: the layers each v* step runs and differentiates, none of which
holds a traced module; the time to compile is paid in the warm-up edit and printed). Each process
loads the default model, makes one warm-up edit (context templates, statistics), then edits
``--facts`` CounterFact facts from record ``--start`` one at a time with ROME, undoing each, and
reports each edit's seconds, its v* steps and its v*. Printed:
per configuration the median seconds per edit over every round (min–max), the ratio to
``baseline``, and whether the edit is the same — the same number of v* steps on every fact and v*
within ``V_TOLERANCE`` relative of the baseline's (a setting that changes the edit is no speed-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
V_TOLERANCE = 1e-3
LIBS = {
    "jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "tcmalloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
}


def worker(args) -> None:
    """One configuration's process: the timed edits, as one JSON line on stdout."""
    sys.path.insert(0, str(ROOT))
    import torch

    from benchmarks._cf import load_facts
    from editlab import EditSession, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    facts = load_facts(args.facts + 1, start=args.start)
    handle = load_model("smollm2-135m-instruct")
    if args.compile:
        from editlab.methods.rome import default_layer

        for i in range(default_layer(handle) + 1, handle.arch.n_layers):
            handle.module(handle.arch.layer(i)).compile(dynamic=True)
    session = EditSession(handle, online=False)
    t0 = time.perf_counter()
    session.edit(facts[0], "rome")  # warm-up: templates, statistics (and compiling)
    warm_up = time.perf_counter() - t0
    session.reset()
    rows = []
    for fact in facts[1:]:
        t0 = time.perf_counter()
        rec = session.edit(fact, "rome")
        seconds = time.perf_counter() - t0
        info = rec.info["facts"][0]
        rows.append({"seconds": seconds, "steps": info["v_steps"], "v": info["v_star"].tolist()})
        session.reset()
    print("RESULT " + json.dumps({"threads": torch.get_num_threads(), "warm_up": warm_up, "rows": rows}), flush=True)


def run_config(name: str, args) -> dict | None:
    env = dict(os.environ)
    cmd = [sys.executable, __file__, "--worker", "--facts", str(args.facts), "--start", str(args.start)]
    if name == "threads1":
        cmd += ["--threads", "1"]
    if name == "compile":
        cmd += ["--compile"]
    if name in LIBS:
        if not Path(LIBS[name]).exists():
            return None
        env["LD_PRELOAD"] = LIBS[name]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def rel(a, b) -> float:
    num = sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5
    return num / max(sum(y * y for y in b) ** 0.5, 1e-12)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--facts", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--start", type=int, default=400, help="first CounterFact record (held out from tests)")
    ap.add_argument("--configs", default="baseline,threads1,jemalloc,tcmalloc,compile")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if configs[0] != "baseline":
        configs = ["baseline"] + [c for c in configs if c != "baseline"]
    got: dict[str, list[dict]] = {c: [] for c in configs}
    skipped = set()
    for r in range(args.rounds):
        for name in configs:
            if name in skipped:
                continue
            res = run_config(name, args)
            if res is None:
                skipped.add(name)
                print(f"{name}: skipped ({LIBS[name]} is not installed)")
                continue
            got[name].append(res)
            print(
                f"round {r + 1}, {name}: warm-up edit {res['warm_up']:.1f} s, then "
                f"{[round(x['seconds'], 2) for x in res['rows']]} s",
                flush=True,
            )
    base = [x["seconds"] for res in got["baseline"] for x in res["rows"]]
    ref = got["baseline"][0]["rows"]
    print(f"\n# warm ROME edit, {args.facts} facts × {args.rounds} rounds, CounterFact from record {args.start}")
    for name in configs:
        if not got[name]:
            continue
        secs = [x["seconds"] for res in got[name] for x in res["rows"]]
        rows = [x for res in got[name] for x in res["rows"]]
        same_steps = all(x["steps"] == ref[i % len(ref)]["steps"] for i, x in enumerate(rows))
        worst = max(rel(x["v"], ref[i % len(ref)]["v"]) for i, x in enumerate(rows))
        print(
            f"{name:<9} (torch threads {got[name][0]['threads']}): median {statistics.median(secs):.2f} s "
            f"({min(secs):.2f}–{max(secs):.2f}, n={len(secs)}); ratio to baseline "
            f"{statistics.median(secs) / statistics.median(base):.2f}; same v* steps on every fact: "
            f"{'yes' if same_steps else 'NO'}; v* max rel. diff {worst:.1e}"
            + ("" if worst <= V_TOLERANCE and same_steps else " — the edit changed: not a speed-up")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
