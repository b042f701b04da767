"""Edits attempted with bad input on a tiny model: refused with a message naming the bad value,
and every weight bit for bit as before (at rest and with the session's edits applied)."""

import pytest

from editlab import Fact
from editlab.core.limits import LimitError

from ..conftest import state_hash, tiny_session

FACT = Fact(subject="Rome", prompt="Rome is the capital of", target_new="France", target_true="Italy")
QUICK = {"layer": 1, "mom2_adjustment": False, "v_num_grad_steps": 2}


@pytest.fixture(scope="module")
def session(handle, tmp_path_factory):
    s = tiny_session("llama", handle, tmp_path_factory.mktemp("tiny"))
    s.edit(FACT, "rome", QUICK)  # one edit held, so "unchanged" covers the applied state too
    return s


@pytest.mark.parametrize(
    "method,hparams,words",
    [
        ("rome", {**QUICK, "clamp_norm_factor": -1}, "'clamp_norm_factor': -1.0"),
        ("rome", {**QUICK, "kl_factor": -0.5}, "'kl_factor': -0.5"),
        ("rome", {**QUICK, "v_lr": -1}, "'v_lr': -1.0"),
        ("rome", {**QUICK, "negation_weight": -2}, "'negation_weight': -2.0"),
        ("rome", {**QUICK, "mom2_n_tokens": 0}, "'mom2_n_tokens': 0"),
        ("rome", {**QUICK, "v_weight_decay": float("inf")}, "'v_weight_decay': inf"),
        ("rome", {**QUICK, "v_num_grad_steps": 10**9}, "'v_num_grad_steps': 1000000000"),
        ("rome", {**QUICK, "context_template_length_params": [[100000, 500]]}, "template length"),
        ("rome", {**QUICK, "layer": 99}, "out of range"),
        ("memit", {"layers": [1, 2], "mom2_update_weight": -1, "mom2_adjustment": False}, "'mom2_update_weight': -1.0"),
        ("alphaedit", {"layers": [1], "nullspace_energy": 2.0}, "'nullspace_energy': 2.0"),
        ("pmet", {"layers": [1], "mom2_update_weight": 0}, "'mom2_update_weight': 0.0"),
        ("ft-l", {"layers": [1], "lr": 0}, "'lr': 0.0"),
        ("grace", {"layer": 1, "eps": -1}, "'eps': -1.0"),
        ("kn", {"layers": [1], "adaptive_threshold": 1.5}, "'adaptive_threshold': 1.5"),
        ("ike", {"k": -1}, "'k': -1"),
    ],
)
def test_bad_hyperparameters_refused_and_weights_unchanged(session, method, hparams, words):
    model = session.handle.model
    at_rest = state_hash(model)
    with session.applied():
        applied = state_hash(model)
    with pytest.raises(ValueError) as e:
        session.edit(FACT, method, hparams)
    assert words in str(e.value), str(e.value)
    assert state_hash(model) == at_rest
    with session.applied():
        assert state_hash(model) == applied
    assert len(session.records) == 1


@pytest.mark.parametrize(
    "facts,error,words",
    [
        ("Rome is the capital of France", TypeError, "got the string"),
        ([], ValueError, "no facts"),
        ([FACT] * 500, LimitError, "EDITLAB_MAX_FACTS"),
        ([{"subject": "Rome"}], TypeError, "expected Fact"),
    ],
)
def test_bad_facts_refused_and_weights_unchanged(session, facts, error, words):
    at_rest = state_hash(session.handle.model)
    with pytest.raises(error, match=words):
        session.edit(facts, "rome", QUICK)
    assert state_hash(session.handle.model) == at_rest and len(session.records) == 1
