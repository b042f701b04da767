"""MEMIT: Mass-Editing Memory in a Transformer (Meng et al., 2023, §4, Alg. 1).

Many facts at once, spread over a range of MLP output projections W_l (l ∈ R):
  1. z_i  = h_i^L + δ_i: the residual at the last edit layer L, at subject i's last token, that
            makes the model say o_i*; δ_i = argmin NLL(o_i*) + λ_KL·KL + weight decay (eq. 16),
            clamped to clamp_norm_factor · ‖h_i^L‖.                  ``vstar.compute_zs``
  2. for each l ∈ R (low to high), on the model as edited so far:
       K_l = keys of every fact (MLP key at the subject token, averaged over contexts) ``compute_ks``
       R_l = (z − h^L(current)) / (|R| − position of l)   (the residual spread over the layers left)
       ΔW_l = R_l K_lᵀ (λ C_l + K_l K_lᵀ)⁻¹                                          (eq. 14)
     with C_l = E[k kᵀ] over a corpus and λ = ``mom2_update_weight``; solved in float64.

Step 1 is the v* optimiser ROME, AlphaEdit and PMET share (:mod:`editlab.methods.vstar`): the
reference's loss, KL direction and stop rule, with editlab's negation-aware term off by default
(weight > 0: the two-sided v* term by default). ``negation_objective = "predicate"`` (weight > 0)
instead leaves steps 1–2 published and adds, per fact, a rank-one write at the "not" token of its
negated prompt into the last layer (:mod:`.predicate`).
Step 2's keys and layer-by-layer writing are shared with AlphaEdit and PMET
(:mod:`editlab.methods.multilayer`); MEMIT's own part is λ and the solve, :func:`memit_solver`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from editlab.facts.fact import Fact
from editlab.methods import predicate
from editlab.methods.base import Capabilities, MethodContext, stats_and_templates
from editlab.methods.keys import locate
from editlab.methods.multilayer import (
    BatchHParams,
    Solver,
    covariances,
    default_layers,
    read_at,
    shortfall_note,
    spread,
    written_fraction,
)
from editlab.methods.multilayer import touched as touched  # the contract's weights written: every W_l of the range
from editlab.methods.vstar import targets

NAME = "memit"
CAPABILITIES = Capabilities(batch=True, negation_objective=True)


# The published λ and the key dimension of the model it was tuned on, per family: gpt2-xl (6400),
# GPT-J-6B (16384), Llama-2-7B (11008, EasyEdit's llama/qwen/mistral files).
REFERENCE_LAMBDA = {"gpt2": (20000.0, 6400), "gptj": (15000.0, 16384), "gpt_neox": (15000.0, 16384)}
LLAMA_LAMBDA = (15000.0, 11008)


def scaled_lambda(handle, layer: int) -> float:
    """λ for this model: the published λ scaled by d_in / d_in(reference model).

    A key k drawn from C has kᵀ(λC)⁻¹k ≈ d_in / λ, so the share of the residual one layer writes
    depends on d_in / λ. Keeping that ratio keeps the published trade-off: on SmolLM2-135M
    (d_in 1,536) the unscaled 15,000 writes only ~45% of the targets (18/20 CounterFact facts
    succeed), the scaled ~2,100 writes ~90% (20/20), with neighbourhood scores unchanged.
    """
    lam, d_ref = REFERENCE_LAMBDA.get(handle.arch.family, LLAMA_LAMBDA)
    d_in = handle.mlp_out_weight(layer).shape[1]
    return round(lam * d_in / d_ref, 1)


@dataclass
class HParams(BatchHParams):
    mom2_update_weight: float = 15000.0  # λ in ΔW = R Kᵀ (λC + KKᵀ)⁻¹ (for_model scales it, see scaled_lambda)
    negation_objective: str = "two-sided"  # a v* term (vstar.NEGATION_OBJECTIVES) or MEMIT's "predicate" write
    predicate_keep: int = 0  # negation_objective "predicate": hold this many other subjects' "not" keys fixed

    EXTRA_NEGATION_OBJECTIVES = (predicate.NAME,)

    def validate(self, handle=None) -> None:
        super().validate(handle)
        predicate.check_hparams(self)

    @classmethod
    def for_model(cls, handle) -> HParams:
        fam = handle.arch.family
        hp = cls(layers=default_layers(handle))
        hp.mom2_update_weight = scaled_lambda(handle, hp.layers[0])
        if fam == "gpt2":  # kmeng01/memit gpt2-xl.json
            hp.clamp_norm_factor, hp.v_weight_decay, hp.v_num_grad_steps = 0.75, 0.5, 20
        elif fam in ("gptj", "gpt_neox"):  # kmeng01/memit EleutherAI_gpt-j-6B.json
            hp.clamp_norm_factor, hp.v_weight_decay = 0.75, 0.5
        return hp  # llama / mistral / qwen: EasyEdit's llama-7b.yaml values (the class defaults)


# ---- step 1: the target vectors: editlab.methods.vstar (shared with ROME, AlphaEdit, PMET) ----

# ---- step 2: keys and the update ----------------------------------------------------------------


def memit_solver(handle, cov: dict[int, torch.Tensor] | None, lam: float) -> Solver:
    def solve(i, layer, k, resid):
        # ΔW = R Kᵀ (λC + KKᵀ)⁻¹, with K as columns; A is symmetric so ΔWᵀ = A⁻¹ K Rᵀ.
        d_in = k.shape[1]
        c = (
            cov[layer].to(k.device, torch.float64)
            if cov is not None
            else torch.eye(d_in, dtype=torch.float64, device=k.device)
        )
        a = lam * c + k.T @ k
        return (torch.linalg.solve(a, k.T) @ resid).T.float()

    return solve


def apply(handle, facts: list[Fact], hp: HParams, ctx: MethodContext) -> dict:
    cov, templates, timings = stats_and_templates(handle, hp, ctx, lambda: covariances(handle, hp, ctx))
    z_module = handle.arch.layer(hp.layers[-1])  # the residual stream after the last edit layer
    predicate_on = predicate.wanted(hp)
    t0 = time.perf_counter()
    z_lists, infos = targets(
        handle,
        facts,
        dataclasses.replace(hp, negation_weight=0.0) if predicate_on else hp,
        ctx,
        templates,
        [z_module],
        "MEMIT",
    )
    zs = torch.stack([z[0] for z in z_lists])
    timings["targets_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = [locate(handle.tokenizer, "{}", f.prompt, f.subject) for f in facts]
    before = read_at(handle, z_module, plain, "output")
    layers = spread(
        handle,
        facts,
        hp,
        ctx,
        templates,
        z_module,
        zs,
        memit_solver(handle, cov, hp.mom2_update_weight),
        lambda i: len(hp.layers) - i,
        "MEMIT",
    )
    for info, w in zip(infos, written_fraction(handle, facts, z_module, zs, before)):
        info["written"] = w
    timings["update_s"] = time.perf_counter() - t0
    if predicate_on:  # the published batch write stands; then one predicate write per fact into the last layer
        t0, last = time.perf_counter(), hp.layers[-1]
        for i, (fact, info) in enumerate(zip(facts, infos)):
            ctx.report(
                i, len(facts), f"MEMIT: the predicate write for {fact.subject!r} (the key at 'not', layer {last})"
            )
            info["predicate"] = predicate.write(
                handle, fact, templates, hp, cov[last] if cov is not None else None, last, "MEMIT"
            )
        timings["predicate_s"] = time.perf_counter() - t0
    ctx.report(len(facts), len(facts), "MEMIT: done")
    note = " ".join(n for n in (shortfall_note("MEMIT", infos), predicate.skipped_note("MEMIT", infos)) if n)
    if note:
        ctx.info["note"] = note
    return {
        "timings": timings,
        "facts": infos,
        "layers": hp.layers,
        "layer_updates": layers,
        "templates": len(templates),
        "targets": zs.cpu(),
        "z_module": z_module,
    }
