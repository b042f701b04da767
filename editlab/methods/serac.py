"""SERAC: Semi-parametric Editing with a Retrieval-Augmented Counterfactual model (Mitchell et al.,
2022, "Memory-Based Model Editing at Scale", §3).

Three parts, and the base model's weights are never written:

* the **edit memory** — each edit kept as text (its prompt, its new answer) with the key the scope
  classifier computed for it;
* the **scope classifier** — for an input x and each stored edit e, P(x in scope of e); the edit
  with the highest probability is the one that applies, when that probability is above the
  threshold (0.5, SERAC's rule);
* the **counterfactual model** — answers an input in scope, told the edit; every input out of
  scope is answered by the base model as it is.

The classifier (:class:`ScopeClassifier`) is a small trained head over the frozen base model's
hidden states at one early layer: at each position t, the mean of the hidden states h_s over the
tokens s ≤ t, standardised, projected to a few hundred dimensions and normalised,

    g(x≤t) = W (mean_{s≤t} h_s − μ)/σ / ‖·‖          P(x≤t in scope of e) = σ(a · g(x≤t)ᵀ g(e) + b)

with g(e) the same embedding of the edit's prompt at its last token. This is SERAC's embedding
classifier (EasyEdit's ``cross_attend: false``: edits and inputs embedded apart, compared by
similarity with a learned scale), with the base model's own states in place of a separate
DistilBERT, so that nothing but the model is loaded; the edit's key is its prompt without the new
answer, as EasyEdit cuts the label off for decoder models. It is trained per model
(:mod:`editlab.methods.serac_train`); editlab ships one for the embedded default model.

The counterfactual model is the base model itself with the edit in context, ``New fact: <prompt>
<target_new>.`` before the input — EasyEdit's ``freeze_cntr: true`` variant, where the frozen base
model is conditioned on the edit, rather than a separately trained small model. For a 135M model
there is no smaller one to train, and conditioning on the edit's text keeps what SERAC needs of its
counterfactual model: it sees the edit and the input together, so it can answer a question about the
fact that is not the edit prompt — a paraphrase, a negated prompt ("... is not"). IKE
(:mod:`editlab.methods.ike`) also edits by context, but puts it before *every* prompt; here only the
inputs the classifier routes get it, the rest run unchanged. What it costs on the default model (the
provenance beside the shipped classifier has the numbers): the 135M model told the edit does not
always take it (efficacy below 1 where the classifier routed every prompt), and after "not" it says
the new answer nearly every time — the negation failure, now in the counterfactual model.

Routing is decided per position and causally: the logits at position t come from the base model
when x≤t is out of scope of every stored edit, else from the counterfactual model told the matched
edit. So a teacher-forced score of a target and the greedy decoding of the same text route every
position the same way, and an input out of scope gets bit for bit the base model's logits. The
router is one forward hook on the model, installed while the session is applied (:func:`attach`);
it reads the classifier's layer from the same pass (no extra pass for out-of-scope inputs) and, for
cached decoding, keeps the tokens and states seen so far per key/value cache.

Negated prompts are *in scope*: "The mother tongue of X is not" is about the edited fact, and the
counterfactual model, told the edit, is the part that has to get "not" right — the probes' PN
measures whether it does. The True/False probe, asked as a chat turn after few-shot demonstrations,
is mostly out of scope: the mean over the whole chat reads the demonstrations more than the
statement. What the probes read besides logits (causal tracing's hidden states, a pass given
embeddings instead of token ids) sees the base model.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from editlab.core import paths
from editlab.core.bounded import short
from editlab.facts.fact import Fact
from editlab.methods import trained
from editlab.methods.base import Capabilities, EditError, HParamsBase, MethodContext, Range
from editlab.methods.teacher import check_note, prompt_check
from editlab.methods.trained import file_sha256, file_stem, provenance  # noqa: F401  (public names of this module)
from editlab.model.handle import cache_kwargs, output_cache
from editlab.model.nethook import Trace

NAME = "serac"
# Several facts: one memory entry each (no joint write). The session state numbers the entries.
CAPABILITIES = Capabilities(sequential_state=True, hooks=True)

FORMAT = "editlab-serac-scope-1"
SHIPPED_DIR = paths.PACKAGE_DATA / "serac"
CONTEXT = "New fact: {statement}.\n"  # how the counterfactual model is told the edit
# What training the shipped classifier cost (its provenance has the exact figures): said when none is found.
TRAIN_COST_HINT = "about 10 minutes on 2 CPU cores for SmolLM2-135M"

_TRAINING_KEY = "a training hyperparameter of EasyEdit's SERAC trainer (editlab trains with `editlab train serac`)"
_CLASSIFIER_KEY = "a choice of the classifier's architecture, fixed by the trained classifier file"


@dataclass
class HParams(HParamsBase):
    archive: str | None = None  # a classifier file (.safetensors); None: the one trained for this model
    threshold: float = 0.5  # in scope when P(in scope) is above this (SERAC's 0.5)

    RANGES = {"threshold": Range(lo=0, hi=1, lo_open=True, hi_open=True, why="P(in scope) above which an edit applies")}
    EASYEDIT_NOT_USED = {
        **{
            key: _TRAINING_KEY
            for key in (
                "lr",
                "edit_lr",
                "lr_lr",
                "cedit",
                "cloc",
                "cbase",
                "dropout",
                "supervised",
                "soft_weighting",
                "train_base",
                "no_grad_layers",
                "checkpoint_grad",
                "freeze",
                "use_all_negatives",
                "accumulate_bs",
                "grad_clip",
                "opt",
                "max_iters",
                "max_epochs",
                "log_interval",
                "val_interval",
                "val_steps",
                "val_batch_size",
                "early_stop_patience",
                "early_stop_key",
                "eval_only",
                "final_eval",
                "model_save_pt",
                "save",
                "silent",
                "debug",
                "log_errors",
                "unlikelihood",
                "edit_bs",
                "half",
                "seed",
                "alg",
                "lora",
            )
        },
        **{key: _CLASSIFIER_KEY for key in ("cls_name", "cls_class", "cross_attend", "cos", "square", "bound_embeds")},
        "dist_heads": _CLASSIFIER_KEY,
        "small_name": "the counterfactual model is the base model told the edit in context (freeze_cntr: true)",
        "model_class": "the counterfactual model is the base model told the edit in context (freeze_cntr: true)",
        "tokenizer_class": "the base model's tokenizer is used",
        "tokenizer_name": "the base model's tokenizer is used",
        "freeze_cntr": "always true here: the counterfactual model is the frozen base model told the edit",
    }

    @classmethod
    def for_model(cls, handle) -> HParams:
        return cls()

    def validate(self, handle=None) -> None:
        if self.archive is not None and not isinstance(self.archive, str):
            raise ValueError(f"archive {short(self.archive)}: give the path of a classifier file as text")


def touched(handle, hp: HParams) -> list[str]:
    """SERAC writes no weight: the base model is used as it is."""
    return []


# ---- the scope classifier -------------------------------------------------------------------
def position_features(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[b, T, d] from hidden states [b, T, d] and the attention mask [b, T]: at each position t, the
    mean of h_s over the row's tokens s ≤ t. Causal: position t reads nothing after it.

    Measured against the alternatives on held-out CounterFact facts (SmolLM2-135M, 500 training
    records): adding h_t itself, or h_t alone, matched paraphrases as well but let far more
    neighbours (same relation, other subject) in; a deeper layer (8, 12, 16) did the same. The mean at
    an early layer keeps who the text is about, which is what separates an edit's scope from its
    neighbours'."""
    h = hidden.float()
    m = mask.to(h.dtype).unsqueeze(-1)
    return (h * m).cumsum(1) / m.cumsum(1).clamp_min(1.0)


class ScopeClassifier(nn.Module):
    """P(input in scope of edit) from the base model's hidden states at ``layer`` (module docstring)."""

    def __init__(self, d_model: int, layer: int, dim: int):
        super().__init__()
        self.layer, self.d_model, self.dim = int(layer), int(d_model), int(dim)
        self.register_buffer("mu", torch.zeros(d_model))
        self.register_buffer("sigma", torch.ones(d_model))
        self.proj = nn.Linear(d_model, dim, bias=False)
        self.scale = nn.Parameter(torch.tensor(5.0))  # a: how sharply similarity turns into probability
        self.bias = nn.Parameter(torch.tensor(-2.0))  # b: the similarity at which P = 1/2 is −b/a

    def embed_features(self, feats: torch.Tensor) -> torch.Tensor:
        """g: normalised projections of standardised position features [..., d] -> [..., dim]."""
        z = (feats.float() - self.mu) / self.sigma
        return nn.functional.normalize(self.proj(z), dim=-1)

    def embed(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """g(x≤t) at every position: [b, T, dim]."""
        return self.embed_features(position_features(hidden, mask))

    def logits(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """a · g(x)ᵀ g(e) + b for queries [..., dim] against keys [K, dim]: [..., K]."""
        return self.scale * (queries @ keys.T) + self.bias

    def describe(self) -> dict:
        return {
            "layer": self.layer,
            "d_model": self.d_model,
            "dim": self.dim,
            "scale": float(self.scale.detach()),
            "bias": float(self.bias.detach()),
            "parameters": sum(p.numel() for p in self.parameters()),
        }


def new_classifier(handle, layer: int, dim: int, seed: int = 0) -> ScopeClassifier:
    """An untrained classifier for ``handle`` reading ``layer`` (the projection drawn from ``seed``)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return ScopeClassifier(handle.hidden_size, layer, dim)
    finally:
        torch.random.set_rng_state(state)


# ---- classifier files -----------------------------------------------------------------------


def save_classifier(classifier: ScopeClassifier, handle, path: Path) -> Path:
    """The classifier as safetensors, the model's fingerprint and the classifier's shape in its metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in classifier.state_dict().items()}
    meta = {
        "format": FORMAT,
        "model": str(handle.name),
        "fingerprint": handle.fingerprint,
        "d_model": str(classifier.d_model),
        "n_layers": str(handle.arch.n_layers),
        "layer": str(classifier.layer),
        "dim": str(classifier.dim),
    }
    save_file(tensors, str(path), metadata=meta)
    path.chmod(0o644)  # readable by all, like the rest of the package data
    return path


def classifier_metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_classifier(path: Path) -> tuple[ScopeClassifier, dict]:
    """The classifier in ``path`` (on CPU, float32) and its metadata; a file of another format is refused."""
    from safetensors.torch import load_file

    meta = classifier_metadata(path)
    if meta.get("format") != FORMAT:
        raise EditError(
            f"SERAC: {Path(path).name} is not a scope classifier file ({FORMAT}); give the .safetensors "
            "file that serac_train.train wrote"
        )
    clf = ScopeClassifier(int(meta["d_model"]), int(meta["layer"]), int(meta["dim"]))
    clf.load_state_dict(load_file(str(path)))
    clf.eval()
    return clf, meta


def user_dir() -> Path:
    """Where classifiers trained by a user go by default (the cache root's ``serac`` folder)."""
    return trained.user_dir("serac")


def classifier_files() -> list[Path]:
    """Classifier files an edit looks at: the ones shipped with editlab, then those in the cache root."""
    return trained.files("serac")


def find_classifier(handle, hp: HParams) -> tuple[Path, str | None]:
    """(the classifier file for this model, a note or None): ``hp.archive`` when given (a file trained
    for other weights of the same shape is used and said so), else the first shipped or cached
    classifier whose metadata carries this model's fingerprint. None found: an :class:`EditError`
    that says how to train one."""
    if hp.archive is not None:
        path = Path(str(hp.archive)).expanduser()
        if not path.is_file():
            raise EditError(
                f"SERAC: archive {short(str(hp.archive))} is not a file; give the .safetensors file "
                "that serac_train.train wrote"
            )
        meta = classifier_metadata(path)
        if meta.get("fingerprint") == handle.fingerprint:
            return path, None
        if meta.get("d_model") != str(handle.hidden_size) or meta.get("n_layers") != str(handle.arch.n_layers):
            raise EditError(
                f"SERAC: the classifier {path.name} was trained for {meta.get('model')!r} "
                f"(hidden size {meta.get('d_model')}, {meta.get('n_layers')} layers), which does not "
                f"fit the loaded {handle.name!r}; train one for it (serac_train.train)"
            )
        return path, (
            f"SERAC: the classifier {path.name} was trained on {meta.get('model')!r} (fingerprint "
            f"{meta.get('fingerprint')}), used here on {handle.name!r} ({handle.fingerprint})"
        )
    for path in classifier_files():
        try:
            meta = classifier_metadata(path)
        except Exception:  # a damaged cache entry is passed over, never trusted
            continue
        if meta.get("format") == FORMAT and meta.get("fingerprint") == handle.fingerprint:
            return path, None
    raise EditError(
        f"SERAC needs a scope classifier trained for this model, and none is shipped or cached for {handle.name!r} "
        f"(fingerprint {handle.fingerprint}). Train one: editlab train serac --model {handle.name} --data "
        f"counterfact-edit.json ({TRAIN_COST_HINT}; in Python serac_train.train); it is written to {user_dir()}, "
        "where the next edit finds it. Or give hparams archive: PATH "
        "to a classifier file trained for this model."
    )


# ---- the edit memory and the router ------------------------------------------------------------
@dataclass
class Entry:
    """One edit in memory: its key g(e), the context that tells the counterfactual model the edit
    (as text and as token ids) and the threshold it was made with."""

    id: str
    key: torch.Tensor
    context: str
    context_ids: tuple[int, ...]
    threshold: float
    subject: str
    prompt: str
    target_new: str


def _logit(p: float) -> float:
    return float(torch.logit(torch.tensor(p, dtype=torch.float64)))


@dataclass
class _Job:
    """One row's in-scope positions ``cols`` (of the pass's logits), the entry they matched, the
    counterfactual model's input ``seq`` and where those positions are in it (``at``)."""

    row: int
    entry: Entry
    cols: list[int]
    seq: list[int]
    at: list[int]


@dataclass
class _Seen:
    """What a cached decoding has run so far: the tokens and the classifier layer's states per row,
    and the counterfactual model's own caches per (row, entry)."""

    ids: torch.Tensor
    hidden: torch.Tensor
    counterfactual: dict


class Router:
    """The forward hook on the model that answers in-scope positions with the counterfactual model.

    Entries come from several edit records (``add``/``remove`` per record); the latest record's
    entry wins a tie (the same prompt edited again)."""

    def __init__(self, handle, classifier: ScopeClassifier, sha256: str):
        self.handle, self.classifier, self.sha256 = handle, classifier.to(handle.device), sha256
        self.entries: dict[object, list[Entry]] = {}
        self.capture: Trace | None = None
        self.busy = False
        self.last_routes: list[tuple[int, int, str]] = []  # (row, position, entry id) of the last pass
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._stack = None

    # membership
    def add(self, owner, entries: list[Entry]) -> None:
        self.entries[owner] = list(entries)
        self._stack = None

    def remove(self, owner) -> None:
        self.entries.pop(owner, None)
        self._stack = None

    def __len__(self):
        return sum(len(v) for v in self.entries.values())

    def stacked(self, device):
        """(entries, keys [K, dim], logit thresholds [K]), latest first so that argmax prefers it."""
        if self._stack is None or self._stack[0] != device:
            flat = [e for es in self.entries.values() for e in es][::-1]
            keys = torch.stack([e.key for e in flat]).to(device) if flat else None
            cuts = torch.tensor([_logit(e.threshold) for e in flat], device=device)
            self._stack = (device, flat, keys, cuts)
        return self._stack[1:]

    def scope(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For query embeddings [..., dim]: (in scope [...], the matched entry's index [...], its
        probability [...]). An entry matches when its logit is above its threshold's logit; of
        several, the one furthest above."""
        flat, keys, cuts = self.stacked(queries.device)
        logits = self.classifier.logits(queries.float(), keys.float())
        margin, which = (logits - cuts).max(-1)
        prob = torch.sigmoid(logits.gather(-1, which.unsqueeze(-1)).squeeze(-1))
        return margin > 0, which, prob

    # the hook
    def __call__(self, module, args, kwargs, output):
        if self.busy or not len(self):
            return None
        with torch.no_grad():
            found = self._route(args, kwargs, output)
        if found is None:
            return None
        # Written in the caller's grad mode: a method that trains through the model (GRACE, FT) while
        # this edit is attached keeps the gradient of every position the router leaves alone.
        new = output.logits.clone()
        for row, cols, cf in found:
            new[row, cols] = cf.to(new.dtype)
        output.logits = new
        return output

    def _route(self, args, kwargs, output) -> list | None:
        """The in-scope positions of this pass and their counterfactual logits, [(row, cols, logits)];
        None when nothing is in scope."""
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None or not hasattr(output, "logits"):
            return None  # a pass given embeddings: there are no tokens to route (module docstring)
        hidden = self.capture.output if self.capture is not None else None
        if hidden is None or tuple(hidden.shape[:2]) != tuple(ids.shape):
            raise RuntimeError("SERAC: the classifier layer's states of this pass were not recorded")
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        full_ids, full_hidden, seen = self._history(cache, ids, hidden)
        mask = kwargs.get("attention_mask")
        mask = torch.ones_like(full_ids) if mask is None else mask.to(full_ids.device)
        if tuple(mask.shape) != tuple(full_ids.shape):
            raise RuntimeError(
                f"SERAC: attention mask {tuple(mask.shape)} does not fit the sequence "
                f"{tuple(full_ids.shape)} (a cached decoding it did not see from its start?)"
            )
        logits = output.logits
        keep = logits.shape[1]
        queries = self.classifier.embed(full_hidden, mask)[:, -keep:]
        hit, which, _ = self.scope(queries)
        hit &= mask[:, -keep:].bool()
        self.last_routes = []
        if not bool(hit.any()):
            return None
        flat = self.stacked(queries.device)[0]
        real_index = mask.long().cumsum(1) - 1  # padded position -> index among the row's tokens
        n = full_ids.shape[1]
        groups: dict[tuple[int, int], list[int]] = {}
        for row, col in hit.nonzero().tolist():
            groups.setdefault((row, int(which[row, col])), []).append(col)
        jobs = []
        for (row, k), cols in groups.items():
            tokens = full_ids[row][mask[row].bool()].tolist()
            seq, at = self._counterfactual_input(flat[k], tokens, [int(real_index[row, n - keep + c]) for c in cols])
            jobs.append(_Job(row, flat[k], cols, seq, at))
        self.busy = True
        try:
            found = self._run_cached(jobs, seen) if seen is not None else self._run_batched(jobs)
        finally:
            self.busy = False
        self.last_routes = [(j.row, n - keep + c, j.entry.id) for j in jobs for c in j.cols]
        return [(j.row, j.cols, cf) for j, cf in zip(jobs, found)]

    def _history(self, cache, ids: torch.Tensor, hidden: torch.Tensor):
        """The whole sequence so far (ids [b, n], states [b, n, d]): this pass's, after what the same
        key/value cache ran before it."""
        if cache is None:
            return ids, hidden, None
        seen = self._seen.get(cache)
        past = int(cache.get_seq_length()) - ids.shape[1] if hasattr(cache, "get_seq_length") else 0
        if seen is None:
            if past > 0:
                raise RuntimeError("SERAC: a cached decoding whose start ran before the edit was attached")
            seen = _Seen(ids, hidden, {})
        else:
            if seen.ids.shape[0] != ids.shape[0] or seen.ids.shape[1] != past:
                raise RuntimeError(
                    "SERAC: a cached decoding whose rows were reordered or cut (beam search is not "
                    "supported with SERAC)"
                )
            seen = _Seen(torch.cat([seen.ids, ids], 1), torch.cat([seen.hidden, hidden], 1), seen.counterfactual)
        self._seen[cache] = seen
        return seen.ids, seen.hidden, seen

    def _counterfactual_input(self, entry: Entry, tokens: list[int], wanted: list[int]):
        """The counterfactual model's input for a row (the edit's context, then the row's tokens; after
        a leading BOS token, if any) and where the row's token indices ``wanted`` are in it."""
        bos = self.handle.tokenizer.bos_token_id
        lead = 1 if tokens and bos is not None and tokens[0] == bos else 0
        seq = tokens[:lead] + list(entry.context_ids) + tokens[lead:]
        at = [j + len(entry.context_ids) if j >= lead else j for j in wanted]
        return seq[: max(at) + 1], at

    def _run_batched(self, jobs: list[_Job], batch_size: int = 16) -> list[torch.Tensor]:
        """Each job's counterfactual logits [len(at), V], in left-padded batches (no cache)."""
        model, device = self.handle.model, self.handle.device
        pad = self.handle.tokenizer.pad_token_id
        out = []
        for i in range(0, len(jobs), batch_size):
            part = jobs[i : i + batch_size]
            n = max(len(j.seq) for j in part)
            ids = torch.full((len(part), n), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for r, j in enumerate(part):
                ids[r, n - len(j.seq) :] = torch.tensor(j.seq)
                mask[r, n - len(j.seq) :] = 1
            ids, mask = ids.to(device), mask.to(device)
            pos = (mask.cumsum(1) - 1).clamp_min(0)
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
            for r, j in enumerate(part):
                out.append(logits[r, [n - len(j.seq) + a for a in j.at]])
        return out

    def _run_cached(self, jobs: list[_Job], seen: _Seen) -> list[torch.Tensor]:
        """In a cached decoding the counterfactual model keeps its own cache per (row, entry), so each
        step runs only the row's new tokens."""
        model, device = self.handle.model, self.handle.device
        out = []
        for j in jobs:
            key = (j.row, j.entry.id)
            cf_cache, done = seen.counterfactual.get(key, (None, []))
            start = len(done)
            if cf_cache is None or done != j.seq[:start] or start > min(j.at):
                cf_cache, start = None, 0
            x = torch.tensor([j.seq[start:]], device=device)
            mask = torch.ones((1, len(j.seq)), dtype=torch.long, device=device)
            res = model(input_ids=x, attention_mask=mask, use_cache=True, **cache_kwargs(model, cf_cache))
            seen.counterfactual[key] = (output_cache(res), list(j.seq))
            out.append(res.logits[0, [a - start for a in j.at]])
        return out


def _find_router(model) -> Router | None:
    for hook in model._forward_hooks.values():
        if isinstance(hook, Router):
            return hook
    return None


@contextlib.contextmanager
def _router_on(handle, classifier: ScopeClassifier, sha256: str):
    """The router hooked on the model (and the classifier layer's states recorded), installed if
    absent; removed again when the one who installed it leaves."""
    router = _find_router(handle.model)
    if router is not None:
        if router.sha256 != sha256:
            raise EditError(
                "SERAC: this session's edits were made with another scope classifier; undo them or "
                "edit with the same classifier (archive)"
            )
        yield router
        return
    router = Router(handle, classifier, sha256)
    with Trace(handle.model, handle.arch.layer(classifier.layer), retain_output=True) as capture:
        router.capture = capture
        hook = handle.model.register_forward_hook(router, with_kwargs=True)
        try:
            yield router
        finally:
            hook.remove()
            router.capture = None


def _record_state(record) -> dict:
    state = record.info.get("serac")
    if not state:
        raise EditError(f"edit record {record.id} has no SERAC memory")
    return state


@contextlib.contextmanager
def attach(handle, record):
    """Put this record's edits in the memory while the session is applied (EditSession.applied).
    Yields '' (the router puts the edit before in-scope inputs only, not before every prompt)."""
    state = _record_state(record)
    with _router_on(handle, state["classifier"], state["classifier_sha256"]) as router:
        router.add(record.id, state["entries"])
        try:
            yield ""
        finally:
            router.remove(record.id)


@dataclass(frozen=True)
class State:
    """The session's next memory entry number: entry ids stay unique across its edits."""

    next_entry: int = 0


def forget(state: State, record) -> State:
    """An undone record's entries leave the memory with it (``attach``); their numbers are not reused."""
    return state


# ---- editing ----------------------------------------------------------------------------------
def context_for(fact: Fact) -> str:
    return CONTEXT.format(statement=fact.statement(fact.target_new).strip().rstrip("."))


@torch.no_grad()
def edit_keys(handle, classifier: ScopeClassifier, prompts: list[str]) -> torch.Tensor:
    """g(e) for each edit prompt: its embedding at its last token, from the model as it is now [n, dim]."""
    from editlab.methods.keys import pad_batch

    rows = [list(handle.tokenizer(p).input_ids) for p in prompts]
    ids, mask = pad_batch(rows, handle.tokenizer.pad_token_id, handle.device)
    with Trace(handle.model, handle.arch.layer(classifier.layer), stop=True) as tr:
        handle.model(input_ids=ids, attention_mask=mask)
    device = classifier.proj.weight.device
    emb = classifier.embed(tr.output.to(device), mask.to(device))
    return torch.stack([emb[i, len(r) - 1] for i, r in enumerate(rows)]).float().cpu()


def memory_entries(handle, classifier: ScopeClassifier, facts: list[Fact], threshold: float, first: int = 0):
    """One memory entry per fact, numbered from ``first``: its key g(e) and its context."""
    keys = edit_keys(handle, classifier, [f.prompt for f in facts])
    entries = []
    for n, (fact, key) in enumerate(zip(facts, keys), first):
        text = context_for(fact)
        ids = tuple(handle.tokenizer(text, add_special_tokens=False).input_ids)
        entries.append(Entry(f"m{n}", key, text, ids, float(threshold), fact.subject, fact.prompt, fact.target_new))
    return entries


@contextlib.contextmanager
def in_memory(handle, classifier: ScopeClassifier, sha256: str, entries: list[Entry]):
    """The model with ``entries`` in the edit memory for the block (outside a session: a training
    script's held-out scores, an edit's own check). Yields the router."""
    owner = object()
    with _router_on(handle, classifier, sha256) as router:
        router.add(owner, entries)
        try:
            yield router
        finally:
            router.remove(owner)


def apply(handle, facts: list[Fact], hp: HParams, ctx: MethodContext) -> dict:
    """Add one memory entry per fact (its key, its context). No weight is written; the entries are
    returned in the record (``info['serac']``) and routed to while the session is applied."""
    t0 = time.perf_counter()
    path, note = find_classifier(handle, hp)
    ctx.report(0, len(facts), f"SERAC: loading the scope classifier {path.name}")
    classifier, _ = load_classifier(path)
    sha = file_sha256(path)
    counter = (ctx.session_state or State()).next_entry
    entries = memory_entries(handle, classifier, facts, hp.threshold, counter)
    ctx.session_state = State(next_entry=counter + len(entries))
    ctx.report(len(facts), len(facts), "SERAC: checking the edit prompts")
    with in_memory(handle, classifier, sha, entries):
        checks = prompt_check(handle, facts)
    result = {
        "timings": {"memory_s": time.perf_counter() - t0},
        "serac": {
            "classifier": classifier,
            "classifier_sha256": sha,
            "classifier_file": str(path),
            "layer": classifier.layer,
            "entries": entries,
        },
        "memory_added": [{"id": e.id, "subject": e.subject, "context": e.context} for e in entries],
        "classifier_trained": _trained_summary(provenance(path)),
        "prompt_check": checks,
    }
    notes = [n for n in (note, check_note(NAME, checks)) if n]
    if notes:
        result["note"] = "; ".join(notes)
    return result


def _trained_summary(prov: dict) -> dict:
    keys = ("steps", "train_seconds", "heldout_scope", "heldout_edits")
    return {k: prov[k] for k in keys if k in prov}


__all__ = [
    "NAME",
    "CAPABILITIES",
    "HParams",
    "touched",
    "apply",
    "attach",
    "State",
    "forget",
    "ScopeClassifier",
    "Router",
    "Entry",
    "new_classifier",
    "save_classifier",
    "load_classifier",
    "find_classifier",
    "position_features",
    "edit_keys",
    "context_for",
    "provenance",
    "file_stem",
    "memory_entries",
    "in_memory",
    "file_sha256",
    "classifier_files",
    "user_dir",
]
