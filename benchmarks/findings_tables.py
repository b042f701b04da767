"""Print the README's reproduced tables (markdown) from the JSON files `editlab reproduce` writes.

    python benchmarks/findings_tables.py reports/negation.json reports/factcheck.json ...

Each report is read back as an ``editlab.runs.reproduce.ReproResult`` and printed by its
``to_markdown()``: each measured number with its 95 % bootstrap interval and n, beside it the
published numbers that belong there (``editlab.runs.reproduce.applies``), the cost and any at-chance
sentence. Nothing is computed here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from editlab.runs.reproduce import ReproResult  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+")
    args = ap.parse_args(argv)
    for p in args.reports:
        print(ReproResult.from_json(Path(p).read_bytes(), p).to_markdown())
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
