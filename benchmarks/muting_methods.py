"""The muting effect, method beside method, in one command: sequential edits with every method of the
"Should We Really Edit Language Models?" comparison (ROME, MEMIT, PMET, MEND, KN, GRACE) and SERAC
and AlphaEdit, each checkpoint measured by ``editlab reproduce muting`` (perplexity and next-token
accuracy on held-out WikiText, empty / repeated outputs and n-gram entropy of fixed generations,
simple facts retained, efficacy over the edits so far, MMLU with its chance line when asked).

    python benchmarks/muting_methods.py --out reports/muting-methods                  # 100 edits each
    python benchmarks/muting_methods.py --out reports/muting-methods --batched-n 1000 # + batches to 1,000
    python benchmarks/muting_methods.py --out reports/muting-methods --render-only \\
        --doc docs/results/muting-methods.md --figure assets/muting-methods.png

Every method edits the first ``--n`` CounterFact facts one at a time, each from where the previous
edit left the model (the sweep engine, :func:`editlab.runs.reproduce.muting`); with ``--batched-n``
the methods that write a batch jointly (MEMIT, PMET, AlphaEdit) also edit the first ``--batched-n``
facts in batches of ``--batch-size``. Each run's report is written as ``<method>.json`` (or
``<method>-b<size>.json``) in ``--out`` as soon as it ends, and a run whose report is there is not
run again: the command resumes after an interruption method by method. Then the figure (one panel per
signal, every method overlaid, 95 % bootstrap whiskers) and a Markdown page (a table per signal,
methods × checkpoints, the report's date, commit and machine) are written from the stored reports;
``--render-only`` only does that. Nothing is computed while rendering: every number is an estimate
in a report. ``--add-report PATH@WHERE`` draws a report made elsewhere by the same protocol beside
them (e.g. a GPU run of ``editlab reproduce muting``), marked as such with WHERE as its provenance.

MEND and SERAC use the trained components shipped for the default model (trained on CounterFact
records clear of the first 1,000, so none of the edited facts was seen in training).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cf import COUNTERFACT, SHARED, git_commit  # noqa: E402

PAPER_METHODS = ("rome", "memit", "pmet", "mend", "kn", "grace")
METHODS = (*PAPER_METHODS, "serac", "alphaedit")
SIGNALS = (  # (estimate key, row label, digits)
    ("perplexity", "perplexity (held-out WikiText)", 1),
    ("next_token_acc", "next-token accuracy", 3),
    ("retention", "simple facts still right", 2),
    ("ES", "efficacy over the edits so far", 2),
    ("empty_rate", "empty outputs", 2),
    ("repeat_rate", "repeated tokens", 2),
    ("ngram_entropy", "n-gram entropy (bits)", 2),
    ("mmlu", "MMLU accuracy", 2),
)
PAPER = (
    "The study's finding (Li et al., 2024, abstract): existing editing methods keep a model's general "
    "abilities only within a few dozen sequential edits; with more, the model's knowledge structure is "
    "disrupted or destroyed (on Llama-2-7B with ROME, MMLU 0.459 unedited, 0.270 after 50 edits, about 0 "
    "after 100; editlab's reference table). Its per-method curves are not transcribed here."
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="reports/muting-methods", help="folder of the per-method reports")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated (default {','.join(METHODS)})")
    ap.add_argument("--n", type=int, default=100, help="sequential edits, one fact at a time (default 100)")
    ap.add_argument("--batched-n", type=int, default=0, help="also edit this many facts in batches (0: no)")
    ap.add_argument("--batch-size", type=int, default=100, help="facts per batch for --batched-n (default 100)")
    ap.add_argument("--checkpoints", default=None, help="e.g. 1,10,100 (default: log scale up to --n)")
    ap.add_argument("--ability-items", type=int, default=0, help="MMLU items per checkpoint (0: off)")
    ap.add_argument("--data", default=str(SHARED), help="the shared data folder (CounterFact, WikiText-2, bench)")
    ap.add_argument("--render-only", action="store_true", help="draw and write the page from stored reports")
    ap.add_argument("--doc", default=None, help="the Markdown page (default: <out>/muting-methods.md)")
    ap.add_argument("--figure", default=None, help="the figure (default: <out>/muting-methods.png)")
    ap.add_argument("--note", default="", help="a sentence for the page on how the runs were made")
    ap.add_argument(
        "--add-report",
        action="append",
        default=[],
        metavar="PATH@WHERE",
        help="also draw a muting report made elsewhere by the same protocol (`editlab reproduce muting`), "
        "e.g. on a GPU; WHERE (machine, date, commit) is printed beside it (repeatable)",
    )
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = plan(args)
    if not args.render_only:
        run_all(args, runs, out)
    stored = [out / f"{name}.json" for name, _, _, _ in runs if (out / f"{name}.json").exists()]
    added = [added_report(spec) for spec in args.add_report]
    if not stored and not added:
        raise SystemExit(f"no report in {out} yet: run without --render-only")
    figure = Path(args.figure or out / "muting-methods.png")
    doc = Path(args.doc or out / "muting-methods.md")
    import muting_figure

    marks = [f"--suffix={path}= ‡ {doc_['provenance']['machine'].split(',')[0]}" for path, doc_ in added]
    muting_figure.main([*map(str, stored), *(str(path) for path, _ in added), *marks, "--out", str(figure)])
    missing = [name for name, _, _, _ in runs if not (out / f"{name}.json").exists()]
    docs = [json.loads(p.read_text()) for p in stored] + [doc_ for _, doc_ in added]
    doc.write_text(render(docs, figure, doc, missing, args))
    print(f"wrote {doc}")
    return 0


def plan(args) -> list[tuple[str, str, int, int]]:
    """(report name, method, edits, batch size) for every run asked for."""
    from editlab.methods import capabilities

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    runs = [(m, m, args.n, 1) for m in methods]
    if args.batched_n:
        runs += [(f"{m}-b{args.batch_size}", m, args.batched_n, args.batch_size) for m in methods]
        runs = [r for r in runs if r[3] == 1 or capabilities(r[1]).batch]
    return runs


def run_all(args, runs, out: Path) -> None:
    """Run every report not stored yet, one after another on one loaded model."""
    from editlab import load_model
    from editlab.runs import reproduce

    todo = [r for r in runs if not (out / f"{r[0]}.json").exists()]
    if not todo:
        return
    for key in ("EDITLAB_MAX_EDITS", "EDITLAB_MAX_FACTS", "EDITLAB_MAX_RUN_SECONDS"):
        os.environ.setdefault(key, "off")  # a study's scale: the operator limits are for the app
    commit = git_commit()  # the code this process runs: the checkout as it was when the command started
    handle = load_model("smollm2-135m-instruct")
    data = Path(args.data)
    checkpoints = [int(x) for x in args.checkpoints.split(",")] if args.checkpoints else None
    for name, method, n, batch in todo:
        t0 = time.perf_counter()
        print(f"{name}: {n} sequential edits" + (f" in batches of {batch}" if batch > 1 else ""), flush=True)
        result = reproduce.run(
            "muting",
            handle,
            n,
            method,
            dataset=str(COUNTERFACT),
            heldout=str(heldout_text(data)),
            batch_size=batch,
            checkpoints=[c for c in checkpoints if c <= n] if checkpoints else None,
            ability_items=args.ability_items,
            ability_data=str(data / "bench") if args.ability_items else None,
            online=False,
            progress=lambda done, total, stage: print(f"  checkpoint {done}/{total}: {stage}", flush=True),
        )
        doc = result.to_dict()
        doc["provenance"] = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores; {doc['cost'].get('machine')}",
            "command": "python benchmarks/muting_methods.py " + " ".join(sys.argv[1:]),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(f"{name}: done in {doc['provenance']['seconds']:.0f} s", flush=True)


def added_report(spec: str) -> tuple[Path, dict]:
    """``PATH@WHERE`` (or ``PATH``): a muting report made elsewhere, its provenance taken from WHERE."""
    path_s, _, where = spec.partition("@")
    path = Path(path_s)
    if not path.is_file():
        raise SystemExit(f"--add-report: no file {path}")
    doc = json.loads(path.read_text())
    if doc.get("protocol") != "muting":
        raise SystemExit(f"--add-report: {path} is not a muting report (protocol {doc.get('protocol')!r})")
    doc.setdefault("provenance", {})
    doc["provenance"].setdefault("machine", where.strip() or "not recorded in the report")
    doc["provenance"].setdefault("command", f"editlab reproduce muting (report {path})")
    doc["provenance"].setdefault("seconds", (doc.get("cost") or {}).get("total_s", "–"))
    doc["provenance"]["added"] = str(path)
    return path, doc


def heldout_text(data: Path) -> Path:
    """WikiText-2 validation where the data folder has it, else WikiText-2 test (the report names which)."""
    valid = data / "corpus" / "wikitext-2-valid.txt"
    return valid if valid.exists() else data / "corpus" / "wikitext-2-test.txt"


def _value(doc: dict, key: str, edits: int) -> str:
    for e in doc["estimates"]:
        if e["key"] == key and e.get("edits") == edits and e["value"] is not None:
            if abs(e["value"]) >= 1e5:  # a collapsed model's perplexity
                return f"{e['value']:.2g}"
            return f"{e['value']:.{dict((k, d) for k, _, d in SIGNALS)[key]}f}"
    return "–"


def _label(doc: dict) -> str:
    bs = doc["config"].get("batch_size", 1)
    added = doc.get("provenance", {}).get("added")
    return f"`{doc['method']}`" + (f" (batches of {bs})" if bs > 1 else "") + (" ‡" if added else "")


def render(docs: list[dict], figure: Path, page: Path, missing: list[str], args) -> str:
    """The Markdown page: provenance, the figure, one table per signal (methods × checkpoints)."""
    steps = sorted({e["edits"] for d in docs for e in d["estimates"] if e.get("edits") is not None})
    lines = [
        "# The muting effect, method beside method",
        "",
        "Made by `python benchmarks/muting_methods.py` (the command in each row below) on the default model,",
        "SmolLM2-135M-Instruct, from the reports it stored; every figure is an estimate in one of them. How the",
        "signals are measured: [../reproduce.md](../reproduce.md) (muting).",
        "",
        PAPER,
        "",
        "| run | edits | date | commit | machine | seconds | cost per edit |",
        "|---|---:|---|---|---|---:|---:|",
    ]
    for d in docs:
        p = d.get("provenance", {})
        per_edit = (d.get("cost") or {}).get("seconds_per_edit")
        lines.append(
            f"| {_label(d)} | {d['n']} | {p.get('date', '–')} | {p.get('commit', '–')} | {p.get('machine', '–')} "
            f"| {p.get('seconds', '–')} | {per_edit if per_edit is not None else '–'} s |"
        )
    notes = dict.fromkeys(d.get("provenance", {}).get("note") for d in docs if d.get("provenance", {}).get("note"))
    lines += [""] + [f"Note: {n}." for n in notes] if notes else []
    if args.note:
        lines += ["", args.note]
    added = [d["provenance"]["added"] for d in docs if d.get("provenance", {}).get("added")]
    if added:
        lines += ["", f"‡ drawn from a report made elsewhere by the same protocol: {', '.join(added)}."]
    if missing:
        lines += ["", f"Not run yet (no stored report): {', '.join(missing)}."]
    rel = os.path.relpath(figure, page.parent)
    lines += ["", f"![sequential edits by method on SmolLM2-135M-Instruct]({rel})", ""]
    for key, label, _ in SIGNALS:
        if not any(e["key"] == key for d in docs for e in d["estimates"]):
            continue
        lines += [f"**{label}**", "", "| method | " + " | ".join(f"{s}" for s in steps) + " |"]
        lines.append("|---|" + "---:|" * len(steps))
        for d in docs:
            lines.append(f"| {_label(d)} | " + " | ".join(_value(d, key, s) for s in steps) + " |")
        lines.append("")
    lines += ["**What the model says at the last checkpoint** (the first fixed generation prompt, greedy)", ""]
    lines += ["| method | edits | prompt | continuation |", "|---|---:|---|---|"]
    for d in docs:
        generations = (d.get("samples") or {}).get("generations") or {"0": []}
        last = max(generations, key=int)
        for sample in generations[last][:1]:
            text = " ".join(sample["text"].split())[:100].replace("|", "\\|")
            lines.append(f"| {_label(d)} | {last} | {sample['prompt']} | {text} |")
    lines.append("")
    chance = [s for d in docs for s in d.get("at_chance", [])]
    if chance:
        lines += ["At chance: " + " ".join(dict.fromkeys(chance)), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
