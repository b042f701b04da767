"""The machinery MEMIT (Meng et al., 2023, Alg. 1), AlphaEdit and PMET share: a range of MLP
output projections W_l, their hyperparameters, the keys K_l of a batch of facts, and writing a
target residual into the range layer by layer.

    for each l ∈ R (low to high), on the model as edited so far:
        K_l = keys of every fact (MLP key at the subject token, averaged over contexts)  ``compute_ks``
        R_l = (z − h^L(current)) / divisor(position of l)                                ``spread``
        ΔW_l = solve(K_l, R_l)         (MEMIT, AlphaEdit and PMET differ in the solve and the divisor)

The target z (step 1 of each method) comes from :mod:`editlab.methods.vstar`; each method's own
file (:mod:`~editlab.methods.memit`, :mod:`~editlab.methods.alphaedit`, :mod:`~editlab.methods.pmet`)
reads top to bottom as its paper's algorithm and calls these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from editlab.core.bounded import short
from editlab.facts.fact import Fact
from editlab.methods import vstar
from editlab.methods.base import (
    MOM2_SAMPLES,
    EditError,
    LocateEditHParams,
    MethodContext,
    coerce_numbers,
    layer_covariances,
)
from editlab.methods.keys import Located, locate, pad_batch
from editlab.methods.templates import STARTS
from editlab.model.nethook import Trace

CHUNK = 64  # sequences per forward pass when reading keys


def default_layers(handle) -> list[int]:
    """The published layer ranges, scaled to the model's depth: gpt2-xl 13–17 of 48, GPT-J 3–8 of
    28, Llama-class 4–8 of 32 (EasyEdit's llama/qwen/mistral files)."""
    n = handle.arch.n_layers
    lo, hi = {"gpt2": (13 / 48, 17 / 48), "gptj": (3 / 28, 8 / 28), "gpt_neox": (3 / 28, 8 / 28)}.get(
        handle.arch.family, (4 / 32, 8 / 32)
    )
    a, b = round(lo * n), round(hi * n)
    b = min(max(a, b), n - 1)
    return list(range(min(a, b), b + 1))


@dataclass
class BatchHParams(LocateEditHParams):
    """What MEMIT, AlphaEdit and PMET share: the layer range (and, from :class:`LocateEditHParams`, the
    z optimisation and the statistics)."""

    layers: list = field(default_factory=lambda: [4, 5, 6, 7, 8])
    layer_selection: str = "all"

    # Same meaning in EasyEdit's MEMIT, AlphaEdit and PMET files but for the statistics' size, in
    # samples there. Their context templates are fixed at [[10, 5]] (no key), editlab's default.
    EASYEDIT_RENAMES = {"mom2_n_samples": MOM2_SAMPLES}
    EXTRA_NEGATION_OBJECTIVES = ()  # negation forms a method writes itself (MEMIT: "predicate")

    def validate(self, handle=None) -> None:
        coerce_numbers(self)  # an HParams built directly may hold YAML-style strings ("5e-1")
        layers = [int(l) for l in self.layers] if isinstance(self.layers, (list, tuple)) else [int(self.layers)]
        if not layers:
            raise ValueError("layers is empty: give at least one layer to edit")
        if sorted(set(layers)) != layers:
            raise ValueError(f"layers must be increasing and distinct, got {short(self.layers)}")
        self.layers = layers
        if handle is not None:
            for l in layers:
                handle.arch.mlp_out_proj(l)  # raises a clear range error
        if self.layer_selection != "all":
            raise ValueError(f"layer_selection {short(self.layer_selection)} is not supported; use 'all'")
        if self.fact_token != "subject_last":
            raise ValueError(f"fact_token {short(self.fact_token)} is not supported; editlab uses 'subject_last'")
        vstar.check_hparams(self, self.EXTRA_NEGATION_OBJECTIVES)
        if self.mom2_dtype not in ("float32", "float64"):
            raise ValueError("mom2_dtype must be float32 or float64")
        if self.v_loss_layer is not None and int(self.v_loss_layer) < layers[-1]:
            raise ValueError(f"v_loss_layer {self.v_loss_layer} is below the last edit layer {layers[-1]}")
        if self.clamp_norm_factor <= 0:
            raise ValueError("clamp_norm_factor must be positive")


def touched(handle, hp: BatchHParams) -> list[str]:
    return [handle.arch.mlp_out_proj(l) + ".weight" for l in hp.layers]


def template_weights(templates: list[str], length_params) -> torch.Tensor:
    """Weights over context templates that reproduce the reference's key average: the mean within
    each group (the bare "{}", then one group per (length, n) generation setting), then the mean of
    the groups."""
    sizes = [1] + [len(STARTS) * max(1, int(n) // len(STARTS)) for _, n in length_params]
    if sum(sizes) != len(templates):
        return torch.full((len(templates),), 1.0 / len(templates))
    w = torch.cat([torch.full((s,), 1.0 / s) for s in sizes])
    return w / len(sizes)


@torch.no_grad()
def read_at(handle, module: str, located: list[Located], what: str = "input") -> torch.Tensor:
    """The input (``what="input"``) or output of ``module`` at each text's subject token, float32."""
    out = []
    for i in range(0, len(located), CHUNK):
        part = located[i : i + CHUNK]
        ids, mask = pad_batch([l.ids for l in part], handle.tokenizer.pad_token_id, handle.device)
        with Trace(handle.model, module, retain_input=what == "input", retain_output=what == "output", stop=True) as t:
            handle.model(input_ids=ids, attention_mask=mask)
        x = t.input if what == "input" else t.output
        rows = torch.arange(len(part), device=x.device)
        idx = torch.tensor([l.index for l in part], device=x.device)
        out.append(x[rows, idx].float())
    return torch.cat(out)


def compute_ks(handle, facts: Sequence[Fact], layer: int, templates: list[str], weights: torch.Tensor) -> torch.Tensor:
    """K_l: each fact's key at layer l (input of the MLP output projection at the subject token),
    averaged over the context templates; [n_facts, d_in]."""
    tok = handle.tokenizer
    located = [locate(tok, t, f.prompt, f.subject) for f in facts for t in templates]
    k = read_at(handle, handle.arch.mlp_out_proj(layer), located, "input")
    k = k.reshape(len(facts), len(templates), -1)
    return (k * weights.to(k.device)[None, :, None]).sum(1)


def covariances(handle, hp: BatchHParams, ctx: MethodContext) -> dict[int, torch.Tensor]:
    """C_l = E[k kᵀ] for every edit layer, one statistics pass (cached on disk)."""
    return layer_covariances(handle, hp.layers, hp, ctx)


def add_to_weight(handle, layer: int, upd: torch.Tensor) -> None:
    """W_l += ΔW ([out, in]; transposed for Conv1D weights)."""
    w = handle.weight(handle.arch.mlp_out_proj(layer))
    with torch.no_grad():
        w.copy_((w.float() + (upd.T if handle.arch.conv1d else upd).to(w.device, torch.float32)).to(w.dtype))


Solver = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]


def spread(
    handle,
    facts: Sequence[Fact],
    hp: BatchHParams,
    ctx: MethodContext,
    templates: list[str],
    z_module: str,
    zs: torch.Tensor,
    solve: Solver,
    divisor: Callable[[int], float],
    name: str,
) -> list[dict]:
    """Write the targets layer by layer (Alg. 1, lines 6–13): for layer i of the range, keys K on
    the model edited so far, residual R = (z − current) / divisor(i), ΔW = solve(i, layer, K, R)."""
    tok = handle.tokenizer
    plain = [locate(tok, "{}", f.prompt, f.subject) for f in facts]
    weights = template_weights(templates, hp.context_template_length_params)
    out = []
    for i, layer in enumerate(hp.layers):
        ctx.report(i, len(hp.layers), f"{name}: writing {len(facts)} fact(s) into layer {layer}")
        k = compute_ks(handle, facts, layer, templates, weights)  # [n, d_in]
        cur = read_at(handle, z_module, plain, "output")  # [n, d_out]
        resid = (zs - cur) / divisor(i)
        upd = solve(i, layer, k.double(), resid.double())  # [d_out, d_in]
        if not torch.isfinite(upd).all():
            raise EditError(f"{name}: the update for layer {layer} is not finite")
        add_to_weight(handle, layer, upd)
        out.append(
            {
                "layer": layer,
                "residual_norm": round(float(resid.norm(dim=1).mean()), 4),
                "update_norm": round(float(upd.norm()), 4),
            }
        )
    return out


def written_fraction(handle, facts, z_module: str, zs: torch.Tensor, z_before: torch.Tensor) -> list[float]:
    """How much of each target was written: 1 − ‖z − h_now‖ / ‖z − h_before‖ at the last layer."""
    plain = [locate(handle.tokenizer, "{}", f.prompt, f.subject) for f in facts]
    now = read_at(handle, z_module, plain, "output")
    gap0 = (zs - z_before).norm(dim=1).clamp_min(1e-12)
    return [round(float(x), 4) for x in (1 - (zs - now).norm(dim=1) / gap0)]


def shortfall_note(name: str, infos: list[dict]) -> str | None:
    """A sentence for the user when some targets were not reached or not written (honest reporting)."""
    weak = [i for i in infos if i.get("written", 1.0) < 0.5 or i["z_prob"] < 0.5]
    if not weak:
        return None
    items = ", ".join(
        f"{i['subject']!r} (target P {i['z_prob']:.2f}, written {i.get('written', 1.0):.0%})" for i in weak[:5]
    )
    more = f" and {len(weak) - 5} more" if len(weak) > 5 else ""
    return (
        f"{name}: for {len(weak)} of {len(infos)} fact(s) the optimised target was weak or only partly written "
        f"into the weights: {items}{more}; check the probes"
    )
