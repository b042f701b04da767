"""Context templates: short generated prefixes ("The ... . {}") over which ROME/MEMIT average
keys and optimise values, so an edit generalises beyond the exact prompt.

As the reference (MEMIT's and EasyEdit's ROME/MEMIT ``get_context_templates``): for each
``[length, n]`` of ``context_template_length_params``, n // 5 prefixes per start word ("The",
"Therefore", "Because", "I", "You", in that order), sampled top-k 5, each ``length`` tokens long *in
all*, start word included: ``generate_fast(..., max_out_len=length)`` stops when the whole sequence
(the tokenised start word, with any BOS the tokenizer adds, and what follows) reaches ``length``, and
never stops early at an end-of-text token. The text is then treated as there: Unicode NFKD, blank
lines (two newlines) to a space, braces to spaces, no other stripping, + ". {}". (kmeng01/rome's
own ROME samples from "<|endoftext|>" instead of the start words; lengths count the same way.)

Generated once per (model, lengths, seed) and cached on disk: re-generating them on every edit is
what made the reference ROME the slowest method.
"""

from __future__ import annotations

import json
import unicodedata

import torch

from editlab.core import paths

STARTS = ("The", "Therefore", "Because", "I", "You")
# Part of the cache key. 2: a length counts the whole prefix, start word included (as the reference);
# 1 (no marker in the key) counted new tokens only, so its cached templates are never reused.
VERSION = 2


def context_templates(handle, length_params=((10, 5),), seed: int = 0) -> list[str]:
    """``["{}"] + [prefix + ". {}"]``: per (length, n), n // 5 (at least 1) prefixes per start word,
    each ``length`` tokens long including the start word."""
    key = paths.key_digest(
        model=handle.fingerprint, params=[list(p) for p in length_params], seed=seed, version=VERSION
    )
    f = paths.cache_dir("templates") / f"{key}.json"
    if f.exists():
        return json.loads(f.read_text())
    tok = handle.tokenizer
    out = ["{}"]
    devices = [handle.device] if handle.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for length, n in length_params:
            per = max(1, n // len(STARTS))
            for ids in prefix_ids(handle, [s for s in STARTS for _ in range(per)], length):
                text = unicodedata.normalize("NFKD", tok.decode(ids, skip_special_tokens=True)).replace("\n\n", " ")
                out.append(text.replace("{", " ").replace("}", " ") + ". {}")
    paths.atomic_write_bytes(f, json.dumps(out).encode())
    return out


def prefix_ids(handle, starts: list[str], length: int) -> list[list[int]]:
    """Token ids of one sampled prefix per start word: the start word as the tokenizer encodes it
    (special tokens included, as the reference's ``tok(prompts)``) followed by top-k 5 samples
    until the whole has ``length`` tokens; a start word of ``length`` tokens or more is left as it
    is (the reference generates nothing then). Uses the current torch RNG."""
    tok, model = handle.tokenizer, handle.model
    enc = [tok(s).input_ids for s in starts]
    budgets = [max(0, length - len(e)) for e in enc]
    if max(budgets) == 0:
        return enc
    width = max(len(e) for e in enc)
    ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, e in enumerate(enc):  # left padding for generation
        ids[i, width - len(e) :] = torch.tensor(e)
        mask[i, width - len(e) :] = 1
    # One batch for all start words: each row samples the longest budget, then keeps its own (later
    # tokens cannot change earlier ones). min_new_tokens keeps an end-of-text token from ending a
    # row early: the reference never stops before the length either.
    new = max(budgets)
    gen = model.generate(
        input_ids=ids.to(handle.device),
        attention_mask=mask.to(handle.device),
        do_sample=True,
        top_k=5,
        temperature=1.0,
        top_p=None,
        max_new_tokens=new,
        min_new_tokens=new,
        pad_token_id=tok.pad_token_id,
    )
    return [e + gen[i, width : width + b].tolist() for i, (e, b) in enumerate(zip(enc, budgets))]
