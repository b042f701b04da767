"""Supportive-token ablation: the predicate variants, their flags, and their rows in the CLI JSON."""

import json

import pytest

from editlab import Fact, Measure, Probe, ProbeReport, ProbeRow, default_probes
from editlab.cli import main
from editlab.measure.ablation import ablation_summary, describe, predicate_variants


@pytest.mark.parametrize(
    "prompt,subject,expected",
    [
        (
            "The Eiffel Tower is located in the city of",
            "Eiffel Tower",
            {
                "original": "The Eiffel Tower is located in the city of",
                "negated": "The Eiffel Tower is not located in the city of",
                "predicate-removed": "The Eiffel Tower located in the city of",
            },
        ),
        (
            "The mother tongue of Danielle Darrieux is",
            "Danielle Darrieux",
            {
                "original": "The mother tongue of Danielle Darrieux is",
                "negated": "The mother tongue of Danielle Darrieux is not",
                "predicate-removed": "The mother tongue of Danielle Darrieux",
            },
        ),
        (
            "Apple A5 was not created by",
            "Apple A5",
            {  # already negated: the flip affirms it
                "original": "Apple A5 was not created by",
                "affirmed": "Apple A5 was created by",
                "predicate-removed": "Apple A5 created by",
            },
        ),
        (
            "Where is the Louvre? The Louvre is in",
            "Louvre",
            {  # the auxiliary after the subject's last occurrence
                "original": "Where is the Louvre? The Louvre is in",
                "negated": "Where is the Louvre? The Louvre is not in",
                "predicate-removed": "Where is the Louvre? The Louvre in",
            },
        ),
    ],
)
def test_variants_change_only_the_predicate_and_keep_the_subject(prompt, subject, expected):
    assert dict(predicate_variants(prompt, subject)) == expected


def test_no_auxiliary_after_the_subject_means_no_ablation_rows():
    fact = Fact("Toko Yasuda", "Toko Yasuda plays the", "piano", "guitar")
    assert predicate_variants(fact.prompt, fact.subject) == []
    assert not [p for p in default_probes(fact) if p.kind == "ablation"]


def _m(p_new, p_true):
    return Measure(greedy="", top5=(), p_new=p_new, p_true=p_true)


def _report(after: dict) -> ProbeReport:
    fact = Fact("Eiffel Tower", "The Eiffel Tower is located in the city of", "Rome", "Paris")
    rows = tuple(
        ProbeRow(Probe("ablation", prompt, rule=rule), None, None, after[rule])
        for rule, prompt in predicate_variants(fact.prompt, fact.subject)
    )
    return ProbeReport(fact=fact, rows=rows)


def test_ignores_predicate_when_is_is_not_and_neither_give_the_same_preference():
    report = _report({"original": _m(0.9, 0.01), "negated": _m(0.8, 0.02), "predicate-removed": _m(0.7, 0.01)})
    s = report.summary("after")
    assert s["ignores_predicate"] is True
    assert s["ablation_prefers_new"] == {"original": True, "negated": True, "predicate-removed": True}
    text = describe(report, "after", "After the edit")
    assert text.startswith(
        "After the edit: the model prefers 'Rome' whether the prompt says \"is\", \"is not\" or neither"
    ), text


def test_a_model_that_follows_not_does_not_ignore_the_predicate():
    report = _report({"original": _m(0.9, 0.01), "negated": _m(0.01, 0.3), "predicate-removed": _m(0.7, 0.01)})
    s = report.summary("after")
    assert s["ignores_predicate"] is False
    assert s["ablation_prefers_new"]["negated"] is False
    assert "\"is not\" → 'Paris'" in describe(report, "after")


def test_fewer_than_two_variants_give_no_verdict():
    assert ablation_summary([("original", _m(0.9, 0.1))])["ignores_predicate"] is None
    assert ablation_summary([])["ignores_predicate"] is None


def test_ablation_rows_appear_in_the_probe_json(capsys):
    code = main(
        [
            "probe",
            "--prompt",
            "The Eiffel Tower is located in the city of",
            "--subject",
            "Eiffel Tower",
            "--target-new",
            "Rome",
            "--target-true",
            "Paris",
            "--generation-tokens",
            "3",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    rows = {p["rule"]: p for p in out["probes"] if p["kind"] == "ablation"}
    assert set(rows) == {"original", "negated", "predicate-removed"}
    assert rows["negated"]["prompt"] == "The Eiffel Tower is not located in the city of"
    summary = out["summary"]["unedited"]
    ratios = {r: p["unedited"]["p_true"] / p["unedited"]["p_new"] for r, p in rows.items()}
    # The unedited model knows Paris with or without "is", and "is not" does not move it off Paris either:
    # the predicate-insensitivity the edit is later judged against.
    assert all(v > 10 for v in ratios.values()), ratios
    assert summary["ablation_prefers_new"] == {"original": False, "negated": False, "predicate-removed": False}, ratios
    assert summary["ignores_predicate"] is True, ratios
