"""The run store: one embedded SQLite database holding every run editlab records.

A *run* is a configuration (model, revision, method, hparams, dataset, seed, and whatever else
determines its results) plus an ordered list of *checkpoints* (a step number, the metrics measured
there, sample generations and timings). Sweeps write one checkpoint per edit count and resume from
the last one; the CLI and the app read and write the same file.

Where it lives: ``RunStore(path)``, else ``$EDITLAB_STORE``, else ``<data root>/runs.sqlite`` with the
data root ``$EDITLAB_DATA_DIR``, else ``$XDG_DATA_HOME/editlab``, else ``~/.local/share/editlab``.
Runs are results, not a cache: they are kept outside the (safe to delete) cache root.

Safety:
- every write is one transaction (``BEGIN IMMEDIATE``), the journal is WAL and connections wait up
  to ``timeout`` seconds for a lock, so the app and a CLI run can write at the same time;
- one connection per operation, so a store object may be shared between threads;
- the file carries an ``application_id`` and a ``meta`` table naming the schema: a file that is not
  SQLite, is another program's database, was written by a newer editlab, or fails SQLite's integrity
  check raises :class:`StoreError` naming the file, and nothing in it is changed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from editlab.core import paths

APPLICATION_ID = 0x45444C42  # "EDLB": marks the file as an editlab run store
SCHEMA_NAME = "editlab-runs"
SCHEMA_VERSION = 1
STATUSES = ("created", "running", "done", "failed", "cancelled", "interrupted")
EXPORT_FORMATS = ("csv", "parquet", "json")
_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    config_key TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    note TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_config ON runs(kind, config_key);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    samples TEXT,
    timings TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS run_state (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    state BLOB NOT NULL,
    created REAL NOT NULL
);
"""


_OWNERS_TABLE = """CREATE TABLE IF NOT EXISTS run_owners (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    PRIMARY KEY (run_id, owner)
)"""


class StoreError(RuntimeError):
    """The store file cannot be used (not SQLite, another program's, corrupt, too new) or a
    request contradicts what it holds. The message names the file."""


def data_root() -> Path:
    """Where editlab keeps results (not caches): ``$EDITLAB_DATA_DIR``, ``$XDG_DATA_HOME/editlab``
    or ``~/.local/share/editlab``."""
    env = os.environ.get("EDITLAB_DATA_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "editlab"


def default_path() -> Path:
    env = os.environ.get("EDITLAB_STORE")
    return Path(env) if env else data_root() / "runs.sqlite"


@dataclass(frozen=True)
class RunConfig:
    """What determines a run's results. ``extra`` holds the rest (counts, subset sizes, ...)."""

    model: str
    method: str | None = None
    dataset: str | None = None
    seed: int = 0
    revision: str | None = None
    hparams: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "revision": self.revision,
            "method": self.method,
            "hparams": dict(self.hparams),
            "dataset": self.dataset,
            "seed": self.seed,
            **dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        known = ("model", "revision", "method", "hparams", "dataset", "seed")
        return cls(
            model=d.get("model"),
            revision=d.get("revision"),
            method=d.get("method"),
            hparams=dict(d.get("hparams") or {}),
            dataset=d.get("dataset"),
            seed=d.get("seed", 0),
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass(frozen=True)
class Run:
    id: int
    kind: str
    config: dict
    status: str
    created: float
    updated: float
    n_checkpoints: int = 0
    last_step: int | None = None
    note: str | None = None

    @property
    def label(self) -> str:
        c = self.config
        parts = [str(c.get(k)) for k in ("method", "model") if c.get(k)]
        return f"#{self.id} {self.kind} " + " ".join(parts)


@dataclass(frozen=True)
class Checkpoint:
    run_id: int
    step: int
    metrics: dict
    samples: Any = None
    timings: dict = field(default_factory=dict)
    created: float = 0.0


def _canonical(config) -> dict:
    if isinstance(config, RunConfig):
        config = config.to_dict()
    elif is_dataclass(config):
        config = asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"a run config must be a mapping or RunConfig, got {type(config).__name__}")
    try:
        return json.loads(json.dumps(dict(config), sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise ValueError(f"a run config must be plain JSON (str, numbers, lists, dicts): {e}") from e


def _dumps(value) -> str:
    """JSON with NaN/inf stored as null (SQLite and other readers choke on bare NaN)."""
    return json.dumps(_finite(value), sort_keys=True)


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, Mapping):
        return {str(k): _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy / torch scalars
        return _finite(v.item())
    return v


def export_target(path: str | os.PathLike, fmt: str | None) -> tuple[Path, str]:
    """(path, format) of an export: the format defaults to the file's suffix and must be one of
    EXPORT_FORMATS; the folder is created."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"export {path}: is a folder; give a file name such as {path / 'runs.csv'}")
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(
            f"export format {fmt[:20]!r} ({path.name[:80]}) is not one of {', '.join(EXPORT_FORMATS)}: "
            "name the file .csv, .parquet or .json"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"export {path}: cannot create its folder ({e.strerror or e})") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"export {path}: not writable; give another path")
    return path, fmt


class RunStore:
    """Runs and their checkpoints in one SQLite file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike | None = None, timeout: float = 30.0):
        self.path = Path(path) if path is not None else default_path()
        self.timeout = float(timeout)
        self._open()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # ---- opening and checking the file ---------------------------------------------------
    def _error(self, what: str) -> StoreError:
        return StoreError(f"run store {self.path}: {what}")

    def _open(self) -> None:
        if self.path.is_dir():
            raise self._error("is a directory; give a file path for the run store")
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_HEADER))
            if head != _SQLITE_HEADER:
                raise self._error(
                    "is not an SQLite database (wrong file header); refusing to touch it. "
                    "Move it away or choose another path (--store / EDITLAB_STORE)"
                )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect(check=False) as con:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if app_id == 0 and not tables:
                self._initialise(con)
                return
            if app_id != APPLICATION_ID:
                raise self._error(
                    f"is another program's SQLite database (application_id {app_id:#x}, tables: "
                    f"{', '.join(sorted(tables)) or 'none'}); refusing to touch it. Choose another path"
                )
            self._check(con)

    def _initialise(self, con: sqlite3.Connection) -> None:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have initialised the file while we waited for the lock.
            if con.execute("PRAGMA application_id").fetchone()[0] == 0:
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        con.execute(stmt)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_NAME,))
                con.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (str(SCHEMA_VERSION),))
                con.execute("INSERT OR REPLACE INTO meta VALUES ('created', ?)", (str(time.time()),))
                con.execute(f"PRAGMA application_id={APPLICATION_ID}")
                con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _check(self, con: sqlite3.Connection) -> None:
        try:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as e:
            raise self._error(
                f"has editlab's application id but no readable meta table ({e}); "
                "the file is damaged. Nothing was changed"
            ) from e
        if meta.get("schema") != SCHEMA_NAME:
            raise self._error(f"meta table names schema {meta.get('schema')!r}, not {SCHEMA_NAME!r}")
        version = int(meta.get("version", "0"))
        if version > SCHEMA_VERSION:
            raise self._error(
                f"was written by a newer editlab (schema version {version}, this one reads "
                f"up to {SCHEMA_VERSION}); upgrade editlab. Nothing was changed"
            )
        result = con.execute("PRAGMA quick_check").fetchall()
        if result != [("ok",)]:
            problems = "; ".join(r[0] for r in result[:3])
            raise self._error(
                f"fails SQLite's integrity check ({problems}); the file is corrupt. "
                "Nothing was changed; restore it from a backup or move it away"
            )

    @contextlib.contextmanager
    def _connect(self, check: bool = True):
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as e:
            raise self._error(f"cannot be opened: {e}") from e
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise self._error(f"stayed locked by another writer for over {self.timeout:.0f} s") from e
            raise self._error(f"database error: {e}") from e
        finally:
            con.close()

    @contextlib.contextmanager
    def _write(self):
        """One write transaction, taken up front so concurrent writers queue instead of failing."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # ---- runs ------------------------------------------------------------------------------
    def create_run(self, kind: str, config, status: str = "created", note: str | None = None) -> int:
        """A new run; returns its id. Use :meth:`find_run` first to resume an identical one."""
        if not kind or not str(kind).strip():
            raise ValueError("a run needs a kind (e.g. 'sweep')")
        self._status_ok(status)
        cfg = _canonical(config)
        now = time.time()
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO runs (kind, config_key, config, status, created, updated, note) VALUES (?,?,?,?,?,?,?)",
                (
                    kind,
                    paths.key_digest(kind=kind, config=cfg),
                    json.dumps(cfg, sort_keys=True),
                    status,
                    now,
                    now,
                    note,
                ),
            )
            return int(cur.lastrowid)

    def find_run(self, kind: str, config) -> Run | None:
        """The most recent run of this kind with exactly this configuration, or None."""
        cfg = _canonical(config)
        key = paths.key_digest(kind=kind, config=cfg)
        with self._connect() as con:
            rows = con.execute(
                "SELECT id, config FROM runs WHERE kind=? AND config_key=? ORDER BY id DESC", (kind, key)
            ).fetchall()
        for run_id, text in rows:
            if json.loads(text) == cfg:  # guard against a digest collision
                return self.run(run_id)
        return None

    def run(self, run_id: int) -> Run:
        with self._connect() as con:
            row = con.execute(
                "SELECT r.id, r.kind, r.config, r.status, r.created, r.updated, r.note, COUNT(c.step), MAX(c.step) "
                "FROM runs r LEFT JOIN checkpoints c ON c.run_id = r.id WHERE r.id=? GROUP BY r.id",
                (int(run_id),),
            ).fetchone()
        if row is None:
            raise KeyError(f"no run {run_id} in {self.path}")
        return self._run(row)

    def runs(self, kind: str | None = None, owner: str | None = None) -> list[Run]:
        """Every run (of one kind, and held by one owner, if given), oldest first."""
        q = (
            "SELECT r.id, r.kind, r.config, r.status, r.created, r.updated, r.note, COUNT(c.step), MAX(c.step) "
            "FROM runs r LEFT JOIN checkpoints c ON c.run_id = r.id {} GROUP BY r.id ORDER BY r.id"
        )
        where, args = [], []
        if kind is not None:
            where.append("r.kind=?")
            args.append(kind)
        if owner is not None:
            self._ensure_owners()
            where.append("r.id IN (SELECT run_id FROM run_owners WHERE owner=?)")
            args.append(str(owner))
        with self._connect() as con:
            rows = con.execute(q.format("WHERE " + " AND ".join(where) if where else ""), args).fetchall()
        return [self._run(r) for r in rows]

    # ---- owners: whose runs these are (the app's visitors) ----------------------------------
    def _ensure_owners(self) -> None:
        """The owners table, added to a store made before it existed (an additive change: older
        editlab versions ignore it)."""
        if getattr(self, "_owners_ready", False):
            return
        with self._write() as con:
            con.execute(_OWNERS_TABLE)
        self._owners_ready = True

    def add_owner(self, run_id: int, owner: str) -> None:
        self._ensure_owners()
        with self._write() as con:
            con.execute("INSERT OR IGNORE INTO run_owners (run_id, owner) VALUES (?, ?)", (int(run_id), str(owner)))

    def owns(self, run_id: int, owner: str) -> bool:
        self._ensure_owners()
        with self._connect() as con:
            return (
                con.execute("SELECT 1 FROM run_owners WHERE run_id=? AND owner=?", (int(run_id), str(owner))).fetchone()
                is not None
            )

    def scoped(self, owner: str) -> OwnedStore:
        """A view of this store holding only ``owner``'s runs (see :class:`OwnedStore`)."""
        return OwnedStore(self, owner)

    @staticmethod
    def _run(row) -> Run:
        rid, kind, config, status, created, updated, note, n, last = row
        return Run(
            id=rid,
            kind=kind,
            config=json.loads(config),
            status=status,
            created=created,
            updated=updated,
            n_checkpoints=int(n or 0),
            last_step=last,
            note=note,
        )

    def set_status(self, run_id: int, status: str, note: str | None = None) -> None:
        self._status_ok(status)
        with self._write() as con:
            cur = con.execute(
                "UPDATE runs SET status=?, updated=?, note=COALESCE(?, note) WHERE id=?",
                (status, time.time(), note, int(run_id)),
            )
            if cur.rowcount == 0:
                raise KeyError(f"no run {run_id} in {self.path}")

    def delete_run(self, run_id: int) -> None:
        with self._write() as con:
            con.execute("DELETE FROM runs WHERE id=?", (int(run_id),))

    @staticmethod
    def _status_ok(status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")

    # ---- checkpoints -----------------------------------------------------------------------
    def add_checkpoint(
        self,
        run_id: int,
        step: int,
        metrics: Mapping[str, Any],
        samples=None,
        timings: Mapping[str, float] | None = None,
        state: bytes | None = None,
        exists_ok: bool = False,
    ) -> bool:
        """Record one checkpoint; True when written. ``state`` (optional bytes: what a resume needs,
        e.g. the edited weights) replaces the run's previous state in the same transaction, so the
        checkpoint and its state are written together or not at all. A step is written once:
        repeating it raises, or with ``exists_ok`` leaves the stored one as it is and returns False
        (a resumed run that reaches a step an earlier attempt stored)."""
        if not isinstance(metrics, Mapping):
            raise TypeError("metrics must be a mapping of names to values")
        now = time.time()
        with self._write() as con:
            if con.execute("SELECT 1 FROM runs WHERE id=?", (int(run_id),)).fetchone() is None:
                raise KeyError(f"no run {run_id} in {self.path}")
            if (
                exists_ok
                and con.execute(
                    "SELECT 1 FROM checkpoints WHERE run_id=? AND step=?", (int(run_id), int(step))
                ).fetchone()
                is not None
            ):
                return False
            try:
                con.execute(
                    "INSERT INTO checkpoints VALUES (?,?,?,?,?,?)",
                    (
                        int(run_id),
                        int(step),
                        _dumps(metrics),
                        None if samples is None else _dumps(samples),
                        _dumps(timings or {}),
                        now,
                    ),
                )
            except sqlite3.IntegrityError as e:
                raise self._error(
                    f"run {run_id} already has a checkpoint at step {step}; a checkpoint is "
                    "never overwritten (another process may be running this sweep)"
                ) from e
            if state is not None:
                con.execute(
                    "INSERT OR REPLACE INTO run_state VALUES (?,?,?,?)", (int(run_id), int(step), bytes(state), now)
                )
            con.execute("UPDATE runs SET updated=? WHERE id=?", (now, int(run_id)))
        return True

    def checkpoints(self, run_id: int, samples: bool = True) -> list[Checkpoint]:
        """The run's checkpoints in step order (``samples=False`` skips reading the samples)."""
        col = "samples" if samples else "NULL"
        with self._connect() as con:
            rows = con.execute(
                f"SELECT run_id, step, metrics, {col}, timings, created FROM checkpoints WHERE run_id=? ORDER BY step",
                (int(run_id),),
            ).fetchall()
        return [
            Checkpoint(
                run_id=r[0],
                step=r[1],
                metrics=json.loads(r[2]),
                samples=None if r[3] is None else json.loads(r[3]),
                timings=json.loads(r[4] or "{}"),
                created=r[5],
            )
            for r in rows
        ]

    def state(self, run_id: int) -> tuple[int, bytes] | None:
        """(step, bytes) of the run's latest saved state, or None."""
        with self._connect() as con:
            row = con.execute("SELECT step, state FROM run_state WHERE run_id=?", (int(run_id),)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    # ---- export ----------------------------------------------------------------------------
    def to_dataframe(self, run_ids: Iterable[int] | None = None):
        """One row per checkpoint: run columns, ``step``, then the metrics (nested names joined
        with '.') and timings (``time.<name>``)."""
        import pandas as pd

        ids = [r.id for r in self.runs()] if run_ids is None else [int(i) for i in run_ids]
        records = []
        for rid in ids:
            run = self.run(rid)
            base = {
                "run_id": run.id,
                "kind": run.kind,
                "status": run.status,
                **{k: run.config.get(k) for k in ("model", "revision", "method", "dataset", "seed")},
            }
            for c in self.checkpoints(rid, samples=False):
                records.append(
                    {
                        **base,
                        "step": c.step,
                        **_flatten(c.metrics),
                        **{f"time.{k}": v for k, v in _flatten(c.timings).items()},
                    }
                )
        return pd.DataFrame.from_records(records)

    def export(self, run_ids: Iterable[int] | None, path: str | os.PathLike, fmt: str | None = None) -> Path:
        """Write runs to ``path`` as csv, parquet (one row per checkpoint) or json (everything,
        samples included). ``fmt`` defaults to the file's suffix."""
        path, fmt = export_target(path, fmt)
        if fmt == "json":
            ids = [r.id for r in self.runs()] if run_ids is None else [int(i) for i in run_ids]
            out = []
            for rid in ids:
                run = self.run(rid)
                out.append(
                    {
                        "id": run.id,
                        "kind": run.kind,
                        "status": run.status,
                        "config": run.config,
                        "created": run.created,
                        "updated": run.updated,
                        "note": run.note,
                        "checkpoints": [asdict(c) for c in self.checkpoints(rid)],
                    }
                )
            paths.atomic_write_bytes(path, json.dumps(out, indent=1).encode())
            return path
        df = self.to_dataframe(run_ids)
        tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
        if fmt == "csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
        return path


class OwnedStore(RunStore):
    """One owner's view of a run store (an app visitor's): it lists, opens, resumes and exports
    only the runs that owner created or asked for; a run someone else holds is "not found", and
    no message names the file. A run found by its exact configuration (``find_run``) is added to
    the owner's runs: asking for the same configuration means having the same inputs, so its
    results reveal nothing the owner did not give."""

    def __init__(self, base: RunStore, owner: str):  # noqa: D107 - shares the file, no reopening
        if not owner or not str(owner).strip():
            raise ValueError("a scoped run store needs an owner")
        self.path, self.timeout, self.owner = base.path, base.timeout, str(owner)
        self._ensure_owners()

    def __repr__(self) -> str:
        return "OwnedStore(<private>)"

    def _error(self, what: str) -> StoreError:
        return StoreError(f"run store: {what}")

    def _mine(self, run_id: int) -> int:
        if not self.owns(run_id, self.owner):
            raise KeyError(f"no run #{run_id} among your runs")
        return int(run_id)

    def create_run(self, kind: str, config, status: str = "created", note: str | None = None) -> int:
        run_id = super().create_run(kind, config, status, note)
        self.add_owner(run_id, self.owner)
        return run_id

    def find_run(self, kind: str, config) -> Run | None:
        run = super().find_run(kind, config)
        if run is not None:
            self.add_owner(run.id, self.owner)
        return run

    def run(self, run_id: int) -> Run:
        return super().run(self._mine(run_id))

    def runs(self, kind: str | None = None, owner: str | None = None) -> list[Run]:
        return super().runs(kind, owner=self.owner)

    def set_status(self, run_id: int, status: str, note: str | None = None) -> None:
        super().set_status(self._mine(run_id), status, note)

    def delete_run(self, run_id: int) -> None:
        super().delete_run(self._mine(run_id))

    def add_checkpoint(self, run_id: int, step: int, *args, **kwargs):
        return super().add_checkpoint(self._mine(run_id), step, *args, **kwargs)

    def checkpoints(self, run_id: int, samples: bool = True) -> list[Checkpoint]:
        return super().checkpoints(self._mine(run_id), samples)

    def state(self, run_id: int):
        return super().state(self._mine(run_id))


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, name + "."))
        elif isinstance(v, (list, tuple)):
            out[name] = json.dumps(v)
        else:
            out[name] = v
    return out
