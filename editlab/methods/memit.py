"""MEMIT: Mass-Editing Memory in a Transformer (Meng et al., 2023, §4, Alg. 1).

Many facts at once, spread over a range of MLP output projections W_l (l ∈ R):
  1. z_i  = h_i^L + δ_i: the residual at the last edit layer L, at subject i's last token, that
            makes the model say o_i*; δ_i = argmin NLL(o_i*) + λ_KL·KL + weight decay (eq. 16),
            clamped to clamp_norm_factor · ‖h_i^L‖.                                 ``compute_zs``
  2. for each l ∈ R (low to high), on the model as edited so far:
       K_l = keys of every fact (MLP key at the subject token, averaged over contexts) ``compute_ks``
       R_l = (z − h^L(current)) / (|R| − position of l)   (the residual spread over the layers left)
       ΔW_l = R_l K_lᵀ (λ C_l + K_l K_lᵀ)⁻¹                                          (eq. 14)
     with C_l = E[k kᵀ] over a corpus and λ = ``mom2_update_weight``; solved in float64.

``compute_zs`` serves AlphaEdit and PMET too: it optimises one δ per *site* (a module whose output
gets δ added at the subject token), so PMET's joint attention + MLP targets are the same function.
It optimises many facts in one batch, each independently, and runs each prompt's prefix (before the
subject token, which δ cannot affect) through the model once, into a key/value cache.
The negation-aware term (editlab's, off by default) adds negation_weight · −log(1 − P(o* | negated
prompt)) to the loss.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..facts import Fact, negate
from ..nethook import Trace, TraceDict
from ..probes import target_ids
from ..stats import second_moments
from ..stats_import import resolve_stats_corpus
from ..templates import STARTS
from .base import EditError, HParamsBase, MethodContext, coerce_numbers, stats_and_templates
from .keys import Located, locate, pad_batch

NAME = "memit"
CHUNK = 64  # sequences per forward pass when reading keys


def default_layers(handle) -> list[int]:
    """The published layer ranges, scaled to the model's depth: gpt2-xl 13–17 of 48, GPT-J 3–8 of
    28, Llama-class 4–8 of 32 (EasyEdit's llama/qwen/mistral files)."""
    n = handle.arch.n_layers
    lo, hi = {"gpt2": (13 / 48, 17 / 48), "gptj": (3 / 28, 8 / 28), "gpt_neox": (3 / 28, 8 / 28)}.get(
        handle.arch.family, (4 / 32, 8 / 32))
    a, b = round(lo * n), round(hi * n)
    b = min(max(a, b), n - 1)
    return list(range(min(a, b), b + 1))


@dataclass
class BatchHParams(HParamsBase):
    """What MEMIT, AlphaEdit and PMET share: the layer range, the z optimisation, the statistics."""

    layers: list = field(default_factory=lambda: [4, 5, 6, 7, 8])
    layer_selection: str = "all"
    fact_token: str = "subject_last"
    v_num_grad_steps: int = 25
    v_lr: float = 0.5
    v_loss_layer: int | None = None  # None (or the last layer): the model's own logits
    v_weight_decay: float = 1e-3
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    loss_stop: float = 5e-2  # the reference stops a fact's optimisation once its loss is below this
    mom2_adjustment: bool = True
    mom2_n_tokens: int = 100_000
    mom2_dtype: str = "float32"
    mom2_dataset: str | None = None  # corpus path or imported statistics name; None -> session corpus
    context_template_length_params: list = field(default_factory=lambda: [[10, 5]])
    negation_weight: float = 0.0  # editlab's negation-aware term; 0 = the published method
    seed: int = 0

    EASYEDIT_RENAMES = {"mom2_n_samples": "mom2_n_tokens"}

    def validate(self, handle=None) -> None:
        coerce_numbers(self)  # an HParams built directly may hold YAML-style strings ("5e-1")
        layers = [int(l) for l in self.layers] if isinstance(self.layers, (list, tuple)) else [int(self.layers)]
        if not layers:
            raise ValueError("layers is empty: give at least one layer to edit")
        if sorted(set(layers)) != layers:
            raise ValueError(f"layers must be increasing and distinct, got {self.layers}")
        self.layers = layers
        if handle is not None:
            for l in layers:
                handle.arch.mlp_out_proj(l)  # raises a clear range error
        if self.layer_selection != "all":
            raise ValueError(f"layer_selection {self.layer_selection!r} is not supported; use 'all'")
        if self.fact_token != "subject_last":
            raise ValueError(f"fact_token {self.fact_token!r} is not supported; editlab uses 'subject_last'")
        if self.v_num_grad_steps < 1:
            raise ValueError("v_num_grad_steps must be at least 1")
        if self.mom2_dtype not in ("float32", "float64"):
            raise ValueError("mom2_dtype must be float32 or float64")
        if self.negation_weight < 0:
            raise ValueError("negation_weight must be >= 0 (0 = the published objective)")
        if self.v_loss_layer is not None and int(self.v_loss_layer) < layers[-1]:
            raise ValueError(f"v_loss_layer {self.v_loss_layer} is below the last edit layer {layers[-1]}")
        if self.clamp_norm_factor <= 0:
            raise ValueError("clamp_norm_factor must be positive")


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

    @classmethod
    def for_model(cls, handle) -> "HParams":
        fam = handle.arch.family
        hp = cls(layers=default_layers(handle))
        hp.mom2_update_weight = scaled_lambda(handle, hp.layers[0])
        if fam == "gpt2":  # kmeng01/memit gpt2-xl.json
            hp.clamp_norm_factor, hp.v_weight_decay, hp.v_num_grad_steps = 0.75, 0.5, 20
        elif fam in ("gptj", "gpt_neox"):  # kmeng01/memit EleutherAI_gpt-j-6B.json
            hp.clamp_norm_factor, hp.v_weight_decay = 0.75, 0.5
        return hp  # llama / mistral / qwen: EasyEdit's llama-7b.yaml values (the class defaults)


def touched(handle, hp: BatchHParams) -> list[str]:
    return [handle.arch.mlp_out_proj(l) + ".weight" for l in hp.layers]


# ---- step 1: the target vectors -----------------------------------------------------------------

def _with_delta(output, rows: torch.Tensor, cols: torch.Tensor, delta: torch.Tensor):
    """``output`` (a tensor, or a tuple whose first item is the hidden states) with ``delta`` [len(rows), d]
    added at [rows, cols]."""
    hidden = output[0] if isinstance(output, tuple) else output
    new = hidden.clone()
    new[rows, cols] = new[rows, cols] + delta.to(new.dtype)
    return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new


@dataclass(frozen=True)
class _Rows:
    """One fact's rows: rewriting prompts (context + prompt + target[:-1]), the KL prompt
    ("{subject} is a"), and, with the negation term, context + negated prompt + target[:-1].
    Target tokens are appended as ids, so the positions that predict them are exact."""

    seqs: tuple  # token id lists
    lookup: tuple  # subject's last token per row
    n_rewrite: int
    n_negated: int
    n_prompt: tuple  # prompt length per row (before the appended target tokens)
    target: tuple  # target token ids


def _fact_rows(handle, fact: Fact, templates: list[str], negation: bool) -> _Rows:
    tok = handle.tokenizer
    tids = target_ids(tok, fact.target_new)
    rows = [locate(tok, t, fact.prompt, fact.subject) for t in templates]
    kl = locate(tok, "{}", f"{fact.subject} is a", fact.subject)
    neg = []
    if negation:
        neg_prompt, rule = negate(fact.prompt, fact.subject)
        if not rule.startswith("already-negated"):  # a negated fact has no negation to push down
            neg = [locate(tok, t, neg_prompt, fact.subject) for t in templates]
    seqs = [list(r.ids) + tids[:-1] for r in rows] + [list(kl.ids)] + [list(r.ids) + tids[:-1] for r in neg]
    located = rows + [kl] + neg
    return _Rows(seqs=tuple(map(tuple, seqs)), lookup=tuple(l.index for l in located), n_rewrite=len(rows),
                 n_negated=len(neg), n_prompt=tuple(len(l.ids) for l in located), target=tuple(tids))


def compute_zs(handle, facts: Sequence[Fact], templates: list[str], hp: BatchHParams, sites: Sequence[str],
               nll_factor: float = 1.0, adaptive_nll: bool = False, max_rows: int = 64,
               progress: Callable[[int, int, str], None] | None = None) -> tuple[list[list[torch.Tensor]], list[dict]]:
    """z_s = z0_s + δ_s for every fact and site s (MEMIT eq. 16; PMET's joint targets with two sites).

    For each fact, δ_s is added to the output of module ``s`` at the subject's last token of every
    prompt, and minimises
        nll_factor · mean_prompts NLL(o* | context + prompt)
        + kl_factor · KL(P(· | "{subject} is a") ‖ P₀)
        + v_weight_decay · Σ_s ‖δ_s‖ / ‖z0_s‖²
        + negation_weight · mean_prompts −log(1 − P(o* | context + negated prompt))
    with Adam, each ‖δ_s‖ clamped to clamp_norm_factor · ‖z0_s‖ (z0_s: the site's output for the
    bare prompt), stopping once the loss is below ``loss_stop``. ``adaptive_nll`` (PMET): once o*
    is the argmax at every target position the NLL weight drops to a tenth, and the optimisation
    stops when the KL term is below 0.01.

    Facts are optimised together (up to ``max_rows`` prompts per forward pass) but independently:
    each has its own δ, loss and stopping step, and Adam is element-wise, so the result is the
    one-fact-at-a-time optimisation of the reference, only faster.
    """
    negation = hp.negation_weight > 0
    rows = [_fact_rows(handle, f, templates, negation) for f in facts]
    per = max(len(r.seqs) for r in rows)
    size = max(1, max_rows // per)
    # Facts whose text after the subject is similarly long share a pass (less padding).
    order = sorted(range(len(facts)), key=lambda i: max(len(q) - l for q, l in zip(rows[i].seqs, rows[i].lookup)))
    zs, infos = [None] * len(facts), [None] * len(facts)
    for g in range(0, len(facts), size):
        if progress:
            progress(g, len(facts), f"target vectors for facts {g + 1}–{min(g + size, len(facts))} of {len(facts)}")
        part = order[g: g + size]
        z, info = _optimise_group(handle, [facts[i] for i in part], [rows[i] for i in part], hp, sites, nll_factor, adaptive_nll)
        for i, zi, ii in zip(part, z, info):
            zs[i], infos[i] = zi, ii
    return zs, infos


class _Passes:
    """Forward passes over the rows of the facts still optimising.

    δ only changes what comes at or after the subject token (it is added there, at the output of
    layer L). So each row's prefix before its subject token goes through the model once, into a
    key/value cache, and every optimisation step runs only the short remainder (subject token,
    rest of the prompt, target tokens). The first step is checked against a full pass; if they
    disagree (a model whose cache behaves differently) the full rows are used throughout.
    """

    def __init__(self, handle, rows: list[_Rows], sites, reads, use_cache: bool):
        self.handle, self.rows, self.sites, self.reads = handle, rows, list(sites), reads
        self.use_cache = use_cache
        self.cache_for: tuple | None = None

    def _layout(self, active, cached: bool):
        seqs, lookup, owner, first, offset = [], [], [], {}, []
        for f in active:
            first[f] = len(seqs)
            for seq, idx in zip(self.rows[f].seqs, self.rows[f].lookup):
                seqs.append(list(seq))
                lookup.append(idx)
                owner.append(f)
                offset.append(idx if cached else 0)  # the row's tokens before the subject are cached
        return seqs, lookup, owner, first, offset

    def _prefix(self, seqs, offset):
        """Left-padded prefixes through the model once: (cache, prefix mask)."""
        dev, pad = self.handle.device, self.handle.tokenizer.pad_token_id
        width = max(offset)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (seq, o) in enumerate(zip(seqs, offset)):
            if o:
                ids[r, width - o:] = torch.tensor(seq[:o])
                mask[r, width - o:] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(1) - 1).clamp_min(0)
        with torch.no_grad():
            out = self.handle.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        return out.past_key_values, mask

    def run(self, active, edit, cached: bool, grad: bool = True):
        """One pass over the active facts' rows; returns (traced outputs, layout).
        ``edit(output, name, layout)`` adds the δ's."""
        model, dev, pad = self.handle.model, self.handle.device, self.handle.tokenizer.pad_token_id
        seqs, lookup, owner, first, offset = self._layout(active, cached)
        kwargs = {}
        if cached:
            key = tuple(active)
            if self.cache_for is None or self.cache_for[0] != key:
                self.cache_for = (key, *self._prefix(seqs, offset))
            _, cache, pmask = self.cache_for
            chunks = [seq[o:] for seq, o in zip(seqs, offset)]
            ids, cmask = pad_batch(chunks, pad, dev)
            mask = torch.cat([pmask, cmask], dim=1)
            pos = torch.tensor(offset, device=dev)[:, None] + torch.arange(ids.shape[1], device=dev)[None, :]
            kwargs = dict(past_key_values=copy.deepcopy(cache), position_ids=pos, use_cache=True)
        else:
            ids, mask = pad_batch(seqs, pad, dev)
        layout = dict(rows=torch.arange(len(seqs), device=dev),
                      lookup=torch.tensor([l - o for l, o in zip(lookup, offset)], device=dev),
                      owner=torch.tensor(owner, device=dev), first=first, offset=offset)
        hook = lambda output, name: edit(output, name, layout)  # noqa: E731
        ctx = torch.enable_grad() if grad else torch.no_grad()
        with ctx, TraceDict(model, self.sites, retain_output=False, edit_output=hook), \
                TraceDict(model, self.reads, retain_output=True, detach=False, stop=True) as tr:
            model(input_ids=ids, attention_mask=mask, **kwargs)
        return {n: tr[n].output for n in self.reads}, layout


def _optimise_group(handle, facts, rows: list[_Rows], hp: BatchHParams, sites, nll_factor, adaptive_nll):
    arch, dev = handle.arch, handle.device
    n = len(facts)
    active = list(range(n))
    z0: dict[str, torch.Tensor] = {}  # site -> [n, d]
    deltas: dict[str, torch.Tensor] = {}
    frozen: dict[int, dict[str, torch.Tensor]] = {}
    kl_init: dict[int, torch.Tensor] = {}
    losses = [[] for _ in range(n)]
    probs = [0.0] * n
    factors = [nll_factor] * n
    unembed, final_norm = handle.module(arch.unembed), handle.module(arch.final_norm)
    loss_layer = None
    if hp.v_loss_layer is not None and int(hp.v_loss_layer) < arch.n_layers - 1:
        loss_layer = arch.layer(int(hp.v_loss_layer))  # the reference's early-exit loss layer
    reads = [arch.final_norm] + ([loss_layer] if loss_layer else [])
    # Caching needs a prefix in some row; rows whose subject starts the text have none (masked).
    passes = _Passes(handle, rows, sites, reads, use_cache=any(i > 0 for r in rows for i in r.lookup))

    def edit(output, name, layout):
        hidden = output[0] if isinstance(output, tuple) else output
        if name not in z0:  # first pass: every fact is active; z0 from its bare-prompt row
            at = torch.tensor([layout["first"][f] for f in range(n)], device=dev)
            z0[name] = hidden[at, layout["lookup"][at]].detach().float().clone()
            deltas[name] = torch.zeros_like(z0[name], requires_grad=True)
        return _with_delta(output, layout["rows"], layout["lookup"], deltas[name][layout["owner"]])

    def fact_losses(out, layout, factors_now):
        """Per active fact: (loss, nll per prompt, KL, log-probs at the rewriting targets)."""
        h_final = out[arch.final_norm]
        h = h_final if loss_layer is None else final_norm(out[loss_layer])
        result = {}
        for f in active:
            r, base = rows[f], layout["first"][f]
            t = torch.tensor(r.target, device=dev)
            nt = len(r.target)

            def target_lp(row0, count, hidden=h):
                rr = [base + row0 + j for j in range(count) for _ in range(nt)]
                pp = [r.n_prompt[row0 + j] - 1 + i - layout["offset"][base + row0 + j] for j in range(count) for i in range(nt)]
                lp = torch.log_softmax(unembed(hidden[torch.tensor(rr, device=dev), torch.tensor(pp, device=dev)]).float(), dim=-1)
                return lp, lp.gather(1, t.repeat(count)[:, None]).squeeze(1).reshape(count, nt)

            lp_rw, tok_lp = target_lp(0, r.n_rewrite)
            nll_each = -tok_lp.mean(1)
            kl_row = base + r.n_rewrite
            kl_pos = r.lookup[r.n_rewrite] - layout["offset"][kl_row]
            kl_lp = torch.log_softmax(unembed(h_final[kl_row, kl_pos]).float(), dim=-1)
            if f not in kl_init:
                kl_init[f] = kl_lp.detach().clone()
            # KL(P ‖ P₀), as the reference's kl_div(P₀_log, P_log, log_target=True)
            kl = torch.nn.functional.kl_div(kl_init[f], kl_lp, log_target=True, reduction="sum")
            wd = sum(deltas[s][f].norm() / z0[s][f].norm() ** 2 for s in sites)
            loss = factors_now[f] * nll_each.mean() + hp.kl_factor * kl + hp.v_weight_decay * wd
            if r.n_negated:
                _, neg_lp = target_lp(r.n_rewrite + 1, r.n_negated)
                p_neg = neg_lp.mean(1).exp()
                loss = loss + hp.negation_weight * (-torch.log1p(-p_neg.clamp(max=1 - 1e-6))).mean()
            result[f] = (loss, nll_each, kl, lp_rw, t)
        return result

    cached = passes.use_cache
    opt = None
    for step in range(hp.v_num_grad_steps):
        if opt is not None:
            opt.zero_grad()
        out, layout = passes.run(active, edit, cached)
        if opt is None:
            opt = torch.optim.Adam([deltas[s] for s in sites], lr=hp.v_lr)
        with torch.enable_grad():
            res = fact_losses(out, layout, factors)
        if step == 0 and cached:
            # The cached pass must reproduce the full one (δ = 0 here); otherwise use full rows.
            full_out, full_layout = passes.run(active, edit, cached=False, grad=False)
            with torch.no_grad():  # kl_init is already set for every active fact: this pass reads it
                ref = fact_losses(full_out, full_layout, factors)
            gap = max(abs(res[f][0].item() - ref[f][0].item()) / max(1.0, abs(ref[f][0].item())) for f in active)
            if not gap < 1e-3:
                cached = False
                out, layout = passes.run(active, edit, cached)
                kl_init.clear()
                with torch.enable_grad():
                    res = fact_losses(out, layout, factors)
        total = 0.0
        stop_now = []
        for f in list(active):
            loss, nll_each, kl, lp_rw, t = res[f]
            if not torch.isfinite(loss):
                raise EditError(f"{facts[f].subject!r}: the target optimisation diverged at step {step} (loss {loss.item()})")
            losses[f].append(round(loss.item(), 4))
            probs[f] = float(torch.exp(-nll_each.detach()).mean())
            done = loss.item() < hp.loss_stop
            if adaptive_nll and not done:
                argmax = bool((lp_rw.argmax(-1) == t.repeat(rows[f].n_rewrite)).all())
                factors[f] = 0.1 * nll_factor if argmax else nll_factor
                done = argmax and kl.item() < 0.01
            if done or step == hp.v_num_grad_steps - 1:
                stop_now.append(f)
            else:
                total = total + loss
        for f in stop_now:  # this fact's δ is final: keep it, drop its rows from later passes
            frozen[f] = {s: deltas[s][f].detach().clone() for s in sites}
            active.remove(f)
        if not active:
            break
        total.backward()
        opt.step()
        with torch.no_grad():
            for s in sites:
                max_norm = hp.clamp_norm_factor * z0[s].norm(dim=1, keepdim=True)
                norm = deltas[s].norm(dim=1, keepdim=True)
                deltas[s].mul_(torch.where(norm > max_norm, max_norm / norm.clamp_min(1e-12), torch.ones_like(norm)))
    zs, infos = [], []
    for f, fact in enumerate(facts):
        zs.append([z0[s][f] + frozen[f][s] for s in sites])
        infos.append({"subject": fact.subject, "z_steps": len(losses[f]), "z_losses": losses[f][-3:],
                      "z_prob": round(probs[f], 4),
                      "delta_norms": [round(float(frozen[f][s].norm()), 4) for s in sites],
                      "z0_norms": [round(float(z0[s][f].norm()), 4) for s in sites],
                      "prefix_cache": cached})
    return zs, infos


def compute_z(handle, fact: Fact, templates: list[str], hp: BatchHParams, sites: Sequence[str],
              nll_factor: float = 1.0, adaptive_nll: bool = False) -> tuple[list[torch.Tensor], dict]:
    """One fact's targets (see :func:`compute_zs`)."""
    zs, infos = compute_zs(handle, [fact], templates, hp, sites, nll_factor, adaptive_nll)
    return zs[0], infos[0]


# ---- step 2: keys and the update ----------------------------------------------------------------

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
        part = located[i: i + CHUNK]
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
    corpus, note = resolve_stats_corpus(handle, hp.mom2_dataset, ctx.corpus, hp.layers, hp.mom2_n_tokens,
                                        hp.mom2_dtype, online=ctx.online, progress=ctx.progress)
    ctx.info["stats_source"] = corpus.label
    if note:
        ctx.info["stats_note"] = note
    return second_moments(handle, hp.layers, corpus, hp.mom2_n_tokens, dtype=hp.mom2_dtype, progress=ctx.progress)


def add_to_weight(handle, layer: int, upd: torch.Tensor) -> None:
    """W_l += ΔW ([out, in]; transposed for Conv1D weights)."""
    w = handle.weight(handle.arch.mlp_out_proj(layer))
    with torch.no_grad():
        w.copy_((w.float() + (upd.T if handle.arch.conv1d else upd).to(w.device, torch.float32)).to(w.dtype))


Solver = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]


def spread(handle, facts: Sequence[Fact], hp: BatchHParams, ctx: MethodContext, templates: list[str],
           z_module: str, zs: torch.Tensor, solve: Solver, divisor: Callable[[int], float], name: str) -> list[dict]:
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
        out.append({"layer": layer, "residual_norm": round(float(resid.norm(dim=1).mean()), 4),
                    "update_norm": round(float(upd.norm()), 4)})
    return out


def memit_solver(handle, cov: dict[int, torch.Tensor] | None, lam: float) -> Solver:
    def solve(i, layer, k, resid):
        # ΔW = R Kᵀ (λC + KKᵀ)⁻¹, with K as columns; A is symmetric so ΔWᵀ = A⁻¹ K Rᵀ.
        d_in = k.shape[1]
        c = cov[layer].to(k.device, torch.float64) if cov is not None else torch.eye(d_in, dtype=torch.float64, device=k.device)
        a = lam * c + k.T @ k
        return (torch.linalg.solve(a, k.T) @ resid).T.float()
    return solve


def written_fraction(handle, facts, z_module: str, zs: torch.Tensor, z_before: torch.Tensor) -> list[float]:
    """How much of each target was written: 1 − ‖z − h_now‖ / ‖z − h_before‖ at the last layer."""
    plain = [locate(handle.tokenizer, "{}", f.prompt, f.subject) for f in facts]
    now = read_at(handle, z_module, plain, "output")
    gap0 = (zs - z_before).norm(dim=1).clamp_min(1e-12)
    return [round(float(x), 4) for x in (1 - (zs - now).norm(dim=1) / gap0)]


def targets(handle, facts, hp: BatchHParams, ctx: MethodContext, templates, sites, name: str,
            **kw) -> tuple[list[list[torch.Tensor]], list[dict]]:
    progress = (lambda d, t, stage: ctx.report(d, t, f"{name}: {stage}")) if ctx.progress else None
    return compute_zs(handle, facts, templates, hp, sites, progress=progress, **kw)


def shortfall_note(name: str, infos: list[dict]) -> str | None:
    """A sentence for the user when some targets were not reached or not written (honest reporting)."""
    weak = [i for i in infos if i.get("written", 1.0) < 0.5 or i["z_prob"] < 0.5]
    if not weak:
        return None
    items = ", ".join(f"{i['subject']!r} (target P {i['z_prob']:.2f}, written {i.get('written', 1.0):.0%})" for i in weak[:5])
    more = f" and {len(weak) - 5} more" if len(weak) > 5 else ""
    return (f"{name}: for {len(weak)} of {len(infos)} fact(s) the optimised target was weak or only partly written "
            f"into the weights: {items}{more}; check the probes")


def apply(handle, facts: list[Fact], hp: HParams, ctx: MethodContext) -> dict:
    cov, templates, timings = stats_and_templates(handle, hp, ctx, lambda: covariances(handle, hp, ctx))
    z_module = handle.arch.layer(hp.layers[-1])  # the residual stream after the last edit layer
    t0 = time.perf_counter()
    z_lists, infos = targets(handle, facts, hp, ctx, templates, [z_module], "MEMIT")
    zs = torch.stack([z[0] for z in z_lists])
    timings["targets_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = [locate(handle.tokenizer, "{}", f.prompt, f.subject) for f in facts]
    before = read_at(handle, z_module, plain, "output")
    layers = spread(handle, facts, hp, ctx, templates, z_module, zs, memit_solver(handle, cov, hp.mom2_update_weight),
                    lambda i: len(hp.layers) - i, "MEMIT")
    for info, w in zip(infos, written_fraction(handle, facts, z_module, zs, before)):
        info["written"] = w
    timings["update_s"] = time.perf_counter() - t0
    ctx.report(len(facts), len(facts), "MEMIT: done")
    note = shortfall_note("MEMIT", infos)
    if note:
        ctx.info["note"] = note
    return {"timings": timings, "facts": infos, "layers": hp.layers, "layer_updates": layers, "templates": len(templates),
            "targets": zs.cpu(), "z_module": z_module}
