"""The ``editlab`` command line: a thin front end over the library.

Each subcommand lives in its own module with ``register(subparsers)``; the module's handler gets
the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

COMMANDS = [
    "editlab.cli.edit",
    "editlab.cli.bench",
    "editlab.cli.sweep",
    "editlab.cli.trace",
    "editlab.cli.stats",
    "editlab.cli.grid",
    "editlab.cli.reproduce",
    "editlab.cli.app",
    "editlab.cli.train",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="editlab", description="Edit a language model's facts and see what the edit really did."
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the full traceback of an error (also: EDITLAB_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for path in COMMANDS:
        importlib.import_module(path).register(sub)
    return parser


def describe_error(e: BaseException) -> str:
    """One line that says what was wrong and, where it helps, what to do (at most
    ``bounded.MAX_MESSAGE_CHARS`` characters). Library errors (ValueError, EditError) already
    read that way; the rest get the context they lack."""
    from editlab.core.bounded import message

    return message(_describe(e))


def _describe(e: BaseException) -> str:
    try:
        import yaml
    except ImportError:  # pragma: no cover - yaml is a dependency
        yaml = None
    if yaml is not None and isinstance(e, yaml.YAMLError):
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"not valid YAML{where}: {getattr(e, 'problem', None) or e} — check the file's indentation and quoting"
    if isinstance(e, IsADirectoryError):
        return f"{e.filename}: is a folder; give a file"
    if isinstance(e, FileNotFoundError) and e.filename:
        return f"{e.filename}: no such file"
    if isinstance(e, PermissionError):
        return f"{e.filename or 'a file'}: permission denied"
    if isinstance(e, OSError):
        return f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    if isinstance(e, RecursionError):
        return "the input is nested too deeply to read: give plain values (numbers, texts, short lists)"
    if isinstance(e, MemoryError):
        return "out of memory for this request: ask for less (fewer facts, a smaller value)"
    if isinstance(e, (ValueError, RuntimeError, ImportError)):
        text = str(e)
    else:  # an error no check foresaw: say what it was, briefly
        text = f"{type(e).__name__}: {e}"
    return " ".join(text.split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Every error ends as one ``editlab: error: ...`` line on stderr and exit
    code 2 (1 when an edit failed and its weights were rolled back); the traceback only with
    ``--debug`` or ``EDITLAB_DEBUG=1``."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_debug = "--debug" in argv  # accepted anywhere on the line, not only before the subcommand
    args = parser.parse_args([a for a in argv if a != "--debug"])
    debug = wants_debug or os.environ.get("EDITLAB_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")
    try:  # the CLI reports its own progress; transformers' per-load bars are noise here
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("editlab: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from editlab.methods.base import EditError

        if debug:
            traceback.print_exc()
        print(
            f"editlab: error: {describe_error(e)}" + ("" if debug else "  (--debug shows the traceback)"),
            file=sys.stderr,
        )
        return 1 if isinstance(e, EditError) else 2
