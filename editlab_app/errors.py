"""The app's one error boundary: any exception a page raises becomes a message, never a traceback.

``app.py`` runs every page inside :func:`boundary`; a page may also use it around one action so the
rest of the page still draws. The visitor sees what was wrong and what to do (the library's
messages say both); the traceback sits behind a "details" toggle for the operator. Server paths
(this machine's home, the working folder, temporary files) are replaced in what is shown.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import traceback
from pathlib import Path

from editlab.core import bounded

_PATH_RE = re.compile(r"(?:(?<=\s)|(?<=^)|(?<=[\"'(=]))(/(?:[\w.@+-]+/)+[\w.@+-]*)")


def _control_flow(e: BaseException) -> bool:
    """Streamlit's st.stop() / st.rerun() / page switches travel as exceptions: let them pass."""
    try:
        from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException
    except ImportError:  # pragma: no cover - older Streamlit
        from streamlit.runtime.scriptrunner import StopException as ScriptControlException
    return isinstance(e, ScriptControlException)


def scrub(text: str) -> str:
    """``text`` with absolute file paths reduced to their last part (``…/model.safetensors``)."""

    def short(m: re.Match) -> str:
        name = Path(m.group(1)).name
        return f"…/{name}" if name else "…/"

    for root in {str(Path.cwd()), tempfile.gettempdir(), os.path.expanduser("~")}:
        if root and root != "/":
            text = text.replace(root + os.sep, "…/").replace(root, "…")
    return _PATH_RE.sub(short, text)


def message(e: BaseException) -> str:
    """What the visitor reads: the library's message (it names the bad value and the remedy), or
    for an error nothing foresaw its kind and text, and a pointer to the details; at most
    ``bounded.MAX_MESSAGE_CHARS`` characters."""
    return bounded.message(_message(e))


def _message(e: BaseException) -> str:
    text = bounded.message(str(e).strip())
    if isinstance(e, RecursionError):
        return "The input is nested too deeply to read: give plain records (objects of strings and lists)."
    if isinstance(e, (ValueError, RuntimeError, FileNotFoundError)) and text:
        return scrub(text)
    if isinstance(e, MemoryError):
        return "The server ran out of memory for this request: ask for less (a shorter prompt, fewer facts)."
    return scrub(
        f"Something went wrong ({type(e).__name__}{': ' + text if text else ''}). "
        "Try again with smaller or different input; the details below help the operator."
    )


def show(st, e: BaseException, what: str | None = None) -> None:
    """st.error with the message, and a "details" expander holding the traceback."""
    st.error((f"{what}: " if what else "") + message(e))
    with st.expander("details"):
        st.code(
            bounded.message(scrub("".join(traceback.format_exception(type(e), e, e.__traceback__))), 20_000),
            language="text",
        )


@contextlib.contextmanager
def boundary(st, what: str | None = None):
    """Run a block; any exception (but Streamlit's own control flow and Ctrl-C) is shown by
    :func:`show` instead of aborting the page with a traceback."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        if _control_flow(e):
            raise
        show(st, e, what)
