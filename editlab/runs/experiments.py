"""One experiment engine: a :class:`Plan` says which facts are edited with which method under which
protocol and where the model is measured; :func:`run` is the one loop that edits through
:class:`~editlab.session.EditSession` and measures at each checkpoint with pluggable evaluators;
:func:`editlab.runs.writer.run_stored` writes each checkpoint to the run store and resumes by replay.

Everything that runs an experiment builds a Plan and calls it: ``editlab bench`` (each method's
facts, and the negated-edit plan for NP/NN), ``editlab sweep`` (stored, resumable), ``editlab
reproduce`` and the scripts under ``benchmarks/``.

Protocols:

- ``sequential``: batches go into the same model one after another. ``checkpoints`` are edit
  counts (0 = the unedited model, before any edit) at which the evaluators run; without them,
  after every batch. Batches never straddle a checkpoint.
- ``independent``: every batch is edited into the unedited model (the session is reset between
  batches) and measured right after its edit.

An evaluator is any callable ``evaluator(at) -> value`` with a ``name``; ``at`` (:class:`At`) holds
the session (its current state is the edited model), which facts are in the model now
(``edited``), the batch just written (``latest``), and ``check()``/``report()`` for cancelling and
progress. Evaluators here: edit quality (every value of :mod:`editlab.measure.metrics` per fact,
``Quality``), whole probe reports (``Reports``; also for the negated-edit protocol, which writes
"... is not → new" and probes the original fact), general ability, muting, held-out text,
simple-fact retention and the weights' digest; the bench's fact-by-fact evaluator (it keeps every
probe and the token predictions) is in :mod:`editlab.runs.bench`.

Cancelling is one way everywhere: pass an object with ``is_set()`` (a ``threading.Event``);
:class:`Cancelled` is raised within one model call of it being set.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from editlab.core.errors import Cancelled
from editlab.core.limits import deadline
from editlab.facts.fact import Fact
from editlab.measure import metrics
from editlab.measure.ability import AbilitySuite
from editlab.measure.muting import MutingProbe, heldout_text
from editlab.measure.probes import ProbeReport, default_probes, measure
from editlab.methods.base import EditError
from editlab.model.handle import weights_digest
from editlab.model.nethook import get_parameter
from editlab.model.tokens import target_ids
from editlab.session import EditSession

PROTOCOLS = ("independent", "sequential")

__all__ = [
    "PROTOCOLS",
    "Plan",
    "At",
    "Measured",
    "Outcome",
    "Progress",
    "Cancelled",
    "run",
    "edit_seed",
    "Quality",
    "Reports",
    "Ability",
    "Muting",
    "HeldOut",
    "Retention",
    "Digest",
]


def edit_seed(seed: int, index: int) -> int:
    """The torch seed of the edit whose first fact is ``index``: replaying a run edits alike."""
    return (seed * 1_000_003 + index) % (2**63)


@dataclass(frozen=True)
class Plan:
    """What one experiment edits and where it measures (see the module docstring)."""

    facts: tuple[Fact, ...]
    method: str
    hparams: Any = None  # overrides of the method's defaults for the model (a mapping), or an HParams
    protocol: str = "sequential"
    batch_size: int = 1
    checkpoints: tuple[int, ...] | None = None  # sequential: edit counts to measure at; None: after every batch
    batches: tuple[tuple[int, ...], ...] | None = None  # explicit batches of fact indices (default: consecutive)
    seed: int | None = 0  # each edit runs under edit_seed(seed, its first fact); None: torch's RNG is left alone
    corpus: str | None = None  # statistics corpus for methods that need second moments
    online: bool = True
    keep_weights: bool = False  # keep each edit's weight copies (undo); long runs drop them

    def __post_init__(self):
        object.__setattr__(self, "facts", tuple(self.facts))
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} is not one of {', '.join(PROTOCOLS)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch size must be a whole number of at least 1, got {self.batch_size!r}")
        n = len(self.facts)
        if self.batches is not None:
            batches = tuple(tuple(int(i) for i in b) for b in self.batches if len(b))
            flat = [i for b in batches for i in b]
            if sorted(flat) != list(range(n)):
                raise ValueError("explicit batches must cover every fact exactly once")
            object.__setattr__(self, "batches", batches)
            if self.checkpoints is not None:
                raise ValueError("give explicit batches or checkpoints, not both")
        if self.checkpoints is not None:
            cps = tuple(sorted({int(c) for c in self.checkpoints}))
            if self.protocol != "sequential":
                raise ValueError("checkpoints are edit counts of a sequential plan")
            if not cps or cps[0] < 0 or cps[-1] > n:
                raise ValueError(f"checkpoints must lie between 0 and the {n} facts, got {self.checkpoints!r}")
            object.__setattr__(self, "checkpoints", cps)

    @property
    def n(self) -> int:
        """Facts this plan edits (a sequential plan stops at its last checkpoint)."""
        return self.checkpoints[-1] if self.checkpoints else len(self.facts)

    def segments(self) -> list[tuple[tuple[int, ...], bool]]:
        """The plan as ``(batch of fact indices, measure after it)``, in order; an empty batch
        (first, measured) is the unedited model's checkpoint 0."""
        if self.checkpoints is not None:
            out: list[tuple[tuple[int, ...], bool]] = [((), True)] if self.checkpoints[0] == 0 else []
            edited = 0
            for step in self.checkpoints:
                while edited < step:
                    hi = min(edited + self.batch_size, step)
                    out.append((tuple(range(edited, hi)), hi == step))
                    edited = hi
            return out
        batches = self.batches or tuple(
            tuple(range(i, min(i + self.batch_size, len(self.facts))))
            for i in range(0, len(self.facts), self.batch_size)
        )
        return [(b, True) for b in batches]

    def steps(self) -> list[int]:
        """The step of every measurement: facts in the model (sequential) or the batch's number
        of facts so far (independent: the count of facts edited in the plan up to that batch)."""
        out, done = [], 0
        for batch, measured in self.segments():
            done += len(batch)
            if measured:
                out.append(done)
        return out


@dataclass(frozen=True)
class Progress:
    """What the loop is doing: facts edited so far, the stage, the checkpoint worked towards, and
    a time-left estimate once something was measured."""

    facts_done: int
    facts_total: int
    stage: str
    step: int
    elapsed_s: float
    eta_s: float | None
    run_id: int | None = None

    def line(self) -> str:
        eta = "" if self.eta_s is None else f", about {duration(self.eta_s)} left"
        return f"[{self.facts_done}/{self.facts_total} facts edited] {self.stage}{eta}"


def duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@dataclass
class At:
    """One checkpoint's context for the evaluators."""

    plan: Plan
    session: EditSession
    step: int
    edited: tuple[int, ...]  # indices of the facts whose edits are in the model now
    latest: tuple[int, ...]  # the batch just written (empty at checkpoint 0)
    failures: Sequence[dict]
    touched: frozenset
    cancel: Any = None
    report: Callable[[str], None] = lambda stage: None

    @property
    def facts(self) -> tuple[Fact, ...]:
        return self.plan.facts

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()

    def digest(self) -> str | None:
        """The touched weights' digest in this state (None before any edit wrote a weight)."""
        if not self.touched:
            return None
        h = self.session.handle
        with self.session.applied():
            return weights_digest(((n, get_parameter(h.model, n)) for n in sorted(self.touched)), length=24)


class Evaluator(Protocol):
    name: str

    def __call__(self, at: At) -> Any: ...


@dataclass
class Measured:
    """What the evaluators returned at one checkpoint (``values[name]``), their seconds
    (``seconds[name]``), and the seconds spent editing since the previous checkpoint."""

    step: int
    edited: tuple[int, ...]
    latest: tuple[int, ...]
    values: dict[str, Any]
    seconds: dict[str, float]
    edit_s: float


@dataclass
class Outcome:
    """A plan's run: every checkpoint's measurements, failed edits (the model was left as it
    was), seconds per fact's edit (its batch's seconds shared out), and notes (statistics used)."""

    plan: Plan
    measured: list[Measured] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    edit_seconds: dict[int, float] = field(default_factory=dict)
    notes: set[str] = field(default_factory=set)
    replayed: int | None = None
    replay_s: float = 0.0
    replay_exact: bool | None = None
    total_s: float = 0.0
    hparams: Any = None  # the method's hyperparameters as resolved for the model

    def error_of(self, index: int) -> str | None:
        for f in self.failures:
            if index in f["indices"]:
                return f["error"]
        return None


class _Clock:
    def __init__(self, n_facts: int, evals_left: int):
        self.start = time.perf_counter()
        self.n_facts, self.evals_left = n_facts, evals_left
        self.edit_s, self.edits, self.eval_s, self.evals = 0.0, 0, 0.0, 0

    def eta(self, done: int) -> float | None:
        if not self.evals:
            return None
        per_edit = self.edit_s / self.edits if self.edits else 0.0
        return max(0.0, (self.n_facts - done) * per_edit + self.evals_left * self.eval_s / self.evals)


class _Loop:
    """One :func:`run`'s state: the session, the resolved hyperparameters, the clock, what is in the model."""

    def __init__(
        self,
        handle,
        plan: Plan,
        session: EditSession | None,
        progress,
        cancel,
        skip: int | None,
        run_id: int | None,
        outcome: Outcome | None,
        what: str,
    ):
        self.handle, self.plan, self.cancel, self.skip, self.run_id = handle, plan, cancel, skip, run_id
        self.session = session or EditSession(handle, corpus=plan.corpus, online=plan.online)
        overrides = dict(plan.hparams) or None if isinstance(plan.hparams, Mapping) else plan.hparams
        self.hp = self.session.resolve_hparams(plan.method, overrides)
        self.out = outcome if outcome is not None else Outcome(plan)
        self.out.hparams = self.hp
        self.say = progress or (lambda p: None)
        self.past_deadline = deadline(what=what)
        self.clock = _Clock(plan.n, sum(1 for s in plan.steps() if skip is None or s > skip))
        self.done = 0  # facts edited so far, as the progress reports say
        self.step = 0  # the checkpoint worked towards
        self.touched: set[str] = set()
        self.edited: list[int] = []
        self.edit_since = 0.0

    def report(self, stage: str) -> None:
        """Tell the caller the stage, the facts done and the time left."""
        self.say(
            Progress(
                self.done,
                self.plan.n,
                stage,
                self.step,
                time.perf_counter() - self.clock.start,
                self.clock.eta(self.done),
                self.run_id,
            )
        )

    def check(self) -> None:
        """Stop here if the run was cancelled or is past its deadline."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()
        self.past_deadline()

    def edit(self, batch: tuple[int, ...], replay: bool) -> None:
        """Edit one batch under its own seed; a failed edit is recorded and the model left as it was."""
        plan, out = self.plan, self.out
        lo, hi = batch[0] + 1, batch[-1] + 1
        label = f"editing fact {lo}" + (f"-{hi}" if len(batch) > 1 else "") + f" of {len(plan.facts)} ({plan.method})"
        self.report(("replaying the recorded edits: " if replay else "") + label)
        devices = [self.handle.device] if self.handle.device.type == "cuda" else []
        t0 = time.perf_counter()
        rec = None
        with torch.random.fork_rng(devices=devices, enabled=plan.seed is not None):
            if plan.seed is not None:
                torch.manual_seed(edit_seed(plan.seed, batch[0]))
            try:
                rec = self.session.edit(
                    [plan.facts[i] for i in batch],
                    plan.method,
                    self.hp,
                    progress=lambda d, t, s: self.report(f"{label}: {s}"),
                )
            except EditError as e:
                out.failures.append(
                    {"first_fact": batch[0], "n": len(batch), "indices": list(batch), "error": str(e)[:300]}
                )
        if rec is not None:
            self._keep(rec, batch)
        if not replay:
            self.clock.edit_s += time.perf_counter() - t0
            self.clock.edits += len(batch)

    def _keep(self, rec, batch: tuple[int, ...]) -> None:
        """Note a done edit: its touched weights, statistics source and seconds per fact."""
        self.touched.update(rec.weights_after)
        if rec.info.get("stats_source"):
            self.out.notes.add(f"statistics: {rec.info['stats_source']}")
        for i in batch:
            self.out.edit_seconds[i] = rec.seconds / len(batch)
        if not self.plan.keep_weights:  # never undone here: drop the weight copies, memory stays flat
            self.session.records[-1] = dataclasses.replace(rec, weights_before={}, weights_after={})

    def here(self, batch) -> At:
        """The evaluators' view of the model now."""
        return At(
            self.plan,
            self.session,
            self.step,
            tuple(self.edited),
            tuple(batch),
            self.out.failures,
            frozenset(self.touched),
            self.cancel,
            self.report,
        )

    def replayed(self, batch, t_start: float, expected_digest: str | None) -> None:
        """At the stored checkpoint: time the replay and compare the touched weights' digest."""
        out, skip = self.out, self.skip
        out.replayed, out.replay_s = skip, time.perf_counter() - t_start
        self.clock.edit_s, self.clock.edits = out.replay_s, skip
        if expected_digest is not None:
            out.replay_exact = expected_digest == self.here(batch).digest()
        self.edit_since = time.perf_counter()

    def measure(self, batch, evaluators: Sequence[Evaluator], on_measured) -> None:
        """At a checkpoint: call every evaluator, record and announce what they returned."""
        edit_s = time.perf_counter() - self.edit_since
        at = self.here(batch)
        t_eval = time.perf_counter()
        values, seconds = {}, {}
        for ev in evaluators:
            self.check()
            t0 = time.perf_counter()
            values[ev.name] = ev(at)
            seconds[ev.name] = time.perf_counter() - t0
        m = Measured(self.step, at.edited, at.latest, values, seconds, edit_s)
        self.out.measured.append(m)
        if on_measured is not None:
            on_measured(m, at)
        self.clock.eval_s += time.perf_counter() - t_eval
        self.clock.evals += 1
        self.clock.evals_left -= 1
        self.report(f"checkpoint at {self.step} edits recorded")
        self.edit_since = time.perf_counter()


def run(
    handle,
    plan: Plan,
    evaluators: Sequence[Evaluator] = (),
    *,
    session: EditSession | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel=None,
    on_measured: Callable[[Measured, At], None] | None = None,
    skip: int | None = None,
    expected_digest: str | None = None,
    run_id: int | None = None,
    outcome: Outcome | None = None,
    what: str = "this run",
) -> Outcome:
    """Run ``plan`` on ``handle``: edit its batches in order and call every evaluator at each
    checkpoint; ``on_measured(measured, at)`` hears of each checkpoint as soon as it is done.

    ``skip``: a sequential plan's last checkpoint already measured (stored): the edits up to it are
    replayed without measuring (same batches, same per-edit seeds) and the touched weights'
    digest is compared with ``expected_digest`` (``Outcome.replay_exact``). A failed edit leaves
    the model as it was and is recorded in ``Outcome.failures``; the plan goes on. ``outcome``:
    the object to fill in (a caller that wants to read it while the plan runs)."""
    if skip is not None and plan.protocol != "sequential":
        raise ValueError("only a sequential plan resumes by replay")
    loop = _Loop(handle, plan, session, progress, cancel, skip, run_id, outcome, what)
    t_start = loop.edit_since = time.perf_counter()
    for batch, measured in plan.segments():
        loop.check()
        if plan.protocol == "independent":
            loop.session.reset()
            loop.edited = []
        loop.step += len(batch)
        replay = skip is not None and loop.step <= skip
        if batch:
            loop.edit(batch, replay)
            loop.edited += list(batch)
        loop.done = loop.step
        if replay:
            if loop.step == skip:
                loop.replayed(batch, t_start, expected_digest)
            continue
        if measured:
            loop.measure(batch, evaluators, on_measured)
    loop.out.total_s = time.perf_counter() - t_start
    return loop.out


# ---- evaluators ------------------------------------------------------------------------------------
QUALITY_PROBE_KINDS = ("positive", "negation", "true_false", "paraphrase", "neighborhood")  # what the scores read


def quality_probes(fact: Fact, tokenizer, kinds: Sequence[str] = QUALITY_PROBE_KINDS) -> list:
    """The probes the quality scores read (no free generation, no ablations); greedy only as long
    as the new target (the metrics use the teacher-forced probabilities and, without a true
    target, the greedy start). ``kinds``: a subset of :data:`QUALITY_PROBE_KINDS` to measure (the
    scores of the kinds left out are ``None``)."""
    unknown = set(kinds) - set(QUALITY_PROBE_KINDS)
    if unknown:
        raise ValueError(f"unknown quality probe kinds {sorted(unknown)}; choose from {', '.join(QUALITY_PROBE_KINDS)}")
    n_new = len(target_ids(tokenizer, fact.target_new)) + 1
    return [
        dataclasses.replace(p, max_new_tokens=1 if p.kind == "true_false" else n_new)
        for p in default_probes(fact, tokenizer)
        if p.kind in kinds
    ]


def measure_quality(
    session: EditSession, facts: Sequence[Fact], cancel=None, kinds: Sequence[str] = QUALITY_PROBE_KINDS
) -> list[tuple[dict, str]]:
    """Per fact: its :func:`editlab.measure.metrics.fact_scores` on the session's current model (weights,
    hooks and a prompt edit's context), and the greedy text after its prompt; ``kinds`` as in
    :func:`quality_probes` (the positive probe is always measured: the greedy text is its)."""
    kinds = ("positive", *[k for k in kinds if k != "positive"])
    out = []
    with session.edited() as m:
        for fact in facts:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            probes = quality_probes(fact, m.tokenizer, kinds)
            ms = measure(m.model, m.tokenizer, fact, probes, prefix=m.prefix)
            report = ProbeReport.of(fact, probes, after=ms)
            out.append((metrics.fact_scores(report, column="after"), ms[0].greedy))
    return out


@dataclass(frozen=True)
class Quality:
    """One checkpoint's edit quality, per fact: ``indices``, ``scores`` (every value of
    :func:`editlab.measure.metrics.fact_scores`) and ``greedy`` texts, for the facts in the model now
    (``scope="edited"``) or the batch just written (``"latest"``). At checkpoint 0 (nothing
    edited) it scores every fact the plan will edit, the unedited reference, unless
    ``reference=False`` (a caller that reads quality only after edits need not pay for it).
    ``kinds``: the probe kinds to measure (:data:`QUALITY_PROBE_KINDS`, all by default); a caller
    that reads only efficacy passes ``("positive",)`` and the other scores are ``None``."""

    scope: str = "edited"
    name: str = "quality"
    reference: bool = True
    kinds: tuple[str, ...] = QUALITY_PROBE_KINDS

    def __call__(self, at: At) -> dict:
        if not at.step and not self.reference:
            return {"indices": [], "scores": [], "greedy": []}
        idx = list(at.edited if self.scope == "edited" else at.latest) if at.step else list(range(at.plan.n))
        at.report("edit quality" + (f" of {len(idx)} edited facts" if at.step else " (unedited reference)"))
        per = measure_quality(at.session, [at.facts[i] for i in idx], at.cancel, self.kinds)
        return {"indices": idx, "scores": [p for p, _ in per], "greedy": [g for _, g in per]}


@dataclass(frozen=True)
class Reports:
    """Per fact in scope, its full :class:`~editlab.measure.probes.ProbeReport` (the unedited model against
    the current state, ``EditSession.compare``): on ``probes(fact, tokenizer)`` or the session's
    default probes. ``about``: the facts the reports are about when the plan writes other
    statements (the negated edit "... is not → new" is probed on the original fact's prompts)."""

    probes: Callable | None = None
    about: tuple[Fact, ...] | None = None
    scope: str = "latest"
    name: str = "reports"

    def __call__(self, at: At) -> dict[int, ProbeReport]:
        out = {}
        for i in at.latest if self.scope == "latest" else at.edited:
            at.check()
            fact = (self.about or at.facts)[i]
            out[i] = at.session.compare(fact, self.probes(fact, at.session.handle.tokenizer) if self.probes else None)
        return out


@dataclass(frozen=True)
class Ability:
    """General ability (:class:`~editlab.measure.ability.AbilitySuite`) of the edited model as the probes
    see it: weights, hooks and a prompt edit's context."""

    suite: AbilitySuite
    name: str = "ability"

    def __call__(self, at: At):
        with at.session.edited() as m:
            return self.suite.evaluate(
                m.handle, progress=lambda i, n, stage: at.report(stage), cancel=at.cancel, prefix=m.prefix
            )


@dataclass(frozen=True)
class Muting:
    """The muting indicators and sample generations (:class:`~editlab.measure.muting.MutingProbe`)."""

    probe: MutingProbe
    name: str = "muting"

    def __call__(self, at: At):
        at.report("muting probes")
        with at.session.edited() as m:
            return self.probe.measure(m.model, m.tokenizer, prefix=m.prefix)


@dataclass(frozen=True)
class HeldOut:
    """Per paragraph of held-out text: its negative log-likelihood, tokens and correct next tokens."""

    paragraphs: tuple[str, ...]
    max_tokens: int = 128
    name: str = "heldout"

    def __call__(self, at: At):
        at.report("held-out text")
        with at.session.edited() as m:
            return heldout_text(m.model, m.tokenizer, self.paragraphs, self.max_tokens, prefix=m.prefix)


@dataclass(frozen=True)
class Retention:
    """Per simple fact (``{"prompt", "answer"}``) the unedited model gets right: 1.0 if the greedy
    continuation still starts with the answer."""

    facts: tuple[Mapping, ...]
    name: str = "retention"

    def __call__(self, at: At) -> list[float]:
        if not self.facts:
            return []
        at.report(f"retention of {len(self.facts)} simple facts")
        with at.session.edited() as m:
            return retained(m.model, m.tokenizer, self.facts, m.prefix)


def retained(model, tokenizer, facts: Sequence[Mapping], prefix: str = "") -> list[float]:
    """Per simple fact: 1.0 if the greedy continuation of its prompt starts with its answer."""
    from editlab.measure.probes import starts_with_target
    from editlab.model.tokens import greedy

    if not facts:
        return []
    n = max(len(target_ids(tokenizer, f["answer"])) for f in facts) + 2
    texts = greedy(model, tokenizer, [list(tokenizer(prefix + f["prompt"]).input_ids) for f in facts], n)
    return [float(bool(starts_with_target(t, f["answer"]))) for t, f in zip(texts, facts)]


@dataclass(frozen=True)
class Digest:
    """The touched weights' digest (replay checks it when a stored run resumes)."""

    name: str = "weights_digest"

    def __call__(self, at: At) -> str | None:
        return at.digest()
