"""The report's tables, flags and bars, from a hand-made ProbeReport (no model needed)."""
from editlab import Fact, Measure, Probe, ProbeReport, ProbeRow
from ui import report as R

FACT = Fact("Eiffel Tower", "The Eiffel Tower is in", "Rome", "Paris")


def cloze(p_new, p_true):
    return Measure(greedy=" x", top5=((" Rome", p_new), (" Paris", p_true)), p_new=p_new, p_true=p_true)


def check(p_yes):
    return Measure(greedy=" True", top5=(("True", p_yes),), p_yes=p_yes, p_no=1 - p_yes, verdict=p_yes > 0.5)


def make(method="rome", after_neg=(0.6, 0.3), after_tf=0.2):
    rows = (
        ProbeRow(Probe("positive", FACT.prompt), cloze(0.01, 0.7), cloze(0.01, 0.7), cloze(0.9, 0.05)),
        ProbeRow(Probe("negation", "The Eiffel Tower is not in", rule="aux:is"), cloze(0.01, 0.8), cloze(0.01, 0.8), cloze(*after_neg)),
        ProbeRow(Probe("true_false", "True or false: The Eiffel Tower is in Rome.", rule="new", chat=True), check(0.1), check(0.1), check(after_tf)),
        ProbeRow(Probe("generation", FACT.prompt, max_new_tokens=40), cloze(0.01, 0.7), cloze(0.01, 0.7), cloze(0.9, 0.05)),
    )
    if method is None:  # a probe run: no before column
        rows = tuple(ProbeRow(r.probe, r.unedited, None, r.after) for r in rows)
    return ProbeReport(fact=FACT, rows=rows, model="m", method=method)


def test_edit_report_has_three_states_and_a_probe_run_two():
    t = R.cloze_table(make())
    assert t.index.tolist() == ["positive", "negation"]
    assert [c for c in t.columns if c.startswith("P(new)")] == ["P(new) unedited", "P(new) before", "P(new) after"]
    assert t.loc["negation", "P(new) after"] == 0.6
    t = R.cloze_table(make(method=None))
    assert [c for c in t.columns if c.startswith("P(")] == ["P(new) unedited", "P(true) unedited", "P(new) now", "P(true) now"]
    tf = R.factcheck_table(make())
    assert tf.loc["fact-check (new)", "verdict after"] == "False"


def test_both_findings_are_flagged_when_they_occur():
    names = [name for name, _, _ in R.flags(make())]
    assert names == ["positive_prefers_new", "new_target_survives_negation", "factcheck_disagrees_with_completion"]
    assert "new_target_survives_negation=True" in R.summary_caption(make())


def test_no_finding_flagged_when_negation_and_fact_check_follow_the_edit():
    flags = R.flags(make(after_neg=(0.1, 0.6), after_tf=0.9))
    assert [(name, level) for name, level, _ in flags] == [("positive_prefers_new", "success")]
    assert "factcheck_disagrees_with_completion=False" in R.summary_caption(make(after_neg=(0.1, 0.6), after_tf=0.9))


def test_bars_show_both_targets_per_state():
    fig = R.bars(make())
    assert {t.name for t in fig.data} == {"P(new) 'Rome'", "P(true) 'Paris'"}
    assert sum(len(t.x) for t in fig.data) == 2 * 2 * 3  # 2 cloze probes x 2 targets x 3 states
