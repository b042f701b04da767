"""Context templates: lengths count the whole prefix, start word included, as the reference's
``generate_fast(..., max_out_len=length)``."""

import json
import unicodedata

import pytest
import torch

from editlab.core import paths
from editlab.methods.templates import STARTS, context_templates, prefix_ids


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITLAB_CACHE_DIR", str(tmp_path / "cache"))


def test_every_prefix_has_length_tokens_in_all_start_word_included(handle):
    tok = handle.tokenizer
    torch.manual_seed(0)
    for length in (5, 10):
        for start, ids in zip(STARTS, prefix_ids(handle, list(STARTS), length)):
            assert len(ids) == length
            assert ids[: len(tok(start).input_ids)] == tok(start).input_ids
    # A start word as long as the length: nothing is generated (the reference's loop never runs).
    assert prefix_ids(handle, ["Therefore"], 1) == [tok("Therefore").input_ids]


def test_templates_are_those_prefixes_grouped_by_start_word_as_the_reference(handle, cache):
    params = [(5, 10), (10, 10)]
    templates = context_templates(handle, params, seed=3)
    # "{}" then, per (length, n), n // 5 prefixes per start word in the reference's order.
    assert len(templates) == 1 + 10 + 10 and templates[0] == "{}"
    starts = [s for s in STARTS for _ in range(2)] * 2
    assert all(t.startswith(s) for t, s in zip(templates[1:], starts))
    torch.manual_seed(3)
    want = ["{}"]
    for length, n in params:
        for ids in prefix_ids(handle, [s for s in STARTS for _ in range(n // 5)], length):
            text = unicodedata.normalize("NFKD", handle.tokenizer.decode(ids, skip_special_tokens=True))
            want.append(text.replace("\n\n", " ").replace("{", " ").replace("}", " ") + ". {}")
    assert templates == want


def test_templates_cached_before_lengths_counted_the_whole_prefix_are_not_reused(handle, cache):
    params = [(10, 5)]
    # Where version 1 (lengths in new tokens) cached them: a key without the version marker.
    old_key = paths.key_digest(model=handle.fingerprint, params=[list(p) for p in params], seed=0)
    (paths.cache_dir("templates") / f"{old_key}.json").write_text(json.dumps(["{}", "stale. {}"]))
    templates = context_templates(handle, params)
    assert "stale. {}" not in templates and len(templates) == 6
    assert context_templates(handle, params) == templates  # now cached under the new key
