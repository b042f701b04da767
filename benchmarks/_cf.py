"""Shared by the method benchmarks: CounterFact facts, the probes scored, and the scores."""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from editlab import Fact, Neighbor
from editlab.facts import negate
from editlab.probes import Probe

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
COUNTERFACT = SHARED / "editing" / "counterfact-edit.json"
WIKITEXT = SHARED / "corpus" / "wikitext-2-test.txt"


def load_facts(n: int, start: int = 0) -> list[Fact]:
    if not COUNTERFACT.exists():
        raise SystemExit(f"CounterFact not found at {COUNTERFACT} (the shared test data)")
    records = json.loads(COUNTERFACT.read_text())[start:start + n]
    return [Fact(r["subject"], r["prompt"], r["target_new"], r["ground_truth"], paraphrases=(r["rephrase_prompt"],),
                 neighbors=(Neighbor(r["locality_prompt"], r["locality_ground_truth"]),), case_id=r["case_id"])
            for r in records]


def probes(fact: Fact) -> list[Probe]:
    """Prompt, its negation, paraphrases, neighbourhood prompts; teacher-forced, one greedy token."""
    neg, rule = negate(fact.prompt, fact.subject)
    out = [Probe("positive", fact.prompt, max_new_tokens=1), Probe("negation", neg, rule=rule, max_new_tokens=1)]
    out += [Probe("paraphrase", p, max_new_tokens=1) for p in fact.paraphrases]
    out += [Probe("neighborhood", nb.prompt, answer=nb.answer, max_new_tokens=1) for nb in fact.neighbors]
    return out


def score(measures, fact_probes) -> dict:
    """ES = PP: P(new) > P(true) on the prompt; PN: the same after the negated prompt; PS on
    paraphrases; NS: P(true) > P(new) on neighbourhood prompts (CounterFact's conventions)."""
    by: dict[str, list] = {}
    for p, m in zip(fact_probes, measures):
        by.setdefault(p.kind, []).append(m)
    pos, neg = by["positive"][0], by["negation"][0]
    para, neigh = by.get("paraphrase", []), by.get("neighborhood", [])
    return {
        "ES": float(pos.p_new > pos.p_true), "PN": float(neg.p_new > neg.p_true),
        "PS": statistics.mean(float(m.p_new > m.p_true) for m in para) if para else None,
        "NS": statistics.mean(float(m.p_true > m.p_new) for m in neigh) if neigh else None,
        "p_new_pos": pos.p_new, "p_new_neg": neg.p_new,
    }


def summarise(rows: list[dict]) -> dict:
    def mean(k):
        vals = [r[k] for r in rows if r.get(k) is not None]
        return statistics.mean(vals) if vals else float("nan")

    out = {k: mean(k) for k in ("ES", "PN", "PS", "NS", "p_new_pos", "p_new_neg")}
    out["RE"] = out["ES"] - out["PN"]  # rectified efficacy PP − PN (Liu et al. 2025)
    return out


def measured(session, fact: Fact, unedited: bool = False) -> dict:
    """The scores of one fact on the session's current model (or on the unedited model)."""
    fp = probes(fact)
    return score((session.measure_unedited if unedited else session.measure_current)(fact, fp), fp)


def edit_measure_undo(session, fact: Fact, method: str, hp) -> tuple[dict, float]:
    """One independent edit: (its scores, the edit's seconds); the edit is undone afterwards."""
    t0 = time.perf_counter()
    session.edit(fact, method, hp)
    seconds = time.perf_counter() - t0
    row = measured(session, fact)
    session.undo()
    return row, seconds


def statistics_args(ap) -> None:
    """The second-moment statistics options every method benchmark takes."""
    ap.add_argument("--mom2-tokens", type=int, default=20_000, help="statistics size for methods that use them")
    ap.add_argument("--corpus", default=str(WIKITEXT), help="statistics corpus (WikiText-2 test from the shared data)")
