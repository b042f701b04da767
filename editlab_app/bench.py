"""Helpers of the Benchmark page: datasets it may read, figures and tables of a BenchResult.

Only formatting and file handling: every number comes from :mod:`editlab.runs.bench`. The page reads
datasets a visitor uploads (JSON / JSONL / CSV, parsed by ``editlab.facts.datasets``, size-limited), the
built-in example facts, and files the operator lists in ``EDITLAB_BENCH_DATASETS``
(``os.pathsep``-separated paths); never a path typed into the page.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from editlab.facts.datasets import Dataset, from_facts, load_dataset
from editlab.measure.metrics import CONVENTIONS, METRICS
from editlab.runs.bench import BenchResult

from .gallery import check_size, load_gallery, upload_dataset

EXAMPLES = "Example facts (built in)"
UPLOAD = "Upload a file"
# The rates plotted as bars (magnitudes and counts would share an axis badly).
BAR_METRICS = (
    "ES",
    "PS",
    "NS",
    "S",
    "rewrite_acc",
    "rephrase_acc",
    "locality",
    "portability_acc",
    "PP",
    "PN",
    "NP",
    "NN",
    "RE",
    "FC",
)
LABELS = {m.key: m.label for m in METRICS}


def operator_datasets(environ=None) -> dict[str, str]:
    """{label: path} of the dataset files the operator offers (existing files only)."""
    env = os.environ if environ is None else environ
    out = {}
    for raw in (env.get("EDITLAB_BENCH_DATASETS") or "").split(os.pathsep):
        p = Path(raw.strip()).expanduser()
        if raw.strip() and p.is_file():
            out[p.name] = str(p)
    return out


def examples_dataset() -> Dataset:
    return from_facts([f for _, f in load_gallery()], name="example facts")


# Real long runs shipped with the app (e.g. MEMIT's 1,000 sequential edits on a GPU), to open on the
# Findings page without running them again.
REPORTS_DIR = Path(__file__).resolve().parent / "data" / "reports"


def shipped_reports(folder: Path = REPORTS_DIR) -> dict[str, Path]:
    """The reports shipped in ``data/reports``, by file name."""
    return {p.name: p for p in sorted(Path(folder).glob("*.json"))}


# The shipped runs a page shows first, in this order (a file not listed follows in name order).
SHIPPED_ORDER = ("muting", "negation", "factcheck", "ablation")


def shipped_results(folder: Path = REPORTS_DIR, max_mb: float = 5.0) -> list[tuple[str, object]]:
    """The shipped reports read (name, ReproResult), muting first; one that cannot be read is left
    out and named in a (name, ValueError) entry instead, so a page says so rather than failing."""
    out = []
    for name, path in shipped_reports(folder).items():
        try:
            out.append((name, read_report(name, path.read_bytes(), max_mb)))
        except (ValueError, OSError) as e:
            out.append((name, ValueError(f"{name} could not be read: {e}")))

    def rank(item):
        protocol = getattr(item[1], "protocol", None)
        return (SHIPPED_ORDER.index(protocol) if protocol in SHIPPED_ORDER else len(SHIPPED_ORDER), item[0])

    return sorted(out, key=rank)


def shipped_title(name: str, result) -> str:
    """One line naming a shipped run: protocol, method, model, size and the machine it ran on (from
    the report, else from the file name's ``-h100``/``-cpu`` tag)."""
    size = f"{result.n:,} sequential edits" if result.protocol == "muting" else f"{result.n} facts"
    tag = Path(name).stem.rsplit("-", 1)[-1].lower()
    machine = result.cost.get("machine") or {"h100": "an H100 GPU", "cpu": "a 2-core CPU"}.get(tag)
    where = f", on {machine}" if machine else ""
    return f"{result.protocol}: {result.method.upper()} on {result.model}, {size}{where}"


def read_report(name: str, data: bytes, max_mb: float):
    """A saved report (the JSON ``editlab reproduce`` writes), size-limited; ValueError says what is wrong."""
    from editlab.runs.reproduce import ReproResult

    check_size(name, data, max_mb)
    return ReproResult.from_json(data, name)


def read_upload(name: str, data: bytes, max_mb: float) -> Dataset:
    """A dataset from an uploaded file (JSON / JSONL / CSV, size-limited); bad records are left out
    and listed in ``Dataset.skipped``."""
    return upload_dataset(name, data, max_mb)


def chosen_dataset(source: str, upload, operator: dict[str, str], max_mb: float) -> Dataset:
    """The dataset a page's "Facts" choice names: the built-in examples, the visitor's upload (a
    Streamlit UploadedFile or None) or one of the operator's files."""
    if source == UPLOAD:
        if upload is None:
            raise ValueError("choose a file to upload first")
        return read_upload(upload.name, upload.getvalue(), max_mb)
    if source == EXAMPLES:
        return examples_dataset()
    return load_dataset(operator[source], skip_invalid=True)


# ---- tables and figures --------------------------------------------------------------------------
def metrics_table(result: BenchResult) -> pd.DataFrame:
    """Methods × metrics with readable column names, the unedited row first."""
    return result.table(labels=True)


def convention_tables(result: BenchResult) -> dict[str, pd.DataFrame]:
    """{convention title: methods × that convention's metrics}."""
    df = result.table()
    out = {}
    for conv, title in CONVENTIONS.items():
        keys = [m.key for m in METRICS if m.convention == conv]
        out[title] = df[keys].rename(columns=LABELS)
    return out


def _long(results: list[BenchResult]) -> pd.DataFrame:
    records = []
    for res in results:
        tag = "" if len(results) == 1 else f" (#{res.run_id})"
        for r in res.rows:
            for m in METRICS:
                if m.key in BAR_METRICS and r.metrics.get(m.key) is not None:
                    records.append(
                        {
                            "method": r.method + tag,
                            "metric": m.label,
                            "key": m.key,
                            "convention": CONVENTIONS[m.convention],
                            "value": r.metrics[m.key],
                        }
                    )
    return pd.DataFrame.from_records(records)


def grouped_bars(results: BenchResult | list[BenchResult]):
    """One panel per convention: each metric's value per method (unedited included)."""
    import plotly.express as px

    results = [results] if isinstance(results, BenchResult) else list(results)
    df = _long(results)
    fig = px.bar(
        df,
        x="metric",
        y="value",
        color="method",
        barmode="group",
        facet_row="convention",
        range_y=[-1 if (df["value"] < 0).any() else 0, 1],
        labels={"value": "", "metric": ""},
    )
    fig.update_xaxes(matches=None, showticklabels=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(height=720, margin=dict(l=10, r=10, t=30, b=10), legend_title_text="")
    return fig


def efficacy_scatter(results: BenchResult | list[BenchResult]):
    """Efficacy (x) against rectified efficacy PP − PN (y), one point per method and run. On the
    diagonal the edit holds up under negation; far below it the success is illusory."""
    import plotly.graph_objects as go

    results = [results] if isinstance(results, BenchResult) else list(results)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line=dict(dash="dot", color="gray"),
            name="RE = ES (negation respected)",
            hoverinfo="skip",
        )
    )
    for res in results:
        tag = "" if len(results) == 1 else f" #{res.run_id}"
        for r in res.rows:
            es, re_ = r.metrics.get("ES"), r.metrics.get("RE")
            if es is None or re_ is None:
                continue
            fig.add_trace(
                go.Scatter(
                    x=[es],
                    y=[re_],
                    mode="markers+text",
                    text=[r.method + tag],
                    textposition="top center",
                    marker=dict(size=14),
                    name=r.method + tag,
                    hovertemplate=f"{r.method}{tag}<br>ES %{{x:.2f}}<br>PP − PN %{{y:.2f}}<extra></extra>",
                )
            )
    fig.update_layout(
        xaxis_title="Efficacy ES (PP)",
        yaxis_title="Rectified efficacy PP − PN",
        xaxis_range=[-0.05, 1.05],
        yaxis_range=[-1.05, 1.05],
        height=420,
        margin=dict(l=10, r=10, t=30, b=10),
    )
    return fig


def fact_choices(result: BenchResult, method: str) -> list[tuple[int, str]]:
    row = result.row(method)
    return [
        (
            f.index,
            f"#{f.record} {f.fact.subject}: {f.fact.target_true or '?'} → {f.fact.target_new}"
            + ("  (edit failed)" if f.error else ""),
        )
        for f in row.facts
    ]


def probe_table(result: BenchResult, method: str, index: int) -> pd.DataFrame:
    """Every probe of one fact under one method: P(new), P(true), P(answer), P(True)/P(False) and
    the greedy text, for the unedited model and after the edit (plus the negated edit's probes)."""
    f = next(x for x in result.row(method).facts if x.index == index)
    column = f.column
    records = []
    for source, report in (("edit", f.report), ("negated edit", f.negative)):
        if report is None:
            continue
        for r in report.rows:
            for state in ("unedited", "after"):
                m = getattr(r, state)
                if (
                    m is None
                    or (source == "negated edit" and state == "unedited")
                    or (column == "unedited" and state == "after")
                ):
                    continue
                records.append(
                    {
                        "edit": source,
                        "state": state,
                        "probe": r.probe.kind + (f" [{r.probe.rule}]" if r.probe.rule else ""),
                        "prompt": r.probe.prompt.replace("\n", " "),
                        "P(new)": m.p_new,
                        "P(true)": m.p_true,
                        "P(answer)": m.p_answer,
                        "P(True)": m.p_yes,
                        "P(False)": m.p_no,
                        "greedy": m.greedy.strip().replace("\n", " "),
                    }
                )
    return pd.DataFrame.from_records(records)


def token_table(result: BenchResult, method: str, index: int, tokenizer=None) -> pd.DataFrame:
    """The teacher-forced token predictions behind the token-accuracy metrics of one fact."""
    f = next(x for x in result.row(method).facts if x.index == index)
    t = f.tokens
    decode = (
        (lambda ids: tokenizer.decode(list(ids))) if tokenizer is not None else (lambda ids: " ".join(map(str, ids)))
    )
    records = []
    groups = [
        ("rewrite", [t.rewrite] if t.rewrite else []),
        ("rephrase", t.rephrase),
        ("locality", t.locality),
        ("portability", t.portability),
    ]
    for group, preds in groups:
        for j, p in enumerate(preds):
            rec = {
                "metric": group,
                "prompt": p.prompt,
                "target": p.target,
                "predicted": decode(p.predicted_ids),
                "accuracy": p.accuracy,
            }
            if group == "locality":
                ref = t.locality_reference[j]
                rec["unedited predicted"] = decode(ref.predicted_ids)
                rec["agreement"] = sum(a == b for a, b in zip(p.predicted_ids, ref.predicted_ids)) / len(p.target_ids)
            records.append(rec)
    return pd.DataFrame.from_records(records)


def export_bytes(result: BenchResult, fmt: str) -> bytes:
    """The export file's content (csv / parquet / json), for a download button."""
    fd, tmp = tempfile.mkstemp(suffix="." + fmt, prefix="editlab-bench-")
    os.close(fd)
    try:
        result.export(tmp, fmt)
        return Path(tmp).read_bytes()
    finally:
        os.unlink(tmp)


def runs_table(runs) -> pd.DataFrame:
    """Past benchmark runs from the store, newest first."""
    import datetime

    records = []
    for r in runs:
        c = r.config
        records.append(
            {
                "run": r.id,
                "when": datetime.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M"),
                "status": r.status,
                "model": c.get("model"),
                "methods": ", ".join(c.get("methods") or []),
                "dataset": Path(str(c.get("dataset") or "")).name,
                "n": c.get("n"),
                "mode": c.get("mode"),
                "batch": c.get("batch_size"),
                "evaluate": c.get("evaluate") if c.get("mode") == "sequential" else "",
                "negated edits": c.get("negative_edits"),
                "rows stored": r.n_checkpoints,
            }
        )
    return pd.DataFrame.from_records(records)
