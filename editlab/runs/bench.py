"""The batch benchmark: several editing methods on the same facts, every metric, one protocol.

``run_bench(handle, BenchConfig(...))`` loads a dataset (seeded subset), measures every fact on the
unedited model once (the baseline row), then for each method edits the facts under the chosen
protocol and scores the edited model with all three metric conventions (see
:mod:`editlab.measure.metrics` and docs/metrics.md). Results go to the run store (kind ``"bench"``): one
checkpoint per method (step 0 is the unedited row), so an interrupted run resumes at the first
method it had not finished, and past runs can be reloaded and compared.

Protocols (labelled in every result, because numbers from different protocols do not compare):

- ``independent``: every batch of ``batch_size`` facts is edited into the *unedited* model
  (``EditSession.reset()`` between batches) and scored right away;
- ``sequential``: batches are applied one after another to the same model; ``evaluate`` says
  whether each batch is scored right after its own edit (``after_each``) or every fact is scored
  once all edits are in (``at_end``: retention).

NP and NN need a second, *negated* edit per fact ("{prompt} not" → new target), run under the same
protocol in its own session (``negative_edits``; off halves the cost and leaves NP/NN empty).
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from editlab import methods
from editlab.core.bounded import whole
from editlab.core.errors import Cancelled
from editlab.core.limits import current as current_limits
from editlab.core.limits import deadline
from editlab.facts.datasets import Dataset, load_dataset
from editlab.facts.fact import Fact
from editlab.measure.metrics import CONVENTIONS, METRICS, TokenEvidence, aggregate, fact_scores
from editlab.measure.probes import Measure, Probe, ProbeReport, default_probes
from editlab.measure.tokenacc import TokenPrediction, predict_tokens
from editlab.runs import experiments, writer
from editlab.runs.store import export_target
from editlab.session import EditSession

KIND = "bench"
UNEDITED = "unedited"
MODES = ("independent", "sequential")
EVALUATE = ("after_each", "at_end")

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class BenchConfig:
    """Everything that determines a benchmark's results (with the model's identity)."""

    dataset: str
    methods: tuple[str, ...] = ("rome",)
    n: int | None = 20
    seed: int | None = 0
    dataset_format: str | None = None
    skip_invalid: bool = False
    mode: str = "independent"
    batch_size: int = 1
    evaluate: str = "after_each"
    negative_edits: bool = True
    generation_tokens: int = 16
    hparams: Mapping[str, Mapping] = field(default_factory=dict)  # method -> overrides (EasyEdit keys too)
    corpus: str | None = None  # text corpus for second-moment statistics
    online: bool = True

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(m.strip().lower() for m in self.methods if m and m.strip()))
        object.__setattr__(self, "hparams", {k.lower(): dict(v) for k, v in (self.hparams or {}).items()})

    def validate(self) -> None:
        known = methods.available()
        unknown = [m for m in self.methods if m not in known]
        if unknown:
            raise ValueError(
                f"unknown editing method{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"available: {', '.join(known)}"
            )
        if len(set(self.methods)) != len(self.methods):
            raise ValueError("a method is listed twice")
        stray = [m for m in self.hparams if m not in self.methods]
        if stray:
            raise ValueError(f"hyperparameters given for {', '.join(stray)}, which is not among the methods")
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if self.evaluate not in EVALUATE:
            raise ValueError(f"evaluate {self.evaluate!r} is not one of {', '.join(EVALUATE)}")
        for name in ("batch_size", "n", "generation_tokens"):
            if name != "n" or self.n is not None:
                object.__setattr__(self, name, whole(getattr(self, name), name))
        limits = current_limits()
        if self.n is not None:
            limits.check("max_facts", self.n, "facts in this benchmark (n)")
        limits.check("max_facts", self.batch_size, "facts per edit (batch_size)")
        limits.check("max_generation_tokens", self.generation_tokens, "generation_tokens")

    @property
    def protocol(self) -> str:
        return protocol_label(self.mode, self.batch_size, self.evaluate)


def protocol_label(mode: str, batch_size: int, evaluate: str) -> str:
    if mode == "independent":
        return f"independent edits (each from the unedited model), batch size {batch_size}"
    when = "evaluated after each edit" if evaluate == "after_each" else "evaluated at the end (retention)"
    return f"sequential edits, batch size {batch_size}, {when}"


# ---- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FactResult:
    """One fact under one method (or the unedited model): every probe, the token predictions, the
    negated edit's probes, and the per-fact scores of the scored ``column``."""

    index: int
    record: int
    report: ProbeReport
    tokens: TokenEvidence
    negative: ProbeReport | None
    scores: dict
    column: str = "after"
    edit_seconds: float | None = None
    error: str | None = None
    negative_error: str | None = None

    @property
    def fact(self) -> Fact:
        return self.report.fact

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "record": self.record,
            "column": self.column,
            "scores": self.scores,
            "edit_seconds": self.edit_seconds,
            "error": self.error,
            "negative_error": self.negative_error,
            "report": self.report.to_dict(),
            "tokens": self.tokens.to_dict(),
            "negative": self.negative.to_dict() if self.negative else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> FactResult:
        report = ProbeReport.from_dict(d["report"])
        return cls(
            index=d["index"],
            record=d["record"],
            report=report,
            tokens=TokenEvidence.from_dict(d["tokens"]),
            negative=ProbeReport.from_dict(d["negative"], report.fact) if d.get("negative") else None,
            scores=dict(d["scores"]),
            column=d.get("column", "after"),
            edit_seconds=d.get("edit_seconds"),
            error=d.get("error"),
            negative_error=d.get("negative_error"),
        )


@dataclass(frozen=True)
class MethodResult:
    method: str  # UNEDITED for the baseline row
    facts: tuple[FactResult, ...]
    metrics: dict
    timings: dict = field(default_factory=dict)
    hparams: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def failed(self) -> int:
        return sum(1 for f in self.facts if f.error)


@dataclass(frozen=True)
class BenchResult:
    config: dict
    rows: tuple[MethodResult, ...]
    run_id: int | None = None
    status: str = "done"

    @property
    def protocol(self) -> str:
        c = self.config
        return protocol_label(c["mode"], c["batch_size"], c["evaluate"])

    def row(self, method: str) -> MethodResult:
        for r in self.rows:
            if r.method == method:
                return r
        raise KeyError(f"no {method!r} row in this benchmark")

    def table(self, labels: bool = False):
        """Methods × metrics (the unedited row first), with fact counts and seconds per edit."""
        import pandas as pd

        records = []
        for r in self.rows:
            rec = {
                "method": r.method,
                **{m.key: r.metrics.get(m.key) for m in METRICS},
                "n": r.metrics.get("n"),
                "failed": r.failed,
                "s/edit": r.timings.get("seconds_per_edit"),
            }
            records.append(rec)
        df = pd.DataFrame.from_records(records).set_index("method")
        if labels:
            df = df.rename(columns={m.key: m.label for m in METRICS})
        return df

    def per_fact(self):
        """One row per (method, fact): the fact, its per-fact scores, timing and any error."""
        import pandas as pd

        records = []
        for r in self.rows:
            for f in r.facts:
                records.append(
                    {
                        "method": r.method,
                        "index": f.index,
                        "record": f.record,
                        "case_id": f.fact.case_id,
                        "subject": f.fact.subject,
                        "prompt": f.fact.prompt,
                        "target_new": f.fact.target_new,
                        "target_true": f.fact.target_true,
                        **f.scores,
                        "edit_seconds": f.edit_seconds,
                        "error": f.error or f.negative_error,
                    }
                )
        return pd.DataFrame.from_records(records)

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "protocol": self.protocol,
            "config": self.config,
            "metrics": [
                {
                    "key": m.key,
                    "label": m.label,
                    "convention": CONVENTIONS[m.convention],
                    "higher_is_better": m.higher_is_better,
                    "definition": m.description,
                }
                for m in METRICS
            ],
            "rows": [
                {
                    "method": r.method,
                    "metrics": r.metrics,
                    "timings": r.timings,
                    "failed": r.failed,
                    "hparams": r.hparams,
                    "notes": list(r.notes),
                }
                for r in self.rows
            ],
        }

    def to_json(self, facts: bool = False, **kw) -> str:
        d = self.to_dict()
        if facts:
            for row, r in zip(d["rows"], self.rows):
                row["facts"] = [f.to_dict() for f in r.facts]
        return json.dumps(d, **kw)

    def to_markdown(self, digits: int = 2) -> str:
        """The table as Markdown, one column group per convention, for docs and the terminal."""
        lines = [
            f"protocol: {self.protocol}; model: {self.config.get('model')}; dataset: "
            f"{Path(str(self.config.get('dataset'))).name} (n={self.config.get('n')}, seed={self.config.get('seed')})",
            "",
        ]
        keys = [m.key for m in METRICS]
        header = ["method", *keys, "n", "failed", "s/edit"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" if h == "method" else "---:" for h in header) + "|")
        for r in self.rows:
            cells = [r.method] + [_fmt(r.metrics.get(k), digits) for k in keys]
            cells += [str(r.metrics.get("n", "")), str(r.failed), _fmt(r.timings.get("seconds_per_edit"), 1)]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def export(self, path: str | Path, fmt: str | None = None) -> Path:
        """csv / parquet: the per-fact table (with a ``protocol`` column); json: everything."""
        path, fmt = export_target(path, fmt)
        if fmt == "json":
            path.write_text(self.to_json(facts=True, indent=1))
            return path
        df = self.per_fact()
        df.insert(0, "protocol", self.protocol)
        df.insert(0, "run_id", self.run_id)
        if fmt == "csv":
            df.to_csv(path, index=False)
        else:
            df.to_parquet(path, index=False)
        return path


def _fmt(v, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


# ---- (de)serialising probe reports --------------------------------------------------------------------
# ---- measuring one fact -----------------------------------------------------------------------------
@dataclass
class _Baseline:
    """What the unedited model says about one fact: reused as every method's "unedited" column."""

    fact: Fact
    record: int
    probes: list[Probe]
    measures: list[Measure]
    queries: list[tuple[str, str, str]]  # (group, prompt, target)
    predictions: list[TokenPrediction]

    @property
    def negation_probes(self) -> list[int]:
        return [i for i, p in enumerate(self.probes) if p.kind in ("positive", "negation")]


def _queries(fact: Fact, portability) -> list[tuple[str, str, str]]:
    q = [("rewrite", fact.prompt, fact.target_new)]
    q += [("rephrase", p, fact.target_new) for p in fact.paraphrases]
    q += [("locality", n.prompt, n.answer) for n in fact.neighbors if n.answer]
    q += [("portability", n.prompt, n.answer) for n in portability if n.answer]
    return q


def _evidence(queries, preds: Sequence[TokenPrediction], reference: Sequence[TokenPrediction]) -> TokenEvidence:
    groups: dict[str, list[TokenPrediction]] = {"rewrite": [], "rephrase": [], "locality": [], "portability": []}
    refs: list[TokenPrediction] = []
    for (group, _, _), p, r in zip(queries, preds, reference):
        groups[group].append(p)
        if group == "locality":
            refs.append(r)
    return TokenEvidence(
        rewrite=groups["rewrite"][0] if groups["rewrite"] else None,
        rephrase=tuple(groups["rephrase"]),
        locality=tuple(groups["locality"]),
        locality_reference=tuple(refs),
        portability=tuple(groups["portability"]),
    )


def _predict(session: EditSession, queries, edited: bool) -> list[TokenPrediction]:
    h = session.handle
    pairs = [(p, t) for _, p, t in queries]
    if not edited:
        with h.lock:
            return predict_tokens(h.model, h.tokenizer, pairs)
    with session.edited() as m:
        return predict_tokens(m.model, m.tokenizer, pairs, prefix=m.prefix)


def _baseline(session: EditSession, dataset: Dataset, i: int, generation_tokens: int) -> _Baseline:
    fact = dataset.facts[i]
    probes = default_probes(fact, session.handle.tokenizer, generation_tokens)
    queries = _queries(fact, dataset.portability[i])
    return _Baseline(
        fact,
        dataset.records[i],
        probes,
        session.measure_unedited(fact, probes),
        queries,
        _predict(session, queries, edited=False),
    )


def _unedited_result(i: int, b: _Baseline) -> FactResult:
    report = ProbeReport.of(b.fact, b.probes, unedited=b.measures)
    negative = ProbeReport.of(
        b.fact, [b.probes[j] for j in b.negation_probes], unedited=[b.measures[j] for j in b.negation_probes]
    )
    tokens = _evidence(b.queries, b.predictions, b.predictions)
    return FactResult(
        index=i,
        record=b.record,
        report=report,
        tokens=tokens,
        negative=negative,
        scores=fact_scores(report, tokens, negative, column="unedited"),
        column="unedited",
    )


def _negated_fact(fact: Fact) -> Fact | None:
    prompt, rule = fact.negated()
    if prompt is None or rule.startswith("already-negated"):
        return None
    return Fact(fact.subject, prompt, fact.target_new, fact.target_true, case_id=fact.case_id)


# ---- running one method under the protocol: two plans of the engine -----------------------------------
@dataclass
class _Outcome:
    after: list[Measure] | None = None
    before: list[Measure] | None = None
    preds: list[TokenPrediction] | None = None
    negative: list[Measure] | None = None
    seconds: float | None = None
    error: str | None = None
    negative_error: str | None = None


@dataclass
class _FactProbes:
    """The bench's evaluator: every probe of each fact in scope (the batch just written, or every
    fact at the end of a retention run) and its token predictions; for the negated-edit plan, the
    original fact's positive and negated probes. ``index[i]`` maps the plan's fact to the bench's."""

    runner: _Runner
    scope: str  # "latest" or "edited"
    negated: bool
    index: Sequence[int]
    name: str = "facts"

    def __call__(self, at: experiments.At) -> dict:
        out, r = {}, self.runner
        for k in at.latest if self.scope == "latest" else at.edited:
            at.check()
            i = self.index[k]
            b = r.baselines[i]
            if self.negated:
                out[i] = at.session.measure_current(b.fact, [b.probes[j] for j in b.negation_probes])
            else:
                out[i] = (at.session.measure_current(b.fact, b.probes), _predict(at.session, b.queries, edited=True))
            r.report(
                f"{r.method}: measured {'the negated edit of ' if self.negated else ''}fact {i + 1}/{len(r.baselines)}"
                + (" after all edits" if self.scope == "edited" else ""),
                advance=1,
            )
        return out


class _Runner:
    def __init__(
        self,
        handle,
        config: BenchConfig,
        baselines: list[_Baseline],
        progress: Progress | None,
        cancel,
        done_offset: int,
        total: int,
        method: str,
    ):
        self.handle, self.config, self.baselines, self.method = handle, config, baselines, method
        self._progress, self.cancel = progress, cancel
        self.done, self.total = done_offset, total
        self.notes: set[str] = set()

    def report(self, stage: str, advance: int = 0) -> None:
        self.done += advance
        if self._progress:
            self._progress(min(self.done, self.total), self.total, stage)

    def batches(self) -> list[list[int]]:
        idx = list(range(len(self.baselines)))
        b = self.config.batch_size
        return [idx[i : i + b] for i in range(0, len(idx), b)]

    def plan(self, facts: Sequence[Fact], hp, batches: Sequence[Sequence[int]]) -> tuple[experiments.Plan, str]:
        """The protocol as a plan over ``facts`` (batches of their indices) and its evaluation scope."""
        cfg = self.config
        common = dict(
            hparams=hp,
            batch_size=cfg.batch_size,
            seed=0 if cfg.seed is None else cfg.seed,
            corpus=cfg.corpus,
            online=cfg.online,
        )
        if cfg.mode == "sequential" and cfg.evaluate == "at_end":
            return experiments.Plan(
                tuple(facts), self.method, protocol="sequential", checkpoints=(len(facts),), **common
            ), "edited"
        return experiments.Plan(
            tuple(facts), self.method, protocol=cfg.mode, batches=tuple(map(tuple, batches)), **common
        ), "latest"

    def execute(self, facts: Sequence[Fact], hp, batches, index: Sequence[int], negated: bool) -> experiments.Outcome:
        plan, scope = self.plan(facts, hp, batches)
        stage = f"{self.method}: negated edit: " if negated else f"{self.method}: "
        outcome = experiments.run(
            self.handle,
            plan,
            [_FactProbes(self, scope, negated, index)],
            progress=lambda p: self.report(stage + p.stage),
            cancel=self.cancel,
            what="this benchmark",
        )
        self.notes |= outcome.notes
        return outcome

    def run(self, hp) -> list[_Outcome]:
        out = [_Outcome() for _ in self.baselines]
        facts = [b.fact for b in self.baselines]
        pos = self.execute(facts, hp, self.batches(), range(len(facts)), negated=False)
        for m in pos.measured:
            for i, (after, preds) in m.values["facts"].items():
                out[i].after, out[i].preds = after, preds
                if self.config.mode == "independent":
                    out[i].before = self.baselines[i].measures
        for i, o in enumerate(out):
            o.seconds, o.error = pos.edit_seconds.get(i), pos.error_of(i)
        if self.config.negative_edits:
            pairs = [(i, _negated_fact(f)) for i, f in enumerate(facts)]
            for i, f in pairs:
                if f is None:
                    out[
                        i
                    ].negative_error = "the prompt is already negated or has no grammatical negation; no negated edit"
            index = [i for i, f in pairs if f is not None]
            where = {i: k for k, i in enumerate(index)}
            batches = [[where[i] for i in b if i in where] for b in self.batches()]
            if index:
                neg = self.execute([pairs[i][1] for i in index], hp, [b for b in batches if b], index, negated=True)
                for m in neg.measured:
                    for i, measures in m.values["facts"].items():
                        out[i].negative = measures
                for k, i in enumerate(index):
                    err = neg.error_of(k)
                    if err is not None:
                        out[i].negative_error = f"negated edit failed: {err}"
        return out


def _method_result(
    method: str, hp: dict, baselines: list[_Baseline], outcomes: list[_Outcome], model: str, notes: Sequence[str]
) -> MethodResult:
    facts = []
    for i, (b, o) in enumerate(zip(baselines, outcomes)):
        report = ProbeReport.of(
            b.fact,
            b.probes,
            b.measures,
            o.before,
            o.after,
            model=model,
            method=method,
            edit_seconds=o.seconds,
            notes=[x for x in (o.error,) if x],
        )
        negative = None
        if o.negative is not None:
            negative = ProbeReport.of(
                b.fact,
                [b.probes[j] for j in b.negation_probes],
                unedited=[b.measures[j] for j in b.negation_probes],
                after=o.negative,
                model=model,
                method=method,
            )
        tokens = _evidence(b.queries, o.preds, b.predictions)
        facts.append(
            FactResult(
                index=i,
                record=b.record,
                report=report,
                tokens=tokens,
                negative=negative,
                scores=fact_scores(report, tokens, negative, column="after"),
                edit_seconds=o.seconds,
                error=o.error,
                negative_error=o.negative_error,
            )
        )
    secs = [o.seconds for o in outcomes if o.seconds is not None]
    timings = {"seconds_per_edit": statistics.median(secs) if secs else None, "edit_total_s": sum(secs)}
    return MethodResult(method, tuple(facts), aggregate([f.scores for f in facts]), timings, hp, tuple(sorted(notes)))


def row_of(c) -> MethodResult:
    """A stored checkpoint of a benchmark run as its row."""
    m = c.metrics
    return MethodResult(
        method=m["method"],
        facts=tuple(FactResult.from_dict(f) for f in c.samples or ()),
        metrics={k: v for k, v in m.items() if k not in ("method", "hparams", "notes", "failed")},
        timings=dict(c.timings),
        hparams=dict(m.get("hparams") or {}),
        notes=tuple(m.get("notes") or ()),
    )


def checkpoint_of(row: MethodResult) -> tuple[dict, list, dict]:
    """A row as a stored checkpoint: (metrics, samples, timings) for ``RunStore.add_checkpoint``."""
    metrics = {
        "method": row.method,
        **row.metrics,
        "failed": row.failed,
        "hparams": row.hparams,
        "notes": list(row.notes),
    }
    return metrics, [f.to_dict() for f in row.facts], {k: v for k, v in row.timings.items() if v is not None}


# ---- entry points -------------------------------------------------------------------------------------
def stored_config(handle, config: BenchConfig, dataset: Dataset, hparams: Mapping[str, dict]) -> dict:
    """The configuration a run is stored (and found again) under."""
    from editlab.core.paths import key_digest

    return {
        "model": handle.name,
        "revision": getattr(handle, "revision", None),
        "fingerprint": handle.fingerprint,
        "method": ",".join(config.methods),
        "methods": list(config.methods),
        "hparams": dict(hparams),
        "dataset": dataset.path or dataset.name,
        "dataset_format": dataset.format,
        "n": len(dataset),
        "seed": config.seed,
        "dataset_digest": key_digest(facts=[f.to_dict() for f in dataset.facts]),
        "mode": config.mode,
        "batch_size": config.batch_size,
        "evaluate": config.evaluate if config.mode == "sequential" else "after_each",
        "negative_edits": config.negative_edits,
        "generation_tokens": config.generation_tokens,
        "corpus": config.corpus,
    }


def _plain(value):
    return json.loads(json.dumps(value, default=str))


def _reusable_rows(store, cfg: dict, wanted: Sequence[str]) -> dict[str, tuple[int, MethodResult]]:
    """Rows other stored runs computed under this very configuration apart from the method list:
    the same model, facts, protocol and settings, and (for a method) the same hyperparameters.
    {method: (run id, row)}, newest run first."""

    def base(c: dict) -> dict:
        return {k: v for k, v in c.items() if k not in ("method", "methods", "hparams")}

    target, hp = base(_plain(cfg)), _plain(cfg["hparams"])
    out: dict[str, tuple[int, MethodResult]] = {}
    for run in reversed(store.runs(KIND)):
        if base(run.config) != target:
            continue
        for c in store.checkpoints(run.id, samples=False):
            m = c.metrics.get("method")
            if m in out or m not in wanted or (m != UNEDITED and c.metrics.get("hparams") != hp.get(m)):
                continue
            (full,) = [x for x in store.checkpoints(run.id) if x.step == c.step]
            row = row_of(full)
            out[m] = (run.id, replace(row, notes=tuple(sorted({*row.notes, f"reused from run #{run.id}"}))))
    return out


def run_bench(
    handle,
    config: BenchConfig,
    *,
    dataset: Dataset | None = None,
    store=None,
    progress: Progress | None = None,
    cancel=None,
    resume: bool = True,
) -> BenchResult:
    """Run (or resume) a benchmark. ``store``: a :class:`~editlab.runs.store.RunStore`, a path, or None
    (keep nothing). ``progress(done, total, stage)`` counts measured facts; ``cancel`` (an
    object with ``is_set()``, e.g. a ``threading.Event``) stops the run within one model call with
    :class:`editlab.runs.experiments.Cancelled` (finished methods stay stored).

    With a store and ``resume``, an identical stored run continues where it stopped, and rows that
    another stored run computed under the same configuration (same model, facts, protocol and, per
    method, hyperparameters) are reused rather than recomputed: benchmarking ROME today and adding
    MEMIT tomorrow edits with MEMIT only. Reused rows are noted as such."""
    config.validate()
    if dataset is None:
        dataset = load_dataset(config.dataset, config.dataset_format, config.n, config.seed, config.skip_invalid)
    limits = current_limits()
    limits.check("max_facts", len(dataset), f"facts in this benchmark ({dataset.name})")
    past_deadline = deadline(limits, "this benchmark")

    class _Stop:  # the caller's cancel flag and the server's time limit, as one flag for the engine
        def is_set(self) -> bool:
            past_deadline()
            return bool(cancel is not None and cancel.is_set())

    stop = _Stop()
    probe_session = EditSession(handle, corpus=config.corpus, online=config.online)
    hparams = {m: probe_session.resolve_hparams(m, config.hparams.get(m) or None).to_dict() for m in config.methods}
    cfg = stored_config(handle, config, dataset, hparams)
    store = writer.open_store(store)
    names = [UNEDITED, *config.methods]
    run_id, done_rows = _stored_rows(store, cfg, names, resume)
    if run_id is not None and all(n in done_rows for n in names):
        store.set_status(run_id, "done")
        return BenchResult(cfg, tuple(done_rows[n] for n in names), run_id, status="done")
    measure = _Measure(handle, config, dataset, probe_session, hparams, names, stop, progress)

    def write(step: int, row: MethodResult) -> None:
        done_rows[row.method] = row
        if store is not None:
            store.add_checkpoint(run_id, step, *checkpoint_of(row))

    with writer.keeping_status(store, run_id) if store is not None else contextlib.nullcontext():
        measure.rows(done_rows, write)
    return BenchResult(cfg, tuple(done_rows[n] for n in names), run_id, status="done")


def _stored_rows(store, cfg: dict, names: Sequence[str], resume: bool) -> tuple[int | None, dict[str, MethodResult]]:
    """(run id, rows already measured) of this benchmark in ``store``: the identical stored run's
    rows when resuming, and rows other runs measured under the same configuration (written into
    this run as its own checkpoints, noted as reused). (None, {}) without a store."""
    if store is None:
        return None, {}
    run_id, resumed = writer.start_or_resume(store, KIND, cfg, resume)
    done_rows: dict[str, MethodResult] = {}
    if resumed:
        for c in store.checkpoints(run_id):
            row = row_of(c)
            done_rows[row.method] = row
    if resume:
        for step, name in enumerate(names):
            if name not in done_rows:
                found = _reusable_rows(store, cfg, [name]).get(name)
                if found is not None and found[0] != run_id:
                    done_rows[name] = found[1]
                    store.add_checkpoint(run_id, step, *checkpoint_of(found[1]), exists_ok=True)
    return run_id, done_rows


class _Measure:
    """The rows a benchmark still lacks: the unedited model's (from the per-fact baselines) and one
    per pending method, each handed to ``write(step, row)`` as soon as it is measured."""

    def __init__(
        self,
        handle,
        config: BenchConfig,
        dataset: Dataset,
        probe_session: EditSession,
        hparams: Mapping[str, dict],
        names: Sequence[str],
        stop,
        progress,
    ):
        self.handle, self.config, self.dataset, self.probe_session = handle, config, dataset, probe_session
        self.hparams, self.names, self.stop, self.progress = hparams, list(names), stop, progress
        self.report = progress or (lambda *a: None)

    def baselines(self, total: int) -> list:
        out = []
        n = len(self.dataset)
        for i in range(n):
            if self.stop.is_set():
                raise Cancelled("benchmark cancelled")
            self.report(i, total, f"unedited model: measuring fact {i + 1}/{n}")
            out.append(_baseline(self.probe_session, self.dataset, i, self.config.generation_tokens))
        return out

    def rows(self, done_rows: Mapping[str, MethodResult], write: Callable[[int, MethodResult], None]) -> None:
        n = len(self.dataset)
        pending = [m for m in self.config.methods if m not in done_rows]
        per_method = n * (2 if self.config.negative_edits else 1)
        total = n + per_method * len(pending)
        if pending or UNEDITED not in done_rows:
            baselines = self.baselines(total)
            if UNEDITED not in done_rows:
                facts = tuple(_unedited_result(i, b) for i, b in enumerate(baselines))
                write(0, MethodResult(UNEDITED, facts, aggregate([f.scores for f in facts])))
            for k, method in enumerate(pending):
                runner = _Runner(
                    self.handle, self.config, baselines, self.progress, self.stop, n + per_method * k, total, method
                )
                outcomes = runner.run(self.hparams[method])
                write(
                    self.names.index(method),
                    _method_result(method, self.hparams[method], baselines, outcomes, self.handle.name, runner.notes),
                )
        self.report(total, total, "done")


def load_result(store, run_id: int) -> BenchResult:
    """A stored benchmark run (finished or not) as a :class:`BenchResult`."""
    store = writer.open_store(store)
    run = store.run(run_id)
    if run.kind != KIND:
        raise ValueError(f"run {run_id} is a {run.kind!r} run, not a benchmark")
    rows = tuple(row_of(c) for c in store.checkpoints(run_id))
    return BenchResult(run.config, rows, run.id, status=run.status)


def past_runs(store) -> list:
    """Stored benchmark runs, newest first."""
    store = writer.open_store(store)
    return list(reversed(store.runs(KIND)))


def compare(results: Sequence[BenchResult]):
    """Several runs' tables stacked, labelled by run and protocol, for side-by-side comparison."""
    import pandas as pd

    frames = []
    for r in results:
        df = r.table().reset_index()
        df.insert(0, "protocol", r.protocol)
        df.insert(0, "run", f"#{r.run_id}" if r.run_id is not None else "-")
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
