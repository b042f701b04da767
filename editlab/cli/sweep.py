"""``editlab sweep`` (sequential edits with checkpoints) and ``editlab runs`` (the run store)."""

from __future__ import annotations

import sys

from editlab import methods
from editlab.cli.common import add_model_args, load, positive_int, read_yaml_mapping, status


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="edit facts one after another and record edit quality, general ability "
        "and muting at each count (resumable)",
    )
    add_model_args(p)
    p.add_argument("--method", default="rome", help="one of: " + ", ".join(methods.available()))
    _edit_arguments(p)
    _hparams_arguments(p)
    _ability_arguments(p)
    _output_arguments(p)
    p.set_defaults(handler=run_sweep_cmd)
    _register_runs(sub)


def _edit_arguments(p) -> None:
    """What is edited: the facts, the counts at which to measure, the batch size, the seed."""
    p.add_argument(
        "--dataset",
        required=True,
        help="facts file (CounterFact, zsRE, KnowEdit, or your CSV/JSONL); facts are edited in file order",
    )
    p.add_argument(
        "--counts", default="1,2,5,10,20,50,100", help="numbers of edits at which to measure (default: %(default)s)"
    )
    p.add_argument("--batch-size", type=positive_int, default=1, help="facts per edit call (batch methods)")
    p.add_argument("--seed", type=int, default=0)


def _hparams_arguments(p) -> None:
    """The method's hyperparameters and the corpus of its second-moment statistics."""
    p.add_argument("--hparams", default=None, help="a YAML file of hyperparameters (EasyEdit keys accepted)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one hyperparameter (repeatable)"
    )
    p.add_argument("--corpus", default=None, help="text corpus for second-moment statistics")
    p.add_argument("--offline", action="store_true", help="never download (statistics corpus, benchmark data)")


def _ability_arguments(p) -> None:
    """What is measured at each count: the ability benchmarks, muting and perplexity."""
    p.add_argument(
        "--ability-data",
        default=None,
        metavar="DIR",
        help="benchmark files laid out like the public releases (mmlu/, bbh/, gsm8k-test.jsonl, ...); "
        "default: the public sources online",
    )
    p.add_argument(
        "--ability-size",
        type=int,
        default=None,
        metavar="N",
        help="items per ability task (GSM8K and perplexity: fewer); default: editlab's small defaults",
    )
    p.add_argument(
        "--ability-sizes", default=None, metavar="TASK=N,...", help="per task, e.g. mmlu=20,gsm8k=0 (0 skips)"
    )
    p.add_argument(
        "--ability-config",
        default=None,
        metavar="YAML",
        help="ability settings (sizes, shots, max_gen_tokens, ppl_chars, batch_size ...); flags override it",
    )
    p.add_argument(
        "--muting-tokens",
        type=positive_int,
        default=32,
        help="tokens generated per muting probe (default: %(default)s)",
    )
    p.add_argument(
        "--ppl-corpus", default=None, help="text corpus (.txt/.jsonl) for perplexity (default: WikiText-2 online)"
    )


def _output_arguments(p) -> None:
    """Where the run is stored and how the curves are written out."""
    p.add_argument("--store", default=None, help="run store file (default: $EDITLAB_STORE or the editlab data folder)")
    p.add_argument("--no-resume", action="store_true", help="start a new run even if this configuration was run before")
    p.add_argument("--export", default=None, metavar="PATH", help="write the run's checkpoints to .csv/.parquet/.json")
    p.add_argument("--json", action="store_true", help="print the curves as JSON")


def _register_runs(sub) -> None:
    """``editlab runs``: list the runs in the store, or export some."""
    r = sub.add_parser("runs", help="list the runs in the store, or export some")
    r.add_argument("--store", default=None)
    r.add_argument("--kind", default=None, help="only runs of this kind (sweep, bench, ...)")
    r.add_argument("--export", default=None, metavar="PATH", help="export to .csv/.parquet/.json")
    r.add_argument("--ids", default=None, help="comma-separated run ids (default: all listed)")
    r.set_defaults(handler=run_runs_cmd)


def ability_config(args):
    from editlab.measure.ability import TASKS, AbilityConfig

    base = {}
    if args.ability_config:
        base = read_yaml_mapping(args.ability_config, "ability settings")
    sources = dict(base.get("sources") or {})
    if args.ppl_corpus:
        sources["perplexity"] = args.ppl_corpus
    kw = {**base, "sources": sources, "online": not args.offline, "seed": args.seed}
    if args.ability_data:
        kw["data_dir"] = args.ability_data
    if args.ability_size is not None:
        kw.pop("sizes", None)
        cfg = AbilityConfig.scaled(args.ability_size, **{k: v for k, v in kw.items() if k != "prep"})
    else:
        cfg = AbilityConfig.from_dict(kw)
    if args.ability_sizes:
        sizes = dict(cfg.sizes)
        for item in args.ability_sizes.split(","):
            task, sep, n = item.partition("=")
            if not sep or task.strip() not in TASKS:
                raise ValueError(f"--ability-sizes {item!r}: expected TASK=N with TASK one of {', '.join(TASKS)}")
            sizes[task.strip()] = int(n)
        cfg = AbilityConfig(**{**cfg.__dict__, "sizes": sizes})
    return cfg


def sweep_config(args):
    """The SweepConfig these arguments describe (the tests build theirs the same way)."""
    from editlab.cli.edit import parse_sets
    from editlab.measure.muting import MutingProbe
    from editlab.runs.sweep import SweepConfig

    overrides = read_yaml_mapping(args.hparams) if args.hparams else {}
    overrides.update(parse_sets(args.set))

    return SweepConfig(
        method=args.method,
        dataset=args.dataset,
        counts=args.counts,
        batch_size=args.batch_size,
        hparams=overrides,
        seed=args.seed,
        ability=ability_config(args),
        muting=MutingProbe(max_new_tokens=args.muting_tokens),
        corpus=args.corpus,
        online=not args.offline,
    )


def run_sweep_cmd(args) -> int:
    from editlab.runs.store import RunStore
    from editlab.runs.sweep import cost_line, curves, run_sweep

    if args.export:
        from editlab.runs.store import export_target

        export_target(args.export, None)  # before any work: a bad path fails at once
    config = sweep_config(args)
    if config.batch_size > 1 and not methods.capabilities(config.method).batch:
        status(f"{config.method} writes the facts of a batch one after another (it has no joint batch update)")
    store = RunStore(args.store)
    handle = load(args)
    status(f"run store: {store.path}")
    last = {"line": ""}

    def progress(p):
        line = p.line()
        if line != last["line"]:
            print("\r" + line[:150].ljust(150), end="", file=sys.stderr, flush=True)
            last["line"] = line

    result = run_sweep(handle, config, store, progress=progress, resume=not args.no_resume)
    print(file=sys.stderr)
    if result.resumed_from is not None:
        status(
            f"resumed run {result.run_id} from its checkpoint at {result.resumed_from} edits"
            + ("" if result.replay_exact in (None, True) else " (replay was not bit-identical; see the run's note)")
        )
    df = curves(store, result.run_id)
    if args.export:
        path = store.export([result.run_id], args.export)
        status(f"exported to {path}")
    if args.json:
        print(df.to_json(orient="records"))
    else:
        print(f"run {result.run_id}: {args.method} on {handle.name}, {args.dataset}")
        print(render_curves(df))
        print(cost_line(df))
    return 0


def render_curves(df) -> str:
    """The curves as a plain-text table: one row per checkpoint."""
    cols = [("edits", "edits", "{:d}")]
    for k in ("ES", "PS", "NS", "PN", "RE", "FC"):
        cols.append((f"quality_all.{k}", k, "{:.2f}"))
    for c in df.columns:
        if c.startswith("ability."):
            name = c.split(".", 1)[1]
            cols.append((c, "ppl" if name == "perplexity" else name, "{:.1f}" if name == "perplexity" else "{:.2f}"))
    cols += [
        ("muting.empty_rate", "empty", "{:.2f}"),
        ("muting.repeat_rate", "repeat", "{:.2f}"),
        ("muting.ngram_entropy", "entropy", "{:.2f}"),
        ("seconds", "s", "{:.0f}"),
    ]
    cols = [c for c in cols if c[0] in df.columns]
    widths = [max(len(h), 6) for _, h, _ in cols]
    lines = ["  ".join(h.rjust(w) for (_, h, _), w in zip(cols, widths))]
    for _, row in df.iterrows():
        cells = []
        for (col, _, fmt), w in zip(cols, widths):
            v = row[col]
            try:
                cells.append((fmt.format(int(v)) if fmt == "{:d}" else fmt.format(float(v))).rjust(w))
            except (TypeError, ValueError):
                cells.append("-".rjust(w))
        lines.append("  ".join(cells))
    return "\n".join(lines)


def run_runs_cmd(args) -> int:
    from editlab.runs.store import RunStore

    if args.export:
        from editlab.runs.store import export_target

        export_target(args.export, None)
    store = RunStore(args.store)
    runs = store.runs(args.kind)
    if args.ids:
        wanted = {int(i) for i in args.ids.split(",") if i.strip()}
        runs = [r for r in runs if r.id in wanted]
    if args.export:
        path = store.export([r.id for r in runs], args.export)
        status(f"exported {len(runs)} run(s) to {path}")
        return 0
    print(f"run store: {store.path}")
    for r in runs:
        c = r.config
        print(
            f"#{r.id:<4} {r.kind:<7} {r.status:<11} {c.get('method') or '-':<10} {c.get('model') or '-':<24} "
            f"checkpoints: {r.n_checkpoints} (last step {r.last_step})" + (f"  note: {r.note}" if r.note else "")
        )
    return 0
