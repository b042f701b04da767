"""Sequential-edit sweeps: edit facts one batch after another and watch what the model keeps.

At step 0 (the unedited model) and after each requested number of edits, a checkpoint records:

- edit quality over *all* facts edited so far (retention) and over the latest batch alone: the
  CounterFact scores ES, PS, NS, S and the negation/fact-check scores PP, PN, RE = PP − PN, FC
  (definitions in :mod:`editlab.metrics`);
- general ability (:mod:`editlab.ability`: MMLU, GSM8K, CommonsenseQA, TriviaQA, TruthfulQA MC1,
  BBH, perplexity);
- the muting indicators (:mod:`editlab.muting`) and the sample generations.

Checkpoints go to the run store (:mod:`editlab.store`) as they are made, so a crash loses at most
the checkpoint being computed. **Resume** replays the recorded run's edits from the unedited model
up to its last checkpoint (same facts, same batches, same per-edit seeds), checks the replayed
weights against the digest stored with that checkpoint, and continues. Replay rather than stored
weight deltas: it is exact for every method, including those whose state is not in the weights
(GRACE's adapters, IKE's context, AlphaEdit's accumulated keys), and the store stays small; it
costs the edits' time again (evaluations are not repeated). A digest mismatch (another machine's
arithmetic) is reported in the run's note, not hidden.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from . import metrics as quality_metrics
from . import paths
from .ability import AbilityConfig, AbilitySuite, Cancelled
from .facts import Fact
from .limits import current as current_limits
from .limits import deadline
from .methods.base import EditError
from .model import weights_digest
from .muting import MutingProbe
from .nethook import get_parameter
from .probes import ProbeReport, default_probes, measure, target_ids
from .session import EditSession
from .store import RunStore

KIND = "sweep"
DEFAULT_COUNTS = (1, 2, 5, 10, 20, 50, 100)
QUALITY_KEYS = ("ES", "PS", "NS", "S", "PP", "PN", "RE", "FC")
QUALITY_PROBE_KINDS = ("positive", "negation", "true_false", "paraphrase", "neighborhood")  # what the scores read
QUALITY_LABELS = {"ES": "efficacy", "PS": "paraphrase", "NS": "neighbourhood", "S": "score (hmean)",
                  "PP": "PP", "PN": "PN (new target survives negation)", "RE": "rectified efficacy (PP − PN)",
                  "FC": "fact-check accuracy"}

__all__ = ["SweepConfig", "SweepProgress", "SweepResult", "run_sweep", "Cancelled", "parse_counts", "curves"]


def parse_counts(text: str | Sequence[int]) -> tuple[int, ...]:
    """"1,2,5,10" -> (1, 2, 5, 10): positive, sorted, without repeats."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        counts = sorted({int(str(c).strip()) for c in items if str(c).strip()})
    except ValueError as e:
        raise ValueError(f"counts must be whole numbers separated by commas, got {text!r}") from e
    if not counts or counts[0] < 1:
        raise ValueError(f"counts must be positive numbers of edits, got {text!r}")
    return tuple(counts)


@dataclass(frozen=True)
class SweepConfig:
    """Everything that determines a sweep's results (and so identifies it in the store)."""

    method: str
    dataset: str
    counts: tuple[int, ...] = DEFAULT_COUNTS
    batch_size: int = 1
    hparams: Mapping = field(default_factory=dict)  # overrides of the method's defaults for the model
    seed: int = 0
    ability: AbilityConfig = field(default_factory=AbilityConfig)
    muting: MutingProbe = field(default_factory=MutingProbe)
    corpus: str | None = None  # statistics corpus for methods that need second moments
    online: bool = True

    def __post_init__(self):
        object.__setattr__(self, "counts", parse_counts(self.counts))
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch size must be a whole number of at least 1, got {self.batch_size!r}")
        if not isinstance(self.hparams, Mapping):
            raise ValueError(f"hparams must be a mapping of names to values, got {type(self.hparams).__name__}")
        limits = current_limits()
        limits.check("max_edits", self.counts[-1], "edits in this sweep (its largest count)")
        limits.check("max_facts", self.batch_size, "facts per edit (batch size)")
        limits.check("max_generation_tokens", self.muting.max_new_tokens, "muting probe tokens")


@dataclass(frozen=True)
class SweepProgress:
    facts_done: int
    facts_total: int
    stage: str
    step: int  # the checkpoint being worked towards (0 = the unedited reference)
    elapsed_s: float
    eta_s: float | None  # None until there is something to extrapolate from
    run_id: int | None = None

    def line(self) -> str:
        eta = "" if self.eta_s is None else f", about {_dur(self.eta_s)} left"
        return f"[{self.facts_done}/{self.facts_total} facts edited] {self.stage}{eta}"


@dataclass(frozen=True)
class SweepResult:
    run_id: int
    status: str
    steps: tuple[int, ...]
    resumed_from: int | None = None
    replay_exact: bool | None = None


def _dur(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def load_facts(path: str, n: int) -> list[Fact]:
    """The first ``n`` facts of a dataset file, in file order (any format editlab.datasets reads)."""
    from .datasets import load_dataset

    ds = load_dataset(path)
    if n > len(ds):
        raise ValueError(f"{Path(path).name} holds {len(ds)} facts; the sweep needs {n} (lower --counts)")
    return list(ds.facts[:n])


def quality_probes(fact: Fact, tokenizer) -> list:
    """The probes the quality scores read (no free generation, no ablations); greedy only as long
    as the new target (the metrics use the teacher-forced probabilities and, without a true
    target, the greedy start)."""
    n_new = len(target_ids(tokenizer, fact.target_new)) + 1
    return [dataclasses.replace(p, max_new_tokens=1 if p.kind == "true_false" else n_new)
            for p in default_probes(fact, tokenizer) if p.kind in QUALITY_PROBE_KINDS]


def measure_quality(session: EditSession, facts: Sequence[Fact], cancel=None) -> list[tuple[dict, str]]:
    """Per fact: its metric values on the session's current model, and the greedy text after its prompt."""
    out = []
    with session.edited() as m:
        for fact in facts:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            probes = quality_probes(fact, m.tokenizer)
            ms = measure(m.model, m.tokenizer, fact, probes, prefix=m.prefix)
            report = ProbeReport.of(fact, probes, after=ms)
            out.append((quality_metrics.fact_scores(report, column="after"), ms[0].greedy))
    return out


def _summary(per_fact: Sequence[dict]) -> dict:
    agg = quality_metrics.aggregate(per_fact)
    return {k: agg[k] for k in QUALITY_KEYS} | {"n": agg["n"]}


def edit_seed(seed: int, index: int) -> int:
    return (seed * 1_000_003 + index) % (2**63)


class _Clock:
    """Running means of what things cost, for the time-left estimate."""

    def __init__(self, n_facts: int, steps_left: int):
        self.start = time.perf_counter()
        self.n_facts, self.steps_left = n_facts, steps_left
        self.edit_s, self.edits = 0.0, 0
        self.eval_s, self.evals = 0.0, 0

    def eta(self, done: int) -> float | None:
        if not self.evals:
            return None
        per_edit = self.edit_s / self.edits if self.edits else 0.0
        return max(0.0, (self.n_facts - done) * per_edit + self.steps_left * self.eval_s / self.evals)


def run_config(handle, session: EditSession, config: SweepConfig, facts: Sequence[Fact]) -> dict:
    """What identifies the run in the store: the same configuration resumes it."""
    hp = session.resolve_hparams(config.method, dict(config.hparams) or None)
    return {
        "model": handle.name, "revision": handle.revision, "fingerprint": handle.fingerprint,
        "method": config.method, "hparams": hp.to_dict(), "dataset": str(config.dataset),
        "facts_digest": paths.key_digest(facts=[f.to_dict() for f in facts]), "seed": config.seed,
        "counts": list(config.counts),
        "batch_size": config.batch_size, "ability": config.ability.to_dict(), "muting": config.muting.to_dict(),
        "corpus": config.corpus,
    }


def run_sweep(handle, config: SweepConfig, store: RunStore | None = None,
              progress: Callable[[SweepProgress], None] | None = None, cancel=None,
              resume: bool = True, facts: Sequence[Fact] | None = None) -> SweepResult:
    """Run (or resume) a sweep; every checkpoint is in ``store`` as soon as it is measured.

    The facts are the first ``max(counts)`` of ``config.dataset`` (a file), or ``facts`` when given
    (then ``config.dataset`` is only their label); the run is identified by their content.

    ``cancel`` (a ``threading.Event``) stops the sweep within one model call; the run is marked
    ``cancelled`` and :class:`Cancelled` is raised. Running it again resumes from the last checkpoint.
    """
    store = store or RunStore()
    session = EditSession(handle, corpus=config.corpus, online=config.online)
    if facts is None:
        facts = load_facts(config.dataset, config.counts[-1])
    elif len(facts) < config.counts[-1]:
        raise ValueError(f"{len(facts)} facts given; the sweep needs {config.counts[-1]} (lower the counts)")
    facts = list(facts[: config.counts[-1]])
    cfg = run_config(handle, session, config, facts)
    hp = cfg["hparams"]
    existing = store.find_run(KIND, cfg) if resume else None
    run_id = existing.id if existing else store.create_run(KIND, cfg)
    done = {c.step: c for c in store.checkpoints(run_id, samples=False)} if existing else {}
    steps = [0, *config.counts]
    if all(s in done for s in steps):
        store.set_status(run_id, "done")
        return SweepResult(run_id, "done", tuple(steps), resumed_from=max(done), replay_exact=None)

    ability = AbilitySuite(config.ability)
    clock = _Clock(len(facts), sum(s not in done for s in steps))
    state = {"facts_done": 0, "step": 0}

    def report(stage: str) -> None:
        if progress:
            progress(SweepProgress(state["facts_done"], len(facts), stage, state["step"],
                                   time.perf_counter() - clock.start, clock.eta(state["facts_done"]), run_id))

    past_deadline = deadline(what="this sweep")

    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled()
        past_deadline()

    touched: set[str] = set()
    failures: list[dict] = []
    last_batch: list[int] = []

    def edit_batch(lo: int, hi: int) -> None:
        batch = facts[lo:hi]
        devices = [handle.device] if handle.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(edit_seed(config.seed, lo))
            try:
                rec = session.edit(batch, config.method, hp)
            except EditError as e:
                failures.append({"first_fact": lo, "n": hi - lo, "error": str(e)[:300]})
                return
        touched.update(rec.weights_after)
        # A sweep never undoes: drop this edit's weight copies (two per touched weight per edit)
        # so a long sweep's memory stays flat. The session's current weights are unaffected.
        session.records[-1] = dataclasses.replace(rec, weights_before={}, weights_after={})

    def digest() -> str:
        with session.applied():
            return weights_digest(((n, get_parameter(handle.model, n)) for n in sorted(touched)), length=24)

    def batches(lo: int, hi: int):
        i = lo
        while i < hi:
            j = min(i + config.batch_size, hi)
            yield i, j
            i = j

    resumed_from, replay_exact = None, None
    store.set_status(run_id, "running")
    try:
        # Replay what the store already holds (the edits only; their evaluations are kept).
        last = max((s for s in steps if s in done), default=None)
        replay_s = 0.0
        if last:
            t0 = time.perf_counter()
            for lo, hi in batches(0, last):
                check()
                state["facts_done"] = lo
                report(f"replaying the recorded edits up to {last}")
                edit_batch(lo, hi)
                last_batch = list(range(lo, hi))
            state["facts_done"] = last
            replay_s = time.perf_counter() - t0
            clock.edit_s, clock.edits = replay_s, last
            resumed_from = last
            recorded = store.checkpoints(run_id, samples=False)[-1].metrics.get("weights_digest")
            replay_exact = recorded == digest()
            if not replay_exact:
                store.set_status(run_id, "running", note=(
                    f"resumed at {last} edits by replay; the replayed weights differ from the recorded ones "
                    "(digest mismatch), so later checkpoints come from a state that is not bit-identical"))
        elif last == 0:
            resumed_from = 0

        edited = last or 0
        for step in steps:
            if step in done:
                continue
            state["step"] = step
            t_edit = time.perf_counter()
            for lo, hi in batches(edited, step):
                check()
                state["facts_done"] = lo
                report(f"editing fact {lo + 1}" + (f"-{hi}" if hi - lo > 1 else "") + f" of {len(facts)} ({config.method})")
                t0 = time.perf_counter()
                edit_batch(lo, hi)
                clock.edit_s += time.perf_counter() - t0
                clock.edits += hi - lo
                last_batch = list(range(lo, hi))
            edit_s = time.perf_counter() - t_edit
            edited = step
            state["facts_done"] = step
            t_eval = time.perf_counter()
            metrics, samples, timings = _evaluate(session, facts, step, last_batch, ability, config.muting,
                                                  report, cancel)
            metrics["failed_edits"] = len(failures)
            metrics["weights_digest"] = digest() if step else None
            samples["failures"] = list(failures)
            timings["edit_s"] = edit_s
            if replay_s and step == min(s for s in steps if s not in done):
                timings.update({"replay_s": replay_s, "replayed_edits": last, "replay_exact": replay_exact})
            store.add_checkpoint(run_id, step, metrics, samples=samples, timings=timings)
            clock.eval_s += time.perf_counter() - t_eval
            clock.evals += 1
            clock.steps_left -= 1
            report(f"checkpoint at {step} edits recorded")
    except Cancelled:
        store.set_status(run_id, "cancelled")
        raise
    except Exception as e:
        store.set_status(run_id, "failed", note=f"{type(e).__name__}: {e}"[:500])
        raise
    except BaseException:  # Ctrl-C, or the app stopping the script: resumable
        store.set_status(run_id, "interrupted")
        raise
    store.set_status(run_id, "done")
    return SweepResult(run_id, "done", tuple(steps), resumed_from=resumed_from, replay_exact=replay_exact)


def _evaluate(session: EditSession, facts: Sequence[Fact], step: int, last_batch: Sequence[int],
              ability: AbilitySuite, muting: MutingProbe, report, cancel) -> tuple[dict, dict, dict]:
    timings: dict = {}
    # Edit quality: at step 0 over every fact the sweep will edit (the unedited reference).
    t0 = time.perf_counter()
    report("edit quality" + (f" of {step} edited facts" if step else " (unedited reference)"))
    scope = facts[:step] if step else facts
    per = measure_quality(session, scope, cancel)
    quality = {"all": _summary([p for p, _ in per])}
    if step:
        quality["latest"] = _summary([per[i][0] for i in last_batch])
    timings["quality_s"] = time.perf_counter() - t0
    edit_samples = [{"prompt": facts[i].prompt, "target_new": facts[i].target_new, "target_true": facts[i].target_true,
                     "greedy": per[i][1]} for i in (last_batch if step else range(min(3, len(facts))))]

    t0 = time.perf_counter()
    # Ability and muting see the edited model as the probes do: weights, hooks and a prompt edit's context.
    with session.edited() as m:
        res = ability.evaluate(m.handle, progress=lambda i, n, stage: report(stage), cancel=cancel, prefix=m.prefix)
    timings["ability_s"] = time.perf_counter() - t0
    timings.update({f"ability.{t}": s for t, s in res.seconds().items()})

    t0 = time.perf_counter()
    report("muting probes")
    if cancel is not None and cancel.is_set():
        raise Cancelled()
    with session.edited() as m:
        mute = muting.measure(m.model, m.tokenizer, prefix=m.prefix)
    timings["muting_s"] = time.perf_counter() - t0

    metrics = {"edits": step, "quality": quality, "ability": res.scores(), "muting": mute.metrics(),
               "ability_detail": {t: dict(s.metrics) for t, s in res.tasks.items()}}
    samples = {"muting": [s.to_dict() for s in mute.samples], "ability": res.samples(3), "edits": edit_samples}
    return metrics, samples, timings


def curves(store: RunStore, run_id: int):
    """One row per checkpoint: ``edits``, ``quality_all.<K>``, ``quality_latest.<K>``,
    ``ability.<task>``, ``muting.<indicator>`` (what the page plots and the benchmark prints), and
    what the checkpoint cost: ``seconds.edit`` (the edits since the previous checkpoint),
    ``seconds.measure`` (edit quality, ability and muting probes) and ``seconds`` (both)."""
    import pandas as pd

    rows = []
    for c in store.checkpoints(run_id, samples=False):
        m = c.metrics
        row = {"edits": c.step}
        for scope in ("all", "latest"):
            for k, v in (m.get("quality", {}).get(scope) or {}).items():
                row[f"quality_{scope}.{k}"] = v
        row.update({f"ability.{k}": v for k, v in (m.get("ability") or {}).items()})
        row.update({f"muting.{k}": v for k, v in (m.get("muting") or {}).items()})
        row["failed_edits"] = m.get("failed_edits")
        t = c.timings or {}
        edit = float(t.get("edit_s") or 0.0) + float(t.get("replay_s") or 0.0)
        measure = sum(float(t.get(k) or 0.0) for k in ("quality_s", "ability_s", "muting_s"))
        row.update({"seconds.edit": edit, "seconds.measure": measure, "seconds": edit + measure})
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def cost_line(df) -> str:
    """What a run cost, in one line: seconds per checkpoint and in all (from :func:`curves`)."""
    if df is None or not len(df) or "seconds" not in df.columns:
        return "cost: no checkpoint yet"
    per = ", ".join(f"{int(e)}: {s:.0f} s" for e, s in zip(df["edits"], df["seconds"]))
    edits = int(df["edits"].max())
    edit_s = float(df["seconds.edit"].sum())
    return (f"cost: {float(df['seconds'].sum()):.0f} s in all ({edit_s:.0f} s editing"
            + (f", {edit_s / edits:.1f} s per edit" if edits else "")
            + f", {float(df['seconds.measure'].sum()):.0f} s measuring); per checkpoint (edits: seconds) {per}")
