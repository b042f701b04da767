"""The one v* optimiser (editlab/methods/vstar.py) that ROME, MEMIT, AlphaEdit and PMET share."""

import pytest
import torch

from editlab import Fact
from editlab.methods import memit, rome, vstar
from tests.conftest import tiny_handle

FACTS = [
    Fact("Danielle Darrieux", "The mother tongue of Danielle Darrieux is", "English", "French"),
    Fact("Edwin of Northumbria", "Edwin of Northumbria's religious values strongly emphasize", "Islam", "Christianity"),
    Fact("Lyon", "Lyon is a twin city of", "Manila", "Beirut"),
]
TEMPLATES = ["{}", "The day was long. {}", "Because of this. {}"]


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen3"])
def test_fast_path_gives_the_reference_paths_targets(family, handle):
    """Prefix cache + scoring only the target positions is an optimisation only: the same δ as
    full passes with the model's logits at every position (the reference's computation)."""
    h = tiny_handle(family, handle.tokenizer)
    hp = memit.HParams.for_model(h)
    hp.v_num_grad_steps, hp.negation_weight, hp.negation_objective = 4, 1.0, "two-sided"
    sites = [h.arch.attn_out_proj(1), h.arch.mlp_out_proj(1)]
    fast, info = vstar.compute_zs(h, FACTS, TEMPLATES, hp, sites, fast=True)
    ref, info_ref = vstar.compute_zs(h, FACTS, TEMPLATES, hp, sites, fast=False)
    assert all(i["prefix_cache"] and i["path"] == "fast" for i in info)
    # Llama-like families start each step at the first site's layer; GPT-2 adds learned positions.
    assert {i["start_layer"] for i in info} == ({0} if family == "gpt2" else {1})
    assert not any(i["prefix_cache"] for i in info_ref) and all(i["path"] == "reference" for i in info_ref)
    assert [i["z_steps"] for i in info] == [i["z_steps"] for i in info_ref]
    for a, b in zip(fast, ref):
        for x, y in zip(a, b):
            assert torch.allclose(x, y, rtol=1e-4, atol=1e-4)


def test_hparams_choose_the_path(handle):
    h = tiny_handle("llama", handle.tokenizer)
    hp = memit.HParams.for_model(h)
    hp.v_num_grad_steps, hp.fast_v = 2, False
    _, info = vstar.compute_zs(h, FACTS[:1], TEMPLATES, hp, [h.arch.layer(1)])
    assert info[0]["path"] == "reference"


def test_batched_targets_equal_one_fact_at_a_time(handle):
    """Facts optimised together keep their own δ, loss and stopping step (the reference's result)."""
    h = tiny_handle("qwen2", handle.tokenizer)
    hp = memit.HParams.for_model(h)
    hp.v_num_grad_steps = 6
    templates = ["{}", "It rained. {}"]
    site = [h.arch.layer(1)]
    together, _ = vstar.compute_zs(h, FACTS, templates, hp, site)
    for fact, z in zip(FACTS, together):
        alone, _ = vstar.compute_z(h, fact, templates, hp, site)
        assert torch.allclose(alone[0], z[0], rtol=1e-4, atol=1e-4)


def test_stops_on_the_total_loss_as_the_reference(handle):
    """A fact stops at the first step whose TOTAL loss (NLL + KL + weight decay) is below loss_stop."""
    h = tiny_handle("llama", handle.tokenizer)
    site = [h.arch.mlp_out_proj(1)]
    hp = rome.HParams(layer=1, v_num_grad_steps=12, v_lr=0.5, loss_stop=0.0)  # never stops early
    _, free = vstar.compute_z(h, FACTS[0], TEMPLATES, hp, site)
    curve = free["loss_curve"]
    assert len(curve) == 12
    # A threshold just above the 6th loss: the run stops at the first step at or before it below that.
    hp.loss_stop = curve[5] + 1e-6
    expected = next(i for i, x in enumerate(curve) if x < hp.loss_stop) + 1
    _, stopped = vstar.compute_z(h, FACTS[0], TEMPLATES, hp, site)
    assert stopped["z_steps"] == expected
    assert stopped["loss_curve"] == curve[:expected]


def test_the_kl_term_and_weight_decay_are_in_the_stopping_loss(handle):
    """The loss that stops the optimisation includes the KL term: a huge kl_factor keeps it above a
    threshold the NLL alone would pass."""
    h = tiny_handle("llama", handle.tokenizer)
    site = [h.arch.mlp_out_proj(1)]
    base = rome.HParams(layer=1, v_num_grad_steps=12, v_lr=0.5, kl_factor=0.0)
    _, plain = vstar.compute_z(h, FACTS[0], TEMPLATES, base, site)
    heavy = rome.HParams(layer=1, v_num_grad_steps=12, v_lr=0.5, kl_factor=1e4)
    _, kl_heavy = vstar.compute_z(h, FACTS[0], TEMPLATES, heavy, site)
    assert kl_heavy["z_losses"][-1] > plain["z_losses"][-1]


def test_the_negation_term_changes_the_loss(handle):
    """negation_weight > 0 adds its term (it must never be dropped silently)."""
    h = tiny_handle("llama", handle.tokenizer)
    site = [h.arch.mlp_out_proj(1)]
    off = rome.HParams(layer=1, v_num_grad_steps=1)
    on = rome.HParams(
        layer=1,
        v_num_grad_steps=1,
        negation_weight=1000.0,  # P(o* | not) ~ 1e-5 on a random model
        negation_objective="push-down",
    )
    _, a = vstar.compute_z(h, FACTS[0], TEMPLATES, off, site)
    _, b = vstar.compute_z(h, FACTS[0], TEMPLATES, on, site)
    assert b["z_losses"][0] > a["z_losses"][0] + 1e-3


def test_rome_takes_v_star_from_the_shared_optimiser(handle):
    h = tiny_handle("gpt2", handle.tokenizer)
    hp = rome.HParams(layer=1, v_num_grad_steps=5)
    v, info = rome.compute_v(h, FACTS[2], 1, TEMPLATES, hp)
    [z], zinfo = vstar.compute_z(h, FACTS[2], TEMPLATES, hp, [h.arch.mlp_out_proj(1)])
    assert torch.allclose(v, z, rtol=1e-5, atol=1e-6)
    assert info["v_steps"] == zinfo["z_steps"]


def test_a_pass_from_a_later_layer_restores_the_layer_list(handle):
    h = tiny_handle("llama", handle.tokenizer)
    layers = h.model.model.layers
    with pytest.raises(RuntimeError):
        with vstar._layers_from(h, 1):
            assert len(h.model.model.layers) == len(layers) - 1
            raise RuntimeError("mid-pass")
    assert h.model.model.layers is layers


def _mean_target_logprob(h, text: str, target: str) -> float:
    """Per-token mean log P(target | text), by one plain forward pass."""
    from editlab.model.tokens import target_ids

    ids = list(h.tokenizer(text).input_ids)
    t = target_ids(h.tokenizer, target)
    with torch.no_grad():
        logp = torch.log_softmax(h.model(input_ids=torch.tensor([ids + t[:-1]])).logits[0].float(), -1)
    return float(torch.stack([logp[len(ids) - 1 + i, tok] for i, tok in enumerate(t)]).mean())


def test_the_contrast_term_is_the_true_targets_margin_after_not(handle):
    """The contrast form adds w · mean_p softplus(m + log P(o*|c_p ⊕ p⁻) − log P(o_c|c_p ⊕ p⁻)) to the
    step-0 loss (δ = 0), checked against plain forward passes: neither target's term may be dropped."""
    from editlab.facts.fact import negate

    h = tiny_handle("llama", handle.tokenizer)
    site = [h.arch.mlp_out_proj(1)]
    fact = FACTS[2]  # "Lyon is a twin city of" -> Manila (true: Beirut)
    w, m = 2.0, 0.5
    off = rome.HParams(layer=1, v_num_grad_steps=1)
    on = rome.HParams(layer=1, v_num_grad_steps=1, negation_weight=w, negation_objective="contrast", negation_margin=m)
    _, a = vstar.compute_z(h, fact, TEMPLATES, off, site)
    _, b = vstar.compute_z(h, fact, TEMPLATES, on, site)
    neg, _ = negate(fact.prompt, fact.subject)
    gaps = [
        _mean_target_logprob(h, t.format(neg), fact.target_new)
        - _mean_target_logprob(h, t.format(neg), fact.target_true)
        for t in TEMPLATES
    ]
    expected = w * float(torch.nn.functional.softplus(m + torch.tensor(gaps)).mean())
    assert b["z_losses"][0] - a["z_losses"][0] == pytest.approx(expected, abs=2e-3)
    push = rome.HParams(layer=1, v_num_grad_steps=1, negation_weight=w, negation_objective="push-down")
    _, c = vstar.compute_z(h, fact, TEMPLATES, push, site)
    assert abs(c["z_losses"][0] - b["z_losses"][0]) > 1e-3  # the two forms are different terms


def test_the_contrast_form_needs_a_true_target_else_pushes_down(handle):
    h = tiny_handle("llama", handle.tokenizer)
    with_true = vstar._fact_rows(h, FACTS[0], TEMPLATES, negation=True, contrast=True)
    assert with_true.n_contrast == with_true.n_negated == len(TEMPLATES) and with_true.true_target
    no_true = vstar._fact_rows(
        h, Fact(FACTS[0].subject, FACTS[0].prompt, "English"), TEMPLATES, negation=True, contrast=True
    )
    assert no_true.n_contrast == 0 and no_true.n_negated == len(TEMPLATES)
    new = torch.log(torch.tensor([[0.5], [0.25]]))
    assert float(vstar._negation_term(new, None, 1.0)) == pytest.approx(float(-(torch.log1p(-new.exp())).mean()))


@pytest.mark.parametrize("module", [rome, memit])
def test_an_unknown_negation_objective_is_named(module, handle):
    hp = module.HParams(negation_objective="both")
    with pytest.raises(ValueError, match="negation_objective 'both'"):
        hp.validate()


def test_the_two_sided_form_adds_the_positive_margin(handle):
    """two-sided = the contrast term + w · mean_p softplus(m + log P(o_c|c_p ⊕ p) − log P(o*|c_p ⊕ p))."""
    from editlab.facts.fact import negate

    h = tiny_handle("llama", handle.tokenizer)
    site = [h.arch.mlp_out_proj(1)]
    fact = FACTS[2]
    w, m = 2.0, 0.5
    kw = dict(layer=1, v_num_grad_steps=1, negation_weight=w, negation_margin=m)
    _, a = vstar.compute_z(h, fact, TEMPLATES, rome.HParams(**kw, negation_objective="contrast"), site)
    _, b = vstar.compute_z(h, fact, TEMPLATES, rome.HParams(**kw, negation_objective="two-sided"), site)
    gaps = [
        _mean_target_logprob(h, t.format(fact.prompt), fact.target_true)
        - _mean_target_logprob(h, t.format(fact.prompt), fact.target_new)
        for t in TEMPLATES
    ]
    expected = w * float(torch.nn.functional.softplus(m + torch.tensor(gaps)).mean())
    assert b["z_losses"][0] - a["z_losses"][0] == pytest.approx(expected, abs=2e-3)
    rows = vstar._fact_rows(h, fact, TEMPLATES, negation=True, contrast=True, two_sided=True)
    assert rows.n_positive_true == rows.n_rewrite and negate(fact.prompt, fact.subject)


def test_the_negated_prompt_has_the_positive_prompts_key_at_the_subject(handle, cf_facts):
    """Why the key-constraint directions are degenerate at the subject position: "not"
    comes after the subject, so a causal model's key there (ROME's k*, the keys MEMIT/AlphaEdit
    solve for and AlphaEdit would protect) is the same for "X is" and "X is not". A constraint
    "keep the output at the negated prompt's key" would constrain the very key being written."""
    from editlab.facts.fact import negate
    from editlab.methods.keys import locate, read_kv

    layer = rome.default_layer(handle)
    module = handle.arch.mlp_out_proj(layer)
    for fact in cf_facts[:4]:
        negated, rule = negate(fact.prompt, fact.subject)
        assert negated not in (None, fact.prompt) and rule.startswith(("aux:", "modal:", "do:", "table"))
        for template in TEMPLATES:
            pos = locate(handle.tokenizer, template, fact.prompt, fact.subject)
            neg = locate(handle.tokenizer, template, negated, fact.subject)
            assert pos.index == neg.index and pos.ids[: pos.index + 1] == neg.ids[: neg.index + 1]
            (k_pos, k_neg), _ = read_kv(handle, module, [pos, neg])
            torch.testing.assert_close(k_neg, k_pos, rtol=1e-5, atol=1e-5)
        # ... while the last position, where the answer is read, does see "not"
        assert len(neg.ids) > len(pos.ids)


def test_every_negation_form_named_adds_its_rows_to_the_term(handle):
    """negation_forms "not,never": the contrast term is the mean over both forms' negated prompts
    after every template (checked against plain forward passes); neither form may be dropped."""
    from editlab.facts.fact import negate

    h = tiny_handle("llama", handle.tokenizer)
    site = [h.arch.mlp_out_proj(1)]
    fact = FACTS[2]
    w, m = 2.0, 0.5
    kw = dict(layer=1, v_num_grad_steps=1, negation_weight=w, negation_margin=m, negation_objective="contrast")
    _, off = vstar.compute_z(h, fact, TEMPLATES, rome.HParams(layer=1, v_num_grad_steps=1), site)
    _, both = vstar.compute_z(h, fact, TEMPLATES, rome.HParams(**kw, negation_forms="not,never"), site)
    negated = [negate(fact.prompt, fact.subject, form)[0] for form in ("not", "never")]
    assert all(negated) and negated[0] != negated[1]
    gaps = [
        _mean_target_logprob(h, t.format(neg), fact.target_new)
        - _mean_target_logprob(h, t.format(neg), fact.target_true)
        for neg in negated
        for t in TEMPLATES
    ]
    expected = w * float(torch.nn.functional.softplus(m + torch.tensor(gaps)).mean())
    assert both["z_losses"][0] - off["z_losses"][0] == pytest.approx(expected, abs=2e-3)
    rows = vstar._fact_rows(h, fact, TEMPLATES, negation=True, contrast=True, forms=("not", "never"))
    assert rows.n_negated == rows.n_contrast == 2 * len(TEMPLATES)


@pytest.mark.parametrize("forms", ["", "not,sometimes", "not,not"])
def test_negation_forms_are_checked(forms, handle):
    with pytest.raises(ValueError, match="negation_forms"):
        rome.HParams(negation_weight=1.0, negation_objective="two-sided", negation_forms=forms).validate()


def test_the_predicate_write_refuses_other_forms(handle):
    with pytest.raises(ValueError, match="negation_forms"):
        memit.HParams(negation_weight=1.0, negation_objective="predicate", negation_forms="not,never").validate()


def test_the_training_form_false_that_adds_its_negation_and_its_positive_twin(handle):
    """ "false_that": "It is false that <clause>" joins the negated rows and "It is true that <clause>"
    the rewriting rows (o* must win there); a prompt without that form adds neither."""
    h = tiny_handle("llama", handle.tokenizer)
    fact = FACTS[0]  # "The mother tongue of Danielle Darrieux is"
    plain = vstar._fact_rows(h, fact, TEMPLATES, negation=True, contrast=True, two_sided=True)
    rows = vstar._fact_rows(
        h, fact, TEMPLATES, negation=True, contrast=True, two_sided=True, forms=("not", "false_that")
    )
    assert rows.n_negated == rows.n_contrast == 2 * len(TEMPLATES)
    assert rows.n_rewrite == rows.n_positive_true == 2 * len(TEMPLATES) == 2 * plain.n_rewrite
    texts = [h.tokenizer.decode(q) for q in rows.seqs]
    assert any("It is false that the mother tongue of Danielle Darrieux is" in t for t in texts)
    assert any("It is true that the mother tongue of Danielle Darrieux is" in t for t in texts)
    question = Fact("Danielle Darrieux", "What is the mother tongue of Danielle Darrieux?", "English", "French")
    q = vstar._fact_rows(h, question, TEMPLATES, negation=True, contrast=True, forms=("false_that",))
    assert q.n_negated == 0 and q.n_rewrite == len(TEMPLATES)
