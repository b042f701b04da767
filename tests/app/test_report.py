"""The report's tables, flags and bars, from a hand-made ProbeReport (no model needed)."""

from editlab import Fact, Measure, Probe, ProbeReport, ProbeRow
from editlab.measure import factcheck
from editlab_app import report as R

FACT = Fact("Eiffel Tower", "The Eiffel Tower is in", "Rome", "Paris")


def cloze(p_new, p_true):
    return Measure(greedy=" x", top5=((" Rome", p_new), (" Paris", p_true)), p_new=p_new, p_true=p_true)


def check(p_yes):
    return Measure(greedy=" True", top5=(("True", p_yes),), p_yes=p_yes, p_no=1 - p_yes, verdict=p_yes > 0.5)


READABLE = factcheck.calibration_of("m", "chat_fewshot", "calibrate", 60, {"n": 50, "tp": 1, "tn": 49, "pairwise": 40})
AT_CHANCE = factcheck.calibration_of("m", "chat", "calibrate", 60, {"n": 50, "tp": 0, "tn": 50, "pairwise": 26})


def make(method="rome", after_neg=(0.6, 0.3), after_tf=0.2, calibration=READABLE):
    rows = (
        ProbeRow(Probe("positive", FACT.prompt), cloze(0.01, 0.7), cloze(0.01, 0.7), cloze(0.9, 0.05)),
        ProbeRow(
            Probe("negation", "The Eiffel Tower is not in", rule="aux:is"),
            cloze(0.01, 0.8),
            cloze(0.01, 0.8),
            cloze(*after_neg),
        ),
        ProbeRow(
            Probe("true_false", "True or false: The Eiffel Tower is in Rome.", rule="new", chat=True),
            check(0.1),
            check(0.1),
            check(after_tf),
        ),
        ProbeRow(
            Probe("true_false", "True or false: The Eiffel Tower is in Paris.", rule="true", chat=True),
            check(0.4),
            check(0.4),
            check(0.4),
        ),
        ProbeRow(
            Probe("generation", FACT.prompt, max_new_tokens=40), cloze(0.01, 0.7), cloze(0.01, 0.7), cloze(0.9, 0.05)
        ),
    )
    if method is None:  # a probe run: no before column
        rows = tuple(ProbeRow(r.probe, r.unedited, None, r.after) for r in rows)
    return ProbeReport(fact=FACT, rows=rows, model="m", method=method, factcheck=calibration)


def test_edit_report_has_three_states_and_a_probe_run_two():
    t = R.cloze_table(make())
    assert t.index.tolist() == ["positive", "negation"]
    assert [c for c in t.columns if c.startswith("P(new)")] == ["P(new) unedited", "P(new) before", "P(new) after"]
    assert t.loc["negation", "P(new) after"] == 0.6
    t = R.cloze_table(make(method=None))
    assert [c for c in t.columns if c.startswith("P(")] == [
        "P(new) unedited",
        "P(true) unedited",
        "P(new) now",
        "P(true) now",
    ]
    tf = R.factcheck_table(make())
    assert tf.loc["fact-check (new)", "verdict after"] == "False"


def test_both_findings_are_flagged_when_they_occur():
    names = [name for name, _, _ in R.flags(make())]
    assert names == ["positive_prefers_new", "new_target_survives_negation", "factcheck_disagrees_with_completion"]
    assert "new_target_survives_negation=True" in R.summary_caption(make())


def test_no_fact_check_finding_where_the_probe_is_at_chance_and_the_report_says_why():
    flags = R.flags(make(calibration=AT_CHANCE))
    names = [name for name, _, _ in flags]
    assert "factcheck_disagrees_with_completion" not in names
    level, text = next((lvl, t) for name, lvl, t in flags if name == "factcheck_unreadable")
    assert level == "info" and "at chance on this model" in text
    assert "factcheck_disagrees_with_completion=None" in R.summary_caption(make(calibration=AT_CHANCE))


def test_no_fact_check_finding_for_a_fact_the_probe_did_not_read_before_the_edit():
    report = make()
    rows = tuple(
        ProbeRow(r.probe, check(0.6), check(0.6), r.after)
        if r.probe.rule == "new" and r.probe.kind == "true_false"
        else r
        for r in report.rows
    )  # unedited: the new statement rated truer already
    report = ProbeReport(fact=FACT, rows=rows, model="m", method="rome", factcheck=READABLE)
    assert report.summary()["factcheck_reads_fact"] is False
    assert report.summary()["factcheck_disagrees_with_completion"] is None
    assert ("factcheck_unreadable", "info") in [(n, lvl) for n, lvl, _ in R.flags(report)]
    assert make().summary()["factcheck_reads_fact"] is True


def test_a_fact_without_a_negation_probe_says_so():
    report = make()
    report = ProbeReport(
        fact=FACT,
        rows=tuple(r for r in report.rows if r.probe.kind != "negation"),
        model="m",
        method="rome",
        notes=("no negation probe: unnegatable: no verb",),
        factcheck=READABLE,
    )
    flags = R.flags(report)
    assert ("negation_not_probed", "info") in [(n, lvl) for n, lvl, _ in flags]
    assert "new_target_survives_negation" not in [n for n, _, _ in flags]


def test_no_finding_flagged_when_negation_and_fact_check_follow_the_edit():
    flags = R.flags(make(after_neg=(0.1, 0.6), after_tf=0.9))
    assert [(name, level) for name, level, _ in flags] == [("positive_prefers_new", "success")]
    assert "factcheck_disagrees_with_completion=False" in R.summary_caption(make(after_neg=(0.1, 0.6), after_tf=0.9))


def test_bars_show_both_targets_per_state():
    fig = R.bars(make())
    assert {t.name for t in fig.data} == {"P(new) 'Rome'", "P(true) 'Paris'"}
    assert sum(len(t.x) for t in fig.data) == 2 * 2 * 3  # 2 cloze probes x 2 targets x 3 states
