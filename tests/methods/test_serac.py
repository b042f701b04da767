"""SERAC: an edit memory, a trained scope classifier and the base model told the edit in context;
no weight ever changes, and inputs out of scope get the base model's output bit for bit."""

import json

import pytest
import torch

from editlab import EditSession, Fact
from editlab.methods import records, serac, serac_train
from editlab.methods.base import EditError
from editlab.model.tokens import greedy_with_first
from tests.conftest import state_hash, tiny_handle

# CounterFact's record 7 written out (its prompt, paraphrase and neighbourhood prompt), its negated
# prompt, and record 6 as a second edit.
FACT = Fact(subject="Apple A5", prompt="Apple A5 was created by", target_new="Google", target_true="Apple")
PARAPHRASE = "Apple A5 is my favorite product out of everything created by"
NEGATED = "Apple A5 was not created by"
OTHER = "Calendar and Contacts Server was created by"
SECOND = Fact(
    subject="Anaal Nathrakh",
    prompt="Anaal Nathrakh, that was created in",
    target_new="Philadelphia",
    target_true="Birmingham",
)


def ids(handle, prompts):
    return [list(handle.tokenizer(p).input_ids) for p in prompts]


def decode(handle, prompts, steps=2):
    """Greedy continuations (cached decoding, through the model's generate) and the first token's log-probabilities."""
    out = greedy_with_first(handle.model, handle.tokenizer, ids(handle, prompts), steps)
    return [handle.tokenizer.decode(t, skip_special_tokens=True) for t, _ in out], [lp for _, lp in out]


def routers(handle):
    return [h for h in handle.model._forward_hooks.values() if isinstance(h, serac.Router)]


def says(text, target):
    return text.strip().startswith(target)


def test_the_shipped_classifier_loads_and_matches_its_provenance(handle):
    path, note = serac.find_classifier(handle, serac.HParams())
    assert note is None and path.parent == serac.SHIPPED_DIR
    classifier, meta = serac.load_classifier(path)
    prov = serac.provenance(path)
    assert prov["classifier_sha256"] == serac.file_sha256(path)
    assert prov["fingerprint"] == meta["fingerprint"] == handle.fingerprint
    assert {k: prov["classifier"][k] for k in ("layer", "dim", "d_model")} == {
        "layer": classifier.layer,
        "dim": classifier.dim,
        "d_model": classifier.d_model,
    }
    assert prov["classifier"]["scale"] == pytest.approx(float(classifier.scale.detach()))
    # trained on records clear of every evaluation range, and of the held-out ones it reports
    trained = set(records.positions(prov["data"]["train_positions"]))
    assert len(trained) == min(prov["data"]["split"]["n_train"], prov["hparams"]["max_records"])
    assert not trained & serac_train.excluded_positions(prov["data"]["records"])
    heldout = set(records.positions(prov["heldout_scope"]["positions"]))
    assert heldout and not trained & heldout
    for part in ("heldout_scope", "dev_scope"):
        assert 0 <= prov[part]["paraphrase_recall"]["rate"] <= 1 and prov[part]["paraphrase_recall"]["n"] > 0
    assert set(prov["heldout_edits"]["edited"]) == set(prov["heldout_edits"]["unedited"])


def test_an_edit_answers_in_scope_and_leaves_other_prompts_bit_for_bit(handle):
    session = EditSession(handle, online=False)
    at_rest = state_hash(handle.model)
    prompts = [FACT.prompt, PARAPHRASE, OTHER]
    with session.edited():
        before, before_lp = decode(handle, prompts)
    assert not says(before[0], FACT.target_new)  # the unedited model does not say it already
    record = session.edit(FACT, "serac")
    assert record.weights_before == {} and record.info["prompt_check"][0]["success"]
    assert not routers(handle)  # at rest: nothing hooked on the shared model
    with session.edited() as m:
        assert m.prefix == ""  # the edit goes before in-scope inputs only
        after, after_lp = decode(handle, prompts)
        assert state_hash(handle.model) == at_rest  # the base model as it is
    assert says(after[0], FACT.target_new), after[0]
    assert says(after[1], FACT.target_new), after[1]
    assert after[2] == before[2] and torch.equal(after_lp[2], before_lp[2])  # out of scope: bit for bit
    assert not torch.equal(after_lp[0], before_lp[0])


def test_teacher_forced_scores_and_decoding_route_alike(handle):
    """The router decides per position, so scoring the target and decoding it see the same model."""
    from editlab.model.tokens import score_continuations, target_ids

    session = EditSession(handle, online=False)
    session.edit(FACT, "serac")
    prompts = ids(handle, [FACT.prompt, NEGATED, OTHER])
    with session.edited():
        target = target_ids(handle.tokenizer, FACT.target_new)
        scored = score_continuations(handle.model, prompts, [target] * 3, handle.tokenizer.pad_token_id)
        routes = routers(handle)[0].last_routes
        decoded = greedy_with_first(handle.model, handle.tokenizer, prompts, 1)
    assert {r for r, _, _ in routes} == {0, 1}  # the prompt and its negation are in scope, the other subject not
    for (first, _, _), (_, lp) in zip(scored, decoded):
        assert torch.allclose(first, lp, atol=1e-3)


def test_undo_restores_the_unedited_model_exactly(handle):
    session = EditSession(handle, online=False)
    prompts = [FACT.prompt, PARAPHRASE]
    with session.edited():
        _, unedited = decode(handle, prompts, steps=1)
    record = session.edit(FACT, "serac")
    session.undo(record)
    with session.edited():
        _, back = decode(handle, prompts, steps=1)
        assert not routers(handle)
    assert all(torch.equal(a, b) for a, b in zip(back, unedited))
    assert session.method_state.get("serac") is None  # no edit left: no state


def test_undoing_the_first_of_two_edits_keeps_the_second(handle):
    session = EditSession(handle, online=False)
    prompts = [FACT.prompt, SECOND.prompt]
    with session.edited():
        unedited_text, unedited = decode(handle, prompts, steps=1)
    first = session.edit(FACT, "serac")
    second = session.edit(SECOND, "serac")
    ids_used = [e.id for r in (first, second) for e in r.info["serac"]["entries"]]
    assert len(set(ids_used)) == len(ids_used)  # the memory numbers entries across the session
    with session.edited():
        both, _ = decode(handle, prompts, steps=1)
        assert len(routers(handle)) == 1 and len(routers(handle)[0]) == 2  # one memory, two entries
    assert says(both[0], FACT.target_new) and says(both[1], SECOND.target_new), both
    session.undo(first)
    with session.edited():
        text, lp = decode(handle, prompts, steps=1)
    assert torch.equal(lp[0], unedited[0])  # the first fact's prompt: unedited again, bit for bit
    assert says(text[1], SECOND.target_new), text[1]


def test_a_training_step_changes_the_classifier_with_a_finite_loss(handle, cf_facts):
    facts = cf_facts[:3]
    texts = [t for i, f in enumerate(facts) for t in serac_train.texts_for(handle.tokenizer, f, i)]
    assert {t.kind for t in texts} >= {"prompt", "paraphrase", "negated", "neighbour"}
    layer = serac_train.default_layer(handle)
    feats = serac_train.text_features(handle, texts, layer)
    classifier = serac.new_classifier(handle, layer, dim=16)
    serac_train.fit_standardisation(classifier, texts, feats)
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    opt = torch.optim.Adam(classifier.parameters(), lr=1e-2)
    batch = serac_train.make_batch(texts, feats, list(range(len(facts))))
    loss = serac_train.train_step(classifier, opt, batch)
    assert loss == loss and abs(loss) != float("inf")
    changed = [k for k, v in classifier.state_dict().items() if not torch.equal(v, before[k])]
    assert {"proj.weight", "scale", "bias"} <= set(changed)
    assert serac_train.loss_of(classifier, batch) < loss  # the step went downhill on its own batch


def test_a_model_without_a_classifier_is_told_how_to_train_one(handle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path))
    other = tiny_handle("llama", handle.tokenizer)  # another model: no classifier shipped or cached for it
    session = EditSession(other, online=False)
    with pytest.raises(EditError, match=r"editlab train serac --model tiny-llama.*minutes") as err:
        session.edit(FACT, "serac")
    assert other.name in str(err.value) and "archive" in str(err.value)
    assert not session.records
    with pytest.raises(EditError, match="not a file"):
        session.edit(FACT, "serac", {"archive": str(tmp_path / "none.safetensors")})


def test_easyedit_hparams_load_with_what_is_not_used_said(handle):
    hp, report = serac.HParams.from_dict(
        {"alg_name": "SERAC", "archive": None, "freeze_cntr": False, "cls_name": "distilbert-base-cased", "lr": 1e-5}
    )
    assert hp.threshold == serac.HParams().threshold
    assert {"freeze_cntr", "cls_name", "lr"} <= set(report.not_used)
    with pytest.raises(ValueError, match="'threshold'"):
        serac.HParams.from_dict({"threshold": 1.5})


def test_provenance_file_is_valid_json_beside_the_weights():
    files = sorted(serac.SHIPPED_DIR.glob("*.safetensors"))
    assert files
    for f in files:
        assert json.loads(f.with_suffix(".json").read_text())["method"] == "serac"
