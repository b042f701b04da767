"""PMET: Precise Model Editing in a Transformer (Li et al., AAAI 2024, §4).

PMET argues that a layer's residual output mixes the attention (MHSA) and MLP (FFN) outputs, and
MEMIT's target for the residual over-writes what the attention part carries. It therefore
optimises the attention output and the MLP output of the last edit layer L *jointly* (two δ's, one
loss; :func:`editlab.methods.vstar.compute_zs` with two sites), but writes only the MLP weights,
with the MLP target:

    z_mlp = m^L + δ_mlp   (δ_attn shapes the optimisation, then is discarded)
    for layer i of the range:  R = (z_mlp − m^L(current)) / √(|R| − i)        (eq. 14)
                               ΔW_i = R K_iᵀ (K_i K_iᵀ + λ C_i)⁻¹

The √ spreading (instead of MEMIT's 1/(|R| − i)) follows the paper and EasyEdit's implementation.
As there, the NLL weight drops to a tenth once the target is the argmax everywhere, and the
optimisation then stops when the KL term is small.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from editlab.core.bounded import short
from editlab.methods.base import Capabilities, MethodContext, stats_and_templates
from editlab.methods.keys import locate
from editlab.methods.memit import memit_solver, scaled_lambda
from editlab.methods.multilayer import (
    BatchHParams,
    covariances,
    default_layers,
    read_at,
    shortfall_note,
    spread,
    touched,
    written_fraction,
)
from editlab.methods.vstar import targets

NAME = "pmet"
CAPABILITIES = Capabilities(batch=True, negation_objective=True)  # the shared v* (editlab.methods.vstar)

__all__ = ["NAME", "CAPABILITIES", "HParams", "touched", "apply"]

_ATTN_WORDS = ("attn", "attention", "o_proj", "out_proj", "self_attn")


def _block_kind(template: str) -> str:
    return "attn" if any(w in str(template) for w in _ATTN_WORDS) else "mlp"


@dataclass
class HParams(BatchHParams):
    mom2_update_weight: float = 15000.0  # λ
    nll_loss_factor: float = 1.0
    rewrite_modules: list = field(default_factory=lambda: ["mlp"])  # EasyEdit's rewrite_module_tmps, by kind

    EASYEDIT_RENAMES = {
        **BatchHParams.EASYEDIT_RENAMES,
        "rewrite_module_tmps": lambda v: (
            "rewrite_modules",
            [_block_kind(t) for t in (v if isinstance(v, (list, tuple)) else [v])],
        ),
    }

    @classmethod
    def for_model(cls, handle) -> HParams:
        fam = handle.arch.family
        hp = cls(layers=default_layers(handle), clamp_norm_factor=1.0, v_num_grad_steps=20, v_weight_decay=0.5)
        hp.mom2_update_weight = scaled_lambda(handle, hp.layers[0])  # as MEMIT: λ relative to d_in
        if fam in ("gptj", "gpt_neox"):  # EasyEdit hparams/PMET/gpt-j-6B.yaml
            hp.clamp_norm_factor, hp.v_num_grad_steps, hp.v_lr, hp.kl_factor = 0.75, 30, 0.2, 1.0
        elif fam == "gpt2":
            hp.clamp_norm_factor = 0.75
        return hp  # llama / mistral / qwen: EasyEdit hparams/PMET/llama-7b.yaml

    def validate(self, handle=None) -> None:
        super().validate(handle)
        value = self.rewrite_modules  # a YAML value of any shape (`true`, a list of thousands)
        kinds = list(value) if isinstance(value, (list, tuple)) else [value]
        if kinds != ["mlp"]:
            raise ValueError(
                f"rewrite_modules {short(value)} is not supported: PMET optimises the attention and MLP outputs "
                "jointly but updates only the MLP weights (as the paper does); use ['mlp']"
            )
        if self.nll_loss_factor <= 0:
            raise ValueError("nll_loss_factor must be positive")


def apply(handle, facts: list, hp: HParams, ctx: MethodContext) -> dict:
    cov, templates, timings = stats_and_templates(handle, hp, ctx, lambda: covariances(handle, hp, ctx))

    last = hp.layers[-1]
    attn_site, mlp_site = handle.arch.attn_out_proj(last), handle.arch.mlp_out_proj(last)
    t0 = time.perf_counter()
    z_lists, infos = targets(
        handle,
        facts,
        hp,
        ctx,
        templates,
        [attn_site, mlp_site],
        "PMET",
        nll_factor=hp.nll_loss_factor,
        adaptive_nll=True,
    )
    zs = torch.stack([z[1] for z in z_lists])  # the MLP targets; the attention δ is not written
    timings["targets_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    plain = [locate(handle.tokenizer, "{}", f.prompt, f.subject) for f in facts]
    before = read_at(handle, mlp_site, plain, "output")
    n = len(hp.layers)
    layers = spread(
        handle,
        facts,
        hp,
        ctx,
        templates,
        mlp_site,
        zs,
        memit_solver(handle, cov, hp.mom2_update_weight),
        lambda i: math.sqrt(n - i),
        "PMET",
    )
    for info, w in zip(infos, written_fraction(handle, facts, mlp_site, zs, before)):
        info["written"] = w
    timings["update_s"] = time.perf_counter() - t0
    ctx.report(len(facts), len(facts), "PMET: done")
    note = shortfall_note("PMET", infos)
    if note:
        ctx.info["note"] = note
    return {
        "timings": timings,
        "facts": infos,
        "layers": hp.layers,
        "layer_updates": layers,
        "templates": len(templates),
        "targets": zs.cpu(),
        "z_module": mlp_site,
    }
