"""AlphaEdit: null-space constrained knowledge editing (Fang et al., 2025, §3, eq. 12).

MEMIT's targets z and keys K (see :mod:`editlab.methods.memit`), but the update is projected onto
the null space of the preserved knowledge, so what the layer already stores is (approximately)
left alone, and earlier edits of the same session are protected too:

    ΔW_l = R Kᵀ P (K_p K_pᵀ P + K Kᵀ P + α I)⁻¹          (solved as ΔWᵀ = (P(KKᵀ + K_pK_pᵀ) + αI)⁻¹ P K Rᵀ)

  P = Û Ûᵀ, Û = eigenvectors of C_l = E[k kᵀ] with the smallest eigenvalues;
  K_p = keys of the earlier edits of this session (sequential editing); α = ``L2`` when given
  (EasyEdit's absolute 10), else ``l2_relative`` × the mean eigenvalue of C (trace C / d), so the
  regulariser keeps its meaning whatever the scale of a model's keys.

Choosing Û. By default, as the reference: the eigen-directions of C with eigenvalue below the
absolute ``nullspace_threshold`` (2e-2). On SmolLM2-135M that keeps 1,119–1,312 of 1,536 directions
(layers 4–8), holding 20–36% of the keys' energy: a wide "null space", but the one that keeps earlier
edits best in sequential editing there (``benchmarks/sequential.py``, README). An absolute threshold
depends on the model's key scale, so editlab also offers a scale-free rule: set ``nullspace_energy``
and Û spans the smallest eigen-directions whose eigenvalues sum to at most (1 − ``nullspace_energy``)
of trace C, i.e. P removes the principal subspace holding that share of E‖k‖². Too narrow a null
space crowds the edits of a session together (0.99 keeps ~150 directions on SmolLM2 and earlier
batches decay). The kept dimension is reported in the edit's info; a rule that keeps no direction is
an error, one that keeps every direction (P = I, no constraint) is said in the note.

Û is computed once per (model, layer, statistics, rule) and cached on disk. K_p lives in the edit
session's method state (:class:`State`), one entry per edit (committed only when an edit succeeds;
cleared by ``reset``); the session's undo calls :func:`forget`, which drops the undone edit's entry.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import torch

from editlab.core import paths
from editlab.methods.base import Capabilities, EditError, MethodContext
from editlab.methods.keys import locate
from editlab.methods.multilayer import (
    BatchHParams,
    compute_ks,
    covariances,
    default_layers,
    read_at,
    shortfall_note,
    spread,
    template_weights,
    touched,
    written_fraction,
)
from editlab.methods.templates import context_templates
from editlab.methods.vstar import targets
from editlab.model.handle import weights_digest

NAME = "alphaedit"
CAPABILITIES = Capabilities(batch=True, sequential_state=True, negation_objective=True)
SCALE_FREE = "or use the scale-free rule, e.g. nullspace_energy=0.9"  # the remedy when 2e-2 misfits a model's key scale

__all__ = [
    "NAME",
    "CAPABILITIES",
    "HParams",
    "State",
    "touched",
    "apply",
    "nullspace_basis",
    "protected_keys",
    "forget",
]


@dataclass
class HParams(BatchHParams):
    nullspace_threshold: float = 2e-2  # the reference's absolute eigenvalue threshold (EasyEdit's key)
    nullspace_energy: float | None = (
        None  # when set: scale-free rule, P removes the key subspace holding this share of E‖k‖²
    )
    L2: float | None = None  # α in (P(KKᵀ + K_pK_pᵀ) + αI), absolute (EasyEdit's key, 10 there)
    l2_relative: float = 0.1  # when L2 is None: α = l2_relative × mean eigenvalue of C_l (scale-free)

    EASYEDIT_NOT_USED = {
        "P_loc": "a precomputed projection file, a pickle: editlab computes P from the statistics and caches it",
        "mom2_update_weight": (
            "EasyEdit's AlphaEdit does not read λ either: the null-space projection takes the place of λC"
        ),
    }

    @classmethod
    def for_model(cls, handle) -> HParams:
        fam = handle.arch.family
        hp = cls(layers=default_layers(handle))
        if fam == "gpt2":  # jianghoucheng/AlphaEdit gpt2-xl.json
            hp.clamp_norm_factor, hp.v_weight_decay, hp.v_num_grad_steps, hp.v_lr = 0.75, 0.5, 20, 0.5
        elif fam in ("gptj", "gpt_neox"):  # EleutherAI_gpt-j-6B.json
            hp.clamp_norm_factor, hp.v_weight_decay, hp.v_lr = 0.75, 0.5, 0.5
        return hp

    def validate(self, handle=None) -> None:
        super().validate(handle)
        if self.nullspace_energy is not None and not 0.0 < self.nullspace_energy < 1.0:
            raise ValueError(
                "nullspace_energy must lie strictly between 0 and 1 (e.g. 0.9), or be unset "
                "for the absolute nullspace_threshold"
            )
        if self.nullspace_energy is None and not (self.nullspace_threshold or 0) > 0:
            raise ValueError("nullspace_threshold must be positive (the reference uses 2e-2)")
        if self.L2 is not None and self.L2 < 0:
            raise ValueError("L2 must be >= 0")
        if self.L2 is None and self.l2_relative <= 0:
            raise ValueError("l2_relative must be positive")

    def alpha(self, mean_eigenvalue: float) -> float:
        """α: ``L2`` when given, else ``l2_relative`` × the mean eigenvalue of the keys' second moment."""
        return self.L2 if self.L2 is not None else self.l2_relative * mean_eigenvalue

    def rule(self) -> tuple[str, float]:
        if self.nullspace_energy is not None:
            return "energy", float(self.nullspace_energy)
        return "absolute", float(self.nullspace_threshold)


def choose_nullspace(eigenvalues: torch.Tensor, rule: str, value: float) -> torch.Tensor:
    """Boolean mask over ascending eigenvalues: which eigen-directions span the null space."""
    e = eigenvalues.double().clamp_min(0)
    if rule == "absolute":
        return eigenvalues < value
    share = e.cumsum(0) / e.sum().clamp_min(1e-30)  # energy of the smallest j directions
    return share <= (1.0 - value) + 1e-9  # tolerance for the rounding of the cumulative sum


def nullspace_basis(
    handle, layer: int, c: torch.Tensor, stats_ident: str, rule: str, value: float
) -> tuple[torch.Tensor, dict]:
    """Û for one layer (d_in × kept), cached on disk under the model fingerprint.

    The cache key holds the model, layer, module, the statistics' identity and a digest of C itself,
    and the rule, so a changed corpus, token count, import or threshold never reuses a stale Û."""
    from safetensors.torch import load_file, save_file

    c32 = c.detach().to("cpu", torch.float32).contiguous()
    digest = weights_digest([c32], length=16)
    key = paths.key_digest(
        model=handle.fingerprint,
        layer=layer,
        module=handle.arch.mlp_out_proj(layer),
        stats=stats_ident,
        c=digest,
        rule=rule,
        value=value,
    )
    f = paths.cache_dir("nullspace", handle.fingerprint) / f"nullspace-L{layer}-{key}.safetensors"
    data = None
    if f.exists():
        try:
            data = load_file(str(f))
        except Exception:
            f.unlink(missing_ok=True)  # a corrupt entry is recomputed, never trusted
    if data is None:
        e, v = torch.linalg.eigh(c32.double())  # ascending eigenvalues; C is symmetric PSD
        mask = choose_nullspace(e, rule, value)
        data = {
            "basis": v[:, mask].float().contiguous(),
            "eigenvalues": e.float().contiguous(),
            "mask": mask.to(torch.uint8).contiguous(),
        }
        tmp = f.with_suffix(f".tmp{os.getpid()}")
        save_file(data, str(tmp), metadata={"rule": rule, "value": str(value), "stats": stats_ident})
        os.replace(tmp, f)
    e, mask = data["eigenvalues"].double().clamp_min(0), data["mask"].bool()
    info = {
        "kept": int(mask.sum()),
        "of": int(mask.numel()),
        "rule": f"{rule} {value:g}",
        "energy_in_nullspace": round(float(e[mask].sum() / e.sum().clamp_min(1e-30)), 5),
    }
    return data["basis"], info


@dataclass(frozen=True)
class State:
    """A session's K_p: per AlphaEdit edit, its entry number (``record.info['kp_entry']``) and its
    keys per layer ([n_facts, d_in], on CPU); ``next`` numbers the next edit's entry."""

    entries: tuple[tuple[int, dict[int, torch.Tensor]], ...] = field(default=(), repr=False)
    next: int = 1


def protected_keys(state: State | None) -> dict[int, torch.Tensor]:
    """K_p per layer: the keys of this session's earlier AlphaEdit edits, in order."""
    out: dict[int, list] = {}
    for _, keys in (state or State()).entries:
        for layer, k in keys.items():
            out.setdefault(layer, []).append(k)
    return {layer: torch.cat(ks) for layer, ks in out.items()}


def forget(state: State, record) -> State:
    """The session state without ``record``'s keys (the session's undo calls it): a new State,
    the old one is not modified."""
    entry = record.info.get("kp_entry")
    return State(entries=tuple(e for e in state.entries if e[0] != entry), next=state.next)


def _projections(handle, hp: HParams, ctx: MethodContext) -> tuple[dict, dict, dict]:
    """Per layer, P = Û Ûᵀ and α from the unedited model's C (none when ``mom2_adjustment`` is off:
    P = I), with the null spaces' info."""
    proj: dict[int, torch.Tensor] = {}
    alpha: dict[int, float] = {}
    ns_info = {}
    if hp.mom2_adjustment:
        with ctx.unedited():  # statistics of the unedited model, whatever the session holds
            cov = covariances(handle, hp, ctx)
        for layer in hp.layers:
            alpha[layer] = hp.alpha(float(torch.diagonal(cov[layer]).double().mean()))
        rule, value = hp.rule()
        for layer in hp.layers:
            basis, info = nullspace_basis(handle, layer, cov[layer], ctx.info["stats_source"], rule, value)
            if info["kept"] == 0:
                fix = (
                    f"this model's keys are larger than the threshold assumes; raise nullspace_threshold, {SCALE_FREE}"
                    if rule == "absolute"
                    else "lower nullspace_energy, e.g. 0.9"
                )
                raise EditError(
                    f"AlphaEdit: the null space of layer {layer} is empty under rule {info['rule']} "
                    f"(no eigen-direction qualifies): {fix}"
                )
            b = basis.to(handle.device, torch.float64)
            proj[layer] = b @ b.T
            ns_info[layer] = info
        ctx.info["nullspace"] = ns_info
    else:
        ctx.info["stats_source"] = "none (mom2_adjustment off: P = I, no null-space projection)"
    return proj, alpha, ns_info


def _solver(hp: HParams, proj: dict, alpha: dict, previous: dict):
    """The per-layer solve of eq. 12 for :func:`~editlab.methods.multilayer.spread`, with K_p = ``previous``."""

    def solve(i, layer, k, resid):
        eye = torch.eye(k.shape[1], dtype=torch.float64, device=k.device)
        p = proj.get(layer, eye)
        m = k.T @ k
        if layer in previous:
            kp = previous[layer].to(k.device, torch.float64)
            m = m + kp.T @ kp
        if layer not in alpha:  # no statistics: scale by this edit's keys instead of C
            alpha[layer] = hp.alpha(float((k * k).sum(1).mean()) / k.shape[1])
        a = p @ m + alpha[layer] * eye
        return torch.linalg.solve(a, p @ k.T @ resid).T.float()  # ΔW = ((P M + αI)⁻¹ P K Rᵀ)ᵀ

    return solve


def _grow_protected(handle, facts: list, hp: HParams, ctx: MethodContext, templates) -> tuple[int, dict]:
    """K_p grows by this edit's keys; returns the edit's entry number and the grown K_p per layer."""
    # K_p grows by this edit's keys, read on the edited model (as the reference does); a new dict,
    # so the session's committed state is untouched if anything later fails.
    weights = template_weights(templates, hp.context_template_length_params)
    mine = {layer: compute_ks(handle, facts, layer, templates, weights).cpu() for layer in hp.layers}
    state = ctx.session_state or State()
    entry = state.next
    ctx.session_state = State(entries=state.entries + ((entry, mine),), next=entry + 1)
    return entry, protected_keys(ctx.session_state)


def _note(ctx: MethodContext, hp: HParams, proj: dict, ns_info: dict, d_in: int, grown: dict, infos: list) -> None:
    """The edit's note: the kept null-space dimension, a null space that protects nothing, weak targets."""
    notes = []
    if proj:
        kept = [ns_info[l]["kept"] for l in hp.layers]
        notes.append(
            f"AlphaEdit null space: {min(kept)}–{max(kept)} of {d_in} key directions kept "
            f"({ns_info[hp.layers[0]]['rule']}), "
            f"holding ≤{max(ns_info[l]['energy_in_nullspace'] for l in hp.layers):.1%} "
            f"of the keys' energy; "
            f"{sum(int(v.shape[0]) for v in grown.values()) // len(grown)} key(s) per layer protected"
        )
        full = [l for l in hp.layers if ns_info[l]["kept"] == ns_info[l]["of"]]
        if full:
            notes.append(
                f"the null space of layer(s) {full} is the whole key space under {ns_info[full[0]]['rule']} "
                f"(every eigenvalue qualifies: P = I, nothing preserved is protected); "
                f"lower nullspace_threshold, {SCALE_FREE}"
            )
    weak = shortfall_note("AlphaEdit", infos)
    if weak:
        notes.append(weak)
    if notes:
        ctx.info["note"] = "; ".join(notes)


def apply(handle, facts: list, hp: HParams, ctx: MethodContext) -> dict:
    """Edit ``facts`` in one call (see the module docstring): P and α from C, MEMIT's targets z,
    the update of eq. 12 spread over the layers, then K_p grows by this edit's keys."""
    timings = {}
    t0 = time.perf_counter()
    d_in = handle.mlp_out_weight(hp.layers[0]).shape[1]
    proj, alpha, ns_info = _projections(handle, hp, ctx)
    timings["stats_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ctx.unedited():
        templates = context_templates(handle, [tuple(p) for p in hp.context_template_length_params], seed=hp.seed)
    timings["templates_s"] = time.perf_counter() - t0

    z_module = handle.arch.layer(hp.layers[-1])
    t0 = time.perf_counter()
    z_lists, infos = targets(handle, facts, hp, ctx, templates, [z_module], "AlphaEdit")
    zs = torch.stack([z[0] for z in z_lists])
    timings["targets_s"] = time.perf_counter() - t0

    solve = _solver(hp, proj, alpha, protected_keys(ctx.session_state))  # K_p per layer, [m, d_in]
    t0 = time.perf_counter()
    plain = [locate(handle.tokenizer, "{}", f.prompt, f.subject) for f in facts]
    before = read_at(handle, z_module, plain, "output")
    layers = spread(handle, facts, hp, ctx, templates, z_module, zs, solve, lambda i: len(hp.layers) - i, "AlphaEdit")
    for info, w in zip(infos, written_fraction(handle, facts, z_module, zs, before)):
        info["written"] = w
    entry, grown = _grow_protected(handle, facts, hp, ctx, templates)
    timings["update_s"] = time.perf_counter() - t0
    ctx.report(len(facts), len(facts), "AlphaEdit: done")
    _note(ctx, hp, proj, ns_info, d_in, grown, infos)
    return {
        "targets": zs.cpu(),
        "z_module": z_module,
        "timings": timings,
        "facts": infos,
        "layers": hp.layers,
        "layer_updates": layers,
        "templates": len(templates),
        "protected_keys": {l: int(v.shape[0]) for l, v in grown.items()},
        "key_dim": d_in,
        "kp_entry": entry,
        "alpha": {l: round(a, 6) for l, a in alpha.items()},
    }
