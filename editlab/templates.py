"""Context templates: short generated prefixes ("The ... . {}") over which ROME/MEMIT average
keys and optimise values, so an edit generalises beyond the exact prompt.

Generated once per (model, lengths, seed) and cached on disk: re-generating them on every edit is
what made the reference ROME the slowest method.
"""
from __future__ import annotations

import json

import torch

from . import paths

STARTS = ("The", "Therefore", "Because", "I", "You")


def context_templates(handle, length_params=((10, 5),), seed: int = 0) -> list[str]:
    """``["{}"] + [generated + ". {}"]`` with n generations of length tokens per (length, n)."""
    key = paths.key_digest(model=handle.fingerprint, params=[list(p) for p in length_params], seed=seed)
    f = paths.cache_dir("templates") / f"{key}.json"
    if f.exists():
        return json.loads(f.read_text())
    tok, model = handle.tokenizer, handle.model
    out = ["{}"]
    devices = [handle.device] if handle.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for length, n in length_params:
            per = max(1, n // len(STARTS))
            prompts = [s for s in STARTS for _ in range(per)]
            enc = [tok(s, add_special_tokens=False).input_ids for s in prompts]
            width = max(len(e) for e in enc)
            ids = torch.full((len(enc), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, e in enumerate(enc):  # left padding for generation
                ids[i, width - len(e):] = torch.tensor(e)
                mask[i, width - len(e):] = 1
            gen = model.generate(
                input_ids=ids.to(handle.device), attention_mask=mask.to(handle.device), do_sample=True,
                top_k=5, temperature=1.0, top_p=None, max_new_tokens=length, pad_token_id=tok.pad_token_id,
            )
            for g in gen:
                text = tok.decode(g[g != tok.pad_token_id], skip_special_tokens=True)
                out.append(text.replace("{", " ").replace("}", " ").strip() + ". {}")
    paths.atomic_write_bytes(f, json.dumps(out).encode())
    return out
