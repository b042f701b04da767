"""Helpers of the Sweep page: the curves of stored sweep runs as plotly figures, and sample tables.

Only formatting: every number comes from the run store (:mod:`editlab.runs.store`) that
:func:`editlab.runs.sweep.run_sweep` writes. The x axis is the number of edits on a log scale; the
unedited model (step 0, which a log axis cannot show) is drawn as a dotted reference line.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from editlab.measure.ability import LABELS as ABILITY_LABELS
from editlab.runs.store import RunStore
from editlab.runs.sweep import QUALITY_LABELS, curves

QUALITY = ("ES", "PS", "NS", "PN", "RE", "FC")
MUTING = ("empty_rate", "repeat_rate")
MUTING_LABELS = {
    "empty_rate": "empty outputs",
    "repeat_rate": "repeated tokens",
    "ngram_entropy": "n-gram entropy (bits)",
}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def ability_sources(environ=None) -> dict:
    """The operator's benchmark data: ``EDITLAB_ABILITY_DATA`` (a folder laid out like the public
    releases) and ``EDITLAB_PPL_CORPUS`` (a text corpus for perplexity); empty when unset."""
    env = os.environ if environ is None else environ
    out = {}
    data = (env.get("EDITLAB_ABILITY_DATA") or "").strip()
    if data and Path(data).expanduser().is_dir():
        out["data_dir"] = str(Path(data).expanduser())
    ppl = (env.get("EDITLAB_PPL_CORPUS") or "").strip()
    if ppl and Path(ppl).expanduser().is_file():
        out["sources"] = {"perplexity": str(Path(ppl).expanduser())}
    return out


def run_label(run) -> str:
    c = run.config
    return f"#{run.id} {c.get('method')} ({run.status}, {run.n_checkpoints} checkpoints)"


def runs_table(runs) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "run": r.id,
                "method": r.config.get("method"),
                "model": r.config.get("model"),
                "dataset": Path(str(r.config.get("dataset"))).name,
                "counts": r.config.get("counts"),
                "seed": r.config.get("seed"),
                "status": r.status,
                "last step": r.last_step,
            }
            for r in runs
        ]
    )


def run_curves(store: RunStore, run_ids) -> dict[int, pd.DataFrame]:
    return {rid: curves(store, rid) for rid in run_ids}


def _panel(fig, row, df, cols, labels, name, dash, secondary=False, colours=None):
    edited = df[df["edits"] > 0]
    base = df[df["edits"] == 0]
    for i, col in enumerate(cols):
        if col not in df:
            continue
        colour = (colours or COLOURS)[i % len(COLOURS)]
        fig.add_trace(
            go.Scatter(
                x=edited["edits"],
                y=edited[col],
                mode="lines+markers",
                name=f"{name} · {labels(col)}",
                line={"dash": dash, "color": colour},
                legendgroup=f"{row}",
                customdata=edited["edits"],
                hovertemplate="%{y:.3f} after %{x} edits",
            ),
            row=row,
            col=1,
            secondary_y=secondary,
        )
        if len(base) and pd.notna(base[col].iloc[0]):
            fig.add_trace(
                go.Scatter(
                    x=[max(1, edited["edits"].min() if len(edited) else 1), max(1, df["edits"].max())],
                    y=[base[col].iloc[0]] * 2,
                    mode="lines",
                    showlegend=False,
                    hoverinfo="skip",
                    line={"dash": "dot", "width": 1, "color": colour},
                    opacity=0.7,
                ),
                row=row,
                col=1,
                secondary_y=secondary,
            )


def sweep_figure(data: dict[int, pd.DataFrame], names: dict[int, str]) -> go.Figure:
    """Three panels (edit quality over all edits so far; general ability; muting), one line style
    per run, dotted lines at the unedited model's values."""
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=(
            "Edit quality over all edits so far",
            "General ability (perplexity: right axis)",
            "Muting (n-gram entropy: right axis)",
        ),
        specs=[[{"secondary_y": False}], [{"secondary_y": True}], [{"secondary_y": True}]],
    )
    for k, (rid, df) in enumerate(data.items()):
        if df.empty:
            continue
        dash, name = DASHES[k % len(DASHES)], names.get(rid, f"#{rid}")
        _panel(fig, 1, df, [f"quality_all.{q}" for q in QUALITY], lambda c: c.split(".")[1], name, dash)
        tasks = [c for c in df.columns if c.startswith("ability.") and c != "ability.perplexity"]
        _panel(fig, 2, df, tasks, lambda c: ABILITY_LABELS.get(c.split(".")[1], c), name, dash)
        _panel(
            fig, 2, df, ["ability.perplexity"], lambda c: "perplexity", name, dash, secondary=True, colours=("#7f7f7f",)
        )
        _panel(fig, 3, df, [f"muting.{m}" for m in MUTING], lambda c: MUTING_LABELS[c.split(".")[1]], name, dash)
        _panel(
            fig,
            3,
            df,
            ["muting.ngram_entropy"],
            lambda c: MUTING_LABELS["ngram_entropy"],
            name,
            dash,
            secondary=True,
            colours=("#2ca02c",),
        )
    fig.update_xaxes(type="log", title_text="number of edits (log)", row=3, col=1)
    fig.update_xaxes(type="log")
    fig.update_yaxes(range=[-0.05, 1.05], row=1, col=1)
    fig.update_yaxes(range=[-0.05, 1.05], row=2, col=1, secondary_y=False)
    fig.update_yaxes(type="log", row=2, col=1, secondary_y=True)
    fig.update_yaxes(range=[-0.05, 1.05], row=3, col=1, secondary_y=False)
    fig.update_layout(height=900, margin={"t": 40, "b": 40}, legend={"font": {"size": 10}})
    return fig


def selected_step(event) -> int | None:
    """The number of edits of the point clicked in the figure (None if nothing is selected)."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for p in points:
        x = p.get("x")
        if x is not None:
            return int(round(float(x)))
    return None


def samples_tables(checkpoint) -> dict[str, pd.DataFrame]:
    """The checkpoint's sample generations as tables: muting probes, the latest edits, ability items."""
    s = checkpoint.samples or {}
    out = {}
    if s.get("muting"):
        out["Muting probes (greedy)"] = pd.DataFrame(
            [{"prompt": m["prompt"], "output": m["text"] or "∅ (empty)"} for m in s["muting"]]
        )
    if s.get("edits"):
        out["Edited facts (latest batch; step 0: first facts, unedited)"] = pd.DataFrame(s["edits"])
    rows = [
        {"task": t, **{k: str(v) for k, v in item.items()}}
        for t, items in (s.get("ability") or {}).items()
        for item in items
    ]
    if rows:
        out["Ability items"] = pd.DataFrame(rows)
    if s.get("failures"):
        out["Failed edits"] = pd.DataFrame(s["failures"])
    return out


def metrics_table(checkpoint) -> pd.DataFrame:
    m = checkpoint.metrics
    rows = []
    for scope in ("all", "latest"):
        for k, v in (m.get("quality", {}).get(scope) or {}).items():
            if k != "n":
                rows.append({"group": f"edit quality ({scope})", "metric": QUALITY_LABELS.get(k, k), "value": v})
    rows += [
        {"group": "general ability", "metric": ABILITY_LABELS.get(k, k), "value": v}
        for k, v in (m.get("ability") or {}).items()
    ]
    rows += [
        {"group": "muting", "metric": MUTING_LABELS.get(k, k), "value": v} for k, v in (m.get("muting") or {}).items()
    ]
    return pd.DataFrame(rows)
