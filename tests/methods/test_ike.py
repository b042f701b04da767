"""IKE: the edit is a context before every probe prompt; no weight changes."""

import pytest

from editlab import EditSession, Fact
from editlab.measure.probes import Probe
from editlab.methods import ike
from tests.conftest import state_hash, tiny_handle

FAMILIES = ["gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3"]


def positive(session, fact):
    [m] = session.measure_current(fact, [Probe("positive", fact.prompt, max_new_tokens=1)])
    return m


@pytest.mark.slow
def test_ike_makes_target_new_win_on_five_facts_through_the_probe_prefix(handle, cf_facts):
    session = EditSession(handle)
    at_rest = state_hash(handle.model)
    lines = []
    for fact in cf_facts[:5]:
        record = session.edit(fact, "ike")
        assert record.weights_before == {}
        prefix = record.info["prefix"]
        assert prefix.endswith(f"New fact: {fact.prompt} {fact.target_new}\n")
        assert session.prefix == prefix  # what every probe prompt is prefixed with
        m = positive(session, fact)
        lines.append(f"{fact.subject}: P(new) {m.p_new:.3f} vs P(true) {m.p_true:.3f}")
        assert m.p_new > m.p_true, "\n".join(lines)
        assert record.info["prompt_check"][0]["success"] is True
        session.undo(record)
        assert session.prefix == ""
    with session.applied():
        assert state_hash(handle.model) == at_rest


def test_later_ike_edits_add_only_their_fact_lines(handle, cf_facts):
    session = EditSession(handle)
    first = session.edit(cf_facts[0], "ike", {"k": 4})
    second = session.edit(cf_facts[1], "ike", {"k": 4})
    assert first.info["demonstrations"] == 4 and second.info["demonstrations"] == 0
    assert second.info["prefix"] == f"New fact: {cf_facts[1].prompt} {cf_facts[1].target_new}\n"
    assert session.prefix.count("New fact:") == 4 + 2
    session.reset()
    assert session.prefix == ""
    # After a reset the next IKE edit starts a fresh context with demonstrations.
    assert session.edit(cf_facts[0], "ike", {"k": 4}).info["demonstrations"] == 4


def test_undoing_the_edit_that_carried_the_demonstrations_lets_the_next_one_carry_them(handle, cf_facts):
    session = EditSession(handle)
    first = session.edit(cf_facts[0], "ike", {"k": 4})
    session.edit(cf_facts[1], "ike", {"k": 4})
    session.undo(first)
    assert session.prefix.count("New fact:") == 1  # the later edit's line, without demonstrations
    third = session.edit(cf_facts[2], "ike", {"k": 4})
    assert third.info["demonstrations"] == 4 and session.prefix.count("New fact:") == 1 + 4 + 1


def test_demonstrations_mix_retain_first_then_copy_and_update():
    blocks = ike.demonstrations(8)
    assert len(blocks) == 8 == len(set(blocks))
    kinds = []
    for block in blocks:
        fact, body = block.split("\n")[:2]
        demo = next(d for d in ike.DEMOS if fact == f"New fact: {d[0]} {d[1]}")
        prompt, new, para, other, other_answer = demo
        kinds.append({f"{prompt} {new}": "copy", f"{para} {new}": "update", f"{other} {other_answer}": "retain"}[body])
    assert kinds == ["retain", "retain", "copy", "update", "copy", "update", "copy", "update"]
    assert len(set(ike.demonstrations(ike.MAX_K))) == ike.MAX_K  # every (fact, kind) pair at most once
    with pytest.raises(ValueError, match="at most"):
        ike.HParams(k=ike.MAX_K + 1).validate()


@pytest.mark.parametrize("family", FAMILIES)
def test_ike_edits_tiny_models_of_every_family(handle, family):
    tiny = tiny_handle(family, handle.tokenizer)
    session = EditSession(tiny)
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    before = positive(session, fact)
    record = session.edit(fact, "ike", {"k": 2})
    after = positive(session, fact)
    assert after.p_new != before.p_new  # the probes ran with the context
    session.undo(record)
    assert positive(session, fact).p_new == before.p_new
