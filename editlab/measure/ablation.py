"""Supportive-token ablation: does the model's answer depend on the predicate at all?

Locate-then-edit methods write the new object at the subject's last token; the "illusory
success" critique is that the edited model then answers the same whatever the *supportive tokens*
(the predicate: "is", "is not", "was") say. This module rewrites a fact's prompt, keeping the
subject, into variants that differ only in the predicate:

* ``original``          — the prompt as given ("The Eiffel Tower is located in the city of");
* ``negated``           — :func:`editlab.facts.negation.negate`'s form "not" where it puts "not" after an
  auxiliary or modal ("... is not located in ...", "... cannot be found in ..."); for a prompt that
  already says "not", the variant is ``affirmed`` (the "not" removed);
* ``predicate-removed`` — the auxiliary and any "not" deleted ("The Eiffel Tower located in ...").

They run as ``ablation`` probes in the probe suite (one row each, every model state), and
:func:`ablation_summary` turns their rows into flags: ``ignores_predicate`` is True when the model
prefers the same target (new vs true) in every variant, i.e. "is", "is not" and neither make no
difference to it.

No model code here: string rewriting and a summary over already-measured rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from editlab.facts.negation import AUXILIARIES, negate

RULES = ("original", "negated", "affirmed", "predicate-removed")
_AUX = re.compile(r"\b(" + "|".join(AUXILIARIES) + r")(\s+not|(?<=can)not)?\b")


def find_predicate(prompt: str, subject: str | None = None) -> re.Match | None:
    """The predicate's auxiliary (with its "not"): the one :func:`negate` puts "not" after, or, in a prompt
    that already says "aux not", the last such after the subject. None where negate's rule is not an
    auxiliary's (do-support "does not speak", a fragment, unnegatable): there is no predicate token to ablate."""
    negated, rule = negate(prompt, subject)
    start = prompt.rfind(subject) + len(subject) if subject and subject in prompt else 0
    matches = [m for m in _AUX.finditer(prompt) if m.start() >= start]
    if rule.startswith("already-negated"):
        return next((m for m in reversed(matches) if m.group(2)), None)
    if negated is None:
        return None
    return next(
        (
            m
            for m in matches
            if negated
            in (prompt[: m.end()] + " not" + prompt[m.end() :], prompt[: m.end()] + "not" + prompt[m.end() :])
        ),
        None,
    )


def predicate_variants(prompt: str, subject: str | None = None) -> list[tuple[str, str]]:
    """``[(rule, prompt)]``: the prompt with its predicate kept, negated (or affirmed) and removed.

    Empty when the negation is not an auxiliary's (e.g. "Toko Yasuda plays the" -> "does not play"):
    there is no predicate token to ablate, and inventing one would test something else.
    """
    m = find_predicate(prompt, subject)
    if m is None:
        return []
    head, tail = prompt[: m.start()], prompt[m.end() :]
    aux, negated = m.group(1), m.group(2) is not None
    flipped = head + aux + tail if negated else negate(prompt, subject)[0]
    removed = re.sub(r"\s+$", "", head) + (tail if tail[:1].isspace() or not tail else " " + tail)
    if not head.strip():  # the prompt starts with the predicate: nothing sensible remains before it
        removed = tail.lstrip()
    out = [("original", prompt), ("affirmed" if negated else "negated", flipped)]
    if removed.strip() and subject and subject in removed:
        out.append(("predicate-removed", removed))
    return out


def prefers_new(m) -> bool | None:
    """Whether a measure prefers target_new: P(new) > P(true), or, without a true target, whether
    the greedy text starts with the new target."""
    if m is None:
        return None
    if m.prefers_new is not None:
        return m.prefers_new
    return m.top1_is_new


def ablation_summary(rows: Iterable[tuple[str | None, object]]) -> dict:
    """Flags from ``[(rule, Measure)]`` of the ablation probes of one model state.

    ``ablation_prefers_new``: {rule: bool}. ``ignores_predicate``: True when every variant gives
    the same preference (None with fewer than two measured variants).
    """
    prefs = {rule: prefers_new(m) for rule, m in rows if m is not None and rule}
    known = [v for v in prefs.values() if v is not None]
    return {
        "ablation_prefers_new": prefs or None,
        "ignores_predicate": (len(set(known)) == 1) if len(known) >= 2 else None,
    }


def describe(report, column: str = "after", label: str | None = None) -> str | None:
    """One plain sentence about the predicate ablation in ``report``'s ``column`` (None without
    at least two measured ablation rows)."""
    rows = [r for r in report.rows if r.probe.kind == "ablation" and getattr(r, column) is not None]
    if len(rows) < 2:
        return None
    f = report.fact
    s = ablation_summary((r.probe.rule, getattr(r, column)) for r in rows)
    label = label or column
    said = [_quote(r, f.subject) for r in rows]
    said = ", ".join(said[:-1]) + " or " + said[-1] if len(said) > 2 else " or ".join(said)

    def answer(m) -> str:
        return (
            repr(f.target_new)
            if prefers_new(m)
            else (repr(f.target_true) if f.target_true else f"something other than {f.target_new!r}")
        )

    if s["ignores_predicate"]:
        return (
            f"{label}: the model prefers {answer(getattr(rows[0], column))} whether the prompt says {said}: "
            "it ignores the predicate, so \"not\" changes nothing for it."
        )
    parts = "; ".join(f"{_quote(r, f.subject)} → {answer(getattr(r, column))}" for r in rows)
    return f"{label}: the predicate changes the model's preference ({parts})."


def _quote(row, subject: str | None) -> str:
    m = find_predicate(row.probe.prompt, subject)
    if row.probe.rule == "predicate-removed" or m is None:
        return "neither"
    return f"\"{m.group(0)}\""
