"""MEMIT: batch edits over a layer range (the shared target optimisation: test_vstar.py)."""

import pytest

from editlab import EditSession, Fact
from editlab.measure.probes import Probe
from editlab.methods import memit, multilayer
from editlab.methods.keys import locate
from tests.conftest import TEST_MOM2_TOKENS, counterfact_fact, state_hash, tiny_session

HP = {"mom2_n_tokens": TEST_MOM2_TOKENS}
FAMILIES = ["gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3"]
FACTS = [
    Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French"),
    Fact("Edwin of Northumbria", "Edwin of Northumbria's religious values strongly emphasize", "Islam", "Christianity"),
    Fact("Lyon", "Lyon is a twin city of", "Manila", "Beirut"),
]


@pytest.fixture(scope="module")
def session(handle, corpus_path):
    return EditSession(handle, corpus=corpus_path)


def residual_gap(session, record, facts):
    """‖z − h‖ at the last edit layer for each fact, on the session's current model."""
    plain = [locate(session.handle.tokenizer, "{}", f.prompt, f.subject) for f in facts]
    with session.applied():
        now = multilayer.read_at(session.handle, record.info["z_module"], plain, "output").cpu()
    return (record.info["targets"] - now).norm(dim=1)


@pytest.mark.slow
def test_memit_writes_twenty_counterfact_facts_in_one_call(session, counterfact_records):
    """One call, 20 facts: P(new) > P(true) on every prompt, most paraphrases follow, undo is exact."""
    handle = session.handle
    facts = [counterfact_fact(r) for r in counterfact_records[:20]]
    at_rest = state_hash(handle.model)
    record = session.edit(facts, "memit", HP)
    assert sorted(record.weights_before) == sorted(
        handle.arch.mlp_out_proj(l) + ".weight" for l in record.info["layers"]
    )
    lines, failed, para_ok = [], [], 0
    for fact in facts:
        pos, para = session.measure_current(
            fact,
            [
                Probe("positive", fact.prompt, max_new_tokens=1),
                Probe("paraphrase", fact.paraphrases[0], max_new_tokens=1),
            ],
        )
        lines.append(
            f"{fact.subject}: P(new) {pos.p_new:.3f} vs P(true) {pos.p_true:.3f}; "
            f"paraphrase {para.p_new:.3f} vs {para.p_true:.3f}"
        )
        if not pos.p_new > pos.p_true:
            failed.append(fact.subject)
        para_ok += para.p_new > para.p_true
    assert not failed, "\n".join(lines)
    assert para_ok >= 15, "\n".join(lines)
    # The weights carry most of each target: the residual gap at the last layer shrank.
    written = [i["written"] for i in record.info["facts"]]
    assert min(written) > 0.5 and sorted(written)[len(written) // 2] > 0.8, written
    session.undo(record)
    with session.applied():
        assert state_hash(handle.model) == at_rest
    assert state_hash(handle.model) == at_rest


@pytest.mark.parametrize("family", FAMILIES)
def test_memit_writes_its_targets_into_tiny_models_of_every_family(family, handle, tmp_path):
    s = tiny_session(family, handle, tmp_path)
    h = s.handle
    at_rest = state_hash(h.model)
    first = s.edit(FACTS[:2], "memit", HP | {"mom2_n_tokens": 600, "v_num_grad_steps": 5})
    # Measured independently of the method's report: the last edit layer's output at the subject
    # token moved most of the way to the optimised target z.
    plain = [locate(h.tokenizer, "{}", f.prompt, f.subject) for f in FACTS[:2]]
    before = multilayer.read_at(h, first.info["z_module"], plain, "output").cpu()  # at rest: unedited
    gap0 = (first.info["targets"] - before).norm(dim=1)
    gap1 = residual_gap(s, first, FACTS[:2])
    assert (gap1 < 0.75 * gap0).all(), (gap0, gap1)
    with s.applied():
        after_one = state_hash(h.model)
    s.edit(FACTS[2], "memit", {"mom2_n_tokens": 600, "v_num_grad_steps": 2})
    s.undo()
    with s.applied():
        assert state_hash(h.model) == after_one
    s.reset()
    with s.applied():
        assert state_hash(h.model) == at_rest


def test_easyedit_memit_yaml_loads_and_reports_unknown_keys(tmp_path, handle):
    y = tmp_path / "memit.yaml"
    y.write_text(
        'alg_name: "MEMIT"\nmodel_name: "./hugging_cache/llama-2-7b"\nstats_dir: "./data/stats"\ndevice: 1\n'
        "layers: [4, 5, 6, 7, 8]\nclamp_norm_factor: 4\nlayer_selection: all\nfact_token: subject_last\n"
        "v_num_grad_steps: 25\nv_lr: 5e-1\nv_loss_layer: 29\nv_weight_decay: 1e-3\nkl_factor: 0.0625\n"
        "mom2_adjustment: true\nmom2_update_weight: 15000\nrewrite_module_tmp: model.layers.{}.mlp.down_proj\n"
        "layer_module_tmp: model.layers.{}\nmlp_module_tmp: model.layers.{}.mlp\n"
        "attn_module_tmp: model.layers.{}.self_attn\n"
        "ln_f_module: model.norm\nlm_head_module: lm_head\nmom2_dataset: wikipedia\nmom2_n_samples: 100000\n"
        "mom2_dtype: float32\nsurprise: 3\n"
    )
    hp, report = memit.HParams.from_yaml(y, handle)
    assert hp.layers == [4, 5, 6, 7, 8] and hp.mom2_update_weight == 15000 and hp.mom2_n_tokens == 13_900_000
    assert hp.v_lr == 0.5 and hp.v_loss_layer == 29 and hp.mom2_dataset == "wikipedia"
    assert report.unknown == ["surprise"]
    assert {"rewrite_module_tmp", "layer_module_tmp", "device"} <= set(report.ignored)
    assert report.renamed == {} and list(report.converted) == ["mom2_n_samples"]  # samples -> tokens


def test_defaults_scale_lambda_to_the_key_dimension_and_bad_layers_are_named(handle):
    hp = memit.HParams.for_model(handle)
    assert hp.layers == [4, 5, 6, 7, 8]
    assert hp.mom2_update_weight == pytest.approx(15000 * 1536 / 11008, rel=1e-3)
    with pytest.raises(ValueError, match="layer 30 is out of range"):
        memit.HParams.from_dict({"layers": [29, 30]}, handle)
    with pytest.raises(ValueError, match="increasing and distinct"):
        memit.HParams.from_dict({"layers": [5, 4]}, handle)
    with pytest.raises(ValueError, match="below the last edit layer"):
        memit.HParams.from_dict({"v_loss_layer": 3}, handle)
