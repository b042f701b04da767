"""The experiment engine: plans, the one loop, evaluators, replay and cancelling.

Runs on the real default model with ``shift`` (tests/stand_in_method.py), a cheap, deterministic
stand-in edit, so the loop's bookkeeping is tested without paying for real edits; the evaluators
that score use ``editlab.measure.metrics`` on the real model's probes.
"""

import threading

import pytest

from editlab.runs import experiments
from editlab.runs.experiments import At, Plan, Quality, run
from tests.conftest import state_hash


@pytest.fixture(scope="module")
def facts5(cf_facts):
    return tuple(cf_facts[:5])


class Seen:
    """An evaluator that records what it was shown."""

    name = "seen"

    def __init__(self):
        self.calls = []

    def __call__(self, at: At):
        self.calls.append((at.step, at.edited, at.latest, at.digest()))
        return at.step


# ---- plans ------------------------------------------------------------------------------------------
def test_a_sequential_plan_never_lets_a_batch_straddle_a_checkpoint(facts5):
    plan = Plan(facts5, "shift", batch_size=2, checkpoints=(0, 3, 5))
    assert plan.segments() == [((), True), ((0, 1), False), ((2,), True), ((3, 4), True)]
    assert plan.steps() == [0, 3, 5] and plan.n == 5
    assert Plan(facts5, "shift", batch_size=2, checkpoints=(2,)).n == 2  # stops at its last checkpoint
    assert Plan(facts5, "shift", batch_size=2).steps() == [2, 4, 5]  # no checkpoints: after every batch


def test_plans_refuse_what_they_cannot_mean(facts5):
    with pytest.raises(ValueError, match="protocol 'parallel'"):
        Plan(facts5, "shift", protocol="parallel")
    with pytest.raises(ValueError, match="batch size"):
        Plan(facts5, "shift", batch_size=0)
    with pytest.raises(ValueError, match="between 0 and the 5 facts"):
        Plan(facts5, "shift", checkpoints=(6,))
    with pytest.raises(ValueError, match="sequential"):
        Plan(facts5, "shift", protocol="independent", checkpoints=(1,))
    with pytest.raises(ValueError, match="every fact exactly once"):
        Plan(facts5, "shift", batches=((0, 1), (1, 2, 3, 4)))


# ---- the loop -----------------------------------------------------------------------------------------
def test_sequential_checkpoints_see_every_edit_so_far_and_the_latest_batch(handle, shift, facts5):
    seen = Seen()
    before = state_hash(handle.model)
    out = run(handle, Plan(facts5, shift, batch_size=2, checkpoints=(0, 3, 5)), [seen])
    assert [(s, e, latest) for s, e, latest, _ in seen.calls] == [
        (0, (), ()),
        (3, (0, 1, 2), (2,)),
        (5, (0, 1, 2, 3, 4), (3, 4)),
    ]
    assert seen.calls[0][3] is None and seen.calls[1][3] != seen.calls[2][3]  # the digest follows the edits
    assert [m.values["seen"] for m in out.measured] == [0, 3, 5]
    assert sorted(out.edit_seconds) == [0, 1, 2, 3, 4] and not out.failures
    assert out.notes == {"statistics: none (test stand-in)"}
    assert state_hash(handle.model) == before  # the session applies edits only while it measures


def test_independent_batches_each_start_from_the_unedited_model(handle, shift, facts5):
    seen = Seen()
    run(handle, Plan(facts5[:2], shift, protocol="independent"), [seen])
    alone = Seen()
    run(handle, Plan(facts5[1:2], shift, protocol="independent"), [alone])
    assert [(e, latest) for _, e, latest, _ in seen.calls] == [((0,), (0,)), ((1,), (1,))]
    assert seen.calls[1][3] == alone.calls[0][3]  # fact 2 after fact 1's batch = fact 2 alone


def test_a_failed_edit_is_recorded_and_the_plan_goes_on(handle, shift, facts5):
    seen = Seen()
    out = run(handle, Plan(facts5[:2], shift, {"fail": True}, checkpoints=(1, 2)), [seen])
    assert [f["indices"] for f in out.failures] == [[0], [1]] and "stand-in failure" in out.error_of(1)
    assert [d for *_, d in seen.calls] == [None, None]  # no weight was written


def test_quality_scores_with_editlab_metrics(handle, shift, facts5):
    out = run(
        handle,
        Plan(facts5[:2], shift, batch_size=2, checkpoints=(0, 2)),
        [Quality("edited"), Quality("latest", name="new")],
    )
    unedited, after = out.measured
    assert unedited.values["quality"]["indices"] == [0, 1]  # checkpoint 0: the reference over what will be edited
    assert after.values["new"]["indices"] == [0, 1] and len(after.values["quality"]["scores"]) == 2
    assert set(after.values["quality"]["scores"][0]) >= {"ES", "PS", "NS", "PP", "PN", "FC"}
    # the stand-in's shift moves the probabilities: the scores are measured, not copied
    assert [s["EM"] for s in after.values["quality"]["scores"]] != [
        s["EM"] for s in unedited.values["quality"]["scores"]
    ]


def test_replay_reaches_the_recorded_state_and_says_so(handle, shift, facts5):
    plan = Plan(facts5[:4], shift, batch_size=2, checkpoints=(2, 4))
    first = run(handle, plan, [experiments.Digest()])
    recorded = first.measured[0].values["weights_digest"]
    again = run(handle, plan, [experiments.Digest()], skip=2, expected_digest=recorded)
    assert again.replayed == 2 and again.replay_exact is True
    assert [m.step for m in again.measured] == [4]  # nothing up to the skipped checkpoint is measured again
    assert again.measured[0].values["weights_digest"] == first.measured[1].values["weights_digest"]
    wrong = run(handle, plan, [experiments.Digest()], skip=2, expected_digest="0" * 24)
    assert wrong.replay_exact is False


def test_cancel_stops_the_loop(handle, shift, facts5):
    cancel = threading.Event()

    def stop_after_first(p):
        if p.step >= 1:
            cancel.set()

    seen = Seen()
    with pytest.raises(experiments.Cancelled):
        run(handle, Plan(facts5, shift, checkpoints=(1, 2, 3)), [seen], progress=stop_after_first, cancel=cancel)
    assert len(seen.calls) <= 1


def test_reports_probe_the_fact_they_are_about(handle, shift, facts5):
    """The negated-edit protocol: the plan writes "... is not → new", the reports are the original's."""
    from editlab.facts.fact import Fact, negate

    original = facts5[0]
    prompt, _ = negate(original.prompt, original.subject)
    written = Fact(original.subject, prompt, original.target_new, original.target_true)
    out = run(handle, Plan((written,), shift, protocol="independent"), [experiments.Reports(about=(original,))])
    report = out.measured[0].values["reports"][0]
    assert report.fact == original and {r.probe.kind for r in report.rows} >= {"positive", "negation"}
    assert all(r.after is not None and r.unedited is not None for r in report.rows)


def test_quality_without_the_reference_measures_nothing_before_the_first_edit(handle, shift, facts5):
    """A muting run reads efficacy only after edits: checkpoint 0 must not probe every fact it will edit."""
    out = run(handle, Plan(facts5[:2], shift, checkpoints=(0, 1)), [Quality("edited", reference=False)])
    unedited, after = out.measured
    assert unedited.values["quality"] == {"indices": [], "scores": [], "greedy": []}
    assert after.values["quality"]["indices"] == [0] and len(after.values["quality"]["scores"]) == 1


def test_quality_of_chosen_kinds_measures_only_those_and_agrees_with_the_full_measure(handle, shift, facts5):
    """A muting run reads only efficacy over thousands of edits: measuring the positive probe alone must
    give the full measure's ES/EM and leave the other scores unmeasured (None), never guessed."""
    plan = Plan(facts5[:2], shift, checkpoints=(2,))
    full, only = (
        run(handle, plan, [q]).measured[0].values["quality"]
        for q in (Quality("edited"), Quality("edited", kinds=("positive",)))
    )
    assert only["indices"] == full["indices"] == [0, 1] and only["greedy"] == full["greedy"]
    for a, b in zip(full["scores"], only["scores"]):
        assert b["ES"] == a["ES"] and b["EM"] == pytest.approx(a["EM"], abs=1e-4)
        assert a["PS"] is not None and a["PP"] is not None
        assert b["PS"] is None and b["NS"] is None and b["PN"] is None and b["FC"] is None
    with pytest.raises(ValueError, match="unknown quality probe kinds"):
        run(handle, plan, [Quality("edited", kinds=("positve",))])
