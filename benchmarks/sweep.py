"""Sequential-edit sweeps of ROME and KN on the default model: do they mute?

Edits the first CounterFact facts one after another and, at 1, 2, 5, 10, 20 and 50 edits, records
edit quality over all edits so far, general ability on small fixed subsets and the muting indicators
(see editlab.runs.sweep). Prints the curves as tables and draws them into an image for the README.

    python benchmarks/sweep.py                        # ROME and KN to 50 edits (hours on 2 CPU cores)
    python benchmarks/sweep.py --methods rome --counts 1,2,5 --ability-size 3   # a quick look

Runs are kept in a run store (default artifacts/sweep-bench.sqlite): killed and started again, the
script resumes each sweep from its last checkpoint. Needs ../shared/data (CounterFact, the benchmark
subsets, WikiText-2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="rome,kn")
    p.add_argument("--counts", default="1,2,5,10,20,50")
    p.add_argument("--dataset", default=str(SHARED / "editing" / "counterfact-edit.json"))
    p.add_argument("--ability-size", type=int, default=6, help="items per ability task (GSM8K, perplexity: fewer)")
    p.add_argument("--mom2-tokens", type=int, default=20_000, help="statistics tokens for ROME (the tests' cache)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--store", default=str(ROOT / "artifacts" / "sweep-bench.sqlite"))
    p.add_argument("--plot", default=str(ROOT / "assets" / "sweep.png"))
    args = p.parse_args(argv)
    if not SHARED.exists():
        print(f"needs the shared data at {SHARED}", file=sys.stderr)
        return 2

    import editlab
    from editlab.cli.sweep import render_curves
    from editlab.measure.ability import AbilityConfig
    from editlab.measure.muting import MutingProbe
    from editlab.runs.store import RunStore
    from editlab.runs.sweep import SweepConfig, curves, run_sweep

    handle = editlab.load_model()
    store = RunStore(args.store)
    corpus = str(SHARED / "corpus" / "wikitext-2-test.txt")
    ability = AbilityConfig.scaled(
        args.ability_size,
        data_dir=str(SHARED / "bench"),
        sources={"perplexity": str(SHARED / "corpus" / "wikitext-2-valid.txt")},
        online=False,
        seed=args.seed,
        max_gen_tokens={"gsm8k": 160, "triviaqa": 24, "bbh": 32},
    )
    results = {}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        hp = {"mom2_n_tokens": args.mom2_tokens} if method in ("rome", "memit", "alphaedit", "pmet") else {}
        config = SweepConfig(
            method=method,
            dataset=args.dataset,
            counts=args.counts,
            hparams=hp,
            seed=args.seed,
            ability=ability,
            muting=MutingProbe(),
            corpus=corpus,
            online=False,
        )
        t0 = time.perf_counter()
        last = {"line": ""}

        def progress(pr, _m=method, _last=last):
            line = f"{_m}: {pr.line()}"
            if line != _last["line"]:
                print("\r" + line[:140].ljust(140), end="", file=sys.stderr, flush=True)
                _last["line"] = line

        result = run_sweep(handle, config, store, progress=progress)
        print(file=sys.stderr)
        df = curves(store, result.run_id)
        results[method] = (result.run_id, df)
        cps = store.checkpoints(result.run_id, samples=False)
        edit_s = [c.timings.get("edit_s", 0.0) for c in cps if c.step]
        print(
            f"\n## {method} (run {result.run_id}; {time.perf_counter() - t0:.0f} s this invocation; "
            f"editing {sum(edit_s):.0f} s for {cps[-1].step} edits)"
        )
        print(render_curves(df))
        if df["failed_edits"].fillna(0).max():
            print(f"failed edits (rolled back): {int(df['failed_edits'].max())}")
        last_cp = store.checkpoints(result.run_id)[-1]
        print(f"muting samples after {last_cp.step} edits:")
        for s in last_cp.samples["muting"][:6]:
            print(f"  {s['prompt']!r} -> {s['text'][:70]!r}")
    if args.plot:
        plot(results, Path(args.plot), handle.name)
        print(f"\nplot: {args.plot}")
    return 0


def plot(results, path: Path, model: str) -> None:
    """Three rows (edit quality, general ability, muting) x one column per method; x = edits (log);
    dotted lines: the unedited model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from editlab.measure.ability import LABELS

    methods = list(results)
    fig, axes = plt.subplots(3, len(methods), figsize=(6.2 * len(methods), 10.5), sharex=True, squeeze=False)
    panels = [
        (
            "edit quality (all edits so far)",
            [
                ("quality_all.ES", "efficacy"),
                ("quality_all.PS", "paraphrase"),
                ("quality_all.NS", "neighbourhood"),
                ("quality_all.PN", "PN"),
                ("quality_all.RE", "rectified eff."),
                ("quality_all.FC", "fact-check"),
            ],
            None,
        ),
        (
            "general ability",
            [(f"ability.{t}", LABELS[t]) for t in ("mmlu", "gsm8k", "csqa", "triviaqa", "truthfulqa", "bbh")],
            ("ability.perplexity", "perplexity (right, log)"),
        ),
        (
            "muting",
            [("muting.empty_rate", "empty outputs"), ("muting.repeat_rate", "repeated tokens")],
            ("muting.ngram_entropy", "n-gram entropy (right)"),
        ),
    ]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, method in enumerate(methods):
        run_id, df = results[method]
        edited, base = df[df["edits"] > 0], df[df["edits"] == 0]
        for i, (title, cols, right) in enumerate(panels):
            ax = axes[i][j]
            for k, (col, label) in enumerate(cols):
                if col not in df:
                    continue
                c = colours[k % len(colours)]
                ax.plot(edited["edits"], edited[col], marker="o", ms=3, color=c, label=label)
                if len(base) and base[col].notna().all():
                    ax.axhline(float(base[col].iloc[0]), color=c, ls=":", lw=1)
            ax.set_ylim(-0.05, 1.05)
            ax.set_xscale("log")
            ax.set_xticks(list(edited["edits"]), [str(int(x)) for x in edited["edits"]])
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_title(f"{method}: {title}", fontsize=10)
            ax.grid(alpha=0.3)
            handles, labels = ax.get_legend_handles_labels()
            if right and right[0] in df:
                ax2 = ax.twinx()
                ax2.plot(edited["edits"], edited[right[0]], marker="s", ms=3, color="black", ls="--", label=right[1])
                if len(base) and base[right[0]].notna().all():
                    ax2.axhline(float(base[right[0]].iloc[0]), color="black", ls=":", lw=1)
                if right[0] == "ability.perplexity":
                    ax2.set_yscale("log")
                else:
                    ax2.set_ylim(bottom=0)
                h2, l2 = ax2.get_legend_handles_labels()
                handles, labels = handles + h2, labels + l2
            if j == len(methods) - 1:
                ax.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.12, 0.5))
        axes[2][j].set_xlabel("number of sequential edits (log); dotted: unedited model")
    fig.suptitle(f"Sequential CounterFact edits on {model}", fontsize=12)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
