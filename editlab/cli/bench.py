"""``editlab bench``: several methods on a dataset, every metric of both conventions, one protocol."""

from __future__ import annotations

import sys

from editlab import methods
from editlab.cli.common import (
    add_model_args,
    load,
    non_negative_float,
    positive_int,
    progress_printer,
    read_yaml_mapping,
    status,
)


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark editing methods on a dataset (both metric conventions + negation)")
    add_model_args(p)
    p.add_argument("--methods", default="rome", help="comma-separated; available: " + ", ".join(methods.available()))
    _data_arguments(p)
    _protocol_arguments(p)
    _hparams_arguments(p)
    _corpus_arguments(p)
    _output_arguments(p)
    p.set_defaults(handler=run_bench_cmd)


def _data_arguments(p) -> None:
    """The facts: the dataset, its format, and which of its records to edit."""
    p.add_argument(
        "--dataset", required=True, help="CounterFact / zsRE / KnowEdit JSON(L), or your own CSV/JSONL of facts"
    )
    p.add_argument(
        "--format",
        default=None,
        dest="dataset_format",
        help="counterfact, counterfact-rome, zsre, knowedit or facts (default: detected)",
    )
    p.add_argument("--skip-invalid", action="store_true", help="leave out bad records instead of stopping at the first")
    p.add_argument("--n", type=positive_int, default=20, help="number of facts (a seeded random subset; default 20)")
    p.add_argument("--seed", type=int, default=0, help="subset seed (default 0)")


def _protocol_arguments(p) -> None:
    """How the facts are edited and scored: independent or sequential, batches, negated edits, generation."""
    p.add_argument(
        "--mode",
        choices=["independent", "sequential"],
        default="independent",
        help="independent: every edit from the unedited model; sequential: edits accumulate",
    )
    p.add_argument(
        "--evaluate",
        choices=["after_each", "at_end"],
        default="after_each",
        help="sequential only: score each batch right after its edit, or all facts at the end (retention)",
    )
    p.add_argument("--batch-size", type=positive_int, default=1, help="facts per edit call (default 1)")
    p.add_argument(
        "--no-negative-edits", action="store_true", help="skip the negated edits (NP/NN stay empty; half the time)"
    )
    p.add_argument("--generation-tokens", type=positive_int, default=16, help="greedy tokens of the generation probe")


def _hparams_arguments(p) -> None:
    """The methods' hyperparameters: YAML files, single overrides, the negation weight."""
    p.add_argument(
        "--hparams",
        action="append",
        default=[],
        metavar="METHOD=FILE",
        help="a YAML file of one method's hyperparameters (EasyEdit keys accepted; repeatable)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="[METHOD.]KEY=VALUE",
        help="override a hyperparameter of one method (or of every method that has it); repeatable",
    )
    p.add_argument(
        "--negation-weight",
        type=non_negative_float,
        default=None,
        metavar="W",
        help="editlab's negation-aware objective for the methods that have it "
        f"({', '.join(methods.having('negation_objective'))}); same as --set METHOD.negation_weight=W "
        "for each of them",
    )


def _corpus_arguments(p) -> None:
    """The corpus of the second-moment statistics and whether it may be downloaded."""
    p.add_argument("--corpus", default=None, help="text corpus (.txt/.jsonl) for second-moment statistics")
    p.add_argument("--offline", action="store_true", help="never download a corpus")


def _output_arguments(p) -> None:
    """Where the run is stored and how the results are written out."""
    p.add_argument("--store", default=None, help="run store file (default: $EDITLAB_STORE or the editlab data folder)")
    p.add_argument("--no-store", action="store_true", help="do not record the run")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if an identical run is stored")
    p.add_argument(
        "--export", default=None, metavar="PATH", help="also write the results to PATH (.csv, .parquet or .json)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object (the table, config and protocol)")
    p.add_argument("--facts", action="store_true", help="with --json: include every fact's probes and scores")


def hparams_from_args(args, names: list[str]) -> dict[str, dict]:
    """{method: overrides} from --hparams METHOD=FILE and --set [METHOD.]KEY=VALUE."""
    from editlab.cli.edit import parse_sets

    out: dict[str, dict] = {}
    for item in args.hparams:
        method, sep, path = item.partition("=")
        method = method.strip().lower()
        if not sep or method not in names:
            raise ValueError(f"--hparams {item!r}: expected METHOD=FILE with METHOD one of {', '.join(names)}")
        data = read_yaml_mapping(path.strip())
        out.setdefault(method, {}).update(data)
    sets = list(args.set)
    if getattr(args, "negation_weight", None) is not None:
        having = [m for m in names if methods.capabilities(m).negation_objective]
        if not having:
            raise ValueError(
                f"--negation-weight: none of {', '.join(names)} has a negation-aware objective; "
                f"it is offered by {', '.join(methods.having('negation_objective'))}"
            )
        sets += [f"{m}.negation_weight={args.negation_weight}" for m in having]
    for key, value in parse_sets(sets).items():
        method, dot, name = key.partition(".")
        if dot and method.lower() in names:
            out.setdefault(method.lower(), {})[name] = value
        elif dot and method.lower() in methods.available():
            raise ValueError(f"--set {key}: {method} is not among --methods")
        else:
            hits = [m for m in names if methods.get(m).HParams.accepts(key)]
            if not hits:
                raise ValueError(f"--set {key}: none of {', '.join(names)} has a hyperparameter {key!r}")
            for m in hits:
                out.setdefault(m, {})[key] = value
    return out


def run_bench_cmd(args) -> int:
    from editlab.runs.bench import BenchConfig, run_bench
    from editlab.runs.store import export_target

    if args.export:
        export_target(args.export, None)  # before any work: a bad path fails at once
    names = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
    known = methods.available()
    unknown = [m for m in names if m not in known]
    if unknown:
        raise ValueError(
            f"unknown editing method{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(known)}"
        )
    config = BenchConfig(
        dataset=args.dataset,
        methods=tuple(names),
        n=args.n,
        seed=args.seed,
        dataset_format=args.dataset_format,
        skip_invalid=args.skip_invalid,
        mode=args.mode,
        batch_size=args.batch_size,
        evaluate=args.evaluate,
        negative_edits=not args.no_negative_edits,
        generation_tokens=args.generation_tokens,
        hparams=hparams_from_args(args, names),
        corpus=args.corpus,
        online=not args.offline,
    )
    config.validate()
    if config.batch_size > 1:
        serial = [m for m in names if not methods.capabilities(m).batch]
        if serial:
            status(f"{', '.join(serial)} write the facts of a batch one after another (no joint batch update)")
    from editlab.facts.datasets import load_dataset

    dataset = load_dataset(config.dataset, config.dataset_format, config.n, config.seed, config.skip_invalid)
    if dataset.skipped:
        status(f"left out {len(dataset.skipped)} invalid record(s), first: {dataset.skipped[0]}")
    handle = load(args)
    store = None
    if not args.no_store:
        from editlab.runs.store import RunStore

        store = RunStore(args.store)
        status(f"run store: {store.path}")
    status(f"benchmark: {', '.join(names) or '(unedited only)'} on {len(dataset)} facts; {config.protocol}")
    result = run_bench(
        handle, config, dataset=dataset, store=store, progress=progress_printer(), resume=not args.no_resume
    )
    if args.export:
        status(f"wrote {result.export(args.export)}")
    if args.json:
        print(result.to_json(facts=args.facts))
    else:
        print(result.to_markdown())
        if result.run_id is not None:
            print(f"\nrun #{result.run_id} in {store.path}", file=sys.stderr)
    return 0
