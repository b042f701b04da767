"""FT-L and FT-M: constrained fine-tuning of one MLP output projection."""

import pytest
import torch

from editlab import EditSession, Fact
from editlab.measure.probes import Probe
from editlab.methods import ft_l, ft_m
from editlab.methods.teacher import Encoded, prompt_last_nll, target_nll
from tests.conftest import state_hash, tiny_handle

FAMILIES = ["gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3"]


def positive(session, fact):
    [m] = session.measure_current(fact, [Probe("positive", fact.prompt, max_new_tokens=1)])
    return m


@pytest.fixture(scope="module")
def session(handle):
    return EditSession(handle)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ft-l", "ft-m"])
def test_ft_makes_target_new_win_on_each_fact_and_undo_is_exact(session, cf_facts, method):
    model = session.handle.model
    at_rest = state_hash(model)
    lines = []
    for fact in cf_facts[:5]:
        record = session.edit(fact, method)
        m = positive(session, fact)
        lines.append(f"{fact.subject}: P(new) {m.p_new:.3f} vs P(true) {m.p_true:.3f}")
        assert m.p_new > m.p_true, "\n".join(lines)
        # What the record reports is what the probe measures.
        assert record.info["prompt_check"][0]["success"] is True
        assert "note" not in record.info
        # The constraint holds: no entry moved further than ε from the unedited weight.
        [name] = record.weights_before
        delta = (record.weights_after[name] - record.weights_before[name]).abs().max().item()
        assert 0 < delta <= record.hparams["norm_constraint"] + 1e-6
        session.undo(record)
    with session.applied():
        assert state_hash(model) == at_rest
    assert state_hash(model) == at_rest


@pytest.mark.slow
def test_ft_m_batch_reports_each_fact_honestly_and_undo_reset_are_exact(session, cf_facts):
    """Five facts share one ε-box in a batch: whatever it achieves per fact, the record says."""
    model = session.handle.model
    facts = cf_facts[:5]
    at_rest = state_hash(model)
    record = session.edit(facts, "ft-m")
    assert record.info["objective"] == "target_new"
    failed = []
    for fact, check in zip(facts, record.info["prompt_check"]):
        m = positive(session, fact)
        assert check["success"] == (m.p_new > m.p_true)
        if not check["success"]:
            failed.append(fact.subject)
    # Measured: 3/5 — Lyon's twin city and Anaal Nathrakh miss when five facts share the box
    # (each of them alone succeeds, see above).
    assert len(failed) <= 2, failed
    if failed:
        assert all(repr(s) in record.info["note"] for s in failed)
    with session.applied():
        assert state_hash(model) != at_rest
    assert state_hash(model) == at_rest  # at rest the shared model is unedited
    session.undo(record)
    with session.applied():
        assert state_hash(model) == at_rest
    session.edit(facts[0], "ft-m", {"num_steps": 2})
    session.reset()
    with session.applied():
        assert state_hash(model) == at_rest


def test_ft_l_scores_every_target_token_at_the_prompt_ft_m_each_at_its_own_position():
    """The documented difference: for a two-token target FT-L reads both tokens from the prompt's
    last position, FT-M teacher-forces the second token after the first."""
    vocab = 5
    item = Encoded(ids=(0, 1, 2, 3), n_prompt=2, target=(2, 3))
    logits = torch.zeros(1, 4, vocab)
    logits[0, 1, 2] = 10.0  # at the prompt's last position: token 2 certain
    logits[0, 2, 3] = 10.0  # after token 2: token 3 certain
    assert target_nll(logits, [item]).item() < 1e-3  # FT-M: both tokens right where they belong
    # FT-L asks the prompt's last position for token 3 as well, where it has P ≈ 0.
    assert prompt_last_nll(logits, [item]).item() > 4.0
    single = Encoded(ids=(0, 1, 2), n_prompt=2, target=(2,))
    assert torch.isclose(prompt_last_nll(logits, [single]), target_nll(logits, [single]))


@pytest.mark.parametrize("family", FAMILIES)
def test_ft_edits_tiny_models_of_every_family(handle, family):
    tiny = tiny_handle(family, handle.tokenizer)
    session = EditSession(tiny)
    at_rest = state_hash(tiny.model)
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    for method in ("ft-l", "ft-m"):
        record = session.edit(fact, method, {"num_steps": 3, "early_stop_loss": 0.0})
        [name] = record.weights_before
        assert name == tiny.arch.mlp_out_proj(record.hparams["layers"][0]) + ".weight"
        assert not torch.equal(record.weights_before[name], record.weights_after[name])
        session.undo(record)
        with session.applied():
            assert state_hash(tiny.model) == at_rest


def test_default_layer_and_family_defaults(handle):
    hp = ft_l.HParams.for_model(handle)
    assert hp.layers == [10] and hp.objective_optimization == "prompt_last"
    assert ft_m.HParams.for_model(handle).objective_optimization == "target_new"
    with pytest.raises(ValueError, match="out of range"):
        ft_l.HParams(layers=[30]).validate(handle)


EASYEDIT_FT_YAML = """\
alg_name: "FT"
model_name: "./hugging_cache/Qwen2.5-7B"
device: 1

layers: [27]
num_steps: 25
batch_size: 1
max_length: 40
lr: 5e-4
weight_decay: 0
kl_factor: 0
norm_constraint: 5e-4
objective_optimization: "{objective}"
rewrite_module_tmp: "model.layers.{{}}.mlp.down_proj.weight"
layer_module_tmp: "model.layers.{{}}"
mlp_module_tmp: "model.layers.{{}}.mlp"
attn_module_tmp: "model.layers.{{}}.self_attn"
ln_f_module: "model.norm"
lm_head_module: "lm_head"
model_parallel: false
grad_clip: 1.0
"""


def test_easyedit_ft_yaml_loads_with_unknown_keys_reported(handle, tmp_path):
    path = tmp_path / "ft.yaml"
    path.write_text(EASYEDIT_FT_YAML.format(objective="prompt_last"))
    hp, report = ft_l.HParams.from_yaml(path, handle)
    assert hp.layers == [27] and hp.num_steps == 25
    assert hp.lr == pytest.approx(5e-4) and hp.norm_constraint == pytest.approx(5e-4)  # "5e-4" is a string in YAML 1.1
    assert report.unknown == ["grad_clip"]
    assert {"rewrite_module_tmp", "device", "model_name", "batch_size"} <= set(report.ignored)
    # An unconstrained EasyEdit file (norm_constraint: false) loads as unconstrained.
    path.write_text(
        EASYEDIT_FT_YAML.format(objective="target_new").replace("norm_constraint: 5e-4", "norm_constraint: false")
    )
    hp_m, _ = ft_m.HParams.from_yaml(path, handle)
    assert hp_m.norm_constraint is None and hp_m.objective_optimization == "target_new"
    # An FT-M file given to FT-L says which method it is.
    with pytest.raises(ValueError, match="ft-m"):
        ft_l.HParams.from_yaml(path, handle)
