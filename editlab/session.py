"""Edit sessions: a stack of edits over one shared, resident model, each undoable bit for bit.

At rest the shared model holds the *unedited* weights. A session keeps the values of the weights
its edits touched; ``applied()`` loads them under the model's lock and puts the originals back on
exit, so several sessions (browser tabs of one Space) share one model without seeing each other's
edits, and "unedited" is always one lock away.

Every evaluator sees an edit the same way, whatever the method: inside :meth:`EditSession.edited`
the weights hold the edits, the hooks of the edits that hook (GRACE) are attached, and
:attr:`EditedModel.prefix` is the text the prompt-based edits (IKE) put before every prompt.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from editlab import methods
from editlab.core.limits import current as current_limits
from editlab.facts.fact import Fact
from editlab.measure import calibration, factcheck
from editlab.measure.probes import Measure, Probe, ProbeReport, default_probes, measure, negation_form
from editlab.methods.base import EditError, HParamsBase, MethodContext
from editlab.model.handle import weights_digest
from editlab.model.nethook import get_parameter

_ids = itertools.count(1)


@dataclass(frozen=True)
class EditRecord:
    """One applied edit: what was written, with what, and the touched weights' values around it."""

    id: int
    method: str
    facts: tuple[Fact, ...]
    hparams: dict
    weights_before: Mapping[str, torch.Tensor] = field(repr=False)
    weights_after: Mapping[str, torch.Tensor] = field(repr=False)
    timings: dict
    info: dict = field(repr=False, default_factory=dict)
    created: float = field(default_factory=time.time)

    @property
    def seconds(self) -> float:
        return float(self.timings.get("total_s", 0.0))

    def summary(self) -> dict:
        return {
            "id": self.id,
            "method": self.method,
            "facts": [f.to_dict() for f in self.facts],
            "hparams": self.hparams,
            "timings": self.timings,
            "created": self.created,
            "weights": sorted(self.weights_before),
            "stats_source": self.info.get("stats_source"),
        }


@dataclass(frozen=True)
class EditedModel:
    """The model as an edit session has it, valid inside :meth:`EditSession.edited`: what every
    evaluator (probes, token accuracy, general ability, muting, causal tracing) reads. The
    weights and hooks are in the model; ``prefix`` goes before every prompt ('' unless an edit
    is a prompt, IKE)."""

    session: EditSession = field(repr=False)
    prefix: str = ""

    @property
    def handle(self):
        return self.session.handle

    @property
    def model(self):
        return self.session.handle.model

    @property
    def tokenizer(self):
        return self.session.handle.tokenizer

    def state_key(self) -> str:
        """Identifies this state for disk caches (:meth:`EditSession.state_key`)."""
        return self.session.state_key()


class EditSession:
    """A user's sequence of edits on a shared model handle."""

    def __init__(self, handle, corpus: str | None = None, online: bool = True, sample_corpus: bool = False):
        self.handle = handle
        self.corpus = corpus
        self.online = online
        self.sample_corpus = sample_corpus  # offline, no corpus, nothing bundled: sample one (slow) instead of refusing
        self.records: list[EditRecord] = []
        # per method name, its State (methods with sequential_state): AlphaEdit's protected keys, ...
        self.method_state: dict[str, Any] = {}
        self._original: dict[str, torch.Tensor] = {}
        self._current: dict[str, torch.Tensor] = {}
        self._depth = 0
        # Probe measurements of model states this session has seen, keyed by the state (see
        # state_key) and the probes: the "before" column of an edit is the previous "after".
        self._measured: collections.OrderedDict = collections.OrderedDict()
        self._hooks: contextlib.ExitStack | None = None  # the adapters applied() attached
        self._prompt = ""  # what the attached edits put before every prompt (while applied)
        self._calibration: factcheck.Calibration | None = None

    # ---- weights in and out -------------------------------------------------------------
    def _write(self, values: Mapping[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, value in values.items():
                get_parameter(self.handle.model, name).copy_(value)

    def _read(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        return {n: get_parameter(self.handle.model, n).detach().to("cpu", copy=True) for n in names}

    @contextlib.contextmanager
    def applied(self):
        """Hold the model's lock with this session's edits in the weights (and adapters attached)."""
        with self.handle.lock:
            outer = self._depth == 0
            self._depth += 1
            try:
                if outer:
                    self._write(self._current)
                with contextlib.ExitStack() as stack:
                    if outer:
                        self._hooks = stack
                        self._attach(stack)
                    yield self.handle
            finally:
                self._depth -= 1
                if outer:
                    self._hooks = None
                    self._write({n: self._original[n] for n in self._current})

    def _attach(self, stack: contextlib.ExitStack) -> None:
        """Attach the edits that live outside the weights, in record order; their texts, joined,
        go before every prompt."""
        texts = []
        for rec in self.records:
            mod = methods.get(rec.method)
            if mod.CAPABILITIES.attaches:
                texts.append(stack.enter_context(mod.attach(self.handle, rec)) or "")
        self._prompt = "".join(texts)

    @contextlib.contextmanager
    def edited(self):
        """The model as this session has it, for any evaluator: :meth:`applied` (the model's lock,
        the edited weights, the hooks), yielding an :class:`EditedModel` whose ``prefix`` every
        prompt must get in front."""
        with self.applied():
            yield EditedModel(self, self._prompt)

    @contextlib.contextmanager
    def unedited(self, in_flight: Mapping[str, torch.Tensor] | None = None):
        """The unedited model for the block, even inside :meth:`applied`: the original weights
        written back and the adapters detached, then everything as it was. ``in_flight``: the
        pre-edit values of weights an edit in progress may have changed. Second-moment statistics
        and context templates are computed in here (``MethodContext.unedited``), because they
        are cached under the unedited model's key."""
        with self.handle.lock:
            originals = {n: v for n, v in (in_flight or {}).items() if n not in self._original}
            if self._depth:
                originals.update({n: self._original[n] for n in self._current})
            hooks, prompt = self._hooks, self._prompt
            saved = self._read(originals)
            if hooks is not None:
                hooks.close()  # detach the adapters (GRACE's codebooks) ...
            self._write(originals)
            self._prompt = ""
            try:
                yield self.handle
            finally:
                self._write(saved)
                self._prompt = prompt
                if hooks is not None:
                    self._attach(hooks)  # ... and attach them again

    @property
    def prefix(self) -> str:
        """The text this session's prompt-based edits put before every prompt (IKE's context);
        inside :meth:`edited`, the same as its ``prefix``."""
        with self.edited() as m:
            return m.prefix

    # ---- editing --------------------------------------------------------------------------
    def resolve_hparams(self, method: str, hparams=None) -> HParamsBase:
        """The method's HParams for this model: its defaults (``None``), a mapping of overrides, or
        an instance of the method's ``HParams``; anything else is refused with what to give."""
        mod = methods.get(method)
        if hparams is None:
            hp = mod.HParams.for_model(self.handle)
        elif isinstance(hparams, Mapping):
            hp, _ = mod.HParams.from_dict(dict(hparams), self.handle)
        elif isinstance(hparams, mod.HParams):
            hp = hparams
        else:
            from editlab.core.bounded import short

            what = (
                f"{type(hparams).__module__}.{type(hparams).__qualname__}"
                if isinstance(hparams, HParamsBase)
                else f"the {type(hparams).__name__} {short(hparams, 60)}"
            )
            raise ValueError(
                f"{mod.NAME} hyperparameters: got {what}; give None (the defaults for this model), a "
                f"mapping such as {{'v_lr': 0.5}}, or {mod.NAME}'s HParams (for a YAML file: "
                f"{mod.__name__}.HParams.from_yaml(path))"
            )
        hp.validate(self.handle)
        return hp

    def edit(
        self,
        facts: Fact | Sequence[Fact],
        method: str = "rome",
        hparams=None,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> EditRecord:
        """Apply one edit (one fact, or a batch for batch methods). On any failure the weights are
        rolled back to exactly their previous values and :class:`EditError` is raised."""
        facts = self._fact_list(facts)
        mod = methods.get(method)
        hp = self.resolve_hparams(method, hparams)
        names = list(mod.touched(self.handle, hp))
        state = self.method_state.get(mod.NAME, mod.State()) if mod.CAPABILITIES.sequential_state else None
        ctx = MethodContext(
            corpus=self.corpus,
            online=self.online,
            progress=progress,
            session_state=state,
            sample_corpus=self.sample_corpus,
        )
        t0 = time.perf_counter()
        with self.applied():
            before = self._read(names)
            ctx.restore_unedited = lambda: self.unedited(before)
            result, after = self._apply_or_roll_back(mod, facts, hp, ctx, names, before)
            # Book the new weights before applied() exits, so that its exit puts the originals
            # back: at rest the shared model must be unedited right after an edit too.
            for n in names:
                self._original.setdefault(n, before[n])
            self._current.update(after)
        if mod.CAPABILITIES.sequential_state:
            self.method_state[mod.NAME] = ctx.session_state  # committed only now, the edit having succeeded
        return self._book(mod, facts, hp, ctx, result, before, after, t0)

    @staticmethod
    def _fact_list(facts: Fact | Sequence[Fact]) -> list[Fact]:
        """The edit's facts as a list, refusing a string, no facts, more than the limit allows, or a non-Fact."""
        if isinstance(facts, (str, bytes)):
            raise TypeError(f"expected a Fact or a list of Facts, got the string {facts[:60]!r}")
        facts = [facts] if isinstance(facts, Fact) else list(facts)
        if not facts:
            raise ValueError("no facts to edit")
        current_limits().check("max_facts", len(facts), "facts in one edit")
        for f in facts:
            if not isinstance(f, Fact):
                raise TypeError(f"expected Fact, got {type(f).__name__}")
        return facts

    def _apply_or_roll_back(self, mod, facts: list[Fact], hp, ctx: MethodContext, names: list[str], before):
        """Run the method on the model (inside :meth:`applied`): (its result, the touched weights after);
        on non-finite weights or any failure, the weights go back to ``before`` and :class:`EditError` is raised."""
        try:
            result = mod.apply(self.handle, facts, hp, ctx)
            after = self._read(names)
            bad = [n for n, v in after.items() if not torch.isfinite(v).all()]
            if bad:
                raise EditError(f"{mod.NAME} produced non-finite weights in {', '.join(bad)}")
        except BaseException as e:
            self._write(before)  # roll back before anything else sees the model
            if isinstance(e, torch.OutOfMemoryError):
                raise EditError(
                    f"{mod.NAME} ran out of device memory; the weights were restored. Try a smaller "
                    "batch, fewer context templates, or a smaller model"
                ) from e
            if isinstance(e, (EditError, KeyboardInterrupt)):
                raise
            raise EditError(f"{mod.NAME} failed: {e}; the weights were restored") from e
        return result, after

    def _book(self, mod, facts: list[Fact], hp, ctx: MethodContext, result, before, after, t0: float) -> EditRecord:
        """The applied edit's record (its info, its timings since ``t0``), appended to the session's stack."""
        info = dict(ctx.info)
        info.update(result or {})
        timings = dict(info.pop("timings", {}))
        timings["total_s"] = time.perf_counter() - t0
        record = EditRecord(
            id=next(_ids),
            method=mod.NAME,
            facts=tuple(facts),
            hparams=hp.to_dict(),
            weights_before=before,
            weights_after=after,
            timings=timings,
            info=info,
        )
        self.records.append(record)
        return record

    def undo(self, record: EditRecord | int | None = None) -> EditRecord:
        """Remove one edit. The latest edit is undone bit for bit; undoing an earlier one restores
        its weights' previous values and re-applies the later edits' weight deltas on top. A
        method with session state forgets the edit's share of it (AlphaEdit's protected keys)."""
        if not self.records:
            raise ValueError("there is no edit to undo")
        if record is None:
            record = self.records[-1]
        if isinstance(record, int):
            matches = [r for r in self.records if r.id == record]
            if not matches:
                raise ValueError(f"no edit with id {record} in this session")
            record = matches[0]
        i = self.records.index(record)
        later = self.records[i + 1 :]
        for name, value in record.weights_before.items():
            new = value.clone()
            deltas = [r for r in later if name in r.weights_after]
            if deltas:
                acc = new.float()
                for r in deltas:
                    acc += r.weights_after[name].float() - r.weights_before[name].float()
                new = acc.to(value.dtype)
            if torch.equal(new, self._original[name]):
                self._current.pop(name, None)
            else:
                self._current[name] = new
        self.records.pop(i)
        mod = methods.get(record.method)
        if mod.CAPABILITIES.sequential_state and mod.NAME in self.method_state:
            self.method_state[mod.NAME] = mod.forget(self.method_state[mod.NAME], record)
        if not self.records:
            self.method_state.clear()
        return record

    def reset(self) -> None:
        """Back to the unedited model, bit for bit."""
        self._current.clear()
        self.records.clear()
        self.method_state.clear()

    def state_key(self) -> str:
        """Identifies the model as this session sees it, for disk caches (causal traces): the
        unedited fingerprint, the bytes of every weight its edits changed, and the edits whose
        runtime hooks (``attach``) change the model without changing weights."""
        hooked = [r for r in self.records if methods.get(r.method).CAPABILITIES.attaches]
        if not self._current and not hooked:
            return self.handle.fingerprint  # the unedited model
        attached = json.dumps(
            [[r.id, r.method, r.hparams, [f.to_dict() for f in r.facts]] for r in hooked], default=str
        )
        return weights_digest(sorted(self._current.items()), salt=self.handle.fingerprint + attached)

    # ---- probing --------------------------------------------------------------------------
    def probes_for(self, fact: Fact, probes: Sequence[Probe] | None = None, generation_tokens: int = 40) -> list[Probe]:
        """The probes to measure (the given ones, else the default set), within the operator's
        limits on probes per fact and tokens generated per probe."""
        out = list(probes) if probes else default_probes(fact, self.handle.tokenizer, generation_tokens)
        limits = current_limits()
        for p in out:
            limits.check("max_generation_tokens", p.max_new_tokens, f"tokens generated for the {p.kind} probe")
        return out

    MEASURED_STATES = 64  # measurements kept in memory per session (a few KB each)

    def _remember(self, key, value):
        self._measured[key] = value
        self._measured.move_to_end(key)
        while len(self._measured) > self.MEASURED_STATES:
            self._measured.popitem(last=False)
        return value

    @staticmethod
    def _probe_key(fact: Fact, probes: Sequence[Probe], prefix: str) -> tuple:
        return (fact.target_new, fact.target_true, prefix, tuple(probes))

    def _unedited_file(self, key: tuple):
        """Disk cache of the unedited model's measurements: determined by the model (fingerprint)
        and what is measured (targets, prefix, every probe field)."""
        from editlab.core import paths

        digest = paths.key_digest(
            model=self.handle.fingerprint,
            targets=key[:2],
            prefix=key[2],
            probes=[dataclasses.asdict(p) for p in key[3]],
            version=2,
        )
        return paths.cache_dir("probes", self.handle.fingerprint) / f"{digest}.json"

    def measure_unedited(self, fact: Fact, probes: Sequence[Probe]):
        """The unedited model's measurements: computed once per model and probe set, then read
        from memory or the disk cache."""
        from editlab.core import paths

        probes = self.probes_for(fact, probes)
        key = ("unedited",) + self._probe_key(fact, probes, "")
        if key in self._measured:
            return self._measured[key]
        f = self._unedited_file(key[1:])
        if f.exists():
            try:
                return self._remember(key, [Measure.from_dict(d) for d in json.loads(f.read_text())])
            except (ValueError, TypeError, KeyError):
                f.unlink(missing_ok=True)  # a damaged entry is recomputed, never trusted
        with self.handle.lock:  # at rest the shared model is unedited
            found = measure(self.handle.model, self.handle.tokenizer, fact, probes)
        paths.atomic_write_bytes(f, json.dumps([m.to_dict() for m in found]).encode())
        return self._remember(key, found)

    def measure_current(self, fact: Fact, probes: Sequence[Probe], guess: bool = True):
        """Measurements of the model as this session has it now (cached per state: measuring the
        same state twice, e.g. an edit's "before" after the previous edit's "after", is free).

        ``guess``: the latest measurement of the same probes on another state (the unedited model,
        the last click's) guides greedy decoding (:func:`editlab.model.tokens.greedy_drafted`: the same
        texts, found in one pass where they did not change). Off for the state right after an
        edit of this very fact, whose texts the edit changed: there a guess costs a wasted pass."""
        probes = self.probes_for(fact, probes)  # the operator's limits hold for given probes too
        if not self.records:
            return self.measure_unedited(fact, probes)
        with self.edited() as m:
            probe_key = self._probe_key(fact, probes, m.prefix)
            key = (m.state_key(),) + probe_key
            if key in self._measured:
                return self._measured[key]
            drafts = (
                next((v for k, v in reversed(self._measured.items()) if k[1:] == probe_key), None) if guess else None
            )
            return self._remember(key, measure(m.model, m.tokenizer, fact, probes, prefix=m.prefix, drafts=drafts))

    def factcheck_calibration(self) -> factcheck.Calibration:
        """How well the True/False probe reads on this model (:func:`editlab.measure.calibration.calibrate`:
        measured once per model on the unedited weights, then read from the disk cache)."""
        if self._calibration is None:
            self._calibration = calibration.calibrate(self.handle)
        return self._calibration

    def compare(self, fact: Fact, probes: Sequence[Probe] | None = None) -> ProbeReport:
        """Unedited vs this session's current state (the "after" column), without editing."""
        probes = self.probes_for(fact, probes)
        unedited = self.measure_unedited(fact, probes)
        current = self.measure_current(fact, probes) if self.records else unedited
        return ProbeReport.of(
            fact,
            probes,
            unedited=unedited,
            after=current,
            model=self.handle.name,
            factcheck=self.factcheck_calibration(),
            notes=negation_notes(fact, probes),
        )

    def edit_and_compare(
        self,
        fact: Fact,
        method: str = "rome",
        hparams=None,
        probes: Sequence[Probe] | None = None,
        progress: Callable[[int, int, str], None] | None = None,
        written: Fact | None = None,
        verdict: Callable[[ProbeReport], None] | None = None,
    ) -> tuple[EditRecord, ProbeReport]:
        """Probe unedited and before, edit, probe after: the three columns of the report.

        ``written``: the fact actually written, when it differs from the probed one (the NP/NN
        protocol writes the negated statement and probes the original's prompts). ``verdict``:
        called with a first report of the verdict probes alone (positive, negation, True/False) as
        soon as they are measured after the edit; the paraphrases, neighbours and generations are
        measured after it, and the full report is returned as without it."""
        probes = self.probes_for(fact, probes)
        first, rest = _verdict_first(probes) if verdict is not None else (list(range(len(probes))), [])

        def say(stage):
            if progress:
                progress(0, 1, stage)

        def pick(indices):
            return [probes[i] for i in indices]

        with self.handle.lock:
            if self._calibration is None:
                say(
                    "the True/False probe's calibration on facts the model knows (bundled for the default model; "
                    "else measured once per model, seconds on a small one)"
                )
            calibration = self.factcheck_calibration()
            say(f"probing the unedited model ({len(first)} probes; cached after the first time)")
            unedited = self.measure_unedited(fact, pick(first))
            say("probing the model before this edit (cached when it was measured last time)")
            before = self.measure_current(fact, pick(first)) if self.records else unedited
            before_rest = self.measure_current(fact, pick(rest)) if self.records and rest else None
            record = self.edit(written or fact, method, hparams, progress)
            say(f"probing the edited model ({len(first)} probes)")
            after = self.measure_current(fact, pick(first), guess=False)
            if verdict is not None:
                verdict(self._report(fact, pick(first), (unedited, before, after), record, calibration, written))
            if rest:
                say(f"probing the paraphrases, neighbours and generations ({len(rest)} probes)")
                unedited_rest = self.measure_unedited(fact, pick(rest))
                after_rest = self.measure_current(fact, pick(rest), guess=False)
                columns = [
                    _merged(first, a, rest, b)
                    for a, b in ((unedited, unedited_rest), (before, before_rest or unedited_rest), (after, after_rest))
                ]
                unedited, before, after = columns
        return record, self._report(fact, probes, (unedited, before, after), record, calibration, written)

    def _report(self, fact, probes, columns, record, calibration, written) -> ProbeReport:
        """The report of these probes' three columns (unedited, before, after) with the edit's notes."""
        notes = negation_notes(fact, probes)
        if written is not None and written != fact:
            notes.append(f"written: {written.prompt!r} -> {written.target_new!r}")
        if record.info.get("stats_source"):
            notes.append(f"statistics: {record.info['stats_source']}")
        if record.info.get("note"):  # what the method itself says went wrong (e.g. KN's leak)
            notes.append(str(record.info["note"]))
        return ProbeReport.of(
            fact,
            probes,
            *columns,
            model=self.handle.name,
            method=record.method,
            edit_seconds=record.seconds,
            notes=notes,
            factcheck=calibration,
        )


# The probes a first verdict reads: does the model say the new target, does it survive negation,
# does the model agree when asked True/False.
VERDICT_KINDS = ("positive", "negation", "true_false")


def _verdict_first(probes: Sequence[Probe]) -> tuple[list[int], list[int]]:
    """The indices of the verdict probes and of the rest, each in the probes' order."""
    first = [i for i, p in enumerate(probes) if p.kind in VERDICT_KINDS]
    return first, [i for i in range(len(probes)) if i not in set(first)]


def _merged(first: list[int], a: list, rest: list[int], b: list) -> list:
    """Two lists of measurements put back in the probes' order."""
    out = [None] * (len(first) + len(rest))
    for i, m in zip(first, a):
        out[i] = m
    for i, m in zip(rest, b):
        out[i] = m
    return out


def negation_notes(fact: Fact, probes: Sequence[Probe]) -> list[str]:
    """Why a report has no negation probe: the prompt could not be negated as English (it is left out
    of PN, not negated by an appended "not"), or it already negates."""
    if any(negation_form(p) == "not" for p in probes):
        return []
    negated, rule = fact.negated()
    if negated is not None and not rule.startswith("already-negated"):
        return []  # the probes were chosen without one
    return [f"no negation probe: {rule} — give the negated prompt yourself to measure PN"]
