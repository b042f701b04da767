"""editlab's Streamlit app: ``main`` (entry and navigation), the pages under ``views/`` (layout
only) and these helpers. The library, ``editlab``, never imports this package.

- ``config``: what the operator sets (env vars / st.secrets); nothing here is settable from a page.
- ``state``: the resident model in ``st.cache_resource`` and each browser session's EditSession.
- ``actions``: what the buttons do, as thin calls into editlab (no Streamlit, testable with a dict).
- ``hparams``: a method's hyperparameter widgets, built from its HParams dataclass.
- ``report``: a ProbeReport as tables, bars and flags.
- ``gallery``: the built-in example facts and uploaded fact files (JSON/JSONL/CSV only).
"""
