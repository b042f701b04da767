"""Benchmark grids: models × methods × datasets (in shards) × protocols × hyperparameter variants.

A grid file (YAML, see :meth:`GridSpec.from_dict`) expands into *cells*. A cell is one call of the
experiment engine — today :func:`editlab.runs.bench.run_bench` with one method on one shard of one
dataset under one protocol and one hyperparameter variant — and has a stable identity key (a digest
of everything that determines its results), so a grid resumes: a cell already in the run store is
skipped.

:func:`editlab.runs.grid_run.run_grid` runs the cells one after another in this process, or on Ray
(:mod:`editlab.runs.grid_ray`, ``pip install editlab[cluster]``): one actor per (model, device) holds a
resident model and runs cell after cell. Either way the results come back to the driver as plain
dicts and the driver alone writes the run store, one ``bench`` run per cell (the Benchmark page
lists and compares them). A cell that fails is reported with its error and tried once more after
the others; the rest go on.

The engine behind a cell is an :class:`Experiment` (``load`` a model once per worker, ``run`` one
cell on it and return a plain dict). Replacing bench by another engine means writing another
Experiment; nothing else here knows what a cell computes.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from editlab import methods
from editlab.core.bounded import short
from editlab.core.paths import key_digest

CELL_VERSION = 1  # bump when a cell's meaning changes, so stored cells are not taken for new ones
GRID_KEY = "grid"  # the stored run's config holds the cell's identity under this key
STATES = ("queued", "running", "done", "failed")
HEADLINE = ("ES", "PS", "NS", "PN", "RE")
SPEC_KEYS = {
    "name",
    "models",
    "methods",
    "datasets",
    "protocols",
    "variants",
    "hparams",
    "corpus",
    "online",
    "resources",
}


# ---- what a grid is made of ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A model and what one worker holding it asks for (CPU threads, GPUs). Only name, revision,
    dtype and quantisation determine results; the resources only place the work."""

    name: str
    revision: str | None = None
    dtype: str | None = None
    quantization: str | None = None
    num_cpus: float = 1
    num_gpus: float = 0

    def identity(self) -> dict:
        return {"name": self.name, "revision": self.revision, "dtype": self.dtype, "quantization": self.quantization}

    @property
    def key(self) -> str:
        return key_digest(**self.identity())

    @property
    def threads(self) -> int:
        """Torch threads of a worker holding this model: the CPUs it asked for."""
        return max(1, int(self.num_cpus))


@dataclass(frozen=True)
class DatasetShard:
    """Shard ``shard`` (0-based) of ``shards`` contiguous pieces of a dataset's seeded subset."""

    path: str
    format: str | None = None
    n: int | None = None
    seed: int | None = 0
    skip_invalid: bool = False
    shard: int = 0
    shards: int = 1

    def identity(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "n": self.n,
            "seed": self.seed,
            "skip_invalid": self.skip_invalid,
            "shard": self.shard,
            "shards": self.shards,
        }

    @property
    def label(self) -> str:
        name = Path(self.path).name
        return name if self.shards == 1 else f"{name} [{self.shard + 1}/{self.shards}]"

    def load(self):
        from editlab.facts.datasets import load_dataset

        return shard(
            load_dataset(self.path, self.format, self.n, self.seed, self.skip_invalid), self.shard, self.shards
        )


def shard(dataset, i: int, count: int):
    """Piece ``i`` of ``count`` contiguous, near-equal pieces of a dataset (sizes differ by at most one)."""
    n = len(dataset)
    if not 1 <= count <= n:
        raise ValueError(f"{dataset.name}: cannot cut {n} fact{'s' if n != 1 else ''} into {count} shards")
    if not 0 <= i < count:
        raise ValueError(f"shard {i} is not one of 0..{count - 1}")
    lo, hi = i * n // count, (i + 1) * n // count
    return replace(
        dataset,
        facts=dataset.facts[lo:hi],
        records=dataset.records[lo:hi],
        portability=dataset.portability[lo:hi],
        generation_prompts=dataset.generation_prompts[lo:hi],
    )


@dataclass(frozen=True)
class Protocol:
    """How a cell edits and scores (see :mod:`editlab.runs.bench`)."""

    mode: str = "independent"
    batch_size: int = 1
    evaluate: str = "after_each"
    negative_edits: bool = True
    generation_tokens: int = 16

    def identity(self) -> dict:
        return {
            "mode": self.mode,
            "batch_size": self.batch_size,
            "evaluate": self.evaluate if self.mode == "sequential" else "after_each",
            "negative_edits": self.negative_edits,
            "generation_tokens": self.generation_tokens,
        }

    @property
    def label(self) -> str:
        text = f"{self.mode}/{self.batch_size}" + (
            "/at_end" if self.mode == "sequential" and self.evaluate == "at_end" else ""
        )
        return text + ("" if self.negative_edits else " -neg")


def _frozen(value):
    """A hashable copy of plain data (mappings → sorted item tuples, lists → tuples)."""
    if isinstance(value, Mapping):
        # by key alone: values of different types do not compare (1 and "1" are both the key "1")
        return tuple(sorted(((str(k), _frozen(v)) for k, v in value.items()), key=lambda kv: kv[0]))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed_items(items) -> dict:
    def thaw(v):
        if (
            isinstance(v, tuple)
            and v
            and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in v)
        ):
            return {k: thaw(x) for k, x in v}
        if isinstance(v, tuple):
            return [thaw(x) for x in v]
        return v

    return {k: thaw(v) for k, v in items}


@dataclass(frozen=True)
class Cell:
    """One run of the experiment engine: everything that determines its results."""

    model: ModelSpec
    method: str
    dataset: DatasetShard
    protocol: Protocol
    variant: str = "default"
    hparam_items: tuple = ()  # the method's overrides, frozen (see ``hparams``)
    corpus: str | None = None
    online: bool = True

    @property
    def hparams(self) -> dict:
        """The method's hyperparameter overrides (editlab or EasyEdit keys) as a plain dict."""
        return _thawed_items(self.hparam_items)

    def identity(self) -> dict:
        """What the key is a digest of. The variant's *name* is left out: two variants with the same
        overrides are the same cell."""
        return {
            "version": CELL_VERSION,
            "model": self.model.identity(),
            "method": self.method,
            "dataset": self.dataset.identity(),
            "protocol": self.protocol.identity(),
            "hparams": json.loads(json.dumps(self.hparams, sort_keys=True, default=str)),
            "corpus": self.corpus,
            "online": self.online,
        }

    @property
    def key(self) -> str:
        return key_digest(cell=self.identity())

    @property
    def label(self) -> str:
        return f"{self.model.name} {self.method} {self.dataset.label} {self.protocol.label} {self.variant}"

    def tag(self) -> dict:
        """What a stored run carries about its cell (under ``config["grid"]``)."""
        return {"cell": self.key, "variant": self.variant, "shard": self.dataset.shard, "shards": self.dataset.shards}


@dataclass(frozen=True)
class Variant:
    """A named set of per-method overrides; crossed with ``methods`` (default: the methods it
    names, or every method when it names none)."""

    name: str
    hparams: Mapping[str, Mapping] = field(default_factory=dict)
    methods: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    path: str
    format: str | None = None
    n: int | None = None
    seed: int | None = 0
    skip_invalid: bool = False
    shards: int | None = None
    shard_size: int | None = None


@dataclass(frozen=True)
class GridSpec:
    """A grid: see :meth:`from_dict` for the file format."""

    methods: tuple[str, ...]
    datasets: tuple[DatasetSpec, ...]
    models: tuple[ModelSpec, ...] = ()
    protocols: tuple[Protocol, ...] = (Protocol(),)
    variants: tuple[Variant, ...] = (Variant("default"),)
    hparams: Mapping[str, Mapping] = field(default_factory=dict)
    corpus: str | None = None
    online: bool = True
    name: str = "grid"

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> GridSpec:
        """Read a grid file; relative paths in it are relative to the file."""
        from editlab.core.yamlfile import read_yaml_mapping

        path = Path(path)
        data = read_yaml_mapping(str(path), what="a grid (models, methods, datasets, ...)")
        return cls.from_dict(data, base_dir=path.resolve().parent, default_name=path.stem)

    @classmethod
    def from_dict(cls, d: Mapping, base_dir: str | os.PathLike | None = None, default_name: str = "grid") -> GridSpec:
        """A grid from plain data::

            name: papers                     # a label (optional)
            models:                          # names, or mappings; default: the embedded model
              - smollm2-135m-instruct
              - {name: meta-llama/Meta-Llama-3-8B-Instruct, dtype: bfloat16, num_gpus: 1}
            methods: [rome, memit]
            datasets:
              - {path: counterfact-edit.json, n: 2000, seed: 0, shards: 20}   # or shard_size: 100
            protocols:                       # default: independent edits, batch size 1
              - {mode: sequential, batch_size: 100, evaluate: at_end, negative_edits: true, generation_tokens: 16}
            variants:                        # default: one variant, "default", no overrides
              - {name: default}
              - {name: neg1, hparams: {rome: {negation_weight: 1.0}}}
            hparams:                         # for every variant: overrides, or an EasyEdit YAML file
              rome: {mom2_n_tokens: 20000}
              memit: hparams/MEMIT/llama3-8b.yaml
            corpus: wikitext-103.txt         # statistics corpus (optional)
            online: true
            resources: {num_cpus: 1, num_gpus: 0}   # per worker; a model entry may override

        Paths (datasets, corpus, hyperparameter files) are relative to ``base_dir``."""
        if not isinstance(d, Mapping):
            raise ValueError(f"a grid is a mapping of {', '.join(sorted(SPEC_KEYS))}; got a {type(d).__name__}")
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        _no_unknown(d, SPEC_KEYS, "the grid")

        where = functools.partial(_where, base)
        resources = d.get("resources") or {}
        if not isinstance(resources, Mapping):
            raise ValueError(f"resources: expected a mapping of num_cpus, num_gpus; got {short(resources)}")
        _no_unknown(resources, {"num_cpus", "num_gpus"}, "resources")
        models = tuple(_model(m, resources) for m in (_list(d.get("models"), "models") or [_default_model()]))
        names = _method_names(d.get("methods"))
        datasets = tuple(_dataset(x, where) for x in _list(d.get("datasets"), "datasets"))
        if not datasets:
            raise ValueError("the grid names no datasets (datasets: [{path: counterfact-edit.json, n: 20}])")
        protocols = tuple(_protocol(p) for p in (_list(d.get("protocols"), "protocols") or [{}]))
        hparams = _hparams(d.get("hparams"), names, where, "hparams")
        variants = tuple(
            _variant(v, names, where) for v in (_list(d.get("variants"), "variants") or [{"name": "default"}])
        )
        if len({v.name for v in variants}) != len(variants):
            raise ValueError("two variants have the same name")
        corpus = d.get("corpus")
        return cls(
            methods=tuple(names),
            datasets=datasets,
            models=models,
            protocols=protocols,
            variants=variants,
            hparams=hparams,
            corpus=where(corpus) if corpus else None,
            online=bool(d.get("online", True)),
            name=str(d.get("name") or default_name),
        )

    def cells(self) -> list[Cell]:
        """Every cell, models outermost (a worker keeps its model for as long as it has cells), then
        datasets and shards, protocols, variants, methods. Reads each dataset once to count its
        facts and check the shards."""
        from editlab.facts.datasets import load_dataset

        shards: list[DatasetShard] = []
        for ds in self.datasets:
            n = len(load_dataset(ds.path, ds.format, ds.n, ds.seed, ds.skip_invalid))
            count = ds.shards or (math.ceil(n / ds.shard_size) if ds.shard_size else 1)
            if count > n:
                raise ValueError(f"{Path(ds.path).name}: {count} shards asked of {n} fact{'s' if n != 1 else ''}")
            shards += [DatasetShard(ds.path, ds.format, ds.n, ds.seed, ds.skip_invalid, i, count) for i in range(count)]
        out, seen = [], set()
        for model in self.models:
            for sh in shards:
                for protocol in self.protocols:
                    for variant in self.variants:
                        for method in variant.methods or self.methods:
                            hp = {**dict(self.hparams.get(method) or {}), **dict(variant.hparams.get(method) or {})}
                            cell = Cell(
                                model, method, sh, protocol, variant.name, _frozen(hp), self.corpus, self.online
                            )
                            if cell.key not in seen:  # two variants with the same overrides: one cell
                                seen.add(cell.key)
                                out.append(cell)
        return out


def _default_model() -> str:
    from editlab.model.handle import DEFAULT_MODEL

    return DEFAULT_MODEL


def _where(base: Path, p) -> str:
    """A path of the grid file, relative to ``base``, as an absolute path."""
    if not isinstance(p, str) or not p.strip():
        raise ValueError(f"a path in the grid should be a non-empty string, got {short(p)}")
    try:
        q = Path(p).expanduser()
        return str((q if q.is_absolute() else base / q).resolve())
    except (RuntimeError, OSError, ValueError) as e:  # ~user with no home, a NUL byte, a name too long
        raise ValueError(f"the path {short(p)} in the grid cannot be used ({short(str(e), 120)})") from None


def _method_names(value) -> list[str]:
    """The grid's methods: known, each once."""
    names = _list(value, "methods")
    if not names:
        raise ValueError("the grid names no methods (methods: [rome, memit, ...])")
    names = [str(m).strip().lower() for m in names]
    known = methods.available()
    unknown = [m for m in names if m not in known]
    if unknown:
        raise ValueError(
            f"unknown editing method{'s' if len(unknown) > 1 else ''} {', '.join(map(short, unknown[:10]))}; "
            f"available: {', '.join(known)}"
        )
    if len(set(names)) != len(names):
        raise ValueError("a method is listed twice in methods")
    return names


def _no_unknown(d: Mapping, allowed: set, what: str) -> None:
    stray = sorted(str(k) for k in d if k not in allowed)
    if stray:
        raise ValueError(
            f"{what}: unknown key{'s' if len(stray) > 1 else ''} {', '.join(map(short, stray[:10]))}"
            f"{f' and {len(stray) - 10:,} more' if len(stray) > 10 else ''}; known: {', '.join(sorted(allowed))}"
        )


def _list(value, what: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, Mapping)):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{what}: expected a list, got {type(value).__name__} {short(value)}")
    return list(value)


def _model(m, resources: Mapping) -> ModelSpec:
    if isinstance(m, str):
        m = {"name": m}
    if not isinstance(m, Mapping) or not isinstance(m.get("name"), str) or not m["name"].strip():
        raise ValueError(f"a model is a name or a mapping with a name, got {short(m)}")
    what = f"model {short(m['name'])}"
    _no_unknown(m, {"name", "revision", "dtype", "quantization", "num_cpus", "num_gpus"}, what)
    for key in ("revision", "dtype", "quantization"):
        if m.get(key) is not None and not isinstance(m[key], str):
            raise ValueError(f"{what}: {key} should be a string, got {short(m[key])}")
    num_cpus = _amount(m.get("num_cpus", resources.get("num_cpus", 1)), "num_cpus", what)
    num_gpus = _amount(m.get("num_gpus", resources.get("num_gpus", 0)), "num_gpus", what)
    if num_cpus == 0 and num_gpus == 0:
        raise ValueError(f"{what}: a worker needs some CPUs or GPUs (num_cpus, num_gpus >= 0, not both 0)")
    return ModelSpec(m["name"].strip(), m.get("revision"), m.get("dtype"), m.get("quantization"), num_cpus, num_gpus)


def _amount(value, key: str, what: str) -> float:
    """A worker's num_cpus / num_gpus: a finite number >= 0 (a number written as text is taken)."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        out = float(value)
    except (ValueError, OverflowError):
        out = math.nan
    if not (math.isfinite(out) and out >= 0):
        raise ValueError(f"{what}: {key} must be a number >= 0, got {short(value)}")
    return out


def _positive(d: Mapping, key: str, what: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{what}: {key} must be a whole number >= 1, got {short(v)}")
    return v


def _dataset(x, where) -> DatasetSpec:
    from editlab.facts.datasets import FORMATS

    if isinstance(x, str):
        x = {"path": x}
    if not isinstance(x, Mapping):
        raise ValueError(f"a dataset is a path or a mapping with a path, got {short(x)}")
    what = f"dataset {short(x.get('path'))}"
    _no_unknown(x, {"path", "format", "n", "seed", "skip_invalid", "shards", "shard_size"}, what)
    if x.get("shards") is not None and x.get("shard_size") is not None:
        raise ValueError(f"{what}: give shards or shard_size, not both")
    path = where(x.get("path"))
    try:
        found = Path(path).is_file()
    except OSError:  # a name too long for the file system
        found = False
    if not found:
        raise ValueError(f"{what}: no such file ({path if len(path) <= 300 else short(path)})")
    seed = x.get("seed", 0)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"{what}: seed must be a whole number or null, got {short(seed)}")
    if x.get("format") is not None and x["format"] not in FORMATS:
        raise ValueError(f"{what}: format {short(x['format'])} is not one of {', '.join(FORMATS)} (or leave it out)")
    return DatasetSpec(
        path,
        x.get("format"),
        _positive(x, "n", what),
        seed,
        bool(x.get("skip_invalid", False)),
        _positive(x, "shards", what),
        _positive(x, "shard_size", what),
    )


def _protocol(p) -> Protocol:
    from editlab.runs.bench import EVALUATE, MODES

    if not isinstance(p, Mapping):
        raise ValueError(f"a protocol is a mapping (mode, batch_size, ...), got {short(p)}")
    _no_unknown(p, {"mode", "batch_size", "evaluate", "negative_edits", "generation_tokens"}, "a protocol")
    out = Protocol(**{k: v for k, v in p.items()})
    if out.mode not in MODES:
        raise ValueError(f"protocol mode {short(out.mode)} is not one of {', '.join(MODES)}")
    if out.evaluate not in EVALUATE:
        raise ValueError(f"protocol evaluate {short(out.evaluate)} is not one of {', '.join(EVALUATE)}")
    for k in ("batch_size", "generation_tokens"):
        _positive(p, k, "a protocol")
    return replace(out, negative_edits=bool(out.negative_edits))


def _hparams(value, names: Sequence[str], where, what: str) -> dict[str, dict]:
    """{method: overrides}; a string value is an (EasyEdit) YAML file, read now so that the cell
    carries the values and a worker needs no file."""
    from editlab.core.yamlfile import read_yaml_mapping

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what}: expected a mapping of method: overrides, got {type(value).__name__}")
    out = {}
    for method, hp in value.items():
        m = str(method).strip().lower()
        if m not in names:
            raise ValueError(f"{what}: {short(method)} is not among the grid's methods ({', '.join(names)})")
        if isinstance(hp, str):
            hp = read_yaml_mapping(where(hp))
        if not isinstance(hp, Mapping):
            raise ValueError(
                f"{what}.{m if len(m) <= 60 else short(m)}: expected a mapping or a YAML file, got {type(hp).__name__}"
            )
        out[m] = dict(hp)
    return out


def _variant(v, names: Sequence[str], where) -> Variant:
    if isinstance(v, str):
        v = {"name": v}
    if not isinstance(v, Mapping) or not isinstance(v.get("name"), (str, int)) or not str(v["name"]).strip():
        raise ValueError(f"a variant is a mapping with a name, got {short(v)}")
    what = f"variant {short(v['name'])}"
    _no_unknown(v, {"name", "hparams", "methods"}, what)
    hp = _hparams(v.get("hparams"), names, where, what)
    ms = tuple(str(m).strip().lower() for m in _list(v.get("methods"), "methods")) or tuple(m for m in names if m in hp)
    stray = [m for m in ms if m not in names]
    if stray:
        raise ValueError(f"{what}: {', '.join(map(short, stray[:10]))} is not among the grid's methods")
    return Variant(str(v["name"]).strip(), hp, ms)


# ---- the engine behind a cell -----------------------------------------------------------------------------
class Experiment:
    """What a cell runs. ``load`` once per worker and model; ``run`` returns a plain dict::

        {"kind": run kind, "config": the run's stored configuration,
         "checkpoints": [{"step", "metrics", "samples", "timings"}, ...],
         "headline": {metric: value}, "seconds": float}

    The driver stores it (see :func:`record`); nothing else in the grid depends on the engine."""

    kind = "bench"

    def load(self, model: ModelSpec):
        from editlab.model.handle import load_model

        return load_model(model.name, revision=model.revision, dtype=model.dtype, quantization=model.quantization)

    def run(self, resident, cell: Cell) -> dict:
        from editlab.runs.bench import BenchConfig, checkpoint_of, run_bench

        t0 = time.perf_counter()
        dataset = cell.dataset.load()
        p = cell.protocol
        config = BenchConfig(
            dataset=cell.dataset.path,
            methods=(cell.method,),
            n=len(dataset),
            seed=cell.dataset.seed,
            dataset_format=cell.dataset.format,
            skip_invalid=cell.dataset.skip_invalid,
            mode=p.mode,
            batch_size=p.batch_size,
            evaluate=p.evaluate,
            negative_edits=p.negative_edits,
            generation_tokens=p.generation_tokens,
            hparams={cell.method: cell.hparams} if cell.hparams else {},
            corpus=cell.corpus,
            online=cell.online,
        )
        result = run_bench(resident, config, dataset=dataset, store=None)
        checkpoints = []
        for step, row in enumerate(result.rows):
            metrics, samples, timings = checkpoint_of(row)
            checkpoints.append({"step": step, "metrics": metrics, "samples": samples, "timings": timings})
        row = result.row(cell.method)
        headline = {k: row.metrics.get(k) for k in HEADLINE}
        headline["s/edit"] = row.timings.get("seconds_per_edit")
        headline["failed"] = row.failed
        return {
            "kind": self.kind,
            "config": result.config,
            "checkpoints": checkpoints,
            "headline": headline,
            "seconds": time.perf_counter() - t0,
        }


# ---- the run store: only the driver writes it ---------------------------------------------------------------
def stored_cells(store, kind: str = "bench") -> dict[str, int]:
    """{cell key: run id} of the finished grid cells in the store (the newest run of each)."""
    out = {}
    for run in store.runs(kind):
        tag = run.config.get(GRID_KEY)
        if isinstance(tag, Mapping) and tag.get("cell") and run.status == "done":
            out[tag["cell"]] = run.id
    return out


def record(store, cell: Cell, result: Mapping) -> int:
    """Write one cell's result as a run (:func:`editlab.runs.writer.record_result`: ``done`` only once every
    checkpoint is in, so a driver that dies halfway leaves a run the next invocation does not take
    for finished; such leftovers of the same cell are removed first)."""
    from editlab.runs.writer import record_result

    def same_cell(run) -> bool:
        tag = run.config.get(GRID_KEY)
        return isinstance(tag, Mapping) and tag.get("cell") == cell.key

    return record_result(
        store,
        result["kind"],
        {**result["config"], GRID_KEY: cell.tag()},
        result["checkpoints"],
        note=f"grid cell {cell.key}",
        replaces=same_cell,
    )


def _headline_from_store(store, run_id: int, method: str) -> dict:
    for c in store.checkpoints(run_id, samples=False):
        if c.metrics.get("method") == method:
            h = {k: c.metrics.get(k) for k in HEADLINE}
            h["s/edit"] = c.timings.get("seconds_per_edit")
            h["failed"] = c.metrics.get("failed")
            return h
    return {}


# ---- the live table ----------------------------------------------------------------------------------
@dataclass
class CellState:
    """Where one cell stands (the rows of the live table)."""

    index: int
    cell: Cell
    status: str = "queued"
    attempts: int = 0
    seconds: float | None = None  # the engine's time for the cell (done) or since it started (running)
    wall: float | None = None  # driver's time from hand-over to result (queueing and transfer included)
    headline: dict = field(default_factory=dict)
    error: str | None = None  # the latest attempt's error
    errors: list[str] = field(default_factory=list)
    run_id: int | None = None
    stored: bool = False  # found finished in the store, not run now
    worker: str | None = None
    started: float | None = None

    def row(self) -> dict:
        c = self.cell
        secs = self.seconds
        if self.status == "running" and self.started is not None:
            secs = time.monotonic() - self.started
        return {
            "cell": self.index + 1,
            "status": self.status,
            "model": c.model.name,
            "method": c.method,
            "dataset": c.dataset.label,
            "protocol": c.protocol.label,
            "variant": c.variant,
            "seconds": secs,
            **{k: self.headline.get(k) for k in HEADLINE},
            "attempts": self.attempts,
            "run_id": self.run_id,
            "stored": self.stored,
            "worker": self.worker,
            "error": self.error,
            "key": c.key,
        }


Progress = Callable[[Sequence[CellState], CellState], None]


def format_table(states: Sequence[CellState], width: int = 0) -> str:
    """The cell table as text (the CLI's live table)."""
    head = ["#", "status", "model", "method", "dataset", "protocol", "variant", "time", *HEADLINE, "note"]
    rows = []
    for s in states:
        r = s.row()
        note = ""
        if s.stored:
            note = f"stored run #{s.run_id}"
        elif s.run_id is not None:
            note = f"run #{s.run_id}"
        if s.status == "running" and s.worker:
            note = s.worker
        if s.error:
            note = (
                (note + "; " if note else "")
                + ("retrying after: " if s.status in ("queued", "running") else "")
                + s.error
            )
        if s.attempts > 1 and s.status == "done":
            note += f" (attempt {s.attempts})"
        rows.append(
            [
                str(r["cell"]),
                s.status,
                _short(r["model"], 24),
                r["method"],
                r["dataset"],
                r["protocol"],
                r["variant"],
                "" if r["seconds"] is None else f"{r['seconds']:.1f}s",
                *["" if r[k] is None else f"{r[k]:.2f}" for k in HEADLINE],
                note,
            ]
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(x.ljust(w) for x, w in zip(line[:-1], widths)) + "  " + line[-1] for line in [head, *rows]]
    counts = {k: sum(1 for s in states if s.status == k) for k in STATES}
    lines.append(", ".join(f"{v} {k}" for k, v in counts.items()) + f" of {len(states)} cells")
    if width:
        lines = [x if len(x) <= width else x[: width - 1] + "…" for x in lines]
    return "\n".join(lines)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else "…" + text[-(n - 1) :]


# ---- running a grid ------------------------------------------------------------------------------------
@dataclass
class GridResult:
    states: list[CellState]
    backend: str
    wall_seconds: float

    @property
    def ok(self) -> bool:
        return all(s.status == "done" for s in self.states)

    @property
    def failed(self) -> list[CellState]:
        return [s for s in self.states if s.status == "failed"]

    def table(self):
        import pandas as pd

        return pd.DataFrame.from_records([s.row() for s in self.states])

    def merged(self, store):
        """Shards put back together: per (model, method, dataset, protocol, variant), every metric
        recomputed from the per-fact scores of all its finished shards (as one run over all the
        facts would, under an independent protocol; sequential shards are separate sequences)."""
        import pandas as pd

        from editlab.measure.metrics import aggregate

        groups: dict[tuple, list] = {}
        for s in self.states:
            if s.status != "done" or s.run_id is None:
                continue
            c = s.cell
            key = (c.model.name, c.method, c.dataset.path, c.protocol.label, c.variant)
            for ck in store.checkpoints(s.run_id):
                if ck.metrics.get("method") == c.method:
                    groups.setdefault(key, []).append(ck)
        records = []
        for (model, method, dataset, protocol, variant), cks in groups.items():
            scores = [f["scores"] for ck in cks for f in (ck.samples or [])]
            secs = [f["edit_seconds"] for ck in cks for f in (ck.samples or []) if f.get("edit_seconds") is not None]
            records.append(
                {
                    "model": model,
                    "method": method,
                    "dataset": Path(dataset).name,
                    "protocol": protocol,
                    "variant": variant,
                    "shards": len(cks),
                    **aggregate(scores),
                    "s/edit": (sorted(secs)[len(secs) // 2] if secs else None),
                }
            )
        return pd.DataFrame.from_records(records)


class Driver:
    """Bookkeeping shared by the backends: states, the store, retries, progress."""

    def __init__(self, cells: Sequence[Cell], store, progress: Progress | None, retries: int, kind: str):
        self.states = [CellState(i, c) for i, c in enumerate(cells)]
        self.store, self._progress, self.retries = store, progress, retries
        if store is not None:
            done = stored_cells(store, kind)
            for s in self.states:
                if s.cell.key in done:
                    s.status, s.stored, s.run_id = "done", True, done[s.cell.key]
                    s.headline = _headline_from_store(store, s.run_id, s.cell.method)
        self.queue: list[CellState] = [s for s in self.states if s.status == "queued"]

    def notify(self, s: CellState) -> None:
        if self._progress is not None:
            self._progress(self.states, s)

    def start(self, s: CellState, worker: str) -> None:
        s.status, s.worker, s.started, s.attempts = "running", worker, time.monotonic(), s.attempts + 1
        self.notify(s)

    def finish(self, s: CellState, result: Mapping) -> None:
        s.wall = time.monotonic() - s.started if s.started is not None else None
        if self.store is not None:
            s.run_id = record(self.store, s.cell, result)
        s.status, s.seconds, s.headline = "done", result.get("seconds"), dict(result.get("headline") or {})
        s.error, s.worker = None if s.attempts == 1 else s.error, None
        self.notify(s)

    def fail(self, s: CellState, error: str) -> None:
        """Record a failed attempt; the cell goes to the back of the queue while it has retries left."""
        s.error = " ".join(str(error).split())[:500] or "failed"
        s.errors.append(s.error)
        s.seconds = time.monotonic() - s.started if s.started is not None else None
        s.worker = None
        if s.attempts <= self.retries:
            s.status = "queued"
            self.queue.append(s)
        else:
            s.status = "failed"
        self.notify(s)

    def give_up(self, s: CellState, error: str) -> None:
        s.error = error
        s.errors.append(error)
        s.status = "failed"
        self.notify(s)


def describe(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
