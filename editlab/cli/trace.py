"""``editlab trace``: causal tracing of one prompt (where does the model recall the answer?)."""

from __future__ import annotations

import numpy as np

from editlab.cli.common import add_model_args, load, positive_float, positive_int, progress_printer, status
from editlab.measure.trace import DEFAULT_NOISE_MULTIPLIER, DEFAULT_SAMPLES, DEFAULT_WINDOW, KINDS, TraceResult, trace


def register(sub) -> None:
    p = sub.add_parser("trace", help="causal tracing: which (token, layer) states carry the answer")
    add_model_args(p)
    p.add_argument("--prompt", required=True, help="a prompt containing the subject (or '{}' for it)")
    p.add_argument("--subject", required=True, help="the tokens that get the noise")
    p.add_argument("--answer", default=None, help="the answer to trace (default: the model's greedy next token)")
    p.add_argument(
        "--kind",
        choices=[*KINDS, "all"],
        default="all",
        help="residual stream, MLP outputs, attention outputs, or all three (default)",
    )
    p.add_argument(
        "--tokens", default="all", help="all (default), subject, subject_last, last, or comma-separated indices"
    )
    p.add_argument(
        "--samples", type=positive_int, default=DEFAULT_SAMPLES, help=f"noise samples (default {DEFAULT_SAMPLES})"
    )
    p.add_argument(
        "--noise",
        type=positive_float,
        default=None,
        help="absolute noise std (default: --noise-multiplier x the embeddings' std)",
    )
    p.add_argument("--noise-multiplier", type=positive_float, default=DEFAULT_NOISE_MULTIPLIER)
    p.add_argument(
        "--window",
        type=positive_int,
        default=DEFAULT_WINDOW,
        help=f"layers restored together for mlp/attn (default {DEFAULT_WINDOW})",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", action="store_true", help="compute even if a cached trace exists, and do not store it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run_trace)


def parse_tokens(text: str):
    if text in ("all", "subject", "subject_last", "last"):
        return text
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--tokens {text!r}: use all, subject, subject_last, last or indices like 3,4,5") from None


def run_trace(args) -> int:
    prompt = args.prompt.replace("{}", args.subject) if "{}" in args.prompt else args.prompt
    tokens = parse_tokens(args.tokens)
    handle = load(args)
    status(f"tracing {prompt!r} (subject {args.subject!r}) ...")
    result = trace(
        handle,
        prompt,
        args.subject,
        answer=args.answer,
        kinds=args.kind,
        samples=args.samples,
        noise=args.noise,
        noise_multiplier=args.noise_multiplier,
        window=args.window,
        seed=args.seed,
        tokens=tokens,
        state_key=handle.fingerprint,
        cache=not args.no_cache,
        progress=progress_printer(),
    )
    print(result.to_json() if args.json else render(result))
    return 0


_SHADES = " .:-=+*#%@"


def render(r: TraceResult) -> str:
    """Plain text: the answer's probabilities, then per map a shaded token x layer grid and the
    indirect effect at the subject's last token."""
    lines = [
        f"prompt: {r.prompt!r}   subject: {r.subject!r}   answer: {r.answer!r}",
        f"P(answer) clean {r.p_clean:.4f}   corrupted {r.p_corrupted:.4f}   "
        f"(noise {r.noise:.3f}, {r.samples} samples, window {r.window}, {r.seconds:.1f}s"
        + (", cached" if r.cached_kinds else "")
        + ")",
    ]
    width = max(len(repr(t)) for t in r.tokens) + 2
    for kind in r.kinds:
        ie = r.indirect_effect(kind)
        top = max(float(np.nanmax(ie)), 1e-9) if not np.isnan(ie).all() else 1.0
        lines += ["", f"[{kind}] indirect effect, one column per layer (0..{r.n_layers - 1}); darker = more recovered"]
        for i, tok in enumerate(r.tokens):
            if np.isnan(ie[i]).all():
                continue  # not traced (--tokens)
            mark = "*" if r.subject_range[0] <= i < r.subject_range[1] else " "
            cells = "".join(
                "?" if np.isnan(v) else _SHADES[min(len(_SHADES) - 1, max(0, int(v / top * (len(_SHADES) - 1) + 0.5)))]
                for v in ie[i]
            )
            lines.append(f"  {mark}{tok!r:<{width}} |{cells}|")
        eff = r.subject_last_effect(kind)
        if not np.isnan(eff).all():
            lines.append(
                f"  at the subject's last token {r.tokens[r.subject_last]!r}: peak layer {r.peak_layer(kind)} "
                f"(IE {np.nanmax(eff):+.3f}); per layer: " + " ".join(f"{v:+.2f}" for v in eff)
            )
    return "\n".join(lines)
