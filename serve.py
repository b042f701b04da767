"""editlab's app with the model loading while the server starts: ``streamlit run serve.py``.

For a checkout or a Hugging Face Space (``app_file: serve.py`` in the README's front matter, with a
Space Streamlit that has ``st.App``; 1.67 is what we test). The app and the warm start live in the
``editlab_app`` package (``editlab_app/serve.py``, which ``editlab app`` runs); this file only names
them, as Streamlit finds the app by reading this file.
"""

import streamlit as st

from editlab_app.serve import lifespan, too_old

if hasattr(st, "App"):
    app = st.App("app.py", lifespan=lifespan)
else:  # an older Streamlit runs this file as the page itself
    too_old()
