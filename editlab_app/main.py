"""The app's entry and navigation: ``run()`` is what every script run of the app does.

Each page is a short script under ``views/`` that draws widgets and calls editlab (through this
package's helpers); the model is resident in ``st.cache_resource`` and each browser session keeps
its own edits (see ``state.py``). Pages are addressed by absolute paths, so the same navigation
serves ``editlab app`` (this package's ``app.py``) and a Space's ``streamlit run app.py`` alike.

To add a page, add one line to ``PAGES``, e.g. ``("sweep.py", "Sweep", ":material/tune:")``.
"""

from __future__ import annotations

from pathlib import Path

VIEWS = Path(__file__).resolve().parent / "views"
PAGES = [  # (file under views/, title, icon); the first is the start page
    ("start.py", "Model", ":material/memory:"),
    ("edit.py", "Edit a fact", ":material/edit:"),
    ("history.py", "Edit history", ":material/history:"),
    ("sweep.py", "Sweep", ":material/stacked_line_chart:"),
    ("bench.py", "Benchmark", ":material/leaderboard:"),
    ("findings.py", "Findings", ":material/science:"),
]


def view(name: str) -> str:
    """A page's path for ``st.page_link`` / ``st.switch_page`` (absolute: right under either entry)."""
    return str(VIEWS / name)


def run() -> None:
    """One script run: page config, navigation, the chosen page inside the error boundary, the sidebar."""
    import streamlit as st

    from . import errors, state

    st.set_page_config(page_title="editlab", page_icon=":material/edit_note:", layout="wide")
    pages = [st.Page(view(name), title=title, icon=icon, default=i == 0) for i, (name, title, icon) in enumerate(PAGES)]
    page = st.navigation(pages)
    with errors.boundary(st):  # any exception a page raises: a message and a "details" toggle, never a traceback
        page.run()
    state.sidebar(st.session_state)  # after the page: it may have loaded the model
