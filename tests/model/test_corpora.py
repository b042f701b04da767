"""The one corpus downloader: fetched once into the cache, read from there after, never trusted damaged."""

import pandas as pd
import pytest

from editlab.measure.ability import _wikitext2_online
from editlab.model import corpora, stats


def test_wikitext_is_downloaded_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path / "cache"))
    rows = ["", " = Heading = ", "A paragraph long enough to be kept by the statistics corpus filter, surely."]
    source = tmp_path / "wikitext.parquet"
    pd.DataFrame({"text": rows}).to_parquet(source)
    monkeypatch.setitem(corpora.WIKITEXT, "wikitext-2-test", (source.as_uri(), "w2.parquet"))
    monkeypatch.setitem(corpora.WIKITEXT, "wikitext-103-train-0", (source.as_uri(), "w103.parquet"))
    assert corpora.wikitext("wikitext-2-test") == rows
    source.unlink()  # gone from the "web": the cached copy serves
    assert corpora.wikitext("wikitext-2-test") == rows
    assert _wikitext2_online() == "\n".join(rows)  # the perplexity corpus and the statistics corpus share it
    with pytest.raises(ValueError, match="could not download WikiText-2"):
        corpora.WIKITEXT["wikitext-2-test"] = (source.as_uri(), "other.parquet")
        _wikitext2_online()
    assert stats._wikitext_online(1.0) is None  # statistics fall back quietly to the next source
    damaged = tmp_path / "cache" / "corpora" / "w103.parquet"
    damaged.write_bytes(b"not parquet")
    assert stats._wikitext_online(1.0) is None and not damaged.exists()  # fetched again next time
    with pytest.raises(ValueError, match="unknown corpus"):
        corpora.wikitext("wikitext-4")
