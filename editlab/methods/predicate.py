"""The predicate write: a rank-one write at the "not" token of a fact's negated prompt.

editlab's ``negation_objective = "predicate"`` (ROME and MEMIT, ``negation_weight`` > 0).
The subject's write stays exactly the published one; then, on the model that holds it, one more
rank-one update of an MLP output projection W maps the key at the "not" token of the negated prompt
("... is not"), averaged over the context templates, to a value z that makes the true target beat
the new one after "not":

    z   = z0 + δ,  δ = argmin  w · mean_c softplus(m − [log P(o_c | c ⊕ p⁻; δ) − log P(o* | c ⊕ p⁻; δ)])
                                + v_weight_decay · ‖δ‖ / ‖z0‖²                   (:func:`compute_z`)
    ΔW  = (z − W k) uᵀ / (uᵀ k),  u ∝ C⁻¹ k_n  (ROME's eq. 2 at the "not" key)   (:func:`write`)

Positive sentences have no "not" token: they see this write only through their keys' overlap with
u. Its reach into other subjects' negated sentences is measured by ``benchmarks/negation.py``.
"""

from __future__ import annotations

import re

import torch

from editlab.facts.fact import Fact
from editlab.methods.base import EditError
from editlab.methods.keys import Located, locate, pad_batch, read_kv
from editlab.methods.multilayer import add_to_weight
from editlab.methods.vstar import negation_forms, with_delta
from editlab.model.nethook import Trace, TraceDict
from editlab.model.tokens import target_ids

NAME = "predicate"

# Subjects put into the fact's own negated prompt to read other subjects' keys at "not" (predicate_keep).
OTHER_SUBJECTS = (
    "John Smith",
    "Maria Garcia",
    "Tokyo",
    "the United Nations",
    "Mozart",
    "Toyota",
    "the Amazon River",
    "Albert Einstein",
    "Barcelona",
    "Apple",
    "Queen Victoria",
    "Brazil",
    "Pablo Picasso",
    "Nokia",
    "the Nile",
    "Angela Merkel",
)


def site(tokenizer, template: str, fact: Fact) -> Located | None:
    """``template`` around the fact's negated prompt, located at its "not" token (the predicate's
    position, which only a negated sentence has); None when the prompt is already negated or has no
    grammatical negation (editlab.facts.negation: "unnegatable")."""
    neg, rule = fact.negated()
    if neg is None or rule.startswith("already-negated"):
        return None
    # The first "not" the negation put in after the subject: "is not", "cannot", "does not speak", "X, not by".
    after = neg.rfind(fact.subject) + len(fact.subject) if fact.subject in neg else 0
    m = re.compile(r"(?:\b|(?<=can))not\b").search(neg, after)
    return locate(tokenizer, template, neg, neg[: m.end()]) if m else None


def _negated_sites(tok, fact: Fact, templates: list[str]) -> list:
    """The negated prompt p⁻ after every template, located at its "not" token."""
    if not fact.target_true:
        raise EditError(
            f"{fact.subject!r}: the predicate write needs the fact's true target (o_c must beat o* after 'not')"
        )
    located = [site(tok, t, fact) for t in templates]
    if located[0] is None:
        raise EditError(
            f"{fact.prompt!r} is already negated or has no grammatical negation: "
            "there is no 'not' token for the predicate write"
        )
    return located


class _NegatedBatch:
    """c ⊕ p⁻ teacher-forced with o* (rows 0..n-1) and with o_c (rows n..2n-1), and where δ goes in."""

    def __init__(self, located: list, new_ids: list[int], true_ids: list[int], pad_id: int, dev):
        self.located, self.n_new, self.n_true = located, len(new_ids), len(true_ids)
        seqs = [list(l.ids) + new_ids[:-1] for l in located] + [list(l.ids) + true_ids[:-1] for l in located]
        self.ids, self.mask = pad_batch(seqs, pad_id, dev)
        self.n = n = len(located)
        self.rows = torch.arange(2 * n, device=dev)
        self.cols = torch.tensor([l.index for l in located] * 2, device=dev)
        self.at_new, self.at_true = self._scored(new_ids, 0, dev), self._scored(true_ids, n, dev)

    def _scored(self, targets, first_row: int, dev):
        """(rows, positions, token ids) of one target's teacher-forced tokens after every template."""
        n, located = self.n, self.located
        r = torch.tensor([first_row + j for j in range(n) for _ in targets], device=dev)
        p = torch.tensor([len(located[j].ids) - 1 + i for j in range(n) for i in range(len(targets))], device=dev)
        t = torch.tensor(list(targets) * n, device=dev)
        return r, p, t

    def _target_lp(self, logp, where, count):
        """Per template, the target's per-token mean log-probability."""
        r, p, t = where
        return logp[r, p].gather(1, t[:, None]).squeeze(1).reshape(self.n, count).mean(1)

    def gap(self, logp):
        """Per template: log P(o_c | c ⊕ p⁻) − log P(o* | c ⊕ p⁻)."""
        return self._target_lp(logp, self.at_true, self.n_true) - self._target_lp(logp, self.at_new, self.n_new)


def _optimise_delta(
    model, module: str, batch: _NegatedBatch, z0: torch.Tensor, hp, margin: float, fact: Fact
) -> tuple[torch.Tensor, list[float], list[float]]:
    """δ by Adam on L(δ), clamped to ``clamp_norm_factor`` · ‖z0‖; stops once every template's gap
    reaches m; returns δ, the losses and the worst gaps per step."""
    n = batch.n
    delta = torch.zeros_like(z0, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=hp.v_lr)
    losses, gaps = [], []
    for step in range(hp.v_num_grad_steps):
        opt.zero_grad()
        with (
            torch.enable_grad(),
            TraceDict(
                model,
                [module],
                retain_output=False,
                edit_output=lambda out, name: with_delta(out, batch.rows, batch.cols, delta.expand(2 * n, -1)),
            ),
        ):
            logits = model(input_ids=batch.ids, attention_mask=batch.mask).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            gap = batch.gap(logp)
            loss = (
                hp.negation_weight * torch.nn.functional.softplus(margin - gap).mean()
                + hp.v_weight_decay * delta.norm() / z0.norm() ** 2
            )
        if not torch.isfinite(loss):
            raise EditError(
                f"{fact.subject!r}: the predicate write's optimisation diverged at step {step} (loss {loss.item()})"
            )
        losses.append(round(loss.item(), 4))
        worst = float(gap.detach().min())
        gaps.append(round(worst, 4))
        if worst >= margin or step == hp.v_num_grad_steps - 1:
            break
        loss.backward()
        opt.step()
        with torch.no_grad():
            max_norm = hp.clamp_norm_factor * z0.norm()
            if delta.norm() > max_norm:
                delta.mul_(max_norm / delta.norm())
    return delta, losses, gaps


def compute_z(handle, fact: Fact, templates: list[str], hp, module: str) -> tuple[torch.Tensor, dict]:
    """z = z0 + δ: the output of ``module`` at the "not" token of the negated prompt p⁻ that makes the
    true target beat the new one after "not", on the model that already holds the subject's published
    write (``hp``: ROME's or MEMIT's HParams):

        L(δ) = negation_weight · mean_c softplus(m − [log P(o_c | c ⊕ p⁻; δ) − log P(o* | c ⊕ p⁻; δ)])
               + v_weight_decay · ‖δ‖ / ‖z0‖²

    over the context templates c (per-token mean log-probabilities, m = ``negation_margin``), Adam
    (``v_lr``), δ clamped to ``clamp_norm_factor`` · ‖z0‖; it stops once o_c beats o* by m after every
    template's negated prompt, or after ``v_num_grad_steps`` steps. Positive sentences have no "not"
    token, so δ never sees them; where the written key reaches other sentences is :func:`write`'s
    business (C⁻¹), measured by ``benchmarks/negation.py`` (NS_neg, bleed)."""
    tok, model, dev = handle.tokenizer, handle.model, handle.device
    located = _negated_sites(tok, fact, templates)
    new_ids, true_ids = target_ids(tok, fact.target_new), target_ids(tok, fact.target_true)
    batch = _NegatedBatch(located, new_ids, true_ids, tok.pad_token_id, dev)
    with torch.no_grad(), Trace(model, module, retain_output=True, stop=True) as tr:
        model(input_ids=batch.ids[:1, : len(located[0].ids)], attention_mask=batch.mask[:1, : len(located[0].ids)])
    hidden = tr.output[0] if isinstance(tr.output, tuple) else tr.output
    z0 = hidden[0, located[0].index].detach().float()
    margin = float(getattr(hp, "negation_margin", 0.0))
    delta, losses, gaps = _optimise_delta(model, module, batch, z0, hp, margin, fact)
    info = {
        "z_steps": len(losses),
        "z_losses": losses[-3:],
        "loss_curve": losses,
        "min_gap": gaps[-1],
        "reached_margin": gaps[-1] >= margin,
        "delta_norm": round(float(delta.detach().norm()), 4),
        "z0_norm": round(float(z0.norm()), 4),
        "not_token": tok.decode([located[0].ids[located[0].index]]),
    }
    return (z0 + delta).detach(), info


def wanted(hp) -> bool:
    """Whether ``hp`` asks for the predicate write (a negation weight > 0 with this objective)."""
    return hp.negation_weight > 0 and hp.negation_objective == NAME


def write(handle, fact: Fact, templates: list[str], hp, c: torch.Tensor | None, layer: int, name: str = "ROME") -> dict:
    """The predicate write into layer ``layer``'s MLP output projection (``c``: its key statistics C,
    or None for C = I) on the model that holds the subject's write: k_n = the key at the "not" token of
    the negated prompt averaged over the context templates, u ∝ C⁻¹k_n (kept C⁻¹-orthogonal to
    ``hp.predicate_keep`` other subjects' keys at "not" when that is > 0, :func:`keep_apart`), z from
    :func:`compute_z`, ΔW = (z − W k) uᵀ / (uᵀ k) at the bare negated prompt's key k. A fact without a
    true target, or whose prompt is already negated, has nothing to write here: the returned record
    says so (``skipped``) and the subject's write stands alone."""
    if not fact.target_true:
        return {"skipped": "no true target: the predicate write needs o_c to beat o* after 'not'"}
    module = handle.arch.mlp_out_proj(layer)
    located = [site(handle.tokenizer, t, fact) for t in templates]
    if located[0] is None:
        return {
            "skipped": "the prompt is already negated, or has no grammatical negation: there is no negation to write"
        }
    k_n = read_kv(handle, module, located)[0].mean(0)
    held = other_not_keys(handle, fact, module, getattr(hp, "predicate_keep", 0))
    u = keep_apart(k_n, held, c)
    z, info = compute_z(handle, fact, templates, hp, module)
    k, v_cur = read_kv(handle, module, [site(handle.tokenizer, "{}", fact)])
    denom = torch.dot(k[0], u)
    if not torch.isfinite(denom) or abs(float(denom)) < 1e-12:
        raise EditError(f"{name}: the key at 'not' is orthogonal to C⁻¹k_n; no predicate write is possible")
    upd = torch.outer((z - v_cur[0]) / denom, u)  # [out, in]
    add_to_weight(handle, layer, upd)
    return dict(info, update_norm=float(upd.norm()), k=k[0].cpu(), z=z.cpu(), held=len(held))


def other_not_keys(handle, fact: Fact, module: str, n: int) -> torch.Tensor:
    """The keys at "not" of the fact's negated prompt with its subject replaced by ``n`` of
    :data:`OTHER_SUBJECTS` ([n, d]; [0, d] for n = 0): what the write must leave alone."""
    others = [o for o in OTHER_SUBJECTS if o.lower() != fact.subject.lower()][: max(0, n)]
    located = [
        site(handle.tokenizer, "{}", Fact(o, fact.prompt.replace(fact.subject, o), fact.target_new, fact.target_true))
        for o in others
    ]
    located = [at for at in located if at is not None]
    return read_kv(handle, module, located)[0] if located else torch.zeros(0, 0)


def keep_apart(k_n: torch.Tensor, held: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """u ∝ C⁻¹ k', k' = k_n minus its C⁻¹-projection on the held keys K ([m, d]): uᵀk = 0 for every
    held key (their outputs stay exactly as they are); with no held keys, ROME's u ∝ C⁻¹ k_n."""
    cinv = (lambda x: x) if c is None else (lambda x: torch.linalg.solve(c.to(x.device).double(), x))
    u = cinv(k_n.double())
    if held.shape[0]:
        kk = held.double().T.to(u.device)  # [d, m]
        ck = cinv(kk)  # C⁻¹K
        a = kk.T @ ck  # KᵀC⁻¹K
        a = a + 1e-8 * torch.trace(a) / a.shape[0] * torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
        u = u - ck @ torch.linalg.solve(a, ck.T @ k_n.double())
    return (u / u.norm()).float()


def check_hparams(hp) -> None:
    """The predicate write's own options (``predicate_keep``), for the methods that offer it."""
    keep = getattr(hp, "predicate_keep", 0)
    if wanted(hp) and negation_forms(hp) != ("not",):
        raise ValueError(
            "negation_forms: the predicate write writes at the 'not' token of the \"not\" form only; "
            "other forms are a v* term's (negation_objective two-sided, contrast or push-down)"
        )
    if not 0 <= keep <= len(OTHER_SUBJECTS):
        raise ValueError(f"predicate_keep must be between 0 and {len(OTHER_SUBJECTS)} (the other subjects editlab has)")


def skipped_note(name: str, details: list[dict]) -> str | None:
    """A sentence for the user naming the facts that got the published write alone, and why."""
    skipped = [
        f"{d['subject']!r} ({d['predicate']['skipped']})" for d in details if "skipped" in d.get("predicate", {})
    ]
    return (
        f"{name}: the predicate write was skipped, only the published write made, for {'; '.join(skipped)}"
        if skipped
        else None
    )
