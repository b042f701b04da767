"""Draft editlab/data/negation_templates.json from CounterFact's prompt templates with editlab.facts.negation's rules.

    python scripts/draft_negation_table.py ../shared/data/editing/counterfact-edit.json

Templates are ``prompt.replace(subject, "{}")``; each row gets the four forms of the rules (applied to the
template with "{}" as its subject) and ``"source": "rule"``. Rows already marked ``"source": "hand"`` in the
existing table are kept as they are: the hand review is not overwritten. Only templates are written, never
a record's subject or targets.
"""

from __future__ import annotations

import collections
import json
import sys

from editlab.facts.negation import FORMS, TABLE, negate_by_rules


def draft(records: list[dict], reviewed: dict[str, dict]) -> list[dict]:
    counts = collections.Counter(r["prompt"].replace(r["subject"], "{}") for r in records)
    rows = []
    for template in sorted(counts):
        if reviewed.get(template, {}).get("source") == "hand":
            rows.append({**reviewed[template], "records": counts[template]})
            continue
        row = {"template": template, "records": counts[template]}
        row.update({form: negate_by_rules(template, "{}", form)[0] for form in FORMS})
        rows.append({**row, "source": "rule"})
    return rows


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        records = json.load(f)
    table = json.loads(TABLE.read_text(encoding="utf-8")) if TABLE.exists() else {"provenance": {}}
    reviewed = {row["template"]: row for row in table.get("templates", [])}
    table["templates"] = draft(records, reviewed)
    TABLE.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(table['templates'])} templates -> {TABLE}")


if __name__ == "__main__":
    main(sys.argv[1])
