"""``editlab stats``: compute (and cache) second-moment statistics, or write the bundle editlab ships.

editlab stats --layers 4-8 --corpus wikitext-2-raw.txt --tokens 100000
editlab stats --layers 4-8 --corpus ... --tokens 100000 --bundle editlab/data/stats/smollm2-135m-instruct.safetensors
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from editlab.cli.common import add_model_args, load, positive_int, progress_printer, status

MAX_LAYERS = 1_000


def parse_layers(text: str) -> list[int]:
    """ "5", "4-8" or "4,5,8" -> a sorted list of layers (a range that runs backwards, a negative
    layer or more than ``MAX_LAYERS`` layers is refused with what to write)."""
    from editlab.core.bounded import short

    example = "give layers like 5, 4-8 or 4,5,8"
    out: set[int] = set()
    for part in text.split(","):
        a, dash, b = part.strip().partition("-")
        try:
            lo, hi = int(a), int(b) if dash else int(a)
        except ValueError:
            raise ValueError(
                f"--layers {short(text)}: {short(part.strip())} is not a layer or a range; {example}"
            ) from None
        if hi < lo:
            raise ValueError(f"--layers {short(text)}: the range {lo}-{hi} runs backwards; write {hi}-{lo}")
        if hi - lo >= MAX_LAYERS or len(out) + hi - lo >= MAX_LAYERS:
            raise ValueError(f"--layers {short(text)}: more than {MAX_LAYERS:,} layers; no model has that many")
        out.update(range(lo, hi + 1))
    return sorted(out)


def register(sub) -> None:
    p = sub.add_parser(
        "stats", help="second-moment statistics of MLP keys (cached; --bundle writes the shippable file)"
    )
    add_model_args(p)
    p.add_argument("--layers", required=True, help="layers: 5, 4-8 or 4,5,8")
    p.add_argument(
        "--corpus", default=None, help="text corpus (.txt/.jsonl); default as for an edit (bundled, WikiText online)"
    )
    p.add_argument("--tokens", type=positive_int, default=100_000, help="corpus tokens (default 100000)")
    p.add_argument("--offline", action="store_true", help="never download a corpus")
    p.add_argument(
        "--sample-corpus", action="store_true", help="offline with no corpus: sample one from the model (slow)"
    )
    p.add_argument(
        "--bundle",
        default=None,
        metavar="FILE",
        help="also write the statistics as a compact bundle (upper triangle, float16, provenance in metadata)",
    )
    p.add_argument(
        "--corpus-name", default="", help="with --bundle: what the corpus is and where it comes from (provenance)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=run)


def run(args) -> int:
    from safetensors import safe_open

    from editlab.model.stats import cache_path, resolve_corpus, second_moments, write_bundle

    layers = parse_layers(args.layers)
    handle = load(args)
    for l in layers:
        handle.arch.mlp_out_proj(l)  # a clear range error before any work
    corpus = resolve_corpus(
        handle,
        args.corpus,
        args.tokens,
        online=not args.offline,
        progress=progress_printer(),
        layers=layers,
        sample_corpus=args.sample_corpus,
    )
    status(f"statistics for layers {layers} from {corpus.label}, {args.tokens:,} tokens")
    stats = second_moments(handle, layers, corpus, args.tokens, progress=progress_printer())
    counts = {}
    for l in layers:
        f = cache_path(handle, l, corpus.ident, args.tokens)
        if f.exists():
            with safe_open(str(f), framework="pt") as h:
                counts[l] = int(h.get_tensor("count")[0])
    out = {
        "model": handle.name,
        "fingerprint": handle.fingerprint,
        "layers": layers,
        "corpus": corpus.label,
        "n_tokens": args.tokens,
        "count": counts.get(layers[0]),
        "trace": {l: round(float(c.trace()), 4) for l, c in stats.items()},
    }
    if args.bundle:
        if corpus.source in ("bundled", "imported"):
            raise ValueError("--bundle needs statistics computed from a corpus: give --corpus")
        parts = ["--model", args.model, "--layers", args.layers, "--tokens", str(args.tokens), "--bundle", args.bundle]
        parts += ["--corpus", args.corpus] if args.corpus else []
        parts += ["--corpus-name", args.corpus_name] if args.corpus_name else []
        command = "editlab stats " + " ".join(shlex.quote(str(a)) for a in parts)
        path = write_bundle(
            handle,
            stats,
            corpus,
            args.tokens,
            int(counts.get(layers[0], 0)),
            Path(args.bundle),
            command,
            corpus_name=args.corpus_name,
        )
        out["bundle"] = str(path)
        out["bundle_bytes"] = path.stat().st_size
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0
