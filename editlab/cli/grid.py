"""``editlab grid``: a benchmark grid (models × methods × datasets × protocols × variants), on Ray or in-process."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time

from editlab.cli.common import positive_int, status


def register(sub) -> None:
    p = sub.add_parser(
        "grid", help="run a benchmark grid from a YAML file, on Ray (pip install editlab[cluster]) or in-process"
    )
    p.add_argument(
        "grid", metavar="GRID.yaml", help="the grid: models, methods, datasets (with shards), protocols, variants"
    )
    p.add_argument(
        "--address",
        default=None,
        help="join this Ray cluster ('auto', 'ray://head:10001', ...); default: start Ray on this machine",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="workers (resident models) at once; default: as many as the resources allow",
    )
    p.add_argument(
        "--in-process", action="store_true", help="run the cells one after another in this process, without Ray"
    )
    p.add_argument("--retries", type=int, choices=[0, 1, 2, 3], default=1, help="retries of a failed cell (default 1)")
    p.add_argument("--store", default=None, help="run store file (default: $EDITLAB_STORE or the editlab data folder)")
    p.add_argument("--dry-run", action="store_true", help="list the cells and which are already stored; run nothing")
    p.add_argument(
        "--export", default=None, metavar="PATH", help="also write one row per cell to PATH (.csv, .parquet or .json)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object: every cell and the shards merged")
    p.set_defaults(handler=run_grid_cmd)


def _backend(args) -> str:
    if args.in_process:
        if args.address or args.workers:
            raise ValueError("--address and --workers are for Ray; leave them out with --in-process")
        return "in-process"
    try:
        import ray  # noqa: F401
    except ImportError:
        if args.address or args.workers:
            raise ValueError("--address and --workers need Ray: pip install 'editlab[cluster]'") from None
        status("Ray is not installed (pip install 'editlab[cluster]'): running the cells one after another in-process")
        return "in-process"
    return "ray"


class LiveTable:
    """Redraws the cell table in place on a terminal; elsewhere prints one line per change."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.drawn = 0

    def __call__(self, states, changed) -> None:
        from editlab.runs.grid import format_table

        if self.tty:
            width = shutil.get_terminal_size((160, 24)).columns
            text = format_table(states, width=width)
            up = f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ""
            self.stream.write(up + text + "\n")
            self.drawn = text.count("\n") + 1
        else:
            r = changed.row()
            figures = " ".join(f"{k} {r[k]:.2f}" for k in ("ES", "PS", "NS", "PN", "RE") if r.get(k) is not None)
            secs = f" {r['seconds']:.1f}s" if r["seconds"] is not None and changed.status != "running" else ""
            extra = f" on {changed.worker}" if changed.status == "running" and changed.worker else ""
            why = f": {changed.error}" if changed.error and changed.status in ("queued", "failed") else ""
            if changed.status == "running" and changed.attempts > 1:
                why = f" (attempt {changed.attempts})"
            self.stream.write(
                f"[{time.strftime('%H:%M:%S')}] cell {r['cell']}/{len(states)} {changed.status}{extra}{secs}: "
                f"{changed.cell.label}{(' ' + figures) if figures else ''}{why}\n"
            )
        self.stream.flush()


def run_grid_cmd(args) -> int:
    from editlab.runs.grid import GridSpec
    from editlab.runs.grid_run import run_grid
    from editlab.runs.store import RunStore

    if args.export:
        from editlab.runs.store import export_target

        export_target(args.export, None)  # before any work: a bad path fails at once
    spec = GridSpec.from_yaml(args.grid)
    cells = spec.cells()
    store = RunStore(args.store)
    status(
        f"grid {spec.name}: {len(cells)} cells ({len(spec.models)} model(s) × {len(spec.methods)} method(s) × "
        f"{len({c.dataset for c in cells})} dataset shard(s) × {len(spec.protocols)} protocol(s) × "
        f"{len(spec.variants)} variant(s)); run store: {store.path}"
    )
    if args.dry_run:
        _list_cells(cells, store)
        return 0
    backend = _backend(args)
    # Ray's driver threads print worker and raylet messages to stdout; stdout is for the table or the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        result = run_grid(
            cells,
            store,
            backend=backend,
            workers=args.workers,
            address=args.address,
            progress=LiveTable(),
            retries=args.retries,
        )
    if args.export:
        _export_cells(result, args.export)
    if args.json:
        _print_json(spec, backend, result, store)
    else:
        _print_tables(backend, result, store)
    if result.failed:
        status(f"{len(result.failed)} cell(s) failed; run the same command again to retry them")
        return 1
    return 0


def _list_cells(cells, store) -> None:
    """--dry-run: every cell, and the stored run that already holds it (or "to run")."""
    from editlab.runs.grid import stored_cells

    done = stored_cells(store)
    for i, c in enumerate(cells, 1):
        mark = f"stored run #{done[c.key]}" if c.key in done else "to run"
        print(f"{i:>4}  {c.key}  {mark:<16}  {c.label}  {json.dumps(c.hparams) if c.hparams else ''}")


def _export_cells(result, target: str) -> None:
    """--export: one row per cell written to ``target`` (.csv, .parquet or .json)."""
    from editlab.runs.store import export_target

    path, fmt = export_target(target, None)
    df = result.table()
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        path.write_text(df.to_json(orient="records", indent=1))
    status(f"wrote {path}")


def _print_json(spec, backend: str, result, store) -> None:
    """--json: one JSON object with every cell and the shards merged."""
    merged = result.merged(store)
    print(
        json.dumps(
            {
                "grid": spec.name,
                "backend": backend,
                "wall_seconds": result.wall_seconds,
                "cells": json.loads(result.table().to_json(orient="records")),
                "merged": json.loads(merged.to_json(orient="records")),
            }
        )
    )


def _print_tables(backend: str, result, store) -> None:
    """The cell table, the merged shards (where a dataset has several) and where the runs are stored."""
    from editlab.runs.grid import format_table

    print(format_table(result.states))
    merged = result.merged(store)
    if len(merged) and (merged["shards"] > 1).any():
        cols = ["model", "method", "dataset", "protocol", "variant", "shards", "n", "ES", "PS", "NS", "PN", "RE"]
        print("\nshards merged (every metric recomputed over all their facts):")
        print(merged[cols].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(
        f"\n{backend}: {result.wall_seconds:.1f} s; runs in {store.path} (the Benchmark page lists them)",
        file=sys.stderr,
    )
