"""The two papers' findings, reproduced on the model at hand and set beside the published numbers.

Four protocols, each a thin layer over what editlab already measures (no metric is defined here):

- ``negation`` — Liu et al. 2025, *Is Model Editing Built on Sand?*: the four settings PP, PN, NN,
  NP and rectified efficacy PP − PN on CounterFact, through :func:`editlab.runs.bench.run_bench` with
  the negated edits on (definitions: :mod:`editlab.measure.metrics`, docs/metrics.md §3);
- ``factcheck`` — the same paper's True/False fact-check accuracy beside efficacy, on CounterFact
  and zsRE (both through ``run_bench``);
- ``ablation`` — supportive-token ablation: how often the model's preference (new vs true object)
  is the same whether the prompt says "is", "is not" or neither (:mod:`editlab.measure.ablation`'s probes,
  measured by ``run_bench``), before and after the edit;
- ``muting`` — the muting effect: sequential edits with checkpoints on a log scale, and at each one
  signals a 135M model is well above floor on: perplexity and next-token accuracy on held-out text,
  the empty / repetitive output rate and n-gram entropy (:mod:`editlab.measure.muting`), retention of simple
  facts the unedited model gets right (``editlab/data/simple_facts.json``), edit efficacy so far
  (:func:`editlab.runs.experiments.measure_quality`) and, optionally, lm-eval ability tasks with a chance line.

Every measured number carries a seeded 95 % percentile-bootstrap interval over facts (or paragraphs,
outputs, items); every result carries its cost and the published reference values with their
source. :mod:`editlab.report` writes the HTML + JSON report.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from editlab.core.paths import PACKAGE_DATA

PROTOCOLS = ("negation", "factcheck", "ablation", "muting")
DEFAULT_METHOD = {"negation": "memit", "factcheck": "memit", "ablation": "memit", "muting": "memit"}
SIMPLE_FACTS = PACKAGE_DATA / "simple_facts.json"
BOOTSTRAP_SAMPLES = 2000
LEVEL = 0.95

Progress = Callable[[int, int, str], None]

# ---- published values ---------------------------------------------------------------------------------
SECONDARY = (
    "from the project's summary of the paper (secondary), not checked against the PDF: this machine cannot "
    "reach the web"
)
PAPER_SAND = "Liu et al. 2025, Is Model Editing Built on Sand? (arXiv:2510.00625)"
UNSTATED = "(method not stated in the summary)"
PAPER_MUTING = (
    "the muting-effect study of sequential editing (as summarised for editlab; not checked against the paper)"
)


@dataclass(frozen=True)
class Reference:
    """One published number: what it measures (``metric``, a key the protocol also reports), on which
    model / method / dataset, where it is printed, and whether anyone here checked it there."""

    protocol: str
    metric: str
    value: float
    model: str
    method: str
    dataset: str
    paper: str
    where: str
    edits: int | None = None  # muting: after how many sequential edits
    checked: bool = False
    provenance: str = SECONDARY
    note: str = ""


PUBLISHED: tuple[Reference, ...] = (
    Reference("negation", "PP", 0.982, "Llama-3-8B-Instruct", "MEMIT", "CounterFact", PAPER_SAND, "Table 3"),
    Reference("negation", "PN", 0.694, "Llama-3-8B-Instruct", "MEMIT", "CounterFact", PAPER_SAND, "Table 3"),
    Reference(
        "negation",
        "RE",
        0.288,
        "Llama-3-8B-Instruct",
        "MEMIT",
        "CounterFact",
        PAPER_SAND,
        "Table 3",
        note="rectified efficacy PP − PN",
    ),
    Reference("negation", "PP", 0.934, "Qwen2.5-7B-Instruct", "MEMIT", "CounterFact", PAPER_SAND, "Table 3"),
    Reference("negation", "PN", 0.722, "Qwen2.5-7B-Instruct", "MEMIT", "CounterFact", PAPER_SAND, "Table 3"),
    Reference("negation", "NN", 0.849, "Qwen2.5-7B-Instruct", "MEMIT", "CounterFact", PAPER_SAND, "Table 3"),
    Reference("negation", "NP", 0.744, "Qwen2.5-7B-Instruct", "MEMIT", "CounterFact", PAPER_SAND, "Table 3"),
    Reference(
        "factcheck",
        "FC_abs",
        0.488,
        "Qwen2.5-7B-Instruct",
        UNSTATED,
        "zsRE",
        PAPER_SAND,
        "fact-check evaluation",
        note="the summary gives no method or table for this pair; read it as the paper's headline gap",
    ),
    Reference(
        "factcheck",
        "efficacy",
        0.965,
        "Qwen2.5-7B-Instruct",
        UNSTATED,
        "zsRE",
        PAPER_SAND,
        "fact-check evaluation",
        note="zsRE efficacy is conventionally token accuracy (MEND/MEMIT): compare with editlab's rewrite_acc",
    ),
    Reference("muting", "mmlu", 0.459, "Llama-2-7B", "ROME", "CounterFact", PAPER_MUTING, "MMLU vs edits", edits=0),
    Reference("muting", "mmlu", 0.270, "Llama-2-7B", "ROME", "CounterFact", PAPER_MUTING, "MMLU vs edits", edits=50),
    Reference(
        "muting",
        "mmlu",
        0.0,
        "Llama-2-7B",
        "ROME",
        "CounterFact",
        PAPER_MUTING,
        "MMLU vs edits",
        edits=100,
        note="≈ 0: the model emits empty output (muting)",
    ),
    Reference(
        "muting",
        "muting_within",
        10.0,
        "Llama-2-7B",
        "KN",
        "CounterFact",
        PAPER_MUTING,
        "text",
        note="KN mutes within 10 sequential edits",
    ),
)


def references(protocol: str) -> tuple[Reference, ...]:
    return tuple(r for r in PUBLISHED if r.protocol == protocol)


# ---- bootstrap -------------------------------------------------------------------------------------------
def bootstrap_ci(
    data,
    statistic: Callable[[np.ndarray], float] | None = None,
    *,
    level: float = LEVEL,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float | None, float | None, float | None]:
    """(estimate, low, high): ``statistic`` (default: the mean) of ``data`` and its percentile
    bootstrap interval — rows of ``data`` (a sequence of numbers, or of equal-length tuples for a
    ratio such as perplexity) resampled with replacement ``samples`` times from a seeded generator.
    Missing values (None) are dropped; no data gives (None, None, None); one row a zero-width interval."""
    rows = [r for r in data if r is not None]
    if not rows:
        return None, None, None
    a = np.asarray(rows, dtype=float)
    stat = statistic or (lambda x: float(np.mean(x)))
    est = float(stat(a))
    if len(a) == 1:
        return est, est, est
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(samples, len(a)))
    boots = np.array([stat(a[i]) for i in idx], dtype=float)
    boots = boots[np.isfinite(boots)]
    if not len(boots):
        return est, None, None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha])
    return est, float(lo), float(hi)


def _ratio_exp(a: np.ndarray) -> float:  # perplexity: exp(Σ nll / Σ tokens)
    return float(math.exp(a[:, 0].sum() / a[:, 1].sum()))


def _ratio(a: np.ndarray) -> float:
    return float(a[:, 0].sum() / a[:, 1].sum())


# ---- results -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """One measured number with its interval. ``group``: which model state or dataset ("unedited",
    "edited", "counterfact", ...); ``edits``: the checkpoint, for muting curves."""

    group: str
    key: str
    label: str
    value: float | None
    low: float | None
    high: float | None
    n: int
    edits: int | None = None
    chance: float | None = None
    higher_is_better: bool | None = None

    @property
    def at_chance(self) -> bool | None:
        """True when the interval reaches the chance level (or below): the task cannot tell this
        model from guessing."""
        if self.chance is None or self.value is None:
            return None
        top = self.high if self.high is not None else self.value
        return top <= self.chance + 1e-12 or (self.low is not None and self.low <= self.chance <= top)


def estimate(group: str, key: str, label: str, data, statistic=None, seed: int = 0, **kw) -> Estimate:
    rows = [r for r in data if r is not None]
    v, lo, hi = bootstrap_ci(rows, statistic, seed=seed)
    return Estimate(group, key, label, v, lo, hi, len(rows), **kw)


@dataclass(frozen=True)
class ReproResult:
    protocol: str
    model: str
    method: str
    n: int
    config: dict
    estimates: tuple[Estimate, ...]
    references: tuple[Reference, ...]
    cost: dict
    notes: tuple[str, ...] = ()
    samples: dict = field(default_factory=dict)

    def get(self, key: str, group: str | None = None, edits: int | None = None) -> Estimate:
        for e in self.estimates:
            if e.key == key and (group is None or e.group == group) and (edits is None or e.edits == edits):
                return e
        raise KeyError(
            f"no estimate {key!r}"
            + (f" for {group!r}" if group else "")
            + (f" at {edits} edits" if edits is not None else "")
        )

    def at_chance_sentences(self) -> list[str]:
        out = []
        cal = self.config.get("factcheck_calibration")
        if cal and not cal.get("readable"):  # no fact-check finding where the probe cannot be read
            out.append(cal.get("sentence", "the fact-check probe is at chance on this model") + ".")
        for e in self.estimates:  # the unedited model's level decides whether a task can show anything
            if e.at_chance and (e.edits == 0 or (e.edits is None and e.group.endswith("unedited"))):
                out.append(
                    f"{e.label} ({e.group}) is at chance for this model ({e.value:.3f}, 95 % interval "
                    f"{_fmt(e.low)}–{_fmt(e.high)}, chance {e.chance:.2f}, n={e.n}): a change on it after "
                    "editing cannot be read as ability lost or gained."
                )
        return out

    def to_dict(self) -> dict:
        return {
            "protocol": self.protocol,
            "model": self.model,
            "method": self.method,
            "n": self.n,
            "config": self.config,
            "interval": f"{int(LEVEL * 100)} % percentile bootstrap, "
            f"{BOOTSTRAP_SAMPLES} resamples, seed {self.config.get('seed', 0)}",
            "estimates": [asdict(e) | {"at_chance": e.at_chance} for e in self.estimates],
            "published": [asdict(r) for r in self.references],
            "cost": self.cost,
            "notes": list(self.notes),
            "at_chance": self.at_chance_sentences(),
            "samples": self.samples,
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), default=str, **kw)

    @classmethod
    def from_dict(cls, d: Mapping) -> ReproResult:
        """The inverse of :meth:`to_dict` (a report's JSON read back)."""
        fields_ = set(Estimate.__dataclass_fields__)
        return cls(
            d["protocol"],
            d["model"],
            d["method"],
            d["n"],
            dict(d.get("config") or {}),
            tuple(Estimate(**{k: v for k, v in e.items() if k in fields_}) for e in d["estimates"]),
            tuple(Reference(**r) for r in d.get("published") or ()),
            dict(d.get("cost") or {}),
            tuple(d.get("notes") or ()),
            dict(d.get("samples") or {}),
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "the report") -> ReproResult:
        """A report's JSON (what ``editlab reproduce`` writes, or the app's download) read back, with
        a message naming what is wrong when it is not one (``ValueError``)."""
        try:
            doc = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{source} is not JSON ({e}): open the .json file `editlab reproduce` wrote") from None
        if not isinstance(doc, dict):
            raise ValueError(
                f"{source} is JSON but not a report: a report is an object with "
                "protocol, model, method, n and estimates"
            )
        missing = [k for k in ("protocol", "model", "method", "n", "estimates") if k not in doc]
        if missing:
            raise ValueError(f"{source} is not an `editlab reproduce` report: it has no {', '.join(missing)}")
        if doc["protocol"] not in PROTOCOLS:
            raise ValueError(f"{source}: unknown protocol {doc['protocol']!r}; one of {', '.join(PROTOCOLS)}")
        try:
            return cls.from_dict(doc)
        except (TypeError, KeyError, AttributeError) as e:
            raise ValueError(f"{source}: a field of the report is not of the form editlab writes ({e})") from None

    def to_markdown(self) -> str:
        """The README's form: a heading line (what ran, the interval, the cost), then one row per
        measured number with its interval, n and the published numbers that belong beside it
        (muting: one row per signal, one column per checkpoint), then any at-chance sentence."""
        cost = self.cost
        head = (
            f"**{self.protocol}** — {self.method} on {self.model}, n = {self.n} "
            f"({'sequential edits' if self.protocol == 'muting' else 'facts'}); {int(LEVEL * 100)} % percentile "
            f"bootstrap, {BOOTSTRAP_SAMPLES} resamples, seed {self.config.get('seed', 0)}; "
            f"cost {cost.get('total_s')} s in all"
            + (f", {cost['seconds_per_edit']:.1f} s per edit" if cost.get("seconds_per_edit") else "")
            + (f" on {cost['machine']}" if cost.get("machine") else "")
        )
        lines = [head, ""]
        cal = self.config.get("factcheck_calibration")
        if cal and cal.get("readable"):
            lines += [f"Fact-check calibration: {cal['sentence']}.", ""]
        if self.protocol == "muting":
            steps = sorted({e.edits for e in self.estimates if e.edits is not None})
            lines += ["| signal | " + " | ".join(f"{s} edits" for s in steps) + " |", "|---|" + "---:|" * len(steps)]
            for key in dict.fromkeys(e.key for e in self.estimates):
                by = {e.edits: e for e in self.estimates if e.key == key}
                label = next(e.label for e in self.estimates if e.key == key)
                cells = [
                    f"{by[s].value:.3g} [{by[s].low:.3g}, {by[s].high:.3g}]"
                    if s in by and by[s].value is not None
                    else "–"
                    for s in steps
                ]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        else:
            lines += [
                "| group | metric | measured | 95 % interval | n | published (model, method, dataset) |",
                "|---|---|---:|---|---:|---|",
            ]
            for e in self.estimates:
                pub = "; ".join(
                    f"{r.value:g} ({r.model}, {r.method}, {r.dataset})" for r in self.references if applies(r, e)
                )
                lines.append(
                    f"| {e.group} | {e.label} | {_fmt(e.value, 2)} | {_fmt(e.low, 2)}–{_fmt(e.high, 2)} "
                    f"| {e.n} | {pub} |"
                )
        for sentence in self.at_chance_sentences():
            lines += ["", f"_{sentence}_"]
        return "\n".join(lines)

    def table(self):
        """Measured (with intervals) beside published, one row per (group, metric[, edits])."""
        import pandas as pd

        rows = []
        for e in self.estimates:
            pub = [r for r in self.references if applies(r, e)]
            rows.append(
                {
                    "group": e.group,
                    "edits": e.edits,
                    "metric": e.label,
                    "measured": e.value,
                    "95% low": e.low,
                    "95% high": e.high,
                    "n": e.n,
                    "published": "; ".join(f"{r.value:g} ({r.model}, {r.method}, {r.dataset})" for r in pub) or None,
                }
            )
        return pd.DataFrame.from_records(rows)


def applies(ref: Reference, e: Estimate) -> bool:
    """Whether a published number belongs beside a measured one: same metric and checkpoint, an
    edited model (the papers publish no unedited row, except at 0 edits of a muting curve), and, for
    groups named "<dataset> · <state>", the same dataset."""
    if ref.metric != e.key or (ref.edits is not None and ref.edits != e.edits):
        return False
    if ref.edits is None and e.group.rsplit(" · ", 1)[-1] == "unedited":
        return False
    if " · " in e.group:
        return e.group.split(" · ", 1)[0].replace(" ", "").lower() == ref.dataset.replace(" ", "").lower()
    return True


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


# ---- bench-based protocols ------------------------------------------------------------------------------
NEGATION_KEYS = (
    ("PP", "PP: says o* after the positive prompt"),
    ("PN", "PN: still says o* after the negated prompt"),
    ("PN_contraction", "PN on the contraction (isn't, doesn't)"),
    ("PN_not_true", "PN on \"It is not true that ...\""),
    ("PN_never", "PN on \"never\""),
    ("PN_gen", "PN (generation): the first clause names o*"),
    ("PN_gen_answer", "PN (generation): names the true or another answer"),
    ("PN_gen_neither", "PN (generation): names no answer"),
    ("NN", "NN: negated edit, negated prompt"),
    ("NP", "NP: negated edit, positive prompt"),
    ("RE", "Rectified efficacy PP − PN"),
    ("ES", "Efficacy (ES)"),
    ("FC", FC_LABEL := "Fact-check agrees with the edit (new statement rated truer, pairwise)"),
)
LOWER_BETTER = {"PN", "NP", "PN_contraction", "PN_not_true", "PN_never", "PN_gen", "PN_gen_neither"}


def _calibrated(handle, config: dict) -> dict:
    """The config with the fact-check calibration of the model (:func:`editlab.measure.calibration.calibrate`)."""
    from editlab.measure.calibration import calibrate

    return {**config, "factcheck_calibration": calibrate(handle).to_dict()}


def _bench(
    handle,
    dataset,
    n: int,
    method: str,
    seed: int,
    negative: bool,
    corpus,
    online,
    hparams,
    progress,
    cancel,
    fmt: str | None = None,
):
    from editlab.facts.datasets import Dataset
    from editlab.runs.bench import BenchConfig, run_bench

    ds = dataset.subset(n, seed) if isinstance(dataset, Dataset) else None
    cfg = BenchConfig(
        dataset=dataset.name if ds is not None else str(dataset),
        methods=(method,),
        n=n,
        seed=seed,
        dataset_format=fmt,
        skip_invalid=True,
        negative_edits=negative,
        generation_tokens=8,
        hparams={method: dict(hparams)} if hparams else {},
        corpus=corpus,
        online=online,
    )
    t0 = time.perf_counter()
    res = run_bench(handle, cfg, dataset=ds, progress=progress, cancel=cancel)
    return res, time.perf_counter() - t0


def _per_fact(res, name: str, key: str) -> list:
    row = res.row(name)
    if key == "RE":  # paired per fact, so the interval is that of the difference
        return [
            f.scores["PP"] - f.scores["PN"]
            for f in row.facts
            if f.scores.get("PP") is not None and f.scores.get("PN") is not None
        ]
    if key == "FC_known":  # the unedited model rates the true statement truer than the counterfactual
        return [None if f.scores.get("FC") is None else 1.0 - f.scores["FC"] for f in row.facts]
    return [f.scores.get(key) for f in row.facts]


def machine(handle) -> str:
    """Where a run's seconds were spent: device (the GPU's name on CUDA, the thread count on CPU),
    dtype and torch version; every report's cost names it, so a GPU run read back is not taken for a
    CPU one."""
    import torch

    dev = handle.device
    where = (
        f"cuda ({torch.cuda.get_device_name(dev)})"
        if dev.type == "cuda"
        else f"{dev.type} ({torch.get_num_threads()} threads)"
    )
    dtype = str(next(handle.model.parameters()).dtype).replace("torch.", "")
    return f"{where}, {dtype}, torch {torch.__version__}"


def _bench_cost(res, method: str, total: float, handle) -> dict:
    t = res.row(method).timings
    return {
        "total_s": round(total, 2),
        "seconds_per_edit": t.get("seconds_per_edit"),
        "edit_total_s": t.get("edit_total_s"),
        "machine": machine(handle),
    }


def _dataset_path(dataset, name: str):
    if dataset is None:
        raise ValueError(f"the {name} protocol needs a dataset file (CounterFact / zsRE JSON); give its path")
    return dataset


def negation(
    handle,
    n: int = 10,
    method: str = "memit",
    *,
    dataset=None,
    seed: int = 0,
    corpus: str | None = None,
    online: bool = True,
    hparams: Mapping | None = None,
    progress: Progress | None = None,
    cancel=None,
) -> ReproResult:
    """PP, PN, NN, NP, rectified efficacy, efficacy and fact-check accuracy on ``n`` CounterFact facts
    (independent edits, each with its negated twin), unedited and edited, with bootstrap intervals."""
    from editlab.runs.bench import UNEDITED

    res, total = _bench(
        handle, _dataset_path(dataset, "negation"), n, method, seed, True, corpus, online, hparams, progress, cancel
    )
    est = []
    for name, group in ((UNEDITED, "unedited"), (method, "edited")):
        for key, label in NEGATION_KEYS:
            if name == UNEDITED and key in ("NN", "NP"):
                continue  # no negated edit on the unedited model: NP = PP and NN = PN there
            est.append(
                estimate(
                    group, key, label, _per_fact(res, name, key), seed=seed, higher_is_better=key not in LOWER_BETTER
                )
            )
    notes = [f"protocol: {res.protocol}", *res.row(method).notes]
    failed = res.row(method).failed
    if failed:
        notes.append(f"{failed} of {n} edits failed (scored as the model left them)")
    config = _calibrated(handle, {**_plain_config(res.config), "seed": seed})
    return ReproResult(
        "negation",
        handle.name,
        method,
        n,
        config,
        tuple(est),
        references("negation"),
        _bench_cost(res, method, total, handle),
        tuple(notes),
    )


def factcheck(
    handle,
    n: int = 10,
    method: str = "memit",
    *,
    dataset=None,
    zsre=None,
    seed: int = 0,
    corpus: str | None = None,
    online: bool = True,
    hparams: Mapping | None = None,
    progress: Progress | None = None,
    cancel=None,
) -> ReproResult:
    """Fact-check accuracy (True/False) beside efficacy on ``n`` facts of CounterFact and of zsRE
    (either may be None to skip it). zsRE's efficacy is reported as token accuracy (rewrite_acc)
    too, the convention its published numbers use."""
    from editlab.runs.bench import UNEDITED

    sets = [(g, p, f) for g, p, f in (("counterfact", dataset, None), ("zsre", zsre, "zsre")) if p is not None]
    if not sets:
        raise ValueError("the factcheck protocol needs a CounterFact or a zsRE file")
    est, notes, cost, cfgs = [], [], {"total_s": 0.0}, {}
    for g, path, fmt in sets:
        res, total = _bench(handle, path, n, method, seed, False, corpus, online, hparams, progress, cancel, fmt)
        cfgs[g] = _plain_config(res.config)
        for name, state in ((UNEDITED, "unedited"), (method, "edited")):
            est += _factcheck_estimates(res, name, f"{g} · {state}", seed)
        c = _bench_cost(res, method, total, handle)
        cost["total_s"] += c["total_s"]
        cost[f"{g}.seconds_per_edit"] = c["seconds_per_edit"]
        notes.append(f"{g}: {res.protocol}")
    cost["total_s"] = round(cost["total_s"], 2)
    cost["machine"] = machine(handle)
    return ReproResult(
        "factcheck",
        handle.name,
        method,
        n,
        _calibrated(handle, {"datasets": cfgs, "seed": seed}),
        tuple(est),
        references("factcheck"),
        cost,
        tuple(notes),
    )


def _factcheck_estimates(res, name: str, group: str, seed: int) -> list[Estimate]:
    """One dataset's estimates in one model state: efficacy in both conventions, whether the probe reads
    the facts (unedited model only), and fact-check accuracy (pairwise, absolute, the new statement)."""
    from editlab.runs.bench import UNEDITED

    est = []
    est.append(estimate(group, "ES", "Efficacy (ES: P(new) > P(true))", _per_fact(res, name, "ES"), seed=seed))
    est.append(
        estimate(
            group,
            "efficacy",
            "Efficacy (token accuracy, rewrite_acc)",
            _per_fact(res, name, "rewrite_acc"),
            seed=seed,
        )
    )
    if name == UNEDITED:  # can the probe read these facts at all? (chance: it cannot tell them apart)
        est.append(
            estimate(
                group,
                "FC_known",
                "Fact-check reads the fact (true statement rated truer)",
                _per_fact(res, name, "FC_known"),
                seed=seed,
                chance=0.5,
            )
        )
    est.append(estimate(group, "FC", FC_LABEL, _per_fact(res, name, "FC"), seed=seed))
    est.append(
        estimate(
            group,
            "FC_abs",
            "Fact-check accuracy, absolute verdicts (the paper's definition)",
            _per_fact(res, name, "FC_abs"),
            seed=seed,
        )
    )
    est.append(
        estimate(
            group,
            "FC_new",
            "Fact-check: calls the new statement True (absolute verdict)",
            _per_fact(res, name, "FC_new"),
            seed=seed,
        )
    )
    return est


def ablation(
    handle,
    n: int = 10,
    method: str = "memit",
    *,
    dataset=None,
    seed: int = 0,
    corpus: str | None = None,
    online: bool = True,
    hparams: Mapping | None = None,
    progress: Progress | None = None,
    cancel=None,
) -> ReproResult:
    """Supportive-token ablation on ``n`` CounterFact facts whose prompt has a predicate to ablate
    (an auxiliary verb after the subject; others are passed over, as there is nothing to ablate):
    how often the model's preference is the same whether the prompt says "is", "is not" or neither
    (``ignores_predicate``), and how often it prefers the new object under each variant."""
    from editlab.facts.datasets import from_facts
    from editlab.runs.bench import UNEDITED

    pool, chosen = _predicate_facts(dataset, n, seed)
    ds = from_facts(chosen, name=f"{pool.name} (prompts with a predicate)")
    res, total = _bench(handle, ds, len(chosen), method, seed, False, corpus, online, hparams, progress, cancel)
    est = []
    for name, group, column in ((UNEDITED, "unedited", "unedited"), (method, "edited", "after")):
        est += _ablation_estimates(res, name, group, column, seed)
    notes = [
        f"protocol: {res.protocol}",
        f"{len(chosen)} facts with a predicate, taken in file order from "
        f"{len(pool)} (prompts without an auxiliary verb after the subject have nothing to ablate)",
    ]
    return ReproResult(
        "ablation",
        handle.name,
        method,
        len(chosen),
        {**_plain_config(res.config), "seed": seed},
        tuple(est),
        references("ablation"),
        _bench_cost(res, method, total, handle),
        tuple(notes),
    )


def _predicate_facts(dataset, n: int, seed: int) -> tuple:
    """The dataset and its first ``n`` facts whose prompt has a predicate to ablate (an auxiliary verb
    after the subject)."""
    from editlab.facts.datasets import Dataset, load_dataset
    from editlab.measure.ablation import predicate_variants

    pool = _dataset_path(dataset, "ablation")
    pool = (
        pool.subset(None, seed)
        if isinstance(pool, Dataset)
        else load_dataset(pool, n=None, seed=seed, skip_invalid=True)
    )
    chosen = [f for f in pool.facts if len(predicate_variants(f.prompt, f.subject)) >= 2][:n]
    if not chosen:
        raise ValueError("no fact in the dataset has a predicate (an auxiliary verb after the subject) to ablate")
    return pool, chosen


def _ablation_estimates(res, name: str, group: str, column: str, seed: int) -> list[Estimate]:
    """One model state's estimates: how often the preference ignores the predicate, and how often o* is
    preferred under each predicate variant."""
    from editlab.measure.ablation import ablation_summary, prefers_new

    est = []
    ignores, by_rule = [], {}
    for f in res.row(name).facts:
        rows = [(r.probe.rule, getattr(r, column)) for r in f.report.rows_of("ablation")]
        s = ablation_summary(rows)
        ignores.append(None if s["ignores_predicate"] is None else float(s["ignores_predicate"]))
        for rule, m in rows:
            p = prefers_new(m)
            by_rule.setdefault(rule, []).append(None if p is None else float(p))
    est.append(
        estimate(
            group,
            "ignores_predicate",
            "Same preference whatever the predicate says",
            ignores,
            seed=seed,
            higher_is_better=False,
        )
    )
    for rule, vals in by_rule.items():
        est.append(estimate(group, f"prefers_new.{rule}", f"Prefers o* ({rule} prompt)", vals, seed=seed))
    return est


def _plain_config(cfg: Mapping) -> dict:
    return json.loads(
        json.dumps({k: v for k, v in cfg.items() if k != "hparams"} | {"hparams": cfg.get("hparams")}, default=str)
    )


# ---- muting -----------------------------------------------------------------------------------------------
def log_checkpoints(n: int) -> tuple[int, ...]:
    """0 and 1, 2, 5, 10, 20, 50, ... below ``n``, then ``n``."""
    out, k = [0], 0
    while True:
        for m in (1, 2, 5):
            c = m * 10**k
            if c >= n:
                return tuple(out + [n])
            out.append(c)
        k += 1


def load_simple_facts(path: str | Path | None = None) -> tuple[list[dict], dict]:
    """The retention facts (prompt, answer) and their provenance; ([], {}) when the file is absent."""
    p = Path(path) if path else SIMPLE_FACTS
    if not p.exists():
        return [], {}
    d = json.loads(p.read_text())
    return list(d["facts"]), dict(d.get("provenance") or {})


def select_simple_facts(
    handle, candidates: Sequence[tuple[str, str]], limit: int = 100, batch_size: int = 16
) -> tuple[list[dict], list[dict]]:
    """Probe the *unedited* model on (prompt, answer) candidates; keep those whose greedy
    continuation starts with the answer (word-bounded), up to ``limit``. Returns (kept, rejected)."""
    from editlab.measure.probes import starts_with_target
    from editlab.model.tokens import greedy, target_ids

    tok = handle.tokenizer
    kept, rejected = [], []
    with handle.lock:
        texts = greedy(
            handle.model,
            tok,
            [list(tok(p).input_ids) for p, _ in candidates],
            max(len(target_ids(tok, a)) for _, a in candidates) + 2,
            batch_size,
        )
    for (p, a), t in zip(candidates, texts):
        (kept if starts_with_target(t, a) and len(kept) < limit else rejected).append(
            {"prompt": p, "answer": a, "greedy": t}
        )
    return kept, rejected


def heldout_paragraphs(path: str | Path | None, count: int = 32, seed: int = 0, online: bool = True) -> list[str]:
    """``count`` seeded paragraphs of a held-out text file (WikiText-2 validation is the intended
    one), else of WikiText-2 test downloaded when online."""
    from editlab.measure.ability import corpus_paragraphs

    if path:
        paras = corpus_paragraphs(Path(path).read_text(encoding="utf-8"))
    elif online:
        from editlab.model.corpora import wikitext

        paras = corpus_paragraphs("\n".join(wikitext("wikitext-2-test")))
    else:
        raise ValueError(
            "the muting protocol needs held-out text: give a file (e.g. WikiText-2 validation) or allow the download"
        )
    if not paras:
        raise ValueError(f"{path}: no paragraph of at least 200 characters")
    rng = np.random.default_rng(seed)
    idx = sorted(rng.choice(len(paras), size=min(count, len(paras)), replace=False).tolist())
    return [paras[i] for i in idx]


def _muting_facts(dataset, n: int) -> tuple:
    """The dataset and its first ``n`` facts, in the sweep's order."""
    from editlab.facts.datasets import Dataset
    from editlab.runs.sweep import load_facts

    dataset = _dataset_path(dataset, "muting")
    if isinstance(dataset, Dataset):  # the sweep's order: the first n, as given
        if n > len(dataset):
            raise ValueError(f"{dataset.name} holds {len(dataset)} facts; {n} edits need as many")
        facts = list(dataset.facts[:n])
    else:
        facts = load_facts(str(dataset), n)
    return dataset, facts


def _muting_checkpoints(checkpoints: Sequence[int] | None, n: int) -> tuple[int, ...]:
    """The checkpoints: those given or a log scale, from 0 (the unedited model), none beyond ``n``."""
    steps = tuple(sorted(set(checkpoints))) if checkpoints else log_checkpoints(n)
    if steps[0] != 0:
        steps = (0, *steps)
    if steps[-1] > n:
        raise ValueError(f"checkpoint {steps[-1]} is beyond n={n}")
    return steps


def _muting_evaluators(
    paragraphs: list[str],
    heldout_tokens: int,
    retention: list,
    ability_items: int,
    ability_data: str | None,
    seed: int,
    online: bool,
) -> list:
    """What each checkpoint measures: held-out text, muting probes, retention, efficacy and maybe ability."""
    from editlab.measure.ability import AbilityConfig, AbilitySuite
    from editlab.measure.muting import MutingProbe
    from editlab.runs.experiments import Ability, HeldOut, Muting, Quality, Retention

    evaluators = [
        HeldOut(tuple(paragraphs), heldout_tokens),
        Muting(MutingProbe()),
        Retention(tuple(retention)),
        Quality("edited", reference=False, kinds=("positive",)),
    ]  # efficacy only, after edits
    if ability_items:
        sizes = {t: 0 for t in ("gsm8k", "csqa", "triviaqa", "truthfulqa", "bbh", "perplexity")} | {
            "mmlu": ability_items
        }
        evaluators.append(
            Ability(AbilitySuite(AbilityConfig(sizes=sizes, seed=seed, online=online, data_dir=ability_data)))
        )
    return evaluators


def _muting_estimates(handle, m, seed: int, retention: list, special: list[str]) -> list[Estimate]:
    """One checkpoint's estimates with intervals: held-out text, generations, retention, efficacy, ability."""
    from editlab.measure.ability import CHANCE

    step, held, mute, kept = m.step, m.values["heldout"], m.values["muting"], m.values["retention"]
    kw = dict(seed=seed, edits=step)
    est = _heldout_estimates(held, kw) + _generation_estimates(handle, mute, special, kw)
    if retention:
        est.append(estimate("simple facts", "retention", "Simple facts still right", kept, **kw))
    if step:
        est.append(
            estimate(
                "edited facts",
                "ES",
                "Efficacy over the edits so far",
                [q.get("ES") for q in m.values["quality"]["scores"]],
                **kw,
            )
        )
    ab = m.values.get("ability")
    if ab is not None:
        for task, score in ab.tasks.items():
            est.append(
                estimate(
                    "ability",
                    task,
                    f"{task.upper()} accuracy",
                    [it.get("score") for it in score.items],
                    chance=CHANCE.get(task),
                    **kw,
                )
            )
    return est


def _heldout_estimates(held, kw: dict) -> list[Estimate]:
    """The held-out text's perplexity and next-token accuracy at one checkpoint."""
    return [
        estimate(
            "held-out text",
            "perplexity",
            "Perplexity (held-out WikiText)",
            [(h.nll, h.tokens) for h in held],
            _ratio_exp,
            higher_is_better=False,
            **kw,
        ),
        estimate(
            "held-out text",
            "next_token_acc",
            "Next-token accuracy (held-out WikiText)",
            [(h.correct, h.tokens) for h in held],
            _ratio,
            **kw,
        ),
    ]


def _generation_estimates(handle, mute, special: list[str], kw: dict) -> list[Estimate]:
    """The muting probes' generations at one checkpoint (special tokens removed): empty outputs,
    repeated tokens, n-gram entropy."""
    from editlab.measure.muting import is_empty, ngram_entropy, repeats

    outs = [s.text for s in mute.samples]
    for s in special:
        outs = [o.replace(s, "") for o in outs]
    toks = [handle.tokenizer(o, add_special_tokens=False).input_ids if o.strip() else [] for o in outs]
    return [
        estimate(
            "generation",
            "empty_rate",
            "Empty outputs",
            [float(is_empty(o)) for o in outs],
            higher_is_better=False,
            **kw,
        ),
        estimate(
            "generation",
            "repeat_rate",
            "Repeated tokens",
            [(repeats(t), len(t)) for t in toks if t],
            _ratio,
            higher_is_better=False,
            **kw,
        ),
        estimate("generation", "ngram_entropy", "n-gram entropy (bits)", [ngram_entropy(o) for o in outs], **kw),
    ]


def _muting_notes(
    batch_size: int,
    steps: tuple[int, ...],
    paragraphs: list[str],
    heldout,
    heldout_tokens: int,
    retention: list,
    prov: dict,
    failures: list,
) -> list[str]:
    """The report's notes: protocol, held-out text, where the simple facts came from, failed edits."""
    notes = [
        f"sequential edits, batch size {batch_size}; checkpoints {', '.join(map(str, steps))}",
        f"held-out text: {len(paragraphs)} paragraphs of {heldout or 'WikiText-2 test (download)'}, "
        f"≤ {heldout_tokens} tokens each",
    ]
    if retention:
        notes.append(
            f"retention: {len(retention)} simple facts the unedited model gets right"
            + (f" ({prov.get('how', '')})" if prov else "")
        )
    else:
        notes.append("retention not measured: no simple-facts list")
    if failures:
        notes.append(f"{len(failures)} edit calls failed (skipped; the model is left as it was)")
    return notes


def _retention_facts(retention: Sequence[dict] | None) -> tuple[list, dict]:
    """The simple facts retention is measured on (those given, else the shipped list) and their provenance."""
    prov = {}
    if retention is None:
        retention, prov = load_simple_facts()
    return list(retention), prov


def _muting_plan(facts, method: str, hparams, batch_size: int, steps, seed: int, corpus, online: bool):
    """The engine's plan: the facts edited one batch after another, measured at the checkpoints."""
    from editlab.runs.experiments import Plan

    return Plan(
        tuple(facts),
        method,
        dict(hparams) if hparams else None,
        "sequential",
        batch_size,
        checkpoints=steps,
        seed=seed,
        corpus=corpus,
        online=online,
    )


def _checkpoint_progress(progress: Progress | None, steps: tuple[int, ...]) -> Callable:
    """The engine's progress reported as (checkpoints done, of, stage)."""
    say = progress or (lambda *a: None)
    n_steps = len(steps)

    def tell(p) -> None:  # the engine's progress, as (checkpoints done, of, stage)
        say(sum(s < p.step for s in steps), n_steps, p.stage)

    return tell


def _muting_measured(handle, outcome, seed: int, retention: list) -> tuple[list[Estimate], list[dict], dict]:
    """Every checkpoint's estimates, its edit and measuring seconds, and its first four muting generations."""
    est: list[Estimate] = []
    per_checkpoint, samples = [], {}
    special = [t for t in getattr(handle.tokenizer, "all_special_tokens", []) if t]
    for m in outcome.measured:
        est += _muting_estimates(handle, m, seed, retention, special)
        per_checkpoint.append(
            {"edits": m.step, "edit_s": round(m.edit_s, 2), "measure_s": round(sum(m.seconds.values()), 2)}
        )
        samples[str(m.step)] = [{"prompt": s.prompt, "text": s.text} for s in m.values["muting"].samples[:4]]
    return est, per_checkpoint, samples


def _muting_cost(handle, total: float, per_checkpoint: list[dict], n: int) -> dict:
    """The run's cost: total seconds, per checkpoint, per edit, and the machine."""
    edit_total = sum(c["edit_s"] for c in per_checkpoint)
    return {
        "total_s": round(total, 2),
        "per_checkpoint": per_checkpoint,
        "seconds_per_edit": round(edit_total / n, 3) if n else None,
        "machine": machine(handle),
    }


def _muting_result(
    handle, method: str, n: int, config: dict, est: list, cost: dict, notes: list, samples: dict, failures: list
) -> ReproResult:
    """The report: the configuration (JSON-safe), the estimates beside the published numbers, the cost,
    the notes, and the generations and failed edits."""
    return ReproResult(
        "muting",
        handle.name,
        method,
        n,
        json.loads(json.dumps(config, default=str)),
        tuple(est),
        references("muting"),
        cost,
        tuple(notes),
        {"generations": samples, "failures": failures},
    )


def muting(
    handle,
    n: int = 20,
    method: str = "memit",
    *,
    dataset=None,
    seed: int = 0,
    batch_size: int = 1,
    checkpoints: Sequence[int] | None = None,
    heldout: str | Path | None = None,
    heldout_count: int = 32,
    heldout_tokens: int = 128,
    retention: Sequence[dict] | None = None,
    ability_items: int = 0,
    ability_data: str | None = None,
    corpus: str | None = None,
    online: bool = True,
    hparams: Mapping | None = None,
    progress: Progress | None = None,
    cancel=None,
) -> ReproResult:
    """Edit the first ``n`` facts of ``dataset`` one batch after another (the sweep's order and
    per-edit seeds); at each checkpoint (log scale, 0 = unedited) measure the muting signals with
    intervals. Not stored in the run store (``editlab sweep`` is the resumable, stored form)."""
    from editlab.core.limits import current as current_limits
    from editlab.facts.datasets import Dataset
    from editlab.runs import experiments

    current_limits().check("max_edits", n, "sequential edits in this muting run (n)")
    dataset, facts = _muting_facts(dataset, n)
    steps = _muting_checkpoints(checkpoints, n)
    paragraphs = heldout_paragraphs(heldout, heldout_count, seed, online)
    retention, prov = _retention_facts(retention)
    evaluators = _muting_evaluators(paragraphs, heldout_tokens, retention, ability_items, ability_data, seed, online)
    plan = _muting_plan(facts, method, hparams, batch_size, steps, seed, corpus, online)
    tell = _checkpoint_progress(progress, steps)
    outcome = experiments.run(handle, plan, evaluators, progress=tell, cancel=cancel, what="this muting run")
    hp = outcome.hparams
    est, per_checkpoint, samples = _muting_measured(handle, outcome, seed, retention)
    failures = [{k: f[k] for k in ("first_fact", "n", "error")} for f in outcome.failures]
    cost = _muting_cost(handle, outcome.total_s, per_checkpoint, n)
    notes = _muting_notes(batch_size, steps, paragraphs, heldout, heldout_tokens, retention, prov, failures)
    config = {
        "dataset": dataset.name if isinstance(dataset, Dataset) else str(dataset),
        "n": n,
        "method": method,
        "hparams": hp.to_dict(),
        "seed": seed,
        "batch_size": batch_size,
        "checkpoints": list(steps),
        "heldout": str(heldout) if heldout else None,
        "heldout_count": len(paragraphs),
        "heldout_tokens": heldout_tokens,
        "retention_facts": len(retention),
        "retention_provenance": prov,
        "ability_items": ability_items,
        "corpus": corpus,
    }
    return _muting_result(handle, method, n, config, est, cost, notes, samples, failures)


RUNNERS = {"negation": negation, "factcheck": factcheck, "ablation": ablation, "muting": muting}


def run(protocol: str, handle, n: int, method: str | None = None, **kw) -> ReproResult:
    """Run one protocol by name (``PROTOCOLS``); ``method`` defaults to the papers' (MEMIT)."""
    if protocol not in RUNNERS:
        raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    if n < 1:
        raise ValueError("n must be at least 1")
    return RUNNERS[protocol](handle, n, method or DEFAULT_METHOD[protocol], **kw)
