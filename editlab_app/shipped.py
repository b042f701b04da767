"""The results that ship with editlab, drawn when a page opens: a teaching session starts from the
finding (the muting curves, the negation and fact-check tables beside the papers'), not from a form."""

from __future__ import annotations

import streamlit as st

from editlab.runs.findings import figure
from editlab_app import bench as B


@st.cache_resource(show_spinner=False)
def _shipped() -> list[tuple[str, object, object]]:
    """(file name, result or the error reading it, figure or None), read and drawn once per server."""
    out = []
    for name, result in B.shipped_results():
        out.append((name, result, None if isinstance(result, Exception) else figure(result)))
    return out


def show(protocols: tuple[str, ...] | None = None, key: str = "shipped") -> int:
    """The shipped runs of these protocols (all when None), one tab each: what ran, the figure with
    its intervals, and the table of measured beside published numbers. Returns how many were shown."""
    chosen = [(n, r, f) for n, r, f in _shipped() if protocols is None or getattr(r, "protocol", None) in protocols]
    if not chosen:
        return 0
    tabs = st.tabs([getattr(r, "protocol", n) for n, r, _ in chosen]) if len(chosen) > 1 else [st.container()]
    for tab, (name, result, fig) in zip(tabs, chosen):
        with tab:
            if isinstance(result, Exception):
                st.warning(str(result))
                continue
            st.markdown(f"**{B.shipped_title(name, result)}** (`{name}`, a real run shipped with editlab)")
            for sentence in result.at_chance_sentences():
                st.warning(sentence)
            st.plotly_chart(fig, key=f"{key}_{name}_chart")
            with st.expander("Measured beside published, with 95 % intervals"):
                st.dataframe(result.table(), hide_index=True, key=f"{key}_{name}_table")
            notes = "; ".join(result.notes)
            if notes:
                st.caption(notes)
    return len(chosen)
