"""GRACE: General Retrieval Adaptors for Continual Editing (Hartvigsen et al., 2023).

A codebook wraps one layer's MLP output projection. Each entry holds

    key  k   = the projection's input at the prompt's last token (what the layer "sees"),
    value v  = a replacement for the projection's output, trained so the model says target_new,
    radius ε = the deferral radius, and a label (target_new) for conflict handling.

At inference, at every position t whose input h_t lies within ε of its nearest key
(‖h_t − k‖₂ ≤ ε_k), the output at t is replaced by that key's value (``replace_last``); otherwise
the layer runs unchanged. A new key within ε + ε_k of an existing key with a *different* label
halves both radii (both end just short of the midpoint); with the *same* label the existing radius
grows to cover it (``eps_expand: coverage``) — GRACE's §3 rules.

No weight changes: the codebook lives in the session's edit records and is hooked onto the module
only while the session is applied (:func:`attach`). ``touched`` is empty, so undo/reset are exact
by construction; undoing a record removes its entries and any radius it shrank reverts.

Differences from EasyEdit's GRACE, on purpose: the query is matched per position (so teacher
forcing, batched probes and cached generation see the same adapter as training did, rather than a
``key_id`` left over from the last edit), and training runs with exactly the inference rule.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field

import torch

from editlab.core.bounded import short
from editlab.facts.fact import Fact
from editlab.methods.base import Capabilities, EditError, HParamsBase, MethodContext, coerce_numbers
from editlab.methods.teacher import batch, check_note, encode, prompt_check, target_nll

NAME = "grace"
# Several facts: one entry after another, as GRACE edits a stream. The session state numbers the entries.
CAPABILITIES = Capabilities(sequential_state=True, hooks=True)
REPLACEMENTS = ("replace_last", "replace_prompt", "replace_all")


def _layer_from_inner_params(value):
    """EasyEdit names the wrapped weight, e.g. ``model.layers[27].mlp.down_proj.weight``; editlab
    always wraps the MLP output projection, so only the layer number is taken."""
    from editlab.model.handle import FAMILIES

    names = value if isinstance(value, (list, tuple)) else [value]
    if len(names) != 1:
        raise ValueError(f"inner_params {short(value)}: GRACE here wraps exactly one layer")
    name = str(names[0]).replace("[", ".").replace("]", "")
    m = re.search(r"\.(\d+)\.", name)
    if not m:
        raise ValueError(f"inner_params {short(value)}: cannot find a layer number in it")
    out_projs = {f["mlp_out_tmpl"].rsplit(".", 1)[-1] for f in FAMILIES.values()}
    parts = [p for p in name.split(".") if p not in ("weight", "bias")]
    if parts[-1] not in out_projs:
        raise ValueError(
            f"inner_params {short(value)}: GRACE here wraps the MLP output projection "
            f"({', '.join(sorted(out_projs))}), not {parts[-1]!r}"
        )
    return "layer", int(m.group(1))


@dataclass
class HParams(HParamsBase):
    layer: int = 20
    edit_lr: float = 1.0
    n_iter: int = 100
    eps: float = 1.0  # initial deferral radius ε (Euclidean, in the projection's input space)
    dist_fn: str = "euc"
    val_init: str = "cold"  # cold: uniform random value; warm: the layer's current output
    val_train: str = "sgd"
    replacement: str = "replace_last"
    eps_expand: str = "coverage"  # coverage | moving_average
    reg: str = "early_stop"  # stop training a value once its loss < early_stop_loss
    early_stop_loss: float = 1e-2
    val_reg: str | None = None  # EasyEdit's files: None (no value regularisation)
    num_pert: int = 8  # only for val_train 'adv', which is not offered
    dropout: float = 0.0  # EasyEdit's files: 0.0
    seed: int = 0

    EASYEDIT_RENAMES = {"inner_params": _layer_from_inner_params}

    @classmethod
    def for_model(cls, handle) -> HParams:
        return cls(layer=default_layer(handle))

    def __post_init__(self):
        coerce_numbers(self, ("edit_lr", "eps", "early_stop_loss", "dropout"))
        if self.val_reg in ("None", "none", ""):
            self.val_reg = None

    def validate(self, handle=None) -> None:
        if handle is not None:
            handle.arch.mlp_out_proj(self.layer)
        if self.dist_fn != "euc":
            raise ValueError(
                f"dist_fn {short(self.dist_fn)} is not supported; GRACE here uses Euclidean distance ('euc')"
            )
        if self.val_init not in ("cold", "warm"):
            raise ValueError("val_init must be 'cold' or 'warm'")
        if self.val_train not in ("sgd", "adv"):
            raise ValueError("val_train must be 'sgd' (values trained by Adam, as EasyEdit does)")
        if self.val_train == "adv":
            raise ValueError("val_train 'adv' (perturbation training) is not implemented; use 'sgd'")
        if self.replacement not in REPLACEMENTS:
            raise ValueError(f"replacement {short(self.replacement)} is not one of {', '.join(REPLACEMENTS)}")
        if self.eps_expand not in ("coverage", "moving_average"):
            raise ValueError("eps_expand must be 'coverage' or 'moving_average'")
        if self.reg not in ("early_stop", None, "None"):
            raise ValueError(f"reg {short(self.reg)} is not supported; GRACE here stops early ('early_stop')")
        if self.val_reg is not None:
            raise ValueError(f"val_reg {short(self.val_reg)} is not supported (EasyEdit's files use None)")
        if self.dropout:
            raise ValueError("dropout must be 0.0: GRACE here trains values without dropout")
        if self.eps <= 0:
            raise ValueError("eps must be positive")
        if self.n_iter < 1:
            raise ValueError("n_iter must be at least 1")


def default_layer(handle) -> int:
    """Two thirds of the depth (layer 20 of 30 on SmolLM2-135M).

    EasyEdit wraps a late layer (31 of 32 for Llama-2). At the very last layer the replaced output
    reaches only the prompt's last position, so the later tokens of a multi-token target cannot be
    trained; two thirds leaves attention layers after the adapter.
    """
    n = handle.arch.n_layers
    return max(0, min(n - 1, round(2 * n / 3)))


def touched(handle, hp: HParams) -> list[str]:
    """GRACE changes no weight."""
    return []


# ---- the codebook ---------------------------------------------------------------------------
@dataclass
class Entry:
    """One codebook entry (tensors on CPU, float32)."""

    id: str
    key: torch.Tensor
    value: torch.Tensor
    eps: float
    label: str


class Codebook:
    """The forward hook on the MLP output projection: nearest-key replacement within ε.

    Entries come from several edit records; ``overrides`` are radii that a later record shrank
    (conflict halving) or grew (coverage), kept per record so undoing it restores the old radii.
    """

    def __init__(self, module_name: str, replacement: str):
        self.module_name = module_name
        self.replacement = replacement
        self.entries: dict[str, Entry] = {}
        self.owners: dict[object, list[str]] = {}
        self.overrides: dict[object, dict[str, float]] = {}
        self.key_overrides: dict[object, dict[str, torch.Tensor]] = {}
        self.trainable: dict[str, torch.Tensor] = {}  # values being optimised (during an edit)
        self._stack = None

    # membership
    def add(self, owner, entries: list[Entry], eps_overrides: dict | None = None, key_overrides: dict | None = None):
        for e in entries:
            self.entries[e.id] = e
        self.owners[owner] = [e.id for e in entries]
        self.overrides[owner] = dict(eps_overrides or {})
        self.key_overrides[owner] = dict(key_overrides or {})
        self._stack = None

    def remove(self, owner):
        for eid in self.owners.pop(owner, []):
            self.entries.pop(eid, None)
        self.overrides.pop(owner, None)
        self.key_overrides.pop(owner, None)
        self._stack = None

    def __len__(self):
        return len(self.entries)

    def radius(self, eid: str) -> float:
        eps = self.entries[eid].eps
        for ov in self.overrides.values():  # insertion order = edit order; later records win
            if eid in ov:
                eps = ov[eid]
        return eps

    def key(self, eid: str) -> torch.Tensor:
        k = self.entries[eid].key
        for ov in self.key_overrides.values():
            if eid in ov:
                k = ov[eid]
        return k

    def stacked(self, device, dtype):
        """(ids, keys, radii) of the active entries; an entry shadowed by a later edit (radius < 0)
        is left out, so it can neither match nor win a tie against its replacement."""
        if self._stack is None or self._stack[0] != (device, dtype):
            ids = [i for i in self.entries if self.radius(i) >= 0]
            keys = torch.stack([self.key(i) for i in ids]).to(device=device, dtype=torch.float32) if ids else None
            eps = torch.tensor([self.radius(i) for i in ids], device=device, dtype=torch.float32)
            self._stack = ((device, dtype), ids, keys, eps)
        return self._stack[1:]

    def values(self, ids: list[str], device) -> torch.Tensor:
        return torch.stack([self.trainable.get(i, self.entries[i].value.to(device)) for i in ids]).to(device)

    # the hook
    def __call__(self, module, inputs, output):
        if not self.entries:
            return None
        h = inputs[0]
        ids, keys, eps = self.stacked(h.device, h.dtype)
        if not ids:
            return None
        b, t, d = h.shape
        dist = torch.cdist(
            h.detach().float().reshape(1, b * t, d), keys.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist"
        ).reshape(b, t, -1)
        best, nearest = dist.min(-1)  # [b, t]
        hit = best <= eps[nearest]
        if not bool(hit.any()):
            return None
        vals = self.values(ids, h.device)  # [K, d_out]
        out = output.clone()
        if self.replacement == "replace_last":
            mask = hit
            chosen = nearest
        else:
            # replace_prompt: the hit position and every earlier one take the last hit's value;
            # replace_all: every position of the row does.
            pos = torch.arange(t, device=h.device).expand(b, t)
            last_hit = torch.where(hit, pos, torch.full_like(pos, -1)).max(-1).values  # [b]
            row_hit = last_hit >= 0
            idx = nearest.gather(1, last_hit.clamp(min=0).unsqueeze(1)).expand(b, t)
            mask = (
                (pos <= last_hit.unsqueeze(1))
                if self.replacement == "replace_prompt"
                else row_hit.unsqueeze(1).expand(b, t)
            )
            mask = mask & row_hit.unsqueeze(1)
            chosen = idx
        repl = vals[chosen].to(out.dtype)  # [b, t, d_out]
        return torch.where(mask.unsqueeze(-1), repl, out)


def _find_codebook(module) -> Codebook | None:
    for hook in module._forward_hooks.values():
        if isinstance(hook, Codebook):
            return hook
    return None


@contextlib.contextmanager
def _codebook_on(handle, layer: int, replacement: str):
    """The codebook hooked on the layer's MLP output projection, installed if absent; removed
    again when the last user leaves."""
    name = handle.arch.mlp_out_proj(layer)
    module = handle.module(name)
    book = _find_codebook(module)
    if book is not None:
        if book.replacement != replacement:
            raise EditError(
                f"GRACE: layer {layer} already holds a codebook with replacement {book.replacement!r}; "
                f"a second one with {replacement!r} cannot share it"
            )
        yield book
        return
    book = Codebook(name, replacement)
    hook = module.register_forward_hook(book)
    try:
        yield book
    finally:
        hook.remove()


def _record_state(record) -> dict:
    state = record.info.get("grace")
    if not state:
        raise EditError(f"edit record {record.id} has no GRACE codebook")
    return state


@contextlib.contextmanager
def attach(handle, record):
    """Install this record's codebook entries while the session is applied (EditSession.applied).
    Yields '' (GRACE puts no text before the prompts)."""
    state = _record_state(record)
    with _codebook_on(handle, state["layer"], state["replacement"]) as book:
        book.add(
            record.id, [Entry(**e) for e in state["entries"]], state.get("eps_overrides"), state.get("key_overrides")
        )
        try:
            yield ""
        finally:
            book.remove(record.id)


@dataclass(frozen=True)
class State:
    """The session's next codebook entry number: entry ids stay unique across its edits."""

    next_entry: int = 0


def forget(state: State, record) -> State:
    """An undone record's entries leave with it (``attach``); their numbers are not reused."""
    return state


# ---- editing ----------------------------------------------------------------------------------
def _read_query(handle, module_name: str, item) -> tuple[torch.Tensor, torch.Tensor]:
    """The projection's input and output at the prompt's last token (with the codebook as it is)."""
    from editlab.model.nethook import Trace

    ids, mask = batch(handle, [item])
    with torch.no_grad(), Trace(handle.model, module_name, retain_input=True, retain_output=True, stop=True) as tr:
        handle.model(input_ids=ids, attention_mask=mask)
    return tr.input[0, item.last_prompt].float().cpu(), tr.output[0, item.last_prompt].float().cpu()


def _place_key(book: Codebook, query: torch.Tensor, label: str, hp: HParams):
    """GRACE's codebook update for a new key (§3). Returns (add_new_entry, eps_new, eps_overrides,
    key_overrides, reused_id); overrides change earlier records' entries while this record exists."""
    ids, keys, eps = book.stacked(torch.device("cpu"), torch.float32)
    if not ids:
        return True, hp.eps, {}, {}, None
    dist = torch.linalg.vector_norm(keys - query.unsqueeze(0), dim=-1)
    d, j = float(dist.min()), int(dist.argmin())
    nid, neps = ids[j], float(eps[j])
    same_key = d <= 1e-4 * max(1.0, float(query.norm()))
    if book.entries[nid].label != label:
        if same_key:
            # The same prompt edited again with a new answer: the new entry takes the old one's
            # place (halving a zero distance would leave neither usable).
            return True, max(neps, hp.eps), {nid: -1.0}, {}, None
        if d > hp.eps + neps:
            return True, hp.eps, {}, {}, None
        # Conflict: split the radii so the two balls no longer overlap.
        return True, min(hp.eps, d / 2), {nid: min(neps, d / 2 - 1e-5)}, {}, None
    if d > hp.eps + neps:
        return True, hp.eps, {}, {}, None
    # Same label: grow (or move) the existing entry to cover the new query; train its value.
    if d <= neps:
        return False, None, {}, {}, nid
    if hp.eps_expand == "coverage":
        return False, None, {nid: d}, {}, nid
    moved = 0.5 * book.key(nid) + 0.5 * query
    return False, None, {nid: d}, {nid: moved}, nid


@dataclass
class _Edit:
    """What one edit adds to the codebook, as it goes: new entries, radius and key overrides of
    earlier ones, the next entry number."""

    counter: int
    entries: list = field(default_factory=list)
    eps_over: dict = field(default_factory=dict)
    key_over: dict = field(default_factory=dict)
    owner: object = field(default_factory=object)  # this edit's entries in the codebook, while it trains


def apply(handle, facts: list[Fact], hp: HParams, ctx: MethodContext) -> dict:
    """Add one codebook entry per fact (one after another, as GRACE edits a stream) and train its
    value. The entries are returned in the record (``info['grace']``); no weight is written."""
    t0 = time.perf_counter()
    name = handle.arch.mlp_out_proj(hp.layer)
    edit = _Edit(counter=(ctx.session_state or State()).next_entry)
    details = []
    with _codebook_on(handle, hp.layer, hp.replacement) as book:
        try:
            for i, fact in enumerate(facts):
                ctx.report(i, len(facts), f"GRACE: training the value for {fact.subject!r}")
                details.append(_edit_one(handle, book, name, fact, hp, edit))
            checks = prompt_check(handle, facts)
        finally:
            book.trainable = {}
            book.remove(edit.owner)
    ctx.session_state = State(next_entry=edit.counter)
    ctx.report(len(facts), len(facts), "GRACE: done")
    state = {
        "layer": hp.layer,
        "replacement": hp.replacement,
        "module": name,
        "entries": [{"id": e.id, "key": e.key, "value": e.value, "eps": e.eps, "label": e.label} for e in edit.entries],
        "eps_overrides": edit.eps_over,
        "key_overrides": edit.key_over,
    }
    result = {
        "timings": {"train_s": time.perf_counter() - t0},
        "grace": state,
        "facts": details,
        "prompt_check": checks,
        "codebook_size_added": len(edit.entries),
    }
    note = check_note(NAME, checks)
    if note:
        result["note"] = note
    return result


def _edit_one(handle, book: Codebook, name: str, fact: Fact, hp: HParams, edit: _Edit) -> dict:
    """One fact: place its key (a new entry, or an earlier one moved or reused), train the entry's
    value, and keep the result in ``edit``."""
    entries, eps_over = edit.entries, edit.eps_over
    item = encode(handle.tokenizer, fact.prompt, fact.target_new)
    query, current = _read_query(handle, name, item)
    eid = f"e{edit.counter}"
    add_new, eps_new, ov, kov, reused = _place_key(book, query, fact.target_new, hp)
    eps_over.update(ov)
    edit.key_over.update(kov)
    if add_new:
        edit.counter += 1
        gen = torch.Generator().manual_seed(hp.seed + edit.counter)
        init = torch.rand(current.shape, generator=gen) if hp.val_init == "cold" else current.clone()
        entries.append(Entry(id=eid, key=query, value=init, eps=float(eps_new), label=fact.target_new))
        train_id = eid
    else:
        train_id = reused
    book.add(edit.owner, entries, eps_over, edit.key_over)
    base = book.entries[train_id].value
    value = base.detach().clone().to(handle.device).requires_grad_(True)
    book.trainable = {train_id: value}
    losses = _train_value(handle, book, item, value, hp)
    new_value = value.detach().float().cpu()
    book.trainable = {}
    if add_new:
        entries[-1] = Entry(id=eid, key=query, value=new_value, eps=float(eps_new), label=fact.target_new)
    else:
        # Retraining an earlier record's value would change that record: keep it
        # undoable by shadowing the entry with a fresh one at the same key.
        edit.counter += 1
        sid = f"e{edit.counter}"
        old = book.entries[train_id]
        entries.append(
            Entry(id=sid, key=book.key(train_id), value=new_value, eps=book.radius(train_id), label=old.label)
        )
        eps_over[train_id] = -1.0  # the shadow replaces it while this record exists
    book.add(edit.owner, entries, eps_over, edit.key_over)
    return {
        "subject": fact.subject,
        "entry": entries[-1].id,
        "steps": len(losses),
        "losses": losses[:: max(1, len(losses) // 10)] + losses[-1:],
        "reused": reused,
        "eps": entries[-1].eps,
    }


def _train_value(handle, book: Codebook, item, value: torch.Tensor, hp: HParams) -> list[float]:
    """Adam on the value alone: NLL of target_new after the prompt, with the codebook in place."""
    ids, mask = batch(handle, [item])
    opt = torch.optim.Adam([value], lr=hp.edit_lr)
    losses = []
    with torch.enable_grad():
        for step in range(hp.n_iter):
            opt.zero_grad()
            logits = handle.model(input_ids=ids, attention_mask=mask).logits
            loss = target_nll(logits, [item])
            if not torch.isfinite(loss):
                raise EditError(f"GRACE: the value optimisation diverged at step {step}")
            losses.append(round(loss.item(), 4))
            if loss.item() < hp.early_stop_loss:
                break
            loss.backward()
            opt.step()
    return losses
