"""The True/False fact-check probe, and whether it can be read on a model at all.

An edit's fact-check asks the model "True or false: <prompt> <target>." for the new and the true
target. A small model may answer "False" (or "True") to nearly everything, so its verdict says
nothing about the fact; editlab therefore

* reads the probe **pairwise**: the model "believes" the new target when its normalised
  P(True) = P(True) / (P(True) + P(False)) is higher for the new statement than for the true one
  (a constant bias towards one answer cancels); the absolute verdict P(True) > P(False) is kept
  beside it;
* **calibrates** the probe once per model on statements it knows: bundled common-knowledge facts
  (``editlab/data/factcheck_statements.json``, split ``calibrate``) that the model completes with
  the right answer rather than a foil of the same relation; each gives a true and a counterfactual
  statement. Pairwise accuracy and the absolute verdicts' balanced accuracy come with 95 %
  intervals;
* raises **no finding** when the calibration's interval reaches chance (0.5): the report says
  "the fact-check probe is at chance on this model" instead.

The forms (how the question is put) were compared on the bundled ``select`` split only
(``benchmarks/factcheck_forms.py``); the calibration uses the disjoint ``calibrate`` split.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache

from editlab.core.paths import PACKAGE_DATA

DATA = PACKAGE_DATA / "factcheck_statements.json"
FORMS = ("plain", "chat", "fewshot", "chat_fewshot")
CHANCE = 0.5
VERSION = 1  # of the calibration procedure (part of its cache key)


@lru_cache(maxsize=1)
def _data() -> dict:
    return json.loads(DATA.read_text(encoding="utf-8"))


def demonstrations() -> tuple[tuple[str, str], ...]:
    """The few-shot (question, answer) pairs: statements of no relation the calibration uses."""
    return tuple((question(d["statement"]), "True" if d["label"] else "False") for d in _data()["demonstrations"])


def statements(split: str) -> list[dict]:
    """The bundled facts of one split (``select`` or ``calibrate``)."""
    if split not in ("select", "calibrate"):
        raise ValueError(f"split {split!r}: use 'select' or 'calibrate'")
    return [f for f in _data()["facts"] if f["split"] == split]


def question(statement: str) -> str:
    return f"True or false: {statement.strip().rstrip('.')}."


def default_form(tokenizer) -> str:
    """The form adopted on the ``select`` split of the default model: the chat template with the
    demonstrations as earlier turns where the tokenizer has one, else plain few-shot text."""
    return "chat_fewshot" if getattr(tokenizer, "chat_template", None) else "fewshot"


def check_form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"fact-check form {form!r} is not one of {', '.join(FORMS)}")
    return form


def probe_fields(form: str) -> dict:
    """What a true_false :class:`~editlab.measure.probes.Probe` of this form carries besides its question:
    ``chat`` (render through the chat template) and ``demos`` (earlier question/answer turns)."""
    check_form(form)
    return {"chat": form.startswith("chat"), "demos": demonstrations() if form.endswith("fewshot") else ()}


def normalised_true(p_yes: float | None, p_no: float | None) -> float | None:
    """P(True) / (P(True) + P(False)); None when neither answer has any mass."""
    if p_yes is None or p_no is None or p_yes + p_no <= 0:
        return None
    return p_yes / (p_yes + p_no)


def prefers_statement(m_a, m_b) -> bool | None:
    """The pairwise reading: is statement a rated truer than statement b (normalised P(True))?"""
    a = normalised_true(getattr(m_a, "p_yes", None), getattr(m_a, "p_no", None)) if m_a else None
    b = normalised_true(getattr(m_b, "p_yes", None), getattr(m_b, "p_no", None)) if m_b else None
    return None if a is None or b is None else a > b


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """95 % Wilson score interval of a proportion k/n."""
    if n <= 0:
        return None, None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def balanced(
    tp: int, n_pos: int, tn: int, n_neg: int, z: float = 1.96
) -> tuple[float | None, float | None, float | None]:
    """Balanced accuracy (TPR + TNR) / 2 with a normal-approximation interval (0.5 ± 0 for a
    probe that always gives the same answer: it is exactly at chance)."""
    if n_pos <= 0 or n_neg <= 0:
        return None, None, None
    tpr, tnr = tp / n_pos, tn / n_neg
    value = (tpr + tnr) / 2
    half = z * math.sqrt(tpr * (1 - tpr) / n_pos + tnr * (1 - tnr) / n_neg) / 2
    return value, max(0.0, value - half), min(1.0, value + half)


@dataclass(frozen=True)
class Calibration:
    """How well the fact-check probe reads on a model: measured on statements it knows.

    ``pairwise``: share of known facts whose true statement gets the higher normalised P(True)
    than its counterfactual; ``absolute``: balanced accuracy of the verdicts P(True) > P(False).
    ``readable``: the pairwise interval lies above chance — only then does a report raise a
    fact-check finding."""

    model: str
    form: str
    split: str
    candidates: int
    known: int
    pairwise: float | None
    pairwise_low: float | None
    pairwise_high: float | None
    absolute: float | None
    absolute_low: float | None
    absolute_high: float | None

    @property
    def readable(self) -> bool:
        return self.pairwise_low is not None and self.pairwise_low > CHANCE

    def sentence(self) -> str:
        def iv(v, lo, hi):
            return "n/a" if v is None else f"{v:.2f} ({lo:.2f}–{hi:.2f})"

        what = (
            f"pairwise accuracy {iv(self.pairwise, self.pairwise_low, self.pairwise_high)}, absolute verdicts' "
            f"balanced accuracy {iv(self.absolute, self.absolute_low, self.absolute_high)}, on {self.known} "
            f"statement pairs it knows ({self.form} form)"
        )
        if self.readable:
            return f"the fact-check probe reads above chance on this model: {what}"
        return f"the fact-check probe is at chance on this model: {what}; no fact-check finding is raised"

    def to_dict(self) -> dict:
        return {**asdict(self), "readable": self.readable, "sentence": self.sentence()}

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def calibration_of(model_name: str, form: str, split: str, candidates: int, counts: dict) -> Calibration:
    n = counts["n"]
    lo, hi = wilson(counts["pairwise"], n)
    ab, ab_lo, ab_hi = balanced(counts["tp"], n, counts["tn"], n)
    return Calibration(
        model=model_name,
        form=form,
        split=split,
        candidates=candidates,
        known=n,
        pairwise=counts["pairwise"] / n if n else None,
        pairwise_low=lo,
        pairwise_high=hi,
        absolute=ab,
        absolute_low=ab_lo,
        absolute_high=ab_hi,
    )
