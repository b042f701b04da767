"""PMET: joint attention + MLP targets, MLP-only update, residual spread by √(L − i)."""

import math

import pytest

from editlab import EditSession, Fact
from editlab.methods import multilayer, pmet
from editlab.methods.keys import locate
from tests.conftest import TEST_MOM2_TOKENS, prompt_failures, state_hash, tiny_session

HP = {"mom2_n_tokens": TEST_MOM2_TOKENS}
FAMILIES = ["gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3"]
FACTS = [
    Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French"),
    Fact("Edwin of Northumbria", "Edwin of Northumbria's religious values strongly emphasize", "Islam", "Christianity"),
]


@pytest.mark.slow
def test_pmet_writes_five_counterfact_facts_touching_only_mlp_weights(handle, corpus_path, cf_facts):
    session = EditSession(handle, corpus=corpus_path)
    at_rest = state_hash(handle.model)
    facts = cf_facts[:5]
    record = session.edit(facts, "pmet", HP)
    failed, lines = prompt_failures(session, facts)
    assert not failed, "\n".join(lines)
    assert sorted(record.weights_before) == sorted(
        handle.arch.mlp_out_proj(l) + ".weight" for l in record.info["layers"]
    )
    # Both deltas were optimised; only the MLP one was written.
    assert all(i["delta_norms"][0] > 0 and i["delta_norms"][1] > 0 for i in record.info["facts"])
    session.undo()
    with session.applied():
        assert state_hash(handle.model) == at_rest


def test_residual_is_spread_by_the_square_root_of_the_layers_left(handle, tmp_path, monkeypatch):
    s = tiny_session("llama", handle, tmp_path)
    seen = []
    real = multilayer.spread

    def spy(handle, facts, hp, ctx, templates, z_module, zs, solve, divisor, name):
        seen.append([divisor(i) for i in range(len(hp.layers))])
        assert z_module == handle.arch.mlp_out_proj(hp.layers[-1])  # the MLP target, not the residual
        return real(handle, facts, hp, ctx, templates, z_module, zs, solve, divisor, name)

    monkeypatch.setattr(pmet, "spread", spy)
    s.edit(FACTS[0], "pmet", {"layers": [0, 1, 2], "mom2_n_tokens": 600, "v_num_grad_steps": 2})
    assert seen == [[math.sqrt(3), math.sqrt(2), 1.0]]


@pytest.mark.parametrize("family", FAMILIES)
def test_pmet_edits_tiny_models_of_every_family(family, handle, tmp_path):
    s = tiny_session(family, handle, tmp_path)
    h = s.handle
    at_rest = state_hash(h.model)
    record = s.edit(FACTS, "pmet", {"mom2_n_tokens": 600, "v_num_grad_steps": 4})
    # The MLP output of the last edit layer moved toward its target (measured, not reported).
    plain = [locate(h.tokenizer, "{}", f.prompt, f.subject) for f in FACTS]
    before = multilayer.read_at(h, record.info["z_module"], plain, "output").cpu()
    with s.applied():
        after = multilayer.read_at(h, record.info["z_module"], plain, "output").cpu()
    z = record.info["targets"]
    assert ((z - after).norm(dim=1) < 0.8 * (z - before).norm(dim=1)).all()
    s.undo()
    with s.applied():
        assert state_hash(h.model) == at_rest


def test_easyedit_pmet_yaml_loads_and_attention_rewrites_are_refused(tmp_path, handle):
    y = tmp_path / "pmet.yaml"
    text = (
        'alg_name: "PMET"\nlayers: [4, 5, 6, 7, 8]\nclamp_norm_factor: 1\nv_num_grad_steps: 20\nv_lr: 5e-1\n'
        "v_weight_decay: 0.5\nkl_factor: 0.0625\nmom2_update_weight: 15000\n"
        'rewrite_module_tmp: "model.layers.{}.mlp.down_proj"\nrewrite_module_tmps: ["model.layers.{}.mlp.down_proj"]\n'
        'mlp_module_tmp: "model.layers.{}.mlp.down_proj"\nattn_module_tmp: "model.layers.{}.self_attn.o_proj"\n'
        "nll_loss_factor: 1\nmom2_n_samples: 100000\n"
    )
    y.write_text(text)
    hp, report = pmet.HParams.from_yaml(y, handle)
    assert (
        hp.rewrite_modules == ["mlp"] and hp.v_lr == 0.5 and hp.clamp_norm_factor == 1.0 and hp.nll_loss_factor == 1.0
    )
    assert report.unknown == [] and report.converted["rewrite_module_tmps"].endswith("-> rewrite_modules ['mlp']")
    y.write_text(
        text.replace(
            'rewrite_module_tmps: ["model.layers.{}.mlp.down_proj"]',
            'rewrite_module_tmps: ["model.layers.{}.self_attn.o_proj", "model.layers.{}.mlp.down_proj"]',
        )
    )
    with pytest.raises(ValueError, match="updates only the MLP weights"):
        pmet.HParams.from_yaml(y, handle)
