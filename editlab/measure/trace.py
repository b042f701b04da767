"""Causal tracing (Meng et al., 2022, "Locating and Editing Factual Associations in GPT", §2.1).

Three runs of the model on one prompt:

* the **clean** run, which gives the answer o with probability P[o];
* the **corrupted** run: the subject's token embeddings get Gaussian noise ε ~ N(0, ν²)
  (ν = 3 × the embeddings' standard deviation by default), giving P*[o], usually much lower;
* the **corrupted-with-restoration** run: as corrupted, except one hidden state h_i^(l) (token i,
  layer l) is put back to its clean value, giving P*,clean h_i^(l)[o].

The indirect effect of that state is IE = P*,clean h_i^(l)[o] − P*[o]. Three maps, as in the paper:
``residual`` restores one layer's output (the residual stream); ``mlp`` and ``attn`` restore the MLP
or attention output of a window of layers centred on l (10 by default: layers l−5 … l+4), which is
what shows the "early-site" MLPs at the subject's last token that ROME edits.

Efficiency: each forward pass carries many restorations at once (rows = restorations × noise
samples; every row gets the same noise sample set, so differences between restorations are not
noise-sample differences), and a state at a token before the subject is never traced: the corrupted
run's state there already equals the clean one (causal attention), so its effect is exactly zero.
Results are cached on disk per (model state, prompt, answer, settings); the model state is a key
the caller gives (``EditSession.state_key()``), or a digest of the current weights.

Every hook goes through :mod:`editlab.model.nethook`; modules come from the architecture map.
"""

from __future__ import annotations

import inspect
import itertools
import json
import math
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from editlab.core import paths
from editlab.core.limits import current as current_limits
from editlab.model.handle import weights_digest
from editlab.model.nethook import TraceDict
from editlab.model.tokens import target_ids

KINDS = ("residual", "mlp", "attn")
CACHE_VERSION = 1
DEFAULT_SAMPLES = 10
DEFAULT_NOISE_MULTIPLIER = 3.0
DEFAULT_WINDOW = 10
DEFAULT_BATCH_TOKENS = 4096


@dataclass(frozen=True)
class TraceResult:
    """The causal-tracing maps of one prompt on one model state.

    ``scores[kind]`` is a token × layer grid (lists) of the answer's probability after restoring that
    state in the corrupted run; :meth:`indirect_effect` subtracts ``p_corrupted``. ``tokens`` are
    the prompt's tokens as text; ``subject_range`` is [start, end) in token indices. The answer's
    probability is of the whole answer (teacher-forced; one token when the answer is the greedy
    next token), averaged over the noise samples as in the paper.
    """

    prompt: str
    subject: str
    answer: str
    answer_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    subject_range: tuple[int, int]
    p_clean: float
    p_corrupted: float
    noise: float
    samples: int
    window: int
    seed: int
    n_layers: int
    scores: Mapping[str, tuple[tuple[float, ...], ...]] = field(hash=False)
    state_key: str = ""
    seconds: float = 0.0
    cached_kinds: tuple[str, ...] = ()
    prefix_tokens: int = 0  # tokens of context before the prompt (a prompt edit's, IKE): run, not shown

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k in KINDS if k in self.scores)

    @property
    def subject_last(self) -> int:
        """Index of the subject's last token: the "decisive token" ROME edits at."""
        return self.subject_range[1] - 1

    def probabilities(self, kind: str) -> np.ndarray:
        """[tokens, layers] restored probability; NaN where a token was not traced."""
        self._check(kind)
        return np.array([[np.nan if v is None else v for v in row] for row in self.scores[kind]], dtype=np.float64)

    def indirect_effect(self, kind: str) -> np.ndarray:
        """[tokens, layers]: P*,clean h_i^(l)[o] − P*[o]."""
        return self.probabilities(kind) - self.p_corrupted

    def subject_last_effect(self, kind: str) -> np.ndarray:
        """Indirect effect at the subject's last token, per layer (averaged over noise samples)."""
        return self.indirect_effect(kind)[self.subject_last]

    def peak_layer(self, kind: str) -> int | None:
        """The layer whose restoration at the subject's last token recovers the most."""
        e = self.subject_last_effect(kind)
        return None if np.isnan(e).all() else int(np.nanargmax(e))

    def _check(self, kind: str) -> None:
        if kind not in self.scores:
            raise KeyError(f"this trace has no {kind!r} map; it has: {', '.join(self.kinds) or 'none'}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scores"] = {k: [list(r) for r in v] for k, v in self.scores.items()}
        d["indirect_effect"] = {k: _nan_to_none(self.indirect_effect(k).tolist()) for k in self.kinds}
        d["subject_last_effect"] = {k: _nan_to_none(self.subject_last_effect(k).tolist()) for k in self.kinds}
        d["peak_layer"] = {k: self.peak_layer(k) for k in self.kinds}
        d["subject_last"] = self.subject_last
        return d

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict) -> TraceResult:
        names = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in names}
        kw["scores"] = {k: tuple(tuple(r) for r in v) for k, v in d["scores"].items()}
        for k in ("answer_ids", "tokens", "subject_range", "cached_kinds"):
            kw[k] = tuple(kw.get(k, ()))
        return cls(**kw)


def _nan_to_none(x):
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return None if isinstance(x, float) and math.isnan(x) else x


# ---- inputs -----------------------------------------------------------------------------------
def subject_token_range(tokenizer, prompt: str, subject: str) -> tuple[list[int], tuple[int, int]]:
    """The prompt's token ids and the [start, end) token range of the subject's last occurrence."""
    pos = prompt.rfind(subject)
    if not subject or pos < 0:
        raise ValueError(f"subject {subject!r} does not occur in prompt {prompt!r}")
    end_char = pos + len(subject)
    enc = tokenizer(prompt, return_offsets_mapping=True)
    hit = [i for i, (a, b) in enumerate(enc.offset_mapping) if b > a and a < end_char and b > pos]
    if not hit:
        raise ValueError(f"could not find the tokens of subject {subject!r} in {prompt!r}")
    return list(enc.input_ids), (hit[0], hit[-1] + 1)


def context_tokens(tokenizer, text: str, n_chars: int) -> int:
    """How many leading tokens of ``text`` lie wholly in its first ``n_chars`` characters (the
    context before a prompt); 0 when there is no context."""
    if n_chars <= 0:
        return 0
    offsets = tokenizer(text, return_offsets_mapping=True).offset_mapping
    return sum(1 for _ in itertools.takewhile(lambda ab: ab[1] <= n_chars, offsets))


def embedding_std(handle) -> float:
    """Standard deviation of the token embedding matrix: the noise unit (ROME uses 3 × this)."""
    with torch.no_grad():
        return float(handle.weight(handle.arch.embed).float().std())


def state_digest(handle) -> str:
    """Digest of every parameter's current bytes (tied weights once), after the unedited model's
    fingerprint: the model state as it is now (:func:`editlab.model.handle.weights_digest`).

    Costs one pass over the weights (~0.5 s for the 135M default on CPU); pass an explicit state
    key (``EditSession.state_key()``) to skip it.
    """
    return weights_digest(handle.model.parameters(), salt=handle.fingerprint)


def _hidden(output) -> torch.Tensor:
    """The hidden-state tensor of a module's output (attention blocks return a tuple)."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _unique_name(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _modules(handle, kind: str) -> list[str]:
    a = handle.arch
    get = {"residual": a.layer, "mlp": a.mlp, "attn": a.attn}[kind]
    return [get(i) for i in range(a.n_layers)]


def window_layers(layer: int, n_layers: int, window: int) -> range:
    """Layers restored for a window centred on ``layer`` (the paper's: l − w/2 … l + w/2 − 1)."""
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


class _Tracer:
    """One prompt, one answer, one noise draw: runs clean, corrupted and restored passes."""

    def __init__(
        self,
        handle,
        ids: list[int],
        subject_range: tuple[int, int],
        answer_ids: list[int],
        noise: float,
        samples: int,
        seed: int,
        batch_tokens: int,
    ):
        self.handle = handle
        self.model = handle.model
        self.embed = handle.arch.embed
        # Teacher forcing: the answer's tokens after the first are fed, so one pass scores them all.
        self.ids = list(ids) + list(answer_ids[:-1])
        self.n_prompt = len(ids)
        self.answer_ids = list(answer_ids)
        self.subject_range = subject_range
        self.samples = samples
        self.batch_tokens = batch_tokens
        self._use_cache = True
        gen = torch.Generator(device="cpu").manual_seed(seed)
        a, b = subject_range
        eps = torch.randn(samples, b - a, handle.hidden_size, generator=gen, dtype=torch.float32)
        self.eps = (noise * eps).to(device=handle.device, dtype=handle.dtype)
        self._keep = "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def _answer_prob(self, input_ids: torch.Tensor, cache=None) -> torch.Tensor:
        """Per-row probability of the whole answer (product of its teacher-forced token
        probabilities); ``cache`` holds the positions before ``input_ids``."""
        k = len(self.answer_ids)
        kw = {"logits_to_keep": k} if self._keep else {}
        n_past = len(self.ids) - input_ids.shape[1]
        mask = torch.ones(input_ids.shape[0], len(self.ids), dtype=torch.long, device=input_ids.device)
        if cache is not None:
            kw.update(past_key_values=cache, use_cache=True)
        elif n_past:
            raise ValueError("a suffix was given without the cache of its prefix")
        logits = self.model(input_ids=input_ids, attention_mask=mask, **kw).logits[:, -k:].float()
        lp = torch.log_softmax(logits, dim=-1)
        tgt = torch.tensor(self.answer_ids, device=lp.device)
        return lp.gather(-1, tgt.view(1, k, 1).expand(lp.shape[0], k, 1)).squeeze(-1).sum(-1).exp()

    @torch.no_grad()
    def clean(self, names: Sequence[str]) -> tuple[float, dict[str, torch.Tensor]]:
        """P[o] and the clean outputs [T, d] of ``names``."""
        inp = torch.tensor([self.ids], device=self.handle.device)
        with TraceDict(self.model, names, retain_output=True) as td:
            p = self._answer_prob(inp)
        states = {n: td[n].output[0].clone() for n in names}
        return float(p[0]), states

    def _noise_edit(self, start: int, rows_per_sample: int):
        """An edit_output hook adding ε to the subject's embeddings, for inputs beginning at
        absolute position ``start``; rows are sample-major (row s·R + r gets noise sample s)."""
        a, b = self.subject_range
        eps = self.eps.repeat_interleave(rows_per_sample, dim=0)

        def edit(output, name):
            if name == self.embed:
                h = _hidden(output)
                lo, hi = max(a, start), min(b, start + h.shape[1])
                if hi > lo:
                    h[:, lo - start : hi - start] += eps[:, lo - a : hi - a].to(h.dtype)  # corrupt the subject: x + ε
            return output

        return edit

    def _prefix_cache(self, start: int, runs: int):
        """Key/value cache of the corrupted run over positions [0, start), one copy per run.

        Positions before the first restored token are the same in every corrupted run, so they
        are computed once (S rows) instead of once per restoration. None when ``start`` is 0 or
        the model returns no cache we can repeat."""
        if start == 0 or not self._use_cache:
            return None
        inp = torch.tensor([self.ids[:start]], device=self.handle.device).expand(self.samples, start)
        kw = {"logits_to_keep": 1} if self._keep else {}
        with TraceDict(self.model, [self.embed], retain_output=False, edit_output=self._noise_edit(0, 1)):
            out = self.model(input_ids=inp, attention_mask=torch.ones_like(inp), use_cache=True, **kw)
        cache = getattr(out, "past_key_values", None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            self._use_cache = False
            return None
        cache.batch_repeat_interleave(runs)
        return cache

    @torch.no_grad()
    def restored(
        self,
        runs: Sequence[Mapping[str, Sequence[int]]],
        clean: Mapping[str, torch.Tensor],
        progress: Callable[[int], None] | None = None,
    ) -> list[float]:
        """For each run ({module: tokens to restore}; {} = plain corrupted run), the answer's
        probability averaged over the noise samples. Runs are grouped by their first restored
        token, whose prefix comes from one shared corrupted cache."""
        S, T = self.samples, len(self.ids)
        out: list[float | None] = [None] * len(runs)
        groups: dict[int, list[int]] = {}
        for i, run in enumerate(runs):
            toks = [t for ts in run.values() for t in ts]
            groups.setdefault(min(toks, default=self.n_prompt - 1), []).append(i)
        for start, members in sorted(groups.items()):
            per_pass = max(1, self.batch_tokens // max(1, T - start) // S)
            for c in range(0, len(members), per_pass):
                chunk = members[c : c + per_pass]
                R = len(chunk)
                cache = self._prefix_cache(start, R)
                first = start if cache is not None else 0
                masks: dict[str, torch.Tensor] = {}
                for r, i in enumerate(chunk):
                    for name, toks in runs[i].items():
                        m = masks.setdefault(name, torch.zeros(S, R, T - first, dtype=torch.bool))
                        m[:, r, [t - first for t in toks]] = True
                dev = self.handle.device
                where = {
                    n: tuple(x.to(dev) for x in m.view(S * R, -1).nonzero(as_tuple=True)) for n, m in masks.items()
                }
                corrupt = self._noise_edit(first, R)

                def edit(output, name):
                    if name == self.embed:
                        return corrupt(output, name)  # noqa: B023 (used within this iteration)
                    h = _hidden(output)
                    ri, ti = where[name]  # noqa: B023 (used within this iteration)
                    # restore the clean h_i^(l)
                    h[ri, ti] = clean[name][ti + first]  # noqa: B023 (used within this iteration)
                    return output

                inp = torch.tensor([self.ids[first:]], device=dev).expand(S * R, T - first)
                with TraceDict(self.model, [self.embed] + list(masks), retain_output=False, edit_output=edit):
                    p = self._answer_prob(inp, cache)
                for i, v in zip(chunk, p.view(S, R).mean(0).tolist()):
                    out[i] = v
                if progress is not None:
                    progress(R)
        return out


# ---- the trace ----------------------------------------------------------------------------------
def resolve_answer(handle, prompt: str, answer: str | None) -> tuple[str, list[int]]:
    """The answer's text and token ids; ``None`` → the model's greedy next token. An answer given
    but empty, invisible or holding control characters is refused (never silently replaced by the
    greedy token)."""
    if answer is not None:
        from editlab.facts.fact import visible

        if not isinstance(answer, str):
            raise ValueError(f"the answer to trace must be text, got {type(answer).__name__}")
        if not visible(answer) or any(unicodedata.category(c) == "Cc" for c in answer.strip()):
            raise ValueError(
                "the answer to trace is empty, invisible or holds a control character: give the "
                "answer's text, or leave it out to trace the model's own next token"
            )
        current_limits().check("max_target_chars", len(answer), "the answer to trace")
        ids = target_ids(handle.tokenizer, answer)
        return handle.tokenizer.decode(ids), ids
    ids = handle.tokenizer(prompt).input_ids
    with torch.no_grad():
        logits = handle.model(input_ids=torch.tensor([ids], device=handle.device)).logits[0, -1]
    tok = int(logits.argmax())
    return handle.tokenizer.decode([tok]), [tok]


def restored_probability(
    handle,
    prompt: str,
    subject: str,
    answer: str | None = None,
    restore: Mapping[str, Sequence[int]] | None = None,
    samples: int = DEFAULT_SAMPLES,
    noise: float | None = None,
    noise_multiplier: float = DEFAULT_NOISE_MULTIPLIER,
    seed: int = 0,
) -> dict:
    """One corrupted run with any set of states restored (``{module name: [token indices]}``).

    The primitive behind the maps (the reference code's ``trace_with_patch``). Returns
    ``{"p_clean", "p_corrupted", "p_restored", "answer"}``.
    """
    with handle.lock:
        ids, rng = subject_token_range(handle.tokenizer, prompt, subject)
        answer_text, answer_ids = resolve_answer(handle, prompt, answer)
        noise = noise_multiplier * embedding_std(handle) if noise is None else float(noise)
        tr = _Tracer(handle, ids, rng, answer_ids, noise, samples, seed, DEFAULT_BATCH_TOKENS)
        restore = {n: list(t) for n, t in (restore or {}).items()}
        p_clean, clean = tr.clean(_unique_name(restore))
        p_corrupted, p_restored = tr.restored([{}, restore], clean)
    return {"p_clean": p_clean, "p_corrupted": p_corrupted, "p_restored": p_restored, "answer": answer_text}


def _runs(handle, kind: str, tokens: Sequence[int], window: int) -> list[dict[str, list[int]]]:
    """One restoration per (token, layer), in token-major order."""
    n = handle.arch.n_layers
    names = _modules(handle, kind)
    runs = []
    for t in tokens:
        for layer in range(n):
            if kind == "residual":
                runs.append({names[layer]: [t]})
            else:
                runs.append({names[j]: [t] for j in window_layers(layer, n, window)})
    return runs


def trace_tokens(spec, n_prompt: int, subject_range: tuple[int, int]) -> list[int]:
    """Which prompt tokens to trace: ``None``/``"all"`` (every token from the subject on; earlier
    ones have no effect by causality), ``"subject"``, ``"subject_last"``, ``"last"`` or indices."""
    a, b = subject_range
    named = {
        None: range(a, n_prompt),
        "all": range(a, n_prompt),
        "subject": range(a, b),
        "subject_last": [b - 1],
        "last": [n_prompt - 1],
    }
    if isinstance(spec, str) or spec is None:
        if spec not in named:
            raise ValueError(f"tokens={spec!r}: use 'all', 'subject', 'subject_last', 'last' or a list of indices")
        return list(named[spec])
    out = sorted({int(t) + n_prompt if int(t) < 0 else int(t) for t in spec})
    if not out or out[0] < 0 or out[-1] >= n_prompt:
        raise ValueError(f"tokens={list(spec)!r}: indices must lie in 0..{n_prompt - 1}")
    return out


def _checked_kinds(
    kinds, samples: int, window: int, noise: float | None, noise_multiplier: float, prompt: str
) -> list[str]:
    """Step 1: the maps asked for, after refusing settings that cannot be traced."""
    kinds = list(KINDS) if kinds in ("all", None) else [kinds] if isinstance(kinds, str) else list(dict.fromkeys(kinds))
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"trace kind {k!r} is not one of {', '.join(KINDS)} (or 'all')")
    if samples < 1:
        raise ValueError("samples must be at least 1")
    if window < 1:
        raise ValueError("window must be at least 1")
    if noise is not None and not (math.isfinite(noise) and noise > 0):
        raise ValueError(
            f"noise {noise!r}: the noise std must be a positive number (or unset for "
            f"noise_multiplier × the embeddings' std)"
        )
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ValueError(f"noise_multiplier {noise_multiplier!r}: must be a positive number (the reference uses 3)")
    limits = current_limits()
    limits.check("max_steps", samples, "trace samples")
    limits.check("max_prompt_chars", len(prompt), "the traced prompt's characters")
    return kinds


class _TraceJob:
    """One :func:`trace` call's shared state: the tokens, the answer, the disk cache and the rows."""

    def __init__(self, handle, kinds: list[str], samples: int, window: int, seed: int, cache: bool):
        self.handle = handle
        self.kinds = kinds
        self.samples = samples
        self.window = window
        self.seed = seed
        self.cache = cache
        self.stored: dict[str, dict] = {}
        self.p_clean = self.p_corrupted = None

    def locate(
        self,
        prompt: str,
        subject: str,
        answer: str | None,
        tokens,
        noise: float | None,
        noise_multiplier: float,
        state_key: str | None,
        prefix: str,
    ) -> None:
        """Step 2: the subject's tokens, the traced rows, the answer, the noise std and the state key."""
        handle = self.handle
        subject_token_range(handle.tokenizer, prompt, subject)  # the subject must be in the prompt itself
        self.ids, self.rng = ids, rng = subject_token_range(handle.tokenizer, prefix + prompt, subject)
        self.skip = skip = context_tokens(handle.tokenizer, prefix + prompt, len(prefix))
        self.wanted = [t + skip for t in trace_tokens(tokens, len(ids) - skip, (rng[0] - skip, rng[1] - skip))]
        self.answer_text, self.answer_ids = resolve_answer(handle, prefix + prompt, answer)
        self.noise = noise_multiplier * embedding_std(handle) if noise is None else float(noise)
        if state_key is None and self.cache:
            state_key = state_digest(handle)
        self.state_key = state_key
        self.n_layers = handle.arch.n_layers

    def read_cache(self) -> dict[str, list[int]]:
        """Step 3: the rows already on disk for this state and these settings; returns the rows still to compute."""
        self.base_key = dict(
            v=CACHE_VERSION,
            state=self.state_key,
            ids=self.ids,
            subject=list(self.rng),
            answer=self.answer_ids,
            samples=self.samples,
            noise=round(self.noise, 9),
            seed=self.seed,
            layers=self.n_layers,
        )
        self.folder = paths.cache_dir("trace") if self.cache else None
        for k in self.kinds:
            self.stored[k] = {}
            if self.folder is not None and self._path(k).exists():
                try:
                    d = json.loads(self._path(k).read_text())
                    self.stored[k] = {int(t): list(r) for t, r in d["rows"].items()}
                    self.p_clean, self.p_corrupted = d["p_clean"], d["p_corrupted"]
                except (OSError, ValueError, KeyError):
                    self.stored[k] = {}  # a damaged entry is recomputed
        todo = {k: [t for t in self.wanted if t >= self.rng[0] and t not in self.stored[k]] for k in self.kinds}
        return {k: ts for k, ts in todo.items() if ts}

    def _path(self, kind: str):
        """The cache file of one map (the window matters only to the MLP and attention maps)."""
        window = self.window if kind != "residual" else None
        return self.folder / (paths.key_digest(kind=kind, window=window, **self.base_key) + ".json")

    def compute(
        self,
        todo: dict[str, list[int]],
        batch_tokens: int,
        share_prefix: bool,
        progress: Callable[[int, int, str], None] | None,
    ) -> None:
        """Step 4: the clean and corrupted runs, then the missing rows of each map (stored to disk)."""
        handle, n_layers = self.handle, self.n_layers
        tr = _Tracer(handle, self.ids, self.rng, self.answer_ids, self.noise, self.samples, self.seed, batch_tokens)
        tr._use_cache = share_prefix
        names = _unique_name(n for k in todo for n in _modules(handle, k))
        self.p_clean, clean = tr.clean(names)
        [self.p_corrupted] = tr.restored([{}], clean)
        all_runs = {k: _runs(handle, k, ts, self.window) for k, ts in todo.items()}
        total, done = sum(len(r) for r in all_runs.values()), 0
        for k, ts in todo.items():

            def tick(n, k=k):
                nonlocal done
                done += n
                if progress is not None:
                    progress(done, total, f"tracing {k}")

            flat = tr.restored(all_runs[k], clean, tick)
            for i, t in enumerate(ts):
                self.stored[k][t] = flat[i * n_layers : (i + 1) * n_layers]
            if self.folder is not None:
                paths.atomic_write_bytes(
                    self._path(k),
                    json.dumps(
                        {"rows": self.stored[k], "p_clean": self.p_clean, "p_corrupted": self.p_corrupted}
                    ).encode(),
                )

    def scores(self) -> dict[str, tuple]:
        """Step 5: each map as a token × layer grid over the prompt (``None`` where not traced)."""
        n_layers, rng, stored = self.n_layers, self.rng, self.stored
        scores = {}
        for k in KINDS:
            if k in self.kinds:
                # Before the subject the corrupted state equals the clean one: restoring changes nothing.
                scores[k] = tuple(
                    tuple([self.p_corrupted] * n_layers)
                    if t < rng[0]
                    else tuple(stored[k][t])
                    if t in stored[k] and t in self.wanted
                    else (None,) * n_layers
                    for t in range(self.skip, len(self.ids))
                )
        return scores

    def result(self, prompt: str, subject: str, scores: dict, todo: dict, t0: float) -> TraceResult:
        """Step 6: the :class:`TraceResult`, with the prompt's tokens and ranges less the context."""
        tok, ids, rng, skip = self.handle.tokenizer, self.ids, self.rng, self.skip
        return TraceResult(
            prompt=prompt,
            subject=subject,
            answer=self.answer_text,
            answer_ids=tuple(self.answer_ids),
            tokens=tuple(tok.decode([i]) for i in ids[skip:]),
            subject_range=(rng[0] - skip, rng[1] - skip),
            p_clean=float(self.p_clean),
            p_corrupted=float(self.p_corrupted),
            noise=self.noise,
            samples=self.samples,
            window=self.window,
            seed=self.seed,
            n_layers=self.n_layers,
            scores=scores,
            state_key=self.state_key or "",
            seconds=time.perf_counter() - t0,
            cached_kinds=tuple(k for k in self.kinds if k not in todo),
            prefix_tokens=skip,
        )


def trace(
    handle,
    prompt: str,
    subject: str,
    answer: str | None = None,
    kinds: Sequence[str] | str = KINDS,
    samples: int = DEFAULT_SAMPLES,
    noise: float | None = None,
    noise_multiplier: float = DEFAULT_NOISE_MULTIPLIER,
    window: int = DEFAULT_WINDOW,
    seed: int = 0,
    tokens: Sequence[int] | str | None = None,
    state_key: str | None = None,
    cache: bool = True,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    progress: Callable[[int, int, str], None] | None = None,
    share_prefix: bool = True,
    prefix: str = "",
) -> TraceResult:
    """Causal tracing of ``prompt`` → ``answer`` on the model as it is now.

    ``subject``: its (last) occurrence in the prompt gets the noise. ``answer``: default the model's
    greedy next token. ``kinds``: any of ``"residual"``, ``"mlp"``, ``"attn"`` (or ``"all"``).
    ``noise``: absolute noise std (default ``noise_multiplier`` × :func:`embedding_std`).
    ``window``: layers restored together for the MLP/attention maps. ``tokens``: which rows of the
    grid to compute (:func:`trace_tokens`; others are ``None``, except tokens before the subject,
    whose effect is exactly zero). ``state_key``: identifies the model state for the disk cache
    (``EditSession.state_key()``; default: a digest of the weights); rows are cached one token at
    a time, so a quick subject-last trace is reused by a later full one.
    ``progress(done, total, stage)`` is called after each batched forward pass. ``share_prefix``:
    compute the positions before a restored token once per noise sample (a key/value cache) rather
    than once per restoration — the same numbers up to float rounding, ~1.5× faster on a full map.
    ``prefix``: context before the prompt (a prompt edit's, IKE): it is run and never corrupted,
    and left out of the grid (``prefix_tokens`` says how many tokens it took). To trace a session's
    edited model use :func:`trace_session`, which passes its ``EditSession.edited()`` view.
    """
    kinds = _checked_kinds(kinds, samples, window, noise, noise_multiplier, prompt)
    t0 = time.perf_counter()
    job = _TraceJob(handle, kinds, samples, window, seed, cache)
    with handle.lock:
        job.locate(prompt, subject, answer, tokens, noise, noise_multiplier, state_key, prefix)
        todo = job.read_cache()
        if todo or job.p_clean is None:
            job.compute(todo, batch_tokens, share_prefix, progress)
    return job.result(prompt, subject, job.scores(), todo, t0)


def trace_session(session, prompt: str, subject: str, **kw) -> TraceResult:
    """:func:`trace` on a session's current (edited) model as every evaluator sees it
    (``EditSession.edited()``: weights, hooks, a prompt edit's context), cached under its state key."""
    with session.edited() as m:
        return trace(m.handle, prompt, subject, state_key=m.state_key(), prefix=m.prefix, **kw)
