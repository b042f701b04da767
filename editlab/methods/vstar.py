"""v*: the one target-vector optimiser of ROME, MEMIT, AlphaEdit and PMET.

For each fact (s, r, o*) and each *site* s (a module whose output at the subject's last token gets
δ_s added: ROME's MLP output projection, MEMIT's residual after the last edit layer, PMET's
attention and MLP outputs), find δ minimising (ROME eq. 4, MEMIT eq. 16)

    L(δ) = nll_factor · mean_p [ −(1/|o*|) Σ_i log P(o*_i | c_p ⊕ prompt ⊕ o*_<i ; δ) ]
           + kl_factor · KL( P(· | "s is a"; δ) ‖ P(· | "s is a"; 0) )
           + v_weight_decay · Σ_s ‖δ_s‖ / ‖v0_s‖²
           + negation_weight · N(δ)

over the context templates c_p, with Adam (``v_lr``); after every step each ‖δ_s‖ is projected
back into the ball of radius ``clamp_norm_factor`` · ‖v0_s‖ (v0_s: the site's output for the bare
prompt). A fact stops as soon as its *total* loss is below ``loss_stop`` (the reference's rule,
``if loss < 5e-2: break``), or after ``v_num_grad_steps`` evaluations. The KL direction is the
reference's: ``kl_div(log P₀, log P, log_target=True)`` = KL(P ‖ P₀). The last term is editlab's
negation-aware objective (``negation_weight`` 0 = the published method), over the negated prompt p⁻
("... is not"), in one of two forms (``negation_objective``):

    "push-down":  N = mean_p [ −log(1 − P(o* | c_p ⊕ p⁻; δ)) ]          (lower o* after "not")
    "contrast":   N = mean_p [ softplus(m + log P(o* | c_p ⊕ p⁻; δ) − log P(o_c | c_p ⊕ p⁻; δ)) ]
    "two-sided":  N = contrast + mean_p [ softplus(m + log P(o_c | c_p ⊕ p; δ) − log P(o* | c_p ⊕ p; δ)) ]

where log P is the per-token mean log-probability, p⁻ runs over the negated prompt in every form
``negation_forms`` names ("not" by default; e.g. "not,never" also optimises "... is never ..."; the
training-only "false_that" is :data:`TRAINING_FORMS`; a form the prompt has no grammatical negation
in adds no rows), and o_c is the fact's true target: in the edited
world "s is not o_c" holds, so o_c should beat o* after "not" by a margin m (``negation_margin``,
nats); two-sided also asks o* to beat o_c by m after the prompt itself (p), so that raising o_c
after "not" does not raise it everywhere. A fact without a true target gets the push-down form.

Two ways to compute the same loss (``fast``):
- fast (default): each prompt's prefix before the subject token (which δ cannot change) goes
  through the model once into a key/value cache; every step runs only the rest of the prompt,
  from the first layer holding a site (the layers below it see no δ: their output is computed
  once; Llama-like families), and unembeds only the positions that are scored, all facts' in one
  call. Checked against a full pass at step 0.
- reference (``fast=False``): every step runs every prompt in full and takes the model's logits at
  every position, as the reference code does.
Both give the same δ up to float rounding (``benchmarks/live.py`` measures the agreement).

Many facts are optimised together (up to ``max_rows`` prompts per forward pass) but independently:
each has its own δ, loss and stopping step, and Adam is element-wise, so the result is the
one-fact-at-a-time optimisation of the reference, only faster.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from editlab.core.bounded import short
from editlab.facts.fact import Fact
from editlab.facts.negation import FORMS
from editlab.methods.base import EditError, MethodContext
from editlab.methods.keys import locate, pad_batch
from editlab.model.handle import cache_kwargs, output_cache
from editlab.model.nethook import Trace, TraceDict
from editlab.model.tokens import target_ids

Progress = Callable[[int, int, str], None]


def with_delta(output, rows: torch.Tensor, cols: torch.Tensor, delta: torch.Tensor):
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
    n_contrast: int = 0  # rows context + negated prompt + true target[:-1] (the contrast form)
    true_target: tuple = ()  # true target token ids (the contrast form)
    n_positive_true: int = 0  # rows context + prompt + true target[:-1] (the two-sided form)


NEGATION_OBJECTIVES = ("push-down", "contrast", "two-sided")


def check_hparams(hp, extra_objectives: tuple[str, ...] = ()) -> None:
    """The checks every method using this optimiser makes of its v* hyperparameters
    (``extra_objectives``: negation objectives the method implements itself, e.g. ROME's ``predicate``)."""
    if hp.v_num_grad_steps < 1:
        raise ValueError("v_num_grad_steps must be at least 1")
    known = NEGATION_OBJECTIVES + tuple(extra_objectives)
    if hp.negation_objective not in known:
        hint = "" if hp.negation_objective != "predicate" else " (the predicate write is ROME's and MEMIT's only)"
        raise ValueError(f"negation_objective {short(hp.negation_objective)} is not one of {', '.join(known)}{hint}")
    if hp.negation_weight < 0:
        raise ValueError("negation_weight must be >= 0 (0 = the published objective)")
    negation_forms(hp)


# Forms only the optimisation uses (no probe measures them): "It is false that <clause>", whose
# positive twin "It is true that <clause>" joins the rewriting prompts (o* must win there).
TRAINING_FORMS = ("false_that",)


def negation_forms(hp) -> tuple[str, ...]:
    """The negation forms the v* term optimises (``hp.negation_forms``, comma-separated names from
    :data:`editlab.facts.negation.FORMS` and :data:`TRAINING_FORMS`; "not" when the method has no
    such field)."""
    raw = getattr(hp, "negation_forms", "not")
    forms = tuple(f.strip() for f in str(raw).split(",") if f.strip())
    known = FORMS + TRAINING_FORMS
    unknown = [f for f in forms if f not in known]
    if not forms or unknown:
        raise ValueError(
            f"negation_forms {short(raw)}: give one or more of {', '.join(known)}, comma-separated"
            + (f" ({', '.join(map(short, unknown))} is not one)" if unknown else "")
        )
    if len(set(forms)) != len(forms):
        raise ValueError(f"negation_forms {short(raw)} names a form twice")
    return forms


def _fact_rows(
    handle,
    fact: Fact,
    templates: list[str],
    negation: bool,
    contrast: bool = False,
    two_sided: bool = False,
    forms: Sequence[str] = ("not",),
) -> _Rows:
    tok = handle.tokenizer
    tids = target_ids(tok, fact.target_new)
    prompts = [fact.prompt]
    neg = []
    for form in forms if negation else ():  # every form's negated prompt after every template
        neg_prompt, rule = _negated(fact, form)
        if neg_prompt is not None and not rule.startswith("already-negated"):
            neg += [locate(tok, t, neg_prompt, fact.subject) for t in templates]
            if form == "false_that":
                prompts.append(neg_prompt.replace(_FALSE_THAT, _TRUE_THAT, 1))
    rows = [locate(tok, t, p, fact.subject) for p in prompts for t in templates]
    kl = locate(tok, "{}", f"{fact.subject} is a", fact.subject)
    true_ids = target_ids(tok, fact.target_true) if contrast and neg and fact.target_true else []
    both = neg if true_ids else []
    positive = rows if true_ids and two_sided else []
    seqs = (
        [list(r.ids) + tids[:-1] for r in rows]
        + [list(kl.ids)]
        + [list(r.ids) + tids[:-1] for r in neg]
        + [list(r.ids) + true_ids[:-1] for r in both + positive]
    )
    located = rows + [kl] + neg + both + positive
    return _Rows(
        seqs=tuple(map(tuple, seqs)),
        lookup=tuple(l.index for l in located),
        n_rewrite=len(rows),
        n_negated=len(neg),
        n_prompt=tuple(len(l.ids) for l in located),
        target=tuple(tids),
        n_contrast=len(both),
        true_target=tuple(true_ids),
        n_positive_true=len(positive),
    )


_NOT_TRUE, _FALSE_THAT, _TRUE_THAT = "It is not true that ", "It is false that ", "It is true that "


def _negated(fact: Fact, form: str) -> tuple[str | None, str]:
    """``fact.negated(form)``, and the training form "false_that": the ``not_true`` form with "It is
    false that " in place of "It is not true that "."""
    if form != "false_that":
        return fact.negated(form)
    neg, rule = fact.negated("not_true")
    if neg is None or _NOT_TRUE not in neg:
        return None, rule if neg is None else "unnegatable: no 'It is not true that' form to rephrase"
    return neg.replace(_NOT_TRUE, _FALSE_THAT, 1), rule


def _loss_rows(handle, facts: Sequence[Fact], templates: list[str], hp) -> list[_Rows]:
    """Every fact's rows for the terms of L(δ): the negation rows only with ``negation_weight`` > 0,
    in the form ``negation_objective`` names."""
    negation = hp.negation_weight > 0
    objective, forms = hp.negation_objective, negation_forms(hp)
    if negation and objective not in NEGATION_OBJECTIVES:  # "predicate" is no term of this loss (.predicate writes it)
        raise ValueError(f"negation_objective {short(objective)} is not one of {', '.join(NEGATION_OBJECTIVES)}")
    return [
        _fact_rows(
            handle,
            f,
            templates,
            negation,
            contrast=objective in ("contrast", "two-sided"),
            two_sided=objective == "two-sided",
            forms=forms,
        )
        for f in facts
    ]


def _groups(rows: list[_Rows], max_rows: int) -> tuple[int, list[int]]:
    """The facts optimised together: (facts per group, the facts' order), at most ``max_rows`` prompts
    per forward pass."""
    n = len(rows)
    per = max(len(r.seqs) for r in rows)
    size = max(1, max_rows // per)
    size = -(-n // -(-n // size))  # as many groups as needed, of even size (10 facts: 5 + 5, not 9 + 1)
    # Facts whose text after the subject is similarly long share a pass (less padding).
    order = sorted(range(n), key=lambda i: max(len(q) - l for q, l in zip(rows[i].seqs, rows[i].lookup)))
    return size, order


def compute_zs(
    handle,
    facts: Sequence[Fact],
    templates: list[str],
    hp,
    sites: Sequence[str],
    nll_factor: float = 1.0,
    adaptive_nll: bool = False,
    max_rows: int = 64,
    progress: Progress | None = None,
    fast: bool | None = None,
) -> tuple[list[list[torch.Tensor]], list[dict]]:
    """z_s = v0_s + δ_s for every fact and site s (see the module docstring for the loss).

    ``hp`` carries v_num_grad_steps, v_lr, v_weight_decay, clamp_norm_factor, kl_factor, loss_stop,
    negation_weight and v_loss_layer (ROME's and the batch methods' HParams both do). ``fast``
    (default ``hp.fast_v``, else True) picks the prefix-cached computation. ``adaptive_nll`` (PMET):
    once o* is the argmax at every target position the NLL weight drops to a tenth, and the
    optimisation stops when the KL term is below 0.01.
    """
    fast = hp.fast_v if fast is None else fast
    rows = _loss_rows(handle, facts, templates, hp)
    size, order = _groups(rows, max_rows)
    zs, infos = [None] * len(facts), [None] * len(facts)
    for g in range(0, len(facts), size):
        part = order[g : g + size]
        label = (
            f"target vectors for facts {g + 1}–{min(g + size, len(facts))} of {len(facts)}"
            if len(facts) > 1
            else "target vector"
        )

        def step_progress(step, total, loss, _g=g, _label=label):
            if progress:
                progress(_g, len(facts), f"{_label}: step {step + 1} of at most {total}, loss {loss:.3f}")

        z, info = _Group(
            handle, [facts[i] for i in part], [rows[i] for i in part], hp, sites, nll_factor, adaptive_nll, fast
        ).optimise(step_progress)
        for i, zi, ii in zip(part, z, info):
            zs[i], infos[i] = zi, ii
    return zs, infos


def _negation_term(new_lp: torch.Tensor, true_lp: torch.Tensor | None, margin: float) -> torch.Tensor:
    """N(δ) of the module docstring from the per-token log-probabilities after the negated prompts
    ([prompts, tokens] of o*, and of o_c for the contrast form; None: the push-down form)."""
    if true_lp is None:
        p_new = new_lp.mean(1).exp()
        return (-torch.log1p(-p_new.clamp(max=1 - 1e-6))).mean()
    return torch.nn.functional.softplus(margin + new_lp.mean(1) - true_lp.mean(1)).mean()


def compute_z(
    handle,
    fact: Fact,
    templates: list[str],
    hp,
    sites: Sequence[str],
    nll_factor: float = 1.0,
    adaptive_nll: bool = False,
    fast: bool | None = None,
) -> tuple[list[torch.Tensor], dict]:
    """One fact's targets (see :func:`compute_zs`)."""
    zs, infos = compute_zs(handle, [fact], templates, hp, sites, nll_factor, adaptive_nll, fast=fast)
    return zs[0], infos[0]


def targets(
    handle, facts, hp, ctx: MethodContext, templates, sites, name: str, **kw
) -> tuple[list[list[torch.Tensor]], list[dict]]:
    """:func:`compute_zs` with progress reported through the method context as ``"{name}: ..."``."""
    progress = (lambda d, t, stage: ctx.report(d, t, f"{name}: {stage}")) if ctx.progress else None
    return compute_zs(handle, facts, templates, hp, sites, progress=progress, **kw)


class _Passes:
    """Forward passes over the rows of the facts still optimising.

    δ only changes what comes at or after the subject token (it is added there). So with
    ``use_cache`` each row's prefix before its subject token goes through the model once, into a
    key/value cache, and every step runs only the short remainder (subject token, rest of the
    prompt, target tokens).
    """

    def __init__(self, handle, rows: list[_Rows], sites, reads, use_cache: bool):
        self.handle, self.rows, self.sites, self.reads = handle, rows, list(sites), reads
        self.use_cache = use_cache
        self.cache_for: tuple | None = None
        self.start = _first_site_layer(handle, self.sites) if use_cache and _can_start_late(handle) else 0
        self.entry: torch.Tensor | None = None  # the residual entering layer ``start``, every row, δ-free

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
                ids[r, width - o :] = torch.tensor(seq[:o])
                mask[r, width - o :] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        pos = (mask.cumsum(1) - 1).clamp_min(0)
        with torch.no_grad():
            out = self.handle.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        return output_cache(out), mask

    def _cached_inputs(self, active, seqs, offset, first):
        """The rows' remainders after their cached prefixes: (ids, mask, forward kwargs, the rows'
        cache, the rows picked from the cache of every fact; None: every row)."""
        model, dev, pad = self.handle.model, self.handle.device, self.handle.tokenizer.pad_token_id
        if self.cache_for is None or not hasattr(self.cache_for[1], "batch_select_indices"):
            # Every fact's prefixes, once; facts that stop leave their rows out. (A cache that
            # cannot drop rows is rebuilt for the facts still active.)
            self.cache_for = (first, *self._prefix(seqs, offset))
        first_all, cache_all, pmask_all = self.cache_for
        cache = copy.deepcopy(cache_all)
        pick = [first_all[f] + j for f in active for j in range(len(self.rows[f].seqs))]
        idx = None if pick == list(range(pmask_all.shape[0])) else torch.tensor(pick, device=dev)  # None: every row
        if idx is not None:
            cache.batch_select_indices(idx)
        pmask = pmask_all if idx is None else pmask_all[idx]
        chunks = [seq[o:] for seq, o in zip(seqs, offset)]
        ids, cmask = pad_batch(chunks, pad, dev)
        mask = torch.cat([pmask, cmask], dim=1)
        pos = torch.tensor(offset, device=dev)[:, None] + torch.arange(ids.shape[1], device=dev)[None, :]
        kwargs = dict(cache_kwargs(model, cache), position_ids=pos, use_cache=True)
        return ids, mask, kwargs, cache, idx

    def _entry_once(self, ids, mask, kwargs, cache) -> bool:
        """The δ-free residual entering layer ``start`` (every row), computed once; False when that
        layer takes its input by keyword (then every later pass runs every layer)."""
        model = self.handle.model
        with (
            torch.no_grad(),
            Trace(model, self.handle.arch.layer(self.start), retain_input=True, stop=True) as t,
        ):
            model(input_ids=ids, attention_mask=mask, **dict(kwargs, **cache_kwargs(model, copy.deepcopy(cache))))
        if t.input is None:  # the layer takes its input by keyword: run every layer
            self.start = 0
            return False
        self.entry = t.input.detach()
        return True

    def run(self, active, edit, cached: bool, grad: bool = True):
        """One pass over the active facts' rows; returns (traced outputs, layout).
        ``edit(output, name, layout)`` adds the δ's."""
        model, dev, pad = self.handle.model, self.handle.device, self.handle.tokenizer.pad_token_id
        seqs, lookup, owner, first, offset = self._layout(active, cached)
        kwargs = {}
        if cached:
            ids, mask, kwargs, cache, idx = self._cached_inputs(active, seqs, offset, first)
        else:
            ids, mask = pad_batch(seqs, pad, dev)
        layout = dict(
            rows=torch.arange(len(seqs), device=dev),
            lookup=torch.tensor([l - o for l, o in zip(lookup, offset)], device=dev),
            owner=torch.tensor(owner, device=dev),
            first=first,
            offset=offset,
        )
        hook = lambda output, name: edit(output, name, layout)  # noqa: E731
        ctx = torch.enable_grad() if grad else torch.no_grad()
        late = cached and self.start > 0
        if late and self.entry is None:
            # Layers below the first site see no δ: their output for these tokens is the same at
            # every step. It is computed once (all rows), and each step starts at layer ``start``.
            late = self._entry_once(ids, mask, kwargs, cache)
        if late:
            entry = self.entry if idx is None else self.entry[idx]
            kwargs["inputs_embeds"] = entry[:, : ids.shape[1]]
        with (
            ctx,
            TraceDict(model, self.sites, retain_output=False, edit_output=hook),
            TraceDict(model, self.reads, retain_output=True, detach=False, stop=True) as tr,
            _layers_from(self.handle, self.start) if late else contextlib.nullcontext(),
        ):
            model(input_ids=None if late else ids, attention_mask=mask, **kwargs)
        return {n: tr[n].output for n in self.reads}, layout


def _first_site_layer(handle, sites) -> int:
    """The lowest layer holding a site (a module δ is added to)."""
    found = [
        i
        for i in range(handle.arch.n_layers)
        for s in sites
        if s == handle.arch.layer(i) or s.startswith(handle.arch.layer(i) + ".")
    ]
    return min(found) if found else 0


def _can_start_late(handle) -> bool:
    """Whether a forward pass can start at a later layer given that layer's input as ``inputs_embeds``:
    families whose model neither scales nor adds to the embeddings (no learned positions) and whose
    layers are all of one kind. Checked against a full pass at the first step in any case."""
    config = handle.model.config
    kinds = set(getattr(config, "layer_types", None) or ["one"])
    return (
        handle.arch.family in ("llama", "mistral", "qwen2", "qwen3")
        and len(kinds) == 1
        and handle.arch.layer_tmpl.endswith(".{}")
    )


@contextlib.contextmanager
def _layers_from(handle, start: int):
    """The model with its layer list cut to layers ``start``.. for one pass (the layers keep their
    own index into the key/value cache); restored afterwards whatever happens."""
    path, _, attr = handle.arch.layer_tmpl[: -len(".{}")].rpartition(".")
    parent = handle.module(path) if path else handle.model
    layers = getattr(parent, attr)
    setattr(parent, attr, torch.nn.ModuleList(list(layers)[start:]))
    try:
        yield
    finally:
        setattr(parent, attr, layers)


class _Group:
    """One group of facts optimised together, each with its own δ_s, loss and stopping step.

    The steps, in the module docstring's terms: :meth:`edit` adds δ_s at the subject's last token;
    :meth:`losses` computes L(δ) per fact — :meth:`_plan` lists the scored positions, :meth:`_loss`
    adds the NLL, KL, weight-decay and negation terms; :meth:`_checked_losses` checks the
    prefix-cached pass against a full one at step 0; :meth:`_settle` applies the stopping rule;
    :meth:`_project` puts each δ_s back into its ball after an Adam step; :meth:`results` gives
    z_s = v0_s + δ_s.
    """

    def __init__(self, handle, facts, rows: list[_Rows], hp, sites, nll_factor, adaptive_nll, fast: bool):
        arch = handle.arch
        self.handle, self.facts, self.rows, self.hp, self.sites = handle, facts, rows, hp, list(sites)
        self.nll_factor, self.adaptive_nll, self.fast = nll_factor, adaptive_nll, fast
        self.dev = handle.device
        n = len(facts)
        self.active = list(range(n))
        self.z0: dict[str, torch.Tensor] = {}  # site -> [n, d]
        self.deltas: dict[str, torch.Tensor] = {}
        self.frozen: dict[int, dict[str, torch.Tensor]] = {}
        self.kl_init: dict[int, torch.Tensor] = {}
        self.losses = [[] for _ in range(n)]
        self.probs = [0.0] * n
        self.factors = [nll_factor] * n
        self.unembed, self.final_norm = handle.module(arch.unembed), handle.module(arch.final_norm)
        self.loss_layer = None
        if hp.v_loss_layer is not None and int(hp.v_loss_layer) < arch.n_layers - 1:
            self.loss_layer = arch.layer(int(hp.v_loss_layer))  # the reference's early-exit loss layer
        # Fast: read the final norm's output and unembed only the scored positions. Reference: the
        # model's logits at every position, as the reference code computes them.
        reads = ([arch.final_norm] if fast else [arch.unembed]) + ([self.loss_layer] if self.loss_layer else [])
        # Caching needs a prefix in some row; rows whose subject starts the text have none (masked).
        self.passes = _Passes(handle, rows, sites, reads, use_cache=fast and any(i > 0 for r in rows for i in r.lookup))
        self.cached = self.passes.use_cache

    def edit(self, output, name, layout):
        """The site's output with each row's δ_s added at the subject's last token."""
        hidden = output[0] if isinstance(output, tuple) else output
        if name not in self.z0:  # first pass: every fact is active; z0 from its bare-prompt row
            at = torch.tensor([layout["first"][f] for f in range(len(self.facts))], device=self.dev)
            self.z0[name] = hidden[at, layout["lookup"][at]].detach().float().clone()
            self.deltas[name] = torch.zeros_like(self.z0[name], requires_grad=True)
        return with_delta(output, layout["rows"], layout["lookup"], self.deltas[name][layout["owner"]])

    def _logprobs_at(self, out, r_idx, p_idx, early: bool):
        """log P(· | row, position) for the given rows and positions."""
        if early:  # the reference's v_loss_layer: that layer's residual through the final norm
            return torch.log_softmax(self.unembed(self.final_norm(out[self.loss_layer][r_idx, p_idx])).float(), dim=-1)
        if self.fast:
            return torch.log_softmax(self.unembed(out[self.handle.arch.final_norm][r_idx, p_idx]).float(), dim=-1)
        return torch.log_softmax(out[self.handle.arch.unembed].float(), dim=-1)[r_idx, p_idx]

    def _plan(self, layout):
        """The scored positions of every active fact (rewriting, negated, contrast and two-sided rows,
        one per target token) and its KL position: (scored, kl_at, plan per fact)."""
        scored, kl_at, plan = [], [], {}
        for f in self.active:
            r, base = self.rows[f], layout["first"][f]
            nt = len(r.target)

            def span(row0, count, nt=nt, r=r, base=base):
                begin = len(scored)
                scored.extend(
                    (base + row0 + j, r.n_prompt[row0 + j] - 1 + i - layout["offset"][base + row0 + j])
                    for j in range(count)
                    for i in range(nt)
                )
                return begin, count

            rewrite = span(0, r.n_rewrite)
            negated = span(r.n_rewrite + 1, r.n_negated) if r.n_negated else None
            contrast = span(r.n_rewrite + 1 + r.n_negated, r.n_contrast, len(r.true_target)) if r.n_contrast else None
            pos_true = (
                span(r.n_rewrite + 1 + r.n_negated + r.n_contrast, r.n_positive_true, len(r.true_target))
                if r.n_positive_true
                else None
            )
            kl_row = base + r.n_rewrite
            kl_at.append((kl_row, r.lookup[r.n_rewrite] - layout["offset"][kl_row]))
            plan[f] = (rewrite, len(kl_at) - 1, negated, contrast, pos_true)
        return scored, kl_at, plan

    def losses_of(self, out, layout):
        """Per active fact: (loss, nll per prompt, KL, log-probs at the rewriting targets, target ids).
        Every scored position of every active fact is unembedded in one call."""
        scored, kl_at, plan = self._plan(layout)

        def at(pairs):
            return (
                torch.tensor([a for a, _ in pairs], device=self.dev, dtype=torch.long),
                torch.tensor([b for _, b in pairs], device=self.dev, dtype=torch.long),
            )

        if self.loss_layer is not None:  # targets at the early-exit layer, KL at the output
            lp_t, lp_k = self._logprobs_at(out, *at(scored), True), self._logprobs_at(out, *at(kl_at), False)
        else:
            both = self._logprobs_at(out, *at(scored + kl_at), False)
            lp_t, lp_k = both[: len(scored)], both[len(scored) :]
        return {f: self._loss(f, plan[f], lp_t, lp_k) for f in self.active}

    def _loss(self, f, plan, lp_t, lp_k):
        """L(δ) of one fact: NLL of o* over the templates, KL at "s is a", weight decay, negation term."""
        hp, r = self.hp, self.rows[f]
        (begin, count), ki, negated, contrast, pos_true = plan
        t = torch.tensor(r.target, device=self.dev)

        def target_lp(begin, count, t=t):
            nt = len(t)
            lp = lp_t[begin : begin + count * nt]
            return lp, lp.gather(1, t.repeat(count)[:, None]).squeeze(1).reshape(count, nt)

        lp_rw, tok_lp = target_lp(begin, count)
        nll_each = -tok_lp.mean(1)
        kl_lp = lp_k[ki]
        if f not in self.kl_init:
            self.kl_init[f] = kl_lp.detach().clone()
        # KL(P ‖ P₀), as the reference's kl_div(P₀_log, P_log, log_target=True)
        kl = torch.nn.functional.kl_div(self.kl_init[f], kl_lp, log_target=True, reduction="sum")
        wd = sum(self.deltas[s][f].norm() / self.z0[s][f].norm() ** 2 for s in self.sites)
        loss = self.factors[f] * nll_each.mean() + hp.kl_factor * kl + hp.v_weight_decay * wd
        if negated:
            _, neg_lp = target_lp(*negated)
            true_ids = torch.tensor(r.true_target, device=self.dev)
            true_lp = target_lp(*contrast, t=true_ids)[1] if contrast else None
            margin = hp.negation_margin
            term = _negation_term(neg_lp, true_lp, margin)
            if pos_true:  # two-sided: after the prompt itself, o* beats o_c by the margin
                term = term + _negation_term(target_lp(*pos_true, t=true_ids)[1], tok_lp, margin)
            loss = loss + hp.negation_weight * term
        return loss, nll_each, kl, lp_rw, t

    def _checked_losses(self, step: int):
        """One pass and the losses; at step 0 the cached pass must reproduce the full one (δ = 0
        here), else every later step runs full rows."""
        out, layout = self.passes.run(self.active, self.edit, self.cached)
        with torch.enable_grad():
            res = self.losses_of(out, layout)
        if step == 0 and self.cached:
            full_out, full_layout = self.passes.run(self.active, self.edit, cached=False, grad=False)
            with torch.no_grad():  # kl_init is already set for every active fact: this pass reads it
                ref = self.losses_of(full_out, full_layout)
            gap = max(abs(res[f][0].item() - ref[f][0].item()) / max(1.0, abs(ref[f][0].item())) for f in self.active)
            if not gap < 1e-3:
                self.cached = False
                out, layout = self.passes.run(self.active, self.edit, self.cached)
                self.kl_init.clear()
                with torch.enable_grad():
                    res = self.losses_of(out, layout)
        return res

    def _settle(self, step: int, res):
        """Record each fact's loss and apply the stopping rule: (facts that stop now, the summed
        loss of the others)."""
        hp, total, stop_now = self.hp, 0.0, []
        for f in list(self.active):
            loss, nll_each, kl, lp_rw, t = res[f]
            if not torch.isfinite(loss):
                raise EditError(
                    f"{self.facts[f].subject!r}: the target optimisation diverged at step {step} (loss {loss.item()})"
                )
            self.losses[f].append(round(loss.item(), 4))
            self.probs[f] = float(torch.exp(-nll_each.detach()).mean())
            done = loss.item() < hp.loss_stop  # the reference's stop rule: the total loss
            if self.adaptive_nll and not done:
                argmax = bool((lp_rw.argmax(-1) == t.repeat(self.rows[f].n_rewrite)).all())
                self.factors[f] = 0.1 * self.nll_factor if argmax else self.nll_factor
                done = argmax and kl.item() < 0.01
            if done or step == hp.v_num_grad_steps - 1:
                stop_now.append(f)
            else:
                total = total + loss
        return stop_now, total

    def _project(self):
        """Each ‖δ_s‖ back into the ball of radius clamp_norm_factor · ‖v0_s‖."""
        with torch.no_grad():
            for s in self.sites:
                max_norm = self.hp.clamp_norm_factor * self.z0[s].norm(dim=1, keepdim=True)
                norm = self.deltas[s].norm(dim=1, keepdim=True)
                self.deltas[s].mul_(
                    torch.where(norm > max_norm, max_norm / norm.clamp_min(1e-12), torch.ones_like(norm))
                )

    def optimise(self, step_progress: Callable[[int, int, float], None]):
        hp, opt = self.hp, None
        for step in range(hp.v_num_grad_steps):
            if opt is not None:
                opt.zero_grad()
            res = self._checked_losses(step)
            if opt is None:  # the δ's exist after the first pass
                opt = torch.optim.Adam([self.deltas[s] for s in self.sites], lr=hp.v_lr)
            stop_now, total = self._settle(step, res)
            step_progress(step, hp.v_num_grad_steps, max(self.losses[f][-1] for f in self.active))
            for f in stop_now:  # this fact's δ is final: keep it, drop its rows from later passes
                self.frozen[f] = {s: self.deltas[s][f].detach().clone() for s in self.sites}
                self.active.remove(f)
            if not self.active:
                break
            total.backward()
            opt.step()
            self._project()
        return self.results()

    def results(self):
        """z_s = v0_s + δ_s per fact and site, and what the optimisation did."""
        zs, infos = [], []
        for f, fact in enumerate(self.facts):
            frozen, z0 = self.frozen[f], self.z0
            zs.append([z0[s][f] + frozen[s] for s in self.sites])
            infos.append(
                {
                    "subject": fact.subject,
                    "z_steps": len(self.losses[f]),
                    "z_losses": self.losses[f][-3:],
                    "loss_curve": self.losses[f],
                    "z_prob": round(self.probs[f], 4),
                    "delta_norms": [round(float(frozen[s].norm()), 4) for s in self.sites],
                    "z0_norms": [round(float(z0[s][f].norm()), 4) for s in self.sites],
                    "prefix_cache": self.cached,
                    "start_layer": self.passes.start if self.cached else 0,
                    "path": "fast" if self.fast else "reference",
                }
            )
        return zs, infos
