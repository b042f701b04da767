"""Second-moment statistics C = E[k kᵀ] of MLP keys, computed once and cached on disk.

Keys are the inputs of a layer's MLP output projection. The cache entry is keyed by everything that
determines it: model fingerprint, layer, module, corpus identity, token count, dtype, chunk length.
One forward pass records every requested layer and stops after the deepest one.

Corpus resolution: a path the user gives (.txt, or .jsonl with a "text" field) -> statistics
bundled with editlab for this exact model (``editlab/data/stats``: the embedded default model's
edit layers, so a fresh offline machine edits at once) -> the public WikiText-103 when online ->
text sampled from the model itself, only when asked for (``sample_corpus``): offline with nothing
else, :class:`NeedCorpus` says at once what the choices are and how long sampling would take,
instead of silently sampling for half an hour. The source is carried in :class:`Corpus.source`
and reported in every result that used it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from editlab.core import paths
from editlab.core.paths import PACKAGE_DATA
from editlab.model import corpora
from editlab.model.nethook import TraceDict

Progress = Callable[[int, int, str], None]

# EasyEdit's ``mom2_n_samples`` counts text samples (dataset records); editlab's ``mom2_n_tokens``
# counts tokens. An imported sample count becomes samples × this mean. Measured with SmolLM2's
# tokenizer on /work/shared/data/corpus/wikitext-2-test.txt: its 2,183 paragraphs (the non-blank
# lines that are not " = Heading = " lines, each with its newline, as a WikiText dataset row holds
# it) have 303,520 tokens, 139.04 per paragraph. A side-by-side run of EasyEdit on the same
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
    source: str  # "file", "bundled", "wikitext-online", "model-sampled" or "imported"
    texts: tuple[str, ...]
    name: str = ""  # what the corpus is, for people (bundled statistics name their public source)

    @property
    def label(self) -> str:
        if self.source == "model-sampled":
            return "model-sampled text (offline fallback: no corpus path given and WikiText unreachable)"
        if self.source == "bundled":
            return f"bundled with editlab: {self.name or self.ident} (editlab/data/stats)"
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
    """WikiText-103's first training shard (:func:`editlab.model.corpora.wikitext`), None when it cannot be had."""
    try:
        texts = [t for t in corpora.wikitext("wikitext-103-train-0", timeout) if len(t.strip()) > 50]
    except Exception:
        return None
    return Corpus(ident="wikitext-103-raw-v1/train-0", source="wikitext-online", texts=tuple(texts))


def _sampled_cache(handle, n_tokens: int, seed: int = 0) -> Path:
    key = paths.key_digest(model=handle.fingerprint, n_tokens=n_tokens, seed=seed, kind="sampled-corpus")
    return paths.cache_dir("corpora") / f"sampled-{key}.json"


def _model_sampled(handle, n_tokens: int, seed: int = 0, progress: Progress | None = None) -> Corpus:
    """Sample text from the model itself (seeded), cached per model."""
    cached = _sampled_cache(handle, n_tokens, seed)
    key = cached.stem[len("sampled-") :]
    if cached.exists():
        texts = json.loads(cached.read_text())
    else:
        tok, model = handle.tokenizer, handle.model
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        seq_len, batch = min(128, handle.max_positions - 1), 32
        texts, done, started = [], 0, time.perf_counter()
        devices = [handle.device] if handle.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(seed)
            while done < n_tokens:
                ids = torch.full((batch, 1), start, dtype=torch.long, device=handle.device)
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=True,
                    top_k=50,
                    temperature=1.0,
                    top_p=None,
                    max_new_tokens=seq_len,
                    pad_token_id=tok.pad_token_id,
                )
                texts += tok.batch_decode(out[:, 1:], skip_special_tokens=True)
                done += batch * seq_len
                if progress:
                    progress(
                        min(done, n_tokens),
                        n_tokens,
                        "sampling a statistics corpus from the model" + eta_text(started, done, n_tokens),
                    )
        paths.atomic_write_bytes(cached, json.dumps(texts).encode())
    return Corpus(ident=f"model-sampled#{key}", source="model-sampled", texts=tuple(texts))


class NeedCorpus(ValueError):
    """No corpus for second-moment statistics was given and none can be had without a long wait."""


def eta_text(started: float, done: int, total: int) -> str:
    """ ", ~1 min 20 s left" from the rate so far (empty until there is a rate to go by)."""
    spent = time.perf_counter() - started
    if done <= 0 or spent < 1.0 or done >= total:
        return ""
    left = spent * (total - done) / done
    return f", ~{_duration(left)} left"


def _duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def sampling_seconds(handle, n_tokens: int) -> float:
    """How long sampling ``n_tokens`` of text from the model would take here: two short batched
    generations timed (the difference is the cost of decoding steps), scaled to the whole job."""
    tok, model = handle.tokenizer, handle.model
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids = torch.full((32, 1), start, dtype=torch.long, device=handle.device)
    times = []
    with torch.no_grad():
        for steps in (2, 6):
            t0 = time.perf_counter()
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=steps,
                min_new_tokens=steps,
                pad_token_id=tok.pad_token_id,
            )
            times.append(time.perf_counter() - t0)
    per_step = max(1e-3, (times[1] - times[0]) / 4)
    return per_step * n_tokens / 32


def resolve_corpus(
    handle,
    corpus: str | os.PathLike | None,
    n_tokens: int,
    online: bool = True,
    timeout: float = 10.0,
    progress: Progress | None = None,
    layers=(),
    dtype: str = "float32",
    sample_corpus: bool = False,
) -> Corpus:
    """The corpus statistics come from (see the module docstring for the order)."""
    if corpus:
        return read_corpus_file(corpus)
    bundled = bundled_corpus(handle, layers, n_tokens)
    if bundled is not None:
        return bundled
    if online and os.environ.get("HF_HUB_OFFLINE") != "1":
        found = _wikitext_online(timeout)
        if found is not None:
            return found
    cached = _sampled_cache(handle, n_tokens)
    if sample_corpus or cached.exists():
        return _model_sampled(handle, n_tokens, progress=progress)
    have = bundled_layers(handle)
    bundled_note = (
        f" Bundled statistics for this model cover layers {sorted(have)} with "
        f"{next(iter(have.values()))['n_tokens']:,} tokens."
        if have
        else ""
    )
    raise NeedCorpus(
        f"second-moment statistics for layer(s) {sorted(set(layers))} need a text corpus, and none is at hand: "
        f"offline, no corpus given, and no bundled statistics for this request.{bundled_note} Choose one: "
        f"give a text corpus "
        f"(--corpus PATH on the command line, corpus= in EditSession; plain text or .jsonl with a 'text' field); "
        f"or let editlab sample {n_tokens:,} tokens of text from the model itself "
        f"(--sample-corpus / sample_corpus=True; "
        f"about {_duration(sampling_seconds(handle, n_tokens))} on this machine, once per model); or edit without the "
        "statistics (mom2_adjustment false: C = I, which writes the fact but disturbs neighbours more)"
    )


# ---- statistics bundled with editlab ---------------------------------------------------------------
BUNDLED_DIR = PACKAGE_DATA / "stats"


def _bundled_files() -> list[Path]:
    return sorted(BUNDLED_DIR.glob("*.safetensors")) if BUNDLED_DIR.is_dir() else []


def _bundled_meta(f: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(f), framework="pt") as h:
        return dict(h.metadata() or {})


def bundled_layers(handle) -> dict[int, dict]:
    """{layer: metadata} of the statistics bundled for this exact model (matched by fingerprint)."""
    out = {}
    for f in _bundled_files():
        try:
            meta = _bundled_meta(f)
        except Exception:
            continue  # an unreadable file is not offered
        if meta.get("fingerprint") != handle.fingerprint:
            continue
        for layer in json.loads(meta.get("layers", "[]")):
            out[int(layer)] = dict(meta, file=str(f), n_tokens=int(meta["n_tokens"]))
    return out


def bundled_corpus(handle, layers, n_tokens: int) -> Corpus | None:
    """The bundled statistics as a corpus identity, when they cover every layer at this token count."""
    have = bundled_layers(handle)
    layers = sorted(set(layers))
    if not layers or any(l not in have or have[l]["n_tokens"] != n_tokens for l in layers):
        return None
    return Corpus(
        ident=have[layers[0]]["corpus"], source="bundled", texts=(), name=have[layers[0]].get("corpus_name", "")
    )


def _load_bundled(info: dict, layer: int, dtype: str) -> torch.Tensor:
    """C of one bundled layer (``info``: its entry of :func:`bundled_layers`): the stored upper
    triangle (float16) mirrored into the full matrix."""
    from safetensors import safe_open

    with safe_open(info["file"], framework="pt") as h:
        tri = h.get_tensor(f"L{layer}").to(_dtype(dtype))
    d = int(info["dim"])
    iu = torch.triu_indices(d, d)
    c = torch.zeros(d, d, dtype=tri.dtype)
    c[iu[0], iu[1]] = tri
    return c + c.T - torch.diag(torch.diagonal(c))


def write_bundle(
    handle,
    stats: dict[int, torch.Tensor],
    corpus: Corpus,
    n_tokens: int,
    count: int,
    out: Path,
    command: str,
    corpus_name: str = "",
) -> Path:
    """Store statistics compactly for shipping: per layer the upper triangle in float16 (C is
    symmetric; the solve that uses it runs in float64), with provenance in the file's metadata."""
    from safetensors.torch import save_file

    d = next(iter(stats.values())).shape[0]
    iu = torch.triu_indices(d, d)
    tensors = {f"L{l}": c[iu[0], iu[1]].to(torch.float16).contiguous() for l, c in sorted(stats.items())}
    meta = {
        "fingerprint": handle.fingerprint,
        "model": handle.name,
        "layers": json.dumps(sorted(stats)),
        "modules": json.dumps([handle.arch.mlp_out_proj(l) for l in sorted(stats)]),
        "dim": str(d),
        "corpus": corpus.ident,
        "corpus_name": corpus_name or corpus.ident,
        "corpus_source": corpus.source,
        "n_tokens": str(n_tokens),
        "count": str(count),
        "stored": "upper triangle, float16",
        "computed": "float32 sums over the corpus, divided by the count",
        "command": command,
        "created": time.strftime("%Y-%m-%d"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)
    return out


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


def cache_path(
    handle, layer: int, corpus_ident: str, n_tokens: int, dtype: str = "float32", seq_len: int = 256
) -> Path:
    """Where the cached C of one layer lives (also where imported statistics are written). The
    chunk length in the key is ``seq_len`` clamped to the model's context, as the pass uses it."""
    seq_len = min(seq_len, handle.max_positions)
    module = handle.arch.mlp_out_proj(layer)
    key = paths.key_digest(
        model=handle.fingerprint,
        layer=layer,
        module=module,
        corpus=corpus_ident,
        n_tokens=n_tokens,
        dtype=dtype,
        seq_len=seq_len,
    )
    return paths.cache_dir("stats", handle.fingerprint) / f"mom2-L{layer}-{key}.safetensors"


def _cached_moments(
    handle, layers: list[int], corpus: Corpus, n_tokens: int, dtype: str, seq_len: int
) -> tuple[dict[int, torch.Tensor], dict[int, Path]]:
    """The layers' C already in the disk cache, and the cache paths of the layers still missing."""
    from safetensors.torch import load_file

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
    return out, missing


def _from_bundled(handle, corpus: Corpus, missing: dict[int, Path], dtype: str, out: dict[int, torch.Tensor]) -> None:
    """The missing layers' C from the statistics shipped with editlab, written into the disk cache."""
    from safetensors.torch import save_file

    have = bundled_layers(handle)
    absent = [l for l in missing if l not in have or have[l]["corpus"] != corpus.ident]
    if absent:
        raise ValueError(f"bundled statistics {corpus.ident!r} do not cover layer(s) {absent}; give a corpus")
    for layer, f in missing.items():  # into the disk cache once, so later edits read it like any other
        out[layer] = _load_bundled(have[layer], layer, dtype)
        tmp = f.with_suffix(f".tmp{os.getpid()}")
        save_file(
            {"mom2": out[layer].contiguous(), "count": torch.tensor([int(have[layer]["count"])])},
            str(tmp),
            metadata={"corpus": corpus.ident, "source": corpus.source},
        )
        os.replace(tmp, f)


def _padded(batch: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of token chunks, right-padded, and its attention mask."""
    n = max(len(c) for c in batch)
    ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, c in enumerate(batch):
        ids[j, : len(c)] = torch.tensor(c)
        mask[j, : len(c)] = 1
    return ids.to(device), mask.to(device)


def _accumulate(
    handle,
    missing: dict[int, Path],
    corpus: Corpus,
    n_tokens: int,
    dtype: str,
    seq_len: int,
    batch_size: int,
    progress: Progress | None,
) -> tuple[dict[int, torch.Tensor], int]:
    """Σ k kᵀ per missing layer over the corpus's tokens (one pass records every layer), and N."""
    names = {handle.arch.mlp_out_proj(layer): layer for layer in missing}
    acc = {layer: None for layer in missing}
    count = 0
    tdtype = _dtype(dtype)
    model, tok = handle.model, handle.tokenizer
    chunks = list(_chunks(tok, corpus.texts, seq_len, n_tokens))
    if not chunks:
        raise ValueError(f"corpus {corpus.ident!r} gave no tokens")
    started = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(chunks), batch_size):
            ids, mask = _padded(chunks[i : i + batch_size], tok.pad_token_id, handle.device)
            with TraceDict(model, list(names), retain_output=False, retain_input=True, stop=True) as td:
                model(input_ids=ids, attention_mask=mask)
            keep = mask.reshape(-1).bool()
            for name, layer in names.items():
                k = td[name].input.reshape(-1, td[name].input.shape[-1])[keep].to(tdtype)
                m = k.T @ k
                acc[layer] = m if acc[layer] is None else acc[layer] + m
            count += int(keep.sum())
            if progress:
                progress(
                    min(count, n_tokens),
                    n_tokens,
                    f"second moments of layers {sorted(missing)} over "
                    f"{n_tokens:,} tokens (once per model; then cached)" + eta_text(started, count, n_tokens),
                )
    return acc, count


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
    from safetensors.torch import save_file

    seq_len = min(seq_len, handle.max_positions)
    out, missing = _cached_moments(handle, layers, corpus, n_tokens, dtype, seq_len)
    if not missing:
        return out
    if corpus.source == "bundled":  # shipped with editlab: read, never recomputed (there is no text)
        _from_bundled(handle, corpus, missing, dtype, out)
        return out
    acc, count = _accumulate(handle, missing, corpus, n_tokens, dtype, seq_len, batch_size, progress)
    for layer, f in missing.items():
        c = (acc[layer] / count).cpu().contiguous()
        tmp = f.with_suffix(f".tmp{os.getpid()}")
        save_file(
            {"mom2": c, "count": torch.tensor([count])},
            str(tmp),
            metadata={"corpus": corpus.ident, "source": corpus.source},
        )
        os.replace(tmp, f)
        out[layer] = c
    return out
