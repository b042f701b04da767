"""Print the README's reproduced tables (markdown) from the JSON files `editlab reproduce` writes.

    python benchmarks/findings_tables.py reports/negation.json reports/factcheck.json ...

One table per report: each measured number with its 95 % bootstrap interval and n, and beside it
the published numbers that belong there (same metric, an edited model, the same dataset:
``editlab.reproduce.applies``), then the cost and any at-chance sentence. Nothing is computed here;
muting reports print one row per signal with its value at each checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _num(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def table(doc: dict) -> str:
    from editlab.reproduce import Estimate, Reference, applies

    refs = [Reference(**r) for r in doc["published"]]
    fields = set(Estimate.__dataclass_fields__)
    ests = [Estimate(**{k: v for k, v in e.items() if k in fields}) for e in doc["estimates"]]
    head = (f"**{doc['protocol']}** — {doc['method']} on {doc['model']}, n = {doc['n']} "
            f"({'sequential edits' if doc['protocol'] == 'muting' else 'facts'}); {doc['interval']}; "
            f"cost {doc['cost'].get('total_s')} s in all"
            + (f", {doc['cost']['seconds_per_edit']:.1f} s per edit" if doc["cost"].get("seconds_per_edit") else ""))
    lines = [head, ""]
    if doc["protocol"] == "muting":
        steps = sorted({e.edits for e in ests if e.edits is not None})
        keys = list(dict.fromkeys(e.key for e in ests))
        lines += ["| signal | " + " | ".join(f"{s} edits" for s in steps) + " |",
                  "|---|" + "---:|" * len(steps)]
        for k in keys:
            by = {e.edits: e for e in ests if e.key == k}
            label = next(e.label for e in ests if e.key == k)
            cells = [(f"{by[s].value:.3g} [{by[s].low:.3g}, {by[s].high:.3g}]" if s in by and by[s].value is not None
                      else "–") for s in steps]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    else:
        lines += ["| group | metric | measured | 95 % interval | n | published (model, method, dataset) |",
                  "|---|---|---:|---|---:|---|"]
        for e in ests:
            pub = "; ".join(f"{r.value:g} ({r.model}, {r.method}, {r.dataset})" for r in refs if applies(r, e))
            lines.append(f"| {e.group} | {e.label} | {_num(e.value)} | {_num(e.low)}–{_num(e.high)} | {e.n} | {pub or ''} |")
    for s in doc.get("at_chance", []):
        lines += ["", f"_{s}_"]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    args = ap.parse_args(argv)
    for p in args.reports:
        print(table(json.loads(Path(p).read_text())))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
