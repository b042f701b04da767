"""Can an edit survive negation? The published objective against editlab's negation-aware ones,
measured out of sample.

    python benchmarks/negation.py --split dev|test|test2|test3 [--variants published,predicate,two-sided,...]
                                  [--weight 1.0] [--margin 1.0] [--method rome] [--n N] [--json FILE]
                                  [--negated-edits] [--sequential] [--set KEY=VALUE ...] [--aware-set KEY=VALUE ...]

The split is fixed (``SPLITS``): ``dev`` = CounterFact records 1000–1029, for choosing; ``test`` =
records 2000–2049, ``test2`` = records 3000–3049 and ``test3`` = records 4900–4949, each reported once
per variant. Per fact and variant, one independent edit on the default model (an
``editlab.runs.experiments`` plan: each fact from the unedited model), measured with editlab's probes
and scored by ``editlab.measure.metrics`` (``--sequential``: the split's facts edited one after
another into one model, every fact measured after the last edit). Every negated sentence comes from
``editlab.negate`` (grammatical; a prompt it cannot negate in a form is left out of that column, and
the counts are printed).

  ES PS NS         CounterFact's efficacy, paraphrase and neighbourhood scores
  PP PN            says the new target (P(new) > P(true)) after the prompt / after its "not" negation —
                   the sentence the negation-aware objectives optimise: IN SAMPLE for them
  PN_contraction   PN after "isn't/doesn't/can't ..."          } negation forms no objective
  PN_not_true      PN after "It is not true that ..."           } optimises: out of sample
  PN_never         PN after "... never ..."                     } (but "two-sided-forms" optimises "never")
  PN_para          PN on the negated paraphrases (out of sample)
  gen new/ans/nei  the first clause of the greedy text after the "not" prompt names the new target /
                   the true target or another answer / neither (a hedge or degenerate text)
  flip_same        other subjects' negated sentences of the same template (4 per fact, CounterFact
                   records 5000+): share whose P(new) vs P(true) preference differs from the unedited
                   model's — a write's reach into sentences it was not meant for
  gen_same         there, share whose greedy first clause differs from the unedited model's
  flip_other       the same on other relations' negated prompts (4 per fact, templates none of whose
  gen_other        answers is either target of the fact)
  NS_neg           the fact's own neighbourhood prompts negated: share keeping the unedited preference
  RE               rectified efficacy PP − PN (RE_<form> = PP − PN_<form> in the JSON)
  NP NN            (--negated-edits) the negated edit ("... not" → new), queried on the prompt / its negation
  FC               fact-check: the new statement rated truer than the true one (pairwise, calibrated form)
  ppl              perplexity on held-out WikiText-2 paragraphs after the edit
  s/edit           seconds per edit
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._cf import WIKITEXT, git_commit, load_facts  # noqa: E402
from editlab import EditSession, Fact, load_model  # noqa: E402
from editlab.cli.edit import parse_sets  # noqa: E402
from editlab.facts.fact import negate  # noqa: E402
from editlab.measure import metrics  # noqa: E402
from editlab.measure.judge import first_clause  # noqa: E402
from editlab.measure.muting import heldout_text  # noqa: E402
from editlab.measure.probes import Probe, default_probes  # noqa: E402
from editlab.runs import experiments  # noqa: E402
from editlab.runs.reproduce import machine  # noqa: E402

# (first CounterFact record, number of facts). test3 lies in editlab.methods.records.HELDOUT_RANGE (no
# trained component learned from it) and was fixed before any variant was run on it.
SPLITS = {"dev": (1000, 30), "test": (2000, 50), "test2": (3000, 50), "test3": (4900, 50)}
POOL = 5000  # other subjects and other relations come from CounterFact records POOL.. (no split uses them)
REACH = 4  # other-subject and other-relation sentences per fact
COLUMNS = (
    "ES",
    "PS",
    "NS",
    "PP",
    "PN",
    "PN_contraction",
    "PN_not_true",
    "PN_never",
    "PN_para",
    "PN_gen",
    "PN_gen_answer",
    "PN_gen_neither",
    "flip_same",
    "gen_same",
    "flip_other",
    "gen_other",
    "NS_neg",
    "RE",
    "NP",
    "NN",
    "FC",
    "ppl",
    "s/edit",
)
SHORT = {
    "PN_contraction": "PN n't",
    "PN_not_true": "PN not-true",
    "PN_never": "PN never",
    "PN_gen": "gen new",
    "PN_gen_answer": "gen ans",
    "PN_gen_neither": "gen nei",
}


def variants(weight: float, margin: float) -> dict[str, dict]:
    return {
        "published": {"negation_weight": 0.0},
        "push-down": {"negation_weight": weight, "negation_objective": "push-down"},
        "contrast": {"negation_weight": weight, "negation_objective": "contrast", "negation_margin": margin},
        "two-sided": {"negation_weight": weight, "negation_objective": "two-sided", "negation_margin": margin},
        "two-sided-forms": {  # optimised after "not" and "never"; the contraction, "It is not true that" and
            "negation_weight": weight,  # the negated paraphrases stay out of sample
            "negation_objective": "two-sided",
            "negation_margin": margin,
            "negation_forms": "not,never",
        },
        "two-sided-prefix": {  # optimised after "not" and "It is false that ...", o* kept after "It is true
            "negation_weight": weight,  # that ..."; "It is NOT TRUE that", the contraction, "never" and the
            "negation_objective": "two-sided",  # negated paraphrases stay out of sample
            "negation_margin": margin,
            "negation_forms": "not,false_that",
        },
        "predicate": {"negation_weight": weight, "negation_objective": "predicate", "negation_margin": margin},
    }


class Reach:
    """Negated sentences beyond the fact's own: other subjects of its template, other relations."""

    def __init__(self, pool: list[Fact]):
        self.by_template: dict[str, list[Fact]] = {}
        self.answers: dict[str, set[str]] = {}
        for f in pool:
            self.by_template.setdefault(f.template, []).append(f)
            self.answers.setdefault(f.template, set()).update({f.target_true, f.target_new})

    def same_template(self, fact: Fact) -> list[str]:
        """The fact's own "not" sentence with other subjects of its template."""
        neg, _ = fact.negated()
        if neg is None or fact.subject not in neg:
            return []
        others = [
            f.subject
            for f in self.by_template.get(fact.template, [])
            if f.subject != fact.subject and fact.subject not in f.subject and f.subject not in fact.subject
        ]
        return [neg.replace(fact.subject, s) for s in others[:REACH]]

    def other_relations(self, fact: Fact) -> list[str]:
        """ "not" sentences of templates none of whose answers is either of the fact's targets."""
        mine = {fact.target_true, fact.target_new}
        templates = list(self.by_template)
        start = sum(map(ord, fact.subject)) % len(templates)  # a different, fixed choice per fact
        out = []
        for template in templates[start:] + templates[:start]:
            facts = self.by_template[template]
            if template == fact.template or mine & self.answers[template]:
                continue
            neg, _ = facts[len(out) % len(facts)].negated()
            if neg is not None:
                out.append(neg)
            if len(out) == REACH:
                break
        return out


def probes_of(reach: Reach):
    """The default probes without the free generation and the predicate ablation (not scored here),
    plus negated prompts no objective trains on: each paraphrase negated, each neighbourhood prompt
    negated, and the reach sentences (other subjects of the template, other relations)."""

    def probes(fact: Fact, tokenizer):
        out = [p for p in default_probes(fact, tokenizer) if p.kind not in ("generation", "ablation")]
        extra = [(f"paraphrase: {rule}", neg) for neg, rule in (negate(p, fact.subject) for p in fact.paraphrases)]
        extra += [(f"neighbour: {rule}", neg) for neg, rule in (negate(n.prompt) for n in fact.neighbors)]
        extra += [("same-template", neg) for neg in reach.same_template(fact)]
        extra += [("other-relation", neg) for neg in reach.other_relations(fact)]
        return out + [
            Probe("negation", neg, rule=rule)
            for rule, neg in extra
            if neg is not None and not rule.split(": ")[-1].startswith("already-negated")
        ]

    return probes


def _rows(report, prefix):
    return [
        r
        for r in report.rows_of("negation")
        if (r.probe.rule or "").startswith(prefix) and r.after is not None and r.unedited is not None
    ]


def _mean(values):
    values = [float(v) for v in values if v is not None]
    return statistics.mean(values) if values else None


def reach_scores(report) -> dict:
    """flip_same/gen_same, flip_other/gen_other, NS_neg and PN_para (module docstring)."""
    out = {}
    for key, prefix in (("same", "same-template"), ("other", "other-relation")):
        rows = [r for r in _rows(report, prefix) if r.after.p_true is not None]
        out[f"flip_{key}"] = _mean(
            (r.after.p_new > r.after.p_true) != (r.unedited.p_new > r.unedited.p_true) for r in rows
        )
        out[f"gen_{key}"] = _mean(first_clause(r.after.greedy) != first_clause(r.unedited.greedy) for r in rows)
    rows = [r for r in _rows(report, "neighbour") if r.after.p_true is not None]
    out["NS_neg"] = _mean((r.after.p_new > r.after.p_true) == (r.unedited.p_new > r.unedited.p_true) for r in rows)
    out["PN_para"] = _mean(metrics.says_new(r.after) for r in _rows(report, "paraphrase"))
    return out


def paragraphs(n: int = 6, min_chars: int = 400) -> list[str]:
    text = WIKITEXT.read_text(encoding="utf-8")
    paras = [p.strip() for p in text.split("\n \n") if len(p.strip()) >= min_chars and not p.strip().startswith("=")]
    return paras[:n]


def perplexity(held) -> float:
    """exp(Σ nll / Σ tokens) over the held-out paragraphs (the engine's HeldOut evaluator)."""
    return math.exp(sum(s.nll for s in held) / sum(s.tokens for s in held))


def negated(fact: Fact) -> Fact | None:
    prompt, rule = fact.negated()
    return (
        None
        if prompt is None or rule.startswith("already-negated")
        else Fact(fact.subject, prompt, fact.target_new, fact.target_true, case_id=fact.case_id)
    )


def run_variant(handle, method, hp, facts, paras, negatives, probes, sequential: bool = False) -> dict:
    """Independent edits of every fact (an engine plan), each measured on its reports and the
    held-out perplexity, then undone (the next batch starts from the unedited model). With
    ``sequential``, the facts are edited one after another into one model instead, and every fact is
    measured once, after the last edit."""
    protocol, checkpoints = ("sequential", (len(facts),)) if sequential else ("independent", None)
    plan = experiments.Plan(tuple(facts), method, hp, protocol, checkpoints=checkpoints, online=False)

    def said(m, at):
        if sequential:
            print(f"    {len(facts)} sequential edits measured", file=sys.stderr, flush=True)
            return
        i = m.latest[0]
        s = metrics.fact_scores(m.values["reports"][i])
        print(
            f"    fact {i + 1}/{len(facts)}: ES {s['ES']} PN {s['PN']} PN_gen {s['PN_gen']} ({m.edit_s:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    reports = experiments.Reports(probes, scope="edited" if sequential else "latest")
    out = experiments.run(handle, plan, [reports, experiments.HeldOut(tuple(paras))], on_measured=said)
    rows, ppls = [], []
    failed = {i: f["error"] for f in out.failures for i in f["indices"]}
    for i, error in failed.items():
        print(f"    fact {i + 1}/{len(facts)} FAILED (left out of this variant's scores): {error}", file=sys.stderr)
    for m in out.measured:
        for i, report in m.values["reports"].items():
            if i in failed:  # the model was left without this edit: not a measurement of this variant
                continue
            rows.append(dict(metrics.fact_scores(report, negative=negatives.get(i)), **reach_scores(report)))
        ppls.append(perplexity(m.values["heldout"]))
    agg = summarise(rows) if rows else {}
    agg["ppl"] = statistics.median(ppls) if ppls else None
    agg["s/edit"] = statistics.median(out.edit_seconds.values()) if out.edit_seconds else None
    agg["failed"] = len(failed)
    agg["errors"] = sorted(set(failed.values()))[:3]
    return agg


def summarise(rows: list[dict]) -> dict:
    """Means over facts; each column over the facts that have it, with that count (``n_<column>``)."""
    agg = metrics.aggregate(rows)
    for key in ("PN_para", "NS_neg", "flip_same", "gen_same", "flip_other", "gen_other"):
        agg[key] = _mean(r.get(key) for r in rows)
    for key in ("PN", "PN_contraction", "PN_not_true", "PN_never", "PN_para", "flip_same", "flip_other"):
        agg[f"n_{key}"] = sum(r.get(key) is not None for r in rows)
    for key in ("PN_gen", "PN_contraction", "PN_not_true", "PN_never", "PN_para"):
        agg[f"RE_{key[3:]}"] = None if agg[key] is None or agg["PP"] is None else agg["PP"] - agg[key]
    return agg


def negative_reports(handle, method, facts, probes) -> dict:
    """The negated edit of each fact (an engine plan over the negated statements, published
    objective), probed on the original prompts: {fact index: report} for NP and NN."""
    pairs = [(i, negated(f)) for i, f in enumerate(facts)]
    index = [i for i, f in pairs if f is not None]
    if not index:
        return {}
    plan = experiments.Plan(
        tuple(pairs[i][1] for i in index), method, {"negation_weight": 0.0}, "independent", online=False
    )
    about = tuple(facts[i] for i in index)
    out = experiments.run(handle, plan, [experiments.Reports(probes, about=about)])
    return {index[k]: r for m in out.measured for k, r in m.values["reports"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=sorted(SPLITS), default="dev")
    ap.add_argument("--variants", default="published,push-down,contrast")
    ap.add_argument("--weight", type=float, default=1.0, help="negation_weight of the negation-aware variants")
    ap.add_argument("--margin", type=float, default=1.0, help="the contrast variant's margin (nats)")
    ap.add_argument("--method", default="rome")
    ap.add_argument("--n", type=int, default=None, help="first N facts of the split (default: all)")
    ap.add_argument(
        "--negated-edits", action="store_true", help="also NP/NN: one negated edit per fact (doubles the time)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter of every variant, the published one included (repeatable)",
    )
    ap.add_argument(
        "--aware-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyperparameter of the negation-aware variants only; the published one keeps "
        "its own (repeatable)",
    )
    ap.add_argument(
        "--sequential",
        action="store_true",
        help="edit the split's facts one after another into one model and measure every fact after the last "
        "edit (default: each fact edited independently)",
    )
    ap.add_argument("--json", default=None, help="also write the run here (JSON)")
    ap.add_argument("--render", default=None, metavar="FILE", help="print the table of a stored run and stop")
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(Path(args.render).read_text())))
        return
    extra, aware = parse_sets(args.set), parse_sets(args.aware_set)

    commit = git_commit()  # the code this run measures: taken before anything else can change
    start, n = SPLITS[args.split]
    facts = load_facts(min(n, args.n or n), start=start)
    probes = probes_of(Reach(load_facts(10_000 - POOL, start=POOL)))
    handle = load_model()
    session = EditSession(handle, online=False)  # the unedited reports (cached per model and probe set)
    paras = paragraphs()
    chosen = {
        name: {**hp, **extra, **(aware if name != "published" else {})}
        for name, hp in variants(args.weight, args.margin).items()
    }
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in chosen]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(chosen)}")
    print(
        f"# negation survival, {args.method} on {handle.name}, CounterFact {args.split} split "
        f"(records {start}–{start + len(facts) - 1}, {len(facts)} facts); weight {args.weight}, margin {args.margin}"
        + "".join(f"; {k} = {v}" for k, v in extra.items())
        + "".join(f"; {k} = {v} (negation-aware variants only)" for k, v in aware.items())
    )
    t0 = time.perf_counter()
    negatives = negative_reports(handle, args.method, facts, probes) if args.negated_edits else {}
    reports = [session.compare(f, probes(f, handle.tokenizer)) for f in facts]
    unedited = summarise([dict(metrics.fact_scores(r), **reach_scores(r)) for r in reports])
    table = {}
    for name in names:
        print(f"  {name} ...", file=sys.stderr, flush=True)
        table[name] = run_variant(
            handle, args.method, chosen[name], facts, paras, negatives, probes, sequential=args.sequential
        )
    with session.edited() as m:
        base_ppl = perplexity(heldout_text(m.model, m.tokenizer, paras, max_tokens=128))
    unedited_row = dict(unedited, ppl=base_ppl)
    report = {
        "split": args.split,
        "records": [start, start + len(facts)],
        "weight": args.weight,
        "margin": args.margin,
        "method": args.method,
        "model": handle.name,
        "overrides": extra,
        "aware_overrides": aware,
        "negated_edits": bool(negatives),
        "sequential": args.sequential,
        "factcheck_calibration": session.factcheck_calibration().to_dict(),
        "machine": machine(handle),
        "date": datetime.date.today().isoformat(),
        "commit": commit,
        "seconds": round(time.perf_counter() - t0),
        "unedited": unedited_row,
        "variants": table,
    }
    print(markdown(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


def markdown(report: dict) -> str:
    """The table of one stored run (``--json``), with what ran, where and when: ``--render FILE``."""
    start, stop = report["records"]
    lines = [
        f"**{report['method']}** on {report.get('model', 'smollm2-135m-instruct')}, CounterFact "
        f"{report['split']} split (records {start}–{stop - 1}, {stop - start} facts, "
        + (
            "edited one after another into one model, every fact measured after the last edit"
            if report.get("sequential")
            else "each edited independently"
        )
        + f"); negation-aware weight {report['weight']}, margin {report.get('margin', '?')}"
        + "".join(f"; {k} = {v}" for k, v in report.get("overrides", {}).items())
        + "".join(f"; {k} = {v} (negation-aware variants)" for k, v in report.get("aware_overrides", {}).items())
        + f". Run on {report.get('date', '?')}, commit {report.get('commit', '?')}, {report.get('machine', '?')}, "
        f"{report.get('seconds', '?')} s.",
        "",
        "| variant | " + " | ".join(SHORT.get(c, c) for c in COLUMNS) + " |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for name, row in [("unedited", report["unedited"])] + list(report["variants"].items()):
        lines.append(
            f"| {name} | " + " | ".join("–" if row.get(c) is None else f"{row[c]:.2f}" for c in COLUMNS) + " |"
        )
    counts = {k[2:]: v for k, v in report["unedited"].items() if k.startswith("n_")}
    lines += [
        "",
        f"Facts with each column (of {stop - start}): "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + (
            "; NP/NN from one negated edit per fact (published objective, shared by every variant)"
            if report.get("negated_edits")
            else "; NP/NN not run"
        )
        + ".",
        f"Fact-check calibration: {report['factcheck_calibration']['sentence']}.",
    ]
    for name, row in report["variants"].items():
        if row.get("failed"):
            lines.append(
                f"**{name}: {row['failed']} of {stop - start} edits failed** and are left out of its row: "
                + "; ".join(row.get("errors", []))
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
