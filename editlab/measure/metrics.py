"""Edit-quality metrics under the field's conventions, computed from probe results.

Three families, each defined per fact and then averaged over facts (formulas and sources in
docs/metrics.md):

- **CounterFact** (Meng et al. 2022, ROME §3 / MEMIT §5): ES, PS, NS and their magnitudes EM, PM,
  NM from the teacher-forced probabilities P(new), P(true); score S = harmonic mean of ES, PS, NS.
- **Token accuracy** (EasyEdit; zsRE as in MEND): teacher-forced top-1 token accuracy of the new
  target on the prompt (rewrite) and paraphrases (rephrase), of KnowEdit's portability answers, and
  locality = agreement of the scored model's top-1 tokens with the unedited model's.
- **Negation and fact-check** (Liu et al. 2025, "Is Model Editing Built on Sand?"): PP, PN, NP, NN,
  rectified efficacy PP − PN, and True/False fact-check accuracy.

Every function takes a ``column`` (``"unedited"``, ``"before"`` or ``"after"`` of a
:class:`~editlab.measure.probes.ProbeReport`), so the unedited model is scored by the same code.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from editlab.facts.negation import FORMS
from editlab.measure.factcheck import prefers_statement
from editlab.measure.judge import judge
from editlab.measure.probes import Measure, ProbeReport, negation_form
from editlab.measure.tokenacc import TokenPrediction, agreement


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    convention: str  # "counterfact" | "token" | "negation"
    higher_is_better: bool
    description: str


METRICS: tuple[Metric, ...] = (
    Metric("ES", "Efficacy (ES)", "counterfact", True, "mean[P(new) > P(true)] on the edit prompt"),
    Metric("PS", "Paraphrase (PS)", "counterfact", True, "mean[P(new) > P(true)] on paraphrases"),
    Metric("NS", "Neighbourhood (NS)", "counterfact", True, "mean[P(true) > P(new)] on neighbourhood prompts"),
    Metric("S", "Score (S)", "counterfact", True, "harmonic mean of ES, PS, NS"),
    Metric("EM", "Efficacy magnitude (EM)", "counterfact", True, "mean[P(new) − P(true)] on the edit prompt"),
    Metric("PM", "Paraphrase magnitude (PM)", "counterfact", True, "mean[P(new) − P(true)] on paraphrases"),
    Metric(
        "NM", "Neighbourhood magnitude (NM)", "counterfact", True, "mean[P(true) − P(new)] on neighbourhood prompts"
    ),
    Metric(
        "rewrite_acc",
        "Rewrite acc.",
        "token",
        True,
        "teacher-forced top-1 token accuracy of the new target on the prompt",
    ),
    Metric("rephrase_acc", "Rephrase acc.", "token", True, "the same on paraphrases"),
    Metric("locality", "Locality", "token", True, "top-1 token agreement with the unedited model on locality prompts"),
    Metric("portability_acc", "Portability acc.", "token", True, "token accuracy of KnowEdit's portability answers"),
    Metric("PP", "PP", "negation", True, "positive edit, positive query: says the new target"),
    Metric("PN", "PN", "negation", False, "positive edit, negated query: still says the new target"),
    Metric(
        "PN_gen",
        "PN (generation)",
        "negation",
        False,
        "positive edit, negated query: the first clause of the greedy continuation names the new target",
    ),
    Metric(
        "PN_gen_answer",
        "PN (gen.): another answer",
        "negation",
        True,
        "negated query: the first clause names the true target or another answer instead",
    ),
    Metric(
        "PN_gen_neither",
        "PN (gen.): neither",
        "negation",
        False,
        "negated query: the first clause names no answer (a hedge or degenerate text)",
    ),
    Metric(
        "PN_contraction",
        "PN (isn't/doesn't)",
        "negation",
        False,
        "PN on the contracted negation (\"isn't\", \"doesn't\", \"can't\")",
    ),
    Metric("PN_not_true", "PN (It is not true that)", "negation", False, "PN on \"It is not true that\" + the prompt"),
    Metric("PN_never", "PN (never)", "negation", False, "PN on the prompt negated with \"never\""),
    Metric("NP", "NP", "negation", False, "negated edit, positive query: says the new target"),
    Metric("NN", "NN", "negation", True, "negated edit, negated query: says the new target"),
    Metric("RE", "Rectified efficacy (PP − PN)", "negation", True, "PP − PN"),
    Metric(
        "FC",
        "Fact-check agrees",
        "negation",
        True,
        "pairwise: the new statement gets a higher normalised P(True) than the true one",
    ),
    Metric(
        "FC_abs",
        "Fact-check acc. (absolute)",
        "negation",
        True,
        "absolute verdicts agree with the edit (new: True, true: False), the papers' definition",
    ),
    Metric(
        "FC_new",
        "Fact-check: new is True",
        "negation",
        True,
        "absolute verdict: P(True) > P(False) for the new statement",
    ),
)
METRIC_KEYS = tuple(m.key for m in METRICS)
CONVENTIONS = {
    "counterfact": "CounterFact (ROME/MEMIT)",
    "token": "Token accuracy (EasyEdit/zsRE)",
    "negation": "Negation & fact-check (illusory success)",
}


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def hmean(values: Sequence[float | None]) -> float | None:
    """Harmonic mean; ``None`` if any value is missing, 0 if any is 0 (ROME's ``scipy.stats.hmean``)."""
    if not values or any(v is None for v in values):
        return None
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def _rows(report: ProbeReport, kind: str, column: str, rule: str | None = None) -> list[Measure]:
    return [
        getattr(r, column)
        for r in report.rows
        if r.probe.kind == kind and (rule is None or r.probe.rule == rule) and getattr(r, column) is not None
    ]


def _first(report: ProbeReport, kind: str, column: str, rule: str | None = None) -> Measure | None:
    rows = _rows(report, kind, column, rule)
    return rows[0] if rows else None


def negated_measure(report: ProbeReport, column: str, form: str = "not") -> Measure | None:
    """The measure of the fact's negation probe in one form (:func:`editlab.measure.probes.negation_form`)."""
    return next(
        (
            getattr(r, column)
            for r in report.rows_of("negation")
            if negation_form(r.probe) == form and getattr(r, column) is not None
        ),
        None,
    )


def _compared(m: Measure) -> bool:
    return m.p_new is not None and m.p_true is not None


def says_new(m: Measure | None) -> bool | None:
    """Does the model give the new target here? P(new) > P(true) when the fact has a true target;
    otherwise whether the greedy continuation starts with the new target."""
    if m is None:
        return None
    if _compared(m):
        return m.p_new > m.p_true
    return m.top1_is_new


# ---- CounterFact convention ------------------------------------------------------------------------
def counterfact_scores(report: ProbeReport, column: str = "after") -> dict[str, float | None]:
    """One fact's ES, PS, NS, EM, PM, NM (``None`` where the fact has no such prompts or no true target)."""
    pos = [m for m in _rows(report, "positive", column) if _compared(m)][:1]
    para = [m for m in _rows(report, "paraphrase", column) if _compared(m)]
    neigh = [m for m in _rows(report, "neighborhood", column) if _compared(m)]
    return {
        "ES": _mean(float(m.p_new > m.p_true) for m in pos),
        "EM": _mean(m.p_new - m.p_true for m in pos),
        "PS": _mean(float(m.p_new > m.p_true) for m in para),
        "PM": _mean(m.p_new - m.p_true for m in para),
        "NS": _mean(float(m.p_true > m.p_new) for m in neigh),
        "NM": _mean(m.p_true - m.p_new for m in neigh),
    }


# ---- token-accuracy convention ---------------------------------------------------------------------
@dataclass(frozen=True)
class TokenEvidence:
    """One fact's teacher-forced predictions for one model state.

    ``locality`` and ``locality_reference`` are the same (prompt, answer) queries on the scored state
    and on the unedited model; for the unedited model itself they are the same predictions.
    """

    rewrite: TokenPrediction | None = None
    rephrase: tuple[TokenPrediction, ...] = ()
    locality: tuple[TokenPrediction, ...] = ()
    locality_reference: tuple[TokenPrediction, ...] = ()
    portability: tuple[TokenPrediction, ...] = ()

    def to_dict(self) -> dict:
        return {
            "rewrite": self.rewrite.to_dict() if self.rewrite else None,
            **{
                k: [p.to_dict() for p in getattr(self, k)]
                for k in ("rephrase", "locality", "locality_reference", "portability")
            },
        }

    @classmethod
    def from_dict(cls, d: dict) -> TokenEvidence:
        return cls(
            rewrite=TokenPrediction.from_dict(d["rewrite"]) if d.get("rewrite") else None,
            **{
                k: tuple(TokenPrediction.from_dict(p) for p in d.get(k) or ())
                for k in ("rephrase", "locality", "locality_reference", "portability")
            },
        )


def token_scores(ev: TokenEvidence) -> dict[str, float | None]:
    if len(ev.locality) != len(ev.locality_reference):
        raise ValueError("locality needs one reference prediction per locality query")
    return {
        "rewrite_acc": ev.rewrite.accuracy if ev.rewrite else None,
        "rephrase_acc": _mean(p.accuracy for p in ev.rephrase),
        "locality": _mean(agreement(a, r) for a, r in zip(ev.locality, ev.locality_reference)),
        "portability_acc": _mean(p.accuracy for p in ev.portability),
    }


# ---- negation and fact-check -----------------------------------------------------------------------
def negated_text_names(report: ProbeReport, m: Measure | None) -> str | None:
    """What the greedy text after the negated prompt asserts (:func:`editlab.measure.judge.judge` on its first
    clause, the fact's neighbours' answers counting as other answers): "new", "answer", "neither"."""
    if m is None or not m.greedy and m.top1_is_new is None:
        return None
    fact = report.fact
    return judge(m.greedy, fact.target_new, fact.target_true, [n.answer for n in fact.neighbors if n.answer])


def _generated(report: ProbeReport, m: Measure | None) -> dict[str, float | None]:
    """The generation definition of PN, three ways: names the new target / another answer / neither."""
    verdict = negated_text_names(report, m)
    if verdict is None:
        return dict.fromkeys(("PN_gen", "PN_gen_answer", "PN_gen_neither"))
    return {
        "PN_gen": float(verdict == "new"),
        "PN_gen_answer": float(verdict == "answer"),
        "PN_gen_neither": float(verdict == "neither"),
    }


def negation_scores(
    report: ProbeReport, negative: ProbeReport | None = None, column: str = "after"
) -> dict[str, float | None]:
    """PP/PN from the positive edit's report; NP/NN from ``negative``, the report of the *negated*
    edit ("{prompt} not" → new target) measured on the same positive and negated prompts.

    PN is None for a fact whose prompt has no negation probe (it could not be negated as English):
    such a fact is left out of PN and counted by :func:`aggregate` (``n_negated``). FC is the
    pairwise fact-check (:mod:`editlab.measure.factcheck`), FC_new the absolute verdict on the new statement."""

    def flag(m):
        v = says_new(m)
        return None if v is None else float(v)

    tf_new = _first(report, "true_false", column, "new")
    tf_true = _first(report, "true_false", column, "true")
    pairwise = prefers_statement(tf_new, tf_true)
    checks = [
        float(m.verdict is want)
        for m, want in ((tf_new, True), (tf_true, False))
        if m is not None and m.verdict is not None
    ]
    out = {
        "PP": flag(_first(report, "positive", column)),
        "PN": flag(negated_measure(report, column)),
        **_generated(report, negated_measure(report, column)),
        **{f"PN_{form}": flag(negated_measure(report, column, form)) for form in FORMS if form != "not"},
        "NP": flag(_first(negative, "positive", column)) if negative else None,
        "NN": flag(negated_measure(negative, column)) if negative else None,
        "FC": None if pairwise is None else float(pairwise),
        "FC_abs": _mean(checks),
        "FC_new": None if tf_new is None or tf_new.verdict is None else float(tf_new.verdict),
    }
    return out


# ---- one fact, all conventions; many facts ---------------------------------------------------------
def fact_scores(
    report: ProbeReport, tokens: TokenEvidence | None = None, negative: ProbeReport | None = None, column: str = "after"
) -> dict[str, float | None]:
    """Every per-fact value (the aggregates S and RE are formed over facts by :func:`aggregate`)."""
    out = counterfact_scores(report, column)
    out.update(
        token_scores(tokens)
        if tokens
        else dict.fromkeys(("rewrite_acc", "rephrase_acc", "locality", "portability_acc"))
    )
    out.update(negation_scores(report, negative, column))
    return out


def aggregate(per_fact: Sequence[Mapping[str, float | None]]) -> dict[str, float | None]:
    """Mean of each per-fact value over the facts that have it; S = hmean(ES, PS, NS) and
    RE = PP − PN as the papers compute them, over the facts that have both (a fact whose prompt could
    not be negated is left out of PN and RE, not scored as a survival or a failure). ``n`` = number
    of facts, ``n_negated`` = how many of them have a negation probe."""
    keys = [k for k in METRIC_KEYS if k not in ("S", "RE")]
    out: dict[str, float | None] = {k: _mean(f.get(k) for f in per_fact) for k in keys}
    out["S"] = hmean([out["ES"], out["PS"], out["NS"]])
    both = [f for f in per_fact if f.get("PP") is not None and f.get("PN") is not None]
    out["RE"] = _mean(f["PP"] for f in both) - _mean(f["PN"] for f in both) if both else None
    out["n"] = len(per_fact)
    out["n_negated"] = sum(f.get("PN") is not None for f in per_fact)
    return {k: out.get(k) for k in (*METRIC_KEYS, "n", "n_negated")}


def stderr(values: Iterable[float | None]) -> float | None:
    """Standard error of a per-fact mean (for error bars)."""
    vals = [float(v) for v in values if v is not None]
    if len(vals) < 2:
        return None
    return statistics.stdev(vals) / math.sqrt(len(vals))
