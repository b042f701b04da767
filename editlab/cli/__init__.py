"""The ``editlab`` command line: a thin front end over the library.

Each subcommand lives in its own module with ``register(subparsers)``; the module's handler gets
the parsed arguments and returns an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["editlab.cli.edit", "editlab.cli.bench", "editlab.cli.sweep", "editlab.cli.trace"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editlab", description="Edit a language model's facts and see what the edit really did.")
    sub = parser.add_subparsers(dest="command", required=True)
    for path in COMMANDS:
        importlib.import_module(path).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # the CLI reports its own progress; transformers' per-load bars are noise here
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"editlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("editlab: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:  # EditError and friends: the weights were rolled back
        print(f"editlab: error: {e}", file=sys.stderr)
        return 1
