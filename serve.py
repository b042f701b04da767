"""editlab's app with the model loading while the server starts: ``streamlit run serve.py``.

The same app as ``streamlit run app.py`` (the pages are app.py's). In addition, when the server
starts (a Streamlit ``st.App`` lifespan hook), a thread imports torch and transformers and loads the
operator's default model into the app's shared model cache (``editlab_app.state``), so the first visitor
does not wait for either: on this project's 2-core machine they are most of the first page load
(README, Performance). The server starts answering when the model is resident, or after
``WAIT_S`` seconds at most (a large Hub model may download for minutes: the pages then show the
load in progress, which goes on in the thread). A load that fails here is only logged: the page
loads the model itself and shows the error in words.

On Hugging Face Spaces set ``app_file: serve.py`` in the README's front matter to get the same,
with a Space Streamlit that has ``st.App`` (1.67 is what we test). An older Streamlit runs this file
as a page script: it then says so and points to ``streamlit run app.py``.
"""
from __future__ import annotations

import asyncio
import sys
import threading
from contextlib import asynccontextmanager

import streamlit as st

WAIT_S = 30.0  # the longest the server waits for the model before it starts answering


def _warm() -> None:
    try:
        from editlab_app import state  # imports torch and transformers: part of what the first visitor would wait for

        line = state.warm_default()
    except Exception as e:  # the page loads the model again and explains the failure there
        line = f"editlab: loading the default model at server start failed ({type(e).__name__}: {e}); " \
               "the Model page will load it on the first visit"
    print(line, file=sys.stderr, flush=True)


@asynccontextmanager
async def lifespan(_app):
    warming = threading.Thread(target=_warm, name="editlab-warm", daemon=True)
    warming.start()
    await asyncio.to_thread(warming.join, WAIT_S)
    yield


if hasattr(st, "App"):
    app = st.App("app.py", lifespan=lifespan)
else:  # an older Streamlit runs this file as the page itself
    st.error(f"serve.py needs a Streamlit with st.App (this is {st.__version__}); start the app with "
             "`streamlit run app.py`, which works with any Streamlit >= 1.40.")
    st.stop()
