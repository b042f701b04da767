"""Tokens in and out of the model: a target's token ids as it follows a prompt, teacher-forced scores
of continuations, and greedy continuations (batched, left-padded, with the key/value cache; faster
with a draft of the expected text).

Everything here reads the model as it is now; what those numbers mean for a fact lives in
:mod:`editlab.measure`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

# generations longer than this are decoded apart from the short ones (their batches would wait for them)
SHORT_GENERATION = 16


def target_ids(tokenizer, target: str) -> list[int]:
    """Token ids of a target as it follows a prompt (with its leading space)."""
    ids = tokenizer(" " + target.strip(), add_special_tokens=False).input_ids
    if not ids:
        raise ValueError(f"target {target!r} tokenises to nothing")
    return list(ids)


def _pad(seqs: list[list[int]], pad_id: int, left: bool, device) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        if left:
            ids[i, n - len(s) :] = torch.tensor(s)
            mask[i, n - len(s) :] = 1
        else:
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def _logits_to_keep(model, n: int) -> dict:
    """Ask the model for logits at the last ``n`` positions only (``logits_to_keep`` in recent
    transformers, ``num_logits_to_keep`` in 4.45–4.49); {} when it cannot (then all are computed)."""
    params = inspect.signature(model.forward).parameters
    for name in ("logits_to_keep", "num_logits_to_keep"):
        if name in params:
            return {name: n}
    return {}


@torch.no_grad()
def score_continuations(
    model, prompts: list[list[int]], targets: list[list[int]], pad_id: int, batch_size: int = 16
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Teacher-forced scores of each target after its prompt: for each pair, (log-probabilities
    of the next token after the prompt [V], log-probability of each target token [len(target)],
    the model's top-1 token where each target token is predicted [len(target)]).

    Sequences are left padded (position ids from the mask), so every target ends at the last
    position and only the last max(len(target)) + 1 positions are unembedded: memory grows with
    the batch and the target length, not with the prompt (a long prompt costs time, not a
    full-vocabulary row per position).
    """
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        ps, ts = prompts[i : i + batch_size], targets[i : i + batch_size]
        ids, mask = _pad([p + t for p, t in zip(ps, ts)], pad_id, left=True, device=device)
        keep = max(len(t) for t in ts) + 1
        pos = (mask.cumsum(1) - 1).clamp_min(0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, **_logits_to_keep(model, keep)).logits
        lp = torch.log_softmax(logits[:, -keep:].float(), dim=-1)
        for j, t in enumerate(ts):
            at = keep - len(t) - 1  # the prompt's last position, inside the kept window
            where = at + torch.arange(len(t), device=lp.device)
            token_lp = lp[j, where, torch.tensor(t, device=lp.device)]
            out.append((lp[j, at].cpu(), token_lp.cpu(), lp[j, where].argmax(-1).cpu()))
    return out


@torch.no_grad()
def greedy_with_first(
    model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int = 16
) -> list[tuple[list[int], torch.Tensor]]:
    """Greedy continuations, batched with left padding and the key/value cache: for each prompt,
    (the new token ids, log-probabilities of the first new token [V])."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        ids, mask = _pad(chunk, pad_id, left=True, device=device)
        gen = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=pad_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        first = torch.log_softmax(gen.logits[0].float(), dim=-1).cpu()
        for j in range(len(chunk)):
            out.append((gen.sequences[j, ids.shape[1] :].tolist(), first[j]))
    return out


def _buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices grouped so that a batch does not pad short rows to a long one's length: sorted
    by length, a new batch when it is full or when a row is more than twice its batch's shortest."""
    out: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if out and len(out[-1]) < batch_size and lengths[i] <= 2 * max(1, lengths[out[-1][0]]):
            out[-1].append(i)
        else:
            out.append([i])
    return out


@torch.no_grad()
def greedy_drafted(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: Sequence[int],
    drafts: Sequence[Sequence[int]],
    batch_size: int = 16,
) -> list[tuple[list[int], torch.Tensor]]:
    """The greedy continuations of :func:`greedy_with_first`, found faster when a good guess of
    them is at hand (the same prompt's continuation on another state of the model: an edit changes
    a few tokens of it, not all).

    Exact in the way speculative decoding is: each round runs prompt + tokens kept so far + the
    guess in one pass and keeps the guess only as far as it equals the model's own argmax, plus the
    model's token where it first differs. The guess then goes on after the differing token
    (substituted, or skipped when the model jumped a few tokens ahead in it). A row whose guess stops
    helping (a round keeps less than half of it) finishes with ordinary batched greedy decoding, so
    a useless guess costs one pass. Stops at the
    end-of-sequence token as ``generate`` does. Float rounding of a longer pass may differ from
    step-by-step decoding in the last bits, as batching and padding already make it differ.
    """
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    n = len(prompts)
    gen: list[list[int]] = [[] for _ in range(n)]
    first: list[torch.Tensor | None] = [None] * n
    guess = [list(d)[:m] for d, m in zip(drafts, max_new_tokens)]
    finished = [m <= 0 for m in max_new_tokens]
    plain: list[int] = []  # rows handed to ordinary decoding

    def done(i):
        return finished[i] or len(gen[i]) >= max_new_tokens[i] or (gen[i] and gen[i][-1] == eos)

    active = [i for i in range(n) if not done(i)]
    while active:
        seqs = {i: prompts[i] + gen[i] + guess[i][: max_new_tokens[i] - len(gen[i]) - 1] for i in active}
        for part in _buckets([len(seqs[i]) for i in active], batch_size):
            rows = [active[j] for j in part]
            ids, mask = _pad([seqs[i] for i in rows], pad_id, left=True, device=device)
            keep = max(len(seqs[i]) - len(prompts[i]) - len(gen[i]) for i in rows) + 1
            pos = (mask.cumsum(1) - 1).clamp_min(0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, **_logits_to_keep(model, keep)).logits
            logits = logits[:, -keep:].float()
            for r, i in enumerate(rows):
                g = seqs[i][len(prompts[i]) + len(gen[i]) :]  # the guess as run
                lp = logits[r, keep - len(g) - 1 :]  # predictions of guess[0], ..., and the token after it
                if first[i] is None:
                    first[i] = torch.log_softmax(lp[0], dim=-1).cpu()
                more, guess[i], kept = _take_guess(lp, g, guess[i], eos)
                gen[i] += more
                if not done(i) and (not guess[i] or 2 * kept < len(g)):  # the guess stopped helping
                    plain.append(i)
                    finished[i] = True
        active = [i for i in active if not done(i)]
    _finish_plain(model, tokenizer, prompts, gen, max_new_tokens, plain, batch_size)
    return [(g[:m], f) for g, m, f in zip(gen, max_new_tokens, first)]


def _take_guess(lp: torch.Tensor, g: list[int], guess: list[int], eos) -> tuple[list[int], list[int], int]:
    """One row's round of :func:`greedy_drafted`: the tokens kept (the guess as far as the model's
    argmax agrees, then the model's token), the guess that goes on after them, and how much of it was kept."""
    pred = lp.argmax(-1).tolist()
    kept = 0
    while kept < len(g) and pred[kept] == g[kept] and g[kept] != eos:
        kept += 1
    rest = guess[kept + 1 :]
    if kept < len(g):  # the model differs at g[kept]: skipped ahead in the guess, or substituted it
        ahead = [j for j in range(min(3, len(rest))) if rest[j] == pred[kept]]
        rest = rest[ahead[0] + 1 :] if ahead else rest
    return g[:kept] + [pred[kept]], rest, kept


def _finish_plain(model, tokenizer, prompts, gen, max_new_tokens, plain: list[int], batch_size: int) -> None:
    """The rows whose guess stopped helping finish with ordinary batched greedy decoding (long ones apart)."""
    long = [i for i in plain if max_new_tokens[i] - len(gen[i]) > SHORT_GENERATION]  # as in measure: apart
    for group in ([i for i in plain if i not in long], long):
        for part in _buckets([len(prompts[i]) + len(gen[i]) for i in group], batch_size):
            _finish(model, tokenizer, prompts, gen, max_new_tokens, [group[j] for j in part], batch_size)


def _finish(model, tokenizer, prompts, gen, max_new_tokens, rows, batch_size):
    """Ordinary batched greedy decoding of the given rows from where they are."""
    longest = max(max_new_tokens[i] - len(gen[i]) for i in rows)
    for i, (more, _) in zip(
        rows, greedy_with_first(model, tokenizer, [prompts[i] + gen[i] for i in rows], longest, batch_size)
    ):
        gen[i] += more


@torch.no_grad()
def greedy(model, tokenizer, prompts: list[list[int]], max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy continuations, batched with left padding; returns the decoded new text only."""
    return [
        tokenizer.decode(ids, skip_special_tokens=True)
        for ids, _ in greedy_with_first(model, tokenizer, prompts, max_new_tokens, batch_size)
    ]
