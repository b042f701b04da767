"""Edit history: every edit of this browser session, undo any one, or reset to the unedited model."""

import datetime
import json

import pandas as pd
import streamlit as st

from editlab_app import actions as A
from editlab_app import state as S
from editlab_app.main import view

cfg = S.app_config()
ss = st.session_state
session = S.ensure_session(ss, cfg)

st.title("Edit history")
S.show_flash(ss)
st.caption(
    "The edits of this browser session, oldest first. Other visitors share the model but not these edits. "
    "Undoing an edit restores the weights it changed; later edits stay applied on top."
)


def _undo(record_id: int) -> None:
    try:
        rec = A.undo(ss, record_id)
    except ValueError as e:
        S.flash(ss, "error", str(e))
    else:
        S.flash(
            ss, "success", f"Undid edit {rec.id} ({rec.method}: {rec.facts[0].subject} → {rec.facts[0].target_new})."
        )


def _reset() -> None:
    A.reset(ss)
    S.flash(ss, "success", "Reset: this session's model is the unedited model again, bit for bit.")


def show(records) -> None:
    """The table of edits, one card per edit with its Undo button, Reset and a download."""
    log = ss.get(S.LOG, {})
    rows = []
    for rec in records:
        fact = rec.facts[0]
        fig = log.get(rec.id, {}).get("figures", {})
        rows.append(
            {
                "edit": rec.id,
                "time": datetime.datetime.fromtimestamp(rec.created).strftime("%H:%M:%S"),
                "method": rec.method,
                "fact": f"{fact.prompt} → {fact.target_new}"
                + (f" (+{len(rec.facts) - 1} more)" if len(rec.facts) > 1 else ""),
                "was": fact.target_true,
                "seconds": round(rec.seconds, 1),
                **{
                    k: fig.get(k)
                    for k in ("P(new) positive", "P(true) positive", "P(new) negation", "P(true) negation")
                },
                "survives negation": fig.get("new target survives negation"),
                "fact-check disagrees": fig.get("fact-check disagrees with completion"),
            }
        )
    table = pd.DataFrame(rows).set_index("edit")
    st.table(table.style.format("{:.4f}", subset=[c for c in table.columns if c.startswith("P(")], na_rep="–"))
    st.caption("P(·) columns: right after that edit, on its own prompt and its negation.")

    for rec in reversed(records):
        fact = rec.facts[0]
        with st.container(border=True):
            c1, c2 = st.columns([5, 1])
            c1.markdown(
                f"**Edit {rec.id}** · {rec.method} · "
                f"{datetime.datetime.fromtimestamp(rec.created):%H:%M:%S} · {rec.seconds:.1f} s  \n"
                f"{fact.prompt} → **{fact.target_new}**" + (f" (was {fact.target_true})" if fact.target_true else "")
            )
            changed = ", ".join(sorted(rec.weights_before))
            c1.caption(
                f"weights changed: {changed}"
                + (f" · {rec.info['stats_source']}" if rec.info.get("stats_source") else "")
            )
            c2.button("Undo", key=f"undo_{rec.id}", on_click=_undo, args=(rec.id,), icon=":material/undo:")

    c1, c2 = st.columns([1, 1])
    c1.button(
        "Reset to the unedited model", key="reset", on_click=_reset, type="primary", icon=":material/restart_alt:"
    )
    c2.download_button(
        "Download the history (JSON)",
        json.dumps([r.summary() for r in records], indent=1, default=str),
        file_name="editlab-history.json",
        mime="application/json",
        key="download_history",
    )


records = list(session.records)
if records:
    show(records)
else:
    st.info("No edits in this session yet. Make one on the **Edit a fact** page.")
    st.page_link(view("edit.py"), label="Edit a fact →", icon=":material/edit:")
