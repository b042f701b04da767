"""A ProbeReport as tables, bars and flags. Only formatting: every number comes from the report.

Column names are stable so tests (and the browser test) can read the tables: ``P(new) <state>``,
``P(true) <state>``, ``P(answer) <state>``, ``top-1 <state>`` for the cloze table and ``P(True)
<state>``, ``P(False) <state>``, ``verdict <state>`` for the fact-check table, where ``<state>`` is
``unedited`` / ``before`` / ``after`` after an edit, and ``unedited`` / ``now`` after a probe run.
"""

from __future__ import annotations

import pandas as pd

from editlab import ProbeReport
from editlab.measure import factcheck
from editlab.measure.probes import negation_form

from .actions import probe_labels

CLOZE = ("positive", "negation", "paraphrase", "neighborhood")


def states(report: ProbeReport) -> list[tuple[str, str]]:
    """[(report column, label)] of the states this report holds."""
    if report.method is None:  # a probe run: unedited vs this session's model as it is now
        return [("unedited", "unedited"), ("after", "now")]
    return [(c, c) for c in ("unedited", "before", "after")]


def _labels(report: ProbeReport) -> list[str]:
    return probe_labels([r.probe for r in report.rows])


def cloze_table(report: ProbeReport) -> pd.DataFrame:
    """One row per cloze probe: P(new) and P(true) (and P(answer) for neighbours) per state."""
    cols = states(report)
    any_answer = any(r.probe.answer for r in report.rows if r.probe.kind == "neighborhood")
    rows, index = [], []
    for label, r in zip(_labels(report), report.rows):
        if r.probe.kind not in CLOZE:
            continue
        d = {"prompt": r.probe.prompt}
        for c, name in cols:
            m = getattr(r, c)
            d[f"P(new) {name}"] = m.p_new if m else None
            d[f"P(true) {name}"] = m.p_true if m else None
            if any_answer:
                d[f"P(answer) {name}"] = m.p_answer if m else None
        last = getattr(r, cols[-1][0])
        d[f"top-1 {cols[-1][1]}"] = last.top5[0][0] if last and last.top5 else None
        rows.append(d)
        index.append(label)
    df = pd.DataFrame(rows, index=pd.Index(index, name="probe"))
    if not report.fact.target_true:
        df = df[[c for c in df.columns if not c.startswith("P(true)")]]
    return df


def factcheck_table(report: ProbeReport) -> pd.DataFrame:
    cols = states(report)
    rows, index = [], []
    for label, r in zip(_labels(report), report.rows):
        if r.probe.kind != "true_false":
            continue
        d = {"question": r.probe.prompt}
        for c, name in cols:
            m = getattr(r, c)
            d[f"P(True) {name}"] = m.p_yes if m else None
            d[f"P(False) {name}"] = m.p_no if m else None
            d[f"normalised P(True) {name}"] = factcheck.normalised_true(m.p_yes, m.p_no) if m else None
            d[f"verdict {name}"] = ("True" if m.verdict else "False") if m else None
        rows.append(d)
        index.append(label)
    return pd.DataFrame(rows, index=pd.Index(index, name="probe"))


def generations(report: ProbeReport) -> list[dict]:
    """Greedy texts of the free-generation probes (and the positive/negation prompts), per state."""
    out = []
    for label, r in zip(_labels(report), report.rows):
        if r.probe.kind not in ("generation", "positive", "negation"):
            continue
        texts = {name: (getattr(r, c).greedy if getattr(r, c) else None) for c, name in states(report)}
        out.append({"probe": label, "prompt": r.probe.prompt, **texts})
    return out


def style(df: pd.DataFrame, report: ProbeReport):
    """Highlight, on the prompts about the subject, the cells where the model prefers the new
    target in the last state (green; red on the negated prompt, where that is the failure)."""
    last = states(report)[-1][1]
    new, true = f"P(new) {last}", f"P(true) {last}"
    numeric = [c for c in df.columns if c.startswith("P(")]

    def mark(row):
        out = [""] * len(row)
        prompt_about_subject = str(row.name).startswith(("positive", "negation", "paraphrase"))
        if (
            prompt_about_subject
            and new in row.index
            and true in row.index
            and pd.notna(row[new])
            and pd.notna(row[true])
            and row[new] > row[true]
        ):
            color = (
                "background-color: rgba(255, 75, 75, 0.25)"
                if row.name == "negation"
                else "background-color: rgba(33, 195, 84, 0.2)"
            )
            out[list(row.index).index(new)] = color
        return out

    return df.style.format("{:.4f}", subset=numeric, na_rep="–").apply(mark, axis=1)


def bars(report: ProbeReport):
    """Grouped bars of P(new) and P(true) per cloze probe, one panel per state."""
    import plotly.express as px

    records = []
    for label, r in zip(_labels(report), report.rows):
        if r.probe.kind not in CLOZE:
            continue
        for c, name in states(report):
            m = getattr(r, c)
            if m is None:
                continue
            records.append(
                {"probe": label, "state": name, "target": f"P(new) {report.fact.target_new!r}", "p": m.p_new}
            )
            if m.p_true is not None:
                records.append(
                    {"probe": label, "state": name, "target": f"P(true) {report.fact.target_true!r}", "p": m.p_true}
                )
    df = pd.DataFrame(records)
    fig = px.bar(
        df,
        x="probe",
        y="p",
        color="target",
        barmode="group",
        facet_col="state",
        category_orders={"state": [n for _, n in states(report)]},
        color_discrete_sequence=["#e4572e", "#2e86ab"],
        range_y=[0, 1],
        labels={"p": "probability", "probe": ""},
    )
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(
        height=340, margin=dict(l=10, r=10, t=30, b=10), legend_title_text="", legend=dict(orientation="h", y=-0.25)
    )
    return fig


def flags(report: ProbeReport) -> list[tuple[str, str, str]]:
    """[(flag name, level, sentence)] for the last state: the findings the app exists to show.
    ``level`` is a Streamlit alert (success / warning); errors are kept for things that went wrong."""
    last, label = states(report)[-1]
    s = report.summary(last)
    f = report.fact
    neg = next((r for r in report.rows_of("negation") if negation_form(r.probe) == "not"), None)
    tf = next((r for r in report.rows_of("true_false") if r.probe.rule == "new"), None)
    out = []
    if s["positive_prefers_new"] is True:
        out.append(
            (
                "positive_prefers_new",
                "success",
                f"**{label}:** the model prefers {f.target_new!r} over {f.target_true!r} on the prompt.",
            )
        )
    elif s["positive_prefers_new"] is False and report.method:
        out.append(
            (
                "positive_prefers_new",
                "warning",
                f"**{label}:** the model still prefers {f.target_true!r} over {f.target_new!r}: the edit did not take.",
            )
        )
    if s["new_target_survives_negation"]:
        out.append(
            (
                "new_target_survives_negation",
                "warning",
                f"**New target survives negation.** Asked *{neg.probe.prompt}*, the model still prefers "
                f"{f.target_new!r}: the edit wrote an association with the subject, not a fact the model "
                "can reason about.",
            )
        )
    if s["factcheck_disagrees_with_completion"]:
        out.append(
            (
                "factcheck_disagrees_with_completion",
                "warning",
                f"**Fact-check disagrees with the completion.** The model completes the prompt with "
                f"{f.target_new!r}, yet asked *{tf.probe.prompt.splitlines()[0]}* it rates that statement "
                f"less true than the one with {f.target_true!r}.",
            )
        )
    if report.factcheck is not None and not report.factcheck.readable:
        out.append(("factcheck_unreadable", "info", f"**No fact-check finding:** {report.factcheck.sentence()}."))
    elif report.factcheck is not None and s["factcheck_reads_fact"] is False:
        out.append(
            (
                "factcheck_unreadable",
                "info",
                "**No fact-check finding for this fact:** before any edit the model already rated the "
                f"statement with {f.target_new!r} at least as true as the one with {f.target_true!r}, so the "
                "True/False probe does not read this fact.",
            )
        )
    if not s["negation_probed"]:
        out.append(
            (
                "negation_not_probed",
                "info",
                "**No negation probe:** "
                + next(
                    (n for n in report.notes if n.startswith("no negation probe")), "the prompt could not be negated."
                ),
            )
        )
    return out


def summary_caption(report: ProbeReport) -> str:
    """A one-line, parseable statement of the headline flags (read by the browser test)."""
    last, label = states(report)[-1]
    s = report.summary(last)
    keys = ("positive_prefers_new", "new_target_survives_negation", "factcheck_disagrees_with_completion")
    return f"flags ({label}): " + " · ".join(f"{k}={s[k]}" for k in keys)
