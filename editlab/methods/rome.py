"""ROME: Rank-One Model Editing (Meng et al., 2022, "Locating and Editing Factual Associations
in GPT", §3).

The MLP output projection W of one layer is treated as a linear associative memory W k ≈ v.
To write (s, r, o*):
  1. k*  = mean over context templates of the key at the subject's last token      (eq. 3)
  2. v*  = argmin_v  NLL(o* | prompt; v) + λ_KL · KL(essence) + weight decay       (eq. 4)
           (v = v₀ + δ, δ clamped to clamp_norm_factor · ‖v₀‖; :mod:`.vstar`, shared with MEMIT)
  3. ΔW  = (v* − W k) (C⁻¹ k*)ᵀ / ((C⁻¹ k*)ᵀ k)                                      (eq. 2)
     with C = E[k kᵀ] over a corpus (``mom2_adjustment``; off → C = I, as EasyEdit allows).

editlab's negation-aware objective (``negation_weight`` > 0) changes step 2 only: by default
(``negation_objective = "two-sided"``, the best form found out of sample, ``benchmarks/negation.py``)
v* must also make the true target beat the new one after the negated prompt, and the new one beat
the true one after the prompt (:mod:`.vstar`). ``negation_objective = "predicate"`` instead keeps
steps 1–3 exactly as published and adds a second rank-one write at the predicate (by default into
the same matrix): the key at the "not" token of the negated prompt ("... is not"), averaged over the
context templates, gets the value that makes the true target beat the new one after "not"
(:mod:`.predicate`; it turns that one sentence and reaches other subjects' negated sentences).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from editlab.core.bounded import short
from editlab.facts.fact import Fact
from editlab.methods import predicate, vstar
from editlab.methods.base import (
    MOM2_SAMPLES,
    Capabilities,
    Convert,
    EditError,
    LocateEditHParams,
    MethodContext,
    layer_covariances,
    stats_and_templates,
    whole_number,
)
from editlab.methods.keys import locate, read_kv

NAME = "rome"
# Several facts are written one after another (one rank-one update each), as the reference does.
CAPABILITIES = Capabilities(negation_objective=True)


def default_layer(handle) -> int:
    """The decisive layer by family: gpt2-xl's 17/48 from the paper; elsewhere ~1/6 of the depth
    (EasyEdit's 5/32 for 7B Llama/GPT-J)."""
    n = handle.arch.n_layers
    frac = 17 / 48 if handle.arch.family == "gpt2" else 5 / 30
    return max(0, min(n - 1, round(frac * n)))


def _one_layer(value, data) -> tuple[int, str]:
    """EasyEdit's ``layers`` (a list; its ROME writes each listed layer in turn) -> ``layer``."""
    layers = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(layers) != 1:
        raise ValueError(
            f"layers {short(value)}: EasyEdit's ROME writes each listed layer in turn, editlab's ROME one "
            "layer; give one (e.g. [5]), or use MEMIT to spread an edit over a range of layers"
        )
    layer = whole_number("layers", layers[0])
    return layer, f"layers {short(value)} -> layer {layer} (the one layer ROME writes)"


def _loss_at_output(value, data) -> tuple[None, str]:
    """EasyEdit's (and the reference's) ROME takes the loss from the model's logits whatever
    ``v_loss_layer`` says (it only names a module to trace): editlab's None, the model's output."""
    return None, (
        f"v_loss_layer {short(value)} -> v_loss_layer None (the model's output logits, where EasyEdit's "
        "ROME reads the loss whatever v_loss_layer says)"
    )


@dataclass
class HParams(LocateEditHParams):
    layer: int = 5
    negation_objective: str = "two-sided"  # a v* term (vstar.NEGATION_OBJECTIVES) or ROME's "predicate" write
    predicate_layer: int | None = None  # the predicate write's layer (None: ``layer``)
    predicate_keep: int = (
        0  # the predicate write: hold this many other subjects' "not" keys fixed (predicate.OTHER_SUBJECTS)
    )

    EASYEDIT_RENAMES = {
        "layers": Convert("layer", _one_layer),
        "v_loss_layer": Convert("v_loss_layer", _loss_at_output),
        "mom2_n_samples": MOM2_SAMPLES,
    }

    @classmethod
    def for_model(cls, handle) -> HParams:
        gpt2 = handle.arch.family == "gpt2"
        return cls(
            layer=default_layer(handle), v_weight_decay=0.5 if gpt2 else 1e-3, v_num_grad_steps=20 if gpt2 else 25
        )

    def validate(self, handle=None) -> None:
        if handle is not None:
            handle.arch.mlp_out_proj(self.layer)  # raises a clear range error
        if self.fact_token != "subject_last":
            raise ValueError(f"fact_token {short(self.fact_token)} is not supported; ROME here uses 'subject_last'")
        if handle is not None and self.v_loss_layer not in (None, handle.arch.n_layers - 1):
            raise ValueError(
                f"v_loss_layer {self.v_loss_layer}: only the last layer ({handle.arch.n_layers - 1}), "
                "i.e. the model's own output, is supported"
            )
        vstar.check_hparams(self, extra_objectives=(predicate.NAME,))
        if handle is not None and self.predicate_layer is not None:
            handle.arch.mlp_out_proj(self.predicate_layer)  # raises a clear range error
        predicate.check_hparams(self)
        if self.mom2_dtype not in ("float32", "float64"):
            raise ValueError("mom2_dtype must be float32 or float64")


def touched(handle, hp: HParams) -> list[str]:
    """Names of the parameters this edit rewrites."""
    layers = [hp.layer] + ([_predicate_layer(hp)] if predicate.wanted(hp) and _predicate_layer(hp) != hp.layer else [])
    return [handle.arch.mlp_out_proj(layer) + ".weight" for layer in layers]


def _predicate_layer(hp: HParams) -> int:
    return hp.layer if hp.predicate_layer is None else hp.predicate_layer


def compute_k(handle, fact: Fact, layer: int, templates: list[str]) -> torch.Tensor:
    """k*: the key at the subject's last token, averaged over context templates (eq. 3)."""
    located = [locate(handle.tokenizer, t, fact.prompt, fact.subject) for t in templates]
    k, _ = read_kv(handle, handle.arch.mlp_out_proj(layer), located)
    return k.mean(0)


def compute_u(k_star: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """u = C⁻¹ k* / ‖C⁻¹ k*‖ (the left vector); C = I without mom2 adjustment."""
    if c is None:
        u = k_star.double()
    else:
        u = torch.linalg.solve(c.to(k_star.device).double(), k_star.double())
    return (u / u.norm()).float()


def compute_v(
    handle,
    fact: Fact,
    layer: int,
    templates: list[str],
    hp: HParams,
    ctx: MethodContext | None = None,
    module: str | None = None,
) -> tuple[torch.Tensor, dict]:
    """v* = v0 + δ: the MLP output at the subject's last token that makes the model say target_new
    (eq. 4), from the optimiser ROME shares with MEMIT, AlphaEdit and PMET (:mod:`.vstar`): δ is
    added to the output of ``module`` (default: the layer's MLP output projection) in every
    context template, loss = NLL(o*) + kl_factor · KL(P ‖ P₀) on "{subject} is a" + weight decay
    (+ the negation-aware term), stopping on the total loss as the reference does."""
    module = module or handle.arch.mlp_out_proj(layer)
    progress = None
    if ctx is not None and ctx.progress:
        progress = lambda d, t, stage: ctx.report(d, t, f"ROME: {fact.subject!r}: {stage}")  # noqa: E731
    zs, infos = vstar.compute_zs(handle, [fact], templates, hp, [module], progress=progress)
    info = infos[0]
    v_star = zs[0][0]
    return v_star, {
        "v_losses": info["z_losses"],
        "v_steps": info["z_steps"],
        "v_prob": info["z_prob"],
        "delta_norm": info["delta_norms"][0],
        "v0_norm": info["z0_norms"][0],
        "v_path": info["path"],
    }


def apply(handle, facts: list[Fact], hp: HParams, ctx: MethodContext) -> dict:
    """Write each fact with one rank-one update (several facts: one after another, as ROME does)."""
    predicate_on, p_layer = predicate.wanted(hp), _predicate_layer(hp)
    layers = sorted({hp.layer, p_layer} if predicate_on else {hp.layer})
    cov, templates, timings = stats_and_templates(handle, hp, ctx, lambda: layer_covariances(handle, layers, hp, ctx))
    c = cov[hp.layer] if cov is not None else None
    module = handle.arch.mlp_out_proj(hp.layer)
    weight = handle.weight(module)
    subject_hp = (
        dataclasses.replace(hp, negation_weight=0.0) if predicate_on else hp
    )  # the subject's write stays published
    details = []
    for i, fact in enumerate(facts):
        ctx.report(i, len(facts), f"ROME: computing k* and v* for {fact.subject!r}")
        t0 = time.perf_counter()
        k_star = compute_k(handle, fact, hp.layer, templates)
        u = compute_u(k_star, c)
        v_star, vinfo = compute_v(handle, fact, hp.layer, templates, subject_hp, ctx)
        k, v_cur = read_kv(handle, module, [locate(handle.tokenizer, "{}", fact.prompt, fact.subject)])
        k, v_cur = k[0], v_cur[0]
        denom = torch.dot(k, u)
        if not torch.isfinite(denom) or abs(float(denom)) < 1e-12:
            raise EditError("ROME: the key is orthogonal to C⁻¹k*; no rank-one update can write this fact")
        right = (v_star - v_cur) / denom  # (v* − W k) / (uᵀ k)
        upd = torch.outer(right, u)  # [out, in]
        with torch.no_grad():
            w32 = weight.float() + (upd.T if handle.arch.conv1d else upd).to(weight.device)
            weight.copy_(w32.to(weight.dtype))
        detail = {
            "subject": fact.subject,
            "update_norm": float(upd.norm()),
            **vinfo,
            "k": k.cpu(),
            "v_star": v_star.cpu(),
        }
        if predicate_on:
            ctx.report(i, len(facts), f"ROME: the predicate write for {fact.subject!r} (the key at 'not')")
            detail["predicate"] = predicate.write(
                handle, fact, templates, hp, cov[p_layer] if cov is not None else None, p_layer
            )
        details.append(dict(detail, seconds=time.perf_counter() - t0))
    note = predicate.skipped_note("ROME", details)
    if note:
        ctx.info["note"] = note
    ctx.report(len(facts), len(facts), "ROME: done")
    return {"timings": timings, "facts": details, "layer": hp.layer, "templates": len(templates)}
