"""editlab's Streamlit app from a checkout or a Hugging Face Space: ``streamlit run app.py``.

The app lives in the ``editlab_app`` package (``editlab app`` runs the same); this file is the
entry a Space's ``app_file`` names.
"""

from editlab_app.main import run

run()
