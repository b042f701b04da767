"""The page that sets the learned editors (MEND, SERAC) beside ROME on the same held-out facts, from
an ``editlab bench --export FILE.json`` run.

    editlab bench --methods rome,mend,serac --dataset ../shared/data/editing/counterfact-edit.json \\
        --n 50 --seed 0 --no-negative-edits --offline --export heldout-50.json
    python benchmarks/learned_page.py heldout-50.json --seconds 1234 --command "editlab bench ..." \\
        --json docs/results/learned.json --out docs/results/learned.md

The bench's seeded subset (``--n`` up to 1,000 at seed 0) is one of the ranges the shipped MEND
editor and SERAC classifier were trained clear of (``editlab.methods.records``), so every fact here
is held out from both. ``--json`` stores the export with its provenance (date, commit, machine, the
command, wall time) added; the page is rendered from that stored file, and ``--render FILE`` renders
it again without the export.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cf import git_commit  # noqa: E402

COLUMNS = (  # (metric key, header)
    ("ES", "ES"),
    ("PS", "PS"),
    ("NS", "NS"),
    ("rewrite_acc", "rewrite acc."),
    ("rephrase_acc", "rephrase acc."),
    ("locality", "locality"),
    ("PN", "PN (not)"),
    ("PN_contraction", "PN (isn't)"),
    ("PN_gen", "PN_gen"),
    ("FC", "FC"),
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", nargs="?", help="the JSON `editlab bench --export` wrote")
    ap.add_argument("--render", default=None, help="a stored page JSON to render again")
    ap.add_argument("--seconds", type=float, default=None, help="the bench's wall time")
    ap.add_argument("--command", default="", help="the bench command that was run")
    ap.add_argument("--commit", default=None, help="the commit the bench ran at (default: the checkout's)")
    ap.add_argument("--note", default="", help="a sentence on how the run was made (e.g. what else ran)")
    ap.add_argument("--json", default="docs/results/learned.json")
    ap.add_argument("--out", default="docs/results/learned.md")
    args = ap.parse_args(argv)
    if args.render:
        doc = json.loads(Path(args.render).read_text())
    elif args.export:
        doc = json.loads(Path(args.export).read_text())
        doc["provenance"] = {
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "commit": args.commit or git_commit(),
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, no GPU",
            "command": args.command,
            "seconds": args.seconds,
            "note": args.note,
        }
        for row in doc["rows"]:
            row.pop("facts", None)  # the per-fact probes stay in the export; the page needs the rows
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    else:
        raise SystemExit("give the bench export, or --render a stored page JSON")
    Path(args.out).write_text(render(doc))
    print(f"wrote {args.out}")
    return 0


def _cell(v) -> str:
    return "–" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)


def render(doc: dict) -> str:
    p, cfg = doc["provenance"], doc["config"]
    lines = [
        "# MEND and SERAC beside ROME on the same held-out facts",
        "",
        f"`editlab bench` on {cfg.get('n')} CounterFact facts (seeded subset, seed {cfg.get('seed')}), each edited "
        "alone from the unedited default model (SmolLM2-135M-Instruct), every method on the same facts and probes. "
        "None of these facts was seen by the shipped MEND editor or SERAC classifier in training (they were "
        "trained on records chosen clear of every seed-0 subset up to 1,000: `editlab.methods.records`). "
        f"Run on {p['date']}, commit {p['commit']}, {p['machine']}; {p['seconds']:.0f} s in all. "
        "Metric definitions: [../metrics.md](../metrics.md)." + (f" {p['note']}" if p.get("note") else ""),
        "",
        "```",
        p["command"],
        "```",
        "",
        "| method | " + " | ".join(h for _, h in COLUMNS) + " | n | failed | s/edit |",
        "|---|" + "---:|" * (len(COLUMNS) + 3),
    ]
    for row in doc["rows"]:
        m = row["metrics"]
        cells = [_cell(m.get(k)) for k, _ in COLUMNS]
        cells += [str(m.get("n", "")), str(row["failed"]), _cell(row["timings"].get("seconds_per_edit"))]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
    notes = [f"- `{row['method']}`: {n}" for row in doc["rows"] for n in dict.fromkeys(row.get("notes") or [])]
    if notes:
        lines += ["", "The methods' own notes on this run:", "", *notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
