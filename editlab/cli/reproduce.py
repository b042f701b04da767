"""``editlab reproduce negation|factcheck|ablation|muting``: a paper's protocol on this model, written
as a self-contained HTML report plus JSON beside the published numbers."""

from __future__ import annotations

import os
from pathlib import Path

from editlab import methods
from editlab.cli.common import add_model_args, load, positive_int, progress_printer, status

# The shared data folder's layout (../shared/data in the repository's checkout; any folder alike).
LAYOUT = {
    "dataset": "editing/counterfact-edit.json",
    "zsre": "editing/zsre-1k.json",
    "heldout": "corpus/wikitext-2-valid.txt",
}


def register(sub) -> None:
    from editlab.runs.reproduce import PROTOCOLS

    p = sub.add_parser(
        "reproduce", help="reproduce a paper's finding on this model: HTML + JSON report beside the published numbers"
    )
    p.add_argument("protocol", choices=PROTOCOLS)
    add_model_args(p)
    p.add_argument(
        "--n",
        type=positive_int,
        default=10,
        help="facts (negation, factcheck, ablation) or sequential edits (muting); default 10",
    )
    p.add_argument("--out", required=True, help="folder for <protocol>.html and <protocol>.json")
    p.add_argument(
        "--method",
        default=None,
        help="editing method (default memit, the papers'); available: " + ", ".join(methods.available()),
    )
    p.add_argument(
        "--data",
        default=os.environ.get("EDITLAB_SHARED_DATA"),
        help="a folder laid out as editing/counterfact-edit.json, editing/zsre-1k.json, "
        "corpus/wikitext-2-valid.txt (default: $EDITLAB_SHARED_DATA)",
    )
    p.add_argument("--dataset", default=None, help="CounterFact file (overrides --data)")
    p.add_argument("--zsre", default=None, help="zsRE file for factcheck (overrides --data)")
    p.add_argument("--heldout", default=None, help="held-out text for muting's perplexity (overrides --data)")
    p.add_argument("--seed", type=int, default=0, help="subset and bootstrap seed (default 0)")
    p.add_argument("--batch-size", type=positive_int, default=1, help="muting: facts per edit call")
    p.add_argument("--checkpoints", default=None, help="muting: e.g. 1,10,100 (default: log scale up to --n)")
    p.add_argument(
        "--ability-items", type=int, default=0, help="muting: MMLU items per checkpoint via lm-eval (0: off)"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter; repeatable"
    )
    p.add_argument("--corpus", default=None, help="text corpus for second-moment statistics")
    p.add_argument("--offline", action="store_true", help="never download anything")
    p.add_argument(
        "--cdn", action="store_true", help="load plotly.js from its CDN instead of inlining it (smaller file)"
    )
    p.set_defaults(handler=run_reproduce_cmd)


def _path(args, name: str) -> str | None:
    given = getattr(args, name)
    if given:
        return given
    if args.data:
        p = Path(args.data) / LAYOUT[name]
        if p.exists():
            return str(p)
    return None


def run_reproduce_cmd(args) -> int:
    from editlab.cli.edit import parse_sets
    from editlab.runs.findings import report_folder, write_report
    from editlab.runs.reproduce import DEFAULT_METHOD, run

    report_folder(args.out, args.protocol)  # before any work: a bad --out fails at once
    method = (args.method or DEFAULT_METHOD[args.protocol]).lower()
    if method not in methods.available():
        raise ValueError(f"unknown editing method {method!r}; available: {', '.join(methods.available())}")
    kw = dict(
        dataset=_path(args, "dataset"),
        seed=args.seed,
        corpus=args.corpus,
        online=not args.offline,
        hparams=parse_sets(args.set) or None,
        progress=progress_printer(),
    )
    if kw["dataset"] is None and not (args.protocol == "factcheck" and _path(args, "zsre")):
        raise ValueError("no CounterFact file: give --dataset FILE or --data FOLDER (editing/counterfact-edit.json)")
    if args.protocol == "factcheck":
        kw["zsre"] = _path(args, "zsre")
    if args.protocol == "muting":
        from editlab.runs.sweep import parse_counts

        kw.update(
            heldout=_path(args, "heldout"),
            batch_size=args.batch_size,
            ability_items=args.ability_items,
            checkpoints=parse_counts(args.checkpoints) if args.checkpoints else None,
        )
        if args.ability_items and args.data:
            kw["ability_data"] = str(Path(args.data) / "bench")
    handle = load(args)
    status(f"reproduce {args.protocol}: {method}, n={args.n}")
    result = run(args.protocol, handle, args.n, method, **kw)
    html_path, json_path = write_report(result, args.out, "cdn" if args.cdn else True)
    print(result.table().to_string(index=False))
    for s in result.at_chance_sentences():
        print(s)
    print(f"cost: {result.cost.get('total_s')} s in all")
    status(f"wrote {html_path} and {json_path}")
    return 0
