import pytest
import torch

from editlab import EditError, EditSession, Fact
from editlab.measure.probes import Probe
from editlab.methods import predicate, rome
from editlab.methods.keys import locate, read_kv
from tests.conftest import TEST_MOM2_TOKENS, state_hash, tiny_session

HP = {"mom2_n_tokens": TEST_MOM2_TOKENS}
FAMILIES = ["gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3"]


@pytest.fixture(scope="module")
def session(handle, corpus_path):
    return EditSession(handle, corpus=corpus_path)


@pytest.mark.slow
def test_rome_writes_five_counterfact_facts(session, cf_facts):
    """After ROME, P(new) > P(true) on the prompt for every fact, and on most paraphrases."""
    para_ok, lines = 0, []
    facts = cf_facts[:5]
    for fact in facts:
        probes = [
            Probe("positive", fact.prompt, max_new_tokens=4),
            Probe("paraphrase", fact.paraphrases[0], max_new_tokens=4),
        ]
        [pos0, _] = session.measure_current(fact, probes)
        record = session.edit(fact, "rome", HP)
        pos, para = session.measure_current(fact, probes)
        session.undo(record)
        lines.append(
            f"{fact.subject}: P(new) {pos0.p_new:.3f}->{pos.p_new:.3f}, P(true) {pos0.p_true:.3f}->{pos.p_true:.3f}; "
            f"paraphrase {para.p_new:.3f} vs {para.p_true:.3f}"
        )
        assert pos.p_new > pos.p_true, "\n".join(lines)
        para_ok += para.p_new > para.p_true
    assert para_ok >= 3, "\n".join(lines)
    assert not session.records


@pytest.mark.slow
def test_undo_and_reset_restore_every_weight_bit_for_bit(session, cf_facts):
    handle = session.handle
    at_rest = state_hash(handle.model)
    first = session.edit(cf_facts[5], "rome", HP)
    with session.applied():
        after_one = state_hash(handle.model)
    assert after_one != at_rest
    assert state_hash(handle.model) == at_rest  # the shared model at rest is unedited
    second = session.edit(cf_facts[6], "rome", HP)
    session.undo(second)
    with session.applied():
        assert state_hash(handle.model) == after_one
    session.undo(first)
    with session.applied():
        assert state_hash(handle.model) == at_rest
    session.edit(cf_facts[5], "rome", HP)
    session.edit(cf_facts[6], "rome", HP)
    session.reset()
    with session.applied():
        assert state_hash(handle.model) == at_rest
    assert state_hash(handle.model) == at_rest


@pytest.mark.slow
def test_an_edit_that_fails_midway_leaves_the_weights_unchanged(session, cf_facts, monkeypatch):
    handle = session.handle
    at_rest = state_hash(handle.model)
    real_compute_v = rome.compute_v
    calls = []

    def second_fact_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the first fact's update is already in the weights by now
            raise RuntimeError("simulated failure in the middle of a batch")
        return real_compute_v(*args, **kwargs)

    monkeypatch.setattr(rome, "compute_v", second_fact_fails)
    with pytest.raises(EditError, match="weights were restored"):
        session.edit(cf_facts[:2], "rome", HP)
    assert len(calls) == 2

    def diverged(*args, **kwargs):  # a v* that blows up: the update writes inf into the weights
        v, info = real_compute_v(*args, **kwargs)
        return torch.full_like(v, float("inf")), info

    monkeypatch.setattr(rome, "compute_v", diverged)
    with pytest.raises(EditError, match="non-finite"):
        session.edit(cf_facts[0], "rome", HP)
    assert not session.records
    assert state_hash(handle.model) == at_rest
    with session.applied():
        assert state_hash(handle.model) == at_rest


@pytest.mark.parametrize("family", FAMILIES)
def test_rome_maps_k_to_v_star_on_tiny_models(family, handle, tmp_path):
    session = tiny_session(family, handle, tmp_path)
    h = session.handle
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    at_rest = state_hash(h.model)
    hp = {"layer": 1, "mom2_n_tokens": 600, "v_num_grad_steps": 10}
    record = session.edit(fact, "rome", hp)
    detail = record.info["facts"][0]
    module = h.arch.mlp_out_proj(1)
    with session.applied():
        _, v = read_kv(h, module, [locate(h.tokenizer, "{}", fact.prompt, fact.subject)])
    assert torch.allclose(v[0], detail["v_star"], rtol=1e-3, atol=1e-4), (v[0] - detail["v_star"]).abs().max()
    assert record.info["stats_source"].startswith("file")
    session.undo()
    with session.applied():
        assert state_hash(h.model) == at_rest


def test_easyedit_yaml_loads_and_reports_what_it_does_not_use(tmp_path, handle):
    y = tmp_path / "rome.yaml"
    y.write_text(
        "alg_name: ROME\nmodel_name: ./hugging_cache/llama-2-7b\nstats_dir: ./data/stats\ndevice: 0\n"
        "layers: [7]\nfact_token: subject_last\nv_num_grad_steps: 20\nv_lr: 0.3\nv_loss_layer: 29\n"
        "v_weight_decay: 0.5\nclamp_norm_factor: 4\nkl_factor: 0.0625\nmom2_adjustment: false\n"
        "context_template_length_params: [[5, 10], [10, 10]]\nrewrite_module_tmp: model.layers.{}.mlp.down_proj\n"
        "layer_module_tmp: model.layers.{}\nmlp_module_tmp: model.layers.{}.mlp\n"
        "attn_module_tmp: model.layers.{}.self_attn\n"
        "ln_f_module: model.norm\nlm_head_module: lm_head\nmom2_dataset: wikipedia\nmom2_n_samples: 100000\n"
        "mom2_dtype: float32\nmodel_parallel: false\nfancy_new_key: 1\n"
    )
    hp, report = rome.HParams.from_yaml(y, handle)
    assert hp.layer == 7 and hp.v_lr == 0.3 and hp.mom2_adjustment is False and hp.mom2_n_tokens == 13_900_000
    assert hp.context_template_length_params == [[5, 10], [10, 10]]
    assert report.unknown == ["fancy_new_key"]
    assert "rewrite_module_tmp" in report.ignored and "device" in report.ignored
    assert report.converted["layers"] == "layers [7] -> layer 7 (the one layer ROME writes)"


def test_bad_hparams_are_named(handle):
    with pytest.raises(ValueError, match="layer 30 is out of range"):
        rome.HParams.from_dict({"layer": 30}, handle)


PREDICATE = {"negation_weight": 1.0, "negation_objective": "predicate", "negation_margin": 1.0}


def test_the_predicate_write_adds_one_rank_one_write_at_the_not_token(handle, tmp_path):
    """negation_objective "predicate": the subject's write is the published one, bit for bit, and one
    more rank-one write maps the key at the "not" token of the negated prompt to its z."""
    session = tiny_session("llama", handle, tmp_path)
    h = session.handle
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    hp = {"layer": 1, "mom2_n_tokens": 600, "v_num_grad_steps": 8}
    name = h.arch.mlp_out_proj(1) + ".weight"
    published = session.edit(fact, "rome", hp)
    session.undo()
    both = session.edit(fact, "rome", {**hp, **PREDICATE, "v_num_grad_steps": 8})
    detail, pred = both.info["facts"][0], both.info["facts"][0]["predicate"]
    assert torch.equal(detail["v_star"], published.info["facts"][0]["v_star"])  # the subject's v* is the published one
    extra = (both.weights_after[name] - published.weights_after[name]).double()
    s = torch.linalg.svdvals(extra)
    assert s[0] > 0 and s[1] / s[0] < 1e-4, s[:3]  # exactly one more direction written
    assert pred["not_token"].strip() == "not" and pred["z_steps"] >= 1
    with session.applied():
        k, v = read_kv(h, h.arch.mlp_out_proj(1), [predicate.site(h.tokenizer, "{}", fact)])
    assert torch.allclose(k[0], pred["k"], atol=1e-5)
    assert torch.allclose(v[0], pred["z"], rtol=1e-3, atol=1e-4), (v[0] - pred["z"]).abs().max()  # W k_n = z_n


def test_the_predicate_write_says_why_it_wrote_nothing(handle, tmp_path):
    session = tiny_session("llama", handle, tmp_path)
    hp = {"layer": 1, "mom2_n_tokens": 600, "v_num_grad_steps": 2, **PREDICATE}
    no_true = session.edit(
        Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English"), "rome", hp
    )
    assert "no true target" in no_true.info["facts"][0]["predicate"]["skipped"]
    assert "predicate write was skipped" in no_true.info["note"] and "no true target" in no_true.info["note"]
    negated = session.edit(Fact("Paris", "Paris is not the capital of", "Italy", "France"), "rome", hp)
    assert "already negated" in negated.info["facts"][0]["predicate"]["skipped"]


@pytest.mark.slow
def test_the_predicate_write_makes_not_mean_not_on_the_real_model(session):
    """On the default model the published write makes "... is not" say the new target too (the
    negation collapse); the predicate write keeps the positive and turns the negated prompt."""
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    probes = [
        Probe("positive", fact.prompt, max_new_tokens=2),
        Probe("negation", fact.prompt + " not", max_new_tokens=2),
    ]
    said = {}
    for name, extra in (("published", {}), ("predicate", PREDICATE)):
        record = session.edit(fact, "rome", {**HP, **extra})
        said[name] = session.measure_current(fact, probes)
        session.undo(record)
    (pos, neg), (pos2, neg2) = said["published"], said["predicate"]
    assert pos.p_new > pos.p_true and neg.p_new > neg.p_true  # the collapse the issue starts from
    assert pos2.p_new > pos2.p_true and neg2.p_true > neg2.p_new, (pos2, neg2)


def test_predicate_keep_leaves_other_subjects_not_keys_exactly_alone(handle, tmp_path):
    """predicate_keep = n: the predicate write is C⁻¹-orthogonal to n other subjects' keys at "not",
    so their outputs are those of the published write; the fact's own "not" key still maps to z."""
    session = tiny_session("llama", handle, tmp_path)
    h = session.handle
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    hp = {"layer": 1, "mom2_n_tokens": 600, "v_num_grad_steps": 8}
    name, module = h.arch.mlp_out_proj(1) + ".weight", h.arch.mlp_out_proj(1)
    published = session.edit(fact, "rome", hp)
    session.undo()
    kept = session.edit(fact, "rome", {**hp, **PREDICATE, "predicate_keep": 4})
    assert kept.info["facts"][0]["predicate"]["held"] == 4
    with session.applied():
        held = predicate.other_not_keys(h, fact, module, 4)
    extra = (kept.weights_after[name] - published.weights_after[name]).double()
    own = kept.info["facts"][0]["predicate"]["k"].double()
    assert (extra @ held.double().T).abs().max() < 1e-6 * (extra @ own).abs().max()  # held keys: no change at all
    assert (extra @ own).abs().max() > 0


def test_predicate_layer_writes_the_predicate_in_its_own_layer(handle, tmp_path):
    session = tiny_session("llama", handle, tmp_path)
    h = session.handle
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    hp = {"layer": 1, "mom2_n_tokens": 600, "v_num_grad_steps": 4, **PREDICATE, "predicate_layer": 0}
    record = session.edit(fact, "rome", hp)
    names = [h.arch.mlp_out_proj(1) + ".weight", h.arch.mlp_out_proj(0) + ".weight"]
    assert sorted(record.weights_after) == sorted(names)
    for name in names:  # the subject's write in layer 1, the predicate's in layer 0
        assert not torch.equal(record.weights_after[name], record.weights_before[name])
    assert rome.touched(h, rome.HParams(layer=1, predicate_layer=0, **PREDICATE)) == names
    assert rome.touched(h, rome.HParams(layer=1, predicate_layer=0, negation_weight=0.0)) == names[:1]
    assert rome.touched(h, rome.HParams(layer=1, predicate_layer=0, negation_weight=1.0)) == names[:1]  # two-sided
