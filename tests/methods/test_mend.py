"""MEND: the shipped editor for the default model, its one-step edit, exact undo, training, and the
message for a model without an editor."""

import pytest
import torch
from torch.func import functional_call

from editlab import EditError, EditSession, Fact, Neighbor
from editlab.facts.datasets import from_facts
from editlab.measure.probes import Probe
from editlab.methods import mend, mend_train
from editlab.methods.keys import pad_batch
from editlab.methods.teacher import encode
from tests.conftest import counterfact_fact, state_hash, tiny_handle


def positions(runs) -> set[int]:
    return set(mend_train.positions(runs))


@pytest.fixture(scope="module")
def shipped(handle):
    path = mend.find_editor(handle, mend.HParams.for_model(handle))
    editor, meta = mend.load_editor(path)
    return path, editor, mend.provenance(path)


def test_the_shipped_editor_is_found_for_the_default_model_and_matches_its_provenance(handle, shipped):
    path, editor, prov = shipped
    assert path.parent == mend.SHIPPED_DIR
    assert prov["sha256"] == mend.file_sha256(path)
    assert prov["fingerprint"] == handle.fingerprint and prov["model"] == handle.name
    assert editor.describe() == prov["editor"]
    assert editor.layers == mend.default_layers(handle) == prov["hparams"]["layers"]
    assert prov["steps"] >= 1 and prov["edits_seen"] == prov["steps"] * prov["hparams"]["edits_per_step"]
    assert path.stat().st_size < 8 * 2**20
    # the training records stay clear of every evaluation range editlab uses, and of the held-out ones
    split = prov["data"]["split"]
    train = positions(split["train"])
    assert len(train) == split["n_train"]
    assert not train & mend_train.excluded_positions(prov["data"]["records"])
    assert not train & positions(split["heldout"]) and not train & positions(split["dev"])
    assert positions(prov["heldout"]["positions"]) <= positions(split["heldout"])
    for column in ("unedited", "edited"):
        assert set(prov["heldout"][column]) >= {"efficacy", "paraphrase", "neighborhood"}


def test_the_excluded_positions_are_the_ones_seeded_subsets_and_splits_pick():
    """The training split leaves out what Dataset.subset(n, 0) picks, the first facts and the negation splits."""
    n = 10_000
    facts = [Fact(subject=f"s{i}", prompt=f"s{i} is", target_new="x") for i in range(n)]
    ds = from_facts(facts)
    bad = mend_train.excluded_positions(n)
    for size in (5, 20, 100, 1000):
        assert {r - 1 for r in ds.subset(size, 0).records} <= bad
    assert set(range(mend_train.FIRST_N)) <= bad and set(range(2000, 2050)) <= bad
    split = mend_train.split(n)
    assert not set(split.train) & bad and not set(split.heldout) & bad
    assert not set(split.train) & set(split.heldout)
    with pytest.raises(ValueError, match="overlap"):
        mend_train.split(n, train_range=(1000, 4900))


def test_the_factored_gradient_is_the_weights_gradient(handle):
    """∇_W L = Σ_t δ_t u_tᵀ (§3.1): the factors read by one pass give autograd's gradient of W."""
    layer = mend.default_layers(handle)[1]
    item = encode(handle.tokenizer, "The Eiffel Tower is located in the city of", "Rome")
    ids, mask = pad_batch([item.ids], handle.tokenizer.pad_token_id, handle.device)
    us, deltas, _ = mend.factors(handle, [layer], ids, mask, lambda h: mend.target_nll(handle, h, [item], [0]).sum())
    u, d = mend.token_rows(us[layer][0], deltas[layer][0])
    name = handle.arch.mlp_out_proj(layer) + ".weight"
    w = handle.weight(handle.arch.mlp_out_proj(layer)).detach().clone().requires_grad_(True)
    logits = functional_call(handle.model, {name: w}, args=(), kwargs={"input_ids": ids, "attention_mask": mask}).logits
    lp = torch.log_softmax(logits[0].float(), -1)
    (-lp[item.target_positions(), list(item.target)].mean()).backward()
    assert u.shape[0] == len(item.ids) - 1  # every position up to the last scored one carries gradient
    assert torch.allclose(d.T @ u, w.grad, rtol=1e-3, atol=1e-4 * w.grad.abs().max().item())


@pytest.mark.slow
def test_an_edit_raises_p_new_on_a_heldout_fact_and_undo_is_bit_exact(handle, shipped, counterfact_records):
    _, _, prov = shipped
    held = sorted(positions(prov["heldout"]["positions"]))
    facts = [counterfact_fact(counterfact_records[i]) for i in held[:2]]
    session = EditSession(handle)
    model = handle.model
    at_rest = state_hash(model)
    probes = {f.subject: [Probe("positive", f.prompt, max_new_tokens=1)] for f in facts}
    before = {f.subject: session.measure_current(f, probes[f.subject])[0] for f in facts}
    first = session.edit(facts[0], "mend")
    assert sorted(first.weights_before) == sorted(mend.touched(handle, mend.HParams.for_model(handle)))
    [after] = session.measure_current(facts[0], probes[facts[0].subject])
    line = f"{facts[0].subject}: P(new) {before[facts[0].subject].p_new:.4f} -> {after.p_new:.4f}"
    assert after.p_new > before[facts[0].subject].p_new, line
    assert first.info["prompt_check"][0]["p_new"] == pytest.approx(after.p_new, rel=1e-4)
    with session.applied():
        after_one = state_hash(model)
    assert after_one != at_rest and state_hash(model) == at_rest
    second = session.edit(facts[1], "mend")  # sequential: the second update is computed on the edited model
    session.undo(second)
    with session.applied():
        assert state_hash(model) == after_one
    session.undo(first)
    with session.applied():
        assert state_hash(model) == at_rest


def test_one_training_step_changes_the_editor_and_leaves_the_model_untouched(handle):
    facts = [
        Fact(
            subject="Danielle Darrieux",
            prompt="The mother tongue of Danielle Darrieux is",
            target_new="English",
            target_true="French",
            paraphrases=("Danielle Darrieux was born speaking",),
            neighbors=(Neighbor("The mother tongue of Léon Blum is", "French"),),
        ),
        Fact(
            subject="Toko Yasuda",
            prompt="Toko Yasuda, the",
            target_new="piano",
            target_true="guitar",
            paraphrases=("Toko Yasuda is known for playing the",),
            neighbors=(Neighbor("Jimi Hendrix, the", "guitar"),),
        ),
        Fact(
            subject="Autonomous University of Madrid",
            prompt="Autonomous University of Madrid, which is located in",
            target_new="Sweden",
            target_true="Spain",
            paraphrases=("The Autonomous University of Madrid is in",),
            neighbors=(Neighbor("Complutense University of Madrid, which is located in", "Spain"),),
        ),
    ]
    at_rest = state_hash(handle.model)
    hp = mend_train.TrainHParams.for_model(handle)
    hp.edits_per_step, hp.rank = 2, 4
    editor = mend.new_editor(handle, hp.layers, hp.rank, hp.n_hidden, hp.edit_lr, seed=hp.seed)
    start = {k: v.detach().clone() for k, v in editor.named_parameters()}
    result = mend_train.train(handle, facts, hp, steps=1, editor=editor, log_every=1)
    [row] = result.history
    assert all(torch.isfinite(torch.tensor(row[k])) for k in ("loss", "l_edit", "l_loc", "nll_edit"))
    moved = [k for k, v in editor.named_parameters() if not torch.equal(v, start[k])]
    assert "edit_lrs" in moved and any(k.endswith(".U") for k in moved), moved
    assert editor.count.min() > 0  # the running statistics saw the token rows
    assert state_hash(handle.model) == at_rest
    # the seed fixes the editor's start, the edits drawn and their locality examples: the same step again
    # (equal up to the order of CPU reductions)
    again = dict(mend_train.train(handle, facts, hp, steps=1, log_every=1).editor.named_parameters())
    for k, v in editor.named_parameters():
        assert torch.allclose(v, again[k], rtol=1e-4, atol=1e-7), k


def test_a_model_without_an_editor_is_refused_with_how_to_train_one(handle, tmp_path, monkeypatch, shipped):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path / "cache"))
    tiny = tiny_handle("llama", handle.tokenizer)
    session = EditSession(tiny)
    at_rest = state_hash(tiny.model)
    fact = Fact(subject="Paris", prompt="Paris is the capital of", target_new="Italy")
    with pytest.raises(EditError, match=r"editlab train mend --model tiny-llama.*minutes"):
        session.edit(fact, "mend")
    # an editor trained for another model is refused by name, not applied
    with pytest.raises(EditError, match="trained for 'smollm2-135m-instruct'"):
        session.edit(fact, "mend", {"archive": str(shipped[0])})
    assert state_hash(tiny.model) == at_rest and not session.records


def test_easyedit_mend_files_load_with_the_training_keys_reported():
    data = {
        "alg_name": "MEND",
        "archive": None,
        "lr_scale": 0.5,
        "edit_lr": 1e-4,
        "cedit": 0.1,
        "rank": 1920,
        "inner_params": [
            "model.layers.29.mlp.gate_proj.weight",
            "model.layers.29.mlp.down_proj.weight",
            "model.layers.30.mlp.down_proj.weight",
        ],
    }
    hp, report = mend.HParams.from_dict(data)
    assert hp.layers == [29, 30] and hp.lr_scale == 0.5
    assert "gate_proj" in report.converted["inner_params"]
    assert {"edit_lr", "cedit", "rank"} <= set(report.not_used)
    train_hp, train_report = mend_train.TrainHParams.from_dict({"accumulate_bs": 10, "cloc": 1.0, "combine": True})
    assert train_hp.edits_per_step == 10 and "combine" in train_report.not_used
    with pytest.raises(ValueError, match="lr_scale"):
        mend.HParams.from_dict({"lr_scale": 0})
