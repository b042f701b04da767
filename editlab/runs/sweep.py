"""Sequential-edit sweeps: edit facts one batch after another and watch what the model keeps.

At step 0 (the unedited model) and after each requested number of edits, a checkpoint records:

- edit quality over *all* facts edited so far (retention) and over the latest batch alone: the
  CounterFact scores ES, PS, NS, S and the negation/fact-check scores PP, PN, RE = PP − PN, FC
  (definitions in :mod:`editlab.measure.metrics`);
- general ability (:mod:`editlab.measure.ability`: MMLU, GSM8K, CommonsenseQA, TriviaQA, TruthfulQA MC1,
  BBH, perplexity);
- the muting indicators (:mod:`editlab.measure.muting`) and the sample generations.

Checkpoints go to the run store (:mod:`editlab.runs.store`) as they are made, so a crash loses at most
the checkpoint being computed. **Resume** replays the recorded run's edits from the unedited model
up to its last checkpoint (same facts, same batches, same per-edit seeds), checks the replayed
weights against the digest stored with that checkpoint, and continues. Replay rather than stored
weight deltas: it is exact for every method, including those whose state is not in the weights
(GRACE's adapters, IKE's context, AlphaEdit's accumulated keys), and the store stays small; it
costs the edits' time again (evaluations are not repeated). A digest mismatch (another machine's
arithmetic) is reported in the run's note, not hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from editlab.core import paths
from editlab.core.errors import Cancelled
from editlab.core.limits import current as current_limits
from editlab.facts.fact import Fact
from editlab.measure import metrics as quality_metrics
from editlab.measure.ability import AbilityConfig, AbilitySuite
from editlab.measure.muting import MutingProbe
from editlab.runs.experiments import Ability, At, Digest, Measured, Muting, Plan, Progress, Quality
from editlab.runs.store import RunStore
from editlab.runs.writer import StoredRun, run_stored
from editlab.session import EditSession

KIND = "sweep"
DEFAULT_COUNTS = (1, 2, 5, 10, 20, 50, 100)
QUALITY_KEYS = ("ES", "PS", "NS", "S", "PP", "PN", "RE", "FC")
QUALITY_LABELS = {
    "ES": "efficacy",
    "PS": "paraphrase",
    "NS": "neighbourhood",
    "S": "score (hmean)",
    "PP": "PP",
    "PN": "PN (new target survives negation)",
    "RE": "rectified efficacy (PP − PN)",
    "FC": "fact-check accuracy",
}

__all__ = ["SweepConfig", "SweepProgress", "SweepResult", "run_sweep", "Cancelled", "parse_counts", "curves"]


def parse_counts(text: str | Sequence[int]) -> tuple[int, ...]:
    """ "1,2,5,10" -> (1, 2, 5, 10): positive, sorted, without repeats."""
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


SweepProgress = Progress  # the engine's progress report


SweepResult = StoredRun  # run id, status, checkpoints, where a resumed run picked up, replay exact?


def load_facts(path: str, n: int) -> list[Fact]:
    """The first ``n`` facts of a dataset file, in file order (any format editlab.facts.datasets reads)."""
    from editlab.facts.datasets import load_dataset

    ds = load_dataset(path)
    if n > len(ds):
        raise ValueError(f"{Path(path).name} holds {len(ds)} facts; the sweep needs {n} (lower --counts)")
    return list(ds.facts[:n])


def _summary(per_fact: Sequence[dict]) -> dict:
    agg = quality_metrics.aggregate(per_fact)
    return {k: agg[k] for k in QUALITY_KEYS} | {"n": agg["n"]}


def run_config(handle, session: EditSession, config: SweepConfig, facts: Sequence[Fact]) -> dict:
    """What identifies the run in the store: the same configuration resumes it."""
    hp = session.resolve_hparams(config.method, dict(config.hparams) or None)
    return {
        "model": handle.name,
        "revision": handle.revision,
        "fingerprint": handle.fingerprint,
        "method": config.method,
        "hparams": hp.to_dict(),
        "dataset": str(config.dataset),
        "facts_digest": paths.key_digest(facts=[f.to_dict() for f in facts]),
        "seed": config.seed,
        "counts": list(config.counts),
        "batch_size": config.batch_size,
        "ability": config.ability.to_dict(),
        "muting": config.muting.to_dict(),
        "corpus": config.corpus,
    }


def run_sweep(
    handle,
    config: SweepConfig,
    store: RunStore | None = None,
    progress: Callable[[Progress], None] | None = None,
    cancel=None,
    resume: bool = True,
    facts: Sequence[Fact] | None = None,
) -> SweepResult:
    """Run (or resume) a sweep; every checkpoint is in ``store`` as soon as it is measured.

    The facts are the first ``max(counts)`` of ``config.dataset`` (a file), or ``facts`` when given
    (then ``config.dataset`` is only their label); the run is identified by their content. The
    sweep is a sequential :class:`~editlab.runs.experiments.Plan` with checkpoints ``0, *counts``, run by
    :func:`editlab.runs.writer.run_stored` with the quality, ability, muting and digest evaluators.

    ``cancel`` (a ``threading.Event``) stops the sweep within one model call; the run is marked
    ``cancelled`` and :class:`Cancelled` is raised. Running it again resumes from the last checkpoint.
    """
    store = store or RunStore()
    if facts is None:
        facts = load_facts(config.dataset, config.counts[-1])
    elif len(facts) < config.counts[-1]:
        raise ValueError(f"{len(facts)} facts given; the sweep needs {config.counts[-1]} (lower the counts)")
    facts = list(facts[: config.counts[-1]])
    session = EditSession(handle, corpus=config.corpus, online=config.online)
    cfg = run_config(handle, session, config, facts)
    plan = Plan(
        tuple(facts),
        config.method,
        cfg["hparams"],
        "sequential",
        config.batch_size,
        checkpoints=(0, *config.counts),
        seed=config.seed,
        corpus=config.corpus,
        online=config.online,
    )
    evaluators = (Quality("edited"), Ability(AbilitySuite(config.ability)), Muting(config.muting), Digest())
    return run_stored(
        handle,
        plan,
        evaluators,
        store,
        KIND,
        cfg,
        _record,
        resume=resume,
        progress=progress,
        cancel=cancel,
        what="this sweep",
    )


def _record(m: Measured, at: At, outcome) -> tuple[dict, dict, dict]:
    """A sweep checkpoint as the store keeps it: metrics, samples, timings."""
    q, ab, mute = m.values["quality"], m.values["ability"], m.values["muting"]
    pos = {i: j for j, i in enumerate(q["indices"])}
    quality = {"all": _summary(q["scores"])}
    if m.step:
        quality["latest"] = _summary([q["scores"][pos[i]] for i in m.latest])
    shown = m.latest if m.step else q["indices"][:3]
    edit_samples = [
        {
            "prompt": at.facts[i].prompt,
            "target_new": at.facts[i].target_new,
            "target_true": at.facts[i].target_true,
            "greedy": q["greedy"][pos[i]],
        }
        for i in shown
    ]
    metrics = {
        "edits": m.step,
        "quality": quality,
        "ability": ab.scores(),
        "muting": mute.metrics(),
        "ability_detail": {t: dict(s.metrics) for t, s in ab.tasks.items()},
        "failed_edits": len(at.failures),
        "weights_digest": m.values["weights_digest"] if m.step else None,
    }
    samples = {
        "muting": [s.to_dict() for s in mute.samples],
        "ability": ab.samples(3),
        "edits": edit_samples,
        "failures": [dict(f) for f in at.failures],
    }
    timings = {
        "quality_s": m.seconds["quality"],
        "ability_s": m.seconds["ability"],
        "muting_s": m.seconds["muting"],
        **{f"ability.{t}": s for t, s in ab.seconds().items()},
        "edit_s": m.edit_s,
    }
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
    return (
        f"cost: {float(df['seconds'].sum()):.0f} s in all ({edit_s:.0f} s editing"
        + (f", {edit_s / edits:.1f} s per edit" if edits else "")
        + f", {float(df['seconds.measure'].sum()):.0f} s measuring); per checkpoint (edits: seconds) {per}"
    )
