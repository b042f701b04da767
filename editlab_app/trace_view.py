"""The edit page's "Where does the fact live?" and "Does the predicate matter?" sections.

Figures and widgets only: the numbers come from :mod:`editlab.measure.trace` (causal tracing) and from the
probe report's ``ablation`` rows (:mod:`editlab.measure.ablation`). ``st`` is passed in, so the figure
builders can be tested without a running app.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

import numpy as np
import pandas as pd

from editlab import methods
from editlab.measure.ablation import ablation_summary, describe
from editlab.measure.trace import TraceResult, trace, trace_session

TRACES = "editlab.traces"  # st.session_state: {"before" | "after": TraceResult}
ORDER = ("mlp", "residual", "attn")
LABELS = {"mlp": "MLP outputs", "residual": "residual stream (layer outputs)", "attn": "attention outputs"}
COLORS = {"residual": "Purples", "mlp": "Greens", "attn": "Reds"}
SCOPES = {"subject": "the subject's tokens (quick)", "all": "every token of the prompt"}
EXPLAIN = (
    "Causal tracing (Meng et al., 2022): the subject's token embeddings get Gaussian noise (3 × the "
    "embeddings' std), which destroys the answer; then one hidden state at a time is put back to its "
    "clean value. A bright cell is a (token, layer) whose clean state alone brings the answer back: "
    "that is where the model recalls the fact. MLP and attention maps restore a window of 10 layers "
    "centred on the column. The dashed line is the layer the method edits by default."
)


def method_layers(method: str, handle) -> list[int]:
    """The layers ``method`` edits by default on this model (``layer`` or ``layers``), if any."""
    try:
        hp = methods.get(method).HParams.for_model(handle)
    except Exception:  # a method without per-layer hyperparameters
        return []
    for name in ("layer", "layers"):
        v = getattr(hp, name, None)
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return [int(v)]
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, (int, np.integer)) for x in v):
            return sorted(int(x) for x in v)
    return []


def token_labels(result: TraceResult) -> list[str]:
    """Row labels: the token text, with * on the subject's tokens (as in the paper's figures)."""
    a, b = result.subject_range
    return [f"{tok!r}{'*' if a <= i < b else ''}" for i, tok in enumerate(result.tokens)]


def heatmap(
    result: TraceResult, kind: str, marked: tuple[int, ...] | list[int] = (), method: str = "", title: str | None = None
):
    """Token × layer heatmap of the indirect effect (untraced tokens are blank)."""
    import plotly.graph_objects as go

    ie = result.indirect_effect(kind)
    top = float(np.nanmax(ie)) if not np.isnan(ie).all() else 0.0
    labels = token_labels(result)
    z = [[None if np.isnan(v) else float(v) for v in row] for row in ie]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(result.n_layers)),
            y=list(range(len(labels))),
            customdata=[[lab] * result.n_layers for lab in labels],
            colorscale=COLORS[kind],
            zmin=0,
            zmax=max(top, 1e-6),
            colorbar=dict(title="IE"),
            hovertemplate="%{customdata}, layer %{x}: indirect effect %{z:.3f}<extra></extra>",
        )
    )
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(labels))), ticktext=labels, autorange="reversed")
    fig.update_xaxes(
        title_text=("center of 10 restored layers" if kind != "residual" else "restored layer").replace(
            "10", str(result.window)
        )
    )
    s = result.subject_last
    fig.add_shape(
        type="rect", x0=-0.5, x1=result.n_layers - 0.5, y0=s - 0.5, y1=s + 0.5, line=dict(color="#444", width=1)
    )
    for layer in marked:
        fig.add_vline(
            x=layer,
            line_dash="dash",
            line_color="#e4572e",
            annotation_text=f"{method} layer {layer}".strip(),
            annotation_position="top",
        )
    fig.update_layout(
        title=title
        or f"{LABELS[kind]}: P({result.answer.strip()}) clean {result.p_clean:.3f}, corrupted {result.p_corrupted:.3f}",
        height=120 + 26 * len(labels),
        margin=dict(l=10, r=10, t=60, b=40),
    )
    return fig


def profile(results: Mapping[str, TraceResult], kind: str, marked: tuple[int, ...] | list[int] = (), method: str = ""):
    """Indirect effect at the subject's last token, per layer, one line per traced state."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for label, r in results.items():
        fig.add_trace(
            go.Scatter(
                x=list(range(r.n_layers)),
                y=r.subject_last_effect(kind).tolist(),
                mode="lines+markers",
                name=f"{label}: P({r.answer.strip()})",
            )
        )
    for layer in marked:
        fig.add_vline(
            x=layer, line_dash="dash", line_color="#e4572e", annotation_text=f"{method} layer {layer}".strip()
        )
    any_r = next(iter(results.values()))
    fig.update_layout(
        title=f"{LABELS[kind]} at the subject's last token {any_r.tokens[any_r.subject_last]!r}",
        xaxis_title="layer",
        yaxis_title="indirect effect",
        height=320,
        margin=dict(l=10, r=10, t=50, b=40),
        legend=dict(orientation="h", y=-0.3),
    )
    return fig


def peak_sentence(label: str, r: TraceResult, kind: str) -> str:
    eff = r.subject_last_effect(kind)
    ie = r.indirect_effect(kind)
    if np.isnan(eff).all():
        return f"{label}: not traced at the subject's last token."
    text = (
        f"{label}: restoring the {LABELS[kind]} at {r.tokens[r.subject_last]!r} recovers at most "
        f"{np.nanmax(eff):.3f} of P({r.answer.strip()}) (clean {r.p_clean:.3f}, corrupted {r.p_corrupted:.3f}), "
        f"at layer {r.peak_layer(kind)}."
    )
    t, layer = np.unravel_index(np.nanargmax(ie), ie.shape)
    if t != r.subject_last and ie[t, layer] > 2 * max(np.nanmax(eff), 0.0):
        text += f" The strongest cell is elsewhere: {r.tokens[t]!r} at layer {layer} ({ie[t, layer]:.3f})."
    return text


def trace_expander(st, state: MutableMapping, session, fact, method: str) -> None:
    """'Where does the fact live?': trace the unedited model (which layer to edit?) and the edited
    one (where does the new answer come from now?)."""
    handle = session.handle
    marked = method_layers(method, handle)
    with st.expander("Where does the fact live? (causal tracing)"):
        st.caption(EXPLAIN)
        c1, c2, c3 = st.columns(3)
        kind = c1.selectbox("Map", ORDER, format_func=LABELS.get, key="trace.kind")
        scope = c2.selectbox("Tokens", list(SCOPES), format_func=SCOPES.get, key="trace.scope")
        samples = int(
            c3.number_input(
                "Noise samples",
                min_value=1,
                max_value=20,
                value=5,
                key="trace.samples",
                help="the paper uses 10; fewer is faster and noisier",
            )
        )
        b1, b2, _ = st.columns([1, 1, 2])
        before = b1.button(
            "Trace the unedited model",
            key="trace.run_before",
            help=f"answer: {fact.target_true!r}" if fact.target_true else "answer: the model's own next token",
        )
        after = b2.button(
            "Trace the edited model",
            key="trace.run_after",
            disabled=not session.records,
            help=f"this session's model with its edits; answer: {fact.target_new!r}",
        )
        traces = state.setdefault(TRACES, {})
        if before or after:
            bar = st.progress(0.0, text="tracing ...")

            def progress(done: int, total: int, stage: str) -> None:
                bar.progress(
                    min(1.0, done / total) if total else 1.0, text=f"{stage} ({done:,}/{total:,} restorations)"
                )

            kw = dict(kinds=kind, tokens=scope, samples=samples, progress=progress)
            try:
                if before:
                    traces["before"] = trace(
                        handle, fact.prompt, fact.subject, answer=fact.target_true, state_key=handle.fingerprint, **kw
                    )
                else:
                    traces["after"] = trace_session(session, fact.prompt, fact.subject, answer=fact.target_new, **kw)
            except ValueError as e:
                st.error(f"Could not trace: {e}")
            bar.empty()
        shown = {
            label: r
            for label, r in (("unedited", traces.get("before")), ("edited", traces.get("after")))
            if r is not None and r.prompt == fact.prompt and r.subject == fact.subject and kind in r.scores
        }
        if not shown:
            st.info(
                "Press a button to trace. On a CPU the subject's tokens take about a minute; the whole prompt, several."
            )
            return
        cols = st.columns(len(shown))
        for col, (label, r) in zip(cols, shown.items()):
            col.plotly_chart(
                heatmap(r, kind, marked, method, title=f"{label}: {LABELS[kind]}, P({r.answer.strip()})"),
                key=f"trace.heatmap.{label}",
            )
            col.caption(peak_sentence(label, r, kind))
            if label == "edited" and r.state_key != session.state_key():
                col.warning("Your edits changed since this trace; trace again to see the current model.")
        st.plotly_chart(profile(shown, kind, marked, method), key="trace.profile")


def ablation_table(report) -> pd.DataFrame:
    """One row per predicate variant: P(new) and P(true) for each state of the report."""
    from .report import states

    rows, index = [], []
    for r in report.rows_of("ablation"):
        d = {"prompt": r.probe.prompt}
        for c, name in states(report):
            m = getattr(r, c)
            d[f"P(new) {name}"] = m.p_new if m else None
            if report.fact.target_true:
                d[f"P(true) {name}"] = m.p_true if m else None
        rows.append(d)
        index.append(r.probe.rule)
    return pd.DataFrame(rows, index=pd.Index(index, name="predicate"))


def ablation_section(st, report) -> None:
    """'Does the predicate matter?': the ablation rows and one plain sentence per state."""
    from .report import states

    if not report.rows_of("ablation"):
        return
    st.markdown("##### Does the predicate matter? (\"is\" / \"is not\" / neither)")
    cols = states(report)
    last, last_label = cols[-1]
    for c, label in cols:
        text = describe(report, c, label)
        if text is None:
            continue
        flags = ablation_summary((r.probe.rule, getattr(r, c)) for r in report.rows_of("ablation"))
        prefers_new = any((flags["ablation_prefers_new"] or {}).values())
        if c == last and report.method and flags["ignores_predicate"] and prefers_new:
            st.warning(text)
        else:
            st.caption(text)
    st.dataframe(style_ablation(ablation_table(report), last_label))


def style_ablation(df: pd.DataFrame, last: str):
    """Mark the last state's P(new) where it beats P(true): red on the negated prompt (the model
    says the new target although told "not"), green elsewhere."""
    new, true = f"P(new) {last}", f"P(true) {last}"
    numeric = [c for c in df.columns if c.startswith("P(")]

    def mark(row):
        out = [""] * len(row)
        if (
            new in row.index
            and true in row.index
            and pd.notna(row[new])
            and pd.notna(row[true])
            and row[new] > row[true]
        ):
            red = row.name in ("negated", "affirmed")
            out[list(row.index).index(new)] = (
                "background-color: rgba(255, 75, 75, 0.25)" if red else "background-color: rgba(33, 195, 84, 0.2)"
            )
        return out

    return df.style.format("{:.4f}", subset=numeric, na_rep="–").apply(mark, axis=1)
