"""KN: integrated-gradients attribution of MLP neurons, then the knowledge-neuron edit."""

import pytest
import torch

from editlab import EditSession, Fact
from editlab.measure.probes import Probe
from editlab.methods import kn
from tests.conftest import state_hash, tiny_handle

FAMILIES = ["gpt2", "gptj", "gpt_neox", "llama", "mistral", "qwen2", "qwen3"]
# Five IG steps instead of the paper's 20 keep the test affordable on CPU; on these facts they
# select the same neurons (measured: docs/methods-ft-grace-kn-ike.md).
FAST = {"steps": 5, "batch_size": 5}


def positive(session, fact):
    [m] = session.measure_current(fact, [Probe("positive", fact.prompt, max_new_tokens=1)])
    return m


@pytest.mark.slow
def test_kn_on_five_facts_reports_exactly_what_it_achieved_and_undoes_exactly(handle, cf_facts):
    session = EditSession(handle)
    at_rest = state_hash(handle.model)
    lines = []
    wins = 0
    for fact in cf_facts[:5]:
        record = session.edit(fact, "kn", FAST)
        detail = record.info["facts"][0]
        m = positive(session, fact)
        check = record.info["prompt_check"][0]
        lines.append(
            f"{fact.subject}: {detail.get('n_neurons', 0)} neurons, P(new) {m.p_new:.4f} vs P(true) {m.p_true:.4f}; "
            f"bleed {record.info['bleed']['hijacked']}"
        )
        # Honest reporting: the record's verdict is what the probe measures, and a miss is a note.
        assert check["success"] == (m.p_new > m.p_true), "\n".join(lines)
        assert check["p_new"] == pytest.approx(m.p_new, rel=1e-4)
        if not check["success"]:
            assert "did not take" in record.info["note"]
        if record.info["bleed"]["hijacked"]:
            assert "leaks into unrelated text" in record.info["note"]
        # Only value vectors (columns of W_out) of the selected neurons changed.
        for name, before in record.weights_before.items():
            changed = (record.weights_after[name] != before).any(0).nonzero().flatten().tolist()
            layer = int(name.split(".")[2])
            assert changed == sorted(i for l, i in detail["neurons"] if l == layer)
        wins += m.p_new > m.p_true
        session.undo(record)
        assert state_hash(handle.model) == at_rest
    print("\n".join(lines))
    assert wins == 5, "\n".join(lines)
    with session.applied():
        assert state_hash(handle.model) == at_rest


def test_selection_keeps_neurons_above_the_adaptive_threshold_and_refines_by_sharing():
    scores = {3: torch.tensor([0.1, 1.0, 0.25]), 4: torch.tensor([-2.0, 0.19, 0.5])}
    assert kn.coarse_neurons(scores, 0.2) == [(3, 1), (3, 2), (4, 2)]
    per_prompt = [[(3, 1), (4, 2)], [(3, 1)], [(3, 1), (4, 2), (5, 0)]]
    assert kn.refined_neurons(per_prompt, p=0.5, refine=True) == [(3, 1), (4, 2)]
    assert kn.refined_neurons(per_prompt, p=0.5, refine=False) == [(3, 1), (4, 2), (5, 0)]
    assert kn.coarse_neurons({0: torch.tensor([-1.0, 0.0])}, 0.2) == []


def test_integrated_gradients_sum_to_the_probability_change(handle):
    """IG's completeness: Σ_i Attr(a_i) ≈ P(o | a) − P(o | a = 0) for one layer (with enough steps)."""
    tiny = tiny_handle("llama", handle.tokenizer)
    ids = list(handle.tokenizer("The mother tongue of Danielle Darrieux is").input_ids)
    layer, token = 2, 4
    acts = kn.activations(tiny, ids, [layer])[layer]
    hp = kn.HParams(steps=64, batch_size=64)
    attr = kn.integrated_gradients(tiny, ids, token, layer, acts, hp)

    def prob(scale):
        module = tiny.module(tiny.arch.mlp_out_proj(layer))
        from editlab.model.nethook import Trace

        def edit(out, _):
            out = out.clone()
            out[:, -1] = module.forward(scale * acts)
            return out

        with torch.no_grad(), Trace(tiny.model, tiny.arch.mlp_out_proj(layer), retain_output=False, edit_output=edit):
            return torch.softmax(tiny.model(input_ids=torch.tensor([ids])).logits[0, -1], -1)[token].item()

    assert attr.sum().item() == pytest.approx(prob(1.0) - prob(0.0), rel=0.05, abs=1e-7)


@pytest.mark.parametrize("family", FAMILIES)
def test_kn_edits_tiny_models_of_every_family(handle, family):
    tiny = tiny_handle(family, handle.tokenizer)
    session = EditSession(tiny)
    at_rest = state_hash(tiny.model)
    fact = Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French")
    record = session.edit(fact, "kn", {"steps": 2, "batch_size": 2})
    assert record.info["facts"][0]["n_neurons"] > 0
    assert any(not torch.equal(record.weights_before[n], record.weights_after[n]) for n in record.weights_before)
    session.undo(record)
    with session.applied():
        assert state_hash(tiny.model) == at_rest


EASYEDIT_KN_YAML = """\
alg_name: "KN"
model_name: "./hugging_cache/llama-2-7b"
device: 0

lr_scale: 1.0
n_toks: 10
refine: false
batch_size: 1
steps: 1
adaptive_threshold: 0.2
p: 0.4
max_length: 40
model_parallel: false
threshold_mode: percentile
"""


def test_easyedit_kn_yaml_loads_with_unknown_keys_reported(handle, tmp_path):
    path = tmp_path / "kn.yaml"
    path.write_text(EASYEDIT_KN_YAML)
    hp, report = kn.HParams.from_yaml(path, handle)
    assert (hp.steps, hp.batch_size, hp.adaptive_threshold, hp.p, hp.refine, hp.lr_scale) == (
        1,
        1,
        0.2,
        0.4,
        False,
        1.0,
    )
    assert hp.layers == list(range(15, 30))  # editlab's default for the model (the upper half)
    assert report.unknown == ["threshold_mode"]
    assert {"alg_name", "model_name", "device", "max_length", "model_parallel"} <= set(report.ignored)
