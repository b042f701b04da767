"""editlab's Streamlit app: ``streamlit run app.py``.

This file is the entry and the navigation. Each page is a short script under ``pages/`` that draws
widgets and calls editlab (through ``ui/``); the model is resident in ``st.cache_resource`` and each
browser session keeps its own edits (see ``ui/state.py``).

To add a page, add one line to PAGES, e.g.
    st.Page("pages/sweep.py", title="Sweep", icon=":material/tune:"),
"""
import streamlit as st

from editlab_app import errors, state

st.set_page_config(page_title="editlab", page_icon=":material/edit_note:", layout="wide")

PAGES = [
    st.Page("pages/start.py", title="Model", icon=":material/memory:", default=True),
    st.Page("pages/edit.py", title="Edit a fact", icon=":material/edit:"),
    st.Page("pages/history.py", title="Edit history", icon=":material/history:"),
    st.Page("pages/sweep.py", title="Sweep", icon=":material/stacked_line_chart:"),
    st.Page("pages/bench.py", title="Benchmark", icon=":material/leaderboard:"),
    st.Page("pages/findings.py", title="Findings", icon=":material/science:"),
]

page = st.navigation(PAGES)
with errors.boundary(st):  # any exception a page raises: a message and a "details" toggle, never a traceback
    page.run()
state.sidebar(st.session_state)  # after the page: it may have loaded the model
