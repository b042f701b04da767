"""What the operator configures (environment variables, or ``.streamlit/secrets.toml`` on a Space).

Nothing here can be set from the page: a public Space's visitors choose a model and a fact, never
whether remote code runs, which files are read, or how much compute one edit may take. The
configuration is read afresh on every script run (cheap), so there is no process-global state.

| variable | default | meaning |
|---|---|---|
| ``EDITLAB_MODEL`` | ``smollm2-135m-instruct`` | the model the app loads first (hub id, local folder, embedded name) |
| ``EDITLAB_ALLOW_MODEL_CHANGE`` | ``1`` | ``0``: the model box is read-only (only ``EDITLAB_MODEL``) |
| ``EDITLAB_TRUST_REMOTE_CODE`` | ``0`` | ``1``: a hub model's own Python code may run (never from the UI) |
| ``EDITLAB_DEVICE`` / ``EDITLAB_DTYPE`` / ``EDITLAB_QUANTIZATION`` | auto / auto / none | first load's settings (GPU) |
| ``EDITLAB_CORPUS`` | none | a .txt/.jsonl corpus for ROME/MEMIT second-moment statistics |
| ``EDITLAB_MOM2_TOKENS`` | method default | tokens of that corpus the statistics use |
| ``EDITLAB_ALLOW_LOCAL_PATHS`` | ``1`` (``0`` on a Space) | ``0``: the model box takes Hub ids and the embedded model only, never a folder on the server |
| ``EDITLAB_OFFLINE`` | ``0`` | ``1``: never download a corpus |
| ``EDITLAB_SAMPLE_CORPUS`` | ``0`` | ``1``: offline, no corpus, nothing bundled for the layers: sample a statistics corpus from the model (slow) instead of refusing the edit |
| ``EDITLAB_MAX_UPLOAD_MB`` | ``2`` | size limit for uploaded fact files (JSON / JSONL / CSV) |
| ``EDITLAB_OPERATOR_KEY`` | none | opening the app with ``?operator=<key>`` shows every visitor's runs |
| ``EDITLAB_MAX_...`` | see ``editlab.core.limits`` | the library's request limits (shown on the start page) |
"""  # noqa: E501 (a Markdown table: a row cannot be wrapped)

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from editlab.model.handle import DEFAULT_MODEL

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(name: str, raw, default: bool) -> bool:
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    s = str(raw).strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: expected 1/0, true/false, yes/no or on/off")


def _secrets() -> Mapping:
    """st.secrets as a plain mapping, or {} when there is no secrets file (never an error)."""
    try:
        import streamlit as st

        if not st.secrets.load_if_toml_exists():
            return {}
        return {k: v for k, v in st.secrets.items() if not isinstance(v, Mapping)}
    except Exception:
        return {}


@dataclass(frozen=True)
class AppConfig:
    default_model: str = DEFAULT_MODEL
    allow_model_change: bool = True
    allow_local_paths: bool = True  # the model box may name a folder on the server (off on a Space by default)
    trust_remote_code: bool = False
    device: str | None = None
    dtype: str | None = None
    quantization: str | None = None
    corpus: str | None = None
    mom2_tokens: int | None = None
    online: bool = True
    sample_corpus: bool = False
    max_upload_mb: float = 2.0
    operator_key: str | None = None  # with ?operator=<key> in the address: every visitor's runs

    @classmethod
    def load(cls, environ: Mapping | None = None, secrets: Mapping | None = None) -> AppConfig:
        """Environment variables win over secrets; both are optional."""
        env = os.environ if environ is None else environ
        sec = _secrets() if secrets is None else secrets

        def get(name):
            value = env.get(name)
            if value is None or str(value).strip() == "":
                value = sec.get(name)
            return None if value is None or str(value).strip() == "" else value

        def text(name):
            value = get(name)
            return None if value is None else str(value).strip()

        def number(name, kind):
            value = get(name)
            if value is None:
                return None
            try:
                out = kind(str(value).replace("_", ""))
            except ValueError:
                raise ValueError(f"{name}={value!r}: expected a number") from None
            if out <= 0:
                raise ValueError(f"{name}={value!r}: expected a positive number")
            return out

        quant = text("EDITLAB_QUANTIZATION")
        if quant and quant.lower() in ("none", "off"):
            quant = None
        return cls(
            default_model=text("EDITLAB_MODEL") or DEFAULT_MODEL,
            allow_model_change=_flag("EDITLAB_ALLOW_MODEL_CHANGE", get("EDITLAB_ALLOW_MODEL_CHANGE"), True),
            # A public Space (Hugging Face sets SPACE_ID) must not let visitors read the server's folders.
            allow_local_paths=_flag(
                "EDITLAB_ALLOW_LOCAL_PATHS", get("EDITLAB_ALLOW_LOCAL_PATHS"), not env.get("SPACE_ID")
            ),
            trust_remote_code=_flag("EDITLAB_TRUST_REMOTE_CODE", get("EDITLAB_TRUST_REMOTE_CODE"), False),
            device=text("EDITLAB_DEVICE"),
            dtype=text("EDITLAB_DTYPE"),
            quantization=quant,
            corpus=text("EDITLAB_CORPUS"),
            mom2_tokens=number("EDITLAB_MOM2_TOKENS", int),
            online=not _flag("EDITLAB_OFFLINE", get("EDITLAB_OFFLINE"), False),
            sample_corpus=_flag("EDITLAB_SAMPLE_CORPUS", get("EDITLAB_SAMPLE_CORPUS"), False),
            max_upload_mb=number("EDITLAB_MAX_UPLOAD_MB", float) or 2.0,
            operator_key=text("EDITLAB_OPERATOR_KEY"),
        )

    def hparam_defaults(self) -> dict:
        """Hyperparameter values the operator fixes for every method that has the field."""
        return {"mom2_n_tokens": self.mom2_tokens} if self.mom2_tokens else {}

    def corpus_line(self) -> str:
        if self.corpus:
            ok = os.path.isfile(self.corpus)
            return f"statistics corpus: `{self.corpus}`" + (
                "" if ok else " — **file not found**: edits that need statistics will fail"
            )
        bundled = "the default model's edit layers use the statistics bundled with editlab (no wait)"
        if self.online:
            return (
                f"statistics corpus: none configured — {bundled}; other models or layers download a "
                "WikiText shard on their first edit"
            )
        tail = (
            "sample text from the model (slow on a CPU)"
            if self.sample_corpus
            else "need `EDITLAB_CORPUS` (or `EDITLAB_SAMPLE_CORPUS=1`)"
        )
        return f"statistics corpus: none configured, offline — {bundled}; other models or layers {tail}"
