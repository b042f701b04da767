"""The report of a reproduction (:mod:`editlab.runs.reproduce`): one self-contained HTML file and one JSON.

The HTML carries plotly's JavaScript inline (``plotly.io.to_html(include_plotlyjs=True)``), so it
opens offline and can be mailed as one file. It states what was run and on how many facts or
edits, the measured numbers with their 95 % intervals, the published numbers with their source and
whether they were checked, the cost, a chance line on ability tasks and a sentence where a task is
at chance for the model.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from editlab.runs.reproduce import BOOTSTRAP_SAMPLES, LEVEL, ReproResult

TITLES = {
    "negation": "Negation: PP, PN, NN, NP and rectified efficacy (Liu et al. 2025)",
    "factcheck": "Fact-check accuracy vs efficacy (Liu et al. 2025)",
    "ablation": "Supportive-token ablation: does the predicate matter? (Liu et al. 2025)",
    "muting": "The muting effect: sequential edits and what the model still does",
}


def _num(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}g}" if abs(v) >= 1000 else f"{v:.{digits}f}"


def _bars(result: ReproResult):
    """Measured values with interval whiskers per group, published values as markers."""
    import plotly.graph_objects as go

    fig = go.Figure()
    groups = list(dict.fromkeys(e.group for e in result.estimates))
    for g in groups:
        es = [e for e in result.estimates if e.group == g and e.value is not None]
        fig.add_bar(
            name=f"measured · {g}",
            x=[e.key for e in es],
            y=[e.value for e in es],
            error_y=dict(
                type="data",
                symmetric=False,
                array=[(e.high - e.value) if e.high is not None else 0 for e in es],
                arrayminus=[(e.value - e.low) if e.low is not None else 0 for e in es],
            ),
            hovertext=[f"{e.label}: {_num(e.value)} [{_num(e.low)}, {_num(e.high)}], n={e.n}" for e in es],
        )
    for model in dict.fromkeys(r.model for r in result.references):
        refs = [r for r in result.references if r.model == model and r.edits is None]
        if refs:
            fig.add_scatter(
                name=f"published · {model} ({refs[0].method})",
                x=[r.metric for r in refs],
                y=[r.value for r in refs],
                mode="markers",
                marker=dict(symbol="diamond", size=12),
                hovertext=[f"{r.paper}, {r.where}; {r.provenance}" for r in refs],
            )
    fig.update_layout(
        barmode="group",
        yaxis_title="fraction of facts",
        height=460,
        title=f"{result.model}, {result.method}, n={result.n} (whiskers: 95 % bootstrap)",
    )
    return fig


def _curves(result: ReproResult):
    """Muting: one panel per signal against the number of edits (log axis, 0 drawn at 0.5)."""
    from plotly.subplots import make_subplots

    keys = list(dict.fromkeys(e.key for e in result.estimates))
    cols = 3
    rows = (len(keys) + cols - 1) // cols
    labels = {e.key: e.label for e in result.estimates}
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[labels[k] for k in keys])
    for i, k in enumerate(keys):
        r, c = i // cols + 1, i % cols + 1
        es = sorted((e for e in result.estimates if e.key == k and e.value is not None), key=lambda e: e.edits)
        x = [max(e.edits, 0.5) for e in es]
        fig.add_scatter(
            x=x,
            y=[e.value for e in es],
            mode="lines+markers",
            name=labels[k],
            showlegend=False,
            error_y=dict(
                type="data",
                symmetric=False,
                array=[(e.high - e.value) if e.high is not None else 0 for e in es],
                arrayminus=[(e.value - e.low) if e.low is not None else 0 for e in es],
            ),
            row=r,
            col=c,
        )
        pub = [ref for ref in result.references if ref.metric == k and ref.edits is not None]
        if pub:
            fig.add_scatter(
                x=[max(ref.edits, 0.5) for ref in pub],
                y=[ref.value for ref in pub],
                mode="markers",
                marker=dict(symbol="diamond", size=11),
                showlegend=False,
                name=f"published ({pub[0].model}, {pub[0].method})",
                hovertext=[f"published: {ref.model}, {ref.method}; {ref.provenance}" for ref in pub],
                row=r,
                col=c,
            )
        chance = next((e.chance for e in es if e.chance is not None), None)
        if chance is not None:
            fig.add_hline(y=chance, line_dash="dot", annotation_text="chance", row=r, col=c)
        fig.update_xaxes(type="log", title_text="edits (0 at 0.5)", row=r, col=c)
    fig.update_layout(
        height=320 * rows,
        title=f"{result.model}, {result.method}: signals vs sequential edits (whiskers: 95 % bootstrap)",
    )
    return fig


def figure(result: ReproResult):
    """The report's plotly figure: muting's curves against the number of edits, else the measured
    bars beside the published markers."""
    return _curves(result) if result.protocol == "muting" else _bars(result)


def _table(headers, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def to_html(result: ReproResult, include_plotlyjs: bool | str = True) -> str:
    """The whole report as one HTML document (plotly inline unless ``include_plotlyjs="cdn"``)."""
    import plotly.io as pio

    plot = pio.to_html(figure(result), include_plotlyjs=include_plotlyjs, full_html=False)
    measured = _measured_table(result)
    published = _published_table(result)
    cost = result.cost
    cost_rows = _cost_rows(cost)
    where = f"<p>Ran on {html.escape(cost['machine'])}.</p>" if cost.get("machine") else ""
    chance = "".join(f"<p class='warn'>{html.escape(s)}</p>" for s in result.at_chance_sentences())
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    scale = (
        "<p>Model size: the published numbers come from 7–8B-parameter models; the measured ones from "
        f"<b>{html.escape(result.model)}</b>. Agreement in direction, not in value, is what a small model "
        "can show.</p>"
    )
    config = html.escape(json.dumps(result.config, indent=1, default=str))
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>editlab reproduce {result.protocol}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:14px}}
th{{background:#f3f3f3}}.warn{{color:#8a4b00}}pre{{background:#f7f7f7;padding:1em;overflow:auto}}</style></head>
<body><h1>{html.escape(TITLES.get(result.protocol, result.protocol))}</h1>
<p>Ran <b>{result.protocol}</b> with <b>{html.escape(result.method)}</b> on <b>{html.escape(result.model)}</b>,
n = {result.n} {'edits' if result.protocol == 'muting' else 'facts'}. Intervals: {int(LEVEL * 100)} % percentile
bootstrap, {BOOTSTRAP_SAMPLES} resamples, seed {result.config.get('seed', 0)}.</p>
{scale}{chance}
{plot}
<h2>Measured</h2>{measured}
<h2>Published</h2>{published}
<h2>Cost</h2>{where}{_table(['what', 'seconds'], cost_rows)}
<h2>Notes</h2><ul>{notes}</ul>
<h2>Configuration</h2><pre>{config}</pre>
</body></html>"""


def _measured_table(result: ReproResult) -> str:
    """The measured estimates as an HTML table, one row per group and metric."""
    return _table(
        ["group", "edits", "metric", "measured", "95 % interval", "n", "chance"],
        [
            (
                e.group,
                "" if e.edits is None else e.edits,
                e.label,
                _num(e.value),
                f"{_num(e.low)} – {_num(e.high)}",
                e.n,
                "" if e.chance is None else _num(e.chance, 2),
            )
            for e in result.estimates
        ],
    )


def _published_table(result: ReproResult) -> str:
    """The published numbers as an HTML table, or a sentence where none is listed."""
    return (
        _table(
            ["metric", "value", "model", "method", "dataset", "edits", "source", "checked", "note"],
            [
                (
                    r.metric,
                    _num(r.value),
                    r.model,
                    r.method,
                    r.dataset,
                    "" if r.edits is None else r.edits,
                    f"{r.paper}, {r.where}",
                    "yes (against the PDF)" if r.checked else r.provenance,
                    r.note,
                )
                for r in result.references
            ],
        )
        if result.references
        else "<p>No published number is listed for this protocol; the paper's claim is qualitative.</p>"
    )


def _cost_rows(cost: dict) -> list[tuple]:
    """The cost table's rows: the total, per edit, per checkpoint, then the other figures (not the machine)."""
    cost_rows = [("total", f"{cost.get('total_s')} s"), ("seconds per edit", cost.get("seconds_per_edit"))]
    cost_rows += [
        (f"checkpoint {c['edits']}", f"edits {c['edit_s']} s, measuring {c['measure_s']} s")
        for c in cost.get("per_checkpoint", [])
    ]
    cost_rows += [
        (k, v) for k, v in cost.items() if k not in ("total_s", "seconds_per_edit", "per_checkpoint", "machine")
    ]
    return cost_rows


def report_folder(out_dir: str | Path, protocol: str) -> Path:
    """``out_dir`` made ready for a report, before any work is done: created if missing; refused
    (ValueError naming it) when it is a file, or when it or a report file in it cannot be written."""
    import os

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"--out {out}: is a file; give a folder (the report is written as {protocol}.html and "
            f"{protocol}.json inside it)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    for name in (f"{protocol}.html", f"{protocol}.json"):
        target = out / name
        if target.exists() and not target.is_file():
            raise ValueError(f"--out {out}: {name} in it is a folder; remove it or give another --out")
    if not os.access(out, os.W_OK):
        raise ValueError(f"--out {out}: the folder is not writable; give another --out")
    return out


def write_report(result: ReproResult, out_dir: str | Path, include_plotlyjs: bool | str = True) -> tuple[Path, Path]:
    """Write ``<protocol>.html`` and ``<protocol>.json`` into ``out_dir`` (created); return both paths."""
    out = report_folder(out_dir, result.protocol)
    html_path, json_path = out / f"{result.protocol}.html", out / f"{result.protocol}.json"
    json_path.write_text(result.to_json(indent=1), encoding="utf-8")
    html_path.write_text(to_html(result, include_plotlyjs), encoding="utf-8")
    return html_path, json_path
