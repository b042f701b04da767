"""The fact-check probe's reading and its calibration on the loaded model (editlab.measure.factcheck)."""

from types import SimpleNamespace

import pytest

from editlab.measure import calibration, factcheck
from editlab.measure.probes import Measure


def tf(p_yes, p_no):
    return Measure(greedy="", top5=(), p_yes=p_yes, p_no=p_no, verdict=p_yes > p_no)


def test_the_pairwise_reading_cancels_a_constant_bias_towards_false():
    # A model that says "False" to both statements still rates one truer than the other.
    assert factcheck.prefers_statement(tf(0.30, 0.70), tf(0.10, 0.90)) is True
    assert factcheck.prefers_statement(tf(0.10, 0.90), tf(0.30, 0.70)) is False
    assert factcheck.prefers_statement(tf(0.0, 0.0), tf(0.3, 0.7)) is None
    assert factcheck.prefers_statement(None, tf(0.3, 0.7)) is None


def test_a_probe_that_always_answers_false_is_exactly_at_chance():
    value, low, high = factcheck.balanced(tp=0, n_pos=20, tn=20, n_neg=20)
    assert (value, low, high) == (0.5, 0.5, 0.5)
    cal = factcheck.calibration_of("m", "plain", "calibrate", 20, {"n": 20, "tp": 0, "tn": 20, "pairwise": 11})
    assert not cal.readable
    assert cal.sentence().startswith("the fact-check probe is at chance on this model")


def test_a_probe_above_chance_is_readable_and_says_so():
    cal = factcheck.calibration_of("m", "chat_fewshot", "calibrate", 62, {"n": 60, "tp": 1, "tn": 59, "pairwise": 50})
    assert cal.readable and cal.pairwise_low > 0.5
    assert "reads above chance" in cal.sentence()
    assert factcheck.Calibration.from_dict(cal.to_dict()) == cal


def test_wilson_interval_contains_the_proportion_and_stays_in_bounds():
    lo, hi = factcheck.wilson(46, 61)
    assert lo < 46 / 61 < hi and 0 <= lo and hi <= 1
    assert factcheck.wilson(0, 0) == (None, None)


def test_the_select_and_calibrate_splits_are_disjoint_and_balanced():
    select, cal = factcheck.statements("select"), factcheck.statements("calibrate")
    assert not {f["prompt"] for f in select} & {f["prompt"] for f in cal}
    assert len(select) >= 50 and len(cal) >= 50
    for f in select + cal:
        assert f["foil"] != f["answer"]
    demo = {q for q, _ in factcheck.demonstrations()}
    assert not demo & {factcheck.question(f"{f['prompt']} {f['answer']}") for f in select + cal}
    with pytest.raises(ValueError, match="split"):
        factcheck.statements("test")


def test_forms_carry_their_chat_flag_and_demonstrations():
    assert factcheck.probe_fields("plain") == {"chat": False, "demos": ()}
    assert factcheck.probe_fields("chat_fewshot")["chat"] is True
    assert len(factcheck.probe_fields("fewshot")["demos"]) == 4
    with pytest.raises(ValueError, match="not one of"):
        factcheck.probe_fields("zero-shot")
    assert factcheck.default_form(SimpleNamespace(chat_template="x")) == "chat_fewshot"
    assert factcheck.default_form(SimpleNamespace(chat_template=None)) == "fewshot"


@pytest.mark.slow
def test_the_default_model_reads_the_adopted_form_above_chance(handle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibration, "BUNDLED", tmp_path / "none.json")  # computed here, not read from the bundle
    cal = calibration.calibrate(handle)
    assert cal.form == "chat_fewshot" and cal.split == "calibrate"
    assert cal.known >= 50  # the bundled facts are common knowledge the model completes
    assert cal.readable, cal.sentence()
    assert calibration.calibrate(handle) == cal  # read back from the cache
    zero_shot = calibration.calibrate(handle, "chat")  # the question alone, as a user turn: at chance
    assert not zero_shot.readable and "at chance" in zero_shot.sentence()
    monkeypatch.undo()
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path / "empty"))
    assert calibration.calibrate(handle) == cal  # the bundled calibration is what the code computes


def test_a_model_without_a_bundled_calibration_computes_its_own(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(calibration, "known_facts", lambda model, tok, facts: facts[:10])
    monkeypatch.setattr(
        calibration,
        "score_form",
        lambda model, tok, facts, form: {"n": len(facts), "tp": 0, "tn": len(facts), "pairwise": 5},
    )
    import threading

    handle = SimpleNamespace(
        fingerprint="not-bundled",
        name="m",
        model=None,
        lock=threading.RLock(),
        tokenizer=SimpleNamespace(chat_template=None),
    )
    cal = calibration.calibrate(handle)
    assert (cal.form, cal.known, cal.readable) == ("fewshot", 10, False)
