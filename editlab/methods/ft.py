"""Constrained fine-tuning of one layer's MLP output projection: what FT-L and FT-M share.

Zhu et al. (2020, "Modifying Memories in Transformer Models") fine-tune under a norm constraint;
the ROME paper's FT-L baseline restricts that to one MLP output projection W and clamps every entry
to an L∞ ball around the original weights:

    W ← clamp(W − Adam(∇L), W₀ − ε, W₀ + ε)        ε = ``norm_constraint``

for ``num_steps`` steps (stopping early once L < ``early_stop_loss``, as EasyEdit does). The two
variants differ only in the loss L, i.e. EasyEdit's ``objective_optimization``:

* FT-L, ``prompt_last``: −mean_j log P(o*_j | prompt), every target token read from the *prompt's
  last position* (ROME's FT-L). Later tokens of a multi-token target are not trained in place.
* FT-M, ``target_new``: the ordinary teacher-forced cross-entropy on ``prompt + target``, masked to
  the target tokens (EasyEdit's FT-M), so every target token is trained at its own position.

The modules ``ft_l`` and ``ft_m`` register the two names; this one holds the algorithm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch.func import functional_call

from editlab.core.bounded import short
from editlab.facts.fact import Fact
from editlab.methods.base import EditError, HParamsBase, MethodContext, coerce_numbers, whole_number
from editlab.methods.teacher import (
    batch,
    bleed_check,
    bleed_note,
    check_note,
    control_tokens,
    encode,
    prompt_check,
    prompt_last_nll,
    target_nll,
)

OBJECTIVES = ("prompt_last", "target_new")


def default_layer(handle) -> int:
    """A middle-early layer (~1/3 of the depth): on SmolLM2-135M layer 10 of 30.

    ROME's FT-L used GPT-2 XL's layer 0 and EasyEdit's Llama files use a late layer (21 of 32,
    unconstrained). Under the ε-ball, the first layer barely moves this model's prediction and a
    late layer is the less "located" choice; the middle-early MLPs, where causal tracing puts
    factual recall, take the edit within the constraint. See docs/methods-ft-grace-kn-ike.md.
    """
    n = handle.arch.n_layers
    return max(0, min(n - 1, round(n / 3)))


@dataclass
class FTHParams(HParamsBase):
    layers: list = field(default_factory=lambda: [10])
    num_steps: int = 25
    lr: float = 1e-3
    weight_decay: float = 0.0
    norm_constraint: float | None = 5e-3  # L∞ radius around W₀; None (EasyEdit: false) = unconstrained
    objective_optimization: str = "prompt_last"
    early_stop_loss: float = 1e-2
    kl_factor: float = 0.0  # accepted for EasyEdit files; EasyEdit's FT ignores it, so must be 0 here

    EASYEDIT_RENAMES = {
        "layers": lambda v: (
            "layers",
            [whole_number("layers", x) for x in (v if isinstance(v, (list, tuple)) else [v])],
        ),
    }

    def __post_init__(self):
        coerce_numbers(self, ("lr", "weight_decay", "early_stop_loss", "kl_factor", "norm_constraint"))
        if isinstance(self.layers, int):
            self.layers = [self.layers]

    def validate(self, handle=None) -> None:
        if not self.layers:
            raise ValueError("layers is empty: give the layer whose MLP output projection to fine-tune")
        if handle is not None:
            for layer in self.layers:
                handle.arch.mlp_out_proj(int(layer))  # raises a clear range error
        if self.objective_optimization not in OBJECTIVES:
            raise ValueError(
                f"objective_optimization {short(self.objective_optimization)} is not one of {', '.join(OBJECTIVES)}"
            )
        if self.num_steps < 1:
            raise ValueError("num_steps must be at least 1")
        if self.lr <= 0:
            raise ValueError("lr must be positive")
        if self.norm_constraint is not None and (isinstance(self.norm_constraint, bool) or self.norm_constraint <= 0):
            raise ValueError("norm_constraint must be a positive number, or null/false for unconstrained fine-tuning")
        if self.kl_factor:
            raise ValueError("kl_factor is not used by FT (EasyEdit's FT ignores it too); set it to 0")


def variant(name: str, objective: str, other: str, module: str):
    """The ``HParams``, ``touched`` and ``apply`` of one FT variant: FT-L and FT-M are the same
    algorithm with ``objective_optimization`` fixed (a file asking for the other one is refused)."""

    @dataclass
    class HParams(FTHParams):
        objective_optimization: str = objective

        @classmethod
        def for_model(cls, handle) -> HParams:
            return cls(layers=[default_layer(handle)])

        def validate(self, handle=None) -> None:
            super().validate(handle)
            if self.objective_optimization != objective:
                raise ValueError(
                    f"{name.upper()} optimises objective_optimization {objective!r}; these hyperparameters ask for "
                    f"{short(self.objective_optimization)}, which is {other.upper()}: use the method {other!r}"
                )

    HParams.__qualname__ = HParams.__name__ = "HParams"
    HParams.__module__ = module  # pickles and prints as e.g. editlab.methods.ft_l.HParams

    def touched(handle, hp: HParams) -> list[str]:
        return ft_touched(handle, hp)

    def apply(handle, facts, hp: HParams, ctx: MethodContext) -> dict:
        return ft_apply(name, handle, facts, hp, ctx)

    return HParams, touched, apply


def ft_touched(handle, hp: FTHParams) -> list[str]:
    return [handle.arch.mlp_out_proj(int(layer)) + ".weight" for layer in hp.layers]


def ft_apply(name: str, handle, facts: list[Fact], hp: FTHParams, ctx: MethodContext) -> dict:
    """Fine-tune the layers' MLP output projections on all facts at once (one batch per step)."""
    t0 = time.perf_counter()
    model = handle.model
    controls = control_tokens(handle)
    names = ft_touched(handle, hp)
    originals = {n: handle.weight(n.rsplit(".", 1)[0]) for n in names}
    w0 = {n: w.detach().float().clone() for n, w in originals.items()}
    trained = {n: w.detach().float().clone().requires_grad_(True) for n, w in originals.items()}
    items = [encode(handle.tokenizer, f.prompt, f.target_new) for f in facts]
    ids, mask = batch(handle, items)
    loss_fn = prompt_last_nll if hp.objective_optimization == "prompt_last" else target_nll
    opt = torch.optim.Adam(list(trained.values()), lr=hp.lr, weight_decay=hp.weight_decay)
    eps = hp.norm_constraint
    losses = []
    with torch.enable_grad():
        for step in range(hp.num_steps):
            ctx.report(step, hp.num_steps, f"{name}: fine-tuning step {step + 1}/{hp.num_steps}")
            opt.zero_grad()
            params = {n: t.to(originals[n].dtype) for n, t in trained.items()}
            logits = functional_call(model, params, args=(), kwargs={"input_ids": ids, "attention_mask": mask}).logits
            loss = loss_fn(logits, items)
            if not torch.isfinite(loss):
                raise EditError(f"{name}: the loss diverged at step {step} ({loss.item()})")
            losses.append(round(loss.item(), 4))
            if loss.item() < hp.early_stop_loss:
                break
            loss.backward()
            opt.step()
            if eps is not None:
                with torch.no_grad():
                    for n, t in trained.items():
                        t.copy_(torch.maximum(torch.minimum(t, w0[n] + eps), w0[n] - eps))
    with torch.no_grad():
        for n, t in trained.items():
            originals[n].copy_(t.to(originals[n].dtype))
    deltas = {n: float((trained[n].detach() - w0[n]).abs().max()) for n in names}
    checks = prompt_check(handle, facts)
    bleed = bleed_check(handle, facts, controls)
    ctx.report(hp.num_steps, hp.num_steps, f"{name}: done")
    result = {
        "timings": {"train_s": time.perf_counter() - t0},
        "losses": losses,
        "steps": len(losses),
        "layers": [int(x) for x in hp.layers],
        "objective": hp.objective_optimization,
        "max_abs_delta": deltas,
        "prompt_check": checks,
        "bleed": bleed,
    }
    notes = [n for n in (check_note(name, checks), bleed_note(name, bleed)) if n]
    if notes:
        result["note"] = "; ".join(notes)
    return result
