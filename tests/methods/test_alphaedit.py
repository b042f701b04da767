"""AlphaEdit: null-space projection (rules, disk cache) and the session's protected keys."""

import pytest
import torch

from editlab import EditError, EditSession, Fact
from editlab.methods import alphaedit, multilayer
from editlab.methods.templates import context_templates
from tests.conftest import TEST_MOM2_TOKENS, prompt_failures, state_hash, tiny_handle, tiny_session

HP = {"mom2_n_tokens": TEST_MOM2_TOKENS}
FAMILIES = ["gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3"]
FACTS = [
    Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French"),
    Fact("Edwin of Northumbria", "Edwin of Northumbria's religious values strongly emphasize", "Islam", "Christianity"),
    Fact("Lyon", "Lyon is a twin city of", "Manila", "Beirut"),
]
TINY = {"mom2_n_tokens": 600, "v_num_grad_steps": 3}


@pytest.mark.slow
def test_alphaedit_writes_five_counterfact_facts_in_one_call(handle, corpus_path, cf_facts):
    session = EditSession(handle, corpus=corpus_path)
    at_rest = state_hash(handle.model)
    facts = cf_facts[:5]
    record = session.edit(facts, "alphaedit", HP)
    failed, lines = prompt_failures(session, facts)
    assert not failed, "\n".join(lines)
    # The user sees how large the null space is, and it is a real constraint on this model: the
    # reference threshold leaves out the principal directions that hold most of the keys' energy.
    ns = record.info["nullspace"]
    assert set(ns) == set(record.info["layers"])
    for info in ns.values():
        assert info["rule"] == "absolute 0.02"
        assert 0 < info["kept"] < info["of"] and info["energy_in_nullspace"] < 0.5, info
    assert "null space" in record.info["note"]
    kp = alphaedit.protected_keys(session.method_state["alphaedit"])
    assert {l: int(k.shape[0]) for l, k in kp.items()} == {l: 5 for l in ns}
    session.reset()
    assert session.method_state == {}
    with session.applied():
        assert state_hash(handle.model) == at_rest


def test_energy_and_absolute_rules_choose_the_documented_directions():
    e = torch.tensor([0.001, 0.002, 0.007, 0.09, 0.9])  # ascending, sums to 1
    assert alphaedit.choose_nullspace(e, "energy", 0.99).tolist() == [True, True, True, False, False]
    assert alphaedit.choose_nullspace(e, "energy", 0.999).tolist() == [True, False, False, False, False]
    assert alphaedit.choose_nullspace(e, "absolute", 2e-2).tolist() == [True, True, True, False, False]
    # The energy rule does not depend on the scale of the keys; the absolute one does.
    assert alphaedit.choose_nullspace(e * 100, "energy", 0.99).tolist() == [True, True, True, False, False]
    assert alphaedit.choose_nullspace(e * 100, "absolute", 2e-2).tolist() == [False] * 5


def test_null_space_is_computed_once_per_statistics_and_rule_and_cached_on_disk(handle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    h = tiny_handle("llama", handle.tokenizer)
    torch.manual_seed(0)
    k = torch.randn(400, 64) @ torch.diag(torch.logspace(0, -3, 64))
    c = k.T @ k / 400
    basis, info = alphaedit.nullspace_basis(h, 1, c, "unit", "energy", 0.99)
    assert basis.shape == (64, info["kept"]) and info["energy_in_nullspace"] <= 0.01
    p = basis @ basis.T
    assert torch.allclose(p @ p, p, atol=1e-5)  # a projection
    assert float((p @ c @ p).trace() / c.trace()) <= 0.0101  # onto directions holding ≤ 1% of E‖k‖²
    files = list((tmp_path / "nullspace").rglob("*.safetensors"))
    assert len(files) == 1

    def no_eigh(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(torch.linalg, "eigh", no_eigh)
    again, _ = alphaedit.nullspace_basis(h, 1, c, "unit", "energy", 0.99)
    assert torch.equal(again, basis)
    monkeypatch.undo()
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    alphaedit.nullspace_basis(h, 1, c, "unit", "absolute", 2e-2)  # another rule
    alphaedit.nullspace_basis(h, 1, c * 2, "unit", "energy", 0.99)  # other statistics
    assert len(list((tmp_path / "nullspace").rglob("*.safetensors"))) == 3


def test_protected_keys_grow_per_session_commit_only_on_success_and_reset(handle, tmp_path, monkeypatch):
    s = tiny_session("llama", handle, tmp_path)
    at_rest = state_hash(s.handle.model)
    first = s.edit(FACTS[:2], "alphaedit", TINY)
    assert first.info["protected_keys"] == {0: 2, 1: 2}
    second = s.edit(FACTS[2], "alphaedit", TINY)
    assert second.info["protected_keys"] == {0: 3, 1: 3}
    # The second edit solved against the first edit's keys: K_p entered its system.
    kept = alphaedit.protected_keys(s.method_state["alphaedit"])
    with s.applied():
        after_two = state_hash(s.handle.model)

    def fails(*a, **k):
        raise RuntimeError("simulated failure after the targets")

    monkeypatch.setattr(alphaedit, "spread", fails)
    with pytest.raises(EditError, match="weights were restored"):
        s.edit(FACTS[0], "alphaedit", TINY)
    monkeypatch.undo()
    now = alphaedit.protected_keys(s.method_state["alphaedit"])
    assert all(torch.equal(kept[l], now[l]) for l in kept)
    # Forgetting the first edit leaves the second edit's keys only.
    left = alphaedit.protected_keys(alphaedit.forget(s.method_state["alphaedit"], first))
    assert {l: int(k.shape[0]) for l, k in left.items()} == {0: 1, 1: 1}
    assert torch.equal(left[0], now[0][2:])
    with s.applied():
        assert state_hash(s.handle.model) == after_two
    s.reset()
    assert s.method_state == {}
    third = s.edit(FACTS[0], "alphaedit", TINY)
    assert third.info["protected_keys"] == {0: 1, 1: 1}
    s.undo()
    with s.applied():
        assert state_hash(s.handle.model) == at_rest


def test_an_undone_edit_leaves_no_key_in_the_protected_set(handle, tmp_path):
    """Undo is undo: the undone edit's keys leave K_p, whether it was the latest edit or an earlier one."""
    s = tiny_session("llama", handle, tmp_path)
    first = s.edit(FACTS[:2], "alphaedit", TINY)
    second = s.edit(FACTS[2], "alphaedit", TINY)
    both = alphaedit.protected_keys(s.method_state["alphaedit"])
    s.undo(first)  # an earlier edit; the later one stays
    left = alphaedit.protected_keys(s.method_state["alphaedit"])
    assert {l: int(k.shape[0]) for l, k in left.items()} == {0: 1, 1: 1}
    assert all(torch.equal(left[l], both[l][2:]) for l in left)  # exactly the second edit's keys
    third = s.edit(FACTS[0], "alphaedit", TINY)
    assert third.info["protected_keys"] == {0: 2, 1: 2}  # its own and the second edit's, not the undone ones
    s.undo()  # the latest
    left = alphaedit.protected_keys(s.method_state["alphaedit"])
    assert {l: int(k.shape[0]) for l, k in left.items()} == {0: 1, 1: 1}
    assert all(torch.equal(left[l], both[l][2:]) for l in left)
    assert [r.id for r in s.records] == [second.id]


def test_protecting_earlier_keys_keeps_an_earlier_edit_in_place(handle, tmp_path):
    """With K_p, a second edit changes the layer's output for the first edit's keys far less than
    MEMIT's second edit does (the property sequential editing relies on)."""
    moved = {}
    for method in ("memit", "alphaedit"):
        s = tiny_session("qwen2", handle, tmp_path)
        s.edit(FACTS[:2], method, TINY)
        templates = context_templates(s.handle, [(10, 5)])
        weights = multilayer.template_weights(templates, [[10, 5]])
        with s.applied():
            k1 = multilayer.compute_ks(s.handle, FACTS[:2], 1, templates, weights)
            w_before = s.handle.mlp_out_weight(1).detach().clone()
        s.edit(FACTS[2], method, TINY)
        with s.applied():
            w_after = s.handle.mlp_out_weight(1).detach().clone()
        moved[method] = float(((w_after - w_before) @ k1.T).norm() / (w_after - w_before).norm())
    assert moved["alphaedit"] < 0.5 * moved["memit"], moved


@pytest.mark.parametrize("family", FAMILIES)
def test_alphaedit_edits_tiny_models_of_every_family(family, handle, tmp_path):
    s = tiny_session(family, handle, tmp_path)
    at_rest = state_hash(s.handle.model)
    # Random weights have no meaningful key scale for the reference's absolute threshold (it keeps
    # every direction there, said in the note — tested below); the scale-free rule gives a real null space.
    record = s.edit(FACTS[:2], "alphaedit", {**TINY, "nullspace_energy": 0.9})
    assert all(0 < i["kept"] < i["of"] for i in record.info["nullspace"].values())
    assert min(i["written"] for i in record.info["facts"]) > 0.25, record.info["facts"]
    s.undo()
    with s.applied():
        assert state_hash(s.handle.model) == at_rest


def test_easyedit_alphaedit_yaml_gives_the_reference_absolute_rule(tmp_path, handle):
    y = tmp_path / "alphaedit.yaml"
    y.write_text(
        'alg_name: "AlphaEdit"\nmodel_name: "./hugging_cache/llama-3-8b"\nP_loc: "./null_space_project.pt"\n'
        "layers: [4, 5, 6, 7, 8]\nclamp_norm_factor: 0.75\nv_lr: 1e-1\nv_weight_decay: 0.5\nmom2_update_weight: 15000\n"
        "mom2_n_samples: 100000\nnullspace_threshold: 2e-2\nL2: 10\n"
    )
    hp, report = alphaedit.HParams.from_yaml(y, handle)
    assert hp.rule() == ("absolute", 0.02) and hp.L2 == 10 and hp.v_lr == 0.1 and hp.clamp_norm_factor == 0.75
    # Not used by AlphaEdit (mom2_update_weight) or unsafe to load (a pickled projection): reported, with why.
    assert sorted(report.not_used) == ["P_loc", "mom2_update_weight"] and report.unknown == []
    assert alphaedit.HParams.for_model(handle).rule() == ("absolute", 0.02)


def test_nullspace_energy_replaces_the_absolute_rule_and_bad_values_are_named():
    assert alphaedit.HParams().rule() == ("absolute", 0.02)
    hp, _ = alphaedit.HParams.from_dict({"nullspace_energy": "0.9"})
    assert hp.rule() == ("energy", 0.9)
    for bad, field in (
        ({"nullspace_energy": 1.5}, "nullspace_energy"),
        ({"nullspace_threshold": 0}, "nullspace_threshold"),
    ):
        with pytest.raises(ValueError, match=field):
            alphaedit.HParams(**bad).validate()


def test_a_threshold_that_keeps_every_direction_is_said_and_one_that_keeps_none_fails_cleanly(handle, tmp_path):
    s = tiny_session("llama", handle, tmp_path)
    record = s.edit(FACTS[:1], "alphaedit", {**TINY, "nullspace_threshold": 1e9})
    assert all(i["kept"] == i["of"] for i in record.info["nullspace"].values())
    assert "whole key space" in record.info["note"] and "nullspace_energy" in record.info["note"]
    s.reset()
    at_rest = state_hash(s.handle.model)
    with pytest.raises(EditError, match="null space of layer .* is empty.*nullspace_energy"):
        s.edit(FACTS[:1], "alphaedit", {**TINY, "nullspace_threshold": 1e-30})
    with pytest.raises(EditError, match="null space of layer .* is empty.*lower nullspace_energy"):
        s.edit(FACTS[:1], "alphaedit", {**TINY, "nullspace_energy": 1 - 1e-12})
    with s.applied():
        assert state_hash(s.handle.model) == at_rest
