"""Does editlab's negation-aware objective reduce the negation collapse, and at what cost?

    python benchmarks/negation_objective.py [--n 50] [--weight 1.0] [--methods rome,memit]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from editlab import EditSession, Fact, Neighbor, load_model  # noqa: E402
from editlab.facts import negate  # noqa: E402
from editlab.probes import Probe  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def load_facts(n: int) -> list[Fact]:
    records = json.loads((SHARED / "editing" / "counterfact-edit.json").read_text())[:n]
    return [Fact(r["subject"], r["prompt"], r["target_new"], r["ground_truth"], paraphrases=(r["rephrase_prompt"],),
                 neighbors=(Neighbor(r["locality_prompt"], r["locality_ground_truth"]),), case_id=r["case_id"])
            for r in records]


def probes(fact: Fact) -> list[Probe]:
    neg, rule = negate(fact.prompt, fact.subject)
    out = [Probe("positive", fact.prompt, max_new_tokens=1), Probe("negation", neg, rule=rule, max_new_tokens=1)]
    out += [Probe("paraphrase", p, max_new_tokens=1) for p in fact.paraphrases]
    out += [Probe("neighborhood", nb.prompt, answer=nb.answer, max_new_tokens=1) for nb in fact.neighbors]
    return out


def score(ms, fact_probes) -> dict:
    by = {}
    for p, m in zip(fact_probes, ms):
        by.setdefault(p.kind, []).append(m)
    pos, neg = by["positive"][0], by["negation"][0]
    return {
        "PP": float(pos.p_new > pos.p_true), "PN": float(neg.p_new > neg.p_true),
        "PS": statistics.mean(float(m.p_new > m.p_true) for m in by.get("paraphrase", [])) if by.get("paraphrase") else None,
        "NS": statistics.mean(float(m.p_true > m.p_new) for m in by.get("neighborhood", [])) if by.get("neighborhood") else None,
        "p_new_pos": pos.p_new, "p_new_neg": neg.p_new,
    }


def summarise(rows: list[dict]) -> dict:
    def mean(k):
        vals = [r[k] for r in rows if r[k] is not None]
        return statistics.mean(vals) if vals else float("nan")

    out = {k: mean(k) for k in ("PP", "PN", "PS", "NS", "p_new_pos", "p_new_neg")}
    out["RE"] = out["PP"] - out["PN"]
    return out


def run(session: EditSession, method: str, facts: list[Fact], hp: dict) -> tuple[list[dict], float]:
    rows, seconds = [], []
    if method == "rome":
        for fact in facts:
            t0 = time.perf_counter()
            session.edit(fact, method, hp)
            seconds.append(time.perf_counter() - t0)
            fp = probes(fact)
            rows.append(score(session.measure_current(fact, fp), fp))
            session.undo()
    else:  # a batch method: all facts in one call
        t0 = time.perf_counter()
        session.edit(facts, method, hp)
        seconds.append((time.perf_counter() - t0) / len(facts))
        for fact in facts:
            fp = probes(fact)
            rows.append(score(session.measure_current(fact, fp), fp))
        session.reset()
    return rows, statistics.median(seconds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--weight", type=float, default=1.0)
    ap.add_argument("--methods", default="rome,memit")
    ap.add_argument("--mom2-tokens", type=int, default=20_000)
    ap.add_argument("--corpus", default=str(SHARED / "corpus" / "wikitext-2-test.txt"))
    ap.add_argument("--json", default=None, help="also write the per-fact rows here")
    args = ap.parse_args()

    handle = load_model()
    facts = load_facts(args.n)
    session = EditSession(handle, corpus=args.corpus)
    results = {("unedited", 0.0): ([score(session.measure_unedited(f, probes(f)), probes(f)) for f in facts], 0.0)}
    for method in args.methods.split(","):
        for w in (0.0, args.weight):
            hp = {"mom2_n_tokens": args.mom2_tokens, "negation_weight": w}
            results[(method, w)] = run(session, method, facts, hp)
            s = summarise(results[(method, w)][0])
            print(f"  done {method} w={w}: PP {s['PP']:.2f} PN {s['PN']:.2f}", flush=True)

    print(f"\nNegation-aware objective, {handle.name}, {len(facts)} CounterFact facts, mom2 tokens {args.mom2_tokens}")
    print(f"{'method':<10}{'weight':>7}{'ES=PP':>8}{'PN':>7}{'RE=PP-PN':>10}{'PS':>7}{'NS':>7}{'P(new|pos)':>12}{'P(new|neg)':>12}{'s/edit':>8}")
    for (method, w), (rows, sec) in results.items():
        s = summarise(rows)
        print(f"{method:<10}{w:>7.2f}{s['PP']:>8.2f}{s['PN']:>7.2f}{s['RE']:>10.2f}{s['PS']:>7.2f}{s['NS']:>7.2f}"
              f"{s['p_new_pos']:>12.3f}{s['p_new_neg']:>12.3f}{sec:>8.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({f"{m}@{w}": rows for (m, w), (rows, _) in results.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
