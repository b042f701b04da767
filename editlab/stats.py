"""Second-moment statistics C = E[k kᵀ] of MLP keys, computed once and cached on disk.

Keys are the inputs of a layer's MLP output projection. The cache entry is keyed by everything that
determines it: model fingerprint, layer, module, corpus identity, token count, dtype, chunk length.
One forward pass records every requested layer and stops after the deepest one.

Corpus resolution: a path the user gives (.txt, or .jsonl with a "text" field) -> the public
WikiText-103 when online -> text sampled from the model itself (offline fallback). The source is
carried in :class:`Corpus.source` and reported in every result that used it.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import paths
from .nethook import TraceDict

WIKITEXT_URL = (
    "https://huggingface.co/datasets/Salesforce/wikitext/resolve/main/"
    "wikitext-103-raw-v1/train-00000-of-00002.parquet"
)
Progress = Callable[[int, int, str], None]

# EasyEdit's ``mom2_n_samples`` counts text samples (dataset records); editlab's ``mom2_n_tokens``
# counts tokens. An imported sample count becomes samples × this mean. Measured with SmolLM2's
# tokenizer on /work/shared/data/corpus/wikitext-2-test.txt: its 2,183 paragraphs (the non-blank
# lines that are not " = Heading = " lines, each with its newline, as a WikiText dataset row holds
# it) have 303,520 tokens, 139.04 per paragraph. Issue 18's side-by-side run of EasyEdit on the same
# model gathered 135,620 keys from mom2_n_samples 1,000 (135.6 per sample), within 3% of it.
# Why paragraphs: WikiText, whose rows are paragraphs, is the corpus editlab computes statistics on,
# and a paragraph is what that run counted as a sample. Counting EasyEdit's records literally would
# give other figures: every WikiText row, blank lines and headings included, averages 71.3 tokens;
# a 'wikipedia' record (EasyEdit's default dataset) is a whole article, several times longer
# (not measured here: editlab does not download Wikipedia). The load report states the figure.
EASYEDIT_TOKENS_PER_SAMPLE = 139.0
EASYEDIT_TOKENS_PER_SAMPLE_SOURCE = "the mean of a WikiText paragraph on SmolLM2's tokenizer (wikitext-2 test)"


def easyedit_samples_to_tokens(n_samples: int) -> int:
    """The token count editlab uses for EasyEdit's ``mom2_n_samples`` (text samples)."""
    return int(round(int(n_samples) * EASYEDIT_TOKENS_PER_SAMPLE))


@dataclass(frozen=True)
class Corpus:
    """Text for statistics. ``ident`` names it in cache keys; ``source`` says where it came from."""

    ident: str
    source: str  # "file", "wikitext-online" or "model-sampled"
    texts: tuple[str, ...]

    @property
    def label(self) -> str:
        if self.source == "model-sampled":
            return "model-sampled text (offline fallback: no corpus path given and WikiText unreachable)"
        return f"{self.source}: {self.ident}"


def read_corpus_file(path: str | os.PathLike) -> Corpus:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"corpus file {str(p)!r} does not exist")
    digest = hashlib.sha256(p.read_bytes()[: 64 << 20]).hexdigest()[:16]
    if p.suffix == ".jsonl":
        texts = []
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                texts.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{p}: line {i} is not a JSON object with a 'text' field ({e})") from e
    else:
        texts = [t for t in p.read_text(encoding="utf-8", errors="replace").split("\n\n") if t.strip()]
    if not texts:
        raise ValueError(f"corpus file {str(p)!r} holds no text")
    return Corpus(ident=f"{p.name}#{digest}", source="file", texts=tuple(texts))


def _wikitext_online(timeout: float) -> Corpus | None:
    target = paths.cache_dir("corpora") / "wikitext-103-raw-train-0.parquet"
    if not target.exists():
        try:
            with urllib.request.urlopen(WIKITEXT_URL, timeout=timeout) as r:
                paths.atomic_write_bytes(target, r.read())
        except Exception:
            return None
    try:
        import pandas as pd

        texts = [t for t in pd.read_parquet(target)["text"].tolist() if len(t.strip()) > 50]
    except Exception:
        return None
    return Corpus(ident="wikitext-103-raw-v1/train-0", source="wikitext-online", texts=tuple(texts))


def _model_sampled(handle, n_tokens: int, seed: int = 0, progress: Progress | None = None) -> Corpus:
    """Sample text from the model itself (seeded), cached per model."""
    key = paths.key_digest(model=handle.fingerprint, n_tokens=n_tokens, seed=seed, kind="sampled-corpus")
    cached = paths.cache_dir("corpora") / f"sampled-{key}.json"
    if cached.exists():
        texts = json.loads(cached.read_text())
    else:
        tok, model = handle.tokenizer, handle.model
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        seq_len, batch = min(128, handle.max_positions - 1), 32
        texts, done = [], 0
        devices = [handle.device] if handle.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            while done < n_tokens:
                ids = torch.full((batch, 1), start, dtype=torch.long, device=handle.device)
                out = model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=50,
                    temperature=1.0, top_p=None, max_new_tokens=seq_len, pad_token_id=tok.pad_token_id,
                )
                texts += tok.batch_decode(out[:, 1:], skip_special_tokens=True)
                done += batch * seq_len
                if progress:
                    progress(min(done, n_tokens), n_tokens, "sampling corpus from the model")
        paths.atomic_write_bytes(cached, json.dumps(texts).encode())
    return Corpus(ident=f"model-sampled#{key}", source="model-sampled", texts=tuple(texts))


def resolve_corpus(handle, corpus: str | os.PathLike | None, n_tokens: int, online: bool = True,
                   timeout: float = 10.0, progress: Progress | None = None) -> Corpus:
    if corpus:
        return read_corpus_file(corpus)
    if online and os.environ.get("HF_HUB_OFFLINE") != "1":
        found = _wikitext_online(timeout)
        if found is not None:
            return found
    return _model_sampled(handle, n_tokens, progress=progress)


def _chunks(tokenizer, texts, seq_len: int, n_tokens: int):
    """Token chunks of seq_len, drawn from the texts in order, until n_tokens are covered."""
    buf: list[int] = []
    total = 0
    for t in texts:
        buf += tokenizer(t, add_special_tokens=False).input_ids
        while len(buf) >= seq_len:
            yield buf[:seq_len]
            total += seq_len
            buf = buf[seq_len:]
            if total >= n_tokens:
                return
    if buf and total < n_tokens:
        yield buf[: n_tokens - total]


def _dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def cache_path(handle, layer: int, corpus_ident: str, n_tokens: int, dtype: str = "float32", seq_len: int = 256) -> Path:
    """Where the cached C of one layer lives (also where imported statistics are written). The
    chunk length in the key is ``seq_len`` clamped to the model's context, as the pass uses it."""
    seq_len = min(seq_len, handle.max_positions)
    module = handle.arch.mlp_out_proj(layer)
    key = paths.key_digest(model=handle.fingerprint, layer=layer, module=module, corpus=corpus_ident,
                           n_tokens=n_tokens, dtype=dtype, seq_len=seq_len)
    return paths.cache_dir("stats", handle.fingerprint) / f"mom2-L{layer}-{key}.safetensors"


def second_moments(
    handle,
    layers: list[int],
    corpus: Corpus,
    n_tokens: int,
    dtype: str = "float32",
    seq_len: int = 256,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> dict[int, torch.Tensor]:
    """Return {layer: C} with C = (1/N) Σ k kᵀ over N corpus tokens (uncentred, as ROME's mom2)."""
    from safetensors.torch import load_file, save_file

    arch = handle.arch
    seq_len = min(seq_len, handle.max_positions)
    out: dict[int, torch.Tensor] = {}
    missing: dict[int, Path] = {}
    for layer in sorted(set(layers)):
        f = cache_path(handle, layer, corpus.ident, n_tokens, dtype, seq_len)
        if f.exists():
            try:
                out[layer] = load_file(str(f))["mom2"]
                continue
            except Exception:
                f.unlink(missing_ok=True)  # a corrupt entry is recomputed, never trusted
        missing[layer] = f
    if not missing:
        return out

    names = {arch.mlp_out_proj(layer): layer for layer in missing}
    acc = {layer: None for layer in missing}
    count = 0
    tdtype = _dtype(dtype)
    model, tok = handle.model, handle.tokenizer
    chunks = list(_chunks(tok, corpus.texts, seq_len, n_tokens))
    if not chunks:
        raise ValueError(f"corpus {corpus.ident!r} gave no tokens")
    with torch.no_grad():
        for i in range(0, len(chunks), batch_size):
            batch = chunks[i : i + batch_size]
            n = max(len(c) for c in batch)
            ids = torch.full((len(batch), n), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for j, c in enumerate(batch):
                ids[j, : len(c)] = torch.tensor(c)
                mask[j, : len(c)] = 1
            ids, mask = ids.to(handle.device), mask.to(handle.device)
            with TraceDict(model, list(names), retain_output=False, retain_input=True, stop=True) as td:
                model(input_ids=ids, attention_mask=mask)
            keep = mask.reshape(-1).bool()
            for name, layer in names.items():
                k = td[name].input.reshape(-1, td[name].input.shape[-1])[keep].to(tdtype)
                m = k.T @ k
                acc[layer] = m if acc[layer] is None else acc[layer] + m
            count += int(keep.sum())
            if progress:
                progress(min(count, n_tokens), n_tokens, f"second moments, layers {sorted(missing)}")
    for layer, f in missing.items():
        c = (acc[layer] / count).cpu().contiguous()
        tmp = f.with_suffix(f".tmp{os.getpid()}")
        save_file({"mom2": c, "count": torch.tensor([count])}, str(tmp), metadata={"corpus": corpus.ident, "source": corpus.source})
        os.replace(tmp, f)
        out[layer] = c
    return out
