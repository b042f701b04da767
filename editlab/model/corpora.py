"""Public text corpora, downloaded once into the cache root (``corpora/``): the one downloader.

Second-moment statistics read WikiText-103's first training shard when no corpus is given and
nothing is bundled (:mod:`editlab.model.stats`); the general-ability perplexity reads WikiText-2's test
split when no corpus file is given (:mod:`editlab.measure.ability`). Both are Hugging Face's parquet
exports; each call site says what to do when the download fails.
"""

from __future__ import annotations

import urllib.request

from editlab.core import paths

_HF = "https://huggingface.co/datasets/Salesforce/wikitext/resolve/main/"
# name -> (URL, file under the cache root's corpora/)
WIKITEXT = {
    "wikitext-103-train-0": (
        _HF + "wikitext-103-raw-v1/train-00000-of-00002.parquet",
        "wikitext-103-raw-train-0.parquet",
    ),
    "wikitext-2-test": (_HF + "wikitext-2-raw-v1/test-00000-of-00001.parquet", "wikitext-2-raw-v1-test.parquet"),
}


def wikitext(name: str, timeout: float = 60.0) -> list[str]:
    """The rows of a WikiText split (paragraphs, " = Heading = " lines and blank lines, as the
    dataset holds them), downloaded on first use and read from the cache after. Raises OSError
    (unreachable, HTTP error) or ValueError (a file that is not the parquet expected)."""
    if name not in WIKITEXT:
        raise ValueError(f"unknown corpus {name!r}; known: {', '.join(WIKITEXT)}")
    url, file = WIKITEXT[name]
    target = paths.cache_dir("corpora") / file
    if not target.exists():
        with urllib.request.urlopen(url, timeout=timeout) as r:
            paths.atomic_write_bytes(target, r.read())
    import pandas as pd

    try:
        return [str(t) for t in pd.read_parquet(target)["text"].tolist()]
    except Exception as e:
        target.unlink(missing_ok=True)  # a damaged download is fetched again next time, never trusted
        raise ValueError(f"{target}: not a readable WikiText parquet file ({e})") from e
