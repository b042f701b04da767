"""Arguments and output helpers shared by the CLI's subcommands."""

from __future__ import annotations

import argparse
import math
import sys

from editlab.core.yamlfile import read_yaml_mapping  # noqa: F401  (the CLI commands import it from here)


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (argparse turns the error into one usage line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number greater than 0")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be a finite number >= 0")
    return value


def add_model_args(p) -> None:
    from editlab.model.handle import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, help=f"hub id, local folder or {DEFAULT_MODEL!r} (default)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    p.add_argument("--dtype", default=None, help="float32 (CPU), bfloat16 or float16 (GPU)")
    p.add_argument("--quantization", choices=["8bit", "4bit"], default=None, help="bitsandbytes, CUDA only")
    p.add_argument(
        "--trust-remote-code", action="store_true", help="allow the model repository's own code (off by default)"
    )


def load(args):
    from editlab.model.handle import load_model

    status(f"loading {args.model} ...")
    return load_model(
        args.model,
        device=args.device,
        dtype=args.dtype,
        quantization=args.quantization,
        trust_remote_code=args.trust_remote_code,
        progress=lambda d, t, stage: status(f"  {stage}"),
    )


def status(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def progress_printer():
    """A progress callback that redraws one stderr line."""

    def cb(done: int, total: int, stage: str) -> None:
        pct = 100.0 * done / total if total else 100.0
        end = "\n" if done >= total else ""
        print(f"\r  {stage}: {done}/{total} ({pct:.0f}%)", end=end, file=sys.stderr, flush=True)

    return cb
