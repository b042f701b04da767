"""Several visitors at once on the default Space: what each waits, what the line tells them.

    python benchmarks/visitors.py [--crowds 1,3,5] [--runs 2] [--json FILE]

For each crowd size N, a fresh `streamlit run serve.py` (the default model and its bundled
statistics, offline, as a Space serves it) is started; one visitor edits a warm-up fact (the
server's first edit, so the line has timed one), then N visitors, each in its own chromium
context, type N different held-out CounterFact facts and press "Edit with rome" together
(tests/browser/crowd.py). Printed per crowd: each visitor's seconds from Edit to its first verdict
(taken by the page; beside it, the same moment on the server's clock from the Edit page's
script start, and the edit's own seconds, as the page prints them) and to its full report, its
wait in the line, the estimates it was shown
against the wait that followed, and any error; then the median over ``--runs`` of the last
visitor's report, its ratio to a lone visitor's, and how many visitors had their report within
``--within`` seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._cf import git_commit, load_facts  # noqa: E402
from tests.browser.crowd import Server, chromium, visit_together  # noqa: E402


def one_crowd(p, facts, warm_fact) -> list:
    app = Server("serve.py")
    try:
        app.wait_healthy()
        visit_together(app.url, [warm_fact], p)  # the server's first edit: statistics read, one edit timed
        return visit_together(app.url, facts, p)
    finally:
        app.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crowds", default="1,3,5", help="visitor counts, comma-separated (default 1,3,5)")
    ap.add_argument("--runs", type=int, default=2, help="fresh servers per crowd size (default 2)")
    ap.add_argument("--within", type=float, default=60.0, help="seconds: how many visitors are served within this")
    ap.add_argument("--start", type=int, default=400, help="first CounterFact record used (held out from tests)")
    ap.add_argument("--json", default=None, help="also write every visit as JSON here")
    args = ap.parse_args()
    if chromium() is None:
        raise SystemExit("Debian chromium is needed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    crowds = [int(x) for x in args.crowds.split(",") if x.strip()]
    facts = load_facts(sum(n + 1 for n in crowds) * args.runs, start=args.start)  # each crowd: a warm-up fact and n
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "within_s": args.within,
        "crowds": {},
    }
    print(
        f"# visitors at once: `streamlit run serve.py`, default model, ROME; commit {out['commit']}, {out['machine']}"
    )
    with sync_playwright() as p:
        k = 0
        for n in crowds:
            rows = []
            for run in range(args.runs):
                warm, group = facts[k], facts[k + 1 : k + 1 + n]
                k += 1 + n
                visits = one_crowd(p, group, warm)
                rows.append(
                    [
                        {
                            "visitor": v.name,
                            "report_s": v.report_at,
                            "verdict_s": v.verdict_at,
                            "verdict_server_s": v.verdict_server,
                            "edit_server_s": v.edit_server,
                            "queued": v.queued_at is not None,
                            "places": sorted(set(v.places), reverse=True),
                            "turn_s": v.turn_at,
                            "estimates": v.estimates,
                            "estimate_errors": v.estimate_errors(),
                            "errors": v.errors,
                            "own_report": v.report_title.startswith(f"rome: {v.fact.prompt} → {v.fact.target_new}"),
                        }
                        for v in visits
                    ]
                )
                print(f"\n## {n} visitor(s), run {run + 1}")
                for r in sorted(rows[-1], key=lambda r: r["report_s"]):
                    est = ", ".join(f"{e:+.0%}" for e in r["estimate_errors"]) or "none shown"
                    print(
                        f"  {r['visitor']}: first verdict after "
                        + (f"{r['verdict_s']:.1f} s" if r["verdict_s"] is not None else "– (not seen)")
                        + (
                            f" (the server's own clock: {r['verdict_server_s']:.1f} s from its script's start)"
                            if r["verdict_server_s"] is not None
                            else ""
                        )
                        + f", report after {r['report_s']:.1f} s"
                        + (f" (the edit alone {r['edit_server_s']:.1f} s)" if r["edit_server_s"] is not None else "")
                        + "; "
                        + (
                            f"waited in line {r['turn_s']:.1f} s (places {r['places']}); first estimate's error {est}"
                            if r["queued"]
                            else "did not wait"
                        )
                        + ("" if r["own_report"] else "; REPORT NOT ITS OWN")
                        + (f"; ERRORS {r['errors']}" if r["errors"] else "")
                    )
            out["crowds"][n] = rows
    lone = (
        statistics.median(max(r["report_s"] for r in rows) for rows in out["crowds"].get(1, []))
        if 1 in out["crowds"]
        else None
    )
    print("\n## summary (median over runs)")
    for n, runs in out["crowds"].items():
        last = statistics.median(max(r["report_s"] for r in rows) for rows in runs)
        verdicts = [r["verdict_s"] for rows in runs for r in rows if r["verdict_s"] is not None]
        served = statistics.median(sum(r["report_s"] <= args.within for r in rows) for rows in runs)
        errs = [abs(e) for rows in runs for r in rows for e in r["estimate_errors"]]
        print(
            f"  {n} visitor(s): last report {last:.1f} s"
            + (f"; last first verdict {max(verdicts):.1f} s" if verdicts else "; no first verdict seen")
            + (f" ({last / lone:.2f}x a lone visitor's)" if lone else "")
            + f"; served within {args.within:.0f} s: {served:g} of {n}; errors shown: "
            f"{sum(len(r['errors']) for rows in runs for r in rows)}; reports not their own: "
            f"{sum(not r['own_report'] for rows in runs for r in rows)}"
            + (
                f"; estimate error median {statistics.median(errs):.0%}, max {max(errs):.0%} ({len(errs)} shown)"
                if errs
                else ""
            )
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
