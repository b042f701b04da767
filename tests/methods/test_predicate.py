"""The predicate write (editlab/methods/predicate.py): ROME's and MEMIT's negation_objective "predicate"."""

import pytest
import torch

from editlab import Fact
from editlab.facts.fact import negate
from editlab.methods import predicate, rome
from tests.conftest import tiny_handle, tiny_session
from tests.methods.test_vstar import FACTS, TEMPLATES, _mean_target_logprob


def test_the_predicate_site_is_the_not_token(handle):
    tok = handle.tokenizer
    for fact in FACTS:
        for template in TEMPLATES:
            at = predicate.site(tok, template, fact)
            assert tok.decode([at.ids[at.index]]).strip() == "not", (fact.prompt, at.text)
            assert at.text == template.format(negate(fact.prompt, fact.subject)[0])
    assert predicate.site(tok, "{}", Fact("Paris", "Paris is not the capital of", "Italy", "France")) is None


def test_the_predicate_loss_is_the_true_targets_margin_after_not(handle):
    """The predicate write's step-0 loss (δ = 0) is w · mean_c softplus(m − [log P(o_c|c ⊕ p⁻) − log P(o*|c ⊕ p⁻)]),
    recomputed from plain forward passes: dropping either target's term fails this."""
    h = tiny_handle("llama", handle.tokenizer)
    fact = FACTS[0]
    w, m = 2.0, 0.5
    hp = rome.HParams(layer=1, v_num_grad_steps=1, negation_weight=w, negation_objective="predicate", negation_margin=m)
    _, info = predicate.compute_z(h, fact, TEMPLATES, hp, h.arch.mlp_out_proj(1))
    neg, _ = negate(fact.prompt, fact.subject)
    gaps = [
        _mean_target_logprob(h, t.format(neg), fact.target_true)
        - _mean_target_logprob(h, t.format(neg), fact.target_new)
        for t in TEMPLATES
    ]
    expected = w * float(torch.nn.functional.softplus(m - torch.tensor(gaps)).mean())
    assert info["z_losses"][0] == pytest.approx(expected, abs=2e-3)
    assert info["min_gap"] == pytest.approx(min(gaps), abs=2e-3)


@pytest.mark.parametrize("module", ["alphaedit", "pmet"])
def test_the_predicate_write_is_romes_and_memits_only(module):
    from editlab import methods

    hp = methods.get(module).HParams(negation_weight=1.0, negation_objective="predicate")
    with pytest.raises(ValueError, match="ROME's and MEMIT's only"):
        hp.validate()


def test_keep_apart_without_held_keys_is_romes_direction():
    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64)
    c = (a @ a.T + 6 * torch.eye(6, dtype=torch.float64)).float()
    k, held = torch.randn(6), torch.randn(2, 6)
    u = predicate.keep_apart(k, held, c)
    assert (held @ u).abs().max() < 1e-5 and abs(float(u @ k)) > 1e-3
    assert torch.allclose(predicate.keep_apart(k, torch.zeros(0, 6), c), rome.compute_u(k, c), atol=1e-6)


def test_memit_keeps_its_batch_write_and_adds_one_predicate_write_per_fact_in_its_last_layer(handle, tmp_path):
    session = tiny_session("llama", handle, tmp_path)
    h = session.handle
    facts = [FACTS[0], FACTS[2]]
    hp = {"layers": [0, 1], "mom2_n_tokens": 600, "v_num_grad_steps": 6}
    published = session.edit(facts, "memit", hp)
    session.undo()
    both = session.edit(facts, "memit", {**hp, "negation_weight": 1.0, "negation_objective": "predicate"})
    assert torch.equal(both.info["targets"], published.info["targets"])  # the batch's targets are the published ones
    first = h.arch.mlp_out_proj(0) + ".weight"
    assert torch.equal(both.weights_after[first], published.weights_after[first])  # layer 0: the batch write alone
    last = h.arch.mlp_out_proj(1) + ".weight"
    extra = (both.weights_after[last] - published.weights_after[last]).double()
    s = torch.linalg.svdvals(extra)
    assert s[1] / s[0] > 1e-6 and s[2] / s[0] < 1e-4, s[:4]  # two facts: two rank-one writes
    assert [f["predicate"]["not_token"].strip() for f in both.info["facts"]] == ["not", "not"]
