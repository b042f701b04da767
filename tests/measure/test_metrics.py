"""Metric formulas on hand-built probe results; every expected value is worked out in the comments."""

import pytest

from editlab import Fact
from editlab.measure.metrics import (
    METRIC_KEYS,
    TokenEvidence,
    aggregate,
    counterfact_scores,
    fact_scores,
    hmean,
    negation_scores,
    says_new,
    token_scores,
)
from editlab.measure.probes import Measure, Probe, ProbeReport, ProbeRow
from editlab.measure.tokenacc import TokenPrediction, agreement

FACT = Fact(
    "Danielle Darrieux",
    "The mother tongue of Danielle Darrieux is",
    "English",
    "French",
    paraphrases=("Danielle Darrieux spoke", "Where Danielle Darrieux is from, people speak"),
    neighbors=(("Michel Rocard is a native speaker of", "French"), ("Montesquieu spoke", "French")),
)


def m(p_new=None, p_true=None, verdict=None, top1_is_new=None, p_yes=None, greedy=""):
    """A measure; a True/False one from ``p_yes`` (P(True), with P(False) = 1 − P(True))."""
    p_no = None if p_yes is None else 1 - p_yes
    if p_yes is not None:
        verdict = p_yes > p_no
    return Measure(
        greedy=greedy,
        top5=(),
        p_new=p_new,
        p_true=p_true,
        verdict=verdict,
        top1_is_new=top1_is_new,
        p_yes=p_yes,
        p_no=p_no,
    )


def report(after: dict, unedited: dict | None = None) -> ProbeReport:
    """Rows in probe order; ``after``/``unedited`` map a probe label to its measure."""
    probes = {
        "pos": Probe("positive", FACT.prompt),
        "neg": Probe("negation", FACT.prompt + " not", rule="aux:is"),
        "tf_new": Probe("true_false", "T/F new", rule="new"),
        "tf_true": Probe("true_false", "T/F true", rule="true"),
        "para1": Probe("paraphrase", FACT.paraphrases[0]),
        "para2": Probe("paraphrase", FACT.paraphrases[1]),
        "nb1": Probe("neighborhood", "Michel Rocard is a native speaker of", answer="French"),
        "nb2": Probe("neighborhood", "Montesquieu spoke", answer="French"),
    }
    unedited = unedited or {}
    rows = tuple(
        ProbeRow(p, unedited.get(k), None, after.get(k)) for k, p in probes.items() if k in after or k in unedited
    )
    return ProbeReport(fact=FACT, rows=rows)


# ---- CounterFact convention -----------------------------------------------------------------------
def test_counterfact_scores_of_one_fact():
    r = report(
        {
            "pos": m(0.60, 0.10),  # ES 1, EM 0.50
            "para1": m(0.30, 0.20),
            "para2": m(0.05, 0.25),  # PS (1 + 0)/2 = 0.5, PM (0.10 − 0.20)/2 = −0.05
            "nb1": m(0.10, 0.40),
            "nb2": m(0.50, 0.30),  # NS (1 + 0)/2 = 0.5, NM (0.30 − 0.20)/2 = 0.05
        }
    )
    s = counterfact_scores(r)
    assert s["ES"] == 1.0 and s["EM"] == pytest.approx(0.50)
    assert s["PS"] == 0.5 and s["PM"] == pytest.approx(-0.05)
    assert s["NS"] == 0.5 and s["NM"] == pytest.approx(0.05)


def test_counterfact_aggregate_is_mean_over_facts_and_harmonic_score():
    a = report(
        {"pos": m(0.6, 0.1), "para1": m(0.3, 0.2), "para2": m(0.05, 0.25), "nb1": m(0.1, 0.4), "nb2": m(0.5, 0.3)}
    )
    b = report({"pos": m(0.2, 0.3), "para1": m(0.4, 0.1), "para2": m(0.4, 0.1), "nb1": m(0.1, 0.3), "nb2": m(0.1, 0.3)})
    # fact b: ES 0, EM −0.1; PS 1, PM 0.3; NS 1, NM 0.2
    agg = aggregate([fact_scores(a), fact_scores(b)])
    assert agg["ES"] == pytest.approx(0.5)  # (1 + 0)/2
    assert agg["PS"] == pytest.approx(0.75)  # (0.5 + 1)/2
    assert agg["NS"] == pytest.approx(0.75)  # (0.5 + 1)/2
    assert agg["EM"] == pytest.approx(0.2)  # (0.5 − 0.1)/2
    assert agg["PM"] == pytest.approx(0.125)  # (−0.05 + 0.3)/2
    assert agg["NM"] == pytest.approx(0.125)  # (0.05 + 0.2)/2
    # S = 3 / (1/0.5 + 1/0.75 + 1/0.75) = 3 / (2 + 8/3) = 9/14
    assert agg["S"] == pytest.approx(9 / 14)
    assert agg["n"] == 2


def test_harmonic_mean_edge_cases():
    assert hmean([1.0, 1.0, 0.0]) == 0.0
    assert hmean([0.5, None, 1.0]) is None
    assert hmean([0.25, 1.0]) == pytest.approx(0.4)  # 2 / (4 + 1)


def test_facts_without_paraphrase_or_true_target_are_left_out_of_those_means():
    no_para = report({"pos": m(0.6, 0.1), "nb1": m(0.1, 0.4)})
    no_true = report({"pos": m(0.6, None, top1_is_new=True)})
    s = counterfact_scores(no_true)
    assert s["ES"] is None and s["PS"] is None and s["NS"] is None
    agg = aggregate([fact_scores(no_para), fact_scores(no_true)])
    assert agg["ES"] == 1.0 and agg["NS"] == 1.0 and agg["PS"] is None and agg["S"] is None
    # PP falls back to the greedy continuation when there is no true target to compare with.
    assert says_new(m(0.6, None, top1_is_new=True)) is True
    assert agg["PP"] == 1.0


# ---- token-accuracy convention ----------------------------------------------------------------------
def tp(target, predicted, prompt="p", text="t"):
    return TokenPrediction(prompt, text, tuple(target), tuple(predicted))


def test_token_accuracy_and_locality_agreement():
    ev = TokenEvidence(
        rewrite=tp([5, 6, 7], [5, 6, 9]),  # 2 of 3 target tokens top-1 → 2/3
        rephrase=(tp([5, 6], [5, 6]), tp([5, 6], [1, 6])),  # 1 and 1/2 → 0.75
        # EasyEdit's example: unedited [29, 234, 334], edited [29, 234, 333] → 2/3; second query 1/1.
        locality=(tp([29, 234, 334], [29, 234, 333]), tp([8], [8])),
        locality_reference=(tp([29, 234, 334], [29, 234, 334]), tp([8], [8])),
        portability=(tp([1, 2, 3, 4], [1, 0, 0, 0]),),  # 1/4
    )
    s = token_scores(ev)
    assert s["rewrite_acc"] == pytest.approx(2 / 3)
    assert s["rephrase_acc"] == pytest.approx(0.75)
    assert s["locality"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["portability_acc"] == pytest.approx(0.25)
    # The unedited model agrees with itself: locality 1 by definition.
    ref = ev.locality_reference
    assert token_scores(TokenEvidence(rewrite=ev.rewrite, locality=ref, locality_reference=ref))["locality"] == 1.0
    # Locality compares the *predictions*, not the answer: both models wrong the same way still agree.
    assert agreement(tp([3, 4], [9, 9]), tp([3, 4], [9, 9])) == 1.0
    with pytest.raises(ValueError):
        agreement(tp([3, 4], [3, 4]), tp([3, 5], [3, 5]))
    assert TokenEvidence.from_dict(ev.to_dict()) == ev


# ---- negation and fact-check -------------------------------------------------------------------------
def test_negation_rates_rectified_efficacy_and_fact_check():
    # Three facts after a positive edit (and a negated edit for NP/NN).
    facts = [
        # says new on the prompt and still on "... is not": the illusory success; the fact-check rates
        # the true statement truer
        (
            report({"pos": m(0.7, 0.1), "neg": m(0.6, 0.1), "tf_new": m(p_yes=0.3), "tf_true": m(p_yes=0.6)}),
            report({"pos": m(0.5, 0.2), "neg": m(0.6, 0.1)}),
        ),
        # says new, and not under negation; fact-check consistent with the edit
        (
            report({"pos": m(0.7, 0.1), "neg": m(0.1, 0.3), "tf_new": m(p_yes=0.8), "tf_true": m(p_yes=0.2)}),
            report({"pos": m(0.1, 0.2), "neg": m(0.6, 0.1)}),
        ),
        # the edit did not take; the model answers False to both, yet rates the new statement truer
        (
            report({"pos": m(0.1, 0.5), "neg": m(0.1, 0.5), "tf_new": m(p_yes=0.2), "tf_true": m(p_yes=0.1)}),
            report({"pos": m(0.1, 0.5), "neg": m(0.2, 0.1)}),
        ),
    ]
    per = [fact_scores(r, negative=n) for r, n in facts]
    assert [p["PP"] for p in per] == [1.0, 1.0, 0.0]
    assert [p["PN"] for p in per] == [1.0, 0.0, 0.0]
    assert [p["NP"] for p in per] == [1.0, 0.0, 0.0]
    assert [p["NN"] for p in per] == [1.0, 1.0, 1.0]
    assert [p["FC"] for p in per] == [0.0, 1.0, 1.0]  # pairwise: the new statement rated truer
    assert [p["FC_new"] for p in per] == [0.0, 1.0, 0.0]  # absolute: P(True) > P(False) for the new one
    agg = aggregate(per)
    assert agg["PP"] == pytest.approx(2 / 3) and agg["PN"] == pytest.approx(1 / 3)
    assert agg["RE"] == pytest.approx(1 / 3)  # 2/3 − 1/3
    assert agg["NP"] == pytest.approx(1 / 3) and agg["NN"] == 1.0
    assert agg["FC"] == pytest.approx(2 / 3)
    assert agg["FC_new"] == pytest.approx(1 / 3)
    assert agg["n_negated"] == 3
    assert agg["ES"] == pytest.approx(2 / 3)  # PP is efficacy under the CounterFact comparison


def test_a_fact_without_a_negation_probe_is_left_out_of_pn_and_counted():
    negated = fact_scores(report({"pos": m(0.7, 0.1), "neg": m(0.6, 0.1)}))
    unnegated = fact_scores(report({"pos": m(0.7, 0.1)}))  # its prompt could not be negated as English
    assert unnegated["PN"] is None and unnegated["PN_gen"] is None
    agg = aggregate([negated, unnegated])
    assert agg["PP"] == 1.0 and agg["PN"] == 1.0 and agg["RE"] == 0.0  # over the fact that has both
    assert agg["n"] == 2 and agg["n_negated"] == 1


def test_pn_gen_reads_the_first_clause_three_ways():
    def gen(text):
        return fact_scores(report({"pos": m(0.7, 0.1), "neg": m(0.6, 0.1, greedy=text)}))

    assert gen(" English, the language of")["PN_gen"] == 1.0
    assert gen(" French.")["PN_gen_answer"] == 1.0
    assert gen(" knowing about Islam")["PN_gen_neither"] == 1.0
    # FACT's neighbours' answers count as other answers of the relation
    assert {k: gen(" a speaker of French")[k] for k in ("PN_gen", "PN_gen_answer", "PN_gen_neither")} == {
        "PN_gen": 0.0,
        "PN_gen_answer": 1.0,
        "PN_gen_neither": 0.0,
    }


def test_unedited_column_is_scored_by_the_same_code():
    r = report(after={"pos": m(0.7, 0.1), "neg": m(0.6, 0.1)}, unedited={"pos": m(0.01, 0.5), "neg": m(0.02, 0.1)})
    assert negation_scores(r, column="unedited")["PP"] == 0.0
    assert negation_scores(r, column="after")["PN"] == 1.0
    assert negation_scores(r, column="unedited")["NP"] is None  # no negated edit given
    assert set(METRIC_KEYS) <= set(aggregate([fact_scores(r, column="unedited")]))
