"""Draw the README's muting figure from the JSON that ``editlab reproduce muting`` writes.

    python benchmarks/muting_figure.py reports/muting.json [more.json ...] --out assets/muting.png

One panel per signal (perplexity and next-token accuracy on held-out text, empty and repeated
outputs, n-gram entropy, simple facts retained, efficacy over the edits so far, ability tasks when
measured) against the number of sequential edits (log axis; the unedited model drawn at 0.5),
with the report's 95 % bootstrap intervals as whiskers and chance lines where the report has them
(perplexity on a log scale when its values span more than a factor of 100).
Several reports (e.g. ROME and MEMIT) are overlaid. Nothing is computed here: every point is an
estimate in the JSON; the file only draws them (plotly's static export needs a browser engine this
project does not install, hence matplotlib, a dev dependency).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def load(path: str) -> dict:
    doc = json.loads(Path(path).read_text())
    if doc.get("protocol") != "muting":
        raise SystemExit(f"{path}: not a muting report (protocol {doc.get('protocol')!r})")
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", help="muting.json files written by `editlab reproduce muting`")
    ap.add_argument("--out", default="assets/muting.png")
    ap.add_argument(
        "--suffix", action="append", default=[], metavar="PATH=TEXT", help="append TEXT to that report's legend label"
    )
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs = [load(p) for p in args.reports]
    suffix = dict(spec.partition("=")[::2] for spec in args.suffix)
    keys = list(dict.fromkeys(e["key"] for d in docs for e in d["estimates"]))
    labels = {e["key"]: e["label"] for d in docs for e in d["estimates"]}
    cols = 4
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for path, d in zip(args.reports, docs):
            es = sorted(
                (e for e in d["estimates"] if e["key"] == key and e["value"] is not None), key=lambda e: e["edits"]
            )
            if not es:
                continue
            x = [max(e["edits"], 0.5) for e in es]
            y = [e["value"] for e in es]
            lo = [e["value"] - (e["low"] if e["low"] is not None else e["value"]) for e in es]
            hi = [(e["high"] if e["high"] is not None else e["value"]) - e["value"] for e in es]
            bs = d["config"].get("batch_size", 1)
            ax.errorbar(
                x,
                y,
                yerr=[lo, hi],
                marker="o",
                ms=3,
                capsize=2,
                lw=1.2,
                label=f"{d['method']}" + (f" (batches of {bs})" if bs and bs > 1 else "") + suffix.get(path, ""),
            )
            chance = next((e["chance"] for e in es if e.get("chance") is not None), None)
            if chance is not None:
                ax.axhline(chance, ls=":", color="grey", lw=1)
        ax.set_xscale("log")
        values = [e["value"] for d in docs for e in d["estimates"] if e["key"] == key and e["value"]]
        if key == "perplexity" and values and min(values) > 0 and max(values) / min(values) > 100:  # a collapse
            ax.set_yscale("log")
        ax.set_title(labels[key], fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("sequential edits (0 at 0.5)", fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    spare = list(axes.flat)[len(keys) :]
    if spare:  # the legend in an empty panel, clear of every curve
        spare[0].legend(*axes.flat[0].get_legend_handles_labels(), fontsize=8, loc="center")
    else:
        axes.flat[0].legend(fontsize=8)
    models = sorted({d["model"] for d in docs})
    fig.suptitle(f"editlab reproduce muting — {', '.join(models)} (whiskers: 95 % bootstrap)", fontsize=11)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100, bbox_inches="tight")
    print(f"wrote {args.out} from {', '.join(args.reports)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
