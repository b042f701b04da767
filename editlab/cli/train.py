"""``editlab train mend|serac``: train a method's learned component for a model (MEND's editor network,
SERAC's scope classifier), score it on held-out facts, save it.

    editlab train mend --data counterfact-edit.json                          # the embedded default model
    editlab train mend --model ./my-model --data counterfact-edit.json --steps 400 --out editors/
    editlab train serac --data counterfact-edit.json                         # 800 steps, about 10 min on 2 cores

The component is written as ``<model>.safetensors`` with its provenance beside it (``<model>.json``:
the records used, steps, seed, hyperparameters, time, versions, commit, held-out scores). Without
``--out`` it goes to the cache root's ``mend`` / ``serac`` folder, where an edit with ``--method mend``
/ ``serac`` finds it by the model's fingerprint; from elsewhere give it to an edit as
``--set archive=PATH``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from editlab.cli.common import add_model_args, load, positive_float, positive_int, read_yaml_mapping, status

DEFAULT_STEPS = {"mend": 273, "serac": 800}  # what the shipped editor / classifier were trained with
MEND_ONLY = ("layers", "max_minutes", "dev")  # options SERAC's training has no use for


def parse_range(text: str) -> tuple[int, int]:
    """ "1000-4600" -> (1000, 4600): positions first..last-1 of the dataset file, 0-based."""
    a, dash, b = text.partition("-")
    try:
        lo, hi = int(a), int(b)
    except ValueError:
        raise ValueError(f"{text!r} is not a range of record positions; write e.g. 1000-4600") from None
    if not dash or lo < 0 or hi <= lo:
        raise ValueError(f"{text!r}: write first-end with 0 <= first < end, e.g. 1000-4600")
    return lo, hi


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a method's learned component for a model (MEND's editor network, SERAC's scope classifier)",
    )
    p.add_argument("method", choices=["mend", "serac"], help="the method to train for")
    add_model_args(p)
    p.add_argument(
        "--data",
        required=True,
        help="an editing dataset with paraphrases and neighbours (CounterFact: EasyEdit's counterfact-edit.json)",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="optimiser steps (default: the shipped component's, mend "
        f"{DEFAULT_STEPS['mend']}, serac {DEFAULT_STEPS['serac']})",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FOLDER",
        help="where to write <model>.safetensors and .json (default: the cache root's mend / serac folder, "
        "where edits find it)",
    )
    p.add_argument(
        "--hparams",
        default=None,
        help="a YAML file of training hyperparameters (EasyEdit's hparams/TRAINING/MEND and SERAC keys accepted)",
    )
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one (repeatable)")
    p.add_argument("--layers", default=None, help="mend: layers to edit, e.g. 27,28,29 (default: the last three)")
    p.add_argument("--max-minutes", type=positive_float, default=None, help="mend: stop training after this long")
    p.add_argument(
        "--heldout",
        type=positive_int,
        default=None,
        help="held-out facts to score (default: mend 100; serac its heldout_edits, 50)",
    )
    p.add_argument(
        "--train-range",
        default=None,
        help="record positions to train on, e.g. 1000-4600 (0-based, end "
        "excluded; evaluation ranges are always left out)",
    )
    p.add_argument("--dev-range", default=None, help="positions for the development scores logged while training")
    p.add_argument("--heldout-range", default=None, help="positions of the held-out facts")
    p.add_argument(
        "--dev", type=int, default=0, metavar="N", help="mend: score N development facts every few hundred steps"
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument("--note", default="", help="a sentence for the provenance, shown with every edit's report")
    p.add_argument("--json", action="store_true", help="print the provenance as one JSON object")
    p.set_defaults(handler=run)


def run(args) -> int:
    import torch

    from editlab.facts.datasets import load_dataset

    if args.method == "serac":
        given = [f"--{k.replace('_', '-')}" for k in MEND_ONLY if getattr(args, k)]
        if given:
            raise ValueError(f"{', '.join(given)}: MEND's training options; SERAC's training takes none of them")
    ranges = _ranges(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_path = Path(args.data)
    dataset = load_dataset(str(data_path), n=None)
    handle = load(args)
    return (_run_serac if args.method == "serac" else _run_mend)(args, handle, dataset, data_path, ranges)


def _run_serac(args, handle, dataset, data_path: Path, ranges: dict) -> int:
    """Train SERAC's scope classifier, score it, write it and its provenance."""
    from editlab.methods import serac, serac_train

    steps = args.steps or DEFAULT_STEPS["serac"]
    extra = {"heldout_edits": args.heldout} if args.heldout is not None else {}
    hp = _hparams(args, handle, serac_train.TrainHParams, extra)
    status(
        f"training SERAC's scope classifier for {handle.name} on up to {hp.max_records:,} records of "
        f"{data_path.name} ({steps} steps of {hp.batch_size} edits, layer {hp.layer}; {serac.TRAIN_COST_HINT})"
    )

    def show(done, total, line):
        status(f"  {done}/{total}: {line}")

    out_dir = Path(args.out) if args.out else serac.user_dir()
    prov = serac_train.train(handle, dataset, hp, steps, out_dir, progress=show, ranges=ranges)
    path = out_dir / f"{serac.file_stem(handle.name)}.safetensors"
    prov["command"] = _command(args, data_path, steps)
    prov["note"] = args.note
    path.with_suffix(".json").write_text(json.dumps(prov, indent=1) + "\n")
    status(f"trained in {prov['train_seconds']:.0f} s; " + _serac_scores(prov))
    status(f"classifier written: {path} and {path.with_suffix('.json').name}")
    print(json.dumps(prov) if args.json else path)
    return 0


def _serac_scores(prov: dict) -> str:
    """One line of the held-out scope and edit scores in a SERAC provenance."""
    scope, edits = prov.get("heldout_scope") or {}, prov.get("heldout_edits") or {}
    parts = [f"{k} {v['rate']:.2f}" for k, v in scope.items() if isinstance(v, dict) and "rate" in v]
    after, before = edits.get("edited") or {}, edits.get("unedited") or {}
    parts += [f"{k} {v:.2f} (unedited {before.get(k, float('nan')):.2f})" for k, v in after.items() if v is not None]
    return "held-out: " + ", ".join(parts) if parts else "no held-out scores (no held-out records)"


def _run_mend(args, handle, dataset, data_path: Path, ranges: dict) -> int:
    """Train MEND's editor, score it on held-out facts, write it and its provenance."""
    from editlab.methods import mend, mend_train

    args.steps = args.steps or DEFAULT_STEPS["mend"]
    args.heldout = 100 if args.heldout is None else args.heldout
    hp = _hparams(args, handle, mend_train.TrainHParams)
    split = mend_train.split(len(dataset), **ranges)
    train_facts = [dataset.facts[i] for i in split.train]
    dev = [dataset.facts[i] for i in split.dev[: args.dev]]
    status(
        f"training MEND for {handle.name} on {len(train_facts):,} records of {data_path.name} "
        f"({args.steps} steps of {hp.edits_per_step} edits, layers {list(hp.layers)})"
    )

    def show(done, total, line):
        status(f"  step {done}/{total}: {line}")

    max_seconds = args.max_minutes * 60 if args.max_minutes else None
    result = mend_train.train(
        handle,
        train_facts,
        hp,
        args.steps,
        max_seconds=max_seconds,
        progress=show,
        evaluate_every=200 if dev else 0,
        dev=dev,
    )
    status(f"trained: {result.steps} steps in {result.seconds:.0f} s (stopped by {result.stopped})")
    heldout = _heldout(handle, result, dataset, split.heldout[: args.heldout])
    out_dir = Path(args.out) if args.out else mend.user_dir()
    path = mend_train.write_editor(
        result,
        handle,
        hp,
        out_dir / f"{mend.file_stem(handle.name)}.safetensors",
        data=_data_record(data_path, dataset, split),
        heldout=heldout,
        command=_command(args, data_path, result.steps),
        note=args.note,
    )
    status(f"editor written: {path} ({path.stat().st_size / 2**20:.1f} MB) and {path.with_suffix('.json').name}")
    if args.json:
        print(json.dumps(mend.provenance(path)))
    else:
        print(path)
    return 0


def _hparams(args, handle, cls, extra: dict | None = None):
    """The training hyperparameters: the model's defaults, a YAML file, --set and --layers (and
    ``extra``, values other options give; checked like the rest)."""
    from editlab.cli.edit import parse_sets

    values = dict(read_yaml_mapping(args.hparams)) if args.hparams else {}
    values.update(parse_sets(args.set))
    values.update(extra or {})
    if args.layers:
        values["layers"] = [int(x) for x in args.layers.split(",")]
    hp, report = cls.from_dict(values, handle)
    for line in report.lines():
        status(f"hyperparameters: {line}")
    return hp


def _ranges(args) -> dict:
    """The record ranges given on the command line, parsed."""
    given = (("train_range", args.train_range), ("dev_range", args.dev_range), ("heldout_range", args.heldout_range))
    return {k: parse_range(v) for k, v in given if v}


def _heldout(handle, result, dataset, positions) -> dict | None:
    """The trained editor's scores on the held-out facts, each edited alone, or None without any."""
    from editlab.methods import mend_train

    if not positions:
        return None
    status(f"scoring {len(positions)} held-out facts (each edited alone, then restored) ...")
    heldout = mend_train.evaluate(handle, result.editor, [dataset.facts[i] for i in positions])
    heldout["positions"] = mend_train.runs(positions)
    status(mend_train.describe_heldout(heldout))
    return heldout


def _data_record(data_path: Path, dataset, split) -> dict:
    """What the provenance says about the data: the file, its digest, the split and what was left out."""
    from editlab.methods import records, trained

    return {
        "file": data_path.name,
        "sha256": trained.file_sha256(data_path),
        "records": len(dataset),
        "format": dataset.format,
        "split": split.describe(),
        "left_out": records.left_out(split),
    }


def _command(args, data_path: Path, steps: int) -> str:
    """The command that reproduces this editor: the steps actually taken, no time limit."""
    parts = ["editlab", "train", args.method, "--model", args.model, "--data", data_path.name, "--steps", str(steps)]
    for flag in ("hparams", "layers", "train_range", "dev_range", "heldout_range", "threads"):
        value = getattr(args, flag)
        if value:
            parts += ["--" + flag.replace("_", "-"), str(value)]
    parts += [x for item in args.set for x in ("--set", item)]
    parts += ["--heldout", str(args.heldout)] if args.heldout is not None else []
    parts += ["--dev", str(args.dev)] if args.dev else []
    parts += ["--out", args.out] if args.out else []
    return " ".join(shlex.quote(p) for p in parts)
