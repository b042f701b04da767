"""editlab's Streamlit app as installed: ``editlab app`` runs this file (``streamlit run`` works too)."""

from editlab_app.main import run

run()
