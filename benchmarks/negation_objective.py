"""Does editlab's negation-aware objective reduce the negation collapse, and at what cost?

    python benchmarks/negation_objective.py [--n 50] [--weight 1.0] [--methods rome,memit]
                                            [--objective push-down|contrast|two-sided]
                                            [--mom2-tokens 20000] [--corpus PATH]

For the first N CounterFact facts on the default model, each method edits with negation_weight = 0
(the published objective) and with the chosen weight. ROME edits one fact at a time (undone after
measuring); MEMIT writes all N facts in one batch. Per fact, after the edit, on the edit prompt and
its negation ("... is not ..."):

  ES = PP  P(new) > P(true) on the prompt (efficacy)
  PN       P(new) > P(true) on the negated prompt (the edit "survives" negation: lower is better)
  RE       rectified efficacy PP − PN (Liu et al. 2025)
  PS / NS  paraphrase success / neighbourhood P(true) > P(new)

Prints one row per (method, weight) plus the unedited model.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cf import edit_measure_undo, load_facts, measured, statistics_args, summarise  # noqa: E402

from editlab import EditSession, Fact, load_model  # noqa: E402


def run(session: EditSession, method: str, facts: list[Fact], hp: dict, saved: dict, save) -> tuple[list[dict], float]:
    """Edit and score; ``saved`` holds rows/seconds already measured (resume), ``save()`` persists."""
    rows, seconds = saved.setdefault("rows", []), saved.setdefault("seconds", [])
    if method == "rome":  # one fact per edit, undone after measuring
        for fact in facts[len(rows):]:
            row, sec = edit_measure_undo(session, fact, method, hp)
            rows.append(row)
            seconds.append(sec)
            save()
    elif not rows:  # a batch method: all facts in one call
        t0 = time.perf_counter()
        session.edit(facts, method, hp)
        seconds.append((time.perf_counter() - t0) / len(facts))
        rows.extend(measured(session, fact) for fact in facts)
        session.reset()
        save()
    return rows, statistics.median(seconds) if seconds else 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--weight", type=float, default=1.0)
    ap.add_argument("--objective", default="push-down",
                    help="the negation term's form (the README's table: push-down; benchmarks/negation.py compares them)")
    ap.add_argument("--methods", default="rome,memit")
    statistics_args(ap)
    ap.add_argument("--json", default=None, help="per-fact rows are saved here as they are measured; an "
                    "interrupted run started again with the same file resumes")
    args = ap.parse_args()

    handle = load_model()
    facts = load_facts(args.n)
    session = EditSession(handle, corpus=args.corpus)
    store = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).exists() else {}

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(store))

    if "unedited@0.0" not in store:
        store["unedited@0.0"] = {"rows": [measured(session, f, unedited=True) for f in facts], "seconds": []}
        save()
    order = ["unedited@0.0"]
    for method in args.methods.split(","):
        for w in (0.0, args.weight):
            key = f"{method}@{w}"
            order.append(key)
            hp = {"mom2_n_tokens": args.mom2_tokens, "negation_weight": w, "negation_objective": args.objective}
            rows, _ = run(session, method, facts, hp, store.setdefault(key, {}), save)
            s = summarise(rows)
            print(f"  done {key}: PP {s['ES']:.2f} PN {s['PN']:.2f}", file=sys.stderr, flush=True)

    print(f"\nNegation-aware objective, {handle.name}, {len(facts)} CounterFact facts, mom2 tokens {args.mom2_tokens}")
    print(f"{'method':<10}{'weight':>7}{'ES=PP':>8}{'PN':>7}{'RE=PP-PN':>10}{'PS':>7}{'NS':>7}{'P(new|pos)':>12}{'P(new|neg)':>12}{'s/edit':>8}")
    for key in order:
        method, w = key.split("@")
        rows, secs = store[key]["rows"], store[key]["seconds"]
        s = summarise(rows)
        sec = statistics.median(secs) if secs else 0.0
        print(f"{method:<10}{float(w):>7.2f}{s['ES']:>8.2f}{s['PN']:>7.2f}{s['RE']:>10.2f}{s['PS']:>7.2f}{s['NS']:>7.2f}"
              f"{s['p_new_pos']:>12.3f}{s['p_new_neg']:>12.3f}{sec:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
