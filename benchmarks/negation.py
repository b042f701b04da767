"""Can an edit survive negation? The published objective against editlab's negation-aware ones.

    python benchmarks/negation.py --split dev|test|test2 [--variants published,push-down,contrast]
                                  [--weight 1.0] [--margin 1.0] [--method rome] [--n N] [--json FILE]
                                  [--set KEY=VALUE ...]   (every variant, the published one included)
                                  [--aware-set KEY=VALUE ...]   (the negation-aware variants only)

The split is fixed (``SPLITS``, committed before any variant was designed): ``dev`` = CounterFact
records 1000–1029, for choosing; ``test`` = records 2000–2049, reported once; ``test2`` = records
3000–3049, fixed later (session 11) for a variant chosen after the test report, reported once. Per
fact and variant, one independent edit on the default model (an ``editlab.experiments`` plan: each
fact from the unedited model), measured with editlab's probes and scored by ``editlab.metrics``:

  ES PS NS         CounterFact's efficacy, paraphrase and neighbourhood scores
  PP PN            says the new target after the prompt / after its negation (P(new) > P(true))
  PN_gen           the greedy continuation of the negated prompt starts with the new target
  PN_para          PN on the negated paraphrases (sentences no negation-aware term trains on)
  NS_neg           on the negated neighbourhood prompts (other subjects, "... is not"): the share whose
                   P(new) vs P(true) comparison is the unedited model's (the predicate write's bleed)
  bleed            there, the mean |change| of log P(new) − log P(true) from the unedited model (nats)
  bleed_s          the same change signed, toward the true target: log P(true) − log P(new), after − unedited
  RE               rectified efficacy PP − PN (and RE_gen = PP − PN_gen)
  NP NN            the negated edit ("... is not" → new), queried on the prompt / its negation
  FC               fact-check accuracy (True/False verdicts agree with the edited world)
  ppl              perplexity on held-out WikiText-2 paragraphs after the edit
  s/edit           seconds per edit

NP/NN come from one negated edit per fact, written with the published objective: every variant's
negation term needs the negation of the written prompt, and a prompt already negated has none, so
the variants write the negated edit identically (the column is shared and marked so).
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._cf import WIKITEXT, load_facts  # noqa: E402
from editlab import EditSession, Fact, experiments, load_model, metrics  # noqa: E402
from editlab.cli.edit import parse_sets  # noqa: E402
from editlab.facts import negate  # noqa: E402
from editlab.muting import heldout_text  # noqa: E402
from editlab.probes import Probe, default_probes  # noqa: E402

SPLITS = {"dev": (1000, 30), "test": (2000, 50), "test2": (3000, 50)}  # (first CounterFact record, number of facts)
# test2 was fixed in session 11, before any run on it: "test" had been reported on, so a variant chosen
# after that report is reported on records nobody has looked at.
COLUMNS = ("ES", "PS", "NS", "PP", "PN", "PN_gen", "PN_para", "NS_neg", "bleed", "bleed_s", "RE", "RE_gen", "NP", "NN", "FC", "ppl",
           "s/edit")


def variants(weight: float, margin: float) -> dict[str, dict]:
    return {
        "published": {"negation_weight": 0.0},
        "push-down": {"negation_weight": weight, "negation_objective": "push-down"},
        "contrast": {"negation_weight": weight, "negation_objective": "contrast", "negation_margin": margin},
        "two-sided": {"negation_weight": weight, "negation_objective": "two-sided", "negation_margin": margin},
        "predicate": {"negation_weight": weight, "negation_objective": "predicate", "negation_margin": margin},
    }


def probes_of(fact: Fact, tokenizer):
    """The default probes without the free generation and the predicate ablation (not scored here),
    plus each paraphrase negated: prompts no objective sees (the negation-aware terms train on the
    edit prompt's negation), so PN_para tells whether a gain carries beyond the trained sentence; and
    each neighbourhood prompt negated (other subjects' "... is not"), where a write at the "not"
    token would bleed (NS_neg, bleed)."""
    out = [p for p in default_probes(fact, tokenizer) if p.kind not in ("generation", "ablation")]
    for para in fact.paraphrases:
        neg, rule = negate(para, fact.subject)
        if not rule.startswith("already-negated"):
            out.append(Probe("negation", neg, rule=f"paraphrase {rule}"))
    for n in fact.neighbors:
        neg, rule = negate(n.prompt)
        if not rule.startswith("already-negated"):
            out.append(Probe("negation", neg, rule=f"neighbour {rule}"))
    return out


def neighbour_bleed(report) -> dict:
    """NS_neg and bleed (module docstring) over the negated neighbourhood prompts; None without any."""
    rows = [r for r in report.rows_of("negation") if (r.probe.rule or "").startswith("neighbour")
            and r.after is not None and r.unedited is not None and r.after.p_true is not None and r.unedited.p_true is not None]
    if not rows:
        return {"NS_neg": None, "bleed": None, "bleed_s": None}

    def odds(m):
        return math.log(max(m.p_new, 1e-30)) - math.log(max(m.p_true, 1e-30))

    return {"NS_neg": statistics.mean(float((odds(r.after) > 0) == (odds(r.unedited) > 0)) for r in rows),
            "bleed": statistics.mean(abs(odds(r.after) - odds(r.unedited)) for r in rows),
            "bleed_s": statistics.mean(odds(r.unedited) - odds(r.after) for r in rows)}


def paraphrase_pn(report) -> float | None:
    """PN on the negated paraphrases (editlab.metrics.says_new on each)."""
    said = [metrics.says_new(r.after) for r in report.rows_of("negation") if (r.probe.rule or "").startswith("paraphrase")]
    said = [float(v) for v in said if v is not None]
    return statistics.mean(said) if said else None


def paragraphs(n: int = 6, min_chars: int = 400) -> list[str]:
    text = WIKITEXT.read_text(encoding="utf-8")
    paras = [p.strip() for p in text.split("\n \n") if len(p.strip()) >= min_chars and not p.strip().startswith("=")]
    return paras[:n]


def perplexity(held) -> float:
    """exp(Σ nll / Σ tokens) over the held-out paragraphs (the engine's HeldOut evaluator)."""
    return math.exp(sum(s.nll for s in held) / sum(s.tokens for s in held))


def negated(fact: Fact) -> Fact | None:
    prompt, rule = negate(fact.prompt, fact.subject)
    return None if rule.startswith("already-negated") else Fact(fact.subject, prompt, fact.target_new, fact.target_true,
                                                                 case_id=fact.case_id)


def run_variant(handle, method, hp, facts, paras, negatives) -> dict:
    """Independent edits of every fact (an engine plan), each measured on its reports and the
    held-out perplexity, then undone (the next batch starts from the unedited model)."""
    plan = experiments.Plan(tuple(facts), method, hp, "independent", online=False)

    def said(m, at):
        i = m.latest[0]
        s = metrics.fact_scores(m.values["reports"][i])
        print(f"    fact {i + 1}/{len(facts)}: ES {s['ES']} PN {s['PN']} PN_gen {s['PN_gen']} "
              f"({m.edit_s:.1f} s)", file=sys.stderr, flush=True)

    out = experiments.run(handle, plan, [experiments.Reports(probes_of), experiments.HeldOut(tuple(paras))],
                          on_measured=said)
    rows, ppls = [], []
    for m in out.measured:
        (i,) = m.latest
        report = m.values["reports"][i]
        rows.append(dict(metrics.fact_scores(report, negative=negatives.get(i)), PN_para=paraphrase_pn(report),
                         **neighbour_bleed(report)))
        ppls.append(perplexity(m.values["heldout"]))
    agg = summarise(rows)
    agg["ppl"] = statistics.median(ppls)
    agg["s/edit"] = statistics.median(out.edit_seconds.values())
    return agg


def summarise(rows: list[dict]) -> dict:
    agg = metrics.aggregate(rows)
    agg["RE_gen"] = agg["PP"] - agg["PN_gen"]
    for key in ("PN_para", "NS_neg", "bleed", "bleed_s"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        agg[key] = statistics.mean(vals) if vals else None
    return agg


def negative_reports(handle, method, facts) -> dict:
    """The negated edit of each fact (an engine plan over the negated statements, published
    objective), probed on the original prompts: {fact index: report} for NP and NN."""
    pairs = [(i, negated(f)) for i, f in enumerate(facts)]
    index = [i for i, f in pairs if f is not None]
    if not index:
        return {}
    plan = experiments.Plan(tuple(pairs[i][1] for i in index), method, {"negation_weight": 0.0}, "independent",
                            online=False)
    about = tuple(facts[i] for i in index)
    out = experiments.run(handle, plan, [experiments.Reports(probes_of, about=about)])
    return {index[k]: r for m in out.measured for k, r in m.values["reports"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=sorted(SPLITS), default="dev")
    ap.add_argument("--variants", default="published,push-down,contrast")
    ap.add_argument("--weight", type=float, default=1.0, help="negation_weight of the negation-aware variants")
    ap.add_argument("--margin", type=float, default=1.0, help="the contrast variant's margin (nats)")
    ap.add_argument("--method", default="rome")
    ap.add_argument("--n", type=int, default=None, help="first N facts of the split (default: all)")
    ap.add_argument("--no-negated-edits", action="store_true", help="skip NP/NN (halves the time)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a hyperparameter of every variant, the published one included (repeatable)")
    ap.add_argument("--aware-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a hyperparameter of the negation-aware variants only; the published one keeps "
                         "its own (repeatable)")
    ap.add_argument("--json", default=None, help="also write the table here")
    args = ap.parse_args()
    extra, aware = parse_sets(args.set), parse_sets(args.aware_set)

    start, n = SPLITS[args.split]
    facts = load_facts(min(n, args.n or n), start=start)
    handle = load_model()
    session = EditSession(handle, online=False)  # the unedited reports (cached per model and probe set)
    paras = paragraphs()
    chosen = {name: {**hp, **extra, **(aware if name != "published" else {})}
              for name, hp in variants(args.weight, args.margin).items()}
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in chosen]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(chosen)}")
    print(f"# negation survival, {args.method} on {handle.name}, CounterFact {args.split} split "
          f"(records {start}–{start + len(facts) - 1}, {len(facts)} facts); weight {args.weight}, margin {args.margin}"
          + "".join(f"; {k} = {v}" for k, v in extra.items())
          + "".join(f"; {k} = {v} (negation-aware variants only)" for k, v in aware.items()))
    t0 = time.perf_counter()
    negatives = {} if args.no_negated_edits else negative_reports(handle, args.method, facts)
    reports = [session.compare(f, probes_of(f, handle.tokenizer)) for f in facts]
    unedited = summarise([dict(metrics.fact_scores(r), PN_para=paraphrase_pn(r)) for r in reports])
    table = {}
    for name in names:
        print(f"  {name} ...", file=sys.stderr, flush=True)
        table[name] = run_variant(handle, args.method, chosen[name], facts, paras, negatives)
    with session.edited() as m:
        base_ppl = perplexity(heldout_text(m.model, m.tokenizer, paras, max_tokens=128))
    header = "| variant | " + " | ".join(COLUMNS) + " |"
    print(header)
    print("|" + "---|" * (len(COLUMNS) + 1))
    unedited_row = dict(unedited, ppl=base_ppl)
    for name, row in [("unedited", unedited_row)] + list(table.items()):
        cells = []
        for c in COLUMNS:
            v = row.get(c)
            cells.append("–" if v is None else f"{v:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"(NP/NN: one negated edit per fact with the published objective, shared by every variant; "
          f"total {time.perf_counter() - t0:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "records": [start, start + len(facts)],
                                               "weight": args.weight, "margin": args.margin, "method": args.method,
                                               "overrides": extra, "aware_overrides": aware,
                                               "unedited": unedited_row, "variants": table}, indent=1))


if __name__ == "__main__":
    main()
