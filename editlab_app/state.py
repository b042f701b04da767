"""The resident model (shared by every browser session) and each session's own state.

One model per (name, device, dtype, quantisation, remote-code setting) lives in
``st.cache_resource``; every browser session keeps its own :class:`editlab.EditSession` in
``st.session_state``. The shared weights are unedited at rest; a session's edits are loaded only
inside ``EditSession.applied()`` under the model's lock, so no session sees another's edits.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

import streamlit as st

from editlab import EditSession, load_model

from . import errors
from .config import AppConfig

# st.session_state keys (one place, so pages and tests agree)
MODEL_KEY = "editlab.model_key"
SESSION = "editlab.session"
REPORT = "editlab.report"  # the ProbeReport the edit page shows
REPORT_AT = "editlab.report_at"  # record ids when that report was measured
REPORT_SERIAL = "editlab.report_serial"  # counts the reports shown (fresh widget keys per report)
REPORT_RECORD = "editlab.report_record"  # id of the edit that report belongs to (None: a probe run)
PROBES = "editlab.measure.probes"  # (fact, [Probe]) the user edited; reused while the fact is the same
LOG = "editlab.log"  # {record id: key figures of that edit}
FLASH = "editlab.flash"  # one message to show on the next run: (level, text)


@dataclass(frozen=True)
class ModelKey:
    name: str
    device: str | None = None
    dtype: str | None = None
    quantization: str | None = None

    def label(self) -> str:
        extra = [x for x in (self.device, self.dtype, self.quantization) if x]
        return self.name + (f" ({', '.join(extra)})" if extra else "")


@st.cache_resource(max_entries=2, show_spinner=False)
def _resident_model(
    name: str, device: str | None, dtype: str | None, quantization: str | None, trust_remote_code: bool
):
    """Load once per process; every session of the app shares the result (never cached on error)."""
    return load_model(name, device=device, dtype=dtype, quantization=quantization, trust_remote_code=trust_remote_code)


def warm_default(environ=None) -> str:
    """Load the operator's default model into the shared model cache outside any browser session
    (``serve.py`` calls it when the server starts), so the first visitor finds it resident; returns
    what it did, in words."""
    import time

    t0 = time.perf_counter()
    config = AppConfig.load(environ)
    key = default_key(config)
    resident_model(key, config)
    return f"editlab: {key.label()} resident in {time.perf_counter() - t0:.1f} s (loaded at server start)"


def looks_like_path(name: str) -> bool:
    """A folder on the server rather than a Hub id (``owner/name``) or the embedded model's name."""
    import os

    name = name.strip()
    return name.startswith(("/", ".", "~", "\\")) or os.path.isabs(name) or name.count("/") > 1 or os.path.exists(name)


def resident_model(key: ModelKey, config: AppConfig):
    return _resident_model(key.name, key.device, key.dtype, key.quantization, config.trust_remote_code)


def default_key(config: AppConfig) -> ModelKey:
    return ModelKey(config.default_model, config.device, config.dtype, config.quantization)


def session_of(state: MutableMapping) -> EditSession | None:
    return state.get(SESSION)


def switch_model(state: MutableMapping, key: ModelKey, config: AppConfig) -> EditSession:
    """Load (or reuse) the model for ``key`` and give this browser session a fresh EditSession on
    it. On failure the exception propagates and the previous model and session stay as they were."""
    if not config.allow_model_change and key.name != config.default_model:
        raise ValueError("the operator of this app has fixed the model (EDITLAB_ALLOW_MODEL_CHANGE=0)")
    if not config.allow_local_paths and key.name != config.default_model and looks_like_path(key.name):
        raise ValueError(
            "this app loads models from the Hugging Face Hub (an id like Qwen/Qwen2.5-0.5B-Instruct) or "
            "the embedded default, not from folders on the server (EDITLAB_ALLOW_LOCAL_PATHS=0)"
        )
    current = session_of(state)
    handle = resident_model(key, config)
    if current is not None and current.handle is handle:
        state[MODEL_KEY] = key
        return current
    session = EditSession(handle, corpus=config.corpus, online=config.online, sample_corpus=config.sample_corpus)
    state[MODEL_KEY] = key
    state[SESSION] = session
    for k in (REPORT, REPORT_AT, REPORT_RECORD, PROBES):
        state.pop(k, None)
    state[LOG] = {}
    return session


VISITOR = "editlab.visitor"  # this browser session's private id: its runs in the run store are its own


def visitor(state: MutableMapping) -> str:
    """This browser session's visitor id (random, kept in its session state)."""
    if not state.get(VISITOR):
        import secrets

        state[VISITOR] = "visitor-" + secrets.token_hex(16)
    return state[VISITOR]


def operator_mode(config: AppConfig) -> bool:
    """True when the address carries ``?operator=<EDITLAB_OPERATOR_KEY>``: the operator sees all runs."""
    import hmac

    if not config.operator_key:
        return False
    given = st.query_params.get("operator") or ""
    return hmac.compare_digest(str(given).encode(), config.operator_key.encode())


def run_store(state: MutableMapping, config: AppConfig):
    """The run store as this visitor sees it: only their runs (every run in operator mode)."""
    from editlab.runs.store import RunStore

    store = RunStore()
    return store if operator_mode(config) else store.scoped(visitor(state))


def app_config() -> AppConfig:
    """The operator's configuration; a bad value stops the page with a readable message.
    Every page calls this first."""
    try:
        return AppConfig.load()
    except ValueError as e:
        st.error(f"This app is misconfigured: {e}")
        st.stop()


def ensure_session(state: MutableMapping, config: AppConfig, stop: bool = True) -> EditSession | None:
    """This browser session's EditSession, loading the configured default model on first use.
    If that fails: a readable error, then ``st.stop()`` (or None with ``stop=False``)."""
    session = session_of(state)
    if session is None:
        try:
            with st.spinner(
                f"Loading {config.default_model} ... (a few seconds; the first time on a machine the "
                "embedded model is converted from GGUF once, about 20 s)"
            ):
                session = switch_model(state, default_key(config), config)
        except Exception as e:  # any loading failure is reported, never a traceback
            st.error(f"Could not load the model **{config.default_model}**: {errors.message(e)}")
            if stop:
                st.stop()
            return None
    return session


def flash(state: MutableMapping, level: str, text: str) -> None:
    state[FLASH] = (level, text)


def show_flash(state: MutableMapping) -> None:
    msg = state.pop(FLASH, None)
    if msg:
        getattr(st, msg[0])(msg[1])


def sidebar(state: MutableMapping) -> None:
    """This session's model and edit count (reads state only; never loads a model)."""
    session = session_of(state)
    with st.sidebar:
        if session is None:
            st.caption("No model loaded yet.")
            return
        n = len(session.records)
        st.caption(f"Model: **{state[MODEL_KEY].label()}** · edits in this session: **{n}**")
        st.caption("Your edits are yours: other visitors share the model but never see them.")


# Streamlit forgets a widget's value when a run does not draw it (e.g. on another page); pages
# keep their form values across page switches by copying them aside and back.
KEEP = "editlab.keep"


def restore_widgets(state: MutableMapping, prefixes: tuple[str, ...]) -> None:
    for k, v in state.get(KEEP, {}).items():
        if k.startswith(prefixes) and k not in state:
            state[k] = v


def remember_widgets(state: MutableMapping, prefixes: tuple[str, ...]) -> None:
    kept = state.setdefault(KEEP, {})
    for k in list(state.keys()):
        if isinstance(k, str) and k.startswith(prefixes):
            kept[k] = state[k]
