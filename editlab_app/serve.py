"""editlab's app with the model loading while the server starts: what ``editlab app`` runs.

The same app as ``streamlit run app.py`` (the pages are ``main.py``'s). In addition, when the server
starts (a Streamlit ``st.App`` lifespan hook), a thread imports torch and transformers and loads the
operator's default model into the app's shared model cache (``editlab_app.state``), so the first
visitor does not wait for either: on a 2-core machine they are most of the first page load. The
server starts answering when the model is resident, or after ``WAIT_S`` seconds at most (a large Hub
model may download for minutes: the pages then show the load in progress, which goes on in the
thread). A load that fails here is only logged: the page loads the model itself and shows the error
in words. A checkout's or a Space's ``serve.py`` uses this file's :func:`lifespan`.

An older Streamlit without ``st.App`` runs this file as a page script: it then says so
(:func:`too_old`) and points to ``streamlit run app.py``.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st

WAIT_S = 30.0  # the longest the server waits for the model before it starts answering


def _warm() -> None:
    try:
        from editlab_app import state  # imports torch and transformers: part of what the first visitor would wait for

        line = state.warm_default()
    except Exception as e:  # the page loads the model again and explains the failure there
        line = (
            f"editlab: loading the default model at server start failed ({type(e).__name__}: {e}); "
            "the Model page will load it on the first visit"
        )
    print(line, file=sys.stderr, flush=True)


@asynccontextmanager
async def lifespan(_app):
    warming = threading.Thread(target=_warm, name="editlab-warm", daemon=True)
    warming.start()
    await asyncio.to_thread(warming.join, WAIT_S)
    yield


def too_old() -> None:
    """What a Streamlit without ``st.App`` shows instead of the app."""
    st.error(
        f"serve.py needs a Streamlit with st.App (this is {st.__version__}); start the app with "
        "`streamlit run app.py`, which works with any Streamlit >= 1.40."
    )
    st.stop()


if hasattr(st, "App"):
    app = st.App(str(Path(__file__).with_name("app.py")), lifespan=lifespan)
else:  # an older Streamlit runs this file as the page itself
    too_old()
