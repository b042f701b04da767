"""Every registered editing method on the default model: speed and edit quality.

    python benchmarks/methods.py [--n 20] [--methods rome,memit,...] [--mom2-tokens 20000]

For the first N CounterFact facts, each method (all of ``editlab.methods.available()`` unless
given) edits one fact at a time on an :class:`EditSession`; after each edit the probes are
measured and the edit is undone (independent edits). Prints per method: median seconds per edit
(statistics and context templates are cached by a warm-up edit first, as for a user's second
edit), efficacy ES (P(new) > P(true) on the prompt), paraphrase PS, neighbourhood NS, PN (the
new target still wins after the negated prompt) and rectified efficacy RE = ES − PN, plus the
unedited model's row.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cf import edit_measure_undo, load_facts, measured, statistics_args, summarise  # noqa: E402

from editlab import EditSession, load_model, methods  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--methods", default=",".join(methods.available()))
    statistics_args(ap)
    args = ap.parse_args()

    handle = load_model()
    facts = load_facts(args.n)
    warm = load_facts(1, start=args.n)[0]
    session = EditSession(handle, corpus=args.corpus)
    table = {"unedited": (summarise([measured(session, f, unedited=True) for f in facts]), None, "")}
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        mod = methods.get(name)
        hp = mod.HParams.for_model(handle)
        if hasattr(hp, "mom2_n_tokens"):
            hp.mom2_n_tokens = args.mom2_tokens
        try:
            session.edit(warm, name, hp)  # fills the statistics / template caches
            session.reset()
            rows, seconds = [], []
            for i, fact in enumerate(facts):
                row, sec = edit_measure_undo(session, fact, name, hp)
                rows.append(row)
                seconds.append(sec)
                print(f"  {name}: {i + 1}/{len(facts)} ({seconds[-1]:.1f} s)", end="\r", flush=True, file=sys.stderr)
            table[name] = (summarise(rows), statistics.median(seconds), "")
        except Exception as e:  # report the method that fails, keep benchmarking the others
            session.reset()
            traceback.print_exc()
            table[name] = (None, None, f"failed: {type(e).__name__}: {e}")
        print(f"  {name}: done", file=sys.stderr, flush=True)

    print(f"\nEditing methods on {handle.name} ({handle.device}), {len(facts)} CounterFact facts, one fact per edit, "
          f"mom2 tokens {args.mom2_tokens}")
    print(f"{'method':<11}{'s/edit':>8}{'ES':>7}{'PS':>7}{'NS':>7}{'PN':>7}{'RE=ES-PN':>10}{'P(new)':>8}{'P(new|neg)':>11}")
    for name, (s, sec, note) in table.items():
        if s is None:
            print(f"{name:<11}  {note}")
            continue
        sec_txt = "-" if sec is None else f"{sec:.1f}"
        print(f"{name:<11}{sec_txt:>8}{s['ES']:>7.2f}{s['PS']:>7.2f}{s['NS']:>7.2f}{s['PN']:>7.2f}{s['RE']:>10.2f}"
              f"{s['p_new_pos']:>8.3f}{s['p_new_neg']:>11.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
