"""What the buttons do: thin calls into editlab over one browser session's state.

No Streamlit here and no model math: every number comes from ``EditSession`` and ``ProbeReport``.
``state`` is ``st.session_state`` in the app and a plain dict in tests.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, MutableMapping, Sequence

from editlab import EditError, Fact, Neighbor, Probe, ProbeReport
from editlab.core.turns import Wait
from editlab.measure.probes import negation_form

from . import state as S

Progress = Callable[[int, int, str], None]


# ---- the fact form ----------------------------------------------------------------------------
def lines(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def parse_neighbors(text: str | None) -> tuple[Neighbor, ...]:
    """One neighbour per line: ``prompt`` or ``prompt => expected answer`` (as on the CLI)."""
    out = []
    for line in lines(text):
        prompt, _, answer = line.partition("=>")
        out.append(Neighbor(prompt.strip(), answer.strip() or None))
    return tuple(out)


FORM_FIELDS = ("subject", "prompt", "target_new", "target_true", "paraphrases", "neighbors", "negated_prompt")


def build_fact(
    subject: str,
    prompt: str,
    target_new: str,
    target_true: str | None = None,
    paraphrases: str | None = "",
    neighbors: str | None = "",
    negated_prompt: str | None = "",
) -> Fact:
    """The form's fields as a Fact; raises ValueError with a readable message on bad input."""
    return Fact(
        subject=subject or "",
        prompt=prompt or "",
        target_new=target_new or "",
        target_true=target_true or None,
        paraphrases=tuple(lines(paraphrases)),
        neighbors=parse_neighbors(neighbors),
        negated_prompt=(negated_prompt or "").strip() or None,
    )


def form_values(fact: Fact | dict) -> dict:
    """A Fact (or a gallery entry) as the form's text fields."""
    d = fact.to_dict() if isinstance(fact, Fact) else fact
    neigh = []
    for n in d.get("neighbors") or ():
        prompt, answer = (n["prompt"], n.get("answer")) if isinstance(n, dict) else (n, None)
        neigh.append(f"{prompt} => {answer}" if answer else prompt)
    return {
        "subject": d.get("subject", ""),
        "prompt": d.get("prompt", ""),
        "target_new": d.get("target_new", ""),
        "target_true": d.get("target_true") or "",
        "paraphrases": "\n".join(d.get("paraphrases") or ()),
        "neighbors": "\n".join(neigh),
        "negated_prompt": d.get("negated_prompt") or "",
    }


# ---- probes -----------------------------------------------------------------------------------
def probes_for(state: MutableMapping, fact: Fact) -> list[Probe]:
    """The probes the user edited for this fact, else the default set."""
    saved = state.get(S.PROBES)
    if saved and saved[0] == fact:
        return list(saved[1])
    return S.session_of(state).probes_for(fact)


def with_prompts(probes: Sequence[Probe], prompts: Sequence[str]) -> list[Probe]:
    """The same probes with the user's prompt texts (ValueError on an empty one)."""
    if len(prompts) != len(probes):
        raise ValueError("the probe list changed while you were editing it; run it again")
    return [p if p.prompt == text else dataclasses.replace(p, prompt=text) for p, text in zip(probes, prompts)]


def probe_labels(probes: Sequence[Probe]) -> list[str]:
    """Short unique row labels: positive, negation, fact-check (new), paraphrase 1, ..."""
    counts: dict[str, int] = {}
    for p in probes:
        counts[p.kind] = counts.get(p.kind, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for p in probes:
        seen[p.kind] = seen.get(p.kind, 0) + 1
        if p.kind == "true_false":
            label = f"fact-check ({p.rule})" if p.rule else f"fact-check {seen[p.kind]}"
        elif p.kind == "neighborhood":
            label = f"neighbour {seen[p.kind]}"
        elif p.kind == "negation" and negation_form(p) == "not":
            label = "negation"
        elif p.kind == "negation" and negation_form(p) is not None:
            label = f"negation ({negation_form(p).replace('_', ' ')})"
        else:
            label = p.kind + (f" {seen[p.kind]}" if counts[p.kind] > 1 else "")
        out.append(label)
    return out


# ---- edits and probe runs ---------------------------------------------------------------------
def _store(state: MutableMapping, report: ProbeReport, record_id: int | None) -> ProbeReport:
    session = S.session_of(state)
    state[S.REPORT] = report
    state[S.REPORT_AT] = tuple(r.id for r in session.records)
    state[S.REPORT_RECORD] = record_id
    state[S.REPORT_SERIAL] = state.get(S.REPORT_SERIAL, 0) + 1
    return report


def key_figures(report: ProbeReport, column: str = "after") -> dict:
    """The handful of numbers the history lists for one edit."""
    pos = next((getattr(r, column) for r in report.rows_of("positive")), None)
    neg = next((getattr(r, column) for r in report.rows_of("negation") if negation_form(r.probe) == "not"), None)
    s = report.summary(column)
    return {
        "P(new) positive": pos.p_new if pos else None,
        "P(true) positive": pos.p_true if pos else None,
        "P(new) negation": neg.p_new if neg else None,
        "P(true) negation": neg.p_true if neg else None,
        "fact-check rates new truer": s["factcheck_prefers_new"],
        "new target survives negation": s["new_target_survives_negation"],
        "fact-check disagrees with completion": s["factcheck_disagrees_with_completion"],
    }


def edit(
    state: MutableMapping,
    fact: Fact,
    method: str,
    hparams=None,
    probes: Sequence[Probe] | None = None,
    progress: Progress | None = None,
    on_wait: Callable[[Wait], None] | None = None,
    verdict: Callable[[ProbeReport], None] | None = None,
):
    """Edit one fact with this session's stack of edits and measure unedited / before / after.
    The request takes its turn on the shared model (``handle.turns``); while others' requests are
    ahead, ``on_wait`` hears its place in the line and the expected wait. ``verdict`` hears the
    first report (positive, negation, True/False) before the rest of the probes are measured."""
    session = S.session_of(state)
    probes = list(probes) if probes else probes_for(state, fact)
    with session.handle.turns.turn(S.visitor(state), f"edit {method}", on_wait):
        if progress is not None:
            progress(0, 1, "measuring the probes before the edit")
        record, report = session.edit_and_compare(fact, method, hparams, probes, progress, verdict=verdict)
    state.setdefault(S.LOG, {})[record.id] = {"figures": key_figures(report), "when": time.time()}
    state[S.PROBES] = (fact, list(probes))
    _store(state, report, record.id)
    return record, report


def probe(
    state: MutableMapping,
    fact: Fact,
    probes: Sequence[Probe] | None = None,
    on_wait: Callable[[Wait], None] | None = None,
) -> ProbeReport:
    """Measure the probes on the unedited model and on this session's model as it is now (in its
    turn on the shared model, as :func:`edit`)."""
    session = S.session_of(state)
    probes = list(probes) if probes else probes_for(state, fact)
    with session.handle.turns.turn(S.visitor(state), "probe", on_wait):
        report = session.compare(fact, probes)
    state[S.PROBES] = (fact, list(probes))
    return _store(state, report, None)


def report_is_stale(state: MutableMapping) -> bool:
    session = S.session_of(state)
    return state.get(S.REPORT) is not None and state.get(S.REPORT_AT) != tuple(r.id for r in session.records)


def refresh(state: MutableMapping) -> ProbeReport | None:
    """Re-measure the shown report's probes if the session's edits changed since (undo, reset)."""
    if not report_is_stale(state):
        return state.get(S.REPORT)
    report = state[S.REPORT]
    return probe(state, report.fact, [r.probe for r in report.rows])


def undo(state: MutableMapping, record_id: int | None = None):
    session = S.session_of(state)
    record = session.undo(record_id)
    state.get(S.LOG, {}).pop(record.id, None)
    return record


def reset(state: MutableMapping) -> None:
    S.session_of(state).reset()
    state[S.LOG] = {}


# ---- errors -----------------------------------------------------------------------------------
def user_message(exc: BaseException) -> str | None:
    """A readable message for errors caused by the user's input or an edit that failed (the
    weights are already rolled back); None for anything else (a bug: let it surface)."""
    cause = exc.__cause__
    if cause is not None and type(cause).__name__ in ("StopException", "RerunException"):
        raise cause  # the user pressed Stop or changed a widget mid-edit: let Streamlit handle it
    if isinstance(exc, EditError):
        return f"The edit failed and nothing was changed: {exc}"
    if isinstance(exc, (ValueError, FileNotFoundError)):
        return str(exc)
    return None
