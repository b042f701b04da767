"""GRACE: a codebook adapter on one MLP output projection; no weight ever changes."""

import pytest

from editlab import EditSession, Fact
from editlab.measure.probes import Probe
from editlab.methods import grace
from tests.conftest import state_hash, tiny_handle

FAMILIES = ["gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3"]


def positive(session, fact):
    [m] = session.measure_current(fact, [Probe("positive", fact.prompt, max_new_tokens=1)])
    return m


def hooks_on(handle, layer):
    return len(handle.module(handle.arch.mlp_out_proj(layer))._forward_hooks)


@pytest.mark.slow
def test_grace_writes_five_facts_in_sequence_without_touching_a_weight(handle, cf_facts):
    session = EditSession(handle)
    facts = cf_facts[:5]
    at_rest = state_hash(handle.model)
    unedited = {f.subject: positive(session, f) for f in facts}
    records = [session.edit(f, "grace") for f in facts]
    layer = records[0].info["grace"]["layer"]
    assert all(r.weights_before == {} for r in records)
    assert hooks_on(handle, layer) == 0  # at rest: no adapter on the shared model
    with session.applied():
        assert state_hash(handle.model) == at_rest  # the weights are the unedited ones
        assert hooks_on(handle, layer) == 1  # one codebook for all records
    for f in facts:  # the probes run inside session.applied(), so they see the adapter
        m = positive(session, f)
        assert m.p_new > m.p_true, f"{f.subject}: P(new) {m.p_new:.3f} vs P(true) {m.p_true:.3f}"
    # A full report's "after" column sees it too.
    report = session.compare(facts[0])
    pos = next(r for r in report.rows if r.probe.kind == "positive")
    assert pos.after.p_new > pos.after.p_true and pos.unedited.p_new < pos.unedited.p_true
    # Removing one edit by id removes exactly its codebook entry: that fact is back to unedited,
    # the other four stay edited.
    session.undo(records[2].id)
    back = positive(session, facts[2])
    assert back.p_new == pytest.approx(unedited[facts[2].subject].p_new, rel=1e-4)
    assert back.p_true == pytest.approx(unedited[facts[2].subject].p_true, rel=1e-4)
    for f in facts[:2] + facts[3:]:
        m = positive(session, f)
        assert m.p_new > m.p_true
    session.reset()
    for f in facts:
        m = positive(session, f)
        assert m.p_new == pytest.approx(unedited[f.subject].p_new, rel=1e-4)
    with session.applied():
        assert state_hash(handle.model) == at_rest
        assert hooks_on(handle, layer) == 0


@pytest.mark.slow
def test_same_prompt_with_a_new_answer_replaces_the_entry_and_undo_brings_it_back(handle, cf_facts):
    session = EditSession(handle)
    fact = cf_facts[0]
    first = session.edit(fact, "grace")
    again = Fact(fact.subject, fact.prompt, "German", fact.target_new)
    second = session.edit(again, "grace")
    [entry_id] = [e["id"] for e in first.info["grace"]["entries"]]
    assert second.info["grace"]["eps_overrides"] == {entry_id: -1.0}  # the old entry is shadowed
    m = positive(session, again)
    assert m.p_new > m.p_true  # German over English
    session.undo(second)
    m = positive(session, fact)
    assert m.p_new > m.p_true  # English over French again


def test_codebook_conflict_rule_splits_radii():
    """A new key near an existing key with a different label: both radii end at the midpoint."""
    import torch

    hp = grace.HParams(eps=3.0)
    book = grace.Codebook("m", "replace_last")
    book.add("r1", [grace.Entry("e0", torch.zeros(4), torch.zeros(2), 3.0, "Paris")])
    q = torch.tensor([2.0, 0.0, 0.0, 0.0])
    add, eps_new, over, _, reused = grace._place_key(book, q, "Rome", hp)
    assert add and eps_new == pytest.approx(1.0) and over["e0"] == pytest.approx(1.0 - 1e-5) and reused is None
    # Same label nearby: the existing entry grows to cover it (coverage), no new entry.
    add, _, over, _, reused = grace._place_key(book, torch.tensor([4.0, 0, 0, 0]), "Paris", hp)
    assert not add and reused == "e0" and over == {"e0": 4.0}
    # Far away: a fresh entry with the initial radius.
    add, eps_new, over, _, _ = grace._place_key(book, torch.tensor([9.0, 0, 0, 0]), "Rome", hp)
    assert add and eps_new == 3.0 and over == {}


@pytest.mark.parametrize(
    "replacement, replaced",
    [
        ("replace_last", [2]),
        ("replace_prompt", [0, 1, 2]),
        ("replace_all", [0, 1, 2, 3]),
    ],
)
def test_codebook_replaces_outputs_where_the_input_is_within_eps(replacement, replaced):
    import torch

    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 3)
    x = torch.randn(1, 4, 6)
    book = grace.Codebook("m", replacement)
    value = torch.tensor([7.0, 8.0, 9.0])
    book.add("r", [grace.Entry("e0", x[0, 2].clone(), value, 0.5, "new")])
    hook = layer.register_forward_hook(book)
    try:
        out = layer(x)
        far = layer(x + 10.0)  # no position within ε: the layer runs unchanged
    finally:
        hook.remove()
    plain = layer(x)
    for t in range(4):
        expected = value if t in replaced else plain[0, t]
        assert torch.allclose(out[0, t], expected)
    assert torch.allclose(far, layer(x + 10.0))


@pytest.mark.parametrize("family", FAMILIES)
def test_grace_edits_tiny_models_of_every_family(handle, family):
    tiny = tiny_handle(family, handle.tokenizer)
    session = EditSession(tiny)
    at_rest = state_hash(tiny.model)
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    before = positive(session, fact)
    record = session.edit(fact, "grace", {"n_iter": 5, "early_stop_loss": 0.0})
    after = positive(session, fact)
    assert after.p_new > before.p_new  # the adapter is in place and trained towards target_new
    with session.applied():
        assert state_hash(tiny.model) == at_rest
    session.undo(record)
    assert positive(session, fact).p_new == pytest.approx(before.p_new, rel=1e-5)


EASYEDIT_GRACE_YAML = """\
alg_name: "GRACE"
model_name: "./hugging_cache/llama2-7b-chat"
device: 0

inner_params:
- model.layers[27].mlp.down_proj.weight

edit_lr: 1.0
n_iter: 100
eps: 1.0
dist_fn: euc # euc, mmd, cos
val_init: cold # cold, warm
val_train: sgd # sgd, pert
val_reg: None # early
reg: early_stop # early_stop
replacement: replace_prompt # replace_last, replace_all, replace_prompt
eps_expand: coverage # , moving_avg, decay
num_pert: 8 # only matters when using perturbation training
dropout: 0.0
codebook_size: 512
"""


def test_easyedit_grace_yaml_loads_with_unknown_keys_reported(handle, tmp_path):
    path = tmp_path / "grace.yaml"
    path.write_text(EASYEDIT_GRACE_YAML)
    hp, report = grace.HParams.from_yaml(path, handle)
    assert hp.layer == 27 and hp.n_iter == 100 and hp.eps == 1.0 and hp.replacement == "replace_prompt"
    assert hp.val_reg is None and hp.reg == "early_stop"
    assert list(report.converted) == ["inner_params"] and report.converted["inner_params"].endswith("-> layer 27")
    assert report.unknown == ["codebook_size"]
    assert {"alg_name", "model_name", "device"} <= set(report.ignored)
    path.write_text(EASYEDIT_GRACE_YAML.replace("mlp.down_proj", "mlp.up_proj"))
    with pytest.raises(ValueError, match="MLP output projection"):
        grace.HParams.from_yaml(path, handle)
