"""Locating the subject in a prompt and reading a layer's key k and value v at its last token."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from editlab.model.nethook import Trace


@dataclass(frozen=True)
class Located:
    """A text, its token ids, and the index of the token that ends the subject."""

    text: str
    ids: tuple[int, ...]
    index: int


def locate(tokenizer, template: str, prompt: str, subject: str, suffix: str = "") -> Located:
    """Render ``template.format(prompt) + suffix`` and find the subject's last token.

    ``template`` is a context template with one ``{}``; the subject is the last occurrence inside
    ``prompt``. Raises ValueError naming the subject if it is not there.
    """
    pos = prompt.rfind(subject)
    if pos < 0:
        raise ValueError(f"subject {subject!r} not found in prompt {prompt!r}")
    head, _, _ = template.partition("{}")
    text = template.format(prompt) + suffix
    end = len(head) + pos + len(subject)  # character just past the subject
    enc = tokenizer(text, return_offsets_mapping=True)
    ids = list(enc.input_ids)
    # The subject's last token: the last non-empty token that starts before the subject ends.
    starts = [i for i, (a, b) in enumerate(enc.offset_mapping) if b > a and a < end]
    if not starts:
        raise ValueError(f"could not place subject {subject!r} in the tokens of {text!r}")
    index = starts[-1]
    return Located(text=text, ids=tuple(ids), index=index)


def pad_batch(seqs, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s))
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def read_kv(handle, module_name: str, located: list[Located]) -> tuple[torch.Tensor, torch.Tensor]:
    """Input k and output v of ``module_name`` at each text's subject token, as float32 [n, d]."""
    ids, mask = pad_batch([l.ids for l in located], handle.tokenizer.pad_token_id, handle.device)
    with Trace(handle.model, module_name, retain_input=True, retain_output=True, stop=True) as t:
        handle.model(input_ids=ids, attention_mask=mask)
    rows = torch.arange(len(located), device=t.input.device)
    idx = torch.tensor([l.index for l in located], device=t.input.device)
    return t.input[rows, idx].float(), t.output[rows, idx].float()
