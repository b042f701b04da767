"""Teacher-forced top-1 token predictions: the measurement behind EasyEdit's accuracy metrics.

For a prompt and a target, the model reads ``prompt + target`` once; at each target position we
keep the model's most likely next token. EasyEdit's rewrite/rephrase/portability accuracy is the
fraction of those that equal the target's tokens, and its locality is the fraction that agree with
the unedited model's (see docs/metrics.md). Built on :mod:`editlab.measure.probes`' tokenisation and batched
forward pass, so prompts are tokenised exactly as the probes tokenise them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from editlab.measure.probes import Probe, render
from editlab.model.tokens import score_continuations, target_ids


@dataclass(frozen=True)
class TokenPrediction:
    """The target's tokens after a prompt and the model's top-1 token at each of their positions."""

    prompt: str
    target: str
    target_ids: tuple[int, ...]
    predicted_ids: tuple[int, ...]

    @property
    def accuracy(self) -> float:
        """Fraction of target tokens the model predicts top-1 under teacher forcing."""
        return sum(p == t for p, t in zip(self.predicted_ids, self.target_ids)) / len(self.target_ids)

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "target": self.target,
            "target_ids": list(self.target_ids),
            "predicted_ids": list(self.predicted_ids),
            "accuracy": self.accuracy,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TokenPrediction:
        return cls(d["prompt"], d["target"], tuple(d["target_ids"]), tuple(d["predicted_ids"]))


def agreement(after: TokenPrediction, reference: TokenPrediction) -> float:
    """Fraction of positions where two models' top-1 tokens agree (EasyEdit's locality)."""
    if after.target_ids != reference.target_ids:
        raise ValueError("agreement compares predictions for the same prompt and target")
    return sum(a == b for a, b in zip(after.predicted_ids, reference.predicted_ids)) / len(after.target_ids)


@torch.no_grad()
def predict_tokens(
    model, tokenizer, queries: Sequence[tuple[str, str]], prefix: str = "", batch_size: int = 16
) -> list[TokenPrediction]:
    """Teacher-forced top-1 predictions for each ``(prompt, target)``; ``prefix`` is prepended to
    every prompt (in-context editing's demonstrations), as :func:`editlab.measure.probes.measure` does."""
    if not queries:
        return []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [render(tokenizer, Probe("positive", p), prefix) for p, _ in queries]
    targets = [target_ids(tokenizer, t) for _, t in queries]
    scored = score_continuations(model, prompts, targets, pad_id, batch_size)
    return [
        TokenPrediction(prompt, target, tuple(t_ids), tuple(int(x) for x in pred))
        for (prompt, target), t_ids, (_, _, pred) in zip(queries, targets, scored)
    ]
