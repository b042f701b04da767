"""What FT-L, FT-M, GRACE, KN and IKE report about their own edits, on the default model.

    python benchmarks/method_notes.py [--n 5] [--methods ft-l,ft-m,grace,kn,ike] [--batch ft-m]

For the first N CounterFact facts, each method edits one fact at a time from the unedited model
(an independent ``editlab.runs.experiments`` plan), and each method in ``--batch`` also writes all N as
one batch. It prints the unedited model's scores, then after each edit what the library measures
(ES, PS, NS, PN from ``editlab.measure.metrics``) and what the method's own record says: its check on the edit prompt
(``info["prompt_check"]``: did P(new) beat P(true)), the control prompts an edit took over
(``info["bleed"]``, FT and KN), and the plain ``note`` a report shows. These are the README's
notes on the methods beside the locate-then-edit family.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cf import load_facts  # noqa: E402

from editlab import EditSession, load_model  # noqa: E402
from editlab.measure import metrics  # noqa: E402
from editlab.runs import experiments  # noqa: E402

KINDS = ("positive", "paraphrase", "neighborhood", "negation")  # the probes ES, PS, NS and PN read


class RecordNotes:
    """The latest edit's own account: how many facts its prompt check passed, the control prompts
    its new answer took over, and its note (None where the method records none)."""

    name = "record"

    def __call__(self, at: experiments.At) -> dict:
        if not at.session.records:  # an independent plan: a failed edit leaves no record behind
            return {}
        info = at.session.records[-1].info
        checks = info.get("prompt_check") or []
        bleed = info.get("bleed")
        return {
            "checked": len(checks),
            "took": sum(c["success"] is True for c in checks),
            "hijacked": None if bleed is None else len(bleed["hijacked"]),
            "controls": None if bleed is None else bleed["prompts"],
            "note": info.get("note"),
        }


def scores_line(scores) -> str:
    agg = metrics.aggregate(scores)
    return "  ".join(f"{k} {agg[k]:.2f}" if agg[k] is not None else f"{k} –" for k in ("ES", "PS", "NS", "PN"))


def unedited(handle, facts) -> None:
    """The same scores on the unedited model (the engine's quality measure, nothing edited)."""
    per = experiments.measure_quality(EditSession(handle, online=False), facts, kinds=KINDS)
    print(f"\nunedited: {scores_line([scores for scores, _ in per])}  ({len(per)} facts scored)")


def run(handle, method: str, facts, batch_size: int) -> None:
    plan = experiments.Plan(tuple(facts), method, None, "independent", batch_size=batch_size, online=False)
    t0 = time.perf_counter()
    out = experiments.run(handle, plan, [experiments.Quality(scope="latest", kinds=KINDS), RecordNotes()])
    label = method if batch_size == 1 else f"{method}, one batch of {len(facts)}"
    scores = [s for m in out.measured for s in m.values["quality"]["scores"]]
    print(
        f"\n{label}: {scores_line(scores)}  ({len(scores)} facts scored, {len(out.failures)} failed edits, "
        f"{time.perf_counter() - t0:.0f} s)"
    )
    for f in out.failures:
        print(f"  failed edit of facts {f['indices']}: {f['error']}")
    for m in out.measured:
        rec = m.values["record"]
        if not rec:
            continue
        first = m.latest[0] + 1
        where = f"fact {first}" if len(m.latest) == 1 else f"facts {first}-{m.latest[-1] + 1}"
        bleed = "" if rec["hijacked"] is None else f"; control prompts taken over {rec['hijacked']}/{rec['controls']}"
        print(
            f"  {where}: prompt check {rec['took']}/{rec['checked']}{bleed}"
            + (f"; note: {rec['note']}" if rec["note"] else "")
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--methods", default="ft-l,ft-m,grace,kn,ike")
    ap.add_argument("--batch", default="ft-m", help="methods also run as one batch of all N facts")
    args = ap.parse_args()
    facts = load_facts(args.n)
    handle = load_model()
    print(
        f"# the methods' own notes, {handle.name} ({handle.device.type}), the first {len(facts)} CounterFact "
        f"facts, one fact per edit from the unedited model"
    )
    unedited(handle, facts)
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        run(handle, method, facts, 1)
    for method in [m.strip() for m in args.batch.split(",") if m.strip()]:
        run(handle, method, facts, len(facts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
