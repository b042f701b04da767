"""Teacher-forced batches of "prompt + target" and the scores the gradient-based methods share.

Tokenisation follows the probes exactly (``tokenizer(prompt).input_ids + target_ids(target)``), so
the loss a method minimises is computed on the same tokens the efficacy probe later scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from editlab.facts.fact import Fact
from editlab.measure.probes import Probe, measure
from editlab.methods.keys import pad_batch
from editlab.model.tokens import target_ids


@dataclass(frozen=True)
class Encoded:
    """One prompt followed by its target: ``ids[:n_prompt]`` is the prompt, the rest the target."""

    ids: tuple[int, ...]
    n_prompt: int
    target: tuple[int, ...]

    @property
    def last_prompt(self) -> int:
        """Position of the prompt's last token (its logits predict the target's first token)."""
        return self.n_prompt - 1

    def target_positions(self) -> list[int]:
        """Positions whose logits predict each target token (teacher forcing)."""
        return [self.n_prompt - 1 + j for j in range(len(self.target))]


def encode(tokenizer, prompt: str, target: str, prefix: str = "") -> Encoded:
    prompt_ids = list(tokenizer(prefix + prompt).input_ids)
    tids = target_ids(tokenizer, target)
    return Encoded(ids=tuple(prompt_ids + tids), n_prompt=len(prompt_ids), target=tuple(tids))


def batch(handle, items: list[Encoded]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask on the model's device."""
    return pad_batch([e.ids for e in items], handle.tokenizer.pad_token_id, handle.device)


def target_nll(logits: torch.Tensor, items: list[Encoded]) -> torch.Tensor:
    """Mean over facts of the mean teacher-forced NLL of each target token (FT-M's, GRACE's loss)."""
    lp = torch.log_softmax(logits.float(), dim=-1)
    per_fact = []
    for row, e in enumerate(items):
        pos = torch.tensor(e.target_positions(), device=logits.device)
        tgt = torch.tensor(e.target, device=logits.device)
        per_fact.append(-lp[row, pos, tgt].mean())
    return torch.stack(per_fact).mean()


def prompt_last_nll(logits: torch.Tensor, items: list[Encoded]) -> torch.Tensor:
    """Mean NLL of every target token read at the prompt's last position (FT-L's "prompt_last").

    This is the ROME paper's FT-L objective (and EasyEdit's ``objective_optimization:
    prompt_last``): all target tokens are scored from the same next-token distribution, so for a
    multi-token target it raises the first token and, as a side effect, the later ones in first
    position; the target's later tokens are never trained in place.
    """
    lp = torch.log_softmax(logits.float(), dim=-1)
    per_fact = []
    for row, e in enumerate(items):
        tgt = torch.tensor(e.target, device=logits.device)
        per_fact.append(-lp[row, e.last_prompt, tgt].mean())
    return torch.stack(per_fact).mean()


def prompt_check(handle, facts: list[Fact], prefix: str = "") -> list[dict]:
    """P(target_new) vs P(target_true) on each fact's own prompt, as the efficacy probe scores them
    (per-token geometric mean, teacher forced). Run on the model as it is now."""
    out = []
    for fact in facts:
        m = measure(
            handle.model, handle.tokenizer, fact, [Probe("positive", fact.prompt, max_new_tokens=1)], prefix=prefix
        )[0]
        out.append(
            {
                "subject": fact.subject,
                "p_new": m.p_new,
                "p_true": m.p_true,
                "success": None if m.p_true is None else bool(m.p_new > m.p_true),
            }
        )
    return out


# Unrelated prompts whose next token no single fact edit should change.
CONTROL_PROMPTS = (
    "The capital of France is",
    "The first president of the United States was",
    "Water is made of hydrogen and",
    "The largest planet in the solar system is",
)


@torch.no_grad()
def control_tokens(handle, prefix: str = "") -> list[int]:
    """The greedy next token after each control prompt, on the model as it is now."""
    items = [list(handle.tokenizer(prefix + p).input_ids) for p in CONTROL_PROMPTS]
    ids, mask = pad_batch(items, handle.tokenizer.pad_token_id, handle.device)
    logits = handle.model(input_ids=ids, attention_mask=mask).logits
    return [int(logits[i, len(s) - 1].argmax()) for i, s in enumerate(items)]


def bleed_check(handle, facts: list[Fact], before: list[int], prefix: str = "") -> dict:
    """How many unrelated control prompts now start with a fact's new answer (and did not before):
    the crudest sign that an edit leaks everywhere (KN's typical failure)."""
    after = control_tokens(handle, prefix)
    firsts = {target_ids(handle.tokenizer, f.target_new)[0] for f in facts}
    hijacked = [p for p, b, a in zip(CONTROL_PROMPTS, before, after) if a in firsts and b not in firsts]
    changed = sum(b != a for b, a in zip(before, after))
    return {"prompts": len(CONTROL_PROMPTS), "changed": changed, "hijacked": hijacked}


def bleed_note(method: str, bleed: dict) -> str | None:
    if not bleed["hijacked"]:
        return None
    return (
        f"{method}: the new answer became the next token after {len(bleed['hijacked'])} of {bleed['prompts']} "
        f"unrelated control prompts (e.g. {bleed['hijacked'][0]!r}): the edit leaks into unrelated text"
    )


def check_note(method: str, checks: list[dict]) -> str | None:
    """A plain sentence for the report when the edit did not take on some facts' own prompts."""
    failed = [c for c in checks if c["success"] is False]
    if not failed:
        return None
    names = ", ".join(repr(c["subject"]) for c in failed)
    return (
        f"{method}: after the edit target_new is still less likely than target_true on the edit prompt "
        f"for {len(failed)} of {len(checks)} fact(s) ({names}); the edit did not take there"
    )
