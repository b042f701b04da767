"""Arguments and output helpers shared by the CLI's subcommands."""
from __future__ import annotations

import sys


def add_model_args(p) -> None:
    from ..model import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, help=f"hub id, local folder or {DEFAULT_MODEL!r} (default)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA when available)")
    p.add_argument("--dtype", default=None, help="float32 (CPU), bfloat16 or float16 (GPU)")
    p.add_argument("--quantization", choices=["8bit", "4bit"], default=None, help="bitsandbytes, CUDA only")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model repository's own code (off by default)")


def load(args):
    from ..model import load_model

    status(f"loading {args.model} ...")
    return load_model(args.model, device=args.device, dtype=args.dtype, quantization=args.quantization,
                      trust_remote_code=args.trust_remote_code)


def status(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def progress_printer():
    """A progress callback that redraws one stderr line."""
    def cb(done: int, total: int, stage: str) -> None:
        pct = 100.0 * done / total if total else 100.0
        end = "\n" if done >= total else ""
        print(f"\r  {stage}: {done}/{total} ({pct:.0f}%)", end=end, file=sys.stderr, flush=True)

    return cb
